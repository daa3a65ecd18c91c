//! Refusals as each protocol shows them: a request no worker claims gets 503
//! on HTTP and Close 4503 on WebSocket (ARCHITECTURE.md §7).

use loadgen::clients::{Client, UploadOptions};
use loadgen::target::Proto;
use upload_response_server::{Cli, Settings, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclaimed_requests_get_503_or_close_4503() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        http: Some("127.0.0.1:0".into()),
        https: Some("127.0.0.1:0".into()),
        worker_api: Some("none".into()),
        data_dir: Some(dir.path().to_path_buf()),
        claim_timeout_ms: Some(100.into()),
        ..Cli::default()
    };
    let running = start(Settings::resolve(cli).unwrap()).await.unwrap();
    let ca = running.cert_path.clone().unwrap();
    let port = running.https.unwrap().port();
    let options = UploadOptions {
        bytes: 4096,
        ..UploadOptions::default()
    };
    for proto in [Proto::H1, Proto::H2, Proto::H3] {
        let client = Client::new(
            proto,
            &format!("https://localhost:{port}/nobody"),
            Some(&ca),
        )
        .unwrap();
        let result = client.upload(&options).await.unwrap();
        assert_eq!(result.status, 503, "{proto}");
    }
    let client = Client::new(
        Proto::Ws,
        &format!("wss://localhost:{port}/nobody"),
        Some(&ca),
    )
    .unwrap();
    let result = client.upload(&options).await.unwrap();
    assert_eq!(result.close_code, Some(4503), "{result:?}");
    assert_eq!(running.service.in_flight(), 0);
    running.shutdown();
    running.wait().await.unwrap();
}
