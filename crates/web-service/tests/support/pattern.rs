//! Deterministic test bodies: every 64 KiB chunk differs, so lost, duplicated or
//! reordered chunks change the digest.

use std::convert::Infallible;
use std::sync::OnceLock;

use bytes::Bytes;
use futures_util::{Stream, stream};
use sha2::{Digest, Sha256};

pub const CHUNK: usize = 64 * 1024;
pub const MIB64: u64 = 64 * 1024 * 1024;

fn base() -> &'static [u8] {
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut x: u32 = 0x1234_5678;
        (0..CHUNK)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect()
    })
}

/// Chunk `index` of the pattern, `len` bytes long.
pub fn chunk(index: u64, len: usize) -> Bytes {
    let mut data = base()[..len].to_vec();
    let tag = index.to_le_bytes();
    let n = tag.len().min(len);
    data[..n].copy_from_slice(&tag[..n]);
    Bytes::from(data)
}

/// The first `total` bytes of the pattern as a stream of chunks, produced on demand.
pub fn stream(total: u64) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    stream::unfold(0u64, move |sent| async move {
        if sent >= total {
            return None;
        }
        let len = (total - sent).min(CHUNK as u64) as usize;
        Some((Ok(chunk(sent / CHUNK as u64, len)), sent + len as u64))
    })
}

/// Lowercase hex sha256 of the first `total` bytes of the pattern.
pub fn sha256_hex(total: u64) -> String {
    let mut h = Sha256::new();
    let mut sent = 0u64;
    while sent < total {
        let len = (total - sent).min(CHUNK as u64) as usize;
        h.update(chunk(sent / CHUNK as u64, len));
        sent += len as u64;
    }
    hex::encode(h.finalize())
}
