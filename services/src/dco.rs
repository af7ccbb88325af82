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
//! [`AuditSink`] before the result is returned; an audit failure fails the
//! action. Time is passed in.

use rand_core::TryCryptoRng;

use dlms_sec::audit::{AuditAction, AuditEvent, AuditSink, Outcome, Timestamp};
use dlms_sec::counter::{CounterSource, ReplayGuard};
use dlms_sec::error::{CounterError, Error, KeyError, Result};
use dlms_sec::key::package::{KeyCheckValue, PackagedKey, RecordId};
use dlms_sec::key::wrap::{KeyId, TransferableKey, WrappedKey};
use dlms_sec::key::{
    AuthenticationKey, DcoKey, DedicatedKey, GlobalUnicastEncryptionKey, KeyRole, MasterKey,
    SharedKey,
};
use dlms_sec::provider::{CommandKeys, CryptoProvider, DcoProvider, EncryptionRecord};
use dlms_sec::suite0::{Protect, Unprotect, Unprotected};
use dlms_sec::types::Client;
use dlms_sec::types::{Protection, SecurityPolicy};
use dlms_sec::wire::{CipheredForm, KeyKind, KeyTransfer, SecuritySetupMethod, SystemTitle};

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
}

fn event(
    action: AuditAction,
    outcome: Outcome,
    now: Timestamp,
    id: &RecordId,
    kek: Option<KeyCheckValue>,
) -> AuditEvent {
    let mut e = AuditEvent::new(action, outcome, now).with_record(*id);
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

impl<P: DcoProvider> Dco<P> {
    /// A DCO with its provider and system title.
    pub const fn new(provider: P, title: SystemTitle) -> Self {
        Self { provider, title }
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
            dlms_sec::types::KekKind::Dco => {
                CryptoProvider::<DcoKey>::kek_check_value(&self.provider).ok()
            }
            dlms_sec::types::KekKind::Shared => {
                CryptoProvider::<SharedKey>::kek_check_value(&self.provider).ok()
            }
        }
    }

    fn audit_result<T>(
        &self,
        audit: &mut impl AuditSink,
        now: Timestamp,
        id: &RecordId,
        ok_action: AuditAction,
        result: Result<T>,
    ) -> Result<T> {
        let kcv = self.kcv(id.role);
        match result {
            Ok(v) => {
                audit.record(&event(ok_action, Outcome::Success, now, id, kcv))?;
                Ok(v)
            }
            Err(e) => {
                audit.record(&event(failure_action(&e), Outcome::Failure, now, id, kcv))?;
                Err(e)
            }
        }
    }

    /// Protects an S1SP command: unpacks the AK and the GUEK (or the
    /// dedicated key, when the bundle carries one) inside the provider and
    /// protects `apdu` under them, in the service-specific form.
    ///
    /// # Errors
    /// Record errors (audited as corruption detected), counter errors,
    /// [`Error::Audit`](crate::Error) when the audit record cannot be written; then as
    /// [`Suite0::protect`](dlms_sec::suite0::Suite0::protect).
    #[allow(
        clippy::too_many_arguments,
        reason = "one argument per part of a command"
    )]
    pub fn protect(
        &self,
        records: ClientRecords<'_>,
        protection: Protection,
        counter: &mut impl CounterSource,
        apdu: &[u8],
        out: &mut [u8],
        audit: &mut impl AuditSink,
        now: Timestamp,
    ) -> Result<usize> {
        let req = Protect {
            protection,
            key: records.key_kind(),
            form: CipheredForm::ServiceSpecific,
            system_title: self.title,
        };
        let result = self
            .provider
            .protect(&records.command_keys(), &req, counter, apdu, out);
        let id = match records.dk {
            Some(dk) => dk.id(),
            None => records.guek.id(),
        };
        let n = self.audit_result(audit, now, &id, AuditAction::Unpacked, result)?;
        if counter.near_exhaustion() {
            // The DCO's counter nears its last value: re-key soon.
            audit.record(&event(
                AuditAction::CounterNearExhaustion,
                Outcome::Success,
                now,
                &id,
                None,
            ))?;
        }
        Ok(n)
    }

    /// Verifies and decrypts a meter's response under the client's keys and
    /// advances `guard` (the meter's counter, for this client).
    ///
    /// # Errors
    /// As [`DcoProvider::unprotect`]; [`Error::Counter`] for a replayed
    /// response; authentication failures and replays are audited.
    pub fn unprotect<'b>(
        &self,
        records: ClientRecords<'_>,
        frame: &'b mut [u8],
        policy: SecurityPolicy,
        guard: &mut ReplayGuard,
        audit: &mut impl AuditSink,
        now: Timestamp,
    ) -> Result<Unprotected<'b>> {
        let params = Unprotect {
            peer_system_title: Some(guard.peer()),
            policy,
        };
        let result = self
            .provider
            .unprotect(&records.command_keys(), frame, &params)
            .and_then(|got| {
                got.admit_into(guard)?;
                Ok(got)
            });
        self.audit_result(
            audit,
            now,
            &records.guek.id(),
            AuditAction::Unpacked,
            result,
        )
    }

    /// Generates one key of role `K` inside the provider, packaged as `id`
    /// and wrapped under `mk` for the transfer, and audits its generation,
    /// packaging and wrapping.
    fn generate_wrapped<K, R>(
        &self,
        rng: &mut R,
        mk: &PackagedKey<MasterKey>,
        id: RecordId,
        audit: &mut impl AuditSink,
        now: Timestamp,
    ) -> Result<(PackagedKey<K>, WrappedKey)>
    where
        K: TransferableKey,
        R: TryCryptoRng + ?Sized,
        P: CryptoProvider<K::Kek>,
    {
        let result = self.provider.generate_for_transfer::<K, R>(rng, mk, id);
        let (rec, wrapped) = self.audit_result(audit, now, &id, AuditAction::Generated, result)?;
        for action in [AuditAction::Packaged, AuditAction::Wrapped] {
            audit.record(&event(
                action,
                Outcome::Success,
                now,
                &id,
                self.kcv(id.role),
            ))?;
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
    #[allow(
        clippy::too_many_arguments,
        reason = "one argument per part of a rotation"
    )]
    pub fn prepare_rotation<R: TryCryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        mk: &PackagedKey<MasterKey>,
        current: ClientRecords<'_>,
        scope: RotationScope,
        counter: &mut impl CounterSource,
        out: &mut [u8],
        audit: &mut impl AuditSink,
        now: Timestamp,
    ) -> Result<PreparedRotation> {
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
            self.generate_wrapped(rng, mk, next(ak_id), audit, now)?;
        let (guek, wrapped_guek): (PackagedKey<GlobalUnicastEncryptionKey>, _) =
            self.generate_wrapped(rng, mk, next(current.guek.id()), audit, now)?;
        let new_mk: Option<(PackagedKey<MasterKey>, WrappedKey)> = if scope.master_key {
            Some(self.generate_wrapped(rng, mk, next(mk.id()), audit, now)?)
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
        let method = SecuritySetupMethod::default();
        // Room for the largest key_transfer request: all four key ids.
        let mut request = [0u8; 160];
        let len = method.emit_key_transfer_request(&transfer, &mut request)?;
        let apdu = request.get(..len).unwrap_or_default();
        let frame_len = self.protect(
            current,
            Protection::AuthenticatedEncrypted,
            counter,
            apdu,
            out,
            audit,
            now,
        )?;
        let mut sent = AuditEvent::new(AuditAction::TransferSent, Outcome::Success, now)
            .with_device(ak_id.device)
            .with_client(client)
            .with_generation(ak.id().generation);
        if let Some(k) = self.kcv(KeyRole::Master) {
            sent = sent.with_kek(k);
        }
        audit.record(&sent)?;
        Ok(PreparedRotation {
            frame_len,
            ak,
            guek,
            mk: new_mk,
        })
    }
}
