//! What a request asks the compiler for: edition, mode, crate kind and output form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::code::Code;
use crate::config::Channel;

/// The Rust edition a sample is compiled with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Edition {
    #[serde(rename = "2015")]
    E2015,
    #[serde(rename = "2018")]
    E2018,
    #[serde(rename = "2021")]
    E2021,
    #[default]
    #[serde(rename = "2024")]
    E2024,
}

impl Edition {
    pub fn as_str(self) -> &'static str {
        match self {
            Edition::E2015 => "2015",
            Edition::E2018 => "2018",
            Edition::E2021 => "2021",
            Edition::E2024 => "2024",
        }
    }
}

impl FromStr for Edition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "2015" => Ok(Edition::E2015),
            "2018" => Ok(Edition::E2018),
            "2021" => Ok(Edition::E2021),
            "2024" => Ok(Edition::E2024),
            _ => Err(format!(
                "unknown edition `{s}`, expected one of 2015, 2018, 2021, 2024"
            )),
        }
    }
}

impl fmt::Display for Edition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Debug (overflow checks, no optimisation: what `cargo run` does) or release.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Debug,
    Release,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "debug" => Ok(Mode::Debug),
            "release" => Ok(Mode::Release),
            _ => Err(format!("unknown mode `{s}`, expected debug or release")),
        }
    }
}

/// What to build from the sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum CrateKind {
    /// A program: a `cdylib` whose `__entry` export runs `main` (the entry stub is appended).
    #[default]
    Program,
    /// The test harness (`rustc --test`): a WASI command module that takes libtest's arguments.
    Tests,
    /// The test harness of a library: the same, with the library's `src/lib.rs` as its root.
    LibraryTests,
    /// A library that is only compiled, never run.
    Library,
    /// A plain binary (`--crate-type bin`), for inspecting its intermediate forms.
    Binary,
    /// A library linked into a module of its own (`--crate-type cdylib`), for `/compile`'s
    /// views: its exported functions keep their names.
    Cdylib,
    /// A procedural macro crate (`--crate-type proc-macro`), only compiled. It runs inside the
    /// compiler, so cargo builds it for the host, with `proc_macro` in scope; so do we.
    ProcMacro,
    /// The test harness of a procedural macro crate: [`Self::LibraryTests`] with `proc_macro`.
    ProcMacroTests,
}

impl CrateKind {
    /// Only compiled, never run.
    pub fn builds_only(self) -> bool {
        matches!(self, CrateKind::Library | CrateKind::ProcMacro)
    }

    /// Runs the `#[test]`s of a harness.
    pub fn is_tests(self) -> bool {
        matches!(
            self,
            CrateKind::Tests | CrateKind::LibraryTests | CrateKind::ProcMacroTests
        )
    }

    /// Its crate root is `src/lib.rs`, where a package has one.
    pub fn is_library(self) -> bool {
        !matches!(
            self,
            CrateKind::Program | CrateKind::Tests | CrateKind::Binary
        )
    }

    /// The kind a library's tools (clippy, `/compile`'s views, macro expansion) treat it as:
    /// they know plain libraries only.
    pub fn for_tools(self) -> Self {
        match self {
            CrateKind::ProcMacro => CrateKind::Library,
            CrateKind::ProcMacroTests => CrateKind::LibraryTests,
            kind => kind,
        }
    }
}

/// What rustc writes: the linked artifact, or one of its intermediate forms as text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Emit {
    #[default]
    Link,
    Mir,
    LlvmIr,
    /// LLVM's WebAssembly assembly.
    Asm,
}

/// The WebAssembly target a program is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Wasip1,
    /// Programs that may start threads (run/threads.rs).
    Wasip1Threads,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Wasip1 => "wasm32-wasip1",
            Target::Wasip1Threads => "wasm32-wasip1-threads",
        }
    }

    /// The target a build of `code` uses: the threads target for a program (or a test
    /// harness) that may start a thread. A plain substring scan: no program starts a thread without naming one of these
    /// (`thread::spawn`, `Builder::spawn`, `thread::scope`, rayon, crossbeam); a false positive
    /// only costs a threaded run (~0.5 ms).
    pub fn for_program(code: &Code, opts: &CompileOptions) -> Self {
        const MARKERS: [&str; 4] = ["spawn", "scope", "rayon", "crossbeam"];
        let runs = matches!(
            opts.kind,
            CrateKind::Program | CrateKind::Tests | CrateKind::LibraryTests
        );
        let threaded = runs
            && opts.emit == Emit::Link
            && code
                .files("src/main.rs")
                .iter()
                .any(|(_, text)| MARKERS.iter().any(|m| text.contains(m)));
        if threaded {
            Target::Wasip1Threads
        } else {
            Target::Wasip1
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CompileOptions {
    pub channel: Channel,
    pub edition: Edition,
    pub mode: Mode,
    pub kind: CrateKind,
    pub emit: Emit,
    /// A panic prints `stack backtrace:` and the frames (play.rust-lang.org's `backtrace`):
    /// the program is built with line tables and names, and a stub that asks Wasmtime for them.
    pub backtrace: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editions_and_modes_parse_and_reject_unknown_values() {
        assert_eq!("2018".parse::<Edition>(), Ok(Edition::E2018));
        assert_eq!(
            "2023".parse::<Edition>(),
            Err("unknown edition `2023`, expected one of 2015, 2018, 2021, 2024".into())
        );
        assert_eq!("release".parse::<Mode>(), Ok(Mode::Release));
        assert!("fast".parse::<Mode>().is_err());
    }
}
