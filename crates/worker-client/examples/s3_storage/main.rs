//! An S3 storage worker: enough of the S3 API for boto3 and the AWS CLI,
//! objects stored under a directory, every body streamed (memory does not
//! grow with object size). The ingress has already decoded `aws-chunked`
//! and verified the checksums (`docs/s3.md`); this worker sees plain bytes.
//!
//! ```text
//! UR_WORKER_TOKEN=... S3_ROOT=/var/lib/s3 \
//!   cargo run -p worker-client --example s3_storage -- http://127.0.0.1:9090
//! ```
//!
//! Path-style addressing (`/bucket/key`) under `UR_PREFIX` [default `/`,
//! stripped before the bucket]. Operations: `CreateBucket`, `HeadBucket`,
//! `PutObject`, `GetObject` (with one `Range`), `HeadObject`,
//! `DeleteObject`, `ListObjectsV2` (prefix, delimiter, max-keys,
//! continuation), `CreateMultipartUpload`, `UploadPart`,
//! `CompleteMultipartUpload`, `AbortMultipartUpload`. Anything else is
//! `501 NotImplemented`. No authentication: see `docs/s3.md` for how a
//! worker would verify SigV4.

mod api;
mod store;
mod xml;

use std::sync::Arc;

use store::Store;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::env::var("S3_ROOT").unwrap_or_else(|_| "./s3-data".into());
    let prefix = std::env::var("UR_PREFIX").unwrap_or_else(|_| "/".into());
    let store = Arc::new(Store::new(root.into())?);
    let strip = Arc::new(prefix.trim_end_matches('/').to_owned());
    worker_client::run_from_env("s3-storage", "/", move |job| {
        let (store, strip) = (store.clone(), strip.clone());
        async move { api::serve(&store, &strip, job).await }
    })
    .await
}
