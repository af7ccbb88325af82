//! Invocation counters: issuing them on the send side, and refusing replays
//! on the receive side (requirement D-04: monotonic sender counter, receiver
//! replay protection, exhaustion handled, persistence hook).
//!
//! The suite-0 IV is the sender's system title ‖ invocation counter (IC), so
//! under one key an IC used twice by the same sender is a GCM nonce reuse.
//! Everything here exists to make that impossible, and to let a receiver
//! refuse a frame it has already accepted.
//!
//! # Send side: [`CounterSource`], [`SendCounter`]
//!
//! [`SendCounter`] guarantees:
//!
//! * **Each value is issued at most once, ever, including across restarts**,
//!   provided its [`CounterPersistence`] keeps what it acknowledged. Before a
//!   value at or above the persisted reservation is issued, a new
//!   reservation (`value + reserve_ahead`, saturating at `0xFFFFFFFF`) is
//!   stored, and only after the store returns `Ok` is the value issued. A
//!   restarted counter resumes at the persisted reservation, so values that
//!   were reserved but not used before the restart are skipped, never reused
//!   (dlms-suite0.md §6, "Persistence").
//! * **Values strictly increase.** A sender never moves its counter
//!   backwards, not even after a key change (dlms-suite0.md §5.5): a
//!   monotonic counter is still unique under every new key.
//! * **Fail closed.** If the store cannot load or persist, nothing is
//!   issued ([`CounterError::Persistence`]); a retry is safe and issues the
//!   same value the failed call would have.
//! * **Exhaustion is an error, never a wrap.** `0xFFFFFFFE` is the last value
//!   issued; from then on [`CounterError::Exhausted`] is returned for good
//!   and the key must be replaced (GB 9.2.3.3.7.3 as quoted in
//!   dlms-suite0.md §6, rules 3 and 5). [`SendCounter::near_exhaustion`]
//!   warns ahead of time.
//!
//! Take every IC from one counter, including the one for an HLS-5
//! f(StoC)/f(CtoS) response: sharing an IC between the HLS response and the
//! APDU that carries it is a nonce reuse (dlms-suite0.md §4.3).
//!
//! # Receive side: [`ReplayGuard`], [`ReplayProof`]
//!
//! One [`ReplayGuard`] per (peer system title, key). It rejects an IC at or
//! below the last accepted one, and the reserved `0xFFFFFFFF`; gaps are
//! allowed (dlms-suite0.md §6, rule 4: the lowest acceptable value is the
//! last good IC + 1). The check ([`ReplayGuard::check`]) never changes
//! state, so it can run before any AES work. The guard only advances
//! ([`ReplayGuard::accept`]) with a [`ReplayProof`], which only this crate's
//! verification code can create: a frame whose tag did not verify cannot
//! move the floor.
//!
//! When a key is (re-)established, start a fresh guard for it with
//! [`ReplayGuard::new`], which accepts any first IC including 0, so a peer
//! that resets its counters on a key change is still accepted
//! (dlms-suite0.md §5.5). To survive a restart, persist
//! [`ReplayGuard::last_accepted`] and rebuild with [`ReplayGuard::resume`].

use core::num::NonZeroU32;

use crate::error::CounterError;
use crate::wire::{InvocationCounter, KeyKind, SystemTitle};

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
/// See the [module docs](self) for what it guarantees. With a
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
/// test vectors and one-shot tools).
///
/// The reserved `0xFFFFFFFF` is never yielded: given it, `SingleUse` is
/// exhausted from the start. Not `Clone`, so the value cannot be taken
/// twice.
#[derive(Debug)]
pub struct SingleUse(Option<InvocationCounter>);

impl SingleUse {
    /// Yields `ic` once.
    #[must_use]
    pub const fn new(ic: InvocationCounter) -> Self {
        if ic.value() == InvocationCounter::RESERVED {
            Self(None)
        } else {
            Self(Some(ic))
        }
    }
}

impl CounterSource for SingleUse {
    fn next_counter(&mut self) -> Result<InvocationCounter, CounterError> {
        self.0.take().ok_or(CounterError::Exhausted)
    }
}

/// Proof that a frame from `peer` under `key` with counter `ic` verified.
///
/// Only this crate's verification code (suite-0 unprotect, HLS-5) creates
/// one, after the tag checked out; it is what lets a [`ReplayGuard`]
/// advance. No public constructor, not `Clone` or `Copy`.
///
/// Code outside the crate cannot make one, so it cannot move a guard
/// without a verification:
///
/// ```compile_fail,E0624
/// use dlms_sec::counter::ReplayProof;
/// use dlms_sec::{InvocationCounter, KeyKind, SystemTitle};
///
/// let forged = ReplayProof::new(
///     SystemTitle::new(*b"MMM\x00\x00\x01\x02\x03"),
///     KeyKind::GlobalUnicast,
///     InvocationCounter::new(7),
/// );
/// ```
///
/// The same paths do resolve, so the example above fails for the private
/// constructor and nothing else:
///
/// ```
/// use dlms_sec::counter::{ReplayGuard, ReplayProof};
/// use dlms_sec::{InvocationCounter, KeyKind, SystemTitle};
///
/// fn commit(guard: &mut ReplayGuard, proof: &ReplayProof) -> bool {
///     guard.accept(proof).is_ok()
/// }
/// let _ = (SystemTitle::new(*b"MMM\x00\x00\x01\x02\x03"), KeyKind::GlobalUnicast);
/// let _ = InvocationCounter::new(7);
/// let _ = commit;
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a verified frame must be committed to its replay guard"]
pub struct ReplayProof {
    peer: SystemTitle,
    key: KeyKind,
    ic: InvocationCounter,
}

impl ReplayProof {
    /// Mints a proof. Call only after the frame's tag (or the HLS-5
    /// response) verified under `key` with `peer`'s IV.
    pub(crate) const fn new(peer: SystemTitle, key: KeyKind, ic: InvocationCounter) -> Self {
        Self { peer, key, ic }
    }

    /// The sender's system title.
    #[must_use]
    pub const fn peer(&self) -> SystemTitle {
        self.peer
    }

    /// The key the frame verified under.
    #[must_use]
    pub const fn key(&self) -> KeyKind {
        self.key
    }

    /// The frame's invocation counter.
    #[must_use]
    pub const fn invocation_counter(&self) -> InvocationCounter {
        self.ic
    }
}

/// Receive side, one per (peer system title, key): rejects an IC at or
/// below the last accepted one and the reserved `0xFFFFFFFF`.
///
/// Gaps are accepted (a sender may skip values after a restart). Not
/// `Clone`: a stale copy would accept what the original already has.
///
/// ```
/// use dlms_sec::counter::ReplayGuard;
/// use dlms_sec::error::CounterError;
/// use dlms_sec::{InvocationCounter, KeyKind, SystemTitle};
///
/// let meter = SystemTitle::new(*b"MMM\x00\x00\x01\x02\x03");
/// let ic = InvocationCounter::new;
/// // After a restart, with 41 persisted as the last accepted IC:
/// let guard = ReplayGuard::resume(meter, KeyKind::GlobalUnicast, Some(ic(41)));
/// assert_eq!(guard.check(ic(41)), Err(CounterError::Replay));
/// assert_eq!(guard.check(ic(40)), Err(CounterError::Replay));
/// assert_eq!(guard.check(ic(42)), Ok(()));
/// assert_eq!(guard.check(ic(1000)), Ok(()));
/// assert_eq!(guard.check(ic(0xFFFF_FFFF)), Err(CounterError::Replay));
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct ReplayGuard {
    peer: SystemTitle,
    key: KeyKind,
    last_accepted: Option<InvocationCounter>,
}

impl ReplayGuard {
    /// A guard for a newly established key: accepts any first IC
    /// (including 0) except `0xFFFFFFFF`.
    #[must_use]
    pub const fn new(peer: SystemTitle, key: KeyKind) -> Self {
        Self::resume(peer, key, None)
    }

    /// A guard restored after a restart from a persisted
    /// [`last_accepted`](Self::last_accepted).
    #[must_use]
    pub const fn resume(
        peer: SystemTitle,
        key: KeyKind,
        last_accepted: Option<InvocationCounter>,
    ) -> Self {
        Self {
            peer,
            key,
            last_accepted,
        }
    }

    /// Whether a frame carrying `ic` may be accepted. Changes nothing, so
    /// it can run before the (costlier) tag verification.
    ///
    /// # Errors
    /// [`CounterError::Replay`] if `ic` is at or below the last accepted
    /// IC, or is `0xFFFFFFFF` (GB 9.2.3.3.7.3, rule 4 in dlms-suite0.md §6).
    pub const fn check(&self, ic: InvocationCounter) -> Result<(), CounterError> {
        if ic.value() == InvocationCounter::RESERVED {
            return Err(CounterError::Replay);
        }
        match self.last_accepted {
            Some(last) if ic.value() <= last.value() => Err(CounterError::Replay),
            _ => Ok(()),
        }
    }

    /// Records a verified frame: the lowest acceptable IC becomes
    /// `proof`'s IC + 1. Returns that IC (for the caller to persist).
    ///
    /// # Errors
    /// [`CounterError::WrongGuard`] if `proof` is for another peer or key;
    /// [`CounterError::Replay`] if [`check`](Self::check) fails. The guard
    /// is unchanged on error.
    pub fn accept(&mut self, proof: &ReplayProof) -> Result<InvocationCounter, CounterError> {
        if proof.peer != self.peer || proof.key != self.key {
            return Err(CounterError::WrongGuard);
        }
        self.check(proof.ic)?;
        self.last_accepted = Some(proof.ic);
        Ok(proof.ic)
    }

    /// The last accepted IC, `None` if none yet. Persist it to
    /// [`resume`](Self::resume) after a restart.
    #[must_use]
    pub const fn last_accepted(&self) -> Option<InvocationCounter> {
        self.last_accepted
    }

    /// The lowest IC [`check`](Self::check) would accept, `None` if none is
    /// left (the peer's key is exhausted). This is the value a server
    /// reports back in an IC-failure exception response.
    #[must_use]
    pub const fn lowest_acceptable(&self) -> Option<InvocationCounter> {
        let lowest = match self.last_accepted {
            None => 0,
            Some(last) => match last.value().checked_add(1) {
                Some(v) => v,
                None => return None,
            },
        };
        if lowest == InvocationCounter::RESERVED {
            None
        } else {
            Some(InvocationCounter::new(lowest))
        }
    }

    /// The peer whose frames this guard checks.
    #[must_use]
    pub const fn peer(&self) -> SystemTitle {
        self.peer
    }

    /// The key this guard is for.
    #[must_use]
    pub const fn key(&self) -> KeyKind {
        self.key
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;

    use alloc::vec::Vec;

    use super::*;

    const PEER: SystemTitle = SystemTitle::new(*b"MMM\x00\x00\xBC\x61\x4E");
    const OTHER: SystemTitle = SystemTitle::new(*b"ABC\x00\x00\x00\x00\x01");

    fn ic(v: u32) -> InvocationCounter {
        InvocationCounter::new(v)
    }

    fn nz(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN)
    }

    /// Test-only stand-in for the verification code that mints proofs.
    fn verified(peer: SystemTitle, key: KeyKind, v: u32) -> ReplayProof {
        ReplayProof::new(peer, key, ic(v))
    }

    fn issue<C: CounterSource>(c: &mut C, n: usize) -> Vec<u32> {
        (0..n)
            .map(|_| c.next_counter().map(InvocationCounter::value))
            .collect::<Result<_, _>>()
            .unwrap()
    }

    // ---- SendCounter -------------------------------------------------

    #[test]
    fn issues_in_order_from_first() {
        let mut c = SendCounter::new(ic(5), nz(10), Volatile).unwrap();
        assert_eq!(c.peek(), Some(ic(5)));
        assert_eq!(issue(&mut c, 4), [5, 6, 7, 8]);
        assert_eq!(c.peek(), Some(ic(9)));
    }

    #[test]
    fn starts_at_zero() {
        let mut c = SendCounter::new(ic(0), nz(1), Volatile).unwrap();
        assert_eq!(c.next_counter(), Ok(ic(0)));
        assert_eq!(c.next_counter(), Ok(ic(1)));
    }

    #[test]
    fn one_write_per_reservation_block() {
        let mut s = InMemoryCounterStore::<16>::new();
        let mut c = SendCounter::new(ic(0), nz(100), &mut s).unwrap();
        assert_eq!(c.store().write_count(), 0, "new() writes nothing");
        let got = issue(&mut c, 1000);
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        assert_eq!(s.write_count(), 10);
        assert_eq!(
            s.writes(),
            [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
        );
    }

    #[test]
    fn reservation_is_written_before_the_value_is_issued() {
        let mut s = InMemoryCounterStore::<4>::new();
        let mut c = SendCounter::new(ic(1), nz(3), &mut s).unwrap();
        for v in 1..20 {
            assert_eq!(c.next_counter(), Ok(ic(v)));
            let durable = c.store().value().unwrap();
            assert!(v < durable, "{v} issued without a durable reservation");
            assert_eq!(c.reserved_up_to(), durable);
        }
    }

    #[test]
    fn reserve_ahead_of_one_writes_every_value() {
        let mut s = InMemoryCounterStore::<8>::new();
        let mut c = SendCounter::new(ic(10), nz(1), &mut s).unwrap();
        assert_eq!(issue(&mut c, 3), [10, 11, 12]);
        assert_eq!(s.writes(), [11, 12, 13]);
    }

    #[test]
    fn restart_resumes_at_the_ceiling_and_skips() {
        let mut s = InMemoryCounterStore::<8>::new();
        let mut c = SendCounter::new(ic(1), nz(100), &mut s).unwrap();
        assert_eq!(issue(&mut c, 3), [1, 2, 3]);
        // Power loss: `c` is gone, only the store survives.
        assert_eq!(s.value(), Some(101));

        let mut c = SendCounter::new(ic(1), nz(100), &mut s).unwrap();
        assert_eq!(c.peek(), Some(ic(101)));
        assert_eq!(c.next_counter(), Ok(ic(101)));
        // The restart wrote a fresh reservation before issuing 101.
        assert_eq!(s.writes(), [101, 201]);

        // Restart with nothing issued in between still skips forward.
        let mut c = SendCounter::new(ic(1), nz(100), &mut s).unwrap();
        assert_eq!(c.next_counter(), Ok(ic(201)));
    }

    #[test]
    fn restart_never_resumes_below_first() {
        let mut s = InMemoryCounterStore::<4>::with_value(50);
        let mut c = SendCounter::new(ic(1000), nz(10), &mut s).unwrap();
        assert_eq!(c.next_counter(), Ok(ic(1000)));
        assert_eq!(s.value(), Some(1010));
    }

    #[test]
    fn restart_above_first_uses_the_persisted_value() {
        let mut s = InMemoryCounterStore::<4>::with_value(5000);
        let mut c = SendCounter::new(ic(1), nz(10), &mut s).unwrap();
        assert_eq!(c.next_counter(), Ok(ic(5000)));
    }

    #[test]
    fn load_failure_fails_closed() {
        let mut s = InMemoryCounterStore::<4>::with_value(7);
        s.fail_next_load();
        assert_eq!(
            SendCounter::new(ic(0), nz(10), &mut s).map(|_| ()),
            Err(CounterError::Persistence)
        );
        // The failure was one-shot; the next start works.
        let mut c = SendCounter::new(ic(0), nz(10), &mut s).unwrap();
        assert_eq!(c.next_counter(), Ok(ic(7)));
    }

    /// A store whose load reports something other than `Persistence`.
    struct Broken;
    impl CounterPersistence for Broken {
        fn load(&mut self) -> Result<Option<u32>, CounterError> {
            Err(CounterError::Exhausted)
        }
        fn store(&mut self, _: u32) -> Result<(), CounterError> {
            Err(CounterError::WrongGuard)
        }
    }

    #[test]
    fn any_store_error_is_reported_as_persistence() {
        assert_eq!(
            SendCounter::new(ic(0), nz(1), Broken).map(|_| ()),
            Err(CounterError::Persistence)
        );
    }

    #[test]
    fn store_failure_issues_nothing_and_retry_is_safe() {
        let mut s = InMemoryCounterStore::<8>::new();
        let mut c = SendCounter::new(ic(0), nz(2), &mut s).unwrap();
        assert_eq!(issue(&mut c, 2), [0, 1]);

        c.store_mut().fail_next_store();
        assert_eq!(c.next_counter(), Err(CounterError::Persistence));
        assert_eq!(c.peek(), Some(ic(2)), "nothing was consumed");
        assert_eq!(c.store().value(), Some(2), "nothing was written");

        assert_eq!(c.next_counter(), Ok(ic(2)));
        assert_eq!(c.next_counter(), Ok(ic(3)));
        assert_eq!(s.writes(), [2, 4]);
    }

    #[test]
    fn store_failure_inside_a_reservation_does_not_matter() {
        let mut s = InMemoryCounterStore::<8>::new();
        let mut c = SendCounter::new(ic(0), nz(10), &mut s).unwrap();
        assert_eq!(c.next_counter(), Ok(ic(0)));
        // Armed, but values 1..10 need no write.
        c.store_mut().fail_next_store();
        assert_eq!(issue(&mut c, 9), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(c.next_counter(), Err(CounterError::Persistence));
        assert_eq!(c.next_counter(), Ok(ic(10)));
    }

    #[test]
    fn last_value_is_fffffffe_then_exhausted_forever() {
        let mut s = InMemoryCounterStore::<8>::new();
        let mut c = SendCounter::new(ic(0xFFFF_FFFC), nz(100), &mut s).unwrap();
        assert_eq!(c.remaining(), 3);
        assert_eq!(issue(&mut c, 3), [0xFFFF_FFFC, 0xFFFF_FFFD, 0xFFFF_FFFE]);
        // The reservation saturated at 0xFFFFFFFF: one write covered all.
        assert_eq!(c.store().writes(), [0xFFFF_FFFF]);
        assert_eq!(c.remaining(), 0);
        assert_eq!(c.peek(), None);
        for _ in 0..3 {
            assert_eq!(c.next_counter(), Err(CounterError::Exhausted));
        }
        // And still after a restart.
        let mut c = SendCounter::new(ic(0), nz(100), &mut s).unwrap();
        assert_eq!(c.peek(), None);
        assert_eq!(c.next_counter(), Err(CounterError::Exhausted));
        assert_eq!(s.write_count(), 1);
    }

    #[test]
    fn exhaustion_with_reserve_ahead_of_one() {
        let mut c = SendCounter::new(ic(0xFFFF_FFFE), nz(1), Volatile).unwrap();
        assert_eq!(c.next_counter(), Ok(ic(0xFFFF_FFFE)));
        assert_eq!(c.next_counter(), Err(CounterError::Exhausted));
    }

    #[test]
    fn huge_reserve_ahead_saturates() {
        let mut s = InMemoryCounterStore::<4>::new();
        let mut c = SendCounter::new(ic(10), nz(u32::MAX), &mut s).unwrap();
        assert_eq!(issue(&mut c, 2), [10, 11]);
        assert_eq!(s.writes(), [u32::MAX]);
    }

    #[test]
    fn first_reserved_is_exhausted_from_the_start() {
        let mut s = InMemoryCounterStore::<4>::new();
        let mut c = SendCounter::new(ic(u32::MAX), nz(1), &mut s).unwrap();
        assert_eq!(c.peek(), None);
        assert_eq!(c.remaining(), 0);
        assert_eq!(c.next_counter(), Err(CounterError::Exhausted));
        assert_eq!(s.write_count(), 0);
    }

    #[test]
    fn warning_threshold() {
        let c = SendCounter::new(ic(0), nz(1), Volatile).unwrap();
        assert_eq!(c.remaining(), u32::MAX);
        assert_eq!(c.warning_threshold(), DEFAULT_WARNING_THRESHOLD);
        assert!(!c.near_exhaustion());

        let edge = u32::MAX - DEFAULT_WARNING_THRESHOLD;
        let mut c = SendCounter::new(ic(edge - 1), nz(1), Volatile).unwrap();
        assert!(!c.near_exhaustion());
        assert_eq!(c.next_counter(), Ok(ic(edge - 1)));
        assert_eq!(c.remaining(), DEFAULT_WARNING_THRESHOLD);
        assert!(c.near_exhaustion());

        let mut c = SendCounter::new(ic(0xFFFF_FFF0), nz(1), Volatile)
            .unwrap()
            .with_warning_threshold(5);
        assert_eq!(c.remaining(), 15);
        assert!(!c.near_exhaustion());
        assert_eq!(issue(&mut c, 9).len(), 9);
        assert_eq!(c.remaining(), 6);
        assert!(!c.near_exhaustion());
        assert_eq!(issue(&mut c, 1).len(), 1);
        assert!(c.near_exhaustion());

        let c = SendCounter::new(ic(0), nz(1), Volatile)
            .unwrap()
            .with_warning_threshold(0);
        assert!(!c.near_exhaustion());
    }

    #[test]
    fn volatile_restarts_from_first() {
        // Documented hazard: with no persistence a restart reuses values.
        let mut c = SendCounter::new(ic(3), nz(1), Volatile).unwrap();
        assert_eq!(c.next_counter(), Ok(ic(3)));
        let store = c.into_store();
        let mut c = SendCounter::new(ic(3), nz(1), store).unwrap();
        assert_eq!(c.next_counter(), Ok(ic(3)));
    }

    #[test]
    fn in_memory_store_log_drops_the_oldest() {
        let mut s = InMemoryCounterStore::<3>::new();
        assert_eq!(s.load(), Ok(None));
        for v in 1..=5 {
            s.store(v).unwrap();
        }
        assert_eq!(s.writes(), [3, 4, 5]);
        assert_eq!(s.value(), Some(5));
        assert_eq!(s.write_count(), 5);
        assert_eq!(s.load(), Ok(Some(5)));

        let mut z = InMemoryCounterStore::<0>::new();
        z.store(9).unwrap();
        assert!(z.writes().is_empty());
        assert_eq!(z.value(), Some(9));

        let mut one = InMemoryCounterStore::<1>::new();
        one.store(1).unwrap();
        one.store(2).unwrap();
        assert_eq!(one.writes(), [2]);
    }

    #[test]
    fn in_memory_store_failures_are_one_shot_and_change_nothing() {
        let mut s = InMemoryCounterStore::<4>::with_value(8);
        s.fail_next_store();
        assert_eq!(s.store(9), Err(CounterError::Persistence));
        assert_eq!(s.value(), Some(8));
        assert_eq!(s.write_count(), 0);
        assert_eq!(s.store(9), Ok(()));
        s.fail_next_load();
        assert_eq!(s.load(), Err(CounterError::Persistence));
        assert_eq!(s.load(), Ok(Some(9)));
    }

    #[test]
    fn counter_source_through_mut_ref() {
        fn take(mut src: impl CounterSource) -> Result<InvocationCounter, CounterError> {
            src.next_counter()
        }
        let mut c = SendCounter::new(ic(1), nz(1), Volatile).unwrap();
        assert_eq!(take(&mut c), Ok(ic(1)));
        assert_eq!(take(&mut c), Ok(ic(2)));
    }

    // ---- SingleUse ---------------------------------------------------

    #[test]
    fn single_use_yields_once() {
        let mut s = SingleUse::new(ic(0x0123_4567));
        assert_eq!(s.next_counter(), Ok(ic(0x0123_4567)));
        assert_eq!(s.next_counter(), Err(CounterError::Exhausted));
        assert_eq!(s.next_counter(), Err(CounterError::Exhausted));
    }

    #[test]
    fn single_use_never_yields_reserved() {
        let mut s = SingleUse::new(ic(u32::MAX));
        assert_eq!(s.next_counter(), Err(CounterError::Exhausted));
        let mut s = SingleUse::new(ic(0));
        assert_eq!(s.next_counter(), Ok(ic(0)));
    }

    // ---- ReplayGuard -------------------------------------------------

    #[test]
    fn guard_accepts_any_first_counter_including_zero() {
        let mut g = ReplayGuard::new(PEER, KeyKind::GlobalUnicast);
        assert_eq!(g.last_accepted(), None);
        assert_eq!(g.lowest_acceptable(), Some(ic(0)));
        assert_eq!(g.check(ic(0)), Ok(()));
        assert_eq!(
            g.accept(&verified(PEER, KeyKind::GlobalUnicast, 0)),
            Ok(ic(0))
        );
        assert_eq!(g.last_accepted(), Some(ic(0)));
        assert_eq!(g.lowest_acceptable(), Some(ic(1)));
    }

    #[test]
    fn guard_rejects_equal_older_and_reserved() {
        let mut g = ReplayGuard::new(PEER, KeyKind::Dedicated);
        assert_eq!(
            g.accept(&verified(PEER, KeyKind::Dedicated, 10)),
            Ok(ic(10))
        );
        for bad in [10, 9, 0, u32::MAX] {
            assert_eq!(g.check(ic(bad)), Err(CounterError::Replay), "{bad}");
            assert_eq!(
                g.accept(&verified(PEER, KeyKind::Dedicated, bad)),
                Err(CounterError::Replay),
                "{bad}"
            );
            assert_eq!(g.last_accepted(), Some(ic(10)), "unchanged on error");
        }
        let fresh = ReplayGuard::new(PEER, KeyKind::Dedicated);
        assert_eq!(fresh.check(ic(u32::MAX)), Err(CounterError::Replay));
    }

    #[test]
    fn guard_accepts_gaps() {
        let mut g = ReplayGuard::new(PEER, KeyKind::GlobalUnicast);
        for v in [1, 2, 500, 501, 0xFFFF_FFFE] {
            assert_eq!(
                g.accept(&verified(PEER, KeyKind::GlobalUnicast, v)),
                Ok(ic(v))
            );
        }
        assert_eq!(g.lowest_acceptable(), None);
        assert_eq!(g.check(ic(u32::MAX)), Err(CounterError::Replay));
    }

    #[test]
    fn check_changes_nothing() {
        let g = ReplayGuard::new(PEER, KeyKind::GlobalUnicast);
        assert_eq!(g.check(ic(5)), Ok(()));
        assert_eq!(g.check(ic(5)), Ok(()));
        assert_eq!(g.last_accepted(), None);
    }

    #[test]
    fn wrong_guard_for_other_peer_or_key() {
        let mut g = ReplayGuard::new(PEER, KeyKind::GlobalUnicast);
        assert_eq!(
            g.accept(&verified(OTHER, KeyKind::GlobalUnicast, 1)),
            Err(CounterError::WrongGuard)
        );
        assert_eq!(
            g.accept(&verified(PEER, KeyKind::GlobalBroadcast, 1)),
            Err(CounterError::WrongGuard)
        );
        assert_eq!(
            g.accept(&verified(PEER, KeyKind::Dedicated, 1)),
            Err(CounterError::WrongGuard)
        );
        assert_eq!(g.last_accepted(), None);
        // WrongGuard wins over Replay: the proof is not for this guard at all.
        g.accept(&verified(PEER, KeyKind::GlobalUnicast, 5))
            .unwrap();
        assert_eq!(
            g.accept(&verified(OTHER, KeyKind::GlobalUnicast, 3)),
            Err(CounterError::WrongGuard)
        );
    }

    #[test]
    fn resume_keeps_the_floor() {
        let mut g = ReplayGuard::new(PEER, KeyKind::GlobalUnicast);
        g.accept(&verified(PEER, KeyKind::GlobalUnicast, 41))
            .unwrap();
        let saved = g.last_accepted();
        let mut g = ReplayGuard::resume(PEER, KeyKind::GlobalUnicast, saved);
        assert_eq!(g.peer(), PEER);
        assert_eq!(g.key(), KeyKind::GlobalUnicast);
        assert_eq!(g.check(ic(41)), Err(CounterError::Replay));
        assert_eq!(
            g.accept(&verified(PEER, KeyKind::GlobalUnicast, 42)),
            Ok(ic(42))
        );

        let none = ReplayGuard::resume(PEER, KeyKind::GlobalUnicast, None);
        assert_eq!(none, ReplayGuard::new(PEER, KeyKind::GlobalUnicast));

        let spent = ReplayGuard::resume(PEER, KeyKind::GlobalUnicast, Some(ic(u32::MAX)));
        assert_eq!(spent.lowest_acceptable(), None);
        assert_eq!(spent.check(ic(0xFFFF_FFFE)), Err(CounterError::Replay));
    }

    #[test]
    fn proof_accessors() {
        let p = verified(PEER, KeyKind::GlobalBroadcast, 77);
        assert_eq!(p.peer(), PEER);
        assert_eq!(p.key(), KeyKind::GlobalBroadcast);
        assert_eq!(p.invocation_counter(), ic(77));
    }

    // ---- properties with minted proofs --------------------------------

    mod props {
        use proptest::prelude::*;

        use super::*;

        fn counter_value() -> impl Strategy<Value = u32> {
            prop_oneof![0u32..64, (u32::MAX - 64)..=u32::MAX, any::<u32>(),]
        }

        proptest! {
            /// Accepting wherever `check` passes never accepts a repeat, a
            /// non-increasing value or the reserved one, and `accept` agrees
            /// with `check` exactly.
            #[test]
            fn guard_accepts_only_strictly_increasing(
                ics in proptest::collection::vec(counter_value(), 0..64)
            ) {
                let mut g = ReplayGuard::new(PEER, KeyKind::GlobalUnicast);
                let mut accepted: Vec<u32> = Vec::new();
                for v in ics {
                    let model_ok = v != u32::MAX && accepted.last().is_none_or(|&l| v > l);
                    let checked = g.check(ic(v));
                    prop_assert_eq!(checked.is_ok(), model_ok);
                    let before = g.last_accepted();
                    let got = g.accept(&verified(PEER, KeyKind::GlobalUnicast, v));
                    prop_assert_eq!(got.map(|_| ()), checked);
                    if got.is_ok() {
                        prop_assert!(!accepted.contains(&v));
                        accepted.push(v);
                        prop_assert_eq!(g.last_accepted(), Some(ic(v)));
                    } else {
                        prop_assert_eq!(g.last_accepted(), before);
                    }
                }
                prop_assert!(accepted.windows(2).all(|w| matches!(w, [a, b] if a < b)));
                prop_assert!(!accepted.contains(&u32::MAX));
            }
        }
    }
}
