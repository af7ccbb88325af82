//! The crate's vocabulary: the small public values every layer names.
//!
//! Clients, key roles and KEKs, key kinds and key sets, key_transfer ids,
//! protections and security policies. They are plain `Copy` values that
//! carry no key material. This module imports nothing from the crate, so
//! every other module can use it without a cycle.

// --- Clients (R-02) ---
//
// Public is unauthenticated and has no keys. Every other client has its own
// AK and GUEK per device, so key sets are addressed by (device, client).
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

// --- Protection and policy (D-07) ---
//
// A frame protected more weakly than the policy is refused before any key
// is used, so clearing the authentication bit of an authenticated frame
// can never turn it into an accepted encryption-only one.

/// The protection of one ciphered APDU (security control bits A and E).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protection {
    /// SC `0x10`: the APDU travels in clear followed by a 12-octet GMAC tag
    /// over SC ‖ AK ‖ APDU.
    Authenticated,
    /// SC `0x20`: the APDU is encrypted (GCM counter mode) and carries no tag.
    Encrypted,
    /// SC `0x30`: the APDU is encrypted and tagged, AAD = SC ‖ AK.
    AuthenticatedEncrypted,
}

impl Protection {
    /// Whether a tag is produced (modes with authentication).
    #[must_use]
    pub const fn is_authenticated(self) -> bool {
        matches!(self, Self::Authenticated | Self::AuthenticatedEncrypted)
    }

    /// Whether the APDU is encrypted.
    #[must_use]
    pub const fn is_encrypted(self) -> bool {
        matches!(self, Self::Encrypted | Self::AuthenticatedEncrypted)
    }

    /// The A and E bits of the security control byte (`0x10`, `0x20`, `0x30`).
    #[must_use]
    pub const fn bits(self) -> u8 {
        match self {
            Self::Authenticated => 0x10,
            Self::Encrypted => 0x20,
            Self::AuthenticatedEncrypted => 0x30,
        }
    }

    /// Reads the A and E bits; `None` when neither is set.
    #[must_use]
    pub const fn from_bits(sc: u8) -> Option<Self> {
        match sc & 0x30 {
            0x10 => Some(Self::Authenticated),
            0x20 => Some(Self::Encrypted),
            0x30 => Some(Self::AuthenticatedEncrypted),
            _ => None,
        }
    }
}

/// The minimum protection an endpoint accepts on received APDUs
/// (the security policy of Security Setup, version 0 values).
///
/// There is no default: an endpoint names what it requires.
///
/// ```compile_fail
/// let _ = dlms_sec::SecurityPolicy::default();
/// ```
///
/// A frame satisfies the policy when it carries every protection the policy
/// names; stronger protection is accepted (authenticated encryption
/// satisfies every policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecurityPolicy {
    /// Any ciphered APDU is accepted, encryption only and authentication
    /// only included (v0 value 0, "no security"). A frame under encryption
    /// only carries no tag: its counter proves nothing, and it never passes
    /// a replay guard.
    AcceptAnyProtection,
    /// Every APDU must be authenticated (v0 value 1).
    Authenticated,
    /// Every APDU must be encrypted (v0 value 2).
    Encrypted,
    /// Every APDU must be authenticated and encrypted (v0 value 3).
    AuthenticatedEncrypted,
}

impl SecurityPolicy {
    /// Whether a frame with `protection` satisfies this policy.
    #[must_use]
    pub const fn permits(self, protection: Protection) -> bool {
        match self {
            Self::AcceptAnyProtection => true,
            Self::Authenticated => protection.is_authenticated(),
            Self::Encrypted => protection.is_encrypted(),
            Self::AuthenticatedEncrypted => {
                protection.is_authenticated() && protection.is_encrypted()
            }
        }
    }
}

// --- Keys: kinds, sets, roles, KEKs, key_transfer ids ---

/// Which global key set a security control byte selects (bit 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeySet {
    /// Bit 6 clear: the global unicast encryption key.
    Unicast,
    /// Bit 6 set: the global broadcast encryption key.
    Broadcast,
}

/// Which encryption key protects an APDU (D-03).
///
/// Public information: it follows from the APDU tag and the key-set bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyKind {
    /// Global unicast encryption key (GUEK): glo- tags, general-glo-ciphering,
    /// general-ciphering key-id 0.
    GlobalUnicast,
    /// Global broadcast encryption key (GBEK): glo- tags or
    /// general-glo-ciphering with the key-set bit, general-ciphering key-id 1.
    GlobalBroadcast,
    /// Dedicated key (DK): ded- tags and general-ded-ciphering.
    Dedicated,
}

/// Every device key role, as a value (for records and audit events).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyRole {
    /// [`MasterKey`](crate::key::MasterKey).
    Master,
    /// [`AuthenticationKey`](crate::key::AuthenticationKey).
    Authentication,
    /// [`GlobalUnicastEncryptionKey`](crate::key::GlobalUnicastEncryptionKey).
    GlobalUnicastEncryption,
    /// [`GlobalBroadcastEncryptionKey`](crate::key::GlobalBroadcastEncryptionKey).
    GlobalBroadcastEncryption,
    /// [`DedicatedKey`](crate::key::DedicatedKey).
    Dedicated,
}

impl KeyRole {
    /// All roles.
    pub const ALL: [Self; 5] = [
        Self::Master,
        Self::Authentication,
        Self::GlobalUnicastEncryption,
        Self::GlobalBroadcastEncryption,
        Self::Dedicated,
    ];

    /// The code used in packaged-key records.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::Master => 1,
            Self::Authentication => 2,
            Self::GlobalUnicastEncryption => 3,
            Self::GlobalBroadcastEncryption => 4,
            Self::Dedicated => 5,
        }
    }

    /// The role of a record code.
    #[must_use]
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Master),
            2 => Some(Self::Authentication),
            3 => Some(Self::GlobalUnicastEncryption),
            4 => Some(Self::GlobalBroadcastEncryption),
            5 => Some(Self::Dedicated),
            _ => None,
        }
    }

    /// A short lower-case name (`master`, `authentication`,
    /// `global-unicast-encryption`, …), stable: audit logs carry it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Authentication => "authentication",
            Self::GlobalUnicastEncryption => "global-unicast-encryption",
            Self::GlobalBroadcastEncryption => "global-broadcast-encryption",
            Self::Dedicated => "dedicated",
        }
    }

    /// The role of a [`Self::name`].
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Which KEK packages this role (R-04).
    #[must_use]
    pub const fn kek(self) -> KekKind {
        match self {
            Self::Master | Self::Authentication => KekKind::Dco,
            _ => KekKind::Shared,
        }
    }

    /// Whether the key belongs to the device as a whole (the MK) rather
    /// than to one client.
    #[must_use]
    pub const fn is_device_wide(self) -> bool {
        matches!(self, Self::Master)
    }
}

/// The two HSM key-encryption keys, as a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KekKind {
    /// [`DcoKey`](crate::key::DcoKey).
    Dco,
    /// [`SharedKey`](crate::key::SharedKey).
    Shared,
}

/// The key_id of a key_transfer entry (Security Setup, GB 9.2.3.3.7.7 and 9.2.5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyId {
    /// 0: global unicast encryption key.
    GlobalUnicastEncryption,
    /// 1: global broadcast encryption key.
    GlobalBroadcastEncryption,
    /// 2: authentication key.
    Authentication,
    /// 3: master key (KEK). Some version-0 Security Setup objects accept
    /// only 0..=2 (open question Q5): send it only to devices whose
    /// capabilities say so.
    Master,
}

impl KeyId {
    /// All four, in key_id order.
    pub const ALL: [Self; 4] = [
        Self::GlobalUnicastEncryption,
        Self::GlobalBroadcastEncryption,
        Self::Authentication,
        Self::Master,
    ];

    /// The enum value on the wire.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::GlobalUnicastEncryption => 0,
            Self::GlobalBroadcastEncryption => 1,
            Self::Authentication => 2,
            Self::Master => 3,
        }
    }

    /// The key id of a wire value; `None` outside 0..=3.
    #[must_use]
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::GlobalUnicastEncryption),
            1 => Some(Self::GlobalBroadcastEncryption),
            2 => Some(Self::Authentication),
            3 => Some(Self::Master),
            _ => None,
        }
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

    const ALL: [Protection; 3] = [
        Protection::Authenticated,
        Protection::Encrypted,
        Protection::AuthenticatedEncrypted,
    ];

    #[test]
    fn bits_round_trip() {
        for p in ALL {
            assert_eq!(Protection::from_bits(p.bits()), Some(p));
            assert_eq!(Protection::from_bits(p.bits() | 0x40), Some(p));
        }
        assert_eq!(Protection::from_bits(0x00), None);
        assert_eq!(Protection::from_bits(0x40), None);
    }

    #[test]
    fn weaker_protection_is_refused() {
        use Protection::*;
        let table = [
            (SecurityPolicy::AcceptAnyProtection, [true, true, true]),
            (SecurityPolicy::Authenticated, [true, false, true]),
            (SecurityPolicy::Encrypted, [false, true, true]),
            (SecurityPolicy::AuthenticatedEncrypted, [false, false, true]),
        ];
        for (policy, expect) in table {
            for (p, ok) in [Authenticated, Encrypted, AuthenticatedEncrypted]
                .into_iter()
                .zip(expect)
            {
                assert_eq!(policy.permits(p), ok, "{policy:?} {p:?}");
            }
        }
    }

    #[test]
    fn key_ids_round_trip() {
        for k in KeyId::ALL {
            assert_eq!(KeyId::from_code(k.code()), Some(k));
        }
        assert_eq!(KeyId::from_code(4), None);
    }
}
