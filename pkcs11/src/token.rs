//! A token: the loaded module, the slot, the login, a session pool, what
//! the token can do, and the KEKs found by label.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError, RwLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use dlms_sec::error::{Error, KeyError, Result};
use dlms_sec::key::package::{CHECK_VALUE_LEN, KeyCheckValue, PackagedKey, RecordId};
use dlms_sec::key::{AuthenticationKey, DeviceKey, KEY_LEN};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::cache::KeyCache;
use crate::calls;
use crate::config::{Pin, Pkcs11Config};
use crate::error::{Pkcs11Error, bad_output, module_error, session_broken};
use crate::kek_package::{self, Claim, KekPackage, KekPackageError, PackageIdGuard, TrustAnchors};

/// How a packaged record's key gets into the token for use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnpackPath {
    /// `C_UnwrapKey` with `CKM_AES_ECB`: the key never leaves the token.
    UnwrapEcb,
    /// `C_UnwrapKey` with `CKM_AES_CBC` and a zero IV, which for one
    /// 16-octet block is ECB: the key never leaves the token.
    UnwrapCbcZeroIv,
    /// The token unwraps neither way: `C_Decrypt` (`CKM_AES_ECB`) under
    /// the KEK into host memory, then `C_CreateObject` as a sensitive
    /// session object; the host copy is wiped at once. The key is in host
    /// memory for part of one call. (SoftHSM2 2.6 takes this path.)
    HostDecrypt,
}

/// How a new key is packaged (it is generated inside the token either way
/// and never leaves it in clear).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackagePath {
    /// `C_WrapKey` with `CKM_AES_ECB`.
    WrapEcb,
    /// `C_WrapKey` with `CKM_AES_CBC` and a zero IV (equal to ECB for one
    /// block). SoftHSM2 2.6 takes this path.
    WrapCbcZeroIv,
}

/// How encryption-only frames are ciphered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeystreamPath {
    /// `CKM_AES_CTR` with a 32-bit counter from IV ‖ 2.
    Ctr,
    /// `CKM_AES_ECB` over the counter blocks, XORed on the host.
    EcbCounterBlocks,
}

/// What the token offers, probed from its mechanism flags (and, for the
/// KEK attributes, by trying them) when it is opened; an operator reads it
/// to see which path their HSM takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// How records are unpacked. [`UnpackPath::HostDecrypt`] is the
    /// fallback that puts each unpacked key in host memory for part of a
    /// call; [`Pkcs11Config::allow_host_decrypt`] can forbid it.
    pub unpack: UnpackPath,
    /// How new keys are packaged.
    pub package: PackagePath,
    /// How encryption-only frames are ciphered.
    pub keystream: KeystreamPath,
    /// The module takes `CKA_ALLOWED_MECHANISMS` on a key (KEKs are then
    /// limited to the packaging mechanisms).
    pub allowed_mechanisms: bool,
    /// The module takes `CKA_UNWRAP_TEMPLATE` on a KEK (what it unwraps
    /// is then sensitive, a session object, and neither unwraps nor
    /// derives).
    pub unwrap_template: bool,
}

/// What a KEK object is for, and so which usages it may carry. No KEK
/// may `C_Encrypt`, sign, verify or derive; which of decrypt, wrap and
/// unwrap it may have depends on its role and on the token's
/// [`UnpackPath`] ([`Self::usages`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KekRole {
    /// The DCO Key as one object for MKs and AKs: it must decrypt (the AK
    /// goes to the host), so it could also decrypt an MK. Use
    /// [`KekRole::DcoMaster`] and [`KekRole::DcoAuthentication`] instead
    /// where the module unwraps in the token.
    Dco,
    /// The DCO Key object that packages MKs only: wrap, and unwrap (or,
    /// on the host-decrypt fallback, decrypt).
    DcoMaster,
    /// The DCO Key object that packages AKs only: wrap and decrypt; a
    /// record under it never opens as an MK (its check value differs).
    DcoAuthentication,
    /// The Shared Key: wrap, and unwrap (or, on the host-decrypt
    /// fallback, decrypt).
    Shared,
    /// A transport key: unwraps KEKs with RFC 3394 only.
    Transport,
}

/// The usages a KEK of some role may carry on some token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KekUsages {
    /// `CKA_DECRYPT`.
    pub decrypt: bool,
    /// `CKA_WRAP`.
    pub wrap: bool,
    /// `CKA_UNWRAP`.
    pub unwrap: bool,
}

impl KekRole {
    /// The usages this role needs on a token whose unpack path is
    /// `unpack` (nothing more is accepted by the providers).
    #[must_use]
    pub const fn usages(self, unpack: UnpackPath) -> KekUsages {
        let host = matches!(unpack, UnpackPath::HostDecrypt);
        match self {
            Self::Dco => KekUsages {
                decrypt: true,
                wrap: true,
                unwrap: !host,
            },
            Self::DcoMaster | Self::Shared => KekUsages {
                decrypt: host,
                wrap: true,
                unwrap: !host,
            },
            Self::DcoAuthentication => KekUsages {
                decrypt: true,
                wrap: true,
                unwrap: false,
            },
            Self::Transport => KekUsages {
                decrypt: false,
                wrap: false,
                unwrap: true,
            },
        }
    }

    /// The mechanisms a KEK of this role is limited to where the module
    /// takes `CKA_ALLOWED_MECHANISMS`.
    fn mechanisms(self) -> Vec<MechanismType> {
        match self {
            Self::Transport => vec![MechanismType::AES_KEY_WRAP],
            _ => vec![MechanismType::AES_ECB, MechanismType::AES_CBC],
        }
    }
}

/// What `find_kek` reads of a KEK.
#[derive(Default)]
struct KekAttributes {
    aes: bool,
    len: u64,
    token: bool,
    sensitive: bool,
    extractable: bool,
    always_sensitive: bool,
    never_extractable: bool,
    encrypt: bool,
    decrypt: bool,
    wrap: bool,
    unwrap: bool,
    sign: bool,
    verify: bool,
    derive: bool,
}

/// How strict a token is about its KEKs and paths (from [`Pkcs11Config`]).
#[derive(Clone, Copy, Debug)]
struct Policy {
    accept_imported_keks: bool,
}

/// The process's PKCS#11 contexts, one per module: `C_Initialize` and
/// `C_Finalize` are per process, so every token of one module shares it
/// (and it is never finalized while the process runs).
fn context(module: &Path) -> std::result::Result<Pkcs11, Pkcs11Error> {
    static CONTEXTS: OnceLock<Mutex<Vec<(PathBuf, Pkcs11)>>> = OnceLock::new();
    let registry = CONTEXTS.get_or_init(|| Mutex::new(Vec::new()));
    let mut contexts = registry.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, ctx)) = contexts.iter().find(|(path, _)| path == module) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(module).map_err(|e| Pkcs11Error::Module(e.to_string()))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(Pkcs11Error::Module(e.to_string())),
    }
    contexts.push((module.to_owned(), ctx.clone()));
    Ok(ctx)
}

/// Finds the slot whose token carries `label`.
fn find_slot(ctx: &Pkcs11, label: &str) -> std::result::Result<Slot, Pkcs11Error> {
    for slot in ctx.get_slots_with_token()? {
        if ctx.get_token_info(slot)?.label() == label {
            return Ok(slot);
        }
    }
    Err(Pkcs11Error::TokenNotFound {
        label: label.to_owned(),
    })
}

/// A KEK on the token, found by label: its handle and its check value,
/// computed inside the token. Some modules (SoftHSM2) invalidate the
/// handles of private objects when the login ends; the handle is then
/// found again by label, and taken only if its check value is unchanged.
#[derive(Debug)]
pub(crate) struct KekObject {
    label: String,
    pub(crate) role: KekRole,
    handle: RwLock<ObjectHandle>,
    pub(crate) kcv: KeyCheckValue,
}

impl KekObject {
    pub(crate) fn handle(&self) -> ObjectHandle {
        *self.handle.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// After a call failed with a missing object: looks the label up again
    /// for the next call (the failed call stays failed).
    pub(crate) fn refresh(&self, token: &Token) {
        if let Ok(found) = token.find_kek(&self.label, self.role, Some(self.kcv))
            && found.kcv == self.kcv
        {
            *self.handle.write().unwrap_or_else(PoisonError::into_inner) = found.handle();
        }
    }
}

/// What a session object made from a record may do. None may unwrap or
/// derive; only the objects that compute a check value in the token, or
/// cipher frames, may encrypt.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Usage {
    /// AES-GCM and CTR under it (encrypt and decrypt).
    pub(crate) cipher: bool,
    /// Wrap other keys under it (an MK for key_transfer).
    pub(crate) wrap: bool,
    /// Be wrapped itself (a key on its way to a meter): `C_WrapKey`
    /// requires `CKA_EXTRACTABLE`, so such an object lives for one call.
    pub(crate) extractable: bool,
}

impl Usage {
    pub(crate) const CHECK: Self = Self {
        cipher: false,
        wrap: false,
        extractable: false,
    };
    pub(crate) const CIPHER: Self = Self {
        cipher: true,
        wrap: false,
        extractable: false,
    };
    pub(crate) const WRAP: Self = Self {
        cipher: false,
        wrap: true,
        extractable: false,
    };
    pub(crate) const TRANSFER: Self = Self {
        cipher: false,
        wrap: false,
        extractable: true,
    };

    /// The session object's template. `check_in_token` says whether the
    /// record's check value is computed by the token under this object
    /// (`C_Encrypt` with ECB), which needs `CKA_ENCRYPT`; on the
    /// host-decrypt path it is computed on the host copy instead.
    fn template(self, check_in_token: bool) -> Vec<Attribute> {
        vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(self.extractable),
            Attribute::Encrypt(self.cipher || check_in_token),
            Attribute::Decrypt(self.cipher),
            Attribute::Wrap(self.wrap),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
        ]
    }
}

/// A session object destroyed when dropped.
pub(crate) struct SessionKey<'s> {
    session: &'s Session,
    pub(crate) handle: ObjectHandle,
}

impl SessionKey<'_> {
    /// Keeps the object beyond this value (the cache destroys it later).
    pub(crate) fn keep(self) -> ObjectHandle {
        let handle = self.handle;
        std::mem::forget(self);
        handle
    }
}

impl Drop for SessionKey<'_> {
    fn drop(&mut self) {
        // Session objects also vanish when the session closes.
        let _ = calls::destroy_object(self.session, self.handle);
    }
}

/// An open token: module, slot, login and a pool of sessions, shared by
/// the providers built on it (and by threads: sessions are handed out one
/// per call, so no two threads share a session).
pub struct Token {
    ctx: Pkcs11,
    slot: Slot,
    label: String,
    pin: AuthPin,
    idle: Mutex<Vec<Session>>,
    idle_max: usize,
    caps: Capabilities,
    policy: Policy,
    pub(crate) cache: Option<KeyCache>,
    /// Serialises the creation of token objects (KEKs): rare, and SoftHSM2
    /// 2.6 fails concurrent token-object writes with CKR_GENERAL_ERROR.
    admin: Mutex<()>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("label", &self.label)
            .field("slot", &self.slot)
            .field("capabilities", &self.caps)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// Loads the module, finds the token by label, logs in and probes the
    /// token's mechanisms.
    ///
    /// # Errors
    /// [`Pkcs11Error::Module`], [`Pkcs11Error::TokenNotFound`],
    /// [`Pkcs11Error::WrongPin`], [`Pkcs11Error::PinLocked`],
    /// [`Pkcs11Error::MechanismMissing`] (AES-ECB encrypt, AES-GCM, a way
    /// to package, AES key wrap). A PKCS#11 login belongs to the whole
    /// process: once one token of this process is logged in, the module
    /// does not check the PIN of a second `open` again.
    pub fn open(config: &Pkcs11Config) -> std::result::Result<Self, Pkcs11Error> {
        let ctx = context(&config.module)?;
        let slot = find_slot(&ctx, &config.token_label)?;
        let caps = probe(&ctx, slot)?;
        if caps.unpack == UnpackPath::HostDecrypt && !config.allow_host_decrypt {
            return Err(Pkcs11Error::HostDecryptForbidden);
        }
        let mut token = Self {
            ctx,
            slot,
            label: config.token_label.clone(),
            pin: config.pin.0.clone(),
            idle: Mutex::new(Vec::new()),
            idle_max: config.idle_sessions,
            caps,
            policy: Policy {
                accept_imported_keks: config.accept_imported_keks,
            },
            cache: config.cache.map(KeyCache::new),
            admin: Mutex::new(()),
        };
        // Log in now, so a wrong PIN is an error here, not at first use.
        let session = token.new_session()?;
        token.caps.allowed_mechanisms = takes(&session, |t| {
            t.push(Attribute::AllowedMechanisms(vec![MechanismType::AES_ECB]));
        });
        token.caps.unwrap_template = takes(&session, |t| {
            // One CKA_UNWRAP only: a module may refuse a template that
            // names an attribute twice.
            t.retain(|a| !matches!(a, Attribute::Unwrap(_)));
            t.push(Attribute::Unwrap(true));
            t.push(unwrap_template_attribute(&UNWRAPPED));
        });
        token.give_back(session);
        Ok(token)
    }

    /// What the token offers, and so which path each operation takes.
    #[must_use]
    pub const fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// The token's label.
    #[must_use]
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Drops every cached key at once: destroys the cached key objects and
    /// wipes the cached AKs (a no-op without a cache).
    pub fn purge_cache(&self) {
        if let Some(cache) = &self.cache {
            cache.lock().purge();
        }
    }

    /// Entries in the cache: (key objects, AKs).
    #[must_use]
    pub fn cached(&self) -> (usize, usize) {
        self.cache.as_ref().map_or((0, 0), |c| c.lock().len())
    }

    /// A fresh logged-in session for the cache.
    pub(crate) fn cache_session(&self) -> Result<Session> {
        self.new_session().map_err(|e| match e {
            Pkcs11Error::Failure(m) => Error::Key(KeyError::Provider(m)),
            _ => Error::Key(KeyError::Provider(
                dlms_sec::error::ModuleFailure::SessionLost,
            )),
        })
    }

    fn new_session(&self) -> std::result::Result<Session, Pkcs11Error> {
        let session = self.ctx.open_rw_session(self.slot)?;
        if session.get_session_info()?.session_state() != SessionState::RwUser {
            match session.login(UserType::User, Some(&self.pin)) {
                Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(session)
    }

    fn give_back(&self, session: Session) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.idle_max {
            idle.push(session);
        }
    }

    /// Runs `f` on a session of the pool (opened and logged in when none
    /// is idle). A session whose failure says it is gone is closed, not
    /// returned, so the next call starts afresh.
    pub(crate) fn with_session<T>(&self, f: impl FnOnce(&Session) -> Result<T>) -> Result<T> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let session = match pooled {
            Some(s) => s,
            None => self.new_session().map_err(|e| match e {
                Pkcs11Error::Failure(m) => Error::Key(KeyError::Provider(m)),
                _ => Error::Key(KeyError::Provider(
                    dlms_sec::error::ModuleFailure::SessionLost,
                )),
            })?,
        };
        let result = f(&session);
        match &result {
            Err(e) if session_broken(e) => drop(session),
            _ => self.give_back(session),
        }
        result
    }

    /// Logs the user out of the token, which ends the login of every
    /// session of this process: calls on pooled sessions then fail with
    /// [`ModuleFailure::SessionLost`](dlms_sec::error::ModuleFailure::SessionLost)
    /// and are replaced by freshly logged-in sessions. (An operator's
    /// "lock now"; tests use it to fail a token underneath a provider.)
    ///
    /// # Errors
    /// The module's failure.
    pub fn logout(&self) -> Result<()> {
        self.with_session(|s| s.logout().map_err(|e| module_error(&e)))
    }

    /// Finds a KEK by label and checks it for `role`: an AES-128 token
    /// object, sensitive and non-extractable now and always (unless the
    /// configuration accepts imported KEKs), with no usage beyond what
    /// `role` needs on this token's paths. Its check value comes from
    /// `CKA_CHECK_VALUE` or, where the module keeps none, from wrapping an
    /// all-zero key under it (AES(KEK, 0), no `C_Encrypt` needed); it must
    /// equal `pinned` when given.
    pub(crate) fn find_kek(
        &self,
        label: &str,
        role: KekRole,
        pinned: Option<KeyCheckValue>,
    ) -> std::result::Result<KekObject, Pkcs11Error> {
        let session = self.new_session()?;
        let r = self.check_kek(
            &session,
            label,
            role,
            pinned,
            self.policy.accept_imported_keks,
        );
        self.give_back(session);
        r
    }

    fn check_kek(
        &self,
        session: &Session,
        label: &str,
        role: KekRole,
        pinned: Option<KeyCheckValue>,
        accept_imported: bool,
    ) -> std::result::Result<KekObject, Pkcs11Error> {
        let owned = || label.to_owned();
        let found = calls::find_objects(
            session,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ],
        )?;
        let handle = match found.as_slice() {
            [] => return Err(Pkcs11Error::KekNotFound { label: owned() }),
            [one] => *one,
            _ => return Err(Pkcs11Error::KekAmbiguous { label: owned() }),
        };
        let attrs = calls::get_attributes(
            session,
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::ValueLen,
                AttributeType::Token,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable,
                AttributeType::Encrypt,
                AttributeType::Decrypt,
                AttributeType::Wrap,
                AttributeType::Unwrap,
                AttributeType::Sign,
                AttributeType::Verify,
                AttributeType::Derive,
            ],
        )?;
        let mut k = KekAttributes::default();
        for a in attrs {
            match a {
                Attribute::KeyType(t) => k.aes = t == KeyType::AES,
                Attribute::ValueLen(n) => k.len = n.into(),
                Attribute::Token(b) => k.token = b,
                Attribute::Sensitive(b) => k.sensitive = b,
                Attribute::Extractable(b) => k.extractable = b,
                Attribute::AlwaysSensitive(b) => k.always_sensitive = b,
                Attribute::NeverExtractable(b) => k.never_extractable = b,
                Attribute::Encrypt(b) => k.encrypt = b,
                Attribute::Decrypt(b) => k.decrypt = b,
                Attribute::Wrap(b) => k.wrap = b,
                Attribute::Unwrap(b) => k.unwrap = b,
                Attribute::Sign(b) => k.sign = b,
                Attribute::Verify(b) => k.verify = b,
                Attribute::Derive(b) => k.derive = b,
                _ => {}
            }
        }
        // SoftHSM2 2.6 reports CKA_VALUE_LEN 0 for a key it unwrapped: an
        // imported KEK (when accepted) is then sized by its check value.
        let told = k.len == 16 || (k.len == 0 && accept_imported);
        if !k.aes || !told {
            return Err(Pkcs11Error::KekWrongSize {
                label: owned(),
                bytes: if k.aes { k.len } else { 0 },
            });
        }
        if !k.sensitive || k.extractable {
            return Err(Pkcs11Error::KekExposed { label: owned() });
        }
        if !k.token {
            return Err(Pkcs11Error::KekAttribute {
                label: owned(),
                attribute: "CKA_TOKEN",
            });
        }
        if !accept_imported {
            for (ok, attribute) in [
                (k.always_sensitive, "CKA_ALWAYS_SENSITIVE"),
                (k.never_extractable, "CKA_NEVER_EXTRACTABLE"),
            ] {
                if !ok {
                    return Err(Pkcs11Error::KekAttribute {
                        label: owned(),
                        attribute,
                    });
                }
            }
        }
        let may = role.usages(self.caps.unpack);
        for (has, allowed, usage) in [
            (k.encrypt, false, "CKA_ENCRYPT"),
            (k.sign, false, "CKA_SIGN"),
            (k.verify, false, "CKA_VERIFY"),
            (k.derive, false, "CKA_DERIVE"),
            (k.decrypt, may.decrypt, "CKA_DECRYPT"),
            (k.wrap, may.wrap, "CKA_WRAP"),
            (k.unwrap, may.unwrap, "CKA_UNWRAP"),
        ] {
            if has && !allowed {
                return Err(Pkcs11Error::KekUsageExceeds {
                    label: owned(),
                    usage,
                    role,
                });
            }
        }
        let stored = calls::get_attributes(session, handle, &[AttributeType::CheckValue])
            .ok()
            .and_then(|v| {
                v.into_iter().find_map(|a| match a {
                    Attribute::CheckValue(cv) => match cv.as_slice() {
                        [a, b, c] => Some(KeyCheckValue([*a, *b, *c])),
                        _ => None,
                    },
                    _ => None,
                })
            });
        let computed = if k.wrap {
            Some(self.kcv_by_wrap(session, handle)?)
        } else {
            None
        };
        let kcv = match (stored, computed) {
            (Some(a), Some(b)) if a != b => {
                return Err(Pkcs11Error::KekCheckValueMismatch { label: owned() });
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => match (role, pinned) {
                // A transport key only unwraps: its check value is not
                // needed for records.
                (KekRole::Transport, _) => KeyCheckValue([0; 3]),
                (_, Some(p)) => p,
                (_, None) => return Err(Pkcs11Error::KekCheckValueUnknown { label: owned() }),
            },
        };
        if let Some(p) = pinned
            && (stored.is_some() || computed.is_some())
            && p != kcv
        {
            return Err(Pkcs11Error::KekCheckValuePinned { label: owned() });
        }
        Ok(KekObject {
            label: owned(),
            role,
            handle: RwLock::new(handle),
            kcv,
        })
    }

    /// AES(KEK, 0)'s first three octets, by wrapping a zero key object
    /// under the KEK with the packaging mechanism (one block: ECB, or CBC
    /// with a zero IV).
    fn kcv_by_wrap(
        &self,
        s: &Session,
        kek: ObjectHandle,
    ) -> std::result::Result<KeyCheckValue, Pkcs11Error> {
        let zero = create_secret(s, zero_key_template(), &[0u8; KEY_LEN])?;
        let zero = SessionKey {
            session: s,
            handle: zero,
        };
        let block = calls::wrap_key(s, &self.package_mechanism(), kek, zero.handle)?;
        match block.as_slice() {
            [a, b, c, ..] => Ok(KeyCheckValue([*a, *b, *c])),
            _ => Err(Pkcs11Error::Failure(
                dlms_sec::error::ModuleFailure::BadOutput,
            )),
        }
    }

    fn package_mechanism(&self) -> Mechanism<'static> {
        match self.caps.package {
            PackagePath::WrapEcb => Mechanism::AesEcb,
            PackagePath::WrapCbcZeroIv => Mechanism::AesCbc([0; 16]),
        }
    }

    /// Unpacks `record` into a session object for `usage`, by the token's
    /// [`UnpackPath`] (by decryption to the host under a KEK that may not
    /// unwrap: the DCO Key object for AKs), and checks its check value (in the token, or on the
    /// host copy where the path decrypts to the host anyway).
    pub(crate) fn unpack_object<'s, K: DeviceKey>(
        &self,
        s: &'s Session,
        kek: &KekObject,
        record: &PackagedKey<K>,
        usage: Usage,
    ) -> Result<SessionKey<'s>> {
        let r = record.record();
        if r.kek_check_value() != kek.kcv {
            return Err(KeyError::WrongKek.into());
        }
        let ciphertext = r.ciphertext();
        // A KEK that may not unwrap (the DCO Key object for AKs) opens its
        // records by decrypting them to the host, whatever the token offers.
        let path = if kek.role.usages(self.caps.unpack).unwrap {
            self.caps.unpack
        } else {
            UnpackPath::HostDecrypt
        };
        let in_token = path != UnpackPath::HostDecrypt;
        let template = usage.template(in_token);
        let handle = match path {
            UnpackPath::UnwrapEcb => {
                calls::unwrap_key(s, &Mechanism::AesEcb, kek.handle(), &ciphertext, &template)
            }
            UnpackPath::UnwrapCbcZeroIv => calls::unwrap_key(
                s,
                &Mechanism::AesCbc([0; 16]),
                kek.handle(),
                &ciphertext,
                &template,
            ),
            UnpackPath::HostDecrypt => {
                let clear: Zeroizing<[u8; KEY_LEN]> = Zeroizing::new(
                    calls::decrypt(s, &Mechanism::AesEcb, kek.handle(), &ciphertext)
                        .map_err(|e| module_error(&e))?
                        .as_slice()
                        .try_into()
                        .map_err(|_| bad_output())?,
                );
                check_on_host(record, &clear)?;
                create_secret(s, template, clear.as_slice())
            }
        }
        .map_err(|e| module_error(&e))?;
        let key = SessionKey { session: s, handle };
        if in_token {
            check_in_token(s, key.handle, &r.id(), kek.kcv, &r.check_value())?;
        }
        Ok(key)
    }

    /// Decrypts a packaged AK into host memory and checks it (the AK enters
    /// suite 0's AAD in clear, which no standard mechanism can do with a
    /// key object). The returned key wipes itself on drop.
    pub(crate) fn unpack_ak(
        &self,
        s: &Session,
        kek: &KekObject,
        record: &PackagedKey<AuthenticationKey>,
    ) -> Result<Zeroizing<[u8; KEY_LEN]>> {
        let r = record.record();
        if r.kek_check_value() != kek.kcv {
            return Err(KeyError::WrongKek.into());
        }
        let clear = Zeroizing::new(
            calls::decrypt(s, &Mechanism::AesEcb, kek.handle(), &r.ciphertext())
                .map_err(|e| module_error(&e))?,
        );
        let bytes: Zeroizing<[u8; KEY_LEN]> =
            Zeroizing::new(clear.as_slice().try_into().map_err(|_| bad_output())?);
        record.check_key(&AuthenticationKey::from_bytes(*bytes))?;
        Ok(bytes)
    }

    /// Generates a key in the token (a session object that may be wrapped
    /// but never read) and packages it under `kek` as `id`.
    pub(crate) fn generate_packaged<'s, K: DeviceKey>(
        &self,
        s: &'s Session,
        kek: &KekObject,
        id: RecordId,
    ) -> Result<(SessionKey<'s>, PackagedKey<K>)> {
        if id.role != K::ROLE {
            return Err(KeyError::RoleMismatch {
                expected: K::ROLE,
                found: id.role,
            }
            .into());
        }
        id.check()?;
        // Encrypt: the record's check value is computed under it in the
        // token (the key never leaves it in clear).
        let mut template = Usage::TRANSFER.template(true);
        template.retain(|a| !matches!(a, Attribute::Class(_) | Attribute::KeyType(_)));
        template.push(Attribute::ValueLen(16.into()));
        let handle = calls::generate_key(s, &Mechanism::AesKeyGen, &template)
            .map_err(|e| module_error(&e))?;
        let key = SessionKey { session: s, handle };
        let wrapped = calls::wrap_key(s, &self.package_mechanism(), kek.handle(), key.handle)
            .map_err(|e| module_error(&e))?;
        let ciphertext: [u8; KEY_LEN] = wrapped.as_slice().try_into().map_err(|_| bad_output())?;
        let check = check_value_in_token(s, key.handle, &id, kek.kcv)?;
        let record = PackagedKey::from_parts(id, kek.kcv, &ciphertext, &check)?;
        Ok((key, record))
    }
}

/// AES(key, M)'s first 8 octets, computed in the token.
fn check_value_in_token(
    s: &Session,
    key: ObjectHandle,
    id: &RecordId,
    kcv: KeyCheckValue,
) -> Result<[u8; CHECK_VALUE_LEN]> {
    let block = Zeroizing::new(
        calls::encrypt(s, &Mechanism::AesEcb, key, &id.check_block(kcv))
            .map_err(|e| module_error(&e))?,
    );
    block
        .get(..CHECK_VALUE_LEN)
        .and_then(|c| c.try_into().ok())
        .ok_or_else(bad_output)
}

/// Checks a record against the clear key the host-decrypt path holds for
/// a moment anyway (so the session object needs no `CKA_ENCRYPT`).
fn check_on_host<K: DeviceKey>(record: &PackagedKey<K>, clear: &[u8; KEY_LEN]) -> Result<()> {
    use dlms_sec::key::{
        DedicatedKey, GlobalBroadcastEncryptionKey, GlobalUnicastEncryptionKey, KeyRole, MasterKey,
    };
    let r = *record.record();
    match K::ROLE {
        KeyRole::Master => r
            .typed::<MasterKey>()?
            .check_key(&MasterKey::from_bytes(*clear)),
        KeyRole::Authentication => r
            .typed::<AuthenticationKey>()?
            .check_key(&AuthenticationKey::from_bytes(*clear)),
        KeyRole::GlobalUnicastEncryption => r
            .typed::<GlobalUnicastEncryptionKey>()?
            .check_key(&GlobalUnicastEncryptionKey::from_bytes(*clear)),
        KeyRole::GlobalBroadcastEncryption => r
            .typed::<GlobalBroadcastEncryptionKey>()?
            .check_key(&GlobalBroadcastEncryptionKey::from_bytes(*clear)),
        KeyRole::Dedicated => r
            .typed::<DedicatedKey>()?
            .check_key(&DedicatedKey::from_bytes(*clear)),
    }
}

/// Compares a record's stored check value with the one the token computes
/// for the key object (constant time).
fn check_in_token(
    s: &Session,
    key: ObjectHandle,
    id: &RecordId,
    kcv: KeyCheckValue,
    stored: &[u8; CHECK_VALUE_LEN],
) -> Result<()> {
    let mut expected = check_value_in_token(s, key, id, kcv)?;
    let ok = bool::from(expected.ct_eq(stored));
    expected.zeroize();
    if ok {
        Ok(())
    } else {
        Err(KeyError::Corrupted.into())
    }
}

/// Whether the module creates a session key with the attributes `add`
/// puts on a plain template (the object is destroyed at once).
fn takes(s: &Session, add: impl FnOnce(&mut Vec<Attribute>)) -> bool {
    let mut t = zero_key_template();
    add(&mut t);
    t.push(Attribute::Value(vec![0; KEY_LEN]));
    match calls::create_object(s, &t) {
        Ok(h) => {
            let _ = calls::destroy_object(s, h);
            true
        }
        Err(_) => false,
    }
}

/// What a KEK's `CKA_UNWRAP_TEMPLATE` requires of every key it unwraps:
/// a sensitive session object that neither unwraps nor derives.
static UNWRAPPED: [Attribute; 4] = [
    Attribute::Token(false),
    Attribute::Sensitive(true),
    Attribute::Unwrap(false),
    Attribute::Derive(false),
];

/// `CKA_UNWRAP_TEMPLATE` (an array of `CK_ATTRIBUTE`), which `cryptoki`
/// has no variant for: the array is laid out field by field as the C
/// struct is (`CK_ULONG` type, pointer, `CK_ULONG` length, no padding on
/// the targets PKCS#11 runs on). The pointers are into `inner`, which is
/// `'static` and so outlives every call the attribute is passed to.
fn unwrap_template_attribute(inner: &'static [Attribute]) -> Attribute {
    const CKA_UNWRAP_TEMPLATE: cryptoki_sys::CK_ATTRIBUTE_TYPE = 0x4000_0212;
    let mut bytes = Vec::new();
    for a in inner {
        let c = cryptoki_sys::CK_ATTRIBUTE::from(a);
        bytes.extend_from_slice(&c.type_.to_ne_bytes());
        bytes.extend_from_slice(&(c.pValue as usize).to_ne_bytes());
        bytes.extend_from_slice(&c.ulValueLen.to_ne_bytes());
    }
    Attribute::VendorDefined((AttributeType::VendorDefined(CKA_UNWRAP_TEMPLATE), bytes))
}

/// A session key object that can only be wrapped (for check values by
/// wrapping: a zero key, or a check block).
fn zero_key_template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
    ]
}

/// Reads the token's mechanism flags.
fn probe(ctx: &Pkcs11, slot: Slot) -> std::result::Result<Capabilities, Pkcs11Error> {
    use cryptoki::mechanism::MechanismInfo;
    let info = |m: MechanismType| -> Option<MechanismInfo> { ctx.get_mechanism_info(slot, m).ok() };
    let ecb = info(MechanismType::AES_ECB);
    let cbc = info(MechanismType::AES_CBC);
    let need = |ok: bool, mechanism, purpose| {
        if ok {
            Ok(())
        } else {
            Err(Pkcs11Error::MechanismMissing { mechanism, purpose })
        }
    };
    need(
        ecb.as_ref().is_some_and(|i| i.encrypt() && i.decrypt()),
        "CKM_AES_ECB",
        "key check values and the AK",
    )?;
    need(
        info(MechanismType::AES_GCM).is_some_and(|i| i.encrypt() && i.decrypt()),
        "CKM_AES_GCM",
        "protecting APDUs",
    )?;
    need(
        info(MechanismType::AES_KEY_WRAP).is_some_and(|i| i.wrap()),
        "CKM_AES_KEY_WRAP",
        "key_transfer",
    )?;
    need(
        info(MechanismType::AES_KEY_GEN).is_some_and(|i| i.generate()),
        "CKM_AES_KEY_GEN",
        "generating keys",
    )?;
    let unpack = if ecb.as_ref().is_some_and(MechanismInfo::unwrap) {
        UnpackPath::UnwrapEcb
    } else if cbc.as_ref().is_some_and(MechanismInfo::unwrap) {
        UnpackPath::UnwrapCbcZeroIv
    } else {
        UnpackPath::HostDecrypt
    };
    let package = if ecb.as_ref().is_some_and(MechanismInfo::wrap) {
        PackagePath::WrapEcb
    } else if cbc.as_ref().is_some_and(MechanismInfo::wrap) {
        PackagePath::WrapCbcZeroIv
    } else {
        return Err(Pkcs11Error::MechanismMissing {
            mechanism: "CKM_AES_ECB or CKM_AES_CBC wrap",
            purpose: "packaging keys generated in the token",
        });
    };
    let keystream = if info(MechanismType::AES_CTR).is_some_and(|i| i.encrypt()) {
        KeystreamPath::Ctr
    } else {
        KeystreamPath::EcbCounterBlocks
    };
    Ok(Capabilities {
        unpack,
        package,
        keystream,
        allowed_mechanisms: false,
        unwrap_template: false,
    })
}

/// Administration: making, importing and provisioning KEKs and tokens.
impl Token {
    /// Generates a KEK for `role` inside the token: a sensitive,
    /// non-extractable AES-128 token object labelled `label` with the
    /// usages [`KekRole::usages`] gives on this token and nothing else
    /// limited to its mechanisms and with an unwrap template
    /// where the module takes them. Returns its check value. Create KEKs
    /// before the service starts: SoftHSM2 2.6 fails other threads' calls
    /// with `CKR_GENERAL_ERROR` while it writes a token object.
    ///
    /// # Errors
    /// [`Pkcs11Error::LabelTaken`]; module failures.
    pub fn create_kek(
        &self,
        label: &str,
        role: KekRole,
    ) -> std::result::Result<KeyCheckValue, Pkcs11Error> {
        let _admin = self.admin.lock().unwrap_or_else(PoisonError::into_inner);
        self.refuse_taken(label, role)?;
        let session = self.new_session()?;
        calls::generate_key(
            &session,
            &Mechanism::AesKeyGen,
            &self.kek_template(label, role, true),
        )?;
        self.give_back(session);
        Ok(self.find_kek(label, role, None)?.kcv)
    }

    /// Imports a KEK for `role` by unwrapping `wrapped` (RFC 3394,
    /// `CKM_AES_KEY_WRAP`) under the transport key labelled `transport`,
    /// inside the token: the KEK is never in clear outside a module. A
    /// key made by `C_UnwrapKey` is never `CKA_ALWAYS_SENSITIVE` nor
    /// `CKA_NEVER_EXTRACTABLE` (PKCS#11 says so), so providers take it
    /// only with [`Pkcs11Config::accept_imported_keks`]; the check here
    /// accepts it.
    ///
    /// # Errors
    /// [`Pkcs11Error::LabelTaken`]; [`Pkcs11Error::KekNotFound`] for the
    /// transport key; module failures (a wrong transport key fails the
    /// RFC 3394 integrity check).
    pub fn import_kek_wrapped(
        &self,
        label: &str,
        transport: &str,
        wrapped: &[u8],
        role: KekRole,
    ) -> std::result::Result<KeyCheckValue, Pkcs11Error> {
        let _admin = self.admin.lock().unwrap_or_else(PoisonError::into_inner);
        self.refuse_taken(label, role)?;
        // RFC 3394 adds 8 octets: anything else is not an AES-128 key.
        if wrapped.len() != 24 {
            return Err(Pkcs11Error::KekWrongSize {
                label: label.to_owned(),
                bytes: u64::try_from(wrapped.len().saturating_sub(8)).unwrap_or(0),
            });
        }
        let unwrap_key = self.find_kek(transport, KekRole::Transport, None)?.handle();
        let session = self.new_session()?;
        let template = self.kek_template(label, role, false);
        calls::unwrap_key(
            &session,
            &Mechanism::AesKeyWrap,
            unwrap_key,
            wrapped,
            &template,
        )?;
        let found = self.check_kek(&session, label, role, None, true);
        self.give_back(session);
        Ok(found?.kcv)
    }

    /// Imports the KEK of a signed package, refusing it unless every
    /// check passes, in this order: the octets parse
    /// ([`KekPackage::parse`]); the signature, the signer and the validity
    /// window at `now` (Unix seconds) verify ([`kek_package::verify`]);
    /// `guard` had not recorded the package id, and records it now; the
    /// label is free and the transport key is on the token; the token
    /// unwraps the KEK (RFC 3394) under a temporary label and computes its
    /// check value, which must equal the package's. Only then does the KEK
    /// get its label. A claimed id stays claimed whatever follows: a
    /// package is presented once, and a refused one is issued again under
    /// a new id. Returns the KEK's check value.
    ///
    /// # Errors
    /// Each refusal is a [`KekPackageError`]; after any of them no object
    /// carries the label (a KEK unwrapped before the check value was
    /// compared is destroyed).
    pub fn import_kek_package(
        &self,
        octets: &[u8],
        trust: &TrustAnchors,
        now: u64,
        guard: &mut dyn PackageIdGuard,
    ) -> std::result::Result<KeyCheckValue, KekPackageError> {
        let package = KekPackage::parse(octets)?;
        let verified = kek_package::verify(&package, trust, now)?;
        let c = &verified.package().contents;
        match guard.claim(&c.id).map_err(KekPackageError::Guard)? {
            Claim::Fresh => {}
            Claim::Seen => return Err(KekPackageError::Replayed { id: c.id }),
        }
        let _admin = self.admin.lock().unwrap_or_else(PoisonError::into_inner);
        self.refuse_taken(&c.label, c.role)?;
        let unwrap_key = self
            .find_kek(&c.transport, KekRole::Transport, None)?
            .handle();
        // Unwrapped under a label no provider looks for, renamed once its
        // check value matches.
        let pending = format!("{}.pending-{}", c.label, c.id);
        self.refuse_taken(&pending, c.role)?;
        let session = self.new_session()?;
        let result = (|| {
            let template = self.kek_template(&pending, c.role, false);
            let handle = calls::unwrap_key(
                &session,
                &Mechanism::AesKeyWrap,
                unwrap_key,
                &c.wrapped,
                &template,
            )
            .map_err(Pkcs11Error::from)?;
            let checked = self
                .check_kek(&session, &pending, c.role, None, true)
                .map_err(KekPackageError::from)
                .and_then(|found| {
                    if found.kcv == c.kcv {
                        Ok(found.kcv)
                    } else {
                        Err(KekPackageError::KcvMismatch {
                            package: c.kcv,
                            token: found.kcv,
                        })
                    }
                })
                .and_then(|kcv| {
                    calls::add(1);
                    session
                        .update_attributes(handle, &[Attribute::Label(c.label.as_bytes().to_vec())])
                        .map_err(|e| KekPackageError::Token(e.into()))?;
                    Ok(kcv)
                });
            if checked.is_err() {
                let _ = calls::destroy_object(&session, handle);
            }
            checked
        })();
        self.give_back(session);
        result
    }

    /// **Development only.** Imports a KEK given in clear, so tests and
    /// demonstrations can hold the same key in the token and in a software
    /// provider. The KEK's octets pass through host memory: never use this
    /// with a production key. The object is sensitive and non-extractable
    /// from its creation, with the usages of `role`.
    ///
    /// # Errors
    /// [`Pkcs11Error::LabelTaken`]; module failures.
    pub fn dangerous_import_kek_for_development(
        &self,
        label: &str,
        key: &[u8; KEY_LEN],
        role: KekRole,
    ) -> std::result::Result<KeyCheckValue, Pkcs11Error> {
        let _admin = self.admin.lock().unwrap_or_else(PoisonError::into_inner);
        self.refuse_taken(label, role)?;
        let session = self.new_session()?;
        create_secret(&session, self.kek_template(label, role, false), key)?;
        // Made from clear octets: never CKA_ALWAYS_SENSITIVE.
        let found = self.check_kek(&session, label, role, None, true);
        self.give_back(session);
        Ok(found?.kcv)
    }

    fn refuse_taken(&self, label: &str, role: KekRole) -> std::result::Result<(), Pkcs11Error> {
        match self.find_kek(label, role, None) {
            Err(Pkcs11Error::KekNotFound { .. }) => Ok(()),
            // A key is there, usable or not: the label is taken.
            Ok(_)
            | Err(
                Pkcs11Error::KekAmbiguous { .. }
                | Pkcs11Error::KekWrongSize { .. }
                | Pkcs11Error::KekExposed { .. }
                | Pkcs11Error::KekAttribute { .. }
                | Pkcs11Error::KekUsageExceeds { .. }
                | Pkcs11Error::KekCheckValueUnknown { .. }
                | Pkcs11Error::KekCheckValuePinned { .. }
                | Pkcs11Error::KekCheckValueMismatch { .. },
            ) => Err(Pkcs11Error::LabelTaken {
                label: label.to_owned(),
            }),
            Err(other) => Err(other),
        }
    }

    /// Attributes of a KEK token object for `role`: with its length when
    /// the token generates it, with its class and key type otherwise.
    fn kek_template(&self, label: &str, role: KekRole, generated: bool) -> Vec<Attribute> {
        let may = role.usages(self.caps.unpack);
        let mut t = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Encrypt(false),
            Attribute::Decrypt(may.decrypt),
            Attribute::Wrap(may.wrap),
            Attribute::Unwrap(may.unwrap),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
        ];
        if self.caps.allowed_mechanisms {
            t.push(Attribute::AllowedMechanisms(role.mechanisms()));
        }
        if self.caps.unwrap_template && may.unwrap && role != KekRole::Transport {
            t.push(unwrap_template_attribute(&UNWRAPPED));
        }
        if generated {
            t.push(Attribute::ValueLen(16.into()));
        } else {
            t.push(Attribute::Class(ObjectClass::SECRET_KEY));
            t.push(Attribute::KeyType(KeyType::AES));
        }
        t
    }
}

/// `C_CreateObject` of a secret key whose clear value is `value`; every
/// copy of the value in the template is wiped whatever the outcome.
fn create_secret(
    s: &Session,
    mut template: Vec<Attribute>,
    value: &[u8],
) -> cryptoki::error::Result<ObjectHandle> {
    template.push(Attribute::Value(value.to_vec()));
    let made = calls::create_object(s, &template);
    for a in &mut template {
        if let Attribute::Value(v) = a {
            v.zeroize();
        }
    }
    made
}

/// Initialises a token in the first free slot (SoftHSM2 keeps one free)
/// with `label`, the SO PIN and the user PIN: provisioning for tests and
/// demonstrations; production tokens are initialised by their owners.
///
/// # Errors
/// [`Pkcs11Error::Module`]; [`Pkcs11Error::TokenNotFound`] when no free
/// slot exists; module failures.
pub fn init_token(
    module: &Path,
    label: &str,
    so_pin: &Pin,
    user_pin: &Pin,
) -> std::result::Result<(), Pkcs11Error> {
    let ctx = context(module)?;
    let mut free = None;
    for slot in ctx.get_slots_with_token()? {
        if !ctx.get_token_info(slot)?.token_initialized() {
            free = Some(slot);
            break;
        }
    }
    let slot = free.ok_or(Pkcs11Error::TokenNotFound {
        label: "(a free slot)".to_owned(),
    })?;
    ctx.init_token(slot, &so_pin.0, label)?;
    let slot = find_slot(&ctx, label)?;
    let session = ctx.open_rw_session(slot)?;
    session.login(UserType::So, Some(&so_pin.0))?;
    session.init_pin(&user_pin.0)?;
    session.logout()?;
    Ok(())
}
