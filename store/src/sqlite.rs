//! The SQLite backend: every SQL statement the store runs on SQLite.
//!
//! Guarantees:
//!
//! * **Many threads and processes share one file.** The file is in WAL
//!   mode (readers do not block the writer); every connection waits up to
//!   [`BUSY_TIMEOUT`] for a lock before reporting
//!   [`StoreError::Unavailable`].
//! * **Writes are serialised.** Every call that writes runs in a
//!   `BEGIN IMMEDIATE` transaction, which takes the database's write lock
//!   before its first read, so a read-then-write (a claim, a slot change, a
//!   floor, a lease) cannot interleave with another writer's.
//! * **Committed means durable.** `synchronous = FULL`: a claim the store
//!   acknowledged survives a power loss, so its values are never issued
//!   again.
//! * **A row that already exists** (a primary key hit) is
//!   [`StoreError::Conflict`] (or the call's own error: `CounterExists`).
//!
//! `sqlite::memory:` is one private in-memory database per [`Db`], on a
//! single connection (an in-memory database lives only as long as its
//! connection).

use core::num::NonZeroU32;
use core::ops::Range;
use core::time::Duration;

use dlms_sec::SystemTitle;
use dlms_sec::counter::CounterKey;
use dlms_sec::key::package::PackagedRecord;
use dlms_sec::keystore::{KeySlot, SlotChange, SlotRecords};
use dlms_sec::types::Client;
use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior, params,
};

use crate::audit::AuditRow;
use crate::error::{Result, StoreError};
use crate::model::{
    CampaignEntry, CampaignStatus, DeviceEntry, KekRecords, Lease, Progress, ProgressState,
};
use crate::rows::{self, CounterName, SlotTx, State};

/// How long a connection waits for another's lock.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections kept per file.
const POOL_SIZE: u32 = 8;

/// The embedded migrations, in order: version `i + 1` at index `i`.
const MIGRATIONS: [&str; 3] = [
    include_str!("../migrations/sqlite/V1__keys_and_counters.sql"),
    include_str!("../migrations/sqlite/V2__registry_campaigns_leases_audit.sql"),
    include_str!("../migrations/sqlite/V3__key_tables_without_rowid.sql"),
];

/// The largest 32-bit value, as the 64-bit columns hold it.
const U32_MAX: i64 = 0xFFFF_FFFF;

/// Where an SQLite URL points.
#[derive(Debug)]
pub(crate) enum Target {
    File(String),
    Memory,
}

/// The target of `url` if it is an SQLite URL (`None` for another scheme).
pub(crate) fn target(url: &str) -> Option<Result<Target>> {
    if url == "sqlite::memory:" {
        return Some(Ok(Target::Memory));
    }
    let path = url.strip_prefix("sqlite://")?;
    Some(if path.is_empty() {
        Err(StoreError::BadUrl)
    } else {
        Ok(Target::File(path.to_owned()))
    })
}

/// A pool of connections to one SQLite database.
#[derive(Debug)]
pub(crate) struct Db {
    pool: Pool<SqliteConnectionManager>,
}

/// The store's error for an SQLite one.
fn err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Unavailable,
        Some(ErrorCode::ConstraintViolation) if is_key_violation(&e) => StoreError::Conflict,
        _ => StoreError::Backend(e.to_string()),
    }
}

/// A primary-key or unique constraint hit (not a CHECK or NOT NULL one).
fn is_key_violation(e: &rusqlite::Error) -> bool {
    const PRIMARY_KEY: i32 = 1555;
    const UNIQUE: i32 = 2067;
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == PRIMARY_KEY || f.extended_code == UNIQUE)
}

impl Db {
    /// Opens the database and migrates it to `version`.
    pub(crate) fn open(target: Target, version: u32) -> Result<Self> {
        let init = |c: &mut Connection| -> rusqlite::Result<()> {
            c.busy_timeout(BUSY_TIMEOUT)?;
            c.pragma_update(None, "synchronous", "FULL")?;
            // A page cache of 8 MiB per connection: lookups in a file of
            // millions of records touch the index's inner pages each time.
            c.pragma_update(None, "cache_size", -8192)?;
            c.pragma_update(None, "foreign_keys", "ON")?;
            Ok(())
        };
        let (manager, size) = match target {
            Target::File(path) => (
                SqliteConnectionManager::file(path).with_init(move |c| {
                    init(c)?;
                    let _: String =
                        c.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
                    // Reads through a memory map, not a read call per page.
                    c.pragma_update(None, "mmap_size", 1_i64 << 30)?;
                    Ok(())
                }),
                POOL_SIZE,
            ),
            Target::Memory => (SqliteConnectionManager::memory().with_init(init), 1),
        };
        // No test query on every checkout: a statement per call for
        // nothing, on a file that does not go away.
        let pool = Pool::builder()
            .max_size(size)
            .test_on_check_out(false)
            .min_idle(Some(1))
            .idle_timeout(None)
            .max_lifetime(None)
            .connection_timeout(BUSY_TIMEOUT)
            .build(manager)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let db = Self { pool };
        db.migrate(version)?;
        Ok(db)
    }

    fn conn(&self) -> Result<PooledConnection<SqliteConnectionManager>> {
        // r2d2 reports a pool timeout and a failed connect alike: either way
        // the database cannot be reached now.
        self.pool.get().map_err(|_| StoreError::Unavailable)
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction, committed only if `f`
    /// succeeds.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let out = f(&tx)?;
        tx.commit().map_err(err)?;
        Ok(out)
    }

    /// Runs `f` in a read transaction (one consistent snapshot).
    fn read<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(err)?;
        f(&tx)
    }

    fn migrate(&self, target: u32) -> Result<()> {
        let supported = u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX);
        self.write(|tx| {
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_version (
                     version    INTEGER PRIMARY KEY,
                     applied_at INTEGER NOT NULL DEFAULT (unixepoch())
                 );",
            )
            .map_err(err)?;
            let found = current_version(tx)?;
            if found > supported {
                return Err(StoreError::Schema { found, supported });
            }
            for (v, sql) in (1u32..).zip(MIGRATIONS) {
                if v > found && v <= target {
                    tx.execute_batch(sql).map_err(err)?;
                    tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [v])
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
        self.write(|tx| {
            for r in records {
                let slot = KeySlot::of(&r.id());
                rows::change_slot(&mut Slots(tx), &slot, SlotChange::PutInitial(r))?;
            }
            Ok(())
        })
    }

    pub(crate) fn put_pending(&self, record: &PackagedRecord) -> Result<()> {
        let slot = KeySlot::of(&record.id());
        self.change(&slot, SlotChange::PutPending(record))
    }

    pub(crate) fn activate_all(&self, slots: &[(KeySlot, u32)]) -> Result<()> {
        self.write(|tx| {
            for (slot, generation) in slots {
                rows::change_slot(&mut Slots(tx), slot, SlotChange::Activate(*generation))?;
            }
            Ok(())
        })
    }

    pub(crate) fn change(&self, slot: &KeySlot, change: SlotChange<'_>) -> Result<()> {
        self.write(|tx| rows::change_slot(&mut Slots(tx), slot, change))
    }

    pub(crate) fn slot_records(&self, slot: &KeySlot) -> Result<SlotRecords> {
        self.read(|tx| Slots(tx).load(slot))
    }

    pub(crate) fn devices(
        &self,
        after: Option<&SystemTitle>,
        limit: u32,
    ) -> Result<Vec<SystemTitle>> {
        let after: &[u8] = after.map_or(&[], |d| d.as_bytes());
        self.read(|tx| {
            let mut st = tx
                .prepare_cached(
                    "SELECT DISTINCT device FROM key_records WHERE device > ?1
                     ORDER BY device LIMIT ?2",
                )
                .map_err(err)?;
            let found = st
                .query_map(params![after, limit], |r| r.get::<_, Vec<u8>>(0))
                .map_err(err)?;
            found
                .map(|d| rows::title(&d.map_err(err)?, "key record device"))
                .collect()
        })
    }

    /// The check value is octets 4 to 6 of the packaged record.
    pub(crate) fn record_keks(&self) -> Result<Vec<KekRecords>> {
        self.read(|tx| {
            let mut st = tx
                .prepare_cached(
                    "SELECT substr(record, 4, 3) AS kek, sum(state = 'active'),
                         sum(state = 'pending'), sum(state = 'previous')
                     FROM key_records GROUP BY kek ORDER BY kek",
                )
                .map_err(err)?;
            let found = st
                .query_map([], |r| {
                    Ok((
                        loose_blob(r, 0)?,
                        loose_int(r, 1)?,
                        loose_int(r, 2)?,
                        loose_int(r, 3)?,
                    ))
                })
                .map_err(err)?;
            found
                .map(|r| {
                    let (kek, active, pending, previous) = r.map_err(err)?;
                    let what = "key record KEK check value";
                    Ok(KekRecords {
                        kek: rows::kek_check_value(&kek, what)?,
                        active: rows::u64_col(active, what)?,
                        pending: rows::u64_col(pending, what)?,
                        previous: rows::u64_col(previous, what)?,
                    })
                })
                .collect()
        })
    }

    pub(crate) fn slots(&self, device: &SystemTitle) -> Result<Vec<KeySlot>> {
        self.read(|tx| {
            let mut st = tx
                .prepare_cached(
                    "SELECT DISTINCT client, role FROM key_records WHERE device = ?1
                     ORDER BY client, role",
                )
                .map_err(err)?;
            let found = st
                .query_map([device.as_bytes()], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(err)?;
            found
                .map(|row| {
                    let (client, role) = row.map_err(err)?;
                    rows::slot(*device, client, role)
                })
                .collect()
        })
    }

    // --- Send counters ----------------------------------------------------

    pub(crate) fn counter_create(&self, key: &CounterKey, first: u32) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO send_counters (sender, device, client, key_kind, generation, ceiling)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    key.sender.as_bytes(),
                    key.device.as_bytes(),
                    rows::client_code(key.client),
                    rows::kind_code(key.key),
                    key.generation,
                    first
                ],
            )
            .map(drop)
            .map_err(|e| match err(e) {
                StoreError::Conflict => StoreError::CounterExists,
                other => other,
            })
        })
    }

    pub(crate) fn counter_claim(&self, key: &CounterKey, n: NonZeroU32) -> Result<Range<u32>> {
        self.write(|tx| {
            let old =
                counter_row(tx, "send_counters", "ceiling", key)?.ok_or(StoreError::CounterLost)?;
            let new = old.saturating_add(n.get());
            if new != old {
                tx.execute(
                    "UPDATE send_counters SET ceiling = ?6 WHERE sender = ?1 AND device = ?2
                     AND client = ?3 AND key_kind = ?4 AND generation = ?5",
                    params![
                        key.sender.as_bytes(),
                        key.device.as_bytes(),
                        rows::client_code(key.client),
                        rows::kind_code(key.key),
                        key.generation,
                        new
                    ],
                )
                .map_err(err)?;
            }
            Ok(old..new)
        })
    }

    pub(crate) fn counter_ceiling(&self, key: &CounterKey) -> Result<Option<u32>> {
        self.read(|tx| counter_row(tx, "send_counters", "ceiling", key))
    }

    pub(crate) fn fence(&self, margin: u32) -> Result<u64> {
        if margin == 0 {
            return Ok(0);
        }
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE send_counters SET ceiling = MIN(ceiling + ?1, ?2)
                     WHERE ceiling >= 0 AND ceiling < ?2",
                    params![margin, U32_MAX],
                )
                .map_err(err)?;
            Ok(u64::try_from(n).unwrap_or(u64::MAX))
        })
    }

    // --- Receive floors ---------------------------------------------------

    pub(crate) fn floor(&self, key: &CounterKey) -> Result<Option<u32>> {
        self.read(|tx| counter_row(tx, "receive_floors", "floor", key))
    }

    pub(crate) fn raise_floor(&self, key: &CounterKey, value: u32, strict: bool) -> Result<()> {
        self.write(|tx| {
            let sql = match counter_row(tx, "receive_floors", "floor", key)? {
                Some(current) if current > value || (strict && current == value) => {
                    return Err(StoreError::FloorLowered { current });
                }
                Some(current) if current == value => return Ok(()),
                Some(_) => {
                    "UPDATE receive_floors SET floor = ?6 WHERE sender = ?1 AND device = ?2
                     AND client = ?3 AND key_kind = ?4 AND generation = ?5"
                }
                None => {
                    "INSERT INTO receive_floors (sender, device, client, key_kind, generation, floor)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                }
            };
            tx.execute(
                sql,
                params![
                    key.sender.as_bytes(),
                    key.device.as_bytes(),
                    rows::client_code(key.client),
                    rows::kind_code(key.key),
                    key.generation,
                    value
                ],
            )
            .map(drop)
            .map_err(err)
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
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    e.device.as_bytes(),
                    commissioned,
                    e.capabilities,
                    deadline,
                    rotated
                ],
            )
            .map(drop)
            .map_err(err)
        })
    }

    pub(crate) fn device(&self, device: &SystemTitle) -> Result<Option<DeviceEntry>> {
        self.read(|tx| {
            tx.query_row(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device = ?1"),
                [device.as_bytes()],
                device_row,
            )
            .optional()
            .map_err(err)?
            .map(DeviceRow::decode)
            .transpose()
        })
    }

    pub(crate) fn device_count(&self) -> Result<u64> {
        self.read(|tx| {
            let n: i64 = tx
                .query_row("SELECT count(*) FROM devices", [], |r| r.get(0))
                .map_err(err)?;
            rows::u64_col(n, "device count")
        })
    }

    pub(crate) fn registry(
        &self,
        after: Option<&SystemTitle>,
        limit: u32,
    ) -> Result<Vec<DeviceEntry>> {
        let after: &[u8] = after.map_or(&[], |d| d.as_bytes());
        self.read(|tx| {
            let mut st = tx
                .prepare_cached(&format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE device > ?1
                     ORDER BY device LIMIT ?2"
                ))
                .map_err(err)?;
            let found = st
                .query_map(params![after, limit], device_row)
                .map_err(err)?;
            found
                .map(|r| r.map_err(err).and_then(DeviceRow::decode))
                .collect()
        })
    }

    pub(crate) fn mark_rotated(&self, device: &SystemTitle, at: u64) -> Result<()> {
        let at = rows::time_col(at, "rotated_at")?;
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE devices SET rotated_at = ?2 WHERE device = ?1",
                    params![device.as_bytes(), at],
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
                    "UPDATE devices SET capabilities = ?2 WHERE device = ?1",
                    params![device.as_bytes(), capabilities],
                )
                .map_err(err)?;
            if n == 0 {
                Err(StoreError::NotFound)
            } else {
                Ok(())
            }
        })
    }

    pub(crate) fn due(&self, until: u64, limit: u32) -> Result<Vec<DeviceEntry>> {
        let until = i64::try_from(until).unwrap_or(i64::MAX);
        self.read(|tx| {
            let mut st = tx
                .prepare_cached(&format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices INDEXED BY devices_due
                     WHERE rotated_at IS NULL AND deadline <= ?1
                     ORDER BY deadline, device LIMIT ?2"
                ))
                .map_err(err)?;
            let found = st
                .query_map(params![until, limit], device_row)
                .map_err(err)?;
            found
                .map(|r| r.map_err(err).and_then(DeviceRow::decode))
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
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (device, client) DO UPDATE SET state = excluded.state,
                     generation = excluded.generation, invoke_id = excluded.invoke_id,
                     at = excluded.at",
                params![
                    device.as_bytes(),
                    rows::client_code(client),
                    p.state.as_str(),
                    p.generation,
                    p.invoke_id,
                    at
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
                .query_row(
                    "SELECT state, generation, invoke_id, at FROM rotation_progress
                     WHERE device = ?1 AND client = ?2",
                    params![device.as_bytes(), rows::client_code(client)],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    },
                )
                .optional()
                .map_err(err)?;
            let what = rows::Lazy(|| format!("rotation progress of {device:?}/{}", client.name()));
            row.map(|(state, generation, invoke_id, at)| {
                Ok(Progress {
                    state: ProgressState::from_name(&state)
                        .ok_or_else(|| StoreError::corrupt(&what))?,
                    generation: rows::u32_col(generation, &what)?,
                    invoke_id: u8::try_from(invoke_id).map_err(|_| StoreError::corrupt(&what))?,
                    at: rows::u64_col(at, &what)?,
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
        self.write(|tx| {
            tx.execute(
                "INSERT INTO campaigns (id, reason, started_at) VALUES (?1, ?2, ?3)",
                params![id, reason, at],
            )
            .map_err(err)?;
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO campaign_devices (campaign, device) VALUES (?1, ?2)
                     ON CONFLICT DO NOTHING",
                )
                .map_err(err)?;
            for d in devices {
                st.execute(params![id, d.as_bytes()]).map_err(err)?;
            }
            Ok(())
        })
    }

    pub(crate) fn campaign_mark_done(&self, id: &str, device: &SystemTitle) -> Result<()> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE campaign_devices SET done = 1 WHERE campaign = ?1 AND device = ?2",
                    params![id, device.as_bytes()],
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
            let mut st = tx
                .prepare_cached(
                    "SELECT device FROM campaign_devices WHERE campaign = ?1 AND done = 0
                     ORDER BY device LIMIT ?2",
                )
                .map_err(err)?;
            let found = st
                .query_map(params![id, limit], |r| r.get::<_, Vec<u8>>(0))
                .map_err(err)?;
            found
                .map(|d| rows::title(&d.map_err(err)?, format_args!("campaign {id} device")))
                .collect()
        })
    }

    pub(crate) fn campaign_status(&self, id: &str) -> Result<Option<CampaignStatus>> {
        self.read(|tx| {
            let exists = tx
                .query_row("SELECT 1 FROM campaigns WHERE id = ?1", [id], |_| Ok(()))
                .optional()
                .map_err(err)?;
            if exists.is_none() {
                return Ok(None);
            }
            let (total, done): (i64, i64) = tx
                .query_row(
                    "SELECT count(*), coalesce(sum(done), 0) FROM campaign_devices
                     WHERE campaign = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(err)?;
            let what = rows::Lazy(|| format!("campaign {id}"));
            Ok(Some(CampaignStatus {
                total: rows::u64_col(total, &what)?,
                done: rows::u64_col(done, &what)?,
            }))
        })
    }

    pub(crate) fn campaigns(&self, after: Option<&str>, limit: u32) -> Result<Vec<CampaignEntry>> {
        self.read(|tx| {
            let mut st = tx
                .prepare_cached(
                    "SELECT c.id, c.reason, c.started_at, count(d.device),
                         coalesce(sum(d.done), 0)
                     FROM campaigns c LEFT JOIN campaign_devices d ON d.campaign = c.id
                     WHERE ?1 IS NULL OR c.id > ?1 GROUP BY c.id ORDER BY c.id LIMIT ?2",
                )
                .map_err(err)?;
            let found = st
                .query_map(params![after, limit], |r| {
                    Ok((
                        loose_text(r, 0)?,
                        loose_text(r, 1)?,
                        loose_int(r, 2)?,
                        loose_int(r, 3)?,
                        loose_int(r, 4)?,
                    ))
                })
                .map_err(err)?;
            found
                .map(|r| {
                    let (id, reason, started_at, total, done) = r.map_err(err)?;
                    let what = rows::Lazy(|| format!("campaign {id}"));
                    Ok(CampaignEntry {
                        started_at: rows::u64_col(started_at, &what)?,
                        status: CampaignStatus {
                            total: rows::u64_col(total, &what)?,
                            done: rows::u64_col(done, &what)?,
                        },
                        id,
                        reason,
                    })
                })
                .collect()
        })
    }

    // --- Rotation leases --------------------------------------------------

    pub(crate) fn take_lease(
        &self,
        device: &SystemTitle,
        owner: &str,
        now: u64,
        expires_at: u64,
    ) -> Result<Lease> {
        let now_col = rows::time_col(now, "lease time")?;
        let expires = rows::time_col(expires_at, "lease expiry")?;
        self.write(|tx| {
            let held: Option<(String, i64)> = tx
                .query_row(
                    "SELECT owner, expires_at FROM leases WHERE device = ?1",
                    [device.as_bytes()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(err)?;
            let taken_over = match &held {
                None => false,
                Some((o, _)) if o == owner => false,
                Some((_, e)) if *e <= now_col => true,
                Some(_) => return Err(StoreError::Conflict),
            };
            tx.execute(
                "INSERT INTO leases (device, owner, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (device) DO UPDATE SET owner = excluded.owner,
                     expires_at = excluded.expires_at",
                params![device.as_bytes(), owner, expires],
            )
            .map_err(err)?;
            Ok(Lease {
                device: *device,
                owner: owner.to_owned(),
                expires_at,
                taken_over,
            })
        })
    }

    pub(crate) fn release_lease(&self, lease: &Lease) -> Result<()> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "DELETE FROM leases WHERE device = ?1 AND owner = ?2",
                    params![lease.device.as_bytes(), lease.owner],
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
            let mut st = tx
                .prepare_cached(
                    "SELECT seq, chain_id, event, mac FROM audit_log WHERE seq > ?1
                     ORDER BY seq LIMIT ?2",
                )
                .map_err(err)?;
            let found = st
                .query_map(params![after, limit], |r| {
                    Ok(AuditRow {
                        seq: r.get(0)?,
                        chain_id: r.get(1)?,
                        event: r.get(2)?,
                        mac: r.get(3)?,
                    })
                })
                .map_err(err)?;
            found.map(|r| r.map_err(err)).collect()
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
                "INSERT INTO audit_log (seq, chain_id, event, mac) VALUES (?1, ?2, ?3, ?4)",
                params![seq, chain_id, event, mac],
            )
            .map(drop)
            .map_err(err)
        })
    }
}

fn current_version(tx: &Transaction<'_>) -> Result<u32> {
    let v: i64 = tx
        .query_row(
            "SELECT coalesce(max(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    rows::u32_col(v, "schema_version")
}

/// The 32-bit value column `col` of `table`'s row for `key`.
/// A column read whatever SQLite holds in it: a value of another type
/// than the schema's (a row edited outside the store) reads as one the
/// decoding refuses as corrupt, naming the row, rather than as a driver
/// error.
fn loose_blob(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Vec<u8>> {
    Ok(match r.get_ref(i)? {
        rusqlite::types::ValueRef::Blob(b) => b.to_vec(),
        _ => Vec::new(),
    })
}

/// As [`loose_blob`], for an integer column: anything else reads as -1.
fn loose_int(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<i64> {
    Ok(match r.get_ref(i)? {
        rusqlite::types::ValueRef::Integer(v) => v,
        _ => -1,
    })
}

/// As [`loose_blob`], for a text column: anything else reads as empty.
fn loose_text(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<String> {
    Ok(match r.get_ref(i)? {
        rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        _ => String::new(),
    })
}

fn counter_row(
    tx: &Transaction<'_>,
    table: &str,
    col: &str,
    key: &CounterKey,
) -> Result<Option<u32>> {
    let v: Option<i64> = tx
        .prepare_cached(&format!(
            "SELECT {col} FROM {table} WHERE sender = ?1 AND device = ?2 AND client = ?3
             AND key_kind = ?4 AND generation = ?5"
        ))
        .and_then(|mut st| {
            st.query_row(
                params![
                    key.sender.as_bytes(),
                    key.device.as_bytes(),
                    rows::client_code(key.client),
                    rows::kind_code(key.key),
                    key.generation
                ],
                |r| loose_int(r, 0),
            )
            .optional()
        })
        .map_err(err)?;
    v.map(|v| rows::u32_col(v, format_args!("{} ({col})", CounterName(key))))
        .transpose()
}

const DEVICE_COLUMNS: &str = "device, commissioned_at, capabilities, deadline, rotated_at";

/// A `devices` row as read, before its checks.
struct DeviceRow {
    device: Vec<u8>,
    commissioned_at: i64,
    capabilities: i64,
    deadline: i64,
    rotated_at: Option<i64>,
}

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok(DeviceRow {
        device: r.get(0)?,
        commissioned_at: r.get(1)?,
        capabilities: r.get(2)?,
        deadline: r.get(3)?,
        rotated_at: r.get(4)?,
    })
}

impl DeviceRow {
    fn decode(self) -> Result<DeviceEntry> {
        let device = rows::title(&self.device, "registry device")?;
        let what = rows::Lazy(|| format!("registry entry of {device:?}"));
        Ok(DeviceEntry {
            device,
            commissioned_at: rows::u64_col(self.commissioned_at, &what)?,
            capabilities: rows::u32_col(self.capabilities, &what)?,
            deadline: rows::u64_col(self.deadline, &what)?,
            rotated_at: self
                .rotated_at
                .map(|t| rows::u64_col(t, &what))
                .transpose()?,
        })
    }
}

/// The slot statements, inside one transaction.
struct Slots<'a, 'c>(&'a Transaction<'c>);

impl Slots<'_, '_> {
    fn key(slot: &KeySlot) -> Result<(&[u8], i64, i64)> {
        Ok((
            slot.device.as_bytes(),
            rows::slot_client(slot)?,
            rows::role_code(slot.role),
        ))
    }

    /// Runs a conditional write that must touch exactly one row.
    fn one(&self, sql: &str, p: &[&dyn rusqlite::ToSql]) -> Result<()> {
        let n = self
            .0
            .prepare_cached(sql)
            .and_then(|mut st| st.execute(p))
            .map_err(err)?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }
}

impl SlotTx for Slots<'_, '_> {
    fn load(&mut self, slot: &KeySlot) -> Result<SlotRecords> {
        let (device, client, role) = Self::key(slot)?;
        let mut st = self
            .0
            .prepare_cached(
                "SELECT state, generation, record FROM key_records
                 WHERE device = ?1 AND client = ?2 AND role = ?3",
            )
            .map_err(err)?;
        let found = st
            .query_map(params![device, client, role], |r| {
                Ok((loose_text(r, 0)?, loose_int(r, 1)?, loose_blob(r, 2)?))
            })
            .map_err(err)?;
        let mut g = SlotRecords::default();
        for row in found {
            let (state, generation, blob) = row.map_err(err)?;
            rows::place(&mut g, slot, &state, generation, &blob)?;
        }
        Ok(g)
    }

    fn insert(&mut self, slot: &KeySlot, state: State, new: &PackagedRecord) -> Result<()> {
        let (device, client, role) = Self::key(slot)?;
        self.one(
            "INSERT INTO key_records (device, client, role, state, generation, record)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                device,
                client,
                role,
                state.as_str(),
                new.generation(),
                &new.as_bytes()[..]
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
        let (device, client, role) = Self::key(slot)?;
        self.one(
            "UPDATE key_records SET generation = ?5, record = ?6
             WHERE device = ?1 AND client = ?2 AND role = ?3 AND state = ?4 AND record = ?7",
            params![
                device,
                client,
                role,
                state.as_str(),
                new.generation(),
                &new.as_bytes()[..],
                &old.as_bytes()[..]
            ],
        )
    }

    fn delete(&mut self, slot: &KeySlot, state: State, old: &PackagedRecord) -> Result<()> {
        let (device, client, role) = Self::key(slot)?;
        self.one(
            "DELETE FROM key_records
             WHERE device = ?1 AND client = ?2 AND role = ?3 AND state = ?4 AND record = ?5",
            params![device, client, role, state.as_str(), &old.as_bytes()[..]],
        )
    }
}
