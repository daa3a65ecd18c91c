//! L2: pieces on disk, one directory per object, each piece file checksummed; the
//! index is rebuilt from the directory at start-up.
//!
//! Layout: `<cache_dir>/<xxh3-128 of the key, hex>/meta` (the [`ObjectMeta`] as TOML)
//! and `<index>.piece` files: magic `SPP1`, xxh3-64 of the bytes (little endian), the
//! bytes. Files are written to a temporary name and renamed, so a crash never leaves
//! a half-written piece under its final name; a torn or tampered one fails its checksum.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;

use crate::lock;
use crate::meta::ObjectMeta;

const MAGIC: &[u8; 4] = b"SPP1";
const HEADER: usize = 12;

/// Why a disk read gave no piece.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The file's checksum does not match its bytes; it has been deleted.
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

#[derive(Debug)]
struct DiskObject {
    dir: PathBuf,
    pieces: HashMap<u64, u64>,
    bytes: u64,
    used: u64,
}

#[derive(Debug, Default)]
struct Index {
    objects: HashMap<String, DiskObject>,
    held: u64,
    tick: u64,
}

/// The disk tier.
#[derive(Debug)]
pub struct DiskStore {
    root: PathBuf,
    capacity: u64,
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

impl DiskStore {
    /// Opens (creating) `root` and rebuilds the index from what is there; returns the
    /// stored objects' metadata. Unreadable entries are deleted.
    pub fn open(root: &Path, capacity: u64) -> io::Result<(Self, Vec<ObjectMeta>)> {
        std::fs::create_dir_all(root)?;
        let mut index = Index::default();
        let mut metas = Vec::new();
        for entry in std::fs::read_dir(root)? {
            let dir = entry?.path();
            if !dir.is_dir() {
                continue;
            }
            let meta = std::fs::read_to_string(dir.join("meta"))
                .ok()
                .and_then(|t| ObjectMeta::decode(&t).ok());
            let Some(meta) = meta.filter(|m| object_dir(root, &m.key) == dir) else {
                tracing::warn!(dir = %dir.display(), "dropping cache entry without valid meta");
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            };
            let mut object = DiskObject {
                dir: dir.clone(),
                pieces: HashMap::new(),
                bytes: 0,
                used: 0,
            };
            for file in std::fs::read_dir(&dir)? {
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
                let len = std::fs::metadata(&path)?
                    .len()
                    .saturating_sub(HEADER as u64);
                object.pieces.insert(idx, len);
                object.bytes += len;
            }
            index.held += object.bytes;
            index.objects.insert(meta.key.clone(), object);
            metas.push(meta);
        }
        tracing::info!(
            objects = metas.len(),
            bytes = index.held,
            "disk cache index rebuilt"
        );
        let store = Self {
            root: root.to_owned(),
            capacity,
            index: Mutex::new(index),
        };
        Ok((store, metas))
    }

    /// Bytes of pieces on disk.
    pub fn held(&self) -> u64 {
        lock(&self.index).held
    }

    /// Whether the index lists the piece.
    pub fn has_piece(&self, key: &str, index: u64) -> bool {
        lock(&self.index)
            .objects
            .get(key)
            .is_some_and(|o| o.pieces.contains_key(&index))
    }

    /// Writes (or replaces) an object's metadata.
    pub async fn put_meta(&self, meta: &ObjectMeta) -> io::Result<()> {
        let dir = object_dir(&self.root, &meta.key);
        tokio::fs::create_dir_all(&dir).await?;
        let text = meta.encode().map_err(io::Error::other)?;
        write_atomic(dir.join("meta"), Vec::new(), Bytes::from(text)).await?;
        let mut index = lock(&self.index);
        index.tick += 1;
        let tick = index.tick;
        index
            .objects
            .entry(meta.key.clone())
            .or_insert_with(|| DiskObject {
                dir,
                pieces: HashMap::new(),
                bytes: 0,
                used: tick,
            });
        Ok(())
    }

    /// Writes a piece of an object whose meta is stored; returns the keys of objects
    /// evicted to stay within capacity.
    pub async fn put_piece(&self, key: &str, index: u64, bytes: &Bytes) -> io::Result<Vec<String>> {
        let dir = object_dir(&self.root, key);
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(bytes).to_le_bytes());
        write_atomic(piece_path(&dir, index), header, bytes.clone()).await?;
        let len = bytes.len() as u64;
        let victims = {
            let mut idx = lock(&self.index);
            idx.tick += 1;
            let tick = idx.tick;
            let Some(object) = idx.objects.get_mut(key) else {
                // Purged while writing: do not resurrect it (rare: a blocking unlink is fine).
                let _ = std::fs::remove_file(piece_path(&dir, index));
                return Ok(Vec::new());
            };
            let old = object.pieces.insert(index, len).unwrap_or(0);
            object.bytes = object.bytes + len - old;
            object.used = tick;
            idx.held = idx.held + len - old;
            let mut victims = Vec::new();
            while idx.held > self.capacity {
                let victim = idx
                    .objects
                    .iter()
                    .filter(|(k, _)| k.as_str() != key)
                    .min_by_key(|(_, o)| o.used)
                    .map(|(k, _)| k.clone());
                let Some(victim) = victim else { break };
                if let Some(o) = idx.objects.remove(&victim) {
                    idx.held -= o.bytes;
                    victims.push((victim, o.dir));
                }
            }
            victims
        };
        let mut keys = Vec::new();
        for (key, dir) in victims {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            keys.push(key);
        }
        Ok(keys)
    }

    /// Reads and verifies a piece. `Ok(None)`: not stored.
    pub async fn get_piece(&self, key: &str, index: u64) -> Result<Option<Bytes>, DiskError> {
        let dir = {
            let mut idx = lock(&self.index);
            idx.tick += 1;
            let tick = idx.tick;
            match idx.objects.get_mut(key) {
                Some(o) if o.pieces.contains_key(&index) => {
                    o.used = tick;
                    o.dir.clone()
                }
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
        let valid = data.len() >= HEADER
            && &data[..4] == MAGIC
            && data[4..HEADER]
                .try_into()
                .map(u64::from_le_bytes)
                .is_ok_and(|sum| sum == xxhash_rust::xxh3::xxh3_64(&data[HEADER..]));
        if !valid {
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
            && let Some(len) = o.pieces.remove(&index)
        {
            o.bytes -= len;
            idx.held -= len;
        }
    }

    /// Deletes an object; returns whether it was stored.
    pub async fn remove_object(&self, key: &str) -> io::Result<bool> {
        let removed = {
            let mut idx = lock(&self.index);
            let removed = idx.objects.remove(key);
            if let Some(o) = &removed {
                idx.held -= o.bytes;
            }
            removed
        };
        match removed {
            Some(o) => {
                tokio::fs::remove_dir_all(&o.dir).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Writes `header` then `body` to a temporary file and renames it to `path`, on the
/// blocking pool and without copying `body` (a piece is a whole slice).
async fn write_atomic(path: PathBuf, header: Vec<u8>, body: Bytes) -> io::Result<()> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&header)?;
        file.write_all(&body)?;
        drop(file);
        std::fs::rename(&tmp, &path)
    })
    .await
    .map_err(io::Error::other)?
}
