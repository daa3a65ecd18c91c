//! Property tests: round trips, arbitrary splits, hostile bytes.

use bytes::{Bytes, BytesMut};
use http_pack::{
    Decoder, Frame, Limits, decode_frame, encode, encode_prefix, encoded_len, to_bytes,
};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::strategies::frame;
use crate::support::{decode_with, encode_all};

proptest! {
    #[test]
    fn every_frame_round_trips(frame in frame()) {
        let wire = to_bytes(&frame);
        prop_assert_eq!(wire.len(), encoded_len(&frame));
        let (decoded, used) = decode_frame(&wire, &Limits::default()).expect("own encoding decodes");
        prop_assert_eq!(used, wire.len());
        prop_assert_eq!(&decoded, &frame);
        // The encoding is canonical: decoding then encoding gives the same bytes.
        prop_assert_eq!(to_bytes(&decoded), wire);
    }

    #[test]
    fn prefix_plus_data_is_the_whole_encoding(frame in frame()) {
        let mut prefix = BytesMut::new();
        let data = encode_prefix(&frame, &mut prefix);
        prop_assert_eq!(data.is_some(), matches!(frame, Frame::Body { .. }));
        prefix.extend_from_slice(&data.unwrap_or_default());
        prop_assert_eq!(prefix.freeze(), to_bytes(&frame));
    }

    #[test]
    fn any_split_yields_the_same_frames(
        frames in prop::collection::vec(frame(), 1..8),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let wire = encode_all(&frames);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        cuts.push(0);
        cuts.push(wire.len());
        cuts.sort_unstable();
        let mut decoder = Decoder::new();
        let mut decoded = Vec::new();
        for piece in cuts.windows(2) {
            decoder.feed(&wire[piece[0]..piece[1]]);
            while let Some(frame) = decoder.decode().expect("own encoding decodes") {
                decoded.push(frame);
            }
        }
        prop_assert_eq!(decoder.finish(), Ok(()));
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn random_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_with(Limits::default(), &input);
    }

    /// A valid magic and version get random bytes past the frame header checks.
    #[test]
    fn random_bytes_after_a_valid_prefix_never_panic(
        frame_type in 0u8..7,
        len in 0u8..0x80,
        tail in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut input = b"HPKS\x01".to_vec();
        input.push(frame_type);
        input.push(len);
        input.extend(tail);
        let _ = decode_with(Limits::default(), &input);
    }

    /// Flipped bytes in real frames reach the field parsers with plausible lengths.
    #[test]
    fn corrupted_frames_never_panic(
        frames in prop::collection::vec(frame(), 1..4),
        flips in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6),
    ) {
        let mut wire = encode_all(&frames).to_vec();
        for (at, byte) in flips {
            let at = at.index(wire.len());
            wire[at] = byte;
        }
        let small = Limits { max_headers: 8, max_name_len: 16, max_value_len: 64, max_header_bytes: 512, max_frame_len: 1024 };
        let _ = decode_with(small, &wire);
        let _ = decode_with(Limits::default(), &wire);
    }

    /// A frame that fails to parse is skipped: the next one still decodes.
    #[test]
    fn decoding_resumes_after_a_bad_frame(frame in frame(), bad_type in 6u8..=255) {
        let mut wire = BytesMut::from(&crate::support::raw_frame(bad_type, 1, b"ignored")[..]);
        encode(&frame, &mut wire);
        let results = decode_with(Limits::default(), &wire);
        prop_assert_eq!(results, vec![Err(http_pack::DecodeError::UnknownFrameType(bad_type)), Ok(frame)]);
    }

    #[test]
    fn body_frames_share_the_decoder_buffer(data in prop::collection::vec(any::<u8>(), 1..512)) {
        let wire = to_bytes(&Frame::Body { stream_id: 3, data: Bytes::from(data.clone()) });
        let (frame, _) = decode_frame(&wire, &Limits::default()).expect("decodes");
        let Frame::Body { data: decoded, .. } = frame else { panic!("not a body frame") };
        prop_assert_eq!(&decoded[..], &data[..]);
        // Zero-copy: the body points into the frame's own buffer.
        let inside = wire.as_ptr_range().contains(&decoded.as_ptr());
        prop_assert!(inside);
    }
}
