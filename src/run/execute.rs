//! One run: a fresh store with its limits, the program's stdio, the tier-up race, and the move
//! of CPU-bound runs to the background lane.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use wasmtime::{InstancePre, Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

use super::capture::{CaptureStream, OutputSink, StreamKind};
use super::engine::{Backend, Code, Program, Runner, StoreState, Tier};
use super::outcome::{Outcome, RunError, RunOutput, Status};
use super::stats::{MeteredLimits, RunStats, metered};
use super::stdin::LiveStdin;
use super::threads;
use crate::config::{CompilerStrategy, Config};

/// `argv[0]` of every program.
pub const PROGRAM_NAME: &str = "target/debug/playground";

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
    pub live: Option<Arc<dyn OutputSink>>,
    /// Where the run notes its CPU time and memory as it goes.
    pub stats: Option<Arc<RunStats>>,
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
    /// A live run streams output and consumes stdin as it goes, so it can never be restarted
    /// (on faster code) without the client seeing it.
    fn restartable(&self) -> bool {
        self.live.is_none() && matches!(self.stdin, Input::Bytes(_))
    }
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
            stats: None,
        }
    }
}

/// Shared state between a run and the code driving it.
#[derive(Default)]
struct RunSignals {
    /// The run burned more than the tier-up fuel.
    hot: AtomicBool,
    hot_notify: Notify,
    /// The run was executing guest code at an epoch tick: it belongs in the background lane.
    demote: AtomicBool,
}

impl Runner {
    /// Runs `program`: a program's `_initialize` (if exported) then `__entry`, or a command
    /// module's `_start` (the test harness). On Winch code, tiers up to Cranelift as described
    /// in the module docs; a live run is never restarted, but still starts the upgrade for the
    /// next run.
    pub async fn execute(
        &self,
        program: &Arc<Program>,
        opts: &RunOptions,
    ) -> Result<RunOutput, RunError> {
        let (tier, pre) = match program.current() {
            (tier, Code::Plain(pre)) => (tier, pre),
            (tier, Code::Threaded(module)) => {
                return self.run_threaded(program, tier, &module, opts).await;
            }
        };
        let cranelift = match (&self.cranelift, tier, self.strategy) {
            (Some(cranelift), Tier::Winch, CompilerStrategy::Tiered) => cranelift.clone(),
            _ => return self.run(tier, pre, opts, None).await,
        };
        let signals = Arc::new(RunSignals::default());
        if !opts.restartable() {
            let mut run = Box::pin(self.run(Tier::Winch, pre, opts, Some(signals.clone())));
            return tokio::select! {
                out = &mut run => out,
                () = signals.hot_notify.notified() => {
                    program.start_upgrade(&cranelift);
                    run.await
                }
            };
        }
        let mut first = Box::pin(self.run(Tier::Winch, pre, opts, Some(signals.clone())));
        let finished = tokio::select! {
            out = &mut first => Some(out?),
            () = signals.hot_notify.notified() => None,
        };
        let winch_out = match finished {
            Some(out) => out,
            None => {
                // CPU-bound: compile with Cranelift while the Winch run goes on, and take
                // whichever is ready first.
                program.start_upgrade(&cranelift);
                tokio::select! {
                    out = &mut first => out?,
                    Some(Code::Plain(pre)) = program.upgraded() => {
                        drop(first);
                        return self.run(Tier::Cranelift, pre, opts, None).await;
                    }
                }
            }
        };
        let hot = signals.hot.load(Ordering::Relaxed);
        let retry = winch_out.native_stack_overflow || (hot && winch_out.status == Status::Timeout);
        if !retry {
            return Ok(winch_out);
        }
        program.start_upgrade(&cranelift);
        match program.upgraded().await {
            Some(Code::Plain(pre)) => self.run(Tier::Cranelift, pre, opts, None).await,
            _ => Ok(winch_out),
        }
    }

    /// A threaded run ([`super::threads`]). It is never restarted; a CPU-bound one starts the
    /// Cranelift compile for the program's next runs.
    async fn run_threaded(
        &self,
        program: &Arc<Program>,
        tier: Tier,
        module: &wasmtime::Module,
        opts: &RunOptions,
    ) -> Result<RunOutput, RunError> {
        let backend = self
            .backend(tier)
            .ok_or_else(|| RunError::Setup(format!("no {tier:?} engine")))?;
        let out = threads::run(self, backend, module, opts, tier).await?;
        if let (Some(cranelift), Tier::Winch, CompilerStrategy::Tiered) =
            (&self.cranelift, tier, self.strategy)
            && out.fuel_consumed >= self.tier_up_fuel
        {
            program.start_upgrade(cranelift);
        }
        Ok(out)
    }

    /// One run on `pre`, started on the current executor and moved to the background lane if
    /// it is still computing at an epoch tick.
    async fn run(
        &self,
        tier: Tier,
        pre: InstancePre<StoreState>,
        opts: &RunOptions,
        signals: Option<Arc<RunSignals>>,
    ) -> Result<RunOutput, RunError> {
        let backend = self
            .backend(tier)
            .ok_or_else(|| RunError::Setup(format!("no {tier:?} engine")))?
            .clone();
        let signals = signals.unwrap_or_default();
        let tier_up_fuel = (tier == Tier::Winch && self.strategy == CompilerStrategy::Tiered)
            .then_some(self.tier_up_fuel);
        let mut run = Box::pin(run_instance(
            backend,
            pre,
            opts.clone(),
            tier,
            self.tick,
            tier_up_fuel,
            signals.clone(),
            self.slots.clone(),
        ));
        let first = std::future::poll_fn(|cx| match run.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending if signals.demote.load(Ordering::Relaxed) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await;
        if let Some(out) = first {
            return out;
        }
        let mut task = AbortOnDrop(self.background_handle.spawn(run));
        (&mut task.0)
            .await
            .map_err(|e| RunError::Setup(format!("the run's task failed: {e}")))?
    }
}

/// Aborts a spawned run when the request that awaits it goes away.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A boxed, sendable run, so it can move to the background lane.
type RunFuture = Pin<Box<dyn Future<Output = Result<RunOutput, RunError>> + Send>>;

#[allow(clippy::too_many_arguments)]
fn run_instance(
    backend: Arc<Backend>,
    pre: InstancePre<StoreState>,
    opts: RunOptions,
    tier: Tier,
    tick: Duration,
    tier_up_fuel: Option<u64>,
    signals: Arc<RunSignals>,
    slots: Arc<Semaphore>,
) -> RunFuture {
    Box::pin(async move {
        let _slot = slots
            .acquire_owned()
            .await
            .map_err(|e| RunError::Setup(e.to_string()))?;
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
        let mut store = Store::new(
            &backend.engine,
            StoreState {
                wasi,
                limits: MeteredLimits::new(limits, opts.stats.clone()),
                threads: None,
            },
        );
        store.limiter(|s| &mut s.limits);
        let setup = |e: wasmtime::Error| RunError::Setup(e.to_string());
        store.set_fuel(opts.fuel).map_err(setup)?;
        store
            .fuel_async_yield_interval(opts.fuel_yield_interval)
            .map_err(setup)?;
        let deadline = Instant::now() + opts.timeout;
        let fuel = opts.fuel;
        let tick_signals = signals.clone();
        let mut ticks = 0u32;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |ctx| {
            if Instant::now() >= deadline {
                return Ok(UpdateDeadline::Interrupt);
            }
            if let Some(limit) = tier_up_fuel {
                let burned = fuel.saturating_sub(ctx.get_fuel().unwrap_or(0));
                if burned >= limit && !tick_signals.hot.swap(true, Ordering::Relaxed) {
                    tick_signals.hot_notify.notify_one();
                }
            }
            // The first tick may come right after the start; at the second, the run has
            // computed for at least a whole tick.
            ticks += 1;
            if ticks >= 2 {
                tick_signals.demote.store(true, Ordering::Relaxed);
            }
            Ok(UpdateDeadline::Yield(1))
        });

        let run = async {
            let instance = pre.instantiate_async(&mut store).await?;
            // `get_func` rather than `get_typed_func` to probe: a missing export must not build
            // an error (with a backtrace under RUST_BACKTRACE=1) on every run.
            if let Some(entry) = instance.get_func(&mut store, "__entry") {
                if let Some(init) = instance.get_func(&mut store, "_initialize") {
                    init.typed::<(), ()>(&store)?
                        .call_async(&mut store, ())
                        .await?;
                }
                return entry
                    .typed::<(), i32>(&store)?
                    .call_async(&mut store, ())
                    .await;
            }
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await.map(|()| 0)
        };
        // The epoch check cannot fire while the guest waits in a host call (e.g. a sleep); this
        // outer timeout covers that, one tick after the deadline.
        let run = metered(run, opts.stats.clone());
        let result = match tokio::time::timeout(opts.timeout + tick, run).await {
            Ok(result) => Outcome::from_result(result),
            Err(_) => Outcome::Timeout,
        };
        let fuel_consumed = opts.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        Ok(result.into_output(&opts, &stdout, &stderr, fuel_consumed, tier))
    })
}
