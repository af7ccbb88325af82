//! Send counters that share or lose their persistent record must never
//! issue a value twice under one key.

use core::cell::RefCell;
use core::num::NonZeroU32;
use std::collections::BTreeSet;

use dlms_sec::InvocationCounter;
use dlms_sec::counter::{CounterPersistence, CounterSource, InMemoryCounterStore, SendCounter};
use dlms_sec::error::CounterError;

/// One store behind two handles, as two processes share one database row.
struct Shared<'a>(&'a RefCell<InMemoryCounterStore<8>>);

impl CounterPersistence for Shared<'_> {
    fn load(&mut self) -> Result<Option<u32>, CounterError> {
        self.0.borrow_mut().load()
    }

    fn store(&mut self, reserved_up_to: u32) -> Result<(), CounterError> {
        self.0.borrow_mut().store(reserved_up_to)
    }
}

fn ahead(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

#[test]
fn two_counters_over_one_store_never_issue_the_same_value() {
    let row = RefCell::new(InMemoryCounterStore::<8>::new());
    let first = InvocationCounter::new(1);
    let mut a = SendCounter::new(first, ahead(4), Shared(&row)).unwrap();
    let mut b = SendCounter::new(first, ahead(4), Shared(&row)).unwrap();
    let mut issued = BTreeSet::new();
    for _ in 0..20 {
        for c in [&mut a as &mut dyn CounterSource, &mut b] {
            let v = c.next_counter().unwrap().value();
            assert!(issued.insert(v), "{v} issued twice");
        }
    }
}

/// A store whose record can vanish (a wiped flash page, a deleted row).
#[derive(Default)]
struct Losable {
    value: Option<u32>,
}

impl CounterPersistence for &mut Losable {
    fn load(&mut self) -> Result<Option<u32>, CounterError> {
        Ok(self.value)
    }

    fn store(&mut self, reserved_up_to: u32) -> Result<(), CounterError> {
        self.value = Some(reserved_up_to);
        Ok(())
    }
}

#[test]
fn a_lost_record_is_refused_not_restarted_from_first() {
    let mut flash = Losable::default();
    let first = InvocationCounter::new(1);
    let mut issued = BTreeSet::new();
    let mut tx = SendCounter::new(first, ahead(10), &mut flash).unwrap();
    for _ in 0..5 {
        issued.insert(tx.next_counter().unwrap().value());
    }
    drop(tx);
    // The record is gone; the key has been used.
    flash.value = None;
    let restarted =
        SendCounter::new(first, ahead(10), &mut flash).and_then(|mut tx| tx.next_counter());
    assert!(restarted.is_err(), "restarted at {restarted:?}");
    if let Ok(v) = restarted {
        assert!(!issued.contains(&v.value()), "{v:?} issued twice");
    }
}
