//! HTTP/1.1, HTTP/2 and WebSocket (HTTP/1.1 upgrade) sink on hyper.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

type SinkBody = Either<Full<Bytes>, Incoming>;

/// How long a finished WebSocket session waits for the client's Close reply.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Accepts connections forever and serves the sink contract on each; TLS
/// when an acceptor is given.
pub async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>) {
    crate::serve::accept_loop(listener, tls, service_fn(handle)).await;
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<SinkBody>, Infallible> {
    let path = req.uri().path();
    if path.starts_with("/ws") {
        return Ok(upgrade(&mut req));
    }
    if req.method() != Method::POST {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "POST only\n".into()));
    }
    if path.starts_with("/discard") {
        let mut body = req.into_body();
        let mut count: u64 = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => count += frame.data_ref().map_or(0, |d| d.len() as u64),
                Err(e) => return Ok(text(StatusCode::BAD_REQUEST, format!("{e}\n"))),
            }
        }
        return Ok(text(StatusCode::OK, format!("{count}\n")));
    }
    if path.starts_with("/echo") {
        let content_type = req.headers().get(CONTENT_TYPE).cloned();
        let mut response = Response::new(Either::Right(req.into_body()));
        if let Some(value) = content_type {
            response.headers_mut().insert(CONTENT_TYPE, value);
        }
        return Ok(response);
    }
    Ok(text(
        StatusCode::NOT_FOUND,
        "use /discard, /echo or /ws\n".into(),
    ))
}

fn text(status: StatusCode, body: String) -> Response<SinkBody> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static("text/plain"));
    response
}

fn has_token(req: &Request<Incoming>, name: http::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Answers a WebSocket handshake with 101 and runs the session once hyper
/// hands over the connection.
fn upgrade(req: &mut Request<Incoming>) -> Response<SinkBody> {
    let key = req
        .headers()
        .get(SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes().to_vec());
    let (Some(key), true, true) = (
        key,
        has_token(req, CONNECTION, "upgrade"),
        has_token(req, UPGRADE, "websocket"),
    ) else {
        return text(
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket upgrade required\n".into(),
        );
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let config = WebSocketConfig::default().max_message_size(Some(64 << 20));
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            let _ = ws_session(ws).await;
        }
    });
    let mut response = text(StatusCode::SWITCHING_PROTOCOLS, String::new());
    let headers = response.headers_mut();
    headers.remove(CONTENT_TYPE);
    headers.insert(UPGRADE, http::HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, http::HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = http::HeaderValue::from_str(&derive_accept_key(&key)) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

async fn ws_session<S>(
    mut ws: WebSocketStream<S>,
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut count: u64 = 0;
    while let Some(message) = ws.next().await {
        match message? {
            Message::Binary(data) if data.is_empty() => break,
            Message::Binary(data) => count += data.len() as u64,
            Message::Text(text) => count += text.len() as u64,
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
    ws.send(Message::Text(Utf8Bytes::from(count.to_string())))
        .await?;
    ws.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: Utf8Bytes::from_static(""),
    })))
    .await?;
    // Wait for the client's Close so the TCP connection ends cleanly.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    Ok(())
}
