//! The idle bounds of ARCHITECTURE.md §6, as small wrappers around the two
//! directions of a stream rather than inside the loops that move the bytes:
//!
//! * [`GuardedBody`] wraps a request body of any protocol: it fails with
//!   [`IngressError::BodyIdle`] when the client sends no body byte for
//!   `body_idle_timeout_ms` while the ingress is waiting for one, and with
//!   [`IngressError::BodyLength`] when the body ends short of (or runs past)
//!   its `Content-Length`. hyper already refuses both length errors on
//!   HTTP/1.1 and HTTP/2, h3 does not check the length at all, and a body
//!   from the in-process API is checked by nobody else, so the rule is kept
//!   here once for all of them.
//! * [`append_response`] and [`end_response`] bound a response write that
//!   waits for the client to read (the response window is full because the
//!   client reads nothing): past `response_idle_timeout_ms` the response
//!   stream is aborted with [`AbortReason::Timeout`].
//!
//! The other half of the response bound (a worker that writes nothing after
//! its head) is the response body's own timer in `ingress.rs`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use chunk_cache::{AbortReason, StreamWriter};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::BoxError;
use crate::error::{CoordError, IngressError};

pin_project! {
    /// A request body with the idle and length rules applied (see the module docs).
    pub(crate) struct GuardedBody<B> {
        #[pin]
        inner: B,
        #[pin]
        deadline: Sleep,
        idle: Duration,
        // The deadline runs only while the ingress waits for a frame (from the
        // first pending poll to the next frame): time the ingress spends on
        // backpressure (a slow worker) is not the client's.
        waiting: bool,
        declared: Option<u64>,
        received: u64,
        done: bool,
    }
}

impl<B> GuardedBody<B> {
    /// `declared`: the request's `Content-Length`, if it has one.
    pub(crate) fn new(inner: B, idle: Duration, declared: Option<u64>) -> Self {
        Self {
            inner,
            deadline: tokio::time::sleep(idle),
            idle,
            waiting: false,
            declared,
            received: 0,
            done: false,
        }
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        let fail = |done: &mut bool, e: IngressError| {
            *done = true;
            Poll::Ready(Some(Err(BoxError::from(e))))
        };
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                *this.waiting = false;
                if let Some(data) = frame.data_ref() {
                    *this.received += data.remaining() as u64;
                    if let Some(declared) = *this.declared
                        && *this.received > declared
                    {
                        let received = *this.received;
                        return fail(this.done, IngressError::BodyLength { declared, received });
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                *this.done = true;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => match *this.declared {
                Some(declared) if declared != *this.received => {
                    let received = *this.received;
                    fail(this.done, IngressError::BodyLength { declared, received })
                }
                _ => {
                    *this.done = true;
                    Poll::Ready(None)
                }
            },
            Poll::Pending => {
                // Armed on the first wait only: a body whose frames are ready
                // when asked for (most small requests) never touches the timer.
                if !*this.waiting {
                    this.deadline.as_mut().reset(Instant::now() + *this.idle);
                    *this.waiting = true;
                }
                match this.deadline.poll(cx) {
                    Poll::Ready(()) => fail(this.done, IngressError::BodyIdle(millis(*this.idle))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Appends response body bytes in slots of at most `slot_size`; a slot that
/// waits longer than `idle` for room (the client reads nothing) aborts the
/// response with [`AbortReason::Timeout`].
pub(crate) async fn append_response(
    writer: &mut StreamWriter,
    mut body: Bytes,
    slot_size: usize,
    idle: Duration,
) -> Result<(), CoordError> {
    while !body.is_empty() {
        let piece = body.split_to(body.len().min(slot_size));
        match tokio::time::timeout(idle, writer.append(piece)).await {
            Ok(written) => drop(written?),
            Err(_) => return Err(stalled(writer, idle)),
        }
    }
    Ok(())
}

/// Writes the response end marker under the same bound as [`append_response`].
pub(crate) async fn end_response(
    writer: &mut StreamWriter,
    idle: Duration,
) -> Result<(), CoordError> {
    match tokio::time::timeout(idle, writer.end()).await {
        Ok(ended) => ended.map(drop).map_err(CoordError::from),
        Err(_) => Err(stalled(writer, idle)),
    }
}

fn stalled(writer: &mut StreamWriter, idle: Duration) -> CoordError {
    writer.abort(AbortReason::Timeout);
    CoordError::ClientStalled(millis(idle))
}

/// A duration in whole milliseconds, for error messages.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
