//! 4096 concurrent idle keep-alive connections are held, and the server still serves.
//! Prints the process's resident memory per idle connection (client and server
//! sides both live in this process, so it is an upper bound for the server).

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use support::client::{self, Conn, Proto};
use support::{Harness, WAIT, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use web_service::{Protocol, ServerConfig};

const IDLE: usize = 4096;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn idle_connection(addr: std::net::SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    client::raw_get_ok(&mut tcp).await;
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_4096_idle_connections_and_keeps_serving() {
    // Both ends of every connection are in this process: two descriptors each.
    let wanted = (IDLE as u64) * 2 + 512;
    let limit = rlimit::increase_nofile_limit(wanted).expect("raise RLIMIT_NOFILE");
    assert!(
        limit >= wanted,
        "RLIMIT_NOFILE is {limit}, this test needs {wanted}"
    );
    let config = ServerConfig {
        max_connections: IDLE + 16,
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(120),
        ..support::test_config()
    };
    let server = Harness::start_with(config).await;
    let before = rss_kib();
    let started = std::time::Instant::now();
    let mut held = Vec::with_capacity(IDLE);
    // Batches of 64: bursts of hundreds of SYNs at once get some dropped by the
    // kernel and retried after 1 s, which only slows the test down.
    for _ in 0..IDLE / 64 {
        let batch = (0..64).map(|_| idle_connection(server.http));
        held.extend(
            timeout(WAIT, join_all(batch))
                .await
                .expect("connections opened"),
        );
    }
    eprintln!("opened {IDLE} connections in {:?}", started.elapsed());
    let m = server.metrics.clone();
    eventually("all idle connections counted", || {
        m.stats(Protocol::Http1).connections_active == IDLE as u64
    })
    .await;
    let after = rss_kib();
    eprintln!(
        "{IDLE} idle connections: RSS {before} KiB -> {after} KiB, {:.1} KiB per connection (client + server)",
        after.saturating_sub(before) as f64 / IDLE as f64
    );

    // Still serving, over a new connection of another protocol.
    let conn = Conn::connect(Proto::H2c, &server).await;
    client::fetch_pattern(&conn, 100).await;
    // And every idle connection is still open and usable.
    for tcp in held.iter_mut().step_by(512) {
        tcp.write_all(b"GET /pattern/1 HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let n = timeout(WAIT, tcp.read(&mut buf)).await.unwrap().unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    drop(held);
    server.stop().await;
}
