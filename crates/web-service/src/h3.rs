//! HTTP/3 over QUIC (quinn + h3), on the same port number as TLS over TCP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use h3::error::Code;
use h3::server::RequestResolver;
use http::Response;
use http_body_util::BodyExt;
use quinn::{Endpoint, EndpointConfig, IdleTimeout, TokioRuntime, TransportConfig, VarInt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::Error;
use crate::body::Body;
use crate::config::ServerConfig;
use crate::conn::{CloseReason, ConnInfo, ConnState, Handler, Shared, dispatch};
use crate::metrics::{Protocol, SlotGuard, Transport};
use crate::tls::TlsIdentity;

/// How long a finished HTTP/3 connection waits for the client to close it.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

type H3Conn = h3::server::Connection<h3_quinn::Connection, Bytes>;

/// Binds the UDP socket (with the configured buffers) and the QUIC endpoint.
pub(crate) fn bind(
    addr: SocketAddr,
    identity: &TlsIdentity,
    cfg: &ServerConfig,
) -> Result<Endpoint, Error> {
    let crypto = identity.quic_config()?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport(cfg)));
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
        .map_err(|source| Error::Bind { addr, source })?;
    let size = cfg.http3.udp_socket_buffer;
    // Larger buffers absorb bursts at full speed; the kernel caps them at
    // net.core.rmem_max / wmem_max, so report what was granted.
    if let Err(e) = socket
        .set_recv_buffer_size(size)
        .and_then(|()| socket.set_send_buffer_size(size))
    {
        tracing::warn!(error = %e, "setting UDP socket buffers failed");
    }
    let granted = (socket.recv_buffer_size(), socket.send_buffer_size());
    if let (Ok(recv), Ok(send)) = granted {
        if recv < size || send < size {
            tracing::warn!(
                requested = size,
                recv,
                send,
                "UDP socket buffers capped by the kernel"
            );
        } else {
            tracing::debug!(recv, send, "UDP socket buffers");
        }
    }
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    socket
        .bind(&addr.into())
        .map_err(|source| Error::Bind { addr, source })?;
    let socket: std::net::UdpSocket = socket.into();
    Endpoint::new(
        EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(TokioRuntime),
    )
    .map_err(|source| Error::Bind { addr, source })
}

fn transport(cfg: &ServerConfig) -> TransportConfig {
    let h3 = &cfg.http3;
    let mut t = TransportConfig::default();
    let var = |v: u64| VarInt::from_u64(v).unwrap_or(VarInt::MAX);
    t.stream_receive_window(var(h3.stream_window))
        .receive_window(var(h3.connection_window))
        .send_window(h3.send_window)
        .max_concurrent_bidi_streams(VarInt::from_u32(h3.max_concurrent_streams))
        .max_idle_timeout(IdleTimeout::try_from(cfg.idle_timeout).ok());
    t
}

/// Accepts QUIC connections until shutdown; refuses them beyond `max_connections`.
pub(crate) async fn accept_loop(
    endpoint: Endpoint,
    shared: Arc<Shared>,
    handler: Handler,
    slots: Arc<Semaphore>,
) {
    let graceful = shared.lifecycle.graceful().clone();
    let local_addr = endpoint
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => return,
            },
            () = graceful.cancelled() => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shared
                .metrics
                .refused_connections
                .fetch_add(1, Ordering::Relaxed);
            incoming.refuse();
            continue;
        };
        let remote_addr = incoming.remote_address();
        let conn = ConnState::new(
            ConnInfo {
                remote_addr,
                local_addr,
                tls: true,
            },
            SlotGuard::new(shared.metrics.clone(), Transport::Quic, permit),
        );
        let span = tracing::debug_span!("conn", peer = %remote_addr, proto = "h3");
        let task = serve_connection(incoming, shared.clone(), handler.clone(), conn);
        shared.lifecycle.spawn(task.instrument(span));
    }
    // Stop answering new handshakes; live connections drain in their own tasks.
    endpoint.set_server_config(None);
}

async fn serve_connection(
    incoming: quinn::Incoming,
    shared: Arc<Shared>,
    handler: Handler,
    conn: Arc<ConnState>,
) {
    let handshake = tokio::time::timeout(shared.config.header_read_timeout, incoming);
    let quic = match handshake.await {
        Ok(Ok(quic)) => quic,
        Ok(Err(e)) => return tracing::debug!(error = %e, "QUIC handshake failed"),
        Err(_) => {
            shared
                .metrics
                .header_timeouts
                .fetch_add(1, Ordering::Relaxed);
            return tracing::debug!("QUIC handshake timed out");
        }
    };
    conn.set_protocol(&shared.metrics, Protocol::Http3);
    let built = h3::server::builder()
        .max_field_section_size(shared.config.max_header_bytes as u64)
        .build(h3_quinn::Connection::new(quic.clone()))
        .await;
    let mut h3: H3Conn = match built {
        Ok(h3) => h3,
        Err(e) => return tracing::debug!(error = %e, "HTTP/3 setup failed"),
    };
    let requests = TaskTracker::new();
    // Cancelled when the connection closes for idleness or a late head: requests still
    // waiting for their head are dropped instead of holding the GOAWAY open.
    let headless = CancellationToken::new();
    let mut closing = false;
    loop {
        tokio::select! {
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => {
                    let task = serve_request(
                        resolver,
                        shared.clone(),
                        handler.clone(),
                        conn.clone(),
                        headless.clone(),
                    );
                    // Tracked per connection (to drain it) and by the server (to force it).
                    shared.lifecycle.spawn(requests.track_future(task.in_current_span()));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "HTTP/3 connection ended");
                    break;
                }
            },
            reason = conn.close_reason(&shared), if !closing => {
                tracing::debug!(?reason, "closing HTTP/3 connection");
                // RFC 9114 5.2: requests at or above the GOAWAY id count as unprocessed;
                // h3 sends "last accepted + n", so n = 1 keeps the last accepted request
                // among the processed ones. Accepting goes on: h3 rejects later streams
                // with H3_REQUEST_REJECTED while in-flight requests finish.
                if let Err(e) = h3.shutdown(1).await {
                    tracing::debug!(error = %e, "sending GOAWAY failed");
                }
                closing = true;
                if reason != CloseReason::Shutdown {
                    headless.cancel();
                }
                requests.close();
            }
            () = requests.wait(), if closing => break,
        }
    }
    // CONNECTION_CLOSE discards stream data the client has not acknowledged yet, such
    // as the end of the last response: give the client a moment to close first.
    tokio::select! {
        _ = quic.closed() => {}
        () = tokio::time::sleep(CLOSE_LINGER) => {}
    }
    quic.close(VarInt::from_u32(0x100), b"");
}

async fn serve_request(
    resolver: RequestResolver<h3_quinn::Connection, Bytes>,
    shared: Arc<Shared>,
    handler: Handler,
    conn: Arc<ConnState>,
    headless: CancellationToken,
) {
    // The stream exists from its first byte (quinn hands it over then): its head must
    // be complete within the header timeout. Dropping the resolver stops the stream
    // (STOP_SENDING) and ends it without a response.
    let head = tokio::time::timeout(
        shared.config.header_read_timeout,
        resolver.resolve_request(),
    );
    let resolved = tokio::select! {
        r = head => r,
        () = headless.cancelled() => {
            return tracing::debug!("connection closing; dropping a request without head");
        }
    };
    let (req, stream) = match resolved {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return tracing::debug!(error = %e, "bad HTTP/3 request head"),
        Err(_) => {
            shared
                .metrics
                .header_timeouts
                .fetch_add(1, Ordering::Relaxed);
            return tracing::debug!("HTTP/3 request head not received in time");
        }
    };
    let span = tracing::debug_span!("stream", method = %req.method(), path = %req.uri().path());
    async move {
        let (mut send, recv) = stream.split();
        let req = req.map(|()| Body::h3(recv, &shared));
        let (parts, body) = dispatch(&shared, &conn, handler, req).await.into_parts();
        if let Err(e) = send.send_response(Response::from_parts(parts, ())).await {
            return tracing::debug!(error = %e, "sending response head failed");
        }
        tokio::pin!(body);
        // One frame at a time: `send_data` waits for QUIC flow control, so the body is
        // only polled as fast as the client reads.
        while let Some(frame) = body.frame().await {
            let sent = match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => send.send_data(data).await,
                    Err(frame) => match frame.into_trailers() {
                        Ok(trailers) => send.send_trailers(trailers).await,
                        Err(_) => Ok(()),
                    },
                },
                Err(e) => {
                    tracing::debug!(error = %e, "response body failed; resetting the stream");
                    send.stop_stream(Code::H3_INTERNAL_ERROR);
                    return;
                }
            };
            if let Err(e) = sent {
                return tracing::debug!(error = %e, "client stopped reading");
            }
        }
        if let Err(e) = send.finish().await {
            tracing::debug!(error = %e, "finishing the stream failed");
        }
    }
    .instrument(span)
    .await;
}
