//! The cache policy (RFC 9111, RFC 5861) as pure functions over plain data and an
//! injected `now`: no I/O, no clock. [`decide`] says what to do with a request and
//! the stored entry; [`storable`] whether and how an origin answer is stored;
//! [`after_revalidation`] what a revalidation's outcome means for the client;
//! [`invalidates`] which answers to unsafe methods drop the entry (§4.4). The
//! proxy carries these decisions out and never re-derives them.
//!
//! Stricter than the RFC where sharing would be a risk for a general-purpose
//! reverse proxy (as Varnish's built-in rules are): requests carrying
//! `Authorization` or `Cookie` are passed through and never stored or served from
//! storage (§3.5 would allow storing authorized answers marked `public`,
//! `s-maxage` or `must-revalidate`), and answers with `Set-Cookie` are not stored
//! unless `store_set_cookie`, which stores them with the header removed.

mod conditional;
mod directives;
#[cfg(test)]
mod tests;

pub use conditional::{Ask, Reply};
pub use directives::Directives;

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, StatusCode};

use crate::config::Mode;
use crate::meta::{self, FOREVER, ObjectMeta};
use crate::proxy::CacheStatus;

/// The settings the policy reads.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// normal, record or replay.
    pub mode: Mode,
    /// Upper bound of heuristic freshness (§4.2.2), seconds (`default_ttl_secs`).
    pub heuristic_cap: u64,
    /// Store answers carrying `Set-Cookie`, without that header.
    pub store_set_cookie: bool,
}

/// A client request as the policy sees it.
#[derive(Debug, Clone)]
pub struct Req {
    /// GET, HEAD, ...
    pub method: Method,
    /// The request's `Cache-Control` (and `Pragma: no-cache` without it, §5.4).
    pub directives: Directives,
    /// Conditionals and range.
    pub ask: Ask,
    /// `Authorization` or `Cookie` present.
    pub credentials: bool,
    /// `Accept-Encoding` allows identity, the coding stored copies have.
    pub accepts_identity: bool,
}

impl Req {
    /// Reads what the policy needs of a request.
    pub fn new(method: &Method, headers: &HeaderMap) -> Self {
        let mut directives = Directives::of(headers);
        if !headers.contains_key(header::CACHE_CONTROL)
            && headers.get_all(header::PRAGMA).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.to_ascii_lowercase().contains("no-cache"))
            })
        {
            directives = Directives::parse("no-cache");
        }
        Self {
            method: method.clone(),
            directives,
            ask: Ask::from_headers(method == Method::HEAD, headers),
            credentials: headers.contains_key(header::AUTHORIZATION)
                || headers.contains_key(header::COOKIE),
            accepts_identity: meta::accepts_identity(headers),
        }
    }
}

/// What the proxy does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answer from the entry.
    Serve(Reply),
    /// Answer from the (stale) entry now and revalidate it in the background
    /// (RFC 5861 §3).
    ServeThenRevalidate(Reply),
    /// Ask the origin with the entry's validators first, then
    /// [`after_revalidation`].
    Revalidate,
    /// Fetch from the origin through a shared fill, storing what is storable.
    Fetch,
    /// Forward the request as it is; store nothing.
    PassThrough,
    /// Answer with this status without asking the origin (`504`).
    Refuse(StatusCode),
}

/// An [`Action`] and the `x-cache` value it reports (for [`Action::Revalidate`],
/// the value if the origin confirms the entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// What the response and the metrics report.
    pub status: CacheStatus,
}

const fn decision(action: Action, status: CacheStatus) -> Decision {
    Decision { action, status }
}

/// Freshness facts of a stored entry at `now` (§4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// `current_age` (§4.2.3): the origin's `Age` plus the time spent here.
    pub age: u64,
    /// Seconds of freshness left; 0 when stale.
    pub left: u64,
    /// Seconds past expiry; 0 when fresh.
    pub staleness: u64,
}

impl Freshness {
    /// Of `entry` at `now` (unix seconds).
    pub fn of(entry: &ObjectMeta, now: u64) -> Self {
        Self {
            age: entry.age(now).unwrap_or(0),
            left: entry.fresh_until.saturating_sub(now),
            staleness: now.saturating_sub(entry.fresh_until),
        }
    }

    fn fresh(self) -> bool {
        self.left > 0
    }
}

/// Directives of a stored entry that forbid serving it stale (§4.2.4):
/// `must-revalidate`, `proxy-revalidate`, `s-maxage` (which implies it,
/// §5.2.2.10), and `no-cache` without field names (§5.2.2.4).
pub fn must_revalidate(entry: &Directives) -> bool {
    entry.has("must-revalidate")
        || entry.has("proxy-revalidate")
        || entry.has("s-maxage")
        || entry.arg("no-cache") == Some(None)
}

/// What to do with `req` given the stored `entry` (already the variant selected
/// for the request, `None` if there is none) at `now`.
pub fn decide(req: &Req, entry: Option<&ObjectMeta>, now: u64, mode: Mode) -> Decision {
    use CacheStatus::{Bypass, Hit, Miss, Stale};
    if req.method != Method::GET && req.method != Method::HEAD {
        return decision(Action::PassThrough, Bypass);
    }
    if req.credentials || !req.accepts_identity {
        return decision(Action::PassThrough, Bypass);
    }
    let only_if_cached = req.directives.has("only-if-cached");
    let Some(entry) = entry else {
        return match mode {
            Mode::Replay => decision(Action::Refuse(StatusCode::GATEWAY_TIMEOUT), Miss),
            // §5.2.1.7: 504 rather than contact the origin.
            _ if only_if_cached => decision(Action::Refuse(StatusCode::GATEWAY_TIMEOUT), Miss),
            // §5.2.1.5: this request's answer must not be stored.
            _ if req.directives.has("no-store") => decision(Action::PassThrough, Bypass),
            _ => decision(Action::Fetch, Miss),
        };
    };
    let reply = req.ask.reply(entry);
    if mode == Mode::Replay {
        return decision(Action::Serve(reply), Hit);
    }
    let stored = Directives::of(entry.stored_map());
    let f = Freshness::of(entry, now);
    let strict = must_revalidate(&stored);
    // §5.2.1.1 max-age, §5.2.1.3 min-fresh: limits the client puts on freshness.
    let young_enough = req.directives.seconds("max-age").is_none_or(|m| f.age <= m);
    let fresh_enough = req
        .directives
        .seconds("min-fresh")
        .is_none_or(|m| f.left >= m);
    let no_cache = req.directives.has("no-cache") || stored.arg("no-cache") == Some(None);
    if f.fresh() && young_enough && fresh_enough && !no_cache {
        return decision(Action::Serve(reply), Hit);
    }
    // §5.2.1.2 max-stale: the client accepts a stale answer, unless the origin
    // forbade serving it stale (§4.2.4).
    let accepts_stale = !f.fresh()
        && !strict
        && !no_cache
        && young_enough
        && req.directives.arg("max-stale").is_some_and(|arg| {
            arg.is_none()
                || req
                    .directives
                    .seconds("max-stale")
                    .is_some_and(|m| f.staleness <= m)
        });
    if accepts_stale {
        return decision(Action::Serve(reply), Stale);
    }
    if only_if_cached {
        return decision(Action::Refuse(StatusCode::GATEWAY_TIMEOUT), Miss);
    }
    if entry.etag().is_none() && entry.last_modified().is_none() {
        // Nothing to revalidate with: a new fetch (which replaces the entry).
        return decision(Action::Fetch, Miss);
    }
    // RFC 5861 §3, within the origin's window and when nothing above asked for
    // the origin's word.
    let swr = stored
        .seconds("stale-while-revalidate")
        .is_some_and(|w| f.staleness < w);
    if swr && !f.fresh() && !strict && !no_cache && young_enough && fresh_enough {
        return decision(Action::ServeThenRevalidate(reply), Stale);
    }
    decision(Action::Revalidate, CacheStatus::Revalidated)
}

/// What a revalidation found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `304`: the entry (with its headers updated, §3.2) is current.
    Confirmed,
    /// The origin answered with another object: fetch it.
    Changed,
    /// The origin failed (unreachable, timed out, or `5xx` with this status).
    Failed(StatusCode),
}

/// The client's answer after revalidating `entry` (already updated on
/// [`Outcome::Confirmed`]) at `now`.
pub fn after_revalidation(req: &Req, entry: &ObjectMeta, outcome: Outcome, now: u64) -> Decision {
    match outcome {
        Outcome::Confirmed => decision(
            Action::Serve(req.ask.reply(entry)),
            CacheStatus::Revalidated,
        ),
        Outcome::Changed => decision(Action::Fetch, CacheStatus::Miss),
        Outcome::Failed(status) => {
            let stored = Directives::of(entry.stored_map());
            let f = Freshness::of(entry, now);
            // RFC 5861 §4 grants stale-if-error; must-revalidate takes it back
            // (§4.2.4: "MUST NOT generate a stale response" it forbids), and then
            // the answer is 504 (§5.2.2.2).
            if must_revalidate(&stored) {
                return decision(
                    Action::Refuse(StatusCode::GATEWAY_TIMEOUT),
                    CacheStatus::Miss,
                );
            }
            let window = stored
                .seconds("stale-if-error")
                .max(req.directives.seconds("stale-if-error"));
            if window.is_some_and(|w| f.staleness < w) {
                return decision(Action::Serve(req.ask.reply(entry)), CacheStatus::Stale);
            }
            decision(Action::Refuse(status), CacheStatus::Miss)
        }
    }
}

/// Whether a `status` answer to `method` invalidates the stored entry (§4.4: an
/// unsafe method answered with a non-error status).
pub fn invalidates(method: &Method, status: StatusCode) -> bool {
    !method.is_safe() && (status.is_success() || status.is_redirection())
}

/// The `Vary` of an answer (§4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vary {
    /// No `Vary`: one entry serves every request.
    None,
    /// `Vary: *`: never served from storage.
    Star,
    /// The selecting request fields (lower case, sorted, deduplicated).
    Fields(Vec<String>),
}

/// Reads `Vary` from an answer's headers.
pub fn vary(headers: &HeaderMap) -> Vary {
    let mut fields = Vec::new();
    for value in headers.get_all(header::VARY) {
        let Ok(value) = value.to_str() else {
            return Vary::Star; // not readable: cannot be matched
        };
        for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            if field == "*" {
                return Vary::Star;
            }
            fields.push(field.to_ascii_lowercase());
        }
    }
    fields.sort();
    fields.dedup();
    if fields.is_empty() {
        Vary::None
    } else {
        Vary::Fields(fields)
    }
}

/// The values of the selecting `fields` in a request (§4.1: all lines of a field,
/// combined in order; whitespace around commas normalised), as stored with the
/// entry. An absent field is an empty value, which only matches absent.
pub fn selecting(fields: &[String], request: &HeaderMap) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|name| {
            let value = request
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(",");
            (name.clone(), value)
        })
        .collect()
}

/// The cache key of the variant `selected` of `path`: `path` itself when the
/// object does not vary. NUL cannot occur in a path, so keys cannot collide.
pub fn variant_key(path: &str, selected: &[(String, String)]) -> String {
    if selected.is_empty() {
        return path.to_owned();
    }
    let mut key = path.to_owned();
    for (name, value) in selected {
        key.push('\0');
        key.push_str(name);
        key.push('=');
        key.push_str(value);
    }
    key
}

/// How an answer is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// Unix seconds until which it is fresh.
    pub fresh_until: u64,
    /// Header fields not stored (`Set-Cookie` with `store_set_cookie`, the field
    /// names of `private="..."` and `no-cache="..."`, §5.2.2.4, §5.2.2.7).
    pub strip: Vec<HeaderName>,
}

/// Whether an origin answer may be stored (§3), and how, at `now`.
///
/// `status` is 200, or 206 for a slice of a 200 object, with `total_known`. The
/// freshness lifetime (§4.2.1) is `s-maxage`, else `max-age`, else `Expires` -
/// `Date`, else heuristic (§4.2.2: a tenth of the time since `Last-Modified`, at
/// most `heuristic_cap`), else 0; the `Age` the origin sent is taken off
/// (§4.2.3). An answer without explicit lifetime nor `Last-Modified` is stored
/// only if it has an `ETag` to revalidate with.
pub fn storable(
    settings: Settings,
    request: &Directives,
    status: u16,
    headers: &HeaderMap,
    total_known: bool,
    now: u64,
) -> Option<Storage> {
    if !matches!(status, 200 | 206) || !total_known {
        return None;
    }
    let mut strip = Vec::new();
    let has_cookie = headers.contains_key(header::SET_COOKIE);
    if has_cookie {
        if settings.mode != Mode::Record && !settings.store_set_cookie {
            return None;
        }
        strip.push(header::SET_COOKIE);
    }
    if settings.mode == Mode::Record {
        return Some(Storage {
            fresh_until: FOREVER,
            strip,
        });
    }
    let cc = Directives::of(headers);
    if request.has("no-store") || cc.has("no-store") || vary(headers) == Vary::Star {
        return None;
    }
    for qualified in ["private", "no-cache"] {
        match cc.field_names(qualified) {
            Some(fields) => strip.extend(
                fields
                    .iter()
                    .filter_map(|f| HeaderName::from_bytes(f.as_bytes()).ok()),
            ),
            // §5.2.2.7: a shared cache must not store a private answer.
            None if qualified == "private" && cc.has("private") => return None,
            None => {}
        }
    }
    let date = header_secs(headers, header::DATE);
    let explicit = cc
        .seconds("s-maxage")
        .or_else(|| cc.seconds("max-age"))
        .or_else(|| {
            let expires = headers.get(header::EXPIRES)?.to_str().ok()?;
            // An invalid Expires means "already expired" (§5.3).
            let expires = meta::http_date_secs(expires).unwrap_or(0);
            Some(expires.saturating_sub(date.unwrap_or(now)))
        });
    let last_modified = header_secs(headers, header::LAST_MODIFIED);
    let lifetime = match (explicit, last_modified) {
        (Some(secs), _) => secs,
        (None, Some(lm)) => {
            (date.unwrap_or(now).saturating_sub(lm) / 10).min(settings.heuristic_cap)
        }
        (None, None) if headers.contains_key(header::ETAG) => 0,
        (None, None) => return None,
    };
    let age = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Some(Storage {
        fresh_until: now
            .saturating_add(lifetime.saturating_sub(age))
            .min(FOREVER),
        strip,
    })
}

fn header_secs(headers: &HeaderMap, name: HeaderName) -> Option<u64> {
    meta::http_date_secs(headers.get(name)?.to_str().ok()?)
}
