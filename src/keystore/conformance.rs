//! The conformance suite for [`KeyStore`] implementations (feature
//! `conformance`).
//!
//! [`run`] checks every behaviour the [module docs](super) and the trait
//! documentation promise, each check on a fresh store from the caller's
//! factory; [`run_capacity`] checks a bounded store at its limit. Both
//! return the first [`Failure`], naming the check, instead of panicking, so
//! they can run in a test of another crate (a SQL store) as well as on a
//! device:
//!
//! ```
//! use dlms_sec::keystore::{HeaplessKeyStore, conformance};
//!
//! conformance::run(HeaplessKeyStore::<32>::new).unwrap();
//! conformance::run_capacity(HeaplessKeyStore::<4>::new(), 4).unwrap();
//! ```
//!
//! The records the suite stores are made by [`test_record`] under fixed,
//! public test KEKs: never use it for real keys. The suite needs no
//! allocation.

use core::fmt;

use super::{KeySlot, KeyStore};
use crate::error::{Error, KeyError};
use crate::key::package::{PackagedRecord, Packager};
use crate::key::{
    AuthenticationKey, DcoKey, DedicatedKey, GlobalBroadcastEncryptionKey,
    GlobalUnicastEncryptionKey, KEY_LEN, KeyRole, MasterKey, SharedKey,
};
use crate::types::Client;
use crate::wire::SystemTitle;

/// A check of the suite that the store failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What was checked, in words.
    pub check: &'static str,
    /// The error the store returned, if it returned one that the check did
    /// not expect (`None` when it succeeded where it should have failed, or
    /// returned the wrong data).
    pub error: Option<Error>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key store conformance: {}", self.check)?;
        if let Some(e) = self.error {
            write!(f, " (store returned: {e})")?;
        }
        Ok(())
    }
}

impl core::error::Error for Failure {}

type Outcome<T = ()> = Result<T, Failure>;

/// A packaged record for `slot` and `generation`, with key octets all equal
/// to `seed`, under fixed test KEKs (the DCO Key for MKs and AKs, the Shared
/// Key for the others). Different seeds give different records for the
/// same id.
///
/// For tests only: the KEKs are public constants.
///
/// # Errors
/// [`KeyError::InvalidClient`] when the slot's client does not fit its role
/// (a device-wide MK with a client, or a client key without one or with the
/// Public client).
pub fn test_record(slot: &KeySlot, generation: u32, seed: u8) -> crate::Result<PackagedRecord> {
    const DCO: [u8; KEY_LEN] = [0xD0; KEY_LEN];
    const SHARED: [u8; KEY_LEN] = [0x5A; KEY_LEN];
    let id = slot.id(generation);
    let key = [seed; KEY_LEN];
    Ok(match slot.role {
        KeyRole::Master => *Packager::new(&DcoKey::from_bytes(DCO))
            .package(&MasterKey::from_bytes(key), id)?
            .record(),
        KeyRole::Authentication => *Packager::new(&DcoKey::from_bytes(DCO))
            .package(&AuthenticationKey::from_bytes(key), id)?
            .record(),
        KeyRole::GlobalUnicastEncryption => *Packager::new(&SharedKey::from_bytes(SHARED))
            .package(&GlobalUnicastEncryptionKey::from_bytes(key), id)?
            .record(),
        KeyRole::GlobalBroadcastEncryption => *Packager::new(&SharedKey::from_bytes(SHARED))
            .package(&GlobalBroadcastEncryptionKey::from_bytes(key), id)?
            .record(),
        KeyRole::Dedicated => *Packager::new(&SharedKey::from_bytes(SHARED))
            .package(&DedicatedKey::from_bytes(key), id)?
            .record(),
    })
}

/// Runs every check, each on a fresh store from `new_store`, and returns
/// the first failure. Some checks run through the `&mut S` forwarding
/// implementation.
///
/// The stores must be empty and have room for at least 16 slots.
///
/// # Errors
/// The first [`Failure`].
pub fn run<S: KeyStore>(mut new_store: impl FnMut() -> S) -> Outcome {
    empty_store(&mut new_store())?;
    initial_round_trip(&mut new_store())?;
    pending_waits_for_activate(&mut new_store())?;
    stale_generations(&mut new_store())?;
    activation(&mut new_store())?;
    activation(&mut &mut new_store())?;
    discard(&mut new_store())?;
    retire(&mut new_store())?;
    independence(&mut new_store())?;
    independence(&mut &mut new_store())?;
    listing(&mut new_store())?;
    activation_together(&mut new_store())?;
    activation_together(&mut &mut new_store())?;
    Ok(())
}

/// Fills an empty `store` with exactly `capacity` slots, then expects
/// [`KeyError::StoreFull`] for one more, and checks that nothing stored was
/// lost and that existing slots can still be rotated while the store is
/// full.
///
/// # Errors
/// The first [`Failure`], also when the store refuses a slot before
/// `capacity` or takes one after it.
pub fn run_capacity<S: KeyStore>(mut store: S, capacity: usize) -> Outcome {
    let s = &mut store;
    for i in 0..capacity {
        let slot = numbered(i)?;
        ok(
            s.put_initial(&record(&slot, 0, seed(i))?),
            "the store takes `capacity` slots",
        )?;
    }
    let extra = numbered(capacity)?;
    let r = record(&extra, 0, 1)?;
    refused(
        s.put_initial(&r),
        KeyError::StoreFull,
        "put_initial of one slot more than the capacity is StoreFull",
    )?;
    refused(
        s.put_pending(&r),
        KeyError::StoreFull,
        "put_pending of one slot more than the capacity is StoreFull",
    )?;
    refused(
        s.active(&extra),
        KeyError::NotFound,
        "a slot refused with StoreFull has no active record",
    )?;
    ensure(
        ok(s.pending(&extra), "pending of a refused slot")?.is_none(),
        "a slot refused with StoreFull has no pending record",
    )?;
    refused(
        s.activate(&extra, 0),
        KeyError::NoPending,
        "a slot refused with StoreFull has nothing to activate",
    )?;
    all_there(s, 0, capacity, "StoreFull loses no stored record")?;
    ensure(
        count_slots(s)? == capacity,
        "a full store lists exactly `capacity` slots",
    )?;

    // Existing slots can still be updated in a full store.
    if capacity > 0 {
        let first = numbered(0)?;
        let r0 = record(&first, 0, seed(0))?;
        let r1 = record(&first, 1, 0xF1)?;
        ok(
            s.put_pending(&r1),
            "put_pending to an existing slot of a full store",
        )?;
        ok(s.activate(&first, 1), "activate in a full store")?;
        expect_state(
            s,
            &first,
            [Some(&r1), None, Some(&r0)],
            "a full store still rotates an existing slot",
        )?;
        ok(s.retire_previous(&first), "retire_previous in a full store")?;
        all_there(
            s,
            1,
            capacity,
            "rotating one slot of a full store loses no other record",
        )?;
        refused(
            s.put_initial(&r),
            KeyError::StoreFull,
            "a full store is still full after a rotation",
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Fixture

const fn title(last: [u8; 2]) -> SystemTitle {
    let [a, b] = last;
    SystemTitle::new([0x4D, 0x4D, 0x4D, 0x00, 0x00, 0x00, a, b])
}

/// Three devices whose titles sort by bytes, not by their last octet.
const DEV_A: SystemTitle = title([0x00, 0xFF]);
const DEV_B: SystemTitle = title([0x01, 0x10]);
const DEV_C: SystemTitle = title([0x01, 0x11]);
/// Between A and B, holding nothing.
const DEV_UNKNOWN: SystemTitle = title([0x01, 0x00]);

const fn at(device: SystemTitle, client: Option<Client>, role: KeyRole) -> KeySlot {
    KeySlot {
        device,
        client,
        role,
    }
}

const A_MK: KeySlot = at(DEV_A, None, KeyRole::Master);
const A_AK_DC: KeySlot = at(DEV_A, Some(Client::DataCollection), KeyRole::Authentication);
const A_GUEK_DC: KeySlot = at(
    DEV_A,
    Some(Client::DataCollection),
    KeyRole::GlobalUnicastEncryption,
);
const A_AK_MGMT: KeySlot = at(DEV_A, Some(Client::Management), KeyRole::Authentication);
const A_DK_MGMT: KeySlot = at(DEV_A, Some(Client::Management), KeyRole::Dedicated);
const A_GBEK_FW: KeySlot = at(
    DEV_A,
    Some(Client::Firmware),
    KeyRole::GlobalBroadcastEncryption,
);
const B_MK: KeySlot = at(DEV_B, None, KeyRole::Master);
const B_AK_DC: KeySlot = at(DEV_B, Some(Client::DataCollection), KeyRole::Authentication);
const C_MK: KeySlot = at(DEV_C, None, KeyRole::Master);
const C_GUEK_EDC: KeySlot = at(
    DEV_C,
    Some(Client::ExtendedDataCollection),
    KeyRole::GlobalUnicastEncryption,
);

/// Every slot the checks use, in ascending order. Slots of one device
/// differ in client, role or both; devices share clients and roles.
const WATCHED: [KeySlot; 10] = [
    A_MK, A_AK_DC, A_GUEK_DC, A_AK_MGMT, A_DK_MGMT, A_GBEK_FW, B_MK, B_AK_DC, C_MK, C_GUEK_EDC,
];

/// Enough for every listing of the fixture.
const MAX: usize = 16;

fn record(slot: &KeySlot, generation: u32, seed: u8) -> Outcome<PackagedRecord> {
    test_record(slot, generation, seed).map_err(|e| Failure {
        check: "fixture: packaging a test record",
        error: Some(e),
    })
}

/// The `i`-th slot of [`run_capacity`]: three slots per device.
fn numbered(i: usize) -> Outcome<KeySlot> {
    let device = u64::try_from(i / 3).map_err(|_| Failure {
        check: "fixture: capacity beyond u64",
        error: None,
    })?;
    let (client, role) = match i % 3 {
        0 => (None, KeyRole::Master),
        1 => (Some(Client::Management), KeyRole::Authentication),
        _ => (Some(Client::Management), KeyRole::GlobalUnicastEncryption),
    };
    Ok(at(SystemTitle::new(device.to_be_bytes()), client, role))
}

fn seed(i: usize) -> u8 {
    let [low, ..] = i.to_le_bytes();
    low
}

// ---------------------------------------------------------------------------
// Assertions that return instead of panicking

fn ensure(condition: bool, check: &'static str) -> Outcome {
    if condition {
        Ok(())
    } else {
        Err(Failure { check, error: None })
    }
}

fn ok<T>(r: crate::Result<T>, check: &'static str) -> Outcome<T> {
    r.map_err(|e| Failure {
        check,
        error: Some(e),
    })
}

fn refused<T>(r: crate::Result<T>, want: KeyError, check: &'static str) -> Outcome {
    match r {
        Err(Error::Key(k)) if k == want => Ok(()),
        Err(e) => Err(Failure {
            check,
            error: Some(e),
        }),
        Ok(_) => Err(Failure { check, error: None }),
    }
}

/// Active, pending, previous.
type SlotState = [Option<PackagedRecord>; 3];

fn state<S: KeyStore + ?Sized>(s: &S, slot: &KeySlot) -> Outcome<SlotState> {
    let active = match s.active(slot) {
        Ok(r) => Some(r),
        Err(Error::Key(KeyError::NotFound)) => None,
        Err(e) => {
            return Err(Failure {
                check: "active returns a record or NotFound",
                error: Some(e),
            });
        }
    };
    let pending = ok(s.pending(slot), "pending succeeds")?;
    let previous = ok(s.previous(slot), "previous succeeds")?;
    Ok([active, pending, previous])
}

/// Compares the records byte for byte.
fn expect_state<S: KeyStore + ?Sized>(
    s: &S,
    slot: &KeySlot,
    want: [Option<&PackagedRecord>; 3],
    check: &'static str,
) -> Outcome {
    let got = state(s, slot)?;
    let same = got
        .iter()
        .zip(want)
        .all(|(g, w)| g.as_ref().map(PackagedRecord::as_bytes) == w.map(PackagedRecord::as_bytes));
    ensure(same, check)
}

fn devices<S: KeyStore + ?Sized>(s: &S) -> Outcome<heapless::Vec<SystemTitle, MAX>> {
    let mut out = heapless::Vec::new();
    let mut overflow = false;
    ok(
        s.for_each_device(&mut |d| overflow |= out.push(d).is_err()),
        "for_each_device succeeds",
    )?;
    ensure(
        !overflow,
        "for_each_device lists no more devices than stored",
    )?;
    Ok(out)
}

fn slots_of<S: KeyStore + ?Sized>(
    s: &S,
    device: &SystemTitle,
) -> Outcome<heapless::Vec<KeySlot, MAX>> {
    let mut out = heapless::Vec::new();
    let mut overflow = false;
    ok(
        s.for_each_slot(device, &mut |k| overflow |= out.push(k).is_err()),
        "for_each_slot succeeds",
    )?;
    ensure(!overflow, "for_each_slot lists no more slots than stored")?;
    ensure(
        out.iter().all(|k| k.device == *device),
        "for_each_slot lists only slots of the device asked for",
    )?;
    Ok(out)
}

fn expect_devices<S: KeyStore + ?Sized>(
    s: &S,
    want: &[SystemTitle],
    check: &'static str,
) -> Outcome {
    ensure(devices(s)?.as_slice() == want, check)
}

fn expect_slots<S: KeyStore + ?Sized>(
    s: &S,
    device: &SystemTitle,
    want: &[KeySlot],
    check: &'static str,
) -> Outcome {
    ensure(slots_of(s, device)?.as_slice() == want, check)
}

/// Everything observable about the fixture's slots and the listings.
#[derive(PartialEq, Eq)]
struct Snapshot {
    states: [SlotState; WATCHED.len()],
    devices: heapless::Vec<SystemTitle, MAX>,
    slots: heapless::Vec<KeySlot, MAX>,
}

fn snapshot<S: KeyStore + ?Sized>(s: &S) -> Outcome<Snapshot> {
    let mut states = [[None; 3]; WATCHED.len()];
    for (st, slot) in states.iter_mut().zip(&WATCHED) {
        *st = state(s, slot)?;
    }
    let devices = devices(s)?;
    let mut slots = heapless::Vec::new();
    for d in &devices {
        for k in slots_of(s, d)? {
            ensure(
                slots.push(k).is_ok(),
                "the store lists no more slots than stored",
            )?;
        }
    }
    Ok(Snapshot {
        states,
        devices,
        slots,
    })
}

fn unchanged<S: KeyStore + ?Sized>(s: &S, before: &Snapshot, check: &'static str) -> Outcome {
    ensure(snapshot(s)? == *before, check)
}

/// Whether every watched slot other than `target` is as in `before`.
fn others_unchanged(before: &Snapshot, after: &Snapshot, target: &KeySlot) -> bool {
    WATCHED
        .iter()
        .zip(before.states.iter().zip(&after.states))
        .all(|(slot, (b, a))| slot == target || a == b)
}

/// Slots `from..to` of [`numbered`] still hold their generation-0 record.
fn all_there<S: KeyStore + ?Sized>(s: &S, from: usize, to: usize, check: &'static str) -> Outcome {
    for i in from..to {
        let slot = numbered(i)?;
        let r = record(&slot, 0, seed(i))?;
        expect_state(s, &slot, [Some(&r), None, None], check)?;
    }
    Ok(())
}

fn count_slots<S: KeyStore + ?Sized>(s: &S) -> Outcome<usize> {
    let mut n = 0usize;
    let mut inner = Ok(());
    ok(
        s.for_each_device(&mut |d| {
            if inner.is_ok() {
                inner = s.for_each_slot(&d, &mut |_| n = n.saturating_add(1));
            }
        }),
        "for_each_device succeeds",
    )?;
    ok(inner, "for_each_slot succeeds")?;
    Ok(n)
}

// ---------------------------------------------------------------------------
// The checks

fn empty_store<S: KeyStore + ?Sized>(s: &mut S) -> Outcome {
    for slot in &WATCHED {
        refused(
            s.active(slot),
            KeyError::NotFound,
            "active of an empty slot is NotFound",
        )?;
        ensure(
            ok(s.pending(slot), "pending of an empty slot")?.is_none(),
            "an empty slot has no pending record",
        )?;
        ensure(
            ok(s.previous(slot), "previous of an empty slot")?.is_none(),
            "an empty slot has no previous record",
        )?;
        refused(
            s.activate(slot, 0),
            KeyError::NoPending,
            "activate on an empty slot is NoPending",
        )?;
        ok(
            s.discard_pending(slot),
            "discard_pending on an empty slot is Ok",
        )?;
        ok(
            s.retire_previous(slot),
            "retire_previous on an empty slot is Ok",
        )?;
    }
    expect_devices(s, &[], "an empty store lists no device")?;
    expect_slots(s, &DEV_A, &[], "an empty store lists no slot")?;
    for slot in &WATCHED {
        refused(
            s.active(slot),
            KeyError::NotFound,
            "operations on empty slots store nothing",
        )?;
    }
    Ok(())
}

fn initial_round_trip<S: KeyStore + ?Sized>(s: &mut S) -> Outcome {
    let r0 = record(&A_MK, 0, 1)?;
    ok(s.put_initial(&r0), "put_initial into an empty slot")?;
    expect_state(
        s,
        &A_MK,
        [Some(&r0), None, None],
        "put_initial then active returns the record byte for byte",
    )?;
    let r7 = record(&A_AK_DC, 7, 2)?;
    ok(
        s.put_initial(&r7),
        "put_initial of a generation other than 0",
    )?;
    expect_state(
        s,
        &A_AK_DC,
        [Some(&r7), None, None],
        "put_initial accepts any generation",
    )?;
    expect_devices(s, &[DEV_A], "a device with slots is listed")?;
    expect_slots(s, &DEV_A, &[A_MK, A_AK_DC], "put_initial creates the slot")?;

    let before = snapshot(s)?;
    refused(
        s.put_initial(&r0),
        KeyError::StaleGeneration,
        "put_initial of the same record again is StaleGeneration",
    )?;
    unchanged(s, &before, "a refused put_initial changes nothing")?;
    refused(
        s.put_initial(&record(&A_MK, 5, 3)?),
        KeyError::StaleGeneration,
        "put_initial over an active record (newer generation) is StaleGeneration",
    )?;
    unchanged(s, &before, "a refused put_initial changes nothing")?;
    refused(
        s.put_initial(&record(&A_AK_DC, 0, 3)?),
        KeyError::StaleGeneration,
        "put_initial over an active record (older generation) is StaleGeneration",
    )?;
    unchanged(s, &before, "a refused put_initial changes nothing")
}

fn pending_waits_for_activate<S: KeyStore + ?Sized>(s: &mut S) -> Outcome {
    let slot = A_GUEK_DC;
    let r0 = record(&slot, 0, 1)?;
    let p1 = record(&slot, 1, 2)?;
    let p1b = record(&slot, 1, 3)?;
    let p3 = record(&slot, 3, 4)?;
    let p2 = record(&slot, 2, 5)?;
    ok(s.put_initial(&r0), "put_initial")?;
    ok(s.put_pending(&p1), "put_pending of a newer generation")?;
    expect_state(
        s,
        &slot,
        [Some(&r0), Some(&p1), None],
        "put_pending leaves the active record in place",
    )?;
    ok(s.put_pending(&p1b), "put_pending over a pending record")?;
    expect_state(
        s,
        &slot,
        [Some(&r0), Some(&p1b), None],
        "put_pending replaces a pending record of the same generation",
    )?;
    ok(
        s.put_pending(&p3),
        "put_pending of a newer pending generation",
    )?;
    expect_state(
        s,
        &slot,
        [Some(&r0), Some(&p3), None],
        "put_pending replaces a pending record with a newer one",
    )?;
    ok(
        s.put_pending(&p2),
        "put_pending of an older pending generation",
    )?;
    expect_state(
        s,
        &slot,
        [Some(&r0), Some(&p2), None],
        "put_pending replaces a pending record with any generation newer than the active one",
    )?;

    // A slot can start with a pending record.
    let q = record(&A_GBEK_FW, 0, 6)?;
    ok(s.put_pending(&q), "put_pending into an empty slot")?;
    expect_state(
        s,
        &A_GBEK_FW,
        [None, Some(&q), None],
        "a slot with only a pending record has no active record",
    )?;
    expect_slots(
        s,
        &DEV_A,
        &[A_GUEK_DC, A_GBEK_FW],
        "a slot holding only a pending record is listed",
    )?;
    let before = snapshot(s)?;
    refused(
        s.put_initial(&record(&A_GBEK_FW, 1, 7)?),
        KeyError::StaleGeneration,
        "put_initial into a slot with a pending record is StaleGeneration",
    )?;
    unchanged(s, &before, "a refused put_initial changes nothing")?;
    ok(s.activate(&A_GBEK_FW, 0), "activate of a pending-only slot")?;
    expect_state(
        s,
        &A_GBEK_FW,
        [Some(&q), None, None],
        "activating the first record of a slot leaves no previous record",
    )
}

fn stale_generations<S: KeyStore + ?Sized>(s: &mut S) -> Outcome {
    let slot = B_MK;
    ok(s.put_initial(&record(&slot, 5, 1)?), "put_initial")?;
    let before = snapshot(s)?;
    for g in [5, 4, 0] {
        refused(
            s.put_pending(&record(&slot, g, 2)?),
            KeyError::StaleGeneration,
            "put_pending of a generation not newer than the active one is StaleGeneration",
        )?;
        unchanged(s, &before, "a refused put_pending changes nothing")?;
    }
    ok(s.put_pending(&record(&slot, 6, 3)?), "put_pending")?;
    let before = snapshot(s)?;
    refused(
        s.put_pending(&record(&slot, 5, 4)?),
        KeyError::StaleGeneration,
        "a stale put_pending is refused while another record is pending",
    )?;
    unchanged(
        s,
        &before,
        "a refused put_pending does not displace the pending record",
    )?;
    ok(s.activate(&slot, 6), "activate")?;
    let before = snapshot(s)?;
    for g in [6, 5] {
        refused(
            s.put_pending(&record(&slot, g, 5)?),
            KeyError::StaleGeneration,
            "after activation, the activated and previous generations are stale",
        )?;
        unchanged(s, &before, "a refused put_pending changes nothing")?;
    }
    let last = record(&slot, u32::MAX, 6)?;
    ok(s.put_pending(&last), "put_pending of generation u32::MAX")?;
    ok(
        s.activate(&slot, u32::MAX),
        "activate of generation u32::MAX",
    )?;
    let before = snapshot(s)?;
    refused(
        s.put_pending(&record(&slot, u32::MAX, 7)?),
        KeyError::StaleGeneration,
        "nothing is newer than generation u32::MAX",
    )?;
    unchanged(s, &before, "a refused put_pending changes nothing")
}

fn activation<S: KeyStore + ?Sized>(s: &mut S) -> Outcome {
    let slot = A_AK_MGMT;
    let r0 = record(&slot, 0, 1)?;
    let r1 = record(&slot, 1, 2)?;
    let r2 = record(&slot, 2, 3)?;
    ok(s.put_initial(&r0), "put_initial")?;
    ok(s.put_pending(&r1), "put_pending")?;
    let before = snapshot(s)?;
    refused(
        s.activate(&slot, 2),
        KeyError::NoPending,
        "activate of a generation that is not pending is NoPending",
    )?;
    unchanged(s, &before, "a refused activate changes nothing")?;
    refused(
        s.activate(&A_DK_MGMT, 1),
        KeyError::NoPending,
        "activate cannot reach the pending record of another slot",
    )?;
    unchanged(s, &before, "a refused activate changes nothing")?;
    ok(
        s.activate(&slot, 0),
        "activate of the active generation is Ok while another is pending",
    )?;
    unchanged(
        s,
        &before,
        "activate of the active generation changes nothing",
    )?;

    ok(s.activate(&slot, 1), "activate of the pending generation")?;
    expect_state(
        s,
        &slot,
        [Some(&r1), None, Some(&r0)],
        "activate makes the pending record active and the old active previous",
    )?;
    let before = snapshot(s)?;
    ok(s.activate(&slot, 1), "activate again (retry) is Ok")?;
    unchanged(s, &before, "activate again changes nothing")?;
    refused(
        s.activate(&slot, 0),
        KeyError::NoPending,
        "the previous generation cannot be activated again",
    )?;
    unchanged(s, &before, "a refused activate changes nothing")?;

    ok(s.put_pending(&r2), "put_pending of the next generation")?;
    ok(
        s.activate(&slot, 1),
        "a retried activate with a newer record pending",
    )?;
    expect_state(
        s,
        &slot,
        [Some(&r1), Some(&r2), Some(&r0)],
        "a retried activate leaves the newer pending record pending",
    )?;
    ok(s.activate(&slot, 2), "a second activation")?;
    expect_state(
        s,
        &slot,
        [Some(&r2), None, Some(&r1)],
        "a second activation supersedes the previous record",
    )
}

fn discard<S: KeyStore + ?Sized>(s: &mut S) -> Outcome {
    let slot = C_GUEK_EDC;
    let r0 = record(&slot, 0, 1)?;
    let r1 = record(&slot, 1, 2)?;
    let r2 = record(&slot, 2, 3)?;
    ok(s.put_initial(&r0), "put_initial")?;
    ok(s.put_pending(&r1), "put_pending")?;
    ok(s.discard_pending(&slot), "discard_pending")?;
    expect_state(
        s,
        &slot,
        [Some(&r0), None, None],
        "discard_pending drops the pending record and keeps the active one",
    )?;
    let before = snapshot(s)?;
    ok(
        s.discard_pending(&slot),
        "discard_pending with nothing pending is Ok",
    )?;
    unchanged(
        s,
        &before,
        "discard_pending with nothing pending changes nothing",
    )?;
    refused(
        s.activate(&slot, 1),
        KeyError::NoPending,
        "a discarded record cannot be activated",
    )?;
    unchanged(s, &before, "a refused activate changes nothing")?;

    ok(s.put_pending(&r1), "put_pending")?;
    ok(s.activate(&slot, 1), "activate")?;
    ok(s.put_pending(&r2), "put_pending")?;
    ok(s.discard_pending(&slot), "discard_pending")?;
    expect_state(
        s,
        &slot,
        [Some(&r1), None, Some(&r0)],
        "discard_pending keeps the active and previous records",
    )?;

    // A slot, and a device, that held only a pending record disappear.
    ok(
        s.put_pending(&record(&C_MK, 0, 4)?),
        "put_pending into an empty slot",
    )?;
    expect_slots(
        s,
        &DEV_C,
        &[C_MK, C_GUEK_EDC],
        "a pending-only slot is listed",
    )?;
    ok(
        s.discard_pending(&C_MK),
        "discard_pending of a pending-only slot",
    )?;
    expect_slots(
        s,
        &DEV_C,
        &[C_GUEK_EDC],
        "a slot whose only record is discarded is not listed",
    )?;
    ok(
        s.put_pending(&record(&B_AK_DC, 3, 5)?),
        "put_pending into an empty slot",
    )?;
    expect_devices(
        s,
        &[DEV_B, DEV_C],
        "a device with a pending-only slot is listed",
    )?;
    ok(
        s.discard_pending(&B_AK_DC),
        "discard_pending of a pending-only slot",
    )?;
    expect_devices(
        s,
        &[DEV_C],
        "a device whose only record is discarded is not listed",
    )?;
    expect_slots(
        s,
        &DEV_B,
        &[],
        "a device whose only record is discarded has no slots",
    )
}

fn retire<S: KeyStore + ?Sized>(s: &mut S) -> Outcome {
    let slot = A_MK;
    let r0 = record(&slot, 0, 1)?;
    let r1 = record(&slot, 1, 2)?;
    let r2 = record(&slot, 2, 3)?;
    ok(s.put_initial(&r0), "put_initial")?;
    ok(
        s.retire_previous(&slot),
        "retire_previous without a previous record",
    )?;
    expect_state(
        s,
        &slot,
        [Some(&r0), None, None],
        "retire_previous without a previous record keeps the active record",
    )?;
    ok(s.put_pending(&r1), "put_pending")?;
    ok(s.activate(&slot, 1), "activate")?;
    ok(s.put_pending(&r2), "put_pending")?;
    ok(s.retire_previous(&slot), "retire_previous")?;
    expect_state(
        s,
        &slot,
        [Some(&r1), Some(&r2), None],
        "retire_previous removes only the previous record",
    )?;
    let before = snapshot(s)?;
    ok(s.retire_previous(&slot), "retire_previous again is Ok")?;
    unchanged(s, &before, "retire_previous again changes nothing")?;
    refused(
        s.activate(&slot, 0),
        KeyError::NoPending,
        "a retired generation cannot be activated",
    )?;
    unchanged(s, &before, "a refused activate changes nothing")?;
    ok(s.activate(&slot, 2), "activate")?;
    expect_state(
        s,
        &slot,
        [Some(&r2), None, Some(&r1)],
        "activate after retire_previous",
    )
}

fn independence<S: KeyStore + ?Sized>(s: &mut S) -> Outcome {
    for (slot, i) in WATCHED.iter().zip(0u8..) {
        ok(s.put_initial(&record(slot, 0, i)?), "put_initial")?;
    }
    for (i, target) in WATCHED.iter().enumerate() {
        let p = record(target, 1, 0xEE)?;
        let before = snapshot(s)?;
        ok(s.put_pending(&p), "put_pending")?;
        let mid = snapshot(s)?;
        ensure(
            others_unchanged(&before, &mid, target),
            "put_pending changes no other slot (other client, role or device)",
        )?;
        if let Some(next) = WATCHED.get(i.saturating_add(1)) {
            // Same generation number, other slot: not pending there.
            refused(
                s.activate(next, 1),
                KeyError::NoPending,
                "activate cannot reach the pending record of another slot",
            )?;
            unchanged(s, &mid, "a refused activate changes nothing")?;
        }
        ok(s.activate(target, 1), "activate")?;
        ok(s.retire_previous(target), "retire_previous")?;
        ok(s.put_pending(&record(target, 2, 0xEF)?), "put_pending")?;
        ok(s.discard_pending(target), "discard_pending")?;
        let after = snapshot(s)?;
        ensure(
            others_unchanged(&before, &after, target),
            "rotating one slot changes no other slot (other client, role or device)",
        )?;
        expect_state(
            s,
            target,
            [Some(&p), None, None],
            "each slot keeps its own records",
        )?;
        ensure(
            before.devices == after.devices && before.slots == after.slots,
            "rotating a slot changes no listing",
        )?;
    }
    Ok(())
}

fn listing<S: KeyStore + ?Sized>(s: &mut S) -> Outcome {
    // Scrambled insertion order; one slot holds only a pending record.
    for (slot, i) in [C_GUEK_EDC, B_MK, A_MK, C_MK, A_AK_DC, B_AK_DC, A_GUEK_DC]
        .iter()
        .zip(1u8..)
    {
        ok(s.put_initial(&record(slot, 0, i)?), "put_initial")?;
    }
    ok(s.put_pending(&record(&A_GBEK_FW, 1, 9)?), "put_pending")?;
    expect_devices(
        s,
        &[DEV_A, DEV_B, DEV_C],
        "for_each_device lists each device once, in ascending order",
    )?;
    expect_slots(
        s,
        &DEV_A,
        &[A_MK, A_AK_DC, A_GUEK_DC, A_GBEK_FW],
        "for_each_slot lists each slot of the device once, in ascending order",
    )?;
    expect_slots(
        s,
        &DEV_B,
        &[B_MK, B_AK_DC],
        "for_each_slot lists each slot of the device once, in ascending order",
    )?;
    expect_slots(
        s,
        &DEV_C,
        &[C_MK, C_GUEK_EDC],
        "for_each_slot lists each slot of the device once, in ascending order",
    )?;
    expect_slots(
        s,
        &DEV_UNKNOWN,
        &[],
        "for_each_slot of a device without slots lists nothing",
    )?;
    ensure(count_slots(s)? == 8, "the store lists every slot it holds")?;
    let before = snapshot(s)?;
    ok(s.activate(&A_GBEK_FW, 1), "activate")?;
    ok(s.retire_previous(&A_MK), "retire_previous")?;
    ensure(
        snapshot(s)?.slots == before.slots,
        "activate and retire_previous keep the listing",
    )
}

/// `activate_all` activates every slot, or none when one cannot be.
fn activation_together<S: KeyStore + ?Sized>(s: &mut S) -> Outcome {
    let (ak, guek, mk) = (A_AK_DC, A_GUEK_DC, A_MK);
    for (slot, seed) in [(ak, 1), (guek, 2), (mk, 3)] {
        ok(s.put_initial(&record(&slot, 0, seed)?), "put_initial")?;
    }
    ok(s.put_pending(&record(&ak, 1, 4)?), "put_pending")?;
    ok(s.put_pending(&record(&guek, 1, 5)?), "put_pending")?;
    let before = snapshot(s)?;
    refused(
        s.activate_all(&[(ak, 1), (guek, 1), (mk, 1)]),
        KeyError::NoPending,
        "activate_all with one slot lacking the pending generation is NoPending",
    )?;
    unchanged(s, &before, "a refused activate_all changes no slot")?;
    refused(
        s.activate_all(&[(ak, 1), (guek, 2)]),
        KeyError::NoPending,
        "activate_all of another generation than the pending one is NoPending",
    )?;
    unchanged(s, &before, "a refused activate_all changes no slot")?;
    ok(
        s.activate_all(&[(ak, 1), (guek, 1)]),
        "activate_all of two slots",
    )?;
    expect_state(
        s,
        &ak,
        [Some(&record(&ak, 1, 4)?), None, Some(&record(&ak, 0, 1)?)],
        "activate_all activates the first slot",
    )?;
    expect_state(
        s,
        &guek,
        [
            Some(&record(&guek, 1, 5)?),
            None,
            Some(&record(&guek, 0, 2)?),
        ],
        "activate_all activates the second slot",
    )?;
    let after = snapshot(s)?;
    ok(
        s.activate_all(&[(ak, 1), (guek, 1)]),
        "activate_all again (retry) is Ok",
    )?;
    unchanged(s, &after, "activate_all again changes nothing")
}
