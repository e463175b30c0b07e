//! The content-addressed artifact cache: what a build of (code, edition, mode) produced, so the
//! same request never runs `rustc` or a Wasmtime compiler twice.
//!
//! - The key is SHA-256 over the code, the channel, the edition, the mode, the crate kind (program,
//!   tests, library), the channel's `rustc --version`, the fingerprint of the offered crates,
//!   [`STUB_VERSION`](super::compiler::STUB_VERSION) (the stub and the flags) and the
//!   diagnostics cap (which shapes the cached text).
//! - In memory: an LRU, bounded by entry count and by bytes, of ready [`Program`]s (an
//!   `InstancePre` each) plus the compiler's diagnostics. Compile errors are entries too.
//! - On disk: one file per key in a directory only this user may access, holding the
//!   diagnostics, Wasmtime's serialized module and, for Winch code, the WebAssembly (for a later
//!   Cranelift compile). Files are written to a unique temp name in the same directory and
//!   renamed into place, so readers and concurrent writers (threads or processes) only ever see
//!   whole files. The total size is bounded; the least recently used files go first.
//! - Concurrent identical requests share one build.
//! - Optionally, in Redis ([`shared_cache`](super::shared_cache)): the same files, shared by replicas. A lookup goes
//!   to memory, then disk, then Redis, then builds; a build is written through to all three,
//!   and an entry found in Redis is copied to memory and disk.
//!
//! # Why loading a file is sound
//!
//! `Module::deserialize` is `unsafe`: Wasmtime maps the serialized machine code and runs it, so
//! the bytes must be exactly what `Module::serialize` produced. Here:
//! 1. files are created only by this service, in a directory it owns and that it makes
//!    private (mode 0700; a directory owned by another user is refused), so no other
//!    (non-root) user can plant or change a file;
//! 2. every file carries a SHA-256 over its whole content and its own key; a truncated,
//!    torn or otherwise corrupted file fails the check and is deleted and rebuilt, never loaded;
//! 3. the checked bytes are read into memory first and deserialized from there (not mapped
//!    from the file, as `deserialize_file` would), so a later change to the file cannot change
//!    the code in use;
//! 4. Wasmtime itself refuses modules from another Wasmtime version or engine configuration
//!    with an error, which is treated as a miss.
//!
//! Entries from Redis pass the same checks (2-4), but point 1 becomes trust in Redis: whoever
//! can write to it can plant a file with a valid checksum. With `--redis-hmac-key` every entry
//! also carries an HMAC-SHA256 tag made with a key only the replicas hold, checked before the
//! bytes are parsed; see SECURITY.md.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::code::Code;
use super::compiler::STUB_VERSION;
use super::diagnostics::Diagnostic;
use super::options::{CompileOptions, Mode, Target};
use super::shared_cache::SharedCache;
use crate::run::{Program, Runner, Tier};

/// SHA-256 of everything that determines a build's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    pub fn new(
        code: &Code,
        opts: &CompileOptions,
        rustc_version: &str,
        crates: &str,
        diagnostics_limit: usize,
    ) -> Self {
        let mut h = Sha256::new();
        h.update(b"wasm-playground artifact\0");
        h.update(STUB_VERSION.to_le_bytes());
        let kind = format!("{:?}", opts.kind);
        let emit = format!("{:?}", opts.emit);
        for part in [
            rustc_version,
            crates,
            opts.channel.as_str(),
            opts.edition.as_str(),
            match opts.mode {
                Mode::Debug => "debug",
                Mode::Release => "release",
            },
            &kind,
            &emit,
            Target::for_program(code, opts).as_str(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        // Only backtrace builds carry the marker: every other key is as before it existed.
        if opts.backtrace {
            h.update(b"backtrace\0");
        }
        h.update((diagnostics_limit as u64).to_le_bytes());
        code.hash_into(|bytes| h.update(bytes));
        Self(h.finalize().into())
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }
}

/// The compiler's say on a program, whether or not it compiled.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub success: bool,
    pub rendered: String,
    pub diagnostics: Vec<Diagnostic>,
    pub truncated: bool,
}

/// What one build produced.
pub struct Artifact {
    pub report: Report,
    /// `None` when the program did not compile, or was a library (nothing to run).
    pub program: Option<Arc<Program>>,
}

impl Artifact {
    /// Roughly the memory this artifact holds: the compiler's text and the program.
    pub fn size_bytes(&self) -> usize {
        let text = self.report.rendered.len()
            + self
                .report
                .diagnostics
                .iter()
                .map(|d| d.message.len() + 64)
                .sum::<usize>();
        text + self.program.as_ref().map_or(0, |p| p.size_bytes())
    }
}

/// Where a request's artifact came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Memory,
    Disk,
    /// The shared cache in Redis: another replica built it.
    Redis,
    /// Another request with the same key was building it; this one waited for that build.
    Shared,
    /// This request built it.
    Built,
}

impl Source {
    /// The request did not run `rustc` itself.
    pub fn cached(self) -> bool {
        self != Source::Built
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Memory => "memory",
            Source::Disk => "disk",
            Source::Redis => "redis",
            Source::Shared => "shared",
            Source::Built => "built",
        }
    }
}

/// The memory LRU, the disk store and the in-flight builds.
pub struct ArtifactCache {
    memory: Mutex<Lru>,
    capacity: usize,
    /// Bytes the memory tier may hold ([`Artifact::size_bytes`]).
    memory_budget: usize,
    disk: Option<Arc<DiskStore>>,
    shared: Option<Arc<SharedCache>>,
    inflight: Mutex<HashMap<CacheKey, Arc<OnceCell<Arc<Artifact>>>>>,
    runner: Arc<Runner>,
}

#[derive(Default)]
struct Lru {
    /// Each artifact, the clock at its last use, and its size.
    entries: HashMap<CacheKey, (Arc<Artifact>, u64, usize)>,
    bytes: usize,
    clock: u64,
}

impl ArtifactCache {
    /// A cache holding up to `memory_entries` artifacts (and `memory_bytes` of them) in memory
    /// and `disk_bytes` in `dir` (0 turns either off). A directory that cannot be used turns the disk store off, with a
    /// warning: the service works without it. `shared` is the Redis cache, if configured.
    pub fn new(
        memory_entries: usize,
        memory_bytes: usize,
        dir: &Path,
        disk_bytes: u64,
        shared: Option<Arc<SharedCache>>,
        runner: Arc<Runner>,
    ) -> Self {
        let disk = if disk_bytes == 0 {
            None
        } else {
            match DiskStore::open(dir, disk_bytes) {
                Ok(store) => Some(Arc::new(store)),
                Err(err) => {
                    tracing::warn!(dir = %dir.display(), error = %err, "disk cache disabled");
                    None
                }
            }
        };
        Self {
            memory: Mutex::default(),
            capacity: memory_entries,
            memory_budget: memory_bytes,
            disk,
            shared,
            inflight: Mutex::default(),
            runner,
        }
    }

    /// The artifact for `key`: from memory, from disk, from a concurrent identical build, or
    /// from `build`, which returns the artifact and whether it may be cached.
    pub async fn get_or_build<E, Fut>(
        &self,
        key: CacheKey,
        build: impl FnOnce() -> Fut,
    ) -> Result<(Arc<Artifact>, Source), E>
    where
        Fut: Future<Output = Result<(Artifact, bool), E>>,
    {
        if let Some(artifact) = self.memory_get(&key) {
            return Ok((artifact, Source::Memory));
        }
        let cell = self
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .clone();
        // Takes the cell out of the map when done, also if this request is dropped midway.
        let _leave = Leave {
            cache: self,
            key,
            cell: cell.clone(),
        };
        let mut source = Source::Shared;
        let result = cell
            .get_or_try_init(|| async {
                // A build that just finished may have removed its cell after our memory check.
                if let Some(artifact) = self.memory_get(&key) {
                    source = Source::Memory;
                    return Ok(artifact);
                }
                if let Some(artifact) = self.disk_get(key).await {
                    source = Source::Disk;
                    self.memory_put(key, artifact.clone());
                    return Ok(artifact);
                }
                if let Some(artifact) = self.shared_get(key).await {
                    source = Source::Redis;
                    self.memory_put(key, artifact.clone());
                    return Ok(artifact);
                }
                source = Source::Built;
                let (artifact, cacheable) = build().await?;
                let artifact = Arc::new(artifact);
                if cacheable {
                    self.memory_put(key, artifact.clone());
                    self.store(key, &artifact);
                }
                Ok(artifact)
            })
            .await
            .cloned();
        Ok((result?, source))
    }

    fn memory_get(&self, key: &CacheKey) -> Option<Arc<Artifact>> {
        let mut lru = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        lru.clock += 1;
        let clock = lru.clock;
        lru.entries.get_mut(key).map(|(artifact, used, _)| {
            *used = clock;
            artifact.clone()
        })
    }

    fn memory_put(&self, key: CacheKey, artifact: Arc<Artifact>) {
        let size = artifact.size_bytes();
        if self.capacity == 0 || size > self.memory_budget {
            return;
        }
        let mut lru = self.memory.lock().unwrap_or_else(PoisonError::into_inner);
        lru.clock += 1;
        let clock = lru.clock;
        if let Some((_, _, old)) = lru.entries.insert(key, (artifact, clock, size)) {
            lru.bytes -= old;
        }
        lru.bytes += size;
        while lru.entries.len() > self.capacity || lru.bytes > self.memory_budget {
            let Some(oldest) = lru
                .entries
                .iter()
                .min_by_key(|(_, (_, used, _))| *used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some((_, _, size)) = lru.entries.remove(&oldest) {
                lru.bytes -= size;
            }
        }
    }

    /// Bytes held by the memory tier.
    pub fn memory_bytes(&self) -> usize {
        self.memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }

    /// Loads `key` from disk (on a blocking thread); `None` on a miss or a bad file.
    async fn disk_get(&self, key: CacheKey) -> Option<Arc<Artifact>> {
        let disk = self.disk.clone()?;
        let runner = self.runner.clone();
        let shared = self.shared.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let file = disk.read(&key)?;
            // SAFETY: `disk.read` returned this file only after checking its SHA-256 and key;
            // files in the store are written only by `DiskStore::write` from
            // `Program::serialize` (see the module docs for the full argument).
            let Some(artifact) = (unsafe { load(&runner, key, file) }) else {
                disk.remove(&key);
                return None;
            };
            if let Some(program) = &artifact.program {
                watch_upgrade(Some(disk), shared, key, program, &artifact.report);
            }
            Some(Arc::new(artifact))
        })
        .await;
        loaded.ok().flatten()
    }

    /// Loads `key` from Redis; on a hit, also writes it to the disk store.
    async fn shared_get(&self, key: CacheKey) -> Option<Arc<Artifact>> {
        let shared = self.shared.clone()?;
        let bytes = shared.get(&key).await?;
        let runner = self.runner.clone();
        let disk = self.disk.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let Some(file) = parse(&bytes, &key) else {
                tracing::warn!(key = %key.hex(), "corrupt Redis entry ignored");
                return None;
            };
            // SAFETY: the entry passed the same SHA-256 and key checks as a disk file, and its
            // HMAC tag when the replicas share a key: Redis is trusted to hold only what
            // replicas of this build wrote (module docs, SECURITY.md).
            let artifact = unsafe { load(&runner, key, file) }?;
            if let Some(disk) = &disk
                && let Err(err) = disk.write_file(&key, &bytes)
            {
                tracing::warn!(error = %err, "could not write to the disk cache");
            }
            if let Some(program) = &artifact.program {
                watch_upgrade(disk, Some(shared), key, program, &artifact.report);
            }
            Some(Arc::new(artifact))
        })
        .await;
        loaded.ok().flatten()
    }

    /// Writes the artifact to disk and to Redis, without waiting for either.
    fn store(&self, key: CacheKey, artifact: &Arc<Artifact>) {
        if self.disk.is_none() && self.shared.is_none() {
            return;
        }
        let disk = self.disk.clone();
        let shared = self.shared.clone();
        let artifact = artifact.clone();
        tokio::task::spawn_blocking(move || {
            let (kind, module, wasm) = match &artifact.program {
                None => (Kind::NoModule, Vec::new(), None),
                Some(program) => match program.serialize() {
                    Ok(s) => (Kind::Module(s.tier), s.module, s.wasm),
                    Err(err) => {
                        tracing::warn!(error = %err, "could not serialize a module for the disk cache");
                        return;
                    }
                },
            };
            let wasm = wasm.as_deref().unwrap_or_default();
            match encode(&key, kind, &artifact.report, wasm, &module) {
                Ok(file) => write_through(disk.as_ref(), shared.as_ref(), key, file),
                Err(err) => tracing::warn!(error = %err, "could not encode a cache entry"),
            }
            if let Some(program) = &artifact.program {
                watch_upgrade(disk, shared, key, program, &artifact.report);
            }
        });
    }

    /// Whether Redis is up (with a reason when not); `None` without a shared cache.
    pub fn shared_status(&self) -> Option<(bool, String)> {
        self.shared.as_ref().map(|s| s.status())
    }

    pub fn shared_stats(&self) -> Option<super::shared_cache::SharedStats> {
        self.shared.as_ref().map(|s| s.stats())
    }

    /// Bytes of the files in the disk store (0 without one).
    pub fn disk_bytes(&self) -> u64 {
        self.disk.as_ref().map_or(0, |d| {
            d.index.lock().unwrap_or_else(PoisonError::into_inner).total
        })
    }

    /// Number of artifacts in memory.
    pub fn memory_len(&self) -> usize {
        self.memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }
}

/// Removes a request's in-flight cell from the map once it is built (the artifact is in the
/// memory cache by then, or was not cacheable), or when no other request waits on it.
struct Leave<'a> {
    cache: &'a ArtifactCache,
    key: CacheKey,
    cell: Arc<OnceCell<Arc<Artifact>>>,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut inflight = self
            .cache
            .inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let ours = inflight
            .get(&self.key)
            .is_some_and(|c| Arc::ptr_eq(c, &self.cell));
        // Under the lock nobody can take a new reference: 3 = the map, this guard and the
        // request's own clone, i.e. no one else is waiting.
        if ours && (self.cell.initialized() || Arc::strong_count(&self.cell) <= 3) {
            inflight.remove(&self.key);
        }
    }
}

/// Rebuilds an artifact from a checked file; `None` (logged) if Wasmtime refuses the module.
///
/// # Safety
///
/// `file` must hold what `Program::serialize` produced in a process running this build, as
/// [`Runner::load_serialized`] requires.
unsafe fn load(runner: &Runner, key: CacheKey, file: CacheFile) -> Option<Artifact> {
    let program = match file.kind {
        Kind::NoModule => None,
        Kind::Module(tier) => {
            let wasm = (!file.wasm.is_empty()).then(|| Arc::<[u8]>::from(file.wasm));
            // SAFETY: guaranteed by this function's caller.
            match unsafe { runner.load_serialized(tier, &file.module, wasm) } {
                Ok(program) => Some(Arc::new(program)),
                Err(err) => {
                    tracing::debug!(key = %key.hex(), error = %err, "unusable cache entry");
                    return None;
                }
            }
        }
    };
    Some(Artifact {
        report: file.report,
        program,
    })
}

/// Writes an encoded entry to the disk store now and to Redis in the background (called on a
/// blocking thread of the runtime).
fn write_through(
    disk: Option<&Arc<DiskStore>>,
    shared: Option<&Arc<SharedCache>>,
    key: CacheKey,
    file: Vec<u8>,
) {
    if let Some(disk) = disk
        && let Err(err) = disk.write_file(&key, &file)
    {
        tracing::warn!(error = %err, "could not write to the disk cache");
    }
    if let Some(shared) = shared {
        let shared = shared.clone();
        tokio::runtime::Handle::current().spawn(async move { shared.put(&key, &file).await });
    }
}

/// When a Winch program is recompiled with Cranelift, its disk and Redis entries are replaced.
fn watch_upgrade(
    disk: Option<Arc<DiskStore>>,
    shared: Option<Arc<SharedCache>>,
    key: CacheKey,
    program: &Program,
    report: &Report,
) {
    if program.tier() != Tier::Winch {
        return;
    }
    let report = report.clone();
    // The hook runs on a blocking thread of whichever runtime ran the program (possibly the
    // background lane): Redis writes go to this one.
    let handle = tokio::runtime::Handle::current();
    program.on_upgrade(move |module| {
        let _runtime = handle.enter();
        let file = module
            .serialize()
            .map_err(|e| std::io::Error::other(format!("could not serialize a module: {e}")))
            .and_then(|bytes| encode(&key, Kind::Module(Tier::Cranelift), &report, &[], &bytes));
        match file {
            Ok(file) => write_through(disk.as_ref(), shared.as_ref(), key, file),
            Err(err) => tracing::warn!(error = %err, "could not encode a cache entry"),
        }
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A compile error or a library: the report alone.
    NoModule,
    Module(Tier),
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::NoModule => 0,
            Kind::Module(Tier::Winch) => 1,
            Kind::Module(Tier::Cranelift) => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Kind::NoModule,
            1 => Kind::Module(Tier::Winch),
            2 => Kind::Module(Tier::Cranelift),
            _ => return None,
        })
    }
}

/// A checked cache file.
struct CacheFile {
    kind: Kind,
    report: Report,
    wasm: Vec<u8>,
    module: Vec<u8>,
}

/// File layout: magic, SHA-256 of everything after it, key, kind, three u32 lengths, then the
/// diagnostics (JSON), the WebAssembly and the serialized module.
const MAGIC: &[u8; 8] = b"WPART001";
const HEADER: usize = 8 + 32 + 32 + 1 + 4 + 4 + 4;
const EXTENSION: &str = "art";

/// The directory of cache files and an index of their sizes and last use.
struct DiskStore {
    dir: PathBuf,
    budget: u64,
    index: Mutex<DiskIndex>,
}

#[derive(Default)]
struct DiskIndex {
    files: HashMap<CacheKey, (u64, SystemTime)>,
    total: u64,
}

/// Makes temp names unique within the process (the pid makes them unique across processes).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl DiskStore {
    fn open(dir: &Path, budget: u64) -> std::io::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let meta = std::fs::metadata(dir)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(std::io::Error::other(format!(
                "the directory belongs to uid {}, not to this process (uid {me})",
                meta.uid()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let store = Self {
            dir: dir.to_path_buf(),
            budget,
            index: Mutex::default(),
        };
        let now = SystemTime::now();
        let mut index = DiskIndex::default();
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(meta) = entry.metadata() else { continue };
            let modified = meta.modified().unwrap_or(now);
            if name.ends_with(".tmp") {
                // Left by a writer that died; a live writer renames within milliseconds.
                let stale = now
                    .duration_since(modified)
                    .is_ok_and(|age| age.as_secs() > 600);
                if stale {
                    let _ = std::fs::remove_file(entry.path());
                }
                continue;
            }
            let key = name
                .strip_suffix(&format!(".{EXTENSION}"))
                .and_then(CacheKey::from_hex);
            if let (Some(key), true) = (key, meta.is_file()) {
                index.files.insert(key, (meta.len(), modified));
                index.total += meta.len();
            }
        }
        *store.index.lock().unwrap_or_else(PoisonError::into_inner) = index;
        store.evict();
        Ok(store)
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.{EXTENSION}", key.hex()))
    }

    /// Reads and checks the file for `key`; a bad file is deleted.
    fn read(&self, key: &CacheKey) -> Option<CacheFile> {
        let path = self.path(key);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(_) => {
                self.forget(key);
                return None;
            }
        };
        match parse(&bytes, key) {
            Some(file) => {
                let now = SystemTime::now();
                // Record the use, in the index and in the file's mtime (the order survives a
                // restart).
                if let Ok(f) = std::fs::File::options().append(true).open(&path) {
                    let _ = f.set_modified(now);
                }
                let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(entry) = index.files.get_mut(key) {
                    entry.1 = now;
                }
                Some(file)
            }
            None => {
                tracing::warn!(path = %path.display(), "corrupt cache file ignored and removed");
                self.remove(key);
                None
            }
        }
    }

    #[cfg(test)]
    fn write(
        &self,
        key: &CacheKey,
        kind: Kind,
        report: &Report,
        wasm: &[u8],
        module: &[u8],
    ) -> std::io::Result<()> {
        self.write_file(key, &encode(key, kind, report, wasm, module)?)
    }

    /// Stores an encoded file (from [`encode`]) for `key`.
    fn write_file(&self, key: &CacheKey, file: &[u8]) -> std::io::Result<()> {
        let size = file.len() as u64;
        if size > self.budget {
            return Ok(());
        }
        let temp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            key.hex(),
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut f = std::fs::File::options()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            f.write_all(file)?;
            drop(f);
            std::fs::rename(&temp, self.path(key))
        })();
        if let Err(err) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(err);
        }
        {
            let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((old, _)) = index.files.insert(*key, (size, SystemTime::now())) {
                index.total -= old;
            }
            index.total += size;
        }
        self.evict();
        Ok(())
    }

    /// Deletes least recently used files until the total fits the budget.
    fn evict(&self) {
        let victims = {
            let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
            if index.total <= self.budget {
                return;
            }
            let mut by_age: Vec<(SystemTime, CacheKey, u64)> = index
                .files
                .iter()
                .map(|(k, (size, used))| (*used, *k, *size))
                .collect();
            by_age.sort();
            let mut victims = Vec::new();
            for (_, key, size) in by_age {
                if index.total <= self.budget {
                    break;
                }
                index.files.remove(&key);
                index.total -= size;
                victims.push(key);
            }
            victims
        };
        for key in victims {
            let _ = std::fs::remove_file(self.path(&key));
        }
    }

    fn forget(&self, key: &CacheKey) {
        let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((size, _)) = index.files.remove(key) {
            index.total -= size;
        }
    }

    fn remove(&self, key: &CacheKey) {
        self.forget(key);
        let _ = std::fs::remove_file(self.path(key));
    }
}

/// A cache file's bytes: magic, SHA-256 of the body, then the body (key, kind, lengths, parts).
fn encode(
    key: &CacheKey,
    kind: Kind,
    report: &Report,
    wasm: &[u8],
    module: &[u8],
) -> std::io::Result<Vec<u8>> {
    let meta = serde_json::to_vec(report).map_err(std::io::Error::other)?;
    let len32 =
        |n: usize| u32::try_from(n).map_err(|_| std::io::Error::other("cache entry too large"));
    let mut body = Vec::with_capacity(HEADER - 40 + meta.len() + wasm.len() + module.len());
    body.extend_from_slice(&key.0);
    body.push(kind.byte());
    body.extend_from_slice(&len32(meta.len())?.to_le_bytes());
    body.extend_from_slice(&len32(wasm.len())?.to_le_bytes());
    body.extend_from_slice(&len32(module.len())?.to_le_bytes());
    body.extend_from_slice(&meta);
    body.extend_from_slice(wasm);
    body.extend_from_slice(module);
    let mut file = Vec::with_capacity(40 + body.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&Sha256::digest(&body));
    file.extend_from_slice(&body);
    Ok(file)
}

/// Checks and splits a cache file; `None` unless it is whole, uncorrupted and for `key`.
fn parse(bytes: &[u8], key: &CacheKey) -> Option<CacheFile> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return None;
    }
    let body = &bytes[40..];
    if Sha256::digest(body).as_slice() != &bytes[8..40] || body[..32] != key.0 {
        return None;
    }
    let kind = Kind::from_byte(body[32])?;
    let len = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().unwrap()) as usize;
    let (meta_len, wasm_len, module_len) = (len(33), len(37), len(41));
    let rest = &body[45..];
    if meta_len.checked_add(wasm_len)?.checked_add(module_len)? != rest.len() {
        return None;
    }
    if kind == Kind::NoModule && wasm_len + module_len != 0 {
        return None;
    }
    let report = serde_json::from_slice(&rest[..meta_len]).ok()?;
    Some(CacheFile {
        kind,
        report,
        wasm: rest[meta_len..meta_len + wasm_len].to_vec(),
        module: rest[meta_len + wasm_len..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> CacheKey {
        CacheKey([n; 32])
    }

    fn memory_only_cache() -> ArtifactCache {
        let config = crate::config::Config::default();
        let runner = Arc::new(Runner::new(&config).unwrap());
        ArtifactCache::new(4, 1 << 30, Path::new("/nonexistent"), 0, None, runner)
    }

    fn inflight_len(cache: &ArtifactCache) -> usize {
        cache.inflight.lock().unwrap().len()
    }

    #[tokio::test]
    async fn failed_and_cancelled_builds_leave_no_in_flight_entry() {
        let cache = memory_only_cache();
        let failed = cache
            .get_or_build(key(1), || async {
                Err::<(Artifact, bool), _>("rustc failed")
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(inflight_len(&cache), 0);

        let never = cache.get_or_build(key(2), std::future::pending::<Result<_, ()>>);
        let cancelled = tokio::time::timeout(std::time::Duration::from_millis(10), never).await;
        assert!(cancelled.is_err());
        assert_eq!(inflight_len(&cache), 0);

        let report = Report {
            success: false,
            ..Report::default()
        };
        let built = cache
            .get_or_build(key(3), || async {
                Ok::<_, ()>((
                    Artifact {
                        report,
                        program: None,
                    },
                    true,
                ))
            })
            .await
            .unwrap();
        assert_eq!(built.1, Source::Built);
        assert_eq!(inflight_len(&cache), 0);
        let again = cache
            .get_or_build(key(3), || async { Err::<(Artifact, bool), _>(()) })
            .await
            .unwrap();
        assert_eq!(again.1, Source::Memory);
    }

    #[test]
    fn keys_depend_on_every_input() {
        let opts = CompileOptions::default();
        let base = CacheKey::new(&"fn main() {}".into(), &opts, "rustc 1", "", 100);
        assert_eq!(
            base,
            CacheKey::new(&"fn main() {}".into(), &opts, "rustc 1", "", 100)
        );
        assert_ne!(
            base,
            CacheKey::new(&"fn main() { }".into(), &opts, "rustc 1", "", 100)
        );
        assert_ne!(
            base,
            CacheKey::new(&"fn main() {}".into(), &opts, "rustc 2", "", 100)
        );
        assert_ne!(
            base,
            CacheKey::new(&"fn main() {}".into(), &opts, "rustc 1", "", 101)
        );
        assert_ne!(
            base,
            CacheKey::new(&"fn main() {}".into(), &opts, "rustc 1", "ab12", 100)
        );
        let release = CompileOptions {
            mode: Mode::Release,
            ..opts
        };
        assert_ne!(
            base,
            CacheKey::new(&"fn main() {}".into(), &release, "rustc 1", "", 100)
        );
        let others = [
            CompileOptions {
                edition: crate::build::Edition::E2021,
                ..opts
            },
            CompileOptions {
                channel: crate::build::Channel::Nightly,
                ..opts
            },
            CompileOptions {
                kind: crate::build::CrateKind::Tests,
                ..opts
            },
            CompileOptions {
                backtrace: true,
                ..opts
            },
        ];
        for other in others {
            assert_ne!(
                base,
                CacheKey::new(&"fn main() {}".into(), &other, "rustc 1", "", 100)
            );
        }
        assert_eq!(CacheKey::from_hex(&base.hex()), Some(base));
    }

    #[test]
    fn files_round_trip_and_any_damage_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), 1 << 20).unwrap();
        let diags = Report {
            success: true,
            rendered: "warning: x\n".into(),
            diagnostics: Vec::new(),
            truncated: false,
        };
        store
            .write(
                &key(1),
                Kind::Module(Tier::Winch),
                &diags,
                b"wasm",
                b"module",
            )
            .unwrap();
        let file = store.read(&key(1)).unwrap();
        assert_eq!(file.kind, Kind::Module(Tier::Winch));
        assert_eq!(
            (&file.wasm[..], &file.module[..]),
            (&b"wasm"[..], &b"module"[..])
        );
        assert_eq!(file.report.rendered, "warning: x\n");

        let bytes = std::fs::read(store.path(&key(1))).unwrap();
        assert!(parse(&bytes, &key(2)).is_none(), "another key's file");
        assert!(
            parse(&bytes[..bytes.len() - 1], &key(1)).is_none(),
            "truncated"
        );
        for at in [0, 9, 45, 80, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(parse(&bad, &key(1)).is_none(), "flipped byte {at}");
        }
        std::fs::write(store.path(&key(1)), &bytes[..100]).unwrap();
        assert!(store.read(&key(1)).is_none());
        assert!(!store.path(&key(1)).exists(), "a bad file is removed");
    }

    #[test]
    fn disk_store_evicts_least_recently_used_files_over_budget() {
        let dir = tempfile::tempdir().unwrap();
        let diags = Report::default();
        let module = vec![7u8; 1000];
        // Room for two entries of ~1.1 KB.
        let store = DiskStore::open(dir.path(), 2500).unwrap();
        for n in 1..=2 {
            store
                .write(&key(n), Kind::Module(Tier::Cranelift), &diags, &[], &module)
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(store.read(&key(1)).is_some()); // key 1 is now the most recently used
        store
            .write(&key(3), Kind::Module(Tier::Cranelift), &diags, &[], &module)
            .unwrap();
        assert!(store.path(&key(1)).exists());
        assert!(
            !store.path(&key(2)).exists(),
            "the least recently used goes"
        );
        assert!(store.path(&key(3)).exists());
        // A new process sees the same files and the same budget.
        drop(store);
        let reopened = DiskStore::open(dir.path(), 1200).unwrap();
        assert!(reopened.path(&key(1)).exists() != reopened.path(&key(3)).exists());
    }
}
