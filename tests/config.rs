//! The `--config` file through the real binary: precedence flag > environment > file >
//! default, and a clear start-up error for unknown keys and bad values.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{ServerProcess, client};
use serde_json::Value;

const SPIN: &str = "fn main() { loop {} }";

/// A temp dir with the program and a private cache (shared by the runs of one test, so the
/// program is compiled once).
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("spin.rs"), SPIN).unwrap();
        Self { dir }
    }

    fn file(&self, name: &str, toml: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, toml).unwrap();
        path
    }

    /// `wasm-playground ARGS` with `ENVS`, running the spinning program unless ARGS say
    /// otherwise; no inherited `WASM_PLAYGROUND_*` settings.
    fn run(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasm-playground"));
        for (key, _) in std::env::vars() {
            if key.starts_with("WASM_PLAYGROUND_") {
                cmd.env_remove(key);
            }
        }
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("WASM_PLAYGROUND_CACHE_DIR", self.dir.path().join("cache"))
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("start the binary")
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The fuel budget the binary used, from the out-of-fuel message of the spinning program.
fn fuel_used(out: &Output) -> u64 {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(124), "{err}");
    err.lines()
        .find_map(|l| l.strip_prefix("Ran out of fuel after "))
        .and_then(|rest| rest.strip_suffix(" units"))
        .unwrap_or_else(|| panic!("no out-of-fuel line in {err:?}"))
        .parse()
        .unwrap()
}

#[test]
fn flag_beats_environment_beats_file_beats_default() {
    let setup = Setup::new();
    let file = setup.file(
        "wasm-playground.toml",
        "# every kind of value\n\
         fuel = 100000\n\
         channels = [\"stable\"]\n\
         insecure-unsandboxed-compile = false\n\
         log-format = \"text\"\n\
         compile-timeout-ms = 20000\n",
    );
    let file = file.to_str().unwrap();

    // File over default.
    let out = setup.run(&["--config", file, "run", "spin.rs"], &[]);
    assert_eq!(fuel_used(&out), 100_000);
    // The same file named by the environment.
    let out = setup.run(&["run", "spin.rs"], &[("WASM_PLAYGROUND_CONFIG", file)]);
    assert_eq!(fuel_used(&out), 100_000);
    // Environment over file.
    let env = [("WASM_PLAYGROUND_FUEL", "200000")];
    let out = setup.run(&["--config", file, "run", "spin.rs"], &env);
    assert_eq!(fuel_used(&out), 200_000);
    // Flag over environment, before or after the subcommand.
    let out = setup.run(
        &["--fuel", "300000", "--config", file, "run", "spin.rs"],
        &env,
    );
    assert_eq!(fuel_used(&out), 300_000);
    let out = setup.run(&["--config", file, "run", "--fuel=400000", "spin.rs"], &env);
    assert_eq!(fuel_used(&out), 400_000);

    // A key the file does not set keeps its default; one it sets applies.
    let out = setup.run(&["--config", file, "--fuel", "1000", "run", "spin.rs"], &[]);
    assert_eq!(
        fuel_used(&out),
        1000,
        "default code-limit: the program is accepted"
    );
    let small = setup.file("small.toml", "code-limit = 10\n");
    let out = setup.run(
        &["--config", small.to_str().unwrap(), "run", "spin.rs"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: `code` is 21 bytes; the limit is 10 bytes\n"
    );
}

#[test]
fn unknown_keys_and_bad_values_stop_start_up_with_a_clear_error() {
    let setup = Setup::new();
    let check = |name: &str, toml: &str, expected: &dyn Fn(&Path) -> String| {
        let path = setup.file(name, toml);
        let out = setup.run(&["--config", path.to_str().unwrap(), "serve"], &[]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        let want = expected(&path);
        assert!(err.contains(&want), "expected {want:?} in {err:?}");
    };
    check("typo.toml", "fuel = 5\nfule = 5\n", &|p| {
        format!(
            "error: unknown key `fule` in the configuration file {} (known keys: addr, body-limit,",
            p.display()
        )
    });
    // Keys are the long flags, not the environment variables or the Rust field names.
    check("snake.toml", "run_timeout_ms = 5\n", &|p| {
        format!(
            "unknown key `run_timeout_ms` in the configuration file {}",
            p.display()
        )
    });
    check("table.toml", "[limits]\nfuel = 5\n", &|p| {
        format!(
            "unknown key `limits` in the configuration file {}",
            p.display()
        )
    });
    check("type.toml", "fuel = \"lots\"\n", &|p| {
        format!(
            "error: in the configuration file {}: invalid value 'lots' for '--fuel <FUEL>'",
            p.display()
        )
    });
    check("float.toml", "fuel = 1.5\n", &|p| {
        format!(
            "error: bad value for `fuel` in the configuration file {}: expected a string or an integer, not 1.5",
            p.display()
        )
    });
    check(
        "flag.toml",
        "insecure-unsandboxed-compile = \"yes\"\n",
        &|_| "expected true or false, not \"yes\"".into(),
    );
    check("syntax.toml", "fuel = \n", &|p| {
        format!(
            "error: the configuration file {} is not valid TOML",
            p.display()
        )
    });
    let missing = setup.dir.path().join("missing.toml");
    let out = setup.run(&["--config", missing.to_str().unwrap(), "serve"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with(&format!(
            "error: could not read the configuration file {}: No such file",
            missing.display()
        )),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn the_server_takes_its_settings_from_the_file() {
    let setup = Setup::new();
    let file = setup.file(
        "serve.toml",
        "log-format = \"json\"\ncode-limit = 64\nfuel = 100000\n",
    );
    let server = ServerProcess::spawn(&["--config", file.to_str().unwrap()], &[]);
    // JSON logs (the helper found the address in a JSON line).
    let log = server.log.lock().unwrap().clone();
    let first: Value = serde_json::from_str(log.lines().next().unwrap()).expect("a JSON log line");
    assert_eq!(first["level"], "INFO");
    let resp = client()
        .post(format!("{}/execute", server.server.url))
        .body(SPIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["exitDetail"], "Ran out of fuel after 100000 units");
    let resp = client()
        .post(format!("{}/execute", server.server.url))
        .body(format!("{SPIN}{}", " ".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
}

#[test]
fn the_deployment_config_file_is_accepted() {
    let setup = Setup::new();
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/k8s/wasm-playground.toml"
    );
    // Its Redis host does not resolve here: the replica runs without it.
    let out = setup.run(&["--config", file, "--fuel", "1000", "run", "spin.rs"], &[]);
    assert_eq!(fuel_used(&out), 1000);
}
