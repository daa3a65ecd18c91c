//! L1: a byte-bounded LRU of pieces in memory.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

/// A piece's address: object key and slice index.
pub type PieceKey = (String, u64);

/// Order keys of hot pieces start here; cold ones stay below, so every cold piece
/// is evicted before any hot one. The tick counter never comes near it.
const HOT: u64 = 1 << 63;

/// Pieces in memory, least recently used evicted first once `capacity` bytes are held.
///
/// A piece is stored *hot* or *cold*. Cold pieces (those of objects too large to
/// keep whole, see `TieredCache`) are all evicted before any hot one, oldest first:
/// one sequential pass over a huge object then recycles its own pieces instead of
/// flushing every small, often-hit object out of memory (the LRU scan problem).
#[derive(Debug)]
pub struct MemoryLru {
    capacity: u64,
    held: u64,
    tick: u64,
    pieces: HashMap<PieceKey, (Bytes, u64)>,
    // Use order: order key -> piece. A BTreeMap keeps eviction O(log n) without
    // unsafe lists.
    order: BTreeMap<u64, PieceKey>,
}

impl MemoryLru {
    /// An empty LRU holding at most `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            held: 0,
            tick: 0,
            pieces: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// Bytes held.
    pub fn held(&self) -> u64 {
        self.held
    }

    /// The piece, marking it most recently used within its class (hot or cold).
    pub fn get(&mut self, key: &PieceKey) -> Option<Bytes> {
        self.tick += 1;
        let tick = self.tick;
        let (bytes, used) = self.pieces.get_mut(key)?;
        self.order.remove(used);
        *used = if *used >= HOT { HOT + tick } else { tick };
        self.order.insert(*used, key.clone());
        Some(bytes.clone())
    }

    /// Whether the piece is held (does not count as a use).
    pub fn contains(&self, key: &PieceKey) -> bool {
        self.pieces.contains_key(key)
    }

    /// Stores a piece, hot or `cold`; returns how many pieces were evicted to make
    /// room. A piece larger than the whole capacity is not stored.
    pub fn insert(&mut self, key: PieceKey, bytes: Bytes, cold: bool) -> u64 {
        let len = bytes.len() as u64;
        self.remove(&key);
        if len > self.capacity {
            return 0;
        }
        let mut evicted = 0;
        while self.held + len > self.capacity {
            let Some((_, victim)) = self.order.pop_first() else {
                break;
            };
            if let Some((old, _)) = self.pieces.remove(&victim) {
                self.held -= old.len() as u64;
                evicted += 1;
            }
        }
        self.tick += 1;
        let used = if cold { self.tick } else { HOT + self.tick };
        self.order.insert(used, key.clone());
        self.pieces.insert(key, (bytes, used));
        self.held += len;
        evicted
    }

    /// Drops a piece.
    pub fn remove(&mut self, key: &PieceKey) {
        if let Some((bytes, used)) = self.pieces.remove(key) {
            self.order.remove(&used);
            self.held -= bytes.len() as u64;
        }
    }

    /// Drops every piece of an object.
    pub fn remove_object(&mut self, object: &str) {
        let victims: Vec<PieceKey> = self
            .pieces
            .keys()
            .filter(|(k, _)| k == object)
            .cloned()
            .collect();
        for key in victims {
            self.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let mut lru = MemoryLru::new(10);
        let k = |i| ("a".to_owned(), i);
        assert_eq!(lru.insert(k(0), Bytes::from_static(b"0123"), false), 0);
        assert_eq!(lru.insert(k(1), Bytes::from_static(b"4567"), false), 0);
        assert!(lru.get(&k(0)).is_some());
        assert_eq!(lru.insert(k(2), Bytes::from_static(b"89ab"), false), 1);
        assert!(!lru.contains(&k(1)), "least recently used goes first");
        assert!(lru.contains(&k(0)) && lru.contains(&k(2)));
        assert_eq!(lru.held(), 8);
        assert_eq!(lru.insert(k(3), Bytes::from(vec![0; 11]), false), 0);
        assert!(!lru.contains(&k(3)));
        lru.remove_object("a");
        assert_eq!(lru.held(), 0);
    }

    #[test]
    fn cold_pieces_go_before_any_hot_one() {
        let mut lru = MemoryLru::new(12);
        let hot = |i| ("small".to_owned(), i);
        let cold = |i| ("huge".to_owned(), i);
        let four = || Bytes::from_static(b"abcd");
        lru.insert(hot(0), four(), false);
        lru.insert(cold(0), four(), true);
        lru.insert(hot(1), four(), false);
        // Used after the hot ones, a cold piece still goes first...
        assert!(lru.get(&cold(0)).is_some());
        assert_eq!(lru.insert(cold(1), four(), true), 1);
        assert!(!lru.contains(&cold(0)));
        // ...and a pass over many cold pieces recycles its own, never a hot one.
        for i in 2..50 {
            assert_eq!(lru.insert(cold(i), four(), true), 1);
        }
        assert!(lru.contains(&hot(0)) && lru.contains(&hot(1)) && lru.contains(&cold(49)));
        assert_eq!(lru.held(), 12);
        // Among hot pieces the order is plain LRU; with no cold piece left, hot goes.
        lru.remove(&cold(49));
        assert!(lru.get(&hot(0)).is_some());
        lru.insert(hot(2), four(), false);
        assert_eq!(lru.insert(hot(3), four(), false), 1);
        assert!(!lru.contains(&hot(1)) && lru.contains(&hot(0)));
    }
}
