//! The bare driver loops the store is measured against: the statements the
//! store's backend runs, in the same transactions, straight on the driver,
//! with nothing around them (no pool, no row checks, no record parsing).

use dlms_sec::counter::CounterKey;
use dlms_sec::key::package::PackagedRecord;
use dlms_sec::keystore::KeySlot;
use dlms_sec::{Client, KeyKind};
use dlms_sec_store::{DeviceEntry, Store, StoreError};
use rusqlite::{Connection, TransactionBehavior, params};

use crate::Target;

/// One bare connection.
pub trait Bare {
    /// Reads a slot's rows in a read transaction; returns how many are active.
    fn lookup(&mut self, slot: &KeySlot) -> usize;
    /// Claims `n` values of `key`.
    fn claim(&mut self, key: &CounterKey, n: u32);
    /// Stores `record` as pending in a slot that holds no pending record.
    fn put_pending(&mut self, record: &PackagedRecord);
    /// Activates, in one transaction, the pending records of slots that
    /// hold an active record and no previous one: `(slot, active, pending)`.
    fn activate(&mut self, slots: &[(KeySlot, PackagedRecord, PackagedRecord)]);
    /// Up to `limit` devices due by `until`; returns how many.
    fn due(&mut self, until: u64, limit: u32) -> usize;
    /// Stores records as active in empty slots, in one transaction.
    fn load(&mut self, records: &[PackagedRecord]);
    /// Registers devices, in one transaction.
    fn register(&mut self, entries: &[DeviceEntry]);
    /// The database's size in octets.
    fn size(&mut self) -> u64;
}

pub(crate) const fn client_code(client: Client) -> i64 {
    match client {
        Client::Public => 0,
        Client::DataCollection => 1,
        Client::ExtendedDataCollection => 2,
        Client::Management => 3,
        Client::Firmware => 4,
    }
}

pub(crate) const fn kind_code(kind: KeyKind) -> i64 {
    match kind {
        KeyKind::GlobalUnicast => 0,
        KeyKind::GlobalBroadcast => 1,
        KeyKind::Dedicated => 2,
    }
}

pub(crate) fn slot_key(slot: &KeySlot) -> (&[u8], i64, i64) {
    (
        slot.device.as_bytes(),
        i64::from(Client::record_code(slot.client).unwrap()),
        i64::from(slot.role.code()),
    )
}

// --- SQLite --------------------------------------------------------------------

/// Fresh files under a directory.
#[derive(Debug)]
pub struct SqliteTarget {
    pub dir: std::path::PathBuf,
}

impl Target for SqliteTarget {
    fn fresh(&self, name: &str) -> String {
        format!("sqlite://{}", crate::fresh_file(&self.dir, name).display())
    }
    fn bare(&self, url: &str) -> Box<dyn Bare> {
        let path = url.strip_prefix("sqlite://").unwrap();
        let c = Connection::open(path).unwrap();
        // The store's connection settings.
        c.busy_timeout(core::time::Duration::from_secs(10)).unwrap();
        c.pragma_update(None, "synchronous", "FULL").unwrap();
        c.pragma_update(None, "foreign_keys", "ON").unwrap();
        let _: String = c
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .unwrap();
        Box::new(SqliteBare {
            c,
            path: path.into(),
        })
    }
}

struct SqliteBare {
    c: Connection,
    path: std::path::PathBuf,
}

const SQLITE_LOAD: &str = "SELECT state, generation, record FROM key_records
                 WHERE device = ?1 AND client = ?2 AND role = ?3";
const SQLITE_INSERT: &str =
    "INSERT INTO key_records (device, client, role, state, generation, record)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const SQLITE_REPLACE: &str = "UPDATE key_records SET generation = ?5, record = ?6
             WHERE device = ?1 AND client = ?2 AND role = ?3 AND state = ?4 AND record = ?7";
const SQLITE_DELETE: &str = "DELETE FROM key_records
             WHERE device = ?1 AND client = ?2 AND role = ?3 AND state = ?4 AND record = ?5";

/// The slot's rows, as the store loads them: (state, generation, record).
fn sqlite_rows(tx: &Connection, slot: &KeySlot) -> Vec<(String, i64, Vec<u8>)> {
    let (d, c, r) = slot_key(slot);
    let mut st = tx.prepare_cached(SQLITE_LOAD).unwrap();
    st.query_map(params![d, c, r], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn sqlite_insert(tx: &Connection, state: &str, record: &PackagedRecord) {
    let slot = KeySlot::of(&record.id());
    let (d, c, r) = slot_key(&slot);
    let n = tx
        .prepare_cached(SQLITE_INSERT)
        .unwrap()
        .execute(params![
            d,
            c,
            r,
            state,
            record.generation(),
            &record.as_bytes()[..]
        ])
        .unwrap();
    assert_eq!(n, 1);
}

impl Bare for SqliteBare {
    fn lookup(&mut self, slot: &KeySlot) -> usize {
        let tx = self
            .c
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .unwrap();
        sqlite_rows(&tx, slot)
            .iter()
            .filter(|(s, _, _)| s == "active")
            .count()
    }

    fn claim(&mut self, key: &CounterKey, n: u32) {
        let tx = self
            .c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        let p = params![
            key.sender.as_bytes(),
            key.device.as_bytes(),
            client_code(key.client),
            kind_code(key.key),
            key.generation
        ];
        let old: i64 = tx
            .prepare_cached(
                "SELECT ceiling FROM send_counters WHERE sender = ?1 AND device = ?2 AND client = ?3
             AND key_kind = ?4 AND generation = ?5",
            )
            .unwrap()
            .query_row(p, |r| r.get(0))
            .unwrap();
        let new = (old + i64::from(n)).min(0xFFFF_FFFF);
        tx.prepare_cached(
            "UPDATE send_counters SET ceiling = ?6 WHERE sender = ?1 AND device = ?2
                     AND client = ?3 AND key_kind = ?4 AND generation = ?5",
        )
        .unwrap()
        .execute(params![
            key.sender.as_bytes(),
            key.device.as_bytes(),
            client_code(key.client),
            kind_code(key.key),
            key.generation,
            new
        ])
        .unwrap();
        tx.commit().unwrap();
    }

    fn put_pending(&mut self, record: &PackagedRecord) {
        let tx = self
            .c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        let slot = KeySlot::of(&record.id());
        assert!(!sqlite_rows(&tx, &slot).is_empty());
        sqlite_insert(&tx, "pending", record);
        tx.commit().unwrap();
    }

    fn activate(&mut self, slots: &[(KeySlot, PackagedRecord, PackagedRecord)]) {
        let tx = self
            .c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        for (slot, active, pending) in slots {
            assert_eq!(sqlite_rows(&tx, slot).len(), 2);
            let (d, c, r) = slot_key(slot);
            let n = tx
                .prepare_cached(SQLITE_REPLACE)
                .unwrap()
                .execute(params![
                    d,
                    c,
                    r,
                    "active",
                    pending.generation(),
                    &pending.as_bytes()[..],
                    &active.as_bytes()[..]
                ])
                .unwrap();
            assert_eq!(n, 1);
            let n = tx
                .prepare_cached(SQLITE_DELETE)
                .unwrap()
                .execute(params![d, c, r, "pending", &pending.as_bytes()[..]])
                .unwrap();
            assert_eq!(n, 1);
            sqlite_insert(&tx, "previous", active);
        }
        tx.commit().unwrap();
    }

    fn due(&mut self, until: u64, limit: u32) -> usize {
        let tx = self
            .c
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .unwrap();
        let mut st = tx
            .prepare_cached(
                "SELECT device, commissioned_at, capabilities, deadline, rotated_at FROM devices
                 INDEXED BY devices_due
                 WHERE rotated_at IS NULL AND deadline <= ?1
                 ORDER BY deadline, device LIMIT ?2",
            )
            .unwrap();
        let rows = st
            .query_map(params![until as i64, limit], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            })
            .unwrap();
        rows.map(Result::unwrap).count()
    }

    fn load(&mut self, records: &[PackagedRecord]) {
        let tx = self
            .c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        for record in records {
            assert!(sqlite_rows(&tx, &KeySlot::of(&record.id())).is_empty());
            sqlite_insert(&tx, "active", record);
        }
        tx.commit().unwrap();
    }

    fn register(&mut self, entries: &[DeviceEntry]) {
        let tx = self
            .c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO devices (device, commissioned_at, capabilities, deadline, rotated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .unwrap();
            for e in entries {
                st.execute(params![
                    e.device.as_bytes(),
                    e.commissioned_at as i64,
                    e.capabilities,
                    e.deadline as i64,
                    e.rotated_at.map(|t| t as i64)
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }

    fn size(&mut self) -> u64 {
        // Everything in the main file: the WAL checkpointed and truncated.
        let _: (i64, i64, i64) = self
            .c
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        std::fs::metadata(&self.path).unwrap().len()
    }
}

// --- PostgreSQL ----------------------------------------------------------------

/// Fresh databases on the server at `url`, or why there are none.
pub fn postgres_target(url: &str) -> Result<Box<dyn Target>, String> {
    match Store::open(url) {
        Err(StoreError::BadUrl) => Err("this build of the store has no PostgreSQL backend".into()),
        Err(e) => Err(format!("cannot open {url}: {e}")),
        Ok(_) => Err("the bare PostgreSQL loop is not written yet".into()),
    }
}
