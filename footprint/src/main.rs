//! A meter-side firmware image for a Cortex-M4F, built only to measure what
//! `dlms-sec` costs in flash and stack (`bash footprint/check.sh`).
//!
//! The loop does what a meter's firmware does with the security layer,
//! the meter [`Endpoint`](dlms_sec::meter::Endpoint) for the five SMETS1
//! clients: open an association from the AARQ's ciphered
//! glo-initiateRequest (dedicated key included) and record the HLS-5
//! challenges; unprotect each received frame (floor, policy, verify,
//! decrypt, the durable floor write); let the layer serve what it serves
//! (key_transfer, security_activate, HLS-5 pass 3) and protect the
//! application's answer to anything else; release. Every input comes
//! through `black_box`, so nothing is folded away and every path of the
//! calls above is linked.

#![no_std]
#![no_main]

use core::hint::black_box;
use core::num::NonZeroU32;
use core::panic::PanicInfo;

use cortex_m_rt::entry;
use dlms_sec::counter::{CounterKey, CounterPersistence, SendCounter};
use dlms_sec::error::CounterError;
use dlms_sec::key::{AuthenticationKey, GlobalUnicastEncryptionKey, MasterKey};
use dlms_sec::meter::key_transfer::SecuritySetupKeys;
use dlms_sec::meter::{
    DeviceCapabilities, Endpoint, FloorPersistence, FloorRecord, OneCounter, Served,
};
use dlms_sec::{Client, KeyKind, SecurityPolicy, SystemTitle};

/// Frame buffers: one received frame, one response.
const FRAME_LEN: usize = 512;

/// The counter reservation and the receive floors in flash, opaque to the
/// optimiser.
struct Flash;

impl CounterPersistence for Flash {
    fn create(&mut self, key: &CounterKey, first: u32) -> Result<(), CounterError> {
        black_box((key, first));
        black_box(Ok(()))
    }

    fn claim(
        &mut self,
        key: &CounterKey,
        n: NonZeroU32,
    ) -> Result<core::ops::Range<u32>, CounterError> {
        black_box(key);
        let first = black_box(1u32);
        black_box(Ok(first..first.saturating_add(n.get())))
    }
}

impl FloorPersistence for Flash {
    fn load(&mut self, slot: usize) -> Result<Option<FloorRecord>, CounterError> {
        black_box(slot);
        black_box(Ok(None))
    }

    fn store(&mut self, slot: usize, record: FloorRecord) -> Result<(), CounterError> {
        black_box((slot, record));
        black_box(Ok(()))
    }
}

type Meter = Endpoint<Client, OneCounter<SendCounter<Flash>>, Flash, 5>;

/// Where a real firmware would reset; here it just stops.
fn halt() -> ! {
    loop {
        core::hint::spin_loop();
    }
}

#[entry]
fn main() -> ! {
    // cortex-m-rt turns these into `&'static mut` (no unsafe needed).
    static mut RX: [u8; FRAME_LEN] = [0; FRAME_LEN];
    static mut TX: [u8; FRAME_LEN] = [0; FRAME_LEN];
    let rx: &'static mut [u8; FRAME_LEN] = black_box(RX);
    let tx: &'static mut [u8; FRAME_LEN] = black_box(TX);

    let own_title = black_box(SystemTitle::new(*b"MMM\x00\x00\xBCaN"));
    let peer_title = black_box(SystemTitle::new(*b"MMM\x00\x00\x00\x00\x01"));
    let counted = CounterKey::own(own_title, Client::Management, KeyKind::GlobalUnicast, 0);
    let Ok(counter) = SendCounter::resume(counted, NonZeroU32::MIN.saturating_add(15), Flash)
    else {
        halt()
    };
    let mut meter: Meter = Endpoint::smets1(
        own_title,
        MasterKey::from_bytes(black_box([0x0F; 16])),
        OneCounter(counter),
        Flash,
        black_box(DeviceCapabilities::default()),
    );
    // Keys as a meter reads them from its key store, for the client the
    // frames come from.
    let client = black_box(Client::Management);
    let keys = SecuritySetupKeys::new(
        GlobalUnicastEncryptionKey::from_bytes(black_box([0x00; 16])),
        AuthenticationKey::from_bytes(black_box([0xD0; 16])),
    );
    let policy = black_box(SecurityPolicy::AuthenticatedEncrypted);
    if api::restore(&mut meter, client, peer_title, keys, policy).is_err() {
        halt()
    }

    loop {
        let len = black_box(64usize);
        let Some(frame) = rx.get_mut(..len) else {
            continue;
        };
        match black_box(0u8) {
            // AARQ: the glo-initiateRequest, the HLS-5 challenges.
            0 => {
                if let Ok(r) = api::associate(&mut meter, client, frame) {
                    let initiate_response: &[u8] = black_box(&[0x08, 0x00, 0x06]);
                    black_box(api::protect(&mut meter, &r, initiate_response, tx).is_ok());
                }
                let ctos: &[u8] = black_box(&[0x11; 16]);
                let stoc: &[u8] = black_box(&[0x22; 16]);
                black_box(api::expect_hls(&mut meter, client, ctos, stoc).is_ok());
            }
            // RLRQ.
            1 => {
                black_box(api::release(&mut meter, client, Some(frame)).is_ok());
            }
            // A request.
            _ => {
                let Ok(request) = api::unprotect(&mut meter, client, frame) else {
                    continue;
                };
                match api::serve(&mut meter, request, tx) {
                    Ok(Served::Answered { len, .. }) => {
                        black_box(tx.get(..len));
                    }
                    Ok(Served::Application(request)) => {
                        // The application's answer (here the request
                        // itself stands in for it).
                        black_box(api::protect(&mut meter, &request, request.apdu(), tx).is_ok());
                        black_box(&tx[..]);
                    }
                    Err(_) => continue,
                }
            }
        }
    }
}

/// One out-of-line shim per library entry point. The library code inlined
/// into each shows up under `footprint::api::` in the symbol table (check.sh
/// counts it as dlms-sec), and each shim is a root for the stack report.
mod api {
    use dlms_sec::meter::key_transfer::SecuritySetupKeys;
    use dlms_sec::meter::{Request, Served};
    use dlms_sec::{Client, Result, SecurityPolicy, SystemTitle};

    use super::Meter;

    #[inline(never)]
    pub fn restore(
        meter: &mut Meter,
        client: Client,
        peer: SystemTitle,
        keys: SecuritySetupKeys,
        policy: SecurityPolicy,
    ) -> Result<()> {
        meter.restore(client, peer, keys, policy)
    }

    #[inline(never)]
    pub fn unprotect<'b>(
        meter: &mut Meter,
        client: Client,
        frame: &'b mut [u8],
    ) -> Result<Request<'b>> {
        meter.unprotect(client, frame)
    }

    #[inline(never)]
    pub fn serve<'b>(
        meter: &mut Meter,
        request: Request<'b>,
        out: &mut [u8],
    ) -> Result<Served<'b>> {
        meter.serve(request, out)
    }

    #[inline(never)]
    pub fn protect(
        meter: &mut Meter,
        request: &Request<'_>,
        answer: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        meter.protect(request, answer, out)
    }

    #[inline(never)]
    pub fn associate<'b>(
        meter: &mut Meter,
        client: Client,
        frame: &'b mut [u8],
    ) -> Result<Request<'b>> {
        meter.associate(client, frame)
    }

    #[inline(never)]
    pub fn expect_hls(meter: &mut Meter, client: Client, ctos: &[u8], stoc: &[u8]) -> Result<()> {
        meter.expect_hls(client, ctos, stoc)
    }

    #[inline(never)]
    pub fn release(meter: &mut Meter, client: Client, frame: Option<&mut [u8]>) -> Result<bool> {
        meter.release(client, frame).map(|r| r.is_some())
    }
}

/// No formatting: the panic message and location are never read.
#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    halt()
}
