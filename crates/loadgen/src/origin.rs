//! Bare cleartext origin for cache benchmarks: the baseline a caching reverse
//! proxy is compared against.
//!
//! One listener speaks HTTP/1.1 and h2c (prior knowledge), like the sink's
//! cleartext port:
//! * `GET`/`HEAD /obj/{size}[?anything]` serves an object of `size` bytes
//!   (bytes or K/M/G, powers of 1024, at most [`MAX_OBJECT`]); the query is
//!   ignored, so `/obj/1K?n=7` is a distinct URL to a cache but the same bytes;
//! * a single `Range: bytes=a-b | a- | -n` is answered with 206 or 416; a
//!   multi-range or malformed header is ignored (200, as RFC 9110 allows);
//! * `GET /stats` answers `{"requests":N,"bytes":M}`: object requests and
//!   object body bytes since start, so a harness sees what reached the origin.
//!
//! Byte `i` of every object is `block[i % OBJECT_PERIOD]`, where the block is
//! [`OBJECT_PERIOD`] (a prime, so it never lines up with power-of-two slice or
//! chunk sizes) pseudo-random non-zero bytes from a fixed seed. The block is
//! stored twice in one static buffer, so any window of up to a period is one
//! contiguous slice: bodies go out as zero-copy frames, whatever the size.
//!
//! # Example
//!
//! Fetch the last KiB of a 1 MiB object over h2c and check it:
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), loadgen::Error> {
//! use loadgen::Proto;
//! use loadgen::clients::{Client, GetOptions};
//! use loadgen::origin::{self, Origin};
//!
//! let origin = Origin::start(([127, 0, 0, 1], 0).into()).await?;
//! let url = format!("http://{}/obj/1M?n=1", origin.http_addr());
//! let mut conn = Client::new(Proto::H2, &url, None)?.connect().await?;
//! let options = GetOptions {
//!     range: Some("-1024".into()),
//!     ..GetOptions::default()
//! };
//! let result = conn.get(&options).await?;
//! assert_eq!(result.status, 206);
//! let (start, end) = ((1 << 20) - 1024, 1 << 20);
//! assert_eq!(result.xxh3, Some(origin::object_xxh3(start, end)));
//! assert_eq!(origin.stats().bytes, 1024);
//! # Ok(())
//! # }
//! ```

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    HeaderValue, LAST_MODIFIED, RANGE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use xxhash_rust::xxh3::Xxh3Default;

use crate::error::{Error, Result};
use crate::size::parse_size;

/// Length of the pseudo-random block object bytes repeat with (a prime).
pub const OBJECT_PERIOD: usize = 1_048_573;
/// Largest object served; larger sizes are 404.
pub const MAX_OBJECT: u64 = 64 << 30;
/// Largest body frame handed to hyper.
pub const FRAME: usize = 256 * 1024;
/// The `Last-Modified` of every object (fixed: the bytes never change).
pub const LAST_MODIFIED_DATE: &str = "Mon, 01 Jan 2024 00:00:00 GMT";
/// Seed of the xorshift64 generator filling the block.
const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// The block, twice in a row; built once per process and never freed.
///
/// `'static` rather than a shared `Bytes`: slicing static bytes touches no
/// reference count, so connections on different cores share nothing.
fn doubled_block() -> &'static [u8] {
    static BLOCK: OnceLock<&'static [u8]> = OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut state = SEED;
        let mut block = Vec::with_capacity(2 * OBJECT_PERIOD);
        for _ in 0..OBJECT_PERIOD {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // 1..=255: no zero bytes for a compressing or sparse layer to exploit.
            block.push(((state >> 32) % 255) as u8 + 1);
        }
        block.extend_from_within(..OBJECT_PERIOD);
        Box::leak(block.into_boxed_slice())
    })
}

/// Byte `offset` of every object (objects differ only in length).
pub fn byte_at(offset: u64) -> u8 {
    doubled_block()[(offset % OBJECT_PERIOD as u64) as usize]
}

/// Bytes `start..end` of an object as zero-copy frames of at most [`FRAME`].
pub fn object_frames(start: u64, end: u64) -> ObjectFrames {
    ObjectFrames {
        block: doubled_block(),
        next: start,
        end: end.max(start),
    }
}

/// xxh3-64 of bytes `start..end` of an object: what a client hashing the body
/// of `/obj/{size}` (with `Range: bytes=start-(end-1)`) must get.
pub fn object_xxh3(start: u64, end: u64) -> u64 {
    let mut hasher = Xxh3Default::new();
    for frame in object_frames(start, end) {
        hasher.update(&frame);
    }
    hasher.digest()
}

/// Iterator over the frames of one object window.
#[derive(Debug, Clone)]
pub struct ObjectFrames {
    block: &'static [u8],
    next: u64,
    end: u64,
}

impl ObjectFrames {
    /// Bytes not handed out yet.
    pub fn remaining(&self) -> u64 {
        self.end - self.next
    }
}

impl Iterator for ObjectFrames {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.next >= self.end {
            return None;
        }
        // FRAME < OBJECT_PERIOD, so the window fits in the doubled block.
        let len = (self.end - self.next).min(FRAME as u64) as usize;
        let at = (self.next % OBJECT_PERIOD as u64) as usize;
        self.next += len as u64;
        Some(Bytes::from_static(&self.block[at..at + len]))
    }
}

/// Object requests and object body bytes since an origin started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OriginStats {
    /// Requests on `/obj/…`, whatever their answer (HEAD, 404, 416 included).
    pub requests: u64,
    /// Object body bytes handed to the connection (a client that hangs up
    /// early may not have received them all).
    pub bytes: u64,
}

impl OriginStats {
    /// `{"requests":N,"bytes":M}`, the body of `GET /stats`.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"requests\":{},\"bytes\":{}}}",
            self.requests, self.bytes
        )
    }
}

/// The live counters behind [`OriginStats`].
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> OriginStats {
        OriginStats {
            requests: self.requests.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// A running origin; dropping it stops the listener.
pub struct Origin {
    http: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Origin {
    /// Binds `addr` (port 0 picks one) and starts serving on the current tokio
    /// runtime.
    pub async fn start(addr: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(Error::io(format!("bind {addr}")))?;
        let http = listener.local_addr().map_err(Error::io("local address"))?;
        // Build the block now, not inside the first request's latency.
        doubled_block();
        let counters = Arc::new(Counters::default());
        let shared = Arc::clone(&counters);
        let service = service_fn(
            move |req: Request<Incoming>| -> Ready<Result<_, Infallible>> {
                ready(Ok(respond(&shared, &req)))
            },
        );
        let task = tokio::spawn(crate::serve::accept_loop(listener, None, service));
        Ok(Self {
            http,
            counters,
            task,
        })
    }

    /// Address of the listener.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// The line a harness waits for: `READY http=ADDR`.
    pub fn ready_line(&self) -> String {
        format!("READY http={}", self.http)
    }

    /// Counters so far (the same figures `GET /stats` answers).
    pub fn stats(&self) -> OriginStats {
        self.counters.snapshot()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A response body: a short fixed text, or an object window.
type OriginBody = Either<Full<Bytes>, ObjectBody>;

/// An object window streamed as static slices, counted as it goes out.
pub struct ObjectBody {
    frames: ObjectFrames,
    counters: Arc<Counters>,
}

impl Body for ObjectBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(this.frames.next().map(|data| {
            this.counters
                .bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            Ok(Frame::data(data))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.remaining() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.frames.remaining())
    }
}

/// What a `Range` header asks of an object of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeAsk {
    /// No usable single range: send the whole object.
    Whole,
    /// Bytes `start..end` (end exclusive, non-empty).
    Part(u64, u64),
    /// A single range that selects nothing of this object.
    Unsatisfiable,
}

/// Reads one `bytes=a-b`, `bytes=a-` or `bytes=-n` range against `total`.
///
/// Multi-range and malformed headers yield [`RangeAsk::Whole`]: RFC 9110
/// §14.2 lets a server ignore Range, and a 200 is always a correct answer.
fn parse_range(header: &[u8], total: u64) -> RangeAsk {
    let Ok(text) = std::str::from_utf8(header) else {
        return RangeAsk::Whole;
    };
    let Some((unit, spec)) = text.trim().split_once('=') else {
        return RangeAsk::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let number = |s: &str| -> Option<u64> {
        // Digits only (u64::from_str would take a '+'); a position beyond
        // u64 is past the end of any object, so it saturates.
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().unwrap_or(u64::MAX))
    };
    let (first, last) = (first.trim(), last.trim());
    match (first.is_empty(), last.is_empty()) {
        // `-n`: the last n bytes.
        (true, false) => match number(last) {
            None => RangeAsk::Whole,
            Some(0) => RangeAsk::Unsatisfiable,
            Some(_) if total == 0 => RangeAsk::Unsatisfiable,
            Some(n) => RangeAsk::Part(total - n.min(total), total),
        },
        // `a-`: from a to the end.
        (false, true) => match number(first) {
            None => RangeAsk::Whole,
            Some(a) if a >= total => RangeAsk::Unsatisfiable,
            Some(a) => RangeAsk::Part(a, total),
        },
        // `a-b`: inclusive, b clamped to the end.
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a <= b => {
                if a >= total {
                    RangeAsk::Unsatisfiable
                } else {
                    RangeAsk::Part(a, b.saturating_add(1).min(total))
                }
            }
            _ => RangeAsk::Whole,
        },
        (true, true) => RangeAsk::Whole,
    }
}

/// Answers one request; never fails (every problem has a status code).
fn respond(counters: &Arc<Counters>, req: &Request<Incoming>) -> Response<OriginBody> {
    let path = req.uri().path();
    let method = req.method();
    if path == "/stats" {
        if method != Method::GET {
            return not_allowed("GET");
        }
        let mut response = text(StatusCode::OK, counters.snapshot().to_json());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // A proxy in front must not answer this from its cache.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return response;
    }
    let Some(size) = path.strip_prefix("/obj/") else {
        return text(
            StatusCode::NOT_FOUND,
            "use /obj/{size} (e.g. /obj/64M) or /stats\n".into(),
        );
    };
    counters.requests.fetch_add(1, Ordering::Relaxed);
    let head = method == Method::HEAD;
    if !head && method != Method::GET {
        return not_allowed("GET, HEAD");
    }
    let Some(total) = parse_size(size).ok().filter(|&n| n <= MAX_OBJECT) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("object size {size:?}: use bytes or K/M/G, at most 64G\n"),
        );
    };
    // Range only applies to GET (RFC 9110 §14.2).
    let ask = match req.headers().get(RANGE) {
        Some(value) if !head => parse_range(value.as_bytes(), total),
        _ => RangeAsk::Whole,
    };
    let (status, start, end) = match ask {
        RangeAsk::Whole => (StatusCode::OK, 0, total),
        RangeAsk::Part(start, end) => (StatusCode::PARTIAL_CONTENT, start, end),
        RangeAsk::Unsatisfiable => {
            let mut response = object_response(StatusCode::RANGE_NOT_SATISFIABLE, total, 0);
            insert_formatted(
                response.headers_mut(),
                CONTENT_RANGE,
                format!("bytes */{total}"),
            );
            return response;
        }
    };
    let body = if head {
        Either::Left(Full::new(Bytes::new()))
    } else {
        Either::Right(ObjectBody {
            frames: object_frames(start, end),
            counters: Arc::clone(counters),
        })
    };
    let mut response = object_response(status, total, end - start);
    *response.body_mut() = body;
    if status == StatusCode::PARTIAL_CONTENT {
        let last = end - 1;
        insert_formatted(
            response.headers_mut(),
            CONTENT_RANGE,
            format!("bytes {start}-{last}/{total}"),
        );
    }
    response
}

/// An empty response with every object header; the caller sets the body.
fn object_response(status: StatusCode, total: u64, length: u64) -> Response<OriginBody> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::new())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    // Explicit, so a HEAD answer carries the length its GET would have.
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    insert_formatted(headers, ETAG, format!("\"obj-{total}\""));
    headers.insert(LAST_MODIFIED, HeaderValue::from_static(LAST_MODIFIED_DATE));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// Inserts a header built from digits and ASCII punctuation only.
fn insert_formatted(headers: &mut http::HeaderMap, name: http::HeaderName, value: String) {
    // Only our own digits and quotes get here, which are always valid; a
    // missing header is still better than a panic.
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(name, value);
    }
}

fn text(status: StatusCode, body: String) -> Response<OriginBody> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn not_allowed(allow: &'static str) -> Response<OriginBody> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, format!("use {allow}\n"));
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_the_bytes_byte_at_names_and_never_zero() {
        let period = OBJECT_PERIOD as u64;
        // Windows straddling the first and second period boundaries.
        for (start, end) in [
            (0, 70_000),
            (period - 300_000, period + 300_000),
            (2 * period - 5, 2 * period + 5),
        ] {
            let mut offset = start;
            for frame in object_frames(start, end) {
                assert!(frame.len() <= FRAME);
                for &byte in frame.iter() {
                    assert_eq!(byte, byte_at(offset), "offset {offset}");
                    assert_ne!(byte, 0);
                    offset += 1;
                }
            }
            assert_eq!(offset, end);
        }
        assert_eq!(byte_at(5), byte_at(5 + period));
        assert_eq!(object_frames(10, 10).count(), 0);
        assert_eq!(object_frames(10, 3).count(), 0);
    }

    #[test]
    fn the_hash_helper_hashes_the_named_bytes() {
        let bytes: Vec<u8> = (123..456_789).map(byte_at).collect();
        assert_eq!(
            object_xxh3(123, 456_789),
            xxhash_rust::xxh3::xxh3_64(&bytes)
        );
        assert_eq!(object_xxh3(7, 7), xxhash_rust::xxh3::xxh3_64(&[]));
    }

    #[test]
    fn single_ranges_are_read_and_others_ignored() {
        let ask = |h: &str| parse_range(h.as_bytes(), 1000);
        assert_eq!(ask("bytes=0-99"), RangeAsk::Part(0, 100));
        assert_eq!(ask("bytes=500-"), RangeAsk::Part(500, 1000));
        assert_eq!(ask("bytes=-100"), RangeAsk::Part(900, 1000));
        assert_eq!(ask("bytes=-5000"), RangeAsk::Part(0, 1000));
        assert_eq!(ask("bytes=990-5000"), RangeAsk::Part(990, 1000));
        assert_eq!(ask("Bytes = 1-1"), RangeAsk::Part(1, 2));
        assert_eq!(ask("bytes=1000-"), RangeAsk::Unsatisfiable);
        assert_eq!(ask("bytes=1000-2000"), RangeAsk::Unsatisfiable);
        assert_eq!(ask("bytes=-0"), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(b"bytes=-1", 0), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(b"bytes=0-", 0), RangeAsk::Unsatisfiable);
        for ignored in [
            "bytes=0-1,5-6",
            "bytes=5-1",
            "bytes=-",
            "bytes=x-1",
            "bytes=+1-2",
            "items=0-1",
            "bytes 0-1",
            "",
        ] {
            assert_eq!(ask(ignored), RangeAsk::Whole, "{ignored:?}");
        }
        assert_eq!(parse_range(b"bytes=\xff-1", 1000), RangeAsk::Whole);
        assert_eq!(
            ask("bytes=0-99999999999999999999999"),
            RangeAsk::Part(0, 1000)
        );
        assert_eq!(
            ask("bytes=99999999999999999999999-"),
            RangeAsk::Unsatisfiable
        );
        assert_eq!(
            parse_range(b"bytes=0-18446744073709551615", 10),
            RangeAsk::Part(0, 10)
        );
    }

    #[test]
    fn stats_render_as_flat_json() {
        let stats = OriginStats {
            requests: 3,
            bytes: 42,
        };
        assert_eq!(stats.to_json(), r#"{"requests":3,"bytes":42}"#);
    }
}
