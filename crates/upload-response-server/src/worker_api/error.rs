//! Worker API failures and the status code each one gets (the table in
//! `docs/worker-api.md`).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use upload_response::{CoordError, SignatureError, TailError};

/// Why a worker API call was refused. The body is one line of text.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// 401: no or wrong bearer token.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// 404: no such endpoint.
    #[error("no such endpoint")]
    NoSuchEndpoint,
    /// 400: a missing or malformed parameter or header.
    #[error("{0}")]
    BadRequest(String),
    /// 404: the stream is not in flight (finished, or never existed).
    #[error("no stream {0} in flight")]
    UnknownStream(u64),
    /// 409: the worker does not own what it tried to use, or the call
    /// conflicts with the stream's state (already claimed, already reading,
    /// headers already written, a concurrent call).
    #[error("{0}")]
    Conflict(String),
    /// 410: the stream ended under the caller (client gone, response
    /// timeout, slot recycled); `x-ur-abort` or `x-ur-oldest` says more.
    #[error("{message}")]
    Gone {
        /// What happened.
        message: String,
        /// Extra header explaining it.
        header: Option<(&'static str, String)>,
    },
    /// 413: a call body over its bound.
    #[error("{0}")]
    TooLarge(String),
    /// 500: a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NoSuchEndpoint | Self::UnknownStream(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Gone { .. } => StatusCode::GONE,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<CoordError> for ApiError {
    fn from(e: CoordError) -> Self {
        match e {
            CoordError::UnknownStream(id) => Self::UnknownStream(id),
            CoordError::InvalidHead(_) => Self::BadRequest(e.to_string()),
            CoordError::Write(_) | CoordError::ClientStalled(_) => Self::Gone {
                message: e.to_string(),
                header: None,
            },
            CoordError::NotOwner { .. }
            | CoordError::AlreadyClaimed(_)
            | CoordError::AlreadyReading { .. }
            | CoordError::HeadersSent(_)
            | CoordError::HeadersMissing(_)
            | CoordError::Busy(_) => Self::Conflict(e.to_string()),
        }
    }
}

impl From<TailError> for ApiError {
    fn from(e: TailError) -> Self {
        match e {
            TailError::UnknownStream(id) => Self::UnknownStream(id),
            TailError::Aborted(reason) => Self::Gone {
                message: e.to_string(),
                header: Some(("x-ur-abort", reason.to_string())),
            },
            TailError::Evicted { oldest, .. } => Self::Gone {
                message: e.to_string(),
                header: Some(("x-ur-oldest", oldest.to_string())),
            },
            TailError::PastEnd { .. } => Self::BadRequest(e.to_string()),
            TailError::CorruptHead(_) => Self::Internal(e.to_string()),
        }
    }
}

impl From<SignatureError> for ApiError {
    fn from(e: SignatureError) -> Self {
        // An aborted body's reason is on its body and slots; the record
        // only knows it ended unfinished.
        let header = match &e {
            SignatureError::Evicted { oldest, .. } => Some(("x-ur-oldest", oldest.to_string())),
            SignatureError::Aborted => None,
        };
        Self::Gone {
            message: e.to_string(),
            header,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::debug!(status = %self.status(), error = %self, "worker API call refused");
        let mut response = (self.status(), format!("{self}\n")).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if matches!(self, Self::Unauthorized) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Self::Gone {
            header: Some((name, value)),
            ..
        } = &self
            && let Ok(value) = HeaderValue::from_str(value)
        {
            headers.insert(*name, value);
        }
        response
    }
}
