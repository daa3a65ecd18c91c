//! A safe cache directory (issue 12): the proxy uses only a directory it marked, and
//! deletes only what it created there.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use streaming_proxy::{ProxyError, StreamingProxy};
use support::*;

const KIB: u64 = 1024;
const MARKER: &str = ".streaming-proxy-cache";

/// Someone's files, including a directory named like one of the proxy's object
/// directories with a broken `meta` (what an unmarked start-up used to delete).
fn foreign_tree(root: &Path) {
    std::fs::create_dir_all(root.join("photos/2026")).unwrap();
    std::fs::write(root.join("notes.txt"), b"keep me").unwrap();
    std::fs::write(root.join("photos/2026/a.jpg"), vec![7u8; 10_000]).unwrap();
    let lookalike = root.join("0123456789abcdef0123456789abcdef");
    std::fs::create_dir(&lookalike).unwrap();
    std::fs::write(lookalike.join("meta"), b"not toml [").unwrap();
    std::fs::write(lookalike.join("0.piece"), b"data").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_dir_holding_a_foreign_tree_is_refused_and_left_untouched() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    foreign_tree(dir.path());
    let before = tree(dir.path());
    // The binary refuses to start, saying why.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_streaming-proxy"))
        .args(["--upstream", &origin.url(), "--listen", "127.0.0.1:0"])
        .arg("--cache-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("not created by streaming-proxy"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&dir.path().display().to_string()),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "never READY");
    // So does the library.
    let refused = StreamingProxy::new(config(&origin, dir.path(), 64 * KIB));
    assert!(matches!(refused, Err(ProxyError::CacheDir(_))));
    assert_eq!(tree(dir.path()), before, "the tree untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_dir_is_marked_and_only_the_proxys_files_are_ever_deleted() {
    let origin = Origin::start().await;
    origin.add("/a", Spec::new(100 * KIB, 91));
    origin.add("/b", Spec::new(100 * KIB, 92));
    let top = tempfile::tempdir().unwrap();
    let root = top.path().join("new/cache");
    let mut cfg = config(&origin, &root, 64 * KIB);
    // Room for one of the two objects: storing /b evicts /a.
    cfg.l2_bytes = 150 * KIB;
    let proxy = Proxy::start(cfg.clone()).await;
    assert!(root.join(MARKER).is_file(), "marked when created");
    // Files someone put into the marked directory later.
    std::fs::write(root.join("README"), b"mine").unwrap();
    std::fs::create_dir(root.join("keep")).unwrap();
    std::fs::write(root.join("keep/data"), b"also mine").unwrap();
    let c = client();
    assert_eq!(get(&c, &proxy, "/a").await.x_cache(), "MISS");
    proxy.idle().await;
    assert_eq!(get(&c, &proxy, "/b").await.x_cache(), "MISS");
    proxy.idle().await;
    let purge = request(&c, "PURGE", format!("http://{}/b", proxy.addr), None).await;
    assert_eq!(purge.status, 200);
    proxy.shutdown().await;
    // A restart on the marked directory is accepted; the index rebuild leaves the
    // foreign names alone too.
    let proxy = Proxy::start(cfg).await;
    assert_eq!(get(&c, &proxy, "/a").await.x_cache(), "MISS", "evicted");
    proxy.shutdown().await;
    assert_eq!(std::fs::read(root.join("README")).unwrap(), b"mine");
    assert_eq!(std::fs::read(root.join("keep/data")).unwrap(), b"also mine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_existing_dir_is_initialised() {
    let origin = Origin::start().await;
    origin.add("/e", Spec::new(10 * KIB, 93));
    let dir = tempfile::tempdir().unwrap();
    let (proxy, c) = (
        Proxy::start(config(&origin, dir.path(), 64 * KIB)).await,
        client(),
    );
    assert!(dir.path().join(MARKER).is_file());
    assert_eq!(get(&c, &proxy, "/e").await.x_cache(), "MISS");
    proxy.idle().await;
    proxy.shutdown().await;
    let proxy = Proxy::start(config(&origin, dir.path(), 64 * KIB)).await;
    let hit = get(&c, &proxy, "/e").await;
    assert_eq!(
        (hit.x_cache(), sha(&hit.body)),
        ("HIT", object_sha(93, 10 * KIB))
    );
    proxy.shutdown().await;
}
