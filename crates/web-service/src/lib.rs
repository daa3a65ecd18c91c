//! One handler, every protocol.
//!
//! `web-service` serves a single tower [`Service`](tower::Service) (for example an
//! axum `Router`) over HTTP/1.1 (cleartext and TLS), h2c (prior knowledge), HTTP/2
//! over TLS (ALPN `h2`), HTTP/3 (quinn + h3) on the TLS port number over UDP, and
//! WebSocket (HTTP/1.1 upgrade on `ws://` and `wss://`, HTTP/2 extended CONNECT per
//! RFC 8441). Request bodies reach the handler as a stream of `Bytes` ([`Body`]) and
//! responses are sent by polling the handler's body one frame at a time, so every
//! protocol applies backpressure and nothing collects a whole body.
//!
//! ```no_run
//! use web_service::{Body, Listen, Server, ServerConfig, TlsIdentity};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let tls = TlsIdentity::self_signed_in("./.certs")?.identity;
//! let listen = Listen {
//!     http: Some("127.0.0.1:8080".parse()?),
//!     https: Some(("127.0.0.1:8443".parse()?, tls)),
//! };
//! let server = Server::bind(ServerConfig::default(), listen).await?;
//! let handler = tower::service_fn(|req: http::Request<Body>| async move {
//!     // Echo: the request body streams straight back.
//!     Ok::<_, std::convert::Infallible>(http::Response::new(req.into_body()))
//! });
//! server.serve(handler, web_service::ctrl_c_or_sigterm()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Every request carries a [`ConnInfo`] and a [`ShutdownSignal`] in its extensions.
//! WebSocket handlers call [`ws::upgrade`] and run the session with
//! [`ws::WsUpgrade::spawn`], which the graceful shutdown tracks.
//!
//! # Protocols
//!
//! | protocol | listener | notes |
//! |---|---|---|
//! | HTTP/1.1 | `http`, `https` (ALPN `http/1.1`) | keep-alive, pipelining as hyper allows |
//! | h2c | `http` | prior knowledge only (no `Upgrade: h2c`) |
//! | HTTP/2 | `https` (ALPN `h2`) | extended CONNECT enabled |
//! | HTTP/3 | `https` port over UDP (ALPN `h3`) | advertised by `alt-svc: h3=":PORT"` on TLS responses |
//! | WebSocket | `ws://`, `wss://` | HTTP/1.1 upgrade, and HTTP/2 extended CONNECT (RFC 8441) on h2c and HTTP/2+TLS |
//!
//! Not supported: WebSocket over HTTP/3 (RFC 9220; such a request gets `400`),
//! request trailers other than what hyper and h3 pass through, 0-RTT.
//!
//! # Flow control
//!
//! HTTP/2 windows are fixed by default ([`Http2Config`]): 4 MiB per stream, 16 MiB
//! per connection, so one upload has a full window and four can run at full speed
//! before any of them waits for another; hyper's adaptive window is available but
//! sets both windows to the same estimate, which lets one unread stream block the
//! connection (hyper issues 1813, 1960). HTTP/3 ([`Http3Config`]) uses the same sizes
//! for QUIC stream and connection windows instead of quinn's 1.25 MB stream default
//! (quinn issue 2262), and asks for 4 MiB UDP socket buffers. Bytes are pulled from
//! the peer only as fast as the handler reads the [`Body`], so memory per stream is
//! bounded by the stream window.
//!
//! # Limits
//!
//! See [`ServerConfig`]:
//!
//! * connection limit per transport ([`Transport`]: TCP waits in the backlog, QUIC
//!   is refused; one cannot use up the other's);
//! * header-read timeout on every protocol: the TLS or QUIC handshake plus the
//!   first request head, then every head from its first byte (HTTP/1.1: `408` and
//!   close; HTTP/2: the connection closes, an unfinished header block stops all of
//!   it; HTTP/3: that request stream is dropped);
//! * idle timeout, which client PINGs (HTTP/2, QUIC) do not reset;
//! * maximum head size (`431`), maximum body size (`413` up front from
//!   `content-length`, else [`BodyError::TooLarge`] mid-stream, which the handler
//!   maps with [`BodyError::status`]);
//! * lingering close: a request body dropped unfinished is drained (discarded) up
//!   to `lingering_bytes` / `lingering_time`, so an early answer reaches a client
//!   that is still uploading (see Cancel safety);
//! * HTTP/2 and HTTP/3 windows.
//!
//! With an axum `Router`, buffering extractors (`Bytes`, `String`, `Json`) still apply
//! axum's own 2 MB `DefaultBodyLimit` (axum issue 1652); a handler that takes
//! `axum::body::Body` streams and is bounded only by `max_body_bytes`.
//!
//! # Cancel safety
//!
//! What a client sees when the handler's response body fails mid-way (returns an
//! error, e.g. because the handler dropped the sender feeding it):
//!
//! * **HTTP/1.1**: the connection is closed. A chunked response lacks its terminating
//!   `0\r\n\r\n` chunk; a response with `content-length` arrives short; if the
//!   failure came before anything was flushed, the connection closes before a complete
//!   response head. Either way the client can tell the response is incomplete.
//! * **HTTP/2**: the stream is reset (`RST_STREAM` with `INTERNAL_ERROR`); other
//!   streams on the connection go on.
//! * **HTTP/3**: the request stream is reset (`H3_INTERNAL_ERROR`); other streams go on.
//! * **WebSocket**: the session is the handler's: dropping the stream closes the
//!   connection without a Close frame (the client sees an abnormal closure, 1006);
//!   a handler that wants a clean end sends Close (e.g. 1011 on errors, 1001 when
//!   [`ShutdownSignal`] fires).
//!
//! At the drain deadline of a shutdown every remaining task is dropped: TCP
//! connections close (HTTP/2 clients already had GOAWAY when the drain began), QUIC
//! connections close, and clients see the same incomplete responses as above.
//!
//! A handler that stops reading a request body does not harm other streams: HTTP/2
//! and HTTP/3 stop granting that stream credit. When it drops the body (or reading
//! passes `max_body_bytes`), the rest is read and discarded in a background task the
//! shutdown tracks (lingering close), up to `lingering_bytes` and `lingering_time`:
//! the client finishes sending and then sees the answer and a clean end (no
//! `RST_STREAM`, no `STOP_SENDING`, the HTTP/1.1 connection kept). Past either bound
//! the body is reset as before: HTTP/2 `RST_STREAM` (`NO_ERROR` once the response is
//! complete), HTTP/3 `STOP_SENDING`, HTTP/1.1 connection closed after the response.

mod access_log;
mod body;
mod config;
mod conn;
mod h1h2;
mod h3;
mod headwatch;
mod metrics;
mod server;
mod shutdown;
mod static_files;
mod tls;
pub mod ws;

#[cfg(test)]
mod tests;

pub use body::{Body, BodyError, BoxError};
pub use config::{Http2Config, Http3Config, ServerConfig};
pub use conn::ConnInfo;
pub use metrics::{Metrics, Protocol, ProtocolStats, Transport};
pub use server::{Listen, Server};
pub use shutdown::{ShutdownHandle, ShutdownSignal, ctrl_c_or_sigterm};
pub use static_files::StaticFiles;
pub use tls::{SelfSigned, TlsError, TlsIdentity, TlsReloader, reload_tls_on_sighup};

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listening socket could not be bound (address in use, no permission, ...).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
}
