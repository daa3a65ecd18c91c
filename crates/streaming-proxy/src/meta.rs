//! What is stored about an object besides its bytes, and the rules deciding whether
//! and for how long an origin answer may be stored (RFC 9111, shared-cache subset).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderName};
use serde::{Deserialize, Serialize};

use crate::config::Mode;

/// `fresh_until` of objects stored in record mode: never stale.
// TOML integers are i64, so "forever" is the largest one.
pub const FOREVER: u64 = i64::MAX as u64;

/// An object's response head and layout, as stored in both tiers and sent in slot 1
/// of a fill's chunk-cache stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Cache key (request path and query).
    pub key: String,
    /// Status of the origin's answer (200 for stored objects).
    pub status: u16,
    /// End-to-end origin headers, minus the framing ones the proxy recomputes.
    pub headers: Vec<(String, String)>,
    /// Length of the whole object, when the origin announced it.
    pub total: Option<u64>,
    /// Slice size the pieces were cut with.
    pub slice_size: u64,
    /// Unix seconds until which the object is fresh.
    pub fresh_until: u64,
    /// Whether the answer may be stored.
    pub cacheable: bool,
    /// Unix seconds when the origin sent this head or last confirmed it with a
    /// `304`; 0 when unknown (entries written before this field existed).
    #[serde(default)]
    pub stored_at: u64,
}

impl ObjectMeta {
    /// The origin's `ETag`, if any.
    pub fn etag(&self) -> Option<&str> {
        self.header("etag")
    }

    /// The origin's `Last-Modified`, if any.
    pub fn last_modified(&self) -> Option<&str> {
        self.header("last-modified")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether `other` describes the same bytes (length, slicing and validators), so
    /// pieces stored under one are valid under the other.
    pub fn same_object(&self, other: &ObjectMeta) -> bool {
        self.total == other.total
            && self.slice_size == other.slice_size
            && self.etag() == other.etag()
            && self.last_modified() == other.last_modified()
    }

    /// The object's version token: a hash of its validators (`ETag`, `Last-Modified`),
    /// length and slicing, stable across processes and releases. Pieces on disk are
    /// checksummed under it, so a piece of another version of the object never
    /// passes for one of this version.
    pub fn version(&self) -> u64 {
        let mut hash = xxhash_rust::xxh3::Xxh3::new();
        for validator in [self.etag(), self.last_modified()] {
            // 0xff never occurs in a header value's text: fields cannot run together.
            hash.update(validator.unwrap_or("").as_bytes());
            hash.update(&[0xff]);
        }
        hash.update(&self.total.unwrap_or(u64::MAX).to_le_bytes());
        hash.update(&self.slice_size.to_le_bytes());
        hash.digest()
    }

    /// Whether the object is still fresh at `now` (unix seconds).
    pub fn is_fresh(&self, now: u64) -> bool {
        now < self.fresh_until
    }

    /// Whether a stale copy may answer when revalidation fails at `now` (unix
    /// seconds): only within the origin's `stale-if-error=N` window past expiry
    /// (RFC 5861 §4, which grants it "regardless of other freshness information").
    /// Without that permission the client gets the error, like nginx's default
    /// `proxy_cache_use_stale off`: a cache must not invent staleness the origin
    /// never agreed to, and `must-revalidate` origins rely on exactly that.
    pub fn may_serve_stale_on_error(&self, now: u64) -> bool {
        self.cache_control_secs("stale-if-error")
            .is_some_and(|w| now < self.fresh_until.saturating_add(w))
    }

    /// Whether a stale copy may answer at once while it is revalidated in the
    /// background: within the origin's `stale-while-revalidate=N` window past
    /// expiry (RFC 5861 §3).
    pub fn may_serve_while_revalidating(&self, now: u64) -> bool {
        self.cache_control_secs("stale-while-revalidate")
            .is_some_and(|w| now < self.fresh_until.saturating_add(w))
    }

    /// The largest `name=N` seconds in the stored `Cache-Control`, if any.
    fn cache_control_secs(&self, name: &str) -> Option<u64> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cache-control"))
            .flat_map(|(_, v)| v.split(','))
            .filter_map(|d| {
                let (directive, arg) = d.split_once('=')?;
                directive
                    .trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| arg.trim().trim_matches('"').parse::<u64>().ok())?
            })
            .max()
    }

    /// The `Age` of this stored answer at `now` (RFC 9111 §4.2.3, simplified to
    /// the origin's `Age` plus the time spent here), or `None` when unknown.
    pub fn age(&self, now: u64) -> Option<u64> {
        if self.stored_at == 0 {
            return None;
        }
        let origin_age = self
            .header("age")
            .and_then(|a| a.trim().parse::<u64>().ok());
        Some(
            origin_age
                .unwrap_or(0)
                .saturating_add(now.saturating_sub(self.stored_at)),
        )
    }

    /// Number of slices of a cacheable object of known length.
    pub fn slices(&self) -> u64 {
        self.total.map_or(0, |t| t.div_ceil(self.slice_size))
    }

    /// Byte range `[start, end)` of slice `index`.
    pub fn slice_bounds(&self, index: u64) -> (u64, u64) {
        let start = index * self.slice_size;
        let end = (start + self.slice_size).min(self.total.unwrap_or(u64::MAX));
        (start, end)
    }

    /// Encodes for slot 1 and the on-disk `meta` file.
    pub fn encode(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    /// Decodes what [`encode`](Self::encode) wrote.
    pub fn decode(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Headers that describe one hop or the framing of one message: never stored or
/// forwarded as they are (RFC 9110 §7.6.1), the proxy writes its own.
pub fn is_hop_or_framing(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "content-range"
            | "x-cache"
    )
}

/// End-to-end headers of an origin answer, as stored.
pub fn stored_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| !is_hop_or_framing(n))
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// How long an answer stays fresh, or `None` when it must not be stored.
///
/// Stored: 200/206 (206 being a slice of a 200 object) whose total length is known,
/// without `no-store` or `private`, and without `Vary` unless [`one_variant_for_all`]
/// holds (this cache keeps one variant per URL, so any other varying answer is passed
/// through rather than risk serving the wrong variant).
/// Lifetime: `s-maxage`, else `max-age`, else `Expires` - `Date`, else `default_ttl`.
/// `no-cache` stores with lifetime zero: every use is revalidated.
pub fn freshness(
    mode: Mode,
    status: u16,
    headers: &HeaderMap,
    total_known: bool,
    default_ttl: Duration,
) -> Option<u64> {
    if !matches!(status, 200 | 206) || !total_known {
        return None;
    }
    if mode == Mode::Record {
        return Some(FOREVER);
    }
    if !one_variant_for_all(headers) {
        return None;
    }
    let now = now_secs();
    let mut max_age = None;
    let mut s_maxage = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim().to_ascii_lowercase();
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (
                    n.trim().to_owned(),
                    Some(a.trim().trim_matches('"').to_owned()),
                ),
                None => (directive.clone(), None),
            };
            match (name.as_str(), arg) {
                ("no-store" | "private", _) => return None,
                ("no-cache", _) => max_age = Some(0),
                ("max-age", Some(a)) => max_age = max_age.or(a.parse::<u64>().ok()),
                ("s-maxage", Some(a)) => s_maxage = a.parse::<u64>().ok(),
                _ => {}
            }
        }
    }
    if let Some(secs) = s_maxage.or(max_age) {
        return Some(now.saturating_add(secs));
    }
    if let Some(expires) = header_date(headers, header::EXPIRES) {
        // Relative to the origin's clock when it sent one, so clock skew does not matter.
        let origin_now = header_date(headers, header::DATE).unwrap_or(now);
        return Some(now.saturating_add(expires.saturating_sub(origin_now)));
    }
    Some(now.saturating_add(default_ttl.as_secs()))
}

/// Whether an answer that may carry `Vary` is still right for every client: it
/// varies on nothing but `Accept-Encoding` and is not content-coded (fills ask for
/// `Accept-Encoding: identity`). Identity is acceptable to every client that does
/// not refuse it outright, and those are passed through (see [`accepts_identity`]).
/// This covers the common `Vary: Accept-Encoding` of compressing origins.
pub fn one_variant_for_all(headers: &HeaderMap) -> bool {
    let mut varies = headers
        .get_all(header::VARY)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("*").split(','))
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .peekable();
    if varies.peek().is_none() {
        return true;
    }
    let only_encoding = varies.all(|f| f.eq_ignore_ascii_case("accept-encoding"));
    let identity = headers.get_all(header::CONTENT_ENCODING).iter().all(|v| {
        v.to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("identity"))
    });
    only_encoding && identity
}

/// Whether a request's `Accept-Encoding` allows the identity coding (RFC 9110
/// §12.5.3: unless `identity;q=0`, or `*;q=0` with no `identity` entry).
pub fn accepts_identity(headers: &HeaderMap) -> bool {
    let mut identity = None;
    let mut star = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            // A malformed weight counts as acceptable: refusing is the exception.
            let zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            if coding.eq_ignore_ascii_case("identity") {
                identity = Some(!zero);
            } else if coding == "*" {
                star = Some(!zero);
            }
        }
    }
    identity.or(star).unwrap_or(true)
}

fn header_date(headers: &HeaderMap, name: HeaderName) -> Option<u64> {
    let value = headers.get(name)?.to_str().ok()?;
    // An unparsable Expires means "already expired" (RFC 9111 §5.3).
    Some(http_date_secs(value).unwrap_or(0))
}

/// An HTTP date (RFC 9110 §5.6.7) as unix seconds.
pub fn http_date_secs(value: &str) -> Option<u64> {
    let time = httpdate::parse_http_date(value).ok()?;
    time.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: Mode, headers: &[(&str, &str)]) -> Option<u64> {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        freshness(mode, 200, &map, true, Duration::from_secs(100))
            .map(|t| t.saturating_sub(now_secs()))
    }

    #[test]
    fn cache_control_expires_and_default_ttl() {
        let n = Mode::Normal;
        assert_eq!(policy(n, &[]), Some(100));
        assert_eq!(policy(n, &[("cache-control", "max-age=60")]), Some(60));
        assert_eq!(
            policy(n, &[("cache-control", "max-age=60, s-maxage=5")]),
            Some(5)
        );
        assert_eq!(policy(n, &[("cache-control", "public, no-store")]), None);
        assert_eq!(policy(n, &[("cache-control", "private")]), None);
        assert_eq!(
            policy(n, &[("cache-control", "no-cache, max-age=60")]),
            Some(0)
        );
        assert_eq!(policy(n, &[("vary", "accept-encoding")]), Some(100));
        assert_eq!(
            policy(
                n,
                &[("vary", "Accept-Encoding"), ("vary", "accept-encoding")]
            ),
            Some(100)
        );
        let gzip = [("vary", "accept-encoding"), ("content-encoding", "gzip")];
        assert_eq!(policy(n, &gzip), None);
        let identity = [
            ("vary", "accept-encoding"),
            ("content-encoding", "identity"),
        ];
        assert_eq!(policy(n, &identity), Some(100));
        assert_eq!(policy(n, &[("vary", "accept-encoding, user-agent")]), None);
        assert_eq!(policy(n, &[("vary", "*")]), None);
        assert_eq!(policy(n, &[("vary", "cookie")]), None);
        let date = httpdate::fmt_http_date(SystemTime::now());
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
        let got = policy(n, &[("date", &date), ("expires", &later)]).unwrap();
        assert!((3599..=3600).contains(&got), "{got}");
        assert_eq!(policy(n, &[("expires", "garbage")]), Some(0));
        assert!(policy(Mode::Record, &[("cache-control", "no-store")]).is_some());
        let map = HeaderMap::new();
        let ttl = Duration::from_secs(1);
        assert_eq!(freshness(n, 404, &map, true, ttl), None);
        assert_eq!(freshness(n, 200, &map, false, ttl), None);
    }

    #[test]
    fn stale_if_error_window() {
        let meta = |cc: &str| ObjectMeta {
            key: "/k".into(),
            status: 200,
            headers: vec![("Cache-Control".into(), cc.into())],
            total: Some(1),
            slice_size: 1,
            fresh_until: 1_000,
            cacheable: true,
            stored_at: 900,
        };
        let lenient = meta("max-age=0, stale-if-error=60");
        assert!(lenient.may_serve_stale_on_error(1_000));
        assert!(lenient.may_serve_stale_on_error(1_059));
        assert!(!lenient.may_serve_stale_on_error(1_060), "window over");
        assert!(!meta("max-age=0").may_serve_stale_on_error(1_001));
        assert!(!meta("must-revalidate").may_serve_stale_on_error(1_001));
        assert!(!meta("stale-if-error=soon").may_serve_stale_on_error(1_001));
        assert!(meta("public, STALE-IF-ERROR=\"5\"").may_serve_stale_on_error(1_004));
        assert_eq!(lenient.age(1_000), Some(100));
        let swr = meta("max-age=10, stale-while-revalidate=30");
        assert!(swr.may_serve_while_revalidating(1_029));
        assert!(!swr.may_serve_while_revalidating(1_030));
        assert!(!swr.may_serve_stale_on_error(1_001));
        assert!(!lenient.may_serve_while_revalidating(1_001));
        let mut aged = meta("max-age=60");
        aged.headers.push(("Age".into(), "7".into()));
        assert_eq!(aged.age(905), Some(12));
        aged.stored_at = 0;
        assert_eq!(aged.age(905), None);
    }

    #[test]
    fn identity_is_acceptable_unless_refused() {
        let accepts = |values: &[&str]| {
            let mut map = HeaderMap::new();
            for v in values {
                map.append(header::ACCEPT_ENCODING, v.parse().unwrap());
            }
            accepts_identity(&map)
        };
        assert!(accepts(&[]));
        assert!(accepts(&[""]));
        assert!(accepts(&["gzip, br"]));
        assert!(accepts(&["gzip;q=1.0, identity;q=0.5"]));
        assert!(accepts(&["*;q=0, identity"]));
        assert!(accepts(&["gzip;q=bogus"]));
        assert!(!accepts(&["gzip, identity;q=0"]));
        assert!(!accepts(&["br", "Identity; Q=0.000"]));
        assert!(!accepts(&["gzip, *;q=0"]));
    }
}
