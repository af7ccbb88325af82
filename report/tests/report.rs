//! The report over fixture databases: a registry with known latencies, a
//! campaign half done, refusals and corruption in the audit table, key
//! records under two KEKs. The figures of `report.json` are checked against
//! what these tests compute from the fixture's own inputs; the page is
//! checked for escaping and rendered in headless Chromium.
//!
//! The fixture runs on an SQLite file, and also on PostgreSQL when
//! `DATABASE_URL` names a database the test may create a schema in (as
//! `cargo xtask test` and `cargo xtask pg -- …` set it).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    reason = "test code: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use dlms_sec::audit::{AuditAction, AuditEvent, AuditSink, Outcome, Timestamp};
use dlms_sec::key::AuditKey;
use dlms_sec::key::package::{KeyCheckValue, PackagedRecord};
use dlms_sec::keystore::{KeySlot, conformance};
use dlms_sec::{Client, KeyRole, SystemTitle};
use dlms_sec_report::{ComplianceReport, compute, escape, render_html, write};
use dlms_sec_store::{DatabaseAuditSink, DeviceEntry, Store};
use serde_json::{Value, json};

const DAY: u64 = 86_400;
/// The report's `now`: 2025-11-01T00:00:00Z.
const NOW: u64 = 1_761_955_200;

fn audit_key() -> AuditKey {
    AuditKey::from_bytes([0x5C; 16])
}

fn title(b: u8) -> SystemTitle {
    SystemTitle::new([0x4D, 0x4D, 0x4D, 0, 0, 0, 0x10, b])
}

fn out_dir(name: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("report")
        .join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sqlite_store(dir: &Path) -> Store {
    Store::open(&format!("sqlite://{}", dir.join("fixture.db").display())).unwrap()
}

/// A device of the fixture: commissioned `days_ago` days (and `extra`
/// seconds) before `NOW`, rotated `latency` seconds after commissioning.
struct Dev {
    b: u8,
    commissioned_at: u64,
    rotated_after: Option<u64>,
}

fn devices() -> Vec<Dev> {
    let at = |days: u64, extra: u64| NOW - days * DAY - extra;
    let d = |b, commissioned_at, rotated_after| Dev {
        b,
        commissioned_at,
        rotated_after,
    };
    vec![
        // Rotated within the window, one exactly on the 7-day line.
        d(1, at(40, 0), Some(DAY / 2)),
        d(2, at(35, 0), Some(DAY + 5)),
        d(3, at(30, 0), Some(3 * DAY + 1)),
        d(4, at(25, 0), Some(7 * DAY)),
        // Rotated late.
        d(5, at(60, 0), Some(7 * DAY + 1)),
        d(6, at(50, 0), Some(10 * DAY)),
        d(7, at(90, 0), Some(20 * DAY)),
        // Not rotated, window open.
        d(8, at(2, 0), None),
        d(9, at(6, 3_600), None),
        d(10, at(7, 0), None),
        // Not rotated, overdue.
        d(11, at(8, 0), None),
        d(12, at(30, 0), None),
        d(13, at(7, 1), None),
        // Commissioned after `now` (a clock ahead): age zero.
        d(14, NOW + DAY, None),
    ]
}

/// The audit events of the fixture, and the KEK check values they name.
fn events(kek_a: KeyCheckValue, kek_b: KeyCheckValue) -> Vec<AuditEvent> {
    let t = |day: u64, s: u64| Timestamp(NOW - day * DAY + s);
    let e = AuditEvent::new;
    vec![
        e(AuditAction::Packaged, Outcome::Success, t(20, 10))
            .with_device(title(1))
            .with_kek(kek_a),
        e(AuditAction::AccessRefused, Outcome::Refused, t(5, 100)).with_device(title(2)),
        e(AuditAction::AccessRefused, Outcome::Refused, t(5, 200)).with_client(Client::Public),
        e(
            AuditAction::AuthenticationFailed,
            Outcome::Failure,
            t(4, 50),
        )
        .with_device(title(3)),
        e(AuditAction::ReplayRejected, Outcome::Refused, t(4, 60)).with_device(title(3)),
        e(AuditAction::Activated, Outcome::Success, t(4, 70)).with_device(title(3)),
        e(AuditAction::CorruptionDetected, Outcome::Failure, t(3, 5))
            .with_device(title(4))
            .with_kek(kek_b),
        e(AuditAction::Generated, Outcome::Failure, t(3, 9)),
        e(AuditAction::Packaged, Outcome::Success, t(1, 1))
            .with_device(title(5))
            .with_kek(kek_a),
    ]
}

fn rec(slot: &KeySlot, generation: u32, seed: u8) -> PackagedRecord {
    conformance::test_record(slot, generation, seed).unwrap()
}

/// Fills `store` with the fixture; returns the audit events and the key
/// records written.
fn fill(store: &Store) -> (Vec<AuditEvent>, Vec<(PackagedRecord, &'static str)>) {
    for d in devices() {
        let e = DeviceEntry::commissioned(title(d.b), d.commissioned_at, 0);
        store.register_device(&e).unwrap();
        if let Some(l) = d.rotated_after {
            store
                .mark_rotated(&title(d.b), d.commissioned_at + l)
                .unwrap();
        }
    }
    let half: Vec<SystemTitle> = (1..=6).map(title).collect();
    store
        .campaign_start(
            "kek-compromise-2025",
            "Shared Key compromise",
            &half,
            NOW - 3 * DAY,
        )
        .unwrap();
    for b in [2, 4, 6] {
        store
            .campaign_mark_done("kek-compromise-2025", &title(b))
            .unwrap();
    }
    store
        .campaign_start("planned-2025", "yearly re-key", &[title(9)], NOW - 9 * DAY)
        .unwrap();
    store.campaign_mark_done("planned-2025", &title(9)).unwrap();

    let mk = KeySlot {
        device: title(1),
        client: None,
        role: KeyRole::Master,
    };
    let guek = KeySlot {
        device: title(1),
        client: Some(Client::Management),
        role: KeyRole::GlobalUnicastEncryption,
    };
    let records = vec![(rec(&mk, 1, 1), "active"), (rec(&guek, 1, 2), "active")];
    store
        .put_initial_many(&records.iter().map(|(r, _)| *r).collect::<Vec<_>>())
        .unwrap();
    let pending = rec(&guek, 2, 3);
    store.put_pending(&pending).unwrap();
    let mut records = records;
    records.push((pending, "pending"));

    let kek_a = records[0].0.kek_check_value();
    let kek_b = KeyCheckValue([0xB0, 0x0B, 0x1E]);
    let events = events(kek_a, kek_b);
    let mut sink = DatabaseAuditSink::open(store, &audit_key(), &mut getrandom::SysRng).unwrap();
    for e in &events {
        sink.record(e).unwrap();
    }
    (events, records)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02X}")).collect()
}

/// The date of a day number, computed from the fixture's `NOW`, whose date
/// is known (2025-11-01), counting back within October 2025.
fn october_date(days_before_now: u64) -> String {
    format!("2025-10-{:02}", 32 - days_before_now)
}

/// A KEK's audit events, first and last time seen, and records by state.
type KekSeen = (u64, Option<u64>, Option<u64>, [u64; 3]);

/// What the report must say about the fixture, computed from its inputs.
fn expected(events: &[AuditEvent], records: &[(PackagedRecord, &str)]) -> Value {
    let window = 7 * DAY;
    let mut bins = vec![(0u64, 0u64); 15];
    let (mut rw, mut rl, mut uo, mut uopen) = (0, 0, 0, 0);
    let mut overdue = Vec::new();
    let devs = devices();
    for d in &devs {
        let secs = match d.rotated_after {
            Some(l) => l,
            None => NOW.saturating_sub(d.commissioned_at),
        };
        let bin = ((secs / DAY) as usize).min(14);
        match d.rotated_after {
            Some(_) => bins[bin].0 += 1,
            None => bins[bin].1 += 1,
        }
        let late = secs > window;
        match (d.rotated_after.is_some(), late) {
            (true, false) => rw += 1,
            (true, true) => rl += 1,
            (false, true) => uo += 1,
            (false, false) => uopen += 1,
        }
        if late {
            overdue.push(json!({
                "device": hex(title(d.b).as_bytes()),
                "commissioned_at": d.commissioned_at,
                "rotated_at": d.rotated_after.map(|l| d.commissioned_at + l),
                "seconds": secs,
                "days": secs / DAY,
            }));
        }
    }
    overdue.sort_by(|a, b| a["device"].as_str().cmp(&b["device"].as_str()));
    let bins: Vec<Value> = bins
        .iter()
        .enumerate()
        .map(|(i, (r, n))| {
            json!({
                "from_day": i,
                "to_day": if i < 14 { Some(i + 1) } else { None },
                "rotated": r,
                "not_rotated": n,
            })
        })
        .collect();

    // Refusals and failures per day, from the events' own fields.
    let mut days: BTreeMap<u64, [u64; 5]> = BTreeMap::new();
    let mut totals = [0u64; 5];
    for e in events {
        let i = match (e.action, e.outcome) {
            (AuditAction::AccessRefused, _) => 0,
            (AuditAction::AuthenticationFailed, _) => 1,
            (AuditAction::ReplayRejected, _) => 2,
            (AuditAction::CorruptionDetected, _) => 3,
            (_, Outcome::Refused | Outcome::Failure) => 4,
            _ => continue,
        };
        days.entry(e.time.0 / DAY).or_default()[i] += 1;
        totals[i] += 1;
    }
    let counts = |c: [u64; 5]| {
        json!({
            "access_refused": c[0],
            "authentication_failed": c[1],
            "replay_rejected": c[2],
            "corruption_detected": c[3],
            "other_refused_or_failed": c[4],
        })
    };
    let per_day: Vec<Value> = days
        .iter()
        .map(|(d, c)| {
            json!({
                "day": october_date(NOW / DAY - d),
                "start": d * DAY,
                "counts": counts(*c),
            })
        })
        .collect();

    // KEKs: audit events naming them, key records by state.
    let mut keks: BTreeMap<[u8; 3], KekSeen> = BTreeMap::new();
    for e in events {
        if let Some(k) = e.kek {
            let v = keks.entry(k.0).or_default();
            v.0 += 1;
            v.1 = Some(v.1.map_or(e.time.0, |f| f.min(e.time.0)));
            v.2 = Some(v.2.map_or(e.time.0, |l| l.max(e.time.0)));
        }
    }
    for (r, state) in records {
        let v = keks.entry(r.kek_check_value().0).or_default();
        let i = ["active", "pending", "previous"]
            .iter()
            .position(|s| s == state)
            .unwrap();
        v.3[i] += 1;
    }
    let keks: Vec<Value> = keks
        .iter()
        .map(|(k, (n, first, last, st))| {
            json!({
                "kek": hex(k),
                "audit_events": n,
                "first_seen": first,
                "last_seen": last,
                "active_records": st[0],
                "pending_records": st[1],
                "previous_records": st[2],
            })
        })
        .collect();

    json!({
        "now": NOW,
        "rotation_window": window,
        "latency": {
            "devices": devs.len(),
            "rotated_within": rw,
            "rotated_late": rl,
            "unrotated_overdue": uo,
            "unrotated_open": uopen,
            "within": rw,
            "beyond": rl + uo,
            "bins": bins,
        },
        "overdue": overdue,
        "campaigns": [
            {"id": "kek-compromise-2025", "reason": "Shared Key compromise",
             "started_at": NOW - 3 * DAY, "total": 6, "done": 3, "complete": false},
            {"id": "planned-2025", "reason": "yearly re-key",
             "started_at": NOW - 9 * DAY, "total": 1, "done": 1, "complete": true},
        ],
        "events": {
            "read": events.len(),
            "totals": counts(totals),
            "per_day": per_day,
        },
        "keks": keks,
    })
}

/// Builds the fixture in `store`, writes the report into `dir`, and checks
/// `report.json` against the fixture's inputs.
fn fixture_report_matches(store: &Store, dir: &Path) -> ComplianceReport {
    let (events, records) = fill(store);
    let report = compute(store, Some(&audit_key()), NOW).unwrap();
    write(&report, dir).unwrap();
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let mut want = expected(&events, &records);

    // The audit verdict: every row verified, under the chain's id.
    let audit = &json["audit"];
    assert_eq!(audit["status"], "verified");
    assert_eq!(audit["count"], events.len());
    assert_eq!(audit["chain_id"].as_str().unwrap().len(), 32);
    want["audit"] = audit.clone();
    assert_eq!(json, want);

    // The fixture covers every case the report distinguishes.
    let l = &report.latency;
    assert_eq!(
        (
            l.rotated_within,
            l.rotated_late,
            l.unrotated_overdue,
            l.unrotated_open
        ),
        (4, 3, 3, 4)
    );
    assert_eq!(report.overdue.len(), 6);
    assert_eq!(report.events.per_day.len(), 3);
    assert_eq!(report.keks.len(), 3);
    // The JSON reads back as the report.
    let back: ComplianceReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
    report
}

#[test]
fn fixture_on_sqlite() {
    let dir = out_dir("sqlite");
    let store = sqlite_store(&dir);
    let report = fixture_report_matches(&store, &dir);
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(html, render_html(&report));
    for want in [
        "kek-compromise-2025",
        "3 / 6",
        "4D4D4D000000100C",
        "2025-10-27",
        "7 days",
    ] {
        assert!(html.contains(want), "{want} missing from the page");
    }
}

#[test]
fn fixture_on_postgres() {
    let Ok(base) = std::env::var("DATABASE_URL") else {
        eprintln!("fixture_on_postgres: DATABASE_URL is not set; PostgreSQL not tested");
        return;
    };
    let schema = format!("report_test_{}", std::process::id());
    let mut c = postgres::Client::connect(&base, postgres::NoTls).unwrap();
    c.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))
    .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let store = Store::open(&format!("{base}{sep}options=-csearch_path%3D{schema}")).unwrap();
    fixture_report_matches(&store, &out_dir("postgres"));
}

#[test]
fn another_audit_key_breaks_the_chain_and_counts_nothing() {
    let dir = out_dir("broken");
    let store = sqlite_store(&dir);
    fill(&store);
    let report = compute(&store, Some(&AuditKey::from_bytes([0x11; 16])), NOW).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["audit"]["status"], "broken");
    assert_eq!(json["audit"]["seq"], 0);
    assert!(json["audit"]["reason"].as_str().unwrap().contains("MAC"));
    assert_eq!(report.events.read, 0);
    assert!(report.events.per_day.is_empty());
    // Only the key records name KEKs now.
    assert!(report.keks.iter().all(|k| k.audit_events == 0));
    assert_eq!(report.keks.len(), 2);
    assert!(render_html(&report).contains("Broken at row 0"));

    let unchecked = compute(&store, None, NOW).unwrap();
    assert_eq!(
        serde_json::to_value(&unchecked).unwrap()["audit"]["status"],
        "not-checked"
    );
    assert_eq!(unchecked.latency, report.latency);
}

#[test]
fn an_empty_database_gives_a_valid_report() {
    let dir = out_dir("empty");
    let store = sqlite_store(&dir);
    let report = compute(&store, Some(&audit_key()), NOW).unwrap();
    write(&report, &dir).unwrap();
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["latency"]["devices"], 0);
    let bins = json["latency"]["bins"].as_array().unwrap();
    assert_eq!(bins.len(), 15);
    assert!(
        bins.iter()
            .all(|b| b["rotated"] == 0 && b["not_rotated"] == 0)
    );
    assert_eq!(json["overdue"], json!([]));
    assert_eq!(json["campaigns"], json!([]));
    assert_eq!(json["events"]["per_day"], json!([]));
    assert_eq!(json["keks"], json!([]));
    assert_eq!(
        json["audit"],
        json!({"status": "verified", "count": 0, "chain_id": null})
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.ends_with("</html>\n"));
    assert!(html.contains("No campaign has been started."));
}

#[test]
fn hostile_strings_are_escaped() {
    let dir = out_dir("hostile");
    let store = sqlite_store(&dir);
    let id = "<script>alert(\"id\")</script>&'";
    let reason = "<img src=x onerror=alert(1)>";
    store
        .campaign_start(id, reason, &[title(1)], NOW - DAY)
        .unwrap();
    let report = compute(&store, Some(&audit_key()), NOW).unwrap();
    assert_eq!(report.campaigns[0].id, id);
    let html = render_html(&report);
    assert!(!html.contains("<script"), "a script element on the page");
    assert!(!html.contains("<img"), "an img element on the page");
    assert!(html.contains("&lt;script&gt;alert(&quot;id&quot;)&lt;/script&gt;&amp;&#39;"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert_eq!(escape("a<b>&\"'c"), "a&lt;b&gt;&amp;&quot;&#39;c");
}

#[test]
fn the_page_loads_nothing() {
    let dir = out_dir("offline");
    let store = sqlite_store(&dir);
    fill(&store);
    let html = render_html(&compute(&store, Some(&audit_key()), NOW).unwrap());
    assert!(!html.contains("://"), "a URL on the page");
    assert!(!html.contains("<script"));
    assert!(!html.contains(" href="));
    assert!(!html.contains(" src="));
    assert!(html.contains("default-src 'none'"));
    // Charts are inline SVG drawn from the figures.
    assert_eq!(html.matches("<svg ").count(), 2 + 2);
}

/// Chromium, if it is installed: its command name.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn the_page_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is not installed (`apt-get install -y chromium`; `cargo xtask test` installs it)"
        );
        eprintln!("the_page_renders_in_headless_chromium: chromium not installed; skipped");
        return;
    };
    let dir = out_dir("chromium");
    let store = sqlite_store(&dir);
    let report = fill_and_write(&store, &dir);
    assert!(!report.overdue.is_empty());
    let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot.png");
    let _ = std::fs::remove_file(&png);
    let html = dir.join("report.html").canonicalize().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", dir.join("profile").display()),
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,2000",
            &format!("file://{}", html.display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // A 1280×2000 page with text and charts compresses to far more than
    // a blank one.
    assert!(bytes.len() > 20_000, "screenshot of {} octets", bytes.len());
    eprintln!("screenshot: {}", png.display());
}

fn fill_and_write(store: &Store, dir: &Path) -> ComplianceReport {
    fill(store);
    let report = compute(store, Some(&audit_key()), NOW).unwrap();
    write(&report, dir).unwrap();
    report
}
