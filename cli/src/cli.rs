//! The command line, declared with clap: every subcommand, flag and value
//! with its help text.
//!
//! Flag values are checked while parsing: hex keys, system titles and
//! numbers by the [`codec`](crate::codec) rules, word values against their
//! lists. [`parse`] turns every clap error into a [`Fail`]: one line in the
//! tool's own words, exit status 2. `--help` and `--version` come back as
//! text to print, with exit status 0.

use std::ffi::{OsStr, OsString};
use std::io::Read as _;
use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;
use dlms_sec::{InvocationCounter, SystemTitle};
use zeroize::Zeroizing;

use crate::codec::{parse_array, parse_hex, parse_title, parse_u32};
use crate::fail::Fail;
use crate::keys::KeyBytes;

/// The top-level help page, headings in lower case like the conventions.
const TOP: &str = "\
{about-with-newline}
usage: {usage}

commands:
{subcommands}

options:
{options}{after-help}";

/// A subcommand's help page.
const SUB: &str = "\
{about-with-newline}
usage: {usage}

arguments:
{positionals}

options:
{options}{after-help}";

const CONVENTIONS: &str = "\
conventions:
  Hex is case-insensitive and may hold spaces or colons; several positional
  words are joined; \"-\" reads the hex from standard input. Output is
  upper-case hex on one line. N is decimal or 0x-prefixed hex.
  Keys: a flag, else --keys FILE (lines NAME=HEX, # comments), else the
  environment variable DLMS_NAME. Names: EK AK DK BK KEK MK, and for
  key-transfer NEW_GUEK NEW_GBEK NEW_AK NEW_MK.
  Exit status: 0 success; 1 authentication, integrity, replay or policy
  check failed; 2 malformed input or usage.";

/// DLMS/COSEM security suite 0 (AES-GCM-128) and SMETS1 keys
#[derive(Debug, Parser)]
#[command(
    name = "dlms-sec",
    version,
    subcommand_required = true,
    help_template = TOP,
    max_term_width = 100,
    after_help = CONVENTIONS,
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Prints the protected APDU
    ///
    /// The service form takes its glo-/ded- tag from the plain APDU's tag;
    /// --form general-ded implies --key dedicated.
    Protect(Protect),
    /// Prints the plaintext APDU
    ///
    /// The frame's SC and tag pick the key. The sender's title is required
    /// for forms that carry none. --after-ic N rejects a counter at or below
    /// N; --require rejects weaker protection.
    Unprotect(Unprotect),
    /// Prints a breakdown of a ciphered APDU; with keys, the verified plaintext
    ///
    /// A failed verification still prints the breakdown, then exits 1.
    Decode(Decode),
    /// RFC 3394 wrap of a 128-bit key
    Wrap(Wrap),
    /// RFC 3394 unwrap (exit 1 on integrity failure)
    Unwrap(Unwrap),
    /// Prints the Security Setup key_transfer parameter (keys wrapped under MK)
    KeyTransfer(KeyTransfer),
    /// Prints f(challenge) = 10 || IC || GMAC tag, with our own title
    Hls5(Hls5),
    /// Checks the peer's f(our challenge), with the peer's title
    Hls5Verify(Hls5Verify),
    /// Prints a 42-octet packaged-key record
    ///
    /// MK and AK are packaged under the DCO Key, the others under the Shared
    /// Key. The MK is device-wide: give --client device or no --client.
    Package(Package),
    /// Checks a record and prints the key in it
    Unpackage(Unpackage),
    /// Writes the compliance report of a store (report.html, report.json)
    ///
    /// Rotation latency against the 7-day rule, overdue devices, campaigns,
    /// refusals and corruption from the audit table, the audit chain's
    /// verdict and the KEK check values in use. Exit 1 when the audit chain
    /// is broken (the report is written first).
    Report(crate::report::Report),
    /// Signed KEK packages: create, verify, keygen, public-key
    #[command(subcommand)]
    KekPackage(crate::kek_package::KekPackageCommand),
    /// Audit log commands (verify)
    Audit(crate::audit::AuditArgs),
    /// Prints a shell completion script
    Completions {
        /// The shell to complete in
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// A flag's value parser from a `codec`-style function, which names the
/// flag in its messages.
#[derive(Debug)]
pub(crate) struct ValueFn<T>(pub(crate) fn(&str, &str) -> Result<T, Fail>);

impl<T> Clone for ValueFn<T> {
    fn clone(&self) -> Self {
        Self(self.0)
    }
}

impl<T: Clone + Send + Sync + 'static> TypedValueParser for ValueFn<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        let flag = arg
            .and_then(clap::Arg::get_long)
            .map_or_else(String::new, |long| format!("--{long}"));
        let parse = self.0;
        // clap's own adapter keeps the `Fail` as the error's source.
        (move |text: &str| parse(text, &flag)).parse_ref(cmd, arg, value)
    }
}

/// A 16-octet key.
const KEY: ValueFn<KeyBytes> = ValueFn(parse_array::<16>);
/// An 8-octet system title.
const TITLE: ValueFn<SystemTitle> = ValueFn(parse_title);
/// A 32-bit number.
const NUMBER: ValueFn<u32> = ValueFn(parse_u32);
/// A counter to send: any 32-bit number but the reserved one.
const SENT_IC: ValueFn<u32> = ValueFn(sent_ic);
/// Hex of any length.
const HEX: ValueFn<Zeroizing<Vec<u8>>> = ValueFn(parse_hex);

/// `--ic`: the reserved counter is never sent.
fn sent_ic(text: &str, what: &str) -> Result<u32, Fail> {
    match parse_u32(text, what)? {
        InvocationCounter::RESERVED => Err(Fail::usage(format_args!(
            "{what}: 0xFFFFFFFF is reserved and never sent"
        ))),
        ic => Ok(ic),
    }
}

/// The positional hex input, `what` naming it in messages: every word
/// joined (so `C8 1E 30 …` works unquoted), or standard input for a lone `-`.
pub(crate) fn hex_input(words: &[String], what: &str) -> Result<Zeroizing<Vec<u8>>, Fail> {
    match words {
        [] => Err(Fail::usage(format_args!("missing {what}"))),
        [dash] if dash == "-" => {
            let mut text = Zeroizing::new(String::new());
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Fail::usage(format_args!("cannot read standard input: {e}")))?;
            parse_hex(&text, what)
        }
        words => {
            if words.iter().any(|w| w == "-") {
                return Err(Fail::usage(format_args!(
                    "{what}: \"-\" (standard input) must be the only positional argument"
                )));
            }
            parse_hex(&Zeroizing::new(words.join(" ")), what)
        }
    }
}

/// `--keys FILE`.
#[derive(Debug, Args)]
pub(crate) struct KeysFile {
    /// Reads keys from FILE: lines NAME=HEX, # comments
    #[arg(long = "keys", value_name = "FILE")]
    pub(crate) path: Option<PathBuf>,
}

/// The suite-0 keys: EK and AK, and the broadcast and dedicated keys.
#[derive(Debug, Args)]
pub(crate) struct SuiteKeys {
    /// The global unicast encryption key [or EK, DLMS_EK]
    #[arg(long, value_name = "HEX", value_parser = KEY)]
    pub(crate) ek: Option<KeyBytes>,
    /// The authentication key [or AK, DLMS_AK]
    #[arg(long, value_name = "HEX", value_parser = KEY)]
    pub(crate) ak: Option<KeyBytes>,
    /// The dedicated key [or DK, DLMS_DK]
    #[arg(long, value_name = "HEX", value_parser = KEY)]
    pub(crate) dk: Option<KeyBytes>,
    /// The global broadcast encryption key [or BK, DLMS_BK]
    #[arg(long, value_name = "HEX", value_parser = KEY)]
    pub(crate) bk: Option<KeyBytes>,
    #[command(flatten)]
    pub(crate) file: KeysFile,
}

/// The protection `protect` applies.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Policy {
    /// Authenticated only: the APDU travels in clear
    Auth,
    /// Encrypted only: no tag
    Enc,
    /// Authenticated and encrypted
    AuthEnc,
}

/// The protection a received frame must carry.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Require {
    /// Authenticated (with or without encryption)
    Auth,
    /// Encrypted (with or without authentication)
    Enc,
    /// Authenticated and encrypted
    AuthEnc,
    /// Any protection (the default)
    None,
}

/// The ciphered APDU's form.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Form {
    /// glo-/ded- service-specific ciphering (no system title in the frame)
    Service,
    /// general-glo-ciphering (carries the system title)
    GeneralGlo,
    /// general-ded-ciphering (carries the system title)
    GeneralDed,
}

/// The key a frame is protected under.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum KeyChoice {
    /// The global unicast encryption key (EK)
    Unicast,
    /// The global broadcast encryption key (BK)
    Broadcast,
    /// The dedicated key (DK)
    Dedicated,
}

/// The role of a packaged key.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Role {
    /// Master key (under the DCO Key)
    Mk,
    /// Authentication key (under the DCO Key)
    Ak,
    /// Global unicast encryption key (under the Shared Key)
    Guek,
    /// Global broadcast encryption key (under the Shared Key)
    Gbek,
    /// Dedicated key (under the Shared Key)
    Dk,
}

/// The client a packaged key belongs to.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ClientChoice {
    /// The Data Collection client
    DataCollection,
    /// The Extended Data Collection client
    ExtendedDataCollection,
    /// The Management client
    Management,
    /// The Firmware client
    Firmware,
    /// No client: the device-wide MK
    Device,
    /// The public client, which has no keys
    #[value(hide = true)]
    Public,
}

/// `protect`.
#[derive(Debug, Args)]
pub(crate) struct Protect {
    /// The protection to apply
    #[arg(long, value_name = "POLICY")]
    pub(crate) policy: Policy,
    /// Our system title (8 octets)
    #[arg(long, value_name = "HEX", value_parser = TITLE)]
    pub(crate) system_title: SystemTitle,
    /// The invocation counter to send
    #[arg(long, value_name = "N", value_parser = SENT_IC)]
    pub(crate) ic: u32,
    /// The ciphered form [default: service]
    #[arg(long, value_name = "FORM")]
    pub(crate) form: Option<Form>,
    /// The key to protect under [default: unicast, dedicated for general-ded]
    #[arg(long, value_name = "KEY")]
    pub(crate) key: Option<KeyChoice>,
    #[command(flatten)]
    pub(crate) keys: SuiteKeys,
    /// The plain APDU
    #[arg(value_name = "APDU_HEX", required = true)]
    pub(crate) apdu: Vec<String>,
}

/// The checks `unprotect` and `decode` make on a received frame.
#[derive(Debug, Args)]
pub(crate) struct Checks {
    /// The sender's system title (8 octets), for frames that carry none
    #[arg(long, value_name = "HEX", value_parser = TITLE)]
    pub(crate) system_title: Option<SystemTitle>,
    /// Rejects an invocation counter at or below N
    #[arg(long, value_name = "N", value_parser = NUMBER)]
    pub(crate) after_ic: Option<u32>,
    /// Rejects weaker protection than POLICY
    #[arg(long, value_name = "POLICY")]
    pub(crate) require: Option<Require>,
}

/// `unprotect`.
#[derive(Debug, Args)]
pub(crate) struct Unprotect {
    #[command(flatten)]
    pub(crate) checks: Checks,
    #[command(flatten)]
    pub(crate) keys: SuiteKeys,
    /// The ciphered APDU
    #[arg(value_name = "FRAME_HEX", required = true)]
    pub(crate) frame: Vec<String>,
}

/// `decode`.
#[derive(Debug, Args)]
pub(crate) struct Decode {
    #[command(flatten)]
    pub(crate) checks: Checks,
    #[command(flatten)]
    pub(crate) keys: SuiteKeys,
    /// Prints one JSON object instead of text lines
    #[arg(long)]
    pub(crate) json: bool,
    /// The ciphered APDU
    #[arg(value_name = "FRAME_HEX", required = true)]
    pub(crate) frame: Vec<String>,
}

/// `wrap`.
#[derive(Debug, Args)]
pub(crate) struct Wrap {
    /// The key-encryption key [or KEK, DLMS_KEK]
    #[arg(long, value_name = "HEX", value_parser = KEY)]
    pub(crate) kek: Option<KeyBytes>,
    #[command(flatten)]
    pub(crate) file: KeysFile,
    /// The 128-bit key to wrap
    #[arg(value_name = "KEY_HEX", required = true)]
    pub(crate) key: Vec<String>,
}

/// `unwrap`.
#[derive(Debug, Args)]
pub(crate) struct Unwrap {
    /// The key-encryption key [or KEK, DLMS_KEK]
    #[arg(long, value_name = "HEX", value_parser = KEY)]
    pub(crate) kek: Option<KeyBytes>,
    #[command(flatten)]
    pub(crate) file: KeysFile,
    /// The wrapped key (24 octets)
    #[arg(value_name = "WRAPPED_HEX", required = true)]
    pub(crate) wrapped: Vec<String>,
}

/// `key-transfer`.
#[derive(Debug, Args)]
pub(crate) struct KeyTransfer {
    /// The master key the new keys are wrapped under [or MK, DLMS_MK]
    #[arg(long, value_name = "HEX", value_parser = KEY)]
    pub(crate) mk: Option<KeyBytes>,
    /// A new global unicast encryption key [or NEW_GUEK, DLMS_NEW_GUEK]
    #[arg(long, value_name = "HEX", value_parser = KEY)]
    pub(crate) guek: Option<KeyBytes>,
    /// A new global broadcast encryption key [or NEW_GBEK, DLMS_NEW_GBEK]
    #[arg(long, value_name = "HEX", value_parser = KEY)]
    pub(crate) gbek: Option<KeyBytes>,
    /// A new authentication key [or NEW_AK, DLMS_NEW_AK]
    #[arg(long, value_name = "HEX", value_parser = KEY)]
    pub(crate) ak: Option<KeyBytes>,
    /// A new master key [or NEW_MK, DLMS_NEW_MK]
    #[arg(long, value_name = "HEX", value_parser = KEY)]
    pub(crate) new_mk: Option<KeyBytes>,
    #[command(flatten)]
    pub(crate) file: KeysFile,
}

/// EK and AK alone, as HLS-5 takes them.
#[derive(Debug, Args)]
pub(crate) struct Hls5Keys {
    /// The global unicast encryption key [or EK, DLMS_EK]
    #[arg(long, value_name = "HEX", value_parser = KEY)]
    pub(crate) ek: Option<KeyBytes>,
    /// The authentication key [or AK, DLMS_AK]
    #[arg(long, value_name = "HEX", value_parser = KEY)]
    pub(crate) ak: Option<KeyBytes>,
    #[command(flatten)]
    pub(crate) file: KeysFile,
}

/// `hls5`.
#[derive(Debug, Args)]
pub(crate) struct Hls5 {
    /// Our system title (8 octets)
    #[arg(long, value_name = "HEX", value_parser = TITLE)]
    pub(crate) system_title: SystemTitle,
    /// The invocation counter to send
    #[arg(long, value_name = "N", value_parser = SENT_IC)]
    pub(crate) ic: u32,
    #[command(flatten)]
    pub(crate) keys: Hls5Keys,
    /// The peer's challenge
    #[arg(value_name = "CHALLENGE_HEX", required = true)]
    pub(crate) challenge: Vec<String>,
}

/// `hls5-verify`.
#[derive(Debug, Args)]
pub(crate) struct Hls5Verify {
    /// The peer's system title (8 octets)
    #[arg(long, value_name = "HEX", value_parser = TITLE)]
    pub(crate) system_title: SystemTitle,
    /// Our challenge to the peer
    #[arg(long, value_name = "HEX", value_parser = HEX)]
    pub(crate) challenge: Zeroizing<Vec<u8>>,
    #[command(flatten)]
    pub(crate) keys: Hls5Keys,
    /// The peer's response
    #[arg(value_name = "RESPONSE_HEX", required = true)]
    pub(crate) response: Vec<String>,
}

/// `package`.
#[derive(Debug, Args)]
pub(crate) struct Package {
    /// The DCO Key (MK, AK) or the Shared Key (the others) [or KEK, DLMS_KEK]
    #[arg(long, value_name = "HEX", value_parser = KEY)]
    pub(crate) kek: Option<KeyBytes>,
    /// The key's role
    #[arg(long, value_name = "ROLE")]
    pub(crate) role: Role,
    /// The device's system title (8 octets)
    #[arg(long, value_name = "HEX", value_parser = TITLE)]
    pub(crate) device: SystemTitle,
    /// The key's client [default: device, for the MK]
    #[arg(long, value_name = "CLIENT")]
    pub(crate) client: Option<ClientChoice>,
    /// The key's generation
    #[arg(long, value_name = "N", value_parser = NUMBER)]
    pub(crate) generation: u32,
    #[command(flatten)]
    pub(crate) file: KeysFile,
    /// The 128-bit key to package
    #[arg(value_name = "KEY_HEX", required = true)]
    pub(crate) key: Vec<String>,
}

/// `unpackage`.
#[derive(Debug, Args)]
pub(crate) struct Unpackage {
    /// The DCO Key or the Shared Key, as the record's role needs [or KEK, DLMS_KEK]
    #[arg(long, value_name = "HEX", value_parser = KEY)]
    pub(crate) kek: Option<KeyBytes>,
    #[command(flatten)]
    pub(crate) file: KeysFile,
    /// The 42-octet record
    #[arg(value_name = "RECORD_HEX", required = true)]
    pub(crate) record: Vec<String>,
}

/// What an invocation asks for.
#[derive(Debug)]
pub(crate) enum Request {
    /// Run a subcommand.
    Run(Command),
    /// Print this text (help, version) and succeed.
    Print(String),
}

/// The command line as clap declares it. A flag takes the next word as its
/// value whatever it starts with, so `--after-ic -1` is refused as a number.
pub(crate) fn command() -> clap::Command {
    Cli::command().mut_subcommands(subcommand)
}

/// A subcommand's help template and flags; a group of subcommands
/// (`audit`, `kek-package`) lists its own, each formatted the same way.
fn subcommand(c: clap::Command) -> clap::Command {
    if c.has_subcommands() {
        return c
            .help_template(TOP)
            .subcommand_required(true)
            .mut_subcommands(subcommand);
    }
    leaf(c)
}

/// A command that runs: its help page, and flag values taken whatever they
/// start with.
fn leaf(c: clap::Command) -> clap::Command {
    c.help_template(SUB).mut_args(|a| {
        if a.is_positional() || !a.get_action().takes_values() {
            a
        } else {
            a.allow_hyphen_values(true)
        }
    })
}

/// Parses the arguments after the program name.
pub(crate) fn parse(argv: impl IntoIterator<Item = OsString>) -> Result<Request, Fail> {
    let argv = core::iter::once(OsString::from("dlms-sec")).chain(argv);
    let parsed = command()
        .try_get_matches_from(argv)
        .and_then(|mut m| Cli::from_arg_matches_mut(&mut m));
    match parsed {
        Ok(cli) => Ok(Request::Run(cli.command)),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            Ok(Request::Print(e.to_string().trim_end().to_owned()))
        }
        Err(e) => Err(usage_error(&e)),
    }
}

/// A clap error as one usage line in the tool's own words.
fn usage_error(e: &clap::Error) -> Fail {
    // A flag value that a `ValueFn` refused carries its own message.
    if let Some(fail) = core::error::Error::source(e).and_then(|s| s.downcast_ref::<Fail>()) {
        return fail.clone();
    }
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => s.as_str(),
        Some(ContextValue::Strings(v)) => v.first().map_or("", String::as_str),
        _ => "",
    };
    // "--policy <POLICY>" names the flag, "<APDU_HEX>..." the input.
    let arg = context(ContextKind::InvalidArg)
        .split([' ', '='])
        .next()
        .unwrap_or_default()
        .trim_matches(['<', '>', '[', ']', '.']);
    let value = context(ContextKind::InvalidValue);
    match e.kind() {
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            Fail::usage("missing command (try --help)")
        }
        ErrorKind::InvalidSubcommand => Fail::usage(format_args!(
            "unknown command {:?} (try --help)",
            context(ContextKind::InvalidSubcommand)
        )),
        ErrorKind::UnknownArgument => Fail::usage(format_args!("unknown flag {arg} (try --help)")),
        ErrorKind::ArgumentConflict => Fail::usage(format_args!("{arg} given twice")),
        ErrorKind::MissingRequiredArgument => Fail::usage(format_args!("missing {arg}")),
        ErrorKind::InvalidValue if value.is_empty() => {
            Fail::usage(format_args!("{arg} needs a value"))
        }
        ErrorKind::InvalidValue => {
            let valid = match e.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(v)) => v.as_slice(),
                _ => &[],
            };
            let list = match valid {
                [] => String::new(),
                [one] => one.clone(),
                [init @ .., last] => format!("{} or {last}", init.join(", ")),
            };
            Fail::usage(format_args!("{arg}: {value:?} is not {list}"))
        }
        ErrorKind::TooManyValues | ErrorKind::NoEquals => {
            Fail::usage(format_args!("{arg} takes no value"))
        }
        ErrorKind::InvalidUtf8 => Fail::usage("an argument is not valid UTF-8"),
        _ => {
            let text = e.to_string();
            let line = text.lines().next().unwrap_or_default();
            Fail::usage(line.strip_prefix("error: ").unwrap_or(line))
        }
    }
}
