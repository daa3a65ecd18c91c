//! Fairness and timeouts end to end (ARCHITECTURE.md §6): one address's
//! stalled uploads never hold what others need, a body that ends badly is an
//! abort on every protocol, and every idle bound ends its stream. Hostile
//! clients bind to 127.0.0.2 so the per-client limit can be seen; the
//! well-behaved ones come from 127.0.0.1. Only the timeouts are short: the
//! limits are the server's defaults.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use chunk_cache::AbortReason;
use futures_util::{SinkExt, StreamExt};
use http_body_util::StreamBody;
use hyper_util::rt::{TokioExecutor, TokioIo};
use loadgen::clients::UploadOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use upload_response::{Route, TailError};

mod common;
use common::TestServer;

/// Generous bound for anything that should happen "at once" on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

type Chunk = Result<http_body::Frame<Bytes>, std::io::Error>;

type ChannelBody = StreamBody<std::pin::Pin<Box<dyn futures_util::Stream<Item = Chunk> + Send>>>;

/// A request body fed by the test through `rx`.
fn channel_body(rx: mpsc::Receiver<Chunk>) -> ChannelBody {
    StreamBody::new(Box::pin(futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
    )))
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads an HTTP/1.1 response head and returns its status.
async fn read_status(stream: &mut TcpStream) -> u16 {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut byte))
            .await
            .expect("no response head")
            .unwrap();
        assert_eq!(n, 1, "connection closed before a response head: {head:?}");
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

/// What a probe worker saw of a request body.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Ended(u64),
    Aborted(AbortReason),
}

/// An in-process worker on `path` that reads each body to its end and
/// reports what it saw; it answers 200 only after a clean end.
fn probe(server: &TestServer, path: &str) -> mpsc::UnboundedReceiver<Seen> {
    let worker = server.running.service.worker("probe", Route::prefix(path));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let mut job = worker.next_job().await;
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut body = job.body();
                let mut total = 0;
                let seen = loop {
                    match body.chunk().await {
                        Some(Ok(chunk)) => total += chunk.len() as u64,
                        Some(Err(TailError::Aborted(reason))) => break Seen::Aborted(reason),
                        Some(Err(e)) => panic!("unexpected tail error {e}"),
                        None => break Seen::Ended(total),
                    }
                };
                let ended = matches!(seen, Seen::Ended(_));
                let _ = tx.send(seen);
                if ended
                    && let Ok(out) = job.respond(http::StatusCode::OK, &Default::default()).await
                {
                    let _ = out.finish().await;
                }
            });
        }
    });
    rx
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("the worker saw nothing")
        .unwrap()
}

/// Twenty sha256 uploads from 127.0.0.1 over HTTP/1.1, all answered right.
async fn others_are_served(server: &TestServer) {
    let client = server.h1_client("/sha256");
    let options = UploadOptions {
        bytes: 64 * 1024,
        ..UploadOptions::default()
    };
    let expected = format!("{} {}\n", common::pattern_digest(&options), options.bytes);
    let uploads = (0..20).map(|_| {
        let (client, options) = (client.clone(), options.clone());
        async move { client.upload(&options).await.unwrap() }
    });
    for result in futures_util::future::join_all(uploads).await {
        assert!(result.succeeded(), "{result:?}");
        assert_eq!(result.body_text(), expected);
    }
}

/// Long enough that the stalled uploads are certainly still stalled while
/// the other client's requests run, short enough for a test.
const STALL_MS: u64 = 8_000;

async fn stall_server() -> TestServer {
    TestServer::start(|cli| {
        cli.builtin_workers = Some("sha256".into());
        cli.body_idle_timeout_ms = Some(STALL_MS.into());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_h1_uploads_from_one_address_leave_others_served() {
    let server = stall_server().await;
    let addr = server.running.http.unwrap();
    let mut stalled = Vec::new();
    for _ in 0..200 {
        let mut conn = connect_from("127.0.0.2", addr).await;
        conn.write_all(
            b"POST /sha256 HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\nfirst bytes",
        )
        .await
        .unwrap();
        stalled.push(conn);
    }
    let statuses = tokio::spawn(futures_util::future::join_all(
        stalled
            .into_iter()
            .map(|mut conn| async move { read_status(&mut conn).await }),
    ));
    // The default max_streams_per_client (64) admits 64; the rest get 429.
    wait_in_flight(&server, 64).await;
    others_are_served(&server).await;
    // The premise: the stalled uploads were still holding their streams.
    assert_eq!(
        server.running.service.in_flight(),
        64,
        "the stalled uploads ended before the other client was served"
    );
    let statuses = statuses.await.unwrap();
    let count = |code| statuses.iter().filter(|s| **s == code).count();
    assert_eq!(
        count(429),
        136,
        "429s with the default max_streams_per_client"
    );
    assert_eq!(
        count(408),
        64,
        "stalled uploads end by the body idle timeout"
    );
    wait_idle(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_h2c_connection_with_200_silent_streams_leaves_others_served() {
    let server = stall_server().await;
    let addr = server.running.http.unwrap();
    let conn = connect_from("127.0.0.2", addr).await;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(conn))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut keep_open = Vec::new();
    let (done_tx, mut responses) = mpsc::unbounded_channel();
    for _ in 0..200 {
        let (tx, rx) = mpsc::channel::<Chunk>(1);
        keep_open.push(tx); // never sends: the stream stays silent
        let body = channel_body(rx);
        let req = http::Request::post(format!("http://{addr}/sha256"))
            .body(body)
            .unwrap();
        let (mut sender, done_tx) = (sender.clone(), done_tx.clone());
        tokio::spawn(async move {
            let _ = done_tx.send(sender.send_request(req).await.map(|r| r.status()));
        });
    }
    // The server advertises at most max_streams_per_client (64) streams per connection.
    wait_in_flight(&server, 64).await;

    others_are_served(&server).await;
    assert_eq!(
        server.running.service.in_flight(),
        64,
        "the silent streams ended before the other client was served"
    );
    // The first 64 end by the body idle timeout; the queued rest would only
    // repeat it, so the connection goes once they have. Streams the client
    // opened before it saw the server's SETTINGS are refused (REFUSED_STREAM,
    // RFC 9113 §5.1.2): allowed, they never became requests.
    let mut timed_out = 0;
    while timed_out < 64 {
        let answer = tokio::time::timeout(PATIENCE, responses.recv())
            .await
            .unwrap()
            .unwrap();
        match answer {
            Ok(status) => {
                assert_eq!(status, 408);
                timed_out += 1;
            }
            Err(e) => assert!(format!("{e:?}").contains("REFUSED_STREAM"), "{e:?}"),
        }
    }
    drop(responses);
    drop(keep_open);
    wait_idle(&server).await;
    server.stop().await;
}

/// Waits until `n` requests are in flight, and checks no more came.
async fn wait_in_flight(server: &TestServer, n: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.running.service.in_flight() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "streams never opened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give any excess stream time to show up before checking there is none.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.running.service.in_flight(), n);
}

/// Waits until no request is in flight.
async fn wait_idle(server: &TestServer) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.running.service.in_flight() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "requests stayed in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn probe_server(body_idle_ms: u64) -> TestServer {
    TestServer::start(|cli| cli.body_idle_timeout_ms = Some(body_idle_ms.into())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_short_body_then_close_is_an_abort() {
    let server = probe_server(30_000).await;
    let mut seen = probe(&server, "/probe");
    let mut conn = TcpStream::connect(server.running.http.unwrap())
        .await
        .unwrap();
    conn.write_all(b"POST /probe HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n")
        .await
        .unwrap();
    conn.write_all(&[7u8; 1000]).await.unwrap();
    drop(conn);
    assert_eq!(
        next_seen(&mut seen).await,
        Seen::Aborted(AbortReason::ClientGone)
    );
    wait_idle(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_rst_stream_mid_body_is_an_abort() {
    let server = probe_server(30_000).await;
    let mut seen = probe(&server, "/probe");
    let addr = server.running.http.unwrap();
    let conn = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(conn))
            .await
            .unwrap();
    tokio::spawn(connection);
    let (tx, rx) = mpsc::channel::<Chunk>(4);
    let body = channel_body(rx);
    let req = http::Request::post(format!("http://{addr}/probe"))
        .body(body)
        .unwrap();
    let response = tokio::spawn(async move { sender.send_request(req).await });
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(&[1u8; 4096]))))
        .await
        .unwrap();
    // The reset must come mid-body, not before the server took the request.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server
        .running
        .service
        .streams()
        .first()
        .is_none_or(|s| s.request_last < 2)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the body never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A failing request body makes hyper reset the stream (RST_STREAM).
    tx.send(Err(std::io::Error::other("client gives up")))
        .await
        .unwrap();
    assert_eq!(
        next_seen(&mut seen).await,
        Seen::Aborted(AbortReason::ClientGone)
    );
    let _ = response.await;
    wait_idle(&server).await;
    server.stop().await;
}

async fn ws_connect(
    server: &TestServer,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let addr = server.running.http.unwrap();
    let conn = TcpStream::connect(addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), conn)
        .await
        .unwrap();
    ws
}

/// The close code the server ends the session with.
async fn ws_close_code(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>) -> Option<u16> {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_close_1001_mid_body_is_an_abort_and_1000_a_clean_end() {
    let server = probe_server(30_000).await;
    let mut seen = probe(&server, "/probe");
    let mut ws = ws_connect(&server, "/probe").await;
    ws.send(Message::Binary(Bytes::from_static(&[3u8; 5000])))
        .await
        .unwrap();
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "".into(),
    })))
    .await
    .unwrap();
    assert_eq!(
        next_seen(&mut seen).await,
        Seen::Aborted(AbortReason::ClientGone)
    );
    drop(ws);

    let mut ws = ws_connect(&server, "/probe").await;
    ws.send(Message::Binary(Bytes::from_static(&[3u8; 5000])))
        .await
        .unwrap();
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    })))
    .await
    .unwrap();
    assert_eq!(next_seen(&mut seen).await, Seen::Ended(5000));
    drop(ws);
    wait_idle(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_idle_timeout_aborts_h1_and_closes_a_silent_websocket_with_1008() {
    let server = probe_server(300).await;
    let mut seen = probe(&server, "/probe");

    let mut conn = TcpStream::connect(server.running.http.unwrap())
        .await
        .unwrap();
    conn.write_all(b"POST /probe HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\nabc")
        .await
        .unwrap();
    assert_eq!(
        next_seen(&mut seen).await,
        Seen::Aborted(AbortReason::Timeout)
    );
    assert_eq!(read_status(&mut conn).await, 408);

    let mut ws = ws_connect(&server, "/probe").await;
    ws.send(Message::Binary(Bytes::from_static(b"abc")))
        .await
        .unwrap();
    assert_eq!(
        next_seen(&mut seen).await,
        Seen::Aborted(AbortReason::Timeout)
    );
    assert_eq!(ws_close_code(&mut ws).await, Some(1008));
    drop(ws);
    wait_idle(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_without_host_or_with_two_hosts_gets_400() {
    let server = probe_server(30_000).await;
    let _seen = probe(&server, "/probe");
    let addr = server.running.http.unwrap();
    for (head, status) in [
        (
            &b"POST /probe HTTP/1.1\r\ncontent-length: 0\r\n\r\n"[..],
            400,
        ),
        (
            b"POST /probe HTTP/1.1\r\nhost: a\r\nhost: b\r\ncontent-length: 0\r\n\r\n",
            400,
        ),
        (
            b"POST /probe HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n",
            200,
        ),
    ] {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(head).await.unwrap();
        assert_eq!(
            read_status(&mut conn).await,
            status,
            "{}",
            String::from_utf8_lossy(head)
        );
    }
    wait_idle(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_silent_after_its_head_has_the_response_reset() {
    let server = TestServer::start(|cli| cli.response_idle_timeout_ms = Some(300.into())).await;
    let worker = server
        .running
        .service
        .worker("mute", Route::prefix("/mute"));
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let job = worker.next_job().await;
        let mut out = job
            .respond(http::StatusCode::OK, &Default::default())
            .await
            .unwrap();
        out.send(Bytes::from_static(b"first")).await.unwrap();
        // Then nothing, until the client's response has been reset.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let _ = tx.send(out.send(Bytes::from_static(b"late")).await);
    });
    let mut conn = TcpStream::connect(server.running.http.unwrap())
        .await
        .unwrap();
    conn.write_all(b"POST /mute HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_status(&mut conn).await, 200);
    // The first bytes come, then the connection closes without the chunked
    // body's last chunk: the client can tell the response broke off.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, conn.read_to_end(&mut rest))
        .await
        .expect("the silent response was never reset");
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("first"), "{rest:?}");
    assert!(!rest.ends_with("0\r\n\r\n"), "ended cleanly: {rest:?}");
    let late = tokio::time::timeout(PATIENCE, rx).await.unwrap().unwrap();
    assert!(
        late.is_err(),
        "the worker could still write after the reset"
    );
    wait_idle(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_has_its_response_aborted() {
    // A small window so the worker blocks soon; the bound is the timeout.
    let server = TestServer::start(|cli| {
        cli.response_idle_timeout_ms = Some(300.into());
        cli.slot_size_kb = Some(16);
        cli.slots_per_stream = Some(16);
    })
    .await;
    let worker = server
        .running
        .service
        .worker("flood", Route::prefix("/flood"));
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut job = worker.next_job().await;
        let mut body = job.body();
        while let Some(Ok(_)) = body.chunk().await {}
        let mut out = job
            .respond(http::StatusCode::OK, &Default::default())
            .await
            .unwrap();
        let chunk = Bytes::from(vec![9u8; 16 * 1024]);
        let mut sent = 0u64;
        let err = loop {
            if let Err(e) = out.send(chunk.clone()).await {
                break e;
            }
            sent += chunk.len() as u64;
        };
        let _ = tx.send((sent, err));
    });
    let mut conn = TcpStream::connect(server.running.http.unwrap())
        .await
        .unwrap();
    conn.write_all(b"POST /flood HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    // The client never reads: socket buffers, then the window, fill up.
    let (sent, err) = tokio::time::timeout(PATIENCE, rx).await.unwrap().unwrap();
    assert!(
        matches!(err, upload_response::CoordError::ClientStalled(300)),
        "after {sent} bytes: {err}"
    );
    drop(conn);
    wait_idle(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_past_the_default_per_client_limit_get_429() {
    let server = probe_server(30_000).await;
    let _seen = probe(&server, "/probe");
    let addr = server.running.http.unwrap();
    let url = format!("ws://{addr}/probe");
    let mut sessions = Vec::new();
    for _ in 0..64 {
        let conn = connect_from("127.0.0.2", addr).await;
        sessions.push(tokio_tungstenite::client_async(&url, conn).await.unwrap().0);
    }
    wait_in_flight(&server, 64).await;
    let conn = connect_from("127.0.0.2", addr).await;
    match tokio_tungstenite::client_async(&url, conn).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 429);
            assert!(res.headers().contains_key("retry-after"));
        }
        other => panic!("the 65th session was not refused: {:?}", other.map(|_| ())),
    }
    // Another address is not affected.
    let mut ws = ws_connect(&server, "/probe").await;
    ws.send(Message::Binary(Bytes::new())).await.unwrap();
    assert_eq!(ws_close_code(&mut ws).await, Some(1000));
    drop(sessions);
    wait_idle(&server).await;
    server.stop().await;
}
