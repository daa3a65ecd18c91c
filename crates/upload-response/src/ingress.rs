//! The ingress: one HTTP request in, its streams filled and watched, the
//! worker's response out. Protocol-agnostic: any `http::Request` whose body
//! is an `http_body::Body` (hyper's `Incoming`, an h3 stream adapter, a
//! WebSocket adapter) goes through [`UploadResponseService::handle`].

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use chunk_cache::{
    AbortReason, ReadError, SlotKind, StreamReader, StreamStatus, StreamWriter, WriteError,
};
use futures_util::FutureExt;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use http_pack::{Frame, Limits, RequestHead};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio::time::{Instant as TokioInstant, sleep_until, timeout_at};
use tracing::{Instrument, debug, debug_span};

use web_service::ConnInfo;

use crate::UploadResponseService;
use crate::chunk_signatures::ChunkSignatures;
use crate::clients::{Admission, ClientPermit};
use crate::entry::{Entry, ResponseSlot, lock};
use crate::error::IngressError;
use crate::idle::{GuardedBody, millis};
use crate::metrics::Transport;
use crate::s3_body::Verdict;

/// Errors inside a response body: the protocol layer resets the stream.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The body of every response the ingress returns.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// Why the request body pump stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pumped {
    Done,
    TooLarge,
    /// The body failed (reset, short, idle); its reason is already on the stream.
    Failed(IngressError),
    /// The stream was aborted from elsewhere (timeout, response finished).
    Abandoned,
}

impl UploadResponseService {
    /// Takes the request's place under `max_streams_per_client` ahead of
    /// [`handle`](Self::handle), e.g. before a WebSocket upgrade: put the
    /// [`Admission`] into the extensions of the request given to `handle`
    /// (`serve_websocket` keeps the upgrade request's extensions). A client
    /// over its limit gets [`IngressError::ClientBusy`]: answer its
    /// [`response`](IngressError::response).
    pub fn admit<B>(&self, req: &Request<B>) -> Result<Admission, IngressError> {
        self.inner
            .clients
            .admit_conn(req.extensions())
            .map(Admission::new)
    }

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
        let span = debug_span!("request", method = %req.method(), path = %req.uri().path(), stream = tracing::field::Empty);
        // S3 uploads: workers see the decoded, verified body (docs/s3.md).
        let config = &self.inner.config;
        let capacity =
            crate::chunk_signatures::capacity(config.slots_per_stream, config.slot_size());
        let res = match crate::s3_body::prepare(req, capacity) {
            Err(rejection) => rejection.response(),
            Ok((req, verdict)) => {
                let res = self
                    .handle_inner(req, transport, verdict.clone())
                    .instrument(span)
                    .await;
                // A body that failed its checks has aborted the request; the
                // client learns why (the response has not started yet).
                match verdict.as_ref().and_then(|v| v.get()) {
                    Some(rejection) => rejection.response(),
                    None => res,
                }
            }
        };
        if let Some(failure) = res.extensions().get::<IngressError>() {
            self.inner.metrics.rejected(failure.metric_label());
        }
        self.inner
            .metrics
            .request_done(transport, res.status().as_u16());
        res
    }

    async fn handle_inner<B>(
        &self,
        req: Request<B>,
        transport: Transport,
        verdict: Option<Verdict>,
    ) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let config = &self.inner.config;
        let (parts, body) = req.into_parts();
        // Only a request that came over a connection has a client to count
        // and an HTTP/1.1 Host rule to obey; the in-process API has neither.
        let conn = parts.extensions.get::<ConnInfo>().copied();
        if conn.is_some() && parts.version == Version::HTTP_11 {
            let hosts = parts.headers.get_all(header::HOST).iter().count();
            if hosts != 1 {
                return refusal(&IngressError::HostCount(hosts));
            }
        }
        let declared = content_length(&parts.headers);
        if declared.is_some_and(|len| len > config.max_body_bytes) {
            return refusal(&IngressError::TooLarge);
        }
        let head = match RequestHead::from_parts(&parts) {
            Ok(head) => head,
            Err(e) => return refusal(&IngressError::BadHead(e.to_string())),
        };
        // Before any stream is allocated: a client over its share never
        // takes a stream another client could use.
        let mut parts = parts;
        let signatures = parts.extensions.remove::<ChunkSignatures>();
        let admitted = match Admission::take(&mut parts.extensions) {
            Some(admitted) => Ok(admitted),
            None => self.inner.clients.admit_conn(&parts.extensions),
        };
        let client = match admitted {
            Ok(permit) => permit,
            Err(e) => return refusal(&e),
        };
        let created = Instant::now();
        let start = TokioInstant::now();

        let queue_deadline = start + config.queue_timeout();
        let (Ok(mut req_writer), Ok(resp_writer)) = (
            timeout_at(queue_deadline, self.inner.requests.open()).await,
            timeout_at(queue_deadline, self.inner.responses.open()).await,
        ) else {
            return refusal(&IngressError::StreamsBusy);
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
            return refusal(&IngressError::HeadersTooLarge);
        }
        let (Ok(hold), Ok(watcher), Ok(req_lease), Ok(resp_lease)) = (
            self.inner.requests.register_hold(id),
            self.inner.responses.register_reader(resp_writer.id()),
            self.inner.requests.lease(id),
            self.inner.responses.lease(resp_writer.id()),
        ) else {
            return refusal(&IngressError::Vanished);
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
            signatures,
            _leases: (req_lease, resp_lease),
        });
        lock(&self.inner.streams).insert(id.as_u64(), entry.clone());

        let body = GuardedBody::new(body, config.body_idle_timeout(), declared);
        let (pump_tx, pump_rx) = oneshot::channel();
        // The pump runs inside this request's own task while it waits for
        // the response head, with no task of its own: on HTTP/1.1 the
        // connection's task then reads, decrypts and copies each chunk with
        // no hand-off between tasks (1 GiB over TLS: about a fifth less CPU
        // and a sixth more throughput than a pump task, docs/benchmarks.md).
        // A response that starts before the body is in moves it to its own
        // task (`spawn_inline`), since the body must keep flowing while the
        // protocol layer polls only the response.
        let pump = Pump::Inline(Box::pin(
            pump_body(body, req_writer, self.clone(), transport, pump_tx)
                .instrument(tracing::Span::current()),
        ));
        let flight = Flight {
            service: self.clone(),
            entry: entry.clone(),
            pump,
            transport,
            verdict,
            _client: client,
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
    pump: Pump,
    transport: Transport,
    /// Where an S3 body leaves its rejection (BadDigest, ...).
    verdict: Option<Verdict>,
    /// The request's place under its client's `max_streams_per_client`.
    _client: Option<ClientPermit>,
}

/// Where the request body pump runs.
enum Pump {
    /// Polled by the request's own task until the response head (then spawned).
    Inline(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>),
    Spawned(AbortHandle),
    Finished,
}

impl Pump {
    /// Runs an inline pump to its end (then `Finished`); pending forever otherwise.
    async fn run_inline(&mut self) {
        match self {
            Pump::Inline(pump) => pump.as_mut().await,
            _ => std::future::pending().await,
        }
        *self = Pump::Finished;
    }

    /// Moves an unfinished inline pump to its own task: the response streams
    /// from here on, and the body must keep flowing while it does.
    fn spawn_inline(&mut self) {
        if let Pump::Inline(_) = self
            && let Pump::Inline(pump) = std::mem::replace(self, Pump::Finished)
        {
            *self = Pump::Spawned(tokio::spawn(pump).abort_handle());
        }
    }
}

/// Marks a request that arrived as a WebSocket upload (a request extension).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WsTransport;

/// The request body pump's outcome, once it is known.
type PumpRx = Option<oneshot::Receiver<Pumped>>;

/// Waits for the pump's outcome, or forever once it is known.
async fn pumped(rx: &mut PumpRx) -> Result<Pumped, oneshot::error::RecvError> {
    match rx.as_mut() {
        Some(rx) => rx.await,
        None => std::future::pending().await,
    }
}

/// A pump outcome that fails the request (`None`: the body is fine so far).
fn pump_failure(pumped: Result<Pumped, oneshot::error::RecvError>) -> Option<IngressError> {
    match pumped {
        Ok(Pumped::TooLarge) => Some(IngressError::TooLarge),
        Ok(Pumped::Failed(e)) => Some(e),
        Err(_) => Some(IngressError::BodyFailed(
            "the request body pump stopped".into(),
        )),
        Ok(Pumped::Done | Pumped::Abandoned) => None,
    }
}

/// The request's own failure, if the pump already reported one.
fn reported_failure(rx: &mut PumpRx) -> Option<IngressError> {
    let outcome = rx.as_mut()?.try_recv().ok()?;
    *rx = None;
    pump_failure(Ok(outcome))
}

impl Flight {
    async fn await_response(
        mut self,
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
                    Ok(_) => return self.fail(IngressError::BadResponse("no head")),
                    Err(e) => {
                        debug!(error = %e, "response failed before its head");
                        let failure = reported_failure(&mut pump_rx)
                            .unwrap_or_else(|| self.failure_before_head(e));
                        return self.fail(failure);
                    }
                },
                outcome = pumped(&mut pump_rx), if pump_rx.is_some() => {
                    pump_rx = None;
                    if let Some(failure) = pump_failure(outcome) {
                        return self.fail(failure);
                    }
                }
                () = self.pump.run_inline(), if matches!(self.pump, Pump::Inline(_)) => {}
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
                        return self.fail(IngressError::NoClaim);
                    }
                }
                _ = sleep_until(response_deadline) => return self.fail(IngressError::NoResponse),
            }
        };
        self.pump.spawn_inline();
        self.service.inner.metrics.responded_after(start.elapsed());
        let head = match http_pack::decode_frame(&head_slot.bytes, &Limits::default()) {
            Ok((Frame::ResponseHeaders { head, .. }, _)) => head,
            _ => return self.fail(IngressError::BadResponse("corrupt head")),
        };
        let Ok(parts) = head.to_parts() else {
            return self.fail(IngressError::BadResponse("not valid HTTP"));
        };
        let mut response = Response::new(());
        *response.status_mut() = parts.status;
        // HTTP/2 and HTTP/3 forbid connection-specific fields (RFC 9110 §7.6.1).
        *response.headers_mut() = http_pack::hop_by_hop::end_to_end(&parts.headers);
        let method = self.entry.head.method.clone();
        let tail = Tail {
            watcher,
            pump_rx,
            idle: config.response_idle_timeout(),
            flight: self,
            ahead: VecDeque::new(),
            ended: false,
            failed: None,
        };
        let tail = match tail.whole(&method, parts.status, &parts.headers) {
            Ok(whole) => return response.map(|()| whole.boxed_unsync()),
            Err(tail) => tail,
        };
        let body = futures_util::stream::unfold(Some(tail), |tail| async move {
            let mut tail = tail?;
            match tail.next().await {
                Ok(Some(bytes)) => Some((Ok(http_body::Frame::data(bytes)), Some(tail))),
                // End: the flight guard drops here, releasing the streams.
                Ok(None) => None,
                Err(e) => {
                    debug!(error = %e, "response failed after its head");
                    tail.flight.close(e.abort_reason());
                    Some((Err(BoxError::from(e)), None))
                }
            }
        });
        response.map(|()| StreamBody::new(body).boxed_unsync())
    }

    /// The response stream aborted before its head. A worker that gave up
    /// because the request itself failed (client gone, body too large, body
    /// idle) must not turn that into a 502: the request's own abort reason
    /// decides.
    fn failure_before_head(&self, e: ReadError) -> IngressError {
        let request = self.service.inner.requests.status(self.entry.id);
        let reason = match (request, e) {
            (Ok(StreamStatus::Aborted { reason, .. }), _) => reason,
            (_, ReadError::Aborted(AbortReason::TooLarge)) => AbortReason::TooLarge,
            _ => return IngressError::WorkerGone,
        };
        match reason {
            AbortReason::TooLarge => IngressError::TooLarge,
            AbortReason::ClientGone => IngressError::BodyFailed("the client went away".into()),
            AbortReason::Timeout => {
                IngressError::BodyIdle(self.service.inner.config.body_idle_timeout_ms)
            }
            _ => IngressError::WorkerGone,
        }
    }

    /// Ends the request with `failure`: nobody may claim it any more, and any
    /// worker on it sees its streams aborted with the failure's reason.
    fn fail(self, failure: IngressError) -> Response<ResponseBody> {
        self.close(failure.abort_reason());
        refusal(&failure)
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
        // An inline pump is dropped with the flight.
        if let Pump::Spawned(pump) = &self.pump {
            pump.abort();
        }
    }
}

impl Flight {
    /// The S3 body's rejection (BadDigest, ...), once it failed its checks.
    fn rejected(&self) -> Option<IngressError> {
        let rejection = self.verdict.as_ref()?.get()?;
        Some(IngressError::BodyFailed(rejection.to_string()))
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

/// A response after its head: the worker's slots as they land, bounded by
/// `response_idle_timeout_ms` between slots, and failed by a request body
/// that fails meanwhile (body idle, reset, short body).
struct Tail {
    watcher: StreamReader,
    pump_rx: PumpRx,
    idle: Duration,
    flight: Flight,
    /// Slots [`whole`](Self::whole) read ahead and then streamed after all:
    /// body chunks, in order, then (if `ended`) the end.
    ahead: VecDeque<Bytes>,
    ended: bool,
    /// The request's failure [`whole`](Self::whole) took from the pump:
    /// the next thing streamed.
    failed: Option<IngressError>,
}

/// The most of a response [`Tail::whole`] gathers into one buffer: a
/// response that is small and already complete; anything longer streams.
const WHOLE_MAX: usize = 64 * 1024;

impl Tail {
    /// The response as one buffer, if the worker already wrote all of it
    /// (head, body, end) and nothing failed: the protocol layer then knows
    /// its length and sends head and body in one write instead of a head,
    /// a chunk and a last chunk. `None` if more is still to come (what was
    /// read ahead streams first, nothing is lost), and always for the
    /// bodiless answers whose framing the protocol layer decides itself
    /// (`HEAD`, 1xx, 204, 304) or a `content-length` that does not match.
    // The `Err` is the tail handed back to stream, not an error to propagate
    // with `?`: boxing it would allocate on every streamed response.
    #[allow(clippy::result_large_err)]
    fn whole(
        mut self,
        method: &http::Method,
        status: StatusCode,
        headers: &http::HeaderMap,
    ) -> Result<WholeBody, Self> {
        if method == http::Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Err(self);
        }
        while let Ok(Some(slot)) = self.watcher.try_next() {
            match slot.kind {
                SlotKind::Body => {
                    self.ahead.push_back(slot.bytes);
                    if self.ahead.len() > 1 || self.ahead[0].len() > WHOLE_MAX {
                        return Err(self);
                    }
                }
                // Streaming reports a second head as before.
                SlotKind::Headers => return Err(self),
                SlotKind::End => {
                    self.ended = true;
                    break;
                }
            }
        }
        let data = self.ahead.front().cloned().unwrap_or_default();
        if !self.ended
            || content_length(headers).is_some_and(|n| n != data.len() as u64)
            || self.flight.rejected().is_some()
        {
            return Err(self);
        }
        if let Some(failure) = reported_failure(&mut self.pump_rx) {
            // Streaming would fail the response with it: so does this.
            self.ahead.clear();
            self.failed = Some(failure);
            return Err(self);
        }
        let metrics = &self.flight.service.inner.metrics;
        metrics.bytes_out(self.flight.transport, data.len() as u64);
        Ok(WholeBody {
            data: Some(data),
            flight: Some(self.flight),
        })
    }

    /// A read-ahead chunk or end, checked as a freshly read slot would be.
    fn next_ahead(&mut self) -> Option<Result<Option<Bytes>, IngressError>> {
        if let Some(failure) = self.failed.take() {
            return Some(Err(failure));
        }
        if self.ahead.is_empty() && !self.ended {
            return None;
        }
        if let Some(failure) =
            reported_failure(&mut self.pump_rx).or_else(|| self.flight.rejected())
        {
            return Some(Err(failure));
        }
        Some(Ok(self.ahead.pop_front()))
    }

    /// The next body chunk; `None` at the clean end.
    async fn next(&mut self) -> Result<Option<Bytes>, IngressError> {
        if let Some(ahead) = self.next_ahead() {
            return ahead;
        }
        loop {
            tokio::select! {
                biased;
                outcome = pumped(&mut self.pump_rx), if self.pump_rx.is_some() => {
                    self.pump_rx = None;
                    if let Some(failure) = pump_failure(outcome) {
                        return Err(failure);
                    }
                }
                slot = tokio::time::timeout(self.idle, self.watcher.next()) => {
                    // A worker that answered early and goes on writing (or
                    // ends its response) after the body failed its S3 checks
                    // (it saw the abort before the pump reported): none of
                    // it may reach the client as a clean response.
                    if let Some(failure) = self.flight.rejected() {
                        return Err(failure);
                    }
                    return match slot {
                        Ok(Ok(slot)) if slot.kind == SlotKind::Body => {
                            let metrics = &self.flight.service.inner.metrics;
                            metrics.bytes_out(self.flight.transport, slot.bytes.len() as u64);
                            Ok(Some(slot.bytes))
                        }
                        Ok(Ok(_)) => Ok(None),
                        Ok(Err(e)) => Err(reported_failure(&mut self.pump_rx).unwrap_or(match e {
                            ReadError::Aborted(AbortReason::Timeout) => {
                                IngressError::ResponseIdle(millis(self.idle))
                            }
                            _ => IngressError::WorkerGone,
                        })),
                        Err(_) => Err(IngressError::ResponseIdle(millis(self.idle))),
                    };
                }
            }
        }
    }
}

/// A response body the worker wrote whole (see [`Tail::whole`]): one data
/// frame of known length, then the end. The flight it carries ends (releasing
/// the streams) when the protocol layer has taken the data, as a streamed
/// response's does at its end.
struct WholeBody {
    data: Option<Bytes>,
    flight: Option<Flight>,
}

impl Body for WholeBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let data = self.data.take();
        if data.is_none() {
            self.flight = None;
        }
        std::task::Poll::Ready(data.map(|d| Ok(http_body::Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/// Copies the request body into slots as it arrives. Frames are copied into
/// pooled slot buffers, coalescing frames that are already received (never
/// waiting for more: a lone small frame is published at once), so small
/// frames (HTTP/3 packets, small WebSocket messages) cannot multiply memory
/// and the protocol's own buffers are released at once. The copy costs
/// nothing measurable (docs/benchmarks.md, frame sizes).
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
    let mut buf = writer.buffer();
    let outcome = loop {
        // Convert the error at once: the body's own error type need not be `Send`.
        let ready = body
            .frame()
            .now_or_never()
            .map(|next| next.map(|r| r.map_err(Into::<BoxError>::into)));
        let next = match ready {
            Some(next) => next,
            None => {
                // Nothing more ready: publish what is buffered, then wait.
                if !buf.is_empty() && publish(&mut writer, &mut buf).await.is_err() {
                    break Pumped::Abandoned;
                }
                body.frame()
                    .await
                    .map(|r| r.map_err(Into::<BoxError>::into))
            }
        };
        match next {
            None => {
                if !buf.is_empty() && publish(&mut writer, &mut buf).await.is_err() {
                    break Pumped::Abandoned;
                }
                match writer.end().await {
                    Ok(_) => break Pumped::Done,
                    Err(_) => break Pumped::Abandoned,
                }
            }
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
                if copy_into_slots(&mut writer, &mut buf, &data, slot_size)
                    .await
                    .is_err()
                {
                    break Pumped::Abandoned;
                }
            }
            Some(Err(e)) => {
                let failure = IngressError::from_body_error(e);
                debug!(error = %failure, "request body failed");
                writer.abort(failure.abort_reason());
                break Pumped::Failed(failure);
            }
        }
    };
    let _ = done.send(outcome);
}

/// Copies `data` into `buf`, publishing every buffer that fills up.
async fn copy_into_slots(
    writer: &mut StreamWriter,
    buf: &mut BytesMut,
    mut data: &[u8],
    slot_size: usize,
) -> Result<(), WriteError> {
    while !data.is_empty() {
        let take = (slot_size - buf.len()).min(data.len());
        buf.extend_from_slice(&data[..take]);
        data = &data[take..];
        if buf.len() == slot_size {
            publish(writer, buf).await?;
        }
    }
    Ok(())
}

/// Writes `buf` as the next slot and puts a fresh pooled buffer in its place.
async fn publish(writer: &mut StreamWriter, buf: &mut BytesMut) -> Result<u64, WriteError> {
    let full = std::mem::replace(buf, writer.buffer());
    writer.append_buffer(full).await
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

/// The client's answer to `failure` before any response started; the typed
/// failure rides along as a response extension (the WebSocket session picks
/// its close code from it).
pub(crate) fn refusal(failure: &IngressError) -> Response<ResponseBody> {
    let mut res = plain(failure.status(), &format!("{failure}\n"));
    if let Some(secs) = failure.retry_after() {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res.extensions_mut().insert(failure.clone());
    res
}

impl IngressError {
    /// The response a client gets for this failure before any response
    /// started: [`status`](Self::status), a one-line text, `Retry-After`
    /// where a retry can cure it.
    pub fn response(&self) -> Response<ResponseBody> {
        refusal(self)
    }
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
