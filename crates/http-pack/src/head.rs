//! Message heads and the header fields they carry (`docs/hpks.md` §3–§5).

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, StatusCode};

use crate::frame::HttpVersion;

/// The longest header name `http::HeaderName` accepts.
const MAX_NAME_LEN: usize = (1 << 16) - 1;

/// A request head as HPKS carries it (§3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The request method.
    pub method: Method,
    /// The URI scheme, if the request had one (HTTP/2 and HTTP/3 always do).
    pub scheme: Option<Scheme>,
    /// The authority (`host[:port]`), if the request target or `:authority` had one.
    pub authority: Option<Authority>,
    /// The path and query; `None` for an authority-form (`CONNECT`) target.
    pub path: Option<PathAndQuery>,
    /// The version the request was received with.
    pub version: HttpVersion,
    /// The header fields, in received order.
    pub headers: Vec<Header>,
}

/// A response head as HPKS carries it (§4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: StatusCode,
    /// The version the response is sent with.
    pub version: HttpVersion,
    /// The header fields, in order.
    pub headers: Vec<Header>,
}

/// One header field: a lowercase token name and a value, both kept as bytes (§5).
///
/// The constructor enforces exactly what `http::HeaderName` (in lowercase
/// form) and `http::HeaderValue` accept, so every `Header` converts to the
/// `http` types and renders as HTTP/1.1 without a way to inject a line break.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    name: Bytes,
    value: Bytes,
}

/// Why bytes are not a header field (§5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The name is empty, too long, not a token, or has an uppercase letter.
    #[error("invalid header name")]
    InvalidName,
    /// The value holds a control character other than tab.
    #[error("invalid header value")]
    InvalidValue,
}

impl Header {
    /// A header field from its name and value, if both are valid (§5).
    pub fn new(name: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<Header, HeaderError> {
        let (name, value) = (name.into(), value.into());
        if !is_valid_name(&name) {
            return Err(HeaderError::InvalidName);
        }
        if !is_valid_value(&value) {
            return Err(HeaderError::InvalidValue);
        }
        Ok(Header { name, value })
    }

    /// The name, lowercase ASCII.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The value bytes (not necessarily UTF-8).
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The name as a shared buffer, without copying.
    pub fn name_bytes(&self) -> &Bytes {
        &self.name
    }

    /// The value as a shared buffer, without copying.
    pub fn value_bytes(&self) -> &Bytes {
        &self.value
    }
}

/// RFC 9110 §5.6.2 `tchar`, minus uppercase letters (§5).
pub(crate) fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.iter().all(|&b| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// What `http::HeaderValue` accepts: no control bytes but tab (§5).
pub(crate) fn is_valid_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

/// The fields called `name` (given in lowercase), in order.
pub(crate) fn find<'a>(headers: &'a [Header], name: &'a str) -> impl Iterator<Item = &'a Header> {
    headers.iter().filter(move |h| h.name() == name.as_bytes())
}
