//! WebSocket beyond the protocol matrix: HTTP/2 extended CONNECT (RFC 8441) on h2c and
//! HTTP/2 over TLS, and clear refusals (HTTP/3, bad version, missing key).

mod support;

use http::{Method, Request};
use hyper_util::rt::TokioIo;
use support::client::{self, tls_connect};
use support::pattern::{self, CHUNK};
use support::{Harness, WAIT, eventually, wsclient};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use web_service::Protocol;

type H2Send = hyper::client::conn::http2::SendRequest<client::ReqBody>;
type H2Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

async fn extended_connect<T>(io: T) -> H2Ws
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    extended_connect_keep(io).await.1
}

/// Opens a WebSocket by extended CONNECT and keeps the connection for more requests.
async fn extended_connect_keep<T>(io: T) -> (H2Send, H2Ws)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = client::h2_builder()
        .handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    // One ordinary request first, so the server's SETTINGS (with
    // ENABLE_CONNECT_PROTOCOL) have arrived before the CONNECT is sent.
    let warmup = send
        .send_request(client::request("GET", "/pattern/1", client::empty()))
        .await
        .unwrap();
    assert_eq!(warmup.status(), 200);
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri("https://localhost/ws/sha256")
        .header("sec-websocket-version", "13")
        .body(client::empty())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "extended CONNECT accepted");
    let upgraded = hyper::upgrade::on(resp).await.unwrap();
    (
        send,
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await,
    )
}

async fn upload_over(ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>) {
    upload_n(ws, 8 * 1024 * 1024).await;
}

async fn upload_n(mut ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>, total: u64) {
    use futures_util::{SinkExt, StreamExt};
    let mut chunks = Box::pin(pattern::stream(total));
    while let Some(Ok(chunk)) = chunks.next().await {
        ws.send(Message::Binary(chunk)).await.unwrap();
    }
    ws.send(Message::Binary(Default::default())).await.unwrap();
    let answer = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(
        answer,
        Message::text(format!("{} {total}", pattern::sha256_hex(total)))
    );
    let close = timeout(WAIT, wsclient::close_frame(&mut ws)).await.unwrap();
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Normal));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_h2c_extended_connect() {
    let server = Harness::start().await;
    let ws = extended_connect(TcpStream::connect(server.http).await.unwrap()).await;
    upload_over(ws).await;
    let m = server.metrics.clone();
    eventually("session counted", || {
        m.stats(Protocol::WebSocket).connections_total == 1
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_session_keeps_its_h2_connection_from_idling_out() {
    let server =
        Harness::start_tweaked(|c| c.idle_timeout = std::time::Duration::from_millis(300)).await;
    let (mut send, ws) =
        extended_connect_keep(TcpStream::connect(server.http).await.unwrap()).await;
    // Quiet for longer than the idle timeout: the session still counts as activity,
    // so the connection got no GOAWAY and takes new requests.
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    let resp = send
        .send_request(client::request("GET", "/pattern/1", client::empty()))
        .await;
    assert_eq!(resp.expect("connection still open").status(), 200);
    upload_n(ws, CHUNK as u64).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_h2_tls_extended_connect() {
    let server = Harness::start().await;
    let ws = extended_connect(tls_connect(server.https, &server.cert, &[b"h2"]).await).await;
    upload_over(ws).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_request_over_h3_is_refused_clearly() {
    let server = Harness::start().await;
    let conn = client::Conn::connect(client::Proto::H3, &server).await;
    let resp = conn
        .send(client::request("GET", "/ws/sha256", client::empty()))
        .await
        .unwrap();
    // Not an upgrade request on HTTP/3 (RFC 9220 is not supported): a clear 4xx.
    assert_eq!(resp.status(), 400);
    // ws:// on the same server still works.
    let mut ws = wsclient::connect(&server, false, "/ws/sha256").await;
    assert_eq!(
        wsclient::upload(&mut ws, CHUNK as u64).await,
        format!("{} {CHUNK}", pattern::sha256_hex(CHUNK as u64))
    );
    assert_eq!(
        wsclient::close_frame(&mut ws).await.map(|f| f.code),
        Some(CloseCode::Normal)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_websocket_upgrades_get_clear_4xx() {
    let server = Harness::start().await;
    let head =
        "GET /ws/sha256 HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n";
    let old = format!(
        "{head}sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 8\r\nconnection: close\r\n\r\n"
    );
    let answer = client::raw_exchange(server.http, old.as_bytes())
        .await
        .to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 426"), "{answer}");
    assert!(answer.contains("sec-websocket-version: 13"), "{answer}");
    let keyless = format!("{head}sec-websocket-version: 13\r\nconnection: close\r\n\r\n");
    let answer = client::raw_exchange(server.http, keyless.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    server.stop().await;
}
