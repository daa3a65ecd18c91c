//! The test handler: one tower service used over every protocol.
//!
//! * `POST /sha256` with `x-sha256: HEX`: reads the body as a stream, answers
//!   `200 ok <bytes>` when the digest matches, `422` otherwise (`413` past the limit).
//! * `GET /pattern/N`: streams N bytes of the test pattern.
//! * `GET /broken`: sends `partial`, then the body fails.
//! * `GET /gated/ID`: sends `first`, waits for gate ID to open, then sends `rest`.
//! * `/ws/sha256`, `/ws/pattern/N`, `/ws/gated/ID`, `/ws/hold`: the same over WebSocket
//!   (`hold` waits for the shutdown signal and closes with 1001).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, stream};
use http::{Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tower::util::BoxCloneSyncService;
use web_service::ws::{self, WebSocket};
use web_service::{Body, ShutdownSignal};

use super::pattern;

/// Gates a test opens to let a gated handler finish.
#[derive(Clone, Default)]
pub struct Gates {
    next: Arc<AtomicU64>,
    waiting: Arc<Mutex<HashMap<u64, oneshot::Receiver<()>>>>,
}

impl Gates {
    /// A new closed gate: its id for the URL, and the sender that opens it.
    pub fn gate(&self) -> (u64, oneshot::Sender<()>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().insert(id, rx);
        (id, tx)
    }

    fn take(&self, id: u64) -> Option<oneshot::Receiver<()>> {
        self.waiting.lock().unwrap().remove(&id)
    }
}

pub type TestService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

pub fn service(gates: Gates) -> TestService {
    BoxCloneSyncService::new(tower::service_fn(move |req| handle(gates.clone(), req)))
}

fn text(status: StatusCode, msg: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(msg));
    *resp.status_mut() = status;
    resp
}

async fn handle(gates: Gates, mut req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    if let Some(rest) = path.strip_prefix("/ws/") {
        let rest = rest.to_owned();
        return Ok(match ws::upgrade(&mut req) {
            Ok((resp, upgrade)) => {
                upgrade.spawn(move |ws, signal| ws_session(ws, signal, rest, gates));
                resp
            }
            Err(e) => e.into_response(),
        });
    }
    if path == "/broken" {
        // A body that fails after its first chunk: exercises the cancel-safety contract.
        let first = stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"partial")) });
        let fail = stream::once(async { Err(std::io::Error::other("handler gave up")) });
        return Ok(Response::new(Body::from_stream(first.chain(fail))));
    }
    if path == "/sha256" {
        return Ok(check_sha256(req).await);
    }
    if let Some(rest) = path.strip_prefix("/early/") {
        return Ok(answer_early(req, rest).await);
    }
    if let Some(n) = path.strip_prefix("/pattern/") {
        let Ok(n) = n.parse() else {
            return Ok(text(StatusCode::BAD_REQUEST, "bad size".into()));
        };
        return Ok(Response::new(Body::from_stream(pattern::stream(n))));
    }
    if let Some(id) = path.strip_prefix("/gated/") {
        let gate = id.parse().ok().and_then(|id| gates.take(id));
        let Some(gate) = gate else {
            return Ok(text(StatusCode::NOT_FOUND, "no such gate".into()));
        };
        let first = stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"first")) });
        // The rest waits for the client to confirm it already saw the first part.
        let rest = stream::once(async move {
            let _ = gate.await;
            Ok(Bytes::from_static(b"rest"))
        });
        let parts = first.chain(rest);
        return Ok(Response::new(Body::from_stream(parts)));
    }
    Ok(text(StatusCode::NOT_FOUND, "not found".into()))
}

/// `/early/READ/ANSWER`: reads at least READ bytes of the body, drops the rest and
/// answers `200` with an ANSWER-byte pattern (a worker that answers before the upload
/// ends).
async fn answer_early(req: Request<Body>, sizes: &str) -> Response<Body> {
    let Some((Ok(read), Ok(answer))) = sizes
        .split_once('/')
        .map(|(r, a)| (r.parse::<u64>(), a.parse::<u64>()))
    else {
        return text(StatusCode::BAD_REQUEST, "bad sizes".into());
    };
    let mut body = req.into_body();
    while body.received() < read {
        match body.chunk().await {
            Some(Ok(_)) => {}
            Some(Err(e)) => return text(e.status(), format!("{e}\n")),
            None => break,
        }
    }
    drop(body);
    Response::new(Body::from_stream(pattern::stream(answer)))
}

async fn check_sha256(req: Request<Body>) -> Response<Body> {
    let expected = req
        .headers()
        .get("x-sha256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut body = req.into_body();
    let mut h = Sha256::new();
    while let Some(chunk) = body.chunk().await {
        match chunk {
            Ok(data) => h.update(&data),
            Err(e) => return text(e.status(), format!("{e}\n")),
        }
    }
    let got = hex::encode(h.finalize());
    if got == expected {
        text(StatusCode::OK, format!("ok {}", body.received()))
    } else {
        text(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("sha256 {got} != {expected}"),
        )
    }
}

async fn ws_session(mut ws: WebSocket, signal: ShutdownSignal, what: String, gates: Gates) {
    if what == "sha256" {
        let mut h = Sha256::new();
        let mut n = 0u64;
        while let Some(Ok(msg)) = ws.next().await {
            match msg {
                Message::Binary(data) if data.is_empty() => break,
                Message::Binary(data) => {
                    n += data.len() as u64;
                    h.update(&data);
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = ws
            .send(Message::text(format!("{} {n}", hex::encode(h.finalize()))))
            .await;
    } else if let Some(n) = what.strip_prefix("pattern/") {
        let n: u64 = n.parse().unwrap_or(0);
        let mut chunks = Box::pin(pattern::stream(n));
        while let Some(Ok(chunk)) = chunks.next().await {
            if ws.send(Message::Binary(chunk)).await.is_err() {
                return;
            }
        }
    } else if let Some(id) = what.strip_prefix("gated/") {
        let Some(gate) = id.parse().ok().and_then(|id| gates.take(id)) else {
            return;
        };
        let _ = ws.send(Message::text("first")).await;
        let _ = gate.await;
        let _ = ws.send(Message::text("rest")).await;
    } else if what == "hold" {
        let _ = ws.send(Message::text("held")).await;
        tokio::select! {
            () = signal.cancelled() => {
                let frame = CloseFrame { code: CloseCode::Away, reason: "shutdown".into() };
                let _ = ws.close(Some(frame)).await;
                while let Some(Ok(_)) = ws.next().await {}
                return;
            }
            _ = async { while let Some(Ok(_)) = ws.next().await {} } => return,
        }
    }
    let _ = ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await;
    while let Some(Ok(_)) = ws.next().await {}
}
