//! general-glo-ciphering (`0xDB`) and general-ded-ciphering (`0xDC`)
//! (GB 9.2.7.2.4, general-glo/ded-ciphering).
//!
//! ```text
//! +-------+------------------------------+------------------------------------------+
//! | DB/DC | L | system-title (L = 0 or 8) | L | SC | IC(4) | payload | [T(12)]      |
//! +-------+------------------------------+------------------------------------------+
//! ```
//! Both fields are A-XDR OCTET STRINGs; there is no outer length. The
//! title is the sender's (the IV's); some profiles send it empty and the
//! receiver supplies it. `0xDB` uses the global keys, `0xDC` the dedicated
//! key. The title is not part of the AAD.

use core::ops::Range;

use crate::error::{Error, WireError};
use crate::wire::axdr::{self, Writer};
use crate::wire::header::{CipheredContentFrame, CipheredContentRepr};
use crate::wire::{SYSTEM_TITLE_LEN, SystemTitle};

/// Tag of general-glo-ciphering.
const TAG_GLO: u8 = 0xDB;
/// Tag of general-ded-ciphering.
const TAG_DED: u8 = 0xDC;

/// A read/write view of a general-glo-ciphering or general-ded-ciphering
/// APDU.
///
/// Made only by [`Self::new_checked`], which validates the whole frame and
/// remembers where the title and the ciphered content sit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneralGloDedFrame<T: AsRef<[u8]>> {
    buffer: T,
    dedicated: bool,
    system_title: Option<SystemTitle>,
    content_start: usize,
}

/// Reads a system title field value: 8 octets, or empty.
pub(crate) fn title_from_field(value: &[u8]) -> Result<Option<SystemTitle>, WireError> {
    if value.is_empty() {
        Ok(None)
    } else {
        SystemTitle::from_slice(value).map(Some)
    }
}

/// The outer structure: dedicated?, title, offset of the content.
fn check(bytes: &[u8]) -> Result<(bool, Option<SystemTitle>, usize), WireError> {
    let (&tag, rest) = bytes.split_first().ok_or(WireError::Truncated)?;
    let dedicated = match tag {
        TAG_GLO => false,
        TAG_DED => true,
        other => return Err(WireError::UnexpectedTag(other)),
    };
    let (title_len, _) = axdr::decode_length(rest)?;
    if title_len != 0 && title_len != SYSTEM_TITLE_LEN {
        return Err(WireError::InvalidSystemTitle(title_len));
    }
    let (title, rest) = axdr::decode_octet_string(rest)?;
    let system_title = title_from_field(title)?;
    let content = axdr::decode_final_octet_string(rest)?;
    CipheredContentFrame::new_checked(content)?;
    let content_start = bytes
        .len()
        .checked_sub(content.len())
        .ok_or(WireError::InvalidLength)?;
    Ok((dedicated, system_title, content_start))
}

impl<T: AsRef<[u8]>> GeneralGloDedFrame<T> {
    /// Validates `buffer` as one complete `0xDB`/`0xDC` APDU.
    ///
    /// # Errors
    /// * [`WireError::Truncated`] when the buffer ends early (including
    ///   content too short for its header, or for its tag when the A bit
    ///   is set);
    /// * [`WireError::UnexpectedTag`] when the first octet is neither
    ///   `0xDB` nor `0xDC`;
    /// * [`WireError::InvalidSystemTitle`] for a title that is neither 0 nor
    ///   8 octets;
    /// * [`WireError::InvalidLength`] / [`WireError::NonMinimalLength`] for a
    ///   bad A-XDR length;
    /// * [`WireError::TrailingBytes`] when bytes follow the content.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let (dedicated, system_title, content_start) = check(buffer.as_ref())?;
        Ok(Self {
            buffer,
            dedicated,
            system_title,
            content_start,
        })
    }

    /// `true` for general-ded-ciphering (`0xDC`, dedicated key), `false`
    /// for general-glo-ciphering (`0xDB`, global keys).
    pub const fn dedicated(&self) -> bool {
        self.dedicated
    }

    /// The tag byte.
    pub const fn tag(&self) -> u8 {
        if self.dedicated { TAG_DED } else { TAG_GLO }
    }

    /// The sender's title, or `None` when the frame carries an empty one.
    pub const fn system_title(&self) -> Option<SystemTitle> {
        self.system_title
    }

    /// Offset of the ciphered content (SC) in the buffer.
    pub const fn content_offset(&self) -> usize {
        self.content_start
    }

    /// Where the ciphered content sits in the buffer.
    pub fn content_range(&self) -> Range<usize> {
        self.content_start..self.buffer.as_ref().len()
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> GeneralGloDedFrame<&'a T> {
    /// The ciphered content SC ‖ IC ‖ payload ‖ \[T\], already checked.
    #[must_use]
    pub fn content(&self) -> CipheredContentFrame<&'a [u8]> {
        let bytes: &'a [u8] = self.buffer.as_ref();
        CipheredContentFrame::new_unchecked(bytes.get(self.content_start..).unwrap_or_default())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> GeneralGloDedFrame<T> {
    /// The ciphered content, mutably (for in-place decryption). Writing
    /// through it keeps the outer lengths valid; changing the A bit does not.
    pub fn content_mut(&mut self) -> CipheredContentFrame<&mut [u8]> {
        let start = self.content_start;
        CipheredContentFrame::new_unchecked(
            self.buffer.as_mut().get_mut(start..).unwrap_or_default(),
        )
    }
}

/// The contents of a general-glo-ciphering or general-ded-ciphering APDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneralGloDedRepr<'a> {
    /// `true` for `0xDC` (dedicated key), `false` for `0xDB`.
    pub dedicated: bool,
    /// The sender's title; `None` sends (or received) an empty one.
    pub system_title: Option<SystemTitle>,
    /// SC ‖ IC ‖ payload ‖ \[T\].
    pub content: CipheredContentRepr<'a>,
}

impl<'a> GeneralGloDedRepr<'a> {
    /// Reads a checked view.
    ///
    /// # Errors
    /// As [`CipheredContentRepr::parse`] (cannot fail on a view made by
    /// [`GeneralGloDedFrame::new_checked`]).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        frame: &GeneralGloDedFrame<&'a T>,
    ) -> Result<Self, WireError> {
        Ok(Self {
            dedicated: frame.dedicated(),
            system_title: frame.system_title(),
            content: CipheredContentRepr::parse(&frame.content())?,
        })
    }

    /// Validates and reads `bytes` (one whole frame).
    ///
    /// # Errors
    /// As [`GeneralGloDedFrame::new_checked`].
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Self, WireError> {
        Self::parse(&GeneralGloDedFrame::new_checked(bytes)?)
    }

    /// The encoded length: tag + title field + content field.
    ///
    /// # Errors
    /// [`WireError::InvalidLength`] when the content is longer than an
    /// A-XDR length can say (`u32::MAX`) or the sum overflows `usize`.
    pub fn buffer_len(&self) -> Result<usize, WireError> {
        let title = if self.system_title.is_some() {
            SYSTEM_TITLE_LEN
        } else {
            0
        };
        axdr::octet_string_len(self.content.buffer_len())?
            .checked_add(axdr::octet_string_len(title)?)
            .and_then(|n| n.checked_add(1))
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
        w.put_u8(if self.dedicated { TAG_DED } else { TAG_GLO })?;
        match &self.system_title {
            Some(t) => w.put_octet_string(t.as_bytes())?,
            None => w.put_octet_string(&[])?,
        }
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
    extern crate alloc;
    use alloc::vec::Vec;

    use super::*;
    use crate::wire::header::tests::{CONTENT_AE, repr_ae};

    const TITLE: [u8; 8] = [0x4D, 0x4D, 0x4D, 0x00, 0x00, 0xBC, 0x61, 0x4E];

    /// GB 9.2.7.2.4, general-glo/ded-ciphering; vectors/README.md: general-glo-ciphering of GB Table 40 (A+E).
    fn frame() -> Vec<u8> {
        hex::decode(
            "DB084D4D4D0000BC614E1E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B",
        )
        .unwrap()
    }

    fn repr() -> GeneralGloDedRepr<'static> {
        GeneralGloDedRepr {
            dedicated: false,
            system_title: Some(SystemTitle::new(TITLE)),
            content: repr_ae(),
        }
    }

    #[test]
    fn test_deconstruct() {
        let bytes = frame();
        let f = GeneralGloDedFrame::new_checked(&bytes[..]).unwrap();
        assert!(!f.dedicated());
        assert_eq!(f.tag(), 0xDB);
        assert_eq!(f.system_title(), Some(SystemTitle::new(TITLE)));
        assert_eq!(f.content_offset(), 11);
        assert_eq!(f.content_range(), 11..41);
        let c = f.content();
        assert_eq!(c.security_control().bits(), 0x30);
        assert_eq!(c.payload(), &CONTENT_AE[5..18]);
        assert_eq!(c.auth_tag().map(|t| &t[..]), Some(&CONTENT_AE[18..]));
    }

    #[test]
    fn test_construct() {
        let expected = frame();
        let mut buf = expected.clone();
        buf[16..].fill(0);
        let mut f = GeneralGloDedFrame::new_checked(&mut buf[..]).unwrap();
        let mut c = f.content_mut();
        let (p, t) = c.payload_and_tag_mut();
        p.copy_from_slice(&CONTENT_AE[5..18]);
        t.unwrap().copy_from_slice(&CONTENT_AE[18..]);
        assert_eq!(buf, expected);
    }

    #[test]
    fn test_check_len() {
        let bytes = frame();
        for n in 0..bytes.len() {
            assert!(GeneralGloDedFrame::new_checked(&bytes[..n]).is_err(), "{n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            GeneralGloDedFrame::new_checked(&longer[..]),
            Err(WireError::TrailingBytes)
        );
    }

    #[test]
    fn rejects_bad_titles_and_tags() {
        for len in [1u8, 7, 9, 0x7F] {
            let mut f = alloc::vec![0xDB, len];
            f.extend_from_slice(&[0u8; 0x90]);
            assert_eq!(
                GeneralGloDedFrame::new_checked(&f[..]),
                Err(WireError::InvalidSystemTitle(usize::from(len)))
            );
        }
        let mut f = frame();
        f[0] = 0xDD;
        assert_eq!(
            GeneralGloDedFrame::new_checked(&f[..]),
            Err(WireError::UnexpectedTag(0xDD))
        );
        let f = [0xDB, 0x00, 0x84, 0xFF, 0xFF, 0xFF, 0xFF, 0x20, 0, 0, 0, 0];
        assert_eq!(
            GeneralGloDedFrame::new_checked(&f[..]),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn test_parse() {
        let bytes = frame();
        assert_eq!(GeneralGloDedRepr::parse_bytes(&bytes), Ok(repr()));
        // Empty title, dedicated.
        let f = [0xDC, 0x00, 0x06, 0x20, 0, 0, 0, 1, 0xAB];
        let r = GeneralGloDedRepr::parse_bytes(&f).unwrap();
        assert!(r.dedicated);
        assert_eq!(r.system_title, None);
        assert_eq!(r.content.payload, &[0xAB]);
    }

    #[test]
    fn test_emit() {
        let mut out = [0xEEu8; 64];
        assert_eq!(repr().emit(&mut out), Ok(41));
        assert_eq!(out[..41], frame()[..]);
        assert_eq!(
            repr().emit(&mut out[..40]),
            Err(Error::BufferTooSmall { required: 41 })
        );
        let r = GeneralGloDedRepr {
            dedicated: true,
            system_title: None,
            ..repr()
        };
        let n = r.emit(&mut out).unwrap();
        assert_eq!(n, 33);
        assert_eq!(out[..3], [0xDC, 0x00, 0x1E]);
        assert_eq!(GeneralGloDedRepr::parse_bytes(&out[..n]), Ok(r));
    }

    #[test]
    fn test_buffer_len() {
        assert_eq!(repr().buffer_len(), Ok(41));
    }
}
