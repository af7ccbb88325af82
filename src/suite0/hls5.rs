//! HLS-5: association authentication with GMAC (D-05).
//!
//! Each side proves it holds the global unicast key and the authentication
//! key by answering the other's random challenge:
//!
//! ```text
//! f(challenge) = SC ‖ IC ‖ T          (17 octets)
//!   SC = 0x10 (authentication only, suite 0)
//!   IC = the responder's own invocation counter (4 octets, big-endian)
//!   T  = first 12 octets of GMAC(GUEK, IV = responder title ‖ IC,
//!                                A = SC ‖ AK ‖ challenge)
//! ```
//!
//! The client answers the meter's StoC with f(StoC); the meter answers the
//! client's CtoS with f(CtoS) (GB Tables 42 and 43).
//! [`respond`] draws a fresh counter value for every response, so the IV is
//! never shared with the APDU that carries it (the nonce reuse of §4.3).
//! [`verify`] recomputes the tag with the peer's title and the counter it
//! sent, and compares SC and tag in constant time. Challenges are 8 to 64
//! octets.

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::counter::CounterSource;
use crate::error::{AuthError, Error, Result, WireError};
use crate::gcm::Aad;
use crate::suite0::{KeySource, Suite0};
use crate::wire::{InvocationCounter, KeyKind, SystemTitle, iv};

/// Length of f(challenge).
pub const RESPONSE_LEN: usize = 17;
/// Shortest challenge accepted.
pub const MIN_CHALLENGE_LEN: usize = 8;
/// Longest challenge accepted.
pub const MAX_CHALLENGE_LEN: usize = 64;

/// The SC byte of every suite-0 HLS-5 response.
const HLS5_SC: u8 = 0x10;

/// f(challenge): SC ‖ IC ‖ 12-octet tag. Public: it goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hls5Response([u8; RESPONSE_LEN]);

impl Hls5Response {
    /// The 17 octets.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; RESPONSE_LEN] {
        &self.0
    }

    /// The responder's counter carried in the response.
    #[must_use]
    pub const fn invocation_counter(&self) -> InvocationCounter {
        let [_, a, b, c, d, ..] = self.0;
        InvocationCounter::from_be_bytes([a, b, c, d])
    }
}

/// Proof that the peer answered our challenge.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "an HLS-5 verification result must be acted on"]
pub struct Hls5Verified {
    invocation_counter: InvocationCounter,
}

impl Hls5Verified {
    /// The counter the peer used.
    #[must_use]
    pub const fn invocation_counter(&self) -> InvocationCounter {
        self.invocation_counter
    }
}

fn check_challenge(challenge: &[u8]) -> Result<()> {
    if (MIN_CHALLENGE_LEN..=MAX_CHALLENGE_LEN).contains(&challenge.len()) {
        Ok(())
    } else {
        Err(WireError::InvalidChallenge.into())
    }
}

fn tag(
    suite: &Suite0,
    title: &SystemTitle,
    ic: InvocationCounter,
    challenge: &[u8],
) -> Result<[u8; 12]> {
    Ok(suite.gcm(KeyKind::GlobalUnicast)?.gmac(
        &iv(title, ic),
        Aad::suite0(HLS5_SC, KeySource::ak(suite)?, &[challenge]),
    ))
}

/// Computes f(challenge) with our own title and a fresh counter value.
///
/// # Errors
/// [`WireError::InvalidChallenge`] for a challenge outside 8..=64 octets;
/// [`Error::KeyNotAvailable`] without a global unicast key;
/// [`Error::Counter`] when the counter is exhausted or cannot persist.
pub fn respond(
    suite: &Suite0,
    own_title: &SystemTitle,
    counter: &mut impl CounterSource,
    challenge: &[u8],
) -> Result<Hls5Response> {
    check_challenge(challenge)?;
    let ic = counter.next_counter()?;
    let t = tag(suite, own_title, ic, challenge)?;
    let mut out = [0u8; RESPONSE_LEN];
    let [sc, ic_out @ ..] = &mut out;
    *sc = HLS5_SC;
    for (o, b) in ic_out
        .iter_mut()
        .zip(ic.to_be_bytes().iter().chain(t.iter()))
    {
        *o = *b;
    }
    Ok(Hls5Response(out))
}

/// Checks the peer's f(`our_challenge`).
///
/// # Errors
/// [`WireError::InvalidChallenge`] for a challenge outside 8..=64 octets or
/// a response that is not 17 octets; [`Error::Auth`] when SC or tag do not
/// match.
pub fn verify(
    suite: &Suite0,
    peer_title: &SystemTitle,
    our_challenge: &[u8],
    response: &[u8],
) -> Result<Hls5Verified> {
    check_challenge(our_challenge)?;
    let response: &[u8; RESPONSE_LEN] = response
        .try_into()
        .map_err(|_| Error::Wire(WireError::InvalidChallenge))?;
    let [sc, a, b, c, d, received @ ..] = response;
    let ic = InvocationCounter::from_be_bytes([*a, *b, *c, *d]);
    let mut expected = tag(suite, peer_title, ic, our_challenge)?;
    let ok = crate::gcm::tag_eq(&expected, received) & sc.ct_eq(&HLS5_SC);
    // One fill, not a store per octet (as the array's `zeroize`).
    expected.as_mut_slice().zeroize();
    if bool::from(ok) {
        Ok(Hls5Verified {
            invocation_counter: ic,
        })
    } else {
        Err(AuthError.into())
    }
}
