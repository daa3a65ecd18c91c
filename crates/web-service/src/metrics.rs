//! Per-protocol connection and request counters, rendered as Prometheus text.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use http::Version;

use crate::conn::ConnState;

/// The protocol a connection or request was served with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.0 or HTTP/1.1, cleartext or TLS.
    Http1,
    /// HTTP/2, h2c or over TLS.
    Http2,
    /// HTTP/3 over QUIC.
    Http3,
    /// A WebSocket session (after an HTTP/1.1 upgrade or HTTP/2 extended CONNECT).
    WebSocket,
}

impl Protocol {
    const ALL: [Protocol; 4] = [Self::Http1, Self::Http2, Self::Http3, Self::WebSocket];

    /// Label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::Http2 => "http2",
            Self::Http3 => "http3",
            Self::WebSocket => "websocket",
        }
    }

    pub(crate) fn of_version(version: Version) -> Self {
        match version {
            Version::HTTP_2 => Self::Http2,
            Version::HTTP_3 => Self::Http3,
            _ => Self::Http1,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The transports that each have their own connection limit (`max_connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP: HTTP/1.1, h2c, TLS (HTTP/1.1 and HTTP/2), WebSocket.
    Tcp,
    /// QUIC: HTTP/3.
    Quic,
}

impl Transport {
    const ALL: [Transport; 2] = [Self::Tcp, Self::Quic];

    /// Label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Quic => "quic",
        }
    }
}

/// One per-transport metric family: name, value, help text.
type SlotFamily = (&'static str, fn(&Metrics, Transport) -> u64, &'static str);

/// Connection slots of one transport.
#[derive(Debug, Default)]
struct Slots {
    limit: AtomicU64,
    used: AtomicU64,
}

/// One per-protocol metric family: name, type, value, help text.
type Family = (
    &'static str,
    &'static str,
    fn(&ProtocolStats) -> u64,
    &'static str,
);

/// Counters of one protocol.
#[derive(Debug, Default)]
struct Counters {
    connections_total: AtomicU64,
    connections_active: AtomicU64,
    requests_total: AtomicU64,
    requests_active: AtomicU64,
}

/// A point-in-time copy of one protocol's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProtocolStats {
    /// Connections (or WebSocket sessions) ever opened.
    pub connections_total: u64,
    /// Connections (or WebSocket sessions) open now.
    pub connections_active: u64,
    /// Requests ever started.
    pub requests_total: u64,
    /// Requests whose response has not finished yet.
    pub requests_active: u64,
}

/// Server counters; share it with a `/metrics` handler via [`crate::Server::metrics`].
#[derive(Debug, Default)]
pub struct Metrics {
    protocols: [Counters; 4],
    slots: [Slots; 2],
    /// Connections closed (HTTP/1.1, HTTP/2) or HTTP/3 request streams dropped because a
    /// handshake or request head was late.
    pub header_timeouts: AtomicU64,
    /// QUIC connections refused because QUIC's `max_connections` was reached.
    pub refused_connections: AtomicU64,
    /// Requests refused with `413` from their `content-length`.
    pub bodies_too_large: AtomicU64,
    /// Request bodies dropped unfinished that were then read to their end (lingering).
    pub lingering_drained: AtomicU64,
    /// Request bodies dropped unfinished that were reset past the lingering bounds.
    pub lingering_cut: AtomicU64,
    /// Writes handed to HTTP/1.1 and HTTP/2 connections (each `write` or
    /// `writev` below TLS, or on the socket for cleartext): with requests
    /// started, how many writes a response costs.
    pub connection_writes: AtomicU64,
}

impl Metrics {
    /// Counters of one protocol.
    pub fn stats(&self, protocol: Protocol) -> ProtocolStats {
        let c = &self.protocols[protocol.index()];
        ProtocolStats {
            connections_total: c.connections_total.load(Relaxed),
            connections_active: c.connections_active.load(Relaxed),
            requests_total: c.requests_total.load(Relaxed),
            requests_active: c.requests_active.load(Relaxed),
        }
    }

    /// Connection slots of `transport` in use now (a TCP connection holds one from
    /// accept, before its protocol is known, until it closes).
    pub fn slots_used(&self, transport: Transport) -> u64 {
        self.slots[transport as usize].used.load(Relaxed)
    }

    /// The connection limit of `transport`.
    pub fn slot_limit(&self, transport: Transport) -> u64 {
        self.slots[transport as usize].limit.load(Relaxed)
    }

    pub(crate) fn set_slot_limit(&self, limit: usize) {
        for slots in &self.slots {
            slots
                .limit
                .store(u64::try_from(limit).unwrap_or(u64::MAX), Relaxed);
        }
    }

    /// Open connections over all protocols (WebSocket sessions excluded: each lives on
    /// an HTTP/1.1 connection or HTTP/2 stream that stays counted meanwhile).
    pub fn connections_active(&self) -> u64 {
        [Protocol::Http1, Protocol::Http2, Protocol::Http3]
            .iter()
            .map(|p| self.stats(*p).connections_active)
            .sum()
    }

    /// Prometheus text exposition format (version 0.0.4), names starting `web_`.
    pub fn render_prometheus(&self) -> String {
        self.render_prometheus_prefixed("")
    }

    /// [`Self::render_prometheus`] with every name prefixed by `prefix_` (a
    /// product's page names all its series after the product).
    pub fn render_prometheus_prefixed(&self, prefix: &str) -> String {
        let sep = if prefix.is_empty() { "" } else { "_" };
        let mut out = String::new();
        let families: [Family; 4] = [
            (
                "web_connections_total",
                "counter",
                |s| s.connections_total,
                "Connections opened.",
            ),
            (
                "web_connections_active",
                "gauge",
                |s| s.connections_active,
                "Connections open.",
            ),
            (
                "web_requests_total",
                "counter",
                |s| s.requests_total,
                "Requests started.",
            ),
            (
                "web_requests_active",
                "gauge",
                |s| s.requests_active,
                "Requests in flight.",
            ),
        ];
        for (name, kind, get, help) in families {
            let samples = Protocol::ALL.map(|p| {
                (
                    format!("{{protocol=\"{}\"}}", p.as_str()),
                    get(&self.stats(p)),
                )
            });
            write_family(
                &mut out,
                &format!("{prefix}{sep}{name}"),
                kind,
                help,
                samples,
            );
        }
        let slot_families: [SlotFamily; 2] = [
            (
                "web_connection_limit",
                Self::slot_limit,
                "Connections allowed at once, per transport.",
            ),
            (
                "web_connection_slots_used",
                Self::slots_used,
                "Connection slots in use, per transport.",
            ),
        ];
        for (name, get, help) in slot_families {
            let samples =
                Transport::ALL.map(|t| (format!("{{transport=\"{}\"}}", t.as_str()), get(self, t)));
            write_family(
                &mut out,
                &format!("{prefix}{sep}{name}"),
                "gauge",
                help,
                samples,
            );
        }
        let singles = [
            (
                "web_header_timeouts_total",
                "Connections or HTTP/3 streams closed for a late handshake or request head.",
                &self.header_timeouts,
            ),
            (
                "web_refused_connections_total",
                "QUIC connections refused at the connection limit.",
                &self.refused_connections,
            ),
            (
                "web_bodies_too_large_total",
                "Requests refused with 413 from content-length.",
                &self.bodies_too_large,
            ),
            (
                "web_lingering_drained_total",
                "Request bodies drained to their end after an early answer.",
                &self.lingering_drained,
            ),
            (
                "web_lingering_cut_total",
                "Request bodies reset past the lingering bounds.",
                &self.lingering_cut,
            ),
            (
                "web_connection_writes_total",
                "Writes handed to HTTP/1.1 and HTTP/2 connections (to TLS, or to the socket).",
                &self.connection_writes,
            ),
        ];
        for (name, help, value) in singles {
            let samples = [(String::new(), value.load(Relaxed))];
            write_family(
                &mut out,
                &format!("{prefix}{sep}{name}"),
                "counter",
                help,
                samples,
            );
        }
        out
    }

    fn counters(&self, protocol: Protocol) -> &Counters {
        &self.protocols[protocol.index()]
    }
}

/// Writes one metric family: its `# HELP` and `# TYPE` lines, then one sample
/// per `(labels, value)`, where `labels` is empty or `{name="value"}`.
fn write_family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// What a [`Tally`] counts.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Connections,
    Requests,
}

/// Counts one connection or request (total and active) until dropped.
#[derive(Debug)]
struct Tally {
    metrics: Arc<Metrics>,
    protocol: Protocol,
    kind: Kind,
}

impl Tally {
    fn new(metrics: Arc<Metrics>, protocol: Protocol, kind: Kind) -> Self {
        let tally = Self {
            metrics,
            protocol,
            kind,
        };
        let (total, active) = tally.counters();
        total.fetch_add(1, Relaxed);
        active.fetch_add(1, Relaxed);
        tally
    }

    fn counters(&self) -> (&AtomicU64, &AtomicU64) {
        let c = self.metrics.counters(self.protocol);
        match self.kind {
            Kind::Connections => (&c.connections_total, &c.connections_active),
            Kind::Requests => (&c.requests_total, &c.requests_active),
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.counters().1.fetch_sub(1, Relaxed);
    }
}

/// A connection slot of one transport, held from accept until the connection closes.
#[derive(Debug)]
pub(crate) struct SlotGuard {
    metrics: Arc<Metrics>,
    transport: Transport,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl SlotGuard {
    pub(crate) fn new(
        metrics: Arc<Metrics>,
        transport: Transport,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Self {
        metrics.slots[transport as usize].used.fetch_add(1, Relaxed);
        Self {
            metrics,
            transport,
            _permit: permit,
        }
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.metrics.slots[self.transport as usize]
            .used
            .fetch_sub(1, Relaxed);
    }
}

/// Counts one open connection (or WebSocket session) until dropped.
#[derive(Debug)]
pub(crate) struct ConnGuard {
    _tally: Tally,
}

impl ConnGuard {
    pub(crate) fn new(metrics: Arc<Metrics>, protocol: Protocol) -> Self {
        Self {
            _tally: Tally::new(metrics, protocol, Kind::Connections),
        }
    }
}

/// Counts one request until its response is fully sent, and keeps its connection
/// from being closed as idle meanwhile.
#[derive(Debug)]
pub(crate) struct RequestGuard {
    _tally: Tally,
    conn: Arc<ConnState>,
}

impl RequestGuard {
    pub(crate) fn new(metrics: Arc<Metrics>, protocol: Protocol, conn: Arc<ConnState>) -> Self {
        conn.request_started(&metrics, protocol);
        Self {
            _tally: Tally::new(metrics, protocol, Kind::Requests),
            conn,
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.conn.request_finished();
    }
}
