//! [`MemoryKeyStore`]: an unbounded key store in RAM, for services and
//! tests. It applies the same slot rules as every store
//! ([`SlotChange`]), so it passes the key-store conformance suite.

use std::collections::BTreeMap;

use dlms_sec::Result;
use dlms_sec::key::package::PackagedRecord;
use dlms_sec::keystore::{KeySlot, KeyStore, SlotChange, SlotRecords, for_each_device_of};
use dlms_sec::wire::SystemTitle;

/// An unbounded key store in RAM: a `BTreeMap` from slot to
/// records. For services and tests; never returns
/// [`KeyError::StoreFull`](dlms_sec::error::KeyError::StoreFull).
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    /// No empty `SlotRecords`.
    slots: BTreeMap<KeySlot, SlotRecords>,
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

    fn get(&self, slot: &KeySlot) -> SlotRecords {
        self.slots.get(slot).copied().unwrap_or_default()
    }

    fn update(&mut self, slot: &KeySlot, op: SlotChange<'_>) -> Result<()> {
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
        for_each_device_of(self.slots.keys(), f);
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

#[cfg(test)]
mod tests {
    use dlms_sec::keystore::conformance;

    use super::MemoryKeyStore;

    #[test]
    fn memory_store_conforms() {
        assert_eq!(conformance::run(MemoryKeyStore::new), Ok(()));
    }
}
