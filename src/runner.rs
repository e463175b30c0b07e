//! Running a compiled module in Wasmtime under fuel, memory, output and wall-clock limits, and
//! classifying how the run ended.
//!
//! One [`Engine`] and one [`Linker`] serve the whole process. The engine's epoch is advanced by a
//! single ticker thread; every store checks its *own* wall-clock deadline when a tick reaches it,
//! and otherwise yields to the executor. So one run's deadline never depends on how many other
//! runs there are, and a spinning program cannot hog an executor thread for more than a tick.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmtime::{
    Engine, Linker, Module, Store, StoreLimits, StoreLimitsBuilder, Trap, UpdateDeadline,
};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

use crate::capture::{CaptureStream, OutputLimitExceeded};
use crate::config::Config;
use crate::live::{LiveSink, LiveStdin, StreamKind};

/// `argv[0]` of every program.
pub const PROGRAM_NAME: &str = "target/debug/playground";

/// How an execution ended. `compileError` is produced by the caller, never by the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Ok,
    CompileError,
    RuntimeError,
    OutOfFuel,
    Timeout,
    MemoryLimit,
    StackOverflow,
    OutputLimit,
}

/// Limits of a single run; normally all taken from [`Config`].
#[derive(Clone)]
pub struct RunOptions {
    pub fuel: u64,
    /// Yield to the executor every N units of fuel; `None` relies on epoch ticks alone.
    pub fuel_yield_interval: Option<u64>,
    pub timeout: Duration,
    pub memory_limit: usize,
    pub output_limit: usize,
    pub stdin: Input,
    /// Arguments after the program name (`std::env::args().skip(1)`).
    pub args: Vec<String>,
    /// Where output goes as it is written, besides the captured buffers.
    pub live: Option<LiveSink>,
}

/// The program's stdin.
#[derive(Clone)]
pub enum Input {
    /// All of it, known up front.
    Bytes(Vec<u8>),
    /// Fed while the program runs (`/live`).
    Live(LiveStdin),
}

impl RunOptions {
    pub fn from_config(config: &Config) -> Self {
        Self {
            fuel: config.fuel,
            fuel_yield_interval: (config.fuel_yield_interval > 0)
                .then_some(config.fuel_yield_interval),
            timeout: config.run_timeout(),
            memory_limit: config.memory_limit,
            output_limit: config.output_limit,
            stdin: Input::Bytes(Vec::new()),
            args: Vec::new(),
            live: None,
        }
    }
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub status: Status,
    /// `None` when the program was stopped from outside (fuel, deadline, a trap).
    pub exit_code: Option<i32>,
    /// One sentence for people, e.g. "Exited with status 101".
    pub exit_detail: String,
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    pub fuel_consumed: u64,
}

/// Failures of the service, not of the program.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("could not load the compiled module: {0}")]
    Load(String),
    #[error("could not set up the program's store: {0}")]
    Setup(String),
}

struct StoreState {
    wasi: WasiP1Ctx,
    limits: StoreLimits,
}

/// The process-wide Wasmtime engine, WASI linker and epoch ticker.
pub struct Runner {
    engine: Engine,
    linker: Linker<StoreState>,
    tick: Duration,
    ticker_stop: Arc<AtomicBool>,
}

impl Runner {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let mut wasm_config = wasmtime::Config::new();
        wasm_config
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(config.max_wasm_stack);
        let engine = Engine::new(&wasm_config)
            .map_err(|e| anyhow::anyhow!("could not create the Wasmtime engine: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut StoreState| &mut s.wasi)
            .map_err(|e| anyhow::anyhow!("could not link WASI: {e}"))?;

        let tick = config.epoch_tick();
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = ticker_stop.clone();
        let ticking = engine.clone();
        // A plain thread, not a task: it must keep ticking even when every executor thread is
        // busy running guest code.
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    ticking.increment_epoch();
                }
            })?;
        Ok(Self {
            engine,
            linker,
            tick,
            ticker_stop,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles (with Cranelift) the module at `wasm`.
    pub fn load(&self, wasm: &Path) -> Result<Module, RunError> {
        Module::from_file(&self.engine, wasm).map_err(|e| RunError::Load(e.to_string()))
    }

    /// Loads and runs the module at `wasm`.
    pub async fn execute_payload(
        &self,
        wasm: &Path,
        opts: &RunOptions,
    ) -> Result<RunOutput, RunError> {
        let module = self.load(wasm)?;
        self.execute_module(&module, opts).await
    }

    /// Runs an already compiled module: a program's `_initialize` (if exported) then `__entry`,
    /// or a command module's `_start` (the test harness).
    pub async fn execute_module(
        &self,
        module: &Module,
        opts: &RunOptions,
    ) -> Result<RunOutput, RunError> {
        let live = |stream| opts.live.clone().map(|sink| (sink, stream));
        let stdout = CaptureStream::new(opts.output_limit, live(StreamKind::Stdout));
        let stderr = CaptureStream::new(opts.output_limit, live(StreamKind::Stderr));
        // No env, no preopened directories, no sockets: stdio, clocks and randomness only. The
        // program name is what play.rust-lang.org shows.
        let mut wasi = WasiCtxBuilder::new();
        match &opts.stdin {
            Input::Bytes(bytes) => wasi.stdin(MemoryInputPipe::new(bytes.clone())),
            Input::Live(live) => wasi.stdin(live.clone()),
        };
        let wasi = wasi
            .arg(PROGRAM_NAME)
            .args(&opts.args)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build_p1();
        let limits = StoreLimitsBuilder::new()
            .memory_size(opts.memory_limit)
            .instances(1)
            .memories(10)
            .tables(10)
            .build();
        let mut store = Store::new(&self.engine, StoreState { wasi, limits });
        store.limiter(|s| &mut s.limits);
        let setup = |e: wasmtime::Error| RunError::Setup(e.to_string());
        store.set_fuel(opts.fuel).map_err(setup)?;
        store
            .fuel_async_yield_interval(opts.fuel_yield_interval)
            .map_err(setup)?;
        let deadline = Instant::now() + opts.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });

        let run = async {
            let instance = self.linker.instantiate_async(&mut store, module).await?;
            if let Ok(entry) = instance.get_typed_func::<(), i32>(&mut store, "__entry") {
                if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
                    init.call_async(&mut store, ()).await?;
                }
                return entry.call_async(&mut store, ()).await;
            }
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await.map(|()| 0)
        };
        // The epoch check cannot fire while the guest waits in a host call (e.g. a sleep); this
        // outer timeout covers that, one tick after the deadline.
        let result = match tokio::time::timeout(opts.timeout + self.tick, run).await {
            Ok(result) => Outcome::from_result(result),
            Err(_) => Outcome::Timeout,
        };
        let fuel_consumed = opts.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let (stdout, stdout_truncated) = stdout.contents();
        let (stderr, stderr_truncated) = stderr.contents();
        let (status, exit_code, exit_detail) = result.classify(opts, &stderr);
        Ok(RunOutput {
            status,
            exit_code,
            exit_detail,
            stdout,
            stderr,
            truncated: stdout_truncated || stderr_truncated,
            fuel_consumed,
        })
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// The raw ending of a run, before it is put into words.
enum Outcome {
    Exited(i32),
    Trapped(Trap),
    OutputLimit,
    Timeout,
    Other(String),
}

impl Outcome {
    fn from_result(result: wasmtime::Result<i32>) -> Self {
        let err = match result {
            Ok(code) => return Outcome::Exited(code),
            Err(err) => err,
        };
        if let Some(exit) = err.downcast_ref::<I32Exit>() {
            Outcome::Exited(exit.0)
        } else if err.is::<OutputLimitExceeded>() {
            Outcome::OutputLimit
        } else if let Some(trap) = err.downcast_ref::<Trap>() {
            Outcome::Trapped(*trap)
        } else {
            Outcome::Other(format!("{err:#}"))
        }
    }

    fn classify(self, opts: &RunOptions, stderr: &str) -> (Status, Option<i32>, String) {
        let secs = opts.timeout.as_secs_f64();
        match self {
            Outcome::Exited(0) => (Status::Ok, Some(0), "Exited with status 0".into()),
            Outcome::Exited(code) => (
                Status::RuntimeError,
                Some(code),
                format!("Exited with status {code}"),
            ),
            Outcome::OutputLimit => (
                Status::OutputLimit,
                None,
                format!(
                    "Stopped after writing more than {} bytes of output",
                    opts.output_limit
                ),
            ),
            Outcome::Timeout | Outcome::Trapped(Trap::Interrupt) => (
                Status::Timeout,
                None,
                format!("Stopped after the {secs} s time limit"),
            ),
            Outcome::Trapped(Trap::OutOfFuel) => (
                Status::OutOfFuel,
                None,
                format!("Ran out of fuel after {} units", opts.fuel),
            ),
            Outcome::Trapped(Trap::StackOverflow) => (
                Status::StackOverflow,
                None,
                "Stack overflow: the call stack is exhausted".into(),
            ),
            // Rust's shadow stack lives at the bottom of linear memory: a frame too big for it
            // lands below address 0, i.e. out of bounds.
            Outcome::Trapped(Trap::MemoryOutOfBounds) => (
                Status::StackOverflow,
                None,
                "Stack overflow: the program's stack overran its memory (out of bounds memory access)"
                    .into(),
            ),
            Outcome::Trapped(Trap::UnreachableCodeReached)
                if stderr.contains("memory allocation of") =>
            {
                (
                    Status::MemoryLimit,
                    None,
                    format!(
                        "Ran out of memory: the limit is {} bytes",
                        opts.memory_limit
                    ),
                )
            }
            Outcome::Trapped(Trap::UnreachableCodeReached) => (
                Status::RuntimeError,
                None,
                "Aborted (wasm `unreachable` instruction executed)".into(),
            ),
            Outcome::Trapped(trap) => (
                Status::RuntimeError,
                None,
                format!("Crashed: {trap}"),
            ),
            Outcome::Other(message) => (
                Status::RuntimeError,
                None,
                format!("Crashed: {message}"),
            ),
        }
    }
}
