//! Conversions between HPKS heads and the `http` crate's types.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{self, PathAndQuery, Uri};
use http::{Request, Response, Version, request, response};

use crate::frame::HttpVersion;
use crate::head::{Header, HeaderError, RequestHead, ResponseHead};

/// Why a head does not convert to or from the `http` types.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// `http` has a version HPKS has no code for.
    #[error("HTTP version {0:?} has no HPKS code")]
    UnsupportedVersion(Version),
    /// A request with a scheme but no authority has no absolute URI.
    #[error("request has a scheme but no authority")]
    MissingAuthority,
    /// A request with neither a path nor an authority has no target.
    #[error("request has neither a path nor an authority")]
    MissingTarget,
    /// The URI parts do not form a URI.
    #[error("invalid request URI")]
    InvalidUri(#[from] uri::InvalidUriParts),
    /// A header field is not valid (§5).
    #[error(transparent)]
    InvalidHeader(#[from] HeaderError),
}

impl From<HttpVersion> for Version {
    fn from(version: HttpVersion) -> Version {
        match version {
            HttpVersion::Http09 => Version::HTTP_09,
            HttpVersion::Http10 => Version::HTTP_10,
            HttpVersion::Http11 => Version::HTTP_11,
            HttpVersion::H2 => Version::HTTP_2,
            HttpVersion::H3 => Version::HTTP_3,
        }
    }
}

impl TryFrom<Version> for HttpVersion {
    type Error = ConvertError;

    fn try_from(version: Version) -> Result<HttpVersion, ConvertError> {
        Ok(match version {
            Version::HTTP_09 => HttpVersion::Http09,
            Version::HTTP_10 => HttpVersion::Http10,
            Version::HTTP_11 => HttpVersion::Http11,
            Version::HTTP_2 => HttpVersion::H2,
            Version::HTTP_3 => HttpVersion::H3,
            other => return Err(ConvertError::UnsupportedVersion(other)),
        })
    }
}

impl RequestHead {
    /// The head of an `http` request: scheme, authority and path come from its URI.
    pub fn from_parts(parts: &request::Parts) -> Result<RequestHead, ConvertError> {
        let uri = &parts.uri;
        Ok(RequestHead {
            method: parts.method.clone(),
            scheme: uri.scheme().cloned(),
            authority: uri.authority().cloned(),
            path: uri.path_and_query().map(canonical_path),
            version: parts.version.try_into()?,
            headers: headers_from_map(&parts.headers)?,
        })
    }

    /// The `http` request parts for this head.
    ///
    /// With a scheme, the URI is absolute (a missing path becomes `/`).
    /// Without one it is the path alone, or the authority alone when there is
    /// no path (`CONNECT`): `http::Uri` cannot hold an authority and a path
    /// without a scheme, so such an authority is left to the `host` header.
    pub fn to_parts(&self) -> Result<request::Parts, ConvertError> {
        let mut uri = uri::Parts::default();
        match (&self.scheme, &self.authority, &self.path) {
            (Some(_), None, _) => return Err(ConvertError::MissingAuthority),
            (Some(scheme), authority, path) => {
                uri.scheme = Some(scheme.clone());
                uri.authority = authority.clone();
                uri.path_and_query = Some(
                    path.clone()
                        .unwrap_or_else(|| PathAndQuery::from_static("/")),
                );
            }
            (None, _, Some(path)) => uri.path_and_query = Some(path.clone()),
            (None, Some(authority), None) => uri.authority = Some(authority.clone()),
            (None, None, None) => return Err(ConvertError::MissingTarget),
        }
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = self.method.clone();
        parts.uri = Uri::from_parts(uri)?;
        parts.version = self.version.into();
        parts.headers = headers_to_map(&self.headers)?;
        Ok(parts)
    }
}

impl ResponseHead {
    /// The head of an `http` response.
    pub fn from_parts(parts: &response::Parts) -> Result<ResponseHead, ConvertError> {
        Ok(ResponseHead {
            status: parts.status,
            version: parts.version.try_into()?,
            headers: headers_from_map(&parts.headers)?,
        })
    }

    /// The `http` response parts for this head.
    pub fn to_parts(&self) -> Result<response::Parts, ConvertError> {
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = self.status;
        parts.version = self.version.into();
        parts.headers = headers_to_map(&self.headers)?;
        Ok(parts)
    }
}

/// `http` shows an empty path as `/`; store it as `/` so that the head equals
/// what decoding its encoding gives.
fn canonical_path(path: &PathAndQuery) -> PathAndQuery {
    if path.as_str() == "/" {
        PathAndQuery::from_static("/")
    } else {
        path.clone()
    }
}

fn headers_from_map(map: &HeaderMap) -> Result<Vec<Header>, ConvertError> {
    map.iter()
        .map(|(name, value)| {
            // `http` already guarantees validity; checking again is cheap and
            // keeps `Header::new` the only way to make a `Header`.
            let name = Bytes::copy_from_slice(name.as_str().as_bytes());
            Ok(Header::new(name, Bytes::copy_from_slice(value.as_bytes()))?)
        })
        .collect()
}

fn headers_to_map(headers: &[Header]) -> Result<HeaderMap, ConvertError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for header in headers {
        let name = HeaderName::from_bytes(header.name()).map_err(|_| HeaderError::InvalidName)?;
        let value = HeaderValue::from_maybe_shared(header.value_bytes().clone())
            .map_err(|_| HeaderError::InvalidValue)?;
        map.append(name, value);
    }
    Ok(map)
}
