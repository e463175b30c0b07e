//! End-to-end benchmark: starts the real server as a child process on a loopback port, drives it
//! over HTTP with a real client (reqwest), and prints one table. Run it with
//!
//! ```sh
//! cargo run --release --example bench
//! ```
//!
//! Options (after `--`):
//! - `--server PATH`: benchmark another build of `wasm-playground` (e.g. an older commit's)
//!   instead of this one;
//! - `--env KEY=VALUE` (repeatable): extra environment for the server, e.g.
//!   `--env WASM_PLAYGROUND_COMPILER=cranelift`;
//! - `--cold N`: unique programs per kind for the cold rows (default 11);
//! - `--cold-only`: only the cold rows (and the peak RSS);
//! - `--seconds S`: length of each throughput / fairness phase (default 3);
//! - `--case NAME` (repeatable): run only the named case, each on a server of its own:
//!   - `threads-fairness`: warm hello world alone, then while 8 clients each keep a program
//!     spinning 16 threads running (fuel-bounded: `--fuel 2000000000` on that server);
//!   - `threads-split`: a CPU-bound program split over 2 threads against 1 thread (and the
//!     same work in a program without threads), measured alternately;
//!   - `threads-hello`: compile and run cost of a threaded hello world against the plain one,
//!     measured alternately.
//! - `--uncached S`: also measure uncached throughput, 16 clients each sending distinct hello
//!   worlds for S seconds (0, the default, skips it). All clients are 127.0.0.1, so this lifts
//!   the server's per-client compile limits (`CLIENT_COMPILE_RATE=0`, `CLIENT_MAX_COMPILES` =
//!   cores) unless `--env` sets them.
//!
//! The server gets a fresh, empty cache directory, so "cold" means never seen. Every request
//! loop is bounded in count or time, and only 127.0.0.1 is contacted.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wasm_playground::build::Toolchain;
use wasm_playground::build::compiler::source_file;
use wasm_playground::build::options::Target;

const HELLO: &str = include_str!("../tests/fixtures/bench/hello.rs");
const MEDIUM: &str = include_str!("../tests/fixtures/bench/medium.rs");
const CPU: &str = include_str!("../tests/fixtures/bench/cpu.rs");
const SPLIT: &str = include_str!("../tests/fixtures/bench/split.rs");
/// Runs until the server's wall-clock limit stops it.
const SPIN: &str =
    "fn main() { let mut i = 0u64; loop { i = std::hint::black_box(i.wrapping_add(1)); } }";

#[derive(Clone)]
struct Args {
    server: Option<PathBuf>,
    env: Vec<(String, String)>,
    cold: usize,
    cold_only: bool,
    seconds: f64,
    cases: Vec<String>,
    uncached: f64,
}

/// The cases `--case` may name.
const CASES: [&str; 3] = ["threads-fairness", "threads-split", "threads-hello"];

fn parse_args() -> Args {
    let mut args = Args {
        server: None,
        env: Vec::new(),
        cold: 11,
        cold_only: false,
        seconds: 3.0,
        cases: Vec::new(),
        uncached: 0.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--server" => args.server = Some(PathBuf::from(value())),
            "--env" => {
                let kv = value();
                let (k, v) = kv.split_once('=').expect("--env KEY=VALUE");
                args.env.push((k.into(), v.into()));
            }
            "--cold" => args.cold = value().parse().expect("--cold N"),
            "--cold-only" => args.cold_only = true,
            "--seconds" => args.seconds = value().parse().expect("--seconds S"),
            "--case" => {
                let case = value();
                assert!(CASES.contains(&case.as_str()), "--case: one of {CASES:?}");
                args.cases.push(case);
            }
            "--uncached" => args.uncached = value().parse().expect("--uncached S"),
            "--bench" => {} // passed by `cargo bench`-style runners
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

fn main() {
    // The child: this same executable, serving.
    if std::env::var_os("WP_BENCH_CHILD").is_some() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let code = rt
            .block_on(wasm_playground::cli::main())
            .unwrap_or_else(|e| {
                eprintln!("error: {e:#}");
                2
            });
        std::process::exit(code);
    }
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(args));
}

/// The server under test, killed when dropped.
struct Server {
    child: Child,
    url: String,
    _cache: tempfile::TempDir,
}

impl Server {
    fn start(args: &Args) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let cache = tempfile::Builder::new()
            .prefix("wp-bench-cache-")
            .tempdir()
            .unwrap();
        let mut cmd = match &args.server {
            Some(path) => Command::new(path),
            None => {
                let mut cmd = Command::new(std::env::current_exe().unwrap());
                cmd.env("WP_BENCH_CHILD", "1");
                cmd
            }
        };
        cmd.args(["serve", "--addr", &addr])
            .env("WASM_PLAYGROUND_CACHE_DIR", cache.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if args.uncached > 0.0 {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            cmd.env("WASM_PLAYGROUND_CLIENT_COMPILE_RATE", "0")
                .env("WASM_PLAYGROUND_CLIENT_MAX_COMPILES", cores.to_string());
        }
        for (k, v) in &args.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start the server");
        Server {
            child,
            url: format!("http://{addr}"),
            _cache: cache,
        }
    }

    async fn wait_ready(&self, client: &reqwest::Client) {
        let give_up = Instant::now() + Duration::from_secs(30);
        while Instant::now() < give_up {
            if let Ok(r) = client.get(format!("{}/hello", self.url)).send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not come up");
    }

    /// CPU time (user + system) the server has used so far, in ms.
    fn cpu_ms(&self) -> f64 {
        cpu_ms_of(&format!("/proc/{}/stat", self.child.id()))
    }

    /// CPU time of the server and of its finished children (its `rustc`s), in ms.
    fn cpu_with_children_ms(&self) -> f64 {
        cpu_fields_ms(
            &format!("/proc/{}/stat", self.child.id()),
            &[11, 12, 13, 14],
        )
    }

    /// Peak resident set size so far, in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Reply {
    ms: f64,
    json: Value,
}

/// An HTTP client whose connections come from `addr` (any of 127.0.0.0/8), which the server
/// takes for a client of its own.
fn client_from(addr: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(addr)
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

async fn execute(client: &reqwest::Client, url: &str, code: &str) -> Reply {
    try_execute(client, url, code)
        .await
        .unwrap_or_else(|status| panic!("HTTP {status}"))
}

/// One `/execute`; the HTTP status when it is not a success (a 503 or 429 under load).
async fn try_execute(
    client: &reqwest::Client,
    url: &str,
    code: &str,
) -> Result<Reply, reqwest::StatusCode> {
    let started = Instant::now();
    let resp = client
        .post(format!("{url}/execute"))
        .json(&json!({ "code": code }))
        .send()
        .await
        .expect("request");
    if !resp.status().is_success() {
        return Err(resp.status());
    }
    let json: Value = resp.json().await.expect("JSON");
    Ok(Reply {
        ms: started.elapsed().as_secs_f64() * 1000.0,
        json,
    })
}

fn timing(v: &Value, key: &str) -> f64 {
    v["timings"][key].as_f64().unwrap_or(f64::NAN)
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// `code` made unique by a comment, so neither cache has seen it.
fn unique(code: &str, tag: &str, i: usize) -> String {
    format!("// bench {tag} {i} {}\n{code}", std::process::id())
}

/// Times the build a user would run by hand on the file the service compiles (the program
/// with its entry stub): plain `rustc --target wasm32-wasip1 --crate-type cdylib`, the default
/// sysroot, no other flags, an empty environment. `scripts/cold-bench` runs the same command.
fn plain_rustc(rustc: &Path, code: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    let source = source_file(code, Some(Target::Wasip1));
    std::fs::write(dir.path().join("src/main.rs"), source).unwrap();
    let started = Instant::now();
    let status = Command::new(rustc)
        .args(["--target", "wasm32-wasip1", "--crate-type", "cdylib"])
        .args(["--edition", "2024", "-o", "main.wasm", "src/main.rs"])
        .current_dir(dir.path())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    assert!(status.success(), "plain rustc failed");
    ms
}

struct Row {
    what: String,
    value: String,
    target: String,
    verdict: String,
}

fn row(what: impl Into<String>, value: String, target: &str, met: Option<bool>) -> Row {
    Row {
        what: what.into(),
        value,
        target: target.into(),
        verdict: match met {
            Some(true) => "met".into(),
            Some(false) => "**missed**".into(),
            None => String::new(),
        },
    }
}

/// Sends requests for `code` over `connections` parallel loops for `seconds`; returns the
/// request rate and every latency.
async fn load(
    client: &reqwest::Client,
    url: &str,
    code: &str,
    connections: usize,
    seconds: f64,
) -> (f64, Vec<f64>) {
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let client = client.clone();
            let url = url.to_string();
            let code = code.to_string();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < end {
                    let r = execute(&client, &url, &code).await;
                    assert_eq!(r.json["status"], "ok", "{}", r.json);
                    latencies.push(r.ms);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    (rate, all)
}

/// Keeps `n` copies of a CPU-bound program running until `end` (each lasts until the run time
/// limit; a finished one is replaced).
fn spinners(
    client: &reqwest::Client,
    url: &str,
    code: &'static str,
    n: usize,
    end: Instant,
) -> Vec<tokio::task::JoinHandle<usize>> {
    (0..n)
        .map(|_| {
            let client = client.clone();
            let url = url.to_string();
            tokio::spawn(async move {
                let mut runs = 0;
                while Instant::now() < end {
                    execute(&client, &url, code).await;
                    runs += 1;
                }
                runs
            })
        })
        .collect()
}

async fn bench(args: Args) {
    let bench_started = Instant::now();
    let toolchain =
        Toolchain::detect("rustc").expect("a Rust toolchain with the wasm32-wasip1 target");
    let rustc = toolchain.rustc.clone();
    if !args.cases.is_empty() {
        let mut rows = Vec::new();
        for case in &args.cases {
            eprintln!("case {case}");
            match case.as_str() {
                "threads-fairness" => threads_fairness(&args, &mut rows).await,
                "threads-split" => threads_split(&args, &mut rows).await,
                _ => threads_hello(&args, &mut rows).await,
            }
        }
        print_table(&rows, &toolchain, &args, bench_started);
        return;
    }
    let server = Server::start(&args);
    let client = client_from(IpAddr::from([127, 0, 0, 1]));
    server.wait_ready(&client).await;
    let url = server.url.clone();
    let mut rows = Vec::new();
    eprintln!("server {} ({})", url, toolchain.version);

    // 1. Cold: unique programs, each timed against the plain rustc a user would run on the same
    //    file, alternating (the order flips every round) so both see the same machine load.
    //    `scripts/cold-bench` measures the same against a running server.
    let mut plain_hello_cpu_ms = f64::NAN;
    for (name, code) in [("hello world", HELLO), ("~100-line program", MEDIUM)] {
        // One unmeasured round first: page cache, rustc's own start-up files.
        let warmup = unique(code, "warmup", 0);
        plain_rustc(&rustc, &warmup);
        execute(&client, &url, &warmup).await;
        let (mut plain, mut http, mut server_compile, mut cached) = (vec![], vec![], vec![], 0);
        // CPU totals over the loop: the server is idle while rustc runs, and the other way
        // round, so each counter sees only its side.
        let (plain_cpu0, server_cpu0) = (children_cpu_ms(), server.cpu_with_children_ms());
        for i in 0..args.cold {
            let program = unique(code, name, i);
            if i % 2 == 0 {
                plain.push(plain_rustc(&rustc, &program));
            }
            let r = execute(&client, &url, &program).await;
            assert_eq!(r.json["status"], "ok", "{}", r.json);
            if r.json["timings"]["cached"] == true {
                cached += 1;
            }
            http.push(r.ms);
            server_compile.push(timing(&r.json, "compileMs"));
            if i % 2 == 1 {
                plain.push(plain_rustc(&rustc, &program));
            }
        }
        assert_eq!(cached, 0, "a cold request hit the cache");
        // Let the disk write that follows the last answer finish, so it is counted.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let plain_cpu = children_cpu_ms() - plain_cpu0;
        let server_cpu = server.cpu_with_children_ms() - server_cpu0;
        let ratio = median(&http) / median(&plain);
        if code == HELLO {
            plain_hello_cpu_ms = plain_cpu / plain.len() as f64;
        }
        rows.push(row(
            format!("cold {name}: plain rustc by hand, median of {}", args.cold),
            format!("{:.0} ms", median(&plain)),
            "",
            None,
        ));
        rows.push(row(
            format!(
                "cold {name}: CPU, server with its rustc vs plain rustc (sum of {})",
                args.cold
            ),
            format!(
                "{:.0} ms vs {:.0} ms = {:.2}x",
                server_cpu,
                plain_cpu,
                server_cpu / plain_cpu
            ),
            "",
            None,
        ));
        rows.push(row(
            format!("cold {name}: HTTP round trip, median (server compileMs)"),
            format!(
                "{:.0} ms ({:.0} ms) = **{ratio:.2}x** rustc",
                median(&http),
                median(&server_compile)
            ),
            "<= 1.0x rustc",
            Some(ratio <= 1.0),
        ));
    }

    if args.uncached > 0.0 {
        uncached(&client, &url, &server, &args, plain_hello_cpu_ms, &mut rows).await;
    }

    if !args.cold_only {
        warm_and_loaded(&client, &url, &server, &args, &mut rows).await;
    }

    rows.push(row(
        "server peak RSS (VmHWM)",
        format!("{:.0} MiB", server.peak_rss_mib()),
        "",
        None,
    ));
    drop(server);
    print_table(&rows, &toolchain, &args, bench_started);
}

fn print_table(rows: &[Row], toolchain: &Toolchain, args: &Args, bench_started: Instant) {
    println!(
        "\n{} on {} cores, {}; server: {}{}\n",
        toolchain.version,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average(),
        args.server
            .as_ref()
            .map_or("this build".into(), |p| p.display().to_string()),
        args.env
            .iter()
            .map(|(k, v)| format!(", {k}={v}"))
            .collect::<String>(),
    );
    println!("| measurement | result | target | |");
    println!("|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} |",
            r.what, r.value, r.target, r.verdict
        );
    }
    println!(
        "\nbenchmark time: {:.0} s, {} at the end",
        bench_started.elapsed().as_secs_f64(),
        load_average()
    );
}

/// A server of its own for a case, with `env` on top of `--env`'s.
async fn case_server(args: &Args, env: &[(&str, &str)]) -> (Server, reqwest::Client) {
    let mut args = args.clone();
    args.env
        .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let server = Server::start(&args);
    let client = client_from(IpAddr::from([127, 0, 0, 1]));
    server.wait_ready(&client).await;
    (server, client)
}

/// Latencies of one cached `code` after another (5 ms apart) for `seconds`, with the
/// server's `queueMs` of each.
async fn sequential(
    client: &reqwest::Client,
    url: &str,
    code: &str,
    seconds: f64,
) -> (Vec<f64>, Vec<f64>) {
    let (mut latencies, mut queued) = (Vec::new(), Vec::new());
    let stop = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < stop {
        let r = execute(client, url, code).await;
        assert_eq!(r.json["status"], "ok", "{}", r.json);
        latencies.push(r.ms);
        queued.push(timing(&r.json, "queueMs"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (latencies, queued)
}

/// 16 threads (main and 15 spawned) spinning until the run's fuel or time is up.
const SPIN_THREADS: &str = "use std::thread;\nfn spin() {\n    let mut i = 0u64;\n    loop {\n        i = std::hint::black_box(i.wrapping_add(1));\n    }\n}\nfn main() {\n    for _ in 0..15 {\n        thread::spawn(spin);\n    }\n    spin();\n}\n";

/// Fuel of a spinning program on the fairness case's server: its 16 threads together stop
/// after this much work (about a second of both cores), then the client sends it again.
const SPIN_FUEL: &str = "2000000000";

/// Warm hello world from one client, alone and then while 8 other clients (one address
/// each) keep a program spinning 16 threads running.
async fn threads_fairness(args: &Args, rows: &mut Vec<Row>) {
    let (server, client) = case_server(args, &[("WASM_PLAYGROUND_FUEL", SPIN_FUEL)]).await;
    let url = server.url.clone();
    let hello = unique(HELLO, "threads-fairness", 0);
    execute(&client, &url, &hello).await;
    let first = execute(&client, &url, SPIN_THREADS).await; // built once
    eprintln!("a spinning program: {}", first.json["exitDetail"]);

    let (alone, alone_queued) = sequential(&client, &url, &hello, args.seconds).await;

    let end = Instant::now() + Duration::from_secs_f64(args.seconds + 1.0);
    let spinners: Vec<_> = (0..8u8)
        .map(|i| {
            let client = client_from(IpAddr::from([127, 0, 0, 10 + i]));
            let url = url.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while Instant::now() < end {
                    let r = execute(&client, &url, SPIN_THREADS).await;
                    statuses.push(r.json["status"].as_str().unwrap_or("?").to_string());
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (busy, busy_queued) = sequential(&client, &url, &hello, args.seconds).await;
    let mut statuses = BTreeMap::<String, usize>::new();
    for spinner in spinners {
        for status in spinner.await.unwrap() {
            *statuses.entry(status).or_default() += 1;
        }
    }
    for (what, latencies, queued) in [
        ("alone", &alone, &alone_queued),
        ("while 8 clients spin 16 threads each", &busy, &busy_queued),
    ] {
        rows.push(row(
            format!("threads fairness: warm hello world {what}, p50 / p99 (queueMs p50 / p99)"),
            format!(
                "{:.2} / {:.2} ms ({:.2} / {:.2} ms), {} requests",
                median(latencies),
                percentile(latencies, 99.0),
                median(queued),
                percentile(queued, 99.0),
                latencies.len()
            ),
            "",
            None,
        ));
    }
    rows.push(row(
        "threads fairness: the spinning programs' runs",
        format!("{statuses:?}"),
        "",
        None,
    ));
}

/// The same CPU-bound work in one thread and split over two, cached and on Cranelift,
/// alternately (the machine is shared: medians, with the load).
async fn threads_split(args: &Args, rows: &mut Vec<Row>) {
    let (server, client) = case_server(args, &[("WASM_PLAYGROUND_RUN_TIMEOUT_MS", "60000")]).await;
    let url = server.url.clone();
    let one = SPLIT.replace("THREADS: u64 = 2", "THREADS: u64 = 1");
    // Without threads the program is built for wasm32-wasip1, as every plain program.
    let plain = "const N: u64 = 200_000_000;\n\nfn mix(from: u64, to: u64) -> u64 {\n    let mut h = 0xcbf2_9ce4_8422_2325u64;\n    for i in from..to {\n        h ^= i;\n        h = h.wrapping_mul(0x0100_0000_01b3);\n    }\n    h\n}\n\nfn main() {\n    println!(\"{:x}\", mix(0, N));\n}\n";
    let programs = [
        ("1 thread", one.as_str()),
        ("2 threads", SPLIT),
        ("no threads (wasm32-wasip1)", plain),
    ];
    // Compiled, run once on Winch (which starts the Cranelift compile), then on Cranelift.
    for (_, code) in programs {
        for _ in 0..3 {
            let r = execute(&client, &url, code).await;
            assert_eq!(r.json["status"], "ok", "{}", r.json);
        }
    }
    let load_before = load_average();
    let rounds = args.cold;
    let mut runs = vec![Vec::new(); programs.len()];
    for _ in 0..rounds {
        for (i, (_, code)) in programs.iter().enumerate() {
            let r = execute(&client, &url, code).await;
            assert_eq!(r.json["status"], "ok", "{}", r.json);
            runs[i].push(timing(&r.json, "runMs"));
        }
    }
    for ((what, _), runs) in programs.iter().zip(&runs) {
        rows.push(row(
            format!("threads split: 200M hash rounds in {what}, runMs median (min) of {rounds}"),
            format!("{:.0} ms ({:.0} ms)", median(runs), percentile(runs, 0.0)),
            "",
            None,
        ));
    }
    rows.push(row(
        "threads split: 1 thread / 2 threads, medians",
        format!("{:.2}x", median(&runs[0]) / median(&runs[1])),
        "",
        None,
    ));
    rows.push(row(
        "threads split: load average before / after",
        format!("{load_before} / {}", load_average()),
        "",
        None,
    ));
}

/// A threaded hello world against the plain one: cold (`compileMs`, unique programs) and warm
/// (`runMs`, cached), alternately.
async fn threads_hello(args: &Args, rows: &mut Vec<Row>) {
    let (server, client) = case_server(args, &[]).await;
    let url = server.url.clone();
    let threaded = "use std::thread;\n\nfn main() {\n    thread::spawn(|| println!(\"Hello, world!\")).join().unwrap();\n}\n";
    let programs = [("plain", HELLO), ("threaded", threaded)];
    for (_, code) in programs {
        execute(&client, &url, &unique(code, "hello-warmup", 0)).await;
    }
    let (mut compile, mut run) = (vec![Vec::new(); 2], vec![Vec::new(); 2]);
    for i in 0..args.cold {
        for (p, (name, code)) in programs.iter().enumerate() {
            let code = unique(code, name, i);
            let r = execute(&client, &url, &code).await;
            assert_eq!(r.json["timings"]["cached"], false, "{}", r.json);
            compile[p].push(timing(&r.json, "compileMs"));
            for _ in 0..3 {
                let r = execute(&client, &url, &code).await;
                assert_eq!(r.json["stdout"], "Hello, world!\n", "{}", r.json);
                run[p].push(timing(&r.json, "runMs"));
            }
        }
    }
    for (p, (name, _)) in programs.iter().enumerate() {
        rows.push(row(
            format!(
                "threads hello: {name} hello world, compileMs median of {} / runMs median (p90) of {}",
                compile[p].len(),
                run[p].len()
            ),
            format!(
                "{:.0} ms / {:.2} ms ({:.2} ms)",
                median(&compile[p]),
                median(&run[p]),
                percentile(&run[p], 90.0)
            ),
            "",
            None,
        ));
    }
}

/// Uncached throughput: 16 clients, each sending hello worlds nobody has sent before, for
/// `--uncached` seconds; with the server's CPU (its `rustc`s included) per compile against
/// `plain_cpu_ms`, one plain `rustc`'s.
async fn uncached(
    client: &reqwest::Client,
    url: &str,
    server: &Server,
    args: &Args,
    plain_cpu_ms: f64,
    rows: &mut Vec<Row>,
) {
    let clients = 16;
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(args.uncached);
    let server_cpu0 = server.cpu_with_children_ms();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let client = client.clone();
            let url = url.to_string();
            tokio::spawn(async move {
                let (mut latencies, mut refused) = (Vec::new(), 0);
                for i in 0.. {
                    if Instant::now() >= end {
                        break;
                    }
                    let program = unique(HELLO, &format!("uncached {c}"), i);
                    let Ok(r) = try_execute(&client, &url, &program).await else {
                        refused += 1;
                        continue;
                    };
                    assert_eq!(r.json["status"], "ok", "{}", r.json);
                    assert_eq!(r.json["timings"]["cached"], false, "{}", r.json);
                    latencies.push(r.ms);
                }
                (latencies, refused)
            })
        })
        .collect();
    let (mut latencies, mut refused) = (Vec::new(), 0);
    for t in tasks {
        let (l, r) = t.await.unwrap();
        latencies.extend(l);
        refused += r;
    }
    let seconds = started.elapsed().as_secs_f64();
    // Let the disk writes that follow the last answers finish, so they are counted.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let per_compile = (server.cpu_with_children_ms() - server_cpu0) / latencies.len() as f64;
    let rate = latencies.len() as f64 / seconds;
    rows.push(row(
        format!("uncached hello worlds, {clients} clients, {seconds:.0} s: req/s, p50 / p99"),
        format!(
            "{rate:.1} req/s, {:.0} / {:.0} ms, {refused} refused; CPU per compile: server with its rustc {per_compile:.0} ms vs plain rustc {plain_cpu_ms:.0} ms = {:.2}x",
            percentile(&latencies, 50.0),
            percentile(&latencies, 99.0),
            per_compile / plain_cpu_ms,
        ),
        ">= 18 req/s",
        Some(rate >= 18.0),
    ));
}

/// The rows after the cold ones: warm requests, throughput, fairness.
async fn warm_and_loaded(
    client: &reqwest::Client,
    url: &str,
    server: &Server,
    args: &Args,
    rows: &mut Vec<Row>,
) {
    // 2. Warm: the same hello world again and again, one at a time.
    let hello = unique(HELLO, "warm", 0);
    execute(client, url, &hello).await;
    let (mut rtt, mut server_side) = (vec![], vec![]);
    let mut all_cached = true;
    for _ in 0..300 {
        let r = execute(client, url, &hello).await;
        all_cached &= r.json["timings"]["cached"] == true;
        rtt.push(r.ms);
        server_side.push(timing(&r.json, "compileMs") + timing(&r.json, "runMs"));
    }
    let p50_server = median(&server_side);
    rows.push(row(
        "warm hello world: server-side (compileMs + runMs), p50",
        format!("{p50_server:.3} ms"),
        "< 1 ms",
        Some(p50_server < 1.0),
    ));
    let p50_rtt = median(&rtt);
    rows.push(row(
        format!(
            "warm hello world: HTTP round trip p50 / p99{}",
            if all_cached { "" } else { " (NOT all cached)" }
        ),
        format!("{p50_rtt:.2} / {:.2} ms", percentile(&rtt, 99.0)),
        "p50 < 2 ms",
        Some(p50_rtt < 2.0),
    ));

    // 3. Throughput of cached hello world at 1/4/16 connections, alone and while a CPU-bound
    //    program keeps running.
    let cpu = unique(CPU, "cpu", 0);
    execute(client, url, &cpu).await; // built and tiered up before it is measured against
    let cpu: &'static str = Box::leak(cpu.into_boxed_str());
    for background in [false, true] {
        let end = Instant::now() + Duration::from_secs_f64(args.seconds * 3.0 + 1.0);
        let bg = if background {
            let handles = spinners(client, url, cpu, 1, end);
            tokio::time::sleep(Duration::from_millis(200)).await;
            handles
        } else {
            Vec::new()
        };
        for connections in [1, 4, 16] {
            let (server_cpu, client_cpu) = (server.cpu_ms(), cpu_ms_of("/proc/self/stat"));
            let (rate, latencies) = load(client, url, &hello, connections, args.seconds).await;
            let requests = rate * args.seconds;
            let server_us = (server.cpu_ms() - server_cpu) * 1000.0 / requests;
            let client_us = (cpu_ms_of("/proc/self/stat") - client_cpu) * 1000.0 / requests;
            let p99 = percentile(&latencies, 99.0);
            let judged = background && connections == 16;
            rows.push(row(
                format!(
                    "cached hello world, {connections} connection{}{}: req/s, p50 / p99",
                    if connections == 1 { "" } else { "s" },
                    if background {
                        ", CPU-bound program running"
                    } else {
                        ""
                    }
                ),
                format!(
                    "{rate:.0} req/s, {:.2} / {p99:.2} ms; CPU per request: server {server_us:.0} µs{}, client {client_us:.0} µs",
                    percentile(&latencies, 50.0),
                    if background { " (with the program)" } else { "" },
                ),
                if judged {
                    ">= 5000 req/s, p99 < 20 ms"
                } else {
                    ""
                },
                judged.then_some(rate >= 5000.0 && p99 < 20.0),
            ));
        }
        for h in bg {
            h.abort();
        }
    }
    // Let aborted spinners' runs end (the server stops them at its run time limit).
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 4. Fairness: cached hello world while 8 infinite loops run.
    execute(client, url, SPIN).await; // build (and time out) once
    let end = Instant::now() + Duration::from_secs_f64(args.seconds + 1.0);
    // From another address: one client's loops would hold that client's own run slots (8),
    // which is per-client fairness, not the server's.
    let loops = spinners(
        &client_from(IpAddr::from([127, 0, 0, 2])),
        url,
        SPIN,
        8,
        end,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut latencies = Vec::new();
    let stop = Instant::now() + Duration::from_secs_f64(args.seconds);
    while Instant::now() < stop {
        latencies.push(execute(client, url, &hello).await.ms);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let p50 = median(&latencies);
    rows.push(row(
        "fairness: cached hello world while 8 infinite loops run, p50 / p99",
        format!("{p50:.2} / {:.2} ms", percentile(&latencies, 99.0)),
        "p50 < 10 ms",
        Some(p50 < 10.0),
    ));
    for h in loops {
        h.abort();
    }
}

/// utime + stime of a process from its `/proc/.../stat`, in ms.
fn cpu_ms_of(path: &str) -> f64 {
    cpu_fields_ms(path, &[11, 12])
}

/// CPU time of this process's finished children (the plain `rustc` runs), in ms.
fn children_cpu_ms() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct we pass.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The sum of the given fields (counted after the command name) of a `/proc/.../stat`, in ms.
fn cpu_fields_ms(path: &str, fields_at: &[usize]) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // utime, stime, cutime, cstime are fields 14-17 of the line: 11-14 after the name.
    fields_at.iter().map(|&i| ticks(i)).sum::<f64>() * 1000.0 / hz
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().take(3).collect();
            format!("load average {}", parts.join(" "))
        })
        .unwrap_or_default()
}
