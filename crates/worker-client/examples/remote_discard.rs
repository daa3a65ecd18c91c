//! A remote discard worker: reads and drops each body as it arrives and
//! answers `200 text/plain` `<byte count>\n` (the benchmarks' upload sink).
//!
//! ```text
//! UR_WORKER_TOKEN=... cargo run -p worker-client --example remote_discard -- http://127.0.0.1:9090
//! ```
//!
//! Several origins, or one `dns://name:port`; `UR_PREFIX` [default
//! `/remote-discard`], `UR_H2C=1` for h2c.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    worker_client::run_from_env(
        "remote-discard",
        "/remote-discard",
        worker_client::workers::discard,
    )
    .await
}
