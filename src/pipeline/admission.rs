//! Admission control: a bounded number of slots, a bounded queue in front of them, and a bounded
//! wait in that queue; per client, a share of the slots and a queue of its own; live sessions
//! bounded overall and per client.
//!
//! Compiles are CPU-heavy and the machine may have two cores, so running every request at once
//! only makes all of them slow. A request beyond the slots waits in the queue; when the queue is
//! full, or the wait passes its limit, the request is refused at once (HTTP 503 with
//! `Retry-After`) instead of piling up.
//!
//! Fairness: before the server-wide queue, a request takes one of its client's slots (a client
//! may hold only some of the stage's slots at once), waiting in its client's own queue if
//! needed. One client's burst therefore fills its own queue, not the shared one, and never
//! holds every slot: others find a free slot or a short queue. Past its own queue a client gets
//! a 429 naming the limit ([`Limited`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Who a request comes from, for per-client limits: an IPv4 address, or an IPv6 address's /64
/// prefix (one subscriber usually holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId(IpAddr);

impl ClientId {
    pub fn new(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(prefix.into()))
                }
            },
            v4 => Self(v4),
        }
    }

    /// The address (or /64 prefix) limits are kept by.
    pub fn addr(self) -> IpAddr {
        self.0
    }
}

/// The process itself (the `run` subcommand, tests that call the pipeline directly).
impl Default for ClientId {
    fn default() -> Self {
        Self(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
    }
}

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Refusal: the server is saturated; the client should retry after `retry_after`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the server is busy ({reason}); retry in {} s", retry_after.as_secs())]
pub struct Overloaded {
    pub reason: &'static str,
    pub retry_after: Duration,
    /// Which server-wide bound: `queue` or `liveSessions` (for the metrics).
    pub limit: &'static str,
}

/// The per-client limits, by the name a 429 answer and the metrics give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    ClientCompiles,
    ClientRuns,
    ClientCompileRate,
    ClientLiveSessions,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::ClientCompiles => "clientCompiles",
            Limit::ClientRuns => "clientRuns",
            Limit::ClientCompileRate => "clientCompileRate",
            Limit::ClientLiveSessions => "clientLiveSessions",
        }
    }
}

/// Refusal: this client is over one of its own limits (HTTP 429 with `Retry-After`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}; retry in {} s", retry_after.as_secs().max(1))]
pub struct Limited {
    pub limit: Limit,
    /// The sentence, naming the limit and its value.
    pub what: String,
    pub retry_after: Duration,
}

/// One stage's slots and queue (the playground has one for compiles and one for runs).
pub struct Admission {
    slots: Arc<Semaphore>,
    total: usize,
    /// The slots weighted entries (threaded runs) may hold together: half the stage's, so
    /// single-threaded programs always find the other half free of them.
    shared: Arc<Semaphore>,
    shared_total: usize,
    waiting: Arc<()>,
    queue_limit: usize,
    max_wait: Duration,
    clients: ClientSlots,
}

/// The per-client part of an [`Admission`].
struct ClientSlots {
    /// Slots one client may hold at once, and requests it may have waiting besides.
    slots: usize,
    queue: usize,
    limit: Limit,
    /// "compiles", "runs": for the sentence.
    noun: &'static str,
    map: Arc<Mutex<HashMap<ClientId, Arc<ClientEntry>>>>,
}

struct ClientEntry {
    slots: Arc<Semaphore>,
    /// Requests of this client in the stage (waiting or holding a slot).
    inflight: Mutex<usize>,
}

/// A held slot (the client's and the server's), released on drop, with the time spent waiting.
pub struct Permit {
    _shared: Option<OwnedSemaphorePermit>,
    _global: OwnedSemaphorePermit,
    _client: OwnedSemaphorePermit,
    _inflight: Inflight,
    pub waited: Duration,
}

/// How much of a stage one client may use.
#[derive(Debug, Clone, Copy)]
pub struct PerClient {
    pub slots: usize,
    pub queue: usize,
}

impl Admission {
    pub fn new(
        slots: usize,
        queue_limit: usize,
        max_wait: Duration,
        per_client: PerClient,
        limit: Limit,
    ) -> Self {
        let noun = match limit {
            Limit::ClientCompiles => "compiles",
            _ => "runs",
        };
        Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            total: slots.max(1),
            shared: Arc::new(Semaphore::new((slots / 2).max(1))),
            shared_total: (slots / 2).max(1),
            waiting: Arc::new(()),
            queue_limit,
            max_wait,
            clients: ClientSlots {
                slots: per_client.slots.max(1),
                queue: per_client.queue,
                limit,
                noun,
                map: Arc::default(),
            },
        }
    }

    /// Takes one of `client`'s slots, then one of the server's, waiting in the queues if needed.
    pub async fn enter(&self, client: ClientId) -> Result<Permit, AdmissionError> {
        self.enter_weighted(client, 1).await
    }

    /// Takes one of `client`'s slots, then `weight` of the server's (at most all of them),
    /// waiting in the queues if needed: a threaded run counts as the cores it may keep busy.
    pub async fn enter_weighted(
        &self,
        client: ClientId,
        weight: usize,
    ) -> Result<Permit, AdmissionError> {
        let started = Instant::now();
        let (entry, inflight) = self.clients.join(client)?;
        let client_permit = match entry.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                match tokio::time::timeout(self.max_wait, entry.slots.clone().acquire_owned()).await
                {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) | Err(_) => return Err(self.clients.refusal().into()),
                }
            }
        };
        let wait = || self.max_wait.saturating_sub(started.elapsed());
        let shared = match weight > 1 {
            true => Some(
                self.acquire(&self.shared, wait(), self.shared_weight(weight))
                    .await?,
            ),
            false => None,
        };
        let global = self
            .acquire(&self.slots, wait(), self.weight(weight))
            .await?;
        Ok(Permit {
            _shared: shared,
            _global: global,
            _client: client_permit,
            _inflight: inflight,
            waited: started.elapsed(),
        })
    }

    /// Takes one of `client`'s slots and `weight` of the server's, however long that takes (the
    /// caller bounds the wait): for a live run going on after waiting for input.
    pub async fn reenter(&self, client: ClientId, weight: usize) -> Option<Permit> {
        let (entry, inflight) = self.clients.join_unbounded(client);
        let client_permit = entry.slots.clone().acquire_owned().await.ok()?;
        let shared = match weight > 1 {
            true => Some(
                self.shared
                    .clone()
                    .acquire_many_owned(self.shared_weight(weight))
                    .await
                    .ok()?,
            ),
            false => None,
        };
        let global = self
            .slots
            .clone()
            .acquire_many_owned(self.weight(weight))
            .await
            .ok()?;
        Some(Permit {
            _shared: shared,
            _global: global,
            _client: client_permit,
            _inflight: inflight,
            waited: Duration::ZERO,
        })
    }

    fn weight(&self, weight: usize) -> u32 {
        u32::try_from(weight.clamp(1, self.total)).unwrap_or(1)
    }

    fn shared_weight(&self, weight: usize) -> u32 {
        u32::try_from(weight.clamp(1, self.shared_total)).unwrap_or(1)
    }

    /// Takes `weight` permits of `slots` (the server's, or the weighted entries' share),
    /// waiting in the server's queue if needed.
    async fn acquire(
        &self,
        slots: &Arc<Semaphore>,
        wait: Duration,
        weight: u32,
    ) -> Result<OwnedSemaphorePermit, Overloaded> {
        if let Ok(permit) = slots.clone().try_acquire_many_owned(weight) {
            return Ok(permit);
        }
        let retry_after = Duration::from_secs(1);
        // Each waiter holds a clone of `waiting`: the count is the queue's length, also when a
        // waiting request is cancelled.
        if Arc::strong_count(&self.waiting) > self.queue_limit {
            return Err(Overloaded {
                reason: "the queue is full",
                retry_after,
                limit: "queue",
            });
        }
        let _queued = self.waiting.clone();
        match tokio::time::timeout(wait, slots.clone().acquire_many_owned(weight)).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it like a timeout all the same.
            Ok(Err(_)) | Err(_) => Err(Overloaded {
                reason: "waited too long in the queue",
                retry_after,
                limit: "queue",
            }),
        }
    }

    /// Requests waiting now for a slot of the server's.
    pub fn queued(&self) -> usize {
        Arc::strong_count(&self.waiting) - 1
    }
}

/// Why [`Admission::enter`] refused.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
    #[error(transparent)]
    Limited(#[from] Limited),
}

impl ClientSlots {
    /// Counts a request of `client` in, or refuses it when the client's queue is full.
    fn join(&self, client: ClientId) -> Result<(Arc<ClientEntry>, Inflight), Limited> {
        let (entry, inflight) = self.join_unbounded(client);
        let count = *entry
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if count > self.slots + self.queue {
            return Err(self.refusal());
        }
        Ok((entry, inflight))
    }

    fn join_unbounded(&self, client: ClientId) -> (Arc<ClientEntry>, Inflight) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map
            .entry(client)
            .or_insert_with(|| {
                Arc::new(ClientEntry {
                    slots: Arc::new(Semaphore::new(self.slots)),
                    inflight: Mutex::new(0),
                })
            })
            .clone();
        *entry
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner) += 1;
        let inflight = Inflight {
            map: self.map.clone(),
            client,
            entry: entry.clone(),
        };
        (entry, inflight)
    }

    fn refusal(&self) -> Limited {
        Limited {
            limit: self.limit,
            what: format!(
                "too many {} at once from your address (the limit is {} at a time and {} waiting)",
                self.noun, self.slots, self.queue
            ),
            retry_after: Duration::from_secs(1),
        }
    }
}

/// One request counted in its client's entry; the entry goes when its last request does.
struct Inflight {
    map: Arc<Mutex<HashMap<ClientId, Arc<ClientEntry>>>>,
    client: ClientId,
    entry: Arc<ClientEntry>,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let mut count = self
            .entry
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *count -= 1;
        if *count == 0 {
            map.remove(&self.client);
        }
    }
}

/// Live sessions: at most `total` at once, and `per_client` of one client; no queue.
pub struct Sessions {
    total: usize,
    per_client: usize,
    counts: Arc<Mutex<(usize, HashMap<ClientId, usize>)>>,
}

/// A live session's place, given back on drop.
pub struct Session {
    counts: Arc<Mutex<(usize, HashMap<ClientId, usize>)>>,
    client: ClientId,
}

impl Sessions {
    pub fn new(total: usize, per_client: usize) -> Self {
        Self {
            total,
            per_client,
            counts: Arc::default(),
        }
    }

    pub fn enter(&self, client: ClientId) -> Result<Session, AdmissionError> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = counts.1.get(&client).copied().unwrap_or(0);
        if mine >= self.per_client {
            return Err(Limited {
                limit: Limit::ClientLiveSessions,
                what: format!(
                    "too many live sessions from your address (the limit is {})",
                    self.per_client
                ),
                retry_after: Duration::from_secs(5),
            }
            .into());
        }
        if counts.0 >= self.total {
            return Err(Overloaded {
                reason: "too many live sessions",
                retry_after: Duration::from_secs(5),
                limit: "liveSessions",
            }
            .into());
        }
        counts.0 += 1;
        *counts.1.entry(client).or_default() += 1;
        Ok(Session {
            counts: self.counts.clone(),
            client,
        })
    }

    /// Live sessions open now.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).0
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.0 -= 1;
        if let Some(mine) = counts.1.get_mut(&self.client) {
            *mine -= 1;
            if *mine == 0 {
                counts.1.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: PerClient = PerClient { slots: 1, queue: 1 };

    fn client(n: u8) -> ClientId {
        ClientId::new(IpAddr::from([127, 0, 0, n]))
    }

    #[tokio::test]
    async fn full_queue_is_refused_at_once() {
        let admission = Admission::new(1, 1, Duration::from_secs(10), ONE, Limit::ClientRuns);
        let held = admission.enter(client(1)).await.unwrap();
        assert!(held.waited < Duration::from_millis(50));
        let mut waiter = Box::pin(admission.enter(client(2)));
        // Polled once, the waiter takes the one queue place.
        assert!(poll_once(&mut waiter).await.is_none());
        assert_eq!(admission.queued(), 1);
        let refused = admission.enter(client(3)).await.err().unwrap();
        assert!(
            matches!(&refused, AdmissionError::Overloaded(o) if o.reason == "the queue is full")
        );
        drop(held);
        assert!(waiter.await.is_ok());
        assert_eq!(admission.queued(), 0);
    }

    #[tokio::test]
    async fn waiting_too_long_is_refused() {
        let admission = Admission::new(1, 4, Duration::from_millis(50), ONE, Limit::ClientRuns);
        let _held = admission.enter(client(1)).await.unwrap();
        let refused = admission.enter(client(2)).await.err().unwrap();
        assert!(
            matches!(&refused, AdmissionError::Overloaded(o) if o.reason == "waited too long in the queue")
        );
        assert_eq!(admission.queued(), 0);
    }

    #[tokio::test]
    async fn one_client_waits_in_its_own_queue_and_others_pass() {
        let admission = Admission::new(2, 0, Duration::from_secs(10), ONE, Limit::ClientCompiles);
        let held = admission.enter(client(1)).await.unwrap();
        let mut second = Box::pin(admission.enter(client(1)));
        assert!(poll_once(&mut second).await.is_none());
        // The client's queue is full; the server's queue (0 places) is untouched.
        let refused = admission.enter(client(1)).await.err().unwrap();
        let AdmissionError::Limited(limited) = refused else {
            panic!("{refused}")
        };
        assert_eq!(limited.limit, Limit::ClientCompiles);
        assert_eq!(
            limited.to_string(),
            "too many compiles at once from your address (the limit is 1 at a time and 1 waiting); retry in 1 s"
        );
        // Another client takes the second slot at once.
        let other = admission.enter(client(2)).await.unwrap();
        assert!(other.waited < Duration::from_millis(50));
        drop((held, other));
        assert!(second.await.is_ok());
        assert!(admission.clients.map.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn weighted_entries_leave_half_the_slots_to_others() {
        let admission = Admission::new(4, 4, Duration::from_secs(10), ONE, Limit::ClientRuns);
        // One threaded run holds 2 slots, all that weighted entries may hold together ...
        let threaded = admission.enter_weighted(client(1), 2).await.unwrap();
        let mut second = Box::pin(admission.enter_weighted(client(2), 2));
        assert!(poll_once(&mut second).await.is_none());
        // ... so single-threaded runs still find the other two at once.
        let plain = [
            admission.enter(client(3)).await.unwrap(),
            admission.enter(client(4)).await.unwrap(),
        ];
        assert!(plain.iter().all(|p| p.waited < Duration::from_millis(50)));
        drop((threaded, plain));
        assert!(second.await.is_ok());
    }

    #[test]
    fn sessions_are_bounded_per_client_and_overall() {
        let sessions = Sessions::new(3, 2);
        let a = [sessions.enter(client(1)), sessions.enter(client(1))];
        assert!(matches!(
            sessions.enter(client(1)),
            Err(AdmissionError::Limited(_))
        ));
        let _b = sessions.enter(client(2)).unwrap();
        assert!(matches!(
            sessions.enter(client(3)),
            Err(AdmissionError::Overloaded(_))
        ));
        drop(a);
        assert_eq!(sessions.open(), 1);
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_64_prefix() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientId::new(a), ClientId::new(b));
        assert_ne!(ClientId::new(a), ClientId::new(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(ClientId::new(mapped).to_string(), "10.0.0.1");
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
