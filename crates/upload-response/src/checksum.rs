//! The whole-body checksums S3 clients send (`x-amz-checksum-*`, in a header
//! or a trailer, and `Content-MD5`), computed as the bytes pass.
//!
//! Values are base64 of the digest's big-endian bytes, as the S3 API
//! reference ("Checking object integrity") defines them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::Digest as _;

/// A checksum algorithm of the S3 API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
    /// `Content-MD5` (RFC 1864).
    Md5,
}

impl Algorithm {
    /// The algorithm an `x-amz-checksum-*` header or trailer name stands for.
    pub(crate) fn from_header(name: &str) -> Option<Self> {
        let alg = name.strip_prefix("x-amz-checksum-")?;
        Some(match alg.to_ascii_lowercase().as_str() {
            "crc32" => Self::Crc32,
            "crc32c" => Self::Crc32c,
            "crc64nvme" => Self::Crc64Nvme,
            "sha1" => Self::Sha1,
            "sha256" => Self::Sha256,
            _ => return None,
        })
    }

    /// The header or trailer carrying it.
    pub(crate) fn header(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
            Self::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Self::Sha1 => "x-amz-checksum-sha1",
            Self::Sha256 => "x-amz-checksum-sha256",
            Self::Md5 => "content-md5",
        }
    }

    fn digest_len(self) -> usize {
        match self {
            Self::Crc32 | Self::Crc32c => 4,
            Self::Crc64Nvme => 8,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Md5 => 16,
        }
    }

    /// The digest an expected value names, if it is well-formed base64 of
    /// the right length.
    pub(crate) fn parse_value(self, value: &str) -> Option<Vec<u8>> {
        STANDARD
            .decode(value.trim())
            .ok()
            .filter(|d| d.len() == self.digest_len())
    }
}

static CRC64_NVME: crc::Crc<u64, crc::Table<16>> =
    crc::Crc::<u64, crc::Table<16>>::new(&crc::CRC_64_NVME);

/// One running checksum.
pub(crate) enum Running {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
    Crc64Nvme(crc::Digest<'static, u64, crc::Table<16>>),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Md5(md5::Md5),
}

impl Running {
    pub(crate) fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Crc32 => Self::Crc32(crc32fast::Hasher::new()),
            Algorithm::Crc32c => Self::Crc32c(0),
            Algorithm::Crc64Nvme => Self::Crc64Nvme(CRC64_NVME.digest()),
            Algorithm::Sha1 => Self::Sha1(sha1::Sha1::new()),
            Algorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
            Algorithm::Md5 => Self::Md5(md5::Md5::new()),
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Self::Crc32(h) => h.update(data),
            Self::Crc32c(c) => *c = crc32c::crc32c_append(*c, data),
            Self::Crc64Nvme(d) => d.update(data),
            Self::Sha1(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Md5(h) => h.update(data),
        }
    }

    /// The digest's bytes.
    pub(crate) fn finish(self) -> Vec<u8> {
        match self {
            Self::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
            Self::Crc32c(c) => c.to_be_bytes().to_vec(),
            Self::Crc64Nvme(d) => d.finalize().to_be_bytes().to_vec(),
            Self::Sha1(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Md5(h) => h.finalize().to_vec(),
        }
    }
}

/// Base64, as the headers carry digests.
pub(crate) fn to_base64(digest: &[u8]) -> String {
    STANDARD.encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each algorithm's value for `hello`, as S3 (and botocore) compute it.
    #[test]
    fn known_values_of_hello() {
        for (algorithm, expected) in [
            (Algorithm::Crc32, "NhCmhg=="),
            (Algorithm::Crc32c, "mnG7TA=="),
            (Algorithm::Sha1, "qvTGHdzF6KLavt4PO0gs2a6pQ00="),
            (
                Algorithm::Sha256,
                "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
            ),
            (Algorithm::Md5, "XUFAKrxLKna5cZ2REBfFkg=="),
        ] {
            let mut running = Running::new(algorithm);
            running.update(b"hel");
            running.update(b"lo");
            assert_eq!(to_base64(&running.finish()), expected, "{algorithm:?}");
        }
    }
}
