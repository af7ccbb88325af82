//! The SMETS1 lifecycle: commissioning rotation and its deadline,
//! re-key campaigns, pending → active, role separation
//! audit, and fault injection at every step of a rotation.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "test code: a panic is a failed test"
)]

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use common::TestRng;
use std::num::NonZeroU32;

use dlms_sec::audit::{AuditAction, Outcome, Recorder, Timestamp};
use dlms_sec::counter::{SendCounter, Volatile};
use dlms_sec::error::KeyError;
use dlms_sec::key::package::{PackagedRecord, RecordId};
use dlms_sec::key::{
    AuthenticationKey, DcoKey, GlobalUnicastEncryptionKey, KeyRole, MasterKey, SharedKey,
};
use dlms_sec::keystore::{KeySlot, KeyStore};
use dlms_sec::meter::DeviceCapabilities;
use dlms_sec::meter::key_transfer::SecuritySetupKeys;
use dlms_sec::provider::{CryptoProvider, SoftwareDco, SoftwareS1sp};
use dlms_sec::suite0::PeerTitle;
use dlms_sec::types::Client;
use dlms_sec::{Error, InvocationCounter, SecurityPolicy, SystemTitle};
use dlms_sec_meter_sim::Meter;
use dlms_sec_services::MemoryKeyStore;
use dlms_sec_services::counters::{MemoryCounters, PerKeyCounters};
use dlms_sec_services::dco::Dco;
use dlms_sec_services::s1sp::{MeterLink, RotationContext, RotationOutcome, S1sp, Scope};

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
    counter: PerKeyCounters<MemoryCounters>,
    audit: support::EventLog,
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
            *dco.provider()
                .package(&MasterKey::from_bytes(b), id(None, KeyRole::Master))
                .unwrap()
                .record(),
        ];
        let counter = SendCounter::volatile(InvocationCounter::new(1));
        let mut meter = Meter::new(
            device,
            DCO_TITLE,
            MasterKey::from_bytes(b),
            counter,
            DeviceCapabilities {
                master_key_rotation: mk_rotation,
            },
        );
        for client in Client::KEYED {
            let mut a = [0u8; 16];
            let mut g = [0u8; 16];
            rand_core::TryRng::try_fill_bytes(&mut rng, &mut a).unwrap();
            rand_core::TryRng::try_fill_bytes(&mut rng, &mut g).unwrap();
            records.push(
                *dco.provider()
                    .package(
                        &AuthenticationKey::from_bytes(a),
                        id(Some(client), KeyRole::Authentication),
                    )
                    .unwrap()
                    .record(),
            );
            records.push(
                *dco.provider()
                    .package(
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
    let mut counter = PerKeyCounters::new(MemoryCounters::new(), NonZeroU32::MIN);
    support::introduce_all(&dco, &s1sp, &mut counter);
    World {
        dco,
        s1sp,
        link: Link {
            meters,
            fault: Fault::None,
        },
        counter,
        audit: support::EventLog::new(),
        rng,
    }
}

macro_rules! cx {
    ($w:expr, $now:expr) => {
        RotationContext {
            dco: &$w.dco,
            link: &mut $w.link,
            counters: &mut $w.counter,
            audit: Recorder::new(&mut $w.audit, $now),
            rng: &mut $w.rng,
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
        w.s1sp.due(T0, DAY, u32::MAX).unwrap().is_empty(),
        "not due on day 0 with a 1-day horizon"
    );
    let due = w
        .s1sp
        .due(Timestamp(T0.0 + 6 * DAY), DAY, u32::MAX)
        .unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].1, Timestamp(T0.0 + 7 * DAY));
    assert_eq!(
        w.s1sp
            .due(Timestamp(T0.0 + 8 * DAY), 0, u32::MAX)
            .unwrap()
            .len(),
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
    let due = w
        .s1sp
        .due(Timestamp(T0.0 + 6 * DAY), DAY, u32::MAX)
        .unwrap();
    assert_eq!(due, vec![(M2, Timestamp(T0.0 + 7 * DAY))]);
    // the MK is rotated where the device supports it, not elsewhere.
    assert!(w.s1sp.device(M1).unwrap().unwrap().master_key_rotated);
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
    assert!(
        w.s1sp
            .due(Timestamp(T0.0 + 6 * DAY), 365 * DAY, u32::MAX)
            .unwrap()
            .is_empty()
    );
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
    let pending = KeySlot {
        device: M1,
        client: Some(Client::Management),
        role: KeyRole::Authentication,
    };
    assert!(
        w.s1sp.store().pending(&pending).unwrap().is_none(),
        "nothing left pending"
    );
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
    let r = w
        .s1sp
        .campaign(&mut cx, "one device", Scope::Device(M2))
        .unwrap();
    assert_eq!((r.attempted, r.activated), (4, 4));
    let mut cx = cx!(w, T0);
    let r = w
        .s1sp
        .campaign(&mut cx, "a list", Scope::Devices(&[M1]))
        .unwrap();
    assert_eq!((r.attempted, r.activated), (4, 4));
    w.link.fault = Fault::LoseAnswer;
    let mut cx = cx!(w, T0);
    let r = w.s1sp.campaign(&mut cx, "all", Scope::All).unwrap();
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
            w.s1sp
                .check_record(&rec, &mut Recorder::new(&mut w.audit, T0))
                .unwrap_err(),
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
    assert!(
        w.s1sp
            .check_record(&guek, &mut Recorder::new(&mut w.audit, T0))
            .is_ok()
    );
    // a corrupt GUEK record is detected and audited.
    let mut bad = *guek.as_bytes();
    bad[30] ^= 0x40;
    let bad = PackagedRecord::parse(&bad).unwrap();
    assert_eq!(
        w.s1sp
            .check_record(&bad, &mut Recorder::new(&mut w.audit, T0))
            .unwrap_err(),
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
fn r20_a_counter_near_its_end_is_audited() {
    let mut w = world(&[(M1, false)]);
    w.counter = PerKeyCounters::new(MemoryCounters::new(), NonZeroU32::MIN)
        .with_warning_threshold(u32::MAX);
    support::introduce_all(&w.dco, &w.s1sp, &mut w.counter);
    assert!(reachable(&mut w, M1, Client::Management));
    assert!(
        w.audit
            .events()
            .iter()
            .any(|e| e.action == AuditAction::CounterNearExhaustion && e.device == Some(M1))
    );
    let mut quiet = world(&[(M1, false)]);
    assert!(reachable(&mut quiet, M1, Client::Management));
    assert!(
        !quiet
            .audit
            .events()
            .iter()
            .any(|e| e.action == AuditAction::CounterNearExhaustion)
    );
}

#[test]
fn a_large_set_request_goes_through_and_an_oversized_one_is_a_typed_error() {
    let mut w = world(&[(M1, false)]);
    let mut set = vec![
        0xC1, 0x01, 0xC1, 0x00, 0x01, 0x00, 0x00, 0x60, 0x01, 0x00, 0xFF, 0x02, 0x00, 0x09, 0x82,
        0x05, 0xDC,
    ];
    set.resize(set.len() + 1500, 0x41);
    let mut answer = [0u8; 64];
    let mut cx = cx!(w, T0);
    assert_eq!(
        w.s1sp
            .command(&mut cx, M1, Client::Management, &set, &mut answer)
            .unwrap(),
        4
    );
    assert_eq!(answer[..4], [0xC5, 0x01, 0xC1, 0x00]);
    set.resize(dlms_sec_services::s1sp::MAX_FRAME_LEN, 0x41);
    let mut cx = cx!(w, T0);
    assert!(matches!(
        w.s1sp
            .command(&mut cx, M1, Client::Management, &set, &mut answer),
        Err(Error::BufferTooSmall { .. })
    ));
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

#[test]
fn r06_dco_protects_a_bundle_in_one_call_including_a_dedicated_key() {
    use dlms_sec::Protection;
    use dlms_sec::key::DedicatedKey;
    use dlms_sec::suite0::{Suite0, Unprotect};
    use dlms_sec_services::dco::{ClientRecords, Command};
    let mut w = world(&[(M1, false)]);
    let (_, guek) = w.s1sp.active_records(M1, Client::Management).unwrap();
    let ak_clear = [0xA1u8; 16];
    let ak = w
        .dco
        .provider()
        .package(
            &AuthenticationKey::from_bytes(ak_clear),
            RecordId {
                device: M1,
                client: Some(Client::Management),
                role: KeyRole::Authentication,
                generation: 5,
            },
        )
        .unwrap();
    let dk_clear = [0x5Du8; 16];
    let dk = w
        .dco
        .provider()
        .package(
            &DedicatedKey::from_bytes(dk_clear),
            RecordId {
                device: M1,
                client: Some(Client::Management),
                role: KeyRole::Dedicated,
                generation: 0,
            },
        )
        .unwrap();
    w.dco.introduce_dedicated(&mut w.counter, &dk).unwrap();
    let mut out = [0u8; 64];
    let command = Command {
        records: ClientRecords {
            ak: &ak,
            guek: &guek,
            dk: Some(&dk),
        },
        protection: Protection::AuthenticatedEncrypted,
        apdu: &GET,
    };
    let n = w
        .dco
        .protect(
            &command,
            &mut w.counter,
            &mut out,
            &mut Recorder::new(&mut w.audit, T0),
        )
        .unwrap();
    assert_eq!(out[0], 0xD0, "ded-get-request under the dedicated key");
    // The meter side of the association holds the same DK and verifies it.
    let mut meter_side = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes([0; 16]),
        &AuthenticationKey::from_bytes(ak_clear),
    );
    meter_side.set_dedicated_key(&DedicatedKey::from_bytes(dk_clear));
    let params = Unprotect {
        peer_system_title: PeerTitle::Expected(DCO_TITLE),
        policy: SecurityPolicy::AuthenticatedEncrypted,
    };
    let mut frame = out[..n].to_vec();
    assert_eq!(
        meter_side.unprotect(&mut frame, &params).unwrap().apdu(),
        &GET
    );
    // Another AK on the meter side: refused (the DCO used the packaged AK).
    let other = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes([0; 16]),
        &AuthenticationKey::from_bytes([0xA2; 16]),
    );
    let mut other = other;
    other.set_dedicated_key(&DedicatedKey::from_bytes(dk_clear));
    assert!(other.unprotect(&mut out[..n].to_vec(), &params).is_err());
    assert!(
        w.audit
            .events()
            .iter()
            .any(|e| e.action == AuditAction::Unpacked && e.role == Some(KeyRole::Dedicated))
    );
}

#[test]
fn r17_a_sweep_finds_corrupt_records_and_a_campaign_replaces_them() {
    let mut w = world(&[(M1, false), (M2, false)]);
    let slot = KeySlot {
        device: M2,
        client: Some(Client::Firmware),
        role: KeyRole::GlobalUnicastEncryption,
    };
    let good = w.s1sp.store().active(&slot).unwrap();
    let mut bad = *good.as_bytes();
    bad[25] ^= 0x08;
    let bad = PackagedRecord::parse(&bad).unwrap();
    // A storage fault replaces the record: corrupt it in place.
    let mut slots = Vec::new();
    w.s1sp
        .store()
        .for_each_slot(&M1, &mut |s| slots.push(s))
        .unwrap();
    w.s1sp
        .store()
        .for_each_slot(&M2, &mut |s| slots.push(s))
        .unwrap();
    let mut fresh = FlakyStore::default();
    for s in slots {
        let r = w.s1sp.store().active(&s).unwrap();
        fresh
            .inner
            .put_initial(if s == slot { &bad } else { &r })
            .unwrap();
    }
    *w.s1sp.store_mut() = fresh;
    let corrupt = w.s1sp.sweep(&mut Recorder::new(&mut w.audit, T0)).unwrap();
    assert_eq!(corrupt, vec![slot]);
    assert!(
        w.audit
            .events()
            .iter()
            .any(|e| e.action == AuditAction::CorruptionDetected && e.device == Some(M2))
    );
    // The GUEK record is unusable, so this client cannot be re-keyed under
    // it; the other clients of the device can, through the same campaign.
    let mut cx = cx!(w, T0);
    let report = w
        .s1sp
        .campaign(&mut cx, "corrupt GUEK", Scope::Devices(&[M2]))
        .unwrap();
    assert_eq!(report.activated, 3);
    assert_eq!(report.failed, vec![(M2, Client::Firmware)]);
}

#[test]
fn r16_r18_r19_keys_are_replaced_never_removed() {
    // The only removal the store offers is of a superseded generation:
    // retiring with nothing superseded leaves the active key in place, and
    // there is no revoke, destroy, export or backup call to make (the
    // compile_fail doctests on `keystore` show them missing).
    let mut w = world(&[(M1, false)]);
    let slot = KeySlot {
        device: M1,
        client: Some(Client::Management),
        role: KeyRole::Authentication,
    };
    w.s1sp.store_mut().retire_previous(&slot).unwrap();
    assert!(w.s1sp.store().active(&slot).is_ok());
    let mut cx = cx!(w, T0);
    w.s1sp.rotate(&mut cx, M1, Client::Management).unwrap();
    assert_eq!(w.s1sp.store().active(&slot).unwrap().generation(), 1);
    assert!(
        w.s1sp.store().previous(&slot).unwrap().is_none(),
        "the superseded key is retired after activation"
    );
}

#[test]
fn r05_the_s1sp_processes_with_the_guek_alone_and_nothing_more() {
    use dlms_sec::counter::SingleUse;
    use dlms_sec::suite0::{Protect, Suite0};

    use dlms_sec::Protection;
    let mut w = world(&[(M1, false)]);
    // A meter answer under a GUEK the test knows: replace the client's
    // records with known keys.
    let guek_clear = [0x6Cu8; 16];
    let rec = w
        .dco
        .provider()
        .package(
            &GlobalUnicastEncryptionKey::from_bytes(guek_clear),
            RecordId {
                device: M1,
                client: Some(Client::Management),
                role: KeyRole::GlobalUnicastEncryption,
                generation: 1,
            },
        )
        .unwrap();
    w.s1sp.store_mut().put_pending(rec.record()).unwrap();
    w.s1sp
        .store_mut()
        .activate(&KeySlot::of(&rec.id()), 1)
        .unwrap();
    let meter = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(guek_clear),
        &AuthenticationKey::from_bytes([9; 16]),
    );
    let answer = [0xC4, 0x01, 0xC1, 0x00, 0x09, 0x02, 0x12, 0x34];
    for (protection, ok) in [
        (Protection::Encrypted, true),
        (Protection::AuthenticatedEncrypted, false),
        (Protection::Authenticated, false),
    ] {
        let req = Protect::unicast(protection, M1);
        let mut frame = [0u8; 64];
        let n = meter
            .protect(
                &req,
                &mut SingleUse::dangerous_new(InvocationCounter::new(7)),
                &answer,
                &mut frame,
            )
            .unwrap();
        let got = w.s1sp.decrypt_unauthenticated(
            M1,
            Client::Management,
            &mut frame[..n],
            &mut Recorder::new(&mut w.audit, T0),
        );
        match got {
            Ok(u) => {
                assert!(ok);
                assert_eq!(u.apdu(), &answer);
            }
            Err(e) => {
                assert!(!ok);
                assert_eq!(e, Error::Key(KeyError::Refused), "{protection:?}");
            }
        }
    }
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
                DeviceCapabilities {
                    master_key_rotation: true,
                },
            )
            .unwrap();
    }
}

#[test]
fn the_dco_counts_per_key_and_refuses_a_key_whose_counter_is_lost() {
    use dlms_sec::Protection;
    use dlms_sec::counter::CounterKey;
    use dlms_sec::error::CounterError;
    use dlms_sec::wire::KeyKind;
    use dlms_sec_services::dco::{ClientRecords, Command};

    let mut w = world(&[(M1, false), (M2, false)]);
    let store = w.counter.persistence().clone();
    let key =
        |device, client| CounterKey::new(DCO_TITLE, device, client, KeyKind::GlobalUnicast, 0);
    // Commands to two meters and two clients: each key's counter moves on
    // its own.
    assert!(reachable(&mut w, M1, Client::Management));
    assert!(reachable(&mut w, M1, Client::Management));
    assert!(reachable(&mut w, M2, Client::Management));
    assert_eq!(store.ceiling(&key(M1, Client::Management)), Some(3));
    assert_eq!(store.ceiling(&key(M2, Client::Management)), Some(2));
    assert_eq!(store.ceiling(&key(M1, Client::DataCollection)), Some(1));

    // A key whose record is gone: nothing is protected, nothing leaves,
    // and the refusal is audited.
    store.lose(&key(M2, Client::Management));
    w.counter.forget_reservations();
    let (ak, guek) = w.s1sp.active_records(M2, Client::Management).unwrap();
    let mut out = [0xAAu8; 64];
    let before = w.audit.events().len();
    let got = w.dco.protect(
        &Command {
            records: ClientRecords::new(&ak, &guek),
            protection: Protection::AuthenticatedEncrypted,
            apdu: &GET,
        },
        &mut w.counter,
        &mut out,
        &mut Recorder::new(&mut w.audit, T0),
    );
    assert_eq!(got, Err(Error::Counter(CounterError::RecordLost)));
    assert_eq!(out, [0; 64]);
    assert!(
        w.audit.events()[before..]
            .iter()
            .any(|e| e.outcome == Outcome::Failure && e.device == Some(M2))
    );
}
