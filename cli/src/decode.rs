//! `decode`: a readable breakdown of a ciphered APDU, and with keys the
//! verified plaintext, as text lines or one JSON object.

use dlms_sec::wire::{FrameKind, FrameLayout, GeneralCipheringFrame, KeyFamily, KeySet};
use dlms_sec::{KeyKind, SecurityControl};

use crate::args::Args;
use crate::cmd::open;
use crate::codec::hex;
use crate::fail::{EXIT_CHECK, Fail};
use crate::json::Json;
use crate::keys::Keys;
use crate::names;

/// The breakdown, kept twice: text lines and JSON fields.
#[derive(Debug, Default)]
struct Doc {
    lines: Vec<String>,
    fields: Vec<(&'static str, Json)>,
}

impl Doc {
    fn add(&mut self, key: &'static str, json: Json, line: String) {
        self.fields.push((key, json));
        self.lines.push(line);
    }
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

fn sc_words(sc: SecurityControl) -> String {
    let mut words = vec![format!("suite {}", sc.suite_id())];
    if sc.authenticated() {
        words.push("authenticated".to_owned());
    }
    if sc.encrypted() {
        words.push("encrypted".to_owned());
    }
    if !sc.authenticated() && !sc.encrypted() {
        words.push("no protection".to_owned());
    }
    words.push(
        match sc.key_set() {
            KeySet::Unicast => "unicast",
            KeySet::Broadcast => "broadcast",
        }
        .to_owned(),
    );
    if sc.compressed() {
        words.push("compressed".to_owned());
    }
    words.join(", ")
}

fn opt_hex(bytes: &[u8]) -> (Json, String) {
    if bytes.is_empty() {
        (Json::str(""), "(empty)".to_owned())
    } else {
        (Json::str(hex(bytes)), hex(bytes))
    }
}

/// The general-ciphering header fields.
fn general_ciphering(frame: &[u8], doc: &mut Doc) -> Result<(), Fail> {
    let f = GeneralCipheringFrame::new_checked(frame).map_err(dlms_sec::Error::from)?;
    let title = |t: Option<dlms_sec::SystemTitle>| match t {
        Some(t) => (Json::str(hex(t.as_bytes())), hex(t.as_bytes())),
        None => (Json::Null, "(empty)".to_owned()),
    };
    let (tid, tid_t) = opt_hex(f.transaction_id());
    let (orig, orig_t) = title(f.originator_system_title());
    let (recip, recip_t) = title(f.recipient_system_title());
    let (dt, dt_t) = opt_hex(f.date_time());
    let (oi, oi_t) = opt_hex(f.other_information());
    doc.fields.push((
        "general_ciphering",
        Json::Obj(vec![
            ("transaction_id", tid),
            ("originator_system_title", orig),
            ("recipient_system_title", recip),
            ("date_time", dt),
            ("other_information", oi),
        ]),
    ));
    doc.lines.extend([
        format!("transaction-id: {tid_t}"),
        format!("originator-system-title: {orig_t}"),
        format!("recipient-system-title: {recip_t}"),
        format!("date-time: {dt_t}"),
        format!("other-information: {oi_t}"),
    ]);
    Ok(())
}

/// `decode`.
pub(crate) fn decode(args: &Args, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(args)?;
    let frame = args.hex_input("FRAME_HEX")?;
    let layout = FrameLayout::parse(&frame)?;
    let sc = layout.security_control;
    let mut doc = Doc::default();

    let tag = frame.first().copied().unwrap_or_default();
    let tag_name = names::ciphered_tag(&layout.kind);
    doc.add(
        "tag",
        Json::str(hex(&[tag])),
        format!("tag: {} {tag_name}", hex(&[tag])),
    );
    doc.fields.push(("tag_name", Json::str(tag_name)));
    let form = names::form(&layout.kind);
    doc.add("form", Json::str(form), format!("form: {form}"));
    // SC ‖ IC ‖ payload ‖ tag.
    let content_len = layout
        .auth_tag
        .end
        .saturating_sub(layout.payload.start)
        .saturating_add(5);
    doc.add(
        "content_length",
        Json::Num(u64::try_from(content_len).unwrap_or(u64::MAX)),
        format!("content: {content_len} octets (security header, payload, auth tag)"),
    );
    doc.add(
        "security_control",
        Json::Obj(vec![
            ("byte", Json::str(hex(&[sc.bits()]))),
            ("suite", Json::Num(sc.suite_id().into())),
            ("authenticated", Json::Bool(sc.authenticated())),
            ("encrypted", Json::Bool(sc.encrypted())),
            ("broadcast", Json::Bool(sc.key_set() == KeySet::Broadcast)),
            ("compressed", Json::Bool(sc.compressed())),
        ]),
        format!("security-control: {} ({})", hex(&[sc.bits()]), sc_words(sc)),
    );
    match key_kind(&layout.kind, sc) {
        Ok(k) => doc.add(
            "key",
            Json::str(names::key(k)),
            format!("key: {}", names::key(k)),
        ),
        Err(why) => doc.add("key", Json::Null, format!("key: {why}")),
    }
    let ic = layout.invocation_counter;
    doc.add(
        "invocation_counter",
        Json::Obj(vec![
            ("hex", Json::str(hex(&ic.to_be_bytes()))),
            ("value", Json::Num(ic.value().into())),
        ]),
        format!(
            "invocation-counter: {} ({})",
            hex(&ic.to_be_bytes()),
            ic.value()
        ),
    );
    match layout.system_title {
        Some(t) => doc.add(
            "system_title",
            Json::str(hex(t.as_bytes())),
            format!("system-title: {}", hex(t.as_bytes())),
        ),
        None => doc.add(
            "system_title",
            Json::Null,
            "system-title: not carried (the receiver supplies it)".to_owned(),
        ),
    }
    if matches!(layout.kind, FrameKind::GeneralCiphering { .. }) {
        general_ciphering(&frame, &mut doc)?;
    }
    let payload = frame.get(layout.payload.clone()).unwrap_or_default();
    doc.add(
        "payload_length",
        Json::Num(u64::try_from(payload.len()).unwrap_or(u64::MAX)),
        format!("payload: {} octets", payload.len()),
    );
    let payload_name = if sc.encrypted() { "ciphertext" } else { "apdu" };
    doc.add(
        "payload",
        Json::str(hex(payload)),
        format!("{payload_name}: {}", hex(payload)),
    );
    let auth_tag = frame.get(layout.auth_tag.clone()).unwrap_or_default();
    if auth_tag.is_empty() {
        doc.add("auth_tag", Json::Null, "auth-tag: none".to_owned());
    } else {
        doc.add(
            "auth_tag",
            Json::str(hex(auth_tag)),
            format!("auth-tag: {}", hex(auth_tag)),
        );
    }

    let keys_given = ["--ek", "--ak", "--dk", "--bk"]
        .iter()
        .zip(["EK", "AK", "DK", "BK"])
        .try_fold(false, |any, (flag, name)| {
            Ok::<_, Fail>(any || keys.get(args, flag, name)?.is_some())
        })?;
    let outcome = if keys_given {
        open(args, &keys, &frame, &layout).map(Some)
    } else {
        Ok(None)
    };
    let result = match outcome {
        Ok(None) => {
            doc.add(
                "verification",
                Json::str("not-attempted"),
                "verification: not attempted (no keys given)".to_owned(),
            );
            Ok(())
        }
        Ok(Some(opened)) => {
            let (word, line) = if opened.authenticated {
                ("ok", "verification: ok")
            } else {
                (
                    "decrypted-only",
                    "verification: none possible (encryption only: decrypted, not authenticated)",
                )
            };
            doc.add("verification", Json::str(word), line.to_owned());
            doc.add(
                "plaintext",
                Json::str(hex(&opened.apdu)),
                format!("plaintext: {}", hex(&opened.apdu)),
            );
            let inner = opened.apdu.first().copied().unwrap_or_default();
            let inner_name = names::plain_tag(inner).unwrap_or("unknown");
            doc.add(
                "plaintext_tag",
                Json::str(format!("{} {inner_name}", hex(&[inner]))),
                format!("plaintext-tag: {} {inner_name}", hex(&[inner])),
            );
            Ok(())
        }
        Err(fail) => {
            let word = if fail.code == EXIT_CHECK {
                "failed"
            } else {
                "error"
            };
            doc.add(
                "verification",
                Json::str(word),
                format!("verification: {word} ({})", fail.message),
            );
            doc.fields.push(("error", Json::str(fail.message.clone())));
            Err(fail)
        }
    };

    if args.switch("--json") {
        out.push_str(&Json::Obj(doc.fields).render());
    } else {
        out.push_str(&doc.lines.join("\n"));
    }
    result
}
