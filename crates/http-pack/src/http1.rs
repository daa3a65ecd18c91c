//! Rendering a frame sequence as HTTP/1.1 wire bytes (`docs/hpks.md` §11).

use bytes::{Bytes, BytesMut};
use http::StatusCode;

use crate::frame::{AbortReason, Frame, FrameType};
use crate::head::{self, Header, RequestHead, ResponseHead};

/// Why a frame sequence does not render as an HTTP/1.1 message (§11).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The sequence was aborted: there is no complete message to render.
    #[error("message aborted ({reason:?}): {message}")]
    Aborted {
        /// The abort frame's reason.
        reason: AbortReason,
        /// The abort frame's message.
        message: String,
    },
    /// A frame arrived where the sequence does not allow it.
    #[error("unexpected {got:?} frame: expected {expected}")]
    UnexpectedFrame {
        /// What the sequence allowed at this point.
        expected: &'static str,
        /// The frame that came instead.
        got: FrameType,
    },
    /// A frame belongs to another stream than the head.
    #[error("frame for stream {got} in a sequence for stream {expected}")]
    StreamMismatch {
        /// The head's stream id.
        expected: u64,
        /// The frame's stream id.
        got: u64,
    },
    /// A request head has neither a path nor an authority.
    #[error("request has neither a path nor an authority")]
    MissingTarget,
    /// `content-length` values are not one decimal number.
    #[error("invalid content-length")]
    InvalidContentLength,
    /// The body is longer or shorter than its `content-length`.
    #[error("body of {actual} bytes does not match content-length {declared}")]
    ContentLengthMismatch {
        /// The `content-length` value.
        declared: u64,
        /// The body bytes seen (so far, when too many).
        actual: u64,
    },
    /// A 1xx, 204 or 304 response carried body bytes.
    #[error("status {0} does not allow a body")]
    BodyNotAllowed(u16),
    /// The sequence stopped before its end frame.
    #[error("sequence ended without an end frame")]
    Unfinished,
}

/// Renders a whole sequence (head, body frames, end) as one HTTP/1.1 message.
pub fn render_http1(frames: &[Frame]) -> Result<BytesMut, RenderError> {
    let mut renderer = Http1Renderer::new();
    let mut dst = BytesMut::new();
    for frame in frames {
        renderer.push(frame, &mut dst)?;
    }
    if !renderer.is_done() {
        return Err(RenderError::Unfinished);
    }
    Ok(dst)
}

/// Renders one message's frames to HTTP/1.1 as they arrive (§11).
#[derive(Debug, Default)]
pub struct Http1Renderer {
    state: State,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Head,
    Body {
        stream_id: u64,
        framing: Framing,
    },
    Done,
}

/// How the body is delimited on the wire (§11.3).
#[derive(Debug, Clone, Copy)]
enum Framing {
    /// `content-length`: exactly `declared` bytes, `sent` so far.
    Length { declared: u64, sent: u64 },
    /// `transfer-encoding: chunked`.
    Chunked,
    /// The status forbids a body.
    Forbidden(u16),
}

impl Http1Renderer {
    /// A renderer waiting for a head frame.
    pub fn new() -> Http1Renderer {
        Http1Renderer::default()
    }

    /// Whether the end frame has been rendered.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Appends the wire bytes for `frame` to `dst`.
    ///
    /// On error nothing is appended, and the message on the wire so far is
    /// incomplete: the caller must not reuse the connection for another one.
    pub fn push(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), RenderError> {
        if let Frame::Abort {
            reason, message, ..
        } = frame
        {
            return Err(RenderError::Aborted {
                reason: *reason,
                message: message.clone(),
            });
        }
        match &mut self.state {
            State::Head => {
                let framing = match frame {
                    Frame::RequestHeaders { head, .. } => request_head(head, dst)?,
                    Frame::ResponseHeaders { head, .. } => response_head(head, dst)?,
                    other => return Err(unexpected("a head frame", other)),
                };
                self.state = State::Body {
                    stream_id: frame.stream_id(),
                    framing,
                };
            }
            State::Body { stream_id, framing } => {
                if frame.stream_id() != *stream_id {
                    return Err(RenderError::StreamMismatch {
                        expected: *stream_id,
                        got: frame.stream_id(),
                    });
                }
                match frame {
                    Frame::Body { data, .. } => body(framing, data, dst)?,
                    Frame::End { .. } => {
                        end(framing, dst)?;
                        self.state = State::Done;
                    }
                    other => return Err(unexpected("a body or end frame", other)),
                }
            }
            State::Done => return Err(unexpected("nothing after the end frame", frame)),
        }
        Ok(())
    }
}

fn unexpected(expected: &'static str, got: &Frame) -> RenderError {
    RenderError::UnexpectedFrame {
        expected,
        got: got.frame_type(),
    }
}

/// §11.1: request line, then `host` from the authority when absent.
fn request_head(head: &RequestHead, dst: &mut BytesMut) -> Result<Framing, RenderError> {
    let target = match (&head.path, &head.authority) {
        (Some(path), _) => path.as_str(),
        (None, Some(authority)) => authority.as_str(),
        (None, None) => return Err(RenderError::MissingTarget),
    };
    let framing = framing(&head.headers, None)?;
    put_all(
        dst,
        &[
            head.method.as_str().as_bytes(),
            b" ",
            target.as_bytes(),
            b" HTTP/1.1\r\n",
        ],
    );
    let has_host = head::find(&head.headers, "host").next().is_some();
    if let (Some(authority), false) = (&head.authority, has_host) {
        put_all(dst, &[b"host: ", authority.as_str().as_bytes(), b"\r\n"]);
    }
    put_headers(dst, &head.headers, framing);
    Ok(framing)
}

/// §11.2: status line with the canonical reason phrase, if any.
fn response_head(head: &ResponseHead, dst: &mut BytesMut) -> Result<Framing, RenderError> {
    let framing = framing(&head.headers, Some(head.status))?;
    let reason = head.status.canonical_reason().unwrap_or("");
    put_all(
        dst,
        &[
            b"HTTP/1.1 ",
            head.status.as_str().as_bytes(),
            b" ",
            reason.as_bytes(),
            b"\r\n",
        ],
    );
    put_headers(dst, &head.headers, framing);
    Ok(framing)
}

/// §11.3: no body for 1xx/204/304; else `content-length` if present, else chunked.
fn framing(headers: &[Header], status: Option<StatusCode>) -> Result<Framing, RenderError> {
    let no_body = |s: StatusCode| {
        s.is_informational() || s == StatusCode::NO_CONTENT || s == StatusCode::NOT_MODIFIED
    };
    if let Some(status) = status.filter(|&s| no_body(s)) {
        return Ok(Framing::Forbidden(status.as_u16()));
    }
    let mut declared = None;
    for header in head::find(headers, "content-length") {
        let value = std::str::from_utf8(header.value())
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(RenderError::InvalidContentLength)?;
        // RFC 9112 §6.3: repeated values must agree.
        if declared.is_some_and(|d| d != value) {
            return Err(RenderError::InvalidContentLength);
        }
        declared = Some(value);
    }
    Ok(match declared {
        Some(declared) => Framing::Length { declared, sent: 0 },
        None => Framing::Chunked,
    })
}

/// The head's fields but `transfer-encoding` (body frames carry decoded
/// bytes, §6), then the chunked marker if needed, then the blank line.
fn put_headers(dst: &mut BytesMut, headers: &[Header], framing: Framing) {
    for header in headers.iter().filter(|h| h.name() != b"transfer-encoding") {
        put_all(dst, &[header.name(), b": ", header.value(), b"\r\n"]);
    }
    if let Framing::Chunked = framing {
        dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    dst.extend_from_slice(b"\r\n");
}

fn body(framing: &mut Framing, data: &Bytes, dst: &mut BytesMut) -> Result<(), RenderError> {
    if data.is_empty() {
        // An empty chunk would read as the last one.
        return Ok(());
    }
    match framing {
        Framing::Forbidden(status) => return Err(RenderError::BodyNotAllowed(*status)),
        Framing::Length { declared, sent } => {
            let total = sent.saturating_add(data.len() as u64);
            if total > *declared {
                return Err(RenderError::ContentLengthMismatch {
                    declared: *declared,
                    actual: total,
                });
            }
            *sent = total;
            dst.extend_from_slice(data);
        }
        Framing::Chunked => {
            put_hex(dst, data.len());
            put_all(dst, &[b"\r\n", data, b"\r\n"]);
        }
    }
    Ok(())
}

fn end(framing: &Framing, dst: &mut BytesMut) -> Result<(), RenderError> {
    match *framing {
        Framing::Length { declared, sent } if sent != declared => {
            Err(RenderError::ContentLengthMismatch {
                declared,
                actual: sent,
            })
        }
        Framing::Chunked => {
            dst.extend_from_slice(b"0\r\n\r\n");
            Ok(())
        }
        _ => Ok(()),
    }
}

fn put_all(dst: &mut BytesMut, parts: &[&[u8]]) {
    for part in parts {
        dst.extend_from_slice(part);
    }
}

fn put_hex(dst: &mut BytesMut, mut n: usize) {
    let mut digits = [0u8; 2 * size_of::<usize>()];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    dst.extend_from_slice(&digits[start..]);
}
