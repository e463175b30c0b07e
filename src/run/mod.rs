//! Module to outcome: Wasmtime's engines and tiers, one store per run with its limits, the
//! program's stdio, the test harness, and how a run ended.
//!
//! - [`engine`]: the engines (Winch, Cranelift, tier-up), the pooling allocator, the epoch
//!   ticker and the background lane; [`Program`] is a compiled module ready to instantiate;
//! - [`execute`]: one run in a fresh store under fuel, memory, output and wall-clock limits;
//! - [`backtrace`]: the host import that gives a panicking program its stack backtrace;
//! - [`check`]: what the sandbox will not load (imports it lacks, memory over the limit, huge
//!   functions), in words for the user;
//! - [`capture`]: the capped stdout/stderr buffers, and [`OutputSink`], through which a run's
//!   output reaches a live client above this layer;
//! - [`stdin`]: stdin fed while a program runs;
//! - [`stats`]: a run's CPU time and memory so far, for live progress reports;
//! - [`threads`]: threaded programs (wasi-threads): one OS thread and store per guest thread,
//!   one shared memory, fuel budget and deadline per run, and a teardown that stops them all;
//! - [`harness`]: `#[test]`s run one instance each, reported like `cargo test`;
//! - [`outcome`]: the statuses and the sentence for each.
//!
//! It may use [`config`](crate::config) only.

pub mod backtrace;
pub mod capture;
pub mod check;
pub mod engine;
pub mod execute;
pub mod harness;
pub mod outcome;
pub mod stats;
pub mod stdin;
pub mod threads;

pub use capture::{OutputSink, StreamKind};
pub use check::Unfit;
pub use engine::{Program, Runner, Serialized, Tier};
pub use execute::{Input, RunOptions};
pub use outcome::{RunError, RunOutput, Status};
pub use stats::RunStats;
pub use stdin::{LiveStdin, RunSlot};
