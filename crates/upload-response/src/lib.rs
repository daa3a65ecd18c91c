//! The upload-response service: requests stream into a slot cache while they
//! arrive, workers claim and tail them, and responses stream back to the
//! client as the worker writes them (ARCHITECTURE.md §3, §6).
//!
//! * [`UploadResponseService::handle`] is the ingress: give it any
//!   `http::Request` (any protocol's body type) and return its response.
//! * Workers take requests by route, pushed to them as they arrive:
//!   [`Worker::next_job`] gives a [`Job`] with the head, the body as a stream
//!   ([`RequestBody`]) and a [`ResponseWriter`]. A signed S3 upload's chunk
//!   signatures come with it too ([`Job::chunk_signatures`], docs/s3.md).
//! * The seed's coordination API works by stream id and worker id:
//!   `register_reader`, `reader_count`, `has_readers`, `try_claim_response`,
//!   `release_response`, `request_last`, `tail_request`,
//!   `write_response_headers`, `append_response_body`, `end_response`.
//!
//! ```
//! use bytes::Bytes;
//! use http::{HeaderMap, Request, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use upload_response::{Route, UploadResponseConfig, UploadResponseService};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let service = UploadResponseService::new(UploadResponseConfig::default()).unwrap();
//!
//! // An in-process worker that upper-cases what it reads, as it reads it.
//! let worker = service.worker("upper", Route::prefix("/upper"));
//! tokio::spawn(async move {
//!     let mut job = worker.next_job().await;
//!     let mut body = job.body();
//!     let mut out = job.respond(StatusCode::OK, &HeaderMap::new()).await.unwrap();
//!     while let Some(chunk) = body.chunk().await {
//!         out.send(Bytes::from(chunk.unwrap().to_ascii_uppercase())).await.unwrap();
//!     }
//!     out.finish().await.unwrap();
//! });
//!
//! let request = Request::post("/upper").body(Full::new(Bytes::from("hello"))).unwrap();
//! let response = service.handle(request).await;
//! assert_eq!(response.status(), StatusCode::OK);
//! let bytes = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(&bytes[..], b"HELLO");
//! # });
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod checksum;
mod chunk_signatures;
mod clients;
mod config;
mod dispatch;
mod entry;
mod error;
mod idle;
mod ingress;
mod job;
mod metrics;
mod route;
mod s3_body;
mod service;
mod websocket;

pub use chunk_signatures::{
    ChunkSignature, ChunkSignatures, MIN_SIGNED_CHUNK, SignatureBatch, SignatureError,
};
pub use clients::Admission;
pub use config::UploadResponseConfig;
pub use error::{CoordError, IngressError, ServiceError, TailError};
pub use ingress::{BoxError, ResponseBody};
pub use job::{Job, RequestBody, ResponseWriter, Worker, response_head};
pub use metrics::Transport;
pub use route::{Route, WorkerId};
pub use service::{StreamInfo, TailSlot, UploadResponseService};

/// The request head and header types workers see, re-exported.
pub use http_pack::{Header, HttpVersion, RequestHead, ResponseHead};
