//! The S3 operations over the worker API: a request's path, query and
//! headers decide the operation; [`serve`] answers it.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, stream};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use worker_client::{ClientError, RemoteJob};

use crate::store::{Meta, Store, StoreError};
use crate::xml;

/// Largest `CompleteMultipartUpload` document read (10,000 parts fit).
const MAX_COMPLETE_BODY: usize = 2 << 20;
/// Read size for object bodies.
const READ_CHUNK: usize = 256 << 10;

/// What the request names, decoded from its path and query.
struct Target {
    bucket: String,
    key: String,
    query: Vec<(String, String)>,
}

impl Target {
    fn parse(path_and_query: &str, strip: &str) -> Option<Self> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let path = path.strip_prefix(strip)?.strip_prefix('/')?;
        let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
        let decode = |s: &str| {
            percent_decode_str(&s.replace('+', "%20"))
                .decode_utf8()
                .ok()
                .map(|c| c.into_owned())
        };
        let mut pairs = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            pairs.push((decode(k)?, decode(v)?));
        }
        Some(Self {
            bucket: percent_decode_str(bucket).decode_utf8().ok()?.into_owned(),
            key: percent_decode_str(key).decode_utf8().ok()?.into_owned(),
            query: pairs,
        })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.query.iter().any(|(k, _)| k == name)
    }
}

/// A refusal: S3 status and code.
struct S3Error {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl S3Error {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for S3Error {
    fn from(e: StoreError) -> Self {
        let (status, code) = match &e {
            StoreError::NoSuchBucket => (StatusCode::NOT_FOUND, "NoSuchBucket"),
            StoreError::NoSuchKey => (StatusCode::NOT_FOUND, "NoSuchKey"),
            StoreError::NoSuchUpload => (StatusCode::NOT_FOUND, "NoSuchUpload"),
            StoreError::InvalidPart(_) => (StatusCode::BAD_REQUEST, "InvalidPart"),
            StoreError::InvalidName => (StatusCode::BAD_REQUEST, "InvalidBucketName"),
            StoreError::Body(_) => (StatusCode::BAD_REQUEST, "IncompleteBody"),
            StoreError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        };
        Self::new(status, code, e.to_string())
    }
}

/// A response ready to send: status, headers, and a body stream.
type Reply = (StatusCode, HeaderMap, BodyBox);

/// A response body (`respond` needs `Sync`, which `BoxStream` is not).
type BodyBox = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync>>;

pub async fn serve(store: &Store, strip: &str, job: RemoteJob) -> Result<(), ClientError> {
    let method = job.request().method.clone();
    let reply = match Target::parse(&job.request().path, strip) {
        None => Err(S3Error::new(
            StatusCode::BAD_REQUEST,
            "InvalidURI",
            "not a /bucket/key path",
        )),
        Some(target) => dispatch(store, &method, &target, &job).await,
    };
    let (status, headers, body) = reply.unwrap_or_else(|e| {
        let resource = job.request().path.clone();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        let text = if method == "HEAD" {
            String::new()
        } else {
            xml::error(e.code, &e.message, &resource)
        };
        (e.status, headers, once(text))
    });
    job.respond(status, &headers, body).await
}

fn once(text: String) -> BodyBox {
    Box::pin(stream::once(async move { Ok(Bytes::from(text)) }))
}

fn xml_reply(text: String) -> Reply {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    (StatusCode::OK, headers, once(text))
}

fn empty_reply(status: StatusCode, headers: HeaderMap) -> Reply {
    (status, headers, Box::pin(stream::empty()))
}

async fn dispatch(
    store: &Store,
    method: &str,
    t: &Target,
    job: &RemoteJob,
) -> Result<Reply, S3Error> {
    let content_type = job.header("content-type").map(str::to_owned);
    match (method, t.key.is_empty()) {
        ("PUT", true) if t.query.is_empty() => {
            store.create_bucket(&t.bucket).await?;
            Ok(empty_reply(StatusCode::OK, HeaderMap::new()))
        }
        ("HEAD", true) => {
            store.has_bucket(&t.bucket)?;
            Ok(empty_reply(StatusCode::OK, HeaderMap::new()))
        }
        ("GET", true) if t.param("list-type") == Some("2") => list(store, t).await,
        ("PUT", false) if job.header("x-amz-copy-source").is_some() => {
            Err(not_implemented("CopyObject"))
        }
        ("PUT", false) if t.has("uploadId") => {
            let number = t
                .param("partNumber")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| {
                    S3Error::new(StatusCode::BAD_REQUEST, "InvalidArgument", "partNumber")
                })?;
            let upload = t.param("uploadId").unwrap_or_default();
            let etag = store
                .upload_part(
                    &t.bucket,
                    &t.key,
                    upload,
                    number,
                    job.body().await.map_err(body_failed)?,
                )
                .await?;
            Ok(empty_reply(StatusCode::OK, etag_header(&etag)))
        }
        ("PUT", false) if t.query.is_empty() => {
            let body = job.body().await.map_err(body_failed)?;
            let meta = store
                .put_object(&t.bucket, &t.key, content_type, body)
                .await?;
            Ok(empty_reply(StatusCode::OK, etag_header(&meta.etag)))
        }
        ("POST", false) if t.has("uploads") => {
            let id = store.create_upload(&t.bucket, &t.key, content_type).await?;
            Ok(xml_reply(xml::initiate_upload(&t.bucket, &t.key, &id)))
        }
        ("POST", false) if t.has("uploadId") => {
            let doc = read_small(job, MAX_COMPLETE_BODY).await?;
            let parts = xml::parse_complete(&doc)
                .ok_or_else(|| S3Error::new(StatusCode::BAD_REQUEST, "MalformedXML", "no parts"))?;
            let upload = t.param("uploadId").unwrap_or_default();
            let meta = store
                .complete_upload(&t.bucket, &t.key, upload, &parts)
                .await?;
            Ok(xml_reply(xml::complete_upload(
                &t.bucket, &t.key, &meta.etag,
            )))
        }
        ("DELETE", false) if t.has("uploadId") => {
            let upload = t.param("uploadId").unwrap_or_default();
            store.abort_upload(&t.bucket, &t.key, upload).await?;
            Ok(empty_reply(StatusCode::NO_CONTENT, HeaderMap::new()))
        }
        ("DELETE", false) if t.query.is_empty() => {
            store.delete_object(&t.bucket, &t.key).await?;
            Ok(empty_reply(StatusCode::NO_CONTENT, HeaderMap::new()))
        }
        ("GET" | "HEAD", false) if !t.has("uploadId") && !t.has("partNumber") => {
            let (meta, path) = store.object(&t.bucket, &t.key).await?;
            get(meta, path, job.header("range"), method == "HEAD").await
        }
        _ => Err(not_implemented(method)),
    }
}

fn not_implemented(what: &str) -> S3Error {
    S3Error::new(
        StatusCode::NOT_IMPLEMENTED,
        "NotImplemented",
        format!("{what}: not supported by this worker"),
    )
}

fn body_failed(e: ClientError) -> S3Error {
    StoreError::Body(e.to_string()).into()
}

fn etag_header(etag: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers
}

/// The whole body, if it is at most `limit` bytes.
async fn read_small(job: &RemoteJob, limit: usize) -> Result<String, S3Error> {
    let mut body = job.body().await.map_err(body_failed)?;
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.map_err(body_failed)?);
        if out.len() > limit {
            return Err(S3Error::new(
                StatusCode::BAD_REQUEST,
                "MaxMessageLengthExceeded",
                "document too large",
            ));
        }
    }
    String::from_utf8(out)
        .map_err(|_| S3Error::new(StatusCode::BAD_REQUEST, "MalformedXML", "not UTF-8"))
}

async fn list(store: &Store, t: &Target) -> Result<Reply, S3Error> {
    let prefix = t.param("prefix").unwrap_or_default();
    let delimiter = t.param("delimiter").filter(|d| !d.is_empty());
    let max_keys = t
        .param("max-keys")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000usize)
        .min(1000);
    // The continuation token is the last key returned (opaque to clients).
    let after = t
        .param("continuation-token")
        .or_else(|| t.param("start-after"))
        .unwrap_or_default();
    let all = store.list(&t.bucket, prefix).await?;
    let (mut objects, mut prefixes): (Vec<Meta>, Vec<String>) = (Vec::new(), Vec::new());
    let mut next_token = None;
    for meta in all.into_iter().filter(|m| m.key.as_str() > after) {
        let rolled = delimiter.and_then(|d| {
            meta.key[prefix.len()..]
                .find(d)
                .map(|at| meta.key[..prefix.len() + at + d.len()].to_owned())
        });
        if let Some(common) = &rolled
            && prefixes.last() == Some(common)
        {
            continue;
        }
        if objects.len() + prefixes.len() == max_keys {
            next_token = Some(match prefixes.last().filter(|_| rolled.is_some()) {
                Some(p) => p.clone(),
                None => objects.last().map(|m| m.key.clone()).unwrap_or_default(),
            });
            break;
        }
        match rolled {
            Some(common) => prefixes.push(common),
            None => objects.push(meta),
        }
    }
    Ok(xml_reply(xml::list_objects(&xml::Listing {
        bucket: &t.bucket,
        prefix,
        delimiter,
        max_keys,
        objects: &objects,
        common_prefixes: &prefixes,
        next_token,
    })))
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` within `size`: `(start, end)` inclusive.
fn parse_range(range: &str, size: u64) -> Option<(u64, u64)> {
    let spec = range.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.checked_sub(n.min(size))?, size.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, size.checked_sub(1)?),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.min(size.checked_sub(1)?),
        ),
    };
    (start <= end && end < size).then_some((start, end))
}

fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let (y, m, d) = xml::civil_from_days(days as i64);
    let rem = secs % 86_400;
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

async fn get(
    meta: Meta,
    path: std::path::PathBuf,
    range: Option<&str>,
    head: bool,
) -> Result<Reply, S3Error> {
    let mut headers = etag_header(&meta.etag);
    let content_type = meta
        .content_type
        .as_deref()
        .unwrap_or("binary/octet-stream");
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&http_date(meta.modified)) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    let (status, start, len) = match range {
        None => (StatusCode::OK, 0, meta.size),
        Some(range) => match parse_range(range, meta.size) {
            Some((start, end)) => {
                let value = format!("bytes {start}-{end}/{}", meta.size);
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
                (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
            }
            None => {
                return Err(S3Error::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "InvalidRange",
                    "the requested range is not satisfiable",
                ));
            }
        },
    };
    if head {
        // No body to frame: the worker API sets the length for us.
        headers.insert("x-ur-content-length", HeaderValue::from(len));
        return Ok(empty_reply(status, headers));
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(StoreError::from)?;
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(StoreError::from)?;
    let reader = file.take(len);
    let body = tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK);
    Ok((status, headers, Box::pin(body)))
}
