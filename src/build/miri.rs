//! Miri, nightly's interpreter that detects undefined behaviour, behind `POST /miri`.
//!
//! Miri interprets the program on the host, so it runs exactly like `rustc`: in the job dir, in
//! the same [`Sandbox`](super::Sandbox) (Landlock, rlimits, seccomp) and under the same wall-clock
//! limit. Miri's own isolation (on by default) also keeps the interpreted program away from the
//! host's files, clock and environment. Its sysroot (std built with Miri's flags, about a minute)
//! is prepared once at set-up by [`setup`], never per request.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;

use super::code::Code;
use super::compiler::{BuildResult, CompileError, Compiler, Job, tool_root};
use super::options::Edition;
use super::sandbox::SandboxError;
use super::toolchain::Toolchain;

/// Which aliasing rules Miri checks references against (play.rust-lang.org's `aliasingModel`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AliasingModel {
    /// Stacked Borrows, Miri's default.
    #[default]
    Stacked,
    /// Tree Borrows (`-Zmiri-tree-borrows`), which accepts more programs.
    Tree,
}

impl FromStr for AliasingModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stacked" => Ok(AliasingModel::Stacked),
            "tree" => Ok(AliasingModel::Tree),
            _ => Err(format!(
                "unknown aliasingModel `{s}`, expected stacked or tree"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MiriSetupError {
    #[error(
        "the {0} toolchain has no Miri; install it with `rustup component add --toolchain nightly miri rust-src`"
    )]
    Missing(String),
    #[error("could not run `cargo miri setup`: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("`cargo miri setup` failed ({0})")]
    Failed(String),
}

/// Builds Miri's sysroot into `dir` with `toolchain`'s `cargo-miri` (a no-op when it is there
/// and up to date). Cargo's progress goes to this process's stderr.
pub fn setup(toolchain: &Toolchain, dir: &Path) -> Result<(), MiriSetupError> {
    let cargo_miri = toolchain.tool("cargo-miri");
    if !cargo_miri.is_file() || !toolchain.tool("miri").is_file() {
        return Err(MiriSetupError::Missing(toolchain.version.clone()));
    }
    // `cargo-miri` invoked directly (not through rustup's `cargo +nightly`), told which cargo
    // to build std with.
    let status = Command::new(&cargo_miri)
        .args(["miri", "setup"])
        .env("MIRI_SYSROOT", dir)
        .env("CARGO", toolchain.tool("cargo"))
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTUP_TOOLCHAIN")
        .stdin(Stdio::null())
        .status()
        .map_err(MiriSetupError::Spawn)?;
    if !status.success() {
        return Err(MiriSetupError::Failed(status.to_string()));
    }
    Ok(())
}

/// The full commit hash of `rustc` (`rustc -vV`), as std's paths show it; `unknown` if it
/// cannot say.
fn commit_hash(rustc: &Path) -> String {
    Command::new(rustc)
        .arg("-vV")
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("commit-hash: ").map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Whether `dir` holds a prepared Miri sysroot.
pub fn is_ready(dir: &Path) -> bool {
    dir.join("lib/rustlib").is_dir()
}

impl Compiler {
    /// Lets this (nightly) compiler run Miri with the sysroot in `dir`, and its processes read it.
    pub fn with_miri(mut self, dir: PathBuf) -> Result<Self, SandboxError> {
        self.sandbox.allow_read(&[&dir])?;
        self.miri_sysroot = Some(dir);
        let src = self.toolchain.sysroot.join("lib/rustlib/src/rust");
        self.std_src = (
            format!("{}/", src.display()),
            format!("/rustc/{}/", commit_hash(&self.toolchain.rustc)),
        );
        Ok(self)
    }

    /// Whether this compiler can run Miri.
    pub fn has_miri(&self) -> bool {
        self.miri_sysroot.is_some()
    }

    /// Interprets `code` (its `main`, or its tests with `tests`) with Miri. The program's
    /// stdout is [`BuildResult::stdout`]; Miri's reports and the program's stderr are in
    /// `rendered`. `None` when this compiler has no Miri.
    pub async fn miri(
        &self,
        code: &Code,
        edition: Edition,
        tests: bool,
        aliasing: AliasingModel,
    ) -> Option<Result<BuildResult, CompileError>> {
        let sysroot = self.miri_sysroot.as_ref()?;
        Some(self.run_miri(code, edition, tests, aliasing, sysroot).await)
    }

    async fn run_miri(
        &self,
        code: &Code,
        edition: Edition,
        tests: bool,
        aliasing: AliasingModel,
        sysroot: &Path,
    ) -> Result<BuildResult, CompileError> {
        let root = tool_root(code, false);
        let job = Job::new(&self.settings.work_dir, code, root, None)?;
        let mut args: Vec<String> = vec![
            "--sysroot".into(),
            sysroot.display().to_string(),
            "--crate-name".into(),
            "playground".into(),
            "--edition".into(),
            edition.as_str().into(),
            "--error-format=json".into(),
            format!("--remap-path-prefix={}/=", job.dir().display()),
        ];
        if tests {
            args.push("--test".into());
        } else {
            args.extend(["--crate-type".into(), "bin".into()]);
        }
        if aliasing == AliasingModel::Tree {
            args.push("-Zmiri-tree-borrows".into());
        }
        args.push(root.into());
        let miri = self.toolchain.tool("miri");
        self.run_job(&miri, &args, job, "").await
    }
}
