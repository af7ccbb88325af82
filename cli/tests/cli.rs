//! The `dlms-sec` binary driven as a user drives it: arguments, environment,
//! a keys file, standard input; stdout, stderr and the exit status checked.
//! Vectors come from vectors/suite0-vectors.json (Green Book, RFC 3394).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "test code: a panic is a failed test"
)]

mod support;

use std::process::Command;

use serde_json::Value;
use support::{Out, dlms_sec, finish};

const EK: &str = "000102030405060708090A0B0C0D0E0F";
const AK: &str = "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF";
const DK: &str = "00112233445566778899AABBCCDDEEFF";
const ST: &str = "4D4D4D0000BC614E";
const PLAIN: &str = "C0010000080000010000FF0200";
/// The Green Book glo-get-request under authenticated encryption.
const GB_30: &str = "C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B";
/// The same as general-glo-ciphering (it carries the title).
const GB_DB: &str =
    "DB084D4D4D0000BC614E1E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B";

fn command(args: &[&str]) -> Command {
    let mut c = dlms_sec(args);
    for name in [
        "EK", "AK", "DK", "BK", "KEK", "MK", "NEW_GUEK", "NEW_GBEK", "NEW_AK", "NEW_MK",
    ] {
        c.env_remove(format!("DLMS_{name}"));
    }
    c
}

fn run(args: &[&str]) -> Out {
    finish(&mut command(args), None)
}

/// Success: exit 0, nothing on stderr, one line on stdout (returned).
fn ok_out(out: &Out) -> String {
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(out.stderr, "", "stderr on success");
    out.stdout.trim_end_matches('\n').to_owned()
}

fn ok(args: &[&str]) -> String {
    let s = ok_out(&run(args));
    assert!(!s.contains('\n'), "one line: {s}");
    s
}

/// Failure: the exit status, one `dlms-sec: ` line on stderr (returned).
fn fail_out(out: &Out, code: i32) -> String {
    assert_eq!(
        out.code, code,
        "stdout: {} stderr: {}",
        out.stdout, out.stderr
    );
    assert!(out.stderr.starts_with("dlms-sec: "), "{}", out.stderr);
    assert!(out.stderr.ends_with('\n'), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    out.stderr.clone()
}

/// A failure that prints nothing on stdout.
fn fails(args: &[&str], code: i32) -> String {
    let out = run(args);
    let e = fail_out(&out, code);
    assert_eq!(out.stdout, "", "no output on failure");
    e
}

fn vectors(kind: &str) -> Vec<Value> {
    let all: Vec<Value> =
        serde_json::from_str(include_str!("../../vectors/suite0-vectors.json")).unwrap();
    all.into_iter().filter(|v| v["kind"] == kind).collect()
}

fn field<'a>(v: &'a Value, name: &str) -> &'a str {
    v[name].as_str().unwrap_or_else(|| panic!("{name} missing"))
}

fn unprotect_args<'a>(frame: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["unprotect", "--system-title", ST, "--ek", EK, "--ak", AK];
    a.extend_from_slice(extra);
    a.push(frame);
    a
}

fn with_byte(frame: &str, index: usize, byte: u8) -> String {
    let mut s = frame.to_owned();
    s.replace_range(2 * index..2 * index + 2, &format!("{byte:02X}"));
    s
}

// ---- protect / unprotect: every DLMS vector both ways ----

#[test]
fn protect_gives_every_vector_frame() {
    let mut seen = 0;
    for v in vectors("dlms-apdu") {
        if v.get("expect").is_some() {
            continue;
        }
        let policy = match field(&v, "security_control") {
            "10" => "auth",
            "20" => "enc",
            "30" => "auth-enc",
            other => panic!("SC {other}"),
        };
        let form = match field(&v, "apdu_tag") {
            "DB" => "general-glo",
            "DC" => "general-ded",
            _ => "service",
        };
        let dedicated = field(&v, "key_type") == "dedicated";
        let ek = field(&v, "encryption_key");
        let ic = format!("0x{}", field(&v, "invocation_counter"));
        let mut args = vec![
            "protect",
            "--policy",
            policy,
            "--form",
            form,
            "--system-title",
            field(&v, "system_title"),
            "--ic",
            &ic,
            "--ak",
            field(&v, "authentication_key"),
        ];
        if dedicated {
            args.extend(["--key", "dedicated", "--dk", ek, "--ek", EK]);
        } else {
            args.extend(["--ek", ek]);
        }
        args.push(field(&v, "plaintext"));
        assert_eq!(ok(&args), field(&v, "frame"), "{}", field(&v, "id"));
        seen += 1;
    }
    assert_eq!(seen, 7);
}

#[test]
fn unprotect_gives_every_vector_plaintext_and_refuses_the_negative_ones() {
    for v in vectors("dlms-apdu") {
        let dedicated = v["key_type"] == "dedicated";
        let ek = field(&v, "encryption_key");
        let mut args = vec![
            "unprotect",
            "--system-title",
            field(&v, "system_title"),
            "--ak",
            field(&v, "authentication_key"),
        ];
        if dedicated {
            args.extend(["--dk", ek, "--ek", EK]);
        } else {
            args.extend(["--ek", ek]);
        }
        args.push(field(&v, "frame"));
        if v.get("expect").is_some() {
            let e = fails(&args, 1);
            assert!(e.contains("authentication failed"), "{e}");
            continue;
        }
        let out = run(&args);
        if v["security_control"] == "20" {
            // Succeeds, with the warning that nothing was authenticated.
            assert_eq!(out.code, 0);
            assert_eq!(out.stdout.trim_end(), field(&v, "plaintext"));
            assert!(
                out.stderr.contains("warning: encryption only"),
                "{}",
                out.stderr
            );
        } else {
            assert_eq!(ok_out(&out), field(&v, "plaintext"), "{}", field(&v, "id"));
        }
    }
}

#[test]
fn general_glo_carries_its_title_and_a_dedicated_frame_needs_dk() {
    assert_eq!(ok(&["unprotect", "--ek", EK, "--ak", AK, GB_DB]), PLAIN);
    let ded = "D01E3001234567538219D99EE74436A08744D81EC04B2DF4D19FD8D8CD748873";
    assert_eq!(ok(&unprotect_args(ded, &["--dk", DK])), PLAIN);
    let e = fails(&unprotect_args(ded, &[]), 2);
    assert!(e.contains("--dk"), "{e}");
    // A title other than the one the frame carries.
    let e = fails(
        &[
            "unprotect",
            "--system-title",
            "4D4D4D0000000001",
            "--ek",
            EK,
            "--ak",
            AK,
            GB_DB,
        ],
        1,
    );
    assert!(e.contains("system title"), "{e}");
}

#[test]
fn general_ded_and_broadcast_round_trip() {
    let frame = ok(&[
        "protect",
        "--policy",
        "auth-enc",
        "--form",
        "general-ded",
        "--system-title",
        ST,
        "--ic",
        "7",
        "--ek",
        EK,
        "--ak",
        AK,
        "--dk",
        DK,
        PLAIN,
    ]);
    assert!(frame.starts_with("DC08"), "{frame}");
    assert_eq!(
        ok(&["unprotect", "--ek", EK, "--ak", AK, "--dk", DK, &frame]),
        PLAIN
    );

    let bk = "0F0E0D0C0B0A09080706050403020100";
    let frame = ok(&[
        "protect",
        "--policy",
        "auth-enc",
        "--key",
        "broadcast",
        "--bk",
        bk,
        "--system-title",
        ST,
        "--ic",
        "7",
        "--ek",
        EK,
        "--ak",
        AK,
        PLAIN,
    ]);
    assert_eq!(&frame[..6], "C81E70", "glo- tag, key-set bit");
    assert_eq!(ok(&unprotect_args(&frame, &["--bk", bk])), PLAIN);
    let e = fails(&unprotect_args(&frame, &[]), 2);
    assert!(e.contains("--bk"), "{e}");
    // Missing broadcast key on the sending side.
    fails(
        &[
            "protect",
            "--policy",
            "auth",
            "--key",
            "broadcast",
            "--system-title",
            ST,
            "--ic",
            "7",
            "--ek",
            EK,
            "--ak",
            AK,
            PLAIN,
        ],
        2,
    );
}

#[test]
fn hex_and_number_conventions() {
    // Lower case, colons, spaces, several words; decimal N.
    let lower = "c0:01:00 00 08 00 00 01 00 00 ff 02 00";
    let args = [
        "protect",
        "--policy",
        "auth-enc",
        "--system-title",
        "4d:4d:4d:00:00:bc:61:4e",
        "--ic",
        "19088743",
        "--ek",
        EK,
        "--ak",
        AK,
        lower,
    ];
    assert_eq!(ok(&args), GB_30);
    let mut words = unprotect_args("C81E30", &[]);
    words.extend([
        "01234567",
        "411312FF935A47566827C467BC",
        "7D825C3BE4A77C3FCC056B6B",
    ]);
    assert_eq!(ok(&words), PLAIN);
    // Standard input.
    let out = finish(
        &mut command(&unprotect_args("-", &[])),
        Some(&format!("{}\n", GB_30.to_lowercase())),
    );
    assert_eq!(ok_out(&out), PLAIN);
    // `--flag=value`.
    assert_eq!(
        ok(&[
            "unprotect",
            "--system-title=4D4D4D0000BC614E",
            "--ek",
            EK,
            "--ak",
            AK,
            GB_30
        ]),
        PLAIN
    );
}

// ---- the checks: replay, policy, tamper ----

#[test]
fn after_ic_refuses_a_replay() {
    assert_eq!(
        ok(&unprotect_args(GB_30, &["--after-ic", "0x01234566"])),
        PLAIN
    );
    for at_or_above in ["0x01234567", "19088743", "0xFFFFFFFE"] {
        let e = fails(&unprotect_args(GB_30, &["--after-ic", at_or_above]), 1);
        assert!(e.contains("replay"), "{e}");
    }
    // Encryption only carries no proof: the counter alone is checked.
    let enc = "C8122001234567411312FF935A47566827C467BC";
    let out = run(&unprotect_args(enc, &["--after-ic", "0x01234566"]));
    assert_eq!(out.code, 0);
    fails(&unprotect_args(enc, &["--after-ic", "0x01234567"]), 1);
    // The reserved counter in a frame is refused as a replay.
    let reserved = with_byte(
        &with_byte(&with_byte(&with_byte(GB_30, 3, 0xFF), 4, 0xFF), 5, 0xFF),
        6,
        0xFF,
    );
    fails(&unprotect_args(&reserved, &[]), 1);
    fails(&unprotect_args(GB_30, &["--after-ic", "-1"]), 2);
}

#[test]
fn require_refuses_the_downgrade_flip() {
    // Clearing the A bit (SC 30 -> 20) turns the frame into an
    // encryption-only one that decrypts to garbage with no check at all.
    let flipped = with_byte(GB_30, 2, 0x20);
    let e = fails(&unprotect_args(&flipped, &["--require", "auth-enc"]), 1);
    assert!(e.contains("policy"), "{e}");
    fails(&unprotect_args(&flipped, &["--require", "auth"]), 1);
    // Without a policy it is accepted, with the warning on stderr.
    let out = run(&unprotect_args(&flipped, &[]));
    assert_eq!(out.code, 0);
    assert!(out.stderr.contains("not authenticated"), "{}", out.stderr);
    // The intact frame meets every policy.
    for p in ["none", "auth", "enc", "auth-enc"] {
        assert_eq!(ok(&unprotect_args(GB_30, &["--require", p])), PLAIN);
    }
    fails(&unprotect_args(GB_30, &["--require", "strong"]), 2);
}

#[test]
fn tampered_or_wrong_key_is_exit_1() {
    // Every octet from the SC onwards: the SC and counter are in the IV
    // and AAD, the rest is ciphertext or tag.
    for i in 2..GB_30.len() / 2 {
        let byte = u8::from_str_radix(&GB_30[2 * i..2 * i + 2], 16).unwrap();
        let tampered = with_byte(GB_30, i, byte ^ 0x01);
        let out = run(&unprotect_args(&tampered, &[]));
        assert_eq!(out.stdout, "", "no plaintext for octet {i}");
        assert_ne!(out.code, 0, "octet {i}");
        if i != 2 {
            fail_out(&out, 1);
        }
    }
    // The outer tag is outside the GCM tag: glo-get -> glo-set is caught
    // after verification.
    let e = fails(&unprotect_args(&with_byte(GB_30, 0, 0xC9), &[]), 1);
    assert!(e.contains("does not match"), "{e}");
    fails(
        &[
            "unprotect",
            "--system-title",
            ST,
            "--ek",
            EK,
            "--ak",
            DK,
            GB_30,
        ],
        1,
    );
    fails(
        &[
            "unprotect",
            "--system-title",
            ST,
            "--ek",
            DK,
            "--ak",
            AK,
            GB_30,
        ],
        1,
    );
}

// ---- usage and malformed input: exit 2 ----

#[test]
fn usage_errors_are_exit_2() {
    let cases: &[&[&str]] = &[
        &[],
        &["frob"],
        &["unprotect", "--bogus", GB_30],
        &["unprotect", "-x", GB_30],
        &["unprotect", "--ek", EK, "--ak", AK, GB_30], // no title
        &["unprotect", "--system-title", ST, "--ak", AK, GB_30], // no EK
        &["unprotect", "--system-title", ST, "--ek", EK, GB_30], // no AK
        &["unprotect", "--system-title", ST, "--ek", EK, "--ak", AK], // no frame
        &[
            "unprotect",
            "--system-title",
            ST,
            "--ek",
            EK,
            "--ak",
            AK,
            "C81E3",
        ], // odd
        &[
            "unprotect",
            "--system-title",
            ST,
            "--ek",
            EK,
            "--ak",
            AK,
            "C8ZZ",
        ], // not hex
        &[
            "unprotect",
            "--system-title",
            ST,
            "--ek",
            "0001",
            "--ak",
            AK,
            GB_30,
        ], // short key
        &[
            "unprotect",
            "--system-title",
            "4D4D",
            "--ek",
            EK,
            "--ak",
            AK,
            GB_30,
        ], // short title
        &[
            "unprotect",
            "--system-title",
            ST,
            "--ek",
            EK,
            "--ak",
            AK,
            "C81E30",
        ], // truncated
        &[
            "unprotect",
            "--system-title",
            ST,
            "--ek",
            EK,
            "--ak",
            AK,
            "C0010000",
        ], // not ciphered
        &[
            "unprotect",
            "--system-title",
            ST,
            "--system-title",
            ST,
            GB_30,
        ],
        &["unprotect", "--system-title"],
        &[
            "protect",
            "--policy",
            "auth-enc",
            "--system-title",
            ST,
            "--ic",
            "1",
            "--ek",
            EK,
            "--ak",
            AK,
        ],
        &[
            "protect",
            "--policy",
            "strong",
            "--system-title",
            ST,
            "--ic",
            "1",
            "--ek",
            EK,
            "--ak",
            AK,
            PLAIN,
        ],
        &[
            "protect",
            "--system-title",
            ST,
            "--ic",
            "1",
            "--ek",
            EK,
            "--ak",
            AK,
            PLAIN,
        ],
        &[
            "protect", "--policy", "auth", "--ic", "1", "--ek", EK, "--ak", AK, PLAIN,
        ],
        &[
            "protect",
            "--policy",
            "auth",
            "--system-title",
            ST,
            "--ek",
            EK,
            "--ak",
            AK,
            PLAIN,
        ],
        &[
            "protect",
            "--policy",
            "auth",
            "--system-title",
            ST,
            "--ic",
            "0xFFFFFFFF",
            "--ek",
            EK,
            "--ak",
            AK,
            PLAIN,
        ],
        &[
            "protect",
            "--policy",
            "auth",
            "--system-title",
            ST,
            "--ic",
            "4294967296",
            "--ek",
            EK,
            "--ak",
            AK,
            PLAIN,
        ],
        &[
            "protect",
            "--policy",
            "auth",
            "--system-title",
            ST,
            "--ic",
            "twelve",
            "--ek",
            EK,
            "--ak",
            AK,
            PLAIN,
        ],
        &[
            "protect",
            "--policy",
            "auth",
            "--system-title",
            ST,
            "--ic",
            "1",
            "--ek",
            EK,
            "--ak",
            AK,
            "--form",
            "xml",
            PLAIN,
        ],
        &[
            "protect",
            "--policy",
            "auth",
            "--system-title",
            ST,
            "--ic",
            "1",
            "--ek",
            EK,
            "--ak",
            AK,
            "--key",
            "master",
            PLAIN,
        ],
        &[
            "protect",
            "--policy",
            "auth",
            "--system-title",
            ST,
            "--ic",
            "1",
            "--ek",
            EK,
            "--ak",
            AK,
            "--form",
            "general-glo",
            "--key",
            "dedicated",
            "--dk",
            DK,
            PLAIN,
        ],
        &[
            "protect",
            "--policy",
            "auth",
            "--system-title",
            ST,
            "--ic",
            "1",
            "--ek",
            EK,
            "--ak",
            AK,
            "--form",
            "general-ded",
            "--key",
            "unicast",
            PLAIN,
        ],
        &[
            "protect",
            "--policy",
            "auth",
            "--system-title",
            ST,
            "--ic",
            "1",
            "--ek",
            EK,
            "--ak",
            AK,
            "--key",
            "dedicated",
            PLAIN,
        ], // no DK
        &[
            "protect",
            "--policy",
            "auth",
            "--system-title",
            ST,
            "--ic",
            "1",
            "--ek",
            EK,
            "--ak",
            AK,
            "0F00",
        ], // data-notification: no glo- tag
        &[
            "protect",
            "--policy",
            "auth",
            "--system-title",
            ST,
            "--ic",
            "1",
            "--json",
            "--ek",
            EK,
            "--ak",
            AK,
            PLAIN,
        ],
        &[
            "protect",
            "--policy",
            "auth",
            "--system-title",
            ST,
            "--ic",
            "1",
            "--ek",
            EK,
            "--ak",
            AK,
            "-",
            PLAIN,
        ],
    ];
    for args in cases {
        let e = fails(args, 2);
        assert!(e.len() > "dlms-sec: ".len() + 5, "{args:?}: {e}");
    }
    assert!(fails(&["unprotect", "--ek", EK, "--ak", AK, GB_30], 2).contains("--system-title"));
    assert!(fails(&["unprotect", "--nope"], 2).contains("unknown flag --nope"));
    assert!(fails(&["frob"], 2).contains("unknown command"));
}

#[test]
fn help_and_version() {
    let out = run(&["--help"]);
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("usage: dlms-sec"));
    assert!(run(&["protect", "--help"]).stdout.contains("--policy"));
    assert!(ok(&["--version"]).starts_with("dlms-sec "));
}

#[test]
fn version_subcommand_help_and_completions() {
    assert_eq!(
        ok(&["--version"]),
        concat!("dlms-sec ", env!("CARGO_PKG_VERSION"))
    );
    let help = ok_out(&run(&["decode", "--help"]));
    for part in [
        "usage: dlms-sec decode",
        "--json",
        "--after-ic <N>",
        "--require <POLICY>",
        "auth-enc",
        "<FRAME_HEX>",
    ] {
        assert!(help.contains(part), "{part}\n{help}");
    }
    assert_eq!(ok_out(&run(&["help", "decode"])), help);
    // bash: the top-level word list holds every subcommand, and the
    // script registers itself for the binary's name.
    let script = ok_out(&run(&["completions", "bash"]));
    assert!(
        script
            .lines()
            .any(|l| l.trim_start().starts_with("complete ") && l.ends_with(" dlms-sec")),
        "{script}"
    );
    let top: Vec<&str> = script
        .lines()
        .find(|l| l.contains("opts=\"-h -V --help --version"))
        .expect("top-level word list")
        .split(['"', ' '])
        .collect();
    for sub in [
        "protect",
        "unprotect",
        "decode",
        "wrap",
        "unwrap",
        "key-transfer",
        "hls5",
        "hls5-verify",
        "package",
        "unpackage",
        "completions",
    ] {
        assert!(top.contains(&sub), "{sub}: {top:?}");
    }
    assert!(fails(&["completions", "ksh"], 2).contains("bash"));
}

#[test]
fn malformed_command_lines_say_what_is_wrong() {
    let protect = |extra: &[&'static str]| {
        let mut a = vec!["protect", "--system-title", ST, "--ek", EK, "--ak", AK];
        a.extend_from_slice(extra);
        a
    };
    for (args, message) in [
        (vec![], "missing command (try --help)"),
        (vec!["frob"], "unknown command \"frob\" (try --help)"),
        (
            vec!["unprotect", "--nope=1", GB_30],
            "unknown flag --nope (try --help)",
        ),
        (
            unprotect_args(GB_30, &["--system-title", ST]),
            "--system-title given twice",
        ),
        (
            vec!["unprotect", "--system-title"],
            "--system-title needs a value",
        ),
        (vec!["decode", "--json=yes", GB_30], "--json takes no value"),
        (protect(&["--ic", "1", PLAIN]), "missing --policy"),
        (
            protect(&["--policy", "auth", "--ic", "1"]),
            "missing APDU_HEX",
        ),
        (
            protect(&["--policy", "strong", "--ic", "1", PLAIN]),
            "--policy: \"strong\" is not auth, enc or auth-enc",
        ),
        (
            protect(&["--policy", "auth", "--ic", "0xFFFFFFFF", PLAIN]),
            "--ic: 0xFFFFFFFF is reserved and never sent",
        ),
        (
            unprotect_args(GB_30, &["--after-ic", "-1"]),
            "--after-ic: \"-1\" is not a 32-bit number (decimal, or hex after 0x)",
        ),
        (
            unprotect_args(GB_30, &["--require", "strong"]),
            "--require: \"strong\" is not auth, enc, auth-enc or none",
        ),
        (
            vec!["unprotect", "--ek", "0011", GB_30],
            "--ek: 2 octets, expected 16",
        ),
        (
            vec![
                "package",
                "--kek",
                EK,
                "--role",
                "ak",
                "--client",
                "public",
                "--device",
                ST,
                "--generation",
                "0",
                DK,
            ],
            "--client: the public client has no keys",
        ),
    ] {
        assert_eq!(
            fails(&args, 2),
            format!("dlms-sec: {message}\n"),
            "{args:?}"
        );
    }
}

// ---- keys from the environment and from --keys FILE ----

fn keys_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn keys_from_the_environment() {
    let out = finish(
        command(&["unprotect", "--system-title", ST, GB_30])
            .env("DLMS_EK", EK)
            .env("DLMS_AK", AK.to_lowercase()),
        None,
    );
    assert_eq!(ok_out(&out), PLAIN);
    // A flag beats the environment.
    let out = finish(
        command(&["unprotect", "--system-title", ST, "--ak", AK, GB_30])
            .env("DLMS_EK", EK)
            .env("DLMS_AK", DK),
        None,
    );
    assert_eq!(ok_out(&out), PLAIN);
    // A malformed variable is a usage error naming it.
    let out = finish(
        command(&["unprotect", "--system-title", ST, GB_30])
            .env("DLMS_EK", "0011")
            .env("DLMS_AK", AK),
        None,
    );
    assert!(fail_out(&out, 2).contains("DLMS_EK"));
    // KEK and MK too.
    let out = finish(
        command(&["wrap", "00112233445566778899AABBCCDDEEFF"]).env("DLMS_KEK", EK),
        None,
    );
    assert_eq!(
        ok_out(&out),
        "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"
    );
    let out = finish(
        command(&["key-transfer", "--ak", AK]).env("DLMS_MK", EK),
        None,
    );
    assert!(ok_out(&out).starts_with("0101020216020918"));
}

#[test]
fn keys_from_a_file() {
    let path = keys_file(
        "keys-ok.txt",
        &format!(
            "# Green Book keys\n\nEK = {EK}\nDLMS_AK={}  # AK\n",
            AK.to_lowercase()
        ),
    );
    let p = path.to_str().unwrap();
    assert_eq!(
        ok(&["unprotect", "--keys", p, "--system-title", ST, GB_30]),
        PLAIN
    );
    // The file beats the environment; a flag beats the file.
    let out = finish(
        command(&["unprotect", "--keys", p, "--system-title", ST, GB_30]).env("DLMS_AK", DK),
        None,
    );
    assert_eq!(ok_out(&out), PLAIN);
    fails(
        &[
            "unprotect",
            "--keys",
            p,
            "--ak",
            DK,
            "--system-title",
            ST,
            GB_30,
        ],
        1,
    );

    let kek = keys_file("keys-kek.txt", &format!("KEK={EK}\nMK={EK}\nNEW_AK={AK}\n"));
    let k = kek.to_str().unwrap();
    assert_eq!(
        ok(&["wrap", "--keys", k, "00112233445566778899AABBCCDDEEFF"]),
        "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"
    );
    assert_eq!(
        ok(&["key-transfer", "--keys", k]),
        "0101020216020918C498429FF0B8E698352B17AFFAC7CA6C708D61062E82B6D4"
    );

    for (name, text) in [
        (
            "keys-unknown.txt",
            "GUEK=000102030405060708090A0B0C0D0E0F\n",
        ),
        ("keys-noeq.txt", "EK 000102030405060708090A0B0C0D0E0F\n"),
        (
            "keys-twice.txt",
            "EK=000102030405060708090A0B0C0D0E0F\nEK=000102030405060708090A0B0C0D0E0F\n",
        ),
        (
            "keys-badhex.txt",
            "EK=0001020304050607080X0A0B0C0D0E0F\nAK=D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF\n",
        ),
    ] {
        let f = keys_file(name, text);
        let e = fails(
            &[
                "unprotect",
                "--keys",
                f.to_str().unwrap(),
                "--system-title",
                ST,
                GB_30,
            ],
            2,
        );
        assert!(e.contains(name) || e.contains("EK"), "{e}");
    }
    fails(
        &[
            "unprotect",
            "--keys",
            "/nonexistent/keys.txt",
            "--system-title",
            ST,
            GB_30,
        ],
        2,
    );
}

// ---- RFC 3394 ----

#[test]
fn wrap_and_unwrap_rfc3394_vectors() {
    let mut seen = 0;
    for v in vectors("key-wrap") {
        if v["kek_bits"] != 128 || field(&v, "key_data").len() != 32 {
            continue;
        }
        let (kek, key, wrapped) = (
            field(&v, "kek"),
            field(&v, "key_data"),
            field(&v, "wrapped"),
        );
        assert_eq!(
            ok(&["wrap", "--kek", kek, key]),
            wrapped,
            "{}",
            field(&v, "id")
        );
        assert_eq!(ok(&["unwrap", "--kek", kek, wrapped]), key);
        seen += 1;
    }
    assert!(seen >= 3);
    let w = "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5";
    let e = fails(&["unwrap", "--kek", EK, &with_byte(w, 23, 0xE4)], 1);
    assert!(e.contains("integrity"), "{e}");
    fails(&["unwrap", "--kek", AK, w], 1);
    fails(&["unwrap", "--kek", EK, &w[..46]], 2);
    fails(&["unwrap", w], 2);
    fails(&["wrap", "--kek", EK, "0011"], 2);
}

// ---- key_transfer ----

#[test]
fn key_transfer_vector() {
    let mk = EK;
    assert_eq!(
        ok(&["key-transfer", "--mk", mk, "--ak", AK]),
        "0101020216020918C498429FF0B8E698352B17AFFAC7CA6C708D61062E82B6D4"
    );
    // All four, in key-id order: array of 4, 30 octets each.
    let all = ok(&[
        "key-transfer",
        "--mk",
        mk,
        "--new-mk",
        DK,
        "--ak",
        AK,
        "--gbek",
        DK,
        "--guek",
        EK,
    ]);
    assert_eq!(all.len(), 2 * 122);
    assert!(all.starts_with("0104020216000918"));
    fails(&["key-transfer", "--mk", mk], 2);
    fails(&["key-transfer", "--ak", AK], 2);
}

// ---- HLS-5 ----

#[test]
fn hls5_vectors() {
    for v in vectors("hls5-gmac") {
        let (st, ek, ak) = (
            field(&v, "system_title"),
            field(&v, "encryption_key"),
            field(&v, "authentication_key"),
        );
        let (challenge, response) = (field(&v, "challenge"), field(&v, "response"));
        let verify = [
            "hls5-verify",
            "--system-title",
            st,
            "--ek",
            ek,
            "--ak",
            ak,
            "--challenge",
            challenge,
            response,
        ];
        if v.get("expect").is_some() {
            fails(&verify, 1);
            continue;
        }
        let ic = format!("0x{}", field(&v, "invocation_counter"));
        assert_eq!(
            ok(&[
                "hls5",
                "--system-title",
                st,
                "--ic",
                &ic,
                "--ek",
                ek,
                "--ak",
                ak,
                challenge
            ]),
            response
        );
        assert!(ok(&verify).starts_with("verified"));
        // Another title is another IV.
        fails(
            &[
                "hls5-verify",
                "--system-title",
                "4D4D4D0000000002",
                "--ek",
                ek,
                "--ak",
                ak,
                "--challenge",
                challenge,
                response,
            ],
            1,
        );
    }
    // Challenge of 7 octets; response of 16.
    fails(
        &[
            "hls5",
            "--system-title",
            ST,
            "--ic",
            "1",
            "--ek",
            EK,
            "--ak",
            AK,
            "00112233445566",
        ],
        2,
    );
    fails(
        &[
            "hls5-verify",
            "--system-title",
            ST,
            "--ek",
            EK,
            "--ak",
            AK,
            "--challenge",
            "4B35366956616759",
            "1001234567FE1466AFB3DBCD4F9389E2",
        ],
        2,
    );
    fails(
        &[
            "hls5-verify",
            "--system-title",
            ST,
            "--ek",
            EK,
            "--ak",
            AK,
            "1001234567FE1466AFB3DBCD4F9389E2B7",
        ],
        2,
    );
}

// ---- packaged keys ----

#[test]
fn package_unpackage_round_trip_every_role() {
    let kek = "0101010101010101010101010101010A";
    for (role, client) in [
        ("mk", None),
        ("mk", Some("device")),
        ("ak", Some("management")),
        ("guek", Some("data-collection")),
        ("gbek", Some("extended-data-collection")),
        ("dk", Some("firmware")),
    ] {
        let mut args = vec![
            "package",
            "--kek",
            kek,
            "--role",
            role,
            "--device",
            ST,
            "--generation",
            "0x10",
        ];
        if let Some(c) = client {
            args.extend(["--client", c]);
        }
        args.push(DK);
        let record = ok(&args);
        assert_eq!(record.len(), 84, "42 octets");
        assert_eq!(ok(&["unpackage", "--kek", kek, &record]), DK);
        // Any octet changed: refused (integrity), or malformed.
        for i in [1, 2, 3, 8, 16, 20, 33, 41] {
            let byte = u8::from_str_radix(&record[2 * i..2 * i + 2], 16).unwrap();
            let out = run(&[
                "unpackage",
                "--kek",
                kek,
                &with_byte(&record, i, byte ^ 0x04),
            ]);
            assert_ne!(out.code, 0, "{role} octet {i}");
            assert_eq!(out.stdout, "");
        }
        let e = fails(&["unpackage", "--kek", EK, &record], 1);
        assert!(e.contains("KEK"), "{e}");
        // The ciphertext and the check value: exit 1.
        fails(&["unpackage", "--kek", kek, &with_byte(&record, 20, 0)], 1);
        fails(&["unpackage", "--kek", kek, &with_byte(&record, 41, 0)], 1);
        // The version octet: malformed.
        fails(&["unpackage", "--kek", kek, &with_byte(&record, 0, 9)], 2);
        fails(&["unpackage", "--kek", kek, &record[..82]], 2);
    }
    let base = ["package", "--kek", kek, "--device", ST, "--generation", "0"];
    let bad: &[&[&str]] = &[
        &["--role", "mk", "--client", "management", DK],
        &["--role", "ak", DK],
        &["--role", "ak", "--client", "device", DK],
        &["--role", "ak", "--client", "public", DK],
        &["--role", "ak", "--client", "nobody", DK],
        &["--role", "kek", "--client", "management", DK],
        &["--role", "ak", "--client", "management", "0011"],
    ];
    for extra in bad {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        fails(&args, 2);
    }
    fails(
        &["package", "--kek", kek, "--role", "mk", "--device", ST, DK],
        2,
    );
}

// ---- decode ----

const DECODED: &str = "\
tag: C8 glo-get-request
form: service-specific
content: 30 octets (security header, payload, auth tag)
security-control: 30 (suite 0, authenticated, encrypted, unicast)
key: global-unicast
invocation-counter: 01234567 (19088743)
system-title: not carried (the receiver supplies it)
payload: 13 octets
ciphertext: 411312FF935A47566827C467BC
auth-tag: 7D825C3BE4A77C3FCC056B6B";

#[test]
fn decode_the_green_book_frame() {
    let out = run(&["decode", GB_30]);
    assert_eq!(
        ok_out(&out),
        format!("{DECODED}\nverification: not attempted (no keys given)")
    );
    let out = run(&[
        "decode",
        "--system-title",
        ST,
        "--ek",
        EK,
        "--ak",
        AK,
        GB_30,
    ]);
    assert_eq!(
        ok_out(&out),
        format!("{DECODED}\nverification: ok\nplaintext: {PLAIN}\nplaintext-tag: C0 get-request")
    );
}

#[test]
fn decode_json() {
    let line = ok(&[
        "decode",
        "--json",
        "--system-title",
        ST,
        "--ek",
        EK,
        "--ak",
        AK,
        GB_30,
    ]);
    let j: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(j["tag"], "C8");
    assert_eq!(j["tag_name"], "glo-get-request");
    assert_eq!(j["form"], "service-specific");
    assert_eq!(j["content_length"], 30);
    assert_eq!(j["security_control"]["byte"], "30");
    assert_eq!(j["security_control"]["suite"], 0);
    assert_eq!(j["security_control"]["authenticated"], true);
    assert_eq!(j["security_control"]["encrypted"], true);
    assert_eq!(j["security_control"]["broadcast"], false);
    assert_eq!(j["key"], "global-unicast");
    assert_eq!(j["invocation_counter"]["hex"], "01234567");
    assert_eq!(j["invocation_counter"]["value"], 0x0123_4567);
    assert_eq!(j["system_title"], Value::Null);
    assert_eq!(j["payload_length"], 13);
    assert_eq!(j["auth_tag"], "7D825C3BE4A77C3FCC056B6B");
    assert_eq!(j["verification"], "ok");
    assert_eq!(j["plaintext"], PLAIN);

    let j: Value = serde_json::from_str(&ok(&["decode", GB_DB, "--json"])).unwrap();
    assert_eq!(j["form"], "general-glo-ciphering");
    assert_eq!(j["system_title"], ST);
    assert_eq!(j["verification"], "not-attempted");
}

#[test]
fn decode_other_forms_and_failures() {
    // Authentication only: the APDU is in clear.
    let auth = "C81E1001234567C0010000080000010000FF020006725D910F9221D263877516";
    let text = ok_out(&run(&["decode", auth]));
    assert!(text.contains(&format!("apdu: {PLAIN}")), "{text}");
    assert!(text.contains("security-control: 10 (suite 0, authenticated, unicast)"));
    // Encryption only: decrypted, said to be unauthenticated.
    let enc = "C8122001234567411312FF935A47566827C467BC";
    let text = ok_out(&run(&[
        "decode",
        "--system-title",
        ST,
        "--ek",
        EK,
        "--ak",
        AK,
        enc,
    ]));
    assert!(text.contains("auth-tag: none"));
    assert!(text.contains("verification: none possible"));
    assert!(text.contains(&format!("plaintext: {PLAIN}")));
    // Dedicated and a broadcast key-set bit on it.
    let ded = "D01E3001234567538219D99EE74436A08744D81EC04B2DF4D19FD8D8CD748873";
    assert!(ok_out(&run(&["decode", ded])).contains("tag: D0 ded-get-request"));
    assert!(ok_out(&run(&["decode", &with_byte(ded, 2, 0x70)])).contains("key: invalid"));

    // Wrong key: the breakdown, then exit 1.
    let out = run(&[
        "decode",
        "--system-title",
        ST,
        "--ek",
        EK,
        "--ak",
        DK,
        GB_30,
    ]);
    let e = fail_out(&out, 1);
    assert!(e.contains("authentication failed"));
    assert!(out.stdout.contains("verification: failed"));
    assert!(!out.stdout.contains("plaintext"));
    let out = run(&[
        "decode",
        "--json",
        "--system-title",
        ST,
        "--ek",
        EK,
        "--ak",
        DK,
        GB_30,
    ]);
    fail_out(&out, 1);
    let j: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(j["verification"], "failed");
    // Keys but no title: exit 2 after the breakdown.
    let out = run(&["decode", "--ek", EK, "--ak", AK, GB_30]);
    assert!(fail_out(&out, 2).contains("--system-title"));
    // Malformed frames: exit 2, nothing on stdout.
    fails(&["decode", "C81E30"], 2);
    fails(&["decode", "DB"], 2);
    fails(
        &[
            "decode",
            "C81F3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B",
        ],
        2,
    );
    fails(&["decode"], 2);
}

#[test]
fn decode_general_ciphering() {
    // Protected by the library (no CLI form for it), decoded by the CLI.
    use dlms_sec::counter::SingleUse;
    use dlms_sec::key::{AuthenticationKey, GlobalUnicastEncryptionKey};
    use dlms_sec::suite0::{Protect, Suite0};
    use dlms_sec::wire::{CipheredForm, GeneralCipheringFields};
    use dlms_sec::{InvocationCounter, KeyKind, Protection, SystemTitle};

    let ek: [u8; 16] = core::array::from_fn(|i| u8::try_from(i).unwrap());
    let ak: [u8; 16] = core::array::from_fn(|i| 0xD0 | u8::try_from(i).unwrap());
    let suite = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(ek),
        &AuthenticationKey::from_bytes(ak),
    );
    let req = Protect {
        protection: Protection::AuthenticatedEncrypted,
        key: KeyKind::GlobalUnicast,
        form: CipheredForm::GeneralCiphering(GeneralCipheringFields {
            transaction_id: &[1, 2, 3, 4, 5, 6, 7, 8],
            recipient_system_title: Some(SystemTitle::new(*b"DCO\x00\x00\x00\x00\x01")),
            date_time: &[],
            other_information: &[],
        }),
        system_title: SystemTitle::new([0x4D, 0x4D, 0x4D, 0, 0, 0xBC, 0x61, 0x4E]),
    };
    let apdu = [
        0xC0, 0x01, 0x00, 0x00, 0x08, 0, 0, 1, 0, 0, 0xFF, 0x02, 0x00,
    ];
    let mut frame = [0u8; 128];
    let n = suite
        .protect(
            &req,
            &mut SingleUse::dangerous_new(InvocationCounter::new(9)),
            &apdu,
            &mut frame,
        )
        .unwrap();
    let hex: String = frame[..n].iter().map(|b| format!("{b:02X}")).collect();
    let text = ok_out(&run(&["decode", "--ek", EK, "--ak", AK, &hex]));
    for line in [
        "tag: DD general-ciphering",
        "transaction-id: 0102030405060708",
        "originator-system-title: 4D4D4D0000BC614E",
        "recipient-system-title: 44434F0000000001",
        "date-time: (empty)",
        "verification: ok",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    assert!(text.contains(&format!("plaintext: {PLAIN}")));
    let j: Value = serde_json::from_str(&ok(&["decode", "--json", &hex])).unwrap();
    assert_eq!(j["general_ciphering"]["transaction_id"], "0102030405060708");
}

#[test]
fn readme_shows_real_decode_output() {
    let readme = include_str!("../README.md");
    let text = ok_out(&run(&[
        "decode",
        "--system-title",
        ST,
        "--ek",
        EK,
        "--ak",
        AK,
        GB_30,
    ]));
    assert!(
        readme.contains(&format!("{text}\n")),
        "README decode text is stale:\n{text}"
    );
    let json = ok(&[
        "decode",
        "--json",
        "--system-title",
        ST,
        "--ek",
        EK,
        "--ak",
        AK,
        GB_30,
    ]);
    assert!(
        readme.contains(&format!("{json}\n")),
        "README decode JSON is stale:\n{json}"
    );
}

// ---- encryption only needs no authentication key ----

#[test]
fn encryption_only_frames_need_the_encryption_key_alone() {
    // The Green Book's Table 40 frame under encryption only (SC 0x20).
    let enc = "C8122001234567411312FF935A47566827C467BC";
    let out = run(&["unprotect", "--system-title", ST, "--ek", EK, enc]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), PLAIN);
    assert!(out.stderr.contains("not authenticated"), "{}", out.stderr);
    let sent = ok(&[
        "protect",
        "--system-title",
        ST,
        "--ic",
        "0x01234567",
        "--policy",
        "enc",
        "--ek",
        EK,
        PLAIN,
    ]);
    assert_eq!(sent, enc);
    // An authenticated frame still needs the AK, and says so.
    let e = fails(&["unprotect", "--system-title", ST, "--ek", EK, GB_30], 2);
    assert!(e.contains("AK"), "{e}");
}
