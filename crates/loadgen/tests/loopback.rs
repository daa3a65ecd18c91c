//! Every client against the bare sink over loopback, one case per line.

use loadgen::clients::{Client, UploadOptions};
use loadgen::rate::{self, RateOptions};
use loadgen::sink::{Sink, SinkOptions};
use loadgen::source::Pattern;
use loadgen::{Proto, tcp_baseline};
use sha2::{Digest, Sha256};

const UPLOAD: u64 = 8 << 20;

struct Fixture {
    sink: Sink,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::start(&SinkOptions::loopback(dir.path()))
            .await
            .unwrap();
        Self { sink, _dir: dir }
    }

    /// URL for `proto` over TLS (`tls`) or cleartext, on `path`.
    fn url(&self, proto: Proto, tls: bool, path: &str) -> String {
        let (scheme, addr) = match (proto, tls) {
            (Proto::Ws, true) => ("wss", self.sink.https_addr()),
            (Proto::Ws, false) => ("ws", self.sink.http_addr()),
            (_, true) => ("https", self.sink.https_addr()),
            (_, false) => ("http", self.sink.http_addr()),
        };
        format!("{scheme}://{addr}{path}")
    }

    fn client(&self, proto: Proto, tls: bool, path: &str) -> Client {
        let url = self.url(proto, tls, path);
        Client::new(proto, &url, Some(&self.sink.cert().cert)).unwrap()
    }
}

/// The path of the counting endpoint for `proto`.
fn sink_path(proto: Proto) -> &'static str {
    if proto == Proto::Ws {
        "/ws"
    } else {
        "/discard"
    }
}

fn sha256_of_pattern(bytes: u64, chunk: usize) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for piece in Pattern::new(chunk).chunks(bytes) {
        hasher.update(&piece);
    }
    hasher.finalize().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_uploads_into_discard_and_is_counted() {
    let fx = Fixture::start().await;
    let cases = [
        (Proto::H1, true, "/discard"),
        (Proto::H1Chunked, true, "/discard"),
        (Proto::H2, true, "/discard"),
        (Proto::H3, true, "/discard"),
        (Proto::Ws, true, "/ws"),
        (Proto::H1, false, "/discard/plain"),
        (Proto::H1Chunked, false, "/discard"),
        (Proto::H2, false, "/discard"),
        (Proto::Ws, false, "/ws/plain"),
    ];
    let options = UploadOptions {
        bytes: UPLOAD,
        ..UploadOptions::default()
    };
    for (proto, tls, path) in cases {
        let result = fx.client(proto, tls, path).upload(&options).await;
        let result = result.unwrap_or_else(|e| panic!("{proto} tls={tls}: {e}"));
        assert_eq!(result.reported_count(), Some(UPLOAD), "{proto} tls={tls}");
        result.expect_counted().unwrap();
        if proto == Proto::Ws {
            assert_eq!(result.close_code, Some(1000));
        } else {
            assert_eq!(result.status, 200, "{proto} tls={tls}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_returns_the_same_bytes() {
    let fx = Fixture::start().await;
    // A chunk size that is not a multiple of the pattern period or of any window.
    let chunk = 100_003;
    let expected = sha256_of_pattern(UPLOAD, chunk);
    let options = UploadOptions {
        bytes: UPLOAD,
        chunk,
        keep_body: UPLOAD as usize,
    };
    let cases = [
        (Proto::H1, true),
        (Proto::H1Chunked, false),
        (Proto::H2, true),
        (Proto::H2, false),
        (Proto::H3, true),
    ];
    for (proto, tls) in cases {
        let client = fx.client(proto, tls, "/echo");
        let result = client
            .upload(&options)
            .await
            .unwrap_or_else(|e| panic!("{proto}: {e}"));
        assert_eq!(result.status, 200, "{proto}");
        assert_eq!(result.received, UPLOAD, "{proto}");
        assert_eq!(
            Sha256::digest(&result.body).to_vec(),
            expected,
            "{proto} tls={tls}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplexed_uploads_exceed_every_window_in_both_directions() {
    // 20 MiB per stream is more than the 16 MiB stream window, and two
    // streams more than the 32 MiB connection window.
    let bytes: u64 = 20 << 20;
    let fx = Fixture::start().await;
    let expected = sha256_of_pattern(bytes, UploadOptions::default().chunk);
    for (proto, tls) in [(Proto::H2, true), (Proto::H2, false), (Proto::H3, true)] {
        let counted = UploadOptions {
            bytes,
            ..UploadOptions::default()
        };
        let mut conn = fx.client(proto, tls, "/discard").connect().await.unwrap();
        let results = conn.upload_concurrent(2, &counted).await.unwrap();
        assert_eq!(results.len(), 2);
        for result in &results {
            result.expect_counted().unwrap();
        }
        let echoed = UploadOptions {
            keep_body: bytes as usize,
            ..counted
        };
        let mut conn = fx.client(proto, tls, "/echo").connect().await.unwrap();
        for result in conn.upload_concurrent(2, &echoed).await.unwrap() {
            assert_eq!(result.received, bytes, "{proto} tls={tls}");
            assert_eq!(
                Sha256::digest(&result.body).to_vec(),
                expected,
                "{proto} tls={tls}"
            );
        }
    }
    let mut h1 = fx
        .client(Proto::H1, true, "/discard")
        .connect()
        .await
        .unwrap();
    assert!(
        h1.upload_concurrent(2, &UploadOptions::default())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_carries_several_uploads() {
    let fx = Fixture::start().await;
    let options = UploadOptions {
        bytes: 1 << 20,
        ..UploadOptions::default()
    };
    for proto in Proto::ALL {
        let path = sink_path(proto);
        let mut conn = fx.client(proto, true, path).connect().await.unwrap();
        for _ in 0..3 {
            conn.upload(&options)
                .await
                .unwrap()
                .expect_counted()
                .unwrap();
        }
        let small = conn.request(10).await.unwrap();
        assert_eq!(small.reported_count(), Some(10), "{proto}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_driver_counts_every_request() {
    let fx = Fixture::start().await;
    for proto in Proto::ALL {
        let path = sink_path(proto);
        let client = fx.client(proto, true, path);
        let options = RateOptions {
            conns: 8,
            requests: 300,
            ..RateOptions::default()
        };
        let report = rate::run(&client, &options).await.unwrap();
        assert_eq!(
            (report.ok, report.errors),
            (300, 0),
            "{proto}: {:?}",
            report.first_error
        );
        assert!(
            report.p50 <= report.p99 && report.p99 <= report.max,
            "{proto}"
        );
        assert!(report.per_sec() > 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_driver_stops_at_its_time_limit() {
    let fx = Fixture::start().await;
    let client = fx.client(Proto::H1, false, "/discard");
    let options = RateOptions {
        conns: 2,
        requests: u64::MAX,
        duration: Some(std::time::Duration::from_millis(200)),
        ..RateOptions::default()
    };
    let report = rate::run(&client, &options).await.unwrap();
    assert!(report.ok > 0, "{:?}", report.first_error);
    assert_eq!(report.errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_failures_are_counted_not_hidden() {
    let fx = Fixture::start().await;
    let client = fx.client(Proto::H2, true, "/nowhere");
    let options = RateOptions {
        conns: 2,
        requests: 20,
        ..RateOptions::default()
    };
    let report = rate::run(&client, &options).await.unwrap();
    assert_eq!((report.ok, report.errors), (0, 20));
    assert!(report.first_error.unwrap().contains("404"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_an_error_not_a_panic() {
    let fx = Fixture::start().await;
    let options = UploadOptions {
        bytes: 1000,
        ..UploadOptions::default()
    };
    // Unknown path: answered, but not counted.
    let result = fx
        .client(Proto::H1, true, "/nowhere")
        .upload(&options)
        .await
        .unwrap();
    assert_eq!(result.status, 404);
    assert!(result.expect_counted().is_err());
    // TLS without a CA, and a CA that did not sign the sink's certificate.
    let url = fx.url(Proto::H2, true, "/discard");
    assert!(Client::new(Proto::H2, &url, None).is_err());
    let other = tempfile::tempdir().unwrap();
    let stranger = loadgen::tls::ensure_self_signed(other.path()).unwrap();
    for proto in [Proto::H2, Proto::H3, Proto::Ws] {
        let url = fx.url(proto, true, sink_path(proto));
        let client = Client::new(proto, &url, Some(&stranger.cert)).unwrap();
        assert!(
            client.upload(&options).await.is_err(),
            "{proto} trusted a stranger"
        );
    }
    // A CA file that is not PEM.
    let junk = other.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    assert!(Client::new(Proto::H1, &url, Some(&junk)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_baselines_move_every_byte() {
    for measured in [
        tcp_baseline::tcp(UPLOAD).await,
        tcp_baseline::tls(UPLOAD).await,
    ] {
        let measured = measured.unwrap();
        assert_eq!(measured.bytes, UPLOAD);
        assert!(measured.mib_per_sec() > 0.0);
    }
}

/// A rate run from one address went over the ingress's per-client stream limit
/// (429s in the bench): `with_sources` makes each connection bind to the next
/// source address in turn, so the server sees several clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_take_their_source_addresses_in_turn() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let sources: Vec<std::net::IpAddr> = vec![[127, 0, 0, 2].into(), [127, 0, 0, 3].into()];
    let client = Client::new(Proto::H1, &url, None)
        .unwrap()
        .with_sources(sources.clone());
    let accept = tokio::spawn(async move {
        let mut peers = Vec::new();
        let mut held = Vec::new();
        for _ in 0..3 {
            let (stream, peer) = listener.accept().await.unwrap();
            peers.push(peer.ip());
            held.push(stream);
        }
        peers
    });
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(client.connect().await.unwrap());
    }
    assert_eq!(accept.await.unwrap(), [sources[0], sources[1], sources[0]]);
}
