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

use crate::config::{Pin, Pkcs11Config};
use crate::error::{Pkcs11Error, bad_output, module_error, session_broken};

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

/// What the token offers, probed from its mechanism flags when it is
/// opened; an operator reads it to see which path their HSM takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// How records are unpacked.
    pub unpack: UnpackPath,
    /// How new keys are packaged.
    pub package: PackagePath,
    /// How encryption-only frames are ciphered.
    pub keystream: KeystreamPath,
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
        if let Ok(found) = token.find_kek(&self.label)
            && found.kcv == self.kcv
        {
            *self.handle.write().unwrap_or_else(PoisonError::into_inner) = found.handle();
        }
    }
}

/// What a session object made from a record may do.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Usage {
    /// AES-GCM, CTR and ECB (check value) under it.
    pub(crate) cipher: bool,
    /// Wrap other keys under it (an MK for key_transfer).
    pub(crate) wrap: bool,
    /// Be wrapped itself (a key on its way to a meter).
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

    fn template(self) -> Vec<Attribute> {
        vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(self.extractable),
            // ECB under the key computes the record's check value.
            Attribute::Encrypt(true),
            Attribute::Decrypt(self.cipher),
            Attribute::Wrap(self.wrap),
            Attribute::Unwrap(false),
        ]
    }
}

/// A session object destroyed when dropped.
pub(crate) struct SessionKey<'s> {
    session: &'s Session,
    pub(crate) handle: ObjectHandle,
}

impl Drop for SessionKey<'_> {
    fn drop(&mut self) {
        // Session objects also vanish when the session closes.
        let _ = self.session.destroy_object(self.handle);
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
        let token = Self {
            ctx,
            slot,
            label: config.token_label.clone(),
            pin: config.pin.0.clone(),
            idle: Mutex::new(Vec::new()),
            idle_max: config.idle_sessions,
            caps,
            admin: Mutex::new(()),
        };
        // Log in now, so a wrong PIN is an error here, not at first use.
        let session = token.new_session()?;
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

    /// Finds a KEK by label, checks it is a sensitive, non-extractable
    /// AES-128 key, and computes its check value in the token.
    pub(crate) fn find_kek(&self, label: &str) -> std::result::Result<KekObject, Pkcs11Error> {
        let session = self.new_session()?;
        let found = session.find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])?;
        let handle = match found.as_slice() {
            [] => {
                return Err(Pkcs11Error::KekNotFound {
                    label: label.to_owned(),
                });
            }
            [one] => *one,
            _ => {
                return Err(Pkcs11Error::KekAmbiguous {
                    label: label.to_owned(),
                });
            }
        };
        let attrs = session.get_attributes(
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::ValueLen,
                AttributeType::Sensitive,
                AttributeType::Extractable,
            ],
        )?;
        let (mut aes, mut len, mut sensitive, mut extractable) = (false, 0u64, false, true);
        for a in attrs {
            match a {
                Attribute::KeyType(t) => aes = t == KeyType::AES,
                Attribute::ValueLen(n) => len = u64::from(n),
                Attribute::Sensitive(b) => sensitive = b,
                Attribute::Extractable(b) => extractable = b,
                _ => {}
            }
        }
        // SoftHSM2 reports CKA_VALUE_LEN 0 for a key it unwrapped (the
        // import path checks the wrapped length instead): 0 is "not told".
        if !aes || !(len == 16 || len == 0) {
            return Err(Pkcs11Error::KekWrongSize {
                label: label.to_owned(),
                bytes: if aes { len } else { 0 },
            });
        }
        if !sensitive || extractable {
            return Err(Pkcs11Error::KekExposed {
                label: label.to_owned(),
            });
        }
        let block = session.encrypt(&Mechanism::AesEcb, handle, &[0u8; 16])?;
        let kcv = match block.as_slice() {
            [a, b, c, ..] => KeyCheckValue([*a, *b, *c]),
            _ => {
                return Err(Pkcs11Error::Failure(
                    dlms_sec::error::ModuleFailure::BadOutput,
                ));
            }
        };
        // Where the token keeps its own check value, it must agree.
        if let Ok(values) = session.get_attributes(handle, &[AttributeType::CheckValue]) {
            for v in values {
                if let Attribute::CheckValue(cv) = v
                    && !cv.is_empty()
                    && cv.as_slice() != kcv.0.as_slice()
                {
                    return Err(Pkcs11Error::KekCheckValueMismatch {
                        label: label.to_owned(),
                    });
                }
            }
        }
        self.give_back(session);
        Ok(KekObject {
            label: label.to_owned(),
            handle: RwLock::new(handle),
            kcv,
        })
    }

    /// Unpacks `record` into a session object for `usage`, by the token's
    /// [`UnpackPath`], and checks its check value in the token.
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
        let template = usage.template();
        let handle = match self.caps.unpack {
            UnpackPath::UnwrapEcb => {
                s.unwrap_key(&Mechanism::AesEcb, kek.handle(), &ciphertext, &template)
            }
            UnpackPath::UnwrapCbcZeroIv => s.unwrap_key(
                &Mechanism::AesCbc([0; 16]),
                kek.handle(),
                &ciphertext,
                &template,
            ),
            UnpackPath::HostDecrypt => {
                let clear = Zeroizing::new(
                    s.decrypt(&Mechanism::AesEcb, kek.handle(), &ciphertext)
                        .map_err(|e| module_error(&e))?,
                );
                if clear.len() != KEY_LEN {
                    return Err(bad_output());
                }
                create_secret(s, template, &clear)
            }
        }
        .map_err(|e| module_error(&e))?;
        let key = SessionKey { session: s, handle };
        check_in_token(s, key.handle, &r.id(), kek.kcv, &r.check_value())?;
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
    ) -> Result<AuthenticationKey> {
        let r = record.record();
        if r.kek_check_value() != kek.kcv {
            return Err(KeyError::WrongKek.into());
        }
        let clear = Zeroizing::new(
            s.decrypt(&Mechanism::AesEcb, kek.handle(), &r.ciphertext())
                .map_err(|e| module_error(&e))?,
        );
        let bytes: Zeroizing<[u8; KEY_LEN]> =
            Zeroizing::new(clear.as_slice().try_into().map_err(|_| bad_output())?);
        let ak = AuthenticationKey::from_bytes(*bytes);
        record.check_key(&ak)?;
        Ok(ak)
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
        let mut template = Usage::TRANSFER.template();
        template.retain(|a| !matches!(a, Attribute::Class(_) | Attribute::KeyType(_)));
        template.push(Attribute::ValueLen(16.into()));
        let handle = s
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(|e| module_error(&e))?;
        let key = SessionKey { session: s, handle };
        let mechanism = match self.caps.package {
            PackagePath::WrapEcb => Mechanism::AesEcb,
            PackagePath::WrapCbcZeroIv => Mechanism::AesCbc([0; 16]),
        };
        let wrapped = s
            .wrap_key(&mechanism, kek.handle(), key.handle)
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
        s.encrypt(&Mechanism::AesEcb, key, &id.check_block(kcv))
            .map_err(|e| module_error(&e))?,
    );
    block
        .get(..CHECK_VALUE_LEN)
        .and_then(|c| c.try_into().ok())
        .ok_or_else(bad_output)
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
    })
}

/// Administration: making, importing and provisioning KEKs and tokens.
impl Token {
    /// Generates a KEK inside the token: a sensitive, non-extractable
    /// AES-128 token object labelled `label`. Returns its
    /// check value. Create KEKs before the service starts: SoftHSM2 2.6
    /// fails other threads' calls with `CKR_GENERAL_ERROR` while it writes
    /// a token object (KEK administration is serialised here, but other
    /// work on the token is not held back for it).
    ///
    /// # Errors
    /// [`Pkcs11Error::LabelTaken`]; module failures.
    pub fn create_kek(&self, label: &str) -> std::result::Result<KeyCheckValue, Pkcs11Error> {
        let _admin = self.admin.lock().unwrap_or_else(PoisonError::into_inner);
        self.refuse_taken(label)?;
        let session = self.new_session()?;
        session.generate_key(&Mechanism::AesKeyGen, &kek_template(label, true))?;
        self.give_back(session);
        Ok(self.find_kek(label)?.kcv)
    }

    /// Imports a KEK by unwrapping `wrapped` (RFC 3394, `CKM_AES_KEY_WRAP`)
    /// under the transport key labelled `transport`, inside the token: the
    /// KEK is never in clear outside a module.
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
    ) -> std::result::Result<KeyCheckValue, Pkcs11Error> {
        let _admin = self.admin.lock().unwrap_or_else(PoisonError::into_inner);
        self.refuse_taken(label)?;
        // RFC 3394 adds 8 octets: anything else is not an AES-128 key.
        if wrapped.len() != 24 {
            return Err(Pkcs11Error::KekWrongSize {
                label: label.to_owned(),
                bytes: u64::try_from(wrapped.len().saturating_sub(8)).unwrap_or(0),
            });
        }
        let unwrap_key = self.find_kek(transport)?.handle();
        let session = self.new_session()?;
        let template = kek_template(label, false);
        session.unwrap_key(&Mechanism::AesKeyWrap, unwrap_key, wrapped, &template)?;
        self.give_back(session);
        Ok(self.find_kek(label)?.kcv)
    }

    /// **Development only.** Imports a KEK given in clear, so tests and
    /// demonstrations can hold the same key in the token and in a software
    /// provider. The KEK's octets pass through host memory: never use this
    /// with a production key. The object is still sensitive and
    /// non-extractable once created. `unwrap` also lets it act as a
    /// transport key for [`Self::import_kek_wrapped`].
    ///
    /// # Errors
    /// [`Pkcs11Error::LabelTaken`]; module failures.
    pub fn dangerous_import_kek_for_development(
        &self,
        label: &str,
        key: &[u8; KEY_LEN],
    ) -> std::result::Result<KeyCheckValue, Pkcs11Error> {
        let _admin = self.admin.lock().unwrap_or_else(PoisonError::into_inner);
        self.refuse_taken(label)?;
        let session = self.new_session()?;
        create_secret(&session, kek_template(label, false), key)?;
        self.give_back(session);
        Ok(self.find_kek(label)?.kcv)
    }

    fn refuse_taken(&self, label: &str) -> std::result::Result<(), Pkcs11Error> {
        match self.find_kek(label) {
            Err(Pkcs11Error::KekNotFound { .. }) => Ok(()),
            // A key is there, usable or not: the label is taken.
            Ok(_)
            | Err(
                Pkcs11Error::KekAmbiguous { .. }
                | Pkcs11Error::KekWrongSize { .. }
                | Pkcs11Error::KekExposed { .. }
                | Pkcs11Error::KekCheckValueMismatch { .. },
            ) => Err(Pkcs11Error::LabelTaken {
                label: label.to_owned(),
            }),
            Err(other) => Err(other),
        }
    }
}

/// Attributes of a KEK token object: with its length when the token
/// generates it, with its class and key type when it is imported.
fn kek_template(label: &str, generated: bool) -> Vec<Attribute> {
    let mut t = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
    ];
    if generated {
        t.push(Attribute::ValueLen(16.into()));
    } else {
        t.push(Attribute::Class(ObjectClass::SECRET_KEY));
        t.push(Attribute::KeyType(KeyType::AES));
    }
    t
}

/// `C_CreateObject` of a secret key whose clear value is `value`; every
/// copy of the value in the template is wiped whatever the outcome.
fn create_secret(
    s: &Session,
    mut template: Vec<Attribute>,
    value: &[u8],
) -> cryptoki::error::Result<ObjectHandle> {
    template.push(Attribute::Value(value.to_vec()));
    let made = s.create_object(&template);
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
