//! `upload-response-server`: see the library docs and `--help`.

use std::process::ExitCode;

use clap::Parser;
use upload_response_server::{Cli, Settings, start};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upload-response-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let check_only = cli.check_config;
    let settings = Settings::resolve(cli)?;
    if check_only {
        settings.check()?;
        eprintln!("upload-response-server: configuration ok");
        return Ok(());
    }
    let _log = service_ops::init_logging(settings.log_format, settings.access_log);
    let running = start(settings).await?;
    // Start-up facts go to the log (stderr); stdout carries only the READY line.
    if let Some(addr) = running.http {
        tracing::info!("http:       http://{addr}/  (HTTP/1.1, h2c, ws://)");
    }
    if let Some(addr) = running.https {
        tracing::info!("https:      https://{addr}/  (h2, http/1.1, wss://; HTTP/3 on udp {addr})");
    }
    if let Some(cert) = &running.cert_path {
        tracing::info!(
            "tls cert:   {}  (curl --cacert {} https://localhost:{}/...)",
            cert.display(),
            cert.display(),
            running.https.map_or(0, |a| a.port())
        );
    }
    if let Some(addr) = running.worker_api {
        tracing::info!(
            "worker api: http://{addr}/  (metrics: http://{addr}/metrics, probes: /healthz, /readyz)"
        );
    }
    // The token's value is a secret: only where it lives is logged.
    match &running.worker_token_path {
        Some(path) => tracing::info!("worker token: stored in {}", path.display()),
        None => tracing::info!("worker token: given by --worker-token / UR_WORKER_TOKEN"),
    }
    web_service::reload_tls_on_sighup(running.tls_reload.clone());
    // Installed before READY, so a SIGTERM right after it still drains.
    let signal = web_service::ctrl_c_or_sigterm();
    let stop = running.stop_handle();
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutting down: draining in-flight requests");
        stop.cancel();
    });
    // One machine-readable line, in the form the benchmark sinks use.
    let addr =
        |a: Option<std::net::SocketAddr>| a.map_or_else(|| "none".to_owned(), |a| a.to_string());
    println!(
        "READY http={} https={} worker_api={}",
        addr(running.http),
        addr(running.https),
        addr(running.worker_api)
    );
    running.wait().await
}
