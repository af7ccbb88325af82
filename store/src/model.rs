//! The plain values the store reads and writes besides packaged records:
//! registry entries, rotation progress, campaign status and leases. None
//! carries key material.

use dlms_sec::SystemTitle;
use dlms_sec::key::package::KeyCheckValue;

/// Seven days in seconds: the time a commissioned device has before its
/// keys must have been rotated ([`DeviceEntry::deadline`]).
pub const ROTATION_WINDOW: u64 = 7 * 24 * 60 * 60;

/// A device in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceEntry {
    /// The device's system title.
    pub device: SystemTitle,
    /// When it was commissioned, in Unix seconds.
    pub commissioned_at: u64,
    /// What it can do (capability bits, the caller's encoding).
    pub capabilities: u32,
    /// When its first rotation is due: commissioning plus
    /// [`ROTATION_WINDOW`].
    pub deadline: u64,
    /// When its keys were rotated, if they have been.
    pub rotated_at: Option<u64>,
}

impl DeviceEntry {
    /// An entry for a device commissioned `at`, not yet rotated, due
    /// [`ROTATION_WINDOW`] later (saturating).
    #[must_use]
    pub const fn commissioned(device: SystemTitle, at: u64, capabilities: u32) -> Self {
        Self {
            device,
            commissioned_at: at,
            capabilities,
            deadline: at.saturating_add(ROTATION_WINDOW),
            rotated_at: None,
        }
    }
}

/// How far one client's key rotation has gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProgressState {
    /// The key_transfer was sent.
    Sent,
    /// The meter answered it: the new keys are installed.
    Installed,
    /// A request under the new keys was answered: the rotation is proven.
    Probed,
}

impl ProgressState {
    /// The name stored in the database.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Installed => "installed",
            Self::Probed => "probed",
        }
    }

    /// The state of a stored name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Sent, Self::Installed, Self::Probed]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// One client's rotation progress on one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Progress {
    /// How far it has gone.
    pub state: ProgressState,
    /// The generation being rotated to.
    pub generation: u32,
    /// The invoke-id of the request that carried it (an answer proves the
    /// rotation only if it answers that request).
    pub invoke_id: u8,
    /// When the state was reached, in Unix seconds.
    pub at: u64,
}

/// How far a campaign has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CampaignStatus {
    /// Devices in the campaign.
    pub total: u64,
    /// Devices marked done.
    pub done: u64,
}

/// A campaign as listed by [`Store::campaigns`](crate::Store::campaigns).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CampaignEntry {
    /// The campaign's id.
    pub id: String,
    /// Why it was started.
    pub reason: String,
    /// When it was started, in Unix seconds.
    pub started_at: u64,
    /// How far it has got.
    pub status: CampaignStatus,
}

/// How many key records, by state, are packaged under one KEK (named by its
/// check value), as counted by [`Store::record_keks`](crate::Store::record_keks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KekRecords {
    /// The KEK's check value, as the records carry it.
    pub kek: KeyCheckValue,
    /// Active records under it.
    pub active: u64,
    /// Pending records under it.
    pub pending: u64,
    /// Previous (superseded) records under it.
    pub previous: u64,
}

/// A rotation lease on one device: while it is unexpired, no other owner
/// rotates the device.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The device.
    pub device: SystemTitle,
    /// Who holds it.
    pub owner: String,
    /// When it expires, in Unix seconds: from then on another owner may
    /// take it over.
    pub expires_at: u64,
    /// Whether taking it replaced another owner's expired lease (that
    /// owner's rotation may have stopped half way).
    pub taken_over: bool,
}
