//! Key roles, RFC 3394 key wrap, packaged-key records and the software
//! crypto providers (R-01..R-08, R-11..R-13, R-15, R-17).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    reason = "test code: a panic is a failed test"
)]

mod common;

use aes_kw::cipher::KeyInit;
use common::{BrokenRng, TestRng, arr, hex, vectors};
use dlms_sec::counter::SingleUse;
use dlms_sec::error::KeyError;
use dlms_sec::key::package::{KeyCheckValue, PackagedRecord, Packager, RECORD_LEN, RecordId};
use dlms_sec::key::wrap::{self, WrappedKey};
use dlms_sec::key::{
    AuthenticationKey, DcoKey, DedicatedKey, GlobalBroadcastEncryptionKey,
    GlobalUnicastEncryptionKey, KeyRole, MasterKey, SharedKey,
};
use dlms_sec::provider::{
    CommandKeys, CryptoProvider, DcoProvider, EncryptionRecord, SoftwareDco, SoftwareS1sp,
};
use dlms_sec::suite0::PeerTitle;
use dlms_sec::suite0::{Protect, Suite0, Unprotect};
use dlms_sec::types::Client;
use dlms_sec::{
    AuthError, Error, InvocationCounter, KeyKind, Protection, SecurityPolicy, SystemTitle,
};
use proptest::prelude::*;

const DEVICE: SystemTitle = SystemTitle::new([0x4D, 0x4D, 0x4D, 0x00, 0x00, 0xBC, 0x61, 0x4E]);

fn id(role: KeyRole, client: Option<Client>, generation: u32) -> RecordId {
    RecordId {
        device: DEVICE,
        client,
        role,
        generation,
    }
}

#[test]
fn rfc3394_and_nist_key_wrap_vectors() {
    let vs = vectors("key-wrap");
    assert_eq!(vs.len(), 7);
    let mut through_our_api = 0;
    for v in vs {
        let kek = hex(&v, "kek");
        let key = hex(&v, "key_data");
        let wrapped = hex(&v, "wrapped");
        if kek.len() == 16 && key.len() == 16 {
            // Suite 0: a 128-bit MK wrapping a 128-bit key, through our API.
            let mk = MasterKey::from_slice(&kek).unwrap();
            let k = GlobalUnicastEncryptionKey::from_slice(&key).unwrap();
            let w = wrap::wrap(&mk, &k);
            assert_eq!(&w.as_bytes()[..], &wrapped[..], "{}", v["id"]);
            let back: GlobalUnicastEncryptionKey =
                wrap::unwrap(&mk, &WrappedKey::new(wrapped.clone().try_into().unwrap())).unwrap();
            assert_eq!(wrap::wrap(&mk, &back), w);
            through_our_api += 1;
        } else {
            // 192/256-bit KEKs and 256-bit keys are not suite 0: check the
            // vector itself against aes-kw.
            let mut out = vec![0u8; key.len() + 8];
            match kek.len() {
                16 => aes_kw::KwAes128::new(kek.as_slice().try_into().unwrap())
                    .wrap_key(&key, &mut out)
                    .unwrap(),
                24 => aes_kw::KwAes192::new(kek.as_slice().try_into().unwrap())
                    .wrap_key(&key, &mut out)
                    .unwrap(),
                _ => aes_kw::KwAes256::new(kek.as_slice().try_into().unwrap())
                    .wrap_key(&key, &mut out)
                    .unwrap(),
            };
            assert_eq!(out, wrapped, "{}", v["id"]);
        }
    }
    assert_eq!(through_our_api, 3);
}

#[test]
fn unwrap_must_fail_on_any_flipped_bit_and_on_the_wrong_mk() {
    // The vector file has no must-fail unwrap (every key-wrap entry is
    // "ok"), so the negatives are made here from RFC 3394 §4.1.
    let mk =
        MasterKey::from_bytes(*b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0A\x0B\x0C\x0D\x0E\x0F");
    let good: [u8; 24] = hex::decode("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5")
        .unwrap()
        .try_into()
        .unwrap();
    assert!(wrap::unwrap::<AuthenticationKey>(&mk, &WrappedKey::new(good)).is_ok());
    for bit in 0..192 {
        let mut bad = good;
        bad[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            wrap::unwrap::<AuthenticationKey>(&mk, &WrappedKey::new(bad)).unwrap_err(),
            Error::Auth(AuthError)
        );
    }
    let other = MasterKey::from_bytes([0x0F; 16]);
    assert!(wrap::unwrap::<MasterKey>(&other, &WrappedKey::new(good)).is_err());
}

#[test]
fn ecb_vectors_are_the_record_ciphertext() {
    for v in vectors("ecb") {
        let p = Packager::new(&SharedKey::from_bytes(arr(&v, "key")));
        let key = GlobalUnicastEncryptionKey::from_bytes(arr(&v, "plaintext"));
        let rec = p
            .package(
                &key,
                id(
                    KeyRole::GlobalUnicastEncryption,
                    Some(Client::Management),
                    0,
                ),
            )
            .unwrap();
        assert_eq!(
            &rec.record().as_bytes()[18..34],
            &hex(&v, "ciphertext")[..],
            "{}",
            v["id"]
        );
        // The KCV is the first three octets of E(KEK, 0).
        if v["id"] == "nist-aesavs-ecbvarkey128-c0" {
            assert_eq!(p.kek_check_value(), KeyCheckValue([0x0E, 0xDD, 0x33]));
        }
    }
}

macro_rules! round_trip {
    ($packager:expr, $ty:ty, $role:expr, $client:expr) => {{
        let p = $packager;
        let key = <$ty>::from_bytes([0x5A; 16]);
        let rec = p.package(&key, id($role, $client, 7)).unwrap();
        assert_eq!(rec.id(), id($role, $client, 7));
        let parsed = PackagedRecord::parse(rec.record().as_bytes()).unwrap();
        let typed = parsed.typed::<$ty>().unwrap();
        let back = p.unpackage(&typed).unwrap();
        // Same key: packaging it again gives the same record.
        assert_eq!(p.package(&back, id($role, $client, 7)).unwrap(), rec);
        rec.record().clone()
    }};
}

#[test]
fn packaging_round_trips_for_every_allowed_role_and_kek() {
    let dco = Packager::new(&DcoKey::from_bytes([1; 16]));
    let shared = Packager::new(&SharedKey::from_bytes([2; 16]));
    let records = [
        round_trip!(&dco, MasterKey, KeyRole::Master, None),
        round_trip!(
            &dco,
            AuthenticationKey,
            KeyRole::Authentication,
            Some(Client::Firmware)
        ),
        round_trip!(
            &shared,
            GlobalUnicastEncryptionKey,
            KeyRole::GlobalUnicastEncryption,
            Some(Client::DataCollection)
        ),
        round_trip!(
            &shared,
            GlobalBroadcastEncryptionKey,
            KeyRole::GlobalBroadcastEncryption,
            Some(Client::ExtendedDataCollection)
        ),
        round_trip!(
            &shared,
            DedicatedKey,
            KeyRole::Dedicated,
            Some(Client::Management)
        ),
    ];
    // A record of one role cannot be read as another.
    assert_eq!(
        records[0].typed::<AuthenticationKey>().unwrap_err(),
        Error::Key(KeyError::RoleMismatch {
            expected: KeyRole::Authentication,
            found: KeyRole::Master
        })
    );
    // Wrong KEK: named by the check value.
    let other = Packager::new(&DcoKey::from_bytes([9; 16]));
    assert_eq!(
        other
            .unpackage(&records[0].typed::<MasterKey>().unwrap())
            .unwrap_err(),
        Error::Key(KeyError::WrongKek)
    );
}

#[test]
fn clients_must_fit_the_role() {
    let dco = Packager::new(&DcoKey::from_bytes([1; 16]));
    let mk = MasterKey::from_bytes([3; 16]);
    let ak = AuthenticationKey::from_bytes([4; 16]);
    for bad in [
        dco.package(&mk, id(KeyRole::Master, Some(Client::Management), 0))
            .map(drop),
        dco.package(&ak, id(KeyRole::Authentication, None, 0))
            .map(drop),
        dco.package(&ak, id(KeyRole::Authentication, Some(Client::Public), 0))
            .map(drop),
    ] {
        assert_eq!(bad, Err(Error::Key(KeyError::InvalidClient)));
    }
    assert!(matches!(
        dco.package(&ak, id(KeyRole::Master, None, 0)),
        Err(Error::Key(KeyError::RoleMismatch { .. }))
    ));
}

#[test]
fn every_single_bit_of_a_record_is_protected() {
    let dco = Packager::new(&DcoKey::from_bytes([1; 16]));
    let shared = Packager::new(&SharedKey::from_bytes([2; 16]));
    let ak = dco
        .package(
            &AuthenticationKey::from_bytes([0xAB; 16]),
            id(KeyRole::Authentication, Some(Client::Management), 3),
        )
        .unwrap();
    let guek = shared
        .package(
            &GlobalUnicastEncryptionKey::from_bytes([0xCD; 16]),
            id(
                KeyRole::GlobalUnicastEncryption,
                Some(Client::Management),
                3,
            ),
        )
        .unwrap();
    for bit in 0..RECORD_LEN * 8 {
        let mut b = *ak.record().as_bytes();
        b[bit / 8] ^= 1 << (bit % 8);
        let verdict = PackagedRecord::parse(&b)
            .and_then(PackagedRecord::typed::<AuthenticationKey>)
            .and_then(|r| dco.unpackage(&r).map(drop));
        assert!(verdict.is_err(), "bit {bit} of an AK record went unnoticed");
        let mut b = *guek.record().as_bytes();
        b[bit / 8] ^= 1 << (bit % 8);
        let verdict = PackagedRecord::parse(&b)
            .and_then(PackagedRecord::typed::<GlobalUnicastEncryptionKey>)
            .and_then(|r| shared.unpackage(&r).map(drop));
        assert!(
            verdict.is_err(),
            "bit {bit} of a GUEK record went unnoticed"
        );
    }
    // A record moved to another device, or another generation, fails its check.
    let mut moved = *guek.record().as_bytes();
    moved[6..14].copy_from_slice(&[0x11; 8]);
    let r = PackagedRecord::parse(&moved)
        .unwrap()
        .typed::<GlobalUnicastEncryptionKey>()
        .unwrap();
    assert_eq!(
        shared.unpackage(&r).unwrap_err(),
        Error::Key(KeyError::Corrupted)
    );
    // Lengths and versions.
    assert!(PackagedRecord::parse(&guek.record().as_bytes()[..41]).is_err());
    let mut longer = guek.record().as_bytes().to_vec();
    longer.push(0);
    assert!(PackagedRecord::parse(&longer).is_err());
    let mut v2 = *guek.record().as_bytes();
    v2[0] = 2;
    assert_eq!(
        PackagedRecord::parse(&v2).unwrap_err(),
        Error::Key(KeyError::UnsupportedVersion(2))
    );
}

#[test]
fn debug_output_carries_no_key_material() {
    let shared = Packager::new(&SharedKey::from_bytes([0x77; 16]));
    let rec = shared
        .package(
            &DedicatedKey::from_bytes([0x99; 16]),
            id(KeyRole::Dedicated, Some(Client::Management), 1),
        )
        .unwrap();
    let text = format!(
        "{rec:?} {shared:?} {:?} {:?}",
        SharedKey::from_bytes([0x77; 16]),
        wrap::wrap(
            &MasterKey::from_bytes([1; 16]),
            &MasterKey::from_bytes([2; 16])
        )
    );
    let ct = hex::encode_upper(&rec.record().as_bytes()[18..34]);
    assert!(
        !text.contains("119") && !text.contains("153") && !text.contains(&ct),
        "{text}"
    );
}

#[test]
fn generation_draws_from_the_rng_and_fails_closed() {
    let mut rng = TestRng::new(1);
    let a = GlobalUnicastEncryptionKey::generate(&mut rng).unwrap();
    let b = GlobalUnicastEncryptionKey::generate(&mut rng).unwrap();
    let shared = Packager::new(&SharedKey::from_bytes([2; 16]));
    let ra = shared
        .package(
            &a,
            id(
                KeyRole::GlobalUnicastEncryption,
                Some(Client::Management),
                1,
            ),
        )
        .unwrap();
    let rb = shared
        .package(
            &b,
            id(
                KeyRole::GlobalUnicastEncryption,
                Some(Client::Management),
                1,
            ),
        )
        .unwrap();
    assert_ne!(
        ra.record().as_bytes()[18..34],
        rb.record().as_bytes()[18..34]
    );
    assert_eq!(
        AuthenticationKey::generate(&mut BrokenRng).unwrap_err(),
        Error::Rng
    );
    let dco = SoftwareDco::new(
        &DcoKey::from_bytes([1; 16]),
        &SharedKey::from_bytes([2; 16]),
    );
    assert_eq!(
        dco.generate::<MasterKey, _>(&mut BrokenRng, id(KeyRole::Master, None, 1))
            .unwrap_err(),
        Error::Rng
    );
}

fn command_fixture() -> (
    SoftwareDco,
    dlms_sec::key::package::PackagedKey<AuthenticationKey>,
    dlms_sec::key::package::PackagedKey<GlobalUnicastEncryptionKey>,
) {
    let dco = SoftwareDco::new(
        &DcoKey::from_bytes([1; 16]),
        &SharedKey::from_bytes([2; 16]),
    );
    let ak = dco
        .package(
            &AuthenticationKey::from_bytes([0xD0; 16]),
            id(KeyRole::Authentication, Some(Client::Management), 1),
        )
        .unwrap();
    let guek = dco
        .package(
            &GlobalUnicastEncryptionKey::from_bytes([0x0E; 16]),
            id(
                KeyRole::GlobalUnicastEncryption,
                Some(Client::Management),
                1,
            ),
        )
        .unwrap();
    (dco, ak, guek)
}

#[test]
fn dco_command_path_matches_clear_keys() {
    let (dco, ak, guek) = command_fixture();
    let keys = CommandKeys {
        ak: &ak,
        encryption: EncryptionRecord::GlobalUnicast(&guek),
    };
    let req = Protect::unicast(Protection::AuthenticatedEncrypted, DEVICE);
    let apdu = [
        0xC0, 0x01, 0xC1, 0x00, 0x08, 0, 0, 1, 0, 0, 0xFF, 0x02, 0x00,
    ];
    let mut ours = [0u8; 64];
    let n = dco
        .protect(
            &keys,
            &req,
            &mut SingleUse::dangerous_new(InvocationCounter::new(9)),
            &apdu,
            &mut ours,
        )
        .unwrap();
    let clear = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes([0x0E; 16]),
        &AuthenticationKey::from_bytes([0xD0; 16]),
    );
    let mut theirs = [0u8; 64];
    let m = clear
        .protect(
            &req,
            &mut SingleUse::dangerous_new(InvocationCounter::new(9)),
            &apdu,
            &mut theirs,
        )
        .unwrap();
    assert_eq!(ours[..n], theirs[..m]);
    let params = Unprotect {
        peer_system_title: PeerTitle::Expected(DEVICE),
        policy: SecurityPolicy::AuthenticatedEncrypted,
    };
    assert_eq!(
        dco.unprotect(&keys, &mut ours[..n], &params)
            .unwrap()
            .apdu(),
        &apdu
    );
    // The request must name the record's key.
    let wrong = Protect {
        key: KeyKind::Dedicated,
        ..req
    };
    assert!(matches!(
        dco.protect(
            &keys,
            &wrong,
            &mut SingleUse::dangerous_new(InvocationCounter::new(10)),
            &apdu,
            &mut ours
        ),
        Err(Error::Misuse(_))
    ));
}

#[test]
fn dco_refuses_records_of_different_devices() {
    let (dco, ak, _) = command_fixture();
    let other = dco
        .package(
            &GlobalUnicastEncryptionKey::from_bytes([0x0E; 16]),
            RecordId {
                device: SystemTitle::new([1; 8]),
                client: Some(Client::Management),
                role: KeyRole::GlobalUnicastEncryption,
                generation: 1,
            },
        )
        .unwrap();
    let keys = CommandKeys {
        ak: &ak,
        encryption: EncryptionRecord::GlobalUnicast(&other),
    };
    let mut f = [0u8; 40];
    assert!(matches!(
        dco.unprotect(
            &keys,
            &mut f,
            &Unprotect {
                peer_system_title: PeerTitle::CarriedByFrame,
                policy: SecurityPolicy::AcceptAnyProtection
            }
        ),
        Err(Error::Misuse(_))
    ));
}

#[test]
fn dco_command_path_detects_corrupt_records() {
    let (dco, ak, guek) = command_fixture();
    let req = Protect::unicast(Protection::AuthenticatedEncrypted, DEVICE);
    let apdu = [
        0xC0, 0x01, 0xC1, 0x00, 0x08, 0, 0, 1, 0, 0, 0xFF, 0x02, 0x00,
    ];
    for (which, at) in [(0, 20), (0, 40), (1, 20), (1, 41), (1, 16)] {
        let mut ak_bytes = *ak.record().as_bytes();
        let mut guek_bytes = *guek.record().as_bytes();
        if which == 0 {
            ak_bytes[at] ^= 0x01;
        } else {
            guek_bytes[at] ^= 0x01;
        }
        let ak2 = PackagedRecord::parse(&ak_bytes)
            .unwrap()
            .typed::<AuthenticationKey>()
            .unwrap();
        let guek2 = PackagedRecord::parse(&guek_bytes)
            .unwrap()
            .typed::<GlobalUnicastEncryptionKey>()
            .unwrap();
        let keys = CommandKeys {
            ak: &ak2,
            encryption: EncryptionRecord::GlobalUnicast(&guek2),
        };
        let mut out = [0u8; 64];
        assert_eq!(
            dco.protect(
                &keys,
                &req,
                &mut SingleUse::dangerous_new(InvocationCounter::new(1)),
                &apdu,
                &mut out
            )
            .unwrap_err(),
            Error::Key(KeyError::Corrupted),
            "record {which} byte {at}"
        );
        assert_eq!(out, [0u8; 64], "nothing written");
        let mut frame = [0u8; 40];
        assert_eq!(
            dco.unprotect(
                &keys,
                &mut frame,
                &Unprotect {
                    peer_system_title: PeerTitle::CarriedByFrame,
                    policy: SecurityPolicy::AcceptAnyProtection
                }
            )
            .unwrap_err(),
            Error::Key(KeyError::Corrupted)
        );
    }
    // Records under another Shared Key are named as such.
    let other = SoftwareDco::new(
        &DcoKey::from_bytes([1; 16]),
        &SharedKey::from_bytes([3; 16]),
    );
    let keys = CommandKeys {
        ak: &ak,
        encryption: EncryptionRecord::GlobalUnicast(&guek),
    };
    let mut out = [0u8; 64];
    assert_eq!(
        other
            .protect(
                &keys,
                &req,
                &mut SingleUse::dangerous_new(InvocationCounter::new(1)),
                &apdu,
                &mut out
            )
            .unwrap_err(),
        Error::Key(KeyError::WrongKek)
    );
}

#[test]
fn wrap_for_transfer_matches_clear_wrap() {
    let (dco, ak, guek) = command_fixture();
    let mk = dco
        .package(
            &MasterKey::from_bytes([0x33; 16]),
            id(KeyRole::Master, None, 0),
        )
        .unwrap();
    let clear_mk = MasterKey::from_bytes([0x33; 16]);
    assert_eq!(
        dco.wrap_for_transfer(&mk, &guek).unwrap(),
        wrap::wrap(
            &clear_mk,
            &GlobalUnicastEncryptionKey::from_bytes([0x0E; 16])
        )
    );
    assert_eq!(
        dco.wrap_for_transfer(&mk, &ak).unwrap(),
        wrap::wrap(&clear_mk, &AuthenticationKey::from_bytes([0xD0; 16]))
    );
    assert_eq!(
        dco.wrap_for_transfer(&mk, &mk).unwrap(),
        wrap::wrap(&clear_mk, &MasterKey::from_bytes([0x33; 16]))
    );
    // An S1SP provider checks GUEK records and nothing else.
    let s1sp = SoftwareS1sp::new(&SharedKey::from_bytes([2; 16]));
    assert!(s1sp.verify(&guek).is_ok());
    assert_eq!(
        s1sp.kek_check_value().unwrap(),
        dco.shared_key_check_value().unwrap()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn random_keys_package_and_wrap(kek: [u8; 16], key: [u8; 16], mk: [u8; 16], title: [u8; 8], generation: u32) {
        let p = Packager::new(&SharedKey::from_bytes(kek));
        let rid = RecordId { device: SystemTitle::new(title), client: Some(Client::DataCollection), role: KeyRole::Dedicated, generation };
        let rec = p.package(&DedicatedKey::from_bytes(key), rid).unwrap();
        let back = p.unpackage(&PackagedRecord::parse(rec.record().as_bytes()).unwrap().typed::<DedicatedKey>().unwrap()).unwrap();
        prop_assert_eq!(p.package(&back, rid).unwrap(), rec);
        let mk = MasterKey::from_bytes(mk);
        let w = wrap::wrap(&mk, &GlobalBroadcastEncryptionKey::from_bytes(key));
        let k: GlobalBroadcastEncryptionKey = wrap::unwrap(&mk, &w).unwrap();
        prop_assert_eq!(wrap::wrap(&mk, &k), w);
    }
}

#[test]
fn generated_keys_are_distinct_per_client_and_device() {
    // generation never reuses a key across clients or devices.
    let dco = SoftwareDco::new(
        &DcoKey::from_bytes([1; 16]),
        &SharedKey::from_bytes([2; 16]),
    );
    let mut rng = TestRng::new(7);
    let mut seen = std::collections::HashSet::new();
    for device in 0..4u8 {
        for client in Client::KEYED {
            let rid = RecordId {
                device: SystemTitle::new([device; 8]),
                client: Some(client),
                role: KeyRole::GlobalUnicastEncryption,
                generation: 1,
            };
            let rec = dco
                .generate::<GlobalUnicastEncryptionKey, _>(&mut rng, rid)
                .unwrap();
            assert!(seen.insert(rec.record().as_bytes()[18..34].to_vec()));
            assert!(dco.verify(&rec).is_ok());
        }
    }
}

#[test]
fn a_record_reads_back_its_fields_and_says_what_it_is() {
    let shared = Packager::new(&SharedKey::from_bytes([0x77; 16]));
    let a = shared
        .package(
            &DedicatedKey::from_bytes([0x99; 16]),
            id(KeyRole::Dedicated, Some(Client::Management), 1),
        )
        .unwrap();
    let b = shared
        .package(
            &DedicatedKey::from_bytes([0x98; 16]),
            id(KeyRole::Dedicated, Some(Client::Management), 1),
        )
        .unwrap();
    let bytes = a.record().as_bytes();
    assert_eq!(a.record().ciphertext()[..], bytes[18..34]);
    assert_eq!(a.record().check_value()[..], bytes[34..42]);
    // Records of two keys are told apart, by Eq and by their hash.
    let same = a;
    assert!(a == same && a != b);
    let state = std::hash::RandomState::new();
    assert_ne!(
        std::hash::BuildHasher::hash_one(&state, a),
        std::hash::BuildHasher::hash_one(&state, b)
    );
    // Debug names the record's identity (a typed record shows its record),
    // and the packager its KEK's check value, never key octets.
    for text in [format!("{:?}", a.record()), format!("{a:?}")] {
        assert!(text.starts_with("PackagedRecord"), "{text}");
        assert!(
            text.contains("Dedicated") && text.contains("generation: 1"),
            "{text}"
        );
    }
    let text = format!("{shared:?}");
    assert!(
        text.starts_with("Packager") && text.contains("Shared"),
        "{text}"
    );
    // The key a record packages passes its check; another does not.
    assert_eq!(a.check_key(&DedicatedKey::from_bytes([0x99; 16])), Ok(()));
    assert_eq!(
        a.check_key(&DedicatedKey::from_bytes([0x98; 16])),
        Err(KeyError::Corrupted.into())
    );
}

#[test]
fn a_record_of_any_other_length_is_refused_by_kind() {
    let shared = Packager::new(&SharedKey::from_bytes([0x77; 16]));
    let rec = shared
        .package(
            &DedicatedKey::from_bytes([0x99; 16]),
            id(KeyRole::Dedicated, Some(Client::Management), 1),
        )
        .unwrap();
    let bytes = rec.record().as_bytes();
    assert_eq!(
        PackagedRecord::parse(&bytes[..RECORD_LEN - 1]),
        Err(Error::Wire(dlms_sec::error::WireError::Truncated))
    );
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert_eq!(
        PackagedRecord::parse(&longer),
        Err(Error::Wire(dlms_sec::error::WireError::TrailingBytes))
    );
    assert_eq!(
        PackagedRecord::parse(bytes).map(|r| *r.as_bytes()),
        Ok(*bytes)
    );
}
