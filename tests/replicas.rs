//! Several replicas on one machine: a real `redis-server` holding the shared artifact cache,
//! and three replicas of the real binary behind a real nginx. Both daemons come from Debian's
//! packages (`scripts/test` installs them); each test starts its own instances on free
//! loopback ports with their own files in a temp dir, and kills them when it ends, also when
//! it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{ServerProcess, client, free_port};
use serde_json::{Value, json};

const HMAC_KEY: (&str, &str) = ("WASM_PLAYGROUND_REDIS_HMAC_KEY", "replicas-test-key");

/// A daemon killed (and reaped) when dropped.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn spawn(cmd: &mut Command, what: &str) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("could not start {what} ({e}); ./scripts/test installs it with apt-get")
            });
        Self { child }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `ready` every 50 ms for up to 20 s.
async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut ready: impl FnMut() -> F,
) {
    let give_up = Instant::now() + Duration::from_secs(20);
    while !ready().await {
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Redis {
    _daemon: Daemon,
    url: String,
}

impl Redis {
    /// `redis-server` on `port`, in memory only, evicting least recently used keys when full
    /// (the configuration docs/deploy.md recommends).
    async fn start(dir: &Path, port: u16) -> Self {
        let daemon = Daemon::spawn(
            Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru"])
                .arg("--dir")
                .arg(dir),
            "redis-server",
        );
        let redis = Self {
            _daemon: daemon,
            url: format!("redis://127.0.0.1:{port}/"),
        };
        wait_until("redis-server", || async { redis.keys().await.is_ok() }).await;
        redis
    }

    /// The playground's keys in Redis.
    async fn keys(&self) -> redis::RedisResult<Vec<String>> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("KEYS")
            .arg("wasm-playground:*")
            .query_async(&mut conn)
            .await
    }
}

/// A replica sharing `redis`, with a private work dir and local cache.
fn replica(redis: &str) -> ServerProcess {
    ServerProcess::spawn(
        // nginx, on this machine, names the client in X-Forwarded-For.
        &[
            "--redis-url",
            redis,
            "--fuel",
            "50000000",
            "--trusted-proxies",
            "127.0.0.1/32",
        ],
        &[HMAC_KEY, ("WASM_PLAYGROUND_REDIS_TIMEOUT_MS", "200")],
    )
}

async fn metric(server: &ServerProcess, name: &str) -> Option<u64> {
    let text = common::metrics_text(&client(), &server.server.url).await;
    // Counters and gauges here are whole numbers.
    common::metric_value(&text, name).map(|v| v as u64)
}

async fn redis_state(server: &ServerProcess) -> String {
    let (status, v) = common::get_json(&server.server.url, "/readyz").await;
    assert_eq!(status, 200, "{v}");
    v["redis"].as_str().unwrap_or_default().to_string()
}

async fn execute(url: &str, body: &Value) -> Value {
    let resp = client()
        .post(format!("{url}/execute"))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

/// nginx in front of `upstreams`, as one foreground process (no master, so a kill leaves no
/// worker behind), logging which replica answered each request.
struct Nginx {
    _daemon: Daemon,
    url: String,
    access_log: PathBuf,
}

impl Nginx {
    async fn start(dir: &Path, upstreams: &[String]) -> Self {
        let port = free_port();
        let d = dir.display();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("    server {u} max_fails=1 fail_timeout=30s;\n"))
            .collect();
        // `non_idempotent`: an execution has no side effects, so a request whose replica died
        // before answering is safe to send to the next one.
        let conf = format!(
            "daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format upstreams '$request_uri $status $upstream_addr';
  access_log {d}/access.log upstreams;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  client_max_body_size 1m;
  upstream replicas {{
{servers}    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://replicas;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_next_upstream error timeout non_idempotent;
      proxy_connect_timeout 1s;
      proxy_read_timeout 60s;
    }}
  }}
}}
"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let daemon = Daemon::spawn(
            Command::new("nginx")
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&conf_path),
            "nginx",
        );
        let nginx = Self {
            _daemon: daemon,
            url: format!("http://127.0.0.1:{port}"),
            access_log: dir.join("access.log"),
        };
        wait_until("nginx", || async {
            match client().get(format!("{}/healthz", nginx.url)).send().await {
                Ok(resp) => resp.status() == 200,
                Err(_) => false,
            }
        })
        .await;
        nginx
    }
}

/// One request of the mixed load and what it must answer.
struct Job {
    body: Value,
    status: &'static str,
    stdout: String,
}

fn mixed_load(count: usize) -> Vec<Job> {
    (0..count)
        .map(|i| match i % 10 {
            // Cached after the first time on each replica, or in Redis.
            0..=3 => Job {
                body: json!({"code": format!("fn main() {{ println!(\"hello {}\"); }}", i % 4)}),
                status: "ok",
                stdout: format!("hello {}\n", i % 4),
            },
            4 => Job {
                body: json!({
                    "code": "use std::io::Read;\nfn main() { let mut s = String::new(); std::io::stdin().read_to_string(&mut s).unwrap(); print!(\"got {s}\"); }",
                    "stdin": format!("input {i}"),
                }),
                status: "ok",
                stdout: format!("got input {i}"),
            },
            5 => Job {
                body: json!({"code": "fn main() { let v: Vec<u8> = Vec::new(); println!(\"before\"); let _ = v[3]; }"}),
                status: "runtimeError",
                stdout: "before\n".into(),
            },
            6 => Job {
                body: json!({"code": "fn main() { let x: u8 = \"no\"; }"}),
                status: "compileError",
                stdout: String::new(),
            },
            7 => Job {
                body: json!({"code": "fn main() { loop {} }"}),
                status: "outOfFuel",
                stdout: String::new(),
            },
            // Never seen before: a cold compile.
            8 => Job {
                body: json!({"code": format!("fn main() {{ println!(\"unique {i}\"); }}")}),
                status: "ok",
                stdout: format!("unique {i}\n"),
            },
            _ => Job {
                body: json!({"code": "fn main() { println!(\"release\"); }", "mode": "release"}),
                status: "ok",
                stdout: "release\n".into(),
            },
        })
        .collect()
}

#[tokio::test]
async fn three_replicas_behind_nginx_share_redis_and_survive_a_killed_replica() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path(), free_port()).await;
    let a = replica(&redis.url);
    let b = replica(&redis.url);
    let mut c = Some(replica(&redis.url));
    for r in [&a, &b, c.as_ref().unwrap()] {
        wait_until("the replica to reach Redis", || async {
            redis_state(r).await == "up"
        })
        .await;
    }

    // Built on A, then a hit on B that came from Redis (B's own caches never saw it).
    let program = json!({"code": "fn main() { println!(\"shared between replicas\"); }"});
    let first = execute(&a.server.url, &program).await;
    assert_eq!(first["stdout"], "shared between replicas\n");
    assert_eq!(first["timings"]["cached"], false);
    wait_until("A's write to Redis", || async {
        redis.keys().await.map(|k| k.len()).unwrap_or(0) == 1
    })
    .await;
    let second = execute(&b.server.url, &program).await;
    assert_eq!(second["stdout"], "shared between replicas\n");
    assert_eq!(second["timings"]["cached"], true, "{second}");
    assert_eq!(
        metric(&b, "wasm_playground_redis_cache_total{result=\"hit\"}").await,
        Some(1)
    );
    assert_eq!(
        metric(&a, "wasm_playground_redis_cache_total{result=\"write\"}").await,
        Some(1)
    );
    assert_eq!(metric(&b, "wasm_playground_redis_up").await, Some(1));
    let log = b.log.lock().unwrap().clone();
    assert!(log.contains("cache=\"redis\""), "{log}");

    let upstreams: Vec<String> = [&a, &b, c.as_ref().unwrap()]
        .iter()
        .map(|r| r.server.url.trim_start_matches("http://").to_string())
        .collect();
    let killed = upstreams[2].clone();
    let nginx = Nginx::start(dir.path(), &upstreams).await;

    // The mixed load: 6 clients through nginx; replica C is killed a third of the way in.
    let jobs = Arc::new(mixed_load(240));
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..6 {
        let (jobs, next, done, url) = (jobs.clone(), next.clone(), done.clone(), nginx.url.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut failures = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let resp = http
                    .post(format!("{url}/execute"))
                    .json(&job.body)
                    .send()
                    .await;
                let ok = match resp {
                    Ok(resp) if resp.status() == 200 => {
                        let v: Value = resp.json().await.unwrap_or_default();
                        v["status"] == job.status && v["stdout"] == job.stdout.as_str()
                    }
                    _ => false,
                };
                if !ok {
                    failures.push(i);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    wait_until("a third of the load", || async {
        done.load(Ordering::Relaxed) >= jobs.len() / 3
    })
    .await;
    let mut c_process = c.take().unwrap();
    assert!(c_process.is_alive());
    drop(c_process); // SIGKILL: a crash, not a graceful shutdown
    let killed_at = done.load(Ordering::Relaxed);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }

    // nginx sends a request whose replica died (refused, or reset before an answer) to the
    // next one, so not even the requests in flight on C are lost.
    assert_eq!(failures, Vec::<usize>::new(), "failed requests");

    // The access log: which replica answered what. nginx writes a line after the response
    // has gone out, so the last ones may lag a little.
    let executions = |log: &str| log.lines().filter(|l| l.starts_with("/execute ")).count();
    wait_until("nginx's access log", || async {
        executions(&std::fs::read_to_string(&nginx.access_log).unwrap_or_default()) >= jobs.len()
    })
    .await;
    let log = std::fs::read_to_string(&nginx.access_log).unwrap();
    let execs: Vec<&str> = log.lines().filter(|l| l.starts_with("/execute ")).collect();
    assert_eq!(execs.len(), jobs.len(), "one line per request:\n{log}");
    let served_by_c = execs
        .iter()
        .filter(|l| l.ends_with(&killed) && l.contains(" 200 "))
        .count();
    let retried: Vec<&&str> = execs.iter().filter(|l| l.contains(", ")).collect();
    let after_kill = &execs[killed_at + 6..];
    eprintln!(
        "{} requests, {} answered by C before it was killed at ~{killed_at}, {} retried on \
         another replica: {retried:?}",
        execs.len(),
        served_by_c,
        retried.len()
    );
    assert!(served_by_c > 0, "C never served:\n{log}");
    assert!(
        after_kill.iter().all(|l| !l.ends_with(&killed)),
        "a request was answered by the killed replica after its death:\n{log}"
    );
    assert!(execs.iter().all(|l| l.contains(" 200 ")), "{log}");
    // The replicas shared their builds through Redis under the load too.
    let hits = metric(&a, "wasm_playground_redis_cache_total{result=\"hit\"}")
        .await
        .unwrap_or(0)
        + metric(&b, "wasm_playground_redis_cache_total{result=\"hit\"}")
            .await
            .unwrap_or(0);
    assert!(hits > 1, "{hits} Redis hits on A and B");
}

#[tokio::test]
async fn a_replica_keeps_serving_while_redis_is_down_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let redis = Redis::start(dir.path(), port).await;
    let server = replica(&redis.url);
    wait_until("Redis up", || async { redis_state(&server).await == "up" }).await;
    drop(redis);

    // Down: detected by the next command or probe; requests never wait on Redis meanwhile.
    let program = json!({"code": "fn main() { println!(\"without redis\"); }"});
    let started = Instant::now();
    let v = execute(&server.server.url, &program).await;
    assert_eq!(v["stdout"], "without redis\n");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    wait_until("Redis down in /readyz", || async {
        redis_state(&server).await == "down"
    })
    .await;
    let (status, ready) = common::get_json(&server.server.url, "/readyz").await;
    assert_eq!((status, &ready["ready"]), (200, &json!(true)), "{ready}");
    let check = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "redis")
        .unwrap()
        .clone();
    assert!(
        check["detail"].as_str().unwrap().starts_with("down: "),
        "{check}"
    );
    let v = execute(&server.server.url, &program).await;
    assert_eq!(v["timings"]["cached"], true, "the local cache still serves");
    let cold = json!({"code": "fn main() { println!(\"cold without redis\"); }"});
    let v = execute(&server.server.url, &cold).await;
    assert_eq!(
        (&v["stdout"], &v["timings"]["cached"]),
        (&json!("cold without redis\n"), &json!(false))
    );
    assert_eq!(metric(&server, "wasm_playground_redis_up").await, Some(0));
    assert!(
        server
            .log
            .lock()
            .unwrap()
            .contains("Redis is down; serving from the local cache only"),
        "{}",
        server.log.lock().unwrap()
    );

    // Back on the same port: the replica reconnects by itself and writes again.
    let redis = Redis::start(dir.path(), port).await;
    wait_until("Redis up again", || async {
        redis_state(&server).await == "up"
    })
    .await;
    let again = json!({"code": "fn main() { println!(\"after redis came back\"); }"});
    execute(&server.server.url, &again).await;
    wait_until("the write after reconnecting", || async {
        redis.keys().await.map(|k| k.len()).unwrap_or(0) == 1
    })
    .await;
    assert!(server.log.lock().unwrap().contains("Redis is up"));
}
