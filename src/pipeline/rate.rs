//! Each client's rate of new compiles: a token bucket per client (`governor`'s keyed GCRA
//! limiter), charged only when `rustc` or a tool really runs: cache hits are cheap and free.
//!
//! `governor` rather than `tower_governor`: the limit is on compiles, not on requests, and
//! only the pipeline knows whether a request misses the cache.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::admission::{ClientId, Limit, Limited};

/// Checks between two sweeps of clients whose buckets are full again (so the map stays small).
const SWEEP_EVERY: u32 = 1024;

pub struct CompileRate {
    limiter: DefaultKeyedRateLimiter<ClientId>,
    clock: DefaultClock,
    per_minute: u32,
    burst: u32,
    checks: AtomicU32,
}

impl CompileRate {
    /// `per_minute` compiles on average, `burst` at once; `None` when `per_minute` is 0 (off).
    pub fn new(per_minute: u32, burst: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_minute)?;
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Some(Self {
            limiter: RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
            per_minute,
            burst: burst.get(),
            checks: AtomicU32::new(0),
        })
    }

    /// Takes one token from `client`'s bucket, or says when the next one comes.
    pub fn charge(&self, client: ClientId) -> Result<(), Limited> {
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
        {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&client).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            Limited {
                limit: Limit::ClientCompileRate,
                what: format!(
                    "too many new programs compiled from your address (the limit is {} a minute, {} at once)",
                    self.per_minute, self.burst
                ),
                // Whole seconds, rounded up: a client that waits as told gets its token.
                retry_after: Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_past_its_burst_waits_and_others_do_not() {
        let rate = CompileRate::new(60, 2).unwrap();
        let a = ClientId::new([127, 0, 0, 2].into());
        let b = ClientId::new([127, 0, 0, 3].into());
        assert!(rate.charge(a).is_ok());
        assert!(rate.charge(a).is_ok());
        let refused = rate.charge(a).unwrap_err();
        assert_eq!(refused.limit, Limit::ClientCompileRate);
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        assert!(rate.charge(b).is_ok());
        assert!(CompileRate::new(0, 5).is_none());
    }
}
