//! The two cache tiers behind one interface: object metadata, L1 pieces in memory,
//! L2 pieces on disk.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::l1::MemoryLru;
use crate::l2::{DiskError, DiskStore};
use crate::lock;
use crate::meta::ObjectMeta;
use crate::metrics::Metrics;

/// Memory (L1) and disk (L2) cache of objects cut into slices ("pieces").
///
/// Metadata of every stored object is kept in memory (and on disk with L2). Reads go
/// L1, then L2 (promoting into L1). Pieces of an object longer than a quarter of L1
/// are kept in L1 as cold pieces, evicted before any other: streaming one huge
/// object (miss or hit) recycles its own pieces rather than flushing L1. A disk that fails a write is switched off for the
/// rest of the process: the proxy goes on with L1 only, and with nothing but
/// pass-through if L1 is too small, never failing a client request for it.
#[derive(Debug)]
pub struct TieredCache {
    metas: Mutex<HashMap<String, Arc<ObjectMeta>>>,
    l1: Mutex<MemoryLru>,
    l2: Option<DiskStore>,
    l2_failed: AtomicBool,
    /// Objects longer than this are held cold in L1.
    cold_above: u64,
    metrics: Arc<Metrics>,
}

impl TieredCache {
    /// Opens the tiers; a disk directory that cannot be opened leaves L2 off (logged).
    /// `l2_bytes == 0` disables L2.
    pub fn open(cache_dir: &Path, l1_bytes: u64, l2_bytes: u64, metrics: Arc<Metrics>) -> Self {
        let mut metas = HashMap::new();
        let l2 = if l2_bytes == 0 {
            None
        } else {
            match DiskStore::open(cache_dir, l2_bytes) {
                Ok((store, stored)) => {
                    for meta in stored {
                        metas.insert(meta.key.clone(), Arc::new(meta));
                    }
                    Some(store)
                }
                Err(e) => {
                    tracing::error!(dir = %cache_dir.display(), error = %e, "disk cache unusable: memory only");
                    metrics.l2_errors.inc();
                    None
                }
            }
        };
        Self {
            metas: Mutex::new(metas),
            l1: Mutex::new(MemoryLru::new(l1_bytes)),
            l2,
            l2_failed: AtomicBool::new(false),
            cold_above: l1_bytes / 4,
            metrics,
        }
    }

    fn disk(&self) -> Option<&DiskStore> {
        self.l2
            .as_ref()
            .filter(|_| !self.l2_failed.load(Ordering::Relaxed))
    }

    fn disk_failed(&self, error: &std::io::Error) {
        tracing::error!(%error, "disk cache write failed: continuing without L2");
        self.metrics.l2_errors.inc();
        self.l2_failed.store(true, Ordering::Relaxed);
    }

    /// Stored metadata of an object.
    pub fn meta(&self, key: &str) -> Option<Arc<ObjectMeta>> {
        lock(&self.metas).get(key).cloned()
    }

    /// Stores an object's metadata. If it describes a different object than the one
    /// stored (length, validators or slicing changed) the old pieces are dropped first.
    pub async fn put_meta(&self, meta: ObjectMeta) {
        let changed = self
            .meta(&meta.key)
            .is_some_and(|old| !old.same_object(&meta));
        if changed {
            self.purge(&meta.key).await;
        }
        if let Some(disk) = self.disk()
            && let Err(e) = disk.put_meta(&meta).await
        {
            self.disk_failed(&e);
        }
        lock(&self.metas).insert(meta.key.clone(), Arc::new(meta));
    }

    /// Whether a piece is stored in either tier (no I/O).
    pub fn has_piece(&self, key: &str, index: u64) -> bool {
        lock(&self.l1).contains(&(key.to_owned(), index))
            || self.disk().is_some_and(|d| d.has_piece(key, index))
    }

    /// A stored piece: L1, else L2 (verified, then promoted). A corrupt disk piece is
    /// dropped and reported as absent, so the caller refetches it.
    pub async fn get_piece(&self, key: &str, index: u64) -> Option<Bytes> {
        let id = (key.to_owned(), index);
        if let Some(bytes) = lock(&self.l1).get(&id) {
            self.metrics.l1_piece_hits.inc();
            return Some(bytes);
        }
        let disk = self.disk()?;
        match disk.get_piece(key, index).await {
            Ok(Some(bytes)) => {
                self.metrics.l2_piece_reads.inc();
                self.insert_l1(id, bytes.clone());
                Some(bytes)
            }
            Ok(None) => None,
            Err(DiskError::Corrupt { .. }) => {
                self.metrics.l2_corrupt.inc();
                None
            }
            Err(DiskError::Io(e)) => {
                tracing::warn!(key, index, error = %e, "disk cache read failed");
                self.metrics.l2_errors.inc();
                None
            }
        }
    }

    fn insert_l1(&self, id: (String, u64), bytes: Bytes) {
        let cold = self
            .meta(&id.0)
            .is_none_or(|m| m.total.is_none_or(|t| t > self.cold_above));
        let evicted = lock(&self.l1).insert(id, bytes, cold);
        self.metrics.l1_evictions.inc_by(evicted);
    }

    /// Stores a piece in both tiers (the object's meta must be stored first).
    pub async fn put_piece(&self, key: &str, index: u64, bytes: Bytes) {
        if self.put_piece_memory(key, index, bytes.clone()) {
            self.put_piece_disk(key, index, bytes).await;
        }
    }

    /// Stores a piece in L1 only (no I/O); false if the object's meta is gone
    /// (purged while its fill ran), in which case nothing is stored.
    pub fn put_piece_memory(&self, key: &str, index: u64, bytes: Bytes) -> bool {
        if !lock(&self.metas).contains_key(key) {
            return false;
        }
        self.insert_l1((key.to_owned(), index), bytes);
        true
    }

    /// Writes a piece to L2 (when L2 is on), evicting objects beyond its budget.
    pub async fn put_piece_disk(&self, key: &str, index: u64, bytes: Bytes) {
        if let Some(disk) = self.disk() {
            match disk.put_piece(key, index, &bytes).await {
                Ok(evicted) => {
                    self.metrics.l2_evictions.inc_by(evicted.len() as u64);
                    let mut metas = lock(&self.metas);
                    let mut l1 = lock(&self.l1);
                    for key in evicted {
                        metas.remove(&key);
                        l1.remove_object(&key);
                    }
                }
                Err(e) => self.disk_failed(&e),
            }
        }
    }

    /// Removes an object from both tiers; returns whether anything was stored.
    pub async fn purge(&self, key: &str) -> bool {
        let had_meta = lock(&self.metas).remove(key).is_some();
        lock(&self.l1).remove_object(key);
        let on_disk = match &self.l2 {
            Some(disk) => disk.remove_object(key).await.unwrap_or_else(|e| {
                tracing::warn!(key, error = %e, "purge: disk removal failed");
                true
            }),
            None => false,
        };
        had_meta || on_disk
    }

    /// Bytes held in memory and on disk.
    pub fn bytes_held(&self) -> (u64, u64) {
        let disk = self.l2.as_ref().map_or(0, DiskStore::held);
        (lock(&self.l1).held(), disk)
    }
}
