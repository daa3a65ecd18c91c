//! Every decode error, from hand-built frames (`docs/hpks.md` §9).

use bytes::Bytes;
use http_pack::{
    AbortReason, DecodeError, Decoder, Frame, FrameType, Limits, decode_frame, to_bytes,
};

use crate::support::{
    decode_first, decode_with, header, raw_frame, raw_request_fields, request, string, varint,
};

fn first_error(input: &[u8]) -> DecodeError {
    match decode_first(input) {
        Some(Err(error)) => error,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn bad_magic_is_seen_before_four_bytes_arrive() {
    let mut decoder = Decoder::new();
    decoder.feed(b"HP");
    assert_eq!(decoder.decode(), Ok(None));
    decoder.feed(b"X");
    assert_eq!(decoder.decode(), Err(DecodeError::BadMagic));
}

#[test]
fn frame_header_errors_are_final() {
    let mut decoder = Decoder::new();
    decoder.feed(b"HPKS\x02");
    assert_eq!(decoder.decode(), Err(DecodeError::UnsupportedVersion(2)));
    assert!(decoder.has_failed());
    decoder.feed(&to_bytes(&Frame::End { stream_id: 1 }));
    assert_eq!(
        decoder.buffered(),
        0,
        "input after a fatal error is dropped"
    );
    assert_eq!(decoder.decode(), Err(DecodeError::UnsupportedVersion(2)));
    assert_eq!(decoder.finish(), Err(DecodeError::UnsupportedVersion(2)));
}

#[test]
fn frame_length_varint_errors() {
    let mut overflow = b"HPKS\x01\x04".to_vec();
    overflow.extend([0xff; 9]);
    overflow.push(0x02);
    let field = "frame length";
    assert_eq!(
        first_error(&overflow),
        DecodeError::VarintOverflow { field }
    );
    assert_eq!(
        first_error(b"HPKS\x01\x04\x81\x00\x01"),
        DecodeError::NonCanonicalVarint { field }
    );
}

#[test]
fn unknown_frame_type_is_skipped() {
    let mut input = raw_frame(0x7e, 5, b"future fields");
    input.extend(to_bytes(&Frame::End { stream_id: 5 }));
    assert_eq!(
        decode_with(Limits::default(), &input),
        vec![
            Err(DecodeError::UnknownFrameType(0x7e)),
            Ok(Frame::End { stream_id: 5 })
        ]
    );
}

#[test]
fn fields_must_fill_the_frame_exactly() {
    assert_eq!(
        first_error(&raw_frame(0x04, 1, b"\x00")),
        DecodeError::TrailingBytes { extra: 1 }
    );
    assert_eq!(
        first_error(b"HPKS\x01\x04\x00"),
        DecodeError::Truncated { field: "stream id" }
    );
    let status_cut = raw_frame(0x02, 1, b"\x00");
    assert_eq!(
        first_error(&status_cut),
        DecodeError::Truncated { field: "status" }
    );
    let path_cut = raw_frame(
        0x01,
        1,
        &[
            &string(b"GET")[..],
            &string(b"")[..],
            &string(b"")[..],
            b"\x05/a",
        ]
        .concat(),
    );
    assert_eq!(
        first_error(&path_cut),
        DecodeError::Truncated { field: "path" }
    );
}

#[test]
fn unfinished_input_is_an_error_at_the_end() {
    let wire = to_bytes(&Frame::Body {
        stream_id: 9,
        data: Bytes::from_static(b"0123456789"),
    });
    let mut decoder = Decoder::new();
    decoder.feed(&wire[..wire.len() - 1]);
    assert_eq!(decoder.decode(), Ok(None));
    assert_eq!(
        decoder.finish(),
        Err(DecodeError::UnexpectedEof {
            buffered: wire.len() - 1
        })
    );
    let cut = wire.slice(..wire.len() - 1);
    assert_eq!(
        decode_frame(&cut, &Limits::default()),
        Err(DecodeError::UnexpectedEof {
            buffered: wire.len() - 1
        })
    );
}

#[test]
fn invalid_request_fields() {
    let fields =
        |method: &[u8], path: &[u8]| raw_frame(0x01, 1, &raw_request_fields(method, path, &[]));
    assert_eq!(
        first_error(&fields(b"GE T", b"/")),
        DecodeError::InvalidMethod
    );
    assert_eq!(first_error(&fields(b"", b"/")), DecodeError::InvalidMethod);
    assert_eq!(
        first_error(&fields(b"GET", b"/a b")),
        DecodeError::InvalidPath
    );
    // `http` would drop the fragment; HPKS refuses a path that changes.
    assert_eq!(
        first_error(&fields(b"GET", b"/a#frag")),
        DecodeError::InvalidPath
    );

    let mut bad_scheme = string(b"GET");
    bad_scheme.extend(string(b"ht tp"));
    assert_eq!(
        first_error(&raw_frame(0x01, 1, &bad_scheme)),
        DecodeError::InvalidScheme
    );

    let mut bad_authority = string(b"GET");
    bad_authority.extend(string(b"https"));
    bad_authority.extend(string(b"exa mple.com"));
    assert_eq!(
        first_error(&raw_frame(0x01, 1, &bad_authority)),
        DecodeError::InvalidAuthority
    );

    let mut bad_version = raw_request_fields(b"GET", b"/", &[]);
    let at = bad_version.len() - 2;
    bad_version[at] = 0x12;
    assert_eq!(
        first_error(&raw_frame(0x01, 1, &bad_version)),
        DecodeError::UnknownHttpVersion(0x12)
    );
}

#[test]
fn invalid_header_fields() {
    let cases: [(&[u8], &[u8], Option<DecodeError>); 6] = [
        (b"Content-Type", b"x", Some(DecodeError::InvalidHeaderName)),
        (b"", b"x", Some(DecodeError::InvalidHeaderName)),
        (b":path", b"/", Some(DecodeError::InvalidHeaderName)),
        (
            b"x-a",
            b"1\r\nx-b: 2",
            Some(DecodeError::InvalidHeaderValue),
        ),
        (b"x-a", b"\x00", Some(DecodeError::InvalidHeaderValue)),
        (b"x-a", b"\tbinary \xff\x80", None),
    ];
    for (name, value, expected) in cases {
        let input = raw_frame(0x01, 1, &raw_request_fields(b"GET", b"/", &[(name, value)]));
        assert_eq!(
            decode_first(&input).and_then(Result::err),
            expected,
            "{name:?}: {value:?}"
        );
    }
}

#[test]
fn invalid_status() {
    for status in [0u16, 99, 1000, u16::MAX] {
        let mut fields = status.to_be_bytes().to_vec();
        fields.extend([0x11, 0x00]);
        assert_eq!(
            first_error(&raw_frame(0x02, 1, &fields)),
            DecodeError::InvalidStatus(status)
        );
    }
}

#[test]
fn abort_frames() {
    let abort =
        |message: &[u8]| raw_frame(0x05, 4, &[&[0x00, 0x03][..], &string(message)].concat());
    assert_eq!(
        decode_first(&abort(b"deadline")),
        Some(Ok(Frame::Abort {
            stream_id: 4,
            reason: AbortReason::Timeout,
            message: "deadline".into()
        }))
    );
    assert_eq!(
        first_error(&abort(b"\xff\xfe")),
        DecodeError::InvalidAbortMessage
    );
    assert_eq!(
        first_error(&abort(&[b'a'; 256])),
        DecodeError::InvalidAbortMessage
    );
}

#[test]
fn long_abort_messages_are_cut_on_a_char_boundary() {
    let message = "é".repeat(200);
    let wire = to_bytes(&Frame::Abort {
        stream_id: 1,
        reason: AbortReason::Internal,
        message,
    });
    let (frame, _) = decode_frame(&wire, &Limits::default()).expect("decodes");
    let Frame::Abort { message, .. } = frame else {
        panic!("not an abort")
    };
    assert_eq!(message, "é".repeat(127));
}

#[test]
fn abort_reason_codes_are_stable() {
    let named = [
        (AbortReason::ClientGone, 1),
        (AbortReason::WorkerGone, 2),
        (AbortReason::Timeout, 3),
        (AbortReason::TooLarge, 4),
        (AbortReason::Internal, 5),
    ];
    for (reason, code) in named {
        assert_eq!(reason.code(), code);
        assert_eq!(AbortReason::from_code(code), reason);
    }
    assert_eq!(AbortReason::from_code(0), AbortReason::Other(0));
    assert_eq!(AbortReason::from_code(900).code(), 900);
}

#[test]
fn frame_type_codes_are_stable() {
    let codes: Vec<u8> = FrameType::ALL.iter().map(|t| t.code()).collect();
    assert_eq!(codes, [0x01, 0x02, 0x03, 0x04, 0x05]);
    for code in 0..=255u8 {
        assert_eq!(
            FrameType::from_code(code).map(FrameType::code),
            codes.contains(&code).then_some(code)
        );
    }
}

#[test]
fn stream_id_varint_errors_skip_only_that_frame() {
    let mut input = b"HPKS\x01\x04\x02\x80\x00".to_vec();
    input.extend(to_bytes(&Frame::End { stream_id: 1 }));
    assert_eq!(
        decode_with(Limits::default(), &input),
        vec![
            Err(DecodeError::NonCanonicalVarint { field: "stream id" }),
            Ok(Frame::End { stream_id: 1 })
        ]
    );
    let huge_id = to_bytes(&Frame::End {
        stream_id: u64::MAX,
    });
    assert_eq!(
        decode_first(&huge_id),
        Some(Ok(Frame::End {
            stream_id: u64::MAX
        }))
    );
    let mut too_long = b"HPKS\x01\x04\x0b".to_vec();
    too_long.extend(varint(u64::MAX));
    too_long.push(0x00);
    assert_eq!(
        first_error(&too_long),
        DecodeError::TrailingBytes { extra: 1 }
    );
}

#[test]
fn decoded_request_keeps_its_fields() {
    let head = request(vec![
        header("content-type", "text/plain"),
        header("x-trace", "a b"),
    ]);
    let frame = Frame::RequestHeaders {
        stream_id: 77,
        head,
    };
    assert_eq!(decode_first(&to_bytes(&frame)), Some(Ok(frame)));
}
