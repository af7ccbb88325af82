//! The security header SC ‖ IC and the ciphered content SC ‖ IC ‖ payload ‖ tag.
//!
//! ```text
//! +----+------------+----------------------------+-----------------+
//! | SC | IC (4, BE) | payload (C, or clear APDU)  | T (12) iff A=1  |
//! +----+------------+----------------------------+-----------------+
//! ```
//! (GB Table 40.) Every ciphered form carries this as its last
//! field; the outer length counts all of it. Whether the tag is there
//! follows from the A bit of the SC byte alone.

use crate::error::{Error, WireError};
use crate::wire::{InvocationCounter, SecurityControl};

/// Length of the security header: SC (1) ‖ IC (4).
pub const HEADER_LEN: usize = 5;

/// Length of the suite-0 authentication tag (GCM tag truncated to 96 bits).
pub const AUTH_TAG_LEN: usize = 12;

mod field {
    use core::ops::Range;

    pub(super) const SC: usize = 0;
    pub(super) const IC: Range<usize> = 1..5;
    pub(super) const PAYLOAD_START: usize = 5;
}

/// The security header SC ‖ IC (5 octets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SecurityHeader {
    /// The security control byte, as received or to be sent.
    pub security_control: SecurityControl,
    /// The invocation counter.
    pub invocation_counter: InvocationCounter,
}

impl SecurityHeader {
    /// Reads the header from the first 5 octets of `bytes` (more may follow).
    ///
    /// # Errors
    /// [`WireError::Truncated`] when `bytes` is shorter than 5 octets.
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let (&sc, rest) = bytes.split_first().ok_or(WireError::Truncated)?;
        let (ic, _) = rest.split_first_chunk::<4>().ok_or(WireError::Truncated)?;
        Ok(Self {
            security_control: SecurityControl::from_bits(sc),
            invocation_counter: InvocationCounter::from_be_bytes(*ic),
        })
    }

    /// The encoded length: always [`HEADER_LEN`].
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// The 5 octets SC ‖ IC.
    #[must_use]
    pub const fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let [a, b, c, d] = self.invocation_counter.to_be_bytes();
        [self.security_control.bits(), a, b, c, d]
    }

    /// Writes the header into the first 5 octets of `out`; returns 5.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] when `out` is shorter than 5 octets.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, Error> {
        out.get_mut(..HEADER_LEN)
            .ok_or(Error::BufferTooSmall {
                required: HEADER_LEN,
            })?
            .copy_from_slice(&self.to_bytes());
        Ok(HEADER_LEN)
    }
}

/// A read/write view of ciphered content: SC ‖ IC ‖ payload ‖ \[T(12)\],
/// the tag present exactly when the SC's A bit is set.
///
/// The view covers the whole buffer: the payload runs from octet 5 to the
/// tag (or to the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipheredContentFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> CipheredContentFrame<T> {
    /// Wraps `buffer` without checking it. Accessors on an unchecked view
    /// never panic, but return zeroes or empty slices for missing fields;
    /// use [`Self::new_checked`] on every untrusted input.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps `buffer` after [`Self::check_len`].
    ///
    /// # Errors
    /// As [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the buffer holds the 5-octet header and, when the A bit
    /// is set, a 12-octet tag after it.
    ///
    /// # Errors
    /// [`WireError::Truncated`] otherwise.
    pub fn check_len(&self) -> Result<(), WireError> {
        let header = SecurityHeader::parse(self.buffer.as_ref())?;
        let min = if header.security_control.authenticated() {
            HEADER_LEN.saturating_add(AUTH_TAG_LEN)
        } else {
            HEADER_LEN
        };
        if self.buffer.as_ref().len() < min {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// The security control byte.
    pub fn security_control(&self) -> SecurityControl {
        SecurityControl::from_bits(
            self.buffer
                .as_ref()
                .get(field::SC)
                .copied()
                .unwrap_or_default(),
        )
    }

    /// The invocation counter.
    pub fn invocation_counter(&self) -> InvocationCounter {
        let ic = self
            .buffer
            .as_ref()
            .get(field::IC)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .unwrap_or_default();
        InvocationCounter::from_be_bytes(ic)
    }

    /// The header SC ‖ IC.
    pub fn header(&self) -> SecurityHeader {
        SecurityHeader {
            security_control: self.security_control(),
            invocation_counter: self.invocation_counter(),
        }
    }

    /// The length of the whole content.
    pub fn len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    /// Whether the buffer is empty (never, after [`Self::check_len`]).
    pub fn is_empty(&self) -> bool {
        self.buffer.as_ref().is_empty()
    }

    /// The payload length (ciphertext, or the clear APDU under
    /// authentication only).
    pub fn payload_len(&self) -> usize {
        let tag = if self.security_control().authenticated() {
            AUTH_TAG_LEN
        } else {
            0
        };
        self.len().saturating_sub(HEADER_LEN).saturating_sub(tag)
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// Splits checked content into payload and tag.
fn split_content(bytes: &[u8]) -> (&[u8], Option<&[u8; AUTH_TAG_LEN]>) {
    let body = bytes.get(field::PAYLOAD_START..).unwrap_or_default();
    let authenticated = bytes
        .get(field::SC)
        .is_some_and(|&sc| SecurityControl::from_bits(sc).authenticated());
    if !authenticated {
        return (body, None);
    }
    match body.split_last_chunk::<AUTH_TAG_LEN>() {
        Some((payload, tag)) => (payload, Some(tag)),
        None => (&[], None),
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> CipheredContentFrame<&'a T> {
    /// The payload: ciphertext, or the clear APDU under authentication only.
    #[must_use]
    pub fn payload(&self) -> &'a [u8] {
        split_content(self.buffer.as_ref()).0
    }

    /// The 12-octet tag; `Some` exactly when the A bit is set (after
    /// [`Self::check_len`]).
    #[must_use]
    pub fn auth_tag(&self) -> Option<&'a [u8; AUTH_TAG_LEN]> {
        split_content(self.buffer.as_ref()).1
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> CipheredContentFrame<T> {
    /// Sets the security control byte. Setting or clearing the A bit changes
    /// where the payload ends: check the length again before reading.
    pub fn set_security_control(&mut self, sc: SecurityControl) {
        if let Some(b) = self.buffer.as_mut().get_mut(field::SC) {
            *b = sc.bits();
        }
    }

    /// Sets the invocation counter.
    pub fn set_invocation_counter(&mut self, ic: InvocationCounter) {
        if let Some(b) = self.buffer.as_mut().get_mut(field::IC) {
            b.copy_from_slice(&ic.to_be_bytes());
        }
    }

    /// The payload and the tag (when the A bit is set), mutably: where a
    /// payload is encrypted or decrypted in place and a tag written.
    pub fn payload_and_tag_mut(&mut self) -> (&mut [u8], Option<&mut [u8; AUTH_TAG_LEN]>) {
        let authenticated = self.security_control().authenticated();
        let body = self
            .buffer
            .as_mut()
            .get_mut(field::PAYLOAD_START..)
            .unwrap_or_default();
        if !authenticated {
            return (body, None);
        }
        match body.split_last_chunk_mut::<AUTH_TAG_LEN>() {
            Some((payload, tag)) => (payload, Some(tag)),
            None => (&mut [], None),
        }
    }
}

/// The contents of ciphered content: header, payload and optional tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CipheredContentRepr<'a> {
    /// SC ‖ IC.
    pub header: SecurityHeader,
    /// Ciphertext, or the clear APDU under authentication only.
    pub payload: &'a [u8],
    /// The tag; present exactly when the header's A bit is set.
    pub auth_tag: Option<&'a [u8; AUTH_TAG_LEN]>,
}

impl<'a> CipheredContentRepr<'a> {
    /// Reads a checked view.
    ///
    /// # Errors
    /// [`WireError::Truncated`] when the view does not pass
    /// [`CipheredContentFrame::check_len`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        frame: &CipheredContentFrame<&'a T>,
    ) -> Result<Self, WireError> {
        frame.check_len()?;
        Ok(Self {
            header: frame.header(),
            payload: frame.payload(),
            auth_tag: frame.auth_tag(),
        })
    }

    /// Reads ciphered content that fills `bytes` exactly.
    ///
    /// # Errors
    /// As [`CipheredContentFrame::check_len`].
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Self, WireError> {
        Self::parse(&CipheredContentFrame::new_checked(bytes)?)
    }

    /// The encoded length: 5 + payload + 12 when a tag is present.
    ///
    /// Cannot saturate: a slice holds at most `isize::MAX` octets.
    #[must_use]
    pub const fn buffer_len(&self) -> usize {
        let tag = if self.auth_tag.is_some() {
            AUTH_TAG_LEN
        } else {
            0
        };
        HEADER_LEN
            .saturating_add(self.payload.len())
            .saturating_add(tag)
    }

    /// Writes SC ‖ IC ‖ payload ‖ \[T\] at the start of `out`; returns the
    /// number of octets written ([`Self::buffer_len`]).
    ///
    /// # Errors
    /// [`Error::Misuse`] when a tag is given without the A bit or the A bit
    /// without a tag (the result would not parse back);
    /// [`Error::BufferTooSmall`] when `out` is too short.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, Error> {
        self.check_consistent()?;
        let total = self.buffer_len();
        let dst = out
            .get_mut(..total)
            .ok_or(Error::BufferTooSmall { required: total })?;
        let mut w = crate::wire::axdr::Writer::new(dst);
        w.put(&self.header.to_bytes())?;
        w.put(self.payload)?;
        if let Some(tag) = self.auth_tag {
            w.put(tag)?;
        }
        Ok(w.position())
    }

    /// Checks that the tag is present exactly when the A bit is set.
    pub(crate) fn check_consistent(&self) -> Result<(), Error> {
        if self.header.security_control.authenticated() == self.auth_tag.is_some() {
            Ok(())
        } else {
            Err(Error::Misuse(
                "ciphered content carries a tag exactly when the A bit is set",
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn length_and_emptiness() {
        let frame = CipheredContentFrame::new_unchecked(&CONTENT_AE[..]);
        assert_eq!(frame.len(), 30);
        assert!(!frame.is_empty());
        assert!(CipheredContentFrame::new_unchecked(&[][..]).is_empty());
    }

    /// GB Table 40, A+E: SC 30, IC 01234567, C (13), T (12).
    pub(crate) static CONTENT_AE: [u8; 30] = [
        0x30, 0x01, 0x23, 0x45, 0x67, 0x41, 0x13, 0x12, 0xFF, 0x93, 0x5A, 0x47, 0x56, 0x68, 0x27,
        0xC4, 0x67, 0xBC, 0x7D, 0x82, 0x5C, 0x3B, 0xE4, 0xA7, 0x7C, 0x3F, 0xCC, 0x05, 0x6B, 0x6B,
    ];
    /// GB Table 40, E only: SC 20, IC 01234567, C (13).
    pub(crate) static CONTENT_E: [u8; 18] = [
        0x20, 0x01, 0x23, 0x45, 0x67, 0x41, 0x13, 0x12, 0xFF, 0x93, 0x5A, 0x47, 0x56, 0x68, 0x27,
        0xC4, 0x67, 0xBC,
    ];

    pub(crate) fn repr_ae() -> CipheredContentRepr<'static> {
        CipheredContentRepr {
            header: SecurityHeader {
                security_control: SecurityControl::from_bits(0x30),
                invocation_counter: InvocationCounter::new(0x0123_4567),
            },
            payload: &CONTENT_AE[5..18],
            auth_tag: Some(CONTENT_AE[18..].try_into().unwrap()),
        }
    }

    #[test]
    fn header_parse_emit_buffer_len() {
        let h = SecurityHeader::parse(&CONTENT_AE).unwrap();
        assert_eq!(h.security_control.bits(), 0x30);
        assert_eq!(h.invocation_counter.value(), 0x0123_4567);
        assert_eq!(h.buffer_len(), 5);
        let mut out = [0u8; 5];
        assert_eq!(h.emit(&mut out), Ok(5));
        assert_eq!(out, CONTENT_AE[..5]);
        assert_eq!(
            h.emit(&mut out[..4]),
            Err(Error::BufferTooSmall { required: 5 })
        );
        for n in 0..5 {
            assert_eq!(
                SecurityHeader::parse(&CONTENT_AE[..n]),
                Err(WireError::Truncated)
            );
        }
    }

    #[test]
    fn test_deconstruct() {
        let f = CipheredContentFrame::new_checked(&CONTENT_AE[..]).unwrap();
        assert_eq!(f.security_control().bits(), 0x30);
        assert_eq!(f.invocation_counter().value(), 0x0123_4567);
        assert_eq!(f.payload(), &CONTENT_AE[5..18]);
        assert_eq!(f.payload_len(), 13);
        assert_eq!(f.auth_tag().map(|t| &t[..]), Some(&CONTENT_AE[18..]));

        let f = CipheredContentFrame::new_checked(&CONTENT_E[..]).unwrap();
        assert_eq!(f.security_control().bits(), 0x20);
        assert_eq!(f.payload(), &CONTENT_E[5..]);
        assert_eq!(f.auth_tag(), None);
        assert_eq!(f.into_inner(), &CONTENT_E[..]);
    }

    #[test]
    fn test_construct() {
        let mut buf = [0u8; 30];
        let mut f = CipheredContentFrame::new_unchecked(&mut buf[..]);
        f.set_security_control(SecurityControl::from_bits(0x30));
        f.set_invocation_counter(InvocationCounter::new(0x0123_4567));
        let (payload, tag) = f.payload_and_tag_mut();
        payload.copy_from_slice(&CONTENT_AE[5..18]);
        tag.unwrap().copy_from_slice(&CONTENT_AE[18..]);
        assert_eq!(buf, CONTENT_AE);
    }

    #[test]
    fn test_check_len() {
        for n in 0..CONTENT_AE.len() {
            if n >= 17 {
                // A shorter payload is still well formed.
                assert!(CipheredContentFrame::new_checked(&CONTENT_AE[..n]).is_ok());
            } else {
                assert_eq!(
                    CipheredContentFrame::new_checked(&CONTENT_AE[..n]),
                    Err(WireError::Truncated),
                    "{n}"
                );
            }
        }
        for n in 0..5 {
            assert!(CipheredContentFrame::new_checked(&CONTENT_E[..n]).is_err());
        }
        // Header only, E only: an empty payload is structurally fine.
        assert!(CipheredContentFrame::new_checked(&CONTENT_E[..5]).is_ok());
        // Unchecked accessors on an empty buffer never panic.
        let f = CipheredContentFrame::new_unchecked(&[][..]);
        assert_eq!(f.security_control().bits(), 0);
        assert_eq!(f.invocation_counter().value(), 0);
        assert_eq!(f.payload(), &[0u8; 0]);
        assert_eq!(f.auth_tag(), None);
        let f = CipheredContentFrame::new_unchecked(&[0x10, 0, 0, 0, 0, 1][..]);
        assert_eq!(f.payload(), &[0u8; 0]);
        assert_eq!(f.auth_tag(), None);
        assert_eq!(f.payload_len(), 0);
    }

    #[test]
    fn test_parse() {
        let f = CipheredContentFrame::new_checked(&CONTENT_AE[..]).unwrap();
        assert_eq!(CipheredContentRepr::parse(&f), Ok(repr_ae()));
        assert_eq!(CipheredContentRepr::parse_bytes(&CONTENT_AE), Ok(repr_ae()));
    }

    #[test]
    fn test_emit() {
        let mut out = [0xEEu8; 31];
        assert_eq!(repr_ae().emit(&mut out), Ok(30));
        assert_eq!(out[..30], CONTENT_AE);
        assert_eq!(out[30], 0xEE);
        assert_eq!(
            repr_ae().emit(&mut out[..29]),
            Err(Error::BufferTooSmall { required: 30 })
        );
        let mut bad = repr_ae();
        bad.auth_tag = None;
        assert!(matches!(bad.emit(&mut out), Err(Error::Misuse(_))));
        let e = CipheredContentRepr::parse_bytes(&CONTENT_E).unwrap();
        let mut out = [0u8; 18];
        assert_eq!(e.emit(&mut out), Ok(18));
        assert_eq!(out, CONTENT_E);
    }

    #[test]
    fn test_buffer_len() {
        assert_eq!(repr_ae().buffer_len(), 30);
        assert_eq!(
            CipheredContentRepr::parse_bytes(&CONTENT_E)
                .unwrap()
                .buffer_len(),
            18
        );
    }
}
