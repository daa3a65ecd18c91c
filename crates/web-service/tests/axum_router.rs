//! An axum `Router` is a handler like any other, on every protocol.

mod support;

use std::sync::Arc;

use axum::Router;
use axum::extract::Extension;
use axum::routing::{get, post};
use support::client::{self, Conn, Proto};
use support::{Gates, Harness, WAIT, pattern, test_config};
use tokio::sync::OnceCell;
use tokio::time::timeout;
use web_service::{ConnInfo, Metrics};

fn app(metrics: Arc<OnceCell<Arc<Metrics>>>) -> Router {
    Router::new()
        // The request body streams straight back: no axum body limit applies to it.
        .route("/echo", post(|body: axum::body::Body| async move { body }))
        .route(
            "/peer",
            get(|Extension(info): Extension<ConnInfo>| async move { format!("tls={}", info.tls) }),
        )
        .route(
            "/metrics",
            get(move || async move {
                metrics
                    .get()
                    .map(|m| m.render_prometheus())
                    .unwrap_or_default()
            }),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_router_serves_streams_on_every_protocol() {
    let metrics = Arc::new(OnceCell::new());
    let server = Harness::serve(test_config(), app(metrics.clone()), Gates::default()).await;
    metrics.set(server.metrics.clone()).unwrap();
    let total = 16 * 1024 * 1024;
    for proto in [Proto::H1, Proto::H1Tls, Proto::H2c, Proto::H2Tls, Proto::H3] {
        let conn = Conn::connect(proto, &server).await;
        let req = client::request("POST", "/echo", client::streaming(pattern::stream(total)));
        let resp = timeout(WAIT, conn.send(req)).await.unwrap().unwrap();
        assert_eq!(resp.status(), 200, "{proto:?}");
        let (n, sha) = timeout(WAIT, client::digest(resp.into_body()))
            .await
            .unwrap();
        assert_eq!((n, sha), (total, pattern::sha256_hex(total)), "{proto:?}");
        let resp = conn
            .send(client::request("GET", "/peer", client::empty()))
            .await
            .unwrap();
        let tls = !matches!(proto, Proto::H1 | Proto::H2c);
        assert_eq!(client::text(resp.into_body()).await, format!("tls={tls}"));
    }
    let conn = Conn::connect(Proto::H1, &server).await;
    let resp = conn
        .send(client::request("GET", "/metrics", client::empty()))
        .await
        .unwrap();
    let text = client::text(resp.into_body()).await;
    assert!(
        text.contains("web_requests_total{protocol=\"http2\"} 4"),
        "{text}"
    );
    server.stop().await;
}
