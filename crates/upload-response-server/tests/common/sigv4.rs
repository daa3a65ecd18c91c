//! The AWS SigV4 streaming chain (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD` and
//! `…-TRAILER`, AWS S3 API reference `sigv4-streaming.html`), both sides: a
//! client that signs an `aws-chunked` body, and the check a worker holding
//! the secret runs on the decoded bytes plus the chunk-signature records
//! the ingress exposes (docs/s3.md §5).

use bytes::BytesMut;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

pub const ACCESS_KEY: &str = "AKIDEXAMPLE";
pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
pub const DATE: &str = "20130524";
pub const AMZ_DATE: &str = "20130524T000000Z";
pub const REGION: &str = "us-east-1";

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// One credential's signing key for one day, region and service `s3`.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
    amz_date: String,
    scope: String,
}

/// One chunk-signature record as a worker reads it (in process or from
/// `GET /v1/streams/{id}/signatures`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub index: u64,
    pub offset: u64,
    pub len: u64,
    pub signature: String,
}

impl Signer {
    /// The test credential's key ([`SECRET`], [`DATE`], [`REGION`]).
    pub fn example() -> Self {
        Self::new(SECRET, DATE, AMZ_DATE, REGION)
    }

    pub fn new(secret: &str, date: &str, amz_date: &str, region: &str) -> Self {
        let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
        let k_region = hmac(&k_date, region.as_bytes());
        let k_service = hmac(&k_region, b"s3");
        let key = hmac(&k_service, b"aws4_request");
        Self {
            key,
            amz_date: amz_date.into(),
            scope: format!("{date}/{region}/s3/aws4_request"),
        }
    }

    fn sign(&self, string_to_sign: &str) -> String {
        hex::encode(hmac(&self.key, string_to_sign.as_bytes()))
    }

    /// The seed signature over a canonical request (what `Authorization`
    /// carries as `Signature=`).
    pub fn seed(&self, canonical_request: &str) -> String {
        self.sign(&format!(
            "AWS4-HMAC-SHA256\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            sha256_hex(canonical_request.as_bytes())
        ))
    }

    /// The `Authorization` header for `seed`.
    pub fn authorization(&self, signed_headers: &str, seed: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{}, SignedHeaders={signed_headers}, Signature={seed}",
            self.scope
        )
    }

    /// A chunk's signature, chained on the previous one.
    pub fn chunk(&self, previous: &str, data: &[u8]) -> String {
        self.sign(&format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{previous}\n{}\n{}",
            self.amz_date,
            self.scope,
            sha256_hex(b""),
            sha256_hex(data)
        ))
    }

    /// The trailer's signature, chained on the final chunk's; `trailers` is
    /// the canonical trailer text, `name:value\n` per trailer.
    pub fn trailer(&self, previous: &str, trailers: &str) -> String {
        self.sign(&format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{previous}\n{}",
            self.amz_date,
            self.scope,
            sha256_hex(trailers.as_bytes())
        ))
    }
}

/// A signed upload ready to send.
pub struct SignedBody {
    pub body: BytesMut,
    pub authorization: String,
    pub seed: String,
}

/// `data` as a signed `aws-chunked` body in `chunk`-byte chunks, chained on
/// a seed over `canonical_request`; with `trailers` (canonical text) the
/// `-TRAILER` form. `tamper`: the index of a chunk whose signature is
/// replaced by a wrong one (the chain after it is signed on the wrong one,
/// as a forger without the key would have to).
pub fn sign_body(
    signer: &Signer,
    canonical_request: &str,
    data: &[u8],
    chunk: usize,
    trailers: &[(&str, &str)],
    tamper: Option<usize>,
) -> SignedBody {
    let seed = signer.seed(canonical_request);
    let mut previous = seed.clone();
    let mut body = BytesMut::new();
    let mut pieces: Vec<&[u8]> = data.chunks(chunk).collect();
    pieces.push(b""); // the final chunk is signed too
    for (i, piece) in pieces.iter().enumerate() {
        let mut signature = signer.chunk(&previous, piece);
        if tamper == Some(i) {
            signature = signer.chunk(&previous, b"not the chunk");
        }
        if piece.is_empty() {
            if trailers.is_empty() {
                http_pack::encode_final_chunk(&mut body, Some(&signature), &[]);
            } else {
                let text = trailer_text(trailers);
                let trailer_signature = signer.trailer(&signature, &text);
                let mut all = trailers.to_vec();
                all.push(("x-amz-trailer-signature", trailer_signature.as_str()));
                http_pack::encode_final_chunk(&mut body, Some(&signature), &all);
            }
        } else {
            http_pack::encode_chunk(&mut body, piece, Some(&signature));
        }
        previous = signature;
    }
    SignedBody {
        body,
        authorization: signer.authorization("host;x-amz-content-sha256;x-amz-date", &seed),
        seed,
    }
}

/// The canonical text of trailing headers, as the trailer signature covers it.
pub fn trailer_text(trailers: &[(&str, &str)]) -> String {
    trailers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect()
}

/// The `Signature=` of an `Authorization: AWS4-HMAC-SHA256 …` header.
pub fn seed_of(authorization: &str) -> Option<&str> {
    authorization
        .split(',')
        .find_map(|part| part.trim().strip_prefix("Signature="))
}

/// Why a signed body does not verify.
#[derive(Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The records do not tile the decoded body (a gap, an overlap, a
    /// missing final chunk).
    Framing(String),
    /// Chunk `index`'s signature is not the chain's.
    Chunk(u64),
    /// The trailer signature is missing or wrong.
    Trailer,
}

/// What a worker holding the key checks: every record chains on the one
/// before (from `seed`), covers the next bytes of `body`, and the last one
/// is the empty final chunk; with `trailer` (canonical trailer text, which
/// the worker rebuilds from the checksum it computes: the ingress verified
/// the client's value equals it), the trailer signature chains on that.
pub fn verify(
    signer: &Signer,
    seed: &str,
    body: &[u8],
    records: &[Record],
    trailer: Option<(&str, Option<&str>)>,
) -> Result<(), Mismatch> {
    let mut previous = seed.to_owned();
    let mut offset = 0u64;
    for (i, record) in records.iter().enumerate() {
        if record.index != i as u64 || record.offset != offset {
            return Err(Mismatch::Framing(format!(
                "record {i} is {record:?}, expected offset {offset}"
            )));
        }
        let end = offset
            .checked_add(record.len)
            .filter(|&end| end <= body.len() as u64)
            .ok_or_else(|| Mismatch::Framing(format!("record {i} runs past the body")))?;
        let data = &body[offset as usize..end as usize];
        if signer.chunk(&previous, data) != record.signature {
            return Err(Mismatch::Chunk(record.index));
        }
        previous = record.signature.clone();
        offset = end;
    }
    match records.last() {
        Some(last) if last.len == 0 && offset == body.len() as u64 => {}
        _ => return Err(Mismatch::Framing("no final chunk at the body's end".into())),
    }
    if let Some((text, given)) = trailer
        && given != Some(signer.trailer(&previous, text).as_str())
    {
        return Err(Mismatch::Trailer);
    }
    Ok(())
}
