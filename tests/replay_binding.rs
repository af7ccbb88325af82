//! A replay proof advances only the guard of the key it verified under:
//! not another client's guard with the same peer and key kind, and not
//! the guard of another generation of the same key.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use dlms_sec::counter::SendCounter;
use dlms_sec::error::CounterError;
use dlms_sec::key::{AuthenticationKey, GlobalUnicastEncryptionKey};
use dlms_sec::suite0::PeerTitle;
use dlms_sec::suite0::{Protect, Unprotect};
use dlms_sec::{InvocationCounter, KeyKind, Protection, SecurityPolicy, Suite0, SystemTitle};

const HEAD_END: SystemTitle = SystemTitle::new(*b"MMM\x00\x00\x00\x00\x01");
const GET: [u8; 13] = [
    0xC0, 0x01, 0x00, 0x00, 0x08, 0, 0, 1, 0, 0, 0xFF, 0x02, 0x00,
];

fn suite(guek: u8, ak: u8) -> Suite0 {
    Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes([guek; 16]),
        &AuthenticationKey::from_bytes([ak; 16]),
    )
}

/// A frame from the head-end under `keys` with counter `ic`.
fn frame(keys: &Suite0, ic: u32) -> Vec<u8> {
    let mut out = [0u8; 64];
    let req = Protect::unicast(Protection::AuthenticatedEncrypted, HEAD_END);
    let n = keys
        .protect(
            &req,
            &mut SendCounter::volatile(InvocationCounter::new(ic)),
            &GET,
            &mut out,
        )
        .unwrap();
    out[..n].to_vec()
}

const PARAMS: Unprotect = Unprotect {
    peer_system_title: PeerTitle::Expected(HEAD_END),
    policy: SecurityPolicy::AuthenticatedEncrypted,
};

#[test]
fn a_proof_from_client_a_is_refused_by_client_b_guard() {
    let (a, b) = (suite(0x11, 0x21), suite(0x12, 0x22));
    let mut guard_a = a.replay_guard(HEAD_END, KeyKind::GlobalUnicast).unwrap();
    let mut guard_b = b.replay_guard(HEAD_END, KeyKind::GlobalUnicast).unwrap();
    let mut f = frame(&a, 1_000);
    let got = a.unprotect(&mut f, &PARAMS).unwrap();
    assert_eq!(got.admit_into(&mut guard_b), Err(CounterError::WrongGuard));
    assert_eq!(guard_b.last_accepted(), None, "B's floor did not move");
    assert_eq!(got.admit_into(&mut guard_a), Ok(()));
    // B's own frames below A's counter are still accepted.
    let mut f = frame(&b, 5);
    let got = b.unprotect(&mut f, &PARAMS).unwrap();
    assert_eq!(got.admit_into(&mut guard_b), Ok(()));
}

#[test]
fn a_proof_under_generation_1_is_refused_by_a_generation_2_guard() {
    let (gen1, gen2) = (suite(0x31, 0x41), suite(0x32, 0x42));
    let mut guard2 = gen2.replay_guard(HEAD_END, KeyKind::GlobalUnicast).unwrap();
    let mut f = frame(&gen1, 77);
    let got = gen1.unprotect(&mut f, &PARAMS).unwrap();
    assert_eq!(got.admit_into(&mut guard2), Err(CounterError::WrongGuard));
    assert_eq!(guard2.last_accepted(), None);
    let mut f = frame(&gen2, 1);
    let got = gen2.unprotect(&mut f, &PARAMS).unwrap();
    assert_eq!(got.admit_into(&mut guard2), Ok(()));
}
