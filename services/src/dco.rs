//! The DCO: the only party that can use an AK or an MK (R-05, R-06, R-09,
//!
//!
//! [`Dco`] wraps a [`DcoProvider`] (both KEKs, in an HSM or in software) and
//! the DCO's system title. Given an S1SP's command bundle — packaged AK
//! under the DCO Key, packaged GUEK under the Shared Key, the APDU and the
//! protection — it protects the APDU in one call; keys exist in clear only
//! inside the provider call. For rotation it generates fresh keys inside
//! the provider, wraps them under the device's current MK into a
//! key_transfer action-request protected under the current keys, and
//! returns the new packaged records for the S1SP to hold as pending.
//!
//! Every key-management action is written to the caller's
//! [`AuditSink`], through a [`Recorder`] that also carries the time, and
//! an audit failure fails the action. What leaves the DCO is
//! recorded before it leaves: a protect's record is written before its
//! counter value is drawn, and a key_transfer's `transfer-sent` before its
//! frame is returned. When a record cannot be written the call returns
//! [`Error::Audit`] with the output buffer zeroed: no frame without its
//! records, no counter value spent unrecorded. Generating, packaging and
//! wrapping a key are recorded once done, before the new records are
//! returned; a verified answer is recorded before its plaintext is.

use dlms_sec::suite0::PeerTitle;
use rand_core::TryCryptoRng;

use dlms_sec::InvocationCounter;
use dlms_sec::audit::{AuditAction, AuditEvent, AuditSink, NodeName, Outcome, Recorder};
use dlms_sec::counter::{CounterKey, CounterSource, KeyFingerprint, ReplayGuard};

use crate::counters::KeyCounters;
use dlms_sec::error::{CounterError, Error, KeyError, Result};
use dlms_sec::key::package::{KeyCheckValue, PackagedKey, RecordId};
use dlms_sec::key::wrap::{KeyId, TransferableKey, WrappedKey};
use dlms_sec::key::{
    AuthenticationKey, DedicatedKey, GlobalUnicastEncryptionKey, KeyRole, MasterKey,
};
use dlms_sec::provider::{CommandKeys, CryptoProvider, DcoProvider, EncryptionRecord};
use dlms_sec::suite0::{Protect, Unprotect, Unprotected};
use dlms_sec::types::Client;
use dlms_sec::types::{Protection, SecurityPolicy};
use dlms_sec::wire::{
    CipheredForm, FrameLayout, KeyKind, KeyTransfer, SecuritySetupMethod, SystemTitle,
};

/// The keys of one (device, client) as the S1SP hands them to the DCO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientRecords<'a> {
    /// Packaged AK (DCO Key).
    pub ak: &'a PackagedKey<AuthenticationKey>,
    /// Packaged GUEK (Shared Key).
    pub guek: &'a PackagedKey<GlobalUnicastEncryptionKey>,
    /// Packaged dedicated key (Shared Key) of the current association, if
    /// the command is to go under it (ded- tags) rather than the GUEK.
    pub dk: Option<&'a PackagedKey<DedicatedKey>>,
}

impl<'a> ClientRecords<'a> {
    /// The AK and GUEK of a client, no dedicated key.
    #[must_use]
    pub const fn new(
        ak: &'a PackagedKey<AuthenticationKey>,
        guek: &'a PackagedKey<GlobalUnicastEncryptionKey>,
    ) -> Self {
        Self { ak, guek, dk: None }
    }

    fn command_keys(&self) -> CommandKeys<'a> {
        CommandKeys {
            ak: self.ak,
            encryption: match self.dk {
                Some(dk) => EncryptionRecord::Dedicated(dk),
                None => EncryptionRecord::GlobalUnicast(self.guek),
            },
        }
    }

    fn key_kind(&self) -> KeyKind {
        if self.dk.is_some() {
            KeyKind::Dedicated
        } else {
            KeyKind::GlobalUnicast
        }
    }
}

/// One command for [`Dco::protect`]: an APDU, the client's keys and the
/// protection to put it under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command<'a> {
    /// The client's keys.
    pub records: ClientRecords<'a>,
    /// Authentication, encryption, or both.
    pub protection: Protection,
    /// The xDLMS APDU to protect.
    pub apdu: &'a [u8],
}

/// What a response must pass in [`Dco::unprotect`].
#[derive(Debug)]
pub struct ResponseCheck<'g> {
    /// The minimum protection accepted.
    pub policy: SecurityPolicy,
    /// The meter's counter, for this client: the response must be above
    /// it, and advances it.
    pub guard: &'g mut ReplayGuard,
}

/// What [`Dco::prepare_rotation`] starts from.
#[derive(Debug)]
pub struct Rotation<'a, R: ?Sized> {
    /// Randomness for the new keys (software providers).
    pub rng: &'a mut R,
    /// The device's current MK, which the new keys are wrapped under.
    pub mk: &'a PackagedKey<MasterKey>,
    /// The client's current keys, which the request is protected under.
    pub current: ClientRecords<'a>,
    /// What the rotation replaces.
    pub scope: RotationScope,
    /// The Security Setup object, method and invoke-id the key_transfer
    /// request carries; the answer is bound to the request by its
    /// invoke-id.
    pub method: SecuritySetupMethod,
}

/// What a rotation replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationScope {
    /// Replace the AK and the GUEK (every rotation does).
    pub ak_and_guek: bool,
    /// Also replace the device MK (only where the device supports it).
    pub master_key: bool,
}

/// A prepared rotation: the protected key_transfer request and the new
/// packaged keys, to be held as pending until the meter accepts.
#[derive(Debug)]
pub struct PreparedRotation {
    /// Length of the protected request written to the caller's buffer.
    pub frame_len: usize,
    /// The new AK (generation + 1).
    pub ak: PackagedKey<AuthenticationKey>,
    /// The new GUEK (generation + 1).
    pub guek: PackagedKey<GlobalUnicastEncryptionKey>,
    /// The new MK, when the scope includes it.
    pub mk: Option<PackagedKey<MasterKey>>,
}

/// The DCO service.
#[derive(Debug)]
pub struct Dco<P: DcoProvider> {
    provider: P,
    title: SystemTitle,
    node: Option<NodeName>,
}

fn event(
    audit: &Recorder<'_, impl AuditSink + ?Sized>,
    action: AuditAction,
    outcome: Outcome,
    id: &RecordId,
    kek: Option<KeyCheckValue>,
) -> AuditEvent {
    let mut e = audit.event(action, outcome).with_record(*id);
    if let Some(k) = kek {
        e = e.with_kek(k);
    }
    e
}

/// The audit action for a failed key operation.
const fn failure_action(e: &Error) -> AuditAction {
    match e {
        Error::Key(KeyError::Corrupted | KeyError::WrongKek) => AuditAction::CorruptionDetected,
        Error::Auth(_) => AuditAction::AuthenticationFailed,
        Error::Counter(CounterError::Replay) => AuditAction::ReplayRejected,
        Error::Counter(CounterError::Exhausted) => AuditAction::CounterExhausted,
        _ => AuditAction::AccessRefused,
    }
}

/// The caller's counter, with the record of the protect it serves
/// written before each value is drawn: a value is never spent unrecorded.
struct RecordFirst<'c, 'r, 'a, C: ?Sized, S: AuditSink + ?Sized> {
    counter: &'c mut C,
    audit: &'r mut Recorder<'a, S>,
    event: AuditEvent,
    audit_failed: bool,
    drawn: Option<InvocationCounter>,
}

impl<C: CounterSource + ?Sized, S: AuditSink + ?Sized> CounterSource
    for RecordFirst<'_, '_, '_, C, S>
{
    fn next_counter(&mut self) -> core::result::Result<InvocationCounter, CounterError> {
        if self.audit.record(&self.event).is_err() {
            self.audit_failed = true;
            // Nothing was issued; the caller maps this to `Error::Audit`.
            return Err(CounterError::Persistence);
        }
        let ic = self.counter.next_counter()?;
        self.drawn = Some(ic);
        Ok(ic)
    }

    fn near_exhaustion(&self) -> bool {
        self.counter.near_exhaustion()
    }
}

impl<P: DcoProvider> Dco<P> {
    /// A DCO with its provider and system title.
    pub const fn new(provider: P, title: SystemTitle) -> Self {
        Self {
            provider,
            title,
            node: None,
        }
    }

    /// The same DCO, naming itself `node` in the audit events it records
    /// (when the caller's context names no node).
    #[must_use]
    pub fn with_node(mut self, node: NodeName) -> Self {
        self.node = Some(node);
        self
    }

    /// Puts this node's name into `audit`'s context when it names no node.
    fn stamp(&self, audit: &mut Recorder<'_, impl AuditSink + ?Sized>) {
        let context = audit.context_mut();
        if context.node.is_none() {
            context.node = self.node;
        }
    }

    /// The name of the DCO's send counter for the key `id` names.
    fn counter_key(&self, id: &RecordId, kind: KeyKind) -> Result<CounterKey> {
        let client = id.client.ok_or(Error::Misuse(
            "an encryption key record always names a client",
        ))?;
        Ok(CounterKey::new(
            self.title,
            id.device,
            client,
            kind,
            id.generation,
        ))
    }

    /// Makes the send counter of a GUEK the DCO has not protected under
    /// yet: the keys a meter was commissioned with (a replacement's is made
    /// by [`Self::prepare_rotation`]). Introducing a key again keeps its
    /// counter as it is.
    ///
    /// # Errors
    /// [`Error::Counter`] when the counter's record cannot be made.
    pub fn introduce(
        &self,
        counters: &mut impl KeyCounters,
        guek: &PackagedKey<GlobalUnicastEncryptionKey>,
    ) -> Result<()> {
        let key = self.counter_key(&guek.id(), KeyKind::GlobalUnicast)?;
        counters.introduce(&key, InvocationCounter::new(1))?;
        Ok(())
    }

    /// Makes the send counter of a dedicated key, before the first command
    /// under it.
    ///
    /// # Errors
    /// As [`Self::introduce`].
    pub fn introduce_dedicated(
        &self,
        counters: &mut impl KeyCounters,
        dk: &PackagedKey<DedicatedKey>,
    ) -> Result<()> {
        let key = self.counter_key(&dk.id(), KeyKind::Dedicated)?;
        counters.introduce(&key, InvocationCounter::new(1))?;
        Ok(())
    }

    /// The DCO's system title (the IV of everything it protects).
    #[must_use]
    pub const fn title(&self) -> SystemTitle {
        self.title
    }

    /// The provider.
    #[must_use]
    pub const fn provider(&self) -> &P {
        &self.provider
    }

    fn kcv(&self, role: KeyRole) -> Option<KeyCheckValue> {
        match role.kek() {
            dlms_sec::types::KekKind::Dco => self.provider.dco_key_check_value().ok(),
            dlms_sec::types::KekKind::Shared => self.provider.shared_key_check_value().ok(),
        }
    }

    fn audit_result<T>(
        &self,
        audit: &mut Recorder<'_, impl AuditSink + ?Sized>,
        id: &RecordId,
        ok_action: AuditAction,
        result: Result<T>,
    ) -> Result<T> {
        let kcv = self.kcv(id.role);
        match result {
            Ok(v) => {
                audit.record(&event(audit, ok_action, Outcome::Success, id, kcv))?;
                Ok(v)
            }
            Err(e) => {
                let failure = event(audit, failure_action(&e), Outcome::Failure, id, kcv);
                audit.record(&failure)?;
                Err(e)
            }
        }
    }

    /// Protects an S1SP command: unpacks the AK and the GUEK (or the
    /// dedicated key, when the bundle carries one) inside the provider and
    /// protects `apdu` under them, in the service-specific form.
    ///
    /// The unpacking is recorded before the counter value is drawn: a value
    /// is never spent without its record. On any error `out` is zeroed, so
    /// no frame is returned without its records.
    ///
    /// # Errors
    /// Record errors (audited as corruption detected), counter errors,
    /// [`Error::Audit`](dlms_sec::Error) when an audit record cannot be
    /// written; then as
    /// [`Suite0::protect`](dlms_sec::suite0::Suite0::protect).
    pub fn protect(
        &self,
        command: &Command<'_>,
        counters: &mut impl KeyCounters,
        out: &mut [u8],
        audit: &mut Recorder<'_, impl AuditSink + ?Sized>,
    ) -> Result<usize> {
        self.stamp(audit);
        self.protect_recorded(command, counters, out, audit)
            .map(|(n, _)| n)
    }

    /// [`Self::protect`], also returning the counter value drawn.
    fn protect_recorded(
        &self,
        command: &Command<'_>,
        counters: &mut impl KeyCounters,
        out: &mut [u8],
        audit: &mut Recorder<'_, impl AuditSink + ?Sized>,
    ) -> Result<(usize, Option<InvocationCounter>)> {
        let Command {
            records,
            protection,
            apdu,
        } = *command;
        let req = Protect {
            protection,
            key: records.key_kind(),
            form: CipheredForm::ServiceSpecific,
            system_title: self.title,
        };
        let id = match records.dk {
            Some(dk) => dk.id(),
            None => records.guek.id(),
        };
        let kcv = self.kcv(id.role);
        let counter = match self.counter_key(&id, records.key_kind()) {
            Ok(key) => counters.counter(&key).map_err(Error::Counter),
            Err(e) => Err(e),
        };
        let counter = match counter {
            Ok(counter) => counter,
            Err(e) => {
                out.fill(0);
                let failure = event(audit, failure_action(&e), Outcome::Failure, &id, kcv);
                audit.record(&failure)?;
                return Err(e);
            }
        };
        let unpacked = event(audit, AuditAction::Unpacked, Outcome::Success, &id, kcv);
        let mut source = RecordFirst {
            counter,
            audit: &mut *audit,
            event: unpacked,
            audit_failed: false,
            drawn: None,
        };
        let result = self
            .provider
            .protect(&records.command_keys(), &req, &mut source, apdu, out);
        let RecordFirst {
            counter,
            audit_failed,
            drawn,
            ..
        } = source;
        let with_drawn = |e: AuditEvent| match drawn {
            Some(ic) => e.with_counter(ic),
            None => e,
        };
        let n = match result {
            Ok(n) => n,
            Err(e) => {
                out.fill(0);
                if audit_failed {
                    return Err(Error::Audit);
                }
                let failure = event(audit, failure_action(&e), Outcome::Failure, &id, kcv);
                audit.record(&with_drawn(failure))?;
                return Err(e);
            }
        };
        if counter.near_exhaustion() {
            // The DCO's counter nears its last value: re-key soon.
            let near = event(
                audit,
                AuditAction::CounterNearExhaustion,
                Outcome::Success,
                &id,
                None,
            );
            if let Err(e) = audit.record(&with_drawn(near)) {
                out.fill(0);
                return Err(e);
            }
        }
        Ok((n, drawn))
    }

    /// Verifies and decrypts a meter's response under the client's keys,
    /// requires `check.policy` and advances `check.guard` (the meter's
    /// counter, for this client).
    ///
    /// # Errors
    /// As [`DcoProvider::unprotect`]; [`Error::Counter`] for a replayed
    /// response; authentication failures and replays are audited.
    pub fn unprotect<'b>(
        &self,
        records: ClientRecords<'_>,
        frame: &'b mut [u8],
        check: ResponseCheck<'_>,
        audit: &mut Recorder<'_, impl AuditSink + ?Sized>,
    ) -> Result<Unprotected<'b>> {
        self.stamp(audit);
        let ResponseCheck { policy, guard } = check;
        let id = records.guek.id();
        let kcv = self.kcv(id.role);
        // The stateless replay check first: an old counter is refused
        // before any key is unpacked or any byte of the frame changes.
        let fresh = FrameLayout::parse(frame)
            .and_then(|layout| Ok(guard.check(layout.invocation_counter)?));
        if let Err(e) = fresh {
            return self.audit_result(audit, &id, AuditAction::Unpacked, Err(e));
        }
        let params = Unprotect {
            peer_system_title: PeerTitle::Expected(guard.peer()),
            policy,
        };
        let got = match self
            .provider
            .unprotect(&records.command_keys(), frame, &params)
        {
            Ok(got) => got,
            Err(e) => return self.audit_result(audit, &id, AuditAction::Unpacked, Err(e)),
        };
        // From here on the frame holds plaintext: every error wipes it.
        if let Err(e) = got.admit_into(guard) {
            got.discard();
            return self.audit_result(audit, &id, AuditAction::Unpacked, Err(e.into()));
        }
        match audit.record(&event(
            audit,
            AuditAction::Unpacked,
            Outcome::Success,
            &id,
            kcv,
        )) {
            Ok(()) => Ok(got),
            Err(e) => {
                got.discard();
                Err(e)
            }
        }
    }

    /// The fingerprint of the encryption key of `records`: make the replay
    /// guard for the meter's answers under them with it.
    ///
    /// # Errors
    /// As [`DcoProvider::key_fingerprint`].
    pub fn key_fingerprint(&self, records: ClientRecords<'_>) -> Result<KeyFingerprint> {
        self.provider.key_fingerprint(&records.command_keys())
    }

    /// Generates one key of role `K` inside the provider, packaged as `id`
    /// and wrapped under `mk` for the transfer, and audits its generation,
    /// packaging and wrapping.
    fn generate_wrapped<K, R>(
        &self,
        rng: &mut R,
        mk: &PackagedKey<MasterKey>,
        id: RecordId,
        audit: &mut Recorder<'_, impl AuditSink + ?Sized>,
    ) -> Result<(PackagedKey<K>, WrappedKey)>
    where
        K: TransferableKey,
        R: TryCryptoRng + ?Sized,
        P: CryptoProvider<K::Kek>,
    {
        let result = self.provider.generate_for_transfer::<K, R>(rng, mk, id);
        let (rec, wrapped) = self.audit_result(audit, &id, AuditAction::Generated, result)?;
        for action in [AuditAction::Packaged, AuditAction::Wrapped] {
            let done = event(audit, action, Outcome::Success, &id, self.kcv(id.role));
            audit.record(&done)?;
        }
        Ok((rec, wrapped))
    }

    /// Prepares the rotation of one client's AK and GUEK (and, in scope,
    /// the device MK): fresh keys generated inside the provider, wrapped
    /// under the current MK into a key_transfer action-request protected
    /// under the current AK and GUEK, written to `out`.
    /// The new records are returned for the S1SP to store as pending; the
    /// old keys stay active until the meter accepts.
    ///
    /// # Errors
    /// [`Error::Misuse`] when the records belong to different devices or
    /// the client has no keys; provider, RNG, counter and audit errors.
    pub fn prepare_rotation<R: TryCryptoRng + ?Sized>(
        &self,
        rotation: Rotation<'_, R>,
        counters: &mut impl KeyCounters,
        out: &mut [u8],
        audit: &mut Recorder<'_, impl AuditSink + ?Sized>,
    ) -> Result<PreparedRotation> {
        self.stamp(audit);
        let Rotation {
            rng,
            mk,
            current,
            scope,
            method,
        } = rotation;
        if method.method != dlms_sec::wire::KEY_TRANSFER_METHOD {
            return Err(Error::Misuse("a key_transfer invokes method 2"));
        }
        let ak_id = current.ak.id();
        let client: Client = ak_id
            .client
            .ok_or(Error::Misuse("an AK record always names a client"))?;
        if mk.id().device != ak_id.device {
            return Err(Error::Misuse("the MK record belongs to another device"));
        }
        let next = |id: RecordId| RecordId {
            generation: id.generation.saturating_add(1),
            ..id
        };
        let (ak, wrapped_ak): (PackagedKey<AuthenticationKey>, _) =
            self.generate_wrapped(rng, mk, next(ak_id), audit)?;
        let (guek, wrapped_guek): (PackagedKey<GlobalUnicastEncryptionKey>, _) =
            self.generate_wrapped(rng, mk, next(current.guek.id()), audit)?;
        let new_mk: Option<(PackagedKey<MasterKey>, WrappedKey)> = if scope.master_key {
            Some(self.generate_wrapped(rng, mk, next(mk.id()), audit)?)
        } else {
            None
        };
        let mut transfer = KeyTransfer::new();
        transfer.push(KeyId::GlobalUnicastEncryption, wrapped_guek)?;
        transfer.push(KeyId::Authentication, wrapped_ak)?;
        if let Some((_, wrapped_mk)) = &new_mk {
            transfer.push(KeyId::Master, *wrapped_mk)?;
        }
        let new_mk = new_mk.map(|(record, _)| record);
        debug_assert!(transfer.get(KeyId::Authentication).is_some());
        // Room for the largest key_transfer request: all four key ids.
        let mut request = [0u8; 160];
        let len = method.emit_key_transfer_request(&transfer, &mut request)?;
        let apdu = request.get(..len).unwrap_or_default();
        let command = Command {
            records: current,
            protection: Protection::AuthenticatedEncrypted,
            apdu,
        };
        // The new GUEK's counter exists before the key leaves: a record
        // missing later is a loss, never a first use.
        self.introduce(counters, &guek)?;
        let (frame_len, drawn) = self.protect_recorded(&command, counters, out, audit)?;
        // Recorded before the frame is returned: no transfer leaves
        // unrecorded.
        let mut sent = audit
            .event(AuditAction::TransferSent, Outcome::Success)
            .with_device(ak_id.device)
            .with_client(client)
            .with_generation(ak.id().generation);
        if let Some(k) = self.kcv(KeyRole::Master) {
            sent = sent.with_kek(k);
        }
        if let Some(ic) = drawn {
            sent = sent.with_counter(ic);
        }
        if let Err(e) = audit.record(&sent) {
            out.fill(0);
            return Err(e);
        }
        Ok(PreparedRotation {
            frame_len,
            ak,
            guek,
            mk: new_mk,
        })
    }
}
