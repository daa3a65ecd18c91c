//! Unit tests of the pieces that need no sockets.

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Version};

use crate::metrics::{ConnGuard, Metrics, Protocol};
use crate::static_files::{etag_of, matches_etag};
use crate::{Body, BodyError, TlsError, TlsIdentity, ws};

fn chunks(n: usize, size: usize) -> Body {
    let items = (0..n).map(move |_| Ok::<_, std::io::Error>(Bytes::from(vec![7u8; size])));
    Body::from_stream(stream::iter(items))
}

#[tokio::test]
async fn body_limit_stops_at_the_first_chunk_past_it() {
    let mut body = chunks(10, 100).with_limit(450);
    let mut seen = 0;
    let err = loop {
        match body.chunk().await {
            Some(Ok(c)) => seen += c.len(),
            Some(Err(e)) => break e,
            None => panic!("limit not enforced"),
        }
    };
    assert_eq!(seen, 400);
    assert!(matches!(err, BodyError::TooLarge { limit: 450 }));
    assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Nothing more is read after the error.
    assert!(body.chunk().await.is_none());
}

#[tokio::test]
async fn body_within_limit_reads_to_the_end() {
    let mut body = chunks(4, 100).with_limit(400);
    while let Some(chunk) = body.chunk().await {
        chunk.unwrap();
    }
    assert_eq!(body.received(), 400);
}

#[test]
fn wrapping_our_own_body_keeps_it() {
    let body = Body::new(Body::from("abc").with_limit(1));
    // The limit survived: the body was not boxed into a fresh one.
    assert_eq!(format!("{body:?}"), "Body { received: 0, limit: Some(1) }");
}

#[test]
fn etag_uses_full_length_and_mtime_and_matches_weakly() {
    let mut h = HeaderMap::new();
    h.insert(
        "last-modified",
        HeaderValue::from_static("Sun, 22 Nov 2026 02:00:00 GMT"),
    );
    h.insert("content-length", HeaderValue::from_static("20"));
    let full = etag_of(&h).unwrap();
    h.insert("content-length", HeaderValue::from_static("5"));
    h.insert("content-range", HeaderValue::from_static("bytes 0-4/20"));
    assert_eq!(
        etag_of(&h).unwrap(),
        full,
        "a range shares the file's validator"
    );
    let strong = full.to_str().unwrap().trim_start_matches("W/").to_owned();
    for inm in [
        full.to_str().unwrap(),
        &strong,
        "\"x\", *",
        &format!("\"a\", {strong}"),
    ] {
        assert!(
            matches_etag(&HeaderValue::from_str(inm).unwrap(), &full),
            "{inm}"
        );
    }
    assert!(!matches_etag(&HeaderValue::from_static("\"other\""), &full));
}

#[test]
fn websocket_upgrade_detection() {
    let h1 = Request::builder()
        .header("connection", "keep-alive, Upgrade")
        .header("upgrade", "WebSocket")
        .body(())
        .unwrap();
    assert!(ws::is_upgrade_request(&h1));
    let plain = Request::builder()
        .header("upgrade", "websocket")
        .body(())
        .unwrap();
    assert!(!ws::is_upgrade_request(&plain), "needs Connection: upgrade");
    let mut h2 = Request::builder()
        .method(Method::CONNECT)
        .version(Version::HTTP_2)
        .body(())
        .unwrap();
    assert!(
        !ws::is_upgrade_request(&h2),
        "CONNECT without :protocol is a tunnel"
    );
    h2.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    assert!(ws::is_upgrade_request(&h2));
}

#[test]
fn metrics_render_every_protocol_and_track_guards() {
    let metrics = std::sync::Arc::new(Metrics::default());
    let guard = ConnGuard::new(metrics.clone(), Protocol::Http3);
    assert_eq!(metrics.stats(Protocol::Http3).connections_active, 1);
    let text = metrics.render_prometheus();
    assert!(text.contains("# TYPE web_connections_active gauge"));
    assert!(text.contains("web_connections_active{protocol=\"http3\"} 1"));
    assert!(text.contains("web_requests_total{protocol=\"websocket\"} 0"));
    drop(guard);
    assert_eq!(metrics.stats(Protocol::Http3).connections_active, 0);
    assert_eq!(metrics.stats(Protocol::Http3).connections_total, 1);
}

#[test]
fn self_signed_certificate_is_generated_once_and_reused() {
    let dir = std::env::temp_dir().join(format!("web-service-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = TlsIdentity::self_signed_in(&dir).unwrap();
    let second = TlsIdentity::self_signed_in(&dir).unwrap();
    assert_eq!(first.identity.certs(), second.identity.certs());
    assert!(first.cert_path.ends_with("cert.pem") && first.key_path.ends_with("key.pem"));
    // Usable for TLS over TCP and for QUIC.
    first.identity.tcp_config().unwrap();
    first.identity.quic_config().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pem_errors_name_the_file() {
    let missing = std::env::temp_dir().join("web-service-no-such.pem");
    let err = TlsIdentity::from_pem_files(&missing, &missing).unwrap_err();
    assert!(matches!(err, TlsError::Pem { .. }));
    assert!(err.to_string().contains("web-service-no-such.pem"), "{err}");
    let empty = std::env::temp_dir().join(format!("web-service-empty-{}.pem", std::process::id()));
    std::fs::write(&empty, "").unwrap();
    let err = TlsIdentity::from_pem_files(&empty, &empty).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate(_)), "{err}");
    std::fs::remove_file(&empty).unwrap();
}
