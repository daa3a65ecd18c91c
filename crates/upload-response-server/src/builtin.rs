//! The built-in workers. They use only the public worker API
//! (`Worker::next_job`, `Job::body`, `Job::respond`), like any other worker.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use upload_response::{Job, Route, UploadResponseService};

use crate::settings::Builtin;

/// Starts one long-lived task per built-in worker; each job runs in its own task.
pub fn spawn(service: &UploadResponseService, builtins: &[Builtin]) {
    for &builtin in builtins {
        let (name, prefix) = match builtin {
            Builtin::Echo => ("builtin-echo", "/echo"),
            Builtin::Sha256 => ("builtin-sha256", "/sha256"),
            Builtin::Discard => ("builtin-discard", "/discard"),
        };
        let worker = service.worker(name, Route::prefix(prefix).method(Method::POST));
        tokio::spawn(async move {
            loop {
                let job = worker.next_job().await;
                tokio::spawn(async move {
                    let id = job.stream_id();
                    if let Err(e) = serve(builtin, job).await {
                        debug!(stream = id, error = %e, "built-in worker gave up on a request");
                    }
                });
            }
        });
    }
}

async fn serve(builtin: Builtin, job: Job) -> anyhow::Result<()> {
    match builtin {
        Builtin::Echo => echo(job).await,
        Builtin::Sha256 => digest(job, true).await,
        Builtin::Discard => digest(job, false).await,
    }
}

/// Streams the body back as it arrives, with the request's content type.
async fn echo(mut job: Job) -> anyhow::Result<()> {
    let mut headers = HeaderMap::new();
    if let Some(ct) = job.header("content-type")
        && let Ok(value) = HeaderValue::from_bytes(ct)
    {
        headers.insert(header::CONTENT_TYPE, value);
    }
    let mut body = job.body();
    let mut out = job.respond(StatusCode::OK, &headers).await?;
    while let Some(chunk) = body.chunk().await {
        out.send(chunk?).await?;
    }
    out.finish().await?;
    Ok(())
}

/// Reads the whole body (never holding it), then answers with its size and,
/// for `/sha256`, its digest. A body that fails (client gone) gets no
/// answer: dropping the job releases it.
async fn digest(mut job: Job, hash: bool) -> anyhow::Result<()> {
    let mut body = job.body();
    let mut hasher = Sha256::new();
    let mut count = 0u64;
    while let Some(chunk) = body.chunk().await {
        let chunk = chunk?;
        count += chunk.len() as u64;
        if hash {
            hasher.update(&chunk);
        }
    }
    let text = if hash {
        format!("{} {count}\n", hex::encode(hasher.finalize()))
    } else {
        format!("{count}\n")
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    let mut out = job.respond(StatusCode::OK, &headers).await?;
    out.send(Bytes::from(text)).await?;
    if let Err(e) = out.finish().await {
        warn!(error = %e, "response could not be finished");
    }
    Ok(())
}
