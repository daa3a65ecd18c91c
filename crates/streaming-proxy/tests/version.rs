//! One version per object: when the origin's object changes under a stored
//! one, slice fetches are pinned to the stored version (`If-Match`), so no
//! answer and no stored entry ever mixes two versions.

mod support;

use support::*;

const KIB: u64 = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_change_under_a_partly_stored_object_never_mixes_versions() {
    let (origin, dir, proxy, c) = harness(64 * KIB).await;
    let len = 256 * KIB;
    origin.add("/obj", Spec::new(len, 1).cache_control("max-age=600"));
    // Slice 0 of version 1 stored, the rest not.
    let first = get_range(&c, &proxy, "/obj", "bytes=0-9").await;
    assert_eq!((first.status, first.x_cache()), (206, "MISS"));
    proxy.idle().await;
    origin.update("/obj", |s| {
        s.seed = 2;
        s.etag = Some("\"v2\"".into());
    });
    // A range whose slice is missing: the fetch pinned to v1 gets 412 before the
    // response started, so the client gets the range of the new version.
    let range = get_range(&c, &proxy, "/obj", "bytes=70000-70009").await;
    assert_eq!((range.status, range.error), (206, false));
    assert_eq!(sha(&range.body), sha(&object_bytes(2, 70000, 70010)));
    assert_eq!(range.header("etag"), "\"v2\"");
    let pinned = origin.heads("/obj");
    assert!(
        pinned
            .iter()
            .any(|(_, h)| h.get("if-match").is_some_and(|v| v == "\"v1\"")),
        "the slice fetch was conditional"
    );
    proxy.idle().await;
    // Whole object now: v2 only, stored as v2.
    let whole = get(&c, &proxy, "/obj").await;
    assert_eq!((whole.status, whole.error), (200, false));
    assert_eq!(sha(&whole.body), sha(&object_bytes(2, 0, len)));
    proxy.idle().await;

    // A response that started with stored bytes of v3 while the origin moved
    // to v4 ends in an error at the first slice it cannot get in v3.
    proxy.proxy.cache().purge("/obj").await;
    origin.update("/obj", |s| {
        s.seed = 3;
        s.etag = Some("\"v3\"".into());
    });
    let v3_head = get_range(&c, &proxy, "/obj", "bytes=0-9").await;
    assert_eq!(sha(&v3_head.body), sha(&object_bytes(3, 0, 10)));
    proxy.idle().await;
    origin.update("/obj", |s| {
        s.seed = 4;
        s.etag = Some("\"v4\"".into());
    });
    let started = get(&c, &proxy, "/obj").await;
    assert!(started.error, "an error end, never a mixed 200");
    assert!(started.body.len() < len as usize);
    assert_eq!(
        sha(&started.body),
        sha(&object_bytes(3, 0, started.body.len() as u64)),
        "what was sent is all v3"
    );
    proxy.idle().await;
    let after = get(&c, &proxy, "/obj").await;
    assert_eq!(
        (after.error, sha(&after.body)),
        (false, sha(&object_bytes(4, 0, len)))
    );
    proxy.idle().await;
    proxy.shutdown().await;

    // A restarted proxy serves the one version it stored.
    let proxy = Proxy::start(config(&origin, dir.path(), 64 * KIB)).await;
    origin.stop();
    let restarted = get(&client(), &proxy, "/obj").await;
    assert_eq!((restarted.x_cache(), restarted.error), ("HIT", false));
    assert_eq!(sha(&restarted.body), sha(&object_bytes(4, 0, len)));
    proxy.shutdown().await;
}

/// Which version `bytes` (object bytes from offset `from`) are of, if one.
fn version_of(bytes: &[u8], from: u64, seeds: &[u8]) -> Option<u8> {
    seeds
        .iter()
        .copied()
        .find(|&s| bytes == object_bytes(s, from, from + bytes.len() as u64).as_slice())
}

/// Asserts that a whole-object answer is all one version (a prefix of one, if it
/// ended in an error); returns it.
fn one_version(got: &Got, len: u64, what: &str) -> u8 {
    assert_eq!(got.status, 200, "{what}");
    let version = version_of(&got.body, 0, &[1, 2]).unwrap_or_else(|| panic!("{what}: mixed"));
    if !got.error {
        assert_eq!(
            got.body.len() as u64,
            len,
            "{what}: a clean end is the whole object"
        );
    }
    let etag = format!("\"v{version}\"");
    assert_eq!(got.header("etag"), etag, "{what}: bytes and ETag agree");
    version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_flip_mid_fill_with_a_concurrent_range_request_stays_one_version_across_restart() {
    const MIB: u64 = 1024 * KIB;
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(config(&origin, dir.path(), MIB)).await;
    let len = 8 * MIB;
    // About 8 MB/s: the fill of the 8 slices takes about a second.
    origin.add(
        "/flip",
        Spec::new(len, 1).cache_control("max-age=600").delay_ms(2),
    );
    let c = client();
    let url = format!("http://{}/flip", proxy.addr);
    let whole = spawn_get(&c, &url);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    origin.update("/flip", |s| {
        s.seed = 2;
        s.etag = Some("\"v2\"".into());
    });
    let (from, to) = (5 * MIB + 100, 5 * MIB + 199);
    let range = get_range(&c, &proxy, "/flip", &format!("bytes={from}-{to}")).await;
    let whole = whole.await.unwrap();
    let first = one_version(&whole, len, "the whole-object answer");
    if range.status == 206 && !range.error {
        let v = version_of(&range.body, from, &[1, 2]).expect("the range is one version");
        assert_eq!(range.body.len() as u64, to - from + 1);
        assert_eq!(
            range.header("etag"),
            format!("\"v{v}\""),
            "range bytes and ETag agree"
        );
        println!(
            "whole answer v{first} (error end: {}), range v{v}",
            whole.error
        );
    } else {
        // A range that fails is allowed; a wrong one is not.
        println!(
            "whole answer v{first}, range {} error {}",
            range.status, range.error
        );
        assert!(range.status >= 500 || range.error, "{}", range.status);
    }
    proxy.idle().await;

    // The stored entry is one version: every piece it holds is of its ETag's.
    let check_store = |proxy: &Proxy| {
        let cache = proxy.proxy.cache();
        async move {
            let meta = cache.meta("/flip")?;
            let seed = match meta.etag() {
                Some("\"v1\"") => 1,
                Some("\"v2\"") => 2,
                other => panic!("stored etag {other:?}"),
            };
            let mut pieces = 0;
            for i in 0..meta.slices() {
                let (start, end) = meta.slice_bounds(i);
                if let Some(bytes) = cache.get_piece("/flip", i).await {
                    assert_eq!(
                        &bytes[..],
                        object_bytes(seed, start, end).as_slice(),
                        "stored piece {i} is of v{seed}"
                    );
                    pieces += 1;
                }
            }
            Some((seed, pieces))
        }
    };
    // A prefetch of a response that already ended may still start a fill.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    proxy.idle().await;
    let stored = check_store(&proxy).await;
    println!("stored after the flip: {stored:?}");
    proxy.shutdown().await;

    // A new proxy on the same cache directory still serves one version.
    let proxy = Proxy::start(config(&origin, dir.path(), MIB)).await;
    // Checked piece by piece; not compared with `stored`: the first proxy's fill
    // tasks are not drained at shutdown (a known gap) and may still store a piece.
    let restored = check_store(&proxy).await;
    println!("stored after the restart: {restored:?}");
    let again = get(&client(), &proxy, "/flip").await;
    let v = one_version(&again, len, "after the restart");
    println!("after restart: v{v}, error end {}", again.error);
    proxy.idle().await;
    let last = get(&client(), &proxy, "/flip").await;
    assert!(!last.error, "settled: a whole answer");
    one_version(&last, len, "settled");
    check_store(&proxy).await;
    proxy.shutdown().await;
}
