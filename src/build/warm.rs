//! Compilers started before the program they will build arrives.
//!
//! Before it reads a byte of the program, `rustc` spends ~18 ms of a hello world's ~100 ms
//! loading its libraries and setting up its session (BENCHMARKS.md). So each single-file build
//! also starts a *spare*: a `rustc` with the same arguments, confined like any other, in a job
//! dir of its own whose crate root is a symlink to the spare's stdin. It loads while the build
//! it follows compiles, then blocks reading the pipe. The next build with those arguments writes
//! its crate root into the spare's dir (a rename over the symlink), then into the pipe: whether
//! `rustc` opened the root before the rename or after, it reads the same program, and a later
//! `include_str!` of the root reads the file.
//!
//! One visible difference: `include_bytes!("/dev/stdin")` reads what is left in that pipe (the
//! crate root, or nothing) where a compile without a spare is refused the read of `/dev/null`;
//! either way the program sees nothing but itself.
//!
//! A waiting spare costs a blocked process; if the server dies, the pipe closes, the spare
//! reads an empty crate and exits. Up to `--warm-compilers` spares wait per channel, for the
//! arguments of the most recent builds. A spare saves time, not CPU: while builds keep every core
//! busy, none is started (it only cost throughput there, BENCHMARKS.md).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::code::Code;
use super::compiler::{
    CompileError, Compiler, Job, Started, stub, stub_line_of, with_stub_appended,
};
use super::options::{CompileOptions, Target};
use super::sandbox::Stdin;
use crate::build::BuildResult;

/// Stands for the job dir in a spare's key; no path contains a NUL.
const DIR: &str = "\0job-dir";

/// What a spare was started with: the tool and its arguments, the job dir replaced by [`DIR`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    program: PathBuf,
    args: Vec<String>,
    /// The crate root, relative to the job dir.
    root: &'static str,
}

impl Key {
    fn args_in(&self, dir: &Path) -> Vec<String> {
        let dir = dir.display().to_string();
        self.args.iter().map(|a| a.replace(DIR, &dir)).collect()
    }
}

struct Spare {
    key: Key,
    job: Job,
    started: Started,
}

/// The spares waiting for a build, oldest first, and how often builds found one.
pub(super) struct Spares {
    capacity: usize,
    waiting: Mutex<Vec<Spare>>,
    /// Builds running now, and how many may run before spares would take a core from them.
    building: AtomicUsize,
    cores: usize,
    taken: AtomicU64,
    missed: AtomicU64,
}

/// How often builds found a spare waiting for them (`taken`) or started their own `rustc`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpareStats {
    pub taken: u64,
    pub missed: u64,
}

impl Spares {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            waiting: Mutex::new(Vec::new()),
            building: AtomicUsize::new(0),
            // One build and one spare loading share a single core no worse than before.
            cores: std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            taken: AtomicU64::new(0),
            missed: AtomicU64::new(0),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<Spare>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A live spare started with `key`, if one waits.
    fn take(&self, key: &Key) -> Option<Spare> {
        let mut waiting = self.waiting();
        let i = waiting.iter().position(|s| s.key == *key)?;
        let mut spare = waiting.remove(i);
        drop(waiting);
        // Dropping a dead one removes its dir.
        (!spare.started.has_exited()).then_some(spare)
    }

    fn has(&self, key: &Key) -> bool {
        self.waiting().iter().any(|s| s.key == *key)
    }

    /// Keeps `spare`, dropping (killing) the oldest beyond the capacity.
    fn keep(&self, spare: Spare) {
        let mut waiting = self.waiting();
        waiting.push(spare);
        let over = waiting.len().saturating_sub(self.capacity);
        let evicted: Vec<Spare> = waiting.drain(..over).collect();
        drop(waiting);
        drop(evicted);
    }

    /// Counts a build as running until the guard is dropped.
    pub(super) fn building(&self) -> Building<'_> {
        self.building.fetch_add(1, Ordering::Relaxed);
        Building(&self.building)
    }

    /// Whether a core is left for a spare to load on, besides the running builds.
    fn core_free(&self) -> bool {
        self.building.load(Ordering::Relaxed) < self.cores
    }

    pub(super) fn stats(&self) -> SpareStats {
        SpareStats {
            taken: self.taken.load(Ordering::Relaxed),
            missed: self.missed.load(Ordering::Relaxed),
        }
    }
}

/// A running build, counted by [`Spares::building`].
pub(super) struct Building<'a>(&'a AtomicUsize);

impl Drop for Building<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Compiler {
    /// Builds a single-file crate with `rustc` started as a spare for the same arguments, if one
    /// waits, and starts the spare for the next such build. `None`: the caller builds as usual (the
    /// code is not a single file, or no spare waited).
    pub(super) async fn build_with_spare(
        &self,
        tool: &Path,
        code: &Code,
        opts: &CompileOptions,
        target: Target,
        root: &'static str,
        args: &impl Fn(&CompileOptions, &Path, &str) -> (Vec<String>, &'static str),
    ) -> Option<Result<BuildResult, CompileError>> {
        // Builds only: a clippy run would take the place of the next build's spare.
        let wanted = self.spares.capacity > 0 && tool == self.toolchain.rustc;
        let (Code::Single(sample), true) = (code, wanted) else {
            return None;
        };
        let (args, output) = args(opts, Path::new(DIR), root);
        let key = Key {
            program: tool.to_path_buf(),
            args,
            root,
        };
        let Some(spare) = self.spares.take(&key) else {
            self.spares.missed.fetch_add(1, Ordering::Relaxed);
            self.start_spare(key);
            return None;
        };
        let stub = stub(opts, target);
        let source = with_stub_appended(sample, stub);
        let Spare {
            mut job, started, ..
        } = spare;
        job.stub_line = stub_line_of(&source, stub);
        // Written next to the symlink, then renamed over it: `rustc` opens either the pipe or
        // the whole file, never a missing or half-written one.
        let staged = job.dir().join(".crate-root");
        let placed = std::fs::write(&staged, &source)
            .and_then(|()| std::fs::rename(&staged, job.dir().join(root)));
        if let Err(e) = placed {
            // E.g. a cleaner of the temp dir removed the spare's dir: build as usual.
            tracing::warn!("could not hand a program to a spare compiler: {e}");
            self.spares.missed.fetch_add(1, Ordering::Relaxed);
            self.start_spare(key);
            return None;
        }
        self.spares.taken.fetch_add(1, Ordering::Relaxed);
        // Loads on the other core while this one compiles.
        self.start_spare(key);
        Some(self.collect(tool, started, job, output, Some(source)).await)
    }

    /// Starts a spare for `key` unless one waits already. A spare that cannot start is only
    /// logged: the next build starts its own `rustc`, and says why if that fails too.
    fn start_spare(&self, key: Key) {
        if self.spares.has(&key) || !self.spares.core_free() {
            return;
        }
        let spare =
            Job::new(&self.settings.work_dir, &Code::default(), key.root, None).and_then(|job| {
                let root = job.dir().join(key.root);
                std::fs::remove_file(&root)
                    .and_then(|()| std::os::unix::fs::symlink("/dev/stdin", &root))
                    .map_err(CompileError::Workspace)?;
                let started = self.start(
                    &key.program,
                    &key.args_in(job.dir()),
                    job.dir(),
                    Stdin::Piped,
                )?;
                Ok(Spare { key, job, started })
            });
        match spare {
            Ok(spare) => self.spares.keep(spare),
            Err(e) => tracing::warn!("could not start a spare compiler: {e}"),
        }
    }

    /// Starts the spare for `/execute`'s default program, so that the first one after a start
    /// finds it. Needs a Tokio runtime (it owns the child); without one it does nothing.
    pub fn warm_up(&self) {
        if self.spares.capacity == 0 || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let (code, opts) = (Code::default(), CompileOptions::default());
        let target = self.target_for(&code, &opts);
        let root = "src/main.rs";
        let (args, _) = self.build_args(&opts, target)(&opts, Path::new(DIR), root);
        self.start_spare(Key {
            program: self.toolchain.rustc.clone(),
            args,
            root,
        });
    }

    /// How often builds found a spare compiler waiting.
    pub fn spare_stats(&self) -> SpareStats {
        self.spares.stats()
    }
}
