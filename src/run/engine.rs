//! Running a compiled module in Wasmtime under fuel, memory, output and wall-clock limits, and
//! classifying how the run ended.
//!
//! Two engines may serve the process: Winch, which compiles a module ~5x faster than Cranelift
//! but whose code runs ~2x slower, and Cranelift. Under the default `tiered` strategy a new
//! program is compiled with Winch; a run that burns more than `tier_up_fuel` starts a Cranelift
//! compile in the background, and when it is ready the Winch run is dropped and the program
//! restarts from scratch on the Cranelift code (the guest sees only in-memory stdin and captured
//! output, so a restart is invisible but for time). A Winch run that ends in a native stack
//! overflow or (after being CPU-bound) a timeout is re-run on Cranelift too, so the outcome never
//! depends on the tier. Both engines use the pooling allocator; each program keeps an
//! `InstancePre`, so a run costs a store, an instantiation from warm slots and the call.
//!
//! The engines' epoch is advanced by a single ticker thread; every store checks its *own*
//! wall-clock deadline when a tick reaches it, and otherwise yields to the executor. A run that
//! is still executing guest code at a tick is moved to the background lane: a separate runtime
//! whose threads run at a lower OS priority, so spinning programs never delay the HTTP workers
//! or short runs.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use wasmtime::{
    CacheStore, Caller, Enabled, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    OptLevel, PoolingAllocationConfig, Strategy, WasmBacktraceDetails,
};
use wasmtime_wasi::p1::WasiP1Ctx;

use super::check::{Unfit, check, link_error};
use super::outcome::RunError;
use super::stats::MeteredLimits;
use super::threads::{SPAWN_REFUSED, ThreadedRun, is_threaded};
use crate::config::{CompilerStrategy, Config};

/// Which compiler produced a program's machine code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Winch,
    Cranelift,
}

pub(super) struct StoreState {
    pub(super) wasi: WasiP1Ctx,
    pub(super) limits: MeteredLimits,
    /// The threaded run this store is one thread of (`None` for a single-threaded program).
    pub(super) threads: Option<Arc<ThreadedRun>>,
}

/// One engine with its WASI linker (preview 1 and wasi-threads' `thread-spawn`).
pub(super) struct Backend {
    pub(super) engine: Engine,
    pub(super) linker: Linker<StoreState>,
}

impl Backend {
    fn new(config: wasmtime::Config) -> anyhow::Result<Self> {
        let engine = Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("could not create the Wasmtime engine: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut StoreState| &mut s.wasi)
            .map_err(|e| anyhow::anyhow!("could not link WASI: {e}"))?;
        linker
            .func_wrap(
                "wasi",
                "thread-spawn",
                |caller: Caller<'_, StoreState>, start_arg: i32| -> i32 {
                    match &caller.data().threads {
                        Some(run) => run.clone().spawn(start_arg),
                        None => SPAWN_REFUSED,
                    }
                },
            )
            .map_err(|e| anyhow::anyhow!("could not link wasi-threads: {e}"))?;
        super::backtrace::add_to_linker(&mut linker)
            .map_err(|e| anyhow::anyhow!("could not link the backtrace import: {e}"))?;
        Ok(Self { engine, linker })
    }

    /// A threads module imports its (shared) memory, which each run creates: its instances are
    /// prepared per run ([`super::threads`]).
    fn prepare(&self, module: &Module) -> Result<Code, RunError> {
        if is_threaded(module) {
            return Ok(Code::Threaded(module.clone()));
        }
        self.linker
            .instantiate_pre(module)
            .map(Code::Plain)
            .map_err(|e| link_error(&e).into())
    }
}

/// A program's code, ready to run.
#[derive(Clone)]
pub(super) enum Code {
    /// A wasm32-wasip1 module: instantiated from warm pool slots.
    Plain(InstancePre<StoreState>),
    /// A wasm32-wasip1-threads module.
    Threaded(Module),
}

impl Code {
    fn module(&self) -> &Module {
        match self {
            Code::Plain(pre) => pre.module(),
            Code::Threaded(module) => module,
        }
    }
}

/// Upgrade state of a [`Program`] compiled with Winch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    NotStarted,
    Running,
    Done,
    Failed,
}

struct Compiled {
    tier: Tier,
    code: Code,
    /// The WebAssembly, kept while a Cranelift compile may still be wanted.
    wasm: Option<Arc<[u8]>>,
}

type UpgradeHook = Box<dyn FnOnce(&Module) + Send>;

/// A [`Program`] in the form [`Runner::load_serialized`] takes back.
pub struct Serialized {
    pub tier: Tier,
    /// Wasmtime's serialized module.
    pub module: Vec<u8>,
    /// The WebAssembly, while a Cranelift compile may still be wanted.
    pub wasm: Option<Arc<[u8]>>,
}

/// A compiled program, ready to instantiate; shared by every run of the same code.
pub struct Program {
    compiled: Mutex<Compiled>,
    upgrade: watch::Sender<Upgrade>,
    on_upgrade: Mutex<Option<UpgradeHook>>,
}

impl Program {
    fn new(tier: Tier, code: Code, wasm: Option<Arc<[u8]>>) -> Self {
        Self {
            compiled: Mutex::new(Compiled { tier, code, wasm }),
            upgrade: watch::Sender::new(Upgrade::NotStarted),
            on_upgrade: Mutex::new(None),
        }
    }

    pub(super) fn current(&self) -> (Tier, Code) {
        let c = self.compiled.lock().unwrap_or_else(PoisonError::into_inner);
        (c.tier, c.code.clone())
    }

    /// Whether the program may start threads (a wasm32-wasip1-threads module).
    pub fn is_threaded(&self) -> bool {
        matches!(self.current().1, Code::Threaded(_))
    }

    /// Roughly the memory this program holds: its compiled image (machine code and data),
    /// the copy-on-write memory image made of its data for runs, and the WebAssembly kept for
    /// a Cranelift compile.
    pub fn size_bytes(&self) -> usize {
        let c = self.compiled.lock().unwrap_or_else(PoisonError::into_inner);
        let range = c.code.module().image_range();
        let image = (range.end as usize).saturating_sub(range.start as usize);
        2 * image + c.wasm.as_ref().map_or(0, |w| w.len())
    }

    /// The compiler of the current code.
    pub fn tier(&self) -> Tier {
        self.current().0
    }

    /// The current machine code in Wasmtime's serialized form.
    pub fn serialize(&self) -> Result<Serialized, RunError> {
        let (tier, module, wasm) = {
            let c = self.compiled.lock().unwrap_or_else(PoisonError::into_inner);
            (c.tier, c.code.module().clone(), c.wasm.clone())
        };
        let bytes = module
            .serialize()
            .map_err(|e| RunError::Load(format!("could not serialize the module: {e:#}")))?;
        Ok(Serialized {
            tier,
            module: bytes,
            wasm,
        })
    }

    /// Registers `hook` to be called (on a blocking thread) with the Cranelift module once this
    /// Winch program is upgraded; the artifact cache uses it to replace its disk entry.
    pub fn on_upgrade(&self, hook: impl FnOnce(&Module) + Send + 'static) {
        *self
            .on_upgrade
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Box::new(hook));
    }

    /// Starts the Cranelift compile on a blocking thread, once per program.
    pub(super) fn start_upgrade(self: &Arc<Self>, cranelift: &Arc<Backend>) {
        let started = self.upgrade.send_if_modified(|state| {
            let start = *state == Upgrade::NotStarted;
            if start {
                *state = Upgrade::Running;
            }
            start
        });
        if !started {
            return;
        }
        let wasm = self
            .compiled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .wasm
            .clone();
        let Some(wasm) = wasm else {
            self.upgrade.send_replace(Upgrade::Failed);
            return;
        };
        let program = self.clone();
        let backend = cranelift.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = Module::new(&backend.engine, &wasm)
                .map_err(|e| RunError::Load(format!("{e:#}")))
                .and_then(|module| Ok((backend.prepare(&module)?, module)));
            match result {
                Ok((code, module)) => {
                    tracing::debug!(
                        ms = started.elapsed().as_millis() as u64,
                        "recompiled with Cranelift"
                    );
                    *program
                        .compiled
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Compiled {
                        tier: Tier::Cranelift,
                        code,
                        wasm: None,
                    };
                    let hook = program
                        .on_upgrade
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take();
                    if let Some(hook) = hook {
                        hook(&module);
                    }
                    program.upgrade.send_replace(Upgrade::Done);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "Cranelift recompile failed; staying on Winch");
                    program.upgrade.send_replace(Upgrade::Failed);
                }
            }
        });
    }

    /// Waits for a started upgrade; the Cranelift code, or `None` if it failed.
    pub(super) async fn upgraded(&self) -> Option<Code> {
        let mut rx = self.upgrade.subscribe();
        loop {
            let state = *rx.borrow_and_update();
            match state {
                Upgrade::Done => return Some(self.current().1),
                Upgrade::Failed | Upgrade::NotStarted => return None,
                Upgrade::Running => {}
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    }
}

/// Cranelift's incremental compilation cache: compiled functions by a hash of their IR, kept in
/// memory up to a byte budget (oldest out first). A Cranelift compile after a tier-up reuses the
/// standard library functions every program links in.
#[derive(Debug)]
struct IncrementalCache {
    inner: Mutex<IncrementalInner>,
    budget: usize,
}

#[derive(Debug, Default)]
struct IncrementalInner {
    map: HashMap<Vec<u8>, Vec<u8>>,
    order: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl IncrementalCache {
    fn new(budget: usize) -> Self {
        Self {
            inner: Mutex::default(),
            budget,
        }
    }
}

impl CacheStore for IncrementalCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.map.get(key).map(|v| Cow::Owned(v.clone()))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let size = key.len() + value.len();
        if size > self.budget {
            return false;
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = inner.map.insert(key.to_vec(), value) {
            inner.bytes -= key.len() + old.len();
        } else {
            inner.order.push_back(key.to_vec());
        }
        inner.bytes += size;
        while inner.bytes > self.budget {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(old) = inner.map.remove(&oldest) {
                inner.bytes -= oldest.len() + old.len();
            }
        }
        true
    }
}

/// Byte budget of the incremental compilation cache (~40 programs' worth of std functions).
const INCREMENTAL_CACHE_BYTES: usize = 32 << 20;

/// The process-wide Wasmtime engines, WASI linkers, epoch ticker and run lanes.
pub struct Runner {
    pub(super) winch: Option<Arc<Backend>>,
    pub(super) cranelift: Option<Arc<Backend>>,
    pub(super) strategy: CompilerStrategy,
    pub(super) tier_up_fuel: u64,
    pub(super) tick: Duration,
    /// What [`check`] holds a module to.
    memory_limit: usize,
    max_function_bytes: usize,
    pub(super) max_threads: u32,
    pub(super) ticker_stop: Arc<AtomicBool>,
    /// Free pooling-allocator slots; a run (a threaded run's main thread too) holds one permit.
    pub(super) slots: Arc<Semaphore>,
    /// The pool's further instance slots, for threads that threaded runs spawn: a spawn that
    /// finds none fails as natively when the OS refuses, and plain runs always find theirs.
    pub(super) thread_slots: Arc<Semaphore>,
    /// The background lane (`None` only while dropping).
    pub(super) background: Option<tokio::runtime::Runtime>,
    pub(super) background_handle: tokio::runtime::Handle,
}

/// Engine settings shared by both tiers: fuel, epochs, the stack limit and a pooling allocator
/// sized from the configuration.
fn engine_config(config: &Config, tier: Tier) -> wasmtime::Config {
    let mut wasm_config = wasmtime::Config::new();
    wasm_config
        .consume_fuel(true)
        .epoch_interruption(true)
        // wasm32-wasip1-threads programs (run/threads.rs); plain modules are unaffected.
        .wasm_threads(true)
        .shared_memory(true)
        .max_wasm_stack(config.max_wasm_stack)
        // Names and `file:line` in backtraces, from the line tables of programs built with
        // `backtrace: true`; modules without them (every other build) cost nothing more.
        .wasm_backtrace_details(WasmBacktraceDetails::Enable)
        .strategy(match tier {
            Tier::Winch => Strategy::Winch,
            Tier::Cranelift => Strategy::Cranelift,
        });
    if tier == Tier::Winch {
        // Winch compiles the host-to-wasm trampolines of every escaping function (for Rust: all
        // that are in the function table) with Cranelift; unoptimised they compile ~8% faster
        // overall, and they run once per call from the host.
        wasm_config.cranelift_opt_level(OptLevel::None);
    }
    let slots = config.pool_slots();
    // Every guest thread is an instance with its own table and stack; threaded programs import
    // their memory, so they take no memory slot.
    let threads = config.pool_thread_slots();
    // Linear memories may grow to the memory limit (rounded up to whole wasm pages, at most
    // 4 GiB); StoreLimits enforces the exact byte limit.
    let page = 64 << 10;
    let max_memory = config
        .memory_limit
        .div_ceil(page)
        .saturating_mul(page)
        .clamp(page, 1 << 32);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(threads)
        .total_memories(slots)
        .total_tables(threads)
        .total_stacks(threads)
        .max_memory_size(max_memory)
        // Reset a used memory by rewriting only its dirty pages (found with Linux's
        // PAGEMAP_SCAN, 6.7+) in the first 2 MiB (a program's stack, data and early heap)
        // instead of unmapping them, so the next run of a cached program takes no page faults.
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    wasm_config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    wasm_config
}

impl Runner {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let strategy = config.compiler;
        let winch = match strategy {
            CompilerStrategy::Tiered | CompilerStrategy::Winch => {
                Some(Arc::new(Backend::new(engine_config(config, Tier::Winch))?))
            }
            CompilerStrategy::Cranelift => None,
        };
        let cranelift = match strategy {
            CompilerStrategy::Tiered | CompilerStrategy::Cranelift => {
                let mut wasm_config = engine_config(config, Tier::Cranelift);
                wasm_config
                    .enable_incremental_compilation(Arc::new(IncrementalCache::new(
                        INCREMENTAL_CACHE_BYTES,
                    )))
                    .map_err(|e| {
                        anyhow::anyhow!("could not enable incremental compilation: {e}")
                    })?;
                Some(Arc::new(Backend::new(wasm_config)?))
            }
            CompilerStrategy::Winch => None,
        };

        let tick = config.epoch_tick();
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let stop = ticker_stop.clone();
        let engines: Vec<Engine> = [&winch, &cranelift]
            .into_iter()
            .flatten()
            .map(|b| b.engine.clone())
            .collect();
        // A plain thread, not a task: it must keep ticking even when every executor thread is
        // busy running guest code.
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                }
            })?;

        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let background = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("guest-background")
            .on_thread_start(lower_thread_priority)
            .enable_all()
            .build()?;
        let background_handle = background.handle().clone();
        Ok(Self {
            winch,
            cranelift,
            strategy,
            tier_up_fuel: config.tier_up_fuel,
            tick,
            memory_limit: config.memory_limit,
            max_function_bytes: config.max_function_bytes,
            max_threads: config.max_threads.max(1),
            ticker_stop,
            slots: Arc::new(Semaphore::new(config.pool_slots() as usize)),
            thread_slots: Arc::new(Semaphore::new(
                (config.pool_thread_slots() - config.pool_slots()) as usize,
            )),
            background: Some(background),
            background_handle,
        })
    }

    /// SHA-256 over the engines' compatibility hashes (Wasmtime's version, the compiler and
    /// every setting that shapes native code): serialized modules are only usable by an
    /// engine with the same hash.
    pub fn compatibility(&self) -> [u8; 32] {
        use std::hash::Hash;
        /// A `Hasher` feeding SHA-256, so the result is the same in every replica and release.
        struct Sha(sha2::Sha256);
        impl std::hash::Hasher for Sha {
            fn write(&mut self, bytes: &[u8]) {
                sha2::Digest::update(&mut self.0, bytes);
            }
            fn finish(&self) -> u64 {
                0
            }
        }
        let mut hasher = Sha(<sha2::Sha256 as sha2::Digest>::new());
        for backend in [&self.winch, &self.cranelift] {
            match backend {
                Some(b) => b.engine.precompile_compatibility_hash().hash(&mut hasher),
                None => 0u8.hash(&mut hasher),
            }
        }
        sha2::Digest::finalize(hasher.0).into()
    }

    /// The engine that compiles a new program (Winch unless the strategy is `cranelift`).
    pub fn first_tier(&self) -> Tier {
        match self.strategy {
            CompilerStrategy::Cranelift => Tier::Cranelift,
            CompilerStrategy::Tiered | CompilerStrategy::Winch => Tier::Winch,
        }
    }

    pub(super) fn backend(&self, tier: Tier) -> Option<&Arc<Backend>> {
        match tier {
            Tier::Winch => self.winch.as_ref(),
            Tier::Cranelift => self.cranelift.as_ref(),
        }
    }

    fn first_backend(&self) -> &Arc<Backend> {
        self.backend(self.first_tier())
            .expect("the first tier's engine exists")
    }

    /// Compiles `wasm` with the first tier. CPU-bound (10-300 ms): call it off the executor.
    pub fn compile(&self, wasm: Arc<[u8]>) -> Result<Program, RunError> {
        check(&wasm, self.memory_limit, self.max_function_bytes)?;
        let tier = self.first_tier();
        let backend = self.first_backend();
        // rustc's modules are valid: what Wasmtime refuses is over one of its limits.
        let module = Module::new(&backend.engine, &wasm).map_err(|e| {
            Unfit(format!(
                "the sandbox cannot load the compiled program: {e:#}"
            ))
        })?;
        let code = backend.prepare(&module)?;
        if let Code::Threaded(module) = &code {
            // Linked per run (its memory is); linked once here too, so that an import the
            // sandbox lacks is a compile error, as for a plain module.
            super::threads::prepare(backend, module, self.memory_limit, self.max_threads)
                .map_err(|e| link_error(&e))?;
        }
        let keep = self.strategy == CompilerStrategy::Tiered && tier == Tier::Winch;
        Ok(Program::new(tier, code, keep.then_some(wasm)))
    }

    /// Wasmtime's compiled object (an ELF file) for `wasm`, made by the engine that runs
    /// programs for long: Cranelift unless the strategy is `winch`. For listings, not for runs.
    pub fn machine_code(&self, wasm: &[u8]) -> Result<Vec<u8>, RunError> {
        // Only the size of functions matters for a listing: it is never run.
        check(wasm, usize::MAX, self.max_function_bytes)?;
        let backend = self
            .cranelift
            .as_ref()
            .unwrap_or_else(|| self.first_backend());
        backend
            .engine
            .precompile_module(wasm)
            .map_err(|e| RunError::Load(format!("{e:#}")))
    }

    /// Rebuilds a program from [`Program::serialize`]'s bytes. Fails (safely) if they were made
    /// by another Wasmtime version or engine configuration, or if `tier`'s engine is not in use.
    ///
    /// # Safety
    ///
    /// `bytes` must be exactly what `Program::serialize` returned in a process running this
    /// build (Wasmtime cannot check native code: arbitrary bytes could run arbitrary code).
    pub unsafe fn load_serialized(
        &self,
        tier: Tier,
        bytes: &[u8],
        wasm: Option<Arc<[u8]>>,
    ) -> Result<Program, RunError> {
        let backend = self
            .backend(tier)
            .ok_or_else(|| RunError::Load(format!("no {tier:?} engine in this configuration")))?;
        // SAFETY: guaranteed by this function's caller.
        let module = unsafe { Module::deserialize(&backend.engine, bytes) }
            .map_err(|e| RunError::Load(format!("{e:#}")))?;
        let code = backend.prepare(&module)?;
        let keep = self.strategy == CompilerStrategy::Tiered && tier == Tier::Winch;
        Ok(Program::new(tier, code, wasm.filter(|_| keep)))
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        if let Some(background) = self.background.take() {
            // Dropping a runtime may block, which is not allowed inside another runtime.
            background.shutdown_background();
        }
    }
}

/// Background-lane threads run at nice 10, so the OS prefers the HTTP workers and short runs.
pub(super) fn lower_thread_priority() {
    // SAFETY: setpriority has no memory-safety preconditions; on Linux, PRIO_PROCESS with id 0
    // applies to the calling thread only. Failure just leaves the priority unchanged.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}
