//! What every protocol shares per connection: the request hand-off to the handler,
//! connection facts, idle and first-request clocks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;

use http::header::{ALT_SVC, CONTENT_LENGTH};
use http::{HeaderValue, Request, Response, StatusCode};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::access_log::{Exchange, Meter, ResponseLog};
use crate::body::{Body, BoxError};
use crate::config::ServerConfig;
use crate::metrics::{ConnGuard, Metrics, Protocol, RequestGuard, SlotGuard};
use crate::shutdown::Lifecycle;

/// The type-erased handler every protocol calls.
pub(crate) type Handler = BoxCloneSyncService<Request<Body>, Response<Body>, BoxError>;

/// State shared by all listeners of one server.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) lifecycle: Lifecycle,
    /// `alt-svc` advertising HTTP/3, added to responses sent over TLS.
    pub(crate) alt_svc: Option<HeaderValue>,
}

/// Facts about the connection a request arrived on; in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The peer's address.
    pub remote_addr: SocketAddr,
    /// Our address the peer connected to.
    pub local_addr: SocketAddr,
    /// Whether the connection is encrypted (TLS over TCP, or QUIC).
    pub tls: bool,
}

/// Why a connection should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    Shutdown,
    Idle,
    HeaderTimeout,
}

/// One live connection: its facts, in-flight requests and its slot under
/// `max_connections` (held by upgraded WebSocket sessions too).
#[derive(Debug)]
pub(crate) struct ConnState {
    pub(crate) info: ConnInfo,
    started: Instant,
    active: AtomicUsize,
    idle_since_ms: AtomicU64,
    /// When the first byte of the request head in progress arrived (`NO_HEAD`: none
    /// pending): the next HTTP/1.1 head, or the HTTP/2 header block being received
    /// (see `headwatch`). hyper's own header timer also runs while a keep-alive
    /// connection is idle, which would make the idle timeout no longer than the header
    /// timeout, and HTTP/2 has none.
    head_started_ms: AtomicU64,
    /// Set when the head in progress was late: the reader answers `408` (HTTP/1.1).
    head_expired: AtomicBool,
    reader: AtomicWaker,
    protocol: OnceLock<ConnGuard>,
    slot: SlotGuard,
}

impl ConnState {
    pub(crate) fn new(info: ConnInfo, slot: SlotGuard) -> Arc<Self> {
        Arc::new(Self {
            info,
            started: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(NO_HEAD),
            head_expired: AtomicBool::new(false),
            reader: AtomicWaker::new(),
            protocol: OnceLock::new(),
            slot,
        })
    }

    /// Counts one write handed to the connection.
    pub(crate) fn on_write(&self) {
        self.slot
            .metrics()
            .connection_writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn for_tests() -> Arc<Self> {
        let metrics = Arc::new(Metrics::default());
        let permit = Arc::new(tokio::sync::Semaphore::new(1))
            .try_acquire_owned()
            .expect("a fresh semaphore has a permit");
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let info = ConnInfo {
            remote_addr: addr,
            local_addr: addr,
            tls: false,
        };
        Self::new(
            info,
            SlotGuard::new(metrics, crate::metrics::Transport::Tcp, permit),
        )
    }

    #[cfg(test)]
    pub(crate) fn head_in_progress(&self) -> bool {
        self.head_started_ms.load(Ordering::Acquire) != NO_HEAD
    }

    /// Counts the connection under `protocol` now (QUIC knows it before any request).
    pub(crate) fn set_protocol(&self, metrics: &Arc<Metrics>, protocol: Protocol) {
        self.protocol
            .get_or_init(|| ConnGuard::new(metrics.clone(), protocol));
    }

    pub(crate) fn request_started(&self, metrics: &Arc<Metrics>, protocol: Protocol) {
        // Cleartext TCP learns its protocol (HTTP/1.1 or h2c) from the first request.
        self.set_protocol(metrics, protocol);
        self.active.fetch_add(1, Ordering::AcqRel);
        if protocol == Protocol::Http1 {
            // HTTP/2 header blocks are timed by the frame tracker instead.
            self.head_done();
        }
    }

    /// HTTP/1.1 bytes arrived: with no request in flight they start the next head.
    pub(crate) fn on_read(&self) {
        if self.active.load(Ordering::Acquire) == 0 {
            self.head_begun();
        }
    }

    /// The first byte of a request head arrived (kept if one is already running).
    pub(crate) fn head_begun(&self) {
        if self.head_started_ms.load(Ordering::Relaxed) == NO_HEAD {
            self.head_started_ms
                .store(self.elapsed_ms(), Ordering::Release);
        }
    }

    /// The head in progress is complete.
    pub(crate) fn head_done(&self) {
        self.head_started_ms.store(NO_HEAD, Ordering::Release);
    }

    /// Whether the head in progress was late (the reader then answers `408`).
    pub(crate) fn head_expired(&self, reader: &Waker) -> bool {
        self.reader.register(reader);
        self.head_expired.load(Ordering::Acquire)
    }

    /// Marks the head in progress as late and wakes the connection's reader.
    pub(crate) fn expire_head(&self) {
        self.head_expired.store(true, Ordering::Release);
        self.reader.wake();
    }

    fn head_overdue(&self, timeout: Duration) -> bool {
        if self.protocol.get().is_none() {
            // No request yet: the connection's age counts (covers the TLS handshake).
            return self.started.elapsed() >= timeout;
        }
        // HTTP/3 times each request stream's head itself (h3.rs) and never sets this.
        let started = self.head_started_ms.load(Ordering::Acquire);
        started != NO_HEAD
            && self.elapsed_ms().saturating_sub(started)
                >= u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)
    }

    /// Keeps the connection from counting as idle while the guard lives (an upgraded
    /// WebSocket on an HTTP/2 stream).
    pub(crate) fn hold_active(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        ActiveGuard(self.clone())
    }

    pub(crate) fn request_finished(&self) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since_ms
                .store(self.elapsed_ms(), Ordering::Release);
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// No request in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.active.load(Ordering::Acquire) == 0
    }

    fn idle_for(&self) -> Duration {
        if self.active.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let since = self.idle_since_ms.load(Ordering::Acquire);
        Duration::from_millis(self.elapsed_ms().saturating_sub(since))
    }

    /// Completes when the connection should be closed: shutdown began, it sent no
    /// request within the header timeout, or it stayed idle too long.
    pub(crate) async fn close_reason(&self, shared: &Shared) -> CloseReason {
        let cfg = &shared.config;
        let tick = (cfg.idle_timeout.min(cfg.header_read_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        loop {
            tokio::select! {
                () = shared.lifecycle.graceful().cancelled() => return CloseReason::Shutdown,
                () = tokio::time::sleep(tick) => {}
            }
            if self.head_overdue(cfg.header_read_timeout) {
                shared
                    .metrics
                    .header_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                return CloseReason::HeaderTimeout;
            }
            if self.idle_for() >= cfg.idle_timeout {
                return CloseReason::Idle;
            }
        }
    }
}

const NO_HEAD: u64 = u64::MAX;

/// See [`ConnState::hold_active`].
#[derive(Debug)]
pub(crate) struct ActiveGuard(Arc<ConnState>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// Lets `ws::upgrade` reach the server that received the request.
#[derive(Debug, Clone)]
pub(crate) struct UpgradeCtx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) conn: Arc<ConnState>,
}

/// Hands one request (any protocol) to the handler and prepares its response.
pub(crate) async fn dispatch(
    shared: &Arc<Shared>,
    conn: &Arc<ConnState>,
    handler: Handler,
    req: Request<Body>,
) -> Response<Body> {
    let protocol = Protocol::of_version(req.version());
    let guard = RequestGuard::new(shared.metrics.clone(), protocol, conn.clone());
    let exchange = shared
        .config
        .access_log
        .then(|| Exchange::new(conn.info, protocol, &req));
    let mut req = match &exchange {
        Some(x) => req.map(|b| b.metered(Some(Meter::Request(x.clone())))),
        None => req,
    };
    let finish = |resp: Response<Body>| {
        let meter = exchange.map(|x| {
            x.respond(&resp);
            Meter::Response(ResponseLog(x))
        });
        resp.map(|b| b.with_guard(guard).metered(meter))
    };
    if let Some(limit) = shared.config.max_body_bytes
        && declared_length(&req).is_some_and(|len| len > limit)
    {
        shared
            .metrics
            .bodies_too_large
            .fetch_add(1, Ordering::Relaxed);
        let msg = format!("request body exceeds the limit of {limit} bytes\n");
        return finish(plain(StatusCode::PAYLOAD_TOO_LARGE, msg));
    }
    let ext = req.extensions_mut();
    ext.insert(conn.info);
    ext.insert(shared.lifecycle.signal());
    ext.insert(UpgradeCtx {
        shared: shared.clone(),
        conn: conn.clone(),
    });
    let mut resp = match handler.oneshot(req).await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::error!(error = %e, "handler failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "handler failed\n".into())
        }
    };
    if conn.info.tls
        && let Some(alt_svc) = &shared.alt_svc
    {
        resp.headers_mut()
            .entry(ALT_SVC)
            .or_insert_with(|| alt_svc.clone());
    }
    finish(resp)
}

fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A short `text/plain` response.
pub(crate) fn plain(status: StatusCode, msg: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(msg));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
