//! Property tests for `dlms_sec::counter` through the public API only.
//!
//! Send side: arbitrary interleavings of `next_counter`, simulated restarts
//! (`SendCounter::resume` over the same store) and injected store
//! failures never yield a value twice, values strictly increase, and every
//! issued value was covered by a durable reservation when it was issued.
//!
//! Receive side: proofs cannot be minted outside the crate, so the guard is
//! advanced the way a restarted receiver would be, with `ReplayGuard::resume`
//! at the accepted value (the `accept` path itself is property-tested inside
//! `src/counter.rs`).

use core::num::NonZeroU32;
use core::ops::Range;

use dlms_sec::counter::{
    CounterKey, CounterPersistence, CounterSource, InMemoryCounterStore, KeyFingerprint,
    ReplayGuard, SendCounter,
};
use dlms_sec::error::CounterError;
use dlms_sec::{Client, InvocationCounter, KeyKind, SystemTitle};
use proptest::prelude::*;

#[derive(Clone, Copy, Debug)]
enum Op {
    Next,
    Restart,
    FailNextStore,
    FailNextLoad,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => Just(Op::Next),
        2 => Just(Op::Restart),
        2 => Just(Op::FailNextStore),
        1 => Just(Op::FailNextLoad),
    ]
}

/// Starting values that reach the interesting places: 0, ordinary values
/// and the last few before `0xFFFFFFFF`.
fn first() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..16, any::<u32>(), (u32::MAX - 40)..=u32::MAX,]
}

fn reserve_ahead() -> impl Strategy<Value = NonZeroU32> {
    prop_oneof![1u32..=8, 1u32..=200, Just(u32::MAX), any::<u32>(),]
        .prop_map(|n| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

type Store = InMemoryCounterStore<4>;

const FP: KeyFingerprint = KeyFingerprint::from_bytes([3; 8]);

const KEY: CounterKey = CounterKey::own(
    SystemTitle::new(*b"MMM\x00\x00\xBC\x61\x4E"),
    Client::Management,
    KeyKind::GlobalUnicast,
    0,
);

/// Restarts a counter, retrying once if an injected store failure fires.
///
/// (The first attempt is always dropped rather than returned: returning a
/// reborrow from one arm and reusing `store` in the other is the case the
/// borrow checker cannot yet see through. A failed claim claims nothing,
/// so starting twice is harmless.)
fn restart(ahead: NonZeroU32, store: &mut Store) -> Result<SendCounter<&mut Store>, TestCaseError> {
    match SendCounter::resume(KEY, ahead, &mut *store) {
        Ok(_) => {}
        Err(e) => {
            prop_assert_eq!(e, CounterError::Persistence);
        }
    }
    SendCounter::resume(KEY, ahead, store)
        .map_err(|e| TestCaseError::fail(format!("second start failed: {e:?}")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn send_counter_never_repeats(
        first in first(),
        ahead in reserve_ahead(),
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        let mut store = Store::new();
        let mut issued: Vec<u32> = Vec::new();
        let mut exhausted = false;
        let mut durable = store.value();

        let mut counter = SendCounter::new_key(KEY, InvocationCounter::new(first), ahead, &mut store)
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        for op in ops {
            match op {
                Op::Next => {
                    let before = counter.peek();
                    match counter.next_counter() {
                        Ok(ic) => {
                            let v = ic.value();
                            prop_assert!(!exhausted, "issued {v:#x} after exhaustion");
                            prop_assert_ne!(v, InvocationCounter::RESERVED);
                            prop_assert_eq!(Some(ic), before);
                            prop_assert!(issued.last().is_none_or(|&l| v > l));
                            prop_assert!(v >= first);
                            // Covered by a durable reservation when issued.
                            let ceiling = counter.store().value();
                            prop_assert!(ceiling.is_some_and(|c| v < c));
                            issued.push(v);
                        }
                        Err(CounterError::Exhausted) => {
                            prop_assert_eq!(before, None);
                            prop_assert_eq!(counter.remaining(), 0);
                            exhausted = true;
                        }
                        Err(CounterError::Persistence) => {
                            prop_assert_eq!(counter.peek(), before, "nothing consumed");
                        }
                        Err(e) => prop_assert!(false, "unexpected {e:?}"),
                    }
                }
                Op::Restart => {
                    let mut fresh = restart(ahead, &mut store);
                    // A restart over an exhausted record claims nothing.
                    if let Ok(c) = fresh.as_mut() {
                        prop_assert!(!exhausted || c.peek().is_none());
                    }
                    counter = fresh?;
                    if exhausted {
                        prop_assert_eq!(counter.peek(), None);
                    }
                }
                Op::FailNextStore => counter.store_mut().fail_next_store(),
                Op::FailNextLoad => {
                    // A failing claim at the next restart (or issue).
                    counter.store_mut().fail_next_store();
                }
            }
            // The durable reservation never goes backwards.
            let now = counter.store().value();
            prop_assert!(now >= durable);
            durable = now;
        }

        let mut distinct = issued.clone();
        distinct.sort_unstable();
        distinct.dedup();
        prop_assert_eq!(distinct.len(), issued.len());
        prop_assert!(store.writes().windows(2).all(|w| matches!(w, [a, b] if a < b)));
    }

    /// With no failures and no restarts, values are consecutive and the
    /// store is written once per `reserve_ahead` values.
    #[test]
    fn write_count_matches_blocks(
        first in 0u32..1_000_000,
        ahead in 1u32..=64,
        n in 0usize..500,
    ) {
        let ahead_nz = NonZeroU32::new(ahead).unwrap_or(NonZeroU32::MIN);
        let mut store = Store::new();
        let mut c = SendCounter::new_key(KEY, InvocationCounter::new(first), ahead_nz, &mut store)
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let mut expected = first;
        for _ in 0..n {
            prop_assert_eq!(c.next_counter(), Ok(InvocationCounter::new(expected)));
            expected = expected.saturating_add(1);
        }
        let blocks = n.div_ceil(usize::try_from(ahead).unwrap_or(usize::MAX));
        prop_assert_eq!(store.write_count(), blocks);
    }

    /// `check` agrees with the model "strictly above the last accepted,
    /// never 0xFFFFFFFF"; a guard advanced by `resume` at each accepted
    /// value never accepts a repeat or a non-increasing value.
    #[test]
    fn guard_check_never_admits_a_repeat(
        ics in proptest::collection::vec(
            prop_oneof![0u32..64, (u32::MAX - 64)..=u32::MAX, any::<u32>()],
            0..64,
        ),
    ) {
        let peer = SystemTitle::new(*b"MMM\x00\x00\xBC\x61\x4E");
        let key = KeyKind::GlobalUnicast;
        let mut guard = ReplayGuard::new(peer, key, FP);
        let mut accepted: Vec<u32> = Vec::new();
        for v in ics {
            let ic = InvocationCounter::new(v);
            let model_ok = v != u32::MAX && accepted.last().is_none_or(|&l| v > l);
            let got = guard.check(ic);
            prop_assert_eq!(got.is_ok(), model_ok);
            match got {
                Ok(()) => {
                    prop_assert!(!accepted.contains(&v));
                    accepted.push(v);
                    guard = ReplayGuard::resume(peer, key, FP, Some(ic));
                    prop_assert_eq!(guard.check(ic), Err(CounterError::Replay));
                }
                Err(e) => prop_assert_eq!(e, CounterError::Replay),
            }
            prop_assert_eq!(guard.last_accepted(), accepted.last().copied().map(InvocationCounter::new));
        }
        prop_assert!(accepted.windows(2).all(|w| matches!(w, [a, b] if a < b)));
    }
}

/// `CounterPersistence` is usable through `&mut` by outside stores, too.
#[test]
fn outside_store_through_mut_ref() {
    struct Row(Option<u32>);
    impl CounterPersistence for Row {
        fn create(&mut self, _: &CounterKey, first: u32) -> Result<(), CounterError> {
            self.0 = Some(first);
            Ok(())
        }
        fn claim(&mut self, _: &CounterKey, n: NonZeroU32) -> Result<Range<u32>, CounterError> {
            let old = self.0.ok_or(CounterError::RecordLost)?;
            let new = old.saturating_add(n.get());
            self.0 = Some(new);
            Ok(old..new)
        }
    }
    let mut row = Row(Some(900));
    let ahead = NonZeroU32::new(50).unwrap_or(NonZeroU32::MIN);
    let mut c = SendCounter::resume(KEY, ahead, &mut row).unwrap();
    assert_eq!(c.next_counter(), Ok(InvocationCounter::new(900)));
    assert_eq!(row.0, Some(950));
}
