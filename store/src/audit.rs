//! The audit log in the database: [`DatabaseAuditSink`] appends events
//! sealed into an [`AuditChain`]; [`verify_audit`] checks the whole table,
//! and [`verify_audit_with`] also hands each verified event to a visitor.
//!
//! Table `audit_log (seq, chain_id, event, mac)`: one row per event, `seq`
//! from 0, `event` the canonical [`AuditEvent::encode`] octets, `mac` the
//! chain MAC, `chain_id` the chain's [`ChainId`] on every row. `event` is
//! a BLOB of either version of the encoding: 33 octets for an event
//! without context (version 1, as every row written before the context
//! existed), up to [`EVENT_MAX_LEN`](dlms_sec::audit::EVENT_MAX_LEN) for one
//! with (version 2). The MAC covers the octets stored; a table may hold
//! both versions.
//!
//! Guarantees:
//!
//! * A sink opens only on a table whose whole chain verifies, and continues
//!   it from its head; on an empty table it starts a chain with a random id.
//! * A record is durable (committed) before [`AuditSink::record`] returns
//!   `Ok`. If it cannot be written, or another writer appended first (its
//!   `seq` is taken), the record fails ([`Error::Audit`]) and the sink
//!   refuses every later record: a fresh sink resumes from the table.
//! * [`verify_audit`] names the first row that is malformed, out of
//!   sequence, of another chain, or whose MAC does not verify. Rows removed
//!   from the end are visible only against a count kept elsewhere
//!   ([`VerifiedHead::count`]).

use core::fmt;

use dlms_sec::audit::{
    AuditChain, AuditEvent, AuditSink, ChainId, FailStopChain, LinkError, MAC_LEN,
};
use dlms_sec::key::AuditKey;
use rand_core::TryCryptoRng;

use crate::Store;
use crate::error::StoreError;
use crate::rows;

/// Rows read per query while verifying.
const PAGE: u32 = 4096;

/// An audit row as read, before any check.
#[derive(Debug)]
pub(crate) struct AuditRow {
    pub(crate) seq: i64,
    pub(crate) chain_id: Vec<u8>,
    pub(crate) event: Vec<u8>,
    pub(crate) mac: Vec<u8>,
}

/// A table that verified: what a sink resumes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VerifiedHead {
    /// Number of rows (the next row's `seq`).
    pub count: u64,
    /// The chain's id (`None` for an empty table).
    pub chain_id: Option<ChainId>,
    /// The last row's MAC (zeros for an empty table).
    pub last_mac: [u8; MAC_LEN],
}

/// The first row at which the audit table stops verifying.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AuditBreak {
    /// The sequence number the chain expected there.
    pub seq: u64,
    /// What is wrong.
    pub why: AuditBreakKind,
}

/// What is wrong at an [`AuditBreak`].
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AuditBreakKind {
    /// The row does not decode (an event, chain id or MAC of the wrong
    /// length, an unknown code).
    Malformed,
    /// The row names another chain than the first row.
    OtherChain,
    /// The row carries another `seq` than its position needs: rows were
    /// removed or inserted.
    Sequence {
        /// The `seq` expected.
        expected: u64,
        /// The `seq` found.
        found: u64,
    },
    /// The MAC does not verify: the row was altered or forged.
    BadMac,
    /// The table could not be read.
    Store(StoreError),
}

impl fmt::Display for AuditBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "audit log at seq {}: ", self.seq)?;
        match &self.why {
            AuditBreakKind::Malformed => f.write_str("malformed row"),
            AuditBreakKind::OtherChain => f.write_str("row of another chain"),
            AuditBreakKind::Sequence { expected, found } => {
                write!(f, "seq {found} where {expected} belongs")
            }
            AuditBreakKind::BadMac => f.write_str("MAC does not verify (altered or forged row)"),
            AuditBreakKind::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for AuditBreak {}

/// Verifies the whole audit table of `store` under `key`.
///
/// # Errors
/// The first row that does not verify, as an [`AuditBreak`].
pub fn verify_audit(store: &Store, key: &AuditKey) -> Result<VerifiedHead, AuditBreak> {
    verify_audit_with(store, key, |_, _| {})
}

/// As [`verify_audit`], handing each event to `visit` (with its `seq`)
/// once its row has verified, in order. On a break, `visit` has seen
/// every event before it and none after.
///
/// # Errors
/// The first row that does not verify, as an [`AuditBreak`].
pub fn verify_audit_with(
    store: &Store,
    key: &AuditKey,
    mut visit: impl FnMut(u64, &AuditEvent),
) -> Result<VerifiedHead, AuditBreak> {
    verify_chain(store, key, &mut visit).map(|c| VerifiedHead {
        count: c.as_ref().map_or(0, AuditChain::next_seq),
        chain_id: c.as_ref().map(AuditChain::chain_id),
        last_mac: c.as_ref().map_or([0; MAC_LEN], AuditChain::last_mac),
    })
}

fn verify_chain(
    store: &Store,
    key: &AuditKey,
    visit: &mut dyn FnMut(u64, &AuditEvent),
) -> Result<Option<AuditChain>, AuditBreak> {
    let mut chain: Option<AuditChain> = None;
    loop {
        let expected = chain.as_ref().map_or(0, AuditChain::next_seq);
        let brk = |why| AuditBreak { seq: expected, why };
        let after = expected.checked_sub(1);
        let page = store
            .audit_page(after, PAGE)
            .map_err(|e| brk(AuditBreakKind::Store(e)))?;
        if page.is_empty() {
            return Ok(chain);
        }
        let full = page.len() == PAGE as usize;
        for row in &page {
            let expected = chain.as_ref().map_or(0, AuditChain::next_seq);
            let brk = |why| AuditBreak { seq: expected, why };
            let seq = u64::try_from(row.seq).map_err(|_| brk(AuditBreakKind::Malformed))?;
            let id = rows::chain_id(&row.chain_id).ok_or(brk(AuditBreakKind::Malformed))?;
            let mac = rows::mac(&row.mac).ok_or(brk(AuditBreakKind::Malformed))?;
            let event =
                AuditEvent::decode(&row.event).map_err(|_| brk(AuditBreakKind::Malformed))?;
            let link = match &mut chain {
                Some(c) if c.chain_id() != id => return Err(brk(AuditBreakKind::OtherChain)),
                Some(c) => c,
                None => chain.insert(AuditChain::new(key, id)),
            };
            link.check(seq, &event, &mac).map_err(|e| {
                brk(match e {
                    LinkError::Sequence { expected, found } => {
                        AuditBreakKind::Sequence { expected, found }
                    }
                    LinkError::BadMac => AuditBreakKind::BadMac,
                })
            })?;
            visit(seq, &event);
        }
        if !full {
            return Ok(chain);
        }
    }
}

/// An [`AuditSink`] appending to the store's audit table (`seq`,
/// `chain_id`, the event's canonical octets, the chain MAC).
///
/// Opens only on a table whose whole chain verifies and continues it, or
/// starts a chain with a random id on an empty table. A record is committed
/// before [`AuditSink::record`] returns `Ok`; if it cannot be written, or
/// another writer took its `seq`, it fails with
/// [`Error::Audit`](dlms_sec::Error::Audit) and the sink refuses every
/// later record (open a new one: it resumes from the table).
pub struct DatabaseAuditSink<'s> {
    store: &'s Store,
    chain: FailStopChain,
}

impl fmt::Debug for DatabaseAuditSink<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseAuditSink")
            .field("next_seq", &self.chain.chain().next_seq())
            .field("poisoned", &self.chain.is_stopped())
            .finish_non_exhaustive()
    }
}

impl<'s> DatabaseAuditSink<'s> {
    /// Verifies the whole audit table and continues its chain, or starts a
    /// chain with a fresh id from `rng` when the table is empty.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] naming the first row that does not verify;
    /// the store's error when the table cannot be read;
    /// [`StoreError::Backend`] when `rng` fails.
    pub fn open<R: TryCryptoRng + ?Sized>(
        store: &'s Store,
        key: &AuditKey,
        rng: &mut R,
    ) -> Result<Self, StoreError> {
        let chain = match verify_chain(store, key, &mut |_, _| {}) {
            Ok(Some(chain)) => chain,
            Ok(None) => {
                let id = ChainId::random(rng)
                    .map_err(|_| StoreError::Backend("random generator failed".into()))?;
                AuditChain::new(key, id)
            }
            Err(AuditBreak {
                why: AuditBreakKind::Store(e),
                ..
            }) => return Err(e),
            Err(b) => return Err(StoreError::corrupt(b)),
        };
        Ok(Self {
            store,
            chain: FailStopChain::new(chain),
        })
    }

    /// The chain's id.
    #[must_use]
    pub const fn chain_id(&self) -> ChainId {
        self.chain.chain().chain_id()
    }

    /// The `seq` the next record gets.
    #[must_use]
    pub const fn next_seq(&self) -> u64 {
        self.chain.chain().next_seq()
    }
}

impl AuditSink for DatabaseAuditSink<'_> {
    fn record(&mut self, event: &AuditEvent) -> dlms_sec::Result<()> {
        // A row that did not go in (or whose seq another writer took)
        // stops the sink; a new sink resumes from what the table holds.
        let store = self.store;
        self.chain.append(event, |link, chain_id| {
            store.audit_append(
                link.seq,
                chain_id.as_bytes(),
                event.to_bytes().as_bytes(),
                &link.mac,
            )
        })
    }
}
