//! The one provider suite (tests/support/suite.rs) against the software
//! DCO and against the PKCS#11 DCO on SoftHSM2, each checked by a software
//! DCO holding the same KEKs.
#![allow(clippy::unwrap_used)]

mod support;

use dlms_sec::key::{DcoKey, SharedKey};
use dlms_sec::provider::SoftwareDco;

#[test]
fn software_provider_passes_the_suite() {
    let _serial = support::serial();
    let (a, b) = (support::random_key(), support::random_key());
    let p = SoftwareDco::new(&DcoKey::from_bytes(a), &SharedKey::from_bytes(b));
    let reference = SoftwareDco::new(&DcoKey::from_bytes(a), &SharedKey::from_bytes(b));
    support::suite::run(&p, &reference);
}

#[test]
fn pkcs11_provider_passes_the_suite() {
    let _serial = support::serial();
    let pair = support::pair();
    support::suite::run(&pair.hsm, &pair.software);
}

#[test]
fn pkcs11_s1sp_decrypts_what_the_shared_key_allows() {
    let _serial = support::serial();
    let pair = support::pair();
    let s1sp = support::s1sp(&pair);
    support::suite::decrypt_unauthenticated_matches(&s1sp, &pair.software);
}
