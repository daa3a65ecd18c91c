//! Per-client admission: at most `max_streams_per_client` requests in flight
//! per client IP address (ARCHITECTURE.md §6 "Fairness"), checked before a
//! stream is allocated so one address cannot take the streams others need.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use http::Extensions;
use web_service::ConnInfo;

use crate::entry::lock;
use crate::error::IngressError;

/// Requests in flight by client address. Only addresses with a request in
/// flight have an entry, so the table is bounded by `num_streams` times
/// nothing more than a counter.
#[derive(Debug)]
pub(crate) struct ClientTable {
    limit: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// A place under the client's limit taken before a WebSocket upgrade (so a
/// client over its limit gets a plain `429` instead of a session that closes
/// at once), handed to the session's request as an extension. Cloning shares
/// the one place; the first request to claim it keeps it.
#[derive(Debug, Clone)]
pub struct Admission(Arc<Mutex<Option<ClientPermit>>>);

impl Admission {
    pub(crate) fn new(permit: Option<ClientPermit>) -> Self {
        Self(Arc::new(Mutex::new(permit)))
    }

    /// The place for the request carrying this admission; `None` if there is
    /// no admission (or it was already used): the caller admits afresh.
    pub(crate) fn take(extensions: &mut Extensions) -> Option<Option<ClientPermit>> {
        let admission = extensions.remove::<Self>()?;
        let permit = lock(&admission.0).take();
        Some(permit)
    }
}

/// One request's place under its client's limit; released on drop.
#[derive(Debug)]
pub(crate) struct ClientPermit {
    table: Arc<ClientTable>,
    ip: IpAddr,
}

impl ClientTable {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a place for `ip`, or refuses with `429` if it holds them all.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ClientPermit, IngressError> {
        let mut counts = lock(&self.counts);
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.limit {
            return Err(IngressError::ClientBusy { limit: self.limit });
        }
        *count += 1;
        Ok(ClientPermit {
            table: self.clone(),
            ip,
        })
    }

    /// Admits a request by its `ConnInfo`; without one (the in-process API)
    /// there is nobody to count.
    pub(crate) fn admit_conn(
        self: &Arc<Self>,
        extensions: &Extensions,
    ) -> Result<Option<ClientPermit>, IngressError> {
        match extensions.get::<ConnInfo>() {
            Some(conn) => self.admit(conn.remote_addr.ip()).map(Some),
            None => Ok(None),
        }
    }

    /// Requests `ip` has in flight.
    #[cfg(test)]
    fn in_flight(&self, ip: IpAddr) -> usize {
        lock(&self.counts).get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for ClientPermit {
    fn drop(&mut self) {
        let mut counts = lock(&self.table.counts);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_refused_past_its_limit_and_others_are_not() {
        let table = ClientTable::new(2);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "::1".parse().unwrap());
        let first = table.admit(a).unwrap();
        let _second = table.admit(a).unwrap();
        assert_eq!(
            table.admit(a).unwrap_err(),
            IngressError::ClientBusy { limit: 2 }
        );
        let _other = table.admit(b).unwrap();
        drop(first);
        assert_eq!(table.in_flight(a), 1);
        let _third = table.admit(a).unwrap();
        assert_eq!(table.in_flight(a), 2);
    }

    #[test]
    fn released_addresses_leave_the_table() {
        let table = ClientTable::new(1);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        drop(table.admit(ip).unwrap());
        assert!(lock(&table.counts).is_empty());
    }
}
