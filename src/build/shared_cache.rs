//! The artifact cache shared by replicas, in Redis: a program compiled on one replica is a warm
//! hit on the others.
//!
//! Each value is a whole cache file as the disk store writes it (magic, SHA-256, the local
//! [`CacheKey`](super::cache::CacheKey), diagnostics, module), optionally preceded by an
//! HMAC-SHA256 tag made with a key the replicas share (`--redis-hmac-key`). The Redis key is
//! `wasm-playground:ENGINE:KEY`, where `ENGINE` hashes the Wasmtime engines' compatibility
//! (`Engine::precompile_compatibility_hash`: version, compiler and settings), so replicas with
//! another build or configuration never see each other's native code.
//!
//! Redis must never slow a request down: every command has a short timeout
//! (`--redis-timeout-ms`), and once one fails the replica stops asking Redis until a background
//! task has reconnected (it pings every second). Meanwhile the local cache alone serves.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use hmac::{Hmac, Mac};
use redis::aio::MultiplexedConnection;
use sha2::Sha256;

use super::cache::CacheKey;

/// How often the background task checks the connection (and retries a lost one).
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Length of an HMAC-SHA256 tag.
const TAG: usize = 32;

/// Why the shared cache could not be set up (the service refuses to start).
#[derive(Debug, thiserror::Error)]
pub enum SharedCacheError {
    #[error("invalid --redis-url: {0}")]
    Url(redis::RedisError),
}

/// Counters of lookups, for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SharedStats {
    pub hits: u64,
    pub misses: u64,
    /// Failed or timed-out commands, and entries that failed their checks.
    pub errors: u64,
    /// Lookups not sent because Redis was down.
    pub skipped: u64,
    pub writes: u64,
}

/// A connection to Redis that is up, or not, and the counters.
pub struct SharedCache {
    client: redis::Client,
    connection: Mutex<Option<MultiplexedConnection>>,
    up: AtomicBool,
    last_error: Mutex<String>,
    namespace: String,
    timeout: Duration,
    ttl_seconds: u64,
    hmac_key: Option<Vec<u8>>,
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    skipped: AtomicU64,
    writes: AtomicU64,
}

impl SharedCache {
    /// Checks the URL and starts the task that connects (must be called inside a Tokio
    /// runtime). The first connection is made in the background: a replica starts and serves
    /// even while Redis is down.
    pub fn start(
        url: &str,
        engine: &[u8; 32],
        timeout: Duration,
        ttl_seconds: u64,
        hmac_key: Option<&str>,
    ) -> Result<Arc<Self>, SharedCacheError> {
        let client = redis::Client::open(url).map_err(SharedCacheError::Url)?;
        let engine: String = engine[..8].iter().map(|b| format!("{b:02x}")).collect();
        if hmac_key.is_none() {
            tracing::warn!(
                "the shared Redis cache has no --redis-hmac-key: anyone who can write to Redis \
                 can run native code in this process (see SECURITY.md)"
            );
        }
        let cache = Arc::new(Self {
            client,
            connection: Mutex::new(None),
            up: AtomicBool::new(false),
            last_error: Mutex::new("not connected yet".into()),
            namespace: format!("wasm-playground:{engine}:"),
            timeout,
            ttl_seconds: ttl_seconds.max(1),
            hmac_key: hmac_key.map(|k| k.as_bytes().to_vec()),
            hits: AtomicU64::default(),
            misses: AtomicU64::default(),
            errors: AtomicU64::default(),
            skipped: AtomicU64::default(),
            writes: AtomicU64::default(),
        });
        tokio::spawn(watch(Arc::downgrade(&cache)));
        Ok(cache)
    }

    /// Whether Redis answered the last command or probe; `detail` says why not.
    pub fn status(&self) -> (bool, String) {
        let up = self.up.load(Ordering::Relaxed);
        let detail = if up {
            "up".to_string()
        } else {
            self.last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        };
        (up, detail)
    }

    pub fn stats(&self) -> SharedStats {
        SharedStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
        }
    }

    fn redis_key(&self, key: &CacheKey) -> String {
        format!("{}{}", self.namespace, key.hex())
    }

    /// The connection, unless Redis is down.
    fn connection(&self) -> Option<MultiplexedConnection> {
        if !self.up.load(Ordering::Relaxed) {
            return None;
        }
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records a failed command: the replica stops using Redis until the probe reconnects.
    fn failed(&self, what: &str, error: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.mark_down(format!("{what}: {error}"));
    }

    fn mark_down(&self, why: String) {
        let was_up = self.up.swap(false, Ordering::Relaxed);
        if was_up {
            tracing::warn!(error = %why, "Redis is down; serving from the local cache only");
        }
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = why;
    }

    /// The checked bytes of `key`'s entry (a whole cache file, still to be parsed and checked
    /// by the caller), or `None` on a miss, an error, a bad tag or while Redis is down.
    pub async fn get(&self, key: &CacheKey) -> Option<Vec<u8>> {
        let Some(mut conn) = self.connection() else {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let redis_key = self.redis_key(key);
        let reply = tokio::time::timeout(
            self.timeout,
            redis::cmd("GET")
                .arg(&redis_key)
                .query_async::<Option<Vec<u8>>>(&mut conn),
        )
        .await;
        let value = match reply {
            Ok(Ok(Some(value))) => value,
            Ok(Ok(None)) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Ok(Err(err)) => {
                self.failed("GET", err.to_string());
                return None;
            }
            Err(_) => {
                self.failed("GET", format!("no answer within {:?}", self.timeout));
                return None;
            }
        };
        match self.open(&redis_key, value) {
            Some(body) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(body)
            }
            None => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key = %redis_key, "a Redis entry failed its HMAC check; ignored");
                None
            }
        }
    }

    /// Stores `file` (a whole cache file) under `key`, with the TTL; errors are counted and
    /// logged, never returned: the shared cache is an optimisation.
    pub async fn put(&self, key: &CacheKey, file: &[u8]) {
        let Some(mut conn) = self.connection() else {
            return;
        };
        let redis_key = self.redis_key(key);
        let value = self.seal(&redis_key, file);
        let reply = tokio::time::timeout(
            self.timeout,
            redis::cmd("SET")
                .arg(&redis_key)
                .arg(value)
                .arg("EX")
                .arg(self.ttl_seconds)
                .query_async::<()>(&mut conn),
        )
        .await;
        match reply {
            Ok(Ok(())) => {
                self.writes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(err)) => self.failed("SET", err.to_string()),
            Err(_) => self.failed("SET", format!("no answer within {:?}", self.timeout)),
        }
    }

    fn mac(&self, redis_key: &str, body: &[u8]) -> Option<Hmac<Sha256>> {
        let key = self.hmac_key.as_ref()?;
        // HMAC takes keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
        mac.update(redis_key.as_bytes());
        mac.update(body);
        Some(mac)
    }

    /// The value stored for `file`: the tag over the Redis key and the file, then the file.
    fn seal(&self, redis_key: &str, file: &[u8]) -> Vec<u8> {
        match self.mac(redis_key, file) {
            Some(mac) => {
                let mut value = mac.finalize().into_bytes().to_vec();
                value.extend_from_slice(file);
                value
            }
            None => file.to_vec(),
        }
    }

    /// The file inside a stored value, if its tag checks out (constant-time comparison).
    fn open(&self, redis_key: &str, mut value: Vec<u8>) -> Option<Vec<u8>> {
        if self.hmac_key.is_none() {
            return Some(value);
        }
        if value.len() < TAG {
            return None;
        }
        let body = value.split_off(TAG);
        self.mac(redis_key, &body)?.verify_slice(&value).ok()?;
        Some(body)
    }
}

/// Connects, then pings every [`PROBE_INTERVAL`]; reconnects after any failure. Ends when the
/// cache is dropped.
async fn watch(cache: Weak<SharedCache>) {
    loop {
        let Some(cache) = cache.upgrade() else { return };
        let current = cache
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let result = match current {
            Some(mut conn) => tokio::time::timeout(
                cache.timeout,
                redis::cmd("PING").query_async::<String>(&mut conn),
            )
            .await
            .map(|r| r.map(|_| conn)),
            None => {
                tokio::time::timeout(
                    cache.timeout,
                    cache.client.get_multiplexed_async_connection(),
                )
                .await
            }
        };
        match result {
            Ok(Ok(conn)) => {
                *cache
                    .connection
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(conn);
                if !cache.up.swap(true, Ordering::Relaxed) {
                    tracing::info!("Redis is up: the shared cache is in use");
                }
            }
            Ok(Err(err)) => {
                *cache
                    .connection
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                cache.mark_down(err.to_string());
            }
            Err(_) => {
                *cache
                    .connection
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = None;
                cache.mark_down(format!("no answer within {:?}", cache.timeout));
            }
        }
        drop(cache);
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(key: Option<&str>) -> SharedCache {
        SharedCache {
            client: redis::Client::open("redis://127.0.0.1:1/").unwrap(),
            connection: Mutex::new(None),
            up: AtomicBool::new(false),
            last_error: Mutex::new(String::new()),
            namespace: "ns:".into(),
            timeout: Duration::from_millis(10),
            ttl_seconds: 1,
            hmac_key: key.map(|k| k.as_bytes().to_vec()),
            hits: AtomicU64::default(),
            misses: AtomicU64::default(),
            errors: AtomicU64::default(),
            skipped: AtomicU64::default(),
            writes: AtomicU64::default(),
        }
    }

    #[test]
    fn tags_bind_the_value_to_the_key_and_the_shared_secret() {
        let signer = cache(Some("secret"));
        let value = signer.seal("ns:a", b"file bytes");
        assert_eq!(value.len(), TAG + 10);
        assert_eq!(
            signer.open("ns:a", value.clone()).as_deref(),
            Some(&b"file bytes"[..])
        );
        assert_eq!(signer.open("ns:b", value.clone()), None, "another key");
        assert_eq!(
            cache(Some("other")).open("ns:a", value.clone()),
            None,
            "another secret"
        );
        let mut flipped = value.clone();
        flipped[TAG + 3] ^= 1;
        assert_eq!(signer.open("ns:a", flipped), None, "a changed file");
        assert_eq!(signer.open("ns:a", value[..TAG - 1].to_vec()), None);
        assert_eq!(
            signer.open("ns:a", b"file bytes".to_vec()),
            None,
            "untagged"
        );
        // Without a key, values are stored as they are.
        assert_eq!(cache(None).seal("ns:a", b"x"), b"x");
    }
}
