//! Where the ingress nodes are: a fixed list, or a DNS name whose every
//! address is one (so a fleet can grow and shrink behind one name).

use std::time::Duration;

use crate::ClientError;

/// The worker API origins a worker serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// Fixed origins, each `http://host:port` without a trailing slash.
    List(Vec<String>),
    /// Every address `name` resolves to, on `port`; resolved again every
    /// `refresh`, so origins that appear start being served and origins
    /// that vanish stop being claimed from (their jobs in flight finish).
    Dns {
        /// The DNS name.
        name: String,
        /// The worker API port.
        port: u16,
        /// How often to resolve again.
        refresh: Duration,
    },
}

impl Origins {
    /// A fixed list of `http://host:port` origins (h2c also uses `http://`).
    pub fn parse_list<I, S>(origins: I) -> Result<Self, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let list = origins
            .into_iter()
            .map(|o| parse_origin(o.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err(ClientError::Origin {
                origin: String::new(),
                reason: "no origin given".into(),
            });
        }
        Ok(Self::List(list))
    }

    /// Command-line form: `http://host:port` URLs, or one `dns://name:port`
    /// (every address of `name`, resolved again every `refresh`).
    pub fn parse_args<I, S>(args: I, refresh: Duration) -> Result<Self, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let args: Vec<S> = args.into_iter().collect();
        if let [one] = args.as_slice()
            && let Some(spec) = one.as_ref().strip_prefix("dns://")
        {
            let bad = |reason: &str| ClientError::Origin {
                origin: one.as_ref().to_owned(),
                reason: reason.to_owned(),
            };
            let (name, port) = spec.rsplit_once(':').ok_or_else(|| bad("no :port"))?;
            let port = port.parse().map_err(|_| bad("bad port"))?;
            return Ok(Self::Dns {
                name: name.to_owned(),
                port,
                refresh,
            });
        }
        Self::parse_list(args)
    }

    /// The origins right now.
    pub async fn resolve(&self) -> Result<Vec<String>, ClientError> {
        match self {
            Self::List(list) => Ok(list.clone()),
            Self::Dns { name, port, .. } => {
                let addrs = tokio::net::lookup_host((name.as_str(), *port))
                    .await
                    .map_err(|source| ClientError::Resolve {
                        name: name.clone(),
                        source,
                    })?;
                let mut out: Vec<String> = addrs.map(|a| format!("http://{a}")).collect();
                out.sort();
                out.dedup();
                Ok(out)
            }
        }
    }
}

fn parse_origin(text: &str) -> Result<String, ClientError> {
    let bad = |reason: &str| ClientError::Origin {
        origin: text.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: http::Uri = text.parse().map_err(|_| bad("not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("the worker API is cleartext: use http://"));
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad("give only scheme, host and port"));
    }
    Ok(format!("http://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized_and_checked() {
        let o = Origins::parse_list(["http://127.0.0.1:9090/", "http://[::1]:9"]).unwrap();
        assert_eq!(
            o,
            Origins::List(vec![
                "http://127.0.0.1:9090".into(),
                "http://[::1]:9".into()
            ])
        );
        assert!(Origins::parse_list(["https://a:1"]).is_err());
        assert!(Origins::parse_list(["http://a:1/v1"]).is_err());
        assert!(Origins::parse_list(Vec::<String>::new()).is_err());
        let every = Duration::from_secs(3);
        assert_eq!(
            Origins::parse_args(["dns://ingress.local:9090"], every).unwrap(),
            Origins::Dns {
                name: "ingress.local".into(),
                port: 9090,
                refresh: every
            }
        );
        assert!(Origins::parse_args(["dns://ingress.local"], every).is_err());
    }

    #[tokio::test]
    async fn a_dns_name_gives_every_address() {
        let o = Origins::Dns {
            name: "localhost".into(),
            port: 9090,
            refresh: Duration::from_secs(1),
        };
        let list = o.resolve().await.unwrap();
        assert!(
            list.iter()
                .any(|a| a == "http://127.0.0.1:9090" || a == "http://[::1]:9090"),
            "{list:?}"
        );
    }
}
