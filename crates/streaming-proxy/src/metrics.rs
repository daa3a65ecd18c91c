//! Prometheus counters of the proxy (`/metrics`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

// Declares each metric once: field, type, exported name and help text.
macro_rules! metrics {
    ($($(#[$doc:meta])* $field:ident: $ty:ty = $name:literal, $help:literal;)*) => {
        /// Counters shared by the cache, the fills and the request path.
        #[derive(Debug)]
        pub struct Metrics {
            $($(#[$doc])* pub $field: $ty,)*
            registry: Registry,
        }

        impl Default for Metrics {
            fn default() -> Self {
                let mut registry = Registry::with_prefix("streaming_proxy");
                $(let $field = <$ty>::default();
                registry.register($name, $help, $field.clone());)*
                Self { $($field,)* registry }
            }
        }
    };
}

metrics! {
    /// Responses served from the cache (HIT, REVALIDATED, STALE).
    hits: Counter = "cache_hits", "Responses served from the cache";
    /// Responses that needed the origin (MISS, PARTIAL).
    misses: Counter = "cache_misses", "Responses that needed the origin";
    /// Responses passed through without storing.
    bypasses: Counter = "cache_bypasses", "Responses passed through uncached";
    /// Body bytes sent to clients from stored pieces.
    bytes_from_cache: Counter = "served_from_cache_bytes", "Body bytes served from stored pieces";
    /// Body bytes received from the origin by fills.
    bytes_from_origin: Counter = "received_from_origin_bytes", "Body bytes received from the origin";
    /// Readers of a fill its ring lapped (they continue from the stored pieces).
    lapped_readers: Counter = "lapped_readers", "Fill readers the ring lapped, continued from stored pieces";
    /// Origin fetches of their own by lapped readers whose slice was not stored.
    own_fetches: Counter = "reader_own_fetches", "Origin fetches by readers whose slice could not be stored";
    /// Origin fetches in progress.
    fills_in_progress: Gauge = "fills_in_progress", "Origin fetches in progress";
    /// Pieces served from memory (L1).
    l1_piece_hits: Counter = "l1_piece_hits", "Pieces served from memory";
    /// Pieces read from disk (L2) and found intact.
    l2_piece_reads: Counter = "l2_piece_reads", "Pieces read from disk and verified";
    /// Pieces evicted from memory.
    l1_evictions: Counter = "l1_evictions", "Pieces evicted from memory";
    /// Objects evicted from disk.
    l2_evictions: Counter = "l2_evictions", "Objects evicted from disk";
    /// Disk pieces found corrupt and dropped.
    l2_corrupt: Counter = "l2_corrupt_pieces", "Disk pieces failing their checksum";
    /// Piece writes to disk queued or running.
    l2_writes_pending: Gauge = "l2_writes_pending", "Piece writes to disk queued or running";
    /// Disk reads or writes that failed.
    l2_errors: Counter = "l2_errors", "Disk cache I/O errors";
    /// Stale objects revalidated with a `304`.
    revalidated: Counter = "revalidated", "Stale objects refreshed by a 304";
}

impl Metrics {
    /// The OpenMetrics text of every counter (`prometheus-client`'s encoding;
    /// the binary's `/metrics` page converts it to the Prometheus text format).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
