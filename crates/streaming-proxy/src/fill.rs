//! Fills: origin fetches published as chunk-cache streams, one per object slice (or
//! per object when the origin ignores ranges), shared by every concurrent reader.
//!
//! The coalescing rule follows pingora's cache lock: the first miss opens a stream,
//! registers it in the fill table and spawns the fill in its own task, so the fill
//! outlives the client that started it; later misses for the same slice follow the
//! same stream, get the bytes already fetched and tail the rest. A fill that fails
//! aborts its stream: readers see `ReadError::Aborted`, never a clean end (pingora
//! issue 932), and the table entry is removed so the next miss tries again.
//!
//! Stream layout: slot 1 is an empty headers slot, then raw body bytes, then the
//! end marker. The fill's [`StreamHead`] is not in the stream: it is a typed value
//! in the fill's state, published before slot 1 is written, so a reader that has
//! read slot 1 finds it there.
//!
//! Slow readers are isolated: readers of a stored (cacheable) answer follow the
//! stream *detached* ([`Follow::Detached`]: a lease keeps the ring, no cursor the
//! writer respects), so a fill proceeds at the origin's pace whatever its readers
//! do. A fill cuts its data at slice borders and stores each complete slice as a
//! piece (a whole-object fill from an origin without ranges too), and its state
//! says up to where its slices are complete. A reader the ring laps
//! (`ReadError::Evicted`), or a late joiner of a ring that already wrapped, waits
//! for its slice to be complete and continues from the stored piece; if the piece
//! could not be kept (no room in L1 and L2), [`Source::Own`] tells it to fetch the
//! rest itself (so does a later missing slice, once a whole-object fill lapped it:
//! another whole-object fill would lose the pieces it needs again). Only the one
//! reader of an answer that is not stored is registered ([`Follow::Paced`]):
//! nothing could replace bytes it missed, and it is the only one the fetch serves,
//! so the fetch follows its pace like a pass-through. Rings are sized to hold a
//! whole slice in typical chunk sizes, so a late joiner of a slice fill can
//! usually read it from its first byte. The lease a detached reader holds keeps a
//! finished fill's ring allocated until that reader has read it (see the
//! limits in docs/streaming-proxy.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chunk_cache::{
    AbortReason, ChunkCache, ReadError, Slot, SlotKind, StreamId, StreamLease, StreamReader,
    StreamWriter,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use tokio::sync::watch;

use crate::lock;
use crate::meta::{self, ObjectMeta};
use crate::policy::{self, Directives};
use crate::proxy::Shared;
use crate::upstream::UpstreamError;

/// Largest chunk-cache slot: origin chunks bigger than this are split.
pub(crate) const SLOT_SIZE: usize = 64 * 1024;
/// Abort code a fill uses when the origin failed (as opposed to timed out).
const ORIGIN_FAILED: u16 = 502;

/// What the origin answered a fill and which bytes its stream holds.
#[derive(Debug, Clone)]
pub(crate) struct StreamHead {
    /// Object offset of the first body byte in the stream.
    pub body_offset: u64,
    /// Object offset one past the last body byte, when known.
    pub body_end: Option<u64>,
    /// Not a storable object (error status, unknown length): relay status and body as is.
    pub relay: bool,
    /// The origin's head as object metadata (`cacheable` says whether it is stored).
    pub meta: ObjectMeta,
    /// Fields of the answer that are not stored (`Set-Cookie` with
    /// `store_set_cookie`): sent to the client that started the fill only.
    pub owner_headers: Vec<(String, String)>,
}

/// What a fill asks the origin for, taken from the client that started it.
#[derive(Debug)]
pub(crate) struct Want {
    /// Request path and query.
    pub path: String,
    /// The client's forwarded headers, prepared for fills ([`crate::forward::for_fill`]).
    pub headers: HeaderMap,
    /// The client's `Cache-Control` (its `no-store` forbids storing the answer).
    pub directives: Directives,
}

/// Where a fill is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Streaming(StreamId),
    Done,
    Failed(StatusCode),
}

/// A fill's state, owned by the fill and seen by its readers through the table.
#[derive(Debug, Clone)]
struct FillState {
    phase: Phase,
    /// The origin's answer head, once it arrived (kept after the fill ends).
    head: Option<Arc<StreamHead>>,
    /// Object offset below which every slice this fill covers is complete and was
    /// offered to the cache (stored, unless the cache had no room for it).
    complete_to: u64,
}

/// A reader's view of a fill's state: whether its slice is complete yet.
struct FillWatch(watch::Receiver<FillState>);

impl FillWatch {
    /// Waits until the slice holding object offset `pos` is complete (its piece
    /// offered to the cache) or the fill has ended; false if the fill failed.
    async fn slice_complete(&mut self, pos: u64, slice_size: u64) -> bool {
        let end = (pos / slice_size + 1).saturating_mul(slice_size);
        let state = self
            .0
            .wait_for(|s| {
                let total = s.head.as_ref().and_then(|h| h.meta.total);
                s.complete_to >= total.map_or(end, |t| t.min(end))
                    || !matches!(s.phase, Phase::Streaming(_))
            })
            .await;
        state.is_ok_and(|s| !matches!(s.phase, Phase::Failed(_)))
    }
}

/// How a reader follows a fill's stream.
pub(crate) enum Follow {
    /// Registered: the fill waits for this reader once its ring is full. Only the
    /// one reader of an answer that is not stored follows this way.
    Paced(StreamReader),
    /// Not registered (a lease keeps the ring): the fill never waits for it, and
    /// a reader the ring laps gets `ReadError::Evicted`.
    Detached {
        streams: ChunkCache,
        lease: StreamLease,
        next: u64,
    },
}

impl Follow {
    /// Follows stream `id` from slot 1 if none of its body slots was overwritten
    /// yet; `Ok(None)` if the ring already wrapped (the bytes it starts with are gone).
    fn join(streams: &ChunkCache, id: StreamId) -> Result<Option<Self>, chunk_cache::StreamError> {
        let lease = streams.lease(id)?;
        if streams.oldest_retained(id)? > 2 {
            return Ok(None);
        }
        Ok(Some(Self::Detached {
            streams: streams.clone(),
            lease,
            next: 1,
        }))
    }

    /// Stops holding the writer back: the reader goes on from where it is.
    fn detach(self, streams: &ChunkCache) -> Self {
        match self {
            Self::Paced(reader) => match streams.lease(reader.id()) {
                Ok(lease) => Self::Detached {
                    streams: streams.clone(),
                    lease,
                    next: reader.position(),
                },
                // Released: nothing left to read; the registered reader reports it.
                Err(_) => Self::Paced(reader),
            },
            detached => detached,
        }
    }

    /// The stream followed.
    pub fn id(&self) -> StreamId {
        match self {
            Self::Paced(reader) => reader.id(),
            Self::Detached { lease, .. } => lease.id(),
        }
    }

    /// The next slot, waiting for it.
    pub async fn next(&mut self) -> Result<Slot, ReadError> {
        match self {
            Self::Paced(reader) => reader.next().await,
            Self::Detached {
                streams,
                lease,
                next,
            } => {
                let slot = streams.wait(lease.id(), *next).await?;
                *next += 1;
                Ok(slot)
            }
        }
    }
}

// One `Arc` of the key per fill, shared by all its entries (a whole-object fill has
// one per slice).
type Table = HashMap<(Arc<str>, u64), watch::Receiver<FillState>>;

/// Fills in progress and the chunk-cache their streams live in.
#[derive(Debug)]
pub(crate) struct Fills {
    table: Mutex<Table>,
    streams: ChunkCache,
}

/// Where the bytes of one slice come from.
pub(crate) enum Source {
    /// A stored piece starting at object offset `start`.
    Piece { bytes: Bytes, start: u64 },
    /// The slice's fill could not be followed and its piece is not stored (the
    /// cache had no room for it): the reader fetches the bytes itself.
    Own,
    /// A fill in progress (or just finished) whose head has been read.
    Tail {
        reader: Follow,
        head: Box<StreamHead>,
        /// Object offset of the next body byte the reader returns.
        next: u64,
        /// This request started the fill (its headers went to the origin).
        started: bool,
    },
}

/// Why no source could be opened for a slice.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// The origin failed before sending a head (`502`) or timed out (`504`).
    #[error("origin failed: {0}")]
    Origin(StatusCode),
    /// Not stored and the mode forbids contacting the origin.
    #[error("not in cache (replay mode)")]
    NotCached,
    /// Every fill stream is in use.
    #[error("too many fills in progress")]
    Busy,
}

impl OpenError {
    /// The status for a client whose request fails this way before its head is sent.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Origin(status) => *status,
            Self::NotCached => StatusCode::GATEWAY_TIMEOUT,
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The status a reader reports for an aborted fill.
pub(crate) fn abort_status(reason: AbortReason) -> StatusCode {
    match reason {
        AbortReason::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

impl Fills {
    /// A table whose streams hold about a `slice_size` slice each.
    pub fn new(max_fills: usize, slice_size: u64) -> Result<Self, chunk_cache::ConfigError> {
        // One ring position per 16 KiB of slice: a ring holds a slice of 16 KiB
        // chunks (a common origin chunk), so late joiners of a slice fill usually
        // read it from its start, and at most four slices' worth of bytes (full
        // 64 KiB slots). Nothing needs more: a reader the ring laps goes on from
        // the stored piece. (One position per KiB made the ring of a whole-object
        // fill streaming in full slots hold up to 64 slices.)
        let slots = usize::try_from(slice_size / (16 * 1024))
            .unwrap_or(usize::MAX / 2)
            .max(62)
            + 2;
        let config = chunk_cache::CacheConfig::new(max_fills, SLOT_SIZE, slots);
        Ok(Self {
            table: Mutex::new(HashMap::new()),
            streams: ChunkCache::new(config)?,
        })
    }
}

/// Opens the bytes of slice `index` of `key`: a stored piece, a fill in progress, or
/// (if `may_fetch`) a new fill. `avoid` is a stream the caller could not read (the
/// ring lapped it): the caller then waits for the slice to be complete and uses its
/// piece, or [`Source::Own`] when the piece could not be stored. `lapped` says the
/// caller was lapped by a whole-object fill of this object before: a missing piece
/// is then [`Source::Own`] too, since a new fill of a no-range origin would fetch
/// the whole object again only to lose the pieces this caller needs once more.
pub(crate) async fn open(
    shared: &Arc<Shared>,
    want: &Arc<Want>,
    index: u64,
    may_fetch: bool,
    mut avoid: Option<StreamId>,
    lapped: bool,
) -> Result<Source, OpenError> {
    // A stream obtained by waiting for one to be freed, used on the next turn.
    let mut spare: Option<StreamWriter> = None;
    // A fill of this slice was lapped by (or wrapped before) the caller: the slice
    // is complete, so a missing piece means the cache could not keep it, and a
    // new fill would only store it again for nobody.
    let lost = lapped || avoid.is_some();
    // Each turn either returns or sees a fill end; a few turns cover the races
    // (fill finishing between the checks, piece evicted right after being stored,
    // waiting for a free stream).
    'turns: for _ in 0..8 {
        // Again each turn: a fill may have just learnt that the object varies.
        let key = &shared.key_for(&want.path, &want.headers);
        let shared_key: Arc<str> = Arc::from(key.as_str());
        if let Some(meta) = shared.cache.meta(key)
            && let Some(bytes) = shared.cache.get_piece(key, index).await
        {
            let start = index * meta.slice_size;
            return Ok(Source::Piece { bytes, start });
        }
        let opened = 'table: {
            let mut table = lock(&shared.fills.table);
            match table.get(&(shared_key.clone(), index)) {
                Some(rx) => Some((rx.clone(), None)),
                None => {
                    if shared.cache.meta(key).is_some() && shared.cache.has_piece(key, index) {
                        continue 'turns; // stored since the check above
                    }
                    if !may_fetch {
                        return Err(OpenError::NotCached);
                    }
                    if lost {
                        return Ok(Source::Own);
                    }
                    let writer = match spare.take() {
                        Some(writer) => writer,
                        None => match shared.fills.streams.try_open() {
                            Ok(writer) => writer,
                            Err(_) => break 'table None,
                        },
                    };
                    let id = writer.id();
                    // Registered until its head says whether the answer is stored
                    // (then `read_head` detaches it): a reader of an answer that is
                    // not stored must not miss a byte.
                    let reader = shared
                        .fills
                        .streams
                        .register_reader(id)
                        .map_err(|_| OpenError::Busy)?;
                    let (tx, rx) = watch::channel(FillState {
                        phase: Phase::Streaming(id),
                        head: None,
                        complete_to: 0,
                    });
                    table.insert((shared_key.clone(), index), rx.clone());
                    let fill = Fill {
                        shared: shared.clone(),
                        want: want.clone(),
                        key: shared_key.clone(),
                        index,
                        writer,
                        tx,
                        rx: rx.clone(),
                    };
                    tokio::spawn(fill.run());
                    Some((rx, Some(Follow::Paced(reader))))
                }
            }
        };
        let Some((mut rx, reader)) = opened else {
            // Every stream is filling: wait (bounded like an origin answer) for one
            // to be freed rather than fail, then look again: the fill may have been
            // started, or the piece stored, meanwhile.
            let timeout = Duration::from_secs(shared.config.upstream_timeout_secs);
            let writer = tokio::time::timeout(timeout, shared.fills.streams.open())
                .await
                .map_err(|_| OpenError::Busy)?;
            spare = Some(writer);
            continue;
        };
        let reader_is_new = reader.is_some();
        let reader = match reader {
            Some(reader) => reader,
            None => {
                let phase = rx.borrow_and_update().phase;
                match phase {
                    Phase::Streaming(id) if Some(id) != avoid => {
                        match Follow::join(&shared.fills.streams, id) {
                            Ok(Some(follow)) => follow,
                            // A tail must start at the head: the bytes of a wrapped
                            // ring are read from the pieces instead.
                            Ok(None) => {
                                avoid = Some(id);
                                continue;
                            }
                            Err(_) => continue, // released: finished, pieces stored
                        }
                    }
                    Phase::Streaming(_) => {
                        // Only this slice is waited for, never the whole fill.
                        let slice = shared.config.slice_size;
                        let mut watch = FillWatch(rx);
                        if !watch.slice_complete(index * slice, slice).await {
                            continue; // failed: the next turn sees it
                        }
                        if let Some(meta) = shared.cache.meta(key)
                            && let Some(bytes) = shared.cache.get_piece(key, index).await
                        {
                            let start = index * meta.slice_size;
                            return Ok(Source::Piece { bytes, start });
                        }
                        return Ok(Source::Own);
                    }
                    Phase::Done => continue,
                    Phase::Failed(status) => return Err(OpenError::Origin(status)),
                }
            }
        };
        let started = reader_is_new;
        let source = read_head(&shared.fills.streams, reader, &rx, started).await?;
        if let Source::Tail { head, .. } = &source
            && !started
            && !shareable(head, want)
        {
            // Not this client's answer: the fill re-keyed itself to its variant,
            // or unregistered an answer it will not share; the next turn finds
            // this client's own.
            continue;
        }
        return Ok(source);
    }
    Err(OpenError::Busy)
}

/// Whether a fill another client started may answer `want`: a stored answer
/// whose variant (RFC 9111 §4.1) is `want`'s.
fn shareable(head: &StreamHead, want: &Want) -> bool {
    let fields: Vec<String> = head.meta.vary.iter().map(|(n, _)| n.clone()).collect();
    head.meta.cacheable && policy::selecting(&fields, &want.headers) == head.meta.vary
}

async fn read_head(
    streams: &ChunkCache,
    mut reader: Follow,
    state: &watch::Receiver<FillState>,
    started: bool,
) -> Result<Source, OpenError> {
    let slot = reader.next().await.map_err(|e| match e {
        ReadError::Aborted(reason) => OpenError::Origin(abort_status(reason)),
        _ => OpenError::Origin(StatusCode::BAD_GATEWAY),
    })?;
    // Published before slot 1 was written: present once slot 1 was read.
    let head = state
        .borrow()
        .head
        .clone()
        .filter(|_| slot.kind == SlotKind::Headers)
        .ok_or(OpenError::Origin(StatusCode::BAD_GATEWAY))?;
    if head.meta.cacheable {
        // Stored as it streams: whatever this reader misses is in the pieces, so
        // it must never hold the fill (or the other readers) back.
        reader = reader.detach(streams);
    }
    Ok(Source::Tail {
        reader,
        next: head.body_offset,
        head: Box::new(StreamHead::clone(&head)),
        started,
    })
}

/// One origin fetch, run in its own task.
struct Fill {
    shared: Arc<Shared>,
    want: Arc<Want>,
    /// Where the answer is stored: the path, or its variant's key once the
    /// origin's `Vary` is known.
    key: Arc<str>,
    index: u64,
    writer: StreamWriter,
    tx: watch::Sender<FillState>,
    rx: watch::Receiver<FillState>,
}

/// Keeps the in-progress gauge right however the fill ends.
struct GaugeGuard(Arc<Shared>);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.metrics.fills_in_progress.dec();
    }
}

impl Fill {
    async fn run(mut self) {
        self.shared.metrics.fills_in_progress.inc();
        let _gauge = GaugeGuard(self.shared.clone());
        match self.fetch().await {
            Ok(()) => {
                self.tx.send_modify(|s| s.phase = Phase::Done);
            }
            Err(status) => {
                tracing::warn!(key = %self.key, index = self.index, %status, "fill failed");
                let reason = if status == StatusCode::GATEWAY_TIMEOUT {
                    AbortReason::Timeout
                } else {
                    AbortReason::Other(ORIGIN_FAILED)
                };
                self.writer.abort(reason);
                self.tx.send_modify(|s| s.phase = Phase::Failed(status));
            }
        }
        self.unregister(None);
    }

    /// Removes this fill's table entries (all of them, or only slice `only`).
    fn unregister(&self, only: Option<u64>) {
        lock(&self.shared.fills.table).retain(|(k, i), rx| {
            !(k == &self.key && only.is_none_or(|o| o == *i) && rx.same_channel(&self.rx))
        });
    }

    async fn fetch(&mut self) -> Result<(), StatusCode> {
        let shared = self.shared.clone();
        let slice = shared.config.slice_size;
        let start = self.index * slice;
        // The starting client's headers (`want.headers` asks for identity coding:
        // byte ranges of a coded body mean nothing to a client that cannot decode
        // it), and the slice.
        let mut headers = self.want.headers.clone();
        let range = format!("bytes={}-{}", start, start + slice - 1);
        if let Ok(value) = HeaderValue::from_str(&range) {
            headers.insert(header::RANGE, value);
        }
        // A slice of a stored object must be of its version (RFC 9110 §13.1.1,
        // §13.1.4): the origin answers 412 if it changed, never another version.
        let version = shared.cache.meta(&self.key);
        if let Some((name, value)) = version.as_deref().and_then(version_condition) {
            headers.insert(name, value);
        }
        let answer = shared
            .upstream
            .send(
                Method::GET,
                &self.want.path,
                headers,
                web_service::Body::empty(),
            )
            .await
            .map_err(|e: UpstreamError| e.status())?;
        let (parts, mut body) = answer.into_parts();
        if parts.status == StatusCode::PRECONDITION_FAILED
            && let Some(old) = &version
        {
            // The stored version is gone at the origin: so are its pieces. The
            // readers see a relayed 412 (an error end for a response under way).
            tracing::info!(key = %self.key, "origin object changed: stored version dropped");
            shared.cache.purge(&old.key).await;
        }
        let head = self.head(&parts);
        if *head.meta.key != *self.key {
            // The answer varies: it belongs under its variant's key, where later
            // requests of the same variant look for it.
            self.unregister(None);
            self.key = Arc::from(head.meta.key.as_str());
            lock(&shared.fills.table)
                .entry((self.key.clone(), self.index))
                .or_insert_with(|| self.rx.clone());
        }
        let version = head.meta.version();
        tracing::debug!(key = %self.key, index = self.index, status = %parts.status, relay = head.relay, "fill head");
        if head.meta.cacheable {
            let mut object = head.meta.clone();
            object.status = 200;
            // Every slice fill brings the head again: write it only when it is news.
            if shared
                .cache
                .meta(&self.key)
                .is_none_or(|old| !old.same_object(&object))
            {
                shared.cache.put_meta(object).await;
            }
            if head.body_offset == 0 && head.body_end == head.meta.total {
                // A whole-object answer: it serves every slice of the object.
                let mut table = lock(&shared.fills.table);
                for i in 0..head.meta.slices() {
                    table
                        .entry((self.key.clone(), i))
                        .or_insert_with(|| self.rx.clone());
                }
            }
        } else {
            // Not shareable beyond the readers already attached: later requests go
            // to the origin themselves.
            self.unregister(None);
        }
        let published = Arc::new(head.clone());
        self.tx.send_modify(|s| s.head = Some(published));
        self.writer
            .add(1, Bytes::new())
            .await
            .map_err(|_| StatusCode::BAD_GATEWAY)?;

        let mut offset = head.body_offset;
        let mut piece = BytesMut::new();
        let idle = Duration::from_secs(shared.config.upstream_body_idle_secs);
        loop {
            let Ok(frame) = tokio::time::timeout(idle, body.frame()).await else {
                tracing::warn!(key = %self.key, ?idle, "origin body idle: fill ended");
                return Err(StatusCode::GATEWAY_TIMEOUT);
            };
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| {
                tracing::warn!(key = %self.key, error = %e, "origin body failed");
                StatusCode::BAD_GATEWAY
            })?;
            let Ok(mut data) = frame.into_data() else {
                continue;
            };
            shared.metrics.bytes_from_origin.inc_by(data.len() as u64);
            if head
                .body_end
                .is_some_and(|end| offset + data.len() as u64 > end)
            {
                return Err(StatusCode::BAD_GATEWAY); // more than announced
            }
            // Cut at slice borders: each completed slice becomes a piece.
            let mut completed = Vec::new();
            if head.meta.cacheable {
                let mut rest = data.clone();
                let mut at = offset;
                while !rest.is_empty() {
                    let border = (at / slice + 1) * slice;
                    let take = rest.len().min((border - at) as usize);
                    if piece.is_empty() {
                        // Exactly one piece per allocation: a grown, shared buffer
                        // would make L1 hold more memory than it accounts for.
                        let end = head.meta.total.map_or(border, |t| t.min(border));
                        piece = BytesMut::with_capacity((end - at) as usize);
                    }
                    piece.extend_from_slice(&rest.split_to(take));
                    at += take as u64;
                    if at == border || Some(at) == head.meta.total {
                        completed.push(((at - 1) / slice, piece.split().freeze()));
                    }
                }
            }
            offset += data.len() as u64;
            let complete_to = completed
                .last()
                .map(|(i, bytes)| i * slice + bytes.len() as u64);
            // Memory first, so a request arriving once this slice's bytes are out
            // finds it stored; the disk write waits until readers have the bytes.
            completed.retain(|(i, bytes)| {
                shared
                    .cache
                    .put_piece_memory(&self.key, *i, version, bytes.clone())
            });
            if let Some(to) = complete_to {
                // Readers the ring lapped continue from these pieces.
                self.tx.send_modify(|s| s.complete_to = to);
            }
            while !data.is_empty() {
                let part = data.split_to(data.len().min(SLOT_SIZE));
                self.writer
                    .append(part)
                    .await
                    .map_err(|_| StatusCode::BAD_GATEWAY)?;
            }
            for (i, bytes) in completed {
                shared
                    .cache
                    .put_piece_disk(&self.key, i, version, bytes)
                    .await;
                if i != self.index {
                    self.unregister(Some(i));
                }
            }
            let readers = shared.fills.streams.reader_count(self.writer.id());
            if !head.meta.cacheable && readers.is_ok_and(|n| n == 0) {
                // Nobody reads and nothing is stored: fetching on would be waste.
                tracing::debug!(key = %self.key, "uncacheable fill without readers: stopped");
                self.writer.abort(AbortReason::ClientGone);
                return Ok(());
            }
        }
        if head.body_end.is_some_and(|end| offset != end) {
            tracing::warn!(key = %self.key, offset, "origin body ended short");
            return Err(StatusCode::BAD_GATEWAY);
        }
        self.writer
            .end()
            .await
            .map_err(|_| StatusCode::BAD_GATEWAY)?;
        Ok(())
    }

    /// Interprets the origin's answer head.
    fn head(&self, parts: &http::response::Parts) -> StreamHead {
        let config = &self.shared.config;
        let headers = &parts.headers;
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let (offset, end, total) = match parts.status {
            StatusCode::PARTIAL_CONTENT => match content_range(headers) {
                Some((s, e, t)) => (s, Some(e + 1), Some(t)),
                None => (0, length, None),
            },
            StatusCode::OK => (0, length, length),
            _ => (0, length, None),
        };
        let now = meta::now_secs();
        let storage = policy::storable(
            self.shared.settings(),
            &self.want.directives,
            parts.status.as_u16(),
            headers,
            total.is_some(),
            now,
        );
        let relay = total.is_none() || !parts.status.is_success();
        // Pieces are cut at slice borders: only an answer aligned on them is stored.
        let slice = config.slice_size;
        let aligned =
            offset % slice == 0 && end.is_some_and(|e| e % slice == 0 || Some(e) == total);
        let path = &self.want.path;
        // Stored copies are identity-coded (see `meta::identity_coded`), so
        // `Accept-Encoding` selects nothing among them.
        let (key, vary, varies_ok) = match policy::vary(headers) {
            policy::Vary::Fields(fields) => {
                let selected = policy::selecting(&fields, &self.want.headers);
                let key = policy::variant_key(path, &selected);
                (key, selected, meta::identity_coded(headers))
            }
            policy::Vary::None | policy::Vary::Star => (path.clone(), Vec::new(), true),
        };
        let mut cacheable = storage.is_some() && !relay && aligned && varies_ok;
        if cacheable {
            let fields: Vec<String> = vary.iter().map(|(n, _)| n.clone()).collect();
            // A bounded index: beyond it the answer is not stored.
            cacheable = self.shared.note_variant(path, &fields, &key);
        }
        let strip = storage.as_ref().map_or(&[][..], |s| &s.strip[..]);
        let (stored, owner_headers) = if cacheable {
            let all = meta::stored_headers(headers, &[]);
            let (owner, stored): (Vec<_>, Vec<_>) = all
                .into_iter()
                .partition(|(n, _)| strip.iter().any(|s| s.as_str().eq_ignore_ascii_case(n)));
            // The starter's own answer carries them all; nobody else's does.
            (stored, owner)
        } else {
            (meta::stored_headers(headers, &[]), Vec::new())
        };
        StreamHead {
            body_offset: offset,
            body_end: end,
            relay,
            owner_headers,
            meta: ObjectMeta {
                key,
                status: parts.status.as_u16(),
                headers: stored,
                total,
                slice_size: config.slice_size,
                fresh_until: storage.map_or(0, |s| s.fresh_until),
                cacheable,
                stored_at: now,
                vary,
                parsed: Default::default(),
            },
        }
    }
}

/// The condition that pins a fetch to `meta`'s version: `If-Match` with a strong
/// `ETag`, else `If-Unmodified-Since` with `Last-Modified`.
pub(crate) fn version_condition(meta: &ObjectMeta) -> Option<(header::HeaderName, HeaderValue)> {
    if let Some(etag) = meta.etag().filter(|e| !e.trim_start().starts_with("W/")) {
        return Some((header::IF_MATCH, HeaderValue::from_str(etag).ok()?));
    }
    let modified = meta.last_modified()?;
    Some((
        header::IF_UNMODIFIED_SINCE,
        HeaderValue::from_str(modified).ok()?,
    ))
}

/// `Content-Range: bytes s-e/total` as `(s, e, total)`.
pub(crate) fn content_range(headers: &HeaderMap) -> Option<(u64, u64, u64)> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (s, e) = range.split_once('-')?;
    let (s, e, t) = (s.parse().ok()?, e.parse().ok()?, total.parse().ok()?);
    (s <= e && e < t).then_some((s, e, t))
}
