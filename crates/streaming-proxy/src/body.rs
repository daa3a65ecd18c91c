//! Response bodies: the requested byte range assembled slice by slice from stored
//! pieces and fills in progress, the next slice opened while the current one streams.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use chunk_cache::{ReadError, SlotKind, StreamId, StreamReader};
use tokio::task::JoinHandle;
use web_service::Body;

use crate::fill::{self, OpenError, Source, Want, abort_status};
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
    failed: bool,
}

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
        let may_fetch = self.may_fetch;
        let open = async move { fill::open(&shared, &want, index, may_fetch, None).await };
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
        fill::open(&self.shared, &self.want, index, self.may_fetch, avoid)
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

    async fn next_chunk(&mut self) -> Option<Result<Bytes, io::Error>> {
        let mut avoid = None;
        while self.pos < self.end {
            let index = self.pos / self.slice_size;
            if self.source.is_none() {
                match self.open(index, avoid.take()).await {
                    Ok(source) => self.source = Some(source),
                    Err(e) => return Some(Err(e)),
                }
            }
            // Only when this source stops at the slice border. A whole-object fill
            // (origin without ranges) goes on past it by itself, and a prefetch
            // would register a second, unread reader on that very stream: once its
            // ring wrapped, the fill would wait for that reader and this body for
            // the fill (seen as a hang in the late-joiner test).
            let next = (index + 1).saturating_mul(self.slice_size);
            let stops = match &self.source {
                Some(Source::Piece { .. }) => true,
                Some(Source::Tail { head, .. }) => head.body_end.is_some_and(|e| e <= next),
                None => false,
            };
            // Started once this source has given good bytes: a source that fails
            // at once (origin answering another range) must not cost a second fetch.
            let Some(source) = &mut self.source else {
                continue;
            };
            match source {
                Source::Piece { bytes, start } => {
                    let (bytes, start) = (bytes.clone(), *start);
                    let len = bytes.len() as u64;
                    self.source = None;
                    if self.pos < start || self.pos >= start + len {
                        return Some(Err(broken("stored piece does not cover the range")));
                    }
                    let to = (start + len).min(self.end);
                    let out = bytes.slice((self.pos - start) as usize..(to - start) as usize);
                    self.shared
                        .metrics
                        .bytes_from_cache
                        .inc_by(out.len() as u64);
                    self.pos = to;
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
pub(crate) fn relay_body(reader: StreamReader) -> Body {
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
