//! What a GET or HEAD asks of a stored object besides the object itself: its range
//! and its conditionals (RFC 9110 §13), evaluated against the entry.

use http::header::{self, HeaderMap};

use crate::meta::{ObjectMeta, http_date_secs};
use crate::range::{RangeSpec, Resolved};

/// The conditional and range parts of a request.
#[derive(Debug, Clone, Default)]
pub struct Ask {
    /// `HEAD`: the head of the GET answer, no body.
    pub head_only: bool,
    /// `Range`, when it is one byte range.
    pub range: Option<RangeSpec>,
    /// `If-None-Match` as sent (a list of entity tags, or `*`).
    pub if_none_match: Option<String>,
    /// `If-Modified-Since` in unix seconds.
    pub if_modified_since: Option<u64>,
    /// `If-Range` as sent: an entity tag or an HTTP date.
    pub if_range: Option<String>,
    /// `If-Match` as sent (a list of entity tags, or `*`).
    pub if_match: Option<String>,
    /// `If-Unmodified-Since` in unix seconds.
    pub if_unmodified_since: Option<u64>,
}

/// How a stored entry answers a request (after freshness was settled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `412` (RFC 9110 §13.2.2 steps 1-2).
    PreconditionFailed,
    /// `304` with the entry's headers (§13.2.2 step 3-4).
    NotModified,
    /// `416` with `Content-Range: bytes */total` (§15.5.17).
    Unsatisfiable,
    /// `200`, or `206` for `[start, end)` when `partial` (for HEAD, the head of
    /// that answer).
    Bytes {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// `206` rather than `200`.
        partial: bool,
    },
}

impl Ask {
    /// Reads the parts of `headers` this module evaluates.
    pub fn from_headers(head_only: bool, headers: &HeaderMap) -> Self {
        let get = |name| headers.get(name).and_then(|v| v.to_str().ok());
        Self {
            head_only,
            range: get(header::RANGE).and_then(RangeSpec::parse),
            if_none_match: get(header::IF_NONE_MATCH).map(str::to_owned),
            if_modified_since: get(header::IF_MODIFIED_SINCE).and_then(http_date_secs),
            if_range: get(header::IF_RANGE).map(str::to_owned),
            if_match: get(header::IF_MATCH).map(str::to_owned),
            if_unmodified_since: get(header::IF_UNMODIFIED_SINCE).and_then(http_date_secs),
        }
    }

    /// How `meta` answers this request: preconditions first (§13.2.2), then the
    /// range (with `If-Range`), then the whole object.
    pub fn reply(&self, meta: &ObjectMeta) -> Reply {
        if self.precondition_failed(meta) {
            return Reply::PreconditionFailed;
        }
        if self.not_modified(meta) {
            return Reply::NotModified;
        }
        let total = meta.total.unwrap_or(0);
        let (start, end, partial) = match self.range_for(meta).map(|r| r.resolve(total)) {
            None => (0, total, false),
            Some(Resolved::Partial { start, end }) => (start, end, true),
            Some(Resolved::Unsatisfiable) => return Reply::Unsatisfiable,
        };
        Reply::Bytes {
            start,
            end,
            partial,
        }
    }

    /// `If-Match` (strong comparison, `*` for any stored object), else
    /// `If-Unmodified-Since` (ignored for an object without `Last-Modified`).
    fn precondition_failed(&self, meta: &ObjectMeta) -> bool {
        if let Some(tags) = &self.if_match {
            let strong = |tag: &str| !tag.starts_with("W/");
            let matches = tags.split(',').map(str::trim).any(|t| {
                t == "*"
                    || meta
                        .etag()
                        .map(str::trim)
                        .is_some_and(|e| strong(e) && strong(t) && e == t)
            });
            return !matches;
        }
        let modified = meta.last_modified().and_then(http_date_secs);
        matches!((self.if_unmodified_since, modified), (Some(since), Some(m)) if m > since)
    }

    /// The range to serve: the asked one, unless an `If-Range` names another
    /// version (§13.1.5: strong comparison of entity tags, exact match of the
    /// date), so a resumed download never splices bytes of two versions.
    pub fn range_for(&self, meta: &ObjectMeta) -> Option<RangeSpec> {
        let range = self.range?;
        let Some(validator) = self.if_range.as_deref().map(str::trim) else {
            return Some(range);
        };
        let current = if validator.starts_with('"') {
            meta.etag().is_some_and(|etag| etag.trim() == validator)
        } else {
            !validator.starts_with("W/") && meta.last_modified().map(str::trim) == Some(validator)
        };
        current.then_some(range)
    }

    /// Whether the client's copy is current: `If-None-Match` (weak comparison;
    /// `*` matches any stored entry, §13.1.2) takes precedence over
    /// `If-Modified-Since` (§13.1.3).
    fn not_modified(&self, meta: &ObjectMeta) -> bool {
        let weak = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
        if let Some(tags) = &self.if_none_match {
            return tags
                .split(',')
                .any(|t| t.trim() == "*" || meta.etag().is_some_and(|etag| weak(t) == weak(etag)));
        }
        let modified = meta.last_modified().and_then(http_date_secs);
        matches!((self.if_modified_since, modified), (Some(since), Some(m)) if m <= since)
    }
}
