//! wasm-playground: the execution back end of an online Rust playground.
//!
//! A request carries a Rust program. The service builds it with the real `rustc` for
//! `wasm32-wasip1` in a sandbox, runs the module in Wasmtime under fuel, memory, output and
//! wall-clock limits, and answers JSON.
//!
//! # Layout
//!
//! Layers, from the wire down; each is a folder whose `mod.rs` says what it owns:
//!
//! - [`cli`]: the binary's subcommands (`serve`, `run`, `build-crates`);
//! - [`api`]: HTTP and WebSocket: the router (`app()`), JSON errors, one module per group of
//!   routes, the live WebSocket, and the operators' endpoints (health, metrics);
//! - [`pipeline`]: validate a request, build it, run it, describe the result: one call behind
//!   every endpoint, with admission control (slots and queues);
//! - [`inspect`]: `/compile`'s disassembly of what Wasmtime generates;
//! - [`build`]: source to module: toolchain, sandboxed `rustc`, diagnostics, crates, and the
//!   artifact cache's tiers (memory, disk, Redis); the other host tools (Miri, macro expansion
//!   and HIR, native assembly) in the same sandbox;
//! - [`run`]: module to outcome: engines and tiers, one store per run with its limits, output
//!   capture, the test harness, outcome statuses;
//! - [`shares`]: the store of shared programs behind `/meta/gist`: SQLite in the data directory
//!   or PostgreSQL for several replicas, the ids, the total size cap (it needs no other layer);
//! - [`config`]: every limit and setting, from flags, `WASM_PLAYGROUND_*` variables and a
//!   `--config` TOML file; read by every layer.
//!
//! The rule: a module imports only from the layers listed below its own (or from its own
//! folder). When a lower layer must call up, as a run streams output to a WebSocket, it defines
//! a small trait ([`run::OutputSink`], [`pipeline::LiveObserver`]) that the higher layer
//! implements. `tests/layers.rs` checks the rule on every test run.

pub mod api;
pub mod build;
pub mod cli;
pub mod config;
pub mod inspect;
pub mod pipeline;
pub mod run;
pub mod shares;
