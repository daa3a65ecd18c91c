//! The examples' command line: origins as arguments, the rest from the
//! environment, Ctrl-C or SIGTERM for a clean shutdown.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{ClientError, Origins, RemoteJob, WorkerClient, WorkerConfig};

/// Runs `handler` as a worker configured from the command line and the
/// environment, until Ctrl-C or SIGTERM (then finishes the jobs in flight):
///
/// * arguments: `http://host:port` origins, or one `dns://name:port`
///   (resolved again every 5 s);
/// * `UR_WORKER_TOKEN` (required), `UR_WORKER_ID` [default `NAME-PID`],
///   `UR_PREFIX` [default `default_prefix`], `UR_CONCURRENCY` [default 8],
///   `UR_BATCH` [default 32], `UR_INLINE_MAX` [default 16384], `UR_H2C=1` for h2c.
pub async fn run_from_env<H, F>(
    name: &str,
    default_prefix: &str,
    handler: H,
) -> Result<(), Box<dyn std::error::Error>>
where
    H: Fn(RemoteJob) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), ClientError>> + Send + 'static,
{
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    let origins = Origins::parse_args(std::env::args().skip(1), Duration::from_secs(5))?;
    let token = env("UR_WORKER_TOKEN").ok_or("UR_WORKER_TOKEN is required")?;
    let id = env("UR_WORKER_ID").unwrap_or_else(|| format!("{name}-{}", std::process::id()));
    let prefix = env("UR_PREFIX").unwrap_or_else(|| default_prefix.to_owned());
    let mut config = WorkerConfig::new(origins, token, id, prefix);
    if let Some(n) = env("UR_CONCURRENCY") {
        config.concurrency = n.parse().map_err(|_| "UR_CONCURRENCY: not a number")?;
    }
    if let Some(n) = env("UR_BATCH") {
        config.batch = n.parse().map_err(|_| "UR_BATCH: not a number")?;
    }
    if let Some(n) = env("UR_INLINE_MAX") {
        config.inline_max = n.parse().map_err(|_| "UR_INLINE_MAX: not a number")?;
    }
    config.http2 = env("UR_H2C").is_some_and(|v| v == "1");
    let client = WorkerClient::new(config)?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        stop.cancel();
    });
    eprintln!("{name}: serving {:?}", client.config().origins);
    client.run(shutdown, handler).await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
