//! The idiomatic worker layer: await a job, read its body as a stream, write
//! the response through a writer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chunk_cache::{SlotKind, StreamReader, StreamWriter};
use futures_util::Stream;
use http::{HeaderMap, StatusCode};
use http_pack::{Frame, Header, HttpVersion, RequestHead, ResponseHead};

use crate::chunk_signatures::ChunkSignatures;
use crate::entry::{Entry, lock};
use crate::error::{CoordError, TailError};
use crate::idle;
use crate::{Route, UploadResponseService, WorkerId};

/// An in-process worker: a name and the route it serves.
#[derive(Clone)]
pub struct Worker {
    service: UploadResponseService,
    id: WorkerId,
    route: Route,
}

impl Worker {
    pub(crate) fn new(service: UploadResponseService, id: WorkerId, route: Route) -> Self {
        Self { service, id, route }
    }

    /// The worker's name.
    pub fn id(&self) -> &WorkerId {
        &self.id
    }

    /// Waits for the next request on this worker's route and claims it: the
    /// worker owns the response and reads the body as a registered reader.
    /// Cancel-safe: a request handed over as the future is dropped goes to
    /// the next worker.
    pub async fn next_job(&self) -> Job {
        self.service.next_job(&self.id, &self.route).await
    }

    /// Claims the oldest request already queued on this worker's route, if
    /// any, without waiting (a batch's further jobs after
    /// [`next_job`](Self::next_job) gave its first).
    pub fn try_next_job(&self) -> Option<Job> {
        self.service.try_next_job(&self.id, &self.route)
    }
}

/// One claimed request. Dropping it before [`respond`](Self::respond) hands
/// the request to another worker (or fails it with 502 if part of the body
/// was already recycled).
pub struct Job {
    service: UploadResponseService,
    entry: Arc<Entry>,
    worker: WorkerId,
    reader: Option<StreamReader>,
    writer: Option<StreamWriter>,
}

impl Job {
    pub(crate) fn new(
        service: UploadResponseService,
        entry: Arc<Entry>,
        worker: WorkerId,
        reader: StreamReader,
        writer: StreamWriter,
    ) -> Self {
        Self {
            service,
            entry,
            worker,
            reader: Some(reader),
            writer: Some(writer),
        }
    }

    /// The request's stream id (as in the worker API).
    pub fn stream_id(&self) -> u64 {
        self.entry.id.as_u64()
    }

    /// The request head.
    pub fn head(&self) -> &RequestHead {
        &self.entry.head
    }

    /// The worker that holds the claim.
    pub fn worker(&self) -> &WorkerId {
        &self.worker
    }

    /// The first value of request header `name` (lowercase), if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.entry
            .head
            .headers
            .iter()
            .find(|h| h.name() == name.as_bytes())
            .map(Header::value)
    }

    /// The request body, streamed as it arrives. Call once: later calls get
    /// an empty body.
    pub fn body(&mut self) -> RequestBody {
        RequestBody {
            reader: self.reader.take(),
            ahead: VecDeque::new(),
            started: false,
            done: false,
        }
    }

    /// The chunk signatures of a signed S3 streaming upload
    /// (`x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`),
    /// read from record 0 ([`ChunkSignatures::seek`] for another index);
    /// `None` for any other request. Each record gives the chunk's offset
    /// and length in the decoded body and its signature, unverified: the
    /// worker holds the keys (docs/s3.md §5). Read them alongside the body:
    /// the record keeps the chunks of the body's slot window, and a reader
    /// further behind gets [`SignatureError::Evicted`](crate::SignatureError).
    pub fn chunk_signatures(&self) -> Option<ChunkSignatures> {
        self.entry.signatures.clone()
    }

    /// Writes the response head and returns the body writer. The client sees
    /// the head at once, even while the request body is still uploading.
    pub async fn respond(
        self,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Result<ResponseWriter, CoordError> {
        self.respond_head(response_head(status, headers)?).await
    }

    /// Like [`respond`](Self::respond) with a ready HPKS head.
    pub async fn respond_head(mut self, head: ResponseHead) -> Result<ResponseWriter, CoordError> {
        let mut writer = self
            .writer
            .take()
            .ok_or(CoordError::HeadersSent(self.stream_id()))?;
        let frame = Frame::ResponseHeaders {
            stream_id: self.stream_id(),
            head,
        };
        writer.add(1, http_pack::to_bytes(&frame)).await?;
        lock(&self.entry.response).started = true;
        let config = self.service.config();
        Ok(ResponseWriter {
            writer,
            slot_size: config.slot_size(),
            idle: config.response_idle_timeout(),
        })
    }

    /// Undoes a claim that was never delivered to the worker (no re-offer:
    /// the dispatcher is already offering it).
    pub(crate) fn unassign(mut self) {
        if let Some(writer) = self.writer.take() {
            self.service.give_back(&self.entry, writer, false);
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            // Park the hold before our reader goes, so nothing is recycled in between.
            let reader = self.reader.take();
            self.service.give_back(&self.entry, writer, true);
            drop(reader);
        }
    }
}

/// An HPKS response head from a status and `http` headers (what
/// [`Job::respond`] writes; remote worker calls build theirs with it too).
pub fn response_head(status: StatusCode, headers: &HeaderMap) -> Result<ResponseHead, CoordError> {
    Ok(ResponseHead {
        status,
        version: HttpVersion::Http11,
        headers: headers
            .iter()
            .map(|(n, v)| {
                Header::new(
                    Bytes::copy_from_slice(n.as_str().as_bytes()),
                    Bytes::copy_from_slice(v.as_bytes()),
                )
            })
            .collect::<Result<_, _>>()
            .map_err(|e| CoordError::InvalidHead(e.to_string()))?,
    })
}

/// The request body of a [`Job`], chunk by chunk as the client uploads it.
pub struct RequestBody {
    reader: Option<StreamReader>,
    /// Chunks [`try_complete`](Self::try_complete) read without finding the
    /// end: they were consumed from the reader, so [`chunk`](Self::chunk)
    /// must hand them out before reading on.
    ahead: VecDeque<Bytes>,
    /// Whether `chunk` has handed out bytes: the body is no longer whole.
    started: bool,
    done: bool,
}

impl RequestBody {
    /// The next chunk; `None` at the clean end. An abort (client gone, body
    /// too large, timeout) is an error, never a clean end.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, TailError>> {
        if let Some(bytes) = self.ahead.pop_front() {
            self.started = true;
            return Some(Ok(bytes));
        }
        if self.done {
            return None;
        }
        let reader = self.reader.as_mut()?;
        loop {
            match reader.next().await {
                Ok(slot) => match slot.kind {
                    SlotKind::Headers => continue,
                    SlotKind::Body => {
                        self.started = true;
                        return Some(Ok(slot.bytes));
                    }
                    SlotKind::End => {
                        self.done = true;
                        return None;
                    }
                },
                Err(e) => {
                    self.done = true;
                    return Some(Err(e.into()));
                }
            }
        }
    }

    /// The whole body, if it has already arrived (its end is published, the
    /// upload ended cleanly) and is at most `max` bytes; never waits. The
    /// body is then consumed: [`chunk`](Self::chunk) returns `None`. A body
    /// still arriving, longer than `max`, aborted, or partly read by `chunk`
    /// gives `None` and reads on as if this had not been called (an abort
    /// shows at the next `chunk`).
    pub fn try_complete(&mut self, max: usize) -> Option<Bytes> {
        if self.done || self.started {
            return None;
        }
        let reader = self.reader.as_mut()?;
        let mut held: usize = self.ahead.iter().map(Bytes::len).sum();
        // Reading ahead is bounded: at most one slot beyond `max` is kept.
        while held <= max {
            match reader.try_next() {
                Ok(Some(slot)) => match slot.kind {
                    SlotKind::Headers => {}
                    SlotKind::Body => {
                        held += slot.bytes.len();
                        self.ahead.push_back(slot.bytes);
                    }
                    SlotKind::End => {
                        self.done = true;
                        return Some(self.take_ahead(held));
                    }
                },
                // Not yet published, or aborted: a failed `try_next` does
                // not move the cursor, so `chunk` meets the same error.
                Ok(None) | Err(_) => return None,
            }
        }
        None
    }

    /// [`try_complete`](Self::try_complete), waiting up to `within` for a
    /// body still arriving to end: the whole body if it ends within that
    /// time and is at most `max` bytes, else `None` with nothing lost (what
    /// was read ahead comes first from [`chunk`](Self::chunk)). For the
    /// worker API's claims that carry a small body along.
    pub async fn complete_within(&mut self, max: usize, within: Duration) -> Option<Bytes> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(whole) = self.try_complete(max) {
                return Some(whole);
            }
            let held: usize = self.ahead.iter().map(Bytes::len).sum();
            if self.done || self.started || held > max {
                return None;
            }
            // `next` moves the cursor only once it has a slot: cancelled by
            // the deadline, it loses nothing; an abort stays for `chunk`.
            let reader = self.reader.as_mut()?;
            let slot = match tokio::time::timeout_at(deadline, reader.next()).await {
                Ok(Ok(slot)) => slot,
                Ok(Err(_)) | Err(_) => return None,
            };
            match slot.kind {
                SlotKind::Headers => {}
                SlotKind::Body => self.ahead.push_back(slot.bytes),
                SlotKind::End => {
                    self.done = true;
                    let len = self.ahead.iter().map(Bytes::len).sum();
                    return Some(self.take_ahead(len));
                }
            }
        }
    }

    fn take_ahead(&mut self, len: usize) -> Bytes {
        if self.ahead.len() <= 1 {
            return self.ahead.pop_front().unwrap_or_default();
        }
        let mut whole = BytesMut::with_capacity(len);
        for chunk in self.ahead.drain(..) {
            whole.extend_from_slice(&chunk);
        }
        whole.freeze()
    }

    /// The body as a `Stream` of chunks.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, TailError>> + Send {
        futures_util::stream::unfold(self, |mut body| async move {
            let item = body.chunk().await?;
            Some((item, body))
        })
    }
}

/// Writes a response body, streamed to the client as it is written.
/// Dropping it before [`finish`](Self::finish) resets the client's response.
pub struct ResponseWriter {
    writer: StreamWriter,
    slot_size: usize,
    idle: std::time::Duration,
}

impl ResponseWriter {
    /// Sends body bytes (split into slots; waits if the client reads
    /// slowly). A client that reads nothing for `response_idle_timeout_ms`
    /// aborts the response: [`CoordError::ClientStalled`].
    pub async fn send(&mut self, data: Bytes) -> Result<(), CoordError> {
        idle::append_response(&mut self.writer, data, self.slot_size, self.idle).await
    }

    /// Ends the response cleanly.
    pub async fn finish(mut self) -> Result<(), CoordError> {
        idle::end_response(&mut self.writer, self.idle).await
    }
}
