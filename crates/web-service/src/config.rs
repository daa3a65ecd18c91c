//! Server limits, timeouts and flow-control windows.

use std::time::Duration;

/// Every tunable of a [`crate::Server`]; [`ServerConfig::default`] is sized for one
/// fast upload per connection on a LAN and several in parallel without stalls.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Connections served at once, per protocol family: TCP (HTTP/1.1, HTTP/2, TLS or
    /// not) and QUIC (HTTP/3) each have this many, so a flood of one family cannot
    /// stop the other. Beyond it, TCP connections wait unanswered until a slot frees:
    /// one per listener is accepted and held, the rest wait in the kernel's accept
    /// backlog (either way the client sees a completed TCP handshake and no answer
    /// yet, and a TLS client a handshake that has not started). QUIC connections are
    /// refused at once (`CONNECTION_REFUSED`).
    pub max_connections: usize,
    /// Slowloris defence, on every protocol: the time a new connection has to finish
    /// its TLS (or QUIC) handshake and send its first request head, and the time from
    /// the first byte of every later request head to its end (each request of an
    /// HTTP/1.1 keep-alive connection, each HTTP/2 HEADERS block, each HTTP/3 request
    /// stream). Past it HTTP/1.1 answers `408` and closes; HTTP/2 closes the connection
    /// (an unfinished header block stops every stream of it: RFC 9113 6.10); HTTP/3
    /// drops the request stream.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (GOAWAY on
    /// HTTP/2 and HTTP/3), whatever the client sends below the request layer (HTTP/2
    /// PINGs, QUIC PINGs); on QUIC this is also the transport idle timeout.
    pub idle_timeout: Duration,
    /// Lingering close: when a request body is dropped unfinished (the handler answered
    /// early, e.g. `413`, or stopped reading), up to this many more body bytes are read
    /// and discarded so the client can finish sending and see the answer (curl and
    /// others drop a response when its stream is reset while they still upload).
    /// Past it the stream is reset (HTTP/2, HTTP/3) or the connection closed (HTTP/1.1).
    /// `0` turns lingering off.
    pub lingering_bytes: u64,
    /// Longest time a dropped request body is drained for (see `lingering_bytes`);
    /// nginx's `lingering_time`.
    pub lingering_time: Duration,
    /// Largest request head accepted. Beyond it HTTP/1.1 answers `431` and closes the
    /// connection; HTTP/2 and HTTP/3 answer `431` on that stream only (HTTP/2 sends
    /// GOAWAY `ENHANCE_YOUR_CALM` instead past four times the limit: h2's abuse guard).
    pub max_header_bytes: usize,
    /// Request bodies larger than this are refused with `413` (when `content-length`
    /// announces it) or end in [`crate::BodyError::TooLarge`] mid-stream. `None`: no limit.
    pub max_body_bytes: Option<u64>,
    /// After a shutdown starts, in-flight requests and WebSocket sessions get this long
    /// before their connections are closed by force.
    pub drain_timeout: Duration,
    /// `SO_RCVBUF`/`SO_SNDBUF` for accepted TCP sockets; `None` keeps Linux's
    /// per-connection autotuning (a fixed size turns it off for that socket).
    pub tcp_socket_buffer: Option<usize>,
    /// HTTP/2 flow control and concurrency.
    pub http2: Http2Config,
    /// HTTP/3 (QUIC) flow control and socket buffers.
    pub http3: Http3Config,
    /// Largest WebSocket message (and frame) a peer may send.
    pub max_websocket_message: usize,
    /// Write one access log line per request: a `tracing` event with target `access`
    /// (client, protocol, method, path, status, body bytes in and out, duration,
    /// whether the response was sent whole), emitted when the response is done.
    pub access_log: bool,
}

/// HTTP/2 flow-control windows and stream limits.
#[derive(Debug, Clone)]
pub struct Http2Config {
    /// Receive window of each stream: the most one upload can have in flight.
    pub stream_window: u32,
    /// Receive window of the whole connection; keep it several stream windows wide so
    /// one slow reader cannot starve the other streams (hyper issues 1813, 1960).
    pub connection_window: u32,
    /// Let hyper grow both windows from measured bandwidth-delay product instead of the
    /// two fixed sizes above (hyper sets both windows to the same estimate).
    pub adaptive_window: bool,
    /// Streams a client may open at once on one connection.
    pub max_concurrent_streams: u32,
    /// Interval of keep-alive PINGs; `None` sends none.
    pub keep_alive_interval: Option<Duration>,
}

/// QUIC transport windows and UDP socket buffers for HTTP/3.
#[derive(Debug, Clone)]
pub struct Http3Config {
    /// Receive window of each stream (quinn's default of 1.25 MB throttles uploads on
    /// links with real latency: quinn issue 2262).
    pub stream_window: u64,
    /// Receive window of the whole connection.
    pub connection_window: u64,
    /// Send window of the whole connection.
    pub send_window: u64,
    /// Bidirectional streams (requests) a client may open at once.
    pub max_concurrent_streams: u32,
    /// Requested `SO_RCVBUF` / `SO_SNDBUF` of the UDP socket (the kernel caps it at
    /// `net.core.rmem_max` / `wmem_max`).
    pub udp_socket_buffer: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            // Enough for a client to finish a large upload at LAN speed after an early
            // answer; discarding costs no memory, only bandwidth.
            lingering_bytes: 256 * 1024 * 1024,
            lingering_time: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_body_bytes: None,
            drain_timeout: Duration::from_secs(30),
            tcp_socket_buffer: None,
            http2: Http2Config::default(),
            http3: Http3Config::default(),
            max_websocket_message: 16 * 1024 * 1024,
            access_log: false,
        }
    }
}

impl Default for Http2Config {
    fn default() -> Self {
        Self {
            // 4 MiB keeps a 1 Gbit/s x 30 ms path full for one stream; the connection
            // window fits four such uploads before any of them waits on another.
            stream_window: 4 * 1024 * 1024,
            connection_window: 16 * 1024 * 1024,
            adaptive_window: false,
            max_concurrent_streams: 256,
            keep_alive_interval: Some(Duration::from_secs(20)),
        }
    }
}

impl Default for Http3Config {
    fn default() -> Self {
        Self {
            stream_window: 4 * 1024 * 1024,
            connection_window: 16 * 1024 * 1024,
            send_window: 16 * 1024 * 1024,
            max_concurrent_streams: 256,
            udp_socket_buffer: 4 * 1024 * 1024,
        }
    }
}
