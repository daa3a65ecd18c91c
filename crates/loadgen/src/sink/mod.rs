//! Bare reference servers: hyper (H1 + H2, TLS by ALPN, h2c in cleartext), h3 +
//! quinn on the TLS port number over UDP, WebSocket by HTTP/1.1 upgrade on
//! either TCP port. Nothing but the libraries and their window settings.
//!
//! Contract (shared with the project's `bench_sink` example):
//! * `POST /discard…` reads and drops the body, answers `200 text/plain`
//!   `<byte count>\n`;
//! * `POST /echo…` streams the body back as it arrives;
//! * a WebSocket on `/ws…` reads binary messages until an empty one or a Close,
//!   then sends one text message `<byte count>` and closes with 1000.

mod h3;
mod http;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result};
use crate::net;
use crate::tls::{self, CertFiles};

/// Where a sink listens and keeps its certificate.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Directory for `cert.pem` / `key.pem` (generated when missing).
    pub dir: PathBuf,
    /// Cleartext HTTP/1.1 + h2c (+ `ws://`) listener; port 0 picks one.
    pub http: SocketAddr,
    /// TLS TCP listener; QUIC binds the same port number over UDP.
    pub https: SocketAddr,
}

impl SinkOptions {
    /// Both listeners on loopback with ports picked by the system.
    pub fn loopback(dir: impl Into<PathBuf>) -> Self {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            dir: dir.into(),
            http: any_port,
            https: any_port,
        }
    }
}

/// A running sink; dropping it stops the listeners.
pub struct Sink {
    http: SocketAddr,
    https: SocketAddr,
    cert: CertFiles,
    endpoint: quinn::Endpoint,
    tasks: Vec<JoinHandle<()>>,
}

/// How often to retry when the UDP twin of a system-picked TCP port is taken.
const PORT_ATTEMPTS: usize = 16;

impl Sink {
    /// Binds every listener and starts serving on the current tokio runtime.
    pub async fn start(options: &SinkOptions) -> Result<Self> {
        let cert = tls::ensure_self_signed(&options.dir)?;
        let tcp_tls = tls::server_config(&cert, &[tls::ALPN_H2, tls::ALPN_HTTP11])?;
        let quic_tls = tls::server_config(&cert, &[tls::ALPN_H3])?;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(quic_tls)
            .map_err(|e| Error::QuicTls(e.to_string()))?;
        let mut quic_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        quic_config.transport_config(Arc::new(net::quic_transport()));

        let http_listener = TcpListener::bind(options.http)
            .await
            .map_err(Error::io(format!("bind {}", options.http)))?;
        let (https_listener, udp) = bind_twins(options.https).await?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(quic_config),
            udp,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(Error::io("QUIC endpoint"))?;

        let http = http_listener
            .local_addr()
            .map_err(Error::io("local address"))?;
        let https = https_listener
            .local_addr()
            .map_err(Error::io("local address"))?;
        let acceptor = TlsAcceptor::from(Arc::new(tcp_tls));
        let tasks = vec![
            tokio::spawn(http::accept_loop(http_listener, None)),
            tokio::spawn(http::accept_loop(https_listener, Some(acceptor))),
            tokio::spawn(h3::accept_loop(endpoint.clone())),
        ];
        Ok(Self {
            http,
            https,
            cert,
            endpoint,
            tasks,
        })
    }

    /// Address of the cleartext listener.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// Address of the TLS listener (TCP) and of QUIC (UDP).
    pub fn https_addr(&self) -> SocketAddr {
        self.https
    }

    /// The certificate clients must trust.
    pub fn cert(&self) -> &CertFiles {
        &self.cert
    }

    /// The line a harness waits for: `READY http=ADDR https=ADDR`.
    pub fn ready_line(&self) -> String {
        format!("READY http={} https={}", self.http, self.https)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.endpoint
            .close(quinn::VarInt::from_u32(0), b"sink stopped");
    }
}

/// Binds a TCP listener and a UDP socket on the same port number.
async fn bind_twins(addr: SocketAddr) -> Result<(TcpListener, std::net::UdpSocket)> {
    let attempts = if addr.port() == 0 { PORT_ATTEMPTS } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(Error::io(format!("bind {addr}")))?;
        let bound = listener.local_addr().map_err(Error::io("local address"))?;
        match net::udp_socket(bound) {
            Ok(udp) => return Ok((listener, udp)),
            Err(Error::Io { source, context }) if source.kind() == ErrorKind::AddrInUse => {
                last = Some(Error::Io { source, context });
            }
            Err(other) => return Err(other),
        }
    }
    Err(last.unwrap_or_else(|| Error::Argument(format!("cannot bind {addr}"))))
}
