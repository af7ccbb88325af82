//! AES-GCM-128 with a 96-bit IV and a 96-bit tag, composed from the `aes`
//! and `polyval` crates.
//!
//! Why not call `aes-gcm`: its API takes the AAD as one contiguous slice,
//! and the suite-0 AAD under authentication only is SC ‖ AK ‖ APDU, pieces
//! that never sit side by side in memory. Here the AAD is streamed through
//! GHASH piece by piece, with no copy.
//!
//! Two paths, chosen by length:
//!
//! * Short: a message whose whole GHASH input (AAD, payload, length block)
//!   fits in [`STAGE`] blocks. E(K, J0), the tag mask, and the keystream
//!   come from one `encrypt_blocks` call; the GHASH input is laid out in
//!   one buffer and hashed in one `update` call.
//! * Streaming: everything longer. GHASH input is staged in whole blocks
//!   and handed to `ghash` in as few `update` calls as possible (polyval
//!   aggregates 4 blocks only within one call). Counter mode is the `ctr`
//!   crate's on 64-bit hosts (the one aes-gcm runs) and a loop over
//!   `encrypt_blocks` in batches on 32-bit targets (a meter: less flash).
//!
//! GHASH runs on POLYVAL (RFC 8452, Appendix A): GHASH(H, X₁ … Xₙ) is
//! the byte-reversal of POLYVAL(mulX(rev(H)), rev(X₁) … rev(Xₙ)), which is
//! what the `ghash` crate does around `polyval` too. Here each block is
//! reversed as it is assembled (in registers), and on a meter each block
//! goes to POLYVAL's one-block function as soon as it is complete, with
//! no staging buffer, no per-block copy and no closure around the backend.
//!
//! The GHASH key powers are computed once per key; each message clones
//! the prepared state.
//!
//! Verify, then decrypt: [`Gcm::open`] hashes the ciphertext, computes the
//! tag and compares it in constant time before it writes a single byte of
//! the buffer. On failure the buffer is exactly as received.
//!
//! Checked against the NIST GCM vectors with 96-bit tags (with the AAD
//! split at every position) and against `aes-gcm` 0.11 at both paths'
//! boundaries and on random inputs (the tests below; tests/suite0.rs and
//! tests/suite0_props.rs through the suite-0 API).

use core::borrow::Borrow;
use core::fmt;

use aes::Aes128Enc;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use polyval::Polyval;
use polyval::hazmat::FieldElement;
use polyval::universal_hash::{UhfBackend, UniversalHash};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::error::AuthError;
use crate::wire::SecurityControl;

type Block = aes::Block;

/// Length of the suite-0 tag.
pub const TAG_LEN: usize = 12;

/// Whether a GHASH stream takes a piece's partial blocks as 16-octet
/// windows (one shift each) rather than octet by octet: on 64-bit hosts
/// only, where the shift is two instructions; on a 32-bit meter the
/// `u128` shifts are library code and cost flash. Tests on 64-bit hosts
/// take the meter's way under `tests::with_meter_ctr`.
#[inline(always)]
fn windowed() -> bool {
    #[cfg(test)]
    if tests::METER_CTR.with(core::cell::Cell::get) {
        return false;
    }
    cfg!(target_pointer_width = "64")
}

/// Whether short messages take the one-pass paths (`seal_short`,
/// `open_short`, `gmac_short`): on hosts, where they are faster; not on
/// the meter (32-bit), where the streaming path alone costs less flash.
/// The streaming path is tested on short messages too.
const SHORT_PATHS: bool = cfg!(target_pointer_width = "64");

/// Blocks of the short path's buffer (a message whose GHASH input fits in
/// 128 octets: with the 17-octet SC ‖ AK as the whole AAD, a payload of up
/// to 80 octets) and blocks a GHASH stream stages before one `update` call.
const STAGE: usize = 8;

/// Blocks a GHASH stream stages before one `update` call: [`STAGE`] where
/// blocks are staged (hosts, and the tests, which run both ways), none on
/// a meter, where [`direct_ghash`] hands each block over as it is made.
const STREAM_STAGE: usize = if cfg!(any(test, target_pointer_width = "64")) {
    STAGE
} else {
    0
};

/// Blocks of the short path's AES call: E(K, J0) and the keystream. With
/// an empty AAD a short message's payload fills every [`STAGE`] block but
/// the length block, `STAGE - 1`, so with E(K, J0) that is `STAGE`.
const SHORT_KEYSTREAM: usize = STAGE;
// Whole groups of [`AES_GROUP`] (1 or 2) and of the meter's 2 in tests.
const _: () = assert!(SHORT_KEYSTREAM.is_multiple_of(2));

/// The short path's GHASH input is laid out in whole groups of this many
/// blocks, led by zero blocks (GHASH of a zero block from the zero state
/// is zero): on 64-bit hosts 4, which polyval's CLMUL and PMULL backends
/// hash aggregated, so no block ends up in a single multiply; on a 32-bit
/// meter's software GHASH, which multiplies block by block either way, 1,
/// so no multiply goes to a leading zero block.
const GHASH_GROUP: usize = if cfg!(target_pointer_width = "64") {
    4
} else {
    1
};

/// [`GHASH_GROUP`], except in tests that run the meter's paths on the
/// host (`tests::with_meter_ctr`), which take the meter's group.
#[inline(always)]
fn ghash_group() -> usize {
    #[cfg(test)]
    if tests::METER_CTR.with(core::cell::Cell::get) {
        return 1;
    }
    GHASH_GROUP
}

/// Blocks per parallel AES call of the backend the meter links (the
/// compact software backend on 32-bit words encrypts 2 at a time; 1 on
/// 64-bit hosts, whose backends take any count). The short path's
/// keystream batch is rounded up to whole groups of this many, so
/// [`ParBlocksOnly`] never pads a last partial group through a scratch
/// copy; the extra keystream is wiped with the rest.
const AES_GROUP: usize = if cfg!(target_pointer_width = "64") {
    1
} else {
    2
};

const ZERO_BLOCK: Block = aes::cipher::array::Array([0; 16]);

/// The additional authenticated data of one GCM call: optionally the
/// suite-0 prefix SC ‖ AK, then pieces, concatenated. Held in pieces, so
/// nothing is copied to hash it (the AK in particular: see
/// [`crate::suite0::cipher`] on why a module's cipher sees it).
#[derive(Clone, Copy)]
pub struct Aad<'a> {
    pub(crate) sc_ak: Option<(u8, &'a [u8; 16])>,
    pub(crate) rest: &'a [&'a [u8]],
}

impl fmt::Debug for Aad<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the AK.
        f.debug_struct("Aad")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Aad<'_> {
    /// The security control octet, when the AAD starts SC ‖ AK.
    #[must_use]
    pub fn security_control(&self) -> Option<u8> {
        self.sc_ak.map(|(sc, _)| sc)
    }

    /// The AAD's total length in octets.
    #[must_use]
    pub fn len(&self) -> usize {
        let prefix = if self.sc_ak.is_some() { 17 } else { 0 };
        self.rest
            .iter()
            .fold(prefix, |n: usize, p| n.saturating_add(p.len()))
    }

    /// Whether the AAD is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with each piece in order (the SC octet and the AK first
    /// when present). What an external cipher uses to assemble the AAD its
    /// module takes in one buffer; wipe that buffer after use.
    pub fn for_each_piece(&self, mut f: impl FnMut(&[u8])) {
        if let Some((sc, ak)) = self.sc_ak {
            f(&[sc]);
            f(ak);
        }
        for p in self.rest {
            f(p);
        }
    }
}

impl<'a> Aad<'a> {
    /// Plain pieces, no suite-0 prefix (the tests' cross-checks).
    #[cfg(test)]
    pub(crate) const fn pieces(rest: &'a [&'a [u8]]) -> Self {
        Self { sc_ak: None, rest }
    }

    /// SC ‖ AK ‖ the pieces.
    pub(crate) const fn suite0(sc: u8, ak: &'a [u8; 16], rest: &'a [&'a [u8]]) -> Self {
        Self {
            sc_ak: Some((sc, ak)),
            rest,
        }
    }
}

/// AES-128 encrypt schedule and the prepared GHASH state for one key.
///
/// The schedule is held as `S`: owned (`Gcm`, the default: a [`Suite0`]'s
/// keys) or borrowed (`Gcm<&Aes128Enc>`: the DCO command path, which
/// expands a key it has just unpacked and ciphers one message under it,
/// so the 176-octet schedule is used where it was expanded, never copied).
///
/// Both halves wipe themselves on drop (`aes` and `ghash` are built with
/// their `zeroize` features); a borrowed schedule is wiped by its owner.
///
/// [`Suite0`]: crate::suite0::Suite0
#[derive(Clone)]
pub(crate) struct Gcm<S: Borrow<Aes128Enc> = Aes128Enc> {
    aes: S,
    ghash: Polyval,
    fingerprint: [u8; FINGERPRINT_LEN],
    /// GHASH's first block of a suite-0 AAD, folded in advance for the
    /// AK this key is used with (see [`ScAkFold`]); `None` for a key used
    /// alone or with any AK.
    sc_ak: Option<ScAkFold>,
}

/// POLYVAL's state after the first GHASH block of a suite-0 AAD, SC ‖
/// AK's first 15 octets, which depends on the keys alone: hashed once when
/// the keys are installed, so each message hashes one block fewer. From
/// the zero state, POLYVAL of the one block `y ⊕ X₂` is POLYVAL of `X₁,
/// X₂` when `y` is the state after `X₁`: a stream skips the first block
/// and XORs `y` into the second.
///
/// Held for the two SC octets a key's authenticated frames carry: `sc`
/// (authentication only) and `sc | ENCRYPTION`; any other SC is hashed
/// from its octets. Key-derived: wiped on drop.
#[derive(Clone)]
struct ScAkFold {
    /// The SC octet of authentication-only frames under this key.
    sc: u8,
    /// The state after SC ‖ AK[..15], for `sc` and for `sc | 0x20`, as
    /// the word whose little-endian octets are POLYVAL's.
    states: [u128; 2],
}

impl Drop for ScAkFold {
    // One copy for every key of a context.
    #[inline(never)]
    fn drop(&mut self) {
        self.states.zeroize();
    }
}

/// The SC bit that says the payload is encrypted.
const SC_ENCRYPTION: u8 = SecurityControl::ENCRYPTION;

impl ScAkFold {
    /// The state for a frame's SC octet, when it is one of the two held.
    #[inline(always)]
    fn state(&self, sc: u8) -> Option<u128> {
        let [plain, encrypted] = self.states;
        if sc == self.sc {
            Some(plain)
        } else if sc == self.sc | SC_ENCRYPTION {
            Some(encrypted)
        } else {
            None
        }
    }
}

/// The counter block whose encryption names a key: IV 0⁶⁴ ‖ `FFFFFFFF`,
/// counter 2. No frame uses it (the invocation counter `FFFFFFFF` is never
/// issued nor accepted), so the block protects nothing.
pub(crate) const FINGERPRINT_BLOCK: [u8; 16] =
    [0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 2];

/// Octets of the key fingerprint: the first of E(K, [`FINGERPRINT_BLOCK`]).
pub(crate) const FINGERPRINT_LEN: usize = 8;

/// The fingerprint from the encrypted [`FINGERPRINT_BLOCK`].
fn fingerprint_of(block: &Block) -> [u8; FINGERPRINT_LEN] {
    let mut out = [0u8; FINGERPRINT_LEN];
    for (o, b) in out.iter_mut().zip(block.iter()) {
        *o = *b;
    }
    out
}

impl<S: Borrow<Aes128Enc>> fmt::Debug for Gcm<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Gcm { .. }")
    }
}

impl Gcm {
    /// Expands `key` and computes the GHASH key H = E(K, 0¹²⁸).
    pub(crate) fn new(key: &[u8; 16]) -> Self {
        Self::from_schedule(Aes128Enc::new(key.into()))
    }

    /// Builds the context around an encrypt schedule already expanded:
    /// H and the key's fingerprint in one AES call.
    pub(crate) fn from_schedule(aes: Aes128Enc) -> Self {
        let mut blocks = [Block::default(), Block::from(FINGERPRINT_BLOCK)];
        encrypt_blocks(&aes, &mut blocks);
        let [h, fingerprint] = &blocks;
        let ghash = ghash_key(h);
        let fingerprint = fingerprint_of(fingerprint);
        for b in &mut blocks {
            b.as_mut_slice().zeroize();
        }
        Self {
            aes,
            ghash,
            fingerprint,
            sc_ak: None,
        }
    }

    /// Folds the first GHASH block of the suite-0 AAD for `ak` into the
    /// context, replacing any earlier fold (see [`ScAkFold`]): for authentication-only frames carrying
    /// `sc` and for authenticated and encrypted ones (`sc | 0x20`). Every
    /// later call whose AAD starts SC ‖ AK with one of those SC octets
    /// must carry this `ak`: the caller keeps the context and the AK
    /// together (a [`Suite0`](crate::suite0::Suite0) holds one AK for all
    /// its keys, set when it is built).
    pub(crate) fn fold_sc_ak(&mut self, sc: u8, ak: &[u8; 16]) {
        let fold = self.sc_ak.insert(ScAkFold { sc, states: [0; 2] });
        for (state, sc) in fold.states.iter_mut().zip([sc, sc | SC_ENCRYPTION]) {
            *state = first_block_state(&self.ghash, sc, ak);
        }
    }
}

/// POLYVAL's state after the one GHASH block SC ‖ AK[..15], as the word
/// whose little-endian octets are the state's. Out of line on a meter:
/// one copy for both SC octets.
#[cfg_attr(not(target_pointer_width = "64"), inline(never))]
fn first_block_state(ghash: &Polyval, sc: u8, ak: &[u8; 16]) -> u128 {
    let mut state = ghash.clone();
    // As a big-endian word; POLYVAL takes its octets reversed.
    let mut word = (u128::from(sc) << 120) | (u128::from_be_bytes(*ak) >> 8);
    let mut block = Block::from(word.to_le_bytes());
    state.proc_block(&block);
    block = state.finalize();
    word = u128::from_le_bytes(block.0);
    block.as_mut_slice().zeroize();
    word
}

impl<S: Borrow<Aes128Enc>> Gcm<S> {
    /// Builds the context around an encrypt schedule, the GHASH key
    /// H = E(K, 0¹²⁸) and E(K, [`FINGERPRINT_BLOCK`]) already computed
    /// (unpackaging computes them in the same AES call as the record's
    /// check value).
    pub(crate) fn from_parts(aes: S, mut h: Block, fingerprint: &Block) -> Self {
        let ghash = ghash_key(&h);
        h.as_mut_slice().zeroize();
        Self {
            aes,
            ghash,
            fingerprint: fingerprint_of(fingerprint),
            sc_ak: None,
        }
    }

    /// The key's fingerprint: the first octets of E(K, [`FINGERPRINT_BLOCK`]).
    pub(crate) const fn fingerprint(&self) -> [u8; FINGERPRINT_LEN] {
        self.fingerprint
    }

    /// POLYVAL's state after `aad`'s first block, when the context holds
    /// it folded for the AAD's SC octet (see [`ScAkFold`]). Out of line on
    /// a meter: one copy for every path.
    #[cfg_attr(not(target_pointer_width = "64"), inline(never))]
    fn folded(&self, aad: &Aad<'_>) -> Option<u128> {
        let (sc, ak) = aad.sc_ak?;
        let state = self.sc_ak.as_ref()?.state(sc)?;
        // The caller's contract: the AAD carries the AK folded in.
        debug_assert!(
            first_block_state(&self.ghash, sc, ak) == state,
            "an AAD with another AK than the one folded in"
        );
        Some(state)
    }

    /// The encrypt schedule.
    #[inline(always)]
    fn aes(&self) -> &Aes128Enc {
        self.aes.borrow()
    }

    /// Encrypts `data` in place and returns the 96-bit tag over
    /// `aad` (the concatenation of its pieces) and the ciphertext.
    #[cfg(test)]
    pub(crate) fn seal(&self, iv: &[u8; 12], aad: Aad<'_>, data: &mut [u8]) -> [u8; TAG_LEN] {
        self.seal_from(iv, aad, None, data)
    }

    /// As `seal` (the tests' shorthand), reading the plaintext from `src`
    /// (same length as `data`) when given: the copy into `data` is part of
    /// the XOR pass.
    pub(crate) fn seal_from(
        &self,
        iv: &[u8; 12],
        aad: Aad<'_>,
        src: Option<&[u8]>,
        data: &mut [u8],
    ) -> [u8; TAG_LEN] {
        if SHORT_PATHS && let Some(tag) = self.seal_short(iv, &aad, src, data) {
            return tag;
        }
        self.seal_stream(iv, &aad, src, data)
    }

    /// [`Self::seal_from`] through the streaming path, whatever the length.
    fn seal_stream(
        &self,
        iv: &[u8; 12],
        aad: &Aad<'_>,
        src: Option<&[u8]>,
        data: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let aad = *aad;
        let mut state = self.ghash.clone();
        let mut gh = GhashStream::new(&mut state, &aad, data.len(), self.folded(&aad));
        let aad_len = gh.update_aad(&aad);
        gh.pad();
        let mut mask = Block::default();
        let data_len = data.len();
        let result = self.ctr(
            iv,
            src,
            data,
            |ek_j0| {
                mask = *ek_j0;
                Ok(())
            },
            |ct| gh.update(ct),
        );
        debug_assert!(result.is_ok(), "the seal hook never fails");
        gh.finish(aad_len, data_len);
        let mut s = ghash_output(state);
        let tag = truncated_xor(&s, &mask);
        s.as_mut_slice().zeroize();
        mask.as_mut_slice().zeroize();
        tag
    }

    /// Verifies `tag` over `aad` and the ciphertext in `data`, then
    /// decrypts `data` in place. On failure `data` is untouched.
    pub(crate) fn open(
        &self,
        iv: &[u8; 12],
        aad: Aad<'_>,
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthError> {
        if SHORT_PATHS && let Some(result) = self.open_short(iv, &aad, data, tag) {
            return result;
        }
        self.open_stream(iv, &aad, data, tag)
    }

    /// [`Self::open`] through the streaming path, whatever the length.
    fn open_stream(
        &self,
        iv: &[u8; 12],
        aad: &Aad<'_>,
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthError> {
        let aad = *aad;
        let mut state = self.ghash.clone();
        let mut gh = GhashStream::new(&mut state, &aad, data.len(), self.folded(&aad));
        let aad_len = gh.update_aad(&aad);
        gh.pad();
        gh.update(data);
        gh.finish(aad_len, data.len());
        let mut s = ghash_output(state);
        let result = self.ctr(
            iv,
            None,
            data,
            |ek_j0| {
                let mut expected = truncated_xor(&s, ek_j0);
                let ok = tag_eq(&expected, tag);
                expected.as_mut_slice().zeroize();
                if bool::from(ok) {
                    Ok(())
                } else {
                    Err(AuthError)
                }
            },
            |_| {},
        );
        s.as_mut_slice().zeroize();
        result
    }

    /// The 96-bit GMAC tag over `aad` (GCM with an empty plaintext).
    pub(crate) fn gmac(&self, iv: &[u8; 12], aad: Aad<'_>) -> [u8; TAG_LEN] {
        if SHORT_PATHS && let Some(tag) = self.gmac_short(iv, &aad) {
            return tag;
        }
        self.gmac_stream(iv, &aad)
    }

    /// [`Self::gmac`] through the streaming path, whatever the length.
    fn gmac_stream(&self, iv: &[u8; 12], aad: &Aad<'_>) -> [u8; TAG_LEN] {
        let aad = *aad;
        let mut state = self.ghash.clone();
        let mut gh = GhashStream::new(&mut state, &aad, 0, self.folded(&aad));
        let aad_len = gh.update_aad(&aad);
        gh.finish(aad_len, 0);
        let mut s = ghash_output(state);
        let mut j0 = [counter_block(iv_base(iv), 1)];
        encrypt_blocks(self.aes(), &mut j0);
        let [mut mask] = j0;
        let tag = truncated_xor(&s, &mask);
        s.as_mut_slice().zeroize();
        mask.as_mut_slice().zeroize();
        tag
    }

    /// [`Self::seal_from`] for a message whose whole GHASH input fits in
    /// [`STAGE`] blocks (`None` otherwise, with nothing done): one AES
    /// call, one GHASH `update`, no streaming state.
    fn seal_short(
        &self,
        iv: &[u8; 12],
        aad: &Aad<'_>,
        src: Option<&[u8]>,
        data: &mut [u8],
    ) -> Option<[u8; TAG_LEN]> {
        let size = ShortSize::of(aad, data.len())?;
        let mut stage = [Block::default(); STAGE];
        let mut batch = short_batch(iv);
        let mut input = ShortInput::new(&mut stage, size, aad, data.len())?;
        let ks = self.keystream_batch(&mut batch, data.len());
        let (mask, keystream) = ks.split_first().unwrap_or((&ZERO_BLOCK, &[]));
        // Plaintext into the staged payload, the keystream over it in
        // whole blocks, the ciphertext out, the padding back to zero.
        input.seal_payload(keystream, src, data);
        let tag = input.hash_tag(&self.ghash, mask);
        wipe(&mut batch);
        input.wipe();
        Some(tag)
    }

    /// [`Self::open`] for a message whose whole GHASH input fits in
    /// [`STAGE`] blocks (`None` otherwise, with nothing done).
    fn open_short(
        &self,
        iv: &[u8; 12],
        aad: &Aad<'_>,
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Option<Result<(), AuthError>> {
        let size = ShortSize::of(aad, data.len())?;
        let mut stage = [Block::default(); STAGE];
        let mut batch = short_batch(iv);
        let mut input = ShortInput::new(&mut stage, size, aad, data.len())?;
        input.load_payload(data);
        let ks = self.keystream_batch(&mut batch, data.len());
        let (mask, keystream) = ks.split_first().unwrap_or((&ZERO_BLOCK, &[]));
        let mut expected = input.hash_tag(&self.ghash, mask);
        let ok = bool::from(tag_eq(&expected, tag));
        // One fill, not a store per octet (as the array's `zeroize`).
        expected.as_mut_slice().zeroize();
        let result = if ok {
            input.open_payload(keystream, data);
            Ok(())
        } else {
            Err(AuthError)
        };
        wipe(&mut batch);
        input.wipe();
        Some(result)
    }

    /// [`Self::gmac`] for an AAD that fits in [`STAGE`] blocks.
    fn gmac_short(&self, iv: &[u8; 12], aad: &Aad<'_>) -> Option<[u8; TAG_LEN]> {
        let size = ShortSize::of(aad, 0)?;
        let mut stage = [Block::default(); STAGE];
        let mut input = ShortInput::new(&mut stage, size, aad, 0)?;
        let mut j0 = [counter_block(iv_base(iv), 1)];
        encrypt_blocks(self.aes(), &mut j0);
        let [mut mask] = j0;
        let tag = input.hash_tag(&self.ghash, &mask);
        mask.as_mut_slice().zeroize();
        input.wipe();
        Some(tag)
    }

    /// E(K, J0) and the keystream for `len` octets, in one AES call over
    /// the front of `batch` (counter blocks 1 on, from [`short_batch`];
    /// the caller wipes it); returns that front.
    #[inline(always)]
    fn keystream_batch<'b>(&self, batch: &'b mut [Block], len: usize) -> &'b mut [Block] {
        let used = len
            .div_ceil(16)
            .saturating_add(1)
            .next_multiple_of(aes_group());
        debug_assert!(
            used <= batch.len(),
            "a short payload's keystream fits the batch"
        );
        let used = used.min(batch.len());
        let ks = batch.get_mut(..used).unwrap_or_default();
        encrypt_blocks(self.aes(), ks);
        ks
    }

    /// GCM counter mode alone (encryption-only frames carry no tag):
    /// encrypts or decrypts `data` in place.
    #[cfg(test)]
    pub(crate) fn apply_keystream(&self, iv: &[u8; 12], data: &mut [u8]) {
        self.apply_keystream_from(iv, None, data);
    }

    /// As `apply_keystream` (the tests' shorthand), reading the input from
    /// `src` when given.
    pub(crate) fn apply_keystream_from(&self, iv: &[u8; 12], src: Option<&[u8]>, data: &mut [u8]) {
        let result = self.ctr(iv, src, data, |_| Ok(()), |_| {});
        debug_assert!(result.is_ok(), "the keystream hook never fails");
    }

    /// Counter mode over `data` from counter block 2 on, after E(K, J0)
    /// (counter block 1): `before_xor` sees E(K, J0) before any byte of
    /// `data` changes and may abort the pass; `after_xor` sees the output
    /// once it has been XORed. With `src`, the input is read from it (it
    /// must be as long as `data`) and `data` is only written.
    ///
    /// On 64-bit hosts this is the `ctr` crate's counter mode (the one
    /// aes-gcm runs: counters kept in the AES backend's registers, the XOR
    /// inside its 8-block loop), in one pass over the whole message. Its
    /// 8-block keystream buffer on the stack is not wiped afterwards (as in
    /// aes-gcm); the tag mask and the last partial block here are.
    #[cfg(target_pointer_width = "64")]
    fn ctr(
        &self,
        iv: &[u8; 12],
        src: Option<&[u8]>,
        data: &mut [u8],
        before_xor: impl FnOnce(&Block) -> Result<(), AuthError>,
        mut after_xor: impl FnMut(&[u8]),
    ) -> Result<(), AuthError> {
        use aes::cipher::inout::InOutBuf;
        // Tests run seal, open and the keystream through the meter's
        // batched counter mode as well (`tests::with_meter_ctr`).
        #[cfg(test)]
        if tests::METER_CTR.with(core::cell::Cell::get) {
            return self.ctr_batched(iv, src, data, before_xor, after_xor);
        }
        use aes::cipher::{InnerIvInit, StreamCipherCore};
        let base = iv_base(iv);
        let mut j0 = [counter_block(base, 1)];
        encrypt_blocks(self.aes(), &mut j0);
        let [mut mask] = j0;
        let verdict = before_xor(&mask);
        mask.as_mut_slice().zeroize();
        verdict?;
        let mut ctr = ctr::CtrCore::<&Aes128Enc, ctr::flavors::Ctr32BE>::inner_iv_init(
            self.aes(),
            &counter_block(base, 2),
        );
        let len = data.len();
        let (out_blocks, out_tail) = Block::slice_as_chunks_mut(data);
        let mut last = Block::default();
        match src {
            Some(s) => {
                let (in_blocks, in_tail) = Block::slice_as_chunks(s.get(..len).unwrap_or(s));
                // Same lengths by the caller's contract; a mismatch is a
                // bug caught by the tests, never a wrong output.
                if let Ok(buf) = InOutBuf::new(in_blocks, out_blocks) {
                    ctr.apply_keystream_blocks_inout(buf);
                }
                if !out_tail.is_empty() {
                    ctr.write_keystream_block(&mut last);
                    for ((o, i), k) in out_tail.iter_mut().zip(in_tail).zip(last.iter()) {
                        *o = i ^ k;
                    }
                }
            }
            None => {
                ctr.apply_keystream_blocks(out_blocks);
                if !out_tail.is_empty() {
                    ctr.write_keystream_block(&mut last);
                    for (o, k) in out_tail.iter_mut().zip(last.iter()) {
                        *o ^= k;
                    }
                }
            }
        }
        last.as_mut_slice().zeroize();
        after_xor(data);
        Ok(())
    }

    /// Counter mode as above; on 32-bit targets (a meter), the batched
    /// loop: less flash than the `ctr` crate.
    #[cfg(not(target_pointer_width = "64"))]
    #[inline(always)]
    fn ctr(
        &self,
        iv: &[u8; 12],
        src: Option<&[u8]>,
        data: &mut [u8],
        before_xor: impl FnOnce(&Block) -> Result<(), AuthError>,
        after_xor: impl FnMut(&[u8]),
    ) -> Result<(), AuthError> {
        self.ctr_batched(iv, src, data, before_xor, after_xor)
    }

    /// Counter mode as [`Self::ctr`], in batches of `BATCH` blocks per AES
    /// call (the first batch starts with J0), each XORed and handed to
    /// `after_xor` in turn. The batch, 288 octets of stack, is wiped as far
    /// as it was used. The meter's counter mode; on hosts built for the
    /// tests only, which check it against aes-gcm.
    #[cfg(any(test, not(target_pointer_width = "64")))]
    #[allow(
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing,
        reason = "block counts are bounded by BATCH (a small constant) and by data.len(); \
                  `used <= BATCH` is kept by construction"
    )]
    fn ctr_batched(
        &self,
        iv: &[u8; 12],
        mut src: Option<&[u8]>,
        data: &mut [u8],
        before_xor: impl FnOnce(&Block) -> Result<(), AuthError>,
        mut after_xor: impl FnMut(&[u8]),
    ) -> Result<(), AuthError> {
        /// J0 plus 17 blocks: 272 octets of payload per AES call, an even
        /// count, so whole batches are whole pairs for the meter's AES.
        const BATCH: usize = 18;

        /// `dst = src ⊕ ks` over `dst`'s length, a 32-bit word at a time
        /// (register moves: a 16-octet array copy from a place of no known
        /// alignment is a `memcpy` call on a 32-bit meter); with no `src`,
        /// `dst ^= ks` (`src`, when given, and `ks` are at least as long as
        /// `dst`).
        fn xor_keystream(dst: &mut [u8], src: Option<&[u8]>, ks: &[u8]) {
            fn word(b: &[u8; 4]) -> u32 {
                u32::from_ne_bytes(*b)
            }
            let (dw, dt) = dst.as_chunks_mut::<4>();
            let (kw, _) = ks.as_chunks::<4>();
            let kt = ks.get(dw.len() * 4..).unwrap_or_default();
            match src {
                Some(src) => {
                    let (sw, st) = src.as_chunks::<4>();
                    for ((d, s), k) in dw.iter_mut().zip(sw).zip(kw) {
                        *d = (word(s) ^ word(k)).to_ne_bytes();
                    }
                    for ((d, s), k) in dt.iter_mut().zip(st).zip(kt) {
                        *d = s ^ k;
                    }
                }
                None => {
                    for (d, k) in dw.iter_mut().zip(kw) {
                        *d = (word(d) ^ word(k)).to_ne_bytes();
                    }
                    for (d, k) in dt.iter_mut().zip(kt) {
                        *d ^= k;
                    }
                }
            }
        }

        let base = iv_base(iv);
        let mut ks = [Block::default(); BATCH];
        let mut before = Some(before_xor);
        // Counter block 1 is J0; the keystream starts at block 2.
        let mut counter: u32 = 1;
        let mut rest = data;
        let mut max_used = 0;
        let result = loop {
            let skip = usize::from(before.is_some());
            let take = rest.len().min((BATCH - skip) * 16);
            // The last batch is rounded up to whole groups of the AES
            // backend's parallel width (on a meter, pairs): the padding
            // block is encrypted in place, not through a scratch pair.
            let used = (skip + take.div_ceil(16))
                .next_multiple_of(aes_group())
                .min(BATCH);
            for b in &mut ks[..used] {
                *b = counter_block(base, counter);
                counter = counter.wrapping_add(1);
            }
            encrypt_blocks(self.aes(), &mut ks[..used]);
            max_used = max_used.max(used);
            if let Some(hook) = before.take()
                && let Err(e) = hook(&ks[0])
            {
                break Err(e);
            }
            let (chunk, tail) = core::mem::take(&mut rest).split_at_mut(take);
            let keystream = Block::slice_as_flattened(&ks[skip..used]);
            let head = match src {
                Some(input) => {
                    let (head, tail) = input.split_at(take.min(input.len()));
                    src = Some(tail);
                    Some(head)
                }
                None => None,
            };
            xor_keystream(chunk, head, keystream);
            after_xor(chunk);
            rest = tail;
            if rest.is_empty() {
                break Ok(());
            }
        };
        Block::slice_as_flattened_mut(&mut ks[..max_used]).zeroize();
        result
    }
}

/// [`AES_GROUP`]; in tests on 64-bit hosts, the meter's 2 under
/// `tests::with_meter_ctr`, so its rounding runs there too.
#[inline(always)]
fn aes_group() -> usize {
    #[cfg(test)]
    if tests::METER_CTR.with(core::cell::Cell::get) {
        return 2;
    }
    AES_GROUP
}

/// Encrypts `blocks` in place: every AES call of this module goes through
/// here. On 64-bit hosts, the `aes` crate's `encrypt_blocks`.
#[cfg(target_pointer_width = "64")]
#[inline(always)]
fn encrypt_blocks(aes: &Aes128Enc, blocks: &mut [Block]) {
    // Tests run every AES call through the meter's path as well
    // (`tests::with_meter_ctr`).
    #[cfg(test)]
    if tests::METER_CTR.with(core::cell::Cell::get) {
        aes.encrypt_with_backend(ParBlocksOnly { blocks });
        return;
    }
    aes.encrypt_blocks(blocks);
}

/// Encrypts `blocks` in place: every AES call of this module goes through
/// here. On 32-bit targets (a meter), one out-of-line call that runs the
/// backend's parallel-blocks path only, a last partial group padded in a
/// scratch group: the soft backend's single-block path is a second,
/// 16-bit instantiation of the whole cipher (1 KiB of flash), while its
/// two-block path works on 32-bit words, so a padding block rides along
/// in word operations the call makes anyway.
#[cfg(not(target_pointer_width = "64"))]
#[inline(never)]
fn encrypt_blocks(aes: &Aes128Enc, blocks: &mut [Block]) {
    aes.encrypt_with_backend(ParBlocksOnly { blocks });
}

/// The closure of the par-blocks-only [`encrypt_blocks`]: whole groups of
/// the backend's parallel width in place, then the rest (fewer than a
/// group) through a scratch group that is wiped afterwards.
#[cfg(any(test, not(target_pointer_width = "64")))]
struct ParBlocksOnly<'a> {
    blocks: &'a mut [Block],
}

#[cfg(any(test, not(target_pointer_width = "64")))]
impl aes::cipher::BlockSizeUser for ParBlocksOnly<'_> {
    type BlockSize = aes::cipher::consts::U16;
}

#[cfg(any(test, not(target_pointer_width = "64")))]
impl aes::cipher::BlockCipherEncClosure for ParBlocksOnly<'_> {
    #[inline(always)]
    fn call<B: aes::cipher::BlockCipherEncBackend<BlockSize = Self::BlockSize>>(self, backend: &B) {
        let mut group = aes::cipher::ParBlocks::<B>::default();
        for chunk in self.blocks.chunks_mut(group.len()) {
            if let Ok(whole) = <&mut aes::cipher::ParBlocks<B>>::try_from(&mut *chunk) {
                backend.encrypt_par_blocks_inplace(whole);
            } else {
                for (g, b) in group.iter_mut().zip(chunk.iter()) {
                    copy_block(&mut g.0, &b.0);
                }
                backend.encrypt_par_blocks_inplace(&mut group);
                for (b, g) in chunk.iter_mut().zip(group.iter()) {
                    copy_block(&mut b.0, &g.0);
                }
                Block::slice_as_flattened_mut(&mut group).zeroize();
            }
        }
    }
}

/// The whole GHASH input of a short message in one buffer of [`STAGE`]
/// blocks: the AAD, zero-padded; the ciphertext, zero-padded; the length
/// block. Holds the AK and plaintext-derived data: [`ShortInput::wipe`]
/// clears it.
struct ShortInput<'s> {
    stage: &'s mut [Block],
    /// Where the payload starts (a block boundary).
    payload: usize,
    /// Blocks in use (a multiple of the group): leading zero blocks, the
    /// AAD, the payload and the length block.
    blocks: usize,
}

#[allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    reason = "every offset is checked against the buffer in `new`; lengths are public"
)]
impl<'s> ShortInput<'s> {
    /// Lays out in `stage` (all zeros) the AAD, room for `payload_len`
    /// octets and the length block, in whole groups of [`GHASH_GROUP`]
    /// blocks; `None` when they do not fit.
    #[inline(always)]
    fn new(
        stage: &'s mut [Block],
        size: ShortSize,
        aad: &Aad<'_>,
        payload_len: usize,
    ) -> Option<Self> {
        Self::grouped(stage, size, aad, payload_len, ghash_group())
    }

    /// [`Self::new`] with groups of `group` blocks (1, 2 or 4).
    #[inline(always)]
    fn grouped(
        stage: &'s mut [Block],
        size: ShortSize,
        aad: &Aad<'_>,
        payload_len: usize,
        group: usize,
    ) -> Option<Self> {
        let ShortSize { aad_len, blocks } = size;
        let aad_blocks = aad_len.div_ceil(16);
        let grouped = blocks.next_multiple_of(group);
        if grouped > stage.len() {
            return None;
        }
        // Leading zero blocks round the input up to whole groups.
        let start = (grouped - blocks) * 16;
        let payload = start + aad_blocks * 16;
        let lens = (grouped - 1) * 16;
        let flat = Block::slice_as_flattened_mut(stage);
        let mut pos = start;
        if let Some((sc, ak)) = aad.sc_ak {
            flat[pos] = sc;
            if word_moves() {
                // SC ‖ AK starts at a block boundary: SC and the first 15
                // octets of the AK as one block, the last octet starting
                // the next; fixed-size moves, not a copy at an odd offset
                // (a `memcpy` call on a 32-bit meter). The AK passes
                // through registers only; its staged copy is wiped with
                // the stage.
                let first = (u128::from(sc) << 120) | (u128::from_be_bytes(*ak) >> 8);
                flat[pos..pos + 16].copy_from_slice(&first.to_be_bytes());
                flat[pos + 16] = ak[15];
            } else {
                flat[pos + 1..pos + 17].copy_from_slice(ak);
            }
            pos += 17;
        }
        for p in aad.rest.iter().filter(|p| !p.is_empty()) {
            flat[pos..pos + p.len()].copy_from_slice(p);
            pos += p.len();
        }
        let bits = (u128::from((aad_len as u64).wrapping_mul(8)) << 64)
            | u128::from((payload_len as u64).wrapping_mul(8));
        flat[lens..lens + 16].copy_from_slice(&bits.to_be_bytes());
        Some(Self {
            stage,
            payload,
            blocks: lens / 16 + 1,
        })
    }

    /// The staged payload's blocks, from its first on.
    #[inline(always)]
    fn payload_blocks(&mut self) -> &mut [Block] {
        let first = self.payload / 16;
        &mut self.stage[first..]
    }

    /// Encrypts into the staged input and into `data` at once: each
    /// ciphertext block `p ⊕ k` is stored in both (the plaintext read from
    /// `src` when given, else from `data`); the padding after the payload
    /// stays zero. Moves of 16 octets only, so no wider load reads back a
    /// block just stored (a store-forwarding stall), as a `memcpy` of the
    /// staged ciphertext would.
    #[inline(always)]
    fn seal_payload(&mut self, keystream: &[Block], src: Option<&[u8]>, data: &mut [u8]) {
        let stage = self.payload_blocks();
        let (out, out_tail) = data.as_chunks_mut::<16>();
        let pairs = stage.iter_mut().zip(keystream);
        match src {
            Some(src) => {
                let (inp, in_tail) = src.as_chunks::<16>();
                for ((o, p), (st, k)) in out.iter_mut().zip(inp).zip(pairs) {
                    let c = xor_block(p, &k.0);
                    *o = c;
                    st.0 = c;
                }
                let at = out.len();
                seal_tail(stage, keystream, at, in_tail, out_tail);
            }
            None => {
                for (o, (st, k)) in out.iter_mut().zip(pairs) {
                    let c = xor_block(o, &k.0);
                    *o = c;
                    st.0 = c;
                }
                let at = out.len();
                let mut tail = [0u8; 16];
                for (t, o) in tail.iter_mut().zip(out_tail.iter()) {
                    *t = *o;
                }
                let p = tail.get(..out_tail.len()).unwrap_or_default();
                seal_tail(stage, keystream, at, p, out_tail);
                tail.zeroize();
            }
        }
    }

    /// Copies the ciphertext `data` into the staged input, 16 octets at a
    /// time (see [`Self::seal_payload`] on why not `memcpy`).
    #[inline(always)]
    fn load_payload(&mut self, data: &[u8]) {
        let stage = self.payload_blocks();
        let (blocks, tail) = data.as_chunks::<16>();
        for (st, b) in stage.iter_mut().zip(blocks) {
            copy_block(&mut st.0, b);
        }
        if let Some(st) = stage.get_mut(blocks.len()) {
            for (s, b) in st.iter_mut().zip(tail) {
                *s = *b;
            }
        }
    }

    /// Decrypts the staged ciphertext into `data`: `data = c ⊕ k`, block by
    /// block (the staged input is left as it was, for [`Self::wipe`]).
    #[inline(always)]
    fn open_payload(&mut self, keystream: &[Block], data: &mut [u8]) {
        let stage = self.payload_blocks();
        let (out, out_tail) = data.as_chunks_mut::<16>();
        let mut pairs = stage.iter().zip(keystream);
        for (o, (c, k)) in out.iter_mut().zip(pairs.by_ref()) {
            *o = xor_block(&c.0, &k.0);
        }
        if let Some((c, k)) = pairs.next() {
            for ((o, c), k) in out_tail.iter_mut().zip(c.iter()).zip(k.iter()) {
                *o = c ^ k;
            }
        }
    }

    /// GHASH over the whole input in one `update`, masked with E(K, J0).
    fn hash_tag(&self, ghash: &Polyval, mask: &Block) -> [u8; TAG_LEN] {
        let mut state = ghash.clone();
        if direct_ghash() {
            for b in &self.stage[..self.blocks] {
                state.proc_block(&reversed(b));
            }
        } else {
            // The stage itself is left as it is (the open path reads it
            // again).
            state.update_with_backend(Reversed(&self.stage[..self.blocks]));
        }
        let mut s = ghash_output(state);
        let tag = truncated_xor(&s, mask);
        s.as_mut_slice().zeroize();
        tag
    }

    #[inline(always)]
    fn wipe(&mut self) {
        wipe(self.stage);
    }
}

/// Wipes a short-path buffer whole: it is small, so once inlined this is
/// fixed-size stores, no `memset` call.
#[inline(always)]
fn wipe(buf: &mut [Block]) {
    Block::slice_as_flattened_mut(buf).zeroize();
}

/// Whether the short path stages blocks with explicit word moves: on
/// 32-bit targets (a meter), where an array copy from or to a place of no
/// known alignment is a `memcpy` call; on 64-bit hosts a copy is one or
/// two vector moves. Tests on 64-bit hosts take the meter's moves under
/// `tests::with_meter_ctr`.
#[inline(always)]
fn word_moves() -> bool {
    #[cfg(test)]
    if tests::METER_CTR.with(core::cell::Cell::get) {
        return true;
    }
    !cfg!(target_pointer_width = "64")
}

/// Copies one block; with [`word_moves`], as four separate 32-bit words:
/// register moves, where an array copy from a frame's ciphertext is a
/// `memcpy` call on a 32-bit meter, and a loop of whole-block copies one
/// `memcpy` call over all of them.
#[inline(always)]
fn copy_block(dst: &mut [u8; 16], src: &[u8; 16]) {
    if !word_moves() {
        *dst = *src;
        return;
    }
    let (d, _) = dst.as_chunks_mut::<4>();
    let (s, _) = src.as_chunks::<4>();
    if let ([d0, d1, d2, d3], [s0, s1, s2, s3]) = (d, s) {
        *d0 = u32::from_ne_bytes(*s0).to_ne_bytes();
        *d1 = u32::from_ne_bytes(*s1).to_ne_bytes();
        *d2 = u32::from_ne_bytes(*s2).to_ne_bytes();
        *d3 = u32::from_ne_bytes(*s3).to_ne_bytes();
    }
}

/// `a ⊕ b` for one block, as one 16-octet word.
#[inline(always)]
fn xor_block(a: &[u8; 16], b: &[u8; 16]) -> [u8; 16] {
    (u128::from_ne_bytes(*a) ^ u128::from_ne_bytes(*b)).to_ne_bytes()
}

/// The last, partial block of [`ShortInput::seal_payload`]: block `at` of
/// the keystream over `plain` into `out` and into the staged block `at`
/// (whose octets after the payload stay zero).
#[inline(always)]
fn seal_tail(stage: &mut [Block], keystream: &[Block], at: usize, plain: &[u8], out: &mut [u8]) {
    if let (Some(st), Some(k)) = (stage.get_mut(at), keystream.get(at)) {
        for (((o, s), p), k) in out.iter_mut().zip(st.iter_mut()).zip(plain).zip(k.iter()) {
            *o = p ^ k;
            *s = *o;
        }
    }
}

/// A 16-octet window as a big-endian `u128` (first octet highest).
fn u128_be(window: &[u8]) -> u128 {
    u128::from_be_bytes(window.try_into().unwrap_or([0; 16]))
}

/// Whether GHASH blocks go to POLYVAL one by one as they are completed
/// (its one-block function, no staging, no closure): on 32-bit targets (a
/// meter), whose software POLYVAL multiplies block by block in any case;
/// on 64-bit hosts blocks are staged and hashed in one `update` call per
/// [`STAGE`] blocks, which polyval's CLMUL and PMULL backends aggregate.
/// Tests on 64-bit hosts take the meter's way under
/// `tests::with_meter_ctr`.
#[inline(always)]
fn direct_ghash() -> bool {
    #[cfg(test)]
    if tests::METER_CTR.with(core::cell::Cell::get) {
        return true;
    }
    !cfg!(target_pointer_width = "64")
}

/// GHASH's key H as POLYVAL's: mulX_POLYVAL(rev(H)) (RFC 8452, Appendix A).
fn ghash_key(h: &Block) -> Polyval {
    let mut k = FieldElement::from(h).reverse().mulx();
    let mut key = Block::from(k);
    let polyval = Polyval::new(&key);
    k.zeroize();
    key.as_mut_slice().zeroize();
    polyval
}

/// A block with its octets in reverse order (GHASH's order to POLYVAL's
/// and back). On a 32-bit meter through one `u128` (four `REV`s and word
/// moves); on 64-bit hosts as a 16-octet vector shuffle, stored whole, so
/// the backend's 16-octet load of it straight after is forwarded from one
/// store (a `u128` is stored as two halves, which a wider load cannot be
/// forwarded from: a stall per block).
#[inline(always)]
fn reversed(b: &Block) -> Block {
    if cfg!(target_pointer_width = "64") {
        let mut a = b.0;
        a.reverse();
        Block::from(a)
    } else {
        Block::from(u128::from_be_bytes(b.0).to_le_bytes())
    }
}

/// GHASH blocks handed to POLYVAL in one call: reversed into a group of
/// the backend's parallel width (4) at a time, which polyval's CLMUL and
/// PMULL backends hash aggregated; a last partial group block by block.
/// The group is wiped afterwards.
struct Reversed<'a>(&'a [Block]);

impl polyval::universal_hash::common::BlockSizeUser for Reversed<'_> {
    type BlockSize = polyval::universal_hash::consts::U16;
}

impl polyval::universal_hash::UhfClosure for Reversed<'_> {
    fn call<B: UhfBackend<BlockSize = Self::BlockSize>>(self, backend: &mut B) {
        let mut group = polyval::universal_hash::ParBlocks::<B>::default();
        let mut chunks = self.0.chunks_exact(group.len());
        for chunk in chunks.by_ref() {
            for (g, b) in group.iter_mut().zip(chunk) {
                *g = reversed(b);
            }
            backend.proc_par_blocks(&group);
        }
        for b in chunks.remainder() {
            backend.proc_block(&reversed(b));
        }
        wipe(&mut group);
    }
}

/// GHASH's output: POLYVAL's, reversed; the state is wiped as it drops.
fn ghash_output(state: Polyval) -> Block {
    let mut s = state.finalize();
    let out = reversed(&s);
    s.as_mut_slice().zeroize();
    out
}

/// The size of a short message's GHASH input, computed once per message.
#[derive(Clone, Copy)]
struct ShortSize {
    /// The AAD's length in octets.
    aad_len: usize,
    /// GHASH blocks: AAD, payload, length block.
    blocks: usize,
}

impl ShortSize {
    /// The size of a message with `aad` and `payload_len` octets of
    /// payload, when its GHASH input fits the short path's buffer.
    #[inline(always)]
    fn of(aad: &Aad<'_>, payload_len: usize) -> Option<Self> {
        let aad_len = aad.len();
        let blocks = aad_len
            .div_ceil(16)
            .checked_add(payload_len.div_ceil(16))?
            .checked_add(1)?;
        (blocks <= STAGE).then_some(Self { aad_len, blocks })
    }
}

/// Constant-time equality of two 96-bit tags, compared as two machine
/// words (XOR and OR, then one `subtle` comparison, one optimisation
/// barrier) rather than octet by octet (twelve barriers).
pub(crate) fn tag_eq(a: &[u8; TAG_LEN], b: &[u8; TAG_LEN]) -> subtle::Choice {
    let [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11] = *a;
    let [b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11] = *b;
    let lo = u64::from_ne_bytes([a0, a1, a2, a3, a4, a5, a6, a7])
        ^ u64::from_ne_bytes([b0, b1, b2, b3, b4, b5, b6, b7]);
    let hi = u32::from_ne_bytes([a8, a9, a10, a11]) ^ u32::from_ne_bytes([b8, b9, b10, b11]);
    (lo | u64::from(hi)).ct_eq(&0)
}

/// The IV as the high 96 bits of a counter block.
#[inline(always)]
fn iv_base(iv: &[u8; 12]) -> u128 {
    let mut b = [0u8; 16];
    for (d, s) in b.iter_mut().zip(iv) {
        *d = *s;
    }
    u128::from_be_bytes(b)
}

/// The short path's AES batch before encryption: counter blocks 1 (J0)
/// to [`SHORT_KEYSTREAM`] under `iv`, written once each (an array built
/// in place: no zeros first, no loop, no copy).
#[inline(always)]
fn short_batch(iv: &[u8; 12]) -> [Block; SHORT_KEYSTREAM] {
    let b = iv_base(iv);
    [
        counter_block(b, 1),
        counter_block(b, 2),
        counter_block(b, 3),
        counter_block(b, 4),
        counter_block(b, 5),
        counter_block(b, 6),
        counter_block(b, 7),
        counter_block(b, 8),
    ]
}

/// IV ‖ counter (big-endian), the GCM counter block.
fn counter_block(base: u128, counter: u32) -> Block {
    Block::from((base | u128::from(counter)).to_be_bytes())
}

/// The leftmost 96 bits of `a ⊕ b`.
/// One 16-octet XOR, the last 4 octets dropped: word operations, not an
/// octet loop into a buffer that is then copied out.
fn truncated_xor(a: &Block, b: &Block) -> [u8; TAG_LEN] {
    let x = xor_block(&a.0, &b.0);
    let mut out = [0u8; TAG_LEN];
    let (d, _) = out.as_chunks_mut::<4>();
    let (s, _) = x.as_chunks::<4>();
    if let ([d0, d1, d2], [s0, s1, s2, _]) = (d, s) {
        *d0 = *s0;
        *d1 = *s1;
        *d2 = *s2;
    }
    out
}

/// GHASH over a stream of byte pieces, carried across piece boundaries and
/// handed to `ghash` in whole, staged blocks. Every stream is consumed by
/// [`GhashStream::finish`], which wipes the staged input.
struct GhashStream<'g> {
    ghash: &'g mut Polyval,
    /// Blocks waiting for one `update` call, byte-reversed (POLYVAL's
    /// order); unused when [`direct_ghash`] (each block goes to POLYVAL
    /// as it is completed: no buffer on a meter).
    stage: [Block; STREAM_STAGE],
    staged: usize,
    /// The `partial_len` octets of an unfinished block, held in a
    /// register-sized value, right-aligned (big-endian, last octet lowest;
    /// the bits above them zero) so that assembling a block from short
    /// pieces never stores bytes and reloads them as a block (a
    /// store-forwarding stall), and an octet goes in with a constant shift
    /// (a few word instructions on a 32-bit meter) rather than one by a
    /// variable count.
    partial: u128,
    partial_len: usize,
    /// Whether the AAD's first block, SC ‖ AK[..15], is folded in
    /// advance ([`ScAkFold`]): not hashed, its state in `carry`.
    folded: bool,
    /// XORed into the next block completed from `partial`, then zero:
    /// the folded state of the first block (the second block always
    /// starts with the AK's last octet, so it is completed there).
    carry: u128,
}

#[allow(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    reason = "staged <= STAGE and partial_len < 16 are kept by every method"
)]
impl<'g> GhashStream<'g> {
    /// A stream for `aad` and `payload_len` octets of payload. It starts
    /// with zero blocks (GHASH of a zero block from the zero state is
    /// zero) so the whole input is whole groups of [`GHASH_GROUP`] blocks:
    /// on a host, with every `update` call 4-block aligned, polyval never
    /// ends on single-block multiplies; on a meter, no multiply goes to a
    /// zero block.
    ///
    /// `folded`: POLYVAL's state after the AAD's first block, SC ‖
    /// AK[..15], when it is folded in advance (see [`ScAkFold`]; only for
    /// an AAD that starts SC ‖ AK).
    fn new(
        ghash: &'g mut Polyval,
        aad: &Aad<'_>,
        payload_len: usize,
        folded: Option<u128>,
    ) -> Self {
        let folded = folded.filter(|_| aad.sc_ak.is_some());
        let blocks = aad
            .len()
            .div_ceil(16)
            .wrapping_add(payload_len.div_ceil(16))
            .wrapping_add(usize::from(folded.is_none()));
        Self {
            ghash,
            stage: [Block::default(); STREAM_STAGE],
            staged: {
                let group = ghash_group();
                (group - blocks % group) % group
            },
            partial: 0,
            partial_len: 0,
            folded: folded.is_some(),
            carry: folded.unwrap_or(0),
        }
    }

    /// Feeds SC ‖ AK, the start of every suite-0 AAD, with fixed-size moves.
    fn start_with_sc_ak(&mut self, sc: u8, ak: &[u8; 16]) {
        debug_assert!(self.staged < 4 && self.partial_len == 0);
        let mut ak = u128::from_be_bytes(*ak);
        self.push_word((u128::from(sc) << 120) | (ak >> 8));
        self.partial = ak & 0xFF;
        self.partial_len = 1;
        ak.zeroize();
    }

    /// Appends up to `16 - partial_len` octets to the partial block: four
    /// at a time where it can (a shift by 32 is word moves on a 32-bit
    /// meter), then one at a time.
    fn absorb(&mut self, bytes: &[u8]) {
        let (words, rest) = bytes.as_chunks::<4>();
        for w in words {
            self.partial = (self.partial << 32) | u128::from(u32::from_be_bytes(*w));
            self.partial_len += 4;
        }
        for b in rest {
            self.partial = (self.partial << 8) | u128::from(*b);
            self.partial_len += 1;
        }
    }

    /// Takes the partial block, complete (16 octets), as a big-endian word,
    /// with the carry XORed in.
    fn take_partial(&mut self) -> u128 {
        debug_assert!(self.partial_len == 16, "only a complete block is taken");
        let block = self.partial ^ self.carry;
        self.carry = 0;
        self.partial = 0;
        self.partial_len = 0;
        block
    }

    /// Feeds the AAD; returns its length.
    fn update_aad(&mut self, aad: &Aad<'_>) -> u64 {
        let mut len = 0u64;
        if let Some((sc, ak)) = aad.sc_ak {
            if self.folded {
                // SC ‖ AK[..15] is in `carry`; the AK's last octet starts
                // the next block.
                self.partial = u128::from(ak[15]);
                self.partial_len = 1;
            } else {
                self.start_with_sc_ak(sc, ak);
            }
            len = 17;
        }
        for p in aad.rest {
            self.update(p);
            len = len.wrapping_add(p.len() as u64);
        }
        len
    }

    fn update(&mut self, piece: &[u8]) {
        let mut bytes = piece;
        if self.partial_len > 0 {
            let take = bytes.len().min(16 - self.partial_len);
            let (head, rest) = bytes.split_at(take);
            if let Some(window) = bytes.get(..16).filter(|_| windowed()) {
                // A whole block's window: its first `take` octets shifted
                // into place at once, not one octet per step (`take` is
                // 1 to 15 here, so neither shift is by 128).
                self.partial =
                    (self.partial << (8 * take)) | (u128_be(window) >> (8 * (16 - take)));
                self.partial_len = 16;
            } else if let Some(window) = bytes.get(..16).filter(|_| self.partial_len == 1) {
                // After SC ‖ AK (every suite-0 AAD): the last AK octet
                // and 15 octets of the window, by constant shifts.
                self.partial = (self.partial << 120) | (u128_be(window) >> 8);
                self.partial_len = 16;
            } else {
                self.absorb(head);
            }
            bytes = rest;
            if self.partial_len < 16 {
                return;
            }
            let block = self.take_partial();
            self.push_word(block);
        }
        let (blocks, tail) = Block::slice_as_chunks(bytes);
        self.push_blocks(blocks);
        match piece.len().checked_sub(16).and_then(|at| piece.get(at..)) {
            // The tail is the end of a whole block's window of the piece.
            Some(window) if windowed() && !tail.is_empty() => {
                self.partial = u128_be(window) & (u128::MAX >> (8 * (16 - tail.len())));
                self.partial_len = tail.len();
            }
            _ => self.absorb(tail),
        }
    }

    /// Zero-pads a partial block (the end of the AAD or of the ciphertext).
    /// Out of line on a meter, where the shift by a variable count is long
    /// code: one copy of it in flash.
    #[cfg_attr(not(target_pointer_width = "64"), inline(never))]
    fn pad(&mut self) {
        if self.partial_len > 0 {
            // 1 to 15 octets: the shift is by 8 to 120.
            self.partial <<= 8 * (16 - self.partial_len);
            self.partial_len = 16;
            let block = self.take_partial();
            self.push_word(block);
        }
    }

    /// One GHASH block given as a big-endian word (its first octet
    /// highest): POLYVAL takes it as the little-endian bytes of that word.
    fn push_word(&mut self, block: u128) {
        let rev = Block::from(block.to_le_bytes());
        if direct_ghash() {
            self.ghash.proc_block(&rev);
            return;
        }
        if self.staged == STREAM_STAGE {
            self.ghash.update(&self.stage);
            self.staged = 0;
        }
        self.stage[self.staged] = rev;
        self.staged += 1;
    }

    /// Whole blocks of a piece, each reversed as it is pushed. On a host a
    /// long run tops the stage up and flushes it, then goes to polyval in
    /// one call that reverses it 4 blocks at a time ([`Reversed`]), so
    /// polyval aggregates it from its first block; short runs are staged.
    fn push_blocks(&mut self, mut blocks: &[Block]) {
        if !direct_ghash() && blocks.len() >= STAGE {
            while self.staged > 0 {
                let Some((b, rest)) = blocks.split_first() else {
                    return;
                };
                self.push_word(u128::from_be_bytes(b.0));
                blocks = rest;
                if self.staged == STREAM_STAGE {
                    self.ghash.update(&self.stage);
                    self.staged = 0;
                }
            }
            let (run, tail) = blocks.split_at(blocks.len() / 4 * 4);
            if !run.is_empty() {
                self.ghash.update_with_backend(Reversed(run));
            }
            blocks = tail;
        }
        for b in blocks {
            self.push_word(u128::from_be_bytes(b.0));
        }
    }

    /// Pads, appends the length block and hands the rest to GHASH; the
    /// caller then finalizes its state.
    fn finish(&mut self, aad_len: u64, ct_len: usize) {
        self.pad();
        let lens = (u128::from(aad_len.wrapping_mul(8)) << 64)
            | u128::from((ct_len as u64).wrapping_mul(8));
        self.push_word(lens);
        if !direct_ghash() {
            self.ghash.update(&self.stage[..self.staged]);
            // The staged input held AAD (the AK) and ciphertext.
            Block::slice_as_flattened_mut(&mut self.stage).zeroize();
        }
        self.partial.zeroize();
        self.carry.zeroize();
    }
}

#[cfg(test)]
#[allow(
    clippy::std_instead_of_alloc,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::arithmetic_side_effects,
    reason = "test data"
)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use aes_gcm::aead::consts::U12;
    use aes_gcm::aead::{AeadInOut, KeyInit as _};
    use aes_gcm::aes::Aes128;
    use proptest::prelude::*;

    use super::*;

    type Reference = aes_gcm::AesGcm<Aes128, U12, U12>;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn vectors() -> Vec<serde_json::Value> {
        let all: Vec<serde_json::Value> =
            serde_json::from_str(include_str!("../vectors/suite0-vectors.json")).unwrap();
        all.into_iter().filter(|v| v["kind"] == "gcm").collect()
    }

    /// The short path's layout in groups of 1, 2 and 4 blocks (the meter's
    /// and the hosts'): for every AAD and payload length that fits, the
    /// staged ciphertext hashes to aes-gcm's tag and opens to its
    /// plaintext, whatever the number of leading zero blocks.
    #[test]
    fn short_layout_in_every_group_size_matches_aes_gcm() {
        let key = [0x42u8; 16];
        let iv = [7u8; 12];
        let gcm = Gcm::new(&key);
        let reference = Reference::new(&key.into());
        let mut j0 = [counter_block(iv_base(&iv), 1)];
        encrypt_blocks(gcm.aes(), &mut j0);
        let [mask] = j0;
        for aad_len in 0..=STAGE * 16 {
            for len in 0..=STAGE * 16 {
                let aad: Vec<u8> = (0..aad_len).map(|i| (i * 7 + 1) as u8).collect();
                let pt: Vec<u8> = (0..len).map(|i| (i * 13 + 5) as u8).collect();
                let pieces = [aad.as_slice()];
                let a = Aad::pieces(&pieces);
                let Some(size) = ShortSize::of(&a, len) else {
                    continue;
                };
                let mut ct = pt.clone();
                let tag = reference
                    .encrypt_inout_detached(&iv.into(), &aad, ct.as_mut_slice().into())
                    .unwrap();
                let mut batch = short_batch(&iv);
                let ks = gcm.keystream_batch(&mut batch, len);
                let keystream = ks.get(1..).unwrap_or_default().to_vec();
                for group in [1, 2, 4] {
                    let mut stage = [Block::default(); STAGE];
                    let mut input = ShortInput::grouped(&mut stage, size, &a, len, group).unwrap();
                    input.load_payload(&ct);
                    assert_eq!(
                        input.hash_tag(&gcm.ghash, &mask),
                        tag.as_slice(),
                        "aad {aad_len}, payload {len}, group {group}"
                    );
                    let mut out = ct.clone();
                    input.open_payload(&keystream, &mut out);
                    assert_eq!(out, pt, "aad {aad_len}, payload {len}, group {group}");
                }
            }
        }
    }

    /// NIST CAVS gcmEncryptExtIV128 entries with 96-bit tags, through the
    /// streaming path with the AAD cut at every position into two pieces
    /// and at two positions into three.
    #[test]
    fn nist_gcm_vectors_with_every_aad_split() {
        let vs = vectors();
        assert!(vs.len() >= 4);
        for v in vs {
            let key: [u8; 16] = hex(v["key"].as_str().unwrap()).try_into().unwrap();
            let iv: [u8; 12] = hex(v["iv"].as_str().unwrap()).try_into().unwrap();
            let aad = hex(v["aad"].as_str().unwrap());
            let pt = hex(v["plaintext"].as_str().unwrap());
            let ct = hex(v["ciphertext"].as_str().unwrap());
            let tag: [u8; 12] = hex(v["tag"].as_str().unwrap()).try_into().unwrap();
            let gcm = Gcm::new(&key);
            for i in 0..=aad.len() {
                let (a, b) = aad.split_at(i);
                let mut buf = pt.clone();
                assert_eq!(
                    gcm.seal(&iv, Aad::pieces(&[a, b]), &mut buf),
                    tag,
                    "{}",
                    v["id"]
                );
                assert_eq!(buf, ct);
                gcm.open(&iv, Aad::pieces(&[b"", a, b]), &mut buf, &tag)
                    .unwrap();
                assert_eq!(buf, pt);
                if pt.is_empty() {
                    assert_eq!(gcm.gmac(&iv, Aad::pieces(&[a, b])), tag);
                }
                for j in i..=aad.len() {
                    let (b1, b2) = b.split_at(j - i);
                    let mut buf = pt.clone();
                    assert_eq!(gcm.seal(&iv, Aad::pieces(&[a, b1, b2]), &mut buf), tag);
                }
            }
            // Any flipped tag bit is refused and leaves the ciphertext as it was.
            for bit in 0..96 {
                let mut bad = tag;
                bad[bit / 8] ^= 1 << (bit % 8);
                let mut buf = ct.clone();
                assert!(gcm.open(&iv, Aad::pieces(&[&aad]), &mut buf, &bad).is_err());
                assert_eq!(buf, ct);
            }
        }
    }

    fn reference(key: &[u8; 16], iv: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 12] {
        let r = Reference::new(key.into());
        r.encrypt_inout_detached(iv.into(), aad, data.into())
            .unwrap()
            .into()
    }

    #[test]
    fn batch_and_stage_boundaries_match_aes_gcm() {
        let key = [7u8; 16];
        let iv = [9u8; 12];
        let gcm = Gcm::new(&key);
        let sizes = [
            0, 1, 15, 16, 17, 47, 48, 49, 239, 240, 241, 255, 256, 257, 1007, 1008, 1009, 4079,
            4080, 4081, 4096, 8191, 16384, 65543,
        ];
        for &n in &sizes {
            for &m in &[0usize, 1, 17, 31, 128, 129] {
                let aad: Vec<u8> = (0..m).map(|i| i as u8).collect();
                let pt: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
                let mut ours = pt.clone();
                let mut theirs = pt.clone();
                let t1 = gcm.seal(&iv, Aad::pieces(&[&aad]), &mut ours);
                let t2 = reference(&key, &iv, &aad, &mut theirs);
                assert_eq!((t1, &ours), (t2, &theirs), "n={n} m={m}");
                // GMAC over aad ‖ pt equals the reference with an empty plaintext.
                let mut joined = aad.clone();
                joined.extend_from_slice(&pt);
                assert_eq!(
                    gcm.gmac(&iv, Aad::pieces(&[&aad, &pt])),
                    reference(&key, &iv, &joined, &mut [])
                );
                gcm.open(&iv, Aad::pieces(&[&aad]), &mut ours, &t1).unwrap();
                assert_eq!(ours, pt);
            }
        }
    }

    /// The streaming paths (the only ones on the meter) on the short
    /// messages the one-pass paths take on hosts, the host's way and the
    /// meter's (partial blocks octet by octet): the same frames and tags
    /// as aes-gcm, GMAC over SC ‖ AK ‖ pieces as over the joined octets,
    /// and a wrong tag refused with the buffer untouched.
    #[test]
    fn streaming_paths_match_aes_gcm_on_short_messages() {
        let key = [7u8; 16];
        let iv = [9u8; 12];
        let gcm = Gcm::new(&key);
        let sc = 0x10u8;
        let ak: [u8; 16] = core::array::from_fn(|i| (i as u8).wrapping_mul(29).wrapping_add(3));
        for meter in [false, true] {
            with_meter_ctr(meter, || streaming_paths_case(&gcm, &key, &iv, sc, &ak));
        }
    }

    fn streaming_paths_case(gcm: &Gcm, key: &[u8; 16], iv: &[u8; 12], sc: u8, ak: &[u8; 16]) {
        let (key, iv) = (*key, *iv);
        for n in 0..=96usize {
            for m in [0usize, 1, 17, 31, 48] {
                let aad: Vec<u8> = (0..m).map(|i| i as u8).collect();
                let pt: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
                let mut ours = pt.clone();
                let mut theirs = pt.clone();
                let t1 = gcm.seal_stream(&iv, &Aad::pieces(&[&aad]), None, &mut ours);
                let t2 = reference(&key, &iv, &aad, &mut theirs);
                assert_eq!((t1, &ours), (t2, &theirs), "n={n} m={m}");
                let mut joined = aad.clone();
                joined.extend_from_slice(&pt);
                assert_eq!(
                    gcm.gmac_stream(&iv, &Aad::pieces(&[&aad, &pt])),
                    reference(&key, &iv, &joined, &mut [])
                );
                let mut sc_ak_joined = vec![sc];
                sc_ak_joined.extend_from_slice(ak);
                sc_ak_joined.extend_from_slice(&joined);
                assert_eq!(
                    gcm.gmac_stream(&iv, &Aad::suite0(sc, ak, &[&aad, &pt])),
                    reference(&key, &iv, &sc_ak_joined, &mut []),
                    "SC || AK, n={n} m={m}"
                );
                let mut bad = t1;
                bad[0] ^= 1;
                let ct = ours.clone();
                assert!(
                    gcm.open_stream(&iv, &Aad::pieces(&[&aad]), &mut ours, &bad)
                        .is_err()
                );
                assert_eq!(ours, ct);
                gcm.open_stream(&iv, &Aad::pieces(&[&aad]), &mut ours, &t1)
                    .unwrap();
                assert_eq!(ours, pt);
            }
        }
    }

    /// A context with SC ‖ AK's first block folded in (as a `Suite0`
    /// holds its keys), through every path, the host's way and the
    /// meter's: for the two SC octets folded, the unicast and the broadcast
    /// base, and SC octets not folded (hashed from their octets), with the
    /// AAD pieces after SC ‖ AK empty or not and payloads of 0 to 80
    /// octets, seal, open and GMAC equal aes-gcm over SC ‖ AK ‖ pieces; a
    /// wrong tag is refused with the buffer untouched. A context folded for
    /// another SC base gives the same results (the fold is only a shortcut).
    #[test]
    fn folded_sc_ak_matches_aes_gcm() {
        let key = [0x5Au8; 16];
        let iv = [0xC3u8; 12];
        let ak: [u8; 16] = core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
        let plain = Gcm::new(&key);
        for base in [0x10u8, 0x50] {
            let mut folded = Gcm::new(&key);
            folded.fold_sc_ak(base, &ak);
            for sc in [0x10u8, 0x30, 0x50, 0x70, 0x20, 0x11, 0x90] {
                assert_eq!(
                    folded.folded(&Aad::suite0(sc, &ak, &[])).is_some(),
                    sc & !SC_ENCRYPTION == base,
                    "base {base:#04x}, SC {sc:#04x}"
                );
                for meter in [false, true] {
                    with_meter_ctr(meter, || folded_case(&folded, &plain, &key, &iv, sc, &ak));
                }
            }
        }
    }

    fn folded_case(
        folded: &Gcm,
        plain: &Gcm,
        key: &[u8; 16],
        iv: &[u8; 12],
        sc: u8,
        ak: &[u8; 16],
    ) {
        let (key, iv) = (*key, *iv);
        let mut sc_ak = vec![sc];
        sc_ak.extend_from_slice(ak);
        for m in [0usize, 1, 15, 16, 31] {
            let fields: Vec<u8> = (0..m).map(|i| (i * 5 + 1) as u8).collect();
            for n in (0..=80usize).step_by(7).chain([16, 32, 64]) {
                let what = std::format!("SC {sc:#04x}, fields {m}, payload {n}");
                let pt: Vec<u8> = (0..n).map(|i| (i * 3 + n) as u8).collect();
                let mut aad = sc_ak.clone();
                aad.extend_from_slice(&fields);
                let mut want = pt.clone();
                let want_tag = reference(&key, &iv, &aad, &mut want);
                let pieces: [&[u8]; 1] = [&fields];
                let a = Aad::suite0(sc, ak, &pieces);
                let mut ours = pt.clone();
                assert_eq!(folded.seal(&iv, a, &mut ours), want_tag, "seal: {what}");
                assert_eq!(ours, want, "seal: {what}");
                let mut ours = pt.clone();
                assert_eq!(
                    folded.seal_stream(&iv, &a, None, &mut ours),
                    want_tag,
                    "{what}"
                );
                assert_eq!(ours, want, "seal_stream: {what}");
                let mut back = want.clone();
                folded.open_stream(&iv, &a, &mut back, &want_tag).unwrap();
                assert_eq!(back, pt, "open_stream: {what}");
                let mut back = want.clone();
                folded.open(&iv, a, &mut back, &want_tag).unwrap();
                assert_eq!(back, pt, "open: {what}");
                let mut bad = want_tag;
                bad[n % TAG_LEN] ^= 0x01;
                let mut kept = want.clone();
                assert!(
                    folded.open_stream(&iv, &a, &mut kept, &bad).is_err(),
                    "{what}"
                );
                assert_eq!(kept, want, "refused: {what}");
                // GMAC over SC ‖ AK ‖ fields ‖ payload (authentication only).
                let mut joined = aad.clone();
                joined.extend_from_slice(&pt);
                let gmac_want = reference(&key, &iv, &joined, &mut []);
                let rest: [&[u8]; 2] = [&fields, &pt];
                let g = Aad::suite0(sc, ak, &rest);
                assert_eq!(
                    folded.gmac_stream(&iv, &g),
                    gmac_want,
                    "gmac_stream: {what}"
                );
                assert_eq!(folded.gmac(&iv, g), gmac_want, "gmac: {what}");
                assert_eq!(plain.gmac_stream(&iv, &g), gmac_want, "unfolded: {what}");
            }
        }
    }

    /// The fold's contract: a folded context used with another AK is a
    /// bug, caught by the debug check rather than giving a wrong tag.
    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "another AK")]
    fn folded_context_refuses_another_ak_in_debug_builds() {
        let mut gcm = Gcm::new(&[1; 16]);
        gcm.fold_sc_ak(0x10, &[2; 16]);
        let _ = gcm.gmac_stream(&[3; 12], &Aad::suite0(0x10, &[4; 16], &[&[5; 16]]));
    }

    /// The meter's batched counter mode, which hosts build for this test
    /// only, against aes-gcm at its batch boundaries: in place and from a
    /// source, the hooks seeing E(K, J0) first and the output after, and a
    /// refusing first hook leaving the buffer as it was.
    #[test]
    fn batched_counter_mode_matches_aes_gcm() {
        let key = [7u8; 16];
        let iv = [9u8; 12];
        let gcm = Gcm::new(&key);
        // With an empty AAD and plaintext the tag is E(K, J0)'s first 96 bits.
        let ek_j0 = reference(&key, &iv, &[], &mut []);
        // Both AES groupings: the host's single blocks and the meter's
        // pairs, whose last batch is rounded up to whole pairs.
        for (meter, n) in [false, true].into_iter().flat_map(|m| {
            [
                0, 1, 15, 16, 17, 31, 32, 33, 255, 256, 257, 271, 272, 273, 287, 288, 289, 512,
                559, 560, 561, 4096, 4097,
            ]
            .map(|n| (m, n))
        }) {
            METER_CTR.with(|m| m.set(meter));
            let pt: Vec<u8> = (0..n).map(|i| (i * 5) as u8).collect();
            let mut theirs = pt.clone();
            reference(&key, &iv, &[], &mut theirs);
            let mut ours = pt.clone();
            let mut mask = None;
            let mut seen = Vec::new();
            gcm.ctr_batched(
                &iv,
                None,
                &mut ours,
                |m| {
                    mask = Some(truncated_xor(m, &ZERO_BLOCK));
                    Ok(())
                },
                |chunk| seen.extend_from_slice(chunk),
            )
            .unwrap();
            assert_eq!(ours, theirs, "n={n}");
            assert_eq!(seen, theirs, "n={n}");
            assert_eq!(mask, Some(ek_j0), "n={n}");
            let mut from = vec![0xEEu8; n];
            gcm.ctr_batched(&iv, Some(&pt), &mut from, |_| Ok(()), |_| {})
                .unwrap();
            assert_eq!(from, theirs, "n={n}");
            let mut kept = pt.clone();
            let mut calls = 0;
            assert!(
                gcm.ctr_batched(&iv, None, &mut kept, |_| Err(AuthError), |_| calls += 1)
                    .is_err()
            );
            assert_eq!((kept, calls), (pt, 0), "n={n}");
            METER_CTR.with(|m| m.set(false));
        }
    }

    /// The meter's AES path (parallel groups only, a last partial group
    /// through a scratch group) against the `aes` crate's `encrypt_blocks`,
    /// for every count across several groups of the backend's width.
    #[test]
    fn par_blocks_only_matches_encrypt_blocks() {
        let aes = Aes128Enc::new(&[0x5Au8; 16].into());
        for n in 0..=40usize {
            let blocks: Vec<Block> = (0..n)
                .map(|i| Block::from([(i * 7 + 1) as u8; 16]))
                .collect();
            let mut theirs = blocks.clone();
            aes.encrypt_blocks(&mut theirs);
            let mut ours = blocks.clone();
            aes.encrypt_with_backend(ParBlocksOnly { blocks: &mut ours });
            assert_eq!(ours, theirs, "n={n}");
            if n > 0 {
                assert_ne!(ours, blocks, "n={n}");
            }
        }
    }

    std::thread_local! {
        /// Whether [`Gcm::ctr`] runs the meter's batched counter mode, and
        /// every AES call the meter's parallel-blocks-only path, on this
        /// thread (64-bit hosts; 32-bit targets always do).
        pub(super) static METER_CTR: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
    }

    /// Runs `f` with the meter's counter mode (`meter`) or the host's.
    fn with_meter_ctr<R>(meter: bool, f: impl FnOnce() -> R) -> R {
        METER_CTR.with(|m| m.set(meter));
        let r = f();
        METER_CTR.with(|m| m.set(false));
        r
    }

    /// `lengths` (sorted) as inclusive ranges, "481-496, 1000".
    fn ranges(lengths: &[usize]) -> std::string::String {
        let mut out: Vec<std::string::String> = Vec::new();
        let mut i = 0;
        while i < lengths.len() {
            let mut j = i;
            while j + 1 < lengths.len() && lengths[j + 1] == lengths[j] + 1 {
                j += 1;
            }
            out.push(if i == j {
                std::format!("{}", lengths[i])
            } else {
                std::format!("{}-{}", lengths[i], lengths[j])
            });
            i = j + 1;
        }
        out.join(", ")
    }

    /// SC ‖ AK as the short path stages it, with the host's copy and with
    /// the meter's word moves: an AK of distinct octets (so an octet
    /// misplaced shows), every payload length the short path takes, seal
    /// and GMAC equal aes-gcm's output and open takes it back.
    #[test]
    fn short_path_stages_sc_ak_octet_for_octet() {
        let key = [0x11u8; 16];
        let iv = [0x22u8; 12];
        let sc = 0x30u8;
        let ak: [u8; 16] = core::array::from_fn(|i| (i as u8).wrapping_mul(17).wrapping_add(1));
        let gcm = Gcm::new(&key);
        let r = Reference::new(&key.into());
        let mut sc_ak = vec![sc];
        sc_ak.extend_from_slice(&ak);
        for meter in [false, true] {
            with_meter_ctr(meter, || {
                for n in 0..=(STAGE - 3) * 16 {
                    let pt: Vec<u8> = (0..n).map(|i| (i * 31 + 7) as u8).collect();
                    let mut ct = pt.clone();
                    let tag = r
                        .encrypt_inout_detached(&iv.into(), &sc_ak, ct.as_mut_slice().into())
                        .unwrap();
                    let mut ours = pt.clone();
                    let t = gcm.seal(&iv, Aad::suite0(sc, &ak, &[]), &mut ours);
                    assert_eq!(ours, ct, "seal, meter {meter}, n {n}");
                    assert_eq!(t, tag.as_slice(), "seal tag, meter {meter}, n {n}");
                    let mut back = ct.clone();
                    let opened = gcm.open(&iv, Aad::suite0(sc, &ak, &[]), &mut back, &t);
                    assert_eq!(opened, Ok(()), "open, meter {meter}, n {n}");
                    assert_eq!(back, pt, "open, meter {meter}, n {n}");
                    let mut aad = sc_ak.clone();
                    aad.extend_from_slice(&pt);
                    let gmac = r
                        .encrypt_inout_detached(&iv.into(), &aad, (&mut [][..]).into())
                        .unwrap();
                    let rest: [&[u8]; 1] = [&pt];
                    let ours = gcm.gmac(&iv, Aad::suite0(sc, &ak, &rest));
                    assert_eq!(ours, gmac.as_slice(), "gmac, meter {meter}, n {n}");
                }
            });
        }
    }

    /// Every payload length from 0 to 1100 octets, with an empty AAD and
    /// with AADs of 1, 16, 17 (as pieces and as suite 0's SC ‖ AK), 31 and
    /// 33 octets, through the short path and both counter modes (the
    /// host's and the meter's batched one), against aes-gcm both ways:
    /// seal in place and from a separate source equals aes-gcm's
    /// ciphertext and tag; open takes aes-gcm's output back to the
    /// plaintext, and aes-gcm opens ours; a flipped tag bit is refused with
    /// the buffer left as it was. Lists every failing length.
    #[test]
    fn every_length_to_1100_with_and_without_aad_matches_aes_gcm() {
        let key = [0x3Cu8; 16];
        let iv = [0xA5u8; 12];
        let gcm = Gcm::new(&key);
        let r = Reference::new(&key.into());
        let sc = 0x30u8;
        let ak = [0xD0u8; 16];
        let bytes: Vec<u8> = (0..33).map(|i| (i * 29 + 3) as u8).collect();
        let mut suite0_aad = vec![sc];
        suite0_aad.extend_from_slice(&ak);
        // (label, AAD octets, whether to pass them as SC ‖ AK)
        let aads: [(&str, &[u8], bool); 7] = [
            ("empty", &[], false),
            ("1", &bytes[..1], false),
            ("16", &bytes[..16], false),
            ("17", &bytes[..17], false),
            ("SC||AK", &suite0_aad, true),
            ("31", &bytes[..31], false),
            ("33", &bytes[..33], false),
        ];
        let mut failing = Vec::new();
        let mut cases = 0usize;
        for meter in [false, true] {
            with_meter_ctr(meter, || {
                for &(label, aad_bytes, as_suite0) in &aads {
                    let pieces: [&[u8]; 1] = [aad_bytes];
                    let aad = if as_suite0 {
                        Aad::suite0(sc, &ak, &[])
                    } else {
                        Aad::pieces(&pieces)
                    };
                    let mut bad_lengths = Vec::new();
                    for n in 0..=1100usize {
                        cases += 1;
                        let pt: Vec<u8> = (0..n).map(|i| (i * 13 + n) as u8).collect();
                        let mut want = pt.clone();
                        let want_tag: [u8; 12] = r
                            .encrypt_inout_detached(
                                &iv.into(),
                                aad_bytes,
                                want.as_mut_slice().into(),
                            )
                            .unwrap()
                            .into();
                        let mut ok = true;
                        let mut ours = pt.clone();
                        let tag = gcm.seal(&iv, aad, &mut ours);
                        ok &= tag == want_tag && ours == want;
                        let mut from = vec![0xEEu8; n];
                        let tag_from = gcm.seal_from(&iv, aad, Some(&pt), &mut from);
                        ok &= tag_from == want_tag && from == want;
                        let mut opened = want.clone();
                        ok &= gcm.open(&iv, aad, &mut opened, &want_tag).is_ok() && opened == pt;
                        let mut back = ours.clone();
                        ok &= r
                            .decrypt_inout_detached(
                                &iv.into(),
                                aad_bytes,
                                back.as_mut_slice().into(),
                                &tag.into(),
                            )
                            .is_ok()
                            && back == pt;
                        let mut bad = want_tag;
                        bad[n % TAG_LEN] ^= 1 << (n % 8);
                        let mut kept = want.clone();
                        ok &= gcm.open(&iv, aad, &mut kept, &bad).is_err() && kept == want;
                        if !ok {
                            bad_lengths.push(n);
                        }
                    }
                    if !bad_lengths.is_empty() {
                        let path = if meter { "meter" } else { "host" };
                        failing.push(std::format!(
                            "{path} counter mode, AAD {label}: payload lengths {}",
                            ranges(&bad_lengths)
                        ));
                    }
                }
            });
        }
        assert_eq!(cases, 2 * 7 * 1101);
        assert!(
            failing.is_empty(),
            "differs from aes-gcm:\n{}",
            failing.join("\n")
        );
    }

    /// Wycheproof's AES-GCM vectors (vectors/aes_gcm_test.json; source,
    /// version and licence in vectors/README.md) with a 128-bit key and a
    /// 96-bit IV, through the host's and the meter's counter modes. The
    /// file's tags are 128 bits; suite 0's is their leftmost 96 (SP 800-38D
    /// §5.2.1.2). Valid cases: seal, in place and from a source, with the
    /// AAD whole and in two pieces, gives the ciphertext and the tag's first
    /// 96 bits, and open gives the plaintext. Invalid cases whose first 96
    /// tag bits or ciphertext differ from aes-gcm's: open refuses and the
    /// buffer holds the ciphertext as received. Invalid cases that change
    /// only tag bits 96..128 carry a correct 96-bit tag: open accepts them,
    /// and they are counted apart. Other key and IV sizes are counted as
    /// not applicable.
    #[test]
    fn wycheproof_aes_gcm_128_bit_key_96_bit_iv() {
        let file: serde_json::Value =
            serde_json::from_str(include_str!("../vectors/aes_gcm_test.json")).unwrap();
        assert_eq!(file["algorithm"], "AES-GCM");
        let (mut valid, mut refused, mut beyond_96_bits, mut not_applicable) = (0, 0, 0, 0);
        let mut total = 0;
        for group in file["testGroups"].as_array().unwrap() {
            let cases = group["tests"].as_array().unwrap();
            total += cases.len();
            if group["keySize"] != 128 || group["ivSize"] != 96 {
                not_applicable += cases.len();
                continue;
            }
            assert!(group["tagSize"].as_u64().unwrap() >= 96);
            for case in cases {
                let id = &case["tcId"];
                let field = |f: &str| hex(case[f].as_str().unwrap());
                let key: [u8; 16] = field("key").try_into().unwrap();
                let iv: [u8; 12] = field("iv").try_into().unwrap();
                let (aad, msg, ct) = (field("aad"), field("msg"), field("ct"));
                let tag: [u8; TAG_LEN] = field("tag")[..TAG_LEN].try_into().unwrap();
                let gcm = Gcm::new(&key);
                let (a1, a2) = aad.split_at(aad.len() / 2);
                match case["result"].as_str().unwrap() {
                    "valid" => {
                        for meter in [false, true] {
                            with_meter_ctr(meter, || {
                                let mut buf = msg.clone();
                                assert_eq!(
                                    gcm.seal(&iv, Aad::pieces(&[&aad]), &mut buf),
                                    tag,
                                    "{id}"
                                );
                                assert_eq!(buf, ct, "{id}");
                                let mut from = vec![0xEEu8; msg.len()];
                                let t = gcm.seal_from(
                                    &iv,
                                    Aad::pieces(&[a1, a2]),
                                    Some(&msg),
                                    &mut from,
                                );
                                assert_eq!((t, &from), (tag, &ct), "{id}");
                                gcm.open(&iv, Aad::pieces(&[&aad]), &mut buf, &tag).unwrap();
                                assert_eq!(buf, msg, "{id}");
                                let mut buf = ct.clone();
                                gcm.open(&iv, Aad::pieces(&[a1, a2]), &mut buf, &tag)
                                    .unwrap();
                                assert_eq!(buf, msg, "{id}");
                            });
                        }
                        valid += 1;
                    }
                    "invalid" => {
                        // aes-gcm's full 128-bit tag over the same inputs
                        // says whether the change reaches the first 96 bits.
                        let mut expected_ct = msg.clone();
                        let full = aes_gcm::Aes128Gcm::new(&key.into())
                            .encrypt_inout_detached(
                                &iv.into(),
                                &aad,
                                expected_ct.as_mut_slice().into(),
                            )
                            .unwrap();
                        let must_refuse = expected_ct != ct || full[..TAG_LEN] != tag;
                        for meter in [false, true] {
                            with_meter_ctr(meter, || {
                                let mut buf = ct.clone();
                                let opened = gcm.open(&iv, Aad::pieces(&[&aad]), &mut buf, &tag);
                                if must_refuse {
                                    assert!(opened.is_err(), "{id}: accepted");
                                    assert_eq!(buf, ct, "{id}: buffer changed");
                                } else {
                                    assert!(opened.is_ok(), "{id}");
                                    assert_eq!(buf, msg, "{id}");
                                }
                            });
                        }
                        if must_refuse {
                            refused += 1;
                        } else {
                            beyond_96_bits += 1;
                        }
                    }
                    other => panic!("{id}: unexpected result {other}"),
                }
            }
        }
        std::println!(
            "Wycheproof aes_gcm_test.json: {valid} valid run, {refused} invalid refused, \
             {beyond_96_bits} invalid only past the 96-bit tag (accepted), \
             {not_applicable} not applicable (key or IV size), of {total}"
        );
        assert_eq!(total as u64, file["numberOfTests"].as_u64().unwrap());
        assert_eq!(
            (valid, refused, beyond_96_bits, not_applicable),
            (40, 20, 7, 249)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn matches_aes_gcm(key: [u8; 16], iv: [u8; 12],
                           aad in proptest::collection::vec(any::<u8>(), 0..300),
                           pt in proptest::collection::vec(any::<u8>(), 0..5000),
                           cut1 in 0usize..300, cut2 in 0usize..300) {
            let gcm = Gcm::new(&key);
            let c1 = cut1.min(aad.len());
            let c2 = cut2.min(aad.len()).max(c1);
            let mut ours = pt.clone();
            let mut theirs = pt.clone();
            let t = gcm.seal(&iv, Aad::pieces(&[&aad[..c1], &aad[c1..c2], &aad[c2..]]), &mut ours);
            prop_assert_eq!(t, reference(&key, &iv, &aad, &mut theirs));
            prop_assert_eq!(&ours, &theirs);
            let mut ks = pt.clone();
            gcm.apply_keystream(&iv, &mut ks);
            prop_assert_eq!(&ks, &theirs);
            // Reading the plaintext from a separate source gives the same.
            let mut from = vec![0xEEu8; pt.len()];
            prop_assert_eq!(gcm.seal_from(&iv, Aad::pieces(&[&aad]), Some(&pt), &mut from), t);
            prop_assert_eq!(&from, &theirs);
            let mut from = vec![0x11u8; pt.len()];
            gcm.apply_keystream_from(&iv, Some(&pt), &mut from);
            prop_assert_eq!(&from, &theirs);
            // The suite-0 prefix SC ‖ AK, fed with fixed-size moves, equals
            // the same octets fed as pieces.
            let ak: [u8; 16] = key;
            let mut joined = vec![iv[0]];
            joined.extend_from_slice(&ak);
            joined.extend_from_slice(&aad);
            let mut a = pt.clone();
            let mut b = pt.clone();
            prop_assert_eq!(
                gcm.seal(&iv, Aad::suite0(iv[0], &ak, &[&aad[..c1], &aad[c1..]]), &mut a),
                reference(&key, &iv, &joined, &mut b)
            );
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(
                gcm.gmac(&iv, Aad::suite0(iv[0], &ak, &[&aad, &pt])),
                {
                    let mut j = joined.clone();
                    j.extend_from_slice(&pt);
                    reference(&key, &iv, &j, &mut [])
                }
            );
            // A wrong tag leaves the buffer unchanged.
            let mut bad = t;
            bad[0] ^= 0x80;
            prop_assert!(gcm.open(&iv, Aad::pieces(&[&aad]), &mut ours, &bad).is_err());
            prop_assert_eq!(&ours, &theirs);
        }
    }
}
