//! Issue 17: slowloris on HTTP/2 and HTTP/3 (HTTP/1.1 is in lifecycle.rs). Raw
//! clients on loopback: h2c frames written by hand, QUIC streams opened with quinn.
//! Trickled or never-finished heads are cut at the header timeout, connections that
//! only ping are closed at the idle timeout, and other clients are served meanwhile.

mod support;

use std::time::{Duration, Instant};

use support::client::{self, Conn, Proto};
use support::{Harness, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const HEADER_TIMEOUT: Duration = Duration::from_millis(500);
const IDLE_TIMEOUT: Duration = Duration::from_millis(500);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
/// HPACK, static table only: `GET`, `http`, `/`, `:authority: x`.
const GET_ROOT: &[u8] = &[0x82, 0x86, 0x84, 0x41, 0x01, b'x'];

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Reads one frame: `(type, flags, stream, payload)`; `None` once the server closed.
async fn read_frame(tcp: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    tcp.read_exact(&mut head).await.ok()?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0; len];
    tcp.read_exact(&mut payload).await.ok()?;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Some((head[3], head[4], stream, payload))
}

/// An h2c connection that has had one complete request (`GET /`) answered.
async fn h2c_after_one_request(server: &Harness) -> TcpStream {
    let mut tcp = TcpStream::connect(server.http).await.unwrap();
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    hello.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, GET_ROOT));
    tcp.write_all(&hello).await.unwrap();
    loop {
        let (kind, flags, stream, _) = timeout(WAIT, read_frame(&mut tcp))
            .await
            .unwrap()
            .expect("response to the first request");
        if kind == SETTINGS && flags & ACK == 0 {
            tcp.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
        }
        if stream == 1 && flags & END_STREAM != 0 {
            return tcp;
        }
    }
}

/// Runs `step` every 50 ms until the server closes `tcp`; returns the frame types seen.
async fn until_closed(tcp: &mut TcpStream, mut step: impl FnMut() -> Vec<u8>) -> Vec<u8> {
    let mut seen = Vec::new();
    loop {
        match timeout(Duration::from_millis(50), read_frame(tcp)).await {
            Ok(Some((kind, ..))) => seen.push(kind),
            Ok(None) => return seen,
            Err(_) => {
                if tcp.write_all(&step()).await.is_err() {
                    return seen;
                }
            }
        }
    }
}

async fn others_are_served(server: &Harness, proto: Proto, stop: &tokio::sync::Notify) {
    let conn = Conn::connect(proto, server).await;
    loop {
        client::fetch_pattern(&conn, 1000).await;
        if timeout(Duration::from_millis(50), stop.notified())
            .await
            .is_ok()
        {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_trickled_or_unfinished_header_block_is_cut_at_the_header_timeout() {
    let server = Harness::start_tweaked(|c| c.header_read_timeout = HEADER_TIMEOUT).await;
    let stop = tokio::sync::Notify::new();
    let slow = async {
        // A second request whose HEADERS frame (200 bytes announced) arrives one byte
        // every 50 ms, and one whose HEADERS frame header stops half-way. (Trickling
        // tiny CONTINUATION frames instead meets h2's own guard: GOAWAY
        // ENHANCE_YOUR_CALM after a few.)
        let mut trickled = h2c_after_one_request(&server).await;
        let mut unfinished = h2c_after_one_request(&server).await;
        let started = Instant::now();
        trickled
            .write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x90; 200])[..9 + 6])
            .await
            .unwrap();
        unfinished
            .write_all(&frame(HEADERS, END_HEADERS, 3, GET_ROOT)[..5])
            .await
            .unwrap();
        let cut = async {
            // `accept-encoding: gzip, deflate` (static index 16), again and again.
            until_closed(&mut trickled, || vec![0x90]).await;
            let never = until_closed(&mut unfinished, Vec::new).await;
            assert!(!never.contains(&HEADERS), "no answer to an unfinished head");
        };
        timeout(WAIT, cut).await.expect("both cut");
        assert!(started.elapsed() >= HEADER_TIMEOUT);
        stop.notify_one();
    };
    tokio::join!(slow, others_are_served(&server, Proto::H2c, &stop));
    assert!(header_timeouts(&server) >= 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_connection_sending_only_pings_is_closed_at_the_idle_timeout() {
    let server = Harness::start_tweaked(|c| c.idle_timeout = IDLE_TIMEOUT).await;
    let mut tcp = h2c_after_one_request(&server).await;
    let started = Instant::now();
    // The client does not acknowledge the server's PINGs either: hyper's GOAWAY would
    // wait 40 s for that, the server drops the idle connection a header timeout later.
    let seen = timeout(WAIT, until_closed(&mut tcp, || frame(PING, 0, 0, &[7; 8])))
        .await
        .expect("closed while pinging");
    assert!(started.elapsed() >= IDLE_TIMEOUT);
    assert!(seen.contains(&PING), "the server answered the PINGs");
    assert!(seen.contains(&GOAWAY), "closed with GOAWAY: {seen:?}");
    server.stop().await;
}

/// Waits until the server stops or ends the QUIC request stream without answering.
async fn stream_dropped(send: &mut quinn::SendStream, recv: &mut quinn::RecvStream) {
    tokio::select! {
        _ = send.stopped() => {}
        r = recv.read_to_end(1024) => {
            assert!(r.map_or(true, |body| body.is_empty()), "no response expected");
        }
    }
}

/// Heads cut by the header timeout so far, on every protocol.
fn header_timeouts(server: &Harness) -> u64 {
    server
        .metrics
        .header_timeouts
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// `n` request streams on `quic` that carry one byte of a HEADERS frame, then nothing.
async fn headless_streams(
    quic: &quinn::Connection,
    n: usize,
) -> Vec<(quinn::SendStream, quinn::RecvStream)> {
    let mut streams = Vec::new();
    for _ in 0..n {
        let (mut send, recv) = quic.open_bi().await.unwrap();
        send.write_all(&[HEADERS]).await.unwrap();
        streams.push((send, recv));
    }
    streams
}

async fn pinging_quic(server: &Harness) -> (quinn::Connection, quinn::Endpoint) {
    client::quic_connect_pinging(server.https, &server.cert, Some(Duration::from_millis(50)))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_trickled_or_unfinished_heads_are_cut_at_the_header_timeout() {
    let server = Harness::start_tweaked(|c| c.header_read_timeout = HEADER_TIMEOUT).await;
    let stop = tokio::sync::Notify::new();
    let slow = async {
        let (quic, _endpoint) = pinging_quic(&server).await;
        let started = Instant::now();
        // A HEADERS frame announcing 4095 bytes, then one more byte every 50 ms.
        let (mut trickled, _t_recv) = quic.open_bi().await.unwrap();
        trickled.write_all(&[HEADERS, 0x4f, 0xff]).await.unwrap();
        // Only the frame type, then nothing.
        let (mut u_send, mut u_recv) = quic.open_bi().await.unwrap();
        u_send.write_all(&[HEADERS]).await.unwrap();
        let trickle = async {
            // Writing fails once the server has stopped the stream (STOP_SENDING).
            while trickled.write_all(&[0x82]).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        timeout(WAIT, trickle).await.expect("trickled head cut");
        timeout(WAIT, stream_dropped(&mut u_send, &mut u_recv))
            .await
            .expect("unfinished head cut");
        assert!(started.elapsed() >= HEADER_TIMEOUT);
        // The connection itself goes on: a full request on it is answered.
        let (mut send, mut recv) = quic.open_bi().await.unwrap();
        send.write_all(&frame_h3_get_root()).await.unwrap();
        send.finish().unwrap();
        let answer = timeout(WAIT, recv.read_to_end(64 * 1024))
            .await
            .unwrap()
            .unwrap();
        assert!(!answer.is_empty(), "the next request is answered");
        stop.notify_one();
    };
    tokio::join!(slow, others_are_served(&server, Proto::H3, &stop));
    assert!(header_timeouts(&server) >= 2);
    server.stop().await;
}

/// An HTTP/3 `GET /` request stream's bytes: one HEADERS frame (QPACK, static table
/// only: required insert count 0, base 0, then `:method GET`, `:scheme https`,
/// `:path /`, `:authority x` with a literal value).
fn frame_h3_get_root() -> Vec<u8> {
    let block = [0x00, 0x00, 0xd1, 0xd7, 0xc1, 0x50, 0x01, b'x'];
    let mut f = vec![HEADERS, block.len() as u8];
    f.extend_from_slice(&block);
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_pinging_connections_are_closed_at_the_idle_timeout_despite_headless_streams() {
    // A header timeout no test reaches: only the idle timeout can close them.
    let server = Harness::start_tweaked(|c| {
        c.header_read_timeout = Duration::from_secs(600);
        c.idle_timeout = IDLE_TIMEOUT;
    })
    .await;
    let (bare, _e1) = pinging_quic(&server).await;
    let (headless, _e2) = pinging_quic(&server).await;
    let _streams = headless_streams(&headless, 4).await;
    let started = Instant::now();
    for quic in [&bare, &headless] {
        let reason = timeout(WAIT, quic.closed())
            .await
            .expect("closed while pinging");
        assert!(
            matches!(reason, quinn::ConnectionError::ApplicationClosed(_)),
            "closed by the server: {reason:?}"
        );
    }
    assert!(started.elapsed() >= IDLE_TIMEOUT);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_headless_streams_of_a_pinging_client_are_cut_with_the_default_header_timeout() {
    // The case with the defaults (10 s header timeout, 60 s idle): streams
    // that carry one byte of a HEADERS frame while the client pings.
    let server = Harness::start_with(web_service::ServerConfig::default()).await;
    let (quic, _endpoint) = pinging_quic(&server).await;
    let started = Instant::now();
    let mut streams = headless_streams(&quic, 4).await;
    for (send, recv) in &mut streams {
        timeout(WAIT, stream_dropped(send, recv))
            .await
            .expect("headless stream cut");
    }
    assert!(started.elapsed() >= web_service::ServerConfig::default().header_read_timeout);
    assert!(header_timeouts(&server) >= 4);
    server.stop().await;
}
