//! Limits and lifecycle: parallel uploads on one connection, graceful shutdown,
//! connection limit, slowloris, malformed and oversized requests, body limit, idle
//! timeout, broken response streams, metrics.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use support::client::{self, Conn, Proto};
use support::pattern::{self, MIB64};
use support::{Harness, WAIT, eventually, wsclient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use web_service::{Protocol, Transport};

/// Header timeout of the slowloris tests.
const SHORT_HEADER_TIMEOUT: Duration = Duration::from_millis(300);

async fn parallel_uploads(proto: Proto) {
    let server = Harness::start().await;
    let conn = Conn::connect(proto, &server).await;
    let sha = pattern::sha256_hex(MIB64);
    let uploads = (0..4).map(|_| {
        let (conn, sha) = (conn.clone(), sha.clone());
        async move {
            let mut req =
                client::request("POST", "/sha256", client::streaming(pattern::stream(MIB64)));
            req.headers_mut().insert("x-sha256", sha.parse().unwrap());
            let resp = conn.send(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            client::text(resp.into_body()).await
        }
    });
    let answers = timeout(WAIT * 2, join_all(uploads))
        .await
        .expect("no upload stalled");
    assert!(
        answers.iter().all(|a| *a == format!("ok {MIB64}")),
        "{answers:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_parallel_64mib_uploads_on_one_h2_connection() {
    parallel_uploads(Proto::H2Tls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_parallel_64mib_uploads_on_one_h3_connection() {
    parallel_uploads(Proto::H3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_inflight_requests_and_closes_websocket() {
    let server = Harness::start().await;
    let mut in_flight = Vec::new();
    for proto in [Proto::H1Tls, Proto::H2c, Proto::H3] {
        let conn = Conn::connect(proto, &server).await;
        let (body, open) = client::gated(&conn, &server.gates).await;
        in_flight.push((proto, conn, body, open));
    }
    let mut ws = wsclient::connect(&server, true, "/ws/hold").await;
    assert_eq!(
        wsclient::next_data(&mut ws).await,
        Some(Message::text("held"))
    );

    let http = server.http;
    let stopping = tokio::spawn(server.stop());
    // The WebSocket session is told to go away...
    let close = timeout(WAIT, wsclient::close_frame(&mut ws))
        .await
        .unwrap()
        .expect("close frame");
    assert_eq!(close.code, CloseCode::Away);
    // ...the listener stops accepting...
    let deadline = tokio::time::Instant::now() + WAIT;
    while TcpStream::connect(http).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "listener still accepting"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...while the in-flight requests still complete, on every protocol.
    for (proto, conn, body, open) in in_flight {
        assert!(
            !stopping.is_finished(),
            "shutdown must wait for the {proto:?} request"
        );
        open.send(()).unwrap();
        assert_eq!(
            timeout(WAIT, client::text(body)).await.unwrap(),
            "rest",
            "{proto:?}"
        );
        drop(conn);
    }
    timeout(WAIT, stopping).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_deadline_force_closes_stuck_requests() {
    let server = Harness::start_tweaked(|c| {
        c.drain_timeout = Duration::from_millis(300);
    })
    .await;
    let conn = Conn::connect(Proto::H1, &server).await;
    let (mut body, _never_opened) = client::gated(&conn, &server.gates).await;
    timeout(WAIT, server.stop()).await.unwrap();
    // The connection was closed mid-body: the client sees an error, not a clean end.
    let rest = timeout(WAIT, body.next()).await.unwrap();
    assert!(
        matches!(rest, Some(Err(_))),
        "expected an incomplete body, got {rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_holds() {
    let server = Harness::start_tweaked(|c| {
        c.max_connections = 2;
    })
    .await;
    // Each connection sends its first request at once (before the header timeout).
    let a = Conn::connect(Proto::H1, &server).await;
    client::fetch_pattern(&a, 10).await;
    let b = Conn::connect(Proto::H2Tls, &server).await;
    client::fetch_pattern(&b, 10).await;
    // QUIC has its own limit: two are served while TCP is full, a third is refused
    // at once.
    let mut quic = Vec::new();
    for _ in 0..2 {
        let (conn, endpoint) = client::quic_connect(server.https, &server.cert)
            .await
            .expect("QUIC is not blocked by a full TCP limit");
        quic.push((conn, endpoint));
    }
    let refused = client::quic_connect(server.https, &server.cert).await;
    assert!(
        refused.is_err(),
        "QUIC connection beyond the limit must be refused"
    );
    eventually("both QUIC slots in use", || {
        server.metrics.slots_used(Transport::Quic) == 2
    })
    .await;
    let page = server.metrics.render_prometheus();
    for line in [
        "web_connection_limit{transport=\"tcp\"} 2",
        "web_connection_limit{transport=\"quic\"} 2",
        "web_connection_slots_used{transport=\"tcp\"} 2",
        "web_connection_slots_used{transport=\"quic\"} 2",
    ] {
        assert!(page.contains(line), "{line} missing from:\n{page}");
    }
    // A third TCP connection waits in the backlog: its request is not answered...
    let mut third = TcpStream::connect(server.http).await.unwrap();
    third
        .write_all(b"GET /pattern/3 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let early = timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "served beyond the connection limit: {early:?} {:?} h1={:?}",
        String::from_utf8_lossy(&buf),
        server.metrics.stats(Protocol::Http1),
    );
    assert_eq!(server.metrics.slots_used(Transport::Tcp), 2);
    // ...until a slot frees.
    drop(a);
    let n = timeout(WAIT, third.read(&mut buf)).await.unwrap().unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    drop(b);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_listener_reserves_no_connection_slot() {
    // Regression: each accept loop used to take a slot before `accept`, so the idle
    // cleartext listener kept one of the two slots and the second TLS client hung.
    let server = Harness::start_tweaked(|c| c.max_connections = 2).await;
    let first = Conn::connect(Proto::H2Tls, &server).await;
    client::fetch_pattern(&first, 10).await;
    let second = timeout(WAIT, Conn::connect(Proto::H2Tls, &server))
        .await
        .expect("second slot free");
    client::fetch_pattern(&second, 10).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_closed_after_header_timeout_while_others_are_served() {
    let server = Harness::start_tweaked(|c| c.header_read_timeout = SHORT_HEADER_TIMEOUT).await;
    let mut slow = TcpStream::connect(server.http).await.unwrap();
    slow.write_all(b"GET /pattern/1 HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();
    let mut silent_tls = TcpStream::connect(server.https).await.unwrap();
    let others = async {
        let conn = Conn::connect(Proto::H1, &server).await;
        for _ in 0..5 {
            client::fetch_pattern(&conn, 100).await;
        }
    };
    let (closed, ()) = tokio::join!(timeout(WAIT, trickle_until_closed(&mut slow)), others);
    closed.expect("slowloris connection closed");
    // A client that never starts its TLS handshake is closed too.
    let mut buf = [0u8; 16];
    let n = timeout(WAIT, silent_tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        server
            .metrics
            .header_timeouts
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    server.stop().await;
}

/// Sends one more byte of an unfinished request head every 50 ms until the server
/// answers; it must answer `408` and close the connection.
async fn trickle_until_closed<S>(tcp: &mut S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = [0u8; 256];
    loop {
        if tcp.write_all(b"a").await.is_err() {
            panic!("connection closed without a 408");
        }
        if let Ok(read) = timeout(Duration::from_millis(50), tcp.read(&mut buf)).await {
            let n = read.expect("a 408 before the close");
            let mut answer = buf[..n].to_vec();
            let _ = timeout(WAIT, tcp.read_to_end(&mut answer))
                .await
                .expect("closed");
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_second_head_on_keep_alive_connection_is_closed() {
    let server = Harness::start_tweaked(|c| c.header_read_timeout = SHORT_HEADER_TIMEOUT).await;
    let mut tcp = TcpStream::connect(server.http).await.unwrap();
    client::raw_get_ok(&mut tcp).await;
    tcp.write_all(b"GET /pattern/3 HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();
    timeout(WAIT, trickle_until_closed(&mut tcp))
        .await
        .expect("slow head closed after the header timeout");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_second_head_on_tls_keep_alive_connection_gets_408() {
    let server = Harness::start_tweaked(|c| c.header_read_timeout = SHORT_HEADER_TIMEOUT).await;
    let mut tls = client::tls_connect(server.https, &server.cert, &[b"http/1.1"]).await;
    tls.write_all(b"GET /pattern/3 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.ends_with(b"0\r\n\r\n") {
        let n = timeout(WAIT, tls.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed mid-response");
        head.extend_from_slice(&buf[..n]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"));
    tls.write_all(b"GET /pattern/3 HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    timeout(WAIT, trickle_until_closed(&mut tls))
        .await
        .expect("slow head closed after the header timeout");
    assert!(started.elapsed() >= SHORT_HEADER_TIMEOUT);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_outlives_the_header_timeout() {
    let server = Harness::start_tweaked(|c| c.header_read_timeout = SHORT_HEADER_TIMEOUT).await;
    let mut tcp = TcpStream::connect(server.http).await.unwrap();
    for _ in 0..2 {
        client::raw_get_ok(&mut tcp).await;
        // Idle for longer than the 300 ms header timeout, shorter than the 10 s idle one.
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_gets_400_and_server_keeps_serving() {
    let server = Harness::start().await;
    let answer =
        client::raw_exchange(server.http, b"GET /\x01bad HTTP/1.1\r\nhost x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    let answer = client::raw_exchange(
        server.http,
        b"GET /pattern/3 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_head_gets_431_on_every_protocol() {
    let server = Harness::start_tweaked(|c| {
        c.max_header_bytes = 16 * 1024;
    })
    .await;
    let raw = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let answer = client::raw_exchange(server.http, raw.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    for proto in [Proto::H2c, Proto::H3] {
        let conn = Conn::connect(proto, &server).await;
        let mut req = client::request("GET", "/pattern/1", client::empty());
        req.headers_mut()
            .insert("x-big", "a".repeat(20 * 1024).parse().unwrap());
        match conn.send(req).await {
            Ok(resp) => assert_eq!(resp.status(), 431, "{proto:?}"),
            // The h3 client refuses on its own once the server's SETTINGS (with
            // max_field_section_size) arrived first: the limit was advertised.
            Err(e) => assert!(
                proto == Proto::H3 && format!("{e:?}").contains("HeaderTooBig"),
                "{e:?}"
            ),
        }
        // Only that request was refused: the connection goes on.
        client::fetch_pattern(&conn, 10).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_limit_answers_413_with_and_without_content_length() {
    let server = Harness::start_tweaked(|c| {
        c.max_body_bytes = Some(1024 * 1024);
    })
    .await;
    for proto in [Proto::H2c, Proto::H3] {
        let conn = Conn::connect(proto, &server).await;
        // Announced: refused before the handler runs.
        let mut req = client::request(
            "POST",
            "/sha256",
            client::streaming(pattern::stream(2 << 20)),
        );
        req.headers_mut()
            .insert(http::header::CONTENT_LENGTH, (2u64 << 20).into());
        let resp = conn.send(req).await.unwrap();
        assert_eq!(resp.status(), 413, "{proto:?} with content-length");
        // Streamed without a length: the body type stops at the limit.
        let req = client::request(
            "POST",
            "/sha256",
            client::streaming(pattern::stream(2 << 20)),
        );
        let resp = conn.send(req).await.unwrap();
        assert_eq!(resp.status(), 413, "{proto:?} streamed");
        // Within the limit: served.
        let mut req = client::request("POST", "/sha256", client::streaming(pattern::stream(1000)));
        req.headers_mut()
            .insert("x-sha256", pattern::sha256_hex(1000).parse().unwrap());
        assert_eq!(conn.send(req).await.unwrap().status(), 200);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_is_closed() {
    let server = Harness::start_tweaked(|c| {
        c.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let mut tcp = TcpStream::connect(server.http).await.unwrap();
    tcp.write_all(b"GET /pattern/3 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    timeout(WAIT, tcp.read_to_end(&mut out))
        .await
        .expect("idle connection closed")
        .unwrap();
    assert!(out.starts_with(b"HTTP/1.1 200"));
    server.stop().await;
}

async fn broken_stream(proto: Proto) {
    let server = Harness::start().await;
    let conn = Conn::connect(proto, &server).await;
    // The failure may even overtake the response head (the connection or stream is
    // gone before the client read it): that is incomplete too.
    let saw_error = match conn
        .send(client::request("GET", "/broken", client::empty()))
        .await
    {
        Err(_) => true,
        Ok(resp) => {
            let mut body = resp.into_body();
            let mut failed = false;
            while let Some(chunk) = timeout(WAIT, body.next()).await.unwrap() {
                if chunk.is_err() {
                    failed = true;
                    break;
                }
            }
            failed
        }
    };
    assert!(saw_error, "{proto:?}: a failed body must not look complete");
    if proto != Proto::H1 {
        // Only the stream was reset: the connection serves the next request.
        client::fetch_pattern(&conn, 10).await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_response_body_is_visible_on_every_protocol() {
    for proto in [Proto::H1, Proto::H2c, Proto::H3] {
        broken_stream(proto).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_connections_and_requests_per_protocol() {
    let server = Harness::start().await;
    for proto in [Proto::H1, Proto::H2Tls, Proto::H3] {
        let conn = Conn::connect(proto, &server).await;
        let resp = conn
            .send(client::request("GET", "/pattern/10", client::empty()))
            .await
            .unwrap();
        assert_eq!(resp.headers().contains_key("alt-svc"), proto != Proto::H1);
        client::digest(resp.into_body()).await;
    }
    let m = server.metrics.clone();
    eventually("requests finished", || {
        [Protocol::Http1, Protocol::Http2, Protocol::Http3]
            .iter()
            .all(|p| {
                let s = m.stats(*p);
                s.requests_total == 1 && s.requests_active == 0 && s.connections_total == 1
            })
    })
    .await;
    let text = m.render_prometheus();
    assert!(
        text.contains("web_requests_total{protocol=\"http3\"} 1"),
        "{text}"
    );
    server.stop().await;
}
