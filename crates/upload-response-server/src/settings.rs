//! Command line and TOML configuration (ARCHITECTURE.md §7): every option is
//! a flag and a key of the same name; a flag beats the file, the file beats
//! the built-in default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Parser;
use serde::Deserialize;
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
    /// Requests in flight at once; a stream costs only metadata until it holds bytes [default: 4096].
    #[arg(long)]
    pub num_streams: Option<usize>,
    /// Slot size in KiB [default: 64].
    #[arg(long)]
    pub slot_size_kb: Option<usize>,
    /// A stream's in-memory window, in slots [default: 64].
    #[arg(long)]
    pub slots_per_stream: Option<usize>,
    /// Slot bytes the request and response caches hold together, in bytes or
    /// with a unit (KiB, MiB, GiB); writers beyond it wait [default: 256MiB].
    #[arg(long, value_parser = parse_bytes)]
    pub memory_budget: Option<u64>,
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
    /// Requests one client IP address may have in flight, else 429 + Retry-After;
    /// also caps HTTP/2 and HTTP/3 concurrent streams per connection [default: 64].
    #[arg(long)]
    pub max_streams_per_client: Option<usize>,
    /// No request body byte for this long while the body is incomplete: 408
    /// (a reset once the response started) [default: 30000].
    #[arg(long)]
    pub body_idle_timeout_ms: Option<u64>,
    /// After the response head, the worker writing nothing or the client
    /// reading nothing for this long resets the response [default: 30000].
    #[arg(long)]
    pub response_idle_timeout_ms: Option<u64>,
    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish [default: 10000].
    #[arg(long)]
    pub drain_timeout_ms: Option<u64>,
    /// A remote worker's claim lapses after this long without activity (body
    /// read, response write, renewal) and, before response headers, the
    /// request is offered again [default: 30000].
    #[arg(long)]
    pub worker_lease_ms: Option<u64>,
    /// Slowloris bound: a request head (HTTP/1.1, HTTP/2, HTTP/3) must be complete
    /// this long after its first byte, else 408 / reset [default: 10000].
    #[arg(long)]
    pub header_read_timeout_ms: Option<u64>,
    /// After an early answer (e.g. 413), this many more request body bytes are read
    /// and discarded so the client sees the answer; past it the stream is reset
    /// [default: 268435456 (256 MiB); 0 disables].
    #[arg(long)]
    pub lingering_bytes: Option<u64>,
    /// Longest time such a body is drained after an early answer [default: 30000].
    #[arg(long)]
    pub lingering_time_ms: Option<u64>,
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
    memory_budget: Option<ByteSize>,
    response_timeout_ms: Option<u64>,
    claim_timeout_ms: Option<u64>,
    queue_timeout_ms: Option<u64>,
    max_body_bytes: Option<u64>,
    max_streams_per_client: Option<usize>,
    body_idle_timeout_ms: Option<u64>,
    response_idle_timeout_ms: Option<u64>,
    drain_timeout_ms: Option<u64>,
    worker_lease_ms: Option<u64>,
    header_read_timeout_ms: Option<u64>,
    lingering_bytes: Option<u64>,
    lingering_time_ms: Option<u64>,
}

/// A byte count in the TOML file: a plain integer or a string with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ByteSize {
    Bytes(u64),
    Text(String),
}

impl ByteSize {
    fn bytes(&self) -> anyhow::Result<u64> {
        match self {
            Self::Bytes(n) => Ok(*n),
            Self::Text(text) => parse_bytes(text).map_err(anyhow::Error::msg),
        }
    }
}

/// `268435456`, `256MiB`, `256 MiB`, `1GiB`, `64KiB` or `512B`: binary units only,
/// so `MB` is refused rather than silently read as MiB.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a byte count (e.g. 268435456 or 256MiB)"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use B, KiB, MiB or GiB"
            ));
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} does not fit in 64 bits"))
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
    /// Request head deadline on every protocol.
    pub header_read_timeout_ms: u64,
    /// Bytes drained after an early answer.
    pub lingering_bytes: u64,
    /// Time allowed for that drain.
    pub lingering_time_ms: u64,
}

impl Settings {
    /// Merges flags over the file (if any) over the defaults.
    pub fn resolve(cli: Cli) -> anyhow::Result<Self> {
        let file = match &cli.config {
            Some(path) => load(path)?,
            None => FileConfig::default(),
        };
        let defaults = UploadResponseConfig::default();
        let web = web_service::ServerConfig::default();
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
            memory_budget: match (cli.memory_budget, file.memory_budget) {
                (Some(bytes), _) => bytes,
                (None, Some(size)) => size.bytes().context("memory_budget in the config file")?,
                (None, None) => defaults.memory_budget,
            },
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
            max_streams_per_client: cli
                .max_streams_per_client
                .or(file.max_streams_per_client)
                .unwrap_or(defaults.max_streams_per_client),
            body_idle_timeout_ms: cli
                .body_idle_timeout_ms
                .or(file.body_idle_timeout_ms)
                .unwrap_or(defaults.body_idle_timeout_ms),
            response_idle_timeout_ms: cli
                .response_idle_timeout_ms
                .or(file.response_idle_timeout_ms)
                .unwrap_or(defaults.response_idle_timeout_ms),
        };
        if service.max_streams_per_client == 0 {
            bail!("--max-streams-per-client must be at least 1");
        }
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
            header_read_timeout_ms: cli
                .header_read_timeout_ms
                .or(file.header_read_timeout_ms)
                .unwrap_or_else(|| millis(web.header_read_timeout))
                .max(1),
            lingering_bytes: cli
                .lingering_bytes
                .or(file.lingering_bytes)
                .unwrap_or(web.lingering_bytes),
            lingering_time_ms: cli
                .lingering_time_ms
                .or(file.lingering_time_ms)
                .unwrap_or_else(|| millis(web.lingering_time)),
        })
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
        assert_eq!(parse_bytes("268435456"), Ok(256 << 20));
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes(" 1 GiB "), Ok(1 << 30));
        assert_eq!(parse_bytes("64KiB"), Ok(64 << 10));
        assert!(parse_bytes("256MB").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("99999999999GiB").is_err());
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
