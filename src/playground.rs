//! The whole pipeline behind one call: validate a request, compile it, run it, and describe the
//! result. The HTTP handlers and the `run` subcommand are thin wrappers around [`Playground`].

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::cache::{Artifact, ArtifactCache, CacheKey, Diagnostics};
use crate::compile::{
    CompileError, CompileOptions, CompileSettings, Compiler, Diagnostic, Edition, Mode,
};
use crate::config::Config;
use crate::runner::{RunError, RunOptions, Runner, Status};

/// One program to compile and run.
#[derive(Debug, Clone, Default)]
pub struct ExecuteRequest {
    pub code: String,
    pub edition: Edition,
    pub mode: Mode,
    pub stdin: String,
}

/// The answer to every finished execution, including compile errors and crashes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionOutput {
    pub success: bool,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub exit_detail: String,
    pub stdout: String,
    pub stderr: String,
    pub compiler_output: String,
    pub diagnostics: Vec<Diagnostic>,
    pub truncated: bool,
    pub fuel_consumed: u64,
    pub timings: Timings,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    /// Time to get the compiled program: `rustc` and Wasmtime's compile, or the cache lookup.
    pub compile_ms: f64,
    pub run_ms: f64,
    /// The compiled program (or compile error) came from the cache: no `rustc` ran for this
    /// request (it may have waited for an identical request's build).
    pub cached: bool,
}

/// Why a request could not be executed.
#[derive(Debug, thiserror::Error)]
pub enum PlaygroundError {
    /// The request itself is unacceptable (the client's fault; HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// The code or stdin is over its configured size limit (HTTP 413).
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error(transparent)]
    Run(#[from] RunError),
}

/// The compiler, the runner and the limits they share.
pub struct Playground {
    compiler: Compiler,
    runner: Arc<Runner>,
    cache: ArtifactCache,
    config: Config,
}

impl Playground {
    /// Checks the toolchain and sets up Wasmtime; fails with an actionable message.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let compiler = Compiler::detect(
            &config.rustc,
            CompileSettings {
                work_dir: config.work_dir.clone().unwrap_or_else(std::env::temp_dir),
                timeout: config.compile_timeout(),
                diagnostics_bytes: config.diagnostics_limit,
            },
        )?;
        let runner = Arc::new(Runner::new(&config)?);
        let cache = ArtifactCache::new(
            config.cache_memory_entries,
            &config.cache_dir(),
            config.cache_disk_bytes,
            runner.clone(),
        );
        Ok(Self {
            compiler,
            runner,
            cache,
            config,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn compiler(&self) -> &Compiler {
        &self.compiler
    }

    pub async fn execute(&self, req: ExecuteRequest) -> Result<ExecutionOutput, PlaygroundError> {
        self.validate(&req)?;
        let opts = CompileOptions {
            edition: req.edition,
            mode: req.mode,
        };
        let started = Instant::now();
        let key = CacheKey::new(
            &req.code,
            &opts,
            self.compiler.version(),
            self.config.diagnostics_limit,
        );
        let (artifact, source) = self
            .cache
            .get_or_build(key, || self.build(&req.code, &opts))
            .await?;
        let compile_ms = millis(started);
        let cached = source.cached();
        let diags = &artifact.diagnostics;
        let Some(program) = &artifact.program else {
            return Ok(ExecutionOutput {
                success: false,
                status: Status::CompileError,
                exit_code: None,
                exit_detail: "Compilation failed".into(),
                stdout: String::new(),
                stderr: String::new(),
                compiler_output: diags.rendered.clone(),
                diagnostics: diags.diagnostics.clone(),
                truncated: diags.truncated,
                fuel_consumed: 0,
                timings: Timings {
                    compile_ms,
                    run_ms: 0.0,
                    cached,
                },
            });
        };

        let mut run_opts = RunOptions::from_config(&self.config);
        run_opts.stdin = req.stdin.into_bytes();
        let started = Instant::now();
        let run = self.runner.execute(program, &run_opts).await?;
        let run_ms = millis(started);
        Ok(ExecutionOutput {
            success: run.status == Status::Ok,
            status: run.status,
            exit_code: run.exit_code,
            exit_detail: run.exit_detail,
            stdout: run.stdout,
            stderr: run.stderr,
            compiler_output: diags.rendered.clone(),
            diagnostics: diags.diagnostics.clone(),
            truncated: run.truncated || diags.truncated,
            fuel_consumed: run.fuel_consumed,
            timings: Timings {
                compile_ms,
                run_ms,
                cached,
            },
        })
    }

    /// Runs `rustc`, then Wasmtime's first-tier compile on a blocking thread. Returns the
    /// artifact and whether it may be cached (`rustc` was not cut short by a limit).
    async fn build(
        &self,
        code: &str,
        opts: &CompileOptions,
    ) -> Result<(Artifact, bool), PlaygroundError> {
        let started = Instant::now();
        let build = self.compiler.compile_input(code, opts).await?;
        let rustc_ms = millis(started);
        let diagnostics = Diagnostics {
            rendered: build.rendered.clone(),
            diagnostics: build.diagnostics.clone(),
            truncated: build.truncated,
        };
        let program = if build.success {
            let wasm: Arc<[u8]> = std::fs::read(&build.wasm)
                .map_err(|e| RunError::Load(format!("could not read the module: {e}")))?
                .into();
            let runner = self.runner.clone();
            let started = Instant::now();
            let program = tokio::task::spawn_blocking(move || runner.compile(wasm))
                .await
                .map_err(|e| RunError::Load(format!("the compile task failed: {e}")))??;
            tracing::debug!(rustc_ms, wasmtime_ms = millis(started), "built");
            Some(Arc::new(program))
        } else {
            None
        };
        Ok((
            Artifact {
                diagnostics,
                program,
            },
            build.cacheable,
        ))
    }

    fn validate(&self, req: &ExecuteRequest) -> Result<(), PlaygroundError> {
        if req.code.trim().is_empty() {
            return Err(PlaygroundError::BadRequest(
                "`code` is missing or empty".into(),
            ));
        }
        if req.code.len() > self.config.code_limit {
            return Err(PlaygroundError::TooLarge(format!(
                "`code` is {} bytes; the limit is {} bytes",
                req.code.len(),
                self.config.code_limit
            )));
        }
        if req.stdin.len() > self.config.stdin_limit {
            return Err(PlaygroundError::TooLarge(format!(
                "`stdin` is {} bytes; the limit is {} bytes",
                req.stdin.len(),
                self.config.stdin_limit
            )));
        }
        Ok(())
    }
}

/// Milliseconds since `start`, rounded to hundredths.
fn millis(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 100_000.0).round() / 100.0
}
