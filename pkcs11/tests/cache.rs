//! The opt-in cache of unpacked keys: in steady state a command is one
//! AES-GCM operation (3 `C_` functions), a purge or a new generation
//! unpacks again, and frames stay those of software.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use dlms_sec::counter::SingleUse;
use dlms_sec::provider::DcoProvider;
use dlms_sec::suite0::Protect;
use dlms_sec::wire::CipheredForm;
use dlms_sec::{InvocationCounter, KeyKind, Protection};
use dlms_sec_pkcs11::{CacheConfig, HsmDco, Token, calls};

#[test]
fn cached_commands_make_one_cipher_call_and_match_software() {
    let _serial = support::serial();
    let pair = support::pair();
    let mut config = support::config();
    config.cache = Some(CacheConfig {
        capacity: 8,
        ttl: Duration::from_secs(600),
    });
    let token = Arc::new(Token::open(&config).unwrap());
    let hsm = HsmDco::on_token(Arc::clone(&token), &pair.dco_label, &pair.shared_label).unwrap();
    let records = support::CommandRecords::new(&pair.software);
    let keys = records.keys();
    let req = Protect {
        protection: Protection::AuthenticatedEncrypted,
        key: KeyKind::GlobalUnicast,
        form: CipheredForm::ServiceSpecific,
        system_title: support::suite::CLIENT_TITLE,
    };
    let apdu: Vec<u8> = [0xC0].into_iter().chain(1..64u8).collect();
    let run = |ic: u32| {
        let mut out = [0u8; 128];
        let before = calls::count();
        let n = hsm
            .protect(
                &keys,
                &req,
                &mut SingleUse::dangerous_new(InvocationCounter::new(ic)),
                &apdu,
                &mut out,
            )
            .unwrap();
        let made = calls::count() - before;
        let mut expected = [0u8; 128];
        let m = pair
            .software
            .protect(
                &keys,
                &req,
                &mut SingleUse::dangerous_new(InvocationCounter::new(ic)),
                &apdu,
                &mut expected,
            )
            .unwrap();
        assert_eq!(out[..n], expected[..m]);
        made
    };
    let first = run(1);
    assert_eq!(token.cached(), (1, 1));
    for ic in 2..6 {
        let steady = run(ic);
        assert!(steady <= 4, "{steady} C_ calls in steady state");
        assert!(steady < first, "steady {steady}, first {first}");
    }
    token.purge_cache();
    assert_eq!(token.cached(), (0, 0));
    assert_eq!(run(6), first);
    // A zero TTL keeps nothing fresh: every command unpacks again.
    let mut config = support::config();
    config.cache = Some(CacheConfig {
        capacity: 8,
        ttl: Duration::ZERO,
    });
    let token = Arc::new(Token::open(&config).unwrap());
    let hsm2 = HsmDco::on_token(token, &pair.dco_label, &pair.shared_label).unwrap();
    let mut out = [0u8; 128];
    let before = calls::count();
    hsm2.protect(
        &keys,
        &req,
        &mut SingleUse::dangerous_new(InvocationCounter::new(9)),
        &apdu,
        &mut out,
    )
    .unwrap();
    let once = calls::count() - before;
    let before = calls::count();
    hsm2.protect(
        &keys,
        &req,
        &mut SingleUse::dangerous_new(InvocationCounter::new(10)),
        &apdu,
        &mut out,
    )
    .unwrap();
    // It unpacks again (and destroys the stale object first).
    assert!(calls::count() - before >= once, "the stale entry was used");
    assert!(once > 4);
}
