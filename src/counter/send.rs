//! The send side: where invocation counters come from, and how their
//! reservations persist.

use core::num::NonZeroU32;
use core::ops::Range;

use crate::error::CounterError;
use crate::types::Client;
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

/// Names the key a send counter counts for, and who sends under it.
///
/// A key is one generation of one role of one client of one device
/// (generation 0 for the key installed first, one more for each
/// replacement). The sender's system title is the IV's first half: the
/// meter for its answers, the head-end (DCO) for its commands, so one key
/// has one counter per sending side. A [`CounterPersistence`] keeps one
/// record per `CounterKey`, so a counter cannot take values claimed for
/// another key, and a head-end counts each meter's keys apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    /// The sender's own system title.
    pub sender: SystemTitle,
    /// The device whose key it is.
    pub device: SystemTitle,
    /// The client whose key it is.
    pub client: Client,
    /// Which of the client's encryption keys.
    pub key: KeyKind,
    /// Which generation of that key.
    pub generation: u32,
}

impl CounterKey {
    /// The record name of `device`'s key for `client` of `key` kind,
    /// generation `generation`, as `sender` counts it.
    #[must_use]
    pub const fn new(
        sender: SystemTitle,
        device: SystemTitle,
        client: Client,
        key: KeyKind,
        generation: u32,
    ) -> Self {
        Self {
            sender,
            device,
            client,
            key,
            generation,
        }
    }

    /// The record name of a device's own key for `client`, counted by the
    /// device itself (the meter's answers).
    #[must_use]
    pub const fn own(device: SystemTitle, client: Client, key: KeyKind, generation: u32) -> Self {
        Self::new(device, device, client, key, generation)
    }
}

/// Persistence for sender counters (firmware flash, a DCO database
/// table): one record per [`CounterKey`], holding a ceiling.
///
/// The ceiling is a claim mark, not the last value used: "every value
/// below it may already have been used". A counter never writes a value;
/// it asks the store to raise the ceiling and takes the values between the
/// old and the new one ([`claim`](Self::claim)). Two counters over one
/// store therefore get disjoint values, provided `claim` is atomic (one
/// `UPDATE … RETURNING` statement, one flash write).
///
/// "No record" has two meanings a store keeps apart: a key never used,
/// which the caller declares by having its record
/// [`create`](Self::create)d ([`SendCounter::new_key`]), and a record
/// lost, which a [`claim`](Self::claim) finds
/// ([`CounterError::RecordLost`]) and which no counter papers over by
/// starting again.
pub trait CounterPersistence {
    /// Creates the record of a key used for the first time, with its
    /// ceiling at `first`. Must be durable before `Ok`.
    ///
    /// # Errors
    /// [`CounterError::RecordExists`] when the store holds a record for
    /// `key` (the key has been used: resume it instead); any other error
    /// means the record may not exist.
    fn create(&mut self, key: &CounterKey, first: u32) -> Result<(), CounterError>;

    /// Atomically raises `key`'s ceiling by `n`, saturating at
    /// `0xFFFFFFFF`, and returns the values claimed: the old ceiling up to
    /// (not including) the new one. Must be durable before `Ok`; an empty
    /// range at `0xFFFFFFFF` means nothing is left.
    ///
    /// # Errors
    /// [`CounterError::RecordLost`] when the store holds no record for
    /// `key`; any other error means nothing was claimed.
    fn claim(&mut self, key: &CounterKey, n: NonZeroU32) -> Result<Range<u32>, CounterError>;
}

impl<P: CounterPersistence + ?Sized> CounterPersistence for &mut P {
    fn create(&mut self, key: &CounterKey, first: u32) -> Result<(), CounterError> {
        (**self).create(key, first)
    }

    fn claim(&mut self, key: &CounterKey, n: NonZeroU32) -> Result<Range<u32>, CounterError> {
        (**self).claim(key, n)
    }
}

/// The errors a store may report as themselves; anything else is
/// [`CounterError::Persistence`].
const fn store_error(e: CounterError) -> CounterError {
    match e {
        CounterError::RecordLost | CounterError::RecordExists => e,
        _ => CounterError::Persistence,
    }
}

/// A sender's invocation counter, claiming blocks of values from its
/// store.
///
/// See the [module docs](crate::counter) for what it guarantees. With a
/// `reserve_ahead` of `n`, the store is written once every `n` values, plus
/// once after every restart; a restart skips at most `n` values.
///
/// Deliberately not `Clone`: two copies of a counter would issue the same
/// values. Two counters over one store do not: each claims its own blocks.
///
/// ```
/// use core::num::NonZeroU32;
/// use dlms_sec::counter::{CounterKey, CounterSource, InMemoryCounterStore, SendCounter};
/// use dlms_sec::{Client, InvocationCounter, KeyKind, SystemTitle};
///
/// let mut flash = InMemoryCounterStore::<4>::new();
/// let ahead = NonZeroU32::new(100).unwrap();
/// let own = SystemTitle::new(*b"MMM\x00\x00\x01\x02\x03");
/// let key = CounterKey::own(own, Client::Management, KeyKind::GlobalUnicast, 0);
///
/// // A key used for the first time: its record is created here.
/// let first = InvocationCounter::new(1);
/// let mut tx = SendCounter::new_key(key, first, ahead, &mut flash).unwrap();
/// assert_eq!(tx.next_counter(), Ok(InvocationCounter::new(1)));
/// assert_eq!(tx.next_counter(), Ok(InvocationCounter::new(2)));
/// drop(tx); // power loss
/// assert_eq!(flash.writes(), &[101]);
///
/// // Values 3..=100 were claimed but never used: they are skipped.
/// let mut tx = SendCounter::resume(key, ahead, &mut flash).unwrap();
/// assert_eq!(tx.next_counter(), Ok(InvocationCounter::new(101)));
/// ```
#[derive(Debug)]
pub struct SendCounter<P: CounterPersistence> {
    key: CounterKey,
    /// The next value to issue; `InvocationCounter::RESERVED` once exhausted.
    next: u32,
    /// Values from `next` below this are claimed for this counter.
    reserved_up_to: u32,
    reserve_ahead: NonZeroU32,
    warning_threshold: u32,
    store: P,
}

impl<P: CounterPersistence> SendCounter<P> {
    /// Starts the counter of a key used for the first time, at `first`:
    /// creates the key's record in `store` (ceiling `first`). Nothing is
    /// claimed here; the first [`next_counter`] claims a block before it
    /// issues anything.
    ///
    /// `first` may be anything a key never used can start at, for
    /// instance where the sender's counter for the previous key stopped
    /// (GB 9.2.3.3.7.3).
    ///
    /// # Errors
    /// [`CounterError::RecordExists`] when `store` holds a record for `key`:
    /// the key has been used, so [`resume`](Self::resume) it.
    /// [`CounterError::Persistence`] when the record could not be created.
    ///
    /// [`next_counter`]: CounterSource::next_counter
    pub fn new_key(
        key: CounterKey,
        first: InvocationCounter,
        reserve_ahead: NonZeroU32,
        mut store: P,
    ) -> Result<Self, CounterError> {
        store.create(&key, first.value()).map_err(store_error)?;
        Ok(Self {
            key,
            next: first.value(),
            reserved_up_to: first.value(),
            reserve_ahead,
            warning_threshold: DEFAULT_WARNING_THRESHOLD,
            store,
        })
    }

    /// Restarts the counter of a key that has been used: claims a first
    /// block from `key`'s record, so every value claimed before the
    /// restart, used or not, is skipped.
    ///
    /// # Errors
    /// [`CounterError::RecordLost`] when `store` holds no record for `key`:
    /// where the key's counter stood is unknown, so any value might be a
    /// reuse; recovery is a new key. [`CounterError::Persistence`] when the
    /// claim failed (a retry is safe).
    pub fn resume(
        key: CounterKey,
        reserve_ahead: NonZeroU32,
        store: P,
    ) -> Result<Self, CounterError> {
        let mut counter = Self {
            key,
            next: 0,
            reserved_up_to: 0,
            reserve_ahead,
            warning_threshold: DEFAULT_WARNING_THRESHOLD,
            store,
        };
        counter.claim()?;
        Ok(counter)
    }

    /// Claims the next block from the store and moves to its start.
    fn claim(&mut self) -> Result<(), CounterError> {
        let claimed = self
            .store
            .claim(&self.key, self.reserve_ahead)
            .map_err(store_error)?;
        // A store that hands back values below what it acknowledged to
        // this counter, or an empty block short of the end, is broken.
        if claimed.start < self.reserved_up_to
            || claimed.start > claimed.end
            || (claimed.is_empty() && claimed.end != InvocationCounter::RESERVED)
        {
            return Err(CounterError::Persistence);
        }
        self.next = claimed.start;
        self.reserved_up_to = claimed.end;
        Ok(())
    }

    /// The key this counter counts for.
    #[must_use]
    pub const fn key(&self) -> &CounterKey {
        &self.key
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
            key: CounterKey::own(
                SystemTitle::new([0; 8]),
                Client::Management,
                KeyKind::GlobalUnicast,
                0,
            ),
            next: first.value(),
            // Every value from `first` on is this counter's: it never
            // claims.
            reserved_up_to: InvocationCounter::RESERVED,
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
        if self.next >= self.reserved_up_to && self.next != InvocationCounter::RESERVED {
            // Claim first, issue second: a power loss between the two
            // skips values, it never repeats one.
            self.claim()?;
        }
        let value = self.next;
        // Rule 3 of GB 9.2.3.3.7.3: at the maximum, fail and do not
        // increment. `0xFFFFFFFF` itself is never issued.
        let after = value.checked_add(1).ok_or(CounterError::Exhausted)?;
        self.next = after;
        Ok(InvocationCounter::new(value))
    }
}

/// No persistence: for ephemeral keys and tests.
///
/// Holds no record: [`SendCounter::volatile`] owns every value from its
/// `first` on and never claims, and a claim reports the record lost.
/// Another volatile counter under the same key therefore **reuses counter
/// values**, which is a GCM nonce reuse. Only use it for keys that die
/// with their one counter, such as a dedicated key that lives as long as
/// one association.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Volatile;

impl CounterPersistence for Volatile {
    fn create(&mut self, _key: &CounterKey, _first: u32) -> Result<(), CounterError> {
        Ok(())
    }

    fn claim(&mut self, _key: &CounterKey, _n: NonZeroU32) -> Result<Range<u32>, CounterError> {
        Err(CounterError::RecordLost)
    }
}

/// A `heapless` in-memory store of one key's record, for tests and
/// simulations.
///
/// Keeps the record, a log of the last `N` successful writes (each the new
/// ceiling; the oldest is dropped when full), a count of all successful
/// writes, and can be told to fail the next write or to lose its record.
#[derive(Debug, Default)]
pub struct InMemoryCounterStore<const N: usize> {
    record: Option<(CounterKey, u32)>,
    writes: heapless::Vec<u32, N>,
    write_count: usize,
    fail_next_store: bool,
}

impl<const N: usize> InMemoryCounterStore<N> {
    /// An empty store: no key has a record.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            record: None,
            writes: heapless::Vec::new(),
            write_count: 0,
            fail_next_store: false,
        }
    }

    /// A store that already holds `key`'s record at `ceiling`, as after
    /// earlier runs.
    #[must_use]
    pub const fn with_record(key: CounterKey, ceiling: u32) -> Self {
        let mut s = Self::new();
        s.record = Some((key, ceiling));
        s
    }

    /// The ceiling of the record, `None` if there is none.
    #[must_use]
    pub const fn value(&self) -> Option<u32> {
        match self.record {
            Some((_, ceiling)) => Some(ceiling),
            None => None,
        }
    }

    /// The key the record is for, `None` if there is none.
    #[must_use]
    pub const fn key(&self) -> Option<&CounterKey> {
        match &self.record {
            Some((key, _)) => Some(key),
            None => None,
        }
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

    /// Makes the next `create` or `claim` fail with
    /// [`CounterError::Persistence`] without changing anything.
    pub const fn fail_next_store(&mut self) {
        self.fail_next_store = true;
    }

    /// Loses the record, as a wiped flash page or a deleted row would.
    pub const fn lose_record(&mut self) {
        self.record = None;
    }

    fn log(&mut self, ceiling: u32) {
        self.write_count = self.write_count.saturating_add(1);
        if let Err(v) = self.writes.push(ceiling) {
            // Full: drop the oldest. With N == 0 there is nothing to keep.
            if !self.writes.is_empty() {
                self.writes.rotate_left(1);
            }
            if let Some(last) = self.writes.last_mut() {
                *last = v;
            }
        }
    }
}

impl<const N: usize> CounterPersistence for InMemoryCounterStore<N> {
    fn create(&mut self, key: &CounterKey, first: u32) -> Result<(), CounterError> {
        if core::mem::take(&mut self.fail_next_store) {
            return Err(CounterError::Persistence);
        }
        match self.record {
            Some((held, _)) if held == *key => Err(CounterError::RecordExists),
            // One record only: another key's is not overwritten.
            Some(_) => Err(CounterError::Persistence),
            None => {
                self.record = Some((*key, first));
                Ok(())
            }
        }
    }

    fn claim(&mut self, key: &CounterKey, n: NonZeroU32) -> Result<Range<u32>, CounterError> {
        if core::mem::take(&mut self.fail_next_store) {
            return Err(CounterError::Persistence);
        }
        let Some((held, ceiling)) = self.record.as_mut() else {
            return Err(CounterError::RecordLost);
        };
        if *held != *key {
            return Err(CounterError::RecordLost);
        }
        let old = *ceiling;
        let new = old.saturating_add(n.get());
        if new == old {
            // Nothing left: no write.
            return Ok(old..old);
        }
        *ceiling = new;
        self.log(new);
        Ok(old..new)
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
