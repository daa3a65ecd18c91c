//! The request path: cache lookup, revalidation, fills, pass-through and `PURGE`,
//! behind one tower service.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use tokio::sync::watch;
use web_service::{Body, ConnInfo};

use crate::body::{RangeBody, relay_body};
use crate::config::{Mode, ProxyConfig};
use crate::fill::{self, Fills, Source};
use crate::meta::{self, FOREVER, ObjectMeta, now_secs};
use crate::metrics::Metrics;
use crate::range::{RangeSpec, Resolved};
use crate::tiered::TieredCache;
use crate::upstream::Upstream;
use crate::{ProxyError, lock};

/// State every request and fill shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: ProxyConfig,
    pub upstream: Upstream,
    pub cache: Arc<TieredCache>,
    pub metrics: Arc<Metrics>,
    pub fills: Fills,
    /// Revalidations in progress by key: concurrent stale hits share one.
    revalidations: Mutex<HashMap<String, watch::Receiver<Option<Revalidation>>>>,
}

/// The caching reverse proxy as a tower service (`Request<Body>` to `Response<Body>`,
/// never failing: errors are HTTP statuses), ready for [`web_service::Server::serve`].
#[derive(Clone, Debug)]
pub struct StreamingProxy {
    shared: Arc<Shared>,
}

/// Value of the `x-cache` header: how a response was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Every byte came from the cache.
    Hit,
    /// The object was stored but some slices were not: those came from the origin.
    Partial,
    /// Not stored: fetched from the origin (or joined a fill in progress) and stored.
    Miss,
    /// Stale, confirmed unchanged by the origin (`304`), served from the cache.
    Revalidated,
    /// Stale, served within the origin's `stale-while-revalidate` window (the origin
    /// is asked in the background) or, when the origin failed, its `stale-if-error`.
    Stale,
    /// Passed through without storing (method, uncacheable answer, no capacity).
    Bypass,
    /// Answer to `PURGE`.
    Purged,
}

impl CacheStatus {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Partial => "PARTIAL",
            Self::Miss => "MISS",
            Self::Revalidated => "REVALIDATED",
            Self::Stale => "STALE",
            Self::Bypass => "BYPASS",
            Self::Purged => "PURGED",
        }
    }
}

const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

fn simple(status: StatusCode, cache: CacheStatus, text: &str) -> Response<Body> {
    let mut response = Response::new(Body::new(http_body_util::Full::new(bytes::Bytes::from(
        format!("{text}\n"),
    ))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(X_CACHE, HeaderValue::from_static(cache.as_str()));
    response
}

impl StreamingProxy {
    /// Builds the proxy: validates `config`, builds the origin client (reading
    /// `upstream_ca` and the system's trust roots for an `https://` origin) and opens
    /// the cache tiers (rebuilding the disk index).
    pub fn new(config: ProxyConfig) -> Result<Self, ProxyError> {
        config.validate()?;
        let base = config
            .upstream
            .parse()
            .map_err(|e| crate::config::ConfigError::Invalid(format!("upstream: {e}")))?;
        // Before the cache is opened: a bad `upstream_ca` stops start-up untouched.
        let upstream = Upstream::new(
            base,
            Duration::from_secs(config.upstream_timeout_secs),
            config.upstream_http2,
            config.upstream_ca.as_deref(),
        )?;
        let metrics = Arc::new(Metrics::default());
        let cache = Arc::new(TieredCache::open(
            &config.cache_dir,
            config.l1_bytes,
            config.l2_bytes,
            metrics.clone(),
        )?);
        let fills = Fills::new(config.max_fills, config.slice_size)?;
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                upstream,
                cache,
                metrics,
                fills,
                revalidations: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The proxy's counters (render with [`Metrics::render`]).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// The cache tiers.
    pub fn cache(&self) -> Arc<TieredCache> {
        self.shared.cache.clone()
    }

    /// Answers one request.
    pub async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let shared = &self.shared;
        let key = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let method = request.method().clone();
        let response = if key.len() > shared.config.max_key_bytes {
            simple(
                StatusCode::URI_TOO_LONG,
                CacheStatus::Bypass,
                "request path and query too long (see max_key_bytes)",
            )
        } else if method.as_str() == "PURGE" {
            if !self.may_purge(&request) {
                simple(
                    StatusCode::FORBIDDEN,
                    CacheStatus::Purged,
                    "PURGE is not allowed from this address (see purge_allow)",
                )
            } else if shared.cache.purge(&key).await {
                simple(StatusCode::OK, CacheStatus::Purged, "purged")
            } else {
                simple(StatusCode::NOT_FOUND, CacheStatus::Purged, "not in cache")
            }
        } else if (method == Method::GET || method == Method::HEAD)
            && !personal(&request)
            && meta::accepts_identity(request.headers())
        {
            self.lookup(key, &Ask::from_request(&request)).await
        } else {
            self.pass_through(key, request).await
        };
        let counter = match response.headers().get(X_CACHE).map(HeaderValue::as_bytes) {
            Some(b"HIT" | b"REVALIDATED" | b"STALE") => &shared.metrics.hits,
            Some(b"MISS" | b"PARTIAL") => &shared.metrics.misses,
            Some(b"PURGED") => return response,
            _ => &shared.metrics.bypasses,
        };
        counter.inc();
        response
    }

    /// Whether the client may `PURGE`: its address is in `purge_allow`. A request
    /// without [`ConnInfo`] (the proxy embedded outside `web-service`) has no
    /// address to check and is refused.
    fn may_purge<B>(&self, request: &Request<B>) -> bool {
        request.extensions().get::<ConnInfo>().is_some_and(|info| {
            let ip = info.remote_addr.ip().to_canonical();
            self.shared
                .config
                .purge_allow
                .iter()
                .any(|net| net.contains(&ip))
        })
    }

    async fn lookup(&self, key: String, ask: &Ask) -> Response<Body> {
        let shared = &self.shared;
        let replay = shared.config.mode == Mode::Replay;
        if let Some(meta) = shared.cache.meta(&key) {
            let now = now_secs();
            if replay || meta.is_fresh(now) {
                return self.serve_stored(meta, ask, None).await;
            }
            if meta.may_serve_while_revalidating(now) {
                // The client gets the stale copy now; the origin is asked in the
                // background: while one revalidation runs, later stale hits only
                // read (a second task would act on the same outcome twice, e.g.
                // purge an object re-fetched after the first purge). Two hits in
                // the same instant may still both start one; they share its answer.
                if lock(&shared.revalidations).contains_key(&key) {
                    return self.serve_stored(meta, ask, Some(CacheStatus::Stale)).await;
                }
                let proxy = self.clone();
                let stale = meta.clone();
                tokio::spawn(async move {
                    match proxy.revalidate_once(&stale).await {
                        Revalidation::Fresh(_) => {
                            proxy.shared.metrics.revalidated.inc();
                        }
                        Revalidation::Changed => {
                            proxy.shared.cache.purge(&stale.key).await;
                        }
                        Revalidation::Failed(_) => {}
                    }
                });
                return self.serve_stored(meta, ask, Some(CacheStatus::Stale)).await;
            }
            match self.revalidate_once(&meta).await {
                Revalidation::Fresh(meta) => {
                    shared.metrics.revalidated.inc();
                    return self
                        .serve_stored(meta, ask, Some(CacheStatus::Revalidated))
                        .await;
                }
                Revalidation::Failed(status) => {
                    if meta.may_serve_stale_on_error(now_secs()) {
                        return self.serve_stored(meta, ask, Some(CacheStatus::Stale)).await;
                    }
                    return simple(
                        status,
                        CacheStatus::Miss,
                        "the origin failed and the stored copy is stale without \
                         stale-if-error permission",
                    );
                }
                Revalidation::Changed => {
                    shared.cache.purge(&key).await;
                }
            }
        } else if replay {
            return simple(
                StatusCode::GATEWAY_TIMEOUT,
                CacheStatus::Miss,
                "not in cache (replay mode)",
            );
        }
        // Cold: the slice holding the first wanted byte decides the response head.
        let index = ask.range.map_or(0, RangeSpec::first_byte_hint) / shared.config.slice_size;
        match fill::open(shared, &key, index, true, None).await {
            Err(e) => simple(e.status(), CacheStatus::Miss, &e.to_string()),
            Ok(Source::Piece { .. }) => match shared.cache.meta(&key) {
                // Stored between the lookup and the open: a hit after all.
                Some(meta) => self.serve_stored(meta, ask, None).await,
                None => simple(
                    StatusCode::BAD_GATEWAY,
                    CacheStatus::Miss,
                    "object vanished",
                ),
            },
            Ok(Source::Tail { reader, head, next }) => {
                let status = if head.meta.cacheable {
                    CacheStatus::Miss
                } else {
                    CacheStatus::Bypass
                };
                if head.relay {
                    let mut response = Response::new(if ask.head_only {
                        Body::empty()
                    } else {
                        relay_body(reader)
                    });
                    *response.status_mut() =
                        StatusCode::from_u16(head.meta.status).unwrap_or(StatusCode::BAD_GATEWAY);
                    write_headers(response.headers_mut(), &head.meta, status);
                    if let Some(len) = head.body_end.map(|e| e - head.body_offset) {
                        response
                            .headers_mut()
                            .insert(header::CONTENT_LENGTH, len.into());
                    }
                    return response;
                }
                let meta = Arc::new(head.meta.clone());
                let first = Source::Tail { reader, head, next };
                self.respond(meta, ask, status, Some(first), true)
            }
        }
    }

    /// Serves a stored object; `status` forces the `x-cache` value, else HIT or PARTIAL
    /// by whether every needed piece is stored.
    async fn serve_stored(
        &self,
        meta: Arc<ObjectMeta>,
        ask: &Ask,
        status: Option<CacheStatus>,
    ) -> Response<Body> {
        let total = meta.total.unwrap_or(0);
        let (start, end) = match ask.range_for(&meta).map(|r| r.resolve(total)) {
            Some(Resolved::Partial { start, end }) => (start, end),
            _ => (0, total),
        };
        let first = start / meta.slice_size;
        let last = end.div_ceil(meta.slice_size);
        let complete = (first..last).all(|i| self.shared.cache.has_piece(&meta.key, i));
        let replay = self.shared.config.mode == Mode::Replay;
        // No body goes out for HEAD, a 412 or a 304: missing slices do not matter then.
        let sends_body =
            !ask.head_only && !ask.precondition_failed(&meta) && !ask.not_modified(&meta);
        if replay && !complete && sends_body {
            return simple(
                StatusCode::GATEWAY_TIMEOUT,
                CacheStatus::Miss,
                "not in cache (replay mode)",
            );
        }
        let status = status.unwrap_or(if complete {
            CacheStatus::Hit
        } else {
            CacheStatus::Partial
        });
        // A missing first slice is opened before answering, so an origin failure is
        // a 502/504 rather than a 200 whose body breaks at once.
        let mut source = None;
        if !replay && sends_body && start < end && !self.shared.cache.has_piece(&meta.key, first) {
            match fill::open(&self.shared, &meta.key, first, true, None).await {
                Ok(opened) => source = Some(opened),
                Err(e) => return simple(e.status(), CacheStatus::Miss, &e.to_string()),
            }
        }
        self.respond(meta, ask, status, source, !replay)
    }

    fn respond(
        &self,
        meta: Arc<ObjectMeta>,
        ask: &Ask,
        status: CacheStatus,
        mut first: Option<Source>,
        may_fetch: bool,
    ) -> Response<Body> {
        let range = ask.range_for(&meta);
        if range.is_none()
            && ask
                .range
                .is_some_and(|r| r.first_byte_hint() >= meta.slice_size)
        {
            // If-Range dropped the range: the slice opened for its first byte is
            // not where the whole object starts; the body opens its own.
            first = None;
        }
        if ask.precondition_failed(&meta) {
            return simple(
                StatusCode::PRECONDITION_FAILED,
                status,
                "precondition failed",
            );
        }
        if ask.not_modified(&meta) {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            write_headers(response.headers_mut(), &meta, status);
            return response;
        }
        let total = meta.total.unwrap_or(0);
        let (code, start, end) = match range.map(|r| r.resolve(total)) {
            None => (StatusCode::OK, 0, total),
            Some(Resolved::Partial { start, end }) => (StatusCode::PARTIAL_CONTENT, start, end),
            Some(Resolved::Unsatisfiable) => {
                let mut response = simple(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    status,
                    "range not satisfiable",
                );
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return response;
            }
        };
        let body = if ask.head_only || start == end {
            Body::empty()
        } else {
            RangeBody::new(
                self.shared.clone(),
                meta.key.clone(),
                (meta.slice_size, total),
                (start, end),
                may_fetch,
                first,
            )
            .into_body()
        };
        let mut response = Response::new(body);
        *response.status_mut() = code;
        let headers = response.headers_mut();
        write_headers(headers, &meta, status);
        headers.insert(header::CONTENT_LENGTH, (end - start).into());
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if code == StatusCode::PARTIAL_CONTENT
            && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{total}", end - 1))
        {
            headers.insert(header::CONTENT_RANGE, v);
        }
        response
    }

    /// Asks the origin whether a stale object changed (`If-None-Match` /
    /// `If-Modified-Since`); a `304` refreshes its lifetime.
    /// [`revalidate`](Self::revalidate), shared by concurrent requests for the same
    /// stale object: the first asks the origin, the others wait for its outcome. If
    /// the first goes away before an outcome (client gone), the table entry and the
    /// sender go with it and each waiter asks for itself (pingora's cache-lock rule:
    /// a dropped permit is a failure that releases the waiters).
    async fn revalidate_once(&self, meta: &ObjectMeta) -> Revalidation {
        let leader = {
            let mut table = lock(&self.shared.revalidations);
            match table.get(&meta.key) {
                Some(rx) => Err(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    table.insert(meta.key.clone(), rx);
                    Ok(tx)
                }
            }
        };
        match leader {
            Ok(tx) => {
                let _entry = RevalidationEntry(&self.shared, &meta.key);
                let outcome = self.revalidate(meta).await;
                tx.send_replace(Some(outcome.clone()));
                outcome
            }
            Err(mut rx) => {
                let shared = rx
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|o| o.clone());
                match shared {
                    Some(outcome) => outcome,
                    None => self.revalidate(meta).await,
                }
            }
        }
    }

    async fn revalidate(&self, meta: &ObjectMeta) -> Revalidation {
        let shared = &self.shared;
        let mut headers = HeaderMap::new();
        for (name, value) in [
            (header::IF_NONE_MATCH, meta.etag()),
            (header::IF_MODIFIED_SINCE, meta.last_modified()),
        ] {
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(name, v);
            }
        }
        if headers.is_empty() {
            return Revalidation::Changed;
        }
        // If it did change, the answer is discarded: bound it to one slice.
        let range = format!("bytes=0-{}", meta.slice_size - 1);
        if let Ok(v) = HeaderValue::from_str(&range) {
            headers.insert(header::RANGE, v);
        }
        // As for fills: the stored copy is the identity-coded one.
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let answer = shared
            .upstream
            .send(Method::GET, &meta.key, headers, Body::empty())
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(key = %meta.key, error = %e, "revalidation failed");
                return Revalidation::Failed(e.status());
            }
        };
        match answer.status() {
            StatusCode::NOT_MODIFIED => {
                // The 304's headers update the stored ones (RFC 9111 §4.3.4).
                let mut merged = HeaderMap::new();
                for (n, v) in &meta.headers {
                    if let (Ok(n), Ok(v)) =
                        (HeaderName::try_from(n.as_str()), HeaderValue::from_str(v))
                    {
                        merged.append(n, v);
                    }
                }
                for (n, v) in answer.headers() {
                    if !meta::is_hop_or_framing(n) {
                        merged.insert(n.clone(), v.clone());
                    }
                }
                let ttl = Duration::from_secs(shared.config.default_ttl_secs);
                let Some(fresh) = meta::freshness(shared.config.mode, 200, &merged, true, ttl)
                else {
                    return Revalidation::Changed;
                };
                let mut refreshed = meta.clone();
                refreshed.headers = meta::stored_headers(&merged);
                refreshed.fresh_until = fresh.min(FOREVER);
                refreshed.stored_at = now_secs();
                shared.cache.put_meta(refreshed.clone()).await;
                Revalidation::Fresh(Arc::new(refreshed))
            }
            s if s.is_server_error() => Revalidation::Failed(s),
            _ => Revalidation::Changed,
        }
    }

    /// Forwards a request the cache does not handle (POST, PUT, ..., or a GET with
    /// credentials) as it is, streaming both bodies; a successful unsafe method
    /// invalidates the stored object.
    async fn pass_through(&self, key: String, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let mut headers = parts.headers;
        headers.remove(header::HOST);
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "upgrade",
        ] {
            headers.remove(name);
        }
        let method = parts.method;
        match self
            .shared
            .upstream
            .send(method.clone(), &key, headers, body)
            .await
        {
            Err(e) => simple(e.status(), CacheStatus::Bypass, &e.to_string()),
            Ok(answer) => {
                if answer.status().is_success() && !method.is_safe() {
                    self.shared.cache.purge(&key).await;
                }
                let (mut parts, incoming) = answer.into_parts();
                parts.headers.insert(
                    X_CACHE,
                    HeaderValue::from_static(CacheStatus::Bypass.as_str()),
                );
                Response::from_parts(parts, Body::new(incoming))
            }
        }
    }
}

/// What a GET or HEAD asks for besides the object.
struct Ask {
    head_only: bool,
    range: Option<RangeSpec>,
    /// `If-None-Match` as sent (a list of entity tags, or `*`).
    if_none_match: Option<String>,
    /// `If-Modified-Since` in unix seconds.
    if_modified_since: Option<u64>,
    /// `If-Range` as sent: an entity tag or an HTTP date.
    if_range: Option<String>,
    /// `If-Match` as sent (a list of entity tags, or `*`).
    if_match: Option<String>,
    /// `If-Unmodified-Since` in unix seconds.
    if_unmodified_since: Option<u64>,
}

impl Ask {
    fn from_request(request: &Request<Body>) -> Self {
        let header = |name| request.headers().get(name).and_then(|v| v.to_str().ok());
        Self {
            head_only: request.method() == Method::HEAD,
            range: header(header::RANGE).and_then(RangeSpec::parse),
            if_none_match: header(header::IF_NONE_MATCH).map(str::to_owned),
            if_modified_since: header(header::IF_MODIFIED_SINCE).and_then(meta::http_date_secs),
            if_range: header(header::IF_RANGE).map(str::to_owned),
            if_match: header(header::IF_MATCH).map(str::to_owned),
            if_unmodified_since: header(header::IF_UNMODIFIED_SINCE).and_then(meta::http_date_secs),
        }
    }

    /// Whether the request's preconditions fail on `meta`, so the answer is `412`
    /// (RFC 9110 §13.2.2, evaluated first: `If-Match`, strong comparison, `*` for
    /// any stored object; else `If-Unmodified-Since`, ignored for an object
    /// without `Last-Modified`).
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
        let modified = meta.last_modified().and_then(meta::http_date_secs);
        matches!((self.if_unmodified_since, modified), (Some(since), Some(m)) if m > since)
    }

    /// The range to serve from `meta`: the asked one, unless an `If-Range` names
    /// another version, in which case the whole object is the answer (RFC 9110
    /// §13.1.5: strong comparison of entity tags, exact match of the date), so a
    /// resumed download never splices bytes of two versions.
    fn range_for(&self, meta: &ObjectMeta) -> Option<RangeSpec> {
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

    /// Whether the client's copy is current, so the answer is `304` (RFC 9110
    /// §13.1.2-3: `If-None-Match`, weak comparison, takes precedence over
    /// `If-Modified-Since`).
    fn not_modified(&self, meta: &ObjectMeta) -> bool {
        let weak = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
        if let Some(tags) = &self.if_none_match {
            return meta.etag().is_some_and(|etag| {
                tags.split(',')
                    .any(|t| t.trim() == "*" || weak(t) == weak(etag))
            });
        }
        let modified = meta.last_modified().and_then(meta::http_date_secs);
        matches!((self.if_modified_since, modified), (Some(since), Some(m)) if m <= since)
    }
}

/// Removes a revalidation's table entry however its leader ends.
struct RevalidationEntry<'a>(&'a Shared, &'a str);

impl Drop for RevalidationEntry<'_> {
    fn drop(&mut self) {
        lock(&self.0.revalidations).remove(self.1);
    }
}

#[derive(Clone, Debug)]
enum Revalidation {
    Fresh(Arc<ObjectMeta>),
    Changed,
    /// The origin could not be asked, or answered with this server error.
    Failed(StatusCode),
}

/// Whether a request carries credentials (`Authorization`, `Cookie`): its answer
/// may be meant for that client alone, so it goes to the origin with all its
/// headers and nothing is stored or shared (Varnish's built-in rule; RFC 9111 §3.5
/// forbids storing authorized answers without explicit permission).
fn personal<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    headers.contains_key(header::AUTHORIZATION) || headers.contains_key(header::COOKIE)
}

fn write_headers(headers: &mut HeaderMap, meta: &ObjectMeta, status: CacheStatus) {
    for (n, v) in &meta.headers {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(n.as_str()), HeaderValue::from_str(v)) {
            headers.append(n, v);
        }
    }
    // Answers from storage say how old they are; a miss relays the origin's own.
    let from_storage = !matches!(status, CacheStatus::Miss | CacheStatus::Bypass);
    if from_storage && let Some(age) = meta.age(now_secs()) {
        headers.insert(header::AGE, age.into());
    }
    headers.insert(X_CACHE, HeaderValue::from_static(status.as_str()));
}

impl tower::Service<Request<Body>> for StreamingProxy {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let proxy = self.clone();
        Box::pin(async move { Ok(proxy.handle(request).await) })
    }
}
