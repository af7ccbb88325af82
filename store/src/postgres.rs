//! The PostgreSQL backend: every SQL statement the store runs on PostgreSQL.
//!
//! A `postgres://` or `postgresql://` URL is a libpq-style connection URL
//! (user, password, host, port, database, and the usual parameters). Two
//! parameters matter to the store:
//!
//! * `connect_timeout` (seconds) bounds both a connection attempt and the
//!   wait for a pooled connection; without it both are [`CONNECT_TIMEOUT`].
//! * `options=-csearch_path%3DNAME` puts the store's tables in schema `NAME`
//!   (which must exist): several stores in one database, one per schema.
//!
//! Every session the store opens sets `idle_in_transaction_session_timeout`
//! to [`IDLE_IN_TRANSACTION`] (an `-c idle_in_transaction_session_timeout=…`
//! in the URL's `options` overrides it).
//!
//! Guarantees:
//!
//! * **Every call is one transaction** on a pooled connection, at READ
//!   COMMITTED; reads run in a READ ONLY, REPEATABLE READ transaction (one
//!   snapshot for every statement of the call).
//! * **Counter claims, fences, floors and leases are single statements**
//!   that lock the row they read before they write it, so two processes
//!   never interleave a read and a write: claims are disjoint, the highest
//!   floor wins, one owner holds a lease.
//! * **Slot changes are serialised per slot.** A call that changes slots
//!   first takes a transaction-level advisory lock on each (in one order, so
//!   two calls never deadlock), then reads the slot's rows `FOR UPDATE`; every
//!   write is conditional on the row read. A writer outside the store that
//!   changes a row underneath shows up as [`StoreError::Conflict`]. A bulk
//!   import of initial records locks through the primary key instead: two
//!   importers of one empty slot meet there, and the loser gets
//!   [`StoreError::Conflict`].
//! * **Migrations run once.** Opening takes a transaction-level advisory
//!   lock before it reads the schema version, and applies every migration
//!   in that one transaction: two processes opening at once migrate once,
//!   and a failed migration leaves the previous version whole.
//! * **Statements are prepared once per connection.** Each connection
//!   keeps the statements it has prepared, by their SQL; a call runs each
//!   in one round trip. A statement that no longer fits the schema (another
//!   process migrated it: `cached plan must not change result type`, or the
//!   server no longer knows it) rolls the call's transaction back, empties
//!   the connection's statements, and the call runs once more. Migration
//!   scripts run unprepared.
//! * **A node that vanishes inside a transaction does not hold its locks.**
//!   A call sends its statements back to back and never waits on its
//!   caller inside a transaction, so a session idle inside one for
//!   [`IDLE_IN_TRANSACTION`] has lost its node (a crashed host, a network
//!   partition, a frozen process: cases where the server hears nothing,
//!   unlike a killed process, whose connection the kernel closes). The
//!   server then ends the session and rolls its transaction back, which
//!   frees the advisory and row locks it held; without that, other nodes'
//!   calls on those slots and counters would wait until the server's TCP
//!   keepalive gave up on the connection (two hours and more by default).
//! * **Driver errors are typed.** A refused, closed or shut-down connection
//!   (SQLSTATE classes 08 and 57P) is [`StoreError::Unavailable`]; a unique
//!   violation, a serialization failure or a deadlock (a lost race) is
//!   [`StoreError::Conflict`]; anything else is [`StoreError::Backend`] with
//!   the server's primary message (never a row's values). A connection that
//!   broke is dropped from the pool; the next call connects afresh.

use core::num::NonZeroU32;
use core::ops::Range;
use core::time::Duration;
use std::collections::HashMap;

use dlms_sec::SystemTitle;
use dlms_sec::counter::CounterKey;
use dlms_sec::key::package::PackagedRecord;
use dlms_sec::keystore::{KeySlot, SlotChange, SlotRecords};
use dlms_sec::types::Client;
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Config, IsolationLevel, NoTls, Row, Statement, Transaction};
use r2d2::{ManageConnection, Pool, PooledConnection};

use crate::audit::AuditRow;
use crate::error::{Result, StoreError};
use crate::model::{
    CampaignEntry, CampaignStatus, DeviceEntry, KekRecords, Lease, Progress, ProgressState,
};
use crate::rows::{self, CounterName, SlotTx, State};

/// How long a connection attempt, or the wait for a pooled connection, may
/// take when the URL sets no `connect_timeout`.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a session may sit idle inside a transaction before the server
/// ends it (`idle_in_transaction_session_timeout`).
pub(crate) const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(10);

/// Connections kept per store.
const POOL_SIZE: u32 = 8;

/// The embedded migrations, in order: version `i + 1` at index `i`.
const MIGRATIONS: [&str; 3] = [
    include_str!("../migrations/postgres/V1__keys_and_counters.sql"),
    include_str!("../migrations/postgres/V2__registry_campaigns_leases_audit.sql"),
    include_str!("../migrations/postgres/V3__key_tables_without_rowid.sql"),
];

/// The advisory lock (one 64-bit key) held while migrating.
const MIGRATION_LOCK: i64 = i64::from_be_bytes(*b"dlms-mig");

/// The first key of the advisory locks (two 32-bit keys, a space apart from
/// the 64-bit one) that serialise the writers of one slot.
const SLOT_LOCK_CLASS: i32 = i32::from_be_bytes(*b"slot");

/// Parameters of a statement.
type Params<'a> = [&'a (dyn ToSql + Sync)];

/// The connection configuration of `url` if it is a PostgreSQL URL (`None`
/// for another scheme).
pub(crate) fn target(url: &str) -> Option<Result<Config>> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return None;
    }
    Some(url.parse::<Config>().map_err(|_| StoreError::BadUrl))
}

/// A pool of connections to one PostgreSQL database (and schema).
#[derive(Debug)]
pub(crate) struct Db {
    pool: Pool<Manager>,
}

/// A connection and the statements prepared on it, by their SQL.
///
/// A statement is prepared the first time a connection runs its SQL and
/// runs from then on in one round trip (bind and execute). Statements
/// belong to their connection and live as long as it does; the cache is
/// emptied when the server says a statement no longer fits the schema.
struct Conn {
    client: postgres::Client,
    prepared: HashMap<String, Statement>,
}

/// Opens the pool's connections: a [`Conn`] each, with an empty cache.
#[derive(Debug)]
struct Manager {
    config: Config,
}

impl ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> core::result::Result<Conn, postgres::Error> {
        Ok(Conn {
            client: self.config.connect(NoTls)?,
            prepared: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> core::result::Result<(), postgres::Error> {
        conn.client.simple_query("").map(drop)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.client.is_closed()
    }
}

/// What a transaction may do.
#[derive(Clone, Copy)]
enum Mode {
    /// READ COMMITTED, read and write.
    Write,
    /// READ ONLY, REPEATABLE READ (one snapshot).
    Read,
}

/// A transaction on a [`Conn`], running every statement prepared once per
/// connection.
struct Tx<'c> {
    tx: Transaction<'c>,
    prepared: &'c mut HashMap<String, Statement>,
    /// A statement failed as no longer fitting the schema (its plan's
    /// result type changed, or the server no longer knows it).
    stale: bool,
}

/// The statement failed because the schema changed under it (or the
/// server dropped it): prepared afresh, it may run.
fn is_stale(e: &postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::FEATURE_NOT_SUPPORTED || *c == SqlState::INVALID_SQL_STATEMENT_NAME
    })
}

impl Tx<'_> {
    /// The statement of `sql` on this connection, prepared if it is not yet.
    fn statement(&mut self, sql: &str) -> core::result::Result<Statement, postgres::Error> {
        if let Some(st) = self.prepared.get(sql) {
            return Ok(st.clone());
        }
        let st = self.tx.prepare(sql)?;
        self.prepared.insert(sql.to_owned(), st.clone());
        Ok(st)
    }

    /// Notes a stale statement, for the caller to run the call once more.
    fn checked<T>(
        &mut self,
        r: core::result::Result<T, postgres::Error>,
    ) -> core::result::Result<T, postgres::Error> {
        if let Err(e) = &r {
            self.stale |= is_stale(e);
        }
        r
    }

    fn query(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> core::result::Result<Vec<Row>, postgres::Error> {
        let st = self.statement(sql)?;
        let r = self.tx.query(&st, params);
        self.checked(r)
    }

    fn query_opt(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> core::result::Result<Option<Row>, postgres::Error> {
        let st = self.statement(sql)?;
        let r = self.tx.query_opt(&st, params);
        self.checked(r)
    }

    fn query_one(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> core::result::Result<Row, postgres::Error> {
        let st = self.statement(sql)?;
        let r = self.tx.query_one(&st, params);
        self.checked(r)
    }

    fn execute(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> core::result::Result<u64, postgres::Error> {
        let st = self.statement(sql)?;
        let r = self.tx.execute(&st, params);
        self.checked(r)
    }

    /// Runs `sql` (several statements, no parameters) unprepared.
    fn batch_execute(&mut self, sql: &str) -> core::result::Result<(), postgres::Error> {
        self.tx.batch_execute(sql)
    }
}

/// The store's error for a driver one.
fn err(e: postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        return if is_unavailable(code) {
            StoreError::Unavailable
        } else if *code == SqlState::UNIQUE_VIOLATION
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
        {
            StoreError::Conflict
        } else {
            // The primary message only: the detail may quote a row's values.
            StoreError::Backend(format!("{} ({})", db.message(), code.code()))
        };
    }
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        StoreError::Unavailable
    } else {
        StoreError::Backend(e.to_string())
    }
}

/// A server that cannot serve: connection exceptions (class 08), an
/// administrator's or a crash's shutdown, a server starting up, too many
/// connections, a session ended for sitting idle inside a transaction.
fn is_unavailable(code: &SqlState) -> bool {
    code.code().starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
}

/// A title as the BYTEA column that holds it.
fn title(t: &SystemTitle) -> &[u8] {
    t.as_bytes()
}

/// A u32 as the 64-bit column that holds it.
fn col(v: u32) -> i64 {
    i64::from(v)
}

/// The columns of a counter key: sender, device, client, kind, generation.
struct KeyCols<'a> {
    sender: &'a [u8],
    device: &'a [u8],
    client: i64,
    kind: i64,
    generation: i64,
}

impl<'a> KeyCols<'a> {
    fn of(key: &'a CounterKey) -> Self {
        Self {
            sender: key.sender.as_bytes(),
            device: key.device.as_bytes(),
            client: rows::client_code(key.client),
            kind: rows::kind_code(key.key),
            generation: col(key.generation),
        }
    }
}

/// `$1..=$5` of every statement on a counter-keyed table.
const KEY_WHERE: &str =
    "sender = $1 AND device = $2 AND client = $3 AND key_kind = $4 AND generation = $5";

impl Db {
    /// Opens a pool on `config` and migrates the database to `version`.
    pub(crate) fn open(mut config: Config, version: u32) -> Result<Self> {
        let timeout = config.get_connect_timeout().copied().unwrap_or_else(|| {
            config.connect_timeout(CONNECT_TIMEOUT);
            CONNECT_TIMEOUT
        });
        // First, so a setting in the URL's own options comes later and wins.
        let options = format!(
            "-c idle_in_transaction_session_timeout={} {}",
            IDLE_IN_TRANSACTION.as_millis(),
            config.get_options().unwrap_or_default()
        );
        config.options(options.trim_end());
        // No test query on every checkout (a round trip per call): a
        // connection the server closed fails its call with `Unavailable`,
        // and the pool drops it when it comes back broken.
        let pool = Pool::builder()
            .max_size(POOL_SIZE)
            .test_on_check_out(false)
            .min_idle(Some(1))
            .connection_timeout(timeout)
            .build_unchecked(Manager { config });
        let db = Self { pool };
        db.migrate(version)?;
        Ok(db)
    }

    fn conn(&self) -> Result<PooledConnection<Manager>> {
        // r2d2 reports a pool timeout and a failed connect alike: either way
        // the database cannot be reached now.
        self.pool.get().map_err(|_| StoreError::Unavailable)
    }

    /// Runs `f` in a READ COMMITTED transaction, committed only if `f`
    /// succeeds (dropping it rolls back).
    fn write<T>(&self, f: impl FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        self.run(Mode::Write, f)
    }

    /// Runs `f` in a READ ONLY, REPEATABLE READ transaction (one snapshot).
    fn read<T>(&self, f: impl FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        self.run(Mode::Read, f)
    }

    /// Runs `f` in a transaction of `mode` on a pooled connection. When a
    /// cached statement no longer fits the schema (another process migrated
    /// it), the transaction is rolled back, the connection's statements are
    /// forgotten, and `f` runs once more in a new transaction.
    fn run<T>(&self, mode: Mode, mut f: impl FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn()?;
        let Conn { client, prepared } = &mut *conn;
        let mut again = true;
        loop {
            let tx = match mode {
                Mode::Write => client.transaction(),
                Mode::Read => client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start(),
            }
            .map_err(err)?;
            let mut tx = Tx {
                tx,
                prepared: &mut *prepared,
                stale: false,
            };
            match f(&mut tx) {
                Ok(out) => {
                    tx.tx.commit().map_err(err)?;
                    return Ok(out);
                }
                Err(e) => {
                    let stale = tx.stale;
                    drop(tx);
                    if !stale {
                        return Err(e);
                    }
                    prepared.clear();
                    if !core::mem::take(&mut again) {
                        return Err(e);
                    }
                }
            }
        }
    }

    fn migrate(&self, target: u32) -> Result<()> {
        let supported = u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX);
        self.write(|tx| {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .map_err(err)?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_version (
                     version    BIGINT      PRIMARY KEY,
                     applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                 );",
            )
            .map_err(err)?;
            let found = current_version(tx)?;
            if found > supported {
                return Err(StoreError::Schema { found, supported });
            }
            for (v, sql) in (1u32..).zip(MIGRATIONS) {
                if v > found && v <= target {
                    tx.batch_execute(sql).map_err(err)?;
                    tx.execute(
                        "INSERT INTO schema_version (version) VALUES ($1)",
                        &[&col(v)],
                    )
                    .map_err(err)?;
                }
            }
            Ok(())
        })
    }

    pub(crate) fn schema_version(&self) -> Result<u32> {
        self.read(current_version)
    }

    // --- Key records ------------------------------------------------------

    pub(crate) fn put_initial_many(&self, records: &[PackagedRecord]) -> Result<()> {
        // One statement over arrays, so an import of millions of records
        // costs a round trip per call, not two per record. No advisory
        // locks (a bulk import may name more slots than the server's lock
        // table holds): an initial record goes into an empty slot, whose
        // primary key is the lock. Two importers of one slot meet there,
        // and the loser's unique violation is a `Conflict`.
        let mut slots: Vec<KeySlot> = records.iter().map(|r| KeySlot::of(&r.id())).collect();
        slots.sort_unstable();
        if slots.windows(2).any(|w| matches!(w, [a, b] if a == b)) {
            // The second record of a slot finds the first one active.
            return Err(StoreError::StaleGeneration);
        }
        let mut cols = ImportCols::with_capacity(records.len());
        for r in records {
            cols.push(r)?;
        }
        self.write(|tx| {
            let inserted = tx
                .execute(
                    "INSERT INTO key_records (device, client, role, state, generation, record)
                     SELECT u.device, u.client, u.role, 'active', u.generation, u.record
                     FROM unnest($1::bytea[], $2::int8[], $3::int8[], $4::int8[], $5::bytea[])
                          AS u(device, client, role, generation, record)
                     WHERE NOT EXISTS (
                         SELECT 1 FROM key_records k
                         WHERE k.device = u.device AND k.client = u.client AND k.role = u.role
                           AND k.state IN ('active', 'pending'))",
                    &[
                        &cols.device,
                        &cols.client,
                        &cols.role,
                        &cols.generation,
                        &cols.record,
                    ],
                )
                .map_err(err)?;
            if usize::try_from(inserted).ok() == Some(records.len()) {
                Ok(())
            } else {
                // A slot already held an active or pending record: the
                // transaction is rolled back, nothing is stored.
                Err(StoreError::StaleGeneration)
            }
        })
    }

    pub(crate) fn put_pending(&self, record: &PackagedRecord) -> Result<()> {
        let slot = KeySlot::of(&record.id());
        self.change(&slot, SlotChange::PutPending(record))
    }

    pub(crate) fn activate_all(&self, slots: &[(KeySlot, u32)]) -> Result<()> {
        let just: Vec<KeySlot> = slots.iter().map(|(s, _)| *s).collect();
        self.write(|tx| {
            lock_slots(tx, &just)?;
            for (slot, generation) in slots {
                rows::change_slot(&mut Slots(tx), slot, SlotChange::Activate(*generation))?;
            }
            Ok(())
        })
    }

    pub(crate) fn change(&self, slot: &KeySlot, change: SlotChange<'_>) -> Result<()> {
        self.write(|tx| {
            lock_slots(tx, core::slice::from_ref(slot))?;
            rows::change_slot(&mut Slots(tx), slot, change)
        })
    }

    pub(crate) fn slot_records(&self, slot: &KeySlot) -> Result<SlotRecords> {
        self.read(|tx| load_slot(tx, slot, ""))
    }

    pub(crate) fn devices(
        &self,
        after: Option<&SystemTitle>,
        limit: u32,
    ) -> Result<Vec<SystemTitle>> {
        let after: &[u8] = after.map_or(&[], |d| d.as_bytes());
        self.read(|tx| {
            tx.query(
                "SELECT DISTINCT device FROM key_records WHERE device > $1
                 ORDER BY device LIMIT $2",
                &[&after, &col(limit)],
            )
            .map_err(err)?
            .iter()
            .map(|r| rows::title(&get::<Vec<u8>>(r, 0)?, "key record device"))
            .collect()
        })
    }

    /// The check value is octets 4 to 6 of the packaged record.
    pub(crate) fn record_keks(&self) -> Result<Vec<KekRecords>> {
        self.read(|tx| {
            tx.query(
                "SELECT substring(record FROM 4 FOR 3) AS kek,
                     count(*) FILTER (WHERE state = 'active'),
                     count(*) FILTER (WHERE state = 'pending'),
                     count(*) FILTER (WHERE state = 'previous')
                 FROM key_records GROUP BY kek ORDER BY kek",
                &[],
            )
            .map_err(err)?
            .iter()
            .map(|r| {
                let what = "key record KEK check value";
                Ok(KekRecords {
                    kek: rows::kek_check_value(&get::<Vec<u8>>(r, 0)?, what)?,
                    active: rows::u64_col(get(r, 1)?, what)?,
                    pending: rows::u64_col(get(r, 2)?, what)?,
                    previous: rows::u64_col(get(r, 3)?, what)?,
                })
            })
            .collect()
        })
    }

    pub(crate) fn slots(&self, device: &SystemTitle) -> Result<Vec<KeySlot>> {
        self.read(|tx| {
            tx.query(
                "SELECT DISTINCT client, role FROM key_records WHERE device = $1
                 ORDER BY client, role",
                &[&title(device)],
            )
            .map_err(err)?
            .iter()
            .map(|r| rows::slot(*device, get(r, 0)?, get(r, 1)?))
            .collect()
        })
    }

    // --- Send counters ----------------------------------------------------

    pub(crate) fn counter_create(&self, key: &CounterKey, first: u32) -> Result<()> {
        let k = KeyCols::of(key);
        self.write(|tx| {
            tx.execute(
                "INSERT INTO send_counters (sender, device, client, key_kind, generation, ceiling)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &k.sender,
                    &k.device,
                    &k.client,
                    &k.kind,
                    &k.generation,
                    &col(first),
                ],
            )
            .map(drop)
            .map_err(|e| match err(e) {
                StoreError::Conflict => StoreError::CounterExists,
                other => other,
            })
        })
    }

    /// One statement: the row is locked and read (`old`), raised only when
    /// its ceiling is in range (`new`), and both values are returned. No
    /// row: the record is lost; no `new`: the stored ceiling is corrupt.
    pub(crate) fn counter_claim(&self, key: &CounterKey, n: NonZeroU32) -> Result<Range<u32>> {
        let k = KeyCols::of(key);
        let what = rows::Lazy(|| format!("{} (ceiling)", CounterName(key)));
        let row = self.write(|tx| {
            tx.query_opt(
                &format!(
                    "WITH old AS (
                         SELECT ceiling FROM send_counters WHERE {KEY_WHERE} FOR UPDATE
                     ), new AS (
                         UPDATE send_counters SET ceiling = LEAST(ceiling + $6, 4294967295)
                         WHERE {KEY_WHERE}
                           AND (SELECT ceiling FROM old) BETWEEN 0 AND 4294967295
                         RETURNING ceiling
                     )
                     SELECT old.ceiling, (SELECT ceiling FROM new) FROM old"
                ),
                &[
                    &k.sender,
                    &k.device,
                    &k.client,
                    &k.kind,
                    &k.generation,
                    &col(n.get()),
                ],
            )
            .map_err(err)
        })?;
        let row = row.ok_or(StoreError::CounterLost)?;
        let old = rows::u32_col(get(&row, 0)?, &what)?;
        let new: Option<i64> = get(&row, 1)?;
        let new = rows::u32_col(new.ok_or_else(|| StoreError::corrupt(&what))?, &what)?;
        if new < old {
            return Err(StoreError::corrupt(&what));
        }
        Ok(old..new)
    }

    pub(crate) fn counter_ceiling(&self, key: &CounterKey) -> Result<Option<u32>> {
        self.read(|tx| counter_row(tx, "send_counters", "ceiling", key))
    }

    pub(crate) fn fence(&self, margin: u32) -> Result<u64> {
        if margin == 0 {
            return Ok(0);
        }
        self.write(|tx| {
            tx.execute(
                "UPDATE send_counters SET ceiling = LEAST(ceiling + $1, 4294967295)
                 WHERE ceiling >= 0 AND ceiling < 4294967295",
                &[&col(margin)],
            )
            .map_err(err)
        })
    }

    // --- Receive floors ---------------------------------------------------

    pub(crate) fn floor(&self, key: &CounterKey) -> Result<Option<u32>> {
        self.read(|tx| counter_row(tx, "receive_floors", "floor", key))
    }

    /// The upsert creates or raises the floor; when it does neither it still
    /// locks the row, so the floor read next is the one that refused it.
    pub(crate) fn raise_floor(&self, key: &CounterKey, value: u32, strict: bool) -> Result<()> {
        let k = KeyCols::of(key);
        self.write(|tx| {
            let raised = tx
                .query_opt(
                    "INSERT INTO receive_floors (sender, device, client, key_kind, generation, floor)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (sender, device, client, key_kind, generation)
                     DO UPDATE SET floor = excluded.floor
                     WHERE receive_floors.floor < excluded.floor
                     RETURNING floor",
                    &[&k.sender, &k.device, &k.client, &k.kind, &k.generation, &col(value)],
                )
                .map_err(err)?;
            if raised.is_some() {
                return Ok(());
            }
            match counter_row(tx, "receive_floors", "floor", key)? {
                Some(current) if current == value && !strict => Ok(()),
                Some(current) if current >= value => Err(StoreError::FloorLowered { current }),
                // Locked, yet neither raised nor at or above: not a floor
                // this statement could have left.
                _ => Err(StoreError::Conflict),
            }
        })
    }

    // --- Device registry --------------------------------------------------

    pub(crate) fn register_device(&self, e: &DeviceEntry) -> Result<()> {
        let rotated = e
            .rotated_at
            .map(|t| rows::time_col(t, "rotated_at"))
            .transpose()?;
        let commissioned = rows::time_col(e.commissioned_at, "commissioned_at")?;
        let deadline = rows::time_col(e.deadline, "deadline")?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO devices (device, commissioned_at, capabilities, deadline, rotated_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &title(&e.device),
                    &commissioned,
                    &col(e.capabilities),
                    &deadline,
                    &rotated,
                ],
            )
            .map(drop)
            .map_err(err)
        })
    }

    pub(crate) fn device(&self, device: &SystemTitle) -> Result<Option<DeviceEntry>> {
        self.read(|tx| {
            tx.query_opt(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device = $1"),
                &[&title(device)],
            )
            .map_err(err)?
            .as_ref()
            .map(device_row)
            .transpose()
        })
    }

    pub(crate) fn device_count(&self) -> Result<u64> {
        self.read(|tx| {
            let row = tx
                .query_one("SELECT count(*) FROM devices", &[])
                .map_err(err)?;
            rows::u64_col(get(&row, 0)?, "device count")
        })
    }

    pub(crate) fn registry(
        &self,
        after: Option<&SystemTitle>,
        limit: u32,
    ) -> Result<Vec<DeviceEntry>> {
        let after: &[u8] = after.map_or(&[], |d| d.as_bytes());
        self.read(|tx| {
            tx.query(
                &format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE device > $1
                     ORDER BY device LIMIT $2"
                ),
                &[&after, &col(limit)],
            )
            .map_err(err)?
            .iter()
            .map(device_row)
            .collect()
        })
    }

    pub(crate) fn mark_rotated(&self, device: &SystemTitle, at: u64) -> Result<()> {
        let at = rows::time_col(at, "rotated_at")?;
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE devices SET rotated_at = $2 WHERE device = $1",
                    &[&title(device), &at],
                )
                .map_err(err)?;
            if n == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
        })
    }

    pub(crate) fn set_capabilities(&self, device: &SystemTitle, capabilities: u32) -> Result<()> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE devices SET capabilities = $2 WHERE device = $1",
                    &[&title(device), &col(capabilities)],
                )
                .map_err(err)?;
            if n == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
        })
    }

    /// Served by the partial index `devices_due` (its predicate is this
    /// query's `rotated_at IS NULL`, its order this query's order).
    pub(crate) fn due(&self, until: u64, limit: u32) -> Result<Vec<DeviceEntry>> {
        let until = i64::try_from(until).unwrap_or(i64::MAX);
        self.read(|tx| {
            tx.query(
                &format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices
                     WHERE rotated_at IS NULL AND deadline <= $1
                     ORDER BY deadline, device LIMIT $2"
                ),
                &[&until, &col(limit)],
            )
            .map_err(err)?
            .iter()
            .map(device_row)
            .collect()
        })
    }

    pub(crate) fn set_progress(
        &self,
        device: &SystemTitle,
        client: Client,
        p: &Progress,
    ) -> Result<()> {
        let at = rows::time_col(p.at, "progress time")?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO rotation_progress (device, client, state, generation, invoke_id, at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (device, client) DO UPDATE SET state = excluded.state,
                     generation = excluded.generation, invoke_id = excluded.invoke_id,
                     at = excluded.at",
                &[
                    &title(device),
                    &rows::client_code(client),
                    &p.state.as_str(),
                    &col(p.generation),
                    &i64::from(p.invoke_id),
                    &at,
                ],
            )
            .map(drop)
            .map_err(err)
        })
    }

    pub(crate) fn progress(
        &self,
        device: &SystemTitle,
        client: Client,
    ) -> Result<Option<Progress>> {
        self.read(|tx| {
            let row = tx
                .query_opt(
                    "SELECT state, generation, invoke_id, at FROM rotation_progress
                     WHERE device = $1 AND client = $2",
                    &[&title(device), &rows::client_code(client)],
                )
                .map_err(err)?;
            let what = rows::Lazy(|| format!("rotation progress of {device:?}/{}", client.name()));
            row.map(|r| {
                let state: String = get(&r, 0)?;
                Ok(Progress {
                    state: ProgressState::from_name(&state)
                        .ok_or_else(|| StoreError::corrupt(&what))?,
                    generation: rows::u32_col(get(&r, 1)?, &what)?,
                    invoke_id: u8::try_from(get::<i64>(&r, 2)?)
                        .map_err(|_| StoreError::corrupt(&what))?,
                    at: rows::u64_col(get(&r, 3)?, &what)?,
                })
            })
            .transpose()
        })
    }

    // --- Campaigns --------------------------------------------------------

    pub(crate) fn campaign_start(
        &self,
        id: &str,
        reason: &str,
        devices: &[SystemTitle],
        at: u64,
    ) -> Result<()> {
        let at = rows::time_col(at, "campaign start")?;
        let titles: Vec<&[u8]> = devices.iter().map(title).collect();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO campaigns (id, reason, started_at) VALUES ($1, $2, $3)",
                &[&id, &reason, &at],
            )
            .map_err(err)?;
            tx.execute(
                "INSERT INTO campaign_devices (campaign, device)
                 SELECT $1, d FROM unnest($2::bytea[]) AS d
                 ON CONFLICT DO NOTHING",
                &[&id, &titles],
            )
            .map_err(err)?;
            Ok(())
        })
    }

    pub(crate) fn campaign_mark_done(&self, id: &str, device: &SystemTitle) -> Result<()> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE campaign_devices SET done = true WHERE campaign = $1 AND device = $2",
                    &[&id, &title(device)],
                )
                .map_err(err)?;
            if n == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
        })
    }

    pub(crate) fn campaign_pending(&self, id: &str, limit: u32) -> Result<Vec<SystemTitle>> {
        self.read(|tx| {
            tx.query(
                "SELECT device FROM campaign_devices WHERE campaign = $1 AND NOT done
                 ORDER BY device LIMIT $2",
                &[&id, &col(limit)],
            )
            .map_err(err)?
            .iter()
            .map(|r| rows::title(&get::<Vec<u8>>(r, 0)?, format_args!("campaign {id} device")))
            .collect()
        })
    }

    pub(crate) fn campaign_status(&self, id: &str) -> Result<Option<CampaignStatus>> {
        self.read(|tx| {
            let exists = tx
                .query_opt("SELECT 1 FROM campaigns WHERE id = $1", &[&id])
                .map_err(err)?;
            if exists.is_none() {
                return Ok(None);
            }
            let row = tx
                .query_one(
                    "SELECT count(*), count(*) FILTER (WHERE done) FROM campaign_devices
                     WHERE campaign = $1",
                    &[&id],
                )
                .map_err(err)?;
            let what = rows::Lazy(|| format!("campaign {id}"));
            Ok(Some(CampaignStatus {
                total: rows::u64_col(get(&row, 0)?, &what)?,
                done: rows::u64_col(get(&row, 1)?, &what)?,
            }))
        })
    }

    pub(crate) fn campaigns(&self, after: Option<&str>, limit: u32) -> Result<Vec<CampaignEntry>> {
        self.read(|tx| {
            tx.query(
                "SELECT c.id, c.reason, c.started_at, count(d.device),
                     count(d.device) FILTER (WHERE d.done)
                 FROM campaigns c LEFT JOIN campaign_devices d ON d.campaign = c.id
                 WHERE $1::text IS NULL OR c.id > $1 GROUP BY c.id ORDER BY c.id LIMIT $2",
                &[&after, &col(limit)],
            )
            .map_err(err)?
            .iter()
            .map(|r| {
                let id: String = get(r, 0)?;
                let what = rows::Lazy(|| format!("campaign {id}"));
                Ok(CampaignEntry {
                    reason: get(r, 1)?,
                    started_at: rows::u64_col(get(r, 2)?, &what)?,
                    status: CampaignStatus {
                        total: rows::u64_col(get(r, 3)?, &what)?,
                        done: rows::u64_col(get(r, 4)?, &what)?,
                    },
                    id,
                })
            })
            .collect()
        })
    }

    // --- Rotation leases --------------------------------------------------

    /// One statement: `prev` locks and reads the lease held now (if any);
    /// the upsert takes the device when it is free, expired or ours. A lease
    /// that appeared after `prev` looked (another taker's insert) is taken
    /// only if it is ours, so `taken_over` is exact.
    pub(crate) fn take_lease(
        &self,
        device: &SystemTitle,
        owner: &str,
        now: u64,
        expires_at: u64,
    ) -> Result<Lease> {
        let now_col = rows::time_col(now, "lease time")?;
        let expires = rows::time_col(expires_at, "lease expiry")?;
        let row = self.write(|tx| {
            tx.query_one(
                "WITH prev AS (
                     SELECT owner FROM leases WHERE device = $1 FOR UPDATE
                 ), taken AS (
                     INSERT INTO leases (device, owner, expires_at)
                     SELECT $1::bytea, $2::text, $3::bigint FROM (SELECT count(*) FROM prev) AS looked
                     ON CONFLICT (device) DO UPDATE SET owner = excluded.owner,
                         expires_at = excluded.expires_at
                     WHERE leases.owner = excluded.owner
                        OR (leases.expires_at <= $4 AND EXISTS (SELECT 1 FROM prev))
                     RETURNING 1
                 )
                 SELECT EXISTS (SELECT 1 FROM taken), (SELECT owner FROM prev)",
                &[&title(device), &owner, &expires, &now_col],
            )
            .map_err(err)
        })?;
        if !get::<bool>(&row, 0)? {
            return Err(StoreError::Conflict);
        }
        let prev: Option<String> = get(&row, 1)?;
        Ok(Lease {
            device: *device,
            owner: owner.to_owned(),
            expires_at,
            taken_over: prev.is_some_and(|p| p != owner),
        })
    }

    pub(crate) fn release_lease(&self, lease: &Lease) -> Result<()> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "DELETE FROM leases WHERE device = $1 AND owner = $2",
                    &[&title(&lease.device), &lease.owner],
                )
                .map_err(err)?;
            if n == 0 {
                Err(StoreError::Conflict)
            } else {
                Ok(())
            }
        })
    }

    // --- Audit ------------------------------------------------------------

    /// Up to `limit` audit rows with `seq` above `after`, in order.
    pub(crate) fn audit_page(&self, after: Option<u64>, limit: u32) -> Result<Vec<AuditRow>> {
        let after = after.map_or(Ok(-1), |a| rows::time_col(a, "audit seq"))?;
        self.read(|tx| {
            tx.query(
                "SELECT seq, chain_id, event, mac FROM audit_log WHERE seq > $1
                 ORDER BY seq LIMIT $2",
                &[&after, &col(limit)],
            )
            .map_err(err)?
            .iter()
            .map(|r| {
                Ok(AuditRow {
                    seq: get(r, 0)?,
                    chain_id: get(r, 1)?,
                    event: get(r, 2)?,
                    mac: get(r, 3)?,
                })
            })
            .collect()
        })
    }

    /// Appends one audit row; [`StoreError::Conflict`] when its `seq` is taken.
    pub(crate) fn audit_append(
        &self,
        seq: u64,
        chain_id: &[u8],
        event: &[u8],
        mac: &[u8],
    ) -> Result<()> {
        let seq = rows::time_col(seq, "audit seq")?;
        self.write(|tx| {
            tx.execute(
                "INSERT INTO audit_log (seq, chain_id, event, mac) VALUES ($1, $2, $3, $4)",
                &[&seq, &chain_id, &event, &mac],
            )
            .map(drop)
            .map_err(err)
        })
    }
}

/// Column `i` of `row`, typed; a type the column does not hold is a
/// backend error (the schema is not the one migrated), never a panic.
fn get<'a, T: postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T> {
    row.try_get(i).map_err(err)
}

fn current_version(tx: &mut Tx<'_>) -> Result<u32> {
    let row = tx
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .map_err(err)?;
    rows::u32_col(get(&row, 0)?, "schema_version")
}

/// The 32-bit value column `column` of `table`'s row for `key`.
fn counter_row(
    tx: &mut Tx<'_>,
    table: &str,
    column: &str,
    key: &CounterKey,
) -> Result<Option<u32>> {
    let k = KeyCols::of(key);
    let params: &Params<'_> = &[&k.sender, &k.device, &k.client, &k.kind, &k.generation];
    let row = tx
        .query_opt(
            &format!("SELECT {column} FROM {table} WHERE {KEY_WHERE}"),
            params,
        )
        .map_err(err)?;
    row.map(|r| rows::u32_col(get(&r, 0)?, format_args!("{} ({column})", CounterName(key))))
        .transpose()
}

const DEVICE_COLUMNS: &str = "device, commissioned_at, capabilities, deadline, rotated_at";

/// A `devices` row, checked.
fn device_row(r: &Row) -> Result<DeviceEntry> {
    let device = rows::title(&get::<Vec<u8>>(r, 0)?, "registry device")?;
    let what = rows::Lazy(|| format!("registry entry of {device:?}"));
    Ok(DeviceEntry {
        device,
        commissioned_at: rows::u64_col(get(r, 1)?, &what)?,
        capabilities: rows::u32_col(get(r, 2)?, &what)?,
        deadline: rows::u64_col(get(r, 3)?, &what)?,
        rotated_at: get::<Option<i64>>(r, 4)?
            .map(|t| rows::u64_col(t, &what))
            .transpose()?,
    })
}

/// The key of a slot's advisory lock: FNV-1a over its columns (the same in
/// every process; two slots that share a key only wait for each other).
fn slot_lock(slot: &KeySlot) -> Result<i32> {
    let (device, client, role) = slot_cols(slot)?;
    let h = device
        .iter()
        .copied()
        .chain(client.to_be_bytes())
        .chain(role.to_be_bytes())
        .fold(0x811C_9DC5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
    Ok(i32::from_be_bytes(h.to_be_bytes()))
}

/// Takes the advisory locks of `slots` for the rest of the transaction, in
/// ascending key order (every caller takes them in that order: no
/// deadlock between two calls).
/// The columns of a bulk import, one array each.
struct ImportCols<'r> {
    device: Vec<Vec<u8>>,
    client: Vec<i64>,
    role: Vec<i64>,
    generation: Vec<i64>,
    record: Vec<&'r [u8]>,
}

impl<'r> ImportCols<'r> {
    fn with_capacity(n: usize) -> Self {
        Self {
            device: Vec::with_capacity(n),
            client: Vec::with_capacity(n),
            role: Vec::with_capacity(n),
            generation: Vec::with_capacity(n),
            record: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, r: &'r PackagedRecord) -> Result<()> {
        let id = r.id();
        let slot = KeySlot::of(&id);
        self.client.push(rows::slot_client(&slot)?);
        self.role.push(rows::role_code(slot.role));
        self.device.push(slot.device.as_bytes().to_vec());
        self.generation.push(col(r.generation()));
        self.record.push(r.as_bytes());
        Ok(())
    }
}

fn lock_slots(tx: &mut Tx<'_>, slots: &[KeySlot]) -> Result<()> {
    let mut keys = slots.iter().map(slot_lock).collect::<Result<Vec<i32>>>()?;
    keys.sort_unstable();
    keys.dedup();
    tx.execute(
        "SELECT count(pg_advisory_xact_lock($1, k)) FROM unnest($2::int4[]) AS k",
        &[&SLOT_LOCK_CLASS, &keys],
    )
    .map(drop)
    .map_err(err)
}

fn slot_cols(slot: &KeySlot) -> Result<(&[u8], i64, i64)> {
    Ok((
        slot.device.as_bytes(),
        rows::slot_client(slot)?,
        rows::role_code(slot.role),
    ))
}

/// The rows of `slot`, checked; `suffix` is `FOR UPDATE` in a write.
fn load_slot(tx: &mut Tx<'_>, slot: &KeySlot, suffix: &str) -> Result<SlotRecords> {
    let (device, client, role) = slot_cols(slot)?;
    let found = tx
        .query(
            &format!(
                "SELECT state, generation, record FROM key_records
                 WHERE device = $1 AND client = $2 AND role = $3 {suffix}"
            ),
            &[&device, &client, &role],
        )
        .map_err(err)?;
    let mut g = SlotRecords::default();
    for row in &found {
        let state: String = get(row, 0)?;
        let blob: Vec<u8> = get(row, 2)?;
        rows::place(&mut g, slot, &state, get(row, 1)?, &blob)?;
    }
    Ok(g)
}

/// The slot statements, inside one write transaction that holds the
/// slot's advisory lock.
struct Slots<'a, 'c>(&'a mut Tx<'c>);

impl Slots<'_, '_> {
    /// Runs a conditional write that must touch exactly one row.
    fn one(&mut self, sql: &str, p: &Params<'_>) -> Result<()> {
        let n = self.0.execute(sql, p).map_err(err)?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }
}

impl SlotTx for Slots<'_, '_> {
    fn load(&mut self, slot: &KeySlot) -> Result<SlotRecords> {
        load_slot(self.0, slot, "FOR UPDATE")
    }

    fn insert(&mut self, slot: &KeySlot, state: State, new: &PackagedRecord) -> Result<()> {
        let (device, client, role) = slot_cols(slot)?;
        self.one(
            "INSERT INTO key_records (device, client, role, state, generation, record)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &device,
                &client,
                &role,
                &state.as_str(),
                &col(new.generation()),
                &&new.as_bytes()[..],
            ],
        )
    }

    fn replace(
        &mut self,
        slot: &KeySlot,
        state: State,
        old: &PackagedRecord,
        new: &PackagedRecord,
    ) -> Result<()> {
        let (device, client, role) = slot_cols(slot)?;
        self.one(
            "UPDATE key_records SET generation = $5, record = $6
             WHERE device = $1 AND client = $2 AND role = $3 AND state = $4 AND record = $7",
            &[
                &device,
                &client,
                &role,
                &state.as_str(),
                &col(new.generation()),
                &&new.as_bytes()[..],
                &&old.as_bytes()[..],
            ],
        )
    }

    fn delete(&mut self, slot: &KeySlot, state: State, old: &PackagedRecord) -> Result<()> {
        let (device, client, role) = slot_cols(slot)?;
        self.one(
            "DELETE FROM key_records
             WHERE device = $1 AND client = $2 AND role = $3 AND state = $4 AND record = $5",
            &[
                &device,
                &client,
                &role,
                &state.as_str(),
                &&old.as_bytes()[..],
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_cannot_serve_is_unavailable() {
        for code in [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::CONNECTION_EXCEPTION,
            SqlState::CONNECTION_FAILURE,
            SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
        ] {
            assert!(is_unavailable(&code), "{}", code.code());
        }
        for code in [
            SqlState::UNIQUE_VIOLATION,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::CHECK_VIOLATION,
            SqlState::UNDEFINED_TABLE,
            SqlState::QUERY_CANCELED,
        ] {
            assert!(!is_unavailable(&code), "{}", code.code());
        }
    }

    #[test]
    fn only_postgres_urls_are_this_backends() {
        assert!(target("sqlite::memory:").is_none());
        assert!(target("mysql://h/d").is_none());
        assert!(matches!(target("postgres://u@h/d"), Some(Ok(_))));
        assert!(matches!(target("postgresql://u@h:5/d"), Some(Ok(_))));
        assert!(matches!(
            target("postgres://u@h:notaport/d"),
            Some(Err(StoreError::BadUrl))
        ));
    }

    #[test]
    fn slot_lock_keys_are_stable_and_tell_slots_apart() {
        let slot = |b: u8, role| KeySlot {
            device: SystemTitle::new([1, 2, 3, 4, 5, 6, 7, b]),
            client: None,
            role,
        };
        let mk = slot(8, dlms_sec::KeyRole::Master);
        // The key is the same in every process and build: FNV-1a of the
        // device, the client code (0) and the role code (1), as 64-bit
        // big-endian columns.
        assert_eq!(slot_lock(&mk), Ok(-674_045_126));
        assert_ne!(
            slot_lock(&mk).ok(),
            slot_lock(&slot(9, dlms_sec::KeyRole::Master)).ok()
        );
    }
}
