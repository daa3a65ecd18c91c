//! The proxy as a reverse proxy and an RFC 9111 cache, end to end: a real origin
//! on loopback records every request it receives (headers included), and the
//! answers clients get are checked against what it was asked.

mod support;

use http::HeaderMap;
use support::*;

const KIB: u64 = 1024;

fn field<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_request_headers_reach_the_origin_and_hop_by_hop_ones_do_not() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    let mut spec = Spec::new(100 * KIB, 1);
    spec.extra = vec![("x-origin-trace".into(), "o-7".into())];
    origin.add("/f", spec);
    let got = get_with(
        &c,
        &proxy,
        "/f?q=1",
        &[
            ("accept", "text/x-test"),
            ("user-agent", "agent/1"),
            ("x-trace", "abc"),
            ("x-forwarded-for", "10.0.0.9"),
            ("connection", "x-hop"),
            ("x-hop", "secret"),
            ("te", "trailers"),
        ],
    )
    .await;
    assert_eq!((got.status, got.x_cache()), (200, "MISS"));
    assert_eq!(sha(&got.body), sha(&object_bytes(1, 0, 100 * KIB)));
    assert_eq!(
        got.header("x-origin-trace"),
        "o-7",
        "response headers relayed"
    );
    assert!(
        got.header("via").contains("streaming-proxy"),
        "{:?}",
        got.headers
    );
    let heads = origin.heads("/f?q=1");
    assert_eq!(heads.len(), 2, "one request per slice");
    for (method, h) in &heads {
        assert_eq!(method, http::Method::GET);
        assert_eq!(field(h, "accept"), "text/x-test");
        assert_eq!(field(h, "user-agent"), "agent/1");
        assert_eq!(field(h, "x-trace"), "abc");
        assert_eq!(field(h, "x-forwarded-for"), "10.0.0.9, 127.0.0.1");
        assert_eq!(field(h, "x-forwarded-proto"), "http");
        assert_eq!(field(h, "via"), "1.1 streaming-proxy");
        assert_eq!(
            field(h, "host"),
            origin.addr.to_string(),
            "the upstream's Host"
        );
        assert_eq!(field(h, "accept-encoding"), "identity");
        assert!(field(h, "range").starts_with("bytes="));
        for hop in ["x-hop", "te", "connection"] {
            assert!(!h.contains_key(hop), "{hop} forwarded: {h:?}");
        }
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preserve_host_sends_the_clients_host() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&origin, dir.path(), 64 * KIB);
    config.preserve_host = true;
    let proxy = Proxy::start(config).await;
    origin.add("/h", Spec::new(KIB, 2));
    let got = get(&client(), &proxy, "/h").await;
    assert_eq!(got.status, 200);
    let heads = origin.heads("/h");
    assert_eq!(field(&heads[0].1, "host"), proxy.addr.to_string());
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_fill_sends_the_headers_of_the_client_that_started_it() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    origin.add("/slow", Spec::new(64 * KIB, 3).delay_ms(20));
    let url = format!("http://{}/slow", proxy.addr);
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move {
                let id = i.to_string();
                request_with(&c, "GET", url, &[("x-client", &id)]).await
            })
        })
        .collect();
    for task in tasks {
        let got = task.await.unwrap();
        assert_eq!(sha(&got.body), sha(&object_bytes(3, 0, 64 * KIB)));
    }
    let heads = origin.heads("/slow");
    assert_eq!(heads.len(), 1, "one shared fetch");
    assert!(
        ["0", "1", "2", "3"].contains(&field(&heads[0].1, "x-client")),
        "one client's own headers"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_cookie_is_never_replayed_to_another_client() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    let mut spec = Spec::new(100 * KIB, 4)
        .cache_control("max-age=600")
        .delay_ms(10);
    spec.cookie_echo = Some("x-client".into());
    origin.add("/session", spec);
    // Concurrent clients: each gets its own answer's cookie or none, never another's.
    let url = format!("http://{}/session", proxy.addr);
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move {
                let id = format!("c{i}");
                let got = request_with(&c, "GET", url, &[("x-client", &id)]).await;
                (id, got)
            })
        })
        .collect();
    for task in tasks {
        let (id, got) = task.await.unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(sha(&got.body), sha(&object_bytes(4, 0, 100 * KIB)));
        assert_eq!(
            got.header("set-cookie"),
            format!("id={id}"),
            "its own cookie"
        );
        assert_eq!(got.x_cache(), "BYPASS", "not stored by default");
    }
    let later = get_with(&c, &proxy, "/session", &[("x-client", "late")]).await;
    assert_eq!(later.header("set-cookie"), "id=late");
    proxy.shutdown().await;

    // With store_set_cookie: stored without the header; the client whose request
    // fetched it still gets its cookie, the next one none.
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&origin, dir.path(), 64 * KIB);
    config.store_set_cookie = true;
    let proxy = Proxy::start(config).await;
    let first = get_with(&c, &proxy, "/session", &[("x-client", "first")]).await;
    assert_eq!(
        (first.x_cache(), first.header("set-cookie")),
        ("MISS", "id=first")
    );
    proxy.idle().await;
    let second = get_with(&c, &proxy, "/session", &[("x-client", "second")]).await;
    assert_eq!((second.x_cache(), second.header("set-cookie")), ("HIT", ""));
    assert_eq!(sha(&second.body), sha(&object_bytes(4, 0, 100 * KIB)));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorized_answers_are_not_shared() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    let mut spec = Spec::new(10 * KIB, 5).cache_control("public, max-age=600");
    spec.auth = Some("Bearer a".into());
    origin.add("/private", spec);
    let authorized = get_with(&c, &proxy, "/private", &[("authorization", "Bearer a")]).await;
    assert_eq!((authorized.status, authorized.x_cache()), (200, "BYPASS"));
    let heads = origin.heads("/private");
    assert_eq!(field(&heads[0].1, "authorization"), "Bearer a", "forwarded");
    let anonymous = get(&c, &proxy, "/private").await;
    assert_eq!(
        anonymous.status, 401,
        "the origin's answer, not the stored 200"
    );
    let other = get_with(&c, &proxy, "/private", &[("authorization", "Bearer b")]).await;
    assert_eq!(other.status, 401);
    assert_eq!(
        origin.heads("/private").len(),
        3,
        "every request asked the origin"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_updates_the_stored_headers() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    let mut spec = Spec::new(10 * KIB, 6).cache_control("max-age=0");
    spec.extra = vec![("x-version".into(), "1".into())];
    origin.add("/meta", spec);
    let first = get(&c, &proxy, "/meta").await;
    assert_eq!((first.x_cache(), first.header("x-version")), ("MISS", "1"));
    proxy.idle().await;
    origin.update("/meta", |s| {
        s.extra = vec![("x-version".into(), "2".into())];
        s.cache_control = Some("max-age=600".into());
    });
    let second = get(&c, &proxy, "/meta").await;
    assert_eq!((second.status, second.x_cache()), (200, "REVALIDATED"));
    assert_eq!(second.header("x-version"), "2", "RFC 9111 §3.2");
    assert_eq!(second.headers.get_all("x-version").iter().count(), 1);
    assert_eq!(sha(&second.body), sha(&object_bytes(6, 0, 10 * KIB)));
    let (_, revalidation) = origin.heads("/meta").pop().unwrap();
    assert_eq!(field(&revalidation, "if-none-match"), "\"v6\"");
    // The updated lifetime (max-age=600) came with the 304: now a plain hit.
    let third = get(&c, &proxy, "/meta").await;
    assert_eq!((third.x_cache(), third.header("x-version")), ("HIT", "2"));
    assert_eq!(origin.heads("/meta").len(), 2);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_methods_invalidate_the_stored_object() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    origin.add("/inv", Spec::new(10 * KIB, 7).cache_control("max-age=600"));
    let url = format!("http://{}/inv", proxy.addr);
    for method in ["POST", "PUT", "DELETE"] {
        assert_eq!(get(&c, &proxy, "/inv").await.x_cache(), "MISS", "{method}");
        proxy.idle().await;
        assert_eq!(get(&c, &proxy, "/inv").await.x_cache(), "HIT", "{method}");
        let unsafe_answer = request(&c, method, url.clone(), None).await;
        assert_eq!(
            (unsafe_answer.status, unsafe_answer.x_cache()),
            (200, "BYPASS"),
            "{method}"
        );
        let (seen, _) = origin.heads("/inv").pop().unwrap();
        assert_eq!(seen.as_str(), method, "forwarded as is");
    }
    // A failed unsafe request leaves the entry (RFC 9111 §4.4: non-error only).
    assert_eq!(get(&c, &proxy, "/inv").await.x_cache(), "MISS");
    proxy.idle().await;
    origin.update("/inv", |s| s.status = 500);
    let failed = request(&c, "POST", url, None).await;
    assert_eq!(failed.status, 500);
    assert_eq!(get(&c, &proxy, "/inv").await.x_cache(), "HIT");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_star_and_request_directives_end_to_end() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    let mut star = Spec::new(KIB, 8).cache_control("max-age=600");
    star.vary = Some("*".into());
    origin.add("/star", star);
    for _ in 0..2 {
        assert_eq!(get(&c, &proxy, "/star").await.x_cache(), "BYPASS");
    }
    origin.add("/d", Spec::new(KIB, 9).cache_control("max-age=600"));
    let only = get_with(&c, &proxy, "/d", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(only.status, 504, "RFC 9111 §5.2.1.7");
    assert!(origin.heads("/d").is_empty());
    assert_eq!(get(&c, &proxy, "/d").await.x_cache(), "MISS");
    proxy.idle().await;
    let no_cache = get_with(&c, &proxy, "/d", &[("cache-control", "no-cache")]).await;
    assert_eq!(no_cache.x_cache(), "REVALIDATED", "RFC 9111 §5.2.1.4");
    assert_eq!(origin.heads("/d").len(), 2);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_entry_without_validators_is_replaced_not_served() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    let mut spec = Spec::new(10 * KIB, 10).cache_control("max-age=1");
    spec.etag = None;
    spec.last_modified = None;
    origin.add("/nv", spec);
    assert_eq!(get(&c, &proxy, "/nv").await.x_cache(), "MISS");
    proxy.idle().await;
    origin.update("/nv", |s| s.seed = 11);
    // Stale after a second (whole-second clock: up to two).
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let got = get(&c, &proxy, "/nv").await;
    assert_eq!(got.x_cache(), "MISS", "refetched");
    assert_eq!(sha(&got.body), sha(&object_bytes(11, 0, 10 * KIB)));
    proxy.shutdown().await;
}

/// Chunk `i` of the streamed request body: distinct bytes per chunk and method.
fn body_chunk(seed: u8, i: u8) -> bytes::Bytes {
    bytes::Bytes::from(object_bytes(seed.wrapping_add(i), 0, 64 * KIB))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_of_other_methods_stream_through_both_ways() {
    use futures_util::StreamExt;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let (origin, _dir, proxy, _c) = harness(64 * KIB).await;
    let mut spec = Spec::new(0, 9);
    spec.echo = true;
    origin.add("/echo", spec);
    type Streamed =
        http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, std::convert::Infallible>;
    let client: Client<_, Streamed> = Client::builder(TokioExecutor::new()).build_http();
    const CHUNKS: u8 = 16;
    for (seed, method) in [(10u8, "POST"), (40, "PUT"), (70, "PATCH")] {
        let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(1);
        let frames = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
        });
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}/echo", proxy.addr))
            .body(BodyExt::boxed_unsync(StreamBody::new(StreamExt::boxed(
                frames,
            ))))
            .unwrap();
        tx.send(body_chunk(seed, 0)).await.unwrap();
        let step = std::time::Duration::from_secs(10);
        let answer = tokio::time::timeout(step, client.request(req))
            .await
            .unwrap_or_else(|_| panic!("{method}: no answer head while the body is open"))
            .unwrap();
        assert_eq!(answer.status(), 200, "{method}");
        assert_eq!(field(answer.headers(), "x-cache"), "BYPASS", "{method}");
        assert_eq!(field(answer.headers(), "x-echo-method"), method);
        let mut body = answer.into_body();
        let mut got = Vec::new();
        // Chunk i+1 is sent only once chunk i came back through the proxy and the
        // origin: neither direction may wait for the other body's end.
        for i in 0..CHUNKS {
            let want = (u64::from(i) + 1) * 64 * KIB;
            while (got.len() as u64) < want {
                let frame = tokio::time::timeout(step, body.frame())
                    .await
                    .unwrap_or_else(|_| panic!("{method}: chunk {i} not echoed while open"))
                    .expect("body ended early")
                    .unwrap();
                if let Ok(data) = frame.into_data() {
                    got.extend_from_slice(&data);
                }
            }
            if i + 1 < CHUNKS {
                tx.send(body_chunk(seed, i + 1)).await.unwrap();
            }
        }
        drop(tx);
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                got.extend_from_slice(&data);
            }
        }
        let sent: Vec<u8> = (0..CHUNKS).flat_map(|i| body_chunk(seed, i)).collect();
        assert_eq!(sha(&got), sha(&sent), "{method}: echoed bytes");
        let (seen, _) = origin.heads("/echo").pop().unwrap();
        assert_eq!(seen.as_str(), method);
    }
    proxy.shutdown().await;
}
