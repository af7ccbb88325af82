//! Key types: one type per key role, 128 bits each (suite 0; R-01, R-08).
//!
//! | type | role | packaged under |
//! |---|---|---|
//! | [`MasterKey`] | MK: wraps new keys for key_transfer, one per device | [`DcoKey`] |
//! | [`AuthenticationKey`] | AK: one per device per non-public client | [`DcoKey`] |
//! | [`GlobalUnicastEncryptionKey`] | GUEK: one per device per non-public client | [`SharedKey`] |
//! | [`GlobalBroadcastEncryptionKey`] | GBEK | [`SharedKey`] |
//! | [`DedicatedKey`] | DK: one association | [`SharedKey`] |
//! | [`DcoKey`] | HSM KEK, DCO only | — |
//! | [`SharedKey`] | HSM KEK, DCO and S1SP | — |
//! | [`AuditKey`] | MAC key of the audit chain, operator only (R-20) | — |
//!
//! The "packaged under" column is a type ([`DeviceKey::Kek`]), so packaging
//! an MK under the Shared Key, or unpacking an AK with only the Shared Key,
//! does not compile (R-04).
//!
//! Every key type here:
//! * is not `Copy` and not `Clone` (each copy is one more thing to wipe),
//! * zeroizes its bytes on drop,
//! * prints as `RoleName(..)` under `Debug`, never its bytes,
//! * has no `PartialEq` (compare in constant time where it is needed),
//! * can't be passed where another role is expected (R-01).
//!
//! The raw bytes are readable only inside the crate.
//!
//! A key is wiped when it is dropped, and only then: there is no public
//! `zeroize`, which would leave a value that still works as the all-zero
//! key.
//!
//! ```
//! use zeroize::Zeroize;
//! let mut octets = [0x11u8; 16];
//! octets.zeroize();
//! ```
//!
//! ```compile_fail
//! use dlms_sec::key::GlobalUnicastEncryptionKey;
//! use zeroize::Zeroize;
//! let mut key = GlobalUnicastEncryptionKey::from_bytes([0x11; 16]);
//! key.zeroize();
//! ```

use core::fmt;

use rand_core::TryCryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub mod package;
pub mod wrap;

use crate::error::{Error, Result};
pub use crate::types::{KekKind, KeyRole};
use crate::wire::KeyKind;

/// Length of every suite-0 key.
pub const KEY_LEN: usize = 16;

macro_rules! key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub struct $name([u8; KEY_LEN]);

        impl Drop for $name {
            fn drop(&mut self) {
                self.wipe();
            }
        }

        impl ZeroizeOnDrop for $name {}

        impl $name {
            /// Takes ownership of 16 key octets. The caller's copy, if it
            /// kept one, is the caller's to wipe.
            #[must_use]
            pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
                Self(bytes)
            }

            /// Reads a key from exactly 16 octets.
            ///
            /// # Errors
            /// [`Error::Misuse`] when `bytes` is not 16 octets long.
            pub fn from_slice(bytes: &[u8]) -> Result<Self> {
                <[u8; KEY_LEN]>::try_from(bytes)
                    .map(Self)
                    .map_err(|_| Error::Misuse("a suite-0 key is 16 octets"))
            }

            /// A fresh key from a cryptographic RNG (R-11).
            ///
            /// # Errors
            /// [`Error::Rng`] when the RNG fails; nothing is returned.
            pub fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<Self> {
                let mut k = Self([0; KEY_LEN]);
                rng.try_fill_bytes(&mut k.0).map_err(|_| Error::Rng)?;
                Ok(k)
            }

            /// What drop does: the octets become zeros. Private, so no
            /// wiped key is ever used.
            fn wipe(&mut self) {
                self.0.zeroize();
            }

            #[allow(dead_code, reason = "not every role is read by every build")]
            pub(crate) const fn as_bytes(&self) -> &[u8; KEY_LEN] {
                &self.0
            }

            /// The key octets.
            ///
            /// # ⚠️ Hazmat
            /// Every copy taken here is the caller's to wipe. Only for
            /// tools and tests that must show or move a clear key.
            #[cfg(feature = "hazmat")]
            #[must_use]
            pub const fn dangerous_expose_bytes(&self) -> &[u8; KEY_LEN] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }
    };
}

key_type! {
    /// Global Unicast Encryption Key (GUEK): one per device per non-public
    /// client; glo- APDUs, general-glo-ciphering and HLS-5.
    GlobalUnicastEncryptionKey
}
key_type! {
    /// Global Broadcast Encryption Key (GBEK): glo- APDUs with the key-set bit.
    GlobalBroadcastEncryptionKey
}
key_type! {
    /// Dedicated Key (DK): lives for one association; ded- APDUs and
    /// general-ded-ciphering.
    DedicatedKey
}
key_type! {
    /// Authentication Key (AK): one per device per non-public client. Enters
    /// the AAD of every authenticated APDU; never goes on the wire.
    AuthenticationKey
}
key_type! {
    /// Master Key (MK): one per device; wraps new keys for key_transfer
    /// (RFC 3394) and can itself be replaced where the device supports it.
    MasterKey
}
key_type! {
    /// The DCO Key: HSM key-encryption key held by the DCO only. Packages
    /// MKs and AKs.
    DcoKey
}
key_type! {
    /// The Shared Key: HSM key-encryption key held by the DCO and the S1SPs.
    /// Packages GUEKs, GBEKs and DKs.
    SharedKey
}

key_type! {
    /// The audit key: the MAC key of a tamper-evident audit chain (R-20,
    /// [`crate::audit::AuditChain`]).
    ///
    /// Held by the operator of the log (the DCO or the S1SP), separate from
    /// every device key and from the HSM KEKs: it protects the log's
    /// integrity only and never packages, wraps or protects anything else.
    /// Its MAC is AES-CMAC, which takes no nonce; each chain's random id
    /// keeps chains under one key apart.
    AuditKey
}

mod sealed {
    pub trait Sealed {}
    pub trait SealedKek {}
    impl SealedKek for super::DcoKey {}
    impl SealedKek for super::SharedKey {}
    impl Sealed for super::MasterKey {}
    impl Sealed for super::AuthenticationKey {}
    /// Only the crate can name this, so only the crate can read key bytes
    /// through [`super::EncryptionKey`].
    #[derive(Debug)]
    pub struct Token;
    impl Sealed for super::GlobalUnicastEncryptionKey {}
    impl Sealed for super::GlobalBroadcastEncryptionKey {}
    impl Sealed for super::DedicatedKey {}
}

/// An HSM key-encryption key type (sealed: [`DcoKey`], [`SharedKey`]).
pub trait Kek: sealed::SealedKek {
    /// Which one.
    const KIND: KekKind;
    #[doc(hidden)]
    fn kek_array(&self, token: sealed::Token) -> &[u8; KEY_LEN];
}
impl Kek for DcoKey {
    const KIND: KekKind = KekKind::Dco;
    fn kek_array(&self, _: sealed::Token) -> &[u8; KEY_LEN] {
        &self.0
    }
}
impl Kek for SharedKey {
    const KIND: KekKind = KekKind::Shared;
    fn kek_array(&self, _: sealed::Token) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// Reads a KEK's octets (crate-internal: the software provider).
pub(crate) fn kek_bytes<G: Kek>(kek: &G) -> &[u8; KEY_LEN] {
    kek.kek_array(sealed::Token)
}

/// A device key role (sealed: MK, AK, GUEK, GBEK, DK), with the KEK that
/// packages it.
pub trait DeviceKey: sealed::Sealed + Sized {
    /// The role as a value.
    const ROLE: KeyRole;
    /// The KEK that packages this role.
    type Kek: Kek;
    #[doc(hidden)]
    fn from_array(bytes: [u8; KEY_LEN], token: sealed::Token) -> Self;
    #[doc(hidden)]
    fn array(&self, token: sealed::Token) -> &[u8; KEY_LEN];
    #[doc(hidden)]
    fn array_mut(&mut self, token: sealed::Token) -> &mut [u8; KEY_LEN];
}

macro_rules! device_key {
    ($name:ident, $role:ident, $kek:ident) => {
        impl DeviceKey for $name {
            const ROLE: KeyRole = KeyRole::$role;
            type Kek = $kek;
            fn from_array(bytes: [u8; KEY_LEN], _: sealed::Token) -> Self {
                Self(bytes)
            }
            fn array(&self, _: sealed::Token) -> &[u8; KEY_LEN] {
                &self.0
            }
            fn array_mut(&mut self, _: sealed::Token) -> &mut [u8; KEY_LEN] {
                &mut self.0
            }
        }
    };
}
device_key!(MasterKey, Master, DcoKey);
device_key!(AuthenticationKey, Authentication, DcoKey);
device_key!(
    GlobalUnicastEncryptionKey,
    GlobalUnicastEncryption,
    SharedKey
);
device_key!(
    GlobalBroadcastEncryptionKey,
    GlobalBroadcastEncryption,
    SharedKey
);
device_key!(DedicatedKey, Dedicated, SharedKey);

/// Reads the bytes of any device key (crate-internal).
pub(crate) fn device_key_bytes<K: DeviceKey>(key: &K) -> &[u8; KEY_LEN] {
    key.array(sealed::Token)
}

/// The octets of a device key, to be written in place (crate-internal:
/// unwrap writes the key where it lives, with no copy left behind).
pub(crate) fn device_key_bytes_mut<K: DeviceKey>(key: &mut K) -> &mut [u8; KEY_LEN] {
    key.array_mut(sealed::Token)
}

/// Builds a device key from octets (crate-internal: unwrap, unpackage).
pub(crate) fn device_key_from<K: DeviceKey>(bytes: [u8; KEY_LEN]) -> K {
    K::from_array(bytes, sealed::Token)
}

/// The closed set of keys that can encrypt an APDU (sealed: GUEK, GBEK, DK).
pub trait EncryptionKey: sealed::Sealed {
    /// Which kind of key this is.
    const KIND: KeyKind;
    #[doc(hidden)]
    fn key_bytes(&self, token: sealed::Token) -> &[u8; KEY_LEN];
}

impl EncryptionKey for GlobalUnicastEncryptionKey {
    const KIND: KeyKind = KeyKind::GlobalUnicast;
    fn key_bytes(&self, _: sealed::Token) -> &[u8; KEY_LEN] {
        &self.0
    }
}
impl EncryptionKey for GlobalBroadcastEncryptionKey {
    const KIND: KeyKind = KeyKind::GlobalBroadcast;
    fn key_bytes(&self, _: sealed::Token) -> &[u8; KEY_LEN] {
        &self.0
    }
}
impl EncryptionKey for DedicatedKey {
    const KIND: KeyKind = KeyKind::Dedicated;
    fn key_bytes(&self, _: sealed::Token) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// Reads the bytes of any encryption key (crate-internal).
pub(crate) fn encryption_key_bytes<K: EncryptionKey>(key: &K) -> &[u8; KEY_LEN] {
    key.key_bytes(sealed::Token)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn debug_never_prints_key_bytes() {
        let k = AuthenticationKey::from_bytes([0xD0; 16]);
        let s = std::format!("{k:?}");
        assert_eq!(s, "AuthenticationKey(..)");
        assert!(!s.contains("D0") && !s.contains("208"));
        assert_eq!(
            std::format!("{:?}", DedicatedKey::from_bytes([7; 16])),
            "DedicatedKey(..)"
        );
    }

    #[test]
    fn role_names_round_trip() {
        for r in KeyRole::ALL {
            assert_eq!(KeyRole::from_name(r.name()), Some(r));
        }
        assert_eq!(KeyRole::from_name("Master"), None);
        assert_eq!(
            std::format!("{:?}", AuditKey::from_bytes([0x5A; 16])),
            "AuditKey(..)"
        );
    }

    #[test]
    fn from_slice_checks_length() {
        assert!(GlobalUnicastEncryptionKey::from_slice(&[0; 16]).is_ok());
        assert!(GlobalUnicastEncryptionKey::from_slice(&[0; 15]).is_err());
        assert!(GlobalUnicastEncryptionKey::from_slice(&[0; 32]).is_err());
    }

    #[test]
    fn drop_wipes() {
        let mut k = GlobalUnicastEncryptionKey::from_bytes([0xAA; 16]);
        k.wipe();
        assert_eq!(k.as_bytes(), &[0u8; 16]);
    }
}
