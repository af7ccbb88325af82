//! Audit v2 from the services: the S1SP names its node and a campaign its
//! id in every event, and packaged records are given to a person only for
//! support, each access or refusal recorded with who asked and why
//! ((d)(iv), R-15, R-20).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "test code: a panic is a failed test"
)]

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use common::TestRng;
use dlms_sec::SystemTitle;
use dlms_sec::audit::{
    AuditAction, AuditContext, CampaignId, NodeName, Outcome, Principal, PrincipalName, Reason,
    Recorder, RequestId,
};
use dlms_sec::counter::Volatile;
use dlms_sec::error::{Error, KeyError};
use dlms_sec::key::KeyRole;
use dlms_sec::keystore::{KeySlot, KeyStore};
use dlms_sec::types::{Client, Protection};
use dlms_sec_meter_sim::Meter;
use dlms_sec_services::counters::{MemoryCounters, PerKeyCounters};
use dlms_sec_services::dco::{ClientRecords, Command};
use dlms_sec_services::s1sp::{MeterLink, RotationContext, Scope};
use std::num::NonZeroU32;
use support::{CLIENT, EventLog, M1, T0, commissioned, introduce_all};

struct Direct(Meter<Volatile>);

impl MeterLink for Direct {
    fn exchange(
        &mut self,
        _device: SystemTitle,
        client: Client,
        request: &mut [u8],
        response: &mut [u8],
    ) -> dlms_sec::Result<usize> {
        Ok(self.0.handle(client, request, response)?.0)
    }
}

fn slots() -> [KeySlot; 3] {
    [
        KeySlot {
            device: M1,
            client: None,
            role: KeyRole::Master,
        },
        KeySlot {
            device: M1,
            client: Some(CLIENT),
            role: KeyRole::Authentication,
        },
        KeySlot {
            device: M1,
            client: Some(CLIENT),
            role: KeyRole::GlobalUnicastEncryption,
        },
    ]
}

fn alice() -> Principal {
    Principal::operator("alice").unwrap()
}

#[test]
fn a_privileged_person_gets_packaged_records_for_support_and_it_is_recorded() {
    let (_, mut s1sp, _) = commissioned(&mut TestRng::new(3), false);
    s1sp.set_privileged_persons(&[PrincipalName::new("alice").unwrap()]);
    let mut log = EventLog::new();
    let request = RequestId([0x5E; 16]);
    let mut audit =
        Recorder::new(&mut log, T0).with_context(AuditContext::new().with_request(request));
    let records = s1sp
        .support_access(Some(alice()), Reason::SupportAccess, &slots(), &mut audit)
        .unwrap();
    // The records as stored: still packaged.
    for (r, s) in records.iter().zip(slots()) {
        assert_eq!(*r, s1sp.store().active(&s).unwrap());
    }
    let events = log.events();
    assert_eq!(events.len(), 3);
    for (e, (s, r)) in events.iter().zip(slots().iter().zip(&records)) {
        assert_eq!(
            (e.action, e.outcome),
            (AuditAction::RecordAccessed, Outcome::Success)
        );
        assert_eq!(e.context.principal, Some(alice()));
        assert_eq!(e.context.reason, Some(Reason::SupportAccess));
        assert_eq!(e.context.request, Some(request));
        assert_eq!(e.context.node, Some(NodeName::new("local").unwrap()));
        assert_eq!(
            (e.device, e.client, e.role),
            (Some(s.device), s.client, Some(s.role))
        );
        assert_eq!(e.generation, Some(r.generation()));
        assert_eq!(e.kek, Some(r.kek_check_value()));
    }
}

#[test]
fn access_without_a_privileged_person_or_a_support_reason_is_refused_and_recorded() {
    let (_, mut s1sp, _) = commissioned(&mut TestRng::new(4), false);
    s1sp.set_privileged_persons(&[PrincipalName::new("alice").unwrap()]);
    let cases = [
        (None, Reason::SupportAccess),
        (Some(alice()), Reason::Operation),
        (Some(alice()), Reason::CompromiseCampaign),
        // A service identity of the same name is not a person.
        (
            Some(Principal::service("alice").unwrap()),
            Reason::SupportAccess,
        ),
        // A person not named privileged.
        (
            Some(Principal::operator("mallory").unwrap()),
            Reason::SupportAccess,
        ),
    ];
    for (principal, reason) in cases {
        let mut log = EventLog::new();
        let got = s1sp.support_access(
            principal,
            reason,
            &slots()[1..],
            &mut Recorder::new(&mut log, T0),
        );
        assert_eq!(
            got,
            Err(Error::Key(KeyError::AccessDenied)),
            "{principal:?} {reason}"
        );
        assert_eq!(log.events().len(), 2, "one refusal per slot asked for");
        for (e, s) in log.events().iter().zip(&slots()[1..]) {
            assert_eq!(
                (e.action, e.outcome),
                (AuditAction::RecordAccessed, Outcome::Refused)
            );
            assert_eq!(e.context.principal, principal);
            assert_eq!(e.context.reason, Some(reason));
            assert_eq!((e.device, e.role), (Some(s.device), Some(s.role)));
        }
    }
    // Nobody is privileged until named.
    let (_, s1sp, _) = commissioned(&mut TestRng::new(5), false);
    let mut log = EventLog::new();
    assert_eq!(
        s1sp.support_access(
            Some(alice()),
            Reason::SupportAccess,
            &slots(),
            &mut Recorder::new(&mut log, T0)
        ),
        Err(Error::Key(KeyError::AccessDenied))
    );
    assert_eq!(log.events().len(), 3);
}

#[test]
fn a_support_access_whose_record_cannot_be_written_gives_nothing() {
    let (_, mut s1sp, _) = commissioned(&mut TestRng::new(6), false);
    s1sp.set_privileged_persons(&[PrincipalName::new("alice").unwrap()]);
    let mut full = dlms_sec::audit::MemoryAuditLog::<2>::new();
    assert_eq!(
        s1sp.support_access(
            Some(alice()),
            Reason::SupportAccess,
            &slots(),
            &mut Recorder::new(&mut full, T0)
        ),
        Err(Error::Audit)
    );
}

#[test]
fn a_campaign_names_its_id_and_the_node_in_every_event() {
    let mut rng = TestRng::new(8);
    let (dco, mut s1sp, meter) = commissioned(&mut rng, true);
    let dco = dco.with_node(NodeName::new("dco-1").unwrap());
    let mut counters = PerKeyCounters::new(MemoryCounters::new(), NonZeroU32::MIN);
    introduce_all(&dco, &s1sp, &mut counters);
    let mut log = EventLog::new();
    let mut link = Direct(meter);
    let principal = Principal::service("scheduler").unwrap();
    let mut cx = RotationContext {
        dco: &dco,
        link: &mut link,
        counters: &mut counters,
        audit: Recorder::new(&mut log, T0).with_context(
            AuditContext::new()
                .with_principal(principal)
                .with_reason(Reason::CompromiseCampaign),
        ),
        rng: &mut rng,
    };
    let report = s1sp.campaign(&mut cx, "compromise-7", Scope::All).unwrap();
    assert!(!report.resumed);
    // The caller's context is given back as it was.
    assert_eq!(cx.audit.context().campaign, None);
    assert_eq!(cx.audit.context().node, None);
    let events = log.events();
    assert!(events.iter().any(|e| e.action == AuditAction::Activated));
    assert!(events.iter().any(|e| e.action == AuditAction::TransferSent));
    for e in events {
        assert_eq!(
            e.context.campaign,
            Some(CampaignId::new("compromise-7").unwrap())
        );
        assert_eq!(e.context.principal, Some(principal));
        assert_eq!(e.context.reason, Some(Reason::CompromiseCampaign));
        // The S1SP names itself first; the DCO's calls keep that name.
        assert_eq!(e.context.node, Some(NodeName::new("local").unwrap()));
    }

    // The DCO called on its own names itself.
    let (ak, guek) = s1sp.active_records(M1, CLIENT).unwrap();
    let mut log = EventLog::new();
    let mut out = [0u8; 128];
    dco.protect(
        &Command {
            records: ClientRecords::new(&ak, &guek),
            protection: Protection::AuthenticatedEncrypted,
            apdu: &[
                0xC0, 0x01, 0xC1, 0x00, 0x01, 0, 0, 0x2A, 0, 0, 0xFF, 0x02, 0x00,
            ],
        },
        &mut counters,
        &mut out,
        &mut Recorder::new(&mut log, T0),
    )
    .unwrap();
    assert!(!log.events().is_empty());
    for e in log.events() {
        assert_eq!(e.context.node, Some(NodeName::new("dco-1").unwrap()));
    }
}
