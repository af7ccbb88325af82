//! Signed KEK packages imported into a token: a good one lands and its KEK
//! works; every refusal is its own typed error and leaves nothing behind.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

mod support;

use dlms_sec::key::SharedKey;
use dlms_sec::key::package::{KeyCheckValue, Packager};
use dlms_sec_pkcs11::kek_package::{
    Claim, PackageContents, PackageId, PackageIdGuard, create_package,
};
use dlms_sec_pkcs11::{
    FilePackageIds, HsmS1sp, InMemoryPackageIds, KekPackage, KekPackageError, KekRole,
    PackageSigningKey, Pkcs11Error, TrustAnchors,
};

const NOW: u64 = 1_800_000_000;

/// A transport key on the token and a KEK wrapped under it in software,
/// as the sender's HSM would have wrapped it.
struct Setup {
    transport: String,
    kek: [u8; 16],
    wrapped: [u8; 24],
    signer: PackageSigningKey,
    trust: TrustAnchors,
}

fn setup() -> Setup {
    let token = support::token();
    let transport_key = support::random_key();
    let transport = support::fresh_label("pkg-transport");
    token
        .dangerous_import_kek_for_development(&transport, &transport_key, KekRole::Transport)
        .unwrap();
    let kek = support::random_key();
    let kw = <aes_kw::KwAes128 as aes_kw::KeyInit>::new(&transport_key.into());
    let mut wrapped = [0u8; 24];
    kw.wrap_key(&kek, &mut wrapped).unwrap();
    let signer = PackageSigningKey::generate(&mut getrandom::SysRng).unwrap();
    let mut trust = TrustAnchors::new();
    trust.add("dcc-kms", signer.public_key()).unwrap();
    Setup {
        transport,
        kek,
        wrapped,
        signer,
        trust,
    }
}

impl Setup {
    fn kcv(&self) -> KeyCheckValue {
        Packager::new(&SharedKey::from_bytes(self.kek)).kek_check_value()
    }

    fn contents(&self, label: &str) -> PackageContents {
        PackageContents {
            label: label.to_owned(),
            transport: self.transport.clone(),
            role: KekRole::Shared,
            wrapped: self.wrapped,
            kcv: self.kcv(),
            not_before: NOW - 60,
            not_after: NOW + 3600,
            id: PackageId::generate(&mut getrandom::SysRng).unwrap(),
        }
    }

    fn package(&self, label: &str) -> KekPackage {
        create_package(self.contents(label), "dcc-kms", &self.signer).unwrap()
    }
}

/// Whether any object on the token carries `label`.
fn present(label: &str) -> bool {
    let s = support::raw_session();
    !s.find_objects(&[cryptoki::object::Attribute::Label(
        label.as_bytes().to_vec(),
    )])
    .unwrap()
    .is_empty()
}

/// Imports `octets` as `label`, expecting a refusal; checks that nothing
/// is on the token under the label (or a pending one) afterwards.
fn refused(
    label: &str,
    octets: &[u8],
    trust: &TrustAnchors,
    now: u64,
    guard: &mut dyn PackageIdGuard,
) -> KekPackageError {
    let e = support::token()
        .import_kek_package(octets, trust, now, guard)
        .expect_err("the package was imported");
    assert!(!present(label), "{label} is on the token after {e}");
    let s = support::raw_session();
    let pending = s
        .find_objects(&[cryptoki::object::Attribute::Class(
            cryptoki::object::ObjectClass::SECRET_KEY,
        )])
        .unwrap()
        .into_iter()
        .filter_map(|h| {
            s.get_attributes(h, &[cryptoki::object::AttributeType::Label])
                .ok()
        })
        .flatten()
        .any(|a| match a {
            cryptoki::object::Attribute::Label(l) => {
                l == label.as_bytes() || l.starts_with(format!("{label}.pending-").as_bytes())
            }
            _ => false,
        });
    assert!(
        !pending,
        "an object labelled {label}.pending-… remains after {e}"
    );
    e
}

#[test]
fn a_good_package_imports_and_its_kek_works() {
    let _serial = support::serial();
    let s = setup();
    let label = support::fresh_label("pkg-good");
    let octets = s.package(&label).to_vec().unwrap();
    let mut guard = InMemoryPackageIds::new();
    let kcv = support::token()
        .import_kek_package(&octets, &s.trust, NOW, &mut guard)
        .unwrap();
    assert_eq!(kcv, s.kcv(), "the token's check value is the software one");
    assert!(present(&label));
    // The imported KEK serves an S1SP provider, whose check value is
    // computed in the token again.
    let provider = HsmS1sp::on_token(support::token(), &label).unwrap();
    drop(provider);
    // The same package again: replayed.
    let again = support::token()
        .import_kek_package(&octets, &s.trust, NOW, &mut guard)
        .unwrap_err();
    assert!(matches!(again, KekPackageError::Replayed { .. }), "{again}");
}

#[test]
fn the_text_form_imports_with_a_file_guard() {
    let _serial = support::serial();
    let s = setup();
    let label = support::fresh_label("pkg-armour");
    let text = s.package(&label).to_armour().unwrap();
    let parsed = KekPackage::from_armour(&text).unwrap();
    let dir = std::env::temp_dir().join(format!("dlms-kek-guard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("package-ids");
    let _ = std::fs::remove_file(&path);
    let mut guard = FilePackageIds::open(&path).unwrap();
    support::token()
        .import_kek_package(&parsed.to_vec().unwrap(), &s.trust, NOW, &mut guard)
        .unwrap();
    assert!(present(&label));
    // A restarted importer reads the id from the file.
    let mut reopened = FilePackageIds::open(&path).unwrap();
    assert_eq!(reopened.claim(&parsed.contents.id).unwrap(), Claim::Seen);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unsigned_package_is_refused() {
    let _serial = support::serial();
    let s = setup();
    let label = support::fresh_label("pkg-unsigned");
    let mut p = s.package(&label);
    p.signature = None;
    let e = refused(
        &label,
        &p.to_vec().unwrap(),
        &s.trust,
        NOW,
        &mut InMemoryPackageIds::new(),
    );
    assert!(matches!(e, KekPackageError::Unsigned), "{e}");
}

/// A change to one field of a signed package.
type Alteration = fn(&mut KekPackage);

#[test]
fn an_altered_field_is_a_wrong_signature() {
    let _serial = support::serial();
    let s = setup();
    let label = support::fresh_label("pkg-altered");
    let p = s.package(&label);
    let alterations: [(&str, Alteration); 7] = [
        ("role", |p| p.contents.role = KekRole::Dco),
        ("wrapped", |p| p.contents.wrapped[3] ^= 1),
        ("kcv", |p| p.contents.kcv.0[0] ^= 1),
        ("not after", |p| p.contents.not_after += 1),
        ("id", |p| p.contents.id.0[0] ^= 1),
        ("sender", |p| p.sender.push('x')),
        ("signature", |p| {
            p.signature.as_mut().unwrap()[10] ^= 1;
        }),
    ];
    for (what, alter) in alterations {
        let mut bad = p.clone();
        alter(&mut bad);
        let e = refused(
            &label,
            &bad.to_vec().unwrap(),
            &s.trust,
            NOW,
            &mut InMemoryPackageIds::new(),
        );
        assert!(matches!(e, KekPackageError::WrongSignature), "{what}: {e}");
    }
    // The label itself.
    let mut relabelled = p.clone();
    relabelled.contents.label = support::fresh_label("pkg-altered-label");
    let e = refused(
        &relabelled.contents.label.clone(),
        &relabelled.to_vec().unwrap(),
        &s.trust,
        NOW,
        &mut InMemoryPackageIds::new(),
    );
    assert!(matches!(e, KekPackageError::WrongSignature), "{e}");
    // One bit of the encoding: in the sender's public key, and in the
    // wrapped KEK.
    let octets = p.to_vec().unwrap();
    let wrapped_at = 7 + p.contents.label.len() + 1 + p.contents.transport.len();
    for at in [octets.len() - 65 - 10, wrapped_at + 5] {
        let mut flipped = octets.clone();
        flipped[at] ^= 0x04;
        let e = refused(
            &label,
            &flipped,
            &s.trust,
            NOW,
            &mut InMemoryPackageIds::new(),
        );
        assert!(
            matches!(e, KekPackageError::WrongSignature),
            "octet {at}: {e}"
        );
    }
}

#[test]
fn a_foreign_signer_is_refused() {
    let _serial = support::serial();
    let s = setup();
    let label = support::fresh_label("pkg-foreign");
    let stranger = PackageSigningKey::generate(&mut getrandom::SysRng).unwrap();
    // A trusted name, signed by another key.
    let p = create_package(s.contents(&label), "dcc-kms", &stranger).unwrap();
    let e = refused(
        &label,
        &p.to_vec().unwrap(),
        &s.trust,
        NOW,
        &mut InMemoryPackageIds::new(),
    );
    assert!(
        matches!(e, KekPackageError::ForeignSigner { name_known: true, ref sender } if sender == "dcc-kms"),
        "{e}"
    );
    // A name nobody trusts.
    let p = create_package(s.contents(&label), "elsewhere", &stranger).unwrap();
    let e = refused(
        &label,
        &p.to_vec().unwrap(),
        &s.trust,
        NOW,
        &mut InMemoryPackageIds::new(),
    );
    assert!(
        matches!(
            e,
            KekPackageError::ForeignSigner {
                name_known: false,
                ..
            }
        ),
        "{e}"
    );
    // No trust anchors at all.
    let p = s.package(&label);
    let e = refused(
        &label,
        &p.to_vec().unwrap(),
        &TrustAnchors::new(),
        NOW,
        &mut InMemoryPackageIds::new(),
    );
    assert!(matches!(e, KekPackageError::ForeignSigner { .. }), "{e}");
}

#[test]
fn a_package_outside_its_window_is_refused() {
    let _serial = support::serial();
    let s = setup();
    let label = support::fresh_label("pkg-window");
    let octets = s.package(&label).to_vec().unwrap();
    let mut guard = InMemoryPackageIds::new();
    let e = refused(&label, &octets, &s.trust, NOW + 3601, &mut guard);
    assert!(
        matches!(e, KekPackageError::Expired { not_after, now } if not_after == NOW + 3600 && now == NOW + 3601),
        "{e}"
    );
    let e = refused(&label, &octets, &s.trust, NOW - 61, &mut guard);
    assert!(matches!(e, KekPackageError::NotYetValid { .. }), "{e}");
    // Neither refusal used the id up: inside the window it imports.
    support::token()
        .import_kek_package(&octets, &s.trust, NOW, &mut guard)
        .unwrap();
    assert!(present(&label));
}

#[test]
fn a_replayed_package_id_is_refused() {
    let _serial = support::serial();
    let s = setup();
    let label = support::fresh_label("pkg-replay");
    let p = s.package(&label);
    // The id was claimed before (imported earlier, its KEK deleted since).
    let mut guard = InMemoryPackageIds::new();
    assert_eq!(guard.claim(&p.contents.id).unwrap(), Claim::Fresh);
    let e = refused(&label, &p.to_vec().unwrap(), &s.trust, NOW, &mut guard);
    assert!(
        matches!(e, KekPackageError::Replayed { id } if id == p.contents.id),
        "{e}"
    );
}

#[test]
fn a_check_value_mismatch_destroys_the_unwrapped_kek() {
    let _serial = support::serial();
    let s = setup();
    let label = support::fresh_label("pkg-kcv");
    let mut contents = s.contents(&label);
    contents.kcv.0[2] ^= 0xFF;
    let p = create_package(contents, "dcc-kms", &s.signer).unwrap();
    let e = refused(
        &label,
        &p.to_vec().unwrap(),
        &s.trust,
        NOW,
        &mut InMemoryPackageIds::new(),
    );
    match e {
        KekPackageError::KcvMismatch { package, token } => {
            assert_eq!(package, p.contents.kcv);
            assert_eq!(token, s.kcv());
        }
        other => panic!("{other}"),
    }
}

#[test]
fn malformed_octets_are_refused() {
    let _serial = support::serial();
    let s = setup();
    let label = support::fresh_label("pkg-malformed");
    let octets = s.package(&label).to_vec().unwrap();
    for bad in [
        &octets[..octets.len() - 1],
        &[octets.as_slice(), &[0]].concat(),
        &[],
    ] {
        let e = refused(&label, bad, &s.trust, NOW, &mut InMemoryPackageIds::new());
        assert!(matches!(e, KekPackageError::Malformed(_)), "{e}");
    }
}

#[test]
fn token_refusals_come_through_typed() {
    let _serial = support::serial();
    let s = setup();
    // A transport key the token does not hold.
    let label = support::fresh_label("pkg-no-transport");
    let mut contents = s.contents(&label);
    contents.transport = "no-such-transport".to_owned();
    let p = create_package(contents, "dcc-kms", &s.signer).unwrap();
    let e = refused(
        &label,
        &p.to_vec().unwrap(),
        &s.trust,
        NOW,
        &mut InMemoryPackageIds::new(),
    );
    assert!(
        matches!(e, KekPackageError::Token(Pkcs11Error::KekNotFound { .. })),
        "{e}"
    );
    // A label already taken: the existing key stays, nothing new appears.
    let taken = support::fresh_label("pkg-taken");
    support::token()
        .create_kek(&taken, KekRole::Shared)
        .unwrap();
    let p = s.package(&taken);
    let e = support::token()
        .import_kek_package(
            &p.to_vec().unwrap(),
            &s.trust,
            NOW,
            &mut InMemoryPackageIds::new(),
        )
        .unwrap_err();
    assert!(
        matches!(e, KekPackageError::Token(Pkcs11Error::LabelTaken { .. })),
        "{e}"
    );
    let sess = support::raw_session();
    let _one = support::object(&sess, &taken);
}
