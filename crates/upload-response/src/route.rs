//! Which requests a worker wants: a path prefix and optionally a method.

use http::Method;
use http_pack::RequestHead;
use std::fmt;
use std::sync::Arc;

/// A worker's name, as it appears in claims, reader lists and metrics.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(Arc<str>);

impl WorkerId {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for WorkerId {
    fn from(s: &str) -> Self {
        Self(s.into())
    }
}

impl From<String> for WorkerId {
    fn from(s: String) -> Self {
        Self(s.into())
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkerId({})", &self.0)
    }
}

/// Requests whose path starts with `prefix` (and whose method is `method`, if set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    prefix: String,
    method: Option<Method>,
}

impl Route {
    /// Every request whose path starts with `prefix` (`"/"` or `""` for all).
    pub fn prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            method: None,
        }
    }

    /// Narrows the route to one method.
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Whether the request head falls under this route.
    pub fn matches(&self, head: &RequestHead) -> bool {
        let path = head.path.as_ref().map_or("", |p| p.path());
        path.starts_with(&self.prefix) && self.method.as_ref().is_none_or(|m| *m == head.method)
    }
}
