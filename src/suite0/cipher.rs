//! The AES-GCM plug point: suite 0 framing over a key held elsewhere
//! (R-03, R-07, R-13).
//!
//! [`Suite0`](crate::Suite0) ciphers with keys it has expanded in memory.
//! A DCO whose GUEKs and DKs live as objects in an HSM (the PKCS#11
//! provider, crate `dlms-sec-pkcs11`) needs the same frames, byte for byte,
//! with AES-GCM done by the module. [`Suite0Cipher`] is that seam: four
//! operations under one encryption key, and [`ModuleKeys`] puts them
//! behind the same protect and unprotect as [`Suite0`](crate::Suite0):
//! header layout, counter draw, policy, title and service-tag checks and
//! replay proofs are this crate's, only the block-cipher work is the
//! module's.
//!
//! # The AK is in the AAD
//!
//! Suite 0 puts the authentication key itself into the AAD (SC ‖ AK ‖ …).
//! Standard PKCS#11 cannot feed a key object's value into GCM's AAD, so a
//! [`Suite0Cipher`] sees the AK's octets through [`Aad`]: that is the one
//! place an HSM-backed DCO holds an AK in host memory, for one call. A
//! module that keeps the AK inside would need a vendor mechanism.
//!
//! # Contract of an implementation
//!
//! * `open` verifies before it decrypts: on any error `data` is as
//!   received, or zeros; never plaintext.
//! * Every failure of the module is an error ([`KeyError::Provider`](crate::error::KeyError::Provider)),
//!   never a wrong result; a tag that does not verify is
//!   [`AuthError`](crate::AuthError).
//! * The 96-bit IV is the sender's system title ‖ invocation counter; the
//!   tag is 12 octets; encryption-only frames use GCM's counter mode from
//!   counter block 2 (IV ‖ 0x00000002).
//!
//! ```
//! use dlms_sec::suite0::cipher::{Aad, ModuleKeys, Suite0Cipher};
//! use dlms_sec::counter::SingleUse;
//! use dlms_sec::key::{AuthenticationKey, GlobalUnicastEncryptionKey};
//! use dlms_sec::suite0::{PeerTitle, Protect, Unprotect};
//! use dlms_sec::wire::CipheredForm;
//! use dlms_sec::{InvocationCounter, KeyKind, Protection, SecurityPolicy, Suite0, SystemTitle};
//!
//! // A "module" that is really this crate's software GCM: any
//! // `Suite0Cipher` yields the frames `Suite0` does.
//! let guek = GlobalUnicastEncryptionKey::from_bytes([0x11; 16]);
//! let ak = AuthenticationKey::from_bytes([0x22; 16]);
//! let title = SystemTitle::new(*b"MMM\x00\x00\x00\x00\x01");
//! let req = Protect::unicast(Protection::AuthenticatedEncrypted, title);
//! let apdu = [0xC0, 0x01, 0x81, 0x00, 0x01];
//!
//! let software = Suite0::new(&guek, &ak);
//! let mut a = [0u8; 64];
//! let n = software.protect(&req, &mut SingleUse::dangerous_new(InvocationCounter::new(7)), &apdu, &mut a)?;
//!
//! let module = dlms_sec::suite0::cipher::SoftwareCipher::dangerous_new(&guek);
//! let keys = ModuleKeys::new(KeyKind::GlobalUnicast, &module, &ak);
//! let mut b = [0u8; 64];
//! let m = keys.protect(&req, &mut SingleUse::dangerous_new(InvocationCounter::new(7)), &apdu, &mut b)?;
//! assert_eq!(a.get(..n), b.get(..m));
//!
//! let opened = keys.unprotect(
//!     &mut b[..m],
//!     &Unprotect {
//!         peer_system_title: PeerTitle::Expected(title),
//!         policy: SecurityPolicy::AuthenticatedEncrypted,
//!     },
//! )?;
//! assert_eq!(opened.apdu(), &apdu);
//! # Ok::<(), dlms_sec::Error>(())
//! ```

use core::fmt;
use zeroize::Zeroize;

use crate::counter::{CounterSource, KeyFingerprint};
use crate::error::Result;
use crate::gcm::Gcm;
pub use crate::gcm::{Aad, TAG_LEN};
use crate::key::AuthenticationKey;
#[cfg(feature = "hazmat")]
use crate::key::{EncryptionKey, encryption_key_bytes};
use crate::suite0::{KeySource, Protect, Unprotect, Unprotected};
use crate::wire::KeyKind;

/// The 96-bit GCM IV: system title ‖ invocation counter.
pub type Iv = [u8; 12];

/// AES-GCM-128 with a 12-octet tag under one encryption key (a GUEK, GBEK
/// or DK), as suite 0 uses it. See the [module](self) for the contract.
pub trait Suite0Cipher {
    /// Encrypts `data` in place (reading the plaintext from `src`, of the
    /// same length, when given) and returns the tag over `aad` and the
    /// ciphertext.
    ///
    /// # Errors
    /// [`KeyError::Provider`](crate::error::KeyError::Provider) when the module fails.
    fn seal(
        &self,
        iv: &Iv,
        aad: &Aad<'_>,
        src: Option<&[u8]>,
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN]>;

    /// Verifies `tag` over `aad` and the ciphertext in `data`, then
    /// decrypts `data` in place. On any error `data` holds no plaintext.
    ///
    /// # Errors
    /// [`AuthError`](crate::AuthError) when the tag does not verify;
    /// [`KeyError::Provider`](crate::error::KeyError::Provider) when the module fails.
    fn open(&self, iv: &Iv, aad: &Aad<'_>, data: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<()>;

    /// The GMAC tag over `aad` (GCM with an empty plaintext).
    ///
    /// # Errors
    /// [`KeyError::Provider`](crate::error::KeyError::Provider) when the module fails.
    fn gmac(&self, iv: &Iv, aad: &Aad<'_>) -> Result<[u8; TAG_LEN]>;

    /// GCM's counter mode alone from counter block 2 (encryption-only
    /// frames), in place, reading the input from `src` when given.
    ///
    /// # Errors
    /// [`KeyError::Provider`](crate::error::KeyError::Provider) when the module fails.
    fn apply_keystream(&self, iv: &Iv, src: Option<&[u8]>, data: &mut [u8]) -> Result<()>;

    /// The fingerprint of the key (see [`KeyFingerprint`]): by default the
    /// keystream block it names, one call to the module; a cipher that
    /// knows it already returns it.
    ///
    /// # Errors
    /// [`KeyError::Provider`](crate::error::KeyError::Provider) when the module fails.
    fn key_fingerprint(&self) -> Result<KeyFingerprint> {
        let mut block = [0u8; 16];
        self.apply_keystream(&KeyFingerprint::IV, None, &mut block)?;
        let fingerprint = KeyFingerprint::from_keystream(&block);
        block.zeroize();
        Ok(fingerprint)
    }
}

impl<S: core::borrow::Borrow<aes::Aes128Enc>> Suite0Cipher for Gcm<S> {
    #[inline]
    fn seal(
        &self,
        iv: &Iv,
        aad: &Aad<'_>,
        src: Option<&[u8]>,
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN]> {
        Ok(self.seal_from(iv, *aad, src, data))
    }

    #[inline]
    fn open(&self, iv: &Iv, aad: &Aad<'_>, data: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<()> {
        Ok(Self::open(self, iv, *aad, data, tag)?)
    }

    #[inline]
    fn gmac(&self, iv: &Iv, aad: &Aad<'_>) -> Result<[u8; TAG_LEN]> {
        Ok(Self::gmac(self, iv, *aad))
    }

    #[inline]
    fn apply_keystream(&self, iv: &Iv, src: Option<&[u8]>, data: &mut [u8]) -> Result<()> {
        self.apply_keystream_from(iv, src, data);
        Ok(())
    }

    #[inline]
    fn key_fingerprint(&self) -> Result<KeyFingerprint> {
        Ok(KeyFingerprint::from_bytes(self.fingerprint()))
    }
}

/// This crate's software AES-GCM as a [`Suite0Cipher`]: the reference an
/// external implementation is tested against. Behind the `hazmat` feature.
///
/// It runs counter mode and GCM under its key with any IV it is given, so
/// its constructor carries a `dangerous_` name and no plainly named one
/// exists:
///
/// ```compile_fail
/// use dlms_sec::key::GlobalUnicastEncryptionKey;
/// use dlms_sec::suite0::cipher::SoftwareCipher;
///
/// let _ = SoftwareCipher::new(&GlobalUnicastEncryptionKey::from_bytes([0x11; 16]));
/// ```
///
/// and it is not `Clone` (a copy would be a second holder of the key):
///
/// ```compile_fail
/// fn is_clone<T: Clone>() {}
/// is_clone::<dlms_sec::suite0::cipher::SoftwareCipher>();
/// ```
#[cfg(feature = "hazmat")]
pub struct SoftwareCipher(Gcm);

#[cfg(feature = "hazmat")]
impl fmt::Debug for SoftwareCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SoftwareCipher { .. }")
    }
}

#[cfg(feature = "hazmat")]
impl SoftwareCipher {
    /// Expands an encryption key (wiped on drop). Whoever holds the result
    /// chooses the IVs it runs under: hand it to [`ModuleKeys`], which
    /// takes them from a [`CounterSource`], and call its methods yourself
    /// only with IVs the key has never seen.
    #[must_use]
    pub fn dangerous_new<K: EncryptionKey>(key: &K) -> Self {
        Self(Gcm::new(encryption_key_bytes(key)))
    }
}

#[cfg(feature = "hazmat")]
impl Suite0Cipher for SoftwareCipher {
    fn seal(
        &self,
        iv: &Iv,
        aad: &Aad<'_>,
        src: Option<&[u8]>,
        data: &mut [u8],
    ) -> Result<[u8; TAG_LEN]> {
        Suite0Cipher::seal(&self.0, iv, aad, src, data)
    }

    fn open(&self, iv: &Iv, aad: &Aad<'_>, data: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<()> {
        Suite0Cipher::open(&self.0, iv, aad, data, tag)
    }

    fn gmac(&self, iv: &Iv, aad: &Aad<'_>) -> Result<[u8; TAG_LEN]> {
        Suite0Cipher::gmac(&self.0, iv, aad)
    }

    fn apply_keystream(&self, iv: &Iv, src: Option<&[u8]>, data: &mut [u8]) -> Result<()> {
        Suite0Cipher::apply_keystream(&self.0, iv, src, data)
    }

    fn key_fingerprint(&self) -> Result<KeyFingerprint> {
        Suite0Cipher::key_fingerprint(&self.0)
    }
}

/// One encryption key behind a [`Suite0Cipher`] and the AK: protects and
/// unprotects exactly as [`Suite0`](crate::Suite0) does for frames under
/// that key (other key kinds are [`Error::KeyNotAvailable`](crate::Error::KeyNotAvailable)).
pub struct ModuleKeys<'a, C: Suite0Cipher> {
    kind: KeyKind,
    cipher: &'a C,
    ak: &'a AuthenticationKey,
}

impl<C: Suite0Cipher> fmt::Debug for ModuleKeys<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleKeys")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<'a, C: Suite0Cipher> ModuleKeys<'a, C> {
    /// The encryption key of `kind` behind `cipher`, and the AK.
    #[must_use]
    pub const fn new(kind: KeyKind, cipher: &'a C, ak: &'a AuthenticationKey) -> Self {
        Self { kind, cipher, ak }
    }

    /// As [`Suite0::protect`](crate::Suite0::protect).
    ///
    /// # Errors
    /// As [`Suite0::protect`](crate::Suite0::protect), and the cipher's errors.
    pub fn protect(
        &self,
        req: &Protect<'_>,
        counter: &mut impl CounterSource,
        apdu: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        self.protect_core(req, counter, apdu, out)
    }

    /// The fingerprint of the key behind the cipher: what its replay
    /// proofs carry (see [`Suite0::replay_guard`](crate::Suite0::replay_guard)).
    ///
    /// # Errors
    /// The cipher's errors.
    pub fn key_fingerprint(&self) -> Result<KeyFingerprint> {
        KeySource::key_fingerprint(self, self.kind)
    }

    /// As [`Suite0::unprotect`](crate::Suite0::unprotect).
    ///
    /// # Errors
    /// As [`Suite0::unprotect`](crate::Suite0::unprotect), and the cipher's errors.
    pub fn unprotect<'b>(&self, frame: &'b mut [u8], req: &Unprotect) -> Result<Unprotected<'b>> {
        self.unprotect_core(frame, req)
    }
}

impl<C: Suite0Cipher> KeySource for ModuleKeys<'_, C> {
    type Cipher = C;

    fn gcm(&self, kind: KeyKind) -> Result<&C> {
        if kind == self.kind {
            Ok(self.cipher)
        } else {
            Err(crate::Error::KeyNotAvailable(kind))
        }
    }

    fn ak(&self) -> Result<&[u8; 16]> {
        Ok(self.ak.as_bytes())
    }
}

#[cfg(all(test, feature = "hazmat"))]
mod tests {
    extern crate alloc;
    use alloc::format;

    use super::*;
    use crate::counter::SendCounter;
    use crate::key::GlobalUnicastEncryptionKey;
    use crate::suite0::{PeerTitle, Suite0};
    use crate::types::{Protection, SecurityPolicy};
    use crate::wire::{InvocationCounter, SystemTitle};

    const TITLE: SystemTitle = SystemTitle::new(*b"MMM\x00\x00\x00\x00\x07");

    /// Authentication only runs GMAC through the cipher: a frame
    /// protected through `ModuleKeys` over a `SoftwareCipher` verifies
    /// under `Suite0` and the other way round, and a forged tag does not.
    #[test]
    fn module_keys_over_the_software_cipher_agree_with_suite0_under_authentication_only() {
        let guek = GlobalUnicastEncryptionKey::from_bytes([0x31; 16]);
        let ak = AuthenticationKey::from_bytes([0xA1; 16]);
        let cipher = SoftwareCipher::dangerous_new(&guek);
        let module = ModuleKeys::new(KeyKind::GlobalUnicast, &cipher, &ak);
        let suite = Suite0::new(&guek, &ak);
        let apdu = [
            0xC0, 0x01, 0xC1, 0x00, 0x08, 0, 0, 1, 0, 0, 0xFF, 0x02, 0x00,
        ];
        let req = Protect::unicast(Protection::Authenticated, TITLE);
        let params = Unprotect {
            peer_system_title: PeerTitle::Expected(TITLE),
            policy: SecurityPolicy::Authenticated,
        };
        let mut counter = SendCounter::volatile(InvocationCounter::new(5));
        let mut a = [0u8; 64];
        let n = module.protect(&req, &mut counter, &apdu, &mut a).unwrap();
        let mut b = [0u8; 64];
        let mut counter = SendCounter::volatile(InvocationCounter::new(5));
        let m = suite.protect(&req, &mut counter, &apdu, &mut b).unwrap();
        assert_eq!(a[..n], b[..m], "same frame, same tag");
        assert_eq!(suite.unprotect(&mut a[..n], &params).unwrap().apdu(), &apdu);
        assert_eq!(
            module.unprotect(&mut b[..m], &params).unwrap().apdu(),
            &apdu
        );
        let mut forged = [0u8; 64];
        let mut counter = SendCounter::volatile(InvocationCounter::new(6));
        let k = module
            .protect(&req, &mut counter, &apdu, &mut forged)
            .unwrap();
        forged[k - 1] ^= 0x01;
        assert!(suite.unprotect(&mut forged[..k], &params).is_err());
        assert_eq!(format!("{cipher:?}"), "SoftwareCipher { .. }");
        assert_eq!(
            format!("{module:?}"),
            "ModuleKeys { kind: GlobalUnicast, .. }"
        );
    }

    /// Encryption only runs the bare keystream through the cipher: the
    /// same agreement, and the ciphertext is not the plaintext.
    #[test]
    fn module_keys_over_the_software_cipher_agree_with_suite0_under_encryption_only() {
        let guek = GlobalUnicastEncryptionKey::from_bytes([0x32; 16]);
        let ak = AuthenticationKey::from_bytes([0xA2; 16]);
        let cipher = SoftwareCipher::dangerous_new(&guek);
        let module = ModuleKeys::new(KeyKind::GlobalUnicast, &cipher, &ak);
        let suite = Suite0::new(&guek, &ak);
        let apdu = [
            0xC0, 0x01, 0xC1, 0x00, 0x08, 0, 0, 1, 0, 0, 0xFF, 0x02, 0x00,
        ];
        let req = Protect::unicast(Protection::Encrypted, TITLE);
        let params = Unprotect {
            peer_system_title: PeerTitle::Expected(TITLE),
            policy: SecurityPolicy::Encrypted,
        };
        let mut a = [0u8; 64];
        let n = module
            .protect(
                &req,
                &mut SendCounter::volatile(InvocationCounter::new(9)),
                &apdu,
                &mut a,
            )
            .unwrap();
        let mut b = [0u8; 64];
        let m = suite
            .protect(
                &req,
                &mut SendCounter::volatile(InvocationCounter::new(9)),
                &apdu,
                &mut b,
            )
            .unwrap();
        assert_eq!(a[..n], b[..m]);
        assert!(!a[..n].windows(apdu.len() - 1).any(|w| w == &apdu[1..]));
        assert_eq!(suite.unprotect(&mut a[..n], &params).unwrap().apdu(), &apdu);
        assert_eq!(
            module.unprotect(&mut b[..m], &params).unwrap().apdu(),
            &apdu
        );
    }
}
