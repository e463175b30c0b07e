//! play.rust-lang.org compatibility: its request fields on `/execute`, the legacy
//! `/evaluate.json`, test runs, libraries, channels and program arguments.

mod common;

use common::{client, post_json, run_on, server};
use serde_json::{Value, json};

const TESTS: &str = r#"fn add(a: i32, b: i32) -> i32 { a + b }
fn main() { println!("{}", add(1, 2)); }
#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn adds() { assert_eq!(add(1, 2), 3); }
    #[test]
    fn fails() { println!("inside"); assert_eq!(add(1, 1), 3); }
    #[test]
    #[ignore]
    fn slow() {}
}
"#;

#[tokio::test]
async fn tests_run_one_instance_each_and_report_like_cargo_test() {
    let v = run_on(server(), json!({"code": TESTS, "tests": true})).await;
    assert_eq!(v["status"], "runtimeError");
    assert_eq!(v["exitCode"], 101);
    let stdout = v["stdout"].as_str().unwrap();
    let expected_start = "\nrunning 3 tests\ntest tests::adds ... ok\ntest tests::fails ... FAILED\ntest tests::slow ... ignored\n\nfailures:\n\n---- tests::fails stdout ----\ninside\n\nthread 'tests::fails' (1) panicked at src/main.rs:9:38:\nassertion `left == right` failed\n  left: 2\n right: 3\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\n\nfailures:\n    tests::fails\n\ntest result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in ";
    assert!(stdout.starts_with(expected_start), "{stdout:?}");

    let passing = TESTS.replace("add(1, 1), 3", "add(1, 1), 2");
    let v = run_on(server(), json!({"code": passing, "tests": true})).await;
    assert_eq!(
        (v["status"].as_str(), v["exitCode"].as_i64()),
        (Some("ok"), Some(0))
    );
    assert!(
        v["stdout"]
            .as_str()
            .unwrap()
            .contains("\ntest result: ok. 2 passed; 0 failed; 1 ignored;")
    );
}

#[tokio::test]
async fn a_library_is_compiled_but_not_run() {
    let v = run_on(
        server(),
        json!({"code": "pub fn f() -> u8 { 1 }", "crateType": "lib"}),
    )
    .await;
    assert_eq!(v["status"], "ok");
    assert_eq!(v["success"], true);
    assert_eq!(v["exitCode"], Value::Null);
    assert_eq!(
        v["exitDetail"],
        "Compiled the library (there is nothing to run)"
    );
    let v = run_on(
        server(),
        json!({"code": "pub fn f() -> u8 { \"x\" }", "crateType": "lib"}),
    )
    .await;
    assert_eq!(v["status"], "compileError");
}

#[tokio::test]
async fn arguments_reach_the_program() {
    let code = "fn main() { println!(\"{:?}\", std::env::args().collect::<Vec<_>>()); }";
    let v = run_on(server(), json!({"code": code, "args": ["a", "b c"]})).await;
    assert_eq!(
        v["stdout"],
        "[\"target/debug/playground\", \"a\", \"b c\"]\n"
    );
}

#[tokio::test]
async fn channels_that_are_not_enabled_get_400() {
    let srv = common::start(wasm_playground::config::Config {
        channels: vec![wasm_playground::config::Channel::Stable],
        ..Default::default()
    });
    for channel in ["beta", "nightly"] {
        let (status, v) =
            post_json(&srv, json!({"code": "fn main() {}", "channel": channel})).await;
        assert_eq!(status, 400);
        assert_eq!(
            v["error"],
            format!(
                "the `{channel}` channel is not available on this server (not enabled on this server)"
            )
        );
    }
    let v = run_on(
        &srv,
        json!({"code": "fn main() { print!(\"s\"); }", "channel": "stable"}),
    )
    .await;
    assert_eq!(v["stdout"], "s");
}

/// `./scripts/test` installs beta and nightly with the wasm target (scripts/channels), so all
/// three channels are served.
#[tokio::test]
async fn nightly_is_used_when_installed() {
    // A feature gate compiles on nightly only.
    let code =
        "#![feature(never_type)]\nfn main() { let _x: Option<!> = None; println!(\"nightly\"); }";
    let v = run_on(server(), json!({"code": code, "channel": "nightly"})).await;
    assert_eq!(
        (v["status"].as_str(), v["stdout"].as_str()),
        (Some("ok"), Some("nightly\n")),
        "{v}"
    );
    let v = run_on(server(), json!({"code": code, "channel": "stable"})).await;
    assert_eq!(v["status"], "compileError");
    let (status, versions) = common::get_json(&server().url, "/meta/versions").await;
    assert_eq!(status, 200, "{versions}");
    // Miri is nightly's only (its sysroot prepared at set-up).
    for (channel, tool) in [("nightly", "rustc"), ("beta", "rustc"), ("nightly", "miri")] {
        let version = versions[channel][tool]["version"]
            .as_str()
            .unwrap_or_default();
        assert!(version.contains(channel), "{channel} {tool}: {versions}");
    }
    assert!(versions["stable"].get("miri").is_none(), "{versions}");
}

#[tokio::test]
async fn bad_compat_values_get_400() {
    for (body, message) in [
        (
            json!({"code": "fn main() {}", "channel": "gold"}),
            "unknown channel `gold`, expected stable",
        ),
        (
            json!({"code": "fn main() {}", "crateType": "exe"}),
            "unknown crateType `exe`, expected bin or lib",
        ),
        (
            json!({"code": "fn main() {}", "args": "a b"}),
            "Unable to deserialize request",
        ),
    ] {
        let (status, v) = post_json(server(), body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            v["error"].as_str().unwrap().starts_with(message),
            "{body}: {v}"
        );
    }
}

/// Exactly what play.rust-lang.org's own front end sends to `/execute`.
#[tokio::test]
async fn replays_a_play_rust_lang_org_execute_request() {
    let body = r#"{"channel":"stable","mode":"debug","edition":"2021","crateType":"bin","tests":false,"code":"fn main() {\n    println!(\"Hello, world!\");\n}","backtrace":false}"#;
    let resp = client()
        .post(format!("{}/execute", server().url))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["success"], true);
    assert_eq!(v["exitDetail"], "Exited with status 0");
    assert_eq!(v["stdout"], "Hello, world!\n");
    assert_eq!(v["stderr"], "");
}

async fn evaluate(body: &str) -> (u16, Value) {
    let resp = client()
        .post(format!("{}/evaluate.json", server().url))
        .header("content-type", "application/json")
        .header("origin", "https://rust-lang.github.io")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    (status, resp.json().await.unwrap())
}

/// Exactly what mdBook's `book.js` sends.
#[tokio::test]
async fn evaluate_json_like_mdbook() {
    let (status, v) = evaluate(r#"{"version":"stable","optimize":"0","code":"fn main() {\n    println!(\"Hello, world!\");\n}","edition":"2021"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"result": "Hello, world!\n", "error": null}));

    // Missing edition means 2015, where `async` is an identifier.
    let (_, v) = evaluate(r#"{"version":"stable","optimize":"0","code":"fn main() { let async = 5; println!(\"{}\", async); }"}"#).await;
    assert_eq!(v, json!({"result": "5\n", "error": null}));

    // optimize != "0" is release: no overflow check.
    let (_, v) = evaluate(r#"{"version":"stable","optimize":"2","code":"fn main() { let x: u8 = std::hint::black_box(255); println!(\"{}\", x + 1); }","edition":"2021"}"#).await;
    assert_eq!(v, json!({"result": "0\n", "error": null}));

    let (_, v) = evaluate(r#"{"version":"stable","optimize":"0","code":"fn main() { let x: u8 = \"a\"; }","edition":"2021"}"#).await;
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("error[E0308]: mismatched types"), "{v}");
    assert_eq!(v["result"], error);

    let (_, v) = evaluate(r#"{"version":"stable","optimize":"0","code":"fn main() { panic!(\"oops\"); }","edition":"2021"}"#).await;
    assert_eq!(v["error"], Value::Null);
    assert!(
        v["result"]
            .as_str()
            .unwrap()
            .contains("panicked at src/main.rs:1:13:\noops\n"),
        "{v}"
    );

    let (status, v) = evaluate(r#"{"version":"gold","optimize":"0","code":"fn main() {}"}"#).await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"],
        "unknown channel `gold`, expected stable, beta or nightly"
    );
}
