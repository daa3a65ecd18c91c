//! Sockets, TLS streams and the transport tuning clients and sinks share.
//!
//! Every window below is sized so that flow control never throttles a loopback
//! upload: a benchmark should show what the protocol costs, not that a default
//! window of 64 KiB (HTTP/2) or 1.25 MB (QUIC) needs a round trip per refill.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::{Error, Result};
use crate::target::Target;

/// HTTP/2 per-stream receive window.
pub const H2_STREAM_WINDOW: u32 = 16 << 20;
/// HTTP/2 per-connection receive window.
pub const H2_CONNECTION_WINDOW: u32 = 32 << 20;
/// Largest HTTP/2 frame we accept; fewer, larger DATA frames cost less.
pub const H2_MAX_FRAME: u32 = 1 << 20;
/// QUIC per-stream receive window.
pub const QUIC_STREAM_WINDOW: u32 = 16 << 20;
/// QUIC per-connection receive window.
pub const QUIC_CONNECTION_WINDOW: u32 = 32 << 20;
/// QUIC send window (bytes in flight across all streams).
pub const QUIC_SEND_WINDOW: u64 = 32 << 20;
/// Requested UDP socket buffer size; the kernel caps it at `net.core.[rw]mem_max`.
pub const UDP_BUFFER: usize = 8 << 20;

/// A client byte stream: plain TCP or TLS over TCP.
pub enum MaybeTls {
    /// Cleartext.
    Plain(TcpStream),
    /// TLS client session.
    Tls(Box<TlsStream<TcpStream>>),
}

impl MaybeTls {
    /// The ALPN protocol the server agreed to, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            MaybeTls::Plain(_) => None,
            MaybeTls::Tls(s) => s.get_ref().1.alpn_protocol(),
        }
    }
}

/// Connects to `target` over TCP, then TLS when `tls` is given.
pub async fn connect(target: &Target, tls: Option<&Arc<ClientConfig>>) -> Result<MaybeTls> {
    let addr = target.resolve().await?;
    let tcp = match target.source {
        None => TcpStream::connect(addr).await,
        Some(ip) => {
            let socket = if ip.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            }
            .map_err(Error::io("create TCP socket"))?;
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(Error::io(format!("bind TCP source {ip}")))?;
            socket.connect(addr).await
        }
    }
    .map_err(Error::io(format!("connect {addr}")))?;
    tcp.set_nodelay(true)
        .map_err(Error::io("set TCP_NODELAY"))?;
    let Some(config) = tls else {
        return Ok(MaybeTls::Plain(tcp));
    };
    let name = ServerName::try_from(target.host.clone()).map_err(|e| Error::Url {
        url: target.url.clone(),
        reason: format!("not a TLS server name: {e}"),
    })?;
    let stream = TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
        .map_err(Error::io(format!("TLS handshake with {addr}")))?;
    Ok(MaybeTls::Tls(Box::new(stream)))
}

/// A UDP socket bound to `addr` with large kernel buffers, for a QUIC endpoint.
pub fn udp_socket(addr: SocketAddr) -> Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(Error::io("create UDP socket"))?;
    // Best effort: an unprivileged process gets at most the sysctl limit, and a
    // smaller buffer only costs throughput, never correctness.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    socket
        .bind(&addr.into())
        .map_err(Error::io(format!("bind UDP {addr}")))?;
    Ok(socket.into())
}

/// QUIC transport parameters with windows large enough for loopback uploads.
pub fn quic_transport() -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport
        .stream_receive_window(quinn::VarInt::from_u32(QUIC_STREAM_WINDOW))
        .receive_window(quinn::VarInt::from_u32(QUIC_CONNECTION_WINDOW))
        .send_window(QUIC_SEND_WINDOW)
        .max_idle_timeout(quinn::IdleTimeout::try_from(Duration::from_secs(30)).ok());
    transport
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
