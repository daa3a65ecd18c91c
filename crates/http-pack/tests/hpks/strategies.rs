//! Proptest strategies for frames and their parts.

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http_pack::{AbortReason, Frame, Header, HttpVersion, RequestHead, ResponseHead};
use proptest::prelude::*;

pub fn method() -> impl Strategy<Value = http::Method> {
    prop_oneof![
        Just(http::Method::GET),
        Just(http::Method::POST),
        Just(http::Method::PUT),
        Just(http::Method::DELETE),
        Just(http::Method::CONNECT),
        "[A-Za-z!#$%&'*+.^_`|~-]{1,30}"
            .prop_map(|m| http::Method::from_bytes(m.as_bytes()).expect("token")),
    ]
}

fn scheme() -> impl Strategy<Value = Scheme> {
    prop_oneof![
        Just(Scheme::HTTP),
        Just(Scheme::HTTPS),
        "[a-z][a-z0-9+.-]{0,10}".prop_filter_map("not a scheme", |s| s.parse().ok()),
    ]
}

fn authority() -> impl Strategy<Value = Authority> {
    "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,10}){0,3}(:[0-9]{1,5})?"
        .prop_filter_map("not an authority", |a| {
            Authority::from_maybe_shared(Bytes::from(a)).ok()
        })
}

fn path() -> impl Strategy<Value = PathAndQuery> {
    "/[a-zA-Z0-9/_.~%!$&'()*+,;=:@-]{0,60}(\\?[a-zA-Z0-9=&%/?_.-]{0,40})?"
        .prop_filter_map("not a path", |p| {
            PathAndQuery::from_maybe_shared(Bytes::from(p)).ok()
        })
}

fn version() -> impl Strategy<Value = HttpVersion> {
    prop_oneof![
        Just(HttpVersion::Http09),
        Just(HttpVersion::Http10),
        Just(HttpVersion::Http11),
        Just(HttpVersion::H2),
        Just(HttpVersion::H3),
    ]
}

/// Names are lowercase tokens; values are any bytes `http` allows, binary included.
pub fn header() -> impl Strategy<Value = Header> {
    let name = "[a-z0-9!#$%&'*+.^_`|~-]{1,40}";
    // A control byte with the high bit set is a valid obs-text byte instead.
    let value = prop::collection::vec(any::<u8>(), 0..120).prop_map(|bytes| {
        bytes
            .into_iter()
            .map(|b| {
                if (b < 0x20 && b != b'\t') || b == 0x7f {
                    b | 0x80
                } else {
                    b
                }
            })
            .collect::<Vec<u8>>()
    });
    (name, value)
        .prop_map(|(name, value)| Header::new(name, value).expect("generated header is valid"))
}

pub fn headers() -> impl Strategy<Value = Vec<Header>> {
    prop::collection::vec(header(), 0..48)
}

pub fn request_head() -> impl Strategy<Value = RequestHead> {
    (
        method(),
        prop::option::of(scheme()),
        prop::option::of(authority()),
        prop::option::of(path()),
        version(),
        headers(),
    )
        .prop_map(
            |(method, scheme, authority, path, version, headers)| RequestHead {
                method,
                scheme,
                authority,
                path,
                version,
                headers,
            },
        )
}

pub fn response_head() -> impl Strategy<Value = ResponseHead> {
    (100u16..1000, version(), headers()).prop_map(|(status, version, headers)| ResponseHead {
        status: http::StatusCode::from_u16(status).expect("100..1000 is a status"),
        version,
        headers,
    })
}

pub fn body() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..2048).prop_map(Bytes::from)
}

fn stream_id() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..300, any::<u64>()]
}

/// Any frame, on a stream id from anywhere in the u64 range.
pub fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (stream_id(), request_head())
            .prop_map(|(stream_id, head)| Frame::RequestHeaders { stream_id, head }),
        (stream_id(), response_head())
            .prop_map(|(stream_id, head)| Frame::ResponseHeaders { stream_id, head }),
        (stream_id(), body()).prop_map(|(stream_id, data)| Frame::Body { stream_id, data }),
        stream_id().prop_map(|stream_id| Frame::End { stream_id }),
        (stream_id(), any::<u16>(), ".{0,60}").prop_map(|(stream_id, code, message)| {
            Frame::Abort {
                stream_id,
                reason: AbortReason::from_code(code),
                message,
            }
        }),
    ]
}
