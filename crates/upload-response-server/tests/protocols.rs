//! The server end to end, with a real client for each protocol (loadgen's:
//! hyper for HTTP/1.1 and HTTP/2, h3 over quinn, tokio-tungstenite), all
//! over TLS, against the built-in workers. Bytes are checked by sha256.

use loadgen::target::Proto;

const MIB: u64 = 1024 * 1024;

mod common;
use common::TestServer;

/// The default server (built-in workers on) with free loopback ports. The
/// hundred concurrent requests all come from one address, so the per-client
/// limit (default 64, tested in `fairness.rs`) is raised above them.
async fn server() -> TestServer {
    TestServer::start(|cli| {
        cli.builtin_workers = None;
        cli.worker_token = None;
        cli.max_streams_per_client = Some(128);
    })
    .await
}

async fn sha256_upload(proto: Proto) {
    let server = server().await;
    server.check_sha256(proto, "/sha256", 256 * MIB).await;
    server.stop().await;
}

async fn echo_upload(proto: Proto) {
    let server = server().await;
    server.check_echo(proto, "/echo", 64 * MIB).await;
    server.stop().await;
}

async fn hundred_small_requests(proto: Proto) {
    let server = server().await;
    let client = server.tls_client(proto, "/echo");
    let requests = (0..100).map(|_| {
        let client = client.clone();
        async move {
            let mut conn = client.connect().await.unwrap();
            conn.request(1024).await.unwrap()
        }
    });
    let results = futures_util::future::join_all(requests).await;
    for r in &results {
        assert!(r.succeeded(), "{proto}: {r:?}");
        assert_eq!(r.received, 1024);
    }
    server.stop().await;
}

macro_rules! matrix {
    ($($name:ident: $proto:expr;)*) => {
        mod sha256_256mib {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { sha256_upload($proto).await })*
        }
        mod echo_64mib {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { echo_upload($proto).await })*
        }
        mod concurrent_100 {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { hundred_small_requests($proto).await })*
        }
    };
}

matrix! {
    h1: Proto::H1;
    h1_chunked: Proto::H1Chunked;
    h2: Proto::H2;
    h3: Proto::H3;
    wss: Proto::Ws;
}
