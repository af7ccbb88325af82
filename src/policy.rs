//! What protection a frame carries, and what an endpoint requires (D-07).
//!
//! [`Protection`] is read off the security control byte of a ciphered APDU;
//! [`SecurityPolicy`] is the minimum an endpoint accepts. A frame protected
//! more weakly than the policy is refused before any key is used, so
//! clearing the authentication bit of an authenticated frame can never turn
//! it into an accepted encryption-only one.

/// The protection of one ciphered APDU (security control bits A and E).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protection {
    /// SC `0x10`: the APDU travels in clear followed by a 12-octet GMAC tag
    /// over SC ‖ AK ‖ APDU.
    Authenticated,
    /// SC `0x20`: the APDU is encrypted (GCM counter mode) and carries no tag.
    Encrypted,
    /// SC `0x30`: the APDU is encrypted and tagged, AAD = SC ‖ AK.
    AuthenticatedEncrypted,
}

impl Protection {
    /// Whether a tag is produced (modes with authentication).
    #[must_use]
    pub const fn is_authenticated(self) -> bool {
        matches!(self, Self::Authenticated | Self::AuthenticatedEncrypted)
    }

    /// Whether the APDU is encrypted.
    #[must_use]
    pub const fn is_encrypted(self) -> bool {
        matches!(self, Self::Encrypted | Self::AuthenticatedEncrypted)
    }

    /// The A and E bits of the security control byte (`0x10`, `0x20`, `0x30`).
    #[must_use]
    pub const fn bits(self) -> u8 {
        match self {
            Self::Authenticated => 0x10,
            Self::Encrypted => 0x20,
            Self::AuthenticatedEncrypted => 0x30,
        }
    }

    /// Reads the A and E bits; `None` when neither is set.
    #[must_use]
    pub const fn from_bits(sc: u8) -> Option<Self> {
        match sc & 0x30 {
            0x10 => Some(Self::Authenticated),
            0x20 => Some(Self::Encrypted),
            0x30 => Some(Self::AuthenticatedEncrypted),
            _ => None,
        }
    }
}

/// The minimum protection an endpoint accepts on received APDUs
/// (the security policy of Security Setup, version 0 values).
///
/// A frame satisfies the policy when it carries every protection the policy
/// names; stronger protection is accepted (authenticated encryption
/// satisfies every policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SecurityPolicy {
    /// Any ciphered APDU is accepted (v0 value 0).
    #[default]
    None,
    /// Every APDU must be authenticated (v0 value 1).
    Authenticated,
    /// Every APDU must be encrypted (v0 value 2).
    Encrypted,
    /// Every APDU must be authenticated and encrypted (v0 value 3).
    AuthenticatedEncrypted,
}

impl SecurityPolicy {
    /// Whether a frame with `protection` satisfies this policy.
    #[must_use]
    pub const fn permits(self, protection: Protection) -> bool {
        match self {
            Self::None => true,
            Self::Authenticated => protection.is_authenticated(),
            Self::Encrypted => protection.is_encrypted(),
            Self::AuthenticatedEncrypted => {
                protection.is_authenticated() && protection.is_encrypted()
            }
        }
    }

    /// Checks `protection` against the policy.
    ///
    /// # Errors
    /// [`Error::PolicyViolation`](crate::Error::PolicyViolation) when the
    /// frame is protected more weakly than required.
    pub const fn check(self, protection: Protection) -> crate::Result<()> {
        if self.permits(protection) {
            Ok(())
        } else {
            Err(crate::Error::PolicyViolation {
                required: self,
                received: protection,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Protection; 3] = [
        Protection::Authenticated,
        Protection::Encrypted,
        Protection::AuthenticatedEncrypted,
    ];

    #[test]
    fn bits_round_trip() {
        for p in ALL {
            assert_eq!(Protection::from_bits(p.bits()), Some(p));
            assert_eq!(Protection::from_bits(p.bits() | 0x40), Some(p));
        }
        assert_eq!(Protection::from_bits(0x00), None);
        assert_eq!(Protection::from_bits(0x40), None);
    }

    #[test]
    fn weaker_protection_is_refused() {
        use Protection::*;
        let table = [
            (SecurityPolicy::None, [true, true, true]),
            (SecurityPolicy::Authenticated, [true, false, true]),
            (SecurityPolicy::Encrypted, [false, true, true]),
            (SecurityPolicy::AuthenticatedEncrypted, [false, false, true]),
        ];
        for (policy, expect) in table {
            for (p, ok) in [Authenticated, Encrypted, AuthenticatedEncrypted]
                .into_iter()
                .zip(expect)
            {
                assert_eq!(policy.permits(p), ok, "{policy:?} {p:?}");
                assert_eq!(policy.check(p).is_ok(), ok);
            }
        }
    }
}
