//! Counters of the remote worker API, appended to `/metrics`: calls by route
//! and status, claims held, leases that ran out, and the bytes that crossed
//! the API in each direction.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteStatus {
    /// The route template (`/v1/streams/{id}/body`), never the raw path, so
    /// stream ids cannot grow the label set without bound.
    route: String,
    status: u16,
}

/// The worker API's metrics (prefix `upload_response_worker_api`).
pub(crate) struct ApiMetrics {
    registry: Registry,
    calls: Family<RouteStatus, Counter>,
    /// Requests held by remote claims now.
    pub(crate) claims_held: Gauge,
    /// Claims given back because their worker went silent.
    pub(crate) leases_expired: Counter,
    /// Request body bytes sent to remote workers.
    pub(crate) body_bytes: Counter,
    /// Response body bytes received from remote workers.
    pub(crate) response_bytes: Counter,
}

impl ApiMetrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("upload_response_worker_api");
        let this = Self {
            calls: Family::default(),
            claims_held: Gauge::default(),
            leases_expired: Counter::default(),
            body_bytes: Counter::default(),
            response_bytes: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "calls",
            "Worker API calls answered, by route and status",
            this.calls.clone(),
        );
        registry.register(
            "claims_held",
            "Requests held by remote workers' claims",
            this.claims_held.clone(),
        );
        registry.register(
            "leases_expired",
            "Claims given back because the worker's lease ran out",
            this.leases_expired.clone(),
        );
        registry.register(
            "body_bytes",
            "Request body bytes sent to remote workers",
            this.body_bytes.clone(),
        );
        registry.register(
            "response_bytes",
            "Response body bytes received from remote workers",
            this.response_bytes.clone(),
        );
        Self { registry, ..this }
    }

    /// Counts one answered call.
    pub(crate) fn call(&self, route: &str, status: u16) {
        self.calls
            .get_or_create(&RouteStatus {
                route: route.to_owned(),
                status,
            })
            .inc();
    }

    /// The Prometheus text exposition (without the OpenMetrics `# EOF`, as it
    /// is one part of a longer page).
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        without_eof(out)
    }
}

/// `text` without a trailing `# EOF` line: the pages here are several
/// registries' output concatenated, and an OpenMetrics reader stops at the
/// first `# EOF`.
pub(crate) fn without_eof(mut text: String) -> String {
    if text.ends_with("# EOF\n") {
        text.truncate(text.len() - "# EOF\n".len());
    }
    text
}
