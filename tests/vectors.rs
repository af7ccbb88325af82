//! Every DLMS vector of vectors/suite0-vectors.json in both directions:
//! protect(plaintext) gives the frame byte for byte, unprotect(frame) gives
//! the plaintext; negative vectors are refused and leave the frame as it
//! was. HLS-5 vectors computed and verified. (D-01, D-02, D-03, D-05)

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    reason = "test code: a panic is a failed test"
)]

mod common;

use common::{arr, hex, u32_of, vectors};
use dlms_sec::counter::SingleUse;
use dlms_sec::key::{AuthenticationKey, DedicatedKey, GlobalUnicastEncryptionKey};
use dlms_sec::suite0::PeerTitle;
use dlms_sec::suite0::hls5;
use dlms_sec::suite0::{Protect, Suite0, Unprotect};
use dlms_sec::wire::CipheredForm;
use dlms_sec::{
    AuthError, Error, InvocationCounter, KeyKind, Protection, SecurityPolicy, SystemTitle,
};

fn context(v: &serde_json::Value) -> (Suite0, KeyKind) {
    let ak = AuthenticationKey::from_bytes(arr(v, "authentication_key"));
    let ek: [u8; 16] = arr(v, "encryption_key");
    match v["key_type"].as_str() {
        Some("dedicated") => {
            // The dedicated vector's GUEK is not given; any unicast key will do.
            let mut s = Suite0::new(&GlobalUnicastEncryptionKey::from_bytes([0x55; 16]), &ak);
            s.set_dedicated_key(&DedicatedKey::from_bytes(ek));
            (s, KeyKind::Dedicated)
        }
        _ => (
            Suite0::new(&GlobalUnicastEncryptionKey::from_bytes(ek), &ak),
            KeyKind::GlobalUnicast,
        ),
    }
}

fn form(tag: u8) -> CipheredForm<'static> {
    match tag {
        0xDB | 0xDC => CipheredForm::General {
            with_system_title: true,
        },
        _ => CipheredForm::ServiceSpecific,
    }
}

#[test]
fn dlms_vectors_protect_byte_for_byte() {
    let vs: Vec<_> = vectors("dlms-apdu")
        .into_iter()
        .filter(|v| v["expect"] != "fail")
        .collect();
    assert_eq!(vs.len(), 7);
    for v in vs {
        let (suite, key) = context(&v);
        let sc = u8::from_str_radix(v["security_control"].as_str().unwrap(), 16).unwrap();
        let protection = Protection::from_bits(sc).unwrap();
        let title = SystemTitle::new(arr(&v, "system_title"));
        let ic = InvocationCounter::new(u32_of(&v, "invocation_counter"));
        let expected = hex(&v, "frame");
        let req = Protect {
            protection,
            key,
            form: form(expected[0]),
            system_title: title,
        };
        let pt = hex(&v, "plaintext");
        assert_eq!(suite.frame_len(&req, &pt).unwrap(), expected.len());
        // Out of place, into a buffer prefilled with garbage.
        let mut out = vec![0xA5u8; expected.len() + 9];
        let n = suite
            .protect(&req, &mut SingleUse::dangerous_new(ic), &pt, &mut out)
            .unwrap();
        assert_eq!(&out[..n], &expected[..], "{}", v["id"]);
        // In place.
        let mut buf = vec![0x5Au8; expected.len()];
        buf[..pt.len()].copy_from_slice(&pt);
        let n = suite
            .protect_in_place(&req, &mut SingleUse::dangerous_new(ic), &mut buf, pt.len())
            .unwrap();
        assert_eq!(&buf[..n], &expected[..], "{} in place", v["id"]);
        // One byte short: a typed error, and the counter is not drawn.
        let mut short = vec![0u8; expected.len() - 1];
        let mut once = SingleUse::dangerous_new(ic);
        assert_eq!(
            suite.protect(&req, &mut once, &pt, &mut short),
            Err(Error::BufferTooSmall {
                required: expected.len()
            })
        );
        assert!(suite.protect(&req, &mut once, &pt, &mut out).is_ok());
    }
}

#[test]
fn dlms_vectors_unprotect_to_plaintext() {
    for v in vectors("dlms-apdu")
        .into_iter()
        .filter(|v| v["expect"] != "fail")
    {
        let (suite, key) = context(&v);
        let title = SystemTitle::new(arr(&v, "system_title"));
        let mut frame = hex(&v, "frame");
        let params = Unprotect {
            peer_system_title: PeerTitle::Expected(title),
            policy: SecurityPolicy::AcceptAnyProtection,
        };
        let got = suite.unprotect(&mut frame, &params).unwrap();
        assert_eq!(got.apdu(), &hex(&v, "plaintext")[..], "{}", v["id"]);
        assert_eq!(got.key(), key);
        assert_eq!(
            got.invocation_counter(),
            InvocationCounter::new(u32_of(&v, "invocation_counter"))
        );
        assert_eq!(got.system_title(), title);
        // Encryption only yields no replay proof; authenticated modes do.
        assert_eq!(
            got.replay_proof().is_some(),
            got.protection().unwrap().is_authenticated()
        );
    }
}

#[test]
fn negative_dlms_vectors_are_refused_and_leave_the_frame() {
    let vs: Vec<_> = vectors("dlms-apdu")
        .into_iter()
        .filter(|v| v["expect"] == "fail")
        .collect();
    assert_eq!(vs.len(), 3);
    for v in vs {
        let (suite, _) = context(&v);
        let title = SystemTitle::new(arr(&v, "system_title"));
        let received = hex(&v, "frame");
        let mut frame = received.clone();
        let params = Unprotect {
            peer_system_title: PeerTitle::Expected(title),
            policy: SecurityPolicy::AcceptAnyProtection,
        };
        assert_eq!(
            suite.unprotect(&mut frame, &params).unwrap_err(),
            Error::Auth(AuthError),
            "{}",
            v["id"]
        );
        assert_eq!(frame, received, "{}: buffer changed after failure", v["id"]);
    }
}

#[test]
fn hls5_vectors_both_ways() {
    let vs = vectors("hls5-gmac");
    assert_eq!(vs.len(), 3);
    for v in vs {
        let suite = Suite0::new(
            &GlobalUnicastEncryptionKey::from_bytes(arr(&v, "encryption_key")),
            &AuthenticationKey::from_bytes(arr(&v, "authentication_key")),
        );
        let title = SystemTitle::new(arr(&v, "system_title"));
        let challenge = hex(&v, "challenge");
        let response = hex(&v, "response");
        let verdict = hls5::verify(&suite, &title, &challenge, &response);
        if v["expect"] == "fail" {
            assert_eq!(verdict, Err(Error::Auth(AuthError)), "{}", v["id"]);
            continue;
        }
        let ic = InvocationCounter::new(u32_of(&v, "invocation_counter"));
        assert_eq!(verdict.unwrap().invocation_counter(), ic);
        let computed = hls5::respond(
            &suite,
            &title,
            &mut SingleUse::dangerous_new(ic),
            &challenge,
        )
        .unwrap();
        assert_eq!(&computed.as_bytes()[..], &response[..], "{}", v["id"]);
        assert_eq!(computed.invocation_counter(), ic);
        // Every flipped bit of the response is refused.
        for bit in 0..response.len() * 8 {
            let mut bad = response.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(hls5::verify(&suite, &title, &challenge, &bad).is_err());
        }
        // Another responder title, another challenge: refused.
        let other = SystemTitle::new([0; 8]);
        assert!(hls5::verify(&suite, &other, &challenge, &response).is_err());
        let mut c2 = challenge.clone();
        c2[0] ^= 1;
        assert!(hls5::verify(&suite, &title, &c2, &response).is_err());
    }
}

#[test]
fn hls5_challenge_and_response_lengths() {
    let suite = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes([1; 16]),
        &AuthenticationKey::from_bytes([2; 16]),
    );
    let title = SystemTitle::new([3; 8]);
    for len in [0usize, 7, 65, 200] {
        let c = vec![0u8; len];
        assert!(matches!(
            hls5::respond(
                &suite,
                &title,
                &mut SingleUse::dangerous_new(InvocationCounter::new(1)),
                &c
            ),
            Err(Error::Wire(_))
        ));
        assert!(matches!(
            hls5::verify(&suite, &title, &c, &[0x10; 17]),
            Err(Error::Wire(_))
        ));
    }
    for len in [8usize, 64] {
        let c = vec![0xEEu8; len];
        let r = hls5::respond(
            &suite,
            &title,
            &mut SingleUse::dangerous_new(InvocationCounter::new(9)),
            &c,
        )
        .unwrap();
        assert!(hls5::verify(&suite, &title, &c, r.as_bytes()).is_ok());
        for cut in 0..17 {
            assert!(hls5::verify(&suite, &title, &c, &r.as_bytes()[..cut]).is_err());
        }
    }
    // A response with SC 0x30 but the right tag is refused (SC is compared too).
    let c = [0xAB; 16];
    let r = hls5::respond(
        &suite,
        &title,
        &mut SingleUse::dangerous_new(InvocationCounter::new(5)),
        &c,
    )
    .unwrap();
    let mut bad = *r.as_bytes();
    bad[0] = 0x30;
    assert_eq!(
        hls5::verify(&suite, &title, &c, &bad),
        Err(Error::Auth(AuthError))
    );
    // A single-use counter cannot answer twice.
    let mut once = SingleUse::dangerous_new(InvocationCounter::new(7));
    assert!(hls5::respond(&suite, &title, &mut once, &c).is_ok());
    assert!(matches!(
        hls5::respond(&suite, &title, &mut once, &c),
        Err(Error::Counter(_))
    ));
}
