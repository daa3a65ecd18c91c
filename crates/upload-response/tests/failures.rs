//! The failure table of ARCHITECTURE.md §6 at the service level (the same
//! `handle` every protocol calls), plus full-duplex streaming. After each
//! case every stream is released.

use std::time::Duration;

use bytes::Bytes;
use chunk_cache::AbortReason;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use upload_response::{Route, TailError, TailSlot, UploadResponseConfig, UploadResponseService};

type Chunk = Result<http_body::Frame<Bytes>, std::io::Error>;

fn service(f: impl FnOnce(&mut UploadResponseConfig)) -> UploadResponseService {
    let mut config = UploadResponseConfig {
        num_streams: 4,
        slot_size_kb: 4,
        slots_per_stream: 64,
        response_timeout_ms: 5_000,
        claim_timeout_ms: 5_000,
        queue_timeout_ms: 200,
        max_body_bytes: 1 << 30,
        ..UploadResponseConfig::default()
    };
    f(&mut config);
    UploadResponseService::new(config).unwrap()
}

/// A request body fed by the test, chunk by chunk.
fn channel_body() -> (
    mpsc::Sender<Chunk>,
    StreamBody<impl futures_util::Stream<Item = Chunk>>,
) {
    let (tx, rx) = mpsc::channel::<Chunk>(4);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    (tx, StreamBody::new(stream))
}

fn data(b: Bytes) -> Chunk {
    Ok(http_body::Frame::data(b))
}

/// Every stream released and the table empty (tasks finish asynchronously,
/// so this waits for them, bounded).
async fn assert_settled(s: &UploadResponseService) {
    for _ in 0..500 {
        if s.in_flight() == 0
            && s.request_cache().open_streams() == 0
            && s.response_cache().open_streams() == 0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "streams leaked: in_flight={} requests={} responses={}",
        s.in_flight(),
        s.request_cache().open_streams(),
        s.response_cache().open_streams()
    );
}

/// Reads a request body to its end: `None` for a clean end, else the error.
async fn drain(mut body: upload_response::RequestBody) -> Option<TailError> {
    loop {
        match body.chunk().await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Some(e),
            None => return None,
        }
    }
}

async fn text(res: http::Response<upload_response::ResponseBody>) -> (StatusCode, String) {
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn spawn_echo(s: &UploadResponseService, name: &str) {
    let worker = s.worker(name, Route::prefix("/echo"));
    tokio::spawn(async move {
        loop {
            let mut job = worker.next_job().await;
            tokio::spawn(async move {
                let mut body = job.body();
                let Ok(mut out) = job.respond(StatusCode::OK, &HeaderMap::new()).await else {
                    return;
                };
                while let Some(Ok(chunk)) = body.chunk().await {
                    if out.send(chunk).await.is_err() {
                        return;
                    }
                }
                let _ = out.finish().await;
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_is_full_duplex_and_byte_exact() {
    let s = service(|_| {});
    spawn_echo(&s, "echo");
    let (tx, body) = channel_body();
    let res = {
        let s = s.clone();
        tokio::spawn(async move { s.handle(Request::post("/echo").body(body).unwrap()).await })
    };
    // The first chunk comes back before the upload is finished.
    tx.send(data(Bytes::from_static(b"first"))).await.unwrap();
    let res = res.await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"first");

    // Then 8 MiB more, far beyond the 256 KiB ring, hash-checked.
    let sent = tokio::spawn(async move {
        let mut h = Sha256::new();
        for i in 0..1024u32 {
            let chunk = Bytes::from(vec![(i % 251) as u8; 8192]);
            h.update(&chunk);
            tx.send(data(chunk)).await.unwrap();
        }
        h.finalize()
    });
    let mut h = Sha256::new();
    while let Some(frame) = body.frame().await {
        h.update(frame.unwrap().into_data().unwrap());
    }
    assert_eq!(sent.await.unwrap(), h.finalize());
    assert_settled(&s).await;
}

#[tokio::test]
async fn nobody_claims_503() {
    let s = service(|c| c.claim_timeout_ms = 50);
    let (status, _) = text(
        s.handle(
            Request::post("/nobody")
                .body(Full::new(Bytes::from("x")))
                .unwrap(),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_settled(&s).await;
}

#[tokio::test]
async fn all_streams_busy_503_with_retry_after() {
    let s = service(|c| {
        c.num_streams = 1;
        c.queue_timeout_ms = 50;
    });
    let (_tx, body) = channel_body();
    let first = {
        let s = s.clone();
        tokio::spawn(async move { s.handle(Request::post("/slow").body(body).unwrap()).await })
    };
    while s.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    let res = s
        .handle(
            Request::post("/second")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "1");
    first.abort();
    assert_settled(&s).await;
}

#[tokio::test]
async fn claimed_without_headers_504_and_worker_sees_abort() {
    let s = service(|c| c.response_timeout_ms = 100);
    let worker = s.worker("sleepy", Route::prefix("/"));
    let seen = tokio::spawn(async move {
        let mut job = worker.next_job().await;
        // Reads what there is, then waits for an end that never comes cleanly.
        drain(job.body()).await
    });
    let (tx, body) = channel_body();
    tx.send(data(Bytes::from_static(b"partial"))).await.unwrap();
    let (status, _) = text(s.handle(Request::post("/x").body(body).unwrap()).await).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        seen.await.unwrap(),
        Some(TailError::Aborted(AbortReason::Timeout))
    );
    drop(tx);
    assert_settled(&s).await;
}

#[tokio::test]
async fn dropped_claim_is_offered_to_another_worker() {
    let s = service(|_| {});
    let quitter = s.worker("quitter", Route::prefix("/job"));
    let quit = tokio::spawn(async move {
        let job = quitter.next_job().await;
        let id = job.stream_id();
        drop(job); // gives up before writing headers
        id
    });
    let res = {
        let s = s.clone();
        tokio::spawn(async move {
            s.handle(
                Request::post("/job")
                    .body(Full::new(Bytes::from("payload")))
                    .unwrap(),
            )
            .await
        })
    };
    let first_id = quit.await.unwrap();
    let finisher = s.worker("finisher", Route::prefix("/job"));
    let mut job = finisher.next_job().await;
    assert_eq!(job.stream_id(), first_id);
    let mut body = job.body();
    let got = body.chunk().await.unwrap().unwrap();
    assert!(body.chunk().await.is_none());
    let mut out = job
        .respond(StatusCode::CREATED, &HeaderMap::new())
        .await
        .unwrap();
    out.send(got).await.unwrap();
    out.finish().await.unwrap();
    let (status, text) = text(res.await.unwrap()).await;
    assert_eq!((status, text.as_str()), (StatusCode::CREATED, "payload"));
    drop(body); // a worker still holding a reader keeps the stream, rightly
    assert_settled(&s).await;
}

#[tokio::test]
async fn dropped_claim_after_recycling_is_502() {
    // Ring of 3 body slots of 4 KiB: the first worker reads 64 KiB, so the
    // request is no longer whole when it gives up.
    let s = service(|c| c.slots_per_stream = 4);
    let quitter = s.worker("quitter", Route::prefix("/"));
    let quit = tokio::spawn(async move {
        let mut job = quitter.next_job().await;
        let mut body = job.body();
        let mut n = 0;
        while n < 64 * 1024 {
            n += body.chunk().await.unwrap().unwrap().len();
        }
        drop(body);
        drop(job);
    });
    let (tx, body) = channel_body();
    let feeder = tokio::spawn(async move {
        for _ in 0..32 {
            if tx.send(data(Bytes::from(vec![1u8; 4096]))).await.is_err() {
                return;
            }
        }
    });
    let (status, _) = text(s.handle(Request::post("/x").body(body).unwrap()).await).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    quit.await.unwrap();
    feeder.abort();
    assert_settled(&s).await;
}

#[tokio::test]
async fn client_gone_mid_upload_readers_see_aborted() {
    let s = service(|_| {});
    let worker = s.worker("reader", Route::prefix("/"));
    let seen = tokio::spawn(async move {
        let mut job = worker.next_job().await;
        drain(job.body()).await
    });
    let (tx, body) = channel_body();
    let handle = {
        let s = s.clone();
        tokio::spawn(async move { s.handle(Request::post("/x").body(body).unwrap()).await })
    };
    tx.send(data(Bytes::from_static(b"some"))).await.unwrap();
    tx.send(Err(std::io::Error::other("connection reset")))
        .await
        .unwrap();
    let res = handle.await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        seen.await.unwrap(),
        Some(TailError::Aborted(AbortReason::ClientGone))
    );
    assert_settled(&s).await;
}

#[tokio::test]
async fn client_dropping_the_request_future_aborts_readers() {
    let s = service(|_| {});
    let worker = s.worker("reader", Route::prefix("/"));
    let (claimed_tx, claimed_rx) = tokio::sync::oneshot::channel();
    let seen = tokio::spawn(async move {
        let mut job = worker.next_job().await;
        let body = job.body();
        claimed_tx.send(()).unwrap();
        drain(body).await
    });
    let (_tx, body) = channel_body();
    let handle = {
        let s = s.clone();
        tokio::spawn(async move { s.handle(Request::post("/x").body(body).unwrap()).await })
    };
    claimed_rx.await.unwrap();
    handle.abort(); // what hyper does when the connection closes
    assert_eq!(
        seen.await.unwrap(),
        Some(TailError::Aborted(AbortReason::ClientGone))
    );
    assert_settled(&s).await;
}

#[tokio::test]
async fn oversized_body_413_by_length_and_by_stream() {
    let s = service(|c| c.max_body_bytes = 10_000);
    spawn_echo(&s, "echo");
    let declared = Request::post("/echo")
        .header("content-length", "20000")
        .body(Full::new(Bytes::from(vec![0u8; 20_000])))
        .unwrap();
    assert_eq!(
        s.handle(declared).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // No length declared: the limit trips while streaming. The echo worker
    // may already have started its response; then the client sees a reset.
    let s2 = service(|c| c.max_body_bytes = 10_000);
    let quiet = s2.worker("quiet", Route::prefix("/"));
    let seen = tokio::spawn(async move {
        let mut job = quiet.next_job().await;
        let mut body = job.body();
        while let Some(Ok(_)) = body.chunk().await {}
        drop(job);
    });
    let (tx, body) = channel_body();
    let feeder = tokio::spawn(async move {
        for _ in 0..8 {
            if tx.send(data(Bytes::from(vec![0u8; 4000]))).await.is_err() {
                return;
            }
        }
    });
    let (status, _) = text(s2.handle(Request::post("/x").body(body).unwrap()).await).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    seen.await.unwrap();
    feeder.await.unwrap();
    assert_settled(&s).await;
    assert_settled(&s2).await;
}

#[tokio::test]
async fn oversized_headers_431() {
    let s = service(|_| {}); // 4 KiB slots
    let req = Request::post("/x")
        .header("x-big", "a".repeat(8000))
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(
        s.handle(req).await.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_settled(&s).await;
}

#[tokio::test]
async fn worker_vanishing_after_response_started_resets_the_body() {
    let s = service(|_| {});
    let worker = s.worker("flaky", Route::prefix("/"));
    tokio::spawn(async move {
        let job = worker.next_job().await;
        let mut out = job
            .respond(StatusCode::OK, &HeaderMap::new())
            .await
            .unwrap();
        out.send(Bytes::from_static(b"partial")).await.unwrap();
        drop(out); // gone without finish()
    });
    let res = s
        .handle(
            Request::post("/x")
                .body(Full::new(Bytes::from("x")))
                .unwrap(),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    assert_eq!(
        &body.frame().await.unwrap().unwrap().into_data().unwrap()[..],
        b"partial"
    );
    assert!(
        body.frame().await.unwrap().is_err(),
        "an abort must not look like a clean end"
    );
    drop(body);
    assert_settled(&s).await;
}

#[tokio::test]
async fn seed_coordination_api() {
    let s = service(|_| {});
    let (tx, body) = channel_body();
    let handle = {
        let s = s.clone();
        tokio::spawn(async move {
            s.handle(Request::put("/seed?x=1").body(body).unwrap())
                .await
        })
    };
    let id = loop {
        if let Some(id) = s.stream_ids().first().copied() {
            break id;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(s.reader_count(id).unwrap(), 0);
    assert!(!s.has_readers(id).unwrap());
    s.register_reader(id, "a").unwrap();
    s.register_reader(id, "b").unwrap();
    assert!(s.register_reader(id, "a").is_err());
    assert_eq!(s.reader_count(id).unwrap(), 2);

    assert!(s.try_claim_response(id, "a").unwrap());
    assert!(
        !s.try_claim_response(id, "b").unwrap(),
        "exactly one writer"
    );
    assert!(matches!(
        s.write_response_headers(id, "b", ok_head()).await,
        Err(upload_response::CoordError::NotOwner { .. })
    ));

    match s.tail_request_for(id, "a", 1).await.unwrap() {
        TailSlot::Headers(head) => {
            assert_eq!(head.method, http::Method::PUT);
            assert_eq!(head.path.unwrap().as_str(), "/seed?x=1");
        }
        other => panic!("slot 1 is {other:?}"),
    }
    tx.send(data(Bytes::from_static(b"abc"))).await.unwrap();
    assert_eq!(
        s.tail_request_for(id, "a", 2).await.unwrap(),
        TailSlot::Body(Bytes::from_static(b"abc"))
    );
    drop(tx);
    assert_eq!(s.tail_request_for(id, "a", 3).await.unwrap(), TailSlot::End);
    assert_eq!(s.request_last(id).unwrap(), 3);
    let info = &s.streams()[0];
    assert_eq!((info.id, info.request_done, info.readers), (id, true, 2));
    assert_eq!(info.response_owner.as_deref(), Some("a"));

    s.write_response_headers(id, "a", ok_head()).await.unwrap();
    s.append_response_body(id, "a", Bytes::from(vec![b'z'; 10_000]))
        .await
        .unwrap();
    s.end_response(id, "a").await.unwrap();
    assert!(s.unregister_reader(id, "b").unwrap());
    let (status, body) = text(handle.await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "z".repeat(10_000));
    assert_settled(&s).await;
}

fn ok_head() -> upload_response::ResponseHead {
    upload_response::ResponseHead {
        status: StatusCode::OK,
        version: upload_response::HttpVersion::Http11,
        headers: vec![upload_response::Header::new("content-type", "text/plain").unwrap()],
    }
}
