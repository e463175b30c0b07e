//! Admission control: a bounded number of slots, a bounded queue in front of them, and a bounded
//! wait in that queue.
//!
//! Compiles are CPU-heavy and the machine may have two cores, so running every request at once
//! only makes all of them slow. A request beyond the slots waits in the queue; when the queue is
//! full, or the wait passes its limit, the request is refused at once (HTTP 503 with
//! `Retry-After`) instead of piling up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// Refusal: the server is saturated; the client should retry after `retry_after`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the server is busy ({reason}); retry in {} s", retry_after.as_secs())]
pub struct Overloaded {
    pub reason: &'static str,
    pub retry_after: Duration,
}

/// One stage's slots and queue (the playground has one for compiles and one for runs).
pub struct Admission {
    slots: Semaphore,
    total: usize,
    waiting: AtomicUsize,
    queue_limit: usize,
    max_wait: Duration,
}

/// A held slot, released on drop, with the time spent waiting for it.
pub struct Permit<'a> {
    _permit: SemaphorePermit<'a>,
    pub waited: Duration,
}

impl Admission {
    pub fn new(slots: usize, queue_limit: usize, max_wait: Duration) -> Self {
        Self {
            slots: Semaphore::new(slots.max(1)),
            total: slots.max(1),
            waiting: AtomicUsize::new(0),
            queue_limit,
            max_wait,
        }
    }

    /// Takes a slot, waiting in the queue if needed.
    pub async fn enter(&self) -> Result<Permit<'_>, Overloaded> {
        self.enter_weighted(1).await
    }

    /// Takes `weight` slots at once (at most all of them), waiting in the queue if needed: a
    /// threaded run counts as the cores it may keep busy.
    pub async fn enter_weighted(&self, weight: usize) -> Result<Permit<'_>, Overloaded> {
        let weight = u32::try_from(weight.clamp(1, self.total)).unwrap_or(1);
        let started = Instant::now();
        if let Ok(permit) = self.slots.try_acquire_many(weight) {
            return Ok(Permit {
                _permit: permit,
                waited: Duration::ZERO,
            });
        }
        let retry_after = Duration::from_secs(1);
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue_limit {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Overloaded {
                reason: "the queue is full",
                retry_after,
            });
        }
        let _leave = LeaveQueue(&self.waiting);
        match tokio::time::timeout(self.max_wait, self.slots.acquire_many(weight)).await {
            Ok(Ok(permit)) => Ok(Permit {
                _permit: permit,
                waited: started.elapsed(),
            }),
            // The semaphore is never closed; treat it like a timeout all the same.
            Ok(Err(_)) | Err(_) => Err(Overloaded {
                reason: "waited too long in the queue",
                retry_after,
            }),
        }
    }

    /// Requests waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

/// Leaves the queue when dropped, including when the waiting request is cancelled.
struct LeaveQueue<'a>(&'a AtomicUsize);

impl Drop for LeaveQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_queue_is_refused_at_once() {
        let admission = Admission::new(1, 1, Duration::from_secs(10));
        let held = admission.enter().await.unwrap();
        assert_eq!(held.waited, Duration::ZERO);
        let mut waiter = Box::pin(admission.enter());
        // Polled once, the waiter takes the one queue place.
        assert!(poll_once(&mut waiter).await.is_none());
        assert_eq!(admission.queued(), 1);
        let refused = admission.enter().await.err().unwrap();
        assert_eq!(refused.reason, "the queue is full");
        drop(held);
        assert!(waiter.await.is_ok());
        assert_eq!(admission.queued(), 0);
    }

    #[tokio::test]
    async fn waiting_too_long_is_refused() {
        let admission = Admission::new(1, 4, Duration::from_millis(50));
        let _held = admission.enter().await.unwrap();
        let refused = admission.enter().await.err().unwrap();
        assert_eq!(refused.reason, "waited too long in the queue");
        assert_eq!(admission.queued(), 0);
    }

    async fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut *f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
