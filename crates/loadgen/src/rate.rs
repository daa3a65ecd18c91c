//! Small-request rate and latency at a fixed number of concurrent connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use crate::clients::{Client, Connection};
use crate::error::{Error, Result};
use crate::target::Proto;

/// Latencies above an hour are recorded as an hour.
const MAX_MICROS: u64 = 3_600_000_000;

/// How hard and how long to drive.
#[derive(Debug, Clone)]
pub struct RateOptions {
    /// Concurrent connections, each sending one request at a time.
    pub conns: usize,
    /// Total requests across all connections.
    pub requests: u64,
    /// Optional time limit; whichever of the two comes first ends the run.
    pub duration: Option<Duration>,
    /// Body bytes of each request.
    pub body_bytes: u64,
}

impl Default for RateOptions {
    /// 100 connections, 10,000 requests of 64 bytes, no time limit.
    fn default() -> Self {
        Self {
            conns: 100,
            requests: 10_000,
            duration: None,
            body_bytes: 64,
        }
    }
}

/// Outcome of a rate run.
#[derive(Debug, Clone)]
pub struct RateReport {
    /// Protocol driven.
    pub proto: Proto,
    /// Connections that were opened.
    pub conns: usize,
    /// Requests answered with success.
    pub ok: u64,
    /// Requests that failed or got a non-success answer.
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Largest latency.
    pub max: Duration,
}

impl RateReport {
    /// Successful requests per second.
    pub fn per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }
}

struct Tally {
    histogram: Histogram<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Result<Self> {
        Ok(Self {
            histogram: Histogram::new_with_bounds(1, MAX_MICROS, 3)
                .map_err(|e| Error::Histogram(e.to_string()))?,
            ok: 0,
            errors: 0,
            first_error: None,
        })
    }

    fn fail(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }
}

/// Opens `conns` connections, then sends requests until `requests` were sent
/// or `duration` passed.
pub async fn run(client: &Client, options: &RateOptions) -> Result<RateReport> {
    if options.conns == 0 {
        return Err(Error::Argument("at least one connection is needed".into()));
    }
    let mut opening = JoinSet::new();
    for _ in 0..options.conns {
        let client = client.clone();
        opening.spawn(async move { client.connect().await });
    }
    let mut conns = Vec::with_capacity(options.conns);
    while let Some(joined) = opening.join_next().await {
        let conn = joined.map_err(|e| Error::Protocol(format!("connect task: {e}")))??;
        conns.push(conn);
    }

    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = options.duration.map(|d| started + d);
    let mut workers = JoinSet::new();
    for conn in conns {
        let issued = Arc::clone(&issued);
        let client = client.clone();
        let (requests, body) = (options.requests, options.body_bytes);
        workers.spawn(worker(client, conn, issued, requests, deadline, body));
    }
    let mut total = Tally::new()?;
    while let Some(joined) = workers.join_next().await {
        let tally = joined.map_err(|e| Error::Protocol(format!("worker task: {e}")))??;
        total
            .histogram
            .add(&tally.histogram)
            .map_err(|e| Error::Histogram(e.to_string()))?;
        total.ok += tally.ok;
        total.errors += tally.errors;
        if let Some(error) = tally.first_error {
            total.first_error.get_or_insert(error);
        }
    }
    let elapsed = started.elapsed();
    let micros = |q: f64| Duration::from_micros(total.histogram.value_at_quantile(q));
    Ok(RateReport {
        proto: client.proto(),
        conns: options.conns,
        ok: total.ok,
        errors: total.errors,
        first_error: total.first_error,
        elapsed,
        p50: micros(0.5),
        p99: micros(0.99),
        max: Duration::from_micros(total.histogram.max()),
    })
}

async fn worker(
    client: Client,
    mut conn: Connection,
    issued: Arc<AtomicU64>,
    requests: u64,
    deadline: Option<Instant>,
    body_bytes: u64,
) -> Result<Tally> {
    let mut tally = Tally::new()?;
    while issued.fetch_add(1, Ordering::Relaxed) < requests
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        let started = Instant::now();
        match conn.request(body_bytes).await {
            Ok(result) if result.succeeded() => {
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(MAX_MICROS);
                tally
                    .histogram
                    .saturating_record(micros.clamp(1, MAX_MICROS));
                tally.ok += 1;
            }
            Ok(result) => tally.fail(format!(
                "status {} close {:?}: {}",
                result.status,
                result.close_code,
                result.body_text().trim()
            )),
            Err(error) => {
                tally.fail(error.to_string());
                // The connection is likely dead; one new one, or this worker stops.
                match client.connect().await {
                    Ok(fresh) => conn = fresh,
                    Err(error) => {
                        tally.fail(error.to_string());
                        break;
                    }
                }
            }
        }
    }
    Ok(tally)
}
