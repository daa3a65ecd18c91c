//! Prometheus metrics of the ingress: requests, bytes per protocol, claim
//! wait and response latency.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How a request reached the ingress (the `protocol` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// HTTP/1.x.
    H1,
    /// HTTP/2.
    H2,
    /// HTTP/3.
    H3,
    /// A WebSocket upload.
    WebSocket,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Self::H1 => "h1",
            Self::H2 => "h2",
            Self::H3 => "h3",
            Self::WebSocket => "ws",
        }
    }

    pub(crate) fn of(version: http::Version) -> Self {
        match version {
            http::Version::HTTP_2 => Self::H2,
            http::Version::HTTP_3 => Self::H3,
            _ => Self::H1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Proto {
    protocol: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct State {
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// Point-in-time values the service reads when `/metrics` is scraped.
pub(crate) struct Snapshot {
    pub(crate) in_flight: usize,
    pub(crate) budget_used: u64,
    pub(crate) budget_limit: u64,
    pub(crate) budget_waiting: usize,
    /// Requests waiting for a worker, claimed (no response head yet), responding.
    pub(crate) by_state: [usize; 3],
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProtoStatus {
    protocol: &'static str,
    status: u16,
}

pub(crate) struct Metrics {
    registry: Registry,
    in_flight: Gauge,
    budget_used: Gauge,
    budget_limit: Gauge,
    budget_waiting: Gauge,
    streams: Family<State, Gauge>,
    rejections: Family<Reason, Counter>,
    requests: Family<ProtoStatus, Counter>,
    bytes_in: Family<Proto, Counter>,
    bytes_out: Family<Proto, Counter>,
    claim_wait: Histogram,
    response_latency: Histogram,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("upload_response");
        let in_flight = Gauge::default();
        let budget_used = Gauge::default();
        let budget_limit = Gauge::default();
        let budget_waiting = Gauge::default();
        let streams = Family::<State, Gauge>::default();
        let rejections = Family::<Reason, Counter>::default();
        let requests = Family::<ProtoStatus, Counter>::default();
        let bytes_in = Family::<Proto, Counter>::default();
        let bytes_out = Family::<Proto, Counter>::default();
        // 100 µs .. ~30 s.
        let claim_wait = Histogram::new(exponential_buckets(0.0001, 3.0, 12));
        let response_latency = Histogram::new(exponential_buckets(0.0001, 3.0, 12));
        registry.register(
            "streams_in_flight",
            "Requests being served now",
            in_flight.clone(),
        );
        registry.register(
            "budget_bytes",
            "Slot bytes charged to the memory budget now (request and response caches)",
            budget_used.clone(),
        );
        registry.register(
            "budget_limit_bytes",
            "The memory budget (memory_budget)",
            budget_limit.clone(),
        );
        registry.register(
            "budget_waiting_writers",
            "Stream writers waiting for the memory budget now",
            budget_waiting.clone(),
        );
        registry.register(
            "streams",
            "Requests in flight by state: unclaimed (waiting for a worker), claimed, responding",
            streams.clone(),
        );
        registry.register(
            "rejections",
            "Requests the ingress refused or failed itself, by reason",
            rejections.clone(),
        );
        registry.register(
            "requests",
            "Requests answered, by protocol and status",
            requests.clone(),
        );
        registry.register(
            "request_body_bytes",
            "Request body bytes received",
            bytes_in.clone(),
        );
        registry.register(
            "response_body_bytes",
            "Response body bytes sent",
            bytes_out.clone(),
        );
        registry.register(
            "claim_wait_seconds",
            "From arrival to a worker's claim",
            claim_wait.clone(),
        );
        registry.register(
            "response_latency_seconds",
            "From arrival to the worker's response head",
            response_latency.clone(),
        );
        Self {
            registry,
            in_flight,
            budget_used,
            budget_limit,
            budget_waiting,
            streams,
            rejections,
            requests,
            bytes_in,
            bytes_out,
            claim_wait,
            response_latency,
        }
    }

    pub(crate) fn request_done(&self, t: Transport, status: u16) {
        self.requests
            .get_or_create(&ProtoStatus {
                protocol: t.label(),
                status,
            })
            .inc();
    }

    pub(crate) fn bytes_in(&self, t: Transport, n: u64) {
        self.bytes_in
            .get_or_create(&Proto {
                protocol: t.label(),
            })
            .inc_by(n);
    }

    pub(crate) fn bytes_out(&self, t: Transport, n: u64) {
        self.bytes_out
            .get_or_create(&Proto {
                protocol: t.label(),
            })
            .inc_by(n);
    }

    pub(crate) fn claimed_after(&self, wait: Duration) {
        self.claim_wait.observe(wait.as_secs_f64());
    }

    pub(crate) fn responded_after(&self, wait: Duration) {
        self.response_latency.observe(wait.as_secs_f64());
    }

    /// Counts a refusal or failure the ingress itself answered.
    pub(crate) fn rejected(&self, reason: &'static str) {
        self.rejections.get_or_create(&Reason { reason }).inc();
    }

    pub(crate) fn render(&self, now: &Snapshot) -> String {
        self.in_flight.set(now.in_flight as i64);
        self.budget_used.set(now.budget_used as i64);
        self.budget_limit.set(now.budget_limit as i64);
        self.budget_waiting.set(now.budget_waiting as i64);
        for (state, n) in ["unclaimed", "claimed", "responding"]
            .iter()
            .zip(now.by_state)
        {
            self.streams.get_or_create(&State { state }).set(n as i64);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
