//! Issue 16 as a new user met it: `--max-body-bytes 1048576` and curl 7.88 posting
//! 2 MiB to the built-in discard worker got status `000` over HTTP/2 (the stream was
//! reset while curl still uploaded). The server now drains the rest of the body
//! after its `413`, so curl sees the answer on HTTP/1.1, h2c and HTTP/2 over TLS,
//! with `content-length` and streamed.
//!
//! And a worker that answers before it reads an S3 upload whose trailing
//! checksum then turns out wrong: its response cannot become `400 BadDigest`
//! any more, so the client's response is reset (never a clean end) and the
//! worker sees the body aborted.

mod common;

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use upload_response::{Route, TailError};

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

type Chunk = Result<http_body::Frame<Bytes>, std::io::Error>;

/// A worker that writes its head (with or without `content-length`) before
/// reading the body, then reads it, and reports how the body ended. With
/// `careless` it sends its answer and ends the response even after the
/// body failed.
fn early_worker(
    server: &TestServer,
    content_length: bool,
    careless: bool,
) -> tokio::task::JoinHandle<Result<(), TailError>> {
    let worker = server
        .running
        .service
        .worker("early", Route::prefix("/bucket"));
    tokio::spawn(async move {
        let mut job = worker.next_job().await;
        let mut body = job.body();
        let mut headers = HeaderMap::new();
        if content_length {
            headers.insert("content-length", HeaderValue::from_static("11"));
        }
        let mut out = job.respond(StatusCode::OK, &headers).await.unwrap();
        let mut outcome = Ok(());
        while let Some(chunk) = body.chunk().await {
            if let Err(e) = chunk {
                outcome = Err(e);
                break;
            }
        }
        if outcome.is_ok() || careless {
            // A careless worker's writes may fail once the ingress gave up.
            if out.send(Bytes::from_static(b"hello world")).await.is_ok() {
                let _ = out.finish().await;
            }
        }
        // Else dropped unfinished: the client's response is reset.
        outcome
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_whose_upload_fails_its_checksum_is_reset_not_ended() {
    let server = TestServer::start(|_| {}).await;
    let addr = server.running.http.unwrap();
    let data = vec![42u8; 100_000];
    let wrong = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(b"other"));
    for (h2, content_length, careless) in (0..8).map(|i| (i & 1 != 0, i & 2 != 0, i & 4 != 0)) {
        let case = format!("h2={h2} content-length={content_length} careless={careless}");
        let worker = early_worker(&server, content_length, careless);
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(4);
        let body = StreamBody::new(Box::pin(futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) },
        )));
        let req = Request::put("/bucket/key")
            .header("host", "localhost")
            .header("content-encoding", "aws-chunked")
            .header("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
            .header("x-amz-decoded-content-length", data.len())
            .header("x-amz-trailer", "x-amz-checksum-sha256")
            .body(body)
            .unwrap();
        let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let response = if h2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            tokio::spawn(async move { sender.send_request(req).await })
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            tokio::spawn(async move { sender.send_request(req).await })
        };
        let mut first = BytesMut::new();
        http_pack::encode_chunk(&mut first, &data[..65536], None);
        tx.send(Ok(http_body::Frame::data(first.freeze())))
            .await
            .unwrap();
        // The head reaches the client while the upload is still open.
        let response = tokio::time::timeout(Duration::from_secs(10), response)
            .await
            .expect("the early head")
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{case}");
        let mut rest = BytesMut::new();
        http_pack::encode_chunk(&mut rest, &data[65536..], None);
        http_pack::encode_final_chunk(&mut rest, None, &[("x-amz-checksum-sha256", &wrong)]);
        // The server may reset the upload as soon as it sees the trailer.
        let _ = tx.send(Ok(http_body::Frame::data(rest.freeze()))).await;
        drop(tx);
        let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
            .await
            .expect("the response must end, one way or another");
        assert!(
            body.is_err(),
            "{case}: a BadDigest upload's early response must be reset, got a clean end: {:?}",
            body.map(|b| b.to_bytes())
        );
        let outcome = worker.await.unwrap();
        assert!(
            matches!(outcome, Err(TailError::Aborted(_))),
            "{case}: the worker must see the body aborted: {outcome:?}"
        );
    }
    server.stop().await;
}
