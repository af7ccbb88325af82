//! The store's costs, each beside a bare driver loop running the same SQL
//! in the same run: ours / bare throughput is the figure (≥ 0.8 is the
//! target), not the absolute time.
//!
//! * bulk load: N devices × (4 clients × (AK, GUEK) + MK) through
//!   `put_initial_many`, its time and the database's size;
//! * per operation: a client's active AK + GUEK, a counter claim of 1 and
//!   of 64, an activation (two `put_pending` and one `activate_all`), and
//!   `due` over N registered devices;
//! * a lookup at N devices against one at 10 000 (target ≤ 1.5);
//! * ≥ 10⁷ counter values claimed by several threads.
//!
//! Runs on an SQLite file, and on PostgreSQL when `DATABASE_URL` is set
//! (skipped, with a line saying so, when it is not). N is
//! `DLMS_SEC_STORE_BENCH_DEVICES` (default 100 000).
//!
//! ```text
//! cargo bench -p dlms-sec-store
//! DLMS_SEC_STORE_BENCH_DEVICES=1000000 cargo xtask pg -- cargo bench -p dlms-sec-store
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    reason = "bench code: a panic is a failed run; figures are approximate"
)]

use core::num::NonZeroU32;
use core::time::Duration;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dlms_sec::counter::CounterKey;
use dlms_sec::key::package::{PackagedRecord, RECORD_LEN};
use dlms_sec::keystore::KeySlot;
use dlms_sec::{Client, KeyKind, KeyRole, SystemTitle};
use dlms_sec_store::{DeviceEntry, Store, StoreError};

mod bare;

use bare::Bare;

/// Devices per `put_initial_many` call.
const LOAD_CHUNK: u32 = 10_000;
/// The small database the lookup at N is compared with.
const SMALL: u32 = 10_000;
/// Devices the bare bulk load is measured on (and ours, for the ratio).
const BARE_LOAD: u32 = 100_000;
const CLIENTS: [Client; 4] = [
    Client::DataCollection,
    Client::ExtendedDataCollection,
    Client::Management,
    Client::Firmware,
];
const HEAD_END: SystemTitle = SystemTitle::new(*b"BENCH\x00\x00\x01");
/// When the registered devices were commissioned: one a second from here.
const EPOCH: u64 = 1_700_000_000;

fn main() {
    let n: u32 = std::env::var("DLMS_SEC_STORE_BENCH_DEVICES")
        .ok()
        .map_or(100_000, |v| {
            v.parse().expect("DLMS_SEC_STORE_BENCH_DEVICES: a number")
        });
    // `cargo bench` passes `--bench`; a filter argument picks a backend.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    println!("dlms-sec-store bench: N = {n} devices");
    if wanted("sqlite") {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("store-bench");
        std::fs::create_dir_all(&dir).unwrap();
        let sqlite = bare::SqliteTarget { dir: dir.clone() };
        run("sqlite", &sqlite, n);
        // The files are large at N = 10⁶: removed once measured.
        for name in ["main", "bare-load", "small"] {
            fresh_file(&dir, name);
        }
    }
    if wanted("postgres") {
        match std::env::var("DATABASE_URL") {
            Err(_) => println!("postgres: skipped (DATABASE_URL is unset)"),
            Ok(url) => match bare::postgres_target(&url) {
                Ok(target) => run("postgres", &*target, n),
                Err(why) => println!("postgres: skipped ({why})"),
            },
        }
    }
}

// --- Records and names ---------------------------------------------------------

fn device(i: u32) -> SystemTitle {
    let [a, b, c, d] = i.to_be_bytes();
    SystemTitle::new([b'B', b'N', 0, 0, a, b, c, d])
}

const fn slot(device: SystemTitle, client: Option<Client>, role: KeyRole) -> KeySlot {
    KeySlot {
        device,
        client,
        role,
    }
}

fn ak(i: u32, client: Client) -> KeySlot {
    slot(device(i), Some(client), KeyRole::Authentication)
}

fn guek(i: u32, client: Client) -> KeySlot {
    slot(device(i), Some(client), KeyRole::GlobalUnicastEncryption)
}

/// A well-formed record of `slot` at `generation`: the layout of a
/// packaged record, with made-up ciphertext and check value (nothing in
/// the store unpacks it).
fn record(slot: &KeySlot, generation: u32) -> PackagedRecord {
    let mut b = [0u8; RECORD_LEN];
    b[0] = dlms_sec::key::package::RECORD_VERSION;
    b[1] = slot.role.code();
    b[2] = Client::record_code(slot.client).unwrap();
    b[3..6].copy_from_slice(&[0xC0, 0xFF, 0xEE]);
    b[6..14].copy_from_slice(slot.device.as_bytes());
    b[14..18].copy_from_slice(&generation.to_be_bytes());
    let mut x = u64::from_be_bytes(*slot.device.as_bytes())
        ^ u64::from(generation) << 56
        ^ u64::from(b[1]) << 48
        ^ u64::from(b[2]) << 40;
    for o in &mut b[18..] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *o = x as u8;
    }
    PackagedRecord::parse(&b).unwrap()
}

/// The nine records of device `i` at generation 0.
fn device_records(i: u32, out: &mut Vec<PackagedRecord>) {
    out.push(record(&slot(device(i), None, KeyRole::Master), 0));
    for c in CLIENTS {
        out.push(record(&ak(i, c), 0));
        out.push(record(&guek(i, c), 0));
    }
}

fn registry_entry(i: u32) -> DeviceEntry {
    let mut e = DeviceEntry::commissioned(device(i), EPOCH + u64::from(i), 0x0F);
    // Every other device is rotated already: `due` skips it.
    if i % 2 == 1 {
        e.rotated_at = Some(EPOCH + u64::from(i) + 3_600);
    }
    e
}

fn counter_key(i: u32) -> CounterKey {
    CounterKey::new(
        HEAD_END,
        device(i),
        Client::Management,
        KeyKind::GlobalUnicast,
        0,
    )
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// A pseudo-random walk over `0..n`.
struct Walk(u64);

impl Walk {
    fn next(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(n)) as u32
    }
}

// --- Timing --------------------------------------------------------------------

/// Runs `ours` and `bare` alternately, `rounds` times `iters` calls each,
/// and prints both throughputs and their ratio. Each call gets a number no
/// other call of the comparison got.
fn compare(
    what: &str,
    iters: u32,
    rounds: u32,
    ours: &mut dyn FnMut(u32),
    bare: &mut dyn FnMut(u32),
) -> f64 {
    let mut next = 0;
    let mut timed = |f: &mut dyn FnMut(u32)| {
        let start = Instant::now();
        for _ in 0..iters {
            f(next);
            next += 1;
        }
        start.elapsed()
    };
    // Rounds alternate which side goes first, and the figure is the median
    // of the rounds' ratios: a burst of other work on the host lands in a
    // few rounds and moves the median little.
    let mut t_ours = Duration::ZERO;
    let mut t_bare = Duration::ZERO;
    let mut ratios = Vec::with_capacity(rounds as usize);
    for round in 0..rounds {
        let (o, b) = if round % 2 == 0 {
            let o = timed(ours);
            (o, timed(bare))
        } else {
            let b = timed(bare);
            (timed(ours), b)
        };
        t_ours += o;
        t_bare += b;
        ratios.push(b.as_secs_f64() / o.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let quartile = |q: usize| ratios[(ratios.len() - 1) * q / 4];
    let calls = f64::from(iters * rounds);
    let (r_ours, r_bare) = (calls / t_ours.as_secs_f64(), calls / t_bare.as_secs_f64());
    let ratio = quartile(2);
    println!(
        "  {what:<36} ours {:>10}/s  bare {:>10}/s  ours/bare {ratio:.2} (quartiles {:.2}–{:.2})",
        human(r_ours),
        human(r_bare),
        quartile(1),
        quartile(3),
    );
    ratio
}

fn human(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2} M", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.1} k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

// --- The run -------------------------------------------------------------------

/// Where a backend's databases come from.
pub trait Target {
    /// A fresh, empty database named `name`: its store URL.
    fn fresh(&self, name: &str) -> String;
    /// A bare driver connection to the database at `url`.
    fn bare(&self, url: &str) -> Box<dyn Bare>;
}

/// Loads `count` devices through `put_initial_many`; returns the time
/// taken for the first `mark` devices and for all.
fn load(s: &Store, count: u32, mark: u32) -> (Duration, Duration) {
    let start = Instant::now();
    let mut at_mark = Duration::ZERO;
    let mut records = Vec::with_capacity(LOAD_CHUNK as usize * 9);
    let mut i = 0;
    while i < count {
        let end = (i + LOAD_CHUNK).min(count);
        records.clear();
        (i..end).for_each(|d| device_records(d, &mut records));
        s.put_initial_many(&records).unwrap();
        i = end;
        if i == mark.min(count) {
            at_mark = start.elapsed();
        }
    }
    (at_mark, start.elapsed())
}

fn run(name: &str, target: &dyn Target, n: u32) {
    println!("{name}:");
    // --- Bulk load, ours and bare.
    let url = target.fresh("main");
    let s = Store::open(&url).unwrap();
    let (ours_mark, ours_all) = load(&s, n, BARE_LOAD);
    let mark = BARE_LOAD.min(n);
    let mut bare = target.bare(&url);
    let size = bare.size();
    println!(
        "  bulk load {n} devices ({} records): {:.1} s, {} records/s; database {} ({:.0} octets/record)",
        u64::from(n) * 9,
        ours_all.as_secs_f64(),
        human(f64::from(n) * 9.0 / ours_all.as_secs_f64()),
        mib(size),
        size as f64 / (f64::from(n) * 9.0)
    );
    {
        let bare_url = target.fresh("bare-load");
        drop(Store::open(&bare_url).unwrap()); // the schema
        let mut b = target.bare(&bare_url);
        let start = Instant::now();
        let mut records = Vec::new();
        let mut i = 0;
        while i < mark {
            let end = (i + LOAD_CHUNK).min(mark);
            records.clear();
            (i..end).for_each(|d| device_records(d, &mut records));
            b.load(&records);
            i = end;
        }
        let t_bare = start.elapsed();
        println!(
            "  bulk load, first {mark} devices: ours {:.2} s, bare {:.2} s, ours/bare throughput {:.2}",
            ours_mark.as_secs_f64(),
            t_bare.as_secs_f64(),
            t_bare.as_secs_f64() / ours_mark.as_secs_f64()
        );
    }
    // The registry, in one bare transaction (populating it is not measured).
    let entries: Vec<DeviceEntry> = (0..n).map(registry_entry).collect();
    bare.register(&entries);
    drop(entries);

    // --- Per operation.
    let mut walk = Walk(0x5EED_1234_ABCD_0001);
    let mut walk2 = Walk(0x5EED_1234_ABCD_0002);
    let lookup_ratio = compare(
        "lookup (AK + GUEK of a client)",
        2_000,
        31,
        &mut |i| {
            let d = walk.next(n);
            let c = CLIENTS[i as usize % 4];
            let a = s.active(&ak(d, c)).unwrap();
            let g = s.active(&guek(d, c)).unwrap();
            assert_eq!(a.generation() + g.generation(), 0);
        },
        &mut |i| {
            let d = walk2.next(n);
            let c = CLIENTS[i as usize % 4];
            assert_eq!(bare.lookup(&ak(d, c)) + bare.lookup(&guek(d, c)), 2);
        },
    );
    let _ = lookup_ratio;
    if bare.lookup_unprepared(&ak(0, Client::Management)).is_some() {
        let mut walk = Walk(0x5EED_1234_ABCD_0006);
        let mut walk2 = Walk(0x5EED_1234_ABCD_0007);
        compare(
            "lookup, bare preparing per call",
            500,
            31,
            &mut |i| {
                let d = walk.next(n);
                let c = CLIENTS[i as usize % 4];
                s.active(&ak(d, c)).unwrap();
                s.active(&guek(d, c)).unwrap();
            },
            &mut |i| {
                let d = walk2.next(n);
                let c = CLIENTS[i as usize % 4];
                let a = bare.lookup_unprepared(&ak(d, c)).unwrap();
                assert_eq!(a + bare.lookup_unprepared(&guek(d, c)).unwrap(), 2);
            },
        );
    }
    s.counter_create(&counter_key(0), 0).unwrap();
    s.counter_create(&counter_key(1), 0).unwrap();
    for k in [1, 64] {
        compare(
            &format!("counter claim n = {k}"),
            25,
            31,
            &mut |_| {
                s.counter_claim(&counter_key(0), nz(k)).unwrap();
            },
            &mut |_| bare.claim(&counter_key(1), k),
        );
    }
    compare(
        "activate (2 put_pending + activate_all)",
        8,
        31,
        &mut |i| {
            let c = CLIENTS[i as usize % 4];
            let (a, g) = (ak(i, c), guek(i, c));
            s.put_pending(&record(&a, 1)).unwrap();
            s.put_pending(&record(&g, 1)).unwrap();
            s.activate_all(&[(a, 1), (g, 1)]).unwrap();
        },
        &mut |i| {
            let c = CLIENTS[i as usize % 4];
            let (a, g) = (ak(i, c), guek(i, c));
            bare.put_pending(&record(&a, 1));
            bare.put_pending(&record(&g, 1));
            bare.activate(&[
                (a, record(&a, 0), record(&a, 1)),
                (g, record(&g, 0), record(&g, 1)),
            ]);
        },
    );
    let horizon = 7 * 24 * 3_600;
    let mut walk3 = Walk(0x5EED_1234_ABCD_0003);
    let mut walk4 = Walk(0x5EED_1234_ABCD_0004);
    compare(
        &format!("due (100 of {n} devices)"),
        200,
        31,
        &mut |_| {
            let now = EPOCH + u64::from(walk3.next(n));
            let due = s.due(now, horizon, 100).unwrap();
            assert!(!due.is_empty());
        },
        &mut |_| {
            let now = EPOCH + u64::from(walk4.next(n));
            assert!(bare.due(now + horizon, 100) > 0);
        },
    );

    // --- Lookup at N against at 10 000.
    {
        let small_url = target.fresh("small");
        let small = Store::open(&small_url).unwrap();
        load(&small, SMALL.min(n), 0);
        // Warm the caches first, as a running head-end has them: on SQLite
        // every device once (pages the memory map has not touched fault
        // in on first use), on PostgreSQL 20 000 lookups.
        let warm = |s: &Store, count: u32| {
            let mut walk = Walk(0x5EED_1234_ABCD_0005);
            let passes = if name == "sqlite" { count } else { 20_000 };
            for i in 0..passes {
                let d = if name == "sqlite" {
                    i
                } else {
                    walk.next(count)
                };
                s.active(&ak(d, Client::Management)).unwrap();
            }
        };
        warm(&s, n);
        warm(&small, SMALL.min(n));
        let mut walk = Walk(0x5EED_1234_ABCD_0006);
        let mut lookups = |s: &Store, count: u32| {
            let start = Instant::now();
            let calls = 2_000;
            for i in 0..calls {
                let d = walk.next(count);
                let c = CLIENTS[i % 4];
                s.active(&ak(d, c)).unwrap();
                s.active(&guek(d, c)).unwrap();
            }
            start.elapsed().as_secs_f64() / calls as f64
        };
        // Rounds alternate which size goes first; the figure is the median
        // of the rounds' ratios.
        let (mut t_n, mut t_small) = (0.0, 0.0);
        let mut ratios = Vec::new();
        for round in 0..31 {
            let (a, b) = if round % 2 == 0 {
                let a = lookups(&s, n);
                (a, lookups(&small, SMALL.min(n)))
            } else {
                let b = lookups(&small, SMALL.min(n));
                (lookups(&s, n), b)
            };
            t_n += a;
            t_small += b;
            ratios.push(a / b);
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "  lookup at {n} devices {:.1} µs, at {} {:.1} µs: ratio {:.2} (quartiles {:.2}–{:.2})",
            t_n / 31.0 * 1e6,
            SMALL.min(n),
            t_small / 31.0 * 1e6,
            ratios[15],
            ratios[7],
            ratios[23],
        );
    }

    // --- ≥ 10⁷ values claimed by several threads.
    {
        const THREADS: u32 = 4;
        const KEYS: u32 = 2;
        const BLOCK: u32 = 1_024;
        const VALUES: u64 = 10_000_000;
        for k in 0..KEYS {
            s.counter_create(&counter_key(100 + k), 0).unwrap();
        }
        let per_thread = VALUES.div_ceil(u64::from(THREADS * BLOCK));
        let start = Instant::now();
        let busy: u32 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let s = &s;
                    scope.spawn(move || {
                        let mut busy = 0;
                        let mut done = 0;
                        while done < per_thread {
                            let key = counter_key(100 + (t + done as u32) % KEYS);
                            match s.counter_claim(&key, nz(BLOCK)) {
                                Ok(r) => {
                                    assert_eq!(r.len(), BLOCK as usize);
                                    done += 1;
                                }
                                Err(StoreError::Unavailable) => busy += 1,
                                Err(e) => panic!("claim: {e}"),
                            }
                        }
                        busy
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        let t = start.elapsed().as_secs_f64();
        let claimed: u64 = (0..KEYS)
            .map(|k| u64::from(s.counter_ceiling(&counter_key(100 + k)).unwrap().unwrap()))
            .sum();
        assert_eq!(claimed, per_thread * u64::from(THREADS * BLOCK));
        println!(
            "  {claimed} counter values by {THREADS} threads in claims of {BLOCK}: {:.1} s, {} values/s ({} claims/s, {busy} busy retries)",
            t,
            human(claimed as f64 / t),
            human(claimed as f64 / f64::from(BLOCK) / t)
        );
    }
    drop(s);
    drop(bare);
}

/// The path of a file under `dir`, removed with its WAL and shared-memory
/// files.
fn fresh_file(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}
