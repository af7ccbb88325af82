//! The DCO command path (packaged AK and GUEK records to a protected
//! 64-octet APDU) through the PKCS#11 module (SoftHSM2 unless
//! `DLMS_PKCS11_MODULE` names another), beside the software provider on the
//! same records: what PKCS#11 calls cost. No target; reported in the
//! README. Also key generation with packaging, and key_transfer wrapping.
//!
//! `cargo bench -p dlms-sec-pkcs11` (SoftHSM2 installed; the token is made
//! under target/softhsm/ as for the tests), or
//! `.ci/kryoptic.sh cargo bench -p dlms-sec-pkcs11` for kryoptic.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects,
    reason = "bench binary"
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use dlms_sec::counter::{SendCounter, Volatile};
use dlms_sec::key::{GlobalUnicastEncryptionKey, KeyRole};
use dlms_sec::provider::DcoProvider;
use dlms_sec::suite0::Protect;
use dlms_sec::{InvocationCounter, Protection};
use support::suite::{CLIENT_TITLE, id, master};

const REQ: Protect<'static> = Protect::unicast(Protection::AuthenticatedEncrypted, CLIENT_TITLE);

fn counter() -> SendCounter<Volatile> {
    SendCounter::volatile(InvocationCounter::new(1))
}

/// Mean time of `f` over `n` runs.
fn mean(n: u32, mut f: impl FnMut()) -> std::time::Duration {
    let start = std::time::Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed() / n
}

/// Calls per 64-octet command (uncached and cached) and the ratio of a
/// cached command's time to one bare `C_Encrypt` (AES-GCM under a key
/// object already there), measured in the same run.
fn calls_and_ratio(pair: &support::Pair, keys: &dlms_sec::provider::CommandKeys<'_>, apdu: &[u8]) {
    use cryptoki::mechanism::Mechanism;
    use cryptoki::mechanism::aead::GcmParams;
    use cryptoki::object::{Attribute, KeyType, ObjectClass};
    use dlms_sec_pkcs11::{CacheConfig, HsmDco, Token, calls};
    let mut config = support::config();
    config.cache = Some(CacheConfig {
        capacity: 64,
        ttl: std::time::Duration::from_secs(600),
    });
    let token = std::sync::Arc::new(Token::open(&config).unwrap());
    let cached = HsmDco::on_token(token, &pair.dco_label, &pair.shared_label).unwrap();
    let mut out = [0u8; 128];
    let mut per = |p: &HsmDco, ctr: &mut SendCounter<Volatile>| {
        let before = calls::count();
        p.protect(keys, &REQ, ctr, apdu, &mut out).unwrap();
        calls::count() - before
    };
    let (mut a, mut b) = (counter(), counter());
    let uncached_calls = per(&pair.hsm, &mut a);
    per(&cached, &mut b);
    let cached_calls = per(&cached, &mut b);
    // One bare C_Encrypt: cryptoki's encrypt is C_EncryptInit and two
    // C_Encrypt (the first asks the length), 3 C_ functions.
    let s = support::raw_session();
    let key = s
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Value(support::random_key().to_vec()),
            Attribute::Encrypt(true),
        ])
        .unwrap();
    let aad = [0x30u8; 17];
    let plain = [0u8; 64];
    let n = 2000;
    let mut bare_run = || {
        let mut iv = [7u8; 12];
        let params = GcmParams::new(&mut iv, &aad, 96u64.into()).unwrap();
        black_box(s.encrypt(&Mechanism::AesGcm(params), key, &plain).unwrap());
    };
    // Warm the module and the caches up first.
    mean(n, &mut bare_run);
    let bare = mean(n, || {
        let mut iv = [7u8; 12];
        let params = GcmParams::new(&mut iv, &aad, 96u64.into()).unwrap();
        black_box(s.encrypt(&Mechanism::AesGcm(params), key, &plain).unwrap());
    });
    let uncached = mean(n, || {
        pair.hsm
            .protect(keys, &REQ, &mut a, apdu, &mut out)
            .unwrap();
    });
    let steady = mean(n, || {
        cached.protect(keys, &REQ, &mut b, apdu, &mut out).unwrap();
    });
    let ratio = |t: std::time::Duration| t.as_secs_f64() / bare.as_secs_f64();
    println!(
        "pkcs11/command-64 on {}: calls per command: {uncached_calls} uncached, {cached_calls} cached (bare C_Encrypt: 3)",
        support::module_name()
    );
    println!(
        "pkcs11/command-64 on {}: bare C_Encrypt {bare:?}; uncached {uncached:?} ({:.2}x); cached {steady:?} ({:.2}x bare C_Encrypt)",
        support::module_name(),
        ratio(uncached),
        ratio(steady)
    );
}

fn bench(c: &mut Criterion) {
    let pair = support::pair();
    let mut rng = getrandom::SysRng;
    let records = support::CommandRecords::new(&pair.software);
    let keys = records.keys();
    let apdu: Vec<u8> = [0xC0].into_iter().chain(1..64u8).collect();
    let mut out = [0u8; 128];
    calls_and_ratio(&pair, &keys, &apdu);

    let mut g = c.benchmark_group("pkcs11/command-64");
    let mut ctr = counter();
    g.bench_function("software", |b| {
        b.iter(|| {
            pair.software
                .protect(&keys, &REQ, &mut ctr, black_box(&apdu), &mut out)
                .unwrap()
        });
    });
    let mut ctr = counter();
    g.bench_function(support::module_name(), |b| {
        b.iter(|| {
            pair.hsm
                .protect(&keys, &REQ, &mut ctr, black_box(&apdu), &mut out)
                .unwrap()
        });
    });
    g.finish();

    let (_, mk) = master(&pair.software);
    let mut g = c.benchmark_group("pkcs11/generate-for-transfer");
    g.bench_function("software", |b| {
        b.iter(|| {
            pair.software
                .generate_for_transfer::<GlobalUnicastEncryptionKey, _>(
                    &mut rng,
                    &mk,
                    id(KeyRole::GlobalUnicastEncryption, 1),
                )
                .unwrap()
        });
    });
    g.bench_function(support::module_name(), |b| {
        b.iter(|| {
            pair.hsm
                .generate_for_transfer::<GlobalUnicastEncryptionKey, _>(
                    &mut rng,
                    &mk,
                    id(KeyRole::GlobalUnicastEncryption, 1),
                )
                .unwrap()
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
