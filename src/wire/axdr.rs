//! A-XDR lengths and octet strings (IEC 62056-6-2, A-XDR).
//!
//! ```text
//! first octet   meaning
//! 0x00..=0x7F   the length itself (short form)
//! 0x81 n        0x80..=0xFF
//! 0x82 nn       0x100..=0xFFFF, big-endian
//! 0x84 nnnn     0x1_0000..=0xFFFF_FFFF, big-endian
//! ```
//!
//! `0x80` (indefinite), `0x83` and `0x85..=0xFF` are rejected, and so is any
//! long form that a shorter form could carry: every length has exactly one
//! encoding, so `parse` followed by `emit` reproduces its input. Every
//! computation is checked; a 4-octet length that does not fit `usize` (a
//! 16-bit target) is [`WireError::InvalidLength`], never a wrapped value.
//!
//! An A-XDR OCTET STRING is a length followed by that many octets.

use core::ops::Range;

use crate::error::{Error, WireError};

/// The most octets an encoded length takes (`0x84` and four octets).
pub const MAX_ENCODED_LENGTH_LEN: usize = 5;

/// Decodes the A-XDR length at the start of `input`.
///
/// Returns the length and the bytes after the length field (the value is
/// not required to be present: see [`decode_octet_string`]).
///
/// # Errors
/// * [`WireError::Truncated`] if `input` is empty or ends inside the length
///   field;
/// * [`WireError::InvalidLength`] for a first octet of `0x80`, `0x83` or
///   `0x85..=0xFF`, or a value that does not fit `usize`;
/// * [`WireError::NonMinimalLength`] for a long form whose value a shorter
///   form could carry (`81 05`, `82 00 80`, `84 00 00 FF FF`, ...).
pub fn decode_length(input: &[u8]) -> Result<(usize, &[u8]), WireError> {
    let (&first, rest) = input.split_first().ok_or(WireError::Truncated)?;
    let (value, minimum, rest): (u32, u32, &[u8]) = match first {
        0x00..=0x7F => return Ok((usize::from(first), rest)),
        0x81 => {
            let (&b, rest) = rest.split_first().ok_or(WireError::Truncated)?;
            (u32::from(b), 0x80, rest)
        }
        0x82 => {
            let (b, rest) = rest.split_first_chunk::<2>().ok_or(WireError::Truncated)?;
            (u32::from(u16::from_be_bytes(*b)), 0x100, rest)
        }
        0x84 => {
            let (b, rest) = rest.split_first_chunk::<4>().ok_or(WireError::Truncated)?;
            (u32::from_be_bytes(*b), 0x1_0000, rest)
        }
        _ => return Err(WireError::InvalidLength),
    };
    if value < minimum {
        return Err(WireError::NonMinimalLength);
    }
    let value = usize::try_from(value).map_err(|_| WireError::InvalidLength)?;
    Ok((value, rest))
}

/// The number of octets [`encode_length`] writes for `len`: 1, 2, 3 or 5.
///
/// `const`, so callers can size static buffers. A `len` above `u32::MAX`
/// (possible only where `usize` is 64 bits) has no encoding; this returns 5
/// for it and [`encode_length`] refuses it.
#[must_use]
pub const fn encoded_length_len(len: usize) -> usize {
    if len < 0x80 {
        1
    } else if len <= 0xFF {
        2
    } else if len <= 0xFFFF {
        3
    } else {
        5
    }
}

/// Writes `len` in minimal A-XDR form at the start of `out`; returns the
/// number of octets written ([`encoded_length_len`]).
///
/// # Errors
/// [`WireError::InvalidLength`] (as [`Error::Wire`]) when `len` exceeds
/// `u32::MAX`; [`Error::BufferTooSmall`] when `out` is shorter than the
/// encoding.
pub fn encode_length(len: usize, out: &mut [u8]) -> Result<usize, Error> {
    let value = u32::try_from(len).map_err(|_| WireError::InvalidLength)?;
    let n = encoded_length_len(len);
    let dst = out
        .get_mut(..n)
        .ok_or(Error::BufferTooSmall { required: n })?;
    let [b3, b2, b1, b0] = value.to_be_bytes();
    match dst {
        [d] => *d = b0,
        [d0, d1] => {
            *d0 = 0x81;
            *d1 = b0;
        }
        [d0, d1, d2] => {
            *d0 = 0x82;
            *d1 = b1;
            *d2 = b0;
        }
        [d0, d1, d2, d3, d4] => {
            *d0 = 0x84;
            *d1 = b3;
            *d2 = b2;
            *d3 = b1;
            *d4 = b0;
        }
        // `encoded_length_len` returns only 1, 2, 3 or 5.
        _ => return Err(Error::Wire(WireError::InvalidLength)),
    }
    Ok(n)
}

/// Reads the A-XDR OCTET STRING (length ‖ value) at the start of `input`;
/// returns the value and the bytes after it.
///
/// # Errors
/// As [`decode_length`]; [`WireError::Truncated`] when fewer octets follow
/// than the length announces.
pub fn decode_octet_string(input: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let (len, rest) = decode_length(input)?;
    rest.split_at_checked(len).ok_or(WireError::Truncated)
}

/// Reads an A-XDR OCTET STRING that must end exactly where `input` ends
/// (the last field of a frame); returns its value.
///
/// # Errors
/// As [`decode_length`]; [`WireError::Truncated`] when fewer octets follow
/// than the length announces, [`WireError::TrailingBytes`] when more do.
pub fn decode_final_octet_string(input: &[u8]) -> Result<&[u8], WireError> {
    let (value, rest) = decode_octet_string(input)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(WireError::TrailingBytes)
    }
}

/// The encoded size of an OCTET STRING of `value_len` octets
/// (length field + value).
///
/// # Errors
/// [`WireError::InvalidLength`] when `value_len` exceeds `u32::MAX` or the
/// sum overflows `usize`.
pub fn octet_string_len(value_len: usize) -> Result<usize, WireError> {
    if u32::try_from(value_len).is_err() {
        return Err(WireError::InvalidLength);
    }
    encoded_length_len(value_len)
        .checked_add(value_len)
        .ok_or(WireError::InvalidLength)
}

/// Writes `value` as an A-XDR OCTET STRING at the start of `out`; returns
/// the number of octets written ([`octet_string_len`]).
///
/// # Errors
/// As [`octet_string_len`]; [`Error::BufferTooSmall`] when `out` is too
/// short.
pub fn encode_octet_string(value: &[u8], out: &mut [u8]) -> Result<usize, Error> {
    let total = octet_string_len(value.len())?;
    let dst = out
        .get_mut(..total)
        .ok_or(Error::BufferTooSmall { required: total })?;
    let mut w = Writer::new(dst);
    w.put_octet_string(value)?;
    Ok(w.position())
}

/// A forward-only writer over a caller buffer, for the emitters.
///
/// Every emitter sizes the whole frame first and reports
/// [`Error::BufferTooSmall`] with that size; the writer's own error is a
/// fallback that carries the octets it needed at the failing step.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Octets written so far.
    pub(crate) const fn position(&self) -> usize {
        self.pos
    }

    fn too_small(&self, more: usize) -> Error {
        Error::BufferTooSmall {
            required: self.pos.saturating_add(more),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), Error> {
        self.pos = self.pos.checked_add(n).ok_or(WireError::InvalidLength)?;
        Ok(())
    }

    /// The unwritten rest of the buffer.
    fn rest(&mut self) -> &mut [u8] {
        self.buf.get_mut(self.pos..).unwrap_or_default()
    }

    /// Appends `bytes`.
    pub(crate) fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let n = bytes.len();
        let err = self.too_small(n);
        self.rest().get_mut(..n).ok_or(err)?.copy_from_slice(bytes);
        self.advance(n)
    }

    /// Appends one octet.
    pub(crate) fn put_u8(&mut self, b: u8) -> Result<(), Error> {
        self.put(&[b])
    }

    /// Appends an A-XDR length.
    pub(crate) fn put_length(&mut self, len: usize) -> Result<(), Error> {
        let err = self.too_small(encoded_length_len(len));
        let n = encode_length(len, self.rest()).map_err(|e| match e {
            Error::BufferTooSmall { .. } => err,
            other => other,
        })?;
        self.advance(n)
    }

    /// Appends an A-XDR OCTET STRING.
    pub(crate) fn put_octet_string(&mut self, value: &[u8]) -> Result<(), Error> {
        self.put_length(value.len())?;
        self.put(value)
    }
}

/// A forward-only reader over a whole frame that reports where each field
/// sits, for the views that remember field offsets.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    all: &'a [u8],
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader at the start of `all`.
    pub(crate) const fn new(all: &'a [u8]) -> Self {
        Self { all, rest: all }
    }

    /// Offset of the next unread octet in the whole buffer.
    pub(crate) const fn position(&self) -> usize {
        // `rest` is always a suffix of `all`.
        self.all.len().saturating_sub(self.rest.len())
    }

    /// The whole buffer.
    pub(crate) const fn all(&self) -> &'a [u8] {
        self.all
    }

    /// Reads one octet.
    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        let (&b, rest) = self.rest.split_first().ok_or(WireError::Truncated)?;
        self.rest = rest;
        Ok(b)
    }

    /// Reads the next `N` octets.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(WireError::Truncated)?;
        self.rest = rest;
        Ok(*head)
    }

    /// Reads an A-XDR length without consuming it.
    pub(crate) fn peek_length(&self) -> Result<usize, WireError> {
        decode_length(self.rest).map(|(len, _)| len)
    }

    /// Reads an OCTET STRING; returns where its value sits in the buffer.
    pub(crate) fn octet_string(&mut self) -> Result<Range<usize>, WireError> {
        let (value, rest) = decode_octet_string(self.rest)?;
        let end = self.all.len().saturating_sub(rest.len());
        let start = end.saturating_sub(value.len());
        self.rest = rest;
        Ok(start..end)
    }

    /// Reads an OCTET STRING that must end the buffer; returns where its
    /// value sits.
    pub(crate) fn final_octet_string(&mut self) -> Result<Range<usize>, WireError> {
        let range = self.octet_string()?;
        if self.rest.is_empty() {
            Ok(range)
        } else {
            Err(WireError::TrailingBytes)
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    /// Round-trips `len` and checks the encoding is `expected`.
    fn round_trip(len: usize, expected: &[u8]) {
        assert_eq!(encoded_length_len(len), expected.len(), "len {len:#x}");
        let mut buf = [0xEEu8; 8];
        assert_eq!(encode_length(len, &mut buf), Ok(expected.len()));
        assert_eq!(&buf[..expected.len()], expected);
        // With trailing bytes: the rest is returned untouched.
        assert_eq!(
            decode_length(&buf[..expected.len() + 1]),
            Ok((len, &[0xEE][..]))
        );
        assert_eq!(decode_length(expected), Ok((len, &[][..])));
    }

    #[test]
    fn round_trip_at_boundaries() {
        round_trip(0, &[0x00]);
        round_trip(0x7F, &[0x7F]);
        round_trip(0x80, &[0x81, 0x80]);
        round_trip(0xFF, &[0x81, 0xFF]);
        round_trip(0x100, &[0x82, 0x01, 0x00]);
        round_trip(0xFFFF, &[0x82, 0xFF, 0xFF]);
        round_trip(0x1_0000, &[0x84, 0x00, 0x01, 0x00, 0x00]);
        round_trip(0x0123_4567, &[0x84, 0x01, 0x23, 0x45, 0x67]);
    }

    #[test]
    fn round_trip_every_small_length() {
        for len in 0..0x1_0100usize {
            let mut buf = [0u8; MAX_ENCODED_LENGTH_LEN];
            let n = encode_length(len, &mut buf).unwrap();
            assert_eq!(n, encoded_length_len(len));
            assert_eq!(decode_length(&buf[..n]), Ok((len, &[][..])));
        }
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn round_trip_u32_max_and_refuse_above() {
        round_trip(0xFFFF_FFFF, &[0x84, 0xFF, 0xFF, 0xFF, 0xFF]);
        let mut buf = [0u8; 8];
        assert_eq!(
            encode_length(0x1_0000_0000, &mut buf),
            Err(Error::Wire(WireError::InvalidLength))
        );
        assert_eq!(
            encode_length(usize::MAX, &mut buf),
            Err(Error::Wire(WireError::InvalidLength))
        );
        assert_eq!(octet_string_len(usize::MAX), Err(WireError::InvalidLength));
    }

    #[test]
    fn invalid_first_octets() {
        for first in [0x80u8, 0x83].into_iter().chain(0x85..=0xFF) {
            // Followed by plenty of bytes: the first octet alone decides.
            let input = [first, 0x01, 0x00, 0x00, 0x00, 0x00];
            assert_eq!(
                decode_length(&input),
                Err(WireError::InvalidLength),
                "{first:#x}"
            );
        }
    }

    #[test]
    fn non_minimal_encodings() {
        for input in [
            &[0x81, 0x05][..],
            &[0x81, 0x00],
            &[0x81, 0x7F],
            &[0x82, 0x00, 0x80],
            &[0x82, 0x00, 0xFF],
            &[0x82, 0x00, 0x00],
            &[0x84, 0x00, 0x00, 0xFF, 0xFF],
            &[0x84, 0x00, 0x00, 0x00, 0x01],
        ] {
            assert_eq!(
                decode_length(input),
                Err(WireError::NonMinimalLength),
                "{input:02X?}"
            );
        }
    }

    #[test]
    fn check_len_every_truncation() {
        for full in [
            &[0x81, 0x80][..],
            &[0x82, 0x01, 0x00],
            &[0x84, 0xFF, 0xFF, 0xFF, 0xFF],
        ] {
            for n in 0..full.len() {
                assert_eq!(decode_length(&full[..n]), Err(WireError::Truncated));
            }
        }
    }

    #[test]
    fn huge_length_is_parsed_and_then_truncated() {
        let input = [0x84, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3];
        #[cfg(target_pointer_width = "64")]
        assert_eq!(decode_length(&input), Ok((0xFFFF_FFFF, &[1, 2, 3][..])));
        assert_eq!(decode_octet_string(&input), Err(WireError::Truncated));
        assert_eq!(decode_final_octet_string(&input), Err(WireError::Truncated));
    }

    #[test]
    fn encode_into_short_buffer() {
        let mut buf = [0u8; 4];
        assert_eq!(
            encode_length(0x1_0000, &mut buf),
            Err(Error::BufferTooSmall { required: 5 })
        );
        assert_eq!(
            encode_length(0x80, &mut buf[..1]),
            Err(Error::BufferTooSmall { required: 2 })
        );
        assert_eq!(
            encode_length(0, &mut []),
            Err(Error::BufferTooSmall { required: 1 })
        );
    }

    #[test]
    fn octet_string_parse_and_emit() {
        let bytes = [0x03, 0xAA, 0xBB, 0xCC, 0x99];
        assert_eq!(
            decode_octet_string(&bytes),
            Ok((&[0xAA, 0xBB, 0xCC][..], &[0x99][..]))
        );
        assert_eq!(
            decode_final_octet_string(&bytes),
            Err(WireError::TrailingBytes)
        );
        assert_eq!(decode_final_octet_string(&bytes[..4]), Ok(&bytes[1..4]));
        for n in 0..4 {
            assert_eq!(
                decode_final_octet_string(&bytes[..n]),
                Err(WireError::Truncated)
            );
        }
        assert_eq!(decode_octet_string(&[0x00]), Ok((&[][..], &[][..])));

        let mut out = [0u8; 5];
        assert_eq!(octet_string_len(3), Ok(4));
        assert_eq!(encode_octet_string(&[0xAA, 0xBB, 0xCC], &mut out), Ok(4));
        assert_eq!(&out[..4], &bytes[..4]);
        assert_eq!(
            encode_octet_string(&[0xAA, 0xBB, 0xCC], &mut out[..3]),
            Err(Error::BufferTooSmall { required: 4 })
        );

        let long = [0x5Au8; 0x80];
        let mut out = [0u8; 0x82];
        assert_eq!(octet_string_len(0x80), Ok(0x82));
        assert_eq!(encode_octet_string(&long, &mut out), Ok(0x82));
        assert_eq!(&out[..2], &[0x81, 0x80]);
        assert_eq!(decode_final_octet_string(&out), Ok(&long[..]));
    }

    #[test]
    fn writer_reports_what_it_needed() {
        let mut buf = [0u8; 4];
        let mut w = Writer::new(&mut buf);
        w.put_u8(0xDB).unwrap();
        w.put_octet_string(&[1, 2]).unwrap();
        assert_eq!(w.position(), 4);
        assert_eq!(w.put_u8(0), Err(Error::BufferTooSmall { required: 5 }));
        assert_eq!(
            w.put_length(0x100),
            Err(Error::BufferTooSmall { required: 7 })
        );
        assert_eq!(buf, [0xDB, 0x02, 1, 2]);
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = x.to_le_bytes();
            let n = usize::from(bytes[7] % 8);
            let _ = decode_length(&bytes[..n]);
            let _ = decode_octet_string(&bytes[..n]);
            let _ = decode_final_octet_string(&bytes[..n]);
        }
    }
}
