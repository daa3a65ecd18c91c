//! Hop-by-hop header fields (RFC 9110 §7.6.1): the one definition of the
//! workspace, used by the ingress, the worker API and the proxy alike.
//!
//! A field is hop-by-hop when it is one of [`ALWAYS`] or when the message's own
//! `Connection` header names it. Such fields describe one connection and must not
//! be forwarded (HTTP/2 and HTTP/3 forbid the connection-specific ones outright).

use http::HeaderMap;
use http::header::{CONNECTION, HeaderName};

/// Fields that are hop-by-hop whatever `Connection` says: `Connection` itself,
/// the fields RFC 9110 §7.6.1 names (`Proxy-Connection`, `Keep-Alive`, `TE`,
/// `Transfer-Encoding`, `Upgrade`) and `Trailer`, which announces trailers of
/// this hop's framing (RFC 9110 §6.6.2).
pub const ALWAYS: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` is in [`ALWAYS`].
pub fn is_always(name: &HeaderName) -> bool {
    ALWAYS.contains(&name.as_str())
}

/// The field names listed in `headers`' `Connection` values (RFC 9110 §7.6.1);
/// tokens that are not valid field names are skipped.
pub fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect()
}

/// Removes every hop-by-hop field from `headers`: [`ALWAYS`] and those its
/// `Connection` names (read before `Connection` itself goes).
pub fn strip(headers: &mut HeaderMap) {
    // Most messages carry none of these (and `Connection`, which names the
    // others, is one of them): one pass over the names instead of seven
    // lookups by string and a parse of `Connection` per message.
    if !headers.keys().any(is_always) {
        return;
    }
    for name in connection_named(headers) {
        headers.remove(name);
    }
    for name in ALWAYS {
        headers.remove(name);
    }
}

/// The end-to-end fields of `headers`, as a new map (the original is kept).
pub fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    strip(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_and_connection_named_fields_are_removed() {
        let mut headers = HeaderMap::new();
        for (n, v) in [
            ("connection", "close, X-Secret , bogus name"),
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("trailer", "x-sum"),
            ("accept", "*/*"),
            ("x-trace", "abc"),
        ] {
            headers.append(HeaderName::from_static(n), v.parse().unwrap());
        }
        assert!(is_always(&CONNECTION));
        strip(&mut headers);
        let mut left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-trace"]);
    }
}
