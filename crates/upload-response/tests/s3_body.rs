//! S3 uploads at the ingress (docs/s3.md): `aws-chunked` bodies reach
//! workers decoded, with a head that describes the decoded bytes; checksums
//! are verified as the bytes pass, and a mismatch aborts the stream (the
//! worker sees `Aborted`) while the client gets `400 BadDigest`. Service
//! defaults throughout.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use sha2::{Digest, Sha256};
use upload_response::{Route, TailError, UploadResponseConfig, UploadResponseService};

const SIG: &str = "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648";

/// What the worker saw of one request.
#[derive(Debug)]
struct Seen {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    outcome: Result<(), TailError>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `req` through a default service whose worker reads the whole body
/// and answers 200 with the body's sha256; returns the client's status and
/// body, and what the worker saw.
async fn send(req: Request<Full<Bytes>>) -> (StatusCode, String, Option<Seen>) {
    send_expecting(req, true).await
}

/// [`send`], for a request the worker may never get (`expect_job` false:
/// refused from its head alone).
async fn send_expecting(
    req: Request<Full<Bytes>>,
    expect_job: bool,
) -> (StatusCode, String, Option<Seen>) {
    let service = UploadResponseService::new(UploadResponseConfig::default()).unwrap();
    let worker = service.worker("s3", Route::prefix("/"));
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut job = worker.next_job().await;
        let headers = job
            .head()
            .headers
            .iter()
            .map(|h| {
                (
                    String::from_utf8_lossy(h.name()).into_owned(),
                    String::from_utf8_lossy(h.value()).into_owned(),
                )
            })
            .collect();
        let mut body = job.body();
        let mut bytes = Vec::new();
        let mut outcome = Ok(());
        while let Some(chunk) = body.chunk().await {
            match chunk {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        let ok = outcome.is_ok();
        let digest = hex::encode(Sha256::digest(&bytes));
        let _ = seen_tx.send(Seen {
            headers,
            body: bytes,
            outcome,
        });
        if ok {
            let mut out = job
                .respond(StatusCode::OK, &HeaderMap::new())
                .await
                .unwrap();
            out.send(Bytes::from(digest)).await.unwrap();
            out.finish().await.unwrap();
        }
    });
    // The worker waits for a job before the request comes: the body is
    // pumped in the request's own task, so a body that fails its checks
    // within the first poll fails before any worker could take it, and a
    // request that fails unclaimed is never offered.
    tokio::task::yield_now().await;
    let res = service.handle(req).await;
    let status = res.status();
    let body = res.into_body().collect().await.map(|b| b.to_bytes());
    let text = body.map_or_else(
        |e| format!("<body failed: {e}>"),
        |b| String::from_utf8_lossy(&b).into_owned(),
    );
    if !expect_job {
        assert_eq!(service.in_flight(), 0);
        task.abort();
    }
    let seen = seen_rx.await.ok();
    assert_eq!(seen.is_some(), expect_job);
    let _ = task.await;
    assert_eq!(service.in_flight(), 0, "streams left in flight");
    (status, text, seen)
}

fn put(body: BytesMut, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::put("/bucket/key");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Full::new(body.freeze())).unwrap()
}

/// `data` as aws-chunked, in `chunk`-byte chunks.
fn chunked(data: &[u8], chunk: usize, sig: Option<&str>, trailers: &[(&str, &str)]) -> BytesMut {
    let mut out = BytesMut::new();
    for piece in data.chunks(chunk) {
        http_pack::encode_chunk(&mut out, piece, sig);
    }
    http_pack::encode_final_chunk(&mut out, sig, trailers);
    out
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn crc32(bytes: &[u8]) -> String {
    b64(&crc32fast::hash(bytes).to_be_bytes())
}

#[tokio::test]
async fn unsigned_trailer_body_reaches_the_worker_decoded_with_a_head_describing_it() {
    let payload = data(300_000);
    let len = payload.len().to_string();
    let body = chunked(
        &payload,
        65536,
        None,
        &[("x-amz-checksum-crc32", &crc32(&payload))],
    );
    let encoded = body.len().to_string();
    let (status, text, seen) = send(put(
        body,
        &[
            ("content-encoding", "aws-chunked"),
            ("content-length", &encoded),
            ("x-amz-decoded-content-length", &len),
            ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
            ("x-amz-trailer", "x-amz-checksum-crc32"),
        ],
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(text, hex::encode(Sha256::digest(&payload)));
    let seen = seen.unwrap();
    assert_eq!(seen.body, payload);
    assert_eq!(seen.header("content-length"), Some(len.as_str()));
    assert_eq!(seen.header("content-encoding"), None);
    assert_eq!(
        seen.header("x-amz-content-sha256"),
        Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    );
}

#[tokio::test]
async fn signed_bodies_with_and_without_trailer_decode_and_keep_other_encodings() {
    let payload = data(70_000);
    let len = payload.len().to_string();
    let sha = b64(&Sha256::digest(&payload));
    for (mode, trailers) in [
        ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", vec![]),
        (
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
            vec![
                ("x-amz-checksum-sha256", sha.as_str()),
                ("x-amz-trailer-signature", SIG),
            ],
        ),
    ] {
        let mut headers = vec![
            ("content-encoding", "aws-chunked, gzip"),
            ("x-amz-decoded-content-length", len.as_str()),
            ("x-amz-content-sha256", mode),
        ];
        if !trailers.is_empty() {
            headers.push(("x-amz-trailer", "x-amz-checksum-sha256"));
        }
        let (status, text, seen) =
            send(put(chunked(&payload, 8192, Some(SIG), &trailers), &headers)).await;
        assert_eq!(status, StatusCode::OK, "{mode}: {text}");
        let seen = seen.unwrap();
        assert_eq!(seen.body, payload, "{mode}");
        assert_eq!(seen.header("content-encoding"), Some("gzip"), "{mode}");
    }
}

#[tokio::test]
async fn every_checksum_algorithm_is_verified_in_a_trailer_and_in_a_header() {
    let payload = data(100_000);
    let len = payload.len().to_string();
    let crc64 = crc::Crc::<u64>::new(&crc::CRC_64_NVME).checksum(&payload);
    let values = [
        ("x-amz-checksum-crc32", crc32(&payload)),
        (
            "x-amz-checksum-crc32c",
            b64(&crc32c::crc32c(&payload).to_be_bytes()),
        ),
        ("x-amz-checksum-crc64nvme", b64(&crc64.to_be_bytes())),
        ("x-amz-checksum-sha1", b64(&sha1::Sha1::digest(&payload))),
        ("x-amz-checksum-sha256", b64(&Sha256::digest(&payload))),
    ];
    // A valid digest of the wrong bytes, per algorithm.
    let wrong: Vec<String> = values
        .iter()
        .map(|(_, v)| {
            let mut bytes =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v).unwrap();
            bytes[0] ^= 1;
            b64(&bytes)
        })
        .collect();
    for ((name, good), bad) in values.iter().zip(&wrong) {
        for (value, ok) in [(good, true), (bad, false)] {
            let trailer = [(*name, value.as_str())];
            let headers = [
                ("content-encoding", "aws-chunked"),
                ("x-amz-decoded-content-length", len.as_str()),
                ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
                ("x-amz-trailer", name),
            ];
            let (status, text, seen) =
                send(put(chunked(&payload, 65536, None, &trailer), &headers)).await;
            check(ok, name, status, &text, seen);
            // The same checksum as a header of a plain body.
            let plain = BytesMut::from(&payload[..]);
            let (status, text, seen) = send(put(plain, &[(name, value.as_str())])).await;
            check(ok, name, status, &text, seen);
        }
    }
}

fn check(ok: bool, name: &str, status: StatusCode, text: &str, seen: Option<Seen>) {
    let seen = seen.unwrap();
    if ok {
        assert_eq!(status, StatusCode::OK, "{name}: {text}");
        assert_eq!(seen.outcome, Ok(()), "{name}");
    } else {
        assert_bad_digest(status, text, &seen);
    }
}

fn assert_bad_digest(status: StatusCode, text: &str, seen: &Seen) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("<Code>BadDigest</Code>"), "{text}");
    assert!(
        matches!(seen.outcome, Err(TailError::Aborted(_))),
        "the worker must see an abort, not an end: {:?}",
        seen.outcome
    );
}

#[tokio::test]
async fn wrong_content_md5_is_bad_digest_and_aborts_the_worker() {
    let payload = data(200_000);
    let mut md5 = b64(&md5::Md5::digest(&payload));
    let (status, text, seen) =
        send(put(BytesMut::from(&payload[..]), &[("content-md5", &md5)])).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(seen.unwrap().body, payload);
    md5.replace_range(0..1, if md5.starts_with('A') { "B" } else { "A" });
    let (status, text, seen) =
        send(put(BytesMut::from(&payload[..]), &[("content-md5", &md5)])).await;
    assert_bad_digest(status, &text, &seen.unwrap());
}

/// Request header fields of a case.
type Headers = Vec<(&'static str, &'static str)>;

#[tokio::test]
async fn malformed_framing_and_wrong_lengths_are_400_with_an_s3_code() {
    let aws = |len: &'static str| {
        vec![
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", len),
            ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
        ]
    };
    // (body, headers, S3 code, whether a worker gets the request at all)
    let cases: Vec<(&[u8], Headers, &str, bool)> = vec![
        (
            b"zz\r\nhello\r\n0\r\n\r\n",
            aws("5"),
            "InvalidRequest",
            true,
        ),
        (b"5\r\nhelloXX0\r\n\r\n", aws("5"), "InvalidRequest", true),
        (b"5\r\nhello\r\n", aws("5"), "InvalidRequest", true),
        (b"5\r\nhello\r\n0\r\n\r\n", aws("6"), "IncompleteBody", true),
        (
            b"5\r\nhello\r\n0\r\n\r\n",
            aws("five"),
            "InvalidRequest",
            false,
        ),
        (
            b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n",
            aws("5"),
            "InvalidRequest",
            true,
        ),
        (
            b"hello",
            vec![("content-md5", "not base64!")],
            "InvalidDigest",
            false,
        ),
    ];
    for (body, headers, code, reaches_worker) in cases {
        let (status, text, seen) =
            send_expecting(put(BytesMut::from(body), &headers), reaches_worker).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{code}: {text}");
        assert!(
            text.contains(&format!("<Code>{code}</Code>")),
            "{code}: {text}"
        );
        if let Some(seen) = seen {
            assert!(
                matches!(seen.outcome, Err(TailError::Aborted(_))),
                "{code}: the worker must see an abort: {:?}",
                seen.outcome
            );
        }
    }
}

#[tokio::test]
async fn a_body_split_inside_chunk_lines_decodes_the_same() {
    // Frames cut at every awkward place: inside the size, the CRLFs, the
    // signature, the trailer.
    let payload = data(5000);
    let body = chunked(
        &payload,
        1000,
        Some(SIG),
        &[("x-amz-checksum-crc32", &crc32(&payload))],
    )
    .freeze();
    let frames: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = body
        .chunks(7)
        .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let service = UploadResponseService::new(UploadResponseConfig::default()).unwrap();
    let worker = service.worker("s3", Route::prefix("/"));
    let reader = tokio::spawn(async move {
        let mut job = worker.next_job().await;
        let mut body = job.body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.chunk().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        let out = job
            .respond(StatusCode::NO_CONTENT, &HeaderMap::new())
            .await
            .unwrap();
        out.finish().await.unwrap();
        bytes
    });
    let req = Request::put("/b/k")
        .header("content-encoding", "aws-chunked")
        .header("x-amz-decoded-content-length", "5000")
        .header("x-amz-trailer", "x-amz-checksum-crc32")
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap();
    let res = service.handle(req).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(reader.await.unwrap(), payload);
}

/// S3's rule: every signed chunk but the last is at least 8192 bytes. A
/// signed body with a shorter chunk followed by more data is `400
/// InvalidChunkSizeError` and the worker sees an abort; the same short
/// chunk as the last one, or in an unsigned body, is fine.
#[tokio::test]
async fn a_short_signed_chunk_that_is_not_the_last_is_invalid_chunk_size_error() {
    let payload = data(20_000);
    let len = payload.len().to_string();
    let signed = |mode: &'static str| {
        vec![
            ("content-encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", len.as_str()),
            ("x-amz-content-sha256", mode),
        ]
    };
    let headers = signed("STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
    let (status, text, seen) = send(put(chunked(&payload, 8191, Some(SIG), &[]), &headers)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.contains("<Code>InvalidChunkSizeError</Code>"),
        "{text}"
    );
    let outcome = seen.unwrap().outcome;
    assert!(matches!(outcome, Err(TailError::Aborted(_))), "{outcome:?}");

    // 8192, 8192, then a short last chunk: valid.
    let (status, text, _) = send(put(chunked(&payload, 8192, Some(SIG), &[]), &headers)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    // Unsigned chunks carry no such rule here.
    let (status, text, _) = send(put(
        chunked(&payload, 1000, None, &[]),
        &signed("STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
}

/// A signed body whose chunk lines lack `chunk-signature` would leave a gap
/// in the record a worker verifies, and one whose signature is not 64
/// lowercase hex digits cannot be SigV4's (and could make each record up to
/// a 4 KiB line): both refused, never recorded.
#[tokio::test]
async fn a_signed_body_with_an_unsigned_or_malformed_chunk_signature_is_refused() {
    let payload = data(10_000);
    let len = payload.len().to_string();
    let headers = [
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", len.as_str()),
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
    ];
    let long = "ab".repeat(1000);
    for sig in [
        None,
        Some(&SIG[1..]),
        Some(&SIG.to_uppercase()),
        Some(&long[..]),
    ] {
        let (status, text, seen) = send(put(chunked(&payload, 9000, sig, &[]), &headers)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sig:?}: {text}");
        assert!(text.contains("<Code>InvalidRequest</Code>"), "{text}");
        assert!(matches!(seen.unwrap().outcome, Err(TailError::Aborted(_))));
    }
}

/// The record of chunk signatures is bounded (`(slots_per_stream + 1) *
/// slot_size / 8192 + 8`, here 5 x 64 KiB / 8 KiB + 8 = 48 records) yet a
/// worker that reads the records of the bytes it has received loses none,
/// on a body of 512 minimal chunks that keeps the window full (the worker
/// is the slower). With `slots_per_stream * slot_size / 8192 - 4` records
/// this reader was evicted at record 0 (40 had been pushed).
#[tokio::test]
async fn a_signature_reader_keeping_pace_with_the_body_loses_no_record() {
    let config = UploadResponseConfig {
        slot_size_kb: 64,
        slots_per_stream: 4,
        ..UploadResponseConfig::default()
    };
    let service = UploadResponseService::new(config).unwrap();
    let worker = service.worker("s3", Route::prefix("/"));
    let reader = tokio::spawn(async move {
        let mut job = worker.next_job().await;
        let mut signatures = job.chunk_signatures().expect("a signed body");
        let mut body = job.body();
        let (mut received, mut covered, mut records) = (0u64, 0u64, 0u64);
        while let Some(chunk) = body.chunk().await {
            received += chunk.unwrap().len() as u64;
            // Slower than the client: the ingress runs a whole window ahead.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            while covered < received {
                let record = signatures
                    .next()
                    .await
                    .expect("a record for every byte")
                    .expect("never evicted");
                assert_eq!((record.index, record.offset), (records, covered));
                covered += record.len;
                records += 1;
            }
        }
        let last = signatures.next().await.unwrap().unwrap();
        assert_eq!((last.offset, last.len), (covered, 0), "the final chunk");
        assert!(signatures.next().await.is_none(), "then the end");
        let out = job
            .respond(StatusCode::NO_CONTENT, &HeaderMap::new())
            .await
            .unwrap();
        out.finish().await.unwrap();
        records + 1
    });
    let payload = data(512 * 8192);
    let len = payload.len().to_string();
    let headers = [
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", len.as_str()),
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
    ];
    let res = service
        .handle(put(chunked(&payload, 8192, Some(SIG), &[]), &headers))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(reader.await.unwrap(), 513);
}
