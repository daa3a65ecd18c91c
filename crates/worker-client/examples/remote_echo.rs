//! A remote echo worker: streams each request body back as it arrives,
//! with the request's content type. It uses only the worker API over HTTP.
//!
//! ```text
//! UR_WORKER_TOKEN=... cargo run -p worker-client --example remote_echo -- http://127.0.0.1:9090
//! ```
//!
//! Several origins, or one `dns://name:port`; `UR_PREFIX` [default
//! `/remote-echo`], `UR_H2C=1` for h2c. Ctrl-C stops claiming and finishes
//! the jobs in flight.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    worker_client::run_from_env("remote-echo", "/remote-echo", worker_client::workers::echo).await
}
