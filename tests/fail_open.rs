//! No default accepts weaker protection: frames under encryption only never
//! pass a replay guard as if verified, and a meter installs keys only from
//! an authenticated and encrypted key_transfer.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use dlms_sec::counter::SendCounter;
use dlms_sec::key::{AuthenticationKey, GlobalUnicastEncryptionKey, MasterKey};
use dlms_sec::meter::DeviceCapabilities;
use dlms_sec::meter::key_transfer::{NewKeys, SecuritySetupKeys};
use dlms_sec::suite0::PeerTitle;
use dlms_sec::suite0::{Protect, Unprotect};
use dlms_sec::wire::{CipheredForm, KeyTransfer, SecuritySetupMethod};
use dlms_sec::{
    Client, InvocationCounter, KeyKind, Protection, SecurityPolicy, Suite0, SystemTitle,
};
use dlms_sec_meter_sim::{Handled, Meter};

const HEAD_END: SystemTitle = SystemTitle::new(*b"DCO\x00\x00\x00\x00\x01");
const METER: SystemTitle = SystemTitle::new(*b"MMM\x00\x00\x00\x00\x07");
const AK: [u8; 16] = [0xA7; 16];
const GUEK: [u8; 16] = [0x3E; 16];
const MK: [u8; 16] = [0x4B; 16];
const GET: [u8; 13] = [
    0xC0, 0x01, 0xC1, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0xFF, 0x02, 0x00,
];

fn suite() -> Suite0 {
    Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(GUEK),
        &AuthenticationKey::from_bytes(AK),
    )
}

fn frame(protection: Protection, apdu: &[u8], ic: u32) -> Vec<u8> {
    let mut counter = SendCounter::volatile(InvocationCounter::new(ic));
    let mut out = [0u8; 256];
    let n = suite()
        .protect(
            &Protect {
                protection,
                key: KeyKind::GlobalUnicast,
                form: CipheredForm::ServiceSpecific,
                system_title: HEAD_END,
            },
            &mut counter,
            apdu,
            &mut out,
        )
        .unwrap();
    out[..n].to_vec()
}

#[test]
fn an_encryption_only_frame_never_passes_a_replay_guard() {
    let s = suite();
    let mut guard = s.replay_guard(HEAD_END, KeyKind::GlobalUnicast).unwrap();
    let params = Unprotect {
        peer_system_title: PeerTitle::Expected(HEAD_END),
        policy: SecurityPolicy::Encrypted,
    };
    let sent = frame(Protection::Encrypted, &GET, 5);
    let mut f = sent.clone();
    let got = s.unprotect(&mut f, &params).unwrap();
    assert_eq!(got.apdu(), &GET);
    assert!(
        got.admit_into(&mut guard).is_err(),
        "nothing vouches for an encryption-only frame's counter"
    );
    let mut again = sent.clone();
    let got = s.unprotect(&mut again, &params).unwrap();
    assert!(got.admit_into(&mut guard).is_err(), "nor for its replay");
}

fn meter(policy: SecurityPolicy) -> Meter<dlms_sec::counter::Volatile> {
    let mut m = Meter::new(
        METER,
        HEAD_END,
        MasterKey::from_bytes(MK),
        SendCounter::volatile(InvocationCounter::new(1)),
        DeviceCapabilities::default(),
    );
    m.provision(
        Client::Management,
        SecuritySetupKeys::new(
            GlobalUnicastEncryptionKey::from_bytes(GUEK),
            AuthenticationKey::from_bytes(AK),
        ),
        policy,
    )
    .unwrap();
    m
}

/// A key_transfer of a new GUEK, wrapped under the meter's MK.
fn key_transfer() -> Vec<u8> {
    let new_guek = GlobalUnicastEncryptionKey::from_bytes([0x77; 16]);
    let transfer = KeyTransfer::wrap_new_keys(
        &MasterKey::from_bytes(MK),
        NewKeys {
            guek: Some(&new_guek),
            ..NewKeys::default()
        },
    )
    .unwrap();
    let mut apdu = [0u8; 128];
    let n = SecuritySetupMethod::default()
        .emit_key_transfer_request(&transfer, &mut apdu)
        .unwrap();
    apdu[..n].to_vec()
}

#[test]
fn a_meter_installs_keys_only_from_an_authenticated_and_encrypted_transfer() {
    let apdu = key_transfer();
    for (policy, protection) in [
        (SecurityPolicy::Encrypted, Protection::Encrypted),
        (SecurityPolicy::Authenticated, Protection::Authenticated),
    ] {
        let mut m = meter(policy);
        let mut request = frame(protection, &apdu, 5);
        let r = m.handle(Client::Management, &mut request, &mut [0u8; 64]);
        assert!(
            !matches!(r, Ok((_, Handled::KeysInstalled))),
            "{protection:?}: {r:?}"
        );
        assert_eq!(m.installs(), 0, "{protection:?}");
    }
    let mut m = meter(SecurityPolicy::AuthenticatedEncrypted);
    let mut request = frame(Protection::AuthenticatedEncrypted, &apdu, 5);
    let (_, handled) = m
        .handle(Client::Management, &mut request, &mut [0u8; 64])
        .unwrap();
    assert_eq!(handled, Handled::KeysInstalled);
    assert_eq!(m.installs(), 1);
}

#[test]
fn an_encryption_only_context_refuses_authentication_before_any_work() {
    use dlms_sec::error::KeyError;
    let enc_only = Suite0::encryption_only(&GlobalUnicastEncryptionKey::from_bytes(GUEK));
    // Protect: refused before a counter value is drawn.
    let mut counter = SendCounter::volatile(InvocationCounter::new(9));
    let r = enc_only.protect(
        &Protect::unicast(Protection::AuthenticatedEncrypted, HEAD_END),
        &mut counter,
        &GET,
        &mut [0u8; 64],
    );
    assert_eq!(r, Err(dlms_sec::Error::Key(KeyError::NoAuthenticationKey)));
    use dlms_sec::counter::CounterSource;
    assert_eq!(counter.next_counter().unwrap().value(), 9, "no value drawn");
    // Unprotect: an authenticated frame is refused and left as received.
    let params = Unprotect {
        peer_system_title: PeerTitle::Expected(HEAD_END),
        policy: SecurityPolicy::AcceptAnyProtection,
    };
    let sent = frame(Protection::AuthenticatedEncrypted, &GET, 5);
    let mut f = sent.clone();
    assert_eq!(
        enc_only.unprotect(&mut f, &params).unwrap_err(),
        dlms_sec::Error::Key(KeyError::NoAuthenticationKey)
    );
    assert_eq!(f, sent);
    // Encryption only: the same bytes as with the AK.
    let sent = frame(Protection::Encrypted, &GET, 6);
    let mut f = sent.clone();
    assert_eq!(enc_only.unprotect(&mut f, &params).unwrap().apdu(), &GET);
}

#[test]
fn protect_prepared_refuses_before_drawing_a_counter() {
    use dlms_sec::counter::CounterSource;
    use dlms_sec::error::KeyError;
    let s = suite();
    let req = Protect::unicast(Protection::AuthenticatedEncrypted, HEAD_END);
    let header = s.header_len(&req, GET.len()).unwrap();
    // Room for the header and the APDU, none for the tag.
    let mut buf = vec![0u8; header + GET.len()];
    buf[header..].copy_from_slice(&GET);
    let mut counter = SendCounter::volatile(InvocationCounter::new(3));
    let r = s.protect_prepared(&req, &mut counter, &mut buf, GET.len());
    assert!(
        matches!(r, Err(dlms_sec::Error::BufferTooSmall { .. })),
        "{r:?}"
    );
    assert_eq!(counter.next_counter().unwrap().value(), 3, "no value drawn");
    // An encryption-only context asked for authentication: the same.
    let enc_only = Suite0::encryption_only(&GlobalUnicastEncryptionKey::from_bytes(GUEK));
    let mut buf = vec![0u8; header + GET.len() + 12];
    buf[header..header + GET.len()].copy_from_slice(&GET);
    let r = enc_only.protect_prepared(&req, &mut counter, &mut buf, GET.len());
    assert_eq!(r, Err(dlms_sec::Error::Key(KeyError::NoAuthenticationKey)));
    assert_eq!(counter.next_counter().unwrap().value(), 4, "no value drawn");
}

#[test]
fn a_context_says_which_keys_it_holds_and_shows_none() {
    use dlms_sec::key::GlobalBroadcastEncryptionKey;
    let s = suite();
    assert!(s.has_key(KeyKind::GlobalUnicast));
    assert!(!s.has_key(KeyKind::GlobalBroadcast));
    assert!(!s.has_key(KeyKind::Dedicated));
    let s = s.with_broadcast_key(&GlobalBroadcastEncryptionKey::from_bytes([0x55; 16]));
    assert!(s.has_key(KeyKind::GlobalBroadcast));
    let shown = format!("{s:?}");
    assert!(shown.starts_with("Suite0"), "{shown}");
    assert!(shown.contains("broadcast_key: true"), "{shown}");
    assert!(!shown.contains("167") && !shown.contains("A7"), "{shown}");
}

#[test]
fn a_discarded_frame_holds_no_plaintext() {
    let s = suite();
    let params = Unprotect {
        peer_system_title: PeerTitle::Expected(HEAD_END),
        policy: SecurityPolicy::AuthenticatedEncrypted,
    };
    let sent = frame(Protection::AuthenticatedEncrypted, &GET, 5);
    let mut f = sent.clone();
    let got = s.unprotect(&mut f, &params).unwrap();
    assert_eq!(got.apdu(), &GET);
    got.discard();
    assert!(!f.windows(GET.len()).any(|w| w == GET), "plaintext left");
    for (i, (b, r)) in f.iter().zip(&sent).enumerate() {
        assert!(*b == *r || *b == 0, "octet {i}");
    }
}
