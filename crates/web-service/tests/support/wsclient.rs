//! WebSocket clients (tokio-tungstenite) over TCP or TLS.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::client::tls_connect;
use super::{Harness, pattern};

/// A client WebSocket over any byte stream.
pub type ClientWs = WebSocketStream<Box<dyn Io>>;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Opens `ws://` (tls = false) or `wss://` to `path`.
pub async fn connect(server: &Harness, tls: bool, path: &str) -> ClientWs {
    let (io, url): (Box<dyn Io>, String) = if tls {
        let io = tls_connect(server.https, &server.cert, &[b"http/1.1"]).await;
        (
            Box::new(io),
            format!("wss://localhost:{}{path}", server.https.port()),
        )
    } else {
        let io = TcpStream::connect(server.http).await.unwrap();
        (
            Box::new(io),
            format!("ws://localhost:{}{path}", server.http.port()),
        )
    };
    let (ws, resp) = tokio_tungstenite::client_async(url, io).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

/// Sends `total` pattern bytes as binary messages, then an empty one; returns the
/// server's text answer.
pub async fn upload(ws: &mut ClientWs, total: u64) -> String {
    let mut chunks = Box::pin(pattern::stream(total));
    while let Some(Ok(chunk)) = chunks.next().await {
        ws.feed(Message::Binary(chunk)).await.unwrap();
    }
    ws.send(Message::Binary(Default::default())).await.unwrap();
    match ws.next().await {
        Some(Ok(Message::Text(t))) => t.to_string(),
        other => panic!("expected a text answer, got {other:?}"),
    }
}

/// Next message that is not a ping/pong.
pub async fn next_data(ws: &mut ClientWs) -> Option<Message> {
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(m) => return Some(m),
            Err(_) => return None,
        }
    }
    None
}

/// Reads until the server's Close and completes the close handshake; returns its frame.
pub async fn close_frame<S>(ws: &mut WebSocketStream<S>) -> Option<CloseFrame>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut frame = None;
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Close(f) = msg {
            frame = f;
        }
    }
    // The stream ends once our Close reply is flushed.
    frame
}
