//! Send counters that share or lose their persistent record must never
//! issue a value twice under one key.

use core::cell::RefCell;
use core::num::NonZeroU32;
use std::collections::BTreeSet;

use core::ops::Range;

use dlms_sec::counter::{
    CounterKey, CounterPersistence, CounterSource, InMemoryCounterStore, SendCounter,
};
use dlms_sec::error::CounterError;
use dlms_sec::{Client, InvocationCounter, KeyKind, SystemTitle};

const KEY: CounterKey = CounterKey::own(
    SystemTitle::new(*b"MMM\x00\x00\x00\x00\x01"),
    Client::Management,
    KeyKind::GlobalUnicast,
    0,
);

/// One store behind two handles, as two processes share one database row.
struct Shared<'a>(&'a RefCell<InMemoryCounterStore<8>>);

impl CounterPersistence for Shared<'_> {
    fn create(&mut self, key: &CounterKey, first: u32) -> Result<(), CounterError> {
        self.0.borrow_mut().create(key, first)
    }

    fn claim(&mut self, key: &CounterKey, n: NonZeroU32) -> Result<Range<u32>, CounterError> {
        self.0.borrow_mut().claim(key, n)
    }
}

fn ahead(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

#[test]
fn two_counters_over_one_store_never_issue_the_same_value() {
    let row = RefCell::new(InMemoryCounterStore::<8>::new());
    let first = InvocationCounter::new(1);
    let mut a = SendCounter::new_key(KEY, first, ahead(4), Shared(&row)).unwrap();
    let mut b = SendCounter::resume(KEY, ahead(4), Shared(&row)).unwrap();
    let mut issued = BTreeSet::new();
    for _ in 0..20 {
        for v in [a.next_counter(), b.next_counter()] {
            let v = v.unwrap().value();
            assert!(issued.insert(v), "{v} issued twice");
        }
    }
    // A second `new_key` over the same store is refused: the key is used.
    assert_eq!(
        SendCounter::new_key(KEY, first, ahead(4), Shared(&row)).map(|_| ()),
        Err(CounterError::RecordExists)
    );
}

#[test]
fn a_lost_record_is_refused_not_restarted_from_first() {
    let mut flash = InMemoryCounterStore::<8>::new();
    let first = InvocationCounter::new(1);
    let mut issued = BTreeSet::new();
    let mut tx = SendCounter::new_key(KEY, first, ahead(10), &mut flash).unwrap();
    for _ in 0..5 {
        issued.insert(tx.next_counter().unwrap().value());
    }
    // The record is gone; the key has been used.
    flash.lose_record();
    let restarted =
        SendCounter::resume(KEY, ahead(10), &mut flash).and_then(|mut tx| tx.next_counter());
    assert!(restarted.is_err(), "restarted at {restarted:?}");
    assert_eq!(restarted, Err(CounterError::RecordLost));
    if let Ok(v) = restarted {
        assert!(!issued.contains(&v.value()), "{v:?} issued twice");
    }
}
