//! Why a command failed, and the exit status that says so.

use core::fmt;

use dlms_sec::error::{CounterError, KeyError, WireError};
use dlms_sec::{Error, KeyKind};

/// Exit status 1: an authentication, integrity, replay or policy check
/// failed on input that was well formed.
pub(crate) const EXIT_CHECK: u8 = 1;
/// Exit status 2: malformed input or usage.
pub(crate) const EXIT_USAGE: u8 = 2;

/// A failed command: one line for stderr and an exit status.
#[derive(Debug, Clone)]
pub(crate) struct Fail {
    /// [`EXIT_CHECK`] or [`EXIT_USAGE`].
    pub(crate) code: u8,
    /// The message, without the `dlms-sec: ` prefix.
    pub(crate) message: String,
}

impl Fail {
    /// Malformed input or usage (exit 2).
    pub(crate) fn usage(message: impl fmt::Display) -> Self {
        Self {
            code: EXIT_USAGE,
            message: one_line(message),
        }
    }

    /// A failed check (exit 1).
    pub(crate) fn check(message: impl fmt::Display) -> Self {
        Self {
            code: EXIT_CHECK,
            message: one_line(message),
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// So that a flag's value parser can hand a `Fail` through clap.
impl core::error::Error for Fail {}

/// Folds a message onto one line.
fn one_line(message: impl fmt::Display) -> String {
    message
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The flag (and `--keys`/environment names) that supply a key kind.
pub(crate) const fn key_source(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::GlobalUnicast => "the global unicast key (--ek, EK, DLMS_EK)",
        KeyKind::GlobalBroadcast => "the global broadcast key (--bk, BK, DLMS_BK)",
        KeyKind::Dedicated => "the dedicated key (--dk, DK, DLMS_DK)",
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        match e {
            // Checks that failed on well-formed input.
            Error::Auth(_) => Self::check(e),
            Error::Counter(CounterError::Replay) => Self::check(
                "replay: the invocation counter is reserved or not above the last accepted one",
            ),
            Error::PolicyViolation { .. } => Self::check(format_args!("policy: {e}")),
            Error::Key(KeyError::Corrupted | KeyError::WrongKek) => Self::check(e),
            // The outer service tag is outside the GCM tag; a frame whose
            // tag was changed after protection is a tampered frame.
            Error::Wire(WireError::ServiceMismatch { .. } | WireError::SystemTitleMismatch) => {
                Self::check(e)
            }
            Error::KeyNotAvailable(kind) => {
                Self::usage(format_args!("this needs {}", key_source(kind)))
            }
            Error::Key(KeyError::NoAuthenticationKey) => Self::usage(
                "this is authenticated and needs the authentication key (--ak, AK, DLMS_AK)",
            ),
            Error::Misuse(what) => Self::usage(what),
            _ => Self::usage(e),
        }
    }
}

impl From<CounterError> for Fail {
    fn from(e: CounterError) -> Self {
        Error::Counter(e).into()
    }
}
