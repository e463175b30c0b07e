//! Soak test: the real server under minutes of mixed honest and hostile traffic from several
//! client addresses, with its RSS, open file descriptors, threads and temp dirs sampled every few
//! seconds. Run it with
//!
//! ```sh
//! cargo run --release --example soak -- --minutes 10
//! ```
//!
//! Options (after `--`): `--minutes M` (default 10), `--sample-seconds S` (default 5).
//!
//! Clients, each bound to its own loopback address:
//! - 127.0.0.2, honest: a handful of programs in turn (cache hits) and a new one every 20 s,
//!   one request at a time; every answer is checked;
//! - 127.0.0.3, honest: `/live` sessions that ask for a name and greet it, one at a time;
//! - 127.0.0.4, hostile: eight at a time, compiles that burn their whole CPU limit;
//! - 127.0.0.5, hostile: the hostile set (endless loops, memory and output bombs, stack
//!   overflows, odd modules, compiler crashes, huge statics), each made new, as fast as it can;
//! - 127.0.0.6, hostile: `/live` sessions left at their input prompt, as many as it may open;
//! - 127.0.0.7, hostile: sockets opened and left idle, and headers sent a byte at a time.
//!
//! The report: the samples (first, last, min, max), every honest request's outcome (any
//! rejection or wrong answer is a failure) and the hostile requests' statuses.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

const ASK: &str = "use std::io::BufRead;\nfn main() {\n    println!(\"name?\");\n    let mut line = String::new();\n    std::io::stdin().lock().read_line(&mut line).unwrap();\n    println!(\"hello, {}!\", line.trim());\n}\n";
const SLOW: &str = "#![allow(long_running_const_eval)]\nconst _: () = loop {};\nfn main() {}";

/// The hostile set: programs that attack limits (each sent with a unique comment).
fn hostile_programs() -> Vec<String> {
    vec![
        "fn main() { loop {} }".into(),
        "fn main() { let mut v = Vec::new(); loop { v.push(vec![1u8; 1 << 20]); } }".into(),
        "fn main() { loop { print!(\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"); } }".into(),
        "fn f(n: u64) -> u64 { 1 + f(std::hint::black_box(n + 1)) }\nfn main() { println!(\"{}\", f(0)); }".into(),
        "#[link(wasm_import_module = \"env\")]\nunsafe extern \"C\" { fn evil(); }\nfn main() { unsafe { evil() } }".into(),
        format!("fn main() {{ let x = {}1{}; println!(\"{{x}}\"); }}", "(".repeat(20_000), ")".repeat(20_000)),
        "static mut BIG: [u8; 64_000_000] = [0; 64_000_000];\nfn main() { println!(\"{}\", unsafe { std::ptr::addr_of!(BIG).read()[7] }); }".into(),
        "static DATA: [u8; 6_000_000] = [3; 6_000_000];\nfn main() { println!(\"{}\", DATA[std::hint::black_box(9)]); }".into(),
        "fn main() { println!(\"{}\", include_str!(\"/etc/passwd\")); }".into(),
        "fn main() { std::process::abort(); }".into(),
    ]
}

fn main() {
    if std::env::var_os("WP_SOAK_CHILD").is_some() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let code = rt
            .block_on(wasm_playground::cli::main())
            .unwrap_or_else(|e| {
                eprintln!("error: {e:#}");
                2
            });
        std::process::exit(code);
    }
    let mut minutes = 10.0;
    let mut sample_seconds = 5.0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--minutes" => minutes = value().parse().expect("--minutes M"),
            "--sample-seconds" => sample_seconds = value().parse().expect("--sample-seconds S"),
            other => panic!("unknown argument {other}"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(soak(
        Duration::from_secs_f64(minutes * 60.0),
        Duration::from_secs_f64(sample_seconds),
    ));
}

struct Server {
    child: Child,
    addr: SocketAddr,
    work: tempfile::TempDir,
    _cache: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let dir = |prefix| tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        let (work, cache) = (dir("wp-soak-work-"), dir("wp-soak-cache-"));
        let child = Command::new(std::env::current_exe().unwrap())
            .env("WP_SOAK_CHILD", "1")
            .args(["serve", "--addr", &addr.to_string(), "--work-dir"])
            .arg(work.path())
            .env("WASM_PLAYGROUND_CACHE_DIR", cache.path())
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the server");
        Self {
            child,
            addr,
            work,
            _cache: cache,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn sample(&self, at: Duration) -> Sample {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        let count = |dir: PathBuf| std::fs::read_dir(dir).map_or(0, |d| d.count());
        Sample {
            at_s: at.as_secs(),
            rss_mib: field("VmRSS:") as f64 / 1024.0,
            fds: count(format!("/proc/{pid}/fd").into()),
            threads: field("Threads:") as usize,
            temp_dirs: count(self.work.path().to_path_buf()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at_s: u64,
    rss_mib: f64,
    fds: usize,
    threads: usize,
    temp_dirs: usize,
}

/// Outcomes by client and kind (e.g. `honest ok`, `hostile-compiles 429`).
#[derive(Default)]
struct Tally {
    counts: Mutex<BTreeMap<String, u64>>,
    honest_ms: Mutex<Vec<f64>>,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn count(&self, what: impl Into<String>) {
        *self.counts.lock().unwrap().entry(what.into()).or_default() += 1;
    }

    fn fail(&self, what: String) {
        self.count("honest FAILED");
        let mut failures = self.failures.lock().unwrap();
        if failures.len() < 20 {
            failures.push(what);
        }
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn client_from(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip(last))
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

async fn connect_from(addr: SocketAddr, last: u8) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(ip(last), 0))?;
    socket.connect(addr).await
}

type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn live_from(addr: SocketAddr, last: u8) -> Option<Socket> {
    let stream = connect_from(addr, last).await.ok()?;
    let url = format!("ws://{addr}/live");
    Some(tokio_tungstenite::client_async(url, stream).await.ok()?.0)
}

async fn next_json(ws: &mut Socket, kind: &str) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(120), ws.next())
            .await
            .ok()??
            .ok()?;
        if let Message::Text(text) = message {
            let v: Value = serde_json::from_str(&text).ok()?;
            if v["type"] == kind || v["type"] == "error" {
                return Some(v);
            }
        }
    }
}

async fn soak(length: Duration, every: Duration) {
    let server = Server::start();
    let url = server.url();
    let addr = server.addr;
    let probe = client_from(2);
    let up = Instant::now() + Duration::from_secs(60);
    while probe.get(format!("{url}/hello")).send().await.is_err() {
        assert!(Instant::now() < up, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let end = started + length;
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();

    // 127.0.0.2: honest `/execute`.
    tasks.push(tokio::spawn({
        let (tally, url) = (tally.clone(), url.clone());
        async move {
            let client = client_from(2);
            let mut fresh = 0u32;
            let mut last_fresh = Instant::now();
            for i in 0u64.. {
                if Instant::now() >= end {
                    break;
                }
                let n = if last_fresh.elapsed() > Duration::from_secs(20) {
                    last_fresh = Instant::now();
                    fresh += 1;
                    1000 + fresh as u64
                } else {
                    i % 5
                };
                let code = format!("fn main() {{ let n: u64 = {n}; println!(\"{{}}\", n * n); }}");
                let t = Instant::now();
                let resp = client
                    .post(format!("{url}/execute"))
                    .json(&json!({ "code": code }))
                    .send()
                    .await;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                match resp {
                    Ok(r) if r.status() == 200 => {
                        let v: Value = r.json().await.unwrap_or_default();
                        if v["stdout"] == format!("{}\n", n * n) {
                            tally.count("honest /execute ok");
                            tally.honest_ms.lock().unwrap().push(ms);
                        } else {
                            tally.fail(format!("wrong answer for {n}: {v}"));
                        }
                    }
                    Ok(r) => tally.fail(format!("HTTP {} for {n}", r.status())),
                    Err(e) => tally.fail(format!("request failed: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }));

    // 127.0.0.3: honest live sessions.
    tasks.push(tokio::spawn({
        let tally = tally.clone();
        async move {
            let mut i = 0u64;
            while Instant::now() < end {
                i += 1;
                let name = format!("p{i}");
                let outcome = async {
                    let mut ws = live_from(addr, 3).await.ok_or("no socket")?;
                    let run = json!({"type": "run", "code": ASK}).to_string();
                    ws.send(Message::Text(run.into()))
                        .await
                        .map_err(|_| "send")?;
                    let prompt = next_json(&mut ws, "stdout").await.ok_or("no prompt")?;
                    if prompt["data"] != "name?\n" {
                        return Err("wrong prompt");
                    }
                    let line = json!({"type": "stdin", "data": format!("{name}\n")}).to_string();
                    ws.send(Message::Text(line.into()))
                        .await
                        .map_err(|_| "send")?;
                    let done = next_json(&mut ws, "done").await.ok_or("no done")?;
                    if done["stdout"] != format!("name?\nhello, {name}!\n") {
                        return Err("wrong answer");
                    }
                    Ok(())
                }
                .await;
                match outcome {
                    Ok(()) => tally.count("honest /live ok"),
                    Err(why) => tally.fail(format!("live session {i}: {why}")),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }));

    // 127.0.0.4: slow compiles, eight at a time.
    for _ in 0..8 {
        tasks.push(tokio::spawn({
            let (tally, url) = (tally.clone(), url.clone());
            async move {
                let client = client_from(4);
                while Instant::now() < end {
                    let status = match client
                        .post(format!("{url}/execute"))
                        .body(SLOW)
                        .send()
                        .await
                    {
                        Ok(r) => r.status().as_u16().to_string(),
                        Err(_) => "error".into(),
                    };
                    tally.count(format!("hostile slow compiles {status}"));
                    if status != "200" {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }));
    }

    // 127.0.0.5: the hostile set, each program new.
    tasks.push(tokio::spawn({
        let (tally, url) = (tally.clone(), url.clone());
        async move {
            let client = client_from(5);
            let programs = hostile_programs();
            for i in 0usize.. {
                if Instant::now() >= end {
                    break;
                }
                let code = format!("{}\n// {i}\n", programs[i % programs.len()]);
                let status = match client
                    .post(format!("{url}/execute"))
                    .json(&json!({ "code": code }))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        let v: Value = r.json().await.unwrap_or_default();
                        format!("200 {}", v["status"].as_str().unwrap_or("?"))
                    }
                    Ok(r) => r.status().as_u16().to_string(),
                    Err(_) => "error".into(),
                };
                tally.count(format!("hostile set {status}"));
                if !status.starts_with("200") {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }));

    // 127.0.0.6: live sessions left at their prompt, as many as allowed.
    for _ in 0..48 {
        tasks.push(tokio::spawn({
            let tally = tally.clone();
            async move {
                while Instant::now() < end {
                    let Some(mut ws) = live_from(addr, 6).await else {
                        tally.count("hostile idle live: no socket");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    };
                    let run = json!({"type": "run", "code": ASK}).to_string();
                    let _ = ws.send(Message::Text(run.into())).await;
                    // Holds the session until the server ends it (the live time limit).
                    let last = next_json(&mut ws, "done").await;
                    let status = last.map_or("closed".to_string(), |v| {
                        v["status"].to_string().trim_matches('"').to_string()
                    });
                    tally.count(format!("hostile idle live {status}"));
                    if status != "timeout" {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }));
    }

    // 127.0.0.7: idle sockets and headers a byte at a time, 200 at a time.
    for _ in 0..200 {
        tasks.push(tokio::spawn({
            let tally = tally.clone();
            async move {
                while Instant::now() < end {
                    let Ok(mut socket) = connect_from(addr, 7).await else {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    };
                    let mut cut = false;
                    for byte in b"POST /execute HTTP/1.1\r\nHost: soak\r\nX-Slow: "
                        .iter()
                        .cycle()
                    {
                        if Instant::now() >= end || socket.write_all(&[*byte]).await.is_err() {
                            cut = true;
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    tally.count(if cut {
                        "hostile slow sockets cut"
                    } else {
                        "hostile slow sockets"
                    });
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }

    let mut samples = Vec::new();
    while Instant::now() < end {
        samples.push(server.sample(started.elapsed()));
        tokio::time::sleep(every).await;
    }
    samples.push(server.sample(started.elapsed()));
    for task in tasks {
        task.abort();
    }
    report(&samples, &tally, length);
}

fn report(samples: &[Sample], tally: &Tally, length: Duration) {
    println!(
        "soak: {:.1} minutes, {} samples",
        length.as_secs_f64() / 60.0,
        samples.len()
    );
    println!("| metric | first | last | min | max |");
    println!("|---|---|---|---|---|");
    let row = |name: &str, get: &dyn Fn(&Sample) -> f64| {
        let values: Vec<f64> = samples.iter().map(get).collect();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "| {name} | {:.0} | {:.0} | {min:.0} | {max:.0} |",
            values[0],
            values[values.len() - 1]
        );
    };
    row("RSS (MiB)", &|s| s.rss_mib);
    row("open fds", &|s| s.fds as f64);
    row("threads", &|s| s.threads as f64);
    row("temp dirs", &|s| s.temp_dirs as f64);
    println!();
    println!("| requests | count |");
    println!("|---|---|");
    for (what, n) in tally.counts.lock().unwrap().iter() {
        println!("| {what} | {n} |");
    }
    let mut ms = tally.honest_ms.lock().unwrap().clone();
    ms.sort_by(f64::total_cmp);
    if !ms.is_empty() {
        let at = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
        println!();
        println!(
            "honest /execute latency: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            at(0.5),
            at(0.9),
            at(0.99),
            at(1.0)
        );
    }
    println!();
    println!("samples (s: RSS MiB / fds / threads / temp dirs):");
    for s in samples {
        print!(
            "{}: {:.0}/{}/{}/{}  ",
            s.at_s, s.rss_mib, s.fds, s.threads, s.temp_dirs
        );
    }
    println!();
    let failures = tally.failures.lock().unwrap();
    if failures.is_empty() {
        println!("every honest request was answered correctly");
    } else {
        println!("HONEST FAILURES (first {}):", failures.len());
        for f in failures.iter() {
            println!("  {f}");
        }
        std::process::exit(1);
    }
}
