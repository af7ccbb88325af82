//! APDU tags, and the mapping between a plain xDLMS tag and its glo- and
//! ded- ciphered tags (GB 9.2.7.2.4, the ciphered APDU tags).
//!
//! ```text
//! service                    plain  glo-   ded-
//! initiateRequest            0x01   0x21   0x41
//! readRequest (SN)           0x05   0x25   0x45
//! writeRequest (SN)          0x06   0x26   0x46
//! initiateResponse           0x08   0x28   0x48
//! readResponse (SN)          0x0C   0x2C   0x4C
//! writeResponse (SN)         0x0D   0x2D   0x4D
//! confirmedServiceError      0x0E   0x2E   0x4E
//! unconfirmedWriteRequest    0x16   0x36   0x56
//! informationReportRequest   0x18   0x38   0x58
//! get-request                0xC0   0xC8   0xD0
//! set-request                0xC1   0xC9   0xD1
//! event-notification-request 0xC2   0xCA   0xD2
//! action-request             0xC3   0xCB   0xD3
//! get-response               0xC4   0xCC   0xD4
//! set-response               0xC5   0xCD   0xD5
//! action-response            0xC7   0xCF   0xD7
//! ```
//!
//! data-notification (`0x0F`), access (`0xD9`/`0xDA`) and exception-response
//! (`0xD8`) have no service-specific ciphered form: protect the first two
//! with general-glo-ciphering; exception-response always travels in clear.

use core::fmt;

macro_rules! services {
    ($( $(#[$doc:meta])* $name:ident = ($plain:literal, $glo:literal, $ded:literal), )*) => {
        /// An xDLMS service that has glo- and ded- ciphered tags.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Service {
            $( $(#[$doc])* $name, )*
        }

        impl Service {
            /// Every service in the table.
            pub const ALL: &'static [Service] = &[$(Service::$name,)*];

            /// Each service with its plain, glo- and ded- tags (one table
            /// walked by the lookups below: less flash than a `match` per
            /// lookup).
            const TAGS: &'static [(Service, [u8; 3])] = &[$((Service::$name, [$plain, $glo, $ded]),)*];

            /// The plain, glo- and ded- tags of `self`.
            const fn tags(self) -> [u8; 3] {
                let mut rest = Self::TAGS;
                while let [(service, tags), tail @ ..] = rest {
                    if *service as u8 == self as u8 {
                        return *tags;
                    }
                    rest = tail;
                }
                [0; 3]
            }

            /// The tag of the unprotected APDU.
            #[must_use]
            pub const fn plain_tag(self) -> u8 {
                self.tags()[0]
            }

            /// The ciphered tag for `family`.
            #[must_use]
            pub const fn ciphered_tag(self, family: KeyFamily) -> u8 {
                let [_, glo, ded] = self.tags();
                match family {
                    KeyFamily::Global => glo,
                    KeyFamily::Dedicated => ded,
                }
            }

            /// The service whose plain tag is `tag`.
            #[must_use]
            pub const fn from_plain_tag(tag: u8) -> Option<Self> {
                let mut rest = Self::TAGS;
                while let [(service, [plain, ..]), tail @ ..] = rest {
                    if *plain == tag {
                        return Some(*service);
                    }
                    rest = tail;
                }
                None
            }

            /// The service and key family of a ciphered tag.
            #[must_use]
            pub const fn from_ciphered_tag(tag: u8) -> Option<CipheredService> {
                let mut rest = Self::TAGS;
                while let [(service, [_, glo, ded]), tail @ ..] = rest {
                    let family = if *glo == tag {
                        KeyFamily::Global
                    } else if *ded == tag {
                        KeyFamily::Dedicated
                    } else {
                        rest = tail;
                        continue;
                    };
                    return Some(CipheredService { service: *service, family });
                }
                None
            }
        }
    };
}

services! {
    /// initiateRequest (AARQ user-information).
    InitiateRequest = (0x01, 0x21, 0x41),
    /// readRequest (SN referencing).
    ReadRequest = (0x05, 0x25, 0x45),
    /// writeRequest (SN referencing).
    WriteRequest = (0x06, 0x26, 0x46),
    /// initiateResponse (AARE user-information).
    InitiateResponse = (0x08, 0x28, 0x48),
    /// readResponse (SN referencing).
    ReadResponse = (0x0C, 0x2C, 0x4C),
    /// writeResponse (SN referencing).
    WriteResponse = (0x0D, 0x2D, 0x4D),
    /// confirmedServiceError.
    ConfirmedServiceError = (0x0E, 0x2E, 0x4E),
    /// unconfirmedWriteRequest (SN referencing).
    UnconfirmedWriteRequest = (0x16, 0x36, 0x56),
    /// informationReportRequest (SN referencing).
    InformationReportRequest = (0x18, 0x38, 0x58),
    /// get-request.
    GetRequest = (0xC0, 0xC8, 0xD0),
    /// set-request.
    SetRequest = (0xC1, 0xC9, 0xD1),
    /// event-notification-request.
    EventNotificationRequest = (0xC2, 0xCA, 0xD2),
    /// action-request.
    ActionRequest = (0xC3, 0xCB, 0xD3),
    /// get-response.
    GetResponse = (0xC4, 0xCC, 0xD4),
    /// set-response.
    SetResponse = (0xC5, 0xCD, 0xD5),
    /// action-response.
    ActionResponse = (0xC7, 0xCF, 0xD7),
}

/// Global keys (glo- tags) or the dedicated key (ded- tags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyFamily {
    /// glo- tags: the global unicast or broadcast key.
    Global,
    /// ded- tags: the dedicated key.
    Dedicated,
}

/// A service-specific ciphered tag: which service, under which key family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CipheredService {
    /// The protected service.
    pub service: Service,
    /// glo- or ded-.
    pub family: KeyFamily,
}

impl CipheredService {
    /// The ciphered tag byte.
    #[must_use]
    pub const fn tag(self) -> u8 {
        self.service.ciphered_tag(self.family)
    }

    /// The plain tag the protected APDU must carry.
    #[must_use]
    pub const fn plain_tag(self) -> u8 {
        self.service.plain_tag()
    }
}

macro_rules! apdu_tags {
    ($( $(#[$doc:meta])* $name:ident = $value:literal, )*) => {
        /// The leading tag of an APDU that the security layer handles or
        /// must recognise. Unknown values are kept, so reading a tag never
        /// fails; the parsers reject what they cannot use.
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ApduTag {
            $( $(#[$doc])* $name, )*
            /// Any other tag byte.
            Unknown(u8),
        }

        impl From<u8> for ApduTag {
            fn from(b: u8) -> Self {
                match b { $( $value => Self::$name, )* other => Self::Unknown(other) }
            }
        }

        impl From<ApduTag> for u8 {
            fn from(t: ApduTag) -> u8 {
                match t { $( ApduTag::$name => $value, )* ApduTag::Unknown(b) => b }
            }
        }
    };
}

apdu_tags! {
    /// data-notification (push); no glo-/ded- form.
    DataNotification = 0x0F,
    /// exception-response; never ciphered.
    ExceptionResponse = 0xD8,
    /// access-request.
    AccessRequest = 0xD9,
    /// access-response.
    AccessResponse = 0xDA,
    /// general-glo-ciphering.
    GeneralGloCiphering = 0xDB,
    /// general-ded-ciphering.
    GeneralDedCiphering = 0xDC,
    /// general-ciphering.
    GeneralCiphering = 0xDD,
    /// general-signing (suites 1 and 2; not supported).
    GeneralSigning = 0xDF,
    /// general-block-transfer.
    GeneralBlockTransfer = 0xE0,
    /// ACSE AARQ.
    Aarq = 0x60,
    /// ACSE AARE.
    Aare = 0x61,
    /// ACSE RLRQ.
    Rlrq = 0x62,
    /// ACSE RLRE.
    Rlre = 0x63,
}

impl ApduTag {
    /// The tag byte.
    #[must_use]
    pub fn byte(self) -> u8 {
        self.into()
    }
}

impl fmt::Debug for ApduTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b: u8 = (*self).into();
        if let Some(c) = Service::from_ciphered_tag(b) {
            return write!(f, "ApduTag(0x{b:02X} {:?} {:?})", c.family, c.service);
        }
        if let Some(s) = Service::from_plain_tag(b) {
            return write!(f, "ApduTag(0x{b:02X} {s:?})");
        }
        match self {
            Self::Unknown(_) => write!(f, "ApduTag(0x{b:02X} unknown)"),
            // Named variants print their name through this arm.
            _ => write!(f, "ApduTag(0x{b:02X})"),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use alloc::format;

    use super::*;

    #[test]
    fn debug_names_the_tag_and_what_it_is() {
        assert_eq!(
            format!("{:?}", ApduTag::from(0xC8)),
            "ApduTag(0xC8 Global GetRequest)"
        );
        assert_eq!(
            format!("{:?}", ApduTag::from(0xC0)),
            "ApduTag(0xC0 GetRequest)"
        );
        assert_eq!(
            format!("{:?}", ApduTag::from(0x01)),
            "ApduTag(0x01 InitiateRequest)"
        );
        assert_eq!(
            format!("{:?}", ApduTag::from(0x7E)),
            "ApduTag(0x7E unknown)"
        );
    }

    #[test]
    fn table_maps_both_ways() {
        assert_eq!(Service::ALL.len(), 16);
        for &s in Service::ALL {
            for fam in [KeyFamily::Global, KeyFamily::Dedicated] {
                let t = s.ciphered_tag(fam);
                assert_eq!(
                    Service::from_ciphered_tag(t),
                    Some(CipheredService {
                        service: s,
                        family: fam
                    })
                );
                assert_eq!(Service::from_plain_tag(t), None);
            }
            assert_eq!(Service::from_plain_tag(s.plain_tag()), Some(s));
            assert_eq!(Service::from_ciphered_tag(s.plain_tag()), None);
        }
    }

    #[test]
    fn pattern_matches_the_tag_table() {
        // glo = plain + 0x20 / ded = plain + 0x40 below 0x80; +0x08 / +0x10 for LN.
        for &s in Service::ALL {
            let p = s.plain_tag();
            let (g, d) = if p < 0x80 { (0x20, 0x40) } else { (0x08, 0x10) };
            assert_eq!(s.ciphered_tag(KeyFamily::Global), p + g);
            assert_eq!(s.ciphered_tag(KeyFamily::Dedicated), p + d);
        }
        assert_eq!(Service::GetRequest.ciphered_tag(KeyFamily::Global), 0xC8);
        assert_eq!(
            Service::ActionResponse.ciphered_tag(KeyFamily::Dedicated),
            0xD7
        );
    }

    #[test]
    fn no_ciphered_form_for_push_access_exception() {
        for t in [0x0F, 0xD8, 0xD9, 0xDA, 0xC6, 0xCE, 0xD6] {
            assert_eq!(Service::from_plain_tag(t), None);
            assert_eq!(Service::from_ciphered_tag(t), None);
        }
    }

    #[test]
    fn apdu_tag_round_trips_every_byte() {
        for b in 0..=255u8 {
            assert_eq!(u8::from(ApduTag::from(b)), b);
        }
        assert_eq!(ApduTag::from(0xDB), ApduTag::GeneralGloCiphering);
    }
}
