//! Real S3 clients (boto3 and the AWS CLI, installed by
//! `scripts/install-deps.sh` into `target/s3-venv`) against the real server
//! over HTTPS with its self-signed CA, and the `s3_storage` example worker
//! (worker-client) on the worker API. They send `aws-chunked` bodies with
//! trailing checksums, which the ingress decodes and verifies (docs/s3.md).
//! Server defaults apart from loopback ports and no built-in workers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use worker_client::{Origins, WorkerClient, WorkerConfig};

mod common;
use common::{TOKEN, TestServer};

// The example worker itself, compiled into this test.
#[path = "../../worker-client/examples/s3_storage/api.rs"]
mod api;
#[path = "../../worker-client/examples/s3_storage/store.rs"]
mod store;
#[path = "../../worker-client/examples/s3_storage/xml.rs"]
mod xml;

/// The venv `scripts/install-deps.sh` fills, in this build's target dir.
fn venv() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test binary>
    let target = exe.ancestors().nth(3).unwrap();
    let venv = target.join("s3-venv");
    assert!(
        venv.join("bin/python").exists(),
        "{} is missing: run scripts/install-deps.sh",
        venv.display()
    );
    venv
}

/// The server, an s3_storage worker storing under a temporary directory,
/// and the worker's stop switch.
struct S3Node {
    server: TestServer,
    stop: CancellationToken,
    worker: tokio::task::JoinHandle<()>,
    _root: tempfile::TempDir,
}

impl S3Node {
    async fn start() -> Self {
        let server = TestServer::start(|_| {}).await;
        let root = tempfile::tempdir().unwrap();
        let store = Arc::new(store::Store::new(root.path().to_path_buf()).unwrap());
        let mut config = WorkerConfig::new(
            Origins::parse_list([server.worker_origin()]).unwrap(),
            TOKEN,
            "s3-test",
            "/",
        );
        config.wait = Duration::from_millis(500);
        let client = WorkerClient::new(config).unwrap();
        let stop = CancellationToken::new();
        let worker = tokio::spawn({
            let stop = stop.clone();
            async move {
                client
                    .run(stop, move |job| {
                        let store = store.clone();
                        async move { api::serve(&store, "", job).await }
                    })
                    .await
            }
        });
        Self {
            server,
            stop,
            worker,
            _root: root,
        }
    }

    fn endpoint(&self) -> String {
        format!(
            "https://localhost:{}",
            self.server.running.https.unwrap().port()
        )
    }

    /// `program args` from the venv with dummy credentials and the CA.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(venv().join("bin").join(program));
        cmd.env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
            .env(
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            )
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env(
                "AWS_CA_BUNDLE",
                self.server.running.cert_path.as_ref().unwrap(),
            )
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env_remove("AWS_PROFILE");
        cmd
    }

    async fn stop(self) {
        self.stop.cancel();
        self.worker.await.unwrap();
        self.server.stop().await;
    }
}

/// Runs `cmd` off the runtime; its stdout, or a panic with its stderr.
async fn run(mut cmd: Command) -> String {
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sha256_file(path: &Path) -> String {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).unwrap();
    hex::encode(hasher.finalize())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_put_get_head_list_delete_round_trip() {
    let node = S3Node::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/s3/boto3_roundtrip.py");
    let mut cmd = node.command("python");
    cmd.args([script, &node.endpoint(), "boto3-bucket", "3000000"]);
    let out: serde_json::Value = serde_json::from_str(run(cmd).await.trim()).unwrap();
    // The premise: boto3 sent an aws-chunked body with a trailing checksum.
    assert_eq!(out["content_encoding"], "aws-chunked", "{out}");
    assert_eq!(
        out["content_sha256"], "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "{out}"
    );
    assert!(
        out["trailer"]
            .as_str()
            .unwrap()
            .starts_with("x-amz-checksum-"),
        "{out}"
    );
    assert_eq!(out["got_sha256"], out["sent_sha256"], "{out}");
    assert_eq!(
        out["put_etag"].as_str().unwrap(),
        format!("\"{}\"", out["md5"].as_str().unwrap())
    );
    assert_eq!(out["head_length"], 3_000_000);
    assert_eq!(out["head_type"], "application/x-test");
    assert_eq!(out["range_ok"], true);
    assert_eq!(out["listed"], serde_json::json!(["dir/hello object.bin"]));
    assert_eq!(out["after_delete"], 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_cli_copies_256_mib_up_and_back_with_multipart() {
    let node = S3Node::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (up, down) = (dir.path().join("up.bin"), dir.path().join("down.bin"));
    {
        // 256 MiB of non-repeating bytes (a counter through sha256).
        let mut file = std::io::BufWriter::new(std::fs::File::create(&up).unwrap());
        for i in 0u64..(256 << 20) / 32 {
            std::io::Write::write_all(&mut file, &Sha256::digest(i.to_le_bytes())).unwrap();
        }
    }
    let mut mb = node.command("aws");
    mb.args([
        "s3",
        "mb",
        "s3://cli-bucket",
        "--endpoint-url",
        &node.endpoint(),
    ]);
    run(mb).await;
    let mut cp = node.command("aws");
    cp.args([
        "s3",
        "cp",
        up.to_str().unwrap(),
        "s3://cli-bucket/big/object.bin",
    ])
    .args(["--endpoint-url", &node.endpoint(), "--no-progress"]);
    run(cp).await;
    // Multipart (CLI default: 8 MiB parts above 8 MiB): the ETag says so.
    let mut head = node.command("aws");
    head.args([
        "s3api",
        "head-object",
        "--bucket",
        "cli-bucket",
        "--key",
        "big/object.bin",
    ])
    .args(["--endpoint-url", &node.endpoint()]);
    let head: serde_json::Value = serde_json::from_str(&run(head).await).unwrap();
    assert_eq!(head["ContentLength"], 256 << 20);
    assert!(head["ETag"].as_str().unwrap().ends_with("-32\""), "{head}");
    let mut back = node.command("aws");
    back.args([
        "s3",
        "cp",
        "s3://cli-bucket/big/object.bin",
        down.to_str().unwrap(),
    ])
    .args(["--endpoint-url", &node.endpoint(), "--no-progress"]);
    run(back).await;
    assert_eq!(sha256_file(&down), sha256_file(&up));
    let mut ls = node.command("aws");
    ls.args([
        "s3",
        "ls",
        "s3://cli-bucket/big/",
        "--endpoint-url",
        &node.endpoint(),
    ]);
    assert!(run(ls).await.contains("268435456 object.bin"));
    node.stop().await;
}

/// A handcrafted aws-chunked PutObject over a raw TCP connection; the
/// response's status line and body.
async fn raw_put(node: &S3Node, body: &[u8], headers: &str) -> (String, String) {
    let mut tcp = tokio::net::TcpStream::connect(node.server.running.http.unwrap())
        .await
        .unwrap();
    let head = format!(
        "PUT /raw-bucket/obj HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n{headers}\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_trailing_checksum_gets_bad_digest_and_stores_nothing() {
    let node = S3Node::start().await;
    let mut mb = node.command("aws");
    mb.args([
        "s3",
        "mb",
        "s3://raw-bucket",
        "--endpoint-url",
        &node.endpoint(),
    ]);
    run(mb).await;
    let headers = "content-encoding: aws-chunked\r\nx-amz-decoded-content-length: 11\r\n\
                   x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER\r\n\
                   x-amz-trailer: x-amz-checksum-crc32\r\n";
    // crc32("hello world") is DUoRhQ==; this one is not.
    let bad = b"b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n";
    let (status, body) = raw_put(&node, bad, headers).await;
    assert!(status.contains(" 400 "), "{status}");
    assert!(body.contains("<Code>BadDigest</Code>"), "{body}");
    let mut ls = node.command("aws");
    ls.args([
        "s3api",
        "list-objects-v2",
        "--bucket",
        "raw-bucket",
        "--endpoint-url",
        &node.endpoint(),
    ]);
    assert!(!run(ls).await.contains("obj"), "a failed upload was stored");
    // The same body with the right checksum is stored.
    let good = b"b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
    let (status, _) = raw_put(&node, good, headers).await;
    assert!(status.contains(" 200 "), "{status}");
    node.stop().await;
}
