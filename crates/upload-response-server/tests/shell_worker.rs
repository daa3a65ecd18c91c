//! The shell worker of `docs/worker-api.md`, extracted from the document
//! and run with bash against a real server: the documented worker must
//! work as written.

use std::process::{Command, Stdio};

use loadgen::clients::UploadOptions;

mod common;
use common::{TOKEN, TestServer, pattern_digest};

/// The bash block between the `shell-worker` markers of the doc.
fn documented_script() -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/worker-api.md"
    ))
    .unwrap();
    let start = doc
        .find("<!-- shell-worker:start -->")
        .expect("start marker");
    let end = doc.find("<!-- shell-worker:end -->").expect("end marker");
    let block = &doc[start..end];
    let body_start = block.find("```bash\n").expect("bash fence") + "```bash\n".len();
    let body_end = block.rfind("```").expect("closing fence");
    block[body_start..body_end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_curl_worker_answers_requests() {
    let server = TestServer::start(|cli| cli.https = Some("none".into())).await;
    let running = &server.running;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("worker.sh");
    std::fs::write(&script, documented_script()).unwrap();

    let jobs = 3;
    let mut worker = Command::new("bash")
        .arg(&script)
        .env("UR_API", format!("http://{}", running.worker_api.unwrap()))
        .env("UR_WORKER_TOKEN", TOKEN)
        .env("UR_PREFIX", "/sha256")
        .env("UR_WORKER_ID", "shell")
        .env("UR_MAX_JOBS", jobs.to_string())
        .stdin(Stdio::null())
        .spawn()
        .expect("bash must be installed");

    let client = server.h1_client("/sha256/file");
    for (i, bytes) in [0u64, 1000, 3 * 1024 * 1024 + 5].into_iter().enumerate() {
        let options = UploadOptions {
            bytes,
            ..UploadOptions::default()
        };
        let result = client.upload(&options).await.unwrap();
        assert!(result.succeeded(), "job {i}: {result:?}");
        assert_eq!(
            result.body_text(),
            format!("{} {bytes}\n", pattern_digest(&options)),
            "job {i}"
        );
    }
    let status = tokio::task::spawn_blocking(move || worker.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the script failed: {status}");
    server.stop().await;
}
