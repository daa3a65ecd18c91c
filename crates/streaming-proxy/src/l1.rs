//! L1: object metadata and pieces in memory under one byte budget, least recently
//! used evicted first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use crate::meta::ObjectMeta;

/// Order keys of hot entries start here; cold ones stay below, so every cold piece
/// is evicted before any hot entry. The tick counter never comes near it.
const HOT: u64 = 1 << 63;

/// Memory a stored piece costs besides its bytes (its `Bytes`, map and order
/// entries), so that many tiny pieces cannot hold far more than the budget says.
const PIECE_OVERHEAD: u64 = 128;

/// Memory an object's metadata costs: its text plus the maps and `Arc`s holding it,
/// and the parsed copy of its headers that its first hit builds
/// ([`ObjectMeta::stored_map`]), charged up front so that serving an entry
/// never takes L1 over its budget.
pub fn meta_charge(meta: &ObjectMeta) -> u64 {
    const ENTRY: u64 = 256;
    const HEADER: u64 = 64;
    // A `HeaderMap` and its index, and per field its entry and two `Bytes`.
    const PARSED_MAP: u64 = 128;
    const PARSED_FIELD: u64 = 96;
    let headers: u64 = meta
        .headers
        .iter()
        .map(|(n, v)| 2 * (n.len() + v.len()) as u64 + HEADER + PARSED_FIELD)
        .sum();
    ENTRY + PARSED_MAP + 2 * meta.key.len() as u64 + headers
}

/// Which part of an object an order entry stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Meta,
    Piece(u64),
}

#[derive(Debug)]
struct Object {
    /// The key, shared by every order entry of the object.
    name: Arc<str>,
    meta: Arc<ObjectMeta>,
    /// Order key of the metadata.
    used: u64,
    charge: u64,
    /// Slice index -> bytes and order key.
    pieces: HashMap<u64, (Bytes, u64)>,
}

/// Metadata and pieces in memory, least recently used evicted first once `capacity`
/// bytes are held. An object's pieces are only held while its metadata is: evicting
/// the metadata drops them too (they could not be served without it).
///
/// Metadata is always *hot*; a piece is stored hot or *cold*. Cold pieces (those of
/// objects too large to keep whole, see `TieredCache`) are all evicted before any hot
/// entry, oldest first: one sequential pass over a huge object then recycles its own
/// pieces instead of flushing every small, often-hit object out of memory (the LRU
/// scan problem). Every operation is O(log n) in the entries held (a `BTreeMap` of
/// use order, no list to scan), except dropping one object, O(its pieces).
#[derive(Debug)]
pub struct MemoryLru {
    capacity: u64,
    held: u64,
    tick: u64,
    objects: HashMap<Arc<str>, Object>,
    order: BTreeMap<u64, (Arc<str>, Part)>,
}

impl MemoryLru {
    /// An empty LRU holding at most `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            held: 0,
            tick: 0,
            objects: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// Bytes charged (metadata and pieces).
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Objects whose metadata is held.
    pub fn objects(&self) -> usize {
        self.objects.len()
    }

    fn next_tick(&mut self, hot: bool) -> u64 {
        self.tick += 1;
        if hot { HOT + self.tick } else { self.tick }
    }

    /// An object's metadata, marking it most recently used.
    pub fn meta(&mut self, key: &str) -> Option<Arc<ObjectMeta>> {
        let tick = self.next_tick(true);
        let object = self.objects.get_mut(key)?;
        let old = std::mem::replace(&mut object.used, tick);
        self.order.remove(&old);
        self.order.insert(tick, (object.name.clone(), Part::Meta));
        Some(object.meta.clone())
    }

    /// Stores (or replaces) an object's metadata, keeping its pieces; returns how
    /// many entries were evicted to make room. Metadata alone larger than the whole
    /// budget is not stored.
    pub fn insert_meta(&mut self, meta: Arc<ObjectMeta>) -> u64 {
        let charge = meta_charge(&meta);
        if let Some(object) = self.objects.get_mut(meta.key.as_str()) {
            self.held = self.held - object.charge + charge;
            object.charge = charge;
            object.meta = meta.clone();
            self.meta(&meta.key);
            return self.evict(0, Some(&meta.key));
        }
        if charge > self.capacity {
            return 0;
        }
        let evicted = self.evict(charge, None);
        let name: Arc<str> = Arc::from(meta.key.as_str());
        let used = self.next_tick(true);
        self.order.insert(used, (name.clone(), Part::Meta));
        self.objects.insert(
            name.clone(),
            Object {
                name,
                meta,
                used,
                charge,
                pieces: HashMap::new(),
            },
        );
        self.held += charge;
        evicted
    }

    /// The piece, marking it most recently used within its class (hot or cold).
    pub fn get(&mut self, key: &str, index: u64) -> Option<Bytes> {
        self.tick += 1;
        let tick = self.tick;
        let object = self.objects.get_mut(key)?;
        let (bytes, used) = object.pieces.get_mut(&index)?;
        self.order.remove(used);
        *used = if *used >= HOT { HOT + tick } else { tick };
        self.order
            .insert(*used, (object.name.clone(), Part::Piece(index)));
        Some(bytes.clone())
    }

    /// Whether the piece is held (does not count as a use).
    pub fn contains(&self, key: &str, index: u64) -> bool {
        self.objects
            .get(key)
            .is_some_and(|o| o.pieces.contains_key(&index))
    }

    /// Stores a piece, hot or `cold`, of an object whose metadata is held; returns
    /// how many entries were evicted to make room, or `None` if the piece was not
    /// stored (no metadata, or no room even after evicting everything else).
    pub fn insert(&mut self, key: &str, index: u64, bytes: Bytes, cold: bool) -> Option<u64> {
        self.remove(key, index);
        let charge = bytes.len() as u64 + PIECE_OVERHEAD;
        // Its own metadata is the last thing a piece may push out.
        self.meta(key)?;
        let own = self.objects.get(key).map_or(0, |o| o.charge);
        if charge > self.capacity.saturating_sub(own) {
            return None;
        }
        let evicted = self.evict(charge, Some(key));
        if self.held + charge > self.capacity {
            return None;
        }
        let used = self.next_tick(!cold);
        let object = self.objects.get_mut(key)?;
        self.order
            .insert(used, (object.name.clone(), Part::Piece(index)));
        object.pieces.insert(index, (bytes, used));
        self.held += charge;
        Some(evicted)
    }

    /// Evicts least recently used entries until `room` more bytes fit, never the
    /// metadata of `keep`; returns how many entries went.
    fn evict(&mut self, room: u64, keep: Option<&str>) -> u64 {
        let mut evicted = 0;
        while self.held + room > self.capacity {
            let Some(entry) = self.order.first_entry() else {
                break;
            };
            let (name, part) = entry.get().clone();
            if part == Part::Meta && keep == Some(&*name) {
                // Only the kept object's own entries are older: evict those instead.
                let Some(older) = self.oldest_piece_of(&name) else {
                    break;
                };
                self.remove(&name, older);
                evicted += 1;
                continue;
            }
            entry.remove();
            match part {
                Part::Piece(index) => {
                    if let Some(object) = self.objects.get_mut(&name)
                        && let Some((bytes, _)) = object.pieces.remove(&index)
                    {
                        self.held -= bytes.len() as u64 + PIECE_OVERHEAD;
                    }
                    evicted += 1;
                }
                Part::Meta => evicted += self.drop_object(&name),
            }
        }
        evicted
    }

    fn oldest_piece_of(&self, key: &str) -> Option<u64> {
        let object = self.objects.get(key)?;
        object
            .pieces
            .iter()
            .min_by_key(|(_, (_, used))| *used)
            .map(|(i, _)| *i)
    }

    /// Removes an object's metadata and pieces (its metadata's order entry already
    /// gone or not); returns how many entries went.
    fn drop_object(&mut self, key: &str) -> u64 {
        let Some(object) = self.objects.remove(key) else {
            return 0;
        };
        self.order.remove(&object.used);
        self.held -= object.charge;
        for (bytes, used) in object.pieces.values() {
            self.order.remove(used);
            self.held -= bytes.len() as u64 + PIECE_OVERHEAD;
        }
        1 + object.pieces.len() as u64
    }

    /// Drops a piece.
    pub fn remove(&mut self, key: &str, index: u64) {
        if let Some(object) = self.objects.get_mut(key)
            && let Some((bytes, used)) = object.pieces.remove(&index)
        {
            self.order.remove(&used);
            self.held -= bytes.len() as u64 + PIECE_OVERHEAD;
        }
    }

    /// Drops an object's metadata and every piece of it.
    pub fn remove_object(&mut self, key: &str) {
        self.drop_object(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str) -> Arc<ObjectMeta> {
        Arc::new(ObjectMeta {
            key: key.into(),
            status: 200,
            headers: Vec::new(),
            total: Some(1 << 20),
            slice_size: 4096,
            fresh_until: 0,
            cacheable: true,
            stored_at: 0,
            vary: Vec::new(),
            parsed: Default::default(),
        })
    }

    fn bytes(n: usize) -> Bytes {
        Bytes::from(vec![7; n])
    }

    const M: u64 = 256 + 128 + 2; // meta_charge of a one-letter key without headers
    const P: u64 = PIECE_OVERHEAD;

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let mut lru = MemoryLru::new(M + 3 * (P + 4));
        assert_eq!(meta_charge(&meta("a")), M);
        lru.insert_meta(meta("a"));
        assert_eq!(lru.insert("a", 0, bytes(4), false), Some(0));
        assert_eq!(lru.insert("a", 1, bytes(4), false), Some(0));
        assert_eq!(lru.insert("a", 2, bytes(4), false), Some(0));
        assert!(lru.get("a", 0).is_some());
        assert_eq!(lru.insert("a", 3, bytes(4), false), Some(1));
        assert!(!lru.contains("a", 1), "least recently used goes first");
        assert!(lru.contains("a", 0) && lru.contains("a", 3));
        assert_eq!(lru.held(), M + 3 * (P + 4));
        assert_eq!(lru.insert("a", 4, bytes(1000), false), None, "too big");
        assert_eq!(lru.insert("b", 0, bytes(4), false), None, "no metadata");
        lru.remove_object("a");
        assert_eq!((lru.held(), lru.objects()), (0, 0));
    }

    #[test]
    fn metadata_is_evicted_like_data_and_takes_its_pieces() {
        let mut lru = MemoryLru::new(3 * M);
        lru.insert_meta(meta("a"));
        lru.insert_meta(meta("b"));
        lru.insert_meta(meta("c"));
        assert!(lru.meta("a").is_some());
        // Room for d: b, the least recently used, goes.
        assert_eq!(lru.insert_meta(meta("d")), 1);
        assert!(lru.meta("b").is_none() && lru.meta("a").is_some());
        assert_eq!((lru.held(), lru.objects()), (3 * M, 3));
        // A piece of c needs room: d, the oldest entry (a was just used), goes.
        assert_eq!(lru.insert("c", 0, bytes(8), false), Some(1));
        assert!(lru.contains("c", 0));
        assert_eq!(lru.insert_meta(meta("e")), 1, "a");
        assert!(lru.meta("d").is_none() && lru.meta("a").is_none());
        lru.meta("e");
        // c's metadata is now the oldest entry: it goes, and its piece with it.
        assert_eq!(lru.insert_meta(meta("f")), 2);
        assert!(lru.meta("c").is_none() && !lru.contains("c", 0));
        assert_eq!(lru.held(), 2 * M);
        // Many distinct objects: the count stays bounded by the budget.
        for i in 0..10_000 {
            lru.insert_meta(meta(&format!("k{i}")));
        }
        assert!(lru.objects() <= 3 && lru.held() <= 3 * M);
    }

    #[test]
    fn cold_pieces_go_before_any_hot_one() {
        let mut lru = MemoryLru::new(2 * M + 3 * (P + 4));
        lru.insert_meta(meta("s"));
        lru.insert_meta(meta("h"));
        lru.insert("s", 0, bytes(4), false);
        lru.insert("h", 0, bytes(4), true);
        lru.insert("s", 1, bytes(4), false);
        // Used after the hot ones, a cold piece still goes first...
        assert!(lru.get("h", 0).is_some());
        assert_eq!(lru.insert("h", 1, bytes(4), true), Some(1));
        assert!(!lru.contains("h", 0));
        // ...and a pass over many cold pieces recycles its own, never a hot one.
        for i in 2..50 {
            assert_eq!(lru.insert("h", i, bytes(4), true), Some(1));
        }
        assert!(lru.contains("s", 0) && lru.contains("s", 1) && lru.contains("h", 49));
        assert!(lru.meta("s").is_some() && lru.meta("h").is_some());
        // Among hot entries the order is plain LRU; with no cold piece left, hot goes.
        lru.remove("h", 49);
        assert!(lru.get("s", 0).is_some());
        lru.insert("s", 2, bytes(4), false);
        assert_eq!(lru.insert("s", 3, bytes(4), false), Some(1));
        assert!(!lru.contains("s", 1) && lru.contains("s", 0));
    }
}
