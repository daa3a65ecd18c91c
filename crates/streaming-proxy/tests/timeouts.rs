//! Idle timeouts (short values here; the defaults are checked in `config.rs`): a
//! trickling origin ends its fill and its readers' bodies with an error, and a
//! client that takes nothing is dropped instead of holding a fill others need.

mod support;

use std::time::Duration;

use support::*;

const KIB: u64 = 1024;
/// Far beyond every wait below: a test that needed it would have hung.
const BOUND: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_origin_ends_the_fill_and_pass_through_by_body_idle_timeout() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&origin, dir.path(), 64 * KIB);
    config.upstream_body_idle_secs = 1;
    let proxy = Proxy::start(config).await;
    // The head comes at once, the first body byte after 300 s.
    origin.add("/trickle", Spec::new(256 * KIB, 1).delay_ms(300_000));
    let c = client();
    for method in ["GET", "POST"] {
        let url = format!("http://{}/trickle", proxy.addr);
        let got = tokio::time::timeout(BOUND, request(&c, method, url, None))
            .await
            .expect("ended by the body-idle timeout, not by the origin");
        assert_eq!(got.status, 200, "{method}");
        assert!(
            got.error,
            "{method}: an error end, never a clean short body"
        );
        assert!(got.body.is_empty(), "{method}");
    }
    // The failed fill left the table: the next request asks the origin again.
    origin.update("/trickle", |s| s.chunk_delay = Duration::ZERO);
    let again = get(&c, &proxy, "/trickle").await;
    assert_eq!((again.status, again.error), (200, false));
    assert_eq!(sha(&again.body), sha(&object_bytes(1, 0, 256 * KIB)));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_dropped_and_does_not_hold_a_whole_object_fill() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&origin, dir.path(), 64 * KIB);
    config.client_write_idle_secs = 1;
    let proxy = Proxy::start(config).await;
    let len = 32 * 1024 * KIB;
    // Without ranges one fill streams the whole object through a ring of about one
    // slice: a reader that stops is lapped, never holds the fill back.
    origin.add("/big", Spec::new(len, 2).no_ranges());
    let c = client();
    let url = format!("http://{}/big", proxy.addr);
    let (_, mut silent) = read_first_frame(&c, &url).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _, hash, got_len, error) =
        tokio::time::timeout(BOUND, get_hashed(&c, &proxy, "/big"))
            .await
            .expect("a silent client must not stall another one");
    assert_eq!((status, got_len, error), (200, len, false));
    assert_eq!(hash, object_sha(2, len));
    // Past `client_write_idle_secs` of taking nothing, the silent client lost its
    // response: what it reads now ends in an error before the object's end.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    use http_body_util::BodyExt;
    let mut read = 0u64;
    let mut failed = false;
    while let Some(frame) = tokio::time::timeout(BOUND, silent.frame()).await.unwrap() {
        match frame {
            Ok(f) => read += f.into_data().map_or(0, |d| d.len() as u64),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed && read < len, "dropped: read {read} of {len}");
    proxy.shutdown().await;
}
