//! Scale-out on loopback (ARCHITECTURE.md §11, docs/deployment.md): three
//! real ingress nodes on 127.0.0.1-3 behind HAProxy in TCP mode, one pool of
//! remote workers pulling from all three worker APIs. Every upload is
//! answered exactly once with the right digest; a node killed mid-run fails
//! only its own in-flight requests, cleanly, while new ones go to the others
//! and the workers keep serving.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use service_ops::haproxy::{Backend, Balance, HaProxy};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use worker_client::{Origins, WorkerClient, WorkerConfig, workers};

const TOKEN: &str = "scale-out-test-token";

/// One ingress node: the real binary, killed when dropped.
struct Node {
    child: Child,
    http: SocketAddr,
    worker_api: SocketAddr,
}

impl Node {
    /// Default settings except addresses on `ip`, no built-in workers and a fixed token.
    fn start(dir: &Path, ip: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_upload-response-server"))
            .args(["--http", &format!("{ip}:0"), "--https", "none"])
            .args([
                "--worker-api",
                &format!("{ip}:0"),
                "--builtin-workers",
                "none",
            ])
            .args(["--worker-token", TOKEN, "--no-access-log", "--data-dir"])
            .arg(dir.join(ip))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.next().unwrap().unwrap();
        std::thread::spawn(move || for _ in lines {});
        let field = |key: &str| -> SocketAddr {
            let f = ready.split_whitespace().find_map(|f| f.strip_prefix(key));
            f.unwrap_or_else(|| panic!("{key} in {ready}"))
                .parse()
                .unwrap()
        };
        let (http, worker_api) = (field("http="), field("worker_api="));
        Self {
            child,
            http,
            worker_api,
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The body of upload `i`: 1..64 KiB of bytes that differ per upload.
fn body(i: usize) -> Vec<u8> {
    let len = 1024 + (i * 7919) % (63 * 1024);
    (0..len).map(|k| (k * 31 + i * 17) as u8).collect()
}

fn expected(body: &[u8]) -> String {
    format!("{} {}\n", hex::encode(Sha256::digest(body)), body.len())
}

/// How one upload ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// `200` with the right digest.
    Digest,
    /// The connection broke, or the answer was not a complete `200`; never a
    /// wrong digest.
    Failed,
}

/// Reads the answer to an upload whose head and body were sent.
fn finish(mut conn: TcpStream, body: &[u8]) -> Outcome {
    let mut answer = Vec::new();
    if conn.read_to_end(&mut answer).is_err() {
        return Outcome::Failed;
    }
    let answer = String::from_utf8_lossy(&answer);
    let complete = answer.starts_with("HTTP/1.1 200") && framed_whole(&answer);
    let right = answer.contains(&expected(body));
    assert!(
        !complete || right,
        "a complete 200 with a wrong digest: {answer}"
    );
    if complete && right {
        Outcome::Digest
    } else {
        Outcome::Failed
    }
}

/// Whether an HTTP/1.1 answer (read to the connection's end) is complete by
/// its own framing: as many body bytes as its `content-length`, or chunked
/// up to the last chunk. A response the worker wrote whole has a length,
/// one still being written when its head went out is chunked.
fn framed_whole(answer: &str) -> bool {
    let Some((head, body)) = answer.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    match length {
        Some(n) => body.len() == n,
        None => answer.ends_with("\r\n0\r\n\r\n"),
    }
}

fn open(front: SocketAddr, path: &str, len: usize) -> std::io::Result<TcpStream> {
    let mut conn = TcpStream::connect(front)?;
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {len}\r\n\r\n"
    )?;
    Ok(conn)
}

fn upload(front: SocketAddr, path: &str, body: &[u8]) -> Outcome {
    match open(front, path, body.len()).and_then(|mut c| c.write_all(body).map(|()| c)) {
        Ok(conn) => finish(conn, body),
        Err(_) => Outcome::Failed,
    }
}

/// The worker pool's record: which worker API origin served each path, how often.
type Served = Arc<Mutex<HashMap<String, Vec<String>>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_ingress_nodes_behind_haproxy_one_worker_pool_and_a_node_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Node> = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|ip| Node::start(dir.path(), ip))
        .collect();
    let backends: Vec<Backend> = nodes
        .iter()
        .map(|n| Backend {
            addr: n.http,
            ready: n.worker_api,
        })
        .collect();
    let haproxy = HaProxy::start(dir.path(), Balance::TcpRoundRobin, &backends).unwrap();
    let front = haproxy.addr;

    // One pool of workers, pulling from every node's worker API.
    let origins: Vec<String> = nodes
        .iter()
        .map(|n| format!("http://{}", n.worker_api))
        .collect();
    let mut config = WorkerConfig::new(
        Origins::parse_list(&origins).unwrap(),
        TOKEN,
        "pool",
        "/up/",
    );
    config.concurrency = 24;
    config.wait = Duration::from_millis(500);
    let worker = WorkerClient::new(config).unwrap();
    let served: Served = Arc::default();
    let stop = CancellationToken::new();
    let pool = {
        let (served, stop) = (served.clone(), stop.clone());
        tokio::spawn(async move {
            worker
                .run(stop, move |job| {
                    let served = served.clone();
                    async move {
                        let path = job.request().path.clone();
                        let origin = job.origin().to_owned();
                        served.lock().unwrap().entry(path).or_default().push(origin);
                        workers::sha256(job).await
                    }
                })
                .await;
        })
    };

    // 300 uploads through the balancer, 12 at a time.
    let outcomes = tokio::task::spawn_blocking(move || {
        std::thread::scope(|s| {
            let lanes: Vec<_> = (0..12)
                .map(|lane| {
                    s.spawn(move || {
                        (lane..300)
                            .step_by(12)
                            .map(|i| upload(front, &format!("/up/{i}"), &body(i)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            lanes
                .into_iter()
                .flat_map(|l| l.join().unwrap())
                .collect::<Vec<_>>()
        })
    })
    .await
    .unwrap();
    assert_eq!(outcomes.len(), 300);
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Digest),
        "{outcomes:?}"
    );
    {
        let served = served.lock().unwrap();
        for i in 0..300 {
            let by = served.get(&format!("/up/{i}")).map_or(0, Vec::len);
            assert_eq!(by, 1, "/up/{i} answered {by} times");
        }
        // The premise: the balancer really spread the work over all three nodes.
        for origin in &origins {
            let n = served.values().filter(|o| o[0] == *origin).count();
            assert!(n > 0, "no upload reached {origin}");
        }
    }

    // Six uploads in flight, half their body sent, spread over the nodes.
    let half = 32 * 1024;
    let inflight: Vec<(String, Vec<u8>, TcpStream)> = (0..6)
        .map(|k| {
            let path = format!("/up/inflight-{k}");
            let body: Vec<u8> = (0..2 * half).map(|b| (b * 13 + k) as u8).collect();
            let mut conn = open(front, &path, body.len()).unwrap();
            conn.write_all(&body[..half]).unwrap();
            (path, body, conn)
        })
        .collect();
    // Wait until every one is claimed, so we know which node holds it.
    let holder = |path: &str| served.lock().unwrap().get(path).map(|o| o[0].clone());
    for _ in 0..1500 {
        if inflight.iter().all(|(p, _, _)| holder(p).is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let victim = format!("http://{}", nodes[0].worker_api);
    let on_victim: Vec<bool> = inflight
        .iter()
        .map(|(p, _, _)| holder(p).unwrap_or_else(|| panic!("{p} never claimed")) == victim)
        .collect();
    assert!(
        on_victim.iter().any(|v| *v) && !on_victim.iter().all(|v| *v),
        "the in-flight uploads should straddle the victim: {on_victim:?}"
    );
    nodes[0].kill();

    let finished = tokio::task::spawn_blocking(move || {
        inflight
            .into_iter()
            .map(|(_, body, mut conn)| match conn.write_all(&body[half..]) {
                Ok(()) => finish(conn, &body),
                Err(_) => Outcome::Failed,
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (outcome, victim) in finished.iter().zip(&on_victim) {
        let want = if *victim {
            Outcome::Failed
        } else {
            Outcome::Digest
        };
        assert_eq!(*outcome, want, "{finished:?} / on victim {on_victim:?}");
    }

    // New uploads succeed through the two survivors; the same workers serve them.
    let after = tokio::task::spawn_blocking(move || {
        (300..360)
            .map(|i| upload(front, &format!("/up/{i}"), &body(i)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(after.iter().all(|o| *o == Outcome::Digest), "{after:?}");
    {
        let served = served.lock().unwrap();
        for i in 300..360 {
            let by = &served[&format!("/up/{i}")];
            assert_eq!(by.len(), 1, "/up/{i}: {by:?}");
            assert_ne!(by[0], victim);
        }
    }
    stop.cancel();
    pool.await.unwrap();
    drop(haproxy);
}
