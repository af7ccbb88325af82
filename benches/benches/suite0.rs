//! dlms-sec beside its raw baselines. Every group holds our function
//! ("dlms-sec") and the baseline ("raw") measured in the same run; the
//! ratios are read off with `python3 benches/ratios.py`.

// Benches index fixtures they built and stop on a broken fixture.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::semicolon_if_nothing_returned,
    clippy::cast_sign_loss,
    missing_docs
)]

mod common;

use dlms_sec::suite0::PeerTitle;
use std::hint::black_box;
use std::time::{Duration, Instant};

use aes::Aes128;
use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use aes_gcm::aead::AeadInOut;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dlms_sec::counter::SingleUse;
use dlms_sec::key::package::{Packager, RecordId};
use dlms_sec::key::wrap::{self, WrappedKey};
use dlms_sec::key::{AuthenticationKey, GlobalUnicastEncryptionKey, KeyRole, MasterKey, SharedKey};
use dlms_sec::meter::key_transfer::NewKeys;
use dlms_sec::suite0::hls5;
use dlms_sec::suite0::{Protect, Unprotect};
use dlms_sec::types::Client;
use dlms_sec::wire::CipheredForm;
use dlms_sec::wire::KeyTransfer;
use dlms_sec::{InvocationCounter, KeyKind, Protection, SecurityPolicy};

use common::{AK, EK, RawGcm, TITLE, apdu, counter, dco, iv, raw_aad, raw_command, restore, suite};

const SIZES: [usize; 6] = [16, 64, 256, 1024, 4096, 16384];
const POLICIES: [(Protection, &str); 3] = [
    (Protection::Authenticated, "auth"),
    (Protection::Encrypted, "enc"),
    (Protection::AuthenticatedEncrypted, "auth-enc"),
];
const FORMS: [(CipheredForm<'static>, &str); 2] = [
    (CipheredForm::ServiceSpecific, "service"),
    (
        CipheredForm::General {
            with_system_title: true,
        },
        "general-glo",
    ),
];

/// The protect baseline: aes-gcm over the APDU with the AAD contiguous
/// (for authentication only, the GMAC over SC ‖ AK ‖ APDU).
fn bench_raw_protect(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    raw: &RawGcm,
    protection: Protection,
    a: &[u8],
) {
    let aad = raw_aad(protection, a);
    let mut buf = a.to_vec();
    let mut ic = 0u32;
    g.bench_function(BenchmarkId::new("raw", a.len()), |b| {
        b.iter(|| {
            ic = ic.wrapping_add(1);
            let data: &mut [u8] = if protection == Protection::Authenticated {
                &mut []
            } else {
                &mut buf
            };
            raw.encrypt_inout_detached(&iv(ic).into(), black_box(&aad), data.into())
                .expect("raw")
        });
    });
}

fn protect(c: &mut Criterion) {
    let s = suite();
    let raw = RawGcm::new(&EK.into());
    for (protection, pname) in POLICIES {
        for (form, fname) in FORMS {
            let mut g = c.benchmark_group(format!("protect/{pname}/{fname}"));
            for size in SIZES {
                g.throughput(Throughput::Bytes(size as u64));
                let a = apdu(size);
                let req = Protect {
                    protection,
                    key: KeyKind::GlobalUnicast,
                    form,
                    system_title: TITLE,
                };
                let mut out = vec![0u8; s.frame_len(&req, &a).expect("len")];
                let mut ctr = counter();
                g.bench_with_input(BenchmarkId::new("dlms-sec", size), &a, |b, a| {
                    b.iter(|| {
                        s.protect(&req, &mut ctr, black_box(a), &mut out)
                            .expect("protect")
                    });
                });
                bench_raw_protect(&mut g, &raw, protection, &a);
            }
            g.finish();
        }
    }
}

/// The zero-copy path under authentication only (the streamed AAD with
/// no copy, see docs/performance.md): the APDU already built at its place in the
/// transmit buffer, as the baseline's input is prepared beforehand, and
/// protected there with `protect_prepared` (which leaves it in clear, so
/// every iteration sees the same input).
fn protect_prepared(c: &mut Criterion) {
    let s = suite();
    let raw = RawGcm::new(&EK.into());
    let protection = Protection::Authenticated;
    let mut g = c.benchmark_group("protect-prepared/auth/service");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let a = apdu(size);
        let req = Protect::unicast(protection, TITLE);
        let header = s.header_len(&req, a.len()).expect("header");
        let mut buf = vec![0u8; s.frame_len(&req, &a).expect("len")];
        buf[header..header + a.len()].copy_from_slice(&a);
        let mut ctr = counter();
        g.bench_function(BenchmarkId::new("dlms-sec", size), |b| {
            b.iter(|| {
                s.protect_prepared(&req, &mut ctr, black_box(&mut buf), size)
                    .expect("protect_prepared")
            });
        });
        bench_raw_protect(&mut g, &raw, protection, &a);
    }
    g.finish();
}

fn unprotect(c: &mut Criterion) {
    let s = suite();
    let raw = RawGcm::new(&EK.into());
    let params = Unprotect {
        peer_system_title: PeerTitle::Expected(TITLE),
        policy: SecurityPolicy::AcceptAnyProtection,
    };
    for (protection, pname) in POLICIES {
        for (form, fname) in FORMS {
            let mut g = c.benchmark_group(format!("unprotect/{pname}/{fname}"));
            for size in SIZES {
                g.throughput(Throughput::Bytes(size as u64));
                let a = apdu(size);
                let req = Protect {
                    protection,
                    key: KeyKind::GlobalUnicast,
                    form,
                    system_title: TITLE,
                };
                let mut frame = vec![0u8; s.frame_len(&req, &a).expect("len")];
                s.protect(
                    &req,
                    &mut SingleUse::dangerous_new(InvocationCounter::new(5)),
                    &a,
                    &mut frame,
                )
                .expect("protect");
                let mut work = frame.clone();
                // Authentication only leaves the frame as it is: nothing to
                // restore (on either side).
                let in_place = protection != Protection::Authenticated;
                g.bench_with_input(BenchmarkId::new("dlms-sec", size), &frame, |b, frame| {
                    b.iter(|| {
                        if in_place {
                            restore(&mut work, frame);
                        }
                        s.unprotect(black_box(&mut work), &params)
                            .map(|u| u.apdu().len())
                            .expect("unprotect")
                    });
                });
                // Raw: the same ciphertext and tag, the AAD already contiguous.
                let aad = raw_aad(protection, &a);
                let mut ct = a.clone();
                let tag = raw
                    .encrypt_inout_detached(
                        &iv(5).into(),
                        &aad,
                        if protection == Protection::Authenticated {
                            (&mut [][..]).into()
                        } else {
                            ct.as_mut_slice().into()
                        },
                    )
                    .expect("raw");
                let mut rwork = ct.clone();
                g.bench_with_input(BenchmarkId::new("raw", size), &ct, |b, ct| {
                    b.iter(|| {
                        let data: &mut [u8] = if in_place {
                            restore(&mut rwork, ct);
                            &mut rwork
                        } else {
                            &mut []
                        };
                        raw.decrypt_inout_detached(
                            &iv(5).into(),
                            black_box(&aad),
                            data.into(),
                            &tag,
                        )
                        .expect("raw")
                    });
                });
            }
            g.finish();
        }
    }
}

fn unprotect_bad_tag(c: &mut Criterion) {
    let s = suite();
    let raw = RawGcm::new(&EK.into());
    let params = Unprotect {
        peer_system_title: PeerTitle::Expected(TITLE),
        policy: SecurityPolicy::AcceptAnyProtection,
    };
    let mut g = c.benchmark_group("unprotect-bad-tag/auth-enc/service");
    for size in [64usize, 1024] {
        let a = apdu(size);
        let req = Protect::unicast(Protection::AuthenticatedEncrypted, TITLE);
        let mut frame = vec![0u8; s.frame_len(&req, &a).expect("len")];
        s.protect(
            &req,
            &mut SingleUse::dangerous_new(InvocationCounter::new(5)),
            &a,
            &mut frame,
        )
        .expect("protect");
        let last = frame.len() - 1;
        frame[last] ^= 1;
        g.bench_function(BenchmarkId::new("dlms-sec", size), |b| {
            b.iter_batched_ref(
                || frame.clone(),
                |work| s.unprotect(black_box(work), &params).is_err(),
                BatchSize::SmallInput,
            );
        });
        let aad = raw_aad(Protection::AuthenticatedEncrypted, &a);
        let mut ct = a.clone();
        let mut tag = raw
            .encrypt_inout_detached(&iv(5).into(), &aad, ct.as_mut_slice().into())
            .expect("raw");
        tag[11] ^= 1;
        let mut rwork = ct.clone();
        g.bench_with_input(BenchmarkId::new("raw", size), &ct, |b, ct| {
            b.iter(|| {
                rwork.copy_from_slice(ct);
                raw.decrypt_inout_detached(
                    &iv(5).into(),
                    black_box(&aad),
                    rwork.as_mut_slice().into(),
                    &tag,
                )
                .is_err()
            });
        });
    }
    g.finish();
}

fn hls5_bench(c: &mut Criterion) {
    let s = suite();
    let raw = RawGcm::new(&EK.into());
    let challenge = *b"P6wRJ21F0123456789abcdef";
    let mut ctr = counter();
    let response = hls5::respond(
        &s,
        &TITLE,
        &mut SingleUse::dangerous_new(InvocationCounter::new(1)),
        &challenge,
    )
    .expect("respond");
    let mut aad = vec![0x10];
    aad.extend_from_slice(&AK);
    aad.extend_from_slice(&challenge);
    let mut g = c.benchmark_group("hls5/respond");
    g.bench_function("dlms-sec", |b| {
        b.iter(|| hls5::respond(&s, &TITLE, &mut ctr, black_box(&challenge)).expect("respond"))
    });
    let mut ic = 0u32;
    g.bench_function("raw", |b| {
        b.iter(|| {
            ic = ic.wrapping_add(1);
            let tag = raw
                .encrypt_inout_detached(&iv(ic).into(), black_box(&aad), (&mut [][..]).into())
                .expect("gmac");
            let mut out = [0u8; 17];
            out[0] = 0x10;
            out[1..5].copy_from_slice(&ic.to_be_bytes());
            out[5..].copy_from_slice(&tag);
            out
        });
    });
    g.finish();
    let mut g = c.benchmark_group("hls5/verify");
    g.bench_function("dlms-sec", |b| {
        b.iter(|| hls5::verify(&s, &TITLE, &challenge, black_box(response.as_bytes())).is_ok())
    });
    let expected: [u8; 12] = response.as_bytes()[5..].try_into().expect("tag");
    g.bench_function("raw", |b| {
        b.iter(|| {
            raw.decrypt_inout_detached(
                &iv(1).into(),
                black_box(&aad),
                (&mut [][..]).into(),
                &expected.into(),
            )
            .is_ok()
        });
    });
    g.finish();
}

fn keys(c: &mut Criterion) {
    let mk_bytes = [0x33u8; 16];
    let mk = MasterKey::from_bytes(mk_bytes);
    let guek = GlobalUnicastEncryptionKey::from_bytes(EK);
    let wrapped = wrap::wrap(&mk, &guek);
    let mut g = c.benchmark_group("keywrap/wrap");
    g.bench_function("dlms-sec", |b| b.iter(|| wrap::wrap(&mk, black_box(&guek))));
    g.bench_function("raw", |b| {
        b.iter(|| {
            let kw = aes_kw::KwAes128::new(&mk_bytes.into());
            let mut out = [0u8; 24];
            kw.wrap_key(black_box(&EK), &mut out).expect("wrap");
            out
        });
    });
    g.finish();
    let mut g = c.benchmark_group("keywrap/unwrap");
    g.bench_function("dlms-sec", |b| {
        b.iter(|| wrap::unwrap::<GlobalUnicastEncryptionKey>(&mk, black_box(&wrapped)).is_ok())
    });
    g.bench_function("raw", |b| {
        b.iter(|| {
            let kw = aes_kw::KwAes128::new(&mk_bytes.into());
            let mut out = [0u8; 16];
            kw.unwrap_key(black_box(wrapped.as_bytes()), &mut out)
                .is_ok()
        });
    });
    g.finish();
    let _ = WrappedKey::new([0; 24]);

    // key_transfer for a new AK and GUEK: wrap both under the MK and emit
    // the method parameter, against two raw aes-kw wraps.
    let ak = AuthenticationKey::from_bytes(AK);
    let mut param = [0u8; 64];
    let mut g = c.benchmark_group("key-transfer/build-2");
    g.bench_function("dlms-sec", |b| {
        b.iter(|| {
            let t = KeyTransfer::wrap_new_keys(
                &mk,
                NewKeys {
                    guek: Some(black_box(&guek)),
                    ak: Some(&ak),
                    ..NewKeys::default()
                },
            )
            .expect("wrap");
            t.emit(&mut param).expect("emit")
        });
    });
    g.bench_function("raw", |b| {
        b.iter(|| {
            let kw = aes_kw::KwAes128::new(&mk_bytes.into());
            let mut out = [0u8; 48];
            let (a, b2) = out.split_at_mut(24);
            kw.wrap_key(black_box(&EK), a).expect("wrap");
            kw.wrap_key(black_box(&AK), b2).expect("wrap");
            out
        });
    });
    g.finish();

    let kek = [0x44u8; 16];
    let packager = Packager::new(&SharedKey::from_bytes(kek));
    let raw_kek = Aes128::new(&kek.into());
    let id = RecordId {
        device: TITLE,
        client: Some(Client::Management),
        role: KeyRole::GlobalUnicastEncryption,
        generation: 1,
    };
    let record = packager.package(&guek, id).expect("package");
    let mut g = c.benchmark_group("package/package");
    g.bench_function("dlms-sec", |b| {
        b.iter(|| packager.package(black_box(&guek), id).expect("package"))
    });
    g.bench_function("raw", |b| {
        b.iter(|| {
            let mut block = aes::Block::from(EK);
            raw_kek.encrypt_block(black_box(&mut block));
            block
        });
    });
    g.finish();
    let mut g = c.benchmark_group("package/unpackage");
    g.bench_function("dlms-sec", |b| {
        b.iter(|| packager.unpackage(black_box(&record)).is_ok())
    });
    let ct =
        aes::Block::from(<[u8; 16]>::try_from(&record.record().as_bytes()[18..34]).expect("ct"));
    g.bench_function("raw", |b| {
        b.iter(|| {
            let mut block = ct;
            raw_kek.decrypt_block(black_box(&mut block));
            block
        });
    });
    g.finish();
}

fn dco_path(c: &mut Criterion) {
    let d = dco();
    let a = apdu(64);
    let mut out = [0u8; 128];
    let mut ctr = counter();
    let mut g = c.benchmark_group("dco/command-64");
    g.bench_function("dlms-sec", |b| {
        b.iter(|| d.command(&mut ctr, black_box(&a), &mut out))
    });
    let mut buf = a.clone();
    let mut ic = 0u32;
    g.bench_function("raw", |b| {
        b.iter(|| {
            ic = ic.wrapping_add(1);
            raw_command(black_box(&mut buf), ic)
        });
    });
    // The same work as ours composed from raw crate calls, without record
    // parsing, check-value comparison, framing or counters: the floor for
    // any implementation of the path on these crates (`Dco::raw_unpacked`).
    g.bench_function("raw-unpacked", |b| {
        b.iter(|| {
            ic = ic.wrapping_add(1);
            d.raw_unpacked(black_box(&mut buf), ic)
        });
    });
    g.finish();

    // Commands per second on 1 and 2 threads: each thread runs its share of
    // the commands with its own counter and buffers; the provider is shared
    // by reference (no lock, no shared mutable state).
    let mut g = c.benchmark_group("dco/threads");
    for threads in [1usize, 2] {
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::from_parameter(threads), |b| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(threads as u64);
                let start = Instant::now();
                std::thread::scope(|scope| {
                    for _ in 0..threads {
                        scope.spawn(|| {
                            let mut ctr = counter();
                            let mut out = [0u8; 128];
                            for _ in 0..per {
                                black_box(d.command(&mut ctr, black_box(&a), &mut out));
                            }
                        });
                    }
                });
                // Time per command across all threads.
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (per * threads as u64) as f64)
            });
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = protect, protect_prepared, unprotect, unprotect_bad_tag, hls5_bench, keys, dco_path
}
criterion_main!(benches);
