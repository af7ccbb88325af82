//! What an S1SP keeps besides key records: the device registry, the
//! meters' receive floors, rotation leases and campaign progress.
//!
//! [`Registry`] is the plug point; [`MemoryRegistry`] keeps it in this
//! process (tests, tools), and `&Store` (a `dlms_sec_store::Store`, SQLite
//! or PostgreSQL) keeps it durable and shared by many nodes.
//!
//! What every registry guarantees:
//! * a device is registered once, with its commissioning time and
//!   capabilities; its rotation deadline is seven days later, and
//!   [`Registry::due`] lists the devices not yet rotated by deadline;
//! * a receive floor never moves down: [`Registry::raise_floor`] of a
//!   value at or below the stored one is refused as a replay, so two nodes
//!   never both accept one answer;
//! * a rotation lease is held by one owner at a time until it expires
//!   ([`KeyError::Conflict`] for the other);
//! * a campaign's device list is fixed when it starts, and what is not
//!   marked done is still pending after a crash.

use std::collections::{BTreeMap, BTreeSet};

use dlms_sec::audit::Timestamp;
use dlms_sec::counter::CounterKey;
use dlms_sec::error::{CounterError, Error, KeyError, Result};
use dlms_sec::meter::DeviceCapabilities;
use dlms_sec::wire::SystemTitle;
use dlms_sec_store::{DeviceEntry, Store, StoreError};

/// The rotation deadline after commissioning: 7 days.
pub const ROTATION_DEADLINE_SECS: u64 = 7 * 24 * 3600;

/// What the registry knows of one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registration {
    /// When it was commissioned.
    pub commissioned_at: Timestamp,
    /// What it supports.
    pub capabilities: DeviceCapabilities,
    /// When its commissioning rotation finished, if it has.
    pub rotated_at: Option<Timestamp>,
}

impl Registration {
    /// The commissioning rotation deadline.
    #[must_use]
    pub const fn deadline(&self) -> Timestamp {
        Timestamp(
            self.commissioned_at
                .0
                .saturating_add(ROTATION_DEADLINE_SECS),
        )
    }
}

/// The S1SP's state besides key records. Methods that change state take
/// `&mut self`; a shared database implements it for `&Store`, so many
/// handles (threads, processes, nodes) share one registry.
pub trait Registry {
    /// Registers a device commissioned `at`.
    ///
    /// # Errors
    /// [`KeyError::Conflict`] when the device is registered already.
    fn register(
        &mut self,
        device: &SystemTitle,
        at: Timestamp,
        capabilities: DeviceCapabilities,
    ) -> Result<()>;

    /// The registration of `device`.
    ///
    /// # Errors
    /// Only a backend error.
    fn registration(&self, device: &SystemTitle) -> Result<Option<Registration>>;

    /// Records that `device`'s commissioning rotation finished `at`.
    ///
    /// # Errors
    /// [`KeyError::NotFound`] for a device not registered.
    fn mark_rotated(&mut self, device: &SystemTitle, at: Timestamp) -> Result<()>;

    /// Replaces what `device` supports (after a capability survey).
    ///
    /// # Errors
    /// [`KeyError::NotFound`] for a device not registered.
    fn set_capabilities(
        &mut self,
        device: &SystemTitle,
        capabilities: DeviceCapabilities,
    ) -> Result<()>;

    /// Up to `limit` devices not rotated whose deadline is at or before
    /// `now + horizon_secs`, with the deadline, earliest first.
    ///
    /// # Errors
    /// Only a backend error.
    fn due(
        &self,
        now: Timestamp,
        horizon_secs: u64,
        limit: u32,
    ) -> Result<Vec<(SystemTitle, Timestamp)>>;

    /// Up to `limit` registered devices after `after`, in ascending order.
    ///
    /// # Errors
    /// Only a backend error.
    fn devices(&self, after: Option<&SystemTitle>, limit: u32) -> Result<Vec<SystemTitle>>;

    /// How many devices are registered.
    ///
    /// # Errors
    /// Only a backend error.
    fn device_count(&self) -> Result<u64>;

    /// The last accepted counter of the frames `key.sender` protects under
    /// the key `key` names.
    ///
    /// # Errors
    /// Only a backend error.
    fn floor(&self, key: &CounterKey) -> Result<Option<u32>>;

    /// Records `value` as accepted under `key`.
    ///
    /// # Errors
    /// [`CounterError::Replay`] when `value` is not above the stored floor
    /// (another node accepted it or a later one first); nothing changes.
    fn raise_floor(&mut self, key: &CounterKey, value: u32) -> Result<()>;

    /// Takes the rotation lease of `device` for `owner` until
    /// `now + ttl_secs`; the same owner renews it. Returns whether it took
    /// over another owner's expired lease.
    ///
    /// # Errors
    /// [`KeyError::Conflict`] while another owner's lease runs.
    fn take_lease(
        &mut self,
        device: &SystemTitle,
        owner: &str,
        now: Timestamp,
        ttl_secs: u64,
    ) -> Result<bool>;

    /// Gives the lease back, if `owner` still holds it.
    ///
    /// # Errors
    /// Only a backend error.
    fn release_lease(&mut self, device: &SystemTitle, owner: &str) -> Result<()>;

    /// Starts campaign `id` over `devices`, or finds it started. Returns
    /// whether it was new.
    ///
    /// # Errors
    /// Only a backend error.
    fn campaign_start(&mut self, id: &str, devices: &[SystemTitle], at: Timestamp) -> Result<bool>;

    /// Marks `device` done in campaign `id`.
    ///
    /// # Errors
    /// [`KeyError::NotFound`] for an unknown campaign or device.
    fn campaign_mark_done(&mut self, id: &str, device: &SystemTitle) -> Result<()>;

    /// Up to `limit` devices of campaign `id` not yet done, ascending.
    ///
    /// # Errors
    /// Only a backend error.
    fn campaign_pending(&self, id: &str, limit: u32) -> Result<Vec<SystemTitle>>;
}

impl<R: Registry + ?Sized> Registry for &mut R {
    fn register(
        &mut self,
        device: &SystemTitle,
        at: Timestamp,
        capabilities: DeviceCapabilities,
    ) -> Result<()> {
        (**self).register(device, at, capabilities)
    }
    fn registration(&self, device: &SystemTitle) -> Result<Option<Registration>> {
        (**self).registration(device)
    }
    fn mark_rotated(&mut self, device: &SystemTitle, at: Timestamp) -> Result<()> {
        (**self).mark_rotated(device, at)
    }
    fn set_capabilities(
        &mut self,
        device: &SystemTitle,
        capabilities: DeviceCapabilities,
    ) -> Result<()> {
        (**self).set_capabilities(device, capabilities)
    }
    fn due(
        &self,
        now: Timestamp,
        horizon_secs: u64,
        limit: u32,
    ) -> Result<Vec<(SystemTitle, Timestamp)>> {
        (**self).due(now, horizon_secs, limit)
    }
    fn devices(&self, after: Option<&SystemTitle>, limit: u32) -> Result<Vec<SystemTitle>> {
        (**self).devices(after, limit)
    }
    fn device_count(&self) -> Result<u64> {
        (**self).device_count()
    }
    fn floor(&self, key: &CounterKey) -> Result<Option<u32>> {
        (**self).floor(key)
    }
    fn raise_floor(&mut self, key: &CounterKey, value: u32) -> Result<()> {
        (**self).raise_floor(key, value)
    }
    fn take_lease(
        &mut self,
        device: &SystemTitle,
        owner: &str,
        now: Timestamp,
        ttl_secs: u64,
    ) -> Result<bool> {
        (**self).take_lease(device, owner, now, ttl_secs)
    }
    fn release_lease(&mut self, device: &SystemTitle, owner: &str) -> Result<()> {
        (**self).release_lease(device, owner)
    }
    fn campaign_start(&mut self, id: &str, devices: &[SystemTitle], at: Timestamp) -> Result<bool> {
        (**self).campaign_start(id, devices, at)
    }
    fn campaign_mark_done(&mut self, id: &str, device: &SystemTitle) -> Result<()> {
        (**self).campaign_mark_done(id, device)
    }
    fn campaign_pending(&self, id: &str, limit: u32) -> Result<Vec<SystemTitle>> {
        (**self).campaign_pending(id, limit)
    }
}

fn limited<T>(items: impl Iterator<Item = T>, limit: u32) -> Vec<T> {
    items
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect()
}

/// A registry in this process's memory: lost on restart.
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    devices: BTreeMap<SystemTitle, Registration>,
    floors: BTreeMap<CounterKey, u32>,
    leases: BTreeMap<SystemTitle, (String, Timestamp)>,
    campaigns: BTreeMap<String, (Vec<SystemTitle>, BTreeSet<SystemTitle>)>,
}

impl MemoryRegistry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl Registry for MemoryRegistry {
    fn register(
        &mut self,
        device: &SystemTitle,
        at: Timestamp,
        capabilities: DeviceCapabilities,
    ) -> Result<()> {
        if self.devices.contains_key(device) {
            return Err(KeyError::Conflict.into());
        }
        self.devices.insert(
            *device,
            Registration {
                commissioned_at: at,
                capabilities,
                rotated_at: None,
            },
        );
        Ok(())
    }

    fn registration(&self, device: &SystemTitle) -> Result<Option<Registration>> {
        Ok(self.devices.get(device).copied())
    }

    fn mark_rotated(&mut self, device: &SystemTitle, at: Timestamp) -> Result<()> {
        let r = self
            .devices
            .get_mut(device)
            .ok_or(Error::Key(KeyError::NotFound))?;
        r.rotated_at.get_or_insert(at);
        Ok(())
    }

    fn set_capabilities(
        &mut self,
        device: &SystemTitle,
        capabilities: DeviceCapabilities,
    ) -> Result<()> {
        let r = self
            .devices
            .get_mut(device)
            .ok_or(Error::Key(KeyError::NotFound))?;
        r.capabilities = capabilities;
        Ok(())
    }

    fn due(
        &self,
        now: Timestamp,
        horizon_secs: u64,
        limit: u32,
    ) -> Result<Vec<(SystemTitle, Timestamp)>> {
        let by = now.0.saturating_add(horizon_secs);
        let mut due: Vec<_> = self
            .devices
            .iter()
            .filter(|(_, r)| r.rotated_at.is_none() && r.deadline().0 <= by)
            .map(|(t, r)| (*t, r.deadline()))
            .collect();
        due.sort_by_key(|(t, d)| (*d, *t));
        Ok(limited(due.into_iter(), limit))
    }

    fn devices(&self, after: Option<&SystemTitle>, limit: u32) -> Result<Vec<SystemTitle>> {
        let keys = self
            .devices
            .keys()
            .filter(|t| after.is_none_or(|a| *t > a))
            .copied();
        Ok(limited(keys, limit))
    }

    fn device_count(&self) -> Result<u64> {
        Ok(u64::try_from(self.devices.len()).unwrap_or(u64::MAX))
    }

    fn floor(&self, key: &CounterKey) -> Result<Option<u32>> {
        Ok(self.floors.get(key).copied())
    }

    fn raise_floor(&mut self, key: &CounterKey, value: u32) -> Result<()> {
        match self.floors.get(key) {
            Some(&floor) if value <= floor => Err(CounterError::Replay.into()),
            _ => {
                self.floors.insert(*key, value);
                Ok(())
            }
        }
    }

    fn take_lease(
        &mut self,
        device: &SystemTitle,
        owner: &str,
        now: Timestamp,
        ttl_secs: u64,
    ) -> Result<bool> {
        let expires = Timestamp(now.0.saturating_add(ttl_secs));
        let taken_over = match self.leases.get(device) {
            Some((holder, until)) if holder != owner && until.0 > now.0 => {
                return Err(KeyError::Conflict.into());
            }
            Some((holder, _)) => holder != owner,
            None => false,
        };
        self.leases.insert(*device, (owner.to_owned(), expires));
        Ok(taken_over)
    }

    fn release_lease(&mut self, device: &SystemTitle, owner: &str) -> Result<()> {
        if self.leases.get(device).is_some_and(|(o, _)| o == owner) {
            self.leases.remove(device);
        }
        Ok(())
    }

    fn campaign_start(
        &mut self,
        id: &str,
        devices: &[SystemTitle],
        _at: Timestamp,
    ) -> Result<bool> {
        if self.campaigns.contains_key(id) {
            return Ok(false);
        }
        let mut list = devices.to_vec();
        list.sort_unstable();
        list.dedup();
        self.campaigns
            .insert(id.to_owned(), (list, BTreeSet::new()));
        Ok(true)
    }

    fn campaign_mark_done(&mut self, id: &str, device: &SystemTitle) -> Result<()> {
        let (list, done) = self
            .campaigns
            .get_mut(id)
            .ok_or(Error::Key(KeyError::NotFound))?;
        if !list.contains(device) {
            return Err(KeyError::NotFound.into());
        }
        done.insert(*device);
        Ok(())
    }

    fn campaign_pending(&self, id: &str, limit: u32) -> Result<Vec<SystemTitle>> {
        Ok(self
            .campaigns
            .get(id)
            .map_or_else(Vec::new, |(list, done)| {
                limited(list.iter().filter(|d| !done.contains(d)).copied(), limit)
            }))
    }
}

/// The capability bits of a registry row.
const MASTER_KEY_ROTATION: u32 = 0x01;

const fn capability_bits(c: DeviceCapabilities) -> u32 {
    if c.master_key_rotation {
        MASTER_KEY_ROTATION
    } else {
        0
    }
}

const fn capabilities_of(bits: u32) -> DeviceCapabilities {
    DeviceCapabilities {
        master_key_rotation: bits & MASTER_KEY_ROTATION != 0,
    }
}

fn store_error(e: &StoreError) -> Error {
    match e {
        StoreError::FloorLowered { .. } => CounterError::Replay.into(),
        _ => e.to_key_error(),
    }
}

/// The registry in a shared database: durable, and shared by every node
/// that opens the same store.
impl Registry for &Store {
    fn register(
        &mut self,
        device: &SystemTitle,
        at: Timestamp,
        capabilities: DeviceCapabilities,
    ) -> Result<()> {
        let entry = DeviceEntry::commissioned(*device, at.0, capability_bits(capabilities));
        self.register_device(&entry).map_err(|e| store_error(&e))
    }

    fn registration(&self, device: &SystemTitle) -> Result<Option<Registration>> {
        let entry = self.device(device).map_err(|e| store_error(&e))?;
        Ok(entry.map(|e| Registration {
            commissioned_at: Timestamp(e.commissioned_at),
            capabilities: capabilities_of(e.capabilities),
            rotated_at: e.rotated_at.map(Timestamp),
        }))
    }

    fn mark_rotated(&mut self, device: &SystemTitle, at: Timestamp) -> Result<()> {
        Store::mark_rotated(self, device, at.0).map_err(|e| store_error(&e))
    }

    fn set_capabilities(
        &mut self,
        device: &SystemTitle,
        capabilities: DeviceCapabilities,
    ) -> Result<()> {
        Store::set_capabilities(self, device, capability_bits(capabilities))
            .map_err(|e| store_error(&e))
    }

    fn due(
        &self,
        now: Timestamp,
        horizon_secs: u64,
        limit: u32,
    ) -> Result<Vec<(SystemTitle, Timestamp)>> {
        let due = Store::due(self, now.0, horizon_secs, limit).map_err(|e| store_error(&e))?;
        Ok(due
            .into_iter()
            .map(|e| (e.device, Timestamp(e.deadline)))
            .collect())
    }

    fn devices(&self, after: Option<&SystemTitle>, limit: u32) -> Result<Vec<SystemTitle>> {
        Store::devices(self, after, limit).map_err(|e| store_error(&e))
    }

    fn device_count(&self) -> Result<u64> {
        Store::device_count(self).map_err(|e| store_error(&e))
    }

    fn floor(&self, key: &CounterKey) -> Result<Option<u32>> {
        Store::floor(self, key).map_err(|e| store_error(&e))
    }

    fn raise_floor(&mut self, key: &CounterKey, value: u32) -> Result<()> {
        Store::accept_counter(self, key, value).map_err(|e| store_error(&e))
    }

    fn take_lease(
        &mut self,
        device: &SystemTitle,
        owner: &str,
        now: Timestamp,
        ttl_secs: u64,
    ) -> Result<bool> {
        Store::take_lease(self, device, owner, now.0, ttl_secs)
            .map(|lease| lease.taken_over)
            .map_err(|e| store_error(&e))
    }

    fn release_lease(&mut self, device: &SystemTitle, owner: &str) -> Result<()> {
        let lease = dlms_sec_store::Lease {
            device: *device,
            owner: owner.to_owned(),
            expires_at: 0,
            taken_over: false,
        };
        match Store::release_lease(self, &lease) {
            Ok(()) | Err(StoreError::Conflict) => Ok(()),
            Err(e) => Err(store_error(&e)),
        }
    }

    fn campaign_start(&mut self, id: &str, devices: &[SystemTitle], at: Timestamp) -> Result<bool> {
        match Store::campaign_start(self, id, "re-key", devices, at.0) {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(store_error(&e)),
        }
    }

    fn campaign_mark_done(&mut self, id: &str, device: &SystemTitle) -> Result<()> {
        Store::campaign_mark_done(self, id, device).map_err(|e| store_error(&e))
    }

    fn campaign_pending(&self, id: &str, limit: u32) -> Result<Vec<SystemTitle>> {
        Store::campaign_pending(self, id, limit).map_err(|e| store_error(&e))
    }
}
