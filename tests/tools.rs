//! `/format`, `/clippy`, `/compile` and `/meta/versions` through the real HTTP API.

mod common;

use common::{client, server};
use serde_json::{Value, json};

async fn post(path: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .post(format!("{}{path}", server().url))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
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

/// `asm` is the x86-64 code Wasmtime runs, in either syntax, with calls named after their targets
/// (including the fuel and epoch checks Wasmtime inserts).
#[tokio::test]
async fn asm_is_wasmtimes_machine_code() {
    let code = "fn square(x: u64) -> u64 { x * x }\nfn main() { println!(\"{}\", square(std::hint::black_box(7))); }";
    let (status, v) = post(
        "/compile",
        json!({"code": code, "target": "asm", "mode": "debug"}),
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
        json!({"code": code, "target": "asm", "mode": "release", "assemblyFlavor": "intel"}),
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
            "unknown target `exe`, expected one of asm, llvm-ir, mir, wasm",
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
