//! A rotation's answers bound to their requests: a link in the
//! middle that holds answers back, releases them later, reorders and
//! replays them can neither make the S1SP activate keys the meter never
//! installed nor make it drop keys the meter did install.
//!
//! After every step the meter must still accept one of the S1SP's two
//! generations (active or pending), and once the link behaves again the
//! S1SP must finish the rotation and rotate once more (which needs the
//! meter's MK).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "test code: a panic is a failed test"
)]

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::VecDeque;
use std::num::NonZeroU32;

use common::TestRng;
use dlms_sec::audit::{NoAudit, Recorder};
use dlms_sec::counter::Volatile;
use dlms_sec::key::package::PackagedKey;
use dlms_sec::key::{AuthenticationKey, GlobalUnicastEncryptionKey, KeyRole};
use dlms_sec::keystore::{KeySlot, KeyStore};
use dlms_sec::provider::{SoftwareDco, SoftwareS1sp};
use dlms_sec::types::{Client, Protection};
use dlms_sec::{Error, SystemTitle};
use dlms_sec_meter_sim::Meter;
use dlms_sec_services::MemoryKeyStore;
use dlms_sec_services::counters::{MemoryCounters, PerKeyCounters};
use dlms_sec_services::dco::{ClientRecords, Command, Dco};
use dlms_sec_services::s1sp::{MeterLink, RotationContext, RotationOutcome, S1sp};
use support::{CLIENT, M1, T0, commissioned, introduce_all};

/// get-request-normal, invoke-id 1: the meter answers get-response C4 01 C1.
const GET: [u8; 13] = [
    0xC0, 0x01, 0xC1, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0xFF, 0x02, 0x00,
];
/// action-request-normal to a Data object (not key_transfer), invoke-id 1:
/// the meter answers action-response success `C7 01 C1 00 00`, the same
/// octets as a key_transfer acceptance with invoke-id 1.
const ACTION: [u8; 13] = [
    0xC3, 0x01, 0xC1, 0x00, 0x01, 0x00, 0x00, 0x2A, 0x00, 0x00, 0xFF, 0x01, 0x00,
];

/// What the link in the middle does with one exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    /// Forwards the request, returns the meter's answer.
    Pass,
    /// Forwards the request, keeps the answer for later, reports it lost.
    Hold,
    /// Drops the request, reports the exchange lost.
    Drop,
    /// Drops the request, returns held answer `i` (it leaves the store).
    DropRelease(usize),
    /// Forwards the request, keeps the meter's answer, returns held answer
    /// `i` instead.
    SwapRelease(usize),
    /// Forwards the request, returns an answer delivered before, again.
    Replay(usize),
    /// Forwards the request, returns the meter's answer with one octet of
    /// its tag flipped.
    Corrupt,
}

struct Mitm {
    meter: Meter<Volatile>,
    script: VecDeque<Act>,
    held: Vec<Vec<u8>>,
    delivered: Vec<Vec<u8>>,
}

impl Mitm {
    fn forward(&mut self, client: Client, request: &mut [u8]) -> dlms_sec::Result<Vec<u8>> {
        let mut out = [0u8; 256];
        let (n, _) = self.meter.handle(client, request, &mut out)?;
        Ok(out[..n].to_vec())
    }

    fn take_held(&mut self, i: usize) -> Option<Vec<u8>> {
        (!self.held.is_empty()).then(|| self.held.remove(i % self.held.len()))
    }
}

impl MeterLink for Mitm {
    fn exchange(
        &mut self,
        _device: SystemTitle,
        client: Client,
        request: &mut [u8],
        response: &mut [u8],
    ) -> dlms_sec::Result<usize> {
        let lost = Err(Error::Misuse("lost on the link"));
        let act = self.script.pop_front().unwrap_or(Act::Pass);
        let answer = match act {
            Act::Pass => self.forward(client, request)?,
            Act::Hold => {
                let a = self.forward(client, request)?;
                self.held.push(a);
                return lost;
            }
            Act::Drop => return lost,
            Act::DropRelease(i) => match self.take_held(i) {
                Some(a) => a,
                None => return lost,
            },
            Act::SwapRelease(i) => {
                let real = self.forward(client, request)?;
                let Some(a) = self.take_held(i) else {
                    self.held.push(real);
                    return lost;
                };
                self.held.push(real);
                a
            }
            Act::Replay(i) => {
                self.forward(client, request)?;
                if self.delivered.is_empty() {
                    return lost;
                }
                let len = self.delivered.len();
                self.delivered[i % len].clone()
            }
            Act::Corrupt => {
                let mut a = self.forward(client, request)?;
                let last = a.len() - 1;
                a[last] ^= 0x01;
                a
            }
        };
        self.delivered.push(answer.clone());
        response[..answer.len()].copy_from_slice(&answer);
        Ok(answer.len())
    }
}

struct World {
    dco: Dco<SoftwareDco>,
    s1sp: S1sp<MemoryKeyStore, SoftwareS1sp>,
    link: Mitm,
    counter: PerKeyCounters<MemoryCounters>,
    audit: support::EventLog,
    rng: TestRng,
}

fn world(seed: u8, mk_rotation: bool) -> World {
    let mut rng = TestRng::new(seed);
    let (dco, s1sp, meter) = commissioned(&mut rng, mk_rotation);
    let mut counter = PerKeyCounters::new(MemoryCounters::new(), NonZeroU32::MIN);
    introduce_all(&dco, &s1sp, &mut counter);
    World {
        dco,
        s1sp,
        link: Mitm {
            meter,
            script: VecDeque::new(),
            held: Vec::new(),
            delivered: Vec::new(),
        },
        counter,
        audit: support::EventLog::new(),
        rng,
    }
}

macro_rules! cx {
    ($w:expr) => {
        RotationContext {
            dco: &$w.dco,
            link: &mut $w.link,
            counters: &mut $w.counter,
            audit: Recorder::new(&mut $w.audit, T0),
            rng: &mut $w.rng,
        }
    };
}

type Records = (
    PackagedKey<AuthenticationKey>,
    PackagedKey<GlobalUnicastEncryptionKey>,
);

fn pending(w: &World) -> Option<Records> {
    let slot = |role| KeySlot {
        device: M1,
        client: Some(CLIENT),
        role,
    };
    let ak = w
        .s1sp
        .store()
        .pending(&slot(KeyRole::Authentication))
        .unwrap()?;
    let guek = w
        .s1sp
        .store()
        .pending(&slot(KeyRole::GlobalUnicastEncryption))
        .unwrap()?;
    Some((ak.typed().unwrap(), guek.typed().unwrap()))
}

/// Whether the meter accepts a request under `records`, asked directly
/// (past the link; the answer is thrown away).
fn meter_accepts(w: &mut World, records: &Records) -> bool {
    let command = Command {
        records: ClientRecords::new(&records.0, &records.1),
        protection: Protection::AuthenticatedEncrypted,
        apdu: &GET,
    };
    let mut frame = [0u8; 128];
    let n = w
        .dco
        .protect(
            &command,
            &mut w.counter,
            &mut frame,
            &mut Recorder::new(&mut NoAudit, T0),
        )
        .unwrap();
    let mut answer = [0u8; 128];
    w.link
        .meter
        .handle(CLIENT, &mut frame[..n], &mut answer)
        .is_ok()
}

/// The meter holds the S1SP's active generation or its pending one: the
/// S1SP can still reach it.
fn assert_meter_reachable(w: &mut World, what: &str) {
    let active = w.s1sp.active_records(M1, CLIENT).unwrap();
    if meter_accepts(w, &active) {
        return;
    }
    let pending = pending(w);
    assert!(
        pending.is_some_and(|p| meter_accepts(w, &p)),
        "{what}: the meter holds neither the S1SP's active keys nor its pending ones \
         (meter installs: {})",
        w.link.meter.installs()
    );
}

/// With an honest link: a pending rotation is finished, a new one goes
/// through (the S1SP's MK is the meter's) and commands work.
fn assert_recovers(w: &mut World, what: &str) {
    w.link.script.clear();
    if pending(w).is_some() {
        let outcome = w.s1sp.resume(&mut cx!(w), M1, CLIENT).unwrap();
        assert_ne!(outcome, RotationOutcome::Pending, "{what}: resume decides");
    }
    assert!(pending(w).is_none(), "{what}: nothing left pending");
    assert_eq!(
        w.s1sp.rotate(&mut cx!(w), M1, CLIENT).unwrap(),
        RotationOutcome::Activated,
        "{what}: the next rotation goes through"
    );
    let mut answer = [0u8; 64];
    assert!(
        w.s1sp
            .command(&mut cx!(w), M1, CLIENT, &GET, &mut answer)
            .is_ok(),
        "{what}: commands go through"
    );
}

fn command(w: &mut World, apdu: &[u8]) -> dlms_sec::Result<usize> {
    let mut answer = [0u8; 64];
    w.s1sp.command(&mut cx!(w), M1, CLIENT, apdu, &mut answer)
}

#[test]
fn a_held_back_answer_never_activates_keys_the_meter_did_not_get() {
    for mk_rotation in [false, true] {
        let mut w = world(1, mk_rotation);
        // A genuine action-response success, held back: `C7 01 C1 00 00`.
        w.link.script.push_back(Act::Hold);
        assert!(command(&mut w, &ACTION).is_err());
        // The key_transfer never reaches the meter; the held answer comes
        // back in its place.
        w.link.script.push_back(Act::DropRelease(0));
        let outcome = w.s1sp.rotate(&mut cx!(w), M1, CLIENT);
        assert_eq!(w.link.meter.installs(), 0);
        assert_ne!(outcome, Ok(RotationOutcome::Activated));
        assert_meter_reachable(&mut w, "released action answer");
        assert_recovers(&mut w, "released action answer");
    }
}

#[test]
fn a_held_back_answer_never_drops_keys_the_meter_installed() {
    for mk_rotation in [false, true] {
        let mut w = world(2, mk_rotation);
        // A genuine get-response under the old keys, held back.
        w.link.script.push_back(Act::Hold);
        assert!(command(&mut w, &GET).is_err());
        // The meter installs the new keys; their acceptance is held back.
        w.link.script.push_back(Act::Hold);
        assert_eq!(
            w.s1sp.rotate(&mut cx!(w), M1, CLIENT).unwrap(),
            RotationOutcome::Pending
        );
        assert_eq!(w.link.meter.installs(), 1);
        // resume: the probe under the new keys is dropped, the probe under
        // the old keys answered by the held get-response.
        w.link.script.extend([Act::Drop, Act::DropRelease(0)]);
        let _ = w.s1sp.resume(&mut cx!(w), M1, CLIENT);
        assert!(
            pending(&w).is_some(),
            "the keys the meter installed are still pending"
        );
        assert_meter_reachable(&mut w, "released get answer");
        assert_recovers(&mut w, "released get answer");
    }
}

#[test]
fn a_replayed_or_corrupt_rotation_answer_never_drops_installed_keys() {
    for act in [Act::Replay(0), Act::Corrupt] {
        let mut w = world(3, true);
        assert!(command(&mut w, &ACTION).is_ok());
        // The meter installs; the S1SP sees an answer it cannot verify.
        w.link.script.push_back(act);
        let outcome = w.s1sp.rotate(&mut cx!(w), M1, CLIENT);
        assert_eq!(w.link.meter.installs(), 1, "{act:?}");
        assert_ne!(outcome, Ok(RotationOutcome::Refused), "{act:?}");
        assert_meter_reachable(&mut w, "replayed rotation answer");
        assert_recovers(&mut w, "replayed rotation answer");
    }
}

#[test]
fn reordered_answers_never_decide_a_rotation() {
    let mut w = world(4, true);
    // Two answers held back (a get-response and an action-response)...
    w.link.script.extend([Act::Hold, Act::Hold]);
    assert!(command(&mut w, &GET).is_err());
    assert!(command(&mut w, &ACTION).is_err());
    // ...the key_transfer is installed and its answer swapped for the
    // action-response; resume gets the rest, newest first.
    w.link.script.push_back(Act::SwapRelease(1));
    let _ = w.s1sp.rotate(&mut cx!(w), M1, CLIENT);
    assert_meter_reachable(&mut w, "swapped rotation answer");
    w.link
        .script
        .extend([Act::Drop, Act::DropRelease(1), Act::Drop]);
    let _ = w.s1sp.resume(&mut cx!(w), M1, CLIENT);
    assert_meter_reachable(&mut w, "reordered resume answers");
    w.link.script.extend([Act::Drop, Act::DropRelease(0)]);
    let _ = w.s1sp.resume(&mut cx!(w), M1, CLIENT);
    assert_meter_reachable(&mut w, "reordered resume answers");
    assert_recovers(&mut w, "reordered answers");
}

/// Every short schedule of link behaviour over a few commands, rotations
/// and resumes, chosen by a fixed pseudo-random sequence.
#[test]
fn no_schedule_of_held_reordered_or_replayed_answers_loses_the_meter() {
    let mut state = 0x9E37_79B9_u32;
    let mut next = move |n: u32| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state % n
    };
    for round in 0..300 {
        let mut w = world(5, round % 2 == 0);
        for step in 0..6 {
            for _ in 0..3 {
                let act = match next(8) {
                    0 | 1 => Act::Pass,
                    2 => Act::Hold,
                    3 => Act::Drop,
                    4 => Act::DropRelease(next(4) as usize),
                    5 => Act::SwapRelease(next(4) as usize),
                    6 => Act::Replay(next(8) as usize),
                    _ => Act::Corrupt,
                };
                w.link.script.push_back(act);
            }
            let _ = match next(4) {
                0 => command(&mut w, &GET).map(|_| RotationOutcome::Activated),
                1 => command(&mut w, &ACTION).map(|_| RotationOutcome::Activated),
                2 => w.s1sp.rotate(&mut cx!(w), M1, CLIENT),
                _ => w.s1sp.resume(&mut cx!(w), M1, CLIENT),
            };
            w.link.script.clear();
            assert_meter_reachable(&mut w, &format!("round {round}, step {step}"));
        }
        assert_recovers(&mut w, &format!("round {round}"));
    }
}
