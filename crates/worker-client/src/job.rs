//! One claimed request: its head, its body as a stream, its response.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyDataStream, BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde::Deserialize;

use crate::client::{ReqBody, Shared};
use crate::{BoxError, ClientError};

/// The claimed request's head, as `POST /v1/claim` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claimed {
    /// Stream id (the `{id}` of the stream calls).
    pub stream_id: u64,
    /// Request method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Authority (empty for HTTP/1.1 requests: see the `host` header).
    pub authority: String,
    /// `HTTP/1.1`, `HTTP/2`, `HTTP/3` (WebSocket uploads show the handshake's).
    pub version: String,
    /// Header fields in received order, as `(name, value)`.
    pub headers: Vec<(String, String)>,
}

/// One element of a claim answer: the head, and the body if it came along.
#[derive(Deserialize)]
pub(crate) struct ClaimedWire {
    #[serde(flatten)]
    pub(crate) claimed: Claimed,
    #[serde(default)]
    pub(crate) body_b64: Option<String>,
}

/// A request this worker claimed from one ingress. Answer it with
/// [`respond`](Self::respond); dropping it unanswered releases the claim
/// (the ingress offers the request to another worker).
pub struct RemoteJob {
    shared: Arc<Shared>,
    origin: String,
    claimed: Claimed,
    /// The whole body, when it came with the claim.
    inline: Option<Bytes>,
    answered: bool,
}

impl RemoteJob {
    pub(crate) fn new(
        shared: Arc<Shared>,
        origin: String,
        claimed: Claimed,
        inline: Option<Bytes>,
    ) -> Self {
        Self {
            shared,
            origin,
            claimed,
            inline,
            answered: false,
        }
    }

    /// The stream id.
    pub fn stream_id(&self) -> u64 {
        self.claimed.stream_id
    }

    /// The request head.
    pub fn request(&self) -> &Claimed {
        &self.claimed
    }

    /// The ingress this job came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The first value of request header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.claimed
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn url(&self, what: &str) -> String {
        format!(
            "{}/v1/streams/{}/{what}?{}",
            self.origin,
            self.claimed.stream_id,
            self.shared.worker_query()
        )
    }

    /// The whole body, if it came with the claim (it had arrived and was at
    /// most [`WorkerConfig::inline_max`](crate::WorkerConfig::inline_max) bytes).
    pub fn inline_body(&self) -> Option<&Bytes> {
        self.inline.as_ref()
    }

    /// The request body, chunk by chunk as the client uploads it. The stream
    /// ends cleanly only at the body's end; an aborted upload is an error.
    /// Reading renews the claim's lease. A body that came with the claim is
    /// handed over without a call.
    pub async fn body(&self) -> Result<BodyStream, ClientError> {
        if let Some(whole) = &self.inline {
            return Ok(BodyStream {
                inner: Inner::Whole(Some(whole.clone()).filter(|b| !b.is_empty())),
            });
        }
        let url = self.url("body");
        let call = format!("GET {url}");
        let response = self
            .shared
            .caller
            .call(Method::GET, url, HeaderMap::new(), empty())
            .await?;
        let response = Shared::expect(&call, response, &[StatusCode::OK]).await?;
        Ok(BodyStream {
            inner: Inner::Remote(response.into_body().into_data_stream()),
        })
    }

    /// Sends the response: `status` and `headers` reach the client at once,
    /// then `body` streams to it as it yields. Returns when the whole
    /// response is delivered to the ingress. If `body` fails midway the
    /// client's response is reset (a failed response, never a short one).
    pub async fn respond<S, E>(
        mut self,
        status: StatusCode,
        headers: &HeaderMap,
        body: S,
    ) -> Result<(), ClientError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        self.answered = true;
        let mut headers = headers.clone();
        headers.insert("x-ur-status", HeaderValue::from(status.as_u16()));
        // Empty chunks are dropped: each would be an empty HTTP/2 DATA frame,
        // which h2 servers count as abuse (GOAWAY ENHANCE_YOUR_CALM after a
        // few hundred on one connection).
        let body = body
            .map(|chunk| chunk.map_err(Into::<BoxError>::into))
            .filter(|chunk| std::future::ready(!matches!(chunk, Ok(b) if b.is_empty())));
        let body = StreamBody::new(body.map(|chunk| chunk.map(Frame::data)));
        let url = self.url("response");
        let call = format!("POST {url}");
        let response = self
            .shared
            .caller
            .call(Method::POST, url, headers, BodyExt::boxed(body))
            .await?;
        Shared::expect(&call, response, &[StatusCode::NO_CONTENT]).await?;
        Ok(())
    }

    /// Sends a response whose body is already whole. With batching on
    /// ([`WorkerConfig::batch`](crate::WorkerConfig::batch) above 1) it
    /// joins the other whole responses to the same ingress in one
    /// `POST /v1/responses` call (leaving at once if no call is waiting);
    /// otherwise, or against an ingress without that call, it is one
    /// response call with its `content-length`.
    pub async fn respond_bytes(
        mut self,
        status: StatusCode,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<(), ClientError> {
        self.answered = true;
        if self.shared.config.batch > 1 {
            let responder = self.shared.responder(&self.origin);
            if !responder.unsupported() {
                match responder
                    .respond(self.claimed.stream_id, status, headers, &body)
                    .await
                {
                    Err(ClientError::Unsupported) => {}
                    done => return done,
                }
            }
        }
        let mut headers = headers.clone();
        headers.insert("x-ur-status", HeaderValue::from(status.as_u16()));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        let url = self.url("response");
        let call = format!("POST {url}");
        let body = Full::new(body).map_err(|e| match e {}).boxed();
        let response = self
            .shared
            .caller
            .call(Method::POST, url, headers, body)
            .await?;
        Shared::expect(&call, response, &[StatusCode::NO_CONTENT]).await?;
        Ok(())
    }

    /// Renews the claim's lease (for work that neither reads nor writes for
    /// longer than the server's `--worker-lease-ms`).
    pub async fn renew(&self) -> Result<(), ClientError> {
        self.claim_call(Method::POST).await
    }

    /// Gives the claim back now: the request is offered to another worker.
    pub async fn release(mut self) -> Result<(), ClientError> {
        self.answered = true;
        self.claim_call(Method::DELETE).await
    }

    async fn claim_call(&self, method: Method) -> Result<(), ClientError> {
        let url = self.url("claim");
        let call = format!("{method} {url}");
        let response = self
            .shared
            .caller
            .call(method, url, HeaderMap::new(), empty())
            .await?;
        Shared::expect(&call, response, &[StatusCode::NO_CONTENT]).await?;
        Ok(())
    }
}

impl Drop for RemoteJob {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        // Release at once rather than letting the lease run out, so the
        // request reaches another worker sooner. Best effort: without a
        // runtime (or if the call fails) the lease still gives it back.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let job = Self {
                shared: self.shared.clone(),
                origin: std::mem::take(&mut self.origin),
                claimed: self.claimed.clone(),
                inline: None,
                answered: true,
            };
            runtime.spawn(async move {
                if let Err(e) = job.claim_call(Method::DELETE).await {
                    tracing::debug!(error = %e, "releasing a dropped job failed");
                }
            });
        }
    }
}

pub(crate) fn empty() -> ReqBody {
    Empty::new().map_err(|e| match e {}).boxed()
}

/// A request body as a `Stream` of `Bytes` chunks.
pub struct BodyStream {
    inner: Inner,
}

enum Inner {
    /// The body that came with the claim (no chunk if it is empty).
    Whole(Option<Bytes>),
    /// The body call's answer.
    Remote(BodyDataStream<Incoming>),
}

impl Stream for BodyStream {
    type Item = Result<Bytes, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let remote = match &mut self.inner {
            Inner::Whole(whole) => return Poll::Ready(whole.take().map(Ok)),
            Inner::Remote(remote) => remote,
        };
        loop {
            // HTTP/2 ends a body with an empty DATA frame, which hyper may
            // hand over as an empty chunk: not data, so not passed on.
            match remote.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(chunk))) if chunk.is_empty() => continue,
                other => return other.map(|item| item.map(|r| r.map_err(ClientError::Body))),
            }
        }
    }
}
