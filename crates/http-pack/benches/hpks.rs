//! Encode and decode of a realistic 20-header request frame (ns per op).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, criterion_group, criterion_main};
use http_pack::{
    Decoder, Frame, Header, HttpVersion, Limits, RequestHead, decode_frame, encode, to_bytes,
};

/// What a browser upload through a CDN looks like: 20 fields, ~1 KiB of head.
fn request_frame() -> Frame {
    let fields: [(&str, &str); 20] = [
        ("host", "upload.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        ("accept", "application/json, text/plain, */*"),
        ("accept-language", "en-GB,en;q=0.7,fr;q=0.3"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("content-type", "application/octet-stream"),
        ("content-length", "104857600"),
        ("origin", "https://app.example.com"),
        ("referer", "https://app.example.com/projects/42/uploads"),
        (
            "authorization",
            "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl",
        ),
        (
            "cookie",
            "session=9f8e7d6c5b4a39281706; theme=dark; consent=analytics%3Dno",
        ),
        ("x-request-id", "0b6f7c1e-5d7a-4f0e-9c43-2a1b3c4d5e6f"),
        ("x-forwarded-for", "203.0.113.7, 198.51.100.23"),
        ("x-forwarded-proto", "https"),
        ("x-upload-name", "holiday-video-2026-08-14.mp4"),
        (
            "x-upload-checksum",
            "sha256=3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b",
        ),
        ("cache-control", "no-cache"),
        ("pragma", "no-cache"),
        ("sec-fetch-mode", "cors"),
        ("te", "trailers"),
    ];
    let headers = fields
        .iter()
        .map(|&(name, value)| {
            Header::new(
                Bytes::from_static(name.as_bytes()),
                Bytes::from_static(value.as_bytes()),
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .expect("static fields are valid");
    Frame::RequestHeaders {
        stream_id: 1_234_567,
        head: RequestHead {
            method: http::Method::POST,
            scheme: Some(http::uri::Scheme::HTTPS),
            authority: Some(http::uri::Authority::from_static("upload.example.com")),
            path: Some(http::uri::PathAndQuery::from_static(
                "/v1/projects/42/uploads?resumable=true",
            )),
            version: HttpVersion::H2,
            headers,
        },
    }
}

fn encode_group(c: &mut Criterion) {
    let frame = request_frame();
    let mut group = c.benchmark_group("encode");
    let mut dst = BytesMut::with_capacity(4096);
    group.bench_function("request_20_headers", |b| {
        b.iter(|| {
            dst.clear();
            encode(black_box(&frame), &mut dst);
            black_box(dst.len())
        })
    });
    group.finish();
}

fn decode_group(c: &mut Criterion) {
    let wire = to_bytes(&request_frame());
    let limits = Limits::default();
    let mut group = c.benchmark_group("decode");
    group.bench_function("request_20_headers", |b| {
        b.iter(|| decode_frame(black_box(&wire), &limits).expect("valid frame"))
    });
    group.bench_function("request_20_headers_incremental", |b| {
        b.iter(|| {
            let mut decoder = Decoder::new();
            decoder.feed(black_box(&wire));
            decoder.decode().expect("valid frame").expect("whole frame")
        })
    });
    group.finish();
}

fn round_trip_group(c: &mut Criterion) {
    let frame = request_frame();
    let limits = Limits::default();
    let mut group = c.benchmark_group("round_trip");
    group.bench_function("request_20_headers", |b| {
        b.iter(|| {
            let wire = to_bytes(black_box(&frame));
            decode_frame(&wire, &limits).expect("valid frame")
        })
    });
    group.finish();
}

criterion_group!(benches, encode_group, decode_group, round_trip_group);
criterion_main!(benches);
