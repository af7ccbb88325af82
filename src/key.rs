//! Key types: one type per key role, 128 bits each (suite 0).
//!
//! Every key type here:
//! * is not `Copy` and not `Clone` (each copy is one more thing to wipe),
//! * zeroizes its bytes on drop,
//! * prints as `RoleName(..)` under `Debug`, never its bytes,
//! * has no `PartialEq` (compare in constant time where it is needed),
//! * can't be passed where another role is expected.
//!
//! The raw bytes are readable only inside the crate.

use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};
use crate::wire::KeyKind;

/// Length of every suite-0 key.
pub const KEY_LEN: usize = 16;

macro_rules! key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; KEY_LEN]);

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

            #[allow(dead_code, reason = "not every role is read by every build")]
            pub(crate) const fn as_bytes(&self) -> &[u8; KEY_LEN] {
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

mod sealed {
    pub trait Sealed {}
    /// Only the crate can name this, so only the crate can read key bytes
    /// through [`super::EncryptionKey`].
    #[derive(Debug)]
    pub struct Token;
    impl Sealed for super::GlobalUnicastEncryptionKey {}
    impl Sealed for super::GlobalBroadcastEncryptionKey {}
    impl Sealed for super::DedicatedKey {}
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
    fn from_slice_checks_length() {
        assert!(GlobalUnicastEncryptionKey::from_slice(&[0; 16]).is_ok());
        assert!(GlobalUnicastEncryptionKey::from_slice(&[0; 15]).is_err());
        assert!(GlobalUnicastEncryptionKey::from_slice(&[0; 32]).is_err());
    }

    #[test]
    fn zeroize_wipes() {
        let mut k = GlobalUnicastEncryptionKey::from_bytes([0xAA; 16]);
        k.zeroize();
        assert_eq!(k.as_bytes(), &[0u8; 16]);
    }
}
