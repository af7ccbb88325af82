//! The meter endpoint against the security cases of the DLMS UA
//! conformance test tool (CTT), one test per case, named after it.
//!
//! The client side is computed here from the Green Book rules with
//! RustCrypto's `aes-gcm` (and `aes-kw` for RFC 3394), not with this
//! crate: IV = sender title ‖ IC, AAD = SC ‖ AK (‖ APDU under
//! authentication only), a 12-octet tag. Each client frame is
//! cross-checked against the library's own client side
//! ([`Suite0::protect`]), and each answer of the endpoint is opened with
//! `aes-gcm` under the meter's title.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    reason = "test code: a panic is a failed test"
)]

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::aes::Aes128;
use dlms_sec::counter::{SendCounter, Volatile};
use dlms_sec::error::{CounterError, WireError};
use dlms_sec::key::{AuthenticationKey, DedicatedKey, GlobalUnicastEncryptionKey, MasterKey};
use dlms_sec::meter::key_transfer::SecuritySetupKeys;
use dlms_sec::meter::{
    DeviceCapabilities, Endpoint, InMemoryFloors, OneCounter, Outcome, Refusal, Served,
};
use dlms_sec::suite0::{Protect, hls5};
use dlms_sec::wire::CipheredForm;
use dlms_sec::{
    AuthError, Client, Error, InvocationCounter, KeyKind, Protection, SecurityPolicy, Suite0,
    SystemTitle,
};

type Gcm = aes_gcm::AesGcm<Aes128, U12, U12>;
type Meter = Endpoint<Client, OneCounter<SendCounter<Volatile>>, InMemoryFloors<5>, 5>;

/// The Green Book's example keys (GB Tables 40 and 43).
const EK: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const AK: [u8; 16] = [
    0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF,
];
const MK: [u8; 16] = [0x4B; 16];
/// GB Table 43's titles: the client's and the meter's.
const CLIENT_TITLE: [u8; 8] = [0x4D, 0x4D, 0x4D, 0, 0, 0, 0, 1];
const METER_TITLE: [u8; 8] = [0x4D, 0x4D, 0x4D, 0, 0, 0xBC, 0x61, 0x4E];
const CLIENT: Client = Client::Management;

/// get-request for 0-0:1.0.0.255 attribute 2 (GB Table 40).
const GET: [u8; 13] = [
    0xC0, 0x01, 0xC1, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0xFF, 0x02, 0x00,
];
/// The application's get-response.
const GET_RESPONSE: [u8; 7] = [0xC4, 0x01, 0xC1, 0x00, 0x11, 0x2A, 0x00];

const GLO_GET: u8 = 0xC8;
const DED_GET: u8 = 0xD0;
const GLO_ACTION: u8 = 0xCB;
const GLO_INITIATE: u8 = 0x21;

// ---- the Green Book client -------------------------------------------------

fn axdr_len(n: usize) -> Vec<u8> {
    match n {
        0..=127 => vec![n as u8],
        128..=255 => vec![0x81, n as u8],
        _ => vec![0x82, (n >> 8) as u8, n as u8],
    }
}

fn iv(title: &[u8; 8], ic: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[..8].copy_from_slice(title);
    iv[8..].copy_from_slice(&ic.to_be_bytes());
    iv
}

/// SC ‖ IC ‖ payload ‖ T under `ek`, `ak`, from `title` (GB 9.2.7.2.4).
fn seal(ek: &[u8; 16], ak: &[u8; 16], title: &[u8; 8], sc: u8, ic: u32, apdu: &[u8]) -> Vec<u8> {
    let gcm = Gcm::new_from_slice(ek).unwrap();
    let nonce = iv(title, ic).into();
    let mut out = vec![sc];
    out.extend_from_slice(&ic.to_be_bytes());
    let mut aad = vec![sc];
    aad.extend_from_slice(ak);
    match sc & 0x30 {
        0x30 => {
            let mut buf = apdu.to_vec();
            let tag = gcm
                .encrypt_inout_detached(&nonce, &aad, buf.as_mut_slice().into())
                .unwrap();
            out.extend_from_slice(&buf);
            out.extend_from_slice(&tag);
        }
        0x10 => {
            aad.extend_from_slice(apdu);
            let tag = gcm
                .encrypt_inout_detached(&nonce, &aad, (&mut [][..]).into())
                .unwrap();
            out.extend_from_slice(apdu);
            out.extend_from_slice(&tag);
        }
        _ => {
            let mut buf = apdu.to_vec();
            let _ = gcm
                .encrypt_inout_detached(&nonce, &[], buf.as_mut_slice().into())
                .unwrap();
            out.extend_from_slice(&buf);
        }
    }
    out
}

/// A service-specific ciphered APDU: tag ‖ length ‖ SC ‖ IC ‖ payload ‖ T.
fn frame(ek: &[u8; 16], tag: u8, sc: u8, ic: u32, apdu: &[u8]) -> Vec<u8> {
    let content = seal(ek, &AK, &CLIENT_TITLE, sc, ic, apdu);
    let mut f = vec![tag];
    f.extend(axdr_len(content.len()));
    f.extend(content);
    f
}

/// Opens the meter's service-specific answer under `ek` with the meter's
/// title: (outer tag, SC, IC, plain APDU), or `None` when it does not verify.
fn open(ek: &[u8; 16], ak: &[u8; 16], answer: &[u8]) -> Option<(u8, u8, u32, Vec<u8>)> {
    let (tag, rest) = answer.split_first()?;
    let rest = match rest[0] {
        0x81 => &rest[2..],
        n if n < 0x80 => &rest[1..],
        _ => return None,
    };
    let sc = rest[0];
    let ic = u32::from_be_bytes(rest[1..5].try_into().unwrap());
    let body = &rest[5..];
    let gcm = Gcm::new_from_slice(ek).unwrap();
    let nonce = iv(&METER_TITLE, ic).into();
    let mut aad = vec![sc];
    aad.extend_from_slice(ak);
    let (payload, t) = body.split_at(body.len() - 12);
    let t: [u8; 12] = t.try_into().unwrap();
    let mut buf = payload.to_vec();
    match sc & 0x30 {
        0x30 => gcm
            .decrypt_inout_detached(&nonce, &aad, buf.as_mut_slice().into(), &t.into())
            .ok()?,
        0x10 => {
            aad.extend_from_slice(payload);
            gcm.decrypt_inout_detached(&nonce, &aad, (&mut [][..]).into(), &t.into())
                .ok()?;
        }
        _ => return None,
    }
    Some((*tag, sc, ic, buf))
}

/// The library's client side must lay out the same frame for the same
/// inputs (global unicast or dedicated key, service-specific form).
fn cross_check(
    suite: &Suite0,
    key: KeyKind,
    protection: Protection,
    ic: u32,
    apdu: &[u8],
    expected: &[u8],
) {
    let req = Protect {
        protection,
        key,
        form: CipheredForm::ServiceSpecific,
        system_title: SystemTitle::new(CLIENT_TITLE),
    };
    let mut out = [0u8; 256];
    let mut counter = SendCounter::volatile(InvocationCounter::new(ic));
    let n = suite.protect(&req, &mut counter, apdu, &mut out).unwrap();
    assert_eq!(&out[..n], expected, "the library's client frame differs");
}

/// A glo- frame under the GB keys, cross-checked.
fn glo(tag: u8, protection: Protection, ic: u32, apdu: &[u8]) -> Vec<u8> {
    glo_under(&EK, &AK, tag, protection, ic, apdu)
}

fn glo_under(
    ek: &[u8; 16],
    ak: &[u8; 16],
    tag: u8,
    protection: Protection,
    ic: u32,
    apdu: &[u8],
) -> Vec<u8> {
    let content = seal(ek, ak, &CLIENT_TITLE, protection.bits(), ic, apdu);
    let mut f = vec![tag];
    f.extend(axdr_len(content.len()));
    f.extend(content);
    let suite = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(*ek),
        &AuthenticationKey::from_bytes(*ak),
    );
    cross_check(&suite, KeyKind::GlobalUnicast, protection, ic, apdu, &f);
    f
}

// ---- the meter -------------------------------------------------------------

fn meter_with(policy: SecurityPolicy, first_ic: u32, caps: DeviceCapabilities) -> Meter {
    let mut m = Endpoint::smets1(
        SystemTitle::new(METER_TITLE),
        MasterKey::from_bytes(MK),
        OneCounter(SendCounter::volatile(InvocationCounter::new(first_ic))),
        InMemoryFloors::new(),
        caps,
    );
    m.provision(
        CLIENT,
        SystemTitle::new(CLIENT_TITLE),
        SecuritySetupKeys::new(
            GlobalUnicastEncryptionKey::from_bytes(EK),
            AuthenticationKey::from_bytes(AK),
        ),
        policy,
    )
    .unwrap();
    m
}

fn meter() -> Meter {
    meter_with(
        SecurityPolicy::AuthenticatedEncrypted,
        0x100,
        DeviceCapabilities::default(),
    )
}

/// Sends `frame`, answers an application request with `GET_RESPONSE`;
/// returns the protected answer.
fn exchange(m: &mut Meter, frame: &[u8]) -> dlms_sec::Result<Vec<u8>> {
    let mut f = frame.to_vec();
    let request = m.unprotect(CLIENT, &mut f)?;
    let mut out = [0u8; 256];
    let n = match m.serve(request, &mut out)? {
        Served::Answered { len, .. } => len,
        Served::Application(r) => m.protect(&r, &GET_RESPONSE, &mut out)?,
    };
    Ok(out[..n].to_vec())
}

/// Sends a Security Setup / HLS action; returns the outcome and the
/// opened action-response.
fn action(m: &mut Meter, frame: &[u8], ek: &[u8; 16], ak: &[u8; 16]) -> (Outcome, Vec<u8>) {
    let mut f = frame.to_vec();
    let request = m.unprotect(CLIENT, &mut f).unwrap();
    let mut out = [0u8; 256];
    let Served::Answered { len, outcome } = m.serve(request, &mut out).unwrap() else {
        panic!("the layer did not serve the method");
    };
    let (tag, _, _, plain) = open(ek, ak, &out[..len]).expect("the answer opens under these keys");
    assert_eq!(tag, 0xCF, "glo-action-response");
    (outcome, plain)
}

/// `C3 01 C1 class LN method 01 parameter`.
fn action_request(class: u16, ln: [u8; 6], method: u8, parameter: &[u8]) -> Vec<u8> {
    let mut a = vec![0xC3, 0x01, 0xC1];
    a.extend_from_slice(&class.to_be_bytes());
    a.extend_from_slice(&ln);
    a.extend_from_slice(&[method, 0x01]);
    a.extend_from_slice(parameter);
    a
}

const SECURITY_SETUP: [u8; 6] = [0, 0, 43, 0, 0, 255];
const ASSOCIATION: [u8; 6] = [0, 0, 40, 0, 0, 255];

/// RFC 3394 with `aes-kw`: `key` wrapped under `kek`.
fn kw(kek: &[u8; 16], key: &[u8; 16]) -> [u8; 24] {
    let mut out = [0u8; 24];
    aes_kw::KwAes128::new_from_slice(kek)
        .unwrap()
        .wrap_key(key, &mut out)
        .unwrap();
    out
}

/// key_transfer (class 64 method 2) of `(key_id, wrapped)` entries.
fn key_transfer(entries: &[(u8, [u8; 24])]) -> Vec<u8> {
    let mut p = vec![0x01, entries.len() as u8];
    for (id, w) in entries {
        p.extend_from_slice(&[0x02, 0x02, 0x16, *id, 0x09, 0x18]);
        p.extend_from_slice(w);
    }
    action_request(64, SECURITY_SETUP, 2, &p)
}

fn action_response(result: u8) -> Vec<u8> {
    vec![0xC7, 0x01, 0xC1, result, 0x00]
}

/// A get-request under (`ek`, `ak`) is answered.
fn accepted_under(m: &mut Meter, ek: &[u8; 16], ak: &[u8; 16], ic: u32) -> bool {
    let f = glo_under(
        ek,
        ak,
        GLO_GET,
        Protection::AuthenticatedEncrypted,
        ic,
        &GET,
    );
    exchange(m, &f).is_ok()
}

// ---- the cases -------------------------------------------------------------

/// BasicCap_1: a glo-get-request under the global unicast key with
/// authenticated encryption is answered with a glo-get-response protected
/// the same way, under the meter's title.
#[test]
fn basic_cap_1() {
    let mut m = meter();
    // GB Table 40: the frame the test computes is the Green Book's.
    let f = glo(
        GLO_GET,
        Protection::AuthenticatedEncrypted,
        0x0123_4567,
        &GET[..],
    );
    let mut gb = GET;
    gb[2] = 0x00;
    // (Table 40's sender is the title 4D4D4D0000BC614E.)
    let t40 = seal(&EK, &AK, &METER_TITLE, 0x30, 0x0123_4567, &gb);
    assert_eq!(
        hex::encode_upper(&t40[5..]),
        "411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B"
    );
    let mut rx = f.clone();
    let request = m.unprotect(CLIENT, &mut rx).unwrap();
    assert_eq!(request.apdu(), &GET[..]);
    assert_eq!(request.protection(), Protection::AuthenticatedEncrypted);
    let mut out = [0u8; 64];
    let n = m.protect(&request, &GET_RESPONSE, &mut out).unwrap();
    drop(request);
    assert!(
        rx[7..7 + GET.len()].iter().all(|b| *b == 0),
        "the plain request is wiped"
    );
    let (tag, sc, ic, plain) = open(&EK, &AK, &out[..n]).unwrap();
    assert_eq!((tag, sc, ic), (0xCC, 0x30, 0x100));
    assert_eq!(plain, GET_RESPONSE);
}

/// FraCount_1: a frame whose invocation counter is not above the last
/// accepted one (a replay, or older) is refused, untouched.
#[test]
fn fra_count_1() {
    let mut m = meter();
    let f = glo(GLO_GET, Protection::AuthenticatedEncrypted, 10, &GET);
    exchange(&mut m, &f).unwrap();
    let mut again = f.clone();
    assert_eq!(
        m.unprotect(CLIENT, &mut again).unwrap_err(),
        Error::Counter(CounterError::Replay)
    );
    assert_eq!(again, f, "refused before any byte changed");
    let older = glo(GLO_GET, Protection::AuthenticatedEncrypted, 9, &GET);
    assert_eq!(
        exchange(&mut m, &older).unwrap_err(),
        Error::Counter(CounterError::Replay)
    );
    assert_eq!(m.lowest_acceptable(CLIENT).unwrap(), Some(11));
    let newer = glo(GLO_GET, Protection::AuthenticatedEncrypted, 11, &GET);
    exchange(&mut m, &newer).unwrap();
}

/// FraCount_3: the meter's invocation counter increases with every
/// protected answer.
#[test]
fn fra_count_3() {
    let mut m = meter();
    let mut last = None;
    for ic in 1..=5 {
        let f = glo(GLO_GET, Protection::AuthenticatedEncrypted, ic, &GET);
        let answer = exchange(&mut m, &f).unwrap();
        let (_, _, sent, _) = open(&EK, &AK, &answer).unwrap();
        if let Some(l) = last {
            assert_eq!(sent, l + 1);
        }
        last = Some(sent);
    }
    assert_eq!(last, Some(0x104));
}

fn transfer_and_restore(ids: &[u8]) {
    let mut m = meter();
    let new_ek = [0xE1; 16];
    let new_ak = [0xA1; 16];
    let entries: Vec<(u8, [u8; 24])> = ids
        .iter()
        .map(|id| (*id, kw(&MK, if *id == 0 { &new_ek } else { &new_ak })))
        .collect();
    let f = glo(
        GLO_ACTION,
        Protection::AuthenticatedEncrypted,
        1,
        &key_transfer(&entries),
    );
    // The answer goes out under the old keys.
    let (outcome, plain) = action(&mut m, &f, &EK, &AK);
    assert_eq!(outcome, Outcome::KeysInstalled);
    assert_eq!(plain, action_response(0));
    let ek = if ids.contains(&0) { new_ek } else { EK };
    let ak = if ids.contains(&2) { new_ak } else { AK };
    // The old keys are refused, the new ones accepted.
    assert!(!accepted_under(&mut m, &EK, &AK, 2));
    assert!(accepted_under(&mut m, &ek, &ak, 3));
    // Restore: the original keys, wrapped under the (unchanged) MK.
    let back: Vec<(u8, [u8; 24])> = ids
        .iter()
        .map(|id| (*id, kw(&MK, if *id == 0 { &EK } else { &AK })))
        .collect();
    let f = glo_under(
        &ek,
        &ak,
        GLO_ACTION,
        Protection::AuthenticatedEncrypted,
        4,
        &key_transfer(&back),
    );
    let (outcome, _) = action(&mut m, &f, &ek, &ak);
    assert_eq!(outcome, Outcome::KeysInstalled);
    assert!(accepted_under(&mut m, &EK, &AK, 5));
}

/// Key_Tx_P1: key_transfer of the global unicast encryption key (key_id
/// 0), answered under the old key, then only the new key is accepted;
/// restored afterwards.
#[test]
fn key_tx_p1() {
    transfer_and_restore(&[0]);
}

/// Key_Tx_P2: key_transfer of the authentication key (key_id 2); restored.
#[test]
fn key_tx_p2() {
    transfer_and_restore(&[2]);
}

/// Key_Tx_P3: key_transfer of both keys in one request; restored.
#[test]
fn key_tx_p3() {
    transfer_and_restore(&[0, 2]);
}

/// Key_Tx_N1: a key_transfer with an undefined key_id is refused
/// (type-unmatched) and no key changes.
#[test]
fn key_tx_n1() {
    let mut m = meter();
    for (ic, id) in [(1u32, 4u8), (2, 0xFF)] {
        let req = key_transfer(&[(id, kw(&MK, &[0xE1; 16]))]);
        let f = glo(GLO_ACTION, Protection::AuthenticatedEncrypted, ic, &req);
        let (outcome, plain) = action(&mut m, &f, &EK, &AK);
        assert_eq!(outcome, Outcome::Refused(Refusal::Malformed));
        assert_eq!(plain, action_response(12));
    }
    assert!(accepted_under(&mut m, &EK, &AK, 3));
}

/// Key_Tx_N2: a key_transfer whose wrapped key fails the RFC 3394
/// integrity check (corrupted, or wrapped under another key) installs
/// nothing, not even its good entries.
#[test]
fn key_tx_n2() {
    let mut m = meter();
    let mut bad = kw(&MK, &[0xE1; 16]);
    bad[5] ^= 0x01;
    let cases = [
        vec![(0u8, bad)],
        vec![(0, kw(&[0x4C; 16], &[0xE1; 16]))],
        vec![(0, kw(&MK, &[0xE1; 16])), (2, bad)],
    ];
    for (i, entries) in cases.iter().enumerate() {
        let f = glo(
            GLO_ACTION,
            Protection::AuthenticatedEncrypted,
            i as u32 + 1,
            &key_transfer(entries),
        );
        let (outcome, plain) = action(&mut m, &f, &EK, &AK);
        assert_eq!(outcome, Outcome::Refused(Refusal::Unwrap));
        assert_eq!(plain, action_response(250));
    }
    assert!(accepted_under(&mut m, &EK, &AK, 10));
}

/// The plain InitiateRequest with dedicated key 0011…EEFF (docs, §11).
const INITIATE_DK: &str = "01011000112233445566778899AABBCCDDEEFF0000065F1F040000601D04B0";
const DK: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,
];

/// A ded- frame under `DK`, cross-checked.
fn ded(tag: u8, ic: u32, apdu: &[u8]) -> Vec<u8> {
    let f = frame(&DK, tag, 0x30, ic, apdu);
    let mut suite = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(EK),
        &AuthenticationKey::from_bytes(AK),
    );
    suite.set_dedicated_key(&DedicatedKey::from_bytes(DK));
    cross_check(
        &suite,
        KeyKind::Dedicated,
        Protection::AuthenticatedEncrypted,
        ic,
        apdu,
        &f,
    );
    f
}

/// Opens an association with the dedicated key; returns the meter.
fn associated() -> Meter {
    let mut m = meter();
    let initiate = hex::decode(INITIATE_DK).unwrap();
    let mut aarq = glo(
        GLO_INITIATE,
        Protection::AuthenticatedEncrypted,
        1,
        &initiate,
    );
    let r = m.associate(CLIENT, &mut aarq).unwrap();
    assert_eq!(r.apdu(), &initiate[..]);
    m
}

/// DedKey_N1: a dedicated key is refused from an InitiateRequest that is
/// not authenticated and encrypted, and ded- frames without an accepted
/// dedicated key are refused.
#[test]
fn ded_key_n1() {
    let mut m = meter_with(
        SecurityPolicy::Authenticated,
        1,
        DeviceCapabilities::default(),
    );
    let initiate = hex::decode(INITIATE_DK).unwrap();
    let mut aarq = glo(GLO_INITIATE, Protection::Authenticated, 1, &initiate);
    assert_eq!(
        m.associate(CLIENT, &mut aarq).unwrap_err(),
        Error::PolicyViolation {
            required: SecurityPolicy::AuthenticatedEncrypted,
            received: Protection::Authenticated,
        }
    );
    assert_eq!(
        exchange(&mut m, &ded(DED_GET, 2, &GET)).unwrap_err(),
        Error::KeyNotAvailable(KeyKind::Dedicated)
    );
    // A malformed key length is refused too.
    let mut short = initiate.clone();
    short[2] = 0x08;
    let mut aarq = glo(GLO_INITIATE, Protection::AuthenticatedEncrypted, 3, &short);
    assert_eq!(
        m.associate(CLIENT, &mut aarq).unwrap_err(),
        Error::Wire(WireError::InvalidField)
    );
}

/// SecDataX_P1: requests under global ciphering (glo-) and under the
/// association's dedicated key (ded-) are accepted and each answer comes
/// under the key its request came under.
#[test]
fn sec_data_x_p1() {
    let mut m = associated();
    let answer = exchange(
        &mut m,
        &glo(GLO_GET, Protection::AuthenticatedEncrypted, 2, &GET),
    )
    .unwrap();
    assert_eq!(open(&EK, &AK, &answer).unwrap().0, 0xCC);
    let answer = exchange(&mut m, &ded(DED_GET, 3, &GET)).unwrap();
    let (tag, sc, _, plain) = open(&DK, &AK, &answer).expect("under the dedicated key");
    assert_eq!((tag, sc), (0xD4, 0x30));
    assert_eq!(plain, GET_RESPONSE);
    assert!(open(&EK, &AK, &answer).is_none());
}

/// SecDataX_N1: incorrectly ciphered requests (wrong key, altered
/// ciphertext or tag, wrong suite, a dedicated key under the key-set bit)
/// are refused, answered with nothing, and leave the floor where it was.
#[test]
fn sec_data_x_n1() {
    let mut m = associated();
    let good = glo(GLO_GET, Protection::AuthenticatedEncrypted, 7, &GET);
    let mut cases = vec![glo_under(
        &[0x99; 16],
        &AK,
        GLO_GET,
        Protection::AuthenticatedEncrypted,
        7,
        &GET,
    )];
    cases.push(glo_under(
        &EK,
        &[0x99; 16],
        GLO_GET,
        Protection::AuthenticatedEncrypted,
        7,
        &GET,
    ));
    for i in [7, good.len() - 1] {
        let mut f = good.clone();
        f[i] ^= 0x01;
        cases.push(f);
    }
    let mut suite1 = good.clone();
    suite1[2] = 0x31;
    cases.push(suite1);
    let mut ded_broadcast = ded(DED_GET, 7, &GET);
    ded_broadcast[2] = 0x70;
    cases.push(ded_broadcast);
    for (i, f) in cases.iter().enumerate() {
        let r = exchange(&mut m, f);
        assert!(r.is_err(), "case {i} accepted");
    }
    assert_eq!(
        exchange(&mut m, &cases[0]).unwrap_err(),
        Error::Auth(AuthError)
    );
    // Nothing moved the floor.
    exchange(&mut m, &good).unwrap();
}

/// SYMSEC_REL_N1: a release request protected less than the security
/// policy requires is refused and the association (and its dedicated
/// key) stays; a properly protected one ends it.
#[test]
fn symsec_rel_n1() {
    let mut m = associated();
    assert_eq!(
        m.release(CLIENT, None).unwrap_err(),
        Error::Wire(WireError::NoProtection)
    );
    let initiate = hex::decode(INITIATE_DK).unwrap();
    let mut weak = glo(GLO_INITIATE, Protection::Authenticated, 2, &initiate);
    assert!(matches!(
        m.release(CLIENT, Some(&mut weak)),
        Err(Error::PolicyViolation { .. })
    ));
    exchange(&mut m, &ded(DED_GET, 3, &GET)).expect("still associated");
    let mut rlrq = glo(
        GLO_INITIATE,
        Protection::AuthenticatedEncrypted,
        4,
        &initiate,
    );
    assert!(m.release(CLIENT, Some(&mut rlrq)).unwrap().is_some());
    assert_eq!(
        exchange(&mut m, &ded(DED_GET, 5, &GET)).unwrap_err(),
        Error::KeyNotAvailable(KeyKind::Dedicated)
    );
}

fn activate(v: u8) -> Vec<u8> {
    action_request(64, SECURITY_SETUP, 1, &[0x16, v])
}

/// SecPol_1: security_activate to a stronger policy is answered under the
/// old policy, then applied: weaker requests are refused.
#[test]
fn sec_pol_1() {
    let mut m = meter_with(
        SecurityPolicy::Authenticated,
        1,
        DeviceCapabilities::default(),
    );
    let f = glo(GLO_ACTION, Protection::Authenticated, 1, &activate(3));
    let (outcome, plain) = action(&mut m, &f, &EK, &AK);
    assert_eq!(
        outcome,
        Outcome::PolicyActivated(SecurityPolicy::AuthenticatedEncrypted)
    );
    assert_eq!(plain, action_response(0));
    assert_eq!(
        m.policy(CLIENT).unwrap(),
        SecurityPolicy::AuthenticatedEncrypted
    );
    assert!(matches!(
        exchange(&mut m, &glo(GLO_GET, Protection::Authenticated, 2, &GET)),
        Err(Error::PolicyViolation { .. })
    ));
    exchange(
        &mut m,
        &glo(GLO_GET, Protection::AuthenticatedEncrypted, 3, &GET),
    )
    .unwrap();
}

/// SecPol_2: security_activate to a weaker policy is refused and the
/// policy stays.
#[test]
fn sec_pol_2() {
    let mut m = meter();
    for (ic, v) in [(1u32, 0u8), (2, 1), (3, 2)] {
        let f = glo(
            GLO_ACTION,
            Protection::AuthenticatedEncrypted,
            ic,
            &activate(v),
        );
        let (outcome, plain) = action(&mut m, &f, &EK, &AK);
        assert_eq!(outcome, Outcome::Refused(Refusal::Weakening));
        assert_eq!(plain, action_response(250));
    }
    assert_eq!(
        m.policy(CLIENT).unwrap(),
        SecurityPolicy::AuthenticatedEncrypted
    );
}

/// SecPol_3: security_activate with a value outside the version-0 enum,
/// or to a policy that drops a requirement (authenticated to encrypted),
/// is refused; the same value is accepted (no change).
#[test]
fn sec_pol_3() {
    let mut m = meter_with(
        SecurityPolicy::Authenticated,
        1,
        DeviceCapabilities::default(),
    );
    let f = glo(
        GLO_ACTION,
        Protection::AuthenticatedEncrypted,
        1,
        &activate(4),
    );
    assert_eq!(
        action(&mut m, &f, &EK, &AK).0,
        Outcome::Refused(Refusal::Malformed)
    );
    let f = glo(
        GLO_ACTION,
        Protection::AuthenticatedEncrypted,
        2,
        &activate(2),
    );
    assert_eq!(
        action(&mut m, &f, &EK, &AK).0,
        Outcome::Refused(Refusal::Weakening)
    );
    let f = glo(
        GLO_ACTION,
        Protection::AuthenticatedEncrypted,
        3,
        &activate(1),
    );
    assert_eq!(
        action(&mut m, &f, &EK, &AK).0,
        Outcome::PolicyActivated(SecurityPolicy::Authenticated)
    );
    assert_eq!(m.policy(CLIENT).unwrap(), SecurityPolicy::Authenticated);
}

/// f(challenge) by the Green Book: SC 0x10 ‖ IC ‖ GMAC(EK, title ‖ IC,
/// SC ‖ AK ‖ challenge).
fn f_of(title: &[u8; 8], ic: u32, challenge: &[u8]) -> Vec<u8> {
    let mut aad = vec![0x10];
    aad.extend_from_slice(&AK);
    aad.extend_from_slice(challenge);
    let tag = Gcm::new_from_slice(&EK)
        .unwrap()
        .encrypt_inout_detached(&iv(title, ic).into(), &aad, (&mut [][..]).into())
        .unwrap();
    let mut f = vec![0x10];
    f.extend_from_slice(&ic.to_be_bytes());
    f.extend_from_slice(&tag);
    f
}

/// APPL_OPEN_3: HLS-5 passes 3 and 4: the meter verifies the client's
/// f(StoC) and answers f(CtoS) (GB Table 43); a wrong f(StoC) is refused.
#[test]
fn appl_open_3() {
    let ctos = b"K56iVagY";
    let stoc = b"P6wRJ21F";
    // The meter's counter stands at GB Table 43's value.
    let mut m = meter_with(
        SecurityPolicy::AuthenticatedEncrypted,
        0x0123_4567,
        DeviceCapabilities::default(),
    );
    m.expect_hls(CLIENT, ctos, stoc).unwrap();
    let f_stoc = f_of(&CLIENT_TITLE, 1, stoc);
    assert_eq!(
        hex::encode_upper(&f_stoc),
        "10000000011A52FE7DD3E72748973C1E28"
    );
    let mut p = vec![0x09, 0x11];
    p.extend_from_slice(&f_stoc);
    let f = glo(
        GLO_ACTION,
        Protection::AuthenticatedEncrypted,
        2,
        &action_request(15, ASSOCIATION, 1, &p),
    );
    let (outcome, plain) = action(&mut m, &f, &EK, &AK);
    assert_eq!(outcome, Outcome::HlsAuthenticated);
    assert!(m.hls_authenticated(CLIENT).unwrap());
    assert_eq!(plain[..8], [0xC7, 0x01, 0xC1, 0x00, 0x01, 0x00, 0x09, 0x11]);
    let f_ctos = &plain[8..];
    assert_eq!(f_ctos, &f_of(&METER_TITLE, 0x0123_4567, ctos)[..]);
    assert_eq!(
        hex::encode_upper(f_ctos),
        "1001234567FE1466AFB3DBCD4F9389E2B7"
    );
    // The library's client checks it too.
    let suite = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(EK),
        &AuthenticationKey::from_bytes(AK),
    );
    assert!(hls5::verify(&suite, &SystemTitle::new(METER_TITLE), ctos, f_ctos).is_ok());

    // A wrong f(StoC): refused, not authenticated.
    m.expect_hls(CLIENT, ctos, stoc).unwrap();
    let mut bad = p.clone();
    bad[10] ^= 1;
    let f = glo(
        GLO_ACTION,
        Protection::AuthenticatedEncrypted,
        3,
        &action_request(15, ASSOCIATION, 1, &bad),
    );
    let (outcome, plain) = action(&mut m, &f, &EK, &AK);
    assert_eq!(outcome, Outcome::Refused(Refusal::Hls));
    assert_eq!(plain, action_response(250));
    assert!(!m.hls_authenticated(CLIENT).unwrap());
}

/// APPL_OPEN_9: an AARQ whose user-information is a glo-initiateRequest
/// (authenticated and encrypted) carrying a dedicated key opens an
/// association that uses that key; the key dies with the association.
#[test]
fn appl_open_9() {
    let initiate = hex::decode(INITIATE_DK).unwrap();
    let aarq = glo(
        GLO_INITIATE,
        Protection::AuthenticatedEncrypted,
        1,
        &initiate,
    );
    // The self-built glo-initiateRequest of the design notes (§11).
    assert_eq!(
        hex::encode_upper(&aarq),
        "21303000000001\
         9944BB0E4074598C8A37EA50010A1286A49D9FE0B8C39DB7900BD1BEF3825629\
         06BF5E6FD48A889DD3B02F"
    );
    let mut m = meter();
    let mut rx = aarq.clone();
    let r = m.associate(CLIENT, &mut rx).unwrap();
    assert_eq!(r.apdu(), &initiate[..]);
    // The InitiateResponse goes out as a glo-initiateResponse.
    let initiate_response = [
        0x08, 0x00, 0x06, 0x5F, 0x1F, 0x04, 0x00, 0x00, 0x10, 0x1D, 0x04, 0xB0, 0x00, 0x07,
    ];
    let mut out = [0u8; 64];
    let n = m.protect(&r, &initiate_response, &mut out).unwrap();
    drop(r);
    let (tag, _, _, plain) = open(&EK, &AK, &out[..n]).unwrap();
    assert_eq!((tag, plain.as_slice()), (0x28, &initiate_response[..]));
    // ded- frames under the key are served; after an abort they are not.
    let answer = exchange(&mut m, &ded(DED_GET, 2, &GET)).unwrap();
    assert_eq!(open(&DK, &AK, &answer).unwrap().3, GET_RESPONSE);
    m.abort(CLIENT).unwrap();
    assert_eq!(
        exchange(&mut m, &ded(DED_GET, 3, &GET)).unwrap_err(),
        Error::KeyNotAvailable(KeyKind::Dedicated)
    );
}

/// key_transfer is refused from a request that is authenticated but not
/// encrypted, and a new Master Key from a device without the capability.
#[test]
fn key_transfer_needs_encryption_and_the_capability() {
    let mut m = meter_with(
        SecurityPolicy::Authenticated,
        1,
        DeviceCapabilities::default(),
    );
    let req = key_transfer(&[(0, kw(&MK, &[0xE1; 16]))]);
    let f = glo(GLO_ACTION, Protection::Authenticated, 1, &req);
    let (outcome, plain) = action(&mut m, &f, &EK, &AK);
    assert_eq!(outcome, Outcome::Refused(Refusal::Protection));
    assert_eq!(plain, action_response(3));
    let req = key_transfer(&[(3, kw(&MK, &[0x5A; 16]))]);
    let f = glo(GLO_ACTION, Protection::AuthenticatedEncrypted, 2, &req);
    assert_eq!(
        action(&mut m, &f, &EK, &AK).0,
        Outcome::Refused(Refusal::MasterKeyRotation)
    );
    assert!(accepted_under(&mut m, &EK, &AK, 3));
}
