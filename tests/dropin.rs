//! What play.rust-lang.org's frontend needs of the HTTP API: multi-file packages, crate types and
//! tests as cargo shows them, its error bodies and CORS, `/format`'s echo, `/meta/versions`,
//! `/nowebsocket`, and serving its built files from a directory.

mod common;

use common::{client, post_json, run_on, server};
use serde_json::{Value, json};

fn files(list: &[(&str, &str)]) -> Value {
    list.iter()
        .map(|(name, content)| json!({"name": name, "content": content}))
        .collect()
}

/// The JSON answer to a POST of `body` to `path` (a tool) on the shared server.
async fn post_to(path: &str, body: Value) -> Value {
    common::post_to(&server().url, path, body).await.1
}

/// `POST /execute` with the fields the frontend always sends.
async fn execute(code: Value, crate_type: &str, tests: bool) -> Value {
    run_on(
        server(),
        json!({"channel": "stable", "mode": "debug", "edition": "2024", "crateType": crate_type, "tests": tests, "code": code, "backtrace": false}),
    )
    .await
}

#[tokio::test]
async fn modules_in_folders_are_found_as_cargo_finds_them() {
    let v = execute(
        files(&[
            ("src/main.rs", "mod shapes;\nmod utils;\n\nfn main() {\n    println!(\"Hello to the whole {}\", utils::greeting());\n    println!(\"{}\", shapes::circle::area(2));\n}\n"),
            ("src/utils.rs", "pub fn greeting() -> &'static str {\n    \"world\"\n}\n"),
            ("src/shapes/mod.rs", "pub mod circle;\n"),
            ("src/shapes/circle.rs", "pub fn area(r: u32) -> u32 {\n    3 * r * r\n}\n"),
            ("README.md", "not Rust"),
        ]),
        "bin",
        false,
    )
    .await;
    assert_eq!(
        (&v["status"], &v["stdout"], &v["stderr"]),
        (
            &json!("ok"),
            &json!("Hello to the whole world\n12\n"),
            &json!("")
        ),
        "{v}"
    );
}

#[tokio::test]
async fn a_binary_uses_the_library_of_its_package() {
    let code = files(&[
        (
            "src/lib.rs",
            "pub fn greet(name: &str) -> String {\n    format!(\"hello, {name}\")\n}\n",
        ),
        (
            "src/main.rs",
            "fn main() {\n    println!(\"{}\", playground::greet(\"lib\"));\n}\n",
        ),
    ]);
    let v = execute(code.clone(), "bin", false).await;
    assert_eq!(
        (&v["status"], &v["stdout"], &v["stderr"]),
        (&json!("ok"), &json!("hello, lib\n"), &json!("")),
        "{v}"
    );
    // Build (a library) compiles only `src/lib.rs`.
    let v = execute(code, "lib", false).await;
    assert_eq!(
        (&v["success"], &v["stdout"], &v["stderr"]),
        (&json!(true), &json!(""), &json!("")),
        "{v}"
    );
}

#[tokio::test]
async fn an_error_in_a_module_names_its_file() {
    let v = execute(
        files(&[
            (
                "src/main.rs",
                "mod shapes;\n\nfn main() {\n    println!(\"{}\", shapes::circle::area(2));\n}\n",
            ),
            ("src/shapes/mod.rs", "pub mod circle;\n"),
            (
                "src/shapes/circle.rs",
                "pub fn area(r: u32) -> u32 {\n    let x: u32 = \"a\";\n    3 * r * r\n}\n",
            ),
        ]),
        "bin",
        false,
    )
    .await;
    // rustc 1.95's own text for the same files.
    let expected = "error[E0308]: mismatched types\n --> src/shapes/circle.rs:2:18\n  |\n2 |     let x: u32 = \"a\";\n  |            ---   ^^^ expected `u32`, found `&str`\n  |            |\n  |            expected due to this\n\nerror: aborting due to 1 previous error\n\nFor more information about this error, try `rustc --explain E0308`.\n";
    assert_eq!(v["status"], "compileError", "{v}");
    assert_eq!(v["stderr"], expected);
    assert_eq!(v["compilerOutput"], expected);
    // The structured diagnostic is placed in the module's file, as the rendered text places it.
    assert_eq!(
        v["diagnostics"],
        json!([{
            "level": "error",
            "code": "E0308",
            "message": "mismatched types",
            "file": "src/shapes/circle.rs",
            "line": 2,
            "column": 18,
            "endLine": 2,
            "endColumn": 21,
        }])
    );
}

#[tokio::test]
async fn paths_that_leave_the_package_are_refused() {
    for (name, why) in [
        (
            "../main.rs",
            "the file name `../main.rs` is not a path inside the package (use names like `src/utils.rs`)",
        ),
        (
            "/etc/passwd",
            "the file name `/etc/passwd` is not a path inside the package (use names like `src/utils.rs`)",
        ),
        (
            "src/.hidden.rs",
            "the file name `src/.hidden.rs` is not a path inside the package (use names like `src/utils.rs`)",
        ),
        (
            "Cargo.toml",
            "`Cargo.toml` is the server's; it cannot be replaced",
        ),
    ] {
        let code = files(&[("src/main.rs", "fn main() {}"), (name, "x")]);
        let (status, v) = post_json(server(), json!({"code": code})).await;
        assert_eq!((status, v), (400, json!({"error": why})), "{name}");
    }
    let (status, v) = post_json(server(), json!({"code": 42})).await;
    let why = "Unable to deserialize request: invalid type: integer `42`, expected a string, or a list of files {\"name\", \"content\"} at line 1 column 10";
    assert_eq!((status, v), (400, json!({"error": why})));
    let (status, v) = post_json(
        server(),
        json!({"code": files(&[("src/lib.rs", "pub fn f() {}")]), "crateType": "bin"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        v["stderr"],
        "error: a bin target must be available for `cargo run` (add `src/main.rs`)\n"
    );
}

#[tokio::test]
async fn every_library_crate_type_builds_only_with_cargos_warnings() {
    let code = "fn main() {\n    println!(\"Hello, world!\");\n}\n";
    // `rustc --edition 2024 --crate-type lib src/lib.rs`
    let warning = "warning: function `main` is never used\n --> src/lib.rs:1:4\n  |\n1 | fn main() {\n  |    ^^^^\n  |\n  = note: `#[warn(dead_code)]` (part of `#[warn(unused)]`) on by default\n\nwarning: 1 warning emitted\n\n";
    for crate_type in ["lib", "rlib", "dylib", "staticlib", "cdylib", "proc-macro"] {
        let v = execute(json!(code), crate_type, false).await;
        assert_eq!(
            (&v["success"], &v["exitDetail"], &v["stdout"], &v["stderr"]),
            (
                &json!(true),
                &json!("Compiled the library (there is nothing to run)"),
                &json!(""),
                &json!(warning)
            ),
            "{crate_type}: {v}"
        );
    }
}

#[tokio::test]
async fn tests_of_a_library_without_tests_report_running_0_tests() {
    let v = execute(json!("pub fn f() {}\n"), "lib", true).await;
    let stdout = v["stdout"].as_str().unwrap();
    assert!(
        stdout.starts_with("\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in "),
        "{v}"
    );
    assert_eq!(v["success"], true);

    let v = execute(json!("#[test]\nfn awesome() {}\n"), "lib", true).await;
    assert!(
        v["stdout"].as_str().unwrap().starts_with(
            "\nrunning 1 test\ntest awesome ... ok\n\ntest result: ok. 1 passed; 0 failed;"
        ),
        "{v}"
    );

    // A library's tests are in `src/lib.rs`, as cargo reports them.
    let v = execute(
        json!("#[test]\nfn a_test() {\n    assert!(false);\n}\n"),
        "lib",
        true,
    )
    .await;
    let stdout = v["stdout"].as_str().unwrap();
    assert!(
        stdout.contains("panicked at src/lib.rs:3:5:\nassertion failed: false\n"),
        "{v}"
    );
    assert_eq!(v["success"], false);
}

#[tokio::test]
async fn stderr_has_the_compilers_warnings_then_the_programs_stderr() {
    let code = "fn main() {\n    let unused = 1;\n    panic!(\"boom\");\n}\n";
    let v = execute(json!(code), "bin", false).await;
    let warning = "warning: unused variable: `unused`\n --> src/main.rs:2:9\n  |\n2 |     let unused = 1;\n  |         ^^^^^^ help: if this is intentional, prefix it with an underscore: `_unused`\n  |\n  = note: `#[warn(unused_variables)]` (part of `#[warn(unused)]`) on by default\n\nwarning: 1 warning emitted\n\n";
    let panic = "\nthread 'main' (1) panicked at src/main.rs:3:5:\nboom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
    assert_eq!(v["compilerOutput"], warning);
    assert_eq!(v["stderr"], format!("{warning}{panic}"));
    assert_eq!(v["exitDetail"], "Exited with status 101");
}

#[tokio::test]
async fn bad_json_is_refused_in_play_rust_lang_orgs_words() {
    for path in [
        "/execute",
        "/compile",
        "/format",
        "/clippy",
        "/evaluate.json",
    ] {
        let resp = client()
            .post(format!("{}{path}", server().url))
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(
            v,
            json!({"error": "Unable to deserialize request: EOF while parsing an object at line 1 column 1"}),
            "{path}"
        );
    }
}

/// The preflight mdBook's and rust-lang.org's pages trigger, checked as play.rust-lang.org's
/// `cors_spec.rb` checks it.
#[tokio::test]
async fn cors_preflight_allows_json_posts_from_anywhere() {
    let resp = client()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/evaluate.json", server().url),
        )
        .header("origin", "https://rust-lang.org")
        .header("access-control-request-headers", "content-type")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(h["access-control-allow-headers"], "content-type");
    assert_eq!(h["access-control-allow-methods"], "GET,POST");
    assert_eq!(h["access-control-max-age"], "3600");
    assert!(!h.contains_key("vary"), "{h:?}");
}

#[tokio::test]
async fn format_returns_the_code_it_could_not_format() {
    let broken = "fn main() {\n    let x = ;\n";
    let v = post_to(
        "/format",
        json!({"channel": "stable", "edition": "2024", "code": broken}),
    )
    .await;
    assert_eq!(
        (&v["success"], &v["code"]),
        (&json!(false), &json!(broken)),
        "{v}"
    );

    let code = files(&[
        ("src/main.rs", "mod utils;\nfn main() { utils::hi(); }\n"),
        (
            "src/utils.rs",
            "pub fn hi() { println!(\"{}\", [1,2,3,4].len()); }\n",
        ),
    ]);
    let v = post_to(
        "/format",
        json!({"channel": "stable", "edition": "2024", "code": code}),
    )
    .await;
    assert_eq!(
        v["code"],
        files(&[
            (
                "src/main.rs",
                "mod utils;\nfn main() {\n    utils::hi();\n}\n"
            ),
            (
                "src/utils.rs",
                "pub fn hi() {\n    println!(\"{}\", [1, 2, 3, 4].len());\n}\n"
            ),
        ]),
        "{v}"
    );
}

#[tokio::test]
async fn versions_list_all_three_channels() {
    let (status, v) = common::get_json(&server().url, "/meta/versions").await;
    assert_eq!(status, 200, "{v}");
    for channel in ["stable", "beta", "nightly"] {
        for tool in ["rustc", "rustfmt", "clippy"] {
            for field in ["version", "hash", "date"] {
                assert!(v[channel][tool][field].is_string(), "{channel} {tool}: {v}");
            }
        }
    }
    assert!(
        v["stable"]["rustc"]["version"]
            .as_str()
            .unwrap()
            .starts_with("1.")
    );
}

#[tokio::test]
async fn nowebsocket_reports_are_accepted() {
    let resp = client()
        .post(format!("{}/nowebsocket", server().url))
        .json(&json!({"error": "Generic WebSocket Error"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "");
}

#[tokio::test]
async fn a_librarys_wat_keeps_its_exported_names() {
    let code = "#![crate_type = \"cdylib\"]\n#[unsafe(no_mangle)]\npub fn calculator(a: u8) -> u8 {\n    a + 42\n}\n";
    let v = post_to(
        "/compile",
        json!({"channel": "stable", "mode": "debug", "edition": "2024", "crateType": "cdylib", "tests": false, "code": code, "target": "wasm", "assemblyFlavor": "att", "demangleAssembly": "demangle", "processAssembly": "filter", "backtrace": false}),
    )
    .await;
    assert_eq!(v["success"], true, "{v}");
    assert!(
        v["code"].as_str().unwrap().contains("(func $calculator"),
        "{v}"
    );
}

#[tokio::test]
async fn a_frontend_directory_is_served_at_the_root() {
    let dir = common::scratch_dir("wp-frontend-");
    std::fs::create_dir(dir.join("assets")).unwrap();
    std::fs::write(dir.join("index.html"), "<p>frontend</p>").unwrap();
    std::fs::write(dir.join("assets/app.js"), "let a = 1;").unwrap();
    let server = common::start(wasm_playground::config::Config {
        frontend_dir: Some(dir),
        ..Default::default()
    });
    let get = |path: &str| {
        let url = format!("{}{path}", server.url);
        async move {
            let resp = client().get(url).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    assert_eq!(get("/").await, (200, "<p>frontend</p>".into()));
    assert_eq!(
        get("/?version=beta&mode=debug").await,
        (200, "<p>frontend</p>".into())
    );
    assert_eq!(get("/help").await, (200, "<p>frontend</p>".into()));
    assert_eq!(get("/assets/app.js").await, (200, "let a = 1;".into()));
    assert_eq!(
        get("/nope").await,
        (404, r#"{"error":"no such endpoint"}"#.into())
    );
    let v = run_on(&server, json!({"code": "fn main() { println!(\"api\"); }"})).await;
    assert_eq!(v["stdout"], "api\n");
}

/// `finished in 0.01s` made `finished in 0.00s`: the time tests took differs run to run.
fn no_timings(text: &str) -> String {
    text.split("finished in ")
        .enumerate()
        .map(|(i, part)| match (i, part.find('s')) {
            (0, _) | (_, None) => part.to_string(),
            (_, Some(end)) => format!("finished in 0.00{}", &part[end..]),
        })
        .collect()
}

const PROC_MACRO: &str = "extern crate proc_macro;\nuse proc_macro::TokenStream;\n\n#[proc_macro]\npub fn m(t: TokenStream) -> TokenStream {\n    t\n}\n";

#[tokio::test]
async fn a_proc_macro_crate_builds_for_the_host_with_proc_macro_in_scope() {
    // `cargo build` of a `proc-macro = true` package: no diagnostics.
    let v = execute(json!(PROC_MACRO), "proc-macro", false).await;
    assert_eq!(
        (&v["success"], &v["exitDetail"], &v["stdout"], &v["stderr"]),
        (
            &json!(true),
            &json!("Compiled the library (there is nothing to run)"),
            &json!(""),
            &json!("")
        ),
        "{v}"
    );
    // cargo passes `--extern proc_macro`: no `extern crate` needed.
    let code = PROC_MACRO.replace("extern crate proc_macro;\n", "");
    let v = execute(json!(code), "proc-macro", false).await;
    assert_eq!(
        (&v["success"], &v["stderr"]),
        (&json!(true), &json!("")),
        "{v}"
    );

    // What only a proc-macro crate refuses (`rustc --edition 2024 --crate-type proc-macro
    // --extern proc_macro src/lib.rs`).
    let code = format!("{code}\npub fn helper() {{}}\n");
    let v = execute(json!(code), "proc-macro", false).await;
    let error = "error: `proc-macro` crate types currently cannot export any items other than functions tagged with `#[proc_macro]`, `#[proc_macro_derive]`, or `#[proc_macro_attribute]`\n --> src/lib.rs:8:1\n  |\n8 | pub fn helper() {}\n  | ^^^^^^^^^^^^^^^\n\nerror: aborting due to 1 previous error\n\n";
    assert_eq!(
        (&v["success"], &v["exitDetail"], &v["stderr"]),
        (&json!(false), &json!("Compilation failed"), &json!(error)),
        "{v}"
    );

    // `cargo test` of it: the unit tests run, as they do natively.
    let code = format!("{PROC_MACRO}\n#[test]\nfn t() {{}}\n");
    let v = execute(json!(code), "proc-macro", true).await;
    assert_eq!(
        no_timings(v["stdout"].as_str().unwrap()),
        "\nrunning 1 test\ntest t ... ok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n",
        "{v}"
    );
    assert_eq!(v["success"], true);
}

/// A package of a library (with a module) and a binary, as `cargo test` runs it: the library's
/// tests, then the binary's.
fn library_and_binary(twice: &str) -> Value {
    files(&[
        (
            "src/lib.rs",
            "mod helpers;\n\npub fn add(a: u32, b: u32) -> u32 {\n    let unused = 1;\n    helpers::twice(a) / 2 + b\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() {\n        assert_eq!(super::add(2, 2), 4);\n    }\n}\n",
        ),
        (
            "src/helpers.rs",
            &format!(
                "pub fn twice(x: u32) -> u32 {{\n    x * 2\n}}\n\n#[test]\nfn twice_works() {{\n    assert_eq!(twice(3), {twice});\n}}\n"
            ),
        ),
        (
            "src/main.rs",
            "fn main() {\n    println!(\"{}\", playground::add(1, 2));\n}\n\n#[test]\nfn main_test() {\n    assert_eq!(playground::add(1, 1), 2);\n}\n",
        ),
    ])
}

#[tokio::test]
async fn tests_of_a_library_and_a_binary_run_both_as_cargo_test_does() {
    // The frontend sends `lib` for a package with tests; `bin` gives the same.
    for crate_type in ["lib", "bin"] {
        let v = execute(library_and_binary("6"), crate_type, true).await;
        // `cargo test`'s stdout (its doc-tests block aside: README).
        assert_eq!(
            no_timings(v["stdout"].as_str().unwrap()),
            "\nrunning 2 tests\ntest helpers::twice_works ... ok\ntest tests::adds ... ok\n\ntest result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n\nrunning 1 test\ntest main_test ... ok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n",
            "{crate_type}: {v}"
        );
        // The library's warning once, as cargo shows it (`rustc --edition 2024 --test src/lib.rs`).
        let warning = "warning: unused variable: `unused`\n --> src/lib.rs:4:9\n  |\n4 |     let unused = 1;\n  |         ^^^^^^ help: if this is intentional, prefix it with an underscore: `_unused`\n  |\n  = note: `#[warn(unused_variables)]` (part of `#[warn(unused)]`) on by default\n\nwarning: 1 warning emitted\n\n";
        assert_eq!(v["stderr"], warning, "{crate_type}: {v}");
        assert_eq!(
            (&v["success"], &v["exitDetail"]),
            (&json!(true), &json!("Exited with status 0"))
        );
    }

    // A failing library test stops there: cargo runs no more test binaries.
    let v = execute(library_and_binary("7"), "lib", true).await;
    let stdout = no_timings(v["stdout"].as_str().unwrap());
    assert!(
        stdout.starts_with("\nrunning 2 tests\ntest helpers::twice_works ... FAILED\ntest tests::adds ... ok\n\nfailures:\n\n---- helpers::twice_works stdout ----\n\nthread 'helpers::twice_works' (1) panicked at src/helpers.rs:7:5:\nassertion `left == right` failed\n  left: 6\n right: 7\n"),
        "{v}"
    );
    assert!(
        stdout.ends_with("\nfailures:\n    helpers::twice_works\n\ntest result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\n"),
        "{v}"
    );
    assert_eq!(
        (&v["success"], &v["exitDetail"]),
        (&json!(false), &json!("Exited with status 101"))
    );
}

#[tokio::test]
async fn clippy_checks_a_packages_binary_after_its_library() {
    let mut code = library_and_binary("6");
    code[2]["content"] = json!(
        "fn main() {\n    let x = 3.14;\n    println!(\"{} {}\", x, playground::add(1, 2));\n}\n"
    );
    // The frontend sends `lib` for a package with tests. `clippy-driver --edition 2024` of
    // `src/lib.rs`, then of `src/main.rs` with `--extern playground=...`.
    let v = post_to(
        "/clippy",
        json!({"channel": "stable", "crateType": "lib", "edition": "2024", "code": code}),
    )
    .await;
    let expected = "warning: unused variable: `unused`\n --> src/lib.rs:4:9\n  |\n4 |     let unused = 1;\n  |         ^^^^^^ help: if this is intentional, prefix it with an underscore: `_unused`\n  |\n  = note: `#[warn(unused_variables)]` (part of `#[warn(unused)]`) on by default\n\nwarning: 1 warning emitted\n\nerror: approximate value of `f{32, 64}::consts::PI` found\n --> src/main.rs:2:13\n  |\n2 |     let x = 3.14;\n  |             ^^^^\n  |\n  = help: consider using the constant directly\n  = help: for further information visit https://rust-lang.github.io/rust-clippy/rust-1.95.0/index.html#approx_constant\n  = note: `#[deny(clippy::approx_constant)]` on by default\n\nerror: aborting due to 1 previous error\n\n";
    assert_eq!(
        (&v["success"], &v["stderr"]),
        (&json!(false), &json!(expected)),
        "{v}"
    );
}

#[tokio::test]
async fn building_a_package_builds_its_binary_after_its_library() {
    let mut code = library_and_binary("6");
    code[2]["content"] =
        json!("fn main() {\n    let y = 2;\n    println!(\"{}\", playground::add(1, 2));\n}\n");
    // `rustc --edition 2024 --crate-type lib src/lib.rs`, then `--crate-type bin src/main.rs
    // --extern playground=...`, as `cargo build` runs them.
    let v = execute(code, "lib", false).await;
    let expected = "warning: unused variable: `unused`\n --> src/lib.rs:4:9\n  |\n4 |     let unused = 1;\n  |         ^^^^^^ help: if this is intentional, prefix it with an underscore: `_unused`\n  |\n  = note: `#[warn(unused_variables)]` (part of `#[warn(unused)]`) on by default\n\nwarning: 1 warning emitted\n\nwarning: unused variable: `y`\n --> src/main.rs:2:9\n  |\n2 |     let y = 2;\n  |         ^ help: if this is intentional, prefix it with an underscore: `_y`\n  |\n  = note: `#[warn(unused_variables)]` (part of `#[warn(unused)]`) on by default\n\nwarning: 1 warning emitted\n\n";
    assert_eq!(
        (&v["success"], &v["exitDetail"], &v["stdout"], &v["stderr"]),
        (
            &json!(true),
            &json!("Compiled the library (there is nothing to run)"),
            &json!(""),
            &json!(expected)
        ),
        "{v}"
    );
}
