//! One client per protocol: connect once, then upload pattern bodies, send
//! small requests or GET a URL on that connection.
//!
//! Timing starts when the request is sent on an established connection and
//! stops when the whole response has been read, so handshakes are not counted
//! as upload time (except WebSocket, see [`Connection::upload`]).

mod http;
mod quic;
mod ws;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::http::HeaderMap;
use bytes::{Bytes, BytesMut};
use xxhash_rust::xxh3::Xxh3Default;

use crate::error::{Error, Result};
use crate::source::{DEFAULT_CHUNK, Pattern};
use crate::target::{Proto, Target};
use crate::tls;

/// What to send in one upload.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Body length in bytes.
    pub bytes: u64,
    /// Size of one body frame / WebSocket message.
    pub chunk: usize,
    /// How many response body bytes to keep (the rest is only counted).
    pub keep_body: usize,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            bytes: 0,
            chunk: DEFAULT_CHUNK,
            keep_body: 64 * 1024,
        }
    }
}

/// What one upload (or small request) did.
#[derive(Debug, Clone)]
pub struct UploadResult {
    /// Protocol used.
    pub proto: Proto,
    /// Body bytes sent.
    pub sent: u64,
    /// From sending the request to reading the end of the response.
    pub elapsed: Duration,
    /// HTTP status (101 for WebSocket, whose outcome is `close_code`).
    pub status: u16,
    /// Response body bytes received (WebSocket: reply message bytes).
    pub received: u64,
    /// The first `keep_body` bytes of the response body.
    pub body: Bytes,
    /// WebSocket close code sent by the server.
    pub close_code: Option<u16>,
}

impl UploadResult {
    /// The kept response body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The byte count a `/discard` or `/ws` sink reported, if the body is one.
    pub fn reported_count(&self) -> Option<u64> {
        self.body_text().trim().parse().ok()
    }

    /// Throughput of the upload in MiB/s.
    pub fn mib_per_sec(&self) -> f64 {
        mib_per_sec(self.sent, self.elapsed)
    }

    /// Whether the server accepted the request: a 2xx status, or for
    /// WebSocket a normal (1000) close.
    pub fn succeeded(&self) -> bool {
        match self.proto {
            Proto::Ws => self.close_code == Some(1000),
            _ => (200..300).contains(&self.status),
        }
    }

    /// Fails unless the sink accepted the body and counted every byte of it.
    pub fn expect_counted(&self) -> Result<()> {
        if !self.succeeded() {
            return Err(Error::Protocol(format!(
                "{} upload refused: status {}, close code {:?}, body {:?}",
                self.proto,
                self.status,
                self.close_code,
                self.body_text()
            )));
        }
        match self.reported_count() {
            Some(n) if n == self.sent => Ok(()),
            _ => Err(Error::Protocol(format!(
                "{} sink reported {:?} for {} bytes sent",
                self.proto,
                self.body_text(),
                self.sent
            ))),
        }
    }
}

/// What to ask for in one GET (HTTP/1.1, HTTP/2 or HTTP/3).
#[derive(Debug, Clone)]
pub struct GetOptions {
    /// Sent as `Range: bytes=SPEC` when set (`0-99`, `100-`, `-500`).
    pub range: Option<String>,
    /// Whether to compute the xxh3-64 of the body (costs CPU on the reading
    /// task; off for request-rate runs).
    pub hash: bool,
    /// How many response body bytes to keep (the rest is only counted).
    pub keep_body: usize,
}

impl Default for GetOptions {
    /// No range, hashed, 4 KiB of the body kept.
    fn default() -> Self {
        Self {
            range: None,
            hash: true,
            keep_body: 4096,
        }
    }
}

impl GetOptions {
    /// The `Range` header value for [`GetOptions::range`], if any.
    fn range_header(&self) -> Result<Option<::http::HeaderValue>> {
        self.range
            .as_ref()
            .map(|spec| {
                ::http::HeaderValue::try_from(format!("bytes={spec}")).map_err(|_| {
                    Error::Argument(format!(
                        "range {spec:?} cannot be a header value (e.g. 0-1023, 1024-, -512)"
                    ))
                })
            })
            .transpose()
    }
}

/// Reads a GET's response body as it arrives, whatever the protocol: counts,
/// hashes, keeps a prefix and notes when the first byte came.
pub(crate) struct GetReader {
    started: Instant,
    head: Duration,
    first_byte: Option<Duration>,
    collector: Collector,
    hasher: Option<Xxh3Default>,
}

impl GetReader {
    /// For a request sent at `started` whose response head has just arrived.
    pub(crate) fn new(options: &GetOptions, started: Instant) -> Self {
        Self {
            started,
            head: started.elapsed(),
            first_byte: None,
            collector: Collector::new(options.keep_body),
            hasher: options.hash.then(Xxh3Default::new),
        }
    }

    /// Takes the next body bytes.
    pub(crate) fn push(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let started = self.started;
        self.first_byte.get_or_insert_with(|| started.elapsed());
        self.collector.push(data);
        if let Some(hasher) = &mut self.hasher {
            hasher.update(data);
        }
    }

    /// The result, once the body has ended.
    pub(crate) fn finish(self, proto: Proto, status: u16, headers: HeaderMap) -> GetResult {
        let elapsed = self.started.elapsed();
        let (received, body) = self.collector.into_parts();
        GetResult {
            proto,
            status,
            headers,
            received,
            head: self.head,
            first_byte: self.first_byte,
            elapsed,
            xxh3: self.hasher.map(|h| h.digest()),
            body,
        }
    }
}

/// What one GET did.
#[derive(Debug, Clone)]
pub struct GetResult {
    /// Protocol used.
    pub proto: Proto,
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body bytes received.
    pub received: u64,
    /// From sending the request to receiving the response head.
    pub head: Duration,
    /// From sending the request to receiving the first body byte; `None` for
    /// an empty body.
    pub first_byte: Option<Duration>,
    /// From sending the request to reading the end of the body.
    pub elapsed: Duration,
    /// xxh3-64 of the whole body, when [`GetOptions::hash`] asked for it.
    pub xxh3: Option<u64>,
    /// The first `keep_body` bytes of the body.
    pub body: Bytes,
}

impl GetResult {
    /// Whether the status is 2xx.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Received body bytes per second of `elapsed`, in MiB/s.
    pub fn mib_per_sec(&self) -> f64 {
        mib_per_sec(self.received, self.elapsed)
    }

    /// The `X-Cache` response header (a caching proxy's HIT/MISS), if present
    /// and readable as text.
    pub fn x_cache(&self) -> Option<&str> {
        self.header("x-cache")
    }

    /// A response header as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body hash as 16 lowercase hex digits ("" when not hashed).
    pub fn xxh3_hex(&self) -> String {
        self.xxh3.map(|h| format!("{h:016x}")).unwrap_or_default()
    }

    /// The kept body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Throughput in MiB/s; zero for a zero duration.
pub fn mib_per_sec(bytes: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        bytes as f64 / (1024.0 * 1024.0) / secs
    } else {
        0.0
    }
}

/// A protocol, a URL and the trust settings: a factory of connections.
#[derive(Clone)]
pub struct Client {
    proto: Proto,
    target: Target,
    tls: Option<Arc<rustls::ClientConfig>>,
    quic: Option<quinn::ClientConfig>,
    /// Source addresses connections take in turn (empty: the system picks).
    sources: Arc<[std::net::IpAddr]>,
    next_source: Arc<std::sync::atomic::AtomicUsize>,
}

impl Client {
    /// A client of `proto` for `url`; `ca` (PEM) is required for TLS URLs.
    pub fn new(proto: Proto, url: &str, ca: Option<&Path>) -> Result<Self> {
        let target = Target::parse(url, proto)?;
        let ca_pem = match (target.tls, ca) {
            (false, _) => None,
            (true, Some(path)) => Some(
                std::fs::read(path).map_err(Error::io(format!("read CA {}", path.display())))?,
            ),
            (true, None) => return Err(Error::Argument(format!("{url} uses TLS: pass a CA PEM"))),
        };
        let origin = ca.map(|p| p.display().to_string()).unwrap_or_default();
        let config = |alpn: &[&[u8]]| -> Result<Option<rustls::ClientConfig>> {
            ca_pem
                .as_deref()
                .map(|pem| tls::client_config_from_pem(pem, alpn, &origin))
                .transpose()
        };
        let (tls, quic) = match proto {
            Proto::H1 | Proto::H1Chunked | Proto::Ws => (config(&[tls::ALPN_HTTP11])?, None),
            Proto::H2 => (config(&[tls::ALPN_H2])?, None),
            Proto::H3 => (
                None,
                config(&[tls::ALPN_H3])?
                    .map(quic::client_config)
                    .transpose()?,
            ),
        };
        Ok(Self {
            proto,
            target,
            tls: tls.map(Arc::new),
            quic,
            sources: Arc::from(Vec::new()),
            next_source: Arc::default(),
        })
    }

    /// Spreads this client's connections over `sources` in turn (each binds its
    /// socket to the next one), so that one process is seen as several
    /// clients by a server that limits each address (e.g. the loopback
    /// addresses `127.0.0.1`, `127.0.0.2`, ...).
    pub fn with_sources(mut self, sources: Vec<std::net::IpAddr>) -> Self {
        self.sources = Arc::from(sources);
        self
    }

    /// The target a new connection uses: the URL's, bound to the next source.
    fn next_target(&self) -> Target {
        let mut target = self.target.clone();
        if !self.sources.is_empty() {
            let i = self
                .next_source
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            target.source = Some(self.sources[i % self.sources.len()]);
        }
        target
    }

    /// The protocol this client speaks.
    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// The parsed URL.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Opens one connection (for WebSocket: the first WebSocket session).
    pub async fn connect(&self) -> Result<Connection> {
        let target = self.next_target();
        let inner = match self.proto {
            Proto::H1 | Proto::H1Chunked => {
                Inner::H1(http::connect_h1(&target, self.tls.as_ref()).await?)
            }
            Proto::H2 => Inner::H2(http::connect_h2(&target, self.tls.as_ref()).await?),
            Proto::H3 => {
                let config = self.quic.clone().ok_or_else(|| {
                    Error::Argument("HTTP/3 needs an https:// URL and a CA".into())
                })?;
                Inner::H3(quic::connect(&target, config).await?)
            }
            Proto::Ws => Inner::Ws(Some(ws::connect(&target, self.tls.as_ref()).await?)),
        };
        Ok(Connection {
            client: self.clone(),
            inner,
        })
    }

    /// Connects and uploads once.
    pub async fn upload(&self, options: &UploadOptions) -> Result<UploadResult> {
        self.connect().await?.upload(options).await
    }
}

/// An open connection of one protocol.
pub struct Connection {
    client: Client,
    inner: Inner,
}

enum Inner {
    H1(hyper::client::conn::http1::SendRequest<http::PatternBody>),
    H2(hyper::client::conn::http2::SendRequest<http::PatternBody>),
    H3(quic::H3Connection),
    /// `None` once the server closed the session it answered on.
    Ws(Option<ws::WsStream>),
}

impl Connection {
    /// POSTs a pattern body of `options.bytes` to the client's URL and reads the
    /// whole response.
    ///
    /// WebSocket: the sink closes a session after its reply, so each upload uses
    /// the session opened by [`Client::connect`] or, after the first, a new one
    /// whose handshake counts in `elapsed`.
    pub async fn upload(&mut self, options: &UploadOptions) -> Result<UploadResult> {
        let pattern = Pattern::new(options.chunk);
        let client = &self.client;
        match &mut self.inner {
            Inner::H1(send) => {
                let chunked = client.proto == Proto::H1Chunked;
                http::upload_h1(send, &client.target, &pattern, options, chunked).await
            }
            Inner::H2(send) => http::upload_h2(send, &client.target, &pattern, options).await,
            Inner::H3(conn) => {
                quic::upload(&mut conn.sender(), &client.target, &pattern, options).await
            }
            Inner::Ws(session) => {
                let (stream, reconnected) = match session.take() {
                    Some(stream) => (stream, None),
                    None => {
                        let started = Instant::now();
                        let stream =
                            ws::connect(&client.next_target(), client.tls.as_ref()).await?;
                        (stream, Some(started))
                    }
                };
                let mut result = ws::upload(stream, &pattern, options).await?;
                if let Some(started) = reconnected {
                    result.elapsed = started.elapsed();
                }
                Ok(result)
            }
        }
    }

    /// Runs `streams` uploads at once on this one connection and returns them
    /// in order; HTTP/2 and HTTP/3 only, the protocols that multiplex.
    pub async fn upload_concurrent(
        &mut self,
        streams: usize,
        options: &UploadOptions,
    ) -> Result<Vec<UploadResult>> {
        let pattern = Pattern::new(options.chunk);
        let target = &self.client.target;
        match &self.inner {
            Inner::H2(send) => {
                let uploads = (0..streams).map(|_| {
                    let (mut send, pattern) = (send.clone(), &pattern);
                    async move { http::upload_h2(&mut send, target, pattern, options).await }
                });
                futures_util::future::try_join_all(uploads).await
            }
            Inner::H3(conn) => {
                let uploads = (0..streams).map(|_| {
                    let (mut send, pattern) = (conn.sender(), &pattern);
                    async move { quic::upload(&mut send, target, pattern, options).await }
                });
                futures_util::future::try_join_all(uploads).await
            }
            Inner::H1(_) | Inner::Ws(_) => Err(Error::Argument(format!(
                "{} carries one request at a time per connection",
                self.client.proto
            ))),
        }
    }

    /// GETs the client's URL (no request body) and reads the whole response.
    ///
    /// HTTP/1.1, HTTP/2 and HTTP/3 (not WebSocket); a non-2xx answer is a
    /// result, not an error.
    pub async fn get(&mut self, options: &GetOptions) -> Result<GetResult> {
        let client = &self.client;
        match &mut self.inner {
            Inner::H1(send) => http::get_h1(send, &client.target, options).await,
            Inner::H2(send) => http::get_h2(send, &client.target, options).await,
            Inner::H3(conn) => quic::get(&mut conn.sender(), &client.target, options).await,
            Inner::Ws(_) => Err(unsupported_get(client.proto)),
        }
    }

    /// Sends one small request (`body_bytes` of body) and reads its response;
    /// `elapsed` of the result is the request's latency.
    pub async fn request(&mut self, body_bytes: u64) -> Result<UploadResult> {
        let options = UploadOptions {
            bytes: body_bytes,
            chunk: (body_bytes as usize).clamp(1, DEFAULT_CHUNK),
            keep_body: 4096,
        };
        self.upload(&options).await
    }
}

/// Whether [`Connection::get`] works over `proto`.
pub fn get_supported(proto: Proto) -> bool {
    matches!(proto, Proto::H1 | Proto::H1Chunked | Proto::H2 | Proto::H3)
}

/// The error for a GET over a protocol that has none here.
pub(crate) fn unsupported_get(proto: Proto) -> Error {
    Error::Argument(format!(
        "GET is implemented over h1, h2 and h3, not {proto}"
    ))
}

/// Accumulates a response body: counts everything, keeps a prefix.
pub(crate) struct Collector {
    total: u64,
    kept: BytesMut,
    keep: usize,
}

impl Collector {
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            total: 0,
            kept: BytesMut::new(),
            keep,
        }
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let room = self.keep.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&data[..room.min(data.len())]);
    }

    /// Bytes counted and the kept prefix.
    pub(crate) fn into_parts(self) -> (u64, Bytes) {
        (self.total, self.kept.freeze())
    }

    /// The result of an upload of `options.bytes` started at `started`, whose
    /// response is complete now.
    pub(crate) fn finish(
        self,
        proto: Proto,
        options: &UploadOptions,
        started: Instant,
        status: u16,
        close_code: Option<u16>,
    ) -> UploadResult {
        UploadResult {
            proto,
            sent: options.bytes,
            elapsed: started.elapsed(),
            status,
            received: self.total,
            body: self.kept.freeze(),
            close_code,
        }
    }
}
