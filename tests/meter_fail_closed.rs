//! The meter side fails closed: after any error the request buffer holds
//! what was received, or zeros, and never the plaintext request.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use dlms_sec::counter::{SendCounter, Volatile};
use dlms_sec::key::{AuthenticationKey, GlobalUnicastEncryptionKey, MasterKey};
use dlms_sec::meter::DeviceCapabilities;
use dlms_sec::meter::key_transfer::SecuritySetupKeys;
use dlms_sec::suite0::Protect;
use dlms_sec::{Client, Error, InvocationCounter, Protection, SecurityPolicy, Suite0, SystemTitle};
use dlms_sec_meter_sim::Meter;

const HEAD_END: SystemTitle = SystemTitle::new(*b"DCO\x00\x00\x00\x00\x01");
const METER: SystemTitle = SystemTitle::new(*b"MMM\x00\x00\x00\x00\x07");
const AK: [u8; 16] = [0xA7; 16];
const GUEK: [u8; 16] = [0x3E; 16];
/// get-request for 0-0:1.0.0.255 attribute 2: served by the meter.
const GET: [u8; 13] = [
    0xC0, 0x01, 0xC1, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0xFF, 0x02, 0x00,
];

fn meter() -> Meter<Volatile> {
    let mut m = Meter::new(
        METER,
        HEAD_END,
        MasterKey::from_bytes([0x4B; 16]),
        SendCounter::volatile(InvocationCounter::new(1)),
        DeviceCapabilities::default(),
    );
    m.provision(
        Client::Management,
        SecuritySetupKeys::new(
            GlobalUnicastEncryptionKey::from_bytes(GUEK),
            AuthenticationKey::from_bytes(AK),
        ),
        SecurityPolicy::AuthenticatedEncrypted,
    )
    .unwrap();
    m
}

/// `apdu` protected by the head end under authenticated encryption.
fn request(apdu: &[u8], ic: u32) -> Vec<u8> {
    let suite = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(GUEK),
        &AuthenticationKey::from_bytes(AK),
    );
    let mut counter = SendCounter::volatile(InvocationCounter::new(ic));
    let mut out = [0u8; 128];
    let n = suite
        .protect(
            &Protect::unicast(Protection::AuthenticatedEncrypted, HEAD_END),
            &mut counter,
            apdu,
            &mut out,
        )
        .unwrap();
    out[..n].to_vec()
}

/// Every octet is as received or zero, and `plain` is nowhere in `buf`.
fn holds_no_plaintext(buf: &[u8], received: &[u8], plain: &[u8]) {
    assert_eq!(buf.len(), received.len());
    for (i, (b, r)) in buf.iter().zip(received).enumerate() {
        assert!(
            *b == *r || *b == 0,
            "octet {i}: {b:02X} is neither received nor zero"
        );
    }
    assert!(
        !buf.windows(plain.len()).any(|w| w == plain),
        "the plaintext request is in the buffer"
    );
}

#[test]
fn a_replayed_request_is_refused_before_it_is_decrypted() {
    let mut m = meter();
    let received = request(&GET, 5);
    let mut response = [0u8; 64];
    m.handle(Client::Management, &mut received.clone(), &mut response)
        .unwrap();
    let mut again = received.clone();
    let r = m.handle(Client::Management, &mut again, &mut response);
    assert!(matches!(r, Err(Error::Counter(_))), "{r:?}");
    assert_eq!(again, received, "refused before any byte changed");
}

#[test]
fn a_truncated_request_leaves_no_plaintext() {
    let mut m = meter();
    let plain = [0xC0, 0x01];
    let received = request(&plain, 5);
    let mut frame = received.clone();
    let r = m.handle(Client::Management, &mut frame, &mut [0u8; 64]);
    assert!(r.is_err());
    holds_no_plaintext(&frame, &received, &plain);
}

#[test]
fn an_unserved_service_leaves_no_plaintext_and_names_no_plaintext_octet() {
    let mut m = meter();
    // A get-response sent to the meter: verified, but not a request it serves.
    let plain = [0xC4, 0x01, 0xC1, 0x00, 0x09, 0x02, 0xAB, 0xCD];
    let received = request(&plain, 5);
    let mut frame = received.clone();
    let r = m.handle(Client::Management, &mut frame, &mut [0u8; 64]);
    let e = r.unwrap_err();
    assert!(
        !format!("{e:?}").contains("196") && !format!("{e:?}").to_uppercase().contains("C4"),
        "the error names a plaintext octet: {e:?}"
    );
    holds_no_plaintext(&frame, &received, &plain);
}

#[test]
fn an_answer_that_cannot_be_protected_leaves_no_plaintext() {
    let mut m = meter();
    let received = request(&GET, 5);
    let mut frame = received.clone();
    let r = m.handle(Client::Management, &mut frame, &mut [0u8; 8]);
    assert!(matches!(r, Err(Error::BufferTooSmall { .. })), "{r:?}");
    holds_no_plaintext(&frame, &received, &GET);
}

#[test]
fn an_answered_request_leaves_no_plaintext_either() {
    let mut m = meter();
    let received = request(&GET, 5);
    let mut frame = received.clone();
    m.handle(Client::Management, &mut frame, &mut [0u8; 64])
        .unwrap();
    holds_no_plaintext(&frame, &received, &GET);
}
