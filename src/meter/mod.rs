//! The meter side: the security layer a meter's firmware embeds
//! ([`endpoint`]), its durable receive floors ([`floors`]) and the methods
//! it serves ([`setup`], [`key_transfer`]). The simulated SMETS1 meter of
//! the tests and the demonstrations, a canned application on the endpoint,
//! is the unpublished `dlms-sec-meter-sim` crate (`meter-sim/`).
//!
//! Everything here is `no_std` and allocation-free.
//!
//! What the endpoint guarantees:
//! * Every request is unprotected under the client's keys with its policy,
//!   and its counter must pass the client's floor (before anything is
//!   decrypted), which advances only with the proof of a verified frame,
//!   and persists ahead of what it accepts so a power loss never lets a
//!   frame be accepted twice.
//! * A key_transfer is staged (every entry unwrapped under the current MK,
//!   or nothing), answered under the **old** keys, and only then installed,
//!   so the head-end can read the answer; from the next request on the new
//!   keys are the only ones accepted (R-14: active at once). A new
//!   encryption or authentication key starts a fresh floor; the meter's
//!   own send counter keeps counting (docs/design.md, "When new keys apply"
//!   and "After a key change").
//! * A key_transfer carrying a new MK is refused unless the device's
//!   [`DeviceCapabilities`] say it supports MK rotation ("where supported
//!   by that Device", R-12), and nothing is installed; so is any
//!   key_transfer that did not come under authenticated encryption.
//! * A failed transfer installs nothing and is answered with a failure
//!   result, still protected.

pub mod endpoint;
pub mod floors;
pub mod key_transfer;
pub mod setup;

pub use endpoint::{Endpoint, OneCounter, Outcome, Refusal, Request, SendCounters, Served};
pub use floors::{FloorPersistence, FloorRecord, InMemoryFloors, VolatileFloors};

/// What a device supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DeviceCapabilities {
    /// key_transfer may replace the Master Key (key_id 3).
    pub master_key_rotation: bool,
}
