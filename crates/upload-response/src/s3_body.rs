//! S3 streaming uploads at the ingress (`docs/s3.md`): the `aws-chunked`
//! coding is decoded as the body streams, so workers read plain bytes, and
//! the body's checksums (`x-amz-checksum-*` in a header or trailer,
//! `Content-MD5`) are verified as the bytes pass.
//!
//! [`prepare`] rewrites the request head to describe the decoded body and
//! wraps the body in an [`S3Body`]; a failure inside the body aborts the
//! request stream (workers see `Aborted`) and leaves its [`Rejection`] in the
//! shared [`Verdict`], from which the ingress answers the client with an
//! S3-style XML error instead of its generic `400`.
//!
//! A signed body (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`) also
//! records its chunk signatures, unverified, for workers
//! (`chunk_signatures.rs`, `Job::chunk_signatures`); the ingress enforces
//! S3's 8192-byte minimum for signed chunks, which bounds that record.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full};
use http_pack::{AwsChunkEvent, AwsChunkedDecoder, AwsChunkedError};

use crate::checksum::{Algorithm, Running, to_base64};
use crate::chunk_signatures::{ChunkSignatures, MIN_SIGNED_CHUNK, SignatureSink, parse_signature};
use crate::ingress::{BoxError, ResponseBody};

/// Why an S3 upload's body (or the head describing it) was refused. Each
/// maps to one S3 error code and `400`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The `aws-chunked` framing is malformed.
    #[error("malformed aws-chunked body: {0}")]
    Framing(#[from] AwsChunkedError),
    /// A checksum of the body does not match the one the client sent.
    #[error("the {header} you specified did not match the calculated checksum")]
    BadDigest {
        /// The header or trailer naming the checksum.
        header: &'static str,
    },
    /// A checksum value is not base64 of the algorithm's digest length.
    #[error("the {header} value is not a valid digest")]
    InvalidDigest {
        /// The header or trailer.
        header: &'static str,
    },
    /// The decoded body is not `x-amz-decoded-content-length` bytes long.
    #[error("the body is {got} bytes, x-amz-decoded-content-length says {declared}")]
    IncompleteBody {
        /// The declared length.
        declared: u64,
        /// The decoded length.
        got: u64,
    },
    /// A signed chunk other than the last is under 8192 bytes (S3's rule,
    /// which also bounds the signature record: `chunk_signatures.rs`).
    #[error(
        "only the last chunk is allowed to have a size less than {MIN_SIGNED_CHUNK} bytes (chunk {index} is {size})"
    )]
    InvalidChunkSize {
        /// The chunk's index, from 0.
        index: u64,
        /// Its size.
        size: u64,
    },
    /// The head is unusable: an unknown `x-amz-trailer`, a bad
    /// `x-amz-decoded-content-length`, or a trailer that was not declared.
    #[error("{0}")]
    InvalidRequest(&'static str),
}

impl Rejection {
    /// The S3 error code (`<Code>` of the XML body).
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadDigest { .. } => "BadDigest",
            Self::InvalidDigest { .. } => "InvalidDigest",
            Self::IncompleteBody { .. } => "IncompleteBody",
            Self::InvalidChunkSize { .. } => "InvalidChunkSizeError",
            Self::Framing(_) | Self::InvalidRequest(_) => "InvalidRequest",
        }
    }

    /// The client's response: `400` and an S3 `<Error>` document.
    pub(crate) fn response(&self) -> Response<ResponseBody> {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message></Error>\n",
            self.code(),
            xml_escape(&self.to_string())
        );
        let mut res = Response::new(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *res.status_mut() = StatusCode::BAD_REQUEST;
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        res
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Where a body's failure is left for the ingress to answer with.
#[derive(Debug, Clone, Default)]
pub(crate) struct Verdict(Arc<OnceLock<Rejection>>);

impl Verdict {
    /// The rejection, if the body failed.
    pub(crate) fn get(&self) -> Option<&Rejection> {
        self.0.get()
    }
}

/// A request body as the ingress stores it: unchanged, or decoded and
/// verified.
pub(crate) type PreparedBody<B> = Either<B, S3Body<B>>;

/// Rewrites an S3 upload's head to describe the decoded body and wraps its
/// body; any other request passes unchanged. A head that cannot describe a
/// valid body is refused at once. A signed streaming upload also gets a
/// record of its chunk signatures of at most `signature_capacity` entries,
/// left in the request's extensions as a [`ChunkSignatures`] reader.
pub(crate) fn prepare<B>(
    req: Request<B>,
    signature_capacity: usize,
) -> Result<(Request<PreparedBody<B>>, Option<Verdict>), Rejection> {
    let (mut parts, body) = req.into_parts();
    let headers = &mut parts.headers;
    let chunked = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| v.to_str().is_ok_and(http_pack::is_aws_chunked));
    let checks = expected_checksums(headers, chunked)?;
    if !chunked && checks.is_empty() {
        return Ok((Request::from_parts(parts, Either::Left(body)), None));
    }
    let mut declared = None;
    if chunked {
        declared = match headers.get("x-amz-decoded-content-length") {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .ok_or(Rejection::InvalidRequest(
                        "x-amz-decoded-content-length is not a number",
                    ))?,
            ),
        };
        rewrite_head(headers, declared);
    }
    // Only signed bodies pay for a record (`chunk_signatures.rs`).
    let signatures = (chunked && is_signed_streaming(headers)).then(|| {
        let (reader, sink) = ChunkSignatures::new(signature_capacity);
        parts.extensions.insert(reader);
        sink
    });
    let verdict = Verdict::default();
    let body = S3Body {
        inner: body,
        decoder: chunked.then(AwsChunkedDecoder::new),
        pending: Bytes::new(),
        checks,
        declared,
        decoded: 0,
        finished: false,
        verdict: verdict.clone(),
        signatures,
        chunks: 0,
        short_chunk: None,
    };
    Ok((
        Request::from_parts(parts, Either::Right(body)),
        Some(verdict),
    ))
}

/// Whether `x-amz-content-sha256` names a payload whose chunks are signed.
fn is_signed_streaming(headers: &HeaderMap) -> bool {
    headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim();
            v == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
                || v == "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
        })
}

/// Workers see the decoded body: `aws-chunked` leaves `Content-Encoding`,
/// and `Content-Length` becomes `x-amz-decoded-content-length` (or goes, if
/// the client sent none).
fn rewrite_head(headers: &mut HeaderMap, declared: Option<u64>) {
    let encodings: Vec<String> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(http_pack::strip_aws_chunked)
        .collect();
    headers.remove(header::CONTENT_ENCODING);
    for encoding in encodings {
        if let Ok(value) = HeaderValue::from_str(&encoding) {
            headers.append(header::CONTENT_ENCODING, value);
        }
    }
    match declared {
        Some(len) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        None => {
            headers.remove(header::CONTENT_LENGTH);
        }
    }
}

/// One checksum to verify: its running state and, once known, the value the
/// client sent (from a header at once, from a trailer at the end).
struct Check {
    algorithm: Algorithm,
    running: Running,
    expected: Option<Vec<u8>>,
}

fn expected_checksums(headers: &HeaderMap, chunked: bool) -> Result<Vec<Check>, Rejection> {
    let mut checks = Vec::new();
    let mut add = |algorithm: Algorithm, expected: Option<Vec<u8>>| {
        if !checks.iter().any(|c: &Check| c.algorithm == algorithm) {
            checks.push(Check {
                algorithm,
                running: Running::new(algorithm),
                expected,
            });
        }
    };
    for (name, value) in headers {
        let algorithm = if name.as_str() == "content-md5" {
            Algorithm::Md5
        } else if let Some(algorithm) = Algorithm::from_header(name.as_str()) {
            algorithm
        } else {
            continue;
        };
        let header = algorithm.header();
        let digest = value
            .to_str()
            .ok()
            .and_then(|v| algorithm.parse_value(v))
            .ok_or(Rejection::InvalidDigest { header })?;
        add(algorithm, Some(digest));
    }
    if chunked {
        for value in headers.get_all("x-amz-trailer") {
            for name in value.to_str().unwrap_or_default().split(',') {
                let algorithm = Algorithm::from_header(&name.trim().to_ascii_lowercase()).ok_or(
                    Rejection::InvalidRequest("x-amz-trailer names no supported checksum"),
                )?;
                add(algorithm, None);
            }
        }
    }
    Ok(checks)
}

pin_project_lite::pin_project! {
    /// A request body decoded from `aws-chunked` (if it was) and checked
    /// against its checksums as it passes. Its data frames are the decoded
    /// bytes, zero-copy slices of the frames it reads.
    pub(crate) struct S3Body<B> {
        #[pin]
        inner: B,
        decoder: Option<AwsChunkedDecoder>,
        // Input taken from `inner` and not yet decoded.
        pending: Bytes,
        checks: Vec<Check>,
        declared: Option<u64>,
        decoded: u64,
        finished: bool,
        verdict: Verdict,
        // The record of a signed body's chunk signatures; dropped unfinished
        // (the pump gave up), it tells its readers the body was aborted.
        signatures: Option<SignatureSink>,
        // Chunk lines seen so far.
        chunks: u64,
        // A signed data chunk under the minimum: only the last may be.
        short_chunk: Option<u64>,
    }
}

/// A signed body's signature that SigV4 cannot have produced.
const BAD_SIGNATURE: &str = "a chunk or trailer signature is not 64 lowercase hex digits";

/// What a body failure carries: the rejection, or the client's own error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Rejected(Rejection);

impl<B> S3Body<B> {
    /// Feeds decoded data through the checksums.
    fn pass(checks: &mut [Check], decoded: &mut u64, data: &[u8]) {
        *decoded += data.len() as u64;
        for check in checks {
            check.running.update(data);
        }
    }

    /// The body is over: every checksum and the length must agree.
    fn verify(
        checks: &mut Vec<Check>,
        declared: Option<u64>,
        decoded: u64,
    ) -> Result<(), Rejection> {
        if let Some(declared) = declared.filter(|&d| d != decoded) {
            return Err(Rejection::IncompleteBody {
                declared,
                got: decoded,
            });
        }
        for check in std::mem::take(checks) {
            let header = check.algorithm.header();
            let Some(expected) = check.expected else {
                return Err(Rejection::InvalidRequest(
                    "a trailer declared in x-amz-trailer never came",
                ));
            };
            let got = check.running.finish();
            if got != expected {
                tracing::debug!(header, got = %to_base64(&got), "checksum mismatch");
                return Err(Rejection::BadDigest { header });
            }
        }
        Ok(())
    }

    /// A trailer from the decoded body: the value of a declared checksum.
    fn trailer(checks: &mut [Check], name: &str, value: &str) -> Result<(), Rejection> {
        let Some(algorithm) = Algorithm::from_header(name) else {
            // Other trailers carry nothing the ingress checks.
            return Ok(());
        };
        let header = algorithm.header();
        let check = checks.iter_mut().find(|c| c.algorithm == algorithm).ok_or(
            Rejection::InvalidRequest("a checksum trailer was not declared in x-amz-trailer"),
        )?;
        let digest = algorithm
            .parse_value(value)
            .ok_or(Rejection::InvalidDigest { header })?;
        if check.expected.replace(digest).is_some() {
            return Err(Rejection::InvalidRequest(
                "a checksum came both as a header and a trailer",
            ));
        }
        Ok(())
    }
}

impl<B> Body for S3Body<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let fail = |verdict: &Verdict, rejection: Rejection| {
            let _ = verdict.0.set(rejection.clone());
            Poll::Ready(Some(Err(BoxError::from(Rejected(rejection)))))
        };
        loop {
            if *this.finished {
                return Poll::Ready(None);
            }
            if let Some(decoder) = this.decoder.as_mut() {
                match decoder.decode(this.pending) {
                    Ok(Some(AwsChunkEvent::Data(data))) => {
                        Self::pass(this.checks, this.decoded, &data);
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(Some(AwsChunkEvent::Trailer { name, value })) => {
                        if let Err(r) = Self::trailer(this.checks, &name, &value) {
                            return fail(this.verdict, r);
                        }
                        continue;
                    }
                    // Signatures are the worker's to verify (docs/s3.md §5):
                    // a signed body records them for it.
                    Ok(Some(AwsChunkEvent::Chunk { size, signature })) => {
                        let index = *this.chunks;
                        *this.chunks += 1;
                        let Some(sink) = this.signatures.as_ref() else {
                            continue;
                        };
                        let Some(signature) = signature else {
                            return fail(
                                this.verdict,
                                Rejection::InvalidRequest(
                                    "a chunk of a signed aws-chunked body has no chunk-signature",
                                ),
                            );
                        };
                        let Some(signature) = parse_signature(&signature) else {
                            return fail(this.verdict, Rejection::InvalidRequest(BAD_SIGNATURE));
                        };
                        // A short chunk followed by more data was not the last.
                        if let Some(short) = this.short_chunk.take()
                            && size > 0
                        {
                            return fail(
                                this.verdict,
                                Rejection::InvalidChunkSize {
                                    index: index.saturating_sub(1),
                                    size: short,
                                },
                            );
                        }
                        if size > 0 && size < MIN_SIGNED_CHUNK {
                            *this.short_chunk = Some(size);
                        }
                        sink.chunk(*this.decoded, size, signature);
                        continue;
                    }
                    Ok(Some(AwsChunkEvent::TrailerSignature(signature))) => {
                        if let Some(sink) = this.signatures.as_ref() {
                            let Some(signature) = parse_signature(&signature) else {
                                return fail(
                                    this.verdict,
                                    Rejection::InvalidRequest(BAD_SIGNATURE),
                                );
                            };
                            sink.trailer(signature);
                        }
                        continue;
                    }
                    Ok(Some(AwsChunkEvent::End)) => continue,
                    Ok(None) => {}
                    Err(e) => return fail(this.verdict, e.into()),
                }
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // HTTP trailers: not part of the object
                    };
                    if this.decoder.is_some() {
                        *this.pending = data;
                    } else {
                        Self::pass(this.checks, this.decoded, &data);
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => {
                    if let Some(Err(e)) = this.decoder.as_ref().map(AwsChunkedDecoder::finish) {
                        return fail(this.verdict, e.into());
                    }
                    if let Err(r) = Self::verify(this.checks, *this.declared, *this.decoded) {
                        return fail(this.verdict, r);
                    }
                    if let Some(sink) = this.signatures.as_ref() {
                        sink.complete();
                    }
                    *this.finished = true;
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }

    fn size_hint(&self) -> SizeHint {
        // A decoded length is only what the client claims: no exact hint.
        if self.decoder.is_some() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}
