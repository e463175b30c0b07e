//! One abusive client must not deny the service to anyone else: per-client limits (429 naming
//! the limit), live sessions that wait for input without holding run slots, connection limits
//! and timeouts. Clients are told apart by their address: each test client binds its own
//! loopback address (127.0.0.2, 127.0.0.3, ...).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::ServerProcess;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// A slow compile: 2 s of CPU under `--compile-cpu-seconds 2`.
const SLOW: &str = "#![allow(long_running_const_eval)]\nconst _: () = loop {};\nfn main() {}";
const HELLO: &str = "fn main() { println!(\"hello\"); }";

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// An HTTP client whose connections come from 127.0.0.`last`.
fn client_from(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .local_address(ip(last))
        .build()
        .unwrap()
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

async fn post(server: &ServerProcess, from: u8, path: &str, body: Value) -> Answer {
    post_with(server, from, path, body, &[]).await
}

async fn post_with(
    server: &ServerProcess,
    from: u8,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = client_from(from)
        .post(format!("{}{path}", server.server.url))
        .json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let resp = request.send().await.expect("request");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    Answer {
        status,
        retry_after,
        body: resp.json().await.expect("JSON answer"),
    }
}

async fn metrics(server: &ServerProcess) -> String {
    common::metrics_text(&client_from(1), &server.server.url).await
}

fn metric(text: &str, series: &str) -> f64 {
    common::metric_value(text, series).unwrap_or(0.0)
}

fn assert_hello(a: &Answer) {
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["stdout"], "hello\n", "{}", a.body);
}

#[tokio::test]
async fn one_client_cannot_take_every_compile_slot() {
    let server = ServerProcess::spawn(
        &[
            "--max-compiles",
            "2",
            "--client-max-compiles",
            "1",
            "--client-queue-limit",
            "0",
            "--compile-cpu-seconds",
            "2",
        ],
        &[],
    );
    let s = &server;
    let slow = post(s, 2, "/execute", json!({ "code": SLOW }));
    let others = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let again = post(s, 2, "/execute", json!({ "code": HELLO })).await;
        let tool = post(s, 2, "/format", json!({ "code": HELLO })).await;
        let other = post(s, 3, "/execute", json!({ "code": HELLO })).await;
        (again, tool, other)
    };
    let (slow, (again, tool, other)) = tokio::join!(slow, others);
    assert_eq!(slow.status, 200);
    assert_eq!(slow.body["status"], "compileError");
    let message = "too many compiles at once from your address (the limit is 1 at a time and 0 waiting); retry in 1 s";
    for refused in [&again, &tool] {
        assert_eq!(refused.status, 429, "{}", refused.body);
        assert_eq!(refused.retry_after.as_deref(), Some("1"));
        assert_eq!(
            refused.body,
            json!({"error": message, "limit": "clientCompiles"})
        );
    }
    // The other client was served meanwhile, by the second slot.
    assert_hello(&other);
    let text = metrics(s).await;
    assert_eq!(
        metric(
            &text,
            "wasm_playground_rejections_total{limit=\"clientCompiles\"}"
        ),
        2.0
    );
}

#[tokio::test]
async fn new_compiles_are_rate_limited_per_client_and_cache_hits_are_free() {
    let server = ServerProcess::spawn(
        &[
            "--client-compile-rate",
            "1",
            "--client-compile-burst",
            "2",
            "--trusted-proxies",
            "127.0.0.4/32",
        ],
        &[],
    );
    let s = &server;
    let program = |n: u32| json!({ "code": format!("fn main() {{ println!(\"{n}\"); }}") });
    assert_eq!(post(s, 2, "/execute", program(1)).await.status, 200);
    assert_eq!(post(s, 2, "/execute", program(2)).await.status, 200);
    let refused = post(s, 2, "/execute", program(3)).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.body["limit"], "clientCompileRate");
    let error = refused.body["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "too many new programs compiled from your address (the limit is 1 a minute, 2 at once); retry in "
        ),
        "{error}"
    );
    let secs: u64 = refused.retry_after.unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    // A program the cache holds costs nothing.
    let hit = post(s, 2, "/execute", program(1)).await;
    assert_eq!(
        (hit.status, hit.body["stdout"].as_str()),
        (200, Some("1\n"))
    );
    // Another client has its own bucket.
    assert_eq!(post(s, 3, "/execute", program(3)).await.status, 200);

    // Behind the trusted proxy, each forwarded address is a client of its own ...
    for (n, xff, expected) in [
        (10, "10.1.1.1", 200),
        (11, "10.1.1.1", 200),
        (12, "10.1.1.1", 429),
        (13, "10.1.1.2", 200),
    ] {
        let a = post_with(s, 4, "/execute", program(n), &[("x-forwarded-for", xff)]).await;
        assert_eq!(a.status, expected, "{xff}: {}", a.body);
    }
    // ... but from anyone else the header is ignored: 127.0.0.5 is one client, whatever it says.
    for (n, expected) in [(20, 200), (21, 200), (22, 429)] {
        let a = post_with(
            s,
            5,
            "/execute",
            program(n),
            &[("x-forwarded-for", &format!("10.9.9.{n}"))],
        )
        .await;
        assert_eq!(a.status, expected, "{}", a.body);
    }
}

type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A `/live` socket from 127.0.0.`last`.
async fn live_from(server: &ServerProcess, last: u8) -> Socket {
    let stream = connect_from(server, last).await;
    let url = server.server.url.replace("http://", "ws://") + "/live";
    tokio_tungstenite::client_async(url, stream)
        .await
        .expect("upgrade")
        .0
}

async fn connect_from(server: &ServerProcess, last: u8) -> TcpStream {
    let addr: SocketAddr = server.server.url["http://".len()..].parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(ip(last), 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

async fn send(ws: &mut Socket, value: Value) {
    ws.send(Message::Text(value.to_string().into()))
        .await
        .unwrap();
}

async fn next(ws: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("no message within 60 s")
            .expect("socket closed")
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Skips messages until one of `kind`.
async fn next_of(ws: &mut Socket, kind: &str) -> Value {
    loop {
        let v = next(ws).await;
        if v["type"] == kind || v["type"] == "error" {
            return v;
        }
    }
}

const ASK: &str = "use std::io::BufRead;\nfn main() {\n    println!(\"name?\");\n    let mut line = String::new();\n    std::io::stdin().lock().read_line(&mut line).unwrap();\n    println!(\"hello, {}!\", line.trim());\n}\n";

#[tokio::test]
async fn programs_waiting_for_input_hold_no_run_slot() {
    let server = ServerProcess::spawn(
        &[
            "--max-runs",
            "2",
            "--queue-limit",
            "2",
            "--queue-timeout-ms",
            "2000",
            "--max-live-sessions",
            "7",
            "--client-max-live-sessions",
            "3",
        ],
        &[],
    );
    let s = &server;
    // Six people at an input prompt, three from each of two addresses: three times the run
    // slots.
    let mut waiting = Vec::new();
    for (i, from) in [2, 2, 2, 3, 3, 3].into_iter().enumerate() {
        let mut ws = live_from(s, from).await;
        send(&mut ws, json!({"type": "run", "code": ASK})).await;
        let prompt = next_of(&mut ws, "stdout").await;
        assert_eq!(prompt["data"], "name?\n", "session {i}: {prompt}");
        waiting.push(ws);
    }
    // A fourth from the same address is over its client's limit ...
    let mut extra = live_from(s, 2).await;
    send(&mut extra, json!({"type": "run", "code": ASK})).await;
    assert_eq!(
        next_of(&mut extra, "done").await,
        json!({
            "type": "error",
            "error": "too many live sessions from your address (the limit is 3); retry in 5 s",
            "status": 429,
            "retryAfter": 5,
            "limit": "clientLiveSessions",
        })
    );
    // ... one from elsewhere takes the last place, and the next finds the server full.
    let mut seventh = live_from(s, 4).await;
    send(&mut seventh, json!({"type": "run", "code": ASK})).await;
    assert_eq!(next_of(&mut seventh, "stdout").await["data"], "name?\n");
    waiting.push(seventh);
    let mut full = live_from(s, 5).await;
    send(&mut full, json!({"type": "run", "code": ASK})).await;
    let refused = next_of(&mut full, "done").await;
    assert_eq!(
        (refused["status"].as_u64(), refused["limit"].as_str()),
        (Some(503), Some("liveSessions")),
        "{refused}"
    );

    // `/execute` runs at once although seven programs are running.
    for from in [6, 7, 8] {
        assert_hello(&post(s, from, "/execute", json!({ "code": HELLO })).await);
    }
    let text = metrics(s).await;
    assert_eq!(metric(&text, "wasm_playground_live_sessions"), 7.0);

    // Each waiting program takes a run slot again to finish.
    for (i, ws) in waiting.iter_mut().enumerate() {
        send(ws, json!({"type": "stdin", "data": format!("p{i}\n")})).await;
    }
    for (i, ws) in waiting.iter_mut().enumerate() {
        let done = next_of(ws, "done").await;
        assert_eq!(done["status"], "ok", "{done}");
        assert_eq!(done["stdout"], format!("name?\nhello, p{i}!\n"));
    }
}

#[tokio::test]
async fn idle_and_slow_connections_are_bounded_and_cut() {
    let server = ServerProcess::spawn(
        &[
            "--max-connections",
            "40",
            "--client-max-connections",
            "10",
            "--header-timeout-ms",
            "3000",
            "--body-timeout-ms",
            "1000",
            "--ws-idle-timeout-ms",
            "1000",
        ],
        &[],
    );
    let s = &server;
    // Twenty idle sockets from one address: ten are kept (until the header timeout), the rest
    // closed at once.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(connect_from(s, 2).await);
    }
    let mut closed_at_once = 0;
    for socket in &mut idle {
        let mut byte = [0u8; 1];
        if let Ok(read) =
            tokio::time::timeout(Duration::from_millis(100), socket.read(&mut byte)).await
        {
            assert_eq!(read.unwrap_or(0), 0);
            closed_at_once += 1;
        }
    }
    assert_eq!(closed_at_once, 10);
    // Headers sent a byte at a time never finish within the header timeout.
    let mut slow = connect_from(s, 3).await;
    let started = std::time::Instant::now();
    let mut cut = false;
    for byte in b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n".iter() {
        if slow.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut buf = [0u8; 256];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await
        {
            cut = true;
            break;
        }
    }
    assert!(cut, "a slow header was not cut");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A body that stops coming is cut after the body timeout.
    let mut stalled = connect_from(s, 4).await;
    stalled
        .write_all(b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nfn main")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stalled.read_to_string(&mut answer))
        .await
        .expect("no answer to a stalled body")
        .ok();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        answer.contains("{\"error\":\"the request body did not arrive within the time limit\"}"),
        "{answer}"
    );
    // A WebSocket that never says what to run.
    let mut ws = live_from(s, 5).await;
    assert_eq!(
        next(&mut ws).await,
        json!({"type": "error", "error": "no run message within 1 s", "status": 408})
    );
    // Meanwhile others are served, and the idle sockets are gone after the header timeout.
    assert_hello(&post(s, 6, "/execute", json!({ "code": HELLO })).await);
    for socket in &mut idle {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut byte))
            .await
            .expect("an idle connection outlived the header timeout");
        assert_eq!(read.unwrap_or(0), 0);
    }
    let text = metrics(s).await;
    assert_eq!(
        metric(
            &text,
            "wasm_playground_rejections_total{limit=\"clientConnections\"}"
        ),
        10.0
    );
    // The listener, and at most the few sockets this test still holds or just closed (the
    // WebSocket, the keep-alive connections of the requests above).
    let sockets = open_sockets(server.pid());
    assert!(sockets <= 8, "{sockets} sockets open");
}

/// TCP sockets the process holds open (the listener included).
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

#[tokio::test]
async fn the_memory_cache_is_bounded_in_bytes() {
    let server = ServerProcess::spawn(&["--cache-memory-bytes", "40000000"], &[]);
    // Six programs carrying 6 MB of static data each: ~18 MB each in memory (compiled image,
    // its memory image, the WebAssembly), so at most two fit.
    for n in 0..6u8 {
        let code = format!(
            "static DATA: [u8; 6_000_000] = [{n}; 6_000_000];\nfn main() {{ println!(\"{{}}\", DATA[std::hint::black_box(5_999_999)]); }}"
        );
        let a = post(&server, 2, "/execute", json!({ "code": code })).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["stdout"], format!("{n}\n"), "{}", a.body);
    }
    let text = metrics(&server).await;
    let bytes = metric(&text, "wasm_playground_artifact_cache_memory_bytes");
    let entries = metric(&text, "wasm_playground_artifact_cache_entries");
    assert!(bytes <= 40_000_000.0 && bytes > 0.0, "{bytes} bytes");
    assert!((1.0..=2.0).contains(&entries), "{entries} entries");
}
