//! `streaming-proxy`: the caching reverse proxy binary (ARCHITECTURE.md §9).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use streaming_proxy::{Mode, ProxyConfig, StreamingProxy};
use web_service::{Body, Listen, Server, ServerConfig, TlsIdentity};

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
    /// Upper bound, in seconds, of the heuristic lifetime of answers with
    /// `Last-Modified` and no explicit freshness (RFC 9111 §4.2.2).
    #[arg(long)]
    default_ttl_secs: Option<u64>,
    /// Send the client's Host to the origin instead of the upstream's.
    #[arg(long)]
    preserve_host: bool,
    /// Store answers carrying Set-Cookie (without that header; the client whose
    /// request fetched it still gets it).
    #[arg(long)]
    store_set_cookie: bool,
    /// Seconds for the origin to answer with a head (connection included).
    #[arg(long)]
    upstream_timeout_secs: Option<u64>,
    /// Seconds for a TCP connection to the origin.
    #[arg(long)]
    upstream_connect_timeout_secs: Option<u64>,
    /// Seconds without a byte of an origin body before its fill fails.
    #[arg(long)]
    upstream_body_idle_secs: Option<u64>,
    /// Seconds a client may take no byte of its response before it is dropped.
    #[arg(long)]
    client_write_idle_secs: Option<u64>,
    /// Serve Prometheus `/metrics` on this address.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Longest cache key (path and query) in bytes; longer requests get 414.
    #[arg(long, value_name = "BYTES")]
    max_key_bytes: Option<usize>,
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
        c.max_key_bytes = self.max_key_bytes.unwrap_or(c.max_key_bytes);
        c.preserve_host |= self.preserve_host;
        c.upstream_timeout_secs = self
            .upstream_timeout_secs
            .unwrap_or(c.upstream_timeout_secs);
        c.upstream_connect_timeout_secs = self
            .upstream_connect_timeout_secs
            .unwrap_or(c.upstream_connect_timeout_secs);
        c.upstream_body_idle_secs = self
            .upstream_body_idle_secs
            .unwrap_or(c.upstream_body_idle_secs);
        c.client_write_idle_secs = self
            .client_write_idle_secs
            .unwrap_or(c.client_write_idle_secs);
        c.store_set_cookie |= self.store_set_cookie;
        Ok(c)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streaming-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
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
    let server = Server::bind(
        ServerConfig::default(),
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
        let metrics = proxy.metrics();
        let server = bind_http(addr).await?;
        let _ = write!(ready, " metrics={}", server.http_addr().unwrap_or(addr));
        tokio::spawn(async move {
            let handler = tower::service_fn(move |req: http::Request<Body>| {
                let metrics = metrics.clone();
                async move {
                    if req.uri().path() == "/metrics" {
                        http::Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Body::new(http_body_util::Full::new(bytes::Bytes::from(
                                metrics.render(),
                            ))))
                    } else {
                        http::Response::builder().status(404).body(Body::empty())
                    }
                }
            });
            if let Err(e) = server
                .serve(handler, web_service::ctrl_c_or_sigterm())
                .await
            {
                tracing::error!(error = %e, "metrics server failed");
            }
        });
        tracing::info!(%addr, "metrics on /metrics");
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
async fn bind_http(addr: SocketAddr) -> Result<Server, web_service::Error> {
    let listen = Listen {
        http: Some(addr),
        https: None,
    };
    Server::bind(ServerConfig::default(), listen).await
}
