//! Threaded programs through the HTTP API of the real binary: what they print (generated from
//! native builds, `rustc --edition 2024 x.rs && ./x`), each limit, and the server's OS threads
//! after every hostile case.

mod common;

use std::time::{Duration, Instant};

use common::{ServerProcess, TestServer, client, run_on};
use serde_json::{Value, json};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/threads/{name}.rs",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).expect("fixture")
}

async fn run(server: &TestServer, code: &str) -> Value {
    run_on(server, json!({ "code": code })).await
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// Names of the server's OS threads, from /proc/PID/task/*/comm.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("/proc")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

/// Waits until the server runs no guest thread (they are joined once a run ends, and at most
/// a teardown later when the client went away).
async fn no_guest_threads(pid: u32, case: &str) {
    let started = Instant::now();
    loop {
        let guests = thread_names(pid)
            .iter()
            .filter(|n| n.starts_with("guest-thread") || n.starts_with("guest-controll"))
            .count();
        if guests == 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{case}: {guests} guest threads left: {:?}",
            thread_names(pid)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn threaded_programs_print_what_native_prints() {
    let server = ServerProcess::spawn(&[], &[]);
    let cases = [
        (
            "spawn_join",
            "vector in the thread: [1, 2, 3]\njoined: 6\nsquares: [0, 1, 4, 9]\n",
        ),
        (
            "channels",
            "12 messages: [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3), (2, 0), (2, 1), (2, 2), (2, 3)]\n\
             rendezvous: one\nrendezvous: two\nrendezvous: three\n",
        ),
        (
            "locks",
            "Result: 800\nbarrier leaders: 1\ncondvar: started = true\nrwlock: read [1, 2, 3], now [1, 2, 3, 4]\n",
        ),
        (
            "scoped",
            "scope: total 21 and numbers [1, 2, 3, 4, 5, 6, 7]\nthread-local: main 10, thread 1\n\
             named: Some(\"worker-7\")\nslept: [30, 10, 20]\n",
        ),
    ];
    for (name, stdout) in cases {
        let v = run(&server.server, &fixture(name)).await;
        assert_eq!(text(&v, "status"), "ok", "{name}: {v}");
        assert_eq!(text(&v, "stdout"), stdout, "{name}");
        assert_eq!(text(&v, "stderr"), "", "{name}");
        no_guest_threads(server.pid(), name).await;
    }
}

/// Natively the worker's panic message is printed, `join` returns `Err` and the program goes
/// on (`joined: true`, exit 0); on wasm32 std aborts on panic, so the program ends there with
/// the same message and status 101 (README: "Threads").
#[tokio::test]
async fn a_panic_in_a_thread_prints_the_native_message_and_ends_the_program() {
    let server = ServerProcess::spawn(&[], &[]);
    let v = run(&server.server, &fixture("panic_thread")).await;
    assert_eq!(text(&v, "status"), "runtimeError", "{v}");
    assert_eq!(v["exitCode"], 101);
    assert_eq!(text(&v, "stdout"), "before\n");
    assert_eq!(
        text(&v, "stderr"),
        "\nthread 'worker' (2) panicked at src/main.rs:8:13:\nboom in the worker\n\
         note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"
    );
    no_guest_threads(server.pid(), "panic").await;
}

#[tokio::test]
async fn limits_hold_for_the_whole_program_and_no_thread_is_left() {
    let server = ServerProcess::spawn(&["--run-timeout-ms", "1500", "--max-threads", "4"], &[]);
    let pid = server.pid();
    let s = &server.server;
    // Warm up (pools, blocking threads), then take the baseline.
    let v = run(s, "fn main() { println!(\"hi\"); }").await;
    assert_eq!(text(&v, "status"), "ok");
    let baseline = thread_names(pid).len();

    // The fourth spawn is refused as the OS refuses it natively; the program goes on.
    let over = r#"use std::thread;
fn main() {
    let mut handles = Vec::new();
    for i in 0..5 {
        match thread::Builder::new().spawn(move || { thread::sleep(std::time::Duration::from_millis(200)); i }) {
            Ok(h) => handles.push(h),
            Err(e) => println!("spawn {i} failed: {:?}", e.kind()),
        }
    }
    let sum: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    println!("sum {sum}");
}
"#;
    let v = run(s, over).await;
    assert_eq!(text(&v, "status"), "ok", "{v}");
    assert_eq!(
        text(&v, "stdout"),
        "spawn 3 failed: WouldBlock\nspawn 4 failed: WouldBlock\nsum 3\n"
    );
    no_guest_threads(pid, "over the limit").await;

    // Spinning workers burn the one budget or reach the one deadline.
    let spin = "use std::thread;\nfn main() {\n    let hs: Vec<_> = (0..3).map(|_| thread::spawn(|| { let mut x = 0u64; loop { x = std::hint::black_box(x + 1); } })).collect();\n    for h in hs { h.join().unwrap(); }\n}\n";
    let v = run(s, spin).await;
    let status = text(&v, "status");
    assert!(status == "timeout" || status == "outOfFuel", "{v}");
    no_guest_threads(pid, "spinning workers").await;

    // Two threads waiting on each other's lock: the deadline ends them.
    let deadlock = r#"use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;
fn main() {
    let a = Arc::new(Mutex::new(0));
    let b = Arc::new(Mutex::new(0));
    let (a2, b2) = (a.clone(), b.clone());
    let t = thread::spawn(move || {
        let _x = b2.lock().unwrap();
        thread::sleep(Duration::from_millis(100));
        let _y = a2.lock().unwrap();
    });
    let _x = a.lock().unwrap();
    thread::sleep(Duration::from_millis(100));
    let _y = b.lock().unwrap();
    println!("never");
    t.join().unwrap();
}
"#;
    let v = run(s, deadlock).await;
    assert_eq!(text(&v, "status"), "timeout", "{v}");
    assert_eq!(text(&v, "exitDetail"), "Stopped after the 1.5 s time limit");
    assert_eq!(text(&v, "stdout"), "");
    no_guest_threads(pid, "deadlock").await;

    // `main` returning ends the program, as natively, whatever its threads do.
    let returns = "use std::thread;\nfn main() {\n    for _ in 0..3 { thread::spawn(|| loop { std::hint::spin_loop(); }); }\n    println!(\"main returns\");\n}\n";
    let v = run(s, returns).await;
    assert_eq!(text(&v, "status"), "ok", "{v}");
    assert_eq!(text(&v, "stdout"), "main returns\n");
    no_guest_threads(pid, "main returns").await;

    // The shared memory is bounded by the memory limit (plus the stacks' allowance).
    let hog = "use std::thread;\nfn main() {\n    let t = thread::spawn(|| { let v = vec![1u8; 64 << 20]; v.len() });\n    println!(\"{}\", t.join().unwrap());\n}\n";
    let v = run(s, hog).await;
    assert_eq!(text(&v, "status"), "memoryLimit", "{v}");
    assert_eq!(
        text(&v, "stderr"),
        "memory allocation of 67108864 bytes failed\n\
         note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"
    );
    no_guest_threads(pid, "memory").await;

    // A client that goes away: the run is stopped and its threads joined.
    let join_forever = "use std::thread;\nfn main() {\n    let t = thread::spawn(|| loop { thread::park(); });\n    t.join().unwrap();\n}\n";
    let request = client()
        .post(format!("{}/execute", s.url))
        .json(&json!({ "code": join_forever }))
        .timeout(Duration::from_millis(700))
        .send()
        .await;
    assert!(request.is_err(), "the request should have timed out");
    no_guest_threads(pid, "client gone").await;

    // Idle blocking-pool threads end after 10 s; by then the count is back to the baseline.
    let started = Instant::now();
    while thread_names(pid).len() > baseline {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "threads: {} > baseline {baseline}: {:?}",
            thread_names(pid).len(),
            thread_names(pid)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// wasm has no `available_parallelism`; the service sets `RAYON_NUM_THREADS` so rayon uses as
/// many workers as natively (the cores, at most `--max-threads` - 1). The crates' own programs
/// are in tests/fixtures/crates/ (rayon.rs, crossbeam.rs), run by tests/crates.rs.
#[tokio::test]
async fn rayon_uses_as_many_workers_as_natively() {
    let server = ServerProcess::spawn(&[], &[]);
    let code = "fn main() {\n    println!(\"{}\", rayon::current_num_threads());\n    println!(\"{}\", std::env::var(\"RAYON_NUM_THREADS\").unwrap());\n}\n";
    let v = run(&server.server, code).await;
    let cores = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(15);
    assert_eq!(text(&v, "status"), "ok", "{v}");
    assert_eq!(text(&v, "stdout"), format!("{cores}\n{cores}\n"));
    no_guest_threads(server.pid(), "rayon").await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Starts `code` on `/live` and waits for its first line of output.
async fn live_until_output(server: &TestServer, code: &str) -> (Socket, String) {
    use futures::{SinkExt, StreamExt};
    let url = server.url.replace("http://", "ws://") + "/live";
    let mut ws = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0;
    let run = json!({"type": "run", "code": code}).to_string();
    ws.send(tokio_tungstenite::tungstenite::Message::Text(run.into()))
        .await
        .expect("send");
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("no message within 60 s")
            .expect("socket closed")
            .expect("message");
        if let tokio_tungstenite::tungstenite::Message::Text(message) = message {
            let v: Value = serde_json::from_str(&message).expect("json");
            match v["type"].as_str() {
                Some("stdout") => return (ws, text(&v, "data").to_string()),
                Some("compiling" | "compiled") => {}
                _ => panic!("unexpected {v}"),
            }
        }
    }
}

/// Spawned threads take their instances from the server's pool of thread slots,
/// `(max-threads - 1) x max-runs` of them. A live run that waits for input gives back its run
/// slot but keeps its threads, so runs can outnumber that; then a spawn fails as natively when
/// the OS refuses, and the program goes on.
#[tokio::test]
async fn a_spawn_the_server_cannot_hold_fails_as_natively() {
    use futures::SinkExt;
    let server = ServerProcess::spawn(&["--max-runs", "1", "--max-threads", "4"], &[]);
    let s = &server.server;
    let waiting = "use std::io::BufRead;\nuse std::thread;\nfn main() {\n    let workers: Vec<_> = (0..3).map(|_| thread::spawn(|| thread::park())).collect();\n    println!(\"{} workers waiting\", workers.len());\n    let mut line = String::new();\n    std::io::stdin().lock().read_line(&mut line).unwrap();\n}\n";
    let (mut live, out) = live_until_output(s, waiting).await;
    assert_eq!(out, "3 workers waiting\n");

    let spawner = "use std::thread;\nfn main() {\n    match thread::Builder::new().spawn(|| 1) {\n        Ok(h) => println!(\"joined {}\", h.join().unwrap()),\n        Err(e) => println!(\"Builder::spawn: {e:?}\"),\n    }\n    thread::spawn(|| ()).join().unwrap();\n}\n";
    let v = run(s, spawner).await;
    assert_eq!(text(&v, "status"), "runtimeError", "{v}");
    assert_eq!(text(&v, "exitDetail"), "Exited with status 101");
    assert_eq!(
        text(&v, "stdout"),
        "Builder::spawn: Os { code: 6, kind: WouldBlock, message: \"Resource temporarily unavailable\" }\n"
    );
    // Natively (as a user with `ulimit -u 1`) the same, with Linux's errno 11 (README:
    // "Threads") and the OS thread id.
    assert_eq!(
        text(&v, "stderr"),
        "\nthread 'main' (1) panicked at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/thread/functions.rs:131:29:\n\
         failed to spawn thread: Os { code: 6, kind: WouldBlock, message: \"Resource temporarily unavailable\" }\n\
         note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"
    );

    // Once the live run ends, its slots are back.
    let line = json!({"type": "stdin", "data": "\n"}).to_string();
    live.send(tokio_tungstenite::tungstenite::Message::Text(line.into()))
        .await
        .expect("send");
    no_guest_threads(server.pid(), "live run ended").await;
    let v = run(s, spawner).await;
    assert_eq!(text(&v, "status"), "ok", "{v}");
    assert_eq!(text(&v, "stdout"), "joined 1\n");
}

/// With `backtrace: true` a threaded program's panic prints the frames as native Rust 1.95
/// does under `RUST_BACKTRACE=1` (the expected lines are a native run's, but for the thread
/// id); a panicking worker ends the program, as without `backtrace` (README: "Threads").
#[tokio::test]
async fn backtraces_of_threaded_programs_are_native() {
    let server = ServerProcess::spawn(&[], &[]);
    let std = "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library";
    let top = format!(
        "stack backtrace:\n   0: __rustc::rust_begin_unwind\n             at {std}/std/src/panicking.rs:689:5\n   1: core::panicking::panic_fmt\n             at {std}/core/src/panicking.rs:80:14\n   2: core::panicking::panic_bounds_check\n             at {std}/core/src/panicking.rs:271:5\n   3: playground::inner\n             at ./src/main.rs:4:5\n"
    );
    let note =
        "note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.\n";

    let v = run_on(
        &server.server,
        json!({"code": fixture("backtrace_main"), "backtrace": true}),
    )
    .await;
    assert_eq!(text(&v, "exitDetail"), "Exited with status 101", "{v}");
    assert_eq!(text(&v, "stdout"), "1\n");
    assert_eq!(
        text(&v, "stderr"),
        format!(
            "\nthread 'main' (1) panicked at src/main.rs:4:5:\nindex out of bounds: the len is 3 but the index is 3\n{top}   4: playground::main\n             at ./src/main.rs:14:20\n   5: core::ops::function::FnOnce::call_once\n             at {std}/core/src/ops/function.rs:250:5\n{note}"
        )
    );

    let v = run_on(
        &server.server,
        json!({"code": fixture("backtrace_worker"), "backtrace": true}),
    )
    .await;
    assert_eq!(text(&v, "exitDetail"), "Exited with status 101", "{v}");
    assert_eq!(text(&v, "stdout"), "start\n");
    assert_eq!(
        text(&v, "stderr"),
        format!(
            "\nthread 'worker' (2) panicked at src/main.rs:4:5:\nindex out of bounds: the len is 3 but the index is 3\n{top}   4: playground::main::{{{{closure}}}}\n             at ./src/main.rs:13:13\n{note}"
        )
    );
    no_guest_threads(server.pid(), "backtraces").await;
}

/// `#[test]`s of a program that uses threads are built for the threads target too, and report
/// as `cargo test` does (natively: `./t --test-threads 1`, but for the thread id).
#[tokio::test]
async fn tests_that_spawn_threads_run_them() {
    let server = ServerProcess::spawn(&[], &[]);
    let v = run_on(
        &server.server,
        json!({"code": fixture("tests_mode"), "tests": true}),
    )
    .await;
    assert_eq!(text(&v, "status"), "runtimeError", "{v}");
    assert_eq!(v["exitCode"], 101);
    let expected = "\nrunning 3 tests\ntest tests::scoped_threads ... ok\ntest tests::sums_in_threads ... ok\ntest tests::wrong_sum ... FAILED\n\n\
        failures:\n\n---- tests::wrong_sum stdout ----\n\nthread 'tests::wrong_sum' (1) panicked at src/main.rs:44:9:\n\
        assertion `left == right` failed\n  left: 3\n right: 4\n\
        note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\n\n\
        failures:\n    tests::wrong_sum\n\n\
        test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in ";
    let stdout = text(&v, "stdout");
    assert!(stdout.starts_with(expected), "{stdout:?}");
    no_guest_threads(server.pid(), "tests").await;
}
