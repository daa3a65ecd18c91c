//! The protocol matrix: for HTTP/1.1, HTTP/1.1+TLS, h2c, HTTP/2+TLS, HTTP/3, ws and
//! wss, a 64 MiB streamed upload checked by the handler, a 64 MiB streamed response
//! checked by the client, and a response whose first bytes arrive before the handler
//! has finished writing it.

mod support;

use support::client::{self, Conn, Proto};
use support::pattern::{self, MIB64};
use support::{Harness, WAIT, wsclient};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn upload(proto: Proto) {
    let server = Harness::start().await;
    let conn = Conn::connect(proto, &server).await;
    let mut req = client::request("POST", "/sha256", client::streaming(pattern::stream(MIB64)));
    req.headers_mut()
        .insert("x-sha256", pattern::sha256_hex(MIB64).parse().unwrap());
    let resp = timeout(WAIT, conn.send(req)).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(client::text(resp.into_body()).await, format!("ok {MIB64}"));
    server.stop().await;
}

async fn download(proto: Proto) {
    let server = Harness::start().await;
    let conn = Conn::connect(proto, &server).await;
    let req = client::request("GET", &format!("/pattern/{MIB64}"), client::empty());
    let resp = timeout(WAIT, conn.send(req)).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let (n, sha) = timeout(WAIT, client::digest(resp.into_body()))
        .await
        .unwrap();
    assert_eq!(n, MIB64);
    assert_eq!(sha, pattern::sha256_hex(MIB64));
    server.stop().await;
}

async fn first_bytes_early(proto: Proto) {
    let server = Harness::start().await;
    let conn = Conn::connect(proto, &server).await;
    // The handler cannot write "rest" before the gate opens, and `gated` opens it only
    // after "first" arrived here: so "first" was sent while the handler still ran.
    let (body, open) = client::gated(&conn, &server.gates).await;
    open.send(()).unwrap();
    assert_eq!(client::text(body).await, "rest");
    server.stop().await;
}

async fn ws_upload(tls: bool) {
    let server = Harness::start().await;
    let mut ws = wsclient::connect(&server, tls, "/ws/sha256").await;
    let answer = timeout(WAIT, wsclient::upload(&mut ws, MIB64))
        .await
        .unwrap();
    assert_eq!(answer, format!("{} {MIB64}", pattern::sha256_hex(MIB64)));
    let close = wsclient::close_frame(&mut ws).await.expect("close frame");
    assert_eq!(close.code, CloseCode::Normal);
    server.stop().await;
}

async fn ws_download(tls: bool) {
    use sha2::{Digest, Sha256};
    let server = Harness::start().await;
    let mut ws = wsclient::connect(&server, tls, &format!("/ws/pattern/{MIB64}")).await;
    let mut h = Sha256::new();
    let mut n = 0u64;
    let read = async {
        while let Some(msg) = wsclient::next_data(&mut ws).await {
            match msg {
                Message::Binary(data) => {
                    n += data.len() as u64;
                    h.update(&data);
                }
                // Keep reading: the stream ends once our Close reply is flushed.
                Message::Close(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    timeout(WAIT, read).await.unwrap();
    assert_eq!(n, MIB64);
    assert_eq!(hex::encode(h.finalize()), pattern::sha256_hex(MIB64));
    server.stop().await;
}

async fn ws_first_bytes_early(tls: bool) {
    let server = Harness::start().await;
    let (id, open) = server.gates.gate();
    let mut ws = wsclient::connect(&server, tls, &format!("/ws/gated/{id}")).await;
    let first = timeout(WAIT, wsclient::next_data(&mut ws)).await.unwrap();
    assert_eq!(first, Some(Message::text("first")));
    open.send(()).unwrap();
    let rest = timeout(WAIT, wsclient::next_data(&mut ws)).await.unwrap();
    assert_eq!(rest, Some(Message::text("rest")));
    ws.close(None).await.unwrap();
    timeout(WAIT, wsclient::close_frame(&mut ws)).await.unwrap();
    server.stop().await;
}

macro_rules! matrix {
    ($($name:ident => ($upload:ident, $download:ident, $early:ident)($arg:expr)),* $(,)?) => {
        $(
            mod $name {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn upload_64mib_checked_by_handler() {
                    $upload($arg).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn download_64mib_checked_by_client() {
                    $download($arg).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn first_bytes_arrive_before_handler_finishes() {
                    $early($arg).await;
                }
            }
        )*
    };
}

matrix! {
    h1 => (upload, download, first_bytes_early)(Proto::H1),
    h1_tls => (upload, download, first_bytes_early)(Proto::H1Tls),
    h2c => (upload, download, first_bytes_early)(Proto::H2c),
    h2_tls => (upload, download, first_bytes_early)(Proto::H2Tls),
    h3 => (upload, download, first_bytes_early)(Proto::H3),
    ws => (ws_upload, ws_download, ws_first_bytes_early)(false),
    wss => (ws_upload, ws_download, ws_first_bytes_early)(true),
}
