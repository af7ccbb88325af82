//! `dlms-sec audit verify`: checks a tamper-evident audit log, in a
//! database (`dlms-sec-store`) or a JSON-lines file
//! (`dlms_sec_services::jsonl`), under the audit key.
//!
//! The audit key comes from `--key-file PATH` (a file holding the key as
//! hex), else `AUDIT=HEX` in `--keys FILE`, else `DLMS_AUDIT`: never from
//! a flag's value, so it does not appear in a process list.
//!
//! Prints `verified N records, chain HEX` and exits 0; or prints the first
//! break (the sequence number and what is wrong there) on stderr and exits
//! 1. A log that cannot be read, or a missing key, exits 2.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use dlms_sec::audit::ChainId;
use dlms_sec::key::AuditKey;
use dlms_sec_services::jsonl::{self, BreakKind};
use dlms_sec_store::{AuditBreakKind, Store};
use zeroize::Zeroizing;

use crate::codec::{parse_array, public_hex};
use crate::fail::Fail;
use crate::keys::Keys;

/// `dlms-sec audit`.
#[derive(Debug, Args)]
#[command(disable_help_subcommand = true)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    pub(crate) command: AuditCommand,
}

/// The audit subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Verifies an audit log's chain: prints the records verified and the
    /// chain id, or the first break (exit 1)
    Verify(Verify),
}

/// `dlms-sec audit verify`.
#[derive(Debug, Args)]
pub(crate) struct Verify {
    /// The database holding the audit_log table (sqlite://PATH,
    /// postgres://…)
    #[arg(long, value_name = "URL")]
    pub(crate) database: Option<String>,
    /// A JSON-lines audit log
    #[arg(long, value_name = "FILE")]
    pub(crate) jsonl: Option<PathBuf>,
    /// A file holding the audit key as hex [or AUDIT in --keys, DLMS_AUDIT]
    #[arg(long, value_name = "PATH")]
    pub(crate) key_file: Option<PathBuf>,
    /// Also fails when the log holds another number of records than N
    /// (records removed from the end show only against a count kept
    /// elsewhere)
    #[arg(long, value_name = "N")]
    pub(crate) expect_records: Option<u64>,
    #[command(flatten)]
    pub(crate) file: crate::cli::KeysFile,
}

/// Runs `dlms-sec audit …`.
pub(crate) fn run(args: &AuditArgs, out: &mut String) -> Result<(), Fail> {
    match &args.command {
        AuditCommand::Verify(v) => verify(v, out),
    }
}

/// The audit key: `--key-file`, else `AUDIT` in `--keys`, else `DLMS_AUDIT`.
fn audit_key(v: &Verify) -> Result<AuditKey, Fail> {
    let bytes = match &v.key_file {
        Some(path) => {
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                Fail::usage(format_args!(
                    "cannot read --key-file {}: {e}",
                    path.display()
                ))
            })?);
            parse_array::<16>(&text, "--key-file")?
        }
        None => Keys::load(v.file.path.as_deref())?.require(None, "--key-file", "AUDIT")?,
    };
    Ok(AuditKey::from_bytes(*bytes))
}

fn verified(out: &mut String, records: u64, chain: Option<ChainId>) {
    let chain = chain.map_or_else(|| "none".to_owned(), |c| public_hex(c.as_bytes()));
    out.push_str(&format!("verified {records} records, chain {chain}"));
}

fn verify(v: &Verify, out: &mut String) -> Result<(), Fail> {
    let key = audit_key(v)?;
    match (&v.database, &v.jsonl) {
        (Some(url), None) => verify_database(url, &key, v.expect_records, out),
        (None, Some(path)) => verify_jsonl(path, &key, v.expect_records, out),
        _ => Err(Fail::usage("give one of --database URL or --jsonl FILE")),
    }
}

fn verify_database(
    url: &str,
    key: &AuditKey,
    expected: Option<u64>,
    out: &mut String,
) -> Result<(), Fail> {
    // Opening a SQLite URL creates the file: a log to verify must exist.
    if let Some(path) = url.strip_prefix("sqlite://")
        && !Path::new(path).is_file()
    {
        return Err(Fail::usage(format_args!("--database: no file {path}")));
    }
    let store =
        Store::open(url).map_err(|e| Fail::usage(format_args!("--database: cannot open: {e}")))?;
    match dlms_sec_store::verify_audit(&store, key) {
        Ok(head) => {
            if let Some(n) = expected
                && n != head.count
            {
                return Err(Fail::check(format_args!(
                    "audit log holds {} records, {n} expected{}",
                    head.count,
                    if head.count < n { " (truncated)" } else { "" }
                )));
            }
            verified(out, head.count, head.chain_id);
            Ok(())
        }
        Err(brk) => match brk.why {
            AuditBreakKind::Store(e) => Err(Fail::usage(format_args!(
                "--database: cannot read the audit log: {e}"
            ))),
            _ => {
                let text = brk.to_string();
                let why = text.split_once(": ").map_or(text.as_str(), |(_, w)| w);
                Err(Fail::check(format_args!(
                    "audit log broken at seq {}: {why}",
                    brk.seq
                )))
            }
        },
    }
}

fn verify_jsonl(
    path: &Path,
    key: &AuditKey,
    expected: Option<u64>,
    out: &mut String,
) -> Result<(), Fail> {
    let file = File::open(path)
        .map_err(|e| Fail::usage(format_args!("cannot read --jsonl {}: {e}", path.display())))?;
    let reader = BufReader::new(file);
    let result = match expected {
        Some(n) => jsonl::verify_with_head(reader, key, n),
        None => jsonl::verify(reader, key),
    };
    match result {
        Ok(log) => {
            verified(out, log.records, log.chain);
            Ok(())
        }
        Err(brk) => {
            // In an intact log line n holds the record with seq n - 1.
            let seq = brk.line.saturating_sub(1);
            match brk.kind {
                BreakKind::Io(kind) => Err(Fail::usage(format_args!(
                    "cannot read --jsonl {} at line {}: {kind}",
                    path.display(),
                    brk.line
                ))),
                _ => Err(Fail::check(format_args!(
                    "audit log broken at seq {seq} (line {}): {}",
                    brk.line,
                    jsonl_why(brk.kind)
                ))),
            }
        }
    }
}

/// What is wrong at a JSON-lines break, without the line prefix.
fn jsonl_why(kind: BreakKind) -> String {
    let text = jsonl::ChainBreak { line: 0, kind }.to_string();
    text.split_once(": ")
        .map_or(text.clone(), |(_, why)| why.to_owned())
}
