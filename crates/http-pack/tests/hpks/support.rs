//! Helpers shared by the test modules.

use bytes::{Bytes, BytesMut};
use http::uri::{Authority, PathAndQuery, Scheme};
use http_pack::{
    DecodeError, Decoder, Frame, Header, HttpVersion, Limits, RequestHead, ResponseHead, encode,
};

/// A header field from static strings.
pub fn header(name: &'static str, value: &'static str) -> Header {
    Header::new(
        Bytes::from_static(name.as_bytes()),
        Bytes::from_static(value.as_bytes()),
    )
    .expect("valid test header")
}

/// `POST https://example.com/upload?id=7` over HTTP/2 with the given fields.
pub fn request(headers: Vec<Header>) -> RequestHead {
    RequestHead {
        method: http::Method::POST,
        scheme: Some(Scheme::HTTPS),
        authority: Some(Authority::from_static("example.com")),
        path: Some(PathAndQuery::from_static("/upload?id=7")),
        version: HttpVersion::H2,
        headers,
    }
}

/// An HTTP/1.1 response with the given status and fields.
pub fn response(status: u16, headers: Vec<Header>) -> ResponseHead {
    ResponseHead {
        status: http::StatusCode::from_u16(status).expect("valid test status"),
        version: HttpVersion::Http11,
        headers,
    }
}

/// The concatenated encodings of `frames`.
pub fn encode_all(frames: &[Frame]) -> BytesMut {
    let mut wire = BytesMut::new();
    for frame in frames {
        encode(frame, &mut wire);
    }
    wire
}

/// Everything a decoder with `limits` yields for `input` fed in one piece:
/// frames and errors, until it needs more input or has failed for good.
pub fn decode_with(limits: Limits, input: &[u8]) -> Vec<Result<Frame, DecodeError>> {
    let mut decoder = Decoder::with_limits(limits);
    decoder.feed(input);
    let mut out = Vec::new();
    loop {
        match decoder.decode() {
            Ok(Some(frame)) => out.push(Ok(frame)),
            Ok(None) => return out,
            Err(error) => {
                out.push(Err(error));
                if decoder.has_failed() {
                    return out;
                }
            }
        }
    }
}

/// The first thing the default decoder yields for `input`.
pub fn decode_first(input: &[u8]) -> Option<Result<Frame, DecodeError>> {
    decode_with(Limits::default(), input).into_iter().next()
}

/// Unsigned LEB128, written independently of the crate's encoder.
pub fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
    out
}

/// A frame built by hand: header (§2) around `stream id ++ fields`.
pub fn raw_frame(frame_type: u8, stream_id: u64, fields: &[u8]) -> Vec<u8> {
    let mut rest = varint(stream_id);
    rest.extend_from_slice(fields);
    let mut out = b"HPKS\x01".to_vec();
    out.push(frame_type);
    out.extend(varint(rest.len() as u64));
    out.extend(rest);
    out
}

/// A length-prefixed string (§1.3).
pub fn string(bytes: &[u8]) -> Vec<u8> {
    let mut out = varint(bytes.len() as u64);
    out.extend_from_slice(bytes);
    out
}

/// The fields of a request-headers frame, by hand (§3).
pub fn raw_request_fields(method: &[u8], path: &[u8], headers: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = string(method);
    out.extend(string(b"https"));
    out.extend(string(b"example.com"));
    out.extend(string(path));
    out.push(0x11);
    out.extend(varint(headers.len() as u64));
    for (name, value) in headers {
        out.extend(string(name));
        out.extend(string(value));
    }
    out
}
