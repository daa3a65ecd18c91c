//! Client `Range` headers (RFC 9110 §14): one byte range, resolved against a length.

/// A parsed single byte-range specifier, not yet resolved against the object length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `bytes=a-b` or `bytes=a-` (`end` inclusive).
    From {
        /// First byte.
        start: u64,
        /// Last byte, inclusive, if given.
        end: Option<u64>,
    },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// Outcome of resolving a [`RangeSpec`] against an object's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// Serve bytes `[start, end)` with `206`.
    Partial {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// `416 Range Not Satisfiable`.
    Unsatisfiable,
}

impl RangeSpec {
    /// Parses a `Range` header value. Multiple ranges and unknown units give `None`:
    /// the caller then ignores the header and serves the whole object, which RFC 9110
    /// permits.
    pub fn parse(value: &str) -> Option<Self> {
        let spec = value.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (first, last) = spec.split_once('-')?;
        let (first, last) = (first.trim(), last.trim());
        if first.is_empty() {
            return last.parse().ok().map(Self::Suffix);
        }
        let start = first.parse().ok()?;
        let end = if last.is_empty() {
            None
        } else {
            let end: u64 = last.parse().ok()?;
            if end < start {
                return None;
            }
            Some(end)
        };
        Some(Self::From { start, end })
    }

    /// The first byte the range needs when the length is not yet known (suffix ranges
    /// need the length: they start at 0, which costs the first slice).
    pub fn first_byte_hint(self) -> u64 {
        match self {
            Self::From { start, .. } => start,
            Self::Suffix(_) => 0,
        }
    }

    /// Resolves against an object of `total` bytes.
    pub fn resolve(self, total: u64) -> Resolved {
        match self {
            Self::From { start, end } if start < total => Resolved::Partial {
                start,
                end: end.map_or(total, |e| e.saturating_add(1).min(total)),
            },
            Self::Suffix(n) if n > 0 && total > 0 => Resolved::Partial {
                start: total.saturating_sub(n),
                end: total,
            },
            _ => Resolved::Unsatisfiable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves() {
        let r = |s: &str| RangeSpec::parse(s);
        assert_eq!(
            r("bytes=0-99").map(|r| r.resolve(1000)),
            Some(Resolved::Partial { start: 0, end: 100 })
        );
        assert_eq!(
            r("bytes=900-").map(|r| r.resolve(1000)),
            Some(Resolved::Partial {
                start: 900,
                end: 1000
            })
        );
        assert_eq!(
            r("bytes=-10").map(|r| r.resolve(1000)),
            Some(Resolved::Partial {
                start: 990,
                end: 1000
            })
        );
        assert_eq!(
            r("bytes=990-5000").map(|r| r.resolve(1000)),
            Some(Resolved::Partial {
                start: 990,
                end: 1000
            })
        );
        assert_eq!(
            r("bytes=1000-").map(|r| r.resolve(1000)),
            Some(Resolved::Unsatisfiable)
        );
        assert_eq!(
            r("bytes=-0").map(|r| r.resolve(1000)),
            Some(Resolved::Unsatisfiable)
        );
        assert_eq!(r("bytes=0-1,5-6"), None);
        assert_eq!(r("items=0-1"), None);
        assert_eq!(r("bytes=5-1"), None);
    }
}
