//! The bytes an upload sends: a cheap, deterministic, non-zero pattern.

use bytes::Bytes;

/// Default size of one upload chunk (one body frame, one WebSocket message).
pub const DEFAULT_CHUNK: usize = 256 * 1024;

/// A block of pattern bytes that chunks are sliced from without copying.
///
/// Zero bytes would let a compressing or sparse-aware layer cheat; a period of
/// 251 (prime) never lines up with power-of-two chunk or slot sizes.
#[derive(Debug, Clone)]
pub struct Pattern {
    block: Bytes,
}

impl Pattern {
    /// A pattern whose chunks are at most `chunk` bytes (at least one).
    pub fn new(chunk: usize) -> Self {
        let chunk = chunk.max(1);
        let block: Vec<u8> = (0..chunk).map(|i| (i % 251) as u8 + 1).collect();
        Self {
            block: Bytes::from(block),
        }
    }

    /// The largest chunk this pattern hands out.
    pub fn chunk_len(&self) -> usize {
        self.block.len()
    }

    /// The chunks that make up a body of `total` bytes.
    pub fn chunks(&self, total: u64) -> Chunks {
        Chunks {
            block: self.block.clone(),
            remaining: total,
        }
    }
}

/// Iterator over the chunks of one body; each is a zero-copy slice of the block.
#[derive(Debug, Clone)]
pub struct Chunks {
    block: Bytes,
    remaining: u64,
}

impl Chunks {
    /// No chunks at all: the body of a GET (allocates nothing).
    pub fn empty() -> Self {
        Self {
            block: Bytes::new(),
            remaining: 0,
        }
    }

    /// Bytes not handed out yet.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }
}

impl Iterator for Chunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.remaining == 0 {
            return None;
        }
        let len = self.remaining.min(self.block.len() as u64) as usize;
        self.remaining -= len as u64;
        Some(self.block.slice(..len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_total_exactly_and_hold_no_zero() {
        let pattern = Pattern::new(1000);
        let chunks: Vec<Bytes> = pattern.chunks(2500).collect();
        let lens: Vec<usize> = chunks.iter().map(Bytes::len).collect();
        assert_eq!(lens, [1000, 1000, 500]);
        assert!(chunks.iter().all(|c| !c.contains(&0)));
        assert_eq!(pattern.chunks(0).count(), 0);
    }
}
