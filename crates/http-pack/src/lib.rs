//! HPKS v1: a documented, versioned binary framing for HTTP messages.
//!
//! The upload-response ingress stores each request's head as an HPKS frame in
//! slot 1 of its chunk-cache stream, and workers read it back; transports that
//! carry whole messages use the body, end and abort frames too. The byte
//! layout is specified in `docs/hpks.md`; comments here cite its sections (§N).
//!
//! The crate is pure: no I/O, no clock, no async runtime. It provides
//!
//! * the frame model ([`Frame`], [`RequestHead`], [`ResponseHead`], [`Header`]);
//! * the encoder ([`encode`], [`to_bytes`], and [`encode_prefix`] to send a
//!   body frame without copying its data);
//! * an incremental, bounded [`Decoder`] that accepts bytes in any splits and
//!   turns hostile input into a [`DecodeError`], never a panic or an
//!   allocation beyond its [`Limits`];
//! * conversions to and from `http::request::Parts` and `http::response::Parts`;
//! * [`render_http1`] / [`Http1Renderer`]: a frame sequence as HTTP/1.1 bytes;
//! * [`AwsChunkedDecoder`]: the `aws-chunked` content coding of S3 streaming
//!   uploads (`docs/s3.md`), which the ingress decodes before the body
//!   reaches its slots.
//! * [`hop_by_hop`]: which header fields describe one connection (RFC 9110
//!   §7.6.1), the definition every crate that forwards messages shares.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use http_pack::{Decoder, Frame, RequestHead, encode, render_http1};
//!
//! let request = http::Request::post("http://example.com/upload?id=7")
//!     .header("content-type", "text/plain")
//!     .body(())
//!     .unwrap();
//! let (parts, ()) = request.into_parts();
//! let head = RequestHead::from_parts(&parts).unwrap();
//!
//! let frames = [
//!     Frame::RequestHeaders { stream_id: 7, head },
//!     Frame::Body { stream_id: 7, data: Bytes::from_static(b"hello") },
//!     Frame::End { stream_id: 7 },
//! ];
//! let mut wire = BytesMut::new();
//! for frame in &frames {
//!     encode(frame, &mut wire);
//! }
//!
//! // Bytes may arrive in any pieces.
//! let mut decoder = Decoder::new();
//! let mut decoded = Vec::new();
//! for piece in wire.chunks(5) {
//!     decoder.feed(piece);
//!     while let Some(frame) = decoder.decode().unwrap() {
//!         decoded.push(frame);
//!     }
//! }
//! decoder.finish().unwrap();
//! assert_eq!(decoded, frames);
//!
//! let http1 = render_http1(&decoded).unwrap();
//! assert_eq!(
//!     &http1[..],
//!     b"POST /upload?id=7 HTTP/1.1\r\n\
//!       host: example.com\r\n\
//!       content-type: text/plain\r\n\
//!       transfer-encoding: chunked\r\n\r\n\
//!       5\r\nhello\r\n0\r\n\r\n"
//! );
//! ```
#![forbid(unsafe_code)]

mod aws_chunked;
mod convert;
mod decoder;
mod encode;
mod error;
mod frame;
mod head;
pub mod hop_by_hop;
mod http1;
mod limits;
mod parse;
mod varint;

pub use aws_chunked::{
    AWS_CHUNKED, AwsChunkEvent, AwsChunkedDecoder, AwsChunkedError, AwsChunkedLimits, encode_chunk,
    encode_final_chunk, is_aws_chunked, strip_aws_chunked,
};
pub use convert::ConvertError;
pub use decoder::{Decoder, decode_frame};
pub use encode::{encode, encode_prefix, encoded_len, to_bytes};
pub use error::DecodeError;
pub use frame::{
    AbortReason, FORMAT_VERSION, Frame, FrameType, HttpVersion, MAGIC, MAX_ABORT_MESSAGE_LEN,
};
pub use head::{Header, HeaderError, RequestHead, ResponseHead};
pub use http1::{Http1Renderer, RenderError, render_http1};
pub use limits::Limits;
