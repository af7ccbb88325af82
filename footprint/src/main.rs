//! A meter-side firmware image for a Cortex-M4F, built only to measure what
//! `dlms-sec` costs in flash and stack (`bash footprint/check.sh`).
//!
//! The loop does what a meter does with each received frame: unprotect it
//! (verify, decrypt, replay guard), answer a Security Setup key_transfer
//! (parse, stage, protect the response under the old keys, install) or any
//! other request (protect a response), and answer and check HLS-5
//! challenges. Every input comes through `black_box`, so nothing is folded
//! away and every path of the calls above is linked; the request forms and
//! policies are opaque too, so the figure is the worst case over the forms
//! (service-specific, general-glo/ded, general-ciphering).

#![no_std]
#![no_main]

use core::hint::black_box;
use core::num::NonZeroU32;
use core::panic::PanicInfo;
use dlms_sec::suite0::PeerTitle;

use cortex_m_rt::entry;
use dlms_sec::counter::{CounterKey, CounterPersistence, ReplayGuard, SendCounter};
use dlms_sec::error::CounterError;
use dlms_sec::key::wrap::KeyId;
use dlms_sec::key::{AuthenticationKey, GlobalUnicastEncryptionKey, MasterKey};
use dlms_sec::meter::key_transfer::SecuritySetupKeys;
use dlms_sec::suite0::hls5;
use dlms_sec::suite0::{Protect, Unprotect};
use dlms_sec::{Client, KeyKind, Protection, SecurityPolicy, SystemTitle};

/// Frame buffers: one received frame, one response.
const FRAME_LEN: usize = 512;

/// The counter reservation in flash, opaque to the optimiser.
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

    // Keys as a meter reads them from its key store.
    let mut mk = MasterKey::from_bytes(black_box([0x0F; 16]));
    let mut keys = SecuritySetupKeys::new(
        GlobalUnicastEncryptionKey::from_bytes(black_box([0x00; 16])),
        AuthenticationKey::from_bytes(black_box([0xD0; 16])),
    );
    let own_title = black_box(SystemTitle::new(*b"MMM\x00\x00\xBCaN"));
    let peer_title = black_box(SystemTitle::new(*b"MMM\x00\x00\x00\x00\x01"));

    let counted = CounterKey::own(own_title, Client::Management, KeyKind::GlobalUnicast, 0);
    let Ok(mut ic) = SendCounter::resume(counted, NonZeroU32::MIN.saturating_add(15), Flash) else {
        halt()
    };
    // The replay guard for the current keys: made from the first context
    // under them (the first one, and the first after each install), so no
    // second context is ever expanded for it.
    let mut guard: Option<ReplayGuard> = None;

    loop {
        // One association's context (Suite0::new over the current keys).
        let suite = api::suite0_new(&keys);
        let current = match &mut guard {
            Some(g) => g,
            unset @ None => {
                let Ok(g) = suite.replay_guard(peer_title, KeyKind::GlobalUnicast) else {
                    halt()
                };
                unset.insert(g)
            }
        };

        // HLS-5: answer the client's CtoS, check its f(StoC).
        let ctos: &[u8] = black_box(&[0x11; 16]);
        if let Ok(r) = api::hls5_respond(&suite, &own_title, &mut ic, ctos) {
            black_box(r.as_bytes());
        }
        let stoc: &[u8] = black_box(&[0x22; 16]);
        let f_stoc: &[u8] = black_box(&[0x33; hls5::RESPONSE_LEN]);
        black_box(api::hls5_verify(&suite, &peer_title, stoc, f_stoc));

        // A received frame: verify, decrypt, replay guard.
        let len = black_box(64usize);
        let Some(frame) = rx.get_mut(..len) else {
            continue;
        };
        let params = black_box(Unprotect {
            peer_system_title: PeerTitle::Expected(peer_title),
            policy: SecurityPolicy::AuthenticatedEncrypted,
        });
        let Ok(received) = api::unprotect(&suite, frame, &params) else {
            continue;
        };
        let Some(proof) = received.replay_proof() else {
            continue;
        };
        if !api::replay_accept(current, proof) {
            continue;
        }
        let apdu = received.into_apdu();

        let req = black_box(Protect::unicast(
            Protection::AuthenticatedEncrypted,
            own_title,
        ));
        match api::key_transfer_parse(apdu) {
            Ok((method, transfer)) => {
                // key_transfer: stage under the current MK, answer under the
                // old keys, then install.
                let staged = api::key_transfer_stage(&mk, &transfer);
                let result = u8::from(staged.is_err());
                let response = [0xC7, 0x01, method.invoke_id_and_priority, result, 0x00];
                black_box(api::protect(&suite, &req, &mut ic, &response, tx).is_ok());
                black_box(&tx[..]);
                if let Ok(staged) = staged {
                    let new_session_keys = staged.replaces(KeyId::GlobalUnicastEncryption)
                        || staged.replaces(KeyId::Authentication);
                    api::key_transfer_install(staged, &mut mk, &mut keys);
                    // New session keys: the next context makes a fresh
                    // guard for them.
                    if new_session_keys {
                        guard = None;
                    }
                }
            }
            Err(_) => {
                // Any other request: protect a response (here the request
                // itself stands in for the application's answer).
                black_box(api::protect(&suite, &req, &mut ic, apdu, tx).is_ok());
                black_box(&tx[..]);
            }
        }
    }
}

/// One out-of-line shim per library entry point. The library code inlined
/// into each shows up under `footprint::api::` in the symbol table (check.sh
/// counts it as dlms-sec), and each shim is a root for the stack report.
mod api {
    use dlms_sec::Result;
    use dlms_sec::counter::{CounterSource, ReplayGuard, ReplayProof};
    use dlms_sec::key::MasterKey;
    use dlms_sec::meter::key_transfer::{SecuritySetupKeys, StagedKeys, stage};
    use dlms_sec::suite0::hls5::{self, Hls5Response};
    use dlms_sec::suite0::{Protect, Suite0, Unprotect, Unprotected};
    use dlms_sec::wire::{
        KeyTransfer, SecuritySetupMethod, SystemTitle, parse_key_transfer_request,
    };

    #[inline(never)]
    pub fn suite0_new(keys: &SecuritySetupKeys) -> Suite0 {
        keys.suite0()
    }

    #[inline(never)]
    pub fn protect(
        suite: &Suite0,
        req: &Protect<'_>,
        counter: &mut impl CounterSource,
        apdu: &[u8],
        out: &mut [u8],
    ) -> Result<usize> {
        suite.protect(req, counter, apdu, out)
    }

    #[inline(never)]
    pub fn unprotect<'b>(
        suite: &Suite0,
        frame: &'b mut [u8],
        req: &Unprotect,
    ) -> Result<Unprotected<'b>> {
        suite.unprotect(frame, req)
    }

    #[inline(never)]
    pub fn replay_accept(guard: &mut ReplayGuard, proof: &ReplayProof) -> bool {
        guard.accept(proof).is_ok()
    }

    #[inline(never)]
    pub fn hls5_respond(
        suite: &Suite0,
        own_title: &SystemTitle,
        counter: &mut impl CounterSource,
        challenge: &[u8],
    ) -> Result<Hls5Response> {
        hls5::respond(suite, own_title, counter, challenge)
    }

    #[inline(never)]
    pub fn hls5_verify(
        suite: &Suite0,
        peer_title: &SystemTitle,
        our_challenge: &[u8],
        response: &[u8],
    ) -> bool {
        hls5::verify(suite, peer_title, our_challenge, response).is_ok()
    }

    #[inline(never)]
    pub fn key_transfer_parse(apdu: &[u8]) -> Result<(SecuritySetupMethod, KeyTransfer)> {
        parse_key_transfer_request(apdu)
    }

    #[inline(never)]
    pub fn key_transfer_stage(mk: &MasterKey, transfer: &KeyTransfer) -> Result<StagedKeys> {
        stage(mk, transfer)
    }

    #[inline(never)]
    pub fn key_transfer_install(
        staged: StagedKeys,
        mk: &mut MasterKey,
        keys: &mut SecuritySetupKeys,
    ) {
        staged.install(mk, keys);
    }
}

/// No formatting: the panic message and location are never read.
#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    halt()
}
