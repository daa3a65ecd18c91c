//! HTTP/3 client: quinn endpoint plus h3.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes};
use tokio::task::JoinHandle;

use super::{Collector, GetOptions, GetReader, GetResult, UploadOptions, UploadResult};
use crate::error::{Error, Result};
use crate::net;
use crate::source::Pattern;
use crate::target::{Proto, Target};

/// HTTP/3 "no error" code, used to close a connection we are done with.
const H3_NO_ERROR: u32 = 0x100;

/// A quinn client configuration from a rustls one (which must offer ALPN `h3`).
pub fn client_config(tls: rustls::ClientConfig) -> Result<quinn::ClientConfig> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| Error::QuicTls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(net::quic_transport()));
    Ok(config)
}

/// One QUIC connection with an HTTP/3 session on it.
pub struct H3Connection {
    // Kept so the socket lives as long as the connection.
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: Sender,
    driver: JoinHandle<()>,
}

/// Opens a QUIC connection from a fresh UDP socket and starts HTTP/3 on it.
pub async fn connect(target: &Target, config: quinn::ClientConfig) -> Result<H3Connection> {
    let addr = target.resolve().await?;
    let any = target.source.unwrap_or(if addr.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    });
    let socket = net::udp_socket(SocketAddr::new(any, 0))?;
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(Error::io("QUIC endpoint"))?;
    let conn = endpoint.connect_with(config, addr, &target.host)?.await?;
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn.clone())).await?;
    // The driver only ends when the connection closes; a failure there also
    // fails the request in flight, which reports it.
    let driver = tokio::spawn(async move {
        let _closed = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    Ok(H3Connection {
        _endpoint: endpoint,
        conn,
        send,
        driver,
    })
}

impl H3Connection {
    /// A handle that opens request streams on this connection; clones run
    /// requests concurrently.
    pub fn sender(&self) -> Sender {
        self.send.clone()
    }
}

/// Opens HTTP/3 request streams on one connection.
pub type Sender = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// One POST on a new request stream; body sent while the response is read.
pub async fn upload(
    send: &mut Sender,
    target: &Target,
    pattern: &Pattern,
    options: &UploadOptions,
) -> Result<UploadResult> {
    let request = http::Request::post(target.absolute())
        .header(http::header::CONTENT_LENGTH, options.bytes)
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .body(())?;
    let started = Instant::now();
    let stream = send.send_request(request).await?;
    let (mut tx, mut rx) = stream.split();
    let chunks = pattern.chunks(options.bytes);
    let sending = async move {
        for chunk in chunks {
            tx.send_data(chunk).await?;
        }
        tx.finish().await?;
        Ok::<_, Error>(())
    };
    let keep = options.keep_body;
    let receiving = async move {
        let response = rx.recv_response().await?;
        let mut collector = Collector::new(keep);
        while let Some(data) = rx.recv_data().await? {
            for_each_chunk(data, |chunk| collector.push(chunk));
        }
        Ok::<_, Error>((response.status().as_u16(), collector))
    };
    let ((), (status, collector)) = tokio::try_join!(sending, receiving)?;
    Ok(collector.finish(Proto::H3, options, started, status, None))
}

/// One GET on a new request stream; the body is read as it arrives.
pub async fn get(send: &mut Sender, target: &Target, options: &GetOptions) -> Result<GetResult> {
    let mut request = http::Request::get(target.absolute());
    if let Some(range) = options.range_header()? {
        request = request.header(http::header::RANGE, range);
    }
    let request = request.body(())?;
    let started = Instant::now();
    let mut stream = send.send_request(request).await?;
    stream.finish().await?;
    let response = stream.recv_response().await?;
    let mut reader = GetReader::new(options, started);
    while let Some(data) = stream.recv_data().await? {
        for_each_chunk(data, |chunk| reader.push(chunk));
    }
    let (parts, ()) = response.into_parts();
    Ok(reader.finish(Proto::H3, parts.status.as_u16(), parts.headers))
}

/// Feeds every contiguous part of a received HTTP/3 DATA buffer to `sink`.
fn for_each_chunk(mut data: impl Buf, mut sink: impl FnMut(&[u8])) {
    while data.has_remaining() {
        let chunk = data.chunk();
        let len = chunk.len();
        sink(chunk);
        data.advance(len);
    }
}

impl Drop for H3Connection {
    fn drop(&mut self) {
        self.conn
            .close(quinn::VarInt::from_u32(H3_NO_ERROR), b"done");
        self.driver.abort();
    }
}
