//! Objects on disk: `<root>/<bucket>/<sha256(key)>.data` with a `.meta`
//! JSON beside it (the key itself, ETag, size, content type, time), and
//! multipart uploads under `<root>/<bucket>/.uploads/<id>/`. Hashing the key
//! keeps any key (slashes, `..`, 1024 bytes) a single safe file name.
//! Writes go to a temporary file renamed into place, so a reader never sees
//! half an object.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

/// What is kept about an object beside its bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub key: String,
    /// Quoted, as the `ETag` header carries it.
    pub etag: String,
    pub size: u64,
    pub content_type: Option<String>,
    /// Seconds since the Unix epoch.
    pub modified: u64,
}

/// An upload body failed, or the disk did.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such bucket")]
    NoSuchBucket,
    #[error("no such key")]
    NoSuchKey,
    #[error("no such upload")]
    NoSuchUpload,
    #[error("invalid part: {0}")]
    InvalidPart(String),
    #[error("invalid name")]
    InvalidName,
    #[error("the request body failed: {0}")]
    Body(String),
    #[error("storage: {0}")]
    Io(#[from] io::Error),
}

pub struct Store {
    root: PathBuf,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hashed(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Bucket names as S3 allows them (3-63 of `a-z0-9.-`), which also keeps
/// them safe as directory names.
fn valid_bucket(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !bucket.starts_with('.')
        && !bucket.contains("..")
}

impl Store {
    pub fn new(root: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    fn bucket_dir(&self, bucket: &str) -> Result<PathBuf, StoreError> {
        if !valid_bucket(bucket) {
            return Err(StoreError::InvalidName);
        }
        Ok(self.root.join(bucket))
    }

    fn existing_bucket(&self, bucket: &str) -> Result<PathBuf, StoreError> {
        let dir = self.bucket_dir(bucket)?;
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(StoreError::NoSuchBucket)
        }
    }

    fn upload_dir(&self, bucket: &str, upload_id: &str) -> Result<PathBuf, StoreError> {
        let dir = self.existing_bucket(bucket)?;
        if upload_id.len() != 32 || !upload_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::NoSuchUpload);
        }
        let dir = dir.join(".uploads").join(upload_id);
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(StoreError::NoSuchUpload)
        }
    }

    pub async fn create_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        let dir = self.bucket_dir(bucket)?;
        tokio::fs::create_dir_all(dir.join(".uploads")).await?;
        tokio::fs::create_dir_all(dir.join(".tmp")).await?;
        Ok(())
    }

    pub fn has_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        self.existing_bucket(bucket).map(|_| ())
    }

    /// Streams `body` into a temporary file of the bucket; its size and MD5.
    async fn receive<S, E>(
        &self,
        dir: &Path,
        mut body: S,
    ) -> Result<(PathBuf, u64, [u8; 16]), StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| io::Error::other(e.to_string()))?;
        let tmp = dir.join(".tmp").join(hex::encode(id));
        let mut file = tokio::fs::File::create(&tmp).await?;
        let (mut size, mut md5) = (0u64, Md5::new());
        let result = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| StoreError::Body(e.to_string()))?;
                md5.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await?;
            }
            file.flush().await?;
            Ok::<_, StoreError>(())
        }
        .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        Ok((tmp, size, md5.finalize().into()))
    }

    pub async fn put_object<S, E>(
        &self,
        bucket: &str,
        key: &str,
        content_type: Option<String>,
        body: S,
    ) -> Result<Meta, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let dir = self.existing_bucket(bucket)?;
        let (tmp, size, md5) = self.receive(&dir, body).await?;
        let meta = Meta {
            key: key.to_owned(),
            etag: format!("\"{}\"", hex::encode(md5)),
            size,
            content_type,
            modified: now(),
        };
        self.commit(&dir, &tmp, &meta).await?;
        Ok(meta)
    }

    /// Renames the data into place, then writes its metadata.
    async fn commit(&self, dir: &Path, tmp: &Path, meta: &Meta) -> Result<(), StoreError> {
        let name = hashed(&meta.key);
        tokio::fs::rename(tmp, dir.join(format!("{name}.data"))).await?;
        let json = serde_json::to_vec(meta).map_err(io::Error::other)?;
        let meta_tmp = dir.join(".tmp").join(format!("{name}.meta"));
        tokio::fs::write(&meta_tmp, json).await?;
        tokio::fs::rename(meta_tmp, dir.join(format!("{name}.meta"))).await?;
        Ok(())
    }

    /// The object's metadata and its data file.
    pub async fn object(&self, bucket: &str, key: &str) -> Result<(Meta, PathBuf), StoreError> {
        let dir = self.existing_bucket(bucket)?;
        let name = hashed(key);
        let meta = match tokio::fs::read(dir.join(format!("{name}.meta"))).await {
            Ok(json) => serde_json::from_slice(&json).map_err(io::Error::other)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NoSuchKey),
            Err(e) => return Err(e.into()),
        };
        Ok((meta, dir.join(format!("{name}.data"))))
    }

    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        let dir = self.existing_bucket(bucket)?;
        let name = hashed(key);
        for ext in ["meta", "data"] {
            match tokio::fs::remove_file(dir.join(format!("{name}.{ext}"))).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Every object's metadata whose key starts with `prefix`, by key.
    /// (Reads every `.meta` of the bucket: fine for an example, not for
    /// millions of objects.)
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<Meta>, StoreError> {
        let dir = self.existing_bucket(bucket)?;
        let mut entries = tokio::fs::read_dir(&dir).await?;
        let mut out = Vec::new();
        while let Some(entry) = entries.next_entry().await? {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "meta") {
                let Ok(json) = tokio::fs::read(&path).await else {
                    continue; // deleted meanwhile
                };
                let meta: Meta = serde_json::from_slice(&json).map_err(io::Error::other)?;
                if meta.key.starts_with(prefix) {
                    out.push(meta);
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    pub async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        content_type: Option<String>,
    ) -> Result<String, StoreError> {
        let dir = self.existing_bucket(bucket)?;
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| io::Error::other(e.to_string()))?;
        let id = hex::encode(id);
        let upload = dir.join(".uploads").join(&id);
        tokio::fs::create_dir_all(&upload).await?;
        let meta = Meta {
            key: key.to_owned(),
            etag: String::new(),
            size: 0,
            content_type,
            modified: now(),
        };
        let json = serde_json::to_vec(&meta).map_err(io::Error::other)?;
        tokio::fs::write(upload.join("upload.meta"), json).await?;
        Ok(id)
    }

    async fn upload_meta(&self, upload: &Path, key: &str) -> Result<Meta, StoreError> {
        let json = tokio::fs::read(upload.join("upload.meta")).await?;
        let meta: Meta = serde_json::from_slice(&json).map_err(io::Error::other)?;
        if meta.key != key {
            return Err(StoreError::NoSuchUpload);
        }
        Ok(meta)
    }

    /// Stores part `number` (1..=10000) of an upload; its quoted ETag.
    pub async fn upload_part<S, E>(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: u32,
        body: S,
    ) -> Result<String, StoreError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if !(1..=10_000).contains(&number) {
            return Err(StoreError::InvalidPart(format!("part number {number}")));
        }
        let upload = self.upload_dir(bucket, upload_id)?;
        self.upload_meta(&upload, key).await?;
        let dir = self.existing_bucket(bucket)?;
        let (tmp, _, md5) = self.receive(&dir, body).await?;
        tokio::fs::rename(&tmp, upload.join(format!("{number:05}.part"))).await?;
        let etag = hex::encode(md5);
        tokio::fs::write(upload.join(format!("{number:05}.etag")), &etag).await?;
        Ok(format!("\"{etag}\""))
    }

    /// Joins the listed parts (`(number, etag)`, ascending) into the object;
    /// the ETag is the MD5 of the parts' MD5s, `-N`.
    pub async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<Meta, StoreError> {
        let upload = self.upload_dir(bucket, upload_id)?;
        let started = self.upload_meta(&upload, key).await?;
        if parts.is_empty() || parts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(StoreError::InvalidPart("parts must ascend".into()));
        }
        let dir = self.existing_bucket(bucket)?;
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| io::Error::other(e.to_string()))?;
        let tmp = dir.join(".tmp").join(hex::encode(id));
        let mut out = tokio::fs::File::create(&tmp).await?;
        let (mut size, mut md5s) = (0u64, Md5::new());
        for (number, etag) in parts {
            let stored = tokio::fs::read_to_string(upload.join(format!("{number:05}.etag")))
                .await
                .map_err(|_| StoreError::InvalidPart(format!("part {number} was not uploaded")))?;
            if etag.trim_matches('"') != stored {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(StoreError::InvalidPart(format!(
                    "part {number}: ETag differs"
                )));
            }
            let digest = hex::decode(&stored).map_err(io::Error::other)?;
            md5s.update(&digest);
            let mut part = tokio::fs::File::open(upload.join(format!("{number:05}.part"))).await?;
            size += tokio::io::copy(&mut part, &mut out).await?;
        }
        out.flush().await?;
        drop(out);
        let meta = Meta {
            key: key.to_owned(),
            etag: format!("\"{}-{}\"", hex::encode(md5s.finalize()), parts.len()),
            size,
            content_type: started.content_type,
            modified: now(),
        };
        self.commit(&dir, &tmp, &meta).await?;
        tokio::fs::remove_dir_all(&upload).await?;
        Ok(meta)
    }

    pub async fn abort_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), StoreError> {
        let upload = self.upload_dir(bucket, upload_id)?;
        self.upload_meta(&upload, key).await?;
        tokio::fs::remove_dir_all(&upload).await?;
        Ok(())
    }
}
