//! `GET /v1/streams/{id}/signatures`: a signed S3 upload's chunk signatures
//! for remote workers (what `Job::chunk_signatures` gives in process;
//! docs/s3.md §5, docs/worker-api.md).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{Uri, header};
use serde::Serialize;
use upload_response::{ChunkSignature, SignatureBatch};

use super::{Api, ApiError, query, wait_param};

/// Records per answer when `max` is not given, and the most `max` may ask.
const DEFAULT_MAX: usize = 1000;
const LIMIT_MAX: usize = 10_000;

/// How long a call waits for a record when `wait_ms` is not given: long
/// enough that a reader keeping pace with the body does not spin, short
/// enough that a vanished caller holds nothing for long.
const DEFAULT_WAIT: Duration = Duration::from_secs(1);

#[derive(Serialize)]
struct Answer {
    records: Vec<ChunkSignature>,
    trailer_signature: Option<String>,
    complete: bool,
}

impl From<SignatureBatch> for Answer {
    fn from(batch: SignatureBatch) -> Self {
        Self {
            records: batch.records,
            trailer_signature: batch.trailer_signature,
            complete: batch.complete,
        }
    }
}

/// `GET /v1/streams/{id}/signatures?from=N&max=M&wait_ms=W`: records `from`
/// on (default 0), at most `max` (default 1000, at most 10000). With none
/// yet and the body still arriving, waits up to `wait_ms` (default 1000)
/// for one. A request that is not a signed streaming upload has none:
/// `complete` at once.
pub(super) async fn signatures(
    State(api): State<Api>,
    Path(id): Path<u64>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let params = query(&uri);
    let from = match params.get("from") {
        None => 0,
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| ApiError::BadRequest("from must be a record index".into()))?,
    };
    let max = match params.get("max") {
        None => DEFAULT_MAX,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|m| (1..=LIMIT_MAX).contains(m))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("max must be an integer from 1 to {LIMIT_MAX}"))
            })?,
    };
    let wait = if params.contains_key("wait_ms") {
        wait_param(&params)?
    } else {
        DEFAULT_WAIT
    };
    let answer = match api.service.chunk_signatures(id)? {
        None => Answer {
            records: Vec::new(),
            trailer_signature: None,
            complete: true,
        },
        Some(reader) => {
            // A shutdown answers what there is at once, so long-polls do not
            // hold the drain up.
            let batch = tokio::select! {
                _ = api.stop.cancelled() => reader.batch(from, max),
                batch = reader.wait_batch(from, max, wait) => batch,
            };
            batch?.into()
        }
    };
    let json = serde_json::to_vec(&answer)
        .map_err(|e| ApiError::Internal(format!("cannot encode the signatures: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}
