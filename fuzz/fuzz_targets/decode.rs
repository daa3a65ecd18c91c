//! Feeds arbitrary bytes, in arbitrary splits, to the HPKS decoder.
//!
//! Whatever decodes must re-encode to exactly the bytes it came from (the
//! encoding is canonical, `docs/hpks.md` §1.2), decode again to an equal
//! frame, and decode identically whether fed whole or in pieces.
#![no_main]

use bytes::{Bytes, BytesMut};
use http_pack::{Decoder, Frame, Limits, decode_frame, encode};
use libfuzzer_sys::fuzz_target;

/// Small limits, so that the fuzzer reaches every limit check.
const LIMITS: Limits = Limits {
    max_headers: 16,
    max_name_len: 64,
    max_value_len: 256,
    max_header_bytes: 1024,
    max_frame_len: 4096,
};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the piece sizes; the rest is the input.
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let whole = decode_all(input, &[input.len().max(1)]);
    let sizes = [1 + usize::from(seed & 0x0f), 1 + usize::from(seed >> 4), 1];
    assert_eq!(whole, decode_all(input, &sizes), "splits changed the result");

    let mut rest = Bytes::copy_from_slice(input);
    for result in &whole {
        let Ok(frame) = result else { break };
        // Byte-exact: one-shot decoding of the same bytes agrees, and the
        // encoder reproduces them.
        let (again, used) = decode_frame(&rest, &LIMITS).expect("decoder accepted this frame");
        assert_eq!(&again, frame);
        let mut encoded = BytesMut::new();
        encode(frame, &mut encoded);
        assert_eq!(&encoded[..], &rest[..used], "re-encoding differs");
        rest = rest.slice(used..);
    }
});

/// Every frame and error the decoder yields for `input` fed in pieces of the
/// given sizes (cycled), up to the first fatal error or the end of input.
fn decode_all(input: &[u8], sizes: &[usize]) -> Vec<Result<Frame, http_pack::DecodeError>> {
    let mut decoder = Decoder::with_limits(LIMITS);
    let mut out = Vec::new();
    let mut pos = 0;
    for &size in sizes.iter().cycle() {
        if pos >= input.len() {
            break;
        }
        let end = (pos + size).min(input.len());
        decoder.feed(&input[pos..end]);
        pos = end;
        loop {
            match decoder.decode() {
                Ok(Some(frame)) => out.push(Ok(frame)),
                Ok(None) => break,
                Err(error) => {
                    out.push(Err(error));
                    if decoder.has_failed() {
                        return out;
                    }
                }
            }
        }
    }
    out
}
