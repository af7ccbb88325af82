//! Where packaged keys are kept: the [`KeyStore`] plug point (R-14, R-15,
//! R-16, R-17, R-18, R-19), a fixed-capacity [`HeaplessKeyStore`] and, with
//! the `std` feature, an unbounded `MemoryKeyStore`.
//!
//! # Model
//!
//! A store is a set of [`KeySlot`]s, one per (device, client, role). A slot
//! holds up to three [`PackagedRecord`]s, each with its own generation
//! ([`PackagedRecord::generation`]):
//!
//! * **active**: the key the meter uses now;
//! * **pending**: a replacement on its way to the meter (key_transfer sent,
//!   not yet confirmed);
//! * **previous**: the key the last activation superseded, kept until the
//!   caller knows nothing still needs it ([`KeyStore::retire_previous`]).
//!
//! A slot exists while it holds at least one record; the listing functions
//! name exactly those slots.
//!
//! # What every store guarantees
//!
//! These are the documented behaviours; `conformance::run` (feature
//! `conformance`) checks each of them, and a third-party store (a SQL
//! table, flash pages) should pass it.
//!
//! * **Packaged records only** (R-15). Every method takes or returns
//!   [`PackagedRecord`]s, which are ciphertext under an HSM KEK; no method
//!   can be given or can return a clear key. Records come back byte for
//!   byte as they were stored.
//! * **Atomic replacement** (R-14). [`KeyStore::put_pending`] never touches
//!   the active record: until [`KeyStore::activate`], the old key stays
//!   active. `activate` moves pending to active and the old active to
//!   previous in one step (one transaction, for a store with a backend): a
//!   reader sees either the whole old state or the whole new one. Activating the generation that is already active is a
//!   no-op that succeeds, so a retry after a lost response is safe.
//! * **Generations only move forward.** A pending record must be newer
//!   than the slot's active record ([`KeyError::StaleGeneration`]), so an
//!   old record offered again can never roll a slot back.
//! * **A failed operation changes nothing.** Every error leaves every slot
//!   exactly as it was; in particular no stored record is lost.
//! * **Listing without allocation.** [`KeyStore::for_each_device`] and
//!   [`KeyStore::for_each_slot`] call back once per device or slot, in
//!   ascending order, so a no_std caller can walk a store (a re-key
//!   campaign, R-10) without a buffer.
//!
//! # What no store offers, on purpose
//!
//! * **No clear-key API** (R-15). Packaging and unpackaging happen in
//!   [`crate::package`], at the holder of the KEK (an HSM, R-07); a store
//!   never holds the means to read what it stores.
//! * **No export, backup or archive** (R-18). There is no function that
//!   hands out the store's contents in bulk or serialises it, and the stores
//!   here are not `Clone`. A backup would be a copy of packaged keys that
//!   outlives their replacement, which the policy forbids. A lost or
//!   corrupted key is recovered by generating and installing a new one
//!   (R-17), not by restoring an old one.
//! * **No revoke or destroy** (R-16, R-19). An active key can only be
//!   *replaced*, by activating a newer generation. The only removals are
//!   [`KeyStore::retire_previous`] (a key already replaced) and
//!   [`KeyStore::discard_pending`] (a replacement that never became active).
//!
//! Packaged records are not secret in the way clear keys are (they are
//! ciphertext under a KEK the store never sees), so the stores here do not
//! zeroize the memory of records they drop.
//!
//! No key is ever removed while active, revoked, destroyed or exported
//! (R-16, R-18, R-19): there is no such call to make.
//!
//! ```compile_fail
//! use dlms_sec::keystore::{HeaplessKeyStore, KeySlot, KeyStore};
//! fn destroy(store: &mut HeaplessKeyStore<4>, slot: &KeySlot) {
//!     store.remove(slot);
//! }
//! ```
//!
//! ```compile_fail
//! use dlms_sec::keystore::{HeaplessKeyStore, KeyStore};
//! fn backup(store: &HeaplessKeyStore<4>) {
//!     let _ = store.export();
//! }
//! ```

use core::fmt;

use crate::client::Client;
use crate::error::{Error, KeyError, Result};
use crate::key::KeyRole;
use crate::package::{PackagedRecord, RecordId};
use crate::wire::SystemTitle;

#[cfg(any(test, feature = "conformance"))]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;

/// The slot a record lives in: everything in [`RecordId`] except the
/// generation.
///
/// Ordered by device first, so all slots of one device are adjacent in
/// ascending order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeySlot {
    /// The device's system title.
    pub device: SystemTitle,
    /// The client; `None` for the device-wide Master Key.
    pub client: Option<Client>,
    /// The key role.
    pub role: KeyRole,
}

impl KeySlot {
    /// The slot of a record id.
    #[must_use]
    pub const fn of(id: &RecordId) -> Self {
        Self {
            device: id.device,
            client: id.client,
            role: id.role,
        }
    }

    /// The record id of generation `generation` in this slot.
    #[must_use]
    pub const fn id(&self, generation: u32) -> RecordId {
        RecordId {
            device: self.device,
            client: self.client,
            role: self.role,
            generation,
        }
    }

    /// The smallest slot of `device` in the derived order (`client: None`
    /// sorts first, and `Master` is the first role).
    #[cfg(feature = "std")]
    const fn first_of(device: SystemTitle) -> Self {
        Self {
            device,
            client: None,
            role: KeyRole::Master,
        }
    }
}

/// Backing store for packaged keys: RAM, flash, a database.
///
/// Stores packaged records only, never clear keys (R-15). Each slot holds
/// at most an active, a pending and a previous (superseded) generation. See
/// the [module docs](self) for the guarantees every implementation makes,
/// and `conformance::run` (feature `conformance`) for the suite that checks
/// them.
///
/// Every method may also fail with an implementation's own backend error
/// (for example [`KeyError::Provider`]); a failed call changes nothing.
pub trait KeyStore {
    /// Stores `record` as the pending generation of its slot, replacing any
    /// pending record already there. The active record is not touched.
    ///
    /// A slot without an active record accepts any generation (a key that
    /// is introduced by key_transfer rather than at manufacture, such as a
    /// broadcast key).
    ///
    /// # Errors
    /// [`KeyError::StaleGeneration`] if the record's generation is not
    /// newer than the slot's active one; [`KeyError::StoreFull`] if the
    /// slot is new and there is no room for it.
    fn put_pending(&mut self, record: &PackagedRecord) -> Result<()>;

    /// Installs a record as active in an empty slot: the commissioning
    /// import of the keys a meter was manufactured with.
    ///
    /// # Errors
    /// [`KeyError::StaleGeneration`] if the slot already holds an active or
    /// a pending record (replace keys with [`Self::put_pending`] and
    /// [`Self::activate`]); [`KeyError::StoreFull`] if there is no room for
    /// a new slot.
    fn put_initial(&mut self, record: &PackagedRecord) -> Result<()>;

    /// Promotes the pending record of `slot` with this `generation` to
    /// active, atomically: the old active record (if any) becomes
    /// `previous`, and the record that was `previous` before is dropped.
    ///
    /// Idempotent: activating the generation that is already active returns
    /// `Ok` and changes nothing, even if a newer record is pending (a retry
    /// after a lost response).
    ///
    /// # Errors
    /// [`KeyError::NoPending`] if there is no pending record with that
    /// generation and it is not the active one; nothing changes.
    fn activate(&mut self, slot: &KeySlot, generation: u32) -> Result<()>;

    /// The active record of `slot`.
    ///
    /// # Errors
    /// [`KeyError::NotFound`] if the slot has no active record.
    fn active(&self, slot: &KeySlot) -> Result<PackagedRecord>;

    /// The pending record of `slot`, if any.
    ///
    /// # Errors
    /// Only an implementation's backend error.
    fn pending(&self, slot: &KeySlot) -> Result<Option<PackagedRecord>>;

    /// The previous (superseded) record of `slot`, if any.
    ///
    /// # Errors
    /// Only an implementation's backend error.
    fn previous(&self, slot: &KeySlot) -> Result<Option<PackagedRecord>>;

    /// Drops the pending record of `slot` (a failed rotation), leaving the
    /// active and previous records untouched. `Ok` if nothing is pending.
    ///
    /// # Errors
    /// Only an implementation's backend error.
    fn discard_pending(&mut self, slot: &KeySlot) -> Result<()>;

    /// Removes the superseded (`previous`) generation of `slot` once it is
    /// no longer needed. `Ok` if there is none.
    ///
    /// There is no API to remove an active key (R-16, R-19: keys are
    /// replaced, never destroyed or revoked).
    ///
    /// # Errors
    /// Only an implementation's backend error.
    fn retire_previous(&mut self, slot: &KeySlot) -> Result<()>;

    /// Calls `f` once per distinct device that has a slot, in ascending
    /// order, without allocating.
    ///
    /// # Errors
    /// Only an implementation's backend error.
    fn for_each_device(&self, f: &mut dyn FnMut(SystemTitle)) -> Result<()>;

    /// Calls `f` once for every slot of `device`, in ascending order.
    ///
    /// # Errors
    /// Only an implementation's backend error.
    fn for_each_slot(&self, device: &SystemTitle, f: &mut dyn FnMut(KeySlot)) -> Result<()>;
}

impl<S: KeyStore + ?Sized> KeyStore for &mut S {
    fn put_pending(&mut self, record: &PackagedRecord) -> Result<()> {
        (**self).put_pending(record)
    }
    fn put_initial(&mut self, record: &PackagedRecord) -> Result<()> {
        (**self).put_initial(record)
    }
    fn activate(&mut self, slot: &KeySlot, generation: u32) -> Result<()> {
        (**self).activate(slot, generation)
    }
    fn active(&self, slot: &KeySlot) -> Result<PackagedRecord> {
        (**self).active(slot)
    }
    fn pending(&self, slot: &KeySlot) -> Result<Option<PackagedRecord>> {
        (**self).pending(slot)
    }
    fn previous(&self, slot: &KeySlot) -> Result<Option<PackagedRecord>> {
        (**self).previous(slot)
    }
    fn discard_pending(&mut self, slot: &KeySlot) -> Result<()> {
        (**self).discard_pending(slot)
    }
    fn retire_previous(&mut self, slot: &KeySlot) -> Result<()> {
        (**self).retire_previous(slot)
    }
    fn for_each_device(&self, f: &mut dyn FnMut(SystemTitle)) -> Result<()> {
        (**self).for_each_device(f)
    }
    fn for_each_slot(&self, device: &SystemTitle, f: &mut dyn FnMut(KeySlot)) -> Result<()> {
        (**self).for_each_slot(device, f)
    }
}

/// The records of one slot, and the rules for changing them.
///
/// Every transition is a pure function from the old state to the new one
/// (or an error), so a store applies it with a single assignment and a
/// failed transition cannot leave anything half done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Generations {
    active: Option<PackagedRecord>,
    pending: Option<PackagedRecord>,
    previous: Option<PackagedRecord>,
}

impl Generations {
    const fn is_empty(&self) -> bool {
        self.active.is_none() && self.pending.is_none() && self.previous.is_none()
    }

    fn put_pending(self, record: PackagedRecord) -> Result<Self> {
        if let Some(active) = self.active
            && record.generation() <= active.generation()
        {
            return Err(KeyError::StaleGeneration.into());
        }
        Ok(Self {
            pending: Some(record),
            ..self
        })
    }

    fn put_initial(self, record: PackagedRecord) -> Result<Self> {
        if self.active.is_some() || self.pending.is_some() {
            return Err(KeyError::StaleGeneration.into());
        }
        Ok(Self {
            active: Some(record),
            ..self
        })
    }

    fn activate(self, generation: u32) -> Result<Self> {
        match (self.pending, self.active) {
            (Some(p), _) if p.generation() == generation => Ok(Self {
                active: Some(p),
                pending: None,
                previous: self.active,
            }),
            (_, Some(a)) if a.generation() == generation => Ok(self),
            _ => Err(KeyError::NoPending.into()),
        }
    }

    const fn discard_pending(self) -> Self {
        Self {
            pending: None,
            ..self
        }
    }

    const fn retire_previous(self) -> Self {
        Self {
            previous: None,
            ..self
        }
    }

    fn active(&self) -> Result<PackagedRecord> {
        self.active.ok_or(Error::Key(KeyError::NotFound))
    }
}

/// A transition applied to one slot.
#[derive(Clone, Copy)]
enum Op<'a> {
    PutPending(&'a PackagedRecord),
    PutInitial(&'a PackagedRecord),
    Activate(u32),
    DiscardPending,
    RetirePrevious,
}

impl Op<'_> {
    fn apply(self, g: Generations) -> Result<Generations> {
        match self {
            Self::PutPending(r) => g.put_pending(*r),
            Self::PutInitial(r) => g.put_initial(*r),
            Self::Activate(generation) => g.activate(generation),
            Self::DiscardPending => Ok(g.discard_pending()),
            Self::RetirePrevious => Ok(g.retire_previous()),
        }
    }
}

/// A fixed-capacity store of up to `N` slots in RAM, for no_std devices
/// and tests. No allocation; `N` slots of three records each (about
/// 140 octets per slot).
///
/// Slots are kept sorted, so lookups are a binary search and listings come
/// out in order. [`KeyError::StoreFull`] is returned only when a *new* slot
/// does not fit: existing slots can always be updated, and a slot whose last
/// record is discarded frees its place.
///
/// ```
/// use dlms_sec::key::{DcoKey, MasterKey};
/// use dlms_sec::keystore::{HeaplessKeyStore, KeySlot, KeyStore};
/// use dlms_sec::package::{Packager, RecordId};
/// use dlms_sec::key::KeyRole;
/// use dlms_sec::SystemTitle;
///
/// # fn main() -> Result<(), dlms_sec::Error> {
/// let dco = Packager::new(&DcoKey::from_bytes([7; 16]));
/// let slot = KeySlot {
///     device: SystemTitle::new(*b"ABC\0\0\0\0\x01"),
///     client: None,
///     role: KeyRole::Master,
/// };
/// let mk0 = dco.package(&MasterKey::from_bytes([1; 16]), slot.id(0))?;
/// let mk1 = dco.package(&MasterKey::from_bytes([2; 16]), slot.id(1))?;
///
/// let mut store = HeaplessKeyStore::<16>::new();
/// store.put_initial(mk0.record())?;
/// store.put_pending(mk1.record())?;
/// // ... key_transfer of mk1, wrapped under mk0; the meter accepts it ...
/// store.activate(&slot, 1)?;
/// assert_eq!(store.active(&slot)?, *mk1.record());
/// assert_eq!(store.previous(&slot)?, Some(*mk0.record()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct HeaplessKeyStore<const N: usize> {
    /// Sorted by slot, each slot at most once, no empty `Generations`.
    slots: heapless::Vec<(KeySlot, Generations), N>,
}

impl<const N: usize> HeaplessKeyStore<N> {
    /// An empty store.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            slots: heapless::Vec::new(),
        }
    }

    /// The number of slots in use.
    #[must_use]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no slot is in use.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The number of slots the store can hold.
    #[must_use]
    pub const fn capacity(&self) -> usize {
        N
    }

    fn find(&self, slot: &KeySlot) -> core::result::Result<usize, usize> {
        self.slots.binary_search_by(|(s, _)| s.cmp(slot))
    }

    fn get(&self, slot: &KeySlot) -> Generations {
        self.find(slot)
            .ok()
            .and_then(|i| self.slots.get(i))
            .map(|(_, g)| *g)
            .unwrap_or_default()
    }

    fn update(&mut self, slot: &KeySlot, op: Op<'_>) -> Result<()> {
        match self.find(slot) {
            Ok(i) => {
                let Some((_, g)) = self.slots.get_mut(i) else {
                    return Err(Error::Misuse("key store index out of range"));
                };
                let next = op.apply(*g)?;
                if next.is_empty() {
                    // `i` came from the search just above, so it is in range.
                    self.slots.remove(i);
                } else {
                    *g = next;
                }
                Ok(())
            }
            Err(i) => {
                let next = op.apply(Generations::default())?;
                if next.is_empty() {
                    return Ok(());
                }
                self.slots
                    .insert(i, (*slot, next))
                    .map_err(|_| Error::Key(KeyError::StoreFull))
            }
        }
    }
}

impl<const N: usize> Default for HeaplessKeyStore<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> KeyStore for HeaplessKeyStore<N> {
    fn put_pending(&mut self, record: &PackagedRecord) -> Result<()> {
        self.update(&KeySlot::of(&record.id()), Op::PutPending(record))
    }
    fn put_initial(&mut self, record: &PackagedRecord) -> Result<()> {
        self.update(&KeySlot::of(&record.id()), Op::PutInitial(record))
    }
    fn activate(&mut self, slot: &KeySlot, generation: u32) -> Result<()> {
        self.update(slot, Op::Activate(generation))
    }
    fn active(&self, slot: &KeySlot) -> Result<PackagedRecord> {
        self.get(slot).active()
    }
    fn pending(&self, slot: &KeySlot) -> Result<Option<PackagedRecord>> {
        Ok(self.get(slot).pending)
    }
    fn previous(&self, slot: &KeySlot) -> Result<Option<PackagedRecord>> {
        Ok(self.get(slot).previous)
    }
    fn discard_pending(&mut self, slot: &KeySlot) -> Result<()> {
        self.update(slot, Op::DiscardPending)
    }
    fn retire_previous(&mut self, slot: &KeySlot) -> Result<()> {
        self.update(slot, Op::RetirePrevious)
    }
    fn for_each_device(&self, f: &mut dyn FnMut(SystemTitle)) -> Result<()> {
        each_device(self.slots.iter().map(|(s, _)| s), f);
        Ok(())
    }
    fn for_each_slot(&self, device: &SystemTitle, f: &mut dyn FnMut(KeySlot)) -> Result<()> {
        let start = self.slots.partition_point(|(s, _)| s.device < *device);
        self.slots
            .iter()
            .skip(start)
            .take_while(|(s, _)| s.device == *device)
            .for_each(|(s, _)| f(*s));
        Ok(())
    }
}

/// Calls `f` once per run of equal devices in `slots` (sorted).
fn each_device<'a>(slots: impl Iterator<Item = &'a KeySlot>, f: &mut dyn FnMut(SystemTitle)) {
    let mut last = None;
    for s in slots {
        if last != Some(s.device) {
            last = Some(s.device);
            f(s.device);
        }
    }
}

#[cfg(feature = "std")]
pub use self::memory::MemoryKeyStore;

#[cfg(feature = "std")]
mod memory {
    // `std` implies `alloc`; this is `std::collections::BTreeMap`.
    use alloc::collections::BTreeMap;

    use super::{
        Generations, KeySlot, KeyStore, Op, PackagedRecord, Result, SystemTitle, each_device,
    };

    /// An unbounded store in RAM (feature `std`): a `BTreeMap` from slot to
    /// records. For services and tests; never returns
    /// [`KeyError::StoreFull`](crate::error::KeyError::StoreFull).
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    #[derive(Debug, Default)]
    pub struct MemoryKeyStore {
        /// No empty `Generations`.
        slots: BTreeMap<KeySlot, Generations>,
    }

    impl MemoryKeyStore {
        /// An empty store.
        #[must_use]
        pub const fn new() -> Self {
            Self {
                slots: BTreeMap::new(),
            }
        }

        /// The number of slots in use.
        #[must_use]
        pub fn len(&self) -> usize {
            self.slots.len()
        }

        /// Whether no slot is in use.
        #[must_use]
        pub fn is_empty(&self) -> bool {
            self.slots.is_empty()
        }

        fn get(&self, slot: &KeySlot) -> Generations {
            self.slots.get(slot).copied().unwrap_or_default()
        }

        fn update(&mut self, slot: &KeySlot, op: Op<'_>) -> Result<()> {
            let next = op.apply(self.get(slot))?;
            if next.is_empty() {
                self.slots.remove(slot);
            } else {
                self.slots.insert(*slot, next);
            }
            Ok(())
        }
    }

    impl KeyStore for MemoryKeyStore {
        fn put_pending(&mut self, record: &PackagedRecord) -> Result<()> {
            self.update(&KeySlot::of(&record.id()), Op::PutPending(record))
        }
        fn put_initial(&mut self, record: &PackagedRecord) -> Result<()> {
            self.update(&KeySlot::of(&record.id()), Op::PutInitial(record))
        }
        fn activate(&mut self, slot: &KeySlot, generation: u32) -> Result<()> {
            self.update(slot, Op::Activate(generation))
        }
        fn active(&self, slot: &KeySlot) -> Result<PackagedRecord> {
            self.get(slot).active()
        }
        fn pending(&self, slot: &KeySlot) -> Result<Option<PackagedRecord>> {
            Ok(self.get(slot).pending)
        }
        fn previous(&self, slot: &KeySlot) -> Result<Option<PackagedRecord>> {
            Ok(self.get(slot).previous)
        }
        fn discard_pending(&mut self, slot: &KeySlot) -> Result<()> {
            self.update(slot, Op::DiscardPending)
        }
        fn retire_previous(&mut self, slot: &KeySlot) -> Result<()> {
            self.update(slot, Op::RetirePrevious)
        }
        fn for_each_device(&self, f: &mut dyn FnMut(SystemTitle)) -> Result<()> {
            each_device(self.slots.keys(), f);
            Ok(())
        }
        fn for_each_slot(&self, device: &SystemTitle, f: &mut dyn FnMut(KeySlot)) -> Result<()> {
            self.slots
                .range(KeySlot::first_of(*device)..)
                .map(|(s, _)| *s)
                .take_while(|s| s.device == *device)
                .for_each(f);
            Ok(())
        }
    }
}

impl fmt::Display for KeySlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/", self.device)?;
        match self.client {
            Some(c) => f.write_str(c.name())?,
            None => f.write_str("device")?,
        }
        write!(f, "/{:?}", self.role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heapless_store_conforms() {
        assert_eq!(conformance::run(HeaplessKeyStore::<64>::new), Ok(()));
    }

    #[test]
    fn heapless_store_capacity() {
        assert_eq!(
            conformance::run_capacity(HeaplessKeyStore::<8>::new(), 8),
            Ok(())
        );
        assert_eq!(
            conformance::run_capacity(HeaplessKeyStore::<1>::new(), 1),
            Ok(())
        );
        assert_eq!(
            conformance::run_capacity(HeaplessKeyStore::<0>::new(), 0),
            Ok(())
        );
    }

    #[cfg(feature = "std")]
    #[test]
    fn memory_store_conforms() {
        assert_eq!(conformance::run(MemoryKeyStore::new), Ok(()));
    }

    #[test]
    fn run_capacity_notices_a_store_that_is_too_small() {
        let r = conformance::run_capacity(HeaplessKeyStore::<4>::new(), 5);
        assert!(r.is_err());
        let r = conformance::run_capacity(HeaplessKeyStore::<6>::new(), 5);
        assert!(r.is_err(), "a store with room beyond `capacity` must fail");
    }

    #[cfg(feature = "std")]
    #[test]
    fn first_of_is_the_smallest_slot_of_its_device() {
        let d = SystemTitle::new([9; 8]);
        let first = KeySlot::first_of(d);
        for role in KeyRole::ALL {
            for client in [None].into_iter().chain(Client::ALL.map(Some)) {
                assert!(
                    first
                        <= KeySlot {
                            device: d,
                            client,
                            role
                        }
                );
            }
        }
    }

    #[test]
    fn full_store_still_updates_existing_slots_and_freed_slots_are_reused() {
        let mut s = HeaplessKeyStore::<2>::new();
        let slot = |b: u8| KeySlot {
            device: SystemTitle::new([b; 8]),
            client: None,
            role: KeyRole::Master,
        };
        let rec = |b: u8, g: u32| conformance::test_record(&slot(b), g, b).unwrap();
        s.put_initial(&rec(1, 0)).unwrap();
        s.put_pending(&rec(2, 0)).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.put_pending(&rec(3, 0)),
            Err(Error::Key(KeyError::StoreFull))
        );
        s.put_pending(&rec(1, 1)).unwrap();
        s.activate(&slot(1), 1).unwrap();
        // Discarding the only record of slot 2 frees its place.
        s.discard_pending(&slot(2)).unwrap();
        assert_eq!(s.len(), 1);
        s.put_initial(&rec(3, 0)).unwrap();
        assert_eq!(s.active(&slot(3)), Ok(rec(3, 0)));
    }

    /// One deliberate bug each, to show the suite notices it.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Bug {
        ActivateForgetsPrevious,
        ReactivateRefused,
        StalePendingSilentlyDropped,
        PutInitialRotates,
        PendingVisibleAsActive,
        FailedActivateDropsPending,
        DiscardAlsoRetires,
        DevicesListedTwice,
        DevicesDescending,
        SlotsOfEveryDevice,
    }

    struct Broken {
        inner: HeaplessKeyStore<64>,
        bug: Bug,
    }

    impl KeyStore for Broken {
        fn put_pending(&mut self, record: &PackagedRecord) -> Result<()> {
            match self.inner.put_pending(record) {
                Err(Error::Key(KeyError::StaleGeneration))
                    if self.bug == Bug::StalePendingSilentlyDropped =>
                {
                    Ok(())
                }
                r => r,
            }
        }
        fn put_initial(&mut self, record: &PackagedRecord) -> Result<()> {
            if self.bug == Bug::PutInitialRotates {
                self.inner.put_pending(record)?;
                return self
                    .inner
                    .activate(&KeySlot::of(&record.id()), record.generation());
            }
            self.inner.put_initial(record)
        }
        fn activate(&mut self, slot: &KeySlot, generation: u32) -> Result<()> {
            let active = self.inner.active(slot).map(|r| r.generation());
            if self.bug == Bug::ReactivateRefused && active == Ok(generation) {
                return Err(KeyError::NoPending.into());
            }
            let r = self.inner.activate(slot, generation);
            match (self.bug, r) {
                (Bug::ActivateForgetsPrevious, Ok(())) => self.inner.retire_previous(slot),
                (Bug::FailedActivateDropsPending, Err(e)) => {
                    self.inner.discard_pending(slot)?;
                    Err(e)
                }
                (_, r) => r,
            }
        }
        fn active(&self, slot: &KeySlot) -> Result<PackagedRecord> {
            match self.inner.pending(slot)? {
                Some(p) if self.bug == Bug::PendingVisibleAsActive => Ok(p),
                _ => self.inner.active(slot),
            }
        }
        fn pending(&self, slot: &KeySlot) -> Result<Option<PackagedRecord>> {
            self.inner.pending(slot)
        }
        fn previous(&self, slot: &KeySlot) -> Result<Option<PackagedRecord>> {
            self.inner.previous(slot)
        }
        fn discard_pending(&mut self, slot: &KeySlot) -> Result<()> {
            if self.bug == Bug::DiscardAlsoRetires {
                self.inner.retire_previous(slot)?;
            }
            self.inner.discard_pending(slot)
        }
        fn retire_previous(&mut self, slot: &KeySlot) -> Result<()> {
            self.inner.retire_previous(slot)
        }
        fn for_each_device(&self, f: &mut dyn FnMut(SystemTitle)) -> Result<()> {
            match self.bug {
                Bug::DevicesListedTwice => self.inner.for_each_device(&mut |d| {
                    f(d);
                    f(d);
                }),
                Bug::DevicesDescending => {
                    let mut all = heapless::Vec::<SystemTitle, 64>::new();
                    self.inner.for_each_device(&mut |d| all.push(d).unwrap())?;
                    all.iter().rev().for_each(|d| f(*d));
                    Ok(())
                }
                _ => self.inner.for_each_device(f),
            }
        }
        fn for_each_slot(&self, device: &SystemTitle, f: &mut dyn FnMut(KeySlot)) -> Result<()> {
            if self.bug == Bug::SlotsOfEveryDevice {
                return self
                    .inner
                    .for_each_device(&mut |d| self.inner.for_each_slot(&d, f).unwrap());
            }
            self.inner.for_each_slot(device, f)
        }
    }

    #[test]
    fn the_suite_notices_each_broken_store() {
        for bug in [
            Bug::ActivateForgetsPrevious,
            Bug::ReactivateRefused,
            Bug::StalePendingSilentlyDropped,
            Bug::PutInitialRotates,
            Bug::PendingVisibleAsActive,
            Bug::FailedActivateDropsPending,
            Bug::DiscardAlsoRetires,
            Bug::DevicesListedTwice,
            Bug::DevicesDescending,
            Bug::SlotsOfEveryDevice,
        ] {
            let r = conformance::run(|| Broken {
                inner: HeaplessKeyStore::new(),
                bug,
            });
            let failure = r.err().unwrap_or_else(|| panic!("{bug:?} went unnoticed"));
            assert!(!failure.check.starts_with("fixture"), "{bug:?}: {failure}");
        }
    }

    #[test]
    fn display_names_the_slot_without_key_material() {
        let slot = KeySlot {
            device: SystemTitle::new(*b"ABC\0\0\0\0\x01"),
            client: Some(Client::Management),
            role: KeyRole::Authentication,
        };
        let mut out = heapless::String::<64>::new();
        fmt::Write::write_fmt(&mut out, format_args!("{slot}")).unwrap();
        assert_eq!(
            out.as_str(),
            "SystemTitle(4142430000000001)/management/Authentication"
        );
    }
}
