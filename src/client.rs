//! The five DLMS clients of a SMETS1 meter.
//!
//! Public is unauthenticated and has no keys. Every other client has its
//! own AK and GUEK per device, so key sets are addressed by (device, client).

/// A DLMS client of a SMETS1 meter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Client {
    /// Public client: no security, no keys.
    Public,
    /// Data Collection (read-only).
    DataCollection,
    /// Extended Data Collection.
    ExtendedDataCollection,
    /// Management (configuration).
    Management,
    /// Firmware (firmware update).
    Firmware,
}

impl Client {
    /// All five clients.
    pub const ALL: [Self; 5] = [
        Self::Public,
        Self::DataCollection,
        Self::ExtendedDataCollection,
        Self::Management,
        Self::Firmware,
    ];

    /// The four clients that have keys.
    pub const KEYED: [Self; 4] = [
        Self::DataCollection,
        Self::ExtendedDataCollection,
        Self::Management,
        Self::Firmware,
    ];

    /// Whether the client has an AK and a GUEK.
    #[must_use]
    pub const fn has_keys(self) -> bool {
        !matches!(self, Self::Public)
    }

    /// Position in [`Self::KEYED`] (`None` for Public).
    #[must_use]
    pub const fn keyed_index(self) -> Option<usize> {
        match self {
            Self::Public => None,
            Self::DataCollection => Some(0),
            Self::ExtendedDataCollection => Some(1),
            Self::Management => Some(2),
            Self::Firmware => Some(3),
        }
    }

    /// The code used in packaged-key records: 1..=4 (0 means device-wide).
    #[must_use]
    pub const fn record_code(client: Option<Self>) -> Option<u8> {
        match client {
            None => Some(0),
            Some(Self::Public) => None,
            Some(Self::DataCollection) => Some(1),
            Some(Self::ExtendedDataCollection) => Some(2),
            Some(Self::Management) => Some(3),
            Some(Self::Firmware) => Some(4),
        }
    }

    /// The client of a record code (`Some(None)` for device-wide).
    #[must_use]
    pub const fn from_record_code(code: u8) -> Option<Option<Self>> {
        match code {
            0 => Some(None),
            1 => Some(Some(Self::DataCollection)),
            2 => Some(Some(Self::ExtendedDataCollection)),
            3 => Some(Some(Self::Management)),
            4 => Some(Some(Self::Firmware)),
            _ => None,
        }
    }

    /// A short lower-case name (`data-collection`, …).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::DataCollection => "data-collection",
            Self::ExtendedDataCollection => "extended-data-collection",
            Self::Management => "management",
            Self::Firmware => "firmware",
        }
    }

    /// The client of a [`Self::name`].
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_public_has_none() {
        for c in Client::ALL {
            match Client::record_code(Some(c)) {
                Some(code) => assert_eq!(Client::from_record_code(code), Some(Some(c))),
                None => assert_eq!(c, Client::Public),
            }
            assert_eq!(c.has_keys(), c.keyed_index().is_some());
        }
        assert_eq!(Client::from_record_code(0), Some(None));
        assert_eq!(Client::from_record_code(5), None);
        for c in Client::ALL {
            assert_eq!(Client::from_name(c.name()), Some(c));
        }
        assert_eq!(Client::from_name("Management"), None);
        for (i, c) in Client::KEYED.into_iter().enumerate() {
            assert_eq!(c.keyed_index(), Some(i));
        }
    }
}
