//! `HeaplessKeyStore` (bounded and effectively unbounded) and
//! `MemoryKeyStore` against a plain model of the `KeyStore` contract, over
//! random sequences of operations on a small pool of slots, so that
//! generations collide, slots fill up and empty again, and a bounded store
//! runs full. After every operation the result and everything observable
//! (active, pending and previous records of every slot; both listings) must
//! match the model.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] fns: a panic is a test failure"
)]

extern crate alloc;

use alloc::collections::BTreeMap;

use dlms_sec::SystemTitle;
use dlms_sec::error::{Error, KeyError};
use dlms_sec::key::package::{PackagedRecord, Packager};
use dlms_sec::key::{
    AuthenticationKey, DcoKey, GlobalUnicastEncryptionKey, KeyRole, MasterKey, SharedKey,
};
use dlms_sec::keystore::{HeaplessKeyStore, KeySlot, KeyStore};
use dlms_sec::types::Client;
use dlms_sec_services::MemoryKeyStore;
use proptest::prelude::*;

/// Titles whose byte order differs from the order of their last octet.
const DEVICES: [[u8; 8]; 3] = [
    [0x4D, 0x4D, 0x4D, 0, 0, 0, 0x01, 0x00],
    [0x4D, 0x4D, 0x4D, 0, 0, 0, 0x00, 0xFF],
    [0x4D, 0x4D, 0x4D, 0, 0, 1, 0x00, 0x00],
];

/// Nine slots: every device has an MK, a Data Collection AK and a
/// Management GUEK.
fn slot(i: usize) -> KeySlot {
    let device = SystemTitle::new(DEVICES[i / 3]);
    let (client, role) = [
        (None, KeyRole::Master),
        (Some(Client::DataCollection), KeyRole::Authentication),
        (Some(Client::Management), KeyRole::GlobalUnicastEncryption),
    ][i % 3];
    KeySlot {
        device,
        client,
        role,
    }
}
const SLOTS: usize = 9;

fn record(slot: &KeySlot, generation: u32, seed: u8) -> PackagedRecord {
    let id = slot.id(generation);
    let key = [seed; 16];
    let dco = Packager::new(&DcoKey::from_bytes([0xD0; 16]));
    let shared = Packager::new(&SharedKey::from_bytes([0x5A; 16]));
    match slot.role {
        KeyRole::Master => *dco
            .package(&MasterKey::from_bytes(key), id)
            .unwrap()
            .record(),
        KeyRole::Authentication => *dco
            .package(&AuthenticationKey::from_bytes(key), id)
            .unwrap()
            .record(),
        _ => *shared
            .package(&GlobalUnicastEncryptionKey::from_bytes(key), id)
            .unwrap()
            .record(),
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    PutPending {
        slot: usize,
        generation: u32,
        seed: u8,
    },
    PutInitial {
        slot: usize,
        generation: u32,
        seed: u8,
    },
    Activate {
        slot: usize,
        generation: u32,
    },
    DiscardPending {
        slot: usize,
    },
    RetirePrevious {
        slot: usize,
    },
}

fn generation() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 0u32..6, 1 => 0xFFFF_FFFEu32..=u32::MAX]
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SLOTS;
    prop_oneof![
        4 => (s.clone(), generation(), 0u8..3)
            .prop_map(|(slot, generation, seed)| Op::PutPending { slot, generation, seed }),
        3 => (s.clone(), generation(), 0u8..3)
            .prop_map(|(slot, generation, seed)| Op::PutInitial { slot, generation, seed }),
        4 => (s.clone(), generation()).prop_map(|(slot, generation)| Op::Activate { slot, generation }),
        1 => s.clone().prop_map(|slot| Op::DiscardPending { slot }),
        1 => s.prop_map(|slot| Op::RetirePrevious { slot }),
    ]
}

/// Active, pending, previous.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Records {
    active: Option<PackagedRecord>,
    pending: Option<PackagedRecord>,
    previous: Option<PackagedRecord>,
}

/// The contract, written as plainly as possible.
#[derive(Debug, Default)]
struct Model {
    /// Only slots holding at least one record.
    slots: BTreeMap<KeySlot, Records>,
    capacity: Option<usize>,
}

impl Model {
    fn bounded(capacity: usize) -> Self {
        Self {
            slots: BTreeMap::new(),
            capacity: Some(capacity),
        }
    }

    fn apply(&mut self, op: Op) -> Result<(), KeyError> {
        let target = match op {
            Op::PutPending { slot: i, .. }
            | Op::PutInitial { slot: i, .. }
            | Op::Activate { slot: i, .. }
            | Op::DiscardPending { slot: i }
            | Op::RetirePrevious { slot: i } => slot(i),
        };
        let exists = self.slots.contains_key(&target);
        let mut r = self.slots.get(&target).copied().unwrap_or_default();
        match op {
            Op::PutPending {
                generation, seed, ..
            } => {
                if r.active.is_some_and(|a| generation <= a.generation()) {
                    return Err(KeyError::StaleGeneration);
                }
                r.pending = Some(record(&target, generation, seed));
            }
            Op::PutInitial {
                generation, seed, ..
            } => {
                if r.active.is_some() || r.pending.is_some() {
                    return Err(KeyError::StaleGeneration);
                }
                r.active = Some(record(&target, generation, seed));
            }
            Op::Activate { generation, .. } => {
                if r.pending.is_some_and(|p| p.generation() == generation) {
                    r.previous = r.active;
                    r.active = r.pending.take();
                } else if r.active.is_none_or(|a| a.generation() != generation) {
                    return Err(KeyError::NoPending);
                }
            }
            Op::DiscardPending { .. } => r.pending = None,
            Op::RetirePrevious { .. } => r.previous = None,
        }
        if r == Records::default() {
            self.slots.remove(&target);
        } else {
            if !exists && self.capacity.is_some_and(|c| self.slots.len() >= c) {
                return Err(KeyError::StoreFull);
            }
            self.slots.insert(target, r);
        }
        Ok(())
    }
}

fn apply<S: KeyStore>(store: &mut S, op: Op) -> Result<(), Error> {
    match op {
        Op::PutPending {
            slot: i,
            generation,
            seed,
        } => store.put_pending(&record(&slot(i), generation, seed)),
        Op::PutInitial {
            slot: i,
            generation,
            seed,
        } => store.put_initial(&record(&slot(i), generation, seed)),
        Op::Activate {
            slot: i,
            generation,
        } => store.activate(&slot(i), generation),
        Op::DiscardPending { slot: i } => store.discard_pending(&slot(i)),
        Op::RetirePrevious { slot: i } => store.retire_previous(&slot(i)),
    }
}

/// Everything observable in `store` equals `model`.
fn matches<S: KeyStore>(store: &S, model: &Model) -> Result<(), TestCaseError> {
    for i in 0..SLOTS {
        let s = slot(i);
        let want = model.slots.get(&s).copied().unwrap_or_default();
        let active = match store.active(&s) {
            Ok(r) => Some(r),
            Err(Error::Key(KeyError::NotFound)) => None,
            Err(e) => return Err(TestCaseError::fail(format!("active: {e:?}"))),
        };
        let got = Records {
            active,
            pending: store.pending(&s).unwrap(),
            previous: store.previous(&s).unwrap(),
        };
        prop_assert_eq!(got, want, "slot {}", s);
    }
    let mut devices = Vec::new();
    store.for_each_device(&mut |d| devices.push(d)).unwrap();
    let mut want_devices: Vec<SystemTitle> = model.slots.keys().map(|s| s.device).collect();
    want_devices.dedup();
    prop_assert_eq!(&devices, &want_devices);
    for d in DEVICES.map(SystemTitle::new) {
        let mut slots = Vec::new();
        store.for_each_slot(&d, &mut |s| slots.push(s)).unwrap();
        let want: Vec<KeySlot> = model
            .slots
            .keys()
            .filter(|s| s.device == d)
            .copied()
            .collect();
        prop_assert_eq!(slots, want);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn stores_follow_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut small = HeaplessKeyStore::<4>::new();
        let mut small_model = Model::bounded(4);
        let mut large = HeaplessKeyStore::<64>::new();
        let mut memory = MemoryKeyStore::new();
        let mut model = Model::default();
        for op in ops {
            let want = model.apply(op).map_err(Error::Key);
            prop_assert_eq!(apply(&mut large, op), want, "{:?}", op);
            prop_assert_eq!(apply(&mut memory, op), want, "{:?}", op);
            matches(&large, &model)?;
            matches(&memory, &model)?;
            prop_assert_eq!(memory.len(), model.slots.len());
            prop_assert_eq!(large.len(), model.slots.len());

            let want = small_model.apply(op).map_err(Error::Key);
            prop_assert_eq!(apply(&mut small, op), want, "{:?} (capacity 4)", op);
            matches(&small, &small_model)?;
            prop_assert!(small.len() <= 4);
        }
    }

    /// Through the `&mut S` forwarding impl, the same as directly.
    #[test]
    fn forwarding_is_transparent(ops in proptest::collection::vec(op(), 1..30)) {
        let mut direct = MemoryKeyStore::new();
        let mut backing = MemoryKeyStore::new();
        let mut model = Model::default();
        {
            let mut forwarded = &mut backing;
            for op in ops {
                let want = model.apply(op).map_err(Error::Key);
                prop_assert_eq!(apply(&mut direct, op), want);
                prop_assert_eq!(apply(&mut forwarded, op), want);
                matches(&forwarded, &model)?;
            }
        }
        matches(&backing, &model)?;
        matches(&direct, &model)?;
    }
}
