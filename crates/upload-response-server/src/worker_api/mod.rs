//! The remote worker API (ARCHITECTURE.md §8) and `/metrics`, on the worker
//! listener (HTTP/1.1 and h2c). `docs/worker-api.md` is the wire contract.

mod claims;
mod error;
mod metrics;
mod responses;
mod signatures;
mod streams;

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, Uri, header};
use http_body::{Frame, SizeHint};
use serde::Serialize;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use upload_response::{HttpVersion, Job, Route, UploadResponseService};
use web_service::Metrics;

use claims::{Claim, Claims};
pub(crate) use error::ApiError;
use metrics::ApiMetrics;

/// Longest `wait_ms` a long-poll may ask for; longer is a 400, so a typo
/// cannot park a connection for hours.
const MAX_WAIT_MS: u64 = 300_000;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct Api {
    service: UploadResponseService,
    claims: Claims,
    token: Arc<[u8]>,
    /// Cancelled when the server starts shutting down.
    stop: CancellationToken,
    metrics: Arc<ApiMetrics>,
}

/// The worker listener's router: `/v1/...` behind the bearer token, and
/// `/metrics` open to scrapers.
pub(crate) fn router(
    service: UploadResponseService,
    web: Arc<Metrics>,
    token: &str,
    lease: Duration,
    stop: CancellationToken,
) -> axum::Router {
    let api_metrics = Arc::new(ApiMetrics::new());
    let api = Api {
        service: service.clone(),
        claims: Claims::new(lease, api_metrics.clone()),
        token: token.as_bytes().into(),
        stop: stop.clone(),
        metrics: api_metrics.clone(),
    };
    let v1 = axum::Router::new()
        .route("/v1/claim", post(claim))
        .route("/v1/responses", post(responses::responses))
        .route("/v1/streams", get(list))
        .route("/v1/streams/{id}/body", get(streams::body))
        .route("/v1/streams/{id}/response", post(streams::response))
        .route(
            "/v1/streams/{id}/claim",
            post(streams::claim_stream).delete(streams::release_stream),
        )
        .route(
            "/v1/streams/{id}/readers/{worker}",
            post(streams::add_reader).delete(streams::remove_reader),
        )
        .route("/v1/streams/{id}/slots/{n}", get(streams::slot))
        .route("/v1/streams/{id}/signatures", get(signatures::signatures))
        .route_layer(middleware::from_fn_with_state(api.clone(), authorize))
        .fallback(not_found)
        // Outside the authorization layer, so refused calls count too.
        .layer(middleware::from_fn_with_state(api.clone(), count))
        .with_state(api);
    let metrics = get(move || {
        let service = service.clone();
        let (web, api_metrics) = (web.clone(), api_metrics.clone());
        async move {
            let text = metrics::page(&service, &api_metrics, &web);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, service_ops::PROMETHEUS_CONTENT_TYPE)],
                text,
            )
        }
    });
    let probe = |path: &'static str| {
        let stop = stop.clone();
        get(move || {
            let stop = stop.clone();
            async move {
                // `path` is one of the two probe paths routed here.
                let probe = service_ops::probe(path, stop.is_cancelled())
                    .unwrap_or(service_ops::Probe::Alive);
                (
                    probe.status(),
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    probe.body(),
                )
            }
        })
    };
    // Probes and metrics sit outside the token: scrapers and kubelets have none.
    v1.route("/metrics", metrics)
        .route("/healthz", probe("/healthz"))
        .route("/readyz", probe("/readyz"))
}

/// Counts each call by its route template and answer status.
async fn count(State(api): State<Api>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    api.metrics.call(&route, response.status().as_u16());
    response
}

async fn not_found() -> ApiError {
    ApiError::NoSuchEndpoint
}

/// Rejects a call without `Authorization: Bearer <token>` (401).
async fn authorize(State(api): State<Api>, request: Request, next: Next) -> Response {
    // The scheme name is case-insensitive (RFC 9110 §11.1).
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
        .map_or(&[][..], |v| &v[7..]);
    // Constant time, so response timing does not reveal how many leading
    // bytes of a guess were right (the length is not secret: tokens are
    // generated with a fixed length).
    if bool::from(given.ct_eq(&api.token)) {
        next.run(request).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// The query string as a map (percent-decoded, `+` as space). Later
/// duplicates win.
pub(crate) fn query(uri: &Uri) -> HashMap<String, String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The required, non-empty `worker` parameter.
pub(crate) fn worker_param(params: &HashMap<String, String>) -> Result<String, ApiError> {
    match params.get("worker") {
        Some(w) if !w.is_empty() => Ok(w.clone()),
        _ => Err(ApiError::BadRequest("missing worker=ID".into())),
    }
}

/// The optional `wait_ms` parameter (default 0: answer at once).
pub(crate) fn wait_param(params: &HashMap<String, String>) -> Result<Duration, ApiError> {
    let Some(text) = params.get("wait_ms") else {
        return Ok(Duration::ZERO);
    };
    match text.parse::<u64>() {
        Ok(ms) if ms <= MAX_WAIT_MS => Ok(Duration::from_millis(ms)),
        _ => Err(ApiError::BadRequest(format!(
            "wait_ms must be an integer from 0 to {MAX_WAIT_MS}"
        ))),
    }
}

/// The claimed request, as `POST /v1/claim` returns it.
#[derive(Serialize)]
struct Claimed {
    stream_id: u64,
    method: String,
    path: String,
    authority: String,
    version: &'static str,
    headers: Vec<(String, String)>,
    /// The whole body, base64, when the claim asked for small bodies to
    /// come along (`inline_max`) and this one had ended in time.
    #[serde(skip_serializing_if = "Option::is_none")]
    body_b64: Option<String>,
}

impl Claimed {
    fn of(job: &Job) -> Self {
        let head = job.head();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Self {
            stream_id: job.stream_id(),
            method: head.method.to_string(),
            path: head
                .path
                .as_ref()
                .map_or_else(String::new, |p| p.to_string()),
            authority: head
                .authority
                .as_ref()
                .map_or_else(String::new, |a| a.to_string()),
            version: match head.version {
                HttpVersion::Http09 => "HTTP/0.9",
                HttpVersion::Http10 => "HTTP/1.0",
                HttpVersion::Http11 => "HTTP/1.1",
                HttpVersion::H2 => "HTTP/2",
                HttpVersion::H3 => "HTTP/3",
            },
            headers: head
                .headers
                .iter()
                .map(|h| (text(h.name()), text(h.value())))
                .collect(),
            body_b64: None,
        }
    }
}

/// Most requests one `POST /v1/claim?max=K` takes.
const MAX_BATCH: usize = 64;
/// Largest body a claim carries along (`inline_max`): with [`MAX_BATCH`],
/// one claim answer holds at most 4 MiB of bodies (5.3 MiB as base64).
const MAX_INLINE: usize = 64 * 1024;
/// How long a claim waits for the end of a body whose `content-length`
/// says it may come along: the head is dispatched the moment it arrives,
/// usually a moment before the body it came with. A body that takes longer
/// is read with `GET .../body` as usual.
const INLINE_WAIT: Duration = Duration::from_millis(20);

/// The optional integer parameter `name`, from 0 to `max` (else 400).
fn bounded_param(
    params: &HashMap<String, String>,
    name: &str,
    min: usize,
    max: usize,
) -> Result<Option<usize>, ApiError> {
    let Some(text) = params.get(name) else {
        return Ok(None);
    };
    match text.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(ApiError::BadRequest(format!(
            "{name} must be an integer from {min} to {max}"
        ))),
    }
}

/// A claimed job, its body reader, and the body itself if it came along.
/// Field order matters, as in the claim table: dropped (the worker hung up
/// while its claim waited for a body), the job goes before the reader, so
/// the request is offered again while the reader still pins its slots.
struct Taken {
    job: Job,
    body: upload_response::RequestBody,
    whole: Option<Bytes>,
}

/// Takes `job`'s body reader and, if `inline_max` allows, its whole body:
/// at once if it has already ended, after up to [`INLINE_WAIT`] if its
/// `content-length` says it fits.
async fn take(mut job: Job, inline_max: Option<usize>) -> Taken {
    let body = job.body();
    let mut taken = Taken {
        job,
        body,
        whole: None,
    };
    taken.whole = match inline_max {
        None => None,
        Some(max) => {
            let declared = taken
                .job
                .head()
                .headers
                .iter()
                .find(|h| h.name().eq_ignore_ascii_case(b"content-length"))
                .and_then(|h| std::str::from_utf8(h.value()).ok()?.parse::<u64>().ok());
            let within = match declared {
                Some(n) if n <= max as u64 => INLINE_WAIT,
                _ => Duration::ZERO,
            };
            taken.body.complete_within(max, within).await
        }
    };
    taken
}

/// `POST /v1/claim?worker=ID&prefix=/p&wait_ms=N[&max=K][&inline_max=B]`:
/// a long-poll on the push-based dispatcher. With `max`, the answer is an
/// array: the first request that comes, plus up to `max - 1` more already
/// queued. With `inline_max`, a body of at most that many bytes that has
/// ended comes along as `body_b64`. Dropping this future (the worker hung
/// up while waiting) withdraws the wait; nothing is claimed.
async fn claim(State(api): State<Api>, uri: Uri) -> Result<Response, ApiError> {
    let params = query(&uri);
    let worker_name = worker_param(&params)?;
    let wait = wait_param(&params)?;
    let batch = bounded_param(&params, "max", 1, MAX_BATCH)?;
    let inline_max = bounded_param(&params, "inline_max", 0, MAX_INLINE)?;
    let prefix = params.get("prefix").cloned().unwrap_or_default();
    let worker = api
        .service
        .worker(worker_name.as_str(), Route::prefix(prefix));
    // A shutdown ends the waits at once (204), so long-polls do not hold
    // the drain up; `next_job` is cancel-safe, so nothing is lost.
    let job = tokio::select! {
        _ = api.stop.cancelled() => None,
        job = tokio::time::timeout(wait, worker.next_job()) => job.ok(),
    };
    let Some(job) = job else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let mut jobs = vec![job];
    while jobs.len() < batch.unwrap_or(1) {
        match worker.try_next_job() {
            Some(job) => jobs.push(job),
            None => break,
        }
    }
    // Every job is claimed already: the waits for their bodies run side by
    // side, so a batch waits at most one INLINE_WAIT.
    let taken = futures_util::future::join_all(jobs.into_iter().map(|j| take(j, inline_max))).await;
    let mut answers = Vec::with_capacity(taken.len());
    let mut undelivered = Vec::with_capacity(taken.len());
    for Taken { job, body, whole } in taken {
        let mut claimed = Claimed::of(&job);
        let inlined = whole.is_some();
        if let Some(bytes) = whole {
            api.metrics.body_bytes.inc_by(bytes.len() as u64);
            claimed.body_b64 = Some(base64::engine::general_purpose::STANDARD.encode(&bytes));
        }
        answers.push(claimed);
        let id = job.stream_id();
        undelivered.push((id, api.claims.insert_with(&worker_name, job, body, inlined)));
    }
    let json = match batch {
        Some(_) => serde_json::to_vec(&answers),
        None => serde_json::to_vec(&answers[0]),
    };
    let mut body = ClaimBody {
        json: None,
        claims: api.claims.clone(),
        undelivered,
    };
    // Built before the error check: a claim that cannot be encoded is
    // given back by the body's drop, like an undelivered one.
    let json = json.map_err(|e| ApiError::Internal(format!("cannot encode the claim: {e}")))?;
    body.json = Some(Bytes::from(json));
    let mut response = Response::new(axum::body::Body::new(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// The claim's JSON body. If the connection is gone before the JSON was
/// handed to it (the worker vanished between claim and answer), the body is
/// dropped unsent and its claims are given back at once, so the requests
/// are offered to other workers instead of waiting out the lease.
struct ClaimBody {
    json: Option<Bytes>,
    claims: Claims,
    undelivered: Vec<(u64, Arc<Claim>)>,
}

impl http_body::Body for ClaimBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.undelivered.clear();
        Poll::Ready(self.json.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.json.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.json.as_ref().map_or(0, |b| b.len() as u64))
    }
}

impl Drop for ClaimBody {
    fn drop(&mut self) {
        for (id, claim) in self.undelivered.drain(..) {
            if self.claims.abandon(id, &claim) {
                tracing::debug!(stream = id, "claim not delivered; request offered again");
            }
        }
    }
}

/// `GET /v1/streams`: the requests in flight.
async fn list(State(api): State<Api>) -> Result<Response, ApiError> {
    let json = serde_json::to_vec(&api.service.streams())
        .map_err(|e| ApiError::Internal(format!("cannot encode the stream list: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// Response headers a worker may not set: hop-by-hop ones, credentials,
/// `host`, the API's own `x-ur-*`, and `expect` (a request-only control
/// header that curl adds to large uploads).
pub(crate) fn response_headers(given: &HeaderMap) -> HeaderMap {
    // Beyond the hop-by-hop fields: credentials and control fields that are the
    // API's or the request's, never the worker's to answer with.
    const DROPPED: [&str; 5] = [
        "proxy-authenticate",
        "proxy-authorization",
        "authorization",
        "host",
        "expect",
    ];
    let mut out = http_pack::hop_by_hop::end_to_end(given);
    let dropped: Vec<_> = out
        .keys()
        .filter(|n| DROPPED.contains(&n.as_str()) || n.as_str().starts_with("x-ur-"))
        .cloned()
        .collect();
    for name in dropped {
        out.remove(name);
    }
    out
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Full};
    use upload_response::UploadResponseConfig;

    use super::*;

    /// A claim answer dropped before it reached the connection gives the
    /// request back at once; one that was handed over keeps the claim.
    #[tokio::test]
    async fn an_undelivered_claim_is_offered_again() {
        let service = UploadResponseService::new(UploadResponseConfig::default()).unwrap();
        let claims = Claims::new(Duration::from_secs(600), Arc::new(ApiMetrics::new()));
        let client = tokio::spawn({
            let service = service.clone();
            async move {
                let request = http::Request::post("/u")
                    .body(Full::new(Bytes::from("hi")))
                    .unwrap();
                service.handle(request).await.status()
            }
        });
        let answer = |name: &str, job: Job| {
            let id = job.stream_id();
            let claim = claims.insert(name, job);
            ClaimBody {
                json: Some(Bytes::from_static(b"{}")),
                claims: claims.clone(),
                undelivered: vec![(id, claim)],
            }
        };
        let route = Route::prefix("/u");
        let first = service.worker("first", route.clone()).next_job().await;
        let id = first.stream_id();
        drop(answer("first", first)); // the worker's connection is gone

        let worker = service.worker("second", route.clone());
        let second = tokio::time::timeout(Duration::from_secs(5), worker.next_job())
            .await
            .expect("the request must be offered again");
        assert_eq!(second.stream_id(), id);
        let delivered = answer("second", second);
        delivered.collect().await.unwrap(); // handed to the connection
        let claim = claims.get(id).expect("a delivered claim stays");
        assert_eq!(claim.worker, "second");

        let job = claim.take_job().unwrap();
        let writer = job
            .respond(StatusCode::NO_CONTENT, &HeaderMap::new())
            .await
            .unwrap();
        writer.finish().await.unwrap();
        assert_eq!(client.await.unwrap(), StatusCode::NO_CONTENT);
    }
}
