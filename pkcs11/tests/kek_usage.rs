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
    support::token().create_kek(&created).unwrap();
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
    match HsmS1sp::on_token(support::token(), label) {
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
    let e = match HsmS1sp::on_token(support::token(), &label) {
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
    make(&was_clear, true, &[Attribute::Sensitive(false)]);
    let h = support::object(&s, &was_clear);
    s.update_attributes(h, &[Attribute::Sensitive(true)])
        .unwrap();
    let e = refusal(&was_clear);
    assert!(e.contains("CKA_ALWAYS_SENSITIVE"), "{e}");
    // Made extractable, then not: not CKA_NEVER_EXTRACTABLE.
    let was_out = support::fresh_label("was-extractable");
    make(&was_out, true, &[Attribute::Extractable(true)]);
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
