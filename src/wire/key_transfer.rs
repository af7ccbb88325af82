//! The parameter of Security Setup key_transfer (method 2: global_key_transfer
//! in class version 0, key_transfer in version 1; GB 9.2.3.3.7.7 and 9.2.5.1).
//!
//! ```text
//! 01 <n>                      array of n entries, 1 <= n <= 4 (A-XDR length)
//!    02 02                    structure of 2 elements
//!       16 <key_id>           enum: 0 GUEK, 1 GBEK, 2 AK, 3 MK
//!       09 18 <24 octets>     octet-string: RFC 3394 wrap under the current MK
//! ```
//!
//! Each entry is 30 octets, so the whole parameter is 32, 62, 92 or 122
//! octets. The counts are A-XDR lengths and only their minimal form is
//! accepted, so [`KeyTransfer::parse`] followed by [`KeyTransfer::emit`]
//! reproduces the input byte for byte.
//!
//! A key id appears at most once in one transfer; four key ids means four
//! entries at most. The parser keeps the entries in wire order and does not
//! require key-id order; [`KeyTransfer::wrap_new_keys`] writes them in
//! key-id order.
//!
//! The wrap does not bind the key id: moving a wrapped value from one entry
//! to another still unwraps. What binds an entry to its role is the suite-0
//! protection of the action-request that carries it, so a meter must accept
//! key_transfer only under authenticated protection.

use core::fmt;

use heapless::Vec;

use crate::error::{Error, KeyError, WireError};
use crate::types::KeyId;
use crate::wire::axdr::{self, Writer};

/// Length of a wrapped 128-bit key.
pub const WRAPPED_KEY_LEN: usize = 24;

/// A key wrapped under a Master Key (RFC 3394). Not secret by itself, but
/// `Debug` shows only its length: it is key material in transit.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WrappedKey([u8; WRAPPED_KEY_LEN]);

impl WrappedKey {
    /// Wraps 24 octets.
    #[must_use]
    pub const fn new(bytes: [u8; WRAPPED_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The octets.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; WRAPPED_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WrappedKey(24 octets)")
    }
}

/// The most entries one key_transfer carries (one per key id).
pub const MAX_KEY_TRANSFER_ENTRIES: usize = 4;

/// A-XDR tag of an array.
const TAG_ARRAY: u8 = 0x01;
/// A-XDR tag of a structure.
const TAG_STRUCTURE: u8 = 0x02;
/// A-XDR tag of an enum.
const TAG_ENUM: u8 = 0x16;
/// A-XDR tag of an octet-string.
const TAG_OCTET_STRING: u8 = 0x09;
/// Elements in each entry structure: key_id and key_wrapped.
const ENTRY_ELEMENTS: usize = 2;
/// Encoded size of one entry: `02 02 16 id 09 18` and 24 octets.
pub(crate) const ENTRY_LEN: usize = 30;

/// One entry of a key_transfer: which key, and the key wrapped under the
/// current Master Key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyTransferEntry {
    /// Which key the entry replaces.
    pub key_id: KeyId,
    /// The new key, RFC 3394-wrapped under the Master Key current when the
    /// transfer is made.
    pub wrapped: WrappedKey,
}

/// The key_transfer method parameter: one to four entries with distinct key
/// ids.
///
/// Holds wrapped keys only, so it may be copied and logged by length; its
/// `Debug` shows key ids and never the wrapped octets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyTransfer {
    entries: Vec<KeyTransferEntry, MAX_KEY_TRANSFER_ENTRIES>,
}

impl KeyTransfer {
    /// An empty transfer. [`Self::emit`] refuses it until an entry is added.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// Appends an entry.
    ///
    /// # Errors
    /// [`KeyError::DuplicateKeyId`] when the transfer already has an entry
    /// for `key_id`; the transfer is unchanged.
    pub fn push(&mut self, key_id: KeyId, wrapped: WrappedKey) -> Result<(), Error> {
        if self.get(key_id).is_some() {
            return Err(Error::Key(KeyError::DuplicateKeyId(key_id.code())));
        }
        // Four distinct key ids fit the four slots, so this cannot be full.
        self.entries
            .push(KeyTransferEntry { key_id, wrapped })
            .map_err(|_| Error::Key(KeyError::DuplicateKeyId(key_id.code())))
    }

    /// The entries, in the order they were pushed or received.
    #[must_use]
    pub fn entries(&self) -> &[KeyTransferEntry] {
        &self.entries
    }

    /// The wrapped key for `key_id`, if the transfer carries one.
    #[must_use]
    pub fn get(&self, key_id: KeyId) -> Option<&WrappedKey> {
        self.entries
            .iter()
            .find(|e| e.key_id == key_id)
            .map(|e| &e.wrapped)
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry yet.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Reads a whole key_transfer parameter (the A-XDR `Data` value, from
    /// its array tag to its last octet).
    ///
    /// # Errors
    /// * [`WireError::UnexpectedTag`] for an array, structure, enum or
    ///   octet-string tag that is not the expected one (carries the tag);
    /// * [`WireError::InvalidLength`] / [`WireError::NonMinimalLength`] for
    ///   a count or length that is not a minimal A-XDR length;
    /// * [`WireError::InvalidField`] for an array of 0 or more than 4
    ///   entries, a structure of other than 2 elements, or a wrapped key
    ///   that is not 24 octets;
    /// * [`WireError::Truncated`] when the input ends early;
    /// * [`WireError::TrailingBytes`] when bytes follow the last entry;
    /// * [`KeyError::UnknownKeyId`] for a key id outside 0..=3;
    /// * [`KeyError::DuplicateKeyId`] for a key id seen twice.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let rest = expect_tag(bytes, TAG_ARRAY)?;
        let (count, mut rest) = axdr::decode_length(rest)?;
        if count == 0 || count > MAX_KEY_TRANSFER_ENTRIES {
            return Err(WireError::InvalidField.into());
        }
        let mut transfer = Self::new();
        for _ in 0..count {
            let (entry, after) = parse_entry(rest)?;
            transfer.push(entry.key_id, entry.wrapped)?;
            rest = after;
        }
        if rest.is_empty() {
            Ok(transfer)
        } else {
            Err(WireError::TrailingBytes.into())
        }
    }

    /// The exact number of octets [`Self::emit`] writes.
    #[must_use]
    pub fn buffer_len(&self) -> usize {
        let n = self.entries.len();
        // n <= 4: the count is one octet and the sum is at most 122.
        ENTRY_LEN
            .saturating_mul(n)
            .saturating_add(axdr::encoded_length_len(n))
            .saturating_add(1)
    }

    /// Writes the parameter at the start of `out`; returns the number of
    /// octets written ([`Self::buffer_len`]).
    ///
    /// # Errors
    /// [`Error::Misuse`] for a transfer without entries (the wire form
    /// needs at least one); [`Error::BufferTooSmall`] when `out` is
    /// shorter than [`Self::buffer_len`] (nothing useful is written).
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, Error> {
        if self.entries.is_empty() {
            return Err(Error::Misuse("a key_transfer carries at least one key"));
        }
        let total = self.buffer_len();
        let dst = out
            .get_mut(..total)
            .ok_or(Error::BufferTooSmall { required: total })?;
        let mut w = Writer::new(dst);
        w.put_u8(TAG_ARRAY)?;
        w.put_length(self.entries.len())?;
        for e in &self.entries {
            w.put_u8(TAG_STRUCTURE)?;
            w.put_length(ENTRY_ELEMENTS)?;
            w.put_u8(TAG_ENUM)?;
            w.put_u8(e.key_id.code())?;
            w.put_u8(TAG_OCTET_STRING)?;
            w.put_octet_string(e.wrapped.as_bytes())?;
        }
        Ok(w.position())
    }
}

/// Checks the tag at the start of `bytes`; returns what follows it.
fn expect_tag(bytes: &[u8], tag: u8) -> Result<&[u8], WireError> {
    match bytes.split_first() {
        None => Err(WireError::Truncated),
        Some((&t, rest)) if t == tag => Ok(rest),
        Some((&t, _)) => Err(WireError::UnexpectedTag(t)),
    }
}

/// Reads one entry structure; returns it and the bytes after it.
fn parse_entry(bytes: &[u8]) -> Result<(KeyTransferEntry, &[u8]), Error> {
    let rest = expect_tag(bytes, TAG_STRUCTURE)?;
    let (elements, rest) = axdr::decode_length(rest)?;
    if elements != ENTRY_ELEMENTS {
        return Err(WireError::InvalidField.into());
    }
    let rest = expect_tag(rest, TAG_ENUM)?;
    let (&code, rest) = rest.split_first().ok_or(WireError::Truncated)?;
    let key_id = KeyId::from_code(code).ok_or(Error::Key(KeyError::UnknownKeyId(code)))?;
    let rest = expect_tag(rest, TAG_OCTET_STRING)?;
    let (len, rest) = axdr::decode_length(rest)?;
    if len != WRAPPED_KEY_LEN {
        return Err(WireError::InvalidField.into());
    }
    let (wrapped, rest) = rest
        .split_first_chunk::<WRAPPED_KEY_LEN>()
        .ok_or(WireError::Truncated)?;
    Ok((
        KeyTransferEntry {
            key_id,
            wrapped: WrappedKey::new(*wrapped),
        },
        rest,
    ))
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]
pub(crate) mod tests {
    extern crate alloc;
    use alloc::format;
    use alloc::vec::Vec;

    use super::*;

    #[test]
    fn debug_of_a_wrapped_key_shows_no_octet() {
        let w = WrappedKey::new([0xA7; WRAPPED_KEY_LEN]);
        assert_eq!(format!("{w:?}"), "WrappedKey(24 octets)");
    }

    /// vectors/README.md (self-built): AK `D0D1…DF` wrapped under KEK
    /// `000102…0F`, as a one-entry key_transfer.
    pub(crate) const VECTOR_11: &str =
        "0101020216020918C498429FF0B8E698352B17AFFAC7CA6C708D61062E82B6D4";

    pub(crate) fn vector() -> Vec<u8> {
        hex::decode(VECTOR_11).unwrap()
    }

    fn wrapped(fill: u8) -> WrappedKey {
        WrappedKey::new([fill; WRAPPED_KEY_LEN])
    }

    /// All four key ids, in the order 3, 0, 2, 1 (wire order is kept).
    fn four() -> KeyTransfer {
        let mut t = KeyTransfer::new();
        t.push(KeyId::Master, wrapped(0x33)).unwrap();
        t.push(KeyId::GlobalUnicastEncryption, wrapped(0x00))
            .unwrap();
        t.push(KeyId::Authentication, wrapped(0x22)).unwrap();
        t.push(KeyId::GlobalBroadcastEncryption, wrapped(0x11))
            .unwrap();
        t
    }

    fn four_bytes() -> Vec<u8> {
        let mut v = alloc::vec![0x01, 0x04];
        for (id, fill) in [(3u8, 0x33u8), (0, 0x00), (2, 0x22), (1, 0x11)] {
            v.extend_from_slice(&[0x02, 0x02, 0x16, id, 0x09, 0x18]);
            v.extend_from_slice(&[fill; 24]);
        }
        v
    }

    #[test]
    fn test_deconstruct() {
        let t = KeyTransfer::parse(&vector()).unwrap();
        assert_eq!(t.len(), 1);
        let e = t.entries()[0];
        assert_eq!(e.key_id, KeyId::Authentication);
        assert_eq!(e.wrapped.as_bytes()[..], vector()[8..]);
        assert_eq!(t.get(KeyId::Authentication), Some(&e.wrapped));
        assert_eq!(t.get(KeyId::Master), None);
    }

    #[test]
    fn test_construct() {
        let mut t = KeyTransfer::new();
        assert!(t.is_empty());
        let w: [u8; 24] = vector()[8..].try_into().unwrap();
        t.push(KeyId::Authentication, WrappedKey::new(w)).unwrap();
        assert_eq!(
            t.push(KeyId::Authentication, wrapped(0)),
            Err(Error::Key(KeyError::DuplicateKeyId(2)))
        );
        assert_eq!(t.len(), 1);
        let mut out = [0u8; 32];
        assert_eq!(t.emit(&mut out), Ok(32));
        assert_eq!(out[..], vector()[..]);
    }

    #[test]
    fn test_check_len() {
        for bytes in [vector(), four_bytes()] {
            for n in 0..bytes.len() {
                assert_eq!(
                    KeyTransfer::parse(&bytes[..n]),
                    Err(Error::Wire(WireError::Truncated)),
                    "{n}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(
                KeyTransfer::parse(&longer),
                Err(Error::Wire(WireError::TrailingBytes))
            );
        }
    }

    #[test]
    fn test_parse() {
        assert_eq!(KeyTransfer::parse(&four_bytes()), Ok(four()));
        let ids: Vec<KeyId> = four().entries().iter().map(|e| e.key_id).collect();
        assert_eq!(
            ids,
            [
                KeyId::Master,
                KeyId::GlobalUnicastEncryption,
                KeyId::Authentication,
                KeyId::GlobalBroadcastEncryption
            ]
        );
    }

    #[test]
    fn test_emit() {
        let mut out = [0xEEu8; 130];
        assert_eq!(four().emit(&mut out), Ok(122));
        assert_eq!(out[..122], four_bytes()[..]);
        assert_eq!(out[122], 0xEE);
        assert_eq!(
            four().emit(&mut out[..121]),
            Err(Error::BufferTooSmall { required: 122 })
        );
        assert!(matches!(
            KeyTransfer::new().emit(&mut out),
            Err(Error::Misuse(_))
        ));
        // parse → emit reproduces the input.
        let t = KeyTransfer::parse(&vector()).unwrap();
        let n = t.emit(&mut out).unwrap();
        assert_eq!(out[..n], vector()[..]);
    }

    #[test]
    fn test_buffer_len() {
        assert_eq!(KeyTransfer::new().buffer_len(), 2);
        let mut t = KeyTransfer::new();
        for (i, id) in KeyId::ALL.into_iter().enumerate() {
            t.push(id, wrapped(0)).unwrap();
            assert_eq!(t.buffer_len(), 2 + 30 * (i + 1));
        }
        assert_eq!(t.buffer_len(), 122);
        assert_eq!(four().buffer_len(), four_bytes().len());
    }

    fn parse_err(bytes: &[u8]) -> Error {
        KeyTransfer::parse(bytes).unwrap_err()
    }

    #[test]
    fn rejects_bad_tags() {
        let wire = |e| Error::Wire(e);
        for (pos, good) in [(0usize, 0x01u8), (2, 0x02), (4, 0x16), (6, 0x09)] {
            for bad in [0x00u8, 0x03, 0x0A, 0x11, 0x15, 0x17, 0xFF] {
                let mut v = vector();
                if bad == good {
                    continue;
                }
                v[pos] = bad;
                assert_eq!(
                    parse_err(&v),
                    wire(WireError::UnexpectedTag(bad)),
                    "{pos} {bad:#x}"
                );
            }
        }
        // A tag error in the second entry.
        let mut v = four_bytes();
        v[2 + 30 + 4] = 0x11;
        assert_eq!(parse_err(&v), wire(WireError::UnexpectedTag(0x11)));
    }

    #[test]
    fn rejects_bad_counts_and_lengths() {
        let wire = |e| Error::Wire(e);
        // Array counts: 0, 5, 0x7F; long forms.
        for n in [0u8, 5, 0x7F] {
            let mut v = vector();
            v[1] = n;
            assert_eq!(parse_err(&v), wire(WireError::InvalidField), "{n}");
        }
        let mut v = vector();
        v.splice(1..2, [0x81, 0x01]);
        assert_eq!(parse_err(&v), wire(WireError::NonMinimalLength));
        let mut v = vector();
        v[1] = 0x80;
        assert_eq!(parse_err(&v), wire(WireError::InvalidLength));
        let mut v = vector();
        v.splice(1..2, [0x81, 0x80]);
        assert_eq!(parse_err(&v), wire(WireError::InvalidField));
        // Structure element counts.
        for n in [0u8, 1, 3, 0x7F] {
            let mut v = vector();
            v[3] = n;
            assert_eq!(parse_err(&v), wire(WireError::InvalidField), "{n}");
        }
        let mut v = vector();
        v.splice(3..4, [0x81, 0x02]);
        assert_eq!(parse_err(&v), wire(WireError::NonMinimalLength));
        // Wrapped lengths other than 24, with or without enough bytes.
        for n in [0u8, 16, 23, 25, 32] {
            let mut v = vector();
            v[7] = n;
            v.extend_from_slice(&[0u8; 16]);
            assert_eq!(parse_err(&v), wire(WireError::InvalidField), "{n}");
        }
        let mut v = vector();
        v.splice(7..8, [0x81, 0x18]);
        assert_eq!(parse_err(&v), wire(WireError::NonMinimalLength));
        let mut v = vector();
        v[7] = 0x83;
        assert_eq!(parse_err(&v), wire(WireError::InvalidLength));
        // Announcing two entries, carrying one.
        let mut v = vector();
        v[1] = 2;
        assert_eq!(parse_err(&v), wire(WireError::Truncated));
    }

    #[test]
    fn rejects_unknown_and_duplicate_key_ids() {
        for id in [4u8, 5, 0x7F, 0xFF] {
            let mut v = vector();
            v[5] = id;
            assert_eq!(parse_err(&v), Error::Key(KeyError::UnknownKeyId(id)));
        }
        for id in 0u8..4 {
            let mut v = four_bytes();
            // Make the last entry repeat key id `id`.
            v[2 + 3 * 30 + 3] = id;
            let expected = if id == 1 {
                Ok(())
            } else {
                Err(Error::Key(KeyError::DuplicateKeyId(id)))
            };
            assert_eq!(KeyTransfer::parse(&v).map(|_| ()), expected, "{id}");
        }
        // Two entries, both GUEK.
        let mut v = alloc::vec![0x01, 0x02];
        for _ in 0..2 {
            v.extend_from_slice(&[0x02, 0x02, 0x16, 0x00, 0x09, 0x18]);
            v.extend_from_slice(&[0xAB; 24]);
        }
        assert_eq!(parse_err(&v), Error::Key(KeyError::DuplicateKeyId(0)));
    }

    #[test]
    fn debug_hides_wrapped_octets() {
        let s = alloc::format!("{:?}", four());
        assert!(s.contains("Master"));
        assert!(!s.contains("51") && !s.contains("0x33"), "{s}");
    }

    #[test]
    fn never_panics_on_arbitrary_input() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let base = four_bytes();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut v = base.clone();
            let pos = (x as usize) % v.len();
            v[pos] = (x >> 32) as u8;
            let cut = ((x >> 40) as usize) % (v.len() + 1);
            if let Ok(t) = KeyTransfer::parse(&v[..cut]) {
                let mut out = [0u8; 122];
                let n = t.emit(&mut out).unwrap();
                assert_eq!(out[..n], v[..cut]);
            }
        }
    }
}
