//! The accept loop and per-connection hyper serving shared by the sink and the
//! origin: HTTP/1.1 or HTTP/2 (prior knowledge in cleartext, ALPN over TLS) as
//! each connection's first bytes say, with the crate's HTTP/2 windows.

use std::error::Error as StdError;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::net::{H2_CONNECTION_WINDOW, H2_MAX_FRAME, H2_STREAM_WINDOW};

/// Accepts connections forever and serves each with a clone of `service`;
/// TLS when an acceptor is given.
pub(crate) async fn accept_loop<S, B>(listener: TcpListener, tls: Option<TlsAcceptor>, service: S)
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    loop {
        let Ok((tcp, _peer)) = listener.accept().await else {
            // Out of descriptors or a connection reset before accept: keep
            // serving the others rather than dying.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let service = service.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(tcp).await {
                        serve(stream, service).await;
                    }
                }
                None => serve(tcp, service).await,
            }
        });
    }
}

/// Serves one connection, HTTP/1.1 or HTTP/2 as its first bytes say.
async fn serve<I, S, B>(io: I, service: S)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_frame_size(H2_MAX_FRAME)
        .max_send_buf_size(H2_MAX_FRAME as usize);
    // A client that vanishes mid-request is routine for a load generator's peer.
    let _ = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await;
}
