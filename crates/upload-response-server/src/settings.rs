//! Command line, environment and TOML configuration (ARCHITECTURE.md §7):
//! every option is declared once, in [`Cli`], as a flag (`--num-streams`), an
//! environment variable (`UR_NUM_STREAMS`) and a TOML key (`num_streams`);
//! flags beat the environment, which beats the file, which beats the built-in
//! default (layered by `service_ops::config::layer`). Sizes and durations take
//! units (`16GiB`, `30s`); bare numbers keep the option's own unit.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use serde::{Deserialize, Serialize};
use service_ops::LogFormat;
use service_ops::config::{Millis, Size};
use upload_response::UploadResponseConfig;

/// Every option: flag, environment variable and TOML key. Each is optional
/// so that a lower layer can supply it.
#[derive(Debug, Parser, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(
    name = "upload-response-server",
    version,
    about = "Streaming upload ingress: requests stream to workers, responses stream back"
)]
pub struct Cli {
    /// TOML file holding any of the options below (environment and flags override it).
    #[arg(long, env = "UR_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Validate the configuration (file, environment, flags, TLS files) and exit:
    /// 0 if it is usable, else 1 with the offending key.
    #[arg(long)]
    #[serde(skip)]
    pub check_config: bool,
    /// Cleartext HTTP/1.1, h2c and ws:// listener [default: 127.0.0.1:8080; "none" disables].
    #[arg(long, env = "UR_HTTP")]
    pub http: Option<String>,
    /// TLS listener (h2, http/1.1, wss://) and HTTP/3 on the same UDP port [default: 127.0.0.1:8443; "none" disables].
    #[arg(long, env = "UR_HTTPS")]
    pub https: Option<String>,
    /// PEM certificate chain (with --tls-key); without both, a self-signed one in --data-dir.
    #[arg(long, env = "UR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "UR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Directory for the generated certificate and worker token [default: ./.upload-response].
    #[arg(long, env = "UR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Remote worker API and /metrics listener [default: 127.0.0.1:9090; "none" disables].
    #[arg(long, env = "UR_WORKER_API")]
    pub worker_api: Option<String>,
    /// Bearer token of the worker API [env: UR_WORKER_TOKEN; default: generated into DATA_DIR/worker-token].
    #[arg(long, env = "UR_WORKER_TOKEN", hide_env_values = true)]
    pub worker_token: Option<String>,
    /// In-process workers: comma-separated echo, sha256, discard; "none" disables [default: echo,sha256,discard].
    #[arg(long, env = "UR_BUILTIN_WORKERS")]
    pub builtin_workers: Option<String>,
    /// Requests in flight at once; a stream costs only metadata until it holds bytes [default: 4096].
    #[arg(long, env = "UR_NUM_STREAMS")]
    pub num_streams: Option<usize>,
    /// Slot size in KiB [default: 64].
    #[arg(long, env = "UR_SLOT_SIZE_KB")]
    pub slot_size_kb: Option<usize>,
    /// A stream's in-memory window, in slots [default: 64].
    #[arg(long, env = "UR_SLOTS_PER_STREAM")]
    pub slots_per_stream: Option<usize>,
    /// Slot bytes the request and response caches hold together (bytes, or
    /// 256MiB); writers beyond it wait [default: 256MiB].
    #[arg(long, env = "UR_MEMORY_BUDGET")]
    pub memory_budget: Option<Size>,
    /// Arrival to response head, else 504 (ms, or with a unit: 30s) [default: 30s].
    #[arg(long, env = "UR_RESPONSE_TIMEOUT_MS")]
    pub response_timeout_ms: Option<Millis>,
    /// Arrival to a worker's claim, else 503 (ms, or 10s) [default: 10s].
    #[arg(long, env = "UR_CLAIM_TIMEOUT_MS")]
    pub claim_timeout_ms: Option<Millis>,
    /// Wait for a free stream, else 503 + Retry-After (ms, or 5s) [default: 5s].
    #[arg(long, env = "UR_QUEUE_TIMEOUT_MS")]
    pub queue_timeout_ms: Option<Millis>,
    /// Largest request body, else 413 (units: 16GiB, 512MiB) [default: 16GiB].
    #[arg(long, env = "UR_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<Size>,
    /// Requests one client IP address may have in flight, else 429 + Retry-After;
    /// also caps HTTP/2 and HTTP/3 concurrent streams per connection [default: 64].
    #[arg(long, env = "UR_MAX_STREAMS_PER_CLIENT")]
    pub max_streams_per_client: Option<usize>,
    /// No request body byte for this long while the body is incomplete: 408
    /// (a reset once the response started) (ms, or 30s) [default: 30s].
    #[arg(long, env = "UR_BODY_IDLE_TIMEOUT_MS")]
    pub body_idle_timeout_ms: Option<Millis>,
    /// After the response head, the worker writing nothing or the client
    /// reading nothing for this long resets the response (ms, or 30s) [default: 30s].
    #[arg(long, env = "UR_RESPONSE_IDLE_TIMEOUT_MS")]
    pub response_idle_timeout_ms: Option<Millis>,
    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish (ms, or 10s) [default: 10s].
    #[arg(long, env = "UR_DRAIN_TIMEOUT_MS")]
    pub drain_timeout_ms: Option<Millis>,
    /// A remote worker's claim lapses after this long without activity (body
    /// read, response write, renewal) and, before response headers, the
    /// request is offered again (ms, or 30s) [default: 30s].
    #[arg(long, env = "UR_WORKER_LEASE_MS")]
    pub worker_lease_ms: Option<Millis>,
    /// Slowloris bound: a request head (HTTP/1.1, HTTP/2, HTTP/3) must be complete
    /// this long after its first byte, else 408 / reset (ms, or 10s) [default: 10s].
    #[arg(long, env = "UR_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: Option<Millis>,
    /// After an early answer (e.g. 413), this many more request body bytes are read
    /// and discarded so the client sees the answer; past it the stream is reset
    /// (bytes, or 256MiB) [default: 256MiB; 0 disables].
    #[arg(long, env = "UR_LINGERING_BYTES")]
    pub lingering_bytes: Option<Size>,
    /// Longest time such a body is drained after an early answer (ms, or 30s) [default: 30s].
    #[arg(long, env = "UR_LINGERING_TIME_MS")]
    pub lingering_time_ms: Option<Millis>,
    /// Log line format on stderr: text or json [default: text].
    #[arg(long, value_enum, env = "UR_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Do not write the access log (one line per request, target `access`).
    #[arg(long, env = "UR_NO_ACCESS_LOG")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_access_log: bool,
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
    /// Request head deadline on every protocol.
    pub header_read_timeout_ms: u64,
    /// Bytes drained after an early answer.
    pub lingering_bytes: u64,
    /// Time allowed for that drain.
    pub lingering_time_ms: u64,
}

impl Settings {
    /// Lays flags and environment over the file (if any) over the defaults.
    pub fn resolve(cli: Cli) -> anyhow::Result<Self> {
        let o: Cli = service_ops::config::layer(cli.config.as_deref(), &cli)?;
        let defaults = UploadResponseConfig::default();
        let web = web_service::ServerConfig::default();
        let ms = |v: Option<Millis>, default: u64| v.map_or(default, Millis::as_millis);
        let service = UploadResponseConfig {
            num_streams: o.num_streams.unwrap_or(defaults.num_streams),
            slot_size_kb: o.slot_size_kb.unwrap_or(defaults.slot_size_kb),
            slots_per_stream: o.slots_per_stream.unwrap_or(defaults.slots_per_stream),
            memory_budget: o.memory_budget.map_or(defaults.memory_budget, |s| s.0),
            response_timeout_ms: ms(o.response_timeout_ms, defaults.response_timeout_ms),
            claim_timeout_ms: ms(o.claim_timeout_ms, defaults.claim_timeout_ms),
            queue_timeout_ms: ms(o.queue_timeout_ms, defaults.queue_timeout_ms),
            max_body_bytes: o.max_body_bytes.map_or(defaults.max_body_bytes, |s| s.0),
            max_streams_per_client: o
                .max_streams_per_client
                .unwrap_or(defaults.max_streams_per_client),
            body_idle_timeout_ms: ms(o.body_idle_timeout_ms, defaults.body_idle_timeout_ms),
            response_idle_timeout_ms: ms(
                o.response_idle_timeout_ms,
                defaults.response_idle_timeout_ms,
            ),
        };
        if service.max_streams_per_client == 0 {
            bail!("--max-streams-per-client must be at least 1");
        }
        let tls = match (o.tls_cert, o.tls_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together: give both or neither"),
        };
        Ok(Self {
            http: addr("http", o.http, "127.0.0.1:8080")?,
            https: addr("https", o.https, "127.0.0.1:8443")?,
            tls,
            data_dir: o
                .data_dir
                .unwrap_or_else(|| PathBuf::from(".upload-response")),
            worker_api: addr("worker-api", o.worker_api, "127.0.0.1:9090")?,
            worker_token: o.worker_token.filter(|t| !t.is_empty()),
            builtins: builtins(
                o.builtin_workers
                    .as_deref()
                    .unwrap_or("echo,sha256,discard"),
            )?,
            service,
            drain_timeout_ms: ms(o.drain_timeout_ms, 10_000),
            worker_lease_ms: ms(o.worker_lease_ms, 30_000).max(1),
            log_format: o.log_format.unwrap_or_default(),
            access_log: !o.no_access_log,
            header_read_timeout_ms: ms(o.header_read_timeout_ms, millis(web.header_read_timeout))
                .max(1),
            lingering_bytes: o.lingering_bytes.map_or(web.lingering_bytes, |s| s.0),
            lingering_time_ms: ms(o.lingering_time_ms, millis(web.lingering_time)),
        })
    }

    /// What `--check-config` adds to [`Settings::resolve`]: the stream options
    /// are consistent and the TLS files load.
    pub fn check(&self) -> anyhow::Result<()> {
        upload_response::UploadResponseService::new(self.service.clone())
            .context("invalid stream options (num_streams, slot_size_kb, slots_per_stream, ...)")?;
        if let Some((cert, key)) = &self.tls {
            web_service::TlsIdentity::from_pem_files(cert, key)
                .context("tls_cert / tls_key cannot be used")?;
        }
        Ok(())
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
        assert_eq!(s.service.num_streams, 4096);
        assert_eq!(s.service.slot_size_kb, 64);
        assert_eq!(s.service.slots_per_stream, 64);
        assert_eq!(s.service.memory_budget, 256 << 20);
        assert_eq!(s.service.response_timeout_ms, 30000);
        assert_eq!(s.worker_lease_ms, 30000);
        assert_eq!(s.service.max_streams_per_client, 64);
        assert_eq!(s.service.body_idle_timeout_ms, 30000);
        assert_eq!(s.service.response_idle_timeout_ms, 30000);
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "num_streams = 7\nslot_size_kb = 16\nhttp = \"none\"\nbuiltin_workers = \"sha256\"\nworker_lease_ms = 1500\nmax_streams_per_client = 3\nbody_idle_timeout_ms = 250\n",
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
        assert_eq!(s.service.max_streams_per_client, 3);
        assert_eq!(s.service.body_idle_timeout_ms, 250);
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

    #[test]
    fn memory_budget_takes_integers_and_binary_units() {
        let dir = tempfile::tempdir().unwrap();
        for (text, want) in [
            ("memory_budget = 1048576\n", 1 << 20),
            ("memory_budget = \"8MiB\"\n", 8 << 20),
        ] {
            let path = dir.path().join("c.toml");
            std::fs::write(&path, text).unwrap();
            let s = Settings::resolve(Cli {
                config: Some(path),
                ..Cli::default()
            })
            .unwrap();
            assert_eq!(s.service.memory_budget, want, "{text}");
        }
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "memory_budget = \"lots\"\n").unwrap();
        let err = Settings::resolve(Cli {
            config: Some(path),
            ..Cli::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("memory_budget"), "{err:#}");
    }
}
