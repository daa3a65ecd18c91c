//! The upload-response ingress as a program (ARCHITECTURE.md §7).
//!
//! `cargo run --release -p upload-response-server` with no arguments serves
//! on loopback: cleartext HTTP/1.1 + h2c + `ws://` on 127.0.0.1:8080, TLS
//! (h2, http/1.1, `wss://`) plus HTTP/3 on 127.0.0.1:8443 with a self-signed
//! certificate generated into `./.upload-response/cert.pem`, the worker API
//! listener (the remote worker API of `docs/worker-api.md`, and `/metrics`)
//! on 127.0.0.1:9090, and the built-in `echo`,
//! `sha256` and `discard` workers.
//!
//! The library half lets tests start the same server in-process:
//!
//! ```no_run
//! use clap::Parser;
//! use upload_response_server::{Cli, Settings, start};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let settings = Settings::resolve(Cli::parse_from(["upload-response-server", "--http", "127.0.0.1:0"]))?;
//! let running = start(settings).await?;
//! println!("serving on {:?}", running.http);
//! running.shutdown();
//! running.wait().await
//! # }
//! ```

mod app;
mod builtin;
mod settings;
mod worker_api;

pub use app::{Running, start};
pub use settings::{Builtin, Cli, Settings};
