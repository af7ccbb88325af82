//! A simulated SMETS1 meter: the `dlms_sec` meter [`Endpoint`] under a
//! fake COSEM application with canned answers, for the tests and the
//! demonstrations. Not published: the core's meter side is the endpoint.
//!
//! The application answers a get-request with the meter's title, a
//! set-request and any action-request the layer does not serve with
//! success; the security layer serves key_transfer, security_activate and
//! HLS-5. One send counter counts every client's answers.

use dlms_sec::counter::{CounterPersistence, SendCounter};
use dlms_sec::error::{Error, Result, Unsupported, WireError};
use dlms_sec::key::MasterKey;
use dlms_sec::meter::endpoint::{Endpoint, OneCounter, Outcome, Served};
use dlms_sec::meter::floors::VolatileFloors;
use dlms_sec::meter::key_transfer::SecuritySetupKeys;
use dlms_sec::meter::{DeviceCapabilities, setup};
use dlms_sec::types::{Client, SecurityPolicy};
use dlms_sec::wire::{KEY_TRANSFER_METHOD, KeyKind, SECURITY_SETUP_CLASS_ID, SystemTitle};

/// A simulated SMETS1 meter.
pub struct Meter<P: CounterPersistence> {
    endpoint: Endpoint<Client, OneCounter<SendCounter<P>>, VolatileFloors, 5>,
    head_end: SystemTitle,
    installs: u32,
}

impl<P: CounterPersistence> core::fmt::Debug for Meter<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Meter")
            .field("title", &self.endpoint.title())
            .field("head_end", &self.head_end)
            .field("capabilities", &self.endpoint.capabilities())
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
    pub fn new(
        title: SystemTitle,
        head_end: SystemTitle,
        mk: MasterKey,
        counter: SendCounter<P>,
        capabilities: DeviceCapabilities,
    ) -> Self {
        Self {
            endpoint: Endpoint::smets1(
                title,
                mk,
                OneCounter(counter),
                VolatileFloors,
                capabilities,
            ),
            head_end,
            installs: 0,
        }
    }

    /// The meter's system title.
    #[must_use]
    pub const fn title(&self) -> SystemTitle {
        self.endpoint.title()
    }

    /// Its capabilities.
    #[must_use]
    pub const fn capabilities(&self) -> DeviceCapabilities {
        self.endpoint.capabilities()
    }

    /// How many key_transfers it has installed.
    #[must_use]
    pub const fn installs(&self) -> u32 {
        self.installs
    }

    /// Its send counter.
    #[must_use]
    pub const fn counter(&self) -> &SendCounter<P> {
        self.endpoint.counters().get()
    }

    /// The security layer under the simulated application.
    pub const fn endpoint_mut(
        &mut self,
    ) -> &mut Endpoint<Client, OneCounter<SendCounter<P>>, VolatileFloors, 5> {
        &mut self.endpoint
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
        if !client.has_keys() {
            return Err(Error::Misuse("the Public client has no keys"));
        }
        self.endpoint.provision(client, self.head_end, keys, policy)
    }

    /// Handles one protected request from `client` and writes the protected
    /// response to `response`; returns its length and what was done.
    ///
    /// # Errors
    /// Everything [`Endpoint::unprotect`] returns (the request is not
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
        if !client.has_keys() {
            return Err(Error::KeyNotAvailable(KeyKind::GlobalUnicast));
        }
        let title = self.endpoint.title();
        let req = self.endpoint.unprotect(client, request)?;
        let key_transfer = is_key_transfer(req.apdu());
        let req = match self.endpoint.serve(req, response)? {
            Served::Answered { len, outcome } => {
                let handled = match outcome {
                    Outcome::KeysInstalled => {
                        self.installs = self.installs.saturating_add(1);
                        Handled::KeysInstalled
                    }
                    Outcome::Refused(_) if key_transfer => Handled::TransferRefused,
                    _ => Handled::Answered,
                };
                return Ok((len, handled));
            }
            Served::Application(req) => req,
        };
        let mut plain = [0u8; ANSWER_CAPACITY];
        let len = answer(req.apdu(), title, &mut plain)?;
        let body = plain.get(..len).unwrap_or_default();
        let sent = self.endpoint.protect(&req, body, response);
        zeroize::Zeroize::zeroize(&mut plain);
        Ok((sent?, Handled::Answered))
    }
}

/// Whether `apdu` is an action-request-normal invoking the Security setup
/// class's key_transfer method: `C3 01 iid class(2) ln(6) method present
/// [parameter]`, `present` 1, or 0 with nothing after it.
fn is_key_transfer(apdu: &[u8]) -> bool {
    let Some((head, parameter)) = apdu.split_first_chunk::<13>() else {
        return false;
    };
    let [tag, choice, _, c0, c1, _, _, _, _, _, _, method, present] = *head;
    tag == 0xC3
        && choice == 0x01
        && u16::from_be_bytes([c0, c1]) == SECURITY_SETUP_CLASS_ID
        && method == KEY_TRANSFER_METHOD
        && (present == 1 || (present == 0 && parameter.is_empty()))
}

/// The longest plaintext answer the model sends.
const ANSWER_CAPACITY: usize = 24;

/// The model application's plaintext answer to `apdu`, written to `plain`;
/// returns its length.
fn answer(apdu: &[u8], title: SystemTitle, plain: &mut [u8; ANSWER_CAPACITY]) -> Result<usize> {
    let [tag, _, invoke, ..] = *apdu else {
        return Err(WireError::Truncated.into());
    };
    let answer: &[u8] = match tag {
        // Any action the layer does not serve: success, nothing to do.
        0xC3 => &[0xC7, 0x01, invoke, setup::ACTION_SUCCESS, 0x00],
        0xC0 => {
            // get-response-normal carrying the meter's title as an
            // octet-string.
            let (head, rest) = plain.split_at_mut(6);
            head.copy_from_slice(&[0xC4, 0x01, invoke, 0x00, 0x09, 0x08]);
            if let Some(t) = rest.get_mut(..8) {
                t.copy_from_slice(title.as_bytes());
            }
            return Ok(14);
        }
        0xC1 => &[0xC5, 0x01, invoke, 0x00],
        _ => return Err(Unsupported::UnservedService.into()),
    };
    for (d, s) in plain.iter_mut().zip(answer) {
        *d = *s;
    }
    Ok(answer.len())
}

#[cfg(test)]
mod tests {
    use super::is_key_transfer;

    /// `C3 01 iid`, class 64, the Security setup's logical name, then the
    /// method and whether a parameter follows.
    fn action(class: [u8; 2], method: u8, present: u8, parameter: &[u8]) -> Vec<u8> {
        let mut a = vec![0xC3, 0x01, 0xC1, class[0], class[1], 0, 0, 43, 0, 0, 255];
        a.extend_from_slice(&[method, present]);
        a.extend_from_slice(parameter);
        a
    }

    #[test]
    fn key_transfer_is_told_from_other_actions() {
        assert!(is_key_transfer(&action([0, 64], 2, 1, &[0x01, 0x01])));
        assert!(is_key_transfer(&action([0, 64], 2, 0, &[])));
        // security_activate, another class, a bad `present`, a parameter
        // after `present` 0, a truncated head, a get-request.
        assert!(!is_key_transfer(&action([0, 64], 1, 1, &[0x16, 0x03])));
        assert!(!is_key_transfer(&action([0, 15], 2, 1, &[0x01])));
        assert!(!is_key_transfer(&action([0, 64], 2, 2, &[])));
        assert!(!is_key_transfer(&action([0, 64], 2, 0, &[0x01])));
        assert!(!is_key_transfer(&action([0, 64], 2, 1, &[])[..12]));
        let mut get = action([0, 64], 2, 1, &[]);
        get[0] = 0xC0;
        assert!(!is_key_transfer(&get));
    }
}
