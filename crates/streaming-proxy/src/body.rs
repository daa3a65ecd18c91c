//! Response bodies: the requested byte range assembled slice by slice from stored
//! pieces and fills in progress, one slice in memory at a time.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use chunk_cache::{ReadError, SlotKind, StreamReader};
use web_service::Body;

use crate::fill::{self, Source, abort_status};
use crate::proxy::Shared;

/// Produces bytes `[pos, end)` of an object.
pub(crate) struct RangeBody {
    shared: Arc<Shared>,
    key: String,
    slice_size: u64,
    total: u64,
    pos: u64,
    end: u64,
    may_fetch: bool,
    source: Option<Source>,
    failed: bool,
}

fn broken(what: impl std::fmt::Display) -> io::Error {
    io::Error::other(what.to_string())
}

impl RangeBody {
    /// Bytes `[start, end)` of `key`; `first` is a source already opened (the fill
    /// whose head decided the response).
    pub fn new(
        shared: Arc<Shared>,
        key: String,
        (slice_size, total): (u64, u64),
        (start, end): (u64, u64),
        may_fetch: bool,
        first: Option<Source>,
    ) -> Self {
        Self {
            shared,
            key,
            slice_size,
            total,
            pos: start,
            end,
            may_fetch,
            source: first,
            failed: false,
        }
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
            let Some(source) = &mut self.source else {
                let index = self.pos / self.slice_size;
                match fill::open(&self.shared, &self.key, index, self.may_fetch, avoid.take()).await
                {
                    Ok(source) => self.source = Some(source),
                    Err(e) => return Some(Err(broken(e))),
                }
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
                    return Some(Ok(out));
                }
                Source::Tail { head, .. } if head.relay || head.meta.total != Some(self.total) => {
                    // The origin's answer no longer matches the object being served.
                    return Some(Err(broken("origin object changed during the response")));
                }
                Source::Tail { next, .. } if *next > self.pos => {
                    // Sources are opened for the slice holding `pos`; starting later
                    // means the origin answered another range than asked. Reopening
                    // would ask again forever.
                    return Some(Err(broken("origin answered a different range")));
                }
                Source::Tail { reader, head, next } => {
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
