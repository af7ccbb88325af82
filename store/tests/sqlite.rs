//! The behaviour suite on SQLite (fresh files, and in memory), plus what
//! only SQLite shows: several handles on one file, migrations from every
//! earlier version, rows tampered with by raw SQL, and a scan of the file
//! for clear keys.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "test code: a panic is a failed test"
)]

mod common;

use core::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use common::{Tamper, ckey, rec};
use dlms_sec::Client;
use dlms_sec::key::KEY_LEN;
use dlms_sec::keystore::{KeySlot, conformance};
use dlms_sec_store::{DeviceEntry, SCHEMA_VERSION, Store, StoreError};
use rusqlite::{Connection, params};

/// A path for a new database file, unique in this test run.
fn fresh_path() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("store-sqlite");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}-{n}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

fn open_fresh() -> Store {
    Store::open(&url(&fresh_path())).unwrap()
}

#[test]
fn a_store_is_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Store>();
}

#[test]
fn behaviour_on_files() {
    common::all(&open_fresh);
}

#[test]
fn behaviour_in_memory() {
    common::all(&|| Store::open("sqlite::memory:").unwrap());
}

fn slot_where(slot: &KeySlot) -> (Vec<u8>, i64, i64) {
    (
        slot.device.as_bytes().to_vec(),
        i64::from(Client::record_code(slot.client).unwrap()),
        i64::from(slot.role.code()),
    )
}

fn tamper(path: &Path, t: Tamper) {
    let c = Connection::open(path).unwrap();
    c.busy_timeout(core::time::Duration::from_secs(10)).unwrap();
    let edit_record = |slot: &KeySlot, state: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let (d, cl, r) = slot_where(slot);
        let mut blob: Vec<u8> = c
            .query_row(
                "SELECT record FROM key_records WHERE device=?1 AND client=?2 AND role=?3 AND state=?4",
                params![d, cl, r, state],
                |row| row.get(0),
            )
            .unwrap();
        f(&mut blob);
        let n = c
            .execute(
                "UPDATE key_records SET record=?5 WHERE device=?1 AND client=?2 AND role=?3 AND state=?4",
                params![d, cl, r, state, blob],
            )
            .unwrap();
        assert_eq!(n, 1);
    };
    match t {
        Tamper::FlipRecordOctet {
            slot,
            state,
            offset,
        } => edit_record(&slot, state, &|b| b[offset] ^= 0x01),
        Tamper::TruncateRecord { slot, state } => edit_record(&slot, state, &|b| {
            b.pop();
        }),
        Tamper::Generation { slot, state, value } => {
            let (d, cl, r) = slot_where(&slot);
            let n = c
                .execute(
                    "UPDATE key_records SET generation=?5 WHERE device=?1 AND client=?2 AND role=?3 AND state=?4",
                    params![d, cl, r, state, value],
                )
                .unwrap();
            assert_eq!(n, 1);
        }
        Tamper::Ceiling { key, value } => {
            let n = c
                .execute(
                    "UPDATE send_counters SET ceiling=?2 WHERE sender=?1",
                    params![key.sender.as_bytes(), value],
                )
                .unwrap();
            assert_eq!(n, 1);
        }
        Tamper::FlipAuditEvent { seq, offset } => {
            let seq = i64::try_from(seq).unwrap();
            let mut event: Vec<u8> = c
                .query_row("SELECT event FROM audit_log WHERE seq=?1", [seq], |r| {
                    r.get(0)
                })
                .unwrap();
            event[offset] ^= 0x01;
            let n = c
                .execute(
                    "UPDATE audit_log SET event=?2 WHERE seq=?1",
                    params![seq, event],
                )
                .unwrap();
            assert_eq!(n, 1);
        }
    }
}

#[test]
fn bad_input_is_corrupt_naming_the_row() {
    common::bad_input(&|| {
        let path = fresh_path();
        let store = Store::open(&url(&path)).unwrap();
        (store, Box::new(move |t| tamper(&path, t)))
    });
}

#[test]
fn audit_context_tampering_breaks_the_chain_at_its_row() {
    common::bad_audit_context(&|| {
        let path = fresh_path();
        let store = Store::open(&url(&path)).unwrap();
        (store, Box::new(move |t| tamper(&path, t)))
    });
}

/// Rows written by the database sink before audit v2 (events without
/// context, audit key sixteen 0x42 octets): `seq chain_id event mac`, hex.
const V1_ROWS: &str = include_str!("fixtures/audit-v1-rows.txt");

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn audit_rows_written_before_v2_verify_and_continue_with_v2_rows() {
    use dlms_sec::audit::AuditSink as _;
    use dlms_sec_store::{AuditBreakKind, DatabaseAuditSink, verify_audit};

    let path = fresh_path();
    let store = Store::open(&url(&path)).unwrap();
    let c = Connection::open(&path).unwrap();
    let mut chain = Vec::new();
    for line in V1_ROWS.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        chain = unhex(f[1]);
        c.execute(
            "INSERT INTO audit_log (seq, chain_id, event, mac) VALUES (?1, ?2, ?3, ?4)",
            params![
                f[0].parse::<i64>().unwrap(),
                unhex(f[1]),
                unhex(f[2]),
                unhex(f[3])
            ],
        )
        .unwrap();
    }
    let key = dlms_sec::key::AuditKey::from_bytes([0x42; 16]);
    let head = verify_audit(&store, &key).unwrap();
    assert_eq!(head.count, 4);
    assert_eq!(
        head.chain_id.unwrap().as_bytes().as_slice(),
        chain.as_slice()
    );
    let mut sink = DatabaseAuditSink::open(&store, &key, &mut getrandom::SysRng).unwrap();
    for i in 0..3 {
        sink.record(&common::event_v2(i)).unwrap();
    }
    drop(sink);
    assert_eq!(verify_audit(&store, &key).unwrap().count, 7);
    // An old row changed still breaks the chain there.
    tamper(&path, Tamper::FlipAuditEvent { seq: 1, offset: 10 });
    let brk = verify_audit(&store, &key).unwrap_err();
    assert_eq!(brk.seq, 1);
    assert!(
        matches!(brk.why, AuditBreakKind::BadMac | AuditBreakKind::Malformed),
        "{brk}"
    );
}

#[test]
fn two_handles_on_one_file_claim_disjoint_values() {
    let path = fresh_path();
    let a = Store::open(&url(&path)).unwrap();
    let b = Store::open(&url(&path)).unwrap();
    a.counter_create(&ckey(0), 0).unwrap();
    assert_eq!(
        b.counter_create(&ckey(0), 0),
        Err(StoreError::CounterExists)
    );
    let n = NonZeroU32::new(3).unwrap();
    let mut ranges: Vec<_> = std::thread::scope(|scope| {
        let hs: Vec<_> = [&a, &b, &a, &b]
            .into_iter()
            .map(|s| {
                scope.spawn(move || {
                    (0..40)
                        .map(|_| s.counter_claim(&ckey(0), n).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    ranges.sort_by_key(|r| r.start);
    for (i, r) in (0u32..).zip(&ranges) {
        assert_eq!(*r, (3 * i)..(3 * i + 3));
    }
    assert_eq!(ranges.len(), 160);
    // And a handle opened afterwards sees every claim.
    let c = Store::open(&url(&path)).unwrap();
    assert_eq!(c.counter_ceiling(&ckey(0)).unwrap(), Some(480));
}

#[test]
fn state_survives_a_reopen() {
    let path = fresh_path();
    let t = |b: u8| dlms_sec::SystemTitle::new([3, 0, 0, 0, 0, 0, 0, b]);
    {
        let s = Store::open(&url(&path)).unwrap();
        s.campaign_start("c", "compromise", &[t(1), t(2), t(3)], 5)
            .unwrap();
        s.campaign_mark_done("c", &t(2)).unwrap();
        s.put_initial(&rec(&common::MK, 0, 1)).unwrap();
        s.counter_create(&ckey(0), 0).unwrap();
        assert_eq!(
            s.counter_claim(&ckey(0), NonZeroU32::new(10).unwrap())
                .unwrap(),
            0..10
        );
    }
    let s = Store::open(&url(&path)).unwrap();
    assert_eq!(s.campaign_pending("c", 10).unwrap(), [t(1), t(3)]);
    assert_eq!(s.active(&common::MK).unwrap(), rec(&common::MK, 0, 1));
    assert_eq!(
        s.counter_claim(&ckey(0), NonZeroU32::new(1).unwrap())
            .unwrap(),
        10..11
    );
}

#[test]
fn the_file_is_in_wal_mode() {
    let path = fresh_path();
    let _s = Store::open(&url(&path)).unwrap();
    let c = Connection::open(&path).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// A device registered before an upgrade.
const V2_DEVICE: dlms_sec::SystemTitle = dlms_sec::SystemTitle::new([0x56, 0x32, 0, 0, 0, 0, 0, 1]);

#[test]
fn upgrades_from_every_earlier_version() {
    assert_eq!(SCHEMA_VERSION, 3);
    for from in 0..SCHEMA_VERSION {
        let path = fresh_path();
        {
            let s = Store::open_with_schema(&url(&path), from).unwrap();
            assert_eq!(s.schema_version().unwrap(), from);
            if from == 2 {
                // Version 2 has the registry and floors.
                s.register_device(&DeviceEntry::commissioned(V2_DEVICE, 0, 0))
                    .unwrap();
                s.raise_floor(&ckey(1), 9).unwrap();
            }
            if from >= 1 {
                s.put_initial(&rec(&common::AK, 2, 7)).unwrap();
                s.counter_create(&ckey(0), 40).unwrap();
                // Version 1 has no registry yet.
                assert!(
                    from > 1
                        || s.register_device(&DeviceEntry::commissioned(common::DEV, 0, 0))
                            .is_err()
                );
            } else {
                assert!(s.put_initial(&rec(&common::AK, 2, 7)).is_err());
            }
        }
        let s = Store::open(&url(&path)).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION, "from {from}");
        if from == 2 {
            assert!(s.device(&V2_DEVICE).unwrap().is_some());
            assert_eq!(s.floor(&ckey(1)).unwrap(), Some(9));
        }
        if from >= 1 {
            assert_eq!(s.active(&common::AK).unwrap(), rec(&common::AK, 2, 7));
            assert_eq!(s.counter_claim(&ckey(0), NonZeroU32::MIN).unwrap(), 40..41);
        }
        s.register_device(&DeviceEntry::commissioned(common::DEV, 0, 0))
            .unwrap();
        s.raise_floor(&ckey(0), 3).unwrap();
        // Opening again migrates nothing more.
        drop(s);
        assert_eq!(
            Store::open(&url(&path)).unwrap().schema_version().unwrap(),
            SCHEMA_VERSION
        );
    }
}

#[test]
fn a_newer_database_is_refused() {
    let path = fresh_path();
    drop(Store::open(&url(&path)).unwrap());
    let c = Connection::open(&path).unwrap();
    c.execute(
        "INSERT INTO schema_version (version) VALUES (?1)",
        [SCHEMA_VERSION + 1],
    )
    .unwrap();
    drop(c);
    assert_eq!(
        Store::open(&url(&path)).unwrap_err(),
        StoreError::Schema {
            found: SCHEMA_VERSION + 1,
            supported: SCHEMA_VERSION
        }
    );
    assert_eq!(
        Store::open_with_schema(&url(&fresh_path()), SCHEMA_VERSION + 1).unwrap_err(),
        StoreError::Schema {
            found: SCHEMA_VERSION + 1,
            supported: SCHEMA_VERSION
        }
    );
}

#[test]
fn urls_other_than_sqlite_are_refused() {
    for u in ["", "sqlite://", "mysql://x/y", "sqlite:/x", "file:x.db"] {
        assert_eq!(Store::open(u).unwrap_err(), StoreError::BadUrl, "{u}");
    }
}

/// Every occurrence of `needle` in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_clear_key_in_the_file() {
    let path = fresh_path();
    let s = Store::open(&url(&path)).unwrap();
    // test_record's keys are KEY_LEN octets equal to the seed.
    let seeds = common::seeds();
    let mut stored = Vec::new();
    for (i, seed) in seeds.iter().enumerate() {
        let device = dlms_sec::SystemTitle::new([5, 0, 0, 0, 0, 0, 0, u8::try_from(i).unwrap()]);
        for sl in [
            common::slot(device, None, dlms_sec::KeyRole::Master),
            common::slot(
                device,
                Some(Client::Management),
                dlms_sec::KeyRole::Authentication,
            ),
            common::slot(
                device,
                Some(Client::Management),
                dlms_sec::KeyRole::GlobalUnicastEncryption,
            ),
        ] {
            let r = conformance::test_record(&sl, 0, *seed).unwrap();
            s.put_initial(&r).unwrap();
            stored.push(r);
            let p = conformance::test_record(&sl, 1, seed.wrapping_add(0x40)).unwrap();
            s.put_pending(&p).unwrap();
            stored.push(p);
        }
    }
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        if let Ok(b) = std::fs::read(format!("{}{suffix}", path.display())) {
            bytes.extend(b);
        }
    }
    // The scan finds what is there: every packaged record.
    for r in &stored {
        assert!(
            contains(&bytes, r.as_bytes()),
            "{r:?} not found: the scan is blind"
        );
    }
    for seed in seeds.iter().flat_map(|s| [*s, s.wrapping_add(0x40)]) {
        assert!(
            !contains(&bytes, &[seed; KEY_LEN]),
            "clear key {seed:#04x} in the file"
        );
    }
}

#[test]
fn a_value_of_another_type_in_a_column_is_corrupt_naming_the_row() {
    // SQLite keeps whatever type a statement writes: a record rewritten
    // as text, a generation or a ceiling as text or a real.
    let path = fresh_path();
    let s = Store::open(&url(&path)).unwrap();
    let slot = KeySlot {
        device: dlms_sec::SystemTitle::new([7; 8]),
        client: Some(Client::Management),
        role: dlms_sec::key::KeyRole::Authentication,
    };
    s.put_initial(&rec(&slot, 0, 1)).unwrap();
    s.counter_create(&ckey(0), 1).unwrap();
    let c = Connection::open(&path).unwrap();
    let (d, cl, r) = slot_where(&slot);
    let corrupt_active = |what: &str| match s.active(&slot) {
        Err(StoreError::Corrupt { what: named }) => {
            assert!(named.contains("management"), "{what}: {named}");
        }
        other => panic!("{what}: {other:?}"),
    };
    for (what, sql) in [
        (
            "record as text",
            "UPDATE key_records SET record = 'x' || record WHERE device=?1 AND client=?2 AND role=?3",
        ),
        (
            "generation as text",
            "UPDATE key_records SET record = record, generation = 'zero' WHERE device=?1 AND client=?2 AND role=?3",
        ),
        (
            "generation as a real",
            "UPDATE key_records SET generation = 0.5 WHERE device=?1 AND client=?2 AND role=?3",
        ),
    ] {
        let fresh_record = rec(&slot, 0, 1);
        c.execute(
            "UPDATE key_records SET record = ?4, generation = 0 WHERE device=?1 AND client=?2 AND role=?3",
            params![d, cl, r, fresh_record.as_bytes().to_vec()],
        )
        .unwrap();
        assert_eq!(s.active(&slot).unwrap(), fresh_record);
        assert_eq!(c.execute(sql, params![d, cl, r]).unwrap(), 1, "{what}");
        corrupt_active(what);
    }
    c.execute("UPDATE send_counters SET ceiling = 'many'", [])
        .unwrap();
    assert!(matches!(
        s.counter_claim(&ckey(0), NonZeroU32::MIN),
        Err(StoreError::Corrupt { .. })
    ));
    drop(s);
    std::fs::remove_file(&path).unwrap();
}
