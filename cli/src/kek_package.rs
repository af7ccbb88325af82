//! `kek-package`: signed KEK packages without a token. `create`
//! signs a package from a KEK already wrapped under the receiver's
//! transport key; `verify` checks a package's signature, signer and
//! validity window as a receiving HSM's importer does before it unwraps;
//! `keygen` and `public-key` make a sender's Ed25519 key file and print
//! the line a receiver's trust file needs.
//!
//! Files: a signing key is 64 hex digits on one line (the RFC 8032
//! private key, the seed); a trust file has `NAME HEX` lines (`#`
//! comments); a package file is the armoured text form.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use dlms_sec::key::package::KeyCheckValue;
use dlms_sec_pkcs11::KekRole;
use dlms_sec_pkcs11::kek_package::{
    self, KekPackage, KekPackageError, PackageContents, PackageId, PackageSigningKey, TrustAnchors,
    create_package,
};
use zeroize::Zeroizing;

use crate::codec::{parse_array, public_hex};
use crate::fail::Fail;

/// `kek-package` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum KekPackageCommand {
    /// Signs a package for a KEK wrapped under the receiver's transport key
    ///
    /// Writes the armoured package to --out (which must not exist) and
    /// prints the package id.
    Create(Create),
    /// Checks a package's signature, signer and validity window
    ///
    /// Prints the package's fields; exits 1 when a check fails.
    Verify(Verify),
    /// Makes a sender's Ed25519 signing key file and prints its public key
    Keygen(Keygen),
    /// Prints the public key of a signing key file
    PublicKey(PublicKey),
}

/// The role a packaged KEK takes in the receiving token.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RoleChoice {
    /// The DCO Key as one object (MKs and AKs)
    Dco,
    /// The DCO Key for MKs only
    DcoMaster,
    /// The DCO Key for AKs only
    DcoAuthentication,
    /// The Shared Key
    Shared,
}

/// `kek-package create`.
#[derive(Debug, Args)]
pub(crate) struct Create {
    /// The KEK wrapped under the transport key (RFC 3394, 24 octets)
    #[arg(long, value_name = "HEX")]
    wrapped: String,
    /// The KEK's label in the receiving token
    #[arg(long, value_name = "LABEL")]
    label: String,
    /// The transport key's label in the receiving token
    #[arg(long, value_name = "LABEL")]
    transport: String,
    /// The KEK's role
    #[arg(long, value_name = "ROLE")]
    role: RoleChoice,
    /// The KEK's check value (3 octets)
    #[arg(long, value_name = "HEX")]
    kcv: String,
    /// Valid from, Unix seconds
    #[arg(long, value_name = "T")]
    not_before: u64,
    /// Valid until, inclusive, Unix seconds
    #[arg(long, value_name = "T")]
    not_after: u64,
    /// The sender's name, as receivers' trust files know it
    #[arg(long, value_name = "NAME")]
    sender: String,
    /// The sender's signing key file (64 hex digits)
    #[arg(long, value_name = "FILE")]
    signing_key: PathBuf,
    /// Where to write the package (must not exist)
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// `kek-package verify`.
#[derive(Debug, Args)]
pub(crate) struct Verify {
    /// The package file
    #[arg(long, value_name = "FILE")]
    package: PathBuf,
    /// The trust file: lines NAME HEX (public key), # comments
    #[arg(long, value_name = "FILE")]
    trust: PathBuf,
    /// The time to check the window at, Unix seconds [default: now]
    #[arg(long, value_name = "T")]
    now: Option<u64>,
}

/// `kek-package keygen`.
#[derive(Debug, Args)]
pub(crate) struct Keygen {
    /// Where to write the signing key (must not exist; mode 0600)
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// `kek-package public-key`.
#[derive(Debug, Args)]
pub(crate) struct PublicKey {
    /// The signing key file
    #[arg(long, value_name = "FILE")]
    signing_key: PathBuf,
}

/// Runs a `kek-package` subcommand.
pub(crate) fn run(command: &KekPackageCommand, out: &mut String) -> Result<(), Fail> {
    match command {
        KekPackageCommand::Create(a) => create(a, out),
        KekPackageCommand::Verify(a) => verify(a, out),
        KekPackageCommand::Keygen(a) => keygen(a, out),
        KekPackageCommand::PublicKey(a) => {
            out.push_str(&signing_key(&a.signing_key)?.public_key().to_string());
            Ok(())
        }
    }
}

fn create(a: &Create, out: &mut String) -> Result<(), Fail> {
    let wrapped = parse_array::<24>(&a.wrapped, "--wrapped")?;
    let kcv = parse_array::<3>(&a.kcv, "--kcv")?;
    let key = signing_key(&a.signing_key)?;
    let id = PackageId::generate(&mut getrandom::SysRng)
        .map_err(|e| Fail::usage(format_args!("no random numbers: {e}")))?;
    let contents = PackageContents {
        label: a.label.clone(),
        transport: a.transport.clone(),
        role: match a.role {
            RoleChoice::Dco => KekRole::Dco,
            RoleChoice::DcoMaster => KekRole::DcoMaster,
            RoleChoice::DcoAuthentication => KekRole::DcoAuthentication,
            RoleChoice::Shared => KekRole::Shared,
        },
        wrapped: *wrapped,
        kcv: KeyCheckValue(*kcv),
        not_before: a.not_before,
        not_after: a.not_after,
        id,
    };
    let package = create_package(contents, &a.sender, &key)
        .map_err(|e| Fail::usage(format_args!("cannot make the package: {e}")))?;
    let text = package
        .to_armour()
        .map_err(|e| Fail::usage(format_args!("cannot encode the package: {e}")))?;
    write_new(&a.out, text.as_bytes(), false)?;
    out.push_str(&id.to_string());
    Ok(())
}

fn verify(a: &Verify, out: &mut String) -> Result<(), Fail> {
    let text = read(&a.package, "--package")?;
    let package = KekPackage::from_armour(&text)
        .map_err(|e| Fail::usage(format_args!("--package {}: {e}", a.package.display())))?;
    let trust = TrustAnchors::parse(&read(&a.trust, "--trust")?)
        .map_err(|e| Fail::usage(format_args!("--trust {}: {e}", a.trust.display())))?;
    let now = match a.now {
        Some(t) => t,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| Fail::usage("the system clock is before 1970: give --now"))?
            .as_secs(),
    };
    let verified = kek_package::verify(&package, &trust, now).map_err(refusal)?;
    let p = verified.package();
    let c = &p.contents;
    let lines = [
        ("package", c.id.to_string()),
        ("label", c.label.clone()),
        ("transport", c.transport.clone()),
        ("role", role_name(c.role).to_owned()),
        ("wrapped", public_hex(&c.wrapped)),
        ("kcv", public_hex(&c.kcv.0)),
        ("not-before", c.not_before.to_string()),
        ("not-after", c.not_after.to_string()),
        ("sender", p.sender.clone()),
        ("sender-key", p.sender_key.to_string()),
        (
            "signature",
            "valid, signer trusted, within the window".to_owned(),
        ),
    ];
    let body: Vec<String> = lines.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    out.push_str(&body.join("\n"));
    Ok(())
}

fn keygen(a: &Keygen, out: &mut String) -> Result<(), Fail> {
    let key = PackageSigningKey::generate(&mut getrandom::SysRng)
        .map_err(|e| Fail::usage(format_args!("no random numbers: {e}")))?;
    let mut line = key.to_hex();
    line.push('\n');
    write_new(&a.out, line.as_bytes(), true)?;
    out.push_str(&key.public_key().to_string());
    Ok(())
}

const fn role_name(role: KekRole) -> &'static str {
    match role {
        KekRole::Dco => "dco",
        KekRole::DcoMaster => "dco-master",
        KekRole::DcoAuthentication => "dco-authentication",
        KekRole::Shared => "shared",
        _ => "other",
    }
}

/// A refusal: failed checks exit 1, malformed input 2.
fn refusal(e: KekPackageError) -> Fail {
    match e {
        KekPackageError::Malformed(_) => Fail::usage(e),
        _ => Fail::check(e),
    }
}

fn read(path: &Path, flag: &str) -> Result<String, Fail> {
    std::fs::read_to_string(path)
        .map_err(|e| Fail::usage(format_args!("cannot read {flag} {}: {e}", path.display())))
}

fn signing_key(path: &Path) -> Result<PackageSigningKey, Fail> {
    let text = Zeroizing::new(read(path, "--signing-key")?);
    PackageSigningKey::from_hex(&text).map_err(|_| {
        Fail::usage(format_args!(
            "--signing-key {}: expected 64 hex digits (an Ed25519 private key)",
            path.display()
        ))
    })
}

/// Writes a file that must not exist yet (owner-only when `private`).
fn write_new(path: &Path, data: &[u8], private: bool) -> Result<(), Fail> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options
        .open(path)
        .map_err(|e| Fail::usage(format_args!("cannot create {}: {e}", path.display())))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|e| Fail::usage(format_args!("cannot write {}: {e}", path.display())))
}
