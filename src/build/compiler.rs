//! Compiling a user's program to a `wasm32-wasip1` module with the real `rustc`.
//!
//! Each compile gets a fresh temp dir holding the program's files as a cargo package would:
//! `src/main.rs` (the sample plus the entry stub) or `src/lib.rs` for a library, modules in
//! folders, and on success `main.wasm`. `rustc` runs with the job dir as its working directory
//! and a relative input path, so every location it reports reads `src/main.rs:L:C`, as under
//! `cargo run`.
//!
//! The module is built as a `cdylib` whose export `__entry` calls the user's `main`: that keeps
//! the guest a reactor we can call into, while the stub reproduces what a native `fn main` does
//! around it (exit codes through `Termination`, native-looking panic messages, flushed stdout).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout, Command};

use super::code::{Code, SourceFile};
use super::crates::CrateSet;
use super::diagnostics::{Diagnostic, parse_diagnostics};
use super::options::{CompileOptions, CrateKind, Edition, Emit, Mode, Target};
use super::sandbox::{NATIVE_TARGET, ProcessLimits, Sandbox, SandboxError, Stdin};
use super::toolchain::Toolchain;
use super::warm::Spares;

/// The one-line entry stub: `$call_main` calls `main`; `$after_message` runs in the panic hook
/// after the message.
macro_rules! entry_stub {
    ($call_main:expr; $($after_message:expr),*) => {
        concat!(
            "#[doc(hidden)] #[unsafe(no_mangle)] pub extern \"C\" fn __entry() -> i32 { ",
            "::std::panic::set_hook(::std::boxed::Box::new(|info: &::std::panic::PanicHookInfo<'_>| { ",
            "let msg = info.payload_as_str().unwrap_or(\"Box<dyn Any>\"); ",
            "match info.location() { ",
            "Some(l) => ::std::eprintln!(\"\\nthread 'main' (1) panicked at {}:{}:{}:\\n{}\", l.file(), l.line(), l.column(), msg), ",
            "None => ::std::eprintln!(\"\\nthread 'main' (1) panicked:\\n{}\", msg), } ",
            $($after_message,)*
            "::std::process::exit(101) })); ",
            "let code = ::std::process::Termination::report(", $call_main, "); ",
            "let _ = ::std::io::Write::flush(&mut ::std::io::stdout()); ",
            "(0..=255u8).find(|&c| code == ::std::process::ExitCode::from(c)).map_or(1, i32::from) }\n",
        )
    };
}

/// Appended (after a newline) to every sample; it must stay on one line so that it adds exactly
/// one line after the user's code, which [`Compiler`] recognises in diagnostics.
///
/// Written with absolute paths so it compiles in every edition and whatever the sample imports.
/// `std::process::exit` inside the panic hook both stops the guest (wasm32-wasip1 aborts on
/// panic) and runs std's cleanup, which flushes stdout, as a native panic in `main` would.
/// The `wasm32-wasip1-threads` form of [`entry_stub!`]. It differs in two ways:
/// - it calls `__wasi_init_tp()` first: a cdylib on that target has no `_initialize`, and
///   nothing else sets up the main thread's pthread (without it `thread::spawn` spins forever);
/// - the hook names the panicking thread (std never names the entry thread of a cdylib, so
///   the thread whose id the stub recorded first is "main") and prints its id.
macro_rules! threads_entry_stub {
    ($call_main:expr; $($after_message:expr),*) => {
        concat!(
            "#[doc(hidden)] #[unsafe(no_mangle)] pub extern \"C\" fn __entry() -> i32 { ",
            "{ unsafe extern \"C\" { fn __wasi_init_tp(); } unsafe { __wasi_init_tp() } } ",
            "static MAIN: ::std::sync::OnceLock<::std::thread::ThreadId> = ::std::sync::OnceLock::new(); ",
            "let _ = MAIN.set(::std::thread::current().id()); ",
            "::std::panic::set_hook(::std::boxed::Box::new(|info: &::std::panic::PanicHookInfo<'_>| { ",
            "let msg = info.payload_as_str().unwrap_or(\"Box<dyn Any>\"); ",
            "let t = ::std::thread::current(); ",
            "let name = if MAIN.get() == Some(&t.id()) { \"main\" } else { t.name().unwrap_or(\"<unnamed>\") }; ",
            "let id = ::std::format!(\"{:?}\", t.id()); ",
            "let id = id.trim_start_matches(\"ThreadId(\").trim_end_matches(')'); ",
            "match info.location() { ",
            "Some(l) => ::std::eprintln!(\"\\nthread '{}' ({}) panicked at {}:{}:{}:\\n{}\", name, id, l.file(), l.line(), l.column(), msg), ",
            "None => ::std::eprintln!(\"\\nthread '{}' ({}) panicked:\\n{}\", name, id, msg), } ",
            $($after_message,)*
            "::std::process::exit(101) })); ",
            "let code = ::std::process::Termination::report(", $call_main, "); ",
            "let _ = ::std::io::Write::flush(&mut ::std::io::stdout()); ",
            "(0..=255u8).find(|&c| code == ::std::process::ExitCode::from(c)).map_or(1, i32::from) }\n",
        )
    };
}

/// The panic hook's last words without a backtrace.
macro_rules! backtrace_note {
    () => {
        "::std::eprintln!(\"note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\"); "
    };
}

/// `main` called through a generic `__rust_begin_short_backtrace`, as `std::rt::lang_start`
/// does, so the frames end as natively (`FnOnce::call_once`) and the host knows where to stop.
macro_rules! short_backtrace_main {
    () => {
        "{ #[inline(never)] fn __rust_begin_short_backtrace<F: FnOnce() -> T, T>(f: F) -> T { f() } __rust_begin_short_backtrace(main) }"
    };
}

/// The panic hook's last words with `backtrace: true`: `stack backtrace:` and the frames
/// Wasmtime walks (std cannot walk a WebAssembly stack), through the host import
/// `wasm_playground::backtrace` that writes them into a buffer.
macro_rules! backtrace_frames {
    () => {
        concat!(
            "#[link(wasm_import_module = \"wasm_playground\")] unsafe extern \"C\" { fn backtrace(buf: *mut u8, len: usize) -> usize; } ",
            "let mut buf = ::std::vec![0u8; 1 << 16]; ",
            "let n = unsafe { backtrace(buf.as_mut_ptr(), buf.len()) }; ",
            "::std::eprint!(\"stack backtrace:\\n{}\", ::std::string::String::from_utf8_lossy(&buf[..n])); ",
            "::std::eprintln!(\"note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.\"); "
        )
    };
}

const ENTRY_STUB: &str = entry_stub!("main()"; backtrace_note!());

/// [`ENTRY_STUB`] for a run with `backtrace: true`.
const BACKTRACE_STUB: &str = entry_stub!(short_backtrace_main!(); backtrace_frames!());

/// The entry stub of `wasm32-wasip1-threads` programs.
const THREADS_ENTRY_STUB: &str = threads_entry_stub!("main()"; backtrace_note!());

/// [`THREADS_ENTRY_STUB`] for a run with `backtrace: true` (a spawned thread's frames end at
/// std's own `__rust_begin_short_backtrace`, as natively).
const THREADS_BACKTRACE_STUB: &str =
    threads_entry_stub!(short_backtrace_main!(); backtrace_frames!());

/// Bumped whenever [`ENTRY_STUB`], the flags or the processing of diagnostics change, so caches
/// keyed on it (the artifact cache, on disk across upgrades) stay correct.
pub const STUB_VERSION: u32 = 7;

/// What came out of one `rustc` run. The wasm file lives in `dir` and goes away with it.
#[derive(Debug)]
pub struct BuildResult {
    pub success: bool,
    /// Path of the compiled module; meaningful only when `success`.
    pub wasm: PathBuf,
    /// What the tool wrote to stdout: the interpreted program's output under Miri.
    pub stdout: String,
    /// The tool's exit status; `None` when a signal or a limit stopped it.
    pub exit_code: Option<i32>,
    /// The human-readable diagnostics, as `cargo build` would print them.
    pub rendered: String,
    pub diagnostics: Vec<Diagnostic>,
    /// The diagnostics were cut at the configured cap.
    pub truncated: bool,
    /// The tool itself decided the outcome (it was not stopped by a time, CPU, memory or file
    /// limit), so the same input always gives the same result and the result may be cached.
    pub cacheable: bool,
    dir: TempDir,
}

impl BuildResult {
    /// The same result, failed with `message` (an error found after the tool ran).
    pub fn with_error(mut self, message: String) -> Self {
        self.success = false;
        self.rendered.push_str(&format!("error: {message}\n"));
        self.diagnostics.push(Diagnostic::error(message));
        self
    }

    /// The job's temp dir, which is removed when the result is dropped.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Failures of the service itself (as opposed to errors in the user's program).
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("could not prepare the build directory: {0}")]
    Workspace(#[source] std::io::Error),
    #[error("could not start rustc: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("waiting for rustc failed: {0}")]
    Wait(#[source] std::io::Error),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// Where and under which limits compiles run.
#[derive(Debug, Clone)]
pub struct CompileSettings {
    /// Parent of the per-compile temp dirs.
    pub work_dir: PathBuf,
    pub timeout: Duration,
    pub diagnostics_bytes: usize,
    /// Spare compilers kept started (`build/warm.rs`).
    pub spares: usize,
}

/// The toolchain, the sandbox its processes run in, and the limits; one per process.
pub struct Compiler {
    pub(super) toolchain: Toolchain,
    pub(super) sandbox: Sandbox,
    pub(super) settings: CompileSettings,
    /// The offered crates, when this toolchain can load them.
    crates: Option<Arc<CrateSet>>,
    /// `--extern` and `-L` arguments for them.
    pub(super) crate_args: Vec<String>,
    /// The same for wasm32-wasip1-threads programs.
    threads_crate_args: Vec<String>,
    /// `--sysroot` of the lean sysroot made at set-up, when there is one (empty otherwise).
    lean_sysroot: Vec<String>,
    /// Miri's sysroot, when this is nightly and it was prepared.
    pub(super) miri_sysroot: Option<PathBuf>,
    /// The toolchain's `rust-src` directory and what to show instead (empty when unused).
    pub(super) std_src: (String, String),
    /// Compilers started ahead for the next builds.
    pub(super) spares: Spares,
}

impl Compiler {
    pub fn new(toolchain: Toolchain, sandbox: Sandbox, settings: CompileSettings) -> Self {
        Self {
            spares: Spares::new(settings.spares),
            toolchain,
            sandbox,
            settings,
            crates: None,
            crate_args: Vec::new(),
            threads_crate_args: Vec::new(),
            lean_sysroot: Vec::new(),
            miri_sysroot: None,
            std_src: Default::default(),
        }
    }

    /// Makes `crates` available to every program this compiler builds, and readable by it.
    pub fn with_crates(mut self, crates: Arc<CrateSet>) -> Result<Self, SandboxError> {
        self.sandbox.allow_read(&crates.dirs())?;
        self.crate_args = crates.rustc_args();
        self.threads_crate_args = crates.threads_rustc_args().unwrap_or_default();
        if let Some(lean) = self.toolchain.lean_sysroot(&crates.lean_sysroot) {
            self.sandbox.allow_read(&[&lean])?;
            self.lean_sysroot = vec!["--sysroot".into(), lean.display().to_string()];
        }
        self.crates = Some(crates);
        Ok(self)
    }

    /// The offered crates, if this compiler has them.
    pub fn crates(&self) -> Option<&CrateSet> {
        self.crates.as_deref()
    }

    pub fn toolchain(&self) -> &Toolchain {
        &self.toolchain
    }

    /// False only when started with `--insecure-unsandboxed-compile`.
    pub fn sandbox_enforced(&self) -> bool {
        self.sandbox.is_enforced()
    }

    /// Compiles `code` in a fresh temp dir. Errors in the program are a successful call with
    /// `success: false`; `Err` means the service could not do its job.
    pub async fn compile_input(
        &self,
        code: &Code,
        opts: &CompileOptions,
    ) -> Result<BuildResult, CompileError> {
        let target = self.target_for(code, opts);
        let args = self.build_args(opts, target);
        self.build_package(&self.toolchain.rustc, code, opts, target, args)
            .await
    }

    /// The target `code` is built for: threads only where the toolchain has them.
    pub(super) fn target_for(&self, code: &Code, opts: &CompileOptions) -> Target {
        match Target::for_program(code, opts) {
            // Logged at start-up; the program fails to spawn as it did before threads.
            Target::Wasip1Threads if !self.toolchain.threads => Target::Wasip1,
            target => target,
        }
    }

    /// `rustc`'s arguments for a build for `target`, given its options, job dir and crate
    /// root, and the file it writes.
    pub(super) fn build_args(
        &self,
        opts: &CompileOptions,
        target: Target,
    ) -> impl Fn(&CompileOptions, &Path, &str) -> (Vec<String>, &'static str) {
        let crate_args: &[String] = match target {
            // Built for the host, which the offered crates are not.
            _ if build_kind(opts) == CrateKind::ProcMacro => &[],
            Target::Wasip1 => &self.crate_args,
            Target::Wasip1Threads => &self.threads_crate_args,
        };
        // The same module from a std without debug sections, unless std's line tables may be
        // shown (a backtrace). The lean sysroot has only the WebAssembly targets: a proc-macro
        // is checked against the host's std.
        let sysroot: &[String] = if opts.backtrace || build_kind(opts) == CrateKind::ProcMacro {
            &[]
        } else {
            &self.lean_sysroot
        };
        move |opts, dir, root| {
            let (args, output) = rustc_args(opts, target, dir, root);
            ([sysroot, &args, crate_args].concat(), output)
        }
    }

    /// Runs clippy on `code` (a check build: no code is generated) and returns its lints.
    pub async fn clippy(
        &self,
        code: &Code,
        opts: &CompileOptions,
    ) -> Result<BuildResult, CompileError> {
        let opts = CompileOptions {
            emit: Emit::Link,
            // `cargo clippy` checks every target: a package's binary after its library.
            kind: match opts.kind {
                CrateKind::Library if !code.has("src/main.rs") => CrateKind::Library,
                _ => CrateKind::Binary,
            },
            ..*opts
        };
        let clippy = self.toolchain.tool("clippy-driver");
        self.build_package(&clippy, code, &opts, Target::Wasip1, |opts, dir, root| {
            let (crate_type, output) = match opts.kind {
                CrateKind::Library => ("lib", "libplayground.rmeta"),
                _ => ("bin", "main.rmeta"),
            };
            let mut args: Vec<String> = vec![
                "--sysroot".into(),
                self.toolchain.sysroot.display().to_string(),
                "--target".into(),
                "wasm32-wasip1".into(),
                "--crate-type".into(),
                crate_type.into(),
            ];
            args.extend(common_args(dir, opts));
            args.extend(["--emit=metadata".into(), "-o".into(), output.into()]);
            args.extend(self.crate_args.iter().cloned());
            args.push(root.into());
            (args, output)
        })
        .await
    }

    /// Formats `code` with rustfmt: every `.rs` file of a package. On success the files in
    /// [`BuildResult::dir`] are formatted; [`Self::formatted`] reads them back.
    pub async fn format(&self, code: &Code, edition: Edition) -> Result<BuildResult, CompileError> {
        let job = Job::new(&self.settings.work_dir, code, "src/main.rs", None)?;
        let mut args = vec!["--edition".to_string(), edition.as_str().to_string()];
        args.extend(
            code.files("src/main.rs")
                .into_iter()
                .map(|(name, _)| name.to_string())
                .filter(|name| name.ends_with(".rs")),
        );
        let rustfmt = self.toolchain.tool("rustfmt");
        self.run_job(&rustfmt, &args, job, "src/main.rs").await
    }

    /// The files of `code` as [`Self::format`] left them in `build`'s job dir.
    pub fn formatted(code: &Code, build: &BuildResult) -> Result<Code, CompileError> {
        let read = |name: &str| {
            std::fs::read_to_string(build.dir().join(name)).map_err(CompileError::Workspace)
        };
        Ok(match code {
            Code::Single(_) => Code::Single(read("src/main.rs")?),
            Code::Files(files) => Code::Files(
                files
                    .iter()
                    .map(|f| {
                        Ok(SourceFile {
                            name: f.name.clone(),
                            content: read(&f.name)?,
                        })
                    })
                    .collect::<Result<_, CompileError>>()?,
            ),
        })
    }

    /// Builds `code` as cargo builds a package: its crate root is `src/main.rs` or `src/lib.rs`
    /// as `opts` asks; a binary whose package also has `src/lib.rs` gets that library built
    /// first, as the crate `playground` it may use. `target` picks the entry stub; `args` gives
    /// a tool's arguments and output file for options, job dir and crate root.
    async fn build_package(
        &self,
        tool: &Path,
        code: &Code,
        opts: &CompileOptions,
        target: Target,
        args: impl Fn(&CompileOptions, &Path, &str) -> (Vec<String>, &'static str),
    ) -> Result<BuildResult, CompileError> {
        let layout = match Layout::of(code, opts) {
            Ok(layout) => layout,
            Err(message) => {
                let job = Job::new(
                    &self.settings.work_dir,
                    &Code::default(),
                    "src/main.rs",
                    None,
                )?;
                return Ok(failed_build(job.dir, message));
            }
        };
        let opts = &layout.opts;
        let _building = self.spares.building();
        if !layout.with_lib
            && let Some(built) = self
                .build_with_spare(tool, code, opts, target, layout.root, &args)
                .await
        {
            return built;
        }
        let mut job = Job::new(
            &self.settings.work_dir,
            code,
            layout.root,
            stub(opts, target),
        )?;
        // The library's output, for the binary's build to add to its own.
        let mut lib = None;
        let mut externs = Vec::new();
        if layout.with_lib {
            let lib_opts = CompileOptions {
                kind: CrateKind::Library,
                emit: Emit::Link,
                ..*opts
            };
            let (mut lib_args, output) = args(&lib_opts, job.dir.path(), "src/lib.rs");
            // Two crates named `playground` in one program, told apart as cargo does.
            lib_args.extend(["-C".into(), "metadata=lib".into()]);
            let stub_line = job.stub_line;
            let lib_job = Job {
                stub_line: u32::MAX,
                root: "src/lib.rs",
                ..job
            };
            let built = self.run_job(tool, &lib_args, lib_job, output).await?;
            if !built.success {
                return Ok(built);
            }
            let BuildResult {
                dir,
                rendered,
                diagnostics,
                truncated,
                cacheable,
                ..
            } = built;
            job = Job {
                dir,
                root: layout.root,
                stub_line,
            };
            externs = vec!["--extern".to_string(), format!("playground={output}")];
            lib = Some((rendered, diagnostics, truncated, cacheable));
        }
        let (mut main_args, output) = args(opts, job.dir.path(), layout.root);
        main_args.extend(externs);
        let mut result = self.run_job(tool, &main_args, job, output).await?;
        if let Some((rendered, diagnostics, truncated, cacheable)) = lib {
            // The binary's tests run after the library's, whose build showed these (cargo
            // counts them as duplicates).
            if !opts.kind.is_tests() {
                result.rendered.insert_str(0, &rendered);
                result.diagnostics.splice(0..0, diagnostics);
            }
            result.truncated |= truncated;
            result.cacheable &= cacheable;
        }
        Ok(result)
    }

    /// Runs one confined tool in the job dir and collects its diagnostics (and its stdout, which
    /// only Miri's interpreted program writes); `output` names the file it produces, relative to
    /// the job dir.
    pub(super) async fn run_job(
        &self,
        program: &Path,
        args: &[String],
        job: Job,
        output: &str,
    ) -> Result<BuildResult, CompileError> {
        let started = self.start(program, args, job.dir(), Stdin::Null)?;
        self.collect(program, started, job, output, None).await
    }

    /// Starts a confined tool with `dir` as its working directory and temp dir.
    pub(super) fn start(
        &self,
        program: &Path,
        args: &[String],
        dir: &Path,
        stdin: Stdin,
    ) -> Result<Started, CompileError> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(dir)
            .env_clear()
            .env("TMPDIR", dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = self.sandbox.spawn(&mut cmd, dir, stdin)?;
        // Kills the tool and its linker if it is dropped before it exits (client gone, time
        // out, a spare never used).
        let group = KillGroupOnDrop(child.id());
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(CompileError::Spawn(std::io::Error::other(
                "the tool's output was not captured",
            )));
        };
        Ok(Started {
            stdin: child.stdin.take(),
            child,
            _group: group,
            stdout,
            stderr,
        })
    }

    /// Feeds `input` to a started tool's stdin (then closes it), waits for it within the time
    /// limit and collects its diagnostics and stdout.
    pub(super) async fn collect(
        &self,
        program: &Path,
        started: Started,
        job: Job,
        output: &str,
        input: Option<String>,
    ) -> Result<BuildResult, CompileError> {
        let Job {
            dir,
            stub_line,
            root,
        } = job;
        // Miri interprets the program: its limits are the program's, not a compile's.
        let (tool, work) = if program.ends_with("miri") {
            ("Miri", "Miri")
        } else {
            ("the compiler", "compilation")
        };
        let Started {
            mut child,
            _group: mut group,
            stdin,
            mut stdout,
            mut stderr,
        } = started;
        let feed = async move {
            if let (Some(mut stdin), Some(input)) = (stdin, input) {
                // A spare that read the crate root from its file may have exited already: a
                // closed pipe is no error. Dropping `stdin` closes it: the end of the file.
                let _ = stdin.write_all(input.as_bytes()).await;
            }
        };
        let cap = self.settings.diagnostics_bytes;
        let run = async {
            let ((), out, err) = tokio::join!(
                feed,
                read_capped(&mut stdout, cap),
                read_capped(&mut stderr, cap)
            );
            let ((stdout, out_cut), (captured, err_cut)) = (out?, err?);
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((stdout, captured, out_cut || err_cut, status))
        };
        let (stdout, captured, truncated, status) =
            match tokio::time::timeout(self.settings.timeout, run).await {
                Ok(result) => {
                    // The tool has exited and waited for its children: nothing left to kill.
                    group.0 = None;
                    result.map_err(CompileError::Wait)?
                }
                Err(_) => {
                    let secs = self.settings.timeout.as_secs_f64();
                    let message = format!("{work} took longer than the {secs} s limit");
                    return Ok(failed_build(dir, message));
                }
            };

        let crash = crash_gist(tool, status, &captured);
        // A crash report (a backtrace, the path of an ICE file, the tool's own panic) names
        // host paths and addresses: only the compiler's JSON messages from before it are kept.
        let kept: Vec<u8>;
        let captured = match crash {
            Some(_) => {
                kept = json_lines(&captured);
                &kept
            }
            None => &captured,
        };
        let too_large = String::from_utf8_lossy(captured).contains("File too large");
        let (mut rendered, mut diagnostics) = parse_diagnostics(captured, root, stub_line);
        // Tools that print absolute paths (rustfmt) must not show the job dir.
        let prefix = format!("{}/", dir.path().display());
        let mut stdout = String::from_utf8_lossy(&stdout).into_owned();
        // Miri's std is built from the toolchain's `rust-src` on this host: its frames are
        // shown where rustc's own std says it lives, `/rustc/HASH/`.
        let rewrites = [
            (prefix.as_str(), ""),
            (self.std_src.0.as_str(), self.std_src.1.as_str()),
        ];
        for (from, to) in rewrites.iter().filter(|(from, _)| !from.is_empty()) {
            rendered = rendered.replace(from, to);
            stdout = stdout.replace(from, to);
            for d in &mut diagnostics {
                d.message = d.message.replace(from, to);
            }
        }
        // A signal means a CPU or memory limit (or a crash); "File too large", the file limit.
        let cacheable = status.code().is_some() && !too_large && crash.is_none();
        if too_large {
            // LLVM's "IO failure on output stream: File too large" says nothing to the user.
            rendered = rendered
                .lines()
                .filter(|l| !l.contains("File too large"))
                .map(|l| format!("{l}\n"))
                .collect();
        }
        let mut result = BuildResult {
            success: status.success(),
            wasm: dir.path().join(output),
            stdout,
            exit_code: status.code(),
            rendered,
            diagnostics,
            truncated,
            cacheable,
            dir,
        };
        let explained = result.diagnostics.iter().any(|d| d.level == "error")
            || result.rendered.lines().any(|l| l.starts_with("error"));
        // A program under Miri that exits with a status (a panic's 101) has said why itself.
        let program_exit = tool == "Miri" && status.code().is_some();
        let why = match crash {
            Some(gist) => Some(format!("{tool} crashed: {gist}")),
            None if too_large => Some(format!(
                "the program's code and static data are over the {} MiB limit on the size of a compiled program",
                self.sandbox.limits().file_bytes >> 20
            )),
            // Killed by a signal or a limit before it could say why.
            None if !status.success() && !explained && !program_exit => Some(describe_exit(
                tool,
                status,
                &result.rendered,
                self.sandbox.limits(),
            )),
            None => None,
        };
        if let Some(why) = why {
            result.success = false;
            result.rendered.push_str(&format!("error: {why}\n"));
            result.diagnostics.push(Diagnostic::error(why));
        }
        Ok(result)
    }
}

/// Arguments shared by builds and clippy runs in `dir`.
///
/// Programs and tests are built with `strip=symbols`: nothing shows their symbol names (panic
/// messages come from the stub's hook), and the modules are ~25% smaller (hello world 78 ->
/// 61 KB) at no cost in compile time (BENCHMARKS.md). A plain binary keeps its names for
/// `/compile`'s WAT.
pub(super) fn common_args(dir: &Path, opts: &CompileOptions) -> Vec<String> {
    // A backtrace needs the functions' names and line tables (Wasmtime reads them).
    let (debuginfo, strip) = match build_kind(opts) {
        CrateKind::Program if opts.backtrace => ("debuginfo=line-tables-only", "strip=none"),
        CrateKind::Binary | CrateKind::Cdylib => ("debuginfo=0", "strip=debuginfo"),
        _ => ("debuginfo=0", "strip=symbols"),
    };
    let opt_level = match opts.mode {
        Mode::Debug => "opt-level=0",
        Mode::Release => "opt-level=3",
    };
    [
        "--crate-name",
        "playground",
        "--edition",
        opts.edition.as_str(),
        "-C",
        debuginfo,
        "-C",
        strip,
        "-C",
        opt_level,
        "--error-format=json",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--remap-path-prefix={}/=", dir.display())])
    .collect()
}

/// What a build of `opts` compiles: the program kind, after text output (MIR, LLVM IR,
/// assembly) is turned into a plain binary (the stub would only add noise).
fn build_kind(opts: &CompileOptions) -> CrateKind {
    match (opts.emit, opts.kind) {
        (Emit::Link, kind) => kind,
        (_, CrateKind::Library | CrateKind::Cdylib | CrateKind::ProcMacro) => CrateKind::Library,
        _ => CrateKind::Binary,
    }
}

/// Whether the crate root gets the entry stub appended.
pub fn needs_stub(opts: &CompileOptions) -> bool {
    build_kind(opts) == CrateKind::Program
}

/// The entry stub appended to the crate root of a build for `target`, if any.
pub(super) fn stub(opts: &CompileOptions, target: Target) -> Option<&'static str> {
    match (needs_stub(opts), target, opts.backtrace) {
        (false, _, _) => None,
        (true, Target::Wasip1, false) => Some(ENTRY_STUB),
        (true, Target::Wasip1, true) => Some(BACKTRACE_STUB),
        (true, Target::Wasip1Threads, false) => Some(THREADS_ENTRY_STUB),
        (true, Target::Wasip1Threads, true) => Some(THREADS_BACKTRACE_STUB),
    }
}

/// The `rustc` arguments of a build for `target` in `dir` (its working directory) of the crate
/// root `root` (e.g. `src/main.rs`), and the file it writes there. Public so that benchmarks can
/// time the very same command.
pub fn rustc_args(
    opts: &CompileOptions,
    target: Target,
    dir: &Path,
    root: &str,
) -> (Vec<String>, &'static str) {
    // As cargo does for a proc-macro crate, `proc_macro` is in scope without `extern crate`.
    let (crate_args, output): (&[&str], &str) = match build_kind(opts) {
        CrateKind::Program => (&["--crate-type", "cdylib"], "main.wasm"),
        CrateKind::Binary => (&["--crate-type", "bin"], "main.wasm"),
        CrateKind::Tests | CrateKind::LibraryTests => (&["--test"], "main.wasm"),
        CrateKind::ProcMacroTests => (&["--test", "--extern", "proc_macro"], "main.wasm"),
        CrateKind::Library => (&["--crate-type", "lib"], "libplayground.rlib"),
        CrateKind::Cdylib => (&["--crate-type", "cdylib"], "main.wasm"),
        CrateKind::ProcMacro => (
            &["--crate-type", "proc-macro", "--extern", "proc_macro"],
            "libplayground.rmeta",
        ),
    };
    let (emit, output) = match opts.emit {
        // A proc-macro runs inside the compiler: cargo builds it for the host. No linker runs
        // in the sandbox, so it is checked (`cargo check`'s metadata), which reports the same
        // diagnostics.
        _ if build_kind(opts) == CrateKind::ProcMacro => ("--emit=metadata", output),
        Emit::Link => ("--emit=link", output),
        Emit::Mir => ("--emit=mir", "main.mir"),
        Emit::LlvmIr => ("--emit=llvm-ir", "main.ll"),
        Emit::Asm => ("--emit=asm", "main.s"),
    };
    let target = match build_kind(opts) {
        CrateKind::ProcMacro => NATIVE_TARGET,
        _ => target.as_str(),
    };
    let mut args: Vec<String> = ["--target", target]
        .iter()
        .chain(crate_args)
        .map(|s| s.to_string())
        .collect();
    args.extend(common_args(dir, opts));
    args.extend([emit.into(), "-o".into(), output.into(), root.into()]);
    (args, output)
}

/// `sample` as the file a build compiles: with `target`'s entry stub appended, if any.
pub fn source_file(sample: &str, stub: Option<Target>) -> String {
    let stub = stub.map(|target| match target {
        Target::Wasip1 => ENTRY_STUB,
        Target::Wasip1Threads => THREADS_ENTRY_STUB,
    });
    with_stub_appended(sample, stub)
}

pub(super) fn with_stub_appended(sample: &str, stub: Option<&str>) -> String {
    let mut source = String::with_capacity(sample.len() + stub.map_or(0, str::len) + 1);
    source.push_str(sample);
    if let Some(stub) = stub {
        if !sample.ends_with('\n') {
            source.push('\n');
        }
        source.push_str(stub);
    }
    source
}

/// The line of `source` where `stub` (appended last) starts, or `u32::MAX` without one.
pub(super) fn stub_line_of(source: &str, stub: Option<&str>) -> u32 {
    match stub {
        Some(_) => source.lines().count() as u32,
        None => u32::MAX,
    }
}

/// Which file is a build's crate root, and the options it is built with.
struct Layout {
    root: &'static str,
    /// `opts` with the crate kind the package allows (a package with only `src/lib.rs` is a
    /// library when a view of it is asked for).
    opts: CompileOptions,
    /// `src/lib.rs` is built first, for the binary to use.
    with_lib: bool,
}

impl Layout {
    /// Where cargo would find the crate `opts` asks for in `code`, or why there is none (in
    /// cargo's words where it has some).
    fn of(code: &Code, opts: &CompileOptions) -> Result<Self, String> {
        let layout = |root, kind, with_lib| Layout {
            root,
            opts: CompileOptions { kind, ..*opts },
            with_lib,
        };
        let kind = build_kind(opts);
        if let Code::Single(_) = code {
            let root = if kind.is_library() {
                "src/lib.rs"
            } else {
                "src/main.rs"
            };
            return Ok(layout(root, opts.kind, false));
        }
        let (main, lib) = (code.has("src/main.rs"), code.has("src/lib.rs"));
        match (kind, main, lib) {
            // `cargo build` builds a package's binary too, after its library.
            (CrateKind::Library, true, true) if opts.emit == Emit::Link => {
                Ok(layout("src/main.rs", CrateKind::Binary, true))
            }
            (kind, _, true) if kind.is_library() => Ok(layout("src/lib.rs", opts.kind, false)),
            (kind, true, false) if kind.is_library() => Ok(layout("src/main.rs", opts.kind, false)),
            (_, true, lib) => Ok(layout("src/main.rs", opts.kind, lib)),
            (CrateKind::Tests, false, true) => Ok(layout("src/lib.rs", opts.kind, false)),
            (CrateKind::Binary, false, true) => Ok(layout("src/lib.rs", CrateKind::Library, false)),
            (CrateKind::Program, false, true) => {
                Err("a bin target must be available for `cargo run` (add `src/main.rs`)".into())
            }
            _ => Err("the package has neither `src/main.rs` nor `src/lib.rs`".into()),
        }
    }
}

/// The crate root a single-crate tool (Miri, `-Zunpretty`, native `--emit`) reads: `src/lib.rs`
/// for a library, or a package with only that; else `src/main.rs`.
pub(super) fn tool_root(code: &Code, library: bool) -> &'static str {
    let only_lib = code.has("src/lib.rs") && !code.has("src/main.rs");
    if library || only_lib {
        "src/lib.rs"
    } else {
        "src/main.rs"
    }
}

/// A fresh temp dir holding the program's files.
pub(super) struct Job {
    pub(super) dir: TempDir,
    /// The crate root, e.g. `src/main.rs`.
    pub(super) root: &'static str,
    /// The root's line of the entry stub; diagnostics at or after it are about the stub.
    pub(super) stub_line: u32,
}

impl Job {
    pub(super) fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(super) fn new(
        work_dir: &Path,
        code: &Code,
        root: &'static str,
        stub: Option<&str>,
    ) -> Result<Self, CompileError> {
        let dir = tempfile::Builder::new()
            .prefix("wasm-playground-")
            .tempdir_in(work_dir)
            .map_err(CompileError::Workspace)?;
        std::fs::create_dir(dir.path().join("src")).map_err(CompileError::Workspace)?;
        code.write_to(dir.path(), root)
            .map_err(CompileError::Workspace)?;
        let mut stub_line = u32::MAX;
        if let Some(stub) = stub {
            let path = dir.path().join(root);
            let sample = std::fs::read_to_string(&path).map_err(CompileError::Workspace)?;
            let source = with_stub_appended(&sample, Some(stub));
            stub_line = stub_line_of(&source, Some(stub));
            std::fs::write(path, source).map_err(CompileError::Workspace)?;
        }
        Ok(Self {
            dir,
            root,
            stub_line,
        })
    }
}

fn failed_build(dir: TempDir, message: String) -> BuildResult {
    BuildResult {
        success: false,
        wasm: dir.path().join("main.wasm"),
        stdout: String::new(),
        exit_code: None,
        rendered: format!("error: {message}\n"),
        diagnostics: vec![Diagnostic::error(message)],
        truncated: false,
        cacheable: false,
        dir,
    }
}

/// The lines of a tool's stderr that are its JSON messages.
fn json_lines(captured: &[u8]) -> Vec<u8> {
    captured
        .split(|&b| b == b'\n')
        .filter(|line| line.first() == Some(&b'{'))
        .flat_map(|line| line.iter().copied().chain([b'\n']))
        .collect()
}

/// What went wrong when a tool crashed rather than finished or hit one of its limits, in a few
/// words for the user (its own report names host paths and addresses).
///
/// Under Miri a panic or a stack overflow is the interpreted program's, not a crash.
fn crash_gist(tool: &str, status: ExitStatus, captured: &[u8]) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    let text = String::from_utf8_lossy(captured);
    let text_lines = || text.lines().filter(|l| !l.starts_with('{'));
    let program_output = tool == "Miri";
    if !program_output && text_lines().any(|l| l.contains("has overflowed its stack")) {
        return Some("its stack overflowed (the program is nested too deeply)".into());
    }
    if text_lines().any(|l| {
        l.contains("internal compiler error") || (!program_output && l.contains("panicked at"))
    }) {
        return Some("internal compiler error".into());
    }
    match status.signal() {
        // The CPU and memory limits have their own words (`describe_exit`).
        Some(libc::SIGXCPU | libc::SIGKILL) => None,
        Some(libc::SIGABRT)
            if text.contains("memory allocation of") || text.contains("out of memory") =>
        {
            None
        }
        // rustc's own stack-overflow report does not always make it out before the signal.
        Some(libc::SIGSEGV) => {
            Some("it ran out of stack (SIGSEGV; the program may be nested too deeply)".into())
        }
        Some(signal) => Some(format!("it was stopped by signal {signal}")),
        None => None,
    }
}

/// Why rustc stopped without an error of its own, in words for the user.
fn describe_exit(tool: &str, status: ExitStatus, rendered: &str, limits: &ProcessLimits) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(libc::SIGXCPU) | Some(libc::SIGKILL) => format!(
            "{tool} used more than its {} s CPU limit",
            limits.cpu_seconds
        ),
        Some(libc::SIGABRT)
            if rendered.contains("memory allocation of") || rendered.contains("out of memory") =>
        {
            format!(
                "{tool} ran out of memory (its limit is {} MiB)",
                limits.data_bytes >> 20
            )
        }
        Some(signal) => format!("{tool} crashed (signal {signal})"),
        None => format!("{tool} failed with {status}"),
    }
}

/// A confined tool that has been started, with its pipes.
pub(super) struct Started {
    child: tokio::process::Child,
    _group: KillGroupOnDrop,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    stderr: ChildStderr,
}

impl Started {
    /// Whether the process has exited (a spare that died while it waited).
    pub(super) fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

/// Sends SIGKILL to a process group when dropped.
struct KillGroupOnDrop(Option<u32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|pid| libc::pid_t::try_from(pid).ok()) {
            // SAFETY: killpg has no memory-safety preconditions. The group is the one we created
            // for the child; if it already exited and was reaped, the call fails harmlessly.
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
        }
    }
}

/// Reads the whole stream, keeping at most `cap` bytes (the rest is drained so the child never
/// blocks on a full pipe).
async fn read_capped(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
    cap: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut chunk = vec![0u8; 16 << 10];
    loop {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Ok((kept, truncated));
        }
        let room = cap.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
        truncated |= n > room;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_is_one_line() {
        assert_eq!(ENTRY_STUB.lines().count(), 1);
        assert_eq!(BACKTRACE_STUB.lines().count(), 1);
        assert_eq!(THREADS_ENTRY_STUB.lines().count(), 1);
        assert_eq!(THREADS_BACKTRACE_STUB.lines().count(), 1);
    }

    /// The outside benchmark harness (`scripts/cold-bench`) builds the same file by hand.
    #[test]
    fn stub_fixture_is_the_stub() {
        let fixture = include_str!("../../tests/fixtures/bench/entry-stub.txt");
        assert_eq!(fixture, ENTRY_STUB);
    }
}
