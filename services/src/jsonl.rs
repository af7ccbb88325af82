//! A tamper-evident JSON-lines audit log (R-20).
//!
//! [`JsonLinesSink`] writes one line per event, each sealed into an
//! [`AuditChain`], and flushes after each line:
//!
//! ```text
//! {"seq":0,"chain":"…32 hex digits…","action":"packaged","outcome":"success","time":1700000000,"device":"4d4d4d0000000007","client":"management","role":"authentication","generation":1,"kek":"a1b2c3","counter":null,"mac":"…24 hex digits…"}
//! ```
//!
//! An event with context (audit v2) has, after `counter`, the keys of the
//! context fields it sets, in this order and only those:
//!
//! ```text
//! …,"counter":null,"principal":"operator:alice","node":"s1sp-a","request":"…32 hex digits…","campaign":"cmp-7","reason":"compromise-campaign","mac":"…"}
//! ```
//!
//! `principal` is `kind:name` ([`Principal`]), `request` hex, `reason` a
//! [`Reason::as_str`] name; names are JSON strings (`"` and `\` escaped).
//! A line without these keys is an event without context, as every line
//! written before they existed is: such logs verify unchanged, and a log
//! may hold both kinds.
//!
//! The first record (sequence number 0) carries the log's chain id
//! ([`ChainId`]), drawn at random when the log starts and MACed into every
//! record: no later record has the key `chain`. Every other key is always
//! present, in this order; an absent field is `null`;
//! names are those of [`AuditAction::as_str`], [`Outcome::as_str`],
//! [`Client::name`] and [`KeyRole::name`]; octets are lower-case hex; `time`
//! is seconds since the Unix epoch (UTC). Nothing in a line depends on a key
//! except the MAC, and nothing in an event can hold key bytes, plaintext or
//! ciphertext.
//!
//! [`verify`] reads a log back and reports the first record that is
//! malformed, out of sequence (removed, reordered or inserted) or whose MAC
//! does not verify (altered or forged). It reads exactly the format the sink
//! writes, byte for byte: a log reformatted by another tool does not verify.
//! Records removed from the end are visible only against a count kept
//! elsewhere: [`verify_with_head`].
//!
//! A crash while a line is written can leave a partial last line. Nothing is
//! chained after it: [`JsonLinesSink::append`] refuses a file longer than its
//! verification. [`JsonLinesSink::recover`] cuts the partial line off and
//! skips its sequence number, which a reader holding the partial line may
//! have seen, so no sequence number ever names two records; its first record
//! says so ([`AuditAction::LogRecovered`]), and only such a record may follow
//! a gap, of exactly one.

use core::fmt;
use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};

use dlms_sec::audit::{
    AuditAction, AuditChain, AuditContext, AuditEvent, AuditSink, CampaignId, ChainId,
    FailStopChain, LinkError, MAC_LEN, NodeName, Outcome, Principal, Reason, RequestId, Timestamp,
};
use dlms_sec::error::Result;
use dlms_sec::key::package::KeyCheckValue;
use dlms_sec::key::{AuditKey, KeyRole};
use dlms_sec::types::Client;
use dlms_sec::wire::{InvocationCounter, SystemTitle};
use rand_core::TryCryptoRng;
use serde::{Deserialize, Serialize};

/// Longest line the verifier reads; the sink's lines are under 700 octets.
const MAX_LINE: u64 = 1024;

/// An [`AuditSink`] writing chained JSON lines to `W` (a file opened for
/// appending). [`Self::new`] starts a log in an empty writer only;
/// [`Self::append`] continues a log from its [`verify`].
///
/// After a write or flush fails, the sink refuses every later record with
/// [`Error::Audit`](dlms_sec::Error::Audit): the log may end in a partial
/// line, and nothing should be chained after it until an operator has
/// looked.
pub struct JsonLinesSink<W: Write> {
    writer: W,
    chain: FailStopChain,
}

impl<W: Write> fmt::Debug for JsonLinesSink<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("next_seq", &self.chain.chain().next_seq())
            .field("poisoned", &self.chain.is_stopped())
            .finish_non_exhaustive()
    }
}

/// Why a sink was not opened.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpenError {
    /// The random generator failed to give a chain id.
    Rng,
    /// The verified log holds no record, so no chain to continue: start it
    /// with [`JsonLinesSink::new`].
    NoChain,
    /// The writer already holds a log: continue it with
    /// [`JsonLinesSink::append`] from its verification.
    NotEmpty,
    /// The writer's end is not where its verification ended: the file
    /// changed since, or ends in a partial line (see
    /// [`JsonLinesSink::recover`]).
    NotAtVerifiedEnd {
        /// Octets the verification covered.
        verified: u64,
        /// Octets the writer holds.
        found: u64,
    },
    /// The log does not verify before its last line: nothing is recovered.
    Broken(ChainBreak),
    /// The writer could not be examined.
    Io(io::ErrorKind),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rng => f.write_str("random number generator failed"),
            Self::NoChain => f.write_str("the log holds no chain to continue"),
            Self::NotEmpty => f.write_str("the writer already holds a log"),
            Self::NotAtVerifiedEnd { verified, found } => write!(
                f,
                "the writer holds {found} octets where its verification covered {verified}"
            ),
            Self::Broken(brk) => write!(f, "the log does not verify: {brk}"),
            Self::Io(kind) => write!(f, "the writer could not be examined: {kind}"),
        }
    }
}

impl core::error::Error for OpenError {}

impl<W: Write + Seek> JsonLinesSink<W> {
    /// Starts a new log in `writer`, which must be empty (a file opened for
    /// appending is checked at its end), under a fresh chain id from `rng`;
    /// its first record gets sequence number 0 and carries the id.
    ///
    /// # Errors
    /// [`OpenError::NotEmpty`] when the writer already holds something (an
    /// existing log is continued with [`Self::append`] only);
    /// [`OpenError::Io`] when its end cannot be found; [`OpenError::Rng`]
    /// when the generator fails.
    pub fn new<R: TryCryptoRng + ?Sized>(
        mut writer: W,
        key: &AuditKey,
        rng: &mut R,
    ) -> Result<Self, OpenError> {
        let end = writer
            .seek(SeekFrom::End(0))
            .map_err(|e| OpenError::Io(e.kind()))?;
        if end != 0 {
            return Err(OpenError::NotEmpty);
        }
        let id = ChainId::random(rng).map_err(|_| OpenError::Rng)?;
        Ok(Self::resume(writer, AuditChain::new(key, id)))
    }
}

impl<W: Write + Seek> JsonLinesSink<W> {
    /// Appends to the log that `verified` describes: take it from
    /// [`verify`] of the whole existing log.
    ///
    /// # Errors
    /// [`OpenError::NoChain`] when the log holds no record;
    /// [`OpenError::NotAtVerifiedEnd`] when the writer's end is not where
    /// the verification ended (a partial last line: [`Self::recover`]);
    /// [`OpenError::Io`] when its end cannot be found.
    pub fn append(
        mut writer: W,
        key: &AuditKey,
        verified: &VerifiedLog,
    ) -> Result<Self, OpenError> {
        let id = verified.chain.ok_or(OpenError::NoChain)?;
        let found = writer
            .seek(SeekFrom::End(0))
            .map_err(|e| OpenError::Io(e.kind()))?;
        if found != verified.len {
            return Err(OpenError::NotAtVerifiedEnd {
                verified: verified.len,
                found,
            });
        }
        let chain = AuditChain::resume(key, id, verified.records, verified.last_mac);
        Ok(Self::resume(writer, chain))
    }
}

impl JsonLinesSink<File> {
    /// Reopens the log in `file` for appending after a crash.
    ///
    /// A log that ends in a complete line is appended to as
    /// [`Self::append`] would. A log whose last line is partial (no final
    /// newline, shorter than any line the sink writes) has that line cut
    /// off; the sequence number it would have carried is skipped, and a
    /// [`AuditAction::LogRecovered`] record stamped `now` is written at the
    /// next one before this returns. Returns the sink and the number of
    /// octets cut off.
    ///
    /// # Errors
    /// [`OpenError::Broken`] when the log does not verify up to its last
    /// line, or the partial line is longer than any line of the sink;
    /// [`OpenError::NoChain`] when no complete record precedes the partial
    /// line (start a new log); [`OpenError::Io`] when the file cannot be
    /// read, cut or written (the recovery record included). Nothing is cut
    /// off unless the log verifies.
    pub fn recover(
        mut file: File,
        key: &AuditKey,
        now: Timestamp,
    ) -> Result<(Self, u64), OpenError> {
        let io = |e: io::Error| OpenError::Io(e.kind());
        let end = file.seek(SeekFrom::End(0)).map_err(io)?;
        let tail_len = end.min(MAX_LINE);
        file.seek(SeekFrom::Start(end.saturating_sub(tail_len)))
            .map_err(io)?;
        let mut tail = Vec::new();
        (&mut file)
            .take(tail_len)
            .read_to_end(&mut tail)
            .map_err(io)?;
        let complete = match tail.iter().rposition(|&b| b == b'\n') {
            Some(at) => end
                .saturating_sub(tail_len)
                .saturating_add(u64::try_from(at).map_err(|_| OpenError::Io(io::ErrorKind::Other))?)
                .saturating_add(1),
            None if end < MAX_LINE => 0,
            None => {
                return Err(OpenError::Broken(ChainBreak {
                    line: 1,
                    kind: BreakKind::Malformed,
                }));
            }
        };
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let verified = verify(io::BufReader::new((&mut file).take(complete)), key)
            .map_err(OpenError::Broken)?;
        let id = verified.chain.ok_or(OpenError::NoChain)?;
        if complete == end {
            return Self::append(file, key, &verified).map(|sink| (sink, 0));
        }
        let skip = verified.records.saturating_add(1);
        file.set_len(complete).map_err(io)?;
        file.seek(SeekFrom::End(0)).map_err(io)?;
        let mut sink = Self::resume(file, AuditChain::resume(key, id, skip, verified.last_mac));
        sink.record(&AuditEvent::new(
            AuditAction::LogRecovered,
            Outcome::Success,
            now,
        ))
        .map_err(|_| OpenError::Io(io::ErrorKind::WriteZero))?;
        Ok((sink, end.saturating_sub(complete)))
    }
}

impl<W: Write> JsonLinesSink<W> {
    const fn resume(writer: W, chain: AuditChain) -> Self {
        Self {
            writer,
            chain: FailStopChain::new(chain),
        }
    }

    /// The log's chain id.
    #[must_use]
    pub const fn chain_id(&self) -> ChainId {
        self.chain.chain().chain_id()
    }

    /// The sequence number of the next record (the log's record count).
    #[must_use]
    pub const fn next_seq(&self) -> u64 {
        self.chain.chain().next_seq()
    }

    /// The MAC of the last record written (zeros before the first).
    #[must_use]
    pub const fn last_mac(&self) -> [u8; MAC_LEN] {
        self.chain.chain().last_mac()
    }

    /// The writer.
    #[must_use]
    pub const fn get_ref(&self) -> &W {
        &self.writer
    }

    /// Gives the writer back.
    #[must_use]
    pub fn into_inner(self) -> W {
        self.writer
    }
}

impl<W: Write> AuditSink for JsonLinesSink<W> {
    fn record(&mut self, event: &AuditEvent) -> Result<()> {
        let writer = &mut self.writer;
        // Whichever step fails, the chain stops (see `FailStopChain`).
        self.chain.append(event, |link, chain_id| {
            let genesis = (link.seq == 0).then_some(chain_id);
            let line = format_line(link.seq, genesis.as_ref(), event, &link.mac)
                .ok_or(io::ErrorKind::InvalidData)?;
            writer
                .write_all(line.as_bytes())
                .and_then(|()| writer.flush())
        })
    }
}

/// One line of the log. serde_json writes the fields in declaration order,
/// which is the line's key order. Names are borrowed from the line, so a name
/// written with escapes does not parse; hex stays text until [`unhex`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    chain: Option<String>,
    action: &'a str,
    outcome: &'a str,
    time: u64,
    device: Option<String>,
    client: Option<&'a str>,
    role: Option<&'a str>,
    generation: Option<u32>,
    kek: Option<String>,
    counter: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    mac: String,
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|b| [b >> 4, b & 0x0F])
        .filter_map(|d| char::from_digit(u32::from(d), 16))
        .collect()
}

/// One record as a line, newline included; `chain` for the first record
/// only.
fn format_line(
    seq: u64,
    chain: Option<&ChainId>,
    e: &AuditEvent,
    mac: &[u8; MAC_LEN],
) -> Option<String> {
    let line = Line {
        seq,
        chain: chain.map(|c| hex(c.as_bytes())),
        action: e.action.as_str(),
        outcome: e.outcome.as_str(),
        time: e.time.0,
        device: e.device.map(|d| hex(d.as_bytes())),
        client: e.client.map(Client::name),
        role: e.role.map(KeyRole::name),
        generation: e.generation,
        kek: e.kek.map(|k| hex(&k.0)),
        counter: e.invocation_counter.map(InvocationCounter::value),
        principal: e.context.principal.map(|p| p.to_string()),
        node: e.context.node.map(|n| n.as_str().to_owned()),
        request: e.context.request.map(|r| hex(&r.0)),
        campaign: e.context.campaign.map(|c| c.as_str().to_owned()),
        reason: e.context.reason.map(Reason::as_str),
        mac: hex(mac),
    };
    let mut text = serde_json::to_string(&line).ok()?;
    text.push('\n');
    Some(text)
}

/// Exactly `2 * N` lower-case hex digits.
fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => c.checked_sub(b'0'),
        b'a'..=b'f' => c.checked_sub(b'a' - 10),
        _ => None,
    };
    let (pairs, rest) = s.as_bytes().as_chunks::<2>();
    if !rest.is_empty() || pairs.len() != N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, &[hi, lo]) in out.iter_mut().zip(pairs) {
        *o = (digit(hi)? << 4) | digit(lo)?;
    }
    Some(out)
}

/// One parsed line: sequence number, chain id (the first record's only),
/// event, MAC.
type Record = (u64, Option<ChainId>, AuditEvent, [u8; MAC_LEN]);

/// Parses one line (newline included) of the sink's format.
fn parse_line(text: &str) -> Option<Record> {
    let line: Line<'_> = serde_json::from_str(text).ok()?;
    let mut event = AuditEvent::new(
        AuditAction::from_name(line.action)?,
        Outcome::from_name(line.outcome)?,
        Timestamp(line.time),
    );
    event.device = match &line.device {
        Some(d) => Some(SystemTitle::new(unhex(d)?)),
        None => None,
    };
    event.client = match line.client {
        Some(c) => Some(Client::from_name(c)?),
        None => None,
    };
    event.role = match line.role {
        Some(r) => Some(KeyRole::from_name(r)?),
        None => None,
    };
    event.generation = line.generation;
    event.kek = match &line.kek {
        Some(k) => Some(KeyCheckValue(unhex(k)?)),
        None => None,
    };
    event.invocation_counter = line.counter.map(InvocationCounter::new);
    event.context = AuditContext {
        principal: match &line.principal {
            Some(p) => Some(Principal::parse(p)?),
            None => None,
        },
        node: match &line.node {
            Some(n) => Some(NodeName::new(n).ok()?),
            None => None,
        },
        request: match &line.request {
            Some(r) => Some(RequestId(unhex(r)?)),
            None => None,
        },
        campaign: match &line.campaign {
            Some(c) => Some(CampaignId::new(c).ok()?),
            None => None,
        },
        reason: match line.reason {
            Some(r) => Some(Reason::from_name(r)?),
            None => None,
        },
    };
    let mac = unhex(&line.mac)?;
    let chain = match &line.chain {
        Some(c) => Some(ChainId(unhex(c)?)),
        None => None,
    };
    // The first record, and only it, carries the chain id.
    if chain.is_some() != (line.seq == 0) {
        return None;
    }
    // One text per record: what does not re-emit byte for byte is not ours.
    (format_line(line.seq, chain.as_ref(), &event, &mac)? == text)
        .then_some((line.seq, chain, event, mac))
}

/// A log that verified: its chain id, how many records and the last MAC,
/// which is what [`JsonLinesSink::append`] needs to continue it. Keep `records` (or
/// `last_mac`) somewhere the log's writer cannot reach to detect removal of
/// records from the end ([`verify_with_head`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub struct VerifiedLog {
    /// The next record's sequence number: the number of records, plus one
    /// for each sequence number a recovery skipped.
    pub records: u64,
    /// The last record's MAC (zeros for an empty log).
    pub last_mac: [u8; MAC_LEN],
    /// The chain id the first record carries (none for an empty log).
    pub chain: Option<ChainId>,
    /// Octets the records take: where the next record goes.
    pub len: u64,
}

/// The first place a log stops verifying.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChainBreak {
    /// The line, counted from 1. In an intact log line `n` holds the record
    /// with sequence number `n - 1`.
    pub line: u64,
    /// What is wrong there.
    pub kind: BreakKind,
}

/// What is wrong at a [`ChainBreak`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakKind {
    /// Not a record in the sink's format (a damaged, partial or
    /// reformatted line, or one longer than any the sink writes).
    Malformed,
    /// The record is well-formed, in sequence, and its MAC does not verify:
    /// it was altered, or forged without the audit key.
    BadMac,
    /// The record carries another sequence number than its position
    /// needs: records before it were removed, or records were reordered or
    /// inserted.
    SequenceGap {
        /// The sequence number this line should carry.
        expected: u64,
        /// The one it carries.
        found: u64,
    },
    /// The log ends before the expected number of records: records were
    /// removed from the end. `line` is the first missing line.
    Truncated {
        /// Records expected.
        expected: u64,
        /// Records found.
        found: u64,
    },
    /// The log goes on past the expected number of records (the head the
    /// caller holds is older than the log, or records were appended with
    /// the key). `line` is the first record beyond the head.
    Extended {
        /// Records expected.
        expected: u64,
    },
    /// The log could not be read at this line.
    Io(io::ErrorKind),
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "audit log line {}: ", self.line)?;
        match self.kind {
            BreakKind::Malformed => f.write_str("malformed record"),
            BreakKind::BadMac => f.write_str("MAC does not verify (altered or forged record)"),
            BreakKind::SequenceGap { expected, found } => write!(
                f,
                "sequence number {found} where {expected} belongs (removed, reordered or inserted records)"
            ),
            BreakKind::Truncated { expected, found } => write!(
                f,
                "log ends after {found} records, {expected} expected (truncated)"
            ),
            BreakKind::Extended { expected } => {
                write!(f, "log holds more than the {expected} records expected")
            }
            BreakKind::Io(kind) => write!(f, "read error: {kind}"),
        }
    }
}

impl core::error::Error for ChainBreak {}

/// Verifies a whole log written by [`JsonLinesSink`] under `key`.
///
/// # Errors
/// The first line that is malformed, out of sequence or fails its MAC, as a
/// [`ChainBreak`]. Records removed from the end are not detected here:
/// use [`verify_with_head`].
pub fn verify<R: BufRead>(reader: R, key: &AuditKey) -> Result<VerifiedLog, ChainBreak> {
    verify_lines(reader, key, None)
}

/// As [`verify`], and checks that the log holds exactly `expected_records`
/// records (a count the caller keeps where the log's writer cannot reach,
/// for example [`JsonLinesSink::next_seq`] recorded elsewhere).
///
/// # Errors
/// As [`verify`]; and [`BreakKind::Truncated`] when the log ends early,
/// [`BreakKind::Extended`] when it goes on past `expected_records`.
pub fn verify_with_head<R: BufRead>(
    reader: R,
    key: &AuditKey,
    expected_records: u64,
) -> Result<VerifiedLog, ChainBreak> {
    verify_lines(reader, key, Some(expected_records))
}

fn verify_lines<R: BufRead>(
    mut reader: R,
    key: &AuditKey,
    expected: Option<u64>,
) -> Result<VerifiedLog, ChainBreak> {
    let mut chain: Option<AuditChain> = None;
    let next_seq = |c: &Option<AuditChain>| c.as_ref().map_or(0, AuditChain::next_seq);
    let mut buf = Vec::new();
    let mut len: u64 = 0;
    let mut lines: u64 = 0;
    loop {
        let line = lines.saturating_add(1);
        let brk = |kind| ChainBreak { line, kind };
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .map_err(|e| brk(BreakKind::Io(e.kind())))?;
        if n == 0 {
            break;
        }
        if let Some(expected) = expected
            && next_seq(&chain) >= expected
        {
            return Err(brk(BreakKind::Extended { expected }));
        }
        let (seq, id, event, mac) = core::str::from_utf8(&buf)
            .ok()
            .and_then(parse_line)
            .ok_or(brk(BreakKind::Malformed))?;
        let link = match (&mut chain, id) {
            (Some(link), _) => link,
            // The first line starts the chain under the id it carries.
            (None, Some(id)) => chain.insert(AuditChain::new(key, id)),
            (None, None) => {
                return Err(brk(BreakKind::SequenceGap {
                    expected: 0,
                    found: seq,
                }));
            }
        };
        let checked = match link.check(seq, &event, &mac) {
            // A recovery skipped the number of a partial record: one
            // number, and only before the record that says so.
            Err(LinkError::Sequence { expected, found })
                if event.action == AuditAction::LogRecovered
                    && expected.checked_add(1) == Some(found) =>
            {
                let mut skipped = AuditChain::resume(key, link.chain_id(), found, link.last_mac());
                let checked = skipped.check(seq, &event, &mac);
                if checked.is_ok() {
                    *link = skipped;
                }
                checked
            }
            other => other,
        };
        checked.map_err(|e| {
            brk(match e {
                LinkError::Sequence { expected, found } => {
                    BreakKind::SequenceGap { expected, found }
                }
                LinkError::BadMac => BreakKind::BadMac,
            })
        })?;
        len = len.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        lines = line;
    }
    let found = next_seq(&chain);
    match expected {
        Some(expected) if found < expected => Err(ChainBreak {
            line: lines.saturating_add(1),
            kind: BreakKind::Truncated { expected, found },
        }),
        _ => Ok(VerifiedLog {
            records: found,
            last_mac: chain.as_ref().map_or([0; MAC_LEN], AuditChain::last_mac),
            chain: chain.as_ref().map(AuditChain::chain_id),
            len,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlms_sec::error::Error;

    fn event() -> AuditEvent {
        AuditEvent::new(
            AuditAction::Unpacked,
            Outcome::Success,
            Timestamp(1_700_000_000),
        )
        .with_device(SystemTitle::new([0x4D, 0x4D, 0x4D, 0, 0, 0xBC, 0x61, 0x4E]))
        .with_client(Client::ExtendedDataCollection)
        .with_role(KeyRole::GlobalUnicastEncryption)
        .with_generation(7)
        .with_kek(KeyCheckValue([0xA1, 0xB2, 0xC3]))
    }

    #[test]
    fn r20_line_format_is_stable() {
        let line = format_line(3, None, &event(), &[0xAB; MAC_LEN]).unwrap();
        assert_eq!(
            line,
            "{\"seq\":3,\"action\":\"unpacked\",\"outcome\":\"success\",\"time\":1700000000,\
             \"device\":\"4d4d4d0000bc614e\",\"client\":\"extended-data-collection\",\
             \"role\":\"global-unicast-encryption\",\"generation\":7,\"kek\":\"a1b2c3\",\
             \"counter\":null,\"mac\":\"abababababababababababab\"}\n"
        );
        assert_eq!(parse_line(&line), Some((3, None, event(), [0xAB; MAC_LEN])));
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(json["role"], "global-unicast-encryption");
        assert!(line.len() < 300);
    }

    #[test]
    fn r20_parser_rejects_what_the_sink_never_writes() {
        let line = format_line(3, None, &event(), &[0xAB; MAC_LEN]).unwrap();
        for bad in [
            line.replace("\"seq\":3", "\"seq\":03"),
            line.replace("\"seq\":3", "\"seq\": 3"),
            line.replace("4d4d4d", "4D4D4D"),
            line.replace("a1b2c3", "a1b2"),
            line.replace("\"generation\":7", "\"generation\":4294967296"),
            line.replace("\"time\":1700000000", "\"time\":99999999999999999999"),
            line.replace("\"counter\":null", "\"counter\":\"1\""),
            line.replace("extended-data-collection", "nobody"),
            String::from(line.trim_end()),
            format!("{line}\n"),
        ] {
            assert_eq!(parse_line(&bad), None, "{bad}");
        }
    }

    #[test]
    fn r20_parser_rejects_json_that_reads_as_a_record_but_is_not_one() {
        let line = format_line(3, None, &event(), &[0xAB; MAC_LEN]).unwrap();
        for bad in [
            // A key left out reads as `null` to serde, and is still refused.
            line.replace("\"counter\":null,", ""),
            line.replace("\"seq\":3,", "\"seq\":3,\"seq\":3,"),
            line.replace("\"seq\":3,", "\"seq\":3,\"note\":null,"),
            line.replace(
                "\"seq\":3,\"action\":\"unpacked\",",
                "\"action\":\"unpacked\",\"seq\":3,",
            ),
            line.replace("unpacked", "unp\\u0061cked"),
            line.replace("\"generation\":7", "\"generation\":7.0"),
            line.replace("\"counter\":null", "\"counter\":-1"),
        ] {
            assert_ne!(bad, line);
            assert_eq!(parse_line(&bad), None, "{bad}");
        }
    }

    #[test]
    fn r20_unhex() {
        assert_eq!(unhex::<2>("0aff"), Some([0x0A, 0xFF]));
        assert_eq!(unhex::<2>("0aFF"), None);
        assert_eq!(unhex::<2>("0af"), None);
        assert_eq!(unhex::<2>("0aff00"), None);
        assert_eq!(unhex::<1>("g0"), None);
    }

    struct Failing;
    impl Seek for Failing {
        fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
            Ok(0)
        }
    }
    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn r20_write_failure_fails_the_record_and_poisons_the_sink() {
        let key = AuditKey::from_bytes([1; 16]);
        let mut sink = JsonLinesSink::new(Failing, &key, &mut getrandom::SysRng).unwrap();
        assert_eq!(sink.record(&event()), Err(Error::Audit));
        assert_eq!(sink.record(&event()), Err(Error::Audit));
        assert!(std::format!("{sink:?}").contains("poisoned: true"));
    }
}
