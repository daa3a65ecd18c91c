//! Ready-made job handlers, the remote twins of the server's built-in
//! workers; the examples and tests run them.

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};

use crate::{BodyStream, ClientError, RemoteJob};

/// Streams the body back as it arrives, with the request's content type.
pub async fn echo(job: RemoteJob) -> Result<(), ClientError> {
    let mut headers = HeaderMap::new();
    if let Some(ct) = job.header("content-type")
        && let Ok(value) = HeaderValue::from_str(ct)
    {
        headers.insert(header::CONTENT_TYPE, value);
    }
    // A body that came with the claim is answered in one call.
    if let Some(whole) = job.inline_body().cloned() {
        return job.respond_bytes(StatusCode::OK, &headers, whole).await;
    }
    let body = job.body().await?;
    job.respond(StatusCode::OK, &headers, body).await
}

/// Answers `200 text/plain` `<hex sha256 of body> <byte count>\n`.
pub async fn sha256(job: RemoteJob) -> Result<(), ClientError> {
    let mut hasher = Sha256::new();
    let count = drain(job.body().await?, |chunk| hasher.update(chunk)).await?;
    let text = format!("{} {count}\n", hex::encode(hasher.finalize()));
    text_response(job, text).await
}

/// Reads and drops the body; answers `200 text/plain` `<byte count>\n`.
pub async fn discard(job: RemoteJob) -> Result<(), ClientError> {
    let count = drain(job.body().await?, |_| {}).await?;
    text_response(job, format!("{count}\n")).await
}

/// Feeds every chunk to `each` (never holding the body); the byte count.
async fn drain(mut body: BodyStream, mut each: impl FnMut(&[u8])) -> Result<u64, ClientError> {
    let mut count = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        count += chunk.len() as u64;
        each(&chunk);
    }
    Ok(count)
}

async fn text_response(job: RemoteJob, text: String) -> Result<(), ClientError> {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    job.respond_bytes(StatusCode::OK, &headers, Bytes::from(text))
        .await
}
