//! The PKCS#11 provider on SoftHSM2: KEK handling, the
//! vectors through the token path, setup errors, threads and a token that
//! fails underneath a provider.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    reason = "test code: a panic is a failed test"
)]

mod support;

use dlms_sec::suite0::PeerTitle;
use std::sync::Arc;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use dlms_sec::counter::SingleUse;
use dlms_sec::error::{Error, KeyError};
use dlms_sec::key::package::{PackagedKey, Packager, RecordId};
use dlms_sec::key::{
    AuthenticationKey, DcoKey, DedicatedKey, GlobalUnicastEncryptionKey, KeyRole, SharedKey,
};
use dlms_sec::provider::{CommandKeys, CryptoProvider, DcoProvider, EncryptionRecord};
use dlms_sec::suite0::{Protect, Unprotect};
use dlms_sec::types::Client;
use dlms_sec::wire::CipheredForm;
use dlms_sec::{InvocationCounter, KeyKind, Protection, SecurityPolicy, SystemTitle};
use dlms_sec_pkcs11::{
    HsmDco, HsmS1sp, KekRole, KeystreamPath, PackagePath, Pin, Pkcs11Config, Pkcs11Error, Token,
    UnpackPath,
};
use serde_json::Value;
use support::suite::id;

fn vectors(kind: &str) -> Vec<Value> {
    let all: Vec<Value> =
        serde_json::from_str(include_str!("../../vectors/suite0-vectors.json")).unwrap();
    all.into_iter().filter(|v| v["kind"] == kind).collect()
}

fn hex(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(v[field].as_str().unwrap()).unwrap()
}

fn arr<const N: usize>(v: &Value, field: &str) -> [u8; N] {
    hex(v, field).try_into().unwrap()
}

fn raw_session() -> cryptoki::session::Session {
    support::raw_session()
}

#[test]
fn softhsm2_takes_the_host_decrypt_and_cbc_wrap_paths() {
    let _serial = support::serial();
    let caps = support::token().capabilities();
    // SoftHSM2 2.6: AES-ECB encrypt/decrypt only, AES-CBC wrap only.
    if support::module().to_string_lossy().contains("softhsm") {
        assert_eq!(caps.unpack, UnpackPath::HostDecrypt);
        assert_eq!(caps.package, PackagePath::WrapCbcZeroIv);
        assert_eq!(caps.keystream, KeystreamPath::Ctr);
    }
    let shown = format!("{:?}", support::token());
    assert!(shown.contains("capabilities"), "{shown}");
}

#[test]
fn kek_check_values_are_computed_in_the_token_and_match_software() {
    let _serial = support::serial();
    let pair = support::pair();
    let dco = Packager::new(&DcoKey::from_bytes(pair.dco_key));
    let shared = Packager::new(&SharedKey::from_bytes(pair.shared_key));
    assert_eq!(
        pair.hsm.dco_key_check_value().unwrap(),
        dco.kek_check_value()
    );
    assert_eq!(
        pair.hsm.shared_key_check_value().unwrap(),
        shared.kek_check_value()
    );
    assert_ne!(dco.kek_check_value(), shared.kek_check_value());
}

#[test]
fn a_kek_created_in_the_token_packages_and_cannot_be_read() {
    let _serial = support::serial();
    let token = support::token();
    let (dco, shared) = (
        support::fresh_label("gen-dco"),
        support::fresh_label("gen-shared"),
    );
    let kcv = token.create_kek(&dco, KekRole::Dco).unwrap();
    token.create_kek(&shared, KekRole::Shared).unwrap();
    let hsm = HsmDco::on_token(Arc::clone(&token), &dco, &shared).unwrap();
    assert_eq!(hsm.dco_key_check_value().unwrap(), kcv);
    let mut rng = getrandom::SysRng;
    let ak: PackagedKey<AuthenticationKey> = hsm
        .generate(&mut rng, id(KeyRole::Authentication, 0))
        .unwrap();
    hsm.verify(&ak).unwrap();
    assert_eq!(ak.record().kek_check_value(), kcv);
    // The token refuses to reveal or export it.
    let s = raw_session();
    let found = s
        .find_objects(&[Attribute::Label(dco.as_bytes().to_vec())])
        .unwrap();
    assert_eq!(found.len(), 1);
    let value = s.get_attributes(found[0], &[cryptoki::object::AttributeType::Value]);
    assert!(
        !matches!(value.as_deref(), Ok([Attribute::Value(v)]) if !v.is_empty()),
        "the KEK's value was readable: {value:?}"
    );
    // The same label twice is refused.
    assert!(matches!(
        token.create_kek(&dco, KekRole::Dco),
        Err(Pkcs11Error::LabelTaken { .. })
    ));
}

#[test]
fn a_kek_imported_under_a_transport_key_matches_its_software_twin() {
    let _serial = support::serial();
    let token = support::token();
    let transport_key = support::random_key();
    let transport = support::fresh_label("transport");
    token
        .dangerous_import_kek_for_development(&transport, &transport_key, KekRole::Transport)
        .unwrap();
    let kek = support::random_key();
    let kw = <aes_kw::KwAes128 as aes_kw::KeyInit>::new(&transport_key.into());
    let mut wrapped = [0u8; 24];
    kw.wrap_key(&kek, &mut wrapped).unwrap();
    let label = support::fresh_label("imported");
    let kcv = token
        .import_kek_wrapped(&label, &transport, &wrapped, KekRole::Shared)
        .unwrap();
    assert_eq!(
        kcv,
        Packager::new(&SharedKey::from_bytes(kek)).kek_check_value()
    );
    // Under the wrong transport key, RFC 3394's integrity check fails.
    let mut bad = wrapped;
    bad[5] ^= 1;
    let label = support::fresh_label("imported-bad");
    assert!(
        token
            .import_kek_wrapped(&label, &transport, &bad, KekRole::Shared)
            .is_err()
    );
    assert!(matches!(
        token.import_kek_wrapped(&label, "no-such-transport", &wrapped, KekRole::Shared),
        Err(Pkcs11Error::KekNotFound { .. })
    ));
}

#[test]
fn setup_errors_are_clear() {
    let _serial = support::serial();
    let pair = support::pair();
    // Missing label.
    let err = HsmDco::on_token(support::token(), "no-such-key", &pair.shared_label).unwrap_err();
    assert!(matches!(err, Pkcs11Error::KekNotFound { ref label } if label == "no-such-key"));
    // (A wrong PIN: tests/login.rs, in a process not yet logged in.)
    // No such token.
    let config = Pkcs11Config::new(support::module(), "no-such-token", Pin::new("x".into()));
    assert!(matches!(
        Token::open(&config),
        Err(Pkcs11Error::TokenNotFound { .. })
    ));
    // No such module.
    let config = Pkcs11Config::new("/nonexistent/libpkcs11.so", "t", Pin::new("x".into()));
    assert!(matches!(Token::open(&config), Err(Pkcs11Error::Module(_))));
    // A KEK of the wrong size, and one that could leave the token.
    let s = raw_session();
    let wide = support::fresh_label("aes256");
    s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::ValueLen(32.into()),
            Attribute::Label(wide.as_bytes().to_vec()),
            Attribute::Encrypt(true),
        ],
    )
    .unwrap();
    assert!(matches!(
        HsmS1sp::on_token(support::token(), &wide),
        Err(Pkcs11Error::KekWrongSize { bytes: 32, .. })
    ));
    let exposed = support::fresh_label("exposed");
    s.create_object(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
        Attribute::Value(vec![7; 16]),
        Attribute::Label(exposed.as_bytes().to_vec()),
        Attribute::Encrypt(true),
    ])
    .unwrap();
    assert!(matches!(
        HsmS1sp::on_token(support::token(), &exposed),
        Err(Pkcs11Error::KekExposed { .. })
    ));
    // Nothing in a config's or error's Debug shows the PIN.
    let shown = format!("{:?}", support::config());
    assert!(!shown.contains(support::USER_PIN), "{shown}");
}

/// The DLMS vectors through the token: keys packaged by software under the
/// same KEKs, frames protected with GCM/CTR in the token equal the
/// vectors, and the token path opens them.
#[test]
fn dlms_vectors_through_the_token() {
    let _serial = support::serial();
    let pair = support::pair();
    let dco = Packager::new(&DcoKey::from_bytes(pair.dco_key));
    let shared = Packager::new(&SharedKey::from_bytes(pair.shared_key));
    let mut seen = 0;
    for v in vectors("dlms-apdu") {
        let ak_id = RecordId {
            device: SystemTitle::new(*b"METER\x00\x00\x01"),
            client: Some(Client::Management),
            role: KeyRole::Authentication,
            generation: 0,
        };
        let ak = dco
            .package(
                &AuthenticationKey::from_bytes(arr(&v, "authentication_key")),
                ak_id,
            )
            .unwrap();
        let dedicated = v["key_type"].as_str() == Some("dedicated");
        let ek: [u8; 16] = arr(&v, "encryption_key");
        let guek = shared
            .package(
                &GlobalUnicastEncryptionKey::from_bytes(ek),
                RecordId {
                    role: KeyRole::GlobalUnicastEncryption,
                    ..ak_id
                },
            )
            .unwrap();
        let dk = shared
            .package(
                &DedicatedKey::from_bytes(ek),
                RecordId {
                    role: KeyRole::Dedicated,
                    ..ak_id
                },
            )
            .unwrap();
        let keys = CommandKeys {
            ak: &ak,
            encryption: if dedicated {
                EncryptionRecord::Dedicated(&dk)
            } else {
                EncryptionRecord::GlobalUnicast(&guek)
            },
        };
        let title = SystemTitle::new(arr(&v, "system_title"));
        let un = Unprotect {
            peer_system_title: PeerTitle::Expected(title),
            policy: SecurityPolicy::AcceptAnyProtection,
        };
        let received = hex(&v, "frame");
        if v["expect"] == "fail" {
            let mut frame = received.clone();
            assert!(pair.hsm.unprotect(&keys, &mut frame, &un).is_err());
            assert_eq!(frame, received, "{}", v["id"]);
            continue;
        }
        let sc = u8::from_str_radix(v["security_control"].as_str().unwrap(), 16).unwrap();
        let req = Protect {
            protection: Protection::from_bits(sc).unwrap(),
            key: if dedicated {
                KeyKind::Dedicated
            } else {
                KeyKind::GlobalUnicast
            },
            form: match received[0] {
                0xDB | 0xDC => CipheredForm::General {
                    with_system_title: true,
                },
                _ => CipheredForm::ServiceSpecific,
            },
            system_title: title,
        };
        let ic = InvocationCounter::new(u32::from_be_bytes(arr(&v, "invocation_counter")));
        let pt = hex(&v, "plaintext");
        let mut out = vec![0u8; received.len() + 8];
        let n = pair
            .hsm
            .protect(
                &keys,
                &req,
                &mut SingleUse::dangerous_new(ic),
                &pt,
                &mut out,
            )
            .unwrap();
        assert_eq!(out[..n], received[..], "{}", v["id"]);
        let mut frame = received.clone();
        assert_eq!(
            pair.hsm.unprotect(&keys, &mut frame, &un).unwrap().apdu(),
            &pt[..],
            "{}",
            v["id"]
        );
        seen += 1;
    }
    assert_eq!(seen, 7);
}

/// Four threads share one provider (and its session pool); every frame is
/// checked by software.
#[test]
fn threads_share_a_provider() {
    let _serial = support::serial();
    let pair = Arc::new(support::pair());
    let records = Arc::new(support::CommandRecords::new(&pair.software));
    let handles: Vec<_> = (0..4u32)
        .map(|t| {
            let pair = Arc::clone(&pair);
            let records = Arc::clone(&records);
            std::thread::spawn(move || {
                let keys = records.keys();
                for i in 0..50u32 {
                    let req = Protect::unicast(
                        Protection::AuthenticatedEncrypted,
                        support::suite::CLIENT_TITLE,
                    );
                    let apdu = [0xC0, 0x01, t as u8, i as u8, 0xFF];
                    let ic = SingleUse::dangerous_new(InvocationCounter::new(t * 1000 + i + 1));
                    let mut out = [0u8; 64];
                    let n = pair
                        .hsm
                        .protect(&keys, &req, &mut { ic }, &apdu, &mut out)
                        .unwrap();
                    let mut expected = [0u8; 64];
                    let ic = SingleUse::dangerous_new(InvocationCounter::new(t * 1000 + i + 1));
                    let m = pair
                        .software
                        .protect(&keys, &req, &mut { ic }, &apdu, &mut expected)
                        .unwrap();
                    assert_eq!(out[..n], expected[..m]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// The S1SP's provider has the Shared Key only: records under the DCO Key
/// are another KEK to it.
#[test]
fn an_s1sp_provider_cannot_use_the_dco_key() {
    let _serial = support::serial();
    let pair = support::pair();
    let s1sp = support::s1sp(&pair);
    let mut rng = getrandom::SysRng;
    let guek: PackagedKey<GlobalUnicastEncryptionKey> = s1sp
        .generate(&mut rng, id(KeyRole::GlobalUnicastEncryption, 0))
        .unwrap();
    pair.hsm.verify(&guek).unwrap();
    let ak: PackagedKey<AuthenticationKey> = pair
        .hsm
        .generate(&mut rng, id(KeyRole::Authentication, 0))
        .unwrap();
    // The type system stops `s1sp.verify(&ak)` (a compile_fail doctest in
    // the crate); a record retyped as a GUEK still names the DCO Key.
    let bytes = *ak.record().as_bytes();
    let mut forged = bytes;
    forged[1] = KeyRole::GlobalUnicastEncryption.code();
    let forged = dlms_sec::key::package::PackagedRecord::parse(&forged)
        .unwrap()
        .typed::<GlobalUnicastEncryptionKey>()
        .unwrap();
    assert_eq!(s1sp.verify(&forged), Err(Error::Key(KeyError::WrongKek)));
}

/// The RFC 3394 vectors with 128-bit KEK and key through the token: MK
/// and key packaged by software under the same KEKs, wrapped in the token.
#[test]
fn key_wrap_vectors_through_the_token() {
    let _serial = support::serial();
    let pair = support::pair();
    let dco = Packager::new(&DcoKey::from_bytes(pair.dco_key));
    let shared = Packager::new(&SharedKey::from_bytes(pair.shared_key));
    let mut seen = 0;
    for v in vectors("key-wrap") {
        if v["kek_bits"] != 128 || hex(&v, "key_data").len() != 16 {
            continue;
        }
        let mk = dco
            .package(
                &dlms_sec::key::MasterKey::from_bytes(arr(&v, "kek")),
                id(KeyRole::Master, 0),
            )
            .unwrap();
        let key = shared
            .package(
                &GlobalUnicastEncryptionKey::from_bytes(arr(&v, "key_data")),
                id(KeyRole::GlobalUnicastEncryption, 0),
            )
            .unwrap();
        let wrapped = pair.hsm.wrap_for_transfer(&mk, &key).unwrap();
        assert_eq!(
            &wrapped.as_bytes()[..],
            &hex(&v, "wrapped")[..],
            "{}",
            v["id"]
        );
        seen += 1;
    }
    assert!(seen >= 1);
}

/// A KEK destroyed underneath a provider: every call is a typed error
/// (the object is gone and a lookup by label finds nothing), none panics.
#[test]
fn a_kek_destroyed_underneath_gives_typed_errors() {
    let _serial = support::serial();
    let pair = support::pair();
    let mut rng = getrandom::SysRng;
    let guek: PackagedKey<GlobalUnicastEncryptionKey> = pair
        .hsm
        .generate(&mut rng, id(KeyRole::GlobalUnicastEncryption, 0))
        .unwrap();
    let s = raw_session();
    let found = s
        .find_objects(&[Attribute::Label(pair.shared_label.as_bytes().to_vec())])
        .unwrap();
    assert_eq!(found.len(), 1);
    s.destroy_object(found[0]).unwrap();
    for _ in 0..3 {
        assert!(matches!(
            pair.hsm.verify(&guek),
            Err(Error::Key(KeyError::Provider(_)))
        ));
        assert!(matches!(
            pair.hsm.generate::<GlobalUnicastEncryptionKey, _>(
                &mut rng,
                id(KeyRole::GlobalUnicastEncryption, 1)
            ),
            Err(Error::Key(KeyError::Provider(_)))
        ));
    }
    // The DCO Key is untouched and still works.
    let ak: PackagedKey<AuthenticationKey> = pair
        .hsm
        .generate(&mut rng, id(KeyRole::Authentication, 0))
        .unwrap();
    pair.hsm.verify(&ak).unwrap();
}
