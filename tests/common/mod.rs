//! Shared helpers: a real server on a loopback port, and a small JSON client.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once, OnceLock, PoisonError};

use serde_json::{Value, json};
use wasm_playground::config::Config;
use wasm_playground::pipeline::Playground;

/// A server running on its own thread and runtime for the rest of the test process.
pub struct TestServer {
    pub url: String,
    pub work_dir: PathBuf,
    pub cache_dir: PathBuf,
}

/// Every scratch dir this test process made, removed when it exits.
static SCRATCH: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn remove_scratch_dirs() {
    let dirs = SCRATCH.lock().unwrap_or_else(PoisonError::into_inner);
    for dir in dirs.iter() {
        // The in-process servers' spare compilers would read the end of their stdin as an
        // empty crate and write it into the dir being removed: they go first.
        for (pid, _) in processes_in(dir) {
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: kill has no memory-safety preconditions; the process works in our dir.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A fresh directory under cargo's scratch dir for integration tests (in `target/`, not /tmp).
/// The servers that use them live as long as the test process, which never drops them (a
/// static's destructor never runs), so the dirs are removed at the process's exit instead.
pub fn scratch_dir(prefix: &str) -> PathBuf {
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain function with no preconditions; it runs once, at exit.
        unsafe {
            libc::atexit(remove_scratch_dirs);
        }
    });
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("scratch dir")
        .keep();
    SCRATCH
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(dir.clone());
    dir
}

/// Starts a server with `config` (its work dir replaced by a fresh one, and its cache and data
/// dirs too unless the config names them) on 127.0.0.1:0.
pub fn start(mut config: Config) -> TestServer {
    let work_dir = scratch_dir("wp-test-work-");
    config.work_dir = Some(work_dir.clone());
    if config.data_dir.is_none() {
        config.data_dir = Some(scratch_dir("wp-test-data-"));
    }
    let cache_dir = config
        .cache_dir
        .clone()
        .unwrap_or_else(|| scratch_dir("wp-test-cache-"));
    config.cache_dir = Some(cache_dir.clone());
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let playground = Arc::new(Playground::new(config).expect("playground"));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr"))
                .expect("send addr");
            wasm_playground::api::serve(listener, playground, std::future::pending())
                .await
                .expect("serve");
        });
    });
    let addr = rx.recv().expect("server did not start");
    TestServer {
        url: format!("http://{addr}"),
        work_dir,
        cache_dir,
    }
}

/// The server with default limits, shared by every test of one test binary.
pub fn server() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    // Every test of a binary comes from 127.0.0.1: that one client may use the whole server
    // (the per-client limits have their own servers in tests/fairness.rs).
    SERVER.get_or_init(|| {
        let defaults = Config::default();
        start(Config {
            client_max_compiles: defaults.max_compiles,
            client_max_runs: defaults.max_runs,
            client_queue_limit: defaults.queue_limit,
            client_compile_rate: 0,
            ..defaults
        })
    })
}

/// A port free right now on 127.0.0.1 (for daemons that cannot report the one they got).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A client without connection reuse: every test has its own runtime, and a pooled connection
/// from a finished test's runtime (or one the server closed after a 413) must not be reused.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("HTTP client")
}

/// POSTs a JSON body to `/execute`; returns the status and the parsed JSON answer.
pub async fn post_json(server: &TestServer, body: Value) -> (u16, Value) {
    post_to(&server.url, "/execute", body).await
}

/// POSTs a JSON body to `path` of the server at `base` (`http://127.0.0.1:PORT`); returns the
/// status and the parsed JSON answer.
pub async fn post_to(base: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON answer"))
}

/// GETs `path` of the server at `base`; returns the status and the parsed JSON answer.
pub async fn get_json(base: &str, path: &str) -> (u16, Value) {
    let resp = client()
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON answer"))
}

/// Runs `code` with default options on the shared server and expects a 200.
pub async fn run(code: &str) -> Value {
    run_on(server(), json!({ "code": code })).await
}

pub async fn run_on(server: &TestServer, body: Value) -> Value {
    let (status, value) = post_json(server, body).await;
    assert_eq!(status, 200, "unexpected answer: {value}");
    value
}

/// Number of entries in the server's work dir (leftover temp dirs), besides the job dirs of spare
/// compilers that wait for a program.
pub fn leftovers(server: &TestServer) -> usize {
    std::fs::read_dir(&server.work_dir)
        .map(|d| d.flatten().filter(|e| !is_waiting_spare(&e.path())).count())
        .unwrap_or(0)
}

/// Whether `dir` is the job dir of a spare compiler still waiting for its program: its crate
/// root is the symlink to the spare's stdin, which a build replaces with its file.
pub fn is_waiting_spare(dir: &std::path::Path) -> bool {
    ["src/main.rs", "src/lib.rs"].iter().any(|root| {
        dir.join(root)
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
    })
}

/// The processes whose working directory is under `dir`, and those directories.
pub fn processes_in(dir: &std::path::Path) -> Vec<(u32, PathBuf)> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let pid = e.file_name().to_str()?.parse().ok()?;
                    let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
                    cwd.starts_with(dir).then_some((pid, cwd))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The real binary serving on a loopback port, killed (and reaped) when dropped.
pub struct ServerProcess {
    child: std::process::Child,
    pub server: TestServer,
    pub log: Arc<std::sync::Mutex<String>>,
}

impl ServerProcess {
    /// Starts `wasm-playground serve` with extra `args` and `envs`, on 127.0.0.1:0, with fresh
    /// work, cache and data dirs (`args` and `envs` may name others).
    pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let work_dir = scratch_dir("wp-test-work-");
        let cache_dir = scratch_dir("wp-test-cache-");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wasm-playground"))
            .args(["serve", "--addr", "127.0.0.1:0", "--work-dir"])
            .arg(&work_dir)
            .args(args)
            .env("WASM_PLAYGROUND_CACHE_DIR", &cache_dir)
            .env("WASM_PLAYGROUND_DATA_DIR", scratch_dir("wp-test-data-"))
            .envs(envs.iter().copied())
            .env("RUST_LOG", "wasm_playground=info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the server binary");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                // `addr=127.0.0.1:PORT` in text logs, `"addr":"127.0.0.1:PORT"` in JSON ones.
                let json = serde_json::from_str::<Value>(&line).ok();
                if let Some(addr) = json.as_ref().and_then(|v| v["fields"]["addr"].as_str()) {
                    let _ = tx.send(addr.to_string());
                } else if let Some(addr) = line.split("addr=").nth(1) {
                    let _ = tx.send(addr.split_whitespace().next().unwrap_or("").to_string());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(e) => {
                // Never leave the process behind, even when the test fails here.
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not report its address: {e}");
            }
        };
        Self {
            child,
            server: TestServer {
                url: format!("http://{addr}"),
                work_dir,
                cache_dir,
            },
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's Prometheus text at `GET /metrics`, fetched by `client` (tests that keep to one
/// client address pass their own).
pub async fn metrics_text(client: &reqwest::Client, base: &str) -> String {
    let resp = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    resp.text().await.expect("the metrics text")
}

/// The value of `series` (a metric name with its labels, as `/metrics` prints it) in a
/// Prometheus text exposition.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
