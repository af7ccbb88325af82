//! `decode`: a readable breakdown of a ciphered APDU, and with keys the
//! verified plaintext, as text lines or one JSON object. Both render the
//! same [`Breakdown`]; the JSON keeps its fields in declaration order.

use dlms_sec::wire::{FrameKind, FrameLayout, GeneralCipheringFrame, KeyFamily, KeySet};
use dlms_sec::{KeyKind, SecurityControl, SystemTitle};
use serde::{Serialize, Serializer};

use crate::cli;
use crate::cmd::open;
use crate::codec::public_hex;
use crate::fail::{EXIT_CHECK, Fail};
use crate::keys::Keys;
use crate::names;

/// What `decode` found in a frame.
#[derive(Debug, Serialize)]
struct Breakdown {
    /// The outer tag, as hex.
    tag: String,
    tag_name: String,
    form: &'static str,
    /// SC, IC, payload and tag, in octets.
    content_length: usize,
    security_control: Sc,
    /// The key's name, or (`null` in JSON) why the frame names none.
    #[serde(serialize_with = "ok_or_null")]
    key: Result<&'static str, &'static str>,
    invocation_counter: Ic,
    system_title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    general_ciphering: Option<GeneralCiphering>,
    payload_length: usize,
    payload: String,
    auth_tag: Option<String>,
    /// `not-attempted`, `ok`, `decrypted-only`, `failed` or `error`.
    verification: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext: Option<String>,
    /// The plaintext's tag, as hex and name.
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext_tag: Option<String>,
    /// Why verification failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The security control octet.
#[derive(Debug, Serialize)]
struct Sc {
    byte: String,
    suite: u8,
    authenticated: bool,
    encrypted: bool,
    broadcast: bool,
    compressed: bool,
}

/// The invocation counter.
#[derive(Debug, Serialize)]
struct Ic {
    hex: String,
    value: u32,
}

/// The general-ciphering header fields (empty octet strings as `""`).
#[derive(Debug, Serialize)]
struct GeneralCiphering {
    transaction_id: String,
    originator_system_title: Option<String>,
    recipient_system_title: Option<String>,
    date_time: String,
    other_information: String,
}

fn ok_or_null<S: Serializer>(
    key: &Result<&'static str, &'static str>,
    s: S,
) -> Result<S::Ok, S::Error> {
    key.ok().serialize(s)
}

/// The key a frame names, or why it names none (the rule of
/// `Suite0::unprotect`, repeated here for display).
fn key_kind(kind: &FrameKind, sc: SecurityControl) -> Result<KeyKind, &'static str> {
    let dedicated = match kind {
        FrameKind::Service(s) => s.family == KeyFamily::Dedicated,
        FrameKind::GeneralDed => true,
        FrameKind::GeneralGlo => false,
        FrameKind::GeneralCiphering { key } => {
            return match sc.key_set() {
                KeySet::Unicast => Ok(*key),
                KeySet::Broadcast => Err("invalid: key-set bit set in general-ciphering"),
            };
        }
    };
    match (dedicated, sc.key_set()) {
        (true, KeySet::Broadcast) => Err("invalid: key-set bit set on a dedicated-key APDU"),
        (true, KeySet::Unicast) => Ok(KeyKind::Dedicated),
        (false, KeySet::Unicast) => Ok(KeyKind::GlobalUnicast),
        (false, KeySet::Broadcast) => Ok(KeyKind::GlobalBroadcast),
    }
}

fn title_hex(t: Option<SystemTitle>) -> Option<String> {
    t.map(|t| public_hex(t.as_bytes()))
}

impl Breakdown {
    /// Everything but the verification: what the frame itself says.
    fn of(frame: &[u8], layout: &FrameLayout) -> Result<Self, Fail> {
        let sc = layout.security_control;
        let tag = frame.first().copied().unwrap_or_default();
        let general_ciphering = match layout.kind {
            FrameKind::GeneralCiphering { .. } => {
                let f = GeneralCipheringFrame::new_checked(frame).map_err(dlms_sec::Error::from)?;
                Some(GeneralCiphering {
                    transaction_id: public_hex(f.transaction_id()),
                    originator_system_title: title_hex(f.originator_system_title()),
                    recipient_system_title: title_hex(f.recipient_system_title()),
                    date_time: public_hex(f.date_time()),
                    other_information: public_hex(f.other_information()),
                })
            }
            _ => None,
        };
        let payload = frame.get(layout.payload.clone()).unwrap_or_default();
        let auth_tag = frame.get(layout.auth_tag.clone()).unwrap_or_default();
        Ok(Self {
            tag: public_hex(&[tag]),
            tag_name: names::ciphered_tag(&layout.kind),
            form: names::form(&layout.kind),
            // SC ‖ IC ‖ payload ‖ tag.
            content_length: layout
                .auth_tag
                .end
                .saturating_sub(layout.payload.start)
                .saturating_add(5),
            security_control: Sc {
                byte: public_hex(&[sc.bits()]),
                suite: sc.suite_id(),
                authenticated: sc.authenticated(),
                encrypted: sc.encrypted(),
                broadcast: sc.key_set() == KeySet::Broadcast,
                compressed: sc.compressed(),
            },
            key: key_kind(&layout.kind, sc).map(names::key),
            invocation_counter: Ic {
                hex: public_hex(&layout.invocation_counter.to_be_bytes()),
                value: layout.invocation_counter.value(),
            },
            system_title: title_hex(layout.system_title),
            general_ciphering,
            payload_length: payload.len(),
            payload: public_hex(payload),
            auth_tag: (!auth_tag.is_empty()).then(|| public_hex(auth_tag)),
            verification: "not-attempted",
            plaintext: None,
            plaintext_tag: None,
            error: None,
        })
    }

    /// The text lines.
    fn text(&self) -> String {
        let empty = |s: &str| {
            if s.is_empty() {
                "(empty)".to_owned()
            } else {
                s.to_owned()
            }
        };
        let sc = &self.security_control;
        let mut lines = vec![
            format!("tag: {} {}", self.tag, self.tag_name),
            format!("form: {}", self.form),
            format!(
                "content: {} octets (security header, payload, auth tag)",
                self.content_length
            ),
            format!("security-control: {} ({})", sc.byte, sc.words()),
            format!("key: {}", self.key.unwrap_or_else(|why| why)),
            format!(
                "invocation-counter: {} ({})",
                self.invocation_counter.hex, self.invocation_counter.value
            ),
            match &self.system_title {
                Some(t) => format!("system-title: {t}"),
                None => "system-title: not carried (the receiver supplies it)".to_owned(),
            },
        ];
        if let Some(g) = &self.general_ciphering {
            let title = |t: &Option<String>| empty(t.as_deref().unwrap_or_default());
            lines.extend([
                format!("transaction-id: {}", empty(&g.transaction_id)),
                format!(
                    "originator-system-title: {}",
                    title(&g.originator_system_title)
                ),
                format!(
                    "recipient-system-title: {}",
                    title(&g.recipient_system_title)
                ),
                format!("date-time: {}", empty(&g.date_time)),
                format!("other-information: {}", empty(&g.other_information)),
            ]);
        }
        let payload_name = if sc.encrypted { "ciphertext" } else { "apdu" };
        lines.extend([
            format!("payload: {} octets", self.payload_length),
            format!("{payload_name}: {}", self.payload),
            format!("auth-tag: {}", self.auth_tag.as_deref().unwrap_or("none")),
        ]);
        lines.push(match (self.verification, &self.error) {
            ("not-attempted", _) => "verification: not attempted (no keys given)".to_owned(),
            ("decrypted-only", _) => {
                "verification: none possible (encryption only: decrypted, not authenticated)"
                    .to_owned()
            }
            (word, Some(why)) => format!("verification: {word} ({why})"),
            (word, None) => format!("verification: {word}"),
        });
        if let (Some(plaintext), Some(tag)) = (&self.plaintext, &self.plaintext_tag) {
            lines.push(format!("plaintext: {plaintext}"));
            lines.push(format!("plaintext-tag: {tag}"));
        }
        lines.join("\n")
    }
}

impl Sc {
    /// "suite 0, authenticated, encrypted, unicast" and the like.
    fn words(&self) -> String {
        let mut words = vec![format!("suite {}", self.suite)];
        if self.authenticated {
            words.push("authenticated".to_owned());
        }
        if self.encrypted {
            words.push("encrypted".to_owned());
        }
        if !self.authenticated && !self.encrypted {
            words.push("no protection".to_owned());
        }
        words.push(
            if self.broadcast {
                "broadcast"
            } else {
                "unicast"
            }
            .to_owned(),
        );
        if self.compressed {
            words.push("compressed".to_owned());
        }
        words.join(", ")
    }
}

/// `decode`.
pub(crate) fn decode(a: &cli::Decode, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(a.keys.file.path.as_deref())?;
    let frame = cli::hex_input(&a.frame, "FRAME_HEX")?;
    let layout = FrameLayout::parse(&frame)?;
    let mut doc = Breakdown::of(&frame, &layout)?;

    let flags = &a.keys;
    let keys_given = [
        (&flags.ek, "EK"),
        (&flags.ak, "AK"),
        (&flags.dk, "DK"),
        (&flags.bk, "BK"),
    ]
    .into_iter()
    .try_fold(false, |any, (flag, name)| {
        Ok::<_, Fail>(any || keys.get(flag.as_ref(), name)?.is_some())
    })?;
    let result = if keys_given {
        match open(&a.checks, &keys, flags, &frame, &layout) {
            Ok(opened) => {
                doc.verification = if opened.authenticated {
                    "ok"
                } else {
                    "decrypted-only"
                };
                let inner = opened.apdu.first().copied().unwrap_or_default();
                let inner_name = names::plain_tag(inner).unwrap_or("unknown");
                doc.plaintext = Some(public_hex(&opened.apdu));
                doc.plaintext_tag = Some(format!("{} {inner_name}", public_hex(&[inner])));
                Ok(())
            }
            Err(fail) => {
                doc.verification = if fail.code == EXIT_CHECK {
                    "failed"
                } else {
                    "error"
                };
                doc.error = Some(fail.message.clone());
                Err(fail)
            }
        }
    } else {
        Ok(())
    };

    if a.json {
        let json = serde_json::to_string(&doc)
            .map_err(|e| Fail::usage(format_args!("cannot render JSON: {e}")))?;
        out.push_str(&json);
    } else {
        out.push_str(&doc.text());
    }
    result
}
