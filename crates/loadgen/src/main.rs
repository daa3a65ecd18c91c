//! `loadgen`: bare sink and origin, uploads, GETs, request rate and loopback
//! baselines from the command line. Human lines first, then one JSON line for
//! harnesses.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use loadgen::clients::{Client, GetOptions, UploadOptions, get_supported, mib_per_sec};
use loadgen::hold;
use loadgen::origin::Origin;
use loadgen::rate::{self, RateOptions};
use loadgen::report::JsonLine;
use loadgen::sink::{Sink, SinkOptions};
use loadgen::size::parse_size;
use loadgen::{Error, Proto, Result, tcp_baseline};
use tokio::io::AsyncReadExt;

#[derive(Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator and bare reference sinks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bare sink until SIGINT, SIGTERM or end of standard input.
    Sink {
        /// Directory for cert.pem / key.pem (generated when missing).
        #[arg(long)]
        dir: PathBuf,
        /// Cleartext HTTP/1.1 + h2c + ws:// listener.
        #[arg(long, default_value = "127.0.0.1:0")]
        http: SocketAddr,
        /// TLS listener (TCP) and QUIC (UDP, same port).
        #[arg(long, default_value = "127.0.0.1:0")]
        https: SocketAddr,
    },
    /// Run the bare origin (`GET`/`HEAD /obj/{size}`, ranges, `/stats`) until
    /// SIGINT, SIGTERM or end of standard input.
    Origin {
        /// Cleartext HTTP/1.1 + h2c listener.
        #[arg(long, default_value = "127.0.0.1:0")]
        http: SocketAddr,
    },
    /// GET a URL N times on one connection; report status, time to first
    /// byte, throughput, X-Cache and the xxh3-64 of each body.
    Get {
        #[command(flatten)]
        target: TargetArgs,
        /// GETs to run, one after the other on the same connection.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        /// Send `Range: bytes=SPEC` (e.g. 0-1023, 1024-, -512).
        #[arg(long, allow_hyphen_values = true)]
        range: Option<String>,
    },
    /// Upload a generated body and report throughput.
    Upload {
        #[command(flatten)]
        target: TargetArgs,
        /// Body size: bytes, or with a K, M or G suffix (powers of 1024).
        #[arg(long, value_parser = parse_size)]
        bytes: u64,
        /// Uploads to run, each on a new connection.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        /// Size of one body frame or WebSocket message.
        #[arg(long, value_parser = parse_size, default_value = "256K")]
        chunk: u64,
        /// Concurrent uploads of --bytes each on one connection (h2, h3 only).
        #[arg(long, default_value_t = 1)]
        streams: usize,
    },
    /// Small requests at C connections; report rate and p50/p99 latency.
    Rate {
        #[command(flatten)]
        target: TargetArgs,
        /// Concurrent connections.
        #[arg(long, default_value_t = 100)]
        conns: usize,
        /// Total requests.
        #[arg(long)]
        requests: u64,
        /// Stop after this many seconds even if requests remain.
        #[arg(long)]
        seconds: Option<f64>,
        /// Body bytes per request (post only).
        #[arg(long, value_parser = parse_size, default_value = "64")]
        body_bytes: u64,
        /// post (a body of --body-bytes) or get (the URL, no body; h1, h2, h3).
        #[arg(long, default_value = "post")]
        method: rate::Method,
        /// Count an answer whose body is not exactly this long as an error.
        #[arg(long, value_parser = parse_size)]
        expect_bytes: Option<u64>,
        /// A new connection for every request, closed after its answer: --conns
        /// workers connect, ask once and hang up, and the rate is connections/s
        /// (latencies include the TCP and TLS handshakes).
        #[arg(long)]
        new_conn: bool,
    },
    /// Open N keep-alive connections, one small POST on each, print a JSON line
    /// once all are held, then keep them until standard input closes, SIGINT,
    /// SIGTERM or --seconds.
    Hold {
        #[command(flatten)]
        target: TargetArgs,
        /// Connections to hold.
        #[arg(long)]
        conns: usize,
        /// Body bytes of each connection's one POST.
        #[arg(long, value_parser = parse_size, default_value = "1K")]
        body_bytes: u64,
        /// Connections being opened at once.
        #[arg(long, default_value_t = 256)]
        parallel: usize,
        /// Let go after this many seconds even if standard input stays open.
        #[arg(long)]
        seconds: Option<f64>,
    },
    /// Loopback TCP and TLS throughput, one connection each.
    TcpBaseline {
        /// Bytes per connection (K, M, G suffixes allowed).
        #[arg(long, value_parser = parse_size)]
        bytes: u64,
    },
}

#[derive(clap::Args)]
struct TargetArgs {
    /// h1, h1-chunked, h2, h3 or ws.
    #[arg(long)]
    proto: Proto,
    /// http(s):// or ws(s):// URL; the scheme picks TLS or cleartext.
    #[arg(long)]
    url: String,
    /// PEM file of the CA to trust (required for TLS URLs).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Act as N clients: connections bind in turn to the loopback source
    /// addresses 127.0.0.1 ..= 127.0.0.N (a server limiting each address sees
    /// N clients). 0: the system picks the source.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8))]
    sources: u8,
}

impl TargetArgs {
    /// The client these arguments describe.
    fn client(&self) -> Result<Client> {
        let sources = (1..=self.sources)
            .map(|i| std::net::IpAddr::from([127, 0, 0, i]))
            .collect();
        Ok(Client::new(self.proto, &self.url, self.ca.as_deref())?.with_sources(sources))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Sink { dir, http, https } => sink(SinkOptions { dir, http, https }).await,
        Command::Origin { http } => origin(http).await,
        Command::Get {
            target,
            repeat,
            range,
        } => get(target, repeat, range).await,
        Command::Upload {
            target,
            bytes,
            repeat,
            chunk,
            streams,
        } => {
            let plan = UploadPlan {
                bytes,
                repeat,
                chunk,
                streams,
            };
            upload(target, plan).await
        }
        Command::Rate {
            target,
            conns,
            requests,
            seconds,
            body_bytes,
            method,
            expect_bytes,
            new_conn,
        } => {
            let options = RateOptions {
                conns,
                requests,
                duration: duration(seconds)?,
                body_bytes,
                method,
                expect_bytes,
                new_conn,
            };
            rate(target, options).await
        }
        Command::Hold {
            target,
            conns,
            body_bytes,
            parallel,
            seconds,
        } => hold(target, conns, body_bytes, parallel, duration(seconds)?).await,
        Command::TcpBaseline { bytes } => tcp_baseline(bytes).await,
    }
}

/// `--seconds` as a duration.
fn duration(seconds: Option<f64>) -> Result<Option<Duration>> {
    seconds
        .map(Duration::try_from_secs_f64)
        .transpose()
        .map_err(|e| Error::Argument(format!("--seconds: {e}")))
}

async fn sink(options: SinkOptions) -> Result<()> {
    let sink = Sink::start(&options).await?;
    eprintln!("loadgen sink: trust {}", sink.cert().cert.display());
    println!("{}", sink.ready_line());
    until_told_to_stop().await?;
    drop(sink);
    Ok(())
}

async fn origin(http: SocketAddr) -> Result<()> {
    let origin = Origin::start(http).await?;
    println!("{}", origin.ready_line());
    // A harness blocks on this line; do not leave it in a buffer.
    std::io::stdout()
        .flush()
        .map_err(Error::io("write the READY line"))?;
    until_told_to_stop().await?;
    let stats = origin.stats();
    eprintln!(
        "loadgen origin: {} object requests, {} body bytes",
        stats.requests, stats.bytes
    );
    drop(origin);
    Ok(())
}

/// Resolves on SIGINT, SIGTERM or end of standard input, whichever is first.
async fn until_told_to_stop() -> Result<()> {
    until_told_or(None).await
}

/// [`until_told_to_stop`], or after `limit` when one is given.
async fn until_told_or(limit: Option<Duration>) -> Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(Error::io("install SIGTERM handler"))?;
    let elapsed = async {
        match limit {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
        _ = stdin_closed() => {}
        _ = elapsed => {}
    }
    Ok(())
}

async fn hold(
    target: TargetArgs,
    conns: usize,
    body_bytes: u64,
    parallel: usize,
    limit: Option<Duration>,
) -> Result<()> {
    // One descriptor per connection, plus the runtime's own and some slack.
    let open_files = hold::ensure_open_files(conns as u64 + 256)?;
    let client = target.client()?;
    let started = Instant::now();
    let held = hold::open(&client, conns, body_bytes, parallel).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} hold: {} of {conns} connections held after one request each ({} errors) in {secs:.2} s",
        target.proto,
        held.conns.len(),
        held.errors
    );
    if let Some(error) = &held.first_error {
        println!("first error: {error}");
    }
    let line = JsonLine::new()
        .text("kind", "hold")
        .text("proto", target.proto.name())
        .text("url", &target.url)
        .int("conns", conns as u64)
        .int("held", held.conns.len() as u64)
        .int("errors", held.errors)
        .num("secs", secs)
        .int("open_files_limit", open_files)
        .text("first_error", held.first_error.as_deref().unwrap_or(""))
        .finish();
    println!("{line}");
    // The harness reads the server's memory as soon as it sees this line.
    std::io::stdout()
        .flush()
        .map_err(Error::io("write the hold line"))?;
    until_told_or(limit).await?;
    drop(held);
    Ok(())
}

/// Resolves when standard input reaches end of file (the harness went away).
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 256];
    while let Ok(n) = stdin.read(&mut buffer).await {
        if n == 0 {
            return;
        }
    }
}

/// What `loadgen upload` was asked to do.
struct UploadPlan {
    bytes: u64,
    repeat: u32,
    chunk: u64,
    streams: usize,
}

async fn upload(target: TargetArgs, plan: UploadPlan) -> Result<()> {
    let UploadPlan {
        bytes,
        repeat,
        chunk,
        streams,
    } = plan;
    if repeat == 0 || streams == 0 {
        return Err(Error::Argument(
            "--repeat and --streams must be at least 1".into(),
        ));
    }
    let chunk = usize::try_from(chunk)
        .ok()
        .filter(|c| (1..=64 << 20).contains(c))
        .ok_or_else(|| Error::Argument("--chunk must be 1 byte to 64 MiB".into()))?;
    let client = target.client()?;
    let options = UploadOptions {
        bytes,
        chunk,
        ..UploadOptions::default()
    };
    let mut rates = Vec::with_capacity(repeat as usize);
    let mut last = None;
    for run in 1..=repeat {
        let mut conn = client.connect().await?;
        let started = Instant::now();
        let results = if streams == 1 {
            vec![conn.upload(&options).await?]
        } else {
            conn.upload_concurrent(streams, &options).await?
        };
        let elapsed = started.elapsed();
        let mut sent = 0;
        for result in &results {
            result.expect_counted()?;
            sent += result.sent;
        }
        let rate = mib_per_sec(sent, elapsed);
        let said: Vec<String> = results
            .iter()
            .map(|r| r.body_text().trim().to_string())
            .collect();
        println!(
            "{} run {run}/{repeat}: {sent} bytes in {streams} stream(s) in {:.3} s = {rate:.1} MiB/s (sink said {said:?})",
            target.proto,
            elapsed.as_secs_f64(),
        );
        rates.push(rate);
        last = results.into_iter().last();
    }
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let best = sorted[sorted.len() - 1];
    let (status, body) = last
        .map(|r| (u64::from(r.status), r.body_text().trim().to_string()))
        .unwrap_or_default();
    println!(
        "{} {}: median {median:.1} MiB/s, best {best:.1} MiB/s over {repeat} run(s)",
        target.proto, target.url
    );
    let line = JsonLine::new()
        .text("kind", "upload")
        .text("proto", target.proto.name())
        .text("url", &target.url)
        .int("bytes", bytes)
        .int("streams", streams as u64)
        .int("runs", u64::from(repeat))
        .num("mib_s", median)
        .num("best_mib_s", best)
        .nums("all_mib_s", &rates)
        .int("status", status)
        .text("body", &body)
        .finish();
    println!("{line}");
    Ok(())
}

async fn get(target: TargetArgs, repeat: u32, range: Option<String>) -> Result<()> {
    if repeat == 0 {
        return Err(Error::Argument("--repeat must be at least 1".into()));
    }
    if !get_supported(target.proto) {
        return Err(Error::Argument(format!(
            "get speaks --proto h1, h2 or h3, not {}",
            target.proto
        )));
    }
    let client = target.client()?;
    let options = GetOptions {
        range: range.clone(),
        hash: true,
        // Only counted and hashed; the body is not printed.
        keep_body: 0,
    };
    let mut conn = client.connect().await?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut statuses = Vec::with_capacity(repeat as usize);
    let mut received = Vec::with_capacity(repeat as usize);
    let mut rates = Vec::with_capacity(repeat as usize);
    let mut heads = Vec::with_capacity(repeat as usize);
    let mut first_bytes = Vec::with_capacity(repeat as usize);
    let mut totals = Vec::with_capacity(repeat as usize);
    let mut xcache = Vec::with_capacity(repeat as usize);
    let mut hashes = Vec::with_capacity(repeat as usize);
    for run in 1..=repeat {
        let result = conn.get(&options).await?;
        // NaN becomes null in the JSON line: an empty body has no first byte.
        let first_byte = result.first_byte.map_or(f64::NAN, ms);
        let first_byte_text = result
            .first_byte
            .map_or_else(|| "none".to_string(), |d| format!("{:.3} ms", ms(d)));
        let x_cache = result.x_cache().unwrap_or("").to_string();
        println!(
            "{} get {run}/{repeat}: status {}, {} bytes in {:.3} ms = {:.1} MiB/s, head {:.3} ms, first byte {first_byte_text}, x-cache {x_cache:?}, xxh3 {}",
            target.proto,
            result.status,
            result.received,
            ms(result.elapsed),
            result.mib_per_sec(),
            ms(result.head),
            result.xxh3_hex(),
        );
        statuses.push(u64::from(result.status));
        received.push(result.received);
        rates.push(result.mib_per_sec());
        heads.push(ms(result.head));
        first_bytes.push(first_byte);
        totals.push(ms(result.elapsed));
        xcache.push(x_cache);
        hashes.push(result.xxh3_hex());
    }
    let best = rates.iter().copied().fold(0.0, f64::max);
    let last = |values: &[u64]| values.last().copied().unwrap_or_default();
    println!(
        "{} {}: best {best:.1} MiB/s over {repeat} GET(s)",
        target.proto, target.url
    );
    let line = JsonLine::new()
        .text("kind", "get")
        .text("command", "get")
        .text("proto", target.proto.name())
        .text("url", &target.url)
        .text("range", range.as_deref().unwrap_or(""))
        .int("requests", u64::from(repeat))
        .int("status", last(&statuses))
        .ints("statuses", &statuses)
        .int("bytes", last(&received))
        .ints("received", &received)
        .num("mib_s_best", best)
        .nums("mib_s", &rates)
        .nums("ttfb_ms", &heads)
        .nums("first_byte_ms", &first_bytes)
        .nums("total_ms", &totals)
        .texts("xcache", &xcache)
        .text("xxh3", hashes.last().map_or("", String::as_str))
        .texts("xxh3_all", &hashes)
        .finish();
    println!("{line}");
    Ok(())
}

async fn rate(target: TargetArgs, options: RateOptions) -> Result<()> {
    let client = target.client()?;
    let report = rate::run(&client, &options).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{} {} rate: {} ok, {} errors in {:.2} s over {} conns = {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        report.proto,
        options.method,
        report.ok,
        report.errors,
        report.elapsed.as_secs_f64(),
        report.conns,
        report.per_sec(),
        ms(report.p50),
        ms(report.p99),
        ms(report.max)
    );
    if let Some(error) = &report.first_error {
        println!("first error: {error}");
    }
    let line = JsonLine::new()
        .text("kind", "rate")
        .text("proto", report.proto.name())
        .text("method", options.method.name())
        .text("url", &target.url)
        .int("conns", report.conns as u64)
        .int("ok", report.ok)
        .int("errors", report.errors)
        .num("secs", report.elapsed.as_secs_f64())
        .num("req_s", report.per_sec())
        .num("p50_ms", ms(report.p50))
        .num("p99_ms", ms(report.p99))
        .num("max_ms", ms(report.max))
        .text("first_error", report.first_error.as_deref().unwrap_or(""));
    // Absent rather than 0 when unchecked: 0 is a length one could expect.
    let line = match options.expect_bytes {
        Some(bytes) => line.int("expect_bytes", bytes),
        None => line,
    };
    println!("{}", line.finish());
    Ok(())
}

async fn tcp_baseline(bytes: u64) -> Result<()> {
    let tcp = tcp_baseline::tcp(bytes).await?;
    println!(
        "tcp loopback: {bytes} bytes in {:.3} s = {:.1} MiB/s",
        tcp.elapsed.as_secs_f64(),
        tcp.mib_per_sec()
    );
    let tls = tcp_baseline::tls(bytes).await?;
    println!(
        "tls loopback: {bytes} bytes in {:.3} s = {:.1} MiB/s",
        tls.elapsed.as_secs_f64(),
        tls.mib_per_sec()
    );
    let line = JsonLine::new()
        .text("kind", "baseline")
        .int("bytes", bytes)
        .num("tcp_mib_s", tcp.mib_per_sec())
        .num("tls_mib_s", tls.mib_per_sec())
        .finish();
    println!("{line}");
    Ok(())
}
