//! `/format`, `/clippy`, `/compile`, `/macro-expansion`, backtraces and `/meta/versions` through
//! the real HTTP API. Miri has tests/miri.rs.

mod common;

use common::{client, server};
use serde_json::{Value, json};

async fn post(path: &str, body: Value) -> (u16, Value) {
    common::post_to(&server().url, path, body).await
}

#[tokio::test]
async fn format_is_edition_aware_and_reports_errors() {
    let (status, v) = post(
        "/format",
        json!({"code": "fn main(){let x=1;println!(\"{}\",x)}", "edition": "2021"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["success"], true);
    assert_eq!(
        v["code"],
        "fn main() {\n    let x = 1;\n    println!(\"{}\", x)\n}\n"
    );

    // `async fn` needs 2018: under 2015 rustfmt cannot parse it.
    let code = "async fn f() {}\nfn main() {}\n";
    let (_, v) = post("/format", json!({"code": code, "edition": "2021"})).await;
    assert_eq!(
        (v["success"].as_bool(), v["code"].as_str()),
        (Some(true), Some(code))
    );
    let (_, v) = post("/format", json!({"code": code, "edition": "2015"})).await;
    assert_eq!(v["success"], false, "{v}");

    let (_, v) = post("/format", json!({"code": "fn main({", "edition": "2021"})).await;
    assert_eq!(v["success"], false);
    assert_eq!(v["exitDetail"], "rustfmt failed");
    // The code as sent: play.rust-lang.org's frontend puts `code` into its editor regardless.
    assert_eq!(v["code"], "fn main({");
    let stderr = v["stderr"].as_str().unwrap();
    assert!(
        stderr.starts_with(
            "error: this file contains an unclosed delimiter\n --> src/main.rs:1:10\n"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("/tmp") && !stderr.contains("wasm-playground-"),
        "{stderr}"
    );
}

#[tokio::test]
async fn clippy_reports_its_lints() {
    let code = "fn main() {\n    let v = vec![1];\n    if v.len() == 0 {\n        println!(\"empty\");\n    }\n}\n";
    let (status, v) = post(
        "/clippy",
        json!({"code": code, "edition": "2021", "crateType": "bin"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["success"], true);
    let stderr = v["stderr"].as_str().unwrap();
    assert!(
        stderr.contains("warning: length comparison to zero\n --> src/main.rs:3:8"),
        "{stderr}"
    );
    let lint = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["code"] == "clippy::len_zero")
        .unwrap();
    assert_eq!(
        (lint["line"].as_u64(), lint["column"].as_u64()),
        (Some(3), Some(8))
    );

    let (_, v) = post(
        "/clippy",
        json!({"code": "fn main() { let x: u8 = \"a\"; }"}),
    )
    .await;
    assert_eq!(v["success"], false);
    assert!(v["stderr"].as_str().unwrap().contains("error[E0308]"));
}

#[tokio::test]
async fn compile_shows_each_target() {
    let code = "fn main() { println!(\"hi\"); }";
    for (target, starts) in [
        (
            "mir",
            "// WARNING: This output format is intended for human consumers only",
        ),
        ("llvm-ir", "; ModuleID = 'playground."),
        ("asm", "playground::main:\n"),
        ("wasm", "(module $main.wasm"),
    ] {
        let (status, v) = post("/compile", json!({"code": code, "target": target, "edition": "2021", "mode": "debug", "crateType": "bin", "tests": false, "channel": "stable", "assemblyFlavor": "att", "demangleAssembly": "demangle", "processAssembly": "filter", "backtrace": false})).await;
        assert_eq!(status, 200, "{target}");
        assert_eq!(v["success"], true, "{target}: {v}");
        assert!(
            v["code"].as_str().unwrap().starts_with(starts),
            "{target}: {}",
            &v["code"].as_str().unwrap()[..100]
        );
    }
    let (_, v) = post(
        "/compile",
        json!({"code": "fn main() { let x: u8 = \"a\"; }", "target": "mir"}),
    )
    .await;
    assert_eq!(
        (v["success"].as_bool(), v["code"].as_str()),
        (Some(false), Some(""))
    );
    assert!(v["stderr"].as_str().unwrap().contains("error[E0308]"));
}

/// `wasmtime-asm` is the x86-64 code Wasmtime runs, in either syntax, with calls named after
/// their targets (including the fuel and epoch checks Wasmtime inserts).
#[tokio::test]
async fn wasmtime_asm_is_wasmtimes_machine_code() {
    let code = "fn square(x: u64) -> u64 { x * x }\nfn main() { println!(\"{}\", square(std::hint::black_box(7))); }";
    let (status, v) = post(
        "/compile",
        json!({"code": code, "target": "wasmtime-asm", "mode": "debug"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let att = v["code"].as_str().unwrap();
    assert!(att.starts_with("playground::main:\n"), "{att}");
    assert!(att.contains("\nplayground::square:\n"), "{att}");
    assert!(att.contains(":  call    playground::square\n"), "{att}");
    assert!(att.contains("%rsp"), "{att}");

    let (status, v) = post(
        "/compile",
        json!({"code": code, "target": "wasmtime-asm", "mode": "release", "assemblyFlavor": "intel"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let intel = v["code"].as_str().unwrap();
    assert!(intel.starts_with("playground::main:\n"), "{intel}");
    assert!(!intel.contains("playground::square"), "inlined: {intel}");
    assert!(
        intel.contains(":  call    std::io::stdio::_print\n"),
        "{intel}"
    );
    assert!(
        intel.contains(":  call    wasmtime_builtin_out_of_gas\n"),
        "{intel}"
    );
    assert!(!intel.contains('%'), "{intel}");

    let (status, v) = post(
        "/compile",
        json!({"code": code, "target": "asm", "assemblyFlavor": "masm"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"],
        "unknown assemblyFlavor `masm`, expected att or intel"
    );
}

#[tokio::test]
async fn tool_requests_are_validated() {
    for (path, body, message) in [
        (
            "/compile",
            json!({"code": "fn main() {}", "target": "exe"}),
            "unknown target `exe`, expected one of asm, hir, llvm-ir, mir, wasm, wasmtime-asm",
        ),
        (
            "/compile",
            json!({"code": "fn main() {}"}),
            "`target` is missing",
        ),
        (
            "/format",
            json!({"code": "fn main() {}", "edition": "2030"}),
            "unknown edition `2030`",
        ),
        (
            "/clippy",
            json!({"code": "fn main() {}", "channel": "alpha"}),
            "unknown channel `alpha`, expected stable, beta or nightly",
        ),
        ("/format", json!({"code": ""}), "`code` is missing or empty"),
        (
            "/format",
            json!({"edition": "2021"}),
            "Unable to deserialize request",
        ),
    ] {
        let (status, v) = post(path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}");
        assert!(
            v["error"].as_str().unwrap().starts_with(message),
            "{path} {body}: {v}"
        );
    }
}

#[tokio::test]
async fn versions_of_the_toolchain() {
    let resp = client()
        .get(format!("{}/meta/versions", server().url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let rustc = &v["stable"]["rustc"];
    assert_eq!(rustc["version"], "1.95.0");
    assert_eq!(rustc["hash"].as_str().unwrap().len(), 9);
    assert!(
        v["stable"]["rustfmt"]["version"]
            .as_str()
            .unwrap()
            .starts_with("1.")
    );
    assert!(
        v["stable"]["clippy"]["version"]
            .as_str()
            .unwrap()
            .starts_with("0.1.")
    );
}

/// `asm` is what `rustc --emit asm` writes for x86-64 (the lines below are from a native
/// `rustc --crate-type bin -C opt-level=0 -C codegen-units=1 --emit asm` of the same file):
/// filtered to the program's functions and demangled by default, raw and mangled on request,
/// in AT&T or Intel syntax.
#[tokio::test]
async fn asm_is_rustcs_native_assembly() {
    let code = "fn square(x: u64) -> u64 { x * x }\nfn main() { println!(\"{}\", square(std::hint::black_box(7))); }\n";
    let asm = |extra: Value| {
        let mut body = json!({"code": code, "target": "asm", "mode": "debug", "edition": "2024"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        async move {
            let (status, v) = post("/compile", body).await;
            assert_eq!((status, v["success"].as_bool()), (200, Some(true)), "{v}");
            v["code"].as_str().unwrap().to_string()
        }
    };
    let att = asm(json!({})).await;
    assert!(
        att.starts_with("playground::main:\n\tsubq\t$40, %rsp\n"),
        "{att}"
    );
    assert!(att.contains("\taddq\t$40, %rsp\n"), "{att}");
    assert!(att.contains("\nplayground::square:\n"), "{att}");
    assert!(
        !att.contains(".cfi_")
            && !att.contains("\n\t.")
            && !att.contains("\ncore::fmt::Arguments::new:"),
        "{att}"
    );

    let intel = asm(json!({"assemblyFlavor": "intel"})).await;
    assert!(intel.contains("\tadd\trsp, 40\n"), "{intel}");
    assert!(!intel.contains('%'), "{intel}");

    let mangled = asm(json!({"demangleAssembly": "mangle"})).await;
    assert!(mangled.starts_with("_ZN10playground4main17h"), "{mangled}");

    let raw = asm(json!({"processAssembly": "raw"})).await;
    assert!(raw.contains("\t.cfi_startproc\n"), "{raw}");
    assert!(raw.contains("\n\t.globl\tmain\n"), "{raw}");
    assert!(raw.contains("\ncore::fmt::Arguments::new:\n"), "{raw}");

    let (status, v) = post(
        "/compile",
        json!({"code": code, "target": "asm", "processAssembly": "tidy"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"],
        "unknown processAssembly `tidy`, expected filter or raw"
    );
}

#[tokio::test]
async fn llvm_ir_is_for_the_host() {
    let (status, v) = post(
        "/compile",
        json!({"code": "fn main() { println!(\"hi\"); }", "target": "llvm-ir"}),
    )
    .await;
    assert_eq!((status, v["success"].as_bool()), (200, Some(true)), "{v}");
    let ir = v["code"].as_str().unwrap();
    assert!(ir.starts_with("; ModuleID = 'playground."), "{ir}");
    assert!(
        ir.contains("\ntarget datalayout = \"e-m:e-p270:32:32"),
        "{ir}"
    );
    assert!(
        ir.contains("\ntarget triple = \"x86_64-unknown-linux-gnu\"\n"),
        "{ir}"
    );
}

/// HIR and macro expansion are nightly's `-Zunpretty` (the expected lines are nightly's own
/// output for the same file).
#[tokio::test]
async fn hir_and_macro_expansion_come_from_nightly() {
    let code =
        "fn demo() -> impl std::fmt::Display { 42 }\nfn main() { println!(\"{}\", demo()); }\n";
    let (status, v) = post(
        "/compile",
        json!({"code": code, "target": "hir", "channel": "stable", "edition": "2024"}),
    )
    .await;
    assert_eq!((status, v["success"].as_bool()), (200, Some(true)), "{v}");
    let hir = v["code"].as_str().unwrap();
    assert!(
        hir.contains("\nfn demo() -> /*impl Trait*/ { 42 }\n"),
        "{hir}"
    );

    let (status, v) = post("/macro-expansion", json!({"code": code, "edition": "2024"})).await;
    assert_eq!((status, v["success"].as_bool()), (200, Some(true)), "{v}");
    assert_eq!(
        v["stdout"],
        "#![feature(prelude_import)]\nextern crate std;\n#[prelude_import]\nuse std::prelude::rust_2024::*;\nfn demo() -> impl std::fmt::Display { 42 }\nfn main() { { ::std::io::_print(format_args!(\"{0}\\n\", demo())); }; }\n"
    );

    // The offered crates' proc macros expand (nightly's own build of them).
    let tokio = "#[tokio::main(flavor = \"current_thread\")]\nasync fn main() {\n    println!(\"hi\");\n}\n";
    let (_, v) = post(
        "/macro-expansion",
        json!({"code": tokio, "edition": "2021"}),
    )
    .await;
    assert_eq!(v["success"], true, "{v}");
    let expanded = v["stdout"].as_str().unwrap();
    assert!(expanded.contains(".block_on(body)"), "{expanded}");

    let (_, v) = post(
        "/macro-expansion",
        json!({"code": "fn main() { let x: u8 = \"a\"; }"}),
    )
    .await;
    assert_eq!(v["success"], true, "expansion needs no type check: {v}");
    let (_, v) = post(
        "/macro-expansion",
        json!({"code": "fn main() { undefined!(); }"}),
    )
    .await;
    assert_eq!(v["success"], false, "{v}");
    assert!(
        v["stderr"]
            .as_str()
            .unwrap()
            .contains("error: cannot find macro `undefined` in this scope"),
        "{v}"
    );
}

/// With `backtrace: true` a panic prints the frames as native Rust 1.95 does with
/// `RUST_BACKTRACE=1` (the expected lines are a native run's, with its thread id).
#[tokio::test]
async fn backtraces_name_the_frames_and_lines() {
    let code = "fn inner(v: &[i32]) -> i32 {\n    v[3]\n}\n\nfn main() {\n    println!(\"start\");\n    let v = vec![1, 2, 3];\n    println!(\"{}\", inner(&v));\n}\n";
    let v = common::run_on(server(), json!({"code": code, "backtrace": true})).await;
    assert_eq!(v["stdout"], "start\n");
    assert_eq!(v["exitCode"], 101);
    let std = "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library";
    assert_eq!(
        v["stderr"],
        format!(
            "\nthread 'main' (1) panicked at src/main.rs:2:5:\nindex out of bounds: the len is 3 but the index is 3\nstack backtrace:\n   0: __rustc::rust_begin_unwind\n             at {std}/std/src/panicking.rs:689:5\n   1: core::panicking::panic_fmt\n             at {std}/core/src/panicking.rs:80:14\n   2: core::panicking::panic_bounds_check\n             at {std}/core/src/panicking.rs:271:5\n   3: playground::inner\n             at ./src/main.rs:2:5\n   4: playground::main\n             at ./src/main.rs:8:20\n   5: core::ops::function::FnOnce::call_once\n             at {std}/core/src/ops/function.rs:250:5\nnote: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.\n"
        )
    );

    // A closure is named by its path, as natively.
    let closure = "fn main() {\n    let v = vec![1, 2, 3];\n    let third = |v: &[i32]| v[3];\n    println!(\"{}\", third(&v));\n}\n";
    let v = common::run_on(server(), json!({"code": closure, "backtrace": true})).await;
    assert_eq!(
        v["stderr"],
        format!(
            "\nthread 'main' (1) panicked at src/main.rs:3:29:\nindex out of bounds: the len is 3 but the index is 3\nstack backtrace:\n   0: __rustc::rust_begin_unwind\n             at {std}/std/src/panicking.rs:689:5\n   1: core::panicking::panic_fmt\n             at {std}/core/src/panicking.rs:80:14\n   2: core::panicking::panic_bounds_check\n             at {std}/core/src/panicking.rs:271:5\n   3: playground::main::{{{{closure}}}}\n             at ./src/main.rs:3:29\n   4: playground::main\n             at ./src/main.rs:4:20\n   5: core::ops::function::FnOnce::call_once\n             at {std}/core/src/ops/function.rs:250:5\nnote: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.\n"
        )
    );

    // Without it, the output is as before.
    let v = common::run(code).await;
    assert_eq!(
        v["stderr"],
        "\nthread 'main' (1) panicked at src/main.rs:2:5:\nindex out of bounds: the len is 3 but the index is 3\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"
    );
}
