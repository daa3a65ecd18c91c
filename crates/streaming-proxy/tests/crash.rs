//! Crash-safe L2 (issue 12): a proxy killed at any moment never serves, after a
//! restart, bytes that were not written whole for the object's current version.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};

use http_body_util::BodyExt;
use support::*;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The only object directory in a cache root.
fn object_dir(root: &Path) -> PathBuf {
    let mut dirs = object_dirs(root);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.remove(0)
}

/// Reads `url` until at least `bytes` body bytes arrived (or the body ended).
async fn read_some(c: &TestClient, url: String, bytes: u64) -> u64 {
    let req = http::Request::get(url)
        .body(http_body_util::Empty::new())
        .unwrap();
    let mut body = c.request(req).await.unwrap().into_body();
    let mut got = 0;
    while got < bytes {
        match body.frame().await {
            Some(Ok(frame)) => got += frame.into_data().map_or(0, |d| d.len() as u64),
            _ => break,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_large_fill_then_restart_serves_the_origins_bytes() {
    let len = 48 * MIB;
    let origin = Origin::start().await;
    // 1 ms per 16 KiB: the fill takes seconds, so the kills land in its middle.
    origin.add("/big", Spec::new(len, 61).delay_ms(1));
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().display().to_string();
    let url = origin.url();
    let args = [
        "--upstream",
        &url,
        "--cache-dir",
        &cache_dir,
        "--metrics",
        "127.0.0.1:0",
    ];
    // Two crashes at different points of the fill, each while slices are being
    // written to disk.
    for stop_at in [12 * MIB, 30 * MIB] {
        let proxy = Binary::start(&args).await;
        let got = read_some(&client(), proxy.url("/big"), stop_at).await;
        assert!(got >= stop_at, "read {got}");
        proxy.kill_9();
    }
    let proxy = Binary::start(&args).await;
    let (status, x_cache, body_sha, got, error) =
        get_hashed_url(&client(), proxy.url("/big")).await;
    assert_eq!((status, got, error), (200, len, false));
    assert_eq!(body_sha, object_sha(61, len), "bytes equal the origin's");
    assert_eq!(
        x_cache, "PARTIAL",
        "slices stored before the kills were used"
    );
    // Every piece on disk now is whole: with L1 too small to hold a slice, a fresh
    // process serves the object from disk alone, the origin gone.
    proxy.idle().await;
    proxy.kill_9();
    origin.stop();
    let proxy = Binary::start(&[&args[..], &["--l1-bytes", "4096"]].concat()).await;
    let (status, x_cache, body_sha, _, error) = get_hashed_url(&client(), proxy.url("/big")).await;
    assert_eq!((status, x_cache.as_str(), error), (200, "HIT", false));
    assert_eq!(body_sha, object_sha(61, len));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_piece_of_another_version_left_on_disk_is_never_served() {
    let (origin, dir, proxy, c) = harness(64 * KIB).await;
    let len = 256 * KIB;
    origin.add("/flip", Spec::new(len, 71));
    assert_eq!(get(&c, &proxy, "/flip").await.x_cache(), "MISS");
    proxy.idle().await;
    // Slice 1 of version A, whole and checksummed.
    let old_piece = std::fs::read(object_dir(dir.path()).join("1.piece")).unwrap();
    // The origin's object changes (same length, new ETag); the proxy stores B.
    let purge = request(&c, "PURGE", format!("http://{}/flip", proxy.addr), None).await;
    assert_eq!(purge.status, 200);
    origin.update("/flip", |s| {
        s.seed = 72;
        s.etag = Some("\"v72\"".into());
    });
    let b = get(&c, &proxy, "/flip").await;
    assert_eq!((b.x_cache(), sha(&b.body)), ("MISS", object_sha(72, len)));
    proxy.idle().await;
    proxy.shutdown().await;
    // What a power loss can leave: B's meta next to a piece of A (its removal and
    // B's write reordered by the disk).
    std::fs::write(object_dir(dir.path()).join("1.piece"), &old_piece).unwrap();
    let proxy = Proxy::start(config(&origin, dir.path(), 64 * KIB)).await;
    let again = get(&c, &proxy, "/flip").await;
    assert_eq!(again.status, 200);
    assert_eq!(sha(&again.body), object_sha(72, len), "only version B");
    assert_eq!(again.x_cache(), "PARTIAL", "slice 1 fetched again");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_piece_in_the_rebuild_costs_that_piece_not_the_disk_cache() {
    let origin = Origin::start().await;
    origin.add("/a", Spec::new(256 * KIB, 81));
    origin.add("/b", Spec::new(100 * KIB, 82));
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(config(&origin, dir.path(), 64 * KIB)).await;
    let c = client();
    assert_eq!(get(&c, &proxy, "/a").await.x_cache(), "MISS");
    proxy.idle().await;
    let a_dir = object_dir(dir.path());
    assert_eq!(get(&c, &proxy, "/b").await.x_cache(), "MISS");
    proxy.idle().await;
    proxy.shutdown().await;
    // A piece name whose file cannot be opened (a dangling link).
    std::fs::remove_file(a_dir.join("3.piece")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("nowhere"), a_dir.join("3.piece")).unwrap();
    let proxy = Proxy::start(config(&origin, dir.path(), 64 * KIB)).await;
    let b = get(&c, &proxy, "/b").await;
    assert_eq!(
        (b.x_cache(), sha(&b.body)),
        ("HIT", object_sha(82, 100 * KIB))
    );
    let a = get(&c, &proxy, "/a").await;
    assert_eq!(
        (a.x_cache(), sha(&a.body)),
        ("PARTIAL", object_sha(81, 256 * KIB))
    );
    assert_eq!(origin.requests("/a").len(), 4 + 1, "only slice 3 again");
    proxy.shutdown().await;
}
