//! Whole responses to one ingress, coalesced into `POST /v1/responses`
//! calls: a response waits only while earlier calls are in flight, and
//! then leaves with every response that queued up meanwhile. When idle a
//! response goes out at once, alone; under load one call carries many.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::ClientError;
use crate::client::{Caller, Shared};

/// Most responses one call carries (the server's bound).
const MAX_PER_CALL: usize = 64;
/// Calls in flight at once per ingress: enough to keep a loopback or LAN
/// link busy while the next batch gathers.
const SENDERS: usize = 4;

/// One queued response and where its outcome goes.
struct Pending {
    item: Item,
    done: oneshot::Sender<Result<(), ClientError>>,
}

#[derive(Serialize)]
struct Item {
    stream_id: u64,
    status: u16,
    headers: Vec<(String, String)>,
    body_b64: String,
}

#[derive(Deserialize)]
struct Outcome {
    status: u16,
    #[serde(default)]
    error: Option<String>,
}

/// The queue of whole responses to one ingress, and its sender tasks.
/// Unbounded as a channel, yet never longer than the client's concurrency:
/// every queued response is a job that holds a permit until its outcome.
pub(crate) struct Responder {
    tx: mpsc::UnboundedSender<Pending>,
    /// The ingress has no `/v1/responses` (it predates it): responses go
    /// one call each.
    unsupported: Arc<AtomicBool>,
}

impl Responder {
    /// Starts the sender tasks for `origin` on the current runtime. They
    /// end when the responder is dropped.
    pub(crate) fn start(caller: Caller, origin: String, worker_query: String) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        let unsupported = Arc::new(AtomicBool::new(false));
        let url = format!("{origin}/v1/responses?{worker_query}");
        for _ in 0..SENDERS {
            let (rx, caller, url) = (rx.clone(), caller.clone(), url.clone());
            let unsupported = unsupported.clone();
            tokio::spawn(async move { send_loop(rx, caller, url, unsupported).await });
        }
        Self { tx, unsupported }
    }

    /// Whether the ingress lacks `/v1/responses`.
    pub(crate) fn unsupported(&self) -> bool {
        self.unsupported.load(Ordering::Relaxed)
    }

    /// Queues one response; resolves with its own outcome.
    pub(crate) async fn respond(
        &self,
        stream_id: u64,
        status: StatusCode,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<(), ClientError> {
        let item = Item {
            stream_id,
            status: status.as_u16(),
            headers: headers
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
            body_b64: BASE64.encode(body),
        };
        let (done, outcome) = oneshot::channel();
        let call = || format!("POST /v1/responses (stream {stream_id})");
        self.tx
            .send(Pending { item, done })
            .map_err(|_| ClientError::Stopped(call()))?;
        outcome.await.map_err(|_| ClientError::Stopped(call()))?
    }
}

/// Takes whatever has queued (waiting for the first), sends it as one
/// call, hands each response its outcome; until the queue closes.
async fn send_loop(
    rx: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>,
    caller: Caller,
    url: String,
    unsupported: Arc<AtomicBool>,
) {
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            batch.push(first);
            while batch.len() < MAX_PER_CALL {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        let (items, waiting): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|p| (p.item, p.done)).unzip();
        match call(&caller, &url, &items).await {
            Ok(outcomes) => {
                for (done, outcome) in waiting.into_iter().zip(outcomes) {
                    let _ = done.send(outcome);
                }
            }
            Err(ClientError::Status { status, .. }) if status == StatusCode::NOT_FOUND => {
                unsupported.store(true, Ordering::Relaxed);
                for done in waiting {
                    let _ = done.send(Err(ClientError::Unsupported));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for done in waiting {
                    let _ = done.send(Err(ClientError::Batch(message.clone())));
                }
            }
        }
    }
}

/// One `POST /v1/responses`; an outcome per item, in order.
async fn call(
    caller: &Caller,
    url: &str,
    items: &[Item],
) -> Result<Vec<Result<(), ClientError>>, ClientError> {
    let json = serde_json::to_vec(items)?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let body = Full::new(Bytes::from(json)).map_err(|e| match e {}).boxed();
    let response = caller
        .call(Method::POST, url.to_owned(), headers, body)
        .await?;
    let call = format!("POST {url}");
    let response = Shared::expect(&call, response, &[StatusCode::OK]).await?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(ClientError::Body)?
        .to_bytes();
    let outcomes: Vec<Outcome> = serde_json::from_slice(&body)?;
    if outcomes.len() != items.len() {
        return Err(ClientError::Batch(format!(
            "{} outcomes for {} responses",
            outcomes.len(),
            items.len()
        )));
    }
    Ok(outcomes
        .into_iter()
        .zip(items)
        .map(|(outcome, item)| match outcome.status {
            204 => Ok(()),
            status => Err(ClientError::Status {
                call: format!("{call} (stream {})", item.stream_id),
                status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                message: outcome.error.unwrap_or_default(),
            }),
        })
        .collect())
}
