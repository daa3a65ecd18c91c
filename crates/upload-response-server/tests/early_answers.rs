//! Issue 16 as a new user met it: `--max-body-bytes 1048576` and curl 7.88 posting
//! 2 MiB to the built-in discard worker got status `000` over HTTP/2 (the stream was
//! reset while curl still uploaded). The server now drains the rest of the body
//! after its `413`, so curl sees the answer on HTTP/1.1, h2c and HTTP/2 over TLS,
//! with `content-length` and streamed.

mod common;

use std::process::Command;

use common::TestServer;

const LIMIT: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_sees_413_past_max_body_bytes_on_every_tcp_protocol() {
    let server = TestServer::start(|cli| {
        cli.builtin_workers = Some("discard".into());
        cli.max_body_bytes = Some(LIMIT.into());
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("2MiB.bin");
    std::fs::write(&file, vec![7u8; 2 * LIMIT as usize]).unwrap();
    let http = server.running.http.unwrap();
    let https = server.running.https.unwrap();
    let cert = server.running.cert_path.clone().unwrap();
    let cases = [
        ("--http1.1", format!("http://{http}/discard")),
        ("--http2-prior-knowledge", format!("http://{http}/discard")),
        (
            "--http2",
            format!("https://localhost:{}/discard", https.port()),
        ),
    ];
    for (proto, url) in cases {
        for streamed in [false, true] {
            let mut cmd = Command::new("curl");
            cmd.args([
                "-sS",
                "--max-time",
                "60",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .arg("--cacert")
            .arg(&cert)
            .args([
                "--resolve",
                &format!("localhost:{}:127.0.0.1", https.port()),
            ])
            .arg(proto);
            if streamed {
                cmd.args(["-X", "POST", "-T", "-"])
                    .stdin(std::fs::File::open(&file).unwrap());
            } else {
                cmd.arg("--data-binary").arg(format!("@{}", file.display()));
            }
            cmd.arg(&url);
            let out = tokio::task::spawn_blocking(move || cmd.output().expect("curl runs"))
                .await
                .unwrap();
            let status = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                status,
                "413",
                "{proto} streamed={streamed}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    server.stop().await;
}
