//! HTTP/1.1 and HTTP/2 clients on hyper's connection-level API.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use tokio::sync::oneshot;

use super::{Collector, GetOptions, GetReader, GetResult, UploadOptions, UploadResult};
use crate::error::{Error, Result};
use crate::net::{self, H2_CONNECTION_WINDOW, H2_MAX_FRAME, H2_STREAM_WINDOW, MaybeTls};
use crate::source::{Chunks, Pattern};
use crate::target::{Proto, Target};
use crate::tls::ALPN_H2;

/// A request body streamed from a [`Pattern`] without copying.
pub struct PatternBody {
    chunks: Chunks,
    /// Whether to announce the length (`Content-Length`) or leave it open (chunked).
    exact: bool,
    /// Bytes handed to the connection so far.
    handed: u64,
    /// Told when the connection lets go of the body (written whole, or given
    /// up): a server may answer before it has read the body (nginx's `return`
    /// does, then reads and discards the rest), and an upload is only over
    /// once its last byte went out.
    done: Option<oneshot::Sender<BodyEnd>>,
}

/// When and how far a request body was sent.
struct BodyEnd {
    at: Instant,
    handed: u64,
}

impl PatternBody {
    /// No body: a GET's.
    fn empty() -> Self {
        Self {
            chunks: Chunks::empty(),
            exact: true,
            handed: 0,
            done: None,
        }
    }

    /// `total` pattern bytes, and the receiver told when they are all sent.
    fn upload(pattern: &Pattern, total: u64, exact: bool) -> (Self, oneshot::Receiver<BodyEnd>) {
        let (tx, rx) = oneshot::channel();
        let body = Self {
            chunks: pattern.chunks(total),
            exact,
            handed: 0,
            done: Some(tx),
        };
        (body, rx)
    }
}

impl Drop for PatternBody {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            // The upload may have ended with an error and dropped the receiver.
            let _ = done.send(BodyEnd {
                at: Instant::now(),
                handed: self.handed,
            });
        }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let body = self.get_mut();
        let chunk = body.chunks.next();
        if let Some(c) = &chunk {
            body.handed += c.len() as u64;
        }
        Poll::Ready(chunk.map(|c| Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.remaining() == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact {
            SizeHint::with_exact(self.chunks.remaining())
        } else {
            SizeHint::default()
        }
    }
}

/// Opens an HTTP/1.1 connection; its driver runs on a task of its own.
pub async fn connect_h1(
    target: &Target,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<http1::SendRequest<PatternBody>> {
    let io = net::connect(target, tls).await?;
    let (send, conn) = http1::Builder::new().handshake(TokioIo::new(io)).await?;
    // Connection errors also fail the request in flight, which reports them.
    tokio::spawn(conn);
    Ok(send)
}

/// Opens an HTTP/2 connection (ALPN `h2` over TLS, prior knowledge in cleartext).
pub async fn connect_h2(
    target: &Target,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<http2::SendRequest<PatternBody>> {
    let io = net::connect(target, tls).await?;
    if matches!(io, MaybeTls::Tls(_)) && io.alpn() != Some(ALPN_H2) {
        return Err(Error::Protocol(format!(
            "{} did not agree to HTTP/2 via ALPN",
            target.authority
        )));
    }
    let (send, conn) = http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_frame_size(H2_MAX_FRAME)
        .max_send_buf_size(H2_MAX_FRAME as usize)
        .handshake(TokioIo::new(io))
        .await?;
    tokio::spawn(conn);
    Ok(send)
}

/// One POST over HTTP/1.1, with `Content-Length` or chunked encoding.
pub async fn upload_h1(
    send: &mut http1::SendRequest<PatternBody>,
    target: &Target,
    pattern: &Pattern,
    options: &UploadOptions,
    chunked: bool,
) -> Result<UploadResult> {
    let builder = Request::post(target.path.as_str()).header(http::header::HOST, &target.authority);
    let builder = if chunked {
        builder.header(http::header::TRANSFER_ENCODING, "chunked")
    } else {
        builder.header(http::header::CONTENT_LENGTH, options.bytes)
    };
    let (body, sent) = PatternBody::upload(pattern, options.bytes, !chunked);
    let request = builder
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .body(body)?;
    send.ready().await?;
    let started = Instant::now();
    let response = send.send_request(request).await?;
    let proto = if chunked { Proto::H1Chunked } else { Proto::H1 };
    let result = finish(proto, response, options, started).await?;
    until_sent(result, sent, started).await
}

/// One POST over HTTP/2 on a new stream of the connection.
pub async fn upload_h2(
    send: &mut http2::SendRequest<PatternBody>,
    target: &Target,
    pattern: &Pattern,
    options: &UploadOptions,
) -> Result<UploadResult> {
    let (body, sent) = PatternBody::upload(pattern, options.bytes, true);
    let request = Request::post(target.absolute())
        .header(http::header::CONTENT_LENGTH, options.bytes)
        .header(http::header::CONTENT_TYPE, "application/octet-stream")
        .body(body)?;
    send.ready().await?;
    let started = Instant::now();
    let response = send.send_request(request).await?;
    let result = finish(Proto::H2, response, options, started).await?;
    until_sent(result, sent, started).await
}

/// Waits until the request body has left (a server answering early keeps
/// reading after its answer) and times the upload to whichever ended last;
/// fails if the connection gave up on the body before its end.
async fn until_sent(
    mut result: UploadResult,
    sent: oneshot::Receiver<BodyEnd>,
    started: Instant,
) -> Result<UploadResult> {
    let end = sent
        .await
        .map_err(|_| Error::Protocol("the request body vanished unreported".into()))?;
    if end.handed < result.sent {
        return Err(Error::Protocol(format!(
            "the answer (status {}) came before the body was sent and only {} of {} body bytes went out",
            result.status, end.handed, result.sent
        )));
    }
    result.elapsed = result
        .elapsed
        .max(end.at.saturating_duration_since(started));
    Ok(result)
}

async fn finish(
    proto: Proto,
    response: Response<Incoming>,
    options: &UploadOptions,
    started: Instant,
) -> Result<UploadResult> {
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut collector = Collector::new(options.keep_body);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            collector.push(&data);
        }
    }
    Ok(collector.finish(proto, options, started, status, None))
}

/// One GET over HTTP/1.1.
pub async fn get_h1(
    send: &mut http1::SendRequest<PatternBody>,
    target: &Target,
    options: &GetOptions,
) -> Result<GetResult> {
    let builder = Request::get(target.path.as_str()).header(http::header::HOST, &target.authority);
    let request = get_request(builder, options)?;
    send.ready().await?;
    let started = Instant::now();
    let response = send.send_request(request).await?;
    read_get(Proto::H1, response, options, started).await
}

/// One GET over HTTP/2 on a new stream of the connection.
pub async fn get_h2(
    send: &mut http2::SendRequest<PatternBody>,
    target: &Target,
    options: &GetOptions,
) -> Result<GetResult> {
    let request = get_request(Request::get(target.absolute()), options)?;
    send.ready().await?;
    let started = Instant::now();
    let response = send.send_request(request).await?;
    read_get(Proto::H2, response, options, started).await
}

/// Adds the optional `Range` and the empty body to a GET.
fn get_request(
    builder: http::request::Builder,
    options: &GetOptions,
) -> Result<Request<PatternBody>> {
    let builder = match options.range_header()? {
        Some(value) => builder.header(http::header::RANGE, value),
        None => builder,
    };
    Ok(builder.body(PatternBody::empty())?)
}

/// Reads a GET's response: head time, first body byte, count, hash.
async fn read_get(
    proto: Proto,
    response: Response<Incoming>,
    options: &GetOptions,
    started: Instant,
) -> Result<GetResult> {
    let (parts, mut body) = response.into_parts();
    let mut reader = GetReader::new(options, started);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            reader.push(&data);
        }
    }
    Ok(reader.finish(proto, parts.status.as_u16(), parts.headers))
}
