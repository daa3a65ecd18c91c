//! Response bodies: the requested byte range assembled slice by slice from stored
//! pieces and fills in progress, the next slice opened while the current one streams.
//! A body the fill's ring lapped goes on from the stored pieces, or from an origin
//! fetch of its own when its slice could not be stored (see `fill`'s docs).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chunk_cache::{ReadError, SlotKind, StreamId};
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use tokio::task::JoinHandle;
use web_service::Body;

use crate::fill::{self, Follow, OpenError, Source, Want, abort_status};
use crate::meta::ObjectMeta;
use crate::proxy::Shared;

/// Produces bytes `[pos, end)` of an object.
pub(crate) struct RangeBody {
    shared: Arc<Shared>,
    want: Arc<Want>,
    /// The object being served: every source must be this version.
    meta: Arc<ObjectMeta>,
    slice_size: u64,
    pos: u64,
    end: u64,
    may_fetch: bool,
    source: Option<Source>,
    /// The next slice, opened in the background while this one streams, so a
    /// miss spanning slices never waits a full origin round trip between them.
    ahead: Option<(u64, JoinHandle<Result<Source, OpenError>>)>,
    /// Highest slice index a prefetch was started for.
    prefetched: Option<u64>,
    /// This body's own origin fetch of the rest of its range, once a slice it
    /// needed could neither be followed nor stored.
    own: Option<OwnFetch>,
    /// A whole-object fill (origin without ranges) lapped this body: slices the
    /// cache lost are fetched by this body, not by new whole-object fills.
    lapped: bool,
    failed: bool,
}

/// An origin answer read by one body only, for bytes the cache could not keep.
struct OwnFetch {
    body: hyper::body::Incoming,
    /// Object offset of the next byte `body` gives.
    next: u64,
}

/// Largest frame cut from a stored piece: a slow client then holds its write (and
/// its idle timer) for a frame's worth of bytes, not a whole slice's.
const PIECE_FRAME: usize = 64 * 1024;

fn broken(what: impl std::fmt::Display) -> io::Error {
    io::Error::other(what.to_string())
}

impl RangeBody {
    /// Bytes `[start, end)` of `meta`'s object, fetched as `want` asks when
    /// missing; `first` is a source already opened (the fill whose head decided
    /// the response).
    pub fn new(
        shared: Arc<Shared>,
        want: Arc<Want>,
        meta: Arc<ObjectMeta>,
        (start, end): (u64, u64),
        may_fetch: bool,
        first: Option<Source>,
    ) -> Self {
        Self {
            shared,
            want,
            slice_size: meta.slice_size,
            meta,
            pos: start,
            end,
            may_fetch,
            source: first,
            ahead: None,
            prefetched: None,
            own: None,
            lapped: false,
            failed: false,
        }
    }

    /// Starts opening slice `index` in the background (reading it from the cache or,
    /// if allowed, fetching it) when it is part of the range. At most one slice
    /// ahead: enough to hide the origin's or the disk's latency, and the memory
    /// stays one extra slice per reader.
    fn prefetch(&mut self, index: u64) {
        if self.ahead.is_some()
            || self.prefetched.is_some_and(|p| p >= index)
            || index.saturating_mul(self.slice_size) >= self.end
        {
            return;
        }
        self.prefetched = Some(index);
        // Stored pieces too: one on disk is read (and checked) while this one is
        // being sent; one in memory costs a task and nothing else.
        let (shared, want) = (self.shared.clone(), self.want.clone());
        let (may_fetch, lapped) = (self.may_fetch, self.lapped);
        let open = async move { fill::open(&shared, &want, index, may_fetch, None, lapped).await };
        self.ahead = Some((index, tokio::spawn(open)));
    }

    /// Opens slice `index`: the prefetched source if it is that slice, else now.
    async fn open(&mut self, index: u64, avoid: Option<StreamId>) -> Result<Source, io::Error> {
        // A prefetch of another slice (or one whose stream must be avoided) is
        // dropped: the detached task still completes the fill for others.
        if let Some((ahead, handle)) = self.ahead.take()
            && ahead == index
            && avoid.is_none()
        {
            return match handle.await {
                Ok(opened) => opened.map_err(broken),
                Err(e) => Err(broken(format!("prefetch of slice {index} failed: {e}"))),
            };
        }
        fill::open(
            &self.shared,
            &self.want,
            index,
            self.may_fetch,
            avoid,
            self.lapped,
        )
        .await
        .map_err(broken)
    }

    /// Into a streaming HTTP body; an error ends the body abnormally (reset or
    /// truncated chunked), never as a clean short body.
    pub fn into_body(self) -> Body {
        Body::from_stream(futures_util::stream::unfold(self, |mut body| async move {
            if body.failed {
                return None;
            }
            let next = body.next_chunk().await;
            if matches!(next, Some(Err(_))) {
                body.failed = true;
            }
            next.map(|item| (item, body))
        }))
    }

    /// Starts this body's own fetch of `[pos, end)`, pinned to the object's version
    /// (a no-range origin answers the whole object: the bytes before `pos` are skipped).
    async fn start_own(&mut self) -> Result<(), io::Error> {
        self.shared.metrics.own_fetches.inc();
        let mut headers = self.want.headers.clone();
        let range = format!("bytes={}-{}", self.pos, self.end - 1);
        if let Ok(value) = HeaderValue::from_str(&range) {
            headers.insert(header::RANGE, value);
        }
        if let Some((name, value)) = fill::version_condition(&self.meta) {
            headers.insert(name, value);
        }
        let answer = self
            .shared
            .upstream
            .send(Method::GET, &self.want.path, headers, Body::empty())
            .await
            .map_err(broken)?;
        let (parts, body) = answer.into_parts();
        if parts.status == StatusCode::PRECONDITION_FAILED {
            // As for a fill: the stored version is gone at the origin (unless a
            // newer one was stored meanwhile).
            let key = &self.meta.key;
            let version = self.meta.version();
            if self
                .shared
                .cache
                .meta(key)
                .is_some_and(|m| m.version() == version)
            {
                tracing::info!(%key, "origin object changed: stored version dropped");
                self.shared.cache.purge(key).await;
            }
            return Err(broken("origin object changed during the response"));
        }
        let field = |name: header::HeaderName| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        // Another version would splice foreign bytes into this response.
        if field(header::ETAG).as_deref() != self.meta.etag()
            || field(header::LAST_MODIFIED).as_deref() != self.meta.last_modified()
        {
            return Err(broken("origin object changed during the response"));
        }
        let length = field(header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        let next = match parts.status {
            StatusCode::PARTIAL_CONTENT => match fill::content_range(&parts.headers) {
                Some((start, _, total)) if Some(total) == self.meta.total && start <= self.pos => {
                    start
                }
                _ => return Err(broken("origin answered a different range")),
            },
            StatusCode::OK if length.is_none_or(|l| Some(l) == self.meta.total) => 0,
            status => return Err(broken(format!("origin answered {status}"))),
        };
        self.own = Some(OwnFetch { body, next });
        Ok(())
    }

    /// The next bytes of this body's own fetch.
    async fn own_chunk(&mut self) -> Option<Result<Bytes, io::Error>> {
        let idle = Duration::from_secs(self.shared.config.upstream_body_idle_secs);
        let own = self.own.as_mut()?;
        loop {
            let data = match tokio::time::timeout(idle, own.body.frame()).await {
                Err(_) => return Some(Err(broken("origin body idle"))),
                Ok(None) => return Some(Err(broken("origin body ended short"))),
                Ok(Some(Err(e))) => return Some(Err(broken(e))),
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
            };
            self.shared
                .metrics
                .bytes_from_origin
                .inc_by(data.len() as u64);
            let (from, len) = (own.next, data.len() as u64);
            own.next += len;
            if from + len <= self.pos {
                continue; // before the range: skip
            }
            let to = (from + len).min(self.end);
            let out = data.slice((self.pos - from) as usize..(to - from) as usize);
            self.pos = to;
            return Some(Ok(out));
        }
    }

    async fn next_chunk(&mut self) -> Option<Result<Bytes, io::Error>> {
        let mut avoid = None;
        while self.pos < self.end {
            if self.own.is_some() {
                return self.own_chunk().await;
            }
            let index = self.pos / self.slice_size;
            if self.source.is_none() {
                match self.open(index, avoid.take()).await {
                    Ok(source) => self.source = Some(source),
                    Err(e) => return Some(Err(e)),
                }
            }
            // Only when this source stops at the slice border. A whole-object fill
            // (origin without ranges) goes on past it by itself: opening the next
            // slice would only follow that very stream a second time.
            let next = (index + 1).saturating_mul(self.slice_size);
            let stops = match &self.source {
                Some(Source::Piece { .. }) => true,
                Some(Source::Tail { head, .. }) => head.body_end.is_some_and(|e| e <= next),
                Some(Source::Own) | None => false,
            };
            // Started once this source has given good bytes: a source that fails
            // at once (origin answering another range) must not cost a second fetch.
            let Some(source) = &mut self.source else {
                continue;
            };
            match source {
                Source::Own => {
                    self.source = None;
                    if !self.may_fetch {
                        return Some(Err(broken(OpenError::NotCached)));
                    }
                    if let Err(e) = self.start_own().await {
                        return Some(Err(e));
                    }
                }
                Source::Piece { bytes, start } => {
                    let (start, len) = (*start, bytes.len() as u64);
                    if self.pos < start || self.pos >= start + len {
                        self.source = None;
                        return Some(Err(broken("stored piece does not cover the range")));
                    }
                    let to = (start + len)
                        .min(self.end)
                        .min(self.pos + PIECE_FRAME as u64);
                    let out = bytes.slice((self.pos - start) as usize..(to - start) as usize);
                    self.shared
                        .metrics
                        .bytes_from_cache
                        .inc_by(out.len() as u64);
                    self.pos = to;
                    if to == start + len || to == self.end {
                        self.source = None;
                    }
                    if stops {
                        self.prefetch(index + 1);
                    }
                    return Some(Ok(out));
                }
                Source::Tail { head, .. } if head.relay || !head.meta.same_object(&self.meta) => {
                    // The origin's answer no longer matches the object being served.
                    return Some(Err(broken("origin object changed during the response")));
                }
                Source::Tail { next, .. } if *next > self.pos => {
                    // Sources are opened for the slice holding `pos`; starting later
                    // means the origin answered another range than asked. Reopening
                    // would ask again forever.
                    return Some(Err(broken("origin answered a different range")));
                }
                Source::Tail {
                    reader, head, next, ..
                } => {
                    if head.body_end.is_some_and(|e| self.pos >= e) {
                        // Ends before the wanted bytes (the first slice fetched for a
                        // suffix range): the next slice comes from elsewhere.
                        self.source = None;
                        continue;
                    }
                    match reader.next().await {
                        Ok(slot) if slot.kind == SlotKind::Body => {
                            let (from, len) = (*next, slot.bytes.len() as u64);
                            *next += len;
                            if from + len <= self.pos {
                                continue; // before the range: skip
                            }
                            let to = (from + len).min(self.end);
                            let out = slot
                                .bytes
                                .slice((self.pos - from) as usize..(to - from) as usize);
                            self.pos = to;
                            if stops {
                                self.prefetch(index + 1);
                            }
                            return Some(Ok(out));
                        }
                        Ok(_) => {
                            // End marker: this source is exhausted, the next slice follows.
                            self.source = None;
                        }
                        Err(ReadError::Evicted { .. }) => {
                            // The fill went on without this reader: the slice's
                            // piece (or an own fetch) takes over from `pos`.
                            self.shared.metrics.lapped_readers.inc();
                            self.lapped |= head.body_offset == 0
                                && head.body_end == head.meta.total
                                && head.meta.slices() > 1;
                            avoid = Some(reader.id());
                            self.source = None;
                        }
                        Err(ReadError::Aborted(reason)) => {
                            return Some(Err(broken(format!(
                                "origin fill aborted ({})",
                                abort_status(reason)
                            ))));
                        }
                        Err(e) => return Some(Err(broken(e))),
                    }
                }
            }
        }
        None
    }
}

/// The body of a relayed (uncacheable) answer: every body slot of the fill's stream.
pub(crate) fn relay_body(reader: Follow) -> Body {
    Body::from_stream(futures_util::stream::unfold(
        Some(reader),
        |reader| async move {
            let mut reader = reader?;
            loop {
                return match reader.next().await {
                    Ok(slot) if slot.kind == SlotKind::Body => Some((Ok(slot.bytes), Some(reader))),
                    Ok(slot) if slot.kind == SlotKind::End => None,
                    Ok(_) => continue,
                    Err(e) => Some((Err(broken(e)), None)),
                };
            }
        },
    ))
}
