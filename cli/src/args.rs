//! A small argument parser: `--flag VALUE`, `--flag=VALUE`, switches, and
//! positional hex words. Each subcommand declares the flags it takes; any
//! other flag is a usage error.

use std::io::Read as _;

use zeroize::Zeroizing;

use crate::codec::parse_hex;
use crate::fail::Fail;

/// The flags one subcommand accepts.
#[derive(Debug)]
pub(crate) struct Spec {
    /// Flags that take a value.
    pub(crate) values: &'static [&'static str],
    /// Flags without a value.
    pub(crate) switches: &'static [&'static str],
}

/// Parsed arguments of one subcommand.
#[derive(Debug)]
pub(crate) struct Args {
    values: Vec<(&'static str, Zeroizing<String>)>,
    switches: Vec<&'static str>,
    positionals: Vec<String>,
}

impl Args {
    /// Parses `argv` (after the subcommand) against `spec`.
    pub(crate) fn parse(spec: &Spec, argv: &[String]) -> Result<Self, Fail> {
        let mut args = Self {
            values: Vec::new(),
            switches: Vec::new(),
            positionals: Vec::new(),
        };
        let mut it = argv.iter();
        let mut options_done = false;
        while let Some(arg) = it.next() {
            if options_done || arg == "-" || !arg.starts_with('-') {
                args.positionals.push(arg.clone());
                continue;
            }
            if arg == "--" {
                options_done = true;
                continue;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (arg.as_str(), None),
            };
            if let Some(&flag) = spec.values.iter().find(|&&f| f == name) {
                let value = match inline {
                    Some(v) => v.to_owned(),
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| Fail::usage(format_args!("{flag} needs a value")))?,
                };
                if args.values.iter().any(|(f, _)| *f == flag) {
                    return Err(Fail::usage(format_args!("{flag} given twice")));
                }
                args.values.push((flag, Zeroizing::new(value)));
            } else if let Some(&flag) = spec.switches.iter().find(|&&f| f == name) {
                if inline.is_some() {
                    return Err(Fail::usage(format_args!("{flag} takes no value")));
                }
                if !args.switches.contains(&flag) {
                    args.switches.push(flag);
                }
            } else {
                return Err(Fail::usage(format_args!(
                    "unknown flag {name} (try --help)"
                )));
            }
        }
        Ok(args)
    }

    /// The value of a flag, if given.
    pub(crate) fn value(&self, flag: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(f, _)| *f == flag)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a flag that must be given.
    pub(crate) fn required(&self, flag: &str) -> Result<&str, Fail> {
        self.value(flag)
            .ok_or_else(|| Fail::usage(format_args!("missing {flag}")))
    }

    /// Whether a switch was given.
    pub(crate) fn switch(&self, flag: &str) -> bool {
        self.switches.contains(&flag)
    }

    /// The positional hex input, `what` in messages: every positional word
    /// joined (so `C8 1E 30 …` works unquoted), or standard input for `-`.
    pub(crate) fn hex_input(&self, what: &str) -> Result<Zeroizing<Vec<u8>>, Fail> {
        match self.positionals.as_slice() {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Spec = Spec {
        values: &["--ic", "--ek"],
        switches: &["--json"],
    };

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|&a| a.to_owned()).collect()
    }

    #[test]
    fn flags_and_positionals() {
        let a = Args::parse(
            &SPEC,
            &argv(&["--ic=5", "C8", "--json", "--ek", "00", "1E"]),
        )
        .unwrap();
        assert_eq!(a.value("--ic"), Some("5"));
        assert_eq!(a.value("--ek"), Some("00"));
        assert!(a.switch("--json"));
        assert_eq!(*a.hex_input("X").unwrap(), vec![0xC8, 0x1E]);
        let a = Args::parse(&SPEC, &argv(&["--", "--json"])).unwrap();
        assert!(!a.switch("--json"));
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &["--nope"][..],
            &["--ic"],
            &["--ic", "1", "--ic", "2"],
            &["--json=1"],
            &["-x"],
        ] {
            assert!(Args::parse(&SPEC, &argv(bad)).is_err(), "{bad:?}");
        }
        let a = Args::parse(&SPEC, &[]).unwrap();
        assert!(a.required("--ic").is_err());
        assert!(a.hex_input("X").is_err());
    }
}
