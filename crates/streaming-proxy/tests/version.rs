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
