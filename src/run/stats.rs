//! What a run has used so far, for a live client's progress reports (play.rust-lang.org's
//! `wsExecuteStatus`): the guest's CPU time and the size of its linear memory.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::{ResourceLimiter, StoreLimits};

/// Filled in by a run while it goes on; read by whoever reports on it.
#[derive(Debug, Default)]
pub struct RunStats {
    cpu_nanos: AtomicU64,
    memory_bytes: AtomicU64,
}

impl RunStats {
    /// CPU time the guest has used, all instances of the run together (a test harness runs
    /// one per test).
    pub fn cpu_time(&self) -> Duration {
        Duration::from_nanos(self.cpu_nanos.load(Ordering::Relaxed))
    }

    /// The size of the guest's linear memory, as it last grew.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes.load(Ordering::Relaxed)
    }
}

/// `run`, adding to `stats` the CPU time of the thread that polls it, poll by poll: a guest
/// computes only inside polls, and waits (sleep, stdin) between them, using no CPU.
pub(super) async fn metered<F: Future>(run: F, stats: Option<Arc<RunStats>>) -> F::Output {
    let mut run = std::pin::pin!(run);
    std::future::poll_fn(|cx| {
        let Some(stats) = &stats else {
            return run.as_mut().poll(cx);
        };
        let start = thread_cpu_time();
        let polled = run.as_mut().poll(cx);
        let used = thread_cpu_time().saturating_sub(start);
        let nanos = u64::try_from(used.as_nanos()).unwrap_or(u64::MAX);
        stats.cpu_nanos.fetch_add(nanos, Ordering::Relaxed);
        polled
    })
    .await
}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to write; the clock exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// A store's limits that note the guest's memory size in [`RunStats`] as it grows (Wasmtime
/// asks the limiter for the initial size too).
pub(super) struct MeteredLimits {
    limits: StoreLimits,
    stats: Option<Arc<RunStats>>,
}

impl MeteredLimits {
    pub(super) fn new(limits: StoreLimits, stats: Option<Arc<RunStats>>) -> Self {
        Self { limits, stats }
    }
}

impl ResourceLimiter for MeteredLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if let Some(stats) = self.stats.as_ref().filter(|_| allowed) {
            stats.memory_bytes.store(desired as u64, Ordering::Relaxed);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}
