//! Binding listeners and running them until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

use crate::body::{Body, BoxError};
use crate::config::ServerConfig;
use crate::conn::{Handler, Shared};
use crate::metrics::Metrics;
use crate::shutdown::{Lifecycle, ShutdownHandle};
use crate::tls::{TlsIdentity, TlsReloader};
use crate::{Error, h1h2, h3};

/// What to listen on.
#[derive(Debug, Clone, Default)]
pub struct Listen {
    /// Cleartext TCP: HTTP/1.1, h2c (prior knowledge) and `ws://`.
    pub http: Option<SocketAddr>,
    /// TLS over TCP (HTTP/1.1, HTTP/2, `wss://`) and HTTP/3 on the same UDP port.
    pub https: Option<(SocketAddr, TlsIdentity)>,
}

/// Bound listeners, ready to serve one handler on every protocol.
pub struct Server {
    shared: Arc<Shared>,
    http: Option<TcpListener>,
    https: Option<(TcpListener, TlsAcceptor, quinn::Endpoint)>,
    tls_reloader: Option<TlsReloader>,
}

impl Server {
    /// Binds every listener of `listen`; the QUIC socket takes the TLS listener's port.
    pub async fn bind(config: ServerConfig, listen: Listen) -> Result<Self, Error> {
        let http = match listen.http {
            Some(addr) => Some(bind_tcp(addr).await?),
            None => None,
        };
        let (mut alt_svc, mut tls_reloader) = (None, None);
        let https = match listen.https {
            Some((addr, identity)) => {
                let (tcp, bound, quic) = bind_tcp_and_quic(addr, &identity, &config).await?;
                alt_svc =
                    HeaderValue::from_str(&format!("h3=\":{}\"; ma=86400", bound.port())).ok();
                tls_reloader = Some(identity.reloader()?);
                Some((tcp, TlsAcceptor::from(identity.tcp_config()?), quic))
            }
            None => None,
        };
        let metrics = Arc::new(Metrics::default());
        metrics.set_slot_limit(config.max_connections);
        let shared = Arc::new(Shared {
            config,
            metrics,
            lifecycle: Lifecycle::default(),
            alt_svc,
        });
        Ok(Self {
            shared,
            http,
            https,
            tls_reloader,
        })
    }

    /// Replaces the TLS listener's certificate (TCP and QUIC) without a
    /// restart; `None` without a TLS listener.
    pub fn tls_reloader(&self) -> Option<TlsReloader> {
        self.tls_reloader.clone()
    }

    /// Address of the cleartext listener.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Address of the TLS listener (the QUIC endpoint has the same port).
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https
            .as_ref()
            .and_then(|(l, _, _)| l.local_addr().ok())
    }

    /// The server's counters (render them with [`Metrics::render_prometheus`]).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// A handle that starts the graceful shutdown from anywhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shared.lifecycle.handle()
    }

    /// Serves `handler` on every listener until `signal` completes or a
    /// [`ShutdownHandle`] fires; then stops accepting, sends GOAWAY / closes idle
    /// connections, waits for in-flight requests and tracked WebSocket sessions up to
    /// `drain_timeout` and closes the rest by force.
    pub async fn serve<S, B>(
        self,
        handler: S,
        signal: impl Future<Output = ()>,
    ) -> Result<(), Error>
    where
        S: Service<Request<Body>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let handler: Handler = BoxCloneSyncService::new(
            handler
                .map_response(|r| r.map(Body::new))
                .map_err(Into::into),
        );
        let shared = self.shared;
        // One pool per transport: a QUIC flood must not stop TCP accepts, nor the reverse.
        let tcp_slots = Arc::new(Semaphore::new(shared.config.max_connections));
        let quic_slots = Arc::new(Semaphore::new(shared.config.max_connections));
        let life = &shared.lifecycle;
        let mut endpoint = None;
        if let Some(listener) = self.http {
            life.spawn(h1h2::accept_loop(
                listener,
                None,
                shared.clone(),
                handler.clone(),
                tcp_slots.clone(),
            ));
        }
        if let Some((listener, acceptor, quic)) = self.https {
            life.spawn(h1h2::accept_loop(
                listener,
                Some(acceptor),
                shared.clone(),
                handler.clone(),
                tcp_slots,
            ));
            life.spawn(h3::accept_loop(
                quic.clone(),
                shared.clone(),
                handler,
                quic_slots,
            ));
            endpoint = Some(quic);
        }
        tokio::select! {
            () = signal => {}
            () = life.graceful().cancelled() => {}
        }
        tracing::info!("shutting down: draining connections");
        life.drain(shared.config.drain_timeout).await;
        if let Some(endpoint) = endpoint {
            endpoint.close(quinn::VarInt::from_u32(0x100), b"server shutdown");
            // Bounded: lets CONNECTION_CLOSE reach the clients.
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(1), endpoint.wait_idle()).await;
        }
        tracing::info!("shutdown complete");
        Ok(())
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("http", &self.http_addr())
            .field("https", &self.https_addr())
            .finish_non_exhaustive()
    }
}

/// Binds TLS-over-TCP and QUIC on one port number. With port 0 the kernel picks the
/// TCP port, whose UDP twin may be taken: then another TCP port is tried.
async fn bind_tcp_and_quic(
    addr: SocketAddr,
    identity: &TlsIdentity,
    config: &ServerConfig,
) -> Result<(TcpListener, SocketAddr, quinn::Endpoint), Error> {
    let mut attempts = 0;
    loop {
        let tcp = bind_tcp(addr).await?;
        let bound = tcp
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        match h3::bind(bound, identity, config) {
            Ok(quic) => return Ok((tcp, bound, quic)),
            Err(Error::Bind { source, .. })
                if addr.port() == 0
                    && source.kind() == std::io::ErrorKind::AddrInUse
                    && attempts < 16 =>
            {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}
