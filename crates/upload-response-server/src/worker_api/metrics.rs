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
        let (calls, claims_held, leases_expired) = Default::default();
        let (body_bytes, response_bytes) = Default::default();
        let mut registry = Registry::with_prefix("upload_response_worker_api");
        let r = &mut registry;
        r.register(
            "calls",
            "Worker API calls answered, by route and status",
            Family::clone(&calls),
        );
        r.register(
            "claims_held",
            "Requests held by remote workers' claims",
            Gauge::clone(&claims_held),
        );
        r.register(
            "leases_expired",
            "Claims given back because the worker's lease ran out",
            Counter::clone(&leases_expired),
        );
        r.register(
            "body_bytes",
            "Request body bytes sent to remote workers",
            Counter::clone(&body_bytes),
        );
        r.register(
            "response_bytes",
            "Response body bytes received from remote workers",
            Counter::clone(&response_bytes),
        );
        Self {
            registry,
            calls,
            claims_held,
            leases_expired,
            body_bytes,
            response_bytes,
        }
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

    /// `prometheus-client`'s OpenMetrics text (see [`page`]).
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The worker listener's one `/metrics` page: the ingress, the worker API
/// and the listeners' connection counters, all named `upload_response_*`,
/// plus `upload_response_build_info`.
pub(crate) fn page(
    service: &upload_response::UploadResponseService,
    api: &ApiMetrics,
    web: &web_service::Metrics,
) -> String {
    let mut text = service_ops::openmetrics_to_prometheus(&service.render_metrics());
    text.push_str(&service_ops::openmetrics_to_prometheus(&api.render()));
    text.push_str(&web.render_prometheus_prefixed("upload_response"));
    text.push_str(&service_ops::build_info(
        "upload_response",
        env!("CARGO_PKG_VERSION"),
    ));
    text
}
