//! The offered crates (issue #7), through the HTTP API of a real server: the programs the issue
//! names, one program per crate (tests/fixtures/crates/NAME.rs and its expected stdout NAME.out),
//! `GET /meta/crates`, and a server whose crates were never built.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use common::{TestServer, client, run_on, start};
use futures::StreamExt;
use serde_json::{Value, json};
use wasm_playground::config::Config;

/// Runs the set-up (`wasm-playground build-crates`, a cargo no-op once built) so this file also
/// works on its own, then starts a server with the default crates directory.
fn server() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/Cargo.toml");
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_wasm-playground"))
            .arg("build-crates")
            .arg("--manifest-path")
            .arg(manifest)
            .stdin(std::process::Stdio::null())
            .status()
            .expect("run build-crates");
        assert!(status.success(), "build-crates failed: {status}");
        // Long queue waits: the per-crate test sends every program at once.
        start(Config {
            queue_timeout_ms: 600_000,
            ..Config::default()
        })
    })
}

async fn run(code: &str, stdin: &str) -> Value {
    run_on(server(), json!({ "code": code, "stdin": stdin })).await
}

/// Asserts a successful run with exactly `stdout` and nothing on stderr.
fn assert_output(v: &Value, stdout: &str) {
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["stdout"], stdout, "{v}");
    assert_eq!(v["stderr"], "", "{v}");
}

const GUESSING_GAME: &str = r#"use std::cmp::Ordering;
use std::io;

use rand::prelude::*;

fn main() {
    println!("Guess the number!");
    let secret_number = rand::rng().random_range(1..=100);
    loop {
        println!("Please input your guess.");
        let mut guess = String::new();
        io::stdin().read_line(&mut guess).expect("Failed to read line");
        let guess: u32 = match guess.trim().parse() {
            Ok(num) => num,
            Err(_) => continue,
        };
        println!("You guessed: {guess}");
        match guess.cmp(&secret_number) {
            Ordering::Less => println!("Too small!"),
            Ordering::Greater => println!("Too big!"),
            Ordering::Equal => {
                println!("You win!");
                break;
            }
        }
    }
}
"#;

#[tokio::test]
async fn the_books_guessing_game_reads_guesses_from_stdin() {
    // A word (skipped by `continue`), then every number in order: the last guess wins.
    let mut stdin = String::from("forty\n");
    for n in 1..=100 {
        stdin.push_str(&format!("{n}\n"));
    }
    let v = run(GUESSING_GAME, &stdin).await;
    let stdout = v["stdout"].as_str().unwrap_or_default();
    let secret: u32 = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("You guessed: "))
        .next_back()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no guess in {v}"));
    assert!((1..=100).contains(&secret), "{v}");
    let mut expected = String::from("Guess the number!\nPlease input your guess.\n");
    for n in 1..secret {
        expected.push_str(&format!(
            "Please input your guess.\nYou guessed: {n}\nToo small!\n"
        ));
    }
    expected.push_str(&format!(
        "Please input your guess.\nYou guessed: {secret}\nYou win!\n"
    ));
    assert_output(&v, &expected);
}

#[tokio::test]
async fn serde_json_round_trips_a_derived_struct() {
    let code = r#"use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Book {
    title: String,
    pages: u32,
    tags: Vec<String>,
}

fn main() {
    let book = Book { title: "The Book".into(), pages: 552, tags: vec!["rust".into()] };
    let json = serde_json::to_string(&book).unwrap();
    println!("{json}");
    let back: Book = serde_json::from_str(&json).unwrap();
    println!("{back:?} equal={}", back == book);
}
"#;
    let expected = "{\"title\":\"The Book\",\"pages\":552,\"tags\":[\"rust\"]}\n\
         Book { title: \"The Book\", pages: 552, tags: [\"rust\"] } equal=true\n";
    assert_output(&run(code, "").await, expected);
    // Beta and nightly load their own builds of the crates (scripts/channels makes them; a
    // rustc cannot load libraries another rustc built).
    for channel in ["beta", "nightly"] {
        let v = run_on(server(), json!({"code": code, "channel": channel})).await;
        assert_output(&v, expected);
    }
}

#[tokio::test]
async fn a_regex_finds_and_replaces() {
    let code = r#"use regex::Regex;

fn main() {
    let re = Regex::new(r"(?<user>[a-z]+)@(?<host>[a-z.]+)").unwrap();
    let text = "mail alice@example.org or bob@rust-lang.org";
    for caps in re.captures_iter(text) {
        println!("{} at {}", &caps["user"], &caps["host"]);
    }
    println!("{}", re.replace_all(text, "<$user>"));
}
"#;
    let v = run(code, "").await;
    assert_output(
        &v,
        "alice at example.org\nbob at rust\nmail <alice> or <bob>-lang.org\n",
    );
}

#[tokio::test]
async fn a_seeded_rng_gives_the_native_numbers() {
    // The expected values come from the same program built natively with rand 0.10.4.
    let v = run(include_str!("fixtures/crates/rand.rs"), "").await;
    assert_output(&v, include_str!("fixtures/crates/rand.out"));
}

#[tokio::test]
async fn a_tokio_current_thread_runtime_runs_tasks_and_timers() {
    let code = r#"use std::time::{Duration, Instant};

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let start = Instant::now();
        let slow = tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            "slow"
        });
        let fast = tokio::spawn(async { "fast" });
        println!("{}", fast.await.unwrap());
        println!("{}", slow.await.unwrap());
        println!("waited: {}", start.elapsed() >= Duration::from_millis(50));
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move { tx.send(42).unwrap() });
        println!("got {}", rx.await.unwrap());
    });
}
"#;
    let v = run(code, "").await;
    assert_output(&v, "fast\nslow\nwaited: true\ngot 42\n");
}

/// Every offered crate, by one program each; all are sent at once and wait for compile slots.
#[tokio::test]
async fn every_offered_crate_works_on_wasm32_wasip1() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/crates");
    let mut programs: Vec<(String, String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let code = std::fs::read_to_string(&p).unwrap();
            let out = std::fs::read_to_string(p.with_extension("out")).unwrap();
            (name, code, out)
        })
        .collect();
    programs.sort();

    // One program per crate of /meta/crates, and no other.
    let listed = meta_crates(server()).await;
    let ids: Vec<&str> = listed["crates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    let mut names: Vec<&str> = programs.iter().map(|(n, _, _)| n.as_str()).collect();
    let mut sorted_ids = ids.clone();
    sorted_ids.sort();
    names.sort();
    assert_eq!(names, sorted_ids);

    let results: Vec<(String, String, Value)> = futures::stream::iter(programs)
        .map(|(name, code, out)| async move {
            let v = run(&code, "").await;
            (name, out, v)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut failures = Vec::new();
    for (name, out, v) in &results {
        if v["status"] != "ok" || v["stdout"] != *out || v["stderr"] != "" {
            failures.push(format!(
                "{name}: status {}, stdout {}, stderr {}\n{}",
                v["status"], v["stdout"], v["stderr"], v["compilerOutput"]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

async fn meta_crates(server: &TestServer) -> Value {
    let resp = client()
        .get(format!("{}/meta/crates", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn meta_crates_lists_name_version_and_id() {
    let v = meta_crates(server()).await;
    let crates = v["crates"].as_array().unwrap();
    assert_eq!(crates.len(), 35, "{v}");
    assert!(crates.contains(&json!({"name": "rayon", "version": "1.12.0", "id": "rayon"})));
    assert!(crates.contains(&json!({"name": "md-5", "version": "0.10.6", "id": "md5"})));
    assert!(crates.contains(&json!({"name": "rand", "version": "0.10.4", "id": "rand"})));
    assert!(crates.contains(&json!({"name": "tokio", "version": "1.54.1", "id": "tokio"})));
    let names: Vec<&str> = crates.iter().map(|c| c["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    // mdBook's book.js POSTs for the same list.
    let posted: Value = client()
        .post(format!("{}/meta/crates", server().url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(posted, v);
}

#[tokio::test]
async fn a_crate_error_points_into_the_program_not_the_host() {
    let v = run(
        "fn main() { let s: String = serde_json::to_string(&std::time::Instant::now()).unwrap(); }",
        "",
    )
    .await;
    assert_eq!(v["status"], "compileError", "{v}");
    let output = v["compilerOutput"].as_str().unwrap();
    assert!(output.contains("error[E0277]"), "{output}");
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    assert!(!output.contains(&format!("{home}/.cargo")), "{output}");
}

#[tokio::test]
async fn without_built_crates_programs_get_std_only() {
    let empty = tempfile::tempdir().unwrap();
    let bare = start(Config {
        crates_dir: Some(empty.path().to_path_buf()),
        ..Config::default()
    });
    assert_eq!(meta_crates(&bare).await, json!({"crates": []}));
    let v = run_on(&bare, json!({"code": "fn main() { println!(\"std\"); }"})).await;
    assert_output(&v, "std\n");
    let v = run_on(
        &bare,
        json!({"code": "use rand::prelude::*;\nfn main() {}"}),
    )
    .await;
    assert_eq!(v["status"], "compileError", "{v}");
    assert!(
        v["compilerOutput"]
            .as_str()
            .unwrap()
            .starts_with("error[E0433]: cannot find module or crate `rand` in this scope"),
        "{v}"
    );
}
