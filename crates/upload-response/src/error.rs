//! Errors of the coordination API, each mapped to what a worker can do about it.

use chunk_cache::{AbortReason, ConfigError, ReadError, StreamError, WriteError};
use http::StatusCode;

/// The service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The stream dimensions are unusable.
    #[error("invalid stream configuration: {0}")]
    Config(#[from] ConfigError),
    /// Slots must hold an encoded request head.
    #[error("slot_size_kb must be at least 4 (a slot must hold the encoded request head)")]
    SlotTooSmall,
}

/// A coordination call on a stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordError {
    /// No request in flight has this id (finished, or never existed).
    #[error("no stream {0} in flight")]
    UnknownStream(u64),
    /// Another worker owns the response, or nobody does.
    #[error("worker {worker} does not own the response of stream {stream}")]
    NotOwner {
        /// The stream.
        stream: u64,
        /// The worker that asked.
        worker: String,
    },
    /// The response was already claimed by another worker.
    #[error("the response of stream {0} is already claimed")]
    AlreadyClaimed(u64),
    /// The worker already registered as a reader of the stream.
    #[error("worker {worker} already reads stream {stream}")]
    AlreadyReading {
        /// The stream.
        stream: u64,
        /// The worker.
        worker: String,
    },
    /// Response headers were already written.
    #[error("response headers of stream {0} were already written")]
    HeadersSent(u64),
    /// Response body or end before the headers.
    #[error("response headers of stream {0} must be written first")]
    HeadersMissing(u64),
    /// The response stream refused the write (ended, aborted by a timeout or
    /// by the client going away).
    #[error("response write failed: {0}")]
    Write(#[from] WriteError),
    /// Another call of the same worker is writing this response right now.
    #[error("another call is writing the response of stream {0}; calls must not overlap")]
    Busy(u64),
    /// The response head is not valid HTTP.
    #[error("invalid response head: {0}")]
    InvalidHead(String),
    /// The response write waited `response_idle_timeout_ms` for the client
    /// to read; the response is aborted.
    #[error("the client read nothing of the response for {0} ms")]
    ClientStalled(u64),
}

impl From<StreamError> for CoordError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Stale(id) | StreamError::Unknown(id) => Self::UnknownStream(id.as_u64()),
        }
    }
}

/// A request slot could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TailError {
    /// The client went away or the request was abandoned: never a clean end.
    #[error("request aborted: {0}")]
    Aborted(AbortReason),
    /// The slot was recycled before it was read (read faster, or register as a reader).
    #[error("slot {slot} was recycled; oldest retained body slot is {oldest}")]
    Evicted {
        /// Slot asked for.
        slot: u64,
        /// Oldest slot still retained.
        oldest: u64,
    },
    /// Past the end marker.
    #[error("slot {slot} is past the end of the request (end marker at {end})")]
    PastEnd {
        /// Slot asked for.
        slot: u64,
        /// End marker slot.
        end: u64,
    },
    /// The stream is no longer in flight.
    #[error("no stream {0} in flight")]
    UnknownStream(u64),
    /// Slot 1 did not hold a request head (a bug, or memory corruption: the hash is checked).
    #[error("corrupt request head: {0}")]
    CorruptHead(String),
}

impl From<ReadError> for TailError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Aborted(r) => Self::Aborted(r),
            ReadError::Evicted { slot, oldest } => Self::Evicted { slot, oldest },
            ReadError::PastEnd { slot, end } => Self::PastEnd { slot, end },
            ReadError::Stream(StreamError::Stale(id) | StreamError::Unknown(id)) => {
                Self::UnknownStream(id.as_u64())
            }
        }
    }
}

/// Why the ingress ended a request: each failure of ARCHITECTURE.md §6 with
/// its client status, the abort reason workers see, and its WebSocket close
/// code, decided here once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngressError {
    /// The client address already holds `max_streams_per_client` streams.
    #[error("this client already has {limit} requests in flight; retry shortly")]
    ClientBusy {
        /// The limit in force.
        limit: usize,
    },
    /// Every stream stayed busy for the queue timeout.
    #[error("all streams are busy; retry shortly")]
    StreamsBusy,
    /// HTTP/1.1 needs exactly one `Host` header (RFC 9112 §3.2).
    #[error("an HTTP/1.1 request needs exactly one Host header, this one has {0}")]
    HostCount(usize),
    /// The head cannot be encoded for workers.
    #[error("unusable request head: {0}")]
    BadHead(String),
    /// The encoded head does not fit in one slot.
    #[error("request headers do not fit in one slot")]
    HeadersTooLarge,
    /// The body is larger than `max_body_bytes`.
    #[error("request body exceeds max_body_bytes")]
    TooLarge,
    /// No body byte arrived for `body_idle_timeout_ms` while the body was incomplete.
    #[error("no request body byte for {0} ms")]
    BodyIdle(u64),
    /// The body ended before (or ran past) its `Content-Length`.
    #[error("request body of {received} bytes does not match its content-length {declared}")]
    BodyLength {
        /// What `Content-Length` announced.
        declared: u64,
        /// What arrived before the end (or the first byte beyond it).
        received: u64,
    },
    /// The client reset the stream, dropped the connection or broke the framing.
    #[error("request body failed: {0}")]
    BodyFailed(String),
    /// A WebSocket upload closed with a code other than 1000 before its end.
    #[error("WebSocket closed with code {0} before the body's end")]
    WsClosed(u16),
    /// No worker claimed the request within the claim timeout.
    #[error("no worker claimed the request in time")]
    NoClaim,
    /// The worker wrote no response head within the response timeout.
    #[error("the worker did not respond in time")]
    NoResponse,
    /// The response made no progress for `response_idle_timeout_ms`: the
    /// worker wrote nothing, or the client read nothing.
    #[error("the response made no progress for {0} ms")]
    ResponseIdle(u64),
    /// The worker went away before its response head.
    #[error("the worker went away before responding")]
    WorkerGone,
    /// The worker's response head is unusable.
    #[error("worker response head is unusable: {0}")]
    BadResponse(&'static str),
    /// A stream of the request vanished while it was being set up.
    #[error("stream vanished while opening")]
    Vanished,
}

impl IngressError {
    /// The status the client gets when the response has not started.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::ClientBusy { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::StreamsBusy | Self::NoClaim => StatusCode::SERVICE_UNAVAILABLE,
            Self::HostCount(_) | Self::BadHead(_) | Self::BodyLength { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::BodyFailed(_) | Self::WsClosed(_) => StatusCode::BAD_REQUEST,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyIdle(_) => StatusCode::REQUEST_TIMEOUT,
            Self::NoResponse | Self::ResponseIdle(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::WorkerGone | Self::BadResponse(_) => StatusCode::BAD_GATEWAY,
            Self::Vanished => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What workers reading the request's streams see.
    pub fn abort_reason(&self) -> AbortReason {
        match self {
            Self::BodyIdle(_) | Self::NoClaim | Self::NoResponse | Self::ResponseIdle(_) => {
                AbortReason::Timeout
            }
            Self::TooLarge => AbortReason::TooLarge,
            Self::BodyLength { .. } | Self::BodyFailed(_) | Self::WsClosed(_) => {
                AbortReason::ClientGone
            }
            Self::WorkerGone => AbortReason::WorkerGone,
            Self::ClientBusy { .. }
            | Self::StreamsBusy
            | Self::HostCount(_)
            | Self::BadHead(_)
            | Self::HeadersTooLarge
            | Self::BadResponse(_)
            | Self::Vanished => AbortReason::Internal,
        }
    }

    /// Seconds for `Retry-After`, for refusals that a retry can cure.
    pub fn retry_after(&self) -> Option<u32> {
        matches!(self, Self::ClientBusy { .. } | Self::StreamsBusy).then_some(1)
    }

    /// The WebSocket close code: a silent session is a policy violation
    /// (1008); other failures after the response started are 1011; before
    /// it, `4000 + status` as for any refusal (ARCHITECTURE.md §7).
    pub fn ws_close_code(&self, response_started: bool) -> u16 {
        match self {
            Self::BodyIdle(_) => 1008,
            _ if response_started => 1011,
            _ => 4000 + self.status().as_u16(),
        }
    }

    /// Recovers the typed failure from a body error: our own adapters send
    /// an `IngressError`; anything else (hyper, h3, tungstenite) is the
    /// client breaking its stream.
    pub(crate) fn from_body_error(e: crate::BoxError) -> Self {
        match e.downcast::<Self>() {
            Ok(typed) => *typed,
            Err(other) => Self::BodyFailed(other.to_string()),
        }
    }
}
