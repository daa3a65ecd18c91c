//! Push-based work discovery: a request goes straight to a waiting worker
//! whose route matches, or waits in a queue that the next matching worker
//! drains. No polling on either side.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::entry::Entry;
use crate::{Job, Route, WorkerId};

pub(crate) struct Waiter {
    pub(crate) worker: WorkerId,
    pub(crate) route: Route,
    pub(crate) tx: oneshot::Sender<Job>,
}

#[derive(Default)]
pub(crate) struct Dispatch {
    pub(crate) pending: VecDeque<Arc<Entry>>,
    pub(crate) waiters: VecDeque<Waiter>,
}

impl Dispatch {
    /// Removes `entry` from the queue; `true` if it was still waiting there.
    pub(crate) fn withdraw(&mut self, entry: &Arc<Entry>) -> bool {
        let before = self.pending.len();
        self.pending.retain(|e| !Arc::ptr_eq(e, entry));
        before != self.pending.len()
    }

    /// The oldest queued request the route wants.
    pub(crate) fn take_pending(&mut self, route: &Route) -> Option<Arc<Entry>> {
        let pos = self.pending.iter().position(|e| route.matches(&e.head))?;
        self.pending.remove(pos)
    }
}
