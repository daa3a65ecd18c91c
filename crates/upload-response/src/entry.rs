//! What the service knows about one request in flight.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use chunk_cache::{StreamId, StreamLease, StreamReader, StreamWriter};
use http_pack::RequestHead;

use crate::WorkerId;
use crate::chunk_signatures::ChunkSignatures;

/// Who may write the response, and whether they started.
pub(crate) struct ResponseSlot {
    /// The worker that claimed the response.
    pub(crate) owner: Option<WorkerId>,
    /// The response stream's writer while no claimer holds it; a claimer
    /// takes it out (so writes need no lock) and gives it back on release.
    pub(crate) writer: Option<StreamWriter>,
    /// Response headers were written: a release now resets the client.
    pub(crate) started: bool,
    /// Someone claimed it at least once (the 503-on-no-claim rule is over).
    pub(crate) ever_claimed: bool,
    /// The ingress gave up on the request (timeout, client gone): no more claims.
    pub(crate) closed: bool,
}

/// One request in flight: its two streams and who works on them.
pub(crate) struct Entry {
    pub(crate) id: StreamId,
    pub(crate) response_id: StreamId,
    pub(crate) head: RequestHead,
    pub(crate) created: Instant,
    pub(crate) response: Mutex<ResponseSlot>,
    /// Readers registered through the seed API, by worker.
    pub(crate) readers: Mutex<HashMap<WorkerId, StreamReader>>,
    /// A reader parked at slot 1 while no worker reads the request, so the
    /// ingress cannot recycle slots nobody has seen (its backpressure reaches
    /// the client); dropped when a worker registers.
    pub(crate) hold: Mutex<Option<StreamReader>>,
    /// A signed S3 upload's chunk signatures (`chunk_signatures.rs`).
    pub(crate) signatures: Option<ChunkSignatures>,
    pub(crate) _leases: (StreamLease, StreamLease),
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Entry {
    pub(crate) fn has_hold(&self) -> bool {
        lock(&self.hold).is_some()
    }
}
