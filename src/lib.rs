//! DLMS/COSEM security suite 0 (AES-GCM-128) and SMETS1 symmetric key
//! management, `no_std` and allocation-free.
//!
//! The crate is layered; each layer uses only the ones below it:
//!
//! | layer | what it holds |
//! |---|---|
//! | [`types`] | the vocabulary: clients, key roles and kinds, protections, policies |
//! | [`error`] | the error types |
//! | [`wire`] | every DLMS wire format, as checked views and value types |
//! | `gcm` (private) | AES-GCM composed from RustCrypto's `aes` and `polyval` |
//! | [`key`] | key roles, packaged records ([`key::package`]), RFC 3394 wrap ([`key::wrap`]) |
//! | [`counter`] | invocation counters: the send side and the replay guard |
//! | [`suite0`] | [`Suite0`]: protect and unprotect, the cipher seam an HSM plugs into, HLS-5 |
//! | [`provider`] | the crypto-provider plug points and the software providers |
//! | [`keystore`] | the key-store plug point, a fixed-capacity store, the conformance suite |
//! | [`audit`] | audit events, the sink plug point, the tamper-evident chain |
//! | [`meter`] | the meter side: key_transfer staging and the meter endpoint |
//!
//! The DCO and S1SP services, the JSON-lines audit log and the std memory
//! store live in the `dlms-sec-services` crate; the PKCS#11 providers in
//! `dlms-sec-pkcs11`.
//!
//! # Example
//!
//! ```
//! use dlms_sec::counter::SendCounter;
//! use dlms_sec::key::{AuthenticationKey, GlobalUnicastEncryptionKey};
//! use dlms_sec::suite0::{PeerTitle, Protect, Unprotect};
//! use dlms_sec::wire::CipheredForm;
//! use dlms_sec::{InvocationCounter, KeyKind, Protection, SecurityPolicy, Suite0, SystemTitle};
//! # fn main() -> dlms_sec::Result<()> {
//! let guek = GlobalUnicastEncryptionKey::from_bytes([0x00; 16]);
//! let ak = AuthenticationKey::from_bytes([0xD0; 16]);
//! let client = Suite0::new(&guek, &ak);
//! let meter = Suite0::new(&guek, &ak);
//! let client_title = SystemTitle::new(*b"MMM\x00\x00\x00\x00\x01");
//!
//! let mut counter = SendCounter::volatile(InvocationCounter::new(1));
//! let request = Protect::unicast(Protection::AuthenticatedEncrypted, client_title);
//! let apdu = [0xC0, 0x01, 0x00, 0x00, 0x08, 0, 0, 1, 0, 0, 0xFF, 0x02, 0x00];
//! let mut frame = [0u8; 64];
//! let n = client.protect(&request, &mut counter, &apdu, &mut frame)?;
//!
//! let mut guard = meter.replay_guard(client_title, KeyKind::GlobalUnicast)?;
//! let params = Unprotect {
//!     peer_system_title: PeerTitle::Expected(client_title),
//!     policy: SecurityPolicy::AuthenticatedEncrypted,
//! };
//! let received = meter.unprotect(&mut frame[..n], &params)?;
//! received.admit_into(&mut guard)?;
//! assert_eq!(received.apdu(), &apdu);
//! # Ok(()) }
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod types;

pub mod error;

pub mod wire;

mod gcm;

pub mod key;

pub mod counter;

pub mod suite0;

pub mod provider;

pub mod keystore;

pub mod audit;

pub mod meter;

pub use crate::counter::{ReplayGuard, SendCounter};
pub use crate::error::{AuthError, Error, Result};
pub use crate::suite0::{PeerTitle, Protect, Suite0, Unprotect};
pub use crate::types::{Client, KeyKind, KeyRole, Protection, SecurityPolicy};
pub use crate::wire::{InvocationCounter, SecurityControl, SystemTitle};

/// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
