//! The xDLMS action-request that invokes Security Setup key_transfer
//! (class 64, method 2; GB 9.2.3.3.7.7 and 9.2.5.1).
//!
//! Logical-name referencing, action-request-normal, with parameters:
//!
//! ```text
//! C3                 action-request
//! 01                 action-request-normal
//! <1>                invoke-id-and-priority
//! 00 40              class-id 64 (Security Setup), Unsigned16 big-endian
//! <6>                instance-id: the object's logical name (fixed size)
//! 02                 method-id
//! 01                 method-invocation-parameters present
//! <parameter>        the key_transfer array (see KeyTransfer)
//! ```
//!
//! The emitted APDU is plain; protect it with [`Suite0`](crate::Suite0)
//! (a glo-action-request or a general form) before it goes on the wire, and
//! unprotect it before [`parse_key_transfer_request`] reads it.

use crate::error::{Error, WireError};
use crate::wire::axdr::Writer;
use crate::wire::key_transfer::KeyTransfer;

/// Class id of the Security Setup interface class.
pub const SECURITY_SETUP_CLASS_ID: u16 = 64;
/// Method id of key_transfer (version 1) / global_key_transfer (version 0).
pub const KEY_TRANSFER_METHOD: u8 = 2;
/// Logical name 0-0:43.0.0.255, the Security Setup instance jDLMS treats as
/// current (GB 9.2.3.3.7.7, Security setup methods).
pub const SECURITY_SETUP_LN: [u8; 6] = [0x00, 0x00, 0x2B, 0x00, 0x00, 0xFF];

/// APDU tag of action-request.
const TAG_ACTION_REQUEST: u8 = 0xC3;
/// CHOICE tag of action-request-normal.
const CHOICE_NORMAL: u8 = 0x01;
/// OPTIONAL presence octet: method-invocation-parameters present.
const PARAMETERS_PRESENT: u8 = 0x01;
/// Octets before the parameter: tag, choice, invoke-id, class, LN, method,
/// presence.
const HEADER_LEN: usize = 13;

/// Which Security Setup object and method a key_transfer request invokes,
/// and its invoke-id-and-priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SecuritySetupMethod {
    /// The Security Setup object's logical name (0-b:43.0.e.255).
    pub logical_name: [u8; 6],
    /// The method id; key_transfer is [`KEY_TRANSFER_METHOD`] in both class
    /// versions.
    pub method: u8,
    /// invoke-id-and-priority: bits 0..=3 invoke id, bit 6 service class
    /// (1 confirmed), bit 7 priority (1 high).
    pub invoke_id_and_priority: u8,
}

impl Default for SecuritySetupMethod {
    /// 0-0:43.0.0.255, method 2, invoke id 1, confirmed, high priority
    /// (`0xC1`).
    fn default() -> Self {
        Self {
            logical_name: SECURITY_SETUP_LN,
            method: KEY_TRANSFER_METHOD,
            invoke_id_and_priority: 0xC1,
        }
    }
}

impl SecuritySetupMethod {
    /// The exact length of the action-request
    /// [`Self::emit_key_transfer_request`] writes for `t`.
    #[must_use]
    pub fn key_transfer_request_len(&self, t: &KeyTransfer) -> usize {
        HEADER_LEN.saturating_add(t.buffer_len())
    }

    /// Writes the plain action-request invoking key_transfer with `t` at
    /// the start of `out`; returns its length
    /// ([`Self::key_transfer_request_len`]).
    ///
    /// # Errors
    /// [`Error::Misuse`] when `t` has no entries; [`Error::BufferTooSmall`]
    /// when `out` is too short.
    pub fn emit_key_transfer_request(
        &self,
        t: &KeyTransfer,
        out: &mut [u8],
    ) -> Result<usize, Error> {
        if t.is_empty() {
            return Err(Error::Misuse("a key_transfer carries at least one key"));
        }
        let total = self.key_transfer_request_len(t);
        let dst = out
            .get_mut(..total)
            .ok_or(Error::BufferTooSmall { required: total })?;
        let (head, param) = dst.split_at_mut(HEADER_LEN);
        let mut w = Writer::new(head);
        w.put(&[
            TAG_ACTION_REQUEST,
            CHOICE_NORMAL,
            self.invoke_id_and_priority,
        ])?;
        w.put(&SECURITY_SETUP_CLASS_ID.to_be_bytes())?;
        w.put(&self.logical_name)?;
        w.put(&[self.method, PARAMETERS_PRESENT])?;
        let n = t.emit(param)?;
        HEADER_LEN
            .checked_add(n)
            .ok_or(Error::Wire(WireError::InvalidLength))
    }
}

/// Reads a plain action-request invoking Security Setup key_transfer (the
/// meter side, after unprotecting it).
///
/// Returns the method descriptor (the caller checks that the logical name
/// is the Security Setup object of the client that sent it) and the
/// parameter.
///
/// # Errors
/// * [`WireError::Truncated`] when the APDU ends early;
/// * [`WireError::UnexpectedTag`] for an APDU that is not an
///   action-request (carries its tag), or an action-request other than
///   action-request-normal (with-list, pblock forms; carries the choice);
/// * [`WireError::InvalidField`] for a class id other than 64, a method
///   id other than [`KEY_TRANSFER_METHOD`], a request without parameters,
///   or a presence octet other than 0 or 1;
/// * as [`KeyTransfer::parse`] for the parameter, including trailing
///   bytes after it.
pub fn parse_key_transfer_request(
    apdu: &[u8],
) -> Result<(SecuritySetupMethod, KeyTransfer), Error> {
    let (&tag, rest) = apdu.split_first().ok_or(WireError::Truncated)?;
    if tag != TAG_ACTION_REQUEST {
        return Err(WireError::UnexpectedTag(tag).into());
    }
    let (&choice, rest) = rest.split_first().ok_or(WireError::Truncated)?;
    if choice != CHOICE_NORMAL {
        return Err(WireError::UnexpectedTag(choice).into());
    }
    let (&invoke_id_and_priority, rest) = rest.split_first().ok_or(WireError::Truncated)?;
    let (class_id, rest) = rest.split_first_chunk::<2>().ok_or(WireError::Truncated)?;
    if u16::from_be_bytes(*class_id) != SECURITY_SETUP_CLASS_ID {
        return Err(WireError::InvalidField.into());
    }
    let (&logical_name, rest) = rest.split_first_chunk::<6>().ok_or(WireError::Truncated)?;
    let (&method, rest) = rest.split_first().ok_or(WireError::Truncated)?;
    if method != KEY_TRANSFER_METHOD {
        return Err(WireError::InvalidField.into());
    }
    let (&present, rest) = rest.split_first().ok_or(WireError::Truncated)?;
    if present != PARAMETERS_PRESENT {
        return Err(WireError::InvalidField.into());
    }
    let transfer = KeyTransfer::parse(rest)?;
    Ok((
        SecuritySetupMethod {
            logical_name,
            method,
            invoke_id_and_priority,
        },
        transfer,
    ))
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]
mod tests {
    extern crate alloc;
    use alloc::vec::Vec;

    use super::*;
    use crate::error::KeyError;
    use crate::wire::key_transfer::tests::vector;

    /// The key_transfer of vectors/README.md invoked on 0-0:43.0.0.255
    /// with the default invoke-id-and-priority.
    fn request() -> Vec<u8> {
        let mut v = hex::decode("C301C100400000 2B0000FF 0201".replace(' ', "")).unwrap();
        v.extend_from_slice(&vector());
        v
    }

    fn transfer() -> KeyTransfer {
        KeyTransfer::parse(&vector()).unwrap()
    }

    #[test]
    fn test_deconstruct() {
        let (m, t) = parse_key_transfer_request(&request()).unwrap();
        assert_eq!(m.logical_name, [0, 0, 43, 0, 0, 255]);
        assert_eq!(m.method, 2);
        assert_eq!(m.invoke_id_and_priority, 0xC1);
        assert_eq!(t, transfer());
    }

    #[test]
    fn test_construct() {
        let m = SecuritySetupMethod {
            logical_name: [0, 1, 43, 0, 3, 255],
            method: KEY_TRANSFER_METHOD,
            invoke_id_and_priority: 0x42,
        };
        let mut out = [0u8; 64];
        let n = m.emit_key_transfer_request(&transfer(), &mut out).unwrap();
        assert_eq!(out[..13], [0xC3, 1, 0x42, 0, 64, 0, 1, 43, 0, 3, 255, 2, 1]);
        assert_eq!(parse_key_transfer_request(&out[..n]), Ok((m, transfer())));
    }

    #[test]
    fn test_check_len() {
        let bytes = request();
        for n in 0..bytes.len() {
            assert_eq!(
                parse_key_transfer_request(&bytes[..n]),
                Err(Error::Wire(WireError::Truncated)),
                "{n}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            parse_key_transfer_request(&longer),
            Err(Error::Wire(WireError::TrailingBytes))
        );
    }

    #[test]
    fn test_parse() {
        assert_eq!(
            parse_key_transfer_request(&request()),
            Ok((SecuritySetupMethod::default(), transfer()))
        );
    }

    #[test]
    fn test_emit() {
        let mut out = [0xEEu8; 64];
        let m = SecuritySetupMethod::default();
        assert_eq!(m.emit_key_transfer_request(&transfer(), &mut out), Ok(45));
        assert_eq!(out[..45], request()[..]);
        assert_eq!(out[45], 0xEE);
        assert_eq!(
            m.emit_key_transfer_request(&transfer(), &mut out[..44]),
            Err(Error::BufferTooSmall { required: 45 })
        );
        assert!(matches!(
            m.emit_key_transfer_request(&KeyTransfer::new(), &mut out),
            Err(Error::Misuse(_))
        ));
    }

    #[test]
    fn test_buffer_len() {
        let m = SecuritySetupMethod::default();
        assert_eq!(m.key_transfer_request_len(&transfer()), 45);
        assert_eq!(m.key_transfer_request_len(&transfer()), request().len());
    }

    #[test]
    fn rejects_other_services_classes_methods_and_missing_parameters() {
        let wire = |e| Err(Error::Wire(e));
        let with = |pos: usize, b: u8| {
            let mut v = request();
            v[pos] = b;
            parse_key_transfer_request(&v)
        };
        // get-request, set-request, glo-action-request, action-response.
        for tag in [0xC0u8, 0xC1, 0xCB, 0xC7] {
            assert_eq!(with(0, tag), wire(WireError::UnexpectedTag(tag)));
        }
        // next-pblock, with-list, with-first-pblock, ...
        for choice in [0u8, 2, 3, 4, 5, 6] {
            assert_eq!(with(1, choice), wire(WireError::UnexpectedTag(choice)));
        }
        assert_eq!(with(3, 1), wire(WireError::InvalidField)); // class 0x0140
        assert_eq!(with(4, 1), wire(WireError::InvalidField)); // class 1 (Data)
        assert_eq!(with(4, 15), wire(WireError::InvalidField)); // Association LN
        assert_eq!(with(11, 1), wire(WireError::InvalidField)); // security_activate
        assert_eq!(with(11, 3), wire(WireError::InvalidField)); // key_agreement
        assert_eq!(with(12, 2), wire(WireError::InvalidField));
        // No parameters: the APDU ends after the presence octet.
        let mut v = request();
        v.truncate(13);
        v[12] = 0;
        assert_eq!(
            parse_key_transfer_request(&v),
            wire(WireError::InvalidField)
        );
        // Any logical name and invoke id are returned as read.
        let (m, _) = {
            let mut v = request();
            v[2] = 0x07;
            v[10] = 0x00;
            parse_key_transfer_request(&v).unwrap()
        };
        assert_eq!(m.invoke_id_and_priority, 0x07);
        assert_eq!(m.logical_name, [0, 0, 43, 0, 0, 0]);
        // Parameter errors come through.
        assert_eq!(with(18, 9), Err(Error::Key(KeyError::UnknownKeyId(9))));
    }
}
