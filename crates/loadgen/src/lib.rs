//! Load generator and bare reference servers for end-to-end HTTP benchmarks.
//!
//! This crate is the yardstick the project's own servers are measured with, so
//! it depends on no project crate: only hyper, h2, h3 + quinn, tokio-tungstenite
//! and rustls (ring provider).
//!
//! * [`clients`]: one client per protocol (HTTP/1.1 with `Content-Length` or
//!   chunked, HTTP/2, HTTP/3, WebSocket; TLS or cleartext as the URL says) that
//!   uploads a generated body, sends small requests or GETs a URL, and times
//!   them;
//! * [`sink`]: bare servers implementing the sink contract (`/discard`, `/echo`,
//!   `/ws`) that the project's `bench_sink` example implements too, so one
//!   client measures both;
//! * [`tcp_baseline`]: raw loopback TCP and TLS throughput, the ceiling a report
//!   divides by;
//! * [`rate`]: small-request rate with p50/p99 latency at C connections
//!   (POSTs to a sink, or GETs of an origin or a proxy), or connections per
//!   second with one request each;
//! * [`hold`]: thousands of idle keep-alive connections held open, for the
//!   memory an idle connection costs a server;
//! * [`origin`]: a bare cleartext origin serving deterministic objects of any
//!   size, with ranges, the baseline a caching proxy is compared against.
//!
//! The `loadgen` binary wraps these for `cargo xtask bench web`.
//!
//! # Example
//!
//! Start a bare sink and upload 1 MiB to it over HTTP/2:
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), loadgen::Error> {
//! use loadgen::clients::{Client, UploadOptions};
//! use loadgen::sink::{Sink, SinkOptions};
//! use loadgen::Proto;
//!
//! let dir = std::env::temp_dir().join(format!("loadgen-doc-{}", std::process::id()));
//! let sink = Sink::start(&SinkOptions::loopback(&dir)).await?;
//! let url = format!("https://127.0.0.1:{}/discard", sink.https_addr().port());
//! let client = Client::new(Proto::H2, &url, Some(&sink.cert().cert))?;
//! let options = UploadOptions { bytes: 1 << 20, ..UploadOptions::default() };
//! let result = client.upload(&options).await?;
//! result.expect_counted()?; // the sink answered "1048576\n"
//! println!("{:.0} MiB/s", result.mib_per_sec());
//! # drop(sink);
//! # let _ = std::fs::remove_dir_all(&dir);
//! # Ok(())
//! # }
//! ```

pub mod clients;
mod error;
pub mod hold;
pub mod net;
pub mod origin;
pub mod rate;
pub mod report;
mod serve;
pub mod sink;
pub mod size;
pub mod source;
pub mod target;
pub mod tcp_baseline;
pub mod tls;

pub use error::{Error, Result};
pub use target::{Proto, Target};
