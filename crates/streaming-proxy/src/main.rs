//! `streaming-proxy`: the caching reverse proxy binary (ARCHITECTURE.md §9).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;
use service_ops::LogFormat;
use service_ops::config::{Secs, Size};
use streaming_proxy::{Metrics, Mode, ProxyConfig, StreamingProxy};
use web_service::{Body, Listen, Server, ServerConfig, ShutdownSignal, TlsIdentity};

/// Caching pass-through reverse proxy.
///
/// Every option is a flag, an environment variable (`SP_` + its name in upper
/// snake case) and a key of the `--config` TOML file: flags beat the
/// environment, which beats the file, which beats the defaults shown here.
/// Sizes take units (`256MiB`), durations too (`30s`; bare numbers are seconds).
#[derive(Debug, Parser, Serialize)]
#[command(version, about)]
struct Cli {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "SP_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Validate the configuration (file, environment, flags, TLS files) and exit:
    /// 0 if it is usable, else 1 with the offending key.
    #[arg(long)]
    #[serde(skip)]
    check_config: bool,
    /// Origin base URL, e.g. http://127.0.0.1:9000 or https://origin.example (required).
    #[arg(long, env = "SP_UPSTREAM")]
    upstream: Option<String>,
    /// Speak only HTTP/2 to the origin: h2c with prior knowledge on http://, ALPN
    /// offering only h2 on https:// (without it: HTTP/1.1, or the origin's ALPN pick).
    #[arg(long, env = "SP_UPSTREAM_HTTP2")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    upstream_http2: bool,
    /// PEM file of extra CA certificates trusted for an https:// origin.
    #[arg(long, value_name = "FILE", env = "SP_UPSTREAM_CA")]
    upstream_ca: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "SP_LISTEN")]
    listen: Option<SocketAddr>,
    /// Also listen with TLS here: HTTP/1.1 and HTTP/2 over TCP, HTTP/3 over UDP
    /// on the same port. Needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR", env = "SP_LISTEN_TLS")]
    listen_tls: Option<SocketAddr>,
    /// PEM certificate chain for --listen-tls.
    #[arg(long, value_name = "FILE", env = "SP_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --listen-tls.
    #[arg(long, value_name = "FILE", env = "SP_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Disk cache directory [default: ./proxy-cache].
    #[arg(long, env = "SP_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// normal, record or replay [default: normal].
    #[arg(long, value_enum, env = "SP_MODE")]
    mode: Option<Mode>,
    /// Slice size (bytes, or 1MiB) [default: 1MiB].
    #[arg(long, env = "SP_SLICE_SIZE")]
    slice_size: Option<Size>,
    /// Memory cache budget (bytes, or 256MiB) [default: 256MiB].
    #[arg(long, env = "SP_L1_BYTES")]
    l1_bytes: Option<Size>,
    /// Disk cache budget (bytes, or 10GiB; 0 disables the disk cache) [default: 10GiB].
    #[arg(long, env = "SP_L2_BYTES")]
    l2_bytes: Option<Size>,
    /// Upper bound of the heuristic lifetime of answers with `Last-Modified` and
    /// no explicit freshness, RFC 9111 §4.2.2 (seconds, or 1h) [default: 1h].
    #[arg(long, env = "SP_DEFAULT_TTL_SECS")]
    default_ttl_secs: Option<Secs>,
    /// Send the client's Host to the origin instead of the upstream's.
    #[arg(long, env = "SP_PRESERVE_HOST")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    preserve_host: bool,
    /// Store answers carrying Set-Cookie (without that header; the client whose
    /// request fetched it still gets it).
    #[arg(long, env = "SP_STORE_SET_COOKIE")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    store_set_cookie: bool,
    /// Time for the origin to answer with a head, connection included, else 504
    /// (seconds, or 30s) [default: 30s].
    #[arg(long, env = "SP_UPSTREAM_TIMEOUT_SECS")]
    upstream_timeout_secs: Option<Secs>,
    /// Time for a TCP connection to the origin, else 502 (seconds, or 10s) [default: 10s].
    #[arg(long, env = "SP_UPSTREAM_CONNECT_TIMEOUT_SECS")]
    upstream_connect_timeout_secs: Option<Secs>,
    /// No byte of an origin body for this long fails its fill (seconds, or 30s) [default: 30s].
    #[arg(long, env = "SP_UPSTREAM_BODY_IDLE_SECS")]
    upstream_body_idle_secs: Option<Secs>,
    /// A client that takes no byte of its response for this long is dropped
    /// (seconds, or 60s) [default: 60s].
    #[arg(long, env = "SP_CLIENT_WRITE_IDLE_SECS")]
    client_write_idle_secs: Option<Secs>,
    /// Origin fetches in progress at once; beyond it a miss waits [default: 256].
    #[arg(long, env = "SP_MAX_FILLS")]
    max_fills: Option<usize>,
    /// Client networks allowed to PURGE, comma-separated CIDRs [default: 127.0.0.0/8,::1/128].
    #[arg(long, value_delimiter = ',', env = "SP_PURGE_ALLOW")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    purge_allow: Vec<ipnet::IpNet>,
    /// Serve Prometheus `/metrics`, `/healthz` and `/readyz` on this address [default: none].
    #[arg(long, env = "SP_METRICS")]
    metrics: Option<SocketAddr>,
    /// Longest cache key (path and query) in bytes; longer requests get 414 [default: 8192].
    #[arg(long, value_name = "BYTES", env = "SP_MAX_KEY_BYTES")]
    max_key_bytes: Option<usize>,
    /// Log line format on stderr: text or json [default: text].
    #[arg(long, value_enum, env = "SP_LOG_FORMAT")]
    #[serde(skip)]
    log_format: Option<LogFormat>,
    /// Do not write the access log (one line per request, target `access`).
    #[arg(long, env = "SP_NO_ACCESS_LOG")]
    #[serde(skip)]
    no_access_log: bool,
}

impl Cli {
    /// defaults < file < environment < flags (`service_ops::config::layer`).
    fn into_config(self) -> Result<ProxyConfig, service_ops::config::ConfigError> {
        service_ops::config::layer(self.config.as_deref(), &self)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.check_config {
        return match check(cli) {
            Ok(()) => {
                eprintln!("streaming-proxy: configuration ok");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("streaming-proxy: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let _log = service_ops::init_logging(cli.log_format.unwrap_or_default(), !cli.no_access_log);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streaming-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--check-config`: the layered settings are valid and the TLS files load.
fn check(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let config = cli.into_config()?;
    config.validate()?;
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        TlsIdentity::from_pem_files(cert, key)?;
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let access_log = !cli.no_access_log;
    let config = cli.into_config()?;
    let listen = config.listen;
    let metrics_addr = config.metrics;
    // Read before anything is bound, so a bad certificate fails the start-up.
    let tls = match (config.listen_tls, &config.tls_cert, &config.tls_key) {
        (Some(addr), Some(cert), Some(key)) => {
            Some((addr, TlsIdentity::from_pem_files(cert, key)?))
        }
        _ => None,
    };
    let tls_files = config.tls_cert.clone().zip(config.tls_key.clone());
    let proxy = StreamingProxy::new(config)?;
    let server_config = ServerConfig {
        access_log,
        ..ServerConfig::default()
    };
    let server = Server::bind(
        server_config.clone(),
        Listen {
            http: Some(listen),
            https: tls,
        },
    )
    .await?;
    web_service::reload_tls_on_sighup(
        server
            .tls_reloader()
            .zip(tls_files)
            .map(|(r, (cert, key))| (r, cert, key)),
    );
    let mut ready = format!("READY http={}", server.http_addr().unwrap_or(listen));
    if let Some(addr) = server.https_addr() {
        let _ = write!(ready, " https={addr}");
    }
    if let Some(addr) = metrics_addr {
        let (metrics, web) = (proxy.metrics(), server.metrics());
        let server = bind_http(addr, server_config).await?;
        let _ = write!(ready, " metrics={}", server.http_addr().unwrap_or(addr));
        let signal = web_service::ctrl_c_or_sigterm();
        tokio::spawn(async move {
            let handler = tower::service_fn(move |req: http::Request<Body>| {
                let page = (req.uri().path() == "/metrics").then(|| metrics_page(&metrics, &web));
                async move { Ok::<_, std::convert::Infallible>(admin_answer(&req, page)) }
            });
            if let Err(e) = server.serve(handler, signal).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
        tracing::info!(%addr, "metrics on /metrics, probes on /healthz and /readyz");
    }
    tracing::info!(listen = ?server.http_addr(), tls = ?server.https_addr(), "streaming-proxy listening");
    // The bound addresses (port 0 picks one) for scripts and benchmarks; stdout
    // carries nothing else.
    // Installed before READY, so a SIGTERM right after it still drains.
    let signal = web_service::ctrl_c_or_sigterm();
    println!("{ready}");
    server.serve(proxy, signal).await?;
    Ok(())
}

/// A cleartext (HTTP/1.1 and h2c) server on `addr`.
async fn bind_http(addr: SocketAddr, config: ServerConfig) -> Result<Server, web_service::Error> {
    let listen = Listen {
        http: Some(addr),
        https: None,
    };
    Server::bind(config, listen).await
}

/// The metrics listener's one page: the cache's counters and the proxy
/// listener's connection counters, all named `streaming_proxy_*`, and
/// `streaming_proxy_build_info`.
fn metrics_page(metrics: &Metrics, web: &web_service::Metrics) -> String {
    let mut text = service_ops::openmetrics_to_prometheus(&metrics.render());
    text.push_str(&web.render_prometheus_prefixed("streaming_proxy"));
    text.push_str(&service_ops::build_info(
        "streaming_proxy",
        env!("CARGO_PKG_VERSION"),
    ));
    text
}

/// `/metrics` (its rendered `page`), `/healthz`, `/readyz`, else `404`.
fn admin_answer(req: &http::Request<Body>, page: Option<String>) -> http::Response<Body> {
    let draining = req
        .extensions()
        .get::<ShutdownSignal>()
        .is_some_and(ShutdownSignal::is_shutting_down);
    let (status, content_type, body) = match (page, service_ops::probe(req.uri().path(), draining))
    {
        (Some(page), _) => (
            http::StatusCode::OK,
            service_ops::PROMETHEUS_CONTENT_TYPE,
            Body::from(page),
        ),
        (None, Some(probe)) => (
            probe.status(),
            "text/plain; charset=utf-8",
            Body::from(probe.body()),
        ),
        (None, None) => (
            http::StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            Body::from("not found\n"),
        ),
    };
    let mut res = http::Response::new(body);
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    res
}
