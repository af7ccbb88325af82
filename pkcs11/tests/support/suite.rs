//! One provider test suite, run against the software DCO and the PKCS#11
//! DCO alike. `reference` is a software DCO holding the same two KEKs, so
//! every result is checked both ways.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use dlms_sec::counter::SingleUse;
use dlms_sec::error::{Error, KeyError};
use dlms_sec::key::package::{PackagedKey, RecordId};
use dlms_sec::key::wrap::{self, TransferableKey};
use dlms_sec::key::{
    AuthenticationKey, DedicatedKey, GlobalBroadcastEncryptionKey, GlobalUnicastEncryptionKey,
    KeyRole, MasterKey,
};
use dlms_sec::provider::{CommandKeys, CryptoProvider, DcoProvider, EncryptionRecord, SoftwareDco};
use dlms_sec::suite0::PeerTitle;
use dlms_sec::suite0::{Protect, Unprotect};
use dlms_sec::types::Client;
use dlms_sec::wire::CipheredForm;
use dlms_sec::{InvocationCounter, Protection, SecurityPolicy, SystemTitle};

pub const DEVICE: SystemTitle = SystemTitle::new(*b"\x00\x11\x22\x33\x44\x55\x66\x77");
pub const CLIENT_TITLE: SystemTitle = SystemTitle::new(*b"DCO\x00\x00\x00\x00\x01");

pub fn id(role: KeyRole, generation: u32) -> RecordId {
    RecordId {
        device: DEVICE,
        client: if role == KeyRole::Master {
            None
        } else {
            Some(Client::Management)
        },
        role,
        generation,
    }
}

/// A clear MK and its record, packaged by the reference.
pub fn master(reference: &SoftwareDco) -> (MasterKey, PackagedKey<MasterKey>) {
    let bytes = super::random_key();
    let record = reference
        .package(&MasterKey::from_bytes(bytes), id(KeyRole::Master, 0))
        .unwrap();
    (MasterKey::from_bytes(bytes), record)
}

/// Every record `p` makes, the reference checks, and the other way round;
/// a flipped octet anywhere fails the check.
pub fn records_cross_check<P: DcoProvider>(p: &P, reference: &SoftwareDco) {
    let mut rng = getrandom::SysRng;
    assert_eq!(
        p.dco_key_check_value().unwrap(),
        reference.dco_key_check_value().unwrap()
    );
    assert_eq!(
        p.shared_key_check_value().unwrap(),
        reference.shared_key_check_value().unwrap()
    );
    let ak: PackagedKey<AuthenticationKey> = p
        .generate(&mut rng, id(KeyRole::Authentication, 1))
        .unwrap();
    let guek: PackagedKey<GlobalUnicastEncryptionKey> = p
        .generate(&mut rng, id(KeyRole::GlobalUnicastEncryption, 1))
        .unwrap();
    let mk: PackagedKey<MasterKey> = p.generate(&mut rng, id(KeyRole::Master, 1)).unwrap();
    reference.verify(&ak).unwrap();
    reference.verify(&guek).unwrap();
    reference.verify(&mk).unwrap();
    p.verify(&ak).unwrap();
    p.verify(&guek).unwrap();
    let (_, by_reference) = master(reference);
    p.verify(&by_reference).unwrap();
    // Two generations differ (the token's RNG, not a constant).
    let again: PackagedKey<GlobalUnicastEncryptionKey> = p
        .generate(&mut rng, id(KeyRole::GlobalUnicastEncryption, 1))
        .unwrap();
    assert_ne!(again.record().ciphertext(), guek.record().ciphertext());
    // Tampering: every octet of the record, one bit each.
    for i in 0..guek.record().as_bytes().len() {
        let mut bytes = *guek.record().as_bytes();
        bytes[i] ^= 0x01;
        let Ok(parsed) = dlms_sec::key::package::PackagedRecord::parse(&bytes) else {
            continue;
        };
        let Ok(typed) = parsed.typed::<GlobalUnicastEncryptionKey>() else {
            continue;
        };
        assert!(
            p.verify(&typed).is_err(),
            "octet {i} flipped, record accepted"
        );
    }
    // A record under another KEK is named as such before any decryption.
    let other = SoftwareDco::new(
        &dlms_sec::key::DcoKey::from_bytes(super::random_key()),
        &dlms_sec::key::SharedKey::from_bytes(super::random_key()),
    );
    let foreign: PackagedKey<GlobalUnicastEncryptionKey> = other
        .generate(&mut rng, id(KeyRole::GlobalUnicastEncryption, 0))
        .unwrap();
    assert_eq!(p.verify(&foreign), Err(Error::Key(KeyError::WrongKek)));
}

/// key_transfer: the provider's wrapped keys equal the reference's for the
/// same records, and generate_for_transfer's key unwraps under the MK to
/// the key its record packages.
pub fn transfer_matches<P: DcoProvider>(p: &P, reference: &SoftwareDco) {
    let mut rng = getrandom::SysRng;
    let (mk, mk_record) = master(reference);
    let guek: PackagedKey<GlobalUnicastEncryptionKey> = reference
        .generate(&mut rng, id(KeyRole::GlobalUnicastEncryption, 2))
        .unwrap();
    let ak: PackagedKey<AuthenticationKey> = reference
        .generate(&mut rng, id(KeyRole::Authentication, 2))
        .unwrap();
    assert_eq!(
        p.wrap_for_transfer(&mk_record, &guek).unwrap(),
        reference.wrap_for_transfer(&mk_record, &guek).unwrap()
    );
    assert_eq!(
        p.wrap_for_transfer(&mk_record, &ak).unwrap(),
        reference.wrap_for_transfer(&mk_record, &ak).unwrap()
    );
    check_generated::<P, GlobalUnicastEncryptionKey>(p, reference, &mk, &mk_record);
    check_generated::<P, AuthenticationKey>(p, reference, &mk, &mk_record);
    check_generated::<P, MasterKey>(p, reference, &mk, &mk_record);
    // Another device's MK is refused.
    let mut other = id(KeyRole::GlobalUnicastEncryption, 3);
    other.device = CLIENT_TITLE;
    assert!(matches!(
        p.generate_for_transfer::<GlobalUnicastEncryptionKey, _>(&mut rng, &mk_record, other),
        Err(Error::Misuse(_))
    ));
}

fn check_generated<P, K>(
    p: &P,
    reference: &SoftwareDco,
    mk: &MasterKey,
    mk_record: &PackagedKey<MasterKey>,
) where
    P: DcoProvider + CryptoProvider<K::Kek>,
    K: TransferableKey,
    SoftwareDco: CryptoProvider<K::Kek>,
{
    let mut rng = getrandom::SysRng;
    let (record, wrapped) = p
        .generate_for_transfer::<K, _>(&mut rng, mk_record, id(K::ROLE, 7))
        .unwrap();
    // What the meter will install is the key the record packages.
    let key: K = wrap::unwrap(mk, &wrapped).unwrap();
    assert_eq!(reference.package(&key, id(K::ROLE, 7)).unwrap(), record);
    assert_eq!(
        reference.wrap_for_transfer(mk_record, &record).unwrap(),
        wrapped
    );
}

fn forms() -> [CipheredForm<'static>; 3] {
    [
        CipheredForm::ServiceSpecific,
        CipheredForm::General {
            with_system_title: true,
        },
        CipheredForm::General {
            with_system_title: false,
        },
    ]
}

/// Protect and unprotect agree with the reference both ways, for every
/// protection, form and key kind, and refuse tampered frames without
/// leaving plaintext.
pub fn frames_match<P: DcoProvider>(p: &P, reference: &SoftwareDco) {
    let mut rng = getrandom::SysRng;
    let ak: PackagedKey<AuthenticationKey> = reference
        .generate(&mut rng, id(KeyRole::Authentication, 0))
        .unwrap();
    let guek: PackagedKey<GlobalUnicastEncryptionKey> = reference
        .generate(&mut rng, id(KeyRole::GlobalUnicastEncryption, 0))
        .unwrap();
    let gbek: PackagedKey<GlobalBroadcastEncryptionKey> = reference
        .generate(&mut rng, id(KeyRole::GlobalBroadcastEncryption, 0))
        .unwrap();
    let dk: PackagedKey<DedicatedKey> = reference
        .generate(&mut rng, id(KeyRole::Dedicated, 0))
        .unwrap();
    let encryption = [
        EncryptionRecord::GlobalUnicast(&guek),
        EncryptionRecord::GlobalBroadcast(&gbek),
        EncryptionRecord::Dedicated(&dk),
    ];
    let mut ic = 1u32;
    for enc in encryption {
        let keys = CommandKeys {
            ak: &ak,
            encryption: enc,
        };
        for protection in [
            Protection::AuthenticatedEncrypted,
            Protection::Authenticated,
            Protection::Encrypted,
        ] {
            for form in forms() {
                for len in [1usize, 15, 16, 17, 64, 300] {
                    ic = ic.wrapping_add(1);
                    let mut apdu = vec![0u8; len];
                    apdu[0] = 0xC0; // get-request
                    for (i, b) in apdu.iter_mut().enumerate().skip(1) {
                        *b = (i as u8).wrapping_mul(31);
                    }
                    let req = Protect {
                        protection,
                        key: enc.kind(),
                        form,
                        system_title: CLIENT_TITLE,
                    };
                    let mut ours = vec![0u8; len + 64];
                    let mut theirs = vec![0u8; len + 64];
                    let n = p
                        .protect(
                            &keys,
                            &req,
                            &mut SingleUse::dangerous_new(InvocationCounter::new(ic)),
                            &apdu,
                            &mut ours,
                        )
                        .unwrap();
                    let m = reference
                        .protect(
                            &keys,
                            &req,
                            &mut SingleUse::dangerous_new(InvocationCounter::new(ic)),
                            &apdu,
                            &mut theirs,
                        )
                        .unwrap();
                    assert_eq!(ours[..n], theirs[..m], "{protection:?} {form:?} {len}");
                    let policy = match protection {
                        Protection::AuthenticatedEncrypted => {
                            SecurityPolicy::AuthenticatedEncrypted
                        }
                        Protection::Authenticated => SecurityPolicy::Authenticated,
                        Protection::Encrypted => SecurityPolicy::Encrypted,
                    };
                    let un = Unprotect {
                        peer_system_title: PeerTitle::Expected(CLIENT_TITLE),
                        policy,
                    };
                    let opened = p.unprotect(&keys, &mut theirs[..m], &un).unwrap();
                    assert_eq!(opened.apdu(), &apdu[..]);
                    if protection.is_authenticated() {
                        // Tamper with the last octet (the tag): refused, and
                        // the buffer holds no plaintext.
                        let mut bad = ours[..n].to_vec();
                        *bad.last_mut().unwrap() ^= 0x80;
                        let before = bad.clone();
                        let got = p.unprotect(&keys, &mut bad, &un);
                        assert!(matches!(got, Err(Error::Auth(_))), "{got:?}");
                        assert_eq!(bad, before, "buffer changed after a failed check");
                    }
                }
            }
        }
    }
    // Keys of different clients do not make a command.
    let mut other = id(KeyRole::GlobalUnicastEncryption, 0);
    other.client = Some(Client::Firmware);
    let other: PackagedKey<GlobalUnicastEncryptionKey> =
        reference.generate(&mut rng, other).unwrap();
    let keys = CommandKeys {
        ak: &ak,
        encryption: EncryptionRecord::GlobalUnicast(&other),
    };
    let req = Protect::unicast(Protection::AuthenticatedEncrypted, CLIENT_TITLE);
    let mut out = [0u8; 64];
    assert!(matches!(
        p.protect(
            &keys,
            &req,
            &mut SingleUse::dangerous_new(InvocationCounter::new(9)),
            &[0xC0, 1],
            &mut out
        ),
        Err(Error::Misuse(_))
    ));
}

/// What a Shared-Key holder does with an encryption-only frame.
pub fn decrypt_unauthenticated_matches<P: CryptoProvider<dlms_sec::key::SharedKey>>(
    p: &P,
    reference: &SoftwareDco,
) {
    let mut rng = getrandom::SysRng;
    let ak: PackagedKey<AuthenticationKey> = reference
        .generate(&mut rng, id(KeyRole::Authentication, 0))
        .unwrap();
    let guek: PackagedKey<GlobalUnicastEncryptionKey> = reference
        .generate(&mut rng, id(KeyRole::GlobalUnicastEncryption, 0))
        .unwrap();
    let keys = CommandKeys {
        ak: &ak,
        encryption: EncryptionRecord::GlobalUnicast(&guek),
    };
    let apdu: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(7)).chain([0]).collect();
    let mut apdu = apdu;
    apdu[0] = 0xC4; // get-response
    for protection in [Protection::Encrypted, Protection::AuthenticatedEncrypted] {
        let req = Protect::unicast(protection, DEVICE);
        let mut frame = [0u8; 160];
        let n = reference
            .protect(
                &keys,
                &req,
                &mut SingleUse::dangerous_new(InvocationCounter::new(5)),
                &apdu,
                &mut frame,
            )
            .unwrap();
        let got = p.decrypt_unauthenticated(&guek, &mut frame[..n], PeerTitle::Expected(DEVICE));
        if protection == Protection::Encrypted {
            assert_eq!(got.unwrap().apdu(), &apdu[..]);
        } else {
            assert_eq!(got.unwrap_err(), Error::Key(KeyError::Refused));
        }
    }
}

/// The whole suite.
pub fn run<P: DcoProvider>(p: &P, reference: &SoftwareDco) {
    records_cross_check(p, reference);
    transfer_matches(p, reference);
    frames_match(p, reference);
    decrypt_unauthenticated_matches(p, reference);
}
