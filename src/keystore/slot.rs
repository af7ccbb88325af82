//! The records of one slot and the rules every store applies to change
//! them. A store keeps a [`SlotRecords`] per [`KeySlot`] and applies a
//! [`SlotChange`] with one assignment (or one transaction): a failed change
//! leaves the slot as it was.

use crate::error::{Error, KeyError, Result};
use crate::key::package::PackagedRecord;
use crate::keystore::KeySlot;
use crate::wire::SystemTitle;

/// The records of one slot, and the rules for changing them.
///
/// Every transition is a pure function from the old state to the new one
/// (or an error), so a store applies it with a single assignment and a
/// failed transition cannot leave anything half done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotRecords {
    /// The key the meter uses now.
    pub active: Option<PackagedRecord>,
    /// A replacement on its way to the meter.
    pub pending: Option<PackagedRecord>,
    /// The key the last activation superseded.
    pub previous: Option<PackagedRecord>,
}

impl SlotRecords {
    /// Whether the slot holds no record (a store then forgets the slot).
    #[must_use]
    pub const fn is_empty(&self) -> bool {
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

    /// The active record.
    ///
    /// # Errors
    /// [`KeyError::NotFound`] when the slot has none.
    pub fn active(&self) -> Result<PackagedRecord> {
        self.active.ok_or(Error::Key(KeyError::NotFound))
    }
}

/// A transition applied to one slot: one per mutating [`KeyStore`](crate::keystore::KeyStore) method.
#[derive(Clone, Copy, Debug)]
pub enum SlotChange<'a> {
    /// [`KeyStore::put_pending`](crate::keystore::KeyStore::put_pending).
    PutPending(&'a PackagedRecord),
    /// [`KeyStore::put_initial`](crate::keystore::KeyStore::put_initial).
    PutInitial(&'a PackagedRecord),
    /// [`KeyStore::activate`](crate::keystore::KeyStore::activate) of a generation.
    Activate(u32),
    /// [`KeyStore::discard_pending`](crate::keystore::KeyStore::discard_pending).
    DiscardPending,
    /// [`KeyStore::retire_previous`](crate::keystore::KeyStore::retire_previous).
    RetirePrevious,
}

impl SlotChange<'_> {
    /// The slot's records after the change.
    ///
    /// # Errors
    /// The store's documented refusals ([`KeyError::StaleGeneration`],
    /// [`KeyError::NoPending`]); the old state is then unchanged.
    pub fn apply(self, g: SlotRecords) -> Result<SlotRecords> {
        match self {
            Self::PutPending(r) => g.put_pending(*r),
            Self::PutInitial(r) => g.put_initial(*r),
            Self::Activate(generation) => g.activate(generation),
            Self::DiscardPending => Ok(g.discard_pending()),
            Self::RetirePrevious => Ok(g.retire_previous()),
        }
    }
}

/// Calls `f` once per run of equal devices in `slots` (sorted by slot):
/// [`KeyStore::for_each_device`](crate::keystore::KeyStore::for_each_device) over a sorted map of slots.
pub fn for_each_device_of<'a>(
    slots: impl Iterator<Item = &'a KeySlot>,
    f: &mut dyn FnMut(SystemTitle),
) {
    let mut last = None;
    for s in slots {
        if last != Some(s.device) {
            last = Some(s.device);
            f(s.device);
        }
    }
}
