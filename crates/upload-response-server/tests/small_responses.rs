//! Small responses leave in one write; streaming ones still send their head
//! at once. Both against a real server on loopback, over raw TCP.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use upload_response::{Route, UploadResponseService};

use common::TestServer;

/// An in-process worker at `prefix` that answers each request with
/// `<body length>\n`, written whole (head, body, end) before it waits again.
fn length_worker(service: &UploadResponseService, prefix: &str) {
    let worker = service.worker("lengths", Route::prefix(prefix));
    tokio::spawn(async move {
        loop {
            let mut job = worker.next_job().await;
            let mut body = job.body();
            let mut count = 0;
            while let Some(Ok(chunk)) = body.chunk().await {
                count += chunk.len();
            }
            let Ok(mut out) = job.respond(StatusCode::OK, &HeaderMap::new()).await else {
                continue;
            };
            if out.send(Bytes::from(format!("{count}\n"))).await.is_ok() {
                let _ = out.finish().await;
            }
        }
    });
}

/// Reads one HTTP/1.1 response head; returns its lines.
fn read_head(reader: &mut impl BufRead) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("response head");
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            return lines;
        }
        lines.push(line);
    }
}

fn content_length(head: &[String]) -> Option<usize> {
    head.iter().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

// One runtime thread: the worker writes its whole response before the
// connection's task runs again, so the count below is exact, not a race.
#[tokio::test(flavor = "current_thread")]
async fn a_small_response_written_whole_leaves_in_one_write() {
    let server = TestServer::start(|_| {}).await;
    length_worker(&server.running.service, "/lengths");
    let addr = server.running.http.unwrap();
    let metrics = server.running.web_metrics.clone();
    let before = metrics
        .connection_writes
        .load(std::sync::atomic::Ordering::Relaxed);
    const REQUESTS: usize = 100;
    let answers = tokio::task::spawn_blocking(move || keep_alive_posts(addr, REQUESTS))
        .await
        .unwrap();
    let writes = metrics
        .connection_writes
        .load(std::sync::atomic::Ordering::Relaxed)
        - before;
    for (i, (head, body)) in answers.iter().enumerate() {
        assert_eq!(head[0], "HTTP/1.1 200 OK", "request {i}");
        // A known length, not chunked: the response went out as one buffer.
        assert_eq!(
            content_length(head),
            Some(body.len()),
            "request {i}: {head:?}"
        );
        assert_eq!(body, &format!("{}\n", 1000 + i).into_bytes(), "request {i}");
    }
    assert_eq!(
        writes, REQUESTS as u64,
        "writes for {REQUESTS} small responses on one connection"
    );
    server.stop().await;
}

/// `n` POSTs on one keep-alive connection, request i with 1000 + i body
/// bytes; every answer's head lines and body.
fn keep_alive_posts(addr: SocketAddr, n: usize) -> Vec<(Vec<String>, Vec<u8>)> {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    (0..n)
        .map(|i| {
            let body = vec![b'x'; 1000 + i];
            let head = format!(
                "POST /lengths HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            writer.write_all(head.as_bytes()).unwrap();
            writer.write_all(&body).unwrap();
            let head = read_head(&mut reader);
            let mut answer = vec![0; content_length(&head).unwrap_or(0)];
            reader.read_exact(&mut answer).unwrap();
            (head, answer)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_response_sends_its_head_before_its_body_is_written() {
    let server = TestServer::start(|_| {}).await;
    let worker = server
        .running
        .service
        .worker("slow", Route::prefix("/slow"));
    let (head_seen_tx, head_seen_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut job = worker.next_job().await;
        let mut body = job.body();
        while let Some(Ok(_)) = body.chunk().await {}
        let mut out = job
            .respond(StatusCode::OK, &HeaderMap::new())
            .await
            .unwrap();
        // The body is written only once the client has the head: a head held
        // back until the body comes would never arrive.
        head_seen_rx.await.unwrap();
        out.send(Bytes::from_static(b"late body")).await.unwrap();
        out.finish().await.unwrap();
    });
    let addr = server.running.http.unwrap();
    let body = tokio::task::spawn_blocking(move || {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut reader = BufReader::new(stream);
        writer
            .write_all(b"POST /slow HTTP/1.1\r\nhost: localhost\r\ncontent-length: 3\r\n\r\nabc")
            .unwrap();
        let head = read_head(&mut reader);
        assert_eq!(head[0], "HTTP/1.1 200 OK");
        assert!(
            head.iter()
                .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked")),
            "a response still being written streams: {head:?}"
        );
        head_seen_tx.send(()).unwrap();
        // Chunked: "9\r\nlate body\r\n0\r\n\r\n".
        let mut rest = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim_end(), 16).unwrap();
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            rest.extend_from_slice(&chunk[..size]);
        }
        rest
    })
    .await
    .unwrap();
    assert_eq!(body, b"late body");
    server.stop().await;
}
