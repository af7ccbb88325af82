//! Power loss at every write: the endpoint's receive floor and send
//! counter are persisted ahead of use, so after a restart from what
//! reached flash nothing accepted is accepted again and no counter value
//! is sent twice.
//!
//! The flash here fails at write k and every write after it (the power
//! is gone); the endpoint is then rebuilt from the records that landed,
//! and every frame the client ever sent is offered again, with new ones.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "test code: a panic is a failed test"
)]

use std::cell::RefCell;
use std::collections::HashSet;
use std::num::NonZeroU32;
use std::ops::Range;
use std::rc::Rc;

use dlms_sec::counter::{CounterKey, CounterPersistence, SendCounter};
use dlms_sec::error::CounterError;
use dlms_sec::key::{AuthenticationKey, GlobalUnicastEncryptionKey, MasterKey};
use dlms_sec::meter::key_transfer::SecuritySetupKeys;
use dlms_sec::meter::{
    DeviceCapabilities, Endpoint, FloorPersistence, FloorRecord, OneCounter, Served,
};
use dlms_sec::suite0::Protect;
use dlms_sec::wire::FrameLayout;
use dlms_sec::{
    Client, Error, InvocationCounter, KeyKind, Protection, SecurityPolicy, Suite0, SystemTitle,
};

const METER: SystemTitle = SystemTitle::new(*b"MMM\x00\x00\x00\x00\x07");
const HEAD_END: SystemTitle = SystemTitle::new(*b"DCO\x00\x00\x00\x00\x01");
const GUEK: [u8; 16] = [0x3E; 16];
const AK: [u8; 16] = [0xA7; 16];
const CLIENT: Client = Client::Management;
const GET: [u8; 13] = [
    0xC0, 0x01, 0xC1, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0xFF, 0x02, 0x00,
];
/// Frames per floor write and counter values per claim.
const AHEAD: NonZeroU32 = NonZeroU32::new(4).unwrap();

/// Flash that stops at a write budget; shared by the floors and the
/// counter.
#[derive(Default)]
struct Cells {
    floors: [Option<FloorRecord>; 5],
    counter: Option<(CounterKey, u32)>,
    /// Writes left before the power goes; `None`: unlimited.
    budget: Option<u32>,
    writes: u32,
}

#[derive(Clone, Default)]
struct Flash(Rc<RefCell<Cells>>);

impl Flash {
    fn write(&self) -> Result<(), CounterError> {
        let mut c = self.0.borrow_mut();
        match c.budget {
            Some(0) => return Err(CounterError::Persistence),
            Some(n) => c.budget = Some(n - 1),
            None => {}
        }
        c.writes += 1;
        Ok(())
    }

    fn budget(&self, budget: Option<u32>) {
        self.0.borrow_mut().budget = budget;
    }
}

impl FloorPersistence for Flash {
    fn load(&mut self, slot: usize) -> Result<Option<FloorRecord>, CounterError> {
        Ok(self.0.borrow().floors[slot])
    }

    fn store(&mut self, slot: usize, record: FloorRecord) -> Result<(), CounterError> {
        self.write()?;
        self.0.borrow_mut().floors[slot] = Some(record);
        Ok(())
    }
}

impl CounterPersistence for Flash {
    fn create(&mut self, key: &CounterKey, first: u32) -> Result<(), CounterError> {
        self.write()?;
        self.0.borrow_mut().counter = Some((*key, first));
        Ok(())
    }

    fn claim(&mut self, key: &CounterKey, n: NonZeroU32) -> Result<Range<u32>, CounterError> {
        let (k, ceiling) = self.0.borrow().counter.ok_or(CounterError::RecordLost)?;
        if k != *key {
            return Err(CounterError::RecordLost);
        }
        self.write()?;
        let new = ceiling.saturating_add(n.get());
        self.0.borrow_mut().counter = Some((k, new));
        Ok(ceiling..new)
    }
}

type Meter = Endpoint<Client, OneCounter<SendCounter<Flash>>, Flash, 5>;

fn counter_key() -> CounterKey {
    CounterKey::own(METER, CLIENT, KeyKind::GlobalUnicast, 0)
}

fn keys() -> SecuritySetupKeys {
    SecuritySetupKeys::new(
        GlobalUnicastEncryptionKey::from_bytes(GUEK),
        AuthenticationKey::from_bytes(AK),
    )
}

fn endpoint(counter: SendCounter<Flash>, flash: &Flash) -> Meter {
    Endpoint::smets1(
        METER,
        MasterKey::from_bytes([0x4B; 16]),
        OneCounter(counter),
        flash.clone(),
        DeviceCapabilities::default(),
    )
    .with_floor_reserve(AHEAD)
}

/// A device at manufacture: records created, client provisioned.
fn manufacture(flash: &Flash) -> Meter {
    let counter = SendCounter::new_key(
        counter_key(),
        InvocationCounter::new(1),
        AHEAD,
        flash.clone(),
    )
    .unwrap();
    let mut m = endpoint(counter, flash);
    m.provision(
        CLIENT,
        HEAD_END,
        keys(),
        SecurityPolicy::AuthenticatedEncrypted,
    )
    .unwrap();
    m
}

/// The device after a power loss, from what reached flash.
fn restart(flash: &Flash) -> Meter {
    let counter = SendCounter::resume(counter_key(), AHEAD, flash.clone()).unwrap();
    let mut m = endpoint(counter, flash);
    m.restore(
        CLIENT,
        HEAD_END,
        keys(),
        SecurityPolicy::AuthenticatedEncrypted,
    )
    .unwrap();
    m
}

fn client_frame(ic: u32) -> Vec<u8> {
    let suite = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(GUEK),
        &AuthenticationKey::from_bytes(AK),
    );
    let mut out = [0u8; 64];
    let n = suite
        .protect(
            &Protect::unicast(Protection::AuthenticatedEncrypted, HEAD_END),
            &mut SendCounter::volatile(InvocationCounter::new(ic)),
            &GET,
            &mut out,
        )
        .unwrap();
    out[..n].to_vec()
}

/// What the meter did across its lives.
#[derive(Default)]
struct Seen {
    accepted: HashSet<u32>,
    sent: HashSet<u32>,
}

/// Offers `frame`; records what was accepted and sent. `false` when the
/// power went (a write failed).
fn offer(m: &mut Meter, frame: &[u8], seen: &mut Seen) -> bool {
    let mut rx = frame.to_vec();
    let ic = FrameLayout::parse(frame)
        .unwrap()
        .invocation_counter
        .value();
    let request = match m.unprotect(CLIENT, &mut rx) {
        Ok(r) => r,
        Err(Error::Counter(CounterError::Persistence)) => return false,
        Err(Error::Counter(CounterError::Replay)) => return true,
        Err(e) => panic!("frame {ic}: {e:?}"),
    };
    assert!(seen.accepted.insert(ic), "frame {ic} accepted twice");
    let mut out = [0u8; 64];
    let Served::Application(request) = m.serve(request, &mut out).unwrap() else {
        panic!("a get-request is the application's");
    };
    match m.protect(&request, &[0xC4, 0x01, 0xC1, 0x00, 0x11, 0x00], &mut out) {
        Ok(n) => {
            let sent = FrameLayout::parse(&out[..n])
                .unwrap()
                .invocation_counter
                .value();
            assert!(seen.sent.insert(sent), "counter {sent} sent twice");
            true
        }
        Err(Error::Counter(CounterError::Persistence)) => false,
        Err(e) => panic!("answer to {ic}: {e:?}"),
    }
}

/// One life: every frame offered in order until the power goes.
fn live(m: &mut Meter, frames: &[Vec<u8>], seen: &mut Seen) -> bool {
    frames.iter().all(|f| offer(m, f, seen))
}

#[test]
fn a_power_cut_at_any_write_neither_reaccepts_nor_resends() {
    let first: Vec<Vec<u8>> = (1..=30).map(client_frame).collect();
    let later: Vec<Vec<u8>> = (31..=60).map(client_frame).collect();
    // How many writes one uninterrupted life makes: a cut at each of them.
    let writes = {
        let flash = Flash::default();
        let mut m = manufacture(&flash);
        let before = flash.0.borrow().writes;
        assert!(live(&mut m, &first, &mut Seen::default()));
        flash.0.borrow().writes - before
    };
    assert!(writes >= 10);
    for cut in 0..=writes {
        let flash = Flash::default();
        let mut m = manufacture(&flash);
        flash.budget(Some(cut));
        let mut seen = Seen::default();
        let survived = live(&mut m, &first, &mut seen);
        assert_eq!(survived, cut == writes, "cut {cut} of {writes}");
        drop(m);
        // Power back: rebuilt from flash, every frame offered again.
        flash.budget(None);
        let mut m = restart(&flash);
        let all: Vec<Vec<u8>> = first.iter().chain(&later).cloned().collect();
        assert!(live(&mut m, &all, &mut seen));
        // The client is served again once above the persisted ceiling.
        assert!(seen.accepted.contains(&60), "cut {cut}");
        assert!(
            seen.accepted.len() >= 30,
            "cut {cut}: {}",
            seen.accepted.len()
        );
    }
}

#[test]
fn repeated_power_cuts_neither_reaccept_nor_resend() {
    let frames: Vec<Vec<u8>> = (1..=80).map(client_frame).collect();
    // Each life has a few writes: the counter's claim at restart, then
    // floor writes and claims, until the power goes again.
    for budget in 2..=5 {
        let flash = Flash::default();
        drop(manufacture(&flash));
        let mut seen = Seen::default();
        let mut finished = false;
        for _ in 0..40 {
            flash.budget(Some(budget));
            let mut m = restart(&flash);
            if live(&mut m, &frames, &mut seen) {
                finished = true;
                break;
            }
        }
        // Every life makes progress; each restart skips at most the
        // values under the last ceiling.
        assert!(finished, "budget {budget}");
        assert!(seen.accepted.len() > 40, "budget {budget}");
    }
}

#[test]
fn floor_writes_are_one_per_reserve() {
    let flash = Flash::default();
    let mut m = manufacture(&flash);
    let before = flash.0.borrow().writes;
    let mut seen = Seen::default();
    let frames: Vec<Vec<u8>> = (1..=16).map(client_frame).collect();
    assert!(live(&mut m, &frames, &mut seen));
    // 16 frames, 16 answers: four floor writes and four counter claims.
    assert_eq!(flash.0.borrow().writes - before, 8);
    assert_eq!(m.lowest_acceptable(CLIENT).unwrap(), Some(17));
    drop(m);
    // After a restart the floor resumes at the last ceiling: written when
    // frame 16 was accepted, 16 + 1 + 4.
    let mut m = restart(&flash);
    assert_eq!(m.lowest_acceptable(CLIENT).unwrap(), Some(21));
}

#[test]
fn a_lost_floor_record_fails_closed() {
    let flash = Flash::default();
    drop(manufacture(&flash));
    flash.0.borrow_mut().floors = [None; 5];
    let counter = SendCounter::resume(counter_key(), AHEAD, flash.clone()).unwrap();
    let mut m = endpoint(counter, &flash);
    assert_eq!(
        m.restore(
            CLIENT,
            HEAD_END,
            keys(),
            SecurityPolicy::AuthenticatedEncrypted
        ),
        Err(Error::Counter(CounterError::RecordLost))
    );
}
