//! A DCO, an S1SP and one commissioned device with one keyed client: the
//! starting point of the rotation tests.
#![allow(dead_code, reason = "each test binary uses a subset")]
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

use dlms_sec::audit::Timestamp;
use dlms_sec::counter::{SendCounter, Volatile};
use dlms_sec::key::package::RecordId;
use dlms_sec::key::{
    AuthenticationKey, DcoKey, GlobalUnicastEncryptionKey, KeyRole, MasterKey, SharedKey,
};
use dlms_sec::meter::DeviceCapabilities;
use dlms_sec::meter::key_transfer::SecuritySetupKeys;
use dlms_sec::provider::{CryptoProvider, SoftwareDco, SoftwareS1sp};
use dlms_sec::types::Client;
use dlms_sec::{InvocationCounter, SecurityPolicy, SystemTitle};
use dlms_sec_meter_sim::Meter;
use dlms_sec_services::MemoryKeyStore;
use dlms_sec_services::counters::KeyCounters;
use dlms_sec_services::dco::Dco;
use dlms_sec_services::s1sp::S1sp;
use rand_core::TryCryptoRng;

pub const T0: Timestamp = Timestamp(1_795_000_000);
pub const DCO_TITLE: SystemTitle = SystemTitle::new(*b"DCO\x00\x00\x00\x00\x01");
pub const M1: SystemTitle = SystemTitle::new(*b"GBM\x00\x00\x00\x00\x01");
pub const CLIENT: Client = Client::Management;
/// The device's keys at manufacture: MK, AK, GUEK.
pub const KEYS: ([u8; 16], [u8; 16], [u8; 16]) = ([0x4D; 16], [0xA0; 16], [0x60; 16]);

/// Fresh KEKs from `rng`, a DCO and an S1SP over them, and [`M1`]
/// commissioned in the S1SP with [`KEYS`]; the meter holds the same keys.
pub fn commissioned<R: TryCryptoRng>(
    rng: &mut R,
    mk_rotation: bool,
) -> (
    Dco<SoftwareDco>,
    S1sp<MemoryKeyStore, SoftwareS1sp>,
    Meter<Volatile>,
) {
    let dco_key = DcoKey::generate(rng).unwrap();
    let shared = SharedKey::generate(rng).unwrap();
    let dco = Dco::new(SoftwareDco::new(&dco_key, &shared), DCO_TITLE);
    let mut s1sp = S1sp::new(MemoryKeyStore::default(), SoftwareS1sp::new(&shared));
    let id = |client, role| RecordId {
        device: M1,
        client,
        role,
        generation: 0,
    };
    let (mk, ak, guek) = KEYS;
    let p = dco.provider();
    let records = [
        *p.package(&MasterKey::from_bytes(mk), id(None, KeyRole::Master))
            .unwrap()
            .record(),
        *p.package(
            &AuthenticationKey::from_bytes(ak),
            id(Some(CLIENT), KeyRole::Authentication),
        )
        .unwrap()
        .record(),
        *p.package(
            &GlobalUnicastEncryptionKey::from_bytes(guek),
            id(Some(CLIENT), KeyRole::GlobalUnicastEncryption),
        )
        .unwrap()
        .record(),
    ];
    let mut meter = Meter::new(
        M1,
        DCO_TITLE,
        MasterKey::from_bytes(mk),
        SendCounter::volatile(InvocationCounter::new(1)),
        DeviceCapabilities {
            master_key_rotation: mk_rotation,
        },
    );
    meter
        .provision(
            CLIENT,
            SecuritySetupKeys::new(
                GlobalUnicastEncryptionKey::from_bytes(guek),
                AuthenticationKey::from_bytes(ak),
            ),
            SecurityPolicy::AuthenticatedEncrypted,
        )
        .unwrap();
    s1sp.commission(M1, meter.capabilities(), &records, T0)
        .unwrap();
    (dco, s1sp, meter)
}

/// Makes the DCO's send counter of every active GUEK the S1SP holds, as
/// commissioning does.
pub fn introduce_all<S: dlms_sec::keystore::KeyStore, G: dlms_sec_services::registry::Registry>(
    dco: &Dco<SoftwareDco>,
    s1sp: &S1sp<S, SoftwareS1sp, G>,
    counters: &mut impl KeyCounters,
) {
    for device in s1sp.device_titles().unwrap() {
        for client in Client::KEYED {
            if let Ok((_, guek)) = s1sp.active_records(device, client) {
                dco.introduce(counters, &guek).unwrap();
            }
        }
    }
}

/// Every event recorded, on the heap: a log of thousands of events whose
/// size does not weigh on a test thread's stack.
#[derive(Debug, Default)]
pub struct EventLog(Vec<dlms_sec::audit::AuditEvent>);

impl EventLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// The events recorded so far, oldest first.
    pub fn events(&self) -> &[dlms_sec::audit::AuditEvent] {
        &self.0
    }
}

impl dlms_sec::audit::AuditSink for EventLog {
    fn record(&mut self, event: &dlms_sec::audit::AuditEvent) -> dlms_sec::Result<()> {
        self.0.push(*event);
        Ok(())
    }
}
