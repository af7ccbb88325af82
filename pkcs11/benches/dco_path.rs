//! The DCO command path (packaged AK and GUEK records to a protected
//! 64-octet APDU) through SoftHSM2, beside the software provider on the
//! same records: what PKCS#11 calls cost. No target; reported in the
//! README. Also key generation with packaging, and key_transfer wrapping.
//!
//! `cargo bench -p dlms-sec-pkcs11` (SoftHSM2 installed; the token is made
//! under target/softhsm/ as for the tests).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
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

fn bench(c: &mut Criterion) {
    let pair = support::pair();
    let mut rng = getrandom::SysRng;
    let records = support::CommandRecords::new(&pair.software);
    let keys = records.keys();
    let apdu: Vec<u8> = [0xC0].into_iter().chain(1..64u8).collect();
    let mut out = [0u8; 128];

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
    g.bench_function("softhsm2", |b| {
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
    g.bench_function("softhsm2", |b| {
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
