//! The whole pipeline behind one call: validate a request, build it, run it, and describe the
//! result. The HTTP handlers, the WebSockets and the `run` subcommand are thin wrappers around
//! [`Playground`].
//!
//! - this file: [`Playground`] (set-up, channels, `execute`), the request and answer types;
//! - [`tools`]: rustfmt, clippy and `/compile`'s views;
//! - [`admission`]: the bounded slots and queues for compiles and runs (503 when saturated),
//!   each client's share of them and its live sessions (429 past a client's limit);
//! - [`rate`]: each client's rate of new compiles (429 past it).
//!
//! It uses [`build`](crate::build), [`run`](crate::run), [`inspect`](crate::inspect) and
//! [`config`](crate::config). What it needs from above, a live client to report to, is the
//! [`LiveObserver`] trait, which the WebSocket implements.

pub mod admission;
pub mod rate;
pub mod tools;

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::build::{
    Artifact, ArtifactCache, CacheKey, Channel, Code, CompileError, CompileOptions,
    CompileSettings, Compiler, CrateKind, CrateSet, Diagnostic, Edition, Emit, Mode, OfferedCrate,
    ProcessLimits, Report, Sandbox, Source, Toolchain, ToolchainError,
};
use crate::config::Config;
use crate::run::{
    Input, LiveStdin, OutputSink, RunError, RunOptions, RunSlot, RunStats, Runner, Status,
};
pub use admission::ClientId;
use admission::{
    Admission, AdmissionError, Limit, Limited, Overloaded, PerClient, Permit, Sessions,
};
use rate::CompileRate;
pub use tools::{AsmOptions, Target, ToolOutput};

/// What a live execution reports as it goes, besides the program's output: implemented by the
/// WebSocket that streams it.
pub trait LiveObserver: OutputSink {
    /// The build is done (from the cache or `rustc`); the run starts next if it succeeded.
    fn compiled(&self, report: &Report);

    /// Where the run should note its CPU time and memory as it goes, if anyone reads them.
    fn stats(&self) -> Option<Arc<RunStats>> {
        None
    }
}

/// One program to compile and run.
#[derive(Debug, Clone, Default)]
pub struct ExecuteRequest {
    /// One file, or a package's files (`src/main.rs`, `src/lib.rs`, modules).
    pub code: Code,
    pub channel: Channel,
    pub edition: Edition,
    pub mode: Mode,
    /// Run `main`, run the `#[test]`s, or only compile a library.
    pub kind: CrateKind,
    /// A panic prints a stack backtrace, as under `RUST_BACKTRACE=1`.
    pub backtrace: bool,
    pub stdin: String,
    /// Arguments passed to the program after its name.
    pub args: Vec<String>,
    /// Who asks, for the per-client limits.
    pub client: ClientId,
}

/// The answer to every finished execution, including compile errors and crashes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionOutput {
    pub success: bool,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub exit_detail: String,
    pub stdout: String,
    /// What `cargo run` would print on stderr: the compiler's rendered diagnostics (also in
    /// `compiler_output`), then the program's stderr.
    pub stderr: String,
    pub compiler_output: String,
    pub diagnostics: Vec<Diagnostic>,
    pub truncated: bool,
    pub fuel_consumed: u64,
    pub timings: Timings,
}

impl ExecutionOutput {
    /// One answer for two runs of a package, `self` first: the second one's outcome, both
    /// outputs.
    fn followed_by(self, next: ExecutionOutput) -> ExecutionOutput {
        let (first, t) = (self.timings, next.timings);
        ExecutionOutput {
            stdout: self.stdout + &next.stdout,
            stderr: self.stderr + &next.stderr,
            compiler_output: self.compiler_output + &next.compiler_output,
            diagnostics: [self.diagnostics, next.diagnostics].concat(),
            truncated: self.truncated || next.truncated,
            fuel_consumed: self.fuel_consumed + next.fuel_consumed,
            timings: Timings {
                queue_ms: first.queue_ms + t.queue_ms,
                compile_ms: first.compile_ms + t.compile_ms,
                run_ms: first.run_ms + t.run_ms,
                cached: first.cached && t.cached,
                source: t.source,
            },
            ..next
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    /// Time spent waiting for a compile slot and a run slot.
    pub queue_ms: f64,
    /// Time to get the compiled program: `rustc` and Wasmtime's compile, or the cache lookup.
    pub compile_ms: f64,
    pub run_ms: f64,
    /// The compiled program (or compile error) came from the cache: no `rustc` ran for this
    /// request (it may have waited for an identical request's build).
    pub cached: bool,
    /// Where the build came from (for logs and metrics; the API has `cached`).
    #[serde(skip)]
    pub source: Option<Source>,
}

/// Why a request could not be executed.
#[derive(Debug, thiserror::Error)]
pub enum PlaygroundError {
    /// The request itself is unacceptable (the client's fault; HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// The code or stdin is over its configured size limit (HTTP 413).
    #[error("{0}")]
    TooLarge(String),
    /// No slot free and the queue full or too slow (HTTP 503 with `Retry-After`).
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
    /// The client is over one of its own limits (HTTP 429 with `Retry-After`).
    #[error(transparent)]
    Limited(#[from] Limited),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error(transparent)]
    Run(#[from] RunError),
}

impl From<AdmissionError> for PlaygroundError {
    fn from(err: AdmissionError) -> Self {
        match err {
            AdmissionError::Overloaded(o) => o.into(),
            AdmissionError::Limited(l) => l.into(),
        }
    }
}

/// The compiler, the runner and the limits they share.
pub struct Playground {
    /// One compiler per available channel; `stable` is always there.
    compilers: Vec<(Channel, Compiler)>,
    /// Why each other channel is not available, for the 400 that asks for it.
    unavailable: Vec<(Channel, String)>,
    runner: Arc<Runner>,
    cache: ArtifactCache,
    compiles: Admission,
    runs: Arc<Admission>,
    live_sessions: Sessions,
    compile_rate: Option<CompileRate>,
    config: Config,
}

impl Playground {
    /// Checks the toolchain and sets up Wasmtime; fails with an actionable message.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let limits = ProcessLimits {
            cpu_seconds: config.compile_cpu_seconds,
            data_bytes: config.compile_memory_limit,
            file_bytes: config.compile_file_limit,
            open_files: 1024,
        };
        let settings = CompileSettings {
            work_dir: config.work_dir.clone().unwrap_or_else(std::env::temp_dir),
            timeout: config.compile_timeout(),
            diagnostics_bytes: config.diagnostics_limit,
            spares: config.warm_compilers,
        };
        let compiler = |toolchain: Toolchain| -> anyhow::Result<Compiler> {
            let sandbox = Sandbox::new(
                &toolchain.sysroot,
                limits,
                config.insecure_unsandboxed_compile,
            )?;
            Ok(Compiler::new(toolchain, sandbox, settings.clone()))
        };
        // Each channel with the crates its own rustc built, and nightly with Miri.
        let compiler = |channel: Channel, toolchain: Toolchain| -> anyhow::Result<Compiler> {
            let mut compiler = compiler(toolchain)?;
            if let Some(crates) = load_crates(&config, channel, &compiler.toolchain().version) {
                compiler = compiler.with_crates(crates)?;
            }
            let miri = config.miri_sysroot();
            if channel == Channel::Nightly && crate::build::miri::is_ready(&miri) {
                compiler = compiler.with_miri(miri)?;
            }
            Ok(compiler)
        };
        let stable = compiler(Channel::Stable, Toolchain::detect(&config.rustc)?)?;
        stable.warm_up();
        let mut compilers = vec![(Channel::Stable, stable)];
        let mut unavailable = Vec::new();
        for channel in [Channel::Beta, Channel::Nightly] {
            if !config.channels.contains(&channel) {
                unavailable.push((channel, "not enabled on this server".to_string()));
                continue;
            }
            match Toolchain::detect_channel(channel) {
                Ok(toolchain) => compilers.push((channel, compiler(channel, toolchain)?)),
                Err(why) => {
                    tracing::info!(channel = channel.as_str(), %why, "channel unavailable");
                    // The full reason names host paths: clients get the gist.
                    let gist = match why {
                        ToolchainError::TargetMissing { .. } => {
                            "its toolchain lacks the wasm32-wasip1 target"
                        }
                        _ => "its toolchain is not installed",
                    };
                    unavailable.push((channel, gist.to_string()));
                }
            }
        }
        let runner = Arc::new(Runner::new(&config)?);
        let shared = match &config.redis_url {
            Some(url) => Some(crate::build::shared_cache::SharedCache::start(
                url.expose(),
                &runner.compatibility(),
                config.redis_timeout(),
                config.redis_ttl_seconds,
                config.redis_hmac_key.as_ref().map(|k| k.expose()),
            )?),
            None => None,
        };
        let cache = ArtifactCache::new(
            config.cache_memory_entries,
            config.cache_memory_bytes,
            &config.cache_dir(),
            config.cache_disk_bytes,
            shared,
            runner.clone(),
        );
        let per_client = |slots| PerClient {
            slots,
            queue: config.client_queue_limit,
        };
        let compiles = Admission::new(
            config.max_compiles,
            config.queue_limit,
            config.queue_timeout(),
            per_client(config.client_max_compiles),
            Limit::ClientCompiles,
        );
        let runs = Arc::new(Admission::new(
            config.max_runs,
            config.queue_limit,
            config.queue_timeout(),
            per_client(config.client_max_runs),
            Limit::ClientRuns,
        ));
        let live_sessions =
            Sessions::new(config.max_live_sessions, config.client_max_live_sessions);
        let compile_rate =
            CompileRate::new(config.client_compile_rate, config.client_compile_burst);
        Ok(Self {
            compilers,
            unavailable,
            runner,
            cache,
            compiles,
            runs,
            live_sessions,
            compile_rate,
            config,
        })
    }

    /// The crates programs on the stable channel may use (none when they were not built).
    pub fn crates(&self) -> &[OfferedCrate] {
        self.compilers
            .iter()
            .find_map(|(_, c)| c.crates())
            .map_or(&[], |set| &set.index.crates)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Requests waiting now for a compile slot and for a run slot.
    pub fn queued(&self) -> (usize, usize) {
        (self.compiles.queued(), self.runs.queued())
    }

    /// Live sessions open now.
    pub fn live_sessions(&self) -> usize {
        self.live_sessions.open()
    }

    /// Counts one new compile (a cache miss, a tool run) against `client`'s rate.
    fn charge_compile(&self, client: ClientId) -> Result<(), PlaygroundError> {
        match &self.compile_rate {
            Some(rate) => Ok(rate.charge(client)?),
            None => Ok(()),
        }
    }

    pub fn cache(&self) -> &ArtifactCache {
        &self.cache
    }

    /// The compilers of the available channels, `stable` first.
    pub fn compilers(&self) -> impl Iterator<Item = (Channel, &Compiler)> {
        self.compilers.iter().map(|(c, compiler)| (*c, compiler))
    }

    /// The compiler of `channel`, or a 400 that says why it is not available.
    fn compiler(&self, channel: Channel) -> Result<&Compiler, PlaygroundError> {
        if let Some((_, compiler)) = self.compilers.iter().find(|(c, _)| *c == channel) {
            return Ok(compiler);
        }
        let why = self
            .unavailable
            .iter()
            .find(|(c, _)| *c == channel)
            .map_or("not installed", |(_, why)| why.as_str());
        Err(PlaygroundError::BadRequest(format!(
            "the `{}` channel is not available on this server ({why})",
            channel.as_str()
        )))
    }

    pub async fn execute(&self, req: ExecuteRequest) -> Result<ExecutionOutput, PlaygroundError> {
        let stdin = Input::Bytes(req.stdin.clone().into_bytes());
        self.execute_with(req, stdin, None).await
    }

    /// [`Self::execute`], reporting to `sink` as it goes, with stdin fed while the program runs.
    pub async fn execute_live(
        &self,
        req: ExecuteRequest,
        observer: Arc<dyn LiveObserver>,
        stdin: LiveStdin,
    ) -> Result<ExecutionOutput, PlaygroundError> {
        // Held for the session's life, compile included.
        let _session = self.live_sessions.enter(req.client)?;
        self.execute_with(req, Input::Live(stdin), Some(observer))
            .await
    }

    /// `cargo test` of a package with both `src/lib.rs` and `src/main.rs` runs the library's
    /// tests, then (if they pass) the binary's; every other request is one build and run.
    async fn execute_with(
        &self,
        req: ExecuteRequest,
        stdin: Input,
        observer: Option<Arc<dyn LiveObserver>>,
    ) -> Result<ExecutionOutput, PlaygroundError> {
        let both = req.code.has("src/lib.rs") && req.code.has("src/main.rs");
        if !(req.kind.is_tests() && both) {
            return self.execute_one(req, stdin, observer).await;
        }
        let lib_kind = match req.kind {
            CrateKind::Tests => CrateKind::LibraryTests,
            kind => kind,
        };
        let lib_req = ExecuteRequest {
            kind: lib_kind,
            ..req.clone()
        };
        let lib = self
            .execute_one(lib_req, stdin.clone(), observer.clone())
            .await?;
        if !lib.success {
            return Ok(lib);
        }
        let bin_req = ExecuteRequest {
            kind: CrateKind::Tests,
            ..req
        };
        let bin = self.execute_one(bin_req, stdin, observer).await?;
        Ok(lib.followed_by(bin))
    }

    async fn execute_one(
        &self,
        req: ExecuteRequest,
        stdin: Input,
        observer: Option<Arc<dyn LiveObserver>>,
    ) -> Result<ExecutionOutput, PlaygroundError> {
        self.validate(&req)?;
        let compiler = self.compiler(req.channel)?;
        let opts = CompileOptions {
            channel: req.channel,
            edition: req.edition,
            mode: req.mode,
            kind: req.kind,
            emit: Emit::Link,
            backtrace: req.backtrace && req.kind == CrateKind::Program,
        };
        let key = CacheKey::new(
            &req.code,
            &opts,
            &compiler.toolchain().version,
            compiler.crates().map_or("", |c| &c.fingerprint),
            self.config.diagnostics_limit,
        );
        let mut queued = Duration::ZERO;
        let started = Instant::now();
        let (artifact, source) = self
            .cache
            .get_or_build(key, || {
                self.build(compiler, &req.code, &opts, req.client, &mut queued)
            })
            .await?;
        let compile_ms = millis(started.elapsed().saturating_sub(queued));
        let cached = source.cached();
        let report = &artifact.report;
        let not_run = |status, detail: &str| ExecutionOutput {
            success: status == Status::Ok,
            status,
            exit_code: None,
            exit_detail: detail.into(),
            stdout: String::new(),
            stderr: report.rendered.clone(),
            compiler_output: report.rendered.clone(),
            diagnostics: report.diagnostics.clone(),
            truncated: report.truncated,
            fuel_consumed: 0,
            timings: Timings {
                queue_ms: millis(queued),
                compile_ms,
                run_ms: 0.0,
                cached,
                source: Some(source),
            },
        };
        if let Some(observer) = &observer {
            observer.compiled(report);
        }
        if !report.success {
            return Ok(not_run(Status::CompileError, "Compilation failed"));
        }
        let Some(program) = artifact
            .program
            .as_ref()
            .filter(|_| !req.kind.builds_only())
        else {
            return Ok(not_run(
                Status::Ok,
                "Compiled the library (there is nothing to run)",
            ));
        };

        // A threaded run may keep up to `max_threads` cores busy.
        let weight = if program.is_threaded() {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            cores.min(self.config.max_threads as usize)
        } else {
            1
        };
        let slot = self.runs.enter_weighted(req.client, weight).await?;
        queued += slot.waited;
        let mut run_opts = RunOptions::from_config(&self.config);
        if observer.is_some() {
            run_opts.timeout = self.config.live_timeout();
        }
        // A live run gives its slot back while it waits for input.
        let slot = Arc::new(LiveSlot {
            runs: self.runs.clone(),
            client: req.client,
            weight,
            held: Mutex::new(Some(slot)),
        });
        run_opts.stdin = match stdin {
            Input::Live(live) => Input::Live(live.with_slot(slot.clone())),
            bytes => bytes,
        };
        run_opts.stats = observer.as_ref().and_then(|o| o.stats());
        run_opts.live = observer.map(|o| -> Arc<dyn OutputSink> { o });
        run_opts.args = req.args;
        let started = Instant::now();
        let run = match req.kind {
            kind if kind.is_tests() => {
                crate::run::harness::run_tests(&self.runner, program, &run_opts).await?
            }
            _ => self.runner.execute(program, &run_opts).await?,
        };
        let run_ms = millis(started.elapsed());
        slot.release();
        Ok(ExecutionOutput {
            success: run.status == Status::Ok,
            status: run.status,
            exit_code: run.exit_code,
            exit_detail: run.exit_detail,
            stdout: run.stdout,
            // What `cargo run` prints on stderr: the build's diagnostics, then the program's.
            stderr: format!("{}{}", report.rendered, run.stderr),
            compiler_output: report.rendered.clone(),
            diagnostics: report.diagnostics.clone(),
            truncated: run.truncated || report.truncated,
            fuel_consumed: run.fuel_consumed,
            timings: Timings {
                queue_ms: millis(queued),
                compile_ms,
                run_ms,
                cached,
                source: Some(source),
            },
        })
    }

    /// Builds a program on a miss of the artifact cache: a compile slot, `rustc`, then
    /// Wasmtime's first-tier compile on a blocking thread. Returns the artifact and whether it
    /// may be cached (no limit cut the build short); adds the wait for the slot to `queued`.
    async fn build(
        &self,
        compiler: &Compiler,
        code: &Code,
        opts: &CompileOptions,
        client: ClientId,
        queued: &mut Duration,
    ) -> Result<(Artifact, bool), PlaygroundError> {
        self.charge_compile(client)?;
        let slot = self.compiles.enter(client).await?;
        *queued += slot.waited;
        let started = Instant::now();
        let build = compiler.compile_input(code, opts).await?;
        let rustc_ms = millis(started.elapsed());
        let mut report = Report {
            success: build.success,
            rendered: build.rendered.clone(),
            diagnostics: build.diagnostics.clone(),
            truncated: build.truncated,
        };
        let mut cacheable = build.cacheable;
        let program = if build.success && !opts.kind.builds_only() {
            let wasm: Arc<[u8]> = std::fs::read(&build.wasm)
                .map_err(|e| RunError::Load(format!("could not read the module: {e}")))?
                .into();
            let runner = self.runner.clone();
            let started = Instant::now();
            let compiled = tokio::task::spawn_blocking(move || runner.compile(wasm))
                .await
                .map_err(|e| RunError::Load(format!("the compile task failed: {e}")))?;
            let wasmtime_ms = millis(started.elapsed());
            tracing::debug!(rustc_ms, wasmtime_ms, "built");
            match compiled {
                Ok(program) => Some(Arc::new(program)),
                // Like a link error: the program's fault, told as a compile error. Not cached:
                // it depends on limits that the cache key does not hold.
                Err(RunError::Unfit(unfit)) => {
                    report.success = false;
                    report.rendered.push_str(&format!("error: {unfit}\n"));
                    report.diagnostics.push(Diagnostic::error(unfit.0));
                    cacheable = false;
                    None
                }
                Err(other) => return Err(other.into()),
            }
        } else {
            None
        };
        drop(slot);
        Ok((Artifact { report, program }, cacheable))
    }

    fn validate(&self, req: &ExecuteRequest) -> Result<(), PlaygroundError> {
        self.validate_code(&req.code)?;
        if req.stdin.len() > self.config.stdin_limit {
            return Err(PlaygroundError::TooLarge(format!(
                "`stdin` is {} bytes; the limit is {} bytes",
                req.stdin.len(),
                self.config.stdin_limit
            )));
        }
        Ok(())
    }

    fn validate_code(&self, code: &Code) -> Result<(), PlaygroundError> {
        code.check_paths().map_err(PlaygroundError::BadRequest)?;
        if code.is_blank() {
            return Err(PlaygroundError::BadRequest(
                "`code` is missing or empty".into(),
            ));
        }
        if code.size() > self.config.code_limit {
            return Err(PlaygroundError::TooLarge(format!(
                "`code` is {} bytes; the limit is {} bytes",
                code.size(),
                self.config.code_limit
            )));
        }
        Ok(())
    }
}

/// A run's slot, which a live run gives back while it waits for input.
struct LiveSlot {
    runs: Arc<Admission>,
    client: ClientId,
    weight: usize,
    held: Mutex<Option<Permit>>,
}

impl RunSlot for LiveSlot {
    fn release(&self) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    fn reacquire(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let permit = self.runs.reenter(self.client, self.weight).await;
            *self.held.lock().unwrap_or_else(PoisonError::into_inner) = permit;
        })
    }
}

/// Milliseconds, rounded to hundredths.
fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 100_000.0).round() / 100.0
}

/// The crate set of `channel`'s crates directory, if it was built by the toolchain
/// `rustc_version` (libraries from another rustc cannot be loaded). Without one, programs get
/// `std` only.
fn load_crates(config: &Config, channel: Channel, rustc_version: &str) -> Option<Arc<CrateSet>> {
    let dir = config.crates_dir_for(channel);
    match CrateSet::load(&dir) {
        Ok(set) if set.index.rustc == rustc_version => {
            tracing::info!(crates = set.index.crates.len(), dir = %dir.display(), "crates loaded");
            Some(Arc::new(set))
        }
        Ok(set) => {
            tracing::warn!(
                dir = %dir.display(),
                built_with = %set.index.rustc,
                serving_with = rustc_version,
                "the crates were built by another rustc; serving without crates until `wasm-playground build-crates` rebuilds them"
            );
            None
        }
        Err(err) => {
            tracing::warn!(%err, "serving without crates; `wasm-playground build-crates` builds them");
            None
        }
    }
}
