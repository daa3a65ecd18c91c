//! Prometheus counters of the proxy (`/metrics`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Counters shared by the cache, the fills and the request path.
#[derive(Debug)]
pub struct Metrics {
    /// Responses served entirely from the cache.
    pub hits: Counter,
    /// Responses that needed the origin (cold, partial, joined fill).
    pub misses: Counter,
    /// Responses passed through without storing.
    pub bypasses: Counter,
    /// Body bytes sent to clients from stored pieces.
    pub bytes_from_cache: Counter,
    /// Body bytes received from the origin by fills.
    pub bytes_from_origin: Counter,
    /// Origin fetches in progress.
    pub fills_in_progress: Gauge,
    /// Pieces evicted from memory.
    pub l1_evictions: Counter,
    /// Objects evicted from disk.
    pub l2_evictions: Counter,
    /// Disk pieces found corrupt and dropped.
    pub l2_corrupt: Counter,
    /// Disk reads or writes that failed.
    pub l2_errors: Counter,
    /// Stale objects revalidated with a `304`.
    pub revalidated: Counter,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Self {
            hits: Counter::default(),
            misses: Counter::default(),
            bypasses: Counter::default(),
            bytes_from_cache: Counter::default(),
            bytes_from_origin: Counter::default(),
            fills_in_progress: Gauge::default(),
            l1_evictions: Counter::default(),
            l2_evictions: Counter::default(),
            l2_corrupt: Counter::default(),
            l2_errors: Counter::default(),
            revalidated: Counter::default(),
            registry: Registry::with_prefix("streaming_proxy"),
        };
        let r = &mut m.registry;
        r.register(
            "cache_hits",
            "Responses served from the cache",
            m.hits.clone(),
        );
        r.register(
            "cache_misses",
            "Responses that needed the origin",
            m.misses.clone(),
        );
        r.register(
            "cache_bypasses",
            "Responses passed through uncached",
            m.bypasses.clone(),
        );
        r.register(
            "bytes_from_cache",
            "Body bytes served from stored pieces",
            m.bytes_from_cache.clone(),
        );
        r.register(
            "bytes_from_origin",
            "Body bytes received from the origin",
            m.bytes_from_origin.clone(),
        );
        r.register(
            "fills_in_progress",
            "Origin fetches in progress",
            m.fills_in_progress.clone(),
        );
        r.register(
            "l1_evictions",
            "Pieces evicted from memory",
            m.l1_evictions.clone(),
        );
        r.register(
            "l2_evictions",
            "Objects evicted from disk",
            m.l2_evictions.clone(),
        );
        r.register(
            "l2_corrupt_pieces",
            "Disk pieces failing their checksum",
            m.l2_corrupt.clone(),
        );
        r.register("l2_errors", "Disk cache I/O errors", m.l2_errors.clone());
        r.register(
            "revalidated",
            "Stale objects refreshed by a 304",
            m.revalidated.clone(),
        );
        m
    }
}

impl Metrics {
    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
