//! The RFC 5424 audit export: every message matches RFC 5424's ABNF (checked
//! here by a validator written from the RFC, not by the formatter), values
//! are escaped, and a receiver reads the messages back from a file, UDP and
//! TCP (RFC 6587 octet counting) on loopback and checks the chain.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream, UdpSocket};

use dlms_sec::audit::{
    AuditAction, AuditChain, AuditContext, AuditEvent, AuditSink, CampaignId, LinkError, NodeName,
    Outcome, Principal, Reason, RequestId, Timestamp,
};
use dlms_sec::key::package::KeyCheckValue;
use dlms_sec::key::{AuditKey, KeyRole};
use dlms_sec::types::Client;
use dlms_sec::{Error, InvocationCounter, SystemTitle};
use dlms_sec_services::syslog::{
    Framing, Received, SyslogSink, UdpWriter, format_message, parse_message,
};

fn key() -> AuditKey {
    AuditKey::from_bytes([0x33; 16])
}

fn events() -> Vec<AuditEvent> {
    let meter = SystemTitle::new(*b"MMM\x00\x00\xBC\x61\x4E");
    vec![
        AuditEvent::new(
            AuditAction::Generated,
            Outcome::Success,
            Timestamp(1_765_000_000),
        )
        .with_device(meter)
        .with_client(Client::Management)
        .with_role(KeyRole::Authentication)
        .with_generation(1)
        .with_kek(KeyCheckValue([0xA1, 0xB2, 0xC3]))
        .with_principal(Principal::operator("alice").unwrap())
        .with_reason(Reason::Commissioning),
        AuditEvent::new(AuditAction::ReplayRejected, Outcome::Refused, Timestamp(0))
            .with_device(meter)
            .with_counter(InvocationCounter::new(41)),
        AuditEvent::new(AuditAction::RecordAccessed, Outcome::Refused, Timestamp(1)).with_context(
            &AuditContext::new()
                .with_principal(Principal::operator(r#"eve "x" \ ]y["#).unwrap())
                .with_node(NodeName::new("s1sp-a").unwrap())
                .with_request(RequestId([0xAB; 16]))
                .with_campaign(CampaignId::new("c ]1").unwrap())
                .with_reason(Reason::Operation),
        ),
        // Past year 9999: no RFC 3339 time.
        AuditEvent::new(AuditAction::Unpacked, Outcome::Failure, Timestamp(u64::MAX)),
    ]
}

// ---------------------------------------------------------------------------
// RFC 5424 §6 ABNF, as a recogniser.

fn printusascii(b: u8) -> bool {
    (33..=126).contains(&b)
}

/// `1*max PRINTUSASCII` or NILVALUE; returns the rest after it and one SP.
fn header_field(s: &[u8], max: usize) -> Option<(&[u8], &[u8])> {
    let end = s.iter().position(|&b| b == b' ')?;
    let (field, rest) = s.split_at(end);
    (!field.is_empty() && field.len() <= max && field.iter().all(|&b| printusascii(b)))
        .then_some((field, &rest[1..]))
}

fn digits(s: &[u8], n: usize) -> Option<u32> {
    let d = s.get(..n)?;
    d.iter()
        .all(u8::is_ascii_digit)
        .then(|| std::str::from_utf8(d).unwrap().parse().unwrap())
}

/// TIMESTAMP = NILVALUE / FULL-DATE "T" FULL-TIME, here with TIME-OFFSET "Z".
fn timestamp_ok(t: &[u8]) -> bool {
    if t == b"-" {
        return true;
    }
    t.len() == 20
        && digits(t, 4).is_some()
        && t[4] == b'-'
        && digits(&t[5..], 2).is_some_and(|m| (1..=12).contains(&m))
        && t[7] == b'-'
        && digits(&t[8..], 2).is_some_and(|d| (1..=31).contains(&d))
        && t[10] == b'T'
        && digits(&t[11..], 2).is_some_and(|h| h <= 23)
        && t[13] == b':'
        && digits(&t[14..], 2).is_some_and(|m| m <= 59)
        && t[16] == b':'
        && digits(&t[17..], 2).is_some_and(|s| s <= 60)
        && t[19] == b'Z'
}

/// SD-NAME = 1*32 PRINTUSASCII except '=', SP, ']', '"'.
fn sd_name(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = s
        .iter()
        .position(|&b| !printusascii(b) || matches!(b, b'=' | b']' | b'"'))
        .unwrap_or(s.len());
    (1..=32).contains(&end).then(|| s.split_at(end))
}

/// Checks a whole SYSLOG-MSG with exactly one SD-ELEMENT and no MSG;
/// returns the SD-ID and the PARAM-VALUEs unescaped.
fn check_abnf(msg: &str) -> (String, Vec<(String, String)>) {
    let s = msg.as_bytes();
    // PRI = "<" PRIVAL ">", PRIVAL = 1*3DIGIT (0..=191), VERSION = "1".
    assert_eq!(s[0], b'<', "{msg}");
    let close = s.iter().position(|&b| b == b'>').unwrap();
    assert!((2..=4).contains(&close), "{msg}");
    let prival: u32 = std::str::from_utf8(&s[1..close]).unwrap().parse().unwrap();
    assert!(prival <= 191);
    assert!(!(s[1] == b'0' && close > 2), "no leading zero");
    assert_eq!(&s[close + 1..close + 3], b"1 ", "VERSION 1, {msg}");
    let rest = &s[close + 3..];
    let (ts, rest) = header_field(rest, 32).unwrap();
    assert!(timestamp_ok(ts), "{}", String::from_utf8_lossy(ts));
    let (_host, rest) = header_field(rest, 255).unwrap();
    let (app, rest) = header_field(rest, 48).unwrap();
    assert_eq!(app, b"dlms-sec");
    let (procid, rest) = header_field(rest, 128).unwrap();
    assert_eq!(procid, b"-");
    let (_msgid, rest) = header_field(rest, 32).unwrap();
    // STRUCTURED-DATA = 1*SD-ELEMENT; SD-ELEMENT = "[" SD-ID *(SP SD-PARAM) "]".
    assert_eq!(rest[0], b'[');
    let (id, mut rest) = sd_name(&rest[1..]).unwrap();
    let mut params = Vec::new();
    while rest[0] == b' ' {
        let (name, r) = sd_name(&rest[1..]).unwrap();
        assert_eq!(&r[..2], b"=\"");
        let mut i = 2;
        let mut value = Vec::new();
        loop {
            match r[i] {
                b'\\' if matches!(r[i + 1], b'"' | b'\\' | b']') => {
                    value.push(r[i + 1]);
                    i += 2;
                }
                b'"' => break,
                // '"' and ']' only escaped (a lone '\' may stand for itself,
                // but the writer always escapes it).
                b']' | b'\\' => panic!("unescaped {} in {msg}", r[i] as char),
                b => {
                    value.push(b);
                    i += 1;
                }
            }
        }
        params.push((
            String::from_utf8(name.to_vec()).unwrap(),
            String::from_utf8(value).unwrap(),
        ));
        rest = &r[i + 1..];
    }
    assert_eq!(rest, b"]", "one element, no MSG: {msg}");
    (String::from_utf8(id.to_vec()).unwrap(), params)
}

fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn messages(hostname: Option<&str>) -> (Vec<String>, dlms_sec::audit::ChainId) {
    let mut sink = SyslogSink::new(
        Vec::new(),
        &key(),
        &mut getrandom::SysRng,
        Framing::Lines,
        hostname,
    )
    .unwrap();
    for e in events() {
        sink.record(&e).unwrap();
    }
    let id = sink.chain_id();
    let text = String::from_utf8(sink.into_inner()).unwrap();
    (text.lines().map(str::to_owned).collect(), id)
}

/// Checks the chain as a receiver does; `Err` names the first bad message.
fn receive(msgs: &[String]) -> Result<Vec<Received>, (usize, Option<LinkError>)> {
    let mut chain: Option<AuditChain> = None;
    let mut out = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let r = parse_message(m).ok_or((i, None))?;
        let c = chain.get_or_insert_with(|| AuditChain::new(&key(), r.chain));
        c.check(r.seq, &r.event, &r.mac).map_err(|e| (i, Some(e)))?;
        out.push(r);
    }
    Ok(out)
}

#[test]
fn r20_every_message_matches_the_rfc_5424_abnf() {
    let (msgs, id) = messages(Some("s1sp-a.example"));
    for (seq, (m, e)) in msgs.iter().zip(events()).enumerate() {
        let (sd_id, params) = check_abnf(m);
        assert_eq!(sd_id, "audit@32473");
        assert_eq!(get(&params, "seq"), Some(seq.to_string().as_str()));
        assert_eq!(
            get(&params, "chain"),
            Some(hex::encode(id.as_bytes()).as_str())
        );
        assert_eq!(get(&params, "action"), Some(e.action.as_str()));
        assert_eq!(params.last().unwrap().0, "mac");
        assert_eq!(params.last().unwrap().1.len(), 24);
        // PRI: facility 13 (log audit), notice for success, else warning.
        let pri = if e.outcome == Outcome::Success {
            109
        } else {
            108
        };
        assert!(m.starts_with(&format!("<{pri}>1 ")), "{m}");
        assert!(m.contains(&format!(" s1sp-a.example dlms-sec - {} [", e.action)));
    }
    assert!(
        msgs[0].starts_with("<109>1 2025-12-06T05:46:40Z "),
        "{}",
        msgs[0]
    );
    assert!(msgs[1].starts_with("<108>1 1970-01-01T00:00:00Z "));
    // Past year 9999, and with no host name: NILVALUEs.
    assert!(
        msgs[3].starts_with("<108>1 - s1sp-a.example "),
        "{}",
        msgs[3]
    );
    let (bare, _) = messages(None);
    assert!(bare[0].starts_with("<109>1 2025-12-06T05:46:40Z - dlms-sec - generated ["));
    check_abnf(&bare[0]);
}

#[test]
fn r20_all_fields_are_written_and_param_values_escaped() {
    let (msgs, _) = messages(None);
    let (_, p) = check_abnf(&msgs[0]);
    let names: Vec<&str> = p.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "seq",
            "chain",
            "action",
            "outcome",
            "time",
            "device",
            "client",
            "role",
            "generation",
            "kek",
            "principal",
            "reason",
            "mac"
        ]
    );
    assert_eq!(get(&p, "device"), Some("4d4d4d0000bc614e"));
    assert_eq!(get(&p, "kek"), Some("a1b2c3"));
    assert_eq!(get(&p, "principal"), Some("operator:alice"));
    assert_eq!(get(&p, "time"), Some("1765000000"));
    let (_, p) = check_abnf(&msgs[2]);
    assert_eq!(get(&p, "principal"), Some(r#"operator:eve "x" \ ]y["#));
    assert_eq!(get(&p, "campaign"), Some("c ]1"));
    assert_eq!(get(&p, "node"), Some("s1sp-a"));
    assert_eq!(get(&p, "request"), Some("ab".repeat(16).as_str()));
    assert_eq!(get(&p, "reason"), Some("operation"));
    assert!(
        msgs[2].contains(r#"principal="operator:eve \"x\" \\ \]y[""#),
        "{}",
        msgs[2]
    );
    assert!(msgs[2].contains(r#"campaign="c \]1""#));
    let (_, p) = check_abnf(&msgs[1]);
    assert_eq!(get(&p, "counter"), Some("41"));
    assert_eq!(get(&p, "principal"), None);
}

#[test]
fn r20_a_receiver_checks_the_chain_and_finds_a_tampered_message() {
    let (msgs, _) = messages(Some("h"));
    let got = receive(&msgs).unwrap();
    assert_eq!(got.len(), 4);
    for (r, e) in got.iter().zip(events()) {
        assert_eq!(r.event, e);
    }
    // A changed value that still reads as a record fails the MAC there.
    for (i, from, to) in [
        (0, "operator:alice", "operator:alicf"),
        (0, "reason=\"commissioning\"", "reason=\"support-access\""),
        (1, "counter=\"41\"", "counter=\"42\""),
        (2, "node=\"s1sp-a\"", "node=\"s1sp-b\""),
        (2, "abababab", "abababac"),
        (2, "c \\]1", "c \\]2"),
        // A field left out is another record, not a malformed one.
        (2, " reason=\"operation\"", ""),
    ] {
        let mut bad = msgs.clone();
        assert!(bad[i].contains(from), "{from}");
        bad[i] = bad[i].replacen(from, to, 1);
        assert_eq!(
            receive(&bad).map(|_| ()),
            Err((i, Some(LinkError::BadMac))),
            "{to}"
        );
    }
    // A message that is not the writer's text is refused before the MAC.
    for (i, from, to) in [
        (0, "<109>1", "<109>2"),
        (0, " kek=", "  kek="),
        (0, "2025-12-06T05:46:40Z", "2025-12-06T05:46:41Z"),
        (2, "c \\]1", "c ]1"),
    ] {
        let mut bad = msgs.clone();
        bad[i] = bad[i].replacen(from, to, 1);
        assert_eq!(receive(&bad).map(|_| ()), Err((i, None)), "{to}");
    }
    // Removed and reordered messages break the sequence.
    let mut gap = msgs.clone();
    gap.remove(1);
    assert!(matches!(
        receive(&gap),
        Err((
            1,
            Some(LinkError::Sequence {
                expected: 1,
                found: 2
            })
        ))
    ));
}

#[test]
fn r20_to_a_file_one_message_per_line() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("syslog-{}.log", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    let mut sink =
        SyslogSink::new(file, &key(), &mut getrandom::SysRng, Framing::Lines, None).unwrap();
    for e in events() {
        sink.record(&e).unwrap();
    }
    drop(sink);
    let lines: Vec<String> = BufReader::new(std::fs::File::open(&path).unwrap())
        .lines()
        .map(Result::unwrap)
        .collect();
    assert_eq!(receive(&lines).unwrap().len(), 4);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn r20_over_udp_one_datagram_per_message() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(receiver.local_addr().unwrap()).unwrap();
    let mut sink = SyslogSink::new(
        UdpWriter(socket),
        &key(),
        &mut getrandom::SysRng,
        Framing::Datagram,
        Some("udp-host"),
    )
    .unwrap();
    for e in events() {
        sink.record(&e).unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    for _ in events() {
        let n = receiver.recv(&mut buf).unwrap();
        got.push(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    for m in &got {
        check_abnf(m);
    }
    assert_eq!(receive(&got).unwrap().len(), 4);
}

#[test]
fn r20_over_tcp_with_octet_counting() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut accepted, _) = listener.accept().unwrap();
    let mut sink = SyslogSink::new(
        stream,
        &key(),
        &mut getrandom::SysRng,
        Framing::OctetCounting,
        Some("tcp-host"),
    )
    .unwrap();
    for e in events() {
        sink.record(&e).unwrap();
    }
    drop(sink);
    let mut all = Vec::new();
    accepted.read_to_end(&mut all).unwrap();
    // SYSLOG-FRAME = MSG-LEN SP SYSLOG-MSG, MSG-LEN = NONZERO-DIGIT *DIGIT.
    let mut msgs = Vec::new();
    let mut rest = all.as_slice();
    while !rest.is_empty() {
        let sp = rest.iter().position(|&b| b == b' ').unwrap();
        assert_ne!(rest[0], b'0');
        let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
        let msg = &rest[sp + 1..sp + 1 + len];
        msgs.push(String::from_utf8(msg.to_vec()).unwrap());
        rest = &rest[sp + 1 + len..];
    }
    assert_eq!(msgs.len(), 4);
    for m in &msgs {
        check_abnf(m);
    }
    assert_eq!(receive(&msgs).unwrap().len(), 4);
}

#[test]
fn r20_a_failed_write_fails_the_record_and_stops_the_sink() {
    struct Broken;
    impl std::io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("down"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut sink =
        SyslogSink::new(Broken, &key(), &mut getrandom::SysRng, Framing::Lines, None).unwrap();
    assert_eq!(sink.record(&events()[0]), Err(Error::Audit));
    assert_eq!(sink.record(&events()[1]), Err(Error::Audit));
    for bad in ["", "-", "has space", "é"] {
        assert!(
            SyslogSink::new(
                Vec::new(),
                &key(),
                &mut getrandom::SysRng,
                Framing::Lines,
                Some(bad)
            )
            .is_err(),
            "{bad:?}"
        );
    }
    // A record of another log, forwarded: the same text as the sink writes.
    let (msgs, id) = messages(None);
    let r = parse_message(&msgs[2]).unwrap();
    assert_eq!(format_message(2, &id, &r.event, &r.mac, None), msgs[2]);
}
