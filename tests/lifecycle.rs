//! The SMETS1 lifecycle: commissioning rotation and its deadline,
//! re-key campaigns, pending → active, role separation
//! audit, and fault injection at every step of a rotation.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "test code: a panic is a failed test"
)]

mod common;

use core::num::NonZeroU32;

use common::TestRng;
use dlms_sec::audit::{AuditAction, MemoryAuditLog, Outcome, Timestamp};
use dlms_sec::client::Client;
use dlms_sec::counter::{SendCounter, Volatile};
use dlms_sec::dco::Dco;
use dlms_sec::error::KeyError;
use dlms_sec::key::{
    AuthenticationKey, DcoKey, GlobalUnicastEncryptionKey, KeyRole, MasterKey, SharedKey,
};
use dlms_sec::key_transfer::SecuritySetupKeys;
use dlms_sec::keystore::{KeySlot, KeyStore, MemoryKeyStore};
use dlms_sec::meter::{Capabilities, Meter};
use dlms_sec::package::{PackagedRecord, RecordId};
use dlms_sec::provider::{CryptoProvider, SoftwareDco, SoftwareS1sp};
use dlms_sec::s1sp::{MeterLink, RotationContext, RotationOutcome, S1sp, Scope};
use dlms_sec::{Error, InvocationCounter, SecurityPolicy, SystemTitle};

const DAY: u64 = 24 * 3600;
const T0: Timestamp = Timestamp(1_795_000_000);
const DCO_TITLE: SystemTitle = SystemTitle::new(*b"DCO\x00\x00\x00\x00\x01");
const GET: [u8; 13] = [
    0xC0, 0x01, 0xC1, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0xFF, 0x02, 0x00,
];

/// Where the link fails, for fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// The request never reaches the meter.
    LoseRequest,
    /// The meter acts, its answer is lost.
    LoseAnswer,
}

struct Link {
    meters: Vec<Meter<Volatile>>,
    fault: Fault,
}

impl MeterLink for Link {
    fn exchange(
        &mut self,
        device: SystemTitle,
        client: Client,
        request: &mut [u8],
        response: &mut [u8],
    ) -> dlms_sec::Result<usize> {
        let fault = core::mem::replace(&mut self.fault, Fault::None);
        if fault == Fault::LoseRequest {
            return Err(Error::Misuse("request lost"));
        }
        let meter = self
            .meters
            .iter_mut()
            .find(|m| m.title() == device)
            .ok_or(Error::Misuse("no such meter"))?;
        let (n, _) = meter.handle(client, request, response)?;
        if fault == Fault::LoseAnswer {
            return Err(Error::Misuse("answer lost"));
        }
        Ok(n)
    }
}

/// A key store that can be told to fail an operation (fault injection).
#[derive(Default)]
struct FlakyStore {
    inner: MemoryKeyStore,
    fail_put_pending: bool,
    fail_activate: bool,
}

impl KeyStore for FlakyStore {
    fn put_pending(&mut self, r: &PackagedRecord) -> dlms_sec::Result<()> {
        if self.fail_put_pending {
            return Err(Error::Key(KeyError::StoreFull));
        }
        self.inner.put_pending(r)
    }
    fn put_initial(&mut self, r: &PackagedRecord) -> dlms_sec::Result<()> {
        self.inner.put_initial(r)
    }
    fn activate(&mut self, s: &KeySlot, g: u32) -> dlms_sec::Result<()> {
        if self.fail_activate {
            return Err(Error::Key(KeyError::StoreFull));
        }
        self.inner.activate(s, g)
    }
    fn active(&self, s: &KeySlot) -> dlms_sec::Result<PackagedRecord> {
        self.inner.active(s)
    }
    fn pending(&self, s: &KeySlot) -> dlms_sec::Result<Option<PackagedRecord>> {
        self.inner.pending(s)
    }
    fn previous(&self, s: &KeySlot) -> dlms_sec::Result<Option<PackagedRecord>> {
        self.inner.previous(s)
    }
    fn discard_pending(&mut self, s: &KeySlot) -> dlms_sec::Result<()> {
        self.inner.discard_pending(s)
    }
    fn retire_previous(&mut self, s: &KeySlot) -> dlms_sec::Result<()> {
        self.inner.retire_previous(s)
    }
    fn for_each_device(&self, f: &mut dyn FnMut(SystemTitle)) -> dlms_sec::Result<()> {
        self.inner.for_each_device(f)
    }
    fn for_each_slot(&self, d: &SystemTitle, f: &mut dyn FnMut(KeySlot)) -> dlms_sec::Result<()> {
        self.inner.for_each_slot(d, f)
    }
}

struct World {
    dco: Dco<SoftwareDco>,
    s1sp: S1sp<FlakyStore, SoftwareS1sp>,
    link: Link,
    counter: SendCounter<Volatile>,
    audit: MemoryAuditLog<4096>,
    rng: TestRng,
}

fn world(devices: &[(SystemTitle, bool)]) -> World {
    let mut rng = TestRng::new(3);
    let dco_key = DcoKey::generate(&mut rng).unwrap();
    let shared = SharedKey::generate(&mut rng).unwrap();
    let dco = Dco::new(SoftwareDco::new(&dco_key, &shared), DCO_TITLE);
    let mut s1sp = S1sp::new(FlakyStore::default(), SoftwareS1sp::new(&shared));
    let mut meters = Vec::new();
    for &(device, mk_rotation) in devices {
        let mut b = [0u8; 16];
        rand_core::TryRng::try_fill_bytes(&mut rng, &mut b).unwrap();
        let id = |client, role| RecordId {
            device,
            client,
            role,
            generation: 0,
        };
        let mut records = vec![
            *CryptoProvider::<DcoKey>::package(
                dco.provider(),
                &MasterKey::from_bytes(b),
                id(None, KeyRole::Master),
            )
            .unwrap()
            .record(),
        ];
        let counter =
            SendCounter::new(InvocationCounter::new(1), NonZeroU32::MIN, Volatile).unwrap();
        let mut meter = Meter::new(
            device,
            DCO_TITLE,
            MasterKey::from_bytes(b),
            counter,
            Capabilities {
                master_key_rotation: mk_rotation,
            },
        );
        for client in Client::KEYED {
            let mut a = [0u8; 16];
            let mut g = [0u8; 16];
            rand_core::TryRng::try_fill_bytes(&mut rng, &mut a).unwrap();
            rand_core::TryRng::try_fill_bytes(&mut rng, &mut g).unwrap();
            records.push(
                *CryptoProvider::<DcoKey>::package(
                    dco.provider(),
                    &AuthenticationKey::from_bytes(a),
                    id(Some(client), KeyRole::Authentication),
                )
                .unwrap()
                .record(),
            );
            records.push(
                *CryptoProvider::<SharedKey>::package(
                    dco.provider(),
                    &GlobalUnicastEncryptionKey::from_bytes(g),
                    id(Some(client), KeyRole::GlobalUnicastEncryption),
                )
                .unwrap()
                .record(),
            );
            meter
                .provision(
                    client,
                    SecuritySetupKeys::new(
                        GlobalUnicastEncryptionKey::from_bytes(g),
                        AuthenticationKey::from_bytes(a),
                    ),
                    SecurityPolicy::AuthenticatedEncrypted,
                )
                .unwrap();
        }
        s1sp.commission(device, meter.capabilities(), &records, T0)
            .unwrap();
        meters.push(meter);
    }
    World {
        dco,
        s1sp,
        link: Link {
            meters,
            fault: Fault::None,
        },
        counter: SendCounter::new(InvocationCounter::new(1), NonZeroU32::MIN, Volatile).unwrap(),
        audit: MemoryAuditLog::new(),
        rng,
    }
}

macro_rules! cx {
    ($w:expr, $now:expr) => {
        RotationContext {
            dco: &$w.dco,
            link: &mut $w.link,
            counter: &mut $w.counter,
            audit: &mut $w.audit,
            rng: &mut $w.rng,
            now: $now,
        }
    };
}

fn reachable(w: &mut World, device: SystemTitle, client: Client) -> bool {
    let mut answer = [0u8; 64];
    let mut cx = cx!(w, T0);
    w.s1sp
        .command(&mut cx, device, client, &GET, &mut answer)
        .is_ok()
}

fn slots_hold_records(w: &World, device: SystemTitle) -> bool {
    Client::KEYED.iter().all(|&c| {
        [KeyRole::Authentication, KeyRole::GlobalUnicastEncryption]
            .iter()
            .all(|&role| {
                w.s1sp
                    .store()
                    .active(&KeySlot {
                        device,
                        client: Some(c),
                        role,
                    })
                    .is_ok()
            })
    }) && w
        .s1sp
        .store()
        .active(&KeySlot {
            device,
            client: None,
            role: KeyRole::Master,
        })
        .is_ok()
}

const M1: SystemTitle = SystemTitle::new(*b"GBM\x00\x00\x00\x00\x01");
const M2: SystemTitle = SystemTitle::new(*b"GBM\x00\x00\x00\x00\x02");

#[test]
fn r09_commissioning_rotation_meets_the_deadline() {
    let mut w = world(&[(M1, true), (M2, false)]);
    assert!(
        w.s1sp.due(T0, DAY).is_empty(),
        "not due on day 0 with a 1-day horizon"
    );
    let due = w.s1sp.due(Timestamp(T0.0 + 6 * DAY), DAY);
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].1, Timestamp(T0.0 + 7 * DAY));
    assert_eq!(
        w.s1sp.due(Timestamp(T0.0 + 8 * DAY), 0).len(),
        2,
        "overdue devices are listed"
    );
    for client in Client::KEYED {
        let mut cx = cx!(w, Timestamp(T0.0 + DAY));
        assert_eq!(
            w.s1sp.rotate(&mut cx, M1, client).unwrap(),
            RotationOutcome::Activated
        );
    }
    let due = w.s1sp.due(Timestamp(T0.0 + 6 * DAY), DAY);
    assert_eq!(due, vec![(M2, Timestamp(T0.0 + 7 * DAY))]);
    // the MK is rotated where the device supports it, not elsewhere.
    assert!(w.s1sp.devices()[&M1].master_key_rotated);
    let mk = |w: &World, d| {
        w.s1sp
            .store()
            .active(&KeySlot {
                device: d,
                client: None,
                role: KeyRole::Master,
            })
            .unwrap()
            .generation()
    };
    assert_eq!(mk(&w, M1), 1);
    for client in Client::KEYED {
        let mut cx = cx!(w, Timestamp(T0.0 + DAY));
        assert_eq!(
            w.s1sp.rotate(&mut cx, M2, client).unwrap(),
            RotationOutcome::Activated
        );
    }
    assert_eq!(mk(&w, M2), 0);
    assert!(w.s1sp.due(Timestamp(T0.0 + 6 * DAY), 365 * DAY).is_empty());
    for client in Client::KEYED {
        assert!(reachable(&mut w, M1, client));
        assert!(reachable(&mut w, M2, client));
    }
}

#[test]
fn r14_new_keys_are_active_only_after_the_meter_accepts() {
    let mut w = world(&[(M1, false)]);
    let slot = KeySlot {
        device: M1,
        client: Some(Client::Management),
        role: KeyRole::Authentication,
    };
    let before = w.s1sp.store().active(&slot).unwrap();
    let mut cx = cx!(w, T0);
    assert_eq!(
        w.s1sp.rotate(&mut cx, M1, Client::Management).unwrap(),
        RotationOutcome::Activated
    );
    let after = w.s1sp.store().active(&slot).unwrap();
    assert_eq!(after.generation(), before.generation() + 1);
    assert!(w.s1sp.store().pending(&slot).unwrap().is_none());
    assert!(reachable(&mut w, M1, Client::Management));
    // Other clients keep their keys.
    assert_eq!(
        w.s1sp
            .store()
            .active(&KeySlot {
                client: Some(Client::Firmware),
                ..slot
            })
            .unwrap()
            .generation(),
        0
    );
}

#[test]
fn fault_lost_answer_then_resume_activates() {
    let mut w = world(&[(M1, false)]);
    w.link.fault = Fault::LoseAnswer;
    let mut cx = cx!(w, T0);
    assert_eq!(
        w.s1sp.rotate(&mut cx, M1, Client::DataCollection).unwrap(),
        RotationOutcome::Pending
    );
    let slot = KeySlot {
        device: M1,
        client: Some(Client::DataCollection),
        role: KeyRole::GlobalUnicastEncryption,
    };
    assert!(
        w.s1sp.store().pending(&slot).unwrap().is_some(),
        "new keys kept pending"
    );
    assert!(slots_hold_records(&w, M1), "no packaged key lost");
    let mut cx = cx!(w, T0);
    assert_eq!(
        w.s1sp.resume(&mut cx, M1, Client::DataCollection).unwrap(),
        RotationOutcome::Activated
    );
    assert_eq!(w.s1sp.store().active(&slot).unwrap().generation(), 1);
    assert!(reachable(&mut w, M1, Client::DataCollection));
}

#[test]
fn fault_lost_request_then_resume_abandons_and_a_retry_succeeds() {
    let mut w = world(&[(M1, false)]);
    w.link.fault = Fault::LoseRequest;
    let mut cx = cx!(w, T0);
    assert_eq!(
        w.s1sp.rotate(&mut cx, M1, Client::Firmware).unwrap(),
        RotationOutcome::Pending
    );
    assert!(
        reachable(&mut w, M1, Client::Firmware),
        "still reachable under the old keys"
    );
    let mut cx = cx!(w, T0);
    assert_eq!(
        w.s1sp.resume(&mut cx, M1, Client::Firmware).unwrap(),
        RotationOutcome::Refused
    );
    let slot = KeySlot {
        device: M1,
        client: Some(Client::Firmware),
        role: KeyRole::Authentication,
    };
    assert!(w.s1sp.store().pending(&slot).unwrap().is_none());
    assert_eq!(w.s1sp.store().active(&slot).unwrap().generation(), 0);
    let mut cx = cx!(w, T0);
    assert_eq!(
        w.s1sp.rotate(&mut cx, M1, Client::Firmware).unwrap(),
        RotationOutcome::Activated
    );
    assert!(reachable(&mut w, M1, Client::Firmware));
}

#[test]
fn fault_store_refuses_pending_before_anything_is_sent() {
    let mut w = world(&[(M1, false)]);
    w.s1sp_store_fail_put_pending(true);
    let mut cx = cx!(w, T0);
    assert!(w.s1sp.rotate(&mut cx, M1, Client::Management).is_err());
    w.s1sp_store_fail_put_pending(false);
    assert_eq!(w.link.meters[0].installs(), 0, "nothing reached the meter");
    assert!(slots_hold_records(&w, M1));
    assert!(reachable(&mut w, M1, Client::Management));
}

#[test]
fn fault_activation_fails_after_the_meter_accepted_then_resume_recovers() {
    let mut w = world(&[(M1, false)]);
    w.s1sp_store_fail_activate(true);
    let mut cx = cx!(w, T0);
    assert!(w.s1sp.rotate(&mut cx, M1, Client::Management).is_err());
    w.s1sp_store_fail_activate(false);
    assert_eq!(
        w.link.meters[0].installs(),
        1,
        "the meter installed the new keys"
    );
    assert!(slots_hold_records(&w, M1), "old records still there");
    let mut cx = cx!(w, T0);
    assert_eq!(
        w.s1sp.resume(&mut cx, M1, Client::Management).unwrap(),
        RotationOutcome::Activated
    );
    assert!(reachable(&mut w, M1, Client::Management));
}

#[test]
fn fault_before_wrap_a_corrupt_mk_record_stops_the_rotation() {
    let mut w = world(&[(M1, false)]);
    let slot = KeySlot {
        device: M1,
        client: None,
        role: KeyRole::Master,
    };
    let good = w.s1sp.store().active(&slot).unwrap();
    // Replace the MK record with a corrupted copy (a storage fault).
    let mut bad = *good.as_bytes();
    bad[20] ^= 1;
    let bad = PackagedRecord::parse(&bad).unwrap();
    w.s1sp_replace_active(&bad);
    let mut cx = cx!(w, T0);
    assert_eq!(
        w.s1sp.rotate(&mut cx, M1, Client::Management).unwrap_err(),
        Error::Key(KeyError::Corrupted)
    );
    assert!(
        w.audit
            .events()
            .iter()
            .any(|e| e.action == AuditAction::CorruptionDetected)
    );
    assert_eq!(w.link.meters[0].installs(), 0);
    assert!(
        reachable(&mut w, M1, Client::Management),
        "still reachable with the old keys"
    );
}

#[test]
fn r10_campaign_over_scopes() {
    let mut w = world(&[(M1, false), (M2, false)]);
    let mut cx = cx!(w, T0);
    let r = w.s1sp.campaign(&mut cx, Scope::Device(M2)).unwrap();
    assert_eq!((r.attempted, r.activated), (4, 4));
    let mut cx = cx!(w, T0);
    let r = w.s1sp.campaign(&mut cx, Scope::Devices(&[M1])).unwrap();
    assert_eq!((r.attempted, r.activated), (4, 4));
    w.link.fault = Fault::LoseAnswer;
    let mut cx = cx!(w, T0);
    let r = w.s1sp.campaign(&mut cx, Scope::All).unwrap();
    assert_eq!((r.attempted, r.activated, r.pending), (8, 7, 1));
    for d in [M1, M2] {
        for c in Client::KEYED {
            if reachable(&mut w, d, c) {
                continue;
            }
            // The one whose answer was lost: resume.
            let mut cx = cx!(w, T0);
            assert_eq!(
                w.s1sp.resume(&mut cx, d, c).unwrap(),
                RotationOutcome::Activated
            );
            assert!(reachable(&mut w, d, c));
        }
    }
}

#[test]
fn r05_s1sp_cannot_open_dco_key_records_and_it_is_audited() {
    let mut w = world(&[(M1, false)]);
    for role in [KeyRole::Authentication, KeyRole::Master] {
        let client = if role == KeyRole::Master {
            None
        } else {
            Some(Client::Management)
        };
        let rec = w
            .s1sp
            .store()
            .active(&KeySlot {
                device: M1,
                client,
                role,
            })
            .unwrap();
        assert_eq!(
            w.s1sp.check_record(&rec, &mut w.audit, T0).unwrap_err(),
            Error::Key(KeyError::Refused)
        );
    }
    let refused = w
        .audit
        .events()
        .iter()
        .filter(|e| e.action == AuditAction::AccessRefused && e.outcome == Outcome::Refused)
        .count();
    assert_eq!(refused, 2);
    let guek = w
        .s1sp
        .store()
        .active(&KeySlot {
            device: M1,
            client: Some(Client::Management),
            role: KeyRole::GlobalUnicastEncryption,
        })
        .unwrap();
    assert!(w.s1sp.check_record(&guek, &mut w.audit, T0).is_ok());
    // a corrupt GUEK record is detected and audited.
    let mut bad = *guek.as_bytes();
    bad[30] ^= 0x40;
    let bad = PackagedRecord::parse(&bad).unwrap();
    assert_eq!(
        w.s1sp.check_record(&bad, &mut w.audit, T0).unwrap_err(),
        Error::Key(KeyError::Corrupted)
    );
    assert!(
        w.audit
            .events()
            .iter()
            .any(|e| e.action == AuditAction::CorruptionDetected)
    );
}

#[test]
fn r20_every_rotation_step_is_audited_without_secrets() {
    let mut w = world(&[(M1, true)]);
    let mut cx = cx!(w, T0);
    w.s1sp.rotate(&mut cx, M1, Client::Management).unwrap();
    let actions: Vec<_> = w.audit.events().iter().map(|e| e.action).collect();
    for a in [
        AuditAction::Generated,
        AuditAction::Packaged,
        AuditAction::Wrapped,
        AuditAction::TransferSent,
        AuditAction::TransferAccepted,
        AuditAction::Activated,
        AuditAction::Unpacked,
    ] {
        assert!(actions.contains(&a), "{a:?} missing from {actions:?}");
    }
    // MK, AK and GUEK generated (the device supports MK rotation).
    let generated: Vec<_> = w
        .audit
        .events()
        .iter()
        .filter(|e| e.action == AuditAction::Generated)
        .map(|e| e.role)
        .collect();
    assert_eq!(generated.len(), 3);
    for e in w.audit.events() {
        assert_eq!(e.device, Some(M1));
        assert_eq!(e.time, T0);
    }
}

#[test]
fn meter_refuses_an_mk_transfer_it_does_not_support() {
    // A device without MK rotation, sent a transfer that includes key id 3:
    // refused, nothing installed, old keys still work.
    let mut w = world(&[(M1, false)]);
    w.s1sp_force_mk_capability(M1);
    let mut cx = cx!(w, T0);
    assert_eq!(
        w.s1sp.rotate(&mut cx, M1, Client::Management).unwrap(),
        RotationOutcome::Refused
    );
    assert_eq!(w.link.meters[0].installs(), 0);
    assert!(reachable(&mut w, M1, Client::Management));
    assert!(
        w.audit
            .events()
            .iter()
            .any(|e| e.action == AuditAction::RotationFailed)
    );
}

impl World {
    fn s1sp_store_fail_put_pending(&mut self, on: bool) {
        self.s1sp.store_mut().fail_put_pending = on;
    }
    fn s1sp_store_fail_activate(&mut self, on: bool) {
        self.s1sp.store_mut().fail_activate = on;
    }
    fn s1sp_replace_active(&mut self, record: &PackagedRecord) {
        // A storage fault: the record in the slot changes under the S1SP.
        let mut slots = Vec::new();
        self.s1sp
            .store()
            .for_each_slot(&M1, &mut |s| slots.push(s))
            .unwrap();
        let mut fresh = FlakyStore::default();
        for s in slots {
            let r = self.s1sp.store().active(&s).unwrap();
            let r = if s == KeySlot::of(&record.id()) {
                *record
            } else {
                r
            };
            fresh.inner.put_initial(&r).unwrap();
        }
        *self.s1sp.store_mut() = fresh;
    }
    fn s1sp_force_mk_capability(&mut self, device: SystemTitle) {
        self.s1sp
            .set_capabilities(
                device,
                Capabilities {
                    master_key_rotation: true,
                },
            )
            .unwrap();
    }
}
