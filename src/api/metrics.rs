//! Prometheus metrics, served as text at `GET /metrics`.
//!
//! Counters and histograms are updated by the HTTP layer as requests finish; gauges that
//! describe the present (queue depths) are read when the metrics are scraped.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::pipeline::{ExecutionOutput, Playground};

/// Latency buckets in seconds, from a cached run to a compile near its limit.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    executions: IntCounterVec,
    artifact_cache: IntCounterVec,
    compile_seconds: Histogram,
    run_seconds: Histogram,
    queue_wait_seconds: Histogram,
    fuel_consumed: IntCounter,
    rejected: IntCounter,
    rejections: IntCounterVec,
    live_sessions: IntGauge,
    queue_depth: IntGaugeVec,
    cache_entries: IntGauge,
    cache_memory_bytes: IntGauge,
    cache_disk_bytes: IntGauge,
    redis: IntCounterVec,
    redis_up: IntGauge,
    spare_compilers: IntCounterVec,
    /// Serializes scrapes, which bring the gauges and the Redis counters up to date.
    scrape: std::sync::Mutex<()>,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("wasm_playground".into()), None)?;
        let histogram = |name: &str, help: &str| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()))
        };
        let metrics = Self {
            requests: IntCounterVec::new(
                Opts::new("http_requests_total", "HTTP requests by route and status"),
                &["route", "status"],
            )?,
            request_seconds: HistogramVec::new(
                HistogramOpts::new("http_request_seconds", "HTTP request latency by route")
                    .buckets(BUCKETS.to_vec()),
                &["route"],
            )?,
            executions: IntCounterVec::new(
                Opts::new("executions_total", "Finished executions by outcome status"),
                &["status"],
            )?,
            artifact_cache: IntCounterVec::new(
                Opts::new(
                    "artifact_cache_total",
                    "Executions whose build came from the artifact cache (hit) or ran rustc (miss)",
                ),
                &["result"],
            )?,
            compile_seconds: histogram(
                "compile_seconds",
                "Time to get a compiled program (a build, or a cache lookup)",
            )?,
            run_seconds: histogram("run_seconds", "Time to run a program")?,
            queue_wait_seconds: histogram("queue_wait_seconds", "Time waiting for a slot")?,
            fuel_consumed: IntCounter::new("fuel_consumed_total", "Fuel consumed by programs")?,
            rejected: IntCounter::new(
                "rejected_total",
                "Requests refused with 503 because the server was saturated",
            )?,
            rejections: IntCounterVec::new(
                Opts::new(
                    "rejections_total",
                    "Requests and connections refused, by the limit that refused them \
                     (clientCompiles, clientRuns, clientCompileRate, clientLiveSessions: 429; \
                     queue, liveSessions: 503; connections, clientConnections: closed at once)",
                ),
                &["limit"],
            )?,
            live_sessions: IntGauge::new("live_sessions", "Live sessions open now")?,
            queue_depth: IntGaugeVec::new(
                Opts::new("queue_depth", "Requests waiting for a slot, by stage"),
                &["stage"],
            )?,
            cache_entries: IntGauge::new(
                "artifact_cache_entries",
                "Compiled programs and compile errors held in the memory cache",
            )?,
            cache_memory_bytes: IntGauge::new(
                "artifact_cache_memory_bytes",
                "Bytes held by the memory cache's programs and diagnostics (estimated)",
            )?,
            cache_disk_bytes: IntGauge::new(
                "artifact_cache_disk_bytes",
                "Bytes of the on-disk artifact cache",
            )?,
            spare_compilers: IntCounterVec::new(
                Opts::new(
                    "spare_compilers_total",
                    "Single-file builds that found a spare rustc started for them (taken) or \
                     started their own (missed)",
                ),
                &["result"],
            )?,
            redis: IntCounterVec::new(
                Opts::new(
                    "redis_cache_total",
                    "Shared Redis cache: lookups by result (hit, miss, error; skipped while Redis \
                     is down) and entries written (write)",
                ),
                &["result"],
            )?,
            redis_up: IntGauge::new(
                "redis_up",
                "1 while the shared Redis cache answers, 0 while it is down (absent without one)",
            )?,
            registry,
            scrape: std::sync::Mutex::default(),
        };
        metrics
            .registry
            .register(Box::new(metrics.requests.clone()))?;
        metrics
            .registry
            .register(Box::new(metrics.request_seconds.clone()))?;
        metrics
            .registry
            .register(Box::new(metrics.executions.clone()))?;
        metrics
            .registry
            .register(Box::new(metrics.artifact_cache.clone()))?;
        for c in [
            &metrics.compile_seconds,
            &metrics.run_seconds,
            &metrics.queue_wait_seconds,
        ] {
            metrics.registry.register(Box::new(c.clone()))?;
        }
        metrics
            .registry
            .register(Box::new(metrics.fuel_consumed.clone()))?;
        metrics
            .registry
            .register(Box::new(metrics.rejected.clone()))?;
        metrics
            .registry
            .register(Box::new(metrics.queue_depth.clone()))?;
        metrics
            .registry
            .register(Box::new(metrics.rejections.clone()))?;
        metrics
            .registry
            .register(Box::new(metrics.live_sessions.clone()))?;
        metrics
            .registry
            .register(Box::new(metrics.spare_compilers.clone()))?;
        for g in [
            &metrics.cache_entries,
            &metrics.cache_memory_bytes,
            &metrics.cache_disk_bytes,
        ] {
            metrics.registry.register(Box::new(g.clone()))?;
        }
        Ok(metrics)
    }

    /// Counts one answered request.
    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.request_seconds
            .with_label_values(&[route])
            .observe(seconds);
        if status == 503 {
            self.rejected.inc();
        }
    }

    /// Counts one request or connection refused by `limit`.
    pub fn observe_rejection(&self, limit: &str) {
        self.rejections.with_label_values(&[limit]).inc();
    }

    /// Counts one finished execution.
    pub fn observe_execution(&self, out: &ExecutionOutput) {
        let status = serde_json::to_value(out.status).unwrap_or_default();
        self.executions
            .with_label_values(&[status.as_str().unwrap_or("unknown")])
            .inc();
        self.artifact_cache
            .with_label_values(&[if out.timings.cached { "hit" } else { "miss" }])
            .inc();
        self.compile_seconds
            .observe(out.timings.compile_ms / 1000.0);
        if out.timings.run_ms > 0.0 {
            self.run_seconds.observe(out.timings.run_ms / 1000.0);
        }
        self.queue_wait_seconds
            .observe(out.timings.queue_ms / 1000.0);
        self.fuel_consumed.inc_by(out.fuel_consumed);
    }

    /// The text exposition format, with the present queue depths, cache sizes and the shared
    /// cache's counters.
    pub fn render(&self, playground: &Playground) -> String {
        let _scrape = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cache = playground.cache();
        self.cache_entries.set(cache.memory_len() as i64);
        self.cache_memory_bytes
            .set(i64::try_from(cache.memory_bytes()).unwrap_or(i64::MAX));
        self.cache_disk_bytes
            .set(i64::try_from(cache.disk_bytes()).unwrap_or(i64::MAX));
        if let (Some(stats), Some((up, _))) = (cache.shared_stats(), cache.shared_status()) {
            // Registered on the first scrape: without Redis these series do not exist.
            let _ = self.registry.register(Box::new(self.redis.clone()));
            let _ = self.registry.register(Box::new(self.redis_up.clone()));
            for (result, total) in [
                ("hit", stats.hits),
                ("miss", stats.misses),
                ("error", stats.errors),
                ("skipped", stats.skipped),
                ("write", stats.writes),
            ] {
                let counter = self.redis.with_label_values(&[result]);
                // The cache counts; the counter catches up at each scrape.
                counter.inc_by(total.saturating_sub(counter.get()));
            }
            self.redis_up.set(i64::from(up));
        }
        let spares = playground
            .compilers()
            .map(|(_, c)| c.spare_stats())
            .fold((0, 0), |(t, m), s| (t + s.taken, m + s.missed));
        for (result, total) in [("taken", spares.0), ("missed", spares.1)] {
            let counter = self.spare_compilers.with_label_values(&[result]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        self.live_sessions.set(playground.live_sessions() as i64);
        let (compiles, runs) = playground.queued();
        self.queue_depth
            .with_label_values(&["compile"])
            .set(compiles as i64);
        self.queue_depth
            .with_label_values(&["run"])
            .set(runs as i64);
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for these metric types.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// `GET /metrics` in Prometheus' text format.
pub(super) async fn metrics(
    State(playground): State<Arc<Playground>>,
    State(metrics): State<Arc<Metrics>>,
) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(&playground),
    )
        .into_response()
}
