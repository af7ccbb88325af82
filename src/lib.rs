#![no_std]
#![forbid(unsafe_code)]
#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod audit;
pub mod cipher;
pub mod client;
pub mod counter;
pub mod dco;
pub mod error;
mod gcm;
pub mod hls5;
pub mod key;
pub mod key_transfer;
pub mod keystore;
pub mod keywrap;
pub mod meter;
pub mod package;
pub mod policy;
pub mod provider;
#[cfg(feature = "std")]
pub mod s1sp;
pub mod suite0;
pub mod wire;

pub use crate::error::{AuthError, Error, Result};
pub use crate::policy::{Protection, SecurityPolicy};
pub use crate::suite0::Suite0;
pub use crate::wire::{InvocationCounter, KeyKind, SecurityControl, SystemTitle};
