//! Crash safety of a re-key campaign over a SQLite store, and over a
//! PostgreSQL one.
//!
//! A child process (this test binary, started again) runs a campaign over
//! two commissioned devices against the store, then sends a few commands
//! under the new keys, and is killed with SIGKILL
//! at each of its steps in turn: before every store write, audit record
//! and request to a meter, and between a request reaching the meter and its
//! answer reaching the child. A few more children are killed at random
//! moments. The meters live in this process, which answers the child's
//! requests, so they outlive it.
//!
//! After each kill the store, reopened, must show:
//! * for every keyed client, the AK and GUEK of one generation active, the
//!   old or the new; the device MK of the generation of the client it is
//!   rotated with;
//! * every commissioned slot still holding an active record, every record
//!   byte for byte one that was commissioned or that the child stored for
//!   its generation;
//! * every DCO counter's ceiling above each value the child drew under it;
//! * an audit chain that verifies.
//!
//! Then a fresh node over the same store, once the dead node's lease has
//! run out, finishes the campaign (same id), and every meter answers a
//! command under the keys the store holds active.
//!
//! The child speaks in lines on stdout, each flushed before it goes on:
//! `step <k> <what>` at each step, `stop <k>` where it waits to be killed,
//! `record <hex>` before a record is stored, `ic <device> <client>
//! <generation> <value>` for each counter value drawn, `frame <device>
//! <client> <hex>` for a request, answered on its stdin with `ok <hex>` or
//! `err`, and `done <steps>`. The random kill times print their seed;
//! `DLMS_SEC_CRASH_SEED` runs them again.
//!
//! Every test runs twice, with the same kills and the same checks: on
//! SQLite, a fresh file per case on a memory-backed file system where there
//! is one; and on PostgreSQL, a fresh schema per case in the database of
//! `DATABASE_URL` (named in the store's URL with
//! `options=-csearch_path%3DSCHEMA`), which the child opens by the same
//! URL. `cargo xtask test` and `cargo xtask pg -- …` start a throwaway
//! server and set it. Without `DATABASE_URL` the PostgreSQL tests fail
//! under CI (`CI=true`) and are skipped elsewhere, saying so.
//!
//! A killed child's connections close with it, so the server rolls back
//! whatever transaction the kill cut short and frees its locks at once: the
//! next node never waits on the dead one. A node cut off without its
//! connections closing (a network partition, a frozen host) is tested in
//! `store/tests/postgres.rs`.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "test code: a panic is a failed test"
)]

mod support;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use dlms_sec::audit::{AuditEvent, AuditSink, Recorder, Timestamp};
use dlms_sec::counter::{CounterKey, CounterPersistence, CounterSource, SendCounter, Volatile};
use dlms_sec::error::{CounterError, Error};
use dlms_sec::key::package::{PackagedRecord, RECORD_LEN, RecordId};
use dlms_sec::key::{
    AuditKey, AuthenticationKey, DcoKey, GlobalUnicastEncryptionKey, KeyRole, MasterKey, SharedKey,
};
use dlms_sec::keystore::{KeySlot, KeyStore};
use dlms_sec::meter::DeviceCapabilities;
use dlms_sec::meter::key_transfer::SecuritySetupKeys;
use dlms_sec::provider::{CryptoProvider, SoftwareDco, SoftwareS1sp};
use dlms_sec::types::Client;
use dlms_sec::wire::KeyKind;
use dlms_sec::{InvocationCounter, SecurityPolicy, SystemTitle};
use dlms_sec_meter_sim::Meter;
use dlms_sec_services::counters::{KeyCounters, PerKeyCounters};
use dlms_sec_services::dco::Dco;
use dlms_sec_services::registry::{Progress, Registration, Registry};
use dlms_sec_services::s1sp::{MeterLink, ROTATION_LEASE_SECS, RotationContext, S1sp, Scope};
use dlms_sec_store::{DatabaseAuditSink, Store, verify_audit};
use getrandom::SysRng;
use rand_core::TryRng;
use support::{DCO_TITLE, T0};

/// Set in the child's environment: run the campaign.
const CHILD_ENV: &str = "DLMS_SEC_CRASH_CHILD";
/// The store's URL.
const STORE_ENV: &str = "DLMS_SEC_CRASH_STORE";
/// The DCO Key, the Shared Key and the audit key, in hex (test keys).
const KEYS_ENV: &str = "DLMS_SEC_CRASH_KEYS";
/// The step the child stops at, waiting to be killed.
const STOP_ENV: &str = "DLMS_SEC_CRASH_STOP";
/// Seeds the random kill times (printed by each run, to reproduce one).
const SEED_ENV: &str = "DLMS_SEC_CRASH_SEED";
/// Starts every line of the child's protocol on its stdout.
const MARK: &str = "@crash ";

const CAMPAIGN: &str = "re-key-all";
/// Values each counter claim reserves: a claim is not a step of its own
/// every time.
const RESERVE_AHEAD: NonZeroU32 = NonZeroU32::new(2).unwrap();
/// Commands the child sends to each client of [`M1`] after the campaign,
/// so some keys draw values from more than one claim.
const COMMANDS_AFTER: u32 = 2;
/// When the child runs the campaign.
const T_CHILD: Timestamp = Timestamp(T0.0 + 3600);
/// When the fresh node takes over: the child's lease has run out.
const T_TAKEOVER: Timestamp = Timestamp(T_CHILD.0 + ROTATION_LEASE_SECS + 1);
/// Children killed at a random moment.
const RANDOM_KILLS: u32 = 12;

const M1: SystemTitle = SystemTitle::new(*b"GBM\x00\x00\x00\x00\x01");
const M2: SystemTitle = SystemTitle::new(*b"GBM\x00\x00\x00\x00\x02");
/// The devices, and whether each rotates its MK.
const DEVICES: [(SystemTitle, bool); 2] = [(M1, true), (M2, false)];

/// get-request-normal of the clock (class 8, 0-0:1.0.0.255, attribute 2).
const GET: [u8; 13] = [
    0xC0, 0x01, 0xC1, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0xFF, 0x02, 0x00,
];

fn slot(device: SystemTitle, client: Option<Client>, role: KeyRole) -> KeySlot {
    KeySlot {
        device,
        client,
        role,
    }
}

/// Every slot a commissioned device has.
fn device_slots(device: SystemTitle) -> BTreeSet<KeySlot> {
    let mut slots = BTreeSet::from([slot(device, None, KeyRole::Master)]);
    for client in Client::KEYED {
        slots.insert(slot(device, Some(client), KeyRole::Authentication));
        slots.insert(slot(device, Some(client), KeyRole::GlobalUnicastEncryption));
    }
    slots
}

fn client_index(client: Client) -> usize {
    client.keyed_index().unwrap()
}

fn client_at(index: &str) -> Client {
    Client::KEYED[index.parse::<usize>().unwrap()]
}

fn title_of(h: &str) -> SystemTitle {
    SystemTitle::from_slice(&hex::decode(h).unwrap()).unwrap()
}

// --- The keys -----------------------------------------------------------

/// The HSM keys and the audit key, passed to the child in hex.
struct Keks {
    dco: [u8; 16],
    shared: [u8; 16],
    audit: [u8; 16],
}

impl Keks {
    fn generate() -> Self {
        let mut k = [[0u8; 16]; 3];
        for key in &mut k {
            SysRng.try_fill_bytes(key).unwrap();
        }
        let [dco, shared, audit] = k;
        Self { dco, shared, audit }
    }

    fn to_env(&self) -> String {
        [self.dco, self.shared, self.audit]
            .map(hex::encode)
            .join(" ")
    }

    fn from_env(value: &str) -> Self {
        let k: Vec<[u8; 16]> = value
            .split(' ')
            .map(|h| hex::decode(h).unwrap().try_into().unwrap())
            .collect();
        Self {
            dco: k[0],
            shared: k[1],
            audit: k[2],
        }
    }

    fn dco(&self) -> Dco<SoftwareDco> {
        let provider = SoftwareDco::new(
            &DcoKey::from_bytes(self.dco),
            &SharedKey::from_bytes(self.shared),
        );
        Dco::new(provider, DCO_TITLE)
    }

    fn s1sp_provider(&self) -> SoftwareS1sp {
        SoftwareS1sp::new(&SharedKey::from_bytes(self.shared))
    }

    fn audit_key(&self) -> AuditKey {
        AuditKey::from_bytes(self.audit)
    }
}

// --- The child ------------------------------------------------------------

/// One line of the child's protocol, flushed before anything else happens.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{line}").unwrap();
    out.flush().unwrap();
}

/// Counts the child's steps and stops at the chosen one.
#[derive(Debug)]
struct Gate {
    stop: Option<u32>,
    passed: Cell<u32>,
}

impl Gate {
    /// A step boundary before `what`: at the chosen one, says so and
    /// waits to be killed.
    fn boundary(&self, what: &str) {
        let k = self.passed.get();
        say(&format!("step {k} {what}"));
        if self.stop == Some(k) {
            say(&format!("stop {k}"));
            std::thread::sleep(Duration::from_secs(60));
            // Nobody killed it: the parent is gone.
            std::process::exit(3);
        }
        self.passed.set(k + 1);
    }
}

/// The store as the child's S1SP, registry and counters see it: every
/// write is a step boundary, and every record is reported before it is
/// stored.
#[derive(Clone, Copy, Debug)]
struct Crashable<'a> {
    store: &'a Store,
    gate: &'a Gate,
}

impl KeyStore for Crashable<'_> {
    fn put_pending(&mut self, record: &PackagedRecord) -> dlms_sec::Result<()> {
        self.gate
            .boundary(&format!("put_pending {:?}", record.role()));
        say(&format!("record {}", hex::encode(record.as_bytes())));
        KeyStore::put_pending(&mut self.store, record)
    }
    fn put_initial(&mut self, record: &PackagedRecord) -> dlms_sec::Result<()> {
        self.gate.boundary("put_initial");
        say(&format!("record {}", hex::encode(record.as_bytes())));
        KeyStore::put_initial(&mut self.store, record)
    }
    fn activate(&mut self, s: &KeySlot, generation: u32) -> dlms_sec::Result<()> {
        self.gate.boundary("activate");
        KeyStore::activate(&mut self.store, s, generation)
    }
    fn activate_all(&mut self, slots: &[(KeySlot, u32)]) -> dlms_sec::Result<()> {
        self.gate.boundary("activate_all");
        KeyStore::activate_all(&mut self.store, slots)
    }
    fn active(&self, s: &KeySlot) -> dlms_sec::Result<PackagedRecord> {
        KeyStore::active(&self.store, s)
    }
    fn pending(&self, s: &KeySlot) -> dlms_sec::Result<Option<PackagedRecord>> {
        KeyStore::pending(&self.store, s)
    }
    fn previous(&self, s: &KeySlot) -> dlms_sec::Result<Option<PackagedRecord>> {
        KeyStore::previous(&self.store, s)
    }
    fn discard_pending(&mut self, s: &KeySlot) -> dlms_sec::Result<()> {
        self.gate.boundary("discard_pending");
        KeyStore::discard_pending(&mut self.store, s)
    }
    fn retire_previous(&mut self, s: &KeySlot) -> dlms_sec::Result<()> {
        self.gate.boundary("retire_previous");
        KeyStore::retire_previous(&mut self.store, s)
    }
    fn for_each_device(&self, f: &mut dyn FnMut(SystemTitle)) -> dlms_sec::Result<()> {
        KeyStore::for_each_device(&self.store, f)
    }
    fn for_each_slot(
        &self,
        device: &SystemTitle,
        f: &mut dyn FnMut(KeySlot),
    ) -> dlms_sec::Result<()> {
        KeyStore::for_each_slot(&self.store, device, f)
    }
}

impl Registry for Crashable<'_> {
    fn register(
        &mut self,
        device: &SystemTitle,
        at: Timestamp,
        capabilities: DeviceCapabilities,
    ) -> dlms_sec::Result<()> {
        self.gate.boundary("register");
        Registry::register(&mut self.store, device, at, capabilities)
    }
    fn registration(&self, device: &SystemTitle) -> dlms_sec::Result<Option<Registration>> {
        Registry::registration(&self.store, device)
    }
    fn mark_rotated(&mut self, device: &SystemTitle, at: Timestamp) -> dlms_sec::Result<()> {
        self.gate.boundary("mark_rotated");
        Registry::mark_rotated(&mut self.store, device, at)
    }
    fn set_capabilities(
        &mut self,
        device: &SystemTitle,
        capabilities: DeviceCapabilities,
    ) -> dlms_sec::Result<()> {
        self.gate.boundary("set_capabilities");
        Registry::set_capabilities(&mut self.store, device, capabilities)
    }
    fn due(
        &self,
        now: Timestamp,
        horizon_secs: u64,
        limit: u32,
    ) -> dlms_sec::Result<Vec<(SystemTitle, Timestamp)>> {
        Registry::due(&self.store, now, horizon_secs, limit)
    }
    fn devices(
        &self,
        after: Option<&SystemTitle>,
        limit: u32,
    ) -> dlms_sec::Result<Vec<SystemTitle>> {
        Registry::devices(&self.store, after, limit)
    }
    fn device_count(&self) -> dlms_sec::Result<u64> {
        Registry::device_count(&self.store)
    }
    fn set_progress(
        &mut self,
        device: &SystemTitle,
        client: Client,
        progress: &Progress,
    ) -> dlms_sec::Result<()> {
        self.gate.boundary("set_progress");
        Registry::set_progress(&mut self.store, device, client, progress)
    }
    fn progress(&self, device: &SystemTitle, client: Client) -> dlms_sec::Result<Option<Progress>> {
        Registry::progress(&self.store, device, client)
    }
    fn floor(&self, key: &CounterKey) -> dlms_sec::Result<Option<u32>> {
        Registry::floor(&self.store, key)
    }
    fn raise_floor(&mut self, key: &CounterKey, value: u32) -> dlms_sec::Result<()> {
        self.gate.boundary("raise_floor");
        Registry::raise_floor(&mut self.store, key, value)
    }
    fn take_lease(
        &mut self,
        device: &SystemTitle,
        owner: &str,
        now: Timestamp,
        ttl_secs: u64,
    ) -> dlms_sec::Result<bool> {
        self.gate.boundary("take_lease");
        Registry::take_lease(&mut self.store, device, owner, now, ttl_secs)
    }
    fn release_lease(&mut self, device: &SystemTitle, owner: &str) -> dlms_sec::Result<()> {
        self.gate.boundary("release_lease");
        Registry::release_lease(&mut self.store, device, owner)
    }
    fn campaign_start(
        &mut self,
        id: &str,
        devices: &[SystemTitle],
        at: Timestamp,
    ) -> dlms_sec::Result<bool> {
        self.gate.boundary("campaign_start");
        Registry::campaign_start(&mut self.store, id, devices, at)
    }
    fn campaign_mark_done(&mut self, id: &str, device: &SystemTitle) -> dlms_sec::Result<()> {
        self.gate.boundary("campaign_mark_done");
        Registry::campaign_mark_done(&mut self.store, id, device)
    }
    fn campaign_pending(&self, id: &str, limit: u32) -> dlms_sec::Result<Vec<SystemTitle>> {
        Registry::campaign_pending(&self.store, id, limit)
    }
}

impl CounterPersistence for Crashable<'_> {
    fn create(&mut self, key: &CounterKey, first: u32) -> Result<(), CounterError> {
        self.gate.boundary("counter create");
        CounterPersistence::create(&mut self.store, key, first)
    }
    fn claim(
        &mut self,
        key: &CounterKey,
        n: NonZeroU32,
    ) -> Result<core::ops::Range<u32>, CounterError> {
        self.gate.boundary("counter claim");
        CounterPersistence::claim(&mut self.store, key, n)
    }
}

/// The DCO's counters, reporting each value drawn before it is used.
struct ReportingCounters<'a> {
    inner: PerKeyCounters<Crashable<'a>>,
    current: Option<CounterKey>,
    near_exhaustion: bool,
}

impl KeyCounters for ReportingCounters<'_> {
    fn introduce(
        &mut self,
        key: &CounterKey,
        first: InvocationCounter,
    ) -> Result<(), CounterError> {
        self.inner.introduce(key, first)
    }

    fn counter(&mut self, key: &CounterKey) -> Result<&mut dyn CounterSource, CounterError> {
        self.near_exhaustion = self.inner.counter(key)?.near_exhaustion();
        self.current = Some(*key);
        Ok(self)
    }
}

impl CounterSource for ReportingCounters<'_> {
    fn next_counter(&mut self) -> Result<InvocationCounter, CounterError> {
        let key = self.current.ok_or(CounterError::Persistence)?;
        let counter = self.inner.counter(&key)?;
        let value = counter.next_counter()?;
        self.near_exhaustion = counter.near_exhaustion();
        say(&format!(
            "ic {} {} {} {}",
            hex::encode(key.device.as_bytes()),
            client_index(key.client),
            key.generation,
            value.value()
        ));
        Ok(value)
    }

    fn near_exhaustion(&self) -> bool {
        self.near_exhaustion
    }
}

/// The child's audit sink: every record is a step boundary.
struct CrashableSink<'a> {
    inner: DatabaseAuditSink<'a>,
    gate: &'a Gate,
}

impl AuditSink for CrashableSink<'_> {
    fn record(&mut self, event: &AuditEvent) -> dlms_sec::Result<()> {
        self.gate.boundary(&format!("audit {:?}", event.action));
        self.inner.record(event)
    }
}

/// The child's link to the meters: a request goes out as a line on
/// stdout, its answer comes back as a line on stdin.
struct PipeLink<'a> {
    gate: &'a Gate,
}

impl MeterLink for PipeLink<'_> {
    fn exchange(
        &mut self,
        device: SystemTitle,
        client: Client,
        request: &mut [u8],
        response: &mut [u8],
    ) -> dlms_sec::Result<usize> {
        self.gate.boundary("request");
        say(&format!(
            "frame {} {} {}",
            hex::encode(device.as_bytes()),
            client_index(client),
            hex::encode(request)
        ));
        // The meter has the request; its answer waits in the pipe.
        self.gate.boundary("answer");
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|_| Error::Misuse("the link is down"))?;
        match line.trim().split_once(' ') {
            Some(("ok", h)) => {
                let answer = hex::decode(h).map_err(|_| Error::Misuse("a garbled answer"))?;
                let out = response
                    .get_mut(..answer.len())
                    .ok_or(Error::BufferTooSmall {
                        required: answer.len(),
                    })?;
                out.copy_from_slice(&answer);
                Ok(answer.len())
            }
            _ => Err(Error::Misuse("the meter did not answer")),
        }
    }
}

/// The campaign, as the child runs it.
fn run_child() {
    let var = |name| std::env::var(name).unwrap();
    let keks = Keks::from_env(&var(KEYS_ENV));
    let gate = Gate {
        stop: std::env::var(STOP_ENV).ok().map(|s| s.parse().unwrap()),
        passed: Cell::new(0),
    };
    let store = Store::open(&var(STORE_ENV)).unwrap();
    let handle = Crashable {
        store: &store,
        gate: &gate,
    };
    let dco = keks.dco();
    let mut s1sp = S1sp::with_registry(handle, keks.s1sp_provider(), handle, "node-a");
    let mut counters = ReportingCounters {
        inner: PerKeyCounters::new(handle, RESERVE_AHEAD),
        current: None,
        near_exhaustion: false,
    };
    let mut sink = CrashableSink {
        inner: DatabaseAuditSink::open(&store, &keks.audit_key(), &mut SysRng).unwrap(),
        gate: &gate,
    };
    let mut link = PipeLink { gate: &gate };
    let mut cx = RotationContext {
        dco: &dco,
        link: &mut link,
        counters: &mut counters,
        audit: Recorder::new(&mut sink, T_CHILD),
        rng: &mut SysRng,
    };
    let report = s1sp.campaign(&mut cx, CAMPAIGN, Scope::All).unwrap();
    assert!(
        report.failed.is_empty() && report.pending == 0,
        "the uninterrupted campaign: {report:?}"
    );
    // Commands under the new keys, past the first block of counter values.
    for client in Client::KEYED {
        for _ in 0..COMMANDS_AFTER {
            let mut answer = [0u8; 64];
            s1sp.command(&mut cx, M1, client, &GET, &mut answer)
                .unwrap();
        }
    }
    say(&format!("done {}", gate.passed.get()));
}

/// Not a test on its own: the body of the child process the crash tests
/// start (with [`CHILD_ENV`] set); returns at once otherwise.
#[test]
fn child_process() {
    if std::env::var_os(CHILD_ENV).is_some() {
        run_child();
    }
}

// --- The parent -------------------------------------------------------------

/// Where the cases' stores live.
#[derive(Clone)]
enum Backend {
    /// A fresh SQLite file per case, on a memory-backed file system where
    /// there is one.
    Sqlite,
    /// A fresh schema per case in the PostgreSQL database at this URL.
    Postgres(String),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres(_) => "PostgreSQL",
        }
    }

    /// The PostgreSQL database of the run (`DATABASE_URL`). Without one the
    /// test fails under CI and is skipped elsewhere (`None`).
    fn postgres(test: &str) -> Option<Self> {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return Some(Self::Postgres(url));
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "DATABASE_URL is not set: the PostgreSQL crash tests need a database to create \
             schemas in. Run them with a throwaway server: \
             `cargo xtask pg -- cargo test -p dlms-sec-services --test crash` (or `cargo xtask test`)"
        );
        eprintln!("{test}: DATABASE_URL is not set; skipped");
        None
    }

    /// A new, empty store for one case.
    fn fresh(&self) -> CaseStore {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        match self {
            Self::Sqlite => {
                // A kill, unlike a power cut, leaves what was written in the
                // page cache: memory-backed files show the same, without the
                // fsync cost.
                let shm = Path::new("/dev/shm");
                let base = if shm.is_dir() {
                    shm
                } else {
                    Path::new(env!("CARGO_TARGET_TMPDIR"))
                };
                let dir = base.join("dlms-sec-crash");
                std::fs::create_dir_all(&dir).unwrap();
                let store = CaseStore::Sqlite(dir.join(format!("{pid}-{n}.db")));
                store.remove();
                store
            }
            Self::Postgres(base) => {
                let schema = format!("crash_test_{pid}_{n}");
                let mut c = postgres::Client::connect(base, postgres::NoTls).unwrap();
                c.batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
                ))
                .unwrap();
                CaseStore::Postgres {
                    base: base.clone(),
                    schema,
                }
            }
        }
    }
}

/// One case's store.
enum CaseStore {
    /// A SQLite file (with its `-wal` and `-shm` files).
    Sqlite(PathBuf),
    /// A schema of the PostgreSQL database at `base`.
    Postgres { base: String, schema: String },
}

impl CaseStore {
    /// The store's URL, as the child and every node open it.
    fn url(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres { base, schema } => {
                let sep = if base.contains('?') { '&' } else { '?' };
                format!("{base}{sep}options=-csearch_path%3D{schema}")
            }
        }
    }

    fn remove(&self) {
        match self {
            Self::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Self::Postgres { base, schema } => {
                let mut c = postgres::Client::connect(base, postgres::NoTls).unwrap();
                c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                    .unwrap();
            }
        }
    }
}

/// One commissioned world on a fresh store, and what its child said.
struct Case {
    name: String,
    store: CaseStore,
    meters: Vec<Meter<Volatile>>,
    /// Every record the store may hold: commissioned, or reported by the
    /// child before it stored it.
    known: BTreeSet<[u8; RECORD_LEN]>,
    /// Every counter value the child drew, with its key.
    drawn: Vec<(CounterKey, u32)>,
    /// The steps the child went through.
    steps: Vec<String>,
}

impl Case {
    /// The case and the last step its child reached, for messages.
    fn what(&self) -> String {
        match self.steps.last() {
            Some(step) => format!("{} (last step {step})", self.name),
            None => self.name.clone(),
        }
    }

    fn url(&self) -> String {
        self.store.url()
    }

    /// Hands the child's request to its meter; the answer line for the
    /// child.
    fn answer(&mut self, request: &str) -> String {
        let mut parts = request.split(' ');
        let device = title_of(parts.next().unwrap());
        let client = client_at(parts.next().unwrap());
        let mut frame = hex::decode(parts.next().unwrap()).unwrap();
        let meter = self
            .meters
            .iter_mut()
            .find(|m| m.title() == device)
            .unwrap();
        let mut out = [0u8; 2048];
        match meter.handle(client, &mut frame, &mut out) {
            Ok((n, _)) => format!("ok {}", hex::encode(&out[..n])),
            Err(_) => "err".to_owned(),
        }
    }

    fn heard(&mut self, line: &str) {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "ic" => {
                let f: Vec<&str> = rest.split(' ').collect();
                let key = CounterKey::new(
                    DCO_TITLE,
                    title_of(f[0]),
                    client_at(f[1]),
                    KeyKind::GlobalUnicast,
                    f[2].parse().unwrap(),
                );
                self.drawn.push((key, f[3].parse().unwrap()));
            }
            "record" => {
                let bytes = hex::decode(rest).unwrap();
                self.known.insert(bytes.try_into().unwrap());
            }
            _ => panic!("{}: the child said {line:?}", self.name),
        }
    }
}

/// Fresh devices commissioned in a fresh store of `backend`: MK, and AK
/// and GUEK for every keyed client, in the store and in the meters; the
/// DCO's counter of every GUEK made.
fn commission(keks: &Keks, backend: &Backend, name: &str) -> Case {
    let mut case = Case {
        name: name.to_owned(),
        store: backend.fresh(),
        meters: Vec::new(),
        known: BTreeSet::new(),
        drawn: Vec::new(),
        steps: Vec::new(),
    };
    let store = Store::open(&case.url()).unwrap();
    let dco = keks.dco();
    let mut s1sp = S1sp::with_registry(&store, keks.s1sp_provider(), &store, "commissioning");
    let key = || {
        let mut b = [0u8; 16];
        SysRng.try_fill_bytes(&mut b).unwrap();
        b
    };
    for (device, mk_rotation) in DEVICES {
        let id = |client, role| RecordId {
            device,
            client,
            role,
            generation: 0,
        };
        let p = dco.provider();
        let mk = key();
        let mut records = vec![
            *p.package(&MasterKey::from_bytes(mk), id(None, KeyRole::Master))
                .unwrap()
                .record(),
        ];
        let mut meter = Meter::new(
            device,
            DCO_TITLE,
            MasterKey::from_bytes(mk),
            SendCounter::volatile(InvocationCounter::new(1)),
            DeviceCapabilities {
                master_key_rotation: mk_rotation,
            },
        );
        for client in Client::KEYED {
            let (ak, guek) = (key(), key());
            records.push(
                *p.package(
                    &AuthenticationKey::from_bytes(ak),
                    id(Some(client), KeyRole::Authentication),
                )
                .unwrap()
                .record(),
            );
            records.push(
                *p.package(
                    &GlobalUnicastEncryptionKey::from_bytes(guek),
                    id(Some(client), KeyRole::GlobalUnicastEncryption),
                )
                .unwrap()
                .record(),
            );
            let keys = SecuritySetupKeys::new(
                GlobalUnicastEncryptionKey::from_bytes(guek),
                AuthenticationKey::from_bytes(ak),
            );
            meter
                .provision(client, keys, SecurityPolicy::AuthenticatedEncrypted)
                .unwrap();
        }
        s1sp.commission(device, meter.capabilities(), &records, T0)
            .unwrap();
        case.known.extend(records.iter().map(|r| *r.as_bytes()));
        case.meters.push(meter);
    }
    let mut counters = PerKeyCounters::new(&store, RESERVE_AHEAD);
    support::introduce_all(&dco, &s1sp, &mut counters);
    case
}

/// Where the child is stopped.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// Killed when it reaches this step.
    AtStep(u32),
    /// Killed this long after it starts.
    After(Duration),
    /// Runs to the end.
    Never,
}

/// How a child run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    Killed,
    /// Ran to the end, through this many steps, in this time.
    Completed(u32, Duration),
}

/// Runs the child over `case`'s store, answering its requests with the
/// case's meters, and kills it as `stop` says.
fn run(case: &mut Case, keks: &Keks, stop: Stop) -> Ended {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env(STORE_ENV, case.url())
        .env(KEYS_ENV, keks.to_env())
        .env_remove(STOP_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Stop::AtStep(k) = stop {
        command.env(STOP_ENV, k.to_string());
    }
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may put its own words before ours on a line.
            if let Some(i) = line.find(MARK)
                && tx.send(line[i + MARK.len()..].to_owned()).is_err()
            {
                break;
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let kill_at = match stop {
        Stop::After(d) => Some(started + d),
        Stop::AtStep(_) | Stop::Never => None,
    };
    let hung = started + Duration::from_secs(120);
    let mut killed = false;
    let mut completed = None;
    loop {
        let until = kill_at.filter(|_| !killed).unwrap_or(hung);
        let line = match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(line) => line,
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                assert!(
                    !killed && kill_at.is_some(),
                    "{}: the child hangs",
                    case.name
                );
                child.kill().unwrap();
                killed = true;
                continue;
            }
        };
        let (word, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match word {
            // Sent after the kill: it never reaches the meter.
            "frame" if killed => {}
            "frame" => {
                let answer = case.answer(rest);
                // The child may be dead already: a lost answer.
                let _ = writeln!(stdin, "{answer}").and_then(|()| stdin.flush());
            }
            "step" => case.steps.push(rest.to_owned()),
            "stop" => {
                assert!(
                    matches!(stop, Stop::AtStep(k) if rest == k.to_string()),
                    "{}: stopped at step {rest}, not as {stop:?}",
                    case.name
                );
                child.kill().unwrap();
                killed = true;
            }
            "done" => completed = Some(rest.parse().unwrap()),
            _ => case.heard(&line),
        }
    }
    drop(stdin);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let errors = errors.join().unwrap();
    match completed {
        Some(steps) if status.success() => Ended::Completed(steps, started.elapsed()),
        _ => {
            assert!(
                killed,
                "{}: the child failed ({status}):\n{errors}",
                case.name
            );
            Ended::Killed
        }
    }
}

/// What the store must show after the child died, whenever it died.
fn check_store(case: &Case, keks: &Keks) {
    let what = &case.what();
    let store = Store::open(&case.url()).unwrap();
    for (device, mk_rotation) in DEVICES {
        let slots: BTreeSet<KeySlot> = store.slots(&device).unwrap().into_iter().collect();
        assert_eq!(
            slots,
            device_slots(device),
            "{what}: the slots of {device:?}"
        );
        let active = |s: KeySlot| {
            let records = store.slot_records(&s).unwrap();
            for r in [records.active, records.pending, records.previous]
                .iter()
                .flatten()
            {
                assert!(
                    case.known.contains(r.as_bytes()),
                    "{what}: {s:?} holds a record of generation {} never stored",
                    r.generation()
                );
            }
            let a = records
                .active
                .unwrap_or_else(|| panic!("{what}: {s:?} lost its active record"));
            assert!(a.generation() <= 1, "{what}: {s:?}");
            if let Some(p) = records.pending {
                assert_eq!(p.generation(), a.generation() + 1, "{what}: {s:?}");
            }
            a.generation()
        };
        let mk = active(slot(device, None, KeyRole::Master));
        let mut generations = Vec::new();
        for client in Client::KEYED {
            let ak = active(slot(device, Some(client), KeyRole::Authentication));
            let guek = active(slot(device, Some(client), KeyRole::GlobalUnicastEncryption));
            assert_eq!(
                ak, guek,
                "{what}: {device:?} {client:?} has an AK and a GUEK of different generations"
            );
            generations.push(ak);
        }
        // The MK is rotated with the first client's keys.
        let expected_mk = if mk_rotation { generations[0] } else { 0 };
        assert_eq!(
            mk, expected_mk,
            "{what}: {device:?}: the MK's generation against its first client's {generations:?}"
        );
    }
    for (key, value) in &case.drawn {
        let ceiling = store.counter_ceiling(key).unwrap();
        assert!(
            ceiling.is_some_and(|c| c > *value),
            "{what}: counter {key:?} at {ceiling:?}, {value} handed out"
        );
    }
    if let Err(b) = verify_audit(&store, &keks.audit_key()) {
        panic!("{what}: {b}");
    }
}

/// The case's meters, reached directly.
struct Meters<'a>(&'a mut [Meter<Volatile>]);

impl MeterLink for Meters<'_> {
    fn exchange(
        &mut self,
        device: SystemTitle,
        client: Client,
        request: &mut [u8],
        response: &mut [u8],
    ) -> dlms_sec::Result<usize> {
        let meter = self
            .0
            .iter_mut()
            .find(|m| m.title() == device)
            .ok_or(Error::Misuse("no such meter"))?;
        Ok(meter.handle(client, request, response)?.0)
    }
}

/// A fresh node over the same store finishes the campaign; then every
/// meter answers under the keys the store holds active.
fn finish(case: &mut Case, keks: &Keks) {
    let what = case.what();
    let store = Store::open(&case.url()).unwrap();
    let dco = keks.dco();
    let mut s1sp = S1sp::with_registry(&store, keks.s1sp_provider(), &store, "node-b");
    let mut counters = PerKeyCounters::new(&store, RESERVE_AHEAD);
    let mut sink = DatabaseAuditSink::open(&store, &keks.audit_key(), &mut SysRng).unwrap();
    let mut link = Meters(&mut case.meters);
    let mut cx = RotationContext {
        dco: &dco,
        link: &mut link,
        counters: &mut counters,
        audit: Recorder::new(&mut sink, T_TAKEOVER),
        rng: &mut SysRng,
    };
    let report = s1sp.campaign(&mut cx, CAMPAIGN, Scope::All).unwrap();
    assert!(
        report.failed.is_empty() && report.pending == 0,
        "{what}: the campaign finished by another node: {report:?}"
    );
    for (device, _) in DEVICES {
        for s in device_slots(device) {
            assert_eq!(
                store.pending(&s).unwrap(),
                None,
                "{what}: {s:?} still pending"
            );
        }
        for client in Client::KEYED {
            let mut answer = [0u8; 64];
            if let Err(e) = s1sp.command(&mut cx, device, client, &GET, &mut answer) {
                panic!(
                    "{what}: {device:?} {client:?} does not answer under the active keys: {e:?}"
                );
            }
        }
    }
    if let Err(b) = verify_audit(&store, &keks.audit_key()) {
        panic!("{what}: after the takeover: {b}");
    }
}

/// One case: commissioned, the child run and stopped, the store checked,
/// the campaign finished by another node.
fn crash_case(keks: &Keks, backend: &Backend, name: &str, stop: Stop) -> Ended {
    let mut case = commission(keks, backend, name);
    let ended = run(&mut case, keks, stop);
    check_store(&case, keks);
    finish(&mut case, keks);
    case.store.remove();
    ended
}

/// A small xorshift generator for the random kill times.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The uninterrupted campaign: how many steps it has, and how long the
/// child takes.
fn whole(keks: &Keks, backend: &Backend) -> (u32, Duration) {
    let Ended::Completed(steps, took) = crash_case(keks, backend, "whole", Stop::Never) else {
        panic!("the uninterrupted run was killed");
    };
    // Per rotation: a lease, two counter records, three pending records,
    // audit records, two exchanges, an activation.
    assert!(
        steps > 20 * 8,
        "a campaign over two devices has {steps} steps"
    );
    eprintln!(
        "{}: the uninterrupted child: {steps} steps in {took:?}",
        backend.name()
    );
    (steps, took)
}

/// The child killed at each of its steps in turn, and once let run to the
/// end past its last one; as many cases at a time as the host has
/// threads. A case spends much of its time waiting (on its child, and on
/// PostgreSQL on a round trip to the server for each statement), so cases
/// side by side fill the cores that one leaves idle.
fn killed_at_every_step(backend: &Backend) {
    let keks = Keks::generate();
    let (steps, _) = whole(&keks, backend);
    let next = AtomicU32::new(0);
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| {
        let workers = std::thread::available_parallelism().map_or(2, NonZeroUsize::get);
        for _ in 0..workers {
            s.spawn(|| {
                // A failed case stops the other workers at their next case.
                let _stop = StopOnPanic(&failed);
                while !failed.load(Ordering::Relaxed) {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k > steps {
                        break;
                    }
                    let ended = crash_case(&keks, backend, &format!("step-{k}"), Stop::AtStep(k));
                    if k < steps {
                        assert_eq!(ended, Ended::Killed, "stopped at step {k} of {steps}");
                    } else {
                        assert!(
                            matches!(ended, Ended::Completed(n, _) if n == steps),
                            "a run past its last step: {ended:?}"
                        );
                    }
                }
            });
        }
    });
}

/// Raises its flag when the thread that holds it panics.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// The child killed at [`RANDOM_KILLS`] random moments of its run.
fn killed_at_random_moments(backend: &Backend) {
    let keks = Keks::generate();
    let (_, took) = whole(&keks, backend);
    let seed = std::env::var(SEED_ENV).map_or_else(
        |_| {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            u64::from(nanos) | 1
        },
        |s| s.parse().unwrap(),
    );
    eprintln!(
        "{}: random kill times from {SEED_ENV}={seed}",
        backend.name()
    );
    let mut state = seed;
    let took_ms = u64::try_from(took.as_millis()).unwrap().max(1);
    for i in 0..RANDOM_KILLS {
        let millis = xorshift(&mut state) % took_ms;
        crash_case(
            &keks,
            backend,
            &format!("random-{i} ({millis} ms, {SEED_ENV}={seed})"),
            Stop::After(Duration::from_millis(millis)),
        );
    }
}

#[test]
fn a_campaign_killed_at_any_step_leaves_a_store_another_node_can_finish() {
    killed_at_every_step(&Backend::Sqlite);
}

#[test]
fn a_campaign_killed_at_random_moments_leaves_a_store_another_node_can_finish() {
    killed_at_random_moments(&Backend::Sqlite);
}

#[test]
fn on_postgres_a_campaign_killed_at_any_step_leaves_a_store_another_node_can_finish() {
    if let Some(backend) = Backend::postgres("killed at any step on PostgreSQL") {
        killed_at_every_step(&backend);
    }
}

#[test]
fn on_postgres_a_campaign_killed_at_random_moments_leaves_a_store_another_node_can_finish() {
    if let Some(backend) = Backend::postgres("killed at random moments on PostgreSQL") {
        killed_at_random_moments(&backend);
    }
}
