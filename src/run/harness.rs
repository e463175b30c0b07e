//! Running a sample's `#[test]`s the way `cargo test` reports them.
//!
//! wasm32-wasip1 aborts on panic, so libtest cannot catch a failing test inside one instance.
//! Instead the harness module is asked for its tests (`--list`), each test runs in an instance
//! of its own (`--exact NAME --nocapture`; instances are cheap), and the report is assembled here
//! in libtest's words.

use std::sync::Arc;
use std::time::Instant;

use super::{Program, RunError, RunOptions, RunOutput, Runner, Status, StreamKind, Tier};

/// The outcome of one test, in the order libtest would print it.
struct TestCase {
    name: String,
    result: TestResult,
}

enum TestResult {
    Passed,
    Ignored,
    /// The test's own output (its panic message included) and how it ended.
    Failed(String),
}

/// Runs every test of the harness `program` and returns one report as a single run's output.
/// Limits apply per test instance, except the wall clock, which all tests share. A live client
/// gets the report as it is written when the tests are done, not the instances' own output
/// (their listings, each test's `--nocapture` output).
pub async fn run_tests(
    runner: &Runner,
    program: &Arc<Program>,
    opts: &RunOptions,
) -> Result<RunOutput, RunError> {
    let live = opts.live.clone();
    let opts = &RunOptions {
        live: None,
        ..opts.clone()
    };
    let out = run_all(runner, program, opts).await?;
    if let Some(live) = live {
        for (stream, text) in [
            (StreamKind::Stdout, &out.stdout),
            (StreamKind::Stderr, &out.stderr),
        ] {
            if !text.is_empty() {
                live.output(stream, text.as_bytes());
            }
        }
    }
    Ok(out)
}

async fn run_all(
    runner: &Runner,
    program: &Arc<Program>,
    opts: &RunOptions,
) -> Result<RunOutput, RunError> {
    let started = Instant::now();
    let list = |extra: &[&str]| {
        let mut opts = opts.clone();
        opts.args = ["--list", "--format", "terse"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        opts
    };
    let all = runner.execute(program, &list(&[])).await?;
    if all.status != Status::Ok {
        return Ok(all);
    }
    let ignored = runner.execute(program, &list(&["--ignored"])).await?;
    let ignored = test_names(&ignored.stdout);
    let mut fuel_consumed = all.fuel_consumed;

    let mut cases = Vec::new();
    for name in test_names(&all.stdout) {
        if ignored.contains(&name) {
            cases.push(TestCase {
                name,
                result: TestResult::Ignored,
            });
            continue;
        }
        let mut one = opts.clone();
        one.timeout = opts.timeout.saturating_sub(started.elapsed());
        one.args = vec!["--exact".into(), name.clone(), "--nocapture".into()];
        let out = runner.execute(program, &one).await?;
        fuel_consumed += out.fuel_consumed;
        let passed = out.status == Status::Ok;
        if out.status == Status::Timeout {
            // No time left for the rest either.
            return Ok(RunOutput {
                fuel_consumed,
                ..out
            });
        }
        let result = if passed {
            TestResult::Passed
        } else {
            TestResult::Failed(failure_text(&name, &out))
        };
        cases.push(TestCase { name, result });
    }
    Ok(report(cases, fuel_consumed, started, program.tier()))
}

/// `NAME: test` lines of `--list --format terse`.
fn test_names(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect()
}

/// What a failed test printed, minus libtest's own lines, with the panic attributed to the
/// test's thread as native libtest does.
fn failure_text(name: &str, out: &RunOutput) -> String {
    let header = format!("test {name} ... ");
    let stdout: String = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("running 1 test"))
        .map(|l| format!("{}\n", l.strip_prefix(&header).unwrap_or(l)))
        .collect();
    let stderr = name_the_thread(&out.stderr, name);
    let mut text = format!("{}{}", stdout.trim_start_matches('\n'), stderr);
    if out.exit_code.is_none() && !stderr.contains("panicked") {
        text.push_str(&format!("{}\n", out.exit_detail));
    }
    text
}

/// `thread 'main' (ID) panicked` becomes `thread 'NAME' (ID) panicked`: libtest natively runs
/// each test on a thread named after it.
fn name_the_thread(stderr: &str, name: &str) -> String {
    stderr.replace("thread 'main' (", &format!("thread '{name}' ("))
}

fn report(cases: Vec<TestCase>, fuel_consumed: u64, started: Instant, tier: Tier) -> RunOutput {
    let plural = if cases.len() == 1 { "" } else { "s" };
    let mut stdout = format!("\nrunning {} test{plural}\n", cases.len());
    let (mut passed, mut failed, mut ignored) = (0, 0, 0);
    let mut failures = String::new();
    let mut failed_names = String::new();
    for case in &cases {
        let word = match &case.result {
            TestResult::Passed => {
                passed += 1;
                "ok"
            }
            TestResult::Ignored => {
                ignored += 1;
                "ignored"
            }
            TestResult::Failed(text) => {
                failed += 1;
                failures.push_str(&format!("---- {} stdout ----\n{text}\n", case.name));
                failed_names.push_str(&format!("    {}\n", case.name));
                "FAILED"
            }
        };
        stdout.push_str(&format!("test {} ... {word}\n", case.name));
    }
    if failed > 0 {
        stdout.push_str(&format!(
            "\nfailures:\n\n{failures}\nfailures:\n{failed_names}"
        ));
    }
    let verdict = if failed > 0 { "FAILED" } else { "ok" };
    stdout.push_str(&format!(
        "\ntest result: {verdict}. {passed} passed; {failed} failed; {ignored} ignored; 0 measured; 0 filtered out; finished in {:.2}s\n\n",
        started.elapsed().as_secs_f64()
    ));
    let (status, exit_code, exit_detail) = if failed > 0 {
        (Status::RuntimeError, Some(101), "Exited with status 101")
    } else {
        (Status::Ok, Some(0), "Exited with status 0")
    };
    RunOutput {
        status,
        exit_code,
        exit_detail: exit_detail.into(),
        stdout,
        stderr: String::new(),
        truncated: false,
        fuel_consumed,
        tier,
        native_stack_overflow: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_reads_like_cargo_test() {
        let cases = vec![
            TestCase {
                name: "tests::a".into(),
                result: TestResult::Passed,
            },
            TestCase {
                name: "tests::b".into(),
                result: TestResult::Failed("boom\n".into()),
            },
            TestCase {
                name: "tests::c".into(),
                result: TestResult::Ignored,
            },
        ];
        let out = report(cases, 0, Instant::now(), Tier::Cranelift);
        assert!(out.stdout.starts_with(
            "\nrunning 3 tests\ntest tests::a ... ok\ntest tests::b ... FAILED\ntest tests::c ... ignored\n\nfailures:\n\n---- tests::b stdout ----\nboom\n\n\nfailures:\n    tests::b\n\ntest result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in "
        ), "{}", out.stdout);
        assert_eq!(out.exit_code, Some(101));
    }

    #[test]
    fn panics_are_attributed_to_the_test() {
        assert_eq!(
            name_the_thread(
                "thread 'main' (1) panicked at src/main.rs:9:38:\nboom\n",
                "tests::t"
            ),
            "thread 'tests::t' (1) panicked at src/main.rs:9:38:\nboom\n"
        );
    }

    #[test]
    fn names_come_from_the_terse_listing() {
        assert_eq!(
            test_names("tests::a: test\nbench_x: bench\ntests::b: test\n"),
            ["tests::a", "tests::b"]
        );
    }
}
