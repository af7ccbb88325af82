//! Timing-leak tests in the manner of dudect (Reparaz, Balasch,
//! Verbauwhede, "Dude, is my code constant time?", 2017), run by the
//! `dudect-bencher` crate: every case times one verification call on two
//! classes of input, chosen at random call by call, and Welch's t-test
//! compares the two timing distributions (whole, and cropped at 100
//! percentiles). `dudect-bencher` prints the largest |t| of those tests;
//! |t| above 4.5 is evidence that the time depends on the class.
//!
//! Each case rejects both classes: the inputs differ only in where the
//! value being checked is wrong (its first octet against its last), which
//! is what a comparison that stops at the first differing octet would
//! reveal. Every call goes through the public API:
//!
//! | case | call | classes |
//! |---|---|---|
//! | `suite0/auth-enc/<n>` | `Suite0::unprotect`, authenticated encryption, an n-octet APDU | tag wrong at octet 0 / at octet 11 |
//! | `suite0/auth/<n>` | the same, authentication only (GMAC over the APDU) | tag wrong at octet 0 / at octet 11 |
//! | `hls5/sc-vs-tag` | `hls5::verify` | response wrong at octet 0 (SC) / at octet 16 (the tag's last) |
//! | `hls5/tag` | `hls5::verify` | response wrong at octet 5 (the tag's first) / at octet 16 |
//! | `package/unpackage` | `Packager::unpackage` | check value wrong at its first / its last octet |
//! | `audit/check` | `AuditChain::check` | MAC wrong at its first / its last octet |
//! | `control/leaky-tag-eq` | a 12-octet comparison that stops at the first difference | wrong at octet 0 / at octet 11 |
//! | `control/leaky-after-16384` | the rejected 16 KiB frame, then that comparison | tag wrong at octet 0 / at octet 11 |
//!
//! The controls are the leak the other cases look for, planted: they must
//! show |t| far above 4.5, or the run could not have seen one (the second
//! at the noise of the longest call).
//!
//! Sizes: 64 octets runs GCM's short path (the whole GHASH input in 128
//! octets); 1 KiB and 16 KiB the streaming path. The wrong octet is XORed
//! with a random non-zero value, drawn for each call; the buffer is reset
//! and patched outside the timed call, and the timed call is the same
//! closure for both classes.
//!
//! ```sh
//! cargo bench -p dlms-sec-benches --bench ct               # every case
//! cargo bench -p dlms-sec-benches --bench ct -- hls5       # cases whose name holds "hls5"
//! DLMS_CT_SAMPLES=200000 cargo bench -p dlms-sec-benches --bench ct
//! ```
//!
//! `DLMS_CT_SAMPLES` is the number of timed calls per case (default
//! 1,000,000). Arguments starting with `-` (such as the `--bench` that
//! `cargo bench` passes) are ignored. The software backends of `aes` and
//! `polyval` are selected with `RUSTFLAGS` (docs/security.md).

// Benches index fixtures they built and stop on a broken fixture.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    missing_docs
)]

mod common;

use dlms_sec::suite0::PeerTitle;
use std::cell::RefCell;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::Instant;

use dlms_sec::audit::{AuditAction, AuditChain, AuditEvent, ChainId, MAC_LEN, Outcome, Timestamp};
use dlms_sec::key::package::{CHECK_VALUE_LEN, PackagedRecord, Packager, RECORD_LEN, RecordId};
use dlms_sec::key::{AuditKey, GlobalUnicastEncryptionKey, KeyRole, SharedKey};
use dlms_sec::suite0::Unprotect;
use dlms_sec::suite0::hls5;
use dlms_sec::types::Client;
use dlms_sec::{Protection, SecurityPolicy};
use dudect_bencher::ctbench::{BenchFn, BenchMetadata, BenchName, BenchOpts, run_benches_console};
use dudect_bencher::rand::Rng;
use dudect_bencher::{BenchRng, Class, CtRunner};

use common::{EK, TITLE, apdu, counter, request, suite};

/// Length of the suite-0 tag.
const TAG_LEN: usize = 12;

fn samples() -> usize {
    std::env::var("DLMS_CT_SAMPLES")
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(1_000_000)
}

/// Times `op` on `samples()` calls, each of a class drawn at random:
/// before each call (untimed) `prepare(right, delta)` sets up the input,
/// `right` telling the class and `delta` a random non-zero octet to XOR
/// into the wrong position. `op` returns whether the input was accepted,
/// which must never happen. Records the mean time per call (a software
/// backend shows there as a much longer call).
fn measure(
    name: &str,
    runner: &mut CtRunner,
    rng: &mut BenchRng,
    mut prepare: impl FnMut(bool, u8),
    op: impl Fn() -> bool,
) {
    let n = samples();
    let draws: Vec<(bool, u8)> = (0..n)
        .map(|_| {
            let r = rng.next_u32();
            (r & 1 == 1, ((r >> 8) % 255) as u8 + 1)
        })
        .collect();
    // Both classes must be rejected, or the case measures something else.
    for right in [false, true] {
        prepare(right, 1);
        assert!(!op(), "{name}: a wrong value was accepted");
    }
    let start = Instant::now();
    for &(right, delta) in &draws {
        prepare(right, delta);
        settle();
        let class = if right { Class::Right } else { Class::Left };
        runner.run_one(class, &op);
    }
    let per_call = start.elapsed().as_nanos() as f64 / n as f64;
    MEANS.lock().expect("means").push(format!(
        "{name}: {n} calls, {per_call:.0} ns per call with the untimed setup"
    ));
}

/// Drains the untimed setup's stores before the clock starts (a full
/// fence: `mfence` on x86-64), so the class-dependent writes of `prepare`
/// do not run on into the timed call (a narrow store that a wider load
/// then reads stalls, by where it sits).
fn settle() {
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

/// The mean time per call of each case, printed after the t-values.
static MEANS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A received suite-0 frame whose tag is wrong at octet 0 (left) or at
/// octet 11 (right), unprotected in place (a rejected frame is left as
/// received).
fn suite0_case(
    name: &str,
    protection: Protection,
    len: usize,
    runner: &mut CtRunner,
    rng: &mut BenchRng,
) {
    let s = suite();
    let mut frame = vec![0u8; len + 64];
    let n = s
        .protect(&request(protection), &mut counter(), &apdu(len), &mut frame)
        .expect("protect");
    frame.truncate(n);
    let params = Unprotect {
        peer_system_title: PeerTitle::Expected(TITLE),
        policy: SecurityPolicy::AcceptAnyProtection,
    };
    // The fixture verifies as built (on a copy: success decrypts in place).
    assert!(
        s.unprotect(&mut frame.clone(), &params).is_ok(),
        "{name}: fixture"
    );
    let tag_at = n - TAG_LEN;
    let good: [u8; TAG_LEN] = frame[tag_at..].try_into().expect("tag");
    let frame = RefCell::new(frame);
    measure(
        name,
        runner,
        rng,
        |right, delta| {
            let mut f = frame.borrow_mut();
            let tag = &mut f[tag_at..];
            tag.copy_from_slice(&good);
            tag[if right { TAG_LEN - 1 } else { 0 }] ^= delta;
        },
        || s.unprotect(&mut frame.borrow_mut(), &params).is_ok(),
    );
}

fn suite0_auth_enc<const N: usize>(runner: &mut CtRunner, rng: &mut BenchRng) {
    let name = format!("suite0/auth-enc/{N}");
    suite0_case(&name, Protection::AuthenticatedEncrypted, N, runner, rng);
}

fn suite0_auth<const N: usize>(runner: &mut CtRunner, rng: &mut BenchRng) {
    let name = format!("suite0/auth/{N}");
    suite0_case(&name, Protection::Authenticated, N, runner, rng);
}

/// f(challenge) wrong at octet `left` or at octet 16.
fn hls5_case(name: &str, left: usize, runner: &mut CtRunner, rng: &mut BenchRng) {
    let s = suite();
    let challenge = *b"0123456789abcdef";
    let response = *hls5::respond(&s, &TITLE, &mut counter(), &challenge)
        .expect("respond")
        .as_bytes();
    assert!(
        hls5::verify(&s, &TITLE, &challenge, &response).is_ok(),
        "{name}: fixture"
    );
    let buf = RefCell::new(response);
    measure(
        name,
        runner,
        rng,
        |right, delta| {
            let mut b = buf.borrow_mut();
            *b = response;
            b[if right { hls5::RESPONSE_LEN - 1 } else { left }] ^= delta;
        },
        || hls5::verify(&s, &TITLE, &challenge, &*buf.borrow()).is_ok(),
    );
}

fn hls5_sc_vs_tag(runner: &mut CtRunner, rng: &mut BenchRng) {
    hls5_case("hls5/sc-vs-tag", 0, runner, rng);
}

fn hls5_tag(runner: &mut CtRunner, rng: &mut BenchRng) {
    hls5_case("hls5/tag", hls5::RESPONSE_LEN - TAG_LEN, runner, rng);
}

/// A packaged GUEK whose check value is wrong at its first or its last
/// octet, unpackaged under the right KEK.
fn package_unpackage(runner: &mut CtRunner, rng: &mut BenchRng) {
    let name = "package/unpackage";
    let packager = Packager::new(&SharedKey::from_bytes([0x44; 16]));
    let id = RecordId {
        device: TITLE,
        client: Some(Client::Management),
        role: KeyRole::GlobalUnicastEncryption,
        generation: 1,
    };
    let good = packager
        .package(&GlobalUnicastEncryptionKey::from_bytes(EK), id)
        .expect("package");
    assert!(packager.unpackage(&good).is_ok(), "{name}: fixture");
    let bytes = *good.record().as_bytes();
    let check_at = RECORD_LEN - CHECK_VALUE_LEN;
    let record = RefCell::new(good);
    measure(
        name,
        runner,
        rng,
        |right, delta| {
            let mut b = bytes;
            b[if right { RECORD_LEN - 1 } else { check_at }] ^= delta;
            *record.borrow_mut() = PackagedRecord::parse(&b)
                .and_then(PackagedRecord::typed)
                .expect("record");
        },
        || packager.unpackage(&*record.borrow()).is_ok(),
    );
}

/// The first record of an audit chain with its MAC wrong at its first or
/// its last octet (a rejected record leaves the chain as it was).
fn audit_check(runner: &mut CtRunner, rng: &mut BenchRng) {
    let name = "audit/check";
    let key = [0x5A; 16];
    let event = AuditEvent::new(
        AuditAction::Packaged,
        Outcome::Success,
        Timestamp(1_700_000_000),
    )
    .with_device(TITLE)
    .with_client(Client::Management)
    .with_role(KeyRole::Authentication)
    .with_generation(1);
    let link = AuditChain::new(&AuditKey::from_bytes(key), ChainId([0x5C; 16]))
        .seal(&event)
        .expect("seal");
    let good: [u8; MAC_LEN] = link.mac;
    assert!(
        AuditChain::new(&AuditKey::from_bytes(key), ChainId([0x5C; 16]))
            .check(link.seq, &event, &good)
            .is_ok(),
        "{name}: fixture"
    );
    let chain = RefCell::new(AuditChain::new(
        &AuditKey::from_bytes(key),
        ChainId([0x5C; 16]),
    ));
    let mac = RefCell::new(good);
    measure(
        name,
        runner,
        rng,
        |right, delta| {
            let mut m = mac.borrow_mut();
            *m = good;
            m[if right { MAC_LEN - 1 } else { 0 }] ^= delta;
        },
        || {
            chain
                .borrow_mut()
                .check(link.seq, &event, &mac.borrow())
                .is_ok()
        },
    );
}

/// An octet-by-octet comparison that stops at the first difference: the
/// leak the cases above look for, as a control that the harness resolves
/// it on this host (it must show |t| far above 4.5).
fn leaky_eq(a: &[u8; TAG_LEN], b: &[u8; TAG_LEN]) -> bool {
    for (x, y) in a.iter().zip(b) {
        if black_box(*x) != black_box(*y) {
            return false;
        }
    }
    true
}

fn control_leaky_tag_eq(runner: &mut CtRunner, rng: &mut BenchRng) {
    let good = [0xA5; TAG_LEN];
    let tag = RefCell::new(good);
    measure(
        "control/leaky-tag-eq",
        runner,
        rng,
        |right, delta| {
            let mut t = tag.borrow_mut();
            *t = good;
            t[if right { TAG_LEN - 1 } else { 0 }] ^= delta;
        },
        || leaky_eq(&good, &tag.borrow()),
    );
}

/// The same planted leak behind a rejected 16 KiB frame: whether the run
/// resolves a leak of that size in the noise of a long call.
fn control_leaky_after_16384(runner: &mut CtRunner, rng: &mut BenchRng) {
    let s = suite();
    let len = 16384;
    let mut frame = vec![0u8; len + 64];
    let n = s
        .protect(
            &request(Protection::AuthenticatedEncrypted),
            &mut counter(),
            &apdu(len),
            &mut frame,
        )
        .expect("protect");
    frame.truncate(n);
    let params = Unprotect {
        peer_system_title: PeerTitle::Expected(TITLE),
        policy: SecurityPolicy::AcceptAnyProtection,
    };
    let tag_at = n - TAG_LEN;
    let good: [u8; TAG_LEN] = frame[tag_at..].try_into().expect("tag");
    let frame = RefCell::new(frame);
    measure(
        "control/leaky-after-16384",
        runner,
        rng,
        |right, delta| {
            let mut f = frame.borrow_mut();
            let tag = &mut f[tag_at..];
            tag.copy_from_slice(&good);
            tag[if right { TAG_LEN - 1 } else { 0 }] ^= delta;
        },
        || {
            let mut f = frame.borrow_mut();
            let received: [u8; TAG_LEN] = f[tag_at..].try_into().expect("tag");
            s.unprotect(&mut f, &params).is_ok() | leaky_eq(&good, &received)
        },
    );
}

fn main() {
    let cases: [(&'static str, BenchFn); 12] = [
        ("control/leaky-tag-eq", control_leaky_tag_eq),
        ("control/leaky-after-16384", control_leaky_after_16384),
        ("suite0/auth-enc/64", suite0_auth_enc::<64>),
        ("suite0/auth-enc/1024", suite0_auth_enc::<1024>),
        ("suite0/auth-enc/16384", suite0_auth_enc::<16384>),
        ("suite0/auth/64", suite0_auth::<64>),
        ("suite0/auth/1024", suite0_auth::<1024>),
        ("suite0/auth/16384", suite0_auth::<16384>),
        ("hls5/sc-vs-tag", hls5_sc_vs_tag),
        ("hls5/tag", hls5_tag),
        ("package/unpackage", package_unpackage),
        ("audit/check", audit_check),
    ];
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let benches = cases
        .into_iter()
        .map(|(name, benchfn)| BenchMetadata {
            name: BenchName(name),
            // Fixed seeds: a rerun draws the same classes and deltas.
            seed: Some(0x0D1A_5EC0),
            benchfn,
        })
        .collect();
    let opts = BenchOpts {
        filter,
        ..BenchOpts::default()
    };
    run_benches_console(opts, benches).expect("stdout");
    for line in MEANS.lock().expect("means").iter() {
        println!("{line}");
    }
}
