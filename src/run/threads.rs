//! Threaded programs (`wasm32-wasip1-threads`, the wasi-threads model): one shared memory per
//! run, and every guest thread, main included, an instance of the module on its own store and
//! its own OS thread. The guest's `wasi.thread-spawn` starts a thread at the module's
//! `wasi_thread_start` export; every thread's WASI context writes to the run's one capture.
//!
//! Limits hold for the whole program: one fuel budget (each store reports what it burned at
//! every epoch tick), one deadline, at most `max_threads` threads alive, and a shared memory no
//! larger than the memory limit plus [`STACK_ALLOWANCE`] per spawnable thread. A spawn that
//! cannot be had (the limit, the server's thread slots, an OS thread, an instance) returns
//! EAGAIN to the guest, as Linux's `clone` does, and the program goes on. The first ending
//! wins (main returning, `exit` or a trap in any thread, fuel, the deadline, the client going
//! away); then every thread is stopped and joined before the run returns:
//! - a thread in guest code stops at its next epoch check;
//! - a thread in a host call (a sleep, a read) when the call's future is dropped;
//! - a thread blocked in `memory.atomic.wait` cannot be interrupted in Wasmtime 48, but wakes
//!   when notified at its address. The host does not know it, so teardown notifies every
//!   address of the memory's resident pages (a waiter has read its address, so its page is
//!   resident), again until every thread is gone.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use wasmtime::{
    Engine, InstancePre, MemoryType, Module, SharedMemory, Store, StoreLimits, StoreLimitsBuilder,
    Trap, UpdateDeadline,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

use super::capture::{CaptureStream, StreamKind};
use super::engine::{Backend, Runner, StoreState, Tier, lower_thread_priority};
use super::execute::{Input, PROGRAM_NAME, RunOptions};
use super::outcome::{Outcome, RunError, RunOutput};
use super::stats::MeteredLimits;

/// WASI's EAGAIN, negated: what `thread-spawn` returns when a thread cannot be had (the
/// program's limit, the server's pool of thread slots, an OS thread); wasi-libc's
/// `pthread_create` then fails with EAGAIN, as Linux's `clone` does when it refuses.
pub(super) const SPAWN_REFUSED: i32 = -6;

/// Fuel a store may burn between write-backs of its counter. The epoch callback only *reads*
/// a store's fuel, and Cranelift code keeps the counter in a register across the epoch check:
/// the read is stale until the next fuel yield, which this interval bounds.
const FUEL_SLICE: u64 = 10_000_000;

const WASM_PAGE: u64 = 64 << 10;

/// Memory allowed per spawnable thread on top of the memory limit: std gives a spawned thread
/// a 2 MiB stack (native's default), `malloc`ed from the shared memory. Untouched, it costs
/// nothing.
pub const STACK_ALLOWANCE: u64 = 2 << 20;

/// Native stack of a guest thread's OS thread: guest code runs on Wasmtime's fiber stacks.
const HOST_STACK: usize = 256 << 10;

/// Whether `module` is a threads module (it imports a shared memory).
pub(super) fn is_threaded(module: &Module) -> bool {
    module
        .imports()
        .any(|i| i.ty().memory().is_some_and(|m| m.is_shared()))
}

/// Everything the threads of one run share.
pub(super) struct ThreadedRun {
    engine: Engine,
    pre: InstancePre<StoreState>,
    memory: SharedMemory,
    stdout: CaptureStream,
    stderr: CaptureStream,
    stdin: Input,
    args: Vec<String>,
    max_threads: u32,
    /// The server's instance slots for spawned threads, shared by every threaded run.
    thread_slots: Arc<Semaphore>,
    fuel_budget: u64,
    fuel_burned: AtomicU64,
    deadline: Instant,
    /// Set once the program has ended: every thread stops at its next epoch check, host call
    /// or (after a notify sweep) atomic wait.
    stop: AtomicBool,
    stop_tx: watch::Sender<bool>,
    /// The first ending wins; `done` wakes the controller.
    ending: Mutex<Option<Outcome>>,
    done: Condvar,
    alive: AtomicU32,
    next_tid: AtomicI32,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

enum Entry {
    Main,
    /// A spawned thread; `started` gets its tid once its instance is ready (nothing, if it
    /// cannot start).
    Thread {
        start_arg: i32,
        started: mpsc::SyncSender<i32>,
    },
}

/// Runs a threads module to its end; every OS thread it used is joined before this returns,
/// and, if the future is dropped, shortly after (the controller thread finishes the teardown).
pub(super) async fn run(
    runner: &Runner,
    backend: &Backend,
    module: &Module,
    opts: &RunOptions,
    tier: Tier,
) -> Result<RunOutput, RunError> {
    let max_threads = runner.max_threads;
    let (memory, pre) = prepare(backend, module, opts.memory_limit, max_threads)
        .map_err(|e| RunError::Setup(format!("{e:#}")))?;
    // Main's instance takes a pool slot as a plain run's does; spawned threads take theirs
    // from `thread_slots`.
    let main_slot = runner
        .slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let live = |stream| opts.live.clone().map(|sink| (sink, stream));
    let run = Arc::new(ThreadedRun {
        engine: backend.engine.clone(),
        pre,
        memory,
        stdout: CaptureStream::new(opts.output_limit, live(StreamKind::Stdout)),
        stderr: CaptureStream::new(opts.output_limit, live(StreamKind::Stderr)),
        stdin: opts.stdin.clone(),
        args: opts.args.clone(),
        max_threads,
        thread_slots: runner.thread_slots.clone(),
        fuel_budget: opts.fuel,
        fuel_burned: AtomicU64::new(0),
        deadline: Instant::now() + opts.timeout,
        stop: AtomicBool::new(false),
        stop_tx: watch::Sender::new(false),
        ending: Mutex::new(None),
        done: Condvar::new(),
        alive: AtomicU32::new(1),
        next_tid: AtomicI32::new(1),
        handles: Mutex::new(Vec::new()),
    });
    let (tx, rx) = oneshot::channel();
    let controller = run.clone();
    let grace = runner.tick * 2;
    std::thread::Builder::new()
        .name("guest-controller".into())
        .stack_size(HOST_STACK)
        .spawn(move || {
            let _ = tx.send(controller.control(main_slot, grace));
        })
        .map_err(|e| RunError::Setup(format!("could not start a thread: {e}")))?;
    let _end_on_drop = EndOnDrop(run.clone());
    let outcome = rx
        .await
        .map_err(|_| RunError::Setup("the threaded run's controller stopped".into()))?;
    let fuel_consumed = run.fuel_burned.load(Ordering::Relaxed).min(opts.fuel);
    Ok(outcome.into_output(opts, &run.stdout, &run.stderr, fuel_consumed, tier))
}

/// Ends the run when the future awaiting it is dropped (client gone, `/live` killed).
struct EndOnDrop(Arc<ThreadedRun>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end(Outcome::Other("the run was cancelled".into()));
    }
}

/// The run's memory (bounded by the limit, with the stack allowance) and the instance
/// template that imports it.
pub(super) fn prepare(
    backend: &Backend,
    module: &Module,
    memory_limit: usize,
    max_threads: u32,
) -> wasmtime::Result<(SharedMemory, InstancePre<StoreState>)> {
    let (import_module, import_name, ty) = module
        .imports()
        .find_map(|i| {
            let ty = i.ty().memory()?.clone();
            ty.is_shared().then(|| (i.module(), i.name(), ty))
        })
        .ok_or_else(|| wasmtime::format_err!("the module imports no shared memory"))?;
    let bytes = memory_limit as u64 + u64::from(max_threads - 1) * STACK_ALLOWANCE;
    let limit_pages = (bytes / WASM_PAGE).min(1 << 16);
    let max = ty.maximum().unwrap_or(limit_pages).min(limit_pages);
    wasmtime::ensure!(
        ty.minimum() <= max,
        "the program needs {} bytes of memory at start; the limit is {memory_limit}",
        ty.minimum() * WASM_PAGE
    );
    // Both fit in u32: at most 65 536 pages.
    let memory = SharedMemory::new(
        &backend.engine,
        MemoryType::shared(ty.minimum() as u32, max as u32),
    )?;
    // The memory is per run, so the linker that provides it is too (~45 µs).
    let mut linker = backend.linker.clone();
    let store = Store::new(
        &backend.engine,
        StoreState {
            wasi: WasiCtxBuilder::new().build_p1(),
            limits: MeteredLimits::new(StoreLimits::default(), None),
            threads: None,
        },
    );
    linker.define(&store, import_module, import_name, memory.clone())?;
    let pre = linker.instantiate_pre(module)?;
    Ok((memory, pre))
}

impl ThreadedRun {
    fn lock_ending(&self) -> MutexGuard<'_, Option<Outcome>> {
        self.ending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records how the program ended (if nothing did before) and stops every thread.
    fn end(&self, outcome: Outcome) {
        let mut ending = self.lock_ending();
        if ending.is_none() {
            *ending = Some(outcome);
            self.stdout.close();
            self.stderr.close();
        }
        self.stop.store(true, Ordering::SeqCst);
        self.stop_tx.send_replace(true);
        self.done.notify_all();
    }

    /// The controller: starts main, waits for the ending (or the deadline, which a thread in
    /// a host call or an atomic wait never checks), stops and joins every thread.
    fn control(self: Arc<Self>, slot: OwnedSemaphorePermit, grace: Duration) -> Outcome {
        if let Err(e) = self.start(Entry::Main, slot) {
            self.alive.fetch_sub(1, Ordering::SeqCst);
            self.end(Outcome::Other(format!("could not start a thread: {e}")));
        }
        let hard_deadline = self.deadline + grace;
        {
            let mut ending = self.lock_ending();
            while ending.is_none() {
                let Some(left) = hard_deadline.checked_duration_since(Instant::now()) else {
                    break;
                };
                ending = self
                    .done
                    .wait_timeout(ending, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        self.end(Outcome::Timeout);
        self.teardown();
        let handles =
            std::mem::take(&mut *self.handles.lock().unwrap_or_else(PoisonError::into_inner));
        for handle in handles {
            let _ = handle.join();
        }
        self.lock_ending()
            .take()
            .unwrap_or_else(|| Outcome::Other("the run ended without an outcome".into()))
    }

    /// Starts an OS thread for a guest thread (already counted in `alive`), which holds
    /// `slot` until its instance is gone.
    fn start(self: &Arc<Self>, entry: Entry, slot: OwnedSemaphorePermit) -> std::io::Result<()> {
        let run = self.clone();
        let handle = std::thread::Builder::new()
            .name("guest-thread".into())
            .stack_size(HOST_STACK)
            .spawn(move || run.thread_main(entry, slot))?;
        self.handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(handle);
        Ok(())
    }

    /// `wasi.thread-spawn`: a new instance running `wasi_thread_start(tid, start_arg)`; the
    /// tid, or a negative errno when the thread cannot be had or after the end.
    pub(super) fn spawn(self: Arc<Self>, start_arg: i32) -> i32 {
        let max = self.max_threads;
        let admitted = !self.stop.load(Ordering::SeqCst)
            && self
                .alive
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok();
        if !admitted {
            return SPAWN_REFUSED;
        }
        let Ok(slot) = self.thread_slots.clone().try_acquire_owned() else {
            self.alive.fetch_sub(1, Ordering::SeqCst);
            return SPAWN_REFUSED;
        };
        let (started, ready) = mpsc::sync_channel(1);
        if self
            .start(Entry::Thread { start_arg, started }, slot)
            .is_err()
        {
            self.alive.fetch_sub(1, Ordering::SeqCst);
            return SPAWN_REFUSED;
        }
        // Return once the thread's instance exists, so that a thread that cannot start fails
        // this spawn rather than the program (as `clone` fails before the thread runs).
        ready.recv().unwrap_or(SPAWN_REFUSED)
    }

    /// The body of every guest thread's OS thread.
    fn thread_main(self: Arc<Self>, entry: Entry, slot: OwnedSemaphorePermit) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build();
        match (runtime, entry) {
            (Ok(rt), entry) => rt.block_on(self.clone().guest_thread(entry, slot)),
            (Err(e), Entry::Main) => self.end(Outcome::Other(format!("no runtime: {e}"))),
            // Its spawn fails.
            (Err(_), Entry::Thread { .. }) => {}
        }
        self.alive.fetch_sub(1, Ordering::SeqCst);
        // Wake the controller, which waits for the last thread during teardown.
        let _guard = self.lock_ending();
        self.done.notify_all();
    }

    /// Books `burned` units of fuel; whether the budget is spent.
    fn burn(&self, burned: u64) -> bool {
        self.fuel_burned.fetch_add(burned, Ordering::Relaxed) + burned >= self.fuel_budget
    }

    /// A store for one thread, starting with what is left of the budget; `mark` is its fuel
    /// when it last reported.
    fn new_store(self: &Arc<Self>, mark: &Arc<AtomicU64>) -> wasmtime::Result<Store<StoreState>> {
        let mut wasi = WasiCtxBuilder::new();
        match &self.stdin {
            Input::Bytes(bytes) => wasi.stdin(MemoryInputPipe::new(bytes.clone())),
            Input::Live(live) => wasi.stdin(live.clone()),
        };
        // wasm has no `available_parallelism`: tell rayon how many workers native would use.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
        let rayon = cores.min(self.max_threads - 1).max(1);
        let wasi = wasi
            .env("RAYON_NUM_THREADS", rayon.to_string())
            .arg(PROGRAM_NAME)
            .args(&self.args)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stdout(self.stdout.clone())
            .stderr(self.stderr.clone())
            .build_p1();
        let limits = StoreLimitsBuilder::new()
            .instances(1)
            .memories(10)
            .tables(10)
            .build();
        let fuel = self
            .fuel_budget
            .saturating_sub(self.fuel_burned.load(Ordering::Relaxed));
        mark.store(fuel, Ordering::Relaxed);
        let mut store = Store::new(
            &self.engine,
            StoreState {
                wasi,
                limits: MeteredLimits::new(limits, None),
                threads: Some(self.clone()),
            },
        );
        store.limiter(|s| &mut s.limits);
        store.set_fuel(fuel)?;
        store.fuel_async_yield_interval(Some(FUEL_SLICE))?;
        store.set_epoch_deadline(1);
        let run = self.clone();
        let mark = mark.clone();
        let mut ticks = 0u32;
        store.epoch_deadline_callback(move |ctx| {
            // As a plain run moves to the background lane: a thread still computing at its
            // second tick drops to nice 10, so spinning threads never delay the HTTP workers.
            ticks += 1;
            if ticks == 2 {
                lower_thread_priority();
            }
            if run.stop.load(Ordering::Relaxed) {
                return Ok(UpdateDeadline::Interrupt);
            }
            if Instant::now() >= run.deadline {
                run.end(Outcome::Timeout);
                return Ok(UpdateDeadline::Interrupt);
            }
            let now = ctx.get_fuel()?;
            let before = mark.swap(now, Ordering::Relaxed);
            if run.burn(before.saturating_sub(now)) {
                run.end(Outcome::Trapped(Trap::OutOfFuel));
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::Continue(1))
        });
        Ok(store)
    }

    /// One guest thread, on its own store; `_slot` (its pool slot) is released after the
    /// store is dropped.
    async fn guest_thread(self: Arc<Self>, entry: Entry, _slot: OwnedSemaphorePermit) {
        let mark = Arc::new(AtomicU64::new(0));
        let mut store = match (self.new_store(&mark), &entry) {
            (Ok(store), _) => store,
            (Err(e), Entry::Main) => return self.end(Outcome::Other(format!("{e:#}"))),
            // Its spawn fails (`started` is dropped).
            (Err(_), Entry::Thread { .. }) => return,
        };
        let mut stop = self.stop_tx.subscribe();
        let result = {
            let pre = self.pre.clone();
            let store = &mut store;
            let run = self.clone();
            // What `main` returned; `None` for a spawned thread.
            let call = async move {
                let instance = pre.instantiate_async(&mut *store).await;
                match entry {
                    Entry::Main => {
                        let instance = instance?;
                        // A program's stub, or a test harness's (a command module's) `_start`.
                        if let Some(main) = instance.get_func(&mut *store, "__entry") {
                            let main = main.typed::<(), i32>(&*store)?;
                            main.call_async(&mut *store, ()).await.map(Some)
                        } else {
                            let start = instance.get_typed_func::<(), ()>(&mut *store, "_start")?;
                            start.call_async(&mut *store, ()).await.map(|()| Some(0))
                        }
                    }
                    Entry::Thread { start_arg, started } => {
                        let start = instance.and_then(|instance| {
                            instance
                                .get_typed_func::<(i32, i32), ()>(&mut *store, "wasi_thread_start")
                        });
                        let start = match start {
                            Ok(start) => start,
                            Err(e) => {
                                tracing::warn!(error = %e, "a guest thread could not start; its spawn fails");
                                return Ok(None);
                            }
                        };
                        let tid = run.next_tid.fetch_add(1, Ordering::Relaxed);
                        if started.send(tid).is_err() {
                            return Ok(None);
                        }
                        start.call_async(&mut *store, (tid, start_arg)).await?;
                        Ok(None)
                    }
                }
            };
            tokio::select! {
                result = call => Some(result),
                _ = stop.wait_for(|stopped| *stopped) => None,
            }
        };
        let before = mark.load(Ordering::Relaxed);
        self.burn(before.saturating_sub(store.get_fuel().unwrap_or(0)));
        match result {
            // Stopped from outside: the ending is already recorded.
            None => {}
            // Returning from `main` ends the program, whatever its threads are doing.
            Some(Ok(Some(code))) => self.end(Outcome::Exited(code)),
            Some(Ok(None)) => {}
            // A trap or `exit` in any thread ends every thread.
            Some(Err(e)) => self.end(Outcome::from_result(Err(e))),
        }
    }

    /// Copies `bytes` into the shared memory at `offset`; whether they fit.
    pub(super) fn write_memory(&self, offset: usize, bytes: &[u8]) -> bool {
        let data = self.memory.data();
        let Some(target) = offset
            .checked_add(bytes.len())
            .and_then(|end| data.get(offset..end))
        else {
            return false;
        };
        // SAFETY: `target` is `bytes.len()` bytes of the memory's mapping, alive while `self`
        // holds the memory. Other guest threads may access them at the same time, as they may
        // any byte of a shared memory; the guest passed a buffer of its own.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                UnsafeCell::raw_get(target.as_ptr()),
                bytes.len(),
            )
        };
        true
    }

    /// Waits for every guest thread to stop, waking those blocked in an atomic wait.
    fn teardown(&self) {
        // One extra tick makes every running thread reach its epoch callback, which sees
        // `stop`, now rather than at the next real tick.
        self.engine.increment_epoch();
        let started = Instant::now();
        loop {
            {
                let ending = self.lock_ending();
                if self.alive.load(Ordering::SeqCst) > 0 {
                    let _ = self.done.wait_timeout(ending, Duration::from_millis(1));
                }
            }
            if self.alive.load(Ordering::SeqCst) == 0 {
                return;
            }
            // Should a waiter's page have been swapped out, fall back to every page; threads
            // still in guest code may just not have been scheduled yet, hence the delay.
            let all = started.elapsed() >= Duration::from_millis(100);
            notify_waiters(&self.memory, all);
            self.engine.increment_epoch();
        }
    }
}

/// `memory.atomic.notify` on every aligned address of the resident pages of `memory` (found
/// with `mincore`), or of all its pages when `all` or when `mincore` fails.
fn notify_waiters(memory: &SharedMemory, all: bool) {
    const OS_PAGE: usize = 4096;
    let size = memory.data_size();
    let mut resident = vec![1u8; size.div_ceil(OS_PAGE)];
    if !all {
        let base = memory.data().as_ptr() as *mut libc::c_void;
        // SAFETY: `base..base + size` is the memory's mapping (page-aligned, alive as long as
        // `memory`); mincore only reads page tables and writes one byte per page to `resident`.
        if unsafe { libc::mincore(base, size, resident.as_mut_ptr()) } != 0 {
            resident.fill(1);
        }
    }
    for (page, flags) in resident.iter().enumerate() {
        if flags & 1 == 0 {
            continue;
        }
        let start = (page * OS_PAGE) as u64;
        let end = (start + OS_PAGE as u64).min(size as u64);
        for addr in (start..end).step_by(4) {
            let _ = memory.atomic_notify(addr, u32::MAX);
        }
    }
}
