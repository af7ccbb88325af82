//! Signed KEK packages: a DCO Key or Shared Key, wrapped under a
//! transport key the receiving HSM already holds, with its label, role,
//! check value, validity window, a package id and the sender's identity,
//! all signed with the sender's Ed25519 key (RFC 8032).
//!
//! Ed25519 rather than ECDSA P-256: its signatures are deterministic, so
//! no per-signature nonce can be reused or biased.
//!
//! This module needs no token: [`KekPackage`] is the value type
//! ([`KekPackage::parse`] / [`KekPackage::buffer_len`] /
//! [`KekPackage::emit`], and an armoured text form for files),
//! [`create_package`] signs one, and [`verify`] checks everything a
//! receiver checks before its HSM is involved. [`Token::import_kek_package`]
//! then claims the package id in a [`PackageIdGuard`], unwraps the KEK in
//! the token and compares its check value with the package's.
//!
//! # Encoding, version 1
//!
//! | octets | field |
//! |---|---|
//! | 4 | magic `DSKP` |
//! | 1 | version, 1 |
//! | 1 | role: 1 DCO Key (one object), 2 DCO Key for MKs, 3 DCO Key for AKs, 4 Shared Key |
//! | 1 + L | the KEK's label: length L (1 to 64), UTF-8 without control characters |
//! | 1 + T | the transport key's label, as the KEK's |
//! | 24 | the KEK wrapped under the transport key (RFC 3394) |
//! | 3 | the KEK's check value, AES(KEK, 0)'s first three octets |
//! | 8 | not before, Unix seconds, big-endian |
//! | 8 | not after, Unix seconds, big-endian (not before ≤ not after) |
//! | 16 | package id, random |
//! | 1 + N | the sender's name: length N (1 to 64), visible ASCII (`!` to `~`) |
//! | 32 | the sender's Ed25519 public key |
//! | 1 + S | signature: length S, 64 (or 0 for a package that is not signed) |
//!
//! The signature is over every octet before its length octet. The
//! encoding has one form for each value (lengths are exact, nothing
//! follows the signature), so the signed octets are canonical.
//!
//! [`Token::import_kek_package`]: crate::Token::import_kek_package

use std::collections::HashSet;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use dlms_sec::key::package::KeyCheckValue;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand_core::TryCryptoRng;
use zeroize::Zeroizing;

use crate::error::Pkcs11Error;
use crate::token::KekRole;

/// The format's magic octets.
pub const MAGIC: [u8; 4] = *b"DSKP";
/// The format version this module writes and reads.
pub const VERSION: u8 = 1;
/// An AES-128 key wrapped with RFC 3394.
pub const WRAPPED_LEN: usize = 24;
/// A package id.
pub const PACKAGE_ID_LEN: usize = 16;
/// An Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// An Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// The longest label or sender name.
pub const MAX_NAME_LEN: usize = 64;

const ARMOUR_BEGIN: &str = "-----BEGIN DLMS-SEC KEK PACKAGE-----";
const ARMOUR_END: &str = "-----END DLMS-SEC KEK PACKAGE-----";
/// Hex digits per armour line.
const ARMOUR_WIDTH: usize = 64;

/// Why octets are not a KEK package (or a package cannot be encoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// The octets end before the package does.
    Truncated,
    /// The first four octets are not `DSKP`.
    Magic,
    /// A version this module does not read.
    Version(u8),
    /// A role code outside 1 to 4.
    Role(u8),
    /// A label or the sender's name is empty, too long or has characters
    /// it may not have; the field is named.
    Name(&'static str),
    /// Not before is later than not after.
    Window,
    /// A signature length other than 0 or 64.
    SignatureLength(u8),
    /// Octets follow the signature.
    Trailing,
    /// The output buffer is too small.
    BufferTooSmall {
        /// The octets [`KekPackage::buffer_len`] needs.
        required: usize,
    },
    /// The text form is not armoured hex.
    Armour,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("truncated"),
            Self::Magic => f.write_str("not a KEK package (magic)"),
            Self::Version(v) => write!(f, "version {v} is not supported"),
            Self::Role(r) => write!(f, "role code {r} is not a KEK role"),
            Self::Name(field) => write!(
                f,
                "the {field} must be 1 to {MAX_NAME_LEN} octets of the characters it allows"
            ),
            Self::Window => f.write_str("not before is later than not after"),
            Self::SignatureLength(n) => write!(f, "a signature of {n} octets"),
            Self::Trailing => f.write_str("octets follow the signature"),
            Self::BufferTooSmall { required } => {
                write!(f, "the buffer holds fewer than {required} octets")
            }
            Self::Armour => f.write_str("the text is not an armoured KEK package"),
        }
    }
}

impl std::error::Error for FormatError {}

/// Why a package is refused. Nothing is imported after any of them.
#[derive(Debug)]
#[non_exhaustive]
pub enum KekPackageError {
    /// The octets are not a package.
    Malformed(FormatError),
    /// The package carries no signature.
    Unsigned,
    /// The signature does not verify under the public key in the package:
    /// a field was altered after signing (or the key is no Ed25519 key).
    WrongSignature,
    /// The signature verifies, but the signer is not trusted: its name is
    /// not in the trust anchors, or the name is bound to another key there.
    ForeignSigner {
        /// The name in the package.
        sender: String,
        /// Whether the trust anchors know the name (bound to another key).
        name_known: bool,
    },
    /// `now` is before the package's not-before time.
    NotYetValid {
        /// Not before.
        not_before: u64,
        /// The time checked.
        now: u64,
    },
    /// `now` is after the package's not-after time.
    Expired {
        /// Not after.
        not_after: u64,
        /// The time checked.
        now: u64,
    },
    /// The package id was claimed before: the package was presented already.
    Replayed {
        /// The id.
        id: PackageId,
    },
    /// The token computed another check value for the unwrapped KEK than
    /// the package states; the unwrapped object was destroyed.
    KcvMismatch {
        /// The package's check value.
        package: KeyCheckValue,
        /// The one the token computed.
        token: KeyCheckValue,
    },
    /// The replay guard could not read or record the id.
    Guard(std::io::Error),
    /// The token refused: the label is taken, the transport key is
    /// missing, the RFC 3394 integrity check failed, or a module failure.
    Token(Pkcs11Error),
}

impl fmt::Display for KekPackageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "malformed KEK package: {e}"),
            Self::Unsigned => f.write_str("the KEK package is not signed"),
            Self::WrongSignature => f.write_str(
                "the KEK package's signature does not verify: it was altered after signing",
            ),
            Self::ForeignSigner {
                sender,
                name_known: true,
            } => write!(
                f,
                "the KEK package is signed by a key the trust anchors do not bind to {sender:?}"
            ),
            Self::ForeignSigner {
                sender,
                name_known: false,
            } => write!(
                f,
                "the KEK package's sender {sender:?} is not in the trust anchors"
            ),
            Self::NotYetValid { not_before, now } => write!(
                f,
                "the KEK package is not valid before {not_before} (now {now})"
            ),
            Self::Expired { not_after, now } => {
                write!(f, "the KEK package expired at {not_after} (now {now})")
            }
            Self::Replayed { id } => write!(f, "the KEK package {id} was presented before"),
            Self::KcvMismatch { package, token } => write!(
                f,
                "the unwrapped KEK's check value {} differs from the package's {}",
                hex(&token.0),
                hex(&package.0)
            ),
            Self::Guard(e) => write!(f, "the package id guard failed: {e}"),
            Self::Token(e) => write!(f, "the token refused the KEK: {e}"),
        }
    }
}

impl std::error::Error for KekPackageError {}

impl From<FormatError> for KekPackageError {
    fn from(e: FormatError) -> Self {
        Self::Malformed(e)
    }
}

impl From<Pkcs11Error> for KekPackageError {
    fn from(e: Pkcs11Error) -> Self {
        Self::Token(e)
    }
}

/// A package's id: 16 random octets, presented once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PackageId(pub [u8; PACKAGE_ID_LEN]);

impl PackageId {
    /// A random id.
    ///
    /// # Errors
    /// The generator's.
    pub fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<Self, R::Error> {
        let mut id = [0u8; PACKAGE_ID_LEN];
        rng.try_fill_bytes(&mut id)?;
        Ok(Self(id))
    }
}

impl fmt::Display for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// A sender's Ed25519 public key, as octets (checked when a signature is
/// verified under it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderKey(pub [u8; PUBLIC_KEY_LEN]);

impl fmt::Display for SenderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// A sender's Ed25519 signing key: wiped on drop, redacted under `Debug`.
///
/// Key files hold the 32-octet RFC 8032 private key (the seed) as 64 hex
/// digits on one line ([`PackageSigningKey::from_hex`]).
pub struct PackageSigningKey(SigningKey);

impl PackageSigningKey {
    /// The key from its 32-octet seed.
    #[must_use]
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The key from 64 hex digits (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`FormatError::Armour`] when the text is not 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, FormatError> {
        let seed: Zeroizing<Vec<u8>> = Zeroizing::new(unhex(text.trim())?);
        let seed: &[u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| FormatError::Armour)?;
        Ok(Self::from_seed(seed))
    }

    /// A new random key.
    ///
    /// # Errors
    /// The generator's.
    pub fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<Self, R::Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.try_fill_bytes(seed.as_mut_slice())?;
        Ok(Self::from_seed(&seed))
    }

    /// The seed as 64 hex digits, for a key file.
    #[must_use]
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex(self.0.as_bytes()))
    }

    /// The public key.
    #[must_use]
    pub fn public_key(&self) -> SenderKey {
        SenderKey(self.0.verifying_key().to_bytes())
    }
}

impl fmt::Debug for PackageSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackageSigningKey")
            .field("public_key", &self.public_key().to_string())
            .finish_non_exhaustive()
    }
}

/// What a sender puts in a package before signing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageContents {
    /// The label the KEK gets in the receiving token.
    pub label: String,
    /// The label of the transport key it is wrapped under, in the
    /// receiving token.
    pub transport: String,
    /// The KEK's role.
    pub role: KekRole,
    /// The KEK wrapped under the transport key (RFC 3394).
    pub wrapped: [u8; WRAPPED_LEN],
    /// The KEK's check value.
    pub kcv: KeyCheckValue,
    /// Valid from (Unix seconds).
    pub not_before: u64,
    /// Valid until, inclusive (Unix seconds).
    pub not_after: u64,
    /// The package id.
    pub id: PackageId,
}

/// A KEK package, signed or not: the value type of the encoding above.
/// Parsing checks the encoding only; [`verify`] checks the signature, the
/// signer and the validity window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KekPackage {
    /// Everything but the sender and the signature.
    pub contents: PackageContents,
    /// The sender's name.
    pub sender: String,
    /// The sender's public key.
    pub sender_key: SenderKey,
    /// The signature (`None`: not signed).
    pub signature: Option<[u8; SIGNATURE_LEN]>,
}

const fn role_code(role: KekRole) -> Option<u8> {
    match role {
        KekRole::Dco => Some(1),
        KekRole::DcoMaster => Some(2),
        KekRole::DcoAuthentication => Some(3),
        KekRole::Shared => Some(4),
        // A transport key is not distributed in a KEK package.
        KekRole::Transport => None,
    }
}

const fn role_of(code: u8) -> Option<KekRole> {
    match code {
        1 => Some(KekRole::Dco),
        2 => Some(KekRole::DcoMaster),
        3 => Some(KekRole::DcoAuthentication),
        4 => Some(KekRole::Shared),
        _ => None,
    }
}

/// A label: 1 to 64 octets of UTF-8 without control characters.
fn label_ok(s: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&s.len()) && !s.chars().any(char::is_control)
}

/// A sender's name: 1 to 64 visible ASCII characters (no spaces, so a
/// trust file's line splits at the first space).
fn sender_ok(s: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

impl PackageContents {
    fn check(&self) -> Result<(), FormatError> {
        if role_code(self.role).is_none() {
            return Err(FormatError::Role(0));
        }
        if !label_ok(&self.label) {
            return Err(FormatError::Name("KEK label"));
        }
        if !label_ok(&self.transport) {
            return Err(FormatError::Name("transport key label"));
        }
        if self.not_before > self.not_after {
            return Err(FormatError::Window);
        }
        Ok(())
    }
}

/// A cursor over untrusted octets: every read is checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(FormatError::Truncated)?;
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        self.take(N)?.try_into().map_err(|_| FormatError::Truncated)
    }

    fn u8(&mut self) -> Result<u8, FormatError> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }

    fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_be_bytes(self.array::<8>()?))
    }

    fn name(&mut self, field: &'static str, ok: fn(&str) -> bool) -> Result<String, FormatError> {
        let n = usize::from(self.u8()?);
        let raw = self.take(n)?;
        let s = std::str::from_utf8(raw).map_err(|_| FormatError::Name(field))?;
        if ok(s) {
            Ok(s.to_owned())
        } else {
            Err(FormatError::Name(field))
        }
    }
}

/// Appends a length-prefixed name (its length is checked beforehand).
fn push_name(out: &mut Vec<u8>, s: &str) -> Result<(), FormatError> {
    out.push(u8::try_from(s.len()).map_err(|_| FormatError::Name("name"))?);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

impl KekPackage {
    /// Parses a package (the encoding only: no signature is checked).
    ///
    /// # Errors
    /// The first [`FormatError`] met, reading front to back.
    pub fn parse(octets: &[u8]) -> Result<Self, FormatError> {
        let mut r = Reader(octets);
        if r.array::<4>()? != MAGIC {
            return Err(FormatError::Magic);
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(FormatError::Version(version));
        }
        let code = r.u8()?;
        let role = role_of(code).ok_or(FormatError::Role(code))?;
        let label = r.name("KEK label", label_ok)?;
        let transport = r.name("transport key label", label_ok)?;
        let wrapped = r.array::<WRAPPED_LEN>()?;
        let kcv = KeyCheckValue(r.array::<3>()?);
        let not_before = r.u64()?;
        let not_after = r.u64()?;
        if not_before > not_after {
            return Err(FormatError::Window);
        }
        let id = PackageId(r.array::<PACKAGE_ID_LEN>()?);
        let sender = r.name("sender name", sender_ok)?;
        let sender_key = SenderKey(r.array::<PUBLIC_KEY_LEN>()?);
        let signature = match r.u8()? {
            0 => None,
            64 => Some(r.array::<SIGNATURE_LEN>()?),
            n => return Err(FormatError::SignatureLength(n)),
        };
        if !r.0.is_empty() {
            return Err(FormatError::Trailing);
        }
        Ok(Self {
            contents: PackageContents {
                label,
                transport,
                role,
                wrapped,
                kcv,
                not_before,
                not_after,
                id,
            },
            sender,
            sender_key,
            signature,
        })
    }

    /// The octets [`Self::emit`] writes.
    #[must_use]
    pub fn buffer_len(&self) -> usize {
        let c = &self.contents;
        let sig = if self.signature.is_some() {
            SIGNATURE_LEN
        } else {
            0
        };
        [
            MAGIC.len(),
            2,
            1,
            c.label.len(),
            1,
            c.transport.len(),
            WRAPPED_LEN,
            3,
            16,
            PACKAGE_ID_LEN,
            1,
            self.sender.len(),
            PUBLIC_KEY_LEN,
            1,
            sig,
        ]
        .iter()
        .fold(0usize, |a, n| a.saturating_add(*n))
    }

    /// The signed octets: the encoding up to the signature's length octet.
    ///
    /// # Errors
    /// [`FormatError`] when a field cannot be encoded (a name too long or
    /// empty, a transport role, a reversed window).
    pub fn signed_octets(&self) -> Result<Vec<u8>, FormatError> {
        let c = &self.contents;
        c.check()?;
        if !sender_ok(&self.sender) {
            return Err(FormatError::Name("sender name"));
        }
        let code = role_code(c.role).ok_or(FormatError::Role(0))?;
        let mut out = Vec::with_capacity(self.buffer_len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(code);
        push_name(&mut out, &c.label)?;
        push_name(&mut out, &c.transport)?;
        out.extend_from_slice(&c.wrapped);
        out.extend_from_slice(&c.kcv.0);
        out.extend_from_slice(&c.not_before.to_be_bytes());
        out.extend_from_slice(&c.not_after.to_be_bytes());
        out.extend_from_slice(&c.id.0);
        push_name(&mut out, &self.sender)?;
        out.extend_from_slice(&self.sender_key.0);
        Ok(out)
    }

    /// The encoding as a vector.
    ///
    /// # Errors
    /// As [`Self::signed_octets`].
    pub fn to_vec(&self) -> Result<Vec<u8>, FormatError> {
        let mut out = self.signed_octets()?;
        match &self.signature {
            Some(s) => {
                out.push(64);
                out.extend_from_slice(s);
            }
            None => out.push(0),
        }
        Ok(out)
    }

    /// Writes the encoding to the front of `buf`; returns its length.
    ///
    /// # Errors
    /// [`FormatError::BufferTooSmall`]; as [`Self::signed_octets`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, FormatError> {
        let octets = self.to_vec()?;
        let n = octets.len();
        buf.get_mut(..n)
            .ok_or(FormatError::BufferTooSmall { required: n })?
            .copy_from_slice(&octets);
        Ok(n)
    }

    /// The text form for files: the encoding in upper-case hex, 64 digits
    /// a line, between `-----BEGIN DLMS-SEC KEK PACKAGE-----` and
    /// `-----END DLMS-SEC KEK PACKAGE-----`.
    ///
    /// # Errors
    /// As [`Self::signed_octets`].
    pub fn to_armour(&self) -> Result<String, FormatError> {
        let digits = hex(&self.to_vec()?);
        let mut text = String::with_capacity(digits.len().saturating_add(128));
        text.push_str(ARMOUR_BEGIN);
        text.push('\n');
        let mut rest = digits.as_str();
        while !rest.is_empty() {
            let (line, tail) = rest.split_at(rest.len().min(ARMOUR_WIDTH));
            text.push_str(line);
            text.push('\n');
            rest = tail;
        }
        text.push_str(ARMOUR_END);
        text.push('\n');
        Ok(text)
    }

    /// Parses the text form (whitespace between the armour lines ignored).
    ///
    /// # Errors
    /// [`FormatError::Armour`]; then as [`Self::parse`].
    pub fn from_armour(text: &str) -> Result<Self, FormatError> {
        let body = text
            .trim()
            .strip_prefix(ARMOUR_BEGIN)
            .and_then(|t| t.strip_suffix(ARMOUR_END))
            .ok_or(FormatError::Armour)?;
        let digits: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        Self::parse(&unhex(&digits)?)
    }
}

/// Builds and signs a package from an already-wrapped KEK (the sender's
/// HSM wraps it under the receiver's transport key and computes its check
/// value).
///
/// # Errors
/// [`FormatError`] when a field cannot be encoded: a label or the sender's
/// name empty, too long or with characters it may not have; a transport
/// role; not before later than not after.
pub fn create_package(
    contents: PackageContents,
    sender: &str,
    key: &PackageSigningKey,
) -> Result<KekPackage, FormatError> {
    let mut package = KekPackage {
        contents,
        sender: sender.to_owned(),
        sender_key: key.public_key(),
        signature: None,
    };
    let signed = package.signed_octets()?;
    package.signature = Some(key.0.sign(&signed).to_bytes());
    Ok(package)
}

/// The senders a receiver trusts: name → Ed25519 public key.
///
/// The trust file ([`TrustAnchors::parse`]) has one `NAME HEX` line per
/// sender (the name as in packages, the 32-octet public key in 64 hex
/// digits); `#` starts a comment; blank lines are skipped.
#[derive(Clone, Debug, Default)]
pub struct TrustAnchors {
    anchors: Vec<(String, SenderKey)>,
}

/// Why a trust file line is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustFileError {
    /// The line, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for TrustFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for TrustFileError {}

impl TrustAnchors {
    /// No trusted sender.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `key` as `name`.
    ///
    /// # Errors
    /// The reason when the name is not a sender's name, is given already,
    /// or the key is no Ed25519 public key.
    pub fn add(&mut self, name: &str, key: SenderKey) -> Result<(), &'static str> {
        if !sender_ok(name) {
            return Err("a sender's name is 1 to 64 visible ASCII characters");
        }
        if self.anchors.iter().any(|(n, _)| n == name) {
            return Err("this name is given twice");
        }
        VerifyingKey::from_bytes(&key.0).map_err(|_| "not an Ed25519 public key")?;
        self.anchors.push((name.to_owned(), key));
        Ok(())
    }

    /// Reads a trust file's text.
    ///
    /// # Errors
    /// The first line that is not `NAME HEX`, names a sender twice, or
    /// holds no Ed25519 public key.
    pub fn parse(text: &str) -> Result<Self, TrustFileError> {
        let mut anchors = Self::new();
        for (n, line) in text.lines().enumerate() {
            let at = n.saturating_add(1);
            let fail = |reason| TrustFileError { line: at, reason };
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let (name, key) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| fail("expected NAME HEX"))?;
            let key: [u8; PUBLIC_KEY_LEN] = unhex(key.trim())
                .ok()
                .and_then(|k| k.try_into().ok())
                .ok_or_else(|| fail("the public key is not 64 hex digits"))?;
            anchors.add(name, SenderKey(key)).map_err(fail)?;
        }
        Ok(anchors)
    }

    /// The key trusted for `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<SenderKey> {
        self.anchors
            .iter()
            .find_map(|(n, k)| (n == name).then_some(*k))
    }

    /// Trusted senders.
    #[must_use]
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Whether no sender is trusted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }
}

/// A package whose signature, signer and validity window were checked.
#[derive(Debug)]
#[must_use]
pub struct VerifiedPackage<'a> {
    package: &'a KekPackage,
}

impl<'a> VerifiedPackage<'a> {
    /// The package.
    #[must_use]
    pub const fn package(&self) -> &'a KekPackage {
        self.package
    }
}

/// Checks, in this order: a signature is present; it verifies (strictly,
/// RFC 8032 with canonical encodings) under the public key in the package;
/// the trust anchors bind the sender's name to that key; `now` (Unix
/// seconds) lies within not before ..= not after.
///
/// # Errors
/// [`KekPackageError::Unsigned`], [`KekPackageError::WrongSignature`],
/// [`KekPackageError::ForeignSigner`], [`KekPackageError::NotYetValid`],
/// [`KekPackageError::Expired`]; [`KekPackageError::Malformed`] when a
/// field cannot be encoded.
pub fn verify<'a>(
    package: &'a KekPackage,
    trust: &TrustAnchors,
    now: u64,
) -> Result<VerifiedPackage<'a>, KekPackageError> {
    let signature = package.signature.ok_or(KekPackageError::Unsigned)?;
    let signed = package.signed_octets()?;
    let key = VerifyingKey::from_bytes(&package.sender_key.0)
        .map_err(|_| KekPackageError::WrongSignature)?;
    key.verify_strict(&signed, &Signature::from_bytes(&signature))
        .map_err(|_| KekPackageError::WrongSignature)?;
    match trust.get(&package.sender) {
        Some(k) if k == package.sender_key => {}
        found => {
            return Err(KekPackageError::ForeignSigner {
                sender: package.sender.clone(),
                name_known: found.is_some(),
            });
        }
    }
    let c = &package.contents;
    if now < c.not_before {
        return Err(KekPackageError::NotYetValid {
            not_before: c.not_before,
            now,
        });
    }
    if now > c.not_after {
        return Err(KekPackageError::Expired {
            not_after: c.not_after,
            now,
        });
    }
    Ok(VerifiedPackage { package })
}

/// Whether a claim recorded a new id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The id was not recorded before; it is now.
    Fresh,
    /// The id was recorded before.
    Seen,
}

/// The record of package ids presented to one receiving token: each id is
/// imported at most once. It must be as durable as the token's objects
/// (a guard that forgets lets a package be imported again once its KEK is
/// deleted), and shared by every host that imports into that token.
pub trait PackageIdGuard {
    /// Records `id`, atomically with the check that it was not recorded
    /// before (two importers never both get [`Claim::Fresh`]).
    ///
    /// # Errors
    /// When the record cannot be read or written; nothing is imported then.
    fn claim(&mut self, id: &PackageId) -> std::io::Result<Claim>;
}

/// Package ids in memory: for tests, or a process that imports and exits
/// with its token (forgotten on restart).
#[derive(Debug, Default)]
pub struct InMemoryPackageIds {
    seen: HashSet<PackageId>,
}

impl InMemoryPackageIds {
    /// An empty record.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl PackageIdGuard for InMemoryPackageIds {
    fn claim(&mut self, id: &PackageId) -> std::io::Result<Claim> {
        Ok(if self.seen.insert(*id) {
            Claim::Fresh
        } else {
            Claim::Seen
        })
    }
}

/// Package ids in an append-only file, one id (32 hex digits) a line.
/// Each claim takes an exclusive lock on the file, reads it, appends the
/// id and syncs it to disk before the import goes on, so several
/// processes on one host may share the file. Only [`Self::open`] creates
/// the file: a claim on a file that has vanished fails. Keep it with the token's own
/// state (for SoftHSM2, beside its token directory; for a network HSM, on
/// storage every importing host mounts) and back it up with it.
#[derive(Debug)]
pub struct FilePackageIds {
    path: PathBuf,
}

impl FilePackageIds {
    /// The record in `path`, created (and its directory synced) if missing.
    ///
    /// # Errors
    /// When the file cannot be created or read, or holds a line that is
    /// not an id.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_owned();
        let created = !path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        if created {
            file.sync_all()?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
        }
        let guard = Self { path };
        guard.read(&mut &file)?;
        Ok(guard)
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self, file: &mut &File) -> std::io::Result<HashSet<PackageId>> {
        let mut text = String::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_string(&mut text)?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                unhex(l.trim())
                    .ok()
                    .and_then(|v| v.try_into().ok())
                    .map(PackageId)
                    .ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{}: a line is not a package id", self.path.display()),
                        )
                    })
            })
            .collect()
    }
}

impl PackageIdGuard for FilePackageIds {
    fn claim(&mut self, id: &PackageId) -> std::io::Result<Claim> {
        // Not created here: a record that vanished since `open` is an
        // error, not an empty record that would admit every id again.
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        file.lock()?;
        let result = (|| {
            if self.read(&mut &file)?.contains(id) {
                return Ok(Claim::Seen);
            }
            (&file).write_all(format!("{id}\n").as_bytes())?;
            file.sync_data()?;
            Ok(Claim::Fresh)
        })();
        file.unlock()?;
        result
    }
}

/// Upper-case hex.
pub(crate) fn hex(octets: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(octets.len().saturating_mul(2));
    for b in octets {
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// Hex of either case, an even number of digits.
fn unhex(text: &str) -> Result<Vec<u8>, FormatError> {
    let digit = |c: u8| -> Result<u8, FormatError> {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
            .ok_or(FormatError::Armour)
    };
    let raw = text.as_bytes();
    if !raw.len().is_multiple_of(2) {
        return Err(FormatError::Armour);
    }
    raw.chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Ok(digit(*hi)?.wrapping_shl(4) | digit(*lo)?),
            _ => Err(FormatError::Armour),
        })
        .collect()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]
mod tests {
    use super::*;

    fn contents() -> PackageContents {
        PackageContents {
            label: "shared-2026".to_owned(),
            transport: "transport-1".to_owned(),
            role: KekRole::Shared,
            wrapped: [0x5A; WRAPPED_LEN],
            kcv: KeyCheckValue([1, 2, 3]),
            not_before: 1_000,
            not_after: 2_000,
            id: PackageId([0x11; PACKAGE_ID_LEN]),
        }
    }

    fn key() -> PackageSigningKey {
        PackageSigningKey::from_seed(&[7; 32])
    }

    fn signed() -> KekPackage {
        create_package(contents(), "dcc-kms", &key()).unwrap()
    }

    fn trust() -> TrustAnchors {
        let mut t = TrustAnchors::new();
        t.add("dcc-kms", key().public_key()).unwrap();
        t
    }

    #[test]
    fn round_trip_binary_and_armour() {
        let p = signed();
        let octets = p.to_vec().unwrap();
        assert_eq!(octets.len(), p.buffer_len());
        assert_eq!(KekPackage::parse(&octets).unwrap(), p);
        let mut buf = vec![0xEE; octets.len() + 3];
        assert_eq!(p.emit(&mut buf).unwrap(), octets.len());
        assert_eq!(&buf[..octets.len()], octets.as_slice());
        assert_eq!(
            p.emit(&mut buf[..octets.len() - 1]),
            Err(FormatError::BufferTooSmall {
                required: octets.len()
            })
        );
        let text = p.to_armour().unwrap();
        assert!(text.starts_with(ARMOUR_BEGIN));
        assert_eq!(KekPackage::from_armour(&text).unwrap(), p);
        // Unsigned packages round-trip too (and say so).
        let mut u = p.clone();
        u.signature = None;
        let octets = u.to_vec().unwrap();
        assert_eq!(octets.len(), u.buffer_len());
        assert_eq!(*octets.last().unwrap(), 0);
        assert_eq!(KekPackage::parse(&octets).unwrap(), u);
    }

    #[test]
    fn layout_is_the_documented_one() {
        let p = signed();
        let o = p.to_vec().unwrap();
        assert_eq!(&o[..4], b"DSKP");
        assert_eq!(o[4], VERSION);
        assert_eq!(o[5], 4, "Shared");
        assert_eq!(usize::from(o[6]), "shared-2026".len());
        let after_label = 7 + 11;
        assert_eq!(usize::from(o[after_label]), "transport-1".len());
        let wrapped_at = after_label + 1 + 11;
        assert_eq!(&o[wrapped_at..wrapped_at + 24], &[0x5A; 24]);
        assert_eq!(&o[wrapped_at + 24..wrapped_at + 27], &[1, 2, 3]);
        assert_eq!(
            &o[wrapped_at + 27..wrapped_at + 35],
            &1_000u64.to_be_bytes()
        );
        let sig_len_at = o.len() - 65;
        assert_eq!(o[sig_len_at], 64);
        assert_eq!(&o[sig_len_at - 32..sig_len_at], &key().public_key().0);
        assert_eq!(p.signed_octets().unwrap(), o[..sig_len_at].to_vec());
    }

    #[test]
    fn every_truncation_is_refused() {
        for p in [signed(), {
            let mut u = signed();
            u.signature = None;
            u
        }] {
            let o = p.to_vec().unwrap();
            for n in 0..o.len() {
                assert!(
                    KekPackage::parse(&o[..n]).is_err(),
                    "{n} of {} octets parsed",
                    o.len()
                );
            }
        }
    }

    #[test]
    fn wrong_version_magic_role_and_lengths_are_refused() {
        let o = signed().to_vec().unwrap();
        let mut v = o.clone();
        v[4] = 2;
        assert_eq!(KekPackage::parse(&v), Err(FormatError::Version(2)));
        let mut m = o.clone();
        m[0] = b'X';
        assert_eq!(KekPackage::parse(&m), Err(FormatError::Magic));
        for code in [0, 5, 0xFF] {
            let mut r = o.clone();
            r[5] = code;
            assert_eq!(KekPackage::parse(&r), Err(FormatError::Role(code)));
        }
        let mut empty_label = o.clone();
        empty_label[6] = 0;
        assert!(KekPackage::parse(&empty_label).is_err());
        let sig_len_at = o.len() - 65;
        let mut s = o.clone();
        s[sig_len_at] = 63;
        assert_eq!(KekPackage::parse(&s), Err(FormatError::SignatureLength(63)));
        // A zero length with the 64 octets still there: trailing octets.
        let mut z = o.clone();
        z[sig_len_at] = 0;
        assert_eq!(KekPackage::parse(&z), Err(FormatError::Trailing));
    }

    #[test]
    fn trailing_octets_are_refused() {
        let mut o = signed().to_vec().unwrap();
        o.push(0);
        assert_eq!(KekPackage::parse(&o), Err(FormatError::Trailing));
        let text = signed().to_armour().unwrap().replace(ARMOUR_END, "");
        assert_eq!(KekPackage::from_armour(&text), Err(FormatError::Armour));
    }

    #[test]
    fn names_and_windows_are_checked_on_both_sides() {
        let mut c = contents();
        c.not_before = 3_000;
        assert_eq!(
            create_package(c, "dcc-kms", &key()).unwrap_err(),
            FormatError::Window
        );
        let mut c = contents();
        c.label = "x".repeat(MAX_NAME_LEN + 1);
        assert!(create_package(c, "dcc-kms", &key()).is_err());
        assert!(create_package(contents(), "with space", &key()).is_err());
        let mut c = contents();
        c.role = KekRole::Transport;
        assert!(create_package(c, "dcc-kms", &key()).is_err());
        // A reversed window on the wire (re-signed would not help: parse
        // refuses it before any signature).
        let p = signed();
        let mut o = p.to_vec().unwrap();
        let nb = 7 + 11 + 1 + 11 + 24 + 3;
        o[nb..nb + 8].copy_from_slice(&5_000u64.to_be_bytes());
        assert_eq!(KekPackage::parse(&o), Err(FormatError::Window));
    }

    #[test]
    fn verify_checks_signature_signer_and_window() {
        let p = signed();
        let t = trust();
        assert!(verify(&p, &t, 1_000).is_ok());
        assert!(verify(&p, &t, 2_000).is_ok());
        assert!(matches!(
            verify(&p, &t, 999),
            Err(KekPackageError::NotYetValid {
                not_before: 1_000,
                now: 999
            })
        ));
        assert!(matches!(
            verify(&p, &t, 2_001),
            Err(KekPackageError::Expired { .. })
        ));
        let mut u = p.clone();
        u.signature = None;
        assert!(matches!(
            verify(&u, &t, 1_500),
            Err(KekPackageError::Unsigned)
        ));
        // Every signed octet matters.
        let o = p.to_vec().unwrap();
        let signed_len = o.len() - 65;
        for i in 0..signed_len {
            let mut bad = o.clone();
            bad[i] ^= 0x01;
            let Ok(parsed) = KekPackage::parse(&bad) else {
                continue;
            };
            assert!(
                matches!(
                    verify(&parsed, &t, 1_500),
                    Err(KekPackageError::WrongSignature)
                ),
                "octet {i} altered and accepted"
            );
        }
        for i in signed_len + 1..o.len() {
            let mut bad = o.clone();
            bad[i] ^= 0x80;
            let parsed = KekPackage::parse(&bad).unwrap();
            assert!(matches!(
                verify(&parsed, &t, 1_500),
                Err(KekPackageError::WrongSignature)
            ));
        }
        // A valid signature by a key nobody trusts, under a trusted name
        // and under an unknown one.
        let other = PackageSigningKey::from_seed(&[8; 32]);
        let foreign = create_package(contents(), "dcc-kms", &other).unwrap();
        assert!(matches!(
            verify(&foreign, &t, 1_500),
            Err(KekPackageError::ForeignSigner {
                name_known: true,
                ..
            })
        ));
        let stranger = create_package(contents(), "someone", &other).unwrap();
        assert!(matches!(
            verify(&stranger, &t, 1_500),
            Err(KekPackageError::ForeignSigner {
                name_known: false,
                ..
            })
        ));
    }

    #[test]
    fn trust_files_parse_and_refuse_bad_lines() {
        let pk = key().public_key();
        let t = TrustAnchors::parse(&format!("# senders\n\ndcc-kms {pk}  # the DCC\n")).unwrap();
        assert_eq!(t.get("dcc-kms"), Some(pk));
        assert_eq!(t.len(), 1);
        assert_eq!(
            TrustAnchors::parse(&format!("a {pk}\na {pk}\n"))
                .unwrap_err()
                .line,
            2
        );
        assert!(TrustAnchors::parse("a 00\n").is_err());
        assert!(TrustAnchors::parse("lonely\n").is_err());
    }

    #[test]
    fn signing_keys_are_redacted_and_read_from_hex() {
        let k = key();
        let shown = format!("{k:?}");
        assert!(!shown.contains(&hex(&[7; 32])), "{shown}");
        assert!(shown.contains(&k.public_key().to_string()));
        let again = PackageSigningKey::from_hex(&format!("{}\n", k.to_hex().as_str())).unwrap();
        assert_eq!(again.public_key(), k.public_key());
        assert!(PackageSigningKey::from_hex("0011").is_err());
    }

    #[test]
    fn guards_refuse_an_id_twice_and_the_file_remembers() {
        let a = PackageId([1; 16]);
        let b = PackageId([2; 16]);
        let mut m = InMemoryPackageIds::new();
        assert_eq!(m.claim(&a).unwrap(), Claim::Fresh);
        assert_eq!(m.claim(&a).unwrap(), Claim::Seen);
        assert_eq!(m.claim(&b).unwrap(), Claim::Fresh);

        let dir = std::env::temp_dir().join(format!("dlms-kek-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ids");
        let _ = std::fs::remove_file(&path);
        let mut f = FilePackageIds::open(&path).unwrap();
        assert_eq!(f.claim(&a).unwrap(), Claim::Fresh);
        assert_eq!(f.claim(&a).unwrap(), Claim::Seen);
        // Another handle (another process) sees it.
        let mut g = FilePackageIds::open(&path).unwrap();
        assert_eq!(g.claim(&a).unwrap(), Claim::Seen);
        assert_eq!(g.claim(&b).unwrap(), Claim::Fresh);
        assert_eq!(f.claim(&b).unwrap(), Claim::Seen);
        // A record that vanished is an error, not a fresh start.
        std::fs::remove_file(&path).unwrap();
        assert!(f.claim(&b).is_err());
        assert!(!path.exists());
        std::fs::write(&path, "not an id\n").unwrap();
        assert!(FilePackageIds::open(&path).is_err());
        assert!(f.claim(&a).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
