//! The hot paths never touch the heap: a counting global allocator sees no
//! allocation while protect, unprotect, HLS-5, key wrap/unwrap,
//! package/unpackage and the DCO command path run. A test of behaviour,
//! not of time.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

use dlms_sec::counter::SingleUse;
use dlms_sec::key::package::{Packager, RecordId};
use dlms_sec::key::wrap;
use dlms_sec::key::{
    AuthenticationKey, DcoKey, GlobalUnicastEncryptionKey, KeyRole, MasterKey, SharedKey,
};
use dlms_sec::provider::{CommandKeys, CryptoProvider, DcoProvider, EncryptionRecord, SoftwareDco};
use dlms_sec::suite0::PeerTitle;
use dlms_sec::suite0::hls5;
use dlms_sec::suite0::{Protect, Suite0, Unprotect};
use dlms_sec::types::Client;
use dlms_sec::wire::CipheredForm;
use dlms_sec::{InvocationCounter, KeyKind, Protection, SecurityPolicy, SystemTitle};

/// Runs `f` and returns how many allocations it made (allocation-counter
/// installs a counting global allocator in this test binary).
fn allocations(f: impl FnOnce()) -> u64 {
    allocation_counter::measure(f).count_total
}

const TITLE: SystemTitle = SystemTitle::new([0x4D, 0x4D, 0x4D, 0, 0, 0xBC, 0x61, 0x4E]);

#[test]
fn the_counter_counts() {
    // A test that cannot fail is a defect: make sure an allocation is seen.
    assert!(allocations(|| drop(core::hint::black_box(vec![1u8; 100]))) >= 1);
}

#[test]
fn hot_paths_do_not_allocate() {
    let guek = GlobalUnicastEncryptionKey::from_bytes([7; 16]);
    let ak = AuthenticationKey::from_bytes([8; 16]);
    let s = Suite0::new(&guek, &ak);
    let apdu = [0xC0u8; 1024];
    let mut frame = [0u8; 1100];
    let params = Unprotect {
        peer_system_title: PeerTitle::Expected(TITLE),
        policy: SecurityPolicy::AcceptAnyProtection,
    };
    for protection in [
        Protection::Authenticated,
        Protection::Encrypted,
        Protection::AuthenticatedEncrypted,
    ] {
        for form in [
            CipheredForm::ServiceSpecific,
            CipheredForm::General {
                with_system_title: true,
            },
        ] {
            let req = Protect {
                protection,
                key: KeyKind::GlobalUnicast,
                form,
                system_title: TITLE,
            };
            let n = allocations(|| {
                let n = s
                    .protect(
                        &req,
                        &mut SingleUse::dangerous_new(InvocationCounter::new(3)),
                        &apdu,
                        &mut frame,
                    )
                    .unwrap();
                let len = s.unprotect(&mut frame[..n], &params).unwrap().apdu().len();
                assert_eq!(len, apdu.len());
            });
            assert_eq!(n, 0, "{protection:?} {form:?}");
        }
    }
    let challenge = [0x42u8; 16];
    assert_eq!(
        allocations(|| {
            let r = hls5::respond(
                &s,
                &TITLE,
                &mut SingleUse::dangerous_new(InvocationCounter::new(4)),
                &challenge,
            )
            .unwrap();
            let _verified = hls5::verify(&s, &TITLE, &challenge, r.as_bytes()).unwrap();
        }),
        0
    );
    let mk = MasterKey::from_bytes([9; 16]);
    assert_eq!(
        allocations(|| {
            let w = wrap::wrap(&mk, &guek);
            let _: GlobalUnicastEncryptionKey = wrap::unwrap(&mk, &w).unwrap();
        }),
        0
    );
    let packager = Packager::new(&SharedKey::from_bytes([1; 16]));
    let id = RecordId {
        device: TITLE,
        client: Some(Client::Management),
        role: KeyRole::GlobalUnicastEncryption,
        generation: 1,
    };
    assert_eq!(
        allocations(|| {
            let r = packager.package(&guek, id).unwrap();
            packager.unpackage(&r).unwrap();
        }),
        0
    );
    let dco = SoftwareDco::new(
        &DcoKey::from_bytes([2; 16]),
        &SharedKey::from_bytes([1; 16]),
    );
    let pak = dco
        .package(
            &ak,
            RecordId {
                role: KeyRole::Authentication,
                ..id
            },
        )
        .unwrap();
    let pguek = dco.package(&guek, id).unwrap();
    let keys = CommandKeys {
        ak: &pak,
        encryption: EncryptionRecord::GlobalUnicast(&pguek),
    };
    let req = Protect::unicast(Protection::AuthenticatedEncrypted, TITLE);
    assert_eq!(
        allocations(|| {
            let n = dco
                .protect(
                    &keys,
                    &req,
                    &mut SingleUse::dangerous_new(InvocationCounter::new(5)),
                    &apdu[..64],
                    &mut frame,
                )
                .unwrap();
            assert_eq!(
                dco.unprotect(&keys, &mut frame[..n], &params)
                    .unwrap()
                    .apdu()
                    .len(),
                64
            );
        }),
        0
    );
}
