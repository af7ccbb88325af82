//! Every DLMS wire format the crate reads or writes, one file each.
//!
//! # The contract (after smoltcp's `wire`)
//!
//! Two levels of API:
//!
//! * **Views** (`…Frame<T: AsRef<[u8]>>`) read fields in place from a byte
//!   buffer. `new_checked` is the only way to make a view over untrusted
//!   bytes: after it returns `Ok`, no accessor can panic and every length
//!   inside the view has been checked against the buffer with checked
//!   arithmetic (a 4-octet A-XDR length on a 32-bit meter cannot wrap).
//! * **Values** (`…Repr`) are the validated high-level contents, with
//!   `parse` (from a checked view), `buffer_len` (exact bytes `emit` needs)
//!   and `emit` (into a caller buffer; `BufferTooSmall { required }` when it
//!   is short). `parse` followed by `emit` reproduces the input byte for
//!   byte: only minimal A-XDR lengths are accepted, so every frame has one
//!   encoding.
//!
//! Untrusted input gets a typed [`Error`](crate::Error), never a panic. The
//! parsers check structure only; the suite-0 rules that need keys live in
//! [`suite0`](crate::suite0).
//!
//! | file | format |
//! |---|---|
//! | `axdr.rs` | A-XDR length (short form, `0x81`/`0x82`/`0x84` long forms) |
//! | `security_control.rs` | security control byte |
//! | `system_title.rs` | system title, invocation counter, the IV |
//! | `header.rs` | security header SC ‖ IC, ciphered content SC ‖ IC ‖ payload ‖ tag |
//! | `tag.rs` | APDU tags: plain ↔ glo- ↔ ded- |
//! | `service.rs` | service-specific glo-/ded- ciphered APDUs |
//! | `general_glo_ded.rs` | general-glo-ciphering `0xDB`, general-ded-ciphering `0xDC` |
//! | `general_ciphering.rs` | general-ciphering `0xDD` |
//! | `ciphered_apdu.rs` | any ciphered APDU: where its parts sit, and how to lay one out |
//! | `key_transfer.rs` | the Security Setup key_transfer parameter |
//! | `action_request.rs` | the action-request that invokes key_transfer |

mod action_request;
pub mod axdr;
mod ciphered_apdu;
mod general_ciphering;
mod general_glo_ded;
mod header;
mod key_transfer;
mod security_control;
mod service;
mod system_title;
mod tag;

pub use crate::types::{KeyKind, KeySet};
pub use action_request::{
    KEY_TRANSFER_METHOD, SECURITY_SETUP_CLASS_ID, SECURITY_SETUP_LN, SecuritySetupMethod,
    parse_key_transfer_request,
};
pub(crate) use ciphered_apdu::HeaderLayout;
pub use ciphered_apdu::{
    CipheredForm, FrameKind, FrameLayout, GeneralCipheringFields, HeaderFields,
};
pub use general_ciphering::{GeneralCipheringFrame, GeneralCipheringRepr, KeyInfo};
pub use general_glo_ded::{GeneralGloDedFrame, GeneralGloDedRepr};
pub use header::{
    AUTH_TAG_LEN, CipheredContentFrame, CipheredContentRepr, HEADER_LEN, SecurityHeader,
};
pub use key_transfer::{
    KeyTransfer, KeyTransferEntry, MAX_KEY_TRANSFER_ENTRIES, WRAPPED_KEY_LEN, WrappedKey,
};
pub use security_control::SecurityControl;
pub use service::{ServiceFrame, ServiceRepr};
pub(crate) use system_title::iv;
pub use system_title::{InvocationCounter, SYSTEM_TITLE_LEN, SystemTitle};
pub use tag::{ApduTag, CipheredService, KeyFamily, Service};
