//! Login and a token failing underneath: in their own process, because a
//! PKCS#11 login (and logout) belongs to the whole application, so these
//! cannot run beside other tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "test code: a panic is a failed test"
)]

mod support;

use dlms_sec::counter::SingleUse;
use dlms_sec::error::{Error, KeyError};
use dlms_sec::provider::DcoProvider;
use dlms_sec::suite0::Protect;
use dlms_sec::{InvocationCounter, Protection};
use dlms_sec_pkcs11::{Pin, Pkcs11Error, Token};

/// One test, in order: a wrong PIN before anyone logged in, then the
/// provider, then the login lost underneath it.
#[test]
fn wrong_pin_then_a_token_failing_underneath() {
    // The token exists, nobody in this process is logged in yet.
    let mut config = support::config();
    config.pin = Pin::new("not-the-pin".to_owned());
    assert!(matches!(Token::open(&config), Err(Pkcs11Error::WrongPin)));
    let shown = format!("{:?}", Token::open(&config).unwrap_err());
    assert!(!shown.contains("not-the-pin"), "{shown}");
    a_token_failing_underneath_gives_errors_never_wrong_results();
}

/// The login is lost underneath the provider (as when a token is pulled
/// and re-inserted): calls fail with a typed error, never a wrong frame,
/// and the provider recovers on fresh sessions.
fn a_token_failing_underneath_gives_errors_never_wrong_results() {
    let pair = support::pair();
    let _rng = getrandom::SysRng;
    let records = support::CommandRecords::new(&pair.software);
    let keys = records.keys();
    let req = Protect::unicast(
        Protection::AuthenticatedEncrypted,
        support::suite::CLIENT_TITLE,
    );
    let apdu = [0xC0, 0x01, 0x02, 0x03];
    let run = |ic: u32| {
        let mut out = [0u8; 64];
        let got = pair
            .hsm
            .protect(
                &keys,
                &req,
                &mut SingleUse::dangerous_new(InvocationCounter::new(ic)),
                &apdu,
                &mut out,
            )
            .map(|n| out[..n].to_vec());
        let mut expected = [0u8; 64];
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
        (got, expected[..m].to_vec())
    };
    assert!(run(1).0.is_ok());
    pair.hsm.token().logout().unwrap();
    let mut failures = 0;
    let mut recovered = false;
    for ic in 2..20 {
        match run(ic) {
            (Ok(frame), expected) => {
                assert_eq!(frame, expected, "a wrong frame after the token failed");
                recovered = true;
            }
            (Err(Error::Key(KeyError::Provider(kind))), _) => {
                assert!(!recovered, "failed again after recovering: {kind:?}");
                failures += 1;
            }
            (Err(e), _) => panic!("untyped failure {e:?}"),
        }
    }
    assert!(failures >= 1, "the lost login went unnoticed");
    assert!(recovered, "the provider never recovered");
}
