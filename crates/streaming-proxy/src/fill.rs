//! Fills: origin fetches published as chunk-cache streams, one per object slice (or
//! per object when the origin ignores ranges), shared by every concurrent reader.
//!
//! The coalescing rule follows pingora's cache lock: the first miss opens a stream,
//! registers it in the fill table and spawns the fill in its own task, so the fill
//! outlives the client that started it; later misses for the same slice register a
//! reader on the same stream, get the bytes already fetched and tail the rest. A fill
//! that fails aborts its stream: readers see `ReadError::Aborted`, never a clean end
//! (pingora issue 932), and the table entry is removed so the next miss tries again.
//!
//! Stream layout: slot 1 holds a [`StreamHead`] (TOML), then raw body bytes, then
//! the end marker. Rings are sized to hold a whole slice in typical chunk sizes so a
//! late joiner of a slice fill can always read from its first byte; if the ring did
//! wrap (tiny chunks, or a whole-object fill) the joiner waits for the fill to finish
//! and reads the stored pieces instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chunk_cache::{
    AbortReason, ChunkCache, ReadError, SlotKind, StreamId, StreamReader, StreamWriter,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::lock;
use crate::meta::{self, FOREVER, ObjectMeta};
use crate::proxy::Shared;
use crate::upstream::UpstreamError;

/// Largest chunk-cache slot: origin chunks bigger than this are split.
pub(crate) const SLOT_SIZE: usize = 64 * 1024;
/// Abort code a fill uses when the origin failed (as opposed to timed out).
const ORIGIN_FAILED: u16 = 502;

/// Slot 1 of a fill's stream: what the origin answered and which bytes follow.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StreamHead {
    /// Object offset of the first body byte in the stream.
    pub body_offset: u64,
    /// Object offset one past the last body byte, when known.
    pub body_end: Option<u64>,
    /// Not a storable object (error status, unknown length): relay status and body as is.
    pub relay: bool,
    /// The origin's head as object metadata (`cacheable` says whether it is stored).
    pub meta: ObjectMeta,
}

/// Progress of a fill as seen through the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FillState {
    Streaming(StreamId),
    Done,
    Failed(StatusCode),
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
    /// A fill in progress (or just finished) whose head has been read.
    Tail {
        reader: StreamReader,
        head: Box<StreamHead>,
        /// Object offset of the next body byte the reader returns.
        next: u64,
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
    /// A table whose streams can hold a whole `slice_size` slice each.
    pub fn new(max_fills: usize, slice_size: u64) -> Result<Self, chunk_cache::ConfigError> {
        // One ring position per KiB of slice: origin chunks are rarely smaller, so a
        // slice fill's ring does not wrap and late joiners read it from its start.
        let slots = usize::try_from(slice_size / 1024)
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
/// (if `may_fetch`) a new fill. `avoid` is a stream the caller could not read (its ring
/// wrapped): the caller then waits for that fill to end and uses the stored pieces.
pub(crate) async fn open(
    shared: &Arc<Shared>,
    key: &str,
    index: u64,
    may_fetch: bool,
    mut avoid: Option<StreamId>,
) -> Result<Source, OpenError> {
    let shared_key: Arc<str> = Arc::from(key);
    // A stream obtained by waiting for one to be freed, used on the next turn.
    let mut spare: Option<StreamWriter> = None;
    // Each turn either returns or sees a fill end; a few turns cover the races
    // (fill finishing between the checks, piece evicted right after being stored,
    // waiting for a free stream).
    'turns: for _ in 0..8 {
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
                    let writer = match spare.take() {
                        Some(writer) => writer,
                        None => match shared.fills.streams.try_open() {
                            Ok(writer) => writer,
                            Err(_) => break 'table None,
                        },
                    };
                    let id = writer.id();
                    let reader = shared
                        .fills
                        .streams
                        .register_reader(id)
                        .map_err(|_| OpenError::Busy)?;
                    let (tx, rx) = watch::channel(FillState::Streaming(id));
                    table.insert((shared_key.clone(), index), rx.clone());
                    let fill = Fill {
                        shared: shared.clone(),
                        key: shared_key.clone(),
                        index,
                        writer,
                        tx,
                        rx: rx.clone(),
                    };
                    tokio::spawn(fill.run());
                    Some((rx, Some(reader)))
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
        let reader = match reader {
            Some(reader) => reader,
            None => {
                let state = *rx.borrow_and_update();
                match state {
                    FillState::Streaming(id) if Some(id) != avoid => {
                        match shared.fills.streams.register_reader(id) {
                            // A late reader starts at the oldest slot still held
                            // (chunk-cache never blocks the writer on a slot it
                            // already freed); a tail must start at the head, so a
                            // wrapped fill is waited for and its pieces read instead.
                            Ok(reader) if reader.position() > 1 => {
                                avoid = Some(id);
                                continue;
                            }
                            Ok(reader) => reader,
                            Err(_) => continue, // released: finished, pieces stored
                        }
                    }
                    FillState::Streaming(_) => {
                        // Wait for the fill we could not tail to finish.
                        let _ = rx.wait_for(|s| !matches!(s, FillState::Streaming(_))).await;
                        avoid = None;
                        continue;
                    }
                    FillState::Done => continue,
                    FillState::Failed(status) => return Err(OpenError::Origin(status)),
                }
            }
        };
        return read_head(reader).await;
    }
    Err(OpenError::Busy)
}

async fn read_head(mut reader: StreamReader) -> Result<Source, OpenError> {
    let slot = reader.next().await.map_err(|e| match e {
        ReadError::Aborted(reason) => OpenError::Origin(abort_status(reason)),
        _ => OpenError::Origin(StatusCode::BAD_GATEWAY),
    })?;
    let head = std::str::from_utf8(&slot.bytes)
        .ok()
        .and_then(|t| toml::from_str::<StreamHead>(t).ok())
        .filter(|_| slot.kind == SlotKind::Headers)
        .ok_or(OpenError::Origin(StatusCode::BAD_GATEWAY))?;
    Ok(Source::Tail {
        reader,
        next: head.body_offset,
        head: Box::new(head),
    })
}

/// One origin fetch, run in its own task.
struct Fill {
    shared: Arc<Shared>,
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
                let _ = self.tx.send(FillState::Done);
            }
            Err(status) => {
                tracing::warn!(key = %self.key, index = self.index, %status, "fill failed");
                let reason = if status == StatusCode::GATEWAY_TIMEOUT {
                    AbortReason::Timeout
                } else {
                    AbortReason::Other(ORIGIN_FAILED)
                };
                self.writer.abort(reason);
                let _ = self.tx.send(FillState::Failed(status));
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
        let mut headers = HeaderMap::new();
        let range = format!("bytes={}-{}", start, start + slice - 1);
        if let Ok(value) = HeaderValue::from_str(&range) {
            headers.insert(header::RANGE, value);
        }
        // Stored bytes are served to every client, and byte ranges of a coded
        // body mean nothing to one that cannot decode it: ask for the plain bytes.
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        let answer = shared
            .upstream
            .send(Method::GET, &self.key, headers, web_service::Body::empty())
            .await
            .map_err(|e: UpstreamError| e.status())?;
        let (parts, mut body) = answer.into_parts();
        let head = self.head(&parts);
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
        let encoded = toml::to_string(&head).map_err(|_| StatusCode::BAD_GATEWAY)?;
        self.writer
            .add(1, Bytes::from(encoded))
            .await
            .map_err(|_| StatusCode::BAD_GATEWAY)?;

        let mut offset = head.body_offset;
        let mut piece = BytesMut::new();
        while let Some(frame) = body.frame().await {
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
            // Memory first, so a request arriving once this slice's bytes are out
            // finds it stored; the disk write waits until readers have the bytes.
            completed.retain(|(i, bytes)| {
                shared
                    .cache
                    .put_piece_memory(&self.key, *i, version, bytes.clone())
            });
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
        let fresh = meta::freshness(
            config.mode,
            parts.status.as_u16(),
            headers,
            total.is_some(),
            std::time::Duration::from_secs(config.default_ttl_secs),
        );
        let relay = total.is_none() || !parts.status.is_success();
        // Pieces are cut at slice borders: only an answer aligned on them is stored.
        let slice = config.slice_size;
        let aligned =
            offset % slice == 0 && end.is_some_and(|e| e % slice == 0 || Some(e) == total);
        StreamHead {
            body_offset: offset,
            body_end: end,
            relay,
            meta: ObjectMeta {
                key: self.key.to_string(),
                status: parts.status.as_u16(),
                headers: meta::stored_headers(headers),
                total,
                slice_size: config.slice_size,
                fresh_until: fresh.unwrap_or(0).min(FOREVER),
                cacheable: fresh.is_some() && !relay && aligned,
                stored_at: meta::now_secs(),
            },
        }
    }
}

/// `Content-Range: bytes s-e/total` as `(s, e, total)`.
fn content_range(headers: &HeaderMap) -> Option<(u64, u64, u64)> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (s, e) = range.split_once('-')?;
    let (s, e, t) = (s.parse().ok()?, e.parse().ok()?, total.parse().ok()?);
    (s <= e && e < t).then_some((s, e, t))
}
