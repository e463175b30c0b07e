//! The `/live` WebSocket: output as it is written, interactive stdin, kill, errors.

mod common;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect() -> Socket {
    let url = common::server().url.replace("http://", "ws://") + "/live";
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

async fn send(ws: &mut Socket, value: Value) {
    ws.send(Message::Text(value.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON message, with the time it arrived.
async fn next(ws: &mut Socket) -> (Value, Instant) {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("no message within 30 s")
            .expect("socket closed")
            .unwrap();
        if let Message::Text(text) = message {
            return (serde_json::from_str(&text).unwrap(), Instant::now());
        }
    }
}

#[tokio::test]
async fn output_arrives_while_the_program_runs() {
    let mut ws = connect().await;
    let code = "fn main() {\n    for i in 0..3 {\n        println!(\"tick {i}\");\n        std::thread::sleep(std::time::Duration::from_millis(300));\n    }\n}\n";
    send(&mut ws, json!({"type": "run", "code": code})).await;
    assert_eq!(next(&mut ws).await.0, json!({"type": "compiling"}));
    let (compiled, _) = next(&mut ws).await;
    assert_eq!(
        (compiled["type"].as_str(), compiled["success"].as_bool()),
        (Some("compiled"), Some(true))
    );
    let mut ticks = Vec::new();
    for i in 0..3 {
        let (v, at) = next(&mut ws).await;
        assert_eq!(v, json!({"type": "stdout", "data": format!("tick {i}\n")}));
        ticks.push(at);
    }
    // Printed 300 ms apart, so they arrived apart, not all at the end.
    assert!(
        ticks[2].duration_since(ticks[0]) >= Duration::from_millis(400),
        "{ticks:?}"
    );
    let (done, _) = next(&mut ws).await;
    assert_eq!(done["type"], "done");
    assert_eq!(done["status"], "ok");
    assert_eq!(done["stdout"], "tick 0\ntick 1\ntick 2\n");
}

#[tokio::test]
async fn stdin_is_interactive() {
    let mut ws = connect().await;
    let code = "use std::io::BufRead;\nfn main() {\n    println!(\"name?\");\n    let mut line = String::new();\n    std::io::stdin().lock().read_line(&mut line).unwrap();\n    println!(\"hello, {}!\", line.trim());\n}\n";
    send(&mut ws, json!({"type": "run", "code": code})).await;
    loop {
        let (v, _) = next(&mut ws).await;
        if v["type"] == "stdout" {
            assert_eq!(v["data"], "name?\n");
            break;
        }
    }
    send(&mut ws, json!({"type": "stdin", "data": "Ferris\n"})).await;
    let (v, _) = next(&mut ws).await;
    assert_eq!(v, json!({"type": "stdout", "data": "hello, Ferris!\n"}));
    let (done, _) = next(&mut ws).await;
    assert_eq!(
        (done["type"].as_str(), done["status"].as_str()),
        (Some("done"), Some("ok"))
    );
}

/// A live run waits for typed input longer than a batch run may last (`--live-timeout-ms`).
#[tokio::test]
async fn a_live_run_may_wait_for_input_past_the_batch_limit() {
    let server = common::start(wasm_playground::config::Config {
        run_timeout_ms: 500,
        live_timeout_ms: 10_000,
        ..Default::default()
    });
    let code = "fn main() {\n    let mut line = String::new();\n    std::io::stdin().read_line(&mut line).unwrap();\n    print!(\"got {line}\");\n}\n";
    let url = server.url.replace("http://", "ws://") + "/live";
    let mut ws = tokio_tungstenite::connect_async(url).await.unwrap().0;
    send(&mut ws, json!({"type": "run", "code": code})).await;
    assert_eq!(next(&mut ws).await.0, json!({"type": "compiling"}));
    assert_eq!(next(&mut ws).await.0["type"], "compiled");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    send(&mut ws, json!({"type": "stdin", "data": "late\n"})).await;
    assert_eq!(
        next(&mut ws).await.0,
        json!({"type": "stdout", "data": "got late\n"})
    );
    let (done, _) = next(&mut ws).await;
    assert_eq!(
        (done["type"].as_str(), done["status"].as_str()),
        (Some("done"), Some("ok"))
    );

    // Over /execute the batch limit applies (stdin is all there up front, so a sleep waits).
    let sleeper = "fn main() { std::thread::sleep(std::time::Duration::from_millis(1500)); }";
    let v = common::run_on(&server, json!({"code": sleeper})).await;
    assert_eq!(v["status"], "timeout", "{v}");
}

/// A saturated service answers a live run as it would `/execute`: status 503 and the seconds
/// to wait.
#[tokio::test]
async fn a_saturated_service_says_503_and_when_to_retry() {
    let server = common::start(wasm_playground::config::Config {
        max_compiles: 1,
        queue_limit: 0,
        // Both sessions come from one address: the server's queue, not the client's, is full.
        client_max_compiles: 2,
        ..Default::default()
    });
    let url = server.url.replace("http://", "ws://") + "/live";
    // A program that takes rustc a second or more holds the only compile slot.
    let slow: String = (0..3000)
        .map(|i| format!("    println!(\"{i}\");\n"))
        .collect();
    let slow = format!("fn main() {{\n{slow}}}\n");
    let mut first = tokio_tungstenite::connect_async(&url).await.unwrap().0;
    send(&mut first, json!({"type": "run", "code": slow})).await;
    assert_eq!(next(&mut first).await.0, json!({"type": "compiling"}));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut second = tokio_tungstenite::connect_async(&url).await.unwrap().0;
    send(&mut second, json!({"type": "run", "code": "fn main() {}"})).await;
    let refused = loop {
        let (v, _) = next(&mut second).await;
        if v["type"] != "compiling" {
            break v;
        }
    };
    assert_eq!(
        (refused["type"].as_str(), refused["status"].as_u64()),
        (Some("error"), Some(503)),
        "{refused}"
    );
    assert!(refused["retryAfter"].as_u64().unwrap() >= 1, "{refused}");
}

#[tokio::test]
async fn stdin_close_is_end_of_input() {
    let mut ws = connect().await;
    let code = "use std::io::Read;\nfn main() { let mut s = String::new(); std::io::stdin().read_to_string(&mut s).unwrap(); print!(\"{}|\", s.len()); }";
    send(&mut ws, json!({"type": "run", "code": code, "stdin": "ab"})).await;
    send(&mut ws, json!({"type": "stdin", "data": "cd"})).await;
    send(&mut ws, json!({"type": "stdinClose"})).await;
    let done = loop {
        let (v, _) = next(&mut ws).await;
        if v["type"] == "done" {
            break v;
        }
    };
    assert_eq!(done["stdout"], "4|");
}

#[tokio::test]
async fn the_client_can_kill_the_run() {
    let mut ws = connect().await;
    send(
        &mut ws,
        json!({"type": "run", "code": "fn main() { println!(\"spinning\"); loop {} }"}),
    )
    .await;
    loop {
        let (v, _) = next(&mut ws).await;
        if v["type"] == "stdout" {
            break;
        }
    }
    let started = Instant::now();
    send(&mut ws, json!({"type": "kill"})).await;
    assert_eq!(next(&mut ws).await.0, json!({"type": "killed"}));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn compile_errors_and_bad_requests() {
    let mut ws = connect().await;
    send(
        &mut ws,
        json!({"type": "run", "code": "fn main() { let x: u8 = \"a\"; }"}),
    )
    .await;
    assert_eq!(next(&mut ws).await.0["type"], "compiling");
    let (compiled, _) = next(&mut ws).await;
    assert_eq!(compiled["success"], false);
    assert!(
        compiled["compilerOutput"]
            .as_str()
            .unwrap()
            .contains("error[E0308]")
    );
    let (done, _) = next(&mut ws).await;
    assert_eq!(
        (done["type"].as_str(), done["status"].as_str()),
        (Some("done"), Some("compileError"))
    );

    let mut ws = connect().await;
    send(&mut ws, json!({"type": "stdin", "data": "x"})).await;
    assert_eq!(
        next(&mut ws).await.0,
        json!({"type": "error", "error": "the first message must be {\"type\": \"run\", ...}", "status": 400})
    );

    let mut ws = connect().await;
    send(
        &mut ws,
        json!({"type": "run", "code": "fn main() {}", "edition": "1999"}),
    )
    .await;
    let (v, _) = next(&mut ws).await;
    assert_eq!(
        (v["type"].as_str(), v["status"].as_u64()),
        (Some("error"), Some(400))
    );
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("unknown edition `1999`")
    );
}

/// A threaded program's workers write to the same live stream, as they write.
#[tokio::test]
async fn output_from_every_thread_arrives_while_the_program_runs() {
    let mut ws = connect().await;
    let code = "use std::thread;\nuse std::time::Duration;\nfn main() {\n    for i in 0..3 {\n        thread::spawn(move || println!(\"worker {i}\")).join().unwrap();\n        thread::sleep(Duration::from_millis(300));\n    }\n}\n";
    send(&mut ws, json!({"type": "run", "code": code})).await;
    assert_eq!(next(&mut ws).await.0, json!({"type": "compiling"}));
    let (compiled, _) = next(&mut ws).await;
    assert_eq!(compiled["success"], true, "{compiled}");
    let mut arrivals = Vec::new();
    for i in 0..3 {
        let (v, at) = next(&mut ws).await;
        assert_eq!(
            v,
            json!({"type": "stdout", "data": format!("worker {i}\n")})
        );
        arrivals.push(at);
    }
    assert!(
        arrivals[2].duration_since(arrivals[0]) >= Duration::from_millis(400),
        "{arrivals:?}"
    );
    let (done, _) = next(&mut ws).await;
    assert_eq!(done["type"], "done");
    assert_eq!(done["status"], "ok");
    assert_eq!(done["stdout"], "worker 0\nworker 1\nworker 2\n");
}
