//! Small-request rate and latency at a fixed number of concurrent connections:
//! POSTs of a small body (to a sink) or GETs of the URL (of an origin or a
//! caching proxy), optionally checking each answer's body length.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use crate::clients::{self, Client, Connection, GetOptions, GetResult, UploadResult};
use crate::error::{Error, Result};
use crate::target::Proto;

/// Latencies above an hour are recorded as an hour.
const MAX_MICROS: u64 = 3_600_000_000;

/// The request each connection repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// POST a pattern body of [`RateOptions::body_bytes`] (every protocol).
    #[default]
    Post,
    /// GET the URL with no body (HTTP/1.1, HTTP/2 and HTTP/3).
    Get,
}

impl Method {
    /// The name used on the command line and in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Method::Post => "post",
            Method::Get => "get",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "post" => Ok(Method::Post),
            "get" => Ok(Method::Get),
            other => Err(Error::Argument(format!(
                "unknown method {other:?}: use post or get"
            ))),
        }
    }
}

/// How hard and how long to drive.
#[derive(Debug, Clone)]
pub struct RateOptions {
    /// Concurrent connections, each sending one request at a time.
    pub conns: usize,
    /// Total requests across all connections.
    pub requests: u64,
    /// Optional time limit; whichever of the two comes first ends the run.
    pub duration: Option<Duration>,
    /// Body bytes of each POST (ignored for GET).
    pub body_bytes: u64,
    /// The request to repeat.
    pub method: Method,
    /// When set, an answer whose body is not exactly this many bytes counts as
    /// an error, so a server that answers short cannot look fast.
    pub expect_bytes: Option<u64>,
    /// Open a new connection for every request and drop it after the answer,
    /// so the run measures connection set-up (TCP, TLS) plus one request;
    /// latencies then include the handshakes.
    pub new_conn: bool,
}

impl Default for RateOptions {
    /// 100 connections, 10,000 POSTs of 64 bytes, no time limit, any length.
    fn default() -> Self {
        Self {
            conns: 100,
            requests: 10_000,
            duration: None,
            body_bytes: 64,
            method: Method::Post,
            expect_bytes: None,
            new_conn: false,
        }
    }
}

/// Outcome of a rate run.
#[derive(Debug, Clone)]
pub struct RateReport {
    /// Protocol driven.
    pub proto: Proto,
    /// Connections that were opened (with [`RateOptions::new_conn`]: the
    /// number of concurrent workers, each opening one per request).
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
/// or `duration` passed. With [`RateOptions::new_conn`], `conns` workers each
/// open a connection per request instead, timed from the connect.
pub async fn run(client: &Client, options: &RateOptions) -> Result<RateReport> {
    if options.conns == 0 {
        return Err(Error::Argument("at least one connection is needed".into()));
    }
    if options.method == Method::Get && !clients::get_supported(client.proto()) {
        return Err(clients::unsupported_get(client.proto()));
    }
    let mut conns = Vec::with_capacity(options.conns);
    if options.new_conn {
        // Every worker connects per request, inside the timed loop.
        conns.resize_with(options.conns, || None);
    } else {
        let mut opening = JoinSet::new();
        for _ in 0..options.conns {
            let client = client.clone();
            opening.spawn(async move { client.connect().await });
        }
        while let Some(joined) = opening.join_next().await {
            let conn = joined.map_err(|e| Error::Protocol(format!("connect task: {e}")))??;
            conns.push(Some(conn));
        }
    }

    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = options.duration.map(|d| started + d);
    let mut workers = JoinSet::new();
    for conn in conns {
        let issued = Arc::clone(&issued);
        let client = client.clone();
        workers.spawn(worker(client, conn, issued, options.clone(), deadline));
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

/// One connection's loop. `conn` is `None` in new-connection mode: then each
/// request connects first and drops its connection after the answer.
async fn worker(
    client: Client,
    mut conn: Option<Connection>,
    issued: Arc<AtomicU64>,
    options: RateOptions,
    deadline: Option<Instant>,
) -> Result<Tally> {
    let mut tally = Tally::new()?;
    // Nothing kept but enough for an error message, nothing hashed.
    let get = GetOptions {
        range: None,
        hash: false,
        keep_body: 4096,
    };
    while issued.fetch_add(1, Ordering::Relaxed) < options.requests
        && deadline.is_none_or(|d| Instant::now() < d)
    {
        let started = Instant::now();
        let mut fresh = None;
        let answered = match conn.as_mut() {
            Some(conn) => ask(conn, &options, &get).await,
            None => match client.connect().await {
                Ok(opened) => ask(fresh.insert(opened), &options, &get).await,
                Err(error) => Err(error),
            },
        };
        // New-connection mode: the connection ends here, after its one answer.
        drop(fresh);
        match answered {
            Ok(Ok(())) => {
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(MAX_MICROS);
                tally
                    .histogram
                    .saturating_record(micros.clamp(1, MAX_MICROS));
                tally.ok += 1;
            }
            Ok(Err(refused)) => tally.fail(refused),
            Err(error) => {
                tally.fail(error.to_string());
                if options.new_conn {
                    // The next request connects anew anyway; a server refusing
                    // every connection ends the run through `requests`.
                    continue;
                }
                // The connection is likely dead; one new one, or this worker stops.
                match client.connect().await {
                    Ok(fresh) => conn = Some(fresh),
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

/// Sends the run's request on `conn` and judges the answer.
async fn ask(
    conn: &mut Connection,
    options: &RateOptions,
    get: &GetOptions,
) -> Result<Result<(), String>> {
    match options.method {
        Method::Post => conn
            .request(options.body_bytes)
            .await
            .map(|r| judge_post(&r, options.expect_bytes)),
        Method::Get => conn
            .get(get)
            .await
            .map(|r| judge_get(&r, options.expect_bytes)),
    }
}

/// Why an answered POST does not count as a success, if it does not.
fn judge_post(result: &UploadResult, expect_bytes: Option<u64>) -> Result<(), String> {
    if !result.succeeded() {
        return Err(format!(
            "status {} close {:?}: {}",
            result.status,
            result.close_code,
            result.body_text().trim()
        ));
    }
    check_length(result.received, result.status, expect_bytes)
}

/// Why an answered GET does not count as a success, if it does not.
fn judge_get(result: &GetResult, expect_bytes: Option<u64>) -> Result<(), String> {
    if !result.succeeded() {
        return Err(format!(
            "status {}: {}",
            result.status,
            result.body_text().trim()
        ));
    }
    check_length(result.received, result.status, expect_bytes)
}

fn check_length(received: u64, status: u16, expect_bytes: Option<u64>) -> Result<(), String> {
    match expect_bytes {
        Some(expected) if expected != received => Err(format!(
            "status {status} with {received} body bytes, expected {expected}"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A keep-alive HTTP/1.1 server that answers every request `200` with an
    /// empty body and counts the connections it accepted.
    async fn counting_server() -> (std::net::SocketAddr, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(answer_all(stream));
            }
        });
        (addr, accepted)
    }

    async fn answer_all(mut stream: TcpStream) {
        let mut buffered = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            // One request: a head, then `content-length` bytes of body.
            let head_end = loop {
                if let Some(i) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffered.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buffered[..head_end]).to_ascii_lowercase();
            let body: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while buffered.len() < head_end + body {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffered.extend_from_slice(&chunk[..n]),
                }
            }
            buffered.drain(..head_end + body);
            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
            if stream.write_all(reply).await.is_err() {
                return;
            }
        }
    }

    async fn run_against(new_conn: bool) -> (RateReport, u64) {
        let (addr, accepted) = counting_server().await;
        let client = Client::new(Proto::H1, &format!("http://{addr}/discard"), None).unwrap();
        let options = RateOptions {
            conns: 4,
            requests: 40,
            body_bytes: 100,
            new_conn,
            ..RateOptions::default()
        };
        let report = run(&client, &options).await.unwrap();
        (report, accepted.load(Ordering::Relaxed))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn new_conn_opens_one_connection_per_request() {
        let (report, accepted) = run_against(true).await;
        assert_eq!(
            (report.ok, report.errors),
            (40, 0),
            "{:?}",
            report.first_error
        );
        assert_eq!(accepted, 40);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keep_alive_reuses_its_connections() {
        let (report, accepted) = run_against(false).await;
        assert_eq!(
            (report.ok, report.errors),
            (40, 0),
            "{:?}",
            report.first_error
        );
        assert_eq!(accepted, 4);
    }
}
