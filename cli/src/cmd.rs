//! The subcommands other than `decode`: each takes its parsed flags and
//! writes its one line of output to `out`, or fails with a [`Fail`].

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
use dlms_sec::suite0::{PeerTitle, Protect, Suite0, Unprotect};
use dlms_sec::types::Client;
use dlms_sec::wire::{CipheredForm, FrameLayout, KeyTransfer};
use dlms_sec::{InvocationCounter, KeyKind, Protection, SecurityPolicy};
use zeroize::Zeroizing;

use crate::cli::{self, Checks, ClientChoice, Form, KeyChoice, Policy, Require, Role, hex_input};
use crate::codec::hex;
use crate::fail::Fail;
use crate::keys::{KeyBytes, Keys};

/// The suite-0 context: EK (required), AK, BK and DK when given. Without
/// an AK it serves frames under encryption only, where the AK plays no
/// part (an S1SP holds the GUEK alone).
pub(crate) fn suite(
    keys: &Keys,
    ek: Option<&KeyBytes>,
    ak: Option<&KeyBytes>,
    bk: Option<&KeyBytes>,
    dk: Option<&KeyBytes>,
) -> Result<Suite0, Fail> {
    let ek = keys.require(ek, "--ek", "EK")?;
    let ek = GlobalUnicastEncryptionKey::from_bytes(*ek);
    let mut suite = match keys.get(ak, "AK")? {
        Some(ak) => Suite0::new(&ek, &AuthenticationKey::from_bytes(*ak)),
        None => Suite0::encryption_only(&ek),
    };
    if let Some(bk) = keys.get(bk, "BK")? {
        suite = suite.with_broadcast_key(&GlobalBroadcastEncryptionKey::from_bytes(*bk));
    }
    if let Some(dk) = keys.get(dk, "DK")? {
        suite.set_dedicated_key(&DedicatedKey::from_bytes(*dk));
    }
    Ok(suite)
}

/// The suite-0 context of `--ek`, `--ak`, `--bk`, `--dk` and `--keys`.
pub(crate) fn suite_of(keys: &Keys, flags: &cli::SuiteKeys) -> Result<Suite0, Fail> {
    suite(
        keys,
        flags.ek.as_ref(),
        flags.ak.as_ref(),
        flags.bk.as_ref(),
        flags.dk.as_ref(),
    )
}

/// `--form` and `--key` together.
fn form_and_key(
    form: Option<Form>,
    key: Option<KeyChoice>,
) -> Result<(CipheredForm<'static>, KeyKind), Fail> {
    let key = key.map(|k| match k {
        KeyChoice::Unicast => KeyKind::GlobalUnicast,
        KeyChoice::Broadcast => KeyKind::GlobalBroadcast,
        KeyChoice::Dedicated => KeyKind::Dedicated,
    });
    let general = CipheredForm::General {
        with_system_title: true,
    };
    match (form.unwrap_or(Form::Service), key) {
        (Form::Service, key) => Ok((
            CipheredForm::ServiceSpecific,
            key.unwrap_or(KeyKind::GlobalUnicast),
        )),
        (Form::GeneralGlo, None | Some(KeyKind::GlobalUnicast)) => {
            Ok((general, KeyKind::GlobalUnicast))
        }
        (Form::GeneralGlo, Some(KeyKind::GlobalBroadcast)) => {
            Ok((general, KeyKind::GlobalBroadcast))
        }
        (Form::GeneralGlo, Some(KeyKind::Dedicated)) => Err(Fail::usage(
            "--form general-glo takes a global key: use --form general-ded for the dedicated key",
        )),
        (Form::GeneralDed, None | Some(KeyKind::Dedicated)) => Ok((general, KeyKind::Dedicated)),
        (Form::GeneralDed, Some(_)) => Err(Fail::usage(
            "--form general-ded takes the dedicated key: use --form general-glo for a global key",
        )),
    }
}

/// `protect`.
pub(crate) fn protect(a: &cli::Protect, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(a.keys.file.path.as_deref())?;
    let protection = match a.policy {
        Policy::Auth => Protection::Authenticated,
        Policy::Enc => Protection::Encrypted,
        Policy::AuthEnc => Protection::AuthenticatedEncrypted,
    };
    let (form, key) = form_and_key(a.form, a.key)?;
    let apdu = hex_input(&a.apdu, "APDU_HEX")?;
    let suite = suite_of(&keys, &a.keys)?;
    let req = Protect {
        protection,
        key,
        form,
        system_title: a.system_title,
    };
    let mut frame = vec![0u8; suite.frame_len(&req, &apdu)?];
    let n = suite.protect(
        &req,
        &mut SingleUse::dangerous_new(InvocationCounter::new(a.ic)),
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

/// Verifies and decrypts `frame` with the keys and `checks`
/// (`--system-title`, `--require`, `--after-ic`): what `unprotect` and
/// `decode` share.
pub(crate) fn open(
    checks: &Checks,
    keys: &Keys,
    flags: &cli::SuiteKeys,
    frame: &[u8],
    layout: &FrameLayout,
) -> Result<Opened, Fail> {
    if layout.system_title.is_none() && checks.system_title.is_none() {
        return Err(Fail::usage(
            "this frame carries no system title: give the sender's with --system-title",
        ));
    }
    let policy = match checks.require {
        None | Some(Require::None) => SecurityPolicy::AcceptAnyProtection,
        Some(Require::Auth) => SecurityPolicy::Authenticated,
        Some(Require::Enc) => SecurityPolicy::Encrypted,
        Some(Require::AuthEnc) => SecurityPolicy::AuthenticatedEncrypted,
    };
    let suite = suite_of(keys, flags)?;
    let mut buf = Zeroizing::new(frame.to_vec());
    let received = suite.unprotect(
        &mut buf,
        &Unprotect {
            // Without --system-title the tool reads frames from any sender:
            // the title the frame carries is the one used (and reported).
            peer_system_title: checks
                .system_title
                .map_or(PeerTitle::CarriedByFrame, PeerTitle::Expected),
            policy,
        },
    )?;
    if let Some(last) = checks.after_ic {
        let mut guard = ReplayGuard::resume(
            received.system_title(),
            received.key(),
            suite.key_fingerprint(received.key())?,
            Some(InvocationCounter::new(last)),
        );
        let ic = received.invocation_counter();
        // Under encryption only nothing vouches for the counter, so no guard
        // admits the frame: `--after-ic` then checks the number alone, as
        // the warning printed for such frames says.
        let refused = if received.replay_proof().is_some() {
            received.admit_into(&mut guard).is_err()
        } else {
            guard.check(ic).is_err()
        };
        if refused {
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
pub(crate) fn unprotect(a: &cli::Unprotect, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(a.keys.file.path.as_deref())?;
    let frame = hex_input(&a.frame, "FRAME_HEX")?;
    let layout = FrameLayout::parse(&frame)?;
    let opened = open(&a.checks, &keys, &a.keys, &frame, &layout)?;
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
fn key_input(words: &[String]) -> Result<KeyBytes, Fail> {
    let input = hex_input(words, "KEY_HEX")?;
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
pub(crate) fn wrap(a: &cli::Wrap, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(a.file.path.as_deref())?;
    let kek = MasterKey::from_bytes(*keys.require(a.kek.as_ref(), "--kek", "KEK")?);
    let key = key_input(&a.key)?;
    // The wrap does not depend on the key's role; any transferable type does.
    let wrapped = wrap::wrap(&kek, &GlobalUnicastEncryptionKey::from_bytes(*key));
    out.push_str(&hex(wrapped.as_bytes()));
    Ok(())
}

/// `unwrap`.
pub(crate) fn unwrap(a: &cli::Unwrap, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(a.file.path.as_deref())?;
    let kek = MasterKey::from_bytes(*keys.require(a.kek.as_ref(), "--kek", "KEK")?);
    let input = hex_input(&a.wrapped, "WRAPPED_HEX")?;
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
pub(crate) fn key_transfer(a: &cli::KeyTransfer, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(a.file.path.as_deref())?;
    let mk = MasterKey::from_bytes(*keys.require(a.mk.as_ref(), "--mk", "MK")?);
    let guek = keys
        .get(a.guek.as_ref(), "NEW_GUEK")?
        .map(|k| GlobalUnicastEncryptionKey::from_bytes(*k));
    let gbek = keys
        .get(a.gbek.as_ref(), "NEW_GBEK")?
        .map(|k| GlobalBroadcastEncryptionKey::from_bytes(*k));
    let ak = keys
        .get(a.ak.as_ref(), "NEW_AK")?
        .map(|k| AuthenticationKey::from_bytes(*k));
    let new_mk = keys
        .get(a.new_mk.as_ref(), "NEW_MK")?
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
pub(crate) fn hls5(a: &cli::Hls5, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(a.keys.file.path.as_deref())?;
    let challenge = hex_input(&a.challenge, "CHALLENGE_HEX")?;
    let suite = suite(&keys, a.keys.ek.as_ref(), a.keys.ak.as_ref(), None, None)?;
    let response = hls5::respond(
        &suite,
        &a.system_title,
        &mut SingleUse::dangerous_new(InvocationCounter::new(a.ic)),
        &challenge,
    )?;
    out.push_str(&hex(response.as_bytes()));
    Ok(())
}

/// `hls5-verify`: checks the peer's f(our challenge).
pub(crate) fn hls5_verify(a: &cli::Hls5Verify, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(a.keys.file.path.as_deref())?;
    let response = hex_input(&a.response, "RESPONSE_HEX")?;
    let suite = suite(&keys, a.keys.ek.as_ref(), a.keys.ak.as_ref(), None, None)?;
    let verified = hls5::verify(&suite, &a.system_title, &a.challenge, &response)?;
    let ic = verified.invocation_counter().value();
    out.push_str(&format!("verified (invocation counter {ic:08X})"));
    Ok(())
}

/// `--client` for a key of `role`: none for the MK, a keyed client otherwise.
fn client(choice: Option<ClientChoice>, role: KeyRole) -> Result<Option<Client>, Fail> {
    let client = match choice {
        None | Some(ClientChoice::Device) => None,
        Some(ClientChoice::DataCollection) => Some(Client::DataCollection),
        Some(ClientChoice::ExtendedDataCollection) => Some(Client::ExtendedDataCollection),
        Some(ClientChoice::Management) => Some(Client::Management),
        Some(ClientChoice::Firmware) => Some(Client::Firmware),
        Some(ClientChoice::Public) => Some(Client::Public),
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
pub(crate) fn package(a: &cli::Package, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(a.file.path.as_deref())?;
    let role = match a.role {
        Role::Mk => KeyRole::Master,
        Role::Ak => KeyRole::Authentication,
        Role::Guek => KeyRole::GlobalUnicastEncryption,
        Role::Gbek => KeyRole::GlobalBroadcastEncryption,
        Role::Dk => KeyRole::Dedicated,
    };
    let client = client(a.client, role)?;
    let key = key_input(&a.key)?;
    let kek = keys.require(a.kek.as_ref(), "--kek", "KEK")?;
    let id = RecordId {
        device: a.device,
        client,
        role,
        generation: a.generation,
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
pub(crate) fn unpackage(a: &cli::Unpackage, out: &mut String) -> Result<(), Fail> {
    let keys = Keys::load(a.file.path.as_deref())?;
    let record = PackagedRecord::parse(&hex_input(&a.record, "RECORD_HEX")?)?;
    let kek = keys.require(a.kek.as_ref(), "--kek", "KEK")?;
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
