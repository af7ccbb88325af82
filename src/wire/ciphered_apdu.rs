//! Any ciphered APDU: where its parts sit in a buffer, and how to lay one out.
//!
//! This is the glue [`suite0`](crate::suite0) uses: [`FrameLayout::parse`]
//! finds the security control byte, counter, payload, tag and (for
//! general-ciphering) the header fields that enter the AAD, as ranges into
//! the received buffer so the payload can be verified and decrypted in
//! place. [`FrameLayout::emit_header`] writes everything before the payload
//! of a frame to be protected.

use core::ops::Range;

use crate::error::{Error, Result};
use crate::wire::{
    ApduTag, CipheredService, InvocationCounter, KeyKind, SecurityControl, SystemTitle,
};

/// Which ciphered form a sender uses (chosen by the caller of `protect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CipheredForm<'a> {
    /// The glo- (global keys) or ded- (dedicated key) service-specific tag of
    /// the plain APDU's own tag: `tag ‖ len ‖ SC ‖ IC ‖ payload ‖ [T]`.
    ServiceSpecific,
    /// general-glo-ciphering `0xDB` (global keys) or general-ded-ciphering
    /// `0xDC` (dedicated key): `tag ‖ len ‖ title ‖ len ‖ SC ‖ IC ‖ payload ‖ [T]`.
    /// `with_system_title: false` sends a zero-length title (profiles that
    /// omit it); the receiver then supplies the sender's title.
    General {
        /// Whether the sender's 8-octet title is carried.
        with_system_title: bool,
    },
    /// general-ciphering `0xDD` with identified-key key-info (global keys only).
    GeneralCiphering(GeneralCipheringFields<'a>),
}

/// The header fields of a general-ciphering APDU that the sender chooses.
/// The originator system title is always the sender's own (the IV's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GeneralCipheringFields<'a> {
    /// transaction-id (any length; Gurux sends 8 octets).
    pub transaction_id: &'a [u8],
    /// recipient-system-title: 8 octets, or empty.
    pub recipient_system_title: Option<SystemTitle>,
    /// date-time: empty, or a 12-octet COSEM date-time.
    pub date_time: &'a [u8],
    /// other-information (usually empty).
    pub other_information: &'a [u8],
}

/// Which family a received frame belongs to, with what its outer bytes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A service-specific glo- or ded- APDU.
    Service(CipheredService),
    /// general-glo-ciphering `0xDB`.
    GeneralGlo,
    /// general-ded-ciphering `0xDC`.
    GeneralDed,
    /// general-ciphering `0xDD` with identified-key key-info naming `key`
    /// ([`KeyKind::GlobalUnicast`] for key-id 0, [`KeyKind::GlobalBroadcast`]
    /// for key-id 1).
    GeneralCiphering {
        /// The identified key.
        key: KeyKind,
    },
}

/// Where the parts of one ciphered APDU sit in its buffer. Everything here
/// is public information.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    /// The family and outer tag.
    pub kind: FrameKind,
    /// The sender's title when the frame carries one (general forms with an
    /// 8-octet title; the originator title of general-ciphering).
    pub system_title: Option<SystemTitle>,
    /// The security control byte, as received.
    pub security_control: SecurityControl,
    /// The invocation counter, as received.
    pub invocation_counter: InvocationCounter,
    /// For general-ciphering, the bytes transaction-id ‖ originator ‖
    /// recipient ‖ date-time ‖ other-information, each as A-XDR length ‖
    /// value, exactly as received (they enter the AAD). Empty otherwise.
    pub aad_fields: Range<usize>,
    /// The payload: ciphertext, or the clear APDU under authentication only.
    pub payload: Range<usize>,
    /// The 12-octet tag; empty under encryption only.
    pub auth_tag: Range<usize>,
}

impl FrameLayout {
    /// Finds the parts of the ciphered APDU that fills `frame` exactly.
    ///
    /// Checks structure only: every length against the buffer, minimal
    /// A-XDR lengths, no trailing bytes, a known ciphered tag, a title of 0
    /// or 8 octets, and room for a 12-octet tag when the A bit is set. The
    /// suite-0 rules on the security control byte are
    /// [`SecurityControl::check_suite0`]'s.
    ///
    /// # Errors
    /// [`Error::Wire`] for malformed bytes; [`Error::Unsupported`] for
    /// general-ciphering with wrapped-key, agreed-key or absent key-info.
    pub fn parse(frame: &[u8]) -> Result<Self> {
        let _ = frame;
        Err(Error::Misuse("FrameLayout::parse is being written"))
    }

    /// The length of the frame `emit_header` lays out for a payload of
    /// `payload_len` octets (`with_tag`: whether a 12-octet tag follows).
    ///
    /// # Errors
    /// [`Error::Unsupported`] when `plain_tag` has no ciphered form of the
    /// kind asked for; [`Error::Wire`] with [`WireError::InvalidLength`]
    /// when the frame length overflows `usize` or the A-XDR range.
    ///
    /// [`WireError::InvalidLength`]: crate::error::WireError::InvalidLength
    pub fn frame_len(
        form: &CipheredForm<'_>,
        key: KeyKind,
        plain_tag: u8,
        payload_len: usize,
        with_tag: bool,
    ) -> Result<usize> {
        let _ = (form, key, plain_tag, payload_len, with_tag);
        Err(Error::Misuse("FrameLayout::frame_len is being written"))
    }

    /// Writes everything before the payload: outer tag, lengths, titles,
    /// general-ciphering fields and key-info, SC and IC. Returns the header
    /// length (the payload goes at `out[header_len..]`, the tag right after
    /// it) and the range of the AAD fields (general-ciphering only).
    ///
    /// # Errors
    /// As [`Self::frame_len`], plus [`Error::BufferTooSmall`] when `out` is
    /// shorter than the whole frame.
    #[allow(clippy::too_many_arguments, reason = "one argument per frame field")]
    pub fn emit_header(
        form: &CipheredForm<'_>,
        key: KeyKind,
        plain_tag: u8,
        own_title: &SystemTitle,
        sc: SecurityControl,
        ic: InvocationCounter,
        payload_len: usize,
        out: &mut [u8],
    ) -> Result<(usize, Range<usize>)> {
        let _ = (form, key, plain_tag, own_title, sc, ic, payload_len, out);
        let _ = ApduTag::from(0u8);
        Err(Error::Misuse("FrameLayout::emit_header is being written"))
    }
}
