//! Real HTTP clients: hyper (HTTP/1.1, h2c, HTTP/2 over TLS) and h3 + quinn.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt, TryStreamExt, stream};
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyDataStream, BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::crypto::ring;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::Harness;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ReqBody = UnsyncBoxBody<Bytes, BoxError>;
pub type RespStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

/// The HTTP protocols under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    H1Tls,
    H2c,
    H2Tls,
    H3,
}

/// A request body that streams `stream` (pulled only as the connection can send).
pub fn streaming<S, E>(stream: S) -> ReqBody
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<BoxError> + 'static,
{
    StreamBody::new(stream.map_ok(Frame::data).map_err(Into::into)).boxed_unsync()
}

pub fn empty() -> ReqBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// rustls client trusting only `cert`, offering `alpn`.
pub fn tls_config(cert: &CertificateDer<'static>, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg
}

pub async fn tls_connect(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let connector = TlsConnector::from(Arc::new(tls_config(cert, alpn)));
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// One client connection of any protocol.
#[derive(Clone)]
pub enum Conn {
    H1(Arc<tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<ReqBody>>>),
    H2(hyper::client::conn::http2::SendRequest<ReqBody>),
    H3(
        h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
        quinn::Endpoint,
    ),
}

pub fn h2_builder() -> hyper::client::conn::http2::Builder<TokioExecutor> {
    let mut b = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    b.initial_stream_window_size(4 * 1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024);
    b
}

impl Conn {
    pub async fn connect(proto: Proto, server: &Harness) -> Self {
        match proto {
            Proto::H1 => Self::h1(TcpStream::connect(server.http).await.unwrap()).await,
            Proto::H1Tls => {
                Self::h1(tls_connect(server.https, &server.cert, &[b"http/1.1"]).await).await
            }
            Proto::H2c => Self::h2(TcpStream::connect(server.http).await.unwrap()).await,
            Proto::H2Tls => {
                let tls = tls_connect(server.https, &server.cert, &[b"h2"]).await;
                assert_eq!(
                    tls.get_ref().1.alpn_protocol(),
                    Some(&b"h2"[..]),
                    "ALPN picked h2"
                );
                Self::h2(tls).await
            }
            Proto::H3 => Self::h3(server.https, &server.cert).await,
        }
    }

    async fn h1<T>(io: T) -> Self
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(conn);
        Self::H1(Arc::new(tokio::sync::Mutex::new(send)))
    }

    async fn h2<T>(io: T) -> Self
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = h2_builder().handshake(TokioIo::new(io)).await.unwrap();
        tokio::spawn(conn);
        Self::H2(send)
    }

    pub async fn h3(addr: SocketAddr, cert: &CertificateDer<'static>) -> Self {
        let (quic, endpoint) = quic_connect(addr, cert).await.unwrap();
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(quic))
            .await
            .unwrap();
        tokio::spawn(async move { poll_fn(|cx| driver.poll_close(cx)).await });
        Self::H3(send, endpoint)
    }

    /// Sends `req`; the request body streams while the response may already arrive.
    pub async fn send(&self, req: Request<ReqBody>) -> Result<Response<RespStream>, BoxError> {
        match self {
            Self::H1(send) => {
                // Origin-form target plus Host, as HTTP/1.1 clients send it.
                let (mut parts, body) = req.into_parts();
                let target = parts
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned();
                parts.uri = target.parse()?;
                parts.headers.insert(
                    http::header::HOST,
                    http::HeaderValue::from_static("localhost"),
                );
                let req = Request::from_parts(parts, body);
                let mut send = send.lock().await;
                send.ready().await?;
                let fut = send.send_request(req);
                drop(send);
                Ok(fut
                    .await?
                    .map(|b| Box::pin(BodyDataStream::new(b).map_err(Into::into)) as RespStream))
            }
            Self::H2(send) => {
                let mut send = send.clone();
                send.ready().await?;
                let resp = send.send_request(req).await?;
                Ok(
                    resp.map(|b| {
                        Box::pin(BodyDataStream::new(b).map_err(Into::into)) as RespStream
                    }),
                )
            }
            Self::H3(send, _) => h3_send(send.clone(), req).await,
        }
    }
}

async fn h3_send(
    mut send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    req: Request<ReqBody>,
) -> Result<Response<RespStream>, BoxError> {
    let (parts, body) = req.into_parts();
    let stream = send.send_request(Request::from_parts(parts, ())).await?;
    let (mut tx, mut rx) = stream.split();
    // Upload concurrently with reading the response, as the other protocols do.
    tokio::spawn(async move {
        let mut body = std::pin::pin!(body);
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return tx.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED);
            };
            if let Ok(data) = frame.into_data()
                && tx.send_data(data).await.is_err()
            {
                return;
            }
        }
        let _ = tx.finish().await;
    });
    let resp = rx.recv_response().await?;
    let data = stream::unfold(rx, |mut rx| async move {
        match rx.recv_data().await {
            Ok(Some(mut buf)) => Some((Ok(buf.copy_to_bytes(buf.remaining())), rx)),
            Ok(None) => None,
            Err(e) => Some((Err(BoxError::from(e)), rx)),
        }
    });
    Ok(resp.map(|()| Box::pin(data) as RespStream))
}

/// Reads a whole (small) response body as text.
pub async fn text(body: RespStream) -> String {
    let parts: Vec<Bytes> = body.try_collect().await.unwrap();
    String::from_utf8(parts.concat()).unwrap()
}

/// Byte count and sha256 of a streamed response body.
pub async fn digest(mut body: RespStream) -> (u64, String) {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    (n, hex::encode(h.finalize()))
}

pub fn request(method: &str, path: &str, body: ReqBody) -> Request<ReqBody> {
    Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
        .body(body)
        .unwrap()
}

/// A QUIC connection (ALPN h3) trusting only `cert`, with windows sized like the server's.
pub async fn quic_connect(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
) -> Result<(quinn::Connection, quinn::Endpoint), quinn::ConnectionError> {
    quic_connect_pinging(addr, cert, None).await
}

/// [`quic_connect`] that sends a QUIC PING every `keep_alive` (if given).
pub async fn quic_connect_pinging(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
    keep_alive: Option<std::time::Duration>,
) -> Result<(quinn::Connection, quinn::Endpoint), quinn::ConnectionError> {
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls_config(cert, &[b"h3"])).unwrap();
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .stream_receive_window(quinn::VarInt::from_u32(4 * 1024 * 1024))
        .receive_window(quinn::VarInt::from_u32(16 * 1024 * 1024))
        .send_window(16 * 1024 * 1024)
        .keep_alive_interval(keep_alive);
    client.transport_config(Arc::new(transport));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client);
    let quic = endpoint.connect(addr, "localhost").unwrap().await?;
    Ok((quic, endpoint))
}

/// Writes `raw` on a fresh TCP connection and reads until the server closes it.
pub async fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(super::WAIT, tcp.read_to_end(&mut out))
        .await
        .expect("server closed");
    String::from_utf8_lossy(&out).into_owned()
}

/// Starts `GET /gated/ID` and reads its first part (`first`): the handler is now
/// waiting. Returns the rest of the body and the sender that lets the handler finish.
pub async fn gated(
    conn: &Conn,
    gates: &super::Gates,
) -> (RespStream, tokio::sync::oneshot::Sender<()>) {
    let (id, open) = gates.gate();
    let resp = conn
        .send(request("GET", &format!("/gated/{id}"), empty()))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = tokio::time::timeout(super::WAIT, body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first");
    (body, open)
}

/// `GET /pattern/N` on `conn`, checking status, length and digest.
pub async fn fetch_pattern(conn: &Conn, n: u64) {
    let resp = conn
        .send(request("GET", &format!("/pattern/{n}"), empty()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        digest(resp.into_body()).await,
        (n, super::pattern::sha256_hex(n))
    );
}

/// Reads one chunked HTTP/1.1 response from `tcp`, up to its terminating chunk.
pub async fn read_chunked_response(tcp: &mut TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.ends_with(b"0\r\n\r\n") {
        let n = tokio::time::timeout(super::WAIT, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "connection closed mid-response: {:?}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `GET /pattern/3` as raw HTTP/1.1 on `tcp` and expects a `200` response.
pub async fn raw_get_ok(tcp: &mut TcpStream) {
    use tokio::io::AsyncWriteExt;
    tcp.write_all(b"GET /pattern/3 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let response = read_chunked_response(tcp).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
}
