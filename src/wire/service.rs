//! Service-specific glo- and ded- ciphered APDUs (GB Table 40; GB 9.2.7.2.4, the ciphered APDU tags).
//!
//! ```text
//! +-----+------------+---------------------------------------------+
//! | tag | A-XDR len  | SC | IC(4) | payload | [T(12)]               |
//! +-----+------------+---------------------------------------------+
//!                     \____________ len counts all of this _______/
//! ```
//! The tag is the glo- or ded- form of the protected APDU's own tag
//! (`0xC8` glo-get-request, `0xD0` ded-get-request, ...). The length must
//! end exactly at the end of the buffer.

use crate::error::{Error, WireError};
use crate::wire::axdr::{self, Writer};
use crate::wire::header::{CipheredContentFrame, CipheredContentRepr};
use crate::wire::{CipheredService, Service};

/// A read/write view of a service-specific glo-/ded- ciphered APDU.
///
/// Made only by [`Self::new_checked`], which validates the whole frame and
/// remembers where the ciphered content starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFrame<T: AsRef<[u8]>> {
    buffer: T,
    service: CipheredService,
    content_start: usize,
}

/// Reads the outer structure of a service-specific frame: the ciphered
/// service and where its content starts.
fn check(bytes: &[u8]) -> Result<(CipheredService, usize), WireError> {
    let (&tag, rest) = bytes.split_first().ok_or(WireError::Truncated)?;
    let service = Service::from_ciphered_tag(tag).ok_or(WireError::UnexpectedTag(tag))?;
    let content = axdr::decode_final_octet_string(rest)?;
    CipheredContentFrame::new_checked(content)?;
    let content_start = bytes
        .len()
        .checked_sub(content.len())
        .ok_or(WireError::InvalidLength)?;
    Ok((service, content_start))
}

impl<T: AsRef<[u8]>> ServiceFrame<T> {
    /// Validates `buffer` as one complete service-specific ciphered APDU.
    ///
    /// # Errors
    /// * [`WireError::Truncated`] when the buffer ends early (including
    ///   content too short for its header, or for its tag when the A bit
    ///   is set);
    /// * [`WireError::UnexpectedTag`] when the first octet is not a glo- or
    ///   ded- service tag;
    /// * [`WireError::InvalidLength`] / [`WireError::NonMinimalLength`] for a
    ///   bad A-XDR length;
    /// * [`WireError::TrailingBytes`] when bytes follow the content.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let (service, content_start) = check(buffer.as_ref())?;
        Ok(Self {
            buffer,
            service,
            content_start,
        })
    }

    /// The ciphered service named by the tag.
    pub const fn ciphered_service(&self) -> CipheredService {
        self.service
    }

    /// The tag byte.
    pub const fn tag(&self) -> u8 {
        self.service.tag()
    }

    /// Offset of the ciphered content (SC) in the buffer.
    pub const fn content_offset(&self) -> usize {
        self.content_start
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> ServiceFrame<&'a T> {
    /// The ciphered content SC ‖ IC ‖ payload ‖ \[T\], already checked.
    #[must_use]
    pub fn content(&self) -> CipheredContentFrame<&'a [u8]> {
        let bytes: &'a [u8] = self.buffer.as_ref();
        CipheredContentFrame::new_unchecked(bytes.get(self.content_start..).unwrap_or_default())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ServiceFrame<T> {
    /// The ciphered content, mutably (for in-place decryption). Writing
    /// through it keeps the outer length valid; changing the A bit does not.
    pub fn content_mut(&mut self) -> CipheredContentFrame<&mut [u8]> {
        let start = self.content_start;
        CipheredContentFrame::new_unchecked(
            self.buffer.as_mut().get_mut(start..).unwrap_or_default(),
        )
    }
}

/// The contents of a service-specific glo-/ded- ciphered APDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceRepr<'a> {
    /// Which service, under which key family (the tag).
    pub service: CipheredService,
    /// SC ‖ IC ‖ payload ‖ \[T\].
    pub content: CipheredContentRepr<'a>,
}

impl<'a> ServiceRepr<'a> {
    /// Reads a checked view.
    ///
    /// # Errors
    /// As [`CipheredContentRepr::parse`] (cannot fail on a view made by
    /// [`ServiceFrame::new_checked`]).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &ServiceFrame<&'a T>) -> Result<Self, WireError> {
        Ok(Self {
            service: frame.ciphered_service(),
            content: CipheredContentRepr::parse(&frame.content())?,
        })
    }

    /// Validates and reads `bytes` (one whole frame).
    ///
    /// # Errors
    /// As [`ServiceFrame::new_checked`].
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Self, WireError> {
        Self::parse(&ServiceFrame::new_checked(bytes)?)
    }

    /// The encoded length: tag + A-XDR length + content.
    ///
    /// # Errors
    /// [`WireError::InvalidLength`] when the content is longer than an
    /// A-XDR length can say (`u32::MAX`) or the sum overflows `usize`.
    pub fn buffer_len(&self) -> Result<usize, WireError> {
        axdr::octet_string_len(self.content.buffer_len())?
            .checked_add(1)
            .ok_or(WireError::InvalidLength)
    }

    /// Writes the frame at the start of `out`; returns the number of octets
    /// written ([`Self::buffer_len`]).
    ///
    /// # Errors
    /// As [`Self::buffer_len`]; [`Error::Misuse`] when the tag presence
    /// disagrees with the A bit; [`Error::BufferTooSmall`] when `out` is
    /// too short.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, Error> {
        self.content.check_consistent()?;
        let total = self.buffer_len()?;
        let dst = out
            .get_mut(..total)
            .ok_or(Error::BufferTooSmall { required: total })?;
        let mut w = Writer::new(dst);
        w.put_u8(self.service.tag())?;
        w.put_length(self.content.buffer_len())?;
        let start = w.position();
        let rest = dst
            .get_mut(start..)
            .ok_or(Error::BufferTooSmall { required: total })?;
        let n = self.content.emit(rest)?;
        start
            .checked_add(n)
            .ok_or(Error::Wire(WireError::InvalidLength))
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::wire::KeyFamily;
    use crate::wire::header::tests::{CONTENT_AE, CONTENT_E, repr_ae};

    /// GB Table 40 A+E as a glo-get-request (vectors/README.md).
    static FRAME_AE: [u8; 32] = {
        let mut f = [0u8; 32];
        f[0] = 0xC8;
        f[1] = 0x1E;
        let mut i = 0;
        while i < 30 {
            f[i + 2] = CONTENT_AE[i];
            i += 1;
        }
        f
    };

    fn hex(s: &str) -> alloc::vec::Vec<u8> {
        hex::decode(s).unwrap()
    }

    extern crate alloc;

    #[test]
    fn known_good_vectors() {
        assert_eq!(
            FRAME_AE[..],
            hex("C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B")[..]
        );
        let e = hex("C8122001234567411312FF935A47566827C467BC");
        let r = ServiceRepr::parse_bytes(&e).unwrap();
        assert_eq!(r.content.payload, &CONTENT_E[5..]);
        assert_eq!(r.content.auth_tag, None);
        let mut out = [0u8; 20];
        assert_eq!(r.emit(&mut out), Ok(20));
        assert_eq!(out[..], e[..]);
    }

    #[test]
    fn test_deconstruct() {
        let f = ServiceFrame::new_checked(&FRAME_AE[..]).unwrap();
        assert_eq!(
            f.ciphered_service(),
            CipheredService {
                service: Service::GetRequest,
                family: KeyFamily::Global
            }
        );
        assert_eq!(f.tag(), 0xC8);
        assert_eq!(f.content_offset(), 2);
        let c = f.content();
        assert_eq!(c.security_control().bits(), 0x30);
        assert_eq!(c.invocation_counter().value(), 0x0123_4567);
        assert_eq!(c.payload(), &CONTENT_AE[5..18]);
        assert_eq!(c.auth_tag().map(|t| &t[..]), Some(&CONTENT_AE[18..]));
    }

    #[test]
    fn test_construct() {
        let mut buf = FRAME_AE;
        buf[2..].fill(0);
        buf[2] = 0x30; // the A bit decides where the tag sits
        let mut f = ServiceFrame::new_checked(&mut buf[..]).unwrap();
        let mut c = f.content_mut();
        c.set_invocation_counter(crate::wire::InvocationCounter::new(0x0123_4567));
        let (p, t) = c.payload_and_tag_mut();
        p.copy_from_slice(&CONTENT_AE[5..18]);
        t.unwrap().copy_from_slice(&CONTENT_AE[18..]);
        assert_eq!(buf, FRAME_AE);
    }

    #[test]
    fn test_check_len() {
        for n in 0..FRAME_AE.len() {
            assert!(ServiceFrame::new_checked(&FRAME_AE[..n]).is_err(), "{n}");
        }
        assert_eq!(
            ServiceFrame::new_checked(&FRAME_AE[..31]),
            Err(WireError::Truncated)
        );
        let mut longer = [0u8; 33];
        longer[..32].copy_from_slice(&FRAME_AE);
        assert_eq!(
            ServiceFrame::new_checked(&longer[..]),
            Err(WireError::TrailingBytes)
        );
    }

    #[test]
    fn rejects_bad_tags_and_lengths() {
        for tag in [0xC0u8, 0x0F, 0xDB, 0xDD, 0xD8, 0x00, 0xFF] {
            let mut f = FRAME_AE;
            f[0] = tag;
            assert_eq!(
                ServiceFrame::new_checked(&f[..]),
                Err(WireError::UnexpectedTag(tag))
            );
        }
        // Non-minimal length for 30.
        let mut f = [0u8; 33];
        f[0] = 0xC8;
        f[1] = 0x81;
        f[2] = 0x1E;
        f[3..].copy_from_slice(&CONTENT_AE);
        assert_eq!(
            ServiceFrame::new_checked(&f[..]),
            Err(WireError::NonMinimalLength)
        );
        // A-bit content too short for a tag.
        let f = [0xC8, 0x06, 0x10, 0, 0, 0, 1, 0xC0];
        assert_eq!(ServiceFrame::new_checked(&f[..]), Err(WireError::Truncated));
        // Huge lengths do not overflow.
        let f = [0xC8, 0x84, 0xFF, 0xFF, 0xFF, 0xFF, 0x30, 0, 0, 0, 0];
        assert_eq!(ServiceFrame::new_checked(&f[..]), Err(WireError::Truncated));
        let f = [0xC8, 0x80, 0x30];
        assert_eq!(
            ServiceFrame::new_checked(&f[..]),
            Err(WireError::InvalidLength)
        );
    }

    #[test]
    fn test_parse() {
        let r = ServiceRepr::parse_bytes(&FRAME_AE).unwrap();
        assert_eq!(
            r,
            ServiceRepr {
                service: CipheredService {
                    service: Service::GetRequest,
                    family: KeyFamily::Global
                },
                content: repr_ae(),
            }
        );
        let d = [0xD0, 0x05, 0x20, 0, 0, 0, 9];
        let r = ServiceRepr::parse_bytes(&d).unwrap();
        assert_eq!(r.service.family, KeyFamily::Dedicated);
        assert!(r.content.payload.is_empty());
    }

    #[test]
    fn test_emit() {
        let r = ServiceRepr::parse_bytes(&FRAME_AE).unwrap();
        let mut out = [0xEEu8; 40];
        assert_eq!(r.emit(&mut out), Ok(32));
        assert_eq!(out[..32], FRAME_AE);
        assert_eq!(
            r.emit(&mut out[..31]),
            Err(Error::BufferTooSmall { required: 32 })
        );
        // A long payload gets a long-form length.
        let payload = [0xA5u8; 0x100];
        let r = ServiceRepr {
            service: CipheredService {
                service: Service::ActionResponse,
                family: KeyFamily::Dedicated,
            },
            content: CipheredContentRepr {
                payload: &payload,
                ..repr_ae()
            },
        };
        let mut out = [0u8; 0x200];
        let n = r.emit(&mut out).unwrap();
        assert_eq!(n, 1 + 3 + 5 + 0x100 + 12);
        assert_eq!(out[..4], [0xD7, 0x82, 0x01, 0x11]);
        assert_eq!(ServiceRepr::parse_bytes(&out[..n]), Ok(r));
    }

    #[test]
    fn test_buffer_len() {
        let r = ServiceRepr::parse_bytes(&FRAME_AE).unwrap();
        assert_eq!(r.buffer_len(), Ok(32));
    }
}
