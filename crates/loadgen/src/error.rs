//! The one error type of the crate: every failure names the layer that failed.

use std::io;

/// What went wrong in a client, a sink or a measurement.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL cannot be used for the chosen protocol.
    #[error("bad URL {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// A command-line or option value that makes no sense.
    #[error("invalid argument: {0}")]
    Argument(String),
    /// Socket or file I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A PEM file could not be read or held nothing usable.
    #[error("PEM {path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Cert(#[from] rcgen::Error),
    /// rustls refused a configuration or a handshake.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// A QUIC endpoint could not use the rustls configuration.
    #[error("QUIC TLS configuration: {0}")]
    QuicTls(String),
    /// hyper reported an HTTP/1.1 or HTTP/2 failure.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// A request could not be built.
    #[error("request: {0}")]
    Request(#[from] http::Error),
    /// QUIC connection set-up failed.
    #[error("QUIC connect: {0}")]
    QuicConnect(#[from] quinn::ConnectError),
    /// An established QUIC connection failed.
    #[error("QUIC connection: {0}")]
    QuicConnection(#[from] quinn::ConnectionError),
    /// HTTP/3 connection-level failure.
    #[error("HTTP/3 connection: {0}")]
    H3Connection(#[from] h3::error::ConnectionError),
    /// HTTP/3 stream-level failure.
    #[error("HTTP/3 stream: {0}")]
    H3Stream(#[from] h3::error::StreamError),
    /// WebSocket failure.
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The peer did something the sink contract does not allow.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A latency histogram could not be built or merged.
    #[error("histogram: {0}")]
    Histogram(String),
}

impl Error {
    /// Wraps an I/O error with what was being attempted.
    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
