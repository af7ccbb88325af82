//! Properties of the protection layer: round trips for random keys,
//! titles, counters, policies, forms and APDU lengths 0..4096; every
//! single-bit flip of an authenticated frame is refused; replays and older
//! counters are refused; arbitrary bytes never panic a parser or unprotect.
//! (D-01..D-04, D-07)

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    reason = "test code: a panic is a failed test"
)]

use dlms_sec::counter::SingleUse;
use dlms_sec::key::{
    AuthenticationKey, DedicatedKey, GlobalBroadcastEncryptionKey, GlobalUnicastEncryptionKey,
};
use dlms_sec::suite0::PeerTitle;
use dlms_sec::suite0::{Protect, Suite0, Unprotect};
use dlms_sec::wire::{CipheredForm, FrameLayout, GeneralCipheringFields, Service};
use dlms_sec::{InvocationCounter, KeyKind, Protection, SecurityPolicy, SystemTitle};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Case {
    guek: [u8; 16],
    gbek: [u8; 16],
    dk: [u8; 16],
    ak: [u8; 16],
    title: [u8; 8],
    ic: u32,
    protection: Protection,
    key: KeyKind,
    form: u8,
    tid: Vec<u8>,
    apdu: Vec<u8>,
}

fn protection() -> impl Strategy<Value = Protection> {
    prop_oneof![
        Just(Protection::Authenticated),
        Just(Protection::Encrypted),
        Just(Protection::AuthenticatedEncrypted)
    ]
}

fn key_kind() -> impl Strategy<Value = KeyKind> {
    prop_oneof![
        Just(KeyKind::GlobalUnicast),
        Just(KeyKind::GlobalBroadcast),
        Just(KeyKind::Dedicated)
    ]
}

fn case(max_len: usize) -> impl Strategy<Value = Case> {
    (
        any::<([u8; 16], [u8; 16], [u8; 16], [u8; 16])>(),
        any::<[u8; 8]>(),
        0..u32::MAX,
        protection(),
        key_kind(),
        0u8..4,
        proptest::collection::vec(any::<u8>(), 0..20),
        0usize..Service::ALL.len(),
        proptest::collection::vec(any::<u8>(), 0..max_len),
    )
        .prop_map(
            |((guek, gbek, dk, ak), title, ic, protection, key, form, tid, svc, mut apdu)| {
                // Forms 0 (service-specific) and 3 (general-ciphering) constrain the APDU or key.
                let form = if form == 3 && key == KeyKind::Dedicated {
                    1
                } else {
                    form
                };
                if form == 0 {
                    apdu.insert(0, Service::ALL[svc].plain_tag());
                }
                Case {
                    guek,
                    gbek,
                    dk,
                    ak,
                    title,
                    ic,
                    protection,
                    key,
                    form,
                    tid,
                    apdu,
                }
            },
        )
}

fn suite(c: &Case) -> Suite0 {
    let mut s = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(c.guek),
        &AuthenticationKey::from_bytes(c.ak),
    )
    .with_broadcast_key(&GlobalBroadcastEncryptionKey::from_bytes(c.gbek));
    s.set_dedicated_key(&DedicatedKey::from_bytes(c.dk));
    s
}

fn form(c: &Case) -> CipheredForm<'_> {
    match c.form {
        0 => CipheredForm::ServiceSpecific,
        1 => CipheredForm::General {
            with_system_title: true,
        },
        2 => CipheredForm::General {
            with_system_title: false,
        },
        _ => CipheredForm::GeneralCiphering(GeneralCipheringFields {
            transaction_id: &c.tid,
            recipient_system_title: Some(SystemTitle::new([0x4D; 8])),
            date_time: &[],
            other_information: &c.tid[..c.tid.len() / 2],
        }),
    }
}

fn protect(c: &Case) -> Vec<u8> {
    let s = suite(c);
    let req = Protect {
        protection: c.protection,
        key: c.key,
        form: form(c),
        system_title: SystemTitle::new(c.title),
    };
    let mut out = vec![0u8; s.frame_len(&req, &c.apdu).unwrap()];
    let n = s
        .protect(
            &req,
            &mut SingleUse::dangerous_new(InvocationCounter::new(c.ic)),
            &c.apdu,
            &mut out,
        )
        .unwrap();
    assert_eq!(n, out.len());
    out
}

fn params(c: &Case, policy: SecurityPolicy) -> Unprotect {
    Unprotect {
        peer_system_title: PeerTitle::Expected(SystemTitle::new(c.title)),
        policy,
    }
}

fn policy_for(p: Protection) -> SecurityPolicy {
    match p {
        Protection::Authenticated => SecurityPolicy::Authenticated,
        Protection::Encrypted => SecurityPolicy::Encrypted,
        Protection::AuthenticatedEncrypted => SecurityPolicy::AuthenticatedEncrypted,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip(c in case(4096)) {
        let s = suite(&c);
        let mut frame = protect(&c);
        // In place gives the same frame.
        let req = Protect { protection: c.protection, key: c.key, form: form(&c), system_title: SystemTitle::new(c.title) };
        let mut buf = vec![0u8; frame.len()];
        buf[..c.apdu.len()].copy_from_slice(&c.apdu);
        let n = s.protect_in_place(&req, &mut SingleUse::dangerous_new(InvocationCounter::new(c.ic)), &mut buf, c.apdu.len()).unwrap();
        prop_assert_eq!(&buf[..n], &frame[..]);
        // Prepared in place (zero copy) gives the same frame too.
        let h = s.header_len(&req, c.apdu.len()).unwrap();
        let mut prepared = vec![0xA5u8; frame.len()];
        prepared[h..h + c.apdu.len()].copy_from_slice(&c.apdu);
        let n = s.protect_prepared(&req, &mut SingleUse::dangerous_new(InvocationCounter::new(c.ic)), &mut prepared, c.apdu.len()).unwrap();
        prop_assert_eq!(&prepared[..n], &frame[..]);
        let got = s.unprotect(&mut frame, &params(&c, policy_for(c.protection))).unwrap();
        prop_assert_eq!(got.apdu(), &c.apdu[..]);
        prop_assert_eq!(got.key(), c.key);
        prop_assert_eq!(got.invocation_counter(), InvocationCounter::new(c.ic));
        prop_assert_eq!(got.protection(), Some(c.protection));
    }

    #[test]
    fn every_single_bit_flip_is_refused(c in case(64).prop_filter("authenticated", |c| c.protection.is_authenticated())) {
        let s = suite(&c);
        let frame = protect(&c);
        let p = params(&c, policy_for(c.protection));
        for bit in 0..frame.len() * 8 {
            let mut f = frame.clone();
            f[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(s.unprotect(&mut f, &p).is_err(), "bit {} of {:02X?}", bit, frame);
        }
    }

    #[test]
    fn truncations_and_extensions_are_refused(c in case(64)) {
        let s = suite(&c);
        let frame = protect(&c);
        let p = params(&c, SecurityPolicy::AcceptAnyProtection);
        for cut in 0..frame.len() {
            let mut f = frame[..cut].to_vec();
            prop_assert!(s.unprotect(&mut f, &p).is_err(), "cut {}", cut);
        }
        let mut longer = frame.clone();
        longer.push(0);
        prop_assert!(s.unprotect(&mut longer, &p).is_err());
    }

    #[test]
    fn replays_and_older_counters_are_refused(c in case(32).prop_filter("authenticated", |c| c.protection.is_authenticated()),
                                             ics in proptest::collection::vec(0u32..50, 1..40)) {
        let s = suite(&c);
        let title = SystemTitle::new(c.title);
        let mut guard = s.replay_guard(title, c.key).unwrap();
        let mut highest: Option<u32> = None;
        for ic in ics {
            let mut cc = c.clone();
            cc.ic = ic;
            let mut frame = protect(&cc);
            let got = s.unprotect(&mut frame, &params(&cc, SecurityPolicy::AcceptAnyProtection)).unwrap();
            let accepted = guard.accept(got.replay_proof().unwrap()).is_ok();
            prop_assert_eq!(accepted, highest.is_none_or(|h| ic > h));
            if accepted { highest = Some(ic); }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), c in case(8)) {
        let s = suite(&c);
        let _ = FrameLayout::parse(&bytes);
        let mut b = bytes.clone();
        let _ = s.unprotect(&mut b, &params(&c, SecurityPolicy::AcceptAnyProtection));
        let mut b = bytes.clone();
        let _ = s.unprotect(&mut b, &Unprotect { peer_system_title: PeerTitle::CarriedByFrame, policy: SecurityPolicy::AcceptAnyProtection });
    }

    #[test]
    fn every_parser_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        use dlms_sec::key::package::PackagedRecord;
        use dlms_sec::wire::{
            CipheredContentRepr, GeneralCipheringRepr, GeneralGloDedRepr, KeyTransfer, SecurityHeader,
            ServiceRepr, axdr, parse_key_transfer_request,
        };
        // Each either parses or returns a typed error; none panics. What
        // parses must re-emit to the same octets where the format is canonical.
        let _ = axdr::decode_length(&bytes);
        let _ = axdr::decode_octet_string(&bytes);
        let _ = SecurityHeader::parse(&bytes);
        let _ = CipheredContentRepr::parse_bytes(&bytes);
        if let Ok(r) = ServiceRepr::parse_bytes(&bytes) {
            let mut out = vec![0u8; r.buffer_len().unwrap()];
            r.emit(&mut out).unwrap();
            prop_assert_eq!(&out, &bytes);
        }
        if let Ok(r) = GeneralGloDedRepr::parse_bytes(&bytes) {
            let mut out = vec![0u8; r.buffer_len().unwrap()];
            r.emit(&mut out).unwrap();
            prop_assert_eq!(&out, &bytes);
        }
        if let Ok(r) = GeneralCipheringRepr::parse_bytes(&bytes) {
            let mut out = vec![0u8; r.buffer_len().unwrap()];
            r.emit(&mut out).unwrap();
            prop_assert_eq!(&out, &bytes);
        }
        if let Ok(t) = KeyTransfer::parse(&bytes) {
            let mut out = vec![0u8; t.buffer_len()];
            t.emit(&mut out).unwrap();
            prop_assert_eq!(&out, &bytes);
        }
        let _ = parse_key_transfer_request(&bytes);
        let _ = PackagedRecord::parse(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic(c in case(64), edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let s = suite(&c);
        let mut frame = protect(&c);
        for (at, v) in edits {
            let i = at % frame.len();
            frame[i] = v;
        }
        let _ = FrameLayout::parse(&frame);
        let _ = s.unprotect(&mut frame, &params(&c, SecurityPolicy::AcceptAnyProtection));
    }
}
