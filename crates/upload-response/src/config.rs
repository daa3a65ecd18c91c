//! The service's configuration (the seed's names, plus claim and body limits).

use std::time::Duration;

use chunk_cache::{Admission, CacheConfig};
use serde::Deserialize;

/// How many streams, how big, and how long to wait for whom.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadResponseConfig {
    /// Requests in flight at once; beyond it a request waits up to `queue_timeout_ms`, then gets 503.
    /// A stream costs only metadata until it holds bytes.
    pub num_streams: usize,
    /// Slot size in KiB (body bytes per slot).
    pub slot_size_kb: usize,
    /// A stream's in-memory window: slots it retains at once (headers + ring).
    pub slots_per_stream: usize,
    /// Bytes of slot data the request and response caches may hold together
    /// (pooled free buffers included); writers beyond it wait.
    pub memory_budget: u64,
    /// From arrival to the worker's response headers; past it the client gets 504.
    pub response_timeout_ms: u64,
    /// From arrival to a worker's claim; past it the client gets 503.
    pub claim_timeout_ms: u64,
    /// How long a request waits for a free stream before 503 + `Retry-After`.
    pub queue_timeout_ms: u64,
    /// Largest request body; beyond it the client gets 413 and the stream is aborted.
    pub max_body_bytes: u64,
    /// Requests one client IP address may have in flight (streams allocated,
    /// WebSocket sessions included); beyond it `429` + `Retry-After`. Requests
    /// handed to [`handle`](crate::UploadResponseService::handle) without a
    /// `web_service::ConnInfo` (the in-process API) are not counted.
    pub max_streams_per_client: usize,
    /// No request body byte for this long while the body is incomplete: `408`
    /// (a reset once the response started), request aborted (`Timeout`).
    pub body_idle_timeout_ms: u64,
    /// After the response head, the worker writing nothing or the client
    /// reading nothing for this long ends the stream (reset, aborted).
    pub response_idle_timeout_ms: u64,
}

impl Default for UploadResponseConfig {
    fn default() -> Self {
        Self {
            num_streams: 4096,
            slot_size_kb: 64,
            slots_per_stream: 64,
            memory_budget: 256 * 1024 * 1024,
            response_timeout_ms: 30_000,
            claim_timeout_ms: 10_000,
            queue_timeout_ms: 5_000,
            max_body_bytes: 16 * 1024 * 1024 * 1024,
            max_streams_per_client: 64,
            body_idle_timeout_ms: 30_000,
            response_idle_timeout_ms: 30_000,
        }
    }
}

impl UploadResponseConfig {
    /// The chunk-cache dimensions for the request and the response caches.
    pub fn cache_config(&self) -> CacheConfig {
        CacheConfig::new(
            self.num_streams,
            self.slot_size_kb.saturating_mul(1024),
            self.slots_per_stream,
        )
    }

    /// The request cache's share of the budget: at most three quarters (the
    /// rest is kept for responses, which workers must be able to write to
    /// finish, and so release, the requests they read), of which unclaimed
    /// requests may hold at most a quarter (see the chunk-cache docs,
    /// "Admission").
    pub fn request_admission(&self) -> Admission {
        Admission {
            cache_max: self.memory_budget / 4 * 3,
            unclaimed_max: self.memory_budget / 4,
        }
    }

    /// The response cache's share: the whole budget (responses drain by
    /// their clients alone).
    pub fn response_admission(&self) -> Admission {
        Admission::unlimited()
    }

    /// Slot size in bytes.
    pub fn slot_size(&self) -> usize {
        self.slot_size_kb.saturating_mul(1024)
    }

    pub(crate) fn response_timeout(&self) -> Duration {
        Duration::from_millis(self.response_timeout_ms)
    }

    pub(crate) fn claim_timeout(&self) -> Duration {
        Duration::from_millis(self.claim_timeout_ms)
    }

    pub(crate) fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms)
    }

    pub(crate) fn body_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.body_idle_timeout_ms)
    }

    pub(crate) fn response_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.response_idle_timeout_ms)
    }
}
