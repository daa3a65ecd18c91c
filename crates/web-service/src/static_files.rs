//! A directory handler: tower-http's `ServeDir` (content types, `Last-Modified`,
//! `If-Modified-Since`, `Range` with `206`/`416`) plus a weak `ETag` and `If-None-Match`.

use std::convert::Infallible;
use std::path::Path;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::header::{
    CONTENT_LENGTH, CONTENT_RANGE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use tower::Service;
use tower_http::services::ServeDir;

use crate::body::Body;

/// Serves files below a directory; see the module docs for the headers it handles.
#[derive(Debug, Clone)]
pub struct StaticFiles {
    inner: ServeDir,
}

impl StaticFiles {
    /// Serves `dir`; `GET /a/b.txt` reads `dir/a/b.txt`, directories serve `index.html`.
    pub fn new(dir: impl AsRef<Path>) -> Self {
        Self {
            inner: ServeDir::new(dir),
        }
    }
}

impl Service<Request<Body>> for StaticFiles {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let if_none_match = req.headers_mut().remove(IF_NONE_MATCH);
        if if_none_match.is_some() {
            // RFC 9110 13.2.2: If-None-Match takes precedence over If-Modified-Since.
            req.headers_mut().remove(IF_MODIFIED_SINCE);
        }
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let resp = match inner.call(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            let (mut parts, body) = resp.into_parts();
            let Some(etag) = etag_of(&parts.headers) else {
                return Ok(Response::from_parts(parts, Body::new(body)));
            };
            let matched = if_none_match
                .as_ref()
                .is_some_and(|inm| matches_etag(inm, &etag));
            parts.headers.insert(ETAG, etag);
            if matched && parts.status.is_success() {
                // The opened file is dropped unread.
                parts.status = StatusCode::NOT_MODIFIED;
                parts.headers.remove(CONTENT_LENGTH);
                parts.headers.remove(CONTENT_RANGE);
                return Ok(Response::from_parts(parts, Body::empty()));
            }
            Ok(Response::from_parts(parts, Body::new(body)))
        })
    }
}

/// A weak validator from the file's modification time and full length.
pub(crate) fn etag_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let modified = headers.get(LAST_MODIFIED)?.to_str().ok()?;
    let total = match headers.get(CONTENT_RANGE) {
        Some(range) => range.to_str().ok()?.rsplit('/').next()?.to_owned(),
        None => headers.get(CONTENT_LENGTH)?.to_str().ok()?.to_owned(),
    };
    let stamp = httpdate_digits(modified);
    HeaderValue::from_str(&format!("W/\"{total}-{stamp}\"")).ok()
}

fn httpdate_digits(date: &str) -> String {
    // Only ASCII alphanumerics: the date is already second-precision and unique per mtime.
    date.chars().filter(char::is_ascii_alphanumeric).collect()
}

pub(crate) fn matches_etag(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(list) = if_none_match.to_str() else {
        return false;
    };
    let ours = etag.to_str().unwrap_or_default().trim_start_matches("W/");
    list.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
}
