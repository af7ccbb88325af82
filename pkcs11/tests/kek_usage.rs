//! Key-usage separation: what a KEK may do is what its path needs, the
//! token enforces it, and a provider refuses a KEK whose attributes say
//! more (or whose history says it was ever exposed).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

mod support;

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use dlms_sec_pkcs11::HsmS1sp;

fn refused<T: std::fmt::Debug>(r: cryptoki::error::Result<T>) -> bool {
    matches!(
        r,
        Err(CkError::Pkcs11(
            RvError::KeyFunctionNotPermitted
                | RvError::MechanismInvalid
                | RvError::KeyTypeInconsistent
                | RvError::WrappingKeyHandleInvalid,
            _
        ))
    )
}

/// `C_Encrypt` under a KEK would forge records for chosen keys; `C_Decrypt`
/// under one whose path unwraps in the token would read every record. The
/// token itself refuses both, and RFC 3394 wrapping (not a packaging
/// mechanism) as well.
#[test]
fn the_token_refuses_encrypt_under_every_kek_made_for_the_provider() {
    let _serial = support::serial();
    let pair = support::pair();
    let created = support::fresh_label("created");
    support::token()
        .create_kek(&created, dlms_sec_pkcs11::KekRole::Shared)
        .unwrap();
    let s = support::raw_session();
    for label in [&pair.dco_label, &pair.shared_label, &created] {
        let kek = support::object(&s, label);
        assert!(
            refused(s.encrypt(&Mechanism::AesEcb, kek, &[0; 16])),
            "C_Encrypt under {label} was allowed"
        );
        assert!(
            refused(s.encrypt(&Mechanism::AesCbc([0; 16]), kek, &[0; 16])),
            "C_Encrypt (CBC) under {label} was allowed"
        );
        let victim = s
            .create_object(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
                Attribute::Extractable(true),
                Attribute::Value(vec![3; 16]),
            ])
            .unwrap();
        assert!(
            refused(s.wrap_key(&Mechanism::AesKeyWrap, kek, victim)),
            "RFC 3394 wrap under {label} was allowed"
        );
    }
}

/// A KEK the provider would refuse, made by `attrs` on top of a
/// sensitive, non-extractable AES-128 token object.
fn make(label: &str, value: bool, attrs: &[Attribute]) {
    let s = support::raw_session();
    let mut t = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Wrap(true),
        Attribute::Unwrap(false),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
    ];
    for a in attrs {
        let ty = a.attribute_type();
        t.retain(|b| b.attribute_type() != ty);
        t.push(a.clone());
    }
    if value {
        t.push(Attribute::Value(support::random_key().to_vec()));
        s.create_object(&t).unwrap();
    } else {
        t.retain(|a| !matches!(a, Attribute::Class(_) | Attribute::KeyType(_)));
        t.push(Attribute::ValueLen(16.into()));
        s.generate_key(&Mechanism::AesKeyGen, &t).unwrap();
    }
}

fn refusal(label: &str) -> String {
    match HsmS1sp::on_token(support::strict_token(), label) {
        Ok(_) => panic!("the provider took KEK {label}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_kek_whose_usages_exceed_its_path_is_refused() {
    let _serial = support::serial();
    for (name, attr) in [
        ("CKA_ENCRYPT", Attribute::Encrypt(true)),
        ("CKA_SIGN", Attribute::Sign(true)),
        ("CKA_VERIFY", Attribute::Verify(true)),
        ("CKA_DERIVE", Attribute::Derive(true)),
    ] {
        let label = support::fresh_label("wide");
        make(&label, false, &[attr]);
        let e = refusal(&label);
        assert!(e.contains(name), "{name}: {e}");
    }
}

#[test]
fn a_session_object_is_no_kek() {
    let _serial = support::serial();
    let label = support::fresh_label("session-kek");
    let s = support::raw_session();
    s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::ValueLen(16.into()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Wrap(true),
        ],
    )
    .unwrap();
    // The provider's own sessions see the object (same application).
    let e = match HsmS1sp::on_token(support::strict_token(), &label) {
        Ok(_) => panic!("a session object was taken as a KEK"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("CKA_TOKEN") || e.contains("no secret key"),
        "{e}"
    );
    drop(s);
}

#[test]
fn a_kek_that_was_ever_readable_is_refused() {
    let _serial = support::serial();
    let s = support::raw_session();
    // Made readable, then made sensitive: not CKA_ALWAYS_SENSITIVE.
    let was_clear = support::fresh_label("was-clear");
    make(&was_clear, false, &[Attribute::Sensitive(false)]);
    let h = support::object(&s, &was_clear);
    s.update_attributes(h, &[Attribute::Sensitive(true)])
        .unwrap();
    let e = refusal(&was_clear);
    assert!(e.contains("CKA_ALWAYS_SENSITIVE"), "{e}");
    // Made extractable, then not: not CKA_NEVER_EXTRACTABLE.
    let was_out = support::fresh_label("was-extractable");
    make(&was_out, false, &[Attribute::Extractable(true)]);
    let h = support::object(&s, &was_out);
    s.update_attributes(h, &[Attribute::Extractable(false)])
        .unwrap();
    let e = refusal(&was_out);
    assert!(e.contains("CKA_NEVER_EXTRACTABLE"), "{e}");
}

#[test]
fn a_kek_of_the_wrong_length_is_refused() {
    let _serial = support::serial();
    let label = support::fresh_label("aes192");
    let s = support::raw_session();
    s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::ValueLen(24.into()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Wrap(true),
        ],
    )
    .unwrap();
    let e = refusal(&label);
    assert!(e.contains("24 octets"), "{e}");
}

/// The AK path is isolated: AKs under their own DCO Key object (which may
/// decrypt), MKs under the DCO Key for MKs; an AK record retyped as an MK
/// names the AK object's check value and is refused.
#[test]
fn a_separate_ak_key_never_opens_an_mk() {
    use dlms_sec::error::{Error, KeyError};
    use dlms_sec::key::package::{PackagedKey, PackagedRecord};
    use dlms_sec::key::{AuthenticationKey, DcoKey, KeyRole, MasterKey};
    use dlms_sec::provider::CryptoProvider;
    use dlms_sec_pkcs11::{HsmDco, KekRole};
    let _serial = support::serial();
    let token = support::strict_token();
    let (mk_label, ak_label, shared_label) = (
        support::fresh_label("dco-mk"),
        support::fresh_label("dco-ak"),
        support::fresh_label("shared"),
    );
    let mk_kcv = token.create_kek(&mk_label, KekRole::DcoMaster).unwrap();
    let ak_kcv = token
        .create_kek(&ak_label, KekRole::DcoAuthentication)
        .unwrap();
    token.create_kek(&shared_label, KekRole::Shared).unwrap();
    let hsm = HsmDco::on_token_with_ak_key(token, &mk_label, &ak_label, &shared_label).unwrap();
    assert_ne!(mk_kcv, ak_kcv);
    assert_eq!(hsm.ak_kek_check_value(), ak_kcv);
    assert_eq!(
        CryptoProvider::<DcoKey>::kek_check_value(&hsm).unwrap(),
        mk_kcv
    );
    let mut rng = getrandom::SysRng;
    let ak: PackagedKey<AuthenticationKey> = hsm
        .generate(&mut rng, support::suite::id(KeyRole::Authentication, 0))
        .unwrap();
    let mk: PackagedKey<MasterKey> = hsm
        .generate(&mut rng, support::suite::id(KeyRole::Master, 0))
        .unwrap();
    assert_eq!(ak.record().kek_check_value(), ak_kcv);
    assert_eq!(mk.record().kek_check_value(), mk_kcv);
    hsm.verify(&ak).unwrap();
    hsm.verify(&mk).unwrap();
    let mut forged = *ak.record().as_bytes();
    forged[1] = KeyRole::Master.code();
    if let Ok(forged) = PackagedRecord::parse(&forged).and_then(|r| r.typed::<MasterKey>()) {
        assert_eq!(hsm.verify(&forged), Err(Error::Key(KeyError::WrongKek)));
    }
    // The DCO Key for MKs refuses C_Decrypt where records unwrap in the
    // token; the AK object never unwraps.
    let s = support::raw_session();
    let caps = support::token().capabilities();
    let mk_object = support::object(&s, &mk_label);
    let decrypts = s.decrypt(&Mechanism::AesEcb, mk_object, &[0; 16]);
    if caps.unpack != dlms_sec_pkcs11::UnpackPath::HostDecrypt {
        let shown = format!("{decrypts:?}");
        assert!(
            refused(decrypts),
            "C_Decrypt under the DCO Key for MKs: {shown}"
        );
    }
    let ak_object = support::object(&s, &ak_label);
    let unwraps = s.unwrap_key(
        &Mechanism::AesEcb,
        ak_object,
        &[0; 16],
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
        ],
    );
    assert!(unwraps.is_err(), "the AK object unwrapped");
}

/// Check values pinned in the configuration; imported KEKs refused by
/// default; the host-decrypt fallback refused where configured.
#[test]
fn open_pins_check_values_and_applies_the_policy() {
    use dlms_sec::key::package::KeyCheckValue;
    use dlms_sec_pkcs11::{HsmDco, Pkcs11Error, Token, UnpackPath};
    let _serial = support::serial();
    let pair = support::pair();
    let mut config = support::config();
    config.dco_key_label.clone_from(&pair.dco_label);
    config.shared_key_label.clone_from(&pair.shared_label);
    let right =
        dlms_sec::key::package::Packager::new(&dlms_sec::key::DcoKey::from_bytes(pair.dco_key))
            .kek_check_value();
    config.pinned_check_values = vec![(pair.dco_label.clone(), right)];
    HsmDco::open(&config).unwrap();
    let wrong = KeyCheckValue([right.0[0] ^ 1, right.0[1], right.0[2]]);
    config.pinned_check_values = vec![(pair.dco_label.clone(), wrong)];
    assert!(matches!(
        HsmDco::open(&config),
        Err(Pkcs11Error::KekCheckValuePinned { .. })
    ));
    config.pinned_check_values.clear();
    // The pair's KEKs were made from clear octets: not always sensitive.
    config.accept_imported_keks = false;
    assert!(matches!(
        HsmDco::open(&config),
        Err(Pkcs11Error::KekAttribute {
            attribute: "CKA_ALWAYS_SENSITIVE",
            ..
        })
    ));
    config.allow_host_decrypt = false;
    let opened = Token::open(&config);
    if support::token().capabilities().unpack == UnpackPath::HostDecrypt {
        assert!(matches!(opened, Err(Pkcs11Error::HostDecryptForbidden)));
    } else {
        opened.unwrap();
    }
}

/// The token's paths, printed; a run that names the unpack path it
/// expects (`DLMS_PKCS11_EXPECT_UNPACK=UnwrapEcb`, say: `.ci/kryoptic.sh`
/// prints it for kryoptic) fails when the module takes another, so the
/// in-token path is known to be the one tested.
#[test]
fn the_token_takes_the_expected_unpack_path() {
    let caps = support::token().capabilities();
    println!("{caps:?}");
    if let Ok(expected) = std::env::var("DLMS_PKCS11_EXPECT_UNPACK") {
        assert_eq!(format!("{:?}", caps.unpack), expected, "{caps:?}");
    }
}

/// Where the token unwraps in the token and takes `CKA_UNWRAP_TEMPLATE`,
/// a KEK unwraps only into a sensitive session object: asking it for a
/// token object or a readable key is refused by the token, while the
/// provider's own template is taken.
#[test]
fn the_unwrap_template_holds_where_the_token_unwraps() {
    let _serial = support::serial();
    let caps = support::token().capabilities();
    if caps.unpack == dlms_sec_pkcs11::UnpackPath::HostDecrypt || !caps.unwrap_template {
        println!("not applicable: {caps:?}");
        return;
    }
    let label = support::fresh_label("templated");
    support::token()
        .create_kek(&label, dlms_sec_pkcs11::KekRole::Shared)
        .unwrap();
    let s = support::raw_session();
    let kek = support::object(&s, &label);
    let base = |extra: &[Attribute]| {
        let mut t = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Sensitive(true),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
        ];
        for a in extra {
            let ty = a.attribute_type();
            t.retain(|b| b.attribute_type() != ty);
            t.push(a.clone());
        }
        t
    };
    let mechanism = match caps.unpack {
        dlms_sec_pkcs11::UnpackPath::UnwrapEcb => Mechanism::AesEcb,
        _ => Mechanism::AesCbc([0; 16]),
    };
    let wrapped = [0x5a; 16];
    let ok = s.unwrap_key(&mechanism, kek, &wrapped, &base(&[]));
    assert!(ok.is_ok(), "the provider's template: {ok:?}");
    for (what, extra) in [
        ("a token object", Attribute::Token(true)),
        ("a readable key", Attribute::Sensitive(false)),
        ("a key that unwraps", Attribute::Unwrap(true)),
    ] {
        let r = s.unwrap_key(&mechanism, kek, &wrapped, &base(&[extra]));
        assert!(r.is_err(), "unwrapped into {what}: {r:?}");
    }
}
