//! The service's configuration (the seed's names, plus claim and body limits).

use std::time::Duration;

use chunk_cache::CacheConfig;
use serde::Deserialize;

/// How many streams, how big, and how long to wait for whom.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadResponseConfig {
    /// Requests in flight at once; beyond it a request waits up to `queue_timeout_ms`, then gets 503.
    pub num_streams: usize,
    /// Slot size in KiB (body bytes per slot).
    pub slot_size_kb: usize,
    /// Slots a stream retains at once (headers + ring); bounds memory per stream.
    pub slots_per_stream: usize,
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
            num_streams: 100,
            slot_size_kb: 64,
            slots_per_stream: 16384,
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
