//! The frame model: what one HPKS frame carries (`docs/hpks.md` §2–§8).

use bytes::Bytes;

use crate::head::{RequestHead, ResponseHead};

/// The four bytes every frame starts with (§2).
pub const MAGIC: [u8; 4] = *b"HPKS";

/// The format version this crate writes and reads (§2, §10).
pub const FORMAT_VERSION: u8 = 1;

/// The longest abort message, in bytes; longer ones are cut on encode (§8).
pub const MAX_ABORT_MESSAGE_LEN: usize = 255;

/// One HPKS frame: a piece of one HTTP message on one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A request head: method, target, version and headers (§3).
    RequestHeaders {
        /// The stream the frame belongs to.
        stream_id: u64,
        /// The request head.
        head: RequestHead,
    },
    /// A response head: status, version and headers (§4).
    ResponseHeaders {
        /// The stream the frame belongs to.
        stream_id: u64,
        /// The response head.
        head: ResponseHead,
    },
    /// A piece of message body, without transfer coding (§6).
    Body {
        /// The stream the frame belongs to.
        stream_id: u64,
        /// The body bytes; may be empty.
        data: Bytes,
    },
    /// The message ended cleanly (§7).
    End {
        /// The stream the frame belongs to.
        stream_id: u64,
    },
    /// The message will never be completed (§8).
    Abort {
        /// The stream the frame belongs to.
        stream_id: u64,
        /// Who or what gave up.
        reason: AbortReason,
        /// A short diagnostic, empty when there is none (at most
        /// [`MAX_ABORT_MESSAGE_LEN`] bytes once encoded).
        message: String,
    },
}

impl Frame {
    /// The stream this frame belongs to.
    pub fn stream_id(&self) -> u64 {
        match self {
            Frame::RequestHeaders { stream_id, .. }
            | Frame::ResponseHeaders { stream_id, .. }
            | Frame::Body { stream_id, .. }
            | Frame::End { stream_id }
            | Frame::Abort { stream_id, .. } => *stream_id,
        }
    }

    /// The frame's type code.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::RequestHeaders { .. } => FrameType::RequestHeaders,
            Frame::ResponseHeaders { .. } => FrameType::ResponseHeaders,
            Frame::Body { .. } => FrameType::Body,
            Frame::End { .. } => FrameType::End,
            Frame::Abort { .. } => FrameType::Abort,
        }
    }
}

/// The frame type byte (§2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// §3.
    RequestHeaders = 0x01,
    /// §4.
    ResponseHeaders = 0x02,
    /// §6.
    Body = 0x03,
    /// §7.
    End = 0x04,
    /// §8.
    Abort = 0x05,
}

impl FrameType {
    /// Every type this version defines.
    pub const ALL: [FrameType; 5] = [
        FrameType::RequestHeaders,
        FrameType::ResponseHeaders,
        FrameType::Body,
        FrameType::End,
        FrameType::Abort,
    ];

    /// The type for a code byte, if this version knows it.
    pub fn from_code(code: u8) -> Option<FrameType> {
        FrameType::ALL.into_iter().find(|t| t.code() == code)
    }

    /// The code byte written on the wire.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Why a stream was aborted: a `u16` code on the wire (§8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbortReason {
    /// The client disconnected (code 1).
    ClientGone,
    /// The worker disconnected or dropped its claim (code 2).
    WorkerGone,
    /// A deadline passed (code 3).
    Timeout,
    /// A size limit was exceeded (code 4).
    TooLarge,
    /// The sender failed internally (code 5).
    Internal,
    /// A code this version does not name; never one of the codes above.
    Other(u16),
}

impl AbortReason {
    /// The reason for a wire code; known codes always map to their named variant.
    pub fn from_code(code: u16) -> AbortReason {
        match code {
            1 => AbortReason::ClientGone,
            2 => AbortReason::WorkerGone,
            3 => AbortReason::Timeout,
            4 => AbortReason::TooLarge,
            5 => AbortReason::Internal,
            other => AbortReason::Other(other),
        }
    }

    /// The wire code.
    pub fn code(self) -> u16 {
        match self {
            AbortReason::ClientGone => 1,
            AbortReason::WorkerGone => 2,
            AbortReason::Timeout => 3,
            AbortReason::TooLarge => 4,
            AbortReason::Internal => 5,
            AbortReason::Other(code) => code,
        }
    }
}

/// The HTTP version a head was received with (§1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HttpVersion {
    /// HTTP/0.9.
    Http09 = 0x09,
    /// HTTP/1.0.
    Http10 = 0x10,
    /// HTTP/1.1.
    Http11 = 0x11,
    /// HTTP/2.
    H2 = 0x20,
    /// HTTP/3.
    H3 = 0x30,
}

impl HttpVersion {
    /// Every version HPKS has a code for.
    pub const ALL: [HttpVersion; 5] = [
        HttpVersion::Http09,
        HttpVersion::Http10,
        HttpVersion::Http11,
        HttpVersion::H2,
        HttpVersion::H3,
    ];

    /// The version for a code byte, if it is one of §1.4.
    pub fn from_code(code: u8) -> Option<HttpVersion> {
        HttpVersion::ALL.into_iter().find(|v| v.code() == code)
    }

    /// The code byte written on the wire.
    pub fn code(self) -> u8 {
        self as u8
    }
}
