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

/// The meter endpoint's request path (unprotect, serve, protect) and a
/// key_transfer through it allocate nothing.
#[test]
fn the_meter_endpoint_does_not_allocate() {
    use dlms_sec::counter::SendCounter;
    use dlms_sec::key::wrap::KeyId;
    use dlms_sec::meter::key_transfer::SecuritySetupKeys;
    use dlms_sec::meter::{DeviceCapabilities, Endpoint, InMemoryFloors, OneCounter, Served};
    use dlms_sec::wire::{KeyTransfer, SecuritySetupMethod};

    let head_end = SystemTitle::new(*b"DCO\x00\x00\x00\x00\x01");
    let mk = [0x0F; 16];
    let mut m = Endpoint::smets1(
        TITLE,
        MasterKey::from_bytes(mk),
        OneCounter(SendCounter::volatile(InvocationCounter::new(1))),
        InMemoryFloors::<5>::new(),
        DeviceCapabilities::default(),
    );
    m.provision(
        Client::Management,
        head_end,
        SecuritySetupKeys::new(
            GlobalUnicastEncryptionKey::from_bytes([7; 16]),
            AuthenticationKey::from_bytes([8; 16]),
        ),
        SecurityPolicy::AuthenticatedEncrypted,
    )
    .unwrap();
    let client = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes([7; 16]),
        &AuthenticationKey::from_bytes([8; 16]),
    );
    let req = Protect::unicast(Protection::AuthenticatedEncrypted, head_end);
    let get = [
        0xC0u8, 0x01, 0xC1, 0x00, 0x08, 0, 0, 1, 0, 0, 0xFF, 0x02, 0x00,
    ];
    let mut transfer = KeyTransfer::new();
    transfer
        .push(
            KeyId::Authentication,
            wrap::wrap(
                &MasterKey::from_bytes(mk),
                &AuthenticationKey::from_bytes([9; 16]),
            ),
        )
        .unwrap();
    let mut action = [0u8; 64];
    let n = SecuritySetupMethod::default()
        .emit_key_transfer_request(&transfer, &mut action)
        .unwrap();
    let mut get_frame = [0u8; 64];
    let g = client
        .protect(
            &req,
            &mut SendCounter::volatile(InvocationCounter::new(1)),
            &get,
            &mut get_frame,
        )
        .unwrap();
    let mut kt_frame = [0u8; 128];
    let k = client
        .protect(
            &req,
            &mut SendCounter::volatile(InvocationCounter::new(2)),
            &action[..n],
            &mut kt_frame,
        )
        .unwrap();
    let mut out = [0u8; 128];
    let mut installed = false;
    let count = allocations(|| {
        let request = m
            .unprotect(Client::Management, &mut get_frame[..g])
            .unwrap();
        match m.serve(request, &mut out).unwrap() {
            Served::Application(r) => {
                m.protect(&r, &[0xC4, 0x01, 0xC1, 0x00, 0x11, 0x00], &mut out)
                    .unwrap();
            }
            Served::Answered { .. } => {}
        }
        let request = m.unprotect(Client::Management, &mut kt_frame[..k]).unwrap();
        installed = matches!(
            m.serve(request, &mut out).unwrap(),
            Served::Answered {
                outcome: dlms_sec::meter::Outcome::KeysInstalled,
                ..
            }
        );
    });
    assert!(installed);
    assert_eq!(count, 0);
}
