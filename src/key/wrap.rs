//! RFC 3394 AES key wrap under the device Master Key, for Security Setup
//! key_transfer (D-06, R-12).
//!
//! A thin, fixed-size layer over `aes-kw`: a 16-octet key wraps to 24
//! octets with the default IV `A6A6A6A6A6A6A6A6` (RFC 3394 §2.2.3.1). The
//! types hold exact sizes, so wrapping cannot fail; unwrapping fails only
//! on the integrity check, and then no key and no partial output is left
//! behind (the output buffer is zeroed before the error returns).

use aes_kw::KwAes128;
use aes_kw::cipher::KeyInit;
use zeroize::Zeroize;

use crate::error::{AuthError, Result};
use crate::key::{
    AuthenticationKey, DeviceKey, GlobalBroadcastEncryptionKey, GlobalUnicastEncryptionKey,
    KEY_LEN, MasterKey, device_key_bytes, device_key_bytes_mut, device_key_from,
};

pub use crate::types::KeyId;
pub use crate::wire::{WRAPPED_KEY_LEN, WrappedKey};

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::key::GlobalUnicastEncryptionKey {}
    impl Sealed for crate::key::GlobalBroadcastEncryptionKey {}
    impl Sealed for crate::key::AuthenticationKey {}
    impl Sealed for crate::key::MasterKey {}
}

/// A key that key_transfer can carry (sealed: GUEK, GBEK, AK, MK; the
/// dedicated key travels in the AARQ instead).
pub trait TransferableKey: DeviceKey + sealed::Sealed {
    /// Its key_id.
    const KEY_ID: KeyId;
}
impl TransferableKey for GlobalUnicastEncryptionKey {
    const KEY_ID: KeyId = KeyId::GlobalUnicastEncryption;
}
impl TransferableKey for GlobalBroadcastEncryptionKey {
    const KEY_ID: KeyId = KeyId::GlobalBroadcastEncryption;
}
impl TransferableKey for AuthenticationKey {
    const KEY_ID: KeyId = KeyId::Authentication;
}
impl TransferableKey for MasterKey {
    const KEY_ID: KeyId = KeyId::Master;
}

/// Wraps raw key octets under `kek` (crate-internal; the typed API is
/// [`wrap`]).
pub(crate) fn wrap_bytes(kek: &[u8; KEY_LEN], key: &[u8; KEY_LEN]) -> WrappedKey {
    let kw = KwAes128::new(kek.into());
    let mut out = [0u8; WRAPPED_KEY_LEN];
    // 16 octets in, 24 out: the sizes are the ones aes-kw accepts.
    let written = kw.wrap_key(key, &mut out).map(<[u8]>::len);
    debug_assert_eq!(written, Ok(WRAPPED_KEY_LEN));
    WrappedKey::new(out)
}

/// Unwraps into `out` (crate-internal), the key's own octets, so no copy
/// of the key is left on the stack; `out` is zeros on failure.
pub(crate) fn unwrap_bytes(
    kek: &[u8; KEY_LEN],
    wrapped: &WrappedKey,
    out: &mut [u8; KEY_LEN],
) -> core::result::Result<(), AuthError> {
    let kw = KwAes128::new(kek.into());
    match kw.unwrap_key(wrapped.as_bytes(), out) {
        Ok(_) => Ok(()),
        Err(_) => {
            out.zeroize();
            Err(AuthError)
        }
    }
}

/// Wraps `key` under the current Master Key.
#[must_use]
pub fn wrap<K: TransferableKey>(mk: &MasterKey, key: &K) -> WrappedKey {
    wrap_bytes(device_key_bytes(mk), device_key_bytes(key))
}

/// Unwraps a key of role `K` under the current Master Key.
///
/// # Errors
/// [`Error::Auth`](crate::Error::Auth) when the RFC 3394 integrity check fails (wrong MK or a
/// corrupted value); no key octets survive.
pub fn unwrap<K: TransferableKey>(mk: &MasterKey, wrapped: &WrappedKey) -> Result<K> {
    let mut key: K = device_key_from([0; KEY_LEN]);
    unwrap_bytes(
        device_key_bytes(mk),
        wrapped,
        device_key_bytes_mut(&mut key),
    )?;
    Ok(key)
}

/// Unwraps `wrapped` under `mk` straight into `slot`, where the key will
/// live (crate-internal: staging a key_transfer), so no moved copy of it
/// is left on the stack. On failure `slot` is `None`.
pub(crate) fn unwrap_into<K: TransferableKey>(
    mk: &MasterKey,
    wrapped: &WrappedKey,
    slot: &mut Option<K>,
) -> Result<()> {
    let key = slot.insert(device_key_from([0; KEY_LEN]));
    if let Err(e) = unwrap_bytes(device_key_bytes(mk), wrapped, device_key_bytes_mut(key)) {
        *slot = None;
        return Err(e.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_of_transferable_keys() {
        assert_eq!(GlobalUnicastEncryptionKey::KEY_ID.code(), 0);
        assert_eq!(MasterKey::KEY_ID.code(), 3);
    }

    #[test]
    fn unwrap_failure_leaves_zeros() {
        let kek = [7u8; 16];
        let w = wrap_bytes(&kek, &[0x42; 16]);
        let mut out = [0u8; 16];
        assert_eq!(unwrap_bytes(&kek, &w, &mut out), Ok(()));
        assert_eq!(out, [0x42; 16]);
        let mut bad = *w.as_bytes();
        bad[23] ^= 1;
        assert_eq!(
            unwrap_bytes(&kek, &WrappedKey::new(bad), &mut out),
            Err(AuthError)
        );
        assert_eq!(out, [0; 16]);
        out = [0x42; 16];
        assert_eq!(unwrap_bytes(&[8u8; 16], &w, &mut out), Err(AuthError));
        assert_eq!(out, [0; 16]);
    }
}
