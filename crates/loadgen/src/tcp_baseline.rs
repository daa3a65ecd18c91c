//! Loopback TCP and TLS throughput: the ceiling a protocol's figure is divided by.
//!
//! Same chunking as the clients, same rustls configuration as the sinks, one
//! connection, sender and receiver in this process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::clients::mib_per_sec;
use crate::error::{Error, Result};
use crate::source::{DEFAULT_CHUNK, Pattern};
use crate::tls;

/// Receive buffer of the draining side.
const READ_BUFFER: usize = 1 << 20;

/// Bytes moved over one connection and how long it took.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Bytes the receiver counted.
    pub bytes: u64,
    /// From the first write to the receiver seeing end of stream.
    pub elapsed: Duration,
}

impl Throughput {
    /// MiB/s.
    pub fn mib_per_sec(&self) -> f64 {
        mib_per_sec(self.bytes, self.elapsed)
    }
}

/// Raw TCP over loopback.
pub async fn tcp(bytes: u64) -> Result<Throughput> {
    let (addr, receiver) = spawn_receiver(None)?;
    let mut stream = dial(addr).await?;
    let started = Instant::now();
    pump(&mut stream, bytes).await?;
    finish(receiver, bytes, started).await
}

/// TLS over loopback with the sinks' rustls configuration (ring provider).
pub async fn tls(bytes: u64) -> Result<Throughput> {
    let cert = tls::self_signed()?;
    let alpn = [tls::ALPN_HTTP11];
    let server = tls::server_config_from_pem(
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
        &alpn,
        "generated",
    )?;
    let client = tls::client_config_from_pem(cert.cert_pem.as_bytes(), &alpn, "generated")?;
    let (addr, receiver) = spawn_receiver(Some(TlsAcceptor::from(Arc::new(server))))?;
    let tcp = dial(addr).await?;
    let name = ServerName::from(addr.ip());
    let mut stream = TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .map_err(Error::io("TLS connect"))?;
    let started = Instant::now();
    pump(&mut stream, bytes).await?;
    finish(receiver, bytes, started).await
}

/// Starts the receiving side on a thread and runtime of its own.
///
/// On a shared multi-thread runtime tokio may run sender and receiver on the
/// same worker, serialising encryption and decryption on one core; the sinks
/// always get a process (and so a core) of their own, so must the baseline.
fn spawn_receiver(
    tls: Option<TlsAcceptor>,
) -> Result<(SocketAddr, oneshot::Receiver<Result<u64>>)> {
    let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(Error::io("bind loopback"))?;
    let addr = listener.local_addr().map_err(Error::io("local address"))?;
    listener
        .set_nonblocking(true)
        .map_err(Error::io("set non-blocking"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(Error::io("receiver runtime"))?;
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("baseline-receiver".into())
        .spawn(move || {
            let counted = runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).map_err(Error::io("listener"))?;
                let (tcp, _) = listener.accept().await.map_err(Error::io("accept"))?;
                match tls {
                    None => drain(tcp).await,
                    Some(acceptor) => {
                        let stream = acceptor
                            .accept(tcp)
                            .await
                            .map_err(Error::io("TLS accept"))?;
                        drain(stream).await
                    }
                }
            });
            // The sender may have given up already; nobody is left to tell.
            let _ = tx.send(counted);
        })
        .map_err(Error::io("spawn receiver thread"))?;
    Ok((addr, rx))
}

async fn dial(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(Error::io(format!("connect {addr}")))?;
    stream
        .set_nodelay(true)
        .map_err(Error::io("set TCP_NODELAY"))?;
    Ok(stream)
}

async fn pump<W: AsyncWrite + Unpin>(stream: &mut W, bytes: u64) -> Result<()> {
    for chunk in Pattern::new(DEFAULT_CHUNK).chunks(bytes) {
        stream.write_all(&chunk).await.map_err(Error::io("write"))?;
    }
    stream.shutdown().await.map_err(Error::io("shutdown"))
}

async fn drain<R: AsyncRead + Unpin>(mut stream: R) -> Result<u64> {
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buffer).await.map_err(Error::io("read"))?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

async fn finish(
    receiver: oneshot::Receiver<Result<u64>>,
    bytes: u64,
    started: Instant,
) -> Result<Throughput> {
    let counted = receiver
        .await
        .map_err(|_| Error::Protocol("receiver thread died".into()))??;
    let elapsed = started.elapsed();
    if counted != bytes {
        return Err(Error::Protocol(format!(
            "receiver counted {counted} of {bytes} bytes"
        )));
    }
    Ok(Throughput {
        bytes: counted,
        elapsed,
    })
}
