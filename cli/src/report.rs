//! `dlms-sec report`: the SMETS1 compliance report of a store, written as
//! `report.html` (one self-contained page) and `report.json` into a
//! directory. See `docs/report.md` for every figure.

use core::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use dlms_sec::key::AuditKey;
use dlms_sec_report::{AuditVerdict, compute, write};
use dlms_sec_store::Store;
use zeroize::Zeroizing;

use crate::cli::ValueFn;
use crate::codec::parse_array;
use crate::fail::Fail;

/// `report`.
#[derive(Debug, Args)]
pub(crate) struct Report {
    /// The store: sqlite://PATH or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE
    #[arg(long, value_name = "URL")]
    pub(crate) database: String,
    /// The directory report.html and report.json are written to (created if missing)
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
    /// The audit key, 32 hex digits in a file; without it the audit chain is not checked
    #[arg(long, value_name = "PATH")]
    pub(crate) audit_key_file: Option<PathBuf>,
    /// The report's time in Unix seconds [default: the system clock]
    #[arg(long, value_name = "UNIX_SECONDS", value_parser = ValueFn(unix_seconds))]
    pub(crate) now: Option<u64>,
}

/// `--now`: decimal seconds since 1970-01-01T00:00:00Z.
fn unix_seconds(text: &str, what: &str) -> Result<u64, Fail> {
    let t = text.trim();
    t.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| t.parse().ok())
        .flatten()
        .ok_or_else(|| {
            Fail::usage(format_args!(
                "{what}: {text:?} is not a time in Unix seconds (decimal)"
            ))
        })
}

/// Reads the audit key from `path`: 16 octets of hex.
fn audit_key(path: &std::path::Path) -> Result<AuditKey, Fail> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        Fail::usage(format_args!(
            "cannot read --audit-key-file {}: {e}",
            path.display()
        ))
    })?);
    let what = format!("--audit-key-file {}", path.display());
    let bytes = parse_array::<16>(text.trim(), &what)?;
    Ok(AuditKey::from_bytes(*bytes))
}

/// Writes the report; prints where, and the figures a reviewer looks at
/// first. A broken audit chain is a failed check (exit 1) after the
/// report is written.
pub(crate) fn run(a: &Report, out: &mut String) -> Result<(), Fail> {
    let key = a.audit_key_file.as_deref().map(audit_key).transpose()?;
    let now = match a.now {
        Some(now) => now,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| Fail::usage("the system clock is before 1970; give --now"))?
            .as_secs(),
    };
    let store =
        Store::open(&a.database).map_err(|e| Fail::usage(format_args!("--database: {e}")))?;
    let report = compute(&store, key.as_ref(), now)
        .map_err(|e| Fail::usage(format_args!("cannot read the store: {e}")))?;
    write(&report, &a.out)
        .map_err(|e| Fail::usage(format_args!("cannot write to {}: {e}", a.out.display())))?;
    let l = &report.latency;
    let audit = match &report.audit {
        AuditVerdict::NotChecked => "audit chain not checked (no --audit-key-file)".to_owned(),
        AuditVerdict::Verified { count, .. } => format!("audit chain verified ({count} rows)"),
        AuditVerdict::Broken { seq, .. } => format!("audit chain broken at row {seq}"),
    };
    let complete = report.campaigns.iter().filter(|c| c.complete).count();
    let _ = write!(
        out,
        "{}: {} devices, {} rotated within 7 days, {} beyond; {complete} of {} campaigns complete; {audit}",
        a.out.display(),
        l.devices,
        l.within,
        l.beyond,
        report.campaigns.len()
    );
    match &report.audit {
        AuditVerdict::Broken { reason, .. } => Err(Fail::check(reason)),
        AuditVerdict::NotChecked | AuditVerdict::Verified { .. } => Ok(()),
    }
}
