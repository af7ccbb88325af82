//! The subcommands other than `decode`.

use std::io::Write as _;

use dlms_sec::counter::{ReplayGuard, SingleUse};
use dlms_sec::key::package::{PackagedRecord, Packager, RecordId};
use dlms_sec::key::wrap::{self, WRAPPED_KEY_LEN, WrappedKey};
use dlms_sec::key::{
    AuthenticationKey, DcoKey, DedicatedKey, GlobalBroadcastEncryptionKey,
    GlobalUnicastEncryptionKey, KeyRole, MasterKey, SharedKey,
};
use dlms_sec::meter::key_transfer::NewKeys;
use dlms_sec::suite0::hls5;
use dlms_sec::suite0::{Protect, Suite0, Unprotect};
use dlms_sec::types::Client;
use dlms_sec::wire::{CipheredForm, FrameLayout, KeyTransfer};
use dlms_sec::{InvocationCounter, KeyKind, Protection, SecurityPolicy, SystemTitle};
use zeroize::Zeroizing;

use crate::args::Args;
use crate::codec::{hex, parse_hex, parse_title, parse_u32};
use crate::fail::Fail;
use crate::keys::{KeyBytes, Keys};

/// `--policy`: the protection to apply.
fn protection(text: &str) -> Result<Protection, Fail> {
    match text {
        "auth" => Ok(Protection::Authenticated),
        "enc" => Ok(Protection::Encrypted),
        "auth-enc" => Ok(Protection::AuthenticatedEncrypted),
        _ => Err(Fail::usage(format_args!(
            "--policy: {text:?} is not auth, enc or auth-enc"
        ))),
    }
}

/// `--require`: the protection a received frame must carry.
fn policy(text: Option<&str>) -> Result<SecurityPolicy, Fail> {
    match text {
        None | Some("none") => Ok(SecurityPolicy::None),
        Some("auth") => Ok(SecurityPolicy::Authenticated),
        Some("enc") => Ok(SecurityPolicy::Encrypted),
        Some("auth-enc") => Ok(SecurityPolicy::AuthenticatedEncrypted),
        Some(t) => Err(Fail::usage(format_args!(
            "--require: {t:?} is not auth, enc, auth-enc or none"
        ))),
    }
}

/// `--ic` / `--after-ic`-style counter, refusing nothing.
fn counter(args: &Args, flag: &str) -> Result<Option<u32>, Fail> {
    args.value(flag).map(|t| parse_u32(t, flag)).transpose()
}

/// The suite-0 context of `--ek`/`--ak` (required) and `--bk`/`--dk`.
pub(crate) fn suite(args: &Args, keys: &Keys) -> Result<Suite0, Fail> {
    let ek = keys.require(args, "--ek", "EK")?;
    let ak = keys.require(args, "--ak", "AK")?;
    let mut suite = Suite0::new(
        &GlobalUnicastEncryptionKey::from_bytes(*ek),
        &AuthenticationKey::from_bytes(*ak),
    );
    if let Some(bk) = keys.get(args, "--bk", "BK")? {
        suite = suite.with_broadcast_key(&GlobalBroadcastEncryptionKey::from_bytes(*bk));
    }
    if let Some(dk) = keys.get(args, "--dk", "DK")? {
        suite.set_dedicated_key(&DedicatedKey::from_bytes(*dk));
    }
    Ok(suite)
}

/// `--form` and `--key` together.
fn form_and_key(
    form: Option<&str>,
    key: Option<&str>,
) -> Result<(CipheredForm<'static>, KeyKind), Fail> {
    let key = match key {
        None => None,
        Some("unicast") => Some(KeyKind::GlobalUnicast),
        Some("broadcast") => Some(KeyKind::GlobalBroadcast),
        Some("dedicated") => Some(KeyKind::Dedicated),
        Some(k) => {
            return Err(Fail::usage(format_args!(
                "--key: {k:?} is not unicast, broadcast or dedicated"
            )));
        }
    };
    let general = CipheredForm::General {
        with_system_title: true,
    };
    match (form.unwrap_or("service"), key) {
        ("service", key) => Ok((
            CipheredForm::ServiceSpecific,
            key.unwrap_or(KeyKind::GlobalUnicast),
        )),
        ("general-glo", None | Some(KeyKind::GlobalUnicast)) => {
            Ok((general, KeyKind::GlobalUnicast))
        }
        ("general-glo", Some(KeyKind::GlobalBroadcast)) => Ok((general, KeyKind::GlobalBroadcast)),
        ("general-glo", Some(KeyKind::Dedicated)) => Err(Fail::usage(
            "--form general-glo takes a global key: use --form general-ded for the dedicated key",
        )),
        ("general-ded", None | Some(KeyKind::Dedicated)) => Ok((general, KeyKind::Dedicated)),
        ("general-ded", Some(_)) => Err(Fail::usage(
            "--form general-ded takes the dedicated key: use --form general-glo for a global key",
        )),
        (f, _) => Err(Fail::usage(format_args!(
            "--form: {f:?} is not service, general-glo or general-ded"
        ))),
    }
}

/// `protect`.
pub(crate) fn protect(args: &Args, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(args)?;
    let protection = protection(args.required("--policy")?)?;
    let system_title = parse_title(args.required("--system-title")?, "--system-title")?;
    let ic = parse_u32(args.required("--ic")?, "--ic")?;
    if ic == InvocationCounter::RESERVED {
        return Err(Fail::usage("--ic: 0xFFFFFFFF is reserved and never sent"));
    }
    let (form, key) = form_and_key(args.value("--form"), args.value("--key"))?;
    let apdu = args.hex_input("APDU_HEX")?;
    let suite = suite(args, &keys)?;
    let req = Protect {
        protection,
        key,
        form,
        system_title,
    };
    let mut frame = vec![0u8; suite.frame_len(&req, &apdu)?];
    let n = suite.protect(
        &req,
        &mut SingleUse::new(InvocationCounter::new(ic)),
        &apdu,
        &mut frame,
    )?;
    out.push_str(&hex(frame.get(..n).unwrap_or_default()));
    Ok(())
}

/// A verified (or, under encryption only, decrypted) APDU.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The plaintext APDU.
    pub(crate) apdu: Zeroizing<Vec<u8>>,
    /// Whether the frame carried a tag that verified.
    pub(crate) authenticated: bool,
}

/// Verifies and decrypts `frame` with the keys and checks of `args`
/// (`--system-title`, `--require`, `--after-ic`): what `unprotect` and
/// `decode` share.
pub(crate) fn open(
    args: &Args,
    keys: &Keys,
    frame: &[u8],
    layout: &FrameLayout,
) -> Result<Opened, Fail> {
    let peer = args
        .value("--system-title")
        .map(|t| parse_title(t, "--system-title"))
        .transpose()?;
    if layout.system_title.is_none() && peer.is_none() {
        return Err(Fail::usage(
            "this frame carries no system title: give the sender's with --system-title",
        ));
    }
    let policy = policy(args.value("--require"))?;
    let after = counter(args, "--after-ic")?;
    let suite = suite(args, keys)?;
    let mut buf = Zeroizing::new(frame.to_vec());
    let received = suite.unprotect(
        &mut buf,
        &Unprotect {
            peer_system_title: peer,
            policy,
        },
    )?;
    if let Some(last) = after {
        let mut guard = ReplayGuard::resume(
            received.system_title(),
            received.key(),
            Some(InvocationCounter::new(last)),
        );
        let ic = received.invocation_counter();
        let result = match received.replay_proof() {
            Some(proof) => guard.accept(proof).map(|_| ()),
            // Encryption only: no proof, so only the counter is checked.
            None => guard.check(ic),
        };
        if result.is_err() {
            return Err(Fail::check(format_args!(
                "replay: invocation counter {} is not above --after-ic {last}",
                ic.value()
            )));
        }
    }
    Ok(Opened {
        authenticated: received.replay_proof().is_some(),
        apdu: Zeroizing::new(received.apdu().to_vec()),
    })
}

/// `unprotect`.
pub(crate) fn unprotect(args: &Args, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(args)?;
    let frame = args.hex_input("FRAME_HEX")?;
    let layout = FrameLayout::parse(&frame)?;
    let opened = open(args, &keys, &frame, &layout)?;
    if !opened.authenticated {
        // Succeeds, but say so: nothing vouches for this plaintext.
        let _ = writeln!(
            std::io::stderr(),
            "dlms-sec: warning: encryption only: decrypted, not authenticated (--require auth-enc refuses such frames)"
        );
    }
    out.push_str(&hex(&opened.apdu));
    Ok(())
}

/// The positional `KEY_HEX`: 16 octets.
fn key_input(args: &Args) -> Result<KeyBytes, Fail> {
    let input = args.hex_input("KEY_HEX")?;
    let mut key = KeyBytes::default();
    if input.len() != key.len() {
        return Err(Fail::usage(format_args!(
            "KEY_HEX: {} octets, expected 16 (a suite-0 key)",
            input.len()
        )));
    }
    key.copy_from_slice(&input);
    Ok(key)
}

/// `wrap`: RFC 3394 of a 128-bit key under a 128-bit KEK.
pub(crate) fn wrap(args: &Args, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(args)?;
    let kek = MasterKey::from_bytes(*keys.require(args, "--kek", "KEK")?);
    let key = key_input(args)?;
    // The wrap does not depend on the key's role; any transferable type does.
    let wrapped = wrap::wrap(&kek, &GlobalUnicastEncryptionKey::from_bytes(*key));
    out.push_str(&hex(wrapped.as_bytes()));
    Ok(())
}

/// `unwrap`.
pub(crate) fn unwrap(args: &Args, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(args)?;
    let kek = MasterKey::from_bytes(*keys.require(args, "--kek", "KEK")?);
    let input = args.hex_input("WRAPPED_HEX")?;
    let wrapped: [u8; WRAPPED_KEY_LEN] = input.as_slice().try_into().map_err(|_| {
        Fail::usage(format_args!(
            "WRAPPED_HEX: {} octets, expected {WRAPPED_KEY_LEN} (a wrapped 128-bit key)",
            input.len()
        ))
    })?;
    let key: GlobalUnicastEncryptionKey =
        wrap::unwrap(&kek, &WrappedKey::new(wrapped)).map_err(|_| {
            Fail::check("unwrap: integrity check failed (wrong KEK or corrupted input)")
        })?;
    out.push_str(&hex(key.dangerous_expose_bytes()));
    Ok(())
}

/// `key-transfer`.
pub(crate) fn key_transfer(args: &Args, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(args)?;
    let mk = MasterKey::from_bytes(*keys.require(args, "--mk", "MK")?);
    let guek = keys
        .get(args, "--guek", "NEW_GUEK")?
        .map(|k| GlobalUnicastEncryptionKey::from_bytes(*k));
    let gbek = keys
        .get(args, "--gbek", "NEW_GBEK")?
        .map(|k| GlobalBroadcastEncryptionKey::from_bytes(*k));
    let ak = keys
        .get(args, "--ak", "NEW_AK")?
        .map(|k| AuthenticationKey::from_bytes(*k));
    let new_mk = keys
        .get(args, "--new-mk", "NEW_MK")?
        .map(|k| MasterKey::from_bytes(*k));
    if guek.is_none() && gbek.is_none() && ak.is_none() && new_mk.is_none() {
        return Err(Fail::usage(
            "nothing to transfer: give at least one of --guek, --gbek, --ak, --new-mk",
        ));
    }
    let transfer = KeyTransfer::wrap_new_keys(
        &mk,
        NewKeys {
            guek: guek.as_ref(),
            gbek: gbek.as_ref(),
            ak: ak.as_ref(),
            mk: new_mk.as_ref(),
        },
    )?;
    let mut buf = vec![0u8; transfer.buffer_len()];
    let n = transfer.emit(&mut buf)?;
    out.push_str(&hex(buf.get(..n).unwrap_or_default()));
    Ok(())
}

/// `hls5`: f(challenge) with our title and counter.
pub(crate) fn hls5(args: &Args, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(args)?;
    let title = parse_title(args.required("--system-title")?, "--system-title")?;
    let ic = parse_u32(args.required("--ic")?, "--ic")?;
    if ic == InvocationCounter::RESERVED {
        return Err(Fail::usage("--ic: 0xFFFFFFFF is reserved and never sent"));
    }
    let challenge = args.hex_input("CHALLENGE_HEX")?;
    let suite = suite(args, &keys)?;
    let response = hls5::respond(
        &suite,
        &title,
        &mut SingleUse::new(InvocationCounter::new(ic)),
        &challenge,
    )?;
    out.push_str(&hex(response.as_bytes()));
    Ok(())
}

/// `hls5-verify`: checks the peer's f(our challenge).
pub(crate) fn hls5_verify(args: &Args, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(args)?;
    let title = parse_title(args.required("--system-title")?, "--system-title")?;
    let challenge = parse_hex(args.required("--challenge")?, "--challenge")?;
    let response = args.hex_input("RESPONSE_HEX")?;
    let suite = suite(args, &keys)?;
    let verified = hls5::verify(&suite, &title, &challenge, &response)?;
    let ic = verified.invocation_counter().value();
    out.push_str(&format!("verified (invocation counter {ic:08X})"));
    Ok(())
}

/// `--role`.
fn role(text: &str) -> Result<KeyRole, Fail> {
    match text {
        "mk" => Ok(KeyRole::Master),
        "ak" => Ok(KeyRole::Authentication),
        "guek" => Ok(KeyRole::GlobalUnicastEncryption),
        "gbek" => Ok(KeyRole::GlobalBroadcastEncryption),
        "dk" => Ok(KeyRole::Dedicated),
        _ => Err(Fail::usage(format_args!(
            "--role: {text:?} is not mk, ak, guek, gbek or dk"
        ))),
    }
}

/// `--client`: a client name, or `device` (or nothing) for the MK.
fn client(text: Option<&str>, role: KeyRole) -> Result<Option<Client>, Fail> {
    let client = match text {
        None | Some("device") => None,
        Some(name) => Some(
            Client::ALL
                .into_iter()
                .find(|c| c.name() == name)
                .ok_or_else(|| {
                    Fail::usage(format_args!(
                        "--client: {name:?} is not data-collection, extended-data-collection, management, firmware or device"
                    ))
                })?,
        ),
    };
    match (role, client) {
        (KeyRole::Master, None) => Ok(None),
        (KeyRole::Master, Some(_)) => Err(Fail::usage(
            "--client: the MK is device-wide: give --client device or no --client",
        )),
        (_, None) => Err(Fail::usage(
            "--client: this role belongs to a client: give data-collection, extended-data-collection, management or firmware",
        )),
        (_, Some(Client::Public)) => Err(Fail::usage("--client: the public client has no keys")),
        (_, Some(c)) => Ok(Some(c)),
    }
}

/// `package`.
pub(crate) fn package(args: &Args, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(args)?;
    let role = role(args.required("--role")?)?;
    let device: SystemTitle = parse_title(args.required("--device")?, "--device")?;
    let client = client(args.value("--client"), role)?;
    let generation = parse_u32(args.required("--generation")?, "--generation")?;
    let key = key_input(args)?;
    let kek = keys.require(args, "--kek", "KEK")?;
    let id = RecordId {
        device,
        client,
        role,
        generation,
    };
    let dco = || Packager::new(&DcoKey::from_bytes(*kek));
    let shared = || Packager::new(&SharedKey::from_bytes(*kek));
    let record = match role {
        KeyRole::Master => *dco().package(&MasterKey::from_bytes(*key), id)?.record(),
        KeyRole::Authentication => *dco()
            .package(&AuthenticationKey::from_bytes(*key), id)?
            .record(),
        KeyRole::GlobalUnicastEncryption => *shared()
            .package(&GlobalUnicastEncryptionKey::from_bytes(*key), id)?
            .record(),
        KeyRole::GlobalBroadcastEncryption => *shared()
            .package(&GlobalBroadcastEncryptionKey::from_bytes(*key), id)?
            .record(),
        KeyRole::Dedicated => *shared()
            .package(&DedicatedKey::from_bytes(*key), id)?
            .record(),
    };
    out.push_str(&hex(record.as_bytes()));
    Ok(())
}

/// `unpackage`: the key inside a record, after its check.
pub(crate) fn unpackage(args: &Args, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(args)?;
    let record = PackagedRecord::parse(&args.hex_input("RECORD_HEX")?)?;
    let kek = keys.require(args, "--kek", "KEK")?;
    let dco = || Packager::new(&DcoKey::from_bytes(*kek));
    let shared = || Packager::new(&SharedKey::from_bytes(*kek));
    let key: Zeroizing<[u8; 16]> = Zeroizing::new(match record.role() {
        KeyRole::Master => *dco()
            .unpackage(&record.typed::<MasterKey>()?)?
            .dangerous_expose_bytes(),
        KeyRole::Authentication => *dco()
            .unpackage(&record.typed::<AuthenticationKey>()?)?
            .dangerous_expose_bytes(),
        KeyRole::GlobalUnicastEncryption => *shared()
            .unpackage(&record.typed::<GlobalUnicastEncryptionKey>()?)?
            .dangerous_expose_bytes(),
        KeyRole::GlobalBroadcastEncryption => *shared()
            .unpackage(&record.typed::<GlobalBroadcastEncryptionKey>()?)?
            .dangerous_expose_bytes(),
        KeyRole::Dedicated => *shared()
            .unpackage(&record.typed::<DedicatedKey>()?)?
            .dangerous_expose_bytes(),
    });
    out.push_str(&hex(&*key));
    Ok(())
}
