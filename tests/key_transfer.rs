//! Security Setup key_transfer end to end (D-06, R-12, R-14): the sender
//! wraps and lays out the action-request, the meter parses, stages and
//! installs. Keys have no `PartialEq`, so installed keys are compared by
//! behaviour: the frames a suite-0 context built from them protects, and
//! the wraps a Master Key makes.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    reason = "test code: a panic is a failed test"
)]

use dlms_sec::counter::SingleUse;
use dlms_sec::error::{KeyError, WireError};
use dlms_sec::key::wrap::{self, KeyId};
use dlms_sec::key::{
    AuthenticationKey, GlobalBroadcastEncryptionKey, GlobalUnicastEncryptionKey, MasterKey,
};
use dlms_sec::meter::key_transfer::{NewKeys, SecuritySetupKeys, stage};
use dlms_sec::suite0::PeerTitle;
use dlms_sec::suite0::{Protect, Suite0, Unprotect};
use dlms_sec::wire::{CipheredForm, KeyTransfer, SecuritySetupMethod, parse_key_transfer_request};
use dlms_sec::{
    AuthError, Error, InvocationCounter, KeyKind, Protection, SecurityPolicy, SystemTitle,
};
use proptest::prelude::*;

const TITLE: SystemTitle = SystemTitle::new([0x4D, 0x4D, 0x4D, 0x00, 0x00, 0xBC, 0x61, 0x4E]);
/// The meter's own title, for its responses.
const METER: SystemTitle = SystemTitle::new([0x4D, 0x4D, 0x4D, 0x00, 0x00, 0x00, 0x00, 0x02]);
const IC: InvocationCounter = InvocationCounter::new(0x0123_4567);
/// GB Table 40's get-request (vectors/README.md).
const GET: [u8; 13] = [
    0xC0, 0x01, 0x00, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0xFF, 0x02, 0x00,
];
/// §11: the self-built key_transfer of AK D0D1…DF under KEK 000102…0F.
const VECTOR_11: &str = "0101020216020918C498429FF0B8E698352B17AFFAC7CA6C708D61062E82B6D4";

fn key(s: &str) -> [u8; 16] {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn protect(s: &Suite0, key: KeyKind, apdu: &[u8]) -> Vec<u8> {
    protect_as(s, key, apdu, TITLE)
}

fn protect_as(s: &Suite0, key: KeyKind, apdu: &[u8], system_title: SystemTitle) -> Vec<u8> {
    let req = Protect {
        protection: Protection::AuthenticatedEncrypted,
        key,
        form: CipheredForm::ServiceSpecific,
        system_title,
    };
    let mut out = vec![0u8; s.frame_len(&req, apdu).unwrap()];
    let n = s
        .protect(&req, &mut SingleUse::dangerous_new(IC), apdu, &mut out)
        .unwrap();
    out.truncate(n);
    out
}

/// What a context does with the unicast key and, if held, the broadcast
/// key: both frames depend on the AK too (it is in the AAD).
fn behaviour(s: &Suite0) -> (Vec<u8>, Option<Vec<u8>>) {
    (
        protect(s, KeyKind::GlobalUnicast, &GET),
        s.has_key(KeyKind::GlobalBroadcast)
            .then(|| protect(s, KeyKind::GlobalBroadcast, &GET)),
    )
}

/// Raw bytes of one client's keys and the device MK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bytes {
    guek: [u8; 16],
    gbek: Option<[u8; 16]>,
    ak: [u8; 16],
    mk: [u8; 16],
}

impl Bytes {
    fn meter(&self) -> (MasterKey, SecuritySetupKeys) {
        let k = SecuritySetupKeys::new(
            GlobalUnicastEncryptionKey::from_bytes(self.guek),
            AuthenticationKey::from_bytes(self.ak),
        );
        let k = match self.gbek {
            Some(b) => k.with_broadcast_key(GlobalBroadcastEncryptionKey::from_bytes(b)),
            None => k,
        };
        (MasterKey::from_bytes(self.mk), k)
    }

    /// Checks that `mk` and `keys` behave as these bytes would.
    fn assert_held_by(&self, mk: &MasterKey, keys: &SecuritySetupKeys, what: &str) {
        let (expected_mk, expected) = self.meter();
        assert_eq!(
            behaviour(&keys.suite0()),
            behaviour(&expected.suite0()),
            "{what}: GUEK/GBEK/AK"
        );
        assert_eq!(keys.has_broadcast_key(), self.gbek.is_some(), "{what}");
        let probe = AuthenticationKey::from_bytes([0x5A; 16]);
        assert_eq!(
            wrap::wrap(mk, &probe),
            wrap::wrap(&expected_mk, &probe),
            "{what}: MK"
        );
    }
}

const OLD: Bytes = Bytes {
    guek: [0x10; 16],
    gbek: Some([0x11; 16]),
    ak: [0x12; 16],
    mk: [0x13; 16],
};

/// The sender's side: the plain action-request carrying the keys of
/// `mask` (bit 0 GUEK, 1 GBEK, 2 AK, 3 MK) from `new`, wrapped under `mk`.
fn request(mk: [u8; 16], new: &Bytes, mask: u8) -> Vec<u8> {
    let guek = GlobalUnicastEncryptionKey::from_bytes(new.guek);
    let gbek = GlobalBroadcastEncryptionKey::from_bytes(new.gbek.unwrap());
    let ak = AuthenticationKey::from_bytes(new.ak);
    let new_mk = MasterKey::from_bytes(new.mk);
    let keys = NewKeys {
        guek: (mask & 1 != 0).then_some(&guek),
        gbek: (mask & 2 != 0).then_some(&gbek),
        ak: (mask & 4 != 0).then_some(&ak),
        mk: (mask & 8 != 0).then_some(&new_mk),
    };
    let t = KeyTransfer::wrap_new_keys(&MasterKey::from_bytes(mk), keys).unwrap();
    let m = SecuritySetupMethod::default();
    let mut out = vec![0u8; m.key_transfer_request_len(&t)];
    let n = m.emit_key_transfer_request(&t, &mut out).unwrap();
    assert_eq!(n, out.len());
    out
}

/// What the meter should hold after installing the keys of `mask`.
fn merged(old: &Bytes, new: &Bytes, mask: u8) -> Bytes {
    Bytes {
        guek: if mask & 1 != 0 { new.guek } else { old.guek },
        gbek: if mask & 2 != 0 { new.gbek } else { old.gbek },
        ak: if mask & 4 != 0 { new.ak } else { old.ak },
        mk: if mask & 8 != 0 { new.mk } else { old.mk },
    }
}

/// The meter's side: parse, stage, install; the keys are unchanged on
/// error.
fn meter_receives(
    apdu: &[u8],
    mk: &mut MasterKey,
    keys: &mut SecuritySetupKeys,
) -> Result<(), Error> {
    let (method, transfer) = parse_key_transfer_request(apdu)?;
    assert_eq!(method, SecuritySetupMethod::default());
    let staged = stage(mk, &transfer)?;
    staged.install(mk, keys);
    Ok(())
}

#[test]
fn every_combination_installs_exactly_the_keys_sent() {
    let new = Bytes {
        guek: [0xA0; 16],
        gbek: Some([0xA1; 16]),
        ak: [0xA2; 16],
        mk: [0xA3; 16],
    };
    for old in [OLD, Bytes { gbek: None, ..OLD }] {
        for mask in 1u8..16 {
            let apdu = request(old.mk, &new, mask);
            let (mut mk, mut keys) = old.meter();
            meter_receives(&apdu, &mut mk, &mut keys).unwrap();
            merged(&old, &new, mask).assert_held_by(&mk, &keys, &format!("mask {mask}"));
            // The sender wrote the entries in key-id order.
            let (_, t) = parse_key_transfer_request(&apdu).unwrap();
            let ids: Vec<KeyId> = t.entries().iter().map(|e| e.key_id).collect();
            let want: Vec<KeyId> = KeyId::ALL
                .into_iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, id)| id)
                .collect();
            assert_eq!(ids, want);
        }
    }
}

#[test]
fn a_corrupt_entry_installs_nothing() {
    let new = Bytes {
        guek: [0xB0; 16],
        gbek: Some([0xB1; 16]),
        ak: [0xB2; 16],
        mk: [0xB3; 16],
    };
    let apdu = request(OLD.mk, &new, 0x0F);
    // 13-octet action-request header, 2-octet array header, 30 per entry,
    // wrapped octets at offset 6 in each entry.
    for entry in 0..4 {
        for byte in 0..24 {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut bad = apdu.clone();
                bad[13 + 2 + 30 * entry + 6 + byte] ^= flip;
                let (mut mk, mut keys) = OLD.meter();
                assert_eq!(
                    meter_receives(&bad, &mut mk, &mut keys),
                    Err(Error::Auth(AuthError)),
                    "entry {entry} byte {byte}"
                );
                OLD.assert_held_by(&mk, &keys, "after a corrupt entry");
            }
        }
    }
    // Framing damage is a typed error, and installs nothing either.
    for (pos, value, err) in [
        (15 + 3, 0x07, Error::Key(KeyError::UnknownKeyId(7))),
        (15 + 3, 0x01, Error::Key(KeyError::DuplicateKeyId(1))),
        (15 + 30 + 5, 0x10, Error::Wire(WireError::InvalidField)),
        (14, 0x05, Error::Wire(WireError::InvalidField)),
        (15, 0x03, Error::Wire(WireError::UnexpectedTag(0x03))),
    ] {
        let mut bad = apdu.clone();
        bad[pos] = value;
        let (mut mk, mut keys) = OLD.meter();
        assert_eq!(meter_receives(&bad, &mut mk, &mut keys), Err(err), "{pos}");
        OLD.assert_held_by(&mk, &keys, "after bad framing");
    }
}

#[test]
fn a_wrong_master_key_installs_nothing() {
    let new = Bytes {
        guek: [0xC0; 16],
        gbek: Some([0xC1; 16]),
        ak: [0xC2; 16],
        mk: [0xC3; 16],
    };
    for mask in 1u8..16 {
        let apdu = request([0x14; 16], &new, mask);
        let (mut mk, mut keys) = OLD.meter();
        assert_eq!(
            meter_receives(&apdu, &mut mk, &mut keys),
            Err(Error::Auth(AuthError))
        );
        OLD.assert_held_by(&mk, &keys, "after a wrong MK");
    }
}

#[test]
fn unknown_and_duplicate_key_ids_are_refused() {
    let entry = |id: u8| {
        let mut v = vec![0x02, 0x02, 0x16, id, 0x09, 0x18];
        v.extend_from_slice(&[0xEE; 24]);
        v
    };
    let mut base = hex::decode("C301C10040 00002B0000FF 0201".replace(' ', "")).unwrap();
    base.extend_from_slice(&[0x01, 0x02]);
    for (a, b, err) in [
        (0u8, 4u8, KeyError::UnknownKeyId(4)),
        (0xFF, 0, KeyError::UnknownKeyId(0xFF)),
        (2, 2, KeyError::DuplicateKeyId(2)),
        (3, 3, KeyError::DuplicateKeyId(3)),
    ] {
        let mut apdu = base.clone();
        apdu.extend(entry(a));
        apdu.extend(entry(b));
        assert_eq!(
            parse_key_transfer_request(&apdu),
            Err(Error::Key(err)),
            "{a} {b}"
        );
    }
    let mut t = KeyTransfer::new();
    let mk = MasterKey::from_bytes([0; 16]);
    t.push_key(&mk, &MasterKey::from_bytes([1; 16])).unwrap();
    assert_eq!(
        t.push_key(&mk, &MasterKey::from_bytes([2; 16])),
        Err(Error::Key(KeyError::DuplicateKeyId(3)))
    );
}

/// vectors/README.md both ways. After install, the new AK with GUEK
/// 000102…0F reproduces GB Table 40 (A+E) from §11, which checks the
/// installed AK against an independent vector.
#[test]
fn section_11_vector_both_ways() {
    let kek = key("000102030405060708090A0B0C0D0E0F");
    let ak = key("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF");
    // Sender.
    let t = KeyTransfer::wrap_new_keys(
        &MasterKey::from_bytes(kek),
        NewKeys {
            ak: Some(&AuthenticationKey::from_bytes(ak)),
            ..NewKeys::default()
        },
    )
    .unwrap();
    let mut out = [0u8; 32];
    assert_eq!(t.emit(&mut out), Ok(32));
    assert_eq!(hex::encode_upper(out), VECTOR_11);
    // Meter.
    let mut mk = MasterKey::from_bytes(kek);
    let mut keys = SecuritySetupKeys::new(
        GlobalUnicastEncryptionKey::from_bytes(kek),
        AuthenticationKey::from_bytes([0; 16]),
    );
    let parsed = KeyTransfer::parse(&hex::decode(VECTOR_11).unwrap()).unwrap();
    stage(&mk, &parsed).unwrap().install(&mut mk, &mut keys);
    assert_eq!(
        hex::encode_upper(protect(&keys.suite0(), KeyKind::GlobalUnicast, &GET)),
        "C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B"
    );
}

/// The sequence of the module docs: the request arrives under the old
/// keys, the response is protected under the old keys, then the new keys
/// apply.
#[test]
fn response_under_old_keys_then_new_keys() {
    let new = Bytes {
        guek: [0xD0; 16],
        gbek: Some([0xD1; 16]),
        ak: [0xD2; 16],
        mk: OLD.mk,
    };
    let (_, client_old) = OLD.meter();
    let (_, client_new) = new.meter();
    let (client_old, client_new) = (client_old.suite0(), client_new.suite0());
    let params = Unprotect {
        peer_system_title: PeerTitle::Expected(TITLE),
        policy: SecurityPolicy::AuthenticatedEncrypted,
    };

    // Client → meter: glo-action-request under the old keys.
    let plain = request(OLD.mk, &new, 0b0111);
    let mut frame = protect(&client_old, KeyKind::GlobalUnicast, &plain);
    assert_eq!(frame[0], 0xCB);
    let (mut mk, mut keys) = OLD.meter();
    let meter_old = keys.suite0();
    let received = meter_old.unprotect(&mut frame, &params).unwrap();
    let (_, transfer) = parse_key_transfer_request(received.apdu()).unwrap();
    let staged = stage(&mk, &transfer).unwrap();
    assert!(staged.replaces(KeyId::GlobalUnicastEncryption));
    assert!(!staged.replaces(KeyId::Master));

    // Meter → client: action-response (success) under the old keys.
    let response = [0xC7, 0x01, 0xC1, 0x00, 0x00];
    let mut answer = protect_as(&keys.suite0(), KeyKind::GlobalUnicast, &response, METER);
    staged.install(&mut mk, &mut keys);
    let from_meter = Unprotect {
        peer_system_title: PeerTitle::Expected(METER),
        ..params
    };
    assert_eq!(
        client_old
            .unprotect(&mut answer, &from_meter)
            .unwrap()
            .apdu(),
        &response
    );

    // From now on only the new keys work.
    let mut next = protect(&client_new, KeyKind::GlobalUnicast, &GET);
    let mut stale = protect(&client_old, KeyKind::GlobalUnicast, &GET);
    let meter_new = keys.suite0();
    assert_eq!(
        meter_new.unprotect(&mut next, &params).unwrap().apdu(),
        &GET
    );
    assert_eq!(
        meter_new.unprotect(&mut stale, &params).unwrap_err(),
        Error::Auth(AuthError)
    );
    new.assert_held_by(&mk, &keys, "after install");
}

fn bytes() -> impl Strategy<Value = Bytes> {
    any::<([u8; 16], Option<[u8; 16]>, [u8; 16], [u8; 16])>()
        .prop_map(|(guek, gbek, ak, mk)| Bytes { guek, gbek, ak, mk })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Random old and new keys, any subset: the meter ends up with exactly
    /// the merge; one flipped wrapped octet installs nothing.
    #[test]
    fn random_keys_round_trip(
        old in bytes(),
        new in bytes(),
        new_gbek in any::<[u8; 16]>(),
        mask in 1u8..16,
        corrupt in any::<(prop::sample::Index, u8, u8)>(),
    ) {
        let new = Bytes { gbek: Some(new.gbek.unwrap_or(new_gbek)), ..new };
        let apdu = request(old.mk, &new, mask);

        let (mut mk, mut keys) = old.meter();
        meter_receives(&apdu, &mut mk, &mut keys).unwrap();
        merged(&old, &new, mask).assert_held_by(&mk, &keys, "random");

        let (index, byte, flip) = corrupt;
        let entries = mask.count_ones() as usize;
        let entry = index.index(entries);
        let mut bad = apdu.clone();
        bad[13 + 2 + 30 * entry + 6 + usize::from(byte % 24)] ^= flip.max(1);
        let (mut mk, mut keys) = old.meter();
        prop_assert_eq!(
            meter_receives(&bad, &mut mk, &mut keys),
            Err(Error::Auth(AuthError))
        );
        old.assert_held_by(&mk, &keys, "random corrupt");
    }
}
