//! Fixtures and baselines shared by the criterion suite (`suite0.rs`) and
//! the interleaved cross-check (`interleaved.rs`), so both measure the same
//! calls on the same inputs.

#![allow(dead_code, reason = "each bench target uses part of this module")]

use std::hint::black_box;

use aes::Aes128;
use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use aes_gcm::aead::AeadInOut;
use aes_gcm::aead::consts::U12;
use dlms_sec::counter::{SendCounter, Volatile};
use dlms_sec::key::package::{PackagedKey, RecordId};
use dlms_sec::key::{AuthenticationKey, DcoKey, GlobalUnicastEncryptionKey, KeyRole, SharedKey};
use dlms_sec::provider::{CommandKeys, CryptoProvider, DcoProvider, EncryptionRecord, SoftwareDco};
use dlms_sec::suite0::{Protect, Suite0};
use dlms_sec::types::Client;
use dlms_sec::{InvocationCounter, Protection, SystemTitle};

pub type RawGcm = aes_gcm::AesGcm<Aes128, U12, U12>;

pub const EK: [u8; 16] = *b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0A\x0B\x0C\x0D\x0E\x0F";
pub const AK: [u8; 16] = [0xD0; 16];
pub const TITLE: SystemTitle = SystemTitle::new([0x4D, 0x4D, 0x4D, 0, 0, 0xBC, 0x61, 0x4E]);

pub fn counter() -> SendCounter<Volatile> {
    SendCounter::volatile(InvocationCounter::new(1))
}

pub fn apdu(len: usize) -> Vec<u8> {
    let mut a: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
    if let Some(first) = a.first_mut() {
        *first = 0xC0; // get-request: the service-specific form needs a known tag
    }
    a
}

pub fn suite() -> Suite0 {
    Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(EK),
        &AuthenticationKey::from_bytes(AK),
    )
}

pub fn iv(ic: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[..8].copy_from_slice(TITLE.as_bytes());
    iv[8..].copy_from_slice(&ic.to_be_bytes());
    iv
}

/// A service-specific request under the global unicast key.
pub fn request(protection: Protection) -> Protect<'static> {
    Protect::unicast(protection, TITLE)
}

/// The raw baseline's AAD, already contiguous: SC ‖ AK (‖ APDU under authentication only).
pub fn raw_aad(protection: Protection, apdu: &[u8]) -> Vec<u8> {
    let mut aad = vec![protection.bits()];
    aad.extend_from_slice(&AK);
    if protection == Protection::Authenticated {
        aad.extend_from_slice(apdu);
    }
    aad
}

/// Puts the received frame back before the next in-place unprotect, 16
/// octets at a time, the same on both sides of a comparison:
/// `copy_from_slice` (`rep movsb` in glibc's `memcpy`) is several times
/// slower at some alignments, enough to outweigh the GHASH it sits beside.
pub fn restore(dst: &mut [u8], src: &[u8]) {
    let mut d = dst.chunks_exact_mut(16);
    let mut s = src.chunks_exact(16);
    for (d, s) in d.by_ref().zip(s.by_ref()) {
        let block: [u8; 16] = s.try_into().expect("16 octets");
        d.copy_from_slice(&block);
    }
    d.into_remainder().copy_from_slice(s.remainder());
}

/// The DCO command path's fixtures: a software DCO, a packaged AK and GUEK
/// of one client, and the two KEKs expanded for the raw-unpacked floor.
pub struct Dco {
    pub provider: SoftwareDco,
    pub ak: PackagedKey<AuthenticationKey>,
    pub guek: PackagedKey<GlobalUnicastEncryptionKey>,
    kek_dco: Aes128,
    kek_shared: Aes128,
}

pub fn dco() -> Dco {
    let (dco_key, shared_key) = ([1; 16], [2; 16]);
    let provider = SoftwareDco::new(
        &DcoKey::from_bytes(dco_key),
        &SharedKey::from_bytes(shared_key),
    );
    let id = |role| RecordId {
        device: TITLE,
        client: Some(Client::Management),
        role,
        generation: 1,
    };
    let ak = provider
        .package(
            &AuthenticationKey::from_bytes(AK),
            id(KeyRole::Authentication),
        )
        .expect("ak");
    let guek = provider
        .package(
            &GlobalUnicastEncryptionKey::from_bytes(EK),
            id(KeyRole::GlobalUnicastEncryption),
        )
        .expect("guek");
    Dco {
        provider,
        ak,
        guek,
        kek_dco: Aes128::new(&dco_key.into()),
        kek_shared: Aes128::new(&shared_key.into()),
    }
}

/// SC ‖ AK for authenticated encryption.
fn dco_aad() -> [u8; 17] {
    let mut aad = [0u8; 17];
    aad[0] = Protection::AuthenticatedEncrypted.bits();
    aad[1..].copy_from_slice(&AK);
    aad
}

impl Dco {
    /// Ours: the two records to a protected 64-octet APDU.
    pub fn command(&self, ctr: &mut SendCounter<Volatile>, a: &[u8], out: &mut [u8]) -> usize {
        let keys = CommandKeys {
            ak: &self.ak,
            encryption: EncryptionRecord::GlobalUnicast(&self.guek),
        };
        self.provider
            .protect(
                &keys,
                &request(Protection::AuthenticatedEncrypted),
                ctr,
                a,
                out,
            )
            .expect("dco protect")
    }

    /// The path's unavoidable work on the raw crates: each record's key
    /// out of AES-ECB under its (expanded) KEK; an AK schedule for the
    /// AK's check value; the GUEK's schedule, its check value, then
    /// aes-gcm built on that schedule (H, GHASH key) and encrypting `a`.
    pub fn raw_unpacked(&self, a: &mut [u8], ic: u32) -> [u8; 12] {
        let [mut ak, mut guek] =
            [self.ak.record(), self.guek.record()].map(|r| aes::Block::from(r.ciphertext()));
        self.kek_dco.decrypt_block(&mut ak);
        self.kek_shared.decrypt_block(&mut guek);
        let mut ak_check = aes::Block::default();
        aes::Aes128Enc::new(&ak).encrypt_block(&mut ak_check);
        let guek_schedule = aes::Aes128Enc::new(&guek);
        let mut guek_check = aes::Block::default();
        guek_schedule.encrypt_block(&mut guek_check);
        black_box((&ak_check, &guek_check));
        let gcm = aes_gcm::AesGcm::<aes::Aes128Enc, U12, U12>::from(guek_schedule);
        let mut aad = dco_aad();
        aad[1..].copy_from_slice(&ak);
        gcm.encrypt_inout_detached(&iv(ic).into(), &aad, a.into())
            .expect("raw")
            .into()
    }
}

/// The DCO baseline: `AesGcm` from the clear GUEK, then encrypt `a`.
pub fn raw_command(a: &mut [u8], ic: u32) -> [u8; 12] {
    let gcm = RawGcm::new(&EK.into());
    gcm.encrypt_inout_detached(&iv(ic).into(), &dco_aad(), a.into())
        .expect("raw")
        .into()
}
