//! `cargo xtask bench web` and `cargo xtask bench upload`: upload throughput
//! and small-request rate of a system under test against loadgen's bare sink,
//! with loopback TCP and TLS baselines measured in the same run.
//!
//! * `web`: web-service's `bench_sink` example (the protocol layer alone).
//! * `upload`: the real `upload-response-server` binary, uploads into its
//!   built-in `/discard` worker, small requests to `/echo` (the whole
//!   ingress: streams, slot cache, worker, response watcher).
//!
//! Every server prints `READY http=ADDR https=ADDR` and follows the sink
//! contract (`crates/loadgen/src/sink/mod.rs`), so the same `loadgen` client
//! runs against each and only the server differs.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::{cargo, root, run, small};

/// Figures of the seed's table (its unit, "MB/s", is not defined further).
const SEED: [(&str, f64); 5] = [
    ("h1", 671.0),
    ("h1-chunked", 782.0),
    ("h2", 668.0),
    ("h3", 226.0),
    ("ws", 902.0),
];

/// The server a bench measures against the bare sink.
struct Subject {
    /// Column name in the report.
    name: &'static str,
    /// `cargo build --release` arguments that build it.
    build: &'static [&'static str],
    /// The built program, under `target/release`.
    program: &'static str,
    /// Arguments before the data-directory flag.
    pre_args: &'static [&'static str],
    /// The flag that takes its data directory.
    dir_flag: &'static str,
    /// WebSocket paths on this server: (uploads, small requests).
    ws_paths: (&'static str, &'static str),
    /// Path of the small requests (on both servers).
    rate_path: &'static str,
    /// Body bytes of one small request.
    rate_body: u64,
    /// Report title and file name.
    title: &'static str,
    file: &'static str,
}

const WEB: Subject = Subject {
    name: "bench_sink",
    build: &["-p", "web-service", "--example", "bench_sink"],
    program: "examples/bench_sink",
    pre_args: &[],
    dir_flag: "--dir",
    ws_paths: ("/ws", "/ws"),
    rate_path: "/discard",
    rate_body: 64,
    title: "Web upload benchmark (loadgen): web-service's bench_sink vs the bare sink",
    file: "web.md",
};

const UPLOAD: Subject = Subject {
    name: "ingress",
    build: &["-p", "upload-response-server"],
    program: "upload-response-server",
    pre_args: &[
        "--http",
        "127.0.0.1:0",
        "--https",
        "127.0.0.1:0",
        "--worker-api",
        "127.0.0.1:0",
    ],
    dir_flag: "--data-dir",
    ws_paths: ("/discard", "/echo"),
    rate_path: "/echo",
    rate_body: 1024,
    title: "Upload benchmark (loadgen): upload-response-server vs the bare sink",
    file: "upload.md",
};

/// How long a sink may take to print its READY line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Options shared by the end-to-end benches (`web`, `upload`, `proxy`).
pub(crate) struct Options {
    /// Bytes of a large transfer.
    pub(crate) bytes: u64,
    /// Runs of each large transfer (best kept).
    pub(crate) repeat: u32,
    /// Connections of the request-rate rows.
    pub(crate) conns: u32,
    /// Requests of each request-rate row.
    pub(crate) requests: u64,
    /// Whether installed peers (nginx, Varnish) are measured too (`proxy`, and
    /// nginx in the small table of `upload`).
    pub(crate) peers: bool,
}

impl Options {
    /// Parses `args` over `defaults`; `--quick` applies `quick`, `--no-peers` is
    /// accepted only where peers exist.
    pub(crate) fn parse(
        args: &[String],
        defaults: Options,
        quick: fn(&mut Options),
        bench: &str,
    ) -> Result<Self, String> {
        let mut options = defaults;
        let peers = options.peers;
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .ok_or_else(|| format!("{name} needs a value"))
                    .and_then(|v| v.parse::<u64>().map_err(|e| format!("{name} {v:?}: {e}")))
            };
            match arg.as_str() {
                "--quick" => quick(&mut options),
                "--bytes" => options.bytes = value("--bytes")?.max(1),
                "--repeat" => options.repeat = positive(value("--repeat")?, "--repeat")?,
                "--conns" => options.conns = positive(value("--conns")?, "--conns")?,
                "--requests" => options.requests = value("--requests")?.max(1),
                "--no-peers" if peers => options.peers = false,
                other => {
                    let no_peers = if peers { ", --no-peers" } else { "" };
                    return Err(format!(
                        "unknown option {other:?} for bench {bench} \
                         (--quick, --bytes N, --repeat K, --conns C, --requests R{no_peers})"
                    ));
                }
            }
        }
        Ok(options)
    }

    /// The `web` and `upload` benches: 1 GiB best of 2, 20,000 requests;
    /// `upload` also takes `--no-peers` (its small table has an nginx column).
    fn uploads(args: &[String], bench: &str) -> Result<Self, String> {
        let defaults = Options {
            bytes: 1 << 30,
            repeat: 2,
            conns: 100,
            requests: 20_000,
            peers: bench == "upload",
        };
        Self::parse(
            args,
            defaults,
            |o| {
                o.bytes = 64 << 20;
                o.requests = 2_000;
            },
            bench,
        )
    }
}

pub(crate) fn positive(value: u64, name: &str) -> Result<u32, String> {
    u32::try_from(value)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{name} must be between 1 and {}", u32::MAX))
}

/// A sink process; dropping it ends it (stdin EOF, then kill).
struct SinkProcess {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    /// `host:port` of the cleartext listener.
    http: String,
    https_port: u16,
    ca: PathBuf,
    ws_paths: (&'static str, &'static str),
}

impl SinkProcess {
    fn start(
        name: &'static str,
        program: &Path,
        pre_args: &[&str],
        (dir_flag, dir): (&str, &Path),
        ws_paths: (&'static str, &'static str),
    ) -> Result<Self, String> {
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let log = dir.join("stderr.log");
        let stderr =
            fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let mut child = Command::new(program)
            .args(pre_args)
            .arg(dir_flag)
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let mut sink = SinkProcess {
            name,
            child,
            stdin,
            http: String::new(),
            https_port: 0,
            ca: dir.join("cert.pem"),
            ws_paths,
        };
        let stdout = stdout.ok_or("sink stdout was not captured")?;
        let fields = read_ready(name, stdout, &log)?;
        sink.https_port = https_port(&fields)
            .ok_or_else(|| format!("{name}: cannot read the https port from {fields:?}"))?;
        sink.http = fields
            .split_whitespace()
            .find_map(|f| f.strip_prefix("http="))
            .ok_or_else(|| format!("{name}: cannot read the http address from {fields:?}"))?
            .to_string();
        eprintln!("xtask: {name} ready, https port {}", sink.https_port);
        Ok(sink)
    }

    /// `loadgen COMMAND` arguments aiming `proto` at `path` of this sink over
    /// TLS (WebSocket goes to the sink's own WebSocket paths).
    fn args(&self, command: &str, proto: &str, path: &str) -> Vec<String> {
        let port = self.https_port;
        let url = match (proto, command) {
            ("ws", "upload") => format!("wss://localhost:{port}{}", self.ws_paths.0),
            ("ws", _) => format!("wss://localhost:{port}{}", self.ws_paths.1),
            _ => format!("https://localhost:{port}{path}"),
        };
        let ca = self.ca.display().to_string();
        [command, "--proto", proto, "--url", &url, "--ca", &ca]
            .map(String::from)
            .to_vec()
    }
}

impl Drop for SinkProcess {
    fn drop(&mut self) {
        stop(self.name, &mut self.child, self.stdin.take());
    }
}

/// Ends a server: end of its stdin, then SIGTERM (every server here ends on
/// one or the other), then a kill after 5 s.
pub(crate) fn stop(name: &str, child: &mut Child, stdin: Option<ChildStdin>) {
    drop(stdin);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!("xtask: {name} did not stop on SIGTERM, killing it");
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for the `READY ...` line on a server's stdout and returns what follows
/// `READY `; `log` is where its stderr goes, named in the error.
pub(crate) fn read_ready(name: &str, stdout: ChildStdout, log: &Path) -> Result<String, String> {
    let (tx, rx) = mpsc::channel();
    // Keeps reading after READY so a chatty server never blocks on a full pipe.
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // After READY nobody listens: the line is dropped, reading goes on.
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).map_err(|_| {
            format!(
                "{name} exited or printed no READY line within {READY_TIMEOUT:?} (see {})",
                log.display()
            )
        })?;
        if let Some(rest) = line.strip_prefix("READY ") {
            return Ok(rest.to_string());
        }
    }
}

/// `http=A https=HOST:PORT` → PORT.
fn https_port(fields: &str) -> Option<u16> {
    let addr = fields
        .split_whitespace()
        .find_map(|f| f.strip_prefix("https="))?;
    addr.rsplit(':').next()?.parse().ok()
}

/// Runs loadgen and returns the JSON line it ends with.
pub(crate) fn loadgen(bin: &Path, args: &[String]) -> Result<String, String> {
    eprintln!("xtask: loadgen {}", args.join(" "));
    let output = Command::new(bin)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines().filter(|l| !l.starts_with('{')) {
        eprintln!("    {line}");
    }
    if !output.status.success() {
        return Err(format!("loadgen {} failed with {}", args[0], output.status));
    }
    stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .map(str::to_string)
        .ok_or_else(|| format!("loadgen {} printed no JSON line", args[0]))
}

/// The number after `"key":` in a flat JSON line written by loadgen (the first
/// one if it is an array).
pub(crate) fn field(json: &str, key: &str) -> Option<f64> {
    let rest = after_key(json, key)?;
    let rest = rest.strip_prefix('[').unwrap_or(rest);
    let end = rest.find([',', '}', ']']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// What follows `"key":` in a flat JSON line, leading spaces skipped.
pub(crate) fn after_key<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let start = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    Some(json[start..].trim_start())
}

fn cell(value: &Result<f64, String>) -> String {
    match value {
        Ok(v) => format!("{v:.0}"),
        Err(_) => "failed".into(),
    }
}

/// One protocol's upload figures, one entry per sink.
struct UploadRow {
    proto: &'static str,
    cells: Vec<(&'static str, Result<f64, String>)>,
    /// Peak RSS growth of each sink process during its uploads, MiB.
    growth: Vec<(&'static str, Option<f64>)>,
}

/// A `/proc/PID/status` field in KiB (Linux).
pub(crate) fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Peak RSS growth of `pid` while `run` runs, in MiB: the peak (VmHWM) is
/// reset to the current RSS first (`clear_refs` mode 5), so each protocol's
/// uploads are measured on their own. `None` where Linux does not offer it.
fn peak_growth<T>(pid: u32, run: impl FnOnce() -> T) -> (T, Option<f64>) {
    let reset = fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let before = status_kib(pid, "VmRSS:");
    let out = run();
    let peak = status_kib(pid, "VmHWM:");
    let growth = match (reset, before, peak) {
        (true, Some(b), Some(p)) => Some(p.saturating_sub(b) as f64 / 1024.0),
        _ => None,
    };
    (out, growth)
}

struct RateRow {
    sink: &'static str,
    proto: &'static str,
    requests: u64,
    outcome: Result<String, String>,
}

/// `cargo xtask bench web|upload [options]`.
pub fn bench(which: &str, args: &[String]) -> Result<(), String> {
    let subject = match which {
        "web" => &WEB,
        "upload" => &UPLOAD,
        other => {
            return Err(format!(
                "unknown end-to-end bench {other:?}: use web or upload"
            ));
        }
    };
    let options = Options::uploads(args, which)?;
    let root = root();
    let out_dir = root.join("target").join("bench");
    fs::create_dir_all(&out_dir).map_err(|e| format!("create {}: {e}", out_dir.display()))?;

    let mut build = cargo();
    build.args(["build", "--release", "-p", "loadgen", "--bin", "loadgen"]);
    run(build)?;
    let loadgen_bin = root.join("target").join("release").join("loadgen");

    let mut build = cargo();
    build.args(["build", "--release"]).args(subject.build);
    run(build)?;
    let program = root.join("target").join("release").join(subject.program);
    let sinks = vec![
        SinkProcess::start(
            subject.name,
            &program,
            subject.pre_args,
            (subject.dir_flag, &out_dir.join(subject.name)),
            subject.ws_paths,
        )?,
        SinkProcess::start(
            "bare",
            &loadgen_bin,
            &["sink"],
            ("--dir", &out_dir.join("bare-sink")),
            ("/ws", "/ws"),
        )?,
    ];

    let bytes = options.bytes.to_string();
    let baseline = |stage: &str| -> Result<(f64, f64), String> {
        eprintln!("xtask: loopback baselines ({stage})");
        let json = loadgen(
            &loadgen_bin,
            &["tcp-baseline".into(), "--bytes".into(), bytes.clone()],
        )?;
        match (field(&json, "tcp_mib_s"), field(&json, "tls_mib_s")) {
            (Some(tcp), Some(tls)) => Ok((tcp, tls)),
            _ => Err(format!("unreadable baseline line {json}")),
        }
    };
    let before = baseline("before")?;

    // Per protocol, each sink in turn, so slow drift of a shared machine hits
    // both columns alike.
    let mut uploads = Vec::new();
    for (proto, _) in SEED {
        let (mut cells, mut growth) = (Vec::new(), Vec::new());
        for sink in &sinks {
            let mut args = sink.args("upload", proto, "/discard");
            args.extend(
                ["--bytes", &bytes, "--repeat", &options.repeat.to_string()].map(String::from),
            );
            let (outcome, grew) = peak_growth(sink.child.id(), || {
                loadgen(&loadgen_bin, &args).and_then(|json| {
                    field(&json, "best_mib_s")
                        .ok_or_else(|| format!("unreadable upload line {json}"))
                })
            });
            if let Err(e) = &outcome {
                eprintln!("xtask: {} {proto}: {e}", sink.name);
            }
            cells.push((sink.name, outcome));
            growth.push((sink.name, grew));
        }
        uploads.push(UploadRow {
            proto,
            cells,
            growth,
        });
    }
    let after = baseline("after")?;

    let mut rates = Vec::new();
    for proto in ["h1", "h2", "h3", "ws"] {
        // A WebSocket session carries one upload under the sink contract, so its
        // "request" includes a TCP + TLS + upgrade handshake: fewer of them.
        let requests = if proto == "ws" {
            (options.requests / 10).max(1)
        } else {
            options.requests
        };
        for sink in &sinks {
            let mut args = sink.args("rate", proto, subject.rate_path);
            let (conns, count) = (options.conns.to_string(), requests.to_string());
            let body = subject.rate_body.to_string();
            // One loopback source address per 25 connections: the ingress
            // limits each client address to 64 streams (`max_streams_per_client`),
            // and 100 connections are meant as 100 clients, not one over its limit.
            let sources = options.conns.div_ceil(25).min(255).to_string();
            args.extend(
                [
                    "--sources",
                    &sources,
                    "--conns",
                    &conns,
                    "--requests",
                    &count,
                    "--seconds",
                    "60",
                    "--body-bytes",
                    &body,
                ]
                .map(String::from),
            );
            let outcome = loadgen(&loadgen_bin, &args);
            rates.push(RateRow {
                sink: sink.name,
                proto,
                requests,
                outcome,
            });
        }
    }
    let mut report = render(subject, &options, &uploads, before, after, &rates);
    if which == "upload" {
        // The small table starts an ingress of its own (without the access
        // log) and keeps only the bare sink of these two.
        let mut sinks = sinks;
        let bare = sinks.pop().ok_or("the bare sink is gone")?;
        drop(sinks);
        // The remote-worker rows run worker-client's echo example.
        let mut build = cargo();
        build.args([
            "build",
            "--release",
            "-p",
            "worker-client",
            "--example",
            "remote_echo",
        ]);
        run(build)?;
        let remote_echo = root
            .join("target")
            .join("release")
            .join("examples")
            .join("remote_echo");
        let endpoint = small::Endpoint {
            name: "bare",
            http: bare.http.clone(),
            https_port: bare.https_port,
            ca: bare.ca.clone(),
            pid: bare.child.id(),
            counts_body: true,
        };
        report.push_str(&small::table(
            &loadgen_bin,
            &program,
            &remote_echo,
            &out_dir,
            endpoint,
            &options,
        ));
        drop(bare);
    } else {
        drop(sinks);
    }
    println!("{report}");
    let path = out_dir.join(subject.file);
    fs::write(&path, &report).map_err(|e| format!("write {}: {e}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}

fn render(
    subject: &Subject,
    options: &Options,
    uploads: &[UploadRow],
    before: (f64, f64),
    after: (f64, f64),
    rates: &[RateRow],
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", subject.title);
    let _ = writeln!(md, "- machine: {}", machine());
    let _ = writeln!(
        md,
        "- upload: {} bytes per run over TLS on loopback, best of {} run(s), one connection per run",
        options.bytes, options.repeat
    );
    let _ = writeln!(
        md,
        "- MiB/s = 2^20 bytes per second; ratio = {} / bare sink",
        subject.name
    );
    let _ = writeln!(
        md,
        "\n| protocol | {} MiB/s | bare sink MiB/s | ratio | bare / TLS baseline | seed MB/s | {} peak RSS growth MiB | bare peak RSS growth MiB |",
        subject.name, subject.name
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    let tls_ceiling = before.1.max(after.1);
    let mut failures = Vec::new();
    for UploadRow {
        proto,
        cells,
        growth,
    } in uploads
    {
        let grew = |name: &str| {
            growth
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, g)| *g)
                .map_or("n/a".into(), |g| format!("{g:.0}"))
        };
        let find = |name: &str| cells.iter().find(|(n, _)| *n == name).map(|(_, r)| r);
        let bench = find(subject.name);
        let bare = find("bare");
        let ratio = match (bench, bare) {
            (Some(Ok(b)), Some(Ok(r))) if *r > 0.0 => format!("{:.2}", b / r),
            _ => "n/a".into(),
        };
        let share = match bare {
            Some(Ok(r)) if tls_ceiling > 0.0 => format!("{:.0} %", 100.0 * r / tls_ceiling),
            _ => "n/a".into(),
        };
        let seed = SEED
            .iter()
            .find(|(p, _)| p == proto)
            .map_or(0.0, |(_, s)| *s);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {ratio} | {share} | {seed:.0} | {} | {} |",
            label(proto),
            bench.map_or("n/a".into(), cell),
            bare.map_or("n/a".into(), cell),
            grew(subject.name),
            grew("bare"),
        );
        for (sink, outcome) in cells {
            if let Err(e) = outcome {
                failures.push(format!("{sink} {proto}: {e}"));
            }
        }
    }
    let _ = writeln!(
        md,
        "\nBaselines, one connection, same chunking: TCP loopback {:.0} / {:.0} MiB/s, \
         TLS loopback (rustls, ring) {:.0} / {:.0} MiB/s (before / after the uploads).",
        before.0, after.0, before.1, after.1
    );
    let _ = writeln!(
        md,
        "\n## Small requests ({} connections, {}-byte POST to {}, full round trip)\n",
        options.conns, subject.rate_body, subject.rate_path
    );
    let _ = writeln!(
        md,
        "| protocol | sink | requests | ok | errors | req/s | p50 ms | p99 ms |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|");
    for row in rates {
        match &row.outcome {
            Ok(json) => {
                let f = |k: &str| field(json, k).unwrap_or(f64::NAN);
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} |",
                    label(row.proto),
                    row.sink,
                    row.requests,
                    f("ok"),
                    f("errors"),
                    f("req_s"),
                    f("p50_ms"),
                    f("p99_ms")
                );
            }
            Err(e) => {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | failed | | | | |",
                    label(row.proto),
                    row.sink,
                    row.requests
                );
                failures.push(format!("{} rate {}: {e}", row.sink, row.proto));
            }
        }
    }
    let _ = writeln!(
        md,
        "\nWS: one TLS connection and upgrade per request (the sink closes after its reply)."
    );
    if !failures.is_empty() {
        let _ = writeln!(md, "\n## Failures\n");
        for failure in failures {
            let _ = writeln!(md, "- {failure}");
        }
    }
    md
}

fn label(proto: &str) -> &'static str {
    match proto {
        "h1" => "H1 (Content-Length)",
        "h1-chunked" => "H1 chunked",
        "h2" => "H2",
        "h3" => "H3",
        "ws" => "WSS",
        _ => "?",
    }
}

/// `N cores, CPU model` from the standard library and /proc/cpuinfo.
pub(crate) fn machine() -> String {
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {model}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ports_and_fields() {
        assert_eq!(
            https_port("http=127.0.0.1:1 https=127.0.0.1:8443"),
            Some(8443)
        );
        assert_eq!(https_port("https=[::1]:9"), Some(9));
        assert_eq!(https_port("http=127.0.0.1:1"), None);
        let json = r#"{"kind":"upload","best_mib_s":12.500,"status":200}"#;
        assert_eq!(field(json, "best_mib_s"), Some(12.5));
        assert_eq!(field(json, "status"), Some(200.0));
        assert_eq!(field(json, "kind"), None);
        assert_eq!(field(json, "missing"), None);
    }

    #[test]
    fn options_parse_and_refuse_nonsense() {
        let parse = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            Options::uploads(&args, "web")
        };
        let quick = parse(&["--quick"]).unwrap();
        assert_eq!(quick.bytes, 64 << 20);
        assert!(parse(&["--repeat", "0"]).is_err());
        assert!(parse(&["--bytes"]).is_err());
        assert!(parse(&["--frobnicate"]).is_err());
        assert!(parse(&["--no-peers"]).is_err(), "web has no peers");
        let upload = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            Options::uploads(&args, "upload")
        };
        assert!(upload(&[]).unwrap().peers);
        assert!(!upload(&["--no-peers"]).unwrap().peers);
    }
}
