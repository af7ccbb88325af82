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
//! * **Each value is issued at most once, ever, including across restarts
//!   and across counters sharing a store**, provided its
//!   [`CounterPersistence`] keeps what it acknowledged and claims
//!   atomically. Values are taken in blocks: before a value at or above
//!   the counter's claim is issued, the store raises the key's ceiling
//!   by `reserve_ahead` (saturating at `0xFFFFFFFF`) and hands back the
//!   values in between; only after that is the value issued. A restarted
//!   counter ([`SendCounter::resume`]) claims a new block, so values
//!   claimed but not used before the restart are skipped, never reused
//!   (GB 9.2.3.3.7.3; docs/design.md, "Invocation counters").
//! * **A lost record is an error.** A key's record is created only when
//!   the caller declares its first use ([`SendCounter::new_key`]); a
//!   resume that finds none fails with
//!   [`CounterError::RecordLost`](crate::error::CounterError::RecordLost)
//!   instead of starting again at the first value.
//! * **Values strictly increase.** A sender never moves its counter
//!   backwards, not even after a key change (GB 9.2.3.3.7.3; docs/design.md, "After a key change"): a
//!   monotonic counter is still unique under every new key.
//! * **Fail closed.** If the store cannot claim, nothing is
//!   issued ([`CounterError::Persistence`](crate::error::CounterError::Persistence)); a retry is safe and issues the
//!   same value the failed call would have.
//! * **Exhaustion is an error, never a wrap.** `0xFFFFFFFE` is the last value
//!   issued; from then on [`CounterError::Exhausted`](crate::error::CounterError::Exhausted) is returned for good
//!   and the key must be replaced (GB 9.2.3.3.7.3).
//!   [`SendCounter::near_exhaustion`]
//!   warns ahead of time.
//!
//! Take every IC from one counter, including the one for an HLS-5
//! f(StoC)/f(CtoS) response: sharing an IC between the HLS response and the
//! APDU that carries it is a nonce reuse (docs/design.md, "HLS-5 counters").
//!
//! # Receive side: [`ReplayGuard`], [`ReplayProof`]
//!
//! One [`ReplayGuard`] per (peer system title, key). It rejects an IC at or
//! below the last accepted one, and the reserved `0xFFFFFFFF`; gaps are
//! allowed (GB 9.2.3.3.7.3: the lowest acceptable value is the
//! last good IC + 1). The check ([`ReplayGuard::check`]) never changes
//! state, so it can run before any AES work. The guard only advances
//! ([`ReplayGuard::accept`]) with a [`ReplayProof`], which only this crate's
//! verification code can create: a frame whose tag did not verify cannot
//! move the floor.
//!
//! When a key is (re-)established, start a fresh guard for it with
//! [`ReplayGuard::new`], which accepts any first IC including 0, so a peer
//! that resets its counters on a key change is still accepted
//! (GB 9.2.3.3.7.3; docs/design.md, "After a key change"). To survive a restart, persist
//! [`ReplayGuard::last_accepted`] and rebuild with [`ReplayGuard::resume`].

mod replay;
mod send;

pub use self::replay::{KeyFingerprint, ReplayGuard, ReplayProof};
#[cfg(feature = "hazmat")]
pub use self::send::SingleUse;
pub use self::send::{
    CounterKey, CounterPersistence, CounterSource, DEFAULT_WARNING_THRESHOLD, InMemoryCounterStore,
    SendCounter, Volatile,
};

#[cfg(test)]
mod tests {
    extern crate alloc;

    use alloc::vec::Vec;

    use super::*;
    use core::num::NonZeroU32;

    use crate::error::CounterError;
    use crate::types::Client;
    use crate::wire::{InvocationCounter, KeyKind, SystemTitle};

    const PEER: SystemTitle = SystemTitle::new(*b"MMM\x00\x00\xBC\x61\x4E");
    const OTHER: SystemTitle = SystemTitle::new(*b"ABC\x00\x00\x00\x00\x01");
    const FP: KeyFingerprint = KeyFingerprint::from_bytes([7; 8]);
    const KEY: CounterKey = CounterKey::own(OTHER, Client::Management, KeyKind::GlobalUnicast, 0);

    fn ic(v: u32) -> InvocationCounter {
        InvocationCounter::new(v)
    }

    fn nz(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN)
    }

    /// Test-only stand-in for the verification code that mints proofs.
    fn verified(peer: SystemTitle, key: KeyKind, v: u32) -> ReplayProof {
        ReplayProof::new(peer, key, FP, ic(v))
    }

    fn issue<C: CounterSource>(c: &mut C, n: usize) -> Vec<u32> {
        (0..n)
            .map(|_| c.next_counter().map(InvocationCounter::value))
            .collect::<Result<_, _>>()
            .unwrap()
    }

    // ---- SendCounter -------------------------------------------------

    #[test]
    fn the_default_warning_comes_a_million_values_before_the_end() {
        assert_eq!(DEFAULT_WARNING_THRESHOLD, 0x0010_0000);
        let at = |first: u32| SendCounter::volatile(ic(first));
        let last_quiet = InvocationCounter::RESERVED - DEFAULT_WARNING_THRESHOLD - 1;
        assert!(!at(last_quiet).near_exhaustion());
        assert!(at(last_quiet + 1).near_exhaustion());
        // Through the trait, directly and through a `&mut`.
        let mut c = at(last_quiet + 1);
        assert!(CounterSource::near_exhaustion(&c));
        assert!(CounterSource::near_exhaustion(&&mut c));
        let mut quiet = at(1);
        assert!(!CounterSource::near_exhaustion(&quiet));
        assert!(!CounterSource::near_exhaustion(&&mut quiet));
    }

    /// A store that hands back the blocks it was given, one per claim.
    struct Hands(Vec<core::ops::Range<u32>>);

    impl CounterPersistence for Hands {
        fn create(&mut self, _: &CounterKey, _: u32) -> Result<(), CounterError> {
            Ok(())
        }
        fn claim(
            &mut self,
            _: &CounterKey,
            _: NonZeroU32,
        ) -> Result<core::ops::Range<u32>, CounterError> {
            Ok(self.0.remove(0))
        }
    }

    #[test]
    fn a_store_handing_back_a_broken_block_issues_nothing() {
        // Backwards, or empty short of the end.
        for block in [core::ops::Range { start: 5, end: 3 }, 7..7] {
            let r = SendCounter::resume(KEY, nz(4), Hands(alloc::vec![block.clone()]));
            assert_eq!(r.err(), Some(CounterError::Persistence), "{block:?}");
        }
        // Then a block that starts below what the first one acknowledged.
        let mut c = SendCounter::resume(KEY, nz(4), Hands(alloc::vec![10..14, 12..20])).unwrap();
        assert_eq!(issue(&mut c, 4), [10, 11, 12, 13]);
        assert_eq!(c.next_counter(), Err(CounterError::Persistence));
        // An empty block at the very end is the end, not a fault.
        let end = InvocationCounter::RESERVED;
        let mut c = SendCounter::resume(KEY, nz(4), Hands(alloc::vec![end..end])).unwrap();
        assert_eq!(c.next_counter(), Err(CounterError::Exhausted));
    }

    #[test]
    fn the_memory_store_keeps_one_key_and_refuses_another() {
        let other = CounterKey::own(PEER, Client::Management, KeyKind::GlobalUnicast, 1);
        let mut store = InMemoryCounterStore::<1>::new();
        assert_eq!(store.create(&KEY, 5), Ok(()));
        assert_eq!(store.create(&KEY, 5), Err(CounterError::RecordExists));
        assert_eq!(store.create(&other, 5), Err(CounterError::Persistence));
    }

    #[test]
    fn issues_in_order_from_first() {
        let mut c =
            SendCounter::new_key(KEY, ic(5), nz(10), InMemoryCounterStore::<4>::new()).unwrap();
        assert_eq!(c.peek(), Some(ic(5)));
        assert_eq!(issue(&mut c, 4), [5, 6, 7, 8]);
        assert_eq!(c.peek(), Some(ic(9)));
    }

    #[test]
    fn volatile_is_new_over_volatile() {
        for first in [0, 5, 0xFFFF_FFFE, u32::MAX] {
            let mut short = SendCounter::volatile(ic(first));
            let mut long = SendCounter::new_key(
                KEY,
                ic(first),
                NonZeroU32::MAX,
                InMemoryCounterStore::<4>::new(),
            )
            .unwrap();
            assert_eq!(short.peek(), long.peek(), "{first}");
            assert_eq!(short.reserve_ahead(), long.reserve_ahead());
            assert_eq!(short.warning_threshold(), long.warning_threshold());
            for _ in 0..3 {
                assert_eq!(short.next_counter(), long.next_counter(), "{first}");
                assert_eq!(short.reserved_up_to(), long.reserved_up_to(), "{first}");
            }
        }
    }

    #[test]
    fn starts_at_zero() {
        let mut c =
            SendCounter::new_key(KEY, ic(0), nz(1), InMemoryCounterStore::<4>::new()).unwrap();
        assert_eq!(c.next_counter(), Ok(ic(0)));
        assert_eq!(c.next_counter(), Ok(ic(1)));
    }

    #[test]
    fn one_write_per_reservation_block() {
        let mut s = InMemoryCounterStore::<16>::new();
        let mut c = SendCounter::new_key(KEY, ic(0), nz(100), &mut s).unwrap();
        assert_eq!(c.store().write_count(), 0, "new_key() claims nothing");
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
        let mut c = SendCounter::new_key(KEY, ic(1), nz(3), &mut s).unwrap();
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
        let mut c = SendCounter::new_key(KEY, ic(10), nz(1), &mut s).unwrap();
        assert_eq!(issue(&mut c, 3), [10, 11, 12]);
        assert_eq!(s.writes(), [11, 12, 13]);
    }

    #[test]
    fn restart_resumes_at_the_ceiling_and_skips() {
        let mut s = InMemoryCounterStore::<8>::new();
        let mut c = SendCounter::new_key(KEY, ic(1), nz(100), &mut s).unwrap();
        assert_eq!(issue(&mut c, 3), [1, 2, 3]);
        // Power loss: `c` is gone, only the store survives.
        assert_eq!(s.value(), Some(101));

        let mut c = SendCounter::resume(KEY, nz(100), &mut s).unwrap();
        assert_eq!(c.peek(), Some(ic(101)));
        assert_eq!(c.next_counter(), Ok(ic(101)));
        // The restart wrote a fresh reservation before issuing 101.
        assert_eq!(s.writes(), [101, 201]);

        // Restart with nothing issued in between still skips forward.
        let mut c = SendCounter::resume(KEY, nz(100), &mut s).unwrap();
        assert_eq!(c.next_counter(), Ok(ic(201)));
    }

    #[test]
    fn new_key_over_an_existing_record_is_refused() {
        let mut s = InMemoryCounterStore::<4>::with_record(KEY, 50);
        assert_eq!(
            SendCounter::new_key(KEY, ic(1000), nz(10), &mut s).map(|_| ()),
            Err(CounterError::RecordExists)
        );
        assert_eq!(s.value(), Some(50), "the record is untouched");
        let mut c = SendCounter::resume(KEY, nz(10), &mut s).unwrap();
        assert_eq!(c.next_counter(), Ok(ic(50)));
        assert_eq!(s.value(), Some(60));
    }

    #[test]
    fn resume_without_a_record_is_refused() {
        let mut s = InMemoryCounterStore::<4>::new();
        assert_eq!(
            SendCounter::resume(KEY, nz(10), &mut s).map(|_| ()),
            Err(CounterError::RecordLost)
        );
        // Another key's record is not this key's.
        let other = CounterKey::own(OTHER, Client::Management, KeyKind::GlobalUnicast, 1);
        let mut s = InMemoryCounterStore::<4>::with_record(other, 9);
        assert_eq!(
            SendCounter::resume(KEY, nz(10), &mut s).map(|_| ()),
            Err(CounterError::RecordLost)
        );
        assert_eq!(s.write_count(), 0);
    }

    #[test]
    fn restart_above_first_uses_the_persisted_value() {
        let mut s = InMemoryCounterStore::<4>::with_record(KEY, 5000);
        let mut c = SendCounter::resume(KEY, nz(10), &mut s).unwrap();
        assert_eq!(c.next_counter(), Ok(ic(5000)));
    }

    #[test]
    fn load_failure_fails_closed() {
        let mut s = InMemoryCounterStore::<4>::with_record(KEY, 7);
        s.fail_next_store();
        assert_eq!(
            SendCounter::resume(KEY, nz(10), &mut s).map(|_| ()),
            Err(CounterError::Persistence)
        );
        // The failure was one-shot; the next start works.
        let mut c = SendCounter::resume(KEY, nz(10), &mut s).unwrap();
        assert_eq!(c.next_counter(), Ok(ic(7)));
    }

    /// A store that reports something other than `Persistence`.
    struct Broken;
    impl CounterPersistence for Broken {
        fn create(&mut self, _: &CounterKey, _: u32) -> Result<(), CounterError> {
            Err(CounterError::Exhausted)
        }
        fn claim(
            &mut self,
            _: &CounterKey,
            _: NonZeroU32,
        ) -> Result<core::ops::Range<u32>, CounterError> {
            Err(CounterError::WrongGuard)
        }
    }

    #[test]
    fn any_store_error_is_reported_as_persistence() {
        assert_eq!(
            SendCounter::new_key(KEY, ic(0), nz(1), Broken).map(|_| ()),
            Err(CounterError::Persistence)
        );
        assert_eq!(
            SendCounter::resume(KEY, nz(1), Broken).map(|_| ()),
            Err(CounterError::Persistence)
        );
    }

    #[test]
    fn store_failure_issues_nothing_and_retry_is_safe() {
        let mut s = InMemoryCounterStore::<8>::new();
        let mut c = SendCounter::new_key(KEY, ic(0), nz(2), &mut s).unwrap();
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
        let mut c = SendCounter::new_key(KEY, ic(0), nz(10), &mut s).unwrap();
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
        let mut c = SendCounter::new_key(KEY, ic(0xFFFF_FFFC), nz(100), &mut s).unwrap();
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
        let mut c = SendCounter::resume(KEY, nz(100), &mut s).unwrap();
        assert_eq!(c.peek(), None);
        assert_eq!(c.next_counter(), Err(CounterError::Exhausted));
        assert_eq!(s.write_count(), 1);
    }

    #[test]
    fn exhaustion_with_reserve_ahead_of_one() {
        let mut c = SendCounter::new_key(
            KEY,
            ic(0xFFFF_FFFE),
            nz(1),
            InMemoryCounterStore::<4>::new(),
        )
        .unwrap();
        assert_eq!(c.next_counter(), Ok(ic(0xFFFF_FFFE)));
        assert_eq!(c.next_counter(), Err(CounterError::Exhausted));
    }

    #[test]
    fn huge_reserve_ahead_saturates() {
        let mut s = InMemoryCounterStore::<4>::new();
        let mut c = SendCounter::new_key(KEY, ic(10), nz(u32::MAX), &mut s).unwrap();
        assert_eq!(issue(&mut c, 2), [10, 11]);
        assert_eq!(s.writes(), [u32::MAX]);
    }

    #[test]
    fn first_reserved_is_exhausted_from_the_start() {
        let mut s = InMemoryCounterStore::<4>::new();
        let mut c = SendCounter::new_key(KEY, ic(u32::MAX), nz(1), &mut s).unwrap();
        assert_eq!(c.peek(), None);
        assert_eq!(c.remaining(), 0);
        assert_eq!(c.next_counter(), Err(CounterError::Exhausted));
        assert_eq!(s.write_count(), 0);
    }

    #[test]
    fn warning_threshold() {
        let c = SendCounter::new_key(KEY, ic(0), nz(1), InMemoryCounterStore::<4>::new()).unwrap();
        assert_eq!(c.remaining(), u32::MAX);
        assert_eq!(c.warning_threshold(), DEFAULT_WARNING_THRESHOLD);
        assert!(!c.near_exhaustion());

        let edge = u32::MAX - DEFAULT_WARNING_THRESHOLD;
        let mut c =
            SendCounter::new_key(KEY, ic(edge - 1), nz(1), InMemoryCounterStore::<4>::new())
                .unwrap();
        assert!(!c.near_exhaustion());
        assert_eq!(c.next_counter(), Ok(ic(edge - 1)));
        assert_eq!(c.remaining(), DEFAULT_WARNING_THRESHOLD);
        assert!(c.near_exhaustion());

        let mut c = SendCounter::new_key(
            KEY,
            ic(0xFFFF_FFF0),
            nz(1),
            InMemoryCounterStore::<4>::new(),
        )
        .unwrap()
        .with_warning_threshold(5);
        assert_eq!(c.remaining(), 15);
        assert!(!c.near_exhaustion());
        assert_eq!(issue(&mut c, 9).len(), 9);
        assert_eq!(c.remaining(), 6);
        assert!(!c.near_exhaustion());
        assert_eq!(issue(&mut c, 1).len(), 1);
        assert!(c.near_exhaustion());

        let c = SendCounter::new_key(KEY, ic(0), nz(1), InMemoryCounterStore::<4>::new())
            .unwrap()
            .with_warning_threshold(0);
        assert!(!c.near_exhaustion());
    }

    #[test]
    fn volatile_restarts_from_first() {
        // Documented hazard: with no persistence a restart reuses values.
        let mut c = SendCounter::volatile(ic(3));
        assert_eq!(c.next_counter(), Ok(ic(3)));
        let mut store = c.into_store();
        let mut c = SendCounter::volatile(ic(3));
        assert_eq!(c.next_counter(), Ok(ic(3)));
        // And the store holds nothing to resume from.
        assert_eq!(store.claim(&KEY, nz(1)), Err(CounterError::RecordLost));
        assert_eq!(
            SendCounter::resume(KEY, nz(1), Volatile).map(|_| ()),
            Err(CounterError::RecordLost)
        );
    }

    #[test]
    fn in_memory_store_log_drops_the_oldest() {
        let mut s = InMemoryCounterStore::<3>::new();
        assert_eq!(s.claim(&KEY, nz(1)), Err(CounterError::RecordLost));
        s.create(&KEY, 0).unwrap();
        for v in 1..=5 {
            assert_eq!(s.claim(&KEY, nz(1)), Ok(v - 1..v));
        }
        assert_eq!(s.writes(), [3, 4, 5]);
        assert_eq!(s.value(), Some(5));
        assert_eq!(s.write_count(), 5);
        assert_eq!(s.key(), Some(&KEY));

        let mut z = InMemoryCounterStore::<0>::with_record(KEY, 0);
        assert_eq!(z.claim(&KEY, nz(9)), Ok(0..9));
        assert!(z.writes().is_empty());
        assert_eq!(z.value(), Some(9));

        let mut one = InMemoryCounterStore::<1>::with_record(KEY, 0);
        one.claim(&KEY, nz(1)).unwrap();
        one.claim(&KEY, nz(1)).unwrap();
        assert_eq!(one.writes(), [2]);
    }

    #[test]
    fn in_memory_store_failures_are_one_shot_and_change_nothing() {
        let mut s = InMemoryCounterStore::<4>::with_record(KEY, 8);
        s.fail_next_store();
        assert_eq!(s.claim(&KEY, nz(1)), Err(CounterError::Persistence));
        assert_eq!(s.value(), Some(8));
        assert_eq!(s.write_count(), 0);
        assert_eq!(s.claim(&KEY, nz(1)), Ok(8..9));
        s.fail_next_store();
        assert_eq!(s.create(&KEY, 0), Err(CounterError::Persistence));
        assert_eq!(s.create(&KEY, 0), Err(CounterError::RecordExists));
        assert_eq!(s.value(), Some(9));
        s.lose_record();
        assert_eq!(s.claim(&KEY, nz(1)), Err(CounterError::RecordLost));
    }

    #[test]
    fn in_memory_store_claims_saturate_and_then_claim_nothing() {
        let mut s = InMemoryCounterStore::<4>::with_record(KEY, u32::MAX - 2);
        assert_eq!(s.claim(&KEY, nz(10)), Ok(u32::MAX - 2..u32::MAX));
        assert_eq!(s.claim(&KEY, nz(10)), Ok(u32::MAX..u32::MAX));
        assert_eq!(s.write_count(), 1);
    }

    #[test]
    fn counter_source_through_mut_ref() {
        fn take(mut src: impl CounterSource) -> Result<InvocationCounter, CounterError> {
            src.next_counter()
        }
        let mut c =
            SendCounter::new_key(KEY, ic(1), nz(1), InMemoryCounterStore::<4>::new()).unwrap();
        assert_eq!(take(&mut c), Ok(ic(1)));
        assert_eq!(take(&mut c), Ok(ic(2)));
    }

    // ---- SingleUse ---------------------------------------------------

    #[cfg(feature = "hazmat")]
    #[test]
    fn single_use_yields_once() {
        let mut s = SingleUse::dangerous_new(ic(0x0123_4567));
        assert_eq!(s.next_counter(), Ok(ic(0x0123_4567)));
        assert_eq!(s.next_counter(), Err(CounterError::Exhausted));
        assert_eq!(s.next_counter(), Err(CounterError::Exhausted));
    }

    #[cfg(feature = "hazmat")]
    #[test]
    fn single_use_never_yields_reserved() {
        let mut s = SingleUse::dangerous_new(ic(u32::MAX));
        assert_eq!(s.next_counter(), Err(CounterError::Exhausted));
        let mut s = SingleUse::dangerous_new(ic(0));
        assert_eq!(s.next_counter(), Ok(ic(0)));
    }

    // ---- ReplayGuard -------------------------------------------------

    #[test]
    fn guard_accepts_any_first_counter_including_zero() {
        let mut g = ReplayGuard::new(PEER, KeyKind::GlobalUnicast, FP);
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
        let mut g = ReplayGuard::new(PEER, KeyKind::Dedicated, FP);
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
        let fresh = ReplayGuard::new(PEER, KeyKind::Dedicated, FP);
        assert_eq!(fresh.check(ic(u32::MAX)), Err(CounterError::Replay));
    }

    #[test]
    fn guard_accepts_gaps() {
        let mut g = ReplayGuard::new(PEER, KeyKind::GlobalUnicast, FP);
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
        let g = ReplayGuard::new(PEER, KeyKind::GlobalUnicast, FP);
        assert_eq!(g.check(ic(5)), Ok(()));
        assert_eq!(g.check(ic(5)), Ok(()));
        assert_eq!(g.last_accepted(), None);
    }

    #[test]
    fn wrong_guard_for_other_peer_or_key() {
        let mut g = ReplayGuard::new(PEER, KeyKind::GlobalUnicast, FP);
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
    fn wrong_guard_for_another_key_of_the_same_kind() {
        let mut g = ReplayGuard::new(PEER, KeyKind::GlobalUnicast, FP);
        let other = ReplayProof::new(
            PEER,
            KeyKind::GlobalUnicast,
            KeyFingerprint::from_bytes([8; 8]),
            ic(9),
        );
        assert_eq!(g.accept(&other), Err(CounterError::WrongGuard));
        assert_eq!(g.last_accepted(), None);
        assert_eq!(g.key_fingerprint(), FP);
        assert_eq!(other.key_fingerprint().to_bytes(), [8; 8]);
    }

    #[test]
    fn resume_keeps_the_floor() {
        let mut g = ReplayGuard::new(PEER, KeyKind::GlobalUnicast, FP);
        g.accept(&verified(PEER, KeyKind::GlobalUnicast, 41))
            .unwrap();
        let saved = g.last_accepted();
        let mut g = ReplayGuard::resume(PEER, KeyKind::GlobalUnicast, FP, saved);
        assert_eq!(g.peer(), PEER);
        assert_eq!(g.key(), KeyKind::GlobalUnicast);
        assert_eq!(g.check(ic(41)), Err(CounterError::Replay));
        assert_eq!(
            g.accept(&verified(PEER, KeyKind::GlobalUnicast, 42)),
            Ok(ic(42))
        );

        let none = ReplayGuard::resume(PEER, KeyKind::GlobalUnicast, FP, None);
        assert_eq!(none, ReplayGuard::new(PEER, KeyKind::GlobalUnicast, FP));

        let spent = ReplayGuard::resume(PEER, KeyKind::GlobalUnicast, FP, Some(ic(u32::MAX)));
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
                let mut g = ReplayGuard::new(PEER, KeyKind::GlobalUnicast, FP);
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
