//! Behaviour of the suite-0 protection layer beyond the vectors: the SC
//! byte in the AAD, key choice, policy, the outer service tag, counters,
//! system titles, general-ciphering. (D-01..D-04, D-07)

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    reason = "test code: a panic is a failed test"
)]

mod common;

use dlms_sec::counter::{ReplayGuard, SingleUse};
use dlms_sec::error::{CounterError, Unsupported, WireError};
use dlms_sec::key::{
    AuthenticationKey, DedicatedKey, GlobalBroadcastEncryptionKey, GlobalUnicastEncryptionKey,
};
use dlms_sec::suite0::PeerTitle;
use dlms_sec::suite0::{Protect, Suite0, Unprotect};
use dlms_sec::wire::{CipheredForm, FrameKind, GeneralCipheringFields};
use dlms_sec::{
    AuthError, Error, InvocationCounter, KeyKind, Protection, SecurityPolicy, SystemTitle,
};

const EK: [u8; 16] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F,
];
const AK: [u8; 16] = [
    0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF,
];
const TITLE: SystemTitle = SystemTitle::new([0x4D, 0x4D, 0x4D, 0x00, 0x00, 0xBC, 0x61, 0x4E]);
const GET: [u8; 13] = [
    0xC0, 0x01, 0x00, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0xFF, 0x02, 0x00,
];
const IC: InvocationCounter = InvocationCounter::new(0x0123_4567);

fn suite() -> Suite0 {
    let mut s = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(EK),
        &AuthenticationKey::from_bytes(AK),
    )
    .with_broadcast_key(&GlobalBroadcastEncryptionKey::from_bytes(EK));
    s.set_dedicated_key(&DedicatedKey::from_bytes([0x11; 16]));
    s
}

fn req(protection: Protection, key: KeyKind, form: CipheredForm<'_>) -> Protect<'_> {
    Protect {
        protection,
        key,
        form,
        system_title: TITLE,
    }
}

fn protect(s: &Suite0, r: &Protect<'_>, apdu: &[u8], ic: InvocationCounter) -> Vec<u8> {
    let mut out = vec![0u8; s.frame_len(r, apdu).unwrap()];
    let n = s
        .protect(r, &mut SingleUse::dangerous_new(ic), apdu, &mut out)
        .unwrap();
    assert_eq!(n, out.len());
    out
}

fn any_policy() -> Unprotect {
    Unprotect {
        peer_system_title: PeerTitle::Expected(TITLE),
        policy: SecurityPolicy::AcceptAnyProtection,
    }
}

#[test]
fn broadcast_bit_is_inside_the_aad() {
    // vectors/README.md: SC 0x70 over the Table 40 inputs gives tag A5527490…
    let s = suite();
    let f = protect(
        &s,
        &req(
            Protection::AuthenticatedEncrypted,
            KeyKind::GlobalBroadcast,
            CipheredForm::ServiceSpecific,
        ),
        &GET,
        IC,
    );
    assert_eq!(f[2], 0x70);
    assert_eq!(
        hex::encode_upper(&f[f.len() - 12..]),
        "A5527490DFB85F5DE94ADCC8"
    );
    // Clearing the bit changes the key and the AAD: refused.
    let mut g = f.clone();
    g[2] = 0x30;
    assert_eq!(
        s.unprotect(&mut g, &any_policy()).unwrap_err(),
        Error::Auth(AuthError)
    );
    let mut f2 = f.clone();
    let got = s.unprotect(&mut f2, &any_policy()).unwrap();
    assert_eq!(got.key(), KeyKind::GlobalBroadcast);
    assert_eq!(got.apdu(), &GET);
}

#[test]
fn key_set_bit_must_be_zero_on_dedicated_and_general_ciphering() {
    let s = suite();
    let mut ded = protect(
        &s,
        &req(
            Protection::AuthenticatedEncrypted,
            KeyKind::Dedicated,
            CipheredForm::ServiceSpecific,
        ),
        &GET,
        IC,
    );
    assert_eq!(ded[0], 0xD0);
    ded[2] |= 0x40;
    assert_eq!(
        s.unprotect(&mut ded, &any_policy()).unwrap_err(),
        Error::Wire(WireError::InvalidKeySet)
    );
    let gc = CipheredForm::GeneralCiphering(GeneralCipheringFields::default());
    let mut f = protect(
        &s,
        &req(
            Protection::AuthenticatedEncrypted,
            KeyKind::GlobalBroadcast,
            gc,
        ),
        &GET,
        IC,
    );
    let sc_at = f.len() - 12 - GET.len() - 5;
    assert_eq!(
        f[sc_at], 0x30,
        "general-ciphering never sets the key-set bit"
    );
    assert_eq!(
        s.unprotect(&mut f.clone(), &any_policy()).unwrap().key(),
        KeyKind::GlobalBroadcast
    );
    f[sc_at] |= 0x40;
    assert_eq!(
        s.unprotect(&mut f, &any_policy()).unwrap_err(),
        Error::Wire(WireError::InvalidKeySet)
    );
}

#[test]
fn missing_key_is_a_typed_error() {
    let full = suite();
    let bare = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(EK),
        &AuthenticationKey::from_bytes(AK),
    );
    for key in [KeyKind::Dedicated, KeyKind::GlobalBroadcast] {
        let r = req(
            Protection::AuthenticatedEncrypted,
            key,
            CipheredForm::ServiceSpecific,
        );
        let mut f = protect(&full, &r, &GET, IC);
        assert_eq!(
            bare.unprotect(&mut f, &any_policy()).unwrap_err(),
            Error::KeyNotAvailable(key)
        );
        let mut out = [0u8; 64];
        assert_eq!(
            bare.protect(&r, &mut SingleUse::dangerous_new(IC), &GET, &mut out),
            Err(Error::KeyNotAvailable(key))
        );
    }
    let mut s = suite();
    s.clear_dedicated_key();
    assert!(!s.has_key(KeyKind::Dedicated));
}

#[test]
fn policy_refuses_weaker_protection_and_the_downgrade() {
    let s = suite();
    let ae = protect(
        &s,
        &req(
            Protection::AuthenticatedEncrypted,
            KeyKind::GlobalUnicast,
            CipheredForm::ServiceSpecific,
        ),
        &GET,
        IC,
    );
    // Clear A: the frame now claims encryption only.
    let mut downgraded = ae.clone();
    downgraded[2] = 0x20;
    let before = downgraded.clone();
    for policy in [
        SecurityPolicy::Authenticated,
        SecurityPolicy::AuthenticatedEncrypted,
    ] {
        let p = Unprotect {
            peer_system_title: PeerTitle::Expected(TITLE),
            policy,
        };
        assert_eq!(
            s.unprotect(&mut downgraded, &p).unwrap_err(),
            Error::PolicyViolation {
                required: policy,
                received: Protection::Encrypted
            }
        );
        assert_eq!(downgraded, before);
    }
    for (protection, policy, ok) in [
        (Protection::Authenticated, SecurityPolicy::Encrypted, false),
        (
            Protection::Authenticated,
            SecurityPolicy::Authenticated,
            true,
        ),
        (Protection::Encrypted, SecurityPolicy::Authenticated, false),
        (Protection::Encrypted, SecurityPolicy::Encrypted, true),
        (
            Protection::AuthenticatedEncrypted,
            SecurityPolicy::AuthenticatedEncrypted,
            true,
        ),
        (
            Protection::Authenticated,
            SecurityPolicy::AuthenticatedEncrypted,
            false,
        ),
    ] {
        let mut f = protect(
            &s,
            &req(
                protection,
                KeyKind::GlobalUnicast,
                CipheredForm::ServiceSpecific,
            ),
            &GET,
            IC,
        );
        let p = Unprotect {
            peer_system_title: PeerTitle::Expected(TITLE),
            policy,
        };
        assert_eq!(
            s.unprotect(&mut f, &p).is_ok(),
            ok,
            "{protection:?} under {policy:?}"
        );
    }
}

#[test]
fn outer_service_tag_must_match_the_protected_apdu() {
    let s = suite();
    // A set-request (C1) protected as glo-set-request (C9), relabelled glo-get-request.
    let set = [
        0xC1, 0x01, 0x00, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0xFF, 0x02, 0x00, 0x09, 0x00,
    ];
    for protection in [
        Protection::AuthenticatedEncrypted,
        Protection::Authenticated,
        Protection::Encrypted,
    ] {
        let mut f = protect(
            &s,
            &req(
                protection,
                KeyKind::GlobalUnicast,
                CipheredForm::ServiceSpecific,
            ),
            &set,
            IC,
        );
        assert_eq!(f[0], 0xC9);
        f[0] = 0xC8;
        assert_eq!(
            s.unprotect(&mut f, &any_policy()).unwrap_err(),
            Error::Wire(WireError::ServiceMismatch { ciphered: 0xC8 })
        );
        // No plaintext left behind where there was ciphertext.
        if protection.is_encrypted() {
            assert!(f[7..7 + set.len()].iter().all(|&b| b == 0));
        }
    }
}

#[test]
fn a_service_mismatch_names_no_plaintext_octet() {
    let s = suite();
    // set-request tag 0xC1 (193) inside a frame relabelled glo-get-request.
    let set = [
        0xC1, 0x01, 0x00, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0xFF, 0x02, 0x00, 0x09, 0x00,
    ];
    let mut f = protect(
        &s,
        &req(
            Protection::AuthenticatedEncrypted,
            KeyKind::GlobalUnicast,
            CipheredForm::ServiceSpecific,
        ),
        &set,
        IC,
    );
    f[0] = 0xC8;
    let e = s.unprotect(&mut f, &any_policy()).unwrap_err();
    let shown = format!("{e:?} {e}");
    assert!(
        !shown.contains("193") && !shown.to_uppercase().contains("C1"),
        "the error shows the protected APDU's tag: {shown}"
    );
}

#[test]
fn reserved_counter_and_replays_are_refused() {
    let s = suite();
    let r = req(
        Protection::AuthenticatedEncrypted,
        KeyKind::GlobalUnicast,
        CipheredForm::ServiceSpecific,
    );
    // No sender issues 0xFFFFFFFF; a forged frame carrying it is refused
    // before any key is used.
    let mut f = protect(&s, &r, &GET, IC);
    f[3..7].copy_from_slice(&[0xFF; 4]);
    assert_eq!(
        s.unprotect(&mut f, &any_policy()).unwrap_err(),
        Error::Counter(CounterError::Replay)
    );
    let mut guard = s.replay_guard(TITLE, KeyKind::GlobalUnicast).unwrap();
    for (ic, fresh) in [
        (5, true),
        (5, false),
        (4, false),
        (9, true),
        (6, false),
        (10, true),
    ] {
        let mut f = protect(&s, &r, &GET, InvocationCounter::new(ic));
        let got = s.unprotect(&mut f, &any_policy()).unwrap();
        assert_eq!(
            guard.accept(got.replay_proof().unwrap()).is_ok(),
            fresh,
            "ic {ic}"
        );
    }
    assert_eq!(guard.last_accepted(), Some(InvocationCounter::new(10)));
    // A proof for another key or peer does not move this guard.
    let mut other = ReplayGuard::new(
        SystemTitle::new([0; 8]),
        KeyKind::GlobalUnicast,
        s.key_fingerprint(KeyKind::GlobalUnicast).unwrap(),
    );
    let mut f = protect(&s, &r, &GET, InvocationCounter::new(11));
    let got = s.unprotect(&mut f, &any_policy()).unwrap();
    assert_eq!(
        other.accept(got.replay_proof().unwrap()),
        Err(CounterError::WrongGuard)
    );
}

#[test]
fn system_title_from_frame_or_caller() {
    let s = suite();
    // Service form carries no title: the caller must give it.
    let mut f = protect(
        &s,
        &req(
            Protection::Authenticated,
            KeyKind::GlobalUnicast,
            CipheredForm::ServiceSpecific,
        ),
        &GET,
        IC,
    );
    assert!(matches!(
        s.unprotect(
            &mut f.clone(),
            &Unprotect {
                peer_system_title: PeerTitle::CarriedByFrame,
                policy: SecurityPolicy::AcceptAnyProtection
            }
        ),
        Err(Error::Misuse(_))
    ));
    // A wrong caller title changes the IV: refused.
    let wrong = Unprotect {
        peer_system_title: PeerTitle::Expected(SystemTitle::new([1; 8])),
        ..any_policy()
    };
    assert_eq!(
        s.unprotect(&mut f, &wrong).unwrap_err(),
        Error::Auth(AuthError)
    );
    // general-glo with its title: none needed from the caller; a different expected title is refused.
    let mut g = protect(
        &s,
        &req(
            Protection::AuthenticatedEncrypted,
            KeyKind::GlobalUnicast,
            CipheredForm::General {
                with_system_title: true,
            },
        ),
        &GET,
        IC,
    );
    assert_eq!(
        s.unprotect(
            &mut g.clone(),
            &Unprotect {
                peer_system_title: PeerTitle::CarriedByFrame,
                policy: SecurityPolicy::AcceptAnyProtection
            }
        )
        .unwrap()
        .system_title(),
        TITLE
    );
    assert_eq!(
        s.unprotect(&mut g, &wrong).unwrap_err(),
        Error::Wire(WireError::SystemTitleMismatch)
    );
    // general-glo with an empty title: the caller's title is used.
    let mut e = protect(
        &s,
        &req(
            Protection::AuthenticatedEncrypted,
            KeyKind::GlobalUnicast,
            CipheredForm::General {
                with_system_title: false,
            },
        ),
        &GET,
        IC,
    );
    assert_eq!(&e[..2], &[0xDB, 0x00]);
    assert!(matches!(
        s.unprotect(
            &mut e.clone(),
            &Unprotect {
                peer_system_title: PeerTitle::CarriedByFrame,
                policy: SecurityPolicy::AcceptAnyProtection
            }
        ),
        Err(Error::Misuse(_))
    ));
    assert_eq!(s.unprotect(&mut e, &any_policy()).unwrap().apdu(), &GET);
}

#[test]
fn general_forms_carry_any_apdu_and_service_form_refuses_push() {
    let s = suite();
    let push = [0x0F, 0x00, 0x00, 0x00, 0x01, 0x00, 0x09, 0x02, 0x12, 0x34];
    let mut out = [0u8; 64];
    assert_eq!(
        s.protect(
            &req(
                Protection::AuthenticatedEncrypted,
                KeyKind::GlobalUnicast,
                CipheredForm::ServiceSpecific
            ),
            &mut SingleUse::dangerous_new(IC),
            &push,
            &mut out
        ),
        Err(Error::Unsupported(Unsupported::NoCipheredForm(0x0F)))
    );
    for key in [KeyKind::GlobalUnicast, KeyKind::Dedicated] {
        let mut f = protect(
            &s,
            &req(
                Protection::AuthenticatedEncrypted,
                key,
                CipheredForm::General {
                    with_system_title: true,
                },
            ),
            &push,
            IC,
        );
        assert_eq!(
            f[0],
            if key == KeyKind::Dedicated {
                0xDC
            } else {
                0xDB
            }
        );
        let got = s
            .unprotect(
                &mut f,
                &Unprotect {
                    peer_system_title: PeerTitle::CarriedByFrame,
                    policy: SecurityPolicy::AcceptAnyProtection,
                },
            )
            .unwrap();
        assert_eq!(got.apdu(), &push);
        assert_eq!(got.key(), key);
    }
    assert!(matches!(
        s.protect(
            &req(
                Protection::AuthenticatedEncrypted,
                KeyKind::Dedicated,
                CipheredForm::GeneralCiphering(GeneralCipheringFields::default())
            ),
            &mut SingleUse::dangerous_new(IC),
            &push,
            &mut out
        ),
        Err(Error::Misuse(_))
    ));
}

#[test]
fn general_ciphering_fields_are_authenticated() {
    let s = suite();
    let fields = GeneralCipheringFields {
        transaction_id: &[1, 2, 3, 4, 5, 6, 7, 8],
        recipient_system_title: Some(SystemTitle::new(*b"MMM\0\0\0\0\x01")),
        date_time: &[
            0x07, 0xEA, 0x0B, 0x19, 0x03, 0x0E, 0x36, 0x00, 0x00, 0x80, 0x00, 0x00,
        ],
        other_information: &[],
    };
    for protection in [
        Protection::AuthenticatedEncrypted,
        Protection::Authenticated,
    ] {
        let f = protect(
            &s,
            &req(
                protection,
                KeyKind::GlobalUnicast,
                CipheredForm::GeneralCiphering(fields),
            ),
            &GET,
            IC,
        );
        assert_eq!(f[0], 0xDD);
        let mut copy = f.clone();
        let got = s
            .unprotect(
                &mut copy,
                &Unprotect {
                    peer_system_title: PeerTitle::CarriedByFrame,
                    policy: SecurityPolicy::AcceptAnyProtection,
                },
            )
            .unwrap();
        assert_eq!(got.apdu(), &GET);
        assert_eq!(
            got.kind(),
            FrameKind::GeneralCiphering {
                key: KeyKind::GlobalUnicast
            }
        );
        // The transaction id (offset 2..10) and the date-time enter the AAD.
        for at in [2usize, 9, 30, 35] {
            let mut g = f.clone();
            g[at] ^= 0x01;
            assert!(
                s.unprotect(
                    &mut g,
                    &Unprotect {
                        peer_system_title: PeerTitle::CarriedByFrame,
                        policy: SecurityPolicy::AcceptAnyProtection
                    }
                )
                .is_err(),
                "{protection:?} byte {at}"
            );
        }
    }
}

#[test]
fn suite_and_compression_bits_are_unsupported() {
    let s = suite();
    let f = protect(
        &s,
        &req(
            Protection::AuthenticatedEncrypted,
            KeyKind::GlobalUnicast,
            CipheredForm::ServiceSpecific,
        ),
        &GET,
        IC,
    );
    for (sc, err) in [
        (0x31, Error::Unsupported(Unsupported::SecuritySuite(1))),
        (0x34, Error::Unsupported(Unsupported::SecuritySuite(4))),
        (0xB0, Error::Unsupported(Unsupported::Compression)),
        (0x00, Error::Wire(WireError::NoProtection)),
    ] {
        let mut g = f.clone();
        g[2] = sc;
        assert_eq!(s.unprotect(&mut g, &any_policy()).unwrap_err(), err);
    }
}

#[test]
fn exhausted_counter_protects_nothing() {
    let s = suite();
    let r = req(
        Protection::AuthenticatedEncrypted,
        KeyKind::GlobalUnicast,
        CipheredForm::ServiceSpecific,
    );
    let mut once = SingleUse::dangerous_new(IC);
    let mut out = [0u8; 64];
    assert!(s.protect(&r, &mut once, &GET, &mut out).is_ok());
    let mut out2 = [0u8; 64];
    assert!(matches!(
        s.protect(&r, &mut once, &GET, &mut out2),
        Err(Error::Counter(_))
    ));
    assert_eq!(out2, [0u8; 64]);
}

#[test]
fn debug_shows_no_key_or_plaintext() {
    let s = suite();
    let text = format!("{s:?}");
    assert!(!text.contains("D0") && !text.contains("208"), "{text}");
    let mut f = protect(
        &s,
        &req(
            Protection::AuthenticatedEncrypted,
            KeyKind::GlobalUnicast,
            CipheredForm::ServiceSpecific,
        ),
        &GET,
        IC,
    );
    let got = s.unprotect(&mut f, &any_policy()).unwrap();
    let text = format!("{got:?}");
    assert!(
        text.contains("apdu_len: 13") && !text.contains("192,"),
        "{text}"
    );
}
