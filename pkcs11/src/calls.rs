//! Every cryptoki call the crate makes, counted in `C_` functions: the
//! figure that matters on a network HSM, where each costs a round trip.
//! The counts follow what `cryptoki` 0.12 does for each call (an encrypt
//! is `C_EncryptInit` and two `C_Encrypt`, the first asking the length).

use std::sync::atomic::{AtomicU64, Ordering};

use cryptoki::error::Result;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;

static CALLS: AtomicU64 = AtomicU64::new(0);

/// `C_` functions called by this crate in this process so far (all
/// tokens, all threads). Subtract two readings to count one operation.
#[must_use]
pub fn count() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

/// Counts `n` calls made by the caller itself (outside this module).
pub fn add(n: u64) {
    CALLS.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn encrypt(
    s: &Session,
    m: &Mechanism<'_>,
    key: ObjectHandle,
    data: &[u8],
) -> Result<Vec<u8>> {
    add(3);
    s.encrypt(m, key, data)
}

pub(crate) fn decrypt(
    s: &Session,
    m: &Mechanism<'_>,
    key: ObjectHandle,
    data: &[u8],
) -> Result<Vec<u8>> {
    add(3);
    s.decrypt(m, key, data)
}

pub(crate) fn wrap_key(
    s: &Session,
    m: &Mechanism<'_>,
    wrapping: ObjectHandle,
    key: ObjectHandle,
) -> Result<Vec<u8>> {
    add(2);
    s.wrap_key(m, wrapping, key)
}

pub(crate) fn unwrap_key(
    s: &Session,
    m: &Mechanism<'_>,
    unwrapping: ObjectHandle,
    wrapped: &[u8],
    template: &[Attribute],
) -> Result<ObjectHandle> {
    add(1);
    s.unwrap_key(m, unwrapping, wrapped, template)
}

pub(crate) fn generate_key(
    s: &Session,
    m: &Mechanism<'_>,
    template: &[Attribute],
) -> Result<ObjectHandle> {
    add(1);
    s.generate_key(m, template)
}

pub(crate) fn create_object(s: &Session, template: &[Attribute]) -> Result<ObjectHandle> {
    add(1);
    s.create_object(template)
}

pub(crate) fn destroy_object(s: &Session, key: ObjectHandle) -> Result<()> {
    add(1);
    s.destroy_object(key)
}

pub(crate) fn find_objects(s: &Session, template: &[Attribute]) -> Result<Vec<ObjectHandle>> {
    add(3);
    s.find_objects(template)
}

pub(crate) fn get_attributes(
    s: &Session,
    key: ObjectHandle,
    types: &[AttributeType],
) -> Result<Vec<Attribute>> {
    add(1);
    s.get_attributes(key, types)
}
