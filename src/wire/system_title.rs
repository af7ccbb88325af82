//! System titles and invocation counters: the two halves of the suite-0 IV.

use core::fmt;

use crate::error::WireError;

/// Length of a system title.
pub const SYSTEM_TITLE_LEN: usize = 8;

/// An 8-octet system title (3-letter manufacturer id + 5 octets), the
/// sender's identity in the IV. Public.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SystemTitle([u8; SYSTEM_TITLE_LEN]);

impl SystemTitle {
    /// Wraps 8 octets.
    #[must_use]
    pub const fn new(bytes: [u8; SYSTEM_TITLE_LEN]) -> Self {
        Self(bytes)
    }

    /// The octets.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; SYSTEM_TITLE_LEN] {
        &self.0
    }

    /// Reads a title from exactly 8 octets.
    ///
    /// # Errors
    /// [`WireError::InvalidSystemTitle`] for any other length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, WireError> {
        <[u8; SYSTEM_TITLE_LEN]>::try_from(bytes)
            .map(Self)
            .map_err(|_| WireError::InvalidSystemTitle(bytes.len()))
    }
}

impl fmt::Debug for SystemTitle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SystemTitle(")?;
        for b in self.0 {
            write!(f, "{b:02X}")?;
        }
        f.write_str(")")
    }
}

/// A 32-bit invocation counter, big-endian on the wire and in the IV.
///
/// `0xFFFFFFFF` is never usable: a sender stops before it and a receiver
/// rejects it (GB 9.2.3.3.7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InvocationCounter(u32);

impl InvocationCounter {
    /// The reserved value no frame may carry.
    pub const RESERVED: u32 = u32::MAX;

    /// Wraps a counter value.
    #[must_use]
    pub const fn new(value: u32) -> Self {
        Self(value)
    }

    /// The value.
    #[must_use]
    pub const fn value(self) -> u32 {
        self.0
    }

    /// Big-endian octets.
    #[must_use]
    pub const fn to_be_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }

    /// From big-endian octets.
    #[must_use]
    pub const fn from_be_bytes(bytes: [u8; 4]) -> Self {
        Self(u32::from_be_bytes(bytes))
    }
}

/// The 96-bit suite-0 IV: the sender's system title ‖ invocation counter.
///
/// The only place an IV is built, so the order and byte order cannot be
/// got wrong at a call site.
#[must_use]
#[inline]
pub(crate) fn iv(title: &SystemTitle, ic: InvocationCounter) -> [u8; 12] {
    let mut iv = [0u8; 12];
    let (t, c) = iv.split_at_mut(SYSTEM_TITLE_LEN);
    t.copy_from_slice(title.as_bytes());
    c.copy_from_slice(&ic.to_be_bytes());
    iv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iv_is_title_then_big_endian_counter() {
        let t = SystemTitle::new([0x4D, 0x4D, 0x4D, 0, 0, 0xBC, 0x61, 0x4E]);
        assert_eq!(
            iv(&t, InvocationCounter::new(0x0123_4567)),
            [
                0x4D, 0x4D, 0x4D, 0, 0, 0xBC, 0x61, 0x4E, 0x01, 0x23, 0x45, 0x67
            ]
        );
    }

    #[test]
    fn from_slice_checks_length() {
        assert!(SystemTitle::from_slice(&[0; 8]).is_ok());
        assert_eq!(
            SystemTitle::from_slice(&[0; 7]),
            Err(WireError::InvalidSystemTitle(7))
        );
        assert_eq!(
            SystemTitle::from_slice(&[0; 9]),
            Err(WireError::InvalidSystemTitle(9))
        );
    }
}
