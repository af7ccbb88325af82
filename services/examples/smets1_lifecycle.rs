//! The main demonstration: a DCO, an S1SP and a simulated SMETS1 meter with
//! five clients, through the key lifecycle of the SMETS1 key management
//! policy. Every step checks what it shows; the program exits non-zero if
//! any step does not behave as stated.
//!
//! Their state lives in a database: the S1SP's packaged records, device
//! registry, the meter's receive floors and campaign progress, the DCO's
//! send counters (one per key) and the audit chain. By default that is a
//! SQLite file, `target/dlms-sec-demo.sqlite`, made on the first run;
//! `--database URL` names another (`sqlite://PATH` or `postgres://…`).
//! Run twice against one database, the second run finds the devices the
//! first left, re-keys them in a compromise campaign and shows that every
//! counter goes on from where the last run's claims ended.
//!
//! The KEKs and the audit key stand in for an HSM's: they are kept beside
//! the database in a file of their own (`…​.keys`, owner-only), never in it.
//!
//! Run: `cargo run --release -p dlms-sec-services --example smets1_lifecycle
//! [-- --database URL]`

#![allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "a demonstration: fixed buffers and small counts"
)]

mod story;

use std::path::PathBuf;
use std::process::ExitCode;

use dlms_sec::audit::{AuditSink, Recorder, Timestamp};
use dlms_sec::counter::SendCounter;
use dlms_sec::key::package::Packager;
use dlms_sec::key::{
    AuditKey, AuthenticationKey, DcoKey, GlobalUnicastEncryptionKey, KeyRole, MasterKey, SharedKey,
};
use dlms_sec::keystore::{KeySlot, KeyStore};
use dlms_sec::meter::key_transfer::SecuritySetupKeys;
use dlms_sec::provider::{SoftwareDco, SoftwareS1sp};
use dlms_sec::types::Client;
use dlms_sec::wire::KeyKind;
use dlms_sec::{Error, SecurityPolicy};
use dlms_sec_meter_sim::Meter;
use dlms_sec_services::counters::PerKeyCounters;
use dlms_sec_services::dco::Dco;
use dlms_sec_services::registry::Registry;
use dlms_sec_services::s1sp::{RotationContext, S1sp, Scope};
use dlms_sec_store::{DatabaseAuditSink, Store, verify_audit};
use serde::{Deserialize, Serialize};
use story::step;

/// The workspace's `target/`.
fn target_dir() -> PathBuf {
    let services = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    services.parent().unwrap_or(services).join("target")
}

/// `--database URL`, or the default SQLite file.
fn database_url() -> Result<String, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(format!(
            "sqlite://{}",
            target_dir().join("dlms-sec-demo.sqlite").display()
        )),
        [flag, url] if flag == "--database" => Ok(url.clone()),
        _ => Err("usage: smets1_lifecycle [--database sqlite://PATH | postgres://…]".into()),
    }
}

/// Where the demonstration's stand-in HSM keeps its keys for `url`.
fn keys_path(url: &str) -> PathBuf {
    match url.strip_prefix("sqlite://") {
        Some(path) => PathBuf::from(format!("{path}.keys")),
        None => target_dir().join("dlms-sec-demo-postgres.keys"),
    }
}

/// The stand-in HSM's keys, hex.
#[derive(Serialize, Deserialize)]
struct DemoKeys {
    dco_key: String,
    shared_key: String,
    audit_key: String,
}

struct Keys {
    dco: DcoKey,
    shared: SharedKey,
    audit: AuditKey,
}

fn hex16(s: &str) -> Option<[u8; 16]> {
    let v = hex::decode(s).ok()?;
    v.try_into().ok()
}

impl Keys {
    fn generate() -> dlms_sec::Result<Self> {
        let mut rng = getrandom::SysRng;
        Ok(Self {
            dco: DcoKey::generate(&mut rng)?,
            shared: SharedKey::generate(&mut rng)?,
            audit: AuditKey::generate(&mut rng)?,
        })
    }

    fn load(path: &PathBuf) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: {e} (the keys of this database)", path.display()))?;
        let k: DemoKeys = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        match (hex16(&k.dco_key), hex16(&k.shared_key), hex16(&k.audit_key)) {
            (Some(d), Some(s), Some(a)) => Ok(Self {
                dco: DcoKey::from_bytes(d),
                shared: SharedKey::from_bytes(s),
                audit: AuditKey::from_bytes(a),
            }),
            _ => Err(format!("{}: not a key file", path.display())),
        }
    }

    fn save(&self, path: &PathBuf) -> Result<(), String> {
        let k = DemoKeys {
            dco_key: hex::encode(self.dco.dangerous_expose_bytes()),
            shared_key: hex::encode(self.shared.dangerous_expose_bytes()),
            audit_key: hex::encode(self.audit.dangerous_expose_bytes()),
        };
        let text = serde_json::to_string(&k).map_err(|e| e.to_string())?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|e| e.to_string())
    }
}

fn main() -> ExitCode {
    match demo() {
        Ok(result) => story::report(result),
        Err(e) => {
            eprintln!("demonstration failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> Result<dlms_sec::Result<u32>, String> {
    let url = database_url()?;
    let store = Store::open(&url).map_err(|e| format!("{url}: {e}"))?;
    let keys_path = keys_path(&url);
    let found = store.device_count().map_err(|e| e.to_string())?;
    let keys = if found == 0 {
        let keys = Keys::generate().map_err(|e| e.to_string())?;
        keys.save(&keys_path)?;
        keys
    } else {
        Keys::load(&keys_path)?
    };
    let mut rng = getrandom::SysRng;
    let mut audit = DatabaseAuditSink::open(&store, &keys.audit, &mut rng)
        .map_err(|e| format!("audit table: {e}"))?;
    println!("== database: {url}");
    let result = if found == 0 {
        story::run(
            SoftwareDco::new(&keys.dco, &keys.shared),
            SoftwareS1sp::new(&keys.shared),
            &SoftwareDco::new(&keys.dco, &keys.shared),
            "software (both KEKs in process memory)",
            story::State {
                keys: &store,
                registry: &store,
                counters: &store,
            },
            &mut audit,
        )
    } else {
        println!(
            "resumed: found {found} device(s) in the database, with their keys, counters, \
             floors and audit chain from the last run"
        );
        again(&store, &keys, &mut audit)
    };
    Ok(result.map(|failures| failures + check_audit(&store, &keys.audit)))
}

/// The R-20 step over the audit table.
fn check_audit(store: &Store, key: &AuditKey) -> u32 {
    let mut failures = 0;
    println!("\n== R-20: the audit chain in the database");
    match verify_audit(store, key) {
        Ok(head) => step(
            head.count > 0,
            &format!("{} records, MAC chain verifies", head.count),
            &mut failures,
        ),
        Err(e) => step(false, &format!("chain broken: {e}"), &mut failures),
    }
    failures
}

/// The meter as its flash would have it after the last run: its keys are
/// the active records (which the demonstration's stand-in factory can
/// unpack, holding the KEKs), its counter the one in the database.
fn rebuild_meter<'s>(store: &'s Store, keys: &Keys) -> dlms_sec::Result<Meter<&'s Store>> {
    let device = story::DEVICE;
    let by_dco = Packager::new(&keys.dco);
    let by_shared = Packager::new(&keys.shared);
    let active = |client, role| {
        KeyStore::active(
            &store,
            &KeySlot {
                device,
                client,
                role,
            },
        )
    };
    let mk = by_dco.unpackage(&active(None, KeyRole::Master)?.typed::<MasterKey>()?)?;
    let registration = Registry::registration(&store, &device)?
        .ok_or(Error::Misuse("the device is not registered"))?;
    let counter = SendCounter::resume(
        story::meter_counter_key(device),
        story::RESERVE_AHEAD,
        store,
    )?;
    let mut meter = Meter::new(
        device,
        story::DCO_TITLE,
        mk,
        counter,
        registration.capabilities,
    );
    for client in Client::KEYED {
        let ak = by_dco.unpackage(
            &active(Some(client), KeyRole::Authentication)?.typed::<AuthenticationKey>()?,
        )?;
        let guek = by_shared.unpackage(
            &active(Some(client), KeyRole::GlobalUnicastEncryption)?
                .typed::<GlobalUnicastEncryptionKey>()?,
        )?;
        meter.provision(
            client,
            SecuritySetupKeys::new(guek, ak),
            SecurityPolicy::AuthenticatedEncrypted,
        )?;
    }
    Ok(meter)
}

/// The second and later runs: the devices found are re-keyed in a
/// compromise campaign, and commands go through under the new keys.
fn again(store: &Store, keys: &Keys, audit: &mut impl AuditSink) -> dlms_sec::Result<u32> {
    let mut failures = 0;
    let device = story::DEVICE;
    let now = Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    let dco = Dco::new(SoftwareDco::new(&keys.dco, &keys.shared), story::DCO_TITLE);
    let mut s1sp = S1sp::with_registry(store, SoftwareS1sp::new(&keys.shared), store, "s1sp-1");
    let mut link = story::Link::new(rebuild_meter(store, keys)?);
    let mut counters = PerKeyCounters::new(store, story::RESERVE_AHEAD);
    let management = |generation| {
        dlms_sec::counter::CounterKey::new(
            story::DCO_TITLE,
            device,
            Client::Management,
            KeyKind::GlobalUnicast,
            generation,
        )
    };
    let (_, guek) = s1sp.active_records(device, Client::Management)?;
    let generation = guek.id().generation;
    let before = store
        .counter_ceiling(&management(generation))
        .map_err(|e| e.to_key_error())?;
    step(
        before.is_some(),
        &format!(
            "the DCO's counter of the management GUEK (generation {generation}) is in the \
             database: every value below {} may have been used",
            before.unwrap_or(0)
        ),
        &mut failures,
    );

    println!("\n== R-10: a compromise campaign over every device found");
    {
        let mut cx = RotationContext {
            dco: &dco,
            link: &mut link,
            counters: &mut counters,
            audit: Recorder::new(&mut *audit, now),
            rng: &mut getrandom::SysRng,
        };
        let id = format!("compromise-{}", now.0);
        let report = s1sp.campaign(&mut cx, &id, Scope::All)?;
        println!(
            "  campaign {id}: {} attempted, {} activated, {} pending, {} failed",
            report.attempted,
            report.activated,
            report.pending,
            report.failed.len()
        );
        step(
            report.activated == report.attempted && report.attempted >= 4,
            "every keyed client re-keyed; the meter answered under the new keys",
            &mut failures,
        );
    }
    let after = store
        .counter_ceiling(&management(generation))
        .map_err(|e| e.to_key_error())?;
    step(
        after > before,
        &format!(
            "the key_transfer went out under values from {} on: none the last run claimed",
            before.unwrap_or(0)
        ),
        &mut failures,
    );

    println!("\n== protected get per client under the new keys");
    let mut cx = RotationContext {
        dco: &dco,
        link: &mut link,
        counters: &mut counters,
        audit: Recorder::new(&mut *audit, now),
        rng: &mut getrandom::SysRng,
    };
    for client in Client::KEYED {
        let get = [
            0xC0, 0x01, 0xC1, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0xFF, 0x02, 0x00,
        ];
        let mut answer = [0u8; 64];
        let n = s1sp.command(&mut cx, device, client, &get, &mut answer)?;
        step(
            answer[0] == 0xC4 && answer[..n].ends_with(device.as_bytes()),
            &format!("{}: get-request answered", client.name()),
            &mut failures,
        );
    }
    Ok(failures)
}
