//! The tools besides running: rustfmt, clippy, Miri, macro expansion, and `/compile`'s views of
//! a program.

use serde::Serialize;

use super::admission::Permit;
use super::{ClientId, Playground, PlaygroundError};
use crate::build::native::process_asm;
use crate::build::{
    AliasingModel, AsmView, BuildResult, Channel, Code, CompileError, CompileOptions, Compiler,
    CrateKind, Diagnostic, Edition, Emit, NativeEmit, Unpretty,
};
use crate::inspect::{self, Flavor};
use crate::run::RunError;

/// The answer of `/format`, `/clippy` and `/compile` (play.rust-lang.org's shape plus our
/// structured diagnostics).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolOutput {
    pub success: bool,
    pub exit_detail: String,
    /// The formatted code (the code as sent when rustfmt failed), or the requested compiler
    /// output (empty when the build failed).
    pub code: Code,
    pub stdout: String,
    /// The tool's diagnostics, as rendered text.
    pub stderr: String,
    pub diagnostics: Vec<Diagnostic>,
    pub truncated: bool,
}

/// What `/compile` shows of a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The module as WAT text.
    Wasm,
    Mir,
    /// nightly's HIR (`-Zunpretty=hir`).
    Hir,
    /// LLVM IR for the host (x86-64), as `rustc --emit llvm-ir` writes it.
    LlvmIr,
    /// x86-64 assembly for the host, as `rustc --emit asm` writes it.
    Asm,
    /// The x86-64 code Wasmtime generates for the program's functions: what really runs here.
    WasmtimeAsm,
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "wasm" => Ok(Target::Wasm),
            "mir" => Ok(Target::Mir),
            "hir" => Ok(Target::Hir),
            "llvm-ir" => Ok(Target::LlvmIr),
            "asm" => Ok(Target::Asm),
            "wasmtime-asm" => Ok(Target::WasmtimeAsm),
            _ => Err(format!(
                "unknown target `{s}`, expected one of asm, hir, llvm-ir, mir, wasm, wasmtime-asm"
            )),
        }
    }
}

/// How `/compile` shows assembly: `asm`'s syntax, names and filter; `wasmtime-asm`'s syntax.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsmOptions {
    pub flavor: Flavor,
    pub view: AsmView,
}

impl Playground {
    /// What every tool request does first: check the code, pick the channel's compiler, and take
    /// a compile slot (held until the returned permit is dropped).
    async fn tool_slot(
        &self,
        code: &Code,
        channel: Channel,
        client: ClientId,
    ) -> Result<(&Compiler, Permit), PlaygroundError> {
        self.validate_code(code)?;
        let compiler = self.compiler(channel)?;
        self.charge_compile(client)?;
        Ok((compiler, self.compiles.enter(client).await?))
    }

    /// Formats `code` with rustfmt for the channel and edition of `opts`.
    pub async fn format(
        &self,
        code: &Code,
        opts: CompileOptions,
        client: ClientId,
    ) -> Result<ToolOutput, PlaygroundError> {
        let (compiler, _slot) = self.tool_slot(code, opts.channel, client).await?;
        let build = compiler.format(code, opts.edition).await?;
        // On failure the code comes back as it was: play.rust-lang.org's frontend puts `code`
        // into its editor whatever the outcome.
        let formatted = if build.success {
            Compiler::formatted(code, &build)?
        } else {
            code.clone()
        };
        Ok(tool_output(build, formatted, "Formatted", "rustfmt failed"))
    }

    /// Runs clippy's lints over `code`.
    pub async fn clippy(
        &self,
        code: &Code,
        opts: CompileOptions,
        client: ClientId,
    ) -> Result<ToolOutput, PlaygroundError> {
        let (compiler, _slot) = self.tool_slot(code, opts.channel, client).await?;
        let build = compiler.clippy(code, &opts).await?;
        Ok(tool_output(
            build,
            Code::default(),
            "Checked",
            "Clippy found errors",
        ))
    }

    /// Interprets `code` with nightly's Miri: its `main`, or its tests with `tests`.
    pub async fn miri(
        &self,
        code: &Code,
        edition: Edition,
        tests: bool,
        aliasing: AliasingModel,
        client: ClientId,
    ) -> Result<ToolOutput, PlaygroundError> {
        let Some((compiler, _slot)) = self.nightly_slot(code, client).await? else {
            return Ok(self.nightly_missing("Miri"));
        };
        let Some(build) = compiler.miri(code, edition, tests, aliasing).await else {
            return Ok(unavailable(
                "Miri is not set up on this server: `wasm-playground build-crates --channel nightly` prepares it",
            ));
        };
        let build = build?;
        let stdout = build.stdout.clone();
        // As play.rust-lang.org words a process's end.
        let detail = match build.exit_code {
            Some(code) => format!("Exited with status {code}"),
            None => "Miri was stopped at a limit".into(),
        };
        let mut out = tool_output(build, Code::default(), &detail, &detail);
        out.stdout = stdout;
        Ok(out)
    }

    /// Shows `code` with every macro expanded (nightly's `-Zunpretty=expanded`).
    pub async fn macro_expansion(
        &self,
        code: &Code,
        edition: Edition,
        kind: CrateKind,
        client: ClientId,
    ) -> Result<ToolOutput, PlaygroundError> {
        let Some((compiler, _slot)) = self.nightly_slot(code, client).await? else {
            return Ok(self.nightly_missing("Macro expansion"));
        };
        let build = compiler
            .unpretty(code, edition, kind, Unpretty::Expanded)
            .await?;
        // play.rust-lang.org's client shows the expansion as the tool's stdout.
        let (text, cut) = self.capped(read_output(&build)?);
        let mut out = tool_output(build, Code::default(), "Expanded", "Expansion failed");
        out.stdout = text;
        out.truncated |= cut;
        Ok(out)
    }

    /// A slot on nightly, which Miri, macro expansion and HIR need (`None` when this server has
    /// no nightly).
    async fn nightly_slot(
        &self,
        code: &Code,
        client: ClientId,
    ) -> Result<Option<(&Compiler, Permit)>, PlaygroundError> {
        if self.compiler(Channel::Nightly).is_err() {
            self.validate_code(code)?;
            return Ok(None);
        }
        self.tool_slot(code, Channel::Nightly, client)
            .await
            .map(Some)
    }

    /// A 200 that says why a nightly tool cannot run: play.rust-lang.org's page shows nothing
    /// for an error status of these tools, but shows `stderr`.
    fn nightly_missing(&self, tool: &str) -> ToolOutput {
        let why = match self.compiler(Channel::Nightly) {
            Err(PlaygroundError::BadRequest(why)) => why,
            _ => "the `nightly` channel is not available on this server".into(),
        };
        unavailable(&format!("{tool} needs nightly, and {why}"))
    }

    /// Compiles `code` and returns one of its intermediate or final forms as text. `asm` and
    /// `llvm-ir` are what `rustc` generates for the host (x86-64), as on any playground;
    /// `wasmtime-asm` is the machine code of the module as it runs here, in `asm.flavor`'s
    /// syntax; `hir` is nightly's.
    pub async fn compile_to(
        &self,
        code: &Code,
        mut opts: CompileOptions,
        target: Target,
        asm: AsmOptions,
        client: ClientId,
    ) -> Result<ToolOutput, PlaygroundError> {
        opts.emit = match target {
            Target::Mir => Emit::Mir,
            _ => Emit::Link,
        };
        opts.backtrace = false;
        if matches!(target, Target::Wasm | Target::WasmtimeAsm) {
            opts.kind = match opts.kind {
                CrateKind::Program => CrateKind::Binary,
                CrateKind::Library => CrateKind::Cdylib,
                kind => kind,
            };
        }
        let channel = match target {
            Target::Hir => Channel::Nightly,
            _ => opts.channel,
        };
        if target == Target::Hir && self.compiler(channel).is_err() {
            self.validate_code(code)?;
            return Ok(self.nightly_missing("HIR"));
        }
        let (compiler, _slot) = self.tool_slot(code, channel, client).await?;
        let build = match target {
            Target::Hir => {
                compiler
                    .unpretty(code, opts.edition, opts.kind, Unpretty::Hir)
                    .await?
            }
            Target::Asm => {
                let intel = asm.flavor == Flavor::Intel;
                compiler
                    .native(code, &opts, NativeEmit::Asm { intel })
                    .await?
            }
            Target::LlvmIr => compiler.native(code, &opts, NativeEmit::LlvmIr).await?,
            _ => compiler.compile_input(code, &opts).await?,
        };
        let mut text = String::new();
        if build.success {
            let bytes = std::fs::read(&build.wasm).map_err(CompileError::Workspace)?;
            text = match target {
                Target::Wasm => wasmprinter::print_bytes(&bytes).map_err(|e| {
                    CompileError::Workspace(std::io::Error::other(format!("printing WAT: {e}")))
                })?,
                Target::Asm => process_asm(&String::from_utf8_lossy(&bytes), asm.view),
                Target::WasmtimeAsm => {
                    let flavor = asm.flavor;
                    let runner = self.runner.clone();
                    let listing = tokio::task::spawn_blocking(move || {
                        let elf = runner.machine_code(&bytes)?;
                        inspect::disassemble(&bytes, &elf, flavor)
                            .map_err(|e| RunError::Load(e.to_string()))
                    })
                    .await
                    .map_err(|e| RunError::Load(format!("the disassembly task failed: {e}")))?;
                    match listing {
                        Ok(listing) => listing,
                        Err(RunError::Unfit(unfit)) => {
                            return Ok(tool_output(
                                build.with_error(unfit.0),
                                Code::default(),
                                "Compiled",
                                "Compilation failed",
                            ));
                        }
                        Err(other) => return Err(other.into()),
                    }
                }
                _ => String::from_utf8_lossy(&bytes).into_owned(),
            };
        }
        let (text, truncated) = self.capped(text);
        let mut out = tool_output(build, text.into(), "Compiled", "Compilation failed");
        out.truncated |= truncated;
        Ok(out)
    }

    /// `text` cut at the output limit, and whether it was cut.
    fn capped(&self, mut text: String) -> (String, bool) {
        let limit = self.config.output_limit;
        if text.len() <= limit {
            return (text, false);
        }
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        (text, true)
    }
}

/// The text file a successful tool run wrote (empty after a failure).
fn read_output(build: &BuildResult) -> Result<String, CompileError> {
    if !build.success {
        return Ok(String::new());
    }
    let bytes = std::fs::read(&build.wasm).map_err(CompileError::Workspace)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The answer of a tool this server cannot run, with `message` as its error.
fn unavailable(message: &str) -> ToolOutput {
    ToolOutput {
        success: false,
        exit_detail: "Not available on this server".into(),
        code: Code::default(),
        stdout: String::new(),
        stderr: format!("error: {message}\n"),
        diagnostics: vec![Diagnostic::error(message.to_string())],
        truncated: false,
    }
}

fn tool_output(build: BuildResult, code: Code, ok: &str, failed: &str) -> ToolOutput {
    ToolOutput {
        success: build.success,
        exit_detail: if build.success { ok } else { failed }.into(),
        code,
        stdout: String::new(),
        stderr: build.rendered,
        diagnostics: build.diagnostics,
        truncated: build.truncated,
    }
}
