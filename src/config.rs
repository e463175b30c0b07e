//! Every limit, path and address the service uses, in one place.
//!
//! `Config` is parsed by `clap` from flags, with `WASM_PLAYGROUND_*` environment variables as
//! overrides of the defaults; the README's configuration table mirrors this file.
//!
//! The bottom layer: every other layer reads it, and it imports none of them. The choices it
//! offers between lower layers' strategies ([`Channel`], [`CompilerStrategy`]) live here for
//! that reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::Args;

/// Limits and settings shared by the HTTP server and the `run` subcommand.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Fuel (roughly: WebAssembly instructions) a program may consume before it is stopped.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_FUEL",
        default_value_t = 20_000_000_000,
        global = true
    )]
    pub fuel: u64,

    /// Yield to the async executor every N units of fuel (0 = never; epoch ticks already yield).
    #[arg(
        long,
        env = "WASM_PLAYGROUND_FUEL_YIELD_INTERVAL",
        default_value_t = 0,
        global = true
    )]
    pub fuel_yield_interval: u64,

    /// Wall-clock limit for running one program, in milliseconds.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_RUN_TIMEOUT_MS",
        default_value_t = 5_000,
        global = true
    )]
    pub run_timeout_ms: u64,

    /// Wall-clock limit of one live run (`/live`), in milliseconds: it may wait for a person
    /// typing its input. Its CPU is still bounded by `--fuel`.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_LIVE_TIMEOUT_MS",
        default_value_t = 60_000,
        global = true
    )]
    pub live_timeout_ms: u64,

    /// Interval of the engine-wide epoch ticker that enforces deadlines and yields, in milliseconds.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_EPOCH_TICK_MS",
        default_value_t = 10,
        global = true
    )]
    pub epoch_tick_ms: u64,

    /// Largest linear memory a program may grow to, in bytes.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_MEMORY_LIMIT",
        default_value_t = 10_000_000,
        global = true
    )]
    pub memory_limit: usize,

    /// Largest native stack the WebAssembly code may use, in bytes.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_MAX_WASM_STACK",
        default_value_t = 1 << 20,
        global = true
    )]
    pub max_wasm_stack: usize,

    /// Bytes of stdout (and, separately, of stderr) kept per run; past it the run is stopped.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_OUTPUT_LIMIT",
        default_value_t = 1 << 20,
        global = true
    )]
    pub output_limit: usize,

    /// Wall-clock limit for one `rustc` invocation, in milliseconds.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_COMPILE_TIMEOUT_MS",
        default_value_t = 20_000,
        global = true
    )]
    pub compile_timeout_ms: u64,

    /// CPU seconds one `rustc` process may use (SIGXCPU, then SIGKILL a second later).
    #[arg(
        long,
        env = "WASM_PLAYGROUND_COMPILE_CPU_SECONDS",
        default_value_t = 10,
        global = true
    )]
    pub compile_cpu_seconds: u64,

    /// Data-segment limit (RLIMIT_DATA) of one `rustc` process, in bytes.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_COMPILE_MEMORY_LIMIT",
        default_value_t = 1 << 30,
        global = true
    )]
    pub compile_memory_limit: u64,

    /// Largest file one `rustc` process may write (RLIMIT_FSIZE), in bytes.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_COMPILE_FILE_LIMIT",
        default_value_t = 32 << 20,
        global = true
    )]
    pub compile_file_limit: u64,

    /// Compile without the Landlock sandbox when the kernel lacks it (NOT for untrusted code).
    #[arg(
        long,
        env = "WASM_PLAYGROUND_INSECURE_UNSANDBOXED_COMPILE",
        global = true
    )]
    pub insecure_unsandboxed_compile: bool,

    /// `rustc`s started ahead, per channel, for the next single-file builds with the same
    /// options (0: start each with its build).
    #[arg(
        long,
        env = "WASM_PLAYGROUND_WARM_COMPILERS",
        default_value_t = 1,
        global = true
    )]
    pub warm_compilers: usize,

    /// Bytes of compiler diagnostics kept per compile.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_DIAGNOSTICS_LIMIT",
        default_value_t = 256 << 10,
        global = true
    )]
    pub diagnostics_limit: usize,

    /// Compiles allowed at once (default: the number of cores).
    #[arg(long, env = "WASM_PLAYGROUND_MAX_COMPILES", default_value_t = cores(), global = true)]
    pub max_compiles: usize,

    /// Program runs allowed at once; they yield every epoch tick, so more than the cores is fine.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_MAX_RUNS",
        default_value_t = 16,
        global = true
    )]
    pub max_runs: usize,

    /// Threads one program may have alive at once, its main thread included; a spawn beyond
    /// fails as it does natively when the OS refuses (`WouldBlock`).
    #[arg(
        long,
        env = "WASM_PLAYGROUND_MAX_THREADS",
        default_value_t = 16,
        global = true
    )]
    pub max_threads: u32,

    /// Requests allowed to wait for a compile slot (and, separately, for a run slot).
    #[arg(
        long,
        env = "WASM_PLAYGROUND_QUEUE_LIMIT",
        default_value_t = 32,
        global = true
    )]
    pub queue_limit: usize,

    /// Longest wait for a slot before the request is refused with 503, in milliseconds.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_QUEUE_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub queue_timeout_ms: u64,

    /// Compiles one client may have running at once (default: half the cores, at least 1), so
    /// one client never holds every compile slot.
    #[arg(long, env = "WASM_PLAYGROUND_CLIENT_MAX_COMPILES", default_value_t = (cores() / 2).max(1), global = true)]
    pub client_max_compiles: usize,

    /// Runs one client may have going at once (a live run counts while it computes, not while
    /// it waits for input).
    #[arg(
        long,
        env = "WASM_PLAYGROUND_CLIENT_MAX_RUNS",
        default_value_t = 8,
        global = true
    )]
    pub client_max_runs: usize,

    /// Requests one client may have waiting for its own compile slots (and, separately, for
    /// its run slots); past it, 429. They do not take places in the server's queue.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_CLIENT_QUEUE_LIMIT",
        default_value_t = 32,
        global = true
    )]
    pub client_queue_limit: usize,

    /// New programs (compiles that miss the artifact cache, and every format, clippy and
    /// `/compile` request) one client may start per minute, on average; 0 turns the limit off.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_CLIENT_COMPILE_RATE",
        default_value_t = 120,
        global = true
    )]
    pub client_compile_rate: u32,

    /// How many of those a client may start in a burst, above the rate.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_CLIENT_COMPILE_BURST",
        default_value_t = 40,
        global = true
    )]
    pub client_compile_burst: u32,

    /// Live sessions (`/live` runs) open at once on the server, most of them usually waiting
    /// for input; past it, 503.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_MAX_LIVE_SESSIONS",
        default_value_t = 256,
        global = true
    )]
    pub max_live_sessions: usize,

    /// Live sessions one client may have open at once; past it, 429.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_CLIENT_MAX_LIVE_SESSIONS",
        default_value_t = 40,
        global = true
    )]
    pub client_max_live_sessions: usize,

    /// Proxies (CIDRs, comma-separated) whose `X-Forwarded-For` names the client; from anyone
    /// else the header is ignored and the client is the peer address.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_TRUSTED_PROXIES",
        value_delimiter = ',',
        global = true
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Open connections the server accepts; past it, new ones are closed at once.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_MAX_CONNECTIONS",
        default_value_t = 4096,
        global = true
    )]
    pub max_connections: usize,

    /// Open connections from one peer address (trusted proxies are not limited).
    #[arg(
        long,
        env = "WASM_PLAYGROUND_CLIENT_MAX_CONNECTIONS",
        default_value_t = 256,
        global = true
    )]
    pub client_max_connections: usize,

    /// Time a client has to send a request's headers, in milliseconds; an idle keep-alive
    /// connection is closed after it too.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_HEADER_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub header_timeout_ms: u64,

    /// Time a client has to send a request's body, in milliseconds (408 after it).
    #[arg(
        long,
        env = "WASM_PLAYGROUND_BODY_TIMEOUT_MS",
        default_value_t = 30_000,
        global = true
    )]
    pub body_timeout_ms: u64,

    /// A WebSocket closes when its client sends nothing for this long, in milliseconds (while
    /// no program runs: a run has its own limit).
    #[arg(
        long,
        env = "WASM_PLAYGROUND_WS_IDLE_TIMEOUT_MS",
        default_value_t = 30_000,
        global = true
    )]
    pub ws_idle_timeout_ms: u64,

    /// A `/websocket` session (play.rust-lang.org's frontend keeps one open while its page is)
    /// is closed after this long, in milliseconds, as upstream's are after 45 minutes; the
    /// frontend then connects again. Bounds what an idle socket holds.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_WS_SESSION_TIMEOUT_MS",
        default_value_t = 2_700_000,
        global = true
    )]
    pub ws_session_timeout_ms: u64,

    /// Largest function body in a compiled module, in bytes: Wasmtime compiles each function
    /// in the server's process, and its time grows with the size.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_MAX_FUNCTION_BYTES",
        default_value_t = 4 << 20,
        global = true
    )]
    pub max_function_bytes: usize,

    /// Largest accepted source program, in bytes.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_CODE_LIMIT",
        default_value_t = 128 << 10,
        global = true
    )]
    pub code_limit: usize,

    /// Largest accepted stdin for a program, in bytes.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_STDIN_LIMIT",
        default_value_t = 64 << 10,
        global = true
    )]
    pub stdin_limit: usize,

    /// Largest accepted HTTP request body, in bytes.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_BODY_LIMIT",
        default_value_t = 256 << 10,
        global = true
    )]
    pub body_limit: usize,

    /// Directory for per-compile temp dirs (default: the system temp dir).
    #[arg(long, env = "WASM_PLAYGROUND_WORK_DIR", global = true)]
    pub work_dir: Option<PathBuf>,

    /// Channels to serve besides stable, when rustup has them with the wasm32-wasip1 target.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_CHANNELS",
        value_delimiter = ',',
        default_value = "stable,beta,nightly",
        global = true
    )]
    pub channels: Vec<Channel>,

    /// Serve this directory's files at `/` instead of the embedded page (`/help` answers its
    /// `index.html` too), e.g. play.rust-lang.org's frontend built from source.
    #[arg(long, env = "WASM_PLAYGROUND_FRONTEND_DIR", global = true)]
    pub frontend_dir: Option<PathBuf>,

    /// The `multifileThreshold` feature flag `/websocket` sends play.rust-lang.org's frontend:
    /// multi-file editing is on for the share of browsers whose random number in [0, 1] is at
    /// most this (1 = all; 0 or less = none).
    #[arg(
        long,
        env = "WASM_PLAYGROUND_MULTIFILE_THRESHOLD",
        default_value_t = 1.0,
        allow_negative_numbers = true,
        global = true
    )]
    pub multifile_threshold: f64,

    /// Log lines as human-readable text or as JSON objects (one per line).
    #[arg(
        long,
        env = "WASM_PLAYGROUND_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// Directory of the on-disk artifact cache (default: `$XDG_CACHE_HOME/wasm-playground`, else
    /// `~/.cache/wasm-playground`).
    #[arg(long, env = "WASM_PLAYGROUND_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,

    /// Compiled programs (and compile errors) kept ready in memory, least recently used first
    /// out; 0 turns the memory cache off.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_CACHE_MEMORY_ENTRIES",
        default_value_t = 128,
        global = true
    )]
    pub cache_memory_entries: usize,

    /// Bytes the memory cache's programs may take (their WebAssembly and machine code), least
    /// recently used first out.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_CACHE_MEMORY_BYTES",
        default_value_t = 256 << 20,
        global = true
    )]
    pub cache_memory_bytes: usize,

    /// Total size of the on-disk artifact cache in bytes, oldest entries evicted first; 0 turns
    /// the disk cache off.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_CACHE_DISK_BYTES",
        default_value_t = 512 << 20,
        global = true
    )]
    pub cache_disk_bytes: u64,

    /// How Wasmtime compiles a new program: `tiered` (Winch first, Cranelift once a run is
    /// CPU-bound), `cranelift` or `winch` only.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_COMPILER",
        value_enum,
        default_value_t = CompilerStrategy::Tiered,
        global = true
    )]
    pub compiler: CompilerStrategy,

    /// Fuel a run on Winch code may burn before the program is recompiled with Cranelift and
    /// restarted on the faster code (`tiered` only).
    #[arg(
        long,
        env = "WASM_PLAYGROUND_TIER_UP_FUEL",
        default_value_t = 100_000_000,
        global = true
    )]
    pub tier_up_fuel: u64,

    /// Directory of the offered crates, built by `wasm-playground build-crates` (default: `crates`
    /// in the cargo target dir this binary was built in, i.e. `target/crates`). Beta's and
    /// nightly's builds sit beside it, in `DIR-beta` and `DIR-nightly`.
    #[arg(long, env = "WASM_PLAYGROUND_CRATES_DIR", global = true)]
    pub crates_dir: Option<PathBuf>,

    /// Miri's sysroot, prepared once by `wasm-playground build-crates --channel nightly`
    /// (default: `miri-sysroot` beside the crates directory, i.e. `target/miri-sysroot`).
    #[arg(long, env = "WASM_PLAYGROUND_MIRI_SYSROOT", global = true)]
    pub miri_sysroot: Option<PathBuf>,

    /// The `rustc` used to find the toolchain's sysroot (the real compiler inside it is used).
    #[arg(
        long,
        env = "WASM_PLAYGROUND_RUSTC",
        default_value = "rustc",
        global = true
    )]
    pub rustc: String,

    /// Redis holding the artifact cache shared by several replicas (e.g. `redis://cache:6379/0`);
    /// unset: each replica has only its own cache.
    #[arg(long, env = "WASM_PLAYGROUND_REDIS_URL", global = true)]
    pub redis_url: Option<Secret>,

    /// Longest wait for one Redis command or connection attempt, in milliseconds; past it the
    /// request goes on without Redis.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_REDIS_TIMEOUT_MS",
        default_value_t = 200,
        global = true
    )]
    pub redis_timeout_ms: u64,

    /// Seconds a Redis entry lives after it was written.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_REDIS_TTL_SECONDS",
        default_value_t = 7 * 24 * 3600,
        global = true
    )]
    pub redis_ttl_seconds: u64,

    /// Key shared by the replicas to sign (HMAC-SHA256) and check Redis entries; without it a
    /// replica trusts whatever Redis holds.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_REDIS_HMAC_KEY",
        hide_env_values = true,
        global = true
    )]
    pub redis_hmac_key: Option<Secret>,

    /// Directory of the service's own data: the SQLite database of shares (default:
    /// `$XDG_DATA_HOME/wasm-playground`, else `~/.local/share/wasm-playground`).
    #[arg(long, env = "WASM_PLAYGROUND_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// PostgreSQL holding the shares, for several replicas (e.g.
    /// `postgres://playground:PASSWORD@db:5432/playground`); unset: SQLite in the data dir.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<Secret>,

    /// Connections to PostgreSQL kept open by one replica.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_DATABASE_CONNECTIONS",
        default_value_t = 4,
        global = true
    )]
    pub database_connections: usize,

    /// Longest wait for a database connection or one share's read or write, in milliseconds;
    /// past it the request gets a 503.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_DATABASE_TIMEOUT_MS",
        default_value_t = 3_000,
        global = true
    )]
    pub database_timeout_ms: u64,

    /// New shares one client (peer address) may make per minute (0 = no limit).
    #[arg(
        long,
        env = "WASM_PLAYGROUND_SHARES_PER_MINUTE",
        default_value_t = 30,
        global = true
    )]
    pub shares_per_minute: u32,

    /// Total bytes of code the share store may hold; past it new shares are refused.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_SHARES_MAX_BYTES",
        default_value_t = 1 << 30,
        global = true
    )]
    pub shares_max_bytes: u64,

    /// The page's address as users reach it (e.g. `https://play.example.org`), for the links of
    /// shares; unset: `http://` and the request's `Host`.
    #[arg(long, env = "WASM_PLAYGROUND_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
}

/// A setting that must not appear in logs or `Debug` output (a key, a URL with a password).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl Config {
    pub fn queue_timeout(&self) -> Duration {
        Duration::from_millis(self.queue_timeout_ms)
    }

    pub fn run_timeout(&self) -> Duration {
        Duration::from_millis(self.run_timeout_ms)
    }

    pub fn live_timeout(&self) -> Duration {
        Duration::from_millis(self.live_timeout_ms)
    }

    pub fn epoch_tick(&self) -> Duration {
        Duration::from_millis(self.epoch_tick_ms.max(1))
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms.max(1))
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms.max(1))
    }

    pub fn ws_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.ws_idle_timeout_ms.max(1))
    }

    pub fn ws_session_timeout(&self) -> Duration {
        Duration::from_millis(self.ws_session_timeout_ms.max(1))
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms.max(1))
    }

    pub fn compile_timeout(&self) -> Duration {
        Duration::from_millis(self.compile_timeout_ms)
    }

    pub fn database_timeout(&self) -> Duration {
        Duration::from_millis(self.database_timeout_ms.max(1))
    }

    /// Slots of Wasmtime's pooling allocator (instances, memories, tables, stacks): twice the
    /// runs allowed at once, since a run restarting on Cranelift briefly holds two, plus one
    /// per live session (which keeps its instance while it waits for input).
    pub fn pool_slots(&self) -> u32 {
        let slots = self
            .max_runs
            .saturating_mul(2)
            .max(4)
            .saturating_add(self.max_live_sessions);
        u32::try_from(slots).unwrap_or(u32::MAX)
    }

    /// Instance, table and stack slots: the pool's slots plus, for threaded runs (each counted
    /// as several runs by the admission control), one per extra thread of every run.
    pub fn pool_thread_slots(&self) -> u32 {
        let extra = u64::from(self.max_threads.saturating_sub(1)) * self.max_runs as u64;
        u32::try_from(u64::from(self.pool_slots()) + extra).unwrap_or(u32::MAX)
    }

    /// The on-disk cache's directory: the configured one, else the user's cache dir.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| user_dir("XDG_CACHE_HOME", ".cache"))
    }

    /// The data directory: the configured one, else the user's data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| user_dir("XDG_DATA_HOME", ".local/share"))
    }

    /// The crates directory: the configured one, else `crates` in the target dir of this binary
    /// (`target/release/wasm-playground`, `target/debug/deps/TEST` and
    /// `target/release/examples/bench` all give `target/crates`).
    pub fn crates_dir(&self) -> PathBuf {
        if let Some(dir) = &self.crates_dir {
            return dir.clone();
        }
        let exe = std::env::current_exe().ok();
        let mut dir = exe.as_deref().and_then(Path::parent);
        if dir.is_some_and(|d| d.ends_with("deps") || d.ends_with("examples")) {
            dir = dir.and_then(Path::parent);
        }
        dir.and_then(Path::parent)
            .map_or_else(|| PathBuf::from("target/crates"), |t| t.join("crates"))
    }

    /// The crates directory of `channel`: each toolchain loads only the libraries it built.
    pub fn crates_dir_for(&self, channel: Channel) -> PathBuf {
        let dir = self.crates_dir();
        match channel {
            Channel::Stable => dir,
            other => {
                let mut name = dir.file_name().unwrap_or_default().to_os_string();
                name.push(format!("-{}", other.as_str()));
                dir.with_file_name(name)
            }
        }
    }

    /// Where Miri's sysroot is (or is to be built).
    pub fn miri_sysroot(&self) -> PathBuf {
        self.miri_sysroot
            .clone()
            .unwrap_or_else(|| self.crates_dir().with_file_name("miri-sysroot"))
    }
}

/// `wasm-playground` in the XDG base directory named by `var`, else in `~/under_home`.
fn user_dir(var: &str, under_home: &str) -> PathBuf {
    let base = std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(under_home)))
        .unwrap_or_else(std::env::temp_dir);
    base.join("wasm-playground")
}

/// Which of Wasmtime's compilers turns a new program into machine code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompilerStrategy {
    /// Winch (fast to compile) for the first run; Cranelift (fast code) once a run burns
    /// `tier_up_fuel`, when the run is restarted on the Cranelift code.
    Tiered,
    /// Cranelift only: the fastest code, the slowest start.
    Cranelift,
    /// Winch only: the fastest start, code ~2x slower.
    Winch,
}

impl Default for Config {
    /// The same values as the command line's defaults.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: Config,
        }
        <Defaults as clap::Parser>::parse_from(["wasm-playground"]).config
    }
}

/// Options of the `serve` subcommand.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "WASM_PLAYGROUND_ADDR",
        default_value = "127.0.0.1:8000",
        global = true
    )]
    pub addr: SocketAddr,
}

/// Why the configuration file could not be used (the service refuses to start).
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("could not read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration file {path} is not valid TOML: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("unknown key `{key}` in the configuration file {path} (known keys: {known})")]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
    },
    #[error("bad value for `{key}` in the configuration file {path}: {why}")]
    BadValue {
        path: PathBuf,
        key: String,
        why: String,
    },
}

/// The keys a configuration file may set: every long flag of `cmd` (kebab-case, without the
/// dashes) except `--config` itself, `--help` and `--version`.
pub fn file_keys(cmd: &clap::Command) -> Vec<&str> {
    let mut keys: Vec<&str> = cmd
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|long| !matches!(*long, "config" | "help" | "version"))
        .collect();
    keys.sort_unstable();
    keys
}

/// Reads the TOML file at `path` and turns each of its keys into a `--key=value` argument,
/// except for settings that `matches` (the command line as parsed without the file) already
/// got from a flag or an environment variable: flag > environment > file > default.
pub fn file_args(
    cmd: &clap::Command,
    matches: &clap::ArgMatches,
    path: &std::path::Path,
) -> Result<Vec<std::ffi::OsString>, ConfigFileError> {
    use clap::parser::ValueSource;
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|source| ConfigFileError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let bad = |key: &str, why: String| ConfigFileError::BadValue {
        path: path.to_path_buf(),
        key: key.to_string(),
        why,
    };
    let keys = file_keys(cmd);
    let mut args = Vec::new();
    for (key, value) in &table {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && keys.contains(&key.as_str()))
            .ok_or_else(|| ConfigFileError::UnknownKey {
                path: path.to_path_buf(),
                key: key.clone(),
                known: keys.join(", "),
            })?;
        let id = arg.get_id().as_str();
        // Global flags may stand after the subcommand: look there too.
        let explicit = std::iter::once(matches)
            .chain(matches.subcommand().map(|(_, m)| m))
            .any(|m| {
                matches!(
                    m.try_get_raw(id).ok().and_then(|_| m.value_source(id)),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                )
            });
        if explicit {
            continue;
        }
        if matches!(arg.get_action(), clap::ArgAction::SetTrue) {
            match value {
                toml::Value::Boolean(true) => args.push(format!("--{key}").into()),
                toml::Value::Boolean(false) => {}
                other => return Err(bad(key, format!("expected true or false, not {other}"))),
            }
            continue;
        }
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(n) => Ok(n.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            other => Err(bad(
                key,
                format!("expected a string or an integer, not {other}"),
            )),
        };
        let text = match value {
            toml::Value::Array(items) => items
                .iter()
                .map(scalar)
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            other => scalar(other)?,
        };
        args.push(format!("--{key}={text}").into());
    }
    Ok(args)
}

/// A release channel of Rust. The default toolchain serves `stable`; others are used when
/// rustup has them installed with the wasm target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    #[default]
    Stable,
    Beta,
    Nightly,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Stable, Channel::Beta, Channel::Nightly];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Stable => "stable",
            Channel::Beta => "beta",
            Channel::Nightly => "nightly",
        }
    }
}

impl FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown channel `{s}`, expected stable, beta or nightly"))
    }
}
