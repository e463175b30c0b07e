//! The command line: `serve` (the default) and `run`.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::build::CrateKind;
use crate::config::{Config, LogFormat, ServeArgs};
use crate::pipeline::{ExecuteRequest, Playground};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Compile Rust to wasm32-wasip1 and run it in a limited Wasmtime sandbox"
)]
pub struct Cli {
    /// A TOML file of settings, one key per long flag (`fuel = 100000`, `addr = "0.0.0.0:8000"`);
    /// a flag or an environment variable wins over the file.
    #[arg(long = "config", env = "WASM_PLAYGROUND_CONFIG", global = true)]
    config_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Compile and run one program: FILE, or stdin when no FILE is given.
    Run {
        file: Option<PathBuf>,
        #[arg(long, default_value = "2024")]
        edition: crate::build::Edition,
        #[arg(long, default_value = "debug")]
        mode: crate::build::Mode,
        /// Run the program's `#[test]`s instead of `main`.
        #[arg(long)]
        test: bool,
        /// Arguments for the program (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build the offered crates (crates/Cargo.toml) into the crates directory and index them;
    /// a no-op when they are built already. With `--channel nightly`, also prepares Miri's
    /// sysroot.
    BuildCrates {
        /// The manifest listing the crates.
        #[arg(long, default_value = "crates/Cargo.toml")]
        manifest_path: PathBuf,
        /// The channel whose toolchain builds them (each loads only its own builds).
        #[arg(long, default_value = "stable")]
        channel: crate::config::Channel,
    },
}

/// Parses the command line and runs it; returns the process exit code.
pub async fn main() -> anyhow::Result<i32> {
    let cli = parse_args(std::env::args_os().collect())?;
    // `run` shares stderr with the program: only warnings go there by default.
    let default_filter = match cli.command {
        Some(Command::Run { .. }) => "warn",
        _ => "wasm_playground=info,tower_http=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_filter.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.config.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    match cli.command {
        Some(Command::BuildCrates {
            manifest_path,
            channel,
        }) => build_crates(&cli.config, &manifest_path, channel),
        None | Some(Command::Serve) => {
            serve(Arc::new(Playground::new(cli.config)?), cli.serve).await
        }
        Some(Command::Run {
            file,
            edition,
            mode,
            test,
            args,
        }) => {
            let kind = if test {
                CrateKind::Tests
            } else {
                CrateKind::Program
            };
            let request = ExecuteRequest {
                edition,
                mode,
                kind,
                args,
                ..Default::default()
            };
            run(&Playground::new(cli.config)?, file, request).await
        }
    }
}

/// Parses `args` (with the program name first), then the `--config` file if there is one. A
/// malformed command line prints clap's usage message and exits, as `Cli::parse` does.
pub fn parse_args(args: Vec<std::ffi::OsString>) -> anyhow::Result<Cli> {
    let matches = Cli::command().get_matches_from(args.clone());
    let mut cli = Cli::from_arg_matches(&matches)?;
    let Some(path) = cli.config_file.clone() else {
        return Ok(cli);
    };
    let extra = crate::config::file_args(&Cli::command(), &matches, &path)?;
    // Global flags go right after the program name: after the subcommand they could land in
    // `run`'s trailing program arguments.
    let mut args = args.into_iter();
    let with_file: Vec<_> = args.next().into_iter().chain(extra).chain(args).collect();
    let matches = Cli::command()
        .try_get_matches_from(with_file)
        .map_err(|e| {
            // clap's message without its "error: " prefix and usage hint.
            let message = e.to_string();
            let first = message.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            anyhow::anyhow!("in the configuration file {}: {first}", path.display())
        })?;
    cli = Cli::from_arg_matches(&matches)?;
    Ok(cli)
}

async fn serve(playground: Arc<Playground>, args: ServeArgs) -> anyhow::Result<i32> {
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("could not listen on {}", args.addr))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        channels = ?playground.compilers().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
        sandboxed = playground.compilers().all(|(_, c)| c.sandbox_enforced()),
        "listening"
    );
    crate::api::serve(listener, playground, shutdown_signal()).await?;
    tracing::info!("shut down");
    Ok(0)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// Compiles and runs `file` (or stdin) with the options in `request`.
async fn run(
    playground: &Playground,
    file: Option<PathBuf>,
    request: ExecuteRequest,
) -> anyhow::Result<i32> {
    let mut stdin = std::io::stdin();
    let (code, program_stdin) = match file {
        Some(path) => {
            let code = std::fs::read_to_string(&path)
                .with_context(|| format!("could not read {}", path.display()))?;
            // With the source in a file, a piped stdin is the program's input.
            let mut input = String::new();
            if !stdin.is_terminal() {
                stdin
                    .read_to_string(&mut input)
                    .context("could not read stdin")?;
            }
            (code, input)
        }
        None => {
            let mut code = String::new();
            stdin
                .read_to_string(&mut code)
                .context("could not read the program from stdin")?;
            (code, String::new())
        }
    };
    let output = playground
        .execute(ExecuteRequest {
            code: code.into(),
            stdin: program_stdin,
            ..request
        })
        .await?;
    eprint!("{}", output.compiler_output);
    std::io::stdout().write_all(output.stdout.as_bytes())?;
    std::io::stdout().flush()?;
    std::io::stderr().write_all(output.stderr.as_bytes())?;
    match output.exit_code {
        Some(code) => Ok(code),
        None => {
            eprintln!("{}", output.exit_detail);
            Ok(if output.status == crate::run::Status::CompileError {
                1
            } else {
                124
            })
        }
    }
}

/// `build-crates`: cargo shows its progress on stderr; one summary line follows.
fn build_crates(
    config: &Config,
    manifest: &std::path::Path,
    channel: crate::config::Channel,
) -> anyhow::Result<i32> {
    use crate::build::Toolchain;
    let toolchain = match channel {
        crate::config::Channel::Stable => Toolchain::detect(&config.rustc)?,
        other => Toolchain::detect_channel(other)?,
    };
    let dir = config.crates_dir_for(channel);
    if channel == crate::config::Channel::Nightly {
        let sysroot = config.miri_sysroot();
        crate::build::miri::setup(&toolchain, &sysroot)?;
        eprintln!("Miri's sysroot ready in {}", sysroot.display());
    }
    let index = crate::build::crates::build(&toolchain, manifest, &dir)?;
    eprintln!(
        "{} crates ready in {} for {}",
        index.crates.len(),
        dir.display(),
        toolchain.version
    );
    Ok(0)
}
