//! Reading one complete frame's fields (`docs/hpks.md` §3–§8).
//!
//! Every length is checked against the bytes left in the frame and against
//! [`Limits`] before it is used; fields are slices of the frame's buffer, so
//! nothing is allocated from a declared length.

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, StatusCode};

use crate::error::DecodeError;
use crate::frame::{AbortReason, Frame, FrameType, HttpVersion, MAX_ABORT_MESSAGE_LEN};
use crate::head::{Header, HeaderError, RequestHead, ResponseHead};
use crate::limits::Limits;
use crate::varint::{self, VarintError};

/// Parses the bytes after a frame's length field (§2) as a frame of type `code`.
pub(crate) fn frame(code: u8, rest: Bytes, limits: &Limits) -> Result<Frame, DecodeError> {
    let frame_type = FrameType::from_code(code).ok_or(DecodeError::UnknownFrameType(code))?;
    let mut c = Cursor { buf: rest, pos: 0 };
    let stream_id = c.varint("stream id")?;
    let frame = match frame_type {
        FrameType::RequestHeaders => Frame::RequestHeaders {
            stream_id,
            head: request(&mut c, limits)?,
        },
        FrameType::ResponseHeaders => Frame::ResponseHeaders {
            stream_id,
            head: response(&mut c, limits)?,
        },
        // §6: the data is whatever the frame length leaves.
        FrameType::Body => Frame::Body {
            stream_id,
            data: c.take_rest(),
        },
        FrameType::End => Frame::End { stream_id },
        FrameType::Abort => {
            let reason = AbortReason::from_code(c.u16("abort reason")?);
            let message = abort_message(&mut c)?;
            Frame::Abort {
                stream_id,
                reason,
                message,
            }
        }
    };
    c.finish()?;
    Ok(frame)
}

/// §3.
fn request(c: &mut Cursor, limits: &Limits) -> Result<RequestHead, DecodeError> {
    let mut budget = Budget::new(limits);
    let method = c.string("method", &mut budget)?;
    Ok(RequestHead {
        method: Method::from_bytes(&method).map_err(|_| DecodeError::InvalidMethod)?,
        scheme: uri_part(c, &mut budget)?,
        authority: uri_part(c, &mut budget)?,
        path: uri_part(c, &mut budget)?,
        version: version(c)?,
        headers: headers(c, limits, &mut budget)?,
    })
}

/// A URI component that §3 carries as an optional string.
trait UriPart: Sized {
    const FIELD: &'static str;
    const INVALID: DecodeError;
    fn parse(bytes: Bytes) -> Option<Self>;
    fn text(&self) -> &str;
}

impl UriPart for Scheme {
    const FIELD: &'static str = "scheme";
    const INVALID: DecodeError = DecodeError::InvalidScheme;
    fn parse(bytes: Bytes) -> Option<Scheme> {
        Scheme::try_from(&bytes[..]).ok()
    }
    fn text(&self) -> &str {
        self.as_str()
    }
}

impl UriPart for Authority {
    const FIELD: &'static str = "authority";
    const INVALID: DecodeError = DecodeError::InvalidAuthority;
    fn parse(bytes: Bytes) -> Option<Authority> {
        Authority::from_maybe_shared(bytes).ok()
    }
    fn text(&self) -> &str {
        self.as_str()
    }
}

impl UriPart for PathAndQuery {
    const FIELD: &'static str = "path";
    const INVALID: DecodeError = DecodeError::InvalidPath;
    fn parse(bytes: Bytes) -> Option<PathAndQuery> {
        PathAndQuery::from_maybe_shared(bytes).ok()
    }
    fn text(&self) -> &str {
        self.as_str()
    }
}

/// An empty string is an absent part (§3). A present one must parse, and
/// parse to exactly its bytes: the `http` parsers quietly drop some input
/// (a path's `#fragment`), and a value with two spellings would not round-trip.
fn uri_part<T: UriPart>(c: &mut Cursor, budget: &mut Budget) -> Result<Option<T>, DecodeError> {
    let bytes = c.string(T::FIELD, budget)?;
    if bytes.is_empty() {
        return Ok(None);
    }
    match T::parse(bytes.clone()) {
        Some(part) if part.text().as_bytes() == bytes => Ok(Some(part)),
        _ => Err(T::INVALID),
    }
}

/// §4.
fn response(c: &mut Cursor, limits: &Limits) -> Result<ResponseHead, DecodeError> {
    let code = c.u16("status")?;
    let status = StatusCode::from_u16(code).map_err(|_| DecodeError::InvalidStatus(code))?;
    let version = version(c)?;
    let headers = headers(c, limits, &mut Budget::new(limits))?;
    Ok(ResponseHead {
        status,
        version,
        headers,
    })
}

/// §1.4.
fn version(c: &mut Cursor) -> Result<HttpVersion, DecodeError> {
    let code = c.u8("version")?;
    HttpVersion::from_code(code).ok_or(DecodeError::UnknownHttpVersion(code))
}

/// §5: a count, then that many name and value strings.
fn headers(
    c: &mut Cursor,
    limits: &Limits,
    budget: &mut Budget,
) -> Result<Vec<Header>, DecodeError> {
    let count = c.varint("header count")?;
    if count > limits.max_headers as u64 {
        return Err(DecodeError::TooManyHeaders {
            count,
            limit: limits.max_headers,
        });
    }
    // A field takes at least two bytes, so the frame itself bounds the count
    // too; the capacity never trusts the declared count alone.
    let mut headers = Vec::with_capacity((count as usize).min(c.remaining() / 2));
    for _ in 0..count {
        let name = c.bounded_string("name", limits.max_name_len, budget)?;
        let value = c.bounded_string("value", limits.max_value_len, budget)?;
        headers.push(Header::new(name, value).map_err(|e| match e {
            HeaderError::InvalidName => DecodeError::InvalidHeaderName,
            HeaderError::InvalidValue => DecodeError::InvalidHeaderValue,
        })?);
    }
    Ok(headers)
}

/// §8: at most [`MAX_ABORT_MESSAGE_LEN`] bytes of UTF-8.
fn abort_message(c: &mut Cursor) -> Result<String, DecodeError> {
    let len = c.varint("abort message length")?;
    if len > MAX_ABORT_MESSAGE_LEN as u64 {
        return Err(DecodeError::InvalidAbortMessage);
    }
    let bytes = c.take(len, "abort message")?;
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::InvalidAbortMessage)
}

/// What is left of [`Limits::max_header_bytes`] for one head.
struct Budget {
    left: usize,
    limit: usize,
}

impl Budget {
    fn new(limits: &Limits) -> Budget {
        Budget {
            left: limits.max_header_bytes,
            limit: limits.max_header_bytes,
        }
    }

    fn spend(&mut self, len: u64) -> Result<(), DecodeError> {
        match usize::try_from(len)
            .ok()
            .and_then(|len| self.left.checked_sub(len))
        {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(DecodeError::HeadTooLarge { limit: self.limit }),
        }
    }
}

/// A read position in one frame's bytes.
struct Cursor {
    buf: Bytes,
    pos: usize,
}

impl Cursor {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, len: u64, field: &'static str) -> Result<Bytes, DecodeError> {
        if len > self.remaining() as u64 {
            return Err(DecodeError::Truncated { field });
        }
        let end = self.pos + len as usize;
        let bytes = self.buf.slice(self.pos..end);
        self.pos = end;
        Ok(bytes)
    }

    fn take_rest(&mut self) -> Bytes {
        let bytes = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        bytes
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let bytes = self.take(2, field)?;
        Ok(u16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn varint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let (value, len) = varint::get(&self.buf[self.pos..]).map_err(|e| match e {
            // Inside a complete frame, a varint cut short is a short frame.
            VarintError::Incomplete => DecodeError::Truncated { field },
            VarintError::Overflow => DecodeError::VarintOverflow { field },
            VarintError::NonCanonical => DecodeError::NonCanonicalVarint { field },
        })?;
        self.pos += len;
        Ok(value)
    }

    /// §1.3: a head string, charged to the head's budget.
    fn string(&mut self, field: &'static str, budget: &mut Budget) -> Result<Bytes, DecodeError> {
        let len = self.varint(field)?;
        budget.spend(len)?;
        self.take(len, field)
    }

    /// A header name or value: its own limit first, then the head's budget.
    fn bounded_string(
        &mut self,
        part: &'static str,
        limit: usize,
        budget: &mut Budget,
    ) -> Result<Bytes, DecodeError> {
        let len = self.varint(part)?;
        if len > limit as u64 {
            return Err(DecodeError::HeaderTooLarge { part, len, limit });
        }
        budget.spend(len)?;
        self.take(len, part)
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes { extra }),
        }
    }
}
