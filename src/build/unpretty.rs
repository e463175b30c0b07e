//! Nightly's views of a program before code generation, behind `POST /macro-expansion` and
//! `/compile`'s `hir`: `rustc -Zunpretty=expanded` and `-Zunpretty=hir`, in the same sandbox as
//! every compile. The program is compiled for `wasm32-wasip1` with the channel's offered crates,
//! so their macros (`#[tokio::main]`, `#[derive(Serialize)]`) expand as they would in a build.

use super::code::Code;
use super::compiler::{BuildResult, CompileError, Compiler, Job, tool_root};
use super::options::{CrateKind, Edition};

/// Which pretty-printed form to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpretty {
    /// The source with every macro expanded.
    Expanded,
    /// The HIR: desugared, with types' names resolved.
    Hir,
}

impl Compiler {
    /// Pretty-prints `code` as `form`; on success [`BuildResult::wasm`] is the text file.
    /// Only nightly accepts `-Z` flags: on another channel rustc says so in `rendered`.
    pub async fn unpretty(
        &self,
        code: &Code,
        edition: Edition,
        kind: CrateKind,
        form: Unpretty,
    ) -> Result<BuildResult, CompileError> {
        let root = tool_root(code, kind == CrateKind::Library);
        let job = Job::new(&self.settings.work_dir, code, root, None)?;
        let crate_type = if root == "src/lib.rs" { "lib" } else { "bin" };
        let form = match form {
            Unpretty::Expanded => "-Zunpretty=expanded",
            Unpretty::Hir => "-Zunpretty=hir",
        };
        let mut args: Vec<String> = [
            "--target",
            "wasm32-wasip1",
            "--crate-type",
            crate_type,
            "--crate-name",
            "playground",
            "--edition",
            edition.as_str(),
            "--error-format=json",
            form,
            "-o",
            "main.txt",
        ]
        .map(String::from)
        .into();
        args.push(format!("--remap-path-prefix={}/=", job.dir().display()));
        args.extend(self.crate_args.iter().cloned());
        args.push(root.into());
        self.run_job(&self.toolchain.rustc, &args, job, "main.txt")
            .await
    }
}
