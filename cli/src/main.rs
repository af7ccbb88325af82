//! `dlms-sec`: DLMS/COSEM security suite 0 and SMETS1 key handling from
//! the command line, on top of the `dlms-sec` crate.
//!
//! Exit status: 0 on success; 1 when an authentication, integrity, replay
//! or security-policy check fails; 2 on malformed input or usage. Errors
//! are one line on stderr, prefixed `dlms-sec: `. `main` never panics.

mod audit;
mod cli;
mod cmd;
mod codec;
mod decode;
mod fail;
mod kek_package;
mod keys;
mod names;
mod report;

use std::io::Write as _;
use std::process::ExitCode;

use crate::cli::{Command, Request};
use crate::fail::Fail;

/// Runs one invocation; what to print on stdout goes to `out` (also when
/// the command fails after producing output, as `decode` does).
fn run(out: &mut String) -> Result<(), Fail> {
    let command = match cli::parse(std::env::args_os().skip(1))? {
        Request::Print(text) => {
            out.push_str(&text);
            return Ok(());
        }
        Request::Run(command) => command,
    };
    match &command {
        Command::Protect(a) => cmd::protect(a, out),
        Command::Unprotect(a) => cmd::unprotect(a, out),
        Command::Decode(a) => decode::decode(a, out),
        Command::Wrap(a) => cmd::wrap(a, out),
        Command::Unwrap(a) => cmd::unwrap(a, out),
        Command::KeyTransfer(a) => cmd::key_transfer(a, out),
        Command::Hls5(a) => cmd::hls5(a, out),
        Command::Hls5Verify(a) => cmd::hls5_verify(a, out),
        Command::Package(a) => cmd::package(a, out),
        Command::Unpackage(a) => cmd::unpackage(a, out),
        Command::Report(a) => report::run(a, out),
        Command::KekPackage(c) => kek_package::run(c, out),
        Command::Audit(a) => audit::run(a, out),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cli::command(), "dlms-sec", &mut script);
            out.push_str(String::from_utf8_lossy(&script).trim_end());
            Ok(())
        }
    }
}

/// Room reserved for stdout up front, so printing a clear key never grows
/// (and so copies and frees unwiped) the buffer that holds it.
const OUTPUT_CAPACITY: usize = 1 << 16;

fn main() -> ExitCode {
    // May hold a clear key (unwrap, unpackage): wiped on drop.
    let mut out = zeroize::Zeroizing::new(String::with_capacity(OUTPUT_CAPACITY));
    let result = run(&mut out);
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
