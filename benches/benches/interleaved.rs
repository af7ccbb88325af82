//! Interleaved timing: ours and the raw baseline alternate in one process,
//! 200 rounds of about 40 µs each, and each side keeps its fastest round;
//! that ratio is taken in 15 passes, round-robin over all rows (so each
//! row's passes are spread over the whole run), and the median and range
//! printed. On a shared host whose speed changes from
//! second to second this cancels what criterion's one-after-the-other
//! groups cannot (a load change between "dlms-sec" and "raw" lands in
//! their ratio). A cross-check of `suite0.rs`, not a replacement: the
//! recorded figures are criterion's.
//!
//! `cargo bench -p dlms-sec-benches --bench interleaved` (criterion's
//! arguments, when `cargo bench` passes them, are ignored).

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
use std::time::Instant;

use aes_gcm::aead::{AeadInOut, KeyInit};
use dlms_sec::suite0::{Protect, Suite0, Unprotect};
use dlms_sec::{Protection, SecurityPolicy};

use common::{
    Dco, RawGcm, TITLE, apdu, counter, dco, iv, raw_aad, raw_command, request, restore, suite,
};

const PASSES: usize = 15;
const ROUNDS: usize = 200;

/// One comparison: ours and the baseline, each one call.
struct Row {
    name: String,
    ours: Box<dyn FnMut()>,
    raw: Box<dyn FnMut()>,
    /// Calls per round (about 40 µs of the slower side).
    n: usize,
    ratios: Vec<f64>,
    ours_ns: f64,
}

fn row(name: String, mut ours: impl FnMut() + 'static, mut raw: impl FnMut() + 'static) -> Row {
    let t = Instant::now();
    for _ in 0..64 {
        ours();
        raw();
    }
    let per = t.elapsed().as_secs_f64() / 64.0;
    Row {
        name,
        ours: Box::new(ours),
        raw: Box::new(raw),
        n: ((40e-6 / per) as usize).max(1),
        ratios: Vec::new(),
        ours_ns: f64::MAX,
    }
}

/// One pass over every row: `ROUNDS` alternating rounds, each side's
/// fastest kept. Passes go round-robin over the rows, so every row's
/// passes are spread over the whole run rather than one stretch of it.
fn pass(rows: &mut [Row]) {
    for r in rows.iter_mut() {
        let (mut a, mut b) = (f64::MAX, f64::MAX);
        for _ in 0..ROUNDS {
            let t = Instant::now();
            for _ in 0..r.n {
                (r.ours)();
            }
            a = a.min(t.elapsed().as_secs_f64() / r.n as f64);
            let t = Instant::now();
            for _ in 0..r.n {
                (r.raw)();
            }
            b = b.min(t.elapsed().as_secs_f64() / r.n as f64);
        }
        r.ratios.push(a / b);
        r.ours_ns = r.ours_ns.min(a * 1e9);
    }
}

/// The policies and APDU sizes both the protect and the unprotect rows cover.
const POLICY_SIZES: [(Protection, &str, &[usize]); 2] = [
    (
        Protection::AuthenticatedEncrypted,
        "auth-enc",
        &[16, 64, 1024, 16384],
    ),
    (
        Protection::Authenticated,
        "auth",
        &[64, 256, 1024, 4096, 16384],
    ),
];

/// Leaked fixtures: the rows' closures live for the whole run.
fn keep<T>(value: T) -> &'static mut T {
    Box::leak(Box::new(value))
}

fn protect_rows(s: &'static Suite0, raw: &'static RawGcm, rows: &mut Vec<Row>) {
    for (protection, name, sizes) in POLICY_SIZES {
        for &size in sizes {
            let a: &'static [u8] = keep(apdu(size));
            let req: &'static Protect<'static> = keep(request(protection));
            let out = keep(vec![0u8; s.frame_len(req, a).expect("len")]);
            let ctr = keep(counter());
            let aad: &'static [u8] = keep(raw_aad(protection, a));
            let buf = keep(a.to_vec());
            let mut ic = 0u32;
            rows.push(row(
                format!("protect {name} {size}"),
                move || {
                    black_box(s.protect(req, ctr, black_box(a), out).expect("protect"));
                },
                move || {
                    ic = ic.wrapping_add(1);
                    let data: &mut [u8] = if protection == Protection::Authenticated {
                        &mut []
                    } else {
                        buf
                    };
                    black_box(
                        raw.encrypt_inout_detached(&iv(ic).into(), black_box(aad), data.into())
                            .expect("raw"),
                    );
                },
            ));
            if protection == Protection::Authenticated {
                let header = s.header_len(req, size).expect("header");
                let prepared = keep(vec![0u8; s.frame_len(req, a).expect("len")]);
                prepared[header..header + size].copy_from_slice(a);
                let ctr = keep(counter());
                let mut ic = 0u32;
                rows.push(row(
                    format!("protect_prepared {name} {size}"),
                    move || {
                        black_box(
                            s.protect_prepared(req, ctr, black_box(prepared), size)
                                .expect("prepared"),
                        );
                    },
                    move || {
                        ic = ic.wrapping_add(1);
                        let none: &mut [u8] = &mut [];
                        black_box(
                            raw.encrypt_inout_detached(&iv(ic).into(), black_box(aad), none.into())
                                .expect("raw"),
                        );
                    },
                ));
            }
        }
    }
}

fn unprotect_rows(s: &'static Suite0, raw: &'static RawGcm, rows: &mut Vec<Row>) {
    let params: &'static Unprotect = keep(Unprotect {
        peer_system_title: PeerTitle::Expected(TITLE),
        policy: SecurityPolicy::AcceptAnyProtection,
    });
    for (protection, name, sizes) in POLICY_SIZES {
        for &size in sizes {
            let a = apdu(size);
            let req = request(protection);
            let mut frame = vec![0u8; s.frame_len(&req, &a).expect("len")];
            s.protect(&req, &mut counter(), &a, &mut frame)
                .expect("protect");
            let frame: &'static [u8] = keep(frame);
            let work = keep(frame.to_vec());
            let in_place = protection != Protection::Authenticated;
            let aad: &'static [u8] = keep(raw_aad(protection, &a));
            let mut ct = a.clone();
            let data: &mut [u8] = if in_place { &mut ct } else { &mut [] };
            let tag = raw
                .encrypt_inout_detached(&iv(1).into(), aad, data.into())
                .expect("raw");
            let ct: &'static [u8] = keep(ct);
            let rwork = keep(ct.to_vec());
            rows.push(row(
                format!("unprotect {name} {size}"),
                move || {
                    if in_place {
                        restore(work, frame);
                    }
                    black_box(s.unprotect(black_box(work), params).is_ok());
                },
                move || {
                    let data: &mut [u8] = if in_place {
                        restore(rwork, ct);
                        rwork
                    } else {
                        &mut []
                    };
                    black_box(
                        raw.decrypt_inout_detached(
                            &iv(1).into(),
                            black_box(aad),
                            data.into(),
                            &tag,
                        )
                        .is_ok(),
                    );
                },
            ));
        }
    }
}

fn dco_rows(rows: &mut Vec<Row>) {
    let d: &'static Dco = keep(dco());
    for baseline in ["raw", "raw-unpacked"] {
        let a: &'static [u8] = keep(apdu(64));
        let out = keep([0u8; 128]);
        let ctr = keep(counter());
        let buf = keep(apdu(64));
        let mut ic = 0u32;
        rows.push(row(
            format!("dco command 64 (vs {baseline})"),
            move || {
                black_box(d.command(ctr, black_box(a), out));
            },
            move || {
                ic = ic.wrapping_add(1);
                black_box(if baseline == "raw" {
                    raw_command(black_box(buf), ic)
                } else {
                    d.raw_unpacked(black_box(buf), ic)
                });
            },
        ));
    }
    let (b1, b2) = (keep(apdu(64)), keep(apdu(64)));
    let (mut i1, mut i2) = (0u32, 0u32);
    rows.push(row(
        "raw-unpacked (vs raw)".into(),
        move || {
            i1 = i1.wrapping_add(1);
            black_box(d.raw_unpacked(black_box(b1), i1));
        },
        move || {
            i2 = i2.wrapping_add(1);
            black_box(raw_command(black_box(b2), i2));
        },
    ));
}

fn main() {
    let s: &'static Suite0 = keep(suite());
    let raw: &'static RawGcm = keep(RawGcm::new(&common::EK.into()));
    let mut rows = Vec::new();
    protect_rows(s, raw, &mut rows);
    unprotect_rows(s, raw, &mut rows);
    dco_rows(&mut rows);
    for _ in 0..PASSES {
        pass(&mut rows);
    }
    println!(
        "{:36} {:>5}  {:>9}  {:>11}   (ours / raw: median, range over {PASSES} passes)",
        "operation (service form)", "ratio", "range", "ours (best)"
    );
    for r in &mut rows {
        r.ratios.sort_by(f64::total_cmp);
        let (lo, mid, hi) = (r.ratios[0], r.ratios[PASSES / 2], r.ratios[PASSES - 1]);
        println!(
            "{:36} {mid:5.2}  {lo:.2}–{hi:.2}  {:8.0} ns",
            r.name, r.ours_ns
        );
    }
}
