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
    use std::io::{BufRead, BufReader};
    let origin = Origin::start().await;
    origin.add("/r", Spec::new(4096, 33));
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_streaming-proxy"))
        .args(["--upstream", &origin.url(), "--listen", "127.0.0.1:0"])
        .args(["--metrics", "127.0.0.1:0", "--cache-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    // Logs go to stderr: the first stdout line is the READY line.
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
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
