//! What both binaries (`upload-response-server`, `streaming-proxy`) need to be
//! operated, written once (ARCHITECTURE.md §11): logs on stderr in text or
//! JSON with the access log switchable, the `/healthz` and `/readyz` answers,
//! and the `build_info` metric; plus [`haproxy`], the balancer of the
//! loopback scale-out recipes.
//!
//! ```
//! use service_ops::{Probe, probe};
//!
//! assert_eq!(probe("/readyz", false), Some(Probe::Ready));
//! assert_eq!(probe("/readyz", true).map(|p| p.status()), Some(http::StatusCode::SERVICE_UNAVAILABLE));
//! assert_eq!(probe("/metrics", false), None);
//! ```

pub mod config;
#[cfg(feature = "deploy-check")]
pub mod deploy_check;
pub mod haproxy;
mod health;
mod logging;
mod prometheus;

pub use health::{Probe, probe};
pub use logging::{LogFormat, LogGuard, init_logging};
pub use prometheus::{
    PROMETHEUS_CONTENT_TYPE, build_info, openmetrics_to_prometheus, promtool_check,
};
