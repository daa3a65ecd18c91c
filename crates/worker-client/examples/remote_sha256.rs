//! A remote sha256 worker: reads each body as it arrives (never holding
//! it) and answers `200 text/plain` `<hex sha256> <byte count>\n`, like the
//! built-in `/sha256` worker but from another process, over HTTP.
//!
//! ```text
//! UR_WORKER_TOKEN=... cargo run -p worker-client --example remote_sha256 -- http://127.0.0.1:9090
//! ```
//!
//! Several origins, or one `dns://name:port`; `UR_PREFIX` [default
//! `/remote-sha256`], `UR_H2C=1` for h2c. Ctrl-C stops claiming and
//! finishes the jobs in flight.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    worker_client::run_from_env(
        "remote-sha256",
        "/remote-sha256",
        worker_client::workers::sha256,
    )
    .await
}
