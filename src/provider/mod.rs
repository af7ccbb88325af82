//! The crypto-provider plug point (R-03, R-04, R-07, R-11).
//!
//! Every operation that touches a KEK, an MK or an AK goes through these
//! traits, so an HSM implementation (PKCS#11) keeps the KEKs, and the MKs
//! and AKs they package, inside the module: only packaged records,
//! wrapped keys and protected frames cross the boundary.
//!
//! * [`CryptoProvider<G>`]: what a holder of the KEK `G` can do: name it
//!   (key check value), generate a key inside the provider and return it
//!   packaged, package a clear key (import; an HSM may refuse), and check a
//!   record's integrity. The role's KEK is part of the signature
//!   (`K: DeviceKey<Kek = G>`), so an S1SP, whose provider implements only
//!   `CryptoProvider<SharedKey>`, cannot even express an operation on an MK
//!   or AK (R-04, R-05).
//! * [`DcoProvider`]: what needs both KEKs: key_transfer wrapping under a
//!   packaged MK, and protecting or unprotecting an APDU with a packaged AK
//!   and a packaged GUEK, GBEK or DK (R-06). Keys exist in clear only inside
//!   one call and are wiped when it returns.
//!
//! No call allocates. Every method returns the crate's [`Error`]; a provider
//! refuses what it does not do with [`KeyError::Refused`] (the default for
//! [`CryptoProvider::package`], so an HSM provider need not offer clear-key
//! import) and reports module failures as [`KeyError::Provider`].
//!
//! [`SoftwareDco`] and [`SoftwareS1sp`] are the software providers (meters
//! have no KEK; tests and development use these), built on [`Packager`](crate::key::package::Packager).
//!
//! ```compile_fail
//! // An S1SP provider has no DCO Key: it cannot check, let alone use, an AK.
//! use dlms_sec::key::AuthenticationKey;
//! use dlms_sec::key::package::PackagedKey;
//! use dlms_sec::provider::{CryptoProvider, SoftwareS1sp};
//! fn reach_for_the_ak(p: &SoftwareS1sp, ak: &PackagedKey<AuthenticationKey>) {
//!     let _ = p.verify(ak);
//! }
//! ```

use rand_core::TryCryptoRng;

use crate::counter::{CounterSource, KeyFingerprint};
use crate::error::{Error, KeyError, Result};
use crate::key::package::{KeyCheckValue, PackagedKey, RecordId};
use crate::key::wrap::{TransferableKey, WrappedKey};
use crate::key::{
    AuthenticationKey, DcoKey, DedicatedKey, DeviceKey, GlobalBroadcastEncryptionKey,
    GlobalUnicastEncryptionKey, Kek, MasterKey, SharedKey,
};
use crate::suite0::{PeerTitle, Protect, Unprotect, Unprotected};
use crate::types::Protection;
use crate::wire::{InvocationCounter, KeyKind, SystemTitle};

/// Operations under one KEK (`G`).
pub trait CryptoProvider<G: Kek> {
    /// The KEK's check value, computed by the provider.
    ///
    /// # Errors
    /// [`KeyError::Provider`] when the module fails.
    fn kek_check_value(&self) -> Result<KeyCheckValue>;

    /// Generates a fresh key of role `K` inside the provider and returns it
    /// packaged as `id` (R-11). Software providers draw it from `rng`; an
    /// HSM generates it inside the module and ignores `rng`.
    ///
    /// # Errors
    /// [`Error::Rng`]; [`KeyError::RoleMismatch`] / [`KeyError::InvalidClient`]
    /// when `id` does not fit `K`; [`KeyError::Provider`].
    fn generate<K, R>(&self, rng: &mut R, id: RecordId) -> Result<PackagedKey<K>>
    where
        K: DeviceKey<Kek = G>,
        R: TryCryptoRng + ?Sized;

    /// Packages a key given in clear (import). The default refuses: an HSM
    /// provider offers this only as a named development helper.
    ///
    /// # Errors
    /// [`KeyError::Refused`] by default; as [`Self::generate`] otherwise.
    fn package<K: DeviceKey<Kek = G>>(&self, key: &K, id: RecordId) -> Result<PackagedKey<K>> {
        let _ = (key, id);
        Err(KeyError::Refused.into())
    }

    /// Checks a record without using its key: right KEK, check value
    /// intact (R-17: corruption found here leads to re-keying).
    ///
    /// # Errors
    /// [`KeyError::WrongKek`], [`KeyError::Corrupted`], [`KeyError::Provider`].
    fn verify<K: DeviceKey<Kek = G>>(&self, record: &PackagedKey<K>) -> Result<()>;

    /// Decrypts in place an encryption-only frame (no tag: SC `0x20` or
    /// `0x60`) under a packaged GUEK, GBEK or DK: the processing a holder of
    /// the Shared Key alone can do (R-05). A frame with authentication needs
    /// the AK and is refused, as is any role that is not an encryption key.
    /// The default refuses.
    ///
    /// # Errors
    /// [`KeyError::Refused`]; record errors; as
    /// [`Suite0::unprotect`](crate::suite0::Suite0::unprotect).
    fn decrypt_unauthenticated<'b, K: DeviceKey<Kek = G>>(
        &self,
        key: &PackagedKey<K>,
        frame: &'b mut [u8],
        peer: PeerTitle,
    ) -> Result<Unprotected<'b>> {
        let _ = (key, frame, peer);
        Err(KeyError::Refused.into())
    }
}

/// The packaged encryption key of a command: which one also says which key
/// the APDU is protected under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncryptionRecord<'a> {
    /// A packaged GUEK.
    GlobalUnicast(&'a PackagedKey<GlobalUnicastEncryptionKey>),
    /// A packaged GBEK.
    GlobalBroadcast(&'a PackagedKey<GlobalBroadcastEncryptionKey>),
    /// A packaged DK.
    Dedicated(&'a PackagedKey<DedicatedKey>),
}

impl EncryptionRecord<'_> {
    /// The key kind.
    #[must_use]
    pub const fn kind(&self) -> KeyKind {
        match self {
            Self::GlobalUnicast(_) => KeyKind::GlobalUnicast,
            Self::GlobalBroadcast(_) => KeyKind::GlobalBroadcast,
            Self::Dedicated(_) => KeyKind::Dedicated,
        }
    }

    /// Where the key belongs.
    #[must_use]
    pub fn id(&self) -> RecordId {
        match self {
            Self::GlobalUnicast(r) => r.id(),
            Self::GlobalBroadcast(r) => r.id(),
            Self::Dedicated(r) => r.id(),
        }
    }
}

/// The packaged keys of one command: the AK (under the DCO Key) and the
/// encryption key (under the Shared Key), as an S1SP hands them to the DCO
/// (R-06). Both must belong to the same device and client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandKeys<'a> {
    /// The packaged AK.
    pub ak: &'a PackagedKey<AuthenticationKey>,
    /// The packaged GUEK, GBEK or DK.
    pub encryption: EncryptionRecord<'a>,
}

/// Checks that an MK and a key to transfer under it belong to the same
/// device (every provider's `wrap_for_transfer` and
/// `generate_for_transfer` start with this).
///
/// # Errors
/// [`Error::Misuse`] when they do not.
pub fn check_transfer_device(mk: &RecordId, key: &RecordId) -> Result<()> {
    if mk.device == key.device {
        Ok(())
    } else {
        Err(Error::Misuse(
            "the MK and the key to transfer belong to different devices",
        ))
    }
}

impl CommandKeys<'_> {
    /// Checks that the records belong together and that `req` names the
    /// key kind of the encryption record (every provider's `protect`
    /// starts with this).
    ///
    /// # Errors
    /// [`Error::Misuse`].
    pub fn check_request(&self, req: &Protect<'_>) -> Result<()> {
        if req.key != self.encryption.kind() {
            return Err(Error::Misuse(
                "the request names another key than the command's record",
            ));
        }
        self.check()
    }

    /// Checks that the two records belong together.
    ///
    /// # Errors
    /// [`Error::Misuse`] when they name different devices or clients.
    pub fn check(&self) -> Result<()> {
        let (a, e) = (self.ak.id(), self.encryption.id());
        if a.device == e.device && a.client == e.client {
            Ok(())
        } else {
            Err(Error::Misuse(
                "the AK and encryption key records name different devices or clients",
            ))
        }
    }
}

/// What only the DCO can do: everything that needs an MK or an AK
/// together with a Shared-Key record.
pub trait DcoProvider: CryptoProvider<DcoKey> + CryptoProvider<SharedKey> {
    /// The DCO Key's check value: [`CryptoProvider::kek_check_value`]
    /// under the KEK this name gives.
    ///
    /// # Errors
    /// As [`CryptoProvider::kek_check_value`].
    fn dco_key_check_value(&self) -> Result<KeyCheckValue> {
        CryptoProvider::<DcoKey>::kek_check_value(self)
    }

    /// The Shared Key's check value: [`CryptoProvider::kek_check_value`]
    /// under the KEK this name gives.
    ///
    /// # Errors
    /// As [`CryptoProvider::kek_check_value`].
    fn shared_key_check_value(&self) -> Result<KeyCheckValue> {
        CryptoProvider::<SharedKey>::kek_check_value(self)
    }

    /// Wraps the key in `key` under the MK in `mk` (RFC 3394) for
    /// key_transfer; the key octets never leave the provider.
    ///
    /// # Errors
    /// [`KeyError::WrongKek`], [`KeyError::Corrupted`] for either record;
    /// [`Error::Misuse`] when the two records name different devices.
    fn wrap_for_transfer<K>(
        &self,
        mk: &PackagedKey<MasterKey>,
        key: &PackagedKey<K>,
    ) -> Result<WrappedKey>
    where
        K: TransferableKey,
        Self: CryptoProvider<K::Kek>;

    /// Generates a key of role `K` as [`CryptoProvider::generate`] does and
    /// wraps it under the MK in `mk` for key_transfer, in one call: an HSM
    /// provider wraps the new key while it is still an object in the
    /// module, so its octets never reach host memory even where the module
    /// cannot unwrap a packaged record (R-11, R-12). The default generates,
    /// then calls [`Self::wrap_for_transfer`] on the new record.
    ///
    /// # Errors
    /// As [`CryptoProvider::generate`] and [`Self::wrap_for_transfer`].
    fn generate_for_transfer<K, R>(
        &self,
        rng: &mut R,
        mk: &PackagedKey<MasterKey>,
        id: RecordId,
    ) -> Result<(PackagedKey<K>, WrappedKey)>
    where
        K: TransferableKey,
        R: TryCryptoRng + ?Sized,
        Self: CryptoProvider<K::Kek>,
    {
        check_transfer_device(&mk.id(), &id)?;
        let record = self.generate::<K, R>(rng, id)?;
        let wrapped = self.wrap_for_transfer(mk, &record)?;
        Ok((record, wrapped))
    }

    /// Protects `apdu` under the keys of `keys` (see [`Suite0::protect`](crate::suite0::Suite0::protect)).
    ///
    /// # Errors
    /// Record errors ([`KeyError`]); [`Error::Misuse`] when `req.key`
    /// differs from the encryption record's kind or the records do not
    /// belong together; then as [`Suite0::protect`](crate::suite0::Suite0::protect).
    fn protect(
        &self,
        keys: &CommandKeys<'_>,
        req: &Protect<'_>,
        counter: &mut impl CounterSource,
        apdu: &[u8],
        out: &mut [u8],
    ) -> Result<usize>;

    /// The fingerprint of the encryption key of `keys`: what the replay
    /// proofs of frames under it carry, and what the replay guard for
    /// them is made for. The default runs [`Self::protect`] once,
    /// encryption only, with the reserved counter `0xFFFFFFFF` and system
    /// title 0^64 (the one IV no frame uses), and reads the keystream off
    /// the output; that output leaves only as the fingerprint.
    ///
    /// # Errors
    /// As [`Self::protect`].
    fn key_fingerprint(&self, keys: &CommandKeys<'_>) -> Result<KeyFingerprint> {
        /// Yields the reserved counter, for the fingerprint alone.
        struct Reserved;
        impl CounterSource for Reserved {
            fn next_counter(
                &mut self,
            ) -> core::result::Result<InvocationCounter, crate::error::CounterError> {
                Ok(InvocationCounter::new(InvocationCounter::RESERVED))
            }
        }
        let req = Protect {
            protection: Protection::Encrypted,
            key: keys.encryption.kind(),
            form: crate::wire::CipheredForm::ServiceSpecific,
            system_title: SystemTitle::new([0; 8]),
        };
        // A get-request tag, then zeros: the ciphertext is the keystream
        // but for the first octet.
        let mut apdu = [0u8; 16];
        let [tag, ..] = &mut apdu;
        *tag = 0xC0;
        let mut out = [0u8; 32];
        let n = self.protect(keys, &req, &mut Reserved, &apdu, &mut out)?;
        let mut block = [0u8; 16];
        let payload = n
            .checked_sub(apdu.len())
            .and_then(|start| out.get(start..n))
            .ok_or(Error::Misuse("the fingerprint frame is too short"))?;
        for ((b, c), p) in block.iter_mut().zip(payload).zip(&apdu) {
            *b = c ^ p;
        }
        let fingerprint = KeyFingerprint::from_keystream(&block);
        zeroize::Zeroize::zeroize(&mut block);
        zeroize::Zeroize::zeroize(&mut out);
        Ok(fingerprint)
    }

    /// Verifies and decrypts a frame under the keys of `keys` (see
    /// [`Suite0::unprotect`](crate::suite0::Suite0::unprotect)).
    ///
    /// # Errors
    /// Record errors ([`KeyError`]); [`Error::Misuse`] when the records do
    /// not belong together; then as [`Suite0::unprotect`](crate::suite0::Suite0::unprotect).
    fn unprotect<'b>(
        &self,
        keys: &CommandKeys<'_>,
        frame: &'b mut [u8],
        req: &Unprotect,
    ) -> Result<Unprotected<'b>>;
}

mod software;

pub use self::software::{SoftwareDco, SoftwareS1sp};
