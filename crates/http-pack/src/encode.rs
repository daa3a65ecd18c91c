//! The encoder: frames to bytes (`docs/hpks.md` §2–§8).

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::{FORMAT_VERSION, Frame, MAGIC, MAX_ABORT_MESSAGE_LEN};
use crate::head::{Header, RequestHead, ResponseHead};
use crate::varint;

/// Appends the encoding of `frame` to `dst`.
///
/// Encoding cannot fail: the types only hold what the format can carry. An
/// abort message longer than [`MAX_ABORT_MESSAGE_LEN`] bytes is cut at a
/// character boundary (§8).
pub fn encode(frame: &Frame, dst: &mut BytesMut) {
    let rest = rest_len(frame);
    dst.reserve(header_len(rest) + rest);
    if let Some(data) = write_prefix(frame, rest, dst) {
        dst.extend_from_slice(&data);
    }
}

/// The encoding of `frame` in a buffer of its own, sized exactly.
pub fn to_bytes(frame: &Frame) -> Bytes {
    let mut dst = BytesMut::new();
    encode(frame, &mut dst);
    dst.freeze()
}

/// Appends all of `frame` but a body frame's data, and returns that data.
///
/// The frame is `dst`'s new bytes followed by the returned `Bytes` (a cheap
/// reference-counted clone): a writer can send both, vectored, without ever
/// copying the body. Returns `None` for every frame type but [`Frame::Body`].
pub fn encode_prefix(frame: &Frame, dst: &mut BytesMut) -> Option<Bytes> {
    write_prefix(frame, rest_len(frame), dst)
}

/// The exact number of bytes [`encode`] appends for `frame`.
pub fn encoded_len(frame: &Frame) -> usize {
    let rest = rest_len(frame);
    header_len(rest) + rest
}

/// Bytes before the stream id: magic, version, type, length (§2).
fn header_len(rest: usize) -> usize {
    MAGIC.len() + 2 + varint::len(rest as u64)
}

/// [`encode_prefix`] with the frame length already computed.
fn write_prefix(frame: &Frame, rest: usize, dst: &mut BytesMut) -> Option<Bytes> {
    // §2: the frame header.
    dst.put_slice(&MAGIC);
    dst.put_u8(FORMAT_VERSION);
    dst.put_u8(frame.frame_type().code());
    put_varint(dst, rest as u64);
    put_varint(dst, frame.stream_id());
    put_fields(dst, frame);
    match frame {
        Frame::Body { data, .. } => Some(data.clone()),
        _ => None,
    }
}

/// Where the field writer puts bytes: a buffer, or a counter that sizes one.
trait Sink {
    fn emit(&mut self, bytes: &[u8]);
}

impl Sink for BytesMut {
    fn emit(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Counts bytes instead of storing them, so lengths come from the writer itself.
struct Counter(usize);

impl Sink for Counter {
    fn emit(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// The frame length field's value: the bytes after it (§2).
fn rest_len(frame: &Frame) -> usize {
    let mut counter = Counter(varint::len(frame.stream_id()));
    put_fields(&mut counter, frame);
    match frame {
        Frame::Body { data, .. } => counter.0 + data.len(),
        _ => counter.0,
    }
}

/// Writes the per-type fields after the stream id, except a body's data.
fn put_fields(out: &mut impl Sink, frame: &Frame) {
    match frame {
        Frame::RequestHeaders { head, .. } => put_request(out, head),
        Frame::ResponseHeaders { head, .. } => put_response(out, head),
        // §6: the data is the rest of the frame, with no length of its own;
        // §7: an end frame has nothing after the stream id.
        Frame::Body { .. } | Frame::End { .. } => {}
        Frame::Abort {
            reason, message, ..
        } => {
            // §8: the code, then the message as a string.
            out.emit(&reason.code().to_be_bytes());
            put_string(out, abort_message(message).as_bytes());
        }
    }
}

/// `message`, cut to at most [`MAX_ABORT_MESSAGE_LEN`] bytes on a character boundary.
fn abort_message(message: &str) -> &str {
    let mut end = message.len().min(MAX_ABORT_MESSAGE_LEN);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// §3: method, scheme, authority, path, version, header list. An absent
/// scheme, authority or path is an empty string.
fn put_request(out: &mut impl Sink, head: &RequestHead) {
    put_string(out, head.method.as_str().as_bytes());
    put_string(
        out,
        head.scheme.as_ref().map_or("", |s| s.as_str()).as_bytes(),
    );
    put_string(
        out,
        head.authority
            .as_ref()
            .map_or("", |a| a.as_str())
            .as_bytes(),
    );
    put_string(
        out,
        head.path.as_ref().map_or("", |p| p.as_str()).as_bytes(),
    );
    out.emit(&[head.version.code()]);
    put_headers(out, &head.headers);
}

/// §4: status (u16), version, header list.
fn put_response(out: &mut impl Sink, head: &ResponseHead) {
    out.emit(&head.status.as_u16().to_be_bytes());
    out.emit(&[head.version.code()]);
    put_headers(out, &head.headers);
}

/// §5: the count, then each name and value as strings.
fn put_headers(out: &mut impl Sink, headers: &[Header]) {
    put_varint(out, headers.len() as u64);
    for header in headers {
        put_string(out, header.name());
        put_string(out, header.value());
    }
}

/// §1.3: a varint length, then the bytes.
fn put_string(out: &mut impl Sink, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.emit(bytes);
}

fn put_varint(out: &mut impl Sink, value: u64) {
    let mut buf = [0u8; varint::MAX_VARINT_LEN];
    let mut slice = &mut buf[..];
    varint::put(&mut slice, value);
    let written = varint::MAX_VARINT_LEN - slice.len();
    out.emit(&buf[..written]);
}
