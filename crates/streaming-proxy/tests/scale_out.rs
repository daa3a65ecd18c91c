//! Scale-out on loopback (ARCHITECTURE.md §11, docs/deployment.md): three
//! real proxy nodes on 127.0.0.1-3, each with its own cache, behind HAProxy
//! with `balance uri` + `hash-type consistent`. The cluster fetches each
//! object from the origin once; a node killed costs only its own share of
//! the objects, which miss once more, while every other object stays a hit.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use service_ops::haproxy::{Backend, Balance, HaProxy};
use support::*;

const OBJECTS: usize = 30;
const LEN: u64 = 64 * 1024;

/// One proxy node: the real binary, killed when dropped.
struct Node {
    child: Child,
    listen: SocketAddr,
    metrics: SocketAddr,
    log: PathBuf,
}

impl Node {
    fn start(dir: &Path, ip: &str, upstream: &str) -> Self {
        let log = dir.join(format!("{ip}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_streaming-proxy"))
            .args(["--upstream", upstream, "--log-format", "json"])
            .args([
                "--listen",
                &format!("{ip}:0"),
                "--metrics",
                &format!("{ip}:0"),
            ])
            .arg("--cache-dir")
            .arg(dir.join(ip))
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.next().unwrap().unwrap();
        let field = |key: &str| -> SocketAddr {
            let f = ready.split_whitespace().find_map(|f| f.strip_prefix(key));
            f.unwrap_or_else(|| panic!("{key} in {ready}"))
                .parse()
                .unwrap()
        };
        Self {
            listen: field("http="),
            metrics: field("metrics="),
            child,
            log,
        }
    }

    /// Paths this node answered, from its access log.
    fn served(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "access")
            .filter_map(|v| v["fields"]["path"].as_str().map(str::to_owned))
            .filter(|p| p.starts_with("/obj/"))
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn path(i: usize) -> String {
    format!("/obj/{i}")
}

/// Fetches every object through the balancer, checking its bytes; returns the
/// `x-cache` answers.
async fn fetch_all(client: &TestClient, front: SocketAddr) -> Vec<String> {
    let mut caches = Vec::new();
    for i in 0..OBJECTS {
        let got = request(client, "GET", format!("http://{front}{}", path(i)), None).await;
        assert_eq!(got.status, 200, "{}", path(i));
        assert_eq!(sha(&got.body), object_sha(i as u8, LEN), "{}", path(i));
        caches.push(got.x_cache().to_owned());
    }
    caches
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_proxy_nodes_behind_a_consistent_uri_hash_and_a_node_killed() {
    let origin = Origin::start().await;
    for i in 0..OBJECTS {
        origin.add(
            &path(i),
            Spec::new(LEN, i as u8).cache_control("max-age=3600"),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<Node> = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|ip| Node::start(dir.path(), ip, &origin.url()))
        .collect();
    let backends: Vec<Backend> = nodes
        .iter()
        .map(|n| Backend {
            addr: n.listen,
            ready: n.metrics,
        })
        .collect();
    let haproxy = {
        let dir = dir.path().to_owned();
        tokio::task::spawn_blocking(move || HaProxy::start(&dir, Balance::UriConsistent, &backends))
            .await
            .unwrap()
            .unwrap()
    };
    let client = client();
    let origin_fetches = |i: usize| origin.requests(&path(i)).len();

    let first = fetch_all(&client, haproxy.addr).await;
    assert!(first.iter().all(|c| c == "MISS"), "{first:?}");
    let second = fetch_all(&client, haproxy.addr).await;
    assert!(second.iter().all(|c| c == "HIT"), "{second:?}");
    for i in 0..OBJECTS {
        assert_eq!(origin_fetches(i), 1, "{} fetched more than once", path(i));
    }
    // Each object has one home: both of its requests went to the same node.
    let mut home: HashMap<String, usize> = HashMap::new();
    for (n, node) in nodes.iter().enumerate() {
        for p in node.served() {
            let previous = home.insert(p.clone(), n);
            assert!(previous.is_none_or(|h| h == n), "{p} served by two nodes");
        }
    }
    assert_eq!(home.len(), OBJECTS);
    for n in 0..nodes.len() {
        // The premise: the hash spreads the objects over every node.
        assert!(
            home.values().any(|h| *h == n),
            "node {n} owns nothing: {home:?}"
        );
    }

    let mut nodes = nodes;
    drop(nodes.remove(0));
    // HAProxy checks every 200 ms and takes a node out after one failure.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let third = fetch_all(&client, haproxy.addr).await;
    for i in 0..OBJECTS {
        let lost = home[&path(i)] == 0;
        let (want_fetches, want_cache) = if lost { (2, "MISS") } else { (1, "HIT") };
        assert_eq!(
            (origin_fetches(i), third[i].as_str()),
            (want_fetches, want_cache),
            "{} (home node {})",
            path(i),
            home[&path(i)]
        );
    }
}
