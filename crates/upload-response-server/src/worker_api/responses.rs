//! `POST /v1/responses?worker=ID`: several whole responses in one call,
//! the answer side of batched claims (`docs/worker-api.md`, "Small
//! requests"). Each one is written as `POST /v1/streams/{id}/response`
//! would write it, and each gets its own outcome.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use super::streams::{Finish, open_response, response_head};
use super::{Api, ApiError, MAX_BATCH, query, worker_param};

/// Largest call body: [`MAX_BATCH`] responses of 64 KiB as base64 with
/// their heads fit; a bigger call is refused whole (413) before any of it
/// is parsed.
const MAX_CALL_BYTES: usize = 8 << 20;

/// One response of the call.
#[derive(Deserialize)]
struct Item {
    stream_id: u64,
    status: u16,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body_b64: String,
}

/// What became of one response: `204` written, else the status and
/// message `POST /v1/streams/{id}/response` would have answered.
#[derive(Serialize)]
struct Outcome {
    stream_id: u64,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `POST /v1/responses?worker=ID` with a JSON array of
/// `{"stream_id","status","headers":[[name,value]],"body_b64"}`: `200` with
/// one outcome per response, in order. The responses are written side by
/// side, so one whose client is slow does not hold the others up.
pub(super) async fn responses(
    State(api): State<Api>,
    uri: Uri,
    request: Request,
) -> Result<Response, ApiError> {
    let worker = worker_param(&query(&uri))?;
    let body = read_limited(request.into_body()).await?;
    let items: Vec<Item> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the call body is not a response array: {e}")))?;
    if items.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_BATCH} responses per call"
        )));
    }
    let outcomes = futures_util::future::join_all(items.into_iter().map(|item| {
        let (api, worker) = (&api, worker.as_str());
        async move {
            let stream_id = item.stream_id;
            match write(api, worker, item).await {
                Ok(()) => Outcome {
                    stream_id,
                    status: StatusCode::NO_CONTENT.as_u16(),
                    error: None,
                },
                Err(e) => Outcome {
                    stream_id,
                    status: e.status().as_u16(),
                    error: Some(e.to_string()),
                },
            }
        }
    }))
    .await;
    let json = serde_json::to_vec(&outcomes)
        .map_err(|e| ApiError::Internal(format!("cannot encode the outcomes: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// The call body, refused past [`MAX_CALL_BYTES`].
async fn read_limited(body: Body) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, MAX_CALL_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::TooLarge(format!(
            "a /v1/responses call carries at most {MAX_CALL_BYTES} bytes"
        ))),
        Err(e) => Err(ApiError::BadRequest(format!("the call body failed: {e}"))),
    }
}

/// Writes one response: head, body, end, through the caller's claim.
async fn write(api: &Api, worker: &str, item: Item) -> Result<(), ApiError> {
    let body = base64::engine::general_purpose::STANDARD
        .decode(item.body_b64.as_bytes())
        .map_err(|e| ApiError::BadRequest(format!("body_b64: {e}")))?;
    let mut given = HeaderMap::with_capacity(item.headers.len() + 1);
    for (name, value) in &item.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ApiError::BadRequest(format!("invalid header name {name:?}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| ApiError::BadRequest(format!("invalid value for header {name}")))?;
        given.append(name, value);
    }
    given.insert("x-ur-status", HeaderValue::from(item.status));
    let head = response_head(&given)?;
    let (mut writer, claim) = open_response(api, item.stream_id, worker, head).await?;
    // However this ends, the claim is over (as for a response call).
    let _finish = Finish {
        api: api.clone(),
        id: item.stream_id,
        claim,
    };
    if !body.is_empty() {
        api.metrics.response_bytes.inc_by(body.len() as u64);
        writer.send(Bytes::from(body)).await?;
    }
    writer.finish().await?;
    Ok(())
}
