//! wasm-playground: the execution back end of an online Rust playground.
//!
//! A request carries a Rust program. [`compile`] writes it, plus a small entry stub, into a fresh
//! temp dir and builds it with the real `rustc` for `wasm32-wasip1`; [`runner`] runs the module
//! in Wasmtime under fuel, memory, output and wall-clock limits and classifies how it ended;
//! [`playground`] ties the two into one call; [`http`] (axum) and [`cli`] expose that call.
//!
//! Layout, one module per concept:
//! - [`config`]: every limit and setting, from flags, `WASM_PLAYGROUND_*` variables and a
//!   `--config` TOML file.
//! - [`cache`]: the content-addressed artifact cache (memory LRU + disk store).
//! - [`shared`]: the optional Redis cache shared by replicas, beside each one's own cache.
//! - [`compile`]: toolchain detection, the `rustc` invocation, diagnostics.
//! - [`crates`]: the offered third-party crates: their set-up build and the index compiles use.
//! - [`disasm`]: the x86-64 code Wasmtime generates for a program, for `/compile`.
//! - [`sandbox`]: Landlock, rlimits and seccomp around every `rustc` process.
//! - [`capture`]: the capped stdout/stderr buffers handed to the guest.
//! - [`runner`]: the engines (Winch, Cranelift, tier-up), pooling allocator, epoch ticker,
//!   background lane, one store per run, outcome statuses.
//! - [`admission`]: bounded slots and queues for compiles and runs (503 when saturated).
//! - [`harness`]: `#[test]`s run one instance each, reported like `cargo test`.
//! - [`playground`]: request validation and the response shape.
//! - [`live`]: the `/live` WebSocket: streamed output, interactive stdin, kill.
//! - [`health`], [`metrics`]: `/readyz` checks and Prometheus metrics for operators.
//! - [`http`]: the router (`app()`), JSON errors, CORS, request ids.
//! - [`cli`]: `serve` and `run`.

pub mod admission;
pub mod cache;
pub mod capture;
pub mod cli;
pub mod compile;
pub mod config;
pub mod crates;
pub mod disasm;
pub mod harness;
pub mod health;
pub mod http;
pub mod live;
pub mod metrics;
pub mod playground;
pub mod runner;
pub mod sandbox;
pub mod shared;
