//! The `small` table of `cargo xtask bench upload`: the per-request cost of
//! the ingress (`upload-response-server`, release build, its defaults plus
//! `--no-access-log`) beside the bare sink (`loadgen sink`) and, when
//! installed, nginx answering `return 200`, all driven by the same `loadgen`
//! in the same run, each server in turn per row so that drift of a shared
//! machine hits every column alike.
//!
//! Rows: keep-alive 1 KiB POSTs at 100 and 10 connections (cleartext and TLS
//! HTTP/1.1), a new connection per request, the memory of 4096 idle
//! keep-alive connections, and a large TLS upload with the server's CPU time.
//!
//! nginx runs in the foreground on a configuration written under
//! `target/bench/nginx-small`, on loopback ports picked here, with the
//! ingress's own certificate and key, so the TLS rows compare the same
//! certificate. Its `return 200 "$content_length\n"` answers as soon as the
//! head is in (before the body) and then reads and discards the body to keep
//! the connection; loadgen times an upload until its last byte has gone out as
//! well as until the answer, and the table shows the bytes each server read
//! (`rchar`) so a server that did not read the body cannot look fast.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::peers::{Server, find_program, free_addr, nginx_workers, start_nginx};
use crate::web::{Options, field, loadgen};

/// Idle connections of the memory row.
const HOLD: u32 = 4096;
/// Loopback source addresses the held connections spread over: the ingress
/// admits at most 64 requests in flight per client address, and 4096
/// connections are meant as many clients, not one.
const HOLD_SOURCES: u32 = 64;
/// How long `loadgen hold` may take to open its connections.
const HOLD_TIMEOUT: Duration = Duration::from_secs(120);
/// Body of every small request.
const BODY: u64 = 1024;
/// Connections of the new-connection rows: below the per-address limit, and
/// enough to keep two cores busy.
const NEW_CONN_WORKERS: u32 = 10;

/// One server of the table, however it was started.
pub(crate) struct Endpoint {
    pub(crate) name: &'static str,
    /// `host:port` of the cleartext listener.
    pub(crate) http: String,
    /// Port of the TLS listener (reached as `localhost`, the certificate's name).
    pub(crate) https_port: u16,
    /// The certificate to trust.
    pub(crate) ca: PathBuf,
    /// The process; its children (nginx workers) are counted with it.
    pub(crate) pid: u32,
    /// Whether its `/discard` answers the body bytes it read (ours and the
    /// sink do, and loadgen fails an upload whose count is short); nginx only
    /// echoes the announced length, so its reading is checked by `rchar`.
    pub(crate) counts_body: bool,
}

impl Endpoint {
    fn url(&self, tls: bool, path: &str) -> String {
        if tls {
            format!("https://localhost:{}{path}", self.https_port)
        } else {
            format!("http://{}{path}", self.http)
        }
    }

    /// `loadgen COMMAND` arguments aimed at `path` over HTTP/1.1.
    fn args(&self, command: &str, tls: bool, path: &str) -> Vec<String> {
        let mut args = [command, "--proto", "h1", "--url", &self.url(tls, path)]
            .map(String::from)
            .to_vec();
        if tls {
            args.extend(["--ca".into(), self.ca.display().to_string()]);
        }
        args
    }
}

/// A table cell: a measured value (with a remark, e.g. errors seen), an
/// error, or nothing because the server is not part of this run.
enum Cell {
    Value(f64, Option<String>),
    Failed(String),
    Skipped,
}

/// Values of one measurement, each with an optional remark, or why it failed.
type Measured = Result<Vec<(f64, Option<String>)>, String>;

struct Row {
    label: String,
    decimals: usize,
    /// Ours, bare sink, nginx.
    cells: [Cell; 3],
}

/// A column of the table: a server to measure, one that failed to start, or
/// one left out of this run.
enum Column {
    Ready(Endpoint),
    Broken(String),
    Absent,
}

/// The section for the upload report: starts our ingress (no access log) and
/// nginx, measures every row against them and `bare`, and stops them again.
pub(crate) fn table(
    loadgen_bin: &Path,
    ingress_bin: &Path,
    remote_echo_bin: &Path,
    out_dir: &Path,
    bare: Endpoint,
    options: &Options,
) -> String {
    let mut notes = Vec::new();
    let (ours_server, ours_ca) = match start_ours(ingress_bin, &out_dir.join("ingress-small")) {
        Ok(started) => started,
        Err(e) => return format!("\n## Small requests (per-request cost)\n\nnot measured: {e}\n"),
    };
    let ours = match ready_port(&ours_server.ready, "https=") {
        Some(https_port) => Column::Ready(Endpoint {
            name: "ingress",
            http: ours_server.addr.clone(),
            https_port,
            ca: ours_ca.clone(),
            pid: ours_server.child.id(),
            counts_body: true,
        }),
        None => Column::Broken(format!(
            "no https= in its READY line {:?}",
            ours_server.ready
        )),
    };
    let mut nginx_server = None;
    let nginx = if !options.peers {
        notes.push("nginx: skipped (--no-peers)".to_string());
        Column::Absent
    } else {
        match find_program("nginx") {
            None => {
                notes.push(
                    "nginx: not installed (scripts/install-bench-peers.sh installs it)".into(),
                );
                Column::Absent
            }
            Some(program) => match start_peer(&program, &out_dir.join("nginx-small"), &ours_ca) {
                Ok((server, https_port)) => {
                    let endpoint = Endpoint {
                        name: "nginx",
                        http: server.addr.clone(),
                        https_port,
                        ca: ours_ca.clone(),
                        pid: server.child.id(),
                        counts_body: false,
                    };
                    nginx_server = Some(server);
                    Column::Ready(endpoint)
                }
                Err(e) => Column::Broken(format!("nginx did not start: {e}")),
            },
        }
    };
    let setup = match (&nginx_server, &nginx) {
        (Some(server), _) => server.setup.clone(),
        (None, Column::Broken(e)) => e.clone(),
        _ => "not measured".into(),
    };
    // Every row runs against these three, in this order.
    let columns = [ours, Column::Ready(bare), nginx];
    let each = |measure: &dyn Fn(&Endpoint) -> Measured, metrics: usize| -> Vec<[Cell; 3]> {
        let mut measured = columns
            .iter()
            .map(|column| {
                let cells: Vec<Cell> = match column {
                    Column::Absent => Vec::new(),
                    Column::Broken(e) => (0..metrics).map(|_| Cell::Failed(e.clone())).collect(),
                    Column::Ready(endpoint) => match measure(endpoint) {
                        Ok(values) => values
                            .into_iter()
                            .map(|(v, remark)| Cell::Value(v, remark))
                            .collect(),
                        Err(e) => {
                            eprintln!("xtask: small {}: {e}", endpoint.name);
                            (0..metrics).map(|_| Cell::Failed(e.clone())).collect()
                        }
                    },
                };
                cells.into_iter()
            })
            .collect::<Vec<_>>();
        (0..metrics)
            .map(|_| std::array::from_fn(|c| measured[c].next().unwrap_or(Cell::Skipped)))
            .collect()
    };

    let mut rows = Vec::new();
    let keep_alive = options.requests;
    for (conns, requests) in [(100u32, keep_alive), (10, keep_alive)] {
        for tls in [false, true] {
            let what = format!(
                "1 KiB POST, {conns} keep-alive conns, {}",
                if tls { "TLS" } else { "cleartext" }
            );
            let sources = conns.div_ceil(25);
            let cells = each(
                &|e| {
                    rate(
                        loadgen_bin,
                        e,
                        "/discard",
                        tls,
                        conns,
                        sources,
                        requests,
                        false,
                    )
                },
                3,
            );
            push_rows(
                &mut rows,
                &what,
                ["req/s", "p50 ms", "p99 ms"],
                [0, 2, 2],
                cells,
            );
        }
    }
    let new_conns = (options.requests / 2).max(1);
    for tls in [false, true] {
        let what = format!(
            "new connection per 1 KiB POST, {NEW_CONN_WORKERS} at once, {}",
            if tls { "TLS" } else { "cleartext" }
        );
        let cells = each(
            &|e| {
                rate(
                    loadgen_bin,
                    e,
                    "/discard",
                    tls,
                    NEW_CONN_WORKERS,
                    0,
                    new_conns,
                    true,
                )
            },
            3,
        );
        push_rows(
            &mut rows,
            &what,
            ["conn/s", "p50 ms", "p99 ms"],
            [0, 2, 2],
            cells,
        );
    }
    let cells = each(&|e| hold(loadgen_bin, e), 2);
    push_rows(
        &mut rows,
        &format!("{HOLD} idle keep-alive conns, cleartext"),
        ["bytes/conn (VmRSS growth)", "VmRSS while held, MiB"],
        [0, 1],
        cells,
    );
    let cells = each(&|e| upload(loadgen_bin, e, options), 3);
    push_rows(
        &mut rows,
        &format!("{} MiB TLS upload", options.bytes >> 20),
        [
            "MiB/s",
            "server CPU s/GB",
            "body MiB the server read per upload",
        ],
        [0, 2, 0],
        cells,
    );
    drop(nginx_server);
    let remote = match &columns[0] {
        Column::Ready(ours) => remote_table(
            loadgen_bin,
            remote_echo_bin,
            ours,
            &ours_server,
            &out_dir.join("ingress-small"),
            options.requests,
        ),
        Column::Broken(e) => format!("\nnot measured: {e}\n"),
        Column::Absent => String::new(),
    };
    drop(ours_server);

    // The servers keep the soft limit they inherit (nginx raises its workers'
    // through worker_rlimit_nofile), so a low one is reported, not hidden.
    if let Some(limit) = open_files_limit().filter(|l| *l < u64::from(HOLD) + 1024) {
        notes.push(format!(
            "the servers inherit RLIMIT_NOFILE {limit} from this shell: raise `ulimit -n` \
             above {} for the idle-connection row (loadgen raises its own soft limit)",
            HOLD + 1024
        ));
    }
    let mut md = render(&rows, options, &setup, &notes);
    md.push_str("\n### Remote workers (worker API)\n");
    md.push_str(&remote);
    md
}

/// Most jobs the remote worker runs at once (as the in-process echo worker
/// has no bound, enough for every connection).
const REMOTE_CONCURRENCY: &str = "128";

/// A remote worker process; dropping it stops it.
struct RemoteWorker(std::process::Child);

impl Drop for RemoteWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// 1 KiB echo round trips on the same ingress, through its in-process
/// `/echo` worker and through worker-client's `remote_echo` example over
/// the worker API (client defaults: batched claims, inline bodies, batched
/// responses), 100 keep-alive connections, same run.
fn remote_table(
    loadgen_bin: &Path,
    remote_echo_bin: &Path,
    ours: &Endpoint,
    server: &Server,
    dir: &Path,
    requests: u64,
) -> String {
    let started = (|| {
        let api = server
            .ready
            .split_whitespace()
            .find_map(|f| f.strip_prefix("worker_api="))
            .ok_or_else(|| format!("no worker_api= in the READY line {:?}", server.ready))?;
        let token_file = dir.join("worker-token");
        let token = fs::read_to_string(&token_file)
            .map_err(|e| format!("read {}: {e}", token_file.display()))?;
        let log = dir.join("remote-echo.log");
        let stderr =
            fs::File::create(&log).map_err(|e| format!("create {}: {e}", log.display()))?;
        let child = Command::new(remote_echo_bin)
            .arg(format!("http://{api}"))
            .env("UR_WORKER_TOKEN", token.trim())
            .env("UR_CONCURRENCY", REMOTE_CONCURRENCY)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", remote_echo_bin.display()))?;
        let worker = RemoteWorker(child);
        // Ready once one round trip goes through it.
        for _ in 0..100 {
            if rate(loadgen_bin, ours, "/remote-echo", false, 1, 0, 1, false).is_ok() {
                return Ok(worker);
            }
            thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "the remote worker never answered (see {})",
            log.display()
        ))
    })();
    let worker = match started {
        Ok(worker) => worker,
        Err(e) => return format!("\nnot measured: {}\n", sanitize(&e)),
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "\n- the ingress above; in-process: its built-in `/echo`; remote: worker-client's \
         `remote_echo` example (release, defaults, UR_CONCURRENCY={REMOTE_CONCURRENCY}) on the \
         worker API over HTTP/1.1, on the same machine; POSTs to `/remote-echo`\n\
         - client: loadgen, HTTP/1.1, {requests} requests per cell, 1 KiB bodies echoed back\n\
         \n| row | in-process | remote | remote / in-process |\n|---|---:|---:|---:|"
    );
    for tls in [false, true] {
        let what = format!(
            "1 KiB echo, 100 keep-alive conns, {}",
            if tls { "TLS" } else { "cleartext" }
        );
        let measure = |path: &str| rate(loadgen_bin, ours, path, tls, 100, 4, requests, false);
        let (local, remote) = (measure("/echo"), measure("/remote-echo"));
        for (i, (metric, decimals)) in [("req/s", 0), ("p50 ms", 2), ("p99 ms", 2)]
            .into_iter()
            .enumerate()
        {
            let cell = |m: &Measured| match m {
                Ok(values) => {
                    let (v, remark) = &values[i];
                    let star = if remark.is_some() { " *" } else { "" };
                    (format!("{v:.decimals$}{star}"), Some(*v))
                }
                Err(e) => (format!("error: {}", sanitize(e)), None),
            };
            let ((l, lv), (r, rv)) = (cell(&local), cell(&remote));
            let ratio = match (lv, rv) {
                (Some(l), Some(r)) if l > 0.0 => format!("{:.2}", r / l),
                _ => "-".into(),
            };
            let _ = writeln!(md, "| {what}: {metric} | {l} | {r} | {ratio} |");
        }
        for (who, m) in [("in-process", &local), ("remote", &remote)] {
            if let Ok(values) = m
                && let Some(remark) = &values[0].1
            {
                let _ = writeln!(md, "- {what} / {who}: {}", sanitize(remark));
            }
        }
    }
    drop(worker);
    md
}

/// The ingress as the upload bench runs it, but without the access log (nginx
/// runs with `access_log off`): returns it and its certificate.
fn start_ours(program: &Path, dir: &Path) -> Result<(Server, PathBuf), String> {
    fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let mut cmd = Command::new(program);
    cmd.args([
        "--http",
        "127.0.0.1:0",
        "--https",
        "127.0.0.1:0",
        "--worker-api",
        "127.0.0.1:0",
        "--no-access-log",
        "--data-dir",
    ])
    .arg(dir);
    let server = Server::start_ready(
        "ingress",
        cmd,
        dir,
        "upload-response-server defaults, --no-access-log".into(),
    )?;
    let cert = dir.join("cert.pem");
    if !cert.is_file() {
        return Err(format!("the ingress wrote no {}", cert.display()));
    }
    Ok((server, cert))
}

/// nginx answering every request `200` with the announced body length (what
/// our `/discard` answers), cleartext and TLS with the ingress's certificate.
fn start_peer(program: &Path, dir: &Path, ours_ca: &Path) -> Result<(Server, u16), String> {
    fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let key = ours_ca.with_file_name("key.pem");
    let (http, https) = (free_addr()?, free_addr()?);
    // keepalive_requests: nginx closes a connection after 1000 requests by
    // default, which loadgen would count as an error; lingering_time bounds
    // how long nginx reads and discards a body it answered early (30 s by
    // default, less than a large upload may take on a busy machine).
    let conf = format!(
        "    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_max_body_size 0;
    lingering_time 600s;
    server {{
        listen {http} backlog=4096;
        listen {https} ssl backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{ return 200 \"$content_length\\n\"; }}
    }}
",
        cert = ours_ca.display(),
        key = key.display(),
    );
    let setup = format!(
        "nginx {} workers (`worker_processes auto`), `return 200 \"$content_length\\n\"`, \
         access_log off, worker_connections 8192, the ingress's certificate",
        nginx_workers()
    );
    let server = start_nginx("nginx", program, dir, 8192, &conf, http, setup)?;
    Ok((server, https.port()))
}

/// The port after `key` (`https=`) in a READY line.
fn ready_port(fields: &str, key: &str) -> Option<u16> {
    let addr = fields
        .split_whitespace()
        .find_map(|f| f.strip_prefix(key))?;
    addr.rsplit(':').next()?.parse().ok()
}

fn push_rows<const N: usize>(
    rows: &mut Vec<Row>,
    what: &str,
    metrics: [&str; N],
    decimals: [usize; N],
    cells: Vec<[Cell; 3]>,
) {
    for ((metric, decimals), cells) in metrics.into_iter().zip(decimals).zip(cells) {
        rows.push(Row {
            label: format!("{what}: {metric}"),
            decimals,
            cells,
        });
    }
}

/// `loadgen rate`: (rate, p50 ms, p99 ms), errors noted on the rate.
#[allow(clippy::too_many_arguments)]
fn rate(
    bin: &Path,
    server: &Endpoint,
    path: &str,
    tls: bool,
    conns: u32,
    sources: u32,
    requests: u64,
    new_conn: bool,
) -> Measured {
    let mut args = server.args("rate", tls, path);
    args.extend(
        [
            "--conns",
            &conns.to_string(),
            "--sources",
            &sources.to_string(),
            "--requests",
            &requests.to_string(),
            "--seconds",
            "60",
            "--body-bytes",
            &BODY.to_string(),
        ]
        .map(String::from),
    );
    if new_conn {
        args.push("--new-conn".into());
    }
    let json = loadgen(bin, &args)?;
    let get = |k: &str| field(&json, k).ok_or_else(|| format!("no {k} in {json}"));
    let (ok, errors) = (get("ok")?, get("errors")?);
    if ok == 0.0 {
        return Err(format!("no request succeeded: {}", first_error(&json)));
    }
    let remark = (errors > 0.0).then(|| format!("{errors:.0} errors: {}", first_error(&json)));
    Ok(vec![
        (get("req_s")?, remark),
        (get("p50_ms")?, None),
        (get("p99_ms")?, None),
    ])
}

fn first_error(json: &str) -> String {
    crate::web::after_key(json, "first_error")
        .and_then(|rest| rest.strip_prefix('"'))
        .map(|rest| rest.split('"').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// Opens `HOLD` idle connections with `loadgen hold` and returns the growth of
/// the server's resident memory per held connection.
fn hold(bin: &Path, server: &Endpoint) -> Measured {
    let mut args = server.args("hold", false, "/discard");
    args.extend(
        [
            "--conns",
            &HOLD.to_string(),
            "--sources",
            &HOLD_SOURCES.to_string(),
            "--body-bytes",
            &BODY.to_string(),
            "--seconds",
            "300",
        ]
        .map(String::from),
    );
    let before = tree_kib(server.pid, "VmRSS:")?;
    eprintln!("xtask: loadgen {}", args.join(" "));
    let mut child = Command::new(bin)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdin = child.stdin.take();
    let stdout = child
        .stdout
        .take()
        .ok_or("loadgen hold: stdout not captured")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = loop {
        match rx.recv_timeout(HOLD_TIMEOUT) {
            Ok(line) if line.starts_with('{') => break Ok(line),
            Ok(line) => eprintln!("    {line}"),
            Err(_) => {
                break Err(format!(
                    "loadgen hold exited or printed nothing within {HOLD_TIMEOUT:?}"
                ));
            }
        }
    };
    // Every request was answered already; a moment lets deferred
    // per-connection work (buffers released after the answer) settle.
    let during = line.as_ref().map_err(String::clone).and_then(|_| {
        thread::sleep(Duration::from_millis(500));
        tree_kib(server.pid, "VmRSS:")
    });
    // End of stdin lets loadgen close the connections and exit.
    drop(stdin);
    let _ = child.wait();
    let (line, during) = (line?, during?);
    let held = field(&line, "held").ok_or_else(|| format!("no held count in {line}"))?;
    if held < f64::from(HOLD) {
        return Err(format!(
            "only {held:.0} of {HOLD} connections held: {}",
            first_error(&line)
        ));
    }
    let grown = during.saturating_sub(before) as f64 * 1024.0;
    Ok(vec![(grown / held, None), (during as f64 / 1024.0, None)])
}

/// A large TLS upload to `/discard`: best MiB/s, the server's CPU seconds per
/// 10^9 body bytes, and the bytes it read meanwhile.
fn upload(bin: &Path, server: &Endpoint, options: &Options) -> Measured {
    let mut args = server.args("upload", true, "/discard");
    args.extend(
        [
            "--bytes",
            &options.bytes.to_string(),
            "--repeat",
            &options.repeat.to_string(),
        ]
        .map(String::from),
    );
    let (cpu, read) = (tree_cpu(server.pid)?, tree_rchar(server.pid)?);
    let json = loadgen(bin, &args)?;
    let (cpu, read) = (tree_cpu(server.pid)? - cpu, tree_rchar(server.pid)? - read);
    let best =
        field(&json, "best_mib_s").ok_or_else(|| format!("unreadable upload line {json}"))?;
    let body = options.bytes as f64 * f64::from(options.repeat);
    let mib = |bytes: f64| bytes / (1 << 20) as f64;
    let taken = if server.counts_body {
        // loadgen failed the run unless this count equals the bytes sent.
        let counted = field(&json, "body")
            .or_else(|| crate::web::after_key(&json, "body").and_then(quoted_number))
            .ok_or_else(|| format!("no count in the answer {json}"))?;
        (mib(counted), Some("(its answer's count)".to_string()))
    } else {
        let per_run = read as f64 / f64::from(options.repeat);
        let remark = if per_run < options.bytes as f64 {
            "rchar: read less than the body: it did not take every byte"
        } else {
            "(rchar, TLS records included)"
        };
        (mib(per_run), Some(remark.to_string()))
    };
    Ok(vec![(best, None), (cpu / (body / 1e9), None), taken])
}

/// `"123\n"` (a JSON string holding a count, as loadgen writes the answer) → 123.
fn quoted_number(rest: &str) -> Option<f64> {
    let inner = rest.strip_prefix('"')?;
    let end = inner.find('"')?;
    inner[..end].trim_end_matches("\\n").trim().parse().ok()
}

/// `pid` and its children (nginx's workers).
fn tree(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    let Ok(entries) = fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if stat_fields(child).and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()))
            == Some(pid)
        {
            pids.push(child);
        }
    }
    pids
}

/// The fields of `/proc/PID/stat` after the command name (state first).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces or parentheses itself.
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(String::from).collect())
}

/// User + system CPU seconds of `pid` and its children.
fn tree_cpu(pid: u32) -> Result<f64, String> {
    let tick = clock_ticks();
    tree(pid)
        .into_iter()
        .map(|p| {
            let f = stat_fields(p).ok_or_else(|| format!("cannot read /proc/{p}/stat"))?;
            // utime and stime: fields 14 and 15 of stat(5), 11 and 12 here.
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            match (ticks(11), ticks(12)) {
                (Some(u), Some(s)) => Ok((u + s) as f64 / tick),
                _ => Err(format!("unreadable /proc/{p}/stat")),
            }
        })
        .sum()
}

/// Bytes read by `pid` and its children (`rchar` of `/proc/PID/io`: sockets
/// included).
fn tree_rchar(pid: u32) -> Result<u64, String> {
    tree(pid)
        .into_iter()
        .map(|p| {
            let io = fs::read_to_string(format!("/proc/{p}/io"))
                .map_err(|e| format!("read /proc/{p}/io: {e}"))?;
            io.lines()
                .find_map(|l| l.strip_prefix("rchar:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| format!("no rchar in /proc/{p}/io"))
        })
        .sum()
}

/// A `/proc/PID/status` field in KiB, summed over `pid` and its children.
fn tree_kib(pid: u32, key: &str) -> Result<u64, String> {
    tree(pid)
        .into_iter()
        .map(|p| crate::web::status_kib(p, key).ok_or_else(|| format!("no {key} for pid {p}")))
        .sum()
}

/// Clock ticks per second of `/proc/PID/stat` times (`getconf CLK_TCK`; 100,
/// Linux's value on every common architecture, if that cannot run).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// This process's soft limit of open files (the servers inherit it).
fn open_files_limit() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn render(rows: &[Row], options: &Options, setup: &str, notes: &[String]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "\n## Small requests (per-request cost)\n");
    let _ = writeln!(
        md,
        "- ingress: upload-response-server (release, defaults) with --no-access-log, \
         as nginx runs with access_log off; POSTs to /discard"
    );
    let _ = writeln!(md, "- bare sink: loadgen sink, POSTs to /discard");
    let _ = writeln!(md, "- nginx: {setup}");
    let _ = writeln!(
        md,
        "- client: loadgen, HTTP/1.1, same run, every server in turn per row; \
         keep-alive rows {} requests each, new-connection rows {}",
        options.requests,
        (options.requests / 2).max(1)
    );
    let _ = writeln!(
        md,
        "- ratio = ingress / nginx (req/s, conn/s, MiB/s: higher is better; ms, bytes, CPU: lower is better)"
    );
    let _ = writeln!(
        md,
        "\n| row | ingress | bare sink | nginx | ingress / nginx |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    let mut remarks = Vec::new();
    for row in rows {
        let text = |cell: &Cell, remarks: &mut Vec<String>, who: &str| match cell {
            Cell::Value(v, remark) => {
                let mut t = format!("{v:.*}", row.decimals);
                if let Some(r) = remark {
                    t.push_str(" *");
                    remarks.push(format!("{} / {who}: {r}", row.label));
                }
                t
            }
            Cell::Failed(e) => format!("error: {}", sanitize(e)),
            Cell::Skipped => "-".into(),
        };
        let [ours, bare, nginx] = &row.cells;
        let ratio = match (ours, nginx) {
            (Cell::Value(o, _), Cell::Value(n, _)) if *n > 0.0 => format!("{:.2}", o / n),
            _ => "-".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {ratio} |",
            row.label,
            text(ours, &mut remarks, "ingress"),
            text(bare, &mut remarks, "bare sink"),
            text(nginx, &mut remarks, "nginx"),
        );
    }
    let _ = writeln!(
        md,
        "\nbytes/conn: growth of VmRSS (nginx: master and workers summed) from before \
         opening {HOLD} connections to while all are held after one 1 KiB POST each, \
         divided by {HOLD}; the connections come from {HOLD_SOURCES} loopback addresses. \
         CPU: utime + stime of the server process(es) from /proc/PID/stat over the \
         upload(s), per 10^9 body bytes. nginx answers `return 200` as soon as the head \
         is in and then reads and discards the body, so loadgen times every upload until \
         its last byte went out as well as until the answer, and nginx's reading is \
         checked through `rchar` of /proc/PID/io (tokio servers read sockets with recv(), \
         which rchar does not count, so theirs is the count they answer). nginx allocates \
         its connection and event structures for all worker_connections at start and \
         reuses memory freed by earlier rows: its growth is what idle connections add \
         beyond that. The kernel's socket memory is in no column. TLS: rustls client, \
         which resumes sessions where the server offers it (new-connection TLS row). \
         The bare sink column is the client's ceiling: where the sink and nginx are close, \
         loadgen (sharing the machine's cores with the server) is likely the limit."
    );
    for remark in remarks.iter().chain(notes) {
        let _ = writeln!(md, "- {}", sanitize(remark));
    }
    md
}

/// Text safe in one table cell.
fn sanitize(text: &str) -> String {
    text.replace('|', "/").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ports_and_proc_files() {
        assert_eq!(
            ready_port(
                "http=127.0.0.1:1 https=127.0.0.1:8443 worker_api=x",
                "https="
            ),
            Some(8443)
        );
        assert_eq!(ready_port("http=127.0.0.1:1", "https="), None);
        let me = std::process::id();
        assert!(tree(me).contains(&me));
        assert!(tree_cpu(me).unwrap() >= 0.0);
        assert!(tree_kib(me, "VmRSS:").unwrap() > 0);
        assert!(tree_rchar(me).is_ok());
        assert_eq!(sanitize("a|b\nc"), "a/b c");
        let json = r#"{"kind":"rate","first_error":"connect 1.2.3.4:5: refused","x":1}"#;
        assert_eq!(first_error(json), "connect 1.2.3.4:5: refused");
        assert_eq!(quoted_number("\"1024\",\"x\":1}"), Some(1024.0));
        assert_eq!(quoted_number("\"1024\\n\"}"), Some(1024.0));
        assert_eq!(quoted_number("\"nope\"}"), None);
    }
}
