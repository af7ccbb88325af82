//! A throwaway token for tests, the bench and the demonstration.
//!
//! The module is SoftHSM2 unless `DLMS_PKCS11_MODULE` names another
//! (`.ci/kryoptic.sh` prints the settings for kryoptic). For SoftHSM2,
//! `SOFTHSM2_CONF` comes from `.cargo/config.toml` (`target/softhsm/`);
//! this creates the configuration and token directory if missing, then
//! one token per process (SoftHSM2 reads its token directory when the
//! module is initialised, so the token is made through the module itself).
//! A module with a fixed set of slots has its tokens re-initialised once
//! the test process that made them has ended. KEKs get labels unique
//! within the process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use dlms_sec::key::{DcoKey, SharedKey};
use dlms_sec::provider::SoftwareDco;
use dlms_sec_pkcs11::{HsmDco, HsmS1sp, KekRole, Pin, Pkcs11Config, Token, init_token};

pub const USER_PIN: &str = "dlms-user-1234";
const SO_PIN: &str = "dlms-so-5678";

/// The SoftHSM2 module.
pub fn module() -> PathBuf {
    std::env::var_os("DLMS_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
}

/// The module's short name from its file name (`libsofthsm2.so`:
/// "softhsm2", `libkryoptic_pkcs11.so`: "kryoptic").
pub fn module_name() -> String {
    let m = module();
    let stem = m.file_stem().and_then(|s| s.to_str()).unwrap_or("pkcs11");
    let stem = stem.strip_prefix("lib").unwrap_or(stem);
    stem.strip_suffix("_pkcs11").unwrap_or(stem).to_owned()
}

/// Writes the SoftHSM2 configuration `SOFTHSM2_CONF` names, if missing.
fn ensure_conf() {
    let conf = PathBuf::from(std::env::var_os("SOFTHSM2_CONF").expect(
        "SOFTHSM2_CONF is unset: run through cargo (.cargo/config.toml sets it) or set it",
    ));
    let dir = conf.parent().expect("a directory for the SoftHSM2 store");
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).expect("create the SoftHSM2 token directory");
    if !conf.exists() {
        let text = format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        );
        std::fs::write(&conf, text).expect("write softhsm2.conf");
    }
    // Tokens of earlier runs: keep the store small.
    if let Ok(entries) = std::fs::read_dir(&tokens) {
        for e in entries.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600);
            if old {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    assert!(
        module().exists(),
        "SoftHSM2 is not installed ({}): apt-get install softhsm2, or set DLMS_PKCS11_MODULE",
        module().display()
    );
}

/// The label of this process's token.
pub fn token_label() -> &'static str {
    static LABEL: OnceLock<String> = OnceLock::new();
    LABEL.get_or_init(|| {
        ensure_conf();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let label = format!("dlms-{}-{nanos}", std::process::id());
        match init_token(
            &module(),
            &label,
            &Pin::new(SO_PIN.to_owned()),
            &Pin::new(USER_PIN.to_owned()),
        ) {
            Ok(()) => {}
            // A module with a fixed set of slots (kryoptic): take over the
            // token of a test process that has ended.
            Err(dlms_sec_pkcs11::Pkcs11Error::TokenNotFound { .. }) => reuse_slot(&label),
            Err(e) => panic!("initialise a token: {e}"),
        }
        label
    })
}

/// Re-initialises, as `label`, a token this support made for a process
/// that no longer runs (its label is `dlms-<pid>-…`).
fn reuse_slot(label: &str) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;
    let ctx = Pkcs11::new(module()).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let ended = |l: &str| {
        l.strip_prefix("dlms-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ended(ctx.get_token_info(*s).unwrap().label()))
        .expect("no free slot, and no token of an ended test process to take over");
    ctx.init_token(slot, &AuthPin::new(SO_PIN.into()), label)
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    session
        .login(UserType::So, Some(&AuthPin::new(SO_PIN.into())))
        .unwrap();
    session.init_pin(&AuthPin::new(USER_PIN.into())).unwrap();
    session.logout().unwrap();
}

/// A configuration for this process's token. It accepts imported KEKs:
/// the tests import theirs in clear, to hold them in software as well.
pub fn config() -> Pkcs11Config {
    let mut c = Pkcs11Config::new(module(), token_label(), Pin::new(USER_PIN.to_owned()));
    c.accept_imported_keks = true;
    c
}

/// This process's token, opened once (with [`config`]).
pub fn token() -> Arc<Token> {
    static TOKEN: OnceLock<Arc<Token>> = OnceLock::new();
    Arc::clone(TOKEN.get_or_init(|| Arc::new(Token::open(&config()).expect("open the token"))))
}

/// The same token opened with the default policy: imported KEKs refused.
pub fn strict_token() -> Arc<Token> {
    static TOKEN: OnceLock<Arc<Token>> = OnceLock::new();
    Arc::clone(TOKEN.get_or_init(|| {
        let mut c = config();
        c.accept_imported_keks = false;
        Arc::new(Token::open(&c).expect("open the token"))
    }))
}

/// A label not used before in this process.
pub fn fresh_label(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Random key octets from the operating system.
pub fn random_key() -> [u8; 16] {
    let mut k = [0u8; 16];
    getrandom::fill(&mut k).unwrap();
    k
}

/// A DCO whose KEKs are token objects, and a software DCO holding the same
/// KEKs (imported with the development helper so both can be compared).
pub struct Pair {
    pub hsm: HsmDco,
    pub software: SoftwareDco,
    pub dco_label: String,
    pub shared_label: String,
    pub dco_key: [u8; 16],
    pub shared_key: [u8; 16],
}

/// Held for the whole of each test that touches the token: SoftHSM2 2.6
/// fails calls (CKR_GENERAL_ERROR) that run while another thread writes a
/// token object, and the tests create KEKs as they go. (A service creates
/// its KEKs once, before it starts; the threads test runs its threads
/// without writing token objects.)
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn pair() -> Pair {
    let token = token();
    let (dco_key, shared_key) = (random_key(), random_key());
    let dco_label = fresh_label("dco");
    let shared_label = fresh_label("shared");
    token
        .dangerous_import_kek_for_development(&dco_label, &dco_key, KekRole::Dco)
        .unwrap();
    token
        .dangerous_import_kek_for_development(&shared_label, &shared_key, KekRole::Shared)
        .unwrap();
    let hsm = HsmDco::on_token(token, &dco_label, &shared_label).unwrap();
    let software = SoftwareDco::new(
        &DcoKey::from_bytes(dco_key),
        &SharedKey::from_bytes(shared_key),
    );
    Pair {
        hsm,
        software,
        dco_label,
        shared_label,
        dco_key,
        shared_key,
    }
}

/// The S1SP's provider on the same Shared Key as `pair`.
pub fn s1sp(pair: &Pair) -> HsmS1sp {
    HsmS1sp::on_token(token(), &pair.shared_label).unwrap()
}

pub mod suite;

/// A second handle on the module, as another application would have.
pub fn raw_session() -> cryptoki::session::Session {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    // The token first: making it may re-initialise a listed slot.
    let label = token_label();
    let ctx = Pkcs11::new(module()).unwrap();
    let _ = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == label)
        .unwrap();
    let s = ctx.open_rw_session(slot).unwrap();
    let _ = s.login(
        cryptoki::session::UserType::User,
        Some(&cryptoki::types::AuthPin::new(USER_PIN.into())),
    );
    s
}

/// The handle of the one object labelled `label`.
pub fn object(s: &cryptoki::session::Session, label: &str) -> cryptoki::object::ObjectHandle {
    let found = s
        .find_objects(&[cryptoki::object::Attribute::Label(
            label.as_bytes().to_vec(),
        )])
        .unwrap();
    match found.as_slice() {
        [one] => *one,
        other => panic!("{} objects labelled {label}", other.len()),
    }
}

/// A packaged AK and GUEK of one client, made by `reference`.
#[derive(Clone, Copy)]
pub struct CommandRecords {
    pub ak: dlms_sec::key::package::PackagedKey<dlms_sec::key::AuthenticationKey>,
    pub guek: dlms_sec::key::package::PackagedKey<dlms_sec::key::GlobalUnicastEncryptionKey>,
}

impl CommandRecords {
    pub fn new(reference: &SoftwareDco) -> Self {
        use dlms_sec::key::KeyRole;
        use dlms_sec::provider::CryptoProvider;
        let mut rng = getrandom::SysRng;
        Self {
            ak: reference
                .generate(&mut rng, suite::id(KeyRole::Authentication, 0))
                .unwrap(),
            guek: reference
                .generate(&mut rng, suite::id(KeyRole::GlobalUnicastEncryption, 0))
                .unwrap(),
        }
    }

    /// The command keys, under the GUEK.
    pub fn keys(&self) -> dlms_sec::provider::CommandKeys<'_> {
        dlms_sec::provider::CommandKeys {
            ak: &self.ak,
            encryption: dlms_sec::provider::EncryptionRecord::GlobalUnicast(&self.guek),
        }
    }
}
