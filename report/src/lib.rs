//! The SMETS1 compliance report over a `dlms-sec-store` database: what an
//! SMKI PMA reviewer asks to see, computed from the registry, the
//! campaigns, the key records and the audit table.
//!
//! [`compute`] reads a [`Store`] and returns a [`ComplianceReport`]:
//!
//! * each device's commissioning-to-rotation latency (or, not yet rotated,
//!   its age) against the 7-day rule, as a histogram and as counts
//!   within and beyond the window;
//! * the overdue devices;
//! * every campaign and how far it has got;
//! * refusals, authentication failures, replays and corruption per day,
//!   from the audit table;
//! * the audit chain's verdict;
//! * the KEK check values in use, from the audit events and the key
//!   records.
//!
//! The time is passed in (`now`); nothing here reads a clock. Audit events
//! are read only through [`verify_audit_with`], so only events whose row
//! verified are counted. [`render_html`] writes the report as one page that
//! loads nothing from anywhere (inline CSS, SVG charts drawn from the
//! figures, no script); [`write()`] puts `report.html` and `report.json` (the
//! serialised report) in a directory. `docs/report.md` describes every
//! figure.

use std::collections::BTreeMap;
use std::path::Path;

use dlms_sec::audit::{AuditAction, AuditEvent, Outcome};
use dlms_sec::key::AuditKey;
use dlms_sec::key::package::KeyCheckValue;
use dlms_sec_store::{DeviceEntry, ROTATION_WINDOW, Store, StoreError, verify_audit_with};
use serde::{Deserialize, Serialize};

mod html;
mod svg;
mod time;

pub use crate::html::{escape, render_html};
pub use crate::time::utc;

/// Seconds in a day.
pub const DAY: u64 = 24 * 60 * 60;

/// Whole-day bins of the latency histogram before the last one; the last
/// bin holds every latency of this many days or more.
pub const HISTOGRAM_DAYS: u64 = 14;

/// Registry entries and campaigns read per query.
const PAGE: u32 = 4096;

/// Everything the report shows, in the units the JSON carries (Unix
/// seconds, counts, system titles and check values in upper-case hex).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplianceReport {
    /// The time the report was computed for, in Unix seconds.
    pub now: u64,
    /// The rotation window in seconds (7 days).
    pub rotation_window: u64,
    /// Latency against the window, over every registered device.
    pub latency: Latency,
    /// The devices beyond the window, in order of system title.
    pub overdue: Vec<Overdue>,
    /// Every campaign, in order of id.
    pub campaigns: Vec<Campaign>,
    /// Refusals, failures and corruption from the audit table, per day.
    pub events: Events,
    /// The audit chain's verdict.
    pub audit: AuditVerdict,
    /// The KEK check values in use, in order of check value.
    pub keks: Vec<KekUse>,
}

/// Commissioning-to-rotation latency over the registry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    /// Registered devices.
    pub devices: u64,
    /// Rotated within the window (latency of 7 days or less).
    pub rotated_within: u64,
    /// Rotated, but later than the window.
    pub rotated_late: u64,
    /// Not rotated, commissioned more than 7 days before `now`.
    pub unrotated_overdue: u64,
    /// Not rotated, still inside the window.
    pub unrotated_open: u64,
    /// Within the window: `rotated_within`.
    pub within: u64,
    /// Beyond the window: `rotated_late + unrotated_overdue`.
    pub beyond: u64,
    /// The histogram: [`HISTOGRAM_DAYS`] one-day bins, then one bin for
    /// the rest.
    pub bins: Vec<Bin>,
}

/// One histogram bin: latencies (rotated devices) and ages (devices not
/// rotated) of at least `from_day` days and less than `to_day`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bin {
    /// The lower bound, in whole days, inclusive.
    pub from_day: u64,
    /// The upper bound, in whole days, exclusive; `None` for the last bin.
    pub to_day: Option<u64>,
    /// Rotated devices whose latency falls in the bin.
    pub rotated: u64,
    /// Devices not rotated whose age falls in the bin.
    pub not_rotated: u64,
}

/// A device beyond the rotation window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overdue {
    /// The system title, upper-case hex.
    pub device: String,
    /// When it was commissioned, Unix seconds.
    pub commissioned_at: u64,
    /// When its keys were rotated, if they were.
    pub rotated_at: Option<u64>,
    /// Rotation latency (rotated) or age at `now` (not rotated), seconds.
    pub seconds: u64,
    /// `seconds` in whole days (rounded down).
    pub days: u64,
}

/// A campaign and its completion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    /// The campaign's id.
    pub id: String,
    /// Why it was started.
    pub reason: String,
    /// When it was started, Unix seconds.
    pub started_at: u64,
    /// Devices in it.
    pub total: u64,
    /// Devices done.
    pub done: u64,
    /// Whether every device is done (an empty campaign is complete).
    pub complete: bool,
}

/// Counts of audit events that show something refused or failing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    /// [`AuditAction::AccessRefused`].
    pub access_refused: u64,
    /// [`AuditAction::AuthenticationFailed`].
    pub authentication_failed: u64,
    /// [`AuditAction::ReplayRejected`].
    pub replay_rejected: u64,
    /// [`AuditAction::CorruptionDetected`].
    pub corruption_detected: u64,
    /// Any other action whose outcome is refused or failure.
    pub other_refused_or_failed: u64,
}

impl EventCounts {
    /// The sum of the counts.
    #[must_use]
    pub const fn total(&self) -> u64 {
        self.access_refused
            .saturating_add(self.authentication_failed)
            .saturating_add(self.replay_rejected)
            .saturating_add(self.corruption_detected)
            .saturating_add(self.other_refused_or_failed)
    }

    /// Counts `event` if it shows something refused or failing.
    fn count(&mut self, event: &AuditEvent) {
        let slot = match event.action {
            AuditAction::AccessRefused => &mut self.access_refused,
            AuditAction::AuthenticationFailed => &mut self.authentication_failed,
            AuditAction::ReplayRejected => &mut self.replay_rejected,
            AuditAction::CorruptionDetected => &mut self.corruption_detected,
            _ if matches!(event.outcome, Outcome::Refused | Outcome::Failure) => {
                &mut self.other_refused_or_failed
            }
            _ => return,
        };
        *slot = slot.saturating_add(1);
    }
}

/// Refusals and failures from the audit table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    /// Audit events read (every verified row).
    pub read: u64,
    /// The counts over all days.
    pub totals: EventCounts,
    /// The counts of each UTC day with at least one, in order.
    pub per_day: Vec<DayCounts>,
}

/// The counts of one UTC day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCounts {
    /// The day, `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Its first second, Unix seconds.
    pub start: u64,
    /// Its counts.
    pub counts: EventCounts,
}

/// What the audit chain check found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum AuditVerdict {
    /// No audit key was given: the chain was not checked and no audit
    /// figure is in the report.
    NotChecked,
    /// Every row verified.
    Verified {
        /// Rows verified.
        count: u64,
        /// The chain's id, hex (`None` for an empty table).
        chain_id: Option<String>,
    },
    /// The chain breaks; the figures count the rows before the break.
    Broken {
        /// The first row that does not verify (also the number of rows
        /// before it, which verified).
        seq: u64,
        /// What is wrong there.
        reason: String,
    },
}

/// One KEK check value and where it was seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KekUse {
    /// The check value, upper-case hex.
    pub kek: String,
    /// Audit events that name it.
    pub audit_events: u64,
    /// The earliest of those events' times, Unix seconds.
    pub first_seen: Option<u64>,
    /// The latest of those events' times, Unix seconds.
    pub last_seen: Option<u64>,
    /// Active key records packaged under it.
    pub active_records: u64,
    /// Pending key records packaged under it.
    pub pending_records: u64,
    /// Previous key records packaged under it.
    pub previous_records: u64,
}

/// Upper-case hex of `bytes`.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use core::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

/// Computes the report over `store` at time `now` (Unix seconds). With
/// `audit_key`, the audit chain is verified and its verified events give
/// the refusal counts and the KEKs seen; without it, the audit figures are
/// empty and the verdict is [`AuditVerdict::NotChecked`].
///
/// A broken chain is a verdict, not an error: the events before the break
/// are counted.
///
/// # Errors
/// The store's, when the registry, the campaigns or the key records cannot
/// be read.
pub fn compute(
    store: &Store,
    audit_key: Option<&AuditKey>,
    now: u64,
) -> Result<ComplianceReport, StoreError> {
    let (latency, overdue) = latency(store, now)?;
    let campaigns = campaigns(store)?;
    let mut keks: BTreeMap<KeyCheckValue, KekUse> = BTreeMap::new();
    let (events, audit) = match audit_key {
        None => (Events::default(), AuditVerdict::NotChecked),
        Some(key) => audit(store, key, &mut keks),
    };
    for r in store.record_keks()? {
        let k = keks.entry(r.kek).or_insert_with(|| kek_use(r.kek));
        k.active_records = r.active;
        k.pending_records = r.pending;
        k.previous_records = r.previous;
    }
    Ok(ComplianceReport {
        now,
        rotation_window: ROTATION_WINDOW,
        latency,
        overdue,
        campaigns,
        events,
        audit,
        keks: keks.into_values().collect(),
    })
}

/// Rotation latency (rotated) or age at `now` (not rotated) of `e`, in
/// seconds; a time before commissioning counts as zero.
#[must_use]
pub const fn latency_of(e: &DeviceEntry, now: u64) -> u64 {
    match e.rotated_at {
        Some(at) => at.saturating_sub(e.commissioned_at),
        None => now.saturating_sub(e.commissioned_at),
    }
}

fn latency(store: &Store, now: u64) -> Result<(Latency, Vec<Overdue>), StoreError> {
    let mut l = Latency {
        bins: (0..=HISTOGRAM_DAYS)
            .map(|d| Bin {
                from_day: d,
                to_day: (d < HISTOGRAM_DAYS).then(|| d.saturating_add(1)),
                rotated: 0,
                not_rotated: 0,
            })
            .collect(),
        ..Latency::default()
    };
    let mut overdue = Vec::new();
    let bump = |n: &mut u64| *n = n.saturating_add(1);
    let mut after = None;
    loop {
        let page = store.registry(after.as_ref(), PAGE)?;
        for e in &page {
            bump(&mut l.devices);
            let seconds = latency_of(e, now);
            let late = seconds > ROTATION_WINDOW;
            let day = seconds / DAY;
            if let Some(bin) = l
                .bins
                .get_mut(usize::try_from(day.min(HISTOGRAM_DAYS)).unwrap_or(0))
            {
                bump(if e.rotated_at.is_some() {
                    &mut bin.rotated
                } else {
                    &mut bin.not_rotated
                });
            }
            bump(match (e.rotated_at.is_some(), late) {
                (true, false) => &mut l.rotated_within,
                (true, true) => &mut l.rotated_late,
                (false, true) => &mut l.unrotated_overdue,
                (false, false) => &mut l.unrotated_open,
            });
            if late {
                overdue.push(Overdue {
                    device: hex(e.device.as_bytes()),
                    commissioned_at: e.commissioned_at,
                    rotated_at: e.rotated_at,
                    seconds,
                    days: day,
                });
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = Some(last.device),
            _ => break,
        }
    }
    l.within = l.rotated_within;
    l.beyond = l.rotated_late.saturating_add(l.unrotated_overdue);
    Ok((l, overdue))
}

fn campaigns(store: &Store) -> Result<Vec<Campaign>, StoreError> {
    let mut out: Vec<Campaign> = Vec::new();
    loop {
        let after = out.last().map(|c| c.id.clone());
        let page = store.campaigns(after.as_deref(), PAGE)?;
        let full = page.len() == PAGE as usize;
        out.extend(page.into_iter().map(|c| Campaign {
            complete: c.status.done >= c.status.total,
            id: c.id,
            reason: c.reason,
            started_at: c.started_at,
            total: c.status.total,
            done: c.status.done,
        }));
        if !full {
            return Ok(out);
        }
    }
}

/// A [`KekUse`] for `kek` with nothing counted yet.
fn kek_use(kek: KeyCheckValue) -> KekUse {
    KekUse {
        kek: hex(&kek.0),
        audit_events: 0,
        first_seen: None,
        last_seen: None,
        active_records: 0,
        pending_records: 0,
        previous_records: 0,
    }
}

fn audit(
    store: &Store,
    key: &AuditKey,
    keks: &mut BTreeMap<KeyCheckValue, KekUse>,
) -> (Events, AuditVerdict) {
    let mut events = Events::default();
    let mut days: BTreeMap<u64, EventCounts> = BTreeMap::new();
    let verdict = verify_audit_with(store, key, |_, e| {
        events.read = events.read.saturating_add(1);
        let mut one = EventCounts::default();
        one.count(e);
        if one.total() > 0 {
            events.totals.count(e);
            days.entry(e.time.0 / DAY).or_default().count(e);
        }
        if let Some(kcv) = e.kek {
            let t = e.time.0;
            let k = keks.entry(kcv).or_insert_with(|| kek_use(kcv));
            k.audit_events = k.audit_events.saturating_add(1);
            k.first_seen = Some(k.first_seen.map_or(t, |f| f.min(t)));
            k.last_seen = Some(k.last_seen.map_or(t, |l| l.max(t)));
        }
    });
    events.per_day = days
        .into_iter()
        .map(|(d, counts)| {
            let start = d.saturating_mul(DAY);
            DayCounts {
                day: time::date(start),
                start,
                counts,
            }
        })
        .collect();
    let verdict = match verdict {
        Ok(head) => AuditVerdict::Verified {
            count: head.count,
            chain_id: head.chain_id.map(|c| hex(c.as_bytes())),
        },
        Err(b) => AuditVerdict::Broken {
            seq: b.seq,
            reason: b.to_string(),
        },
    };
    (events, verdict)
}

/// Writes `report.html` and `report.json` for `report` into `dir`
/// (created if missing).
///
/// # Errors
/// The file system's.
pub fn write(report: &ComplianceReport, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("report.json"), json)?;
    std::fs::write(dir.join("report.html"), render_html(report))
}
