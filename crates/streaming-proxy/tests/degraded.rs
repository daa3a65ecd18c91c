//! Degraded conditions: an origin that never answers, an unusable disk, a memory
//! budget far smaller than the objects.
#![allow(clippy::unwrap_used)]

mod support;

use support::*;

const KIB: u64 = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_origin_gives_504() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let origin = Origin::start().await; // only for its config helper
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&origin, dir.path(), 64 * KIB);
    cfg.upstream = format!("http://{addr}");
    cfg.upstream_timeout_secs = 1;
    let proxy = Proxy::start(cfg).await;
    let got = get(&client(), &proxy, "/x").await;
    assert_eq!((got.status, got.x_cache()), (504, "MISS"));
    hold.abort();
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_disk_degrades_to_memory_only() {
    let origin = Origin::start().await;
    origin.add("/d", Spec::new(200 * KIB, 21));
    let file = tempfile::NamedTempFile::new().unwrap();
    // The cache directory is a regular file: L2 cannot open.
    let proxy = Proxy::start(config(&origin, file.path(), 64 * KIB)).await;
    let c = client();
    let miss = get(&c, &proxy, "/d").await;
    assert_eq!((miss.status, miss.x_cache()), (200, "MISS"));
    assert_eq!(sha(&miss.body), sha(&object_bytes(21, 0, 200 * KIB)));
    let hit = get(&c, &proxy, "/d").await;
    assert_eq!(
        (hit.x_cache(), sha(&hit.body)),
        ("HIT", sha(&object_bytes(21, 0, 200 * KIB)))
    );
    assert!(
        proxy
            .proxy
            .metrics()
            .render()
            .contains("streaming_proxy_l2_errors_total 1")
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_within_l1_budget_and_evicted_slices_are_refetched() {
    let origin = Origin::start().await;
    let len = 2 * 1024 * KIB;
    origin.add("/m", Spec::new(len, 22));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&origin, dir.path(), 64 * KIB);
    cfg.l1_bytes = 256 * KIB;
    cfg.l2_bytes = 0;
    let proxy = Proxy::start(cfg).await;
    let c = client();
    let want = sha(&object_bytes(22, 0, len));
    let miss = get(&c, &proxy, "/m").await;
    assert_eq!((miss.x_cache(), sha(&miss.body)), ("MISS", want.clone()));
    assert!(proxy.proxy.cache().bytes_held().0 <= 256 * KIB);
    let again = get(&c, &proxy, "/m").await;
    assert_eq!((again.x_cache(), sha(&again.body)), ("PARTIAL", want));
    assert!(proxy.proxy.cache().bytes_held().0 <= 256 * KIB);
    let metrics = proxy.proxy.metrics().render();
    assert!(
        !metrics.contains("streaming_proxy_l1_evictions_total 0"),
        "{metrics}"
    );
    // A sequential pass over an object larger than L1 evicts its own slices (LRU),
    // so each pass fetches each slice once, never more.
    assert_eq!(origin.requests("/m").len(), 64);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_object_missing_its_first_slice_with_origin_down_is_502_not_a_broken_200() {
    let origin = Origin::start().await;
    origin.add("/half", Spec::new(128 * KIB, 23));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&origin, dir.path(), 64 * KIB);
    // Room for the metadata and one slice: the first is evicted by the second.
    cfg.l1_bytes = 68 * KIB;
    cfg.l2_bytes = 0;
    let proxy = Proxy::start(cfg).await;
    let c = client();
    assert_eq!(get(&c, &proxy, "/half").await.x_cache(), "MISS");
    proxy.idle().await;
    // The two slices' fills run concurrently, so either may be the one L1 kept:
    // reading slice 1 again (from L1 or the origin) makes it the one.
    let tail = get_range(&c, &proxy, "/half", "bytes=70000-70009").await;
    assert_eq!(tail.status, 206);
    proxy.idle().await;
    origin.stop();
    let tail = get_range(&c, &proxy, "/half", "bytes=70000-70009").await;
    assert_eq!((tail.status, tail.x_cache()), (206, "HIT"));
    assert_eq!(sha(&tail.body), sha(&object_bytes(23, 70000, 70010)));
    let whole = get(&c, &proxy, "/half").await;
    assert_eq!((whole.status, whole.x_cache()), (502, "MISS"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_failing_at_run_time_degrades_to_memory_only() {
    let (origin, dir, proxy, c) = harness(64 * KIB).await;
    origin.add("/late", Spec::new(100 * KIB, 26));
    // The cache directory turns into a file: every disk write now fails.
    std::fs::remove_dir_all(dir.path()).unwrap();
    std::fs::write(dir.path(), b"not a directory").unwrap();
    let want = sha(&object_bytes(26, 0, 100 * KIB));
    let miss = get(&c, &proxy, "/late").await;
    assert_eq!(
        (miss.status, miss.x_cache(), miss.error),
        (200, "MISS", false)
    );
    assert_eq!(sha(&miss.body), want);
    let hit = get(&c, &proxy, "/late").await;
    assert_eq!((hit.x_cache(), sha(&hit.body)), ("HIT", want));
    assert!(
        !proxy
            .proxy
            .metrics()
            .render()
            .contains("streaming_proxy_l2_errors_total 0")
    );
    std::fs::remove_file(dir.path()).unwrap();
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_budget_evicts_least_recently_used_objects() {
    let origin = Origin::start().await;
    origin.add("/a", Spec::new(100 * KIB, 27));
    origin.add("/b", Spec::new(100 * KIB, 28));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&origin, dir.path(), 64 * KIB);
    cfg.l2_bytes = 150 * KIB;
    cfg.l1_bytes = 64 * KIB;
    let proxy = Proxy::start(cfg).await;
    let c = client();
    assert_eq!(get(&c, &proxy, "/a").await.x_cache(), "MISS");
    proxy.idle().await; // the last piece is stored just after its bytes went out
    assert_eq!(get(&c, &proxy, "/b").await.x_cache(), "MISS");
    proxy.idle().await;
    assert!(proxy.proxy.cache().bytes_held().1 <= 150 * KIB);
    assert_eq!(object_dirs(dir.path()).len(), 1, "/a evicted from disk");
    assert!(
        proxy
            .proxy
            .metrics()
            .render()
            .contains("streaming_proxy_l2_evictions_total 1")
    );
    let a = get(&c, &proxy, "/a").await;
    assert_eq!(
        (a.x_cache(), sha(&a.body)),
        ("MISS", sha(&object_bytes(27, 0, 100 * KIB)))
    );
    proxy.shutdown().await;
}

/// The counter `name` in the proxy's metrics.
fn counter(proxy: &Proxy, name: &str) -> u64 {
    let text = proxy.proxy.metrics().render();
    let line = format!("streaming_proxy_{name}_total ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_object_streamed_through_memory_leaves_small_ones_there() {
    let origin = Origin::start().await;
    let (small, huge) = (128 * KIB, 4 * 1024 * KIB);
    origin.add("/small", Spec::new(small, 31));
    origin.add("/huge", Spec::new(huge, 32));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&origin, dir.path(), 64 * KIB);
    cfg.l1_bytes = 1024 * KIB;
    let proxy = Proxy::start(cfg).await;
    let c = client();
    let small_sha = sha(&object_bytes(31, 0, small));
    assert_eq!(get(&c, &proxy, "/small").await.x_cache(), "MISS");
    proxy.idle().await;
    let hit = get(&c, &proxy, "/small").await;
    assert_eq!((hit.x_cache(), sha(&hit.body)), ("HIT", small_sha.clone()));
    assert_eq!(
        counter(&proxy, "l2_piece_reads"),
        0,
        "both pieces in memory"
    );
    // Four times L1, twice: the miss streams through memory, the hit comes from
    // disk. Neither may push the small object out.
    let huge_sha = sha(&object_bytes(32, 0, huge));
    for want in ["MISS", "HIT"] {
        let got = get(&c, &proxy, "/huge").await;
        assert_eq!((got.x_cache(), sha(&got.body)), (want, huge_sha.clone()));
        proxy.idle().await;
        assert!(proxy.proxy.cache().bytes_held().0 <= 1024 * KIB);
    }
    let from_disk = counter(&proxy, "l2_piece_reads");
    assert!(
        from_disk > 0,
        "the huge object's hit read its pieces from disk"
    );
    let l1_hits = counter(&proxy, "l1_piece_hits");
    let hit = get(&c, &proxy, "/small").await;
    assert_eq!((hit.x_cache(), sha(&hit.body)), ("HIT", small_sha));
    assert_eq!(
        counter(&proxy, "l2_piece_reads"),
        from_disk,
        "small one still in memory"
    );
    assert_eq!(counter(&proxy, "l1_piece_hits"), l1_hits + 2);
    assert_eq!(
        origin.requests("/small").len(),
        2,
        "one fetch per slice, once"
    );
    proxy.shutdown().await;
}

/// A tmpfs of a few MiB mounted on a new temporary directory (unmounted on
/// drop): a disk that fills long before the proxy's `l2_bytes` budget does.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` (the test says it is skipped) where mounting is not permitted.
    fn mount(mib: u64) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => Some(Self { dir }),
            other => {
                eprintln!("SKIPPED: cannot mount a tmpfs here ({other:?}); needs root");
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// ENOSPC used to turn the disk cache off for the life of the process; now the
/// proxy evicts least recently used objects, lowers its disk budget to what the
/// file system holds, and keeps storing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_evicts_and_keeps_storing_instead_of_going_memory_only() {
    let Some(disk) = SmallDisk::mount(4) else {
        return;
    };
    let origin = Origin::start().await;
    const MIB: u64 = 1024 * KIB;
    let objects = 8u8; // 8 MiB through a 4 MiB disk
    for i in 0..objects {
        origin.add(&format!("/o{i}"), Spec::new(MIB, 40 + i));
    }
    let mut cfg = config(&origin, &disk.dir.path().join("cache"), 256 * KIB);
    cfg.l1_bytes = 512 * KIB; // a whole object is a hit only with its pieces on disk
    cfg.l2_bytes = 1024 * MIB; // far above what the file system holds
    let proxy = Proxy::start(cfg).await;
    let c = client();
    for i in 0..objects {
        let path = format!("/o{i}");
        let miss = get(&c, &proxy, &path).await;
        assert_eq!(
            (miss.status, miss.x_cache(), miss.error),
            (200, "MISS", false)
        );
        assert_eq!(
            sha(&miss.body),
            sha(&object_bytes(40 + i, 0, MIB)),
            "{path}"
        );
        proxy.idle().await;
        // Stored, whatever the disk did: the object is a hit right after.
        let hit = get(&c, &proxy, &path).await;
        assert_eq!(
            (hit.x_cache(), sha(&hit.body)),
            ("HIT", sha(&object_bytes(40 + i, 0, MIB))),
            "{path} after the disk filled"
        );
    }
    let (_, on_disk) = proxy.proxy.cache().bytes_held();
    assert!(
        (MIB..=4 * MIB).contains(&on_disk),
        "disk cache holds {on_disk} bytes"
    );
    assert!(
        counter(&proxy, "l2_evictions") >= 1,
        "the disk filled and evicted"
    );
    proxy.shutdown().await;
}
