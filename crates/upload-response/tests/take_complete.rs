//! The accessors the worker API's batched claims are built on:
//! [`RequestBody::try_complete`] (a whole small body, or nothing, never
//! waiting), [`RequestBody::complete_within`] (the same, waiting a bounded
//! time for the end) and [`Worker::try_next_job`] (a queued request, or
//! nothing).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::sync::mpsc;
use upload_response::{
    Job, RequestBody, Route, TailError, UploadResponseConfig, UploadResponseService,
};

type Chunk = Result<http_body::Frame<Bytes>, std::io::Error>;

fn service() -> UploadResponseService {
    UploadResponseService::new(UploadResponseConfig {
        num_streams: 8,
        slot_size_kb: 4,
        slots_per_stream: 32,
        response_timeout_ms: 600_000,
        ..UploadResponseConfig::default()
    })
    .unwrap()
}

fn channel_body() -> (
    mpsc::Sender<Chunk>,
    StreamBody<impl futures_util::Stream<Item = Chunk>>,
) {
    let (tx, rx) = mpsc::channel::<Chunk>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, StreamBody::new(stream))
}

/// Bytes that differ from slot to slot, so a reordered or lost slot shows.
fn pattern(n: usize) -> Bytes {
    (0..n).map(|i| (i % 251) as u8).collect::<Vec<_>>().into()
}

/// Sends `body` as a client request to `path`; the response body.
fn upload(
    service: &UploadResponseService,
    path: &str,
    body: Bytes,
) -> tokio::task::JoinHandle<(StatusCode, Bytes)> {
    let service = service.clone();
    let request = Request::post(path).body(Full::new(body)).unwrap();
    tokio::spawn(async move {
        let response = service.handle(request).await;
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, bytes)
    })
}

/// A client request to `/b` whose body is sent through the returned
/// channel; the task resolves to the response status.
fn streaming_upload(
    service: &UploadResponseService,
) -> (mpsc::Sender<Chunk>, tokio::task::JoinHandle<StatusCode>) {
    let (tx, stream) = channel_body();
    let request = Request::post("/b").body(stream).unwrap();
    let service = service.clone();
    let client = tokio::spawn(async move { service.handle(request).await.status() });
    (tx, client)
}

/// Calls `try_complete` until the body is whole (the ingress publishes its
/// end asynchronously), failing after 5 s.
async fn complete(body: &mut RequestBody, max: usize) -> Bytes {
    for _ in 0..500 {
        if let Some(whole) = body.try_complete(max) {
            return whole;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the body never became complete");
}

async fn drain(body: &mut RequestBody) -> Result<Vec<u8>, TailError> {
    let mut out = Vec::new();
    while let Some(chunk) = body.chunk().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

async fn answer(job: Job, text: &'static str) {
    let mut out = job
        .respond(StatusCode::OK, &HeaderMap::new())
        .await
        .unwrap();
    out.send(Bytes::from_static(text.as_bytes())).await.unwrap();
    out.finish().await.unwrap();
}

#[tokio::test]
async fn a_small_arrived_body_is_taken_whole_over_several_slots() {
    let service = service();
    let sent = pattern(10_000); // three 4 KiB slots
    let client = upload(&service, "/b", sent.clone());
    let mut job = service.worker("w", Route::prefix("/b")).next_job().await;
    let mut body = job.body();
    assert_eq!(complete(&mut body, 16_384).await, sent);
    assert!(body.chunk().await.is_none(), "the body was consumed");
    assert!(body.try_complete(16_384).is_none(), "only once");
    answer(job, "ok").await;
    assert_eq!(client.await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn an_empty_body_is_complete_and_empty() {
    let service = service();
    let client = upload(&service, "/b", Bytes::new());
    let mut job = service.worker("w", Route::prefix("/b")).next_job().await;
    let mut body = job.body();
    assert_eq!(complete(&mut body, 0).await, Bytes::new());
    answer(job, "ok").await;
    assert_eq!(client.await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn a_body_over_the_limit_is_not_taken_and_reads_on_intact() {
    let service = service();
    let sent = pattern(10_000);
    let client = upload(&service, "/b", sent.clone());
    let mut job = service.worker("w", Route::prefix("/b")).next_job().await;
    let mut body = job.body();
    // Wait for the whole body, so the refusal is the limit's, not timing's.
    while !service.streams().iter().all(|s| s.request_done) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(body.try_complete(4096).is_none());
    assert!(
        body.try_complete(4096).is_none(),
        "asking again changes nothing"
    );
    // The chunks read ahead come out first, in order, then the rest.
    assert_eq!(drain(&mut body).await.unwrap(), sent);
    answer(job, "ok").await;
    assert_eq!(client.await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn a_body_still_arriving_is_not_taken_until_it_ends() {
    let service = service();
    let (tx, client) = streaming_upload(&service);
    let first = pattern(1500);
    tx.send(Ok(http_body::Frame::data(first.clone())))
        .await
        .unwrap();
    let mut job = service.worker("w", Route::prefix("/b")).next_job().await;
    let mut body = job.body();
    // Whatever of the first part has arrived, the end has not.
    for _ in 0..20 {
        assert!(body.try_complete(1 << 16).is_none());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = pattern(700);
    tx.send(Ok(http_body::Frame::data(second.clone())))
        .await
        .unwrap();
    drop(tx);
    let whole = complete(&mut body, 1 << 16).await;
    assert_eq!(whole, [first, second].concat());
    answer(job, "ok").await;
    assert_eq!(client.await.unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn a_body_read_by_chunk_is_no_longer_whole() {
    let service = service();
    let sent = pattern(10_000);
    let client = upload(&service, "/b", sent.clone());
    let mut job = service.worker("w", Route::prefix("/b")).next_job().await;
    let mut body = job.body();
    let first = body.chunk().await.unwrap().unwrap();
    while !service.streams().iter().all(|s| s.request_done) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(body.try_complete(1 << 16).is_none());
    let rest = drain(&mut body).await.unwrap();
    assert_eq!([&first[..], &rest[..]].concat(), sent);
    answer(job, "ok").await;
    assert_eq!(client.await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn an_aborted_body_is_not_taken_and_its_error_stays() {
    let service = service();
    let (tx, client) = streaming_upload(&service);
    tx.send(Ok(http_body::Frame::data(pattern(100))))
        .await
        .unwrap();
    let mut job = service.worker("w", Route::prefix("/b")).next_job().await;
    tx.send(Err(std::io::Error::other("client gone")))
        .await
        .unwrap();
    let mut body = job.body();
    for _ in 0..50 {
        assert!(body.try_complete(1 << 16).is_none());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(drain(&mut body).await.is_err(), "the abort shows at chunk");
    drop(job);
    drop(tx);
    assert_ne!(client.await.unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn try_next_job_takes_only_what_is_queued() {
    let service = service();
    let worker = service.worker("w", Route::prefix("/q"));
    assert!(worker.try_next_job().is_none(), "nothing queued");
    let clients: Vec<_> = (0..3)
        .map(|i| upload(&service, &format!("/q/{i}"), pattern(10)))
        .collect();
    while service.streams().len() < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let other = service.worker("o", Route::prefix("/elsewhere"));
    assert!(other.try_next_job().is_none(), "another route's queue");
    let mut jobs = Vec::new();
    while let Some(job) = worker.try_next_job() {
        jobs.push(job);
    }
    let mut ids: Vec<_> = jobs.iter().map(Job::stream_id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3, "each queued request once");
    for job in jobs {
        answer(job, "ok").await;
    }
    for client in clients {
        assert_eq!(client.await.unwrap(), (StatusCode::OK, Bytes::from("ok")));
    }
}

#[tokio::test]
async fn complete_within_waits_for_a_body_that_ends_in_time() {
    let service = service();
    let (tx, client) = streaming_upload(&service);
    let first = pattern(1500);
    tx.send(Ok(http_body::Frame::data(first.clone())))
        .await
        .unwrap();
    let mut job = service.worker("w", Route::prefix("/b")).next_job().await;
    let mut body = job.body();
    let second = pattern(700);
    let sender = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(Ok(http_body::Frame::data(second))).await.unwrap();
    });
    let whole = body.complete_within(1 << 16, Duration::from_secs(10)).await;
    sender.await.unwrap();
    assert_eq!(whole.unwrap(), [first, pattern(700)].concat());
    answer(job, "ok").await;
    assert_eq!(client.await.unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn complete_within_gives_up_at_its_bound_and_loses_nothing() {
    let service = service();
    let (tx, client) = streaming_upload(&service);
    let first = pattern(2500);
    tx.send(Ok(http_body::Frame::data(first.clone())))
        .await
        .unwrap();
    let mut job = service.worker("w", Route::prefix("/b")).next_job().await;
    let mut body = job.body();
    let within = body
        .complete_within(1 << 16, Duration::from_millis(30))
        .await;
    assert!(within.is_none(), "the body has not ended");
    // Too large: refused at once, however long it could wait.
    let second = pattern(20_000);
    tx.send(Ok(http_body::Frame::data(second.clone())))
        .await
        .unwrap();
    drop(tx);
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        body.complete_within(4096, Duration::from_secs(600)),
    )
    .await
    .expect("a body over the limit is refused without waiting out the bound");
    assert!(refused.is_none());
    assert_eq!(drain(&mut body).await.unwrap(), [first, second].concat());
    answer(job, "ok").await;
    assert_eq!(client.await.unwrap(), StatusCode::OK);
}
