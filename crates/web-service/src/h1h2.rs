//! HTTP/1.1 and HTTP/2 (cleartext h2c by prior knowledge, or TLS with ALPN) on TCP.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::body::Body;
use crate::config::ServerConfig;
use crate::conn::{CloseReason, ConnInfo, ConnState, Handler, Shared, dispatch};
use crate::headwatch::{ReadWatch, Wire};
use crate::metrics::{SlotGuard, Transport};

/// How long a connection past the header timeout gets to send its `408`.
const TIMEOUT_ANSWER: Duration = Duration::from_secs(1);

/// Builds the hyper connection builder once per listener from the configuration.
pub(crate) fn builder(cfg: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // Our own timer (conn.rs) measures heads from their first byte; hyper's would
        // also close idle keep-alive connections after this timeout.
        .header_read_timeout(None)
        .max_buf_size(cfg.max_header_bytes.max(8192))
        .keep_alive(true);
    let h2 = &cfg.http2;
    let mut b2 = b.http2();
    b2.timer(TokioTimer::new())
        .max_concurrent_streams(h2.max_concurrent_streams)
        .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(h2.keep_alive_interval)
        .enable_connect_protocol();
    if h2.adaptive_window {
        b2.adaptive_window(true);
    } else {
        b2.initial_stream_window_size(h2.stream_window)
            .initial_connection_window_size(h2.connection_window);
    }
    b
}

/// Accepts TCP connections until shutdown; waits for a connection slot before each accept.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    handler: Handler,
    slots: Arc<Semaphore>,
) {
    let builder = Arc::new(builder(&shared.config));
    let graceful = shared.lifecycle.graceful().clone();
    loop {
        let (stream, remote_addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = graceful.cancelled() => return,
        };
        // Accept first, then wait for a slot: a permit taken before `accept` would sit
        // reserved for this listener while others starve. While it waits, this one
        // socket is held unanswered and no further one is accepted (the rest queue in
        // the kernel backlog), so connections never exceed the limit by more than
        // one held socket per listener.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            () = graceful.cancelled() => return,
        };
        tune_socket(&stream, &shared.config);
        let local_addr = stream.local_addr().unwrap_or(remote_addr);
        let info = ConnInfo {
            remote_addr,
            local_addr,
            tls: tls.is_some(),
        };
        let slot = SlotGuard::new(shared.metrics.clone(), Transport::Tcp, permit);
        let conn = ConnState::new(info, slot);
        let span = tracing::debug_span!("conn", peer = %remote_addr, tls = info.tls);
        let task = serve_tcp(
            stream,
            tls.clone(),
            shared.clone(),
            handler.clone(),
            conn,
            builder.clone(),
        );
        shared.lifecycle.spawn(task.instrument(span));
    }
}

fn tune_socket(stream: &TcpStream, cfg: &ServerConfig) {
    // Small writes (headers, WebSocket frames) must not wait for Nagle.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY failed");
    }
    if let Some(size) = cfg.tcp_socket_buffer {
        let sock = socket2::SockRef::from(stream);
        if let Err(e) = sock
            .set_recv_buffer_size(size)
            .and_then(|()| sock.set_send_buffer_size(size))
        {
            tracing::debug!(error = %e, "setting TCP socket buffers failed");
        }
    }
}

async fn serve_tcp(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    handler: Handler,
    conn: Arc<ConnState>,
    builder: Arc<auto::Builder<TokioExecutor>>,
) {
    // The connection's future (hyper's HTTP/1.1 and HTTP/2 state and the
    // IO, several KiB) is boxed, sized for its own IO type, and awaited
    // after the match. Inline in this task it was 7 KiB for every
    // connection, sized for the TLS variant (a handshake's result held as
    // the match's scrutinee kept room for a whole `TlsStream`), and copied
    // by every move on the way into the spawned task.
    let served: Pin<Box<dyn Future<Output = ()> + Send>> = match tls {
        None => {
            let io = TokioIo::new(ReadWatch::new(
                stream,
                conn.clone(),
                Wire::Unknown { seen: 0 },
            ));
            Box::pin(serve_io(io, shared, handler, conn, builder))
        }
        Some(acceptor) => {
            // Boxed for the same reason: rustls's handshake state would size
            // every connection's task.
            let handshake = tokio::time::timeout(
                shared.config.header_read_timeout,
                Box::pin(acceptor.accept(stream)),
            );
            match handshake.await {
                Ok(Ok(tls_stream)) => {
                    let wire = Wire::from_alpn(tls_stream.get_ref().1.alpn_protocol());
                    let io = TokioIo::new(ReadWatch::new(tls_stream, conn.clone(), wire));
                    Box::pin(serve_io(io, shared, handler, conn, builder))
                }
                Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => {
                    shared
                        .metrics
                        .header_timeouts
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return tracing::debug!("TLS handshake timed out");
                }
            }
        }
    };
    served.await;
}

async fn serve_io<I>(
    io: TokioIo<I>,
    shared: Arc<Shared>,
    handler: Handler,
    conn: Arc<ConnState>,
    builder: Arc<auto::Builder<TokioExecutor>>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = {
        let (shared, conn) = (shared.clone(), conn.clone());
        service_fn(move |req: Request<Incoming>| {
            let (shared, conn, handler) = (shared.clone(), conn.clone(), handler.clone());
            let span =
                tracing::debug_span!("stream", method = %req.method(), path = %req.uri().path());
            async move {
                let req = req.map(|b| Body::incoming(b, &shared));
                Ok::<_, Infallible>(dispatch(&shared, &conn, handler, req).await)
            }
            .instrument(span)
        })
    };
    let served = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(served);
    let mut closing = None;
    loop {
        tokio::select! {
            res = served.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            reason = conn.close_reason(&shared), if closing.is_none() => {
                if reason == CloseReason::HeaderTimeout {
                    tracing::debug!("no request head within the header timeout; closing");
                    // The reader answers 408 (HTTP/1.1) or fails (HTTP/2); give hyper a
                    // moment to write it, then drop the connection regardless.
                    conn.expire_head();
                    let _ = tokio::time::timeout(TIMEOUT_ANSWER, served.as_mut()).await;
                    return;
                }
                // HTTP/1.1: close after the in-flight response; HTTP/2: GOAWAY, then
                // in-flight streams finish.
                served.as_mut().graceful_shutdown();
                closing = Some(reason);
            }
            // hyper's HTTP/2 GOAWAY waits for the client's PING acknowledgement (up to
            // the keep-alive interval and its timeout): an idle connection whose peer
            // answers nothing is dropped after a header timeout instead.
            () = tokio::time::sleep(shared.config.header_read_timeout),
                if closing == Some(CloseReason::Idle) =>
            {
                if conn.is_idle() {
                    return tracing::debug!("idle connection did not finish its GOAWAY; dropping");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tower::util::BoxCloneSyncService;

    use super::*;
    use crate::metrics::Metrics;
    use crate::shutdown::Lifecycle;

    /// Regression: the connection task held hyper's connection and a whole
    /// `TlsStream` inline, 7 KiB per connection (idle ones too), sized for
    /// TLS even on cleartext, and copied on every move into the spawned
    /// task. The connection now lives in a box sized for its own IO.
    #[tokio::test]
    async fn a_connection_task_does_not_hold_its_connection_inline() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let config = ServerConfig::default();
        let shared = Arc::new(Shared {
            metrics: Arc::new(Metrics::default()),
            lifecycle: Lifecycle::default(),
            alt_svc: None,
            config: config.clone(),
        });
        let handler: Handler =
            BoxCloneSyncService::new(tower::service_fn(|_req: Request<Body>| async {
                Ok::<_, crate::BoxError>(http::Response::new(Body::empty()))
            }));
        let permit = Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
        let info = ConnInfo {
            remote_addr: stream.peer_addr().unwrap(),
            local_addr: stream.local_addr().unwrap(),
            tls: false,
        };
        let slot = SlotGuard::new(shared.metrics.clone(), Transport::Tcp, permit);
        let conn = ConnState::new(info, slot);
        let task = serve_tcp(
            stream,
            None,
            shared,
            handler,
            conn,
            Arc::new(builder(&config)),
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 1024, "the connection task is {size} bytes");
    }
}
