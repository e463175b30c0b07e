//! play.rust-lang.org's WebSocket, `/websocket`, with a real client: the messages its frontend
//! sends, and the exact sequences it gets back.

mod common;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const KILLED: &str = "Exited with signal 9 (SIGKILL): kill program";

/// The frontend's first message, as its `websocketMiddleware.ts` writes it.
const CONNECTED: &str = r#"{"type":"websocket/connected","payload":{"iAcceptThisIsAnUnsupportedApi":true},"meta":{"websocket":true,"sequenceNumber":0}}"#;

/// A socket past the handshake: the echo and the feature flags were checked.
async fn connect_to(server: &common::TestServer) -> Socket {
    let url = server.url.replace("http://", "ws://") + "/websocket";
    let mut ws = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0;
    ws.send(Message::Text(CONNECTED.into())).await.unwrap();
    assert_eq!(next_text(&mut ws).await, CONNECTED);
    assert_eq!(
        next(&mut ws).await,
        json!({"type": "featureFlags", "payload": {"multifileThreshold": 1.0}, "meta": {"sequenceNumber": -1}})
    );
    ws
}

async fn connect() -> Socket {
    connect_to(common::server()).await
}

async fn next_text(ws: &mut Socket) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("no message within 30 s")
            .expect("socket closed")
            .unwrap();
        if let Message::Text(text) = message {
            return text.to_string();
        }
    }
}

async fn next(ws: &mut Socket) -> Value {
    serde_json::from_str(&next_text(ws).await).unwrap()
}

async fn send(ws: &mut Socket, kind: &str, payload: Option<Value>, sequence: i64) {
    let mut message =
        json!({"type": kind, "meta": {"websocket": true, "sequenceNumber": sequence}});
    if let Some(payload) = payload {
        message["payload"] = payload;
    }
    ws.send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// Sends a run as the frontend's Run button does.
async fn execute(ws: &mut Socket, sequence: i64, code: &str) {
    let payload = json!({"channel": "stable", "mode": "debug", "edition": "2024", "crateType": "bin", "tests": false, "code": code, "backtrace": false});
    send(
        ws,
        "output/execute/wsExecuteRequest",
        Some(payload),
        sequence,
    )
    .await;
}

fn message(kind: &str, payload: Value, sequence: i64) -> Value {
    let mut message =
        json!({"type": format!("output/execute/{kind}"), "meta": {"sequenceNumber": sequence}});
    if !payload.is_null() {
        message["payload"] = payload;
    }
    message
}

fn begin(sequence: i64) -> Value {
    message("wsExecuteBegin", Value::Null, sequence)
}

fn stdout(text: &str, sequence: i64) -> Value {
    message("wsExecuteStdout", json!(text), sequence)
}

fn stderr(text: &str, sequence: i64) -> Value {
    message("wsExecuteStderr", json!(text), sequence)
}

fn end(success: bool, detail: &str, sequence: i64) -> Value {
    message(
        "wsExecuteEnd",
        json!({"success": success, "exitDetail": detail}),
        sequence,
    )
}

/// Cargo's lines around the compiler's output, as play.rust-lang.org's server shows them.
const COMPILING: &str = "   Compiling playground v0.0.1 (/playground)\n";
const FINISHED: &str = "    Finished `dev` profile [unoptimized + debuginfo] target(s) in 0.00s\n";
const RUNNING: &str = "     Running `target/debug/playground`\n";

/// What a program that compiles without a diagnostic shows before it runs.
fn built(sequence: i64) -> Value {
    stderr(&format!("{COMPILING}{FINISHED}{RUNNING}"), sequence)
}

/// `target(s) in 0.42s` made `target(s) in 0.00s`: the time a build took differs run to run.
fn no_timing(mut v: Value) -> Value {
    if let Some(text) = v["payload"].as_str()
        && let Some((head, tail)) = text.split_once("target(s) in ")
        && let Some(end) = tail.find('s')
    {
        v["payload"] = json!(format!("{head}target(s) in 0.00{}", &tail[end..]));
    }
    v
}

fn is_status(v: &Value) -> bool {
    v["type"] == "output/execute/wsExecuteStatus"
}

/// The next message that is not a `wsExecuteStatus` (those come once a second, wherever).
async fn next_event(ws: &mut Socket) -> Value {
    loop {
        let v = next(ws).await;
        if is_status(&v) {
            let status = &v["payload"];
            assert!(status["totalTimeSecs"].as_f64().unwrap() >= 0.0, "{v}");
            assert!(status["residentSetSizeBytes"].as_u64().is_some(), "{v}");
            continue;
        }
        return no_timing(v);
    }
}

/// Begin, then a status at once, as the frontend's long-run warning needs.
async fn expect_begin(ws: &mut Socket, sequence: i64) {
    assert_eq!(next(ws).await, begin(sequence));
    let status = next(ws).await;
    assert!(is_status(&status), "{status}");
    assert_eq!(status["meta"]["sequenceNumber"], sequence);
}

/// Every non-status message up to and including the run's end.
async fn until_end(ws: &mut Socket) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let v = next_event(ws).await;
        let done = v["type"] == "output/execute/wsExecuteEnd";
        seen.push(v);
        if done {
            return seen;
        }
    }
}

#[tokio::test]
async fn output_is_streamed_while_the_program_runs() {
    let mut ws = connect().await;
    let code = "fn main() {\n    for i in 0..3 {\n        println!(\"tick {i}\");\n        std::thread::sleep(std::time::Duration::from_millis(300));\n    }\n}\n";
    execute(&mut ws, 1, code).await;
    expect_begin(&mut ws, 1).await;
    assert_eq!(next_event(&mut ws).await, built(1));
    let mut ticks = Vec::new();
    for i in 0..3 {
        assert_eq!(next_event(&mut ws).await, stdout(&format!("tick {i}\n"), 1));
        ticks.push(Instant::now());
    }
    assert!(
        ticks[2].duration_since(ticks[0]) >= Duration::from_millis(400),
        "{ticks:?}"
    );
    assert_eq!(
        until_end(&mut ws).await,
        [end(true, "Exited with status 0", 1)]
    );

    // The same socket takes the next run.
    execute(&mut ws, 2, "fn main() { eprintln!(\"to stderr\"); }").await;
    expect_begin(&mut ws, 2).await;
    assert_eq!(
        until_end(&mut ws).await,
        [
            built(2),
            stderr("to stderr\n", 2),
            end(true, "Exited with status 0", 2)
        ]
    );
}

#[tokio::test]
async fn stdin_is_fed_while_the_program_runs() {
    let mut ws = connect().await;
    let code = "use std::io::BufRead;\nfn main() {\n    println!(\"name?\");\n    let mut line = String::new();\n    std::io::stdin().lock().read_line(&mut line).unwrap();\n    println!(\"hello, {}!\", line.trim());\n}\n";
    execute(&mut ws, 3, code).await;
    expect_begin(&mut ws, 3).await;
    assert_eq!(next_event(&mut ws).await, built(3));
    assert_eq!(next_event(&mut ws).await, stdout("name?\n", 3));
    send(
        &mut ws,
        "output/execute/wsExecuteStdin",
        Some(json!("ferris\n")),
        3,
    )
    .await;
    assert_eq!(
        until_end(&mut ws).await,
        [
            stdout("hello, ferris!\n", 3),
            end(true, "Exited with status 0", 3)
        ]
    );
}

#[tokio::test]
async fn stdin_close_is_end_of_input() {
    let mut ws = connect().await;
    let code = "use std::io::Read;\nfn main() {\n    println!(\"reading\");\n    let mut s = String::new();\n    std::io::stdin().read_to_string(&mut s).unwrap();\n    println!(\"{} bytes\", s.len());\n}\n";
    execute(&mut ws, 1, code).await;
    expect_begin(&mut ws, 1).await;
    assert_eq!(next_event(&mut ws).await, built(1));
    assert_eq!(next_event(&mut ws).await, stdout("reading\n", 1));
    send(
        &mut ws,
        "output/execute/wsExecuteStdin",
        Some(json!("ab\n")),
        1,
    )
    .await;
    send(&mut ws, "output/execute/wsExecuteStdinClose", None, 1).await;
    assert_eq!(
        until_end(&mut ws).await,
        [stdout("3 bytes\n", 1), end(true, "Exited with status 0", 1)]
    );
}

const FOREVER: &str = "fn main() {\n    println!(\"started\");\n    loop {\n        std::thread::sleep(std::time::Duration::from_millis(50));\n    }\n}\n";

#[tokio::test]
async fn kill_ends_the_run_as_sigkill_does() {
    let mut ws = connect().await;
    execute(&mut ws, 4, FOREVER).await;
    expect_begin(&mut ws, 4).await;
    assert_eq!(next_event(&mut ws).await, built(4));
    assert_eq!(next_event(&mut ws).await, stdout("started\n", 4));
    // A kill for another run is ignored.
    send(&mut ws, "output/execute/wsExecuteKill", None, 3).await;
    send(&mut ws, "output/execute/wsExecuteKill", None, 4).await;
    assert_eq!(until_end(&mut ws).await, [end(false, KILLED, 4)]);

    execute(&mut ws, 5, "fn main() { println!(\"again\"); }").await;
    expect_begin(&mut ws, 5).await;
    assert_eq!(
        until_end(&mut ws).await,
        [
            built(5),
            stdout("again\n", 5),
            end(true, "Exited with status 0", 5)
        ]
    );
}

#[tokio::test]
async fn a_new_request_replaces_the_running_one() {
    let mut ws = connect().await;
    execute(&mut ws, 1, FOREVER).await;
    expect_begin(&mut ws, 1).await;
    assert_eq!(next_event(&mut ws).await, built(1));
    assert_eq!(next_event(&mut ws).await, stdout("started\n", 1));
    execute(&mut ws, 2, "fn main() { println!(\"two\"); }").await;
    assert_eq!(next_event(&mut ws).await, end(false, KILLED, 1));
    expect_begin(&mut ws, 2).await;
    assert_eq!(
        until_end(&mut ws).await,
        [
            built(2),
            stdout("two\n", 2),
            end(true, "Exited with status 0", 2)
        ]
    );
}

#[tokio::test]
async fn compiler_diagnostics_come_first_on_stderr() {
    let mut ws = connect().await;
    let code = "fn main() {\n    let x: i32 = \"a\";\n}\n";
    execute(&mut ws, 1, code).await;
    expect_begin(&mut ws, 1).await;
    // rustc 1.95's own text (`rustc --edition 2024 src/main.rs`).
    let rendered = "error[E0308]: mismatched types\n --> src/main.rs:2:18\n  |\n2 |     let x: i32 = \"a\";\n  |            ---   ^^^ expected `i32`, found `&str`\n  |            |\n  |            expected due to this\n\nerror: aborting due to 1 previous error\n\nFor more information about this error, try `rustc --explain E0308`.\n";
    assert_eq!(
        until_end(&mut ws).await,
        [
            stderr(&format!("{COMPILING}{rendered}"), 1),
            end(false, "Compilation failed", 1)
        ]
    );

    // Warnings, then what the program writes.
    let code = "fn main() {\n    let unused = 1;\n    eprintln!(\"hi\");\n}\n";
    execute(&mut ws, 2, code).await;
    expect_begin(&mut ws, 2).await;
    let warning = "warning: unused variable: `unused`\n --> src/main.rs:2:9\n  |\n2 |     let unused = 1;\n  |         ^^^^^^ help: if this is intentional, prefix it with an underscore: `_unused`\n  |\n  = note: `#[warn(unused_variables)]` (part of `#[warn(unused)]`) on by default\n\nwarning: 1 warning emitted\n\n";
    assert_eq!(
        until_end(&mut ws).await,
        [
            stderr(&format!("{COMPILING}{warning}{FINISHED}{RUNNING}"), 2),
            stderr("hi\n", 2),
            end(true, "Exited with status 0", 2)
        ]
    );
}

#[tokio::test]
async fn bad_messages_get_an_error_and_the_socket_stays_open() {
    let mut ws = connect().await;
    ws.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(
        next(&mut ws).await,
        json!({"type": "websocket/error", "payload": {"error": "Unable to deserialize request: expected ident at line 1 column 2"}, "meta": {"sequenceNumber": -1}})
    );
    send(&mut ws, "output/execute/wsExecuteNothing", None, 1).await;
    assert_eq!(
        next(&mut ws).await,
        json!({"type": "websocket/error", "payload": {"error": "Unable to deserialize request: unknown message type `output/execute/wsExecuteNothing`"}, "meta": {"sequenceNumber": -1}})
    );

    // A run that cannot start still ends, so the frontend's spinner stops.
    let payload = json!({"channel": "fast", "mode": "debug", "edition": "2024", "crateType": "bin", "tests": false, "code": "fn main() {}", "backtrace": false});
    send(&mut ws, "output/execute/wsExecuteRequest", Some(payload), 7).await;
    let why = "unknown channel `fast`, expected stable, beta or nightly";
    assert_eq!(
        next(&mut ws).await,
        json!({"type": "websocket/error", "payload": {"error": why}, "meta": {"sequenceNumber": 7}})
    );
    assert_eq!(next(&mut ws).await, end(false, why, 7));

    let payload = json!({"code": [{"name": "../main.rs", "content": "fn main() {}"}]});
    send(&mut ws, "output/execute/wsExecuteRequest", Some(payload), 8).await;
    expect_begin(&mut ws, 8).await;
    let why = "the file name `../main.rs` is not a path inside the package (use names like `src/utils.rs`)";
    assert_eq!(
        until_end(&mut ws).await,
        [
            json!({"type": "websocket/error", "payload": {"error": why}, "meta": {"sequenceNumber": 8}}),
            end(false, why, 8)
        ]
    );

    execute(&mut ws, 9, "fn main() { println!(\"still here\"); }").await;
    expect_begin(&mut ws, 9).await;
    assert_eq!(
        until_end(&mut ws).await,
        [
            built(9),
            stdout("still here\n", 9),
            end(true, "Exited with status 0", 9)
        ]
    );
}

#[tokio::test]
async fn a_socket_without_the_handshake_is_dropped() {
    let url = common::server().url.replace("http://", "ws://") + "/websocket";
    let mut ws = tokio_tungstenite::connect_async(url).await.unwrap().0;
    let request = json!({"type": "output/execute/wsExecuteRequest", "payload": {}, "meta": {"sequenceNumber": 1}});
    ws.send(Message::Text(request.to_string().into()))
        .await
        .unwrap();
    assert_closed(&mut ws).await;
}

/// Waits (10 s at most) for the server to close `ws`, with no message before.
async fn assert_closed(ws: &mut Socket) {
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return true,
                Some(Ok(Message::Text(text))) => panic!("unexpected {text}"),
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true));
}

/// A session ends at `--ws-session-timeout-ms`, idle or not: an idle page holds a socket only
/// so long.
#[tokio::test]
async fn a_session_is_closed_at_its_time_limit() {
    let server = common::start(wasm_playground::config::Config {
        ws_session_timeout_ms: 1000,
        ..Default::default()
    });
    let mut ws = connect_to(&server).await;
    assert_closed(&mut ws).await;
}

/// A saturated service refuses a run over the socket as `/execute` would with a 503: an error,
/// then the run's end.
#[tokio::test]
async fn a_saturated_service_refuses_and_ends_the_run() {
    let server = common::start(wasm_playground::config::Config {
        max_compiles: 1,
        queue_limit: 0,
        // Both sockets come from one address: the server's queue, not the client's, is full.
        client_max_compiles: 2,
        ..Default::default()
    });
    // A program that takes rustc a second or more holds the only compile slot.
    let slow: String = (0..3000)
        .map(|i| format!("    println!(\"{i}\");\n"))
        .collect();
    let slow = format!("fn main() {{\n{slow}}}\n");
    let mut first = connect_to(&server).await;
    execute(&mut first, 1, &slow).await;
    expect_begin(&mut first, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut second = connect_to(&server).await;
    execute(&mut second, 1, "fn main() {}").await;
    expect_begin(&mut second, 1).await;
    let seen = until_end(&mut second).await;
    let error = seen[0]["payload"]["error"].as_str().unwrap().to_string();
    assert!(error.starts_with("the server is busy ("), "{error}");
    assert_eq!(
        seen,
        [
            json!({"type": "websocket/error", "payload": {"error": error}, "meta": {"sequenceNumber": 1}}),
            end(false, &error, 1)
        ]
    );
}

/// A test run streams `cargo test`'s report once, not what the harness does to get it (its
/// listing of the tests, each test's own run).
#[tokio::test]
async fn tests_are_reported_as_cargo_test_prints_them() {
    let mut ws = connect().await;
    let payload = json!({"channel": "stable", "mode": "debug", "edition": "2024", "crateType": "lib", "tests": true, "code": "#[test]\nfn awesome() {\n    println!(\"inside\");\n}\n", "backtrace": false});
    send(&mut ws, "output/execute/wsExecuteRequest", Some(payload), 1).await;
    expect_begin(&mut ws, 1).await;
    let seen = until_end(&mut ws).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    let finished = "    Finished `test` profile [unoptimized + debuginfo] target(s) in 0.00s\n";
    assert_eq!(seen[0], stderr(&format!("{COMPILING}{finished}"), 1));
    let report = seen[1]["payload"].as_str().unwrap();
    assert_eq!(seen[1]["type"], "output/execute/wsExecuteStdout");
    assert!(
        report.starts_with("\nrunning 1 test\ntest awesome ... ok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in "),
        "{report}"
    );
    assert_eq!(seen[2], end(true, "Exited with status 0", 1));
}

#[tokio::test]
async fn status_reports_the_programs_cpu_time_and_memory() {
    let mut ws = connect().await;
    // 8 MiB in use, then waiting for input: memory, but no CPU, while it waits.
    let code = "use std::io::Read;\nfn main() {\n    let v = vec![1u8; 8 << 20];\n    println!(\"ready {}\", v.iter().map(|&b| b as usize).sum::<usize>());\n    std::io::stdin().read_to_end(&mut Vec::new()).unwrap();\n}\n";
    execute(&mut ws, 1, code).await;
    assert_eq!(next(&mut ws).await, begin(1));
    loop {
        let v = next(&mut ws).await;
        if v == stdout("ready 8388608\n", 1) {
            break;
        }
        assert!(is_status(&v) || no_timing(v.clone()) == built(1), "{v}");
    }
    let waiting = Instant::now();
    let status = loop {
        let v = next(&mut ws).await;
        assert!(is_status(&v), "{v}");
        if waiting.elapsed() >= Duration::from_millis(1500) {
            break v["payload"].clone();
        }
    };
    let memory = status["residentSetSizeBytes"].as_u64().unwrap();
    assert!(memory >= 8 << 20 && memory % 65536 == 0, "{status}");
    let cpu = status["totalTimeSecs"].as_f64().unwrap();
    assert!(cpu > 0.0 && cpu < 1.5, "{status}");
    send(&mut ws, "output/execute/wsExecuteStdinClose", None, 1).await;
    assert_eq!(
        until_end(&mut ws).await,
        [end(true, "Exited with status 0", 1)]
    );
}

/// A library that builds cleanly still shows cargo's lines: the frontend hides an empty pane.
#[tokio::test]
async fn a_library_build_shows_cargos_lines() {
    let mut ws = connect().await;
    let payload = json!({"channel": "stable", "mode": "release", "edition": "2024", "crateType": "lib", "tests": false, "code": "pub fn f() {}\n", "backtrace": false});
    send(&mut ws, "output/execute/wsExecuteRequest", Some(payload), 1).await;
    expect_begin(&mut ws, 1).await;
    let finished = "    Finished `release` profile [optimized] target(s) in 0.00s\n";
    assert_eq!(
        until_end(&mut ws).await,
        [
            stderr(&format!("{COMPILING}{finished}"), 1),
            end(true, "Compiled the library (there is nothing to run)", 1)
        ]
    );
}
