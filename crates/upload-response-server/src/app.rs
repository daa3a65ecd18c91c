//! Wiring: the ingress on every protocol, the worker API listener (the
//! remote worker API and `/metrics`), built-in workers, graceful shutdown.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use upload_response::UploadResponseService;
use web_service::{Body, Listen, Server, ServerConfig, TlsIdentity, ws};

use crate::builtin;
use crate::settings::Settings;
use crate::worker_api;

/// A started server: where it listens, and how to stop it.
pub struct Running {
    /// Cleartext listener, if any.
    pub http: Option<SocketAddr>,
    /// TLS (and QUIC, same port number) listener, if any.
    pub https: Option<SocketAddr>,
    /// Worker API listener, if any.
    pub worker_api: Option<SocketAddr>,
    /// The certificate clients should trust (the self-signed one, or --tls-cert).
    pub cert_path: Option<PathBuf>,
    /// The worker API token (never printed or logged: its path is).
    pub worker_token: String,
    /// Where the generated token was stored, if it was generated or reused from disk.
    pub worker_token_path: Option<PathBuf>,
    /// The service, for in-process workers and inspection.
    pub service: UploadResponseService,
    /// The ingress listeners' counters (connections, requests, writes).
    pub web_metrics: Arc<web_service::Metrics>,
    /// Swaps the TLS certificate in (reloader, certificate file, key file).
    pub tls_reload: Option<(web_service::TlsReloader, PathBuf, PathBuf)>,
    stop: CancellationToken,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Running {
    /// Starts the graceful shutdown: stop accepting, drain, close.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// A token that starts the graceful shutdown when cancelled.
    pub fn stop_handle(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Waits until every listener has shut down.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        while let Some(done) = self.tasks.join_next().await {
            done.context("server task panicked")??;
        }
        Ok(())
    }
}

/// Binds every listener and starts serving.
pub async fn start(settings: Settings) -> anyhow::Result<Running> {
    let service =
        UploadResponseService::new(settings.service.clone()).context("invalid stream options")?;
    builtin::spawn(&service, &settings.builtins);
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();

    let (identity, cert_path, key_path) = match (&settings.tls, settings.https) {
        (_, None) => (None, None, None),
        (Some((cert, key)), Some(_)) => (
            Some(TlsIdentity::from_pem_files(cert, key)?),
            Some(cert.clone()),
            Some(key.clone()),
        ),
        (None, Some(_)) => {
            let generated = TlsIdentity::self_signed_in(&settings.data_dir).with_context(|| {
                format!(
                    "cannot create a certificate in {}",
                    settings.data_dir.display()
                )
            })?;
            (
                Some(generated.identity),
                Some(generated.cert_path),
                Some(generated.key_path),
            )
        }
    };
    let mut config = ServerConfig {
        // The ingress enforces max_body_bytes itself, with its own 413 and an
        // abort the workers see.
        max_body_bytes: None,
        drain_timeout: Duration::from_millis(settings.drain_timeout_ms),
        access_log: settings.access_log,
        header_read_timeout: Duration::from_millis(settings.header_read_timeout_ms),
        lingering_bytes: settings.lingering_bytes,
        lingering_time: Duration::from_millis(settings.lingering_time_ms),
        ..ServerConfig::default()
    };
    // The worker API is not limited per client: one remote worker process
    // may multiplex any number of jobs on one connection.
    let worker_api_config = config.clone();
    // One ingress connection may not open more streams than its client may
    // use: the rest would only wait for a 429 (ARCHITECTURE.md §6).
    let per_client = u32::try_from(settings.service.max_streams_per_client).unwrap_or(u32::MAX);
    let h2 = &mut config.http2.max_concurrent_streams;
    *h2 = (*h2).min(per_client);
    let h3 = &mut config.http3.max_concurrent_streams;
    *h3 = (*h3).min(per_client);
    let listen = Listen {
        http: settings.http,
        https: settings.https.zip(identity),
    };
    let ingress = Server::bind(config, listen).await?;
    let (http, https) = (ingress.http_addr(), ingress.https_addr());
    let tls_reload = ingress
        .tls_reloader()
        .zip(cert_path.clone().zip(key_path))
        .map(|(r, (cert, key))| (r, cert, key));
    let web_metrics = ingress.metrics();
    let handler = ingress_handler(service.clone());
    let signal = stop.clone().cancelled_owned();
    tasks.spawn(async move { Ok(ingress.serve(handler, signal).await?) });

    let (worker_token, worker_token_path) = worker_token(&settings)?;
    let mut worker_api = None;
    if let Some(addr) = settings.worker_api {
        let api = Server::bind(
            worker_api_config,
            Listen {
                http: Some(addr),
                https: None,
            },
        )
        .await?;
        worker_api = api.http_addr();
        let router = worker_api::router(
            service.clone(),
            web_metrics.clone(),
            &worker_token,
            Duration::from_millis(settings.worker_lease_ms),
            stop.clone(),
        );
        let signal = stop.clone().cancelled_owned();
        tasks.spawn(async move { Ok(api.serve(router, signal).await?) });
    }
    Ok(Running {
        http,
        https,
        worker_api,
        cert_path,
        worker_token,
        worker_token_path,
        service,
        web_metrics,
        tls_reload,
        stop,
        tasks,
    })
}

/// The one handler every protocol calls: WebSocket upgrades become upload
/// sessions, everything else goes to the ingress.
fn ingress_handler(
    service: UploadResponseService,
) -> impl tower::Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(move |mut req: Request<Body>| {
        let service = service.clone();
        async move {
            if ws::is_upgrade_request(&req) {
                // Refuse a client over its limit before the upgrade: a plain
                // 429 rather than a session that closes at once.
                match service.admit(&req) {
                    Ok(admission) => {
                        req.extensions_mut().insert(admission);
                    }
                    Err(refused) => return Ok(refused.response().map(Body::new)),
                }
                return Ok(match ws::upgrade(&mut req) {
                    Ok((response, upgrade)) => {
                        let (parts, _) = req.into_parts();
                        upgrade.spawn(move |socket, _shutdown| async move {
                            service.serve_websocket(parts, socket).await;
                        });
                        response
                    }
                    Err(e) => {
                        let text = Bytes::from(format!("{e}\n"));
                        let mut res = Response::new(Body::new(Full::new(text)));
                        *res.status_mut() = e.status();
                        res
                    }
                });
            }
            Ok(service.handle(req).await.map(Body::new))
        }
    })
}

/// The token: given, or read from `DATA_DIR/worker-token`, or generated there.
fn worker_token(settings: &Settings) -> anyhow::Result<(String, Option<PathBuf>)> {
    if let Some(token) = &settings.worker_token {
        return Ok((token.clone(), None));
    }
    let path = settings.data_dir.join("worker-token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if !existing.is_empty() {
            return Ok((existing.to_owned(), Some(path)));
        }
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)
        .map_err(|e| anyhow::anyhow!("no system randomness for the worker token: {e}"))?;
    let token = hex::encode(raw);
    write_private(&path, &token)?;
    Ok((token, Some(path)))
}

/// Writes a secret readable by the owner only.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(file, "{text}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
