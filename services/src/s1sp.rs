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
//! only when the meter's success answer verifies; on a refusal the pending
//! keys are dropped, on a lost answer they stay pending and
//! [`S1sp::resume`] finds out which keys the meter uses and finishes or
//! abandons the rotation. Nothing stored is ever lost on the way.
//!
//! There is no revoke, destroy, export or backup operation (R-16, R-18,
//! keys are replaced by rotation, and the superseded generation is
//! retired only after the new one is active.

use std::collections::BTreeMap;
use std::vec;
use std::vec::Vec;

use rand_core::TryCryptoRng;

use crate::dco::{ClientRecords, Command, Dco, ResponseCheck, Rotation, RotationScope};
use dlms_sec::audit::{AuditAction, AuditEvent, AuditSink, Outcome, Recorder, Timestamp};
use dlms_sec::counter::{CounterSource, KeyFingerprint, ReplayGuard};
use dlms_sec::error::{Error, KeyError, Result};
use dlms_sec::key::package::{PackagedKey, PackagedRecord};
use dlms_sec::key::{
    AuthenticationKey, GlobalUnicastEncryptionKey, KekKind, KeyRole, MasterKey, SharedKey,
};
use dlms_sec::keystore::{KeySlot, KeyStore};
use dlms_sec::meter::DeviceCapabilities;
use dlms_sec::provider::{CryptoProvider, DcoProvider};
use dlms_sec::types::Client;
use dlms_sec::types::{Protection, SecurityPolicy};
use dlms_sec::wire::{KeyKind, SystemTitle};

/// The largest frame a command or its answer may take through
/// [`S1sp::command`] (a DLMS server's usual max-receive-pdu-size).
pub const MAX_FRAME_LEN: usize = 2048;

/// The rotation deadline after commissioning: 7 days.
pub const ROTATION_DEADLINE_SECS: u64 = 7 * 24 * 3600;

/// What the S1SP knows of one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    /// When it was commissioned.
    pub commissioned_at: Timestamp,
    /// What it supports.
    pub capabilities: DeviceCapabilities,
    /// Per keyed client (in [`Client::KEYED`] order): rotated since
    /// commissioning.
    pub rotated: [bool; 4],
    /// The MK has been rotated since commissioning.
    pub master_key_rotated: bool,
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
    /// The meter accepted; the new keys are active.
    Activated,
    /// The meter refused; the pending keys were dropped, the old stay active.
    Refused,
    /// The answer was lost: the new keys stay pending; call
    /// [`S1sp::resume`].
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
    C: CounterSource,
    A: AuditSink,
    R: ?Sized,
> {
    /// The DCO.
    pub dco: &'a Dco<P>,
    /// The link to the meters.
    pub link: &'a mut L,
    /// The DCO's send counter.
    pub counter: &'a mut C,
    /// The audit sink, and now.
    pub audit: Recorder<'a, A>,
    /// Randomness for new keys (software providers).
    pub rng: &'a mut R,
}

impl<P: DcoProvider, L: MeterLink, C: CounterSource, A: AuditSink, R: ?Sized> core::fmt::Debug
    for RotationContext<'_, P, L, C, A, R>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RotationContext")
            .field("now", &self.audit.now())
            .finish_non_exhaustive()
    }
}

/// An S1SP service over a key store and a Shared-Key-only provider.
#[derive(Debug)]
pub struct S1sp<S: KeyStore, P: CryptoProvider<SharedKey>> {
    store: S,
    provider: P,
    devices: BTreeMap<SystemTitle, DeviceRecord>,
    guards: BTreeMap<(SystemTitle, Client), ReplayGuard>,
}

fn slot(device: SystemTitle, client: Option<Client>, role: KeyRole) -> KeySlot {
    KeySlot {
        device,
        client,
        role,
    }
}

impl<S: KeyStore, P: CryptoProvider<SharedKey>> S1sp<S, P> {
    /// An S1SP with its store and its provider (Shared Key only).
    pub const fn new(store: S, provider: P) -> Self {
        Self {
            store,
            provider,
            devices: BTreeMap::new(),
            guards: BTreeMap::new(),
        }
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
        let d = self
            .devices
            .get_mut(&device)
            .ok_or(Error::Key(KeyError::NotFound))?;
        d.capabilities = capabilities;
        Ok(())
    }

    /// The device registry.
    pub const fn devices(&self) -> &BTreeMap<SystemTitle, DeviceRecord> {
        &self.devices
    }

    /// Commissions a device: stores the packaged records it was made with
    /// (MK, and AK and GUEK per keyed client) as active, and starts its
    /// 7-day rotation clock.
    ///
    /// # Errors
    /// Store errors; nothing is half-registered (records are stored first).
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
            self.store.put_initial(r)?;
        }
        self.devices.insert(
            device,
            DeviceRecord {
                commissioned_at: now,
                capabilities,
                rotated: [false; 4],
                master_key_rotated: false,
            },
        );
        Ok(())
    }

    /// Devices whose commissioning rotation is not finished and whose
    /// deadline has passed or falls within `horizon_secs` of `now`, with the
    /// deadline, earliest first.
    #[must_use]
    pub fn due(&self, now: Timestamp, horizon_secs: u64) -> Vec<(SystemTitle, Timestamp)> {
        let limit = now.0.saturating_add(horizon_secs);
        let mut due: Vec<_> = self
            .devices
            .iter()
            .filter(|(_, d)| !d.fully_rotated() && d.deadline().0 <= limit)
            .map(|(t, d)| (*t, d.deadline()))
            .collect();
        due.sort_by_key(|(t, d)| (*d, *t));
        due
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

    /// Checks every Shared-Key record this S1SP holds and returns the
    /// (device, client) pairs whose records are corrupt, audited as
    /// corruption detected: the input of a re-key campaign.
    ///
    /// # Errors
    /// Store and audit errors.
    pub fn sweep(
        &self,
        audit: &mut Recorder<'_, impl AuditSink + ?Sized>,
    ) -> Result<Vec<(SystemTitle, Option<Client>)>> {
        let mut slots = Vec::new();
        for device in self.devices.keys() {
            self.store.for_each_slot(device, &mut |s| slots.push(s))?;
        }
        let mut corrupt = Vec::new();
        for s in slots {
            if s.role.kek() != KekKind::Shared {
                continue;
            }
            let record = self.store.active(&s)?;
            match self.check_record(&record, audit) {
                Ok(()) => {}
                Err(Error::Key(KeyError::Corrupted | KeyError::WrongKek)) => {
                    corrupt.push((s.device, s.client));
                }
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
        let (_, guek) = self.active_records(device, client)?;
        let result = self
            .provider
            .decrypt_unauthenticated(&guek, frame, Some(device));
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

    fn guard(
        &mut self,
        device: SystemTitle,
        client: Client,
        key: KeyFingerprint,
    ) -> &mut ReplayGuard {
        self.guards
            .entry((device, client))
            .or_insert_with(|| ReplayGuard::new(device, KeyKind::GlobalUnicast, key))
    }

    /// Sends one command (any xDLMS request APDU) to (device, client) under
    /// its active keys, through the DCO, and returns the verified answer.
    ///
    /// # Errors
    /// Store, DCO, link and audit errors.
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
        C: CounterSource,
        A: AuditSink,
        R: TryCryptoRng + ?Sized,
    {
        let (ak, guek) = self.active_records(device, client)?;
        self.exchange(cx, ClientRecords::new(&ak, &guek), apdu, answer)
    }

    /// Sends `apdu` under `records` to the (device, client) the AK record
    /// names and returns the verified answer.
    fn exchange<D, L, C, A, R>(
        &mut self,
        cx: &mut RotationContext<'_, D, L, C, A, R>,
        records: ClientRecords<'_>,
        apdu: &[u8],
        answer: &mut [u8],
    ) -> Result<usize>
    where
        D: DcoProvider,
        L: MeterLink,
        C: CounterSource,
        A: AuditSink,
        R: TryCryptoRng + ?Sized,
    {
        let id = records.ak.id();
        let (device, client) = (
            id.device,
            id.client
                .ok_or(Error::Misuse("an AK record always names a client"))?,
        );
        let mut request = [0u8; MAX_FRAME_LEN];
        let command = Command {
            records,
            protection: Protection::AuthenticatedEncrypted,
            apdu,
        };
        let n = cx
            .dco
            .protect(&command, cx.counter, &mut request, &mut cx.audit)?;
        let mut frame = [0u8; MAX_FRAME_LEN];
        let m = cx.link.exchange(
            device,
            client,
            request.get_mut(..n).unwrap_or_default(),
            &mut frame,
        )?;
        let key = cx.dco.key_fingerprint(records)?;
        let check = ResponseCheck {
            policy: SecurityPolicy::AuthenticatedEncrypted,
            guard: self.guard(device, client, key),
        };
        let got = cx.dco.unprotect(
            records,
            frame.get_mut(..m).unwrap_or_default(),
            check,
            &mut cx.audit,
        )?;
        let plain = got.apdu();
        let out = answer.get_mut(..plain.len()).ok_or(Error::BufferTooSmall {
            required: plain.len(),
        })?;
        out.copy_from_slice(plain);
        Ok(plain.len())
    }

    /// Rotates one client's AK and GUEK (and the device MK, where the
    /// device supports it and it has not been rotated yet): the commissioning
    /// rotation and the re-key after a compromise alike.
    ///
    /// # Errors
    /// Store, DCO, RNG and audit errors before anything is sent (nothing
    /// changes); a link error after sending leaves the new keys pending and
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
        C: CounterSource,
        A: AuditSink,
        R: TryCryptoRng + ?Sized,
    {
        let record = *self
            .devices
            .get(&device)
            .ok_or(Error::Key(KeyError::NotFound))?;
        let (ak, guek) = self.active_records(device, client)?;
        let mk = self.master_key(device)?;
        let scope = RotationScope {
            ak_and_guek: true,
            master_key: record.capabilities.master_key_rotation && !record.master_key_rotated,
        };
        let mut request = [0u8; 256];
        let rotation = Rotation {
            rng: &mut *cx.rng,
            mk: &mk,
            current: ClientRecords::new(&ak, &guek),
            scope,
        };
        let prepared =
            cx.dco
                .prepare_rotation(rotation, cx.counter, &mut request, &mut cx.audit)?;
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
            return Err(e);
        }
        let generation = prepared.ak.id().generation;
        let now = cx.audit.now();
        let client_event = |action, outcome| {
            AuditEvent::new(action, outcome, now)
                .with_device(device)
                .with_client(client)
                .with_generation(generation)
        };
        let mut frame = [0u8; 256];
        let sent = cx.link.exchange(
            device,
            client,
            request.get_mut(..prepared.frame_len).unwrap_or_default(),
            &mut frame,
        );
        let Ok(m) = sent else {
            cx.audit
                .record(&client_event(AuditAction::RotationFailed, Outcome::Failure))?;
            return Ok(RotationOutcome::Pending);
        };
        // The answer comes under the old keys.
        let key = cx.dco.key_fingerprint(ClientRecords::new(&ak, &guek))?;
        let check = ResponseCheck {
            policy: SecurityPolicy::AuthenticatedEncrypted,
            guard: self.guard(device, client, key),
        };
        let answer = cx.dco.unprotect(
            ClientRecords::new(&ak, &guek),
            frame.get_mut(..m).unwrap_or_default(),
            check,
            &mut cx.audit,
        );
        let accepted = matches!(
            answer.as_ref().map(|a| a.apdu()),
            Ok([0xC7, 0x01, _, 0x00, ..])
        );
        drop(answer);
        if accepted {
            cx.audit.record(&client_event(
                AuditAction::TransferAccepted,
                Outcome::Success,
            ))?;
            self.activate(&mut cx.audit, device, client, prepared.mk.is_some())?;
            Ok(RotationOutcome::Activated)
        } else {
            self.abandon(device, client)?;
            cx.audit
                .record(&client_event(AuditAction::RotationFailed, Outcome::Refused))?;
            Ok(RotationOutcome::Refused)
        }
    }

    /// Finishes a rotation whose answer was lost: if the meter answers under
    /// the pending keys it has installed them, so they are activated; if it
    /// still answers under the active keys the pending ones are dropped and
    /// the rotation can simply run again.
    ///
    /// # Errors
    /// [`KeyError::NoPending`] when nothing is pending; store, DCO and audit
    /// errors; a link error leaves everything as it was.
    pub fn resume<D, L, C, A, R>(
        &mut self,
        cx: &mut RotationContext<'_, D, L, C, A, R>,
        device: SystemTitle,
        client: Client,
    ) -> Result<RotationOutcome>
    where
        D: DcoProvider,
        L: MeterLink,
        C: CounterSource,
        A: AuditSink,
        R: TryCryptoRng + ?Sized,
    {
        let (ak, guek) = self
            .pending_records(device, client)?
            .ok_or(Error::Key(KeyError::NoPending))?;
        let probe = [
            0xC0, 0x01, 0xC1, 0x00, 0x01, 0x00, 0x00, 0x2A, 0x00, 0x00, 0xFF, 0x02, 0x00,
        ];
        let mut answer = [0u8; 64];
        // The meter's answers under new keys start a fresh guard.
        let saved = self.guards.remove(&(device, client));
        let under_new = self.exchange(cx, ClientRecords::new(&ak, &guek), &probe, &mut answer);
        if under_new.is_ok() {
            let mk_pending = self
                .store
                .pending(&slot(device, None, KeyRole::Master))?
                .is_some();
            self.activate(&mut cx.audit, device, client, mk_pending)?;
            return Ok(RotationOutcome::Activated);
        }
        if let Some(g) = saved {
            self.guards.insert((device, client), g);
        }
        self.command(cx, device, client, &probe, &mut answer)?;
        self.abandon(device, client)?;
        Ok(RotationOutcome::Refused)
    }

    fn activate(
        &mut self,
        audit: &mut Recorder<'_, impl AuditSink + ?Sized>,
        device: SystemTitle,
        client: Client,
        with_mk: bool,
    ) -> Result<()> {
        let mut roles = vec![KeyRole::Authentication, KeyRole::GlobalUnicastEncryption];
        if with_mk {
            roles.push(KeyRole::Master);
        }
        for role in roles {
            let c = if role == KeyRole::Master {
                None
            } else {
                Some(client)
            };
            let s = slot(device, c, role);
            let pending = self
                .store
                .pending(&s)?
                .ok_or(Error::Key(KeyError::NoPending))?;
            self.store.activate(&s, pending.generation())?;
            self.store.retire_previous(&s)?;
            let activated = audit
                .event(AuditAction::Activated, Outcome::Success)
                .with_record(pending.id())
                .with_kek(pending.kek_check_value());
            audit.record(&activated)?;
        }
        // New keys: the meter's answers start a fresh guard.
        self.guards.remove(&(device, client));
        if let Some(d) = self.devices.get_mut(&device) {
            if let Some(i) = client.keyed_index()
                && let Some(r) = d.rotated.get_mut(i)
            {
                *r = true;
            }
            d.master_key_rotated |= with_mk;
        }
        Ok(())
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
    /// # Errors
    /// Only audit failures stop a campaign; every other failure is counted
    /// in the report.
    pub fn campaign<D, L, C, A, R>(
        &mut self,
        cx: &mut RotationContext<'_, D, L, C, A, R>,
        scope: Scope<'_>,
    ) -> Result<CampaignReport>
    where
        D: DcoProvider,
        L: MeterLink,
        C: CounterSource,
        A: AuditSink,
        R: TryCryptoRng + ?Sized,
    {
        let devices: Vec<SystemTitle> = match scope {
            Scope::Device(d) => vec![d],
            Scope::Devices(list) => list.to_vec(),
            Scope::All => self.devices.keys().copied().collect(),
        };
        let mut report = CampaignReport::default();
        for device in devices {
            for client in Client::KEYED {
                report.attempted = report.attempted.saturating_add(1);
                match self.rotate(cx, device, client) {
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
        Ok(report)
    }
}
