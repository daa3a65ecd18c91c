//! Byte sizes as people type them: `1048576`, `512K`, `64M`, `1G`.
//!
//! One parser for the command line and for the origin's `/obj/{size}` paths,
//! so a size means the same bytes wherever it is written.

use crate::error::{Error, Result};

/// Parses `1048576`, `512K`, `64M`, `1G` (also `KiB`/`MiB`/`GiB`, any case);
/// suffixes are powers of 1024.
pub fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| Error::Argument(format!("{text:?} is not a size (e.g. 1048576, 64M, 1G)")))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => {
            return Err(Error::Argument(format!(
                "unknown size unit {unit:?} in {text:?}: use K, M or G"
            )));
        }
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| Error::Argument(format!("{text:?} is too large")))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1048576").ok(), Some(1 << 20));
        assert_eq!(parse_size("64M").ok(), Some(64 << 20));
        assert_eq!(parse_size("1GiB").ok(), Some(1 << 30));
        assert_eq!(parse_size("256k").ok(), Some(256 << 10));
        assert_eq!(parse_size("0").ok(), Some(0));
        assert!(parse_size("1T").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
