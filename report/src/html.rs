//! `report.html`: the report as one self-contained page. Inline CSS, SVG
//! charts drawn from the figures, no script, and a Content-Security-Policy
//! that lets the page load nothing. Every string from the database passes
//! through [`escape`].

use core::fmt::Write as _;

use crate::svg::{Series, completion_bar, stacked_bars};
use crate::time::utc;
use crate::{AuditVerdict, ComplianceReport, DAY};

/// Overdue devices listed on the page; the JSON lists all.
pub const OVERDUE_ROWS: usize = 1000;

/// Days with events drawn in the chart (the latest); the table and the
/// JSON hold all.
const CHART_DAYS: usize = 90;

/// `text` with `&`, `<`, `>`, `"` and `'` replaced by character
/// references: safe in element content and in quoted attribute values.
#[must_use]
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body { font: 14px/1.45 system-ui, sans-serif; color: #1b1f24; margin: 24px 32px; max-width: 1180px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
p.sub { color: #57606a; margin: 0 0 12px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: middle; }
th { background: #f6f8fa; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono { font-family: ui-monospace, monospace; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 14px; min-width: 150px; }
.card b { display: block; font-size: 22px; }
.ok { color: #1a7f37; } .bad { color: #cf222e; } .warn { color: #9a6700; }
.note { color: #57606a; font-style: italic; }
svg text { font: 11px system-ui, sans-serif; fill: #1b1f24; }
svg .legend { font-size: 12px; }
svg .grid { stroke: #eaeef2; } svg .axis-line { stroke: #57606a; }
svg .marker { stroke: #cf222e; stroke-width: 2; stroke-dasharray: 6 4; }
svg text.marker-label { fill: #cf222e; font-weight: bold; }
.rotated { fill: #2da44e; } .not-rotated { fill: #d4a72c; }
.refused { fill: #8250df; } .auth { fill: #cf222e; } .replay { fill: #bc4c00; }
.corrupt { fill: #1b1f24; } .other { fill: #8c959f; }
.bar-rest { fill: #eaeef2; } .bar-done { fill: #2da44e; }
";

/// The report as one HTML page.
#[must_use]
pub fn render_html(r: &ComplianceReport) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>SMETS1 key compliance report, {now}</title><style>{STYLE}</style></head><body>\
         <h1>SMETS1 key compliance report</h1>\
         <p class=\"sub\">As of {now} UTC. Rotation window: {days} days from commissioning \
         (SEC Appendix AM clause 20.1). Every figure is also in <code>report.json</code>.</p>",
        now = escape(&utc(r.now)),
        days = r.rotation_window / DAY,
    );
    summary(&mut h, r);
    latency(&mut h, r);
    overdue(&mut h, r);
    campaigns(&mut h, r);
    events(&mut h, r);
    audit(&mut h, r);
    keks(&mut h, r);
    h.push_str("</body></html>\n");
    h
}

fn card(h: &mut String, value: &str, label: &str, class: &str) {
    let _ = write!(
        h,
        "<div class=\"card\"><b class=\"{}\">{}</b>{}</div>",
        escape(class),
        escape(value),
        escape(label)
    );
}

fn summary(h: &mut String, r: &ComplianceReport) {
    let l = &r.latency;
    let complete = r.campaigns.iter().filter(|c| c.complete).count();
    h.push_str("<h2>Summary</h2><div class=\"cards\">");
    card(h, &l.devices.to_string(), "devices registered", "");
    card(h, &l.within.to_string(), "rotated within 7 days", "ok");
    let beyond_class = if l.beyond == 0 { "ok" } else { "bad" };
    card(h, &l.beyond.to_string(), "beyond 7 days", beyond_class);
    card(
        h,
        &l.unrotated_open.to_string(),
        "not rotated, inside the window",
        "warn",
    );
    card(
        h,
        &format!("{complete} / {}", r.campaigns.len()),
        "campaigns complete",
        if complete == r.campaigns.len() {
            "ok"
        } else {
            "warn"
        },
    );
    let (verdict, class) = match &r.audit {
        AuditVerdict::NotChecked => ("not checked".to_owned(), "warn"),
        AuditVerdict::Verified { count, .. } => (format!("{count} rows verified"), "ok"),
        AuditVerdict::Broken { seq, .. } => (format!("broken at row {seq}"), "bad"),
    };
    card(h, &verdict, "audit chain", class);
    h.push_str("</div>");
}

fn latency(h: &mut String, r: &ComplianceReport) {
    let l = &r.latency;
    h.push_str(
        "<h2>Commissioning to rotation</h2><p class=\"sub\">Each device once: a rotated \
         device by its latency (rotation time minus commissioning time), a device not \
         rotated by its age now. Bins are whole days; the last holds 14 days and more. \
         The dashed line is the 7-day limit (exactly 7 days counts as within).</p>",
    );
    let labels: Vec<String> = l
        .bins
        .iter()
        .map(|b| match b.to_day {
            Some(_) => b.from_day.to_string(),
            None => format!("\u{2265}{}", b.from_day),
        })
        .collect();
    let series = [
        Series {
            label: "rotated (latency)",
            class: "rotated",
            values: l.bins.iter().map(|b| b.rotated).collect(),
        },
        Series {
            label: "not rotated (age)",
            class: "not-rotated",
            values: l.bins.iter().map(|b| b.not_rotated).collect(),
        },
    ];
    h.push_str(&stacked_bars(
        "Devices by days from commissioning to rotation",
        &labels,
        &series,
        Some((r.rotation_window as f64 / DAY as f64, "7 days")),
    ));
    let _ = write!(
        h,
        "<table><tr><th></th><th>within 7 days</th><th>beyond 7 days</th></tr>\
         <tr><th>rotated</th><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\
         <tr><th>not rotated</th><td class=\"n\">{} (window still open)</td><td class=\"n\">{}</td></tr>\
         <tr><th>total</th><td class=\"n\">{}</td><td class=\"n\">{}</td></tr></table>",
        l.rotated_within, l.rotated_late, l.unrotated_open, l.unrotated_overdue, l.within, l.beyond,
    );
}

fn overdue(h: &mut String, r: &ComplianceReport) {
    let _ = write!(
        h,
        "<h2>Overdue devices ({})</h2><p class=\"sub\">Not rotated and commissioned more \
         than 7 days ago, or rotated more than 7 days after commissioning.</p>",
        r.overdue.len()
    );
    if r.overdue.is_empty() {
        h.push_str("<p class=\"note\">None.</p>");
        return;
    }
    h.push_str(
        "<table><tr><th>system title</th><th>commissioned (UTC)</th>\
         <th>rotated (UTC)</th><th>days</th></tr>",
    );
    for o in r.overdue.iter().take(OVERDUE_ROWS) {
        let rotated = o.rotated_at.map_or_else(|| "not rotated".to_owned(), utc);
        let _ = write!(
            h,
            "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            escape(&o.device),
            escape(&utc(o.commissioned_at)),
            escape(&rotated),
            o.days
        );
    }
    h.push_str("</table>");
    if r.overdue.len() > OVERDUE_ROWS {
        let _ = write!(
            h,
            "<p class=\"note\">The first {OVERDUE_ROWS} by system title; report.json lists all {}.</p>",
            r.overdue.len()
        );
    }
}

fn campaigns(h: &mut String, r: &ComplianceReport) {
    h.push_str("<h2>Campaigns</h2>");
    if r.campaigns.is_empty() {
        h.push_str("<p class=\"note\">No campaign has been started.</p>");
        return;
    }
    h.push_str(
        "<table><tr><th>id</th><th>reason</th><th>started (UTC)</th><th>done</th>\
         <th>completion</th><th></th></tr>",
    );
    for c in &r.campaigns {
        let _ = write!(
            h,
            "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{} / {}</td>\
             <td>{}</td><td class=\"{}\">{}</td></tr>",
            escape(&c.id),
            escape(&c.reason),
            escape(&utc(c.started_at)),
            c.done,
            c.total,
            completion_bar(c.done, c.total),
            if c.complete { "ok" } else { "warn" },
            if c.complete {
                "complete"
            } else {
                "in progress"
            },
        );
    }
    h.push_str("</table>");
}

fn events(h: &mut String, r: &ComplianceReport) {
    h.push_str(
        "<h2>Refusals, failures and corruption</h2><p class=\"sub\">From the audit \
         table's verified rows, per UTC day: access refused, authentication failed, \
         replay rejected, corruption detected, and any other action refused or failed.</p>",
    );
    if matches!(r.audit, AuditVerdict::NotChecked) {
        h.push_str("<p class=\"note\">Not counted: no audit key was given.</p>");
        return;
    }
    let e = &r.events;
    if e.per_day.is_empty() {
        let _ = write!(h, "<p class=\"note\">None in {} audit events.</p>", e.read);
        return;
    }
    let shown = e
        .per_day
        .get(e.per_day.len().saturating_sub(CHART_DAYS)..)
        .unwrap_or_default();
    let labels: Vec<String> = shown.iter().map(|d| d.day.clone()).collect();
    let col = |f: fn(&crate::EventCounts) -> u64| shown.iter().map(|d| f(&d.counts)).collect();
    let series = [
        Series {
            label: "access refused",
            class: "refused",
            values: col(|c| c.access_refused),
        },
        Series {
            label: "authentication failed",
            class: "auth",
            values: col(|c| c.authentication_failed),
        },
        Series {
            label: "replay rejected",
            class: "replay",
            values: col(|c| c.replay_rejected),
        },
        Series {
            label: "corruption detected",
            class: "corrupt",
            values: col(|c| c.corruption_detected),
        },
        Series {
            label: "other refused/failed",
            class: "other",
            values: col(|c| c.other_refused_or_failed),
        },
    ];
    h.push_str(&stacked_bars(
        "Refusals, failures and corruption per day",
        &labels,
        &series,
        None,
    ));
    if shown.len() < e.per_day.len() {
        let _ = write!(
            h,
            "<p class=\"note\">The chart shows the latest {CHART_DAYS} days with events; the table lists all.</p>"
        );
    }
    h.push_str(
        "<table><tr><th>day (UTC)</th><th>access refused</th><th>authentication failed</th>\
         <th>replay rejected</th><th>corruption detected</th><th>other</th></tr>",
    );
    let row = |h: &mut String, day: &str, c: &crate::EventCounts| {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(day),
            c.access_refused,
            c.authentication_failed,
            c.replay_rejected,
            c.corruption_detected,
            c.other_refused_or_failed
        );
    };
    for d in &e.per_day {
        row(h, &d.day, &d.counts);
    }
    row(h, "total", &e.totals);
    h.push_str("</table>");
}

fn audit(h: &mut String, r: &ComplianceReport) {
    h.push_str("<h2>Audit chain</h2>");
    match &r.audit {
        AuditVerdict::NotChecked => h.push_str(
            "<p class=\"warn\">Not checked: no audit key was given \
             (<code>--audit-key-file</code>).</p>",
        ),
        AuditVerdict::Verified { count, chain_id } => {
            let _ = write!(
                h,
                "<p class=\"ok\">Verified: all {count} rows chain under the audit key \
                 (chain id <code>{}</code>). Rows cut from the end show only against a \
                 count kept elsewhere.</p>",
                escape(chain_id.as_deref().unwrap_or("none: the table is empty"))
            );
        }
        AuditVerdict::Broken { seq, reason } => {
            let _ = write!(
                h,
                "<p class=\"bad\">Broken at row {seq}: {}. The {seq} rows before it verified; \
                 the figures above count only those.</p>",
                escape(reason)
            );
        }
    }
}

fn keks(h: &mut String, r: &ComplianceReport) {
    h.push_str(
        "<h2>KEK check values in use</h2><p class=\"sub\">From the audit events that \
         name a KEK (first and last seen) and from the key records packaged under it.</p>",
    );
    if r.keks.is_empty() {
        h.push_str("<p class=\"note\">None seen.</p>");
        return;
    }
    h.push_str(
        "<table><tr><th>check value</th><th>audit events</th><th>first seen (UTC)</th>\
         <th>last seen (UTC)</th><th>active records</th><th>pending</th><th>previous</th></tr>",
    );
    let when = |t: Option<u64>| t.map_or_else(|| "\u{2013}".to_owned(), utc);
    for k in &r.keks {
        let _ = write!(
            h,
            "<tr><td class=\"mono\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&k.kek),
            k.audit_events,
            escape(&when(k.first_seen)),
            escape(&when(k.last_seen)),
            k.active_records,
            k.pending_records,
            k.previous_records
        );
    }
    h.push_str("</table>");
}
