//! The DCO's send counters: one per key, drawn from a persistence.
//!
//! Suite 0's IV is the sender's system title and a 32-bit invocation
//! counter; under one key a value must never be used twice, and a counter
//! shared by every meter would run out in weeks. [`KeyCounters`] is where
//! the DCO finds the counter of each key it protects under, named by a
//! [`CounterKey`] (the DCO's title, device, client, key kind, generation).
//! [`PerKeyCounters`] keeps one [`SendCounter`] per key over any
//! [`CounterPersistence`] (a database, or [`MemoryCounters`]) with
//! reserve-ahead: a crash burns at most one block of values per key.
//!
//! A key's counter record is made when the key is introduced
//! ([`KeyCounters::introduce`]: at commissioning for the keys a meter was
//! made with, when it is generated for a replacement), never on first use:
//! a record missing at use is [`CounterError::RecordLost`], and nothing is
//! protected under that key until an operator has looked.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use dlms_sec::InvocationCounter;
use dlms_sec::counter::{CounterKey, CounterPersistence, CounterSource, SendCounter};
use dlms_sec::error::CounterError;

/// Where the DCO draws the send counter of each key from.
pub trait KeyCounters {
    /// Makes the counter record of a key that has not been used, its first
    /// value `first`. A key introduced before keeps its record as it is
    /// (a retry after a crash).
    ///
    /// # Errors
    /// A persistence error: the key must not be used.
    fn introduce(&mut self, key: &CounterKey, first: InvocationCounter)
    -> Result<(), CounterError>;

    /// The counter of `key`.
    ///
    /// # Errors
    /// [`CounterError::RecordLost`] when the key was never introduced or
    /// its record is gone; a persistence error.
    fn counter(&mut self, key: &CounterKey) -> Result<&mut dyn CounterSource, CounterError>;
}

impl<K: KeyCounters + ?Sized> KeyCounters for &mut K {
    fn introduce(
        &mut self,
        key: &CounterKey,
        first: InvocationCounter,
    ) -> Result<(), CounterError> {
        (**self).introduce(key, first)
    }

    fn counter(&mut self, key: &CounterKey) -> Result<&mut dyn CounterSource, CounterError> {
        (**self).counter(key)
    }
}

/// One [`SendCounter`] per key over a persistence that many counters
/// share (`P` is a handle: a `&Store`, a [`MemoryCounters`]).
#[derive(Debug)]
pub struct PerKeyCounters<P: CounterPersistence + Clone> {
    persistence: P,
    reserve_ahead: NonZeroU32,
    warning_threshold: Option<u32>,
    open: BTreeMap<CounterKey, SendCounter<P>>,
}

impl<P: CounterPersistence + Clone> PerKeyCounters<P> {
    /// Counters over `persistence`, each claiming `reserve_ahead` values
    /// per write.
    pub const fn new(persistence: P, reserve_ahead: NonZeroU32) -> Self {
        Self {
            persistence,
            reserve_ahead,
            warning_threshold: None,
            open: BTreeMap::new(),
        }
    }

    /// Counters that report [`CounterSource::near_exhaustion`] once fewer
    /// than `remaining` values are left.
    #[must_use]
    pub const fn with_warning_threshold(mut self, remaining: u32) -> Self {
        self.warning_threshold = Some(remaining);
        self
    }

    /// The persistence.
    pub const fn persistence(&self) -> &P {
        &self.persistence
    }

    /// Forgets the values reserved in memory: the next value of every key
    /// comes from a fresh claim (as after a restart).
    pub fn forget_reservations(&mut self) {
        self.open.clear();
    }

    fn tuned(&self, counter: SendCounter<P>) -> SendCounter<P> {
        match self.warning_threshold {
            Some(t) => counter.with_warning_threshold(t),
            None => counter,
        }
    }
}

impl<P: CounterPersistence + Clone> KeyCounters for PerKeyCounters<P> {
    fn introduce(
        &mut self,
        key: &CounterKey,
        first: InvocationCounter,
    ) -> Result<(), CounterError> {
        match self.persistence.clone().create(key, first.value()) {
            Ok(()) | Err(CounterError::RecordExists) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn counter(&mut self, key: &CounterKey) -> Result<&mut dyn CounterSource, CounterError> {
        if !self.open.contains_key(key) {
            let resumed = SendCounter::resume(*key, self.reserve_ahead, self.persistence.clone())?;
            let resumed = self.tuned(resumed);
            self.open.insert(*key, resumed);
        }
        match self.open.get_mut(key) {
            Some(counter) => Ok(counter),
            None => Err(CounterError::Persistence),
        }
    }
}

/// Counter records in this process's memory, shared by every clone: for
/// tests and single-process tools. They do not survive a restart.
#[derive(Clone, Debug, Default)]
pub struct MemoryCounters {
    ceilings: Arc<Mutex<BTreeMap<CounterKey, u32>>>,
}

impl MemoryCounters {
    /// No records.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The ceiling of `key`'s record.
    #[must_use]
    pub fn ceiling(&self, key: &CounterKey) -> Option<u32> {
        self.ceilings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
    }

    /// Removes `key`'s record, as a database that lost it would.
    pub fn lose(&self, key: &CounterKey) {
        self.ceilings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

impl CounterPersistence for MemoryCounters {
    fn create(&mut self, key: &CounterKey, first: u32) -> Result<(), CounterError> {
        let mut ceilings = self.ceilings.lock().unwrap_or_else(PoisonError::into_inner);
        if ceilings.contains_key(key) {
            return Err(CounterError::RecordExists);
        }
        ceilings.insert(*key, first);
        Ok(())
    }

    fn claim(&mut self, key: &CounterKey, n: NonZeroU32) -> Result<Range<u32>, CounterError> {
        let mut ceilings = self.ceilings.lock().unwrap_or_else(PoisonError::into_inner);
        let ceiling = ceilings.get_mut(key).ok_or(CounterError::RecordLost)?;
        let old = *ceiling;
        *ceiling = old.saturating_add(n.get());
        Ok(old..*ceiling)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use dlms_sec::types::Client;
    use dlms_sec::wire::{KeyKind, SystemTitle};

    const DCO: SystemTitle = SystemTitle::new(*b"DCO\x00\x00\x00\x00\x01");

    fn key(device: u8, generation: u32) -> CounterKey {
        CounterKey::new(
            DCO,
            SystemTitle::new([0x4D, 0x4D, 0x4D, 0, 0, 0, 0, device]),
            Client::Management,
            KeyKind::GlobalUnicast,
            generation,
        )
    }

    fn ahead(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn each_key_counts_on_its_own() {
        let mut c = PerKeyCounters::new(MemoryCounters::new(), ahead(4));
        for k in [key(1, 0), key(2, 0), key(1, 1)] {
            c.introduce(&k, InvocationCounter::new(1)).unwrap();
        }
        let mut next = |k| c.counter(&k).unwrap().next_counter().unwrap().value();
        assert_eq!(next(key(1, 0)), 1);
        assert_eq!(next(key(1, 0)), 2);
        assert_eq!(next(key(2, 0)), 1);
        assert_eq!(next(key(1, 1)), 1);
        assert_eq!(next(key(1, 0)), 3);
    }

    #[test]
    fn a_key_never_introduced_or_lost_is_refused() {
        let store = MemoryCounters::new();
        let mut c = PerKeyCounters::new(store.clone(), ahead(4));
        assert_eq!(c.counter(&key(1, 0)).err(), Some(CounterError::RecordLost));
        c.introduce(&key(1, 0), InvocationCounter::new(1)).unwrap();
        store.lose(&key(1, 0));
        assert_eq!(c.counter(&key(1, 0)).err(), Some(CounterError::RecordLost));
    }

    #[test]
    fn a_restart_skips_what_was_reserved_and_introducing_again_keeps_the_record() {
        let store = MemoryCounters::new();
        let mut c = PerKeyCounters::new(store.clone(), ahead(10));
        c.introduce(&key(1, 0), InvocationCounter::new(1)).unwrap();
        assert_eq!(
            c.counter(&key(1, 0))
                .unwrap()
                .next_counter()
                .unwrap()
                .value(),
            1
        );
        // Restarted: the first block is burnt, nothing is issued twice.
        let mut again = PerKeyCounters::new(store.clone(), ahead(10));
        again
            .introduce(&key(1, 0), InvocationCounter::new(1))
            .unwrap();
        assert_eq!(store.ceiling(&key(1, 0)), Some(11));
        assert_eq!(
            again
                .counter(&key(1, 0))
                .unwrap()
                .next_counter()
                .unwrap()
                .value(),
            11
        );
        // Two handles over one store never share a value.
        let mut v: Vec<u32> = (0..25)
            .flat_map(|_| {
                [
                    c.counter(&key(1, 0))
                        .unwrap()
                        .next_counter()
                        .unwrap()
                        .value(),
                    again
                        .counter(&key(1, 0))
                        .unwrap()
                        .next_counter()
                        .unwrap()
                        .value(),
                ]
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        assert_eq!(v.len(), 50);
    }
}
