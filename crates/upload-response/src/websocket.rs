//! WebSocket uploads (ARCHITECTURE.md §7): binary messages are body bytes, an
//! empty binary message or a Close 1000 ends the body; any other close code,
//! a dropped connection or a protocol error aborts it (ARCHITECTURE.md §6).
//! The response body goes back as binary messages, then Close 1000 for
//! 2xx/3xx, `4000 + status` otherwise; a session silent for the body idle
//! timeout is closed with 1008, a response failing midway with 1011.
//! Workers see the request as a `POST` to the socket's path (it carries an
//! upload body), without the upgrade headers.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, request};
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::debug;
use web_service::ws::WebSocket;

use crate::ingress::WsTransport;
use crate::{BoxError, IngressError, UploadResponseService};

/// The client broke its upload: an abort, never a clean end.
fn lost(why: &str) -> BoxError {
    Box::new(IngressError::BodyFailed(why.into()))
}

/// Headers of the upgrade handshake, meaningless to a worker.
const HANDSHAKE: [&str; 7] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "sec-websocket-accept",
];

type BodyItem = Result<http_body::Frame<Bytes>, BoxError>;

impl UploadResponseService {
    /// Runs one WebSocket upload session on an upgraded socket. `parts` is
    /// the head of the upgrade request (taken before upgrading).
    pub async fn serve_websocket(&self, mut parts: request::Parts, ws: WebSocket) {
        parts.method = Method::POST;
        parts.extensions.insert(WsTransport);
        for name in HANDSHAKE {
            parts.headers.remove(name);
        }
        let (mut sink, mut stream) = ws.split();
        let (tx, rx) = mpsc::channel::<BodyItem>(4);
        // The reader runs beside the response: full duplex. After the body's
        // end it keeps reading so the closing handshake completes.
        let reader = tokio::spawn(async move {
            let mut tx = Some(tx);
            loop {
                let Some(msg) = stream.next().await else {
                    // The connection ended without a Close: not a clean end.
                    if let Some(t) = tx.take() {
                        let _ = t.send(Err(lost("the connection dropped"))).await;
                    }
                    break;
                };
                match msg {
                    Ok(Message::Binary(data)) if data.is_empty() => tx = None,
                    Ok(Message::Binary(data)) => {
                        if let Some(t) = &tx
                            && t.send(Ok(http_body::Frame::data(data))).await.is_err()
                        {
                            tx = None;
                        }
                    }
                    Ok(Message::Close(frame)) => {
                        // 1005: a Close without a status code (RFC 6455 §7.4.1).
                        let code = frame.map_or(1005, |f| u16::from(f.code));
                        if let Some(t) = tx.take()
                            && code != u16::from(CloseCode::Normal)
                        {
                            let _ = t.send(Err(Box::new(IngressError::WsClosed(code)))).await;
                        }
                        break;
                    }
                    Ok(Message::Text(_)) => {
                        if let Some(t) = tx.take() {
                            let _ = t.send(Err(lost("text message in a binary upload"))).await;
                        }
                    }
                    Ok(_) => {} // ping/pong: tungstenite answers pings itself
                    Err(e) => {
                        if let Some(t) = tx.take() {
                            let _ = t.send(Err(Box::new(e))).await;
                        }
                        break;
                    }
                }
            }
        });
        let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
        let response = self.handle(Request::from_parts(parts, body)).await;
        let status = response.status();
        let refused = response.extensions().get::<IngressError>().cloned();
        let mut body = response.into_body();
        let idle = self.config().response_idle_timeout();
        let mut failed = None;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    // A client that reads nothing must not hold the session
                    // (and its streams) open: the same bound as the worker's
                    // writes.
                    match tokio::time::timeout(idle, sink.send(Message::Binary(data))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return, // the client is gone
                        Err(_) => {
                            debug!("the client read nothing of the response; dropping it");
                            return;
                        }
                    }
                }
                Err(e) => {
                    debug!(error = %e, "response failed mid-way");
                    failed = Some(IngressError::from_body_error(e));
                    break;
                }
            }
        }
        let code = match (failed, refused) {
            (Some(failure), _) => CloseCode::from(failure.ws_close_code(true)),
            (None, Some(refusal)) => CloseCode::from(refusal.ws_close_code(false)),
            (None, None) if status.as_u16() < 400 => CloseCode::Normal,
            (None, None) => CloseCode::from(4000 + status.as_u16()),
        };
        let close = CloseFrame {
            code,
            reason: status.canonical_reason().unwrap_or("").into(),
        };
        let _ = sink.send(Message::Close(Some(close))).await;
        // Let the client's Close arrive (bounded by the server's drain/idle limits).
        let _ = reader.await;
    }
}
