//! Protocols and the URLs they are pointed at.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use http::Uri;

use crate::error::{Error, Result};

/// A client protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// HTTP/1.1 with a `Content-Length` body.
    H1,
    /// HTTP/1.1 with `Transfer-Encoding: chunked`.
    H1Chunked,
    /// HTTP/2: ALPN `h2` over TLS, prior knowledge (h2c) in cleartext.
    H2,
    /// HTTP/3 over QUIC (TLS only).
    H3,
    /// WebSocket binary messages (`ws://` or `wss://`).
    Ws,
}

impl Proto {
    /// Every protocol, in the order reports list them.
    pub const ALL: [Proto; 5] = [Proto::H1, Proto::H1Chunked, Proto::H2, Proto::H3, Proto::Ws];

    /// The name used on the command line and in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Proto::H1 => "h1",
            Proto::H1Chunked => "h1-chunked",
            Proto::H2 => "h2",
            Proto::H3 => "h3",
            Proto::Ws => "ws",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Proto {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "h1" | "http1" => Proto::H1,
            "h1-chunked" | "chunked" => Proto::H1Chunked,
            "h2" | "http2" => Proto::H2,
            "h3" | "http3" => Proto::H3,
            "ws" | "wss" => Proto::Ws,
            other => {
                return Err(Error::Argument(format!(
                    "unknown protocol {other:?}: use h1, h1-chunked, h2, h3 or ws"
                )));
            }
        })
    }
}

/// A parsed URL: where to connect, whether to use TLS, what to ask for.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// TLS (`https`, `wss`) or cleartext (`http`, `ws`).
    pub tls: bool,
    /// Host name or IP literal without brackets (also the TLS server name).
    pub host: String,
    /// Port, explicit or the scheme's default.
    pub port: u16,
    /// `host:port` as it goes into `Host` / `:authority`.
    pub authority: String,
    /// Path and query, at least `/`.
    pub path: String,
    /// Local address connections bind to (`None`: the system picks): lets one
    /// loadgen act as several clients of a server with per-address limits.
    pub source: Option<std::net::IpAddr>,
}

impl Target {
    /// Parses `url` and checks its scheme suits `proto`.
    pub fn parse(url: &str, proto: Proto) -> Result<Self> {
        let bad = |reason: &str| Error::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        let scheme = uri.scheme_str().ok_or_else(|| bad("no scheme"))?;
        let tls = match (proto, scheme) {
            (Proto::Ws, "ws") => false,
            (Proto::Ws, "wss") => true,
            (Proto::Ws, _) => return Err(bad("WebSocket needs ws:// or wss://")),
            (Proto::H3, "https") => true,
            (Proto::H3, _) => return Err(bad("HTTP/3 needs https://")),
            (_, "http") => false,
            (_, "https") => true,
            _ => return Err(bad("HTTP needs http:// or https://")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/");
        Ok(Self {
            url: url.to_string(),
            tls,
            host: host.to_string(),
            port,
            authority: authority.as_str().to_string(),
            path: path.to_string(),
            source: None,
        })
    }

    /// The URL's scheme as sent in HTTP/2 and HTTP/3 pseudo-headers.
    pub fn http_scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// The absolute URI of this target's path (HTTP/2 and HTTP/3 need one).
    pub fn absolute(&self) -> String {
        format!("{}://{}{}", self.http_scheme(), self.authority, self.path)
    }

    /// Resolves the host to the first socket address it names.
    pub async fn resolve(&self) -> Result<SocketAddr> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(Error::io(format!("resolve {}", self.host)))?
            .collect();
        // With a source address, only an address of its family can be reached.
        let family = |a: &&SocketAddr| self.source.is_none_or(|s| s.is_ipv4() == a.is_ipv4());
        addrs
            .iter()
            .find(family)
            .copied()
            .ok_or_else(|| Error::Url {
                url: self.url.clone(),
                reason: "host resolves to no address".into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_checked_per_protocol() {
        let t = Target::parse("https://[::1]:8443/discard?x=1", Proto::H2).unwrap();
        assert!(t.tls);
        assert_eq!((t.host.as_str(), t.port), ("::1", 8443));
        assert_eq!(t.path, "/discard?x=1");
        assert_eq!(
            Target::parse("http://localhost", Proto::H1).unwrap().path,
            "/"
        );
        assert!(Target::parse("http://localhost/", Proto::H3).is_err());
        assert!(Target::parse("https://localhost/", Proto::Ws).is_err());
        assert!(Target::parse("wss://localhost/ws", Proto::Ws).unwrap().tls);
        assert!(Target::parse("not a url", Proto::H1).is_err());
        assert!("h4".parse::<Proto>().is_err());
    }
}
