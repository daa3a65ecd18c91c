//! Configuration layering shared by both binaries: built-in defaults, then a
//! TOML file, then environment variables, then flags (each beats the one
//! before), and values with units.
//!
//! One declaration per option: a binary declares each option once, as a
//! `clap` field with `long` and `env` (flag and variable) that is also a serde
//! field (the TOML key). [`layer`] reads the file, lays what came from flags
//! and the environment over it (clap already put flags over the environment)
//! and deserializes the result into the binary's settings type, whose serde
//! defaults are the built-in ones. Unknown keys and bad values are errors
//! that name the key.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not TOML, or a key is unknown or has a bad value.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// `defaults < file < environment < flags`: deserializes `T` from the TOML
/// `file` (if any) with every field `flags` sets laid over it. `flags`
/// serializes only the options given (flags or environment), so a value it
/// lacks keeps the file's, or else `T`'s serde default.
pub fn layer<F: Serialize, T: DeserializeOwned>(
    file: Option<&Path>,
    flags: &F,
) -> Result<T, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            toml::from_str::<toml::Table>(&text)
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?
        }
        None => toml::Table::new(),
    };
    let given =
        toml::Table::try_from(flags).map_err(|e| ConfigError::Invalid(format!("flags: {e}")))?;
    table.extend(given);
    let where_ = file.map_or_else(|| "flags".to_owned(), |p| p.display().to_string());
    T::deserialize(toml::Value::Table(table))
        .map_err(|e| ConfigError::Invalid(format!("{where_} (or flags/environment): {e}")))
}

/// A byte count: `1048576`, `64KiB`, `256MiB`, `10GiB`, `1.5GB` (SI `kB`,
/// `MB`, `GB`, `TB` are powers of 1000; `KiB`, `MiB`, ... and bare `K`, `M`,
/// `G`, `T` powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = (&t[..split], t[split..].trim());
        let scale: u64 = match unit {
            "" | "B" => 1,
            "K" | "KiB" | "k" => 1 << 10,
            "M" | "MiB" => 1 << 20,
            "G" | "GiB" => 1 << 30,
            "T" | "TiB" => 1 << 40,
            "kB" | "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            _ => {
                return Err(format!(
                    "{text:?}: unknown size unit {unit:?} (use B, KiB, MiB, GiB, TiB, kB, MB, GB, TB)"
                ));
            }
        };
        let value = if number.contains('.') {
            let f: f64 = number
                .parse()
                .map_err(|_| format!("{text:?} is not a size"))?;
            let bytes = f * scale as f64;
            if !(0.0..=u64::MAX as f64).contains(&bytes) {
                return Err(format!("{text:?} is out of range"));
            }
            bytes as u64
        } else {
            let n: u64 = number
                .parse()
                .map_err(|_| format!("{text:?} is not a size"))?;
            n.checked_mul(scale)
                .ok_or_else(|| format!("{text:?} is out of range"))?
        };
        Ok(Self(value))
    }
}

/// A duration: `30s`, `500ms`, `2m`, `1h`, `1.5s`; a bare number counts in
/// the option's own unit (milliseconds for `..._ms` options, seconds for
/// `..._secs`), so existing values keep their meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span<const BARE_MS: u64>(pub Duration);

/// A duration whose bare numbers are milliseconds.
pub type Millis = Span<1>;
/// A duration whose bare numbers are seconds.
pub type Secs = Span<1000>;

impl<const BARE_MS: u64> Span<BARE_MS> {
    /// Whole milliseconds (saturating).
    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

/// A bare number in the option's own unit (as a bare number in a file means).
impl<const BARE_MS: u64> From<u64> for Span<BARE_MS> {
    fn from(n: u64) -> Self {
        Self(Duration::from_millis(n.saturating_mul(BARE_MS)))
    }
}

impl<const BARE_MS: u64> FromStr for Span<BARE_MS> {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = (&t[..split], t[split..].trim());
        let ms_per: f64 = match unit {
            "" => BARE_MS as f64,
            "ms" => 1.0,
            "s" => 1e3,
            "m" | "min" => 60e3,
            "h" => 3_600e3,
            "d" => 86_400e3,
            _ => {
                return Err(format!(
                    "{text:?}: unknown duration unit {unit:?} (use ms, s, m, h, d)"
                ));
            }
        };
        let n: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration"))?;
        let ms = n * ms_per;
        if !(0.0..=1e15).contains(&ms) {
            return Err(format!("{text:?} is out of range"));
        }
        Ok(Self(Duration::from_secs_f64(ms / 1e3)))
    }
}

/// Bytes.
impl From<u64> for Size {
    fn from(n: u64) -> Self {
        Self(n)
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

// Both types go through TOML as an integer (bytes; the bare unit) when they
// come from flags, and accept an integer or a string with a unit from files.
#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrText {
    Int(u64),
    Float(f64),
    Text(String),
}

impl IntOrText {
    fn text(self) -> String {
        match self {
            Self::Int(n) => n.to_string(),
            Self::Float(f) => f.to_string(),
            Self::Text(t) => t,
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IntOrText::deserialize(d)?
            .text()
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de, const BARE_MS: u64> Deserialize<'de> for Span<BARE_MS> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IntOrText::deserialize(d)?
            .text()
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl<const BARE_MS: u64> Serialize for Span<BARE_MS> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // In milliseconds with a unit, so no precision is lost between layers.
        s.serialize_str(&format!("{}ms", self.0.as_secs_f64() * 1e3))
    }
}

/// serde `deserialize_with` for a plain `u64` byte count that accepts units.
pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Size::deserialize(d).map(|s| s.0)
}

/// serde `deserialize_with` for a plain `u64` of seconds that accepts units.
pub fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Secs::deserialize(d).map(|s| s.0.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let cases = [
            ("1048576", Some(1 << 20)),
            ("64KiB", Some(64 << 10)),
            ("256MiB", Some(256 << 20)),
            ("256M", Some(256 << 20)),
            ("10GiB", Some(10 << 30)),
            ("1.5GB", Some(1_500_000_000)),
            ("2 kB", Some(2000)),
            ("12parsecs", None),
            ("", None),
            ("99999999999TiB", None),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Size>().ok().map(|s| s.0), want, "{text}");
        }
    }

    #[test]
    fn durations() {
        let ms = |t: &str| t.parse::<Millis>().ok().map(Millis::as_millis);
        let cases = [
            ("30000", Some(30_000)),
            ("30s", Some(30_000)),
            ("500ms", Some(500)),
            ("1.5s", Some(1_500)),
            ("2m", Some(120_000)),
            ("1h", Some(3_600_000)),
            ("soon", None),
            ("5 fortnights", None),
        ];
        for (text, want) in cases {
            assert_eq!(ms(text), want, "{text}");
        }
        assert_eq!("30".parse::<Secs>().unwrap().as_millis(), 30_000);
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Opts {
        #[serde(skip_serializing_if = "Option::is_none")]
        a: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        b: Option<Size>,
        #[serde(skip_serializing_if = "Option::is_none")]
        c: Option<Millis>,
    }

    impl Default for Opts {
        fn default() -> Self {
            Self {
                a: Some(1),
                b: None,
                c: None,
            }
        }
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults_and_bad_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "b = \"2MiB\"\nc = \"3s\"\n").unwrap();
        let flags = Opts {
            a: None,
            b: None,
            c: Some("5ms".parse().unwrap()),
        };
        let got: Opts = layer(Some(&file), &flags).unwrap();
        assert_eq!(got.a, Some(1), "default kept");
        assert_eq!(got.b, Some(Size(2 << 20)), "file kept");
        assert_eq!(got.c.map(Millis::as_millis), Some(5), "flag wins");
        std::fs::write(&file, "bogus_key = 1\n").unwrap();
        let err = layer::<_, Opts>(Some(&file), &flags)
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus_key"), "{err}");
        std::fs::write(&file, "b = \"lots\"\n").unwrap();
        let err = layer::<_, Opts>(Some(&file), &flags)
            .unwrap_err()
            .to_string();
        assert!(err.contains("lots"), "{err}");
    }
}
