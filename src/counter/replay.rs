//! The receive side: a replay guard per (peer, key), and the proof that
//! lets it advance only over a verified frame.

use crate::error::CounterError;
use crate::wire::{InvocationCounter, KeyKind, SystemTitle};

/// Names one encryption key without revealing it: the first 8 octets of
/// the key's counter-mode block for IV 0^64 ‖ `0xFFFFFFFF`, counter 2. No
/// frame ever uses that block (the IC `0xFFFFFFFF` is never issued and
/// never accepted), so it protects nothing.
///
/// A [`ReplayProof`] carries the fingerprint of the key its frame verified
/// under, and a [`ReplayGuard`] is created for one key's fingerprint
/// ([`Suite0::replay_guard`](crate::Suite0::replay_guard)), so a proof from
/// another client's key, or from another generation of the key, cannot
/// move it. Persist it beside
/// [`ReplayGuard::last_accepted`] to [`resume`](ReplayGuard::resume).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyFingerprint([u8; 8]);

impl KeyFingerprint {
    /// The IV whose keystream block (counter 2) is the fingerprint.
    pub(crate) const IV: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];

    /// A fingerprint as persisted.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(bytes)
    }

    /// The 8 octets, to persist.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0
    }

    /// The fingerprint from the keystream block for [`Self::IV`].
    pub(crate) fn from_keystream(block: &[u8; 16]) -> Self {
        let mut out = [0u8; 8];
        for (o, b) in out.iter_mut().zip(block) {
            *o = *b;
        }
        Self(out)
    }
}

/// Proof that a frame from `peer` under `key` (the key with fingerprint
/// `fingerprint`) with counter `ic` verified.
///
/// Only this crate's verification code (suite-0 unprotect, HLS-5) creates
/// one, after the tag checked out; it is what lets a [`ReplayGuard`]
/// advance. No public constructor, not `Clone` or `Copy`.
///
/// Code outside the crate cannot make one, so it cannot move a guard
/// without a verification:
///
/// ```compile_fail,E0624
/// use dlms_sec::counter::ReplayProof;
/// use dlms_sec::{InvocationCounter, KeyKind, SystemTitle};
///
/// let forged = ReplayProof::new(
///     SystemTitle::new(*b"MMM\x00\x00\x01\x02\x03"),
///     KeyKind::GlobalUnicast,
///     dlms_sec::counter::KeyFingerprint::from_bytes([0; 8]),
///     InvocationCounter::new(7),
/// );
/// ```
///
/// The same paths do resolve, so the example above fails for the private
/// constructor and nothing else:
///
/// ```
/// use dlms_sec::counter::{ReplayGuard, ReplayProof};
/// use dlms_sec::{InvocationCounter, KeyKind, SystemTitle};
///
/// fn commit(guard: &mut ReplayGuard, proof: &ReplayProof) -> bool {
///     guard.accept(proof).is_ok()
/// }
/// let _ = (SystemTitle::new(*b"MMM\x00\x00\x01\x02\x03"), KeyKind::GlobalUnicast);
/// let _ = InvocationCounter::new(7);
/// let _ = commit;
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a verified frame must be committed to its replay guard"]
pub struct ReplayProof {
    peer: SystemTitle,
    key: KeyKind,
    fingerprint: KeyFingerprint,
    ic: InvocationCounter,
}

impl ReplayProof {
    /// Mints a proof. Call only after the frame's tag (or the HLS-5
    /// response) verified under `key` with `peer`'s IV.
    pub(crate) const fn new(
        peer: SystemTitle,
        key: KeyKind,
        fingerprint: KeyFingerprint,
        ic: InvocationCounter,
    ) -> Self {
        Self {
            peer,
            key,
            fingerprint,
            ic,
        }
    }

    /// The fingerprint of the key the frame verified under.
    #[must_use]
    pub const fn key_fingerprint(&self) -> KeyFingerprint {
        self.fingerprint
    }

    /// The sender's system title.
    #[must_use]
    pub const fn peer(&self) -> SystemTitle {
        self.peer
    }

    /// The key the frame verified under.
    #[must_use]
    pub const fn key(&self) -> KeyKind {
        self.key
    }

    /// The frame's invocation counter.
    #[must_use]
    pub const fn invocation_counter(&self) -> InvocationCounter {
        self.ic
    }
}

/// Receive side, one per (peer system title, key kind, key): rejects an IC at or
/// below the last accepted one and the reserved `0xFFFFFFFF`.
///
/// Gaps are accepted (a sender may skip values after a restart). Not
/// `Clone`: a stale copy would accept what the original already has.
///
/// ```
/// use dlms_sec::counter::{KeyFingerprint, ReplayGuard};
/// use dlms_sec::error::CounterError;
/// use dlms_sec::{InvocationCounter, KeyKind, SystemTitle};
///
/// let meter = SystemTitle::new(*b"MMM\x00\x00\x01\x02\x03");
/// let ic = InvocationCounter::new;
/// // After a restart, with the key's fingerprint and 41 persisted as the
/// // last accepted IC:
/// let key = KeyFingerprint::from_bytes(*b"\x5A\x0F\x3C\x11\x87\x42\x09\xE1");
/// let guard = ReplayGuard::resume(meter, KeyKind::GlobalUnicast, key, Some(ic(41)));
/// assert_eq!(guard.check(ic(41)), Err(CounterError::Replay));
/// assert_eq!(guard.check(ic(40)), Err(CounterError::Replay));
/// assert_eq!(guard.check(ic(42)), Ok(()));
/// assert_eq!(guard.check(ic(1000)), Ok(()));
/// assert_eq!(guard.check(ic(0xFFFF_FFFF)), Err(CounterError::Replay));
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct ReplayGuard {
    peer: SystemTitle,
    key: KeyKind,
    fingerprint: KeyFingerprint,
    last_accepted: Option<InvocationCounter>,
}

impl ReplayGuard {
    /// A guard for a newly established key, the one with `fingerprint`:
    /// accepts any first IC (including 0) except `0xFFFFFFFF`.
    /// [`Suite0::replay_guard`](crate::Suite0::replay_guard) makes one for
    /// a key it holds.
    #[must_use]
    pub const fn new(peer: SystemTitle, key: KeyKind, fingerprint: KeyFingerprint) -> Self {
        Self::resume(peer, key, fingerprint, None)
    }

    /// A guard restored after a restart from a persisted
    /// [`last_accepted`](Self::last_accepted).
    #[must_use]
    pub const fn resume(
        peer: SystemTitle,
        key: KeyKind,
        fingerprint: KeyFingerprint,
        last_accepted: Option<InvocationCounter>,
    ) -> Self {
        Self {
            peer,
            key,
            fingerprint,
            last_accepted,
        }
    }

    /// Whether a frame carrying `ic` may be accepted. Changes nothing, so
    /// it can run before the (costlier) tag verification.
    ///
    /// # Errors
    /// [`CounterError::Replay`] if `ic` is at or below the last accepted
    /// IC, or is `0xFFFFFFFF` (GB 9.2.3.3.7.3).
    pub const fn check(&self, ic: InvocationCounter) -> Result<(), CounterError> {
        if ic.value() == InvocationCounter::RESERVED {
            return Err(CounterError::Replay);
        }
        match self.last_accepted {
            Some(last) if ic.value() <= last.value() => Err(CounterError::Replay),
            _ => Ok(()),
        }
    }

    /// Records a verified frame: the lowest acceptable IC becomes
    /// `proof`'s IC + 1. Returns that IC (for the caller to persist).
    ///
    /// # Errors
    /// [`CounterError::WrongGuard`] if `proof` is for another peer, key
    /// kind or key;
    /// [`CounterError::Replay`] if [`check`](Self::check) fails. The guard
    /// is unchanged on error.
    pub fn accept(&mut self, proof: &ReplayProof) -> Result<InvocationCounter, CounterError> {
        if proof.peer != self.peer || proof.key != self.key || proof.fingerprint != self.fingerprint
        {
            return Err(CounterError::WrongGuard);
        }
        self.check(proof.ic)?;
        self.last_accepted = Some(proof.ic);
        Ok(proof.ic)
    }

    /// The last accepted IC, `None` if none yet. Persist it to
    /// [`resume`](Self::resume) after a restart.
    #[must_use]
    pub const fn last_accepted(&self) -> Option<InvocationCounter> {
        self.last_accepted
    }

    /// The lowest IC [`check`](Self::check) would accept, `None` if none is
    /// left (the peer's key is exhausted). This is the value a server
    /// reports back in an IC-failure exception response.
    #[must_use]
    pub const fn lowest_acceptable(&self) -> Option<InvocationCounter> {
        let lowest = match self.last_accepted {
            None => 0,
            Some(last) => match last.value().checked_add(1) {
                Some(v) => v,
                None => return None,
            },
        };
        if lowest == InvocationCounter::RESERVED {
            None
        } else {
            Some(InvocationCounter::new(lowest))
        }
    }

    /// The peer whose frames this guard checks.
    #[must_use]
    pub const fn peer(&self) -> SystemTitle {
        self.peer
    }

    /// The key kind this guard is for.
    #[must_use]
    pub const fn key(&self) -> KeyKind {
        self.key
    }

    /// The fingerprint of the key this guard is for.
    #[must_use]
    pub const fn key_fingerprint(&self) -> KeyFingerprint {
        self.fingerprint
    }
}
