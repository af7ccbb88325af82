//! Receive floors that survive a power loss: each client's replay floor,
//! persisted one write per N accepted frames.
//!
//! The record a firmware keeps per client is a **ceiling**: every counter
//! value accepted under the record's key is below it. Before the floor
//! accepts a counter at or above the ceiling (in
//! [`Endpoint::unprotect`](crate::meter::Endpoint::unprotect)) it makes
//! the ceiling durable at that counter + 1 + N; the frames up to that mark
//! are then accepted without a write. After a power loss the floor resumes
//! **at** the ceiling: nothing accepted before the loss is accepted again,
//! and at most N unused values are skipped (a client whose next counter is
//! below the ceiling is refused until it moves above it; the refusal names
//! the lowest acceptable value, for an exception-response).
//!
//! Each record names the key it counts for by its [`KeyFingerprint`]. A
//! record is written under a key before anything is accepted under it, so
//! a record naming another key means nothing has been accepted under the
//! current one: its floor starts fresh. A missing record is a lost record
//! and fails closed ([`CounterError::RecordLost`]).
//!
//! The sender side (the endpoint's answers) is the
//! [`SendCounter`](crate::counter::SendCounter)'s reserve-ahead over its
//! [`CounterPersistence`](crate::counter::CounterPersistence).

use core::num::NonZeroU32;

use crate::counter::{KeyFingerprint, ReplayGuard, ReplayProof};
use crate::error::CounterError;
use crate::wire::InvocationCounter;

/// One client's durable receive floor: every counter accepted under `key`
/// is below `ceiling`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloorRecord {
    /// The key the record counts for (its replay guard's fingerprint).
    pub key: KeyFingerprint,
    /// Every counter value accepted under `key` is below this one.
    pub ceiling: u32,
}

/// Persistence for receive floors (firmware flash): one record per client
/// slot (the client's position in the endpoint's client list).
pub trait FloorPersistence {
    /// The record of `slot`, `None` when the store holds none.
    ///
    /// # Errors
    /// Any error: the record could not be read (the endpoint fails closed).
    fn load(&mut self, slot: usize) -> Result<Option<FloorRecord>, CounterError>;

    /// Replaces the record of `slot`. Must be durable before `Ok`.
    ///
    /// # Errors
    /// Any error: the record may hold the old or the new value; the frame
    /// that asked for the write is refused.
    fn store(&mut self, slot: usize, record: FloorRecord) -> Result<(), CounterError>;
}

impl<F: FloorPersistence + ?Sized> FloorPersistence for &mut F {
    fn load(&mut self, slot: usize) -> Result<Option<FloorRecord>, CounterError> {
        (**self).load(slot)
    }

    fn store(&mut self, slot: usize, record: FloorRecord) -> Result<(), CounterError> {
        (**self).store(slot, record)
    }
}

/// No persistence: floors live in RAM only, for simulations and tests. A
/// restart forgets every floor, so frames accepted before it verify again:
/// never for a device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VolatileFloors;

impl FloorPersistence for VolatileFloors {
    fn load(&mut self, _slot: usize) -> Result<Option<FloorRecord>, CounterError> {
        Ok(None)
    }

    fn store(&mut self, _slot: usize, _record: FloorRecord) -> Result<(), CounterError> {
        Ok(())
    }
}

/// Records in RAM, one per slot, counting its writes: a stand-in for
/// flash in tests and simulations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InMemoryFloors<const N: usize> {
    records: [Option<FloorRecord>; N],
    writes: u32,
}

impl<const N: usize> Default for InMemoryFloors<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> InMemoryFloors<N> {
    /// No records.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            records: [None; N],
            writes: 0,
        }
    }

    /// The record of `slot`.
    #[must_use]
    pub fn record(&self, slot: usize) -> Option<FloorRecord> {
        self.records.get(slot).copied().flatten()
    }

    /// How many writes were made.
    #[must_use]
    pub const fn writes(&self) -> u32 {
        self.writes
    }
}

impl<const N: usize> FloorPersistence for InMemoryFloors<N> {
    fn load(&mut self, slot: usize) -> Result<Option<FloorRecord>, CounterError> {
        Ok(self.record(slot))
    }

    fn store(&mut self, slot: usize, record: FloorRecord) -> Result<(), CounterError> {
        let r = self
            .records
            .get_mut(slot)
            .ok_or(CounterError::Persistence)?;
        *r = Some(record);
        self.writes = self.writes.saturating_add(1);
        Ok(())
    }
}

/// A replay guard with its durable ceiling.
#[derive(Debug)]
pub(crate) struct Floor {
    guard: ReplayGuard,
    /// Every counter accepted is below it, durably (0: nothing persisted).
    ceiling: u32,
}

impl Floor {
    /// A floor for a key nothing has been accepted under.
    pub(crate) const fn fresh(guard: ReplayGuard) -> Self {
        Self { guard, ceiling: 0 }
    }

    /// The floor of `guard`'s key from its record: resumed at the
    /// ceiling when the record names the same key, fresh otherwise.
    pub(crate) fn from_record(guard: ReplayGuard, record: FloorRecord) -> Self {
        if record.key != guard.key_fingerprint() {
            return Self::fresh(guard);
        }
        let last = record.ceiling.checked_sub(1).map(InvocationCounter::new);
        Self {
            guard: ReplayGuard::resume(guard.peer(), guard.key(), guard.key_fingerprint(), last),
            ceiling: record.ceiling,
        }
    }

    /// The record that says nothing has been accepted under this key.
    pub(crate) fn empty_record(&self) -> FloorRecord {
        FloorRecord {
            key: self.guard.key_fingerprint(),
            ceiling: 0,
        }
    }

    /// The guard.
    pub(crate) const fn guard(&self) -> &ReplayGuard {
        &self.guard
    }

    /// Accepts the frame `proof` vouches for: raises the durable ceiling
    /// first when the counter is at or above it.
    pub(crate) fn admit(
        &mut self,
        proof: &ReplayProof,
        ahead: NonZeroU32,
        slot: usize,
        store: &mut impl FloorPersistence,
    ) -> Result<(), CounterError> {
        let ic = proof.invocation_counter().value();
        self.guard.check(proof.invocation_counter())?;
        if proof.key_fingerprint() != self.guard.key_fingerprint() {
            return Err(CounterError::WrongGuard);
        }
        if ic >= self.ceiling {
            let ceiling = ic.saturating_add(1).saturating_add(ahead.get());
            let record = FloorRecord {
                key: self.guard.key_fingerprint(),
                ceiling,
            };
            store
                .store(slot, record)
                .map_err(|_| CounterError::Persistence)?;
            self.ceiling = ceiling;
        }
        self.guard.accept(proof).map(|_| ())
    }
}
