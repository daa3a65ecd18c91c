//! What the end-to-end test files share: a server on loopback ports, the
//! digest of loadgen's body pattern, and the SigV4 streaming chain
//! ([`sigv4`]).

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod sigv4;

use loadgen::clients::{Client, UploadOptions};
use loadgen::source::Pattern;
use loadgen::target::Proto;
use sha2::{Digest, Sha256};
use upload_response_server::{Cli, Running, Settings, start};

/// The worker token of the test servers.
pub const TOKEN: &str = "test-worker-token";

/// A running server and its data directory.
pub struct TestServer {
    pub running: Running,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Every listener on a free loopback port, the token [`TOKEN`], no
    /// built-in workers; `tweak` changes any of it.
    pub async fn start(tweak: impl FnOnce(&mut Cli)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cli = Cli {
            http: Some("127.0.0.1:0".into()),
            https: Some("127.0.0.1:0".into()),
            worker_api: Some("127.0.0.1:0".into()),
            worker_token: Some(TOKEN.into()),
            builtin_workers: Some("none".into()),
            data_dir: Some(dir.path().to_path_buf()),
            ..Cli::default()
        };
        tweak(&mut cli);
        let running = start(Settings::resolve(cli).unwrap()).await.unwrap();
        Self { running, _dir: dir }
    }

    /// A loadgen client of `proto` over TLS (`wss://` for WebSocket).
    pub fn tls_client(&self, proto: Proto, path: &str) -> Client {
        let port = self.running.https.unwrap().port();
        let scheme = if proto == Proto::Ws { "wss" } else { "https" };
        let url = format!("{scheme}://localhost:{port}{path}");
        Client::new(proto, &url, self.running.cert_path.as_deref()).unwrap()
    }

    /// A loadgen HTTP/1.1 client over cleartext.
    pub fn h1_client(&self, path: &str) -> Client {
        let url = format!("http://{}{path}", self.running.http.unwrap());
        Client::new(Proto::H1, &url, None).unwrap()
    }

    /// The worker API origin, `http://host:port`.
    pub fn worker_origin(&self) -> String {
        format!("http://{}", self.running.worker_api.unwrap())
    }

    /// Uploads `bytes` over `proto` to a sha256 worker at `path` and checks
    /// its answer `<hex sha256> <count>\n`.
    pub async fn check_sha256(&self, proto: Proto, path: &str, bytes: u64) {
        let options = UploadOptions {
            bytes,
            ..UploadOptions::default()
        };
        let result = self.tls_client(proto, path).upload(&options).await.unwrap();
        assert!(result.succeeded(), "{proto}: {result:?}");
        assert_eq!(
            result.body_text(),
            format!("{} {bytes}\n", pattern_digest(&options)),
            "{proto}: wrong digest"
        );
    }

    /// Uploads `bytes` over `proto` to an echo worker at `path` and checks
    /// that the same bytes came back.
    pub async fn check_echo(&self, proto: Proto, path: &str, bytes: u64) {
        let options = UploadOptions {
            bytes,
            keep_body: bytes as usize,
            ..UploadOptions::default()
        };
        let result = self.tls_client(proto, path).upload(&options).await.unwrap();
        assert!(
            result.succeeded(),
            "{proto}: status {} close {:?}",
            result.status,
            result.close_code
        );
        assert_eq!(result.received, bytes, "{proto}: echo length");
        assert_eq!(
            hex::encode(Sha256::digest(&result.body)),
            pattern_digest(&options),
            "{proto}: echo bytes"
        );
    }

    /// Checks nothing is left in flight, then shuts down gracefully.
    pub async fn stop(self) {
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
pub fn pattern_digest(options: &UploadOptions) -> String {
    let mut h = Sha256::new();
    for chunk in Pattern::new(options.chunk).chunks(options.bytes) {
        h.update(&chunk);
    }
    hex::encode(h.finalize())
}
