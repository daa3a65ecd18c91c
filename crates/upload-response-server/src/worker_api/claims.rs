//! Requests claimed by remote workers through `POST /v1/claim`: the
//! in-process [`Job`] each one became, kept by stream id until the worker's
//! body and response calls use it, and the lease that gives a silent
//! worker's request back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::metrics::ApiMetrics;
use tokio_util::sync::CancellationToken;
use upload_response::{Job, RequestBody};

/// One remote claim.
pub(crate) struct Claim {
    /// The worker that claimed it.
    pub(crate) worker: String,
    /// The body went out with the claim (`inline_max`): there is no body
    /// left to read through the claim.
    pub(crate) inlined: bool,
    state: Mutex<ClaimState>,
    deadline: Mutex<Instant>,
    /// Calls of the worker's own that are open on this claim (its body
    /// read): while one is, the worker is alive whatever the client's pace,
    /// so the lease cannot lapse.
    active: AtomicUsize,
    /// Cancelled by `DELETE /v1/streams/{id}/claim` while a response is
    /// being written: the response call drops its writer, resetting the client.
    pub(crate) cancel: CancellationToken,
}

struct ClaimState {
    // Field order matters: the job must drop before the body reader, so that
    // giving the request back parks the ingress's hold while the reader
    // still pins the retained slots.
    job: Option<Job>,
    body: Option<RequestBody>,
}

impl Claim {
    /// Pushes the lease deadline out: the worker is alive.
    pub(crate) fn renew(&self, lease: Duration) {
        *lock(&self.deadline) = Instant::now() + lease;
    }

    /// Marks one of the worker's calls open on this claim until the guard
    /// drops; the lease restarts from then.
    pub(crate) fn activity(self: &Arc<Self>, lease: Duration) -> Activity {
        self.active.fetch_add(1, Ordering::SeqCst);
        Activity {
            claim: self.clone(),
            lease,
        }
    }

    fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst) > 0
    }

    /// Takes the job to write its response (once).
    pub(crate) fn take_job(&self) -> Option<Job> {
        lock(&self.state).job.take()
    }

    /// Takes the request body reader (once).
    pub(crate) fn take_body(&self) -> Option<RequestBody> {
        lock(&self.state).body.take()
    }

    /// Whether response headers may still be written through this claim.
    fn unanswered(&self) -> bool {
        lock(&self.state).job.is_some()
    }

    /// Drops job then body reader; see [`ClaimState`] for why the order matters.
    fn give_back(&self) {
        let mut state = lock(&self.state);
        let job = state.job.take();
        let body = state.body.take();
        drop(state);
        drop(job);
        drop(body);
    }
}

/// A worker call in progress on a claim (see [`Claim::activity`]).
pub(crate) struct Activity {
    claim: Arc<Claim>,
    lease: Duration,
}

impl Drop for Activity {
    fn drop(&mut self) {
        self.claim.renew(self.lease);
        self.claim.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The table of remote claims, by stream id.
#[derive(Clone)]
pub(crate) struct Claims {
    table: Arc<Mutex<HashMap<u64, Arc<Claim>>>>,
    lease: Duration,
    metrics: Arc<ApiMetrics>,
}

impl Claims {
    pub(crate) fn new(lease: Duration, metrics: Arc<ApiMetrics>) -> Self {
        Self {
            table: Arc::default(),
            lease,
            metrics,
        }
    }

    /// The lease length.
    pub(crate) fn lease(&self) -> Duration {
        self.lease
    }

    /// Records a job handed to `worker` and starts its lease.
    pub(crate) fn insert(&self, worker: &str, mut job: Job) -> Arc<Claim> {
        let body = job.body();
        self.insert_with(worker, job, body, false)
    }

    /// [`insert`](Self::insert) for a job whose body reader the claim call
    /// already took (`inlined`: and read whole, to send it along).
    pub(crate) fn insert_with(
        &self,
        worker: &str,
        job: Job,
        body: RequestBody,
        inlined: bool,
    ) -> Arc<Claim> {
        let id = job.stream_id();
        let claim = Arc::new(Claim {
            worker: worker.to_owned(),
            inlined,
            state: Mutex::new(ClaimState {
                job: Some(job),
                body: Some(body),
            }),
            deadline: Mutex::new(Instant::now() + self.lease),
            active: AtomicUsize::new(0),
            cancel: CancellationToken::new(),
        });
        let mut table = lock(&self.table);
        table.insert(id, claim.clone());
        self.metrics.claims_held.set(table.len() as i64);
        drop(table);
        let claims = self.clone();
        let watched = Arc::downgrade(&claim);
        tokio::spawn(async move { claims.watch_lease(id, watched).await });
        claim
    }

    /// The claim on stream `id`, if a remote worker holds one.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<Claim>> {
        lock(&self.table).get(&id).cloned()
    }

    /// Removes `claim` from the table (if it is still the one for `id`).
    fn remove(&self, id: u64, claim: &Arc<Claim>) {
        let mut table = lock(&self.table);
        if table.get(&id).is_some_and(|c| Arc::ptr_eq(c, claim)) {
            table.remove(&id);
            self.metrics.claims_held.set(table.len() as i64);
        }
    }

    /// Ends `claim` whatever its state: out of the table, and its job (if
    /// still unanswered) and body reader dropped, so the request's streams
    /// are not kept alive by a claim nobody will use.
    pub(crate) fn finish(&self, id: u64, claim: &Arc<Claim>) {
        self.remove(id, claim);
        claim.give_back();
    }

    /// Ends `claim` before its response started: the request is offered to
    /// another worker (or fails with 502 if part of it was recycled).
    /// Returns `false` if the response already started (nothing is undone).
    pub(crate) fn abandon(&self, id: u64, claim: &Arc<Claim>) -> bool {
        if !claim.unanswered() {
            return false;
        }
        self.remove(id, claim);
        claim.give_back();
        true
    }

    /// Sleeps until the lease runs out, re-arming on every renewal; an
    /// expired claim that never wrote response headers is given back.
    /// Holds only a weak reference, so a finished claim is not kept alive.
    async fn watch_lease(&self, id: u64, claim: std::sync::Weak<Claim>) {
        loop {
            let Some(deadline) = claim.upgrade().map(|c| *lock(&c.deadline)) else {
                return;
            };
            tokio::time::sleep_until(deadline).await;
            let Some(claim) = claim.upgrade() else {
                return;
            };
            if *lock(&claim.deadline) > Instant::now() {
                continue; // renewed while we slept
            }
            if claim.is_active() {
                // The worker's body read is open, waiting on a slow client:
                // alive, not lapsed.
                claim.renew(self.lease);
                continue;
            }
            // After response headers the lease no longer applies: the
            // response call owns the claim, and a vanished worker shows as
            // that call's body failing.
            if self.get(id).is_some_and(|c| Arc::ptr_eq(&c, &claim)) && self.abandon(id, &claim) {
                self.metrics.leases_expired.inc();
                tracing::debug!(
                    stream = id,
                    worker = claim.worker,
                    "worker lease expired; request offered again"
                );
            }
            return;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
