//! The fuzz harness of `dlms-sec`: one plain function per fuzz target.
//!
//! Each function takes arbitrary bytes and panics only when an invariant of
//! the library is broken. The cargo-fuzz targets in `fuzz/fuzz_targets/`
//! are one-line calls into this crate, and the root crate's
//! `tests/fuzz_corpus.rs` replays every committed corpus file through the
//! same functions on stable, so the targets cannot rot.
//!
//! | target | what it checks |
//! |---|---|
//! | [`parse_wire`] | every ciphered form, general-ciphering, ciphered content, `FrameLayout`: no panic; canonical re-emit byte for byte |
//! | [`parse_fields`] | A-XDR length, security header, key_transfer parameter and action-request, packaged-key record: no panic; re-emit byte for byte |
//! | [`unprotect`] | fixed keys: an error or a plaintext; on success protecting the plaintext again with the same parameters gives the same frame |
//! | [`round_trip`] | arbitrary keys/policy/form/APDU: protect then unprotect is the identity; tampering with payload or tag is detected |
//! | [`key_transfer_install`] | the meter installs every key of a transfer or none |
//! | [`replay_guard`] | arbitrary counter sequences, through real protected frames: a counter at or below the last accepted is never accepted |

#![forbid(unsafe_code)]

use dlms_sec::counter::{ReplayGuard, SingleUse};
use dlms_sec::error::CounterError;
use dlms_sec::key::package::PackagedRecord;
use dlms_sec::key::wrap::{KeyId, WrappedKey};
use dlms_sec::key::{
    AuthenticationKey, DedicatedKey, GlobalBroadcastEncryptionKey, GlobalUnicastEncryptionKey,
    MasterKey,
};
use dlms_sec::meter::key_transfer::{NewKeys, SecuritySetupKeys, stage};
use dlms_sec::suite0::PeerTitle;
use dlms_sec::suite0::{Protect, Unprotect};
use dlms_sec::wire::{
    CipheredContentRepr, CipheredForm, FrameKind, FrameLayout, GeneralCipheringFields,
    GeneralCipheringRepr, GeneralGloDedRepr, KeyTransfer, SecurityHeader, SecuritySetupMethod,
    ServiceRepr, axdr, parse_key_transfer_request,
};
use dlms_sec::{
    Error, InvocationCounter, KeyKind, Protection, SecurityPolicy, Suite0, SystemTitle,
};

/// The Green Book example keys (the vectors' keys), used by the fixed-key targets.
pub const GUEK: [u8; 16] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F,
];
/// The vectors' authentication key.
pub const AK: [u8; 16] = [
    0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF,
];
/// The vectors' dedicated key.
pub const DK: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,
];
/// A broadcast key for the fixed-key targets (no vector uses one).
pub const GBEK: [u8; 16] = [0xB0; 16];
/// The vectors' sender title.
pub const TITLE: [u8; 8] = [0x4D, 0x4D, 0x4D, 0x00, 0x00, 0xBC, 0x61, 0x4E];
/// The meter's Master Key in [`key_transfer_install`].
pub const MK: [u8; 16] = [0x0F; 16];

/// A small reader over fuzz input: every read succeeds, yielding zeros
/// once the input is used up, so every input decodes to something.
#[derive(Debug)]
pub struct FuzzInput<'a> {
    data: &'a [u8],
}

impl<'a> FuzzInput<'a> {
    /// A reader over `data`.
    #[must_use]
    pub const fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// One octet (0 past the end).
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// `N` octets, zero-padded past the end.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        out
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array())
    }

    /// Up to `n` octets.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.data)
    }

    /// Whether the input is used up.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

fn protection_from(b: u8) -> Protection {
    match b % 3 {
        0 => Protection::Authenticated,
        1 => Protection::Encrypted,
        _ => Protection::AuthenticatedEncrypted,
    }
}

fn policy_from(b: u8) -> SecurityPolicy {
    match b % 4 {
        0 => SecurityPolicy::AcceptAnyProtection,
        1 => SecurityPolicy::Authenticated,
        2 => SecurityPolicy::Encrypted,
        _ => SecurityPolicy::AuthenticatedEncrypted,
    }
}

fn key_kind_from(b: u8) -> KeyKind {
    match b % 3 {
        0 => KeyKind::GlobalUnicast,
        1 => KeyKind::GlobalBroadcast,
        _ => KeyKind::Dedicated,
    }
}

/// The suite-0 context of the fixed-key targets: GUEK, GBEK, DK and AK.
#[must_use]
pub fn fixed_suite() -> Suite0 {
    let mut s = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(GUEK),
        &AuthenticationKey::from_bytes(AK),
    )
    .with_broadcast_key(&GlobalBroadcastEncryptionKey::from_bytes(GBEK));
    s.set_dedicated_key(&DedicatedKey::from_bytes(DK));
    s
}

fn emit_all(
    len: Result<usize, impl core::fmt::Debug>,
    emit: impl Fn(&mut [u8]) -> Result<usize, Error>,
) -> Vec<u8> {
    let len = len.expect("a parsed value has an encoded length");
    let mut out = vec![0u8; len];
    let n = emit(&mut out).expect("a parsed value re-emits");
    assert_eq!(n, len, "emit writes buffer_len octets");
    if len > 0 {
        // One octet short must be refused, not written past.
        let mut short = vec![0u8; len - 1];
        assert!(
            matches!(emit(&mut short), Err(Error::BufferTooSmall { .. })),
            "a short buffer is refused"
        );
    }
    out
}

// ---------------------------------------------------------------- parsers

/// Every ciphered-frame parser on the same bytes: `FrameLayout::parse`,
/// `ServiceRepr`, `GeneralGloDedRepr`, `GeneralCipheringRepr` and
/// `CipheredContentRepr`. Each that accepts must re-emit the input byte for
/// byte (only minimal lengths are accepted, so every frame has one encoding),
/// and `FrameLayout`'s ranges must agree with the representation.
pub fn parse_wire(data: &[u8]) {
    if let Ok(r) = ServiceRepr::parse_bytes(data) {
        let out = emit_all(r.buffer_len(), |o| r.emit(o));
        assert_eq!(out, data, "service-specific frame re-emits");
    }
    if let Ok(r) = GeneralGloDedRepr::parse_bytes(data) {
        let out = emit_all(r.buffer_len(), |o| r.emit(o));
        assert_eq!(out, data, "general-glo/ded frame re-emits");
    }
    if let Ok(r) = GeneralCipheringRepr::parse_bytes(data) {
        let out = emit_all(r.buffer_len(), |o| r.emit(o));
        assert_eq!(out, data, "general-ciphering frame re-emits");
    }
    if let Ok(r) = CipheredContentRepr::parse_bytes(data) {
        let out = emit_all(Ok::<_, ()>(r.buffer_len()), |o| r.emit(o));
        assert_eq!(out, data, "ciphered content re-emits");
    }
    if let Ok(layout) = FrameLayout::parse(data) {
        check_layout(data, &layout);
    }
}

fn check_layout(data: &[u8], layout: &FrameLayout) {
    let content = layout.payload.start - 5..layout.auth_tag.end;
    assert_eq!(layout.auth_tag.end, data.len(), "the tag ends the frame");
    assert_eq!(layout.payload.end, layout.auth_tag.start);
    let expected_tag = if layout.security_control.authenticated() {
        12
    } else {
        0
    };
    assert_eq!(layout.auth_tag.len(), expected_tag, "a tag exactly under A");
    let header = SecurityHeader::parse(&data[content.clone()]).expect("the content has a header");
    assert_eq!(header.security_control, layout.security_control);
    assert_eq!(header.invocation_counter, layout.invocation_counter);
    let content_repr =
        CipheredContentRepr::parse_bytes(&data[content]).expect("the layout's content parses");
    assert_eq!(content_repr.payload, &data[layout.payload.clone()]);
    match layout.kind {
        FrameKind::Service(s) => {
            let r = ServiceRepr::parse_bytes(data).expect("a service frame parses as one");
            assert_eq!(r.service, s);
            assert_eq!(r.content, content_repr);
            assert!(layout.system_title.is_none());
        }
        FrameKind::GeneralGlo | FrameKind::GeneralDed => {
            let r = GeneralGloDedRepr::parse_bytes(data).expect("a general frame parses as one");
            assert_eq!(r.content, content_repr);
            assert_eq!(r.system_title, layout.system_title);
        }
        FrameKind::GeneralCiphering { .. } => {
            let r = GeneralCipheringRepr::parse_bytes(data)
                .expect("a general-ciphering frame parses as one");
            assert_eq!(r.content, content_repr);
            assert_eq!(r.originator_system_title, layout.system_title);
            let fields_len = r.aad_fields_len().expect("the AAD fields have a length");
            assert_eq!(layout.aad_fields.len(), fields_len);
        }
    }
}

/// The A-XDR length: decode, then re-encode the minimal form and compare;
/// encode the first four octets as a value and decode it back.
pub fn axdr_length(data: &[u8]) {
    if let Ok((len, rest)) = axdr::decode_length(data) {
        let used = data.len() - rest.len();
        let mut out = [0u8; axdr::MAX_ENCODED_LENGTH_LEN];
        let n = axdr::encode_length(len, &mut out).expect("a decoded length re-encodes");
        assert_eq!(n, axdr::encoded_length_len(len));
        assert_eq!(
            &out[..n],
            &data[..used],
            "a decoded length re-encodes byte for byte"
        );
    }
    let mut r = FuzzInput::new(data);
    let value = r.u32() as usize;
    let mut out = [0u8; axdr::MAX_ENCODED_LENGTH_LEN];
    let n = axdr::encode_length(value, &mut out).expect("every u32 has an encoding");
    let (back, rest) = axdr::decode_length(&out[..n]).expect("an encoded length decodes");
    assert_eq!(back, value);
    assert!(rest.is_empty());
    if let Ok((value, rest)) = axdr::decode_octet_string(data) {
        assert_eq!(
            value.len() + rest.len() + axdr::encoded_length_len(value.len()),
            data.len()
        );
    }
}

/// The security header: parse the first five octets, re-emit them.
pub fn security_header(data: &[u8]) {
    if let Ok(h) = SecurityHeader::parse(data) {
        assert_eq!(&h.to_bytes()[..], &data[..5]);
        let mut out = [0u8; 5];
        assert_eq!(h.emit(&mut out).ok(), Some(h.buffer_len()));
        assert_eq!(&out[..], &data[..5]);
    } else {
        assert!(data.len() < 5, "five octets always make a header");
    }
}

/// The key_transfer parameter, and the action-request that carries one:
/// parse, re-emit byte for byte.
pub fn key_transfer_param(data: &[u8]) {
    if let Ok(t) = KeyTransfer::parse(data) {
        assert!(!t.is_empty());
        let out = emit_all(Ok::<_, ()>(t.buffer_len()), |o| t.emit(o));
        assert_eq!(out, data, "a key_transfer parameter re-emits");
    }
    if let Ok((method, t)) = parse_key_transfer_request(data) {
        let out = emit_all(Ok::<_, ()>(method.key_transfer_request_len(&t)), |o| {
            method.emit_key_transfer_request(&t, o)
        });
        assert_eq!(out, data, "a key_transfer request re-emits");
    }
}

/// The packaged-key record: parse, and the record's bytes are the input.
pub fn packaged_record(data: &[u8]) {
    if let Ok(r) = PackagedRecord::parse(data) {
        assert_eq!(&r.as_bytes()[..], data);
        let id = r.id();
        assert_eq!(id.role, r.role());
        assert_eq!(id.client, r.client());
        let again = PackagedRecord::parse(r.as_bytes()).expect("a parsed record parses again");
        assert_eq!(again, r);
    }
}

/// Every field parser on the same bytes (and on the bytes after the first,
/// so a fuzzer-chosen prefix can steer): [`axdr_length`],
/// [`security_header`], [`key_transfer_param`], [`packaged_record`].
pub fn parse_fields(data: &[u8]) {
    axdr_length(data);
    security_header(data);
    key_transfer_param(data);
    packaged_record(data);
}

// ---------------------------------------------------------------- unprotect

/// `Suite0::unprotect` with the fixed keys ([`fixed_suite`]).
///
/// Input: one octet choosing the policy (bits 0-1) and the peer title the
/// receiver supplies (bits 2-3: the vectors' title, none, or another), then
/// the frame. An error or a plaintext, never a panic; on success,
/// protecting the plaintext again with the parameters the frame carried
/// (protection, key, form, title, counter through `SingleUse`) gives the
/// same frame.
pub fn unprotect(data: &[u8]) {
    let Some((&ctl, frame)) = data.split_first() else {
        return;
    };
    let policy = policy_from(ctl);
    let peer = match (ctl >> 2) % 4 {
        0 | 3 => Some(SystemTitle::new(TITLE)),
        1 => None,
        _ => Some(SystemTitle::new(*b"OTHERST\x01")),
    };
    let suite = fixed_suite();
    let original = frame.to_vec();
    let mut buf = frame.to_vec();
    let params = Unprotect {
        peer_system_title: peer.map_or(PeerTitle::CarriedByFrame, PeerTitle::Expected),
        policy,
    };
    let result = suite.unprotect(&mut buf, &params);
    let received = match result {
        Ok(r) => r,
        Err(_) => {
            assert!(
                buf == original || buf.iter().zip(&original).all(|(b, o)| b == o || *b == 0),
                "after an error the buffer holds what was received, or zeros"
            );
            return;
        }
    };
    let layout = FrameLayout::parse(&original).expect("an unprotected frame parses");
    let protection = received.protection().expect("a protection");
    assert!(policy.permits(protection), "the policy is enforced");
    assert_eq!(received.invocation_counter(), layout.invocation_counter);
    assert_ne!(
        received.invocation_counter().value(),
        InvocationCounter::RESERVED
    );
    assert_eq!(
        received.replay_proof().is_some(),
        protection.is_authenticated(),
        "a replay proof exactly for authenticated frames"
    );
    if let (Some(carried), Some(given)) = (layout.system_title, peer) {
        assert_eq!(
            carried, given,
            "a carried title must match the expected one"
        );
    }
    let apdu = received.apdu().to_vec();
    let key = received.key();
    let title = received.system_title();
    let ic = received.invocation_counter();
    let kind = received.kind();
    if protection == Protection::Authenticated {
        assert_eq!(
            &apdu[..],
            &original[layout.payload.clone()],
            "authentication only leaves the APDU in clear"
        );
    }
    let gc_repr;
    let form = match kind {
        FrameKind::Service(_) => CipheredForm::ServiceSpecific,
        FrameKind::GeneralGlo | FrameKind::GeneralDed => CipheredForm::General {
            with_system_title: layout.system_title.is_some(),
        },
        FrameKind::GeneralCiphering { .. } => {
            gc_repr = GeneralCipheringRepr::parse_bytes(&original).expect("parsed before");
            if gc_repr.originator_system_title.is_none() {
                // A sender always puts its own title in general-ciphering:
                // a frame without one has no protect() that makes it.
                return;
            }
            CipheredForm::GeneralCiphering(GeneralCipheringFields {
                transaction_id: gc_repr.transaction_id,
                recipient_system_title: gc_repr.recipient_system_title,
                date_time: gc_repr.date_time,
                other_information: gc_repr.other_information,
            })
        }
    };
    let req = Protect {
        protection,
        key,
        form,
        system_title: title,
    };
    let mut out = vec![0u8; original.len()];
    let n = suite
        .protect(&req, &mut SingleUse::dangerous_new(ic), &apdu, &mut out)
        .expect("the plaintext of an accepted frame protects again");
    assert_eq!(
        &out[..n],
        &original[..],
        "protect(unprotect(frame)) == frame"
    );
}

// ---------------------------------------------------------------- round trip

/// Arbitrary keys, protection, key kind, form, title, counter, policy and
/// APDU: protect, then unprotect with the same keys gives the APDU back
/// (and the title, counter, key); a policy the protection does not meet is
/// refused; under authentication a flipped payload or tag octet is refused.
///
/// Input: GUEK, GBEK, DK, AK (16 octets each), a control octet (protection,
/// key kind, policy), a form octet, the title (8), the counter (4), then for
/// general-ciphering four field lengths and fields, one tamper octet, and
/// the APDU (the rest).
pub fn round_trip(data: &[u8]) {
    let mut r = FuzzInput::new(data);
    let guek = r.array::<16>();
    let gbek = r.array::<16>();
    let dk = r.array::<16>();
    let ak = r.array::<16>();
    let ctl = r.u8();
    let protection = protection_from(ctl);
    let key = key_kind_from(ctl >> 2);
    let policy = policy_from(ctl >> 4);
    let give_title = ctl & 0x40 != 0;
    let form_octet = r.u8();
    let title = SystemTitle::new(r.array());
    let ic = InvocationCounter::new(r.u32());
    let (tid, recipient, date_time, other, dt_buf);
    let form = match form_octet % 4 {
        0 => CipheredForm::ServiceSpecific,
        1 => CipheredForm::General {
            with_system_title: true,
        },
        2 => CipheredForm::General {
            with_system_title: false,
        },
        _ => {
            let lens = r.array::<3>();
            tid = r.bytes(usize::from(lens[0] % 17));
            recipient = (form_octet & 0x10 != 0).then(|| SystemTitle::new(r.array()));
            dt_buf = r.array::<12>();
            date_time = if form_octet & 0x20 != 0 {
                &dt_buf[..]
            } else {
                &[][..]
            };
            other = r.bytes(usize::from(lens[1] % 17));
            let _ = lens[2];
            CipheredForm::GeneralCiphering(GeneralCipheringFields {
                transaction_id: tid,
                recipient_system_title: recipient,
                date_time,
                other_information: other,
            })
        }
    };
    let tamper = r.u8();
    let apdu = r.rest();

    let mut sender = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(guek),
        &AuthenticationKey::from_bytes(ak),
    )
    .with_broadcast_key(&GlobalBroadcastEncryptionKey::from_bytes(gbek));
    sender.set_dedicated_key(&DedicatedKey::from_bytes(dk));
    let mut receiver = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(guek),
        &AuthenticationKey::from_bytes(ak),
    )
    .with_broadcast_key(&GlobalBroadcastEncryptionKey::from_bytes(gbek));
    receiver.set_dedicated_key(&DedicatedKey::from_bytes(dk));

    let req = Protect {
        protection,
        key,
        form,
        system_title: title,
    };
    let expected_len = sender.frame_len(&req, apdu);
    // Room for the largest header this input can ask for.
    let mut frame = vec![0u8; apdu.len() + 128];
    let mut counter = SingleUse::dangerous_new(ic);
    let n = match sender.protect(&req, &mut counter, apdu, &mut frame) {
        Ok(n) => n,
        Err(e) => {
            // Refusals the caller's choices explain, and nothing else.
            let explained = match e {
                Error::Counter(CounterError::Exhausted) => {
                    ic.value() == InvocationCounter::RESERVED
                }
                Error::Unsupported(_) => matches!(form, CipheredForm::ServiceSpecific),
                Error::Misuse(_) => {
                    (matches!(form, CipheredForm::ServiceSpecific) && apdu.is_empty())
                        || (matches!(form, CipheredForm::GeneralCiphering(_))
                            && (key == KeyKind::Dedicated))
                }
                _ => false,
            };
            assert!(
                explained,
                "protect refused a valid request: {e:?} for {req:?}"
            );
            return;
        }
    };
    assert_eq!(expected_len.ok(), Some(n), "frame_len predicts protect");
    frame.truncate(n);
    let sent = frame.clone();
    parse_wire(&sent);

    let carries_title = match form {
        CipheredForm::ServiceSpecific => false,
        CipheredForm::General { with_system_title } => with_system_title,
        CipheredForm::GeneralCiphering(_) => true,
    };
    let params = Unprotect {
        peer_system_title: if give_title || !carries_title {
            PeerTitle::Expected(title)
        } else {
            PeerTitle::CarriedByFrame
        },
        policy,
    };
    let result = receiver.unprotect(&mut frame, &params);
    if !policy.permits(protection) {
        assert!(
            matches!(result, Err(Error::PolicyViolation { .. })),
            "a weaker frame than the policy is refused"
        );
        return;
    }
    let got = result.expect("a frame protected with the same keys unprotects");
    assert_eq!(got.apdu(), apdu, "round trip identity");
    assert_eq!(got.key(), key);
    assert_eq!(got.system_title(), title);
    assert_eq!(got.invocation_counter(), ic);
    assert_eq!(got.protection(), Some(protection));
    assert_eq!(got.replay_proof().is_some(), protection.is_authenticated());
    let proof_ok = got
        .replay_proof()
        .is_none_or(|p| p.peer() == title && p.key() == key && p.invocation_counter() == ic);
    assert!(proof_ok, "the replay proof names the frame");

    if protection.is_authenticated() {
        // Flip one octet of the payload or the tag: the tag must catch it.
        let layout = FrameLayout::parse(&sent).expect("a protected frame parses");
        let covered = layout.payload.start..layout.auth_tag.end;
        let span = covered.len();
        if span > 0 {
            let at = covered.start + usize::from(tamper) % span;
            let mut bad = sent.clone();
            bad[at] ^= 0x01 | (tamper >> 1);
            let params = Unprotect {
                peer_system_title: PeerTitle::Expected(title),
                policy: SecurityPolicy::AcceptAnyProtection,
            };
            assert!(
                receiver.unprotect(&mut bad, &params).is_err(),
                "a flipped payload or tag octet is refused"
            );
        }
    }
}

// ---------------------------------------------------------------- key transfer

/// A deterministic fingerprint of a meter's keys: a fixed APDU protected
/// under the GUEK (and the GBEK when held) with a fixed counter, and a fixed
/// key wrapped under the MK (RFC 3394 is deterministic).
fn fingerprint(mk: &MasterKey, keys: &SecuritySetupKeys) -> Vec<u8> {
    let suite = keys.suite0();
    let apdu = [
        0xC0, 0x01, 0xC1, 0x00, 0x08, 0, 0, 1, 0, 0, 0xFF, 0x02, 0x00,
    ];
    let mut out = Vec::new();
    let mut kinds = vec![KeyKind::GlobalUnicast];
    if keys.has_broadcast_key() {
        kinds.push(KeyKind::GlobalBroadcast);
    }
    for key in kinds {
        let req = Protect {
            protection: Protection::AuthenticatedEncrypted,
            key,
            form: CipheredForm::ServiceSpecific,
            system_title: SystemTitle::new(TITLE),
        };
        let mut frame = [0u8; 64];
        let n = suite
            .protect(
                &req,
                &mut SingleUse::dangerous_new(InvocationCounter::new(7)),
                &apdu,
                &mut frame,
            )
            .expect("the fingerprint APDU protects");
        out.extend_from_slice(&frame[..n]);
    }
    let probe = AuthenticationKey::from_bytes([0x5A; 16]);
    let t = KeyTransfer::wrap_new_keys(
        mk,
        NewKeys {
            ak: Some(&probe),
            ..NewKeys::default()
        },
    )
    .expect("one key wraps");
    let mut buf = [0u8; 64];
    let n = t.emit(&mut buf).expect("emits");
    out.extend_from_slice(&buf[..n]);
    out
}

fn meter_keys(gbek: bool) -> (MasterKey, SecuritySetupKeys) {
    let keys = SecuritySetupKeys::new(
        GlobalUnicastEncryptionKey::from_bytes(GUEK),
        AuthenticationKey::from_bytes(AK),
    );
    let keys = if gbek {
        keys.with_broadcast_key(GlobalBroadcastEncryptionKey::from_bytes(GBEK))
    } else {
        keys
    };
    (MasterKey::from_bytes(MK), keys)
}

/// The meter side of key_transfer: install all keys or none.
///
/// Input: a control octet, then either (bit 0 clear) the raw parameter, or
/// (bit 0 set) up to four entries, each a key id octet, a mode octet and 24
/// octets: a new key (16) wrapped under the meter's MK, or (mode bit 0 set)
/// the 24 octets taken as the wrapped value itself. Bit 1 sends the
/// parameter inside an action-request; bit 2 gives the meter a GBEK.
///
/// On success the fingerprint under the new keys equals the one computed
/// from the expected keys; on any error it equals the one from before.
pub fn key_transfer_install(data: &[u8]) {
    let mut r = FuzzInput::new(data);
    let ctl = r.u8();
    let (mut mk, mut keys) = meter_keys(ctl & 0x04 != 0);
    let before = fingerprint(&mk, &keys);

    // The expected new keys, when the input builds the transfer itself.
    let mut expected: [Option<[u8; 16]>; 4] = [None; 4];
    let param: Vec<u8> = if ctl & 0x01 == 0 {
        r.rest().to_vec()
    } else {
        let count = 1 + usize::from(r.u8() % 4);
        let mut t = KeyTransfer::new();
        for _ in 0..count {
            let Some(id) = KeyId::from_code(r.u8() % 4) else {
                continue;
            };
            let mode = r.u8();
            let raw = r.array::<24>();
            let wrapped = if mode & 0x01 != 0 {
                // A value taken as is: forged, unless the fuzzer copied a
                // genuine wrapped value in (the corpus holds some).
                WrappedKey::new(raw)
            } else {
                let mut k = [0u8; 16];
                k.copy_from_slice(&raw[..16]);
                let mk_now = MasterKey::from_bytes(MK);
                let w = match id {
                    KeyId::GlobalUnicastEncryption => dlms_sec::key::wrap::wrap(
                        &mk_now,
                        &GlobalUnicastEncryptionKey::from_bytes(k),
                    ),
                    KeyId::GlobalBroadcastEncryption => dlms_sec::key::wrap::wrap(
                        &mk_now,
                        &GlobalBroadcastEncryptionKey::from_bytes(k),
                    ),
                    KeyId::Authentication => {
                        dlms_sec::key::wrap::wrap(&mk_now, &AuthenticationKey::from_bytes(k))
                    }
                    KeyId::Master => dlms_sec::key::wrap::wrap(&mk_now, &MasterKey::from_bytes(k)),
                };
                if t.get(id).is_none() {
                    expected[usize::from(id.code())] = Some(k);
                }
                w
            };
            // A duplicate id is refused and not pushed.
            let _ = t.push(id, wrapped);
        }
        if t.is_empty() {
            return;
        }
        let mut buf = vec![0u8; t.buffer_len()];
        let n = t.emit(&mut buf).expect("a built transfer emits");
        buf.truncate(n);
        buf
    };

    let transfer = if ctl & 0x02 != 0 {
        let method = SecuritySetupMethod::default();
        let Ok(t) = KeyTransfer::parse(&param) else {
            assert_eq!(fingerprint(&mk, &keys), before);
            return;
        };
        let mut req = vec![0u8; method.key_transfer_request_len(&t)];
        let n = method
            .emit_key_transfer_request(&t, &mut req)
            .expect("a parsed transfer emits as a request");
        let (m, t2) = parse_key_transfer_request(&req[..n]).expect("an emitted request parses");
        assert_eq!(m, method);
        assert_eq!(t2, t);
        t2
    } else {
        match KeyTransfer::parse(&param) {
            Ok(t) => t,
            Err(_) => {
                assert_eq!(fingerprint(&mk, &keys), before);
                return;
            }
        }
    };

    match stage(&mk, &transfer) {
        Err(_) => {
            assert_eq!(
                fingerprint(&mk, &keys),
                before,
                "a refused transfer changes nothing"
            );
            if ctl & 0x01 != 0 {
                assert!(
                    transfer
                        .entries()
                        .iter()
                        .any(|e| !wrapped_under_meter_mk(e.key_id, &e.wrapped)),
                    "a transfer of well-wrapped keys is staged"
                );
            }
        }
        Ok(staged) => {
            for id in KeyId::ALL {
                assert_eq!(staged.replaces(id), transfer.get(id).is_some());
            }
            staged.install(&mut mk, &mut keys);
            let after = fingerprint(&mk, &keys);
            // Every entry unwraps under the meter's MK: the keys must be
            // exactly those.
            let (umk, ukeys) = unwrapped_keys(ctl & 0x04 != 0, &transfer);
            assert_eq!(after, fingerprint(&umk, &ukeys), "every key installed");
            let built_from_keys = transfer
                .entries()
                .iter()
                .all(|e| expected[usize::from(e.key_id.code())].is_some());
            if ctl & 0x01 != 0 && built_from_keys {
                // And equal to the keys the input wrapped (a "forged" slot
                // may hold a genuine wrapped value copied from the corpus).
                let (emk, ekeys) = expected_keys(ctl & 0x04 != 0, &expected, &transfer);
                assert_eq!(after, fingerprint(&emk, &ekeys), "every key installed");
            }
        }
    }
}

fn wrapped_under_meter_mk(id: KeyId, w: &WrappedKey) -> bool {
    let mk = MasterKey::from_bytes(MK);
    match id {
        KeyId::GlobalUnicastEncryption => {
            dlms_sec::key::wrap::unwrap::<GlobalUnicastEncryptionKey>(&mk, w).is_ok()
        }
        KeyId::GlobalBroadcastEncryption => {
            dlms_sec::key::wrap::unwrap::<GlobalBroadcastEncryptionKey>(&mk, w).is_ok()
        }
        KeyId::Authentication => dlms_sec::key::wrap::unwrap::<AuthenticationKey>(&mk, w).is_ok(),
        KeyId::Master => dlms_sec::key::wrap::unwrap::<MasterKey>(&mk, w).is_ok(),
    }
}

/// The keys after installing `transfer`, each entry unwrapped under the
/// meter's MK on its own (the old key where the transfer has none).
fn unwrapped_keys(gbek: bool, transfer: &KeyTransfer) -> (MasterKey, SecuritySetupKeys) {
    use dlms_sec::key::wrap::unwrap;
    let mk = MasterKey::from_bytes(MK);
    let get = |id: KeyId| transfer.get(id);
    let guek = get(KeyId::GlobalUnicastEncryption).map_or_else(
        || GlobalUnicastEncryptionKey::from_bytes(GUEK),
        |w| unwrap(&mk, w).expect("a staged entry unwraps"),
    );
    let ak = get(KeyId::Authentication).map_or_else(
        || AuthenticationKey::from_bytes(AK),
        |w| unwrap(&mk, w).expect("a staged entry unwraps"),
    );
    let keys = SecuritySetupKeys::new(guek, ak);
    let keys = match get(KeyId::GlobalBroadcastEncryption) {
        Some(w) => keys.with_broadcast_key(unwrap(&mk, w).expect("a staged entry unwraps")),
        None if gbek => keys.with_broadcast_key(GlobalBroadcastEncryptionKey::from_bytes(GBEK)),
        None => keys,
    };
    let new_mk = get(KeyId::Master).map_or_else(
        || MasterKey::from_bytes(MK),
        |w| unwrap(&mk, w).expect("a staged entry unwraps"),
    );
    (new_mk, keys)
}

fn expected_keys(
    gbek: bool,
    expected: &[Option<[u8; 16]>; 4],
    transfer: &KeyTransfer,
) -> (MasterKey, SecuritySetupKeys) {
    let pick = |id: KeyId, old: [u8; 16]| -> [u8; 16] {
        if transfer.get(id).is_some() {
            expected[usize::from(id.code())].expect("a staged entry was built from a key")
        } else {
            old
        }
    };
    let keys = SecuritySetupKeys::new(
        GlobalUnicastEncryptionKey::from_bytes(pick(KeyId::GlobalUnicastEncryption, GUEK)),
        AuthenticationKey::from_bytes(pick(KeyId::Authentication, AK)),
    );
    let keys = if gbek || transfer.get(KeyId::GlobalBroadcastEncryption).is_some() {
        keys.with_broadcast_key(GlobalBroadcastEncryptionKey::from_bytes(pick(
            KeyId::GlobalBroadcastEncryption,
            GBEK,
        )))
    } else {
        keys
    };
    (MasterKey::from_bytes(pick(KeyId::Master, MK)), keys)
}

// ---------------------------------------------------------------- replay guard

/// The replay guard under an arbitrary counter sequence, through real
/// frames: each counter is protected (authentication only, so it is
/// cheap), unprotected, and the proof offered to the guard. A model (the
/// last accepted counter) predicts every answer: a counter at or below the
/// last accepted, or `0xFFFFFFFF`, is never accepted; a proof for another
/// peer or key is refused and changes nothing; `check` agrees with
/// `accept`; a guard resumed from `last_accepted` answers the same.
///
/// Input: a sequence of operations, one octet each (low 3 bits), with a
/// 4-octet operand for "absolute counter".
pub fn replay_guard(data: &[u8]) {
    let mut r = FuzzInput::new(data);
    let peer = SystemTitle::new(TITLE);
    let other_peer = SystemTitle::new(*b"OTHERST\x02");
    let suite = fixed_suite();
    let key = suite
        .key_fingerprint(KeyKind::GlobalUnicast)
        .expect("unicast key");
    let mut guard = ReplayGuard::new(peer, KeyKind::GlobalUnicast, key);
    let mut model: Option<u32> = None;
    let mut prev: u32 = 0;
    let mut steps = 0;
    while !r.is_empty() && steps < 256 {
        steps += 1;
        let op = r.u8();
        let (ic, from, key) = match op & 0x07 {
            0 => (prev, peer, KeyKind::GlobalUnicast),
            1 => (prev.wrapping_sub(1), peer, KeyKind::GlobalUnicast),
            2 => (
                prev.wrapping_add(1 + u32::from(op >> 3)),
                peer,
                KeyKind::GlobalUnicast,
            ),
            3 => (r.u32(), peer, KeyKind::GlobalUnicast),
            4 => (u32::MAX - u32::from(op >> 3), peer, KeyKind::GlobalUnicast),
            5 => (prev.wrapping_add(1), other_peer, KeyKind::GlobalUnicast),
            6 => (prev.wrapping_add(1), peer, KeyKind::GlobalBroadcast),
            _ => {
                // Restart: resume a fresh guard from the persisted value.
                let resumed =
                    ReplayGuard::resume(peer, KeyKind::GlobalUnicast, key, guard.last_accepted());
                assert_eq!(resumed, guard, "a resumed guard is the same guard");
                guard = resumed;
                continue;
            }
        };
        prev = ic;
        let ic = InvocationCounter::new(ic);
        let fresh =
            ic.value() != InvocationCounter::RESERVED && model.is_none_or(|m| ic.value() > m);
        assert_eq!(
            guard.check(ic).is_ok(),
            fresh,
            "check agrees with the model"
        );
        assert_eq!(
            guard.lowest_acceptable().map(InvocationCounter::value),
            match model {
                None => Some(0),
                Some(m) => m
                    .checked_add(1)
                    .filter(|&v| v != InvocationCounter::RESERVED),
            }
        );
        // A real frame carrying `ic`, from `from`, under `key`.
        let req = Protect {
            protection: Protection::Authenticated,
            key,
            form: CipheredForm::General {
                with_system_title: true,
            },
            system_title: from,
        };
        let apdu = [
            0xC0, 0x01, 0xC1, 0x00, 0x08, 0, 0, 1, 0, 0, 0xFF, 0x02, 0x00,
        ];
        let mut frame = [0u8; 64];
        let n = match suite.protect(&req, &mut SingleUse::dangerous_new(ic), &apdu, &mut frame) {
            Ok(n) => n,
            Err(_) => {
                assert_eq!(
                    ic.value(),
                    InvocationCounter::RESERVED,
                    "only the reserved counter is refused"
                );
                continue;
            }
        };
        let params = Unprotect {
            peer_system_title: PeerTitle::CarriedByFrame,
            policy: SecurityPolicy::Authenticated,
        };
        let got = suite
            .unprotect(&mut frame[..n], &params)
            .expect("a frame protected with the same keys unprotects");
        let proof = got.replay_proof().expect("authenticated");
        let last_before = guard.last_accepted();
        let result = guard.accept(proof);
        if from != peer || key != KeyKind::GlobalUnicast {
            assert_eq!(result, Err(CounterError::WrongGuard));
            assert_eq!(
                guard.last_accepted(),
                last_before,
                "a refused proof changes nothing"
            );
        } else if fresh {
            assert_eq!(result, Ok(ic));
            model = Some(ic.value());
        } else {
            assert_eq!(
                result,
                Err(CounterError::Replay),
                "a repeat is never accepted"
            );
            assert_eq!(
                guard.last_accepted(),
                last_before,
                "a refused proof changes nothing"
            );
        }
        assert_eq!(guard.last_accepted().map(InvocationCounter::value), model);
    }
}
