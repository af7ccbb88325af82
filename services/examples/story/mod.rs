//! The SMETS1 lifecycle story of the main demonstration, generic over the
//! DCO's and the S1SP's crypto providers: `examples/smets1_lifecycle.rs`
//! runs it on the software providers, `pkcs11/examples/smets1_lifecycle_hsm.rs`
//! on SoftHSM2 through PKCS#11. Every step checks what it shows.

#![allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "a demonstration: fixed buffers and small counts"
)]

use dlms_sec::audit::{AuditSink, Recorder, Timestamp};
use dlms_sec::counter::{CounterKey, CounterPersistence, SendCounter};
use dlms_sec::key::package::{PackagedRecord, RecordId};
use dlms_sec::key::{
    AuditKey, AuthenticationKey, GlobalUnicastEncryptionKey, KeyRole, MasterKey, SharedKey,
};
use dlms_sec::keystore::{KeySlot, KeyStore};
use dlms_sec::meter::DeviceCapabilities;
use dlms_sec::meter::key_transfer::SecuritySetupKeys;
use dlms_sec::provider::{CryptoProvider, DcoProvider, SoftwareDco};
use dlms_sec::types::Client;
use dlms_sec::wire::KeyKind;
use dlms_sec::{Error, SecurityPolicy, SystemTitle};
use dlms_sec_meter_sim::Meter;
use dlms_sec_services::counters::PerKeyCounters;
use dlms_sec_services::dco::Dco;
use dlms_sec_services::jsonl::verify;
use dlms_sec_services::registry::Registry;
use dlms_sec_services::s1sp::{MeterLink, RotationContext, RotationOutcome, S1sp, Scope};
use rand_core::TryRng;

const DAY: u64 = 24 * 3600;

/// The story's meter.
pub const DEVICE: SystemTitle = SystemTitle::new(*b"GBM\x00\x00\x01\x23\x45");

/// The DCO's system title.
pub const DCO_TITLE: SystemTitle = SystemTitle::new(*b"DCO\x00\x00\x00\x00\x01");

/// Values each key's counter claims per write.
pub const RESERVE_AHEAD: core::num::NonZeroU32 = core::num::NonZeroU32::new(64).unwrap();

/// The simulated radio link to one meter, which can lose the next answer,
/// or (a man in the middle) hold an answer back and release it in place of
/// a later one.
pub struct Link<P: CounterPersistence> {
    meter: Meter<P>,
    lose_next_answer: bool,
    hold_next_answer: bool,
    release_instead_of_next: bool,
    held: Option<Vec<u8>>,
    last_request: Vec<u8>,
}

impl<P: CounterPersistence> Link<P> {
    /// A link that delivers every frame.
    pub const fn new(meter: Meter<P>) -> Self {
        Self {
            meter,
            lose_next_answer: false,
            hold_next_answer: false,
            release_instead_of_next: false,
            held: None,
            last_request: Vec::new(),
        }
    }
}

impl<P: CounterPersistence> MeterLink for Link<P> {
    fn exchange(
        &mut self,
        _device: SystemTitle,
        client: Client,
        request: &mut [u8],
        response: &mut [u8],
    ) -> dlms_sec::Result<usize> {
        self.last_request = request.to_vec();
        if core::mem::take(&mut self.release_instead_of_next)
            && let Some(held) = self.held.take()
        {
            // The request is dropped; the held answer comes back instead.
            let out = response
                .get_mut(..held.len())
                .ok_or(Error::BufferTooSmall {
                    required: held.len(),
                })?;
            out.copy_from_slice(&held);
            return Ok(held.len());
        }
        let (n, _) = self.meter.handle(client, request, response)?;
        if core::mem::take(&mut self.hold_next_answer) {
            self.held = Some(response[..n].to_vec());
            return Err(Error::Misuse("answer held back on the link"));
        }
        if core::mem::take(&mut self.lose_next_answer) {
            return Err(Error::Misuse("answer lost on the link"));
        }
        Ok(n)
    }
}

pub fn step(ok: bool, what: &str, failures: &mut u32) {
    println!("  [{}] {what}", if ok { " ok " } else { "FAIL" });
    if !ok {
        *failures += 1;
    }
}

/// Where the S1SP and the DCO keep their state: key records, the
/// registry, and the counter records (the DCO's per key and the simulated
/// meter's own).
pub struct State<K, G, C> {
    /// The S1SP's key records.
    pub keys: K,
    /// The S1SP's registry.
    pub registry: G,
    /// Counter records.
    pub counters: C,
}

/// The meter's own send counter record.
pub fn meter_counter_key(device: SystemTitle) -> CounterKey {
    CounterKey::own(device, Client::Management, KeyKind::GlobalUnicast, 0)
}

#[allow(clippy::too_many_lines, reason = "one linear story")]
pub fn run<D, S, K, G, C, A>(
    dco_provider: D,
    s1sp_provider: S,
    factory: &SoftwareDco,
    title: &str,
    state: State<K, G, C>,
    audit: &mut A,
) -> dlms_sec::Result<u32>
where
    D: DcoProvider,
    S: CryptoProvider<SharedKey>,
    K: KeyStore,
    G: Registry,
    C: CounterPersistence + Clone,
    A: AuditSink,
{
    let mut failures = 0;
    let mut rng = getrandom::SysRng;
    let device = DEVICE;
    let dco_title = DCO_TITLE;
    let t0 = Timestamp(1_795_000_000);

    println!(
        "== set-up: DCO (DCO Key + Shared Key), S1SP (Shared Key only), one meter, five clients"
    );
    println!("   providers: {title}");
    let dco = Dco::new(dco_provider, dco_title);
    let State {
        keys,
        registry,
        counters: counter_records,
    } = state;
    let mut s1sp = S1sp::with_registry(keys, s1sp_provider, registry, "s1sp-1");

    // The meter leaves the factory with an MK and an AK and GUEK per keyed
    // client; the key-loading step packages them under the DCO's KEKs for
    // the S1SP at commissioning (`factory`: a software packager holding the
    // same KEKs, as a manufacturer's key-loading HSM would).
    // The meter holds its MK in clear (it is the device); outside it the key
    // exists only packaged.
    let mut mk_bytes = [0u8; 16];
    rng.try_fill_bytes(&mut mk_bytes).map_err(|_| Error::Rng)?;
    let mk = MasterKey::from_bytes(mk_bytes);
    let meter_mk = MasterKey::from_bytes(mk_bytes);
    mk_bytes.fill(0);
    let mut records: Vec<PackagedRecord> = Vec::new();
    let id = |client, role| RecordId {
        device,
        client,
        role,
        generation: 0,
    };
    records.push(*factory.package(&mk, id(None, KeyRole::Master))?.record());
    let meter_counter = SendCounter::new_key(
        meter_counter_key(device),
        dlms_sec::InvocationCounter::new(1),
        RESERVE_AHEAD,
        counter_records.clone(),
    )?;
    let mut meter = Meter::new(
        device,
        dco_title,
        meter_mk,
        meter_counter,
        DeviceCapabilities {
            master_key_rotation: true,
        },
    );
    for client in Client::KEYED {
        let ak = AuthenticationKey::generate(&mut rng)?;
        let guek = GlobalUnicastEncryptionKey::generate(&mut rng)?;
        records.push(
            *factory
                .package(&ak, id(Some(client), KeyRole::Authentication))?
                .record(),
        );
        records.push(
            *factory
                .package(&guek, id(Some(client), KeyRole::GlobalUnicastEncryption))?
                .record(),
        );
        meter.provision(
            client,
            SecuritySetupKeys::new(guek, ak),
            SecurityPolicy::AuthenticatedEncrypted,
        )?;
    }
    s1sp.commission(device, meter.capabilities(), &records, t0)?;
    step(
        s1sp.store()
            .active(&KeySlot {
                device,
                client: None,
                role: KeyRole::Master,
            })
            .is_ok(),
        "commissioned: the S1SP holds 9 packaged records (MK, 4 AKs, 4 GUEKs) and no clear key",
        &mut failures,
    );
    step(
        meter
            .provision(
                Client::Public,
                SecuritySetupKeys::new(
                    GlobalUnicastEncryptionKey::from_bytes([0; 16]),
                    AuthenticationKey::from_bytes([0; 16]),
                ),
                SecurityPolicy::AcceptAnyProtection,
            )
            .is_err(),
        "the Public client has no keys",
        &mut failures,
    );

    let mut link = Link::new(meter);
    // The DCO's send counters, one per key; each GUEK's is made when the
    // DCO first meets the key (here, at commissioning).
    let mut counters = PerKeyCounters::new(counter_records, RESERVE_AHEAD);
    for client in Client::KEYED {
        let (_, guek) = s1sp.active_records(device, client)?;
        dco.introduce(&mut counters, &guek)?;
    }

    println!("\n== R-09: the 7-day commissioning rotation");
    let due = s1sp.due(Timestamp(t0.0 + 6 * DAY), DAY, u32::MAX)?;
    step(
        due.len() == 1 && due[0].0 == device,
        "day 6: the device is due within a day",
        &mut failures,
    );
    {
        let mut cx = RotationContext {
            dco: &dco,
            link: &mut link,
            counters: &mut counters,
            audit: Recorder::new(&mut *audit, Timestamp(t0.0 + 6 * DAY)),
            rng: &mut rng,
        };
        for client in Client::KEYED {
            let outcome = s1sp.rotate(&mut cx, device, client)?;
            step(
                outcome == RotationOutcome::Activated,
                &format!(
                    "{}: new AK and GUEK wrapped under the MK, accepted, active",
                    client.name()
                ),
                &mut failures,
            );
        }
    }
    step(
        s1sp.device(device)?.is_some_and(|d| d.master_key_rotated),
        "the MK was rotated too (the device supports it)",
        &mut failures,
    );
    step(
        s1sp.due(Timestamp(t0.0 + 6 * DAY), 30 * DAY, u32::MAX)?
            .is_empty(),
        "nothing is due any more",
        &mut failures,
    );

    println!("\n== protected get, set and action per client");
    let now = Timestamp(t0.0 + 7 * DAY);
    {
        let mut cx = RotationContext {
            dco: &dco,
            link: &mut link,
            counters: &mut counters,
            audit: Recorder::new(&mut *audit, now),
            rng: &mut rng,
        };
        for client in Client::KEYED {
            let mut answer = [0u8; 64];
            let get = [
                0xC0, 0x01, 0xC1, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0xFF, 0x02, 0x00,
            ];
            let n = s1sp.command(&mut cx, device, client, &get, &mut answer)?;
            step(
                answer[0] == 0xC4 && answer[..n].ends_with(device.as_bytes()),
                &format!("{}: get-request answered (meter title)", client.name()),
                &mut failures,
            );
            let set = [
                0xC1, 0x01, 0xC1, 0x00, 0x01, 0x00, 0x00, 0x60, 0x01, 0x00, 0xFF, 0x02, 0x00, 0x09,
                0x01, 0x41,
            ];
            s1sp.command(&mut cx, device, client, &set, &mut answer)?;
            step(
                answer[..4] == [0xC5, 0x01, 0xC1, 0x00],
                &format!("{}: set-request answered success", client.name()),
                &mut failures,
            );
            // action-request: disconnect control (class 70) remote_reconnect.
            let action = [
                0xC3, 0x01, 0xC1, 0x00, 0x46, 0x00, 0x00, 0x60, 0x03, 0x0A, 0xFF, 0x02, 0x01, 0x0F,
                0x00,
            ];
            s1sp.command(&mut cx, device, client, &action, &mut answer)?;
            step(
                answer[..4] == [0xC7, 0x01, 0xC1, 0x00],
                &format!("{}: action-request answered success", client.name()),
                &mut failures,
            );
        }
    }

    println!("\n== what the meter refuses");
    let mut replay = link.last_request.clone();
    let mut out = [0u8; 256];
    step(
        matches!(
            link.meter.handle(Client::Firmware, &mut replay, &mut out),
            Err(Error::Counter(_))
        ),
        "a replayed request (same counter): replay rejected",
        &mut failures,
    );
    // The copies below carry a counter above the meter's floor, so what
    // refuses them is the check named, not the replay guard.
    let fresh = |frame: &[u8]| {
        let mut f = frame.to_vec();
        f[3..7].copy_from_slice(&0x7FFF_FFF0u32.to_be_bytes());
        f
    };
    let mut tampered = fresh(&link.last_request);
    tampered[10] ^= 0x01;
    step(
        matches!(
            link.meter.handle(Client::Firmware, &mut tampered, &mut out),
            Err(Error::Auth(_))
        ),
        "a tampered request: authentication failed",
        &mut failures,
    );
    let mut downgraded = fresh(&link.last_request);
    downgraded[2] = 0x20;
    step(
        matches!(
            link.meter
                .handle(Client::Firmware, &mut downgraded, &mut out),
            Err(Error::PolicyViolation { .. })
        ),
        "a request downgraded to encryption only: policy violation",
        &mut failures,
    );

    println!("\n== R-05: role separation at the S1SP");
    let ak_record = s1sp.store().active(&KeySlot {
        device,
        client: Some(Client::Management),
        role: KeyRole::Authentication,
    })?;
    step(
        s1sp.check_record(&ak_record, &mut Recorder::new(&mut *audit, now))
            .is_err(),
        "the S1SP cannot open an AK record: refused and audited",
        &mut failures,
    );
    let guek_record = s1sp.store().active(&KeySlot {
        device,
        client: Some(Client::Management),
        role: KeyRole::GlobalUnicastEncryption,
    })?;
    step(
        s1sp.check_record(&guek_record, &mut Recorder::new(&mut *audit, now))
            .is_ok(),
        "it can check a GUEK record",
        &mut failures,
    );

    println!("\n== R-14: a rotation whose answer is lost, then resumed");
    {
        let mut cx = RotationContext {
            dco: &dco,
            link: &mut link,
            counters: &mut counters,
            audit: Recorder::new(&mut *audit, now),
            rng: &mut rng,
        };
        cx.link.lose_next_answer = true;
        let outcome = s1sp.rotate(&mut cx, device, Client::DataCollection)?;
        step(
            outcome == RotationOutcome::Pending,
            "answer lost: the new keys stay pending, the old stay active",
            &mut failures,
        );
        let outcome = s1sp.resume(&mut cx, device, Client::DataCollection)?;
        step(
            outcome == RotationOutcome::Activated,
            "resume: the meter answers under the new keys, so they are activated",
            &mut failures,
        );
        let mut answer = [0u8; 64];
        let get = [
            0xC0, 0x01, 0xC1, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0xFF, 0x02, 0x00,
        ];
        step(
            s1sp.command(&mut cx, device, Client::DataCollection, &get, &mut answer)
                .is_ok(),
            "and commands go through under them",
            &mut failures,
        );
    }

    println!("\n== R-14: an answer held back and released later decides nothing");
    {
        let mut cx = RotationContext {
            dco: &dco,
            link: &mut link,
            counters: &mut counters,
            audit: Recorder::new(&mut *audit, now),
            rng: &mut rng,
        };
        let action = [
            0xC3, 0x01, 0xC1, 0x00, 0x01, 0x00, 0x00, 0x2A, 0x00, 0x00, 0xFF, 0x01, 0x00,
        ];
        let mut answer = [0u8; 64];
        cx.link.hold_next_answer = true;
        let lost = s1sp.command(&mut cx, device, Client::Firmware, &action, &mut answer);
        step(
            lost.is_err(),
            "an action-response success (C7 01 C1 00 00) is held back on the link",
            &mut failures,
        );
        cx.link.release_instead_of_next = true;
        let outcome = s1sp.rotate(&mut cx, device, Client::Firmware)?;
        step(
            outcome == RotationOutcome::Pending && cx.link.meter.installs() == 5,
            "the key_transfer is dropped and the held answer released in its place: \
             its invoke-id is not the transfer's, so the new keys stay pending",
            &mut failures,
        );
        let outcome = s1sp.resume(&mut cx, device, Client::Firmware)?;
        step(
            outcome == RotationOutcome::Refused,
            "resume: a probe sent after the transfer is answered under the old keys, \
             so the meter never installed the new ones: dropped",
            &mut failures,
        );
        let outcome = s1sp.rotate(&mut cx, device, Client::Firmware)?;
        step(
            outcome == RotationOutcome::Activated,
            "the rotation runs again and the new keys are active",
            &mut failures,
        );
    }

    println!("\n== R-10 / R-17: compromise re-key campaign over every device");
    {
        let mut cx = RotationContext {
            dco: &dco,
            link: &mut link,
            counters: &mut counters,
            audit: Recorder::new(&mut *audit, Timestamp(now.0 + 30 * DAY)),
            rng: &mut rng,
        };
        let report = s1sp.campaign(&mut cx, "compromise", Scope::All)?;
        println!(
            "  campaign: {} attempted, {} activated, {} pending, {} failed",
            report.attempted,
            report.activated,
            report.pending,
            report.failed.len()
        );
        step(
            report.attempted == 4 && report.activated == 4,
            "every keyed client re-keyed",
            &mut failures,
        );
    }
    step(
        link.meter.installs() == 10,
        "the meter installed 10 key transfers in all (4 + 1 + 1 + 4)",
        &mut failures,
    );

    Ok(failures)
}

/// The R-20 steps over a JSON-lines audit log: the chain verifies, and an
/// altered record is found.
#[allow(dead_code, reason = "the examples that keep their audit log in a file")]
pub fn check_jsonl(log: &[u8], audit_key: &AuditKey, failures: &mut u32) {
    println!("\n== R-20: the audit chain");
    let lines = log.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    match verify(log, audit_key) {
        Ok(v) => step(
            v.records == lines as u64,
            &format!("{lines} records, MAC chain verifies"),
            failures,
        ),
        Err(e) => step(false, &format!("chain broken: {e:?}"), failures),
    }
    let mut forged = log.to_vec();
    if let Some(p) = forged.windows(9).position(|w| w == b"\"success\"") {
        forged[p + 1] = b'S';
    }
    step(
        verify(&forged[..], audit_key).is_err(),
        "an altered record is found",
        failures,
    );
    if let Some(line) = log.split(|b| *b == b'\n').next() {
        println!("  first record: {}", String::from_utf8_lossy(line));
    }
}

/// Prints the outcome and turns it into the exit code.
pub fn report(result: dlms_sec::Result<u32>) -> std::process::ExitCode {
    match result {
        Ok(0) => {
            println!("\nall steps behaved as stated");
            std::process::ExitCode::SUCCESS
        }
        Ok(n) => {
            eprintln!("{n} step(s) did not behave as stated");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demonstration failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
