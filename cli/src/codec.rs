//! Hex and number conventions: hex input is case-insensitive and may hold
//! spaces or colons; hex output is upper-case on one line; numbers are
//! decimal or `0x`-prefixed hex.

use core::fmt::Write as _;

use dlms_sec::SystemTitle;
use zeroize::Zeroizing;

use crate::fail::Fail;

/// Upper-case hex, no separators.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len().saturating_mul(2));
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02X}");
    }
    s
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => c.checked_sub(b'0'),
        b'a'..=b'f' => c.checked_sub(b'a' - 10),
        b'A'..=b'F' => c.checked_sub(b'A' - 10),
        _ => None,
    }
}

/// Reads hex, skipping whitespace and colons. `what` names the input in
/// error messages. The result is wiped on drop: it may be key material.
pub(crate) fn parse_hex(text: &str, what: &str) -> Result<Zeroizing<Vec<u8>>, Fail> {
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() / 2));
    let mut high: Option<u8> = None;
    for c in text.chars() {
        if c.is_whitespace() || c == ':' {
            continue;
        }
        let v = u8::try_from(c)
            .ok()
            .and_then(nibble)
            .ok_or_else(|| Fail::usage(format_args!("{what}: {c:?} is not a hex digit")))?;
        match high.take() {
            None => high = Some(v),
            Some(h) => out.push((h << 4) | v),
        }
    }
    if high.is_some() {
        return Err(Fail::usage(format_args!(
            "{what}: odd number of hex digits"
        )));
    }
    if out.is_empty() {
        return Err(Fail::usage(format_args!("{what}: no hex digits")));
    }
    Ok(out)
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
        assert_eq!(hex(&[0x0A, 0xFF]), "0AFF");
        assert!(parse_hex("ABC", "x").is_err());
        assert!(parse_hex("GG", "x").is_err());
        assert!(parse_hex(" : ", "x").is_err());
        assert!(parse_hex("é0", "x").is_err());
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
