//! The two cache tiers behind one interface: object metadata, L1 pieces in memory,
//! L2 pieces on disk.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::l1::MemoryLru;
use crate::l2::{CacheDirError, DiskError, DiskStore};
use crate::lock;
use crate::meta::ObjectMeta;
use crate::metrics::Metrics;

/// Piece writes to disk queued or running at once.
pub const DISK_WRITES: usize = 8;

/// Memory (L1) and disk (L2) cache of objects cut into slices ("pieces").
///
/// Reads go L1, then L2 (promoting into L1), for metadata and pieces alike. Metadata
/// counts against both budgets and is evicted like data: with L2 off, an object
/// whose metadata leaves L1 is gone; with L2 on, it is read back from the disk
/// index, which keeps the metadata of every object on disk (at most one per two
/// blocks of the L2 budget: its meta file and directory are charged).
/// Pieces of an object longer than a quarter of L1 are kept in L1 as cold pieces,
/// evicted before any other: streaming one huge object (miss or hit) recycles its
/// own pieces rather than flushing L1. A disk write that fails is counted and
/// skipped (a full disk first evicts and retries): the proxy goes on serving from
/// L1 and the origin, never failing a client request for it.
#[derive(Debug)]
pub struct TieredCache {
    l1: Mutex<MemoryLru>,
    l2: Option<DiskStore>,
    /// Permits for piece writes queued or running.
    disk_writes: Arc<tokio::sync::Semaphore>,
    /// Purges so far: a metadata write that saw one happen undoes itself.
    purges: AtomicU64,
    /// Objects longer than this are held cold in L1.
    cold_above: u64,
    metrics: Arc<Metrics>,
}

impl TieredCache {
    /// Opens the tiers; `l2_bytes == 0` disables L2. A cache directory that cannot be
    /// created or read leaves L2 off (logged); one that holds files the proxy did not
    /// create (a non-empty directory without the marker) is refused: starting would
    /// risk deleting them.
    pub fn open(
        cache_dir: &Path,
        l1_bytes: u64,
        l2_bytes: u64,
        metrics: Arc<Metrics>,
    ) -> Result<Self, CacheDirError> {
        let l2 = if l2_bytes == 0 {
            None
        } else {
            match DiskStore::open(cache_dir, l2_bytes) {
                // Metadata reaches L1 when it is first asked for.
                Ok((store, _)) => Some(store),
                Err(e @ CacheDirError::Foreign(_)) => return Err(e),
                Err(e) => {
                    tracing::error!(error = %e, "disk cache unusable: memory only");
                    metrics.l2_errors.inc();
                    None
                }
            }
        };
        Ok(Self {
            l1: Mutex::new(MemoryLru::new(l1_bytes)),
            l2,
            disk_writes: Arc::new(tokio::sync::Semaphore::new(DISK_WRITES)),
            purges: AtomicU64::new(0),
            cold_above: l1_bytes / 4,
            metrics,
        })
    }

    fn disk_failed(&self, error: &std::io::Error) {
        tracing::warn!(%error, "disk cache write failed: skipped");
        self.metrics.l2_errors.inc();
    }

    /// Drops from L1 the objects L2 evicted.
    fn evicted_from_disk(&self, keys: Vec<String>) {
        self.metrics.l2_evictions.inc_by(keys.len() as u64);
        let mut l1 = lock(&self.l1);
        for key in keys {
            l1.remove_object(&key);
        }
    }

    fn insert_l1_meta(&self, meta: Arc<ObjectMeta>) {
        let evicted = lock(&self.l1).insert_meta(meta);
        self.metrics.l1_evictions.inc_by(evicted);
    }

    /// Stored metadata of an object (counts as a use).
    pub fn meta(&self, key: &str) -> Option<Arc<ObjectMeta>> {
        if let Some(meta) = lock(&self.l1).meta(key) {
            return Some(meta);
        }
        let meta = self.l2.as_ref()?.meta(key)?;
        self.insert_l1_meta(meta.clone());
        Some(meta)
    }

    /// Stores an object's metadata. If it describes a different object than the one
    /// stored (another version: length, validators or slicing changed) the old pieces
    /// are dropped first.
    pub async fn put_meta(&self, meta: ObjectMeta) {
        let changed = self
            .meta(&meta.key)
            .is_some_and(|old| old.version() != meta.version());
        if changed {
            self.purge(&meta.key).await;
        }
        let meta = Arc::new(meta);
        // Memory first: the fills of the object's other slices see it stored at
        // once instead of writing it again while this write syncs.
        self.insert_l1_meta(meta.clone());
        let Some(disk) = &self.l2 else { return };
        let epoch = self.purges.load(Ordering::Acquire);
        match disk.put_meta(meta.clone()).await {
            Ok(evicted) => self.evicted_from_disk(evicted),
            Err(e) => self.disk_failed(&e),
        }
        // Purged while the file was written: the write must not bring it back. (An
        // L1 eviction of it at the same time costs its disk entry too: a refetch.)
        let purged = self.purges.load(Ordering::Acquire) != epoch
            && lock(&self.l1).meta(&meta.key).is_none();
        if purged && let Some(files) = disk.forget(&meta.key) {
            let _ = disk.delete_files(files).await;
        }
    }

    /// Whether a piece is stored in either tier (no I/O).
    pub fn has_piece(&self, key: &str, index: u64) -> bool {
        lock(&self.l1).contains(key, index)
            || self.l2.as_ref().is_some_and(|d| d.has_piece(key, index))
    }

    /// A stored piece: L1, else L2 (verified, then promoted). A corrupt disk piece is
    /// dropped and reported as absent, so the caller refetches it.
    pub async fn get_piece(&self, key: &str, index: u64) -> Option<Bytes> {
        if let Some(bytes) = lock(&self.l1).get(key, index) {
            self.metrics.l1_piece_hits.inc();
            return Some(bytes);
        }
        let disk = self.l2.as_ref()?;
        match disk.get_piece(key, index).await {
            Ok(Some(bytes)) => {
                self.metrics.l2_piece_reads.inc();
                if let Some(meta) = self.meta(key) {
                    self.insert_l1(&meta, index, bytes.clone());
                }
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

    fn insert_l1(&self, meta: &ObjectMeta, index: u64, bytes: Bytes) {
        let cold = meta.total.is_none_or(|t| t > self.cold_above);
        let evicted = lock(&self.l1).insert(&meta.key, index, bytes, cold);
        self.metrics.l1_evictions.inc_by(evicted.unwrap_or(0));
    }

    /// Stores a piece of `version` ([`ObjectMeta::version`]) in both tiers.
    pub async fn put_piece(self: &Arc<Self>, key: &str, index: u64, version: u64, bytes: Bytes) {
        if self.put_piece_memory(key, index, version, bytes.clone()) {
            self.put_piece_disk(key, index, version, bytes).await;
        }
    }

    /// Stores a piece of `version` in L1 only (no I/O); false if that version of the
    /// object is no longer stored (purged or replaced while its fill ran), in which
    /// case nothing is stored.
    pub fn put_piece_memory(&self, key: &str, index: u64, version: u64, bytes: Bytes) -> bool {
        let Some(meta) = self.meta(key).filter(|m| m.version() == version) else {
            return false;
        };
        self.insert_l1(&meta, index, bytes);
        true
    }

    /// Writes a piece of `version` to L2 (when L2 is on and still holds that version),
    /// evicting objects beyond its budget. The write (`fsync`s included) runs in its
    /// own task, so a fill moves at the origin's pace rather than the disk's; this
    /// waits only while `DISK_WRITES` (8) writes are already queued, which bounds the
    /// memory they hold to that many pieces.
    pub async fn put_piece_disk(
        self: &Arc<Self>,
        key: &str,
        index: u64,
        version: u64,
        bytes: Bytes,
    ) {
        if self.l2.is_none() {
            return;
        }
        let Ok(permit) = self.disk_writes.clone().acquire_owned().await else {
            return;
        };
        self.metrics.l2_writes_pending.inc();
        let (cache, key) = (self.clone(), key.to_owned());
        tokio::spawn(async move {
            if let Some(disk) = &cache.l2 {
                match disk.put_piece(&key, index, version, &bytes).await {
                    Ok(evicted) => cache.evicted_from_disk(evicted),
                    Err(e) => cache.disk_failed(&e),
                }
            }
            cache.metrics.l2_writes_pending.dec();
            drop(permit);
        });
    }

    /// Removes an object from both tiers; returns whether anything was stored.
    pub async fn purge(&self, key: &str) -> bool {
        // Out of the disk index first: a lookup in between would otherwise read the
        // metadata back into L1.
        self.purges.fetch_add(1, Ordering::AcqRel);
        let on_disk = self.l2.as_ref().and_then(|disk| disk.forget(key));
        let in_memory = {
            let mut l1 = lock(&self.l1);
            let had = l1.meta(key).is_some();
            l1.remove_object(key);
            had
        };
        let stored = in_memory || on_disk.is_some();
        if let (Some(disk), Some(files)) = (&self.l2, on_disk)
            && let Err(e) = disk.delete_files(files).await
        {
            tracing::warn!(key, error = %e, "purge: disk removal failed");
        }
        stored
    }

    /// Objects whose metadata is held in memory and on disk.
    pub fn objects_held(&self) -> (usize, usize) {
        let disk = self.l2.as_ref().map_or(0, DiskStore::objects);
        (lock(&self.l1).objects(), disk)
    }

    /// Bytes held in memory and on disk.
    pub fn bytes_held(&self) -> (u64, u64) {
        let disk = self.l2.as_ref().map_or(0, DiskStore::held);
        (lock(&self.l1).held(), disk)
    }
}
