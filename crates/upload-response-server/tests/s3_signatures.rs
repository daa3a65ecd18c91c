//! Signed S3 streaming uploads (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`)
//! end to end: the ingress decodes the body and records each chunk's
//! signature without verifying it (it holds no keys); a worker holding the
//! secret verifies the whole SigV4 chain from the decoded bytes and those
//! records, in process (`Job::chunk_signatures`) and remote (`GET
//! /v1/streams/{id}/signatures`). A good body verifies; one tampered chunk
//! signature is caught. Real server, loopback, HTTP/1.1 and h2c clients.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use upload_response::Route;
use worker_client::{Origins, WorkerClient, WorkerConfig};

use common::sigv4::{self, Mismatch, Record, Signer};
use common::{TOKEN, TestServer};

const SIGNED: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
const SIGNED_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";

/// Sends `req` over one fresh connection (HTTP/1.1, or h2c with prior
/// knowledge); the status and the whole body, or how the body failed.
async fn send(
    addr: SocketAddr,
    h2: bool,
    req: Request<Full<Bytes>>,
) -> (StatusCode, Result<Bytes, String>) {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let response = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    };
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| format!("{e:?}"));
    (status, body)
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 253) as u8).collect()
}

fn sha256_b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data))
}

/// A signed PUT of `data` in `chunk`-byte chunks (`mode` with or without a
/// trailer), chunk `tamper`'s signature forged.
fn signed_put(
    data: &[u8],
    chunk: usize,
    mode: &str,
    tamper: Option<usize>,
) -> Request<Full<Bytes>> {
    let checksum = sha256_b64(data);
    let trailers: Vec<(&str, &str)> = if mode == SIGNED_TRAILER {
        vec![("x-amz-checksum-sha256", checksum.as_str())]
    } else {
        Vec::new()
    };
    // The worker here trusts the seed as the chain's start; rebuilding the
    // canonical request to check the seed is not what this test is about.
    let canonical = format!(
        "PUT\n/bucket/key\n\nhost:localhost\nx-amz-content-sha256:{mode}\nx-amz-date:{}\n\nhost;x-amz-content-sha256;x-amz-date\n{mode}",
        sigv4::AMZ_DATE
    );
    let signed = sigv4::sign_body(
        &Signer::example(),
        &canonical,
        data,
        chunk,
        &trailers,
        tamper,
    );
    let mut req = Request::put("/bucket/key")
        .header("host", "localhost")
        .header("content-encoding", "aws-chunked")
        .header("content-length", signed.body.len())
        .header("x-amz-content-sha256", mode)
        .header("x-amz-date", sigv4::AMZ_DATE)
        .header("x-amz-decoded-content-length", data.len())
        .header("authorization", signed.authorization);
    if mode == SIGNED_TRAILER {
        req = req.header("x-amz-trailer", "x-amz-checksum-sha256");
    }
    req.body(Full::new(signed.body.freeze())).unwrap()
}

/// The worker's verdict on a body and its records: `200 verified`, or `403`
/// naming what failed (S3's `SignatureDoesNotMatch`).
fn judge(
    authorization: Option<&str>,
    trailer_mode: bool,
    body: &[u8],
    records: &[Record],
    trailer_signature: Option<&str>,
) -> (StatusCode, String) {
    let Some(seed) = authorization.and_then(sigv4::seed_of) else {
        return (StatusCode::FORBIDDEN, "no seed signature".into());
    };
    // The worker rebuilds the trailer from the checksum it computes: the
    // ingress already verified the client's value equals it.
    let text = sigv4::trailer_text(&[("x-amz-checksum-sha256", &sha256_b64(body))]);
    let trailer = trailer_mode.then_some((text.as_str(), trailer_signature));
    match sigv4::verify(&Signer::example(), seed, body, records, trailer) {
        Ok(()) => (StatusCode::OK, format!("verified {} chunks", records.len())),
        Err(mismatch) => (
            StatusCode::FORBIDDEN,
            format!("SignatureDoesNotMatch: {mismatch:?}"),
        ),
    }
}

/// Every case: both signed modes over HTTP/1.1 and h2c, good and with chunk
/// 1 forged; the worker must accept exactly the good ones.
async fn run_cases(server: &TestServer) {
    let addr = server.running.http.unwrap();
    let data = payload(200_000); // 3 chunks of 64 KiB, a short last one, the final
    for h2 in [false, true] {
        for mode in [SIGNED, SIGNED_TRAILER] {
            let (status, body) = send(addr, h2, signed_put(&data, 65536, mode, None)).await;
            let body = body.unwrap();
            assert_eq!(
                (status, &body[..]),
                (StatusCode::OK, &b"verified 5 chunks"[..]),
                "h2={h2} {mode}"
            );
            let (status, body) = send(addr, h2, signed_put(&data, 65536, mode, Some(1))).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "h2={h2} {mode} tampered");
            assert_eq!(
                body.unwrap(),
                format!("SignatureDoesNotMatch: {:?}", Mismatch::Chunk(1)),
                "h2={h2} {mode}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_process_worker_verifies_the_sigv4_chain_and_catches_a_forged_chunk() {
    let server = TestServer::start(|_| {}).await;
    let worker = server
        .running
        .service
        .worker("sigv4", Route::prefix("/bucket"));
    let task = tokio::spawn(async move {
        loop {
            let mut job = worker.next_job().await;
            let text = |name: &str| {
                job.header(name)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            let authorization = text("authorization");
            let trailer_mode = text("x-amz-trailer").is_some();
            let mut signatures = job.chunk_signatures().expect("a signed body has a record");
            let mut body = job.body();
            let mut bytes = Vec::new();
            while let Some(chunk) = body.chunk().await {
                bytes.extend_from_slice(&chunk.unwrap());
            }
            let mut records = Vec::new();
            while let Some(record) = signatures.next().await {
                let r = record.unwrap();
                records.push(Record {
                    index: r.index,
                    offset: r.offset,
                    len: r.len,
                    signature: r.signature,
                });
            }
            let trailer = signatures.trailer_signature();
            let (status, answer) = judge(
                authorization.as_deref(),
                trailer_mode,
                &bytes,
                &records,
                trailer.as_deref(),
            );
            let mut out = job.respond(status, &HeaderMap::new()).await.unwrap();
            out.send(Bytes::from(answer)).await.unwrap();
            out.finish().await.unwrap();
        }
    });
    run_cases(&server).await;
    task.abort();
    let _ = task.await;
    server.stop().await;
}

/// `GET /v1/streams/{id}/signatures?from=N` on the worker API.
async fn get_signatures(origin: SocketAddr, id: u64, from: u64) -> (StatusCode, HeaderMap, Bytes) {
    let io = TokioIo::new(TcpStream::connect(origin).await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("/v1/streams/{id}/signatures?from={from}"))
        .header("host", "worker-api")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

/// Reads every record of stream `id` from the worker API, page by page.
async fn remote_records(origin: SocketAddr, id: u64) -> (Vec<Record>, Option<String>) {
    let mut records = Vec::new();
    loop {
        let (status, _, body) = get_signatures(origin, id, records.len() as u64).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
        for r in page["records"].as_array().unwrap() {
            records.push(Record {
                index: r["index"].as_u64().unwrap(),
                offset: r["offset"].as_u64().unwrap(),
                len: r["len"].as_u64().unwrap(),
                signature: r["signature"].as_str().unwrap().to_owned(),
            });
        }
        if page["complete"] == true {
            let trailer = page["trailer_signature"].as_str().map(str::to_owned);
            return (records, trailer);
        }
    }
}

fn remote_worker(server: &TestServer, h2c: bool) -> WorkerClient {
    let origins = Origins::parse_list([server.worker_origin()]).unwrap();
    let mut config = WorkerConfig::new(origins, TOKEN, "sigv4", "/bucket");
    config.http2 = h2c;
    config.wait = Duration::from_millis(500);
    WorkerClient::new(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_worker_verifies_the_sigv4_chain_over_the_worker_api() {
    let server = TestServer::start(|_| {}).await;
    let api = server.running.worker_api.unwrap();
    let client = remote_worker(&server, false);
    let origin = server.worker_origin();
    let task = tokio::spawn(async move {
        loop {
            let Some(job) = client.claim(&origin).await.unwrap() else {
                continue;
            };
            let authorization = job.header("authorization").map(str::to_owned);
            let trailer_mode = job.header("x-amz-trailer").is_some();
            let mut body = job.body().await.unwrap();
            let mut bytes = Vec::new();
            while let Some(chunk) = body.next().await {
                bytes.extend_from_slice(&chunk.unwrap());
            }
            let (records, trailer) = remote_records(api, job.stream_id()).await;
            let (status, answer) = judge(
                authorization.as_deref(),
                trailer_mode,
                &bytes,
                &records,
                trailer.as_deref(),
            );
            let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(answer))]);
            job.respond(status, &HeaderMap::new(), chunks)
                .await
                .unwrap();
        }
    });
    run_cases(&server).await;
    task.abort();
    let _ = task.await;
    server.stop().await;
}

/// A remote reader that fell behind the record's bound gets `410` and the
/// oldest index kept, never a page with a gap; an unknown stream is `404`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_reader_behind_the_bound_gets_410_not_a_gap() {
    // 4 slots of 8 KiB: the record keeps (4 + 1) x 8 KiB / 8 KiB + 8 = 13 chunks.
    let server = TestServer::start(|cli| {
        cli.slot_size_kb = Some(8);
        cli.slots_per_stream = Some(4);
    })
    .await;
    let api = server.running.worker_api.unwrap();
    let (status, _, _) = get_signatures(api, 999_999, 0).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let client = remote_worker(&server, true);
    let origin = server.worker_origin();
    let worker = tokio::spawn(async move {
        let job = loop {
            if let Some(job) = client.claim(&origin).await.unwrap() {
                break job;
            }
        };
        // The whole body first, then the records: too late for the first ones.
        let mut body = job.body().await.unwrap();
        while let Some(chunk) = body.next().await {
            chunk.unwrap();
        }
        let late = get_signatures(api, job.stream_id(), 0).await;
        let kept = get_signatures(api, job.stream_id(), 28).await;
        let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::new())]);
        job.respond(StatusCode::NO_CONTENT, &HeaderMap::new(), chunks)
            .await
            .unwrap();
        (late, kept)
    });
    let data = payload(40 * 8192); // 40 chunks and the final: 41 records
    let (status, _) = send(
        server.running.http.unwrap(),
        false,
        signed_put(&data, 8192, SIGNED, None),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let ((status, headers, _), (kept_status, _, kept)) = worker.await.unwrap();
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(headers["x-ur-oldest"], "28");
    assert_eq!(kept_status, StatusCode::OK);
    let page: serde_json::Value = serde_json::from_slice(&kept).unwrap();
    assert_eq!(page["records"].as_array().unwrap().len(), 13);
    assert_eq!(page["records"][0]["index"], 28);
    assert_eq!(page["records"][0]["offset"], 28 * 8192);
    assert_eq!(page["complete"], true);
    server.stop().await;
}

/// Over a real connection: a signed chunk under 8192 bytes that is not the
/// last is S3's `400 InvalidChunkSizeError`, and the worker reading the
/// body sees it aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undersized_signed_chunk_is_400_invalid_chunk_size_error() {
    let server = TestServer::start(|_| {}).await;
    let worker = server
        .running
        .service
        .worker("sigv4", Route::prefix("/bucket"));
    let task = tokio::spawn(async move {
        let mut job = worker.next_job().await;
        let mut body = job.body();
        while let Some(chunk) = body.chunk().await {
            chunk?;
        }
        Ok(())
    });
    let data = payload(30_000);
    let (status, body) = send(
        server.running.http.unwrap(),
        false,
        signed_put(&data, 8000, SIGNED, None),
    )
    .await;
    let body = String::from_utf8_lossy(&body.unwrap()).into_owned();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("<Code>InvalidChunkSizeError</Code>"),
        "{body}"
    );
    let outcome = task.await.unwrap();
    assert!(
        matches!(outcome, Err(upload_response::TailError::Aborted(_))),
        "{outcome:?}"
    );
    server.stop().await;
}

/// The route long-polls: a call for a record that has not come yet waits
/// for it (here: until the client sends the next chunk line), and an empty
/// page comes back when `wait_ms` runs out first. No token: `401`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signatures_route_waits_for_the_next_record() {
    let server = TestServer::start(|_| {}).await;
    let api = server.running.worker_api.unwrap();
    let worker = server
        .running
        .service
        .worker("sigv4", Route::prefix("/bucket"));

    let data = payload(3 * 8192);
    let mut pieces = sigv4::sign_body(&Signer::example(), "canonical", &data, 8192, &[], None)
        .body
        .freeze();
    // Chunk 0 (an 87-byte line, 8192 bytes, CRLF) and part of chunk 1's
    // line, then the rest once the worker asks.
    let first = pieces.split_to(8192 + 100);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(4);
    tx.send(Ok(http_body::Frame::data(first))).await.unwrap();
    let body = http_body_util::StreamBody::new(Box::pin(futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) },
    )));
    let req = Request::put("/bucket/key")
        .header("host", "localhost")
        .header("content-encoding", "aws-chunked")
        .header("x-amz-content-sha256", SIGNED)
        .header("x-amz-decoded-content-length", data.len())
        .body(body)
        .unwrap();
    let io = TokioIo::new(
        TcpStream::connect(server.running.http.unwrap())
            .await
            .unwrap(),
    );
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let client = tokio::spawn(async move { sender.send_request(req).await.unwrap().status() });

    let mut job = worker.next_job().await;
    let id = job.stream_id();
    let call = |query: String, token: bool| async move {
        let io = TokioIo::new(TcpStream::connect(api).await.unwrap());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let mut req = Request::get(format!("/v1/streams/{id}/signatures?{query}"))
            .header("host", "worker-api");
        if token {
            req = req.header("authorization", format!("Bearer {TOKEN}"));
        }
        let response = sender
            .send_request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice::<serde_json::Value>(&body).ok(),
        )
    };
    assert_eq!(
        call("from=0".into(), false).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, page) = call("from=0".into(), true).await;
    assert_eq!(status, StatusCode::OK);
    let page = page.unwrap();
    assert_eq!(page["records"].as_array().unwrap().len(), 1);
    assert_eq!(page["complete"], false);
    let (_, page) = call("from=1&wait_ms=50".into(), true).await;
    assert_eq!(
        page.unwrap()["records"].as_array().unwrap().len(),
        0,
        "timed out"
    );

    let waiting = tokio::spawn(call("from=1&max=1&wait_ms=10000".into(), true));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "no record 1 yet: the call waits");
    tx.send(Ok(http_body::Frame::data(pieces))).await.unwrap();
    drop(tx);
    let (status, page) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the waiting call answers when the record comes")
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    let page = page.unwrap();
    assert_eq!(page["records"][0]["index"], 1);
    assert_eq!(page["records"][0]["offset"], 8192);

    let mut body = job.body();
    while let Some(chunk) = body.chunk().await {
        chunk.unwrap();
    }
    // 200, not 204: hyper drops the body of a 204 at once, which can end the
    // response stream before `finish` (a race of its own, not this test's).
    let out = job
        .respond(StatusCode::OK, &HeaderMap::new())
        .await
        .unwrap();
    out.finish().await.unwrap();
    assert_eq!(client.await.unwrap(), StatusCode::OK);
    server.stop().await;
}
