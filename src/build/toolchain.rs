//! Finding the real `rustc` (and its `rustfmt`, `clippy-driver`) of each channel at start-up.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::config::Channel;

/// Problems found at start-up, each with the command that fixes it.
#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    #[error(
        "could not run `{rustc} --print sysroot` ({source}); install Rust with rustup (https://rustup.rs) and make sure `rustc` is on PATH"
    )]
    RustcMissing {
        rustc: String,
        source: std::io::Error,
    },
    #[error("`{rustc} --print sysroot` failed: {stderr}")]
    SysrootFailed { rustc: String, stderr: String },
    #[error(
        "the wasm32-wasip1 target is not installed in {sysroot}; install it with `rustup target add wasm32-wasip1{toolchain_flag}`"
    )]
    TargetMissing {
        sysroot: String,
        /// ` --toolchain nightly` for a channel other than the default one.
        toolchain_flag: String,
    },
}

/// The first line of `program --version`, if it runs.
fn tool_version(program: &Path) -> Option<String> {
    let output = std::process::Command::new(program)
        .arg("--version")
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().next()?.trim();
    (output.status.success() && !line.is_empty()).then(|| line.to_string())
}

/// The real compiler behind the rustup proxy, found once at start-up.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub rustc: PathBuf,
    pub sysroot: PathBuf,
    /// `rustc --version`.
    pub version: String,
    /// `rustfmt --version` and `clippy-driver --version`, when those components are installed.
    pub rustfmt_version: Option<String>,
    pub clippy_version: Option<String>,
    /// The wasm32-wasip1-threads target is installed: programs that start threads can run.
    pub threads: bool,
    /// `miri --version`, when nightly has the component.
    pub miri_version: Option<String>,
}

impl Toolchain {
    /// Another binary of the toolchain, e.g. `rustfmt` or `clippy-driver`.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.sysroot.join("bin").join(name)
    }

    /// Resolves the real `rustc` from `rustc --print sysroot` (the rustup proxy is slower and
    /// obeys a `rust-toolchain.toml` in the working directory) and checks the wasm target.
    pub fn detect(rustc: &str) -> Result<Self, ToolchainError> {
        Self::detect_with(&[rustc], "")
    }

    /// The toolchain rustup has for `channel` (via `rustup run CHANNEL rustc`).
    pub fn detect_channel(channel: Channel) -> Result<Self, ToolchainError> {
        let flag = format!(" --toolchain {}", channel.as_str());
        Self::detect_with(&["rustup", "run", channel.as_str(), "rustc"], &flag)
    }

    /// Asks `command --print sysroot` for the sysroot.
    fn detect_with(command: &[&str], toolchain_flag: &str) -> Result<Self, ToolchainError> {
        let rustc = command.join(" ");
        // No backtrace: rustup prints one for a missing toolchain when the service's environment
        // asks for backtraces, and this message reaches clients (the 400 for that channel).
        let output = std::process::Command::new(command[0])
            .args(&command[1..])
            .args(["--print", "sysroot"])
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ToolchainError::RustcMissing {
                rustc: rustc.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(ToolchainError::SysrootFailed {
                rustc,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if !sysroot.join("lib/rustlib/wasm32-wasip1/lib").is_dir() {
            return Err(ToolchainError::TargetMissing {
                sysroot: sysroot.display().to_string(),
                toolchain_flag: toolchain_flag.to_string(),
            });
        }
        let threads = sysroot
            .join("lib/rustlib/wasm32-wasip1-threads/lib")
            .is_dir();
        // Said once, for the toolchain the service runs with; beta and nightly programs that
        // start threads just fail to spawn them without it.
        if !threads && toolchain_flag.is_empty() {
            tracing::warn!(
                "the wasm32-wasip1-threads target is not installed in {}: programs that start threads will fail to spawn them; install it with `rustup target add wasm32-wasip1-threads{toolchain_flag}`",
                sysroot.display()
            );
        }
        let real_rustc = sysroot.join("bin/rustc");
        let version = tool_version(&real_rustc).ok_or_else(|| ToolchainError::RustcMissing {
            rustc: real_rustc.display().to_string(),
            source: std::io::Error::other("`rustc --version` failed"),
        })?;
        let bin = sysroot.join("bin");
        Ok(Self {
            rustfmt_version: tool_version(&bin.join("rustfmt")),
            clippy_version: tool_version(&bin.join("clippy-driver")),
            miri_version: tool_version(&bin.join("miri")),
            rustc: real_rustc,
            sysroot,
            threads,
            version,
        })
    }
}

/// The WebAssembly targets whose standard library a lean sysroot holds.
const WASM_TARGETS: [&str; 2] = ["wasm32-wasip1", "wasm32-wasip1-threads"];
/// The file of a lean sysroot naming the `rustc --version` it was made from; written last.
const LEAN_VERSION_FILE: &str = "version";

#[derive(Debug, thiserror::Error)]
pub enum LeanSysrootError {
    #[error("the toolchain has no rust-objcopy (in lib/rustlib/*/bin)")]
    NoObjcopy,
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rust-objcopy failed on {path}: {stderr}")]
    Objcopy { path: PathBuf, stderr: String },
}

impl Toolchain {
    /// Prepares in `dir` a sysroot with this toolchain's WebAssembly standard library whose
    /// object files carry no debug sections (`rust-objcopy --strip-debug` on every archive; the
    /// `.rmeta` files are copied as they are). `rust-lld` then reads and parses a fraction of
    /// what it reads for every program, and writes the very same module for a build that strips
    /// debug info anyway (BENCHMARKS.md). Done once at set-up, by `build-crates`.
    pub fn prepare_lean_sysroot(&self, dir: &Path) -> Result<(), LeanSysrootError> {
        let write = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LeanSysrootError::Write { path, source }
        };
        let objcopy = std::fs::read_dir(self.sysroot.join("lib/rustlib"))
            .map_err(write(&self.sysroot))?
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("bin/rust-objcopy"))
            .find(|path| path.is_file())
            .ok_or(LeanSysrootError::NoObjcopy)?;
        let _ = std::fs::remove_dir_all(dir);
        for target in WASM_TARGETS {
            let from = self.sysroot.join("lib/rustlib").join(target).join("lib");
            if !from.is_dir() {
                continue;
            }
            let to = dir.join("lib/rustlib").join(target).join("lib");
            for sub in ["", "self-contained"] {
                let (from, to) = (from.join(sub), to.join(sub));
                std::fs::create_dir_all(&to).map_err(write(&to))?;
                for entry in std::fs::read_dir(&from).map_err(write(&from))? {
                    let path = entry.map_err(write(&from))?.path();
                    let dest = to.join(path.file_name().unwrap_or_default());
                    let archive = path
                        .extension()
                        .is_some_and(|ext| ext == "rlib" || ext == "a");
                    if archive {
                        let output = Command::new(&objcopy)
                            .arg("--strip-debug")
                            .args([&path, &dest])
                            // rust-objcopy links the toolchain's LLVM.
                            .env("LD_LIBRARY_PATH", self.sysroot.join("lib"))
                            .stdin(Stdio::null())
                            .output()
                            .map_err(write(&dest))?;
                        if !output.status.success() {
                            return Err(LeanSysrootError::Objcopy {
                                path,
                                stderr: String::from_utf8_lossy(&output.stderr).trim().into(),
                            });
                        }
                    } else if path.is_file() {
                        std::fs::copy(&path, &dest).map_err(write(&dest))?;
                    }
                }
            }
        }
        let version = dir.join(LEAN_VERSION_FILE);
        std::fs::write(&version, &self.version).map_err(write(&version))
    }

    /// `dir`, if it holds a lean sysroot ([`Self::prepare_lean_sysroot`]) made from this
    /// toolchain.
    pub fn lean_sysroot(&self, dir: &Path) -> Option<PathBuf> {
        let made_from = std::fs::read_to_string(dir.join(LEAN_VERSION_FILE)).ok()?;
        (made_from == self.version).then(|| dir.to_path_buf())
    }
}
