//! The tools besides running: rustfmt, clippy, and `/compile`'s views of a program.

use serde::Serialize;

use super::admission::Permit;
use super::{Playground, PlaygroundError};
use crate::build::{
    BuildResult, Channel, Code, CompileError, CompileOptions, Compiler, CrateKind, Diagnostic, Emit,
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
    LlvmIr,
    /// The x86-64 code Wasmtime generates for the program's functions.
    Asm,
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "wasm" => Ok(Target::Wasm),
            "mir" => Ok(Target::Mir),
            "llvm-ir" => Ok(Target::LlvmIr),
            "asm" => Ok(Target::Asm),
            _ => Err(format!(
                "unknown target `{s}`, expected one of asm, llvm-ir, mir, wasm"
            )),
        }
    }
}

impl Playground {
    /// What every tool request does first: check the code, pick the channel's compiler, and take
    /// a compile slot (held until the returned permit is dropped).
    async fn tool_slot(
        &self,
        code: &Code,
        channel: Channel,
    ) -> Result<(&Compiler, Permit<'_>), PlaygroundError> {
        self.validate_code(code)?;
        let compiler = self.compiler(channel)?;
        Ok((compiler, self.compiles.enter().await?))
    }

    /// Formats `code` with rustfmt for the channel and edition of `opts`.
    pub async fn format(
        &self,
        code: &Code,
        opts: CompileOptions,
    ) -> Result<ToolOutput, PlaygroundError> {
        let (compiler, _slot) = self.tool_slot(code, opts.channel).await?;
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
    ) -> Result<ToolOutput, PlaygroundError> {
        let (compiler, _slot) = self.tool_slot(code, opts.channel).await?;
        let build = compiler.clippy(code, &opts).await?;
        Ok(tool_output(
            build,
            Code::default(),
            "Checked",
            "Clippy found errors",
        ))
    }

    /// Compiles `code` and returns one of its intermediate or final forms as text. `asm` is
    /// the machine code of the module as it runs here (the tier that runs a program for long),
    /// in `flavor`'s syntax; LLVM's own assembly would only show WebAssembly.
    pub async fn compile_to(
        &self,
        code: &Code,
        mut opts: CompileOptions,
        target: Target,
        flavor: Flavor,
    ) -> Result<ToolOutput, PlaygroundError> {
        opts.emit = match target {
            Target::Wasm | Target::Asm => Emit::Link,
            Target::Mir => Emit::Mir,
            Target::LlvmIr => Emit::LlvmIr,
        };
        if matches!(target, Target::Wasm | Target::Asm) {
            opts.kind = match opts.kind {
                CrateKind::Program => CrateKind::Binary,
                CrateKind::Library => CrateKind::Cdylib,
                kind => kind,
            };
        }
        let (compiler, _slot) = self.tool_slot(code, opts.channel).await?;
        let build = compiler.compile_input(code, &opts).await?;
        let mut text = String::new();
        if build.success {
            let bytes = std::fs::read(&build.wasm).map_err(CompileError::Workspace)?;
            text = match target {
                Target::Wasm => wasmprinter::print_bytes(&bytes).map_err(|e| {
                    CompileError::Workspace(std::io::Error::other(format!("printing WAT: {e}")))
                })?,
                Target::Asm => {
                    let runner = self.runner.clone();
                    tokio::task::spawn_blocking(move || {
                        let elf = runner.machine_code(&bytes)?;
                        inspect::disassemble(&bytes, &elf, flavor)
                            .map_err(|e| RunError::Load(e.to_string()))
                    })
                    .await
                    .map_err(|e| RunError::Load(format!("the disassembly task failed: {e}")))??
                }
                _ => String::from_utf8_lossy(&bytes).into_owned(),
            };
        }
        let mut truncated = false;
        if text.len() > self.config.output_limit {
            let mut cut = self.config.output_limit;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            truncated = true;
        }
        let mut out = tool_output(build, text.into(), "Compiled", "Compilation failed");
        out.truncated |= truncated;
        Ok(out)
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
