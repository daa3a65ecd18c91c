//! The hex examples in `docs/hpks.md` §12 are what the encoder writes.

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http_pack::{AbortReason, Frame, HttpVersion, RequestHead, to_bytes};

use crate::support::header;

const SPEC: &str = include_str!("../../../../docs/hpks.md");

/// The frames §12 shows, by the name of their example marker.
fn examples() -> Vec<(&'static str, Frame)> {
    let head = RequestHead {
        method: http::Method::GET,
        scheme: Some(Scheme::HTTPS),
        authority: Some(Authority::from_static("example.com")),
        path: Some(PathAndQuery::from_static("/index.html?lang=en")),
        version: HttpVersion::H2,
        headers: vec![header("user-agent", "curl/8.5.0"), header("accept", "*/*")],
    };
    vec![
        (
            "request-headers",
            Frame::RequestHeaders { stream_id: 1, head },
        ),
        (
            "body",
            Frame::Body {
                stream_id: 1,
                data: Bytes::from_static(b"hello"),
            },
        ),
        ("end", Frame::End { stream_id: 1 }),
        (
            "abort",
            Frame::Abort {
                stream_id: 300,
                reason: AbortReason::Timeout,
                message: "no response".into(),
            },
        ),
    ]
}

/// The bytes of the fenced block after `<!-- example: name -->`.
fn documented(name: &str) -> Vec<u8> {
    let marker = format!("<!-- example: {name} -->");
    let after = SPEC
        .split_once(&marker)
        .unwrap_or_else(|| panic!("no {marker} in docs/hpks.md"))
        .1;
    let block = after
        .split("```")
        .nth(1)
        .expect("a fenced block after the marker");
    block
        .lines()
        .skip(1)
        .flat_map(|line| line.split('#').next().unwrap_or("").split_whitespace())
        .map(|pair| {
            u8::from_str_radix(pair, 16).unwrap_or_else(|_| panic!("{pair:?} is not a hex byte"))
        })
        .collect()
}

/// Sixteen bytes a line, to paste into the spec when a frame changes on purpose.
fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|line| {
            line.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn documented_hex_is_the_encoders_output() {
    for (name, frame) in examples() {
        let encoded = to_bytes(&frame);
        assert_eq!(
            documented(name),
            encoded,
            "example {name} drifted; the encoder writes:\n{}\n",
            hex(&encoded)
        );
    }
}
