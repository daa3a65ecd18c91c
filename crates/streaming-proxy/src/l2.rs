//! L2: pieces on disk, one directory per object, each piece file checksummed under
//! the object's version; the index is rebuilt from the directory at start-up.
//!
//! Layout (see `docs/streaming-proxy.md`): `<cache_dir>/.streaming-proxy-cache` (the
//! marker: the proxy only uses, and only ever deletes in, a directory that has it or
//! that was empty), `<cache_dir>/<xxh3-128 of the key, hex>/meta` (the [`ObjectMeta`]
//! as TOML) and `<index>.piece` files: magic `SPP2`, the object's version token
//! ([`ObjectMeta::version`]), an xxh3-64 checksum of key, index, version and bytes
//! (both little endian), the bytes.
//!
//! Crash safety: every file is written to a temporary name, `fsync`ed, renamed into
//! place, and its directory `fsync`ed, so after a crash a final name holds either
//! nothing or a whole file. A piece left from another version (its object replaced
//! while the disk had not yet made the removal durable) fails the version check at
//! start-up and its checksum on read; a torn or tampered one fails its checksum.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::lock;
use crate::meta::ObjectMeta;

const MAGIC: &[u8; 4] = b"SPP2";
const HEADER: usize = 20;
/// Name of the marker file at the cache root.
pub const MARKER: &str = ".streaming-proxy-cache";
const MARKER_TEXT: &str = "streaming-proxy disk cache, format SPP2: \
    delete this directory only with the proxy stopped\n";
/// What a file or directory costs on disk at least: one file system block.
const BLOCK: u64 = 4096;

/// Why a disk read gave no piece.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The file's checksum does not match its bytes and version; it has been deleted.
    #[error("corrupt piece {index} of {key:?}")]
    Corrupt {
        /// Object key.
        key: String,
        /// Slice index.
        index: u64,
    },
    /// The file system failed.
    #[error("disk cache I/O: {0}")]
    Io(#[from] io::Error),
}

/// Why the disk cache cannot open its directory.
#[derive(Debug, thiserror::Error)]
pub enum CacheDirError {
    /// The directory holds files the proxy did not create.
    #[error(
        "cache_dir {} is not empty and has no {MARKER} marker: it was not created by \
         streaming-proxy, refusing to use it (its files would be deleted); point \
         --cache-dir at an empty or new directory",
        .0.display()
    )]
    Foreign(PathBuf),
    /// The directory cannot be created or read.
    #[error("cache_dir {}: {}", .0.display(), .1)]
    Io(PathBuf, io::Error),
}

/// Bytes a file of `len` bytes takes on disk (whole blocks).
fn on_disk(len: u64) -> u64 {
    len.div_ceil(BLOCK).max(1) * BLOCK
}

#[derive(Debug)]
struct DiskObject {
    name: Arc<str>,
    dir: PathBuf,
    meta: Arc<ObjectMeta>,
    /// Slice index -> bytes charged.
    pieces: HashMap<u64, u64>,
    /// Bytes charged: pieces, the meta file and the directory.
    charge: u64,
    used: u64,
}

#[derive(Debug, Default)]
struct Index {
    objects: HashMap<Arc<str>, DiskObject>,
    /// Use order -> object: eviction takes the first entry, O(log n).
    order: BTreeMap<u64, Arc<str>>,
    held: u64,
    tick: u64,
    /// The budget; lowered when the disk fills up before it is reached.
    capacity: u64,
}

impl Index {
    fn touch(&mut self, key: &str) -> Option<&mut DiskObject> {
        self.tick += 1;
        let tick = self.tick;
        let object = self.objects.get_mut(key)?;
        self.order.remove(&object.used);
        object.used = tick;
        self.order.insert(tick, object.name.clone());
        Some(object)
    }

    fn remove(&mut self, key: &str) -> Option<DiskObject> {
        let object = self.objects.remove(key)?;
        self.order.remove(&object.used);
        self.held -= object.charge;
        Some(object)
    }

    /// Least recently used objects other than `keep` taken out of the index until
    /// `held + room` fits the budget.
    fn evict(&mut self, room: u64, keep: &str) -> Vec<DiskObject> {
        let mut victims = Vec::new();
        let mut kept = None;
        while self.held + room > self.capacity {
            let Some((used, name)) = self.order.pop_first() else {
                break;
            };
            if &*name == keep {
                kept = Some((used, name));
                continue;
            }
            if let Some(object) = self.objects.remove(&name) {
                self.held -= object.charge;
                victims.push(object);
            }
        }
        if let Some((used, name)) = kept {
            self.order.insert(used, name);
        }
        victims
    }
}

/// The files of an object no longer in the index, to be deleted.
#[derive(Debug)]
pub struct StoredFiles(PathBuf);

/// The disk tier.
#[derive(Debug)]
pub struct DiskStore {
    root: PathBuf,
    index: Mutex<Index>,
}

fn object_dir(root: &Path, key: &str) -> PathBuf {
    root.join(format!(
        "{:032x}",
        xxhash_rust::xxh3::xxh3_128(key.as_bytes())
    ))
}

fn piece_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index}.piece"))
}

/// Whether a name in the cache root is an object directory's.
fn is_object_dir_name(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a name in the cache root is one of [`write_file_durably`]'s temporaries.
fn is_temporary_name(name: &str) -> bool {
    name.ends_with(".tmp")
        && (name.starts_with(MARKER)
            || name
                .get(..33)
                .is_some_and(|p| is_object_dir_name(&p[..32]) && p.ends_with('.')))
}

/// The checksum of a piece: key, index and version bound to its bytes, so a file
/// moved to another object, index or version fails it.
fn checksum(key: &str, index: u64, version: u64, bytes: &[u8]) -> u64 {
    let mut hash = xxhash_rust::xxh3::Xxh3::new();
    hash.update(key.as_bytes());
    hash.update(&index.to_le_bytes());
    hash.update(&version.to_le_bytes());
    hash.update(bytes);
    hash.digest()
}

fn piece_header(key: &str, index: u64, version: u64, bytes: &[u8]) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&version.to_le_bytes());
    header.extend_from_slice(&checksum(key, index, version, bytes).to_le_bytes());
    header
}

fn le_u64(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_le_bytes)
}

/// Whether `data` (a whole piece file) is piece `index` of `meta`'s version.
fn valid_piece(meta: &ObjectMeta, index: u64, data: &[u8]) -> bool {
    let version = meta.version();
    data.len() >= HEADER
        && &data[..4] == MAGIC
        && le_u64(&data[4..12]) == Some(version)
        && le_u64(&data[12..HEADER]) == Some(checksum(&meta.key, index, version, &data[HEADER..]))
}

/// Makes sure `root` exists and is ours: creates it (and the marker) when missing or
/// empty, refuses a non-empty directory without the marker.
fn claim_root(root: &Path) -> Result<(), CacheDirError> {
    let io_err = |e| CacheDirError::Io(root.to_owned(), e);
    std::fs::create_dir_all(root).map_err(io_err)?;
    if root.join(MARKER).is_file() {
        return Ok(());
    }
    for entry in std::fs::read_dir(root).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(MARKER) && name.ends_with(".tmp") {
            // Ours: a crash while the marker was being written.
            std::fs::remove_file(&path).map_err(io_err)?;
        } else {
            return Err(CacheDirError::Foreign(root.to_owned()));
        }
    }
    write_file_durably(root, &root.join(MARKER), &[MARKER_TEXT.as_bytes()]).map_err(io_err)
}

impl DiskStore {
    /// Opens (creating) `root` and rebuilds the index from what is there; returns the
    /// stored objects' metadata. Entries that fail a check (unreadable meta, pieces of
    /// another version or length, files left by a crash) are deleted and skipped;
    /// names the proxy does not create are left alone.
    pub fn open(root: &Path, capacity: u64) -> Result<(Self, Vec<Arc<ObjectMeta>>), CacheDirError> {
        claim_root(root)?;
        let entries = std::fs::read_dir(root).map_err(|e| CacheDirError::Io(root.to_owned(), e))?;
        let mut objects = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::warn!(dir = %root.display(), error = %e, "disk cache: unreadable entry skipped");
                    continue;
                }
            };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == MARKER {
                continue;
            }
            if is_temporary_name(&name) {
                // Left by a crash between write and rename.
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            if !is_object_dir_name(&name) || !entry.path().is_dir() {
                tracing::warn!(entry = %entry.path().display(), "disk cache: not ours, left alone");
                continue;
            }
            match rebuild_object(root, &entry.path()) {
                Ok(Some(object)) => objects.push(object),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "disk cache: entry skipped");
                }
            }
        }
        // Oldest first: the use order of the previous run is not kept, the store time is.
        objects.sort_by_key(|o| o.meta.stored_at);
        let mut index = Index {
            capacity,
            ..Index::default()
        };
        let mut metas = Vec::with_capacity(objects.len());
        for mut object in objects {
            index.tick += 1;
            object.used = index.tick;
            index.order.insert(object.used, object.name.clone());
            index.held += object.charge;
            metas.push(object.meta.clone());
            index.objects.insert(object.name.clone(), object);
        }
        // A budget lowered since the last run is honoured at once.
        let victims = index.evict(0, "");
        metas.retain(|m| !victims.iter().any(|v| v.meta.key == m.key));
        for victim in &victims {
            let _ = remove_object_dir(&victim.dir);
        }
        tracing::info!(
            objects = metas.len(),
            bytes = index.held,
            evicted = victims.len(),
            "disk cache index rebuilt"
        );
        let store = Self {
            root: root.to_owned(),
            index: Mutex::new(index),
        };
        Ok((store, metas))
    }

    /// Bytes charged on disk (pieces, meta files, directories).
    pub fn held(&self) -> u64 {
        lock(&self.index).held
    }

    /// Objects in the index.
    pub fn objects(&self) -> usize {
        lock(&self.index).objects.len()
    }

    /// Whether the index lists the piece.
    pub fn has_piece(&self, key: &str, index: u64) -> bool {
        lock(&self.index)
            .objects
            .get(key)
            .is_some_and(|o| o.pieces.contains_key(&index))
    }

    /// The stored metadata of an object (counts as a use).
    pub fn meta(&self, key: &str) -> Option<Arc<ObjectMeta>> {
        lock(&self.index).touch(key).map(|o| o.meta.clone())
    }

    /// Writes (or replaces) an object's metadata; returns the keys of objects evicted
    /// to make room. Pieces of another version must have been removed first
    /// ([`remove_object`](Self::remove_object)).
    pub async fn put_meta(&self, meta: Arc<ObjectMeta>) -> io::Result<Vec<String>> {
        let dir = object_dir(&self.root, &meta.key);
        let text = meta.encode().map_err(io::Error::other)?;
        let (root, path) = (self.root.clone(), dir.join("meta"));
        let charge = on_disk(text.len() as u64) + BLOCK;
        blocking(move || {
            if !dir.is_dir() {
                std::fs::create_dir(&dir)?;
                sync_dir(&root)?;
            }
            write_file_durably(&root, &path, &[text.as_bytes()])
        })
        .await?;
        let victims = {
            let mut idx = lock(&self.index);
            let key = meta.key.as_str();
            let old = idx.objects.get(key).map(|o| (o.meta.clone(), o.charge));
            match old {
                Some((old_meta, old_charge)) if old_meta.version() == meta.version() => {
                    if let Some(object) = idx.touch(key) {
                        let pieces: u64 = object.pieces.values().sum();
                        object.meta = meta.clone();
                        object.charge = pieces + charge;
                        idx.held = idx.held - old_charge + pieces + charge;
                    }
                }
                _ => {
                    idx.remove(key);
                    let name: Arc<str> = Arc::from(key);
                    idx.tick += 1;
                    let used = idx.tick;
                    idx.order.insert(used, name.clone());
                    idx.held += charge;
                    idx.objects.insert(
                        name.clone(),
                        DiskObject {
                            name,
                            dir: object_dir(&self.root, key),
                            meta: meta.clone(),
                            pieces: HashMap::new(),
                            charge,
                            used,
                        },
                    );
                }
            }
            idx.evict(0, key)
        };
        Ok(self.delete(victims).await)
    }

    /// Writes a piece of `version` of an object whose meta is stored; returns the keys
    /// of objects evicted to stay within capacity. Nothing is written when the stored
    /// object is gone or of another version. A full disk (`ENOSPC`) evicts least
    /// recently used objects, lowers the budget to what the disk holds, and retries
    /// once.
    pub async fn put_piece(
        &self,
        key: &str,
        index: u64,
        version: u64,
        bytes: &Bytes,
    ) -> io::Result<Vec<String>> {
        let charge = on_disk((HEADER + bytes.len()) as u64);
        let (dir, mut victims) = {
            let mut idx = lock(&self.index);
            let Some(object) = idx.objects.get(key) else {
                return Ok(Vec::new());
            };
            if object.meta.version() != version {
                return Ok(Vec::new());
            }
            let dir = object.dir.clone();
            let replaced = object.pieces.get(&index).copied().unwrap_or(0);
            (dir, idx.evict(charge.saturating_sub(replaced), key))
        };
        let mut evicted = self.delete(std::mem::take(&mut victims)).await;
        let header = piece_header(key, index, version, bytes);
        let path = piece_path(&dir, index);
        let write = || {
            let (path, header, bytes) = (path.clone(), header.clone(), bytes.clone());
            let root = self.root.clone();
            blocking(move || write_file_durably(&root, &path, &[&header, &bytes]))
        };
        if let Err(e) = write().await {
            if e.kind() != io::ErrorKind::StorageFull {
                return Err(e);
            }
            // The file system filled before the budget did: shrink the budget to what
            // fits now, minus room for this piece and some slack, and try again.
            let victims = {
                let mut idx = lock(&self.index);
                let slack = (idx.capacity / 64).max(charge);
                idx.capacity = idx.held.saturating_sub(slack).max(charge);
                tracing::warn!(
                    capacity = idx.capacity,
                    "disk full: disk cache budget lowered"
                );
                idx.evict(charge, key)
            };
            evicted.extend(self.delete(victims).await);
            write().await?;
        }
        let mut idx = lock(&self.index);
        let Some(object) = idx
            .objects
            .get_mut(key)
            .filter(|o| o.meta.version() == version)
        else {
            // Purged or replaced while writing: do not resurrect it (rare: a blocking
            // unlink is fine).
            drop(idx);
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_dir(&dir); // if this was its last file
            return Ok(evicted);
        };
        let old = object.pieces.insert(index, charge).unwrap_or(0);
        object.charge = object.charge + charge - old;
        idx.held = idx.held + charge - old;
        idx.touch(key);
        Ok(evicted)
    }

    /// Reads and verifies a piece against the stored version. `Ok(None)`: not stored.
    pub async fn get_piece(&self, key: &str, index: u64) -> Result<Option<Bytes>, DiskError> {
        let (dir, meta) = {
            let mut idx = lock(&self.index);
            match idx.touch(key) {
                Some(o) if o.pieces.contains_key(&index) => (o.dir.clone(), o.meta.clone()),
                _ => return Ok(None),
            }
        };
        let path = piece_path(&dir, index);
        let data = match tokio::fs::read(&path).await {
            Ok(data) => data,
            Err(e) => {
                // Unreadable (deleted behind our back, I/O error): forget it, so the
                // slice is fetched again rather than looked for on every request.
                self.forget_piece(key, index);
                return Err(e.into());
            }
        };
        if !valid_piece(&meta, index, &data) {
            tracing::warn!(key, index, "corrupt piece on disk: dropped");
            self.forget_piece(key, index);
            let _ = tokio::fs::remove_file(&path).await;
            return Err(DiskError::Corrupt {
                key: key.to_owned(),
                index,
            });
        }
        let mut bytes = Bytes::from(data);
        Ok(Some(bytes.split_off(HEADER)))
    }

    fn forget_piece(&self, key: &str, index: u64) {
        let mut idx = lock(&self.index);
        if let Some(o) = idx.objects.get_mut(key)
            && let Some(charge) = o.pieces.remove(&index)
        {
            o.charge -= charge;
            idx.held -= charge;
        }
    }

    /// Takes an object out of the index at once (no lookup finds it from now on);
    /// its files go with [`delete_files`](Self::delete_files).
    pub fn forget(&self, key: &str) -> Option<StoredFiles> {
        lock(&self.index)
            .remove(key)
            .map(|object| StoredFiles(object.dir))
    }

    /// Deletes the files of an object taken out of the index.
    pub async fn delete_files(&self, files: StoredFiles) -> io::Result<()> {
        blocking(move || remove_object_dir(&files.0)).await
    }

    /// Deletes evicted objects' directories; returns their keys.
    async fn delete(&self, victims: Vec<DiskObject>) -> Vec<String> {
        let mut keys = Vec::with_capacity(victims.len());
        for victim in victims {
            let dir = victim.dir.clone();
            if let Err(e) = blocking(move || remove_object_dir(&dir)).await {
                tracing::warn!(dir = %victim.dir.display(), error = %e, "disk cache: eviction failed");
            }
            keys.push(victim.meta.key.clone());
        }
        keys
    }
}

/// Reads one object directory at start-up: its meta and the pieces that are whole
/// and of its version. `Ok(None)`: the entry was ours but unusable, and is deleted.
fn rebuild_object(root: &Path, dir: &Path) -> io::Result<Option<DiskObject>> {
    let meta = std::fs::read_to_string(dir.join("meta"))
        .ok()
        .and_then(|t| ObjectMeta::decode(&t).ok())
        .filter(|m| object_dir(root, &m.key) == dir && m.slice_size > 0);
    let Some(meta) = meta else {
        // A crash between creating the directory and renaming its meta into place.
        tracing::warn!(dir = %dir.display(), "dropping cache entry without valid meta");
        remove_object_dir(dir)?;
        return Ok(None);
    };
    let meta_len = std::fs::metadata(dir.join("meta"))?.len();
    let version = meta.version();
    let mut pieces = HashMap::new();
    for file in std::fs::read_dir(dir)? {
        let path = file?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".tmp") {
            // Left by a crash between write and rename.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let Some(idx) = name
            .strip_suffix(".piece")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        // One bad piece costs that piece (fetched again), never the object or L2.
        match piece_fits(&meta, version, idx, &path) {
            Ok(Some(len)) => {
                pieces.insert(idx, on_disk(len));
            }
            Ok(None) => {
                tracing::warn!(piece = %path.display(), "piece of another version or length: dropped");
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => {
                tracing::warn!(piece = %path.display(), error = %e, "unreadable piece: dropped");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let charge = pieces.values().sum::<u64>() + on_disk(meta_len) + BLOCK;
    let name: Arc<str> = Arc::from(meta.key.as_str());
    Ok(Some(DiskObject {
        name,
        dir: dir.to_owned(),
        meta: Arc::new(meta),
        pieces,
        charge,
        used: 0,
    }))
}

/// The file's length if a piece file's header names `version` and its length is the
/// slice's (the checksum of its bytes is checked when it is read).
fn piece_fits(meta: &ObjectMeta, version: u64, index: u64, path: &Path) -> io::Result<Option<u64>> {
    use std::io::Read;
    if index >= meta.slices() {
        return Ok(None);
    }
    let (start, end) = meta.slice_bounds(index);
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut header = [0u8; HEADER];
    if len != HEADER as u64 + (end - start) || file.read_exact(&mut header).is_err() {
        return Ok(None);
    }
    let ours = &header[..4] == MAGIC && le_u64(&header[4..12]) == Some(version);
    Ok(ours.then_some(len))
}

/// Deletes an object directory: the files the proxy writes there, then the
/// directory (left in place if anything else is in it).
fn remove_object_dir(dir: &Path) -> io::Result<()> {
    // A write already past its index check may rename one more file in: look again.
    let mut attempts = 0;
    loop {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name == "meta" || name.ends_with(".piece") || name.ends_with(".tmp") {
                std::fs::remove_file(&path)?;
            }
        }
        match std::fs::remove_dir(dir) {
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty && attempts < 8 => {
                attempts += 1;
            }
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => return Ok(()),
        }
    }
}

/// Runs file system work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// Writes `parts` to a temporary file in `tmp_dir` (the cache root), `fsync`s it,
/// renames it to `path` and `fsync`s `path`'s directory: after a crash `path` is the
/// old file, or the whole new one, never a part. The temporary lives outside the
/// object's directory so that a purge emptying that directory never races a file
/// being written into it (a late rename into a removed directory just fails). The
/// body is written from the caller's buffer (no copy).
fn write_file_durably(tmp_dir: &Path, path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    use std::io::Write;
    // Unique per write: two writers of one file (a slice fill and a whole-object
    // fill) never share a temporary.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut tag = name(path).unwrap_or_default();
    if dir != tmp_dir {
        tag = format!("{}.{tag}", name(dir).unwrap_or_default());
    }
    let tmp = tmp_dir.join(format!("{tag}.{}.{seq}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Makes a directory's entries (a rename, a new file) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str, etag: &str, total: u64) -> ObjectMeta {
        ObjectMeta {
            key: key.into(),
            status: 200,
            headers: vec![("etag".into(), etag.into())],
            total: Some(total),
            slice_size: 4096,
            fresh_until: 0,
            cacheable: true,
            stored_at: 1,
            vary: Vec::new(),
            parsed: Default::default(),
        }
    }

    #[test]
    fn a_piece_checks_out_only_for_its_object_index_and_version() {
        let a = meta("/k", "\"a\"", 5000);
        let data = [
            piece_header("/k", 1, a.version(), b"bytes"),
            b"bytes".to_vec(),
        ]
        .concat();
        assert!(valid_piece(&a, 1, &data));
        assert!(!valid_piece(&a, 0, &data), "other index");
        assert!(
            !valid_piece(&meta("/k", "\"b\"", 5000), 1, &data),
            "other ETag"
        );
        assert!(
            !valid_piece(&meta("/k", "\"a\"", 5001), 1, &data),
            "other length"
        );
        assert!(
            !valid_piece(&meta("/j", "\"a\"", 5000), 1, &data),
            "other key"
        );
        let mut torn = data.clone();
        torn.pop();
        assert!(!valid_piece(&a, 1, &torn));
        assert!(!valid_piece(&a, 1, &data[..10]));
    }

    #[test]
    fn charges_are_whole_blocks() {
        assert_eq!((on_disk(0), on_disk(1), on_disk(4096)), (4096, 4096, 4096));
        assert_eq!(on_disk(4097), 8192);
    }

    #[tokio::test]
    async fn eviction_takes_the_least_recently_used_and_counts_meta_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        // Room for two one-piece objects: piece + meta + directory = 3 blocks each.
        let (store, _) = DiskStore::open(dir.path(), 6 * BLOCK).unwrap();
        let bytes = Bytes::from(vec![1u8; 100]);
        for key in ["/a", "/b"] {
            let m = Arc::new(meta(key, "\"x\"", 100));
            assert!(store.put_meta(m.clone()).await.unwrap().is_empty());
            store.put_piece(key, 0, m.version(), &bytes).await.unwrap();
        }
        assert_eq!(store.held(), 6 * BLOCK);
        assert!(store.meta("/a").is_some()); // /b is now the least recently used
        let c = Arc::new(meta("/c", "\"x\"", 100));
        assert_eq!(
            store.put_meta(c.clone()).await.unwrap(),
            vec!["/b".to_owned()]
        );
        // A piece of a version that is no longer stored is not written.
        store
            .put_piece("/c", 0, c.version() ^ 1, &bytes)
            .await
            .unwrap();
        assert!(!store.has_piece("/c", 0));
        drop(store);
        let (store, metas) = DiskStore::open(dir.path(), 6 * BLOCK).unwrap();
        let mut keys: Vec<_> = metas.iter().map(|m| m.key.clone()).collect();
        keys.sort();
        assert_eq!(keys, ["/a", "/c"]);
        assert_eq!(store.get_piece("/a", 0).await.unwrap().unwrap(), bytes);
        assert_eq!(store.held(), 5 * BLOCK);
    }
}
