//! A caching pass-through reverse proxy for large objects: cache-first, streams the
//! origin's bytes to the client as they arrive while storing them in a memory (L1)
//! and disk (L2) cache in fixed-size slices, serves ranges, and collapses concurrent
//! misses into one origin fetch per slice (`ARCHITECTURE.md` §9).
//!
//! Main use: the `streaming-proxy` binary in front of an origin or mirror, or
//! [`StreamingProxy`] as the handler of a [`web_service::Server`]:
//!
//! ```no_run
//! use streaming_proxy::{ProxyConfig, StreamingProxy};
//! use web_service::{Listen, Server, ServerConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ProxyConfig {
//!     upstream: "http://127.0.0.1:9000".into(),
//!     cache_dir: "/var/cache/proxy".into(),
//!     ..ProxyConfig::default()
//! };
//! let proxy = StreamingProxy::new(config)?;
//! let listen = Listen { http: Some("127.0.0.1:8080".parse()?), https: None };
//! let server = Server::bind(ServerConfig::default(), listen).await?;
//! server.serve(proxy, web_service::ctrl_c_or_sigterm()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # How a GET is answered
//!
//! Objects are keyed by path and query. Each object is cut into slices of
//! `slice_size` bytes; a slice is stored as one *piece* in L1 (byte-bounded LRU, where
//! pieces of objects longer than a quarter of L1 are evicted first) and L2 (one
//! checksummed file per piece). A request is served slice by slice: a stored
//! piece is sent at once; a missing one is fetched from the origin with a `Range`
//! request for that slice only (so a range of a huge object costs only its slices),
//! through a *fill*: a chunk-cache stream that the origin's bytes are written to as
//! they arrive and that every concurrent request for the slice reads. Memory per
//! request is one slice at most, whatever the object's size. An origin that ignores
//! `Range` answers `200` with the whole object: that fill serves and stores every
//! slice. Fills run in their own tasks: a client going away never stops a fill others
//! read, and a failing fill ends its readers' bodies with an error (connection reset /
//! truncated chunked), never a clean short body.
//!
//! # `x-cache`
//!
//! Every response carries `x-cache` ([`CacheStatus`]): `HIT` (all bytes stored),
//! `PARTIAL` (stored object, some slices fetched), `MISS` (fetched and stored),
//! `REVALIDATED` (stale, origin said `304`), `STALE` (stale, within the origin's
//! `stale-while-revalidate` window, or its `stale-if-error` one when the origin failed),
//! `BYPASS` (not stored: other methods, uncacheable answers), `PURGED` (`PURGE`).
//!
//! # Policy and forwarding
//!
//! The cache policy (RFC 9111, RFC 5861) is one pure module, `policy`: given the
//! request, the stored entry and `now` it decides (serve, revalidate now or in
//! the background, fetch, pass through, answer `304`/`412`/`416`/`504`) and the
//! cache status to report; the proxy carries the decision out. Every request
//! to the origin carries the client's end-to-end headers (hop-by-hop ones
//! removed by [`http_pack::hop_by_hop`]), `X-Forwarded-For`,
//! `X-Forwarded-Proto` and `Via`; a shared fill carries those of the client that
//! started it. Answers that vary are stored once per variant; answers with
//! `Set-Cookie` are not stored unless `store_set_cookie` (then without it);
//! requests with `Authorization` or `Cookie` are passed through. Record mode
//! stores every 2xx with a known length forever; replay mode never contacts the
//! origin (`504` on a miss). `docs/streaming-proxy.md` has the conformance table.
//!
//! # Absent
//!
//! An `http://` origin is reached over HTTP/1.1 or, with `upstream_http2`, HTTP/2
//! with prior knowledge (h2c). An `https://` origin is reached over TLS (rustls,
//! ring), its certificate checked against the system's roots plus `upstream_ca`;
//! ALPN lets it pick HTTP/2 or HTTP/1.1 (only `h2` is offered with
//! `upstream_http2`). Connections are pooled and reused either way.
//!
//! Not implemented (see `docs/streaming-proxy.md` for the full list): HTTP/3 to the
//! origin; client certificates towards the origin; multi-range requests (answered
//! with the whole object); storing answers to requests with `Authorization` or
//! `Cookie`; draining fills on shutdown. `PURGE` is allowed from `purge_allow` networks only (loopback by default).

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod body;
mod config;
mod fill;
mod forward;
mod idle;
mod l1;
mod l2;
mod meta;
mod metrics;
mod policy;
mod proxy;
mod range;
mod tiered;
mod upstream;

pub use config::{ConfigError, DEFAULT_MAX_KEY, MAX_SLICE, Mode, ProxyConfig};
pub use l2::CacheDirError;
pub use meta::ObjectMeta;
pub use metrics::Metrics;
pub use proxy::{CacheStatus, StreamingProxy};
pub use tiered::TieredCache;
pub use upstream::UpstreamError;

/// Locks a table. Every guarded map is left consistent between statements, so a
/// panic in another holder (a poisoned lock) must not take the proxy down with it.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a proxy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The cache directory is someone else's (see [`CacheDirError`]).
    #[error(transparent)]
    CacheDir(#[from] CacheDirError),
    /// The fill stream cache could not be sized.
    #[error("fill streams: {0}")]
    Streams(#[from] chunk_cache::ConfigError),
}
