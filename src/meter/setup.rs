//! The methods the security layer serves itself, as they look on the wire:
//! Security Setup (class 64) security_activate and key_transfer, the
//! Association LN (class 15) reply_to_HLS_authentication, the
//! action-responses to them, the security policy's version-0 values, and
//! the dedicated key in an xDLMS InitiateRequest.

use crate::error::WireError;
use crate::types::SecurityPolicy;

/// Class id of Association LN.
pub const ASSOCIATION_LN_CLASS_ID: u16 = 15;
/// Association LN method reply_to_HLS_authentication.
pub const REPLY_TO_HLS_METHOD: u8 = 1;
/// Security Setup method security_activate.
pub const SECURITY_ACTIVATE_METHOD: u8 = 1;

/// Action-Result success.
pub const ACTION_SUCCESS: u8 = 0;
/// Action-Result read-write-denied: the request lacked the protection the
/// method needs, or the device lacks the capability.
pub const ACTION_DENIED: u8 = 3;
/// Action-Result type-unmatched: the parameter is malformed.
pub const ACTION_TYPE_UNMATCHED: u8 = 12;
/// Action-Result other-reason: the parameter was refused.
pub const ACTION_OTHER_REASON: u8 = 250;

/// An action-request-normal, read up to its parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ActionHead<'a> {
    pub(crate) invoke_id_and_priority: u8,
    pub(crate) class_id: u16,
    pub(crate) method: u8,
    /// The method-invocation-parameters (empty when absent).
    pub(crate) parameter: &'a [u8],
}

/// Reads `C3 01 iid class(2) ln(6) method present [parameter]`; `None` for
/// anything else.
pub(crate) fn action_head(apdu: &[u8]) -> Option<ActionHead<'_>> {
    let (&[tag, choice, iid], rest) = apdu.split_first_chunk::<3>()?;
    if tag != 0xC3 || choice != 0x01 {
        return None;
    }
    let (class, rest) = rest.split_first_chunk::<2>()?;
    let (_ln, rest) = rest.split_first_chunk::<6>()?;
    let (&[method, present], parameter) = rest.split_first_chunk::<2>()?;
    let parameter = match present {
        0 if parameter.is_empty() => parameter,
        1 => parameter,
        _ => return None,
    };
    Some(ActionHead {
        invoke_id_and_priority: iid,
        class_id: u16::from_be_bytes(*class),
        method,
        parameter,
    })
}

/// Length of an action-response without return parameters.
pub(crate) const ACTION_RESPONSE_LEN: usize = 5;

/// action-response-normal without return parameters:
/// `C7 01 iid result 00`.
pub(crate) const fn action_response(iid: u8, result: u8) -> [u8; ACTION_RESPONSE_LEN] {
    [0xC7, 0x01, iid, result, 0x00]
}

/// `response` at the start of a buffer as long as the longest answer.
pub(crate) const fn hls_answer_prefix(response: [u8; ACTION_RESPONSE_LEN]) -> [u8; HLS_ANSWER_LEN] {
    let [a, b, c, d, e] = response;
    let mut out = [0u8; HLS_ANSWER_LEN];
    out[0] = a;
    out[1] = b;
    out[2] = c;
    out[3] = d;
    out[4] = e;
    out
}

/// The security policy of a version-0 Security Setup value (0..=3).
#[must_use]
pub const fn policy_from_v0(value: u8) -> Option<SecurityPolicy> {
    match value {
        0 => Some(SecurityPolicy::AcceptAnyProtection),
        1 => Some(SecurityPolicy::Authenticated),
        2 => Some(SecurityPolicy::Encrypted),
        3 => Some(SecurityPolicy::AuthenticatedEncrypted),
        _ => None,
    }
}

/// The version-0 value of a policy: bit 0 authenticated, bit 1 encrypted.
#[must_use]
pub const fn policy_v0(policy: SecurityPolicy) -> u8 {
    match policy {
        SecurityPolicy::AcceptAnyProtection => 0,
        SecurityPolicy::Authenticated => 1,
        SecurityPolicy::Encrypted => 2,
        SecurityPolicy::AuthenticatedEncrypted => 3,
    }
}

/// Whether `new` requires at least everything `old` requires (security
/// activation only strengthens: authenticated to encrypted is not).
#[must_use]
pub const fn strengthens(old: SecurityPolicy, new: SecurityPolicy) -> bool {
    let (o, n) = (policy_v0(old), policy_v0(new));
    n & o == o
}

/// The parameter of security_activate: an enum (`16 v`) of a version-0
/// policy value.
pub(crate) fn parse_activate(parameter: &[u8]) -> Option<SecurityPolicy> {
    match *parameter {
        [0x16, v] => policy_from_v0(v),
        _ => None,
    }
}

/// The parameter of reply_to_HLS_authentication: an octet-string (`09 len
/// value`), returned as its value.
pub(crate) fn parse_octet_string(parameter: &[u8]) -> Option<&[u8]> {
    let (&[tag, len], value) = parameter.split_first_chunk::<2>()?;
    (tag == 0x09 && usize::from(len) == value.len() && len < 0x80).then_some(value)
}

/// Length of the pass-4 action-response.
pub(crate) const HLS_ANSWER_LEN: usize = 25;

/// action-response-normal with the octet-string f(CtoS) as return data:
/// `C7 01 iid 00 01 00 09 11 <17>`.
pub(crate) fn hls_answer(iid: u8, f_ctos: &[u8; 17]) -> [u8; HLS_ANSWER_LEN] {
    let mut out = [0u8; HLS_ANSWER_LEN];
    let (head, tail) = out.split_at_mut(8);
    head.copy_from_slice(&[0xC7, 0x01, iid, ACTION_SUCCESS, 0x01, 0x00, 0x09, 0x11]);
    tail.copy_from_slice(f_ctos);
    out
}

/// The dedicated key of a plain xDLMS InitiateRequest
/// (`01 | 00 or 01 10 <16> | ...`): `Ok(None)` when absent.
///
/// # Errors
/// [`WireError::UnexpectedTag`] for another APDU,
/// [`WireError::Truncated`] when it ends early, [`WireError::InvalidField`]
/// for a key that is not 16 octets or a presence octet other than 0 or 1.
pub fn initiate_dedicated_key(apdu: &[u8]) -> Result<Option<&[u8; 16]>, WireError> {
    let (&tag, rest) = apdu.split_first().ok_or(WireError::Truncated)?;
    if tag != 0x01 {
        return Err(WireError::UnexpectedTag(tag));
    }
    let (&present, rest) = rest.split_first().ok_or(WireError::Truncated)?;
    match present {
        0 => Ok(None),
        1 => {
            let (&len, rest) = rest.split_first().ok_or(WireError::Truncated)?;
            if len != 16 {
                return Err(WireError::InvalidField);
            }
            let (key, _) = rest.split_first_chunk::<16>().ok_or(WireError::Truncated)?;
            Ok(Some(key))
        }
        _ => Err(WireError::InvalidField),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn only_stronger_policies_strengthen() {
        use SecurityPolicy::*;
        let all = [
            AcceptAnyProtection,
            Authenticated,
            Encrypted,
            AuthenticatedEncrypted,
        ];
        for (i, p) in all.into_iter().enumerate() {
            assert_eq!(policy_from_v0(policy_v0(p)), Some(p));
            assert_eq!(usize::from(policy_v0(p)), i);
            assert!(strengthens(p, p));
            assert!(strengthens(p, AuthenticatedEncrypted));
            assert_eq!(
                strengthens(p, AcceptAnyProtection),
                p == AcceptAnyProtection
            );
        }
        assert!(!strengthens(Authenticated, Encrypted));
        assert!(!strengthens(Encrypted, Authenticated));
        assert_eq!(policy_from_v0(4), None);
    }

    #[test]
    fn initiate_request_with_and_without_a_dedicated_key() {
        // docs: the self-built plain InitiateRequest.
        let with =
            hex::decode("01011000112233445566778899AABBCCDDEEFF0000065F1F040000601D04B0").unwrap();
        let key = initiate_dedicated_key(&with).unwrap().unwrap();
        assert_eq!(
            key[..],
            hex::decode("00112233445566778899AABBCCDDEEFF").unwrap()
        );
        assert_eq!(
            initiate_dedicated_key(&with[..10]),
            Err(WireError::Truncated)
        );
        let without = [0x01, 0x00, 0x00, 0x00, 0x06];
        assert_eq!(initiate_dedicated_key(&without), Ok(None));
        assert_eq!(
            initiate_dedicated_key(&[0x01, 0x01, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(WireError::InvalidField)
        );
        assert_eq!(
            initiate_dedicated_key(&[0xC0, 0x00]),
            Err(WireError::UnexpectedTag(0xC0))
        );
    }

    #[test]
    fn action_heads() {
        let a = [
            0xC3, 0x01, 0xC1, 0x00, 0x40, 0, 0, 43, 0, 0, 255, 0x01, 0x01, 0x16, 0x03,
        ];
        let h = action_head(&a).unwrap();
        assert_eq!(
            (h.class_id, h.method, h.invoke_id_and_priority),
            (64, 1, 0xC1)
        );
        assert_eq!(
            parse_activate(h.parameter),
            Some(SecurityPolicy::AuthenticatedEncrypted)
        );
        assert_eq!(action_head(&a[..12]), None);
        let mut b = a;
        b[12] = 2;
        assert_eq!(action_head(&b), None);
        assert_eq!(parse_octet_string(&[0x09, 0x02, 1, 2]), Some(&[1u8, 2][..]));
        assert_eq!(parse_octet_string(&[0x09, 0x03, 1, 2]), None);
        let a = hls_answer(0xC1, &[7; 17]);
        assert_eq!(a[..8], [0xC7, 0x01, 0xC1, 0x00, 0x01, 0x00, 0x09, 0x11]);
        assert_eq!(a[8..], [7; 17]);
    }
}
