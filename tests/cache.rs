//! The artifact cache, the spare compilers, the compile tiers and the instance pool, end to end
//! over HTTP.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{TestServer, client, metric_value, run_on, start};
use serde_json::{Value, json};
use wasm_playground::config::{CompilerStrategy, Config};

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("`{key}` is not a string in {v}"))
}

fn cached(v: &Value) -> bool {
    v["timings"]["cached"]
        .as_bool()
        .unwrap_or_else(|| panic!("no timings.cached in {v}"))
}

/// The cache files (not temp files) in `dir`.
fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "art"));
    files.sort();
    files
}

/// Waits (bounded) until `dir` holds `n` cache files: disk writes finish after the response.
fn wait_for_files(dir: &Path, n: usize) -> Vec<PathBuf> {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let files = cache_files(dir);
        if files.len() >= n {
            return files;
        }
        assert!(
            Instant::now() < give_up,
            "the disk cache never got {n} files: {files:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const WARNS: &str = "fn main() {\n    let unused = 5;\n    println!(\"cache me\");\n}\n";

#[tokio::test]
async fn identical_request_is_a_cache_hit_with_the_same_answer() {
    let srv = start(Config::default());
    let first = run_on(&srv, json!({"code": WARNS})).await;
    assert!(!cached(&first), "{first}");
    assert_eq!(s(&first, "stdout"), "cache me\n");
    let second = run_on(&srv, json!({"code": WARNS})).await;
    assert!(cached(&second), "{second}");
    for key in ["status", "stdout", "stderr", "compilerOutput", "exitDetail"] {
        assert_eq!(first[key], second[key], "{key}");
    }
    assert_eq!(first["diagnostics"], second["diagnostics"]);
    assert!(s(&second, "compilerOutput").contains("unused variable"));
    assert!(second["timings"]["runMs"].as_f64().unwrap() > 0.0);
    let metrics = common::client()
        .get(format!("{}/metrics", srv.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "wasm_playground_artifact_cache_total{result=\"hit\"} 1",
        "wasm_playground_artifact_cache_total{result=\"miss\"} 1",
    ] {
        assert!(metrics.contains(line), "no `{line}` in\n{metrics}");
    }
}

#[tokio::test]
async fn other_edition_or_mode_is_a_miss() {
    let srv = start(Config::default());
    let code = "fn main() { println!(\"editions\"); }";
    let base = run_on(&srv, json!({"code": code})).await;
    assert!(!cached(&base));
    for body in [
        json!({"code": code, "edition": "2021"}),
        json!({"code": code, "mode": "release"}),
        json!({"code": format!("{code}\n")}),
    ] {
        let v = run_on(&srv, body.clone()).await;
        assert!(!cached(&v), "{body} hit another entry");
        assert_eq!(s(&v, "stdout"), "editions\n");
        let again = run_on(&srv, body.clone()).await;
        assert!(cached(&again), "{body} was not cached");
    }
}

#[tokio::test]
async fn compile_errors_are_cached() {
    let srv = start(Config::default());
    let code = "fn main() {\n    let x: i32 = \"no\";\n}\n";
    let first = run_on(&srv, json!({"code": code})).await;
    assert_eq!(s(&first, "status"), "compileError");
    assert!(!cached(&first));
    let second = run_on(&srv, json!({"code": code})).await;
    assert_eq!(s(&second, "status"), "compileError");
    assert!(cached(&second));
    assert_eq!(first["compilerOutput"], second["compilerOutput"]);
    assert_eq!(first["diagnostics"], second["diagnostics"]);
    assert_eq!(second["diagnostics"][0]["line"], 2);
}

#[tokio::test]
async fn different_stdin_shares_the_build_but_not_the_output() {
    let srv = start(Config::default());
    let code = "use std::io::Read;\nfn main() { let mut s = String::new(); std::io::stdin().read_to_string(&mut s).unwrap(); print!(\"got {s}\"); }";
    for input in ["one", "two"] {
        let v = run_on(&srv, json!({"code": code, "stdin": input})).await;
        assert_eq!(s(&v, "stdout"), format!("got {input}"));
    }
    let v = run_on(&srv, json!({"code": code, "stdin": "three"})).await;
    assert!(cached(&v));
    assert_eq!(s(&v, "stdout"), "got three");
}

#[tokio::test]
async fn concurrent_identical_requests_share_one_build() {
    let srv = start(Config::default());
    let code = "use std::io::Read;\nfn main() { let mut s = String::new(); std::io::stdin().read_to_string(&mut s).unwrap(); println!(\"echo {s}\"); }";
    let requests = (0..8).map(|i| {
        let srv = &srv;
        async move {
            let v = run_on(srv, json!({"code": code, "stdin": format!("{i}")})).await;
            (i, v)
        }
    });
    let answers = futures::future::join_all(requests).await;
    for (i, v) in &answers {
        assert_eq!(s(v, "status"), "ok", "{v}");
        assert_eq!(s(v, "stdout"), format!("echo {i}\n"));
    }
    let built = answers.iter().filter(|(_, v)| !cached(v)).count();
    assert_eq!(built, 1, "exactly one request runs rustc");
    assert_eq!(common::leftovers(&srv), 0);
}

#[tokio::test]
async fn disk_cache_survives_a_restart() {
    let first = start(Config::default());
    let ok = "fn main() { println!(\"from disk\"); }";
    let bad = "fn main() { undefined_function(); }";
    let a = run_on(&first, json!({"code": ok})).await;
    let e = run_on(&first, json!({"code": bad})).await;
    assert_eq!(s(&e, "status"), "compileError");
    wait_for_files(&first.cache_dir, 2);

    // A new server (empty memory) on the same directory.
    let second = start(Config {
        cache_dir: Some(first.cache_dir.clone()),
        ..Config::default()
    });
    let b = run_on(&second, json!({"code": ok})).await;
    assert!(cached(&b), "{b}");
    assert_eq!(s(&b, "stdout"), "from disk\n");
    assert_eq!(a["compilerOutput"], b["compilerOutput"]);
    let e2 = run_on(&second, json!({"code": bad})).await;
    assert!(cached(&e2));
    assert_eq!(e["compilerOutput"], e2["compilerOutput"]);
    assert_eq!(e["diagnostics"], e2["diagnostics"]);
}

/// Damages every cache file of `srv` with `damage`, then checks a new server on the same
/// directory rebuilds instead of trusting the file.
async fn damaged_file_is_rebuilt(damage: impl Fn(&Path)) {
    let first = start(Config::default());
    let code = "fn main() { println!(\"intact\"); }";
    run_on(&first, json!({"code": code})).await;
    let files = wait_for_files(&first.cache_dir, 1);
    for f in &files {
        damage(f);
    }
    let second = start(Config {
        cache_dir: Some(first.cache_dir.clone()),
        ..Config::default()
    });
    let v = run_on(&second, json!({"code": code})).await;
    assert!(!cached(&v), "a damaged file was used: {v}");
    assert_eq!(s(&v, "status"), "ok");
    assert_eq!(s(&v, "stdout"), "intact\n");
    // It is replaced by a good one, which the next server uses.
    wait_for_files(&first.cache_dir, 1);
    let third = start(Config {
        cache_dir: Some(first.cache_dir.clone()),
        ..Config::default()
    });
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let v = run_on(&third, json!({"code": code})).await;
        assert_eq!(s(&v, "stdout"), "intact\n");
        if cached(&v) {
            break;
        }
        // The rewrite had not landed when the third server looked; look again.
        assert!(Instant::now() < give_up, "the file was never rewritten");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn truncated_cache_file_is_ignored() {
    damaged_file_is_rebuilt(|f| {
        let bytes = std::fs::read(f).unwrap();
        std::fs::write(f, &bytes[..bytes.len() / 2]).unwrap();
    })
    .await;
}

#[tokio::test]
async fn corrupted_cache_file_is_ignored() {
    damaged_file_is_rebuilt(|f| {
        let mut bytes = std::fs::read(f).unwrap();
        // A flipped bit in the machine code, near the end of the file.
        let at = bytes.len() - 200;
        bytes[at] ^= 0x10;
        std::fs::write(f, &bytes).unwrap();
    })
    .await;
}

#[tokio::test]
async fn garbage_in_the_cache_dir_is_ignored() {
    let dir = common::scratch_dir("wp-test-garbage-");
    std::fs::write(dir.join("not-a-key.art"), b"hello").unwrap();
    std::fs::write(
        dir.join(format!("{}.art", "ab".repeat(32))),
        b"WPART001 short",
    )
    .unwrap();
    let srv = start(Config {
        cache_dir: Some(dir),
        ..Config::default()
    });
    let v = run_on(&srv, json!({"code": "fn main() { println!(\"fine\"); }"})).await;
    assert_eq!(s(&v, "stdout"), "fine\n");
}

/// The kind byte of a cache file: 1 = Winch code, 2 = Cranelift code.
fn kind_of(file: &Path) -> u8 {
    std::fs::read(file).unwrap()[72]
}

#[tokio::test]
async fn cpu_bound_run_tiers_up_to_cranelift_with_the_same_result() {
    let srv = start(Config {
        tier_up_fuel: 1_000_000,
        // The result is what matters: on a loaded machine Winch code at nice 10 runs slowly.
        run_timeout_ms: 60_000,
        ..Config::default()
    });
    // ~0.3 s of CPU on Winch code: enough to pass the tier-up fuel at an epoch tick.
    let code = "fn main() { let mut h = 0u64; for i in 0..30_000_000u64 { h = std::hint::black_box(h.wrapping_mul(31).wrapping_add(i)); } println!(\"{h}\"); }";
    let expected = {
        let mut h = 0u64;
        for i in 0..30_000_000u64 {
            h = h.wrapping_mul(31).wrapping_add(i);
        }
        format!("{h}\n")
    };
    let first = run_on(&srv, json!({"code": code})).await;
    assert_eq!(s(&first, "status"), "ok", "{first}");
    assert_eq!(s(&first, "stdout"), expected);
    // The disk entry is replaced by Cranelift code once the background compile finishes.
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let files = wait_for_files(&srv.cache_dir, 1);
        if kind_of(&files[0]) == 2 {
            break;
        }
        assert!(Instant::now() < give_up, "never recompiled with Cranelift");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = run_on(&srv, json!({"code": code})).await;
    assert!(cached(&second));
    assert_eq!(s(&second, "stdout"), expected);
    assert_eq!(first["fuelConsumed"], second["fuelConsumed"]);
}

#[tokio::test]
async fn short_runs_stay_on_winch() {
    let srv = start(Config::default());
    run_on(&srv, json!({"code": "fn main() { println!(\"quick\"); }"})).await;
    let files = wait_for_files(&srv.cache_dir, 1);
    assert_eq!(kind_of(&files[0]), 1);
}

#[tokio::test]
async fn every_compiler_strategy_gives_the_same_answers() {
    let programs = [
        ("fn main() { println!(\"hi\"); }", "ok"),
        (
            "fn main() { let v: Vec<u8> = vec![]; v[1]; }",
            "runtimeError",
        ),
        (
            "fn f(n: u64) -> u64 { if n == 0 { 0 } else { 1 + f(std::hint::black_box(n - 1)) } }\nfn main() { println!(\"{}\", f(u64::MAX)); }",
            "stackOverflow",
        ),
    ];
    let mut answers: Vec<Vec<Value>> = Vec::new();
    for compiler in [
        CompilerStrategy::Tiered,
        CompilerStrategy::Cranelift,
        CompilerStrategy::Winch,
    ] {
        let srv = start(Config {
            compiler,
            ..Config::default()
        });
        let mut mine = Vec::new();
        for (code, status) in programs {
            let v = run_on(&srv, json!({"code": code})).await;
            assert_eq!(s(&v, "status"), status, "{compiler:?}: {v}");
            mine.push(v);
        }
        answers.push(mine);
    }
    for other in &answers[1..] {
        for (a, b) in answers[0].iter().zip(other) {
            for key in ["status", "stdout", "stderr", "exitCode"] {
                assert_eq!(a[key], b[key], "{key}");
            }
            // Winch and Cranelift meter fuel at slightly different points (measured: 5102 vs
            // 5154 units for hello world); a stack overflow's count depends on frame sizes.
            if a["status"] != "stackOverflow" {
                let (fa, fb) = (
                    a["fuelConsumed"].as_f64().unwrap(),
                    b["fuelConsumed"].as_f64().unwrap(),
                );
                assert!((fa - fb).abs() <= fa * 0.05, "fuel {fa} vs {fb}");
            }
        }
    }
}

/// Recursion that fits the native stack with Cranelift's frames but not with Winch's bigger ones
/// (measured with the 1 MiB default: Winch overflows from ~14 000 calls, Cranelift at ~17 000):
/// the Winch overflow must be retried on Cranelift, not reported.
#[tokio::test]
async fn moderate_recursion_succeeds_whatever_the_first_tier() {
    let srv: TestServer = start(Config::default());
    let code = "fn depth(n: u32) -> u32 { if n == 0 { 0 } else { 1 + depth(std::hint::black_box(n - 1)) } }\nfn main() { println!(\"{}\", depth(std::hint::black_box(15_000))); }";
    let v = run_on(&srv, json!({"code": code})).await;
    assert_eq!(s(&v, "status"), "ok", "{v}");
    assert_eq!(s(&v, "stdout"), "15000\n");
}

#[tokio::test]
async fn many_concurrent_runs_on_a_small_pool_all_finish() {
    // Two runs at once: a pool of four slots, eight requests.
    let srv = start(Config {
        max_runs: 2,
        ..Config::default()
    });
    let code = "use std::io::Read;\nfn main() { let mut s = String::new(); std::io::stdin().read_to_string(&mut s).unwrap(); std::thread::sleep(std::time::Duration::from_millis(100)); println!(\"slot {s}\"); }";
    run_on(&srv, json!({"code": code, "stdin": "warm"})).await;
    let requests = (0..8).map(|i| {
        let srv = &srv;
        async move {
            (
                i,
                run_on(srv, json!({"code": code, "stdin": format!("{i}")})).await,
            )
        }
    });
    for (i, v) in futures::future::join_all(requests).await {
        assert_eq!(s(&v, "status"), "ok", "{v}");
        assert_eq!(s(&v, "stdout"), format!("slot {i}\n"));
    }
}

#[tokio::test]
async fn memory_limit_holds_with_the_pool_and_a_cached_module() {
    let srv = start(Config::default());
    let code = "fn main() { let n = std::hint::black_box(15_000_000); let b = vec![1u8; n]; println!(\"{}\", b.len()); }";
    for _ in 0..2 {
        let v = run_on(&srv, json!({"code": code})).await;
        assert_eq!(s(&v, "status"), "memoryLimit", "{v}");
    }
    let v = run_on(
        &srv,
        json!({"code": "fn main() { let b = vec![1u8; 8_000_000]; println!(\"{}\", b.len()); }"}),
    )
    .await;
    assert_eq!(s(&v, "stdout"), "8000000\n", "{v}");
}

#[tokio::test]
async fn caches_can_be_turned_off() {
    let srv = start(Config {
        cache_memory_entries: 0,
        cache_disk_bytes: 0,
        ..Config::default()
    });
    let code = "fn main() { println!(\"uncached\"); }";
    for _ in 0..2 {
        let v = run_on(&srv, json!({"code": code})).await;
        assert!(!cached(&v));
        assert_eq!(s(&v, "stdout"), "uncached\n");
    }
    assert!(cache_files(&srv.cache_dir).is_empty());
}

/// The spare compilers' counts on `srv`: (taken, missed).
async fn spares(srv: &TestServer) -> (f64, f64) {
    let text = common::metrics_text(&client(), &srv.url).await;
    let count = |result: &str| {
        let series = format!("wasm_playground_spare_compilers_total{{result=\"{result}\"}}");
        metric_value(&text, &series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    (count("taken"), count("missed"))
}

/// Waits until a spare compiler waits in `srv`'s work dir, and returns its process id.
async fn waiting_spare(srv: &TestServer) -> u32 {
    for _ in 0..200 {
        if let Some((pid, _)) = common::processes_in(&srv.work_dir)
            .into_iter()
            .find(|(_, cwd)| common::is_waiting_spare(cwd))
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no spare compiler started in {}", srv.work_dir.display());
}

#[tokio::test]
async fn spare_compilers_build_the_same_answers_as_fresh_ones() {
    let programs = [
        "fn main() { println!(\"Hello, world!\"); }",
        // A compile error: the same diagnostics, at the same lines.
        "fn main() {\n    let x: i32 = \"one\";\n}",
        // The crate root read again: the file, not the pipe the spare read it from.
        "fn main() { print!(\"{}\", include_str!(\"main.rs\").lines().next().unwrap()); }",
        "fn main() {\n    let v: Vec<u8> = Vec::new();\n    v[3];\n}",
    ];
    let warm = start(Config::default());
    let cold = start(Config {
        warm_compilers: 0,
        ..Config::default()
    });
    waiting_spare(&warm).await;
    for code in programs {
        let (a, b) = (
            run_on(&warm, json!({ "code": code })).await,
            run_on(&cold, json!({ "code": code })).await,
        );
        for key in ["status", "stdout", "stderr", "exitCode", "diagnostics"] {
            assert_eq!(a[key], b[key], "{key} of {code}");
        }
    }
    let third = run_on(&warm, json!({ "code": programs[2] })).await;
    assert_eq!(s(&third, "stdout"), programs[2]);
    // The first was started at start-up; each build started the next one.
    assert_eq!(spares(&warm).await, (4.0, 0.0));
    assert_eq!(spares(&cold).await, (0.0, 0.0));
    assert!(common::processes_in(&cold.work_dir).is_empty());
    assert_eq!(common::leftovers(&warm), 0);
}

#[tokio::test]
async fn a_spare_waits_for_the_options_of_the_last_build() {
    let srv = start(Config::default());
    waiting_spare(&srv).await;
    let run = |code: &str, mode: &str| json!({ "code": code, "mode": mode });
    let hello = "fn main() { println!(\"{}\", 40 + 2); }";
    let runs = [
        (run(hello, "release"), (0.0, 1.0)),
        (run(&format!("{hello}\n// 2"), "release"), (1.0, 1.0)),
        // The debug spare gave way to the release one (one spare per channel by default).
        (run(&format!("{hello}\n// 3"), "debug"), (1.0, 2.0)),
        (run(&format!("{hello}\n// 4"), "debug"), (2.0, 2.0)),
    ];
    for (body, counts) in runs {
        let v = run_on(&srv, body).await;
        assert_eq!(s(&v, "stdout"), "42\n");
        assert_eq!(spares(&srv).await, counts);
    }
    // Clippy starts no spare of its own, so the build after it still finds one.
    let (status, _) = common::post_to(&srv.url, "/clippy", json!({ "code": hello })).await;
    assert_eq!(status, 200);
    let v = run_on(&srv, run(&format!("{hello}\n// 5"), "debug")).await;
    assert_eq!(s(&v, "stdout"), "42\n");
    assert_eq!(spares(&srv).await, (3.0, 2.0));
}

/// Spoils the waiting spare of a fresh server with `spoil` (given its pid and dir), then checks
/// that a build still answers, counted as a miss, and leaves nothing behind.
async fn a_spoiled_spare_gives_way(spoil: impl FnOnce(u32, &Path)) {
    let srv = start(Config::default());
    let pid = waiting_spare(&srv).await;
    let (_, dir) = common::processes_in(&srv.work_dir)
        .into_iter()
        .find(|(p, _)| *p == pid)
        .expect("the spare's dir");
    spoil(pid, &dir);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let code = "fn main() { println!(\"built anyway\"); }";
    let v = run_on(&srv, json!({ "code": code })).await;
    assert_eq!(s(&v, "stdout"), "built anyway\n");
    assert_eq!(spares(&srv).await, (0.0, 1.0));
    assert_ne!(waiting_spare(&srv).await, pid);
    assert_eq!(common::leftovers(&srv), 0);
}

#[tokio::test]
async fn a_spare_that_died_is_replaced_by_a_fresh_compiler() {
    a_spoiled_spare_gives_way(|pid, _| {
        // SAFETY: kill has no memory-safety preconditions; the pid is the server's spare `rustc`.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    })
    .await;
}

#[tokio::test]
async fn a_spare_whose_dir_was_removed_gives_way_to_a_fresh_compiler() {
    // As a cleaner of old temp files might.
    a_spoiled_spare_gives_way(|_, dir| {
        std::fs::remove_dir_all(dir).expect("remove the spare's dir");
    })
    .await;
}

#[tokio::test]
async fn spares_end_with_their_server() {
    let server = common::ServerProcess::spawn(&[], &[]);
    let work_dir = server.server.work_dir.clone();
    waiting_spare(&server.server).await;
    // Killed: the spare's stdin closes, it reads an empty crate and exits.
    drop(server);
    for _ in 0..100 {
        if common::processes_in(&work_dir).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "processes outlived their server: {:?}",
        common::processes_in(&work_dir)
    );
}
