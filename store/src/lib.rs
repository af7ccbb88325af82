//! Durable, shared state for dlms-sec head-ends (an S1SP, a DCO): packaged
//! key records, send counters, receive floors, the device registry with
//! rotation progress, campaigns, rotation leases and a chained audit log.
//!
//! One [`Store`] type over a database named by URL ([`Store::open`]):
//! `sqlite://PATH` (a file, in WAL mode, shared by any number of threads
//! and processes), `sqlite::memory:` (tests), or `postgres://…` /
//! `postgresql://…` (a pool of connections to a PostgreSQL database; see
//! the backend's URL parameters at [`Store::open`]). Every method takes
//! `&self` and runs in its own transaction; a failed call changes nothing.
//!
//! # What every backend guarantees
//!
//! * **Packaged records only.** Key records are [`PackagedRecord`]s
//!   (ciphertext under an HSM KEK); no clear key is ever written. A record
//!   read back is re-parsed and checked against its row, or the call fails
//!   with [`StoreError::Corrupt`] naming the slot.
//! * **The core's key-store semantics**, one transaction per call
//!   ([`Store::activate_all`]: several slots, all or none); `&Store`
//!   implements [`KeyStore`] and passes the core's conformance suite.
//! * **A lost race is [`StoreError::Conflict`]**, never a silent overwrite.
//! * **Counter claims are atomic**: two claimers, in one process or many,
//!   get disjoint ranges; ceilings saturate at `0xFFFFFFFF`; a missing
//!   record is [`StoreError::CounterLost`]; [`Store::fence`] raises every
//!   ceiling at once (after a failover). `&Store` implements
//!   [`CounterPersistence`].
//! * **Floors never move down**: a lower value is
//!   [`StoreError::FloorLowered`] and changes nothing.
//! * **Migrations are embedded** and applied on open; a database newer than
//!   the build is refused ([`StoreError::Schema`]).
//! * **Never a panic** on anything read from the database.

use core::num::NonZeroU32;
use core::ops::Range;

use dlms_sec::SystemTitle;
use dlms_sec::counter::{CounterKey, CounterPersistence};
use dlms_sec::error::CounterError;
use dlms_sec::key::package::PackagedRecord;
use dlms_sec::keystore::{KeySlot, KeyStore};
use dlms_sec::types::Client;

mod audit;
mod error;
mod model;
mod postgres;
mod rows;
mod sqlite;

pub use crate::audit::{
    AuditBreak, AuditBreakKind, DatabaseAuditSink, VerifiedHead, verify_audit, verify_audit_with,
};
pub use crate::error::{Result, StoreError};
pub use crate::model::{
    CampaignEntry, CampaignStatus, DeviceEntry, KekRecords, Lease, Progress, ProgressState,
    ROTATION_WINDOW,
};

/// The newest schema version this build knows (and migrates to on open).
pub const SCHEMA_VERSION: u32 = 3;

/// A handle on one database; cheap to share by reference across threads.
/// See the [crate docs](crate) for what it guarantees.
#[derive(Debug)]
pub struct Store {
    backend: Backend,
}

/// The database behind a [`Store`].
#[derive(Debug)]
enum Backend {
    Sqlite(sqlite::Db),
    Postgres(postgres::Db),
}

/// Runs `$e` with `$db` bound to the backend's handle.
macro_rules! on_backend {
    ($self:expr, $db:ident => $e:expr) => {
        match &$self.backend {
            Backend::Sqlite($db) => $e,
            Backend::Postgres($db) => $e,
        }
    };
}

impl Store {
    /// Opens (and migrates to [`SCHEMA_VERSION`]) the database at `url`:
    /// `sqlite://PATH` (created on first open, WAL mode),
    /// `sqlite::memory:` (a private in-memory database), or a PostgreSQL
    /// connection URL, `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`
    /// (or `postgresql://`), whose parameters include `connect_timeout=SECS`
    /// (how long to wait for a connection; 10 s without it) and
    /// `options=-csearch_path%3DSCHEMA` (the store's tables in an existing
    /// schema of that name, so one database holds several stores).
    ///
    /// # Errors
    /// [`StoreError::BadUrl`] for any other URL, or a PostgreSQL URL that
    /// does not parse; [`StoreError::Schema`] when the database is newer
    /// than this build; [`StoreError::Unavailable`] when the server cannot
    /// be reached; [`StoreError::Backend`] when it cannot be opened.
    pub fn open(url: &str) -> Result<Self> {
        Self::open_with_schema(url, SCHEMA_VERSION)
    }

    /// As [`Self::open`], migrating to at most `version` (a staged rollout,
    /// or a test of the upgrade from an earlier version). A database already
    /// past `version` (and not past [`SCHEMA_VERSION`]) is left as it is.
    ///
    /// # Errors
    /// As [`Self::open`]; [`StoreError::Schema`] also when `version` is
    /// above [`SCHEMA_VERSION`].
    pub fn open_with_schema(url: &str, version: u32) -> Result<Self> {
        if version > SCHEMA_VERSION {
            return Err(StoreError::Schema {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        let backend = if let Some(target) = sqlite::target(url) {
            Backend::Sqlite(sqlite::Db::open(target?, version)?)
        } else if let Some(config) = postgres::target(url) {
            Backend::Postgres(postgres::Db::open(config?, version)?)
        } else {
            return Err(StoreError::BadUrl);
        };
        Ok(Self { backend })
    }

    /// The schema version of the database.
    ///
    /// # Errors
    /// The backend's.
    pub fn schema_version(&self) -> Result<u32> {
        on_backend!(self, db => db.schema_version())
    }

    // --- Key records ----------------------------------------------------

    /// Installs `record` as active in an empty slot (commissioning import).
    ///
    /// # Errors
    /// [`StoreError::StaleGeneration`] if the slot holds an active or a
    /// pending record; [`StoreError::Conflict`] on a lost race.
    pub fn put_initial(&self, record: &PackagedRecord) -> Result<()> {
        self.put_initial_many(core::slice::from_ref(record))
    }

    /// [`Self::put_initial`] of many records in one transaction (bulk
    /// import): all or none.
    ///
    /// # Errors
    /// As [`Self::put_initial`], for the first record refused; nothing is
    /// stored then.
    pub fn put_initial_many(&self, records: &[PackagedRecord]) -> Result<()> {
        on_backend!(self, db => db.put_initial_many(records))
    }

    /// Stores `record` as the pending generation of its slot, replacing any
    /// pending record; the active record is untouched.
    ///
    /// # Errors
    /// [`StoreError::StaleGeneration`] if its generation is not newer than
    /// the active one.
    pub fn put_pending(&self, record: &PackagedRecord) -> Result<()> {
        on_backend!(self, db => db.put_pending(record))
    }

    /// Promotes the pending record of `slot` with `generation` to active;
    /// the old active becomes previous. Activating the active generation is
    /// a no-op that succeeds.
    ///
    /// # Errors
    /// [`StoreError::NoPending`] when that generation is neither pending
    /// nor active.
    pub fn activate(&self, slot: &KeySlot, generation: u32) -> Result<()> {
        self.activate_all(&[(*slot, generation)])
    }

    /// [`Self::activate`] of several slots in one transaction (a client's
    /// AK and GUEK, with the MK): all or none.
    ///
    /// # Errors
    /// As [`Self::activate`], for the first slot refused; nothing changes.
    pub fn activate_all(&self, slots: &[(KeySlot, u32)]) -> Result<()> {
        on_backend!(self, db => db.activate_all(slots))
    }

    /// The active record of `slot`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when there is none; [`StoreError::Corrupt`]
    /// when a row of the slot does not read back.
    pub fn active(&self, slot: &KeySlot) -> Result<PackagedRecord> {
        self.slot_records(slot)?.active.ok_or(StoreError::NotFound)
    }

    /// The pending record of `slot`, if any.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`]; the backend's.
    pub fn pending(&self, slot: &KeySlot) -> Result<Option<PackagedRecord>> {
        Ok(self.slot_records(slot)?.pending)
    }

    /// The previous (superseded) record of `slot`, if any.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`]; the backend's.
    pub fn previous(&self, slot: &KeySlot) -> Result<Option<PackagedRecord>> {
        Ok(self.slot_records(slot)?.previous)
    }

    /// All three records of `slot`, read in one transaction.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`]; the backend's.
    pub fn slot_records(&self, slot: &KeySlot) -> Result<dlms_sec::keystore::SlotRecords> {
        on_backend!(self, db => db.slot_records(slot))
    }

    /// Drops the pending record of `slot`; `Ok` if there is none.
    ///
    /// # Errors
    /// The backend's.
    pub fn discard_pending(&self, slot: &KeySlot) -> Result<()> {
        on_backend!(self, db => db.change(slot, dlms_sec::keystore::SlotChange::DiscardPending))
    }

    /// Removes the previous record of `slot`; `Ok` if there is none.
    ///
    /// # Errors
    /// The backend's.
    pub fn retire_previous(&self, slot: &KeySlot) -> Result<()> {
        on_backend!(self, db => db.change(slot, dlms_sec::keystore::SlotChange::RetirePrevious))
    }

    /// How many records, by state, are packaged under each KEK, by check
    /// value in ascending order (a walk over every record: for reports).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a record too short to carry a check value.
    pub fn record_keks(&self) -> Result<Vec<KekRecords>> {
        on_backend!(self, db => db.record_keks())
    }

    /// Up to `limit` devices holding a record, in ascending order, starting
    /// after `after` (a page of a walk over every device).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a device column that is not a title.
    pub fn devices(&self, after: Option<&SystemTitle>, limit: u32) -> Result<Vec<SystemTitle>> {
        on_backend!(self, db => db.devices(after, limit))
    }

    /// The slots of `device` holding a record, in ascending order.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a row naming no slot.
    pub fn slots(&self, device: &SystemTitle) -> Result<Vec<KeySlot>> {
        on_backend!(self, db => db.slots(device))
    }

    // --- Send counters --------------------------------------------------

    /// Creates the counter record of a key used for the first time, with
    /// its ceiling at `first`.
    ///
    /// # Errors
    /// [`StoreError::CounterExists`] when it exists.
    pub fn counter_create(&self, key: &CounterKey, first: u32) -> Result<()> {
        on_backend!(self, db => db.counter_create(key, first))
    }

    /// Atomically raises `key`'s ceiling by `n` (saturating at
    /// `0xFFFFFFFF`) and returns the values claimed: old ceiling to new.
    ///
    /// # Errors
    /// [`StoreError::CounterLost`] when there is no record;
    /// [`StoreError::Corrupt`] when the stored ceiling is out of range.
    pub fn counter_claim(&self, key: &CounterKey, n: NonZeroU32) -> Result<Range<u32>> {
        on_backend!(self, db => db.counter_claim(key, n))
    }

    /// The ceiling of `key`, if it has a record.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when out of range.
    pub fn counter_ceiling(&self, key: &CounterKey) -> Result<Option<u32>> {
        on_backend!(self, db => db.counter_ceiling(key))
    }

    /// Raises every ceiling by `margin` (saturating) in one statement: run
    /// after a failover, with a margin above any claim in flight, so no
    /// value a lost commit handed out is handed out again. Returns the
    /// number of counters.
    ///
    /// # Errors
    /// The backend's.
    pub fn fence(&self, margin: u32) -> Result<u64> {
        on_backend!(self, db => db.fence(margin))
    }

    // --- Receive floors -------------------------------------------------

    /// The receive floor of `key` (the last counter value accepted), if any.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when out of range.
    pub fn floor(&self, key: &CounterKey) -> Result<Option<u32>> {
        on_backend!(self, db => db.floor(key))
    }

    /// Creates or raises the floor of `key` to `value`; equal is a no-op.
    ///
    /// # Errors
    /// [`StoreError::FloorLowered`] when `value` is below the stored floor
    /// (nothing changes; audit it).
    pub fn raise_floor(&self, key: &CounterKey, value: u32) -> Result<()> {
        on_backend!(self, db => db.raise_floor(key, value, false))
    }

    /// Records `value` as the counter of a frame accepted under `key`: as
    /// [`Self::raise_floor`], but a value equal to the floor is refused
    /// too, so of two nodes accepting one frame exactly one succeeds.
    ///
    /// # Errors
    /// [`StoreError::FloorLowered`] when `value` is at or below the stored
    /// floor; nothing changes.
    pub fn accept_counter(&self, key: &CounterKey, value: u32) -> Result<()> {
        on_backend!(self, db => db.raise_floor(key, value, true))
    }

    // --- Device registry ------------------------------------------------

    /// Adds a device to the registry.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when it is registered already.
    pub fn register_device(&self, entry: &DeviceEntry) -> Result<()> {
        on_backend!(self, db => db.register_device(entry))
    }

    /// The registry entry of `device`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a row out of range.
    pub fn device(&self, device: &SystemTitle) -> Result<Option<DeviceEntry>> {
        on_backend!(self, db => db.device(device))
    }

    /// The number of registered devices.
    ///
    /// # Errors
    /// The backend's.
    pub fn device_count(&self) -> Result<u64> {
        on_backend!(self, db => db.device_count())
    }

    /// Up to `limit` registry entries in ascending order of system title,
    /// starting after `after` (a page of a walk over the whole registry).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a row out of range.
    pub fn registry(&self, after: Option<&SystemTitle>, limit: u32) -> Result<Vec<DeviceEntry>> {
        on_backend!(self, db => db.registry(after, limit))
    }

    /// Records that `device`'s keys were rotated at `at`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when it is not registered.
    pub fn mark_rotated(&self, device: &SystemTitle, at: u64) -> Result<()> {
        on_backend!(self, db => db.mark_rotated(device, at))
    }

    /// Replaces what `device` is recorded to support (after a capability
    /// survey).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when it is not registered.
    pub fn set_capabilities(&self, device: &SystemTitle, capabilities: u32) -> Result<()> {
        on_backend!(self, db => db.set_capabilities(device, capabilities))
    }

    /// Up to `limit` devices not yet rotated whose deadline is at or before
    /// `now + horizon`, earliest deadline first (then by title).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a row out of range.
    pub fn due(&self, now: u64, horizon: u64, limit: u32) -> Result<Vec<DeviceEntry>> {
        on_backend!(self, db => db.due(now.saturating_add(horizon), limit))
    }

    /// Records `client`'s rotation progress on `device` (replacing any).
    ///
    /// # Errors
    /// The backend's.
    pub fn set_progress(&self, device: &SystemTitle, client: Client, p: &Progress) -> Result<()> {
        on_backend!(self, db => db.set_progress(device, client, p))
    }

    /// `client`'s rotation progress on `device`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a row out of range.
    pub fn progress(&self, device: &SystemTitle, client: Client) -> Result<Option<Progress>> {
        on_backend!(self, db => db.progress(device, client))
    }

    // --- Campaigns ------------------------------------------------------

    /// Starts campaign `id` over `devices` (duplicates count once).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the id exists.
    pub fn campaign_start(
        &self,
        id: &str,
        reason: &str,
        devices: &[SystemTitle],
        at: u64,
    ) -> Result<()> {
        on_backend!(self, db => db.campaign_start(id, reason, devices, at))
    }

    /// Marks `device` done in campaign `id` (again is a no-op).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the device is not in the campaign.
    pub fn campaign_mark_done(&self, id: &str, device: &SystemTitle) -> Result<()> {
        on_backend!(self, db => db.campaign_mark_done(id, device))
    }

    /// Up to `limit` devices of campaign `id` not yet done, ascending: what
    /// a restarted worker resumes with.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a device column that is not a title.
    pub fn campaign_pending(&self, id: &str, limit: u32) -> Result<Vec<SystemTitle>> {
        on_backend!(self, db => db.campaign_pending(id, limit))
    }

    /// How far campaign `id` has got; `None` when there is no such campaign.
    ///
    /// # Errors
    /// The backend's.
    pub fn campaign_status(&self, id: &str) -> Result<Option<CampaignStatus>> {
        on_backend!(self, db => db.campaign_status(id))
    }

    /// Up to `limit` campaigns in ascending order of id, starting after
    /// `after`, each with its status.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a row out of range.
    pub fn campaigns(&self, after: Option<&str>, limit: u32) -> Result<Vec<CampaignEntry>> {
        on_backend!(self, db => db.campaigns(after, limit))
    }

    // --- Rotation leases ------------------------------------------------

    /// Takes (or renews, for the same owner) the rotation lease on `device`
    /// until `now + ttl`. An expired lease of another owner is taken over.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] while another owner's lease is unexpired.
    pub fn take_lease(
        &self,
        device: &SystemTitle,
        owner: &str,
        now: u64,
        ttl: u64,
    ) -> Result<Lease> {
        on_backend!(self, db => db.take_lease(device, owner, now, now.saturating_add(ttl)))
    }

    /// Releases `lease` if its owner still holds it.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when another owner holds the device now, or
    /// nobody does.
    pub fn release_lease(&self, lease: &Lease) -> Result<()> {
        on_backend!(self, db => db.release_lease(lease))
    }
}

// --- The core's plug points ------------------------------------------------

/// The core's key-store trait over a shared store: `(&store)` is a
/// [`KeyStore`]. Refusals map to the matching [`KeyError`](dlms_sec::error::KeyError)s;
/// see [`StoreError::to_key_error`].
impl KeyStore for &Store {
    fn put_pending(&mut self, record: &PackagedRecord) -> dlms_sec::Result<()> {
        Store::put_pending(self, record).map_err(|e| e.to_key_error())
    }
    fn put_initial(&mut self, record: &PackagedRecord) -> dlms_sec::Result<()> {
        Store::put_initial(self, record).map_err(|e| e.to_key_error())
    }
    fn activate(&mut self, slot: &KeySlot, generation: u32) -> dlms_sec::Result<()> {
        Store::activate(self, slot, generation).map_err(|e| e.to_key_error())
    }
    fn activate_all(&mut self, slots: &[(KeySlot, u32)]) -> dlms_sec::Result<()> {
        Store::activate_all(self, slots).map_err(|e| e.to_key_error())
    }
    fn active(&self, slot: &KeySlot) -> dlms_sec::Result<PackagedRecord> {
        Store::active(self, slot).map_err(|e| e.to_key_error())
    }
    fn pending(&self, slot: &KeySlot) -> dlms_sec::Result<Option<PackagedRecord>> {
        Store::pending(self, slot).map_err(|e| e.to_key_error())
    }
    fn previous(&self, slot: &KeySlot) -> dlms_sec::Result<Option<PackagedRecord>> {
        Store::previous(self, slot).map_err(|e| e.to_key_error())
    }
    fn discard_pending(&mut self, slot: &KeySlot) -> dlms_sec::Result<()> {
        Store::discard_pending(self, slot).map_err(|e| e.to_key_error())
    }
    fn retire_previous(&mut self, slot: &KeySlot) -> dlms_sec::Result<()> {
        Store::retire_previous(self, slot).map_err(|e| e.to_key_error())
    }
    fn for_each_device(&self, f: &mut dyn FnMut(SystemTitle)) -> dlms_sec::Result<()> {
        const PAGE: u32 = 1024;
        let mut after = None;
        loop {
            let page = self
                .devices(after.as_ref(), PAGE)
                .map_err(|e| e.to_key_error())?;
            page.iter().copied().for_each(&mut *f);
            match page.last() {
                Some(last) if page.len() == PAGE as usize => after = Some(*last),
                _ => return Ok(()),
            }
        }
    }
    fn for_each_slot(
        &self,
        device: &SystemTitle,
        f: &mut dyn FnMut(KeySlot),
    ) -> dlms_sec::Result<()> {
        self.slots(device)
            .map_err(|e| e.to_key_error())?
            .into_iter()
            .for_each(f);
        Ok(())
    }
}

/// The core's counter persistence over a shared store: `(&store)` is a
/// [`CounterPersistence`], and counters in many processes over one
/// database claim disjoint blocks.
impl CounterPersistence for &Store {
    fn create(&mut self, key: &CounterKey, first: u32) -> Result<(), CounterError> {
        self.counter_create(key, first)
            .map_err(|e| e.to_counter_error())
    }
    fn claim(&mut self, key: &CounterKey, n: NonZeroU32) -> Result<Range<u32>, CounterError> {
        self.counter_claim(key, n).map_err(|e| e.to_counter_error())
    }
}

impl Store {
    /// Up to `limit` audit rows after `after`, by sequence number.
    pub(crate) fn audit_page(
        &self,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<audit::AuditRow>> {
        on_backend!(self, db => db.audit_page(after, limit))
    }

    /// Appends one sealed audit row.
    pub(crate) fn audit_append(
        &self,
        seq: u64,
        chain_id: &[u8],
        event: &[u8],
        mac: &[u8],
    ) -> Result<()> {
        on_backend!(self, db => db.audit_append(seq, chain_id, event, mac))
    }
}
