//! Test fixtures: a real origin on loopback serving generated objects (with or
//! without range support, counting requests, able to die mid-body or stop; over
//! HTTP/1.1, h2c or TLS with ALPN), a proxy served by web-service, and an HTTP/1.1
//! client.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use streaming_proxy::{Mode, ProxyConfig, StreamingProxy};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Word `j` (bytes `8j..8j+8`) of a generated object with `seed`: word-wise, so
/// generating a GiB stays cheap in a debug build.
fn word(seed: u8, j: u64) -> [u8; 8] {
    let x = j.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((x ^ (x >> 29)) ^ u64::from(seed).wrapping_mul(0x0101_0101_0101_0101)).to_le_bytes()
}

/// Bytes `[start, end)` of a generated object.
pub fn object_bytes(seed: u8, start: u64, end: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity((end - start + 16) as usize);
    for j in start / 8..end.div_ceil(8) {
        out.extend_from_slice(&word(seed, j));
    }
    let skip = (start % 8) as usize;
    out.truncate(skip + (end - start) as usize);
    out.drain(..skip);
    out
}

/// sha256 of bytes `[0, len)` of a generated object, computed a MiB at a time.
pub fn object_sha(seed: u8, len: u64) -> String {
    let mut hasher = Sha256::new();
    let mut pos = 0;
    while pos < len {
        let to = (pos + (1 << 20)).min(len);
        hasher.update(object_bytes(seed, pos, to));
        pos = to;
    }
    hex::encode(hasher.finalize())
}

pub fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Peak resident memory of this process (proxy, origin and client together), KiB.
pub fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Resets this process's peak resident memory to its current value (Linux
/// `clear_refs`), so a test measures its own peak, not an earlier test's.
pub fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

/// How the origin serves one path.
#[derive(Clone, Debug)]
pub struct Spec {
    pub len: u64,
    pub seed: u8,
    pub ranges: bool,
    pub cache_control: Option<String>,
    pub etag: Option<String>,
    /// Delay between 16 KiB chunks.
    pub chunk_delay: Duration,
    /// Fail the body after this many bytes.
    pub die_after: Option<u64>,
    pub status: u16,
    /// Misbehave: answer ranges this many bytes later than asked.
    pub shift: u64,
    /// `Last-Modified` sent (and compared verbatim with `If-Modified-Since`).
    pub last_modified: Option<String>,
    /// `401` unless the request's `Authorization` is exactly this.
    pub auth: Option<String>,
    /// `Vary` sent. With `accept-encoding` in it, a request without
    /// `Accept-Encoding` (any coding acceptable, RFC 9110 §12.5.3) or naming gzip
    /// gets `Content-Encoding: gzip` (the same bytes: only the label matters
    /// here), like a compressing origin.
    pub vary: Option<String>,
    /// Further answer headers, sent as they are (e.g. `Set-Cookie`).
    pub extra: Vec<(String, String)>,
    /// Answer `Set-Cookie: id=<value of this request header>`: a cookie that
    /// tells which client's request the answer was made for.
    pub cookie_echo: Option<String>,
    /// Answer `200` at once with the request's body streamed back as it arrives
    /// (any method), and the request's method in `x-echo-method`.
    pub echo: bool,
}

impl Spec {
    pub fn new(len: u64, seed: u8) -> Self {
        Self {
            len,
            seed,
            ranges: true,
            cache_control: None,
            etag: Some(format!("\"v{seed}\"")),
            chunk_delay: Duration::ZERO,
            die_after: None,
            status: 200,
            shift: 0,
            // Stored for the heuristic lifetime (RFC 9111 §4.2.2: a tenth of its
            // age, capped by `default_ttl_secs`), like a static file server's.
            last_modified: Some("Thu, 01 Jan 2026 00:00:00 GMT".into()),
            auth: None,
            vary: None,
            extra: Vec::new(),
            cookie_echo: None,
            echo: false,
        }
    }

    /// Ignores `Range` (answers 200 with the whole object).
    pub fn no_ranges(mut self) -> Self {
        self.ranges = false;
        self
    }

    pub fn cache_control(mut self, value: &str) -> Self {
        self.cache_control = Some(value.to_owned());
        self
    }

    /// Waits `ms` before each 16 KiB chunk.
    pub fn delay_ms(mut self, ms: u64) -> Self {
        self.chunk_delay = Duration::from_millis(ms);
        self
    }

    pub fn die_after(mut self, bytes: u64) -> Self {
        self.die_after = Some(bytes);
        self
    }
}

#[derive(Default)]
pub struct OriginState {
    pub specs: Mutex<HashMap<String, Spec>>,
    /// Every request: (path, range header, status answered).
    pub log: Mutex<Vec<(String, Option<String>, u16)>>,
    /// Every request as received: method, path and query, headers.
    pub heads: Mutex<Vec<(http::Method, String, http::HeaderMap)>>,
    /// Body bytes handed to connections, all paths.
    pub sent: std::sync::atomic::AtomicU64,
    /// TCP connections accepted.
    pub connections: std::sync::atomic::AtomicU64,
    /// TLS origins: the ALPN protocol negotiated on each completed handshake, in
    /// order (`None`: no ALPN, HTTP/1.1 is spoken).
    pub alpn: Mutex<Vec<Option<String>>>,
}

/// How an origin speaks on its connections.
#[derive(Clone)]
enum Wire {
    Http1,
    /// HTTP/2 with prior knowledge.
    H2c,
    /// TLS; HTTP/2 if ALPN chose `h2`, else HTTP/1.1.
    Tls(Arc<rustls::ServerConfig>),
}

pub struct Origin {
    pub addr: SocketAddr,
    pub state: Arc<OriginState>,
    /// TLS origins: PEM file of the self-signed certificate, to trust as a CA.
    pub ca_file: Option<std::path::PathBuf>,
    tls: bool,
    _ca_dir: Option<tempfile::TempDir>,
    task: tokio::task::JoinHandle<()>,
}

/// ALPN identifiers.
pub const H2: &str = "h2";
pub const HTTP11: &str = "http/1.1";

impl Origin {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(addr: SocketAddr) -> Self {
        Self::listen(addr, Wire::Http1).await
    }

    /// An origin that speaks only HTTP/2 (prior knowledge, no HTTP/1.1 fallback).
    pub async fn start_h2() -> Self {
        Self::listen("127.0.0.1:0".parse().unwrap(), Wire::H2c).await
    }

    /// An https origin with a fresh self-signed certificate for `localhost` and
    /// `127.0.0.1` (written to [`Origin::ca_file`]), offering `alpn` (e.g. `[H2,
    /// HTTP11]`) and serving whichever the handshake picks.
    pub async fn start_tls(alpn: &[&str]) -> Self {
        Self::start_tls_for(&["localhost", "127.0.0.1"], alpn).await
    }

    /// [`Origin::start_tls`] with a certificate valid for `names` only.
    pub async fn start_tls_for(names: &[&str], alpn: &[&str]) -> Self {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::generate_simple_self_signed(names).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("origin-ca.pem");
        std::fs::write(&ca_file, cert.cert.pem()).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        tls.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let mut origin =
            Self::listen("127.0.0.1:0".parse().unwrap(), Wire::Tls(Arc::new(tls))).await;
        origin.ca_file = Some(ca_file);
        origin._ca_dir = Some(dir);
        origin
    }

    async fn listen(addr: SocketAddr, wire: Wire) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(OriginState::default());
        let st = state.clone();
        let tls = matches!(wire, Wire::Tls(_));
        let task = tokio::spawn(async move {
            // Connections live in the JoinSet: aborting the accept task drops them all.
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    break;
                };
                st.connections
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let st = st.clone();
                let wire = wire.clone();
                conns.spawn(async move {
                    match wire {
                        Wire::Http1 => serve_conn(TokioIo::new(tcp), false, st).await,
                        Wire::H2c => serve_conn(TokioIo::new(tcp), true, st).await,
                        Wire::Tls(config) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(config);
                            // A client that rejects the certificate ends here.
                            let Ok(stream) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let alpn = stream
                                .get_ref()
                                .1
                                .alpn_protocol()
                                .map(|p| String::from_utf8_lossy(p).into_owned());
                            let h2 = alpn.as_deref() == Some(H2);
                            st.alpn.lock().unwrap().push(alpn);
                            serve_conn(TokioIo::new(stream), h2, st).await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            state,
            ca_file: None,
            tls,
            _ca_dir: None,
            task,
        }
    }

    /// ALPN protocols negotiated so far, one per TLS connection.
    pub fn alpn(&self) -> Vec<Option<String>> {
        self.state.alpn.lock().unwrap().clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn add(&self, path: &str, spec: Spec) {
        self.state
            .specs
            .lock()
            .unwrap()
            .insert(path.to_owned(), spec);
    }

    pub fn update(&self, path: &str, f: impl FnOnce(&mut Spec)) {
        f(self.state.specs.lock().unwrap().get_mut(path).unwrap());
    }

    /// Requests the origin received for `path`.
    pub fn requests(&self, path: &str) -> Vec<(Option<String>, u16)> {
        self.state
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, r, s)| (r.clone(), *s))
            .collect()
    }

    /// Every request the origin received for `path` (path and query): method
    /// and headers, in order.
    pub fn heads(&self, path: &str) -> Vec<(http::Method, http::HeaderMap)> {
        self.state
            .heads
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p, _)| p == path)
            .map(|(m, _, h)| (m.clone(), h.clone()))
            .collect()
    }

    /// Stops listening and drops every connection.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one origin connection in HTTP/2 (`h2`) or HTTP/1.1 until it ends.
async fn serve_conn<I>(io: I, h2: bool, st: Arc<OriginState>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| serve(st.clone(), req));
    let _ = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .await
    };
}

type OriginBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

async fn serve(
    state: Arc<OriginState>,
    req: Request<Incoming>,
) -> Result<Response<OriginBody>, Infallible> {
    let path = req.uri().path().to_owned();
    state.heads.lock().unwrap().push((
        req.method().clone(),
        req.uri()
            .path_and_query()
            .map_or(path.clone(), |p| p.as_str().to_owned()),
        req.headers().clone(),
    ));
    let range = req
        .headers()
        .get("range")
        .map(|v| v.to_str().unwrap().to_owned());
    let spec = state.specs.lock().unwrap().get(&path).cloned();
    let log = |status: u16| {
        state
            .log
            .lock()
            .unwrap()
            .push((path.clone(), range.clone(), status))
    };
    let empty = || Empty::new().map_err(|e| match e {}).boxed();
    let Some(spec) = spec else {
        log(404);
        return Ok(Response::builder().status(404).body(empty()).unwrap());
    };
    if spec.echo {
        log(200);
        let method = req.method().as_str().to_owned();
        let body = req.into_body().map_err(std::io::Error::other).boxed();
        return Ok(Response::builder()
            .header("x-echo-method", method)
            .body(body)
            .unwrap());
    }
    let mut builder = Response::builder();
    if let Some(auth) = &spec.auth
        && req
            .headers()
            .get("authorization")
            .is_none_or(|v| v != auth.as_str())
    {
        log(401);
        return Ok(builder.status(401).body(empty()).unwrap());
    }
    if let Some(cc) = &spec.cache_control {
        builder = builder.header("cache-control", cc);
    }
    for (name, value) in &spec.extra {
        builder = builder.header(name, value);
    }
    if let Some(name) = &spec.cookie_echo {
        let id = req
            .headers()
            .get(name)
            .map_or("none", |v| v.to_str().unwrap());
        builder = builder.header("set-cookie", format!("id={id}"));
    }
    if let Some(vary) = &spec.vary {
        builder = builder.header("vary", vary);
        let gzip = req
            .headers()
            .get("accept-encoding")
            .is_none_or(|v| v.to_str().unwrap().contains("gzip"));
        if gzip && vary.to_ascii_lowercase().contains("accept-encoding") {
            builder = builder.header("content-encoding", "gzip");
        }
    }
    if let Some(lm) = &spec.last_modified {
        builder = builder.header("last-modified", lm);
        let since = req.headers().get("if-modified-since");
        if spec.etag.is_none() && since.is_some_and(|v| v == lm.as_str()) {
            log(304);
            return Ok(builder.status(304).body(empty()).unwrap());
        }
    }
    if let Some(etag) = &spec.etag {
        builder = builder.header("etag", etag);
        if req
            .headers()
            .get("if-none-match")
            .is_some_and(|v| v == etag.as_str())
        {
            // The per-chunk delay also slows 304s, so revalidations can overlap.
            tokio::time::sleep(spec.chunk_delay).await;
            log(304);
            return Ok(builder.status(304).body(empty()).unwrap());
        }
    }
    builder = builder.header("content-type", "application/octet-stream");
    // Preconditions of another version (RFC 9110 §13.1.1, §13.1.4): 412.
    let header = |name: &str| req.headers().get(name).map(|v| v.to_str().unwrap());
    let if_match_fails = header("if-match").is_some_and(|m| spec.etag.as_deref() != Some(m));
    let unmodified_fails =
        header("if-unmodified-since").is_some_and(|d| spec.last_modified.as_deref() != Some(d));
    if if_match_fails || unmodified_fails {
        log(412);
        return Ok(builder
            .status(412)
            .header("content-length", 0)
            .body(empty())
            .unwrap());
    }
    if spec.status != 200 {
        log(spec.status);
        return Ok(builder
            .status(spec.status)
            .header("content-length", 0)
            .body(empty())
            .unwrap());
    }
    let (mut start, mut end) = (0, spec.len);
    let mut status = StatusCode::OK;
    if let (true, Some(r)) = (spec.ranges, &range) {
        let (a, b) = r.strip_prefix("bytes=").unwrap().split_once('-').unwrap();
        let a: u64 = a.parse::<u64>().unwrap() + spec.shift;
        if a >= spec.len {
            log(416);
            return Ok(builder
                .status(416)
                .header("content-range", format!("bytes */{}", spec.len))
                .body(empty())
                .unwrap());
        }
        let b = b.parse::<u64>().map_or(spec.len, |b| (b + 1).min(spec.len));
        (start, end) = (a, b);
        status = StatusCode::PARTIAL_CONTENT;
        builder = builder.header("content-range", format!("bytes {a}-{}/{}", b - 1, spec.len));
    }
    if spec.ranges {
        builder = builder.header("accept-ranges", "bytes");
    }
    log(status.as_u16());
    let chunk = 16 * 1024;
    let stream = futures_util::stream::unfold(start, move |pos| {
        let spec = spec.clone();
        let state = state.clone();
        async move {
            if pos >= end {
                return None;
            }
            if !spec.chunk_delay.is_zero() {
                tokio::time::sleep(spec.chunk_delay).await;
            }
            if spec.die_after.is_some_and(|d| pos >= d) {
                return Some((Err(std::io::Error::other("origin died")), end));
            }
            let to = (pos + chunk).min(end);
            state
                .sent
                .fetch_add(to - pos, std::sync::atomic::Ordering::Relaxed);
            let data = Bytes::from(object_bytes(spec.seed, pos, to));
            Some((Ok(Frame::data(data)), to))
        }
    });
    let body = StreamBody::new(stream).boxed();
    Ok(builder
        .status(status)
        .header("content-length", end - start)
        .body(body)
        .unwrap())
}

/// A proxy served by web-service on loopback.
pub struct Proxy {
    pub addr: SocketAddr,
    pub proxy: StreamingProxy,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

pub fn config(origin: &Origin, dir: &std::path::Path, slice: u64) -> ProxyConfig {
    ProxyConfig {
        upstream: origin.url(),
        cache_dir: dir.to_owned(),
        slice_size: slice,
        l1_bytes: 64 * 1024 * 1024,
        l2_bytes: 1024 * 1024 * 1024,
        upstream_timeout_secs: 5,
        mode: Mode::Normal,
        ..ProxyConfig::default()
    }
}

impl Proxy {
    pub async fn start(config: ProxyConfig) -> Self {
        let proxy = StreamingProxy::new(config).unwrap();
        let listen = web_service::Listen {
            http: Some("127.0.0.1:0".parse().unwrap()),
            https: None,
        };
        let server = web_service::Server::bind(web_service::ServerConfig::default(), listen)
            .await
            .unwrap();
        let addr = server.http_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handler = proxy.clone();
        let task = tokio::spawn(async move {
            let _ = server
                .serve(handler, async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            proxy,
            stop: Some(stop),
            task,
        }
    }

    /// Waits until no fill or disk write is in progress (every piece fetched so far
    /// is stored).
    pub async fn idle(&self) {
        for _ in 0..1000 {
            let text = self.proxy.metrics().render();
            if text.contains("fills_in_progress 0") && text.contains("l2_writes_pending 0") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("fills still in progress after 10 s");
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// An origin, a cache directory, a proxy with [`config`] and `slice`, a client.
pub async fn harness(slice: u64) -> (Origin, tempfile::TempDir, Proxy, TestClient) {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(config(&origin, dir.path(), slice)).await;
    (origin, dir, proxy, client())
}

pub type TestClient = Client<HttpConnector, Empty<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A client speaking HTTP/2 with prior knowledge (h2c).
pub fn h2c_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// An answer read to its end (or to its error).
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    pub error: bool,
}

impl Got {
    pub fn x_cache(&self) -> &str {
        self.headers
            .get("x-cache")
            .map_or("", |v| v.to_str().unwrap())
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }
}

pub async fn request(client: &TestClient, method: &str, url: String, range: Option<&str>) -> Got {
    let range: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
    request_with(client, method, url, &range).await
}

pub async fn request_with(
    client: &TestClient,
    method: &str,
    url: String,
    headers: &[(&str, &str)],
) -> Got {
    let mut req = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let answer = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let (parts, body) = answer.into_parts();
    let mut bytes = Vec::new();
    let error = drain(body, |d| bytes.extend_from_slice(d)).await;
    Got {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: bytes,
        error,
    }
}

/// GETs `path` hashing the body as it arrives: (status, x-cache, sha256, length, error).
pub async fn get_hashed(
    client: &TestClient,
    proxy: &Proxy,
    path: &str,
) -> (u16, String, String, u64, bool) {
    get_hashed_url(client, format!("http://{}{path}", proxy.addr)).await
}

/// GETs `url` hashing the body as it arrives: (status, x-cache, sha256, length, error).
pub async fn get_hashed_url(client: &TestClient, url: String) -> (u16, String, String, u64, bool) {
    let req = Request::get(url).body(Empty::new()).unwrap();
    let answer = client.request(req).await.unwrap();
    let status = answer.status().as_u16();
    let x_cache = answer
        .headers()
        .get("x-cache")
        .map_or("", |v| v.to_str().unwrap())
        .to_owned();
    let (mut hasher, mut len) = (Sha256::new(), 0);
    let error = drain(answer.into_body(), |d| {
        len += d.len() as u64;
        hasher.update(d);
    })
    .await;
    (status, x_cache, hex::encode(hasher.finalize()), len, error)
}

pub async fn get(client: &TestClient, proxy: &Proxy, path: &str) -> Got {
    request(client, "GET", format!("http://{}{path}", proxy.addr), None).await
}

/// GETs `path` with extra request headers.
pub async fn get_with(
    client: &TestClient,
    proxy: &Proxy,
    path: &str,
    headers: &[(&str, &str)],
) -> Got {
    request_with(
        client,
        "GET",
        format!("http://{}{path}", proxy.addr),
        headers,
    )
    .await
}

pub async fn get_range(client: &TestClient, proxy: &Proxy, path: &str, range: &str) -> Got {
    request(
        client,
        "GET",
        format!("http://{}{path}", proxy.addr),
        Some(range),
    )
    .await
}

/// Feeds every data frame to `sink`; true if the body ended in an error.
async fn drain(mut body: Incoming, mut sink: impl FnMut(&[u8])) -> bool {
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(d) = f.into_data() {
                    sink(&d);
                }
            }
            Err(_) => return true,
        }
    }
    false
}

/// A GET in its own task.
pub fn spawn_get(client: &TestClient, url: &str) -> tokio::task::JoinHandle<Got> {
    let (client, url) = (client.clone(), url.to_owned());
    tokio::spawn(async move { request(&client, "GET", url, None).await })
}

/// Starts a GET and reads the head and one body frame; dropping the returned body
/// is the client going away mid-transfer.
pub async fn read_first_frame(client: &TestClient, url: &str) -> (http::HeaderMap, Incoming) {
    let req = Request::get(url).body(Empty::new()).unwrap();
    let (parts, mut body) = client.request(req).await.unwrap().into_parts();
    body.frame().await.unwrap().unwrap();
    (parts.headers, body)
}

/// The `streaming-proxy` binary, killed with SIGKILL when dropped.
pub struct Binary {
    pub child: std::process::Child,
    /// Where it serves HTTP.
    pub addr: SocketAddr,
    /// Where it serves `/metrics`, when asked to.
    pub metrics: Option<SocketAddr>,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Binary {
    /// Starts the binary listening on a free loopback port with `args` and waits for
    /// its READY line.
    pub async fn start(args: &[&str]) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_streaming-proxy"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            line
        })
        .await
        .unwrap();
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name))
                .map(|a| a.parse::<SocketAddr>().unwrap())
        };
        let addr = field("http=").unwrap_or_else(|| panic!("no READY line: {line:?}"));
        let metrics = field("metrics=");
        Self {
            child,
            addr,
            metrics,
        }
    }

    /// Resident memory of the proxy process now, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Waits until no fill is in progress (needs `--metrics`).
    pub async fn idle(&self) {
        let url = format!(
            "http://{}/metrics",
            self.metrics.expect("started with --metrics")
        );
        let c = client();
        for _ in 0..1000 {
            let text = request(&c, "GET", url.clone(), None).await.body;
            let text = String::from_utf8_lossy(&text);
            if text.contains("fills_in_progress 0") && text.contains("l2_writes_pending 0") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("fills still in progress after 20 s");
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Every file under `root` (relative path and SHA-256), sorted; directories end in `/`.
pub fn tree(root: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                out.push((format!("{rel}/"), String::new()));
                todo.push(path);
            } else {
                out.push((rel, sha(&std::fs::read(&path).unwrap())));
            }
        }
    }
    out.sort();
    out
}

/// The object directories in a cache root (the marker file aside).
pub fn object_dirs(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}
