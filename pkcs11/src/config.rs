//! Where the module, token, PIN and KEK labels come from.

use std::fmt;
use std::path::PathBuf;

use cryptoki::types::AuthPin;
use dlms_sec::key::package::KeyCheckValue;

use crate::error::Pkcs11Error;

/// The token's user PIN. Zeroized on drop (it is a `secrecy` string);
/// `Debug` prints nothing of it, and no error or log line carries it.
pub struct Pin(pub(crate) AuthPin);

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(..)")
    }
}

impl Pin {
    /// A PIN given as a string (taken over; wiped on drop).
    #[must_use]
    pub fn new(pin: String) -> Self {
        Self(AuthPin::new(pin.into_boxed_str()))
    }

    /// The PIN from `DLMS_PKCS11_PIN`, or else from the first line of the
    /// file named by `DLMS_PKCS11_PIN_FILE` (a file readable by the service
    /// account only is the better place in production).
    ///
    /// # Errors
    /// [`Pkcs11Error::Config`] when neither is set or the file is unreadable.
    pub fn from_env() -> Result<Self, Pkcs11Error> {
        if let Ok(pin) = std::env::var("DLMS_PKCS11_PIN") {
            return Ok(Self::new(pin));
        }
        let path = std::env::var_os("DLMS_PKCS11_PIN_FILE").ok_or(Pkcs11Error::Config(
            "set DLMS_PKCS11_PIN or DLMS_PKCS11_PIN_FILE",
        ))?;
        let mut text = std::fs::read_to_string(path)
            .map_err(|_| Pkcs11Error::Config("DLMS_PKCS11_PIN_FILE is unreadable"))?;
        let pin = text.lines().next().unwrap_or_default().trim().to_owned();
        zeroize::Zeroize::zeroize(&mut text);
        Ok(Self::new(pin))
    }
}

/// Label of the DCO Key when none is configured.
pub const DEFAULT_DCO_KEY_LABEL: &str = "dlms-sec DCO Key";
/// Label of the Shared Key when none is configured.
pub const DEFAULT_SHARED_KEY_LABEL: &str = "dlms-sec Shared Key";

/// How to reach the keys: module, token, PIN and the KEKs' labels.
#[derive(Debug)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (a shared library), e.g.
    /// `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The label of the token that holds the KEKs.
    pub token_label: String,
    /// The user PIN.
    pub pin: Pin,
    /// The DCO Key's label (`CKA_LABEL`); an S1SP ignores it.
    pub dco_key_label: String,
    /// The Shared Key's label.
    pub shared_key_label: String,
    /// Sessions kept open between calls; more are opened under load and
    /// closed when returned beyond this number.
    pub idle_sessions: usize,
    /// The label of a separate DCO Key object for AKs
    /// ([`KekRole::DcoAuthentication`](crate::KekRole)); when set, the DCO
    /// Key packages MKs only ([`KekRole::DcoMaster`](crate::KekRole)), so
    /// the decrypt-capable key never opens an MK.
    pub dco_ak_key_label: Option<String>,
    /// Check values the KEKs must have (by label): `open` refuses a KEK
    /// whose check value differs.
    pub pinned_check_values: Vec<(String, KeyCheckValue)>,
    /// Whether a token that cannot unwrap records inside it (SoftHSM2 2.6)
    /// may decrypt them into host memory instead ([`crate::UnpackPath::HostDecrypt`]).
    /// `false` refuses to open such a token.
    pub allow_host_decrypt: bool,
    /// Whether a KEK that is not `CKA_ALWAYS_SENSITIVE` and
    /// `CKA_NEVER_EXTRACTABLE` is taken. A KEK imported with `C_UnwrapKey`
    /// (the Shared Key, which two parties hold, is imported by at least
    /// one) never is, by PKCS#11's rule; one made in the token always is.
    pub accept_imported_keks: bool,
    /// The opt-in cache of unpacked keys (none by default; see
    /// [`crate::cache`] for what it keeps where, and for how long).
    pub cache: Option<crate::cache::CacheConfig>,
}

impl Pkcs11Config {
    /// The check value pinned for `label`, if any.
    #[must_use]
    pub fn pinned(&self, label: &str) -> Option<KeyCheckValue> {
        self.pinned_check_values
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, kcv)| *kcv)
    }

    /// A configuration with the default labels, 4 idle sessions, one DCO
    /// Key object, the host-decrypt fallback allowed, and imported KEKs
    /// refused.
    #[must_use]
    pub fn new(module: impl Into<PathBuf>, token_label: impl Into<String>, pin: Pin) -> Self {
        Self {
            module: module.into(),
            token_label: token_label.into(),
            pin,
            dco_key_label: DEFAULT_DCO_KEY_LABEL.to_owned(),
            shared_key_label: DEFAULT_SHARED_KEY_LABEL.to_owned(),
            idle_sessions: 4,
            dco_ak_key_label: None,
            pinned_check_values: Vec::new(),
            allow_host_decrypt: true,
            accept_imported_keks: false,
            cache: None,
        }
    }

    /// From the environment: `DLMS_PKCS11_MODULE`, `DLMS_PKCS11_TOKEN`,
    /// the PIN as [`Pin::from_env`], and optionally
    /// `DLMS_PKCS11_DCO_KEY_LABEL` and `DLMS_PKCS11_SHARED_KEY_LABEL`.
    ///
    /// # Errors
    /// [`Pkcs11Error::Config`] naming what is missing.
    pub fn from_env() -> Result<Self, Pkcs11Error> {
        let module = std::env::var_os("DLMS_PKCS11_MODULE")
            .ok_or(Pkcs11Error::Config("set DLMS_PKCS11_MODULE"))?;
        let token = std::env::var("DLMS_PKCS11_TOKEN")
            .map_err(|_| Pkcs11Error::Config("set DLMS_PKCS11_TOKEN"))?;
        let mut config = Self::new(module, token, Pin::from_env()?);
        if let Ok(label) = std::env::var("DLMS_PKCS11_DCO_KEY_LABEL") {
            config.dco_key_label = label;
        }
        if let Ok(label) = std::env::var("DLMS_PKCS11_SHARED_KEY_LABEL") {
            config.shared_key_label = label;
        }
        if let Ok(label) = std::env::var("DLMS_PKCS11_DCO_AK_KEY_LABEL") {
            config.dco_ak_key_label = Some(label);
        }
        if std::env::var("DLMS_PKCS11_FORBID_HOST_DECRYPT").is_ok_and(|v| v == "1") {
            config.allow_host_decrypt = false;
        }
        if std::env::var("DLMS_PKCS11_ACCEPT_IMPORTED_KEKS").is_ok_and(|v| v == "1") {
            config.accept_imported_keks = true;
        }
        Ok(config)
    }
}
