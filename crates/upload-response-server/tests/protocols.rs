//! The server end to end, with a real client for each protocol (loadgen's:
//! hyper for HTTP/1.1 and HTTP/2, h3 over quinn, tokio-tungstenite), all
//! over TLS, against the built-in workers. Bytes are checked by sha256.

use std::path::PathBuf;

use loadgen::clients::{Client, UploadOptions};
use loadgen::source::Pattern;
use loadgen::target::Proto;
use sha2::{Digest, Sha256};
use upload_response_server::{Cli, Running, Settings, start};

const MIB: u64 = 1024 * 1024;

struct Server {
    running: Running,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cli = Cli {
            http: Some("127.0.0.1:0".into()),
            https: Some("127.0.0.1:0".into()),
            worker_api: Some("127.0.0.1:0".into()),
            data_dir: Some(dir.path().to_path_buf()),
            ..Cli::default()
        };
        let running = start(Settings::resolve(cli).unwrap()).await.unwrap();
        Self { running, _dir: dir }
    }

    fn ca(&self) -> PathBuf {
        self.running.cert_path.clone().unwrap()
    }

    fn client(&self, proto: Proto, path: &str) -> Client {
        let port = self.running.https.unwrap().port();
        let scheme = if proto == Proto::Ws { "wss" } else { "https" };
        Client::new(
            proto,
            &format!("{scheme}://localhost:{port}{path}"),
            Some(&self.ca()),
        )
        .unwrap()
    }

    async fn stop(self) {
        assert_eq!(
            self.running.service.in_flight(),
            0,
            "requests left in flight"
        );
        self.running.shutdown();
        self.running.wait().await.unwrap();
    }
}

/// The sha256 of the body loadgen sends for these options.
fn pattern_digest(options: &UploadOptions) -> String {
    let mut h = Sha256::new();
    for chunk in Pattern::new(options.chunk).chunks(options.bytes) {
        h.update(&chunk);
    }
    hex::encode(h.finalize())
}

async fn sha256_upload(proto: Proto) {
    let server = Server::start().await;
    let options = UploadOptions {
        bytes: 256 * MIB,
        ..UploadOptions::default()
    };
    let result = server
        .client(proto, "/sha256")
        .upload(&options)
        .await
        .unwrap();
    assert!(result.succeeded(), "{proto}: {result:?}");
    assert_eq!(
        result.body_text(),
        format!("{} {}\n", pattern_digest(&options), options.bytes),
        "{proto}: wrong digest"
    );
    server.stop().await;
}

async fn echo_upload(proto: Proto) {
    let server = Server::start().await;
    let options = UploadOptions {
        bytes: 64 * MIB,
        keep_body: 64 * MIB as usize,
        ..UploadOptions::default()
    };
    let result = server
        .client(proto, "/echo")
        .upload(&options)
        .await
        .unwrap();
    assert!(
        result.succeeded(),
        "{proto}: status {} close {:?}",
        result.status,
        result.close_code
    );
    assert_eq!(result.received, options.bytes, "{proto}: echo length");
    assert_eq!(
        hex::encode(Sha256::digest(&result.body)),
        pattern_digest(&options),
        "{proto}: echo bytes"
    );
    server.stop().await;
}

async fn hundred_small_requests(proto: Proto) {
    let server = Server::start().await;
    let client = server.client(proto, "/echo");
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
