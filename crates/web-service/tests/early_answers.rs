//! Issue 16: an answer sent before the request body ended (`413`, a handler that
//! stops reading) reaches every client, because the rest of the body is drained
//! (lingering) instead of the stream being reset under a client that still uploads.
//! curl (7.88 on Debian 12) drops such a response over HTTP/2 when `RST_STREAM`
//! arrives while it sends, so it is the client here wherever it speaks the protocol.

mod support;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use support::client::{self, Conn, Proto};
use support::{Harness, pattern};
use web_service::Metrics;

const LIMIT: u64 = 1024 * 1024;
/// What `/early/…` reads before it answers, and the size of its answer.
const EARLY_READ: u64 = 64 * 1024;
const ANSWER: u64 = 256 * 1024;

/// A file holding the first `len` pattern bytes (written once per test binary).
fn pattern_file(len: u64) -> PathBuf {
    static FILES: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let _one_writer = FILES.get_or_init(Default::default).lock().unwrap();
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("pattern-{len}.bin"));
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == len) {
        return path;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
    let mut written = 0u64;
    while written < len {
        let n = (len - written).min(pattern::CHUNK as u64) as usize;
        file.write_all(&pattern::chunk(written / pattern::CHUNK as u64, n))
            .unwrap();
        written += n as u64;
    }
    file.into_inner().unwrap().sync_all().unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// How curl sends the body.
#[derive(Debug, Clone, Copy)]
enum Upload {
    /// `--data-binary @file`: with `content-length`.
    Sized,
    /// `-T -` from stdin: chunked on HTTP/1.1, no length on HTTP/2.
    Streamed,
}

/// Runs curl; returns the status it printed and the body it saved.
async fn curl(
    server: &Harness,
    proto: Proto,
    path: &str,
    upload: Upload,
    file: PathBuf,
) -> (String, Vec<u8>) {
    let out = tempfile_path(proto, path, upload);
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "60", "-w", "%{http_code}", "-o"])
        .arg(&out);
    let url = match proto {
        Proto::H1 => {
            cmd.arg("--http1.1");
            format!("http://{}{path}", server.http)
        }
        Proto::H2c => {
            cmd.arg("--http2-prior-knowledge");
            format!("http://{}{path}", server.http)
        }
        Proto::H2Tls => {
            cmd.arg("--http2")
                .arg("--cacert")
                .arg(support::cert_dir().join("cert.pem"));
            format!("https://{}{path}", server.https)
        }
        other => panic!("curl is not used for {other:?}"),
    };
    match upload {
        Upload::Sized => {
            cmd.arg("--data-binary").arg(format!("@{}", file.display()));
        }
        Upload::Streamed => {
            cmd.args(["-X", "POST", "-T", "-"])
                .stdin(std::fs::File::open(&file).unwrap());
        }
    }
    cmd.arg(url);
    let output = tokio::task::spawn_blocking(move || cmd.output().expect("curl runs"))
        .await
        .unwrap();
    let status = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "curl {proto:?} {upload:?} {path} failed ({status}): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let body = std::fs::read(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    (status, body)
}

fn tempfile_path(proto: Proto, path: &str, upload: Upload) -> PathBuf {
    let name = format!("curl-{proto:?}-{upload:?}-{}.out", path.replace('/', "_"));
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

fn drained(metrics: &Metrics) -> u64 {
    metrics.lingering_drained.load(Ordering::Relaxed)
}

fn cut(metrics: &Metrics) -> u64 {
    metrics.lingering_cut.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_sees_413_over_h1_h2c_and_h2_tls_with_and_without_length() {
    let server = Harness::start_tweaked(|c| c.max_body_bytes = Some(LIMIT)).await;
    let file = pattern_file(2 * LIMIT);
    for proto in [Proto::H1, Proto::H2c, Proto::H2Tls] {
        for upload in [Upload::Sized, Upload::Streamed] {
            let (status, body) = curl(&server, proto, "/sha256", upload, file.clone()).await;
            assert_eq!(status, "413", "{proto:?} {upload:?}");
            let body = String::from_utf8_lossy(&body);
            assert!(
                body.contains("exceeds the limit"),
                "{proto:?} {upload:?}: {body}"
            );
        }
    }
    assert_eq!(
        cut(&server.metrics),
        0,
        "every body was drained, none reset"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_whole_early_answer_to_a_64mib_upload() {
    // Default lingering bounds.
    let server = Harness::start().await;
    let file = pattern_file(pattern::MIB64);
    let path = format!("/early/{EARLY_READ}/{ANSWER}");
    for proto in [Proto::H1, Proto::H2c, Proto::H2Tls] {
        let before = drained(&server.metrics);
        let (status, body) = curl(&server, proto, &path, Upload::Sized, file.clone()).await;
        assert_eq!(status, "200", "{proto:?}");
        assert_eq!(body.len() as u64, ANSWER, "{proto:?}");
        assert_eq!(hex_sha256(&body), pattern::sha256_hex(ANSWER), "{proto:?}");
        support::eventually("the upload was drained", || {
            drained(&server.metrics) > before
        })
        .await;
    }
    assert_eq!(cut(&server.metrics), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_client_gets_413_and_whole_early_answer() {
    let server = Harness::start_tweaked(|c| c.max_body_bytes = Some(pattern::MIB64 * 2)).await;
    let conn = Conn::connect(Proto::H3, &server).await;
    let before = drained(&server.metrics);
    let path = format!("/early/{EARLY_READ}/{ANSWER}");
    let req = client::request(
        "POST",
        &path,
        client::streaming(pattern::stream(pattern::MIB64)),
    );
    let resp = conn.send(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        client::digest(resp.into_body()).await,
        (ANSWER, pattern::sha256_hex(ANSWER))
    );
    support::eventually("the upload was drained", || {
        drained(&server.metrics) > before
    })
    .await;
    // The connection is still good for the next request.
    client::fetch_pattern(&conn, 1000).await;
    assert_eq!(cut(&server.metrics), 0);
    server.stop().await;

    let server = Harness::start_tweaked(|c| c.max_body_bytes = Some(LIMIT)).await;
    let conn = Conn::connect(Proto::H3, &server).await;
    for sized in [true, false] {
        let mut req = client::request(
            "POST",
            "/sha256",
            client::streaming(pattern::stream(2 * LIMIT)),
        );
        if sized {
            req.headers_mut()
                .insert(http::header::CONTENT_LENGTH, (2 * LIMIT).into());
        }
        let resp = conn.send(req).await.unwrap();
        assert_eq!(resp.status(), 413, "content-length: {sized}");
        assert!(
            client::text(resp.into_body())
                .await
                .contains("exceeds the limit")
        );
    }
    support::eventually("both bodies drained", || drained(&server.metrics) >= 2).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_past_the_lingering_bound_is_reset_and_the_connection_goes_on() {
    let server = Harness::start_tweaked(|c| c.lingering_bytes = 1024 * 1024).await;
    let path = format!("/early/{EARLY_READ}/{ANSWER}");
    for proto in [Proto::H2c, Proto::H3] {
        let conn = Conn::connect(proto, &server).await;
        let before = cut(&server.metrics);
        // The client uploads its 64 MiB after the answer: far past the 1 MiB allowance.
        let req = client::request(
            "POST",
            &path,
            client::streaming(pattern::stream(pattern::MIB64)),
        );
        let resp = conn.send(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{proto:?}");
        assert_eq!(
            client::digest(resp.into_body()).await,
            (ANSWER, pattern::sha256_hex(ANSWER)),
            "{proto:?}"
        );
        support::eventually("the upload was reset", || cut(&server.metrics) > before).await;
        client::fetch_pattern(&conn, 1000).await;
    }
    server.stop().await;
}

fn hex_sha256(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}
