//! The DCO and S1SP over a database store (SQLite here; the store's own
//! suite runs both backends): several nodes share the registry, the meters'
//! receive floors, the rotation leases and campaign progress, and a restart
//! loses none of it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    missing_docs,
    reason = "test code"
)]

mod support;

use std::cell::RefCell;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::rc::Rc;

use dlms_sec::audit::{MemoryAuditLog, Recorder, Timestamp};
use dlms_sec::counter::{CounterKey, SendCounter, Volatile};
use dlms_sec::error::{CounterError, KeyError};
use dlms_sec::key::package::{PackagedRecord, RecordId};
use dlms_sec::key::{
    AuthenticationKey, DcoKey, GlobalUnicastEncryptionKey, KeyRole, MasterKey, SharedKey,
};
use dlms_sec::meter::DeviceCapabilities;
use dlms_sec::meter::key_transfer::SecuritySetupKeys;
use dlms_sec::provider::{CryptoProvider, SoftwareDco, SoftwareS1sp};
use dlms_sec::types::Client;
use dlms_sec::wire::KeyKind;
use dlms_sec::{Error, InvocationCounter, SecurityPolicy, SystemTitle};
use dlms_sec_meter_sim::Meter;
use dlms_sec_services::counters::PerKeyCounters;
use dlms_sec_services::dco::Dco;
use dlms_sec_services::registry::Registry;
use dlms_sec_services::s1sp::{MeterLink, RotationContext, RotationOutcome, S1sp, Scope};
use dlms_sec_store::Store;

const T0: Timestamp = Timestamp(1_795_000_000);
const DCO_TITLE: SystemTitle = SystemTitle::new(*b"DCO\x00\x00\x00\x00\x01");
const M1: SystemTitle = SystemTitle::new(*b"GBM\x00\x00\x00\x00\x01");
const M2: SystemTitle = SystemTitle::new(*b"GBM\x00\x00\x00\x00\x02");
const GET: [u8; 13] = [
    0xC0, 0x01, 0xC1, 0x00, 0x01, 0x00, 0x00, 0x2A, 0x00, 0x00, 0xFF, 0x02, 0x00,
];

fn kek() -> (DcoKey, SharedKey) {
    (
        DcoKey::from_bytes([0xD0; 16]),
        SharedKey::from_bytes([0x5E; 16]),
    )
}

/// A fresh SQLite file for this test.
fn fresh(name: &str) -> (Store, PathBuf) {
    let path = std::env::temp_dir().join(format!(
        "dlms-sec-services-{}-{name}.sqlite",
        std::process::id()
    ));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = Store::open(&format!("sqlite://{}", path.display())).unwrap();
    (store, path)
}

/// The meters, shared by every node's link (one radio network).
type Meters = Rc<RefCell<Vec<Meter<Volatile>>>>;

/// A link to the meters; it can play back the last answer it delivered
/// in place of the next one (a replay by a man in the middle).
struct Link {
    meters: Meters,
    last_answer: Rc<RefCell<Vec<u8>>>,
    replay_next: bool,
}

impl MeterLink for Link {
    fn exchange(
        &mut self,
        device: SystemTitle,
        client: Client,
        request: &mut [u8],
        response: &mut [u8],
    ) -> dlms_sec::Result<usize> {
        let mut meters = self.meters.borrow_mut();
        let meter = meters
            .iter_mut()
            .find(|m| m.title() == device)
            .ok_or(Error::Misuse("no such meter"))?;
        let (n, _) = meter.handle(client, request, response)?;
        if core::mem::take(&mut self.replay_next) {
            let old = self.last_answer.borrow();
            response[..old.len()].copy_from_slice(&old);
            return Ok(old.len());
        }
        *self.last_answer.borrow_mut() = response[..n].to_vec();
        Ok(n)
    }
}

/// One node: a DCO and an S1SP over the shared store.
struct Node<'s> {
    dco: Dco<SoftwareDco>,
    s1sp: S1sp<&'s Store, SoftwareS1sp, &'s Store>,
    counters: PerKeyCounters<&'s Store>,
    link: Link,
    audit: support::EventLog,
    rng: getrandom::SysRng,
}

impl<'s> Node<'s> {
    fn new(store: &'s Store, name: &str, meters: &Meters) -> Self {
        let (dco_key, shared) = kek();
        Self {
            dco: Dco::new(SoftwareDco::new(&dco_key, &shared), DCO_TITLE),
            s1sp: S1sp::with_registry(store, SoftwareS1sp::new(&shared), store, name),
            counters: PerKeyCounters::new(store, NonZeroU32::new(8).unwrap()),
            link: Link {
                meters: meters.clone(),
                last_answer: Rc::default(),
                replay_next: false,
            },
            audit: support::EventLog::new(),
            rng: getrandom::SysRng,
        }
    }

    fn get(&mut self, device: SystemTitle, now: Timestamp) -> dlms_sec::Result<usize> {
        let mut cx = RotationContext {
            dco: &self.dco,
            link: &mut self.link,
            counters: &mut self.counters,
            audit: Recorder::new(&mut self.audit, now),
            rng: &mut self.rng,
        };
        let mut answer = [0u8; 64];
        self.s1sp
            .command(&mut cx, device, Client::Management, &GET, &mut answer)
    }

    fn rotate(&mut self, device: SystemTitle, now: Timestamp) -> dlms_sec::Result<RotationOutcome> {
        let mut cx = RotationContext {
            dco: &self.dco,
            link: &mut self.link,
            counters: &mut self.counters,
            audit: Recorder::new(&mut self.audit, now),
            rng: &mut self.rng,
        };
        self.s1sp.rotate(&mut cx, device, Client::Management)
    }
}

/// Commissions `devices` through `node` (records, registry, the DCO's
/// counters) and makes their meters.
fn commission(node: &mut Node<'_>, devices: &[SystemTitle]) -> Meters {
    let (dco_key, shared) = kek();
    let factory = SoftwareDco::new(&dco_key, &shared);
    let mut meters = Vec::new();
    for &device in devices {
        let id = |client, role| RecordId {
            device,
            client,
            role,
            generation: 0,
        };
        let (mk, ak, guek) = ([0x4D; 16], [device.as_bytes()[7]; 16], [0x60; 16]);
        let mut records: Vec<PackagedRecord> = vec![
            *factory
                .package(&MasterKey::from_bytes(mk), id(None, KeyRole::Master))
                .unwrap()
                .record(),
        ];
        let mut meter = Meter::new(
            device,
            DCO_TITLE,
            MasterKey::from_bytes(mk),
            SendCounter::volatile(InvocationCounter::new(1)),
            DeviceCapabilities::default(),
        );
        for client in Client::KEYED {
            records.push(
                *factory
                    .package(
                        &AuthenticationKey::from_bytes(ak),
                        id(Some(client), KeyRole::Authentication),
                    )
                    .unwrap()
                    .record(),
            );
            let g = factory
                .package(
                    &GlobalUnicastEncryptionKey::from_bytes(guek),
                    id(Some(client), KeyRole::GlobalUnicastEncryption),
                )
                .unwrap();
            records.push(*g.record());
            node.dco.introduce(&mut node.counters, &g).unwrap();
            meter
                .provision(
                    client,
                    SecuritySetupKeys::new(
                        GlobalUnicastEncryptionKey::from_bytes(guek),
                        AuthenticationKey::from_bytes(ak),
                    ),
                    SecurityPolicy::AuthenticatedEncrypted,
                )
                .unwrap();
        }
        node.s1sp
            .commission(device, meter.capabilities(), &records, T0)
            .unwrap();
        meters.push(meter);
    }
    Rc::new(RefCell::new(meters))
}

#[test]
fn an_answer_one_node_accepted_is_refused_by_every_other() {
    let (store, path) = fresh("floors");
    let meters = {
        let mut a = Node::new(&store, "node-a", &Rc::default());
        commission(&mut a, &[M1])
    };
    let mut a = Node::new(&store, "node-a", &meters);
    let mut b = Node::new(&store, "node-b", &meters);
    a.get(M1, T0).unwrap();
    // Node B's request reaches the meter; in place of its answer comes the
    // one node A accepted: it verifies, and the shared floor refuses it.
    b.link.last_answer = a.link.last_answer.clone();
    b.link.replay_next = true;
    assert_eq!(b.get(M1, T0), Err(Error::Counter(CounterError::Replay)));
    // Node B's own answers go through, and node A then refuses B's.
    b.get(M1, T0).unwrap();
    a.link.last_answer = b.link.last_answer.clone();
    a.link.replay_next = true;
    assert_eq!(a.get(M1, T0), Err(Error::Counter(CounterError::Replay)));
    drop(a);
    drop(b);
    drop(store);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn one_node_at_a_time_rotates_a_device() {
    let (store, path) = fresh("leases");
    let meters = {
        let mut a = Node::new(&store, "node-a", &Rc::default());
        commission(&mut a, &[M1])
    };
    let mut b = Node::new(&store, "node-b", &meters);
    // Node A is part way through a rotation of M1 (it holds the lease).
    assert!(!Registry::take_lease(&mut &store, &M1, "node-a", T0, 600).unwrap());
    assert_eq!(
        b.rotate(M1, Timestamp(T0.0 + 599)),
        Err(Error::Key(KeyError::Conflict))
    );
    assert_eq!(meters.borrow()[0].installs(), 0, "nothing was sent");
    // Node A stopped; its lease runs out and node B takes over.
    assert_eq!(
        b.rotate(M1, Timestamp(T0.0 + 600)),
        Ok(RotationOutcome::Activated)
    );
    // B gave the lease back: A may take it at once.
    assert!(!Registry::take_lease(&mut &store, &M1, "node-a", Timestamp(T0.0 + 601), 600).unwrap());
    drop(b);
    drop(store);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_restart_loses_no_record_counter_floor_or_registration() {
    let (store, path) = fresh("restart");
    let url = format!("sqlite://{}", path.display());
    let meters = {
        let mut a = Node::new(&store, "node-a", &Rc::default());
        commission(&mut a, &[M1, M2])
    };
    let counter = |store: &Store, generation| {
        store
            .counter_ceiling(&CounterKey::new(
                DCO_TITLE,
                M1,
                Client::Management,
                KeyKind::GlobalUnicast,
                generation,
            ))
            .unwrap()
    };
    {
        let mut a = Node::new(&store, "node-a", &meters);
        a.get(M1, T0).unwrap();
        assert_eq!(a.rotate(M1, T0), Ok(RotationOutcome::Activated));
        a.get(M1, T0).unwrap();
    }
    let claimed = counter(&store, 1).unwrap();
    let floor_before = store
        .floor(&CounterKey::own(
            M1,
            Client::Management,
            KeyKind::GlobalUnicast,
            1,
        ))
        .unwrap()
        .unwrap();
    drop(store);

    let store = Store::open(&url).unwrap();
    let mut b = Node::new(&store, "node-b", &meters);
    let record = b.s1sp.device(M1).unwrap().unwrap();
    assert_eq!(record.commissioned_at, T0);
    assert!(record.rotated[2], "management was rotated");
    assert_eq!(b.s1sp.device_titles().unwrap(), [M1, M2]);
    let progress = Registry::progress(&&store, &M1, Client::Management)
        .unwrap()
        .unwrap();
    assert_eq!(
        (progress.state, progress.generation),
        (dlms_sec_services::registry::ProgressState::Probed, 1)
    );
    assert_eq!(
        Registry::progress(&&store, &M2, Client::Management).unwrap(),
        None
    );
    assert_eq!(
        b.s1sp
            .active_records(M1, Client::Management)
            .unwrap()
            .0
            .id()
            .generation,
        1
    );
    // The DCO's counter goes on above every value the last process could
    // have used; the meter takes it.
    b.get(M1, T0).unwrap();
    assert!(counter(&store, 1).unwrap() > claimed);
    let floor_after = store
        .floor(&CounterKey::own(
            M1,
            Client::Management,
            KeyKind::GlobalUnicast,
            1,
        ))
        .unwrap()
        .unwrap();
    assert!(floor_after > floor_before);
    drop(b);
    drop(store);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_campaign_stopped_part_way_goes_on_from_where_it_stopped() {
    let (store, path) = fresh("campaign");
    let meters = {
        let mut a = Node::new(&store, "node-a", &Rc::default());
        commission(&mut a, &[M1, M2])
    };
    // Node A stops after its first device: its audit log fills up.
    {
        let mut a = Node::new(&store, "node-a", &meters);
        let mut small = MemoryAuditLog::<40>::new();
        let mut cx = RotationContext {
            dco: &a.dco,
            link: &mut a.link,
            counters: &mut a.counters,
            audit: Recorder::new(&mut small, T0),
            rng: &mut a.rng,
        };
        assert_eq!(
            a.s1sp.campaign(&mut cx, "compromise-1", Scope::All),
            Err(Error::Audit)
        );
    }
    let done_by_a: u32 = meters.borrow().iter().map(Meter::installs).sum();
    assert!(done_by_a > 0 && done_by_a < 8, "{done_by_a}");
    // Node B goes on with the same campaign: it knows its device list
    // and what is done.
    let mut b = Node::new(&store, "node-b", &meters);
    let mut cx = RotationContext {
        dco: &b.dco,
        link: &mut b.link,
        counters: &mut b.counters,
        audit: Recorder::new(&mut b.audit, T0),
        rng: &mut b.rng,
    };
    let report = b
        .s1sp
        .campaign(&mut cx, "compromise-1", Scope::Devices(&[]))
        .unwrap();
    assert!(report.resumed);
    assert!(report.failed.is_empty(), "{report:?}");
    for d in [M1, M2] {
        let record = b.s1sp.device(d).unwrap().unwrap();
        assert!(record.fully_rotated(), "{d:?}: {record:?}");
    }
    // Done: running it again does nothing.
    let mut cx = RotationContext {
        dco: &b.dco,
        link: &mut b.link,
        counters: &mut b.counters,
        audit: Recorder::new(&mut b.audit, T0),
        rng: &mut b.rng,
    };
    let again = b
        .s1sp
        .campaign(&mut cx, "compromise-1", Scope::All)
        .unwrap();
    assert_eq!((again.resumed, again.attempted), (true, 0));
    drop(b);
    drop(store);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_damaged_row_is_a_typed_error_and_the_sweep_reports_its_slot() {
    let (store, path) = fresh("sweep");
    let meters = {
        let mut a = Node::new(&store, "node-a", &Rc::default());
        commission(&mut a, &[M1, M2])
    };
    // An octet of M2's firmware AK record (its device title) changes on
    // disk, and M1's management GUEK row is moved to another generation.
    let raw = rusqlite::Connection::open(&path).unwrap();
    let changed = raw
        .execute(
            "UPDATE key_records SET record = substr(record, 1, 10) || x'EE' || substr(record, 12)
             WHERE device = ?1 AND client = ?2 AND role = ?3",
            rusqlite::params![M2.as_bytes(), 4, KeyRole::Authentication.code()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let changed = raw
        .execute(
            "UPDATE key_records SET generation = 3 WHERE device = ?1 AND client = ?2 AND role = ?3",
            rusqlite::params![M1.as_bytes(), 3, KeyRole::GlobalUnicastEncryption.code()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(raw);
    let mut a = Node::new(&store, "node-a", &meters);
    assert_eq!(
        a.s1sp.active_records(M1, Client::Management).map(|_| ()),
        Err(Error::Key(KeyError::Corrupted))
    );
    assert_eq!(a.get(M1, T0), Err(Error::Key(KeyError::Corrupted)));
    let corrupt = a.s1sp.sweep(&mut Recorder::new(&mut a.audit, T0)).unwrap();
    let slot = |device, client, role| dlms_sec::keystore::KeySlot {
        device,
        client: Some(client),
        role,
    };
    assert_eq!(
        corrupt,
        [
            slot(M1, Client::Management, KeyRole::GlobalUnicastEncryption),
            slot(M2, Client::Firmware, KeyRole::Authentication),
        ]
    );
    let audited = a
        .audit
        .events()
        .iter()
        .filter(|e| e.action == dlms_sec::audit::AuditAction::CorruptionDetected)
        .count();
    assert_eq!(audited, 2);
    // The other clients are untouched.
    a.get(M2, T0).unwrap();
    drop(a);
    drop(store);
    std::fs::remove_file(path).unwrap();
}
