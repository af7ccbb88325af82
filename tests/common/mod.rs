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

/// A deterministic test RNG (AES-128 in counter mode over a seed). Marked
/// cryptographic only so it can drive the generation APIs in tests.
pub struct TestRng {
    aes: aes::Aes128Enc,
    counter: u128,
}

impl TestRng {
    pub fn new(seed: u8) -> Self {
        use aes::cipher::KeyInit;
        Self {
            aes: aes::Aes128Enc::new(&[seed; 16].into()),
            counter: 0,
        }
    }
}

impl rand_core::TryRng for TestRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        use aes::cipher::BlockCipherEncrypt;
        for chunk in dst.chunks_mut(16) {
            let mut block = aes::Block::from(self.counter.to_be_bytes());
            self.counter += 1;
            self.aes.encrypt_block(&mut block);
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for TestRng {}

/// An RNG that always fails.
pub struct BrokenRng;

#[derive(Debug)]
pub struct RngDown;
impl core::fmt::Display for RngDown {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("rng down")
    }
}
impl core::error::Error for RngDown {}

impl rand_core::TryRng for BrokenRng {
    type Error = RngDown;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Err(RngDown)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Err(RngDown)
    }
    fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), Self::Error> {
        Err(RngDown)
    }
}
impl rand_core::TryCryptoRng for BrokenRng {}
