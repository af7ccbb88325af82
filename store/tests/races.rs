//! Races between processes on one database: counter claims, rotation
//! leases and receive floors, each case run on an SQLite file and on
//! PostgreSQL (`DATABASE_URL`).
//!
//! Every case runs its contenders as child processes: this test binary
//! started again on the ignored test [`race_worker`], told by environment
//! variables which side of which case it plays. The children wait for a
//! start file so that they begin together, write what they got to files,
//! and the parent checks the files against the database.
//!
//! Rows are named by a tag unique to the run, so the PostgreSQL cases share
//! one database with anything else without meeting it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    reason = "test code: a panic is a failed test"
)]

use core::num::NonZeroU32;
use core::ops::Range;
use core::time::Duration;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use dlms_sec::counter::{CounterKey, CounterSource, SendCounter};
use dlms_sec::{Client, KeyKind, SystemTitle};
use dlms_sec_store::{Lease, Store, StoreError};

// --- Running a case ----------------------------------------------------------

/// The variable that makes this binary a worker: the case it plays.
const CASE: &str = "DLMS_SEC_STORE_RACE_CASE";
const URL: &str = "DLMS_SEC_STORE_RACE_URL";
const DIR: &str = "DLMS_SEC_STORE_RACE_DIR";
const INDEX: &str = "DLMS_SEC_STORE_RACE_INDEX";
const WORKERS: &str = "DLMS_SEC_STORE_RACE_WORKERS";
const TAG: &str = "DLMS_SEC_STORE_RACE_TAG";

/// How a case is played: where, by how many, under which tag.
#[derive(Clone, Debug)]
struct Run {
    url: String,
    dir: PathBuf,
    workers: usize,
    tag: u32,
}

impl Run {
    fn out(&self, index: usize) -> PathBuf {
        self.dir.join(format!("out-{index}"))
    }
}

/// A fresh SQLite file, as a store URL.
fn sqlite_url(case: &str) -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("store-races");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{case}-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    format!("sqlite://{}", path.display())
}

/// The PostgreSQL database of the run; a clear failure when there is none.
fn postgres_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is unset: the PostgreSQL race tests need a server. Run them with \
             `cargo xtask pg -- cargo test -p dlms-sec-store --test races` (or `cargo xtask test`), \
             which start a throwaway one"
        )
    })
}

/// A tag no earlier run used (rows of a run are named by it).
fn fresh_tag() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    (nanos as u32) ^ std::process::id().rotate_left(16)
}

/// A device title of case `case`, number `i`, in the run tagged `tag`.
fn title(case: u8, tag: u32, i: u16) -> SystemTitle {
    let [a, b, c, d] = tag.to_be_bytes();
    let [e, f] = i.to_be_bytes();
    SystemTitle::new([b'R', case, a, b, c, d, e, f])
}

const HEAD_END: SystemTitle = SystemTitle::new(*b"RACE\x00\x00\x00\x01");

fn counter_key(tag: u32, i: u16) -> CounterKey {
    CounterKey::new(
        HEAD_END,
        title(b'C', tag, i),
        Client::Management,
        KeyKind::GlobalUnicast,
        0,
    )
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// Opens `url` in the parent (so the schema is migrated before any child
/// opens it), runs `workers` children on `case` and returns the store and
/// the run, once every child has exited successfully.
fn play(case: &str, url: &str, workers: usize, setup: impl FnOnce(&Store, &Run)) -> (Store, Run) {
    let store = Store::open(url).unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    let tag = fresh_tag();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("store-races")
        .join(format!("{case}-{}-{tag:08x}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = Run {
        url: url.to_owned(),
        dir,
        workers,
        tag,
    };
    setup(&store, &run);
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..workers)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "race_worker",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(CASE, case)
                .env(URL, url)
                .env(DIR, &run.dir)
                .env(INDEX, i.to_string())
                .env(WORKERS, workers.to_string())
                .env(TAG, tag.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Every child has opened the store (which writes, to migrate) before
    // any starts: a late opener would wait behind the race itself.
    let deadline = Instant::now() + Duration::from_secs(120);
    for (i, child) in children.iter_mut().enumerate() {
        while !run.dir.join(format!("ready-{i}")).exists() {
            if child.try_wait().unwrap().is_some() {
                break; // failed before it got ready: reported below
            }
            assert!(
                Instant::now() < deadline,
                "worker {i} of {case} never got ready"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    std::fs::write(run.dir.join("go"), b"").unwrap();
    let started = Instant::now();
    let mut failed = String::new();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        if !out.status.success() {
            let _ = write!(
                failed,
                "\nworker {i} of {case} failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert!(failed.is_empty(), "{failed}");
    eprintln!(
        "{case} on {}: {workers} processes, {:.1} s",
        url.split(':').next().unwrap_or(""),
        started.elapsed().as_secs_f64()
    );
    (store, run)
}

/// The lines of every worker's output file.
fn outputs(run: &Run) -> Vec<Vec<String>> {
    (0..run.workers)
        .map(|i| {
            std::fs::read_to_string(run.out(i))
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// A child's side of a case: the store and the run, from the environment.
#[test]
#[ignore = "a child process of the race tests, started by them"]
fn race_worker() {
    let Ok(case) = std::env::var(CASE) else {
        eprintln!("race_worker runs only as a child of the race tests");
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} unset"));
    let run = Run {
        url: var(URL),
        dir: PathBuf::from(var(DIR)),
        workers: var(WORKERS).parse().unwrap(),
        tag: var(TAG).parse().unwrap(),
    };
    let index: usize = var(INDEX).parse().unwrap();
    let store = Store::open(&run.url).unwrap();
    std::fs::write(run.dir.join(format!("ready-{index}")), b"").unwrap();
    // Start together.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !run.dir.join("go").exists() {
        assert!(Instant::now() < deadline, "no start signal");
        std::thread::sleep(Duration::from_millis(1));
    }
    let out = match case.as_str() {
        "claims" => claims_worker(&store, &run, index),
        "leases" => leases_worker(&store, &run, index),
        "floors" => floors_worker(&store, &run, index),
        other => panic!("unknown race case {other}"),
    };
    std::fs::write(run.out(index), out).unwrap();
}

/// Retries `f` while the database reports itself busy (a lock held past
/// the busy timeout changes nothing, so a retry is safe); counts retries.
fn patiently<T>(retries: &mut u32, mut f: impl FnMut() -> Result<T, StoreError>) -> T {
    loop {
        match f() {
            Err(StoreError::Unavailable) if *retries < 1000 => *retries += 1,
            other => return other.unwrap(),
        }
    }
}

/// [`patiently`] for the core's counter, whose errors do not say busy: a
/// failed claim leaves a [`SendCounter`] as it was, so a retry is safe
/// (and a claim that did commit would show as a gap in the claims).
fn patient_counter<T>(
    retries: &mut u32,
    mut f: impl FnMut() -> Result<T, dlms_sec::error::CounterError>,
) -> T {
    loop {
        match f() {
            Err(dlms_sec::error::CounterError::Persistence) if *retries < 1000 => *retries += 1,
            other => return other.unwrap(),
        }
    }
}

// --- Counter claims ----------------------------------------------------------

/// Keys all claimers share.
const CLAIM_KEYS: u16 = 3;
/// Each key's ceiling at creation.
const CLAIM_FIRST: u32 = 1_000;
/// Values to hand out in total, at least.
const CLAIM_TOTAL: u64 = 1_000_000;
const CLAIM_PROCESSES: usize = 4;
const CLAIM_THREADS: usize = 4;
/// Single-value claims per n = 1 thread: few values, many statements.
const SINGLE_CLAIMS: u32 = 400;
/// The block of n = 64 claims and of the core's counter.
const BLOCK: u32 = 64;

/// What one claiming thread does, by its number in its process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Claimer {
    /// `counter_claim` with n = 1, [`SINGLE_CLAIMS`] times.
    Single,
    /// `counter_claim` with n = [`BLOCK`].
    Block,
    /// The core's [`SendCounter`] over `&Store`, reserving [`BLOCK`].
    Core,
}

const CLAIMERS: [Claimer; CLAIM_THREADS] = [
    Claimer::Single,
    Claimer::Block,
    Claimer::Block,
    Claimer::Core,
];

/// Values each block-claiming thread hands out: the rest of the total,
/// shared out.
fn block_quota() -> u64 {
    let blockers = CLAIMERS.iter().filter(|c| **c != Claimer::Single).count();
    let singles = CLAIM_THREADS - blockers;
    let rest = CLAIM_TOTAL - (CLAIM_PROCESSES * singles) as u64 * u64::from(SINGLE_CLAIMS);
    rest.div_ceil((CLAIM_PROCESSES * blockers) as u64)
}

/// Output lines: `claim KEY START END` for a range `counter_claim`
/// returned (handed out whole), `block KEY START END` for a range the core
/// counter reserved, `value KEY START END` for values it issued (runs of
/// consecutive values), `retries N`.
fn claims_worker(s: &Store, run: &Run, index: usize) -> String {
    let lines: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = CLAIMERS
            .iter()
            .enumerate()
            .map(|(t, &claimer)| {
                scope.spawn(move || claiming_thread(s, run.tag, index * CLAIM_THREADS + t, claimer))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    lines.join("\n")
}

fn claiming_thread(s: &Store, tag: u32, seat: usize, claimer: Claimer) -> Vec<String> {
    let mut lines = Vec::new();
    let mut retries = 0;
    // Each thread starts on a different key and walks all of them.
    let key_of = |i: u64| ((i + seat as u64) % u64::from(CLAIM_KEYS)) as u16;
    match claimer {
        Claimer::Single | Claimer::Block => {
            let (n, quota) = if claimer == Claimer::Single {
                (1, u64::from(SINGLE_CLAIMS))
            } else {
                (BLOCK, block_quota())
            };
            let mut handed = 0;
            let mut i = 0;
            while handed < quota {
                let k = key_of(i);
                let r = patiently(&mut retries, || {
                    s.counter_claim(&counter_key(tag, k), nz(n))
                });
                assert_eq!(
                    r.len(),
                    n as usize,
                    "a claim far from saturation fell short"
                );
                lines.push(format!("claim {k} {} {}", r.start, r.end));
                handed += u64::from(n);
                i += 1;
            }
        }
        Claimer::Core => {
            let mut counters: Vec<_> = (0..CLAIM_KEYS)
                .map(|k| {
                    patient_counter(&mut retries, || {
                        SendCounter::resume(counter_key(tag, k), nz(BLOCK), s)
                    })
                })
                .collect();
            for (k, c) in counters.iter().enumerate() {
                let start = c.peek().unwrap().value();
                lines.push(format!("block {k} {start} {}", c.reserved_up_to()));
            }
            // Issue a value at a time, switching key every 100 values;
            // a new reservation shows as a moved `reserved_up_to`.
            let mut runs: Vec<Option<Range<u32>>> = vec![None; usize::from(CLAIM_KEYS)];
            for i in 0..block_quota() {
                let k = usize::from(key_of(i / 100));
                let c = &mut counters[k];
                let before = c.reserved_up_to();
                let v = patient_counter(&mut retries, || c.next_counter()).value();
                if c.reserved_up_to() != before {
                    lines.push(format!("block {k} {v} {}", c.reserved_up_to()));
                }
                let run = &mut runs[k];
                match run {
                    Some(r) if r.end == v => r.end = v + 1,
                    _ => {
                        if let Some(r) = run.take() {
                            lines.push(format!("value {k} {} {}", r.start, r.end));
                        }
                        *run = Some(v..v + 1);
                    }
                }
            }
            for (k, r) in runs.into_iter().enumerate() {
                if let Some(r) = r {
                    lines.push(format!("value {k} {} {}", r.start, r.end));
                }
            }
        }
    }
    lines.push(format!("retries {retries}"));
    lines
}

fn claims_race(url: &str) {
    let (s, run) = play("claims", url, CLAIM_PROCESSES, |s, run| {
        for k in 0..CLAIM_KEYS {
            s.counter_create(&counter_key(run.tag, k), CLAIM_FIRST)
                .unwrap();
        }
    });
    let mut claims: BTreeMap<u16, Vec<Range<u32>>> = BTreeMap::new();
    let mut handed: BTreeMap<u16, Vec<Range<u32>>> = BTreeMap::new();
    let mut retries = 0u64;
    for line in outputs(&run).iter().flatten() {
        let f: Vec<&str> = line.split(' ').collect();
        match f[..] {
            ["retries", n] => retries += n.parse::<u64>().unwrap(),
            [kind, k, start, end] => {
                let k: u16 = k.parse().unwrap();
                let r = start.parse().unwrap()..end.parse().unwrap();
                match kind {
                    "claim" => {
                        claims.entry(k).or_default().push(r.clone());
                        handed.entry(k).or_default().push(r);
                    }
                    "block" => claims.entry(k).or_default().push(r),
                    "value" => handed.entry(k).or_default().push(r),
                    _ => panic!("bad output line {line:?}"),
                }
            }
            _ => panic!("bad output line {line:?}"),
        }
    }
    let mut total = 0u64;
    for k in 0..CLAIM_KEYS {
        // The claims tile [first, ceiling) exactly: no value twice, none
        // lost, and the ceiling is the sum of the claims.
        let mut ranges = claims.remove(&k).unwrap_or_default();
        ranges.sort_by_key(|r| r.start);
        let mut at = CLAIM_FIRST;
        for r in &ranges {
            assert_eq!(
                r.start, at,
                "key {k}: claims overlap or leave a gap at {r:?}"
            );
            assert!(r.end > r.start, "key {k}: an empty claim {r:?}");
            at = r.end;
        }
        let ceiling = s.counter_ceiling(&counter_key(run.tag, k)).unwrap();
        assert_eq!(
            ceiling,
            Some(at),
            "key {k}: the ceiling is not the sum of the claims"
        );
        // No value handed out twice.
        let mut values = handed.remove(&k).unwrap_or_default();
        values.sort_by_key(|r| r.start);
        for w in values.windows(2) {
            assert!(
                w[0].end <= w[1].start,
                "key {k}: values handed out twice: {:?} and {:?}",
                w[0],
                w[1]
            );
        }
        total += values
            .iter()
            .map(|r| u64::from(r.end - r.start))
            .sum::<u64>();
    }
    assert!(total >= CLAIM_TOTAL, "only {total} values were handed out");
    eprintln!("claims: {total} values handed out, {retries} busy retries");
}

#[test]
fn claims_race_on_sqlite() {
    claims_race(&sqlite_url("claims"));
}

#[test]
fn claims_race_on_postgres() {
    claims_race(&postgres_url());
}

// --- Rotation leases ---------------------------------------------------------

const LEASE_DEVICES: u16 = 200;
const LEASE_PROCESSES: usize = 3;
const LEASE_TTL: u64 = 60;
/// The two rounds' clocks: the second comes after the first's leases expire.
const LEASE_ROUNDS: [u64; 2] = [1_000, 2_000];

fn lease_device(tag: u32, d: u16) -> SystemTitle {
    title(b'L', tag, d)
}

fn owner(index: usize) -> String {
    format!("worker-{index}")
}

/// Waits until every worker has reached `step` (each writes its own step
/// to a file; a rename makes the write whole).
fn barrier(run: &Run, index: usize, step: u32) {
    let mine = run.dir.join(format!("step-{index}"));
    let tmp = run.dir.join(format!("step-{index}.tmp"));
    std::fs::write(&tmp, step.to_string()).unwrap();
    std::fs::rename(&tmp, &mine).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for other in 0..run.workers {
        let path = run.dir.join(format!("step-{other}"));
        loop {
            let at: Option<u32> = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.parse().ok());
            if at.is_some_and(|at| at >= step) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "worker {other} stopped at {at:?}"
            );
            std::thread::yield_now();
        }
    }
}

/// Output lines: `ROUND DEVICE won TAKEN_OVER` or `ROUND DEVICE lost`.
fn leases_worker(s: &Store, run: &Run, index: usize) -> String {
    let me = owner(index);
    let mut lines = Vec::new();
    let mut step = 0;
    for (round, now) in LEASE_ROUNDS.into_iter().enumerate() {
        for d in 0..LEASE_DEVICES {
            barrier(run, index, step);
            step += 1;
            match s.take_lease(&lease_device(run.tag, d), &me, now, LEASE_TTL) {
                Ok(lease) => {
                    assert_eq!(lease.owner, me);
                    assert_eq!(lease.expires_at, now + LEASE_TTL);
                    lines.push(format!("{round} {d} won {}", lease.taken_over));
                }
                Err(StoreError::Conflict) => lines.push(format!("{round} {d} lost")),
                Err(e) => panic!("lease of device {d} in round {round}: {e}"),
            }
        }
    }
    lines.join("\n")
}

fn leases_race(url: &str) {
    let (s, run) = play("leases", url, LEASE_PROCESSES, |_, _| {});
    // winners[round][device] = (worker, taken_over)
    let mut winners = vec![vec![Vec::new(); usize::from(LEASE_DEVICES)]; LEASE_ROUNDS.len()];
    for (worker, lines) in outputs(&run).iter().enumerate() {
        assert_eq!(lines.len(), LEASE_ROUNDS.len() * usize::from(LEASE_DEVICES));
        for line in lines {
            let f: Vec<&str> = line.split(' ').collect();
            let (round, d): (usize, usize) = (f[0].parse().unwrap(), f[1].parse().unwrap());
            match f[2..] {
                ["won", taken_over] => {
                    winners[round][d].push((worker, taken_over.parse::<bool>().unwrap()));
                }
                ["lost"] => {}
                _ => panic!("bad output line {line:?}"),
            }
        }
    }
    for d in 0..usize::from(LEASE_DEVICES) {
        let first = &winners[0][d];
        assert_eq!(first.len(), 1, "device {d}, fresh lease: winners {first:?}");
        assert!(
            !first[0].1,
            "device {d}: a fresh lease reported as taken over"
        );
        let second = &winners[1][d];
        assert_eq!(
            second.len(),
            1,
            "device {d}, expired lease: winners {second:?}"
        );
        let (holder, taken_over) = second[0];
        // The first holder renews its own lease; anyone else takes it over.
        assert_eq!(taken_over, holder != first[0].0, "device {d}: {winners:?}");
        // Only the holder can release it.
        let device = lease_device(run.tag, d as u16);
        let lease = |w: usize| Lease {
            device,
            owner: owner(w),
            expires_at: LEASE_ROUNDS[1] + LEASE_TTL,
            taken_over: false,
        };
        for w in (0..LEASE_PROCESSES).filter(|w| *w != holder) {
            assert_eq!(s.release_lease(&lease(w)), Err(StoreError::Conflict));
        }
        s.release_lease(&lease(holder)).unwrap();
    }
}

#[test]
fn leases_race_on_sqlite() {
    leases_race(&sqlite_url("leases"));
}

#[test]
fn leases_race_on_postgres() {
    leases_race(&postgres_url());
}

// --- Receive floors ----------------------------------------------------------

const FLOOR_KEYS: u16 = 6;
const FLOOR_PROCESSES: usize = 4;
const FLOOR_THREADS: usize = 2;
const FLOOR_RAISES: u32 = 300;

fn floor_key(tag: u32, i: u16) -> CounterKey {
    CounterKey::new(
        title(b'F', tag, i),
        HEAD_END,
        Client::Management,
        KeyKind::GlobalUnicast,
        0,
    )
}

/// Raises floors to values that mostly climb but often fall behind what
/// others have stored. Checks as it goes that no floor it reads is below
/// one it read or stored before, and that a refusal names a higher floor.
/// Output lines: `KEY MAX` (the highest value it offered per key).
fn floors_worker(s: &Store, run: &Run, index: usize) -> String {
    let lines: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..FLOOR_THREADS)
            .map(|t| {
                let seat = index * FLOOR_THREADS + t;
                scope.spawn(move || {
                    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (seat as u64 + 1);
                    let mut seen = [0u32; FLOOR_KEYS as usize];
                    let mut max = [None::<u32>; FLOOR_KEYS as usize];
                    let mut retries = 0;
                    for i in 0..FLOOR_RAISES {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let k = ((u64::from(i) + seat as u64) % u64::from(FLOOR_KEYS)) as u16;
                        let value = i * 100 + (rng % 5_000) as u32;
                        let key = floor_key(run.tag, k);
                        let slot = usize::from(k);
                        max[slot] = max[slot].max(Some(value));
                        let raised = patiently(&mut retries, || match s.raise_floor(&key, value) {
                            Err(StoreError::FloorLowered { current }) => Ok(Err(current)),
                            other => other.map(Ok),
                        });
                        match raised {
                            Ok(()) => seen[slot] = seen[slot].max(value),
                            Err(current) => {
                                assert!(current > value, "refused {value} under {current}");
                                assert!(current >= seen[slot], "floor went down to {current}");
                                seen[slot] = current;
                            }
                        }
                        let now = patiently(&mut retries, || s.floor(&key)).unwrap();
                        assert!(now >= seen[slot], "floor {now} below {} seen", seen[slot]);
                        seen[slot] = now;
                    }
                    (0..FLOOR_KEYS)
                        .filter_map(|k| max[usize::from(k)].map(|m| format!("{k} {m}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    lines.join("\n")
}

fn floors_race(url: &str) {
    let (s, run) = play("floors", url, FLOOR_PROCESSES, |_, _| {});
    let mut max: BTreeMap<u16, u32> = BTreeMap::new();
    for line in outputs(&run).iter().flatten() {
        let (k, m) = line.split_once(' ').unwrap();
        let m: u32 = m.parse().unwrap();
        let e = max.entry(k.parse().unwrap()).or_default();
        *e = (*e).max(m);
    }
    assert_eq!(max.len(), usize::from(FLOOR_KEYS));
    for (&k, &m) in &max {
        let key = floor_key(run.tag, k);
        assert_eq!(
            s.floor(&key).unwrap(),
            Some(m),
            "key {k}: not the highest raise"
        );
        assert_eq!(
            s.raise_floor(&key, m - 1),
            Err(StoreError::FloorLowered { current: m })
        );
        assert_eq!(s.floor(&key).unwrap(), Some(m));
    }
}

#[test]
fn floors_race_on_sqlite() {
    floors_race(&sqlite_url("floors"));
}

#[test]
fn floors_race_on_postgres() {
    floors_race(&postgres_url());
}
