//! The tamper-evident audit chain: each record MACed over the previous
//! record's MAC, its canonical bytes and its sequence number.

use core::fmt;

use aes::Aes128;
use cmac::{Cmac, KeyInit, Mac};
use rand_core::TryCryptoRng;
use subtle::ConstantTimeEq;

use crate::audit::AuditEvent;
use crate::error::{Error, Result};
use crate::key::AuditKey;

/// Length of an audit chain MAC: the first 12 octets of the AES-CMAC.
pub const MAC_LEN: usize = 12;

/// Length of a [`ChainId`].
pub const CHAIN_ID_LEN: usize = 16;

/// The identity of one audit chain: random octets drawn when the chain
/// starts, carried by its first record and MACed into every record, so two
/// chains under one [`AuditKey`] never MAC the same input. Public: it is
/// not a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChainId(pub [u8; CHAIN_ID_LEN]);

impl ChainId {
    /// A fresh identity from `rng`.
    ///
    /// # Errors
    /// [`Error::Rng`] when the generator fails.
    pub fn random<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<Self> {
        let mut id = [0; CHAIN_ID_LEN];
        rng.try_fill_bytes(&mut id).map_err(|_| Error::Rng)?;
        Ok(Self(id))
    }

    /// The octets.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; CHAIN_ID_LEN] {
        &self.0
    }
}

/// One sealed link of an audit chain: the record's sequence number and MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Link {
    /// Sequence number, 0 for the first record of the chain.
    pub seq: u64,
    /// The record's MAC.
    pub mac: [u8; MAC_LEN],
}

/// Why a record does not continue the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkError {
    /// The record's sequence number is not the next one: a record before
    /// it was removed, or records were reordered or inserted.
    Sequence {
        /// The sequence number the chain expects.
        expected: u64,
        /// The one the record carries.
        found: u64,
    },
    /// The MAC does not verify: the record was altered or forged.
    BadMac,
}

/// A tamper-evident audit chain (R-20), allocation-free.
///
/// Record `seq` (from 0) gets the MAC
///
/// ```text
/// MAC = AES-CMAC(audit key, chain id ‖ seq (u64 BE)
///                 ‖ MAC of record seq-1 (zeros for seq 0) ‖ event bytes)
/// ```
///
/// truncated to its first 12 octets (SP 800-38B), where the event bytes are
/// [`AuditEvent::encode`] and the chain id is the chain's [`ChainId`],
/// drawn at random when the chain starts and stored with its first record. Changing, removing, reordering or inserting a
/// record breaks the chain at that record for anyone holding the
/// [`AuditKey`]; removing records from the end is only visible against an
/// expected count kept elsewhere.
///
/// CMAC takes no nonce: MACs of any number of records under one key, at
/// any sequence numbers, give nothing towards the MAC of another record;
/// and with the chain id in every MAC, a record of one chain does not verify
/// in another chain under the same key.
pub struct AuditChain {
    cmac: Cmac<Aes128>,
    chain_id: ChainId,
    next_seq: u64,
    prev_mac: [u8; MAC_LEN],
}

impl fmt::Debug for AuditChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditChain")
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl AuditChain {
    /// A chain at its start: the first record gets sequence number 0. A
    /// writer passes a fresh [`ChainId::random`] and stores it with the
    /// first record; a verifier passes the id read from there.
    #[must_use]
    pub fn new(key: &AuditKey, chain_id: ChainId) -> Self {
        Self::resume(key, chain_id, 0, [0; MAC_LEN])
    }

    /// Continues the chain `chain_id` whose last record had sequence number
    /// `next_seq - 1` and MAC `prev_mac` (for `next_seq` 0, `prev_mac` is
    /// zeros). Take all three from a verification of the existing log.
    #[must_use]
    pub fn resume(
        key: &AuditKey,
        chain_id: ChainId,
        next_seq: u64,
        prev_mac: [u8; MAC_LEN],
    ) -> Self {
        Self {
            cmac: Cmac::new(key.as_bytes().into()),
            chain_id,
            next_seq,
            prev_mac,
        }
    }

    /// The chain's identity.
    #[must_use]
    pub const fn chain_id(&self) -> ChainId {
        self.chain_id
    }

    /// The sequence number the next record gets (the number of records so
    /// far).
    #[must_use]
    pub const fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The MAC of the last record (zeros before the first).
    #[must_use]
    pub const fn last_mac(&self) -> [u8; MAC_LEN] {
        self.prev_mac
    }

    /// Seals `event` as the next record and advances the chain.
    ///
    /// # Errors
    /// [`Error::Audit`] when the sequence numbers are used up (after
    /// 2⁶⁴ − 1 records); the chain is unchanged.
    pub fn seal(&mut self, event: &AuditEvent) -> Result<Link> {
        let seq = self.next_seq;
        let next = seq.checked_add(1).ok_or(Error::Audit)?;
        let mac = self.mac(seq, event);
        self.next_seq = next;
        self.prev_mac = mac;
        Ok(Link { seq, mac })
    }

    /// Checks that `event` with `seq` and `mac` is the next record, and
    /// advances the chain if it is. The MAC is compared in constant time.
    ///
    /// # Errors
    /// [`LinkError::Sequence`] when `seq` is not [`Self::next_seq`];
    /// [`LinkError::BadMac`] when the MAC does not verify. The chain is
    /// unchanged on error.
    pub fn check(
        &mut self,
        seq: u64,
        event: &AuditEvent,
        mac: &[u8; MAC_LEN],
    ) -> Result<(), LinkError> {
        if seq != self.next_seq {
            return Err(LinkError::Sequence {
                expected: self.next_seq,
                found: seq,
            });
        }
        let next = seq.checked_add(1).ok_or(LinkError::Sequence {
            expected: self.next_seq,
            found: seq,
        })?;
        let expected = self.mac(seq, event);
        if bool::from(expected.ct_eq(mac)) {
            self.next_seq = next;
            self.prev_mac = expected;
            Ok(())
        } else {
            Err(LinkError::BadMac)
        }
    }

    fn mac(&self, seq: u64, event: &AuditEvent) -> [u8; MAC_LEN] {
        let mut cmac = self.cmac.clone();
        cmac.update(self.chain_id.as_bytes());
        cmac.update(&seq.to_be_bytes());
        cmac.update(&self.prev_mac);
        cmac.update(event.to_bytes().as_bytes());
        let tag = cmac.finalize().into_bytes();
        let mut mac = [0; MAC_LEN];
        if let Some(head) = tag.first_chunk::<MAC_LEN>() {
            mac.copy_from_slice(head);
        }
        mac
    }
}

/// An [`AuditChain`] for a sink that stores each sealed record somewhere
/// (a file, a table, a log collector), and stops at the first record it
/// could not store: the chain has moved past that record, so the store
/// has a gap, and nothing is chained after it until an operator has looked
/// (a new sink resumes from a verification of what was stored).
///
/// ```
/// use dlms_sec::audit::{AuditAction, AuditChain, AuditEvent, ChainId, FailStopChain, Outcome, Timestamp};
/// use dlms_sec::key::AuditKey;
///
/// let key = AuditKey::from_bytes([7; 16]);
/// let mut chain = FailStopChain::new(AuditChain::new(&key, ChainId([1; 16])));
/// let event = AuditEvent::new(AuditAction::Packaged, Outcome::Success, Timestamp(1_700_000_000));
///
/// let mut stored = None;
/// chain.append(&event, |link, _chain_id| -> Result<(), ()> {
///     stored = Some(link.seq);
///     Ok(())
/// })?;
/// assert_eq!(stored, Some(0));
///
/// // A record that is not stored stops the chain for good.
/// assert!(chain.append(&event, |_, _| Err(())).is_err());
/// assert!(chain.is_stopped());
/// assert!(chain.append(&event, |_, _| Ok::<(), ()>(())).is_err());
/// assert_eq!(chain.chain().next_seq(), 2);
/// # Ok::<(), dlms_sec::Error>(())
/// ```
#[derive(Debug)]
pub struct FailStopChain {
    chain: AuditChain,
    stopped: bool,
}

impl FailStopChain {
    /// Stores records of `chain` (a new one, or one resumed from a
    /// verification).
    #[must_use]
    pub const fn new(chain: AuditChain) -> Self {
        Self {
            chain,
            stopped: false,
        }
    }

    /// The chain: its id, next sequence number and last MAC.
    #[must_use]
    pub const fn chain(&self) -> &AuditChain {
        &self.chain
    }

    /// Whether a record could not be stored: every later one is refused.
    #[must_use]
    pub const fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Seals `event` as the next record and hands its link and the chain's
    /// id to `store`, which stores the record.
    ///
    /// # Errors
    /// [`Error::Audit`] when the chain has stopped, when its sequence
    /// numbers are used up, or when `store` fails; after a failed `store`
    /// the chain stops.
    pub fn append<E>(
        &mut self,
        event: &AuditEvent,
        store: impl FnOnce(Link, ChainId) -> core::result::Result<(), E>,
    ) -> Result<()> {
        if self.stopped {
            return Err(Error::Audit);
        }
        let link = self.chain.seal(event)?;
        if store(link, self.chain.chain_id()).is_err() {
            self.stopped = true;
            return Err(Error::Audit);
        }
        Ok(())
    }
}
