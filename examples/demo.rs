//! The main demonstration: a client (head-end) and a meter talk suite 0.
//!
//! 1. HLS-5: each side answers the other's challenge with GMAC.
//! 2. The client sends a glo-get-request under authenticated encryption;
//!    the meter verifies, decrypts, and answers with a glo-get-response.
//! 3. A replayed frame, a tampered frame and a downgraded frame are refused.
//! 4. A push (data-notification) travels as general-glo-ciphering.
//!
//! Run: `cargo run --example demo`

#![allow(
    clippy::indexing_slicing,
    reason = "frames are sliced to the lengths protect returned"
)]

use core::num::NonZeroU32;
use dlms_sec::suite0::PeerTitle;

use dlms_sec::counter::{CounterKey, InMemoryCounterStore, SendCounter};
use dlms_sec::key::{AuthenticationKey, GlobalUnicastEncryptionKey};
use dlms_sec::suite0::hls5;
use dlms_sec::suite0::{Protect, Suite0, Unprotect};
use dlms_sec::wire::CipheredForm;
use dlms_sec::{Client, InvocationCounter, KeyKind, Protection, SecurityPolicy, SystemTitle};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn main() -> Result<(), dlms_sec::Error> {
    // Green Book example keys and titles.
    let guek = [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E,
        0x0F,
    ];
    let ak = [
        0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE,
        0xDF,
    ];
    let client_title = SystemTitle::new(*b"MMM\x00\x00\x00\x00\x01");
    let meter_title = SystemTitle::new([0x4D, 0x4D, 0x4D, 0x00, 0x00, 0xBC, 0x61, 0x4E]);

    let client = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(guek),
        &AuthenticationKey::from_bytes(ak),
    );
    let meter = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(guek),
        &AuthenticationKey::from_bytes(ak),
    );

    // Counters persisted with reserve-ahead: one store write per 16 values.
    let block = NonZeroU32::new(16).ok_or(dlms_sec::Error::Misuse("zero block"))?;
    let mut client_ic = SendCounter::new_key(
        CounterKey::new(
            client_title,
            meter_title,
            Client::Management,
            KeyKind::GlobalUnicast,
            0,
        ),
        InvocationCounter::new(1),
        block,
        InMemoryCounterStore::<4>::new(),
    )?;
    let mut meter_ic = SendCounter::new_key(
        CounterKey::own(meter_title, Client::Management, KeyKind::GlobalUnicast, 0),
        InvocationCounter::new(0x0123_4567),
        block,
        InMemoryCounterStore::<4>::new(),
    )?;
    let mut meter_guard = meter.replay_guard(client_title, KeyKind::GlobalUnicast)?;
    let mut client_guard = client.replay_guard(meter_title, KeyKind::GlobalUnicast)?;

    println!("== HLS-5 (GMAC) association authentication");
    let ctos = *b"K56iVagY";
    let stoc = *b"P6wRJ21F";
    let f_stoc = hls5::respond(&client, &client_title, &mut client_ic, &stoc)?;
    println!("client f(StoC) = {}", hex(f_stoc.as_bytes()));
    let checked = hls5::verify(&meter, &client_title, &stoc, f_stoc.as_bytes())?;
    println!(
        "meter verified the client (IC {})",
        checked.invocation_counter().value()
    );
    let f_ctos = hls5::respond(&meter, &meter_title, &mut meter_ic, &ctos)?;
    println!("meter  f(CtoS) = {}", hex(f_ctos.as_bytes()));
    let _verified = hls5::verify(&client, &meter_title, &ctos, f_ctos.as_bytes())?;
    println!("client verified the meter");

    println!("\n== glo-get-request, authenticated encryption");
    let get_clock = [
        0xC0, 0x01, 0xC1, 0x00, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0xFF, 0x02, 0x00,
    ];
    let request = Protect::unicast(Protection::AuthenticatedEncrypted, client_title);
    let mut frame = [0u8; 128];
    let n = client.protect(&request, &mut client_ic, &get_clock, &mut frame)?;
    let sent = frame[..n].to_vec();
    println!("client -> meter {}", hex(&sent));

    let policy = Unprotect {
        peer_system_title: PeerTitle::Expected(client_title),
        policy: SecurityPolicy::AuthenticatedEncrypted,
    };
    let got = meter.unprotect(&mut frame[..n], &policy)?;
    got.admit_into(&mut meter_guard)?;
    println!(
        "meter read      {} (IC {})",
        hex(got.apdu()),
        got.invocation_counter().value()
    );

    let response_apdu = [
        0xC4, 0x01, 0xC1, 0x00, 0x09, 0x0C, 0x07, 0xEA, 0x0B, 0x19, 0x03, 0x0F, 0x00, 0x00, 0x00,
        0x80, 0x00, 0x00,
    ];
    let response = Protect {
        system_title: meter_title,
        ..request
    };
    let mut rframe = [0u8; 128];
    let rn = meter.protect(&response, &mut meter_ic, &response_apdu, &mut rframe)?;
    println!("meter -> client {}", hex(&rframe[..rn]));
    let back = Unprotect {
        peer_system_title: PeerTitle::Expected(meter_title),
        policy: SecurityPolicy::AuthenticatedEncrypted,
    };
    let got = client.unprotect(&mut rframe[..rn], &back)?;
    got.admit_into(&mut client_guard)?;
    println!("client read     {}", hex(got.apdu()));

    println!("\n== what the meter refuses");
    let mut replay = sent.clone();
    let verdict = meter
        .unprotect(&mut replay, &policy)
        .and_then(|g| g.admit_into(&mut meter_guard).map_err(Into::into));
    println!("replayed frame:   {:?}", verdict.err());
    let mut tampered = sent.clone();
    tampered[9] ^= 0x01;
    println!(
        "tampered frame:   {:?}",
        meter.unprotect(&mut tampered, &policy).err()
    );
    let mut downgraded = sent.clone();
    downgraded[2] = 0x20;
    println!(
        "downgraded frame: {:?}",
        meter.unprotect(&mut downgraded, &policy).err()
    );

    println!("\n== push as general-glo-ciphering (data-notification has no glo- tag)");
    let push = [
        0x0F, 0x00, 0x00, 0x00, 0x01, 0x00, 0x09, 0x04, 0x00, 0x00, 0x12, 0x34,
    ];
    let push_req = Protect {
        form: CipheredForm::General {
            with_system_title: true,
        },
        ..response
    };
    let pn = meter.protect(&push_req, &mut meter_ic, &push, &mut rframe)?;
    println!("meter push      {}", hex(&rframe[..pn]));
    let got = client.unprotect(
        &mut rframe[..pn],
        &Unprotect {
            peer_system_title: PeerTitle::CarriedByFrame,
            policy: SecurityPolicy::AcceptAnyProtection,
        },
    )?;
    println!(
        "client read     {} from {:?}",
        hex(got.apdu()),
        got.system_title()
    );
    println!(
        "\nmeter counter: next {:?}, {} store writes",
        meter_ic.peek().map(InvocationCounter::value),
        meter_ic.store().write_count()
    );
    Ok(())
}
