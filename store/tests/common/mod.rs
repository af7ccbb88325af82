//! The backend-neutral behaviour suite: every [`Store`] method's documented
//! behaviour, run by each backend's test file on fresh, empty stores.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::missing_panics_doc,
    dead_code,
    reason = "test code: a panic is a failed test"
)]

use core::num::NonZeroU32;
use std::collections::BTreeSet;

use dlms_sec::audit::{
    AuditAction, AuditEvent, AuditSink, CampaignId, EVENT_LEN, NodeName, Outcome, Principal,
    Reason, RequestId, Timestamp,
};
use dlms_sec::counter::{CounterKey, CounterPersistence, CounterSource, SendCounter};
use dlms_sec::error::{CounterError, Error, KeyError};
use dlms_sec::key::AuditKey;
use dlms_sec::key::package::PackagedRecord;
use dlms_sec::keystore::{KeySlot, KeyStore, conformance};
use dlms_sec::{Client, InvocationCounter, KeyKind, KeyRole, SystemTitle};
use dlms_sec_store::{
    AuditBreakKind, CampaignStatus, DatabaseAuditSink, DeviceEntry, KekRecords, Progress,
    ProgressState, Store, StoreError, verify_audit, verify_audit_with,
};

/// A fresh, empty store.
pub type Open<'a> = &'a dyn Fn() -> Store;

pub const DEV: SystemTitle = SystemTitle::new([0x4D, 0x4D, 0x4D, 0, 0, 0, 0, 1]);
pub const DEV2: SystemTitle = SystemTitle::new([0x4D, 0x4D, 0x4D, 0, 0, 0, 0, 2]);
pub const HEAD_END: SystemTitle = SystemTitle::new(*b"DCO\x00\x00\x00\x00\x01");

pub const fn slot(device: SystemTitle, client: Option<Client>, role: KeyRole) -> KeySlot {
    KeySlot {
        device,
        client,
        role,
    }
}

pub const MK: KeySlot = slot(DEV, None, KeyRole::Master);
pub const AK: KeySlot = slot(DEV, Some(Client::Management), KeyRole::Authentication);
pub const GUEK: KeySlot = slot(
    DEV,
    Some(Client::Management),
    KeyRole::GlobalUnicastEncryption,
);

pub fn rec(slot: &KeySlot, generation: u32, seed: u8) -> PackagedRecord {
    conformance::test_record(slot, generation, seed).unwrap()
}

pub const fn ckey(generation: u32) -> CounterKey {
    CounterKey::new(
        HEAD_END,
        DEV,
        Client::Management,
        KeyKind::GlobalUnicast,
        generation,
    )
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

pub fn audit_key() -> AuditKey {
    AuditKey::from_bytes([0xA7; 16])
}

pub fn event(i: u32) -> AuditEvent {
    AuditEvent::new(
        AuditAction::Packaged,
        Outcome::Success,
        Timestamp(1_700_000_000),
    )
    .with_device(DEV)
    .with_generation(i)
}

/// An event with every context field (audit v2): 70 octets encoded, the
/// context from octet 33 (flags 33, principal kind 34, length 35, name
/// 36..40, node length 40, name 41..47, request 47..63, campaign length 63,
/// id 64..69, reason 69).
pub fn event_v2(i: u32) -> AuditEvent {
    event(i)
        .with_principal(Principal::operator("op-1").unwrap())
        .with_node(NodeName::new("node-a").unwrap())
        .with_request(RequestId([u8::try_from(i % 256).unwrap(); 16]))
        .with_campaign(CampaignId::new("cmp-1").unwrap())
        .with_reason(Reason::SupportAccess)
}

/// Every behaviour, each on a fresh store.
pub fn all(open: Open<'_>) {
    conformance_suite(open);
    schema_is_current(&open());
    rollback_refused(&open());
    put_initial_many_is_all_or_nothing(&open());
    put_initial_many_refuses_a_slot_named_twice_or_pending(&open());
    activate_all_is_all_or_nothing(&open());
    listing_pages(&open());
    keystore_errors_map_to_the_core(&open());
    counter_create_and_lost(&open());
    claims_are_disjoint_across_threads(&open());
    claims_saturate(&open());
    fence_raises_every_ceiling(&open());
    counters_through_the_core(&open());
    floors_never_lowered(&open());
    accept_each_counter_once(&open());
    floors_race_to_the_max(&open());
    registry(&open());
    registry_pages(&open());
    due_order_horizon_limit(&open());
    progress(&open());
    campaigns(&open());
    campaigns_listed(&open());
    record_keks(&open());
    leases(&open());
    audit_chain(&open());
    audit_visitor(&open());
    audit_mixed_versions(&open());
    audit_race_fails_the_loser(&open());
}

pub fn conformance_suite(open: Open<'_>) {
    let stores: Vec<Store> = (0..16).map(|_| open()).collect();
    let mut next = stores.iter();
    conformance::run(|| next.next().expect("enough stores")).unwrap();
}

pub fn schema_is_current(s: &Store) {
    assert_eq!(s.schema_version().unwrap(), dlms_sec_store::SCHEMA_VERSION);
}

pub fn rollback_refused(s: &Store) {
    s.put_initial(&rec(&MK, 5, 1)).unwrap();
    for g in [5, 4, 0] {
        assert_eq!(
            s.put_pending(&rec(&MK, g, 2)),
            Err(StoreError::StaleGeneration)
        );
    }
    assert_eq!(s.pending(&MK).unwrap(), None);
    s.put_pending(&rec(&MK, 6, 3)).unwrap();
    s.activate(&MK, 6).unwrap();
    assert_eq!(
        s.put_pending(&rec(&MK, 5, 4)),
        Err(StoreError::StaleGeneration)
    );
    assert_eq!(s.activate(&MK, 5), Err(StoreError::NoPending));
    assert_eq!(s.active(&MK).unwrap(), rec(&MK, 6, 3));
    assert_eq!(s.previous(&MK).unwrap(), Some(rec(&MK, 5, 1)));
    assert_eq!(
        s.put_initial(&rec(&MK, 9, 5)),
        Err(StoreError::StaleGeneration)
    );
}

pub fn put_initial_many_is_all_or_nothing(s: &Store) {
    s.put_initial(&rec(&GUEK, 0, 9)).unwrap();
    let batch = [rec(&MK, 0, 1), rec(&AK, 0, 2), rec(&GUEK, 0, 3)];
    assert_eq!(s.put_initial_many(&batch), Err(StoreError::StaleGeneration));
    assert_eq!(s.active(&MK), Err(StoreError::NotFound));
    assert_eq!(s.active(&AK), Err(StoreError::NotFound));
    assert_eq!(s.active(&GUEK).unwrap(), rec(&GUEK, 0, 9));
    s.put_initial_many(&batch[..2]).unwrap();
    assert_eq!(s.active(&MK).unwrap(), batch[0]);
    assert_eq!(s.active(&AK).unwrap(), batch[1]);
}

pub fn put_initial_many_refuses_a_slot_named_twice_or_pending(s: &Store) {
    let twice = [rec(&AK, 0, 1), rec(&GUEK, 0, 2), rec(&AK, 0, 3)];
    assert_eq!(s.put_initial_many(&twice), Err(StoreError::StaleGeneration));
    assert_eq!(s.active(&AK), Err(StoreError::NotFound));
    assert_eq!(s.active(&GUEK), Err(StoreError::NotFound));
    // A slot that holds only a pending generation is not empty.
    s.put_pending(&rec(&MK, 1, 4)).unwrap();
    let batch = [rec(&AK, 0, 5), rec(&MK, 0, 6)];
    assert_eq!(s.put_initial_many(&batch), Err(StoreError::StaleGeneration));
    assert_eq!(s.active(&AK), Err(StoreError::NotFound));
    assert_eq!(s.pending(&MK).unwrap(), Some(rec(&MK, 1, 4)));
    assert_eq!(s.put_initial_many(&[]), Ok(()));
}

pub fn activate_all_is_all_or_nothing(s: &Store) {
    for (i, sl) in [MK, AK, GUEK].iter().enumerate() {
        let i = u8::try_from(i).unwrap();
        s.put_initial(&rec(sl, 0, i)).unwrap();
        s.put_pending(&rec(sl, 1, 10 + i)).unwrap();
    }
    // The GUEK's generation 2 is not pending: nothing is activated.
    assert_eq!(
        s.activate_all(&[(AK, 1), (GUEK, 2), (MK, 1)]),
        Err(StoreError::NoPending)
    );
    for (i, sl) in [MK, AK, GUEK].iter().enumerate() {
        let i = u8::try_from(i).unwrap();
        assert_eq!(s.active(sl).unwrap(), rec(sl, 0, i), "{sl}");
        assert_eq!(s.pending(sl).unwrap(), Some(rec(sl, 1, 10 + i)), "{sl}");
        assert_eq!(s.previous(sl).unwrap(), None, "{sl}");
    }
    s.activate_all(&[(AK, 1), (GUEK, 1), (MK, 1)]).unwrap();
    for (i, sl) in [MK, AK, GUEK].iter().enumerate() {
        let i = u8::try_from(i).unwrap();
        assert_eq!(s.active(sl).unwrap(), rec(sl, 1, 10 + i), "{sl}");
        assert_eq!(s.pending(sl).unwrap(), None, "{sl}");
        assert_eq!(s.previous(sl).unwrap(), Some(rec(sl, 0, i)), "{sl}");
    }
    // A retry is a no-op that succeeds.
    s.activate_all(&[(AK, 1), (GUEK, 1), (MK, 1)]).unwrap();
    assert_eq!(s.previous(&MK).unwrap(), Some(rec(&MK, 0, 0)));
}

pub fn listing_pages(s: &Store) {
    let devices: Vec<SystemTitle> = (0..5u8)
        .map(|i| SystemTitle::new([9, 0, 0, 0, 0, 0, 0, 4 - i]))
        .collect();
    for d in &devices {
        s.put_initial(&rec(&slot(*d, None, KeyRole::Master), 0, 1))
            .unwrap();
    }
    let mut sorted = devices.clone();
    sorted.sort();
    assert_eq!(s.devices(None, 2).unwrap(), sorted[..2]);
    assert_eq!(s.devices(Some(&sorted[1]), 2).unwrap(), sorted[2..4]);
    assert_eq!(s.devices(Some(&sorted[4]), 2).unwrap(), []);
    let mut walked = Vec::new();
    (&s).for_each_device(&mut |d| walked.push(d)).unwrap();
    assert_eq!(walked, sorted);
    assert_eq!(
        s.slots(&sorted[0]).unwrap(),
        [slot(sorted[0], None, KeyRole::Master)]
    );
}

pub fn keystore_errors_map_to_the_core(s: &Store) {
    let mut ks = s;
    assert_eq!(
        KeyStore::active(&ks, &MK),
        Err(Error::Key(KeyError::NotFound))
    );
    assert_eq!(
        KeyStore::activate(&mut ks, &MK, 0),
        Err(Error::Key(KeyError::NoPending))
    );
    KeyStore::put_initial(&mut ks, &rec(&MK, 3, 1)).unwrap();
    assert_eq!(
        KeyStore::put_pending(&mut ks, &rec(&MK, 2, 1)),
        Err(Error::Key(KeyError::StaleGeneration))
    );
    assert!(matches!(
        StoreError::Unavailable.to_key_error(),
        Error::Key(KeyError::Provider(_))
    ));
    assert_eq!(
        StoreError::Corrupt { what: "x".into() }.to_key_error(),
        Error::Key(KeyError::Corrupted)
    );
}

pub fn counter_create_and_lost(s: &Store) {
    assert_eq!(
        s.counter_claim(&ckey(0), nz(5)),
        Err(StoreError::CounterLost)
    );
    assert_eq!(s.counter_ceiling(&ckey(0)).unwrap(), None);
    s.counter_create(&ckey(0), 7).unwrap();
    assert_eq!(
        s.counter_create(&ckey(0), 0),
        Err(StoreError::CounterExists)
    );
    assert_eq!(s.counter_ceiling(&ckey(0)).unwrap(), Some(7));
    assert_eq!(s.counter_claim(&ckey(0), nz(5)).unwrap(), 7..12);
    assert_eq!(s.counter_claim(&ckey(0), nz(1)).unwrap(), 12..13);
    // Another generation, sender or client is another record.
    assert_eq!(
        s.counter_claim(&ckey(1), nz(1)),
        Err(StoreError::CounterLost)
    );
    let mut other = ckey(0);
    other.sender = DEV2;
    assert_eq!(s.counter_claim(&other, nz(1)), Err(StoreError::CounterLost));
    other = ckey(0);
    other.client = Client::Firmware;
    assert_eq!(s.counter_claim(&other, nz(1)), Err(StoreError::CounterLost));
    other = ckey(0);
    other.key = KeyKind::Dedicated;
    assert_eq!(s.counter_claim(&other, nz(1)), Err(StoreError::CounterLost));
}

pub fn claims_are_disjoint_across_threads(s: &Store) {
    s.counter_create(&ckey(0), 100).unwrap();
    let ranges: Vec<core::ops::Range<u32>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                scope.spawn(move || {
                    (0..50)
                        .map(|i| s.counter_claim(&ckey(0), nz(1 + (t + i) % 5)).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut sorted = ranges.clone();
    sorted.sort_by_key(|r| r.start);
    let mut at = 100;
    for r in &sorted {
        assert_eq!(r.start, at, "claims overlap or leave a gap: {r:?}");
        assert!(r.end > r.start);
        at = r.end;
    }
    assert_eq!(s.counter_ceiling(&ckey(0)).unwrap(), Some(at));
}

pub fn claims_saturate(s: &Store) {
    s.counter_create(&ckey(0), 0xFFFF_FFF0).unwrap();
    assert_eq!(
        s.counter_claim(&ckey(0), nz(100)).unwrap(),
        0xFFFF_FFF0..u32::MAX
    );
    assert_eq!(
        s.counter_claim(&ckey(0), nz(1)).unwrap(),
        u32::MAX..u32::MAX
    );
    s.counter_create(&ckey(1), 5).unwrap();
    assert_eq!(
        s.counter_claim(&ckey(1), NonZeroU32::MAX).unwrap(),
        5..u32::MAX
    );
}

pub fn fence_raises_every_ceiling(s: &Store) {
    s.counter_create(&ckey(0), 10).unwrap();
    s.counter_create(&ckey(1), 0xFFFF_FFF0).unwrap();
    s.counter_create(&ckey(2), u32::MAX).unwrap();
    assert_eq!(s.fence(0).unwrap(), 0);
    assert_eq!(s.counter_ceiling(&ckey(0)).unwrap(), Some(10));
    assert_eq!(s.fence(1000).unwrap(), 2);
    assert_eq!(s.counter_ceiling(&ckey(0)).unwrap(), Some(1010));
    assert_eq!(s.counter_ceiling(&ckey(1)).unwrap(), Some(u32::MAX));
    assert_eq!(s.counter_ceiling(&ckey(2)).unwrap(), Some(u32::MAX));
    assert_eq!(s.counter_claim(&ckey(0), nz(1)).unwrap(), 1010..1011);
}

pub fn counters_through_the_core(s: &Store) {
    let mut p = s;
    assert_eq!(p.claim(&ckey(0), nz(1)), Err(CounterError::RecordLost));
    {
        let first = InvocationCounter::new(1);
        let mut tx = SendCounter::new_key(ckey(0), first, nz(10), s).unwrap();
        assert_eq!(tx.next_counter(), Ok(InvocationCounter::new(1)));
        assert_eq!(tx.next_counter(), Ok(InvocationCounter::new(2)));
        // The counter ends here (a restart); only the store remains.
    }
    assert_eq!(p.create(&ckey(0), 1), Err(CounterError::RecordExists));
    // A restart skips what the lost counter had claimed.
    let mut tx = SendCounter::resume(ckey(0), nz(10), s).unwrap();
    assert_eq!(tx.next_counter(), Ok(InvocationCounter::new(11)));
    assert_eq!(
        SendCounter::resume(ckey(9), nz(10), s).map(|_| ()),
        Err(CounterError::RecordLost)
    );
}

pub fn floors_never_lowered(s: &Store) {
    let k = ckey(0);
    assert_eq!(s.floor(&k).unwrap(), None);
    s.raise_floor(&k, 5).unwrap();
    assert_eq!(s.floor(&k).unwrap(), Some(5));
    s.raise_floor(&k, 5).unwrap();
    assert_eq!(
        s.raise_floor(&k, 3),
        Err(StoreError::FloorLowered { current: 5 })
    );
    assert_eq!(
        s.raise_floor(&k, 0),
        Err(StoreError::FloorLowered { current: 5 })
    );
    assert_eq!(s.floor(&k).unwrap(), Some(5));
    s.raise_floor(&k, u32::MAX).unwrap();
    assert_eq!(s.floor(&k).unwrap(), Some(u32::MAX));
    // Floors and counters of one key are apart, and so are other keys.
    assert_eq!(s.counter_ceiling(&k).unwrap(), None);
    assert_eq!(s.floor(&ckey(1)).unwrap(), None);
    s.raise_floor(&ckey(1), 0).unwrap();
    assert_eq!(s.floor(&ckey(1)).unwrap(), Some(0));
    // Accepting a counter is strict: the same value twice is refused.
    let k = ckey(2);
    s.accept_counter(&k, 9).unwrap();
    assert_eq!(
        s.accept_counter(&k, 9),
        Err(StoreError::FloorLowered { current: 9 })
    );
    assert_eq!(
        s.accept_counter(&k, 8),
        Err(StoreError::FloorLowered { current: 9 })
    );
    s.accept_counter(&k, 10).unwrap();
    assert_eq!(s.floor(&k).unwrap(), Some(10));
}

/// Threads accepting the same counters: each value is accepted once.
pub fn accept_each_counter_once(s: &Store) {
    let k = ckey(3);
    let accepted = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for v in 1..=50u32 {
                    match s.accept_counter(&k, v) {
                        Ok(()) => {
                            accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(StoreError::FloorLowered { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    assert!(accepted.into_inner() <= 50);
    assert_eq!(s.floor(&k).unwrap(), Some(50));
}

pub fn floors_race_to_the_max(s: &Store) {
    let k = ckey(0);
    std::thread::scope(|scope| {
        for t in 0..4u32 {
            scope.spawn(move || {
                for i in 0..40u32 {
                    match s.raise_floor(&k, (i * 7 + t * 13) % 200) {
                        Ok(()) | Err(StoreError::FloorLowered { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    let max = (0..4u32)
        .flat_map(|t| (0..40u32).map(move |i| (i * 7 + t * 13) % 200))
        .max()
        .unwrap();
    assert_eq!(s.floor(&k).unwrap(), Some(max));
}

pub fn registry(s: &Store) {
    let e = DeviceEntry::commissioned(DEV, 1_700_000_000, 0b101);
    assert_eq!(e.deadline, 1_700_000_000 + 7 * 24 * 3600);
    assert_eq!(s.device(&DEV).unwrap(), None);
    assert_eq!(s.device_count().unwrap(), 0);
    s.register_device(&e).unwrap();
    assert_eq!(s.register_device(&e), Err(StoreError::Conflict));
    assert_eq!(s.device(&DEV).unwrap(), Some(e));
    assert_eq!(s.device_count().unwrap(), 1);
    assert_eq!(s.mark_rotated(&DEV2, 5), Err(StoreError::NotFound));
    assert_eq!(s.set_capabilities(&DEV2, 1), Err(StoreError::NotFound));
    s.set_capabilities(&DEV, 0b110).unwrap();
    assert_eq!(s.device(&DEV).unwrap().unwrap().capabilities, 0b110);
    s.set_capabilities(&DEV, 0b101).unwrap();
    s.mark_rotated(&DEV, 1_700_100_000).unwrap();
    assert_eq!(
        s.device(&DEV).unwrap().unwrap().rotated_at,
        Some(1_700_100_000)
    );
    assert!(matches!(
        s.register_device(&DeviceEntry::commissioned(DEV2, u64::MAX, 0)),
        Err(StoreError::Backend(_))
    ));
    assert_eq!(s.device_count().unwrap(), 1);
}

pub fn registry_pages(s: &Store) {
    assert_eq!(s.registry(None, 10).unwrap(), []);
    let title = |b: u8| SystemTitle::new([3, 0, 0, 0, 0, 0, 0, b]);
    let mut entries: Vec<DeviceEntry> = [7u8, 2, 9, 4, 1]
        .into_iter()
        .map(|b| DeviceEntry::commissioned(title(b), 1_000 + u64::from(b), u32::from(b)))
        .collect();
    for e in &entries {
        s.register_device(e).unwrap();
    }
    s.mark_rotated(&title(4), 5_000).unwrap();
    entries.sort_by_key(|e| e.device);
    entries[2].rotated_at = Some(5_000);
    assert_eq!(s.registry(None, 2).unwrap(), entries[..2]);
    assert_eq!(s.registry(Some(&title(2)), 2).unwrap(), entries[2..4]);
    assert_eq!(s.registry(Some(&title(7)), 2).unwrap(), entries[4..]);
    assert_eq!(s.registry(Some(&title(9)), 2).unwrap(), []);
    // A walk page by page sees every entry once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.registry(after.as_ref(), 2).unwrap();
        seen.extend_from_slice(&page);
        match page.last() {
            Some(last) => after = Some(last.device),
            None => break,
        }
    }
    assert_eq!(seen, entries);
}

pub fn due_order_horizon_limit(s: &Store) {
    let title = |b: u8| SystemTitle::new([1, 0, 0, 0, 0, 0, 0, b]);
    let entry = |b: u8, deadline: u64| DeviceEntry {
        device: title(b),
        commissioned_at: 0,
        capabilities: 0,
        deadline,
        rotated_at: None,
    };
    for e in [
        entry(1, 300),
        entry(2, 100),
        entry(3, 200),
        entry(4, 150),
        entry(5, 1000),
        entry(6, 200),
    ] {
        s.register_device(&e).unwrap();
    }
    s.mark_rotated(&title(4), 120).unwrap();
    let due = |now, horizon, limit| -> Vec<u8> {
        s.due(now, horizon, limit)
            .unwrap()
            .iter()
            .map(|e| e.device.as_bytes()[7])
            .collect()
    };
    // Deadline at or before now + horizon, earliest first, ties by title,
    // rotated devices never.
    assert_eq!(due(150, 100, 10), [2, 3, 6]);
    assert_eq!(due(150, 50, 10), [2, 3, 6]);
    assert_eq!(due(150, 49, 10), [2]);
    assert_eq!(due(300, 0, 10), [2, 3, 6, 1]);
    assert_eq!(due(300, 0, 2), [2, 3]);
    assert_eq!(due(0, 0, 10), Vec::<u8>::new());
    assert_eq!(due(u64::MAX, u64::MAX, 10), [2, 3, 6, 1, 5]);
    assert_eq!(due(u64::MAX, 0, 0), Vec::<u8>::new());
}

pub fn progress(s: &Store) {
    let p = Progress {
        state: ProgressState::Sent,
        generation: 1,
        invoke_id: 7,
        at: 100,
    };
    assert_eq!(s.progress(&DEV, Client::Management).unwrap(), None);
    s.set_progress(&DEV, Client::Management, &p).unwrap();
    assert_eq!(s.progress(&DEV, Client::Management).unwrap(), Some(p));
    assert_eq!(s.progress(&DEV, Client::Firmware).unwrap(), None);
    assert_eq!(s.progress(&DEV2, Client::Management).unwrap(), None);
    let q = Progress {
        state: ProgressState::Probed,
        generation: 1,
        invoke_id: 8,
        at: 200,
    };
    s.set_progress(&DEV, Client::Management, &q).unwrap();
    assert_eq!(s.progress(&DEV, Client::Management).unwrap(), Some(q));
}

pub fn campaigns(s: &Store) {
    let t = |b: u8| SystemTitle::new([2, 0, 0, 0, 0, 0, 0, b]);
    assert_eq!(s.campaign_status("c1").unwrap(), None);
    s.campaign_start("c1", "KEK compromise", &[t(3), t(1), t(2), t(1), t(4)], 10)
        .unwrap();
    assert_eq!(
        s.campaign_start("c1", "again", &[t(9)], 11),
        Err(StoreError::Conflict)
    );
    let st = s.campaign_status("c1").unwrap().unwrap();
    assert_eq!((st.total, st.done), (4, 0));
    assert_eq!(s.campaign_pending("c1", 2).unwrap(), [t(1), t(2)]);
    s.campaign_mark_done("c1", &t(1)).unwrap();
    s.campaign_mark_done("c1", &t(3)).unwrap();
    s.campaign_mark_done("c1", &t(3)).unwrap();
    assert_eq!(s.campaign_mark_done("c1", &t(9)), Err(StoreError::NotFound));
    assert_eq!(s.campaign_mark_done("c2", &t(1)), Err(StoreError::NotFound));
    // Resuming is asking for what is pending.
    assert_eq!(s.campaign_pending("c1", 10).unwrap(), [t(2), t(4)]);
    let st = s.campaign_status("c1").unwrap().unwrap();
    assert_eq!((st.total, st.done), (4, 2));
    // Campaigns are apart.
    s.campaign_start("c2", "second", &[t(1)], 12).unwrap();
    assert_eq!(s.campaign_pending("c2", 10).unwrap(), [t(1)]);
    assert_eq!(s.campaign_pending("c3", 10).unwrap(), []);
}

pub fn campaigns_listed(s: &Store) {
    let t = |b: u8| SystemTitle::new([2, 0, 0, 0, 0, 0, 0, b]);
    assert_eq!(s.campaigns(None, 10).unwrap(), []);
    s.campaign_start("b", "KEK compromise", &[t(1), t(2), t(3), t(4)], 20)
        .unwrap();
    s.campaign_start("a", "planned", &[t(1)], 10).unwrap();
    s.campaign_start("c <&>", "empty", &[], 30).unwrap();
    s.campaign_mark_done("b", &t(2)).unwrap();
    s.campaign_mark_done("b", &t(4)).unwrap();
    let all = s.campaigns(None, 10).unwrap();
    let got: Vec<(&str, &str, u64, CampaignStatus)> = all
        .iter()
        .map(|c| (c.id.as_str(), c.reason.as_str(), c.started_at, c.status))
        .collect();
    let st = |total, done| CampaignStatus { total, done };
    assert_eq!(
        got,
        [
            ("a", "planned", 10, st(1, 0)),
            ("b", "KEK compromise", 20, st(4, 2)),
            ("c <&>", "empty", 30, st(0, 0)),
        ]
    );
    for c in &all {
        assert_eq!(s.campaign_status(&c.id).unwrap(), Some(c.status));
    }
    assert_eq!(s.campaigns(None, 1).unwrap(), all[..1]);
    assert_eq!(s.campaigns(Some("a"), 5).unwrap(), all[1..]);
    assert_eq!(s.campaigns(Some("c <&>"), 5).unwrap(), []);
    // The empty id is a campaign like any other, first in the walk.
    s.campaign_start("", "no name", &[t(5)], 40).unwrap();
    assert_eq!(s.campaigns(None, 1).unwrap()[0].id, "");
    assert_eq!(s.campaigns(Some(""), 5).unwrap(), all);
}

pub fn record_keks(s: &Store) {
    assert_eq!(s.record_keks().unwrap(), []);
    let mk = rec(&MK, 1, 1);
    let ak = rec(&AK, 1, 2);
    s.put_initial_many(&[mk, ak, rec(&GUEK, 1, 3)]).unwrap();
    s.put_pending(&rec(&GUEK, 2, 4)).unwrap();
    s.put_pending(&rec(&AK, 2, 5)).unwrap();
    s.activate(&AK, 2).unwrap();
    let dco = mk.kek_check_value();
    let shared = rec(&GUEK, 1, 3).kek_check_value();
    assert_eq!(ak.kek_check_value(), dco);
    assert_ne!(dco, shared);
    let mut want = vec![
        KekRecords {
            kek: dco,
            active: 2,
            pending: 0,
            previous: 1,
        },
        KekRecords {
            kek: shared,
            active: 1,
            pending: 1,
            previous: 0,
        },
    ];
    want.sort_by_key(|k| k.kek);
    assert_eq!(s.record_keks().unwrap(), want);
}

pub fn audit_visitor(s: &Store) {
    let key = audit_key();
    let mut seen = Vec::new();
    let head = verify_audit_with(s, &key, |seq, e| seen.push((seq, *e))).unwrap();
    assert_eq!((head.count, seen.len()), (0, 0));
    let mut sink = DatabaseAuditSink::open(s, &key, &mut getrandom::SysRng).unwrap();
    for i in 0..4 {
        sink.record(&event(i)).unwrap();
    }
    let head = verify_audit_with(s, &key, |seq, e| seen.push((seq, *e))).unwrap();
    assert_eq!(head, verify_audit(s, &key).unwrap());
    let want: Vec<(u64, AuditEvent)> = (0..4).map(|i| (u64::from(i), event(i))).collect();
    assert_eq!(seen, want);
    // Under another key the first row breaks: nothing is handed over.
    let mut seen = Vec::new();
    let other = AuditKey::from_bytes([0xA8; 16]);
    let brk = verify_audit_with(s, &other, |seq, e| seen.push((seq, *e))).unwrap_err();
    assert_eq!((brk.seq, seen.len()), (0, 0));
}

pub fn leases(s: &Store) {
    let a = s.take_lease(&DEV, "node-a", 100, 50).unwrap();
    assert_eq!((a.expires_at, a.taken_over), (150, false));
    assert_eq!(
        s.take_lease(&DEV, "node-b", 120, 50),
        Err(StoreError::Conflict)
    );
    assert_eq!(
        s.take_lease(&DEV, "node-b", 149, 50),
        Err(StoreError::Conflict)
    );
    // Another device is free.
    assert!(s.take_lease(&DEV2, "node-b", 120, 50).is_ok());
    // The owner renews.
    let a = s.take_lease(&DEV, "node-a", 130, 50).unwrap();
    assert_eq!((a.expires_at, a.taken_over), (180, false));
    assert_eq!(
        s.take_lease(&DEV, "node-b", 179, 50),
        Err(StoreError::Conflict)
    );
    // Expired: taken over.
    let b = s.take_lease(&DEV, "node-b", 180, 60).unwrap();
    assert_eq!((b.expires_at, b.taken_over), (240, true));
    assert_eq!(s.release_lease(&a), Err(StoreError::Conflict));
    assert_eq!(
        s.take_lease(&DEV, "node-a", 200, 50),
        Err(StoreError::Conflict)
    );
    s.release_lease(&b).unwrap();
    assert_eq!(s.release_lease(&b), Err(StoreError::Conflict));
    let a = s.take_lease(&DEV, "node-a", 200, 50).unwrap();
    assert!(!a.taken_over);
}

pub fn audit_chain(s: &Store) {
    let key = audit_key();
    let empty = verify_audit(s, &key).unwrap();
    assert_eq!((empty.count, empty.chain_id), (0, None));
    let mut sink = DatabaseAuditSink::open(s, &key, &mut getrandom::SysRng).unwrap();
    let id = sink.chain_id();
    for i in 0..5 {
        sink.record(&event(i)).unwrap();
    }
    let head = verify_audit(s, &key).unwrap();
    assert_eq!((head.count, head.chain_id), (5, Some(id)));
    drop(sink);
    // A new sink resumes the same chain at its head.
    let mut sink = DatabaseAuditSink::open(s, &key, &mut getrandom::SysRng).unwrap();
    assert_eq!((sink.chain_id(), sink.next_seq()), (id, 5));
    sink.record(&event(5)).unwrap();
    sink.record(&event(6)).unwrap();
    let head = verify_audit(s, &key).unwrap();
    assert_eq!(head.count, 7);
    assert_ne!(head.last_mac, [0; 12]);
    // Under another key the chain breaks at its first row.
    let other = AuditKey::from_bytes([0xA8; 16]);
    let brk = verify_audit(s, &other).unwrap_err();
    assert_eq!((brk.seq, brk.why), (0, AuditBreakKind::BadMac));
    assert!(matches!(
        DatabaseAuditSink::open(s, &other, &mut getrandom::SysRng),
        Err(StoreError::Corrupt { .. })
    ));
}

/// Rows of both encodings in one chain: v1 events, then v2, then v1.
pub fn audit_mixed_versions(s: &Store) {
    let key = audit_key();
    let mut sink = DatabaseAuditSink::open(s, &key, &mut getrandom::SysRng).unwrap();
    for i in 0..3 {
        sink.record(&event(i)).unwrap();
    }
    drop(sink);
    let mut sink = DatabaseAuditSink::open(s, &key, &mut getrandom::SysRng).unwrap();
    assert_eq!(sink.next_seq(), 3);
    for i in 3..6 {
        sink.record(&event_v2(i)).unwrap();
    }
    sink.record(&event(6)).unwrap();
    drop(sink);
    let head = verify_audit(s, &key).unwrap();
    assert_eq!(head.count, 7);
    assert_eq!(event(0).to_bytes().len(), EVENT_LEN);
    assert_eq!(event_v2(3).to_bytes().len(), 70);
    // Resumed after v2 rows, the chain goes on.
    let mut sink = DatabaseAuditSink::open(s, &key, &mut getrandom::SysRng).unwrap();
    sink.record(&event_v2(7)).unwrap();
    assert_eq!(verify_audit(s, &key).unwrap().count, 8);
}

pub fn audit_race_fails_the_loser(s: &Store) {
    let key = audit_key();
    let mut first = DatabaseAuditSink::open(s, &key, &mut getrandom::SysRng).unwrap();
    first.record(&event(0)).unwrap();
    let mut a = DatabaseAuditSink::open(s, &key, &mut getrandom::SysRng).unwrap();
    let mut b = DatabaseAuditSink::open(s, &key, &mut getrandom::SysRng).unwrap();
    a.record(&event(1)).unwrap();
    assert_eq!(b.record(&event(2)), Err(Error::Audit));
    assert_eq!(
        b.record(&event(3)),
        Err(Error::Audit),
        "the loser stays failed"
    );
    // The first sink's head is stale too.
    assert_eq!(first.record(&event(4)), Err(Error::Audit));
    a.record(&event(5)).unwrap();
    assert_eq!(verify_audit(s, &key).unwrap().count, 3);
}

// ---------------------------------------------------------------------------
// Bad input: rows changed behind the store's back

/// A change made to a store's rows with the backend's own SQL.
#[derive(Clone, Copy, Debug)]
pub enum Tamper {
    /// XOR the record octet at `offset` with 0x01 in `slot`'s row `state`.
    FlipRecordOctet {
        slot: KeySlot,
        state: &'static str,
        offset: usize,
    },
    /// Drop the record's last octet.
    TruncateRecord { slot: KeySlot, state: &'static str },
    /// Set the generation column.
    Generation {
        slot: KeySlot,
        state: &'static str,
        value: i64,
    },
    /// Set the ceiling column of a counter.
    Ceiling { key: CounterKey, value: i64 },
    /// XOR the event octet at `offset` with 0x01 in the audit row `seq`.
    FlipAuditEvent { seq: u64, offset: usize },
}

/// A fresh store and the means to tamper with its rows.
pub type Fresh<'a> = &'a dyn Fn() -> (Store, Box<dyn Fn(Tamper)>);

pub fn bad_input(fresh: Fresh<'_>) {
    let corrupt_names = |r: Result<PackagedRecord, StoreError>, slot: &KeySlot| match r {
        Err(StoreError::Corrupt { what }) => {
            assert!(what.contains(&slot.to_string()), "{what} names {slot}");
        }
        other => panic!("expected Corrupt for {slot}, got {other:?}"),
    };

    // Every octet of a stored record is checked: a flip is Corrupt naming the
    // slot, through the store and through the core's trait.
    for offset in [0, 1, 2, 6, 13, 14, 17] {
        let (s, tamper) = fresh();
        s.put_initial(&rec(&AK, 3, 1)).unwrap();
        s.put_initial(&rec(&GUEK, 3, 1)).unwrap();
        tamper(Tamper::FlipRecordOctet {
            slot: AK,
            state: "active",
            offset,
        });
        corrupt_names(s.active(&AK), &AK);
        assert_eq!(
            KeyStore::active(&&s, &AK),
            Err(Error::Key(KeyError::Corrupted))
        );
        // The corrupt slot refuses changes; the other slot is untouched.
        assert!(matches!(
            s.put_pending(&rec(&AK, 4, 2)),
            Err(StoreError::Corrupt { .. })
        ));
        assert_eq!(s.active(&GUEK).unwrap(), rec(&GUEK, 3, 1));
    }

    let (s, tamper) = fresh();
    s.put_initial(&rec(&MK, 3, 1)).unwrap();
    s.put_pending(&rec(&MK, 4, 2)).unwrap();
    tamper(Tamper::TruncateRecord {
        slot: MK,
        state: "pending",
    });
    corrupt_names(s.pending(&MK).map(|r| r.unwrap_or(rec(&MK, 0, 0))), &MK);

    for value in [1i64 << 32, -1, 7] {
        let (s, tamper) = fresh();
        s.put_initial(&rec(&MK, 3, 1)).unwrap();
        tamper(Tamper::Generation {
            slot: MK,
            state: "active",
            value,
        });
        corrupt_names(s.active(&MK), &MK);
    }

    for value in [1i64 << 32, (1i64 << 32) + 5, i64::MAX] {
        let (s, tamper) = fresh();
        s.counter_create(&ckey(0), 10).unwrap();
        tamper(Tamper::Ceiling {
            key: ckey(0),
            value,
        });
        assert!(
            matches!(
                s.counter_claim(&ckey(0), nz(1)),
                Err(StoreError::Corrupt { .. })
            ),
            "{value}"
        );
        assert!(matches!(
            s.counter_ceiling(&ckey(0)),
            Err(StoreError::Corrupt { .. })
        ));
        let mut p = &s;
        assert_eq!(p.claim(&ckey(0), nz(1)), Err(CounterError::Persistence));
        // A fence does not pull an out-of-range ceiling into range.
        s.fence(5).unwrap();
        assert!(matches!(
            s.counter_claim(&ckey(0), nz(1)),
            Err(StoreError::Corrupt { .. })
        ));
    }

    // A tampered audit row breaks the chain at its seq.
    for (seq, offset) in [(0, 3), (2, 10), (4, 32)] {
        let (s, tamper) = fresh();
        let key = audit_key();
        let mut sink = DatabaseAuditSink::open(&s, &key, &mut getrandom::SysRng).unwrap();
        for i in 0..5 {
            sink.record(&event(i)).unwrap();
        }
        tamper(Tamper::FlipAuditEvent { seq, offset });
        let brk = verify_audit(&s, &key).unwrap_err();
        assert_eq!(brk.seq, seq);
        assert!(
            matches!(brk.why, AuditBreakKind::BadMac | AuditBreakKind::Malformed),
            "{brk}"
        );
        assert!(matches!(
            DatabaseAuditSink::open(&s, &key, &mut getrandom::SysRng),
            Err(StoreError::Corrupt { .. })
        ));
    }
}

/// A v2 row changed in any context field breaks the chain at its seq:
/// under the MAC where the result still decodes, as malformed where not.
pub fn bad_audit_context(fresh: Fresh<'_>) {
    for (offset, why) in [
        (33, AuditBreakKind::Malformed), // context flags: campaign cleared, lengths shift
        (34, AuditBreakKind::Malformed), // principal kind 0
        (35, AuditBreakKind::Malformed), // principal length
        (37, AuditBreakKind::BadMac),    // principal name
        (43, AuditBreakKind::BadMac),    // node name
        (50, AuditBreakKind::BadMac),    // request id
        (65, AuditBreakKind::BadMac),    // campaign id
        (69, AuditBreakKind::BadMac),    // reason 5 to 4
    ] {
        let (s, tamper) = fresh();
        let key = audit_key();
        let mut sink = DatabaseAuditSink::open(&s, &key, &mut getrandom::SysRng).unwrap();
        sink.record(&event(0)).unwrap();
        for i in 1..4 {
            sink.record(&event_v2(i)).unwrap();
        }
        drop(sink);
        verify_audit(&s, &key).unwrap();
        tamper(Tamper::FlipAuditEvent { seq: 2, offset });
        let brk = verify_audit(&s, &key).unwrap_err();
        assert_eq!((brk.seq, &brk.why), (2, &why), "offset {offset}: {brk}");
    }
}

/// The distinct octets of `records`' slots' test keys (for scans).
pub fn seeds() -> BTreeSet<u8> {
    (0x31..0x39).collect()
}
