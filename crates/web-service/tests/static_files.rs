//! The directory handler: content types, ETag, Last-Modified, conditional GET, ranges.

mod support;

use std::path::PathBuf;

use http::header::{
    CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, RANGE,
};
use support::client::{self, Conn, Proto};
use support::{Gates, Harness, test_config};
use web_service::StaticFiles;

fn site() -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello, static world\n").unwrap();
    std::fs::write(dir.join("index.html"), "<h1>index</h1>").unwrap();
    let big: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("big.bin"), big).unwrap();
    dir
}

async fn get(
    conn: &Conn,
    path: &str,
    headers: &[(http::HeaderName, &str)],
) -> (http::StatusCode, http::HeaderMap, Vec<u8>) {
    let mut req = client::request("GET", path, client::empty());
    for (name, value) in headers {
        req.headers_mut()
            .insert(name.clone(), value.parse().unwrap());
    }
    let resp = conn.send(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let data: Vec<bytes::Bytes> = futures_util::TryStreamExt::try_collect(body).await.unwrap();
    (parts.status, parts.headers, data.concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_validators_conditionals_and_ranges() {
    let dir = site();
    let server = Harness::serve(test_config(), StaticFiles::new(&dir), Gates::default()).await;
    for proto in [Proto::H1, Proto::H3] {
        let conn = Conn::connect(proto, &server).await;
        let (status, headers, body) = get(&conn, "/hello.txt", &[]).await;
        assert_eq!(status, 200);
        assert_eq!(body, b"hello, static world\n");
        assert!(
            headers[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let etag = headers[ETAG].to_str().unwrap().to_owned();
        let modified = headers[LAST_MODIFIED].to_str().unwrap().to_owned();

        let (status, headers, body) = get(&conn, "/hello.txt", &[(IF_NONE_MATCH, &etag)]).await;
        assert_eq!((status, body.len()), (http::StatusCode::NOT_MODIFIED, 0));
        assert_eq!(headers[ETAG].to_str().unwrap(), etag);
        let (status, _, _) = get(&conn, "/hello.txt", &[(IF_NONE_MATCH, "\"other\"")]).await;
        assert_eq!(status, 200);
        // If-None-Match wins over a matching If-Modified-Since.
        let (status, _, _) = get(
            &conn,
            "/hello.txt",
            &[(IF_NONE_MATCH, "\"other\""), (IF_MODIFIED_SINCE, &modified)],
        )
        .await;
        assert_eq!(status, 200);
        let (status, _, _) = get(&conn, "/hello.txt", &[(IF_MODIFIED_SINCE, &modified)]).await;
        assert_eq!(status, 304);

        let (status, headers, body) = get(&conn, "/hello.txt", &[(RANGE, "bytes=0-4")]).await;
        assert_eq!(
            (status, body.as_slice()),
            (http::StatusCode::PARTIAL_CONTENT, &b"hello"[..])
        );
        assert_eq!(headers[CONTENT_RANGE], "bytes 0-4/20");
        assert_eq!(
            headers[ETAG].to_str().unwrap(),
            etag,
            "a range has the file's validator"
        );
        let (status, _, _) = get(&conn, "/hello.txt", &[(RANGE, "bytes=100-200")]).await;
        assert_eq!(status, http::StatusCode::RANGE_NOT_SATISFIABLE);

        let (status, headers, body) = get(&conn, "/", &[]).await;
        assert_eq!(
            (status, body.as_slice()),
            (http::StatusCode::OK, &b"<h1>index</h1>"[..])
        );
        assert!(
            headers[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let (status, _, _) = get(&conn, "/missing.txt", &[]).await;
        assert_eq!(status, 404);
        let (status, _, _) = get(&conn, "/../Cargo.toml", &[]).await;
        assert_eq!(status, 404, "no escape from the directory");

        let (status, _, body) = get(&conn, "/big.bin", &[]).await;
        assert_eq!(status, 200);
        assert_eq!(body, std::fs::read(dir.join("big.bin")).unwrap());
    }
    server.stop().await;
}
