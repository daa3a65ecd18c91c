//! End-to-end behaviour over real sockets: origin on loopback, proxy served by
//! web-service, HTTP/1.1 clients. Assertions are on bytes, statuses, `x-cache` and
//! the origin's request log, never on timing.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use streaming_proxy::Mode;
use support::*;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

fn expect(seed: u8, start: u64, end: u64) -> String {
    sha(&object_bytes(seed, start, end))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_then_hit_identical_bytes_1kib_and_10mib() {
    let (origin, _dir, proxy, c) = harness(MIB).await;
    origin.add("/small", Spec::new(KIB, 1));
    origin.add("/big", Spec::new(10 * MIB, 2));
    for (path, len, seed, slices) in [("/small", KIB, 1, 1), ("/big", 10 * MIB, 2, 10)] {
        let miss = get(&c, &proxy, path).await;
        assert_eq!(
            (miss.status, miss.x_cache(), miss.error),
            (200, "MISS", false),
            "{path}"
        );
        assert_eq!(sha(&miss.body), expect(seed, 0, len), "{path} miss bytes");
        let hit = get(&c, &proxy, path).await;
        assert_eq!((hit.status, hit.x_cache()), (200, "HIT"), "{path}");
        assert_eq!(sha(&hit.body), expect(seed, 0, len), "{path} hit bytes");
        assert_eq!(hit.header("content-length"), len.to_string());
        assert_eq!(
            origin.requests(path).len(),
            slices,
            "{path}: one origin request per slice"
        );
    }
    let metrics = proxy.proxy.metrics().render();
    assert!(
        metrics.contains("streaming_proxy_cache_hits_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("streaming_proxy_cache_misses_total 2"),
        "{metrics}"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_cold_and_cached_across_slice_borders() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    let len = 3 * 64 * KIB + 123;
    origin.add("/r", Spec::new(len, 3));

    // Cold range in the middle slice costs that slice only.
    let cold = get_range(&c, &proxy, "/r", "bytes=70000-70099").await;
    assert_eq!((cold.status, cold.x_cache()), (206, "MISS"));
    assert_eq!(
        cold.header("content-range"),
        format!("bytes 70000-70099/{len}")
    );
    assert_eq!(sha(&cold.body), expect(3, 70000, 70100));
    assert_eq!(
        origin.requests("/r"),
        vec![(Some("bytes=65536-131071".into()), 206)]
    );

    // A range spanning stored and missing slices: partial hit.
    let border = 64 * KIB;
    let across = get_range(
        &c,
        &proxy,
        "/r",
        &format!("bytes={}-{}", border - 10, 2 * border + 9),
    )
    .await;
    assert_eq!((across.status, across.x_cache()), (206, "PARTIAL"));
    assert_eq!(sha(&across.body), expect(3, border - 10, 2 * border + 10));

    let cases: Vec<(String, u64, u64)> = vec![
        ("bytes=0-0".into(), 0, 1),
        ("bytes=0-99".into(), 0, 100),
        (
            format!("bytes={}-{}", border - 1, border),
            border - 1,
            border + 1,
        ),
        ("bytes=100000-".into(), 100000, len),
        ("bytes=-50".into(), len - 50, len),
        (format!("bytes={}-{}", len - 1, len + 500), len - 1, len),
        ("bytes=0-".into(), 0, len),
    ];
    for (range, start, end) in cases {
        let got = get_range(&c, &proxy, "/r", &range).await;
        assert_eq!(got.status, 206, "{range}");
        assert_eq!(
            got.header("content-range"),
            format!("bytes {start}-{}/{len}", end - 1),
            "{range}"
        );
        assert_eq!(sha(&got.body), expect(3, start, end), "{range}");
    }
    let full = get(&c, &proxy, "/r").await;
    assert_eq!((full.status, full.x_cache()), (200, "HIT"));
    assert_eq!(sha(&full.body), expect(3, 0, len));
    assert_eq!(origin.requests("/r").len(), 4, "each slice fetched once");

    let head = request(&c, "HEAD", format!("http://{}/r", proxy.addr), None).await;
    assert_eq!((head.status, head.x_cache()), (200, "HIT"));
    assert_eq!(
        (head.header("content-length"), head.body.len()),
        (len.to_string().as_str(), 0)
    );

    let bad = get_range(&c, &proxy, "/r", &format!("bytes={len}-")).await;
    assert_eq!(bad.status, 416);
    assert_eq!(bad.header("content-range"), format!("bytes */{len}"));
    // Unsatisfiable on a cold object: the origin's 416 is relayed.
    origin.add("/cold", Spec::new(1000, 4));
    let bad = get_range(&c, &proxy, "/cold", "bytes=5000-").await;
    assert_eq!(bad.status, 416);
    assert_eq!(bad.header("content-range"), "bytes */1000");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_cold_clients_share_one_fetch_per_slice() {
    let (origin, _dir, proxy, c) = harness(512 * KIB).await;
    origin.add("/hot", Spec::new(2 * MIB, 5).delay_ms(2));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        tasks.push(spawn_get(&c, &format!("http://{}/hot", proxy.addr)));
    }
    let want = expect(5, 0, 2 * MIB);
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!((got.status, got.error), (200, false));
        assert_eq!(sha(&got.body), want);
    }
    let log = origin.requests("/hot");
    assert_eq!(log.len(), 4, "one origin fetch per slice: {log:?}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_client_disconnecting_mid_fill_does_not_stall_or_truncate_others() {
    let (origin, _dir, proxy, c) = harness(MIB).await;
    origin.add("/slow", Spec::new(MIB, 6).delay_ms(5));
    let url = format!("http://{}/slow", proxy.addr);
    // The first client reads the head and a little of the body, then goes away.
    let (headers, first) = read_first_frame(&c, &url).await;
    assert_eq!(headers["x-cache"], "MISS");
    let second = spawn_get(&c, &url);
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(first);
    let got = second.await.unwrap();
    assert_eq!((got.status, got.error), (200, false));
    assert_eq!(sha(&got.body), expect(6, 0, MIB));
    assert_eq!(
        origin.requests("/slow").len(),
        1,
        "the fill went on for the joiner"
    );
    let again = get(&c, &proxy, "/slow").await;
    assert_eq!(
        (again.x_cache(), sha(&again.body)),
        ("HIT", expect(6, 0, MIB))
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_dying_mid_object_gives_readers_an_error_not_a_short_200() {
    let (origin, _dir, proxy, c) = harness(MIB).await;
    origin.add("/dies", Spec::new(MIB, 7).die_after(300 * KIB).delay_ms(1));
    let url = format!("http://{}/dies", proxy.addr);
    // Two readers of the same failing fill: one over HTTP/1.1, one over h2c.
    let h1 = spawn_get(&c, &url);
    let h2 = {
        let h2 = h2c_client();
        tokio::spawn(async move { request(&h2, "GET", url, None).await })
    };
    for got in [h1.await.unwrap(), h2.await.unwrap()] {
        assert_eq!(got.status, 200);
        assert!(
            got.error,
            "body must fail, got {} clean bytes",
            got.body.len()
        );
        assert!((got.body.len() as u64) < MIB);
    }
    assert_eq!(origin.requests("/dies").len(), 1);
    // Nothing half-written is served afterwards: the object is fetched again.
    origin.update("/dies", |s| s.die_after = None);
    let ok = get(&c, &proxy, "/dies").await;
    assert_eq!((ok.status, ok.error), (200, false));
    assert_eq!(sha(&ok.body), expect(7, 0, MIB));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_l2_piece_is_dropped_and_refetched() {
    let origin = Origin::start().await;
    origin.add("/c", Spec::new(3 * 64 * KIB, 8));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&origin, dir.path(), 64 * KIB);
    let proxy = Proxy::start(cfg.clone()).await;
    let c = client();
    assert_eq!(get(&c, &proxy, "/c").await.x_cache(), "MISS");
    proxy.idle().await; // the last piece is stored just after its bytes went out
    proxy.shutdown().await;

    // Flip one byte in the middle slice on disk.
    let object_dir = object_dirs(dir.path()).remove(0);
    let piece = object_dir.join("1.piece");
    let mut data = std::fs::read(&piece).unwrap();
    data[1000] ^= 0xff;
    std::fs::write(&piece, data).unwrap();

    // A new process: L1 is empty, the index is rebuilt from disk.
    let proxy = Proxy::start(cfg).await;
    let got = get(&c, &proxy, "/c").await;
    assert_eq!((got.status, got.error), (200, false));
    assert_eq!(sha(&got.body), expect(8, 0, 3 * 64 * KIB));
    let log = origin.requests("/c");
    assert_eq!(
        log.len(),
        4,
        "only the corrupt slice is fetched again: {log:?}"
    );
    assert_eq!(log[3].0.as_deref(), Some("bytes=65536-131071"));
    assert!(
        proxy
            .proxy
            .metrics()
            .render()
            .contains("streaming_proxy_l2_corrupt_pieces_total 1")
    );
    assert_eq!(get(&c, &proxy, "/c").await.x_cache(), "HIT");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_stopped_hits_served_misses_502() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    origin.add("/kept", Spec::new(100 * KIB, 9));
    origin.add("/never", Spec::new(100 * KIB, 10));
    assert_eq!(get(&c, &proxy, "/kept").await.x_cache(), "MISS");
    origin.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let hit = get(&c, &proxy, "/kept").await;
    assert_eq!((hit.status, hit.x_cache()), (200, "HIT"));
    assert_eq!(sha(&hit.body), expect(9, 0, 100 * KIB));
    let miss = get(&c, &proxy, "/never").await;
    assert_eq!((miss.status, miss.x_cache()), (502, "MISS"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_served_on_origin_error_only_with_stale_if_error() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    origin.add(
        "/lenient",
        Spec::new(100 * KIB, 21).cache_control("max-age=0, stale-if-error=3600"),
    );
    origin.add(
        "/strict",
        Spec::new(100 * KIB, 22).cache_control("max-age=0"),
    );
    for path in ["/lenient", "/strict"] {
        assert_eq!(get(&c, &proxy, path).await.x_cache(), "MISS");
        // Stale at once; the origin now answers 503 to the revalidation.
        origin.update(path, |s| {
            s.etag = None;
            s.last_modified = None;
            s.status = 503;
        });
    }
    let stale = get(&c, &proxy, "/lenient").await;
    assert_eq!((stale.status, stale.x_cache()), (200, "STALE"));
    assert_eq!(sha(&stale.body), expect(21, 0, 100 * KIB));
    let strict = get(&c, &proxy, "/strict").await;
    assert_eq!((strict.status, strict.x_cache()), (503, "MISS"));

    origin.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stale = get_range(&c, &proxy, "/lenient", "bytes=70000-79999").await;
    assert_eq!((stale.status, stale.x_cache()), (206, "STALE"));
    assert_eq!(sha(&stale.body), expect(21, 70_000, 80_000));
    let strict = get(&c, &proxy, "/strict").await;
    assert_eq!((strict.status, strict.x_cache()), (502, "MISS"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_credentials_pass_through_with_their_headers() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    let mut private = Spec::new(100 * KIB, 23);
    private.auth = Some("Bearer s3cret".into());
    origin.add("/private", private);
    origin.add("/public", Spec::new(10 * KIB, 24));
    let url = |path: &str| format!("http://{}{path}", proxy.addr);

    let authorized = request_with(
        &c,
        "GET",
        url("/private"),
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!((authorized.status, authorized.x_cache()), (200, "BYPASS"));
    assert_eq!(sha(&authorized.body), expect(23, 0, 100 * KIB));
    // Nothing was stored or shared: a client without the credentials is refused.
    let anonymous = get(&c, &proxy, "/private").await;
    assert_eq!(anonymous.status, 401);
    assert!(proxy.proxy.cache().meta("/private").is_none());

    // A cookie passes too, and a safe method does not evict the stored object.
    assert_eq!(get(&c, &proxy, "/public").await.x_cache(), "MISS");
    let cookie = request_with(&c, "GET", url("/public"), &[("cookie", "session=1")]).await;
    assert_eq!((cookie.status, cookie.x_cache()), (200, "BYPASS"));
    assert_eq!(sha(&cookie.body), expect(24, 0, 10 * KIB));
    assert_eq!(get(&c, &proxy, "/public").await.x_cache(), "HIT");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_range_serves_the_range_only_for_the_current_version() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    let mut dated = Spec::new(200 * KIB, 26);
    dated.etag = None;
    dated.last_modified = Some("Tue, 03 Nov 2026 10:00:00 GMT".into());
    origin.add("/dated", dated);
    origin.add("/tagged", Spec::new(200 * KIB, 25));
    let url = |path: &str| format!("http://{}{path}", proxy.addr);
    let ranged = |path: &'static str, if_range: &'static str| {
        let (c, url) = (&c, url(path));
        async move {
            let headers = [("range", "bytes=100000-100099"), ("if-range", if_range)];
            request_with(c, "GET", url, &headers).await
        }
    };

    // Cold, with a stale validator and a range past the first slice: whole object.
    let cold = ranged("/tagged", "\"v-old\"").await;
    assert_eq!((cold.status, cold.x_cache()), (200, "MISS"));
    assert_eq!(sha(&cold.body), expect(25, 0, 200 * KIB));
    proxy.idle().await;
    let current = ranged("/tagged", "\"v25\"").await;
    assert_eq!((current.status, current.x_cache()), (206, "HIT"));
    assert_eq!(sha(&current.body), expect(25, 100_000, 100_100));
    // If-Range compares strongly: a weak tag never matches.
    let weak = ranged("/tagged", "W/\"v25\"").await;
    assert_eq!(weak.status, 200);
    assert_eq!(sha(&weak.body), expect(25, 0, 200 * KIB));

    let date = ranged("/dated", "Tue, 03 Nov 2026 10:00:00 GMT").await;
    assert_eq!(date.status, 206);
    assert_eq!(sha(&date.body), expect(26, 100_000, 100_100));
    let other = ranged("/dated", "Mon, 02 Nov 2026 10:00:00 GMT").await;
    assert_eq!(other.status, 200);
    assert_eq!(sha(&other.body), expect(26, 0, 200 * KIB));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_from_storage_carry_their_age() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    origin.add("/aged", Spec::new(10 * KIB, 27));
    let miss = get(&c, &proxy, "/aged").await;
    assert_eq!((miss.x_cache(), miss.header("age")), ("MISS", ""));
    // Ages count whole seconds: after 1.1 s at least one has passed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let hit = get(&c, &proxy, "/aged").await;
    assert_eq!(hit.x_cache(), "HIT");
    let age: u64 = hit.header("age").parse().unwrap();
    assert!((1..=60).contains(&age), "age {age}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_wait_for_a_free_fill_stream_instead_of_failing() {
    let origin = Origin::start().await;
    for (path, seed) in [("/a", 29), ("/b", 30), ("/c", 31)] {
        origin.add(path, Spec::new(192 * KIB, seed).delay_ms(2));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&origin, dir.path(), 64 * KIB);
    config.max_fills = 1;
    let proxy = Proxy::start(config).await;
    let c = client();
    // Three cold objects of three slices each through one fill stream.
    let (a, b, cc) = tokio::join!(
        get_hashed(&c, &proxy, "/a"),
        get_hashed(&c, &proxy, "/b"),
        get_hashed(&c, &proxy, "/c")
    );
    for ((status, _, hash, len, error), seed) in [(a, 29), (b, 30), (cc, 31)] {
        assert_eq!((status, len, error), (200, 192 * KIB, false));
        assert_eq!(hash, expect(seed, 0, 192 * KIB));
    }
    proxy.shutdown().await;
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    let swr = "max-age=0, stale-while-revalidate=3600";
    origin.add("/same", Spec::new(100 * KIB, 32).cache_control(swr));
    origin.add("/changes", Spec::new(100 * KIB, 33).cache_control(swr));
    for path in ["/same", "/changes"] {
        assert_eq!(get(&c, &proxy, path).await.x_cache(), "MISS");
    }
    // The origin now answers slowly: the stale answers must not wait for it.
    origin.update("/same", |s| {
        s.cache_control = Some("max-age=3600".into());
        s.chunk_delay = Duration::from_millis(300);
    });
    origin.update("/changes", |s| {
        s.seed = 34;
        s.etag = Some("\"v34\"".into());
    });
    let stale = get(&c, &proxy, "/same").await;
    assert_eq!((stale.status, stale.x_cache()), (200, "STALE"));
    assert_eq!(sha(&stale.body), expect(32, 0, 100 * KIB));
    let old = get(&c, &proxy, "/changes").await;
    assert_eq!(old.x_cache(), "STALE");
    assert_eq!(sha(&old.body), expect(33, 0, 100 * KIB));

    // The background revalidations end: a 304 refreshes one, the other is dropped.
    // Two slices fetched by the miss, then the revalidation: its status is the third.
    let settled = |path: &'static str, status: u16| {
        let origin = &origin;
        async move {
            for _ in 0..200 {
                if origin.requests(path).get(2).is_some_and(|r| r.1 == status) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("no background revalidation of {path}");
        }
    };
    settled("/same", 304).await;
    settled("/changes", 206).await;
    // The origin logs before it answers: wait for the proxy to act on the answers.
    let cache = proxy.proxy.cache();
    for _ in 0..200 {
        let refreshed = cache.meta("/same").is_some_and(|m| m.fresh_until > now());
        if refreshed && cache.meta("/changes").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let hit = get(&c, &proxy, "/same").await;
    assert_eq!(hit.x_cache(), "HIT", "the 304 refreshed the lifetime");
    let fresh = get(&c, &proxy, "/changes").await;
    assert_eq!(fresh.x_cache(), "MISS");
    assert_eq!(sha(&fresh.body), expect(34, 0, 100 * KIB));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_slice_is_requested_while_the_current_one_streams() {
    let (origin, _dir, proxy, c) = harness(MIB).await;
    // 64 chunks of 16 KiB, 20 ms apart: slice 0 takes over a second to arrive.
    origin.add("/ahead", Spec::new(3 * MIB, 35).delay_ms(20));
    let (_head, body) = read_first_frame(&c, &format!("http://{}/ahead", proxy.addr)).await;
    let sent = || origin.state.sent.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..400 {
        if origin.requests("/ahead").len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ranges: Vec<Option<String>> = origin.requests("/ahead").into_iter().map(|r| r.0).collect();
    assert_eq!(
        ranges,
        vec![
            Some("bytes=0-1048575".into()),
            Some("bytes=1048576-2097151".into())
        ]
    );
    // Asked before slice 0 was through, and the client has read one frame only.
    assert!(sent() < MIB, "slice 1 asked only after {} bytes", sent());
    drop(body);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_then_replay_serves_offline_and_504s_misses() {
    let origin = Origin::start().await;
    origin.add("/rec", Spec::new(200 * KIB, 11).cache_control("no-store"));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&origin, dir.path(), 64 * KIB);
    cfg.mode = Mode::Record;
    let proxy = Proxy::start(cfg.clone()).await;
    let c = client();
    assert_eq!(
        get(&c, &proxy, "/rec").await.x_cache(),
        "MISS",
        "record stores no-store answers"
    );
    proxy.idle().await;
    proxy.shutdown().await;
    origin.stop();

    cfg.mode = Mode::Replay;
    let proxy = Proxy::start(cfg).await;
    let hit = get(&c, &proxy, "/rec").await;
    assert_eq!((hit.status, hit.x_cache()), (200, "HIT"));
    assert_eq!(sha(&hit.body), expect(11, 0, 200 * KIB));
    let r = get_range(&c, &proxy, "/rec", "bytes=1000-70000").await;
    assert_eq!((r.status, sha(&r.body)), (206, expect(11, 1000, 70001)));
    let miss = get(&c, &proxy, "/other").await;
    assert_eq!((miss.status, miss.x_cache()), (504, "MISS"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_from_both_tiers() {
    let (origin, dir, proxy, c) = harness(64 * KIB).await;
    origin.add("/p", Spec::new(100 * KIB, 12));
    assert_eq!(get(&c, &proxy, "/p").await.x_cache(), "MISS");
    assert_eq!(get(&c, &proxy, "/p").await.x_cache(), "HIT");
    let purge = request(&c, "PURGE", format!("http://{}/p", proxy.addr), None).await;
    assert_eq!((purge.status, purge.x_cache()), (200, "PURGED"));
    assert_eq!(object_dirs(dir.path()).len(), 0, "disk entry removed");
    let again = get(&c, &proxy, "/p").await;
    assert_eq!(again.x_cache(), "MISS");
    assert_eq!(sha(&again.body), expect(12, 0, 100 * KIB));
    assert_eq!(origin.requests("/p").len(), 4);
    let absent = request(&c, "PURGE", format!("http://{}/nothing", proxy.addr), None).await;
    assert_eq!(absent.status, 404);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_refused_from_addresses_outside_purge_allow() {
    let origin = Origin::start().await;
    origin.add("/kept", Spec::new(10 * KIB, 28));
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&origin, dir.path(), 64 * KIB);
    config.purge_allow = vec!["10.0.0.0/8".parse().unwrap()];
    let proxy = Proxy::start(config).await;
    let c = client();
    assert_eq!(get(&c, &proxy, "/kept").await.x_cache(), "MISS");
    let purge = request(&c, "PURGE", format!("http://{}/kept", proxy.addr), None).await;
    assert_eq!(purge.status, 403);
    assert_eq!(get(&c, &proxy, "/kept").await.x_cache(), "HIT");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncacheable_answers_pass_through() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    origin.add("/ns", Spec::new(100 * KIB, 13).cache_control("no-store"));
    origin.add(
        "/private",
        Spec::new(10 * KIB, 14).cache_control("private, max-age=60"),
    );
    for _ in 0..2 {
        let got = get(&c, &proxy, "/ns").await;
        assert_eq!((got.status, got.x_cache()), (200, "BYPASS"));
        assert_eq!(sha(&got.body), expect(13, 0, 100 * KIB));
        assert_eq!(get(&c, &proxy, "/private").await.x_cache(), "BYPASS");
    }
    assert_eq!(
        origin.requests("/ns").len(),
        4,
        "2 slices x 2 requests, none stored"
    );
    assert_eq!(origin.requests("/private").len(), 2);
    let missing = get(&c, &proxy, "/404").await;
    assert_eq!((missing.status, missing.x_cache()), (404, "BYPASS"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_entry_revalidated_with_etag_304_refreshes() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    origin.add("/t", Spec::new(100 * KIB, 15).cache_control("max-age=0"));
    assert_eq!(get(&c, &proxy, "/t").await.x_cache(), "MISS");
    // max-age=0: stale at once; the origin confirms with 304 and now allows an hour.
    origin.update("/t", |s| s.cache_control = Some("max-age=3600".into()));
    let reval = get(&c, &proxy, "/t").await;
    assert_eq!((reval.status, reval.x_cache()), (200, "REVALIDATED"));
    assert_eq!(sha(&reval.body), expect(15, 0, 100 * KIB));
    let hit = get(&c, &proxy, "/t").await;
    assert_eq!(hit.x_cache(), "HIT", "the 304 refreshed the lifetime");
    let statuses: Vec<u16> = origin.requests("/t").iter().map(|r| r.1).collect();
    assert_eq!(statuses, vec![206, 206, 304]);

    // A changed object (new ETag) is fetched again once stale.
    proxy.proxy.cache().purge("/t").await;
    origin.update("/t", |s| s.cache_control = Some("max-age=0".into()));
    assert_eq!(get(&c, &proxy, "/t").await.x_cache(), "MISS");
    origin.update("/t", |s| {
        s.seed = 16;
        s.etag = Some("\"v16\"".into());
    });
    let changed = get(&c, &proxy, "/t").await;
    assert_eq!(changed.x_cache(), "MISS");
    assert_eq!(sha(&changed.body), expect(16, 0, 100 * KIB));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_without_range_support_streams_whole_object_and_stores_slices() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    origin.add("/norange", Spec::new(300 * KIB, 17).no_ranges());
    let r = get_range(&c, &proxy, "/norange", "bytes=200000-200999").await;
    assert_eq!((r.status, r.x_cache()), (206, "MISS"));
    assert_eq!(sha(&r.body), expect(17, 200000, 201000));
    proxy.idle().await;
    let full = get(&c, &proxy, "/norange").await;
    assert_eq!((full.status, full.x_cache()), (200, "HIT"));
    assert_eq!(sha(&full.body), expect(17, 0, 300 * KIB));
    assert_eq!(origin.requests("/norange").len(), 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_of_a_wrapped_whole_object_fill_gets_every_byte() {
    // No range support: one fill streams the whole object through a ring smaller
    // than the object, so a late joiner cannot read it from the start.
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    let len = 2 * 1024 * KIB;
    origin.add("/wrap", Spec::new(len, 18).no_ranges().delay_ms(1));
    let url = format!("http://{}/wrap", proxy.addr);
    let first = spawn_get(&c, &url);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let late = request(&c, "GET", url, None).await;
    let first = first.await.unwrap();
    let want = expect(18, 0, len);
    assert_eq!((first.error, sha(&first.body)), (false, want.clone()));
    assert_eq!((late.error, sha(&late.body)), (false, want));
    assert_eq!(origin.requests("/wrap").len(), 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_of_a_1gib_object_costs_only_its_slices() {
    let (origin, _dir, proxy, c) = harness(MIB).await;
    let len = 1024 * MIB;
    origin.add("/huge", Spec::new(len, 19));
    let mid = 500_000_000;
    let got = get_range(&c, &proxy, "/huge", &format!("bytes={mid}-{}", mid + 999)).await;
    assert_eq!((got.status, got.x_cache()), (206, "MISS"));
    assert_eq!(
        got.header("content-range"),
        format!("bytes {mid}-{}/{len}", mid + 999)
    );
    assert_eq!(sha(&got.body), expect(19, mid, mid + 1000));
    assert_eq!(origin.requests("/huge").len(), 1);
    // Across the border of slices 10 and 11: those two slices only.
    let border = 11 * MIB;
    let got = get_range(
        &c,
        &proxy,
        "/huge",
        &format!("bytes={}-{}", border - 5, border + 4),
    )
    .await;
    assert_eq!((got.status, got.x_cache()), (206, "PARTIAL"));
    assert_eq!(sha(&got.body), expect(19, border - 5, border + 5));
    assert_eq!(origin.requests("/huge").len(), 3);
    let again = get_range(&c, &proxy, "/huge", &format!("bytes={mid}-{}", mid + 999)).await;
    assert_eq!(
        (again.x_cache(), sha(&again.body)),
        ("HIT", expect(19, mid, mid + 1000))
    );
    assert_eq!(origin.requests("/huge").len(), 3);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncacheable_fill_stops_when_its_last_reader_leaves() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    let len = 4 * 1024 * KIB;
    origin.add(
        "/gone",
        Spec::new(len, 20)
            .no_ranges()
            .cache_control("no-store")
            .delay_ms(2),
    );
    let (headers, body) = read_first_frame(&c, &format!("http://{}/gone", proxy.addr)).await;
    assert_eq!(headers["x-cache"], "BYPASS");
    drop(body);
    proxy.idle().await;
    let sent = origin.state.sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        sent < len,
        "the origin was read to the end ({sent} bytes) for nobody"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_conditional_requests_get_304_from_the_cache() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    origin.add("/cond", Spec::new(10 * KIB, 25));
    let url = format!("http://{}/cond", proxy.addr);
    assert_eq!(get(&c, &proxy, "/cond").await.x_cache(), "MISS");
    let conditional = |tag: &'static str| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let req = http::Request::get(url)
                .header("if-none-match", tag)
                .body(http_body_util::Empty::new())
                .unwrap();
            let answer = c.request(req).await.unwrap();
            (
                answer.status().as_u16(),
                answer.headers()["x-cache"].clone(),
            )
        }
    };
    assert_eq!(conditional("\"v25\"").await, (304, "HIT".parse().unwrap()));
    assert_eq!(conditional("\"x\", W/\"v25\"").await.0, 304);
    assert_eq!(conditional("*").await.0, 304);
    assert_eq!(conditional("\"v24\"").await.0, 200);
    assert_eq!(origin.requests("/cond").len(), 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_accept_encoding_is_stored_once_for_every_client_and_other_fields_per_variant() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    let len = 100 * KIB;
    let mut spec = Spec::new(len, 28);
    spec.vary = Some("Accept-Encoding".into());
    origin.add("/v", spec);
    let mut other = Spec::new(len, 29);
    other.vary = Some("accept-encoding, user-agent".into());
    origin.add("/ua", other);
    let want = sha(&object_bytes(28, 0, len));
    // Fills ask for identity, so a compressing origin's plain variant is stored
    // and every client that accepts identity (all but the rarest) shares it.
    for (accept, x_cache) in [("gzip, br", "MISS"), ("gzip", "HIT"), ("", "HIT")] {
        let got = get_with(&c, &proxy, "/v", &[("accept-encoding", accept)]).await;
        assert_eq!((got.status, got.x_cache()), (200, x_cache), "{accept}");
        assert_eq!(sha(&got.body), want);
        assert_eq!(got.header("content-encoding"), "");
        assert_eq!(
            got.header("vary"),
            "Accept-Encoding",
            "kept for caches downstream"
        );
        proxy.idle().await;
    }
    assert_eq!(origin.requests("/v").len(), 2, "one fetch per slice");
    // A client refusing identity is passed through with its own header.
    let gzip_only = get_with(
        &c,
        &proxy,
        "/v",
        &[("accept-encoding", "gzip, identity;q=0")],
    )
    .await;
    assert_eq!(gzip_only.x_cache(), "BYPASS");
    assert_eq!(gzip_only.header("content-encoding"), "gzip");
    assert_eq!(origin.requests("/v").len(), 3);
    // Varying on another field: one entry per value of it (RFC 9111 §4.1).
    for (ua, x_cache) in [
        ("a/1", "MISS"),
        ("b/2", "MISS"),
        ("a/1", "HIT"),
        ("b/2", "HIT"),
    ] {
        let got = get_with(&c, &proxy, "/ua", &[("user-agent", ua)]).await;
        assert_eq!((got.status, got.x_cache()), (200, x_cache), "{ua}");
        assert_eq!(sha(&got.body), sha(&object_bytes(29, 0, len)));
        proxy.idle().await;
    }
    assert_eq!(
        origin.requests("/ua").len(),
        4,
        "2 slices x 2 variants, each stored once"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_preconditions_get_412_from_the_cache() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    let len = 100 * KIB;
    origin.add("/pre", Spec::new(len, 26));
    let mut dated = Spec::new(len, 27);
    dated.etag = None;
    dated.last_modified = Some("Tue, 03 Nov 2026 10:00:00 GMT".into());
    origin.add("/dated", dated);
    let want = sha(&object_bytes(26, 0, len));
    // The first request is a miss: its precondition is checked against what the
    // origin just sent (its first slice), which is stored all the same.
    let miss = get_with(&c, &proxy, "/pre", &[("if-match", "\"v1\"")]).await;
    assert_eq!((miss.status, miss.x_cache()), (412, "MISS"));
    proxy.idle().await;
    let rest = get_with(&c, &proxy, "/pre", &[]).await;
    assert_eq!((rest.x_cache(), sha(&rest.body)), ("PARTIAL", want.clone()));
    proxy.idle().await;
    for tag in ["\"v26\"", "\"x\", \"v26\"", "*"] {
        let got = get_with(&c, &proxy, "/pre", &[("if-match", tag)]).await;
        assert_eq!((got.status, got.x_cache()), (200, "HIT"), "{tag}");
        assert_eq!(sha(&got.body), want);
    }
    // Strong comparison: a weak tag never matches.
    assert_eq!(
        get_with(&c, &proxy, "/pre", &[("if-match", "W/\"v26\"")])
            .await
            .status,
        412
    );
    // If-Match is evaluated before If-None-Match and Range.
    let both = [("if-match", "\"v2\""), ("if-none-match", "\"v26\"")];
    assert_eq!(get_with(&c, &proxy, "/pre", &both).await.status, 412);
    let ranged = get_with(
        &c,
        &proxy,
        "/pre",
        &[("if-match", "\"v26\""), ("range", "bytes=10-19")],
    )
    .await;
    assert_eq!((ranged.status, ranged.body.len()), (206, 10));
    // If-Unmodified-Since against Last-Modified; ignored without Last-Modified.
    assert_eq!(get_with(&c, &proxy, "/dated", &[]).await.x_cache(), "MISS");
    proxy.idle().await;
    let before = [("if-unmodified-since", "Mon, 02 Nov 2026 10:00:00 GMT")];
    let after = [("if-unmodified-since", "Tue, 03 Nov 2026 10:00:00 GMT")];
    assert_eq!(get_with(&c, &proxy, "/dated", &before).await.status, 412);
    assert_eq!(get_with(&c, &proxy, "/dated", &after).await.status, 200);
    assert_eq!(get_with(&c, &proxy, "/pre", &before).await.status, 200);
    assert_eq!(
        origin.requests("/pre").len(),
        2,
        "one fetch per slice, once"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_answering_another_range_than_asked_fails_the_body_once() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    let mut spec = Spec::new(200 * KIB, 29);
    spec.shift = 100;
    origin.add("/shifted", spec);
    // The body fails at its first byte: depending on timing the client sees the
    // head then a broken body, or a connection closed before the head.
    let req = http::Request::get(format!("http://{}/shifted", proxy.addr))
        .body(http_body_util::Empty::new())
        .unwrap();
    if let Ok(answer) = c.request(req).await {
        use http_body_util::BodyExt;
        let body = answer.into_body().collect().await;
        assert!(body.is_err(), "wrong bytes must not pass as the object");
    }
    assert_eq!(origin.requests("/shifted").len(), 1, "no retry loop");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_entry_revalidated_with_last_modified_304() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    let mut spec = Spec::new(10 * KIB, 30).cache_control("max-age=0");
    spec.etag = None;
    spec.last_modified = Some("Wed, 21 Oct 2015 07:28:00 GMT".into());
    origin.add("/lm", spec);
    assert_eq!(get(&c, &proxy, "/lm").await.x_cache(), "MISS");
    let reval = get(&c, &proxy, "/lm").await;
    assert_eq!((reval.status, reval.x_cache()), (200, "REVALIDATED"));
    assert_eq!(sha(&reval.body), expect(30, 0, 10 * KIB));
    let statuses: Vec<u16> = origin.requests("/lm").iter().map(|r| r.1).collect();
    assert_eq!(statuses, vec![206, 304]);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stale_hits_share_one_revalidation() {
    let (origin, _dir, proxy, c) = harness(64 * KIB).await;
    origin.add("/st", Spec::new(10 * KIB, 31).cache_control("max-age=0"));
    assert_eq!(get(&c, &proxy, "/st").await.x_cache(), "MISS");
    origin.update("/st", |s| s.chunk_delay = Duration::from_millis(300));
    let url = format!("http://{}/st", proxy.addr);
    let tasks: Vec<_> = (0..20).map(|_| spawn_get(&c, &url)).collect();
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!((got.status, got.x_cache()), (200, "REVALIDATED"));
        assert_eq!(sha(&got.body), expect(31, 0, 10 * KIB));
    }
    let statuses: Vec<u16> = origin.requests("/st").iter().map(|r| r.1).collect();
    assert_eq!(
        statuses,
        vec![206, 304],
        "one conditional request for 20 stale hits"
    );
    proxy.shutdown().await;
}

/// Origin connections are pooled: one HTTP/2 connection (h2c, prior knowledge, to an
/// origin that speaks nothing else) carries every fetch of several objects, and
/// HTTP/1.1 keep-alive connections are reused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_connections_reused_over_http2_and_http1() {
    for h2 in [true, false] {
        let origin = if h2 {
            Origin::start_h2().await
        } else {
            Origin::start().await
        };
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(&origin, dir.path(), 64 * KIB);
        cfg.upstream_http2 = h2;
        let proxy = Proxy::start(cfg).await;
        let c = client();
        let objects = [("/a", KIB, 11), ("/b", 200 * KIB, 12), ("/c", 64 * KIB, 13)];
        for (path, len, seed) in objects {
            origin.add(path, Spec::new(len, seed));
        }
        for (path, len, seed) in objects {
            let miss = get(&c, &proxy, path).await;
            assert_eq!(
                (miss.status, miss.x_cache()),
                (200, "MISS"),
                "{path} h2={h2}"
            );
            assert_eq!(sha(&miss.body), expect(seed, 0, len), "{path} miss bytes");
            let hit = get(&c, &proxy, path).await;
            assert_eq!((hit.status, hit.x_cache()), (200, "HIT"), "{path} h2={h2}");
            assert_eq!(sha(&hit.body), expect(seed, 0, len), "{path} hit bytes");
        }
        let fetches: usize = objects.iter().map(|o| origin.requests(o.0).len()).sum();
        assert_eq!(fetches, 1 + 4 + 1, "one origin request per 64 KiB slice");
        if h2 {
            assert_eq!(origin.connections(), 1, "one multiplexed HTTP/2 connection");
        } else {
            // Slice fetches of one response are sequential, but a connection goes
            // back to the pool only once its body is read, so allow for a second one.
            assert!(
                origin.connections() < fetches as u64,
                "{} HTTP/1.1 connections for {fetches} fetches: none reused",
                origin.connections()
            );
        }
        proxy.shutdown().await;
    }
}
