//! HTTP/1.1 rendering rules (`docs/hpks.md` §11).

use bytes::{Bytes, BytesMut};
use http::uri::Authority;
use http_pack::{AbortReason, Frame, FrameType, Http1Renderer, RenderError, render_http1};
use proptest::prelude::*;

use crate::support::{header, request, response};

fn body(data: &'static [u8]) -> Frame {
    Frame::Body {
        stream_id: 1,
        data: Bytes::from_static(data),
    }
}

const END: Frame = Frame::End { stream_id: 1 };

fn text(rendered: Result<BytesMut, RenderError>) -> String {
    String::from_utf8(rendered.expect("renders").to_vec()).expect("ASCII test message")
}

#[test]
fn request_without_length_is_chunked_and_gets_a_host() {
    let head = request(vec![
        header("content-type", "text/plain"),
        header("transfer-encoding", "gzip, chunked"),
    ]);
    let frames = [
        Frame::RequestHeaders { stream_id: 1, head },
        body(b"hello"),
        body(b""),
        body(b" world!"),
        END,
    ];
    assert_eq!(
        text(render_http1(&frames)),
        "POST /upload?id=7 HTTP/1.1\r\nhost: example.com\r\ncontent-type: text/plain\r\n\
         transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n world!\r\n0\r\n\r\n"
    );
}

#[test]
fn content_length_means_identity_body_and_keeps_the_host_given() {
    let head = request(vec![
        header("host", "other.example"),
        header("content-length", "11"),
    ]);
    let frames = [
        Frame::RequestHeaders { stream_id: 1, head },
        body(b"hello"),
        body(b" world"),
        END,
    ];
    assert_eq!(
        text(render_http1(&frames)),
        "POST /upload?id=7 HTTP/1.1\r\nhost: other.example\r\ncontent-length: 11\r\n\r\nhello world"
    );
}

#[test]
fn connect_renders_the_authority_form() {
    let mut head = request(vec![header("content-length", "0")]);
    head.method = http::Method::CONNECT;
    (head.scheme, head.path) = (None, None);
    head.authority = Some(Authority::from_static("example.com:443"));
    let frames = [Frame::RequestHeaders { stream_id: 1, head }, END];
    assert_eq!(
        text(render_http1(&frames)),
        "CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\ncontent-length: 0\r\n\r\n"
    );
}

#[test]
fn responses_carry_the_canonical_reason() {
    let ok = [
        Frame::ResponseHeaders {
            stream_id: 1,
            head: response(200, vec![header("content-length", "2")]),
        },
        body(b"ok"),
        END,
    ];
    assert_eq!(
        text(render_http1(&ok)),
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    );
    let odd = [
        Frame::ResponseHeaders {
            stream_id: 1,
            head: response(599, vec![]),
        },
        END,
    ];
    assert_eq!(
        text(render_http1(&odd)),
        "HTTP/1.1 599 \r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
    );
}

#[test]
fn statuses_without_a_body() {
    for status in [101, 204, 304] {
        let head = Frame::ResponseHeaders {
            stream_id: 1,
            head: response(status, vec![header("content-length", "9")]),
        };
        let rendered = text(render_http1(&[head.clone(), body(b""), END]));
        assert!(
            rendered.ends_with("content-length: 9\r\n\r\n"),
            "{rendered}"
        );
        assert!(!rendered.contains("chunked"));
        assert_eq!(
            render_http1(&[head, body(b"x"), END]),
            Err(RenderError::BodyNotAllowed(status))
        );
    }
}

#[test]
fn content_length_must_match_the_body() {
    let head = |value| Frame::ResponseHeaders {
        stream_id: 1,
        head: response(200, vec![header("content-length", value)]),
    };
    assert_eq!(
        render_http1(&[head("3"), body(b"ab"), END]),
        Err(RenderError::ContentLengthMismatch {
            declared: 3,
            actual: 2
        })
    );
    assert_eq!(
        render_http1(&[head("3"), body(b"ab"), body(b"cd"), END]),
        Err(RenderError::ContentLengthMismatch {
            declared: 3,
            actual: 4
        })
    );
    for bad in ["", "-1", "+3", "3 ", "0x3", "99999999999999999999"] {
        assert_eq!(
            render_http1(&[head(bad), END]),
            Err(RenderError::InvalidContentLength),
            "{bad:?}"
        );
    }
    let twice = |a, b| Frame::ResponseHeaders {
        stream_id: 1,
        head: response(
            200,
            vec![header("content-length", a), header("content-length", b)],
        ),
    };
    assert!(render_http1(&[twice("1", "1"), body(b"x"), END]).is_ok());
    assert_eq!(
        render_http1(&[twice("1", "2"), END]),
        Err(RenderError::InvalidContentLength)
    );
}

#[test]
fn abort_mid_sequence_is_an_error() {
    let head = Frame::RequestHeaders {
        stream_id: 1,
        head: request(vec![]),
    };
    let abort = Frame::Abort {
        stream_id: 1,
        reason: AbortReason::ClientGone,
        message: "reset".into(),
    };
    assert_eq!(
        render_http1(&[head, body(b"partial"), abort]),
        Err(RenderError::Aborted {
            reason: AbortReason::ClientGone,
            message: "reset".into()
        })
    );
}

#[test]
fn sequence_errors() {
    let head = Frame::RequestHeaders {
        stream_id: 1,
        head: request(vec![]),
    };
    assert_eq!(
        render_http1(&[body(b"x")]),
        Err(RenderError::UnexpectedFrame {
            expected: "a head frame",
            got: FrameType::Body
        })
    );
    assert_eq!(
        render_http1(&[head.clone(), head.clone()]),
        Err(RenderError::UnexpectedFrame {
            expected: "a body or end frame",
            got: FrameType::RequestHeaders
        })
    );
    assert_eq!(
        render_http1(&[head.clone(), END, END]),
        Err(RenderError::UnexpectedFrame {
            expected: "nothing after the end frame",
            got: FrameType::End
        })
    );
    assert_eq!(
        render_http1(&[head.clone(), Frame::End { stream_id: 2 }]),
        Err(RenderError::StreamMismatch {
            expected: 1,
            got: 2
        })
    );
    assert_eq!(
        render_http1(&[head.clone(), body(b"x")]),
        Err(RenderError::Unfinished)
    );
    let mut no_target = request(vec![]);
    (no_target.authority, no_target.path) = (None, None);
    assert_eq!(
        render_http1(&[
            Frame::RequestHeaders {
                stream_id: 1,
                head: no_target
            },
            END
        ]),
        Err(RenderError::MissingTarget)
    );
}

#[test]
fn the_renderer_streams_frame_by_frame() {
    let mut renderer = Http1Renderer::new();
    let mut wire = BytesMut::new();
    let head = Frame::ResponseHeaders {
        stream_id: 1,
        head: response(200, vec![]),
    };
    renderer.push(&head, &mut wire).expect("head");
    assert!(wire.ends_with(b"\r\n\r\n"));
    wire.clear();
    renderer
        .push(&body(b"0123456789abcdefg"), &mut wire)
        .expect("body");
    assert_eq!(&wire[..], b"11\r\n0123456789abcdefg\r\n");
    assert!(!renderer.is_done());
    renderer.push(&END, &mut wire).expect("end");
    assert!(renderer.is_done());
}

/// Undoes chunked coding, strictly: hex size, CRLF, data, CRLF, until size 0.
fn dechunk(mut wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = wire
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size =
            usize::from_str_radix(std::str::from_utf8(&wire[..line_end]).expect("ASCII"), 16)
                .expect("hex size");
        wire = &wire[line_end + 2..];
        if size == 0 {
            assert_eq!(wire, b"\r\n");
            return out;
        }
        out.extend_from_slice(&wire[..size]);
        assert_eq!(&wire[size..size + 2], b"\r\n");
        wire = &wire[size + 2..];
    }
}

proptest! {
    #[test]
    fn chunked_bodies_carry_every_byte(pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..10)) {
        let mut frames = vec![Frame::ResponseHeaders { stream_id: 1, head: response(200, vec![]) }];
        frames.extend(pieces.iter().map(|p| Frame::Body { stream_id: 1, data: Bytes::from(p.clone()) }));
        frames.push(END);
        let wire = render_http1(&frames).expect("renders");
        let split = wire.windows(4).position(|w| w == b"\r\n\r\n").expect("end of head") + 4;
        prop_assert_eq!(dechunk(&wire[split..]), pieces.concat());
    }
}
