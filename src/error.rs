//! Errors.
//!
//! One rule decides the shape of every type here: detail that depends only on
//! public bytes (lengths, tags, the security control byte, counters) is
//! structured so a caller can act on it; anything that depends on a key is the
//! single opaque [`AuthError`]. Which byte of a tag, a ciphertext or a header
//! failed authentication is never observable.

use core::fmt;

use crate::types::{KeyKind, Protection, SecurityPolicy};

/// Authentication failed: a tag, a GMAC challenge response or an unwrap
/// integrity check did not verify.
///
/// Deliberately carries no detail (compare `aead::Error`): every
/// authentication failure looks the same to the caller and to the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AuthError;

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("authentication failed")
    }
}

/// Malformed framing of untrusted bytes. Never produced from secret data.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The input ends before the structure it announces.
    Truncated,
    /// An A-XDR length that is not allowed: `0x80`, `0x83`, `0x85..=0xFF`,
    /// or a value that does not fit this target's `usize`.
    InvalidLength,
    /// An A-XDR length in a longer form than needed (only minimal encodings
    /// are accepted, so every frame has exactly one encoding).
    NonMinimalLength,
    /// Bytes follow the end of the structure.
    TrailingBytes,
    /// The leading tag byte is not the one this structure expects.
    UnexpectedTag(u8),
    /// A system title that is neither 8 octets nor (where the form allows
    /// it) empty; carries the length found.
    InvalidSystemTitle(usize),
    /// The frame carries a system title other than the peer's title the
    /// caller expects.
    SystemTitleMismatch,
    /// A ciphered APDU whose security control byte claims neither
    /// authentication nor encryption.
    NoProtection,
    /// The key-set (broadcast) bit is set where it must be zero: on a
    /// dedicated-key APDU or in general-ciphering.
    InvalidKeySet,
    /// A field holds a value outside its defined range (for example an
    /// OPTIONAL presence octet other than 0 or 1, or an unknown CHOICE tag).
    InvalidField,
    /// The service tag of a service-specific ciphered APDU does not match
    /// the tag of the APDU it protects (a glo-get-request must carry a
    /// get-request). Checked only after authentication. It names the outer
    /// tag only: the inner one is plaintext.
    ServiceMismatch {
        /// The ciphered tag on the outside.
        ciphered: u8,
    },
    /// A challenge outside 8..=64 octets, or an HLS-5 response that is not
    /// 17 octets.
    InvalidChallenge,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("truncated input"),
            Self::InvalidLength => f.write_str("invalid A-XDR length"),
            Self::NonMinimalLength => f.write_str("non-minimal A-XDR length"),
            Self::TrailingBytes => f.write_str("trailing bytes after the structure"),
            Self::UnexpectedTag(t) => write!(f, "unexpected tag 0x{t:02X}"),
            Self::InvalidSystemTitle(n) => write!(f, "system title of {n} octets"),
            Self::SystemTitleMismatch => f.write_str("unexpected sender system title"),
            Self::NoProtection => f.write_str("ciphered APDU without protection"),
            Self::InvalidKeySet => f.write_str("key-set bit set where it must be zero"),
            Self::InvalidField => f.write_str("field value out of range"),
            Self::ServiceMismatch { ciphered } => write!(
                f,
                "ciphered tag 0x{ciphered:02X} does not match the protected APDU's service"
            ),
            Self::InvalidChallenge => f.write_str("invalid HLS-5 challenge or response length"),
        }
    }
}

/// Valid DLMS that suite 0 does not do.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unsupported {
    /// A security suite other than 0 (carries the suite id).
    SecuritySuite(u8),
    /// The compression bit of the security control byte (V.44 belongs to
    /// suites 1 and 2).
    Compression,
    /// general-ciphering with wrapped-key key-info.
    WrappedKeyInfo,
    /// general-ciphering with agreed-key key-info (ECDH, suites 1 and 2).
    AgreedKeyInfo,
    /// general-ciphering without key-info: suite 0 cannot tell which key.
    MissingKeyInfo,
    /// The APDU tag has no ciphered form of the kind asked for
    /// (for example data-notification has no glo- tag).
    NoCipheredForm(u8),
    /// A verified request for a service this endpoint does not serve. It
    /// names no tag: the tag is plaintext.
    UnservedService,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SecuritySuite(s) => write!(f, "security suite {s} is not supported"),
            Self::Compression => f.write_str("compression is not supported by suite 0"),
            Self::WrappedKeyInfo => f.write_str("wrapped-key key-info is not supported"),
            Self::AgreedKeyInfo => f.write_str("agreed-key key-info is not supported"),
            Self::MissingKeyInfo => f.write_str("general-ciphering without key-info"),
            Self::NoCipheredForm(t) => write!(f, "APDU tag 0x{t:02X} has no such ciphered form"),
            Self::UnservedService => f.write_str("a service this endpoint does not serve"),
        }
    }
}

/// Invocation counter failures, on either side.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CounterError {
    /// The sender's counter has reached its last usable value: the key
    /// must be replaced before anything more is protected under it.
    Exhausted,
    /// The received counter is at or below the last accepted one (replay),
    /// or is the reserved value `0xFFFFFFFF`.
    Replay,
    /// The counter store failed to persist a reservation; nothing was issued
    /// (fail closed).
    Persistence,
    /// A verification proof was offered to a replay guard that belongs to
    /// another peer or key.
    WrongGuard,
    /// The counter store holds no record for a key that has been used:
    /// where its counter stood is unknown, so nothing is issued; the key
    /// must be replaced.
    RecordLost,
    /// A key was declared used for the first time, but the counter store
    /// already holds a record for it.
    RecordExists,
    /// A frame under encryption only was offered to a replay guard: it
    /// carries no tag, so its counter proves nothing.
    Unauthenticated,
}

impl fmt::Display for CounterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Exhausted => "invocation counter exhausted: replace the key",
            Self::Replay => "invocation counter replayed or out of range",
            Self::Persistence => "invocation counter reservation could not be persisted",
            Self::WrongGuard => "verification proof offered to the wrong replay guard",
            Self::RecordLost => "invocation counter record lost for a used key: replace the key",
            Self::RecordExists => "invocation counter record exists: the key has been used",
            Self::Unauthenticated => "an unauthenticated frame's counter proves nothing",
        })
    }
}

/// Every error the crate returns.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// Malformed framing.
    Wire(WireError),
    /// Well-formed but not suite 0.
    Unsupported(Unsupported),
    /// Authentication failed (opaque on purpose).
    Auth(AuthError),
    /// Invocation counter exhausted, replayed or not persisted.
    Counter(CounterError),
    /// The frame is protected more weakly than the endpoint's policy
    /// requires. The security control byte is public, so this says what
    /// was received and what was required.
    PolicyViolation {
        /// The policy in force.
        required: SecurityPolicy,
        /// The protection the frame carries.
        received: Protection,
    },
    /// The frame (or the caller) asks for a key the context does not hold.
    KeyNotAvailable(KeyKind),
    /// A caller-supplied buffer is too small; bring one of at least
    /// `required` bytes.
    BufferTooSmall {
        /// Bytes needed.
        required: usize,
    },
    /// A packaged key, a key transfer or a key store refused the operation.
    Key(KeyError),
    /// The random number generator failed; nothing was generated.
    Rng,
    /// The caller combined arguments in a way the API forbids. Never
    /// caused by untrusted input.
    Misuse(&'static str),
    /// An audit record could not be written. The key-management
    /// action it records must be treated as failed. Opaque: the sink knows
    /// why (a full buffer, an I/O error) and reports it its own way.
    Audit,
}

/// Key packaging, key transfer and key store failures.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyError {
    /// The record names a KEK (by check value) other than the one offered.
    WrongKek,
    /// The record's check value does not match: the record is corrupt,
    /// was moved to another device, client, role or generation, or was
    /// packaged under another KEK with the same check value. Compared in
    /// constant time; carries no detail.
    Corrupted,
    /// The record holds another role than the one asked for.
    RoleMismatch {
        /// Role asked for.
        expected: crate::types::KeyRole,
        /// Role in the record.
        found: crate::types::KeyRole,
    },
    /// A record format version this build does not read.
    UnsupportedVersion(u8),
    /// The Public client has no keys; or a device-wide key named a client,
    /// or a client key named none.
    InvalidClient,
    /// A key_transfer entry with a key id outside 0..=3.
    UnknownKeyId(u8),
    /// The same key id twice in one key_transfer.
    DuplicateKeyId(u8),
    /// The operation needs a key the store does not hold.
    NotFound,
    /// The store has no room.
    StoreFull,
    /// Activation asked for a generation that is not pending.
    NoPending,
    /// A pending generation must be newer than the active one.
    StaleGeneration,
    /// The crypto provider does not do this operation.
    Refused,
    /// The crypto provider (an HSM) failed; what failed, in kind.
    Provider(ModuleFailure),
    /// The context holds no authentication key (it was built for
    /// encryption only), and the frame or request needs one.
    NoAuthenticationKey,
    /// Another holder of the store changed the same state first (a lost
    /// race, or a lease another node holds); nothing was changed.
    Conflict,
    /// The principal or the reason given does not permit the access (a
    /// packaged record asked for without a privileged person, or not for
    /// support, (d)(iv)); nothing was given.
    AccessDenied,
}

/// How a crypto module (an HSM behind PKCS#11) failed. Every module error
/// maps to one of these; none is ever turned into a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ModuleFailure {
    /// The token is absent (removed, slot empty) or the module is not
    /// initialised.
    TokenAbsent,
    /// The session was closed or its login lost underneath the call.
    SessionLost,
    /// A key object the call needs (a KEK found by label) no longer exists.
    ObjectMissing,
    /// The module refused the operation: a mechanism it does not offer or
    /// a key attribute that forbids the use.
    NotPermitted,
    /// The module returned output of an unexpected length.
    BadOutput,
    /// The module reported a device, memory or general failure.
    DeviceError,
    /// The module did not encrypt under the IV the caller gave (system
    /// title ‖ invocation counter): nothing was sent. FIPS-mode modules
    /// may do this; how, the cause says.
    IvNotHonoured(IvCause),
    /// Any other module error (the provider's own error type, where it
    /// has one, names it).
    Other,
}

/// How a module failed to honour a caller's GCM IV.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IvCause {
    /// The module refused an externally supplied IV.
    Refused,
    /// The module encrypted under an IV of its own and reported it in
    /// place of the caller's.
    Replaced,
    /// The module returned more than ciphertext and tag (an IV of its own
    /// appended to the output).
    Appended,
}

impl fmt::Display for ModuleFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TokenAbsent => f.write_str("token absent or module not initialised"),
            Self::SessionLost => f.write_str("session closed or logged out"),
            Self::ObjectMissing => f.write_str("key object missing"),
            Self::NotPermitted => f.write_str("operation not permitted by the module"),
            Self::BadOutput => f.write_str("unexpected output length from the module"),
            Self::DeviceError => f.write_str("device error"),
            Self::IvNotHonoured(IvCause::Refused) => {
                f.write_str("the module refused the caller's GCM IV")
            }
            Self::IvNotHonoured(IvCause::Replaced) => {
                f.write_str("the module replaced the caller's GCM IV with its own")
            }
            Self::IvNotHonoured(IvCause::Appended) => {
                f.write_str("the module appended an IV of its own to the GCM output")
            }
            Self::Other => f.write_str("module error"),
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongKek => f.write_str("record packaged under another KEK"),
            Self::Corrupted => f.write_str("packaged key failed its check"),
            Self::RoleMismatch { expected, found } => {
                write!(f, "record holds a {found:?} key, not a {expected:?} key")
            }
            Self::UnsupportedVersion(v) => write!(f, "record format version {v}"),
            Self::InvalidClient => f.write_str("invalid client for this key role"),
            Self::UnknownKeyId(k) => write!(f, "unknown key id {k}"),
            Self::DuplicateKeyId(k) => write!(f, "key id {k} appears twice"),
            Self::NotFound => f.write_str("no such key"),
            Self::StoreFull => f.write_str("key store full"),
            Self::NoPending => f.write_str("no such pending generation"),
            Self::StaleGeneration => f.write_str("pending generation not newer than active"),
            Self::Conflict => f.write_str("another holder changed it first"),
            Self::AccessDenied => {
                f.write_str("access denied: no privileged person, or not for support")
            }
            Self::Refused => f.write_str("operation refused by the crypto provider"),
            Self::NoAuthenticationKey => {
                f.write_str("no authentication key: this context is for encryption only")
            }
            Self::Provider(m) => write!(f, "crypto provider failure: {m}"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Wire(e) => write!(f, "malformed frame: {e}"),
            Self::Unsupported(e) => write!(f, "unsupported: {e}"),
            Self::Auth(e) => fmt::Display::fmt(e, f),
            Self::Counter(e) => fmt::Display::fmt(e, f),
            Self::PolicyViolation { required, received } => write!(
                f,
                "frame protected with {received:?} but the policy requires {required:?}"
            ),
            Self::KeyNotAvailable(k) => write!(f, "no {k:?} key in this context"),
            Self::BufferTooSmall { required } => {
                write!(f, "buffer too small: {required} bytes required")
            }
            Self::Key(e) => write!(f, "key: {e}"),
            Self::Rng => f.write_str("random number generator failed"),
            Self::Misuse(what) => write!(f, "API misuse: {what}"),
            Self::Audit => f.write_str("audit record could not be written"),
        }
    }
}

impl From<WireError> for Error {
    fn from(e: WireError) -> Self {
        Self::Wire(e)
    }
}
impl From<Unsupported> for Error {
    fn from(e: Unsupported) -> Self {
        Self::Unsupported(e)
    }
}
impl From<AuthError> for Error {
    fn from(e: AuthError) -> Self {
        Self::Auth(e)
    }
}
impl From<KeyError> for Error {
    fn from(e: KeyError) -> Self {
        Self::Key(e)
    }
}
impl From<CounterError> for Error {
    fn from(e: CounterError) -> Self {
        Self::Counter(e)
    }
}

impl core::error::Error for AuthError {}
impl core::error::Error for WireError {}
impl core::error::Error for Unsupported {}
impl core::error::Error for CounterError {}
impl core::error::Error for KeyError {}
impl core::error::Error for Error {}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;
