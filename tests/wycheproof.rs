//! Wycheproof's AES key-wrap vectors (vectors/aes_wrap_test.json; source,
//! version and licence in vectors/README.md) through the library's RFC
//! 3394 paths: `key::wrap::{wrap, unwrap}` for every key role
//! key_transfer carries, and the meter's `KeyTransfer::parse` and `stage`.
//!
//! The library wraps 16-octet keys under a 16-octet Master Key, so a case
//! with a 128-bit KEK, a 16-octet key and a 24-octet wrap runs both ways.
//! Every invalid 128-bit-KEK case is refused: a 24-octet wrap by the
//! unwrap's integrity check, any other length by the key_transfer parser
//! (a wrapped key is exactly 24 octets). Valid cases of other key sizes
//! and every 192- and 256-bit-KEK case are not applicable and counted.
//! The AES-GCM file runs in src/gcm.rs (the GCM is crate-private).

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    reason = "test code: a panic is a failed test"
)]

use dlms_sec::key::wrap::{self, TransferableKey, WrappedKey};
use dlms_sec::key::{
    AuthenticationKey, GlobalBroadcastEncryptionKey, GlobalUnicastEncryptionKey, MasterKey,
};
use dlms_sec::meter::key_transfer::stage;
use dlms_sec::wire::KeyTransfer;
use dlms_sec::{AuthError, Error};
use serde_json::Value;

fn hex(case: &Value, field: &str) -> Vec<u8> {
    hex::decode(
        case[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} missing")),
    )
    .unwrap()
}

/// A key_transfer parameter of one AK entry whose octet-string is `wrapped`
/// (any length, its A-XDR length in minimal form).
fn key_transfer_of(wrapped: &[u8]) -> Vec<u8> {
    let mut p = vec![0x01, 0x01, 0x02, 0x02, 0x16, 0x02, 0x09];
    match wrapped.len() {
        n @ 0..=0x7F => p.push(n as u8),
        n @ 0x80..=0xFF => p.extend_from_slice(&[0x81, n as u8]),
        n => p.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    p.extend_from_slice(wrapped);
    p
}

/// A valid case under role `K`: the wrap of `key` is `ct`, and the unwrap
/// of `ct` is a key whose wrap is `ct` again (keys have no `PartialEq`; for
/// a fixed KEK the wrap is a permutation, so equal wraps mean equal keys).
fn valid_both_ways<K: TransferableKey>(
    make: fn([u8; 16]) -> K,
    mk: &MasterKey,
    key: [u8; 16],
    ct: &[u8; 24],
    id: u64,
) {
    let k = make(key);
    assert_eq!(wrap::wrap(mk, &k).as_bytes(), ct, "tcId {id}: wrap");
    let back: K = wrap::unwrap(mk, &WrappedKey::new(*ct)).unwrap();
    assert_eq!(wrap::wrap(mk, &back).as_bytes(), ct, "tcId {id}: unwrap");
}

/// An invalid 24-octet wrap is refused under role `K`.
fn refused<K: TransferableKey>(mk: &MasterKey, ct: &[u8; 24], id: u64) {
    assert!(
        matches!(
            wrap::unwrap::<K>(mk, &WrappedKey::new(*ct)),
            Err(Error::Auth(AuthError))
        ),
        "tcId {id}: unwrap accepted an invalid wrap"
    );
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    /// Valid 16-octet keys: wrapped and unwrapped, both ways.
    run_valid: usize,
    /// Invalid 24-octet wraps refused by the unwrap.
    refused_by_unwrap: usize,
    /// Invalid wraps of another length refused by the key_transfer parser.
    refused_by_parser: usize,
    /// Valid or acceptable cases of a key size other than 16 octets (the
    /// parser refuses their wraps: 16-octet keys only).
    not_applicable_key_size: usize,
    /// Cases under a 192- or 256-bit KEK.
    not_applicable_kek: usize,
}

#[test]
fn wycheproof_aes_wrap_128_bit_kek() {
    let file: Value = serde_json::from_str(include_str!("../vectors/aes_wrap_test.json")).unwrap();
    assert_eq!(file["algorithm"], "AES-WRAP");
    let mut counts = Counts::default();
    let mut total = 0;
    for group in file["testGroups"].as_array().unwrap() {
        let cases = group["tests"].as_array().unwrap();
        total += cases.len();
        if group["keySize"] != 128 {
            counts.not_applicable_kek += cases.len();
            continue;
        }
        for case in cases {
            let id = case["tcId"].as_u64().unwrap();
            let result = case["result"].as_str().unwrap();
            let mk = MasterKey::from_slice(&hex(case, "key")).unwrap();
            let msg = hex(case, "msg");
            let ct = hex(case, "ct");
            let parsed = KeyTransfer::parse(&key_transfer_of(&ct));
            match (
                result,
                <[u8; 16]>::try_from(msg.as_slice()),
                <[u8; 24]>::try_from(ct.as_slice()),
            ) {
                ("valid", Ok(key), Ok(ct)) => {
                    valid_both_ways(GlobalUnicastEncryptionKey::from_bytes, &mk, key, &ct, id);
                    valid_both_ways(GlobalBroadcastEncryptionKey::from_bytes, &mk, key, &ct, id);
                    valid_both_ways(AuthenticationKey::from_bytes, &mk, key, &ct, id);
                    valid_both_ways(MasterKey::from_bytes, &mk, key, &ct, id);
                    // The meter's path: parse the key_transfer, stage it.
                    assert!(stage(&mk, &parsed.unwrap()).is_ok(), "tcId {id}: stage");
                    counts.run_valid += 1;
                }
                ("invalid", _, Ok(ct)) => {
                    refused::<GlobalUnicastEncryptionKey>(&mk, &ct, id);
                    refused::<GlobalBroadcastEncryptionKey>(&mk, &ct, id);
                    refused::<AuthenticationKey>(&mk, &ct, id);
                    refused::<MasterKey>(&mk, &ct, id);
                    assert!(
                        matches!(stage(&mk, &parsed.unwrap()), Err(Error::Auth(AuthError))),
                        "tcId {id}: stage accepted an invalid wrap"
                    );
                    // Nor does wrapping the case's key give the invalid wrap.
                    if let Ok(key) = <[u8; 16]>::try_from(msg.as_slice()) {
                        let k = GlobalUnicastEncryptionKey::from_bytes(key);
                        assert_ne!(wrap::wrap(&mk, &k).as_bytes(), &ct, "tcId {id}");
                    }
                    counts.refused_by_unwrap += 1;
                }
                ("invalid", _, Err(_)) => {
                    assert!(
                        parsed.is_err(),
                        "tcId {id}: a {}-octet wrap parsed",
                        ct.len()
                    );
                    counts.refused_by_parser += 1;
                }
                ("valid" | "acceptable", _, _) => {
                    assert_ne!(msg.len(), 16, "tcId {id}: a 16-octet key not run");
                    assert!(
                        parsed.is_err(),
                        "tcId {id}: a {}-octet wrap parsed",
                        ct.len()
                    );
                    counts.not_applicable_key_size += 1;
                }
                _ => panic!("tcId {id}: unexpected result {result}"),
            }
        }
    }
    println!("Wycheproof aes_wrap_test.json: {counts:?} of {total} cases");
    assert_eq!(
        total,
        usize::try_from(file["numberOfTests"].as_u64().unwrap()).unwrap()
    );
    assert_eq!(
        counts,
        Counts {
            run_valid: 4,
            refused_by_unwrap: 12,
            refused_by_parser: 18,
            not_applicable_key_size: 8,
            not_applicable_kek: 123,
        }
    );
}
