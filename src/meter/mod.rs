//! The meter side: a SMETS1 device with its five clients, which answers
//! protected requests and installs keys from key_transfer (D-06, R-14).
//!
//! [`Meter`] is `no_std` and allocation-free: it is the shape firmware
//! takes, and the simulated meter of the tests and the demonstration.
//!
//! What it guarantees:
//! * Every request is unprotected under the client's keys with its policy,
//!   and its counter must pass the client's replay guard, which advances only
//!   with the proof of a verified frame.
//! * A key_transfer is staged (every entry unwrapped under the current MK,
//!   or nothing), answered under the **old** keys, and only then installed,
//!   so the head-end can read the answer; from the next request on the new
//!   keys are the only ones accepted (R-14: active at once). A new
//!   encryption or authentication key starts a fresh replay guard; the
//!   meter's own send counter keeps counting (docs/design.md, "When new keys apply" and "After a key change").
//! * A key_transfer carrying a new MK is refused unless the device's
//!   [`DeviceCapabilities`] say it supports MK rotation ("where supported by that
//!   Device", R-12), and nothing is installed.
//! * A failed transfer installs nothing and is answered with a failure
//!   result, still protected.

pub mod key_transfer;

use crate::counter::{CounterPersistence, ReplayGuard, SendCounter};
use crate::error::{Error, Result, Unsupported, WireError};
use crate::key::MasterKey;
use crate::key::wrap::KeyId;
use crate::meter::key_transfer::{SecuritySetupKeys, StagedKeys, stage};
use crate::suite0::{PeerTitle, Protect, Suite0, Unprotect};
use crate::types::Client;
use crate::types::{Protection, SecurityPolicy};
use crate::wire::{FrameLayout, KeyKind, SystemTitle, parse_key_transfer_request};
use zeroize::Zeroize;

/// What a device supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DeviceCapabilities {
    /// key_transfer may replace the Master Key (key_id 3).
    pub master_key_rotation: bool,
}

/// The action-result octet a meter returns (success, or other-reason).
const ACTION_SUCCESS: u8 = 0x00;
const ACTION_OTHER_REASON: u8 = 0xFA;

/// One keyed client's Security Setup: its keys, the context built from them,
/// its replay guard and its policy.
struct ClientSession {
    keys: SecuritySetupKeys,
    suite: Suite0,
    guard: ReplayGuard,
    policy: SecurityPolicy,
}

/// A simulated SMETS1 meter.
pub struct Meter<P: CounterPersistence> {
    title: SystemTitle,
    head_end: SystemTitle,
    mk: MasterKey,
    clients: [Option<ClientSession>; 4],
    counter: SendCounter<P>,
    capabilities: DeviceCapabilities,
    installs: u32,
}

impl<P: CounterPersistence> core::fmt::Debug for Meter<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Meter")
            .field("title", &self.title)
            .field("head_end", &self.head_end)
            .field("capabilities", &self.capabilities)
            .field("installs", &self.installs)
            .finish_non_exhaustive()
    }
}

/// What [`Meter::handle`] did with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// An ordinary request was answered.
    Answered,
    /// A key_transfer was answered with success and its keys installed.
    KeysInstalled,
    /// A key_transfer was refused (answered with a failure result); nothing
    /// was installed.
    TransferRefused,
}

impl<P: CounterPersistence> Meter<P> {
    /// A meter with its Master Key and no client keys yet. `head_end` is the
    /// system title its clients send under (the DCO's).
    #[must_use]
    pub const fn new(
        title: SystemTitle,
        head_end: SystemTitle,
        mk: MasterKey,
        counter: SendCounter<P>,
        capabilities: DeviceCapabilities,
    ) -> Self {
        Self {
            title,
            head_end,
            mk,
            clients: [None, None, None, None],
            counter,
            capabilities,
            installs: 0,
        }
    }

    /// The meter's system title.
    #[must_use]
    pub const fn title(&self) -> SystemTitle {
        self.title
    }

    /// Its capabilities.
    #[must_use]
    pub const fn capabilities(&self) -> DeviceCapabilities {
        self.capabilities
    }

    /// How many key_transfers it has installed.
    #[must_use]
    pub const fn installs(&self) -> u32 {
        self.installs
    }

    /// Its send counter.
    #[must_use]
    pub const fn counter(&self) -> &SendCounter<P> {
        &self.counter
    }

    /// Gives a keyed client its manufacture-time keys and policy.
    ///
    /// # Errors
    /// [`Error::Misuse`] for the Public client (it has no keys).
    pub fn provision(
        &mut self,
        client: Client,
        keys: SecuritySetupKeys,
        policy: SecurityPolicy,
    ) -> Result<()> {
        let suite = keys.suite0();
        let guard = suite.replay_guard(self.head_end, KeyKind::GlobalUnicast)?;
        *self.slot_mut(client)? = Some(ClientSession {
            keys,
            suite,
            guard,
            policy,
        });
        Ok(())
    }

    fn slot_mut(&mut self, client: Client) -> Result<&mut Option<ClientSession>> {
        client
            .keyed_index()
            .and_then(|i| self.clients.get_mut(i))
            .ok_or(Error::Misuse("the Public client has no keys"))
    }

    /// Handles one protected request from `client` and writes the protected
    /// response to `response`; returns its length and what was done.
    ///
    /// # Errors
    /// Everything [`Suite0::unprotect`] returns (the request is not
    /// answered); [`Error::Counter`] (replay) for a replayed or older
    /// counter, before anything is decrypted;
    /// [`Unsupported::UnservedService`] for a service the model does not
    /// serve; [`Error::KeyNotAvailable`] for a client without keys.
    ///
    /// After it returns, with or without an error, `request` holds what was
    /// received or zeros: the plaintext request is wiped once answered.
    pub fn handle(
        &mut self,
        client: Client,
        request: &mut [u8],
        response: &mut [u8],
    ) -> Result<(usize, Handled)> {
        let mk_rotation = self.capabilities.master_key_rotation;
        let (title, head_end) = (self.title, self.head_end);
        let idx = client
            .keyed_index()
            .ok_or(Error::KeyNotAvailable(KeyKind::GlobalUnicast))?;
        let session = self
            .clients
            .get_mut(idx)
            .and_then(Option::as_mut)
            .ok_or(Error::KeyNotAvailable(KeyKind::GlobalUnicast))?;
        let params = Unprotect {
            peer_system_title: PeerTitle::Expected(head_end),
            policy: session.policy,
        };
        // The stateless replay check first: an old counter is refused before
        // any key is used or any byte of the request changes.
        session
            .guard
            .check(FrameLayout::parse(request)?.invocation_counter)?;
        let got = session.suite.unprotect(request, &params)?;
        // From here on the request holds plaintext: every path wipes it.
        if let Err(e) = got.admit_into(&mut session.guard) {
            got.discard();
            return Err(e.into());
        }
        let Some(protection) = got.protection() else {
            got.discard();
            return Err(WireError::NoProtection.into());
        };
        let apdu = got.into_apdu();
        let mut plain = [0u8; ANSWER_CAPACITY];
        let answered = answer(apdu, protection, &self.mk, mk_rotation, title, &mut plain);
        apdu.zeroize();
        let (plain_len, handled, staged) = match answered {
            Ok(a) => a,
            Err(e) => {
                plain.zeroize();
                return Err(e);
            }
        };
        // The answer goes out under the keys the request came under.
        let body = plain.get(..plain_len).unwrap_or_default();
        let sent = session.suite.protect(
            &Protect::unicast(protection, title),
            &mut self.counter,
            body,
            response,
        );
        plain.zeroize();
        let n = sent?;
        if let Some(staged) = staged {
            let new_session_keys = staged.replaces(KeyId::GlobalUnicastEncryption)
                || staged.replaces(KeyId::Authentication);
            staged.install(&mut self.mk, &mut session.keys);
            session.suite = session.keys.suite0();
            if new_session_keys {
                session.guard = session
                    .suite
                    .replay_guard(head_end, KeyKind::GlobalUnicast)?;
            }
            self.installs = self.installs.saturating_add(1);
        }
        Ok((n, handled))
    }
}

/// The longest plaintext answer the model sends.
const ANSWER_CAPACITY: usize = 24;

/// The model's plaintext answer to the request `apdu`, written to `plain`:
/// its length, what was done, and the keys a key_transfer staged.
fn answer(
    apdu: &[u8],
    protection: Protection,
    mk: &MasterKey,
    mk_rotation: bool,
    title: SystemTitle,
    plain: &mut [u8; ANSWER_CAPACITY],
) -> Result<(usize, Handled, Option<StagedKeys>)> {
    let [tag, _, invoke, ..] = *apdu else {
        return Err(WireError::Truncated.into());
    };
    Ok(match tag {
        0xC3 => match parse_key_transfer_request(apdu) {
            Ok((_, transfer)) => {
                let mk_allowed =
                    mk_rotation || !transfer.entries().iter().any(|e| e.key_id == KeyId::Master);
                // New keys come only under authenticated encryption: the
                // wrap binds no key id, the protection binds the entries.
                let staged = if mk_allowed && protection == Protection::AuthenticatedEncrypted {
                    stage(mk, &transfer).ok()
                } else {
                    None
                };
                let result = if staged.is_some() {
                    ACTION_SUCCESS
                } else {
                    ACTION_OTHER_REASON
                };
                let answer = [0xC7, 0x01, invoke, result, 0x00];
                copy(plain, &answer);
                let handled = if staged.is_some() {
                    Handled::KeysInstalled
                } else {
                    Handled::TransferRefused
                };
                (answer.len(), handled, staged)
            }
            // Another method: answered, nothing to do in this model.
            Err(_) => {
                let answer = [0xC7, 0x01, invoke, ACTION_SUCCESS, 0x00];
                copy(plain, &answer);
                (answer.len(), Handled::Answered, None)
            }
        },
        0xC0 => {
            // get-response-normal carrying the meter's title as an
            // octet-string.
            let mut answer = [0u8; 14];
            let (head, rest) = answer.split_at_mut(6);
            head.copy_from_slice(&[0xC4, 0x01, invoke, 0x00, 0x09, 0x08]);
            rest.copy_from_slice(title.as_bytes());
            copy(plain, &answer);
            (answer.len(), Handled::Answered, None)
        }
        0xC1 => {
            let answer = [0xC5, 0x01, invoke, 0x00];
            copy(plain, &answer);
            (answer.len(), Handled::Answered, None)
        }
        _ => return Err(Unsupported::UnservedService.into()),
    })
}

fn copy(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
}
