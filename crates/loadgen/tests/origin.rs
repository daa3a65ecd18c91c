//! The bare origin, the GET client and `rate --method get` over loopback, and
//! the `origin` / `get` commands of the built binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use loadgen::clients::{Client, GetOptions, GetResult};
use loadgen::origin::{self, LAST_MODIFIED_DATE, MAX_OBJECT, OBJECT_PERIOD, Origin, OriginStats};
use loadgen::rate::{self, Method, RateOptions};
use loadgen::{Error, Proto};

const TEN_MIB: u64 = 10 << 20;

async fn start() -> Origin {
    Origin::start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

fn client(origin: &Origin, proto: Proto, path: &str) -> Client {
    let url = format!("http://{}{path}", origin.http_addr());
    Client::new(proto, &url, None).unwrap()
}

/// One GET of `path` on a new connection.
async fn get(origin: &Origin, proto: Proto, path: &str, range: Option<&str>) -> GetResult {
    let options = GetOptions {
        range: range.map(str::to_string),
        keep_body: 1 << 20,
        ..GetOptions::default()
    };
    let mut conn = client(origin, proto, path).connect().await.unwrap();
    conn.get(&options)
        .await
        .unwrap_or_else(|e| panic!("{proto} GET {path} {range:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_objects_hash_as_expected_over_h1_and_h2() {
    let origin = start().await;
    let expected = origin::object_xxh3(0, TEN_MIB);
    let options = GetOptions::default();
    for proto in [Proto::H1, Proto::H2] {
        let mut conn = client(&origin, proto, "/obj/10M?n=7")
            .connect()
            .await
            .unwrap();
        // Several GETs on one connection: each must be whole and identical.
        for run in 0..3 {
            let result = conn.get(&options).await.unwrap();
            assert_eq!(result.status, 200, "{proto} run {run}");
            assert_eq!(result.received, TEN_MIB, "{proto} run {run}");
            assert_eq!(result.xxh3, Some(expected), "{proto} run {run}");
            assert_eq!(result.xxh3_hex(), format!("{expected:016x}"));
            assert!(result.head <= result.first_byte.unwrap());
            assert!(result.first_byte.unwrap() <= result.elapsed);
            assert_eq!(result.x_cache(), None);
        }
    }
    let result = get(&origin, Proto::H1, "/obj/10M", None).await;
    assert_eq!(result.header("content-length"), Some("10485760"));
    assert_eq!(result.header("accept-ranges"), Some("bytes"));
    assert_eq!(result.header("etag"), Some("\"obj-10485760\""));
    assert_eq!(result.header("last-modified"), Some(LAST_MODIFIED_DATE));
    assert_eq!(result.header("cache-control"), Some("public, max-age=3600"));
    assert_eq!(
        result.header("content-type"),
        Some("application/octet-stream")
    );
    // The kept prefix is the bytes byte_at names; suffixes name the same size.
    let prefix: Vec<u8> = (0..result.body.len() as u64).map(origin::byte_at).collect();
    assert_eq!(result.body, prefix);
    let kib = get(&origin, Proto::H2, "/obj/3KiB", None).await;
    assert_eq!(kib.received, 3 << 10);
    assert_eq!(kib.header("etag"), Some("\"obj-3072\""));
    let empty = get(&origin, Proto::H1, "/obj/0", None).await;
    assert_eq!((empty.status, empty.received), (200, 0));
    assert_eq!(empty.first_byte, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_select_the_right_bytes() {
    let origin = start().await;
    let total = TEN_MIB;
    let period = OBJECT_PERIOD as u64;
    // (Range spec, start, end exclusive): start, middle across the period
    // boundary, suffix, open-ended, an end past the object, a suffix longer
    // than the object.
    let cases = [
        ("0-99", 0, 100),
        ("1000000-1100000", 1_000_000, 1_100_001),
        ("-4096", total - 4096, total),
        ("9000000-", 9_000_000, total),
        (
            &format!("{}-{}", period - 1, period + 1),
            period - 1,
            period + 2,
        ),
        ("10485000-99999999", 10_485_000, total),
    ];
    for proto in [Proto::H1, Proto::H2] {
        for (spec, start, end) in &cases {
            let result = get(&origin, proto, "/obj/10M", Some(spec)).await;
            assert_eq!(result.status, 206, "{proto} {spec}");
            assert_eq!(result.received, end - start, "{proto} {spec}");
            assert_eq!(
                result.xxh3,
                Some(origin::object_xxh3(*start, *end)),
                "{proto} {spec}"
            );
            let content_range = format!("bytes {start}-{}/{total}", end - 1);
            assert_eq!(result.header("content-range"), Some(content_range.as_str()));
            assert_eq!(
                result.header("content-length"),
                Some((end - start).to_string().as_str())
            );
        }
        let small = get(&origin, proto, "/obj/1K", Some("-5000")).await;
        assert_eq!(small.status, 206);
        assert_eq!(small.header("content-range"), Some("bytes 0-1023/1024"));
        for unsatisfiable in ["10485760-", "20000000-20000001", "-0"] {
            let result = get(&origin, proto, "/obj/10M", Some(unsatisfiable)).await;
            assert_eq!(result.status, 416, "{proto} {unsatisfiable}");
            assert_eq!(result.received, 0);
            assert_eq!(result.header("content-range"), Some("bytes */10485760"));
        }
        // Multi-range and malformed: ignored, the whole object.
        for ignored in ["0-1,5-6", "5-1", "abc", "-"] {
            let result = get(&origin, proto, "/obj/1M", Some(ignored)).await;
            assert_eq!(result.status, 200, "{proto} {ignored}");
            assert_eq!(result.received, 1 << 20);
            assert_eq!(result.header("content-range"), None);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_has_the_length_and_no_body() {
    let origin = start().await;
    // HTTP/1.1 by hand: a HEAD answer with any body would shift the pipelined
    // second answer, so the bytes after the first head must be the second's.
    let mut tcp = std::net::TcpStream::connect(origin.http_addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(
        b"HEAD /obj/5M HTTP/1.1\r\nHost: o\r\nRange: bytes=0-9\r\n\r\n\
          GET /stats HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    let (head, rest) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-length: 5242880"), "{head}");
    assert!(head.contains("etag: \"obj-5242880\""), "{head}");
    assert!(
        !head.contains("content-range"),
        "HEAD ignores Range: {head}"
    );
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{rest:?}");
    assert!(rest.ends_with(r#"{"requests":1,"bytes":0}"#), "{rest:?}");

    // HTTP/2 (h2c prior knowledge) with hyper's client directly.
    let tcp = tokio::net::TcpStream::connect(origin.http_addr())
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let uri = format!("http://{}/obj/5M", origin.http_addr());
    let request = http::Request::head(uri).body(Empty::new()).unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-length"], "5242880");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
    assert_eq!(
        origin.stats(),
        OriginStats {
            requests: 2,
            bytes: 0
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_object_requests_and_body_bytes() {
    let origin = start().await;
    assert_eq!(origin.stats(), OriginStats::default());
    get(&origin, Proto::H1, "/obj/1M", None).await;
    get(&origin, Proto::H2, "/obj/1M?x=1", Some("0-9")).await;
    get(&origin, Proto::H1, "/obj/1M", Some("2000000-")).await;
    let expected = OriginStats {
        requests: 3,
        bytes: (1 << 20) + 10,
    };
    assert_eq!(origin.stats(), expected);
    for proto in [Proto::H1, Proto::H2] {
        let stats = get(&origin, proto, "/stats", None).await;
        assert_eq!(stats.status, 200);
        assert_eq!(stats.body_text(), expected.to_json());
        assert_eq!(stats.header("cache-control"), Some("no-store"));
    }
    // /stats is not an object request.
    assert_eq!(origin.stats(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sizes_paths_and_methods_are_refused() {
    let origin = start().await;
    let too_big = format!("/obj/{}", MAX_OBJECT + 1);
    for path in [
        "/obj/65G",
        "/obj/1T",
        "/obj/abc",
        "/obj/",
        "/obj/1K/x",
        &too_big,
    ] {
        let result = get(&origin, Proto::H1, path, None).await;
        assert_eq!(result.status, 404, "{path}");
    }
    assert_eq!(get(&origin, Proto::H2, "/nowhere", None).await.status, 404);
    // The largest object is announced, not generated up front.
    let tcp = tokio::net::TcpStream::connect(origin.http_addr())
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = http::Request::head("/obj/64G")
        .header("host", "o")
        .body(Empty::new())
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-length"], "68719476736");
    // HTTP/1.1 takes the next request only once the connection has finished the
    // last exchange; without this wait the send races it ("connection was not ready").
    send.ready().await.unwrap();
    let request = http::Request::post("/obj/1K")
        .header("host", "o")
        .body(Empty::new())
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_get_counts_wrong_lengths_as_errors() {
    let origin = start().await;
    for proto in [Proto::H1, Proto::H2] {
        let kib = client(&origin, proto, "/obj/1K");
        let right = RateOptions {
            conns: 4,
            requests: 200,
            method: Method::Get,
            expect_bytes: Some(1024),
            ..RateOptions::default()
        };
        let report = rate::run(&kib, &right).await.unwrap();
        assert_eq!(
            (report.ok, report.errors),
            (200, 0),
            "{proto}: {:?}",
            report.first_error
        );
        assert!(report.p50 <= report.p99 && report.p99 <= report.max);
        let wrong = RateOptions {
            expect_bytes: Some(1000),
            ..right.clone()
        };
        let report = rate::run(&kib, &wrong).await.unwrap();
        assert_eq!((report.ok, report.errors), (0, 200), "{proto}");
        let error = report.first_error.unwrap();
        assert!(error.contains("1024") && error.contains("1000"), "{error}");
        let unchecked = RateOptions {
            expect_bytes: None,
            ..right.clone()
        };
        assert_eq!(rate::run(&kib, &unchecked).await.unwrap().ok, 200);
        let missing = RateOptions {
            expect_bytes: None,
            ..right
        };
        let report = rate::run(&client(&origin, proto, "/obj/x"), &missing)
            .await
            .unwrap();
        assert_eq!((report.ok, report.errors), (0, 200), "{proto}");
        assert!(report.first_error.unwrap().contains("404"));
    }
    assert_eq!(origin.stats().requests, 2 * 4 * 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_is_refused_over_ws() {
    let client = Client::new(Proto::Ws, "ws://127.0.0.1:9/obj/1K", None).unwrap();
    let options = RateOptions {
        method: Method::Get,
        ..RateOptions::default()
    };
    // Refused before any connection is attempted (nothing listens on 9).
    match rate::run(&client, &options).await {
        Err(Error::Argument(message)) => assert!(message.contains("h1, h2 and h3"), "{message}"),
        other => panic!("{other:?}"),
    }
}

/// A running `loadgen origin` child; ends it by closing its standard input.
struct OriginProcess {
    child: std::process::Child,
    addr: String,
}

impl OriginProcess {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["origin", "--http", "127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("READY http=")
            .unwrap_or_else(|| panic!("not a READY line: {line:?}"))
            .to_string();
        Self { child, addr }
    }

    /// Closes standard input and waits for a clean exit; returns stderr.
    fn stop(mut self) -> String {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "origin exited with {status}");
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    pipe.read_to_string(&mut stderr).unwrap();
                }
                return stderr;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("origin ignored end of standard input");
    }
}

/// The string value of `"key":"…"` in a flat JSON line.
fn text_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let rest = &json[start..];
    Some(&rest[..rest.find('"')?])
}

#[test]
fn binary_origin_and_get_speak_their_lines() {
    let origin = OriginProcess::start();
    let url = format!("http://{}/obj/3M?n=1", origin.addr);
    for proto in ["h1", "h2"] {
        let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["get", "--proto", proto, "--url", &url, "--repeat", "2"])
            .args(["--range", "-1048576"])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{proto}: {output:?}");
        let json = stdout.lines().last().unwrap();
        assert!(json.starts_with('{') && json.ends_with('}'), "{json}");
        assert_eq!(text_field(json, "command"), Some("get"), "{json}");
        assert_eq!(text_field(json, "proto"), Some(proto), "{json}");
        let start = (3 << 20) - (1 << 20);
        let expected = format!("{:016x}", origin::object_xxh3(start, 3 << 20));
        assert_eq!(text_field(json, "xxh3"), Some(expected.as_str()), "{json}");
        for field in [
            "\"requests\":2,",
            "\"status\":206,",
            "\"bytes\":1048576,",
            "\"xcache\":[\"\",\"\"]",
            "\"mib_s\":[",
            "\"ttfb_ms\":[",
            "\"mib_s_best\":",
        ] {
            assert!(json.contains(field), "{field} missing in {json}");
        }
    }
    // Argument errors are reported, not panics.
    let refused = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["get", "--proto", "ws", "--url", "ws://127.0.0.1:9/x"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("h1, h2 or h3"), "{stderr}");
    let stderr = origin.stop();
    assert!(stderr.contains("4 object requests"), "{stderr}");
}
