//! Conversions to and from the `http` crate's types.

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery};
use http_pack::{ConvertError, Header, HeaderError, HttpVersion, RequestHead, ResponseHead};
use proptest::prelude::*;

use crate::strategies::{headers, request_head, response_head};
use crate::support::{header, request};

/// What a `HeaderMap` makes of a field list: each name's values together, in
/// order of the name's first appearance.
fn grouped(headers: &[Header]) -> Vec<Header> {
    let mut names: Vec<&[u8]> = Vec::new();
    for h in headers {
        if !names.contains(&h.name()) {
            names.push(h.name());
        }
    }
    names
        .iter()
        .flat_map(|n| headers.iter().filter(move |h| h.name() == *n).cloned())
        .collect()
}

proptest! {
    #[test]
    fn response_heads_survive_http_parts(head in response_head()) {
        let parts = head.to_parts().expect("a response head always converts");
        prop_assert_eq!(parts.status, head.status);
        let back = ResponseHead::from_parts(&parts).expect("converts back");
        prop_assert_eq!(back.headers, grouped(&head.headers));
        prop_assert_eq!((back.status, back.version), (head.status, head.version));
    }

    #[test]
    fn absolute_request_heads_survive_http_parts(mut head in request_head(), fields in headers()) {
        head.headers = grouped(&fields);
        // With a scheme and an authority the URI holds the whole target.
        if head.scheme.is_some() && head.authority.is_some() && head.path.is_some() {
            let parts = head.to_parts().expect("absolute target converts");
            prop_assert_eq!(RequestHead::from_parts(&parts).expect("converts back"), head);
        }
    }
}

#[test]
fn request_parts_from_an_absolute_uri() {
    let request = http::Request::put("https://example.com:8443/a/b?c=d")
        .version(http::Version::HTTP_2)
        .header("x-one", "1")
        .header("x-two", "2")
        .body(())
        .expect("valid request");
    let head = RequestHead::from_parts(&request.into_parts().0).expect("converts");
    assert_eq!(head.method, http::Method::PUT);
    assert_eq!(head.scheme.as_ref().map(|s| s.as_str()), Some("https"));
    assert_eq!(
        head.authority.as_ref().map(|a| a.as_str()),
        Some("example.com:8443")
    );
    assert_eq!(head.path.as_ref().map(|p| p.as_str()), Some("/a/b?c=d"));
    assert_eq!(head.version, HttpVersion::H2);
    assert_eq!(
        head.headers,
        vec![header("x-one", "1"), header("x-two", "2")]
    );
}

#[test]
fn origin_form_keeps_only_the_path() {
    let mut head = request(vec![header("host", "example.com")]);
    head.scheme = None;
    let parts = head.to_parts().expect("converts");
    assert_eq!(parts.uri, "/upload?id=7");
    assert_eq!(parts.headers["host"], "example.com");
}

#[test]
fn connect_uses_the_authority_form() {
    let mut head = request(vec![]);
    head.method = http::Method::CONNECT;
    head.scheme = None;
    head.path = None;
    head.authority = Some(Authority::from_static("example.com:443"));
    let parts = head.to_parts().expect("converts");
    assert_eq!(parts.uri, "example.com:443");
    let back = RequestHead::from_parts(&parts).expect("converts back");
    assert_eq!((back.authority, back.path), (head.authority, None));
}

#[test]
fn empty_uri_path_becomes_a_slash() {
    let request = http::Request::get("http://example.com")
        .body(())
        .expect("valid request");
    let head = RequestHead::from_parts(&request.into_parts().0).expect("converts");
    assert_eq!(head.path, Some(PathAndQuery::from_static("/")));
    let wire = http_pack::to_bytes(&http_pack::Frame::RequestHeaders {
        stream_id: 1,
        head: head.clone(),
    });
    let (decoded, _) =
        http_pack::decode_frame(&wire, &http_pack::Limits::default()).expect("decodes");
    assert_eq!(
        decoded,
        http_pack::Frame::RequestHeaders { stream_id: 1, head }
    );
}

#[test]
fn targets_http_cannot_hold_are_errors() {
    let mut no_authority = request(vec![]);
    no_authority.authority = None;
    assert!(matches!(
        no_authority.to_parts(),
        Err(ConvertError::MissingAuthority)
    ));
    let mut nothing = request(vec![]);
    (nothing.scheme, nothing.authority, nothing.path) = (None, None, None);
    assert!(matches!(
        nothing.to_parts(),
        Err(ConvertError::MissingTarget)
    ));
}

#[test]
fn header_validity_matches_http_for_every_byte() {
    for b in 0..=255u8 {
        let http_name = http::HeaderName::from_bytes(&[b]).ok();
        let expected_name = http_name.is_some_and(|n| n.as_str().as_bytes() == [b]);
        assert_eq!(
            Header::new(vec![b], Bytes::new()).is_ok(),
            expected_name,
            "name byte {b:#04x}"
        );
        let expected_value = http::HeaderValue::from_bytes(&[b]).is_ok();
        assert_eq!(
            Header::new(Bytes::from_static(b"x"), vec![b]).is_ok(),
            expected_value,
            "value byte {b:#04x}"
        );
    }
    assert!(Header::new(vec![b'a'; 65_535], Bytes::new()).is_ok());
    assert_eq!(
        Header::new(vec![b'a'; 65_536], Bytes::new()),
        Err(HeaderError::InvalidName)
    );
}

#[test]
fn every_http_version_has_a_code() {
    for version in [
        http::Version::HTTP_09,
        http::Version::HTTP_10,
        http::Version::HTTP_11,
        http::Version::HTTP_2,
        http::Version::HTTP_3,
    ] {
        let ours = HttpVersion::try_from(version).expect("known version");
        assert_eq!(http::Version::from(ours), version);
        assert_eq!(HttpVersion::from_code(ours.code()), Some(ours));
    }
}
