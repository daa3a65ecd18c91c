//! `UploadResponseService`: the two caches, the table of requests in flight,
//! and the seed's coordination API on top of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chunk_cache::{
    AbortReason, ChunkCache, MemoryBudget, SlotKind, StreamId, StreamStatus, StreamWriter,
};
use http_pack::{Frame, Limits, RequestHead, ResponseHead};

use crate::clients::ClientTable;
use crate::dispatch::{Dispatch, Waiter};
use crate::entry::{Entry, ResponseSlot, lock};
use crate::error::{CoordError, ServiceError, TailError};
use crate::idle;
use crate::metrics::{Metrics, Snapshot};
use crate::{Job, Route, UploadResponseConfig, Worker, WorkerId};

/// A request in flight, as `GET /v1/streams` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StreamInfo {
    /// Stream id.
    pub id: u64,
    /// Request method.
    pub method: String,
    /// Request path and query.
    pub path: String,
    /// Last request slot published.
    pub request_last: u64,
    /// The request's end marker is written.
    pub request_done: bool,
    /// Worker owning the response, if claimed.
    pub response_owner: Option<String>,
    /// Workers reading the request.
    pub readers: usize,
    /// Milliseconds since the request arrived.
    pub age_ms: u64,
}

/// One slot of a request, as a worker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailSlot {
    /// Slot 1: the request head.
    Headers(RequestHead),
    /// A body slot (zero-copy).
    Body(Bytes),
    /// The end marker: the request body is complete.
    End,
}

pub(crate) struct Inner {
    pub(crate) config: UploadResponseConfig,
    pub(crate) requests: ChunkCache,
    pub(crate) responses: ChunkCache,
    pub(crate) streams: Mutex<HashMap<u64, Arc<Entry>>>,
    pub(crate) dispatch: Mutex<Dispatch>,
    pub(crate) metrics: Metrics,
    pub(crate) clients: Arc<ClientTable>,
}

/// Streams requests into a request cache for workers to tail, and their
/// responses through a response cache back to the client.
///
/// Cheap to clone (shared state). See the crate docs for a full example.
#[derive(Clone)]
pub struct UploadResponseService {
    pub(crate) inner: Arc<Inner>,
}

impl UploadResponseService {
    /// Builds the service and its two caches.
    pub fn new(config: UploadResponseConfig) -> Result<Self, ServiceError> {
        if config.slot_size_kb < 4 {
            return Err(ServiceError::SlotTooSmall);
        }
        if config.memory_budget < 4 * config.slot_size() as u64 {
            return Err(ServiceError::BudgetTooSmall);
        }
        let cache = config.cache_config();
        let budget = Arc::new(MemoryBudget::new(config.memory_budget, config.slot_size()));
        Ok(Self {
            inner: Arc::new(Inner {
                requests: ChunkCache::with_budget(
                    cache,
                    budget.clone(),
                    config.request_admission(),
                )?,
                responses: ChunkCache::with_budget(cache, budget, config.response_admission())?,
                clients: ClientTable::new(config.max_streams_per_client),
                config,
                streams: Mutex::new(HashMap::new()),
                dispatch: Mutex::new(Dispatch::default()),
                metrics: Metrics::new(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &UploadResponseConfig {
        &self.inner.config
    }

    /// The cache holding request streams.
    pub fn request_cache(&self) -> &ChunkCache {
        &self.inner.requests
    }

    /// The cache holding response streams.
    pub fn response_cache(&self) -> &ChunkCache {
        &self.inner.responses
    }

    /// The service's metrics in Prometheus text format.
    pub fn render_metrics(&self) -> String {
        let entries: Vec<Arc<Entry>> = lock(&self.inner.streams).values().cloned().collect();
        let mut by_state = [0; 3];
        for entry in &entries {
            let state = if entry.has_hold() {
                0
            } else if lock(&entry.response).started {
                2
            } else {
                1
            };
            by_state[state] += 1;
        }
        let budget = self.inner.requests.budget();
        self.inner.metrics.render(&Snapshot {
            in_flight: entries.len(),
            budget_used: budget.used(),
            budget_limit: budget.limit(),
            budget_waiting: budget.waiting(),
            by_state,
        })
    }

    /// Requests the ingress is serving right now.
    pub fn in_flight(&self) -> usize {
        lock(&self.inner.streams).len()
    }

    /// Ids of the requests in flight.
    pub fn stream_ids(&self) -> Vec<u64> {
        lock(&self.inner.streams).keys().copied().collect()
    }

    /// The requests in flight, oldest first.
    pub fn streams(&self) -> Vec<StreamInfo> {
        let entries: Vec<Arc<Entry>> = lock(&self.inner.streams).values().cloned().collect();
        let mut out: Vec<StreamInfo> = entries
            .iter()
            .map(|e| {
                let status = self.inner.requests.status(e.id);
                StreamInfo {
                    id: e.id.as_u64(),
                    method: e.head.method.to_string(),
                    path: e
                        .head
                        .path
                        .as_ref()
                        .map_or_else(String::new, |p| p.to_string()),
                    request_last: self.inner.requests.last(e.id).unwrap_or(0),
                    request_done: matches!(status, Ok(StreamStatus::Ended { .. })),
                    response_owner: lock(&e.response).owner.as_ref().map(|w| w.to_string()),
                    readers: self.reader_count(e.id.as_u64()).unwrap_or(0),
                    age_ms: e.created.elapsed().as_millis() as u64,
                }
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.age_ms));
        out
    }

    /// An in-process worker taking requests on `route`.
    pub fn worker(&self, id: impl Into<WorkerId>, route: Route) -> Worker {
        Worker::new(self.clone(), id.into(), route)
    }

    /// A reader of the chunk signatures of stream `stream_id` (what
    /// [`Job::chunk_signatures`] gives in process; the worker API's
    /// `GET /v1/streams/{id}/signatures` reads them): `None` if the request
    /// is not a signed S3 streaming upload.
    pub fn chunk_signatures(
        &self,
        stream_id: u64,
    ) -> Result<Option<crate::ChunkSignatures>, CoordError> {
        Ok(self.entry(stream_id)?.signatures.clone())
    }

    pub(crate) fn entry(&self, stream_id: u64) -> Result<Arc<Entry>, CoordError> {
        lock(&self.inner.streams)
            .get(&stream_id)
            .cloned()
            .ok_or(CoordError::UnknownStream(stream_id))
    }

    // ---- work discovery -------------------------------------------------

    /// Claims the oldest queued request on `route` for `worker`, if one is
    /// waiting; never waits.
    pub(crate) fn try_next_job(&self, worker: &WorkerId, route: &Route) -> Option<Job> {
        self.take_queued(&mut lock(&self.inner.dispatch), worker, route)
    }

    /// The oldest queued request on `route` that can still be claimed,
    /// claimed for `worker`.
    fn take_queued(&self, d: &mut Dispatch, worker: &WorkerId, route: &Route) -> Option<Job> {
        while let Some(entry) = d.take_pending(route) {
            if let Some(job) = self.assign(&entry, worker) {
                return Some(job);
            }
        }
        None
    }

    /// Waits for the next request on `route` and claims it for `worker`.
    pub(crate) async fn next_job(&self, worker: &WorkerId, route: &Route) -> Job {
        loop {
            let rx = {
                let mut d = lock(&self.inner.dispatch);
                if let Some(job) = self.take_queued(&mut d, worker, route) {
                    return job;
                }
                let (tx, rx) = tokio::sync::oneshot::channel();
                d.waiters.retain(|w| !w.tx.is_closed());
                d.waiters.push_back(Waiter {
                    worker: worker.clone(),
                    route: route.clone(),
                    tx,
                });
                rx
            };
            // The sender is dropped only if the service state is torn down.
            if let Ok(job) = rx.await {
                return job;
            }
        }
    }

    /// Hands `entry` to the first waiting worker whose route matches, or queues it.
    pub(crate) fn offer(&self, entry: Arc<Entry>) {
        let mut d = lock(&self.inner.dispatch);
        while let Some(pos) = d.waiters.iter().position(|w| w.route.matches(&entry.head)) {
            let Some(waiter) = d.waiters.remove(pos) else {
                break;
            };
            if waiter.tx.is_closed() {
                continue;
            }
            let Some(job) = self.assign(&entry, &waiter.worker) else {
                return; // claimed meanwhile, or closed: nothing to offer
            };
            match waiter.tx.send(job) {
                Ok(()) => return,
                // The worker stopped waiting between the check and the send.
                Err(job) => job.unassign(),
            }
        }
        d.pending.push_back(entry);
    }

    /// Claims `entry` for `worker`: owner of the response and a registered reader.
    pub(crate) fn assign(&self, entry: &Arc<Entry>, worker: &WorkerId) -> Option<Job> {
        let writer = {
            let mut slot = lock(&entry.response);
            if slot.owner.is_some() || slot.closed {
                return None;
            }
            let writer = slot.writer.take()?;
            self.mark_claimed(entry, &mut slot, worker.clone());
            writer
        };
        match self.inner.requests.register_reader(entry.id) {
            // A job must read the body from its first byte; while the hold
            // lives this cannot happen, and a body with a hole is never handed out.
            Ok(reader) if reader.position() > 2 => {
                let mut slot = lock(&entry.response);
                slot.owner = None;
                slot.closed = true;
                drop(slot);
                let mut writer = writer;
                writer.abort(AbortReason::WorkerGone);
                None
            }
            Ok(reader) => {
                lock(&entry.hold).take();
                Some(Job::new(
                    self.clone(),
                    entry.clone(),
                    worker.clone(),
                    reader,
                    writer,
                ))
            }
            Err(_) => {
                let mut slot = lock(&entry.response);
                slot.owner = None;
                slot.writer = Some(writer);
                None
            }
        }
    }

    /// Makes `worker` the response owner; the first claim of a request records its claim wait.
    fn mark_claimed(&self, entry: &Entry, slot: &mut ResponseSlot, worker: WorkerId) {
        slot.owner = Some(worker);
        if !slot.ever_claimed {
            slot.ever_claimed = true;
            self.inner.metrics.claimed_after(entry.created.elapsed());
        }
    }

    /// A claimer let go before writing response headers: offer the request to
    /// another worker if all of it is still retained, else fail it (502).
    pub(crate) fn give_back(&self, entry: &Arc<Entry>, writer: StreamWriter, reoffer: bool) {
        // Park a hold first, so nothing still retained is recycled before the next claim.
        // The hold starts at the oldest slot still retained: at slot 1 exactly when
        // the whole body from slot 2 on can still be read by the next claimer.
        let mut whole = false;
        if let Ok(hold) = self.inner.requests.register_hold(entry.id) {
            whole = hold.position() <= 2;
            *lock(&entry.hold) = Some(hold);
        }
        let intact = whole
            && !matches!(
                self.inner.requests.status(entry.id),
                Ok(StreamStatus::Aborted { .. }) | Err(_)
            );
        let mut slot = lock(&entry.response);
        slot.owner = None;
        if slot.closed || !intact {
            slot.closed = true;
            drop(slot);
            let mut writer = writer;
            writer.abort(AbortReason::WorkerGone);
            return;
        }
        slot.writer = Some(writer);
        drop(slot);
        if reoffer {
            self.offer(entry.clone());
        }
    }

    // ---- the seed's coordination API -----------------------------------

    /// Registers `worker` as a reader of the request: the ingress will not
    /// recycle a slot it has not consumed (see [`tail_request_for`](Self::tail_request_for)).
    pub fn register_reader(
        &self,
        stream_id: u64,
        worker: impl Into<WorkerId>,
    ) -> Result<(), CoordError> {
        let worker = worker.into();
        let entry = self.entry(stream_id)?;
        let mut readers = lock(&entry.readers);
        if readers.contains_key(&worker) {
            return Err(CoordError::AlreadyReading {
                stream: stream_id,
                worker: worker.to_string(),
            });
        }
        let reader = self.inner.requests.register_reader(entry.id)?;
        readers.insert(worker, reader);
        drop(readers);
        lock(&entry.hold).take();
        Ok(())
    }

    /// Removes a reader registration; `Ok(false)` if there was none.
    pub fn unregister_reader(
        &self,
        stream_id: u64,
        worker: impl Into<WorkerId>,
    ) -> Result<bool, CoordError> {
        let entry = self.entry(stream_id)?;
        Ok(lock(&entry.readers).remove(&worker.into()).is_some())
    }

    /// Workers registered as readers (claimers included). Lock-free: two atomic loads.
    pub fn reader_count(&self, stream_id: u64) -> Result<usize, CoordError> {
        let id = StreamId::from_u64(stream_id);
        let count = self.inner.requests.reader_count(id)?;
        // The ingress's own hold is not a worker.
        let hold = self.entry(stream_id)?.has_hold() as usize;
        Ok(count.saturating_sub(hold))
    }

    /// Whether any worker reads the request.
    pub fn has_readers(&self, stream_id: u64) -> Result<bool, CoordError> {
        Ok(self.reader_count(stream_id)? > 0)
    }

    /// Claims the response for `worker`: `Ok(true)` if it is now the one
    /// writer, `Ok(false)` if another worker holds it or the request is over.
    pub fn try_claim_response(
        &self,
        stream_id: u64,
        worker: impl Into<WorkerId>,
    ) -> Result<bool, CoordError> {
        let worker = worker.into();
        let entry = self.entry(stream_id)?;
        {
            let mut slot = lock(&entry.response);
            if slot.closed || slot.writer.is_none() {
                return Ok(slot.owner.as_ref() == Some(&worker));
            }
            match &slot.owner {
                Some(owner) => return Ok(*owner == worker),
                None => self.mark_claimed(&entry, &mut slot, worker),
            }
        }
        lock(&self.inner.dispatch).withdraw(&entry);
        Ok(true)
    }

    /// Claims stream `stream_id` for `worker` as a [`Job`] (owner of the
    /// response and a registered reader), taking it out of the dispatch
    /// queue: what the remote `POST /v1/streams/{id}/claim` does. `Ok(None)`
    /// if another worker owns the response or the request is over.
    pub fn claim_job(
        &self,
        stream_id: u64,
        worker: impl Into<WorkerId>,
    ) -> Result<Option<Job>, CoordError> {
        let entry = self.entry(stream_id)?;
        let job = self.assign(&entry, &worker.into());
        if job.is_some() {
            // A worker that took it from the queue meanwhile found it owned
            // and moved on; this only drops the stale queue entry.
            lock(&self.inner.dispatch).withdraw(&entry);
        }
        Ok(job)
    }

    /// Gives up the response claim. Before response headers the request is
    /// offered to another worker (or fails with 502 if part of it was already
    /// recycled); after them the client's response is reset.
    pub fn release_response(
        &self,
        stream_id: u64,
        worker: impl Into<WorkerId>,
    ) -> Result<(), CoordError> {
        let worker = worker.into();
        let entry = self.entry(stream_id)?;
        let (writer, started) = {
            let mut slot = lock(&entry.response);
            if slot.owner.as_ref() != Some(&worker) {
                return Err(CoordError::NotOwner {
                    stream: stream_id,
                    worker: worker.to_string(),
                });
            }
            let Some(writer) = slot.writer.take() else {
                return Err(CoordError::Busy(stream_id));
            };
            if slot.started {
                slot.closed = true;
            }
            (writer, slot.started)
        };
        if started {
            let mut writer = writer;
            writer.abort(AbortReason::WorkerGone);
        } else {
            self.give_back(&entry, writer, true);
        }
        Ok(())
    }

    /// Last published slot of the request stream (one atomic load).
    pub fn request_last(&self, stream_id: u64) -> Result<u64, CoordError> {
        Ok(self.inner.requests.last(StreamId::from_u64(stream_id))?)
    }

    /// Waits for request slot `slot` and returns it (unregistered: a slow
    /// caller may get `Evicted`).
    pub async fn tail_request(&self, stream_id: u64, slot: u64) -> Result<TailSlot, TailError> {
        let s = self
            .inner
            .requests
            .wait(StreamId::from_u64(stream_id), slot)
            .await?;
        match s.kind {
            SlotKind::Headers => decode_request_head(&s.bytes).map(TailSlot::Headers),
            SlotKind::Body => Ok(TailSlot::Body(s.bytes)),
            SlotKind::End => Ok(TailSlot::End),
        }
    }

    /// Like [`tail_request`](Self::tail_request), and marks every slot up to
    /// `slot` consumed by `worker`'s registration, letting the ingress move on.
    pub async fn tail_request_for(
        &self,
        stream_id: u64,
        worker: impl Into<WorkerId>,
        slot: u64,
    ) -> Result<TailSlot, TailError> {
        let worker = worker.into();
        let out = self.tail_request(stream_id, slot).await?;
        if let Ok(entry) = self.entry(stream_id)
            && let Some(reader) = lock(&entry.readers).get(&worker)
        {
            reader.consume_through(slot);
        }
        Ok(out)
    }

    /// Writes the response head (owner only, once).
    pub async fn write_response_headers(
        &self,
        stream_id: u64,
        worker: impl Into<WorkerId>,
        head: ResponseHead,
    ) -> Result<(), CoordError> {
        let worker = worker.into();
        let entry = self.entry(stream_id)?;
        let mut writer = take_writer(&entry, &worker, stream_id, Some(false))?;
        let frame = Frame::ResponseHeaders { stream_id, head };
        let result = writer.add(1, http_pack::to_bytes(&frame)).await;
        put_writer(&entry, writer, result.is_ok());
        result.map(drop).map_err(CoordError::from)
    }

    /// Appends response body bytes, split into slots (owner only, after the head).
    pub async fn append_response_body(
        &self,
        stream_id: u64,
        worker: impl Into<WorkerId>,
        body: Bytes,
    ) -> Result<(), CoordError> {
        let worker = worker.into();
        let entry = self.entry(stream_id)?;
        let mut writer = take_writer(&entry, &worker, stream_id, Some(true))?;
        let config = &self.inner.config;
        let result = idle::append_response(
            &mut writer,
            body,
            config.slot_size(),
            config.response_idle_timeout(),
        )
        .await;
        put_writer(&entry, writer, true);
        result
    }

    /// Writes the response end marker (owner only, after the head).
    pub async fn end_response(
        &self,
        stream_id: u64,
        worker: impl Into<WorkerId>,
    ) -> Result<(), CoordError> {
        let worker = worker.into();
        let entry = self.entry(stream_id)?;
        let mut writer = take_writer(&entry, &worker, stream_id, Some(true))?;
        let result =
            idle::end_response(&mut writer, self.inner.config.response_idle_timeout()).await;
        put_writer(&entry, writer, true);
        result
    }
}

/// Takes the response writer out of the slot for an async write.
/// `started`: `Some(x)` requires the headers to have (`true`) or not have (`false`) been written.
fn take_writer(
    entry: &Entry,
    worker: &WorkerId,
    stream_id: u64,
    started: Option<bool>,
) -> Result<StreamWriter, CoordError> {
    let mut slot = lock(&entry.response);
    if slot.owner.as_ref() != Some(worker) {
        return Err(CoordError::NotOwner {
            stream: stream_id,
            worker: worker.to_string(),
        });
    }
    match (started, slot.started) {
        (Some(false), true) => return Err(CoordError::HeadersSent(stream_id)),
        (Some(true), false) => return Err(CoordError::HeadersMissing(stream_id)),
        _ => {}
    }
    slot.writer.take().ok_or(CoordError::Busy(stream_id))
}

fn put_writer(entry: &Entry, writer: StreamWriter, started: bool) {
    let mut slot = lock(&entry.response);
    slot.started |= started;
    slot.writer = Some(writer);
}

/// Decodes the HPKS request head stored in slot 1.
pub(crate) fn decode_request_head(bytes: &Bytes) -> Result<RequestHead, TailError> {
    match http_pack::decode_frame(bytes, &Limits::default()) {
        Ok((Frame::RequestHeaders { head, .. }, _)) => Ok(head),
        Ok((other, _)) => Err(TailError::CorruptHead(format!(
            "slot 1 holds a {:?} frame",
            other.frame_type()
        ))),
        Err(e) => Err(TailError::CorruptHead(e.to_string())),
    }
}
