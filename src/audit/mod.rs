//! Audit events and the audit plug point (R-20).
//!
//! SMETS1 requires an application transaction log for every action that
//! creates or processes a symmetric key. This module gives that log a typed
//! shape:
//!
//! * [`AuditEvent`]: one key-management action ([`AuditAction`]), its
//!   [`Outcome`], the caller's [`Timestamp`] and whichever of device,
//!   client, key role, generation, KEK check value and invocation counter
//!   apply. It is `Copy` and its fields are all public metadata: **an event
//!   cannot carry key bytes, plaintext or ciphertext**, because no field has
//!   a type that could hold them (R-15).
//! * [`AuditContext`]: who acted ([`Principal`], an operator or a service
//!   identity), on which node ([`NodeName`]), for which request
//!   ([`RequestId`]) and campaign ([`CampaignId`]), and why ([`Reason`]).
//!   Fixed-size, bounded printable-ASCII names, checked when made. An event
//!   without context has the canonical encoding version 1 (33 octets, as
//!   before the context existed); an event with any context field has
//!   version 2 (at most [`EVENT_MAX_LEN`] octets). Each event has exactly
//!   one encoding, and [`AuditEvent::decode`] refuses any other, so logs
//!   of either version, or both, verify. A [`Recorder`] can carry a
//!   context and fills it into the events recorded through it.
//! * [`AuditSink`]: the plug point that receives every event. Recording is
//!   fallible, and a caller treats a failed record as a failure of the
//!   action it records: an action that cannot be logged does not happen
//!   (fail closed).
//! * [`AuditChain`]: the tamper-evident chain. Each record gets an AES-CMAC,
//!   truncated to 96 bits, under an [`AuditKey`](crate::key::AuditKey) over the chain's
//!   random identity ([`ChainId`]), its sequence number, the previous
//!   record's MAC and the record's canonical bytes ([`AuditEvent::encode`]).
//!   A verifier that holds
//!   the key finds the first altered, removed, reordered or inserted
//!   record. It is allocation-free, so a meter can chain records into its
//!   own flash log.
//! * `dlms_sec_services::jsonl`: a sink that writes one JSON line per record,
//!   chained, and the verifier that reads it back.
//!
//! The library never reads a clock: the caller passes the time (compare
//! smoltcp's `Instant`).
//!
//! Which call an event stands for (the caller records it, with the outcome):
//!
//! | action | after |
//! |---|---|
//! | [`Generated`](AuditAction::Generated) | `CryptoProvider::generate` |
//! | [`Packaged`](AuditAction::Packaged) | `CryptoProvider::package` |
//! | [`Unpacked`](AuditAction::Unpacked) | a provider unpacks a record (`verify`, `protect`, `wrap_for_transfer`) |
//! | [`Wrapped`](AuditAction::Wrapped) | `DcoProvider::wrap_for_transfer` |
//! | [`TransferSent`](AuditAction::TransferSent) / [`TransferAccepted`](AuditAction::TransferAccepted) | the key_transfer action request is sent / its response verifies |
//! | [`Activated`](AuditAction::Activated) | `KeyStore::activate` |
//! | [`RotationFailed`](AuditAction::RotationFailed) | a rotation is abandoned (`discard_pending`) |
//! | [`AccessRefused`](AuditAction::AccessRefused) | a provider or store refuses an operation |
//! | [`CorruptionDetected`](AuditAction::CorruptionDetected) | [`KeyError::Corrupted`](crate::error::KeyError::Corrupted) on unpacking (R-17) |
//! | [`AuthenticationFailed`](AuditAction::AuthenticationFailed) | [`Error::Auth`] from unprotect, HLS-5 or unwrap |
//! | [`ReplayRejected`](AuditAction::ReplayRejected) | a replay guard refuses a counter |
//! | [`CounterNearExhaustion`](AuditAction::CounterNearExhaustion) / [`CounterExhausted`](AuditAction::CounterExhausted) | a send counter nears / reaches its limit |
//! | [`RecordAccessed`](AuditAction::RecordAccessed) | a person is given packaged records for support, or refused them |

use core::fmt;

use crate::error::{Error, Result, WireError};
use crate::key::package::{KeyCheckValue, RecordId};
use crate::types::Client;
use crate::types::KeyRole;
use crate::wire::axdr::{Reader, Writer};
use crate::wire::{InvocationCounter, SystemTitle};

/// Seconds since the Unix epoch (1970-01-01T00:00:00Z), UTC, as the caller
/// read them from its clock. The library never reads a clock itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(pub u64);

macro_rules! named_enum {
    (
        $(#[$doc:meta])*
        $(@$ne:ident)? pub enum $name:ident {
            $( $(#[$vdoc:meta])* $variant:ident = ($code:literal, $text:literal), )+
        }
        const COUNT = $count:literal;
    ) => {
        $(#[$doc])*
        $(#[$ne])?
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vdoc])* $variant, )+
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL: [Self; $count] = [$( Self::$variant, )+];

            /// The stable one-octet code used in the canonical encoding.
            #[must_use]
            pub const fn code(self) -> u8 {
                match self {
                    $( Self::$variant => $code, )+
                }
            }

            /// The value of a [`Self::code`].
            #[must_use]
            pub const fn from_code(code: u8) -> Option<Self> {
                match code {
                    $( $code => Some(Self::$variant), )+
                    _ => None,
                }
            }

            /// The stable lower-case name written to logs.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }

            /// The value of a [`Self::as_str`] name.
            #[must_use]
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $( $text => Some(Self::$variant), )+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum! {
    /// A key-management action (R-20). Codes and names are stable: logs
    /// written today must verify and read the same tomorrow.
    @non_exhaustive pub enum AuditAction {
        /// A key was generated (inside the provider).
        Generated = (1, "generated"),
        /// A key was packaged under its KEK.
        Packaged = (2, "packaged"),
        /// A packaged key was unpacked for use.
        Unpacked = (3, "unpacked"),
        /// A key was wrapped under the MK for key_transfer.
        Wrapped = (4, "wrapped"),
        /// A key_transfer was sent to the device.
        TransferSent = (5, "transfer-sent"),
        /// The device accepted a key_transfer.
        TransferAccepted = (6, "transfer-accepted"),
        /// A pending generation became the active one.
        Activated = (7, "activated"),
        /// A key rotation failed or was abandoned.
        RotationFailed = (8, "rotation-failed"),
        /// An operation on a key was refused (wrong KEK holder, a role the
        /// provider does not serve, the Public client).
        AccessRefused = (9, "access-refused"),
        /// A packaged key failed its check (R-17).
        CorruptionDetected = (10, "corruption-detected"),
        /// A tag, an HLS-5 response or an unwrap integrity check failed.
        AuthenticationFailed = (11, "authentication-failed"),
        /// A replayed invocation counter was rejected.
        ReplayRejected = (12, "replay-rejected"),
        /// A send counter is close to its limit: rotate the key.
        CounterNearExhaustion = (13, "counter-near-exhaustion"),
        /// A send counter reached its limit: nothing more is protected
        /// under the key.
        CounterExhausted = (14, "counter-exhausted"),
        /// An audit log that ended in a partial record (a crash while it
        /// was written) was recovered: the partial record was cut off and
        /// its sequence number skipped. The one record that may follow a
        /// gap of one.
        LogRecovered = (15, "log-recovered"),
        /// A person was given packaged records for support ((d)(iv)); a
        /// refused request (no principal, not a person, not a support
        /// reason) is recorded with [`Outcome::Refused`].
        RecordAccessed = (16, "record-accessed"),
    }
    const COUNT = 16;
}

named_enum! {
    /// How the action ended.
    pub enum Outcome {
        /// It was done.
        Success = (1, "success"),
        /// It was attempted and failed (a check, the device, the provider).
        Failure = (2, "failure"),
        /// It was not attempted: policy or access control refused it.
        Refused = (3, "refused"),
    }
    const COUNT = 3;
}

/// Length of a version 1 canonical encoding ([`AuditEvent::encode`]): an
/// event with no context field.
pub const EVENT_LEN: usize = 33;

/// The longest canonical encoding (version 2 with every context field at
/// its longest).
pub const EVENT_MAX_LEN: usize = EVENT_LEN
    + 1
    + (2 + PrincipalName::MAX_LEN)
    + (1 + NodeName::MAX_LEN)
    + REQUEST_ID_LEN
    + (1 + CampaignId::MAX_LEN)
    + 1;

/// Version octet of an event without context.
const EVENT_V1: u8 = 1;

/// Version octet of an event with at least one context field.
const EVENT_V2: u8 = 2;

/// Presence flags of version 2's context.
mod context_flag {
    pub(super) const PRINCIPAL: u8 = 0x01;
    pub(super) const NODE: u8 = 0x02;
    pub(super) const REQUEST: u8 = 0x04;
    pub(super) const CAMPAIGN: u8 = 0x08;
    pub(super) const REASON: u8 = 0x10;
    pub(super) const ALL: u8 = 0x1F;
}

/// Presence flags of the canonical encoding.
mod flag {
    pub(super) const DEVICE: u8 = 0x01;
    pub(super) const CLIENT: u8 = 0x02;
    pub(super) const ROLE: u8 = 0x04;
    pub(super) const GENERATION: u8 = 0x08;
    pub(super) const KEK: u8 = 0x10;
    pub(super) const COUNTER: u8 = 0x20;
    pub(super) const ALL: u8 = 0x3F;
}

/// One audit record: what was done to which key, when, and how it ended
/// (R-20).
///
/// Every field is public metadata. There is no field for key bytes,
/// plaintext or ciphertext, so an event cannot leak them into a log
/// (R-15); the KEK appears only as its 3-octet check value.
///
/// Build one with [`AuditEvent::new`] and the `with_*` methods:
///
/// ```
/// use dlms_sec::audit::{AuditAction, AuditEvent, Outcome, Timestamp};
/// use dlms_sec::types::Client;
/// use dlms_sec::key::KeyRole;
/// use dlms_sec::SystemTitle;
///
/// let event = AuditEvent::new(AuditAction::Packaged, Outcome::Success, Timestamp(1_700_000_000))
///     .with_device(SystemTitle::new(*b"MMM\x00\x00\x00\x00\x07"))
///     .with_client(Client::Management)
///     .with_role(KeyRole::Authentication)
///     .with_generation(1);
/// assert_eq!(event.action.as_str(), "packaged");
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AuditEvent {
    /// What was done.
    pub action: AuditAction,
    /// How it ended.
    pub outcome: Outcome,
    /// When, by the caller's clock.
    pub time: Timestamp,
    /// The device's system title.
    pub device: Option<SystemTitle>,
    /// The client whose key it is (any of the five, Public included: a
    /// refused request names it).
    pub client: Option<Client>,
    /// The key role.
    pub role: Option<KeyRole>,
    /// The key's generation.
    pub generation: Option<u32>,
    /// The check value of the KEK involved.
    pub kek: Option<KeyCheckValue>,
    /// The invocation counter involved (replay, exhaustion).
    pub invocation_counter: Option<InvocationCounter>,
    /// Who acted, on which node, for which request and campaign, and why.
    /// An event with any of these encodes as version 2.
    pub context: AuditContext,
}

impl AuditEvent {
    /// An event with only the action, the outcome and the time.
    #[must_use]
    pub const fn new(action: AuditAction, outcome: Outcome, time: Timestamp) -> Self {
        Self {
            action,
            outcome,
            time,
            device: None,
            client: None,
            role: None,
            generation: None,
            kek: None,
            invocation_counter: None,
            context: AuditContext::new(),
        }
    }

    /// With the device's system title.
    #[must_use]
    pub const fn with_device(mut self, device: SystemTitle) -> Self {
        self.device = Some(device);
        self
    }

    /// With the client.
    #[must_use]
    pub const fn with_client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// With the key role.
    #[must_use]
    pub const fn with_role(mut self, role: KeyRole) -> Self {
        self.role = Some(role);
        self
    }

    /// With the key generation.
    #[must_use]
    pub const fn with_generation(mut self, generation: u32) -> Self {
        self.generation = Some(generation);
        self
    }

    /// With the KEK's check value.
    #[must_use]
    pub const fn with_kek(mut self, kek: KeyCheckValue) -> Self {
        self.kek = Some(kek);
        self
    }

    /// With an invocation counter.
    #[must_use]
    pub const fn with_counter(mut self, counter: InvocationCounter) -> Self {
        self.invocation_counter = Some(counter);
        self
    }

    /// With the principal who acted.
    #[must_use]
    pub const fn with_principal(mut self, principal: Principal) -> Self {
        self.context.principal = Some(principal);
        self
    }

    /// With the node that acted.
    #[must_use]
    pub const fn with_node(mut self, node: NodeName) -> Self {
        self.context.node = Some(node);
        self
    }

    /// With the request id.
    #[must_use]
    pub const fn with_request(mut self, request: RequestId) -> Self {
        self.context.request = Some(request);
        self
    }

    /// With the campaign id.
    #[must_use]
    pub const fn with_campaign(mut self, campaign: CampaignId) -> Self {
        self.context.campaign = Some(campaign);
        self
    }

    /// With the reason.
    #[must_use]
    pub const fn with_reason(mut self, reason: Reason) -> Self {
        self.context.reason = Some(reason);
        self
    }

    /// With the fields of `context` this event does not set already.
    #[must_use]
    pub const fn with_context(mut self, context: &AuditContext) -> Self {
        self.context = self.context.or(context);
        self
    }

    /// With the device, client (if any), role and generation of a packaged
    /// record.
    #[must_use]
    pub const fn with_record(mut self, id: RecordId) -> Self {
        self.device = Some(id.device);
        self.client = id.client;
        self.role = Some(id.role);
        self.generation = Some(id.generation);
        self
    }

    /// The canonical encoding, the input of the audit chain's MAC; returns
    /// its length.
    ///
    /// One encoding per event, big-endian. An event whose
    /// [`context`](Self::context) is empty encodes as **version 1**, the
    /// fixed 33 octets below (absent fields as zeros), exactly as logs
    /// written before version 2 hold it. An event with any context field
    /// encodes as **version 2**: the same 33 octets with version 2, then
    /// the context.
    ///
    /// | octets | field |
    /// |---|---|
    /// | 1 | version (1 without context, 2 with) |
    /// | 1 | action ([`AuditAction::code`]) |
    /// | 1 | outcome ([`Outcome::code`]) |
    /// | 8 | time |
    /// | 1 | presence flags: device 0x01, client 0x02, role 0x04, generation 0x08, KEK 0x10, counter 0x20 |
    /// | 8 | device system title |
    /// | 1 | client (public 1, data-collection 2, extended-data-collection 3, management 4, firmware 5) |
    /// | 1 | role ([`KeyRole::code`]) |
    /// | 4 | generation |
    /// | 3 | KEK check value |
    /// | 4 | invocation counter |
    ///
    /// Version 2 goes on with the context, each field only when present:
    ///
    /// | octets | field |
    /// |---|---|
    /// | 1 | context flags, at least one set: principal 0x01, node 0x02, request 0x04, campaign 0x08, reason 0x10 |
    /// | 1 + 1 + n | principal: kind ([`PrincipalKind::code`]), length n (1 to 32), name |
    /// | 1 + n | node: length n (1 to 16), name |
    /// | 16 | request id |
    /// | 1 + n | campaign: length n (1 to 32), id |
    /// | 1 | reason ([`Reason::code`]) |
    ///
    /// At most [`EVENT_MAX_LEN`] octets.
    pub fn encode(&self, out: &mut [u8; EVENT_MAX_LEN]) -> usize {
        let mut flags = 0u8;
        let mut set = |present: bool, bit: u8| {
            if present {
                flags |= bit;
            }
        };
        set(self.device.is_some(), flag::DEVICE);
        set(self.client.is_some(), flag::CLIENT);
        set(self.role.is_some(), flag::ROLE);
        set(self.generation.is_some(), flag::GENERATION);
        set(self.kek.is_some(), flag::KEK);
        set(self.invocation_counter.is_some(), flag::COUNTER);

        let c = &self.context;
        let version = if c.is_empty() { EVENT_V1 } else { EVENT_V2 };
        let mut w = Writer::new(out.as_mut_slice());
        let written = [
            &[version, self.action.code(), self.outcome.code()][..],
            &self.time.0.to_be_bytes(),
            &[flags],
            &self.device.map_or([0; 8], |d| *d.as_bytes()),
            &[
                self.client.map_or(0, client_code),
                self.role.map_or(0, KeyRole::code),
            ],
            &self.generation.unwrap_or(0).to_be_bytes(),
            &self.kek.map_or([0; 3], |k| k.0),
            &self
                .invocation_counter
                .map_or(0, InvocationCounter::value)
                .to_be_bytes(),
        ]
        .into_iter()
        .try_for_each(|field| w.put(field))
        .and_then(|()| {
            if c.is_empty() {
                return Ok(());
            }
            let mut cflags = 0u8;
            let mut cset = |present: bool, bit: u8| {
                if present {
                    cflags |= bit;
                }
            };
            cset(c.principal.is_some(), context_flag::PRINCIPAL);
            cset(c.node.is_some(), context_flag::NODE);
            cset(c.request.is_some(), context_flag::REQUEST);
            cset(c.campaign.is_some(), context_flag::CAMPAIGN);
            cset(c.reason.is_some(), context_flag::REASON);
            w.put_u8(cflags)?;
            if let Some(p) = &c.principal {
                w.put_u8(p.kind.code())?;
                put_name(&mut w, p.name.as_bytes())?;
            }
            if let Some(n) = &c.node {
                put_name(&mut w, n.as_bytes())?;
            }
            if let Some(r) = &c.request {
                w.put(&r.0)?;
            }
            if let Some(k) = &c.campaign {
                put_name(&mut w, k.as_bytes())?;
            }
            if let Some(r) = c.reason {
                w.put_u8(r.code())?;
            }
            Ok(())
        });
        debug_assert!(written.is_ok(), "the canonical layout fits EVENT_MAX_LEN");
        w.position()
    }

    /// The canonical encoding as a value.
    #[must_use]
    pub fn to_bytes(&self) -> EncodedEvent {
        let mut bytes = [0; EVENT_MAX_LEN];
        let len = self.encode(&mut bytes);
        EncodedEvent { bytes, len }
    }

    /// Reads a canonical encoding (version 1 or 2) back.
    ///
    /// # Errors
    /// [`WireError::InvalidField`] for another version, an unknown code or
    /// flag, a non-zero absent field, a version 2 encoding without context,
    /// or a name that is empty, too long or not printable ASCII (so each
    /// event has exactly one encoding); [`WireError::Truncated`] when the
    /// octets end early; [`WireError::TrailingBytes`] when they go on past
    /// the event.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let [version, action, outcome] = r.array()?;
        let time = u64::from_be_bytes(r.array()?);
        let [flags] = r.array()?;
        let device: [u8; 8] = r.array()?;
        let [client, role] = r.array()?;
        let generation: [u8; 4] = r.array()?;
        let kek: [u8; 3] = r.array()?;
        let counter: [u8; 4] = r.array()?;
        if !matches!(version, EVENT_V1 | EVENT_V2) || flags & !flag::ALL != 0 {
            return Err(WireError::InvalidField);
        }
        let action = AuditAction::from_code(action).ok_or(WireError::InvalidField)?;
        let outcome = Outcome::from_code(outcome).ok_or(WireError::InvalidField)?;
        let context = if version == EVENT_V2 {
            decode_context(&mut r)?
        } else {
            AuditContext::new()
        };
        if r.position() != bytes.len() {
            return Err(WireError::TrailingBytes);
        }
        Ok(Self {
            action,
            outcome,
            time: Timestamp(time),
            device: optional(flags, flag::DEVICE, device, |d| Some(SystemTitle::new(d)))?,
            client: optional(flags, flag::CLIENT, [client], |[c]| client_from_code(c))?,
            role: optional(flags, flag::ROLE, [role], |[r]| KeyRole::from_code(r))?,
            generation: optional(flags, flag::GENERATION, generation, |g| {
                Some(u32::from_be_bytes(g))
            })?,
            kek: optional(flags, flag::KEK, kek, |k| Some(KeyCheckValue(k)))?,
            invocation_counter: optional(flags, flag::COUNTER, counter, |c| {
                Some(InvocationCounter::from_be_bytes(c))
            })?,
            context,
        })
    }
}

/// An event's canonical encoding ([`AuditEvent::to_bytes`]): up to
/// [`EVENT_MAX_LEN`] octets, of which [`Self::as_bytes`] are the encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EncodedEvent {
    bytes: [u8; EVENT_MAX_LEN],
    len: usize,
}

impl EncodedEvent {
    /// The encoding.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

impl core::ops::Deref for EncodedEvent {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for EncodedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EncodedEvent")
            .field(&self.as_bytes())
            .finish()
    }
}

/// A name as its length and octets.
fn put_name(w: &mut Writer<'_>, name: &[u8]) -> Result<()> {
    w.put_u8(u8::try_from(name.len()).map_err(|_| WireError::InvalidLength)?)?;
    w.put(name)
}

/// A length-prefixed name of at most `max` octets, checked by `make`.
fn read_name<T>(
    r: &mut Reader<'_>,
    make: impl FnOnce(&[u8]) -> Result<T, NameError>,
) -> Result<T, WireError> {
    let len = usize::from(r.u8()?);
    let mut buf = [0u8; 255];
    let name = buf.get_mut(..len).ok_or(WireError::InvalidLength)?;
    for b in name.iter_mut() {
        *b = r.u8()?;
    }
    make(name).map_err(|_| WireError::InvalidField)
}

/// Version 2's context, after the version 1 layout.
fn decode_context(r: &mut Reader<'_>) -> Result<AuditContext, WireError> {
    let cflags = r.u8()?;
    if cflags == 0 || cflags & !context_flag::ALL != 0 {
        return Err(WireError::InvalidField);
    }
    let has = |bit: u8| cflags & bit != 0;
    let mut c = AuditContext::new();
    if has(context_flag::PRINCIPAL) {
        let kind = PrincipalKind::from_code(r.u8()?).ok_or(WireError::InvalidField)?;
        let name = read_name(r, PrincipalName::from_bytes)?;
        c.principal = Some(Principal { kind, name });
    }
    if has(context_flag::NODE) {
        c.node = Some(read_name(r, NodeName::from_bytes)?);
    }
    if has(context_flag::REQUEST) {
        c.request = Some(RequestId(r.array()?));
    }
    if has(context_flag::CAMPAIGN) {
        c.campaign = Some(read_name(r, CampaignId::from_bytes)?);
    }
    if has(context_flag::REASON) {
        c.reason = Some(Reason::from_code(r.u8()?).ok_or(WireError::InvalidField)?);
    }
    Ok(c)
}

/// A field of the canonical encoding: `None` when its flag is clear (and
/// then it must be zeros), else `read` of it.
fn optional<const N: usize, T>(
    flags: u8,
    bit: u8,
    bytes: [u8; N],
    read: impl FnOnce([u8; N]) -> Option<T>,
) -> Result<Option<T>, WireError> {
    if flags & bit == 0 {
        if bytes.iter().any(|&b| b != 0) {
            Err(WireError::InvalidField)
        } else {
            Ok(None)
        }
    } else {
        read(bytes).map(Some).ok_or(WireError::InvalidField)
    }
}

/// The audit code of a client (all five, unlike the record code).
const fn client_code(client: Client) -> u8 {
    match client {
        Client::Public => 1,
        Client::DataCollection => 2,
        Client::ExtendedDataCollection => 3,
        Client::Management => 4,
        Client::Firmware => 5,
    }
}

const fn client_from_code(code: u8) -> Option<Client> {
    match code {
        1 => Some(Client::Public),
        2 => Some(Client::DataCollection),
        3 => Some(Client::ExtendedDataCollection),
        4 => Some(Client::Management),
        5 => Some(Client::Firmware),
        _ => None,
    }
}

/// The audit plug point (R-20): receives a typed event for every
/// key-management action.
///
/// `record` must make the event durable (or hand it to something that
/// does) before it returns `Ok`. **A caller treats an `Err` as the failure
/// of the action the event records**: a key is not used, sent or activated
/// when its audit record could not be written.
///
/// Implementations: [`MemoryAuditLog`] (bounded, no heap), `dlms_sec_services::jsonl::JsonLinesSink`
/// (chained JSON lines), [`NoAudit`] (tests only), or the
/// operator's own (a database, a syslog forwarder), which can use
/// [`AuditChain`] to stay tamper-evident.
pub trait AuditSink {
    /// Records one event.
    ///
    /// # Errors
    /// [`Error::Audit`] when the record could not be written; the action
    /// must then fail.
    fn record(&mut self, event: &AuditEvent) -> Result<()>;
}

impl<S: AuditSink + ?Sized> AuditSink for &mut S {
    fn record(&mut self, event: &AuditEvent) -> Result<()> {
        (**self).record(event)
    }
}

/// An audit sink and the time its events are stamped with: what every
/// audited operation takes, as one argument.
///
/// ```
/// use dlms_sec::audit::{AuditAction, MemoryAuditLog, Outcome, Recorder, Timestamp};
/// # fn main() -> dlms_sec::Result<()> {
/// let mut log = MemoryAuditLog::<4>::new();
/// let mut audit = Recorder::new(&mut log, Timestamp(1_700_000_000));
/// let event = audit.event(AuditAction::Generated, Outcome::Success);
/// audit.record(&event)?;
/// assert_eq!(log.events()[0].time, Timestamp(1_700_000_000));
/// # Ok(()) }
/// ```
///
/// A recorder may also hold an [`AuditContext`] (who, where, why): every
/// event recorded through it gets the context's fields it does not set
/// itself.
pub struct Recorder<'a, S: AuditSink + ?Sized> {
    sink: &'a mut S,
    now: Timestamp,
    context: AuditContext,
}

impl<'a, S: AuditSink + ?Sized> Recorder<'a, S> {
    /// Events recorded through it go to `sink`, stamped `now`, with no
    /// context.
    pub const fn new(sink: &'a mut S, now: Timestamp) -> Self {
        Self {
            sink,
            now,
            context: AuditContext::new(),
        }
    }

    /// With `context` for every event recorded through it.
    #[must_use]
    pub const fn with_context(mut self, context: AuditContext) -> Self {
        self.context = context;
        self
    }

    /// The context events are recorded with.
    #[must_use]
    pub const fn context(&self) -> &AuditContext {
        &self.context
    }

    /// The context, to change (a service sets its node, a campaign its
    /// id).
    pub const fn context_mut(&mut self) -> &mut AuditContext {
        &mut self.context
    }

    /// The time events are stamped with.
    #[must_use]
    pub const fn now(&self) -> Timestamp {
        self.now
    }

    /// A new event stamped [`now`](Self::now).
    #[must_use]
    pub const fn event(&self, action: AuditAction, outcome: Outcome) -> AuditEvent {
        AuditEvent::new(action, outcome, self.now)
    }

    /// Records `event` in the sink.
    ///
    /// # Errors
    /// As [`AuditSink::record`]: the action the event records must then
    /// fail.
    pub fn record(&mut self, event: &AuditEvent) -> Result<()> {
        self.sink.record(&event.with_context(&self.context))
    }
}

impl<S: AuditSink + ?Sized> fmt::Debug for Recorder<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("now", &self.now)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

/// Discards every event.
///
/// **For tests only**: R-20 needs a real sink, and a product that plugs
/// this in keeps no transaction log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoAudit;

impl AuditSink for NoAudit {
    fn record(&mut self, _: &AuditEvent) -> Result<()> {
        Ok(())
    }
}

/// Up to `N` events in memory, no heap. When full, `record` fails with
/// [`Error::Audit`] (fail closed): an event is never dropped silently, and
/// the caller drains the log (to flash, to a server) with
/// [`Self::events`] and [`Self::clear`].
#[derive(Clone, Debug, Default)]
pub struct MemoryAuditLog<const N: usize> {
    events: heapless::Vec<AuditEvent, N>,
}

impl<const N: usize> MemoryAuditLog<N> {
    /// An empty log.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            events: heapless::Vec::new(),
        }
    }

    /// The events recorded so far, oldest first.
    #[must_use]
    pub fn events(&self) -> &[AuditEvent] {
        self.events.as_slice()
    }

    /// How many events it holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether it holds none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Forgets every event (after the caller has stored them elsewhere).
    pub fn clear(&mut self) {
        self.events.clear();
    }
}

impl<const N: usize> AuditSink for MemoryAuditLog<N> {
    fn record(&mut self, event: &AuditEvent) -> Result<()> {
        self.events.push(*event).map_err(|_| Error::Audit)
    }
}

mod chain;
mod context;

pub use self::chain::{AuditChain, CHAIN_ID_LEN, ChainId, FailStopChain, Link, LinkError, MAC_LEN};
pub use self::context::{
    AuditContext, CampaignId, NameError, NodeName, Principal, PrincipalKind, PrincipalName,
    REQUEST_ID_LEN, Reason, RequestId,
};

#[cfg(test)]
mod tests {
    extern crate alloc;
    extern crate std;
    use super::*;
    use crate::key::AuditKey;

    fn full() -> AuditEvent {
        AuditEvent::new(
            AuditAction::CounterNearExhaustion,
            Outcome::Refused,
            Timestamp(0x0102_0304_0506_0708),
        )
        .with_device(SystemTitle::new(*b"MMM\x00\x00\xBC\x61\x4E"))
        .with_client(Client::Firmware)
        .with_role(KeyRole::GlobalBroadcastEncryption)
        .with_generation(0xA0B0_C0D0)
        .with_kek(KeyCheckValue([0xE1, 0xE2, 0xE3]))
        .with_counter(InvocationCounter::new(0xFFFF_FFFE))
    }

    #[test]
    fn r20_names_and_codes_round_trip() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::from_name(a.as_str()), Some(a));
            assert_eq!(AuditAction::from_code(a.code()), Some(a));
        }
        for o in Outcome::ALL {
            assert_eq!(Outcome::from_name(o.as_str()), Some(o));
            assert_eq!(Outcome::from_code(o.code()), Some(o));
        }
        assert_eq!(AuditAction::from_code(0), None);
        assert_eq!(AuditAction::from_code(17), None);
        assert_eq!(AuditAction::from_name("Generated"), None);
        assert_eq!(Outcome::from_name("ok"), None);
        for c in Client::ALL {
            assert_eq!(client_from_code(client_code(c)), Some(c));
        }
    }

    #[test]
    fn r20_encoding_layout_is_fixed() {
        let bytes = full().to_bytes();
        assert_eq!(
            bytes.as_bytes(),
            [
                1, 13, 3, 1, 2, 3, 4, 5, 6, 7, 8, 0x3F, b'M', b'M', b'M', 0, 0, 0xBC, 0x61, 0x4E,
                5, 4, 0xA0, 0xB0, 0xC0, 0xD0, 0xE1, 0xE2, 0xE3, 0xFF, 0xFF, 0xFF, 0xFE
            ]
        );
        let bare = AuditEvent::new(AuditAction::Generated, Outcome::Success, Timestamp(0));
        let mut expected = [0u8; EVENT_LEN];
        expected[..3].copy_from_slice(&[1, 1, 1]);
        assert_eq!(bare.to_bytes().as_bytes(), expected);
    }

    #[test]
    fn r20_encoding_round_trips_every_combination() {
        let f = full();
        for mask in 0..=flag::ALL {
            for a in AuditAction::ALL {
                let mut e = AuditEvent::new(a, Outcome::Failure, f.time);
                let has = |bit: u8| mask & bit != 0;
                if has(flag::DEVICE) {
                    e.device = f.device;
                }
                if has(flag::CLIENT) {
                    e.client = f.client;
                }
                if has(flag::ROLE) {
                    e.role = f.role;
                }
                if has(flag::GENERATION) {
                    e.generation = f.generation;
                }
                if has(flag::KEK) {
                    e.kek = f.kek;
                }
                if has(flag::COUNTER) {
                    e.invocation_counter = f.invocation_counter;
                }
                let bytes = e.to_bytes();
                assert_eq!(bytes[11], mask);
                assert_eq!(AuditEvent::decode(&bytes), Ok(e));
            }
        }
        // Zero-valued present fields stay present.
        let z = AuditEvent::new(AuditAction::Activated, Outcome::Success, Timestamp(0))
            .with_generation(0)
            .with_counter(InvocationCounter::new(0));
        assert_eq!(AuditEvent::decode(&z.to_bytes()), Ok(z));
    }

    #[test]
    fn r20_decode_rejects_non_canonical_bytes() {
        let good: [u8; EVENT_LEN] = full().to_bytes().as_bytes().try_into().unwrap();
        let bad = |i: usize, v: u8| {
            let mut b = good;
            b[i] = v;
            AuditEvent::decode(&b)
        };
        assert_eq!(bad(0, 3), Err(WireError::InvalidField)); // version
        assert_eq!(bad(0, 0), Err(WireError::InvalidField)); // version
        assert_eq!(bad(1, 0), Err(WireError::InvalidField)); // action
        assert_eq!(bad(2, 4), Err(WireError::InvalidField)); // outcome
        assert_eq!(bad(11, 0x7F), Err(WireError::InvalidField)); // unknown flag
        assert_eq!(bad(20, 6), Err(WireError::InvalidField)); // client
        assert_eq!(bad(21, 0), Err(WireError::InvalidField)); // role
        let mut sparse: [u8; EVENT_LEN] =
            AuditEvent::new(AuditAction::Wrapped, Outcome::Success, Timestamp(9))
                .to_bytes()
                .as_bytes()
                .try_into()
                .unwrap();
        sparse[25] = 1; // generation octet without its flag
        assert_eq!(AuditEvent::decode(&sparse), Err(WireError::InvalidField));
    }

    fn context() -> AuditContext {
        AuditContext::new()
            .with_principal(Principal::operator("alice").unwrap())
            .with_node(NodeName::new("s1sp-a").unwrap())
            .with_request(RequestId([0x77; REQUEST_ID_LEN]))
            .with_campaign(CampaignId::new("cmp 7").unwrap())
            .with_reason(Reason::CompromiseCampaign)
    }

    #[test]
    fn r20_v2_layout_is_fixed() {
        let e = AuditEvent::new(AuditAction::Activated, Outcome::Success, Timestamp(5))
            .with_context(&context());
        let bytes = e.to_bytes();
        let v1_part =
            AuditEvent::new(AuditAction::Activated, Outcome::Success, Timestamp(5)).to_bytes();
        assert_eq!(bytes[0], 2);
        assert_eq!(bytes.get(1..EVENT_LEN), v1_part.get(1..));
        let mut tail = alloc::vec![0x1F, 1, 5];
        tail.extend_from_slice(b"alice");
        tail.push(6);
        tail.extend_from_slice(b"s1sp-a");
        tail.extend_from_slice(&[0x77; 16]);
        tail.push(5);
        tail.extend_from_slice(b"cmp 7");
        tail.push(3);
        assert_eq!(bytes.get(EVENT_LEN..), Some(tail.as_slice()));
        assert_eq!(AuditEvent::decode(&bytes), Ok(e));
        // Only the reason: a context flag and one octet.
        let r = AuditEvent::new(AuditAction::Generated, Outcome::Success, Timestamp(0))
            .with_reason(Reason::Commissioning);
        assert_eq!(r.to_bytes().len(), EVENT_LEN + 2);
        assert_eq!(r.to_bytes().get(EVENT_LEN..), Some(&[0x10, 1][..]));
        // The longest event fits EVENT_MAX_LEN exactly.
        let long = full()
            .with_principal(Principal::service(&"p".repeat(32)).unwrap())
            .with_node(NodeName::new(&"n".repeat(16)).unwrap())
            .with_request(RequestId([1; 16]))
            .with_campaign(CampaignId::new(&"c".repeat(32)).unwrap())
            .with_reason(Reason::SupportAccess);
        assert_eq!(long.to_bytes().len(), EVENT_MAX_LEN);
        assert_eq!(AuditEvent::decode(&long.to_bytes()), Ok(long));
    }

    #[test]
    fn r20_v2_round_trips_every_context_combination() {
        let c = context();
        for mask in 0..=context_flag::ALL {
            let has = |bit: u8| mask & bit != 0;
            let mut e = full();
            if has(context_flag::PRINCIPAL) {
                e.context.principal = c.principal;
            }
            if has(context_flag::NODE) {
                e.context.node = c.node;
            }
            if has(context_flag::REQUEST) {
                e.context.request = c.request;
            }
            if has(context_flag::CAMPAIGN) {
                e.context.campaign = c.campaign;
            }
            if has(context_flag::REASON) {
                e.context.reason = c.reason;
            }
            let bytes = e.to_bytes();
            // Without context, version 1 and its 33 octets; with, version 2.
            assert_eq!(bytes[0], if mask == 0 { 1 } else { 2 });
            assert_eq!(bytes.len() == EVENT_LEN, mask == 0);
            if mask != 0 {
                assert_eq!(bytes[EVENT_LEN], mask);
            }
            assert_eq!(AuditEvent::decode(&bytes), Ok(e));
        }
    }

    #[test]
    fn r20_v2_decode_rejects_non_canonical_bytes() {
        let e = full().with_context(&context());
        let good = e.to_bytes().to_vec();
        let with = |f: &dyn Fn(&mut alloc::vec::Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            AuditEvent::decode(&b)
        };
        // Version 2 without context: the same event has a version 1 encoding.
        let mut bare = full().to_bytes().to_vec();
        bare[0] = 2;
        bare.push(0);
        assert_eq!(AuditEvent::decode(&bare), Err(WireError::InvalidField));
        bare.pop();
        assert_eq!(AuditEvent::decode(&bare), Err(WireError::Truncated));
        // Version 1 with a context appended.
        assert_eq!(
            with(&|b| b[0] = 1),
            Err(WireError::TrailingBytes),
            "version 1 is 33 octets"
        );
        assert_eq!(with(&|b| b.push(0)), Err(WireError::TrailingBytes));
        assert_eq!(
            with(&|b| {
                b.pop();
            }),
            Err(WireError::Truncated)
        );
        assert_eq!(with(&|b| b[EVENT_LEN] = 0x3F), Err(WireError::InvalidField)); // unknown flag
        assert_eq!(
            with(&|b| b[EVENT_LEN + 1] = 3),
            Err(WireError::InvalidField)
        ); // principal kind
        assert_eq!(
            with(&|b| b[EVENT_LEN + 3] = 0x7F),
            Err(WireError::InvalidField)
        ); // not printable
        assert_eq!(
            with(&|b| b[EVENT_LEN + 3] = 0x1F),
            Err(WireError::InvalidField)
        );
        let last = good.len() - 1;
        assert_eq!(with(&|b| b[last] = 0), Err(WireError::InvalidField)); // reason
        // An empty name, and one over the bound.
        let empty = full().with_reason(Reason::Operation).to_bytes().to_vec();
        let mut zero_name = empty[..EVENT_LEN].to_vec();
        zero_name.extend_from_slice(&[0x02, 0]);
        assert_eq!(AuditEvent::decode(&zero_name), Err(WireError::InvalidField));
        let mut long_node = empty[..EVENT_LEN].to_vec();
        long_node.extend_from_slice(&[0x02, 17]);
        long_node.extend_from_slice(&[b'n'; 17]);
        assert_eq!(AuditEvent::decode(&long_node), Err(WireError::InvalidField));
        let mut max_node = empty[..EVENT_LEN].to_vec();
        max_node.extend_from_slice(&[0x02, 16]);
        max_node.extend_from_slice(&[b'n'; 16]);
        assert!(AuditEvent::decode(&max_node).is_ok());
    }

    #[test]
    fn r20_names_are_bounded_printable_ascii() {
        assert_eq!(NodeName::new(""), Err(NameError::Empty));
        assert_eq!(
            NodeName::new("seventeen-octets!"),
            Err(NameError::TooLong { max: 16 })
        );
        assert!(NodeName::new("sixteen-octets!!").is_ok());
        assert_eq!(
            PrincipalName::new("caf\u{e9}"),
            Err(NameError::NotPrintable)
        );
        assert_eq!(PrincipalName::new("a\tb"), Err(NameError::NotPrintable));
        assert_eq!(
            CampaignId::new(&"x".repeat(33)),
            Err(NameError::TooLong { max: 32 })
        );
        let p = Principal::operator("bob \"the\" ]admin[").unwrap();
        assert_eq!(p.name.as_str(), "bob \"the\" ]admin[");
        assert_eq!(std::format!("{p}"), "operator:bob \"the\" ]admin[");
        assert_eq!(Principal::parse(&std::format!("{p}")), Some(p));
        assert_eq!(Principal::parse("robot:x"), None);
        assert_eq!(Principal::parse("service:"), None);
        assert_eq!(
            std::format!("{:?}", NodeName::new("n1").unwrap()),
            "NodeName(\"n1\")"
        );
        for r in Reason::ALL {
            assert_eq!(Reason::from_code(r.code()), Some(r));
            assert_eq!(Reason::from_name(r.as_str()), Some(r));
            assert_eq!(r.is_support(), r == Reason::SupportAccess);
        }
        assert_eq!(
            AuditAction::from_code(16),
            Some(AuditAction::RecordAccessed)
        );
    }

    #[test]
    fn r20_recorder_fills_what_the_event_leaves_empty() {
        let mut log = MemoryAuditLog::<4>::new();
        let ctx = context();
        let mut audit = Recorder::new(&mut log, Timestamp(9)).with_context(ctx);
        let plain = audit.event(AuditAction::Generated, Outcome::Success);
        audit.record(&plain).unwrap();
        let own = plain.with_reason(Reason::SupportAccess);
        audit.record(&own).unwrap();
        audit.context_mut().campaign = None;
        audit.record(&plain).unwrap();
        assert_eq!(log.events()[0].context, ctx);
        assert_eq!(log.events()[1].context.reason, Some(Reason::SupportAccess));
        assert_eq!(log.events()[1].context.principal, ctx.principal);
        assert_eq!(log.events()[2].context.campaign, None);
        assert_eq!(log.events()[2].context.node, ctx.node);
    }

    #[test]
    fn r20_chain_covers_the_context() {
        let key = AuditKey::from_bytes([0xA5; 16]);
        let id = ChainId([0x1D; CHAIN_ID_LEN]);
        let e = full().with_context(&context());
        let link = AuditChain::new(&key, id).seal(&e).unwrap();
        assert_eq!(AuditChain::new(&key, id).check(0, &e, &link.mac), Ok(()));
        let mut changed = [e; 5];
        changed[0].context.principal = Some(Principal::service("alice").unwrap());
        changed[1].context.node = Some(NodeName::new("s1sp-b").unwrap());
        changed[2].context.request = Some(RequestId([0x78; 16]));
        changed[3].context.campaign = None;
        changed[4].context.reason = Some(Reason::Operation);
        for c in changed {
            assert_eq!(
                AuditChain::new(&key, id).check(0, &c, &link.mac),
                Err(LinkError::BadMac)
            );
        }
    }

    #[test]
    fn r20_memory_log_fails_closed_when_full() {
        let mut log = MemoryAuditLog::<2>::new();
        let e = full();
        assert!(log.is_empty());
        log.record(&e).unwrap();
        fn through<S: AuditSink>(mut sink: S, e: &AuditEvent) -> Result<()> {
            sink.record(e)
        }
        through(&mut log, &e).unwrap();
        assert_eq!(log.record(&e), Err(Error::Audit));
        assert_eq!(log.len(), 2);
        assert_eq!(log.events(), &[e, e]);
        log.clear();
        assert_eq!(log.len(), 0);
        log.record(&e).unwrap();
        assert_eq!(NoAudit.record(&e), Ok(()));
        assert_eq!(
            std::format!("{}", Error::Audit),
            "audit record could not be written"
        );
    }

    #[test]
    fn r20_chain_checks_what_it_seals() {
        let key = AuditKey::from_bytes([0xA5; 16]);
        let id = ChainId([0x1D; CHAIN_ID_LEN]);
        let mut writer = AuditChain::new(&key, id);
        let mut reader = AuditChain::new(&key, id);
        let events = [full(), full().with_generation(1), full()];
        let links = events.map(|e| writer.seal(&e).unwrap());
        assert_eq!(links[2].seq, 2);
        // The same event at another position gets another MAC.
        assert_ne!(links[0].mac, links[2].mac);
        for (e, l) in events.iter().zip(&links) {
            assert_eq!(reader.check(l.seq, e, &l.mac), Ok(()));
        }
        assert_eq!(reader.last_mac(), writer.last_mac());
        assert_eq!(reader.next_seq(), 3);

        let mut r = AuditChain::new(&key, id);
        assert_eq!(
            r.check(1, &events[1], &links[1].mac),
            Err(LinkError::Sequence {
                expected: 0,
                found: 1
            })
        );
        assert_eq!(
            r.check(0, &events[1], &links[0].mac),
            Err(LinkError::BadMac)
        );
        let mut flipped = links[0].mac;
        flipped[11] ^= 1;
        assert_eq!(r.check(0, &events[0], &flipped), Err(LinkError::BadMac));
        assert_eq!(r.next_seq(), 0);
        let other = AuditKey::from_bytes([0x5A; 16]);
        assert_eq!(
            AuditChain::new(&other, id).check(0, &events[0], &links[0].mac),
            Err(LinkError::BadMac)
        );
        // Nor under the same key in another chain.
        let another = ChainId([0x1E; CHAIN_ID_LEN]);
        assert_eq!(
            AuditChain::new(&key, another).check(0, &events[0], &links[0].mac),
            Err(LinkError::BadMac)
        );
        // Resumed from the state a verification returns, the chain goes on.
        let mut resumed = AuditChain::resume(
            &key,
            reader.chain_id(),
            reader.next_seq(),
            reader.last_mac(),
        );
        let l3 = resumed.seal(&events[0]).unwrap();
        assert_eq!(writer.seal(&events[0]).unwrap(), l3);
        // Debug shows no key material.
        assert_eq!(std::format!("{writer:?}"), "AuditChain { next_seq: 4, .. }");
        let mut last = AuditChain::resume(&key, id, u64::MAX, [0; MAC_LEN]);
        assert_eq!(last.seal(&events[0]), Err(Error::Audit));
    }
}
