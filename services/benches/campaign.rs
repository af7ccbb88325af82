//! A compromise campaign over a fleet: every keyed client of every device
//! re-keyed through the software providers (new keys generated, packaged,
//! wrapped under the MK, sent to simulated meters, activated once the
//! meter answers under them).
//!
//! The same campaign runs, in one run:
//!
//! * in memory (`MemoryKeyStore`, `MemoryRegistry`, `MemoryCounters`): the
//!   baseline, everything but the database;
//! * on an SQLite file, in one process;
//! * on an SQLite file, in two processes, each given half the fleet (two
//!   nodes, one database);
//! * the same two on PostgreSQL when `DATABASE_URL` is set.
//!
//! The figures are devices per second and the ratios: a backend against
//! memory, and two processes against one. Audit events go to a sink that
//! keeps nothing, so the store's cost is what is measured. The meters are
//! simulated in each process; a node only talks to the meters of the
//! devices it was given.
//!
//! ```text
//! cargo bench -p dlms-sec-services --bench campaign
//! cargo xtask pg -- cargo bench -p dlms-sec-services --bench campaign
//! ```
//!
//! N is `DLMS_SEC_CAMPAIGN_DEVICES` (default 10 000).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    missing_docs,
    reason = "bench code: a panic is a failed run; figures are approximate"
)]

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::ops::Range;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dlms_sec::audit::{NoAudit, Recorder, Timestamp};
use dlms_sec::counter::{SendCounter, Volatile};
use dlms_sec::key::package::{PackagedRecord, RecordId};
use dlms_sec::key::{
    AuthenticationKey, DcoKey, GlobalUnicastEncryptionKey, KeyRole, MasterKey, SharedKey,
};
use dlms_sec::keystore::KeyStore;
use dlms_sec::meter::key_transfer::SecuritySetupKeys;
use dlms_sec::meter::{DeviceCapabilities, Meter};
use dlms_sec::provider::{CryptoProvider, SoftwareDco, SoftwareS1sp};
use dlms_sec::types::Client;
use dlms_sec::{Error, InvocationCounter, SecurityPolicy, SystemTitle};
use dlms_sec_services::counters::{KeyCounters, MemoryCounters, PerKeyCounters};
use dlms_sec_services::dco::Dco;
use dlms_sec_services::memory_store::MemoryKeyStore;
use dlms_sec_services::registry::Registry;
use dlms_sec_services::s1sp::{CampaignReport, MeterLink, RotationContext, S1sp, Scope};
use dlms_sec_store::Store;

const T0: Timestamp = Timestamp(1_795_000_000);
const DCO_TITLE: SystemTitle = SystemTitle::new(*b"DCO\x00\x00\x00\x00\x01");
const CAMPAIGN: &str = "compromise-bench";
/// Set in a worker process: `URL FIRST COUNT`.
const WORKER: &str = "DLMS_SEC_CAMPAIGN_WORKER";

fn keks() -> (DcoKey, SharedKey) {
    (
        DcoKey::from_bytes([0xD0; 16]),
        SharedKey::from_bytes([0x5E; 16]),
    )
}

fn device(i: u32) -> SystemTitle {
    let n = i.to_be_bytes();
    SystemTitle::new([b'G', b'B', b'M', 0, n[0], n[1], n[2], n[3]])
}

/// The keys device `i` was made with.
fn made_with(i: u32) -> ([u8; 16], [u8; 16], [u8; 16]) {
    let n = i.to_be_bytes();
    let mut ak = [0xA0; 16];
    ak[12..].copy_from_slice(&n);
    let mut guek = [0x60; 16];
    guek[12..].copy_from_slice(&n);
    ([0x4D; 16], ak, guek)
}

/// A meter as it left the factory.
fn meter(i: u32) -> Meter<Volatile> {
    let (mk, ak, guek) = made_with(i);
    let mut m = Meter::new(
        device(i),
        DCO_TITLE,
        MasterKey::from_bytes(mk),
        SendCounter::volatile(InvocationCounter::new(1)),
        DeviceCapabilities::default(),
    );
    for client in Client::KEYED {
        m.provision(
            client,
            SecuritySetupKeys::new(
                GlobalUnicastEncryptionKey::from_bytes(guek),
                AuthenticationKey::from_bytes(ak),
            ),
            SecurityPolicy::AuthenticatedEncrypted,
        )
        .unwrap();
    }
    m
}

/// The packaged records device `i` is commissioned with.
fn records(factory: &SoftwareDco, i: u32) -> Vec<PackagedRecord> {
    let (mk, ak, guek) = made_with(i);
    let id = |client, role| RecordId {
        device: device(i),
        client,
        role,
        generation: 0,
    };
    let mut out = vec![
        *factory
            .package(&MasterKey::from_bytes(mk), id(None, KeyRole::Master))
            .unwrap()
            .record(),
    ];
    for client in Client::KEYED {
        out.push(
            *factory
                .package(
                    &AuthenticationKey::from_bytes(ak),
                    id(Some(client), KeyRole::Authentication),
                )
                .unwrap()
                .record(),
        );
        out.push(
            *factory
                .package(
                    &GlobalUnicastEncryptionKey::from_bytes(guek),
                    id(Some(client), KeyRole::GlobalUnicastEncryption),
                )
                .unwrap()
                .record(),
        );
    }
    out
}

/// The simulated meters of one node.
struct Link(HashMap<SystemTitle, Meter<Volatile>>);

impl Link {
    fn of(first: u32, count: u32) -> Self {
        Self(
            (first..first + count)
                .map(|i| (device(i), meter(i)))
                .collect(),
        )
    }
}

impl MeterLink for Link {
    fn exchange(
        &mut self,
        device: SystemTitle,
        client: Client,
        request: &mut [u8],
        response: &mut [u8],
    ) -> dlms_sec::Result<usize> {
        let meter = self
            .0
            .get_mut(&device)
            .ok_or(Error::Misuse("no such meter"))?;
        Ok(meter.handle(client, request, response)?.0)
    }
}

/// Commissions devices `0..n`: records, registry, the DCO's counters.
fn commission<S: KeyStore, G: Registry, C: KeyCounters>(
    s1sp: &mut S1sp<S, SoftwareS1sp, G>,
    dco: &Dco<SoftwareDco>,
    counters: &mut C,
    n: u32,
) {
    let (dco_key, shared) = keks();
    let factory = SoftwareDco::new(&dco_key, &shared);
    for i in 0..n {
        let recs = records(&factory, i);
        s1sp.commission(device(i), DeviceCapabilities::default(), &recs, T0)
            .unwrap();
        for client in Client::KEYED {
            let (_, _, guek) = made_with(i);
            let g = factory
                .package(
                    &GlobalUnicastEncryptionKey::from_bytes(guek),
                    RecordId {
                        device: device(i),
                        client: Some(client),
                        role: KeyRole::GlobalUnicastEncryption,
                        generation: 0,
                    },
                )
                .unwrap();
            dco.introduce(counters, &g).unwrap();
        }
    }
}

fn dco() -> Dco<SoftwareDco> {
    let (dco_key, shared) = keks();
    Dco::new(SoftwareDco::new(&dco_key, &shared), DCO_TITLE)
}

/// Runs the campaign over the devices numbered in `fleet`; checks every
/// client was activated.
fn campaign<S: KeyStore, G: Registry, C: KeyCounters>(
    s1sp: &mut S1sp<S, SoftwareS1sp, G>,
    dco: &Dco<SoftwareDco>,
    counters: &mut C,
    link: &mut Link,
    fleet: Range<u32>,
    id: &str,
) -> Duration {
    let count = fleet.end - fleet.start;
    let devices: Vec<SystemTitle> = fleet.map(device).collect();
    let mut audit = NoAudit;
    let mut rng = getrandom::SysRng;
    let mut cx = RotationContext {
        dco,
        link,
        counters,
        audit: Recorder::new(&mut audit, Timestamp(T0.0 + 3_600)),
        rng: &mut rng,
    };
    let start = Instant::now();
    let report = s1sp
        .campaign(&mut cx, id, Scope::Devices(&devices))
        .unwrap();
    let took = start.elapsed();
    check(&report, count);
    took
}

fn check(report: &CampaignReport, count: u32) {
    let clients = count * Client::KEYED.len() as u32;
    assert_eq!(report.activated, clients, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
}

/// The memory baseline.
fn in_memory(n: u32) -> Duration {
    let (_, shared) = keks();
    let dco = dco();
    let mut counters = PerKeyCounters::new(MemoryCounters::new(), NonZeroU32::new(8).unwrap());
    let mut s1sp = S1sp::new(MemoryKeyStore::new(), SoftwareS1sp::new(&shared));
    commission(&mut s1sp, &dco, &mut counters, n);
    let mut link = Link::of(0, n);
    campaign(&mut s1sp, &dco, &mut counters, &mut link, 0..n, CAMPAIGN)
}

/// One node over `store`: devices `first..first + count`.
fn on_store(store: &Store, node: &str, first: u32, count: u32, id: &str) -> Duration {
    let (_, shared) = keks();
    let dco = dco();
    let mut counters = PerKeyCounters::new(store, NonZeroU32::new(8).unwrap());
    let mut s1sp = S1sp::with_registry(store, SoftwareS1sp::new(&shared), store, node);
    let mut link = Link::of(first, count);
    campaign(
        &mut s1sp,
        &dco,
        &mut counters,
        &mut link,
        first..first + count,
        id,
    )
}

/// A fresh, commissioned database at `url`.
fn prepare(url: &str, n: u32) -> Store {
    let store = Store::open(url).unwrap();
    let (_, shared) = keks();
    let dco = dco();
    let mut counters = PerKeyCounters::new(&store, NonZeroU32::new(8).unwrap());
    let mut s1sp = S1sp::with_registry(&store, SoftwareS1sp::new(&shared), &store, "setup");
    commission(&mut s1sp, &dco, &mut counters, n);
    store
}

/// Two worker processes over `url`, each with half the fleet under its own
/// campaign id; the wall time from both started to both done.
fn two_processes(url: &str, n: u32) -> Duration {
    let half = n / 2;
    let exe = std::env::current_exe().unwrap();
    let start = Instant::now();
    let children: Vec<_> = [(0, half), (half, n - half)]
        .into_iter()
        .map(|(first, count)| {
            Command::new(&exe)
                .env(WORKER, format!("{url} {first} {count}"))
                .stdout(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    start.elapsed()
}

fn worker(spec: &str) {
    let mut parts = spec.split(' ');
    let url = parts.next().unwrap();
    let first: u32 = parts.next().unwrap().parse().unwrap();
    let count: u32 = parts.next().unwrap().parse().unwrap();
    let store = Store::open(url).unwrap();
    let node = format!("node-{first}");
    on_store(&store, &node, first, count, &format!("{CAMPAIGN}-{first}"));
}

fn rate(n: u32, d: Duration) -> f64 {
    f64::from(n) / d.as_secs_f64()
}

/// A fresh SQLite file under target/.
fn sqlite_url(name: &str) -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-campaign");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.sqlite"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    format!("sqlite://{}", path.display())
}

/// A fresh schema on the PostgreSQL server at `base`.
fn postgres_url(base: &str, name: &str) -> String {
    let mut c = postgres::Client::connect(base, postgres::NoTls).unwrap();
    c.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
    ))
    .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-csearch_path%3D{name}")
}

fn backend(label: &str, n: u32, fresh: &dyn Fn(&str) -> String, memory: Duration) {
    let url = fresh("one");
    let store = prepare(&url, n);
    let one = on_store(&store, "node-a", 0, n, CAMPAIGN);
    drop(store);
    let url = fresh("two");
    drop(prepare(&url, n));
    let two = two_processes(&url, n);
    println!(
        "{label:<10} one process {:>8.1} devices/s ({:.1} s), {:.3} of memory; \
         two processes {:>8.1} devices/s ({:.1} s), {:.2} of one",
        rate(n, one),
        one.as_secs_f64(),
        rate(n, one) / rate(n, memory),
        rate(n, two),
        two.as_secs_f64(),
        rate(n, two) / rate(n, one),
    );
}

fn main() {
    if let Ok(spec) = std::env::var(WORKER) {
        worker(&spec);
        return;
    }
    let n: u32 = std::env::var("DLMS_SEC_CAMPAIGN_DEVICES")
        .ok()
        .map_or(10_000, |v| v.parse().unwrap());
    println!(
        "dlms-sec campaign bench: {n} devices × {} clients",
        Client::KEYED.len()
    );
    let memory = in_memory(n);
    println!(
        "{:<10} one process {:>8.1} devices/s ({:.1} s)",
        "memory",
        rate(n, memory),
        memory.as_secs_f64()
    );
    backend("sqlite", n, &|name| sqlite_url(name), memory);
    match std::env::var("DATABASE_URL") {
        Ok(base) => backend(
            "postgres",
            n,
            &|name| postgres_url(&base, &format!("campaign_{name}")),
            memory,
        ),
        Err(_) => println!("postgres   skipped: DATABASE_URL is not set"),
    }
}
