//! The meter endpoint: the security layer a firmware embeds under its own
//! COSEM application.
//!
//! The firmware keeps one [`Endpoint`] for the device. Per client (the
//! five SMETS1 clients with [`Endpoint::smets1`], or any list of client
//! identifiers, e.g. SAPs, with [`Endpoint::new`]) it holds that client's
//! Security Setup: its keys (GUEK, AK; the device's Master Key is shared),
//! its security policy, its suite-0 context, its receive floor and its
//! association (dedicated key, HLS-5 challenges). The send counters are
//! the firmware's [`SendCounters`]: one per client, or one for all.
//!
//! The flow of one request:
//!
//! 1. [`Endpoint::unprotect`] checks the frame against the client's floor
//!    (before anything is decrypted) and policy, verifies and decrypts it
//!    under the global or the association's dedicated key, raises the
//!    floor (a durable write when the ceiling is reached, see
//!    [`floors`](crate::meter::floors)), and returns a [`Request`]: the plain
//!    APDU **borrowed** from the caller's frame buffer, and the keys and
//!    protection it came under. Dropping the request wipes the plaintext.
//! 2. [`Endpoint::serve`] answers what the layer serves itself (Security
//!    Setup key_transfer and security_activate, HLS-5 pass 3) and hands
//!    every other request back to the application.
//! 3. The application builds its answer and [`Endpoint::protect`]s it
//!    under the request's keys and protection, with the endpoint's counter.
//!
//! Associations: [`Endpoint::associate`] takes the ciphered
//! glo-initiateRequest of the AARQ user-information (and the dedicated key
//! in it), [`Endpoint::expect_hls`] the HLS-5 challenges of the AARQ and
//! AARE, [`Endpoint::release`] the RLRQ, [`Endpoint::abort`] a lost link.

use core::num::NonZeroU32;

use zeroize::Zeroize;

use crate::counter::{CounterPersistence, CounterSource, ReplayGuard, SendCounter};
use crate::error::{CounterError, Error, Result, WireError};
use crate::key::wrap::KeyId;
use crate::key::{DedicatedKey, MasterKey};
use crate::meter::DeviceCapabilities;
use crate::meter::floors::{Floor, FloorPersistence};
use crate::meter::key_transfer::{SecuritySetupKeys, StagedKeys, stage};
use crate::meter::setup::{
    self, ACTION_DENIED, ACTION_OTHER_REASON, ACTION_SUCCESS, ACTION_TYPE_UNMATCHED,
    ASSOCIATION_LN_CLASS_ID, REPLY_TO_HLS_METHOD, SECURITY_ACTIVATE_METHOD,
};
use crate::suite0::{PeerTitle, Protect, Suite0, Unprotect, hls5};
use crate::types::{Client, Protection, SecurityPolicy};
use crate::wire::{
    CipheredForm, FrameKind, KeyKind, SECURITY_SETUP_CLASS_ID, SystemTitle,
    parse_key_transfer_request,
};

/// Where the endpoint's send counters come from: the counter for the
/// client in slot `slot` (its position in the client list).
pub trait SendCounters {
    /// The counter type.
    type Counter: CounterSource;
    /// The counter of `slot`, `None` when there is none.
    fn counter(&mut self, slot: usize) -> Option<&mut Self::Counter>;
}

impl<C: CounterSource, const N: usize> SendCounters for [C; N] {
    type Counter = C;
    fn counter(&mut self, slot: usize) -> Option<&mut C> {
        self.get_mut(slot)
    }
}

/// One counter for every client's answers (the IV's title is the
/// device's, and one counter never repeats a value across keys).
#[derive(Debug)]
pub struct OneCounter<C>(pub C);

impl<C: CounterSource> SendCounters for OneCounter<C> {
    type Counter = C;
    fn counter(&mut self, _slot: usize) -> Option<&mut C> {
        Some(&mut self.0)
    }
}

impl<P: CounterPersistence> OneCounter<SendCounter<P>> {
    /// The send counter.
    #[must_use]
    pub const fn get(&self) -> &SendCounter<P> {
        &self.0
    }
}

/// How an HLS-5 association stands.
#[derive(Debug, Default)]
enum Hls {
    /// No HLS-5 in this association.
    #[default]
    None,
    /// Passes 1 and 2 done: the client's CtoS and our StoC.
    Pending {
        ctos: heapless::Vec<u8, { hls5::MAX_CHALLENGE_LEN }>,
        stoc: heapless::Vec<u8, { hls5::MAX_CHALLENGE_LEN }>,
    },
    /// Pass 3 verified, pass 4 answered.
    Authenticated,
}

/// What a served method changes once its answer is out.
enum After {
    Nothing,
    Install(StagedKeys),
    Policy(SecurityPolicy),
    Hls(Hls),
}

/// One association's state: what dies at release.
#[derive(Debug, Default)]
struct Association {
    /// The dedicated key and the replay guard of the frames under it.
    dedicated: Option<(DedicatedKey, ReplayGuard)>,
    hls: Hls,
}

/// One client's Security Setup.
struct Setup {
    peer: SystemTitle,
    keys: SecuritySetupKeys,
    suite: Suite0,
    policy: SecurityPolicy,
    floor: Floor,
    association: Association,
    /// Changes whenever the keys a request came under may have changed.
    epoch: u32,
}

impl Setup {
    fn new(peer: SystemTitle, keys: SecuritySetupKeys, policy: SecurityPolicy) -> Result<Self> {
        let suite = keys.suite0();
        let guard = suite.replay_guard(peer, KeyKind::GlobalUnicast)?;
        Ok(Self {
            peer,
            keys,
            suite,
            policy,
            floor: Floor::fresh(guard),
            association: Association::default(),
            epoch: 0,
        })
    }

    /// Ends the association: the dedicated key is wiped.
    fn close(&mut self) {
        self.association = Association::default();
        self.suite.clear_dedicated_key();
        self.epoch = self.epoch.wrapping_add(1);
    }
}

/// A verified, decrypted request: the plain APDU, borrowed from the frame
/// buffer it arrived in, and the keys and protection it came under.
///
/// Dropping it wipes the plain APDU, so the frame buffer is left with
/// zeros where the plaintext was.
pub struct Request<'b> {
    apdu: &'b mut [u8],
    slot: usize,
    key: KeyKind,
    protection: Protection,
    form: Answer,
    epoch: u32,
}

/// The ciphered form an answer takes: the request's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    ServiceSpecific,
    General,
}

impl core::fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Request")
            .field("apdu_len", &self.apdu.len())
            .field("slot", &self.slot)
            .field("key", &self.key)
            .field("protection", &self.protection)
            .finish_non_exhaustive()
    }
}

impl Drop for Request<'_> {
    fn drop(&mut self) {
        self.apdu.zeroize();
    }
}

impl Request<'_> {
    /// The plain APDU.
    #[must_use]
    pub fn apdu(&self) -> &[u8] {
        self.apdu
    }

    /// The key it came under (global unicast or dedicated).
    #[must_use]
    pub const fn key(&self) -> KeyKind {
        self.key
    }

    /// The protection it carried; the answer carries the same.
    #[must_use]
    pub const fn protection(&self) -> Protection {
        self.protection
    }

    /// The sending client's slot in the endpoint's client list.
    #[must_use]
    pub const fn slot(&self) -> usize {
        self.slot
    }
}

/// Why the layer refused a Security Setup or HLS method (the answer
/// carries a failure result; nothing changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The request was not authenticated and encrypted (key_transfer), or
    /// not authenticated (security_activate).
    Protection,
    /// key_transfer of a Master Key on a device without that capability.
    MasterKeyRotation,
    /// A malformed parameter (an unknown key id included).
    Malformed,
    /// A wrapped key failed its integrity check (wrong Master Key,
    /// corrupted entry).
    Unwrap,
    /// security_activate to a policy that does not strengthen the current one.
    Weakening,
    /// reply_to_HLS_authentication without HLS-5 pending, or a wrong
    /// f(StoC).
    Hls,
}

/// What the layer did with a method it serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// key_transfer: answered under the old keys, then installed.
    KeysInstalled,
    /// security_activate: answered, then the policy applied.
    PolicyActivated(SecurityPolicy),
    /// HLS-5 pass 3 verified, pass 4 answered: the association is
    /// authenticated.
    HlsAuthenticated,
    /// Refused; answered with a failure result.
    Refused(Refusal),
}

/// What [`Endpoint::serve`] did with a request.
#[derive(Debug)]
pub enum Served<'b> {
    /// The layer answered: the protected answer is `out[..len]`.
    Answered {
        /// Length of the protected answer.
        len: usize,
        /// What was done.
        outcome: Outcome,
    },
    /// Not the layer's: the application answers it.
    Application(Request<'b>),
}

/// The meter endpoint. `K` names a client (SMETS1 [`Client`], or a SAP);
/// `N` is the number of clients.
pub struct Endpoint<K, C: SendCounters, F: FloorPersistence, const N: usize> {
    title: SystemTitle,
    mk: MasterKey,
    capabilities: DeviceCapabilities,
    clients: [K; N],
    setups: [Option<Setup>; N],
    counters: C,
    floors: F,
    floor_ahead: NonZeroU32,
}

impl<K, C: SendCounters, F: FloorPersistence, const N: usize> core::fmt::Debug
    for Endpoint<K, C, F, N>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Endpoint")
            .field("title", &self.title)
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

/// Default for [`Endpoint::with_floor_reserve`]: one floor write per 16
/// frames.
pub const DEFAULT_FLOOR_RESERVE: NonZeroU32 = match NonZeroU32::new(16) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

impl<C: SendCounters, F: FloorPersistence> Endpoint<Client, C, F, 5> {
    /// An endpoint for the five SMETS1 clients ([`Client::ALL`]; Public
    /// is never provisioned).
    #[must_use]
    pub fn smets1(
        title: SystemTitle,
        mk: MasterKey,
        counters: C,
        floors: F,
        capabilities: DeviceCapabilities,
    ) -> Self {
        Self::new(title, mk, Client::ALL, counters, floors, capabilities)
    }
}

impl<K: Copy + PartialEq, C: SendCounters, F: FloorPersistence, const N: usize>
    Endpoint<K, C, F, N>
{
    /// An endpoint for the device `title` with Master Key `mk`, serving
    /// `clients`; no client has keys yet.
    #[must_use]
    pub fn new(
        title: SystemTitle,
        mk: MasterKey,
        clients: [K; N],
        counters: C,
        floors: F,
        capabilities: DeviceCapabilities,
    ) -> Self {
        Self {
            title,
            mk,
            capabilities,
            clients,
            setups: core::array::from_fn(|_| None),
            counters,
            floors,
            floor_ahead: DEFAULT_FLOOR_RESERVE,
        }
    }

    /// Sets how many frames one floor write covers (see
    /// [`floors`](crate::meter::floors)).
    #[must_use]
    pub const fn with_floor_reserve(mut self, frames: NonZeroU32) -> Self {
        self.floor_ahead = frames;
        self
    }

    /// The device's system title.
    #[must_use]
    pub const fn title(&self) -> SystemTitle {
        self.title
    }

    /// The device's capabilities.
    #[must_use]
    pub const fn capabilities(&self) -> DeviceCapabilities {
        self.capabilities
    }

    /// The send counters.
    #[must_use]
    pub const fn counters(&self) -> &C {
        &self.counters
    }

    /// The floor persistence.
    #[must_use]
    pub const fn floors(&self) -> &F {
        &self.floors
    }

    /// Gives the counters and the floor persistence back.
    #[must_use]
    pub fn into_parts(self) -> (C, F) {
        (self.counters, self.floors)
    }

    fn slot(&self, client: K) -> Result<usize> {
        self.clients
            .iter()
            .position(|c| *c == client)
            .ok_or(Error::Misuse("not a client of this endpoint"))
    }

    fn setup_mut(&mut self, slot: usize) -> Result<&mut Setup> {
        self.setups
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(Error::KeyNotAvailable(KeyKind::GlobalUnicast))
    }

    /// Gives `client` the keys and policy it starts with, frames from
    /// `peer` (the system title its requests carry in the IV): a key
    /// nothing has been accepted under. Writes the client's floor record.
    ///
    /// # Errors
    /// [`Error::Misuse`] for a client not in the list;
    /// [`Error::Counter`] when the floor record cannot be written.
    pub fn provision(
        &mut self,
        client: K,
        peer: SystemTitle,
        keys: SecuritySetupKeys,
        policy: SecurityPolicy,
    ) -> Result<()> {
        let slot = self.slot(client)?;
        let setup = Setup::new(peer, keys, policy)?;
        self.floors
            .store(slot, setup.floor.empty_record())
            .map_err(|_| CounterError::Persistence)?;
        self.place(slot, setup)
    }

    /// Restores `client` after a restart, with the keys and policy the
    /// firmware kept: its floor resumes at the persisted ceiling (fresh
    /// when the record names another key: nothing was accepted under
    /// these).
    ///
    /// # Errors
    /// [`CounterError::RecordLost`] when there is no floor record (where
    /// the floor stood is unknown: fail closed); [`Error::Counter`] when
    /// it cannot be read; [`Error::Misuse`] for a client not in the list.
    pub fn restore(
        &mut self,
        client: K,
        peer: SystemTitle,
        keys: SecuritySetupKeys,
        policy: SecurityPolicy,
    ) -> Result<()> {
        let slot = self.slot(client)?;
        let mut setup = Setup::new(peer, keys, policy)?;
        let record = self
            .floors
            .load(slot)
            .map_err(|_| CounterError::Persistence)?
            .ok_or(CounterError::RecordLost)?;
        let guard = setup.suite.replay_guard(peer, KeyKind::GlobalUnicast)?;
        setup.floor = Floor::from_record(guard, record);
        self.place(slot, setup)
    }

    fn place(&mut self, slot: usize, setup: Setup) -> Result<()> {
        let s = self
            .setups
            .get_mut(slot)
            .ok_or(Error::Misuse("not a client of this endpoint"))?;
        *s = Some(setup);
        Ok(())
    }

    /// The security policy `client` is held to.
    ///
    /// # Errors
    /// [`Error::KeyNotAvailable`] for a client without keys.
    pub fn policy(&mut self, client: K) -> Result<SecurityPolicy> {
        let slot = self.slot(client)?;
        Ok(self.setup_mut(slot)?.policy)
    }

    /// The lowest counter `client`'s next frame under the global key may
    /// carry (for an exception-response after a replay refusal); `None`
    /// when nothing more can be accepted.
    ///
    /// # Errors
    /// [`Error::KeyNotAvailable`] for a client without keys.
    pub fn lowest_acceptable(&mut self, client: K) -> Result<Option<u32>> {
        let slot = self.slot(client)?;
        Ok(self
            .setup_mut(slot)?
            .floor
            .guard()
            .lowest_acceptable()
            .map(|ic| ic.value()))
    }

    /// Whether `client`'s association completed HLS-5 (passes 3 and 4).
    ///
    /// # Errors
    /// [`Error::KeyNotAvailable`] for a client without keys.
    pub fn hls_authenticated(&mut self, client: K) -> Result<bool> {
        let slot = self.slot(client)?;
        Ok(matches!(
            self.setup_mut(slot)?.association.hls,
            Hls::Authenticated
        ))
    }

    /// Verifies and decrypts one request from `client` that fills `frame`.
    ///
    /// Checks, in order: the client has keys; the frame's structure; its
    /// counter against the floor of its key (a replay is refused before
    /// any byte of `frame` changes); then [`Suite0::unprotect`] with the
    /// client's policy and title; then the floor is raised (durably when
    /// it reaches its ceiling). Frames under encryption only are refused:
    /// nothing vouches for their counter.
    ///
    /// # Errors
    /// [`Error::KeyNotAvailable`] for a client without keys, or a ded-
    /// frame outside an association with a dedicated key;
    /// [`Error::Counter`] for a replay, an unauthenticated frame or a
    /// floor that cannot be persisted; everything [`Suite0::unprotect`]
    /// returns. On error `frame` holds what was received, or zeros.
    pub fn unprotect<'b>(&mut self, client: K, frame: &'b mut [u8]) -> Result<Request<'b>> {
        let slot = self.slot(client)?;
        let ahead = self.floor_ahead;
        let setup = self
            .setups
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(Error::KeyNotAvailable(KeyKind::GlobalUnicast))?;
        let params = Unprotect {
            peer_system_title: PeerTitle::Expected(setup.peer),
            policy: setup.policy,
        };
        // The stateless replay check first: an old counter is refused
        // before any key is used or any byte of the frame changes.
        let (floor, association) = (&setup.floor, &setup.association);
        let got = setup.suite.unprotect_checked(frame, &params, |key, ic| {
            match (key, &association.dedicated) {
                (KeyKind::Dedicated, Some((_, guard))) => guard.check(ic)?,
                (KeyKind::Dedicated, None) => return Err(Error::KeyNotAvailable(key)),
                _ => floor.guard().check(ic)?,
            }
            Ok(())
        })?;
        let form = match got.kind() {
            FrameKind::Service(_) => Answer::ServiceSpecific,
            _ => Answer::General,
        };
        // From here on the frame holds plaintext: every path wipes it.
        let admitted = match (got.replay_proof(), &mut setup.association.dedicated) {
            (None, _) => Err(CounterError::Unauthenticated),
            (Some(proof), Some((_, guard))) if got.key() == KeyKind::Dedicated => {
                guard.accept(proof).map(|_| ())
            }
            (Some(proof), _) => setup.floor.admit(proof, ahead, slot, &mut self.floors),
        };
        let (Ok(()), Some(protection)) = (admitted, got.protection()) else {
            got.discard();
            return Err(admitted
                .err()
                .map_or(WireError::NoProtection.into(), Error::from));
        };
        let key = got.key();
        Ok(Request {
            apdu: got.into_apdu(),
            slot,
            key,
            protection,
            form,
            epoch: setup.epoch,
        })
    }

    /// Protects the application's `answer` to `request` under the keys and
    /// with the protection the request came under, in the request's form
    /// (service-specific or general), with the endpoint's send counter;
    /// writes it to `out` and returns its length.
    ///
    /// # Errors
    /// [`Error::Misuse`] when the client's keys or association changed
    /// since the request arrived; everything [`Suite0::protect`] returns.
    pub fn protect(
        &mut self,
        request: &Request<'_>,
        answer: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        let title = self.title;
        let setup = self
            .setups
            .get_mut(request.slot)
            .and_then(Option::as_mut)
            .ok_or(Error::KeyNotAvailable(KeyKind::GlobalUnicast))?;
        if setup.epoch != request.epoch {
            return Err(Error::Misuse("the keys changed since the request arrived"));
        }
        let counter = self
            .counters
            .counter(request.slot)
            .ok_or(Error::Misuse("no send counter for this client"))?;
        let form = match request.form {
            Answer::ServiceSpecific => CipheredForm::ServiceSpecific,
            Answer::General => CipheredForm::General {
                with_system_title: true,
            },
        };
        let req = Protect {
            protection: request.protection,
            key: request.key,
            form,
            system_title: title,
        };
        setup.suite.protect(&req, counter, answer, out)
    }

    /// Answers the methods the layer serves itself and hands every other
    /// request back ([`Served::Application`]):
    ///
    /// * Security Setup (class 64, any instance: the sending client's own)
    ///   key_transfer (method 2): refused unless the request was
    ///   authenticated and encrypted, and a new Master Key unless the
    ///   device supports it; every entry is unwrapped under the current
    ///   Master Key or nothing is; the action-response goes out under the
    ///   **old** keys, then the keys are installed and a new GUEK or AK
    ///   starts a fresh floor.
    /// * security_activate (method 1): a version-0 policy value that
    ///   strengthens the current policy, from an authenticated request;
    ///   answered, then applied.
    /// * Association LN (class 15) reply_to_HLS_authentication (method 1):
    ///   HLS-5 pass 3, the client's f(StoC), verified; pass 4 answers
    ///   f(CtoS) with a fresh value of the send counter.
    ///
    /// A refusal is answered with a failure result and changes nothing.
    ///
    /// # Errors
    /// As [`Self::protect`] (nothing is installed or applied).
    pub fn serve<'b>(&mut self, request: Request<'b>, out: &mut [u8]) -> Result<Served<'b>> {
        let Some(head) = setup::action_head(request.apdu) else {
            return Ok(Served::Application(request));
        };
        let title = self.title;
        let slot = request.slot;
        let setup = self
            .setups
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(Error::KeyNotAvailable(KeyKind::GlobalUnicast))?;
        // Decide (nothing changes yet), answer, then apply.
        let mut f_ctos = None;
        let (outcome, after) = match (head.class_id, head.method) {
            (SECURITY_SETUP_CLASS_ID, crate::wire::KEY_TRANSFER_METHOD) => {
                match self.key_transfer_stage(&request) {
                    Ok(staged) => (Outcome::KeysInstalled, After::Install(staged)),
                    Err(r) => (Outcome::Refused(r), After::Nothing),
                }
            }
            (SECURITY_SETUP_CLASS_ID, SECURITY_ACTIVATE_METHOD) => {
                match setup::parse_activate(head.parameter) {
                    _ if !request.protection.is_authenticated() => {
                        (Outcome::Refused(Refusal::Protection), After::Nothing)
                    }
                    None => (Outcome::Refused(Refusal::Malformed), After::Nothing),
                    Some(p) if setup::strengthens(setup.policy, p) => {
                        (Outcome::PolicyActivated(p), After::Policy(p))
                    }
                    Some(_) => (Outcome::Refused(Refusal::Weakening), After::Nothing),
                }
            }
            (ASSOCIATION_LN_CLASS_ID, REPLY_TO_HLS_METHOD) => {
                let counter = self
                    .counters
                    .counter(slot)
                    .ok_or(Error::Misuse("no send counter for this client"))?;
                if let (Hls::Pending { ctos, stoc }, Some(f_stoc)) = (
                    &setup.association.hls,
                    setup::parse_octet_string(head.parameter),
                ) && hls5::verify(&setup.suite, &setup.peer, stoc, f_stoc).is_ok()
                {
                    f_ctos = Some(hls5::respond(&setup.suite, &title, counter, ctos)?);
                }
                // One attempt: a failed pass 3 leaves the association
                // unauthenticated for good.
                match f_ctos {
                    Some(_) => (Outcome::HlsAuthenticated, After::Hls(Hls::Authenticated)),
                    None => (Outcome::Refused(Refusal::Hls), After::Hls(Hls::None)),
                }
            }
            _ => return Ok(Served::Application(request)),
        };
        let iid = head.invoke_id_and_priority;
        let answer = match &f_ctos {
            Some(f) => setup::hls_answer(iid, f.as_bytes()),
            None => setup::hls_answer_prefix(setup::action_response(iid, result(outcome))),
        };
        let answer_len = if f_ctos.is_some() {
            setup::HLS_ANSWER_LEN
        } else {
            setup::ACTION_RESPONSE_LEN
        };
        // Under the keys the request came under (the old keys for a
        // key_transfer); if it cannot be sent, nothing is applied (staged
        // keys are wiped as they drop).
        let len = self.protect(&request, answer.get(..answer_len).unwrap_or_default(), out)?;
        let setup = self
            .setups
            .get_mut(slot)
            .and_then(Option::as_mut)
            .ok_or(Error::KeyNotAvailable(KeyKind::GlobalUnicast))?;
        match after {
            After::Nothing => {}
            After::Policy(p) => setup.policy = p,
            After::Hls(h) => setup.association.hls = h,
            After::Install(staged) => {
                let fresh_floor = staged.replaces(KeyId::GlobalUnicastEncryption)
                    || staged.replaces(KeyId::Authentication);
                staged.install(&mut self.mk, &mut setup.keys);
                setup.suite = setup.keys.suite0();
                // The association's dedicated key outlives a key_transfer.
                if let Some((dk, _)) = &setup.association.dedicated {
                    setup.suite.set_dedicated_key(dk);
                }
                setup.epoch = setup.epoch.wrapping_add(1);
                if fresh_floor {
                    let guard = setup
                        .suite
                        .replay_guard(setup.peer, KeyKind::GlobalUnicast)?;
                    setup.floor = Floor::fresh(guard);
                    // Best effort: until it lands the old record names the
                    // old key, which restores as a fresh floor for the new
                    // one too.
                    let _ = self.floors.store(slot, setup.floor.empty_record());
                }
            }
        }
        Ok(Served::Answered { len, outcome })
    }

    /// key_transfer, phase 1: every check, and every entry unwrapped under
    /// the current Master Key; nothing changes.
    fn key_transfer_stage(
        &self,
        request: &Request<'_>,
    ) -> core::result::Result<StagedKeys, Refusal> {
        if request.protection != Protection::AuthenticatedEncrypted {
            return Err(Refusal::Protection);
        }
        let (_, t) = parse_key_transfer_request(request.apdu).map_err(|_| Refusal::Malformed)?;
        if !self.capabilities.master_key_rotation
            && t.entries().iter().any(|e| e.key_id == KeyId::Master)
        {
            return Err(Refusal::MasterKeyRotation);
        }
        stage(&self.mk, &t).map_err(|_| Refusal::Unwrap)
    }

    /// Opens an association of `client` from the AARQ's user-information:
    /// the ciphered glo-initiateRequest in `frame`, unprotected as
    /// [`Self::unprotect`] does (policy, floor). A dedicated key in it is
    /// taken only from an authenticated and encrypted request, and serves
    /// this association only. Any earlier association of the client ends
    /// (its dedicated key wiped).
    ///
    /// The returned request holds the plain InitiateRequest; the
    /// application's InitiateResponse goes out through [`Self::protect`]
    /// (a glo-initiateResponse for the AARE).
    ///
    /// # Errors
    /// As [`Self::unprotect`]; [`WireError::UnexpectedTag`] when the APDU
    /// is not an InitiateRequest or comes under the dedicated key;
    /// [`Error::PolicyViolation`] for a dedicated key without
    /// authenticated encryption; the wire errors of a malformed key.
    pub fn associate<'b>(&mut self, client: K, frame: &'b mut [u8]) -> Result<Request<'b>> {
        let mut request = self.unprotect(client, frame)?;
        if request.key != KeyKind::GlobalUnicast {
            return Err(WireError::UnexpectedTag(frame_tag(request.apdu)).into());
        }
        let dk = match setup::initiate_dedicated_key(request.apdu)? {
            Some(_) if request.protection != Protection::AuthenticatedEncrypted => {
                return Err(Error::PolicyViolation {
                    required: SecurityPolicy::AuthenticatedEncrypted,
                    received: request.protection,
                });
            }
            Some(k) => Some(DedicatedKey::from_bytes(*k)),
            None => None,
        };
        let setup = self.setup_mut(request.slot)?;
        setup.close();
        if let Some(dk) = dk {
            setup.suite.set_dedicated_key(&dk);
            let guard = setup.suite.replay_guard(setup.peer, KeyKind::Dedicated)?;
            setup.association.dedicated = Some((dk, guard));
        }
        request.epoch = setup.epoch;
        Ok(request)
    }

    /// Records the HLS-5 challenges of `client`'s association being opened:
    /// `ctos` from the AARQ, `stoc` the device's (random, 8 to 64 octets)
    /// for the AARE. Pass 3 then comes to [`Self::serve`]. Call it after
    /// [`Self::associate`].
    ///
    /// # Errors
    /// [`WireError::InvalidChallenge`] for a challenge outside 8..=64
    /// octets; [`Error::KeyNotAvailable`] for a client without keys.
    pub fn expect_hls(&mut self, client: K, ctos: &[u8], stoc: &[u8]) -> Result<()> {
        let slot = self.slot(client)?;
        let challenge = |c: &[u8]| {
            if c.len() < hls5::MIN_CHALLENGE_LEN {
                return Err(Error::Wire(WireError::InvalidChallenge));
            }
            heapless::Vec::from_slice(c).map_err(|_| Error::Wire(WireError::InvalidChallenge))
        };
        let hls = Hls::Pending {
            ctos: challenge(ctos)?,
            stoc: challenge(stoc)?,
        };
        self.setup_mut(slot)?.association.hls = hls;
        Ok(())
    }

    /// Releases `client`'s association (RLRQ). `user_information` is the
    /// ciphered glo-initiateRequest the RLRQ carries, if any. A release
    /// protected less than the client's policy requires is refused and the
    /// association stays; an accepted one wipes the dedicated key. The
    /// returned request (when one was carried) lets the application answer
    /// the RLRE's user-information through [`Self::protect`].
    ///
    /// # Errors
    /// [`WireError::NoProtection`] for a release without ciphered
    /// user-information when the policy requires protection; as
    /// [`Self::unprotect`] otherwise.
    pub fn release<'b>(
        &mut self,
        client: K,
        user_information: Option<&'b mut [u8]>,
    ) -> Result<Option<Request<'b>>> {
        let slot = self.slot(client)?;
        let request = match user_information {
            Some(frame) => Some(self.unprotect(client, frame)?),
            None if self.setup_mut(slot)?.policy == SecurityPolicy::AcceptAnyProtection => None,
            None => return Err(WireError::NoProtection.into()),
        };
        let setup = self.setup_mut(slot)?;
        setup.close();
        Ok(request.map(|mut r| {
            r.epoch = setup.epoch;
            r
        }))
    }

    /// Ends `client`'s association without a release (the link was lost):
    /// the dedicated key is wiped.
    ///
    /// # Errors
    /// [`Error::KeyNotAvailable`] for a client without keys.
    pub fn abort(&mut self, client: K) -> Result<()> {
        let slot = self.slot(client)?;
        self.setup_mut(slot)?.close();
        Ok(())
    }
}

/// The Action-Result octet of an outcome.
const fn result(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::KeysInstalled | Outcome::PolicyActivated(_) | Outcome::HlsAuthenticated => {
            ACTION_SUCCESS
        }
        Outcome::Refused(Refusal::Protection | Refusal::MasterKeyRotation) => ACTION_DENIED,
        Outcome::Refused(Refusal::Malformed) => ACTION_TYPE_UNMATCHED,
        Outcome::Refused(Refusal::Unwrap | Refusal::Weakening | Refusal::Hls) => {
            ACTION_OTHER_REASON
        }
    }
}

fn frame_tag(apdu: &[u8]) -> u8 {
    apdu.first().copied().unwrap_or_default()
}
