//! The `aws-chunked` content coding of S3 streaming uploads: an incremental,
//! bounded decoder.
//!
//! S3 clients (the AWS SDKs, boto3, the AWS CLI) send `PutObject` and
//! `UploadPart` bodies with `Content-Encoding: aws-chunked`, the payload
//! mode named by `x-amz-content-sha256`, and the object's real length in
//! `x-amz-decoded-content-length`. The framing is specified in the AWS S3 API
//! reference, "Signature Calculations for the Authorization Header:
//! Transferring Payload in Multiple Chunks (Chunked Upload) (AWS Signature
//! Version 4)" (`sigv4-streaming.html`) and "… Including Trailing Headers"
//! (`sigv4-streaming-trailers.html`):
//!
//! ```text
//! chunk        = hex-size *( ";" name "=" value ) CRLF data CRLF     ; size > 0
//! final-chunk  = "0" *( ";" name "=" value ) CRLF
//! trailer      = *( name ":" value CRLF )
//! body         = *chunk final-chunk trailer CRLF
//! ```
//!
//! * `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: each chunk line carries
//!   `;chunk-signature=<64 hex>`; no trailer.
//! * `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`: the same, plus trailing
//!   headers (`x-amz-checksum-*`) and a final `x-amz-trailer-signature`.
//! * `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: bare `hex-size` lines, trailing
//!   headers, no signatures.
//!
//! The decoder yields the chunk signatures ([`AwsChunkEvent::Chunk`],
//! [`AwsChunkEvent::TrailerSignature`]) but verifies none of them: it holds
//! no credentials. Like the HPKS [`Decoder`](crate::Decoder) it is pure (no
//! I/O, no clock), accepts input in any splits, never copies chunk data
//! (data events are slices of the input), and buffers at most one line of
//! [`AwsChunkedLimits::max_line_len`] bytes: hostile input is an
//! [`AwsChunkedError`], never a panic or an allocation beyond the limits.
//! After an error the decoder stays failed.
//!
//! ```
//! use bytes::Bytes;
//! use http_pack::{AwsChunkEvent, AwsChunkedDecoder};
//!
//! let mut decoder = AwsChunkedDecoder::new();
//! let mut input = Bytes::from_static(b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n");
//! let mut events = Vec::new();
//! while let Some(event) = decoder.decode(&mut input).unwrap() {
//!     events.push(event);
//! }
//! assert!(decoder.is_done());
//! assert_eq!(events[1], AwsChunkEvent::Data(Bytes::from_static(b"hello")));
//! assert_eq!(
//!     events[3],
//!     AwsChunkEvent::Trailer { name: "x-amz-checksum-crc32".into(), value: "NhCmhg==".into() }
//! );
//! ```

use bytes::{Buf, Bytes, BytesMut};

/// The `Content-Encoding` token of this coding.
pub const AWS_CHUNKED: &str = "aws-chunked";

/// Bounds on what one body may make the decoder hold or accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsChunkedLimits {
    /// Largest chunk size accepted (the SDKs send 64 KiB; the spec's
    /// minimum for every chunk but the last is 8 KiB). Default 16 MiB.
    pub max_chunk_size: u64,
    /// Longest chunk line or trailer line, CRLF excluded. Default 4096
    /// (a signed chunk line is under 90 bytes).
    pub max_line_len: usize,
    /// Most trailer lines. Default 16.
    pub max_trailers: usize,
}

impl Default for AwsChunkedLimits {
    fn default() -> Self {
        Self {
            max_chunk_size: 16 << 20,
            max_line_len: 4096,
            max_trailers: 16,
        }
    }
}

/// One piece of a decoded `aws-chunked` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsChunkEvent {
    /// A chunk line: `size` data bytes follow (0: the final chunk).
    Chunk {
        /// The chunk's data length.
        size: u64,
        /// Its `chunk-signature` extension (64 lowercase hex digits in the
        /// signed forms), unverified.
        signature: Option<String>,
    },
    /// Decoded payload bytes (a slice of the input, never a copy).
    Data(Bytes),
    /// A trailing header, e.g. `x-amz-checksum-crc32`. The name is
    /// lower-cased; `x-amz-trailer-signature` comes as
    /// [`TrailerSignature`](Self::TrailerSignature) instead.
    Trailer {
        /// Header name, lower-case.
        name: String,
        /// Header value, surrounding whitespace trimmed.
        value: String,
    },
    /// The `x-amz-trailer-signature` trailer, unverified.
    TrailerSignature(String),
    /// The body is complete; nothing may follow.
    End,
}

/// Why bytes are not a valid `aws-chunked` body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsChunkedError {
    /// The chunk size is not 1 to 16 hex digits.
    #[error("chunk size is not hexadecimal: {0:?}")]
    BadChunkSize(String),
    /// A chunk is larger than [`AwsChunkedLimits::max_chunk_size`].
    #[error("chunk of {size} bytes exceeds the limit of {limit}")]
    ChunkTooLarge {
        /// The declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A chunk extension is not `name=value`.
    #[error("malformed chunk extension")]
    BadExtension,
    /// A line is longer than [`AwsChunkedLimits::max_line_len`].
    #[error("line longer than {0} bytes")]
    LineTooLong(usize),
    /// A line or chunk's data is not followed by CRLF.
    #[error("missing CRLF after {0}")]
    MissingCrlf(&'static str),
    /// A trailer line is not `name:value`, or is not valid text.
    #[error("malformed trailer line")]
    BadTrailer,
    /// More than [`AwsChunkedLimits::max_trailers`] trailer lines.
    #[error("more than {0} trailer lines")]
    TooManyTrailers(usize),
    /// Bytes after the end of the body.
    #[error("bytes after the end of the aws-chunked body")]
    TrailingBytes,
    /// The input ended before the body did.
    #[error("aws-chunked body truncated")]
    Truncated,
    /// An earlier error left the decoder failed.
    #[error("decoder failed earlier")]
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    ChunkLine,
    Data(u64),
    DataCrlf,
    Trailer,
    Done,
    Failed,
}

/// Incremental `aws-chunked` decoder (see the module docs).
#[derive(Debug)]
pub struct AwsChunkedDecoder {
    limits: AwsChunkedLimits,
    state: State,
    /// A line being assembled across inputs (never above the line limit + 2).
    line: BytesMut,
    trailers: usize,
}

impl Default for AwsChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl AwsChunkedDecoder {
    /// A decoder with the default [`AwsChunkedLimits`].
    pub fn new() -> Self {
        Self::with_limits(AwsChunkedLimits::default())
    }

    /// A decoder with the given limits.
    pub fn with_limits(limits: AwsChunkedLimits) -> Self {
        Self {
            limits,
            state: State::ChunkLine,
            line: BytesMut::new(),
            trailers: 0,
        }
    }

    /// The whole body was decoded ([`AwsChunkEvent::End`] was returned).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes what it can from the front of `input` and returns the next
    /// event, or `None` when `input` is used up without completing one (feed
    /// more). Data events are slices of `input`.
    pub fn decode(&mut self, input: &mut Bytes) -> Result<Option<AwsChunkEvent>, AwsChunkedError> {
        let result = self.step(input);
        if result.is_err() {
            self.state = State::Failed;
            self.line = BytesMut::new();
        }
        result
    }

    /// Call at the end of input: an error unless the body was complete.
    pub fn finish(&self) -> Result<(), AwsChunkedError> {
        match self.state {
            State::Done => Ok(()),
            State::Failed => Err(AwsChunkedError::Failed),
            _ => Err(AwsChunkedError::Truncated),
        }
    }

    fn step(&mut self, input: &mut Bytes) -> Result<Option<AwsChunkEvent>, AwsChunkedError> {
        loop {
            match self.state {
                State::Failed => return Err(AwsChunkedError::Failed),
                State::Done => {
                    return if input.is_empty() {
                        Ok(None)
                    } else {
                        Err(AwsChunkedError::TrailingBytes)
                    };
                }
                State::Data(remaining) => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let data = input.split_to(take);
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataCrlf
                    } else {
                        State::Data(left)
                    };
                    return Ok(Some(AwsChunkEvent::Data(data)));
                }
                State::DataCrlf => {
                    let Some(line) = self.line(input, "chunk data")? else {
                        return Ok(None);
                    };
                    if !line.is_empty() {
                        return Err(AwsChunkedError::MissingCrlf("chunk data"));
                    }
                    self.state = State::ChunkLine;
                }
                State::ChunkLine => {
                    let Some(line) = self.line(input, "chunk size")? else {
                        return Ok(None);
                    };
                    let (size, signature) = parse_chunk_line(&line, &self.limits)?;
                    self.state = if size == 0 {
                        State::Trailer
                    } else {
                        State::Data(size)
                    };
                    return Ok(Some(AwsChunkEvent::Chunk { size, signature }));
                }
                State::Trailer => {
                    let Some(line) = self.line(input, "trailer")? else {
                        return Ok(None);
                    };
                    if line.is_empty() {
                        self.state = State::Done;
                        return Ok(Some(AwsChunkEvent::End));
                    }
                    self.trailers += 1;
                    if self.trailers > self.limits.max_trailers {
                        return Err(AwsChunkedError::TooManyTrailers(self.limits.max_trailers));
                    }
                    return parse_trailer(&line).map(Some);
                }
            }
        }
    }

    /// The next whole line without its CRLF, or `None` if `input` ran out
    /// first (the partial line is kept, within the line limit).
    fn line(
        &mut self,
        input: &mut Bytes,
        after: &'static str,
    ) -> Result<Option<BytesMut>, AwsChunkedError> {
        let max = self.limits.max_line_len;
        match input.iter().position(|&b| b == b'\n') {
            Some(at) => {
                if self.line.len() + at > max + 1 {
                    return Err(AwsChunkedError::LineTooLong(max));
                }
                self.line.extend_from_slice(&input[..at]);
                input.advance(at + 1);
                let mut line = std::mem::take(&mut self.line);
                if line.last() != Some(&b'\r') {
                    return Err(AwsChunkedError::MissingCrlf(after));
                }
                line.truncate(line.len() - 1);
                if line.contains(&b'\r') {
                    return Err(AwsChunkedError::MissingCrlf(after));
                }
                Ok(Some(line))
            }
            None => {
                // `max + 1`: the line's CR may be the last byte held.
                if self.line.len() + input.len() > max + 1 {
                    return Err(AwsChunkedError::LineTooLong(max));
                }
                self.line.extend_from_slice(input);
                input.clear();
                Ok(None)
            }
        }
    }
}

/// `hex-size *( ";" name "=" value )`.
fn parse_chunk_line(
    line: &[u8],
    limits: &AwsChunkedLimits,
) -> Result<(u64, Option<String>), AwsChunkedError> {
    let mut parts = line.split(|&b| b == b';');
    let hex = parts.next().unwrap_or_default();
    let bad = || AwsChunkedError::BadChunkSize(String::from_utf8_lossy(hex).into_owned());
    if hex.is_empty() || hex.len() > 16 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    let text = std::str::from_utf8(hex).map_err(|_| bad())?;
    let size = u64::from_str_radix(text, 16).map_err(|_| bad())?;
    if size > limits.max_chunk_size {
        return Err(AwsChunkedError::ChunkTooLarge {
            size,
            limit: limits.max_chunk_size,
        });
    }
    let mut signature = None;
    for ext in parts {
        let ext = std::str::from_utf8(ext).map_err(|_| AwsChunkedError::BadExtension)?;
        let (name, value) = ext.split_once('=').ok_or(AwsChunkedError::BadExtension)?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(AwsChunkedError::BadExtension);
        }
        if name.eq_ignore_ascii_case("chunk-signature") {
            signature = Some(value.trim().to_owned());
        }
    }
    Ok((size, signature))
}

/// `name ":" value`.
fn parse_trailer(line: &[u8]) -> Result<AwsChunkEvent, AwsChunkedError> {
    let text = std::str::from_utf8(line).map_err(|_| AwsChunkedError::BadTrailer)?;
    let (name, value) = text.split_once(':').ok_or(AwsChunkedError::BadTrailer)?;
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(AwsChunkedError::BadTrailer);
    }
    let (name, value) = (name.to_ascii_lowercase(), value.trim().to_owned());
    Ok(if name == "x-amz-trailer-signature" {
        AwsChunkEvent::TrailerSignature(value)
    } else {
        AwsChunkEvent::Trailer { name, value }
    })
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether a `Content-Encoding` value lists `aws-chunked`.
pub fn is_aws_chunked(content_encoding: &str) -> bool {
    content_encoding
        .split(',')
        .any(|c| c.trim().eq_ignore_ascii_case(AWS_CHUNKED))
}

/// A `Content-Encoding` value without `aws-chunked`, or `None` if nothing
/// else was listed (the header should then be removed).
pub fn strip_aws_chunked(content_encoding: &str) -> Option<String> {
    let rest: Vec<&str> = content_encoding
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case(AWS_CHUNKED))
        .collect();
    (!rest.is_empty()).then(|| rest.join(", "))
}

/// Appends one chunk (`data` non-empty) in the framing above, with a
/// `chunk-signature` extension if given. With [`encode_final_chunk`] this is
/// the client side of the coding (tests, and workers that forward to S3).
pub fn encode_chunk(out: &mut BytesMut, data: &[u8], signature: Option<&str>) {
    debug_assert!(!data.is_empty(), "an empty chunk is the final one");
    chunk_line(out, data.len() as u64, signature);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the final chunk, the trailers (`(name, value)`) and the closing
/// CRLF.
pub fn encode_final_chunk(out: &mut BytesMut, signature: Option<&str>, trailers: &[(&str, &str)]) {
    chunk_line(out, 0, signature);
    for (name, value) in trailers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b":");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn chunk_line(out: &mut BytesMut, size: u64, signature: Option<&str>) {
    out.extend_from_slice(format!("{size:x}").as_bytes());
    if let Some(signature) = signature {
        out.extend_from_slice(b";chunk-signature=");
        out.extend_from_slice(signature.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}
