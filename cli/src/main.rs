//! `dlms-sec`: DLMS/COSEM security suite 0 and SMETS1 key handling from
//! the command line, on top of the `dlms-sec` crate.
//!
//! Exit status: 0 on success; 1 when an authentication, integrity, replay
//! or security-policy check fails; 2 on malformed input or usage. Errors
//! are one line on stderr, prefixed `dlms-sec: `. `main` never panics.

mod args;
mod cmd;
mod codec;
mod decode;
mod fail;
mod json;
mod keys;
mod names;

use std::io::Write as _;
use std::process::ExitCode;

use crate::args::{Args, Spec};
use crate::fail::Fail;

const HELP: &str = "\
dlms-sec: DLMS/COSEM security suite 0 (AES-GCM-128) and SMETS1 keys

usage: dlms-sec COMMAND [FLAGS] HEX

  protect --policy auth|enc|auth-enc --system-title HEX --ic N --ek HEX --ak HEX
          [--form service|general-glo|general-ded] [--key unicast|broadcast|dedicated]
          [--dk HEX] [--bk HEX] APDU_HEX
      Prints the protected APDU. The service form takes its glo-/ded- tag
      from the plain APDU's tag; --form general-ded implies --key dedicated.
  unprotect [--system-title HEX] --ek HEX --ak HEX [--dk HEX] [--bk HEX]
          [--after-ic N] [--require auth|enc|auth-enc] FRAME_HEX
      Prints the plaintext APDU. The frame's SC and tag pick the key. The
      sender's title is required for forms that carry none. --after-ic N
      rejects a counter at or below N; --require rejects weaker protection.
  decode [--system-title HEX] [--ek HEX --ak HEX] [--dk HEX] [--bk HEX]
          [--after-ic N] [--require POLICY] [--json] FRAME_HEX
      Prints a breakdown of a ciphered APDU; with keys, the verified plaintext.
  wrap --kek HEX KEY_HEX            RFC 3394 wrap of a 128-bit key
  unwrap --kek HEX WRAPPED_HEX      RFC 3394 unwrap (exit 1 on integrity failure)
  key-transfer --mk HEX [--guek HEX] [--gbek HEX] [--ak HEX] [--new-mk HEX]
      Prints the Security Setup key_transfer parameter (keys wrapped under MK).
  hls5 --system-title HEX --ic N --ek HEX --ak HEX CHALLENGE_HEX
      Prints f(challenge) = 10 || IC || GMAC tag, with our own title.
  hls5-verify --system-title HEX --ek HEX --ak HEX --challenge HEX RESPONSE_HEX
      Checks the peer's f(our challenge), with the peer's title.
  package --kek HEX --role mk|ak|guek|gbek|dk --device HEX
          [--client data-collection|extended-data-collection|management|firmware|device]
          --generation N KEY_HEX
      Prints a 42-octet packaged-key record. MK and AK are packaged under the
      DCO Key, the others under the Shared Key. The MK is device-wide: give
      --client device or no --client.
  unpackage --kek HEX RECORD_HEX    Checks a record and prints the key in it.

conventions:
  Hex is case-insensitive and may hold spaces or colons; several positional
  words are joined; \"-\" reads the hex from standard input. Output is
  upper-case hex on one line. N is decimal or 0x-prefixed hex.
  Keys: a flag, else --keys FILE (lines NAME=HEX, # comments), else the
  environment variable DLMS_NAME. Names: EK AK DK BK KEK MK, and for
  key-transfer NEW_GUEK NEW_GBEK NEW_AK NEW_MK.
  Exit status: 0 success; 1 authentication, integrity, replay or policy
  check failed; 2 malformed input or usage.
";

type Command = fn(&Args, &mut String) -> Result<(), Fail>;

/// The subcommands: name, flags with a value, switches, handler.
const COMMANDS: &[(&str, Spec, Command)] = &[
    (
        "protect",
        Spec {
            values: &[
                "--policy",
                "--system-title",
                "--ic",
                "--ek",
                "--ak",
                "--dk",
                "--bk",
                "--form",
                "--key",
                "--keys",
            ],
            switches: &[],
        },
        cmd::protect,
    ),
    (
        "unprotect",
        Spec {
            values: &[
                "--system-title",
                "--ek",
                "--ak",
                "--dk",
                "--bk",
                "--after-ic",
                "--require",
                "--keys",
            ],
            switches: &[],
        },
        cmd::unprotect,
    ),
    (
        "decode",
        Spec {
            values: &[
                "--system-title",
                "--ek",
                "--ak",
                "--dk",
                "--bk",
                "--after-ic",
                "--require",
                "--keys",
            ],
            switches: &["--json"],
        },
        decode::decode,
    ),
    (
        "wrap",
        Spec {
            values: &["--kek", "--keys"],
            switches: &[],
        },
        cmd::wrap,
    ),
    (
        "unwrap",
        Spec {
            values: &["--kek", "--keys"],
            switches: &[],
        },
        cmd::unwrap,
    ),
    (
        "key-transfer",
        Spec {
            values: &["--mk", "--guek", "--gbek", "--ak", "--new-mk", "--keys"],
            switches: &[],
        },
        cmd::key_transfer,
    ),
    (
        "hls5",
        Spec {
            values: &["--system-title", "--ic", "--ek", "--ak", "--keys"],
            switches: &[],
        },
        cmd::hls5,
    ),
    (
        "hls5-verify",
        Spec {
            values: &["--system-title", "--ek", "--ak", "--challenge", "--keys"],
            switches: &[],
        },
        cmd::hls5_verify,
    ),
    (
        "package",
        Spec {
            values: &[
                "--kek",
                "--role",
                "--device",
                "--client",
                "--generation",
                "--keys",
            ],
            switches: &[],
        },
        cmd::package,
    ),
    (
        "unpackage",
        Spec {
            values: &["--kek", "--keys"],
            switches: &[],
        },
        cmd::unpackage,
    ),
];

/// Runs one invocation; what to print on stdout goes to `out` (also when
/// the command fails after producing output, as `decode` does).
fn run(argv: &[String], out: &mut String) -> Result<(), Fail> {
    let Some((command, rest)) = argv.split_first() else {
        return Err(Fail::usage("missing command (try --help)"));
    };
    if matches!(command.as_str(), "-h" | "--help" | "help") {
        out.push_str(HELP.trim_end());
        return Ok(());
    }
    if matches!(command.as_str(), "-V" | "--version") {
        out.push_str(concat!("dlms-sec ", env!("CARGO_PKG_VERSION")));
        return Ok(());
    }
    let (_, spec, handler) = COMMANDS
        .iter()
        .find(|(name, _, _)| name == command)
        .ok_or_else(|| Fail::usage(format_args!("unknown command {command:?} (try --help)")))?;
    if rest.iter().any(|a| a == "-h" || a == "--help") {
        out.push_str(HELP.trim_end());
        return Ok(());
    }
    let args = Args::parse(spec, rest)?;
    handler(&args, out)
}

fn main() -> ExitCode {
    let mut argv = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(a) => argv.push(a),
            Err(_) => return report(&Fail::usage("an argument is not valid UTF-8")),
        }
    }
    let mut out = String::new();
    let result = run(&argv, &mut out);
    if !out.is_empty() {
        out.push('\n');
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = stdout
            .write_all(out.as_bytes())
            .and_then(|()| stdout.flush())
        {
            return report(&Fail::usage(format_args!("cannot write output: {e}")));
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(fail) => report(&fail),
    }
}

/// One line on stderr, and the exit status.
fn report(fail: &Fail) -> ExitCode {
    // Nothing more can be done if stderr itself is gone.
    let _ = writeln!(std::io::stderr(), "dlms-sec: {}", fail.message);
    ExitCode::from(fail.code)
}
