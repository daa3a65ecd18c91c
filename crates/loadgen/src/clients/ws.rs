//! WebSocket client: binary messages up, one reply message and a Close down.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::Either;
use futures_util::{SinkExt, StreamExt};
use rustls::ClientConfig;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::{Collector, UploadOptions, UploadResult};
use crate::error::{Error, Result};
use crate::net::{self, MaybeTls};
use crate::source::Pattern;
use crate::target::{Proto, Target};

/// An open WebSocket session.
pub type WsStream = WebSocketStream<MaybeTls>;

/// Messages up to 64 MiB from the peer; ours are the size of one chunk.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .write_buffer_size(256 * 1024)
}

/// Opens a TCP (or TLS) connection and performs the WebSocket handshake.
pub async fn connect(target: &Target, tls: Option<&Arc<ClientConfig>>) -> Result<WsStream> {
    let io = net::connect(target, tls).await?;
    let (stream, response) =
        tokio_tungstenite::client_async_with_config(target.url.as_str(), io, Some(config()))
            .await?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(Error::Protocol(format!(
            "WebSocket handshake answered {}",
            response.status()
        )));
    }
    Ok(stream)
}

/// Sends the body as binary messages, then an empty one, while collecting
/// the reply messages until the server closes: full duplex, so an echo
/// larger than the server's buffers (its memory budget) still completes.
pub async fn upload(
    stream: WsStream,
    pattern: &Pattern,
    options: &UploadOptions,
) -> Result<UploadResult> {
    let started = Instant::now();
    let (mut sink, mut source) = stream.split();
    let (collector, close_code) = {
        let send = async {
            for chunk in pattern.chunks(options.bytes) {
                sink.feed(Message::Binary(chunk)).await?;
            }
            sink.send(Message::Binary(Bytes::new())).await?;
            Ok::<_, Error>(())
        };
        let receive = async {
            let mut collector = Collector::new(options.keep_body);
            let mut close_code = None;
            while let Some(message) = source.next().await {
                match message? {
                    Message::Text(text) => collector.push(text.as_bytes()),
                    Message::Binary(data) => collector.push(&data),
                    Message::Close(frame) => {
                        close_code = Some(frame.map_or(1005, |f| u16::from(f.code)));
                        break;
                    }
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                }
            }
            Ok::<_, Error>((collector, close_code))
        };
        // A server that answers (and closes) before reading the whole body ends
        // the upload: the reply decides, and the unsent rest is dropped.
        let (send, receive) = (std::pin::pin!(send), std::pin::pin!(receive));
        match futures_util::future::select(send, receive).await {
            Either::Left((sent, receive)) => {
                sent?;
                receive.await?
            }
            Either::Right((received, _unsent)) => received?,
        }
    };
    let mut stream = sink
        .reunite(source)
        .map_err(|_| Error::Protocol("WebSocket halves of one stream failed to reunite".into()))?;
    let Some(close_code) = close_code else {
        return Err(Error::Protocol(
            "WebSocket ended without a Close frame".into(),
        ));
    };
    let result = collector.finish(Proto::Ws, options, started, 101, Some(close_code));
    // Answer the server's Close so it sees a clean end; the server has already
    // reported everything we measure, so a failure here changes nothing.
    let _ = stream.close(None).await;
    Ok(result)
}
