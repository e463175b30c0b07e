//! Native assembly and LLVM IR, as people expect them on a playground: what `rustc` generates
//! for the host (`x86_64-unknown-linux-gnu`), not for WebAssembly. `--emit asm` / `--emit
//! llvm-ir` stop before linking, so no linker runs; the offered crates are built for
//! `wasm32-wasip1` only, so these views see `std` alone.
//!
//! The assembly is then shaped as play.rust-lang.org offers it: AT&T or Intel syntax, symbol
//! names demangled or not, and filtered to the program's own functions (no directives, comments
//! or unused labels) or raw.

use super::code::Code;
use super::compiler::{BuildResult, CompileError, Compiler, Job, common_args, tool_root};
use super::options::{CompileOptions, CrateKind};
use super::sandbox::NATIVE_TARGET;

/// What to emit for the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeEmit {
    /// Assembly; Intel syntax when `intel`, else AT&T.
    Asm {
        intel: bool,
    },
    LlvmIr,
}

/// How the assembly is shown (play.rust-lang.org's `demangleAssembly` and `processAssembly`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsmView {
    pub demangle: bool,
    /// Only the program's own functions, without directives, comments and unused labels.
    pub filter: bool,
}

impl Default for AsmView {
    fn default() -> Self {
        Self {
            demangle: true,
            filter: true,
        }
    }
}

impl Compiler {
    /// Compiles `code` for the host and emits `what`; on success [`BuildResult::wasm`] is the
    /// text file. One codegen unit, so there is one file, as under cargo's playground profile.
    pub async fn native(
        &self,
        code: &Code,
        opts: &CompileOptions,
        what: NativeEmit,
    ) -> Result<BuildResult, CompileError> {
        let root = tool_root(code, opts.kind == CrateKind::Library);
        let job = Job::new(&self.settings.work_dir, code, root, None)?;
        let mut opts = *opts;
        let crate_type = if root == "src/lib.rs" {
            opts.kind = CrateKind::Library;
            "lib"
        } else {
            opts.kind = CrateKind::Binary;
            "bin"
        };
        let (emit, output) = match what {
            NativeEmit::Asm { .. } => ("--emit=asm", "main.s"),
            NativeEmit::LlvmIr => ("--emit=llvm-ir", "main.ll"),
        };
        let mut args: Vec<String> = ["--target", NATIVE_TARGET, "--crate-type", crate_type]
            .map(String::from)
            .into();
        args.extend(common_args(job.dir(), &opts));
        args.extend(["-C".into(), "codegen-units=1".into()]);
        if what == (NativeEmit::Asm { intel: true }) {
            args.extend(["-C".into(), "llvm-args=-x86-asm-syntax=intel".into()]);
        }
        args.extend([emit.into(), "-o".into(), output.into(), root.into()]);
        self.run_job(&self.toolchain.rustc, &args, job, output)
            .await
    }
}

/// Shapes LLVM's assembly listing `asm` as `view` asks.
pub fn process_asm(asm: &str, view: AsmView) -> String {
    let text = if view.filter {
        filter(asm)
    } else {
        asm.to_string()
    };
    if view.demangle {
        demangle_symbols(&text)
    } else {
        text
    }
}

/// The program's own functions: blocks under a global label whose demangled name mentions the
/// `playground` crate, without directives, comments and the local labels nothing jumps to.
fn filter(asm: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut in_own_function = false;
    for line in asm.lines() {
        let trimmed = line.trim();
        // Comments, such as `# %bb.1:` for a block nothing jumps to.
        if trimmed.starts_with('#') {
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        if let Some(label) = trimmed.strip_suffix(':').filter(|_| !indented) {
            if !label.starts_with(".L") {
                in_own_function = demangle_symbols(label).contains("playground::");
                if in_own_function && !kept.is_empty() {
                    kept.push("");
                }
            }
            if in_own_function {
                kept.push(line);
            }
            continue;
        }
        if in_own_function && !trimmed.is_empty() && !trimmed.starts_with('.') {
            kept.push(line);
        }
    }
    let body: Vec<&str> = kept
        .iter()
        .copied()
        .filter(|l| l.starts_with([' ', '\t']))
        .collect();
    let mut out = String::new();
    for line in kept {
        let local = line.strip_suffix(':').filter(|l| l.starts_with(".L"));
        let used = local.is_none_or(|label| body.iter().any(|b| mentions(b, label)));
        if used {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Whether `line` names `label` as a whole word.
fn mentions(line: &str, label: &str) -> bool {
    line.split(|c: char| !is_symbol_char(c))
        .any(|word| word == label)
}

fn is_symbol_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$')
}

/// Replaces every mangled Rust symbol in `text` by its demangled name, without the hash.
fn demangle_symbols(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| is_symbol_char(c)) {
        out.push_str(&rest[..start]);
        let word_len = rest[start..]
            .find(|c: char| !is_symbol_char(c))
            .unwrap_or(rest.len() - start);
        let word = &rest[start..start + word_len];
        match rustc_demangle::try_demangle(word) {
            Ok(name) if word.starts_with("_ZN") || word.starts_with("_R") => {
                out.push_str(&format!("{name:#}"));
            }
            _ => out.push_str(word),
        }
        rest = &rest[start + word_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "\t.text\n\t.file\t\"playground.8f-cgu.0\"\n\t.section\t.text._ZN10playground6square17h0123456789abcdefE,\"ax\",@progbits\n\t.p2align\t4\n\t.type\t_ZN10playground6square17h0123456789abcdefE,@function\n_ZN10playground6square17h0123456789abcdefE:\n\t.cfi_startproc\n# %bb.0:\n\tmovq\t%rdi, %rax\n\tjmp\t.LBB0_2\n.LBB0_1:\n\tud2\n.LBB0_2:\n\timulq\t%rdi, %rax\n\tretq\n.Lfunc_end0:\n\t.cfi_endproc\n_ZN4core3fmt9Arguments9new_const17h0123456789abcdefE:\n\tretq\n";

    #[test]
    fn filtering_keeps_the_programs_functions_and_used_labels() {
        let view = AsmView::default();
        assert_eq!(
            process_asm(LISTING, view),
            "playground::square:\n\tmovq\t%rdi, %rax\n\tjmp\t.LBB0_2\n\tud2\n.LBB0_2:\n\timulq\t%rdi, %rax\n\tretq\n"
        );
        let mangled = process_asm(
            LISTING,
            AsmView {
                demangle: false,
                ..view
            },
        );
        assert!(mangled.starts_with("_ZN10playground6square17h0123456789abcdefE:\n"));
        let raw = process_asm(
            LISTING,
            AsmView {
                filter: false,
                ..view
            },
        );
        assert!(
            raw.contains("\t.type\tplayground::square,@function\n"),
            "{raw}"
        );
        assert!(raw.contains("core::fmt::Arguments::new_const:\n"), "{raw}");
    }
}
