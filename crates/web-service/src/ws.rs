//! WebSocket upgrades: HTTP/1.1 `Upgrade: websocket` (RFC 6455) and HTTP/2 extended
//! CONNECT (RFC 8441), handing the handler a tokio-tungstenite `WebSocketStream`.

use std::future::Future;

use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tracing::Instrument;

use crate::body::Body;
use crate::conn::UpgradeCtx;
use crate::metrics::{ConnGuard, Protocol};
use crate::shutdown::ShutdownSignal;

/// The byte stream under an upgraded WebSocket (an HTTP/1.1 connection or an HTTP/2 stream).
pub type WsIo = TokioIo<Upgraded>;

/// A server-side WebSocket.
pub type WebSocket = WebSocketStream<WsIo>;

/// Why a request could not be upgraded; [`WsError::status`] is the answer to send.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// Not an `Upgrade: websocket` GET (HTTP/1.1) nor a `:protocol websocket` CONNECT (HTTP/2).
    #[error("not a WebSocket upgrade request")]
    NotUpgrade,
    /// `Sec-WebSocket-Key` is missing on an HTTP/1.1 upgrade.
    #[error("missing Sec-WebSocket-Key header")]
    MissingKey,
    /// The client asked for a WebSocket version other than 13.
    #[error("unsupported Sec-WebSocket-Version (only 13 is supported)")]
    BadVersion,
    /// The request did not come through a [`crate::Server`] connection that can upgrade
    /// (e.g. HTTP/3, where RFC 9220 is not supported).
    #[error("this connection cannot be upgraded (WebSocket over HTTP/3 is not supported)")]
    NotUpgradable,
    /// The connection failed while switching protocols.
    #[error("upgrade failed: {0}")]
    Upgrade(#[from] hyper::Error),
}

impl WsError {
    /// Status to answer the upgrade request with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadVersion => StatusCode::UPGRADE_REQUIRED,
            Self::NotUpgradable => StatusCode::NOT_IMPLEMENTED,
            Self::Upgrade(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The refusal to send: [`WsError::status`], a text body, and for a bad version the
    /// `Sec-WebSocket-Version: 13` that RFC 6455 4.4 asks for.
    pub fn into_response(self) -> Response<Body> {
        let mut resp = Response::new(Body::from(format!("{self}\n")));
        *resp.status_mut() = self.status();
        if matches!(self, Self::BadVersion) {
            resp.headers_mut()
                .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        resp
    }
}

/// Whether `req` asks for a WebSocket (HTTP/1.1 upgrade or HTTP/2 extended CONNECT).
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    match req.version() {
        Version::HTTP_2 => {
            req.method() == Method::CONNECT
                && req
                    .extensions()
                    .get::<hyper::ext::Protocol>()
                    .is_some_and(|p| p.as_str() == "websocket")
        }
        _ => {
            req.method() == Method::GET
                && header_has_token(req.headers(), CONNECTION, "upgrade")
                && header_has_token(req.headers(), UPGRADE, "websocket")
        }
    }
}

fn header_has_token(headers: &HeaderMap, name: http::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A WebSocket accepted but not yet switched: send the returned response, then run
/// the session with [`WsUpgrade::spawn`].
#[derive(Debug)]
pub struct WsUpgrade {
    on_upgrade: OnUpgrade,
    ctx: UpgradeCtx,
}

/// Validates a WebSocket request and takes its upgrade. Answer with the returned
/// response (`101` on HTTP/1.1, `200` on HTTP/2), then call [`WsUpgrade::spawn`].
pub fn upgrade(req: &mut Request<Body>) -> Result<(Response<Body>, WsUpgrade), WsError> {
    if !is_upgrade_request(req) {
        return Err(WsError::NotUpgrade);
    }
    let ctx = req
        .extensions()
        .get::<UpgradeCtx>()
        .cloned()
        .ok_or(WsError::NotUpgradable)?;
    if req
        .headers()
        .get(SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v != "13")
    {
        return Err(WsError::BadVersion);
    }
    let mut resp = Response::new(Body::empty());
    if req.version() != Version::HTTP_2 {
        let key = req
            .headers()
            .get(SEC_WEBSOCKET_KEY)
            .ok_or(WsError::MissingKey)?;
        let accept = derive_accept_key(key.as_bytes());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&accept).map_err(|_| WsError::MissingKey)?,
        );
    }
    let on_upgrade = req
        .extensions_mut()
        .remove::<OnUpgrade>()
        .ok_or(WsError::NotUpgradable)?;
    Ok((resp, WsUpgrade { on_upgrade, ctx }))
}

impl WsUpgrade {
    /// Runs `session` once the protocol has switched, as a task the server tracks:
    /// shutdown waits for it up to the drain deadline, then drops it (closing the
    /// socket). `session` gets a [`ShutdownSignal`] and should answer it with a Close
    /// frame (code 1001, going away).
    pub fn spawn<F, Fut>(self, session: F)
    where
        F: FnOnce(WebSocket, ShutdownSignal) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let UpgradeCtx { shared, conn } = self.ctx;
        let signal = shared.lifecycle.signal();
        let max = shared.config.max_websocket_message;
        let metrics = shared.metrics.clone();
        let span = tracing::debug_span!("websocket", peer = %conn.info.remote_addr);
        let task = async move {
            let upgraded = match self.on_upgrade.await {
                Ok(u) => u,
                Err(e) => return tracing::debug!(error = %e, "WebSocket upgrade failed"),
            };
            let _session = ConnGuard::new(metrics, Protocol::WebSocket);
            // The connection slot stays taken, and an HTTP/2 connection carrying the
            // session is not idle, while the session lives.
            let _active = conn.hold_active();
            let config = WebSocketConfig::default()
                .max_message_size(Some(max))
                .max_frame_size(Some(max));
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            session(ws, signal).await;
        };
        shared.lifecycle.spawn(task.instrument(span));
    }
}
