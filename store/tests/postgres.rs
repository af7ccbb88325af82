//! The behaviour suite on PostgreSQL, plus what only a server shows: stores
//! sharing one schema, opens racing to migrate, migrations from every
//! earlier version, rows tampered with by raw SQL, a `pg_dump` scanned for
//! clear keys, a node cut off inside a transaction (through a TCP relay
//! that stops passing bytes but keeps both sides open), and the server
//! going away in the middle of a call.
//!
//! Every test but the outage one needs `DATABASE_URL` (a database the tests
//! may create schemas in; `cargo xtask test` and `cargo xtask pg -- …` start
//! a throwaway server and set it) and fails without it. Each fresh store
//! lives in a new schema of that database, named in the store's URL with
//! `options=-csearch_path%3DSCHEMA`. The outage test starts a cluster of its
//! own under the target directory (it stops and restarts the server).
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
use core::time::Duration;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use common::{AK, DEV, GUEK, MK, Tamper, ckey, rec};
use dlms_sec::key::KEY_LEN;
use dlms_sec::keystore::{KeySlot, conformance};
use dlms_sec::{Client, KeyRole, SystemTitle};
use dlms_sec_store::{DeviceEntry, SCHEMA_VERSION, Store, StoreError};
use postgres::NoTls;

/// The database the tests use; a test without it fails, saying how to get it.
fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: the PostgreSQL tests need a database to create \
             schemas in. Run them with a throwaway server: \
             `cargo xtask pg -- cargo test -p dlms-sec-store` (or `cargo xtask test`)"
        )
    })
}

/// `url` with one more query parameter.
fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

/// A new, empty schema in the test database, and the URL of a store in it.
fn fresh_schema() -> (String, String) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let schema = format!("store_test_{}_{n}", std::process::id());
    let base = database_url();
    let mut c = postgres::Client::connect(&base, NoTls).unwrap();
    c.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))
    .unwrap();
    let url = with_param(&base, &format!("options=-csearch_path%3D{schema}"));
    (schema, url)
}

fn open_fresh() -> Store {
    Store::open(&fresh_schema().1).unwrap()
}

/// A raw connection to the store at `url` (its schema on the search path).
fn raw(url: &str) -> postgres::Client {
    postgres::Client::connect(url, NoTls).unwrap()
}

#[test]
fn behaviour() {
    common::all(&open_fresh);
}

fn slot_where(slot: &KeySlot) -> (Vec<u8>, i64, i64) {
    (
        slot.device.as_bytes().to_vec(),
        i64::from(Client::record_code(slot.client).unwrap()),
        i64::from(slot.role.code()),
    )
}

fn tamper(url: &str, t: Tamper) {
    let mut c = raw(url);
    let mut edit_record = |slot: &KeySlot, state: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let (d, cl, r) = slot_where(slot);
        let mut blob: Vec<u8> = c
            .query_one(
                "SELECT record FROM key_records WHERE device=$1 AND client=$2 AND role=$3 AND state=$4",
                &[&d, &cl, &r, &state],
            )
            .unwrap()
            .get(0);
        f(&mut blob);
        let n = c
            .execute(
                "UPDATE key_records SET record=$5 WHERE device=$1 AND client=$2 AND role=$3 AND state=$4",
                &[&d, &cl, &r, &state, &blob],
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
                    "UPDATE key_records SET generation=$5 WHERE device=$1 AND client=$2 AND role=$3 AND state=$4",
                    &[&d, &cl, &r, &state, &value],
                )
                .unwrap();
            assert_eq!(n, 1);
        }
        Tamper::Ceiling { key, value } => {
            let n = c
                .execute(
                    "UPDATE send_counters SET ceiling=$2 WHERE sender=$1",
                    &[&key.sender.as_bytes().to_vec(), &value],
                )
                .unwrap();
            assert_eq!(n, 1);
        }
        Tamper::FlipAuditEvent { seq, offset } => {
            let seq = i64::try_from(seq).unwrap();
            let mut event: Vec<u8> = c
                .query_one("SELECT event FROM audit_log WHERE seq=$1", &[&seq])
                .unwrap()
                .get(0);
            event[offset] ^= 0x01;
            let n = c
                .execute(
                    "UPDATE audit_log SET event=$2 WHERE seq=$1",
                    &[&seq, &event],
                )
                .unwrap();
            assert_eq!(n, 1);
        }
    }
}

#[test]
fn bad_input_is_corrupt_naming_the_row() {
    common::bad_input(&|| {
        let (_, url) = fresh_schema();
        let store = Store::open(&url).unwrap();
        (store, Box::new(move |t| tamper(&url, t)))
    });
}

#[test]
fn audit_context_tampering_breaks_the_chain_at_its_row() {
    common::bad_audit_context(&|| {
        let (_, url) = fresh_schema();
        let store = Store::open(&url).unwrap();
        (store, Box::new(move |t| tamper(&url, t)))
    });
}

#[test]
fn two_stores_on_one_schema_claim_disjoint_values() {
    let (_, url) = fresh_schema();
    let a = Store::open(&url).unwrap();
    let b = Store::open(&url).unwrap();
    a.counter_create(&ckey(0), 0).unwrap();
    assert_eq!(
        b.counter_create(&ckey(0), 0),
        Err(StoreError::CounterExists)
    );
    let n = NonZeroU32::new(3).unwrap();
    let mut ranges: Vec<_> = std::thread::scope(|scope| {
        let hs: Vec<_> = [&a, &b, &a, &b, &a, &b]
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
    assert_eq!(ranges.len(), 240);
    let c = Store::open(&url).unwrap();
    assert_eq!(c.counter_ceiling(&ckey(0)).unwrap(), Some(720));
}

#[test]
fn concurrent_slot_writers_are_serialised_not_refused() {
    let s = open_fresh();
    s.put_initial(&rec(&MK, 0, 1)).unwrap();
    // Writers of one slot wait for each other: each sees the state the
    // previous one left, so none is refused for a race (Conflict).
    std::thread::scope(|scope| {
        for t in 0..4u32 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..25u32 {
                    let g = 1 + i * 4 + t;
                    let seed = u8::try_from(g % 200).unwrap();
                    match s.put_pending(&rec(&MK, g, seed)) {
                        Ok(()) | Err(StoreError::StaleGeneration) => {}
                        Err(e) => panic!("put_pending {g}: {e}"),
                    }
                    match s.activate(&MK, g) {
                        Ok(()) | Err(StoreError::NoPending) => {}
                        Err(e) => panic!("activate {g}: {e}"),
                    }
                }
            });
        }
    });
    let active = s.active(&MK).unwrap().generation();
    assert!(active >= 97, "{active}");
    assert!(s.previous(&MK).unwrap().is_some());
}

#[test]
fn one_lease_holder_among_racing_takers() {
    let s = open_fresh();
    let won: Vec<bool> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..8)
            .map(|t| {
                let s = &s;
                scope.spawn(
                    move || match s.take_lease(&DEV, &format!("node-{t}"), 100, 50) {
                        Ok(l) => {
                            assert!(!l.taken_over);
                            true
                        }
                        Err(StoreError::Conflict) => false,
                        Err(e) => panic!("{e}"),
                    },
                )
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    // Once expired, racing takers again leave one holder, who took it over.
    let won: Vec<bool> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..8)
            .map(|t| {
                let s = &s;
                scope.spawn(
                    move || match s.take_lease(&DEV, &format!("late-{t}"), 150, 50) {
                        Ok(l) => {
                            assert!(l.taken_over);
                            true
                        }
                        Err(StoreError::Conflict) => false,
                        Err(e) => panic!("{e}"),
                    },
                )
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}

#[test]
fn stores_opening_at_once_migrate_once() {
    let (_, url) = fresh_schema();
    let stores: Vec<Result<Store, StoreError>> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..6).map(|_| scope.spawn(|| Store::open(&url))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for s in &stores {
        assert_eq!(
            s.as_ref().unwrap().schema_version().unwrap(),
            SCHEMA_VERSION
        );
    }
    let n: i64 = raw(&url)
        .query_one("SELECT count(*) FROM schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, i64::from(SCHEMA_VERSION));
}

/// A device registered before an upgrade.
const V2_DEVICE: SystemTitle = SystemTitle::new([0x56, 0x32, 0, 0, 0, 0, 0, 1]);

/// Another process changes a column's type under the statements a store's
/// connection has prepared (as a migration would): the call that meets a
/// statement whose result type changed prepares it afresh and succeeds,
/// reads and writes alike.
#[test]
fn statements_prepared_before_a_schema_change_are_prepared_again() {
    let (_, url) = fresh_schema();
    let s = Store::open(&url).unwrap();
    // Let the pool's spare connection come up: from then on each call is
    // served by the connection the call before it gave back (the pool
    // hands out the last one returned), whose statements are prepared.
    std::thread::sleep(Duration::from_millis(500));
    s.put_initial(&rec(&MK, 0, 1)).unwrap();
    s.put_pending(&rec(&MK, 1, 2)).unwrap();
    assert_eq!(s.active(&MK).unwrap(), rec(&MK, 0, 1));
    let mut other = raw(&url);
    let retype = |c: &mut postgres::Client, ty: &str| {
        c.batch_execute(&format!(
            "ALTER TABLE key_records ALTER COLUMN state TYPE {ty}"
        ))
        .unwrap();
    };

    retype(&mut other, "varchar(16)");
    assert_eq!(s.active(&MK).unwrap(), rec(&MK, 0, 1));
    s.activate(&MK, 1).unwrap();
    assert_eq!(s.pending(&MK).unwrap(), None);

    retype(&mut other, "text");
    s.put_pending(&rec(&MK, 2, 3)).unwrap();
    assert_eq!(s.active(&MK).unwrap(), rec(&MK, 1, 2));
    assert_eq!(s.previous(&MK).unwrap(), Some(rec(&MK, 0, 1)));
    assert_eq!(s.pending(&MK).unwrap(), Some(rec(&MK, 2, 3)));
}

#[test]
fn upgrades_from_every_earlier_version() {
    assert_eq!(SCHEMA_VERSION, 3);
    for from in 0..SCHEMA_VERSION {
        let (_, url) = fresh_schema();
        {
            let s = Store::open_with_schema(&url, from).unwrap();
            assert_eq!(s.schema_version().unwrap(), from);
            if from == 2 {
                // Version 2 has the registry and floors.
                s.register_device(&DeviceEntry::commissioned(V2_DEVICE, 0, 0))
                    .unwrap();
                s.raise_floor(&ckey(1), 9).unwrap();
            }
            if from >= 1 {
                s.put_initial(&rec(&AK, 2, 7)).unwrap();
                s.counter_create(&ckey(0), 40).unwrap();
                // Version 1 has no registry yet.
                assert!(
                    from > 1
                        || s.register_device(&DeviceEntry::commissioned(DEV, 0, 0))
                            .is_err()
                );
            } else {
                assert!(s.put_initial(&rec(&AK, 2, 7)).is_err());
            }
        }
        let s = Store::open(&url).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION, "from {from}");
        if from == 2 {
            assert!(s.device(&V2_DEVICE).unwrap().is_some());
            assert_eq!(s.floor(&ckey(1)).unwrap(), Some(9));
        }
        if from >= 1 {
            assert_eq!(s.active(&AK).unwrap(), rec(&AK, 2, 7));
            assert_eq!(s.counter_claim(&ckey(0), NonZeroU32::MIN).unwrap(), 40..41);
        }
        s.register_device(&DeviceEntry::commissioned(DEV, 0, 0))
            .unwrap();
        s.raise_floor(&ckey(0), 3).unwrap();
        drop(s);
        // Opening again migrates nothing more.
        assert_eq!(
            Store::open(&url).unwrap().schema_version().unwrap(),
            SCHEMA_VERSION
        );
        let n: i64 = raw(&url)
            .query_one("SELECT count(*) FROM schema_version", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, i64::from(SCHEMA_VERSION));
    }
}

#[test]
fn a_newer_database_is_refused() {
    let (_, url) = fresh_schema();
    drop(Store::open(&url).unwrap());
    raw(&url)
        .execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&i64::from(SCHEMA_VERSION + 1)],
        )
        .unwrap();
    assert_eq!(
        Store::open(&url).unwrap_err(),
        StoreError::Schema {
            found: SCHEMA_VERSION + 1,
            supported: SCHEMA_VERSION
        }
    );
}

#[test]
fn both_url_schemes_open_and_a_malformed_url_is_refused() {
    let (_, url) = fresh_schema();
    let alt = url.replacen("postgres://", "postgresql://", 1);
    let alt = if alt == url {
        url.replacen("postgresql://", "postgres://", 1)
    } else {
        alt
    };
    assert_ne!(alt, url);
    assert_eq!(
        Store::open(&alt).unwrap().schema_version().unwrap(),
        SCHEMA_VERSION
    );
    for u in [
        "postgres://u@localhost:99999999/db",
        "postgresql://u@localhost/db?connect_timeout=soon",
        "postgres://u@localhost/db?no_such_parameter=1",
    ] {
        assert_eq!(Store::open(u).unwrap_err(), StoreError::BadUrl, "{u}");
    }
}

#[test]
fn due_is_served_by_the_partial_index() {
    let (_, url) = fresh_schema();
    let s = Store::open(&url).unwrap();
    for i in 0..200u8 {
        let mut e =
            DeviceEntry::commissioned(SystemTitle::new([7, 0, 0, 0, 0, 0, 0, i]), u64::from(i), 0);
        if i % 2 == 0 {
            e.rotated_at = Some(1);
        }
        s.register_device(&e).unwrap();
    }
    assert_eq!(s.due(0, u64::MAX / 2, 1000).unwrap().len(), 100);
    let mut c = raw(&url);
    c.batch_execute("ANALYZE devices; SET enable_seqscan = off")
        .unwrap();
    let plan: String = c
        .query(
            "EXPLAIN SELECT device FROM devices WHERE rotated_at IS NULL AND deadline <= 1000
             ORDER BY deadline, device LIMIT 10",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(plan.contains("devices_due"), "{plan}");
    assert!(!plan.contains("Sort"), "the index gives the order: {plan}");
}

/// Every occurrence of `needle` in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn hex(b: &[u8]) -> Vec<u8> {
    b.iter()
        .flat_map(|x| format!("{x:02x}").into_bytes())
        .collect()
}

/// The newest PostgreSQL server programs Debian installed.
fn pg_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's programs in /usr/lib/postgresql")
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL version with pg_ctl").1
}

#[test]
fn a_dump_holds_every_record_and_no_clear_key() {
    let (schema, url) = fresh_schema();
    let s = Store::open(&url).unwrap();
    let seeds = common::seeds();
    let mut stored = Vec::new();
    for (i, seed) in seeds.iter().enumerate() {
        let device = SystemTitle::new([5, 0, 0, 0, 0, 0, 0, u8::try_from(i).unwrap()]);
        for sl in [
            common::slot(device, None, KeyRole::Master),
            common::slot(device, Some(Client::Management), KeyRole::Authentication),
            common::slot(
                device,
                Some(Client::Management),
                KeyRole::GlobalUnicastEncryption,
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
    let out = Command::new(pg_bin().join("pg_dump"))
        .arg(format!("--dbname={}", database_url()))
        .arg(format!("--schema={schema}"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = out.stdout;
    // The scan finds what is there: every packaged record (BYTEA is dumped
    // in hex).
    for r in &stored {
        assert!(
            contains(&dump, &hex(r.as_bytes())),
            "{r:?} not found: the scan is blind"
        );
    }
    for seed in seeds.iter().flat_map(|s| [*s, s.wrapping_add(0x40)]) {
        let key = [seed; KEY_LEN];
        assert!(
            !contains(&dump, &hex(&key)),
            "clear key {seed:#04x} in the dump"
        );
        assert!(!contains(&dump, &key), "clear key {seed:#04x} in the dump");
    }
}

// ---------------------------------------------------------------------------
// The server going away

/// A throwaway cluster of this test's own, which it stops and restarts.
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    root: bool,
}

impl Cluster {
    /// `program args…`, as the `postgres` user when this process is root
    /// (`initdb` and `pg_ctl` refuse to run as root).
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let program = self.bin.join(program);
        let mut c = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        c.args(args).stdin(Stdio::null());
        c
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program, args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn new(dir: &Path) -> Self {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        if root {
            let ok = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown {}", dir.display());
        }
        let port = TcpListener::bind(("127.0.0.1", 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Self {
            bin: pg_bin(),
            data: dir.join("data"),
            log: dir.join("server.log"),
            port,
            root,
        };
        c.run(
            "initdb",
            &[
                "-D",
                c.data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n\
             fsync = off\nport = {port}\n"
        );
        let mut text = std::fs::read_to_string(c.data.join("postgresql.conf")).unwrap();
        text.push_str(&conf);
        std::fs::write(c.data.join("postgresql.conf"), text).unwrap();
        c.start();
        c
    }

    fn start(&self) {
        self.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-s",
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                self.log.to_str().unwrap(),
            ],
        );
    }

    fn stop(&self, mode: &str) {
        self.run(
            "pg_ctl",
            &[
                "stop",
                "-w",
                "-s",
                "-m",
                mode,
                "-D",
                self.data.to_str().unwrap(),
            ],
        );
    }

    fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?connect_timeout=2",
            self.port
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let data = self.data.to_str().unwrap_or_default();
            let _ = self
                .command("pg_ctl", &["stop", "-s", "-m", "immediate", "-D", data])
                .output();
        }
    }
}

/// A TCP relay between stores and the server that can be cut without
/// closing either side, as a network partition or a frozen host cuts a
/// node off: the server never hears that its client is gone. Once cut, it
/// can close both sides.
struct Relay {
    port: u16,
    cut: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
}

impl Relay {
    fn to(host: &str, port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let relay = Self {
            port: listener.local_addr().unwrap().port(),
            cut: Arc::new(AtomicBool::new(false)),
            closed: Arc::new(AtomicBool::new(false)),
        };
        let flags = (Arc::clone(&relay.cut), Arc::clone(&relay.closed));
        let server = format!("{host}:{port}");
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let server = TcpStream::connect(&server).unwrap();
                Self::pump(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    &flags,
                );
                Self::pump(server, client, &flags);
            }
        });
        relay
    }

    /// Copies `from` to `to` until the relay is cut; from then on passes
    /// nothing, and holds both sockets open until the relay is closed.
    fn pump(mut from: TcpStream, mut to: TcpStream, flags: &(Arc<AtomicBool>, Arc<AtomicBool>)) {
        let (cut, closed) = (Arc::clone(&flags.0), Arc::clone(&flags.1));
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if cut.load(Ordering::SeqCst) {
                    while !closed.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let _ = from.shutdown(std::net::Shutdown::Both);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                    return;
                }
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        });
    }
}

/// `url` with its server's `host:port` replaced by the relay's.
fn through(url: &str, relay: &Relay) -> String {
    let config: postgres::Config = url.parse().unwrap();
    let postgres::config::Host::Tcp(host) = &config.get_hosts()[0] else {
        panic!("the relay test needs a TCP server in DATABASE_URL")
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let at = format!("@{host}:{port}/");
    assert!(
        url.contains(&at),
        "the relay test needs `@HOST:PORT/` in DATABASE_URL"
    );
    url.replacen(&at, &format!("@127.0.0.1:{}/", relay.port), 1)
}

/// Polls the server until `sql` (a count) is positive.
fn wait_for(c: &mut postgres::Client, sql: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.query_one(sql, &[]).unwrap().get::<_, i64>(0) == 0 {
        assert!(Instant::now() < deadline, "never saw {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_node_cut_off_inside_a_transaction_does_not_hold_its_locks_for_ever() {
    let (schema, url) = fresh_schema();
    let config: postgres::Config = url.parse().unwrap();
    let postgres::config::Host::Tcp(host) = &config.get_hosts()[0] else {
        panic!("the relay test needs a TCP server in DATABASE_URL")
    };
    let relay = Relay::to(host, config.get_ports().first().copied().unwrap_or(5432));
    let other = Store::open(&url).unwrap();
    other.counter_create(&ckey(0), 0).unwrap();
    // The node's sessions are named, to watch them at the server.
    let name = format!("cut_off_{schema}");
    let cut_off = Store::open(&with_param(
        &through(&url, &relay),
        &format!("application_name={name}"),
    ))
    .unwrap();

    // Another session holds the counter's row, so the node's claim waits
    // at the server, inside its transaction.
    let mut blocker = raw(&url);
    let mut held = blocker.transaction().unwrap();
    held.query("SELECT 1 FROM send_counters FOR UPDATE", &[])
        .unwrap();
    let (lost_tx, lost) = mpsc::channel();
    std::thread::spawn(move || {
        // Its answer is lost in the cut.
        let _ = lost_tx.send(cut_off.counter_claim(&ckey(0), NonZeroU32::MIN));
    });
    let mut watch = raw(&database_url());
    let node = format!("FROM pg_stat_activity WHERE application_name = '{name}'");
    wait_for(
        &mut watch,
        &format!("SELECT count(*) {node} AND wait_event_type = 'Lock'"),
        "the claim waiting for the row",
    );
    // The node is cut off; then the row is free, the claim runs and the
    // server waits for the node's COMMIT, holding the row.
    relay.cut.store(true, Ordering::SeqCst);
    held.commit().unwrap();
    wait_for(
        &mut watch,
        &format!("SELECT count(*) {node} AND state = 'idle in transaction'"),
        "the claim idle in its transaction",
    );

    // Another node's claim of the same counter goes through once the
    // server has ended the silent session, and the lost claim is undone.
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(other.counter_claim(&ckey(0), NonZeroU32::MIN));
    });
    let claimed = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("a claim still waits after 60 s for a node that is gone"));
    assert_eq!(claimed.unwrap(), 0..1);
    eprintln!("the other node's claim took {:?}", started.elapsed());
    let left: i64 = watch
        .query_one(&format!("SELECT count(*) {node} AND state <> 'idle'"), &[])
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the cut-off node still has a transaction open");

    // The node whose connection is gone learns that its claim failed.
    relay.closed.store(true, Ordering::SeqCst);
    let lost = lost
        .recv_timeout(Duration::from_secs(30))
        .expect("the cut-off claim returns once its connection closes");
    assert!(matches!(lost, Err(StoreError::Unavailable)), "{lost:?}");
}

#[test]
fn the_server_going_away_is_unavailable_and_half_a_change_is_none() {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pg-outage-{}", std::process::id()));
    let cluster = Cluster::new(&dir);
    let url = cluster.url();
    let s = Store::open(&url).unwrap();
    let slots = [MK, AK, GUEK];
    for (i, sl) in (0u8..).zip(&slots) {
        s.put_initial(&rec(sl, 0, i)).unwrap();
        s.put_pending(&rec(sl, 1, 10 + i)).unwrap();
    }
    s.counter_create(&ckey(0), 0).unwrap();
    assert_eq!(s.counter_claim(&ckey(0), NonZeroU32::MIN).unwrap(), 0..1);

    // Another session holds the GUEK's rows, so an activation of AK, GUEK
    // and MK stops after changing the AK, inside its transaction.
    let mut blocker = raw(&url);
    let mut held = blocker.transaction().unwrap();
    let (d, cl, r) = slot_where(&GUEK);
    held.query(
        "SELECT 1 FROM key_records WHERE device=$1 AND client=$2 AND role=$3 FOR UPDATE",
        &[&d, &cl, &r],
    )
    .unwrap();
    let activation = std::thread::scope(|scope| {
        let h = scope.spawn(|| s.activate_all(&[(AK, 1), (GUEK, 1), (MK, 1)]));
        let mut watch = raw(&url);
        let waiting = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            let n: i64 = watch
                .query_one("SELECT count(*) FROM pg_locks WHERE NOT granted", &[])
                .unwrap()
                .get(0);
            n > 0
        });
        assert!(waiting, "the activation never waited for the held rows");
        drop(watch);
        // The server shuts down under the waiting activation.
        cluster.stop("fast");
        h.join().unwrap()
    });
    drop(held);
    drop(blocker);
    assert_eq!(activation, Err(StoreError::Unavailable));

    // While it is down every call is Unavailable, and so is opening.
    assert_eq!(s.active(&MK), Err(StoreError::Unavailable));
    assert_eq!(
        s.counter_claim(&ckey(0), NonZeroU32::MIN),
        Err(StoreError::Unavailable)
    );
    assert_eq!(
        s.activate_all(&[(AK, 1), (GUEK, 1), (MK, 1)]),
        Err(StoreError::Unavailable)
    );
    assert_eq!(Store::open(&url).unwrap_err(), StoreError::Unavailable);

    // Back up: nothing of the interrupted activation is there, and the same
    // store carries on (its broken connections are replaced).
    cluster.start();
    for (i, sl) in (0u8..).zip(&slots) {
        assert_eq!(s.active(sl).unwrap(), rec(sl, 0, i), "{sl}");
        assert_eq!(s.pending(sl).unwrap(), Some(rec(sl, 1, 10 + i)), "{sl}");
        assert_eq!(s.previous(sl).unwrap(), None, "{sl}");
    }
    assert_eq!(s.counter_claim(&ckey(0), NonZeroU32::MIN).unwrap(), 1..2);
    s.activate_all(&[(AK, 1), (GUEK, 1), (MK, 1)]).unwrap();
    for (i, sl) in (0u8..).zip(&slots) {
        assert_eq!(s.active(sl).unwrap(), rec(sl, 1, 10 + i), "{sl}");
    }
    drop(s);
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
