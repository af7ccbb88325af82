//! Shared test helpers: the vector file and hex.
#![allow(dead_code, reason = "each test binary uses a subset")]
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

use serde_json::Value;

/// Every vector of `kind` in vectors/suite0-vectors.json.
pub fn vectors(kind: &str) -> Vec<Value> {
    let all: Vec<Value> =
        serde_json::from_str(include_str!("../../vectors/suite0-vectors.json")).unwrap();
    all.into_iter().filter(|v| v["kind"] == kind).collect()
}

pub fn hex(v: &Value, field: &str) -> Vec<u8> {
    hex::decode(
        v[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} missing")),
    )
    .unwrap()
}

pub fn arr<const N: usize>(v: &Value, field: &str) -> [u8; N] {
    hex(v, field).try_into().unwrap()
}

pub fn u32_of(v: &Value, field: &str) -> u32 {
    u32::from_be_bytes(arr(v, field))
}
