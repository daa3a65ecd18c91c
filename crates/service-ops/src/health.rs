//! `/healthz` (the process answers) and `/readyz` (it answers and is not
//! draining, so a balancer should keep sending it work).

use http::StatusCode;

/// The answer to a health or readiness probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `/healthz`: the process is up and serving this listener.
    Alive,
    /// `/readyz` while listening and not draining.
    Ready,
    /// `/readyz` once a graceful shutdown began: take this node out of rotation.
    Draining,
}

impl Probe {
    /// The status to answer with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Alive | Self::Ready => StatusCode::OK,
            Self::Draining => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A one-line `text/plain` body.
    pub fn body(self) -> &'static str {
        match self {
            Self::Alive => "ok\n",
            Self::Ready => "ready\n",
            Self::Draining => "draining\n",
        }
    }
}

/// The probe `path` asks for, if it is one; `draining` says whether a graceful
/// shutdown has begun.
pub fn probe(path: &str, draining: bool) -> Option<Probe> {
    match path {
        "/healthz" => Some(Probe::Alive),
        "/readyz" if draining => Some(Probe::Draining),
        "/readyz" => Some(Probe::Ready),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes() {
        let cases = [
            ("/healthz", false, Some(StatusCode::OK)),
            ("/healthz", true, Some(StatusCode::OK)),
            ("/readyz", false, Some(StatusCode::OK)),
            ("/readyz", true, Some(StatusCode::SERVICE_UNAVAILABLE)),
            ("/readyz/", false, None),
            ("/metrics", false, None),
        ];
        for (path, draining, want) in cases {
            assert_eq!(
                probe(path, draining).map(Probe::status),
                want,
                "{path} {draining}"
            );
        }
    }
}
