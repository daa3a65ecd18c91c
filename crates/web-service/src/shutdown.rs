//! Graceful shutdown: one signal to stop accepting and drain, a deadline, then force.

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Tells handlers and long-lived tasks (WebSocket sessions, endless streams) that the
/// server is draining; found in every request's extensions.
#[derive(Debug, Clone)]
pub struct ShutdownSignal(CancellationToken);

impl ShutdownSignal {
    /// Completes once a graceful shutdown has begun.
    pub async fn cancelled(&self) {
        self.0.cancelled().await;
    }

    /// Whether a graceful shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// Starts a graceful shutdown of the [`crate::Server`] it came from.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    /// Stop accepting, let in-flight work drain up to `drain_timeout`, then force-close.
    pub fn shutdown(&self) {
        self.0.cancel();
    }
}

/// Completes on SIGINT or SIGTERM (SIGINT only on non-Unix targets).
///
/// The handlers are installed when this is called, not when the future is
/// first polled: a program that calls it before announcing itself (a `READY`
/// line) cannot be killed by a SIGTERM sent right after the announcement.
pub fn ctrl_c_or_sigterm() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM/SIGINT; waiting for Ctrl-C only");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The two phases of shutdown and the set of tasks they apply to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Lifecycle {
    graceful: CancellationToken,
    force: CancellationToken,
    tracker: TaskTracker,
}

impl Lifecycle {
    pub(crate) fn signal(&self) -> ShutdownSignal {
        ShutdownSignal(self.graceful.clone())
    }

    pub(crate) fn handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.graceful.clone())
    }

    pub(crate) fn graceful(&self) -> &CancellationToken {
        &self.graceful
    }

    /// Spawns a task that shutdown waits for, and drops (closing its sockets) when the
    /// drain deadline passes.
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let force = self.force.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = fut => {}
                () = force.cancelled() => {}
            }
        });
    }

    /// Waits for tracked tasks until `drain`, then drops the stragglers.
    pub(crate) async fn drain(&self, drain: std::time::Duration) {
        self.graceful.cancel();
        self.tracker.close();
        if tokio::time::timeout(drain, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.tracker.len(),
                "drain deadline passed; closing by force"
            );
            self.force.cancel();
            self.tracker.wait().await;
        }
    }
}
