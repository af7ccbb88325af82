//! `dlms-sec audit verify` driven as a user drives it: a good log and a
//! tampered one, in SQLite (a temporary file) and in JSON lines; the key
//! from --key-file, --keys and the environment; stdout, stderr and the exit
//! status checked.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "test code: a panic is a failed test"
)]

mod support;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;

use dlms_sec::audit::{
    AuditAction, AuditEvent, AuditSink, NodeName, Outcome, Principal, Reason, Timestamp,
};
use dlms_sec::key::AuditKey;
use dlms_sec_services::jsonl::JsonLinesSink;
use dlms_sec_store::{DatabaseAuditSink, Store};
use support::{dlms_sec, finish};

const KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
const OTHER: &str = "5b5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

fn command(args: &[&str]) -> Command {
    let mut c = dlms_sec(args);
    c.env_remove("DLMS_AUDIT");
    c
}

/// Success: exit 0, nothing on stderr, one line on stdout (returned).
fn ok(c: &mut Command) -> String {
    let out = finish(c, None);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(out.stderr, "");
    let line = out.stdout.trim_end_matches('\n');
    assert!(!line.contains('\n'), "one line: {line}");
    line.to_owned()
}

/// Failure: the exit status, no stdout, one `dlms-sec: ` line on stderr.
fn fails(c: &mut Command, code: i32) -> String {
    let out = finish(c, None);
    assert_eq!(
        out.code, code,
        "stdout: {} stderr: {}",
        out.stdout, out.stderr
    );
    assert_eq!(out.stdout, "");
    assert!(out.stderr.starts_with("dlms-sec: "), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    out.stderr.trim_end().to_owned()
}

fn temp(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-audit");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}-{name}", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

fn key_file(hex: &str) -> PathBuf {
    let path = temp(&format!("key-{hex}"));
    std::fs::write(&path, format!("{hex}\n")).unwrap();
    path
}

fn key() -> AuditKey {
    let mut k = [0u8; 16];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&KEY[2 * i..2 * i + 2], 16).unwrap();
    }
    AuditKey::from_bytes(k)
}

/// Three events without context (v1), then three with (v2).
fn events() -> Vec<AuditEvent> {
    (0..6)
        .map(|i| {
            let e = AuditEvent::new(
                AuditAction::Packaged,
                Outcome::Success,
                Timestamp(1_765_000_000 + i),
            )
            .with_generation(u32::try_from(i).unwrap());
            if i < 3 {
                e
            } else {
                e.with_principal(Principal::operator("alice").unwrap())
                    .with_node(NodeName::new("s1sp-a").unwrap())
                    .with_reason(Reason::ScheduledRotation)
            }
        })
        .collect()
}

fn jsonl_log(name: &str) -> (PathBuf, String) {
    let path = temp(name);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let mut sink = JsonLinesSink::new(file, &key(), &mut getrandom::SysRng).unwrap();
    for e in events() {
        sink.record(&e).unwrap();
    }
    let chain = hex_upper(sink.chain_id().as_bytes());
    (path, chain)
}

fn sqlite_log(name: &str) -> (PathBuf, String, String) {
    let path = temp(name);
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url).unwrap();
    let mut sink = DatabaseAuditSink::open(&store, &key(), &mut getrandom::SysRng).unwrap();
    for e in events() {
        sink.record(&e).unwrap();
    }
    let chain = hex_upper(sink.chain_id().as_bytes());
    (path, url, chain)
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

#[test]
fn a_good_jsonl_log_verifies() {
    let (log, chain) = jsonl_log("good.jsonl");
    let k = key_file(KEY);
    let args = [
        "audit",
        "verify",
        "--jsonl",
        log.to_str().unwrap(),
        "--key-file",
        k.to_str().unwrap(),
    ];
    assert_eq!(
        ok(&mut command(&args)),
        format!("verified 6 records, chain {chain}")
    );
    // The same with the record count kept elsewhere.
    let mut with_count = args.to_vec();
    with_count.extend(["--expect-records", "6"]);
    ok(&mut command(&with_count));
    let mut short = args.to_vec();
    short.extend(["--expect-records", "7"]);
    let e = fails(&mut command(&short), 1);
    assert!(e.contains("seq 6") && e.contains("truncated"), "{e}");
    // The key from --keys FILE and from the environment.
    let keys = temp("keys");
    std::fs::write(&keys, format!("# the audit key\nAUDIT={KEY}\n")).unwrap();
    ok(&mut command(&[
        "audit",
        "verify",
        "--jsonl",
        log.to_str().unwrap(),
        "--keys",
        keys.to_str().unwrap(),
    ]));
    ok(command(&["audit", "verify", "--jsonl", log.to_str().unwrap()]).env("DLMS_AUDIT", KEY));
}

#[test]
fn a_tampered_jsonl_log_reports_the_first_break() {
    let (log, _) = jsonl_log("tampered.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let k = key_file(KEY);
    let run = |text: &str| {
        std::fs::write(&log, text).unwrap();
        fails(
            &mut command(&[
                "audit",
                "verify",
                "--jsonl",
                log.to_str().unwrap(),
                "--key-file",
                k.to_str().unwrap(),
            ]),
            1,
        )
    };
    // A v1 record altered.
    let e = run(&text.replacen("\"generation\":2", "\"generation\":9", 1));
    assert_eq!(
        e,
        "dlms-sec: audit log broken at seq 2 (line 3): MAC does not verify (altered or forged record)"
    );
    // A v2 context field altered.
    let e = run(&text.replacen("operator:alice", "operator:alicf", 1));
    assert!(e.contains("at seq 3 (line 4): MAC does not verify"), "{e}");
    // A record removed.
    let lines: Vec<&str> = text.lines().collect();
    let mut removed = lines.clone();
    removed.remove(4);
    let e = run(&(removed.join("\n") + "\n"));
    assert!(
        e.contains("at seq 4 (line 5): sequence number 5 where 4 belongs"),
        "{e}"
    );
    // Under another key, the first record.
    std::fs::write(&log, &text).unwrap();
    let other = key_file(OTHER);
    let e = fails(
        &mut command(&[
            "audit",
            "verify",
            "--jsonl",
            log.to_str().unwrap(),
            "--key-file",
            other.to_str().unwrap(),
        ]),
        1,
    );
    assert!(e.contains("at seq 0 (line 1)"), "{e}");
}

#[test]
fn a_good_sqlite_log_verifies() {
    let (_, url, chain) = sqlite_log("good.db");
    let k = key_file(KEY);
    assert_eq!(
        ok(&mut command(&[
            "audit",
            "verify",
            "--database",
            &url,
            "--key-file",
            k.to_str().unwrap()
        ])),
        format!("verified 6 records, chain {chain}")
    );
    let e = fails(
        &mut command(&[
            "audit",
            "verify",
            "--database",
            &url,
            "--key-file",
            k.to_str().unwrap(),
            "--expect-records",
            "7",
        ]),
        1,
    );
    assert!(e.contains("6 records, 7 expected (truncated)"), "{e}");
}

#[test]
fn a_tampered_sqlite_log_reports_the_first_break() {
    let (path, url, _) = sqlite_log("tampered.db");
    let k = key_file(KEY);
    let c = rusqlite::Connection::open(&path).unwrap();
    // One octet of the v2 record at seq 4 (its node name) changed.
    let mut event: Vec<u8> = c
        .query_row("SELECT event FROM audit_log WHERE seq = 4", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(event[0], 2, "a v2 record");
    let at = event.windows(6).position(|w| w == b"s1sp-a").unwrap();
    event[at + 5] = b'b';
    c.execute("UPDATE audit_log SET event = ?1 WHERE seq = 4", [&event])
        .unwrap();
    let args = [
        "audit",
        "verify",
        "--database",
        &url,
        "--key-file",
        k.to_str().unwrap(),
    ];
    let e = fails(&mut command(&args), 1);
    assert_eq!(
        e,
        "dlms-sec: audit log broken at seq 4: MAC does not verify (altered or forged row)"
    );
    // A row removed.
    c.execute("DELETE FROM audit_log WHERE seq = 1", [])
        .unwrap();
    let e = fails(&mut command(&args), 1);
    assert_eq!(
        e,
        "dlms-sec: audit log broken at seq 1: seq 2 where 1 belongs"
    );
}

#[test]
fn usage_errors_exit_2() {
    let k = key_file(KEY);
    let k = k.to_str().unwrap();
    let e = fails(&mut command(&["audit", "verify", "--key-file", k]), 2);
    assert!(e.contains("--database URL or --jsonl FILE"), "{e}");
    let e = fails(
        &mut command(&[
            "audit",
            "verify",
            "--jsonl",
            "a",
            "--database",
            "b",
            "--key-file",
            k,
        ]),
        2,
    );
    assert!(e.contains("--database URL or --jsonl FILE"), "{e}");
    let missing = temp("missing.db");
    let url = format!("sqlite://{}", missing.display());
    let e = fails(
        &mut command(&["audit", "verify", "--database", &url, "--key-file", k]),
        2,
    );
    assert!(e.contains("no file"), "{e}");
    assert!(!missing.exists(), "verifying creates no database");
    let e = fails(
        &mut command(&[
            "audit",
            "verify",
            "--jsonl",
            missing.to_str().unwrap(),
            "--key-file",
            k,
        ]),
        2,
    );
    assert!(e.contains("cannot read --jsonl"), "{e}");
    let (log, _) = jsonl_log("nokey.jsonl");
    let e = fails(
        &mut command(&["audit", "verify", "--jsonl", log.to_str().unwrap()]),
        2,
    );
    assert!(e.contains("missing key AUDIT"), "{e}");
    let short = key_file("0011");
    let e = fails(
        &mut command(&[
            "audit",
            "verify",
            "--jsonl",
            log.to_str().unwrap(),
            "--key-file",
            short.to_str().unwrap(),
        ]),
        2,
    );
    assert!(e.contains("--key-file"), "{e}");
}
