//! Readable names for tags, forms and keys.

use dlms_sec::KeyKind;
use dlms_sec::wire::{ApduTag, FrameKind, KeyFamily, Service};

/// The service's name, as in the Green Book's ASN.1 (kebab case).
pub(crate) const fn service(s: Service) -> &'static str {
    match s {
        Service::InitiateRequest => "initiate-request",
        Service::ReadRequest => "read-request",
        Service::WriteRequest => "write-request",
        Service::InitiateResponse => "initiate-response",
        Service::ReadResponse => "read-response",
        Service::WriteResponse => "write-response",
        Service::ConfirmedServiceError => "confirmed-service-error",
        Service::UnconfirmedWriteRequest => "unconfirmed-write-request",
        Service::InformationReportRequest => "information-report-request",
        Service::GetRequest => "get-request",
        Service::SetRequest => "set-request",
        Service::EventNotificationRequest => "event-notification-request",
        Service::ActionRequest => "action-request",
        Service::GetResponse => "get-response",
        Service::SetResponse => "set-response",
        Service::ActionResponse => "action-response",
    }
}

/// The name of a ciphered APDU's outer tag.
pub(crate) fn ciphered_tag(kind: &FrameKind) -> String {
    match kind {
        FrameKind::Service(c) => {
            let prefix = match c.family {
                KeyFamily::Global => "glo",
                KeyFamily::Dedicated => "ded",
            };
            format!("{prefix}-{}", service(c.service))
        }
        FrameKind::GeneralGlo => "general-glo-ciphering".to_owned(),
        FrameKind::GeneralDed => "general-ded-ciphering".to_owned(),
        FrameKind::GeneralCiphering { .. } => "general-ciphering".to_owned(),
    }
}

/// The name of the frame's form.
pub(crate) const fn form(kind: &FrameKind) -> &'static str {
    match kind {
        FrameKind::Service(_) => "service-specific",
        FrameKind::GeneralGlo => "general-glo-ciphering",
        FrameKind::GeneralDed => "general-ded-ciphering",
        FrameKind::GeneralCiphering { .. } => "general-ciphering",
    }
}

/// The name of a plain (unprotected) APDU tag, when it is one we know.
pub(crate) fn plain_tag(tag: u8) -> Option<&'static str> {
    if let Some(s) = Service::from_plain_tag(tag) {
        return Some(service(s));
    }
    match ApduTag::from(tag) {
        ApduTag::DataNotification => Some("data-notification"),
        ApduTag::ExceptionResponse => Some("exception-response"),
        ApduTag::AccessRequest => Some("access-request"),
        ApduTag::AccessResponse => Some("access-response"),
        ApduTag::GeneralBlockTransfer => Some("general-block-transfer"),
        ApduTag::Aarq => Some("aarq"),
        ApduTag::Aare => Some("aare"),
        ApduTag::Rlrq => Some("rlrq"),
        ApduTag::Rlre => Some("rlre"),
        _ => None,
    }
}

/// The name of a key kind.
pub(crate) const fn key(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::GlobalUnicast => "global-unicast",
        KeyKind::GlobalBroadcast => "global-broadcast",
        KeyKind::Dedicated => "dedicated",
    }
}
