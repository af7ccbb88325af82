//! Security suite 0: protecting and unprotecting xDLMS APDUs with
//! AES-GCM-128 and a 12-octet tag (D-01..D-03, D-07).
//!
//! [`Suite0`] holds the expanded keys of one association: the global
//! unicast key, optionally the global broadcast and the dedicated key, and
//! the authentication key. It is built once and reused for every APDU; it
//! never allocates and wipes every key schedule on drop. With each key it
//! keeps GHASH's state after the first block of SC ‖ AK, which depends on
//! the keys alone (key-derived, wiped with the schedule), so a message
//! hashes one block fewer.
//!
//! # What it guarantees
//!
//! * IV = the **sender's** system title ‖ invocation counter (big-endian).
//!   On receive the title comes from the frame where the form carries one,
//!   otherwise from the caller.
//! * AAD: SC ‖ AK under authenticated encryption; SC ‖ AK ‖ APDU under
//!   authentication only (the APDU stays in clear); no tag under encryption
//!   only. The SC byte enters the AAD exactly as sent or received, so the
//!   broadcast bit is authenticated. For general-ciphering the header fields
//!   transaction-id … other-information (each as length ‖ value) follow
//!   SC ‖ AK, as the Green Book is quoted (docs/design.md, Q3).
//!   The AAD is streamed through GHASH; the APDU is never copied into an
//!   AAD buffer.
//! * Verify, then decrypt: on any failure the frame buffer holds what was
//!   received (or zeros), never plaintext, and every authentication failure
//!   is the one opaque [`AuthError`].
//! * The checks that need no key come first and are typed: structure,
//!   suite id, compression, the key-set bit, the reserved counter value,
//!   the security policy, key availability.
//! * The outer service tag is not covered by the GCM tag: after
//!   verification the protected APDU's own tag must match it (a
//!   glo-get-request must carry a get-request), else the plaintext is wiped
//!   and [`WireError::ServiceMismatch`] returned.
//! * Counters come from a [`CounterSource`], so one call cannot reuse an IV
//!   by accident; a counter is drawn only after every check that can fail
//!   before the cipher runs.
//!
//! # Example
//!
//! ```
//! use dlms_sec::counter::SendCounter;
//! use dlms_sec::key::{AuthenticationKey, GlobalUnicastEncryptionKey};
//! use dlms_sec::suite0::{PeerTitle, Protect, Suite0, Unprotect};
//! use dlms_sec::wire::CipheredForm;
//! use dlms_sec::{InvocationCounter, KeyKind, Protection, SecurityPolicy, SystemTitle};
//! # fn main() -> dlms_sec::Result<()> {
//! let guek = GlobalUnicastEncryptionKey::from_bytes([0x00; 16]);
//! let ak = AuthenticationKey::from_bytes([0xD0; 16]);
//! let client = Suite0::new(&guek, &ak);
//! let meter = Suite0::new(&guek, &ak);
//! let client_title = SystemTitle::new(*b"MMM\x00\x00\x00\x00\x01");
//!
//! // Client: protect a get-request under authenticated encryption.
//! let mut counter = SendCounter::volatile(InvocationCounter::new(1));
//! let request = Protect::unicast(Protection::AuthenticatedEncrypted, client_title);
//! let apdu = [0xC0, 0x01, 0x00, 0x00, 0x08, 0, 0, 1, 0, 0, 0xFF, 0x02, 0x00];
//! let mut frame = [0u8; 64];
//! let n = client.protect(&request, &mut counter, &apdu, &mut frame)?;
//! assert_eq!(frame[0], 0xC8); // glo-get-request
//!
//! // Meter: verify, decrypt, then advance the replay guard.
//! let mut guard = meter.replay_guard(client_title, KeyKind::GlobalUnicast)?;
//! let params = Unprotect {
//!     peer_system_title: PeerTitle::Expected(client_title),
//!     policy: SecurityPolicy::AuthenticatedEncrypted,
//! };
//! let received = meter.unprotect(&mut frame[..n], &params)?;
//! received.admit_into(&mut guard)?;
//! assert_eq!(received.apdu(), &apdu);
//! # Ok(()) }
//! ```

use core::fmt;

use zeroize::Zeroize;

pub mod cipher;
pub mod hls5;

use crate::counter::{CounterSource, KeyFingerprint, ReplayGuard, ReplayProof};
use crate::error::{AuthError, CounterError, Error, KeyError, Result, WireError};
use crate::gcm::{Aad, Gcm, TAG_LEN};
use crate::key::{
    AuthenticationKey, DedicatedKey, GlobalBroadcastEncryptionKey, GlobalUnicastEncryptionKey,
    encryption_key_bytes,
};
use crate::suite0::cipher::Suite0Cipher;
use crate::types::{Protection, SecurityPolicy};
use crate::wire::{
    CipheredForm, FrameKind, FrameLayout, HeaderFields, HeaderLayout, InvocationCounter, KeyFamily,
    KeyKind, KeySet, SecurityControl, SystemTitle, iv,
};

/// The SC octet of authentication-only frames under a unicast or
/// dedicated key, and under the broadcast key: the octets whose first GHASH
/// block a context folds in advance (with the encryption bit, too).
const UNICAST_SC: u8 = SecurityControl::new(Protection::Authenticated, KeySet::Unicast).bits();
const BROADCAST_SC: u8 = SecurityControl::new(Protection::Authenticated, KeySet::Broadcast).bits();

/// An encryption key's context, with the first GHASH block of its frames'
/// AAD (SC ‖ AK) folded in when there is an AK: `sc` is the SC octet of
/// its authentication-only frames.
fn keyed(key: &[u8; 16], sc: u8, ak: Option<&AuthenticationKey>) -> Gcm {
    let mut gcm = Gcm::new(key);
    if let Some(ak) = ak {
        gcm.fold_sc_ak(sc, ak.as_bytes());
    }
    gcm
}

/// How to protect one APDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protect<'a> {
    /// Authentication only, encryption only, or both.
    pub protection: Protection,
    /// Which key: global unicast, global broadcast (sets the key-set bit),
    /// or dedicated (ded- tags, general-ded-ciphering).
    pub key: KeyKind,
    /// Service-specific, general-glo/ded, or general-ciphering.
    pub form: CipheredForm<'a>,
    /// The sender's own system title: it goes into the IV.
    pub system_title: SystemTitle,
}

impl Protect<'_> {
    /// A service-specific request under the global unicast key: the common
    /// case (a glo-get-request, a glo-set-response, …).
    #[must_use]
    pub const fn unicast(protection: Protection, system_title: SystemTitle) -> Self {
        Self {
            protection,
            key: KeyKind::GlobalUnicast,
            form: CipheredForm::ServiceSpecific,
            system_title,
        }
    }
}

/// Where the sender's system title (the first part of the IV) comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerTitle {
    /// The peer the receiver expects: a frame carrying another title is
    /// refused ([`WireError::SystemTitleMismatch`]); forms that carry none
    /// (service-specific, general-glo/ded with an empty title) use this one.
    Expected(SystemTitle),
    /// Whatever title the frame carries (general-glo/ded, general-ciphering),
    /// from a sender the receiver does not know beforehand; a frame that
    /// carries none is refused ([`Error::Misuse`]). The title is reported
    /// in [`Unprotected::system_title`] and bound into the replay proof.
    CarriedByFrame,
}

/// How to unprotect received frames. There is no default: the caller
/// names the policy,
///
/// ```compile_fail
/// let _ = dlms_sec::suite0::Unprotect::default();
/// ```
///
/// and says whose title it expects, or that it takes the one the frame
/// carries; leaving it out does not say which:
///
/// ```compile_fail
/// use dlms_sec::SecurityPolicy;
/// use dlms_sec::suite0::Unprotect;
/// let _ = Unprotect {
///     peer_system_title: None,
///     policy: SecurityPolicy::AuthenticatedEncrypted,
/// };
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unprotect {
    /// Whose frames these are: the sender's system title enters the IV.
    pub peer_system_title: PeerTitle,
    /// The minimum protection accepted (D-07).
    pub policy: SecurityPolicy,
}

/// Expanded suite-0 keys for one association.
pub struct Suite0 {
    unicast: Gcm,
    broadcast: Option<Gcm>,
    dedicated: Option<Gcm>,
    pub(crate) ak: Option<AuthenticationKey>,
}

impl fmt::Debug for Suite0 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Suite0")
            .field("broadcast_key", &self.broadcast.is_some())
            .field("dedicated_key", &self.dedicated.is_some())
            .finish_non_exhaustive()
    }
}

impl Suite0 {
    /// Expands the global unicast key and keeps the authentication key.
    #[must_use]
    pub fn new(guek: &GlobalUnicastEncryptionKey, ak: &AuthenticationKey) -> Self {
        Self {
            unicast: keyed(encryption_key_bytes(guek), UNICAST_SC, Some(ak)),
            broadcast: None,
            dedicated: None,
            ak: Some(AuthenticationKey::from_bytes(*ak.as_bytes())),
        }
    }

    /// Expands the global unicast key alone, for a holder of the
    /// encryption key only (an S1SP holds no AK, R-05): it protects and
    /// unprotects frames under encryption only; anything authenticated is
    /// refused with [`KeyError::NoAuthenticationKey`] before any key is
    /// used or any counter value drawn.
    #[must_use]
    pub fn encryption_only(guek: &GlobalUnicastEncryptionKey) -> Self {
        Self {
            unicast: Gcm::new(encryption_key_bytes(guek)),
            broadcast: None,
            dedicated: None,
            ak: None,
        }
    }

    /// Adds the global broadcast key.
    #[must_use]
    pub fn with_broadcast_key(mut self, gbek: &GlobalBroadcastEncryptionKey) -> Self {
        self.broadcast = Some(keyed(
            encryption_key_bytes(gbek),
            BROADCAST_SC,
            self.ak.as_ref(),
        ));
        self
    }

    /// Installs the dedicated key of the current association, replacing any
    /// earlier one (whose schedule is wiped).
    pub fn set_dedicated_key(&mut self, dk: &DedicatedKey) {
        self.dedicated = Some(keyed(
            encryption_key_bytes(dk),
            UNICAST_SC,
            self.ak.as_ref(),
        ));
    }

    /// Forgets the dedicated key (end of the association).
    pub fn clear_dedicated_key(&mut self) {
        self.dedicated = None;
    }

    /// Whether the context holds a key of this kind.
    #[must_use]
    pub const fn has_key(&self, kind: KeyKind) -> bool {
        match kind {
            KeyKind::GlobalUnicast => true,
            KeyKind::GlobalBroadcast => self.broadcast.is_some(),
            KeyKind::Dedicated => self.dedicated.is_some(),
        }
    }

    /// The fingerprint of the key of `kind`: what its replay proofs and
    /// guards carry.
    ///
    /// # Errors
    /// [`Error::KeyNotAvailable`] when the context holds no such key.
    pub fn key_fingerprint(&self, kind: KeyKind) -> Result<KeyFingerprint> {
        KeySource::key_fingerprint(self, kind)
    }

    /// A fresh replay guard for frames from `peer` under this context's
    /// key of `kind`: proofs from any other key leave it alone.
    ///
    /// # Errors
    /// [`Error::KeyNotAvailable`] when the context holds no such key.
    pub fn replay_guard(&self, peer: SystemTitle, kind: KeyKind) -> Result<ReplayGuard> {
        Ok(ReplayGuard::new(peer, kind, self.key_fingerprint(kind)?))
    }

    /// The exact length of the frame [`Self::protect`] writes for an APDU.
    ///
    /// # Errors
    /// As [`Self::protect`], except those about the buffer and the counter.
    pub fn frame_len(&self, req: &Protect<'_>, apdu: &[u8]) -> Result<usize> {
        Ok(layout(req, plain_tag(req, apdu)?, apdu.len())?.total)
    }

    /// The length of the header [`Self::protect_prepared`] expects in front
    /// of an APDU of `apdu_len` octets (everything before the payload).
    ///
    /// # Errors
    /// As [`Self::frame_len`].
    pub fn header_len(&self, req: &Protect<'_>, apdu_len: usize) -> Result<usize> {
        // The header's length does not depend on which service the tag names.
        let any_service = 0xC0;
        Ok(layout(req, any_service, apdu_len)?.header_len)
    }

    /// Protects `apdu` and writes the whole ciphered APDU to the start of
    /// `out`; returns its length. Draws one counter value from `counter`.
    /// Under encryption the APDU is read once, as the keystream is applied;
    /// under authentication only it is copied into the frame.
    ///
    /// # Errors
    /// * [`Error::KeyNotAvailable`] when `req.key` is not in this context;
    /// * [`Error::Unsupported`] when the APDU's tag has no service-specific
    ///   ciphered form (data-notification: use a general form);
    /// * [`Error::Misuse`] for an empty APDU in the service-specific form
    ///   or a dedicated key in general-ciphering;
    /// * [`Error::BufferTooSmall`] when `out` is short (no counter is drawn);
    /// * [`Error::Counter`] when the counter is exhausted or cannot persist.
    pub fn protect(
        &self,
        req: &Protect<'_>,
        counter: &mut impl CounterSource,
        apdu: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        self.protect_core(req, counter, apdu, out)
    }

    /// Protects, without moving it, the APDU that the caller built at
    /// `buf[header_len..header_len + apdu_len]`, where `header_len` is
    /// [`Self::header_len`]: the zero-copy path for a transmit buffer. The
    /// frame is `buf[..len]`.
    ///
    /// # Errors
    /// As [`Self::protect`]; [`Error::Misuse`] when `buf` cannot hold the
    /// APDU where it should be.
    pub fn protect_prepared(
        &self,
        req: &Protect<'_>,
        counter: &mut impl CounterSource,
        buf: &mut [u8],
        apdu_len: usize,
    ) -> Result<usize> {
        self.gcm(req.key)?;
        if req.protection.is_authenticated() {
            self.ak()?;
        }
        // One layout computation: the header's length does not depend on
        // which service the APDU's tag names, so the tag is checked apart.
        let any_service = 0xC0;
        let layout = layout(req, any_service, apdu_len)?;
        let header_len = layout.header_len;
        let apdu = header_len
            .checked_add(apdu_len)
            .and_then(|end| buf.get(header_len..end))
            .ok_or(Error::Misuse(
                "the buffer does not hold the APDU after the header",
            ))?;
        // The outer tag is the APDU's own, in its ciphered form.
        let layout = layout.for_plain_tag(&req.form, req.key, plain_tag(req, apdu)?)?;
        if buf.len() < layout.total {
            return Err(Error::BufferTooSmall {
                required: layout.total,
            });
        }
        let plan = Plan {
            req,
            layout,
            apdu_len,
        };
        let ic = counter.next_counter()?;
        self.finish(&plan, ic, None, buf)
    }

    /// Protects the APDU held in `buf[..apdu_len]` in place: it is moved
    /// right by the header length and ciphered there. Returns the frame
    /// length; the frame is `buf[..len]`.
    ///
    /// # Errors
    /// As [`Self::protect`]; [`Error::Misuse`] when `apdu_len` exceeds
    /// `buf.len()`.
    pub fn protect_in_place(
        &self,
        req: &Protect<'_>,
        counter: &mut impl CounterSource,
        buf: &mut [u8],
        apdu_len: usize,
    ) -> Result<usize> {
        let apdu = buf
            .get(..apdu_len)
            .ok_or(Error::Misuse("apdu_len exceeds the buffer"))?;
        let plan = self.plan(req, apdu, buf.len())?;
        let ic = counter.next_counter()?;
        buf.copy_within(..apdu_len, plan.layout.header_len);
        self.finish(&plan, ic, None, buf)
    }

    /// Verifies and decrypts the ciphered APDU that fills `frame`, in place.
    /// The plaintext APDU is returned as a part of `frame`.
    ///
    /// Checks, in order: structure; suite 0, no compression, some
    /// protection; the key-set bit; the counter is not the reserved
    /// `0xFFFFFFFF`; the policy; the key; the system title; then the tag,
    /// and only then decrypts; then the inner APDU tag against a
    /// service-specific outer tag.
    ///
    /// Replay is the caller's [`ReplayGuard`]'s
    /// to judge, with the proof in the result.
    ///
    /// # Errors
    /// [`Error::Wire`], [`Error::Unsupported`], [`Error::Counter`] (reserved
    /// counter value), [`Error::PolicyViolation`], [`Error::KeyNotAvailable`],
    /// [`Error::Misuse`] (no title in the frame and none given), and
    /// [`Error::Auth`] for every authentication failure. After any error
    /// `frame` holds what was received, or zeros where plaintext had been
    /// produced.
    pub fn unprotect<'b>(&self, frame: &'b mut [u8], req: &Unprotect) -> Result<Unprotected<'b>> {
        self.unprotect_core(frame, req)
    }

    /// As [`Self::unprotect`], with `check` run on the key the frame names
    /// and its counter after the structural checks and before any key is
    /// used or any byte of `frame` changes: a receiver's stateless replay
    /// check ([`ReplayGuard::check`]) without parsing the frame twice.
    ///
    /// # Errors
    /// As [`Self::unprotect`], and whatever `check` returns.
    pub fn unprotect_checked<'b>(
        &self,
        frame: &'b mut [u8],
        req: &Unprotect,
        check: impl FnOnce(KeyKind, InvocationCounter) -> Result<()>,
    ) -> Result<Unprotected<'b>> {
        self.unprotect_core_checked(frame, req, check)
    }
}

/// Where the protection code finds its keys: a [`Suite0`] context, or the
/// one-command view the DCO provider builds from unpacked records.
pub(crate) trait KeySource {
    /// What ciphers under an encryption key: this crate's [`Gcm`], or a
    /// module's (see [`crate::suite0::cipher`]).
    type Cipher: Suite0Cipher;
    /// The encryption key of `kind`.
    fn gcm(&self, kind: KeyKind) -> Result<&Self::Cipher>;
    /// The authentication key.
    fn ak(&self) -> Result<&[u8; 16]>;

    /// The fingerprint of the key of `kind` (see [`KeyFingerprint`]).
    fn key_fingerprint(&self, kind: KeyKind) -> Result<KeyFingerprint> {
        self.gcm(kind)?.key_fingerprint()
    }

    /// Every check that can fail before a counter value is drawn.
    fn plan<'r>(&self, req: &'r Protect<'r>, apdu: &[u8], room: usize) -> Result<Plan<'r>> {
        self.gcm(req.key)?;
        if req.protection.is_authenticated() {
            self.ak()?;
        }
        let layout = layout(req, plain_tag(req, apdu)?, apdu.len())?;
        if room < layout.total {
            return Err(Error::BufferTooSmall {
                required: layout.total,
            });
        }
        Ok(Plan {
            req,
            layout,
            apdu_len: apdu.len(),
        })
    }

    /// Writes the header, then ciphers the payload at its place in `frame`
    /// (read from `src` when given, else already there) and writes the tag.
    fn finish(
        &self,
        plan: &Plan<'_>,
        ic: InvocationCounter,
        src: Option<&[u8]>,
        buf: &mut [u8],
    ) -> Result<usize> {
        let req = plan.req;
        let gcm = self.gcm(req.key)?;
        let layout = &plan.layout;
        let frame = buf.get_mut(..layout.total).ok_or(Error::BufferTooSmall {
            required: layout.total,
        })?;
        let sc = security_control(req);
        // The layout `plan` computed; the header goes out in one pass.
        let header = HeaderFields {
            form: &req.form,
            key: req.key,
            own_title: &req.system_title,
            sc,
            ic,
        };
        let fields = layout.emit(&header, frame)?;
        let (head, body) = frame.split_at_mut(layout.header_len);
        let (payload, tag_out) = body.split_at_mut(plan.apdu_len);
        let iv = iv(&req.system_title, ic);
        let fields = head.get(fields).unwrap_or_default();
        let ak = self.ak();
        let tag = match req.protection {
            Protection::Authenticated => {
                // The tag is taken over `src` when given: the same octets
                // as the copy in the frame, read where they already were
                // (hashing the copy reloaded its blocks straight after
                // they were stored).
                let apdu = match src {
                    Some(src) => {
                        copy_blocks(payload, src);
                        src
                    }
                    None => payload,
                };
                Some(gcm.gmac(&iv, &Aad::suite0(sc.bits(), ak?, &[fields, apdu]))?)
            }
            Protection::AuthenticatedEncrypted => {
                Some(gcm.seal(&iv, &Aad::suite0(sc.bits(), ak?, &[fields]), src, payload)?)
            }
            Protection::Encrypted => {
                gcm.apply_keystream(&iv, src, payload)?;
                None
            }
        };
        if let (Some(tag), Some(out)) = (tag, tag_out.first_chunk_mut::<TAG_LEN>()) {
            put_tag(out, &tag);
        }
        Ok(layout.total)
    }

    /// The body of [`Suite0::protect`].
    fn protect_core(
        &self,
        req: &Protect<'_>,
        counter: &mut impl CounterSource,
        apdu: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        let plan = self.plan(req, apdu, out.len())?;
        let ic = counter.next_counter()?;
        self.finish(&plan, ic, Some(apdu), out)
    }

    /// The body of [`Suite0::unprotect`].
    fn unprotect_core<'b>(&self, frame: &'b mut [u8], req: &Unprotect) -> Result<Unprotected<'b>> {
        self.unprotect_core_checked(frame, req, |_, _| Ok(()))
    }

    /// The body of [`Suite0::unprotect_checked`].
    fn unprotect_core_checked<'b>(
        &self,
        frame: &'b mut [u8],
        req: &Unprotect,
        check: impl FnOnce(KeyKind, InvocationCounter) -> Result<()>,
    ) -> Result<Unprotected<'b>> {
        let layout = FrameLayout::parse(frame)?;
        let sc = layout.security_control;
        let protection = sc.check_suite0()?;
        let key = key_kind(&layout.kind, sc)?;
        let ic = layout.invocation_counter;
        if ic.value() == InvocationCounter::RESERVED {
            return Err(Error::Counter(CounterError::Replay));
        }
        check(key, ic)?;
        if !req.policy.permits(protection) {
            return Err(Error::PolicyViolation {
                required: req.policy,
                received: protection,
            });
        }
        let gcm = self.gcm(key)?;
        let peer = match (layout.system_title, req.peer_system_title) {
            (Some(carried), PeerTitle::Expected(expected)) if carried != expected => {
                return Err(WireError::SystemTitleMismatch.into());
            }
            (Some(title), _) | (None, PeerTitle::Expected(title)) => title,
            (None, PeerTitle::CarriedByFrame) => {
                return Err(Error::Misuse(
                    "this frame carries no system title: supply the peer's",
                ));
            }
        };
        // Before any plaintext exists: the key a proof will name.
        let fingerprint = if protection.is_authenticated() {
            Some(self.key_fingerprint(key)?)
        } else {
            None
        };
        let iv = iv(&peer, ic);
        let (head, body) = frame.split_at_mut(layout.payload.start);
        let payload_len = layout.payload.len();
        let (payload, tag) = body.split_at_mut(payload_len);
        let fields = head.get(layout.aad_fields.clone()).unwrap_or_default();
        let ak = self.ak();
        match protection {
            Protection::Authenticated => {
                let tag = received_tag(tag)?;
                let mut expected =
                    gcm.gmac(&iv, &Aad::suite0(sc.bits(), ak?, &[fields, payload]))?;
                let ok = bool::from(crate::gcm::tag_eq(&expected, tag));
                expected.zeroize();
                if !ok {
                    return Err(AuthError.into());
                }
            }
            Protection::AuthenticatedEncrypted => {
                let tag = received_tag(tag)?;
                gcm.open(&iv, &Aad::suite0(sc.bits(), ak?, &[fields]), payload, tag)?;
            }
            Protection::Encrypted => gcm.apply_keystream(&iv, None, payload)?,
        }
        if let FrameKind::Service(service) = layout.kind {
            let inner = payload.first().copied();
            if inner != Some(service.plain_tag()) {
                if protection.is_encrypted() {
                    payload.zeroize();
                }
                return Err(WireError::ServiceMismatch {
                    ciphered: service.tag(),
                }
                .into());
            }
        }
        let proof = fingerprint.map(|f| ReplayProof::new(peer, key, f, ic));
        Ok(Unprotected {
            apdu: payload,
            kind: layout.kind,
            security_control: sc,
            key,
            peer,
            invocation_counter: ic,
            proof,
        })
    }
}

impl KeySource for Suite0 {
    type Cipher = Gcm;

    fn gcm(&self, kind: KeyKind) -> Result<&Gcm> {
        match kind {
            KeyKind::GlobalUnicast => Some(&self.unicast),
            KeyKind::GlobalBroadcast => self.broadcast.as_ref(),
            KeyKind::Dedicated => self.dedicated.as_ref(),
        }
        .ok_or(Error::KeyNotAvailable(kind))
    }

    fn ak(&self) -> Result<&[u8; 16]> {
        self.ak
            .as_ref()
            .map(|ak| ak.as_bytes())
            .ok_or(Error::Key(KeyError::NoAuthenticationKey))
    }
}

/// One encryption key and the AK, borrowed: the DCO command path protects
/// with keys it has just unpacked, without building a [`Suite0`].
pub(crate) struct OneKey<'a> {
    pub(crate) kind: KeyKind,
    pub(crate) gcm: &'a Gcm<&'a aes::Aes128Enc>,
    pub(crate) ak: &'a [u8; 16],
}

impl<'a> KeySource for OneKey<'a> {
    type Cipher = Gcm<&'a aes::Aes128Enc>;

    fn gcm(&self, kind: KeyKind) -> Result<&Self::Cipher> {
        if kind == self.kind {
            Ok(self.gcm)
        } else {
            Err(Error::KeyNotAvailable(kind))
        }
    }

    fn ak(&self) -> Result<&[u8; 16]> {
        Ok(self.ak)
    }
}

/// What `plan` settled for a request before a counter value is drawn.
pub(crate) struct Plan<'r> {
    req: &'r Protect<'r>,
    layout: HeaderLayout,
    apdu_len: usize,
}

/// The frame's layout for a request, a plain tag and an APDU length.
// Inlined on hosts: returned through memory, the layout's fields are
// reloaded as 16-octet words over their 8-octet stores (a store-forwarding
// stall). Not on the meter, where the copies would cost flash.
#[cfg_attr(target_pointer_width = "64", inline)]
fn layout(req: &Protect<'_>, plain_tag: u8, apdu_len: usize) -> Result<HeaderLayout> {
    HeaderLayout::new(
        &req.form,
        req.key,
        plain_tag,
        apdu_len,
        req.protection.is_authenticated(),
    )
}

/// Writes the tag into the frame as three 32-bit words: an array copy to
/// a place of no known alignment is a `memcpy` call on a 32-bit meter.
fn put_tag(out: &mut [u8; TAG_LEN], tag: &[u8; TAG_LEN]) {
    let (d, _) = out.as_chunks_mut::<4>();
    let (s, _) = tag.as_chunks::<4>();
    if let ([d0, d1, d2], [s0, s1, s2]) = (d, s) {
        *d0 = u32::from_ne_bytes(*s0).to_ne_bytes();
        *d1 = u32::from_ne_bytes(*s1).to_ne_bytes();
        *d2 = u32::from_ne_bytes(*s2).to_ne_bytes();
    }
}

/// Copies `src` into `dst` 16 octets at a time. Plain vector moves: some
/// hosts' `memcpy` (`rep movsb`) is several times slower for large copies
/// at some alignments, and this copy is on the authentication-only path.
fn copy_blocks(dst: &mut [u8], src: &[u8]) {
    let mut d = dst.chunks_exact_mut(16);
    let mut s = src.chunks_exact(16);
    for (d, s) in d.by_ref().zip(s.by_ref()) {
        let block: [u8; 16] = s.try_into().unwrap_or([0; 16]);
        d.copy_from_slice(&block);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

/// A verified (or, under encryption only, decrypted) APDU.
#[must_use = "the replay proof must be offered to the replay guard"]
pub struct Unprotected<'b> {
    apdu: &'b mut [u8],
    kind: FrameKind,
    security_control: SecurityControl,
    key: KeyKind,
    peer: SystemTitle,
    invocation_counter: InvocationCounter,
    proof: Option<ReplayProof>,
}

impl fmt::Debug for Unprotected<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The APDU is plaintext: only its length is shown.
        f.debug_struct("Unprotected")
            .field("apdu_len", &self.apdu.len())
            .field("kind", &self.kind)
            .field("security_control", &self.security_control)
            .field("key", &self.key)
            .field("peer", &self.peer)
            .field("invocation_counter", &self.invocation_counter)
            .finish()
    }
}

impl<'b> Unprotected<'b> {
    /// The plaintext APDU (a part of the frame buffer).
    #[must_use]
    pub fn apdu(&self) -> &[u8] {
        self.apdu
    }

    /// The plaintext APDU, consuming the result.
    #[must_use]
    pub fn into_apdu(self) -> &'b mut [u8] {
        self.apdu
    }

    /// Wipes the plaintext APDU: what a caller does when it refuses a
    /// verified frame after all (a replay, a failed audit record), so the
    /// frame buffer is left with what was received, or zeros.
    pub fn discard(self) {
        self.apdu.zeroize();
    }

    /// The family and outer tag of the frame.
    #[must_use]
    pub const fn kind(&self) -> FrameKind {
        self.kind
    }

    /// The security control byte as received.
    #[must_use]
    pub const fn security_control(&self) -> SecurityControl {
        self.security_control
    }

    /// The protection the frame carried.
    #[must_use]
    pub const fn protection(&self) -> Option<Protection> {
        self.security_control.protection()
    }

    /// The key that protected it.
    #[must_use]
    pub const fn key(&self) -> KeyKind {
        self.key
    }

    /// The sender's system title used in the IV.
    #[must_use]
    pub const fn system_title(&self) -> SystemTitle {
        self.peer
    }

    /// The frame's invocation counter.
    #[must_use]
    pub const fn invocation_counter(&self) -> InvocationCounter {
        self.invocation_counter
    }

    /// Proof that the frame authenticated, for
    /// [`ReplayGuard::accept`]. `None` under encryption only: an
    /// unauthenticated frame cannot advance a guard (check it with
    /// [`ReplayGuard::check`], or require authentication by policy).
    /// [`admit_into`](Self::admit_into) does either, as the frame allows.
    #[must_use]
    pub const fn replay_proof(&self) -> Option<&ReplayProof> {
        self.proof.as_ref()
    }

    /// Offers the frame to `guard`: an authenticated frame advances it
    /// ([`ReplayGuard::accept`]). A frame under encryption only carries no
    /// tag, so nothing vouches for its counter: it is refused
    /// ([`CounterError::Unauthenticated`]) and the guard stays where it was.
    /// A caller that accepts such frames all the same sees their counter
    /// in [`Self::invocation_counter`] and may [`ReplayGuard::check`] it.
    ///
    /// # Errors
    /// [`CounterError::Replay`] if the counter is not above the guard's
    /// last accepted one; [`CounterError::WrongGuard`] if the frame is
    /// from another peer or under another key than the guard's;
    /// [`CounterError::Unauthenticated`] under encryption only. The guard
    /// is unchanged on error.
    pub fn admit_into(&self, guard: &mut ReplayGuard) -> core::result::Result<(), CounterError> {
        match &self.proof {
            Some(proof) => guard.accept(proof).map(|_| ()),
            None => Err(CounterError::Unauthenticated),
        }
    }
}

/// The plain tag a service-specific form derives its ciphered tag from.
fn plain_tag(req: &Protect<'_>, apdu: &[u8]) -> Result<u8> {
    match (req.form, apdu.first()) {
        (_, Some(&t)) => Ok(t),
        (CipheredForm::ServiceSpecific, None) => Err(Error::Misuse(
            "an empty APDU has no service-specific ciphered form",
        )),
        (_, None) => Ok(0),
    }
}

/// The SC byte for a request: the key-set bit only for the broadcast key
/// outside general-ciphering (where key-info names the key and the bit
/// must be zero).
const fn security_control(req: &Protect<'_>) -> SecurityControl {
    let key_set = match (req.key, req.form) {
        (
            KeyKind::GlobalBroadcast,
            CipheredForm::ServiceSpecific | CipheredForm::General { .. },
        ) => KeySet::Broadcast,
        _ => KeySet::Unicast,
    };
    SecurityControl::new(req.protection, key_set)
}

/// Which key a received frame names, with the key-set rules.
fn key_kind(kind: &FrameKind, sc: SecurityControl) -> Result<KeyKind> {
    let global = match sc.key_set() {
        KeySet::Unicast => KeyKind::GlobalUnicast,
        KeySet::Broadcast => KeyKind::GlobalBroadcast,
    };
    let dedicated = match kind {
        FrameKind::Service(s) => s.family == KeyFamily::Dedicated,
        FrameKind::GeneralDed => true,
        FrameKind::GeneralGlo => false,
        FrameKind::GeneralCiphering { key } => {
            if sc.key_set() == KeySet::Broadcast {
                return Err(WireError::InvalidKeySet.into());
            }
            return Ok(*key);
        }
    };
    match (dedicated, sc.key_set()) {
        (true, KeySet::Broadcast) => Err(WireError::InvalidKeySet.into()),
        (true, KeySet::Unicast) => Ok(KeyKind::Dedicated),
        (false, _) => Ok(global),
    }
}

// The frame's tag field and the cipher's tag are one length.
const _: () = assert!(crate::wire::AUTH_TAG_LEN == TAG_LEN);

fn received_tag(tag: &[u8]) -> Result<&[u8; TAG_LEN]> {
    <&[u8; TAG_LEN]>::try_from(tag).map_err(|_| Error::Wire(WireError::Truncated))
}
