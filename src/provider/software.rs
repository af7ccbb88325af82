//! The software providers: both KEKs (or the Shared Key alone) in process
//! memory, for tests, development and the meter-free tools.

use rand_core::TryCryptoRng;
use zeroize::Zeroize;

use crate::counter::CounterSource;
use crate::error::{Error, KeyError, Result};
use crate::key::package::{KeyCheckValue, PackagedKey, Packager, RecordId};
use crate::key::wrap::{TransferableKey, WrappedKey, wrap_bytes};
use crate::key::{
    DcoKey, DeviceKey, KEY_LEN, Kek, KeyRole, MasterKey, SharedKey, device_key_bytes,
};
use crate::suite0::{KeySource, OneKey, PeerTitle, Protect, Unprotect, Unprotected};
use crate::types::SecurityPolicy;
use crate::wire::{FrameLayout, KeyKind};

use crate::provider::{
    CommandKeys, CryptoProvider, DcoProvider, EncryptionRecord, check_transfer_device,
};

impl<G: Kek> CryptoProvider<G> for Packager<G> {
    fn kek_check_value(&self) -> Result<KeyCheckValue> {
        Ok(Packager::kek_check_value(self))
    }

    fn generate<K, R>(&self, rng: &mut R, id: RecordId) -> Result<PackagedKey<K>>
    where
        K: DeviceKey<Kek = G>,
        R: TryCryptoRng + ?Sized,
    {
        let mut bytes = [0u8; KEY_LEN];
        let drawn = rng.try_fill_bytes(&mut bytes).map_err(|_| Error::Rng);
        let key: K = crate::key::device_key_from(bytes);
        bytes.zeroize();
        drawn?;
        Packager::package(self, &key, id)
    }

    fn package<K: DeviceKey<Kek = G>>(&self, key: &K, id: RecordId) -> Result<PackagedKey<K>> {
        Packager::package(self, key, id)
    }

    fn verify<K: DeviceKey<Kek = G>>(&self, record: &PackagedKey<K>) -> Result<()> {
        self.unpackage(record).map(drop)
    }

    fn decrypt_unauthenticated<'b, K: DeviceKey<Kek = G>>(
        &self,
        key: &PackagedKey<K>,
        frame: &'b mut [u8],
        peer: PeerTitle,
    ) -> Result<Unprotected<'b>> {
        let kind = match K::ROLE {
            KeyRole::GlobalUnicastEncryption => KeyKind::GlobalUnicast,
            KeyRole::GlobalBroadcastEncryption => KeyKind::GlobalBroadcast,
            KeyRole::Dedicated => KeyKind::Dedicated,
            KeyRole::Master | KeyRole::Authentication => return Err(KeyError::Refused.into()),
        };
        if FrameLayout::parse(frame)?.security_control.authenticated() {
            return Err(KeyError::Refused.into());
        }
        self.with_gcm(key, |gcm| {
            // Encryption only: the AK enters no computation.
            let no_ak = [0u8; KEY_LEN];
            OneKey {
                kind,
                gcm,
                ak: &no_ak,
            }
            .unprotect_core(
                frame,
                &Unprotect {
                    peer_system_title: peer,
                    policy: SecurityPolicy::Encrypted,
                },
            )
        })
    }
}

/// The software provider of a DCO: both KEKs, expanded in memory.
#[derive(Debug)]
pub struct SoftwareDco {
    dco: Packager<DcoKey>,
    shared: Packager<SharedKey>,
}

impl SoftwareDco {
    /// Expands both KEKs.
    #[must_use]
    pub fn new(dco_key: &DcoKey, shared_key: &SharedKey) -> Self {
        Self {
            dco: Packager::new(dco_key),
            shared: Packager::new(shared_key),
        }
    }

    /// Unpacks the keys of a command, the AK and the encryption key
    /// (straight into its GCM context), and runs `f` with them. Both exist
    /// in clear only for the length of this call and wipe themselves on
    /// drop.
    fn with_keys<R>(
        &self,
        keys: &CommandKeys<'_>,
        f: impl FnOnce(&OneKey<'_>) -> Result<R>,
    ) -> Result<R> {
        keys.check()?;
        let ak = self.dco.unpackage(keys.ak)?;
        let kind = keys.encryption.kind();
        let ak = device_key_bytes(&ak);
        let run = |gcm: &crate::gcm::Gcm<&aes::Aes128Enc>| f(&OneKey { kind, gcm, ak });
        match keys.encryption {
            EncryptionRecord::GlobalUnicast(r) => self.shared.with_gcm(r, run),
            EncryptionRecord::GlobalBroadcast(r) => self.shared.with_gcm(r, run),
            EncryptionRecord::Dedicated(r) => self.shared.with_gcm(r, run),
        }
    }
}

macro_rules! delegate_kek {
    ($ty:ty, $field:ident, $kek:ty) => {
        impl CryptoProvider<$kek> for $ty {
            fn kek_check_value(&self) -> Result<KeyCheckValue> {
                Ok(self.$field.kek_check_value())
            }
            fn generate<K, R>(&self, rng: &mut R, id: RecordId) -> Result<PackagedKey<K>>
            where
                K: DeviceKey<Kek = $kek>,
                R: TryCryptoRng + ?Sized,
            {
                CryptoProvider::generate(&self.$field, rng, id)
            }
            fn package<K: DeviceKey<Kek = $kek>>(
                &self,
                key: &K,
                id: RecordId,
            ) -> Result<PackagedKey<K>> {
                self.$field.package(key, id)
            }
            fn verify<K: DeviceKey<Kek = $kek>>(&self, record: &PackagedKey<K>) -> Result<()> {
                CryptoProvider::verify(&self.$field, record)
            }
            fn decrypt_unauthenticated<'b, K: DeviceKey<Kek = $kek>>(
                &self,
                key: &PackagedKey<K>,
                frame: &'b mut [u8],
                peer: PeerTitle,
            ) -> Result<Unprotected<'b>> {
                CryptoProvider::decrypt_unauthenticated(&self.$field, key, frame, peer)
            }
        }
    };
}
delegate_kek!(SoftwareDco, dco, DcoKey);
delegate_kek!(SoftwareDco, shared, SharedKey);

/// Dispatch from a KEK type to the DCO provider's packager for it.
trait PackagerOf<G: Kek> {
    fn packager(&self) -> &Packager<G>;
}
impl PackagerOf<DcoKey> for SoftwareDco {
    fn packager(&self) -> &Packager<DcoKey> {
        &self.dco
    }
}
impl PackagerOf<SharedKey> for SoftwareDco {
    fn packager(&self) -> &Packager<SharedKey> {
        &self.shared
    }
}

impl DcoProvider for SoftwareDco {
    fn wrap_for_transfer<K>(
        &self,
        mk: &PackagedKey<MasterKey>,
        key: &PackagedKey<K>,
    ) -> Result<WrappedKey>
    where
        K: TransferableKey,
        Self: CryptoProvider<K::Kek>,
    {
        check_transfer_device(&mk.id(), &key.id())?;
        let mk = self.dco.unpackage(mk)?;
        let key = unpack_any::<K>(self, key)?;
        Ok(wrap_bytes(device_key_bytes(&mk), device_key_bytes(&key)))
    }

    fn protect(
        &self,
        keys: &CommandKeys<'_>,
        req: &Protect<'_>,
        counter: &mut impl CounterSource,
        apdu: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        keys.check_request(req)?;
        self.with_keys(keys, |k| k.protect_core(req, counter, apdu, out))
    }

    fn unprotect<'b>(
        &self,
        keys: &CommandKeys<'_>,
        frame: &'b mut [u8],
        req: &Unprotect,
    ) -> Result<Unprotected<'b>> {
        self.with_keys(keys, |k| k.unprotect_core(frame, req))
    }
}

/// Unpacks a transferable key under whichever KEK packages its role.
fn unpack_any<K: TransferableKey>(p: &SoftwareDco, record: &PackagedKey<K>) -> Result<K>
where
    SoftwareDco: CryptoProvider<K::Kek>,
{
    match K::ROLE.kek() {
        crate::types::KekKind::Dco => unpack_via::<K, DcoKey>(p, record),
        crate::types::KekKind::Shared => unpack_via::<K, SharedKey>(p, record),
    }
}

/// Unpacks `record` with the packager for `G`, after checking that `G` is
/// the KEK of `K`'s role (a run-time restatement of the type-level rule,
/// since `K::Kek` cannot be matched on directly).
fn unpack_via<K: DeviceKey, G: Kek>(p: &SoftwareDco, record: &PackagedKey<K>) -> Result<K>
where
    SoftwareDco: PackagerOf<G>,
{
    if K::ROLE.kek() != G::KIND {
        return Err(Error::Misuse("role packaged under another KEK"));
    }
    let packager: &Packager<G> = p.packager();
    packager.unpackage_unchecked_role(record)
}

/// The software provider of an S1SP: the Shared Key only.
#[derive(Debug)]
pub struct SoftwareS1sp {
    shared: Packager<SharedKey>,
}

impl SoftwareS1sp {
    /// Expands the Shared Key.
    #[must_use]
    pub fn new(shared_key: &SharedKey) -> Self {
        Self {
            shared: Packager::new(shared_key),
        }
    }
}

delegate_kek!(SoftwareS1sp, shared, SharedKey);
