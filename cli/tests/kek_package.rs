//! `dlms-sec kek-package` driven as a user drives it: key files, a trust
//! file and package files on disk; stdout, stderr and the exit status
//! checked.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

mod support;

use std::path::{Path, PathBuf};
use support::{Out, dlms_sec, finish};

const WRAPPED: &str = "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5";
const KCV: &str = "0A1B2C";

fn run(args: &[&str]) -> Out {
    finish(&mut dlms_sec(args), None)
}

/// Success: exit 0, nothing on stderr; stdout without its last newline.
fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(out.stderr, "");
    out.stdout.trim_end_matches('\n').to_owned()
}

/// Failure with `code`: one `dlms-sec: ` line on stderr, nothing on stdout.
fn fails(args: &[&str], code: i32) -> String {
    let out = run(args);
    assert_eq!(
        out.code, code,
        "stdout: {} stderr: {}",
        out.stdout, out.stderr
    );
    assert!(out.stderr.starts_with("dlms-sec: "), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    out.stderr
}

/// A directory of its own for each test.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dlms-kek-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A sender's key, a trust file naming it `dcc-kms`, and a package valid
/// from 1000 to 2000.
struct Files {
    dir: PathBuf,
    key: PathBuf,
    trust: PathBuf,
    package: PathBuf,
    public: String,
}

fn files(name: &str) -> Files {
    let dir = dir(name);
    let key = dir.join("sender.key");
    let public = ok(&["kek-package", "keygen", "--out", p(&key)]);
    assert_eq!(public.len(), 64, "{public}");
    assert_eq!(
        ok(&["kek-package", "public-key", "--signing-key", p(&key)]),
        public
    );
    let trust = dir.join("trust");
    std::fs::write(
        &trust,
        format!("# the DCC's key service\ndcc-kms {public}\n"),
    )
    .unwrap();
    let package = dir.join("shared.kekpkg");
    let id = ok(&[
        "kek-package",
        "create",
        "--wrapped",
        WRAPPED,
        "--label",
        "shared-2026",
        "--transport",
        "transport-1",
        "--role",
        "shared",
        "--kcv",
        KCV,
        "--not-before",
        "1000",
        "--not-after",
        "2000",
        "--sender",
        "dcc-kms",
        "--signing-key",
        p(&key),
        "--out",
        p(&package),
    ]);
    assert_eq!(id.len(), 32, "{id}");
    Files {
        dir,
        key,
        trust,
        package,
        public,
    }
}

fn verify(package: &Path, trust: &Path, now: &str) -> Out {
    run(&[
        "kek-package",
        "verify",
        "--package",
        p(package),
        "--trust",
        p(trust),
        "--now",
        now,
    ])
}

#[test]
fn create_then_verify_prints_the_fields() {
    let f = files("good");
    let text = std::fs::read_to_string(&f.package).unwrap();
    assert!(text.starts_with("-----BEGIN DLMS-SEC KEK PACKAGE-----\n"));
    let out = verify(&f.package, &f.trust, "1500");
    assert_eq!(out.code, 0, "{}", out.stderr);
    for line in [
        "label: shared-2026",
        "transport: transport-1",
        "role: shared",
        &format!("wrapped: {WRAPPED}"),
        &format!("kcv: {KCV}"),
        "not-before: 1000",
        "not-after: 2000",
        "sender: dcc-kms",
        &format!("sender-key: {}", f.public),
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "{line} in {}",
            out.stdout
        );
    }
    // The window's ends are inside it.
    assert_eq!(verify(&f.package, &f.trust, "1000").code, 0);
    assert_eq!(verify(&f.package, &f.trust, "2000").code, 0);
    std::fs::remove_dir_all(&f.dir).unwrap();
}

#[test]
fn a_tampered_package_is_refused() {
    let f = files("tampered");
    let text = std::fs::read_to_string(&f.package).unwrap();
    // One hex digit of the wrapped KEK changed.
    let tampered = text.replacen("AEF34BD8", "AEF34BD9", 1);
    assert_ne!(tampered, text);
    let bad = f.dir.join("tampered.kekpkg");
    std::fs::write(&bad, tampered).unwrap();
    let e = fails(
        &[
            "kek-package",
            "verify",
            "--package",
            p(&bad),
            "--trust",
            p(&f.trust),
            "--now",
            "1500",
        ],
        1,
    );
    assert!(e.contains("signature does not verify"), "{e}");
    // A cut file is malformed (exit 2).
    let cut = f.dir.join("cut.kekpkg");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(2);
    std::fs::write(&cut, lines.join("\n")).unwrap();
    let e = fails(
        &[
            "kek-package",
            "verify",
            "--package",
            p(&cut),
            "--trust",
            p(&f.trust),
            "--now",
            "1500",
        ],
        2,
    );
    assert!(e.contains("--package"), "{e}");
    std::fs::remove_dir_all(&f.dir).unwrap();
}

#[test]
fn a_foreign_signer_and_the_window_are_refused() {
    let f = files("foreign");
    // The name bound to another key.
    let other = f.dir.join("other.key");
    let other_public = ok(&["kek-package", "keygen", "--out", p(&other)]);
    let rebound = f.dir.join("rebound");
    std::fs::write(&rebound, format!("dcc-kms {other_public}\n")).unwrap();
    let out = verify(&f.package, &rebound, "1500");
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("do not bind"), "{}", out.stderr);
    // The name unknown.
    let stranger = f.dir.join("stranger");
    std::fs::write(&stranger, format!("someone-else {}\n", f.public)).unwrap();
    let out = verify(&f.package, &stranger, "1500");
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("not in the trust anchors"),
        "{}",
        out.stderr
    );
    // Outside the window.
    let out = verify(&f.package, &f.trust, "999");
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("not valid before 1000"),
        "{}",
        out.stderr
    );
    let out = verify(&f.package, &f.trust, "2001");
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("expired at 2000"), "{}", out.stderr);
    assert_eq!(out.stdout, "");
    std::fs::remove_dir_all(&f.dir).unwrap();
}

#[test]
fn bad_input_is_a_usage_error() {
    let f = files("usage");
    let base = |wrapped: &str, out: &Path, not_after: &str| {
        run(&[
            "kek-package",
            "create",
            "--wrapped",
            wrapped,
            "--label",
            "shared-2026",
            "--transport",
            "transport-1",
            "--role",
            "shared",
            "--kcv",
            KCV,
            "--not-before",
            "1000",
            "--not-after",
            not_after,
            "--sender",
            "dcc-kms",
            "--signing-key",
            p(&f.key),
            "--out",
            p(out),
        ])
    };
    // The output file exists already: not overwritten.
    let before = std::fs::read_to_string(&f.package).unwrap();
    let out = base(WRAPPED, &f.package, "2000");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&f.package).unwrap(), before);
    // A wrapped key of 23 octets.
    let out = base(&WRAPPED[2..], &f.dir.join("short"), "2000");
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("--wrapped: 23 octets"),
        "{}",
        out.stderr
    );
    // A reversed window.
    let out = base(WRAPPED, &f.dir.join("reversed"), "999");
    assert_eq!(out.code, 2);
    assert!(!f.dir.join("reversed").exists());
    // A trust file line without a key.
    let bad_trust = f.dir.join("bad-trust");
    std::fs::write(&bad_trust, "dcc-kms\n").unwrap();
    let e = fails(
        &[
            "kek-package",
            "verify",
            "--package",
            p(&f.package),
            "--trust",
            p(&bad_trust),
            "--now",
            "1500",
        ],
        2,
    );
    assert!(e.contains("line 1"), "{e}");
    // A signing key file that is not a key.
    let bad_key = f.dir.join("bad.key");
    std::fs::write(&bad_key, "00112233\n").unwrap();
    fails(
        &["kek-package", "public-key", "--signing-key", p(&bad_key)],
        2,
    );
    // No subcommand.
    fails(&["kek-package"], 2);
    std::fs::remove_dir_all(&f.dir).unwrap();
}
