//! The shell worker of `docs/worker-api.md`, extracted from the document
//! and run with bash against a real server: the documented worker must
//! work as written.

use std::process::{Command, Stdio};

use loadgen::clients::{Client, UploadOptions};
use loadgen::source::Pattern;
use loadgen::target::Proto;
use sha2::{Digest, Sha256};
use upload_response_server::{Cli, Settings, start};

const TOKEN: &str = "shell-test-token";

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
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        http: Some("127.0.0.1:0".into()),
        https: Some("none".into()),
        worker_api: Some("127.0.0.1:0".into()),
        worker_token: Some(TOKEN.into()),
        builtin_workers: Some("none".into()),
        data_dir: Some(dir.path().to_path_buf()),
        ..Cli::default()
    };
    let running = start(Settings::resolve(cli).unwrap()).await.unwrap();
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

    let url = format!("http://{}/sha256/file", running.http.unwrap());
    for (i, bytes) in [0u64, 1000, 3 * 1024 * 1024 + 5].into_iter().enumerate() {
        let options = UploadOptions {
            bytes,
            ..UploadOptions::default()
        };
        let result = Client::new(Proto::H1, &url, None)
            .unwrap()
            .upload(&options)
            .await
            .unwrap();
        let mut h = Sha256::new();
        for chunk in Pattern::new(options.chunk).chunks(bytes) {
            h.update(&chunk);
        }
        assert!(result.succeeded(), "job {i}: {result:?}");
        assert_eq!(
            result.body_text(),
            format!("{} {bytes}\n", hex::encode(h.finalize())),
            "job {i}"
        );
    }
    let status = tokio::task::spawn_blocking(move || worker.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the script failed: {status}");
    assert_eq!(running.service.in_flight(), 0);
    running.shutdown();
    running.wait().await.unwrap();
}
