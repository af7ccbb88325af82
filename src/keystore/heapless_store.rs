//! [`HeaplessKeyStore`]: a fixed-capacity key store for no_std devices.

use crate::error::{Error, KeyError, Result};
use crate::key::package::PackagedRecord;
use crate::keystore::slot::{SlotChange, SlotRecords, for_each_device_of};
use crate::keystore::{KeySlot, KeyStore};
use crate::wire::SystemTitle;

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
/// use dlms_sec::key::package::{Packager, RecordId};
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
    /// Sorted by slot, each slot at most once, no empty `SlotRecords`.
    slots: heapless::Vec<(KeySlot, SlotRecords), N>,
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

    fn get(&self, slot: &KeySlot) -> SlotRecords {
        self.find(slot)
            .ok()
            .and_then(|i| self.slots.get(i))
            .map(|(_, g)| *g)
            .unwrap_or_default()
    }

    fn update(&mut self, slot: &KeySlot, op: SlotChange<'_>) -> Result<()> {
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
                let next = op.apply(SlotRecords::default())?;
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
        self.update(&KeySlot::of(&record.id()), SlotChange::PutPending(record))
    }
    fn put_initial(&mut self, record: &PackagedRecord) -> Result<()> {
        self.update(&KeySlot::of(&record.id()), SlotChange::PutInitial(record))
    }
    fn activate(&mut self, slot: &KeySlot, generation: u32) -> Result<()> {
        self.update(slot, SlotChange::Activate(generation))
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
        self.update(slot, SlotChange::DiscardPending)
    }
    fn retire_previous(&mut self, slot: &KeySlot) -> Result<()> {
        self.update(slot, SlotChange::RetirePrevious)
    }
    fn for_each_device(&self, f: &mut dyn FnMut(SystemTitle)) -> Result<()> {
        for_each_device_of(self.slots.iter().map(|(s, _)| s), f);
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
