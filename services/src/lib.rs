//! The std services built on `dlms-sec`: what a DCO or an S1SP runs.
//!
//! | module | what it holds |
//! |---|---|
//! | [`counters`] | [`PerKeyCounters`](counters::PerKeyCounters): the DCO's send counter per key, over a persistence |
//! | [`dco`] | [`Dco`](dco::Dco): protects commands and prepares key rotations with both KEKs (R-05, R-06) |
//! | [`s1sp`] | [`S1sp`](s1sp::S1sp): the service provider's key lifecycle over a key store and a DCO |
//! | [`jsonl`] | the tamper-evident JSON-lines audit log and its verifier (R-20) |
//! | [`syslog`] | audit records as RFC 5424 syslog messages to a file, UDP or TCP, and their parser (R-20) |
//! | [`registry`] | [`Registry`](registry::Registry): the device registry, receive floors, rotation leases and campaigns; in memory or in a `dlms_sec_store::Store` |
//! | [`memory_store`] | [`MemoryKeyStore`]: an unbounded key store in RAM |
//!
//! The core crate (`dlms-sec`) stays `no_std`; everything that needs an
//! allocator or `std::io` lives here.
#![forbid(unsafe_code)]
#![allow(
    clippy::std_instead_of_alloc,
    reason = "a std crate: `std` is where its collections come from"
)]

pub mod counters;
pub mod dco;
pub mod jsonl;
pub mod memory_store;
pub mod registry;
pub mod s1sp;
pub mod syslog;

pub use crate::memory_store::MemoryKeyStore;
