//! The `run` subcommand, as a user types it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run_cli(args: &[&str], stdin: &str) -> Output {
    // A private artifact cache, so runs neither use nor fill the user's.
    let cache = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasm-playground"))
        .args(args)
        .env("WASM_PLAYGROUND_CACHE_DIR", cache.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn program_from_stdin() {
    let out = run_cli(&["run"], "fn main() { println!(\"hi from stdin\"); }");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi from stdin\n");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn program_from_file_with_piped_input_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prog.rs");
    std::fs::write(
        &file,
        "use std::io::Read;\nfn main() { let mut s = String::new(); std::io::stdin().read_to_string(&mut s).unwrap(); eprint!(\"got {}\", s); std::process::exit(7); }",
    )
    .unwrap();
    let out = run_cli(&["run", file.to_str().unwrap()], "input");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "got input");
    assert_eq!(out.status.code(), Some(7));
}

#[test]
fn compile_error_goes_to_stderr_and_exits_1() {
    let out = run_cli(
        &["run", "--edition", "2021"],
        "fn main() { let x: u8 = \"no\"; }",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error[E0308]: mismatched types"),
        "{stderr}"
    );
    assert!(stderr.contains("--> src/main.rs:1:25"), "{stderr}");
    assert_eq!(out.stdout, b"");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn panic_exits_101() {
    let out = run_cli(&["run"], "fn main() {\n    panic!(\"oh no\");\n}\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("thread 'main' (1) panicked at src/main.rs:2:5:\noh no\n"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(101));
}

#[test]
fn limits_apply_from_flags() {
    let out = run_cli(&["run", "--fuel", "100000"], "fn main() { loop {} }");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Ran out of fuel after 100000 units"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(124));
}
