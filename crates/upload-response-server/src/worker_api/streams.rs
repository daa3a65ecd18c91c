//! `/v1/streams/{id}/...`: a claimed request's body and response, and the
//! seed's coordination primitives over the wire.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use chunk_cache::{SlotKind, StreamId};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use upload_response::{ResponseHead, ResponseWriter, TailError, TailSlot};

use super::claims::Claim;
use super::{Api, ApiError, query, response_headers, wait_param, worker_param};

/// `GET /v1/streams/{id}/body?worker=ID`: the request body as it arrives.
/// The claimer gets its claim's reader (each chunk renews the lease);
/// anyone else tails the stream, advancing its reader registration if it
/// has one. An aborted request ends the body with an error, which the
/// connection turns into a reset (HTTP/1.1: closed before the last chunk;
/// h2c: `RST_STREAM`), never a clean end.
pub(super) async fn body(
    State(api): State<Api>,
    Path(id): Path<u64>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let worker = worker_param(&query(&uri))?;
    if let Some(claim) = api.claims.get(id).filter(|c| c.worker == worker) {
        let body = claim.take_body().ok_or_else(|| {
            ApiError::Conflict(format!("the body of stream {id} is already being read"))
        })?;
        let lease = api.claims.lease();
        claim.renew(lease);
        let chunks = body.into_stream().map(move |chunk| {
            claim.renew(lease);
            chunk
        });
        return Ok(octets(Body::from_stream(chunks)));
    }
    api.service.reader_count(id)?; // 404 for a stream not in flight
    let service = api.service.clone();
    let chunks = futures_util::stream::unfold(Some(2u64), move |next| {
        let (service, worker) = (service.clone(), worker.clone());
        async move {
            let n = next?;
            match service.tail_request_for(id, worker.as_str(), n).await {
                Ok(TailSlot::Body(bytes)) => Some((Ok(bytes), Some(n + 1))),
                Ok(TailSlot::End) => None,
                Ok(TailSlot::Headers(_)) => Some((
                    Err(TailError::CorruptHead(format!("slot {n} holds a head"))),
                    None,
                )),
                Err(e) => Some((Err(e), None)),
            }
        }
    });
    Ok(octets(Body::from_stream(chunks)))
}

fn octets(body: Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// Where a response call writes: its claim's job, or (for a stream claimed
/// with `POST /v1/streams/{id}/claim`) the seed API by stream id.
enum Sink {
    Job {
        writer: ResponseWriter,
        claim: Arc<Claim>,
    },
    Seed {
        worker: String,
    },
}

/// `POST /v1/streams/{id}/response?worker=ID` with `x-ur-status`: writes
/// the response head at once, then streams this call's body to the client.
/// `204` once the whole response is written; if this call's body fails (the
/// worker vanished mid-response) the client's response is reset.
pub(super) async fn response(
    State(api): State<Api>,
    Path(id): Path<u64>,
    uri: Uri,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let started = async {
        let worker = worker_param(&query(&uri))?;
        let head = response_head(&parts.headers)?;
        open_sink(&api, id, worker, head).await
    }
    .await;
    let mut sink = match started {
        Ok(sink) => sink,
        Err(e) => {
            drain(body).await;
            return Err(e);
        }
    };
    // If the worker's connection breaks, the server drops this future
    // midway: the guard still takes the claim out of the table and, for a
    // seed claim, resets the client's response.
    let cleanup = Cleanup::new(&api, id, &sink);
    pump(&api, id, &mut sink, body).await?;
    match sink {
        Sink::Job { writer, .. } => writer.finish().await?,
        Sink::Seed { worker } => api.service.end_response(id, worker.as_str()).await?,
    }
    cleanup.disarm_seed();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Ends a response call however it ends: a remote claim leaves the table;
/// a seed claim that did not complete is released (resetting the client,
/// since its headers were written). A [`Sink::Job`] writer dropped
/// unfinished resets the client by itself.
struct Cleanup {
    api: Api,
    id: u64,
    claim: Option<Arc<Claim>>,
    seed_worker: Option<String>,
}

impl Cleanup {
    fn new(api: &Api, id: u64, sink: &Sink) -> Self {
        let (claim, seed_worker) = match sink {
            Sink::Job { claim, .. } => (Some(claim.clone()), None),
            Sink::Seed { worker } => (None, Some(worker.clone())),
        };
        Self {
            api: api.clone(),
            id,
            claim,
            seed_worker,
        }
    }

    /// The seed response completed: nothing to release.
    fn disarm_seed(mut self) {
        self.seed_worker = None;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(claim) = &self.claim {
            self.api.claims.finish(self.id, claim);
        }
        if let Some(worker) = &self.seed_worker {
            // The stream may already be gone; then there is nothing to reset.
            let _ = self.api.service.release_response(self.id, worker.as_str());
        }
    }
}

/// Writes the head through the caller's claim (or the seed API).
async fn open_sink(
    api: &Api,
    id: u64,
    worker: String,
    head: ResponseHead,
) -> Result<Sink, ApiError> {
    match api.claims.get(id) {
        Some(claim) if claim.worker == worker => {
            let job = claim.take_job().ok_or_else(|| {
                ApiError::Conflict(format!("the response of stream {id} was already started"))
            })?;
            claim.renew(api.claims.lease());
            // A failed head write (the response stream was aborted: timeout,
            // client gone) drops the job, and the claim is over.
            match job.respond_head(head).await {
                Ok(writer) => Ok(Sink::Job { writer, claim }),
                Err(e) => {
                    api.claims.finish(id, &claim);
                    Err(e.into())
                }
            }
        }
        Some(_) => Err(not_owner(id, &worker)),
        None => {
            api.service
                .write_response_headers(id, worker.as_str(), head)
                .await?;
            Ok(Sink::Seed { worker })
        }
    }
}

/// Reads (and drops) a refused call's body, up to 1 MiB or 1 s, before the
/// error answer. Answering an h2c request whose body is still arriving ends
/// in a stream reset, which some clients (curl 7.x) report instead of the
/// status; a small body read first avoids that, a huge one is not waited for.
async fn drain(body: Body) {
    let mut data = body.into_data_stream();
    let mut left = 1usize << 20;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while let Some(Ok(chunk)) = data.next().await {
            left = left.saturating_sub(chunk.len());
            if left == 0 {
                break;
            }
        }
    })
    .await;
}

/// Copies the call's body into the response as it arrives.
async fn pump(api: &Api, id: u64, sink: &mut Sink, body: Body) -> Result<(), ApiError> {
    let mut data = body.into_data_stream();
    let cancel = match sink {
        Sink::Job { claim, .. } => claim.cancel.clone(),
        Sink::Seed { .. } => tokio_util::sync::CancellationToken::new(),
    };
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => {
                return Err(ApiError::Conflict(format!("the claim on stream {id} was released")));
            }
            next = data.next() => next,
        };
        let bytes = match next {
            None => return Ok(()),
            Some(Ok(bytes)) => bytes,
            Some(Err(e)) => {
                return Err(ApiError::BadRequest(format!(
                    "the response body failed: {e}"
                )));
            }
        };
        match sink {
            Sink::Job { writer, claim } => {
                claim.renew(api.claims.lease());
                writer.send(bytes).await?;
            }
            Sink::Seed { worker } => {
                api.service
                    .append_response_body(id, worker.as_str(), bytes)
                    .await?;
            }
        }
    }
}

/// The response head from `x-ur-status` and the call's other headers.
fn response_head(given: &HeaderMap) -> Result<ResponseHead, ApiError> {
    let status = given
        .get("x-ur-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u16>().ok())
        .filter(|s| (200..=599).contains(s))
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| ApiError::BadRequest("x-ur-status: NNN (200-599) is required".into()))?;
    Ok(upload_response::response_head(
        status,
        &response_headers(given),
    )?)
}

/// `POST /v1/streams/{id}/claim?worker=ID`: claims the response (the seed's
/// `try_claim_response`), or renews the lease of the caller's own claim.
pub(super) async fn claim_stream(
    State(api): State<Api>,
    Path(id): Path<u64>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let worker = worker_param(&query(&uri))?;
    if let Some(claim) = api.claims.get(id) {
        if claim.worker != worker {
            return Err(not_owner(id, &worker));
        }
        claim.renew(api.claims.lease());
    } else if !api.service.try_claim_response(id, worker.as_str())? {
        return Err(ApiError::Conflict(format!(
            "the response of stream {id} is claimed by another worker"
        )));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /v1/streams/{id}/claim?worker=ID`: gives the claim up. Before
/// response headers the request is offered to another worker; after them
/// the client's response is reset.
pub(super) async fn release_stream(
    State(api): State<Api>,
    Path(id): Path<u64>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let worker = worker_param(&query(&uri))?;
    match api.claims.get(id) {
        Some(claim) if claim.worker == worker => {
            if !api.claims.abandon(id, &claim) {
                // The response call holds the writer: make it drop it.
                claim.cancel.cancel();
                api.claims.finish(id, &claim);
            }
        }
        Some(_) => return Err(not_owner(id, &worker)),
        None => api.service.release_response(id, worker.as_str())?,
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn not_owner(id: u64, worker: &str) -> ApiError {
    ApiError::Conflict(format!(
        "worker {worker} does not own the response of stream {id}"
    ))
}

/// `POST /v1/streams/{id}/readers/{worker}`: registers a reader.
pub(super) async fn add_reader(
    State(api): State<Api>,
    Path((id, worker)): Path<(u64, String)>,
) -> Result<Response, ApiError> {
    api.service.register_reader(id, worker)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /v1/streams/{id}/readers/{worker}`: removes a registration
/// (`409` if there was none).
pub(super) async fn remove_reader(
    State(api): State<Api>,
    Path((id, worker)): Path<(u64, String)>,
) -> Result<Response, ApiError> {
    if api.service.unregister_reader(id, worker.as_str())? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::Conflict(format!(
            "worker {worker} is not a reader of stream {id}"
        )))
    }
}

/// `GET /v1/streams/{id}/slots/{n}?wait_ms=N`: one raw request slot
/// (slot 1: the HPKS head frame), waiting up to `wait_ms` for it to be
/// published; `204` if it was not.
pub(super) async fn slot(
    State(api): State<Api>,
    Path((id, n)): Path<(u64, u64)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let wait = wait_param(&query(&uri))?;
    if n == 0 {
        return Err(ApiError::BadRequest("slots are numbered from 1".into()));
    }
    // The cache alone cannot tell a ring that was never opened from one that
    // is idle: only the requests in flight count.
    api.service.reader_count(id)?;
    let read = api.service.request_cache().wait(StreamId::from_u64(id), n);
    let Ok(read) = tokio::time::timeout(wait, read).await else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let slot = read.map_err(TailError::from)?;
    let kind = match slot.kind {
        SlotKind::Headers => "headers",
        SlotKind::Body => "body",
        SlotKind::End => "end",
    };
    let mut response = octets(Body::from(slot.bytes));
    response
        .headers_mut()
        .insert("x-ur-slot", HeaderValue::from_static(kind));
    Ok(response)
}
