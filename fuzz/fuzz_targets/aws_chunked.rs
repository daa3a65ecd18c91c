//! Feeds arbitrary bytes, in arbitrary splits, to the `aws-chunked` decoder.
//!
//! It must never panic, must consume every byte it is given, must decode
//! identically whether fed whole or in pieces, and must never yield a chunk
//! beyond its limit or more data than the chunk lines declared.
#![no_main]

use bytes::Bytes;
use http_pack::{AwsChunkEvent, AwsChunkedDecoder, AwsChunkedError, AwsChunkedLimits};
use libfuzzer_sys::fuzz_target;

/// Small limits, so that the fuzzer reaches every limit check.
const LIMITS: AwsChunkedLimits = AwsChunkedLimits {
    max_chunk_size: 4096,
    max_line_len: 128,
    max_trailers: 4,
};

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let whole = decode_all(input, &[input.len().max(1)]);
    let sizes = [1 + usize::from(seed & 0x0f), 1 + usize::from(seed >> 4), 1];
    assert_eq!(whole, decode_all(input, &sizes), "splits changed the result");
});

/// The events (data merged) and the final outcome for `input` fed in pieces.
fn decode_all(input: &[u8], sizes: &[usize]) -> (Vec<AwsChunkEvent>, Result<(), AwsChunkedError>) {
    let mut decoder = AwsChunkedDecoder::with_limits(LIMITS);
    let mut events = Vec::new();
    let mut data = Vec::new();
    let mut declared = 0u64;
    let mut pos = 0;
    for &size in sizes.iter().cycle() {
        if pos >= input.len() {
            break;
        }
        let end = (pos + size).min(input.len());
        let mut piece = Bytes::copy_from_slice(&input[pos..end]);
        pos = end;
        loop {
            match decoder.decode(&mut piece) {
                Ok(Some(AwsChunkEvent::Data(bytes))) => {
                    assert!(!bytes.is_empty());
                    data.extend_from_slice(&bytes);
                    assert!(data.len() as u64 <= declared, "more data than declared");
                }
                Ok(Some(event)) => {
                    if let AwsChunkEvent::Chunk { size, .. } = &event {
                        assert!(*size <= LIMITS.max_chunk_size);
                        assert_eq!(data.len() as u64, declared, "chunk line before data ended");
                        declared += size;
                    }
                    events.push(event);
                }
                Ok(None) => {
                    assert!(piece.is_empty(), "input left unconsumed");
                    break;
                }
                Err(error) => {
                    events.push(AwsChunkEvent::Data(Bytes::from(data)));
                    return (events, Err(error));
                }
            }
        }
    }
    events.push(AwsChunkEvent::Data(Bytes::from(data)));
    (events, decoder.finish())
}
