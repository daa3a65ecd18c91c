//! The proxy's settings: TOML file and command-line flags (ARCHITECTURE.md §9).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Largest accepted `slice_size` (64 MiB).
pub const MAX_SLICE: u64 = 64 * 1024 * 1024;

/// Default `max_key_bytes` (8 KiB, like nginx's `large_client_header_buffers`).
pub const DEFAULT_MAX_KEY: usize = 8 * 1024;

/// How the cache treats origin answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Honour the origin's cache headers.
    #[default]
    Normal,
    /// Store every 2xx answer with a known length, whatever its cache headers, forever.
    Record,
    /// Never contact the origin: serve from the cache, `504` on a miss.
    Replay,
}

/// Everything a [`StreamingProxy`](crate::StreamingProxy) needs; every field has a default
/// except `upstream`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Origin base URL, `http://host[:port]` (cleartext TCP) or `https://host[:port]`
    /// (TLS, certificate checked for `host`).
    pub upstream: String,
    /// Speak only HTTP/2 to the origin: with prior knowledge (h2c) on `http://`, by
    /// offering only `h2` in ALPN on `https://`. Off: HTTP/1.1 on `http://`, the
    /// origin's ALPN pick of `h2` or `http/1.1` on `https://`.
    pub upstream_http2: bool,
    /// PEM file of CA certificates trusted for an `https://` origin besides the
    /// system's (e.g. a private CA or a self-signed origin certificate).
    pub upstream_ca: Option<PathBuf>,
    /// Address the proxy listens on (cleartext HTTP/1.1 and h2c).
    pub listen: SocketAddr,
    /// A second, TLS listener: HTTP/1.1 and HTTP/2 over TCP, HTTP/3 over QUIC on
    /// the same port number (UDP). Needs `tls_cert` and `tls_key`.
    pub listen_tls: Option<SocketAddr>,
    /// PEM certificate chain of the TLS listener.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the TLS listener.
    pub tls_key: Option<PathBuf>,
    /// Directory of the disk (L2) cache.
    pub cache_dir: PathBuf,
    /// Byte budget of the memory (L1) cache.
    #[serde(deserialize_with = "service_ops::config::size")]
    pub l1_bytes: u64,
    /// Byte budget of the disk (L2) cache; `0` disables L2.
    #[serde(deserialize_with = "service_ops::config::size")]
    pub l2_bytes: u64,
    /// Upper bound of the heuristic freshness lifetime (RFC 9111 §4.2.2) of answers
    /// with `Last-Modified` but without `max-age`/`s-maxage`/`Expires` (a tenth of
    /// their age since `Last-Modified`, at most this).
    #[serde(deserialize_with = "service_ops::config::secs")]
    pub default_ttl_secs: u64,
    /// Send the client's `Host` to the origin (else the upstream's).
    pub preserve_host: bool,
    /// Store answers with `Set-Cookie`, without that header (else not stored).
    pub store_set_cookie: bool,
    /// Objects are fetched and stored in slices of this many bytes.
    #[serde(deserialize_with = "service_ops::config::size")]
    pub slice_size: u64,
    /// normal, record or replay.
    pub mode: Mode,
    /// Where `/metrics` is served, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Time allowed for the origin to answer with a head, connection included
    /// (`504` beyond).
    #[serde(deserialize_with = "service_ops::config::secs")]
    pub upstream_timeout_secs: u64,
    /// Time allowed for a TCP connection to the origin (`502` beyond).
    #[serde(deserialize_with = "service_ops::config::secs")]
    pub upstream_connect_timeout_secs: u64,
    /// An origin body that sends no byte for this long ends its fill (and every
    /// reader's body) with an error; pass-through bodies end the same way.
    #[serde(deserialize_with = "service_ops::config::secs")]
    pub upstream_body_idle_secs: u64,
    /// A client that takes no byte of its response for this long loses it: the
    /// body ends with an error and the client's hold on fills is released.
    #[serde(deserialize_with = "service_ops::config::secs")]
    pub client_write_idle_secs: u64,
    /// Fills (origin fetches) in progress at once; beyond it, a miss waits for one to
    /// end (up to `upstream_timeout_secs`, then `503`).
    pub max_fills: usize,
    /// Client networks allowed to `PURGE` (default: loopback only); others get `403`.
    pub purge_allow: Vec<IpNet>,
    /// Longest cache key (request path and query) in bytes; longer ones get `414`.
    /// Keys are held in memory and in every fill: this bounds what one request can
    /// make the proxy keep.
    pub max_key_bytes: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            upstream: String::new(),
            upstream_http2: false,
            upstream_ca: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            listen_tls: None,
            tls_cert: None,
            tls_key: None,
            cache_dir: PathBuf::from("./proxy-cache"),
            l1_bytes: 256 * 1024 * 1024,
            l2_bytes: 10 * 1024 * 1024 * 1024,
            default_ttl_secs: 3600,
            preserve_host: false,
            store_set_cookie: false,
            slice_size: 1024 * 1024,
            mode: Mode::Normal,
            metrics: None,
            upstream_timeout_secs: 30,
            upstream_connect_timeout_secs: 10,
            upstream_body_idle_secs: 30,
            client_write_idle_secs: 60,
            max_fills: 256,
            purge_allow: vec![
                IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::LOCALHOST, 8)),
                IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
            ],
            max_key_bytes: DEFAULT_MAX_KEY,
        }
    }
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`ProxyConfig`].
    #[error("invalid config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: toml::de::Error,
    },
    /// A value is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
    /// The `upstream_ca` file cannot be used.
    #[error("upstream_ca {path}: {reason}")]
    UpstreamCa {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl ProxyConfig {
    /// Reads a TOML file; missing keys keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Checks the values a proxy cannot run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let uri: http::Uri = self
            .upstream
            .parse()
            .map_err(|e| ConfigError::Invalid(format!("upstream {:?}: {e}", self.upstream)))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "upstream must be http://host[:port] or https://host[:port], got {:?}",
                    self.upstream
                )));
            }
        };
        if uri.host().is_none_or(str::is_empty) {
            return Err(ConfigError::Invalid(format!(
                "upstream {:?} has no host",
                self.upstream
            )));
        }
        // A CA that would never be consulted is a mistake worth saying at start-up.
        if let (Some(ca), false) = (&self.upstream_ca, https) {
            return Err(ConfigError::Invalid(format!(
                "upstream_ca {} is set but upstream {:?} is not https://",
                ca.display(),
                self.upstream
            )));
        }
        // A slice is assembled in memory before it is stored: it bounds the memory
        // of every fill, so it must stay far below "whole object" sizes.
        if !(4096..=MAX_SLICE).contains(&self.slice_size) {
            return Err(ConfigError::Invalid(format!(
                "slice_size must be between 4096 and {MAX_SLICE}"
            )));
        }
        match (self.listen_tls, &self.tls_cert, &self.tls_key) {
            (Some(_), Some(_), Some(_)) | (None, None, None) => {}
            (Some(addr), _, _) => {
                return Err(ConfigError::Invalid(format!(
                    "listen_tls {addr} needs both tls_cert and tls_key (PEM files)"
                )));
            }
            (None, _, _) => {
                return Err(ConfigError::Invalid(
                    "tls_cert/tls_key are set but listen_tls is not: say where to serve TLS".into(),
                ));
            }
        }
        if self.max_key_bytes == 0 {
            return Err(ConfigError::Invalid("max_key_bytes must be > 0".into()));
        }
        for (name, secs) in [
            ("upstream_timeout_secs", self.upstream_timeout_secs),
            (
                "upstream_connect_timeout_secs",
                self.upstream_connect_timeout_secs,
            ),
            ("upstream_body_idle_secs", self.upstream_body_idle_secs),
            ("client_write_idle_secs", self.client_write_idle_secs),
        ] {
            if secs == 0 {
                return Err(ConfigError::Invalid(format!("{name} must be > 0")));
            }
        }
        if self.max_fills == 0 {
            return Err(ConfigError::Invalid("max_fills must be > 0".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_keys_and_validation() {
        let c: ProxyConfig = toml::from_str(
            "upstream = \"http://127.0.0.1:9\"\nmode = \"record\"\nslice_size = 65536\n\
             upstream_http2 = true\npurge_allow = [\"10.0.0.0/8\", \"::1/128\"]\n",
        )
        .unwrap();
        assert_eq!(
            (c.mode, c.slice_size, c.upstream_http2),
            (Mode::Record, 65536, true)
        );
        assert!(c.validate().is_ok());
        assert_eq!(c.purge_allow.len(), 2);
        assert!(c.purge_allow[0].contains(&"10.1.2.3".parse::<std::net::IpAddr>().unwrap()));
        assert!(toml::from_str::<ProxyConfig>("purge_allow = [\"10.0.0.0/33\"]").is_err());
        assert!(
            ProxyConfig::default().purge_allow[0]
                .contains(&std::net::IpAddr::from(Ipv4Addr::LOCALHOST))
        );
        let bad = |f: fn(&mut ProxyConfig)| {
            let mut c = c.clone();
            f(&mut c);
            c.validate().is_err()
        };
        assert!(bad(|c| c.upstream = "ftp://origin".into()));
        assert!(bad(|c| c.upstream = "not a url".into()));
        assert!(bad(|c| c.upstream = "/no/host".into()));
        assert!(bad(|c| c.upstream_ca = Some("ca.pem".into())));
        assert!(bad(|c| c.slice_size = 100));
        assert!(bad(|c| c.slice_size = MAX_SLICE + 1));
        assert!(bad(|c| c.max_fills = 0));
        assert!(bad(|c| c.max_key_bytes = 0));
        assert!(bad(|c| c.upstream_body_idle_secs = 0));
        assert!(bad(|c| c.client_write_idle_secs = 0));
        assert!(bad(|c| c.listen_tls = Some(c.listen)));
        assert!(bad(|c| {
            c.listen_tls = Some(c.listen);
            c.tls_cert = Some("cert.pem".into());
        }));
        assert!(bad(|c| c.tls_key = Some("key.pem".into())));
        let mut tls = c.clone();
        tls.listen_tls = Some(tls.listen);
        tls.tls_cert = Some("cert.pem".into());
        tls.tls_key = Some("key.pem".into());
        assert!(tls.validate().is_ok());
        assert!(toml::from_str::<ProxyConfig>("unknown_key = 1").is_err());
    }

    #[test]
    fn https_upstream_accepted_with_or_without_ca() {
        let c: ProxyConfig = toml::from_str(
            "upstream = \"https://origin.example:8443\"\nupstream_ca = \"/etc/origin-ca.pem\"\n",
        )
        .unwrap();
        assert_eq!(
            c.upstream_ca.as_deref(),
            Some(Path::new("/etc/origin-ca.pem"))
        );
        assert!(c.validate().is_ok());
        let no_ca = ProxyConfig {
            upstream_ca: None,
            upstream: "https://origin.example".into(),
            ..c.clone()
        };
        assert!(no_ca.validate().is_ok());
        let ftp = ProxyConfig {
            upstream: "ftp://origin.example".into(),
            ..c
        };
        let err = ftp.validate().unwrap_err().to_string();
        assert!(err.contains("https://host"), "{err}");
    }
}
