//! Remote workers end to end: the real server (in-process, loopback
//! listeners) and `worker-client` talking to it over HTTP/1.1 or h2c only,
//! with loadgen's real clients (H1, H2, H3, WSS) uploading.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use loadgen::clients::UploadOptions;
use loadgen::target::Proto;
use tokio_util::sync::CancellationToken;
use worker_client::{ClientError, Origins, RemoteJob, WorkerClient, WorkerConfig, workers};

mod common;
use common::{TOKEN, TestServer, pattern_digest};

/// A server with no built-in workers (only remote workers answer) and a
/// worker lease of `lease_ms`.
async fn node(lease_ms: u64) -> TestServer {
    TestServer::start(|cli| {
        cli.worker_lease_ms = Some(lease_ms.into());
        cli.response_timeout_ms = Some(20_000.into());
        // Every test client is 127.0.0.1; up to 100 requests run at once per node.
        cli.max_streams_per_client = Some(128);
    })
    .await
}

fn config(origins: &[String], id: &str, prefix: &str, h2c: bool) -> WorkerConfig {
    let mut config = WorkerConfig::new(Origins::parse_list(origins).unwrap(), TOKEN, id, prefix);
    config.http2 = h2c;
    config.wait = Duration::from_millis(500);
    config
}

/// Long-polls `origin` until a request is claimed.
async fn claim_one(worker: &WorkerClient, origin: &str) -> RemoteJob {
    loop {
        if let Some(job) = worker.claim(origin).await.unwrap() {
            return job;
        }
    }
}

/// A remote worker running in a task.
struct RunningWorker {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningWorker {
    /// Stops claiming and waits for the jobs in flight to finish.
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

/// Runs a remote worker in a task until it is stopped.
fn spawn_worker<H, F>(config: WorkerConfig, handler: H) -> RunningWorker
where
    H: Fn(RemoteJob) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), ClientError>> + Send + 'static,
{
    let client = WorkerClient::new(config).unwrap();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move { client.run(token, handler).await });
    RunningWorker { stop, task }
}

/// A remote sha256 worker (HTTP/1.1 or h2c) answers an upload made over
/// `proto`; then a remote echo worker streams a body back byte for byte.
async fn remote_worker_serves(proto: Proto, h2c: bool) {
    let node = node(30_000).await;
    let origins = [node.worker_origin()];
    let sha = spawn_worker(
        config(&origins, "sha", "/remote-sha256", h2c),
        workers::sha256,
    );
    let echo = spawn_worker(config(&origins, "echo", "/remote-echo", h2c), workers::echo);

    node.check_sha256(proto, "/remote-sha256", 8 * 1024 * 1024 + 123)
        .await;
    node.check_echo(proto, "/remote-echo", 4 * 1024 * 1024 + 7)
        .await;

    sha.stop().await;
    echo.stop().await;
    node.stop().await;
}

macro_rules! matrix {
    ($($name:ident: $proto:expr, $h2c:expr;)*) => {
        $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() { remote_worker_serves($proto, $h2c).await })*
    };
}

matrix! {
    worker_h1_client_h1: Proto::H1, false;
    worker_h1_client_h2: Proto::H2, false;
    worker_h1_client_h3: Proto::H3, false;
    worker_h1_client_wss: Proto::Ws, false;
    worker_h2c_client_h1: Proto::H1, true;
    worker_h2c_client_h2: Proto::H2, true;
    worker_h2c_client_h3: Proto::H3, true;
    worker_h2c_client_wss: Proto::Ws, true;
}

/// Who answered what: `(origin, stream id, worker, path)` per claim.
type ClaimLog = Arc<Mutex<Vec<(String, u64, String, String)>>>;

/// Reads the body, then answers `<worker> <origin> <stream id> <path>`.
fn tagging_worker(
    log: ClaimLog,
    id: &'static str,
) -> impl Fn(RemoteJob) -> std::pin::Pin<Box<dyn Future<Output = Result<(), ClientError>> + Send>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |job: RemoteJob| {
        let log = log.clone();
        Box::pin(async move {
            let (origin, stream, path) = (
                job.origin().to_owned(),
                job.stream_id(),
                job.request().path.clone(),
            );
            log.lock()
                .unwrap()
                .push((origin.clone(), stream, id.to_owned(), path.clone()));
            let mut body = job.body().await?;
            while let Some(chunk) = body.next().await {
                chunk?;
            }
            let text = Bytes::from(format!("{id} {origin} {stream} {path}"));
            let once = futures_util::stream::once(async move { Ok::<_, ClientError>(text) });
            job.respond(StatusCode::OK, &HeaderMap::new(), once).await
        })
    }
}

/// Two ingress nodes, three workers each serving both: 200 concurrent
/// requests spread over the nodes are each answered exactly once, by a
/// worker that claimed that very stream on that very node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_three_workers_answer_each_request_once() {
    let nodes = [node(30_000).await, node(30_000).await];
    let origins: Vec<String> = nodes.iter().map(TestServer::worker_origin).collect();
    let log = ClaimLog::default();
    let workers: Vec<_> = ["w1", "w2", "w3"]
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            let mut c = config(&origins, id, "/r/", i == 2);
            c.concurrency = 32;
            spawn_worker(c, tagging_worker(log.clone(), id))
        })
        .collect();

    let requests = (0..200).map(|i| {
        let client = nodes[i % 2].h1_client(&format!("/r/{i}"));
        async move {
            let mut conn = client.connect().await.unwrap();
            (i, conn.request(1024).await.unwrap())
        }
    });
    let results = futures_util::future::join_all(requests).await;

    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 200, "each request claimed exactly once");
    let claimed: HashSet<_> = log.iter().cloned().collect();
    let mut answered_paths = HashSet::new();
    for (i, result) in results {
        assert!(result.succeeded(), "request {i}: {result:?}");
        let text = result.body_text();
        let parts: Vec<&str> = text.split(' ').collect();
        let [worker, origin, stream, path] = parts[..] else {
            panic!("request {i}: unexpected answer {text:?}");
        };
        assert_eq!(path, format!("/r/{i}"), "request {i} got another's answer");
        assert_eq!(
            origin,
            origins[i % 2],
            "request {i} answered via the wrong node"
        );
        let entry = (
            origin.to_owned(),
            stream.parse().unwrap(),
            worker.to_owned(),
            path.to_owned(),
        );
        assert!(
            claimed.contains(&entry),
            "request {i}: answered by a non-claimer"
        );
        assert!(answered_paths.insert(path.to_owned()));
    }
    let by_worker = |w: &str| log.iter().filter(|e| e.2 == w).count();
    assert!(
        ["w1", "w2", "w3"].iter().all(|w| by_worker(w) > 0),
        "work spread over all workers: {:?}",
        ["w1", "w2", "w3"].map(by_worker)
    );
    for worker in workers {
        worker.stop().await;
    }
    for node in nodes {
        node.stop().await;
    }
}

/// A worker that dies (no release, no response) after claiming and reading
/// the body: once its lease runs out the request goes to another worker,
/// and the client never notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dead_before_its_response_is_replaced() {
    let node = node(400).await;
    let origins = [node.worker_origin()];
    let dead = WorkerClient::new(config(&origins, "doomed", "/remote-sha256", false)).unwrap();
    let upload = {
        let client = node.tls_client(Proto::H2, "/remote-sha256");
        tokio::spawn(async move {
            let options = UploadOptions {
                bytes: 100_000,
                ..UploadOptions::default()
            };
            (client.upload(&options).await.unwrap(), options)
        })
    };
    let job = claim_one(&dead, &origins[0]).await;
    let mut body = job.body().await.unwrap();
    while let Some(chunk) = body.next().await {
        chunk.unwrap();
    }
    // The process "dies": nothing more is sent, not even a release.
    std::mem::forget(job);

    let running = spawn_worker(
        config(&origins, "heir", "/remote-sha256", true),
        workers::sha256,
    );
    let (result, options) = upload.await.unwrap();
    assert!(result.succeeded(), "{result:?}");
    assert_eq!(
        result.body_text(),
        format!("{} {}\n", pattern_digest(&options), options.bytes)
    );
    running.stop().await;
    node.stop().await;
}

/// A worker that dies after its response started: the client's response
/// is reset (HTTP/2 stream reset), never silently cut short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dead_after_its_response_started_resets_the_client() {
    let node = node(30_000).await;
    let origins = [node.worker_origin()];
    // Headers and a first chunk reach the client, then the worker's
    // connection breaks (its response body fails midway).
    let dying = |job: RemoteJob| async move {
        let body = futures_util::stream::iter([Ok(Bytes::from_static(b"partial answer"))]).chain(
            futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Err(std::io::Error::other("worker process died"))
            }),
        );
        job.respond(StatusCode::OK, &HeaderMap::new(), body).await
    };
    let running = spawn_worker(config(&origins, "dying", "/remote-echo", false), dying);
    for proto in [Proto::H1, Proto::H2] {
        let outcome = node
            .tls_client(proto, "/remote-echo")
            .upload(&UploadOptions {
                bytes: 1000,
                ..UploadOptions::default()
            })
            .await;
        assert!(
            outcome.is_err(),
            "{proto}: a cut response must fail: {outcome:?}"
        );
    }
    running.stop().await;
    node.stop().await;
}

/// A worker whose claim long-poll is in flight when shutdown comes stops at
/// once; a job in flight is finished first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_jobs_in_flight() {
    let node = node(30_000).await;
    let origins = [node.worker_origin()];
    let started = Arc::new(tokio::sync::Notify::new());
    let slow = {
        let started = started.clone();
        move |job: RemoteJob| {
            let started = started.clone();
            async move {
                started.notify_one();
                tokio::time::sleep(Duration::from_millis(300)).await;
                workers::discard(job).await
            }
        }
    };
    let running = spawn_worker(config(&origins, "slow", "/remote-discard", false), slow);
    let upload = {
        let client = node.h1_client("/remote-discard");
        tokio::spawn(async move { client.connect().await.unwrap().request(5000).await.unwrap() })
    };
    started.notified().await;
    running.stop().await;
    let result = upload.await.unwrap();
    assert!(result.succeeded(), "{result:?}");
    assert_eq!(result.body_text(), "5000\n");
    node.stop().await;
}

/// A client that aborts its upload midway: the worker's body stream ends in
/// an error, never a clean (short) end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_abort_fails_the_remote_body() {
    use tokio::io::AsyncWriteExt;
    let node = node(30_000).await;
    for h2c in [false, true] {
        let origins = [node.worker_origin()];
        let worker = WorkerClient::new(config(&origins, "reader", "/abort", h2c)).unwrap();
        let mut tcp = tokio::net::TcpStream::connect(node.running.http.unwrap())
            .await
            .unwrap();
        tcp.write_all(
            b"POST /abort HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n0123456789",
        )
        .await
        .unwrap();
        let job = claim_one(&worker, &origins[0]).await;
        let mut body = job.body().await.unwrap();
        let first = body.next().await.unwrap().unwrap();
        assert_eq!(&first[..], b"0123456789");
        drop(tcp); // the client goes away mid-upload
        let outcome = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("the body must end");
        assert!(
            matches!(outcome, Some(Err(_))),
            "h2c={h2c}: an aborted upload must fail the body, got {outcome:?}"
        );
    }
    // Let the ingress notice and clean up before the in-flight check.
    for _ in 0..100 {
        if node.running.service.in_flight() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.stop().await;
}

/// A worker busier than its lease keeps its claim by renewing it: the
/// request is not offered to anyone else and its answer arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewing_keeps_a_claim_past_the_lease() {
    let node = node(300).await;
    let origins = [node.worker_origin()];
    let log = ClaimLog::default();
    let slow = {
        let log = log.clone();
        move |job: RemoteJob| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push((
                    job.origin().to_owned(),
                    job.stream_id(),
                    "slow".into(),
                    job.request().path.clone(),
                ));
                for _ in 0..6 {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    job.renew().await?;
                }
                workers::discard(job).await
            }
        }
    };
    let running = spawn_worker(config(&origins, "slow", "/slow", false), slow);
    let result = node
        .h1_client("/slow")
        .connect()
        .await
        .unwrap()
        .request(2000)
        .await
        .unwrap();
    assert!(result.succeeded(), "{result:?}");
    assert_eq!(result.body_text(), "2000\n");
    assert_eq!(
        log.lock().unwrap().len(),
        1,
        "claimed once, never re-offered"
    );
    running.stop().await;
    node.stop().await;
}

/// A worker given a DNS name serves the ingress behind every address it
/// resolves to (`localhost` here: the node listens on 127.0.0.1; an
/// address with no listener, such as ::1, is retried with backoff).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_name_finds_the_ingress() {
    let node = node(30_000).await;
    let mut config = config(&[node.worker_origin()], "dns", "/remote-sha256", false);
    config.origins = Origins::Dns {
        name: "localhost".into(),
        port: node.running.worker_api.unwrap().port(),
        refresh: Duration::from_millis(200),
    };
    let running = spawn_worker(config, workers::sha256);
    node.check_sha256(Proto::H2, "/remote-sha256", 300_000)
        .await;
    running.stop().await;
    node.stop().await;
}

/// A real worker process killed (SIGKILL) while streaming its response:
/// curl sends the head and a first chunk, then dies; the client's HTTP/2
/// stream is reset, not ended as if the answer were complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_killed_mid_response_resets_the_client() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let node = node(30_000).await;
    let origin = node.worker_origin();
    let upload = {
        let client = node.tls_client(Proto::H2, "/killed");
        tokio::spawn(async move {
            let options = UploadOptions {
                bytes: 1000,
                ..UploadOptions::default()
            };
            client.upload(&options).await
        })
    };
    let claimer = WorkerClient::new(config(
        std::slice::from_ref(&origin),
        "victim",
        "/killed",
        false,
    ))
    .unwrap();
    let job = claim_one(&claimer, &origin).await;
    let url = format!(
        "{origin}/v1/streams/{}/response?worker=victim",
        job.stream_id()
    );
    // The curl process takes over the claim's response; the Rust handle
    // must not release it when it goes.
    std::mem::forget(job);
    let mut curl = Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            "-T",
            "-",
            "-H",
            "Expect:",
            "-H",
            "x-ur-status: 200",
        ])
        .arg("-H")
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .arg(&url)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("curl must be installed");
    let mut stdin = curl.stdin.take().unwrap();
    stdin.write_all(b"the first part of the answer").unwrap();
    stdin.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    curl.kill().unwrap();
    curl.wait().unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), upload)
        .await
        .expect("the client must not hang")
        .unwrap();
    assert!(
        outcome.is_err(),
        "a killed worker must reset the response: {outcome:?}"
    );
    node.stop().await;
}

/// Hundreds of jobs over one h2c connection to the worker API: the client
/// must not send the empty DATA frames that h2 servers punish with GOAWAY
/// (`ENHANCE_YOUR_CALM`) once a few hundred have accumulated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_worker_serves_hundreds_of_requests() {
    let node = node(30_000).await;
    let origins = [node.worker_origin()];
    let running = spawn_worker(config(&origins, "echo", "/e", true), workers::echo);
    let mut conn = node.h1_client("/e").connect().await.unwrap();
    for i in 0..400 {
        let result = conn.request(1024).await;
        assert!(
            result
                .as_ref()
                .is_ok_and(|r| r.succeeded() && r.received == 1024),
            "request {i}: {result:?}"
        );
    }
    running.stop().await;
    node.stop().await;
}

/// A server shutting down ends the workers' long-polls at once (204), so
/// they do not hold up its drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_long_polls() {
    let node = node(30_000).await;
    let origin = node.worker_origin();
    let mut config = config(std::slice::from_ref(&origin), "idle", "/nothing", false);
    config.wait = Duration::from_secs(120);
    let worker = WorkerClient::new(config).unwrap();
    let poll = tokio::spawn(async move { worker.claim(&origin).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    node.stop().await;
    let claimed = poll.await.unwrap().unwrap();
    assert!(claimed.is_none());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the drain waited for a long-poll: {:?}",
        started.elapsed()
    );
}

/// Regression: the lease used to be renewed only by body chunks, so a
/// client pausing longer than the lease made the request look abandoned
/// while its worker was still reading it, and it was offered to a second
/// worker. The worker's open body read now keeps the claim alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_pausing_longer_than_the_lease_keeps_its_worker() {
    use sha2::{Digest, Sha256};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let node = node(300).await;
    let origins = [node.worker_origin()];
    let claims = Arc::new(Mutex::new(0usize));
    let counting = {
        let claims = claims.clone();
        move |job: RemoteJob| {
            *claims.lock().unwrap() += 1;
            workers::sha256(job)
        }
    };
    let running = spawn_worker(config(&origins, "reader", "/paced", false), counting);
    let body = vec![b'p'; 200_000];
    let mut conn = tokio::net::TcpStream::connect(node.running.http.unwrap())
        .await
        .unwrap();
    let head = format!(
        "POST /paced HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body[..100_000]).await.unwrap();
    // Four leases without a byte, while the worker's body read is open.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    conn.write_all(&body[100_000..]).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(20), conn.read_to_string(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    let digest = hex::encode(Sha256::digest(&body));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(&format!("{digest} {}\n", body.len())),
        "{answer}"
    );
    assert_eq!(*claims.lock().unwrap(), 1, "claimed once, never re-offered");
    running.stop().await;
    node.stop().await;
}

/// The worker API's `/metrics` page.
async fn api_metrics(node: &TestServer) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = node.running.worker_api.unwrap();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut page = String::new();
    conn.read_to_string(&mut page).await.unwrap();
    page
}

/// The value of the counter line `name` on a metrics page (0 if absent).
fn counter(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// With the client's defaults, queued small requests are claimed several
/// per call, their bodies come with the claims and their answers leave
/// several per call: fewer claim and response calls than jobs, and no body
/// call at all; every client still gets its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_small_requests_are_claimed_in_batches_with_their_bodies() {
    let node = node(30_000).await;
    let origins = [node.worker_origin()];
    let clients: Vec<_> = (0..40u64)
        .map(|i| {
            let client = node.h1_client("/e");
            tokio::spawn(async move {
                let mut conn = client.connect().await.unwrap();
                conn.request(100 + i).await
            })
        })
        .collect();
    // Every request queued, its body arrived, before any worker runs.
    loop {
        let streams = node.running.service.streams();
        if streams.len() == 40 && streams.iter().all(|s| s.request_done) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut config = config(&origins, "echo", "/e", false);
    config.concurrency = 16;
    let running = spawn_worker(config, workers::echo);
    for (i, client) in clients.into_iter().enumerate() {
        let result = client.await.unwrap();
        assert!(
            result
                .as_ref()
                .is_ok_and(|r| r.succeeded() && r.received == 100 + i as u64),
            "request {i}: {result:?}"
        );
    }
    running.stop().await;
    let page = api_metrics(&node).await;
    let claims = counter(
        &page,
        r#"upload_response_worker_api_calls_total{route="/v1/claim",status="200"}"#,
    );
    assert!(
        (3..=20).contains(&claims),
        "{claims} claim calls for 40 jobs"
    );
    let body_calls = page
        .lines()
        .filter(|l| l.contains(r#"route="/v1/streams/{id}/body""#))
        .count();
    assert_eq!(body_calls, 0, "every body came with its claim:\n{page}");
    let responses = counter(
        &page,
        r#"upload_response_worker_api_calls_total{route="/v1/responses",status="200"}"#,
    );
    assert!(
        (1..40).contains(&responses),
        "{responses} response calls for 40 jobs"
    );
    assert!(
        !page.contains(r#"route="/v1/streams/{id}/response""#),
        "every answer went batched:\n{page}"
    );
    node.stop().await;
}
