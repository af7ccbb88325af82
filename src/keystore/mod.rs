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
//!   than the slot's active record ([`KeyError::StaleGeneration`](crate::error::KeyError::StaleGeneration)), so an
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
//!   [`crate::key::package`], at the holder of the KEK (an HSM, R-07); a store
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

use crate::error::Result;
use crate::key::package::{PackagedRecord, RecordId};
use crate::types::Client;
use crate::types::KeyRole;
use crate::wire::SystemTitle;

#[cfg(any(test, feature = "conformance"))]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod heapless_store;
mod slot;

pub use self::heapless_store::HeaplessKeyStore;
pub use self::slot::{SlotChange, SlotRecords, for_each_device_of};

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
    /// sorts first, and `Master` is the first role): where a sorted store
    /// starts a range over one device's slots.
    #[must_use]
    pub const fn first_of(device: SystemTitle) -> Self {
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
/// (for example [`KeyError::Provider`](crate::error::KeyError::Provider)); a failed call changes nothing.
pub trait KeyStore {
    /// Stores `record` as the pending generation of its slot, replacing any
    /// pending record already there. The active record is not touched.
    ///
    /// A slot without an active record accepts any generation (a key that
    /// is introduced by key_transfer rather than at manufacture, such as a
    /// broadcast key).
    ///
    /// # Errors
    /// [`KeyError::StaleGeneration`](crate::error::KeyError::StaleGeneration) if the record's generation is not
    /// newer than the slot's active one; [`KeyError::StoreFull`](crate::error::KeyError::StoreFull) if the
    /// slot is new and there is no room for it.
    fn put_pending(&mut self, record: &PackagedRecord) -> Result<()>;

    /// Installs a record as active in an empty slot: the commissioning
    /// import of the keys a meter was manufactured with.
    ///
    /// # Errors
    /// [`KeyError::StaleGeneration`](crate::error::KeyError::StaleGeneration) if the slot already holds an active or
    /// a pending record (replace keys with [`Self::put_pending`] and
    /// [`Self::activate`]); [`KeyError::StoreFull`](crate::error::KeyError::StoreFull) if there is no room for
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
    /// [`KeyError::NoPending`](crate::error::KeyError::NoPending) if there is no pending record with that
    /// generation and it is not the active one; nothing changes.
    fn activate(&mut self, slot: &KeySlot, generation: u32) -> Result<()>;

    /// Activates several slots together (a client's AK and GUEK, and the
    /// device MK with them): each as [`Self::activate`], and all or none.
    ///
    /// The provided method checks every slot first, so a slot without the
    /// pending generation fails the call before anything changes; then it
    /// activates them in turn. A store with a backend overrides it with one
    /// transaction, so that a crash or a backend error between two slots
    /// cannot leave one activated without the other.
    ///
    /// # Errors
    /// As [`Self::activate`], for the first slot that would fail; nothing
    /// changes.
    fn activate_all(&mut self, slots: &[(KeySlot, u32)]) -> Result<()> {
        for (slot, generation) in slots {
            let active = self.active(slot).ok().map(|r| r.generation());
            let pending = self.pending(slot)?.map(|r| r.generation());
            if active != Some(*generation) && pending != Some(*generation) {
                return Err(crate::error::KeyError::NoPending.into());
            }
        }
        for (slot, generation) in slots {
            self.activate(slot, *generation)?;
        }
        Ok(())
    }

    /// The active record of `slot`.
    ///
    /// # Errors
    /// [`KeyError::NotFound`](crate::error::KeyError::NotFound) if the slot has no active record.
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
    fn activate_all(&mut self, slots: &[(KeySlot, u32)]) -> Result<()> {
        (**self).activate_all(slots)
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
    use crate::error::{Error, KeyError};

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

    #[test]
    fn run_capacity_notices_a_store_that_is_too_small() {
        let r = conformance::run_capacity(HeaplessKeyStore::<4>::new(), 5);
        assert!(r.is_err());
        let r = conformance::run_capacity(HeaplessKeyStore::<6>::new(), 5);
        assert!(r.is_err(), "a store with room beyond `capacity` must fail");
    }

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
