//! Benchmark target: `bench_sink --dir DIR`.
//!
//! Binds cleartext TCP and TLS TCP on `127.0.0.1:0` (plus QUIC on the TLS port
//! number), prints `READY http=127.0.0.1:P1 https=127.0.0.1:P2`, and serves:
//! `POST /discard…` (answers `<byte count>\n`), `POST /echo…` (streams the body
//! back), `GET /bytes/N` (N zero bytes) and a WebSocket on `/ws…` (binary messages
//! until an empty one or Close, then a text `<byte count>` and Close 1000; after a
//! client's Close, RFC 6455 allows no more data, so that Close is only answered).
//! Exits gracefully on SIGTERM/SIGINT or when stdin reaches EOF (sessions get Close
//! 1001 on shutdown).

use std::convert::Infallible;
use std::io::Write as _;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, stream};
use http::{Method, Request, Response, StatusCode, header};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use web_service::ws::{self, WebSocket};
use web_service::{Body, Listen, Server, ServerConfig, ShutdownSignal, TlsIdentity};

const CHUNK: usize = 64 * 1024;
static ZEROS: [u8; CHUNK] = [0; CHUNK];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let dir = parse_dir()?;
    let tls = TlsIdentity::self_signed_in(&dir)?.identity;
    let listen = Listen {
        http: Some("127.0.0.1:0".parse()?),
        https: Some(("127.0.0.1:0".parse()?, tls)),
    };
    let server = Server::bind(ServerConfig::default(), listen).await?;
    let (http, https) = (server.http_addr(), server.https_addr());
    let (Some(http), Some(https)) = (http, https) else {
        return Err("listeners did not bind".into());
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY http={http} https={https}")?;
    out.flush()?;
    drop(out);
    let stop = async {
        tokio::select! {
            () = web_service::ctrl_c_or_sigterm() => {}
            () = stdin_eof() => {}
        }
    };
    server.serve(tower::service_fn(handle), stop).await?;
    Ok(())
}

fn parse_dir() -> Result<PathBuf, String> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (Some("--dir"), Some(dir)) => Ok(PathBuf::from(dir)),
        _ => Err("usage: bench_sink --dir DIR".to_owned()),
    }
}

async fn stdin_eof() {
    // A plain thread: blocking stdin reads must not occupy a runtime worker.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        while let Ok(n) = std::io::Read::read(&mut stdin, &mut buf) {
            if n == 0 {
                break;
            }
        }
        let _ = tx.send(());
    });
    let _ = rx.await;
}

async fn handle(mut req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    if path.starts_with("/ws") {
        return Ok(match ws::upgrade(&mut req) {
            Ok((resp, upgrade)) => {
                upgrade.spawn(ws_count);
                resp
            }
            Err(e) => e.into_response(),
        });
    }
    let method = req.method().clone();
    Ok(match (method, path.as_str()) {
        (Method::POST, p) if p.starts_with("/discard") => discard(req.into_body()).await,
        (Method::POST, p) if p.starts_with("/echo") => {
            let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
            let mut resp = Response::new(req.into_body());
            if let Some(ct) = content_type {
                resp.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            resp
        }
        (Method::GET, p) if p.starts_with("/bytes/") => match p["/bytes/".len()..].parse::<u64>() {
            Ok(n) => zeros(n),
            Err(_) => text(
                StatusCode::BAD_REQUEST,
                "expected /bytes/<count>\n".to_owned(),
            ),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
    })
}

async fn discard(mut body: Body) -> Response<Body> {
    while let Some(chunk) = body.chunk().await {
        if let Err(e) = chunk {
            return text(e.status(), format!("{e}\n"));
        }
    }
    text(StatusCode::OK, format!("{}\n", body.received()))
}

fn zeros(n: u64) -> Response<Body> {
    let chunks = stream::unfold(n, |left| async move {
        if left == 0 {
            return None;
        }
        let take = left.min(CHUNK as u64) as usize;
        Some((
            Ok::<_, Infallible>(Bytes::from_static(&ZEROS[..take])),
            left - take as u64,
        ))
    });
    let mut resp = Response::new(Body::from_stream(chunks));
    resp.headers_mut().insert(header::CONTENT_LENGTH, n.into());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

fn text(status: StatusCode, msg: String) -> Response<Body> {
    let mut resp = Response::new(Body::from(msg));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    resp
}

async fn ws_count(mut ws: WebSocket, shutdown: ShutdownSignal) {
    let mut count: u64 = 0;
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            () = shutdown.cancelled() => {
                let frame = CloseFrame { code: CloseCode::Away, reason: "server shutting down".into() };
                let _ = ws.close(Some(frame)).await;
                return;
            }
        };
        match msg {
            Some(Ok(Message::Binary(data))) if data.is_empty() => break,
            Some(Ok(Message::Binary(data))) => count += data.len() as u64,
            Some(Ok(Message::Close(_))) => {
                // tungstenite queued the Close reply; reading on flushes it and ends.
                while let Some(Ok(_)) = ws.next().await {}
                return;
            }
            None => return,
            Some(Ok(_)) => {}
            Some(Err(e)) => return tracing::debug!(error = %e, "websocket read failed"),
        }
    }
    if ws.send(Message::text(count.to_string())).await.is_ok() {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = ws.close(Some(frame)).await;
        // Drain until the peer's Close so the close handshake completes.
        while let Some(Ok(_)) = ws.next().await {}
    }
}
