//! The `aws-chunked` decoder: the spec's forms, any splits, every malformed
//! framing a typed error.

use bytes::{Bytes, BytesMut};
use http_pack::{
    AwsChunkEvent, AwsChunkedDecoder, AwsChunkedError, AwsChunkedLimits, encode_chunk,
    encode_final_chunk,
};
use proptest::prelude::*;

/// Decodes `input` fed in pieces of `sizes` (cycled); returns the data, the
/// other events, and the outcome of `finish`.
fn decode_in_pieces(
    input: &[u8],
    sizes: &[usize],
    limits: AwsChunkedLimits,
) -> Result<(Vec<u8>, Vec<AwsChunkEvent>), AwsChunkedError> {
    let mut decoder = AwsChunkedDecoder::with_limits(limits);
    let (mut data, mut events) = (Vec::new(), Vec::new());
    let mut pos = 0;
    for &size in sizes.iter().cycle() {
        if pos >= input.len() {
            break;
        }
        let end = (pos + size.max(1)).min(input.len());
        let mut piece = Bytes::copy_from_slice(&input[pos..end]);
        pos = end;
        while let Some(event) = decoder.decode(&mut piece)? {
            match event {
                AwsChunkEvent::Data(bytes) => data.extend_from_slice(&bytes),
                other => events.push(other),
            }
        }
        assert!(piece.is_empty(), "decoder left input unconsumed");
    }
    decoder.finish()?;
    Ok((data, events))
}

fn decode(input: &[u8]) -> Result<(Vec<u8>, Vec<AwsChunkEvent>), AwsChunkedError> {
    decode_in_pieces(input, &[input.len().max(1)], AwsChunkedLimits::default())
}

const SIG: &str = "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648";

#[test]
fn aws_spec_signed_example_decodes_with_its_signatures() {
    // The shape of the example in the AWS SigV4 streaming docs (64 KiB,
    // 1 KiB, final), with its first chunk signature.
    let mut body = BytesMut::new();
    encode_chunk(&mut body, &[b'a'; 65536], Some(SIG));
    encode_chunk(
        &mut body,
        &[b'a'; 1024],
        Some("0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
    );
    encode_final_chunk(
        &mut body,
        Some("b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
        &[],
    );
    assert!(body.starts_with(format!("10000;chunk-signature={SIG}\r\n").as_bytes()));
    let (data, events) = decode(&body).unwrap();
    assert_eq!(data, vec![b'a'; 66560]);
    assert_eq!(
        events[0],
        AwsChunkEvent::Chunk {
            size: 65536,
            signature: Some(SIG.into())
        }
    );
    assert!(
        matches!(&events[2], AwsChunkEvent::Chunk { size: 0, signature: Some(s) } if s.starts_with("b6c6"))
    );
    assert_eq!(events.last(), Some(&AwsChunkEvent::End));
}

#[test]
fn signed_trailer_form_yields_trailers_and_trailer_signature() {
    let mut body = BytesMut::new();
    encode_chunk(&mut body, b"hello", Some(SIG));
    encode_final_chunk(
        &mut body,
        Some(SIG),
        &[
            ("x-amz-checksum-crc32", "NhCmhg=="),
            ("x-amz-trailer-signature", SIG),
        ],
    );
    let (data, events) = decode(&body).unwrap();
    assert_eq!(data, b"hello");
    assert_eq!(
        &events[2..],
        &[
            AwsChunkEvent::Trailer {
                name: "x-amz-checksum-crc32".into(),
                value: "NhCmhg==".into()
            },
            AwsChunkEvent::TrailerSignature(SIG.into()),
            AwsChunkEvent::End,
        ]
    );
}

#[test]
fn unsigned_trailer_form_as_botocore_sends_it() {
    let body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n";
    let (data, events) = decode(body).unwrap();
    assert_eq!(data, b"hello");
    assert_eq!(
        events[0],
        AwsChunkEvent::Chunk {
            size: 5,
            signature: None
        }
    );
    assert_eq!(events.len(), 4);
}

#[test]
fn empty_body_is_just_the_final_chunk() {
    let (data, events) = decode(b"0\r\n\r\n").unwrap();
    assert!(data.is_empty());
    assert_eq!(
        events,
        [
            AwsChunkEvent::Chunk {
                size: 0,
                signature: None
            },
            AwsChunkEvent::End
        ]
    );
}

/// Whether an error is the one a case expects.
type Expect = fn(&AwsChunkedError) -> bool;

#[test]
fn malformed_framing_is_a_typed_error() {
    let limits = AwsChunkedLimits {
        max_chunk_size: 1024,
        max_line_len: 100,
        max_trailers: 2,
    };
    let cases: &[(&[u8], Expect)] = &[
        (b"zz\r\nhello\r\n", |e| {
            matches!(e, AwsChunkedError::BadChunkSize(_))
        }),
        (b"\r\n", |e| matches!(e, AwsChunkedError::BadChunkSize(_))),
        (b"+5\r\nhello\r\n", |e| {
            matches!(e, AwsChunkedError::BadChunkSize(_))
        }),
        (b"11111111111111111\r\n", |e| {
            matches!(e, AwsChunkedError::BadChunkSize(_))
        }),
        (b"401\r\n", |e| {
            matches!(
                e,
                AwsChunkedError::ChunkTooLarge {
                    size: 1025,
                    limit: 1024
                }
            )
        }),
        (b"5\nhello\r\n", |e| {
            matches!(e, AwsChunkedError::MissingCrlf(_))
        }),
        (b"5\r\nhelloXX0\r\n\r\n", |e| {
            matches!(e, AwsChunkedError::MissingCrlf("chunk data"))
        }),
        (b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n", |e| {
            matches!(e, AwsChunkedError::BadTrailer)
        }),
        (b"5;chunk-signature\r\nhello\r\n", |e| {
            matches!(e, AwsChunkedError::BadExtension)
        }),
        (b"0\r\na:1\r\nb:2\r\nc:3\r\n\r\n", |e| {
            matches!(e, AwsChunkedError::TooManyTrailers(2))
        }),
        (b"0\r\n\r\nmore", |e| {
            matches!(e, AwsChunkedError::TrailingBytes)
        }),
        (b"5\r\nhel", |e| matches!(e, AwsChunkedError::Truncated)),
        (b"5\r\nhello\r\n", |e| {
            matches!(e, AwsChunkedError::Truncated)
        }),
    ];
    for (input, expected) in cases {
        for sizes in [&[input.len()][..], &[1]] {
            let err = decode_in_pieces(input, sizes, limits).unwrap_err();
            assert!(
                expected(&err),
                "{:?} gave {err:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

#[test]
fn extensions_beyond_the_line_limit_are_refused_without_buffering_them() {
    let limits = AwsChunkedLimits {
        max_line_len: 100,
        ..Default::default()
    };
    let mut decoder = AwsChunkedDecoder::with_limits(limits);
    // A line that never ends: refused once it passes the limit, fed a byte
    // at a time or whole.
    let mut first = Bytes::from(format!("5;x={}", "a".repeat(90)));
    assert_eq!(decoder.decode(&mut first), Ok(None));
    let mut more = Bytes::from_static(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(
        decoder.decode(&mut more),
        Err(AwsChunkedError::LineTooLong(100))
    );
    assert_eq!(
        decoder.decode(&mut Bytes::from_static(b"\r\n")),
        Err(AwsChunkedError::Failed)
    );
    assert_eq!(decoder.finish(), Err(AwsChunkedError::Failed));
}

fn arb_body() -> impl Strategy<Value = (Vec<Vec<u8>>, bool, bool)> {
    (
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..6),
        any::<bool>(),
        any::<bool>(),
    )
}

proptest! {
    #[test]
    fn any_split_decodes_to_the_same_data((chunks, signed, trailer) in arb_body(), sizes in proptest::collection::vec(1usize..40, 1..5)) {
        let sig = signed.then_some(SIG);
        let mut body = BytesMut::new();
        for chunk in &chunks {
            encode_chunk(&mut body, chunk, sig);
        }
        let trailers: &[(&str, &str)] = if trailer { &[("x-amz-checksum-sha256", "abc=")] } else { &[] };
        encode_final_chunk(&mut body, sig, trailers);
        let whole = decode(&body).unwrap();
        prop_assert_eq!(&whole.0, &chunks.concat());
        prop_assert_eq!(&decode_in_pieces(&body, &sizes, AwsChunkedLimits::default()).unwrap().1, &whole.1);
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..200), sizes in proptest::collection::vec(1usize..20, 1..4)) {
        let whole = decode(&input);
        let pieces = decode_in_pieces(&input, &sizes, AwsChunkedLimits::default());
        prop_assert_eq!(whole.map(|w| w.0), pieces.map(|p| p.0));
    }
}
