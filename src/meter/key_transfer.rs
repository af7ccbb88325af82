//! Security Setup key_transfer, both sides (D-06, R-12, R-14).
//!
//! * **Sender** (DCO, software tools): [`KeyTransfer::wrap_new_keys`] wraps
//!   each new key under the device's *current* Master Key (RFC 3394,
//!   GB 9.2.3.3.7.7 and 9.2.5.1), a new Master Key included, and
//!   [`SecuritySetupMethod::emit_key_transfer_request`] lays out the
//!   action-request, which then goes through [`Suite0::protect`].
//! * **Meter**: after [`Suite0::unprotect`] and
//!   [`parse_key_transfer_request`], [`stage`] unwraps every entry and
//!   [`StagedKeys::install`] puts them in place.
//!
//! # When the new keys take effect (docs/design.md, "When new keys apply", Q6)
//!
//! Installation has two phases, so that the keys change at one defined
//! point and only if every entry is good:
//!
//! 1. [`stage`] unwraps **every** entry under the Master Key that is current
//!    when the request arrives. If any entry fails its RFC 3394 integrity
//!    check the result is [`Error::Auth`], the keys unwrapped so far are
//!    wiped, and nothing changes: all or nothing (D-06).
//! 2. The meter builds its action-response and protects it under the
//!    **old** keys, as Gurux's servers do
//!    (§5.4, §14 item 7): the client, which still holds both generations,
//!    can read the answer.
//! 3. [`StagedKeys::install`] then replaces exactly the keys the transfer
//!    carried. It cannot fail, so there is no state with half the keys
//!    replaced. The new keys protect the next APDU (R-14: active as soon
//!    as the meter has accepted the transfer).
//!
//! If the response cannot be sent, the meter may still install (the client
//! recovers by trying the new keys, §5.4) or drop the [`StagedKeys`]; that
//! is the firmware's policy, not this crate's.
//!
//! # Master Key rotation
//!
//! A new Master Key is itself wrapped under the current one, and applies to
//! **later** transfers. All entries of one transfer are unwrapped under the
//! Master Key current when it arrived, whatever their order, even when the
//! same transfer carries a new Master Key. Rotating the Master Key last, one key
//! per exchange, is the safer order (docs/design.md, "When new keys apply"); key id 3 may be refused
//! by version-0 objects (Q5).
//!
//! # Invocation counters after a key change (GB 9.2.3.3.7.3; docs/design.md, "After a key change", Q1)
//!
//! * A **sender** keeps counting: its [`SendCounter`](crate::counter::SendCounter)
//!   is never reset or moved backwards by a key change. A monotonic counter
//!   is unique under the new key too, so no IV repeats.
//! * A **receiver** starts a fresh [`ReplayGuard`](crate::counter::ReplayGuard)
//!   (floor 0, [`ReplayGuard::new`](crate::counter::ReplayGuard::new)) for
//!   each replaced encryption key, so a peer that resets its counters as
//!   the Green Book is quoted to require is still accepted.
//!   [`StagedKeys::replaces`] says which keys changed. A new AK changes
//!   every tag, so frames from before it cannot verify afterwards and
//!   resetting the guards it covers is safe too (whether a peer resets its
//!   counters on an AK-only change is not known). Never reset a guard when
//!   only the Master Key changed: the old frames would verify again.
//!
//! # The dedicated key (Q6)
//!
//! A key_transfer does not touch an active dedicated key: it stays in the
//! association's [`Suite0`] until the association ends, as in Gurux. Build a
//! new context with [`SecuritySetupKeys::suite0`] for the next association
//! (or right after install, re-adding the dedicated key, if the firmware
//! keeps the association).
//!
//! # What binds an entry to its role
//!
//! RFC 3394 does not bind the key id: a wrapped value moved to another entry
//! still unwraps. The suite-0 protection of the action-request is what makes
//! the key ids authentic, so a meter must accept key_transfer only in an
//! authenticated request (the security policy, D-07).
//!
//! # Example
//!
//! ```
//! use dlms_sec::key::{AuthenticationKey, GlobalUnicastEncryptionKey, MasterKey};
//! use dlms_sec::meter::key_transfer::{NewKeys, SecuritySetupKeys, stage};
//! use dlms_sec::wire::{KeyTransfer, SecuritySetupMethod, parse_key_transfer_request};
//! # fn main() -> dlms_sec::Result<()> {
//! // DCO: wrap a new AK under the device's current MK.
//! let mk = MasterKey::from_bytes([0x0F; 16]);
//! let new_ak = AuthenticationKey::from_bytes([0xA5; 16]);
//! let keys = NewKeys { ak: Some(&new_ak), ..NewKeys::default() };
//! let transfer = KeyTransfer::wrap_new_keys(&mk, keys)?;
//! let method = SecuritySetupMethod::default();
//! let mut request = [0u8; 128];
//! let n = method.emit_key_transfer_request(&transfer, &mut request)?;
//! // ... protected with Suite0::protect, sent, unprotected by the meter ...
//!
//! // Meter: parse, stage, answer under the old keys, then install.
//! let mut meter_mk = MasterKey::from_bytes([0x0F; 16]);
//! let mut meter_keys = SecuritySetupKeys::new(
//!     GlobalUnicastEncryptionKey::from_bytes([1; 16]),
//!     AuthenticationKey::from_bytes([2; 16]),
//! );
//! let (_, received) = parse_key_transfer_request(&request[..n])?;
//! let staged = stage(&meter_mk, &received)?;
//! let _old = meter_keys.suite0(); // protects the action-response
//! staged.install(&mut meter_mk, &mut meter_keys);
//! let _new = meter_keys.suite0(); // protects everything after it
//! # Ok(()) }
//! ```

use core::fmt;

use crate::error::{Error, KeyError, Result};
use crate::key::wrap::{self, KeyId, TransferableKey, WrappedKey};
use crate::key::{
    AuthenticationKey, GlobalBroadcastEncryptionKey, GlobalUnicastEncryptionKey, MasterKey,
};
use crate::suite0::Suite0;
use crate::wire::KeyTransfer;
#[cfg(doc)]
use crate::wire::{SecuritySetupMethod, parse_key_transfer_request};

/// The keys a sender wants to transfer; `None` leaves a key as it is.
#[derive(Clone, Copy, Debug, Default)]
pub struct NewKeys<'a> {
    /// New global unicast encryption key (key id 0).
    pub guek: Option<&'a GlobalUnicastEncryptionKey>,
    /// New global broadcast encryption key (key id 1).
    pub gbek: Option<&'a GlobalBroadcastEncryptionKey>,
    /// New authentication key (key id 2).
    pub ak: Option<&'a AuthenticationKey>,
    /// New Master Key (key id 3); it applies to later transfers only.
    pub mk: Option<&'a MasterKey>,
}

impl KeyTransfer {
    /// Wraps every key in `keys` under the current Master Key `mk` (a new
    /// Master Key included) into one transfer, entries in key-id order.
    ///
    /// # Errors
    /// [`Error::Misuse`] when `keys` holds no key.
    pub fn wrap_new_keys(mk: &MasterKey, keys: NewKeys<'_>) -> Result<Self> {
        let mut t = Self::new();
        if let Some(k) = keys.guek {
            t.push_key(mk, k)?;
        }
        if let Some(k) = keys.gbek {
            t.push_key(mk, k)?;
        }
        if let Some(k) = keys.ak {
            t.push_key(mk, k)?;
        }
        if let Some(k) = keys.mk {
            t.push_key(mk, k)?;
        }
        if t.is_empty() {
            return Err(Error::Misuse("a key_transfer carries at least one key"));
        }
        Ok(t)
    }

    /// Wraps `key` under the current Master Key `mk` and appends it.
    ///
    /// # Errors
    /// [`KeyError::DuplicateKeyId`] when the transfer already carries a key
    /// of this role; the transfer is unchanged.
    pub fn push_key<K: TransferableKey>(&mut self, mk: &MasterKey, key: &K) -> Result<()> {
        self.push(K::KEY_ID, wrap::wrap(mk, key))
    }
}

/// One client's keys in a meter's Security Setup object: GUEK, optional
/// GBEK, AK. The device's Master Key is kept separately (it is device-wide).
///
/// Not `Clone`; `Debug` shows only whether a broadcast key is held; every
/// key is wiped on drop.
pub struct SecuritySetupKeys {
    guek: GlobalUnicastEncryptionKey,
    gbek: Option<GlobalBroadcastEncryptionKey>,
    ak: AuthenticationKey,
}

impl fmt::Debug for SecuritySetupKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecuritySetupKeys")
            .field("broadcast_key", &self.gbek.is_some())
            .finish_non_exhaustive()
    }
}

impl SecuritySetupKeys {
    /// A client's unicast encryption and authentication keys, without a
    /// broadcast key.
    #[must_use]
    pub const fn new(guek: GlobalUnicastEncryptionKey, ak: AuthenticationKey) -> Self {
        Self {
            guek,
            gbek: None,
            ak,
        }
    }

    /// Adds (or replaces) the broadcast key.
    #[must_use]
    pub fn with_broadcast_key(mut self, gbek: GlobalBroadcastEncryptionKey) -> Self {
        self.gbek = Some(gbek);
        self
    }

    /// Whether a broadcast key is held.
    #[must_use]
    pub const fn has_broadcast_key(&self) -> bool {
        self.gbek.is_some()
    }

    /// A suite-0 protection context over these keys (with the broadcast
    /// key when one is held; no dedicated key).
    #[must_use]
    pub fn suite0(&self) -> Suite0 {
        let s = Suite0::new(&self.guek, &self.ak);
        match &self.gbek {
            Some(gbek) => s.with_broadcast_key(gbek),
            None => s,
        }
    }

    /// The global unicast encryption key.
    #[allow(dead_code, reason = "for crate-internal contexts and tests")]
    pub(crate) const fn guek(&self) -> &GlobalUnicastEncryptionKey {
        &self.guek
    }

    /// The global broadcast encryption key, if held.
    #[allow(dead_code, reason = "for crate-internal contexts and tests")]
    pub(crate) const fn gbek(&self) -> Option<&GlobalBroadcastEncryptionKey> {
        self.gbek.as_ref()
    }

    /// The authentication key.
    #[allow(dead_code, reason = "for crate-internal contexts and tests")]
    pub(crate) const fn ak(&self) -> &AuthenticationKey {
        &self.ak
    }
}

/// Every key of one key_transfer, unwrapped and waiting to be installed.
///
/// Not `Clone`; `Debug` shows only which keys are held; every key is wiped
/// when this is dropped without being installed.
#[must_use = "staged keys take effect only when installed"]
pub struct StagedKeys {
    guek: Option<GlobalUnicastEncryptionKey>,
    gbek: Option<GlobalBroadcastEncryptionKey>,
    ak: Option<AuthenticationKey>,
    mk: Option<MasterKey>,
}

impl fmt::Debug for StagedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StagedKeys")
            .field("guek", &self.guek.is_some())
            .field("gbek", &self.gbek.is_some())
            .field("ak", &self.ak.is_some())
            .field("mk", &self.mk.is_some())
            .finish()
    }
}

/// Unwraps `wrapped` into an empty slot; a second key for the slot is
/// refused.
fn fill<K: TransferableKey>(
    slot: &mut Option<K>,
    mk: &MasterKey,
    wrapped: &WrappedKey,
    id: KeyId,
) -> Result<()> {
    if slot.is_some() {
        return Err(Error::Key(KeyError::DuplicateKeyId(id.code())));
    }
    wrap::unwrap_into(mk, wrapped, slot)
}

/// Unwraps every entry of `transfer` under `mk`, the Master Key current
/// when the transfer arrived (phase 1 of the install; see the module docs).
///
/// Nothing is changed: the caller protects its action-response under the
/// old keys, then calls [`StagedKeys::install`].
///
/// # Errors
/// * [`Error::Auth`] when any entry fails the RFC 3394 integrity check
///   (wrong Master Key, corrupted value);
/// * [`KeyError::DuplicateKeyId`] when a key id repeats (a parsed or
///   pushed [`KeyTransfer`] never has one);
/// * [`Error::Misuse`] for a transfer without entries.
///
/// On error every key unwrapped so far is wiped and none is returned.
pub fn stage(mk: &MasterKey, transfer: &KeyTransfer) -> Result<StagedKeys> {
    if transfer.is_empty() {
        return Err(Error::Misuse("a key_transfer carries at least one key"));
    }
    // Dropping `staged` on an early return wipes what it holds.
    let mut staged = StagedKeys {
        guek: None,
        gbek: None,
        ak: None,
        mk: None,
    };
    for e in transfer.entries() {
        let w = &e.wrapped;
        match e.key_id {
            KeyId::GlobalUnicastEncryption => {
                fill(&mut staged.guek, mk, w, e.key_id)?;
            }
            KeyId::GlobalBroadcastEncryption => {
                fill(&mut staged.gbek, mk, w, e.key_id)?;
            }
            KeyId::Authentication => {
                fill(&mut staged.ak, mk, w, e.key_id)?;
            }
            KeyId::Master => {
                fill(&mut staged.mk, mk, w, e.key_id)?;
            }
        }
    }
    Ok(staged)
}

impl StagedKeys {
    /// Whether installing replaces the key with this id (a receiver starts
    /// a fresh replay guard for each replaced encryption key).
    #[must_use]
    pub const fn replaces(&self, key_id: KeyId) -> bool {
        match key_id {
            KeyId::GlobalUnicastEncryption => self.guek.is_some(),
            KeyId::GlobalBroadcastEncryption => self.gbek.is_some(),
            KeyId::Authentication => self.ak.is_some(),
            KeyId::Master => self.mk.is_some(),
        }
    }

    /// Phase 2: replaces exactly the keys the transfer carried, after the
    /// action-response has been protected under the old keys. The replaced
    /// keys are wiped. Cannot fail.
    ///
    /// `mk` and `keys` must be the Master Key the transfer was staged under
    /// and the keys of the Security Setup object the request addressed
    /// (normally the sending client's own). The Master Key is device-wide:
    /// replacing it changes what every later transfer, for any client, is
    /// unwrapped under.
    pub fn install(self, mk: &mut MasterKey, keys: &mut SecuritySetupKeys) {
        let Self {
            guek,
            gbek,
            ak,
            mk: new_mk,
        } = self;
        if let Some(k) = guek {
            keys.guek = k;
        }
        if let Some(k) = gbek {
            keys.gbek = Some(k);
        }
        if let Some(k) = ak {
            keys.ak = k;
        }
        if let Some(k) = new_mk {
            *mk = k;
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]
mod tests {
    extern crate alloc;
    use alloc::format;

    use super::*;
    use crate::key::KEY_LEN;
    use crate::key::wrap::WrappedKey;
    use crate::wire::{SecuritySetupMethod, parse_key_transfer_request};

    const MK0: [u8; KEY_LEN] = [0x0F; KEY_LEN];

    fn old_keys(with_gbek: bool) -> SecuritySetupKeys {
        let k = SecuritySetupKeys::new(
            GlobalUnicastEncryptionKey::from_bytes([0x10; KEY_LEN]),
            AuthenticationKey::from_bytes([0x12; KEY_LEN]),
        );
        if with_gbek {
            k.with_broadcast_key(GlobalBroadcastEncryptionKey::from_bytes([0x11; KEY_LEN]))
        } else {
            k
        }
    }

    /// Bytes of the keys after install: GUEK, GBEK, AK, MK.
    fn snapshot(mk: &MasterKey, k: &SecuritySetupKeys) -> [Option<[u8; KEY_LEN]>; 4] {
        [
            Some(*k.guek().as_bytes()),
            k.gbek().map(|g| *g.as_bytes()),
            Some(*k.ak().as_bytes()),
            Some(*mk.as_bytes()),
        ]
    }

    /// Every non-empty subset of the four key ids, through the wire and
    /// both install phases, with and without an old broadcast key.
    #[test]
    fn every_combination_round_trips() {
        for with_gbek in [false, true] {
            for mask in 1u8..16 {
                let (guek, gbek_b, ak_b, mk_b) = (
                    [0xA0 | mask; 16],
                    [0xB0 | mask; 16],
                    [0xC0 | mask; 16],
                    [0xE0 | mask; 16],
                );
                let guek_k = GlobalUnicastEncryptionKey::from_bytes(guek);
                let gbek_k = GlobalBroadcastEncryptionKey::from_bytes(gbek_b);
                let ak_k = AuthenticationKey::from_bytes(ak_b);
                let mk_k = MasterKey::from_bytes(mk_b);
                let keys = NewKeys {
                    guek: (mask & 1 != 0).then_some(&guek_k),
                    gbek: (mask & 2 != 0).then_some(&gbek_k),
                    ak: (mask & 4 != 0).then_some(&ak_k),
                    mk: (mask & 8 != 0).then_some(&mk_k),
                };
                let mut mk = MasterKey::from_bytes(MK0);
                let t = KeyTransfer::wrap_new_keys(&mk, keys).unwrap();
                // Key-id order.
                assert!(t.entries().windows(2).all(|w| w[0].key_id < w[1].key_id));
                assert_eq!(t.len(), mask.count_ones() as usize);

                let mut apdu = [0u8; 140];
                let m = SecuritySetupMethod::default();
                let n = m.emit_key_transfer_request(&t, &mut apdu).unwrap();
                let (m2, t2) = parse_key_transfer_request(&apdu[..n]).unwrap();
                assert_eq!((m2, &t2), (m, &t));

                let mut k = old_keys(with_gbek);
                let before = snapshot(&mk, &k);
                let staged = stage(&mk, &t2).unwrap();
                for (bit, id) in KeyId::ALL.into_iter().enumerate() {
                    assert_eq!(staged.replaces(id), mask & (1 << bit) != 0);
                }
                // Staging changes nothing.
                assert_eq!(snapshot(&mk, &k), before);
                staged.install(&mut mk, &mut k);
                let after = snapshot(&mk, &k);
                let expected = [guek, gbek_b, ak_b, mk_b];
                for i in 0..4 {
                    if mask & (1 << i) != 0 {
                        assert_eq!(after[i], Some(expected[i]), "mask {mask} key {i}");
                    } else {
                        assert_eq!(after[i], before[i], "mask {mask} key {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn new_master_key_applies_to_later_transfers() {
        let mut mk = MasterKey::from_bytes(MK0);
        let mk1 = MasterKey::from_bytes([0x77; KEY_LEN]);
        let ak1 = AuthenticationKey::from_bytes([0x55; KEY_LEN]);
        // The MK comes first on the wire; the AK is still under the old MK.
        let mut t = KeyTransfer::new();
        t.push_key(&mk, &mk1).unwrap();
        t.push_key(&mk, &ak1).unwrap();
        let mut k = old_keys(false);
        stage(&mk, &t).unwrap().install(&mut mk, &mut k);
        assert_eq!(mk.as_bytes(), &[0x77; KEY_LEN]);
        assert_eq!(k.ak().as_bytes(), &[0x55; KEY_LEN]);
        // The same transfer again no longer unwraps: the MK moved on.
        assert_eq!(stage(&mk, &t).unwrap_err(), Error::Auth(crate::AuthError));
        // A later transfer under the new MK does.
        let ak2 = AuthenticationKey::from_bytes([0x66; KEY_LEN]);
        let t2 = KeyTransfer::wrap_new_keys(
            &mk,
            NewKeys {
                ak: Some(&ak2),
                ..NewKeys::default()
            },
        )
        .unwrap();
        stage(&mk, &t2).unwrap().install(&mut mk, &mut k);
        assert_eq!(k.ak().as_bytes(), &[0x66; KEY_LEN]);
    }

    #[test]
    fn corrupt_or_foreign_entries_install_nothing() {
        let mk = MasterKey::from_bytes(MK0);
        let (g, b, a, m) = (
            GlobalUnicastEncryptionKey::from_bytes([1; 16]),
            GlobalBroadcastEncryptionKey::from_bytes([2; 16]),
            AuthenticationKey::from_bytes([3; 16]),
            MasterKey::from_bytes([4; 16]),
        );
        let all = NewKeys {
            guek: Some(&g),
            gbek: Some(&b),
            ak: Some(&a),
            mk: Some(&m),
        };
        let t = KeyTransfer::wrap_new_keys(&mk, all).unwrap();
        for entry in 0..4 {
            for byte in 0..24 {
                let mut bad = KeyTransfer::new();
                for (i, e) in t.entries().iter().enumerate() {
                    let mut w = *e.wrapped.as_bytes();
                    if i == entry {
                        w[byte] ^= 0x01;
                    }
                    bad.push(e.key_id, WrappedKey::new(w)).unwrap();
                }
                assert_eq!(
                    stage(&mk, &bad).unwrap_err(),
                    Error::Auth(crate::AuthError),
                    "{entry} {byte}"
                );
            }
        }
        assert_eq!(
            stage(&MasterKey::from_bytes([0x0E; 16]), &t).unwrap_err(),
            Error::Auth(crate::AuthError)
        );
        assert!(matches!(
            stage(&mk, &KeyTransfer::new()),
            Err(Error::Misuse(_))
        ));
        assert!(matches!(
            KeyTransfer::wrap_new_keys(&mk, NewKeys::default()),
            Err(Error::Misuse(_))
        ));
    }

    #[test]
    fn duplicates_are_refused_on_push() {
        let mk = MasterKey::from_bytes(MK0);
        let mut t = KeyTransfer::new();
        t.push_key(&mk, &AuthenticationKey::from_bytes([1; 16]))
            .unwrap();
        assert_eq!(
            t.push_key(&mk, &AuthenticationKey::from_bytes([2; 16])),
            Err(Error::Key(KeyError::DuplicateKeyId(2)))
        );
        let mut slot = Some(MasterKey::from_bytes([1; 16]));
        let wrapped = wrap::wrap(&mk, &MasterKey::from_bytes([2; 16]));
        assert_eq!(
            fill(&mut slot, &mk, &wrapped, KeyId::Master),
            Err(Error::Key(KeyError::DuplicateKeyId(3)))
        );
        // The key already staged stays as it was.
        assert_eq!(slot.map(|k| *k.as_bytes()), Some([1; 16]));
    }

    fn hex_key(s: &str) -> [u8; KEY_LEN] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn vector_11() -> alloc::vec::Vec<u8> {
        hex::decode("0101020216020918C498429FF0B8E698352B17AFFAC7CA6C708D61062E82B6D4").unwrap()
    }

    /// vectors/README.md (self-built): AK D0D1…DF under KEK 000102…0F.
    #[test]
    fn section_11_vector_both_ways() {
        let kek: [u8; 16] = hex_key("000102030405060708090A0B0C0D0E0F");
        let ak: [u8; 16] = hex_key("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF");
        let mut mk = MasterKey::from_bytes(kek);
        let new_ak = AuthenticationKey::from_bytes(ak);
        let t = KeyTransfer::wrap_new_keys(
            &mk,
            NewKeys {
                ak: Some(&new_ak),
                ..NewKeys::default()
            },
        )
        .unwrap();
        let mut out = [0u8; 32];
        assert_eq!(t.emit(&mut out), Ok(32));
        assert_eq!(out[..], vector_11()[..]);

        let parsed = KeyTransfer::parse(&vector_11()).unwrap();
        let mut k = old_keys(false);
        stage(&mk, &parsed).unwrap().install(&mut mk, &mut k);
        assert_eq!(k.ak().as_bytes(), &ak);
        assert_eq!(k.guek().as_bytes(), &[0x10; 16]);
        assert_eq!(mk.as_bytes(), &kek);
    }

    #[test]
    fn debug_is_redacted() {
        let k = old_keys(true);
        assert_eq!(
            format!("{k:?}"),
            "SecuritySetupKeys { broadcast_key: true, .. }"
        );
        let mk = MasterKey::from_bytes(MK0);
        let t = KeyTransfer::wrap_new_keys(
            &mk,
            NewKeys {
                mk: Some(&MasterKey::from_bytes([0x42; 16])),
                ..NewKeys::default()
            },
        )
        .unwrap();
        let s = stage(&mk, &t).unwrap();
        assert_eq!(
            format!("{s:?}"),
            "StagedKeys { guek: false, gbek: false, ak: false, mk: true }"
        );
    }
}
