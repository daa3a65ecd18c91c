//! The binary's contract: flags, `--config` TOML and `/metrics` (ARCHITECTURE.md §9).
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[String]) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_streaming-proxy"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Running(child)
}

/// Starts the binary and returns its READY line (logs go to stderr: the first
/// stdout line is the READY line).
async fn start_ready(mut cmd: Command) -> (Running, String) {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    (running, line)
}

async fn get_url(c: &TestClient, url: String) -> Got {
    for _ in 0..200 {
        let req = http::Request::get(url.clone())
            .body(http_body_util::Empty::new())
            .unwrap();
        if c.request(req).await.is_ok() {
            return request(c, "GET", url, None).await;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{url} never answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_serve_and_metrics() {
    let origin = Origin::start().await;
    origin.add("/obj", Spec::new(100 * 1024, 31));
    let dir = tempfile::tempdir().unwrap();
    let (listen, metrics) = (free_addr(), free_addr());
    let args: Vec<String> = [
        "--upstream",
        &origin.url(),
        "--listen",
        &listen.to_string(),
        "--cache-dir",
        dir.path().to_str().unwrap(),
        "--mode",
        "normal",
        "--slice-size",
        "65536",
        "--l1-bytes",
        "1048576",
        "--l2-bytes",
        "10485760",
        "--default-ttl-secs",
        "60",
        "--metrics",
        &metrics.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _proxy = spawn(&args);
    let c = client();
    let miss = get_url(&c, format!("http://{listen}/obj")).await;
    assert_eq!(sha(&miss.body), sha(&object_bytes(31, 0, 100 * 1024)));
    let hit = get_url(&c, format!("http://{listen}/obj")).await;
    assert_eq!(hit.x_cache(), "HIT");
    let m = get_url(&c, format!("http://{metrics}/metrics")).await;
    let text = String::from_utf8(m.body).unwrap();
    assert!(text.contains("streaming_proxy_cache_hits_total"), "{text}");
    assert!(text.contains("streaming_proxy_fills_in_progress"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_with_replay_mode() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let file = dir.path().join("proxy.toml");
    let cache = dir.path().join("cache");
    std::fs::write(
        &file,
        format!(
            "upstream = \"{}\"\nlisten = \"{listen}\"\ncache_dir = \"{}\"\nmode = \"replay\"\n",
            origin.url(),
            cache.display()
        ),
    )
    .unwrap();
    let _proxy = spawn(&["--config".into(), file.display().to_string()]);
    let got = get_url(&client(), format!("http://{listen}/absent")).await;
    assert_eq!((got.status, got.x_cache()), (504, "MISS"));
    assert!(
        origin.requests("/absent").is_empty(),
        "replay never asks the origin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_zero_addresses_reported_on_a_ready_line() {
    let origin = Origin::start().await;
    origin.add("/r", Spec::new(4096, 33));
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streaming-proxy"));
    cmd.args(["--upstream", &origin.url(), "--listen", "127.0.0.1:0"])
        .args(["--metrics", "127.0.0.1:0", "--cache-dir"])
        .arg(dir.path());
    let (_running, line) = start_ready(cmd).await;
    let fields: Vec<&str> = line.trim().split(' ').collect();
    assert_eq!(fields[0], "READY", "{line:?}");
    let http = fields[1].strip_prefix("http=").unwrap();
    let metrics = fields[2].strip_prefix("metrics=").unwrap();
    assert!(!http.ends_with(":0") && !metrics.ends_with(":0"), "{line}");
    let c = client();
    let got = request(&c, "GET", format!("http://{http}/r"), None).await;
    assert_eq!((got.status, got.x_cache()), (200, "MISS"));
    assert_eq!(sha(&got.body), sha(&object_bytes(33, 0, 4096)));
    let m = request(&c, "GET", format!("http://{metrics}/metrics"), None).await;
    assert!(
        String::from_utf8(m.body)
            .unwrap()
            .contains("streaming_proxy_")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_serves_h1_h2_and_h3() {
    use loadgen::clients::{Client, GetOptions};
    use loadgen::target::Proto;
    let origin = Origin::start().await;
    let len = 3 * 1024 * 1024 + 5;
    origin.add("/t", Spec::new(len, 41));
    let dir = tempfile::tempdir().unwrap();
    let tls = loadgen::tls::ensure_self_signed(&dir.path().join("tls")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streaming-proxy"));
    cmd.args(["--upstream", &origin.url(), "--listen", "127.0.0.1:0"])
        .args(["--listen-tls", "127.0.0.1:0", "--slice-size", "1048576"])
        .arg("--tls-cert")
        .arg(&tls.cert)
        .arg("--tls-key")
        .arg(&tls.key)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"));
    let (_running, line) = start_ready(cmd).await;
    let https = line
        .split(' ')
        .find_map(|f| f.trim().strip_prefix("https="))
        .unwrap_or_else(|| panic!("no https= in {line:?}"));
    let want = xxhash_rust::xxh3::xxh3_64(&object_bytes(41, 0, len));
    let options = GetOptions {
        keep_body: 0,
        ..GetOptions::default()
    };
    // The first GET fills the cache; every protocol then gets the same bytes.
    for (proto, x_cache) in [(Proto::H2, "MISS"), (Proto::H1, "HIT"), (Proto::H3, "HIT")] {
        let url = format!("https://{https}/t");
        let client = Client::new(proto, &url, Some(&tls.cert)).unwrap();
        let got = client.connect().await.unwrap().get(&options).await.unwrap();
        assert_eq!(
            (got.status, got.x_cache(), got.received, got.xxh3),
            (200, Some(x_cache), len, Some(want)),
            "{proto}"
        );
    }
    let ranged = GetOptions {
        range: Some("1048570-1048580".into()),
        keep_body: 64,
        hash: false,
    };
    let client = Client::new(Proto::H3, &format!("https://{https}/t"), Some(&tls.cert)).unwrap();
    let got = client.connect().await.unwrap().get(&ranged).await.unwrap();
    assert_eq!(got.status, 206);
    assert_eq!(&got.body[..], &object_bytes(41, 1_048_570, 1_048_581)[..]);
    assert_eq!(
        origin.requests("/t").len(),
        4,
        "one fetch per slice, shared by all"
    );
}

#[test]
fn tls_listener_without_its_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let tls = loadgen::tls::ensure_self_signed(dir.path()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_streaming-proxy"))
        .args([
            "--upstream",
            "http://127.0.0.1:9",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--listen-tls", "127.0.0.1:0", "--tls-cert"])
        .arg(&tls.cert)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tls_key"), "{stderr}");
}
