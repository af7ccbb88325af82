//! Errors: setting a provider up ([`Pkcs11Error`]) and the mapping of
//! every PKCS#11 return value onto the core's [`ModuleFailure`].

use std::fmt;

use cryptoki::error::{Error as CkError, RvError};
use dlms_sec::error::{KeyError, ModuleFailure};

/// Why a token, a session or a KEK could not be set up. The PIN never
/// appears in any of these.
#[derive(Debug)]
#[non_exhaustive]
pub enum Pkcs11Error {
    /// A configuration value is missing or malformed (which one is named).
    Config(&'static str),
    /// The PKCS#11 module could not be loaded or initialised.
    Module(String),
    /// No slot holds a token with this label.
    TokenNotFound {
        /// The label looked for.
        label: String,
    },
    /// The token refused the user PIN.
    WrongPin,
    /// The user PIN is locked after too many failures.
    PinLocked,
    /// No secret key with this label is on the token.
    KekNotFound {
        /// The label looked for.
        label: String,
    },
    /// More than one secret key carries this label.
    KekAmbiguous {
        /// The label.
        label: String,
    },
    /// The KEK is not an AES-128 key.
    KekWrongSize {
        /// The label.
        label: String,
        /// Its `CKA_VALUE_LEN` (0 when it is not an AES key at all).
        bytes: u64,
    },
    /// The KEK could leave the token (`CKA_EXTRACTABLE` true or
    /// `CKA_SENSITIVE` false): refused.
    KekExposed {
        /// The label.
        label: String,
    },
    /// A KEK attribute that must be true is not: `CKA_TOKEN` (a session
    /// object is no KEK), `CKA_ALWAYS_SENSITIVE` or `CKA_NEVER_EXTRACTABLE`
    /// (the key was readable or extractable once; an imported KEK passes
    /// only with `Pkcs11Config::accept_imported_keks`).
    KekAttribute {
        /// The label.
        label: String,
        /// The attribute, e.g. `"CKA_ALWAYS_SENSITIVE"`.
        attribute: &'static str,
    },
    /// The KEK carries a usage its role does not need on this token, e.g.
    /// `CKA_ENCRYPT` (which would forge records) or `CKA_DECRYPT` where
    /// records are unwrapped in the token (which would read them).
    KekUsageExceeds {
        /// The label.
        label: String,
        /// The attribute, e.g. `"CKA_ENCRYPT"`.
        usage: &'static str,
        /// The role it was looked up for.
        role: crate::token::KekRole,
    },
    /// The KEK's check value is neither kept by the module
    /// (`CKA_CHECK_VALUE`) nor computable (no `CKA_WRAP`), and none is
    /// pinned in the configuration.
    KekCheckValueUnknown {
        /// The label.
        label: String,
    },
    /// The KEK's check value differs from the one the configuration pins.
    KekCheckValuePinned {
        /// The label.
        label: String,
    },
    /// The token cannot unwrap records inside it (it would decrypt them
    /// into host memory) and the configuration forbids that fallback.
    HostDecryptForbidden,
    /// The token's own `CKA_CHECK_VALUE` differs from the one computed in
    /// the token: the module is inconsistent.
    KekCheckValueMismatch {
        /// The label.
        label: String,
    },
    /// A mechanism this provider needs is not offered for this use.
    MechanismMissing {
        /// The mechanism.
        mechanism: &'static str,
        /// What it is needed for.
        purpose: &'static str,
    },
    /// A key with this label exists already.
    LabelTaken {
        /// The label.
        label: String,
    },
    /// Any other module failure during setup.
    Failure(ModuleFailure),
}

impl fmt::Display for Pkcs11Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(what) => write!(f, "configuration: {what}"),
            Self::Module(e) => write!(f, "PKCS#11 module: {e}"),
            Self::TokenNotFound { label } => write!(f, "no token labelled {label:?}"),
            Self::WrongPin => f.write_str("the token refused the PIN"),
            Self::PinLocked => f.write_str("the user PIN is locked"),
            Self::KekNotFound { label } => write!(f, "no secret key labelled {label:?}"),
            Self::KekAmbiguous { label } => {
                write!(f, "more than one secret key labelled {label:?}")
            }
            Self::KekWrongSize { label, bytes } => {
                write!(f, "key {label:?} is not AES-128 ({bytes} octets)")
            }
            Self::KekExposed { label } => write!(
                f,
                "key {label:?} is extractable or not sensitive: a KEK must never leave the token"
            ),
            Self::KekAttribute { label, attribute } => {
                write!(f, "key {label:?} is not {attribute}: refused as a KEK")
            }
            Self::KekUsageExceeds { label, usage, role } => write!(
                f,
                "key {label:?} has {usage}, which a {role:?} KEK must not have on this token"
            ),
            Self::KekCheckValueUnknown { label } => write!(
                f,
                "key {label:?}: the module keeps no CKA_CHECK_VALUE, the key cannot wrap, and no check value is pinned"
            ),
            Self::KekCheckValuePinned { label } => {
                write!(f, "key {label:?}: its check value differs from the pinned one")
            }
            Self::HostDecryptForbidden => f.write_str(
                "the token cannot unwrap records inside it and the configuration forbids decrypting them to the host",
            ),
            Self::KekCheckValueMismatch { label } => {
                write!(f, "key {label:?}: CKA_CHECK_VALUE differs from AES(K, 0)")
            }
            Self::MechanismMissing { mechanism, purpose } => {
                write!(f, "the token does not offer {mechanism} for {purpose}")
            }
            Self::LabelTaken { label } => write!(f, "a key labelled {label:?} exists already"),
            Self::Failure(m) => write!(f, "module failure: {m}"),
        }
    }
}

impl std::error::Error for Pkcs11Error {}

impl From<CkError> for Pkcs11Error {
    fn from(e: CkError) -> Self {
        match e {
            CkError::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid, _) => Self::WrongPin,
            CkError::Pkcs11(RvError::PinLocked, _) => Self::PinLocked,
            CkError::LibraryLoading(e) => Self::Module(e.to_string()),
            other => Self::Failure(failure(&other)),
        }
    }
}

/// The kind of a PKCS#11 failure, as the core reports it.
#[must_use]
pub fn failure(e: &CkError) -> ModuleFailure {
    match e {
        CkError::Pkcs11(rv, _) => match rv {
            RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::DeviceRemoved
            | RvError::SlotIdInvalid
            | RvError::CryptokiNotInitialized => ModuleFailure::TokenAbsent,
            RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::UserNotLoggedIn
            | RvError::SessionCount => ModuleFailure::SessionLost,
            RvError::ObjectHandleInvalid
            | RvError::KeyHandleInvalid
            | RvError::WrappingKeyHandleInvalid
            | RvError::UnwrappingKeyHandleInvalid => ModuleFailure::ObjectMissing,
            RvError::MechanismInvalid
            | RvError::MechanismParamInvalid
            | RvError::KeyFunctionNotPermitted
            | RvError::KeyTypeInconsistent
            | RvError::KeyUnextractable
            | RvError::KeyNotWrappable
            | RvError::KeySizeRange
            | RvError::TemplateIncomplete
            | RvError::TemplateInconsistent
            | RvError::AttributeValueInvalid
            | RvError::AttributeTypeInvalid
            | RvError::AttributeSensitive
            | RvError::ActionProhibited
            | RvError::FunctionNotSupported => ModuleFailure::NotPermitted,
            RvError::DeviceError
            | RvError::DeviceMemory
            | RvError::HostMemory
            | RvError::GeneralError
            | RvError::FunctionFailed => ModuleFailure::DeviceError,
            _ => ModuleFailure::Other,
        },
        CkError::LibraryLoading(_) | CkError::NullFunctionPointer | CkError::NotSupported => {
            ModuleFailure::TokenAbsent
        }
        CkError::TryFromInt(_) | CkError::TryFromSlice(_) => ModuleFailure::BadOutput,
        _ => ModuleFailure::Other,
    }
}

/// A PKCS#11 failure as the core's error.
#[must_use]
pub fn module_error(e: &CkError) -> dlms_sec::Error {
    dlms_sec::Error::Key(KeyError::Provider(failure(e)))
}

/// An output of the wrong length from the module.
pub(crate) const fn bad_output() -> dlms_sec::Error {
    dlms_sec::Error::Key(KeyError::Provider(ModuleFailure::BadOutput))
}

/// Whether a session that failed this way is closed rather than pooled:
/// any module failure (a lost login shows as a missing key on some
/// modules), so the next call starts on a fresh, logged-in session.
pub(crate) const fn session_broken(e: &dlms_sec::Error) -> bool {
    matches!(e, dlms_sec::Error::Key(KeyError::Provider(_)))
}
