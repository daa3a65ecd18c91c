//! The access log: one `tracing` event (target `access`) per request, emitted
//! when its response has been sent or dropped, with the client, protocol,
//! method, path, status, body bytes in each direction and duration.
//!
//! The server measures it, not a tower layer around the handler: only the
//! server sees every request (also those it answers itself, such as an early
//! `413`) and owns both bodies, so counting costs one atomic add per frame and
//! no extra boxing. Formatting (text or JSON, timestamps) is the subscriber's.
//! The query string is left out: it may carry credentials.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use http::{Method, Request};

use crate::conn::ConnInfo;
use crate::metrics::Protocol;

/// One request/response exchange being measured.
#[derive(Debug)]
pub(crate) struct Exchange {
    started: Instant,
    client: SocketAddr,
    tls: bool,
    protocol: Protocol,
    method: Method,
    path: String,
    status: AtomicU16,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    complete: AtomicBool,
    /// Response body bytes the head announced, when known: hyper stops polling
    /// a body once that many went out, so reaching it also counts as complete.
    expected_out: AtomicU64,
}

const UNKNOWN: u64 = u64::MAX;

impl Exchange {
    pub(crate) fn new<B>(info: ConnInfo, protocol: Protocol, req: &Request<B>) -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            client: info.remote_addr,
            tls: info.tls,
            protocol,
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            status: AtomicU16::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            complete: AtomicBool::new(false),
            expected_out: AtomicU64::new(UNKNOWN),
        })
    }

    /// Notes the response head: its status and how long its body should be.
    pub(crate) fn respond<B>(&self, resp: &http::Response<B>) {
        let status = resp.status();
        self.status.store(status.as_u16(), Relaxed);
        let bodiless = self.method == Method::HEAD
            || status.is_informational()
            || status == http::StatusCode::NO_CONTENT
            || status == http::StatusCode::NOT_MODIFIED;
        let declared = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse().ok());
        let expected = if bodiless { Some(0) } else { declared };
        self.expected_out
            .store(expected.unwrap_or(UNKNOWN), Relaxed);
    }

    fn complete(&self) -> bool {
        self.complete.load(Relaxed)
            || self.expected_out.load(Relaxed) == self.bytes_out.load(Relaxed)
    }
}

/// Which body of the exchange a [`Meter`] counts.
#[derive(Debug)]
pub(crate) enum Meter {
    /// The request body: counts bytes in.
    Request(Arc<Exchange>),
    /// The response body: counts bytes out, and writes the line when dropped.
    Response(ResponseLog),
}

impl Meter {
    pub(crate) fn data(&self, len: usize) {
        let counter = match self {
            Self::Request(x) => &x.bytes_in,
            Self::Response(ResponseLog(x)) => &x.bytes_out,
        };
        counter.fetch_add(len as u64, Relaxed);
    }

    /// The body reached its end (for the response: sent whole).
    pub(crate) fn ended(&self) {
        if let Self::Response(ResponseLog(x)) = self {
            x.complete.store(true, Relaxed);
        }
    }
}

/// Writes the exchange's line when the response body is done with.
#[derive(Debug)]
pub(crate) struct ResponseLog(pub(crate) Arc<Exchange>);

impl Drop for ResponseLog {
    fn drop(&mut self) {
        let x = &self.0;
        let protocol = match (x.status.load(Relaxed), x.protocol) {
            (101, _) => "websocket",
            (_, p) => p.as_str(),
        };
        tracing::info!(
            target: "access",
            client = %x.client,
            tls = x.tls,
            protocol,
            method = %x.method,
            path = %x.path,
            status = x.status.load(Relaxed),
            bytes_in = x.bytes_in.load(Relaxed),
            bytes_out = x.bytes_out.load(Relaxed),
            duration_ms = x.started.elapsed().as_micros() as f64 / 1e3,
            // A response dropped before its end (client gone, handler error,
            // drain deadline) is not "complete" whatever its status says.
            complete = x.complete(),
            "request"
        );
    }
}
