//! The send side: where invocation counters come from, and how their
//! reservations persist.

use core::num::NonZeroU32;

use crate::error::CounterError;
use crate::wire::InvocationCounter;

/// Default for [`SendCounter::with_warning_threshold`]: warn when 2^20
/// (about a million) values are left.
pub const DEFAULT_WARNING_THRESHOLD: u32 = 1 << 20;

/// Something that hands out invocation counters for protecting outgoing
/// frames, each value at most once.
pub trait CounterSource {
    /// The counter to use for the next protected frame (or HLS-5 response).
    ///
    /// # Errors
    /// [`CounterError::Exhausted`] when no usable value is left: the key must
    /// be replaced. [`CounterError::Persistence`] when a reservation could
    /// not be made durable; nothing was issued, and the call may be retried.
    fn next_counter(&mut self) -> Result<InvocationCounter, CounterError>;

    /// Whether the source is within its warning threshold of the last
    /// usable value, so the key should be replaced soon. The default says
    /// never.
    fn near_exhaustion(&self) -> bool {
        false
    }
}

impl<C: CounterSource + ?Sized> CounterSource for &mut C {
    fn next_counter(&mut self) -> Result<InvocationCounter, CounterError> {
        (**self).next_counter()
    }

    fn near_exhaustion(&self) -> bool {
        (**self).near_exhaustion()
    }
}

/// Persistence hook for one sender counter (firmware flash, a DCO database
/// row).
///
/// The stored number is a reservation ceiling, not the last value used:
/// "every value below it may already have been used". A store must never
/// report `Ok` for a write that a power loss could undo, and should never
/// hand back a value smaller than one it acknowledged.
pub trait CounterPersistence {
    /// The last persisted reservation: every value below it may already
    /// have been used. `None` for a fresh key.
    ///
    /// # Errors
    /// Any error means the state is unknown; [`SendCounter::new`] then
    /// refuses to start ([`CounterError::Persistence`]).
    fn load(&mut self) -> Result<Option<u32>, CounterError>;

    /// Durably records that values below `reserved_up_to` may be used.
    /// Must be durable before `Ok`.
    ///
    /// # Errors
    /// Any error means the reservation is not durable;
    /// [`SendCounter`] then issues nothing ([`CounterError::Persistence`]).
    fn store(&mut self, reserved_up_to: u32) -> Result<(), CounterError>;
}

impl<P: CounterPersistence + ?Sized> CounterPersistence for &mut P {
    fn load(&mut self) -> Result<Option<u32>, CounterError> {
        (**self).load()
    }

    fn store(&mut self, reserved_up_to: u32) -> Result<(), CounterError> {
        (**self).store(reserved_up_to)
    }
}

/// A sender's invocation counter with block reservation.
///
/// See the [module docs](crate::counter) for what it guarantees. With a
/// `reserve_ahead` of `n`, the store is written once every `n` values, plus
/// once after every restart; a restart skips at most `n` values.
///
/// Deliberately not `Clone`: two copies of a counter would issue the same
/// values.
///
/// ```
/// use core::num::NonZeroU32;
/// use dlms_sec::counter::{CounterSource, InMemoryCounterStore, SendCounter};
/// use dlms_sec::InvocationCounter;
///
/// let mut flash = InMemoryCounterStore::<4>::new();
/// let ahead = NonZeroU32::new(100).unwrap();
/// let first = InvocationCounter::new(1);
///
/// let mut tx = SendCounter::new(first, ahead, &mut flash).unwrap();
/// assert_eq!(tx.next_counter(), Ok(InvocationCounter::new(1)));
/// assert_eq!(tx.next_counter(), Ok(InvocationCounter::new(2)));
/// drop(tx); // power loss
/// assert_eq!(flash.writes(), &[101]);
///
/// // Values 3..=100 were reserved but never used: they are skipped.
/// let mut tx = SendCounter::new(first, ahead, &mut flash).unwrap();
/// assert_eq!(tx.next_counter(), Ok(InvocationCounter::new(101)));
/// ```
#[derive(Debug)]
pub struct SendCounter<P: CounterPersistence> {
    /// The next value to issue; `InvocationCounter::RESERVED` once exhausted.
    next: u32,
    /// Values below this are covered by a durable reservation.
    reserved_up_to: u32,
    reserve_ahead: NonZeroU32,
    warning_threshold: u32,
    store: P,
}

impl<P: CounterPersistence> SendCounter<P> {
    /// Starts a counter: resumes from the persisted reservation if there is
    /// one (never below `first`), else at `first`.
    ///
    /// `reserve_ahead` is how many values one persisted reservation covers.
    /// Nothing is written here; the first [`next_counter`] writes a fresh
    /// reservation before it issues anything.
    ///
    /// # Errors
    /// [`CounterError::Persistence`] if `store` cannot load (fail closed:
    /// with the state unknown, any value might be a reuse; recovery is a
    /// new key).
    ///
    /// [`next_counter`]: CounterSource::next_counter
    pub fn new(
        first: InvocationCounter,
        reserve_ahead: NonZeroU32,
        mut store: P,
    ) -> Result<Self, CounterError> {
        let persisted = store.load().map_err(|_| CounterError::Persistence)?;
        let (next, reserved_up_to) = match persisted {
            Some(ceiling) => (ceiling.max(first.value()), ceiling),
            None => (first.value(), 0),
        };
        Ok(Self {
            next,
            reserved_up_to,
            reserve_ahead,
            warning_threshold: DEFAULT_WARNING_THRESHOLD,
            store,
        })
    }

    /// Sets how many remaining values make [`near_exhaustion`] true
    /// (default [`DEFAULT_WARNING_THRESHOLD`]).
    ///
    /// [`near_exhaustion`]: Self::near_exhaustion
    #[must_use]
    pub const fn with_warning_threshold(mut self, remaining: u32) -> Self {
        self.warning_threshold = remaining;
        self
    }

    /// The next value to be issued, or `None` once exhausted. Does not
    /// issue it.
    #[must_use]
    pub const fn peek(&self) -> Option<InvocationCounter> {
        if self.next == InvocationCounter::RESERVED {
            None
        } else {
            Some(InvocationCounter::new(self.next))
        }
    }

    /// How many values can still be issued (`0xFFFFFFFE` is the last).
    #[must_use]
    pub const fn remaining(&self) -> u32 {
        InvocationCounter::RESERVED.saturating_sub(self.next)
    }

    /// Whether [`remaining`](Self::remaining) is at or below the warning
    /// threshold: time to roll the key over.
    #[must_use]
    pub const fn near_exhaustion(&self) -> bool {
        self.remaining() <= self.warning_threshold
    }

    /// The warning threshold in force.
    #[must_use]
    pub const fn warning_threshold(&self) -> u32 {
        self.warning_threshold
    }

    /// How many values one reservation covers.
    #[must_use]
    pub const fn reserve_ahead(&self) -> NonZeroU32 {
        self.reserve_ahead
    }

    /// The durable reservation this counter knows of: values below it may
    /// be issued without another write. 0 before the first write of a
    /// fresh key.
    #[must_use]
    pub const fn reserved_up_to(&self) -> u32 {
        self.reserved_up_to
    }

    /// The persistence hook.
    #[must_use]
    pub const fn store(&self) -> &P {
        &self.store
    }

    /// The persistence hook, mutably. Writing a value to it behind the
    /// counter's back defeats the guarantees above.
    pub const fn store_mut(&mut self) -> &mut P {
        &mut self.store
    }

    /// Gives the persistence hook back (the counter stops).
    #[must_use]
    pub fn into_store(self) -> P {
        self.store
    }
}

impl SendCounter<Volatile> {
    /// A counter with no persistence, starting at `first`: for tests,
    /// examples and keys that die with the process (see [`Volatile`] for
    /// why nothing else may use one). Cannot fail: there is nothing to
    /// load.
    #[must_use]
    pub const fn volatile(first: InvocationCounter) -> Self {
        Self {
            next: first.value(),
            reserved_up_to: 0,
            reserve_ahead: NonZeroU32::MAX,
            warning_threshold: DEFAULT_WARNING_THRESHOLD,
            store: Volatile,
        }
    }
}

impl<P: CounterPersistence> CounterSource for SendCounter<P> {
    fn near_exhaustion(&self) -> bool {
        Self::near_exhaustion(self)
    }

    fn next_counter(&mut self) -> Result<InvocationCounter, CounterError> {
        let value = self.next;
        // Rule 3 of GB 9.2.3.3.7.3: at the maximum, fail and do not
        // increment. `0xFFFFFFFF` itself is never issued.
        let after = match value.checked_add(1) {
            Some(after) => after,
            None => return Err(CounterError::Exhausted),
        };
        if value >= self.reserved_up_to {
            // Persist first, issue second: a power loss between the two
            // skips values, it never repeats one.
            let ceiling = value.saturating_add(self.reserve_ahead.get());
            self.store
                .store(ceiling)
                .map_err(|_| CounterError::Persistence)?;
            self.reserved_up_to = ceiling;
        }
        self.next = after;
        Ok(InvocationCounter::new(value))
    }
}

/// No persistence: for ephemeral keys and tests.
///
/// `load` always says "fresh key" and `store` forgets. A restart (a new
/// [`SendCounter`] over `Volatile`) therefore starts again at `first` and
/// **reuses counter values**, which under the same key is a GCM nonce
/// reuse. Only use it for keys that die with the process, such as a
/// dedicated key that lives as long as one association.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Volatile;

impl CounterPersistence for Volatile {
    fn load(&mut self) -> Result<Option<u32>, CounterError> {
        Ok(None)
    }

    fn store(&mut self, _reserved_up_to: u32) -> Result<(), CounterError> {
        Ok(())
    }
}

/// A `heapless` in-memory store for tests and simulations.
///
/// Keeps the value, a log of the last `N` successful writes (the oldest is
/// dropped when full), a count of all successful writes, and can be told
/// to fail the next load or store.
#[derive(Debug, Default)]
pub struct InMemoryCounterStore<const N: usize> {
    value: Option<u32>,
    writes: heapless::Vec<u32, N>,
    write_count: usize,
    fail_next_store: bool,
    fail_next_load: bool,
}

impl<const N: usize> InMemoryCounterStore<N> {
    /// An empty store: a fresh key.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            value: None,
            writes: heapless::Vec::new(),
            write_count: 0,
            fail_next_store: false,
            fail_next_load: false,
        }
    }

    /// A store that already holds `reserved_up_to`, as after earlier runs.
    #[must_use]
    pub const fn with_value(reserved_up_to: u32) -> Self {
        let mut s = Self::new();
        s.value = Some(reserved_up_to);
        s
    }

    /// The persisted reservation, `None` if nothing was ever stored.
    #[must_use]
    pub const fn value(&self) -> Option<u32> {
        self.value
    }

    /// The last `N` successful writes, oldest first.
    #[must_use]
    pub fn writes(&self) -> &[u32] {
        self.writes.as_slice()
    }

    /// How many writes succeeded in total (saturating).
    #[must_use]
    pub const fn write_count(&self) -> usize {
        self.write_count
    }

    /// Makes the next `store` fail with [`CounterError::Persistence`]
    /// without changing anything.
    pub const fn fail_next_store(&mut self) {
        self.fail_next_store = true;
    }

    /// Makes the next `load` fail with [`CounterError::Persistence`].
    pub const fn fail_next_load(&mut self) {
        self.fail_next_load = true;
    }
}

impl<const N: usize> CounterPersistence for InMemoryCounterStore<N> {
    fn load(&mut self) -> Result<Option<u32>, CounterError> {
        if core::mem::take(&mut self.fail_next_load) {
            return Err(CounterError::Persistence);
        }
        Ok(self.value)
    }

    fn store(&mut self, reserved_up_to: u32) -> Result<(), CounterError> {
        if core::mem::take(&mut self.fail_next_store) {
            return Err(CounterError::Persistence);
        }
        self.value = Some(reserved_up_to);
        self.write_count = self.write_count.saturating_add(1);
        if let Err(v) = self.writes.push(reserved_up_to) {
            // Full: drop the oldest. With N == 0 there is nothing to keep.
            if !self.writes.is_empty() {
                self.writes.rotate_left(1);
            }
            if let Some(last) = self.writes.last_mut() {
                *last = v;
            }
        }
        Ok(())
    }
}

/// Yields one given counter once, then [`CounterError::Exhausted`] (for
/// test vectors and one-shot tools). Behind the `hazmat` feature.
///
/// A counter value of the caller's choosing is a nonce of the caller's
/// choosing: under a key that has protected anything else, the caller must
/// know the value was never used with it. Hence the `dangerous_` name, and
/// no plainly named constructor:
///
/// ```compile_fail
/// use dlms_sec::counter::SingleUse;
/// use dlms_sec::InvocationCounter;
///
/// let _ = SingleUse::new(InvocationCounter::new(1));
/// ```
///
/// The reserved `0xFFFFFFFF` is never yielded: given it, `SingleUse` is
/// exhausted from the start. Not `Clone`, so the value cannot be taken
/// twice.
#[cfg(feature = "hazmat")]
#[derive(Debug)]
pub struct SingleUse(Option<InvocationCounter>);

#[cfg(feature = "hazmat")]
impl SingleUse {
    /// Yields `ic` once. The caller answers for `ic` never having been
    /// used under the key it will protect with.
    #[must_use]
    pub const fn dangerous_new(ic: InvocationCounter) -> Self {
        if ic.value() == InvocationCounter::RESERVED {
            Self(None)
        } else {
            Self(Some(ic))
        }
    }
}

#[cfg(feature = "hazmat")]
impl CounterSource for SingleUse {
    fn next_counter(&mut self) -> Result<InvocationCounter, CounterError> {
        self.0.take().ok_or(CounterError::Exhausted)
    }
}
