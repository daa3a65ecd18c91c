//! Shared by the integration tests: a test server with a test handler, and real
//! clients for every protocol (hyper, h3 + quinn, tokio-tungstenite).
#![allow(dead_code)]

pub mod client;
pub mod handler;
pub mod pattern;
pub mod wsclient;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use tokio::task::JoinHandle;
use web_service::{Listen, Metrics, Server, ServerConfig, ShutdownHandle, TlsIdentity};

pub use handler::Gates;

/// Every bounded wait in the tests; generous because the machine is shared.
pub const WAIT: Duration = Duration::from_secs(60);

/// A running server with the test handler.
pub struct Harness {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub cert: CertificateDer<'static>,
    pub gates: Gates,
    pub metrics: Arc<Metrics>,
    pub shutdown: ShutdownHandle,
    pub task: JoinHandle<()>,
}

/// A directory for certificates, shared by all tests (generated once, reused).
pub fn cert_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-service-certs")
}

fn identity() -> TlsIdentity {
    // Tests of one binary run in parallel: load (or generate) the pair once.
    static IDENTITY: OnceLock<TlsIdentity> = OnceLock::new();
    IDENTITY
        .get_or_init(|| {
            TlsIdentity::self_signed_in(cert_dir())
                .expect("self-signed certificate")
                .identity
        })
        .clone()
}

/// Small timeouts so lifecycle tests finish quickly, with room for a loaded machine:
/// 2 s between a client's connect and its first request (the slowloris tests shorten
/// it to 300 ms), and an idle timeout no test reaches by accident (a test stalled on
/// a busy CI machine once took 10 s, idling out a connection it still needed).
pub fn test_config() -> ServerConfig {
    ServerConfig {
        header_read_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    }
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(test_config()).await
    }

    /// Starts with [`test_config`] changed by `tweak`.
    pub async fn start_tweaked(tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut config = test_config();
        tweak(&mut config);
        Self::start_with(config).await
    }

    pub async fn start_with(config: ServerConfig) -> Self {
        let gates = Gates::default();
        Self::serve(config, handler::service(gates.clone()), gates).await
    }

    /// Serves any handler (an axum `Router`, `StaticFiles`, ...).
    pub async fn serve<S, B>(config: ServerConfig, handler: S, gates: Gates) -> Self
    where
        S: tower::Service<http::Request<web_service::Body>, Response = http::Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<web_service::BoxError>,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<web_service::BoxError>,
    {
        // `RUST_LOG=web_service=debug cargo test ...` shows the server's spans and events.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let tls = identity();
        let cert = tls.certs()[0].clone();
        let listen = Listen {
            http: Some("127.0.0.1:0".parse().unwrap()),
            https: Some(("127.0.0.1:0".parse().unwrap(), tls)),
        };
        let server = Server::bind(config, listen).await.expect("bind");
        let (http, https) = (server.http_addr().unwrap(), server.https_addr().unwrap());
        let (metrics, shutdown) = (server.metrics(), server.shutdown_handle());
        let task = tokio::spawn(async move {
            server
                .serve(handler, std::future::pending())
                .await
                .expect("serve");
        });
        Self {
            http,
            https,
            cert,
            gates,
            metrics,
            shutdown,
            task,
        }
    }

    /// Starts the graceful shutdown and waits for `serve` to return.
    pub async fn stop(self) {
        self.shutdown.shutdown();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("shutdown finished in time")
            .unwrap();
    }
}

/// Polls `cond` every 10 ms until it holds, failing after [`WAIT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
