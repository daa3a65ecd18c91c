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
use crate::fill::{self, Fills, Source, Want};
use crate::forward;
use crate::idle;
use crate::meta::{self, ObjectMeta, now_secs};
use crate::metrics::Metrics;
use crate::policy::{self, Action, Decision, Outcome, Reply, Req};
use crate::tiered::TieredCache;
use crate::upstream::Upstream;
use crate::{ProxyError, lock};

/// Paths whose answers vary that the index remembers; beyond it a new varying
/// answer is passed through unstored, so the index stays bounded.
const MAX_VARYING_PATHS: usize = 65_536;
/// Variants stored per path; beyond it further ones are passed through.
const MAX_VARIANTS: usize = 32;

/// What is known about a path whose answers vary (RFC 9111 §4.1).
#[derive(Debug, Default)]
struct Variants {
    /// The selecting fields of its latest stored answer.
    fields: Vec<String>,
    /// Keys of the variants stored under it.
    keys: Vec<String>,
}

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
    /// Paths whose answers vary, in memory only: after a restart a variant is
    /// found again once its path was fetched once more.
    varies: Mutex<HashMap<String, Variants>>,
}

impl Shared {
    /// The settings the policy reads.
    pub fn settings(&self) -> policy::Settings {
        policy::Settings {
            mode: self.config.mode,
            heuristic_cap: self.config.default_ttl_secs,
            store_set_cookie: self.config.store_set_cookie,
        }
    }

    /// The cache key for a request of `path` with (fill) `headers`: the path,
    /// or the variant's key when the path's answers vary.
    pub fn key_for(&self, path: &str, headers: &HeaderMap) -> String {
        match lock(&self.varies).get(path) {
            Some(v) => policy::variant_key(path, &policy::selecting(&v.fields, headers)),
            None => path.to_owned(),
        }
    }

    /// Records that `path`'s answer varies on `fields` (none: it does not vary)
    /// and is stored under `key`; false when the bounded index has no room, in
    /// which case the answer must not be stored.
    pub fn note_variant(&self, path: &str, fields: &[String], key: &str) -> bool {
        let mut varies = lock(&self.varies);
        if fields.is_empty() {
            varies.remove(path);
            return true;
        }
        if !varies.contains_key(path) && varies.len() >= MAX_VARYING_PATHS {
            return false;
        }
        let entry = varies.entry(path.to_owned()).or_default();
        entry.fields = fields.to_vec();
        if !entry.keys.iter().any(|k| k == key) {
            if entry.keys.len() >= MAX_VARIANTS {
                return false;
            }
            entry.keys.push(key.to_owned());
        }
        true
    }

    /// A response body as the client gets it: dropped when the client takes
    /// nothing for `client_write_idle_secs`.
    pub fn to_client(&self, body: Body) -> Body {
        idle::write_idle(
            body,
            Duration::from_secs(self.config.client_write_idle_secs),
        )
    }

    /// Removes `path` and every variant of it from both tiers; whether anything
    /// was stored.
    pub async fn purge_path(&self, path: &str) -> bool {
        let keys = lock(&self.varies)
            .remove(path)
            .map(|v| v.keys)
            .unwrap_or_default();
        let mut any = self.cache.purge(path).await;
        for key in keys {
            any |= self.cache.purge(&key).await;
        }
        any
    }
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

/// A response and the `x-cache` value it reports (the metrics count the value,
/// never the header).
type Answered = (Response<Body>, CacheStatus);

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
            (
                Duration::from_secs(config.upstream_connect_timeout_secs),
                Duration::from_secs(config.upstream_timeout_secs),
            ),
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
                varies: Mutex::new(HashMap::new()),
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
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        if path.len() > shared.config.max_key_bytes {
            shared.metrics.bypasses.inc();
            return simple(
                StatusCode::URI_TOO_LONG,
                CacheStatus::Bypass,
                "request path and query too long (see max_key_bytes)",
            );
        }
        if request.method().as_str() == "PURGE" {
            return if !self.may_purge(&request) {
                simple(
                    StatusCode::FORBIDDEN,
                    CacheStatus::Purged,
                    "PURGE is not allowed from this address (see purge_allow)",
                )
            } else if shared.purge_path(&path).await {
                simple(StatusCode::OK, CacheStatus::Purged, "purged")
            } else {
                simple(StatusCode::NOT_FOUND, CacheStatus::Purged, "not in cache")
            };
        }
        let req = Req::new(request.method(), request.headers());
        // Built once and turned into the fill's headers: most requests are
        // answered from the cache or by a fill, and a pass-through (which
        // needs them as the client sent them) builds them again below.
        let want = Arc::new(Want {
            path,
            headers: forward::for_fill(forward::to_origin(&request, shared.config.preserve_host)),
            directives: req.directives.clone(),
        });
        let key = shared.key_for(&want.path, &want.headers);
        let entry = shared.cache.meta(&key);
        let decision = policy::decide(&req, entry.as_deref(), now_secs(), shared.config.mode);
        let (response, status) = match decision.action {
            Action::PassThrough => {
                let forwarded = forward::to_origin(&request, shared.config.preserve_host);
                let (parts, body) = request.into_parts();
                self.pass_through(&want.path, parts.method, forwarded, body)
                    .await
            }
            _ => self.carry_out(decision, &req, &want, entry).await,
        };
        match status {
            CacheStatus::Hit | CacheStatus::Revalidated | CacheStatus::Stale => {
                shared.metrics.hits.inc();
            }
            CacheStatus::Miss | CacheStatus::Partial => {
                shared.metrics.misses.inc();
            }
            CacheStatus::Bypass => {
                shared.metrics.bypasses.inc();
            }
            CacheStatus::Purged => {}
        }
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

    /// Carries out a decision about a GET or HEAD (pass-through excepted).
    async fn carry_out(
        &self,
        decision: Decision,
        req: &Req,
        want: &Arc<Want>,
        entry: Option<Arc<ObjectMeta>>,
    ) -> Answered {
        let status = decision.status;
        match (decision.action, entry) {
            (Action::Refuse(code), _) => said(
                code,
                status,
                "not answered from the cache and the origin may not be asked",
            ),
            (Action::Serve(reply), Some(entry)) => {
                self.serve_stored(entry, reply, status, req, want).await
            }
            (Action::ServeThenRevalidate(reply), Some(entry)) => {
                self.revalidate_in_background(&entry, want);
                self.serve_stored(entry, reply, status, req, want).await
            }
            (Action::Revalidate, Some(entry)) => {
                let (outcome, entry) = match self.revalidate_once(&entry, want).await {
                    Revalidation::Fresh(refreshed) => {
                        self.shared.metrics.revalidated.inc();
                        (Outcome::Confirmed, refreshed)
                    }
                    Revalidation::Changed => (Outcome::Changed, entry),
                    Revalidation::Failed(code) => (Outcome::Failed(code), entry),
                };
                let next = policy::after_revalidation(req, &entry, outcome, now_secs());
                match next.action {
                    Action::Serve(reply) => {
                        self.serve_stored(entry, reply, next.status, req, want)
                            .await
                    }
                    Action::Fetch => {
                        self.shared.cache.purge(&entry.key).await;
                        self.fetch(req, want).await
                    }
                    Action::Refuse(code) => said(
                        code,
                        next.status,
                        "the origin failed and the stored copy may not be served stale",
                    ),
                    _ => self.fetch(req, want).await,
                }
            }
            (Action::Fetch, Some(stale)) => {
                // Replaced, not revalidated (no validators): its pieces must not
                // answer the fetch as "stored meanwhile".
                self.shared.cache.purge(&stale.key).await;
                self.fetch(req, want).await
            }
            _ => self.fetch(req, want).await,
        }
    }

    /// While one revalidation of a key runs, later stale hits only read (a second
    /// task would act on the same outcome twice, e.g. purge an object re-fetched
    /// after the first purge). Two hits in the same instant may still both start
    /// one; they share its answer.
    fn revalidate_in_background(&self, entry: &Arc<ObjectMeta>, want: &Arc<Want>) {
        if lock(&self.shared.revalidations).contains_key(&entry.key) {
            return;
        }
        let proxy = self.clone();
        let (stale, want) = (entry.clone(), want.clone());
        tokio::spawn(async move {
            match proxy.revalidate_once(&stale, &want).await {
                Revalidation::Fresh(_) => {
                    proxy.shared.metrics.revalidated.inc();
                }
                Revalidation::Changed => {
                    proxy.shared.cache.purge(&stale.key).await;
                }
                Revalidation::Failed(_) => {}
            }
        });
    }

    /// A miss: the slice holding the first wanted byte is fetched through a
    /// shared fill, and its head decides the response.
    async fn fetch(&self, req: &Req, want: &Arc<Want>) -> Answered {
        let shared = &self.shared;
        let index = req.ask.range.map_or(0, |r| r.first_byte_hint()) / shared.config.slice_size;
        match fill::open(shared, want, index, true, None, false).await {
            Err(e) => said(e.status(), CacheStatus::Miss, &e.to_string()),
            Ok(Source::Piece { .. } | Source::Own) => {
                // Stored between the lookup and the open: a hit after all (or
                // partly stored, the rest fetched by the response itself).
                match shared
                    .cache
                    .meta(&shared.key_for(&want.path, &want.headers))
                {
                    Some(meta) => {
                        let reply = req.ask.reply(&meta);
                        self.serve_stored(meta, reply, CacheStatus::Hit, req, want)
                            .await
                    }
                    None => said(
                        StatusCode::BAD_GATEWAY,
                        CacheStatus::Miss,
                        "object vanished",
                    ),
                }
            }
            Ok(Source::Tail {
                reader,
                head,
                next,
                started,
            }) => {
                let status = if head.meta.cacheable {
                    CacheStatus::Miss
                } else {
                    CacheStatus::Bypass
                };
                let owner = started.then(|| head.owner_headers.clone());
                if head.relay {
                    let mut response = Response::new(if req.ask.head_only {
                        Body::empty()
                    } else {
                        shared.to_client(relay_body(reader))
                    });
                    *response.status_mut() =
                        StatusCode::from_u16(head.meta.status).unwrap_or(StatusCode::BAD_GATEWAY);
                    write_headers(response.headers_mut(), &head.meta, status);
                    if let Some(len) = head.body_end.map(|e| e - head.body_offset) {
                        response
                            .headers_mut()
                            .insert(header::CONTENT_LENGTH, len.into());
                    }
                    return (response, status);
                }
                let meta = Arc::new(head.meta.clone());
                let reply = req.ask.reply(&meta);
                let first = Source::Tail {
                    reader,
                    head,
                    next,
                    started,
                };
                let mut answer = self.respond(meta, reply, status, req, want, Some(first), true);
                for (n, v) in owner.into_iter().flatten() {
                    if let (Ok(n), Ok(v)) = (HeaderName::try_from(n), HeaderValue::from_str(&v)) {
                        answer.0.headers_mut().append(n, v);
                    }
                }
                answer
            }
        }
    }

    /// Serves a stored object as `reply` says; a `Hit` whose needed pieces are
    /// not all stored reports `Partial` (the missing ones are fetched).
    async fn serve_stored(
        &self,
        meta: Arc<ObjectMeta>,
        reply: Reply,
        status: CacheStatus,
        req: &Req,
        want: &Arc<Want>,
    ) -> Answered {
        let replay = self.shared.config.mode == Mode::Replay;
        let Reply::Bytes { start, end, .. } = reply else {
            return self.respond(meta, reply, status, req, want, None, !replay);
        };
        let first = start / meta.slice_size;
        let last = end.div_ceil(meta.slice_size);
        let complete = (first..last).all(|i| self.shared.cache.has_piece(&meta.key, i));
        // No body goes out for HEAD: missing slices do not matter then.
        let sends_body = !req.ask.head_only && start < end;
        if replay && !complete && sends_body {
            return said(
                StatusCode::GATEWAY_TIMEOUT,
                CacheStatus::Miss,
                "not in cache (replay mode)",
            );
        }
        let status = if status == CacheStatus::Hit && !complete {
            CacheStatus::Partial
        } else {
            status
        };
        // A missing first slice is opened before answering, so an origin failure is
        // a 502/504 rather than a 200 whose body breaks at once.
        let mut source = None;
        if !replay && sends_body && !self.shared.cache.has_piece(&meta.key, first) {
            match fill::open(&self.shared, want, first, true, None, false).await {
                Ok(Source::Tail { head, .. })
                    if head.meta.status == StatusCode::PRECONDITION_FAILED.as_u16() =>
                {
                    // The stored version changed at the origin (the fill dropped
                    // it) and nothing was sent yet: answer from the new one.
                    return Box::pin(self.fetch(req, want)).await;
                }
                Ok(opened) => source = Some(opened),
                Err(e) => return said(e.status(), CacheStatus::Miss, &e.to_string()),
            }
        }
        self.respond(meta, reply, status, req, want, source, !replay)
    }

    #[allow(clippy::too_many_arguments)]
    fn respond(
        &self,
        meta: Arc<ObjectMeta>,
        reply: Reply,
        status: CacheStatus,
        req: &Req,
        want: &Arc<Want>,
        mut first: Option<Source>,
        may_fetch: bool,
    ) -> Answered {
        let total = meta.total.unwrap_or(0);
        let (code, start, end) = match reply {
            Reply::PreconditionFailed => {
                return (
                    simple(
                        StatusCode::PRECONDITION_FAILED,
                        status,
                        "precondition failed",
                    ),
                    status,
                );
            }
            Reply::NotModified => {
                let mut response = Response::new(Body::empty());
                *response.status_mut() = StatusCode::NOT_MODIFIED;
                write_headers(response.headers_mut(), &meta, status);
                return (response, status);
            }
            Reply::Unsatisfiable => {
                let mut response = simple(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    status,
                    "range not satisfiable",
                );
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return (response, status);
            }
            Reply::Bytes {
                start,
                end,
                partial,
            } => {
                let code = if partial {
                    StatusCode::PARTIAL_CONTENT
                } else {
                    StatusCode::OK
                };
                (code, start, end)
            }
        };
        let whole = matches!(reply, Reply::Bytes { partial: false, .. });
        if whole
            && req
                .ask
                .range
                .is_some_and(|r| r.first_byte_hint() >= meta.slice_size)
        {
            // If-Range dropped the range: the slice opened for its first byte is
            // not where the whole object starts; the body opens its own.
            first = None;
        }
        let body = if req.ask.head_only || start == end {
            Body::empty()
        } else {
            let ss = meta.slice_size;
            let one_stored_piece =
                status == CacheStatus::Hit && first.is_none() && start / ss == (end - 1) / ss;
            let body = RangeBody::new(
                self.shared.clone(),
                want.clone(),
                meta.clone(),
                (start, end),
                may_fetch,
                first,
            )
            .into_body();
            if one_stored_piece {
                // A client that stops reading holds only that piece's bytes, no
                // fill: no pump task for it (the common small hit stays cheap).
                body
            } else {
                self.shared.to_client(body)
            }
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
        (response, status)
    }

    /// [`revalidate`](Self::revalidate), shared by concurrent requests for the same
    /// stale object: the first asks the origin, the others wait for its outcome. If
    /// the first goes away before an outcome (client gone), the table entry and the
    /// sender go with it and each waiter asks for itself (pingora's cache-lock rule:
    /// a dropped permit is a failure that releases the waiters).
    async fn revalidate_once(&self, meta: &ObjectMeta, want: &Want) -> Revalidation {
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
                let outcome = self.revalidate(meta, want).await;
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
                    None => self.revalidate(meta, want).await,
                }
            }
        }
    }

    /// Asks the origin whether a stale object changed (`If-None-Match` /
    /// `If-Modified-Since`, with the requesting client's headers); a `304`
    /// updates the stored headers and lifetime (RFC 9111 §3.2, §4.3.4).
    async fn revalidate(&self, meta: &ObjectMeta, want: &Want) -> Revalidation {
        let shared = &self.shared;
        let mut headers = want.headers.clone();
        let mut validators = false;
        for (name, value) in [
            (header::IF_NONE_MATCH, meta.etag()),
            (header::IF_MODIFIED_SINCE, meta.last_modified()),
        ] {
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(name, v);
                validators = true;
            }
        }
        if !validators {
            return Revalidation::Changed;
        }
        // If it did change, the answer is discarded: bound it to one slice.
        let range = format!("bytes=0-{}", meta.slice_size - 1);
        if let Ok(v) = HeaderValue::from_str(&range) {
            headers.insert(header::RANGE, v);
        }
        let answer = shared
            .upstream
            .send(Method::GET, meta.path(), headers, Body::empty())
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(key = %meta.path(), error = %e, "revalidation failed");
                return Revalidation::Failed(e.status());
            }
        };
        match answer.status() {
            StatusCode::NOT_MODIFIED => {
                // §3.2: the 304's fields replace the stored ones of the same name.
                let mut merged = meta.header_map();
                let named = http_pack::hop_by_hop::connection_named(answer.headers());
                for name in answer.headers().keys() {
                    if !meta::is_hop_or_framing(name) && !named.contains(name) {
                        merged.remove(name);
                    }
                }
                for (n, v) in answer.headers() {
                    if !meta::is_hop_or_framing(n) && !named.contains(n) {
                        merged.append(n.clone(), v.clone());
                    }
                }
                let now = now_secs();
                let Some(storage) =
                    policy::storable(shared.settings(), &want.directives, 200, &merged, true, now)
                else {
                    return Revalidation::Changed;
                };
                let mut refreshed = meta.clone();
                refreshed.headers = meta::stored_headers(&merged, &storage.strip);
                refreshed.fresh_until = storage.fresh_until;
                refreshed.stored_at = now;
                shared.cache.put_meta(refreshed.clone()).await;
                Revalidation::Fresh(Arc::new(refreshed))
            }
            s if s.is_server_error() => Revalidation::Failed(s),
            _ => Revalidation::Changed,
        }
    }

    /// Forwards a request the cache does not answer (other methods, requests with
    /// credentials, ...) with its end-to-end headers, streaming both bodies; an
    /// unsafe method answered without error invalidates the stored object and its
    /// variants (RFC 9111 §4.4).
    async fn pass_through(
        &self,
        path: &str,
        method: Method,
        headers: HeaderMap,
        body: Body,
    ) -> Answered {
        let status = CacheStatus::Bypass;
        match self
            .shared
            .upstream
            .send(method.clone(), path, headers, body)
            .await
        {
            Err(e) => said(e.status(), status, &e.to_string()),
            Ok(answer) => {
                if policy::invalidates(&method, answer.status()) {
                    self.shared.purge_path(path).await;
                }
                let (mut parts, incoming) = answer.into_parts();
                parts.headers = forward::to_client(&parts.headers, parts.version);
                parts
                    .headers
                    .insert(X_CACHE, HeaderValue::from_static(status.as_str()));
                let idle = Duration::from_secs(self.shared.config.upstream_body_idle_secs);
                let body = self.shared.to_client(idle::origin_body(incoming, idle));
                (Response::from_parts(parts, body), status)
            }
        }
    }
}

/// A [`simple`] answer reporting `status`.
fn said(code: StatusCode, status: CacheStatus, text: &str) -> Answered {
    (simple(code, status, text), status)
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

fn write_headers(headers: &mut HeaderMap, meta: &ObjectMeta, status: CacheStatus) {
    if headers.is_empty() {
        headers.clone_from(meta.stored_map());
    } else {
        for (n, v) in meta.stored_map() {
            headers.append(n, v.clone());
        }
    }
    // Answers from storage say how old they are; a miss relays the origin's own.
    let from_storage = !matches!(status, CacheStatus::Miss | CacheStatus::Bypass);
    if from_storage && let Some(age) = meta.age(now_secs()) {
        headers.insert(header::AGE, age.into());
    }
    headers.append(header::VIA, forward::via(http::Version::HTTP_11));
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
