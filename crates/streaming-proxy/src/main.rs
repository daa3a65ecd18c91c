//! `streaming-proxy`: the caching reverse proxy binary (ARCHITECTURE.md §9).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use service_ops::LogFormat;
use streaming_proxy::{Metrics, Mode, ProxyConfig, StreamingProxy};
use web_service::{Body, Listen, Server, ServerConfig, ShutdownSignal, TlsIdentity};

/// Caching pass-through reverse proxy. Flags override the `--config` file.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Origin base URL, e.g. http://127.0.0.1:9000 or https://origin.example.
    #[arg(long)]
    upstream: Option<String>,
    /// Speak only HTTP/2 to the origin: h2c with prior knowledge on http://, ALPN
    /// offering only h2 on https:// (without it: HTTP/1.1, or the origin's ALPN pick).
    #[arg(long)]
    upstream_http2: bool,
    /// PEM file of extra CA certificates trusted for an https:// origin.
    #[arg(long, value_name = "FILE")]
    upstream_ca: Option<PathBuf>,
    /// Listen address, e.g. 127.0.0.1:8080.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Also listen with TLS here: HTTP/1.1 and HTTP/2 over TCP, HTTP/3 over UDP
    /// on the same port. Needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR")]
    listen_tls: Option<SocketAddr>,
    /// PEM certificate chain for --listen-tls.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --listen-tls.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Disk cache directory.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// normal, record or replay.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Slice size in bytes.
    #[arg(long)]
    slice_size: Option<u64>,
    /// Memory cache budget in bytes.
    #[arg(long)]
    l1_bytes: Option<u64>,
    /// Disk cache budget in bytes (0 disables the disk cache).
    #[arg(long)]
    l2_bytes: Option<u64>,
    /// Lifetime of answers without cache headers, in seconds.
    #[arg(long)]
    default_ttl_secs: Option<u64>,
    /// Serve Prometheus `/metrics`, `/healthz` and `/readyz` on this address.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Log line format on stderr: text or json [default: text].
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Do not write the access log (one line per request, target `access`).
    #[arg(long)]
    no_access_log: bool,
}

impl Cli {
    fn into_config(self) -> Result<ProxyConfig, streaming_proxy::ConfigError> {
        let mut c = match &self.config {
            Some(path) => ProxyConfig::from_file(path)?,
            None => ProxyConfig::default(),
        };
        c.upstream = self.upstream.unwrap_or(c.upstream);
        // A switch: the flag can turn HTTP/2 on, never off a file's `true`.
        c.upstream_http2 |= self.upstream_http2;
        c.upstream_ca = self.upstream_ca.or(c.upstream_ca);
        c.listen = self.listen.unwrap_or(c.listen);
        c.listen_tls = self.listen_tls.or(c.listen_tls);
        c.tls_cert = self.tls_cert.or(c.tls_cert);
        c.tls_key = self.tls_key.or(c.tls_key);
        c.cache_dir = self.cache_dir.unwrap_or(c.cache_dir);
        c.mode = self.mode.unwrap_or(c.mode);
        c.slice_size = self.slice_size.unwrap_or(c.slice_size);
        c.l1_bytes = self.l1_bytes.unwrap_or(c.l1_bytes);
        c.l2_bytes = self.l2_bytes.unwrap_or(c.l2_bytes);
        c.default_ttl_secs = self.default_ttl_secs.unwrap_or(c.default_ttl_secs);
        c.metrics = self.metrics.or(c.metrics);
        Ok(c)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    service_ops::init_logging(cli.log_format.unwrap_or_default(), !cli.no_access_log);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streaming-proxy: {e}");
            ExitCode::FAILURE
        }
    }
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
    let mut ready = format!("READY http={}", server.http_addr().unwrap_or(listen));
    if let Some(addr) = server.https_addr() {
        let _ = write!(ready, " https={addr}");
    }
    if let Some(addr) = metrics_addr {
        let (metrics, web) = (proxy.metrics(), server.metrics());
        let server = bind_http(addr, server_config).await?;
        let _ = write!(ready, " metrics={}", server.http_addr().unwrap_or(addr));
        tokio::spawn(async move {
            let handler = tower::service_fn(move |req: http::Request<Body>| {
                let page = (req.uri().path() == "/metrics").then(|| metrics_page(&metrics, &web));
                async move { Ok::<_, std::convert::Infallible>(admin_answer(&req, page)) }
            });
            if let Err(e) = server
                .serve(handler, web_service::ctrl_c_or_sigterm())
                .await
            {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
        tracing::info!(%addr, "metrics on /metrics, probes on /healthz and /readyz");
    }
    tracing::info!(listen = ?server.http_addr(), tls = ?server.https_addr(), "streaming-proxy listening");
    // The bound addresses (port 0 picks one) for scripts and benchmarks; stdout
    // carries nothing else.
    println!("{ready}");
    server
        .serve(proxy, web_service::ctrl_c_or_sigterm())
        .await?;
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
