//! Who, where and why: the context fields of an audit event (version 2 of
//! the canonical encoding).
//!
//! Every type here is `Copy` and fixed-size. Names are bounded printable
//! ASCII (0x20 to 0x7E, at least one octet), checked when made, so an event
//! holding one always encodes and every text format can carry it.

use core::fmt;

/// Why a name was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NameError {
    /// No octets.
    Empty,
    /// More octets than the type holds.
    TooLong {
        /// The most the type holds.
        max: usize,
    },
    /// An octet outside printable ASCII (0x20 to 0x7E).
    NotPrintable,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty name"),
            Self::TooLong { max } => write!(f, "name longer than {max} octets"),
            Self::NotPrintable => f.write_str("name holds an octet outside printable ASCII"),
        }
    }
}

impl core::error::Error for NameError {}

/// Checks `bytes` as a name of at most `max` octets.
const fn check_name(bytes: &[u8], max: usize) -> Result<(), NameError> {
    if bytes.is_empty() {
        return Err(NameError::Empty);
    }
    if bytes.len() > max {
        return Err(NameError::TooLong { max });
    }
    let mut rest = bytes;
    while let [b, tail @ ..] = rest {
        if !matches!(*b, 0x20..=0x7E) {
            return Err(NameError::NotPrintable);
        }
        rest = tail;
    }
    Ok(())
}

macro_rules! bounded_name {
    ($(#[$doc:meta])* $name:ident, $max:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name {
            len: u8,
            bytes: [u8; $max],
        }

        impl $name {
            /// The most octets a name holds.
            pub const MAX_LEN: usize = $max;

            /// A name from text.
            ///
            /// # Errors
            /// [`NameError`] for an empty name, one longer than
            /// [`Self::MAX_LEN`], or one with a character outside printable
            /// ASCII.
            pub const fn new(name: &str) -> Result<Self, NameError> {
                Self::from_bytes(name.as_bytes())
            }

            /// A name from octets.
            ///
            /// # Errors
            /// As [`Self::new`].
            #[allow(
                clippy::indexing_slicing,
                clippy::cast_possible_truncation,
                clippy::arithmetic_side_effects,
                reason = "the length is checked against MAX_LEN (< 256) first"
            )]
            pub const fn from_bytes(name: &[u8]) -> Result<Self, NameError> {
                if let Err(e) = check_name(name, $max) {
                    return Err(e);
                }
                let mut bytes = [0; $max];
                let mut i = 0;
                while i < name.len() {
                    bytes[i] = name[i];
                    i += 1;
                }
                Ok(Self {
                    len: name.len() as u8,
                    bytes,
                })
            }

            /// The name's octets.
            #[must_use]
            pub fn as_bytes(&self) -> &[u8] {
                self.bytes.get(..usize::from(self.len)).unwrap_or_default()
            }

            /// The name.
            #[must_use]
            pub fn as_str(&self) -> &str {
                core::str::from_utf8(self.as_bytes()).unwrap_or_default()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.as_str()).finish()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

bounded_name! {
    /// The name of an operator or a service identity: printable ASCII, 1
    /// to 32 octets.
    PrincipalName, 32
}

bounded_name! {
    /// The name of the node (a service instance) that acted: printable
    /// ASCII, 1 to 16 octets.
    NodeName, 16
}

bounded_name! {
    /// The id of a re-key campaign, as the registry names it: printable
    /// ASCII, 1 to 32 octets.
    CampaignId, 32
}

named_enum! {
    /// What kind of principal acted.
    pub enum PrincipalKind {
        /// A person: an operator.
        Operator = (1, "operator"),
        /// A service identity (a scheduler, another system).
        Service = (2, "service"),
    }
    const COUNT = 2;
}

/// Who acted: an operator or a service identity, by name.
///
/// Written in text logs as `kind:name` (`operator:alice`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    /// Person or service.
    pub kind: PrincipalKind,
    /// The name.
    pub name: PrincipalName,
}

impl Principal {
    /// An operator (a person) named `name`.
    ///
    /// # Errors
    /// As [`PrincipalName::new`].
    pub const fn operator(name: &str) -> Result<Self, NameError> {
        match PrincipalName::new(name) {
            Ok(name) => Ok(Self {
                kind: PrincipalKind::Operator,
                name,
            }),
            Err(e) => Err(e),
        }
    }

    /// A service identity named `name`.
    ///
    /// # Errors
    /// As [`PrincipalName::new`].
    pub const fn service(name: &str) -> Result<Self, NameError> {
        match PrincipalName::new(name) {
            Ok(name) => Ok(Self {
                kind: PrincipalKind::Service,
                name,
            }),
            Err(e) => Err(e),
        }
    }

    /// Reads the `kind:name` text form.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let (kind, name) = text.split_once(':')?;
        Some(Self {
            kind: PrincipalKind::from_name(kind)?,
            name: PrincipalName::new(name).ok()?,
        })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// Length of a [`RequestId`].
pub const REQUEST_ID_LEN: usize = 16;

/// The id of the request (an API call, a job) an action belongs to: 16
/// octets the caller chooses (a UUID, say), written as hex in text logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(pub [u8; REQUEST_ID_LEN]);

named_enum! {
    /// Why an action was taken. Codes and names are stable.
    @non_exhaustive pub enum Reason {
        /// Commissioning a device (and its first rotation, R-09).
        Commissioning = (1, "commissioning"),
        /// A rotation on the operator's schedule.
        ScheduledRotation = (2, "scheduled-rotation"),
        /// A re-key campaign after a compromise.
        CompromiseCampaign = (3, "compromise-campaign"),
        /// Replacing keys whose records were found corrupt.
        CorruptionRecovery = (4, "corruption-recovery"),
        /// Support: a privileged person looks at packaged records
        /// ((d)(iv)).
        SupportAccess = (5, "support-access"),
        /// Finishing a rotation an earlier run left pending.
        Resumption = (6, "resumption"),
        /// Routine operation: traffic to and from devices.
        Operation = (7, "operation"),
    }
    const COUNT = 7;
}

impl Reason {
    /// Whether this is a support reason, the only one for which a person
    /// may access packaged records ((d)(iv)).
    #[must_use]
    pub const fn is_support(self) -> bool {
        matches!(self, Self::SupportAccess)
    }
}

/// Who, where and why, for the events of one call or job: a principal, a
/// node, a request id, a campaign id and a reason, each optional.
///
/// A [`Recorder`](super::Recorder) holding a context fills the fields an
/// event leaves empty from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AuditContext {
    /// Who acted.
    pub principal: Option<Principal>,
    /// The node that acted.
    pub node: Option<NodeName>,
    /// The request the action belongs to.
    pub request: Option<RequestId>,
    /// The campaign the action belongs to.
    pub campaign: Option<CampaignId>,
    /// Why.
    pub reason: Option<Reason>,
}

impl AuditContext {
    /// No field set.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            principal: None,
            node: None,
            request: None,
            campaign: None,
            reason: None,
        }
    }

    /// Whether no field is set (an event with such a context encodes as
    /// version 1).
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.principal.is_none()
            && self.node.is_none()
            && self.request.is_none()
            && self.campaign.is_none()
            && self.reason.is_none()
    }

    /// With the principal.
    #[must_use]
    pub const fn with_principal(mut self, principal: Principal) -> Self {
        self.principal = Some(principal);
        self
    }

    /// With the node.
    #[must_use]
    pub const fn with_node(mut self, node: NodeName) -> Self {
        self.node = Some(node);
        self
    }

    /// With the request id.
    #[must_use]
    pub const fn with_request(mut self, request: RequestId) -> Self {
        self.request = Some(request);
        self
    }

    /// With the campaign id.
    #[must_use]
    pub const fn with_campaign(mut self, campaign: CampaignId) -> Self {
        self.campaign = Some(campaign);
        self
    }

    /// With the reason.
    #[must_use]
    pub const fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Each field of `self`, or `other`'s where `self` has none.
    #[must_use]
    pub const fn or(self, other: &Self) -> Self {
        Self {
            principal: if self.principal.is_some() {
                self.principal
            } else {
                other.principal
            },
            node: if self.node.is_some() {
                self.node
            } else {
                other.node
            },
            request: if self.request.is_some() {
                self.request
            } else {
                other.request
            },
            campaign: if self.campaign.is_some() {
                self.campaign
            } else {
                other.campaign
            },
            reason: if self.reason.is_some() {
                self.reason
            } else {
                other.reason
            },
        }
    }
}
