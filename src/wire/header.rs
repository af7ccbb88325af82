//! The security header SC ‖ IC and the ciphered content SC ‖ IC ‖ payload ‖ tag.

/// Length of the security header: SC (1) ‖ IC (4).
pub const HEADER_LEN: usize = 5;

/// Length of the suite-0 authentication tag (GCM tag truncated to 96 bits).
pub const TAG_LEN: usize = 12;
