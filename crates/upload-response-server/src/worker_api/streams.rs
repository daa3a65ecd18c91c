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
        if claim.inlined {
            return Err(ApiError::Conflict(format!(
                "the body of stream {id} came whole with its claim (body_b64)"
            )));
        }
        let body = claim.take_body().ok_or_else(|| {
            ApiError::Conflict(format!("the body of stream {id} is already being read"))
        })?;
        let lease = api.claims.lease();
        claim.renew(lease);
        let metrics = api.metrics.clone();
        // Lives as long as the worker's connection keeps this body open.
        let active = claim.activity(lease);
        let chunks = body.into_stream().map(move |chunk| {
            let _alive = &active;
            claim.renew(lease);
            if let Ok(bytes) = &chunk {
                metrics.body_bytes.inc_by(bytes.len() as u64);
            }
            chunk
        });
        return Ok(octets(Body::from_stream(chunks)));
    }
    api.service.reader_count(id)?; // 404 for a stream not in flight
    let (service, metrics) = (api.service.clone(), api.metrics.clone());
    let chunks = futures_util::stream::unfold(Some(2u64), move |next| {
        let (service, worker, metrics) = (service.clone(), worker.clone(), metrics.clone());
        async move {
            let n = next?;
            match service.tail_request_for(id, worker.as_str(), n).await {
                Ok(TailSlot::Body(bytes)) => {
                    metrics.body_bytes.inc_by(bytes.len() as u64);
                    Some((Ok(bytes), Some(n + 1)))
                }
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
        open_response(&api, id, &worker, head).await
    }
    .await;
    let (mut writer, claim) = match started {
        Ok(started) => started,
        Err(e) => {
            drain(body).await;
            return Err(e);
        }
    };
    // However this call ends (even dropped midway because the worker's
    // connection broke) the claim is over; an unfinished writer dropped with
    // it resets the client's response.
    let _finish = Finish {
        api: api.clone(),
        id,
        claim: claim.clone(),
    };
    pump(&api, &claim, &mut writer, body).await?;
    writer.finish().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Writes the head through the caller's claim.
pub(super) async fn open_response(
    api: &Api,
    id: u64,
    worker: &str,
    head: ResponseHead,
) -> Result<(ResponseWriter, Arc<Claim>), ApiError> {
    let Some(claim) = api.claims.get(id).filter(|c| c.worker == worker) else {
        api.service.reader_count(id)?; // 404 for a stream not in flight
        return Err(not_owner(id, worker));
    };
    let job = claim.take_job().ok_or_else(|| {
        ApiError::Conflict(format!("the response of stream {id} was already started"))
    })?;
    claim.renew(api.claims.lease());
    // A failed head write (the response stream was aborted: timeout, client
    // gone) drops the job, and the claim is over.
    match job.respond_head(head).await {
        Ok(writer) => Ok((writer, claim)),
        Err(e) => {
            api.claims.finish(id, &claim);
            Err(e.into())
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

/// Takes a response call's claim out of the table when the call ends.
pub(super) struct Finish {
    pub(super) api: Api,
    pub(super) id: u64,
    pub(super) claim: Arc<Claim>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.api.claims.finish(self.id, &self.claim);
    }
}

/// Copies the call's body into the response as it arrives; each chunk
/// renews the lease. `DELETE .../claim` cancels it.
async fn pump(
    api: &Api,
    claim: &Claim,
    writer: &mut ResponseWriter,
    body: Body,
) -> Result<(), ApiError> {
    let mut data = body.into_data_stream();
    loop {
        let next = tokio::select! {
            _ = claim.cancel.cancelled() => {
                return Err(ApiError::Conflict("the claim was released".into()));
            }
            next = data.next() => next,
        };
        match next {
            None => return Ok(()),
            Some(Ok(bytes)) => {
                claim.renew(api.claims.lease());
                api.metrics.response_bytes.inc_by(bytes.len() as u64);
                writer.send(bytes).await?;
            }
            Some(Err(e)) => {
                return Err(ApiError::BadRequest(format!(
                    "the response body failed: {e}"
                )));
            }
        }
    }
}

/// The response head from `x-ur-status` and the call's other headers.
pub(super) fn response_head(given: &HeaderMap) -> Result<ResponseHead, ApiError> {
    let status = given
        .get("x-ur-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u16>().ok())
        .filter(|s| (200..=599).contains(s))
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| ApiError::BadRequest("x-ur-status: NNN (200-599) is required".into()))?;
    let mut headers = response_headers(given);
    // The call's own `content-length` frames the call's body; a response
    // to HEAD has none, yet must say how long the GET would be.
    if let Some(len) = given
        .get("x-ur-content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        headers.insert(header::CONTENT_LENGTH, len.into());
    }
    Ok(upload_response::response_head(status, &headers)?)
}

/// `POST /v1/streams/{id}/claim?worker=ID`: claims that stream's response
/// (the seed's `try_claim_response`, as a claim like `/v1/claim` gives:
/// owner, registered reader, with a lease), or renews the lease of the
/// caller's own claim.
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
    } else {
        let job = api.service.claim_job(id, worker.as_str())?.ok_or_else(|| {
            ApiError::Conflict(format!(
                "the response of stream {id} is claimed by another worker (or over)"
            ))
        })?;
        api.claims.insert(&worker, job);
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
