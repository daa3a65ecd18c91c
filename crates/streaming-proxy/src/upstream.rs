//! The origin side: a pooled client for an `http://` origin (HTTP/1.1, or h2c with
//! prior knowledge) or an `https://` one (rustls with the ring provider, HTTP/2 or
//! HTTP/1.1 chosen by ALPN), its trust roots, and how its failures map to statuses.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Scheme;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use web_service::Body;

use crate::config::ConfigError;

/// Why the origin gave no answer head.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connecting or talking to the origin failed (refused, reset, TLS handshake,
    /// bad response). The message carries every cause: hyper's own text
    /// ("client error (Connect)") does not say why.
    #[error("origin unreachable: {}", chain(.0))]
    Unreachable(hyper_util::client::legacy::Error),
    /// The origin did not answer within the timeout.
    #[error("origin timed out after {0:?}")]
    Timeout(Duration),
    /// The request could not be built (bad path).
    #[error("bad upstream request: {0}")]
    Request(#[from] http::Error),
}

impl From<hyper_util::client::legacy::Error> for UpstreamError {
    fn from(e: hyper_util::client::legacy::Error) -> Self {
        Self::Unreachable(e)
    }
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

/// `error` and its causes, `: `-separated; a cause whose text its predecessor
/// already ends with is not repeated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// The connection pool, by the origin's scheme.
#[derive(Clone, Debug)]
enum Pool {
    /// `http://`: plain TCP, exactly one protocol (HTTP/1.1, or h2c when asked).
    Http(Client<HttpConnector, Body>),
    /// `https://`: TLS over the same TCP connector; ALPN picks the protocol.
    Https(Client<HttpsConnector<HttpConnector>, Body>),
}

impl Pool {
    fn request(&self, request: Request<Body>) -> ResponseFuture {
        match self {
            Self::Http(client) => client.request(request),
            Self::Https(client) => client.request(request),
        }
    }
}

/// A pooled client for one origin: HTTP/1.1 connections kept alive and reused one
/// request at a time, or HTTP/2 connections multiplexing requests.
#[derive(Clone, Debug)]
pub struct Upstream {
    pool: Pool,
    base: Uri,
    timeout: Duration,
}

impl Upstream {
    /// A client for `base` (`http://` or `https://host[:port]`), `connect` bounding
    /// the TCP connection and `timeout` connect + TLS handshake + head.
    ///
    /// `http://`: HTTP/1.1, or with `http2` HTTP/2 with prior knowledge (h2c):
    /// cleartext offers no ALPN to negotiate it, so the choice is the operator's.
    /// `https://`: the server certificate is checked against the system's roots plus
    /// `upstream_ca` for the URL's host; ALPN offers `h2` and `http/1.1` (the origin
    /// picks), or only `h2` with `http2`. Fails if `upstream_ca` is unusable, so a bad
    /// file stops start-up rather than the first miss.
    pub fn new(
        base: Uri,
        (connect, timeout): (Duration, Duration),
        http2: bool,
        upstream_ca: Option<&Path>,
    ) -> Result<Self, ConfigError> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect.min(timeout)));
        connector.set_nodelay(true);
        let mut builder = Client::builder(TokioExecutor::new());
        // On https this also makes the client speak h2 to an origin that ignored ALPN,
        // as the operator asked.
        builder.http2_only(http2);
        let pool = if base.scheme() == Some(&Scheme::HTTPS) {
            // The TCP connector sees the https URL: it must not insist on http.
            connector.enforce_http(false);
            let tls = HttpsConnectorBuilder::new()
                .with_tls_config(tls_config(upstream_ca)?)
                .https_only();
            let tls = if http2 {
                tls.enable_http2()
            } else {
                tls.enable_all_versions()
            };
            Pool::Https(builder.build(tls.wrap_connector(connector)))
        } else {
            Pool::Http(builder.build(connector))
        };
        Ok(Self {
            pool,
            base,
            timeout,
        })
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
        match tokio::time::timeout(self.timeout, self.pool.request(request)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                let e = UpstreamError::from(e);
                // The client only sees a status: the cause (refused, certificate not
                // trusted, wrong name, ...) is for the operator.
                tracing::warn!(origin = %self.base, path = %path_and_query, error = %e, "origin request failed");
                Err(e)
            }
            Err(_) => Err(UpstreamError::Timeout(self.timeout)),
        }
    }
}

/// The TLS settings for an https origin: ring, rustls' safe default versions, the
/// system's roots plus `upstream_ca`'s certificates. ALPN is left empty: the
/// connector builder sets it (and refuses a config that already has it).
fn tls_config(upstream_ca: Option<&Path>) -> Result<ClientConfig, ConfigError> {
    let mut roots = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    for e in &system.errors {
        tracing::warn!(error = %e, "system CA certificates: could not load some");
    }
    for cert in system.certs {
        // One bad entry in the system store must not take the others down with it.
        if let Err(e) = roots.add(cert) {
            tracing::warn!(error = %e, "system CA certificate skipped: cannot be parsed");
        }
    }
    let system_roots = roots.len();
    if let Some(path) = upstream_ca {
        for cert in read_ca(path)? {
            roots.add(cert).map_err(|e| ConfigError::UpstreamCa {
                path: path.to_owned(),
                reason: format!("certificate not usable as a trust anchor: {e}"),
            })?;
        }
    }
    if roots.is_empty() {
        tracing::warn!(
            "no trusted CA certificates (none in the system store, no upstream_ca): \
             the https origin's certificate cannot be verified, every miss will be 502"
        );
    }
    tracing::debug!(
        system_roots,
        extra = roots.len() - system_roots,
        "origin TLS trust roots"
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Invalid(format!("origin TLS settings: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The certificates of the PEM file `path`: at least one, all well-formed.
fn read_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let fail = |reason: String| ConfigError::UpstreamCa {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(fail(
            "no certificate in it (expected PEM \"BEGIN CERTIFICATE\" blocks)".into(),
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_carries_every_cause() {
        // hyper-rustls wraps rustls' error in an io::Error, whose text is the inner
        // one's: shown once, not twice.
        let inner = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        let outer = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, inner);
        assert_eq!(chain(&outer), "invalid peer certificate: UnknownIssuer");
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Wrap(#[source] std::io::Error);
        let wrapped = Wrap(std::io::Error::other("refused"));
        assert_eq!(chain(&wrapped), "client error (Connect): refused");
    }

    #[test]
    fn ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = read_ca(&missing).unwrap_err().to_string();
        assert!(
            err.contains("missing.pem") && err.contains("cannot read"),
            "{err}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = read_ca(&empty).unwrap_err().to_string();
        assert!(err.contains("no certificate"), "{err}");
    }
}
