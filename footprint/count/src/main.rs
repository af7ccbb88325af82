//! A Cortex-M4 image for QEMU's `mps2-an386` machine that runs each meter
//! operation between two marker calls, beside `aes-gcm` 0.11 doing the same
//! GCM over the same `aes` crate and backend. `footprint/qemu-count.sh`
//! runs it with QEMU's execution log and counts the instructions executed
//! from the entry of [`count_start`] to the entry of [`count_end`].
//!
//! Before counting, every pair is checked to compute the same thing: our
//! protect's ciphertext and tag equal aes-gcm's for the same IV and AAD,
//! and the frame our unprotect takes is one aes-gcm opens. The key_transfer
//! install is counted beside `aes-kw` 0.3 unwrapping the same wrapped key
//! (the RFC 3394 step inside it), after checking the request carries what
//! aes-kw wraps. A mismatch exits with failure.
//!
//! Output (semihosting, one line per operation, in marker order):
//! `op NAME REPS STACK` where STACK is the deepest stack use of any
//! repetition in octets below the caller's stack pointer, measured by
//! painting the stack before each call; then `done`.

#![no_std]
#![no_main]

use core::hint::black_box;
use core::num::NonZeroU32;
use core::ops::Range;
use core::panic::PanicInfo;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::aes::Aes128;
use aes_gcm::{AesGcm, Key, Nonce, Tag};
use aes_kw::KwAes128;
use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use dlms_sec::counter::{CounterKey, CounterPersistence, CounterSource, SendCounter};
use dlms_sec::error::CounterError;
use dlms_sec::key::{AuthenticationKey, GlobalUnicastEncryptionKey, MasterKey};
use dlms_sec::meter::key_transfer::SecuritySetupKeys;
use dlms_sec::suite0::{PeerTitle, Protect, Unprotect};
use dlms_sec::wire::{InvocationCounter, KeyTransfer, SecuritySetupMethod};
use dlms_sec::{Client, KeyKind, Protection, SecurityPolicy, SystemTitle};

/// Suite 0's GCM as aes-gcm spells it: AES-128, 12-octet IV, 12-octet tag.
type Baseline = AesGcm<Aes128, U12, U12>;

/// Repetitions of each operation, each between its own pair of markers.
const REPS: u32 = 3;
/// Plaintext length of the protected and unprotected APDUs.
const APDU_LEN: usize = 64;
/// SC of an authenticated and encrypted suite-0 frame.
const SC_AE: u8 = 0x30;
/// SC that HLS-5 authenticates with.
const SC_HLS5: u8 = 0x10;
/// glo-get-request: tag, length, SC, IC, ciphertext, tag.
const FRAME_LEN: usize = 2 + 5 + APDU_LEN + 12;

const GUEK: [u8; 16] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F,
];
const AK: [u8; 16] = [
    0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF,
];
const MK: [u8; 16] = [0x0F; 16];
const NEW_GUEK: [u8; 16] = [0x5A; 16];
const OWN_TITLE: [u8; 8] = *b"MMM\x00\x00\xBCaN";
const PEER_TITLE: [u8; 8] = *b"MMM\x00\x00\x00\x00\x01";

/// Marks the start of a counted call. The count runs from its first
/// instruction to the first instruction of [`count_end`]; the cost of an
/// empty operation between the two is measured and subtracted.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn count_start() {
    black_box(0x5A5A_u32);
}

/// Marks the end of a counted call.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn count_end() {
    black_box(0xA5A5_u32);
}

/// The meter's counter reservation: every claim is granted at once, and the
/// reservation is large enough that no counted protect claims.
struct Flash;

impl CounterPersistence for Flash {
    fn create(&mut self, _key: &CounterKey, _first: u32) -> Result<(), CounterError> {
        Ok(())
    }

    fn claim(&mut self, _key: &CounterKey, n: NonZeroU32) -> Result<Range<u32>, CounterError> {
        Ok(1..1u32.saturating_add(n.get()))
    }
}

/// The client's counter, for making the frames the meter receives.
struct ClientCounter(u32);

impl CounterSource for ClientCounter {
    fn next_counter(&mut self) -> Result<InvocationCounter, CounterError> {
        self.0 = self.0.wrapping_add(1);
        Ok(InvocationCounter::new(self.0))
    }
}

mod stack {
    //! Stack high-water marks: paint a window below the stack pointer,
    //! call, and find the lowest word the call overwrote.

    use core::ptr::{read_volatile, write_volatile};

    /// Octets painted below the stack pointer.
    pub const WINDOW: usize = 8 * 1024;
    const PAINT: u32 = 0xDEC0_ADDE;

    /// The current stack pointer.
    #[inline(always)]
    pub fn pointer() -> usize {
        let sp: usize;
        // SAFETY: reads a register; touches no memory.
        unsafe {
            core::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags))
        };
        sp
    }

    /// Paints the `WINDOW` octets below `top`, which must be at or below
    /// the current stack pointer, word by word.
    #[inline(always)]
    pub fn paint(top: usize) {
        let mut a = top - WINDOW;
        while a < top {
            // SAFETY: below the stack pointer, inside RAM (the stack is far
            // larger than WINDOW, checked in main), and nothing live is
            // there; no interrupt is enabled.
            unsafe { write_volatile(a as *mut u32, PAINT) };
            a += 4;
        }
    }

    /// Octets below `top` written since [`paint`]: `WINDOW` when the whole
    /// window was used (the call may have gone deeper).
    #[inline(always)]
    pub fn used(top: usize) -> usize {
        let mut a = top - WINDOW;
        // SAFETY: the same window paint wrote; plain reads.
        while a < top && unsafe { read_volatile(a as *const u32) } == PAINT {
            a += 4;
        }
        top - a
    }
}

/// Runs `op` [`REPS`] times, each after `prepare` has filled `io`, between
/// the markers, with the stack painted; prints the operation's line. Any
/// repetition that fails stops the image with failure.
fn measure(
    name: &str,
    io: &mut [u8],
    prepare: &mut dyn FnMut(&mut [u8]),
    op: &mut dyn FnMut(&mut [u8]) -> bool,
) {
    let mut deepest = 0;
    for _ in 0..REPS {
        prepare(io);
        let top = stack::pointer() & !7;
        stack::paint(top);
        count_start();
        let ok = op(io);
        count_end();
        deepest = deepest.max(stack::used(top));
        if !black_box(ok) {
            fail(name);
        }
    }
    hprintln!("op {} {} {}", name, REPS, deepest);
}

fn fail(what: &str) -> ! {
    hprintln!("FAIL {}", what);
    debug::exit(debug::EXIT_FAILURE);
    halt()
}

fn halt() -> ! {
    loop {
        core::hint::spin_loop();
    }
}

fn iv(title: &[u8; 8], ic: [u8; 4]) -> Nonce<U12> {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(title);
    n[8..].copy_from_slice(&ic);
    Nonce::<U12>::from(n)
}

#[entry]
fn main() -> ! {
    static mut RX: [u8; 256] = [0; 256];
    static mut TX: [u8; 256] = [0; 256];
    static mut BUF: [u8; 256] = [0; 256];
    let rx: &'static mut [u8; 256] = RX;
    let tx: &'static mut [u8; 256] = TX;
    let buf: &'static mut [u8; 256] = BUF;

    unsafe extern "C" {
        static _stack_end: u32;
    }
    let stack_end = core::ptr::addr_of!(_stack_end) as usize;
    if stack::pointer() - stack_end < 2 * stack::WINDOW {
        fail("stack smaller than twice the paint window");
    }

    let mut mk = MasterKey::from_bytes(MK);
    let mut keys = SecuritySetupKeys::new(
        GlobalUnicastEncryptionKey::from_bytes(GUEK),
        AuthenticationKey::from_bytes(AK),
    );
    let own = SystemTitle::new(OWN_TITLE);
    let peer = SystemTitle::new(PEER_TITLE);
    let suite = api::suite0_new(&keys);
    let baseline = Baseline::new(&Key::<Baseline>::from(GUEK));

    let counted = CounterKey::own(own, Client::Management, KeyKind::GlobalUnicast, 0);
    let Ok(mut ic) = SendCounter::resume(
        counted,
        NonZeroU32::new(1 << 20).unwrap_or(NonZeroU32::MIN),
        Flash,
    ) else {
        fail("counter")
    };
    let mut client_ic = ClientCounter(0x100);

    let mut aad = [0u8; 17];
    aad[0] = SC_AE;
    aad[1..].copy_from_slice(&AK);

    // A get-request (64 octets) as the client protects it, and a response.
    let mut get_request = [0x5Cu8; APDU_LEN];
    get_request[..4].copy_from_slice(&[0xC0, 0x01, 0xC1, 0x00]);
    let mut get_response = [0xA3u8; APDU_LEN];
    get_response[..4].copy_from_slice(&[0xC4, 0x01, 0xC1, 0x00]);

    let to_meter = Protect::unicast(Protection::AuthenticatedEncrypted, peer);
    let frame_len = match api::protect(&suite, &to_meter, &mut client_ic, &get_request, tx) {
        Ok(n) => n,
        Err(_) => fail("making the frame"),
    };
    let mut frame = [0u8; FRAME_LEN];
    if frame_len != FRAME_LEN || tx[0] != 0xC8 || tx[2] != SC_AE {
        fail("frame layout");
    }
    frame.copy_from_slice(&tx[..FRAME_LEN]);
    let frame_iv = iv(&PEER_TITLE, [frame[3], frame[4], frame[5], frame[6]]);
    let frame_tag = Tag::<U12>::try_from(&frame[7 + APDU_LEN..]).unwrap_or_default();

    // ---- the same results, checked once before counting ------------------
    buf[..APDU_LEN].copy_from_slice(&frame[7..7 + APDU_LEN]);
    if baseline
        .decrypt_inout_detached(&frame_iv, &aad, (&mut buf[..APDU_LEN]).into(), &frame_tag)
        .is_err()
        || buf[..APDU_LEN] != get_request
    {
        fail("aes-gcm does not open our frame");
    }
    rx[..FRAME_LEN].copy_from_slice(&frame);
    let unprotect = Unprotect {
        peer_system_title: PeerTitle::Expected(peer),
        policy: SecurityPolicy::AuthenticatedEncrypted,
    };
    match api::unprotect(&suite, &mut rx[..FRAME_LEN], &unprotect) {
        Ok(u) => {
            if u.into_apdu() != get_request {
                fail("unprotect");
            }
        }
        Err(_) => fail("unprotect"),
    }
    let from_meter = Protect::unicast(Protection::AuthenticatedEncrypted, own);
    match api::protect(&suite, &from_meter, &mut ic, &get_response, tx) {
        Ok(FRAME_LEN) => {}
        _ => fail("protect"),
    }
    buf[..APDU_LEN].copy_from_slice(&get_response);
    let protect_iv = iv(&OWN_TITLE, [tx[3], tx[4], tx[5], tx[6]]);
    match baseline.encrypt_inout_detached(&protect_iv, &aad, (&mut buf[..APDU_LEN]).into()) {
        Ok(t) if buf[..APDU_LEN] == tx[7..7 + APDU_LEN] && t[..] == tx[7 + APDU_LEN..FRAME_LEN] => {
        }
        _ => fail("protect differs from aes-gcm"),
    }

    // HLS-5: the client's f(StoC) for our challenge StoC.
    let stoc = [0x22u8; 16];
    let f_stoc = match dlms_sec::suite0::hls5::respond(&suite, &peer, &mut client_ic, &stoc) {
        Ok(r) => *r.as_bytes(),
        Err(_) => fail("hls5 respond"),
    };
    let mut hls_aad = [0u8; 33];
    hls_aad[0] = SC_HLS5;
    hls_aad[1..17].copy_from_slice(&AK);
    hls_aad[17..].copy_from_slice(&stoc);
    let hls_iv = iv(&PEER_TITLE, [f_stoc[1], f_stoc[2], f_stoc[3], f_stoc[4]]);
    let hls_tag = Tag::<U12>::try_from(&f_stoc[5..]).unwrap_or_default();
    if baseline
        .decrypt_inout_detached(&hls_iv, &hls_aad, (&mut buf[..0]).into(), &hls_tag)
        .is_err()
    {
        fail("aes-gcm rejects our f(StoC)");
    }

    // key_transfer: one entry (a new GUEK) wrapped under the current MK.
    let mut transfer = KeyTransfer::new();
    if transfer
        .push_key(&mk, &GlobalUnicastEncryptionKey::from_bytes(NEW_GUEK))
        .is_err()
    {
        fail("key_transfer");
    }
    let mut request = [0u8; 64];
    let request_len =
        match SecuritySetupMethod::default().emit_key_transfer_request(&transfer, &mut request) {
            Ok(n) => n,
            Err(_) => fail("key_transfer request"),
        };
    // The request ends with the wrapped key: what aes-kw wraps.
    let mut wrapped = [0u8; 24];
    if KwAes128::new(&MK.into())
        .wrap_key(&NEW_GUEK, &mut wrapped)
        .is_err()
        || request.get(request_len.saturating_sub(24)..request_len) != Some(&wrapped[..])
    {
        fail("key_transfer request differs from aes-kw's wrap");
    }

    // ---- counted ------------------------------------------------------------
    let mut noop = |_: &mut [u8]| {};
    measure("empty", buf, &mut noop, &mut |_| true);

    measure(
        "unprotect",
        rx,
        &mut |io| io[..FRAME_LEN].copy_from_slice(&frame),
        &mut |io| api::unprotect(&suite, &mut io[..FRAME_LEN], &unprotect).is_ok(),
    );
    measure(
        "aes-gcm-decrypt",
        buf,
        &mut |io| io[..APDU_LEN].copy_from_slice(&frame[7..7 + APDU_LEN]),
        &mut |io| baseline::decrypt(&baseline, &frame_iv, &aad, &mut io[..APDU_LEN], &frame_tag),
    );
    measure("protect", tx, &mut noop, &mut |io| {
        api::protect(&suite, &from_meter, &mut ic, &get_response, io).is_ok()
    });
    measure(
        "aes-gcm-encrypt",
        buf,
        &mut |io| io[..APDU_LEN].copy_from_slice(&get_response),
        &mut |io| baseline::encrypt(&baseline, &protect_iv, &aad, &mut io[..APDU_LEN]),
    );
    measure("hls5-verify", buf, &mut noop, &mut |_| {
        api::hls5_verify(&suite, &peer, &stoc, &f_stoc)
    });
    measure("aes-gcm-gmac-verify", buf, &mut noop, &mut |io| {
        baseline::decrypt(&baseline, &hls_iv, &hls_aad, &mut io[..0], &hls_tag)
    });
    measure("suite0-new", buf, &mut noop, &mut |_| {
        black_box(api::suite0_new(&keys));
        true
    });
    measure("aes-gcm-new", buf, &mut noop, &mut |_| baseline::new(&GUEK));
    measure("key-transfer-install", buf, &mut noop, &mut |_| {
        api::key_transfer(&request[..request_len], &mut mk, &mut keys)
    });
    measure("aes-kw-unwrap", buf, &mut noop, &mut |io| {
        baseline::unwrap(&MK, &wrapped, &mut io[..16]) && io[..16] == NEW_GUEK
    });

    hprintln!("done");
    debug::exit(debug::EXIT_SUCCESS);
    halt()
}

/// One out-of-line call per library operation, so each counted call is the
/// library's code and the call into it.
mod api {
    use dlms_sec::Result;
    use dlms_sec::counter::CounterSource;
    use dlms_sec::key::MasterKey;
    use dlms_sec::meter::key_transfer::{SecuritySetupKeys, stage};
    use dlms_sec::suite0::hls5;
    use dlms_sec::suite0::{Protect, Suite0, Unprotect, Unprotected};
    use dlms_sec::wire::{SystemTitle, parse_key_transfer_request};

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
    pub fn hls5_verify(
        suite: &Suite0,
        peer_title: &SystemTitle,
        our_challenge: &[u8],
        response: &[u8],
    ) -> bool {
        hls5::verify(suite, peer_title, our_challenge, response).is_ok()
    }

    /// What a meter does with a key_transfer request it has unprotected:
    /// parse it, unwrap and stage its keys, install them.
    #[inline(never)]
    pub fn key_transfer(apdu: &[u8], mk: &mut MasterKey, keys: &mut SecuritySetupKeys) -> bool {
        let Ok((_, transfer)) = parse_key_transfer_request(apdu) else {
            return false;
        };
        let Ok(staged) = stage(mk, &transfer) else {
            return false;
        };
        staged.install(mk, keys);
        true
    }
}

/// The same out-of-line calls into aes-gcm, and aes-kw's unwrap.
mod baseline {
    use super::{Baseline, U12};
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use aes_gcm::{Key, Nonce, Tag};
    use aes_kw::KwAes128;

    /// RFC 3394 unwrap of one 128-bit key, the key schedule included (as
    /// the install expands the MK on each call).
    #[inline(never)]
    pub fn unwrap(kek: &[u8; 16], wrapped: &[u8; 24], out: &mut [u8]) -> bool {
        KwAes128::new(kek.into()).unwrap_key(wrapped, out).is_ok()
    }

    #[inline(never)]
    pub fn new(key: &[u8; 16]) -> bool {
        core::hint::black_box(Baseline::new(&Key::<Baseline>::from(*key)));
        true
    }

    #[inline(never)]
    pub fn encrypt(cipher: &Baseline, iv: &Nonce<U12>, aad: &[u8], buf: &mut [u8]) -> bool {
        core::hint::black_box(cipher.encrypt_inout_detached(iv, aad, buf.into())).is_ok()
    }

    #[inline(never)]
    pub fn decrypt(
        cipher: &Baseline,
        iv: &Nonce<U12>,
        aad: &[u8],
        buf: &mut [u8],
        tag: &Tag<U12>,
    ) -> bool {
        cipher
            .decrypt_inout_detached(iv, aad, buf.into(), tag)
            .is_ok()
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    fail("panic")
}
