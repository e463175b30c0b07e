//! Source to module: everything between a program's text and a compiled [`Program`] (or the
//! compiler's refusal), with the diagnostics users see.
//!
//! - [`toolchain`]: finding each channel's real `rustc`, `rustfmt` and `clippy-driver`;
//! - [`options`]: what a request asks for (edition, mode, crate kind, output form);
//! - [`code`]: a program's source, one file or a package's files;
//! - [`compiler`]: the job dir, the entry stub and the `rustc` (or tool) invocation;
//! - [`sandbox`]: Landlock, rlimits and seccomp around every compiler process;
//! - [`diagnostics`]: rustc's JSON messages as rendered text and structured diagnostics;
//! - [`crates`]: the offered third-party crates, built once at set-up (per channel);
//! - [`miri`]: Miri, the interpreter that detects undefined behaviour, and its set-up;
//! - [`warm`]: spare `rustc`s started before the programs they will build;
//! - [`unpretty`]: nightly's macro expansion and HIR;
//! - [`native`]: assembly and LLVM IR for the host, and the assembly's filters;
//! - [`cache`]: the artifact cache's memory and disk tiers, and [`shared_cache`], the Redis tier
//!   shared by replicas.
//!
//! It may use [`run`](crate::run) (a build ends in Wasmtime's compile, and the cache holds
//! compiled programs) and [`config`](crate::config); it never names the pipeline or the API.
//!
//! [`Program`]: crate::run::Program

pub mod cache;
pub mod code;
pub mod compiler;
pub mod crates;
pub mod diagnostics;
pub mod miri;
pub mod native;
pub mod options;
pub mod sandbox;
pub mod shared_cache;
pub mod toolchain;
pub mod unpretty;
pub mod warm;

pub use cache::{Artifact, ArtifactCache, CacheKey, Report, Source};
pub use code::{Code, SourceFile};
pub use compiler::{BuildResult, CompileError, CompileSettings, Compiler};
pub use crates::{CrateSet, OfferedCrate};
pub use diagnostics::Diagnostic;
pub use miri::AliasingModel;
pub use native::{AsmView, NativeEmit};
pub use options::{CompileOptions, CrateKind, Edition, Emit, Mode};
pub use sandbox::{ProcessLimits, Sandbox};
pub use toolchain::{Toolchain, ToolchainError};
pub use unpretty::Unpretty;
pub use warm::SpareStats;

pub use crate::config::Channel;
