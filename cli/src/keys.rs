//! Where keys come from: a flag, else a `--keys FILE` line, else an
//! environment variable, so that keys need not appear in a process list.
//!
//! The file holds `NAME=HEX` lines (`DLMS_NAME=HEX` is read the same way,
//! so one file can serve both); `#` starts a comment; blank lines are
//! skipped. Names: `EK`, `AK`, `DK`, `BK`, `KEK`, `MK`, and for
//! `key-transfer` the keys being sent, `NEW_GUEK`, `NEW_GBEK`, `NEW_AK`,
//! `NEW_MK`; for `audit verify`, the audit key `AUDIT`. The environment
//! variables are the same names after `DLMS_`.

use std::path::Path;

use zeroize::Zeroizing;

use crate::codec::parse_array;
use crate::fail::Fail;

/// Every name a keys file or the environment may hold.
const NAMES: [&str; 11] = [
    "EK", "AK", "DK", "BK", "KEK", "MK", "NEW_GUEK", "NEW_GBEK", "NEW_AK", "NEW_MK", "AUDIT",
];

/// Key octets, wiped on drop.
pub(crate) type KeyBytes = Zeroizing<[u8; 16]>;

/// The key sources of one invocation.
#[derive(Debug)]
pub(crate) struct Keys {
    file: Vec<(&'static str, Zeroizing<String>)>,
}

impl Keys {
    /// Reads `--keys FILE` when given.
    pub(crate) fn load(path: Option<&Path>) -> Result<Self, Fail> {
        let Some(path) = path else {
            return Ok(Self { file: Vec::new() });
        };
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            Fail::usage(format_args!("cannot read --keys {}: {e}", path.display()))
        })?);
        let path = path.display();
        let mut file: Vec<(&'static str, Zeroizing<String>)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let at = n.saturating_add(1);
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let (name, value) = line
                .split_once('=')
                .ok_or_else(|| Fail::usage(format_args!("{path}:{at}: expected NAME=HEX")))?;
            let name = name.trim();
            let bare = name.strip_prefix("DLMS_").unwrap_or(name);
            let &known = NAMES.iter().find(|&&k| k == bare).ok_or_else(|| {
                Fail::usage(format_args!(
                    "{path}:{at}: unknown key name {name:?} (known: {})",
                    NAMES.join(", ")
                ))
            })?;
            if file.iter().any(|(k, _)| *k == known) {
                return Err(Fail::usage(format_args!(
                    "{path}:{at}: {known} given twice"
                )));
            }
            file.push((known, Zeroizing::new(value.trim().to_owned())));
        }
        Ok(Self { file })
    }

    /// The key given by its flag, else `name` in the keys file, else the
    /// environment variable `DLMS_<name>` (an empty one counts as unset).
    pub(crate) fn get(
        &self,
        flag: Option<&KeyBytes>,
        name: &str,
    ) -> Result<Option<KeyBytes>, Fail> {
        if let Some(key) = flag {
            return Ok(Some(key.clone()));
        }
        if let Some((_, v)) = self.file.iter().find(|(k, _)| *k == name) {
            return parse_array::<16>(v, &format!("{name} in --keys")).map(Some);
        }
        let var = format!("DLMS_{name}");
        match std::env::var(&var) {
            Ok(v) if !v.trim().is_empty() => {
                let v = Zeroizing::new(v);
                parse_array::<16>(&v, &var).map(Some)
            }
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(Fail::usage(format_args!("{var} is not valid UTF-8")))
            }
        }
    }

    /// As [`Self::get`], for a key that must be given; `flag` names the
    /// flag in the message.
    pub(crate) fn require(
        &self,
        given: Option<&KeyBytes>,
        flag: &str,
        name: &str,
    ) -> Result<KeyBytes, Fail> {
        self.get(given, name)?.ok_or_else(|| {
            Fail::usage(format_args!(
                "missing key {name}: give {flag}, {name}= in --keys FILE, or DLMS_{name}"
            ))
        })
    }
}
