//! general-ciphering (`0xDD`) (GB 9.5, Table 38 and Figure 84).
//!
//! ```text
//! DD
//!  | transaction-id            L | value   (any length)
//!  | originator-system-title   L | value   (8, or 0)
//!  | recipient-system-title    L | value   (8, or 0)
//!  | date-time                 L | value   (0, or a 12-octet COSEM date-time)
//!  | other-information         L | value   (any length)
//!  | key-info OPTIONAL         00 absent | 01 present, then CHOICE:
//!  |     00 identified-key     key-id (00 global unicast, 01 global broadcast)
//!  |     01 wrapped-key        kek-id | L | key-ciphered-data
//!  |     02 agreed-key         L | key-parameters | L | key-ciphered-data
//!  | ciphered-content          L | SC | IC(4) | payload | [T(12)]
//! ```
//! An ENUMERATED is one octet with no type tag; an OPTIONAL is preceded by a
//! presence octet. This layer reads every key-info branch; suite 0 itself
//! uses only identified-key (see [`FrameLayout`](crate::wire::FrameLayout)).
//! The five fields from transaction-id to other-information, each as length
//! ‖ value, are the extra AAD of this form ([`GeneralCipheringFrame::aad_fields`]).

use core::ops::Range;

use crate::error::{Error, WireError};
use crate::wire::axdr::{self, Reader, Writer};
use crate::wire::general_glo_ded::title_from_field;
use crate::wire::header::{CipheredContentFrame, CipheredContentRepr};
use crate::wire::{GeneralCipheringFields, KeyKind, SYSTEM_TITLE_LEN, SystemTitle};

/// Tag of general-ciphering.
pub(crate) const TAG: u8 = 0xDD;
/// Length of a COSEM date-time.
pub(crate) const DATE_TIME_LEN: usize = 12;

const ABSENT: u8 = 0x00;
const PRESENT: u8 = 0x01;
const IDENTIFIED_KEY: u8 = 0x00;
const WRAPPED_KEY: u8 = 0x01;
const AGREED_KEY: u8 = 0x02;
const KEY_ID_UNICAST: u8 = 0x00;
const KEY_ID_BROADCAST: u8 = 0x01;

/// The key-info of a general-ciphering APDU: which key protects the
/// content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyInfo<'a> {
    /// identified-key: a key both ends already hold. Only
    /// [`KeyKind::GlobalUnicast`] (key-id 0) and [`KeyKind::GlobalBroadcast`]
    /// (key-id 1) exist; [`KeyKind::Dedicated`] cannot be emitted.
    Identified(KeyKind),
    /// wrapped-key: the key travels wrapped (RFC 3394) under a key-encrypting
    /// key. Not supported by suite 0 processing.
    Wrapped {
        /// kek-id (0 = master key); any octet is read.
        kek_id: u8,
        /// The wrapped key.
        key_ciphered_data: &'a [u8],
    },
    /// agreed-key: the key comes from a key agreement (suites 1 and 2).
    Agreed {
        /// key-parameters (1 = C(1e,1s), 2 = C(0e,2s)).
        key_parameters: &'a [u8],
        /// The key agreement data.
        key_ciphered_data: &'a [u8],
    },
}

/// Where the key-info parts sit in a checked buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyInfoLayout {
    Absent,
    Identified(KeyKind),
    Wrapped {
        kek_id: u8,
        data: Range<usize>,
    },
    Agreed {
        params: Range<usize>,
        data: Range<usize>,
    },
}

impl KeyInfoLayout {
    /// Reads key-info (presence octet included).
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        match r.u8()? {
            ABSENT => return Ok(Self::Absent),
            PRESENT => {}
            _ => return Err(WireError::InvalidField),
        }
        match r.u8()? {
            IDENTIFIED_KEY => match r.u8()? {
                KEY_ID_UNICAST => Ok(Self::Identified(KeyKind::GlobalUnicast)),
                KEY_ID_BROADCAST => Ok(Self::Identified(KeyKind::GlobalBroadcast)),
                _ => Err(WireError::InvalidField),
            },
            WRAPPED_KEY => {
                let kek_id = r.u8()?;
                let data = r.octet_string()?;
                Ok(Self::Wrapped { kek_id, data })
            }
            AGREED_KEY => {
                let params = r.octet_string()?;
                let data = r.octet_string()?;
                Ok(Self::Agreed { params, data })
            }
            _ => Err(WireError::InvalidField),
        }
    }

    fn resolve<'a>(&self, bytes: &'a [u8]) -> Option<KeyInfo<'a>> {
        let get = |r: &Range<usize>| bytes.get(r.clone()).unwrap_or_default();
        match self {
            Self::Absent => None,
            Self::Identified(k) => Some(KeyInfo::Identified(*k)),
            Self::Wrapped { kek_id, data } => Some(KeyInfo::Wrapped {
                kek_id: *kek_id,
                key_ciphered_data: get(data),
            }),
            Self::Agreed { params, data } => Some(KeyInfo::Agreed {
                key_parameters: get(params),
                key_ciphered_data: get(data),
            }),
        }
    }
}

impl KeyInfo<'_> {
    /// Encoded length of an OPTIONAL key-info, presence octet included.
    fn optional_len(info: Option<&Self>) -> Result<usize, WireError> {
        let body = match info {
            None => return Ok(1),
            Some(Self::Identified(_)) => Some(2),
            Some(Self::Wrapped {
                key_ciphered_data, ..
            }) => axdr::octet_string_len(key_ciphered_data.len())?.checked_add(2),
            Some(Self::Agreed {
                key_parameters,
                key_ciphered_data,
            }) => axdr::octet_string_len(key_parameters.len())?
                .checked_add(axdr::octet_string_len(key_ciphered_data.len())?)
                .and_then(|n| n.checked_add(1)),
        };
        // Presence octet.
        body.and_then(|n| n.checked_add(1))
            .ok_or(WireError::InvalidLength)
    }

    /// Writes an OPTIONAL key-info, presence octet included.
    fn write_optional(info: Option<&Self>, w: &mut Writer<'_>) -> Result<(), Error> {
        let Some(info) = info else {
            return w.put_u8(ABSENT);
        };
        w.put_u8(PRESENT)?;
        match info {
            Self::Identified(KeyKind::GlobalUnicast) => w.put(&[IDENTIFIED_KEY, KEY_ID_UNICAST]),
            Self::Identified(KeyKind::GlobalBroadcast) => {
                w.put(&[IDENTIFIED_KEY, KEY_ID_BROADCAST])
            }
            Self::Identified(KeyKind::Dedicated) => {
                Err(Error::Misuse("general-ciphering carries no dedicated key"))
            }
            Self::Wrapped {
                kek_id,
                key_ciphered_data,
            } => {
                w.put(&[WRAPPED_KEY, *kek_id])?;
                w.put_octet_string(key_ciphered_data)
            }
            Self::Agreed {
                key_parameters,
                key_ciphered_data,
            } => {
                w.put_u8(AGREED_KEY)?;
                w.put_octet_string(key_parameters)?;
                w.put_octet_string(key_ciphered_data)
            }
        }
    }
}

/// A read/write view of a general-ciphering APDU.
///
/// Made only by [`Self::new_checked`], which validates the whole frame and
/// remembers where every field sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneralCipheringFrame<T: AsRef<[u8]>> {
    buffer: T,
    transaction_id: Range<usize>,
    originator_system_title: Option<SystemTitle>,
    recipient_system_title: Option<SystemTitle>,
    date_time: Range<usize>,
    other_information: Range<usize>,
    key_info_start: usize,
    key_info: KeyInfoLayout,
    content_start: usize,
}

/// Reads a system-title field (0 or 8 octets).
fn read_title(r: &mut Reader<'_>) -> Result<Option<SystemTitle>, WireError> {
    let len = r.peek_length()?;
    if len != 0 && len != SYSTEM_TITLE_LEN {
        return Err(WireError::InvalidSystemTitle(len));
    }
    let range = r.octet_string()?;
    title_from_field(r_value(r, range))
}

/// The bytes of `range` in the reader's buffer.
fn r_value<'a>(r: &Reader<'a>, range: Range<usize>) -> &'a [u8] {
    r.all().get(range).unwrap_or_default()
}

impl<T: AsRef<[u8]>> GeneralCipheringFrame<T> {
    /// Validates `buffer` as one complete general-ciphering APDU.
    ///
    /// # Errors
    /// * [`WireError::Truncated`] when the buffer ends early (including
    ///   content too short for its header, or for its tag when the A bit
    ///   is set);
    /// * [`WireError::UnexpectedTag`] when the first octet is not `0xDD`;
    /// * [`WireError::InvalidSystemTitle`] for an originator or recipient
    ///   title that is neither 0 nor 8 octets;
    /// * [`WireError::InvalidField`] for a date-time that is neither 0 nor
    ///   12 octets, a key-info presence octet other than 0 or 1, an unknown
    ///   key-info CHOICE, or an identified key-id other than 0 or 1;
    /// * [`WireError::InvalidLength`] / [`WireError::NonMinimalLength`] for a
    ///   bad A-XDR length;
    /// * [`WireError::TrailingBytes`] when bytes follow the content.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let bytes = buffer.as_ref();
        let mut r = Reader::new(bytes);
        match r.u8()? {
            TAG => {}
            other => return Err(WireError::UnexpectedTag(other)),
        }
        let transaction_id = r.octet_string()?;
        let originator_system_title = read_title(&mut r)?;
        let recipient_system_title = read_title(&mut r)?;
        let dt_len = r.peek_length()?;
        if dt_len != 0 && dt_len != DATE_TIME_LEN {
            return Err(WireError::InvalidField);
        }
        let date_time = r.octet_string()?;
        let other_information = r.octet_string()?;
        let key_info_start = r.position();
        let key_info = KeyInfoLayout::read(&mut r)?;
        let content = r.final_octet_string()?;
        CipheredContentFrame::new_checked(r_value(&r, content.clone()))?;
        Ok(Self {
            transaction_id,
            originator_system_title,
            recipient_system_title,
            date_time,
            other_information,
            key_info_start,
            key_info,
            content_start: content.start,
            buffer,
        })
    }

    /// The originator's system title (the sender's, the IV's), or `None`
    /// when empty.
    pub const fn originator_system_title(&self) -> Option<SystemTitle> {
        self.originator_system_title
    }

    /// The recipient's system title, or `None` when empty.
    pub const fn recipient_system_title(&self) -> Option<SystemTitle> {
        self.recipient_system_title
    }

    /// Where transaction-id ‖ … ‖ other-information (each as length ‖
    /// value) sit in the buffer: from just after the tag to key-info.
    pub fn aad_fields_range(&self) -> Range<usize> {
        1..self.key_info_start
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

impl<'a, T: AsRef<[u8]> + ?Sized> GeneralCipheringFrame<&'a T> {
    fn field(&self, range: &Range<usize>) -> &'a [u8] {
        let bytes: &'a [u8] = self.buffer.as_ref();
        bytes.get(range.clone()).unwrap_or_default()
    }

    /// transaction-id.
    #[must_use]
    pub fn transaction_id(&self) -> &'a [u8] {
        self.field(&self.transaction_id)
    }

    /// date-time: empty, or 12 octets.
    #[must_use]
    pub fn date_time(&self) -> &'a [u8] {
        self.field(&self.date_time)
    }

    /// other-information.
    #[must_use]
    pub fn other_information(&self) -> &'a [u8] {
        self.field(&self.other_information)
    }

    /// key-info, `None` when absent.
    #[must_use]
    pub fn key_info(&self) -> Option<KeyInfo<'a>> {
        self.key_info.resolve(self.buffer.as_ref())
    }

    /// transaction-id ‖ originator ‖ recipient ‖ date-time ‖
    /// other-information, each as A-XDR length ‖ value, exactly as received.
    #[must_use]
    pub fn aad_fields(&self) -> &'a [u8] {
        self.field(&self.aad_fields_range())
    }

    /// The ciphered content SC ‖ IC ‖ payload ‖ \[T\], already checked.
    #[must_use]
    pub fn content(&self) -> CipheredContentFrame<&'a [u8]> {
        let bytes: &'a [u8] = self.buffer.as_ref();
        CipheredContentFrame::new_unchecked(bytes.get(self.content_start..).unwrap_or_default())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> GeneralCipheringFrame<T> {
    /// The ciphered content, mutably (for in-place decryption). Writing
    /// through it keeps the outer lengths valid; changing the A bit does not.
    pub fn content_mut(&mut self) -> CipheredContentFrame<&mut [u8]> {
        let start = self.content_start;
        CipheredContentFrame::new_unchecked(
            self.buffer.as_mut().get_mut(start..).unwrap_or_default(),
        )
    }
}

/// The contents of a general-ciphering APDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneralCipheringRepr<'a> {
    /// transaction-id (any length).
    pub transaction_id: &'a [u8],
    /// originator-system-title (the sender's); `None` for an empty one.
    pub originator_system_title: Option<SystemTitle>,
    /// recipient-system-title; `None` for an empty one.
    pub recipient_system_title: Option<SystemTitle>,
    /// date-time: empty, or a 12-octet COSEM date-time.
    pub date_time: &'a [u8],
    /// other-information (any length).
    pub other_information: &'a [u8],
    /// key-info; `None` when absent.
    pub key_info: Option<KeyInfo<'a>>,
    /// SC ‖ IC ‖ payload ‖ \[T\].
    pub content: CipheredContentRepr<'a>,
}

const fn title_len(t: Option<&SystemTitle>) -> usize {
    if t.is_some() { SYSTEM_TITLE_LEN } else { 0 }
}

impl<'a> GeneralCipheringRepr<'a> {
    /// Reads a checked view.
    ///
    /// # Errors
    /// As [`CipheredContentRepr::parse`] (cannot fail on a view made by
    /// [`GeneralCipheringFrame::new_checked`]).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        frame: &GeneralCipheringFrame<&'a T>,
    ) -> Result<Self, WireError> {
        Ok(Self {
            transaction_id: frame.transaction_id(),
            originator_system_title: frame.originator_system_title(),
            recipient_system_title: frame.recipient_system_title(),
            date_time: frame.date_time(),
            other_information: frame.other_information(),
            key_info: frame.key_info(),
            content: CipheredContentRepr::parse(&frame.content())?,
        })
    }

    /// Validates and reads `bytes` (one whole frame).
    ///
    /// # Errors
    /// As [`GeneralCipheringFrame::new_checked`].
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Self, WireError> {
        Self::parse(&GeneralCipheringFrame::new_checked(bytes)?)
    }

    /// The encoded length of transaction-id ‖ … ‖ other-information (the
    /// AAD fields).
    ///
    /// # Errors
    /// [`WireError::InvalidLength`] when a field is longer than an A-XDR
    /// length can say or the sum overflows `usize`.
    pub fn aad_fields_len(&self) -> Result<usize, WireError> {
        aad_fields_len(
            self.transaction_id.len(),
            title_len(self.originator_system_title.as_ref()),
            title_len(self.recipient_system_title.as_ref()),
            self.date_time.len(),
            self.other_information.len(),
        )
    }

    /// The encoded length of the whole frame.
    ///
    /// # Errors
    /// [`WireError::InvalidLength`] when a field is longer than an A-XDR
    /// length can say or the sum overflows `usize`.
    pub fn buffer_len(&self) -> Result<usize, WireError> {
        self.aad_fields_len()?
            .checked_add(KeyInfo::optional_len(self.key_info.as_ref())?)
            .and_then(|n| n.checked_add(1))
            .and_then(|n| {
                axdr::octet_string_len(self.content.buffer_len())
                    .ok()
                    .and_then(|c| n.checked_add(c))
            })
            .ok_or(WireError::InvalidLength)
    }

    /// Writes the frame at the start of `out`; returns the number of octets
    /// written ([`Self::buffer_len`]).
    ///
    /// # Errors
    /// As [`Self::buffer_len`]; [`Error::Misuse`] for a date-time that is
    /// neither empty nor 12 octets, identified-key naming the dedicated key,
    /// or a tag presence that disagrees with the A bit;
    /// [`Error::BufferTooSmall`] when `out` is too short.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, Error> {
        self.content.check_consistent()?;
        check_date_time(self.date_time)?;
        if self.key_info == Some(KeyInfo::Identified(KeyKind::Dedicated)) {
            return Err(Error::Misuse("general-ciphering carries no dedicated key"));
        }
        let total = self.buffer_len()?;
        let dst = out
            .get_mut(..total)
            .ok_or(Error::BufferTooSmall { required: total })?;
        let mut w = Writer::new(dst);
        w.put_u8(TAG)?;
        let fields = GeneralCipheringFields {
            transaction_id: self.transaction_id,
            recipient_system_title: self.recipient_system_title,
            date_time: self.date_time,
            other_information: self.other_information,
        };
        write_aad_fields(&mut w, self.originator_system_title.as_ref(), &fields)?;
        KeyInfo::write_optional(self.key_info.as_ref(), &mut w)?;
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

/// Refuses a date-time that is neither empty nor 12 octets (caller error).
pub(crate) fn check_date_time(date_time: &[u8]) -> Result<(), Error> {
    if date_time.is_empty() || date_time.len() == DATE_TIME_LEN {
        Ok(())
    } else {
        Err(Error::Misuse(
            "general-ciphering date-time must be empty or 12 octets",
        ))
    }
}

/// Encoded length of the five AAD fields from their value lengths.
pub(crate) fn aad_fields_len(
    transaction_id: usize,
    originator: usize,
    recipient: usize,
    date_time: usize,
    other_information: usize,
) -> Result<usize, WireError> {
    let mut total: usize = 0;
    for len in [
        transaction_id,
        originator,
        recipient,
        date_time,
        other_information,
    ] {
        total = total
            .checked_add(axdr::octet_string_len(len)?)
            .ok_or(WireError::InvalidLength)?;
    }
    Ok(total)
}

/// Writes the five AAD fields, each as length ‖ value: `originator`
/// between transaction-id and the recipient's title.
pub(crate) fn write_aad_fields(
    w: &mut Writer<'_>,
    originator: Option<&SystemTitle>,
    fields: &GeneralCipheringFields<'_>,
) -> Result<(), Error> {
    w.put_octet_string(fields.transaction_id)?;
    w.put_octet_string(originator.map_or(&[][..], |t| &t.as_bytes()[..]))?;
    w.put_octet_string(
        fields
            .recipient_system_title
            .as_ref()
            .map_or(&[][..], |t| &t.as_bytes()[..]),
    )?;
    w.put_octet_string(fields.date_time)?;
    w.put_octet_string(fields.other_information)
}

/// Writes identified-key key-info for `key` (presence, choice, key-id).
pub(crate) fn write_identified_key(w: &mut Writer<'_>, key: KeyKind) -> Result<(), Error> {
    KeyInfo::write_optional(Some(&KeyInfo::Identified(key)), w)
}

/// Encoded length of identified-key key-info (presence, choice, key-id).
pub(crate) const IDENTIFIED_KEY_INFO_LEN: usize = 3;

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    extern crate alloc;
    use alloc::vec::Vec;

    use super::*;
    use crate::wire::header::tests::{CONTENT_AE, repr_ae};

    const TID: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
    const ORIG: [u8; 8] = [0x4D, 0x4D, 0x4D, 0x00, 0x00, 0xBC, 0x61, 0x4E];
    const RECIP: [u8; 8] = [0x4D, 0x4D, 0x4D, 0x00, 0x00, 0x00, 0x00, 0x01];

    /// An identified-key (global unicast) frame around GB Table 40 A+E
    /// content (self-built, structure per GB 9.5, Table 38 and Figure 84).
    fn frame() -> Vec<u8> {
        let mut f = alloc::vec![0xDD, 0x08];
        f.extend_from_slice(&TID);
        f.push(0x08);
        f.extend_from_slice(&ORIG);
        f.push(0x08);
        f.extend_from_slice(&RECIP);
        f.extend_from_slice(&[0x00, 0x00]); // date-time, other-information
        f.extend_from_slice(&[0x01, 0x00, 0x00]); // key-info: identified, unicast
        f.push(0x1E);
        f.extend_from_slice(&CONTENT_AE);
        f
    }

    fn repr() -> GeneralCipheringRepr<'static> {
        GeneralCipheringRepr {
            transaction_id: &TID,
            originator_system_title: Some(SystemTitle::new(ORIG)),
            recipient_system_title: Some(SystemTitle::new(RECIP)),
            date_time: &[],
            other_information: &[],
            key_info: Some(KeyInfo::Identified(KeyKind::GlobalUnicast)),
            content: repr_ae(),
        }
    }

    /// The agreed-key header of GB Table 41 (GB 9.5): `DD 08 0102030405060708 08 4D4D4D0000BC614E
    /// 08 4D4D4D0000000001 00 00 01 02 01 01 81 80 <128> 81 EB 30 00000000 …`.
    /// The 128 key octets and the 0xEB content octets after SC ‖ IC are
    /// made up here.
    fn agreed_frame() -> Vec<u8> {
        let mut f =
            hex::decode("DD080102030405060708084D4D4D0000BC614E084D4D4D00000000010000010201018180")
                .unwrap();
        f.extend((0..128u32).map(|i| (i * 7) as u8));
        f.extend_from_slice(&[0x81, 0xEB, 0x30, 0x00, 0x00, 0x00, 0x00]);
        f.extend((0..0xEB - 5u32).map(|i| (i ^ 0x5A) as u8));
        f
    }

    #[test]
    fn test_deconstruct() {
        let bytes = frame();
        let f = GeneralCipheringFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(f.transaction_id(), &TID);
        assert_eq!(f.originator_system_title(), Some(SystemTitle::new(ORIG)));
        assert_eq!(f.recipient_system_title(), Some(SystemTitle::new(RECIP)));
        assert_eq!(f.date_time(), &[0u8; 0]);
        assert_eq!(f.other_information(), &[0u8; 0]);
        assert_eq!(
            f.key_info(),
            Some(KeyInfo::Identified(KeyKind::GlobalUnicast))
        );
        assert_eq!(f.aad_fields_range(), 1..30);
        assert_eq!(f.aad_fields(), &bytes[1..30]);
        assert_eq!(f.content_offset(), 34);
        assert_eq!(f.content_range(), 34..64);
        let c = f.content();
        assert_eq!(c.security_control().bits(), 0x30);
        assert_eq!(c.payload(), &CONTENT_AE[5..18]);
    }

    #[test]
    fn test_construct() {
        let expected = frame();
        let mut buf = expected.clone();
        buf[39..].fill(0);
        let mut f = GeneralCipheringFrame::new_checked(&mut buf[..]).unwrap();
        let mut c = f.content_mut();
        let (p, t) = c.payload_and_tag_mut();
        p.copy_from_slice(&CONTENT_AE[5..18]);
        t.unwrap().copy_from_slice(&CONTENT_AE[18..]);
        assert_eq!(buf, expected);
    }

    #[test]
    fn test_check_len() {
        for bytes in [frame(), agreed_frame()] {
            for n in 0..bytes.len() {
                assert!(
                    GeneralCipheringFrame::new_checked(&bytes[..n]).is_err(),
                    "{n}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(
                GeneralCipheringFrame::new_checked(&longer[..]),
                Err(WireError::TrailingBytes)
            );
        }
    }

    #[test]
    fn agreed_key_parses() {
        let bytes = agreed_frame();
        let r = GeneralCipheringRepr::parse_bytes(&bytes).unwrap();
        assert_eq!(r.transaction_id, &TID);
        assert_eq!(r.originator_system_title, Some(SystemTitle::new(ORIG)));
        assert_eq!(r.recipient_system_title, Some(SystemTitle::new(RECIP)));
        let Some(KeyInfo::Agreed {
            key_parameters,
            key_ciphered_data,
        }) = r.key_info
        else {
            panic!("{:?}", r.key_info);
        };
        assert_eq!(key_parameters, &[0x01]);
        assert_eq!(key_ciphered_data.len(), 128);
        assert_eq!(key_ciphered_data, &bytes[36..164]);
        assert_eq!(r.content.header.security_control.bits(), 0x30);
        assert_eq!(r.content.header.invocation_counter.value(), 0);
        assert_eq!(r.content.payload.len(), 0xEB - 5 - 12);
        assert_eq!(r.buffer_len(), Ok(bytes.len()));
        let mut out = alloc::vec![0u8; bytes.len()];
        assert_eq!(r.emit(&mut out), Ok(bytes.len()));
        assert_eq!(out, bytes);
    }

    #[test]
    fn wrapped_key_round_trips() {
        let wrapped = [0xA5u8; 24];
        let r = GeneralCipheringRepr {
            key_info: Some(KeyInfo::Wrapped {
                kek_id: 0,
                key_ciphered_data: &wrapped,
            }),
            date_time: &[0x07; 12],
            other_information: &[0xEE; 3],
            recipient_system_title: None,
            ..repr()
        };
        let mut out = [0u8; 128];
        let n = r.emit(&mut out).unwrap();
        assert_eq!(Ok(n), r.buffer_len());
        assert_eq!(GeneralCipheringRepr::parse_bytes(&out[..n]), Ok(r));
    }

    #[test]
    fn rejects_bad_fields() {
        let base = frame();
        // key-info presence octet 2, choice 3, key-id 2.
        for (at, v) in [(30usize, 0x02u8), (31, 0x03), (32, 0x02)] {
            let mut f = base.clone();
            f[at] = v;
            assert_eq!(
                GeneralCipheringFrame::new_checked(&f[..]),
                Err(WireError::InvalidField),
                "{at}"
            );
        }
        // Originator title of 7 octets.
        let mut f = base.clone();
        f[10] = 0x07;
        assert_eq!(
            GeneralCipheringFrame::new_checked(&f[..]),
            Err(WireError::InvalidSystemTitle(7))
        );
        // date-time of 1 octet.
        let mut f = base.clone();
        f[28] = 0x01;
        assert_eq!(
            GeneralCipheringFrame::new_checked(&f[..]),
            Err(WireError::InvalidField)
        );
        // Tag.
        let mut f = base.clone();
        f[0] = 0xDB;
        assert_eq!(
            GeneralCipheringFrame::new_checked(&f[..]),
            Err(WireError::UnexpectedTag(0xDB))
        );
        // Absent key-info parses.
        let mut f = base[..30].to_vec();
        f.push(0x00);
        f.extend_from_slice(&base[33..]);
        let r = GeneralCipheringRepr::parse_bytes(&f).unwrap();
        assert_eq!(r.key_info, None);
        // Huge transaction-id length.
        let f = [0xDD, 0x84, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0];
        assert_eq!(
            GeneralCipheringFrame::new_checked(&f[..]),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn emit_refuses_misuse() {
        let mut out = [0u8; 128];
        let r = GeneralCipheringRepr {
            key_info: Some(KeyInfo::Identified(KeyKind::Dedicated)),
            ..repr()
        };
        assert!(matches!(r.emit(&mut out), Err(Error::Misuse(_))));
        let r = GeneralCipheringRepr {
            date_time: &[0; 5],
            ..repr()
        };
        assert!(matches!(r.emit(&mut out), Err(Error::Misuse(_))));
    }

    #[test]
    fn test_parse() {
        let bytes = frame();
        assert_eq!(GeneralCipheringRepr::parse_bytes(&bytes), Ok(repr()));
    }

    #[test]
    fn test_emit() {
        let expected = frame();
        let mut out = [0xEEu8; 80];
        assert_eq!(repr().emit(&mut out), Ok(64));
        assert_eq!(out[..64], expected[..]);
        assert_eq!(
            repr().emit(&mut out[..63]),
            Err(Error::BufferTooSmall { required: 64 })
        );
    }

    #[test]
    fn test_buffer_len() {
        assert_eq!(repr().buffer_len(), Ok(64));
        assert_eq!(repr().aad_fields_len(), Ok(29));
        assert_eq!(KeyInfo::optional_len(None), Ok(1));
    }
}
