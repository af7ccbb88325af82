//! Audit v2 in the JSON-lines log: a log written before the context existed
//! verifies as it is, a sink continues it with records that carry a
//! context, and altering any context field breaks the chain at its line.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "test code: a panic is a failed test"
)]

use std::io::{BufRead, Cursor, Seek, SeekFrom, Write};

use dlms_sec::audit::{
    AuditAction, AuditContext, AuditEvent, AuditSink, CampaignId, NodeName, Outcome, Principal,
    Reason, RequestId, Timestamp,
};
use dlms_sec::key::AuditKey;
use dlms_sec_services::jsonl::{BreakKind, ChainBreak, JsonLinesSink, verify};

/// The log written by the sink before audit v2, committed as it was.
const V1_LOG: &str = include_str!("fixtures/audit-v1.jsonl");

fn v1_key() -> AuditKey {
    AuditKey::from_bytes([0x42; 16])
}

fn context() -> AuditContext {
    AuditContext::new()
        .with_principal(Principal::operator("ops \"lead\" \\ 1").unwrap())
        .with_node(NodeName::new("s1sp-a").unwrap())
        .with_request(RequestId([0x3C; 16]))
        .with_campaign(CampaignId::new("compromise-2026-12").unwrap())
        .with_reason(Reason::CompromiseCampaign)
}

fn v2_events() -> Vec<AuditEvent> {
    let t = Timestamp(1_765_000_100);
    vec![
        AuditEvent::new(AuditAction::Generated, Outcome::Success, t).with_context(&context()),
        AuditEvent::new(AuditAction::Activated, Outcome::Success, t)
            .with_reason(Reason::ScheduledRotation),
        // No context in the middle of v2 records: written as version 1.
        AuditEvent::new(AuditAction::Unpacked, Outcome::Success, t),
        AuditEvent::new(AuditAction::RecordAccessed, Outcome::Refused, t)
            .with_principal(Principal::service("scheduler").unwrap())
            .with_reason(Reason::Operation),
    ]
}

/// The fixture followed by the v2 events, appended by a sink.
fn mixed_log() -> String {
    let head = verify(Cursor::new(V1_LOG), &v1_key()).unwrap();
    let mut file = Cursor::new(V1_LOG.as_bytes().to_vec());
    file.seek(SeekFrom::End(0)).unwrap();
    let mut sink = JsonLinesSink::append(file, &v1_key(), &head).unwrap();
    for e in v2_events() {
        sink.record(&e).unwrap();
    }
    String::from_utf8(sink.into_inner().into_inner()).unwrap()
}

#[test]
fn r20_a_v1_log_written_before_v2_still_verifies() {
    let head = verify(Cursor::new(V1_LOG), &v1_key()).unwrap();
    assert_eq!(head.records, 4);
    assert_eq!(head.len, V1_LOG.len() as u64);
    // And a flipped octet in it is still found.
    let bad = V1_LOG.replacen("\"time\":1765000001", "\"time\":1765000009", 1);
    assert_eq!(
        verify(Cursor::new(bad), &v1_key()),
        Err(ChainBreak {
            line: 2,
            kind: BreakKind::BadMac
        })
    );
}

#[test]
fn r20_a_mixed_log_verifies_and_reads_back_the_context() {
    let log = mixed_log();
    assert!(log.starts_with(V1_LOG), "the old records are not rewritten");
    let head = verify(Cursor::new(log.as_bytes()), &v1_key()).unwrap();
    assert_eq!(head.records, 8);
    let lines: Vec<&str> = log.lines().collect();
    let first_v2: serde_json::Value = serde_json::from_str(lines[4]).unwrap();
    assert_eq!(first_v2["principal"], "operator:ops \"lead\" \\ 1");
    assert_eq!(first_v2["node"], "s1sp-a");
    assert_eq!(first_v2["request"], "3c".repeat(16));
    assert_eq!(first_v2["campaign"], "compromise-2026-12");
    assert_eq!(first_v2["reason"], "compromise-campaign");
    // Only the keys of the fields set, after `counter`, before `mac`.
    assert!(lines[5].contains("\"counter\":null,\"reason\":\"scheduled-rotation\",\"mac\""));
    assert!(!lines[5].contains("principal"));
    assert!(!lines[6].contains("reason"));
}

#[test]
fn r20_altering_any_context_field_breaks_the_chain_at_its_line() {
    let log = mixed_log();
    let lines: Vec<String> = log.lines().map(|l| format!("{l}\n")).collect();
    let at = |n: usize, from: &str, to: &str| {
        let mut l = lines.clone();
        assert!(l[n].contains(from), "{from} in {}", l[n]);
        l[n] = l[n].replacen(from, to, 1);
        verify(Cursor::new(l.concat()), &v1_key())
    };
    let bad_mac = |line: u64| {
        Err(ChainBreak {
            line,
            kind: BreakKind::BadMac,
        })
    };
    assert_eq!(at(4, "operator:ops", "service:ops"), bad_mac(5));
    assert_eq!(at(4, "\\\\ 1", "\\\\ 2"), bad_mac(5));
    assert_eq!(at(4, "s1sp-a", "s1sp-b"), bad_mac(5));
    assert_eq!(at(4, "3c3c3c", "3c3c3d"), bad_mac(5));
    assert_eq!(
        at(4, "compromise-2026-12", "compromise-2026-13"),
        bad_mac(5)
    );
    assert_eq!(
        at(4, "compromise-campaign", "corruption-recovery"),
        bad_mac(5)
    );
    assert_eq!(at(5, "scheduled-rotation", "commissioning"), bad_mac(6));
    // Removing a context key, or adding one, is caught too.
    assert_eq!(at(5, ",\"reason\":\"scheduled-rotation\"", ""), bad_mac(6));
    assert_eq!(
        at(
            6,
            "\"counter\":null,",
            "\"counter\":null,\"reason\":\"operation\","
        ),
        bad_mac(7)
    );
    // A context key written as null is not the sink's format.
    assert_eq!(
        at(6, "\"counter\":null,", "\"counter\":null,\"reason\":null,"),
        Err(ChainBreak {
            line: 7,
            kind: BreakKind::Malformed
        })
    );
    // A name the types refuse is malformed, not a MAC failure.
    assert_eq!(
        at(4, "s1sp-a", "a-node-name-over-sixteen"),
        Err(ChainBreak {
            line: 5,
            kind: BreakKind::Malformed
        })
    );
}

#[test]
fn r20_a_recorder_context_reaches_the_log() {
    let key = AuditKey::from_bytes([7; 16]);
    let mut sink =
        JsonLinesSink::new(Cursor::new(Vec::new()), &key, &mut getrandom::SysRng).unwrap();
    {
        let mut audit = dlms_sec::audit::Recorder::new(&mut sink, Timestamp(3))
            .with_context(AuditContext::new().with_node(NodeName::new("dco-1").unwrap()));
        let e = audit.event(AuditAction::Wrapped, Outcome::Success);
        audit.record(&e).unwrap();
    }
    let mut out = sink.into_inner();
    out.flush().unwrap();
    let text = out.into_inner();
    let line = text.lines().next().unwrap().unwrap();
    assert!(line.contains("\"node\":\"dco-1\""), "{line}");
    let _ = verify(Cursor::new(text), &key).unwrap();
}
