//! What is stored about an object besides its bytes (the rules deciding whether and
//! for how long an answer is stored live in [`crate::policy`]).

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// `fresh_until` of objects stored in record mode: never stale.
// TOML integers are i64, so "forever" is the largest one.
pub const FOREVER: u64 = i64::MAX as u64;

/// An object's response head and layout, as stored in both tiers and carried by a
/// fill's state.
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
    /// The selecting request fields of a varying answer and their values in the
    /// request it answered (RFC 9111 §4.1), lower-case names; empty when the
    /// answer does not vary. Part of the cache key (see `policy::variant_key`).
    #[serde(default)]
    pub vary: Vec<(String, String)>,
    /// `headers` parsed once, for the hits that serve this entry.
    #[serde(skip)]
    pub parsed: ParsedHeaders,
}

/// [`ObjectMeta::headers`] as a [`HeaderMap`], built on first use: a hot hit
/// would otherwise parse and copy every stored field per request (with the
/// policy reading `Cache-Control` too, about a quarter of a 1 KiB hit's cost).
/// A clone starts empty, so an entry copied and then changed (a `304`'s update)
/// never carries the map of the fields it had before; it takes no part in
/// equality.
#[derive(Default)]
pub struct ParsedHeaders(std::sync::OnceLock<HeaderMap>);

impl Clone for ParsedHeaders {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for ParsedHeaders {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ParsedHeaders {}

impl std::fmt::Debug for ParsedHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ParsedHeaders")
    }
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

    /// The stored headers as a map (values that are not valid are skipped).
    pub fn header_map(&self) -> HeaderMap {
        self.stored_map().clone()
    }

    /// [`Self::header_map`] without the copy. `headers` must not change once
    /// this was called (entries change through a clone, which starts afresh).
    pub fn stored_map(&self) -> &HeaderMap {
        self.parsed.0.get_or_init(|| {
            let mut map = HeaderMap::new();
            for (n, v) in &self.headers {
                if let (Ok(n), Ok(v)) = (HeaderName::try_from(n.as_str()), HeaderValue::from_str(v))
                {
                    map.append(n, v);
                }
            }
            map
        })
    }

    /// The request path the object was fetched with (its key without the variant).
    pub fn path(&self) -> &str {
        self.key.split('\0').next().unwrap_or(&self.key)
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

    /// Encodes for the on-disk `meta` file.
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

/// Headers never stored nor relayed as they are: hop-by-hop ones
/// ([`http_pack::hop_by_hop`]) and the framing the proxy writes itself.
pub fn is_hop_or_framing(name: &HeaderName) -> bool {
    http_pack::hop_by_hop::is_always(name)
        || matches!(
            name.as_str(),
            "content-length" | "content-range" | "x-cache"
        )
}

/// End-to-end headers of an origin answer, as stored: without hop-by-hop and
/// framing fields (those its `Connection` names too) and without `strip`.
pub fn stored_headers(headers: &HeaderMap, strip: &[HeaderName]) -> Vec<(String, String)> {
    let named = http_pack::hop_by_hop::connection_named(headers);
    headers
        .iter()
        .filter(|(n, _)| !is_hop_or_framing(n) && !named.contains(n) && !strip.contains(n))
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// Whether an answer's coding fits every client that a stored copy is served to:
/// stored copies are fetched with `Accept-Encoding: identity` and clients that
/// refuse identity are passed through, so only an identity-coded answer (no
/// `Content-Encoding`, or `identity`) is stored.
pub fn identity_coded(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONTENT_ENCODING).iter().all(|v| {
        v.to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("identity"))
    })
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

/// An HTTP date (RFC 9110 §5.6.7) as unix seconds.
pub fn http_date_secs(value: &str) -> Option<u64> {
    let time = httpdate::parse_http_date(value).ok()?;
    time.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_clone_never_serves_the_parsed_headers_of_its_original() {
        let original = ObjectMeta {
            key: "/k".into(),
            status: 200,
            headers: vec![("etag".into(), "\"a\"".into())],
            total: Some(1),
            slice_size: 1,
            fresh_until: 0,
            cacheable: true,
            stored_at: 0,
            vary: Vec::new(),
            parsed: ParsedHeaders::default(),
        };
        assert_eq!(original.stored_map()["etag"], "\"a\"");
        let mut updated = original.clone();
        updated.headers = vec![("etag".into(), "\"b\"".into())];
        assert_eq!(updated.stored_map()["etag"], "\"b\"");
        assert_eq!(original.stored_map()["etag"], "\"a\"");
        assert_ne!(original, updated);
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
