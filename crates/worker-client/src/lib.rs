//! The remote worker client of upload-response (ARCHITECTURE.md §8): it
//! drives the worker API over HTTP only (HTTP/1.1, or h2c with prior
//! knowledge), against one ingress or a fleet of them.
//!
//! * [`WorkerClient::claim`] long-polls one origin for the next request on
//!   the worker's prefix and returns a [`RemoteJob`];
//!   [`WorkerClient::claim_batch`] takes several at once.
//! * [`RemoteJob::body`] streams the request body as the client uploads it
//!   (or hands over the small body that came with the claim);
//!   [`RemoteJob::respond`] streams a response back while it is produced,
//!   [`RemoteJob::respond_bytes`] sends a whole one in one call.
//! * [`WorkerClient::run`] serves every origin (a list of URLs, or a DNS
//!   name whose every address is an ingress, re-resolved periodically) with a
//!   concurrency limit, reconnects with backoff, and on shutdown stops
//!   claiming and finishes the jobs in flight.
//!
//! ```no_run
//! use bytes::Bytes;
//! use futures_util::StreamExt;
//! use http::{HeaderMap, StatusCode};
//! use worker_client::{Origins, WorkerClient, WorkerConfig};
//!
//! # async fn run() -> Result<(), worker_client::ClientError> {
//! let config = WorkerConfig::new(
//!     Origins::parse_list(["http://127.0.0.1:9090"])?,
//!     "token",
//!     "upper-1",
//!     "/upper",
//! );
//! let client = WorkerClient::new(config)?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! client
//!     .run(shutdown, |job| async move {
//!         let body = job.body().await?;
//!         let upper = body.map(|chunk| chunk.map(|b| Bytes::from(b.to_ascii_uppercase())));
//!         job.respond(StatusCode::OK, &HeaderMap::new(), upper).await
//!     })
//!     .await;
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod cli;
mod client;
mod job;
mod origins;
mod responder;
pub mod workers;

use std::time::Duration;

pub use cli::run_from_env;
pub use client::WorkerClient;
pub use job::{BodyStream, Claimed, RemoteJob};
pub use origins::Origins;

/// A boxed error, as response body streams may yield.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a worker finds work.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The ingress nodes' worker API origins.
    pub origins: Origins,
    /// The bearer token.
    pub token: String,
    /// The worker's name (claims, reader lists and metrics show it).
    pub worker_id: String,
    /// Requests whose path starts with this prefix.
    pub prefix: String,
    /// Most jobs (and claims waiting for one) at a time, over all origins.
    pub concurrency: usize,
    /// How long one claim long-poll waits on the server.
    pub wait: Duration,
    /// Most requests one claim call takes (`max=`): the first that comes
    /// plus those already queued, within the free [`concurrency`](Self::concurrency).
    pub batch: usize,
    /// Bodies of at most this many bytes that have already arrived come
    /// with the claim (`inline_max=`), saving the body call; 0 never.
    pub inline_max: usize,
    /// Talk h2c (HTTP/2 with prior knowledge) instead of HTTP/1.1.
    pub http2: bool,
    /// First retry delay after a failed call; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

impl WorkerConfig {
    /// A configuration with defaults: concurrency 8, 20 s long-polls,
    /// batches of up to 32 claims, bodies up to 16 KiB inline, HTTP/1.1,
    /// backoff from 100 ms to 5 s.
    pub fn new(
        origins: Origins,
        token: impl Into<String>,
        worker_id: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Self {
        Self {
            origins,
            token: token.into(),
            worker_id: worker_id.into(),
            prefix: prefix.into(),
            concurrency: 8,
            wait: Duration::from_secs(20),
            batch: 32,
            inline_max: 16 * 1024,
            http2: false,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// A worker API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// An origin is not an `http://host:port` URL.
    #[error("invalid origin {origin:?}: {reason}")]
    Origin {
        /// What was given.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The call could not be made (connection refused or lost).
    #[error("{call}: {source}")]
    Http {
        /// The call.
        call: String,
        /// The transport error.
        source: hyper_util::client::legacy::Error,
    },
    /// The server refused the call; `message` is its explanation.
    #[error("{call}: HTTP {status}: {message}")]
    Status {
        /// The call.
        call: String,
        /// The status code (see `docs/worker-api.md`).
        status: http::StatusCode,
        /// The server's one-line explanation.
        message: String,
    },
    /// A streamed body failed midway (for a request body: the client aborted
    /// its upload, or the connection to the ingress broke).
    #[error("body stream failed: {0}")]
    Body(#[source] hyper::Error),
    /// The claim was not the JSON the contract promises.
    #[error("invalid claim answer: {0}")]
    Json(#[from] serde_json::Error),
    /// The worker client is shutting down (its response queue is gone).
    #[error("{0}: the worker client stopped")]
    Stopped(String),
    /// A batched response call failed as a whole; every response in it
    /// failed with it.
    #[error("POST /v1/responses failed: {0}")]
    Batch(String),
    /// The ingress has no `/v1/responses` (internal: answered one by one).
    #[error("the ingress does not take batched responses")]
    Unsupported,
    /// A body that came with a claim was not valid base64.
    #[error("invalid body_b64 in a claim answer: {0}")]
    InlineBody(#[source] base64::DecodeError),
    /// The token has characters a header cannot carry.
    #[error("the worker token is not a valid header value")]
    InvalidToken,
    /// The ingress DNS name could not be resolved.
    #[error("cannot resolve {name}: {source}")]
    Resolve {
        /// The name.
        name: String,
        /// Why.
        source: std::io::Error,
    },
}
