//! Command line and TOML configuration (ARCHITECTURE.md §7): every option is
//! a flag and a key of the same name; a flag beats the file, the file beats
//! the built-in default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Parser;
use serde::Deserialize;
use service_ops::LogFormat;
use upload_response::UploadResponseConfig;

/// Command-line flags. Each is optional so that the TOML file can supply it.
#[derive(Debug, Parser, Default)]
#[command(
    name = "upload-response-server",
    version,
    about = "Streaming upload ingress: requests stream to workers, responses stream back"
)]
pub struct Cli {
    /// TOML file holding any of the options below (flags override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Cleartext HTTP/1.1, h2c and ws:// listener [default: 127.0.0.1:8080; "none" disables].
    #[arg(long)]
    pub http: Option<String>,
    /// TLS listener (h2, http/1.1, wss://) and HTTP/3 on the same UDP port [default: 127.0.0.1:8443; "none" disables].
    #[arg(long)]
    pub https: Option<String>,
    /// PEM certificate chain (with --tls-key); without both, a self-signed one in --data-dir.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Directory for the generated certificate and worker token [default: ./.upload-response].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Remote worker API and /metrics listener [default: 127.0.0.1:9090; "none" disables].
    #[arg(long)]
    pub worker_api: Option<String>,
    /// Bearer token of the worker API [env: UR_WORKER_TOKEN; default: generated into DATA_DIR/worker-token].
    #[arg(long, env = "UR_WORKER_TOKEN", hide_env_values = true)]
    pub worker_token: Option<String>,
    /// In-process workers: comma-separated echo, sha256, discard; "none" disables [default: echo,sha256,discard].
    #[arg(long)]
    pub builtin_workers: Option<String>,
    /// Requests in flight at once [default: 100].
    #[arg(long)]
    pub num_streams: Option<usize>,
    /// Slot size in KiB [default: 64].
    #[arg(long)]
    pub slot_size_kb: Option<usize>,
    /// Slots retained per stream [default: 16384].
    #[arg(long)]
    pub slots_per_stream: Option<usize>,
    /// Arrival to response head, else 504 [default: 30000].
    #[arg(long)]
    pub response_timeout_ms: Option<u64>,
    /// Arrival to a worker's claim, else 503 [default: 10000].
    #[arg(long)]
    pub claim_timeout_ms: Option<u64>,
    /// Wait for a free stream, else 503 + Retry-After [default: 5000].
    #[arg(long)]
    pub queue_timeout_ms: Option<u64>,
    /// Largest request body, else 413 [default: 17179869184 (16 GiB)].
    #[arg(long)]
    pub max_body_bytes: Option<u64>,
    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish [default: 10000].
    #[arg(long)]
    pub drain_timeout_ms: Option<u64>,
    /// A remote worker's claim lapses after this long without activity (body
    /// read, response write, renewal) and, before response headers, the
    /// request is offered again [default: 30000].
    #[arg(long)]
    pub worker_lease_ms: Option<u64>,
    /// Log line format on stderr: text or json [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Do not write the access log (one line per request, target `access`).
    #[arg(long)]
    pub no_access_log: bool,
}

/// The TOML file: the same options as the flags, in snake case.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    http: Option<String>,
    https: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    worker_api: Option<String>,
    worker_token: Option<String>,
    builtin_workers: Option<String>,
    num_streams: Option<usize>,
    slot_size_kb: Option<usize>,
    slots_per_stream: Option<usize>,
    response_timeout_ms: Option<u64>,
    claim_timeout_ms: Option<u64>,
    queue_timeout_ms: Option<u64>,
    max_body_bytes: Option<u64>,
    drain_timeout_ms: Option<u64>,
    worker_lease_ms: Option<u64>,
    log_format: Option<LogFormat>,
    access_log: Option<bool>,
}

/// A built-in in-process worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// `POST /echo…`: the body streams back.
    Echo,
    /// `POST /sha256…`: `<hex sha256> <bytes>\n`.
    Sha256,
    /// `POST /discard…`: `<bytes>\n`.
    Discard,
}

/// Everything the server needs, resolved.
#[derive(Debug)]
pub struct Settings {
    /// Cleartext listener.
    pub http: Option<SocketAddr>,
    /// TLS + QUIC listener.
    pub https: Option<SocketAddr>,
    /// Certificate and key files, if given.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Worker API listener.
    pub worker_api: Option<SocketAddr>,
    /// Explicit worker token.
    pub worker_token: Option<String>,
    /// Built-in workers to run.
    pub builtins: Vec<Builtin>,
    /// Stream options.
    pub service: UploadResponseConfig,
    /// Graceful shutdown deadline.
    pub drain_timeout_ms: u64,
    /// Remote worker claim lease.
    pub worker_lease_ms: u64,
    /// Log line format.
    pub log_format: LogFormat,
    /// Whether each request gets an access log line.
    pub access_log: bool,
}

impl Settings {
    /// Merges flags over the file (if any) over the defaults.
    pub fn resolve(cli: Cli) -> anyhow::Result<Self> {
        let file = match &cli.config {
            Some(path) => load(path)?,
            None => FileConfig::default(),
        };
        let defaults = UploadResponseConfig::default();
        let service = UploadResponseConfig {
            num_streams: cli
                .num_streams
                .or(file.num_streams)
                .unwrap_or(defaults.num_streams),
            slot_size_kb: cli
                .slot_size_kb
                .or(file.slot_size_kb)
                .unwrap_or(defaults.slot_size_kb),
            slots_per_stream: cli
                .slots_per_stream
                .or(file.slots_per_stream)
                .unwrap_or(defaults.slots_per_stream),
            response_timeout_ms: cli
                .response_timeout_ms
                .or(file.response_timeout_ms)
                .unwrap_or(defaults.response_timeout_ms),
            claim_timeout_ms: cli
                .claim_timeout_ms
                .or(file.claim_timeout_ms)
                .unwrap_or(defaults.claim_timeout_ms),
            queue_timeout_ms: cli
                .queue_timeout_ms
                .or(file.queue_timeout_ms)
                .unwrap_or(defaults.queue_timeout_ms),
            max_body_bytes: cli
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(defaults.max_body_bytes),
        };
        let tls = match (cli.tls_cert.or(file.tls_cert), cli.tls_key.or(file.tls_key)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together: give both or neither"),
        };
        Ok(Self {
            http: addr("http", cli.http.or(file.http), "127.0.0.1:8080")?,
            https: addr("https", cli.https.or(file.https), "127.0.0.1:8443")?,
            tls,
            data_dir: cli
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(".upload-response")),
            worker_api: addr(
                "worker-api",
                cli.worker_api.or(file.worker_api),
                "127.0.0.1:9090",
            )?,
            worker_token: cli
                .worker_token
                .or(file.worker_token)
                .filter(|t| !t.is_empty()),
            builtins: builtins(
                cli.builtin_workers
                    .or(file.builtin_workers)
                    .as_deref()
                    .unwrap_or("echo,sha256,discard"),
            )?,
            service,
            drain_timeout_ms: cli
                .drain_timeout_ms
                .or(file.drain_timeout_ms)
                .unwrap_or(10_000),
            worker_lease_ms: cli
                .worker_lease_ms
                .or(file.worker_lease_ms)
                .unwrap_or(30_000)
                .max(1),
            log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
            // The flag can only turn it off; the file can say either.
            access_log: !cli.no_access_log && file.access_log.unwrap_or(true),
        })
    }
}

fn load(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

fn addr(name: &str, given: Option<String>, default: &str) -> anyhow::Result<Option<SocketAddr>> {
    let text = given.unwrap_or_else(|| default.to_owned());
    if text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    text.parse().map(Some).with_context(|| {
        format!("--{name}: {text:?} is not an address like 127.0.0.1:8080 (or \"none\")")
    })
}

fn builtins(list: &str) -> anyhow::Result<Vec<Builtin>> {
    if list.trim().eq_ignore_ascii_case("none") || list.trim().is_empty() {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|name| match name.trim() {
            "echo" => Ok(Builtin::Echo),
            "sha256" => Ok(Builtin::Sha256),
            "discard" => Ok(Builtin::Discard),
            other => bail!("--builtin-workers: unknown worker {other:?} (known: echo, sha256, discard, or none)"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let s = Settings::resolve(Cli::default()).unwrap();
        assert_eq!(s.http, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(s.https, Some("127.0.0.1:8443".parse().unwrap()));
        assert_eq!(s.worker_api, Some("127.0.0.1:9090".parse().unwrap()));
        assert_eq!(s.data_dir, PathBuf::from(".upload-response"));
        assert_eq!(
            s.builtins,
            [Builtin::Echo, Builtin::Sha256, Builtin::Discard]
        );
        assert_eq!(s.service.num_streams, 100);
        assert_eq!(s.service.slot_size_kb, 64);
        assert_eq!(s.service.slots_per_stream, 16384);
        assert_eq!(s.service.response_timeout_ms, 30000);
        assert_eq!(s.worker_lease_ms, 30000);
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "num_streams = 7\nslot_size_kb = 16\nhttp = \"none\"\nbuiltin_workers = \"sha256\"\nworker_lease_ms = 1500\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(path),
            num_streams: Some(9),
            ..Cli::default()
        };
        let s = Settings::resolve(cli).unwrap();
        assert_eq!(s.service.num_streams, 9);
        assert_eq!(s.service.slot_size_kb, 16);
        assert_eq!(s.http, None);
        assert_eq!(s.builtins, [Builtin::Sha256]);
        assert_eq!(s.worker_lease_ms, 1500);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "num_streamz = 7\n").unwrap();
        let err = Settings::resolve(Cli {
            config: Some(path),
            ..Cli::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("num_streamz"), "{err:#}");
        let err = Settings::resolve(Cli {
            http: Some("nowhere".into()),
            ..Cli::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("--http"));
        let err = Settings::resolve(Cli {
            builtin_workers: Some("echo,bogus".into()),
            ..Cli::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("bogus"));
    }
}
