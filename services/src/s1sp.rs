//! The S1SP: holds every packaged key of its devices and only the Shared
//! Key. Needs `std` (a device
//! registry and key-store listings).
//!
//! An [`S1sp`] keeps, per device, a commissioning record (when, and what
//! the device supports) and, in its [`KeyStore`], every packaged record:
//! MK and AK under the DCO Key — which it can store and pass on but never
//! open — and GUEKs under the Shared Key, which its provider can check.
//! It drives rotations through the DCO ([`S1sp::rotate`]): the new keys are
//! stored as pending, sent wrapped to the meter, and activated atomically
//! only when a probe under the new keys verifies; on the meter's refusal
//! the pending keys are dropped, on a lost or unusable answer they stay
//! pending and [`S1sp::resume`] finds out which keys the meter uses and
//! finishes or abandons the rotation. Nothing stored is ever lost on the
//! way.
//!
//! # Answers bound to their requests
//!
//! A link in the middle can hold a genuine answer back and release it in
//! place of a later one. Protection alone does not stop that: the answer
//! verifies, and its counter is above the replay floor while nothing newer
//! got through. So the S1SP decides nothing on an answer it cannot tie to
//! the request it just sent:
//! * Every request carries an invoke-id. Per (device, client, key
//!   generation) the S1SP keeps the invoke-ids of the requests whose answer
//!   has not come back: an answer to one of them may still arrive. Its own
//!   requests (key_transfer, probes) take an invoke-id outside that list,
//!   and an answer counts as theirs only with the same invoke-id and the
//!   matching response service (action-response to the key_transfer, an
//!   action-request to class 64, the Security Setup object, method 2;
//!   get-response to a probe). A bound answer retires every request sent
//!   before it: the meter takes requests in counter order, so their
//!   answers are below the replay floor or will never be made.
//! * A key_transfer's acceptance is not enough to activate: the new keys
//!   become active, and the old generation is retired, only once a probe
//!   under the new keys verifies. Only the meter, holding them, can answer
//!   under them.
//! * Pending keys are dropped only on the meter's refusal bound to the
//!   key_transfer, or on a bound answer under the old keys to a probe sent
//!   after it: the meter answered a newer request under the old keys, so
//!   it never installed the transfer and now never will.
//! * A rotation does not start while one of the client (or a device MK)
//!   is pending.
//!
//! # Audit
//!
//! Every key action is recorded before it takes effect, and a failed
//! audit write fails the call with [`Error::Audit`] and stops the action:
//! the DCO records a protect before it draws the counter value and a
//! key_transfer before it returns the frame (see [`crate::dco`]), so no
//! frame reaches the link unrecorded; the S1SP records each activation
//! before the store makes it and a dropped rotation before the pending
//! keys go. The meter's answers are recorded once verified, before their
//! plaintext is returned, and the outcome of a rotation before the call
//! returns.
//!
//! Every event names the S1SP's node (its registry name, when it is a
//! valid [`NodeName`]) unless the caller's [`Recorder`] context names one;
//! a campaign's events name its id; the principal, request id and reason
//! come from the caller's context.
//!
//! Packaged records reach a person only through [`S1sp::support_access`]:
//! an operator named privileged, for a support reason, each record given
//! and each refusal recorded ((d)(iv), R-15).
//!
//! There is no revoke, destroy, export or backup operation (R-16, R-18,
//! keys are replaced by rotation, and the superseded generation is
//! retired only after the new one is active.

use dlms_sec::suite0::PeerTitle;
use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;
use zeroize::Zeroizing;

use rand_core::TryCryptoRng;

use crate::counters::KeyCounters;
use crate::dco::{ClientRecords, Command, Dco, ResponseCheck, Rotation, RotationScope};
use crate::registry::{MemoryRegistry, Progress, ProgressState, Registry};
use dlms_sec::InvocationCounter;
use dlms_sec::audit::{
    AuditAction, AuditEvent, AuditSink, CampaignId, NodeName, Outcome, Principal, PrincipalKind,
    PrincipalName, Reason, Recorder, Timestamp,
};
use dlms_sec::counter::{CounterKey, ReplayGuard};
use dlms_sec::error::{CounterError, Error, KeyError, Result, WireError};
use dlms_sec::key::package::{CHECK_VALUE_LEN, PackagedKey, PackagedRecord};
use dlms_sec::key::{
    AuthenticationKey, GlobalUnicastEncryptionKey, KekKind, KeyRole, MasterKey, SharedKey,
};
use dlms_sec::keystore::{KeySlot, KeyStore};
use dlms_sec::meter::DeviceCapabilities;
use dlms_sec::provider::{CryptoProvider, DcoProvider};
use dlms_sec::types::Client;
use dlms_sec::types::{Protection, SecurityPolicy};
use dlms_sec::wire::{KeyKind, SecuritySetupMethod, SystemTitle};

/// The largest frame a command or its answer may take through
/// [`S1sp::command`] (a DLMS server's usual max-receive-pdu-size).
pub const MAX_FRAME_LEN: usize = 2048;

/// invoke-id-and-priority of the S1SP's own requests, before the invoke-id
/// is added: confirmed, high priority.
const CONFIRMED_HIGH: u8 = 0xC0;

/// The service tag of action-request.
const ACTION_REQUEST: u8 = 0xC3;

/// The invoke-id bits of invoke-id-and-priority.
const INVOKE_ID: u8 = 0x0F;

/// The probe: get-request-normal of the logical device name (class 1,
/// 0-0:42.0.0.255, attribute 2); the invoke-id is set per request.
const PROBE: [u8; 13] = [
    0xC0, 0x01, 0xC1, 0x00, 0x01, 0x00, 0x00, 0x2A, 0x00, 0x00, 0xFF, 0x02, 0x00,
];

/// The response service tag to a request service tag (get, set, action).
const fn response_tag(request: u8) -> Option<u8> {
    match request {
        0xC0 => Some(0xC4),
        0xC1 => Some(0xC5),
        0xC3 => Some(0xC7),
        _ => None,
    }
}

pub use crate::registry::ROTATION_DEADLINE_SECS;

/// How long a node holds a device's rotation lease: a rotation that has
/// not finished by then may be taken over by another node.
pub const ROTATION_LEASE_SECS: u64 = 600;

/// What the S1SP knows of one device: its registration, and which keys
/// its key store shows rotated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    /// When it was commissioned.
    pub commissioned_at: Timestamp,
    /// What it supports.
    pub capabilities: DeviceCapabilities,
    /// Per keyed client (in [`Client::KEYED`] order): rotated since
    /// commissioning (its active AK is not the one it was made with).
    pub rotated: [bool; 4],
    /// The MK has been rotated since commissioning.
    pub master_key_rotated: bool,
    /// When the commissioning rotation finished, if it has.
    pub rotated_at: Option<Timestamp>,
}

impl DeviceRecord {
    /// The commissioning rotation deadline.
    #[must_use]
    pub const fn deadline(&self) -> Timestamp {
        Timestamp(
            self.commissioned_at
                .0
                .saturating_add(ROTATION_DEADLINE_SECS),
        )
    }

    /// Whether every keyed client has been rotated.
    #[must_use]
    pub fn fully_rotated(&self) -> bool {
        self.rotated.iter().all(|r| *r)
    }
}

/// How a meter is reached: one protected request, one protected answer.
/// Tests and the demonstration put a simulated meter (and faults) behind it.
pub trait MeterLink {
    /// Sends `request` for `client` and writes the answer to `response`.
    ///
    /// # Errors
    /// Whatever the link reports; a lost answer is an error here.
    fn exchange(
        &mut self,
        device: SystemTitle,
        client: Client,
        request: &mut [u8],
        response: &mut [u8],
    ) -> Result<usize>;
}

/// How a rotation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationOutcome {
    /// The meter answered under the new keys; they are active and the old
    /// generation is retired.
    Activated,
    /// The meter refused the transfer, or answered a later request under
    /// the old keys; the pending keys were dropped, the old stay active.
    Refused,
    /// The meter's answer was lost, could not be verified or was not bound
    /// to the request: the new keys stay pending; call [`S1sp::resume`].
    Pending,
}

/// Which devices a re-key campaign covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One device.
    Device(SystemTitle),
    /// A list of devices.
    Devices(&'a [SystemTitle]),
    /// Every device this S1SP holds.
    All,
}

/// Progress of a campaign.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CampaignReport {
    /// The campaign had been started before: this run went on with the
    /// devices it had not done.
    pub resumed: bool,
    /// (device, client) rotations attempted.
    pub attempted: u32,
    /// Activated.
    pub activated: u32,
    /// Left pending (answer lost).
    pub pending: u32,
    /// Refused by the meter, or failed before or while sending.
    pub failed: Vec<(SystemTitle, Client)>,
}

/// Everything a rotation needs from the caller besides the S1SP.
pub struct RotationContext<
    'a,
    P: DcoProvider,
    L: MeterLink,
    C: KeyCounters,
    A: AuditSink,
    R: ?Sized,
> {
    /// The DCO.
    pub dco: &'a Dco<P>,
    /// The link to the meters.
    pub link: &'a mut L,
    /// The DCO's send counters, one per key.
    pub counters: &'a mut C,
    /// The audit sink, and now.
    pub audit: Recorder<'a, A>,
    /// Randomness for new keys (software providers).
    pub rng: &'a mut R,
}

impl<P: DcoProvider, L: MeterLink, C: KeyCounters, A: AuditSink, R: ?Sized> core::fmt::Debug
    for RotationContext<'_, P, L, C, A, R>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RotationContext")
            .field("now", &self.audit.now())
            .finish_non_exhaustive()
    }
}

/// What the S1SP tracks of one (device, client) under one key generation.
#[derive(Debug)]
struct Peer {
    /// The meter's counter on its answers, made on the first answer for
    /// the key they come under.
    guard: Option<ReplayGuard>,
    /// Invoke-ids of the requests whose answer has not come back, oldest
    /// first: an answer to any of them may still arrive.
    unanswered: Vec<u8>,
    /// Where the search for a free invoke-id starts.
    next_invoke: u8,
}

impl Peer {
    const fn new() -> Self {
        Self {
            guard: None,
            unanswered: Vec::new(),
            next_invoke: 0,
        }
    }

    /// Forgets the requests before the first unanswered one with invoke-id
    /// `id`, and that one too when no other carries `id`: an answer with
    /// `id` has arrived, so the meter has taken one of them, and everything
    /// sent before it is answered or will never be taken.
    fn retire_before(&mut self, id: u8) {
        let Some(first) = self.unanswered.iter().position(|&u| u == id) else {
            return;
        };
        let alone = self.unanswered.iter().filter(|&&u| u == id).count() == 1;
        let end = if alone {
            first.saturating_add(1)
        } else {
            first
        };
        self.unanswered.drain(..end);
    }
}

/// (device, client, AK generation): whose answers a [`Peer`] tracks.
/// A client's keys as the S1SP's peer state knows them: device, client,
/// the AK's generation and the GUEK record's check value (which tells two
/// keys of one generation apart, as after an abandoned rotation).
type PeerKey = (SystemTitle, Client, u32, [u8; CHECK_VALUE_LEN]);

fn peer_key(records: &ClientRecords<'_>) -> Result<PeerKey> {
    let id = records.ak.id();
    let client = id
        .client
        .ok_or(Error::Misuse("an AK record always names a client"))?;
    Ok((
        id.device,
        client,
        id.generation,
        records.guek.record().check_value(),
    ))
}

/// How a verified answer relates to the request just sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Binding {
    /// Its answer: same invoke-id and response service, and no other
    /// request whose answer may still arrive has that invoke-id.
    Bound,
    /// Same invoke-id and response service, but an earlier request with
    /// the same invoke-id is still unanswered: it may be that one's.
    Ambiguous,
    /// The answer to another request.
    Foreign,
}

/// A request as far as its answer is concerned.
#[derive(Clone, Copy, Debug)]
struct Sent {
    /// Its service tag.
    tag: u8,
    /// Its invoke-id (the low four bits of invoke-id-and-priority).
    invoke: u8,
}

impl Sent {
    fn of(apdu: &[u8]) -> Result<Self> {
        match apdu {
            [tag, _, invoke, ..] => Ok(Self {
                tag: *tag,
                invoke: invoke & INVOKE_ID,
            }),
            _ => Err(WireError::Truncated.into()),
        }
    }
}

/// An S1SP service over a key store, a registry and a Shared-Key-only
/// provider.
///
/// With a shared database as store and registry (`&Store` for both),
/// several S1SP nodes serve one device population: each rotation runs
/// under the device's lease, and each meter answer is accepted by one node
/// only (its counter raises the durable floor first).
#[derive(Debug)]
pub struct S1sp<S: KeyStore, P: CryptoProvider<SharedKey>, G: Registry = MemoryRegistry> {
    store: S,
    provider: P,
    registry: G,
    node: String,
    /// The node as audit events name it (none when `node` is not a valid
    /// [`NodeName`]).
    node_name: Option<NodeName>,
    /// Who may be given packaged records for support ((d)(iv)).
    privileged: Vec<PrincipalName>,
    peers: BTreeMap<PeerKey, Peer>,
}

fn slot(device: SystemTitle, client: Option<Client>, role: KeyRole) -> KeySlot {
    KeySlot {
        device,
        client,
        role,
    }
}

impl<S: KeyStore, P: CryptoProvider<SharedKey>> S1sp<S, P> {
    /// An S1SP with its store and its provider (Shared Key only), and a
    /// registry in memory.
    pub fn new(store: S, provider: P) -> Self {
        Self::with_registry(store, provider, MemoryRegistry::new(), "local")
    }
}

impl<S: KeyStore, P: CryptoProvider<SharedKey>, G: Registry> S1sp<S, P, G> {
    /// An S1SP node named `node` (the owner of the rotation leases it
    /// takes) over its store, its provider and its registry.
    pub fn with_registry(store: S, provider: P, registry: G, node: &str) -> Self {
        Self {
            store,
            provider,
            registry,
            node: node.to_owned(),
            node_name: NodeName::new(node).ok(),
            privileged: Vec::new(),
            peers: BTreeMap::new(),
        }
    }

    /// Names the S1SP Privileged Persons: the operators
    /// [`Self::support_access`] may give packaged records to. None until
    /// set.
    pub fn set_privileged_persons(&mut self, names: &[PrincipalName]) {
        self.privileged = names.to_vec();
    }

    /// Puts this node's name into `audit`'s context when it names no node.
    fn stamp(&self, audit: &mut Recorder<'_, impl AuditSink + ?Sized>) {
        let context = audit.context_mut();
        if context.node.is_none() {
            context.node = self.node_name;
        }
    }

    /// Gives a privileged person the active packaged records of `slots`,
    /// for support only ((d)(iv), R-15), and records each record given
    /// ([`AuditAction::RecordAccessed`], with the principal and the reason)
    /// before returning them.
    ///
    /// The records stay packaged: MK and AK records under the DCO Key,
    /// the others under the Shared Key. A request with no principal, a
    /// principal that is not an operator named by
    /// [`Self::set_privileged_persons`], or a reason that is not a support
    /// reason ([`Reason::is_support`]) is refused, and the refusal recorded
    /// once per slot asked for ([`Outcome::Refused`]).
    ///
    /// # Errors
    /// [`KeyError::AccessDenied`] when refused; store errors (a missing or
    /// corrupt record: nothing is given); [`Error::Audit`] when a record
    /// cannot be written (nothing is given).
    pub fn support_access(
        &self,
        principal: Option<Principal>,
        reason: Reason,
        slots: &[KeySlot],
        audit: &mut Recorder<'_, impl AuditSink + ?Sized>,
    ) -> Result<Vec<PackagedRecord>> {
        self.stamp(audit);
        let event = |outcome, s: &KeySlot| {
            let mut e = audit
                .event(AuditAction::RecordAccessed, outcome)
                .with_device(s.device)
                .with_role(s.role)
                .with_reason(reason);
            if let Some(c) = s.client {
                e = e.with_client(c);
            }
            if let Some(p) = principal {
                e = e.with_principal(p);
            }
            e
        };
        let permitted = reason.is_support()
            && principal.is_some_and(|p| {
                p.kind == PrincipalKind::Operator && self.privileged.contains(&p.name)
            });
        if !permitted {
            let refusals: Vec<AuditEvent> =
                slots.iter().map(|s| event(Outcome::Refused, s)).collect();
            for e in &refusals {
                audit.record(e)?;
            }
            return Err(KeyError::AccessDenied.into());
        }
        let records = slots
            .iter()
            .map(|s| self.store.active(s))
            .collect::<Result<Vec<_>>>()?;
        let given: Vec<AuditEvent> = slots
            .iter()
            .zip(&records)
            .map(|(s, r)| {
                event(Outcome::Success, s)
                    .with_generation(r.generation())
                    .with_kek(r.kek_check_value())
            })
            .collect();
        for e in &given {
            audit.record(e)?;
        }
        Ok(records)
    }

    /// The registry.
    pub const fn registry(&self) -> &G {
        &self.registry
    }

    /// The key store.
    pub const fn store(&self) -> &S {
        &self.store
    }

    /// The key store, for the operator's own maintenance (the S1SP holds
    /// packaged records only).
    pub const fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Records what a device supports (after a capability survey).
    ///
    /// # Errors
    /// [`KeyError::NotFound`] for a device not commissioned here.
    pub fn set_capabilities(
        &mut self,
        device: SystemTitle,
        capabilities: DeviceCapabilities,
    ) -> Result<()> {
        self.registry.set_capabilities(&device, capabilities)
    }

    /// What the S1SP knows of `device`; `None` for a device not
    /// commissioned here.
    ///
    /// # Errors
    /// Registry and store errors.
    pub fn device(&self, device: SystemTitle) -> Result<Option<DeviceRecord>> {
        let Some(reg) = self.registry.registration(&device)? else {
            return Ok(None);
        };
        // A client without keys was never rotated.
        let rotated_since_made = |client, role| -> Result<bool> {
            match self.store.active(&slot(device, client, role)) {
                Ok(r) => Ok(r.generation() > 0),
                Err(Error::Key(KeyError::NotFound)) => Ok(false),
                Err(e) => Err(e),
            }
        };
        let mut rotated = [false; 4];
        for (r, client) in rotated.iter_mut().zip(Client::KEYED) {
            *r = rotated_since_made(Some(client), KeyRole::Authentication)?;
        }
        Ok(Some(DeviceRecord {
            commissioned_at: reg.commissioned_at,
            capabilities: reg.capabilities,
            rotated,
            master_key_rotated: rotated_since_made(None, KeyRole::Master)?,
            rotated_at: reg.rotated_at,
        }))
    }

    /// Every device commissioned here, ascending.
    ///
    /// # Errors
    /// Registry errors.
    pub fn device_titles(&self) -> Result<Vec<SystemTitle>> {
        let mut all = Vec::new();
        loop {
            let page = self.registry.devices(all.last(), 1000)?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }

    /// Commissions a device: stores the packaged records it was made with
    /// (MK, and AK and GUEK per keyed client) as active, and starts its
    /// 7-day rotation clock.
    ///
    /// A retry after a crash part way through is safe: a record already
    /// stored as it is given is skipped.
    ///
    /// # Errors
    /// Store errors; [`KeyError::Conflict`] for a device registered
    /// already. The device is registered only once every record is stored.
    pub fn commission(
        &mut self,
        device: SystemTitle,
        capabilities: DeviceCapabilities,
        records: &[PackagedRecord],
        now: Timestamp,
    ) -> Result<()> {
        for r in records {
            if r.device() != device {
                return Err(Error::Misuse("a record of another device"));
            }
            let stored = self.store.active(&KeySlot::of(&r.id())).ok();
            if stored.as_ref() != Some(r) {
                self.store.put_initial(r)?;
            }
        }
        self.registry.register(&device, now, capabilities)
    }

    /// Up to `limit` devices whose commissioning rotation is not finished
    /// and whose deadline has passed or falls within `horizon_secs` of
    /// `now`, with the deadline, earliest first.
    ///
    /// # Errors
    /// Registry errors.
    pub fn due(
        &self,
        now: Timestamp,
        horizon_secs: u64,
        limit: u32,
    ) -> Result<Vec<(SystemTitle, Timestamp)>> {
        self.registry.due(now, horizon_secs, limit)
    }

    /// The active AK and GUEK records of (device, client), as a bundle for
    /// the DCO.
    ///
    /// # Errors
    /// [`KeyError::NotFound`]; [`KeyError::RoleMismatch`] for a record in
    /// the wrong slot.
    pub fn active_records(
        &self,
        device: SystemTitle,
        client: Client,
    ) -> Result<(
        PackagedKey<AuthenticationKey>,
        PackagedKey<GlobalUnicastEncryptionKey>,
    )> {
        let ak = self
            .store
            .active(&slot(device, Some(client), KeyRole::Authentication))?
            .typed::<AuthenticationKey>()?;
        let guek = self
            .store
            .active(&slot(
                device,
                Some(client),
                KeyRole::GlobalUnicastEncryption,
            ))?
            .typed::<GlobalUnicastEncryptionKey>()?;
        Ok((ak, guek))
    }

    fn pending_records(
        &self,
        device: SystemTitle,
        client: Client,
    ) -> Result<
        Option<(
            PackagedKey<AuthenticationKey>,
            PackagedKey<GlobalUnicastEncryptionKey>,
        )>,
    > {
        let ak = self
            .store
            .pending(&slot(device, Some(client), KeyRole::Authentication))?;
        let guek = self.store.pending(&slot(
            device,
            Some(client),
            KeyRole::GlobalUnicastEncryption,
        ))?;
        match (ak, guek) {
            (Some(ak), Some(guek)) => Ok(Some((
                ak.typed::<AuthenticationKey>()?,
                guek.typed::<GlobalUnicastEncryptionKey>()?,
            ))),
            _ => Ok(None),
        }
    }

    fn master_key(&self, device: SystemTitle) -> Result<PackagedKey<MasterKey>> {
        self.store
            .active(&slot(device, None, KeyRole::Master))?
            .typed::<MasterKey>()
    }

    /// Checks a stored record. The S1SP can open only Shared-Key records:
    /// asking it to check an MK or AK record is refused and audited;
    /// a corrupt GUEK/GBEK/DK record is audited as corruption detected, and
    /// the device is due for re-keying.
    ///
    /// # Errors
    /// [`KeyError::Refused`] for MK/AK records; [`KeyError::Corrupted`] /
    /// [`KeyError::WrongKek`]; audit failures.
    pub fn check_record(
        &self,
        record: &PackagedRecord,
        audit: &mut Recorder<'_, impl AuditSink + ?Sized>,
    ) -> Result<()> {
        self.stamp(audit);
        let id = record.id();
        let e = audit
            .event(AuditAction::AccessRefused, Outcome::Refused)
            .with_record(id)
            .with_kek(record.kek_check_value());
        if id.role.kek() == KekKind::Dco {
            audit.record(&e)?;
            return Err(KeyError::Refused.into());
        }
        let result = match id.role {
            KeyRole::GlobalUnicastEncryption => self
                .provider
                .verify(&record.typed::<GlobalUnicastEncryptionKey>()?),
            KeyRole::GlobalBroadcastEncryption => self
                .provider
                .verify(&record.typed::<dlms_sec::key::GlobalBroadcastEncryptionKey>()?),
            _ => self
                .provider
                .verify(&record.typed::<dlms_sec::key::DedicatedKey>()?),
        };
        match result {
            Ok(()) => Ok(()),
            Err(err) => {
                let mut c = e;
                c.action = AuditAction::CorruptionDetected;
                c.outcome = Outcome::Failure;
                audit.record(&c)?;
                Err(err)
            }
        }
    }

    /// Reads every active record this S1SP holds, checks every Shared-Key
    /// one, and returns the slots whose record is corrupt, audited as
    /// corruption detected: the input of a re-key campaign.
    ///
    /// A record the store cannot read back as stored (a damaged row, a
    /// record moved to another slot) is corrupt whatever its KEK; a
    /// Shared-Key record is also checked against the Shared Key. MK and AK
    /// records cannot be opened here: their check value is the DCO's
    /// to verify.
    ///
    /// # Errors
    /// Store errors other than a corrupt record; audit errors.
    pub fn sweep(&self, audit: &mut Recorder<'_, impl AuditSink + ?Sized>) -> Result<Vec<KeySlot>> {
        self.stamp(audit);
        let mut slots = Vec::new();
        for device in self.device_titles()? {
            self.store.for_each_slot(&device, &mut |s| slots.push(s))?;
        }
        let mut corrupt = Vec::new();
        for s in slots {
            let checked = match self.store.active(&s) {
                Ok(record) if s.role.kek() == KekKind::Shared => self.check_record(&record, audit),
                Ok(_) => Ok(()),
                Err(Error::Key(KeyError::Corrupted)) => {
                    let unreadable = audit
                        .event(AuditAction::CorruptionDetected, Outcome::Failure)
                        .with_device(s.device)
                        .with_role(s.role);
                    let unreadable = match s.client {
                        Some(c) => unreadable.with_client(c),
                        None => unreadable,
                    };
                    audit.record(&unreadable)?;
                    Err(KeyError::Corrupted.into())
                }
                Err(e) => return Err(e),
            };
            match checked {
                Ok(()) => {}
                Err(Error::Key(KeyError::Corrupted | KeyError::WrongKek)) => corrupt.push(s),
                Err(e) => return Err(e),
            }
        }
        Ok(corrupt)
    }

    /// Decrypts an encryption-only frame from (device, client) under the
    /// client's active GUEK, inside the Shared-Key provider: the processing an
    /// S1SP may do on its own. Authenticated frames need the AK, which
    /// only the DCO can use, and are refused. Audited as an unpacking.
    ///
    /// # Errors
    /// [`KeyError::Refused`] for an authenticated frame; store, record,
    /// wire and audit errors.
    pub fn decrypt_unauthenticated<'b>(
        &self,
        device: SystemTitle,
        client: Client,
        frame: &'b mut [u8],
        audit: &mut Recorder<'_, impl AuditSink + ?Sized>,
    ) -> Result<dlms_sec::suite0::Unprotected<'b>> {
        self.stamp(audit);
        let (_, guek) = self.active_records(device, client)?;
        let result =
            self.provider
                .decrypt_unauthenticated(&guek, frame, PeerTitle::Expected(device));
        let id = guek.id();
        let outcome = if result.is_ok() {
            Outcome::Success
        } else {
            Outcome::Refused
        };
        let unpacked = audit
            .event(AuditAction::Unpacked, outcome)
            .with_record(id)
            .with_kek(guek.record().kek_check_value());
        audit.record(&unpacked)?;
        result
    }

    fn peer(&mut self, key: PeerKey) -> &mut Peer {
        self.peers.entry(key).or_insert_with(Peer::new)
    }

    /// An invoke-id no unanswered request of `key` carries.
    fn fresh_invoke(&mut self, key: PeerKey) -> Result<u8> {
        let peer = self.peer(key);
        for _ in 0..=INVOKE_ID {
            let id = peer.next_invoke & INVOKE_ID;
            peer.next_invoke = peer.next_invoke.wrapping_add(1);
            if !peer.unanswered.contains(&id) {
                return Ok(id);
            }
        }
        Err(Error::Misuse(
            "sixteen requests to this client are unanswered: no invoke-id is free",
        ))
    }

    /// Sends one command (any xDLMS get, set or action request APDU) to
    /// (device, client) under its active keys, through the DCO, and returns
    /// the verified answer.
    ///
    /// The answer must carry the request's invoke-id and the matching
    /// response service. When an earlier request with the same invoke-id
    /// is still unanswered the answer may be that one's: give each
    /// request its own invoke-id where that matters.
    ///
    /// # Errors
    /// [`WireError::Truncated`] for an APDU shorter than three octets;
    /// [`WireError::InvalidField`] for a verified answer to another
    /// request (nothing is written to `answer`); store, DCO, link and audit
    /// errors.
    pub fn command<D, L, C, A, R>(
        &mut self,
        cx: &mut RotationContext<'_, D, L, C, A, R>,
        device: SystemTitle,
        client: Client,
        apdu: &[u8],
        answer: &mut [u8],
    ) -> Result<usize>
    where
        D: DcoProvider,
        L: MeterLink,
        C: KeyCounters,
        A: AuditSink,
        R: TryCryptoRng + ?Sized,
    {
        self.stamp(&mut cx.audit);
        let (ak, guek) = self.active_records(device, client)?;
        match self.exchange(cx, ClientRecords::new(&ak, &guek), apdu, answer)? {
            (n, Binding::Bound | Binding::Ambiguous) => Ok(n),
            (_, Binding::Foreign) => Err(WireError::InvalidField.into()),
        }
    }

    /// Protects `apdu` under `records`, sends it to the (device, client)
    /// the AK record names and returns the verified answer's length and
    /// binding.
    fn exchange<D, L, C, A, R>(
        &mut self,
        cx: &mut RotationContext<'_, D, L, C, A, R>,
        records: ClientRecords<'_>,
        apdu: &[u8],
        answer: &mut [u8],
    ) -> Result<(usize, Binding)>
    where
        D: DcoProvider,
        L: MeterLink,
        C: KeyCounters,
        A: AuditSink,
        R: TryCryptoRng + ?Sized,
    {
        let sent = Sent::of(apdu)?;
        let mut request = [0u8; MAX_FRAME_LEN];
        let command = Command {
            records,
            protection: Protection::AuthenticatedEncrypted,
            apdu,
        };
        let n = cx
            .dco
            .protect(&command, cx.counters, &mut request, &mut cx.audit)?;
        let frame = request.get_mut(..n).unwrap_or_default();
        self.transact(cx, records, frame, sent, answer)
    }

    /// Sends the protected `request` (`sent` describes it), verifies the
    /// answer under `records` and ties it to the request. The plaintext is
    /// written to `answer` unless the answer is [`Binding::Foreign`].
    fn transact<D, L, C, A, R>(
        &mut self,
        cx: &mut RotationContext<'_, D, L, C, A, R>,
        records: ClientRecords<'_>,
        request: &mut [u8],
        sent: Sent,
        answer: &mut [u8],
    ) -> Result<(usize, Binding)>
    where
        D: DcoProvider,
        L: MeterLink,
        C: KeyCounters,
        A: AuditSink,
        R: TryCryptoRng + ?Sized,
    {
        let key = peer_key(&records)?;
        let (device, client, ..) = key;
        // The meter's answers under this GUEK: their floor is shared by
        // every node, so the guard starts from it.
        let floor_key = CounterKey::own(
            device,
            client,
            KeyKind::GlobalUnicast,
            records.guek.id().generation,
        );
        let floor = self.registry.floor(&floor_key)?.map(InvocationCounter::new);
        let peer = self.peers.entry(key).or_insert_with(Peer::new);
        let behind = match &peer.guard {
            None => true,
            Some(g) => floor.is_some() && g.last_accepted() < floor,
        };
        if behind {
            let fingerprint = cx.dco.key_fingerprint(records)?;
            peer.guard = Some(ReplayGuard::resume(
                device,
                KeyKind::GlobalUnicast,
                fingerprint,
                floor,
            ));
        }
        let earlier = peer.unanswered.contains(&sent.invoke);
        // Unanswered until a bound answer arrives.
        peer.unanswered.push(sent.invoke);
        // The answer is decrypted in place: wiped when this returns.
        let mut frame = Zeroizing::new([0u8; MAX_FRAME_LEN]);
        let m = cx.link.exchange(device, client, request, &mut *frame)?;
        let check = ResponseCheck {
            policy: SecurityPolicy::AuthenticatedEncrypted,
            guard: peer
                .guard
                .as_mut()
                .ok_or(Error::Misuse("the guard is made above"))?,
        };
        let got = cx.dco.unprotect(
            records,
            frame.get_mut(..m).unwrap_or_default(),
            check,
            &mut cx.audit,
        )?;
        // Accepted here only if no node accepted this counter (or a later
        // one) first.
        let accepted = peer
            .guard
            .as_ref()
            .and_then(ReplayGuard::last_accepted)
            .ok_or(Error::Misuse("a verified answer advances the guard"))?;
        if let Err(e) = self.registry.raise_floor(&floor_key, accepted.value()) {
            if e == Error::Counter(CounterError::Replay) {
                let replay = cx
                    .audit
                    .event(AuditAction::ReplayRejected, Outcome::Refused)
                    .with_device(device)
                    .with_client(client)
                    .with_counter(accepted);
                cx.audit.record(&replay)?;
            }
            return Err(e);
        }
        let plain = got.apdu();
        let invoke = plain.get(2).map(|b| b & INVOKE_ID);
        let ours = plain.first().copied() == response_tag(sent.tag) && invoke == Some(sent.invoke);
        let binding = match (ours, earlier) {
            (true, false) => {
                peer.unanswered.clear();
                Binding::Bound
            }
            (true, true) => {
                peer.retire_before(sent.invoke);
                Binding::Ambiguous
            }
            (false, _) => {
                if let Some(id) = invoke
                    && let Some((_, before)) = peer.unanswered.split_last()
                    && before.contains(&id)
                {
                    // This request stays unanswered: keep it last.
                    let this = peer.unanswered.pop().unwrap_or(sent.invoke);
                    peer.retire_before(id);
                    peer.unanswered.push(this);
                }
                return Ok((0, Binding::Foreign));
            }
        };
        let out = answer.get_mut(..plain.len()).ok_or(Error::BufferTooSmall {
            required: plain.len(),
        })?;
        out.copy_from_slice(plain);
        Ok((plain.len(), binding))
    }

    /// Sends a probe under `records` with an invoke-id of its own and
    /// returns how the verified answer relates to it.
    fn probe<D, L, C, A, R>(
        &mut self,
        cx: &mut RotationContext<'_, D, L, C, A, R>,
        records: ClientRecords<'_>,
    ) -> Result<Binding>
    where
        D: DcoProvider,
        L: MeterLink,
        C: KeyCounters,
        A: AuditSink,
        R: TryCryptoRng + ?Sized,
    {
        let invoke = self.fresh_invoke(peer_key(&records)?)?;
        let mut get = PROBE;
        if let Some(b) = get.get_mut(2) {
            *b = CONFIRMED_HIGH | invoke;
        }
        let mut answer = Zeroizing::new([0u8; 64]);
        let (_, binding) = self.exchange(cx, records, &get, &mut *answer)?;
        Ok(binding)
    }

    /// Whether a rotation of (device, client) is pending: its AK or GUEK,
    /// or the device MK.
    fn rotation_pending(&self, device: SystemTitle, client: Client) -> Result<bool> {
        for (c, role) in [
            (Some(client), KeyRole::Authentication),
            (Some(client), KeyRole::GlobalUnicastEncryption),
            (None, KeyRole::Master),
        ] {
            if self.store.pending(&slot(device, c, role))?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Rotates one client's AK and GUEK (and the device MK, where the
    /// device supports it and it has not been rotated yet): the commissioning
    /// rotation and the re-key after a compromise alike.
    ///
    /// The key_transfer carries an invoke-id of its own; its answer counts
    /// only when bound to it (see the module docs). An acceptance is
    /// followed by a probe under the new keys, and only a verified answer
    /// to that activates them.
    ///
    /// # Errors
    /// [`Error::Misuse`] while a rotation of the client or a device MK is
    /// pending (call [`Self::resume`]); store, DCO, RNG and audit errors
    /// before anything is sent (nothing changes); audit errors after. A
    /// lost, unverifiable or unbound answer leaves the new keys pending and
    /// returns [`RotationOutcome::Pending`] instead.
    pub fn rotate<D, L, C, A, R>(
        &mut self,
        cx: &mut RotationContext<'_, D, L, C, A, R>,
        device: SystemTitle,
        client: Client,
    ) -> Result<RotationOutcome>
    where
        D: DcoProvider,
        L: MeterLink,
        C: KeyCounters,
        A: AuditSink,
        R: TryCryptoRng + ?Sized,
    {
        self.leased(cx, device, |s1sp, cx| {
            s1sp.rotate_leased(cx, device, client)
        })
    }

    /// Runs `f` under `device`'s rotation lease, taken for this node and
    /// given back after, whatever `f` returns.
    fn leased<D, L, C, A, R, T>(
        &mut self,
        cx: &mut RotationContext<'_, D, L, C, A, R>,
        device: SystemTitle,
        f: impl FnOnce(&mut Self, &mut RotationContext<'_, D, L, C, A, R>) -> Result<T>,
    ) -> Result<T>
    where
        D: DcoProvider,
        L: MeterLink,
        C: KeyCounters,
        A: AuditSink,
        R: TryCryptoRng + ?Sized,
    {
        self.stamp(&mut cx.audit);
        let now = cx.audit.now();
        self.registry
            .take_lease(&device, &self.node, now, ROTATION_LEASE_SECS)?;
        let result = f(self, cx);
        let released = self.registry.release_lease(&device, &self.node);
        let value = result?;
        released?;
        Ok(value)
    }

    fn rotate_leased<D, L, C, A, R>(
        &mut self,
        cx: &mut RotationContext<'_, D, L, C, A, R>,
        device: SystemTitle,
        client: Client,
    ) -> Result<RotationOutcome>
    where
        D: DcoProvider,
        L: MeterLink,
        C: KeyCounters,
        A: AuditSink,
        R: TryCryptoRng + ?Sized,
    {
        let record = self.device(device)?.ok_or(Error::Key(KeyError::NotFound))?;
        if self.rotation_pending(device, client)? {
            return Err(Error::Misuse(
                "a rotation of this client or of the device MK is pending: resume it first",
            ));
        }
        let (ak, guek) = self.active_records(device, client)?;
        let mk = self.master_key(device)?;
        let current = ClientRecords::new(&ak, &guek);
        let scope = RotationScope {
            ak_and_guek: true,
            master_key: record.capabilities.master_key_rotation && !record.master_key_rotated,
        };
        let invoke = self.fresh_invoke(peer_key(&current)?)?;
        let method = SecuritySetupMethod {
            invoke_id_and_priority: CONFIRMED_HIGH | invoke,
            ..SecuritySetupMethod::default()
        };
        let mut request = [0u8; 256];
        let rotation = Rotation {
            rng: &mut *cx.rng,
            mk: &mk,
            current,
            scope,
            method,
        };
        let prepared =
            cx.dco
                .prepare_rotation(rotation, cx.counters, &mut request, &mut cx.audit)?;
        let generation = prepared.ak.id().generation;
        let now = cx.audit.now();
        let client_event = |action, outcome| {
            AuditEvent::new(action, outcome, now)
                .with_device(device)
                .with_client(client)
                .with_generation(generation)
        };
        // The new keys are pending before anything leaves; if the
        // store refuses one, none stays pending and nothing is sent.
        let stored = self
            .store
            .put_pending(prepared.ak.record())
            .and_then(|()| self.store.put_pending(prepared.guek.record()))
            .and_then(|()| match &prepared.mk {
                Some(new_mk) => self.store.put_pending(new_mk.record()),
                None => Ok(()),
            });
        if let Err(e) = stored {
            self.abandon(device, client)?;
            cx.audit
                .record(&client_event(AuditAction::RotationFailed, Outcome::Failure))?;
            return Err(e);
        }
        let progress = |state| Progress {
            state,
            generation,
            invoke_id: invoke,
            at: now.0,
        };
        self.registry
            .set_progress(&device, client, &progress(ProgressState::Sent))?;
        let sent = Sent {
            tag: ACTION_REQUEST,
            invoke,
        };
        let mut answer = Zeroizing::new([0u8; 64]);
        let frame = request.get_mut(..prepared.frame_len).unwrap_or_default();
        let result = self.transact(cx, current, frame, sent, &mut *answer);
        let accepted = match result {
            Err(Error::Audit) => return Err(Error::Audit),
            Ok((n, Binding::Bound)) => match answer.get(..n) {
                // action-response-normal, success, no return parameters.
                Some([0xC7, 0x01, _, 0x00, 0x00]) => Some(true),
                // action-response-normal with a failure result.
                Some([0xC7, 0x01, _, result, ..]) if *result != 0x00 => Some(false),
                _ => None,
            },
            _ => None,
        };
        match accepted {
            Some(true) => {
                cx.audit.record(&client_event(
                    AuditAction::TransferAccepted,
                    Outcome::Success,
                ))?;
                self.registry
                    .set_progress(&device, client, &progress(ProgressState::Installed))?;
                self.confirm(cx, device, client, prepared.mk.is_some())
            }
            Some(false) => {
                // Recorded before the pending keys are dropped.
                cx.audit
                    .record(&client_event(AuditAction::RotationFailed, Outcome::Refused))?;
                self.abandon(device, client)?;
                Ok(RotationOutcome::Refused)
            }
            None => {
                cx.audit
                    .record(&client_event(AuditAction::RotationFailed, Outcome::Failure))?;
                Ok(RotationOutcome::Pending)
            }
        }
    }

    /// Probes (device, client) under its pending keys: a verified answer
    /// (only the meter holding them can make one) activates them.
    fn confirm<D, L, C, A, R>(
        &mut self,
        cx: &mut RotationContext<'_, D, L, C, A, R>,
        device: SystemTitle,
        client: Client,
        with_mk: bool,
    ) -> Result<RotationOutcome>
    where
        D: DcoProvider,
        L: MeterLink,
        C: KeyCounters,
        A: AuditSink,
        R: TryCryptoRng + ?Sized,
    {
        let (ak, guek) = self
            .pending_records(device, client)?
            .ok_or(Error::Key(KeyError::NoPending))?;
        match self.probe(cx, ClientRecords::new(&ak, &guek)) {
            Ok(_) => {
                self.activate(&mut cx.audit, device, client, with_mk)?;
                let probed = Progress {
                    state: ProgressState::Probed,
                    generation: ak.id().generation,
                    invoke_id: self
                        .registry
                        .progress(&device, client)?
                        .map_or(0, |p| p.invoke_id),
                    at: cx.audit.now().0,
                };
                self.registry.set_progress(&device, client, &probed)?;
                Ok(RotationOutcome::Activated)
            }
            Err(Error::Audit) => Err(Error::Audit),
            Err(_) => Ok(RotationOutcome::Pending),
        }
    }

    /// Finishes a rotation whose outcome is not known: if the meter answers
    /// a probe under the pending keys it has installed them, so they are
    /// activated; if it answers a probe under the active keys with an
    /// answer bound to that probe, it never installed the pending ones and
    /// never will, so they are dropped and the rotation can simply run
    /// again. Anything else changes nothing.
    ///
    /// A rotation whose AK and GUEK are not both pending (a crash while its
    /// pending keys were being stored or dropped) never reached the meter:
    /// a key_transfer is sent only once all its keys are pending, and
    /// pending keys are dropped only when the meter does not have them. Its
    /// pending keys are dropped without asking the meter, the device MK's
    /// too unless another client's rotation holds pending keys.
    ///
    /// # Errors
    /// [`KeyError::NoPending`] when nothing is pending;
    /// [`Error::Misuse`] when only the device MK is pending and another
    /// client's rotation holds pending keys (resume that one); store, DCO
    /// and audit errors; a link error or an answer that does not verify leaves
    /// everything as it was. A verified answer not bound to the probe
    /// returns [`RotationOutcome::Pending`].
    pub fn resume<D, L, C, A, R>(
        &mut self,
        cx: &mut RotationContext<'_, D, L, C, A, R>,
        device: SystemTitle,
        client: Client,
    ) -> Result<RotationOutcome>
    where
        D: DcoProvider,
        L: MeterLink,
        C: KeyCounters,
        A: AuditSink,
        R: TryCryptoRng + ?Sized,
    {
        self.leased(cx, device, |s1sp, cx| {
            s1sp.resume_leased(cx, device, client)
        })
    }

    fn resume_leased<D, L, C, A, R>(
        &mut self,
        cx: &mut RotationContext<'_, D, L, C, A, R>,
        device: SystemTitle,
        client: Client,
    ) -> Result<RotationOutcome>
    where
        D: DcoProvider,
        L: MeterLink,
        C: KeyCounters,
        A: AuditSink,
        R: TryCryptoRng + ?Sized,
    {
        let mk_pending = self
            .store
            .pending(&slot(device, None, KeyRole::Master))?
            .is_some();
        if self.pending_records(device, client)?.is_none() {
            return self.drop_unsent(&mut cx.audit, device, client, mk_pending);
        }
        if self.confirm(cx, device, client, mk_pending)? == RotationOutcome::Activated {
            return Ok(RotationOutcome::Activated);
        }
        let (ak, guek) = self.active_records(device, client)?;
        if self.probe(cx, ClientRecords::new(&ak, &guek))? != Binding::Bound {
            return Ok(RotationOutcome::Pending);
        }
        let generation = self
            .pending_records(device, client)?
            .map(|(ak, _)| ak.id().generation);
        let mut dropped = cx
            .audit
            .event(AuditAction::RotationFailed, Outcome::Refused)
            .with_device(device)
            .with_client(client);
        if let Some(g) = generation {
            dropped = dropped.with_generation(g);
        }
        // Recorded before the pending keys are dropped.
        cx.audit.record(&dropped)?;
        self.abandon(device, client)?;
        Ok(RotationOutcome::Refused)
    }

    /// Activates the pending generation of (device, client), and of the
    /// device MK with `with_mk`, and retires the superseded one. Every
    /// activation is recorded before the store makes any: when a record
    /// cannot be written nothing changes.
    fn activate(
        &mut self,
        audit: &mut Recorder<'_, impl AuditSink + ?Sized>,
        device: SystemTitle,
        client: Client,
        with_mk: bool,
    ) -> Result<()> {
        let mut slots = vec![
            slot(device, Some(client), KeyRole::Authentication),
            slot(device, Some(client), KeyRole::GlobalUnicastEncryption),
        ];
        if with_mk {
            slots.push(slot(device, None, KeyRole::Master));
        }
        let mut pending = Vec::with_capacity(slots.len());
        for s in &slots {
            let p = self
                .store
                .pending(s)?
                .ok_or(Error::Key(KeyError::NoPending))?;
            pending.push((*s, p));
        }
        for (_, p) in &pending {
            let activated = audit
                .event(AuditAction::Activated, Outcome::Success)
                .with_record(p.id())
                .with_kek(p.kek_check_value());
            audit.record(&activated)?;
        }
        // One transaction: never an AK of one generation with a GUEK of
        // another.
        let together: Vec<(KeySlot, u32)> =
            pending.iter().map(|(s, p)| (*s, p.generation())).collect();
        self.store.activate_all(&together)?;
        let mut generation = None;
        for (s, p) in &pending {
            self.store.retire_previous(s)?;
            if s.role == KeyRole::Authentication {
                generation = Some(p.generation());
            }
        }
        // The old generation's answers are of no use any more.
        self.peers
            .retain(|&(d, c, g, _), _| !(d == device && c == client && Some(g) != generation));
        if let Some(d) = self.device(device)?
            && d.rotated_at.is_none()
            && d.fully_rotated()
        {
            self.registry.mark_rotated(&device, audit.now())?;
        }
        Ok(())
    }

    /// Drops what a rotation of (device, client) left pending when its AK
    /// and GUEK are not both pending: that rotation was never sent (see
    /// [`Self::resume`]). The device MK's pending record goes too, unless
    /// another client's pending keys show it belongs to their rotation.
    fn drop_unsent(
        &mut self,
        audit: &mut Recorder<'_, impl AuditSink + ?Sized>,
        device: SystemTitle,
        client: Client,
        mk_pending: bool,
    ) -> Result<RotationOutcome> {
        let own = [KeyRole::Authentication, KeyRole::GlobalUnicastEncryption];
        let mut generation = None;
        for role in own {
            if let Some(p) = self.store.pending(&slot(device, Some(client), role))? {
                generation = Some(p.generation());
            }
        }
        let mut others_pending = false;
        for other in Client::KEYED.into_iter().filter(|&c| c != client) {
            for role in own {
                others_pending |= self
                    .store
                    .pending(&slot(device, Some(other), role))?
                    .is_some();
            }
        }
        let drop_mk = mk_pending && !others_pending;
        if generation.is_none() && !drop_mk {
            return Err(if mk_pending {
                Error::Misuse(
                    "the device MK is pending with another client's rotation: resume that",
                )
            } else {
                Error::Key(KeyError::NoPending)
            });
        }
        let mut dropped = audit
            .event(AuditAction::RotationFailed, Outcome::Refused)
            .with_device(device)
            .with_client(client);
        if let Some(g) = generation {
            dropped = dropped.with_generation(g);
        }
        // Recorded before the pending keys are dropped.
        audit.record(&dropped)?;
        for role in own {
            self.store
                .discard_pending(&slot(device, Some(client), role))?;
        }
        if drop_mk {
            self.store
                .discard_pending(&slot(device, None, KeyRole::Master))?;
        }
        Ok(RotationOutcome::Refused)
    }

    fn abandon(&mut self, device: SystemTitle, client: Client) -> Result<()> {
        self.store
            .discard_pending(&slot(device, Some(client), KeyRole::Authentication))?;
        self.store.discard_pending(&slot(
            device,
            Some(client),
            KeyRole::GlobalUnicastEncryption,
        ))?;
        self.store
            .discard_pending(&slot(device, None, KeyRole::Master))
    }

    /// Re-keys every keyed client of every device in `scope`:
    /// the same rotation, with a report of what happened.
    ///
    /// The campaign is named `id` in the registry, with its device list
    /// fixed when it starts; each device is marked done once its clients
    /// have been tried. Run again with the same `id` (after a crash, or on
    /// another node), it goes on with the devices not done and ignores
    /// `scope`. A rotation left pending is resumed before a new one starts.
    ///
    /// Every event of the campaign carries its id (when `id` is a valid
    /// [`CampaignId`]) and this node's name, unless the caller's context
    /// names them already; the caller's context gives the principal and the
    /// reason ([`Reason::CompromiseCampaign`],
    /// [`Reason::CorruptionRecovery`]).
    ///
    /// # Errors
    /// Audit and registry failures stop a campaign; every other failure is
    /// counted in the report.
    pub fn campaign<D, L, C, A, R>(
        &mut self,
        cx: &mut RotationContext<'_, D, L, C, A, R>,
        id: &str,
        scope: Scope<'_>,
    ) -> Result<CampaignReport>
    where
        D: DcoProvider,
        L: MeterLink,
        C: KeyCounters,
        A: AuditSink,
        R: TryCryptoRng + ?Sized,
    {
        let before = *cx.audit.context();
        self.stamp(&mut cx.audit);
        let context = cx.audit.context_mut();
        if context.campaign.is_none() {
            context.campaign = CampaignId::new(id).ok();
        }
        let report = self.campaign_run(cx, id, scope);
        *cx.audit.context_mut() = before;
        report
    }

    fn campaign_run<D, L, C, A, R>(
        &mut self,
        cx: &mut RotationContext<'_, D, L, C, A, R>,
        id: &str,
        scope: Scope<'_>,
    ) -> Result<CampaignReport>
    where
        D: DcoProvider,
        L: MeterLink,
        C: KeyCounters,
        A: AuditSink,
        R: TryCryptoRng + ?Sized,
    {
        let devices: Vec<SystemTitle> = match scope {
            Scope::Device(d) => vec![d],
            Scope::Devices(list) => list.to_vec(),
            Scope::All => self.device_titles()?,
        };
        // A campaign started before (by this node or one that stopped)
        // keeps its device list and goes on with what is not done.
        let resumed = !self.registry.campaign_start(id, &devices, cx.audit.now())?;
        let mut report = CampaignReport {
            resumed,
            ..CampaignReport::default()
        };
        loop {
            let batch = self.registry.campaign_pending(id, 256)?;
            if batch.is_empty() {
                return Ok(report);
            }
            for device in batch {
                self.campaign_device(cx, device, &mut report)?;
                self.registry.campaign_mark_done(id, &device)?;
            }
        }
    }

    /// One device of a campaign: each keyed client rotated, or its pending
    /// rotation resumed first.
    fn campaign_device<D, L, C, A, R>(
        &mut self,
        cx: &mut RotationContext<'_, D, L, C, A, R>,
        device: SystemTitle,
        report: &mut CampaignReport,
    ) -> Result<()>
    where
        D: DcoProvider,
        L: MeterLink,
        C: KeyCounters,
        A: AuditSink,
        R: TryCryptoRng + ?Sized,
    {
        {
            for client in Client::KEYED {
                report.attempted = report.attempted.saturating_add(1);
                let outcome = match self.rotation_pending(device, client) {
                    Ok(true) => match self.resume(cx, device, client) {
                        Ok(RotationOutcome::Refused) => self.rotate(cx, device, client),
                        other => other,
                    },
                    Ok(false) => self.rotate(cx, device, client),
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(RotationOutcome::Activated) => {
                        report.activated = report.activated.saturating_add(1);
                    }
                    Ok(RotationOutcome::Pending) => {
                        report.pending = report.pending.saturating_add(1);
                    }
                    Ok(RotationOutcome::Refused) => report.failed.push((device, client)),
                    Err(Error::Audit) => return Err(Error::Audit),
                    Err(_) => report.failed.push((device, client)),
                }
            }
        }
        Ok(())
    }
}
