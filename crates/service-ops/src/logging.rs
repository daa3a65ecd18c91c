//! Logs go to stderr through `tracing` (stdout is left to the `READY` line
//! scripts parse); `RUST_LOG` filters them, default `info`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// How log lines are written.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Deserialize,
    serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable `key=value` lines.
    #[default]
    Text,
    /// One JSON object per line (fields under `fields`), for log shippers.
    Json,
}

/// Installs the global subscriber: `format` on stderr, filtered by `RUST_LOG`
/// (default `info`); `access_log = false` drops the `access` target whatever
/// `RUST_LOG` says.
pub fn init_logging(format: LogFormat, access_log: bool) {
    let mut filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    if !access_log {
        // A directive parsed from a literal cannot fail.
        if let Ok(off) = "access=off".parse() {
            filter = filter.add_directive(off);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into files or journald.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
