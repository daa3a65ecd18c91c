//! Idle timeouts on bodies: an origin body that sends nothing for a while, and a
//! client that takes nothing for a while, end with an error instead of holding
//! what they hold (a fill, a connection to the origin) forever.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use web_service::Body;

/// A pass-through origin body whose every gap between frames is bounded by
/// `idle` (trailers are dropped: the proxy relays data only).
pub(crate) fn origin_body(incoming: hyper::body::Incoming, idle: Duration) -> Body {
    Body::from_stream(futures_util::stream::unfold(
        Some(incoming),
        move |body| async move {
            let mut body = body?;
            loop {
                return match tokio::time::timeout(idle, body.frame()).await {
                    Err(_) => Some((Err(io::Error::other("origin body idle")), None)),
                    Ok(None) => None,
                    Ok(Some(Err(e))) => Some((Err(io::Error::other(e)), None)),
                    Ok(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => Some((Ok(data), Some(body))),
                        Err(_) => continue,
                    },
                };
            }
        },
    ))
}

enum Item {
    Data(Bytes),
    Failed(io::Error),
    End,
}

/// `body` handed to the client through a one-chunk channel: a chunk the client
/// has not taken after `idle` ends the response with an error and drops `body`
/// (a response body is polled only when the connection can write, so the wait
/// is the client's). Dropping it releases the fill readers it holds.
pub(crate) fn write_idle(mut body: Body, idle: Duration) -> Body {
    let (tx, rx) = mpsc::channel::<Item>(1);
    tokio::spawn(async move {
        loop {
            let item = match body.frame().await {
                None => Item::End,
                Some(Err(e)) => Item::Failed(io::Error::other(e)),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => Item::Data(data),
                    Err(_) => continue,
                },
            };
            let last = !matches!(item, Item::Data(_));
            if tx.send_timeout(item, idle).await.is_err() {
                tracing::debug!(?idle, "client took nothing: response dropped");
                return;
            }
            if last {
                return;
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Some(Item::Data(data)) => Some((Ok(data), Some(rx))),
            Some(Item::End) => None,
            Some(Item::Failed(e)) => Some((Err(e), None)),
            None => Some((Err(io::Error::other("client write idle")), None)),
        }
    }))
}
