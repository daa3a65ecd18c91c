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

/// Keeps the thread that writes log lines; hold it until `main` returns, so
/// that the lines still queued are written before the process exits.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard(#[allow(dead_code)] tracing_appender::non_blocking::WorkerGuard);

/// Installs the global subscriber: `format` on stderr, filtered by `RUST_LOG`
/// (default `info`); `access_log = false` drops the `access` target whatever
/// `RUST_LOG` says.
///
/// Lines are formatted where they are logged and written by one thread of
/// their own through a 64 KiB buffer, flushed whenever its queue is empty:
/// with the access log on, a write to stderr per request on the serving
/// threads cost small requests about 15 % of their rate (1 KiB `/echo`
/// round trips, 1.17x the wall time). The queue is not lossy: past 128k
/// lines waiting, logging waits for the writer rather than dropping lines.
pub fn init_logging(format: LogFormat, access_log: bool) -> LogGuard {
    let mut filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    if !access_log {
        // A directive parsed from a literal cannot fail.
        if let Ok(off) = "access=off".parse() {
            filter = filter.add_directive(off);
        }
    }
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        // Colour codes only for a person at a terminal, never into files or journald.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    LogGuard(guard)
}
