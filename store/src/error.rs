//! [`StoreError`]: every way a store call fails, with nothing secret in it.
//!
//! No variant carries record octets or key material: a corrupt row is named
//! by its slot, counter key or device, and a driver's failure by its message.

use core::fmt;

use dlms_sec::error::CounterError;
use dlms_sec::error::{Error, KeyError, ModuleFailure};

/// Why a store call failed. A failed call changes nothing.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StoreError {
    /// Another writer got there first (a row that already exists, or one
    /// changed underneath the call): never a silent overwrite. Retry after
    /// reading the new state.
    Conflict,
    /// The row the call needs does not exist.
    NotFound,
    /// A pending record must be newer than the slot's active one; an
    /// initial record needs an empty slot.
    StaleGeneration,
    /// Activation asked for a generation that is neither pending nor active.
    NoPending,
    /// The counter's record exists already: the key has been used.
    CounterExists,
    /// The counter's record is missing: it was lost, and no counter starts
    /// again from its first value.
    CounterLost,
    /// A receive floor may only rise; it stays at `current`.
    FloorLowered {
        /// The floor stored.
        current: u32,
    },
    /// A row does not read back as what was written (a record that does
    /// not parse or names another slot, a value out of range).
    Corrupt {
        /// Which row: a slot, a counter key, a device.
        what: String,
    },
    /// The database cannot be reached: connection lost, server gone, busy
    /// timeout. Nothing was changed, or the change is not known to have
    /// committed (a claim lost this way burns its values, never reuses them).
    Unavailable,
    /// The database's schema is newer than this build reads.
    Schema {
        /// The version found in the database.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// The URL names no backend this build has.
    BadUrl,
    /// Any other failure, with the driver's message.
    Backend(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Conflict => f.write_str("another writer changed the row first"),
            Self::NotFound => f.write_str("no such row"),
            Self::StaleGeneration => f.write_str("generation not newer than the active one"),
            Self::NoPending => f.write_str("no pending record with that generation"),
            Self::CounterExists => f.write_str("the counter record exists already"),
            Self::CounterLost => f.write_str("the counter record is missing"),
            Self::FloorLowered { current } => {
                write!(f, "a receive floor cannot be lowered (it is {current})")
            }
            Self::Corrupt { what } => write!(f, "corrupt row: {what}"),
            Self::Unavailable => f.write_str("the database is unavailable"),
            Self::Schema { found, supported } => write!(
                f,
                "database schema version {found} is newer than this build ({supported})"
            ),
            Self::BadUrl => f.write_str("unsupported store URL"),
            Self::Backend(m) => write!(f, "database error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// A corrupt row named by `what`.
    pub(crate) fn corrupt(what: impl fmt::Display) -> Self {
        Self::Corrupt {
            what: what.to_string(),
        }
    }

    /// The core's key-store error for this one: the documented refusals map
    /// to their [`KeyError`]s, a corrupt row to [`KeyError::Corrupted`],
    /// anything else to a provider failure.
    #[must_use]
    pub fn to_key_error(&self) -> Error {
        Error::Key(match self {
            Self::StaleGeneration => KeyError::StaleGeneration,
            Self::NoPending => KeyError::NoPending,
            Self::NotFound => KeyError::NotFound,
            Self::Conflict => KeyError::Conflict,
            Self::Corrupt { .. } => KeyError::Corrupted,
            Self::Unavailable => KeyError::Provider(ModuleFailure::SessionLost),
            _ => KeyError::Provider(ModuleFailure::Other),
        })
    }

    /// The core's counter error for this one: `CounterExists` and
    /// `CounterLost` as themselves, anything else `Persistence`.
    #[must_use]
    pub const fn to_counter_error(&self) -> CounterError {
        match self {
            Self::CounterExists => CounterError::RecordExists,
            Self::CounterLost => CounterError::RecordLost,
            _ => CounterError::Persistence,
        }
    }

    /// The store's error for a key-store refusal of the core.
    pub(crate) fn from_key_error(e: Error) -> Self {
        match e {
            Error::Key(KeyError::StaleGeneration) => Self::StaleGeneration,
            Error::Key(KeyError::NoPending) => Self::NoPending,
            Error::Key(KeyError::NotFound) => Self::NotFound,
            Error::Key(KeyError::Conflict) => Self::Conflict,
            other => Self::Backend(other.to_string()),
        }
    }
}

/// A store result.
pub type Result<T, E = StoreError> = core::result::Result<T, E>;
