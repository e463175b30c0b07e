//! Confinement of the compiler process.
//!
//! The guest program runs inside Wasmtime with no capabilities, but `rustc` runs on the host, on
//! attacker-chosen source: `include_str!("/etc/shadow")`, `#[path = "/proc/self/environ"] mod m;`
//! and friends read host files at compile time, and constant evaluation or macros can burn CPU
//! and memory. Every `rustc` child is therefore started with:
//!
//! - a Landlock ruleset: read and execute of the toolchain files rustc (and rustfmt,
//!   clippy-driver, miri) needs and the system libraries it links, read of the host target's std
//!   (native assembly) and Miri's sysroot, read of `/proc/sys/vm/overcommit_memory` (jemalloc's
//!   hint) and of the offered crates' `deps` directories, read/write of the job dir, nothing
//!   else. The ABI v1 filesystem rights are required; newer rights (truncate, TCP, scopes) are
//!   added where the kernel has them;
//! - a seccomp filter that makes `socket()` fail (rustc itself only needs `socketpair`);
//! - rlimits: CPU seconds, data segment, file size (SIGXFSZ ignored, so writes fail with EFBIG),
//!   open files, no core dumps.
//!
//! Landlock domains and seccomp filters belong to a thread and are inherited by the processes
//! it starts; so a short-lived thread restricts itself and starts the compiler with
//! `posix_spawn`. Forking the large server process instead (what a `pre_exec` hook needs) cost
//! ~10 ms of CPU per compile in copying and tearing down its page tables (BENCHMARKS.md).
//! Rlimits are per process: they are set on the child with `prlimit` as soon as it has started,
//! while `rustc` is still being loaded, before it has read a byte of the program.
//!
//! Without Landlock the service refuses to start, unless it was explicitly started with
//! `--insecure-unsandboxed-compile`; then rlimits and seccomp still apply and each compile logs a
//! warning.

use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};

/// Resource limits of one compiler process.
#[derive(Debug, Clone, Copy)]
pub struct ProcessLimits {
    pub cpu_seconds: u64,
    pub data_bytes: u64,
    pub file_bytes: u64,
    pub open_files: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "Landlock is not available on this kernel ({0}); the compiler cannot be confined. \
         Use a Linux 5.13+ kernel with Landlock enabled (lsm=landlock,...), or start with \
         --insecure-unsandboxed-compile to compile without it (not for untrusted code)"
    )]
    Unavailable(String),
    #[error("could not open {path} for the sandbox rules: {reason}")]
    Path { path: PathBuf, reason: String },
    #[error("could not build the sandbox rules: {0}")]
    Ruleset(String),
    #[error("could not start the compiler: {0}")]
    Spawn(#[source] std::io::Error),
}

/// What a confined process reads as its stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
    Null,
    /// A pipe from the server (a spare compiler's crate root, `build/warm.rs`).
    Piped,
}

/// A file or directory the compiler may use, opened once at start-up.
struct Rule {
    fd: PathFd,
    access: BitFlags<AccessFs>,
}

/// How compiler processes are confined; one per process, shared by all compiles.
pub struct Sandbox {
    /// `None` when running with `--insecure-unsandboxed-compile`.
    rules: Option<Vec<Rule>>,
    limits: ProcessLimits,
}

/// The target of `/compile`'s native assembly and LLVM IR, whose std compiles may read.
pub const NATIVE_TARGET: &str = "x86_64-unknown-linux-gnu";

/// The filesystem rights this service requires from Landlock.
const REQUIRED_ABI: ABI = ABI::V1;
/// The newest rights it uses where the kernel has them.
const BEST_ABI: ABI = ABI::V6;

/// Shared libraries the toolchain's binaries link (see `ldd rustc`, `ldd rust-lld`).
const SYSTEM_LIBRARIES: &[&str] = &[
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "librt.so.1",
    "libpthread.so.0",
    "libgcc_s.so.1",
    "libz.so.1",
];
const LIBRARY_DIRS: &[&str] = &[
    "/lib64",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib",
    "/usr/lib",
];

impl Sandbox {
    /// Computes the rules for the toolchain in `sysroot` and checks that the kernel can enforce
    /// them. With `insecure`, a missing Landlock is tolerated (and nothing is checked).
    pub fn new(
        sysroot: &Path,
        limits: ProcessLimits,
        insecure: bool,
    ) -> Result<Self, SandboxError> {
        ignore_file_size_signal();
        if insecure {
            return Ok(Self {
                rules: None,
                limits,
            });
        }
        probe_landlock()?;
        let read = AccessFs::from_read(BEST_ABI);
        let read_exec = read | AccessFs::Execute;
        let mut paths: Vec<(PathBuf, BitFlags<AccessFs>)> = vec![
            (sysroot.join("bin/rustc"), read_exec),
            (sysroot.join("bin/rustfmt"), read_exec),
            (sysroot.join("bin/clippy-driver"), read_exec),
            (sysroot.join("bin/miri"), read_exec),
            (sysroot.join("lib/rustlib/wasm32-wasip1/lib"), read),
            // The host's std, for native assembly and LLVM IR (`--emit`, never linked).
            (
                sysroot.join(format!("lib/rustlib/{NATIVE_TARGET}/lib")),
                read,
            ),
            (PathBuf::from("/proc/sys/vm/overcommit_memory"), read),
        ];
        let threads_lib = sysroot.join("lib/rustlib/wasm32-wasip1-threads/lib");
        if threads_lib.is_dir() {
            paths.push((threads_lib, read));
        }
        for entry in read_dir(&sysroot.join("lib"))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("librustc_driver-") || name.starts_with("libLLVM") {
                paths.push((entry.path(), read_exec));
            }
        }
        for entry in read_dir(&sysroot.join("lib/rustlib"))? {
            let lld = entry.path().join("bin/rust-lld");
            if lld.is_file() {
                paths.push((lld, read_exec));
            }
        }
        for name in SYSTEM_LIBRARIES {
            if let Some(path) = LIBRARY_DIRS
                .iter()
                .map(|dir| Path::new(dir).join(name))
                .find(|p| p.exists())
            {
                paths.push((path, read_exec));
            }
        }
        let rules = paths
            .into_iter()
            // rustfmt and clippy are optional components.
            .filter(|(path, _)| path.exists())
            .map(|(path, access)| {
                // Files take only file rights; directories take them all.
                let access = if path.is_dir() {
                    access
                } else {
                    access & AccessFs::from_file(BEST_ABI)
                };
                let fd = PathFd::new(&path).map_err(|e| SandboxError::Path {
                    reason: e.to_string(),
                    path,
                })?;
                Ok(Rule { fd, access })
            })
            .collect::<Result<Vec<_>, SandboxError>>()?;
        Ok(Self {
            rules: Some(rules),
            limits,
        })
    }

    /// Also lets compiles read everything under `dirs` (the offered crates' libraries; rustc
    /// maps proc-macro libraries with `dlopen`, which Landlock counts as reading, not executing).
    pub fn allow_read(&mut self, dirs: &[&Path]) -> Result<(), SandboxError> {
        let Some(rules) = &mut self.rules else {
            return Ok(());
        };
        for dir in dirs {
            let fd = PathFd::new(dir).map_err(|e| SandboxError::Path {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            })?;
            rules.push(Rule {
                fd,
                access: AccessFs::from_read(BEST_ABI),
            });
        }
        Ok(())
    }

    pub fn limits(&self) -> &ProcessLimits {
        &self.limits
    }

    /// Whether compiles run confined (false only with `--insecure-unsandboxed-compile`).
    pub fn is_enforced(&self) -> bool {
        self.rules.is_some()
    }

    /// Starts `cmd` confined to `job_dir`, with `/dev/null` or a pipe as its stdin: from a
    /// thread that restricts itself (Landlock, seccomp) and spawns without forking the server,
    /// then the rlimits. Refuses to start it if Landlock does not enforce the ruleset.
    pub fn spawn(
        &self,
        cmd: &mut tokio::process::Command,
        job_dir: &Path,
        stdin: Stdin,
    ) -> Result<tokio::process::Child, SandboxError> {
        let ruleset = match &self.rules {
            Some(rules) => Some(self.ruleset(rules, job_dir)?),
            None => {
                tracing::warn!(
                    "compiling WITHOUT the Landlock sandbox (--insecure-unsandboxed-compile)"
                );
                None
            }
        };
        match stdin {
            // Opened here: the restricted thread may not open it.
            Stdin::Null => {
                cmd.stdin(std::fs::File::open("/dev/null").map_err(SandboxError::Spawn)?)
            }
            Stdin::Piped => cmd.stdin(std::process::Stdio::piped()),
        };
        // The child is registered with this runtime's process driver.
        let runtime = tokio::runtime::Handle::current();
        let spawned = std::thread::scope(|scope| {
            let spawner = scope.spawn(|| {
                let _runtime = runtime.enter();
                if let Some(ruleset) = ruleset {
                    let status = ruleset
                        .restrict_self()
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                    if status.ruleset == RulesetStatus::NotEnforced {
                        return Err(std::io::Error::other(
                            "Landlock did not enforce the ruleset",
                        ));
                    }
                }
                deny_sockets()?;
                // No `pre_exec` hook: std spawns with posix_spawn (vfork), not fork.
                cmd.spawn()
            });
            spawner
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the spawning thread panicked")))
        });
        let child = spawned.map_err(SandboxError::Spawn)?;
        // Dropping `child` on an error kills it (`kill_on_drop`).
        let pid = child
            .id()
            .and_then(|pid| libc::pid_t::try_from(pid).ok())
            .ok_or_else(|| SandboxError::Spawn(std::io::Error::other("the compiler is gone")))?;
        set_limits(pid, &self.limits).map_err(SandboxError::Spawn)?;
        Ok(child)
    }

    fn ruleset(&self, rules: &[Rule], job_dir: &Path) -> Result<RulesetCreated, SandboxError> {
        let err = |e: landlock::RulesetError| SandboxError::Ruleset(e.to_string());
        let job = PathFd::new(job_dir).map_err(|e| SandboxError::Path {
            path: job_dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(REQUIRED_ABI))
            .map_err(err)?
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(BEST_ABI))
            .map_err(err)?
            .handle_access(AccessNet::from_all(BEST_ABI))
            .map_err(err)?
            .scope(Scope::from_all(BEST_ABI))
            .map_err(err)?
            .create()
            .map_err(err)?;
        ruleset
            .add_rules(
                rules
                    .iter()
                    .map(|r| Ok::<_, landlock::RulesetError>(PathBeneath::new(&r.fd, r.access))),
            )
            .map_err(err)?
            .add_rule(PathBeneath::new(job, AccessFs::from_all(BEST_ABI)))
            .map_err(err)
    }
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, SandboxError> {
    let entries = std::fs::read_dir(dir).map_err(|e| SandboxError::Path {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(entries.filter_map(Result::ok).collect())
}

/// Fails unless the kernel supports at least the required Landlock ABI.
fn probe_landlock() -> Result<(), SandboxError> {
    Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(REQUIRED_ABI))
        .and_then(|r| r.create())
        .map(drop)
        .map_err(|e| SandboxError::Unavailable(e.to_string()))
}

/// Sets the limits of process `pid` (which this process started).
fn set_limits(pid: libc::pid_t, limits: &ProcessLimits) -> std::io::Result<()> {
    let set = |resource, soft: u64, hard: u64| {
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: prlimit reads a valid rlimit struct; a null old-limit pointer is allowed.
        if unsafe { libc::prlimit(pid, resource, &limit, std::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SIGXCPU at the soft limit, SIGKILL one second later.
    set(libc::RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 1)?;
    set(libc::RLIMIT_DATA, limits.data_bytes, limits.data_bytes)?;
    set(libc::RLIMIT_FSIZE, limits.file_bytes, limits.file_bytes)?;
    set(libc::RLIMIT_NOFILE, limits.open_files, limits.open_files)?;
    set(libc::RLIMIT_CORE, 0, 0)
}

/// Ignores SIGXFSZ in this process, and so in every process it starts (an ignored signal stays
/// ignored across `exec`): a compiler output over the file size limit then fails with EFBIG (a
/// clear rustc error) instead of killing rustc. The server itself has no file size limit.
fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// Installs a seccomp filter on the calling thread (and the processes it starts) under which
/// `socket()` fails with EACCES. `socketpair()`, which
/// rustc's jobserver uses, is a different system call and stays allowed.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn deny_sockets() -> std::io::Result<()> {
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let ld = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let jge = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    let deny = libc::SECCOMP_RET_ERRNO | libc::EACCES as u32;
    let filter = [
        // seccomp_data.arch: anything but the native ABI is killed.
        stmt(ld, 4),
        jump(jeq, AUDIT_ARCH, 1, 0),
        stmt(ret, libc::SECCOMP_RET_KILL_PROCESS),
        // seccomp_data.nr: socket() and every x32 call are denied.
        stmt(ld, 0),
        jump(jeq, libc::SYS_socket as u32, 1, 0),
        jump(jge, X32_SYSCALL_BIT, 0, 1),
        stmt(ret, deny),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `filter`, which outlives the call; the kernel copies it. The
    // thread already has no_new_privs (set by Landlock, or below).
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn deny_sockets() -> std::io::Result<()> {
    Ok(())
}
