//! Each limit rejects one past its value and accepts its value (`docs/hpks.md` §9).

use bytes::Bytes;
use http_pack::{DecodeError, Frame, Header, Limits, to_bytes};

use crate::support::{decode_with, request};

const TIGHT: Limits = Limits {
    max_headers: 4,
    max_name_len: 8,
    max_value_len: 16,
    max_header_bytes: 64,
    max_frame_len: 128,
};

/// A request frame whose method, scheme, authority and path take 32 bytes of
/// the head budget (`POST` + `https` + `example.com` + `/upload?id=7`).
fn frame_with(headers: Vec<Header>) -> Vec<u8> {
    to_bytes(&Frame::RequestHeaders {
        stream_id: 1,
        head: request(headers),
    })
    .to_vec()
}

fn field(name_len: usize, value_len: usize) -> Header {
    Header::new(
        Bytes::from(vec![b'n'; name_len]),
        Bytes::from(vec![b'v'; value_len]),
    )
    .expect("valid")
}

fn outcome(limits: Limits, input: &[u8]) -> Result<(), DecodeError> {
    match decode_with(limits, input).into_iter().next() {
        Some(result) => result.map(drop),
        None => panic!("the whole frame was fed"),
    }
}

#[test]
fn header_count() {
    assert_eq!(outcome(TIGHT, &frame_with(vec![field(1, 0); 4])), Ok(()));
    assert_eq!(
        outcome(TIGHT, &frame_with(vec![field(1, 0); 5])),
        Err(DecodeError::TooManyHeaders { count: 5, limit: 4 })
    );
}

#[test]
fn header_name_and_value_length() {
    assert_eq!(outcome(TIGHT, &frame_with(vec![field(8, 16)])), Ok(()));
    assert_eq!(
        outcome(TIGHT, &frame_with(vec![field(9, 0)])),
        Err(DecodeError::HeaderTooLarge {
            part: "name",
            len: 9,
            limit: 8
        })
    );
    assert_eq!(
        outcome(TIGHT, &frame_with(vec![field(1, 17)])),
        Err(DecodeError::HeaderTooLarge {
            part: "value",
            len: 17,
            limit: 16
        })
    );
}

#[test]
fn head_bytes_count_the_target_and_every_field() {
    // 32 bytes of target plus 2 x (8 + 8) = 64: exactly the budget.
    assert_eq!(
        outcome(TIGHT, &frame_with(vec![field(8, 8), field(8, 8)])),
        Ok(())
    );
    assert_eq!(
        outcome(TIGHT, &frame_with(vec![field(8, 8), field(8, 9)])),
        Err(DecodeError::HeadTooLarge { limit: 64 })
    );
    let no_room = Limits {
        max_header_bytes: 31,
        ..TIGHT
    };
    assert_eq!(
        outcome(no_room, &frame_with(vec![])),
        Err(DecodeError::HeadTooLarge { limit: 31 })
    );
}

#[test]
fn frame_length_is_checked_before_the_frame_arrives() {
    let at_limit = to_bytes(&Frame::Body {
        stream_id: 1,
        data: Bytes::from(vec![0; 127]),
    });
    assert_eq!(outcome(TIGHT, &at_limit), Ok(()));
    let over = to_bytes(&Frame::Body {
        stream_id: 1,
        data: Bytes::from(vec![0; 128]),
    });
    // Only the frame header is fed: the error must not wait for the body.
    assert_eq!(
        decode_with(TIGHT, &over[..8]),
        vec![Err(DecodeError::FrameTooLarge {
            len: 129,
            limit: 128
        })]
    );
}

#[test]
fn a_huge_declared_count_allocates_nothing_up_front() {
    let generous = Limits {
        max_headers: usize::MAX,
        ..Limits::default()
    };
    let mut fields = crate::support::raw_request_fields(b"GET", b"/", &[]);
    fields.pop();
    fields.extend(crate::support::varint(u64::MAX / 2));
    let input = crate::support::raw_frame(0x01, 1, &fields);
    assert_eq!(
        decode_with(generous, &input),
        vec![Err(DecodeError::Truncated { field: "name" })]
    );
}

#[test]
fn defaults_are_the_documented_ones() {
    let limits = Limits::default();
    assert_eq!(limits.max_headers, 256);
    assert_eq!(limits.max_name_len, 1024);
    assert_eq!(limits.max_value_len, 16 * 1024);
    assert_eq!(limits.max_header_bytes, 64 * 1024);
    assert_eq!(limits.max_frame_len, 4 * 1024 * 1024);
}

#[test]
fn unbounded_limits_do_not_overflow() {
    let unbounded = Limits {
        max_headers: usize::MAX,
        max_name_len: usize::MAX,
        max_value_len: usize::MAX,
        max_header_bytes: usize::MAX,
        max_frame_len: usize::MAX,
    };
    let mut input = b"HPKS\x01\x03".to_vec();
    input.extend(crate::support::varint(u64::MAX));
    input.push(0x01);
    assert_eq!(decode_with(unbounded, &input), vec![]);
    let frame = frame_with(vec![field(300, 70_000)]);
    assert!(matches!(decode_with(unbounded, &frame)[..], [Ok(_)]));
}
