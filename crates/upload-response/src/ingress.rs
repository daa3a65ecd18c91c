//! The ingress: one HTTP request in, its streams filled and watched, the
//! worker's response out. Protocol-agnostic: any `http::Request` whose body
//! is an `http_body::Body` (hyper's `Incoming`, an h3 stream adapter, a
//! WebSocket adapter) goes through [`UploadResponseService::handle`].

use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use chunk_cache::{AbortReason, ReadError, SlotKind, StreamReader, StreamStatus, StreamWriter};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use http_pack::{Frame, Limits, RequestHead};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio::time::{Instant as TokioInstant, sleep_until, timeout_at};
use tracing::{Instrument, debug, info_span};

use crate::UploadResponseService;
use crate::entry::{Entry, ResponseSlot, lock};
use crate::metrics::Transport;
use crate::service::append_split;

/// Errors inside a response body: the protocol layer resets the stream.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The body of every response the ingress returns.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// Why the request body pump stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pumped {
    Done,
    TooLarge,
    ClientGone,
    /// The stream was aborted from elsewhere (timeout, response finished).
    Abandoned,
}

impl UploadResponseService {
    /// Serves one request: streams it into the request cache, offers it to
    /// workers, and returns the worker's response, whose body streams from
    /// the response cache as the worker writes it. Failures map to the
    /// statuses of ARCHITECTURE.md §6.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let transport = if req.extensions().get::<WsTransport>().is_some() {
            Transport::WebSocket
        } else {
            Transport::of(req.version())
        };
        let span = info_span!("request", method = %req.method(), path = %req.uri().path(), stream = tracing::field::Empty);
        let res = self.handle_inner(req, transport).instrument(span).await;
        self.inner
            .metrics
            .request_done(transport, res.status().as_u16());
        res
    }

    async fn handle_inner<B>(&self, req: Request<B>, transport: Transport) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let config = &self.inner.config;
        let (parts, body) = req.into_parts();
        if content_length(&parts.headers).is_some_and(|len| len > config.max_body_bytes) {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body exceeds max_body_bytes\n",
            );
        }
        let head = match RequestHead::from_parts(&parts) {
            Ok(head) => head,
            Err(e) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    &format!("unusable request head: {e}\n"),
                );
            }
        };
        let created = Instant::now();
        let start = TokioInstant::now();

        let queue_deadline = start + config.queue_timeout();
        let (Ok(mut req_writer), Ok(resp_writer)) = (
            timeout_at(queue_deadline, self.inner.requests.open()).await,
            timeout_at(queue_deadline, self.inner.responses.open()).await,
        ) else {
            let mut res = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "all streams are busy; retry shortly\n",
            );
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return res;
        };
        let id = req_writer.id();
        tracing::Span::current().record("stream", id.as_u64());
        let frame = Frame::RequestHeaders {
            stream_id: id.as_u64(),
            head: head.clone(),
        };
        if req_writer
            .add(1, http_pack::to_bytes(&frame))
            .await
            .is_err()
        {
            return plain(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request headers do not fit in one slot\n",
            );
        }
        let (Ok(hold), Ok(watcher), Ok(req_lease), Ok(resp_lease)) = (
            self.inner.requests.register_reader(id),
            self.inner.responses.register_reader(resp_writer.id()),
            self.inner.requests.lease(id),
            self.inner.responses.lease(resp_writer.id()),
        ) else {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "stream vanished while opening\n",
            );
        };
        let entry = Arc::new(Entry {
            id,
            response_id: resp_writer.id(),
            head,
            created,
            response: Mutex::new(ResponseSlot {
                owner: None,
                writer: Some(resp_writer),
                started: false,
                ever_claimed: false,
                closed: false,
            }),
            readers: Mutex::new(Default::default()),
            hold: Mutex::new(Some(hold)),
            _leases: (req_lease, resp_lease),
        });
        lock(&self.inner.streams).insert(id.as_u64(), entry.clone());

        let (pump_tx, pump_rx) = oneshot::channel();
        let pump = tokio::spawn(
            pump_body(body, req_writer, self.clone(), transport, pump_tx)
                .instrument(tracing::Span::current()),
        );
        let flight = Flight {
            service: self.clone(),
            entry: entry.clone(),
            pump: pump.abort_handle(),
            transport,
        };
        self.offer(entry);
        flight.await_response(watcher, pump_rx, start).await
    }
}

/// A request in flight. Dropping it (response done, or the client gone)
/// takes the request out of the table and aborts whatever is unfinished, so
/// workers see `Aborted` and every stream is released.
struct Flight {
    service: UploadResponseService,
    entry: Arc<Entry>,
    pump: AbortHandle,
    transport: Transport,
}

/// Marks a request that arrived as a WebSocket upload (a request extension).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WsTransport;

impl Flight {
    async fn await_response(
        self,
        mut watcher: StreamReader,
        pump_rx: oneshot::Receiver<Pumped>,
        start: TokioInstant,
    ) -> Response<ResponseBody> {
        let config = &self.service.inner.config;
        let claim_deadline = start + config.claim_timeout();
        let response_deadline = start + config.response_timeout();
        let mut pump_rx = Some(pump_rx);
        let mut claim_checked = false;
        let head_slot = loop {
            tokio::select! {
                biased;
                slot = watcher.next() => match slot {
                    Ok(slot) if slot.kind == SlotKind::Headers => break slot,
                    Ok(_) => return self.fail(StatusCode::BAD_GATEWAY, "worker response has no head\n"),
                    Err(e) => {
                        debug!(error = %e, "response failed before its head");
                        return self.fail_after_response_abort(e);
                    }
                },
                pumped = async {
                    match pump_rx.as_mut() {
                        Some(rx) => rx.await,
                        None => std::future::pending().await,
                    }
                }, if pump_rx.is_some() => {
                    pump_rx = None;
                    match pumped {
                        Ok(Pumped::TooLarge) => return self.fail(StatusCode::PAYLOAD_TOO_LARGE, "request body exceeds max_body_bytes\n"),
                        Ok(Pumped::ClientGone) | Err(_) => return self.fail(StatusCode::BAD_REQUEST, "request body failed\n"),
                        Ok(Pumped::Done | Pumped::Abandoned) => {}
                    }
                }
                _ = sleep_until(claim_deadline), if !claim_checked => {
                    claim_checked = true;
                    let unclaimed = {
                        let mut slot = lock(&self.entry.response);
                        if !slot.ever_claimed {
                            slot.closed = true;
                        }
                        !slot.ever_claimed
                    };
                    if unclaimed {
                        return self.fail(StatusCode::SERVICE_UNAVAILABLE, "no worker claimed the request in time\n");
                    }
                }
                _ = sleep_until(response_deadline) => {
                    return self.fail(StatusCode::GATEWAY_TIMEOUT, "the worker did not respond in time\n");
                }
            }
        };
        self.service.inner.metrics.responded_after(start.elapsed());
        let head = match http_pack::decode_frame(&head_slot.bytes, &Limits::default()) {
            Ok((Frame::ResponseHeaders { head, .. }, _)) => head,
            _ => return self.fail(StatusCode::BAD_GATEWAY, "worker response head is corrupt\n"),
        };
        let Ok(parts) = head.to_parts() else {
            return self.fail(
                StatusCode::BAD_GATEWAY,
                "worker response head is not valid HTTP\n",
            );
        };
        let mut response = Response::new(());
        *response.status_mut() = parts.status;
        // HTTP/2 and HTTP/3 forbid connection-specific fields (RFC 9110 §7.6.1).
        *response.headers_mut() = http_pack::hop_by_hop::end_to_end(&parts.headers);
        let body = futures_util::stream::unfold(
            (watcher, Some(self)),
            |(mut watcher, flight)| async move {
                let flight = flight?;
                match watcher.next().await {
                    Ok(slot) if slot.kind == SlotKind::Body => {
                        let metrics = &flight.service.inner.metrics;
                        metrics.bytes_out(flight.transport, slot.bytes.len() as u64);
                        Some((
                            Ok(http_body::Frame::data(slot.bytes)),
                            (watcher, Some(flight)),
                        ))
                    }
                    // End: the flight guard drops here, releasing the streams.
                    Ok(_) => None,
                    Err(e) => Some((Err(BoxError::from(e)), (watcher, None))),
                }
            },
        );
        response.map(|()| StreamBody::new(body).boxed_unsync())
    }

    /// The response stream aborted before its head. A worker that gave up
    /// because the request itself failed (client gone, body too large) must
    /// not turn that into a 502: the request's own abort reason decides.
    fn fail_after_response_abort(self, e: ReadError) -> Response<ResponseBody> {
        let request = self.service.inner.requests.status(self.entry.id);
        match (request, e) {
            (
                Ok(StreamStatus::Aborted {
                    reason: AbortReason::TooLarge,
                    ..
                }),
                _,
            )
            | (_, ReadError::Aborted(AbortReason::TooLarge)) => self.fail(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body exceeds max_body_bytes\n",
            ),
            (
                Ok(StreamStatus::Aborted {
                    reason: AbortReason::ClientGone,
                    ..
                }),
                _,
            ) => self.fail(StatusCode::BAD_REQUEST, "request body failed\n"),
            _ => self.fail(
                StatusCode::BAD_GATEWAY,
                "the worker went away before responding\n",
            ),
        }
    }

    /// Ends the request with `status`: nobody may claim it any more, and any
    /// worker on it sees its streams aborted.
    fn fail(self, status: StatusCode, msg: &str) -> Response<ResponseBody> {
        let reason = match status {
            StatusCode::GATEWAY_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => AbortReason::Timeout,
            StatusCode::PAYLOAD_TOO_LARGE => AbortReason::TooLarge,
            _ => AbortReason::Internal,
        };
        self.close(reason);
        plain(status, msg)
    }

    fn close(&self, reason: AbortReason) {
        let inner = &self.service.inner;
        lock(&inner.dispatch).withdraw(&self.entry);
        let idle_writer = {
            let mut slot = lock(&self.entry.response);
            slot.closed = true;
            slot.writer.take()
        };
        drop(idle_writer);
        let _ = inner.responses.abort(self.entry.response_id, reason);
        let _ = inner.requests.abort(self.entry.id, reason);
        self.pump.abort();
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        // A completed response makes these aborts no-ops; otherwise the
        // client went away and workers must see an abort, not an end.
        self.close(AbortReason::ClientGone);
        lock(&self.service.inner.streams).remove(&self.entry.id.as_u64());
    }
}

/// Copies the request body into slots as it arrives.
async fn pump_body<B>(
    body: B,
    mut writer: StreamWriter,
    service: UploadResponseService,
    transport: Transport,
    done: oneshot::Sender<Pumped>,
) where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let (slot_size, max) = (
        service.config().slot_size(),
        service.config().max_body_bytes,
    );
    let mut total = 0u64;
    let outcome = loop {
        // Convert the error at once: the body's own error type need not be `Send`.
        let next = body
            .frame()
            .await
            .map(|r| r.map_err(Into::<BoxError>::into));
        match next {
            None => match writer.end().await {
                Ok(_) => break Pumped::Done,
                Err(_) => break Pumped::Abandoned,
            },
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                }; // trailers: not stored
                total += data.len() as u64;
                service.inner.metrics.bytes_in(transport, data.len() as u64);
                if total > max {
                    writer.abort(AbortReason::TooLarge);
                    break Pumped::TooLarge;
                }
                if append_split(&mut writer, data, slot_size).await.is_err() {
                    break Pumped::Abandoned;
                }
            }
            Some(Err(e)) => {
                debug!(error = %e, "request body failed");
                writer.abort(AbortReason::ClientGone);
                break Pumped::ClientGone;
            }
        }
    };
    let _ = done.send(outcome);
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A short text response (errors and refusals).
pub(crate) fn plain(status: StatusCode, msg: &str) -> Response<ResponseBody> {
    let mut res = Response::new(
        Full::new(Bytes::copy_from_slice(msg.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}
