//! The fuzz corpus on stable: every file committed under
//! `fuzz/corpus/<target>/` goes through the same harness function the
//! cargo-fuzz target calls (`fuzz/harness`), so the targets cannot rot and
//! every crash the fuzzer ever found stays a regression test.
//!
//! `cargo test --test fuzz_corpus -- --ignored write_seed_corpus` writes
//! the seed corpus (from vectors/suite0-vectors.json and frames this crate
//! protects); the committed corpus is that, grown by the campaign and
//! minimised with `cargo fuzz cmin`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    reason = "test code: a panic is a failed test"
)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::vectors;
use dlms_sec::counter::SingleUse;
use dlms_sec::key::package::{Packager, RecordId};
use dlms_sec::key::{
    AuthenticationKey, DcoKey, GlobalUnicastEncryptionKey, KeyRole, MasterKey, SharedKey,
};
use dlms_sec::meter::key_transfer::NewKeys;
use dlms_sec::suite0::Protect;
use dlms_sec::types::Client;
use dlms_sec::wire::{
    CipheredForm, GeneralCipheringFields, KeyTransfer, SecuritySetupMethod, axdr,
};
use dlms_sec::{InvocationCounter, KeyKind, Protection, SystemTitle};
use dlms_sec_fuzz_harness as harness;

/// A harness function: panics only when an invariant breaks.
type Harness = fn(&[u8]);

/// Every fuzz target and its harness function.
const TARGETS: [(&str, Harness); 6] = [
    ("parse_wire", harness::parse_wire),
    ("parse_fields", harness::parse_fields),
    ("unprotect", harness::unprotect),
    ("round_trip", harness::round_trip),
    ("key_transfer_install", harness::key_transfer_install),
    ("replay_guard", harness::replay_guard),
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
        .join(target)
}

#[test]
fn every_committed_corpus_file_passes_its_harness() {
    let mut total = 0;
    for (target, run) in TARGETS {
        let dir = corpus_dir(target);
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{target}: an empty corpus");
        for f in &files {
            let data = fs::read(f).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(
                outcome.is_ok(),
                "{target}: {} breaks an invariant",
                f.display()
            );
        }
        total += files.len();
    }
    assert!(total > 0);
}

#[test]
fn every_fuzz_target_has_a_harness_and_a_corpus() {
    let mut targets: Vec<String> =
        fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets"))
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                p.file_stem().unwrap().to_string_lossy().into_owned()
            })
            .collect();
    targets.sort();
    let mut known: Vec<String> = TARGETS.iter().map(|(t, _)| (*t).to_owned()).collect();
    known.sort();
    assert_eq!(
        targets, known,
        "fuzz_targets/ and this test list the same targets"
    );
}

// ------------------------------------------------------------ seed corpus

fn hex(s: &str) -> Vec<u8> {
    ::hex::decode(s).unwrap()
}

fn protect(req: &Protect<'_>, ic: u32, apdu: &[u8]) -> Vec<u8> {
    let suite = harness::fixed_suite();
    let mut out = vec![0u8; apdu.len() + 96];
    let n = suite
        .protect(
            req,
            &mut SingleUse::dangerous_new(InvocationCounter::new(ic)),
            apdu,
            &mut out,
        )
        .unwrap();
    out.truncate(n);
    out
}

/// Frames under the harness's fixed keys, one per form and key.
fn generated_frames() -> Vec<(String, Vec<u8>)> {
    let get = hex("C0010000080000010000FF0200");
    let title = SystemTitle::new(harness::TITLE);
    let fields = GeneralCipheringFields {
        transaction_id: &[1, 2, 3, 4, 5, 6, 7, 8],
        recipient_system_title: Some(SystemTitle::new(*b"MMM\x00\x00\x00\x00\x01")),
        date_time: &[
            0x07, 0xE9, 0x0B, 0x19, 0x03, 0x10, 0x00, 0x00, 0xFF, 0x80, 0x00, 0x00,
        ],
        other_information: &[],
    };
    let forms: [(&str, CipheredForm<'_>); 4] = [
        ("service", CipheredForm::ServiceSpecific),
        (
            "general",
            CipheredForm::General {
                with_system_title: true,
            },
        ),
        (
            "general-untitled",
            CipheredForm::General {
                with_system_title: false,
            },
        ),
        ("general-ciphering", CipheredForm::GeneralCiphering(fields)),
    ];
    let mut out = Vec::new();
    for (fname, form) in forms {
        for (kname, key) in [
            ("guek", KeyKind::GlobalUnicast),
            ("gbek", KeyKind::GlobalBroadcast),
            ("dk", KeyKind::Dedicated),
        ] {
            if key == KeyKind::Dedicated && matches!(form, CipheredForm::GeneralCiphering(_)) {
                continue;
            }
            for (pname, protection) in [
                ("a", Protection::Authenticated),
                ("e", Protection::Encrypted),
                ("ae", Protection::AuthenticatedEncrypted),
            ] {
                let req = Protect {
                    protection,
                    key,
                    form,
                    system_title: title,
                };
                out.push((
                    format!("{fname}-{kname}-{pname}"),
                    protect(&req, 0x0123_4567, &get),
                ));
            }
        }
    }
    out
}

fn vector_frames() -> Vec<(String, Vec<u8>)> {
    vectors("dlms-apdu")
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap().to_owned(),
                common::hex(v, "frame"),
            )
        })
        .collect()
}

fn transfer(mk: &MasterKey, all: bool) -> KeyTransfer {
    let guek = GlobalUnicastEncryptionKey::from_bytes([0x11; 16]);
    let ak = AuthenticationKey::from_bytes([0x22; 16]);
    let new_mk = MasterKey::from_bytes([0x33; 16]);
    let gbek = dlms_sec::key::GlobalBroadcastEncryptionKey::from_bytes([0x44; 16]);
    let keys = if all {
        NewKeys {
            guek: Some(&guek),
            gbek: Some(&gbek),
            ak: Some(&ak),
            mk: Some(&new_mk),
        }
    } else {
        NewKeys {
            ak: Some(&ak),
            ..NewKeys::default()
        }
    };
    KeyTransfer::wrap_new_keys(mk, keys).unwrap()
}

fn emit_transfer(t: &KeyTransfer) -> Vec<u8> {
    let mut b = vec![0u8; t.buffer_len()];
    t.emit(&mut b).unwrap();
    b
}

fn emit_request(t: &KeyTransfer) -> Vec<u8> {
    let m = SecuritySetupMethod::default();
    let mut b = vec![0u8; m.key_transfer_request_len(t)];
    m.emit_key_transfer_request(t, &mut b).unwrap();
    b
}

fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut s = Vec::new();
    let mut frames = vector_frames();
    frames.extend(generated_frames());
    for (name, f) in &frames {
        s.push(("parse_wire", name.clone(), f.clone()));
        // Policy none, the vectors' title supplied.
        let mut u = vec![0x00];
        u.extend_from_slice(f);
        s.push(("unprotect", name.clone(), u));
    }

    for len in [0usize, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x1_0000] {
        let mut b = [0u8; 5];
        let n = axdr::encode_length(len, &mut b).unwrap();
        s.push(("parse_fields", format!("axdr-{len:x}"), b[..n].to_vec()));
    }
    s.push(("parse_fields", "header".into(), hex("3001234567")));
    let mk = MasterKey::from_bytes(harness::MK);
    for all in [false, true] {
        let t = transfer(&mk, all);
        s.push((
            "parse_fields",
            format!("key-transfer-{all}"),
            emit_transfer(&t),
        ));
        s.push((
            "parse_fields",
            format!("key-transfer-request-{all}"),
            emit_request(&t),
        ));
        // Raw parameter, then the same as an action-request.
        let mut k = vec![0x00];
        k.extend(emit_transfer(&t));
        s.push(("key_transfer_install", format!("raw-{all}"), k));
        let mut k = vec![0x02];
        k.extend(emit_transfer(&t));
        s.push(("key_transfer_install", format!("request-{all}"), k));
    }
    // Built entries: GUEK good, AK forged; then all four good, with a GBEK held.
    let mut k = vec![0x01, 0x01, 0x00, 0x00];
    k.extend([0x11; 24]);
    k.extend([0x02, 0x01]);
    k.extend([0x22; 24]);
    s.push(("key_transfer_install", "built-one-forged".into(), k));
    let mut k = vec![0x05, 0x03];
    for id in 0..4u8 {
        k.extend([id, 0x00]);
        k.extend([0x40 | id; 24]);
    }
    s.push(("key_transfer_install", "built-all-good".into(), k));

    let dco = Packager::new(&DcoKey::from_bytes([1; 16]));
    let shared = Packager::new(&SharedKey::from_bytes([2; 16]));
    let device = SystemTitle::new(harness::TITLE);
    let rec = dco
        .package(
            &MasterKey::from_bytes([3; 16]),
            RecordId {
                device,
                client: None,
                role: KeyRole::Master,
                generation: 1,
            },
        )
        .unwrap();
    s.push((
        "parse_fields",
        "record-mk".into(),
        rec.record().as_bytes().to_vec(),
    ));
    let rec = shared
        .package(
            &GlobalUnicastEncryptionKey::from_bytes([4; 16]),
            RecordId {
                device,
                client: Some(Client::Management),
                role: KeyRole::GlobalUnicastEncryption,
                generation: 7,
            },
        )
        .unwrap();
    s.push((
        "parse_fields",
        "record-guek".into(),
        rec.record().as_bytes().to_vec(),
    ));

    // Round trip: keys, control, form, title, counter, [fields], tamper, APDU.
    let get = hex("C0010000080000010000FF0200");
    for (ctl, form) in [
        (0x02u8, 0u8),
        (0x00, 1),
        (0x01, 2),
        (0x32, 3),
        (0x06, 0),
        (0x48, 1),
    ] {
        let mut r = Vec::new();
        for b in [0x10u8, 0x20, 0x30, 0x40] {
            r.extend([b; 16]);
        }
        r.extend([ctl, form]);
        r.extend(harness::TITLE);
        r.extend(0x0123_4567u32.to_be_bytes());
        if form == 3 {
            r.extend([8, 0, 0]);
            r.extend([1, 2, 3, 4, 5, 6, 7, 8]);
        }
        r.push(0x05);
        r.extend(&get);
        s.push(("round_trip", format!("ctl{ctl:02x}-form{form}"), r));
    }

    // Replay guard: absolute 5, repeat, back one, forward, reserved,
    // another peer, another key, restart, forward.
    s.push((
        "replay_guard",
        "mixed".into(),
        vec![3, 0, 0, 0, 5, 0, 1, 2, 4, 5, 6, 7, 2, 10],
    ));
    s.push((
        "replay_guard",
        "near-exhaustion".into(),
        vec![3, 0xFF, 0xFF, 0xFF, 0xFD, 2, 2, 0, 4, 12],
    ));
    s
}

/// Writes the seed corpus (run by hand; see the module docs).
#[test]
#[ignore = "writes fuzz/corpus; run by hand to regenerate the seeds"]
fn write_seed_corpus() {
    for (target, name, data) in seeds() {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    }
}

/// Every seed passes its harness (the seeds are built here, so this holds
/// even before the corpus is written).
#[test]
fn every_seed_passes_its_harness() {
    for (target, name, data) in seeds() {
        let run = TARGETS.iter().find(|(t, _)| *t == target).unwrap().1;
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target}: seed {name} breaks an invariant");
    }
}

// ------------------------------------------------------------ regressions

/// Found by the campaign in `key_transfer_install` after 3 minutes: the
/// fuzzer copied a value genuinely wrapped under the meter's MK (from a
/// raw-parameter seed) into a slot the harness took for forged, so the
/// transfer staged and the harness's own bookkeeping panicked. A harness
/// bug, not a library one: the library installed exactly the unwrapped
/// keys. The harness now checks installed keys against the unwrapped
/// entries, and against the input's keys only when every entry was built
/// from one.
#[test]
fn key_transfer_install_genuine_wrapped_value_in_forged_slot() {
    let data = fs::read(
        corpus_dir("key_transfer_install").join("regression-genuine-wrapped-value-in-forged-slot"),
    )
    .unwrap();
    harness::key_transfer_install(&data);
}
