//! The audit plug point and the tamper-evident JSON-lines log: every
//! kind of tampering is reported at the first bad line with the right kind.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "test code: a panic is a failed test"
)]

use std::io::{self, BufRead, Cursor, Read};

use dlms_sec::audit::{
    AuditAction, AuditEvent, AuditSink, ChainId, MemoryAuditLog, NoAudit, Outcome, Timestamp,
};
use dlms_sec::error::Error;
use dlms_sec::key::package::{KeyCheckValue, RecordId};
use dlms_sec::key::{AuditKey, KeyRole};
use dlms_sec::types::Client;
use dlms_sec::{InvocationCounter, SystemTitle};
use dlms_sec_services::jsonl::{
    BreakKind, ChainBreak, JsonLinesSink, OpenError, VerifiedLog, verify, verify_with_head,
};

const KEY: [u8; 16] = [0x5A; 16];
const N: usize = 5;

fn key() -> AuditKey {
    AuditKey::from_bytes(KEY)
}

/// Five events with every field present somewhere and absent somewhere.
fn events() -> [AuditEvent; N] {
    let meter = SystemTitle::new([0x4D, 0x4D, 0x4D, 0, 0, 0xBC, 0x61, 0x4E]);
    let id = RecordId {
        device: meter,
        client: Some(Client::Management),
        role: KeyRole::Authentication,
        generation: 3,
    };
    let kcv = KeyCheckValue([0xA1, 0xB2, 0xC3]);
    let t = |s: u64| Timestamp(1_700_000_000 + s);
    [
        AuditEvent::new(AuditAction::Generated, Outcome::Success, t(0))
            .with_record(id)
            .with_kek(kcv),
        AuditEvent::new(AuditAction::Packaged, Outcome::Success, t(1))
            .with_record(id)
            .with_kek(kcv),
        AuditEvent::new(AuditAction::ReplayRejected, Outcome::Refused, t(2))
            .with_device(meter)
            .with_client(Client::Management)
            .with_role(KeyRole::Authentication)
            .with_generation(3)
            .with_kek(kcv)
            .with_counter(InvocationCounter::new(41)),
        AuditEvent::new(AuditAction::AccessRefused, Outcome::Refused, t(3))
            .with_device(meter)
            .with_client(Client::Public),
        AuditEvent::new(AuditAction::CounterExhausted, Outcome::Failure, t(4))
            .with_counter(InvocationCounter::new(0xFFFF_FFFE)),
    ]
}

/// A generator that gives the same octets every time (one chain id in
/// every log), or fails.
struct TestRng(Option<u8>);

impl rand_core::TryRng for TestRng {
    type Error = io::Error;
    fn try_next_u32(&mut self) -> io::Result<u32> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> io::Result<u64> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> io::Result<()> {
        let byte = self.0.ok_or_else(|| io::Error::other("generator failed"))?;
        dst.fill(byte);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for TestRng {}

fn write_log(key: &AuditKey, events: &[AuditEvent]) -> (Vec<u8>, VerifiedLog) {
    write_log_from(&mut getrandom::SysRng, key, events)
}

fn write_log_from<R: rand_core::TryCryptoRng>(
    rng: &mut R,
    key: &AuditKey,
    events: &[AuditEvent],
) -> (Vec<u8>, VerifiedLog) {
    let mut sink = JsonLinesSink::new(Cursor::new(Vec::new()), key, rng).unwrap();
    for e in events {
        sink.record(e).unwrap();
    }
    let records = sink.next_seq();
    let last_mac = sink.last_mac();
    let chain = Some(sink.chain_id());
    let log = sink.into_inner().into_inner();
    let head = VerifiedLog {
        records,
        last_mac,
        chain,
        len: log.len() as u64,
    };
    (log, head)
}

fn lines(log: &[u8]) -> Vec<String> {
    log.lines().map(|l| l.unwrap() + "\n").collect()
}

fn check(lines: &[String]) -> Result<VerifiedLog, ChainBreak> {
    verify(Cursor::new(lines.concat()), &key())
}

fn brk(line: u64, kind: BreakKind) -> Result<VerifiedLog, ChainBreak> {
    Err(ChainBreak { line, kind })
}

/// Replaces the value of `field` (up to the next `,` or `}`) in a line.
fn set(line: &str, field: &str, value: &str) -> String {
    let key = format!("\"{field}\":");
    let start = line.find(&key).unwrap() + key.len();
    let len = line[start..].find([',', '}']).unwrap();
    format!("{}{value}{}", &line[..start], &line[start + len..])
}

#[test]
fn r20_intact_log_verifies() {
    let (log, head) = write_log(&key(), &events());
    assert_eq!(lines(&log).len(), N);
    assert_eq!(verify(&log[..], &key()), Ok(head));
    assert_eq!(head.records, N as u64);
    assert_eq!(verify_with_head(&log[..], &key(), N as u64), Ok(head));
    // An empty log is a valid log of no records.
    assert_eq!(
        verify(&b""[..], &key()),
        Ok(VerifiedLog {
            records: 0,
            last_mac: [0; 12],
            chain: None,
            len: 0,
        })
    );
    // Under another key nothing verifies, from the first line.
    assert_eq!(
        verify(&log[..], &AuditKey::from_bytes([0xA5; 16])),
        brk(1, BreakKind::BadMac)
    );
}

#[test]
fn r20_lines_are_readable_json_with_every_field() {
    let (log, _) = write_log(&key(), &events());
    let l = lines(&log);
    let v: serde_json::Value = serde_json::from_str(&l[2]).unwrap();
    assert_eq!(v["seq"], 2);
    assert_eq!(v["action"], "replay-rejected");
    assert_eq!(v["outcome"], "refused");
    assert_eq!(v["time"], 1_700_000_002_u64);
    assert_eq!(v["device"], "4d4d4d0000bc614e");
    assert_eq!(v["client"], "management");
    assert_eq!(v["role"], "authentication");
    assert_eq!(v["generation"], 3);
    assert_eq!(v["kek"], "a1b2c3");
    assert_eq!(v["counter"], 41);
    assert_eq!(v["mac"].as_str().unwrap().len(), 24);
    let v: serde_json::Value = serde_json::from_str(&l[4]).unwrap();
    assert!(v["device"].is_null() && v["role"].is_null() && v["kek"].is_null());
    assert_eq!(v["counter"], 0xFFFF_FFFE_u32);
}

#[test]
fn r20_altering_any_field_of_a_record_is_reported_at_that_line() {
    let (log, _) = write_log(&key(), &events());
    let l = lines(&log);
    let target = 2; // line 3
    let mac = serde_json::from_str::<serde_json::Value>(&l[target]).unwrap()["mac"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut flipped_mac = mac.clone().into_bytes();
    flipped_mac[23] = if flipped_mac[23] == b'0' { b'1' } else { b'0' };
    let flipped_mac = format!("\"{}\"", String::from_utf8(flipped_mac).unwrap());
    let alterations = [
        ("action", "\"packaged\""),
        ("outcome", "\"success\""),
        ("time", "1700000003"),
        ("device", "\"4d4d4d0000bc614f\""),
        ("device", "null"),
        ("client", "\"firmware\""),
        ("client", "null"),
        ("role", "\"master\""),
        ("generation", "4"),
        ("generation", "null"),
        ("kek", "\"a1b2c4\""),
        ("counter", "40"),
        ("counter", "null"),
        ("mac", flipped_mac.as_str()),
    ];
    for (field, value) in alterations {
        let mut t = l.clone();
        t[target] = set(&t[target], field, value);
        assert_ne!(t[target], l[target]);
        assert_eq!(check(&t), brk(3, BreakKind::BadMac), "{field} = {value}");
    }
    // A field added where it was absent.
    let mut t = l.clone();
    t[4] = set(&t[4], "kek", "\"a1b2c3\"");
    assert_eq!(check(&t), brk(5, BreakKind::BadMac));
    // The sequence number itself.
    let mut t = l.clone();
    t[target] = set(&t[target], "seq", "3");
    assert_eq!(
        check(&t),
        brk(
            3,
            BreakKind::SequenceGap {
                expected: 2,
                found: 3
            }
        )
    );
    // Damage that leaves no record: malformed.
    for damaged in [
        l[target].replace("\"role\"", "\"rôle\""),
        l[target].replace(':', ": "),
        set(&l[target], "generation", "\"3\""),
        set(&l[target], "client", "\"Management\""),
        "\n".to_owned(),
        "not json\n".to_owned(),
    ] {
        let mut t = l.clone();
        t[target] = damaged;
        assert_eq!(check(&t), brk(3, BreakKind::Malformed));
    }
}

#[test]
fn r20_removed_records_are_reported() {
    let (log, head) = write_log(&key(), &events());
    let l = lines(&log);
    let gap = |line, expected, found| brk(line, BreakKind::SequenceGap { expected, found });

    let mut first = l.clone();
    first.remove(0);
    assert_eq!(check(&first), gap(1, 0, 1));

    let mut middle = l.clone();
    middle.remove(2);
    assert_eq!(check(&middle), gap(3, 2, 3));

    // The last record: the remaining chain is intact, so only the head
    // kept elsewhere shows it.
    let mut last = l.clone();
    last.remove(N - 1);
    assert!(check(&last).is_ok());
    assert_eq!(
        verify_with_head(Cursor::new(last.concat()), &key(), head.records),
        brk(
            5,
            BreakKind::Truncated {
                expected: 5,
                found: 4
            }
        )
    );
}

#[test]
fn r20_truncated_tail_is_reported_against_the_head() {
    let (log, head) = write_log(&key(), &events());
    let l = lines(&log);
    let kept = l[..3].concat();
    assert_eq!(
        verify_with_head(kept.as_bytes(), &key(), head.records),
        brk(
            4,
            BreakKind::Truncated {
                expected: 5,
                found: 3
            }
        )
    );
    assert_eq!(
        verify_with_head(&b""[..], &key(), 1),
        brk(
            1,
            BreakKind::Truncated {
                expected: 1,
                found: 0
            }
        )
    );
    // A log longer than its head: reported at the first record past it.
    assert_eq!(
        verify_with_head(&log[..], &key(), 3),
        brk(4, BreakKind::Extended { expected: 3 })
    );
    // A record cut short by a crash mid-write is malformed, not a record.
    let partial = format!("{}{}", l[..4].concat(), &l[4][..40]);
    assert_eq!(
        verify(partial.as_bytes(), &key()),
        brk(5, BreakKind::Malformed)
    );
    let no_newline = format!("{}{}", l[..4].concat(), l[4].trim_end());
    assert_eq!(
        verify(no_newline.as_bytes(), &key()),
        brk(5, BreakKind::Malformed)
    );
}

#[test]
fn r20_reordered_records_are_reported() {
    let (log, _) = write_log(&key(), &events());
    let mut l = lines(&log);
    l.swap(1, 3);
    assert_eq!(
        check(&l),
        brk(
            2,
            BreakKind::SequenceGap {
                expected: 1,
                found: 3
            }
        )
    );
    // A copy of an earlier record in place of a later one.
    let mut l = lines(&log);
    l[3] = l[0].clone();
    assert_eq!(
        check(&l),
        brk(
            4,
            BreakKind::SequenceGap {
                expected: 3,
                found: 0
            }
        )
    );
}

#[test]
fn r20_inserted_forged_records_are_reported() {
    let (log, _) = write_log(&key(), &events());
    let l = lines(&log);
    let prev_mac = mac_of;
    let chain = Some(chain_of(&l[0]));
    // A forger without the audit key chains a record of its own after
    // record 1, with the right sequence number and a MAC under its key.
    let forger = AuditKey::from_bytes([0x33; 16]);
    let forged_event = AuditEvent::new(
        AuditAction::TransferAccepted,
        Outcome::Success,
        Timestamp(1_700_000_002),
    );
    let at = |records, last_mac| VerifiedLog {
        records,
        last_mac,
        chain,
        len: 0,
    };
    let mut sink =
        JsonLinesSink::append(Cursor::new(Vec::new()), &forger, &at(2, prev_mac(&l[1]))).unwrap();
    sink.record(&forged_event).unwrap();
    let forged = String::from_utf8(sink.into_inner().into_inner()).unwrap();

    let mut t = l.clone();
    t.insert(2, forged.clone());
    assert_eq!(check(&t), brk(3, BreakKind::BadMac));

    // In place of the genuine record 2.
    let mut t = l.clone();
    t[2] = forged;
    assert_eq!(check(&t), brk(3, BreakKind::BadMac));

    // Appended at the end.
    let mut sink =
        JsonLinesSink::append(Cursor::new(Vec::new()), &forger, &at(5, prev_mac(&l[4]))).unwrap();
    sink.record(&forged_event).unwrap();
    let mut t = l.clone();
    t.push(String::from_utf8(sink.into_inner().into_inner()).unwrap());
    assert_eq!(check(&t), brk(6, BreakKind::BadMac));

    // Inserted with a recomputed sequence number that collides.
    let mut t = l;
    let dup = t[1].clone();
    t.insert(2, dup);
    assert_eq!(
        check(&t),
        brk(
            3,
            BreakKind::SequenceGap {
                expected: 2,
                found: 1
            }
        )
    );
}

#[test]
fn r20_resumed_sink_continues_a_valid_chain() {
    let all = events();
    let (mut log, _) = write_log_from(&mut TestRng(Some(7)), &key(), &all[..3]);
    let verified = verify(&log[..], &key()).unwrap();
    assert_eq!(verified.records, 3);

    let mut sink = JsonLinesSink::append(Cursor::new(&mut log), &key(), &verified).unwrap();
    for e in &all[3..] {
        sink.record(e).unwrap();
    }
    let (whole, head) = write_log_from(&mut TestRng(Some(7)), &key(), &all);
    // The resumed log is byte for byte the log written in one go.
    assert_eq!(log, whole);
    assert_eq!(verify_with_head(&log[..], &key(), 5), Ok(head));

    // Resumed from a wrong position, the chain breaks where it resumed.
    let (mut log, _) = write_log(&key(), &all[..3]);
    let wrong = VerifiedLog {
        records: 3,
        last_mac: [0; 12],
        chain: verify(&log[..], &key()).unwrap().chain,
        len: log.len() as u64,
    };
    let mut sink = JsonLinesSink::append(Cursor::new(&mut log), &key(), &wrong).unwrap();
    sink.record(&all[3]).unwrap();
    assert_eq!(verify(&log[..], &key()), brk(4, BreakKind::BadMac));
}

#[test]
fn r20_no_key_bytes_in_json_or_debug() {
    let key = key();
    let (log, _) = write_log(&key, &events());
    let text = String::from_utf8(log).unwrap();
    let key_hex = hex::encode(KEY);
    assert!(!text.to_lowercase().contains(&key_hex[..8]));
    let sink = JsonLinesSink::new(Cursor::new(Vec::new()), &key, &mut getrandom::SysRng).unwrap();
    for debug in [
        format!("{key:?}"),
        format!("{sink:?}"),
        format!("{:?}", events()),
    ] {
        assert!(!debug.to_lowercase().contains(&key_hex[..8]), "{debug}");
        assert!(!debug.contains("90, 90"), "{debug}");
    }
    assert_eq!(format!("{key:?}"), "AuditKey(..)");
    // The only fields are the event's, the sequence number and the MAC,
    // and in the first line the chain id.
    let keys = |line: &str| {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort_unstable();
        keys
    };
    let mut first = keys(text.lines().next().unwrap());
    assert!(first.contains(&"chain".to_owned()));
    first.retain(|k| k != "chain");
    assert_eq!(first, keys(text.lines().nth(1).unwrap()));
    assert_eq!(
        keys(text.lines().nth(1).unwrap()),
        [
            "action",
            "client",
            "counter",
            "device",
            "generation",
            "kek",
            "mac",
            "outcome",
            "role",
            "seq",
            "time"
        ]
    );
}

#[test]
fn r20_sinks_fail_closed() {
    let e = events()[0];
    let mut memory = MemoryAuditLog::<1>::new();
    let sinks: [&mut dyn AuditSink; 2] = [&mut memory, &mut NoAudit];
    for s in sinks {
        s.record(&e).unwrap();
    }
    assert_eq!(memory.record(&e), Err(Error::Audit));
    assert_eq!(memory.events(), &[e]);
}

struct Broken;
impl Read for Broken {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::PermissionDenied))
    }
}

#[test]
fn r20_unreadable_log_is_reported() {
    assert_eq!(
        verify(io::BufReader::new(Broken), &key()),
        brk(1, BreakKind::Io(io::ErrorKind::PermissionDenied))
    );
    let long = "x".repeat(2000);
    assert_eq!(
        verify(long.as_bytes(), &key()),
        brk(1, BreakKind::Malformed)
    );
    let shown = ChainBreak {
        line: 3,
        kind: BreakKind::BadMac,
    }
    .to_string();
    assert!(shown.starts_with("audit log line 3: "), "{shown}");
}

/// The chain id the first line carries.
fn chain_of(line: &str) -> ChainId {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    ChainId(
        hex::decode(v["chain"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    )
}

/// The MAC a line carries.
fn mac_of(line: &str) -> [u8; 12] {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    hex::decode(v["mac"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

/// Multiplication in GF(2¹²⁸) in GCM's bit order (SP 800-38D, 6.3).
fn gf_mul(x: u128, y: u128) -> u128 {
    let mut z = 0;
    let mut v = y;
    for i in (0..128).rev() {
        if (x >> i) & 1 == 1 {
            z ^= v;
        }
        v = if v & 1 == 1 {
            (v >> 1) ^ (0xE1 << 120)
        } else {
            v >> 1
        };
    }
    z
}

/// A solution of the GF(2) linear system `rows` (coefficient bits, right
/// side) over 128 unknowns, free unknowns set to zero; an inconsistent row
/// is skipped.
fn solve(mut rows: Vec<(u128, bool)>) -> u128 {
    let mut pivots = Vec::new();
    let mut next = 0;
    for col in 0..128 {
        let Some(p) = (next..rows.len()).find(|&r| (rows[r].0 >> col) & 1 == 1) else {
            continue;
        };
        rows.swap(next, p);
        let pivot = rows[next];
        for (r, row) in rows.iter_mut().enumerate() {
            if r != next && (row.0 >> col) & 1 == 1 {
                row.0 ^= pivot.0;
                row.1 ^= pivot.1;
            }
        }
        pivots.push((col, next));
        next += 1;
    }
    pivots
        .iter()
        .filter(|&&(_, r)| rows[r].1)
        .fold(0, |z, &(col, _)| z | (1 << col))
}

/// Logs started under one key (rotated files), each opening with a record
/// for another meter at another time. Were the MAC a GMAC with the sequence
/// number as its nonce, the first records would share a nonce: the XOR of
/// two of their tags is the difference of the records' second AAD block
/// (the time's low octets, the flags and the device) times H⁴, H the GHASH
/// key, known in its first 96 bits. Three such pairs fix H⁴, hence H, and
/// with it the MAC of any time and device in a first record. Everything used
/// below is in the logs or in the documented encoding.
#[test]
fn r20_logs_under_one_key_do_not_give_away_the_mac_key() {
    let first = |t: u64, meter: u32| {
        let mut title = [0x4D, 0x4D, 0x4D, 0, 0, 0, 0, 0];
        title[4..].copy_from_slice(&meter.to_be_bytes());
        AuditEvent::new(
            AuditAction::Activated,
            Outcome::Success,
            Timestamp(1_700_000_000 + t),
        )
        .with_device(SystemTitle::new(title))
    };
    let logged = [
        first(0, 12_345_678),
        first(3_600, 12_345_679),
        first(86_400, 23_456_789),
        first(604_800, 31_415_926),
    ];
    let wanted = first(1_000_000, 27_182_818);
    let logs: Vec<String> = logged
        .iter()
        .map(|e| lines(&write_log(&key(), &[*e, events()[1]]).0).remove(0))
        .collect();
    let tag = |line: &str| {
        let mut t = [0u8; 16];
        t[..12].copy_from_slice(&mac_of(line));
        u128::from_be_bytes(t)
    };
    // The AAD is the previous MAC (12 octets), the event's 33 octets and the
    // sequence number: event octets 4..20 are the second block.
    let block = |e: &AuditEvent| u128::from_be_bytes(e.to_bytes()[4..20].try_into().unwrap());
    let mut rows = Vec::new();
    for j in 1..logged.len() {
        let d = block(&logged[0]) ^ block(&logged[j]);
        let observed = tag(&logs[0]) ^ tag(&logs[j]);
        // Bit b of d·Z is linear in Z's bits: column k is d·(bit k).
        let columns: Vec<u128> = (0..128).map(|k| gf_mul(d, 1 << k)).collect();
        for b in 32..128 {
            let coefficients = (0..128)
                .filter(|&k| (columns[k] >> b) & 1 == 1)
                .fold(0_u128, |c, k| c | (1 << k));
            rows.push((coefficients, (observed >> b) & 1 == 1));
        }
    }
    let h4 = solve(rows);
    let h = (0..126).fold(h4, |x, _| gf_mul(x, x));
    let real_h = {
        use aes::cipher::{BlockCipherEncrypt, KeyInit};
        let mut zero = [0u8; 16].into();
        aes::Aes128::new(&KEY.into()).encrypt_block(&mut zero);
        u128::from_be_bytes(zero.into())
    };
    assert_ne!(h, real_h, "the GHASH key H follows from the logs");

    // A first record for a meter and a time never logged, its MAC computed
    // from the logs alone.
    let forged_tag = tag(&logs[0]) ^ gf_mul(block(&logged[0]) ^ block(&wanted), h4);
    let forged_mac = hex::encode(&forged_tag.to_be_bytes()[..12]);
    let mut forged = set(&logs[0], "time", &wanted.time.0.to_string());
    forged = set(
        &forged,
        "device",
        &format!("\"{}\"", hex::encode(wanted.device.unwrap().as_bytes())),
    );
    forged = set(&forged, "mac", &format!("\"{forged_mac}\""));
    assert_eq!(verify(forged.as_bytes(), &key()), brk(1, BreakKind::BadMac));
}

/// Two logs under one key share no MAC input: each chain has an identity
/// of its own, so a record of one log does not verify in another, even
/// after the same records.
#[test]
fn r20_a_record_of_one_log_does_not_verify_in_another_under_the_same_key() {
    let all = events();
    let (a, _) = write_log(&key(), &all[..3]);
    let (b, _) = write_log(&key(), &[all[0], all[1], all[4]]);
    let (a, b) = (lines(&a), lines(&b));
    assert_ne!(mac_of(&a[0]), mac_of(&b[0]));
    let mut spliced = a[..2].to_vec();
    spliced.push(b[2].clone());
    assert_eq!(check(&spliced), brk(3, BreakKind::BadMac));
    // Nor does a whole line of one log stand in for the same position in the other.
    let mut spliced = b.clone();
    spliced[1] = a[1].clone();
    assert_eq!(check(&spliced), brk(2, BreakKind::BadMac));
}

#[test]
fn r20_a_log_starts_only_under_a_fresh_chain_id() {
    assert_eq!(
        JsonLinesSink::new(Cursor::new(Vec::new()), &key(), &mut TestRng(None)).unwrap_err(),
        OpenError::Rng
    );
    let empty = verify(&b""[..], &key()).unwrap();
    assert_eq!(
        JsonLinesSink::append(Cursor::new(Vec::new()), &key(), &empty).unwrap_err(),
        OpenError::NoChain
    );
    // The first line, and only it, carries the chain id.
    let (log, _) = write_log(&key(), &events());
    let l = lines(&log);
    let mut t = l.clone();
    t[0] = t[0].replacen(
        &format!(",\"chain\":\"{}\"", hex::encode(chain_of(&l[0]).0)),
        "",
        1,
    );
    assert_eq!(check(&t), brk(1, BreakKind::Malformed));
    let mut t = l.clone();
    t[1] = t[1].replacen(
        ",\"action\"",
        &format!(
            ",\"chain\":\"{}\",\"action\"",
            hex::encode(chain_of(&l[0]).0)
        ),
        1,
    );
    assert_eq!(check(&t), brk(2, BreakKind::Malformed));
    // Another chain id in the first line breaks the chain there.
    let mut t = l;
    t[0] = set(&t[0], "chain", &format!("\"{}\"", "00".repeat(16)));
    assert_eq!(check(&t), brk(1, BreakKind::BadMac));
}

/// A path for this test's file, empty of anything from an earlier run.
fn fresh_path(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("dlms-sec-audit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn r20_a_new_log_is_not_started_over_an_existing_one() {
    let path = fresh_path("existing.jsonl");
    let (log, _) = write_log(&key(), &events()[..2]);
    std::fs::write(&path, &log).unwrap();
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    assert_eq!(
        JsonLinesSink::new(file, &key(), &mut getrandom::SysRng).unwrap_err(),
        OpenError::NotEmpty
    );
    assert_eq!(std::fs::read(&path).unwrap(), log);
    // Over an empty file it starts.
    std::fs::write(&path, b"").unwrap();
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    let mut sink = JsonLinesSink::new(file, &key(), &mut getrandom::SysRng).unwrap();
    sink.record(&events()[0]).unwrap();
    drop(sink);
    assert_eq!(
        verify(&std::fs::read(&path).unwrap()[..], &key()).map(|v| v.records),
        Ok(1)
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn r20_append_refuses_a_writer_past_the_verified_end() {
    // A crash while a line was written leaves a partial line after the
    // verified records: nothing may be chained after it.
    let path = fresh_path("torn-append.jsonl");
    let (log, _) = write_log(&key(), &events()[..2]);
    std::fs::write(&path, &log).unwrap();
    let verified = verify(&log[..], &key()).unwrap();
    let mut torn = log.clone();
    torn.extend_from_slice(b"{\"seq\":2,\"action\":\"pack");
    std::fs::write(&path, &torn).unwrap();
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    assert!(JsonLinesSink::append(file, &key(), &verified).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), torn);
    std::fs::remove_file(&path).unwrap();
}

/// The log of `events` with the line of one more event cut after `keep`
/// octets, as a crash while writing that line leaves it; and the octets
/// of the whole line the crash cut.
fn torn_log(events: &[AuditEvent], keep: usize) -> (Vec<u8>, String) {
    let (whole, _) = write_log_from(&mut TestRng(Some(7)), &key(), events);
    let (complete, _) = write_log_from(&mut TestRng(Some(7)), &key(), &events[..events.len() - 1]);
    let torn_line = String::from_utf8(whole[complete.len()..].to_vec()).unwrap();
    let mut log = complete;
    log.extend_from_slice(&torn_line.as_bytes()[..keep]);
    (log, torn_line)
}

fn seqs(log: &[u8]) -> Vec<u64> {
    lines(log)
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn r20_recovering_a_torn_last_line_never_repeats_its_sequence_number() {
    let path = fresh_path("torn-recover.jsonl");
    for keep in [1, 20, 100] {
        let (log, torn_line) = torn_log(&events()[..4], keep);
        std::fs::write(&path, &log).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let (mut sink, cut) =
            JsonLinesSink::recover(file, &key(), Timestamp(1_700_000_100)).unwrap();
        assert_eq!(cut, keep as u64);
        sink.record(&events()[4]).unwrap();
        drop(sink);
        let after = std::fs::read(&path).unwrap();
        // The torn record had number 3: a reader who saw it never sees
        // another record numbered 3.
        assert!(torn_line.starts_with("{\"seq\":3,"));
        assert_eq!(seqs(&after), [0, 1, 2, 4, 5]);
        let recovered = &lines(&after)[3];
        assert!(recovered.contains("\"action\":\"log-recovered\""));
        assert_eq!(verify(&after[..], &key()).map(|v| v.records), Ok(6));
        assert_eq!(
            verify_with_head(&after[..], &key(), 6).map(|v| v.len),
            Ok(after.len() as u64)
        );
    }
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn r20_a_log_ending_in_a_complete_line_recovers_without_a_gap() {
    let path = fresh_path("whole-recover.jsonl");
    let (log, _) = write_log(&key(), &events()[..3]);
    std::fs::write(&path, &log).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let (mut sink, cut) = JsonLinesSink::recover(file, &key(), Timestamp(1)).unwrap();
    assert_eq!(cut, 0);
    sink.record(&events()[3]).unwrap();
    drop(sink);
    let after = std::fs::read(&path).unwrap();
    assert_eq!(seqs(&after), [0, 1, 2, 3]);
    assert_eq!(verify(&after[..], &key()).map(|v| v.records), Ok(4));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn r20_recovery_refuses_a_log_that_does_not_verify_and_cuts_nothing() {
    let path = fresh_path("broken-recover.jsonl");
    let (log, _) = torn_log(&events()[..4], 30);
    let mut l = lines(&log[..log.iter().rposition(|&b| b == b'\n').unwrap() + 1]);
    l[1] = set(&l[1], "time", "1");
    let mut broken = l.concat().into_bytes();
    broken.extend_from_slice(&log[log.iter().rposition(|&b| b == b'\n').unwrap() + 1..]);
    std::fs::write(&path, &broken).unwrap();
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap()
    };
    assert_eq!(
        JsonLinesSink::recover(open(), &key(), Timestamp(1)).unwrap_err(),
        OpenError::Broken(ChainBreak {
            line: 2,
            kind: BreakKind::BadMac
        })
    );
    assert_eq!(std::fs::read(&path).unwrap(), broken);
    // A partial line longer than any the sink writes is not a torn record.
    let (log, _) = write_log(&key(), &events()[..2]);
    let mut long = log.clone();
    long.extend(std::iter::repeat_n(b'x', 1100));
    std::fs::write(&path, &long).unwrap();
    assert!(matches!(
        JsonLinesSink::recover(open(), &key(), Timestamp(1)),
        Err(OpenError::Broken(_))
    ));
    assert_eq!(std::fs::read(&path).unwrap(), long);
    // Only a partial line, no record before it: nothing to continue.
    std::fs::write(&path, b"{\"seq\":0,\"ch").unwrap();
    assert_eq!(
        JsonLinesSink::recover(open(), &key(), Timestamp(1)).unwrap_err(),
        OpenError::NoChain
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn r20_a_gap_is_accepted_only_before_a_recovery_record_and_only_of_one() {
    // Writing at a skipped number with an ordinary record: refused.
    let (log, _) = torn_log(&events()[..4], 10);
    let cut = log.iter().rposition(|&b| b == b'\n').unwrap() + 1;
    let verified = verify(&log[..cut], &key()).unwrap();
    let forged_gap = |skip: u64, action: AuditAction| {
        let from = VerifiedLog {
            records: verified.records + skip,
            last_mac: verified.last_mac,
            chain: verified.chain,
            len: verified.len,
        };
        let mut sink =
            JsonLinesSink::append(Cursor::new(log[..cut].to_vec()), &key(), &from).unwrap();
        sink.record(&AuditEvent::new(action, Outcome::Success, Timestamp(5)))
            .unwrap();
        sink.into_inner().into_inner()
    };
    assert!(verify(&forged_gap(1, AuditAction::LogRecovered)[..], &key()).is_ok());
    assert_eq!(
        verify(&forged_gap(1, AuditAction::Activated)[..], &key()),
        brk(
            4,
            BreakKind::SequenceGap {
                expected: 3,
                found: 4
            }
        )
    );
    assert_eq!(
        verify(&forged_gap(2, AuditAction::LogRecovered)[..], &key()),
        brk(
            4,
            BreakKind::SequenceGap {
                expected: 3,
                found: 5
            }
        )
    );
}
