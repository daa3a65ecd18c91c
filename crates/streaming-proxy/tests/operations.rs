//! Operating the real binary: stdout holds only the READY line, each request
//! gets a JSON access log line on stderr, the metrics listener answers the
//! probes and serves one page that passes `promtool check metrics`.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const KIB: u64 = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_probes_and_a_valid_metrics_page() {
    let origin = Origin::start().await;
    origin.add("/obj", Spec::new(100 * KIB, 41));
    let dir = tempfile::tempdir().unwrap();
    let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_streaming-proxy"))
        .args(["--upstream", &origin.url(), "--listen", "127.0.0.1:0"])
        .args(["--metrics", "127.0.0.1:0", "--log-format", "json"])
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::task::spawn_blocking(move || {
        let first = lines.next().unwrap().unwrap();
        (first, lines)
    });
    let (ready, lines) = ready.await.unwrap();
    let field = |key: &str| -> String {
        ready
            .split_whitespace()
            .find_map(|f| f.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {ready:?}"))
            .to_owned()
    };
    let (listen, metrics) = (field("http="), field("metrics="));

    let c = client();
    let miss = request(&c, "GET", format!("http://{listen}/obj"), None).await;
    assert_eq!(sha(&miss.body), object_sha(41, 100 * KIB));
    let hit = request(&c, "GET", format!("http://{listen}/obj"), None).await;
    assert_eq!((hit.status, hit.x_cache()), (200, "HIT"));
    for (path, status, body) in [("/healthz", 200, "ok\n"), ("/readyz", 200, "ready\n")] {
        let got = request(&c, "GET", format!("http://{metrics}{path}"), None).await;
        assert_eq!(
            (got.status, &got.body[..]),
            (status, body.as_bytes()),
            "{path}"
        );
    }
    let page = request(&c, "GET", format!("http://{metrics}/metrics"), None).await;
    assert_eq!(
        page.headers["content-type"],
        service_ops::PROMETHEUS_CONTENT_TYPE
    );
    let page = String::from_utf8(page.body).unwrap();
    if let Err(said) = service_ops::promtool_check(&page) {
        panic!("promtool: {said}\n{page}");
    }
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("streaming_proxy_"), "unprefixed: {line}");
    }
    assert!(
        page.contains("streaming_proxy_cache_hits_total 1"),
        "{page}"
    );
    assert!(
        page.contains("streaming_proxy_web_requests_total{protocol=\"http1\"} 2"),
        "the proxy listener's counters are on the page: {page}"
    );
    assert!(
        page.contains("streaming_proxy_build_info{version="),
        "{page}"
    );

    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.is_empty(), "stdout after READY: {rest:?}");
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    let access: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON log line"))
        .filter(|v| v["target"] == "access")
        .collect();
    let objects: Vec<_> = access
        .iter()
        .filter(|v| v["fields"]["path"] == "/obj")
        .map(|v| &v["fields"])
        .collect();
    assert_eq!(objects.len(), 2, "{access:?}");
    for f in objects {
        assert_eq!(
            (&f["method"], &f["status"], &f["protocol"], &f["complete"]),
            (&"GET".into(), &200.into(), &"http1".into(), &true.into()),
            "{f}"
        );
        assert_eq!(f["bytes_out"], 100 * KIB, "{f}");
        assert!(f["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            access
                .iter()
                .filter(|v| v["fields"]["path"] == path)
                .count(),
            1,
            "{path}"
        );
    }
}

#[test]
fn check_config_layers_file_then_environment_then_flags_with_units() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sp.toml");
    std::fs::write(
        &file,
        "upstream = \"http://127.0.0.1:9\"\nl1_bytes = \"64MiB\"\nslice_size = \"64KiB\"\n\
         default_ttl_secs = \"2h\"\nmax_fills = 0\n",
    )
    .unwrap();
    let run = |env: &[(&str, &str)], flags: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_streaming-proxy"))
            .arg("--config")
            .arg(&file)
            .arg("--check-config")
            .args(flags)
            .env_remove("SP_MAX_FILLS")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), err)
    };
    let (code, err) = run(&[], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("max_fills"), "{err}");
    let (code, err) = run(&[("SP_MAX_FILLS", "4")], &[]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run(&[("SP_MAX_FILLS", "4")], &["--max-fills", "0"]);
    assert_eq!(code, Some(1), "{err}");
    let (code, err) = run(&[("SP_MAX_FILLS", "4")], &["--slice-size", "12"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("slice_size"), "{err}");
    std::fs::write(&file, "upstreem = \"http://x\"\n").unwrap();
    let (code, err) = run(&[], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("upstreem"), "{err}");
}
