//! Audit before action: a counter value is drawn only after the
//! record of its use is written, a frame leaves only with its records
//! written, and an audit sink that fails on any one write stops the call
//! with no frame and no counter value spent unrecorded.
//!
//! One journal interleaves what the audit sink wrote, what the DCO's
//! counter issued and what reached the link.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::cell::RefCell;
use std::rc::Rc;

use common::TestRng;
use dlms_sec::audit::{AuditAction, AuditEvent, AuditSink, Outcome, Recorder};
use std::collections::BTreeMap;
use std::num::NonZeroU32;

use dlms_sec::counter::{CounterKey, CounterPersistence, CounterSource, SendCounter, Volatile};
use dlms_sec::error::CounterError;
use dlms_sec::key::{KeyRole, MasterKey};
use dlms_sec::keystore::{KeySlot, KeyStore};
use dlms_sec::provider::{SoftwareDco, SoftwareS1sp};
use dlms_sec::types::{Client, Protection};
use dlms_sec::wire::SecuritySetupMethod;
use dlms_sec::{Error, InvocationCounter, SystemTitle};
use dlms_sec_meter_sim::Meter;
use dlms_sec_services::MemoryKeyStore;
use dlms_sec_services::counters::{KeyCounters, MemoryCounters};
use dlms_sec_services::dco::{ClientRecords, Command, Dco, Rotation, RotationScope};
use dlms_sec_services::s1sp::{MeterLink, RotationContext, S1sp};
use support::{CLIENT, M1, T0, commissioned, introduce_all};

const GET: [u8; 13] = [
    0xC0, 0x01, 0xC1, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0xFF, 0x02, 0x00,
];
/// glo-action-request: the ciphered tag of a key_transfer.
const GLO_ACTION_REQUEST: u8 = 0xCB;

#[derive(Clone, Debug)]
enum Op {
    /// The sink wrote this event.
    Record(AuditEvent),
    /// The counter issued this value.
    Draw(u32),
    /// This frame reached the link.
    Sent(Vec<u8>),
}

type Journal = Rc<RefCell<Vec<Op>>>;

/// Fails its `fail_at`-th write (1-based), and only that one.
struct FailingSink {
    journal: Journal,
    fail_at: usize,
    writes: usize,
}

impl AuditSink for FailingSink {
    fn record(&mut self, event: &AuditEvent) -> dlms_sec::Result<()> {
        self.writes += 1;
        if self.writes == self.fail_at {
            return Err(Error::Audit);
        }
        self.journal.borrow_mut().push(Op::Record(*event));
        Ok(())
    }
}

struct JournalCounter {
    journal: Journal,
    inner: SendCounter<MemoryCounters>,
}

/// Per-key counters whose every draw goes to the journal.
struct JournalCounters {
    journal: Journal,
    store: MemoryCounters,
    open: BTreeMap<CounterKey, JournalCounter>,
}

impl KeyCounters for JournalCounters {
    fn introduce(
        &mut self,
        key: &CounterKey,
        first: InvocationCounter,
    ) -> Result<(), CounterError> {
        match self.store.create(key, first.value()) {
            Ok(()) | Err(CounterError::RecordExists) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn counter(&mut self, key: &CounterKey) -> Result<&mut dyn CounterSource, CounterError> {
        if !self.open.contains_key(key) {
            let inner = SendCounter::resume(*key, NonZeroU32::MIN, self.store.clone())?
                // Every value is near the end: each protect also records
                // counter-near-exhaustion.
                .with_warning_threshold(u32::MAX);
            let journal = self.journal.clone();
            self.open.insert(*key, JournalCounter { journal, inner });
        }
        Ok(self.open.get_mut(key).unwrap())
    }
}

impl CounterSource for JournalCounter {
    fn next_counter(&mut self) -> Result<InvocationCounter, CounterError> {
        let ic = self.inner.next_counter()?;
        self.journal.borrow_mut().push(Op::Draw(ic.value()));
        Ok(ic)
    }
    fn near_exhaustion(&self) -> bool {
        self.inner.near_exhaustion()
    }
}

struct JournalLink {
    journal: Journal,
    meter: Meter<Volatile>,
    /// The next request never reaches the meter.
    drop_next: bool,
}

impl MeterLink for JournalLink {
    fn exchange(
        &mut self,
        _device: SystemTitle,
        client: Client,
        request: &mut [u8],
        response: &mut [u8],
    ) -> dlms_sec::Result<usize> {
        self.journal.borrow_mut().push(Op::Sent(request.to_vec()));
        if core::mem::take(&mut self.drop_next) {
            return Err(Error::Misuse("request lost"));
        }
        let (n, _) = self.meter.handle(client, request, response)?;
        Ok(n)
    }
}

struct World {
    dco: Dco<SoftwareDco>,
    s1sp: S1sp<MemoryKeyStore, SoftwareS1sp>,
    link: JournalLink,
    counter: JournalCounters,
    rng: TestRng,
    journal: Journal,
}

fn world(mk_rotation: bool) -> World {
    let journal = Journal::default();
    let mut rng = TestRng::new(7);
    let (dco, s1sp, meter) = commissioned(&mut rng, mk_rotation);
    let mut counter = JournalCounters {
        journal: journal.clone(),
        store: MemoryCounters::new(),
        open: BTreeMap::new(),
    };
    introduce_all(&dco, &s1sp, &mut counter);
    World {
        dco,
        s1sp,
        link: JournalLink {
            journal: journal.clone(),
            meter,
            drop_next: false,
        },
        counter,
        rng,
        journal,
    }
}

impl World {
    fn sink(&self, fail_at: usize) -> FailingSink {
        FailingSink {
            journal: self.journal.clone(),
            fail_at,
            writes: 0,
        }
    }
}

fn is_record(op: &Op, action: AuditAction) -> bool {
    matches!(op, Op::Record(e) if e.action == action && e.outcome == Outcome::Success)
}

/// Every counter value was drawn right after the record of the protect it
/// serves was written; every key_transfer frame reached the link after its
/// transfer-sent record, written after its counter value was drawn.
fn assert_ordered(journal: &[Op], what: &str) {
    for (i, op) in journal.iter().enumerate() {
        match op {
            Op::Draw(v) => assert!(
                i > 0 && is_record(&journal[i - 1], AuditAction::Unpacked),
                "{what}: counter value {v} drawn without its record first: {}",
                summary(journal)
            ),
            Op::Sent(frame) => {
                let draw = journal[..i]
                    .iter()
                    .rposition(|o| matches!(o, Op::Draw(_)))
                    .unwrap_or_else(|| panic!("{what}: a frame sent without a counter value"));
                if frame[0] == GLO_ACTION_REQUEST {
                    assert!(
                        journal[draw..i]
                            .iter()
                            .any(|o| is_record(o, AuditAction::TransferSent)),
                        "{what}: key_transfer sent before transfer-sent was recorded"
                    );
                }
            }
            Op::Record(_) => {}
        }
    }
}

fn summary(journal: &[Op]) -> String {
    let names: Vec<String> = journal
        .iter()
        .map(|o| match o {
            Op::Record(e) => format!("{}/{}", e.action, e.outcome),
            Op::Draw(v) => format!("draw {v}"),
            Op::Sent(f) => format!("sent {:02X}", f[0]),
        })
        .collect();
    names.join(", ")
}

fn writes_of(journal: &[Op]) -> usize {
    journal
        .iter()
        .filter(|o| matches!(o, Op::Record(_)))
        .count()
}

#[test]
fn protect_with_an_audit_failure_at_every_write_returns_no_frame_and_spends_no_value_unrecorded() {
    let mut total = None;
    for fail_at in 0.. {
        let mut w = world(false);
        let (ak, guek) = w.s1sp.active_records(M1, CLIENT).unwrap();
        let command = Command {
            records: ClientRecords::new(&ak, &guek),
            protection: Protection::AuthenticatedEncrypted,
            apdu: &GET,
        };
        let mut sink = w.sink(fail_at);
        let mut out = [0u8; 128];
        let got = w.dco.protect(
            &command,
            &mut w.counter,
            &mut out,
            &mut Recorder::new(&mut sink, T0),
        );
        let journal = w.journal.borrow().clone();
        let what = format!("protect, audit write {fail_at} fails");
        assert_ordered(&journal, &what);
        match got {
            Ok(n) => {
                assert!(n > 0);
                assert!(
                    fail_at == 0 || fail_at > sink.writes,
                    "{what}: failure ignored"
                );
                assert!(
                    journal
                        .iter()
                        .any(|o| is_record(o, AuditAction::CounterNearExhaustion)),
                    "{what}: the near-exhaustion record is written"
                );
                total.get_or_insert(writes_of(&journal));
            }
            Err(e) => {
                assert_eq!(e, Error::Audit, "{what}");
                assert_eq!(out, [0u8; 128], "{what}: no frame in the buffer");
            }
        }
        if total.is_some_and(|t| fail_at > t) {
            break;
        }
    }
    assert!(total.unwrap() >= 2, "unpacked and near-exhaustion records");
}

#[test]
fn prepare_rotation_with_an_audit_failure_at_every_write_returns_no_frame() {
    let mut total = None;
    for fail_at in 0.. {
        let mut w = world(true);
        let (ak, guek) = w.s1sp.active_records(M1, CLIENT).unwrap();
        let mk = w
            .s1sp
            .store()
            .active(&KeySlot {
                device: M1,
                client: None,
                role: KeyRole::Master,
            })
            .unwrap()
            .typed::<MasterKey>()
            .unwrap();
        let mut sink = w.sink(fail_at);
        let rotation = Rotation {
            rng: &mut w.rng,
            mk: &mk,
            current: ClientRecords::new(&ak, &guek),
            scope: RotationScope {
                ak_and_guek: true,
                master_key: true,
            },
            method: SecuritySetupMethod::default(),
        };
        let mut out = [0u8; 256];
        let got = w.dco.prepare_rotation(
            rotation,
            &mut w.counter,
            &mut out,
            &mut Recorder::new(&mut sink, T0),
        );
        let journal = w.journal.borrow().clone();
        let what = format!("prepare_rotation, audit write {fail_at} fails");
        assert_ordered(&journal, &what);
        match got {
            Ok(p) => {
                assert!(p.frame_len > 0);
                assert!(
                    fail_at == 0 || fail_at > sink.writes,
                    "{what}: failure ignored"
                );
                let sent = journal
                    .iter()
                    .rposition(|o| is_record(o, AuditAction::TransferSent))
                    .unwrap_or_else(|| panic!("{what}: a frame without transfer-sent"));
                let draw = journal
                    .iter()
                    .rposition(|o| matches!(o, Op::Draw(_)))
                    .unwrap();
                assert!(draw < sent, "{what}: transfer-sent names a drawn frame");
                total.get_or_insert(writes_of(&journal));
            }
            Err(e) => {
                assert_eq!(e, Error::Audit, "{what}");
                assert_eq!(out, [0u8; 256], "{what}: no frame in the buffer");
            }
        }
        if total.is_some_and(|t| fail_at > t) {
            break;
        }
    }
}

#[test]
fn a_rotation_with_an_audit_failure_at_every_write_sends_nothing_unrecorded() {
    let mut total = None;
    for fail_at in 0.. {
        let mut w = world(true);
        let mut sink = w.sink(fail_at);
        let got = w.s1sp.rotate(
            &mut RotationContext {
                dco: &w.dco,
                link: &mut w.link,
                counters: &mut w.counter,
                audit: Recorder::new(&mut sink, T0),
                rng: &mut w.rng,
            },
            M1,
            CLIENT,
        );
        let journal = w.journal.borrow().clone();
        let what = format!("rotate, audit write {fail_at} fails");
        assert_ordered(&journal, &what);
        let sent = journal.iter().any(|o| matches!(o, Op::Sent(_)));
        match got {
            Ok(_) => {
                assert!(
                    fail_at == 0 || fail_at > sink.writes,
                    "{what}: failure ignored"
                );
                total.get_or_insert(writes_of(&journal));
            }
            Err(e) => {
                assert_eq!(e, Error::Audit, "{what}");
                if !sent {
                    assert_eq!(w.link.meter.installs(), 0, "{what}");
                }
            }
        }
        if total.is_some_and(|t| fail_at > t) {
            break;
        }
    }
}

fn slot(role: KeyRole) -> KeySlot {
    KeySlot {
        device: M1,
        client: (role != KeyRole::Master).then_some(CLIENT),
        role,
    }
}

const ROLES: [KeyRole; 3] = [
    KeyRole::Authentication,
    KeyRole::GlobalUnicastEncryption,
    KeyRole::Master,
];

fn recorded(journal: &[Op], action: AuditAction, outcome: Outcome, role: Option<KeyRole>) -> bool {
    journal.iter().any(|o| {
        matches!(o, Op::Record(e) if e.action == action && e.outcome == outcome
            && (role.is_none() || e.role == role))
    })
}

#[test]
fn a_rotation_with_an_audit_failure_at_every_write_activates_nothing_unrecorded() {
    for fail_at in 0..40 {
        let mut w = world(true);
        let mut sink = w.sink(fail_at);
        let got = w.s1sp.rotate(
            &mut RotationContext {
                dco: &w.dco,
                link: &mut w.link,
                counters: &mut w.counter,
                audit: Recorder::new(&mut sink, T0),
                rng: &mut w.rng,
            },
            M1,
            CLIENT,
        );
        let journal = w.journal.borrow().clone();
        for role in ROLES {
            let active = w.s1sp.store().active(&slot(role)).unwrap().generation();
            assert!(
                active == 0
                    || recorded(
                        &journal,
                        AuditAction::Activated,
                        Outcome::Success,
                        Some(role)
                    ),
                "rotate, audit write {fail_at} fails ({got:?}): {role:?} activated unrecorded: {}",
                summary(&journal)
            );
        }
    }
}

#[test]
fn a_resume_with_an_audit_failure_at_every_write_drops_nothing_unrecorded() {
    for fail_at in 0..40 {
        let mut w = world(true);
        // The key_transfer never reaches the meter: the rotation is pending.
        w.link.drop_next = true;
        let mut sink = w.sink(0);
        let mut cx = RotationContext {
            dco: &w.dco,
            link: &mut w.link,
            counters: &mut w.counter,
            audit: Recorder::new(&mut sink, T0),
            rng: &mut w.rng,
        };
        w.s1sp.rotate(&mut cx, M1, CLIENT).unwrap();
        w.journal.borrow_mut().clear();
        let mut sink = w.sink(fail_at);
        let got = w.s1sp.resume(
            &mut RotationContext {
                dco: &w.dco,
                link: &mut w.link,
                counters: &mut w.counter,
                audit: Recorder::new(&mut sink, T0),
                rng: &mut w.rng,
            },
            M1,
            CLIENT,
        );
        let journal = w.journal.borrow().clone();
        assert_ordered(&journal, &format!("resume, audit write {fail_at} fails"));
        for role in ROLES {
            let pending = w.s1sp.store().pending(&slot(role)).unwrap();
            assert!(
                pending.is_some()
                    || recorded(
                        &journal,
                        AuditAction::RotationFailed,
                        Outcome::Refused,
                        None
                    ),
                "resume, audit write {fail_at} fails ({got:?}): {role:?} dropped unrecorded: {}",
                summary(&journal)
            );
        }
    }
}
