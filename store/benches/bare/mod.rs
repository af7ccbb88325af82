//! The bare driver loops the store is measured against: the statements the
//! store's backend runs, in the same transactions, straight on the driver,
//! with nothing around them (no pool, no row checks, no record parsing).

use dlms_sec::counter::CounterKey;
use dlms_sec::key::package::PackagedRecord;
use dlms_sec::keystore::KeySlot;
use dlms_sec::{Client, KeyKind};
use dlms_sec_store::{DeviceEntry, Store, StoreError};
use postgres::{IsolationLevel, NoTls, Statement};
use rusqlite::{Connection, TransactionBehavior, params};

use crate::Target;

/// One bare connection.
pub trait Bare {
    /// Reads a slot's rows in a read transaction; returns how many are active.
    fn lookup(&mut self, slot: &KeySlot) -> usize;
    /// [`Self::lookup`] with the statement prepared afresh by the server
    /// and a validity check of the connection first (how a pooled store
    /// without a statement cache talks); `None` where that is no different.
    fn lookup_unprepared(&mut self, _slot: &KeySlot) -> Option<usize> {
        None
    }
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
        Err(StoreError::BadUrl) => {
            return Err("this build of the store has no PostgreSQL backend".into());
        }
        Err(e) => return Err(format!("cannot open {url}: {e}")),
        Ok(_) => {}
    }
    let admin = postgres::Client::connect(url, NoTls).map_err(|e| e.to_string())?;
    Ok(Box::new(PgTarget {
        url: url.to_owned(),
        admin: std::sync::Mutex::new(admin),
        made: std::sync::Mutex::new(Vec::new()),
    }))
}

/// Fresh databases on one server, dropped when done.
struct PgTarget {
    url: String,
    admin: std::sync::Mutex<postgres::Client>,
    made: std::sync::Mutex<Vec<String>>,
}

impl PgTarget {
    /// The server's URL with another database name.
    fn url_of(&self, db: &str) -> String {
        let (base, query) = self
            .url
            .split_once('?')
            .map_or((self.url.as_str(), None), |(b, q)| (b, Some(q)));
        let (server, _) = base.rsplit_once('/').unwrap();
        match query {
            Some(q) => format!("{server}/{db}?{q}"),
            None => format!("{server}/{db}"),
        }
    }
}

impl Target for PgTarget {
    fn fresh(&self, name: &str) -> String {
        let db = format!(
            "store_bench_{}_{}",
            std::process::id(),
            name.replace('-', "_")
        );
        let mut admin = self.admin.lock().unwrap();
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .unwrap();
        self.made.lock().unwrap().push(db.clone());
        self.url_of(&db)
    }
    fn bare(&self, url: &str) -> Box<dyn Bare> {
        let c = postgres::Client::connect(url, NoTls).unwrap();
        Box::new(PgBare::new(c))
    }
}

impl Drop for PgTarget {
    fn drop(&mut self) {
        let (Ok(admin), Ok(made)) = (self.admin.get_mut(), self.made.get_mut()) else {
            return;
        };
        for db in made.drain(..) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        }
    }
}

/// A bare connection with its statements prepared once.
struct PgBare {
    c: postgres::Client,
    load: Statement,
    load_for_update: Statement,
    lock: Statement,
    insert: Statement,
    import: Statement,
    replace: Statement,
    delete: Statement,
    claim: Statement,
    due: Statement,
}

const PG_LOAD: &str = "SELECT state, generation, record FROM key_records
                 WHERE device = $1 AND client = $2 AND role = $3";

const PG_KEY_WHERE: &str =
    "sender = $1 AND device = $2 AND client = $3 AND key_kind = $4 AND generation = $5";

impl PgBare {
    fn new(mut c: postgres::Client) -> Self {
        let load = PG_LOAD;
        Self {
            load: c.prepare(load).unwrap(),
            load_for_update: c.prepare(&format!("{load} FOR UPDATE")).unwrap(),
            lock: c
                .prepare("SELECT count(pg_advisory_xact_lock($1, k)) FROM unnest($2::int4[]) AS k")
                .unwrap(),
            insert: c
                .prepare(
                    "INSERT INTO key_records (device, client, role, state, generation, record)
             VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .unwrap(),
            import: c
                .prepare(
                    "INSERT INTO key_records (device, client, role, state, generation, record)
                     SELECT u.device, u.client, u.role, 'active', u.generation, u.record
                     FROM unnest($1::bytea[], $2::int8[], $3::int8[], $4::int8[], $5::bytea[])
                          AS u(device, client, role, generation, record)
                     WHERE NOT EXISTS (
                         SELECT 1 FROM key_records k
                         WHERE k.device = u.device AND k.client = u.client AND k.role = u.role
                           AND k.state IN ('active', 'pending'))",
                )
                .unwrap(),
            replace: c
                .prepare(
                    "UPDATE key_records SET generation = $5, record = $6
             WHERE device = $1 AND client = $2 AND role = $3 AND state = $4 AND record = $7",
                )
                .unwrap(),
            delete: c
                .prepare(
                    "DELETE FROM key_records
             WHERE device = $1 AND client = $2 AND role = $3 AND state = $4 AND record = $5",
                )
                .unwrap(),
            claim: c
                .prepare(&format!(
                    "WITH old AS (
                         SELECT ceiling FROM send_counters WHERE {PG_KEY_WHERE} FOR UPDATE
                     ), new AS (
                         UPDATE send_counters SET ceiling = LEAST(ceiling + $6, 4294967295)
                         WHERE {PG_KEY_WHERE}
                           AND (SELECT ceiling FROM old) BETWEEN 0 AND 4294967295
                         RETURNING ceiling
                     )
                     SELECT old.ceiling, (SELECT ceiling FROM new) FROM old"
                ))
                .unwrap(),
            due: c
                .prepare(
                    "SELECT device, commissioned_at, capabilities, deadline, rotated_at FROM devices
                     WHERE rotated_at IS NULL AND deadline <= $1
                     ORDER BY deadline, device LIMIT $2",
                )
                .unwrap(),
            c,
        }
    }
}

/// The key of a slot's advisory lock, as the store computes it.
fn pg_slot_lock(slot: &KeySlot) -> i32 {
    let (device, client, role) = slot_key(slot);
    let h = device
        .iter()
        .copied()
        .chain(client.to_be_bytes())
        .chain(role.to_be_bytes())
        .fold(0x811C_9DC5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
    i32::from_be_bytes(h.to_be_bytes())
}

const PG_SLOT_LOCK_CLASS: i32 = i32::from_be_bytes(*b"slot");

fn pg_lock(tx: &mut postgres::Transaction<'_>, lock: &Statement, slots: &[&KeySlot]) {
    let mut keys: Vec<i32> = slots.iter().map(|s| pg_slot_lock(s)).collect();
    keys.sort_unstable();
    keys.dedup();
    tx.execute(lock, &[&PG_SLOT_LOCK_CLASS, &keys]).unwrap();
}

fn pg_insert(
    tx: &mut postgres::Transaction<'_>,
    insert: &Statement,
    state: &str,
    r: &PackagedRecord,
) {
    let slot = KeySlot::of(&r.id());
    let (d, c, role) = slot_key(&slot);
    let n = tx
        .execute(
            insert,
            &[
                &d,
                &c,
                &role,
                &state,
                &i64::from(r.generation()),
                &&r.as_bytes()[..],
            ],
        )
        .unwrap();
    assert_eq!(n, 1);
}

impl Bare for PgBare {
    fn lookup(&mut self, slot: &KeySlot) -> usize {
        let (d, c, r) = slot_key(slot);
        let mut tx = self
            .c
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .unwrap();
        let rows = tx.query(&self.load, &[&d, &c, &r]).unwrap();
        let active = rows
            .iter()
            .filter(|row| {
                let _: i64 = row.get(1);
                let _: &[u8] = row.get(2);
                row.get::<_, &str>(0) == "active"
            })
            .count();
        tx.commit().unwrap();
        active
    }

    fn lookup_unprepared(&mut self, slot: &KeySlot) -> Option<usize> {
        let (d, c, r) = slot_key(slot);
        self.c.simple_query("").unwrap();
        let mut tx = self
            .c
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .unwrap();
        let rows = tx.query(PG_LOAD, &[&d, &c, &r]).unwrap();
        let active = rows
            .iter()
            .filter(|row| {
                let _: i64 = row.get(1);
                let _: &[u8] = row.get(2);
                row.get::<_, &str>(0) == "active"
            })
            .count();
        tx.commit().unwrap();
        Some(active)
    }

    fn claim(&mut self, key: &CounterKey, n: u32) {
        let mut tx = self.c.transaction().unwrap();
        let row = tx
            .query_one(
                &self.claim,
                &[
                    &&key.sender.as_bytes()[..],
                    &&key.device.as_bytes()[..],
                    &client_code(key.client),
                    &kind_code(key.key),
                    &i64::from(key.generation),
                    &i64::from(n),
                ],
            )
            .unwrap();
        let (old, new): (i64, Option<i64>) = (row.get(0), row.get(1));
        assert!(new.unwrap() > old);
        tx.commit().unwrap();
    }

    fn put_pending(&mut self, record: &PackagedRecord) {
        let slot = KeySlot::of(&record.id());
        let (d, c, r) = slot_key(&slot);
        let mut tx = self.c.transaction().unwrap();
        pg_lock(&mut tx, &self.lock, &[&slot]);
        assert!(
            !tx.query(&self.load_for_update, &[&d, &c, &r])
                .unwrap()
                .is_empty()
        );
        pg_insert(&mut tx, &self.insert, "pending", record);
        tx.commit().unwrap();
    }

    fn activate(&mut self, slots: &[(KeySlot, PackagedRecord, PackagedRecord)]) {
        let mut tx = self.c.transaction().unwrap();
        let just: Vec<&KeySlot> = slots.iter().map(|(s, _, _)| s).collect();
        pg_lock(&mut tx, &self.lock, &just);
        for (slot, active, pending) in slots {
            let (d, c, r) = slot_key(slot);
            assert_eq!(
                tx.query(&self.load_for_update, &[&d, &c, &r])
                    .unwrap()
                    .len(),
                2
            );
            let n = tx
                .execute(
                    &self.replace,
                    &[
                        &d,
                        &c,
                        &r,
                        &"active",
                        &i64::from(pending.generation()),
                        &&pending.as_bytes()[..],
                        &&active.as_bytes()[..],
                    ],
                )
                .unwrap();
            assert_eq!(n, 1);
            let n = tx
                .execute(
                    &self.delete,
                    &[&d, &c, &r, &"pending", &&pending.as_bytes()[..]],
                )
                .unwrap();
            assert_eq!(n, 1);
            pg_insert(&mut tx, &self.insert, "previous", active);
        }
        tx.commit().unwrap();
    }

    fn due(&mut self, until: u64, limit: u32) -> usize {
        let mut tx = self
            .c
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .unwrap();
        let rows = tx
            .query(&self.due, &[&(until as i64), &i64::from(limit)])
            .unwrap();
        for row in &rows {
            let _: (&[u8], i64, i64, i64, Option<i64>) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        }
        tx.commit().unwrap();
        rows.len()
    }

    fn load(&mut self, records: &[PackagedRecord]) {
        let mut tx = self.c.transaction().unwrap();
        let (mut d, mut c, mut r, mut g, mut b) = (vec![], vec![], vec![], vec![], vec![]);
        for record in records {
            let slot = KeySlot::of(&record.id());
            let (device, client, role) = slot_key(&slot);
            d.push(device.to_vec());
            c.push(client);
            r.push(role);
            g.push(i64::from(record.generation()));
            b.push(&record.as_bytes()[..]);
        }
        let n = tx.execute(&self.import, &[&d, &c, &r, &g, &b]).unwrap();
        assert_eq!(n as usize, records.len());
        tx.commit().unwrap();
    }

    fn register(&mut self, entries: &[DeviceEntry]) {
        // Columns as arrays, one statement per 10 000 devices.
        let mut tx = self.c.transaction().unwrap();
        let st = tx
            .prepare(
                "INSERT INTO devices (device, commissioned_at, capabilities, deadline, rotated_at)
                 SELECT * FROM unnest($1::bytea[], $2::int8[], $3::int8[], $4::int8[], $5::int8[])",
            )
            .unwrap();
        for chunk in entries.chunks(10_000) {
            let devices: Vec<&[u8]> = chunk.iter().map(|e| &e.device.as_bytes()[..]).collect();
            let commissioned: Vec<i64> = chunk.iter().map(|e| e.commissioned_at as i64).collect();
            let caps: Vec<i64> = chunk.iter().map(|e| i64::from(e.capabilities)).collect();
            let deadlines: Vec<i64> = chunk.iter().map(|e| e.deadline as i64).collect();
            let rotated: Vec<Option<i64>> = chunk
                .iter()
                .map(|e| e.rotated_at.map(|t| t as i64))
                .collect();
            tx.execute(&st, &[&devices, &commissioned, &caps, &deadlines, &rotated])
                .unwrap();
        }
        tx.commit().unwrap();
        self.c.batch_execute("ANALYZE").unwrap();
    }

    fn size(&mut self) -> u64 {
        let row = self
            .c
            .query_one("SELECT pg_database_size(current_database())", &[])
            .unwrap();
        row.get::<_, i64>(0) as u64
    }
}
