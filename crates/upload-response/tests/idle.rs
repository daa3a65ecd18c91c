//! The body rules of `GuardedBody` through the in-process ingress, on the
//! paused clock: a body silent for `body_idle_timeout_ms` is a 408 and an
//! abort, time spent waiting on a slow worker is not the client's, and a
//! body short of its `Content-Length` (which h3 does not check itself) is an
//! abort, never a clean end.

use std::time::Duration;

use bytes::Bytes;
use chunk_cache::AbortReason;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::sync::{mpsc, oneshot};
use upload_response::{
    IngressError, Route, TailError, UploadResponseConfig, UploadResponseService,
};

type Chunk = Result<http_body::Frame<Bytes>, std::io::Error>;

fn service() -> UploadResponseService {
    UploadResponseService::new(UploadResponseConfig {
        num_streams: 4,
        slot_size_kb: 4,
        slots_per_stream: 4,
        body_idle_timeout_ms: 1_000,
        response_timeout_ms: 600_000,
        ..UploadResponseConfig::default()
    })
    .unwrap()
}

/// A worker on `/` that reads each body, pausing `pause` before each chunk,
/// and reports how it ended.
fn reader(
    service: &UploadResponseService,
    pause: Duration,
) -> oneshot::Receiver<Result<u64, TailError>> {
    let worker = service.worker("reader", Route::prefix("/"));
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut job = worker.next_job().await;
        let mut body = job.body();
        let mut total = 0;
        let outcome = loop {
            tokio::time::sleep(pause).await;
            match body.chunk().await {
                Some(Ok(chunk)) => total += chunk.len() as u64,
                Some(Err(e)) => break Err(e),
                None => break Ok(total),
            }
        };
        let ended = outcome.is_ok();
        let _ = tx.send(outcome);
        if ended {
            let out = job
                .respond(StatusCode::OK, &Default::default())
                .await
                .unwrap();
            out.finish().await.unwrap();
        }
    });
    rx
}

fn channel_body() -> (
    mpsc::Sender<Chunk>,
    StreamBody<impl futures_util::Stream<Item = Chunk>>,
) {
    let (tx, rx) = mpsc::channel::<Chunk>(1);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, StreamBody::new(stream))
}

fn data(n: usize) -> Chunk {
    Ok(http_body::Frame::data(Bytes::from(vec![5u8; n])))
}

#[tokio::test(start_paused = true)]
async fn a_silent_body_gets_408_and_workers_see_a_timeout() {
    let service = service();
    let outcome = reader(&service, Duration::ZERO);
    let (tx, body) = channel_body();
    tx.send(data(100)).await.unwrap();
    let res = service
        .handle(Request::post("/up").body(body).unwrap())
        .await;
    assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(
        res.extensions().get::<IngressError>(),
        Some(&IngressError::BodyIdle(1_000))
    );
    assert_eq!(
        outcome.await.unwrap(),
        Err(TailError::Aborted(AbortReason::Timeout))
    );
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn time_spent_on_a_slow_worker_is_not_body_idle() {
    let service = service();
    // The worker takes 3 s per chunk, three times the body idle timeout; the
    // client has its next chunk ready at once, so it is never idle.
    let outcome = reader(&service, Duration::from_secs(3));
    let (tx, body) = channel_body();
    let feed = tokio::spawn(async move {
        for _ in 0..20 {
            tx.send(data(4096)).await.unwrap();
        }
    });
    let res = service
        .handle(Request::post("/up").body(body).unwrap())
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(outcome.await.unwrap(), Ok(20 * 4096));
    feed.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_body_short_of_its_content_length_is_an_abort() {
    let service = service();
    let outcome = reader(&service, Duration::ZERO);
    // The worker waits for a job before the request comes: a body this
    // small is pumped, and found short, within the request's first poll,
    // and a request that fails before any worker took it is never offered.
    tokio::task::yield_now().await;
    let req = Request::post("/up")
        .header("content-length", "10")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let res = service.handle(req).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        res.extensions().get::<IngressError>(),
        Some(&IngressError::BodyLength {
            declared: 10,
            received: 5
        })
    );
    assert_eq!(
        outcome.await.unwrap(),
        Err(TailError::Aborted(AbortReason::ClientGone))
    );
    let text = res.into_body().collect().await.unwrap().to_bytes();
    assert!(
        std::str::from_utf8(&text)
            .unwrap()
            .contains("content-length 10")
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_of_its_content_length_ends_cleanly() {
    let service = service();
    let outcome = reader(&service, Duration::ZERO);
    let req = Request::post("/up")
        .header("content-length", "5")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    assert_eq!(service.handle(req).await.status(), StatusCode::OK);
    assert_eq!(outcome.await.unwrap(), Ok(5));
}
