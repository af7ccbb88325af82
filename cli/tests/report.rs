//! `dlms-sec report` driven as a user drives it, over a small SQLite store:
//! the files written, the summary line, the exit status.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "test code: a panic is a failed test"
)]

mod support;

use std::path::{Path, PathBuf};

use dlms_sec::SystemTitle;
use dlms_sec::audit::{AuditAction, AuditEvent, AuditSink, Outcome, Timestamp};
use dlms_sec::key::AuditKey;
use dlms_sec_store::{DatabaseAuditSink, DeviceEntry, Store};
use serde_json::Value;
use support::{Out, dlms_sec, finish};

const DAY: u64 = 86_400;
const NOW: u64 = 1_761_955_200;
const KEY: [u8; 16] = [0x42; 16];

fn run(args: &[&str]) -> Out {
    finish(dlms_sec(&["report"]).args(args), None)
}

/// A directory with a store holding two devices (one overdue), a
/// campaign half done and two audit events, and a key file.
fn fixture(name: &str) -> (PathBuf, String, PathBuf) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-report-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("store.db").display());
    let store = Store::open(&url).unwrap();
    let t = |b: u8| SystemTitle::new([0x4D, 0x4D, 0x4D, 0, 0, 0, 0, b]);
    store
        .register_device(&DeviceEntry::commissioned(t(1), NOW - 20 * DAY, 0))
        .unwrap();
    store.mark_rotated(&t(1), NOW - 18 * DAY).unwrap();
    store
        .register_device(&DeviceEntry::commissioned(t(2), NOW - 9 * DAY, 0))
        .unwrap();
    store
        .campaign_start("c1", "compromise", &[t(1), t(2)], NOW - DAY)
        .unwrap();
    store.campaign_mark_done("c1", &t(1)).unwrap();
    let key = AuditKey::from_bytes(KEY);
    let mut sink = DatabaseAuditSink::open(&store, &key, &mut getrandom::SysRng).unwrap();
    for action in [AuditAction::AccessRefused, AuditAction::CorruptionDetected] {
        sink.record(&AuditEvent::new(
            action,
            Outcome::Refused,
            Timestamp(NOW - DAY),
        ))
        .unwrap();
    }
    let key_file = dir.join("audit.key");
    std::fs::write(&key_file, "42424242 42424242 42424242 42424242\n").unwrap();
    (dir, url, key_file)
}

#[test]
fn writes_both_files_and_a_summary() {
    let (dir, url, key) = fixture("ok");
    let out_dir = dir.join("out");
    let now = NOW.to_string();
    let out = run(&[
        "--database",
        &url,
        "--out",
        out_dir.to_str().unwrap(),
        "--audit-key-file",
        key.to_str().unwrap(),
        "--now",
        &now,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr, "");
    assert_eq!(
        out.stdout.trim_end(),
        format!(
            "{}: 2 devices, 1 rotated within 7 days, 1 beyond; 0 of 1 campaigns complete; \
             audit chain verified (2 rows)",
            out_dir.display()
        )
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["now"], NOW);
    assert_eq!(json["overdue"][0]["device"], "4D4D4D0000000002");
    assert_eq!(json["overdue"][0]["days"], 9);
    assert_eq!(json["campaigns"][0]["done"], 1);
    assert_eq!(json["events"]["totals"]["access_refused"], 1);
    assert_eq!(json["events"]["totals"]["corruption_detected"], 1);
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(html.contains("4D4D4D0000000002"));
}

#[test]
fn without_a_key_the_chain_is_not_checked() {
    let (dir, url, _) = fixture("nokey");
    let out_dir = dir.join("out");
    let out = run(&["--database", &url, "--out", out_dir.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("audit chain not checked"));
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["audit"]["status"], "not-checked");
    assert_eq!(json["events"]["read"], 0);
    // The system clock stands in for --now.
    assert!(json["now"].as_u64().unwrap() > NOW);
}

#[test]
fn a_broken_chain_writes_the_report_and_exits_1() {
    let (dir, url, key) = fixture("broken");
    std::fs::write(&key, "00".repeat(16)).unwrap();
    let out_dir = dir.join("out");
    let out = run(&[
        "--database",
        &url,
        "--out",
        out_dir.to_str().unwrap(),
        "--audit-key-file",
        key.to_str().unwrap(),
        "--now",
        "1761955200",
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("audit chain broken at row 0"));
    assert!(
        out.stderr.starts_with("dlms-sec: audit log at seq 0"),
        "{}",
        out.stderr
    );
    assert!(out_dir.join("report.html").exists());
    assert!(out_dir.join("report.json").exists());
}

#[test]
fn usage_errors_exit_2() {
    let (dir, url, key) = fixture("usage");
    let out_dir = dir.join("out");
    let o = out_dir.to_str().unwrap();
    for (args, message) in [
        (vec!["--out", o], "missing --database"),
        (vec!["--database", &url], "missing --out"),
        (
            vec!["--database", "mysql://x", "--out", o],
            "--database: unsupported store URL",
        ),
        (
            vec!["--database", &url, "--out", o, "--now", "yesterday"],
            "--now: \"yesterday\" is not a time in Unix seconds",
        ),
        (
            vec![
                "--database",
                &url,
                "--out",
                o,
                "--audit-key-file",
                "/nonexistent/key",
            ],
            "cannot read --audit-key-file /nonexistent/key",
        ),
    ] {
        let out = run(&args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.starts_with(&format!("dlms-sec: {message}")),
            "{args:?}: {}",
            out.stderr
        );
    }
    std::fs::write(&key, "4242").unwrap();
    let out = run(&[
        "--database",
        &url,
        "--out",
        o,
        "--audit-key-file",
        key.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("2 octets, expected 16"),
        "{}",
        out.stderr
    );
    assert!(!out_dir.join("report.json").exists());
}
