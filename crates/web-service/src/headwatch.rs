//! The request-head clock of a TCP connection, fed from the bytes hyper reads, and
//! the `408` a late HTTP/1.1 head gets.
//!
//! hyper has no per-request head timeout on HTTP/2 and only one for HTTP/1.1 that
//! also runs while a keep-alive connection is idle, so the reads are watched here: on
//! HTTP/1.1 a head starts with the first byte after the previous request began; on
//! HTTP/2 the frame headers are followed (9 bytes each, payloads skipped, so the cost
//! is per frame, not per byte) and a head runs from a HEADERS frame to the end of the
//! frame that carries `END_HEADERS`. PINGs, SETTINGS and DATA start nothing.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn::ConnState;

/// What a late HTTP/1.1 head gets before the connection closes.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 39\r\nconnection: close\r\n\r\n\
request head not received in time (408)\n";

/// The HTTP/2 connection preface a client sends first (RFC 9113 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which wire format the bytes are.
#[derive(Debug)]
pub(crate) enum Wire {
    /// Cleartext before its first bytes tell: HTTP/1.1 or h2c by prior knowledge
    /// (`seen` bytes of the preface matched so far).
    Unknown {
        seen: usize,
    },
    Http1,
    Http2(H2Frames),
}

impl Wire {
    /// The format a TLS connection negotiated by ALPN.
    pub(crate) fn from_alpn(alpn: Option<&[u8]>) -> Self {
        match alpn {
            Some(b"h2") => Self::Http2(H2Frames::default()),
            _ => Self::Http1,
        }
    }
}

/// Tells the connection when request heads start and end; answers `408` for it.
pub(crate) struct ReadWatch<T> {
    inner: T,
    conn: Arc<ConnState>,
    wire: Wire,
    /// Bytes of [`REQUEST_TIMEOUT`] written so far.
    answered: usize,
}

impl<T> ReadWatch<T> {
    pub(crate) fn new(inner: T, conn: Arc<ConnState>, wire: Wire) -> Self {
        Self {
            inner,
            conn,
            wire,
            answered: 0,
        }
    }

    fn observe(&mut self, data: &[u8]) {
        if let Wire::Unknown { seen } = &mut self.wire {
            let want = &H2_PREFACE[*seen..];
            let n = data.len().min(want.len());
            if data[..n] != want[..n] {
                self.wire = Wire::Http1;
            } else if *seen + n >= 3 {
                // "PRI" is no HTTP/1.1 method: the rest is HTTP/2 frames.
                let mut frames = H2Frames::default();
                frames.skip -= *seen;
                self.wire = Wire::Http2(frames);
            } else {
                // Still undecided; the connection's age bounds its first head anyway.
                *seen += n;
                return;
            }
        }
        match &mut self.wire {
            Wire::Http2(frames) => frames.feed(data, &self.conn),
            _ => self.conn.on_read(),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> ReadWatch<T> {
    /// Writes the `408`, then reports end of input so hyper closes the connection.
    fn answer_timeout(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.answered < REQUEST_TIMEOUT.len() {
            match ready!(
                Pin::new(&mut self.inner).poll_write(cx, &REQUEST_TIMEOUT[self.answered..])
            ) {
                Ok(n) if n > 0 => self.answered += n,
                _ => return Poll::Ready(Ok(())),
            }
        }
        let _ = ready!(Pin::new(&mut self.inner).poll_flush(cx));
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for ReadWatch<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.conn.head_expired(cx.waker()) {
            if let Wire::Http2(_) = this.wire {
                // A header block is cut off mid-way: no frame can be sent on its
                // connection that the client would read, so it just ends.
                return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
            }
            return this.answer_timeout(cx);
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let filled = buf.filled();
            // `observe` needs `&mut self`; the slice borrows `buf`, not `this`.
            this.observe(&filled[before..]);
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadWatch<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.conn.on_write();
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.conn.on_write();
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// Follows HTTP/2 frame boundaries in the client's byte stream. Only one header block
/// can be in progress on a connection: CONTINUATION frames must follow their HEADERS
/// with nothing in between (RFC 9113 6.10).
#[derive(Debug)]
pub(crate) struct H2Frames {
    /// Bytes to pass over before the next frame header (preface, then payloads).
    skip: usize,
    header: [u8; FRAME_HEADER],
    have: usize,
    /// The frame being skipped ends a header block.
    ends_head: bool,
}

impl Default for H2Frames {
    fn default() -> Self {
        Self {
            skip: H2_PREFACE.len(),
            header: [0; FRAME_HEADER],
            have: 0,
            ends_head: false,
        }
    }
}

impl H2Frames {
    fn feed(&mut self, mut data: &[u8], conn: &ConnState) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                if self.skip == 0 {
                    self.payload_done(conn);
                }
                continue;
            }
            let n = (FRAME_HEADER - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            // The type is the fourth byte: a HEADERS frame starts the head clock as soon
            // as it is known, so a frame header trickled byte by byte is timed too.
            if self.have >= 4 && self.header[3] == HEADERS {
                conn.head_begun();
            }
            if self.have == FRAME_HEADER {
                let [l0, l1, l2, kind, flags, ..] = self.header;
                let len = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
                self.ends_head = matches!(kind, HEADERS | CONTINUATION) && flags & END_HEADERS != 0;
                self.have = 0;
                self.skip = len;
                if len == 0 {
                    self.payload_done(conn);
                }
            }
        }
    }

    fn payload_done(&mut self, conn: &ConnState) {
        if std::mem::take(&mut self.ends_head) {
            conn.head_done();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    /// Feeds `bytes` one at a time and reports after each byte whether a head runs.
    fn heads(bytes: &[u8]) -> Vec<bool> {
        let conn = ConnState::for_tests();
        let mut frames = H2Frames::default();
        bytes
            .iter()
            .map(|b| {
                frames.feed(std::slice::from_ref(b), &conn);
                conn.head_in_progress()
            })
            .collect()
    }

    #[test]
    fn header_block_runs_from_headers_type_to_end_headers_payload() {
        let mut wire = H2_PREFACE.to_vec();
        wire.extend(frame(0x4, 0, &[0; 6])); // SETTINGS
        wire.extend(frame(0x6, 0, &[0; 8])); // PING
        let headers_at = wire.len();
        wire.extend(frame(HEADERS, 0, &[1, 2, 3]));
        wire.extend(frame(CONTINUATION, END_HEADERS, &[4, 5]));
        let end = wire.len();
        wire.extend(frame(0x0, 0, &[9; 20])); // DATA
        let seen = heads(&wire);
        assert!(
            seen[..headers_at + 3].iter().all(|h| !h),
            "nothing before the type byte"
        );
        assert!(seen[headers_at + 3..end - 1].iter().all(|h| *h));
        assert!(
            seen[end - 1..].iter().all(|h| !h),
            "done with the last payload byte"
        );
    }

    #[test]
    fn cleartext_wire_is_told_from_its_first_bytes_even_one_at_a_time() {
        let mut h2 = ReadWatch::new((), ConnState::for_tests(), Wire::Unknown { seen: 0 });
        for b in H2_PREFACE {
            h2.observe(std::slice::from_ref(b));
        }
        assert!(matches!(h2.wire, Wire::Http2(_)));
        h2.observe(&frame(HEADERS, 0, &[1])[..4]);
        assert!(
            h2.conn.head_in_progress(),
            "frames counted from the preface's end"
        );

        let mut h1 = ReadWatch::new((), ConnState::for_tests(), Wire::Unknown { seen: 0 });
        h1.observe(b"P");
        assert!(matches!(h1.wire, Wire::Unknown { seen: 1 }));
        h1.observe(b"UT / HTTP/1.1\r\n");
        assert!(matches!(h1.wire, Wire::Http1));
        assert!(h1.conn.head_in_progress());
    }

    #[test]
    fn empty_headers_frame_with_end_headers_ends_at_once() {
        let mut wire = H2_PREFACE.to_vec();
        wire.extend(frame(HEADERS, END_HEADERS, &[]));
        assert!(!heads(&wire).last().copied().unwrap_or(true));
        wire.extend(frame(HEADERS, 0, &[1]));
        assert!(heads(&wire).last().copied().unwrap_or(false));
    }
}
