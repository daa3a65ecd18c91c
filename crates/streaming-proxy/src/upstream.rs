//! The origin side: a pooled HTTP/1.1 or HTTP/2 (h2c) client and how its failures map
//! to statuses.

use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use web_service::Body;

/// Why the origin gave no answer head.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connecting or talking to the origin failed (refused, reset, bad response).
    #[error("origin unreachable: {0}")]
    Unreachable(#[from] hyper_util::client::legacy::Error),
    /// The origin did not answer within the timeout.
    #[error("origin timed out after {0:?}")]
    Timeout(Duration),
    /// The request could not be built (bad path).
    #[error("bad upstream request: {0}")]
    Request(#[from] http::Error),
}

impl UpstreamError {
    /// The status a client gets when its miss fails this way: `504` for a timeout,
    /// `502` otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// A pooled client for one origin: HTTP/1.1 connections kept alive and reused one
/// request at a time, or (with `http2`) HTTP/2 connections multiplexing requests.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client<HttpConnector, Body>,
    base: Uri,
    timeout: Duration,
}

impl Upstream {
    /// A client for `base` (`http://host:port`), `timeout` bounding connect + head.
    /// With `http2`, the origin is spoken to in HTTP/2 with prior knowledge (h2c):
    /// cleartext offers no ALPN to negotiate it, so the choice is the operator's.
    pub fn new(base: Uri, timeout: Duration, http2: bool) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .http2_only(http2)
            .build(connector);
        Self {
            client,
            base,
            timeout,
        }
    }

    /// Sends `method path` with `headers` and `body`; returns the answer head and the
    /// streaming body.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut parts = self.base.clone().into_parts();
        parts.path_and_query = Some(
            path_and_query
                .parse()
                .map_err(|e: http::uri::InvalidUri| http::Error::from(e))?,
        );
        let uri = Uri::from_parts(parts).map_err(http::Error::from)?;
        let mut request = Request::builder().method(method).uri(uri).body(body)?;
        *request.headers_mut() = headers;
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(UpstreamError::Timeout(self.timeout)),
        }
    }
}
