//! How a run ended: the statuses clients see, and the words for each.

use serde::Serialize;
use wasmtime::Trap;
use wasmtime_wasi::I32Exit;

use super::capture::{CaptureStream, OutputLimitExceeded};
use super::check::Unfit;
use super::engine::Tier;
use super::execute::RunOptions;

/// How an execution ended. `compileError` is produced by the caller, never by the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Ok,
    CompileError,
    RuntimeError,
    OutOfFuel,
    Timeout,
    MemoryLimit,
    StackOverflow,
    OutputLimit,
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub status: Status,
    /// `None` when the program was stopped from outside (fuel, deadline, a trap).
    pub exit_code: Option<i32>,
    /// One sentence for people, e.g. "Exited with status 101".
    pub exit_detail: String,
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    pub fuel_consumed: u64,
    /// The code the final run executed.
    pub tier: Tier,
    /// The native stack overflowed (as opposed to the program's own shadow stack): the limit
    /// depends on the compiler's frame sizes, so a Winch run is retried on Cranelift.
    pub native_stack_overflow: bool,
}

/// Failures of the service, not of the program (but for `Unfit`).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The program's module cannot go into the sandbox: the program's fault, not a failure.
    #[error(transparent)]
    Unfit(#[from] Unfit),
    #[error("could not load the compiled module: {0}")]
    Load(String),
    #[error("could not set up the program's store: {0}")]
    Setup(String),
}

/// The raw ending of a run, before it is put into words.
pub(super) enum Outcome {
    Exited(i32),
    Trapped(Trap),
    OutputLimit,
    Timeout,
    Other(String),
}

impl Outcome {
    pub(super) fn from_result(result: wasmtime::Result<i32>) -> Self {
        let err = match result {
            Ok(code) => return Outcome::Exited(code),
            Err(err) => err,
        };
        if let Some(exit) = err.downcast_ref::<I32Exit>() {
            Outcome::Exited(exit.0)
        } else if err.is::<OutputLimitExceeded>() {
            Outcome::OutputLimit
        } else if let Some(trap) = err.downcast_ref::<Trap>() {
            Outcome::Trapped(*trap)
        } else {
            Outcome::Other(format!("{err:#}"))
        }
    }

    /// The run's output: this outcome in words, with what the program wrote.
    pub(super) fn into_output(
        self,
        opts: &RunOptions,
        stdout: &CaptureStream,
        stderr: &CaptureStream,
        fuel_consumed: u64,
        tier: Tier,
    ) -> RunOutput {
        let (stdout, stdout_truncated) = stdout.contents();
        let (stderr, stderr_truncated) = stderr.contents();
        let native_stack_overflow = matches!(self, Outcome::Trapped(Trap::StackOverflow));
        let (status, exit_code, exit_detail) = self.classify(opts, &stderr);
        RunOutput {
            status,
            exit_code,
            exit_detail,
            stdout,
            stderr,
            truncated: stdout_truncated || stderr_truncated,
            fuel_consumed,
            tier,
            native_stack_overflow,
        }
    }

    fn classify(self, opts: &RunOptions, stderr: &str) -> (Status, Option<i32>, String) {
        let secs = opts.timeout.as_secs_f64();
        match self {
            Outcome::Exited(0) => (Status::Ok, Some(0), "Exited with status 0".into()),
            Outcome::Exited(code) => (
                Status::RuntimeError,
                Some(code),
                format!("Exited with status {code}"),
            ),
            Outcome::OutputLimit => (
                Status::OutputLimit,
                None,
                format!(
                    "Stopped after writing more than {} bytes of output",
                    opts.output_limit
                ),
            ),
            Outcome::Timeout | Outcome::Trapped(Trap::Interrupt) => (
                Status::Timeout,
                None,
                format!("Stopped after the {secs} s time limit"),
            ),
            Outcome::Trapped(Trap::OutOfFuel) => (
                Status::OutOfFuel,
                None,
                format!("Ran out of fuel after {} units", opts.fuel),
            ),
            Outcome::Trapped(Trap::StackOverflow) => (
                Status::StackOverflow,
                None,
                "Stack overflow: the call stack is exhausted".into(),
            ),
            // Rust's shadow stack lives at the bottom of linear memory: a frame too big for it
            // lands below address 0, i.e. out of bounds.
            Outcome::Trapped(Trap::MemoryOutOfBounds) => (
                Status::StackOverflow,
                None,
                "Stack overflow: the program's stack overran its memory (out of bounds memory access)"
                    .into(),
            ),
            Outcome::Trapped(Trap::UnreachableCodeReached)
                if stderr.contains("memory allocation of") =>
            {
                (
                    Status::MemoryLimit,
                    None,
                    format!(
                        "Ran out of memory: the limit is {} bytes",
                        opts.memory_limit
                    ),
                )
            }
            Outcome::Trapped(Trap::UnreachableCodeReached) => (
                Status::RuntimeError,
                None,
                "Aborted (wasm `unreachable` instruction executed)".into(),
            ),
            Outcome::Trapped(trap) => (
                Status::RuntimeError,
                None,
                format!("Crashed: {trap}"),
            ),
            Outcome::Other(message) => (
                Status::RuntimeError,
                None,
                format!("Crashed: {message}"),
            ),
        }
    }
}
