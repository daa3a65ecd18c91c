//! What the origin sees of a client's request, and the client of the origin's
//! answer: end-to-end fields forwarded (RFC 9110 §7.6.1, with the workspace's one
//! hop-by-hop definition), `Host`, `X-Forwarded-For`, `X-Forwarded-Proto` and
//! `Via` (§7.6.3) added.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Version};
use web_service::ConnInfo;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Our `Via` entry for a message received in `version`, e.g. `1.1 streaming-proxy`.
pub fn via(version: Version) -> HeaderValue {
    HeaderValue::from_static(match version {
        Version::HTTP_09 => "0.9 streaming-proxy",
        Version::HTTP_10 => "1.0 streaming-proxy",
        Version::HTTP_2 => "2 streaming-proxy",
        Version::HTTP_3 => "3 streaming-proxy",
        _ => "1.1 streaming-proxy",
    })
}

/// The headers to send to the origin for `request`: its end-to-end fields,
/// `Host` kept only with `preserve_host` (else the client sets the upstream's),
/// the client's address appended to `X-Forwarded-For`, `X-Forwarded-Proto` set to
/// the scheme the client used, and our `Via` appended.
pub fn to_origin<B>(request: &Request<B>, preserve_host: bool) -> HeaderMap {
    let mut headers = http_pack::hop_by_hop::end_to_end(request.headers());
    if preserve_host {
        // HTTP/2 and HTTP/3 carry the host as the URI's authority.
        if !headers.contains_key(header::HOST)
            && let Some(host) = request
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            headers.insert(header::HOST, host);
        }
    } else {
        headers.remove(header::HOST);
    }
    let info = request.extensions().get::<ConnInfo>();
    if let Some(info) = info {
        let ip = info.remote_addr.ip().to_canonical().to_string();
        let chain = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(earlier) if !earlier.trim().is_empty() => format!("{earlier}, {ip}"),
            _ => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&chain) {
            headers.insert(X_FORWARDED_FOR, v);
        }
    }
    let tls = info.is_some_and(|i| i.tls);
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    headers.append(header::VIA, via(request.version()));
    headers
}

/// The answer headers to relay to a client: the origin's end-to-end fields and
/// our `Via` (received from the origin in `version`).
pub fn to_client(origin: &HeaderMap, version: Version) -> HeaderMap {
    let mut headers = http_pack::hop_by_hop::end_to_end(origin);
    headers.append(header::VIA, via(version));
    headers
}

/// A fill's or a revalidation's request built from the headers of the client that
/// started it: its own conditionals and range removed (the proxy asks for what it
/// stores), identity coding asked for (stored bytes go to every client).
pub fn for_fill(forwarded: HeaderMap) -> HeaderMap {
    let mut headers = forwarded;
    for name in [
        header::RANGE,
        header::IF_RANGE,
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_UNMODIFIED_SINCE,
    ] {
        headers.remove(name);
    }
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    headers
}
