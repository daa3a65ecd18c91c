//! The streaming body every protocol hands to the handler, and its typed errors.

use std::any::Any;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_util::{Stream, TryStreamExt};
use http::StatusCode;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};

use crate::access_log::Meter;
use crate::conn::Shared;
use crate::metrics::RequestGuard;

/// Boxed error used at the edges of the handler model.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type H3Recv = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

/// A request or response body: a stream of `Bytes` frames read on demand, so the
/// peer is only asked for more when the reader polls again (backpressure).
pub struct Body {
    kind: Kind,
    limit: Option<u64>,
    received: u64,
    // Released when the response has been fully sent (or dropped): ends the request
    // in the metrics and the idle clock of its connection.
    guard: Option<RequestGuard>,
    // Counts bytes for the access log (and, on a response, writes its line when dropped).
    meter: Option<Meter>,
    // Request bodies from a peer: where to drain them if dropped unfinished.
    linger: Option<Arc<Shared>>,
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Incoming(hyper::body::Incoming),
    H3 {
        stream: Box<H3Recv>,
        data_done: bool,
    },
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

/// Why reading a body failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body exceeded the configured `max_body_bytes`; answer `413`.
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit in force.
        limit: u64,
    },
    /// The HTTP/1.1 or HTTP/2 peer broke the stream (reset, closed early, bad framing).
    #[error("HTTP/1 or HTTP/2 body stream failed: {0}")]
    Hyper(#[from] hyper::Error),
    /// The HTTP/3 peer reset the stream or the QUIC connection failed.
    #[error("HTTP/3 body stream failed: {0}")]
    H3(#[from] h3::error::StreamError),
    /// A body produced by a handler failed.
    #[error("body source failed: {0}")]
    Other(BoxError),
}

impl BodyError {
    /// The status a handler should answer when this error ends its request body.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Self::from_kind(Kind::Empty)
    }

    /// Wraps any `http_body::Body` (e.g. axum's body or a tower-http file body).
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // Avoid boxing our own type again when a handler returns a `Body`.
        let mut slot = Some(body);
        if let Some(own) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Body>>()
            && let Some(own) = own.take()
        {
            return own;
        }
        match slot {
            Some(body) => Self::from_kind(Kind::Boxed(body.map_err(Into::into).boxed_unsync())),
            None => Self::empty(),
        }
    }

    /// A body fed by a stream of chunks; the stream is polled only as the peer accepts data.
    pub fn from_stream<S, E>(stream: S) -> Self
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        Self::new(StreamBody::new(stream.map_ok(Frame::data)))
    }

    pub(crate) fn incoming(body: hyper::body::Incoming, shared: &Arc<Shared>) -> Self {
        Self::from_peer(Kind::Incoming(body), shared)
    }

    pub(crate) fn h3(stream: H3Recv, shared: &Arc<Shared>) -> Self {
        let kind = Kind::H3 {
            stream: Box::new(stream),
            data_done: false,
        };
        Self::from_peer(kind, shared)
    }

    fn from_peer(kind: Kind, shared: &Arc<Shared>) -> Self {
        let mut body = Self::from_kind(kind);
        body.limit = shared.config.max_body_bytes;
        body.linger = Some(shared.clone());
        body
    }

    pub(crate) fn with_guard(mut self, guard: RequestGuard) -> Self {
        self.guard = Some(guard);
        self
    }

    pub(crate) fn metered(mut self, meter: Option<Meter>) -> Self {
        self.meter = meter;
        self
    }

    /// Caps this body at `limit` bytes: reading past it yields [`BodyError::TooLarge`].
    pub fn with_limit(mut self, limit: u64) -> Self {
        self.limit = Some(self.limit.map_or(limit, |l| l.min(limit)));
        self
    }

    /// Bytes read from this body so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Next data chunk, skipping trailers; `None` at the end of the body.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, BodyError>> {
        loop {
            match self.frame().await? {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => return Some(Ok(data)),
                    Err(_trailers) => continue,
                },
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn from_kind(kind: Kind) -> Self {
        Self {
            kind,
            limit: None,
            received: 0,
            guard: None,
            meter: None,
            linger: None,
        }
    }

    /// Whether the peer may still send bytes of this body.
    fn unfinished(&self) -> bool {
        match &self.kind {
            Kind::Incoming(body) => !body.is_end_stream(),
            Kind::H3 { .. } => true,
            Kind::Empty | Kind::Full(_) | Kind::Boxed(_) => false,
        }
    }

    /// Stops reading for the handler; an unfinished peer body goes on being drained.
    fn stop_reading(&mut self) {
        let unfinished = self.unfinished();
        let kind = std::mem::replace(&mut self.kind, Kind::Empty);
        if let Some(shared) = self.linger.take()
            && unfinished
        {
            linger(&shared, kind);
        }
    }

    fn poll_kind(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Incoming(body) => Pin::new(body).poll_frame(cx).map_err(BodyError::Hyper),
            Kind::Boxed(body) => Pin::new(body).poll_frame(cx).map_err(BodyError::Other),
            Kind::H3 { stream, data_done } => {
                if !*data_done {
                    match ready!(stream.poll_recv_data(cx)) {
                        Ok(Some(mut buf)) => {
                            let data = buf.copy_to_bytes(buf.remaining());
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        Ok(None) => *data_done = true,
                        Err(e) => return Poll::Ready(Some(Err(e.into()))),
                    }
                }
                match ready!(stream.poll_recv_trailers(cx)) {
                    Ok(Some(trailers)) => {
                        self.kind = Kind::Empty;
                        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                    }
                    Ok(None) => {
                        self.kind = Kind::Empty;
                        Poll::Ready(None)
                    }
                    Err(e) => Poll::Ready(Some(Err(e.into()))),
                }
            }
        }
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let frame = ready!(this.poll_kind(cx));
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
            let len = data.map_or(0, Bytes::len) as u64;
            this.received = this.received.saturating_add(len);
            if let Some(meter) = &this.meter {
                meter.data(data.map_or(0, Bytes::len));
                // hyper stops polling a body that says it has ended.
                if this.is_end_stream() {
                    meter.ended();
                }
            }
            if let Some(limit) = this.limit
                && this.received > limit
            {
                // The handler gets no more; the rest is drained (bounded) or reset.
                this.stop_reading();
                return Poll::Ready(Some(Err(BodyError::TooLarge { limit })));
            }
        }
        if frame.is_none() {
            // The guard tracks the response: it ends when the last frame was taken.
            this.guard = None;
            if let Some(meter) = this.meter.take() {
                meter.ended();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(data) => data.is_none(),
            Kind::Incoming(body) => body.is_end_stream(),
            Kind::Boxed(body) => body.is_end_stream(),
            Kind::H3 { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, Bytes::len) as u64),
            Kind::Incoming(body) => body.size_hint(),
            Kind::Boxed(body) => body.size_hint(),
            Kind::H3 { .. } => SizeHint::default(),
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        self.stop_reading();
    }
}

/// Lingering close (nginx's `lingering_time`): reads and discards what is left of a
/// request body the handler dropped, within `lingering_bytes` and `lingering_time`, so
/// the stream ends cleanly once the client has sent everything: HTTP/2 sends no
/// `RST_STREAM`, HTTP/3 no `STOP_SENDING`, HTTP/1.1 keeps the connection. Past either
/// bound the body is dropped, which resets the stream (or closes the HTTP/1.1
/// connection after the response). Nothing read is kept, so memory stays bounded.
fn linger(shared: &Arc<Shared>, kind: Kind) {
    let cfg = &shared.config;
    let mut body = Body::from_kind(kind);
    // A body announced larger than the allowance is reset at once: draining part of it
    // would only delay the same reset.
    let hopeless = body.size_hint().lower() > cfg.lingering_bytes;
    if hopeless || cfg.lingering_time.is_zero() || tokio::runtime::Handle::try_current().is_err() {
        shared.metrics.lingering_cut.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let (allowance, time, metrics) = (
        cfg.lingering_bytes,
        cfg.lingering_time,
        shared.metrics.clone(),
    );
    shared.lifecycle.spawn(async move {
        let drain = async {
            let mut left = allowance;
            while let Some(frame) = body.frame().await {
                // A peer error ends the stream anyway: nothing left to protect.
                let Ok(frame) = frame else { return true };
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                let Some(rest) = left.checked_sub(len) else {
                    return false;
                };
                left = rest;
            }
            true
        };
        let drained = tokio::time::timeout(time, drain).await.unwrap_or(false);
        let counter = if drained {
            &metrics.lingering_drained
        } else {
            &metrics.lingering_cut
        };
        counter.fetch_add(1, Ordering::Relaxed);
    });
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("received", &self.received)
            .field("limit", &self.limit)
            .finish()
    }
}

impl From<Bytes> for Body {
    fn from(data: Bytes) -> Self {
        Self::from_kind(Kind::Full(Some(data)))
    }
}

impl From<String> for Body {
    fn from(data: String) -> Self {
        Bytes::from(data).into()
    }
}

impl From<&'static str> for Body {
    fn from(data: &'static str) -> Self {
        Bytes::from_static(data.as_bytes()).into()
    }
}

impl From<Vec<u8>> for Body {
    fn from(data: Vec<u8>) -> Self {
        Bytes::from(data).into()
    }
}
