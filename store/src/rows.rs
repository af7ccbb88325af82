//! Backend-neutral row handling: how values are encoded into columns, how
//! columns are read back and checked, and how a slot's records change.
//!
//! Guarantees, whatever the backend:
//!
//! * A record read back is re-parsed with [`PackagedRecord::parse`] and its
//!   id must equal the row's columns (device, client, role, generation);
//!   anything else is [`StoreError::Corrupt`] naming the slot and state.
//! * A 32-bit value (a generation, a ceiling, a floor) read back outside
//!   `0..=0xFFFFFFFF`, a title that is not 8 octets, an unknown code: all
//!   [`StoreError::Corrupt`], never a panic and never a truncation.
//! * A slot changes by [`change_slot`]: the slot's rows are loaded, the
//!   core's own transition ([`SlotChange::apply`]) computes the new state,
//!   and only the rows that differ are written, each write conditional on
//!   the row still holding what was loaded. A backend that runs this in a
//!   transaction gets the core's semantics, and a concurrent writer it did
//!   not serialise shows up as [`StoreError::Conflict`].

use core::fmt;

use dlms_sec::audit::{CHAIN_ID_LEN, ChainId, MAC_LEN};
use dlms_sec::counter::CounterKey;
use dlms_sec::key::package::PackagedRecord;
use dlms_sec::keystore::{KeySlot, SlotChange, SlotRecords};
use dlms_sec::{Client, KeyKind, KeyRole, SystemTitle};

use crate::error::{Result, StoreError};

/// The three places a record can hold in its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Active,
    Pending,
    Previous,
}

impl State {
    pub(crate) const ALL: [Self; 3] = [Self::Active, Self::Pending, Self::Previous];

    /// The value of the `state` column.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Pending => "pending",
            Self::Previous => "previous",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    const fn of(self, g: &SlotRecords) -> Option<PackagedRecord> {
        match self {
            Self::Active => g.active,
            Self::Pending => g.pending,
            Self::Previous => g.previous,
        }
    }

    const fn set(self, g: &mut SlotRecords, r: Option<PackagedRecord>) {
        match self {
            Self::Active => g.active = r,
            Self::Pending => g.pending = r,
            Self::Previous => g.previous = r,
        }
    }
}

/// A slot and one of its states, for naming a row.
pub(crate) struct RowName<'a>(pub(crate) &'a KeySlot, pub(crate) State);

impl fmt::Display for RowName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key record {} ({})", self.0, self.1.as_str())
    }
}

// ---------------------------------------------------------------------------
// Encoding

/// The `client` column of a key record: the packaged-record code, 0 for the
/// device-wide master key. A slot naming the Public client has no code.
pub(crate) fn slot_client(slot: &KeySlot) -> Result<i64> {
    Client::record_code(slot.client)
        .map(i64::from)
        .ok_or_else(|| StoreError::Backend(format!("the Public client holds no keys ({slot})")))
}

/// The `role` column: the packaged-record role code.
pub(crate) fn role_code(role: KeyRole) -> i64 {
    i64::from(role.code())
}

/// The `client` column of a counter, floor or progress row: 0 Public,
/// then the packaged-record codes 1..=4.
pub(crate) const fn client_code(client: Client) -> i64 {
    match client {
        Client::Public => 0,
        Client::DataCollection => 1,
        Client::ExtendedDataCollection => 2,
        Client::Management => 3,
        Client::Firmware => 4,
    }
}

/// The `key_kind` column.
pub(crate) const fn kind_code(kind: KeyKind) -> i64 {
    match kind {
        KeyKind::GlobalUnicast => 0,
        KeyKind::GlobalBroadcast => 1,
        KeyKind::Dedicated => 2,
    }
}

/// A u64 (a time) as a signed 64-bit column.
///
/// # Errors
/// [`StoreError::Backend`] above `i64::MAX`: no such time is stored.
pub(crate) fn time_col(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Backend(format!("{what} {v} is out of range")))
}

/// A row's name, formatted only when it is shown (in an error): decoding a
/// healthy row builds no string.
pub(crate) struct Lazy<F: Fn() -> String>(pub(crate) F);

impl<F: Fn() -> String> fmt::Display for Lazy<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&(self.0)())
    }
}

/// A counter key's display name (no key material: titles, client, kind,
/// generation).
pub(crate) struct CounterName<'a>(pub(crate) &'a CounterKey);

impl fmt::Display for CounterName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = self.0;
        write!(
            f,
            "counter {:?} -> {:?}/{}/{:?}/{}",
            k.sender,
            k.device,
            k.client.name(),
            k.key,
            k.generation
        )
    }
}

// ---------------------------------------------------------------------------
// Decoding

/// A record row read back: the blob parses, and its id is the row's slot
/// and generation column.
///
/// # Errors
/// [`StoreError::Corrupt`] naming the slot and state otherwise.
pub(crate) fn record(
    slot: &KeySlot,
    state: State,
    generation: i64,
    blob: &[u8],
) -> Result<PackagedRecord> {
    let bad = || StoreError::corrupt(RowName(slot, state));
    let generation = u32::try_from(generation).map_err(|_| bad())?;
    let r = PackagedRecord::parse(blob).map_err(|_| bad())?;
    if r.id() != slot.id(generation) {
        return Err(bad());
    }
    Ok(r)
}

/// A 32-bit value read back from a 64-bit column.
///
/// # Errors
/// [`StoreError::Corrupt`] naming `what` outside `0..=0xFFFFFFFF`.
pub(crate) fn u32_col(v: i64, what: impl fmt::Display) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::corrupt(what))
}

/// A u64 (a time) read back from a signed column.
///
/// # Errors
/// [`StoreError::Corrupt`] naming `what` when negative.
pub(crate) fn u64_col(v: i64, what: impl fmt::Display) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::corrupt(what))
}

/// A KEK check value read back (the record octets that carry it).
///
/// # Errors
/// [`StoreError::Corrupt`] naming `what` unless exactly 3 octets.
pub(crate) fn kek_check_value(
    blob: &[u8],
    what: impl fmt::Display,
) -> Result<dlms_sec::key::package::KeyCheckValue> {
    <[u8; 3]>::try_from(blob)
        .map(dlms_sec::key::package::KeyCheckValue)
        .map_err(|_| StoreError::corrupt(what))
}

/// A system title read back.
///
/// # Errors
/// [`StoreError::Corrupt`] naming `what` unless exactly 8 octets.
pub(crate) fn title(blob: &[u8], what: impl fmt::Display) -> Result<SystemTitle> {
    <[u8; 8]>::try_from(blob)
        .map(SystemTitle::new)
        .map_err(|_| StoreError::corrupt(what))
}

/// A slot read back from its columns.
///
/// # Errors
/// [`StoreError::Corrupt`] for a code that names no client or role, or a
/// client that does not fit the role.
pub(crate) fn slot(device: SystemTitle, client: i64, role: i64) -> Result<KeySlot> {
    let bad = || StoreError::corrupt(format_args!("key record slot of {device:?}"));
    let client = u8::try_from(client)
        .ok()
        .and_then(Client::from_record_code)
        .ok_or_else(bad)?;
    let role = u8::try_from(role)
        .ok()
        .and_then(KeyRole::from_code)
        .ok_or_else(bad)?;
    let slot = KeySlot {
        device,
        client,
        role,
    };
    slot.id(0).check().map_err(|_| bad())?;
    Ok(slot)
}

/// A chain id read back.
pub(crate) fn chain_id(blob: &[u8]) -> Option<ChainId> {
    <[u8; CHAIN_ID_LEN]>::try_from(blob).ok().map(ChainId)
}

/// An audit MAC read back.
pub(crate) fn mac(blob: &[u8]) -> Option<[u8; MAC_LEN]> {
    <[u8; MAC_LEN]>::try_from(blob).ok()
}

// ---------------------------------------------------------------------------
// Slot transitions

/// What a backend does to one slot inside one transaction.
pub(crate) trait SlotTx {
    /// The slot's rows, each checked with [`record`].
    fn load(&mut self, slot: &KeySlot) -> Result<SlotRecords>;
    /// Inserts a row that must not exist ([`StoreError::Conflict`] if it does).
    fn insert(&mut self, slot: &KeySlot, state: State, new: &PackagedRecord) -> Result<()>;
    /// Replaces the row holding `old` ([`StoreError::Conflict`] if it no
    /// longer does).
    fn replace(
        &mut self,
        slot: &KeySlot,
        state: State,
        old: &PackagedRecord,
        new: &PackagedRecord,
    ) -> Result<()>;
    /// Deletes the row holding `old` ([`StoreError::Conflict`] if it no
    /// longer does).
    fn delete(&mut self, slot: &KeySlot, state: State, old: &PackagedRecord) -> Result<()>;
}

/// Applies `change` to `slot` through `tx`: loads, applies the core's
/// transition, writes what differs.
///
/// # Errors
/// The core's refusals as [`StoreError::StaleGeneration`] /
/// [`StoreError::NoPending`]; the backend's errors. The caller rolls the
/// transaction back on any error.
pub(crate) fn change_slot(
    tx: &mut dyn SlotTx,
    slot: &KeySlot,
    change: SlotChange<'_>,
) -> Result<()> {
    let old = tx.load(slot)?;
    let new = change.apply(old).map_err(StoreError::from_key_error)?;
    for state in State::ALL {
        match (state.of(&old), state.of(&new)) {
            (Some(o), Some(n)) if o == n => {}
            (Some(o), Some(n)) => tx.replace(slot, state, &o, &n)?,
            (None, Some(n)) => tx.insert(slot, state, &n)?,
            (Some(o), None) => tx.delete(slot, state, &o)?,
            (None, None) => {}
        }
    }
    Ok(())
}

/// Puts a row read back into the slot's records.
///
/// # Errors
/// [`StoreError::Corrupt`] for an unknown state name.
pub(crate) fn place(
    g: &mut SlotRecords,
    slot: &KeySlot,
    state: &str,
    generation: i64,
    blob: &[u8],
) -> Result<()> {
    let st = State::from_name(state)
        .ok_or_else(|| StoreError::corrupt(format_args!("key record {slot} (state)")))?;
    let r = record(slot, st, generation, blob)?;
    st.set(g, Some(r));
    Ok(())
}
