//! The HTTP API end to end: real rustc, real Wasmtime, a real server on loopback.

mod common;

use common::{client, post_json, run, run_on, server};
use serde_json::{Value, json};
use wasm_playground::config::Config;

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string in {v}"))
}

#[tokio::test]
async fn hello_world_as_json() {
    let v = run("fn main() { println!(\"Hello, world!\"); }").await;
    assert_eq!(v["success"], true);
    assert_eq!(s(&v, "status"), "ok");
    assert_eq!(v["exitCode"], 0);
    assert_eq!(s(&v, "exitDetail"), "Exited with status 0");
    assert_eq!(s(&v, "stdout"), "Hello, world!\n");
    assert_eq!(s(&v, "stderr"), "");
    assert_eq!(v["truncated"], false);
    assert!(v["fuelConsumed"].as_u64().unwrap() > 0);
    assert!(v["timings"]["compileMs"].as_f64().unwrap() > 0.0);
    assert!(v["timings"]["runMs"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn hello_world_as_plain_text_body() {
    for content_type in [Some("rext/plain"), Some("text/plain"), None] {
        let mut req = client()
            .post(format!("{}/execute", server().url))
            .body("fn main() { print!(\"hi\"); }");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(s(&v, "stdout"), "hi", "content type {content_type:?}");
    }
}

#[tokio::test]
async fn get_hello() {
    let resp = client()
        .get(format!("{}/hello", server().url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "Hello, world!\n");
}

#[tokio::test]
async fn compile_error_points_at_src_main_rs_and_hides_the_temp_dir() {
    let v = run("fn main() {\n    let x: i32 = \"a\";\n}\n").await;
    assert_eq!(v["success"], false);
    assert_eq!(s(&v, "status"), "compileError");
    assert_eq!(v["exitCode"], Value::Null);
    let out = s(&v, "compilerOutput");
    assert!(out.contains("error[E0308]: mismatched types"), "{out}");
    assert!(out.contains("--> src/main.rs:2:18"), "{out}");
    assert!(
        !out.contains("/tmp") && !out.contains("wasm-playground-"),
        "{out}"
    );
    assert!(!out.contains("__entry"), "{out}");
    let d = &v["diagnostics"][0];
    assert_eq!(d["level"], "error");
    assert_eq!(d["code"], "E0308");
    assert_eq!(d["message"], "mismatched types");
    assert_eq!(d["file"], "src/main.rs");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(2), Some(18))
    );
    assert_eq!(
        v["diagnostics"].as_array().unwrap().len(),
        1,
        "{}",
        v["diagnostics"]
    );
}

#[tokio::test]
async fn warnings_are_reported_for_programs_that_run() {
    let v = run("fn main() {\n    let unused = 1;\n}\n").await;
    assert_eq!(s(&v, "status"), "ok");
    assert!(s(&v, "compilerOutput").contains("warning: unused variable: `unused`"));
    let d = &v["diagnostics"][0];
    assert_eq!((s(d, "level"), d["line"].as_u64()), ("warning", Some(2)));
}

#[tokio::test]
async fn missing_main_is_explained_without_the_stub() {
    let v = run("fn helper() {}\n").await;
    assert_eq!(s(&v, "status"), "compileError");
    let out = s(&v, "compilerOutput");
    assert!(
        out.contains("error[E0601]: `main` function not found"),
        "{out}"
    );
    assert!(
        !out.contains("__entry") && !out.contains("Termination"),
        "{out}"
    );
}

#[tokio::test]
async fn panic_exits_101_with_native_message() {
    let v = run("fn main() {\n    let v: Vec<i32> = Vec::new();\n    v[3];\n}\n").await;
    assert_eq!(s(&v, "status"), "runtimeError");
    assert_eq!(v["exitCode"], 101);
    assert_eq!(s(&v, "exitDetail"), "Exited with status 101");
    assert_eq!(
        s(&v, "stderr"),
        "\nthread 'main' (1) panicked at src/main.rs:3:6:\n\
         index out of bounds: the len is 0 but the index is 3\n\
         note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"
    );
}

#[tokio::test]
async fn panic_flushes_partial_stdout() {
    let v = run("fn main() { print!(\"partial\"); panic!(\"boom {}\", 7); }").await;
    assert_eq!(v["exitCode"], 101);
    assert_eq!(s(&v, "stdout"), "partial");
    assert!(s(&v, "stderr").contains("boom 7\n"));
}

#[tokio::test]
async fn main_returning_err_prints_error_and_exits_1() {
    let code = "#[derive(Debug)]\nstruct Oops(u8);\nfn main() -> Result<(), Oops> {\n    Err(Oops(7))\n}\n";
    let v = run(code).await;
    assert_eq!(s(&v, "status"), "runtimeError");
    assert_eq!(v["exitCode"], 1);
    // The compiler's warning (`Oops.0` is never read) first, as under `cargo run`.
    let stderr = format!("{}Error: Oops(7)\n", s(&v, "compilerOutput"));
    assert_eq!(s(&v, "stderr"), stderr);
}

#[tokio::test]
async fn exit_code_from_main() {
    let v = run("fn main() -> std::process::ExitCode { std::process::ExitCode::from(42) }").await;
    assert_eq!(
        (s(&v, "status"), v["exitCode"].as_i64()),
        ("runtimeError", Some(42))
    );
    assert_eq!(s(&v, "exitDetail"), "Exited with status 42");
    let v = run("fn main() -> std::process::ExitCode { std::process::ExitCode::SUCCESS }").await;
    assert_eq!((s(&v, "status"), v["exitCode"].as_i64()), ("ok", Some(0)));
}

#[tokio::test]
async fn process_exit_keeps_output() {
    let v = run("fn main() { print!(\"bye\"); std::process::exit(3); }").await;
    assert_eq!(
        (s(&v, "status"), v["exitCode"].as_i64()),
        ("runtimeError", Some(3))
    );
    assert_eq!(s(&v, "stdout"), "bye");
}

#[tokio::test]
async fn print_without_newline() {
    let v = run("fn main() { print!(\"no newline\"); }").await;
    assert_eq!(s(&v, "stdout"), "no newline");
}

#[tokio::test]
async fn every_edition_compiles_and_edition_specific_code_differs() {
    for edition in ["2015", "2018", "2021", "2024"] {
        let v = run_on(
            server(),
            json!({"code": "fn main() { println!(\"ok\"); }", "edition": edition}),
        )
        .await;
        assert_eq!(s(&v, "stdout"), "ok\n", "edition {edition}");
    }
    // `async` is a keyword from 2018 on: valid identifier in 2015 only.
    let code = "fn main() { let async = 1; println!(\"{}\", async); }";
    let v = run_on(server(), json!({"code": code, "edition": "2015"})).await;
    assert_eq!(s(&v, "stdout"), "1\n");
    let v = run_on(server(), json!({"code": code, "edition": "2021"})).await;
    assert_eq!(s(&v, "status"), "compileError");
}

#[tokio::test]
async fn release_mode_has_no_overflow_checks() {
    let code = "fn main() { let x: u8 = std::hint::black_box(255); println!(\"{}\", x + 1); }";
    let v = run_on(server(), json!({"code": code, "mode": "release"})).await;
    assert_eq!((s(&v, "status"), s(&v, "stdout")), ("ok", "0\n"));
    let v = run_on(server(), json!({"code": code, "mode": "debug"})).await;
    assert_eq!(v["exitCode"], 101);
    assert!(s(&v, "stderr").contains("attempt to add with overflow"));
}

#[tokio::test]
async fn stdin_is_piped_in_and_empty_by_default() {
    let code = "use std::io::Read;\nfn main() { let mut s = String::new(); std::io::stdin().read_to_string(&mut s).unwrap(); print!(\"[{}]\", s.to_uppercase()); }";
    let v = run_on(server(), json!({"code": code, "stdin": "abc\ndef"})).await;
    assert_eq!(s(&v, "stdout"), "[ABC\nDEF]");
    let v = run(code).await;
    assert_eq!(s(&v, "stdout"), "[]");
}

#[tokio::test]
async fn utf8_split_across_writes_is_decoded_whole() {
    let code = r#"use std::io::Write;
fn main() {
    let crab = "🦀".as_bytes();
    let mut out = std::io::stdout();
    out.write_all(&crab[..1]).unwrap();
    out.flush().unwrap();
    out.write_all(&crab[1..]).unwrap();
    out.flush().unwrap();
}"#;
    let v = run(code).await;
    assert_eq!(s(&v, "stdout"), "🦀");
}

#[tokio::test]
async fn guest_sees_no_args_env_or_files() {
    let code = r#"fn main() {
    println!("args={}", std::env::args().count());
    println!("vars={}", std::env::vars().count());
    println!("file={}", std::fs::read_to_string("/etc/passwd").is_ok());
    println!("dir={}", std::fs::read_dir(".").is_ok());
}"#;
    let v = run(code).await;
    assert_eq!(s(&v, "stdout"), "args=1\nvars=0\nfile=false\ndir=false\n");
}

#[tokio::test]
async fn infinite_loop_with_seed_limits_runs_out_of_fuel() {
    let config = Config {
        fuel: 100_000,
        fuel_yield_interval: 5_000,
        ..Config::default()
    };
    let small = common::start(config);
    let v = run_on(&small, json!({"code": "fn main() { loop {} }"})).await;
    assert_eq!(s(&v, "status"), "outOfFuel");
    assert_eq!(v["exitCode"], Value::Null);
    assert_eq!(s(&v, "exitDetail"), "Ran out of fuel after 100000 units");
    assert_eq!(v["fuelConsumed"], 100_000);
}

#[tokio::test]
async fn infinite_loop_with_default_limits_times_out() {
    let config = Config {
        run_timeout_ms: 1_000,
        ..Config::default()
    };
    let quick = common::start(config);
    let v = run_on(&quick, json!({"code": "fn main() { let mut i = 0u64; loop { i = std::hint::black_box(i + 1); } }"})).await;
    assert_eq!(s(&v, "status"), "timeout");
    assert_eq!(s(&v, "exitDetail"), "Stopped after the 1 s time limit");
    assert_eq!(v["exitCode"], Value::Null);
}

#[tokio::test]
async fn sleeping_past_the_deadline_times_out() {
    let config = Config {
        run_timeout_ms: 500,
        ..Config::default()
    };
    let quick = common::start(config);
    let code = "fn main() { println!(\"start\"); std::thread::sleep(std::time::Duration::from_secs(30)); }";
    let started = std::time::Instant::now();
    let v = run_on(&quick, json!({"code": code})).await;
    assert_eq!(s(&v, "status"), "timeout");
    assert_eq!(s(&v, "stdout"), "start\n");
    assert!(
        started.elapsed().as_secs() < 20,
        "the sleep was not cut short"
    );
}

#[tokio::test]
async fn one_runs_deadline_does_not_shorten_anothers() {
    // A program that needs ~1.2 s of wall clock under a 3 s limit must finish while many short
    // requests come and go: a shared-epoch deadline would kill it early.
    let config = Config {
        run_timeout_ms: 3_000,
        ..Config::default()
    };
    let srv = common::start(config);
    let sleeper = "fn main() { for _ in 0..6 { std::thread::sleep(std::time::Duration::from_millis(200)); } println!(\"done\"); }";
    let long = run_on(&srv, json!({"code": sleeper}));
    let shorts = async {
        for i in 0..6 {
            let v = run_on(
                &srv,
                json!({"code": format!("fn main() {{ println!(\"{i}\"); }}")}),
            )
            .await;
            assert_eq!(s(&v, "stdout"), format!("{i}\n"));
        }
    };
    let (v, ()) = tokio::join!(long, shorts);
    assert_eq!((s(&v, "status"), s(&v, "stdout")), ("ok", "done\n"), "{v}");
}

#[tokio::test]
async fn fifteen_megabyte_box_hits_the_memory_limit() {
    let code = "fn main() { let b = vec![1u8; 15_000_000].into_boxed_slice(); println!(\"{}\", b.len()); }";
    let v = run(code).await;
    assert_eq!(s(&v, "status"), "memoryLimit");
    assert_eq!(
        s(&v, "exitDetail"),
        "Ran out of memory: the limit is 10000000 bytes"
    );
    assert!(s(&v, "stderr").contains("memory allocation of 15000000 bytes failed"));
    assert_eq!(s(&v, "stdout"), "");
}

#[tokio::test]
async fn deep_recursion_is_a_stack_overflow() {
    let code = "fn f(n: u64) -> u64 { if n == 0 { 0 } else { 1 + f(std::hint::black_box(n - 1)) } }\nfn main() { println!(\"{}\", f(u64::MAX)); }";
    let v = run(code).await;
    assert_eq!(s(&v, "status"), "stackOverflow", "{v}");
    assert_eq!(v["exitCode"], Value::Null);
}

#[tokio::test]
async fn huge_stack_array_is_a_stack_overflow() {
    let code =
        "fn main() { let a = [7u8; 4_000_000]; println!(\"{}\", std::hint::black_box(&a)[1234]); }";
    let v = run(code).await;
    assert_eq!(s(&v, "status"), "stackOverflow", "{v}");
}

#[tokio::test]
async fn output_flood_is_capped_and_stopped() {
    let before = rss_kib();
    let v = run("fn main() { loop { println!(\"flood flood flood flood flood flood\"); } }").await;
    assert_eq!(s(&v, "status"), "outputLimit");
    assert_eq!(v["truncated"], true);
    assert_eq!(v["exitCode"], Value::Null);
    assert_eq!(s(&v, "stdout").len(), 1 << 20);
    assert!(s(&v, "stdout").starts_with("flood flood"));
    assert_eq!(
        s(&v, "exitDetail"),
        "Stopped after writing more than 1048576 bytes of output"
    );
    // A second flood, on stderr: the server's memory must not grow with the flood.
    let v = run("fn main() { loop { eprintln!(\"err err err err err err err err err\"); } }").await;
    assert_eq!(s(&v, "status"), "outputLimit");
    assert_eq!(s(&v, "stderr").len(), 1 << 20);
    let after = rss_kib();
    assert!(
        after < before + 200_000,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn bad_requests_get_400_with_a_json_error() {
    let url = format!("{}/execute", server().url);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "application/json",
            b"{not json".to_vec(),
            "Unable to deserialize request",
        ),
        ("application/json", b"".to_vec(), "the JSON body is empty"),
        (
            "application/json",
            b"[1,2]".to_vec(),
            "Unable to deserialize request",
        ),
        (
            "application/json",
            br#"{"edition":"2024"}"#.to_vec(),
            "`code` is missing or empty",
        ),
        (
            "application/json",
            br#"{"code":"   "}"#.to_vec(),
            "`code` is missing or empty",
        ),
        (
            "application/json",
            br#"{"code":42}"#.to_vec(),
            "Unable to deserialize request",
        ),
        (
            "application/json",
            br#"{"code":"fn main(){}","edition":"2023"}"#.to_vec(),
            "unknown edition `2023`, expected one of 2015, 2018, 2021, 2024",
        ),
        (
            "application/json",
            br#"{"code":"fn main(){}","mode":"fast"}"#.to_vec(),
            "unknown mode `fast`, expected debug or release",
        ),
        ("text/plain", b"".to_vec(), "`code` is missing or empty"),
        (
            "text/plain",
            b"fn main() { \xff\xfe }".to_vec(),
            "the body is not valid UTF-8",
        ),
        (
            "application/json",
            b"{\"code\":\"\xff\"}".to_vec(),
            "Unable to deserialize request",
        ),
    ];
    for (ct, body, expected) in cases {
        let resp = client()
            .post(&url)
            .header("content-type", ct)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            400,
            "body {:?}",
            String::from_utf8_lossy(&body)
        );
        let v: Value = resp.json().await.unwrap();
        assert!(
            s(&v, "error").starts_with(expected),
            "body {:?}: got {v}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let body = json!({"code": "fn main() { print!(\"x\"); }", "channel": "stable", "crateType": "bin", "tests": false, "backtrace": false});
    let v = run_on(server(), body).await;
    assert_eq!(s(&v, "stdout"), "x");
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let url = format!("{}/execute", server().url);
    let huge = "a".repeat(300 << 10);
    let resp = client().post(&url).body(huge.clone()).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(s(&v, "error"), "the request body is over the size limit");

    let (status, v) = post_json(
        server(),
        json!({"code": format!("fn main() {{}} //{}", "x".repeat(200 << 10))}),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(
        s(&v, "error"),
        format!(
            "`code` is {} bytes; the limit is 131072 bytes",
            15 + (200 << 10)
        )
    );

    let (status, v) = post_json(
        server(),
        json!({"code": "fn main() {}", "stdin": "y".repeat(100 << 10)}),
    )
    .await;
    assert_eq!(status, 413);
    assert!(s(&v, "error").starts_with("`stdin` is 102400 bytes"));
}

#[tokio::test]
async fn unknown_route_is_a_json_404_and_cors_is_enabled() {
    let resp = client()
        .get(format!("{}/nope", server().url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(s(&v, "error"), "no such endpoint");

    let resp = client()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/execute", server().url),
        )
        .header("origin", "https://example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("access-control-allow-origin"));
    let resp = client()
        .get(format!("{}/hello", server().url))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn eight_concurrent_requests_each_get_their_own_answer() {
    let srv = common::start(Config::default());
    let requests = (0..8).map(|i| {
        let srv = &srv;
        async move {
            let code = format!("fn main() {{ for _ in 0..3 {{ println!(\"request {i}\"); }} }}");
            (i, run_on(srv, json!({"code": code})).await)
        }
    });
    for (i, v) in futures::future::join_all(requests).await {
        assert_eq!(s(&v, "stdout"), format!("request {i}\n").repeat(3));
    }
    assert_eq!(common::leftovers(&srv), 0, "temp dirs left behind");
}

#[tokio::test]
async fn no_temp_dirs_are_left_after_any_outcome() {
    let srv = common::start(Config {
        run_timeout_ms: 500,
        ..Config::default()
    });
    for code in [
        "fn main() {}",
        "fn main() { let x: u8 = \"\"; }",
        "fn main() { panic!() }",
        "fn main() { loop {} }",
        "fn main() { vec![0u8; 50_000_000]; }",
    ] {
        run_on(&srv, json!({"code": code})).await;
    }
    assert_eq!(common::leftovers(&srv), 0);
}
