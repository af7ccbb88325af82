//! Hex and number conventions: hex input is case-insensitive and may hold
//! spaces or colons; hex output is upper-case on one line; numbers are
//! decimal or `0x`-prefixed hex.

use dlms_sec::SystemTitle;
use zeroize::Zeroizing;

use crate::fail::Fail;

/// Upper-case hex of public octets (headers, tags, ciphertext).
pub(crate) fn public_hex(bytes: &[u8]) -> String {
    base16ct::upper::encode_string(bytes)
}

/// Upper-case hex, no separators. Constant time in the octets' values
/// (`base16ct`), and wiped on drop: the output may be a clear key.
pub(crate) fn hex(bytes: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(base16ct::upper::encode_string(bytes))
}

/// Reads hex, skipping whitespace and colons. `what` names the input in
/// error messages. The result is wiped on drop: it may be key material.
///
/// The digits are decoded by `base16ct`, with no branch or table index on
/// their values. Skipping separators compares each character with them,
/// and a hex digit is never one, so no branch depends on which digit it is;
/// only on a malformed input does the error message look for the culprit.
pub(crate) fn parse_hex(text: &str, what: &str) -> Result<Zeroizing<Vec<u8>>, Fail> {
    let mut digits = Zeroizing::new(Vec::with_capacity(text.len()));
    for c in text.chars() {
        if c.is_whitespace() || c == ':' {
            continue;
        }
        match u8::try_from(c) {
            Ok(b) if c.is_ascii() => digits.push(b),
            _ => return Err(not_a_digit(what, c)),
        }
    }
    if digits.is_empty() {
        return Err(Fail::usage(format_args!("{what}: no hex digits")));
    }
    if digits.len() % 2 != 0 {
        if let Some(c) = digits.iter().copied().find(|b| !b.is_ascii_hexdigit()) {
            return Err(not_a_digit(what, char::from(c)));
        }
        return Err(Fail::usage(format_args!(
            "{what}: odd number of hex digits"
        )));
    }
    let mut out = Zeroizing::new(vec![0u8; digits.len() / 2]);
    if base16ct::mixed::decode(&digits[..], &mut out[..]).is_err() {
        let c = digits
            .iter()
            .copied()
            .find(|b| !b.is_ascii_hexdigit())
            .map_or('?', char::from);
        return Err(not_a_digit(what, c));
    }
    Ok(out)
}

fn not_a_digit(what: &str, c: char) -> Fail {
    Fail::usage(format_args!("{what}: {c:?} is not a hex digit"))
}

/// Reads exactly `N` octets of hex.
pub(crate) fn parse_array<const N: usize>(
    text: &str,
    what: &str,
) -> Result<Zeroizing<[u8; N]>, Fail> {
    let v = parse_hex(text, what)?;
    let mut out = Zeroizing::new([0u8; N]);
    if v.len() != N {
        return Err(Fail::usage(format_args!(
            "{what}: {} octets, expected {N}",
            v.len()
        )));
    }
    out.copy_from_slice(&v);
    Ok(out)
}

/// Reads an 8-octet system title.
pub(crate) fn parse_title(text: &str, what: &str) -> Result<SystemTitle, Fail> {
    parse_array::<8>(text, what).map(|t| SystemTitle::new(*t))
}

/// Reads a 32-bit number: decimal, or hex after `0x`.
pub(crate) fn parse_u32(text: &str, what: &str) -> Result<u32, Fail> {
    let t = text.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) if !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u32::from_str_radix(h, 16).ok()
        }
        Some(_) => None,
        None if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => t.parse().ok(),
        None => None,
    };
    parsed.ok_or_else(|| {
        Fail::usage(format_args!(
            "{what}: {text:?} is not a 32-bit number (decimal, or hex after 0x)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_conventions() {
        assert_eq!(
            *parse_hex("c8 1E:30\n01", "x").unwrap(),
            vec![0xC8, 0x1E, 0x30, 0x01]
        );
        assert_eq!(*hex(&[0x0A, 0xFF]), "0AFF");
        assert!(parse_hex("ABC", "x").is_err());
        assert!(parse_hex("GG", "x").is_err());
        assert!(parse_hex(" : ", "x").is_err());
        assert!(parse_hex("é0", "x").is_err());
    }

    #[test]
    fn every_octet_both_ways_in_either_case() {
        for b in 0..=u8::MAX {
            let upper = format!("{b:02X}");
            assert_eq!(*hex(&[b]), upper);
            assert_eq!(*parse_hex(&upper, "x").unwrap(), vec![b]);
            assert_eq!(*parse_hex(&format!("{b:02x}"), "x").unwrap(), vec![b]);
        }
        for bad in ["0G", "G0", "0g", " 0x", "-1", "0\u{0}"] {
            assert!(parse_hex(bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32("0x01234567", "n").unwrap(), 0x0123_4567);
        assert_eq!(parse_u32("19088743", "n").unwrap(), 0x0123_4567);
        assert_eq!(parse_u32("0XFFFFFFFF", "n").unwrap(), u32::MAX);
        for bad in [
            "",
            "0x",
            "-1",
            "+1",
            "4294967296",
            "0x100000000",
            "12a",
            "0x-1",
        ] {
            assert!(parse_u32(bad, "n").is_err(), "{bad}");
        }
    }
}
