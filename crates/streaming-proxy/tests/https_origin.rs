//! An `https://` origin: TLS with the system's roots plus `upstream_ca`, HTTP/2 or
//! HTTP/1.1 picked by ALPN, certificate failures as `502`, and an unusable
//! `upstream_ca` refused at start-up. The origin is the support one behind rustls
//! with a fresh self-signed certificate for `localhost` and `127.0.0.1`.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use streaming_proxy::{ProxyConfig, StreamingProxy};
use support::*;

const KIB: u64 = 1024;

fn expect(seed: u8, start: u64, end: u64) -> String {
    sha(&object_bytes(seed, start, end))
}

/// The support config towards `origin`, trusting its certificate.
fn trusting(origin: &Origin, dir: &std::path::Path) -> ProxyConfig {
    ProxyConfig {
        upstream_ca: origin.ca_file.clone(),
        ..config(origin, dir, 64 * KIB)
    }
}

fn alpn(names: &[&str]) -> Vec<Option<String>> {
    names.iter().map(|n| Some(n.to_string())).collect()
}

/// Warnings logged by every test of this binary (fills log from their own tasks,
/// so a thread-local subscriber would miss them).
static WARNINGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct WarningSink;

impl std::io::Write for WarningSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        WARNINGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts collecting warnings (once per process); returns the lines logged so far.
fn warnings() -> Vec<String> {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(|| WarningSink)
            .try_init();
    });
    String::from_utf8_lossy(&WARNINGS.lock().unwrap())
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The warning about a failed origin request for `path`, which must say `why`.
fn assert_warned(path: &str, why: &str) {
    let lines = warnings();
    let line = lines
        .iter()
        .find(|l| l.contains("origin request failed") && l.contains(&format!("path={path} ")))
        .unwrap_or_else(|| panic!("no warning for {path} in {lines:#?}"));
    assert!(line.contains(" WARN "), "{line}");
    assert!(
        line.contains(why),
        "warning for {path} says {why:?}: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_then_hit_over_https_h2_on_one_connection() {
    let origin = Origin::start_tls(&[H2, HTTP11]).await;
    assert!(origin.url().starts_with("https://127.0.0.1:"));
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(trusting(&origin, dir.path())).await;
    let c = client();
    let objects = [
        ("/big", 300 * KIB, 41),
        ("/small", KIB, 42),
        ("/one", 64 * KIB, 43),
    ];
    for (path, len, seed) in objects {
        origin.add(path, Spec::new(len, seed));
    }
    for (path, len, seed) in objects {
        let want = object_sha(seed, len);
        let miss = get_hashed(&c, &proxy, path).await;
        assert_eq!(
            miss,
            (200, "MISS".into(), want.clone(), len, false),
            "{path}"
        );
        let hit = get_hashed(&c, &proxy, path).await;
        assert_eq!(hit, (200, "HIT".into(), want, len, false), "{path}");
    }
    // A cold range across three slices, then the same range and a wider one warm.
    origin.add("/ranged", Spec::new(256 * KIB, 44));
    let cold = get_range(&c, &proxy, "/ranged", "bytes=60000-140000").await;
    assert_eq!((cold.status, cold.x_cache()), (206, "MISS"));
    assert_eq!(
        cold.header("content-range"),
        format!("bytes 60000-140000/{}", 256 * KIB)
    );
    assert_eq!(sha(&cold.body), expect(44, 60000, 140001));
    proxy.idle().await;
    let warm = get_range(&c, &proxy, "/ranged", "bytes=60000-140000").await;
    assert_eq!((warm.status, warm.x_cache()), (206, "HIT"));
    assert_eq!(sha(&warm.body), expect(44, 60000, 140001));
    let wider = get_range(&c, &proxy, "/ranged", "bytes=1000-200000").await;
    assert_eq!((wider.status, wider.x_cache()), (206, "PARTIAL"));
    assert_eq!(sha(&wider.body), expect(44, 1000, 200001));

    let fetches: usize = ["/big", "/small", "/one", "/ranged"]
        .iter()
        .map(|p| origin.requests(p).len())
        .sum();
    assert_eq!(
        fetches,
        5 + 1 + 1 + 4,
        "one origin request per 64 KiB slice"
    );
    assert_eq!(origin.alpn(), alpn(&[H2]), "h2 chosen by ALPN");
    assert_eq!(origin.connections(), 1, "one multiplexed HTTP/2 connection");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_outcome_by_origin_offer_and_upstream_http2() {
    // (origin offers, upstream_http2, protocol negotiated; None: no handshake).
    let cases: [(&[&str], bool, Option<&str>); 4] = [
        (&[H2, HTTP11], false, Some(H2)),
        (&[HTTP11], false, Some(HTTP11)),
        (&[H2, HTTP11], true, Some(H2)),
        // The proxy offers only h2: no protocol in common, the handshake fails.
        (&[HTTP11], true, None),
    ];
    for (offers, h2, negotiated) in cases {
        let what = format!("origin offers {offers:?}, upstream_http2 = {h2}");
        let origin = Origin::start_tls(offers).await;
        let len = 200 * KIB;
        origin.add("/obj", Spec::new(len, 45));
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = trusting(&origin, dir.path());
        cfg.upstream_http2 = h2;
        let proxy = Proxy::start(cfg).await;
        let c = client();
        let want = object_sha(45, len);
        let miss = get_hashed(&c, &proxy, "/obj").await;
        match negotiated {
            Some(protocol) => {
                assert_eq!(
                    miss,
                    (200, "MISS".into(), want.clone(), len, false),
                    "{what}"
                );
                let hit = get_hashed(&c, &proxy, "/obj").await;
                assert_eq!(hit, (200, "HIT".into(), want, len, false), "{what}");
                let seen = origin.alpn();
                assert!(!seen.is_empty(), "{what}");
                assert!(
                    seen.iter().all(|a| a.as_deref() == Some(protocol)),
                    "{what}: {seen:?}"
                );
                assert_eq!(origin.requests("/obj").len(), 4, "{what}: one per slice");
            }
            None => {
                assert_eq!((miss.0, miss.1.as_str()), (502, "MISS"), "{what}");
                assert!(origin.alpn().is_empty(), "{what}: no handshake completed");
                assert!(origin.requests("/obj").is_empty(), "{what}");
            }
        }
        proxy.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_or_misnamed_certificate_is_502_and_proxy_keeps_serving() {
    let origin = Origin::start_tls(&[H2, HTTP11]).await;
    origin.add("/stored", Spec::new(100 * KIB, 46));
    origin.add("/cold-untrusted", Spec::new(10 * KIB, 47));
    warnings();
    let dir = tempfile::tempdir().unwrap();
    // Fill the disk cache through a proxy that trusts the origin.
    let trusted = Proxy::start(trusting(&origin, dir.path())).await;
    let c = client();
    let want = object_sha(46, 100 * KIB);
    let miss = get_hashed(&c, &trusted, "/stored").await;
    assert_eq!(miss, (200, "MISS".into(), want.clone(), 100 * KIB, false));
    trusted.idle().await;
    trusted.shutdown().await;

    // Same cache, system roots only: the self-signed certificate is not trusted.
    let untrusted = Proxy::start(config(&origin, dir.path(), 64 * KIB)).await;
    for _ in 0..2 {
        let cold = get(&c, &untrusted, "/cold-untrusted").await;
        assert_eq!((cold.status, cold.x_cache()), (502, "MISS"));
        let hit = get_hashed(&c, &untrusted, "/stored").await;
        assert_eq!(hit, (200, "HIT".into(), want.clone(), 100 * KIB, false));
    }
    let range = get_range(&c, &untrusted, "/stored", "bytes=65000-66000").await;
    assert_eq!((range.status, range.x_cache()), (206, "HIT"));
    assert_eq!(sha(&range.body), expect(46, 65000, 66001));
    assert!(
        origin.requests("/cold-untrusted").is_empty(),
        "no request after a failed handshake"
    );
    assert_warned("/cold-untrusted", "invalid peer certificate: UnknownIssuer");
    untrusted.shutdown().await;

    // Trusted CA, but the certificate names another host than the URL's.
    let elsewhere = Origin::start_tls_for(&["origin.invalid"], &[H2, HTTP11]).await;
    elsewhere.add("/cold-misnamed", Spec::new(10 * KIB, 47));
    let dir = tempfile::tempdir().unwrap();
    let misnamed = Proxy::start(trusting(&elsewhere, dir.path())).await;
    let cold = get(&c, &misnamed, "/cold-misnamed").await;
    assert_eq!((cold.status, cold.x_cache()), (502, "MISS"));
    assert!(elsewhere.requests("/cold-misnamed").is_empty());
    assert_warned("/cold-misnamed", "certificate not valid for name");
    misnamed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_upstream_ca_stops_start_up() {
    let origin = Origin::start_tls(&[H2, HTTP11]).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let with_ca = |ca: std::path::PathBuf| ProxyConfig {
        upstream_ca: Some(ca),
        ..config(&origin, &cache, 64 * KIB)
    };
    let missing = dir.path().join("missing.pem");
    let err = StreamingProxy::new(with_ca(missing))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("upstream_ca") && err.contains("missing.pem"),
        "{err}"
    );
    assert!(err.contains("cannot read"), "{err}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let err = StreamingProxy::new(with_ca(empty)).unwrap_err().to_string();
    assert!(err.contains("no certificate"), "{err}");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = StreamingProxy::new(with_ca(garbage))
        .unwrap_err()
        .to_string();
    assert!(err.contains("garbage.pem"), "{err}");
    assert!(!cache.exists(), "nothing opened before the CA was checked");
    // A CA for a cleartext origin would never be used: refused too.
    let cleartext = ProxyConfig {
        upstream: "http://127.0.0.1:9".into(),
        ..with_ca(origin.ca_file.clone().unwrap())
    };
    let err = StreamingProxy::new(cleartext).unwrap_err().to_string();
    assert!(err.contains("not https://"), "{err}");
    // And the good file works.
    assert!(StreamingProxy::new(with_ca(origin.ca_file.clone().unwrap())).is_ok());
}

/// `--upstream-ca` on the binary: an unusable file is a start-up error on stderr;
/// the flag overrides a `--config` file's `upstream_ca`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_upstream_ca_flag() {
    let origin = Origin::start_tls(&[H2, HTTP11]).await;
    origin.add("/obj", Spec::new(5 * KIB, 48));
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_streaming-proxy");
    let cache = dir.path().join("cache");
    let common = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "--upstream",
            &origin.url(),
            "--listen",
            "127.0.0.1:0",
            "--cache-dir",
            cache.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let missing = dir.path().join("missing.pem");
    let out = Command::new(bin)
        .args(common(&["--upstream-ca", missing.to_str().unwrap()]))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("upstream_ca") && stderr.contains("missing.pem"),
        "{stderr}"
    );

    let file = dir.path().join("proxy.toml");
    std::fs::write(
        &file,
        format!("upstream_ca = {:?}\n", missing.to_str().unwrap()),
    )
    .unwrap();
    let ca = origin.ca_file.clone().unwrap();
    let mut child = Command::new(bin)
        .args(common(&[
            "--config",
            file.to_str().unwrap(),
            "--upstream-ca",
            ca.to_str().unwrap(),
        ]))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let ready = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    let Some(addr) = ready.trim().strip_prefix("READY http=").map(str::to_owned) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no READY line: {ready:?}");
    };
    let c = client();
    let miss = request(&c, "GET", format!("http://{addr}/obj"), None).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((miss.status, miss.x_cache()), (200, "MISS"));
    assert_eq!(sha(&miss.body), expect(48, 0, 5 * KIB));
}
