//! Hostile programs through the real HTTP API of the real binary. A unique marker is planted in
//! a file outside the job dir and in the server's environment; it must never come back, every
//! attack gets a precise status, the server stays up, and no temp dir is left behind.

mod common;

use std::time::Duration;

use common::{ServerProcess, client, post_json, run_on};
use serde_json::{Value, json};

const MARKER: &str = "WP-SECRET-MARKER-7f3a9c1e";

struct Hostile {
    server: ServerProcess,
    secret_file: String,
    _secret_dir: tempfile::TempDir,
}

fn start() -> Hostile {
    let secret_dir = tempfile::tempdir().unwrap();
    let secret_file = secret_dir.path().join("secret.txt");
    std::fs::write(&secret_file, format!("{MARKER}\n")).unwrap();
    let server = ServerProcess::spawn(
        &[
            "--compile-cpu-seconds",
            "2",
            "--compile-memory-limit",
            "536870912",
            "--run-timeout-ms",
            "1000",
        ],
        &[("WP_SECRET", MARKER), ("RUSTC_BOOTSTRAP", "1")],
    );
    Hostile {
        server,
        secret_file: secret_file.display().to_string(),
        _secret_dir: secret_dir,
    }
}

/// Runs `code`, checks the marker is absent and the server healthy, returns the answer.
async fn attack(h: &mut Hostile, code: &str) -> Value {
    let v = run_on(&h.server.server, json!({ "code": code })).await;
    let text = v.to_string();
    assert!(
        !text.contains(MARKER),
        "the secret leaked for {code:?}: {text}"
    );
    assert!(h.server.is_alive(), "the server died on {code:?}");
    let hello = run_on(
        &h.server.server,
        json!({"code": "fn main() { println!(\"still here\"); }"}),
    )
    .await;
    assert_eq!(hello["stdout"], "still here\n");
    v
}

/// Runs `code` as an [`attack`] and checks that it was refused at compile time, with one of
/// `any_of` in the compiler's output.
async fn refused(h: &mut Hostile, code: &str, any_of: &[&str]) -> Value {
    let v = attack(h, code).await;
    assert_eq!(v["status"], "compileError", "{code}: {v}");
    let out = v["compilerOutput"].as_str().unwrap();
    assert!(
        any_of.iter().any(|m| out.contains(m)),
        "{code}: expected one of {any_of:?} in {out}"
    );
    v
}

fn assert_denied_read(v: &Value) {
    assert_eq!(v["status"], "compileError", "{v}");
    let out = v["compilerOutput"].as_str().unwrap();
    assert!(
        out.contains("error: cannot read files outside the program"),
        "{out}"
    );
    assert!(
        !out.contains("Permission denied") && !out.contains("No such file"),
        "{out}"
    );
    assert_eq!(
        v["diagnostics"][0]["message"],
        "cannot read files outside the program"
    );
}

#[tokio::test]
async fn compile_time_attacks_are_contained() {
    let mut h = start();
    let secret = h.secret_file.clone();

    // Reading host files at compile time, by every route.
    for code in [
        format!(
            "const S: &str = include_str!(\"{secret}\");\nfn main() {{ println!(\"{{S}}\"); }}"
        ),
        format!("fn main() {{ println!(\"{{:?}}\", include_bytes!(\"{secret}\")); }}"),
        format!("fn main() {{ include!(\"{secret}\"); }}"),
        format!("#[path = \"{secret}\"]\nmod m;\nfn main() {{}}"),
        format!("compile_error!(include_str!(\"{secret}\"));\nfn main() {{}}"),
        "fn main() { println!(\"{}\", include_str!(\"/proc/self/environ\")); }".to_string(),
        "fn main() { println!(\"{}\", include_str!(\"/etc/passwd\")); }".to_string(),
        "fn main() { println!(\"{}\", include_str!(\"/does/not/exist\")); }".to_string(),
        "fn main() { println!(\"{}\", include_bytes!(\"/dev/zero\").len()); }".to_string(),
    ] {
        let v = attack(&mut h, &code).await;
        assert_denied_read(&v);
    }

    // The service's environment is invisible to the compiler.
    refused(
        &mut h,
        "fn main() { println!(\"{}\", env!(\"WP_SECRET\")); }",
        &["environment variable `WP_SECRET` not defined at compile time"],
    )
    .await;
    let v = attack(
        &mut h,
        "fn main() { println!(\"{:?}\", option_env!(\"WP_SECRET\")); }",
    )
    .await;
    assert_eq!(v["stdout"], "None\n");

    // RUSTC_BOOTSTRAP in the server's environment must not unlock unstable features.
    refused(
        &mut h,
        &format!("#[link(kind = \"link-arg\", name = \"--script={secret}\")]\nunsafe extern \"C\" {{}}\nfn main() {{}}"),
        &["link kind `link-arg` is unstable"],
    )
    .await;
    refused(&mut h, "#![feature(never_type)]\nfn main() {}", &["E0554"]).await;

    // Compile-time bombs: CPU, memory, output size.
    let cpu = "error: the compiler used more than its 2 s CPU limit\n";
    let v = refused(
        &mut h,
        "#![allow(long_running_const_eval)]\nconst _: () = loop {};\nfn main() {}",
        &[cpu],
    )
    .await;
    assert!(v["compilerOutput"].as_str().unwrap().ends_with(cpu), "{v}");

    let bomb = "macro_rules! e { () => {1}; ($x:tt $($r:tt)*) => { e!($($r)*) + e!($($r)*) } }\nfn main() { println!(\"{}\", e!(a a a a a a a a a a a a a a a a a a a a a a a a a a a a a a)); }";
    let out_of_memory = "error: the compiler ran out of memory (its limit is 512 MiB)";
    refused(&mut h, bomb, &[out_of_memory, cpu]).await;

    // Depending on the machine, LLVM's buffers or the output file hit their limit first.
    let too_large = "error: the program's code and static data are over the 32 MiB limit on the size of a compiled program";
    refused(&mut h, "static BIG: [u8; 100_000_000] = [0; 100_000_000];\nfn main() { println!(\"{}\", BIG[std::hint::black_box(7)]); }", &[too_large, out_of_memory]).await;
    refused(&mut h, "static BIG: [u8; 500_000_000] = [1; 500_000_000];\nfn main() { println!(\"{}\", BIG[7]); }", &["tried to allocate more memory than available to compiler", too_large, out_of_memory]).await;

    assert_eq!(
        common::leftovers(&h.server.server),
        0,
        "temp dirs left behind"
    );
    let log = h.server.log.lock().unwrap().clone();
    assert!(!log.contains(MARKER), "the secret reached the log");
}

#[tokio::test]
async fn every_tool_is_confined_too() {
    let h = start();
    let secret = &h.secret_file;
    let include = format!("fn main() {{ println!(\"{{}}\", include_str!(\"{secret}\")); }}");
    let mut attacks = vec![(
        "/format",
        "",
        format!("#[path = \"{secret}\"]\nmod m;\nfn main() {{}}\n"),
    )];
    for (path, target) in [
        ("/clippy", ""),
        ("/compile", "mir"),
        ("/compile", "asm"),
        ("/compile", "llvm-ir"),
        ("/compile", "hir"),
        ("/macro-expansion", ""),
        ("/miri", ""),
    ] {
        attacks.push((path, target, include.clone()));
    }
    for (path, target, code) in attacks {
        let resp = client()
            .post(format!("{}{path}", h.server.server.url))
            .json(&json!({"code": code, "target": target}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path} {target}");
        let text = resp.text().await.unwrap();
        assert!(
            !text.contains(MARKER),
            "{path} {target} leaked the secret: {text}"
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["success"], false, "{path} {target}: {v}");
        let stderr = v["stderr"].as_str().unwrap();
        assert!(
            stderr.contains("error: cannot read files outside the program"),
            "{path}: {v}"
        );
        assert!(
            !stderr.contains("Permission denied") && !stderr.contains("exist"),
            "{path}: {v}"
        );
    }
    assert_eq!(common::leftovers(&h.server.server), 0);
}

#[tokio::test]
async fn run_time_attacks_are_contained() {
    let mut h = start();
    let cases = [
        ("fn main() { loop {} }", "timeout"),
        (
            "fn main() { let mut v = Vec::new(); loop { v.push(vec![1u8; 1 << 20]); } }",
            "memoryLimit",
        ),
        (
            "fn main() { loop { print!(\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"); } }",
            "outputLimit",
        ),
        (
            "fn f(n: u64) -> u64 { 1 + f(std::hint::black_box(n + 1)) }\nfn main() { println!(\"{}\", f(0)); }",
            "stackOverflow",
        ),
        (
            "fn main() { let a = [0u8; 8_000_000]; println!(\"{}\", std::hint::black_box(&a)[9]); }",
            "stackOverflow",
        ),
        ("fn main() { std::process::abort(); }", "runtimeError"),
    ];
    for (code, status) in cases {
        let v = attack(&mut h, code).await;
        assert_eq!(v["status"], status, "{code}: {v}");
        assert_eq!(v["exitCode"], Value::Null, "{code}");
    }
    // The guest cannot see the host's environment, files or arguments.
    let code = format!(
        "fn main() {{ println!(\"{{:?}} {{}} {{}}\", std::env::var(\"WP_SECRET\").ok(), std::fs::read_to_string(\"{}\").is_ok(), std::env::args().count()); }}",
        h.secret_file
    );
    let v = attack(&mut h, &code).await;
    assert_eq!(v["stdout"], "None false 1\n");
    assert_eq!(common::leftovers(&h.server.server), 0);
}

/// What an answer must never show: host paths (of the toolchain, the job dir) and addresses.
fn assert_no_host_details(v: &Value) {
    let text = v.to_string();
    for leak in [
        "/root",
        "/home",
        "/tmp",
        ".rustup",
        ".so",
        "0x",
        "wasm-playground-",
    ] {
        assert!(!text.contains(leak), "`{leak}` in {text}");
    }
}

/// The server's threads now.
fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn odd_programs_get_a_sentence_not_a_500() {
    let mut h = start();
    let threads_before = threads(h.server.pid());
    // (program, the last line of compilerOutput)
    let cases = [
        (
            "#[link(wasm_import_module = \"env\")]\nunsafe extern \"C\" { fn evil(); }\nfn main() { unsafe { evil() } }",
            "error: the program imports `env::evil`, a function the sandbox does not provide (it offers WASI preview 1 only)",
        ),
        // The same in a program built for threads (it mentions `spawn`).
        (
            "#[link(wasm_import_module = \"env\")]\nunsafe extern \"C\" { fn evil(); }\nfn main() { std::thread::spawn(|| {}).join().unwrap(); unsafe { evil() } }",
            "error: the program imports `env::evil`, a function the sandbox does not provide (it offers WASI preview 1 only)",
        ),
        (
            "#[link(wasm_import_module = \"wasi_snapshot_preview1\")]\nunsafe extern \"C\" { fn sched_yield(x: i64) -> i64; }\nfn main() { println!(\"{}\", unsafe { sched_yield(1) }); }",
            "error: the program cannot be linked in the sandbox: incompatible import type for `wasi_snapshot_preview1::sched_yield`",
        ),
        (
            "static mut BIG: [u8; 20_000_000] = [0; 20_000_000];\nfn main() { println!(\"{}\", unsafe { std::ptr::addr_of!(BIG).read()[7] }); }",
            "error: the program needs 21102592 bytes of memory before it starts (its static data and stack); the memory limit is 10000000 bytes",
        ),
        (
            "static mut BIG: [u8; 64_000_000] = [0; 64_000_000];\nfn main() { println!(\"{}\", unsafe { std::ptr::addr_of!(BIG).read()[7] }); }",
            "error: the program's code and static data are over the 32 MiB limit on the size of a compiled program",
        ),
        (
            &format!(
                "fn main() {{ let x = {}1{}; println!(\"{{x}}\"); }}",
                "(".repeat(20_000),
                ")".repeat(20_000)
            ),
            "error: the compiler crashed: it ran out of stack (SIGSEGV; the program may be nested too deeply)",
        ),
    ];
    for (code, last_line) in cases {
        let v = attack(&mut h, code).await;
        assert_eq!(v["status"], "compileError", "{v}");
        let out = v["compilerOutput"].as_str().unwrap();
        let last = out.lines().last().unwrap_or_default();
        assert!(
            last.starts_with(last_line),
            "expected {last_line:?}, got {out}"
        );
        assert_no_host_details(&v);
    }
    // The tools crash the same way on the deep nesting, and say so the same way.
    let deep = format!(
        "fn main() {{ let x = {}1{}; }}\n",
        "(".repeat(20_000),
        ")".repeat(20_000)
    );
    for path in ["/format", "/clippy"] {
        let resp = client()
            .post(format!("{}{path}", h.server.server.url))
            .json(&json!({ "code": deep }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["success"], false, "{path}: {v}");
        assert!(
            v["stderr"]
                .as_str()
                .unwrap()
                .contains("error: the compiler crashed: "),
            "{path}: {v}"
        );
        assert_no_host_details(&v);
    }
    assert!(h.server.is_alive());
    assert_eq!(common::leftovers(&h.server.server), 0);
    // Blocking threads linger a while after use; the count must not grow with every attack.
    let threads_after = threads(h.server.pid());
    assert!(
        threads_after <= threads_before + 16,
        "threads {threads_before} -> {threads_after}"
    );
}

#[tokio::test]
async fn client_disconnect_mid_compile_kills_rustc_and_cleans_up() {
    let h = start();
    let url = format!("{}/execute", h.server.server.url);
    let slow = "#![allow(long_running_const_eval)]\nconst _: () = loop {};\nfn main() {}";
    let request = client().post(&url).body(slow).send();
    assert!(
        tokio::time::timeout(Duration::from_millis(700), request)
            .await
            .is_err()
    );
    // The server notices the closed connection, drops the compile, kills rustc's group and
    // removes the job dir, well before rustc's own 2 s CPU limit.
    let work_dir = h.server.server.work_dir.clone();
    let mut clean = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if common::leftovers(&h.server.server) == 0 && !process_in(&work_dir) {
            clean = true;
            break;
        }
    }
    assert!(clean, "rustc or its job dir outlived the request");
}

/// Whether any process but a waiting spare compiler has its working directory under `dir`.
fn process_in(dir: &std::path::Path) -> bool {
    common::processes_in(dir)
        .iter()
        .any(|(_, cwd)| !common::is_waiting_spare(cwd))
}

#[tokio::test]
async fn overload_gets_answers_and_the_server_recovers() {
    let h = start();
    let srv = &h.server.server;
    let programs = [
        "fn main() { loop {} }",
        "fn main() { let mut v = Vec::new(); loop { v.push(vec![7u8; 1 << 20]); } }",
        "fn main() { println!(\"hello\"); }",
    ];
    let requests = (0..64).map(|i| {
        let code = format!("{}\n// request {i}\n", programs[i % 3]);
        async move { (i, post_json(srv, json!({ "code": code })).await) }
    });
    let answers = futures::future::join_all(requests).await;
    let mut served = 0;
    for (i, (status, v)) in answers {
        match status {
            200 => {
                served += 1;
                let expected = ["timeout", "memoryLimit", "ok"][i % 3];
                assert_eq!(v["status"], expected, "request {i}: {v}");
                if i % 3 == 2 {
                    assert_eq!(v["stdout"], "hello\n");
                }
            }
            503 => assert!(
                v["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("the server is busy"),
                "{v}"
            ),
            // One client sends all 64: past its own queue or its burst of new programs it is
            // told so.
            429 => assert!(
                matches!(
                    v["limit"].as_str(),
                    Some("clientCompiles" | "clientCompileRate")
                ),
                "{v}"
            ),
            other => panic!("request {i}: unexpected status {other}: {v}"),
        }
    }
    assert!(served >= 2, "nothing was served");
    let resp = client()
        .post(format!("{}/execute", srv.url))
        .body("fn main() { println!(\"after\"); }")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["stdout"], "after\n");
    let hwm = peak_rss_kib(h.server.pid());
    assert!(hwm < 1_500_000, "server peak RSS {hwm} KiB");
    assert_eq!(common::leftovers(srv), 0);
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let h = ServerProcess::spawn(
        &[
            "--max-compiles",
            "1",
            "--queue-limit",
            "0",
            "--compile-cpu-seconds",
            "2",
            // Both requests come from one address: let it have both slots, so the server's
            // queue (not the client's) is what is full.
            "--client-max-compiles",
            "2",
        ],
        &[],
    );
    let url = format!("{}/execute", h.server.url);
    let slow = client()
        .post(&url)
        .body("#![allow(long_running_const_eval)]\nconst _: () = loop {};\nfn main() {}")
        .send();
    let busy = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        client()
            .post(&url)
            .body("fn main() {}")
            .send()
            .await
            .unwrap()
    };
    let (slow, busy) = tokio::join!(slow, busy);
    assert_eq!(slow.unwrap().status(), 200);
    assert_eq!(busy.status(), 503);
    assert_eq!(busy.headers()["retry-after"], "1");
    let v: Value = busy.json().await.unwrap();
    assert_eq!(
        v["error"],
        "the server is busy (the queue is full); retry in 1 s"
    );
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
