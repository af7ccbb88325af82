//! Audit records as RFC 5424 syslog messages, to a file or a socket (R-20).
//!
//! [`SyslogSink`] seals each event into an [`AuditChain`] and writes one
//! message per event, flushed before [`AuditSink::record`] returns:
//!
//! ```text
//! <109>1 2025-12-06T05:46:40Z s1sp-a.example dlms-sec - generated [audit@32473 seq="0" chain="…32 hex digits…" action="generated" outcome="success" time="1765000000" device="4d4d4d0000bc614e" client="management" role="authentication" generation="1" principal="operator:alice" reason="commissioning" mac="…24 hex digits…"]
//! ```
//!
//! | field | value |
//! |---|---|
//! | PRI | facility 13 (log audit) × 8 + severity: 5 (notice) for a success, 4 (warning) for a failure or a refusal |
//! | VERSION | 1 |
//! | TIMESTAMP | the event's time, RFC 3339 in UTC (`Z`), whole seconds; NILVALUE past year 9999 |
//! | HOSTNAME | the host name given to the sink, else NILVALUE (`-`) |
//! | APP-NAME | `dlms-sec` |
//! | PROCID | NILVALUE |
//! | MSGID | the action ([`AuditAction::as_str`]) |
//! | STRUCTURED-DATA | one element, SD-ID `audit@32473` (the documentation enterprise number of RFC 5612) |
//! | MSG | none |
//!
//! The element's parameters, in this order, each only when the event has
//! the field: `seq`, `chain` (the chain id, on every message, so a receiver
//! that joins late still knows the chain), `action`, `outcome`, `time`
//! (seconds since the Unix epoch), `device`, `client`, `role`,
//! `generation`, `kek`, `counter`, `principal` (`kind:name`), `node`,
//! `request`, `campaign`, `reason`, `mac`. Names and hex are as in the
//! JSON-lines log ([`crate::jsonl`]); `"`, `\` and `]` in a value are
//! escaped with `\` (RFC 5424 §6.3.3).
//!
//! A receiver holding the audit key checks the chain: [`parse_message`]
//! gives back the sequence number, chain id, event and MAC of a message,
//! and [`AuditChain::check`] each in turn. [`format_message`] writes a
//! record read from another log (the database, a JSON-lines file) in the
//! same form, to forward that log's chain.
//!
//! Framing ([`Framing`]): one message per line for a file; octet counting
//! (RFC 6587 §3.4.1, `LEN SP MSG`) for TCP; one message per datagram for
//! UDP ([`UdpWriter`]).

use core::fmt::{self, Write as _};
use std::io::{self, Write};
use std::net::UdpSocket;

use dlms_sec::audit::{
    AuditAction, AuditChain, AuditEvent, AuditSink, ChainId, FailStopChain, MAC_LEN, Outcome,
};
use dlms_sec::audit::{
    AuditContext, CampaignId, NodeName, Principal, Reason, RequestId, Timestamp,
};
use dlms_sec::error::{Error, Result};
use dlms_sec::key::package::KeyCheckValue;
use dlms_sec::key::{AuditKey, KeyRole};
use dlms_sec::types::Client;
use dlms_sec::wire::{InvocationCounter, SystemTitle};
use rand_core::TryCryptoRng;

/// The private enterprise number of the SD-ID: 32473, reserved for
/// documentation (RFC 5612).
pub const ENTERPRISE_NUMBER: u32 = 32473;

/// The SD-ID of the audit element.
pub const SD_ID: &str = "audit@32473";

/// The APP-NAME of every message.
pub const APP_NAME: &str = "dlms-sec";

/// Facility 13, log audit (RFC 5424 Table 1).
const FACILITY_LOG_AUDIT: u8 = 13;

/// Severity of a success: notice.
const SEVERITY_NOTICE: u8 = 5;

/// Severity of a failure or a refusal: warning.
const SEVERITY_WARNING: u8 = 4;

/// The last second of year 9999: RFC 3339's four-digit years end there.
const MAX_TIMESTAMP: u64 = 253_402_300_799;

/// How messages are delimited in the byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Framing {
    /// Each message followed by LF: a file, one message per line.
    Lines,
    /// Each message preceded by its length in octets and a space (RFC 6587
    /// §3.4.1): syslog over TCP.
    OctetCounting,
    /// Each message written alone, with one `write`: one datagram per
    /// message over [`UdpWriter`].
    Datagram,
}

/// A [`Write`] that sends each `write` as one UDP datagram on a connected
/// socket, and fails rather than split a message.
#[derive(Debug)]
pub struct UdpWriter(pub UdpSocket);

impl Write for UdpWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let sent = self.0.send(buf)?;
        if sent == buf.len() {
            Ok(sent)
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "datagram sent in part",
            ))
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An [`AuditSink`] writing one RFC 5424 message per event to `W`, sealed
/// into its own chain.
///
/// After a write fails the sink refuses every later record with
/// [`Error::Audit`]: the receiver has a gap, and nothing should be chained
/// after it unseen.
pub struct SyslogSink<W: Write> {
    writer: W,
    chain: FailStopChain,
    framing: Framing,
    hostname: Option<String>,
}

impl<W: Write> fmt::Debug for SyslogSink<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyslogSink")
            .field("next_seq", &self.chain.chain().next_seq())
            .field("framing", &self.framing)
            .field("hostname", &self.hostname)
            .field("poisoned", &self.chain.is_stopped())
            .finish_non_exhaustive()
    }
}

impl<W: Write> SyslogSink<W> {
    /// A sink starting a new chain, under a fresh chain id from `rng`.
    /// `hostname` fills the HOSTNAME field (NILVALUE when `None`).
    ///
    /// # Errors
    /// [`Error::Rng`] when the generator fails; [`Error::Misuse`] for a
    /// host name that is empty, longer than 255 octets, not printable
    /// ASCII without spaces, or `-` (the NILVALUE).
    pub fn new<R: TryCryptoRng + ?Sized>(
        writer: W,
        key: &AuditKey,
        rng: &mut R,
        framing: Framing,
        hostname: Option<&str>,
    ) -> Result<Self> {
        let id = ChainId::random(rng)?;
        Self::resume(writer, AuditChain::new(key, id), framing, hostname)
    }

    /// A sink continuing `chain` (from a verification of what the receiver
    /// holds).
    ///
    /// # Errors
    /// [`Error::Misuse`] for a host name [`Self::new`] refuses.
    pub fn resume(
        writer: W,
        chain: AuditChain,
        framing: Framing,
        hostname: Option<&str>,
    ) -> Result<Self> {
        if let Some(h) = hostname
            && (!is_header_field(h, 255) || h == "-")
        {
            return Err(Error::Misuse(
                "a syslog HOSTNAME is 1 to 255 printable ASCII characters without spaces",
            ));
        }
        Ok(Self {
            writer,
            chain: FailStopChain::new(chain),
            framing,
            hostname: hostname.map(str::to_owned),
        })
    }

    /// The chain's id.
    #[must_use]
    pub const fn chain_id(&self) -> ChainId {
        self.chain.chain().chain_id()
    }

    /// The sequence number of the next message.
    #[must_use]
    pub const fn next_seq(&self) -> u64 {
        self.chain.chain().next_seq()
    }

    /// Gives the writer back.
    #[must_use]
    pub fn into_inner(self) -> W {
        self.writer
    }
}

impl<W: Write> AuditSink for SyslogSink<W> {
    fn record(&mut self, event: &AuditEvent) -> Result<()> {
        let (writer, framing, hostname) =
            (&mut self.writer, self.framing, self.hostname.as_deref());
        self.chain.append(event, |link, chain_id| {
            let message = format_message(link.seq, &chain_id, event, &link.mac, hostname);
            let frame = match framing {
                Framing::Lines => format!("{message}\n"),
                Framing::OctetCounting => format!("{} {message}", message.len()),
                Framing::Datagram => message,
            };
            writer
                .write_all(frame.as_bytes())
                .and_then(|()| writer.flush())
        })
    }
}

/// Whether `s` is 1 to `max` printable ASCII characters without spaces
/// (PRINTUSASCII, RFC 5424 §6).
fn is_header_field(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| matches!(b, 33..=126))
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Exactly `2 * N` lower-case hex digits.
fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N.checked_mul(2)? || s.bytes().any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *o = u8::from_str_radix(core::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// RFC 3339 UTC, whole seconds, of seconds since the Unix epoch; `None`
/// past year 9999.
#[must_use]
pub fn rfc3339(time: Timestamp) -> Option<String> {
    let secs = time.0;
    if secs > MAX_TIMESTAMP {
        return None;
    }
    let days = secs.checked_div(86_400)?;
    let rem = secs.checked_rem(86_400)?;
    let (y, m, d) = civil_from_days(days)?;
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem.checked_div(3600)?,
        rem.checked_rem(3600)?.checked_div(60)?,
        rem.checked_rem(60)?
    ))
}

/// The proleptic Gregorian (year, month, day) of a day count from
/// 1970-01-01 (days 0 to 2,932,896: years 1970 to 9999).
#[allow(
    clippy::arithmetic_side_effects,
    reason = "the day count is at most 2,932,896: every step stays far inside u64"
)]
fn civil_from_days(days: u64) -> Option<(u64, u64, u64)> {
    if days > 2_932_896 {
        return None;
    }
    // Days from 0000-03-01, in 400-year eras of 146,097 days.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    Some((y, m, d))
}

/// `value` as a PARAM-VALUE: `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The structured-data parameters of a record, in order.
fn params(
    seq: u64,
    chain: &ChainId,
    e: &AuditEvent,
    mac: &[u8; MAC_LEN],
) -> Vec<(&'static str, String)> {
    let c = &e.context;
    let mut p = vec![
        ("seq", seq.to_string()),
        ("chain", hex(chain.as_bytes())),
        ("action", e.action.as_str().to_owned()),
        ("outcome", e.outcome.as_str().to_owned()),
        ("time", e.time.0.to_string()),
    ];
    let optional = [
        ("device", e.device.map(|d| hex(d.as_bytes()))),
        ("client", e.client.map(|c| Client::name(c).to_owned())),
        ("role", e.role.map(|r| KeyRole::name(r).to_owned())),
        ("generation", e.generation.map(|g| g.to_string())),
        ("kek", e.kek.map(|k| hex(&k.0))),
        (
            "counter",
            e.invocation_counter.map(|n| n.value().to_string()),
        ),
        ("principal", c.principal.map(|p| p.to_string())),
        ("node", c.node.map(|n| n.as_str().to_owned())),
        ("request", c.request.map(|r| hex(&r.0))),
        ("campaign", c.campaign.map(|k| k.as_str().to_owned())),
        ("reason", c.reason.map(|r| r.as_str().to_owned())),
    ];
    p.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    p.push(("mac", hex(mac)));
    p
}

/// One record as an RFC 5424 message (no framing): sequence number `seq`
/// of the chain `chain`, its event and MAC; `hostname` is written as given
/// (NILVALUE when `None`; [`SyslogSink::new`] checks it).
#[must_use]
pub fn format_message(
    seq: u64,
    chain: &ChainId,
    event: &AuditEvent,
    mac: &[u8; MAC_LEN],
    hostname: Option<&str>,
) -> String {
    let severity = match event.outcome {
        Outcome::Success => SEVERITY_NOTICE,
        Outcome::Failure | Outcome::Refused => SEVERITY_WARNING,
    };
    let pri = u16::from(FACILITY_LOG_AUDIT)
        .saturating_mul(8)
        .saturating_add(u16::from(severity));
    let time = rfc3339(event.time).unwrap_or_else(|| "-".to_owned());
    let mut msg = format!(
        "<{pri}>1 {time} {} {APP_NAME} - {} [{SD_ID}",
        hostname.unwrap_or("-"),
        event.action.as_str(),
    );
    for (name, value) in params(seq, chain, event, mac) {
        let _ = write!(msg, " {name}=\"{}\"", escape(&value));
    }
    msg.push(']');
    msg
}

/// A record read back from a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Received {
    /// Its sequence number.
    pub seq: u64,
    /// The chain it belongs to.
    pub chain: ChainId,
    /// The event.
    pub event: AuditEvent,
    /// Its chain MAC.
    pub mac: [u8; MAC_LEN],
}

/// Reads a message (no framing) written by [`format_message`] back; `None`
/// for anything else: another layout, unknown names, a field out of range,
/// or text that [`format_message`] would not write byte for byte. Check
/// the result with [`AuditChain::check`].
#[must_use]
pub fn parse_message(msg: &str) -> Option<Received> {
    // Header: five space-separated fields after "<PRI>1 ".
    let mut header = msg.splitn(7, ' ');
    let _pri_version = header.next()?;
    let _time = header.next()?;
    let hostname = header.next()?;
    let _app = header.next()?;
    let _procid = header.next()?;
    let _msgid = header.next()?;
    let sd = header.next()?;
    let body = sd.strip_prefix('[')?.strip_prefix(SD_ID)?;
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut rest = body;
    loop {
        if rest == "]" {
            break;
        }
        rest = rest.strip_prefix(' ')?;
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => value.push(chars.next()?.1),
                '"' => break i,
                _ => value.push(c),
            }
        };
        fields.push((name.to_owned(), value));
        rest = after.get(end.checked_add(1)?..)?;
    }
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let seq = get("seq")?.parse().ok()?;
    let chain = ChainId(unhex(get("chain")?)?);
    let mut event = AuditEvent::new(
        AuditAction::from_name(get("action")?)?,
        Outcome::from_name(get("outcome")?)?,
        Timestamp(get("time")?.parse().ok()?),
    );
    event.device = get("device")
        .map(|d| unhex(d).map(SystemTitle::new))
        .map_or(Some(None), |d| d.map(Some))?;
    event.client = get("client")
        .map(Client::from_name)
        .map_or(Some(None), |c| c.map(Some))?;
    event.role = get("role")
        .map(KeyRole::from_name)
        .map_or(Some(None), |r| r.map(Some))?;
    event.generation = get("generation")
        .map(|g| g.parse().ok())
        .map_or(Some(None), |g| g.map(Some))?;
    event.kek = get("kek")
        .map(|k| unhex(k).map(KeyCheckValue))
        .map_or(Some(None), |k| k.map(Some))?;
    event.invocation_counter = get("counter")
        .map(|n| n.parse().ok().map(InvocationCounter::new))
        .map_or(Some(None), |n| n.map(Some))?;
    event.context = AuditContext {
        principal: get("principal")
            .map(Principal::parse)
            .map_or(Some(None), |p| p.map(Some))?,
        node: get("node")
            .map(|n| NodeName::new(n).ok())
            .map_or(Some(None), |n| n.map(Some))?,
        request: get("request")
            .map(|r| unhex(r).map(RequestId))
            .map_or(Some(None), |r| r.map(Some))?,
        campaign: get("campaign")
            .map(|c| CampaignId::new(c).ok())
            .map_or(Some(None), |c| c.map(Some))?,
        reason: get("reason")
            .map(Reason::from_name)
            .map_or(Some(None), |r| r.map(Some))?,
    };
    let mac = unhex(get("mac")?)?;
    let hostname = (hostname != "-").then_some(hostname);
    // One text per record: what does not re-emit byte for byte is not ours.
    (format_message(seq, &chain, &event, &mac, hostname) == msg).then_some(Received {
        seq,
        chain,
        event,
        mac,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r20_rfc3339_dates() {
        let at = |s| rfc3339(Timestamp(s));
        assert_eq!(at(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(at(951_782_400).as_deref(), Some("2000-02-29T00:00:00Z"));
        assert_eq!(at(1_700_000_000).as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(at(4_107_542_399).as_deref(), Some("2100-02-28T23:59:59Z"));
        assert_eq!(at(4_107_542_400).as_deref(), Some("2100-03-01T00:00:00Z"));
        assert_eq!(at(MAX_TIMESTAMP).as_deref(), Some("9999-12-31T23:59:59Z"));
        assert_eq!(at(MAX_TIMESTAMP + 1), None);
        assert_eq!(at(u64::MAX), None);
    }

    #[test]
    fn r20_param_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c]d[e"#), r#"a\"b\\c\]d[e"#);
    }

    #[test]
    fn r20_hex() {
        assert_eq!(unhex::<2>("0aff"), Some([0x0A, 0xFF]));
        assert_eq!(unhex::<2>("0aFF"), None);
        assert_eq!(unhex::<2>("+aff"), None);
        assert_eq!(unhex::<2>("0af"), None);
        assert_eq!(hex(&[0x0A, 0xFF]), "0aff");
    }
}
