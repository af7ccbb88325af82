//! After an error that follows verification, the DCO's frame buffer holds
//! what was received, or zeros: never plaintext.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use dlms_sec::audit::{AuditEvent, AuditSink, MemoryAuditLog, Recorder, Timestamp};
use dlms_sec::counter::{ReplayGuard, SendCounter};
use dlms_sec::key::package::{PackagedKey, RecordId};
use dlms_sec::key::{AuthenticationKey, DcoKey, GlobalUnicastEncryptionKey, KeyRole, SharedKey};
use dlms_sec::provider::{CryptoProvider, SoftwareDco};
use dlms_sec::suite0::Protect;
use dlms_sec::{
    Client, Error, InvocationCounter, KeyKind, Protection, SecurityPolicy, Suite0, SystemTitle,
};
use dlms_sec_services::dco::{ClientRecords, Dco, ResponseCheck};

const DCO_TITLE: SystemTitle = SystemTitle::new(*b"DCO\x00\x00\x00\x00\x01");
const METER: SystemTitle = SystemTitle::new(*b"MMM\x00\x00\x00\x00\x07");
const T0: Timestamp = Timestamp(1_795_000_000);
/// A get-response the meter sends: the plaintext that must not be left behind.
const ANSWER: [u8; 14] = [
    0xC4, 0x01, 0xC1, 0x00, 0x09, 0x08, 0x4D, 0x4D, 0x4D, 0x00, 0x00, 0x00, 0x00, 0x07,
];
const AK: [u8; 16] = [0xA7; 16];
const GUEK: [u8; 16] = [0x3E; 16];

struct Setup {
    dco: Dco<SoftwareDco>,
    ak: PackagedKey<AuthenticationKey>,
    guek: PackagedKey<GlobalUnicastEncryptionKey>,
}

fn setup() -> Setup {
    let provider = SoftwareDco::new(
        &DcoKey::from_bytes([0x11; 16]),
        &SharedKey::from_bytes([0x22; 16]),
    );
    let id = |role| RecordId {
        device: METER,
        client: Some(Client::Management),
        role,
        generation: 0,
    };
    let ak = provider
        .package(
            &AuthenticationKey::from_bytes(AK),
            id(KeyRole::Authentication),
        )
        .unwrap();
    let guek = provider
        .package(
            &GlobalUnicastEncryptionKey::from_bytes(GUEK),
            id(KeyRole::GlobalUnicastEncryption),
        )
        .unwrap();
    Setup {
        dco: Dco::new(provider, DCO_TITLE),
        ak,
        guek,
    }
}

/// The meter's answer under authenticated encryption, with counter `ic`.
fn answer(ic: u32) -> Vec<u8> {
    let suite = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(GUEK),
        &AuthenticationKey::from_bytes(AK),
    );
    let mut counter = SendCounter::volatile(InvocationCounter::new(ic));
    let mut out = [0u8; 64];
    let n = suite
        .protect(
            &Protect::unicast(Protection::AuthenticatedEncrypted, METER),
            &mut counter,
            &ANSWER,
            &mut out,
        )
        .unwrap();
    out[..n].to_vec()
}

/// Every octet is as received or zero, and the plaintext is nowhere.
fn holds_no_plaintext(buf: &[u8], received: &[u8]) {
    assert_eq!(buf.len(), received.len());
    for (i, (b, r)) in buf.iter().zip(received).enumerate() {
        assert!(
            *b == *r || *b == 0,
            "octet {i}: {b:02X} is neither received nor zero"
        );
    }
    assert!(
        !buf.windows(ANSWER.len()).any(|w| w == ANSWER),
        "the plaintext is in the buffer"
    );
}

struct FailingSink;

impl AuditSink for FailingSink {
    fn record(&mut self, _: &AuditEvent) -> dlms_sec::Result<()> {
        Err(Error::Audit)
    }
}

#[test]
fn a_replayed_answer_leaves_no_plaintext() {
    let s = setup();
    let records = ClientRecords::new(&s.ak, &s.guek);
    let mut guard = ReplayGuard::new(
        METER,
        KeyKind::GlobalUnicast,
        s.dco.key_fingerprint(records).unwrap(),
    );
    let mut log = MemoryAuditLog::<16>::new();
    let received = answer(5);

    let mut first = received.clone();
    let check = ResponseCheck {
        policy: SecurityPolicy::AuthenticatedEncrypted,
        guard: &mut guard,
    };
    let got = s
        .dco
        .unprotect(records, &mut first, check, &mut Recorder::new(&mut log, T0))
        .unwrap();
    assert_eq!(got.apdu(), &ANSWER);

    let mut again = received.clone();
    let check = ResponseCheck {
        policy: SecurityPolicy::AuthenticatedEncrypted,
        guard: &mut guard,
    };
    let r = s
        .dco
        .unprotect(records, &mut again, check, &mut Recorder::new(&mut log, T0));
    assert!(matches!(r, Err(Error::Counter(_))), "{r:?}");
    holds_no_plaintext(&again, &received);
}

#[test]
fn an_older_answer_is_refused_before_it_is_decrypted() {
    let s = setup();
    let records = ClientRecords::new(&s.ak, &s.guek);
    let mut guard = ReplayGuard::resume(
        METER,
        KeyKind::GlobalUnicast,
        s.dco.key_fingerprint(records).unwrap(),
        Some(InvocationCounter::new(9)),
    );
    let mut log = MemoryAuditLog::<16>::new();
    let received = answer(5);
    let mut frame = received.clone();
    let check = ResponseCheck {
        policy: SecurityPolicy::AuthenticatedEncrypted,
        guard: &mut guard,
    };
    let r = s
        .dco
        .unprotect(records, &mut frame, check, &mut Recorder::new(&mut log, T0));
    assert!(matches!(r, Err(Error::Counter(_))), "{r:?}");
    assert_eq!(frame, received, "refused before any byte changed");
}

#[test]
fn a_failed_audit_record_leaves_no_plaintext() {
    let s = setup();
    let records = ClientRecords::new(&s.ak, &s.guek);
    let mut guard = ReplayGuard::new(
        METER,
        KeyKind::GlobalUnicast,
        s.dco.key_fingerprint(records).unwrap(),
    );
    let received = answer(5);
    let mut frame = received.clone();
    let check = ResponseCheck {
        policy: SecurityPolicy::AuthenticatedEncrypted,
        guard: &mut guard,
    };
    let r = s.dco.unprotect(
        records,
        &mut frame,
        check,
        &mut Recorder::new(&mut FailingSink, T0),
    );
    assert_eq!(r.err(), Some(Error::Audit));
    holds_no_plaintext(&frame, &received);
}
