//! Many idle keep-alive connections at once: each opened, used for one small
//! request, then held, so a harness can read what an idle connection costs a
//! server (its memory while they are all open).

use futures_util::StreamExt as _;

use crate::clients::{Client, Connection};
use crate::error::{Error, Result};

/// Connections held open after one answered request each.
pub struct Held {
    /// The open connections; dropping them closes them.
    pub conns: Vec<Connection>,
    /// Connections that could not be opened or whose request failed.
    pub errors: u64,
    /// The first of those failures, for the report.
    pub first_error: Option<String>,
}

/// Opens `conns` connections of `client`, at most `parallel` at a time (a
/// burst of thousands of SYNs would overflow a listener's accept backlog and
/// turn the measurement into one of SYN retries), and POSTs `body_bytes` on
/// each; every connection whose request was answered with success is kept.
pub async fn open(client: &Client, conns: usize, body_bytes: u64, parallel: usize) -> Result<Held> {
    if conns == 0 || parallel == 0 {
        return Err(Error::Argument(
            "--conns and --parallel must be at least 1".into(),
        ));
    }
    let opened: Vec<Result<Connection>> = futures_util::stream::iter(0..conns)
        .map(|_| async {
            let mut conn = client.connect().await?;
            let answer = conn.request(body_bytes).await?;
            if !answer.succeeded() {
                return Err(Error::Protocol(format!(
                    "status {}: {}",
                    answer.status,
                    answer.body_text().trim()
                )));
            }
            Ok(conn)
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    let mut held = Held {
        conns: Vec::with_capacity(conns),
        errors: 0,
        first_error: None,
    };
    for outcome in opened {
        match outcome {
            Ok(conn) => held.conns.push(conn),
            Err(error) => {
                held.errors += 1;
                held.first_error.get_or_insert(error.to_string());
            }
        }
    }
    Ok(held)
}

/// Raises the soft limit of open files to the hard limit (loadgen holds one
/// descriptor per connection) and fails if even that leaves no room for
/// `needed` descriptors.
pub fn ensure_open_files(needed: u64) -> Result<u64> {
    let limit =
        rlimit::increase_nofile_limit(u64::MAX).map_err(Error::io("raise RLIMIT_NOFILE"))?;
    if limit < needed {
        return Err(Error::Argument(format!(
            "RLIMIT_NOFILE allows {limit} open files, {needed} are needed: raise the hard limit (ulimit -Hn)"
        )));
    }
    Ok(limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Proto;
    use crate::sink::{Sink, SinkOptions};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn holds_every_connection_after_one_request() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::start(&SinkOptions::loopback(dir.path()))
            .await
            .unwrap();
        let url = format!("http://{}/discard", sink.http_addr());
        let client = Client::new(Proto::H1, &url, None).unwrap();
        let held = open(&client, 50, 1024, 8).await.unwrap();
        assert_eq!(
            (held.conns.len(), held.errors),
            (50, 0),
            "{:?}",
            held.first_error
        );
        assert!(ensure_open_files(64).unwrap() >= 64);
    }
}
