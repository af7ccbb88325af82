//! A PKCS#11 (HSM) crypto provider for `dlms-sec` (R-03, R-04, R-07,
//!
//!
//! The DCO Key and the Shared Key are AES-128 token objects, sensitive and
//! non-extractable, found by label ([`Pkcs11Config`]). [`HsmDco`] and
//! [`HsmS1sp`] implement the core's
//! [`CryptoProvider`](dlms_sec::provider::CryptoProvider) and
//! [`DcoProvider`](dlms_sec::provider::DcoProvider), so the core's
//! `dlms_sec_services::dco::Dco` and `dlms_sec_services::s1sp::S1sp` run on
//! them unchanged; an S1SP's provider has no DCO Key at all.
//!
//! KEKs arrive in signed packages ([`kek_package`]):
//! [`Token::import_kek_package`] verifies one and unwraps its KEK in the
//! token.
//!
//! # What stays inside the module, per operation
//!
//! | operation | inside the token | on the host |
//! |---|---|---|
//! | KEK check value | AES-ECB of the zero block under the KEK (and compared with `CKA_CHECK_VALUE`) | — |
//! | generate + package | `C_GenerateKey`; `C_WrapKey` under the KEK (ECB, or CBC with a zero IV, equal for one block); the record's check value by AES-ECB under the new key | the record (ciphertext only) |
//! | key_transfer wrap | the MK as a session object; the new key generated and wrapped under it with `CKM_AES_KEY_WRAP` | the wrapped key only |
//! | unpack a record (GUEK, GBEK, DK, MK) | [`UnpackPath::UnwrapEcb`] / [`UnpackPath::UnwrapCbcZeroIv`] where offered | [`UnpackPath::HostDecrypt`] otherwise: decrypted into host memory and made a session object at once, the copy wiped (SoftHSM2 2.6) |
//! | protect / unprotect | AES-GCM (12-octet tag) or AES-CTR under the encryption key object | framing, and the **AK**, see below |
//! | decrypt an encryption-only frame (S1SP) | AES-CTR under the GUEK/DK object | — |
//!
//! [`Token::capabilities`] says which path a token takes.
//!
//! # The AK limitation
//!
//! Suite 0 authenticates with the AK itself as part of GCM's AAD
//! (SC ‖ AK ‖ …). PKCS#11's `CK_GCM_PARAMS` takes the AAD as bytes; no
//! standard mechanism feeds a key object's value into it. So a DCO decrypts
//! the packaged AK into host memory for the length of one protect or
//! unprotect call: [`dlms_sec::key::AuthenticationKey`] (zeroized on drop),
//! plus the joined AAD buffer handed to the module (wiped after the call).
//! Those two are the only places an AK exists in the host. Nothing else
//! does, and an S1SP never has an AK at all.
//!
//! # Sessions and threads
//!
//! A [`Token`] keeps a pool of logged-in sessions; each call takes one and
//! gives it back, so threads never share a session. A session whose call
//! failed with a lost session, an absent token or a device error is
//! closed, not reused; the next call opens a new one and logs in again.
//! Every PKCS#11 error becomes a typed
//! [`KeyError::Provider`](dlms_sec::error::KeyError::Provider) with its
//! [`ModuleFailure`](dlms_sec::error::ModuleFailure) kind, or, for a tag
//! that does not verify, the core's one [`AuthError`](dlms_sec::AuthError).
//! A GCM encryption under an IV other than the caller's (a FIPS-mode
//! module refusing, replacing or appending it) is
//! [`ModuleFailure::IvNotHonoured`](dlms_sec::error::ModuleFailure::IvNotHonoured)
//! and produces no frame.

#![forbid(unsafe_code)]

pub mod cache;
pub mod calls;
mod cipher;
pub mod config;
pub mod error;
pub mod kek_package;
mod provider;
pub mod token;

pub use crate::cache::CacheConfig;
pub use crate::config::{Pin, Pkcs11Config};
pub use crate::error::Pkcs11Error;
pub use crate::kek_package::{
    FilePackageIds, InMemoryPackageIds, KekPackage, KekPackageError, PackageIdGuard,
    PackageSigningKey, TrustAnchors,
};
pub use crate::provider::{HsmDco, HsmS1sp};
pub use crate::token::{
    Capabilities, KekRole, KekUsages, KeystreamPath, PackagePath, Token, UnpackPath, init_token,
};
