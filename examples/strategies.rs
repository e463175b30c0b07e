//! Measures how long Wasmtime needs to turn a freshly built program into machine code under each
//! compile strategy, and how fast the resulting code runs. Used to pick the defaults recorded in
//! BENCHMARKS.md; run with `cargo run --release --example strategies` (`-- --compile-only`:
//! only the compile tables).
//!
//! Every program is built once with the service's own `rustc` invocation. Each variant differs in
//! its code (a constant used by `main`), not only in a comment, so that an incremental cache
//! cannot hit on the user's own functions.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasm_playground::build::compiler::{rustc_args, source_file};
use wasm_playground::build::options::Target;
use wasm_playground::build::{CompileOptions, Mode, Toolchain};
use wasmtime::{CacheStore, Engine, Module, OptLevel, Strategy};

const HELLO: &str = include_str!("../tests/fixtures/bench/hello.rs");
const MEDIUM: &str = include_str!("../tests/fixtures/bench/medium.rs");
const SPIN: &str = include_str!("../tests/fixtures/bench/cpu.rs");

#[derive(Debug, Default)]
struct MemStore {
    map: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    hits: AtomicUsize,
    misses: AtomicUsize,
}

impl CacheStore for MemStore {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let got = self.map.lock().unwrap().get(key).cloned();
        match &got {
            Some(_) => self.hits.fetch_add(1, Ordering::Relaxed),
            None => self.misses.fetch_add(1, Ordering::Relaxed),
        };
        got.map(Cow::Owned)
    }
    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        self.map.lock().unwrap().insert(key.to_vec(), value);
        true
    }
}

fn engine(strategy: &str, store: Option<Arc<MemStore>>) -> Engine {
    let mut c = wasmtime::Config::new();
    c.consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(1 << 20);
    match strategy {
        "winch" => {
            c.strategy(Strategy::Winch);
        }
        "winch-noaddrmap" => {
            c.strategy(Strategy::Winch).generate_address_map(false);
        }
        "winch-O0-trampolines" => {
            c.strategy(Strategy::Winch)
                .cranelift_opt_level(OptLevel::None);
        }
        "winch-serial" => {
            c.strategy(Strategy::Winch).parallel_compilation(false);
        }
        "winch-O0-trampolines-no-unwind-info" => {
            c.strategy(Strategy::Winch)
                .cranelift_opt_level(OptLevel::None)
                .native_unwind_info(false);
        }
        "cranelift-O0" => {
            c.cranelift_opt_level(OptLevel::None);
        }
        _ => {}
    }
    if let Some(store) = store {
        c.enable_incremental_compilation(store).unwrap();
    }
    Engine::new(&c).unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// CPU time (user + system) of the whole process so far, in ms: less sensitive than wall time to
/// other load on a shared machine.
fn cpu_ms() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we pass and has no other preconditions.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// `code` with a distinct constant so that `main`'s machine code differs between variants.
fn variant(code: &str, i: usize) -> String {
    format!("// variant {i}\nconst VARIANT: u64 = {i};\n{code}").replacen(
        "fn main() {",
        "fn main() {\n    std::hint::black_box(VARIANT);",
        1,
    )
}

/// Builds `code` with the service's `rustc` command line (without its sandbox).
fn build(rustc: &std::path::Path, code: &str, mode: Mode) -> Vec<u8> {
    let opts = CompileOptions {
        mode,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("src/main.rs"),
        source_file(code, Some(Target::Wasip1)),
    )
    .unwrap();
    let started = Instant::now();
    let (args, output) = rustc_args(&opts, Target::Wasip1, dir.path(), "src/main.rs");
    let out = std::process::Command::new(rustc)
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(dir.path().join(output)).unwrap();
    eprintln!("  rustc {:.0} ms, {} bytes", ms(started), bytes.len());
    bytes
}

fn run_entry(engine: &Engine, module: &Module) -> f64 {
    let mut linker = wasmtime::Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut wasmtime_wasi::p1::WasiP1Ctx| s)
        .unwrap();
    let wasi = wasmtime_wasi::WasiCtxBuilder::new().build_p1();
    let mut store = wasmtime::Store::new(engine, wasi);
    let _ = store.set_fuel(u64::MAX / 2); // an error when fuel is off
    store.set_epoch_deadline(u64::MAX / 2);
    let instance = linker.instantiate(&mut store, module).unwrap();
    let entry = instance
        .get_typed_func::<(), i32>(&mut store, "__entry")
        .unwrap();
    let started = Instant::now();
    entry.call(&mut store, ()).unwrap();
    ms(started)
}

/// Hit rate and compile time of `wasm` with an incremental cache that already holds every
/// function of `warm` (other programs), under Cranelift `strategy`.
fn warmed_by(strategy: &str, warm: &[Vec<u8>], wasms: &[Vec<u8>]) -> (f64, f64, f64) {
    let store = Arc::new(MemStore::default());
    let e = engine(strategy, Some(store.clone()));
    for w in warm {
        Module::new(&e, w).unwrap();
    }
    let (mut times, mut cpu, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    for w in wasms {
        let h0 = store.hits.load(Ordering::Relaxed);
        let m0 = store.misses.load(Ordering::Relaxed);
        let (t, c) = (Instant::now(), cpu_ms());
        Module::new(&e, w).unwrap();
        times.push(ms(t));
        cpu.push(cpu_ms() - c);
        let hits = store.hits.load(Ordering::Relaxed) - h0;
        let misses = store.misses.load(Ordering::Relaxed) - m0;
        rates.push(100.0 * hits as f64 / (hits + misses) as f64);
    }
    (median(times), median(cpu), median(rates))
}

fn main() {
    let compile_only = std::env::args().any(|a| a == "--compile-only");
    let rustc = Toolchain::detect("rustc").unwrap().rustc;
    let n = 7;
    let mut rows = Vec::new();
    // The samples the tests run: a cache warmed by all of them stands for a server that has
    // compiled many different programs.
    let mut samples: Vec<_> = std::fs::read_dir("tests/fixtures/samples")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    samples.sort();
    eprintln!("building {} samples", samples.len());
    let samples: Vec<Vec<u8>> = samples
        .iter()
        .map(|p| build(&rustc, &std::fs::read_to_string(p).unwrap(), Mode::Debug))
        .collect();
    for (name, code) in [("hello", HELLO), ("medium", MEDIUM)] {
        eprintln!("building {n} variants of {name}");
        let wasms: Vec<Vec<u8>> = (0..n)
            .map(|i| build(&rustc, &variant(code, i), Mode::Debug))
            .collect();
        for strategy in [
            "cranelift",
            "cranelift-O0",
            "winch",
            "winch-O0-trampolines",
            "winch-noaddrmap",
            "winch-serial",
            "winch-O0-trampolines-no-unwind-info",
        ] {
            let e = engine(strategy, None);
            let mut cpu = Vec::new();
            let times = wasms
                .iter()
                .map(|w| {
                    let t = Instant::now();
                    let c = cpu_ms();
                    Module::new(&e, w).unwrap();
                    cpu.push(cpu_ms() - c);
                    ms(t)
                })
                .collect();
            rows.push((
                name,
                strategy.to_string(),
                median(times),
                format!("CPU {:.1} ms", median(cpu)),
            ));
        }
        // Incremental cache: empty each time (pure overhead), then warmed by variant 0 of the
        // same program, then warmed by the *other* program only.
        let times = wasms
            .iter()
            .map(|w| {
                let e = engine("cranelift", Some(Arc::default()));
                let t = Instant::now();
                Module::new(&e, w).unwrap();
                ms(t)
            })
            .collect();
        rows.push((
            name,
            "incremental, cold".into(),
            median(times),
            String::new(),
        ));
        let store = Arc::new(MemStore::default());
        let e = engine("cranelift", Some(store.clone()));
        Module::new(&e, &wasms[0]).unwrap();
        let (h0, m0) = (
            store.hits.load(Ordering::Relaxed),
            store.misses.load(Ordering::Relaxed),
        );
        let times = wasms[1..]
            .iter()
            .map(|w| {
                let t = Instant::now();
                Module::new(&e, w).unwrap();
                ms(t)
            })
            .collect();
        let hits = store.hits.load(Ordering::Relaxed) - h0;
        let misses = store.misses.load(Ordering::Relaxed) - m0;
        let bytes: usize = store
            .map
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        rows.push((
            name,
            "incremental, warm (same program)".into(),
            median(times),
            format!(
                "{:.1}% hits, store {} KiB",
                100.0 * hits as f64 / (hits + misses) as f64,
                bytes >> 10
            ),
        ));
        let other = if name == "hello" { MEDIUM } else { HELLO };
        let other_wasm = build(&rustc, &variant(other, 99), Mode::Debug);
        let times = wasms
            .iter()
            .map(|w| {
                let store = Arc::new(MemStore::default());
                let e = engine("cranelift", Some(store.clone()));
                Module::new(&e, &other_wasm).unwrap();
                let h0 = store.hits.load(Ordering::Relaxed);
                let m0 = store.misses.load(Ordering::Relaxed);
                let t = Instant::now();
                Module::new(&e, w).unwrap();
                let took = ms(t);
                let hits = store.hits.load(Ordering::Relaxed) - h0;
                let misses = store.misses.load(Ordering::Relaxed) - m0;
                (took, 100.0 * hits as f64 / (hits + misses) as f64)
            })
            .collect::<Vec<_>>();
        let hit_rate = times[0].1;
        rows.push((
            name,
            "incremental, warmed by the other program".into(),
            median(times.into_iter().map(|t| t.0).collect()),
            format!("{hit_rate:.1}% hits"),
        ));
        for strategy in ["cranelift", "cranelift-O0"] {
            let (wall, cpu, hits) = warmed_by(strategy, &samples, &wasms);
            rows.push((
                name,
                format!(
                    "{strategy} + incremental, warmed by {} samples",
                    samples.len()
                ),
                wall,
                format!("CPU {cpu:.1} ms, {hits:.1}% hits"),
            ));
        }
        // Loading an already compiled module.
        let e = engine("cranelift", None);
        let module = Module::new(&e, &wasms[0]).unwrap();
        let bytes = module.serialize().unwrap();
        let path = std::env::temp_dir().join(format!("strategies-{name}.cwasm"));
        std::fs::write(&path, &bytes).unwrap();
        let times = (0..20)
            .map(|_| {
                let t = Instant::now();
                // SAFETY: the file was written just above by this process from this engine.
                unsafe { Module::deserialize_file(&e, &path) }.unwrap();
                ms(t)
            })
            .collect();
        rows.push((
            name,
            "Module::deserialize_file".into(),
            median(times),
            format!("{} KiB", bytes.len() >> 10),
        ));
        let _ = std::fs::remove_file(&path);
    }

    println!("\n| program | strategy | module compile ms (median) | note |");
    println!("|---|---|---|---|");
    for (name, strategy, t, note) in &rows {
        println!("| {name} | {strategy} | {t:.1} | {note} |");
    }

    if compile_only {
        return;
    }

    // Instantiate + run hello world: on-demand allocation and `Linker::instantiate` against the
    // pooling allocator and a prepared `InstancePre` (what the service does for a cached program).
    println!("\n| hello world, instantiate + run | µs (median of 500) |");
    println!("|---|---|");
    let wasm = build(&rustc, HELLO, Mode::Debug);
    for pooling in [false, true] {
        let mut c = wasmtime::Config::new();
        c.consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(1 << 20);
        c.strategy(Strategy::Winch);
        if pooling {
            let mut pool = wasmtime::PoolingAllocationConfig::new();
            pool.total_core_instances(32)
                .total_memories(32)
                .total_tables(32)
                .total_stacks(32)
                .max_memory_size(10 << 20);
            c.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let e = Engine::new(&c).unwrap();
        let module = Module::new(&e, &wasm).unwrap();
        let mut linker = wasmtime::Linker::new(&e);
        wasmtime_wasi::p1::add_to_linker_sync(
            &mut linker,
            |s: &mut wasmtime_wasi::p1::WasiP1Ctx| s,
        )
        .unwrap();
        let pre = linker.instantiate_pre(&module).unwrap();
        let times: Vec<f64> = (0..500)
            .map(|_| {
                let t = Instant::now();
                let wasi = wasmtime_wasi::WasiCtxBuilder::new().build_p1();
                let mut store = wasmtime::Store::new(&e, wasi);
                store.set_fuel(1 << 40).unwrap();
                store.set_epoch_deadline(1 << 40);
                let instance = if pooling {
                    pre.instantiate(&mut store).unwrap()
                } else {
                    linker.instantiate(&mut store, &module).unwrap()
                };
                let entry = instance
                    .get_typed_func::<(), i32>(&mut store, "__entry")
                    .unwrap();
                entry.call(&mut store, ()).unwrap();
                drop(store);
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        println!(
            "| {} | {:.1} |",
            if pooling {
                "pooling allocator + InstancePre"
            } else {
                "on-demand allocator + Linker::instantiate"
            },
            median(times)
        );
    }

    // What fuel metering and epoch interruption cost, per compiler (debug build of the
    // CPU-bound program).
    println!(
        "\n| CPU-bound program, debug | compiler | fuel | epochs | run ms (median of 3) | vs none |"
    );
    println!("|---|---|---|---|---|---|");
    let wasm = build(&rustc, SPIN, Mode::Debug);
    for strategy in ["cranelift", "winch"] {
        let mut base = 0.0;
        for (fuel, epochs) in [(false, false), (false, true), (true, false), (true, true)] {
            let mut c = wasmtime::Config::new();
            c.consume_fuel(fuel)
                .epoch_interruption(epochs)
                .max_wasm_stack(1 << 20);
            if strategy == "winch" {
                c.strategy(Strategy::Winch);
            }
            let e = Engine::new(&c).unwrap();
            let module = Module::new(&e, &wasm).unwrap();
            let t = median((0..3).map(|_| run_entry(&e, &module)).collect());
            if !fuel && !epochs {
                base = t;
            }
            println!(
                "| debug | {strategy} | {} | {} | {t:.0} | {:.2}x |",
                if fuel { "on" } else { "off" },
                if epochs { "on" } else { "off" },
                t / base
            );
        }
    }

    // Speed of the generated code: a CPU-bound program, debug and release builds.
    println!("\n| CPU-bound program | strategy | run ms (median of 3) |");
    println!("|---|---|---|");
    for mode in [Mode::Debug, Mode::Release] {
        let wasm = build(&rustc, SPIN, mode);
        for strategy in ["cranelift", "cranelift-O0", "winch"] {
            let e = engine(strategy, None);
            let module = Module::new(&e, &wasm).unwrap();
            let t = median((0..3).map(|_| run_entry(&e, &module)).collect());
            println!("| {mode:?} | {strategy} | {t:.0} |");
        }
    }
}
