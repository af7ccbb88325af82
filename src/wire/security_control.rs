//! The security control byte (SC).
//!
//! ```text
//!  bit 7        bit 6        bit 5   bit 4   bits 3..0
//!  compression  key set      E       A       security suite id
//!               0 unicast
//!               1 broadcast
//! ```
//! (GB 9.2.7.2.4.2, Table 37.) All four suite-id bits are read: Gurux masks two and
//! jDLMS three, which lets suite 4 pass as suite 0.

use core::fmt;

use crate::error::{Error, Unsupported, WireError};
use crate::types::{KeySet, Protection};

/// The security control byte.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecurityControl(u8);

impl SecurityControl {
    /// Authentication bit (A).
    pub const AUTHENTICATION: u8 = 0x10;
    /// Encryption bit (E).
    pub const ENCRYPTION: u8 = 0x20;
    /// Key-set bit: set for the broadcast key.
    pub const BROADCAST: u8 = 0x40;
    /// Compression bit (suites 1 and 2 only).
    pub const COMPRESSION: u8 = 0x80;
    /// Mask of the security suite id.
    pub const SUITE_MASK: u8 = 0x0F;

    /// The byte as received, unchecked.
    #[must_use]
    pub const fn from_bits(bits: u8) -> Self {
        Self(bits)
    }

    /// A suite-0 byte for `protection` under `key_set`.
    #[must_use]
    pub const fn new(protection: Protection, key_set: KeySet) -> Self {
        let ks = match key_set {
            KeySet::Unicast => 0,
            KeySet::Broadcast => Self::BROADCAST,
        };
        Self(protection.bits() | ks)
    }

    /// The byte itself, exactly as it goes on the wire and into the AAD.
    #[must_use]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Security suite id (bits 3..0).
    #[must_use]
    pub const fn suite_id(self) -> u8 {
        self.0 & Self::SUITE_MASK
    }

    /// Bit A.
    #[must_use]
    pub const fn authenticated(self) -> bool {
        self.0 & Self::AUTHENTICATION != 0
    }

    /// Bit E.
    #[must_use]
    pub const fn encrypted(self) -> bool {
        self.0 & Self::ENCRYPTION != 0
    }

    /// Bit 6.
    #[must_use]
    pub const fn key_set(self) -> KeySet {
        if self.0 & Self::BROADCAST != 0 {
            KeySet::Broadcast
        } else {
            KeySet::Unicast
        }
    }

    /// Bit 7.
    #[must_use]
    pub const fn compressed(self) -> bool {
        self.0 & Self::COMPRESSION != 0
    }

    /// The protection the A and E bits claim, if any.
    #[must_use]
    pub const fn protection(self) -> Option<Protection> {
        Protection::from_bits(self.0)
    }

    /// Checks that a suite-0 endpoint can process this byte and returns the
    /// protection it names.
    ///
    /// # Errors
    /// [`Unsupported::SecuritySuite`] for a suite id other than 0,
    /// [`Unsupported::Compression`] when bit 7 is set, and
    /// [`WireError::NoProtection`] when neither A nor E is set.
    pub const fn check_suite0(self) -> Result<Protection, Error> {
        if self.suite_id() != 0 {
            return Err(Error::Unsupported(Unsupported::SecuritySuite(
                self.suite_id(),
            )));
        }
        if self.compressed() {
            return Err(Error::Unsupported(Unsupported::Compression));
        }
        match self.protection() {
            Some(p) => Ok(p),
            None => Err(Error::Wire(WireError::NoProtection)),
        }
    }
}

impl fmt::Debug for SecurityControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SecurityControl(0x{:02X}: suite {}{}{}{}{})",
            self.0,
            self.suite_id(),
            if self.authenticated() { " A" } else { "" },
            if self.encrypted() { " E" } else { "" },
            if self.key_set() == KeySet::Broadcast {
                " broadcast"
            } else {
                " unicast"
            },
            if self.compressed() { " compressed" } else { "" },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bit_alone() {
        for (bits, a, e) in [
            (0x00, false, false),
            (0x10, true, false),
            (0x20, false, true),
            (0x30, true, true),
        ] {
            let sc = SecurityControl::from_bits(bits);
            assert_eq!((sc.authenticated(), sc.encrypted()), (a, e), "{bits:#04X}");
        }
    }

    #[test]
    fn fields() {
        let sc = SecurityControl::from_bits(0x70);
        assert_eq!(sc.suite_id(), 0);
        assert!(sc.authenticated() && sc.encrypted() && !sc.compressed());
        assert_eq!(sc.key_set(), KeySet::Broadcast);
        assert_eq!(sc.check_suite0(), Ok(Protection::AuthenticatedEncrypted));
        assert_eq!(
            SecurityControl::new(Protection::Authenticated, KeySet::Broadcast).bits(),
            0x50
        );
        assert_eq!(
            SecurityControl::new(Protection::Encrypted, KeySet::Unicast).bits(),
            0x20
        );
    }

    #[test]
    fn suite0_checks_all_four_suite_bits() {
        for suite in 1..16u8 {
            assert_eq!(
                SecurityControl::from_bits(0x30 | suite).check_suite0(),
                Err(Error::Unsupported(Unsupported::SecuritySuite(suite)))
            );
        }
        assert_eq!(
            SecurityControl::from_bits(0xB0).check_suite0(),
            Err(Error::Unsupported(Unsupported::Compression))
        );
        assert_eq!(
            SecurityControl::from_bits(0x40).check_suite0(),
            Err(Error::Wire(WireError::NoProtection))
        );
    }

    #[test]
    fn debug_names_bits() {
        extern crate std;
        let s = std::format!("{:?}", SecurityControl::from_bits(0x30));
        assert_eq!(s, "SecurityControl(0x30: suite 0 A E unicast)");
    }
}
