//! `cargo xtask bench proxy`: streaming-proxy beside the origin served directly
//! and, when they are installed, nginx (`proxy_cache` + `slice`) and Varnish, all
//! on loopback in the same run, so every figure has a same-run baseline.
//!
//! The origin is `loadgen origin` (generated objects `/obj/{size}`, ranges,
//! `max-age=3600`, request counter on `/stats`); the client is `loadgen get`
//! (one connection, body hashed with xxh3) and `loadgen rate --method get`.
//! Workloads, each interleaved across servers run by run so a drifting shared
//! machine hits every column alike:
//!
//! * cold miss of a large object: a fresh URL per server and run; time to first
//!   byte and throughput (the origin's own figure is its direct TTFB);
//! * hit of the same large object: one warming GET, then best of N;
//! * requests/s for hot 1 KiB and 100 KiB objects at C connections, p50/p99.
//!
//! Every body is checked against the origin's direct bytes (xxh3) and every
//! rate run against the expected length, so a broken server cannot look fast.
//! nginx and Varnish get their configuration written under `target/bench/proxy`
//! and listen on loopback ports picked here; they are skipped when absent
//! (`scripts/install-bench-peers.sh` installs both on Debian).

use std::fmt::Write as _;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::peers::{Server, find_program, free_addr, nginx_workers, start_nginx};
use crate::web::{Options, after_key, field, loadgen, machine};
use crate::{cargo, root, run};

/// The servers of one run, the origin first.
const ORIGIN: &str = "origin";
const OURS: &str = "streaming-proxy";
const OURS_L1: &str = "streaming-proxy-l1";
const NGINX: &str = "nginx";
const VARNISH: &str = "varnish";

/// Small objects of the request-rate workload.
const SMALL: [u64; 2] = [1024, 100 * 1024];

/// 1 GiB best of 3, 50,000 requests; `--quick`: 64 MiB best of 2, 5,000.
fn options(args: &[String]) -> Result<Options, String> {
    let defaults = Options {
        bytes: 1 << 30,
        repeat: 3,
        conns: 100,
        requests: 50_000,
        peers: true,
    };
    let quick = |o: &mut Options| {
        o.bytes = 64 << 20;
        o.requests = 5_000;
        o.repeat = 2;
    };
    Options::parse(args, defaults, quick, "proxy")
}

fn nginx(program: &Path, origin: &str, dir: &Path) -> Result<Server, String> {
    let addr = free_addr()?;
    let cache = dir.join("cache");
    fs::create_dir_all(&cache).map_err(|e| format!("create {}: {e}", cache.display()))?;
    let cache = cache.display();
    // The slice module is nginx's own answer to large objects (fixed-size range
    // requests, each cached apart): the closest peer of our slices, same 1 MiB.
    let http = format!(
        "    proxy_cache_path {cache} levels=1:2 keys_zone=bench:64m max_size=10g inactive=1h use_temp_path=off;
    upstream origin {{ server {origin}; keepalive 64; }}
    server {{
        listen {addr} backlog=4096;
        location / {{
            slice 1m;
            proxy_cache bench;
            proxy_cache_key $uri$is_args$args$slice_range;
            proxy_set_header Range $slice_range;
            proxy_cache_valid 200 206 1h;
            proxy_cache_lock on;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            add_header x-cache $upstream_cache_status always;
            proxy_pass http://origin;
        }}
    }}
"
    );
    let setup = format!(
        "nginx {} workers, proxy_cache on disk (page cache), slice 1m, cache lock, \
         keepalive upstream",
        nginx_workers()
    );
    start_nginx(NGINX, program, dir, 4096, &http, addr, setup)
}

fn varnish(program: &Path, origin: &str, dir: &Path, memory: u64) -> Result<Server, String> {
    let addr = free_addr()?;
    let (host, port) = origin
        .rsplit_once(':')
        .ok_or_else(|| format!("origin address {origin:?} has no port"))?;
    let vcl = format!(
        "vcl 4.1;
backend origin {{ .host = \"{host}\"; .port = \"{port}\"; }}
sub vcl_deliver {{
    if (obj.hits > 0) {{ set resp.http.x-cache = \"HIT\"; }} else {{ set resp.http.x-cache = \"MISS\"; }}
}}
"
    );
    let path = dir.join("default.vcl");
    fs::write(&path, vcl).map_err(|e| format!("write {}: {e}", path.display()))?;
    let mut cmd = Command::new(program);
    // -j none: no privilege separation, so a root run needs no varnish users and
    // the work directory can live under target/.
    cmd.args(["-F", "-j", "none", "-a", &addr.to_string(), "-f"])
        .arg(&path)
        .arg("-n")
        .arg(dir.join("work"))
        .args(["-s", &format!("malloc,{memory}")]);
    let setup = format!(
        "Varnish, malloc storage {} MiB, default VCL (streams while fetching)",
        memory >> 20
    );
    Server::start_polled(VARNISH, cmd, addr, &dir.join("stderr.log"), setup)
}

/// What one `loadgen get` saw.
#[derive(Clone, Debug)]
struct Fetch {
    status: u16,
    bytes: u64,
    mib_s: f64,
    ttfb_ms: f64,
    x_cache: String,
    xxh3: String,
}

/// The string after `"key":` in a flat JSON line written by loadgen (the last
/// element if it is an array of strings).
fn text(json: &str, key: &str) -> Option<String> {
    let rest = after_key(json, key)?;
    let rest = match rest.strip_prefix('[') {
        Some(list) => &list[..list.find(']')?],
        None => &rest[..rest.find([',', '}']).unwrap_or(rest.len())],
    };
    let last = rest.rsplit(',').next()?.trim();
    Some(last.trim_matches('"').to_string())
}

fn get(bin: &Path, url: &str) -> Result<Fetch, String> {
    let json = loadgen(
        bin,
        &["get", "--proto", "h1", "--url", url].map(String::from),
    )?;
    let parse = || -> Option<Fetch> {
        Some(Fetch {
            status: field(&json, "status")? as u16,
            bytes: field(&json, "bytes")? as u64,
            mib_s: field(&json, "mib_s")?,
            // To the first body byte: a proxy that sends its head before the
            // origin's bytes arrive must not look faster than it is.
            ttfb_ms: field(&json, "first_byte_ms")?,
            x_cache: text(&json, "xcache").unwrap_or_default(),
            xxh3: text(&json, "xxh3")?,
        })
    };
    parse().ok_or_else(|| format!("unreadable get line {json}"))
}

/// The origin's count of object requests served so far, from its `/stats`.
fn origin_requests(origin: &Server) -> Result<u64, String> {
    // A one-off HTTP/1.0 GET of a few bytes: std is enough, and xtask must stay
    // free of dependencies (it builds before anything else).
    let fail = |e: std::io::Error| format!("GET {}: {e}", origin.url("/stats"));
    let mut stream = TcpStream::connect(&origin.addr).map_err(fail)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(fail)?;
    write!(
        stream,
        "GET /stats HTTP/1.0\r\nHost: {}\r\n\r\n",
        origin.addr
    )
    .map_err(fail)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(fail)?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    field(body, "requests")
        .map(|n| n as u64)
        .ok_or_else(|| format!("no request count in the origin's /stats answer {answer:?}"))
}

/// Per server: the runs of one workload.
struct Row {
    server: &'static str,
    runs: Vec<Result<Fetch, String>>,
}

impl Row {
    fn ok(&self) -> impl Iterator<Item = &Fetch> {
        self.runs.iter().filter_map(|r| r.as_ref().ok())
    }

    fn best_mib_s(&self) -> Option<f64> {
        self.ok().map(|f| f.mib_s).reduce(f64::max)
    }

    fn median_ttfb(&self) -> Option<f64> {
        let mut t: Vec<f64> = self.ok().map(|f| f.ttfb_ms).collect();
        t.sort_by(f64::total_cmp);
        t.get(t.len() / 2).copied()
    }
}

struct RateRow {
    size: u64,
    server: &'static str,
    outcome: Result<String, String>,
}

/// `cargo xtask bench proxy [options]`.
pub fn bench(args: &[String]) -> Result<(), String> {
    let options = options(args)?;
    let root = root();
    let out_dir = root.join("target").join("bench");
    let work = out_dir.join("proxy");
    // Every server starts cold: no cache left from an earlier run.
    if work.exists() {
        fs::remove_dir_all(&work).map_err(|e| format!("remove {}: {e}", work.display()))?;
    }
    for name in [ORIGIN, OURS, OURS_L1, NGINX, VARNISH] {
        let d = work.join(name);
        fs::create_dir_all(&d).map_err(|e| format!("create {}: {e}", d.display()))?;
    }

    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "-p",
        "loadgen",
        "-p",
        "streaming-proxy",
    ]);
    run(build)?;
    let release = root.join("target").join("release");
    let loadgen_bin = release.join("loadgen");

    let mut cmd = Command::new(&loadgen_bin);
    cmd.args(["origin", "--http", "127.0.0.1:0"]);
    let origin = Server::start_ready(
        ORIGIN,
        cmd,
        &work.join(ORIGIN),
        "loadgen origin (hyper, generated bytes, no cache)".into(),
    )?;
    let mut servers = Vec::new();
    // Twice: as shipped (the large object overflows L1, so its hits come from
    // disk), and with L1 above the object, like Varnish's memory storage.
    let l1_big = options.bytes + (512 << 20);
    let ours = [
        (
            OURS,
            None,
            "defaults: slices 1 MiB, L1 256 MiB (memory), L2 10 GiB (disk, page cache), \
             so the large object's hits come mostly from L2; --no-access-log, as nginx \
             runs with access_log off"
                .to_string(),
        ),
        (
            OURS_L1,
            Some(l1_big),
            format!(
                "the same with L1 {} MiB: every hit from memory",
                l1_big >> 20
            ),
        ),
    ];
    for (name, l1, setup) in ours {
        let mut cmd = Command::new(release.join("streaming-proxy"));
        // nginx runs with `access_log off` and Varnish logs to shared memory
        // only: our access log (a line per request on stderr) would be the one
        // per-request write the peers do not make.
        cmd.args(["--upstream", &origin.url(""), "--listen", "127.0.0.1:0"])
            .arg("--no-access-log")
            .arg("--cache-dir")
            .arg(work.join(name).join("cache"));
        if let Some(l1) = l1 {
            cmd.args(["--l1-bytes", &l1.to_string()]);
        }
        servers.push(Server::start_ready(name, cmd, &work.join(name), setup)?);
    }
    let mut skipped = Vec::new();
    if options.peers {
        match find_program("nginx") {
            Some(program) => servers.push(nginx(&program, &origin.addr, &work.join(NGINX))?),
            None => skipped.push("nginx: not installed"),
        }
        match find_program("varnishd") {
            Some(program) => servers.push(varnish(
                &program,
                &origin.addr,
                &work.join(VARNISH),
                options.bytes + (512 << 20),
            )?),
            None => skipped.push("varnish: not installed"),
        }
    } else {
        skipped.push("nginx, varnish: --no-peers");
    }
    let all: Vec<&Server> = std::iter::once(&origin).chain(&servers).collect();

    // The reference bytes: the origin's own answer, whatever the query.
    let big = options.bytes;
    let reference = get(&loadgen_bin, &origin.url(&format!("/obj/{big}")))?;
    if reference.bytes != big {
        return Err(format!(
            "the origin sent {} of {big} bytes",
            reference.bytes
        ));
    }

    eprintln!("xtask: cold misses of {big} bytes");
    let mut cold: Vec<Row> = all
        .iter()
        .map(|s| Row {
            server: s.name,
            runs: Vec::new(),
        })
        .collect();
    for run in 0..options.repeat {
        for (server, row) in all.iter().zip(&mut cold) {
            let url = server.url(&format!("/obj/{big}?cold={}-{run}", server.name));
            row.runs.push(get(&loadgen_bin, &url));
        }
    }

    eprintln!("xtask: hits of {big} bytes");
    let hot = format!("/obj/{big}?hot");
    let mut warm = Vec::new();
    for server in &all {
        warm.push((server.name, get(&loadgen_bin, &server.url(&hot))));
    }
    // Our last slice reaches L2 just after its bytes went out; nginx renames its
    // temp files; give every cache a moment to finish storing.
    thread::sleep(Duration::from_secs(2));
    let before_hits = origin_requests(&origin)?;
    let mut hits: Vec<Row> = all
        .iter()
        .map(|s| Row {
            server: s.name,
            runs: Vec::new(),
        })
        .collect();
    for _ in 0..options.repeat {
        // The origin is measured too (its direct throughput is the baseline),
        // so its own requests are counted apart below.
        for (server, row) in all.iter().zip(&mut hits) {
            row.runs.push(get(&loadgen_bin, &server.url(&hot)));
        }
    }
    let after_hits = origin_requests(&origin)?;
    // The loop's direct requests to the origin count too: take them out.
    let origin_during_hits = after_hits
        .saturating_sub(before_hits)
        .saturating_sub(u64::from(options.repeat));

    eprintln!("xtask: request rate");
    let mut rates = Vec::new();
    for size in SMALL {
        for server in &all {
            let url = server.url(&format!("/obj/{size}"));
            // One warming request, so the rate run measures hits.
            let warmed = get(&loadgen_bin, &url);
            let outcome = warmed.and_then(|_| {
                loadgen(
                    &loadgen_bin,
                    &[
                        "rate",
                        "--proto",
                        "h1",
                        "--method",
                        "get",
                        "--url",
                        &url,
                        "--conns",
                        &options.conns.to_string(),
                        "--requests",
                        &options.requests.to_string(),
                        "--seconds",
                        "60",
                        "--expect-bytes",
                        &size.to_string(),
                    ]
                    .map(String::from),
                )
            });
            rates.push(RateRow {
                size,
                server: server.name,
                outcome,
            });
        }
    }
    let setups: Vec<(&str, String)> = all.iter().map(|s| (s.name, s.setup.clone())).collect();
    drop(servers);
    drop(origin);

    let report = render(&Report {
        options: &options,
        setups: &setups,
        skipped: &skipped,
        reference: &reference,
        cold: &cold,
        warm: &warm,
        hits: &hits,
        origin_during_hits,
        rates: &rates,
    });
    println!("{report}");
    let path = out_dir.join("proxy.md");
    fs::write(&path, &report).map_err(|e| format!("write {}: {e}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}

struct Report<'a> {
    options: &'a Options,
    setups: &'a [(&'a str, String)],
    skipped: &'a [&'a str],
    reference: &'a Fetch,
    cold: &'a [Row],
    warm: &'a [(&'static str, Result<Fetch, String>)],
    hits: &'a [Row],
    origin_during_hits: u64,
    rates: &'a [RateRow],
}

fn ratio(value: Option<f64>, base: Option<f64>) -> String {
    match (value, base) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}", v / b),
        _ => "n/a".into(),
    }
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or("failed".into(), |v| format!("{v:.decimals$}"))
}

/// Problems of a server's runs: errors, wrong status, length or bytes.
fn check(row: &Row, reference: &Fetch, failures: &mut Vec<String>, what: &str) -> String {
    let mut notes = Vec::new();
    for run in &row.runs {
        match run {
            Err(e) => failures.push(format!("{} {what}: {e}", row.server)),
            Ok(f) if f.status != 200 => notes.push(format!("status {}", f.status)),
            Ok(f) if f.bytes != reference.bytes || f.xxh3 != reference.xxh3 => {
                notes.push("WRONG BYTES".into());
            }
            Ok(_) => {}
        }
    }
    notes.dedup();
    if notes.is_empty() {
        "yes".into()
    } else {
        notes.join(", ")
    }
}

fn render(r: &Report<'_>) -> String {
    let mut md = String::new();
    let mut failures = Vec::new();
    let o = r.options;
    let _ = writeln!(
        md,
        "# Proxy benchmark (loadgen): streaming-proxy vs the origin served directly\n"
    );
    let _ = writeln!(md, "- machine: {}", machine());
    let _ = writeln!(
        md,
        "- HTTP/1.1 over loopback, cleartext; large object {} bytes; MiB/s = 2^20 bytes/s",
        o.bytes
    );
    for (name, setup) in r.setups {
        let _ = writeln!(md, "- {name}: {setup}");
    }
    for skipped in r.skipped {
        let _ = writeln!(md, "- skipped {skipped}");
    }

    let _ = writeln!(
        md,
        "\n## Cold miss, {} bytes (a new URL per server and run, {} runs)\n",
        o.bytes, o.repeat
    );
    let _ = writeln!(
        md,
        "| server | TTFB median ms | TTFB runs ms | MiB/s best | bytes = origin's | x-cache |"
    );
    let _ = writeln!(md, "|---|---:|---|---:|---|---|");
    for row in r.cold {
        let runs: Vec<String> = row.ok().map(|f| format!("{:.1}", f.ttfb_ms)).collect();
        let caches: Vec<&str> = row
            .ok()
            .map(|f| f.x_cache.as_str())
            .filter(|x| !x.is_empty())
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            row.server,
            opt(row.median_ttfb(), 1),
            runs.join(", "),
            opt(row.best_mib_s(), 0),
            check(row, r.reference, &mut failures, "cold miss"),
            dash(&caches.join(", ")),
        );
    }

    let _ = writeln!(
        md,
        "\n## Hit, {} bytes (one warming GET, then best of {}; one connection)\n",
        o.bytes, o.repeat
    );
    let base = r
        .hits
        .iter()
        .find(|row| row.server == ORIGIN)
        .and_then(Row::best_mib_s);
    let _ = writeln!(
        md,
        "| server | MiB/s best | ratio to origin | bytes = origin's | warming x-cache | x-cache |"
    );
    let _ = writeln!(md, "|---|---:|---:|---|---|---|");
    for row in r.hits {
        let caches: Vec<&str> = row
            .ok()
            .map(|f| f.x_cache.as_str())
            .filter(|x| !x.is_empty())
            .collect();
        let warming =
            r.warm
                .iter()
                .find(|(n, _)| *n == row.server)
                .map_or(String::new(), |(_, w)| match w {
                    Ok(f) => f.x_cache.clone(),
                    Err(e) => {
                        failures.push(format!("{} warming: {e}", row.server));
                        "failed".into()
                    }
                });
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            row.server,
            opt(row.best_mib_s(), 0),
            ratio(row.best_mib_s(), base),
            check(row, r.reference, &mut failures, "hit"),
            dash(&warming),
            dash(&caches.join(", ")),
        );
    }
    let _ = writeln!(
        md,
        "\nOrigin requests during the hit runs, besides the origin's own: {} \
         (0 = every cache answered from storage).",
        r.origin_during_hits
    );

    let _ = writeln!(
        md,
        "\n## Requests/s, hot objects ({} connections, {} GETs, one warming GET first)\n",
        o.conns, o.requests
    );
    let _ = writeln!(
        md,
        "| object | server | ok | errors | req/s | ratio to origin | p50 ms | p99 ms |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|");
    for size in SMALL {
        let base = r
            .rates
            .iter()
            .find(|row| row.size == size && row.server == ORIGIN)
            .and_then(|row| row.outcome.as_ref().ok())
            .and_then(|json| field(json, "req_s"));
        for row in r.rates.iter().filter(|row| row.size == size) {
            match &row.outcome {
                Ok(json) => {
                    let f = |k: &str| field(json, k);
                    let _ = writeln!(
                        md,
                        "| {} KiB | {} | {} | {} | {} | {} | {} | {} |",
                        size / 1024,
                        row.server,
                        opt(f("ok"), 0),
                        opt(f("errors"), 0),
                        opt(f("req_s"), 0),
                        ratio(f("req_s"), base),
                        opt(f("p50_ms"), 2),
                        opt(f("p99_ms"), 2),
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        md,
                        "| {} KiB | {} | failed | | | | | |",
                        size / 1024,
                        row.server
                    );
                    failures.push(format!("{} rate {size}: {e}", row.server));
                }
            }
        }
    }
    if !failures.is_empty() {
        let _ = writeln!(md, "\n## Failures\n");
        for failure in failures {
            let _ = writeln!(md, "- {failure}");
        }
    }
    md
}

fn dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_texts_and_numbers() {
        let json = r#"{"command":"get","mib_s":[812.5,900.25],"ttfb_ms":3.5,"xcache":["MISS","HIT"],"xxh3":"00ff","status":200}"#;
        assert_eq!(field(json, "mib_s"), Some(812.5));
        assert_eq!(field(json, "ttfb_ms"), Some(3.5));
        assert_eq!(text(json, "xcache").as_deref(), Some("HIT"));
        assert_eq!(text(json, "xxh3").as_deref(), Some("00ff"));
        assert_eq!(text(json, "command").as_deref(), Some("get"));
        assert_eq!(field(json, "missing"), None);
    }

    #[test]
    fn options_parse() {
        let quick = options(&["--quick".into()]).unwrap();
        assert_eq!((quick.bytes, quick.repeat), (64 << 20, 2));
        assert!(!options(&["--no-peers".into()]).unwrap().peers);
        assert!(options(&["--conns".into(), "0".into()]).is_err());
        assert!(options(&["--what".into()]).is_err());
    }
}
