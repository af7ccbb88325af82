//! Packaged keys: a device key encrypted under an HSM key-encryption key
//! with AES-ECB-128, for storage outside the module (R-03, R-04, R-08, R-15).
//!
//! # Record format (version 1, 42 octets)
//!
//! ```text
//! offset len field
//!  0      1  format version (1)
//!  1      1  key role (1 MK, 2 AK, 3 GUEK, 4 GBEK, 5 DK)
//!  2      1  client (0 device-wide: the MK; 1 Data Collection,
//!            2 Extended Data Collection, 3 Management, 4 Firmware)
//!  3      3  KEK check value: AES-128(KEK, 0¹²⁸), first 3 octets
//!  6      8  device system title
//! 14      4  generation, big-endian
//! 18     16  AES-128-ECB(KEK, key)
//! 34      8  check value: AES-128(key, M), first 8 octets, where
//!            M = (0x80 | role << 3 | client) ‖ KEK check value ‖ title ‖ generation
//! ```
//!
//! Unpacking checks, in order: the version and field codes (typed
//! errors); the record's KEK check value against the KEK offered
//! ([`KeyError::WrongKek`], public information); then decrypts and
//! recomputes the check value, compared in constant time
//! ([`KeyError::Corrupted`], no detail). Any change to any byte of the
//! record, a record moved to another device, client, role or generation,
//! and a record offered to another KEK are detected. A wrong key passes the
//! 64-bit check value with probability 2⁻⁶⁴.
//!
//! The check value is keyed by the packaged key itself, so only a holder
//! of the KEK can make or check it, and it costs one AES block under a key
//! schedule the user of the key builds anyway. Its block M starts with an
//! octet in `0x88..=0xAC`, so it never equals a GCM counter block of a
//! sender whose system title starts with a FLAG letter, the all-zero GHASH
//! key block, or an RFC 3394 block (which start `0xA6`).
//!
//! ECB is used only as the policy requires (R-08) and only on single blocks
//! of uniformly random key material. It is deterministic: two records of the
//! same key under the same KEK carry the same ciphertext, so a key reused
//! across devices or clients would show. Keys are generated per device and
//! client, so this does not arise.
//!
//! Which KEK packages which role is a type: a [`Packager<SharedKey>`]
//! cannot package or unpack an MK or AK.
//!
//! ```compile_fail
//! use dlms_sec::key::{MasterKey, SharedKey};
//! use dlms_sec::key::package::{Packager, PackagedKey};
//! fn s1sp_reaches_for_the_master_key(p: &Packager<SharedKey>, r: &PackagedKey<MasterKey>) {
//!     let _ = p.unpackage(r);
//! }
//! ```
//!
//! ```compile_fail
//! use dlms_sec::key::{DcoKey, GlobalUnicastEncryptionKey};
//! use dlms_sec::key::package::{Packager, RecordId};
//! fn dco_key_packaging_a_guek(p: &Packager<DcoKey>, k: &GlobalUnicastEncryptionKey, id: RecordId) {
//!     let _ = p.package(k, id);
//! }
//! ```

use core::fmt;
use core::marker::PhantomData;

use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use aes::{Aes128, Aes128Enc};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::error::{Error, KeyError, Result, WireError};
use crate::key::{DeviceKey, KEY_LEN, Kek, KeyRole, device_key_bytes, device_key_from, kek_bytes};
use crate::types::Client;
use crate::wire::SystemTitle;

/// Length of a packaged-key record.
pub const RECORD_LEN: usize = 42;
/// The record format version written by this build.
pub const RECORD_VERSION: u8 = 1;
/// Length of the check value that binds a key to its metadata.
pub const CHECK_VALUE_LEN: usize = 8;

mod field {
    use core::ops::Range;
    pub const ROLE: usize = 1;
    pub const CLIENT: usize = 2;
    pub const KCV: Range<usize> = 3..6;
    pub const DEVICE: Range<usize> = 6..14;
    pub const GENERATION: Range<usize> = 14..18;
    pub const CIPHERTEXT: Range<usize> = 18..34;
    pub const CHECK: Range<usize> = 34..42;
}

/// A key check value: the first 3 octets of AES-128(K, 0¹²⁸), the
/// conventional KCV (and PKCS#11's `CKA_CHECK_VALUE` for AES). It names a
/// KEK without revealing it, so two ends can confirm they hold the same
/// KEK (R-13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyCheckValue(pub [u8; 3]);

impl KeyCheckValue {
    pub(crate) fn of(aes: &impl BlockCipherEncrypt<BlockSize = aes::cipher::consts::U16>) -> Self {
        let mut b = aes::Block::default();
        aes.encrypt_block(&mut b);
        let [a, c, d, ..] = b.0;
        b.as_mut_slice().zeroize();
        Self([a, c, d])
    }
}

/// Where a packaged key belongs: device, client, role and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId {
    /// The device's system title.
    pub device: SystemTitle,
    /// The client; `None` for the device-wide Master Key.
    pub client: Option<Client>,
    /// The key role.
    pub role: KeyRole,
    /// Generation: 0 for the key installed at manufacture, one more for each
    /// replacement.
    pub generation: u32,
}

impl RecordId {
    /// Checks that the client fits the role: the MK is device-wide, every
    /// other role belongs to a client with keys.
    ///
    /// # Errors
    /// [`KeyError::InvalidClient`].
    pub const fn check(&self) -> Result<()> {
        match (self.role.is_device_wide(), self.client) {
            (true, None) => Ok(()),
            (false, Some(c)) if c.has_keys() => Ok(()),
            _ => Err(Error::Key(KeyError::InvalidClient)),
        }
    }

    /// The block M the record's check value encrypts under the key itself
    /// (see the [module](self) docs): what a provider whose keys live in a
    /// module encrypts there (AES-ECB, one block) to make or check a
    /// record without the key leaving it.
    #[must_use]
    pub fn check_block(&self, kcv: KeyCheckValue) -> [u8; 16] {
        self.check_aes_block(kcv).0
    }

    fn check_aes_block(&self, kcv: KeyCheckValue) -> aes::Block {
        let client = Client::record_code(self.client).unwrap_or(0x07);
        let mut m = [0u8; 16];
        let (head, rest) = m.split_at_mut(4);
        let (title, generation) = rest.split_at_mut(8);
        let [c0, c1, c2] = kcv.0;
        head.copy_from_slice(&[0x80 | (self.role.code() << 3) | client, c0, c1, c2]);
        title.copy_from_slice(self.device.as_bytes());
        generation.copy_from_slice(&self.generation.to_be_bytes());
        aes::Block::from(m)
    }
}

/// A packaged-key record of any role, as stored (R-15: stores hold these,
/// never clear keys). Parsing checks the format; the key inside is checked
/// only when a KEK holder unpacks it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackagedRecord([u8; RECORD_LEN]);

impl fmt::Debug for PackagedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Metadata only: no ciphertext, no check value.
        f.debug_struct("PackagedRecord")
            .field("id", &self.id())
            .field("kek", &self.kek_check_value())
            .finish_non_exhaustive()
    }
}

impl PackagedRecord {
    /// Reads a record.
    ///
    /// # Errors
    /// [`WireError::Truncated`] / [`WireError::TrailingBytes`] for another
    /// length; [`KeyError::UnsupportedVersion`]; [`WireError::InvalidField`]
    /// for an unknown role or client code; [`KeyError::InvalidClient`] when
    /// the client does not fit the role.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let bytes: [u8; RECORD_LEN] = bytes.try_into().map_err(|_| {
            if bytes.len() < RECORD_LEN {
                WireError::Truncated
            } else {
                WireError::TrailingBytes
            }
        })?;
        let [version, role, client, ..] = bytes;
        if version != RECORD_VERSION {
            return Err(KeyError::UnsupportedVersion(version).into());
        }
        let role = KeyRole::from_code(role).ok_or(WireError::InvalidField)?;
        let client = Client::from_record_code(client).ok_or(WireError::InvalidField)?;
        let record = Self(bytes);
        let id = RecordId {
            device: record.device(),
            client,
            role,
            generation: record.generation(),
        };
        id.check()?;
        Ok(record)
    }

    /// The 42 octets.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; RECORD_LEN] {
        &self.0
    }

    fn field<const N: usize>(&self, range: core::ops::Range<usize>) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.0.get(range) {
            for (o, s) in out.iter_mut().zip(src) {
                *o = *s;
            }
        }
        out
    }

    /// The key role.
    #[must_use]
    pub fn role(&self) -> KeyRole {
        // Checked by `parse` and every constructor.
        KeyRole::from_code(self.0[field::ROLE]).unwrap_or(KeyRole::Dedicated)
    }

    /// The device.
    #[must_use]
    pub fn device(&self) -> SystemTitle {
        SystemTitle::new(self.field(field::DEVICE))
    }

    /// The client (`None` for the MK).
    #[must_use]
    pub fn client(&self) -> Option<Client> {
        Client::from_record_code(self.0[field::CLIENT]).unwrap_or(None)
    }

    /// The generation.
    #[must_use]
    pub fn generation(&self) -> u32 {
        u32::from_be_bytes(self.field(field::GENERATION))
    }

    /// Everything that says where the key belongs.
    #[must_use]
    pub fn id(&self) -> RecordId {
        RecordId {
            device: self.device(),
            client: self.client(),
            role: self.role(),
            generation: self.generation(),
        }
    }

    /// The check value of the KEK that packaged it.
    #[must_use]
    pub fn kek_check_value(&self) -> KeyCheckValue {
        KeyCheckValue(self.field(field::KCV))
    }

    /// [`RecordId::check_block`] for this record's id and KEK check value,
    /// read straight from the stored octets (role, client, KCV, device and
    /// generation are stored in the block's order), without parsing the id.
    fn stored_check_block(&self) -> aes::Block {
        let [_, role, client, ..] = self.0;
        let [k0, k1, k2, d0, d1, d2, d3, d4, d5, d6, d7, g0, g1, g2, g3]: [u8; 15] =
            self.field(field::KCV.start..field::GENERATION.end);
        aes::Block::from([
            0x80 | (role << 3) | client,
            k0,
            k1,
            k2,
            d0,
            d1,
            d2,
            d3,
            d4,
            d5,
            d6,
            d7,
            g0,
            g1,
            g2,
            g3,
        ])
    }

    /// AES-128-ECB(KEK, key): what a module unwraps or decrypts under the KEK.
    #[must_use]
    pub fn ciphertext(&self) -> [u8; KEY_LEN] {
        self.field(field::CIPHERTEXT)
    }

    /// The stored check value, AES-128(key, M)'s first 8 octets.
    #[must_use]
    pub fn check_value(&self) -> [u8; CHECK_VALUE_LEN] {
        self.field(field::CHECK)
    }

    /// The record as a key of role `K`.
    ///
    /// # Errors
    /// [`KeyError::RoleMismatch`].
    pub fn typed<K: DeviceKey>(self) -> Result<PackagedKey<K>> {
        if self.role() == K::ROLE {
            Ok(PackagedKey {
                record: self,
                role: PhantomData,
            })
        } else {
            Err(KeyError::RoleMismatch {
                expected: K::ROLE,
                found: self.role(),
            }
            .into())
        }
    }
}

/// A packaged key whose role is known at compile time.
pub struct PackagedKey<K: DeviceKey> {
    record: PackagedRecord,
    role: PhantomData<fn() -> K>,
}

impl<K: DeviceKey> Clone for PackagedKey<K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K: DeviceKey> Copy for PackagedKey<K> {}

// Records are ciphertext and metadata: equality is on the stored octets.
impl<K: DeviceKey> PartialEq for PackagedKey<K> {
    fn eq(&self, other: &Self) -> bool {
        self.record == other.record
    }
}
impl<K: DeviceKey> Eq for PackagedKey<K> {}
impl<K: DeviceKey> core::hash::Hash for PackagedKey<K> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.record.hash(state);
    }
}

impl<K: DeviceKey> fmt::Debug for PackagedKey<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.record, f)
    }
}

impl<K: DeviceKey> PackagedKey<K> {
    /// Assembles a record from what a module computed: the key's ECB
    /// ciphertext under the KEK named by `kcv` and the first 8 octets of
    /// AES(key, [`RecordId::check_block`]). An HSM provider packages a key
    /// this way without the key leaving the module; nothing here can check
    /// the two values (that takes the key), so a provider must compute
    /// them from the same key object.
    ///
    /// # Errors
    /// [`KeyError::RoleMismatch`] when `id.role` is not `K`'s role;
    /// [`KeyError::InvalidClient`] when the client does not fit the role.
    pub fn from_parts(
        id: RecordId,
        kcv: KeyCheckValue,
        ciphertext: &[u8; KEY_LEN],
        check: &[u8; CHECK_VALUE_LEN],
    ) -> Result<Self> {
        if id.role != K::ROLE {
            return Err(KeyError::RoleMismatch {
                expected: K::ROLE,
                found: id.role,
            }
            .into());
        }
        id.check()?;
        let mut r = [0u8; RECORD_LEN];
        let client = Client::record_code(id.client).unwrap_or(0);
        let [k0, k1, k2] = kcv.0;
        let parts: [&[u8]; 6] = [
            &[RECORD_VERSION, id.role.code(), client],
            &[k0, k1, k2],
            id.device.as_bytes(),
            &id.generation.to_be_bytes(),
            ciphertext,
            check,
        ];
        for (o, b) in r.iter_mut().zip(parts.iter().flat_map(|p| p.iter())) {
            *o = *b;
        }
        Ok(Self {
            record: PackagedRecord(r),
            role: PhantomData,
        })
    }

    /// Checks that `key` is the key this record packages, by its check
    /// value (constant time). For a provider that had to decrypt the key
    /// into host memory (the AK of a command; a module without ECB unwrap).
    ///
    /// # Errors
    /// [`KeyError::Corrupted`] when it is not.
    pub fn check_key(&self, key: &K) -> Result<()> {
        let r = &self.record;
        let schedule = Aes128Enc::new(device_key_bytes(key).into());
        let mut expected = check_value(&schedule, r.stored_check_block());
        let ok = bool::from(check_eq(&expected, &r.check_value()));
        expected.zeroize();
        if ok {
            Ok(())
        } else {
            Err(KeyError::Corrupted.into())
        }
    }

    /// The untyped record (for storage).
    #[must_use]
    pub const fn record(&self) -> &PackagedRecord {
        &self.record
    }

    /// Where the key belongs.
    #[must_use]
    pub fn id(&self) -> RecordId {
        self.record.id()
    }
}

/// A KEK expanded for packaging and unpackaging keys of the roles it
/// covers (software provider; an HSM keeps the KEK inside).
pub struct Packager<G: Kek> {
    aes: Aes128,
    kcv: KeyCheckValue,
    kek: PhantomData<fn() -> G>,
}

impl<G: Kek> fmt::Debug for Packager<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packager")
            .field("kek", &G::KIND)
            .field("kcv", &self.kcv)
            .finish_non_exhaustive()
    }
}

impl<G: Kek> Packager<G> {
    /// Expands `kek`.
    #[must_use]
    pub fn new(kek: &G) -> Self {
        let aes = Aes128::new(kek_bytes(kek).into());
        let kcv = KeyCheckValue::of(&aes);
        Self {
            aes,
            kcv,
            kek: PhantomData,
        }
    }
}

impl<G: Kek> Packager<G> {
    /// The KEK's check value.
    #[must_use]
    pub const fn kek_check_value(&self) -> KeyCheckValue {
        self.kcv
    }

    /// Packages `key` as the record `id`.
    ///
    /// # Errors
    /// [`KeyError::RoleMismatch`] when `id.role` is not `K`'s role;
    /// [`KeyError::InvalidClient`] when the client does not fit the role.
    pub fn package<K: DeviceKey<Kek = G>>(&self, key: &K, id: RecordId) -> Result<PackagedKey<K>> {
        if id.role != K::ROLE {
            return Err(KeyError::RoleMismatch {
                expected: K::ROLE,
                found: id.role,
            }
            .into());
        }
        id.check()?;
        let bytes = device_key_bytes(key);
        let mut check = check_value(&Aes128Enc::new(bytes.into()), id.check_aes_block(self.kcv));
        let mut block = aes::Block::from(*bytes);
        self.aes.encrypt_block(&mut block);
        let record = PackagedKey::from_parts(id, self.kcv, &block.0, &check);
        check.zeroize();
        record
    }

    /// Unpacks a key of role `K`.
    ///
    /// # Errors
    /// [`KeyError::WrongKek`] when the record names another KEK;
    /// [`KeyError::Corrupted`] when the check value does not match (no key
    /// octets survive).
    pub fn unpackage<K: DeviceKey<Kek = G>>(&self, record: &PackagedKey<K>) -> Result<K> {
        let key = self.unpack_inner(record)?;
        Ok(key)
    }

    /// Unpacks an encryption key straight into a GCM context and runs `f`
    /// with it: one AES call under the key computes both the record's check
    /// value and the GHASH key H, the key's octets never leave this
    /// function, and the context stays in this frame (it is not moved
    /// out; the DCO command path pays for every copy of its 340 octets).
    pub(crate) fn with_gcm<K: DeviceKey<Kek = G>, R>(
        &self,
        record: &PackagedKey<K>,
        f: impl FnOnce(&crate::gcm::Gcm<&Aes128Enc>) -> Result<R>,
    ) -> Result<R> {
        let r = &record.record;
        if r.kek_check_value() != self.kcv {
            return Err(KeyError::WrongKek.into());
        }
        let mut block = aes::Block::from(r.field::<KEY_LEN>(field::CIPHERTEXT));
        self.aes.decrypt_block(&mut block);
        let schedule = Aes128Enc::new(&block);
        block.as_mut_slice().zeroize();
        // (The stored KCV is `self.kcv`, checked above.)
        let mut blocks = [
            r.stored_check_block(),
            aes::Block::default(),
            aes::Block::from(crate::gcm::FINGERPRINT_BLOCK),
        ];
        schedule.encrypt_blocks(&mut blocks);
        let stored: [u8; CHECK_VALUE_LEN] = r.field(field::CHECK);
        let [check, h, fingerprint] = &blocks;
        let [c0, c1, c2, c3, c4, c5, c6, c7, ..] = check.0;
        let ok = bool::from(check_eq(&[c0, c1, c2, c3, c4, c5, c6, c7], &stored));
        let gcm = crate::gcm::Gcm::from_parts(&schedule, *h, fingerprint);
        // The batch held H: wiped here, the context keeps its own copy.
        for b in &mut blocks {
            b.as_mut_slice().zeroize();
        }
        if ok {
            f(&gcm)
        } else {
            Err(KeyError::Corrupted.into())
        }
    }

    /// Unpacks without the type-level role/KEK tie; the caller has checked
    /// it at run time.
    pub(crate) fn unpackage_unchecked_role<K: DeviceKey>(
        &self,
        record: &PackagedKey<K>,
    ) -> Result<K> {
        self.unpack_inner(record)
    }

    fn unpack_inner<K: DeviceKey>(&self, record: &PackagedKey<K>) -> Result<K> {
        // (The encryption-key path is `with_gcm`.)
        let r = &record.record;
        if r.kek_check_value() != self.kcv {
            return Err(KeyError::WrongKek.into());
        }
        let mut block = aes::Block::from(r.field::<KEY_LEN>(field::CIPHERTEXT));
        self.aes.decrypt_block(&mut block);
        // The schedule straight from the decrypted block, and the key's
        // octets copied out of it only once it checks, so the schedule's
        // 16-octet load never waits on octet-wide stores.
        let schedule = Aes128Enc::new(&block);
        let mut expected = check_value(&schedule, r.stored_check_block());
        let stored: [u8; CHECK_VALUE_LEN] = r.field(field::CHECK);
        let ok = bool::from(check_eq(&expected, &stored));
        expected.zeroize();
        let key = ok.then(|| device_key_from(block.0));
        block.as_mut_slice().zeroize();
        key.ok_or(KeyError::Corrupted.into())
    }
}

/// Constant-time equality of two check values, as one 64-bit word (one
/// `subtle` comparison, not eight per-octet barriers).
fn check_eq(a: &[u8; CHECK_VALUE_LEN], b: &[u8; CHECK_VALUE_LEN]) -> subtle::Choice {
    (u64::from_ne_bytes(*a) ^ u64::from_ne_bytes(*b)).ct_eq(&0)
}

/// The check value of block M under the key's own encrypt schedule.
fn check_value(key: &Aes128Enc, mut b: aes::Block) -> [u8; CHECK_VALUE_LEN] {
    key.encrypt_block(&mut b);
    let mut out = [0u8; CHECK_VALUE_LEN];
    for (o, x) in out.iter_mut().zip(b.iter()) {
        *o = *x;
    }
    b.as_mut_slice().zeroize();
    out
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    reason = "test data"
)]
mod tests {
    use super::*;

    /// The check block read from the stored octets is the one built from
    /// the parsed id, for every role, every client a record may name, and
    /// assorted devices, generations and KEK check values (the DCO path
    /// uses the former, packaging the latter).
    #[test]
    fn stored_check_block_is_the_ids() {
        let mut seen = 0;
        for role in KeyRole::ALL {
            let clients: &[Option<Client>] = if role.is_device_wide() {
                &[None]
            } else {
                &[
                    Some(Client::DataCollection),
                    Some(Client::ExtendedDataCollection),
                    Some(Client::Management),
                    Some(Client::Firmware),
                ]
            };
            for &client in clients {
                for (n, generation) in [0u32, 1, 0x0102_0304, u32::MAX].into_iter().enumerate() {
                    let id = RecordId {
                        device: SystemTitle::new([0x4D, 0x4D, 0x4D, 0, n as u8, 0xBC, 0x61, 0x4E]),
                        client,
                        role,
                        generation,
                    };
                    let kcv = KeyCheckValue([n as u8, 0xA5, 0xFF]);
                    let mut bytes = [0u8; RECORD_LEN];
                    bytes[0] = RECORD_VERSION;
                    bytes[field::ROLE] = role.code();
                    bytes[field::CLIENT] = Client::record_code(client).unwrap_or(0);
                    bytes[field::KCV].copy_from_slice(&kcv.0);
                    bytes[field::DEVICE].copy_from_slice(id.device.as_bytes());
                    bytes[field::GENERATION].copy_from_slice(&generation.to_be_bytes());
                    let record = PackagedRecord::parse(&bytes).expect("a valid record");
                    assert_eq!(record.id(), id);
                    assert_eq!(record.stored_check_block().0, id.check_block(kcv));
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, (1 + 4 * 4) * 4);
    }
}
