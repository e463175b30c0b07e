//! The third-party crates programs may use: built once by `wasm-playground build-crates`, then
//! passed to every compile.
//!
//! `crates/Cargo.toml` (with its committed `Cargo.lock`) lists the offered crates. The set-up
//! builds it with the toolchain's own cargo (`--release --target wasm32-wasip1`, then
//! `wasm32-wasip1-threads` when the toolchain has it, proc-macros for the host) into the crates
//! directory (`--crates-dir`) and writes `index.json` there: each direct dependency's name,
//! version, crate name and library files, the `deps` directories and the `rustc --version` they
//! were built with. A second run is a cargo no-op.
//!
//! At start-up the service reads the index; a compile then gets `--extern NAME=FILE` per offered
//! crate and `-L dependency=` for both `deps` directories, so `use rand::prelude::*;` just works.
//! Without an index (or with one from another rustc, whose libraries it could not load) programs
//! get `std` only and the log says why.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::toolchain::Toolchain;

/// The file the set-up writes in the crates directory.
pub const INDEX_FILE: &str = "index.json";
/// The lean sysroot ([`Toolchain::prepare_lean_sysroot`]) made with the crates, in their dir.
const LEAN_SYSROOT_DIR: &str = "lean-sysroot";

/// One offered crate, as `GET /meta/crates` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferedCrate {
    /// The package name on crates.io, e.g. `md-5`.
    pub name: String,
    pub version: String,
    /// The name a program uses it by, e.g. `md5`.
    pub id: String,
    /// The built library: an `.rlib`, or a proc-macro's shared object.
    pub path: PathBuf,
}

/// What the set-up wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrateIndex {
    /// `rustc --version` of the toolchain that built the libraries; only it can load them.
    pub rustc: String,
    pub crates: Vec<OfferedCrate>,
    /// The `deps` directory of the wasm32-wasip1 libraries (the crates' own dependencies).
    pub wasm_deps: PathBuf,
    /// The `deps` directory of the host libraries (proc-macros and their dependencies).
    pub host_deps: PathBuf,
    /// The same crates built for wasm32-wasip1-threads (threaded programs), when the toolchain
    /// has that target.
    #[serde(default)]
    pub threads: Option<TargetLibraries>,
}

/// The offered crates' libraries for one more target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetLibraries {
    /// The library file of each crate of [`CrateIndex::crates`], in the same order.
    pub libraries: Vec<PathBuf>,
    pub wasm_deps: PathBuf,
}

/// A loaded index, with what compiles need from it.
#[derive(Debug, Clone)]
pub struct CrateSet {
    pub index: CrateIndex,
    /// SHA-256 of the index file, part of every artifact cache key: a rebuilt crate set has new
    /// library file names, so it never shares cached modules with the old one.
    pub fingerprint: String,
    /// Where set-up put the lean sysroot, if it did.
    pub lean_sysroot: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum CratesError {
    #[error("could not read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a crate index: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "the crate libraries in {dir} are missing ({missing}); run `wasm-playground build-crates` again"
    )]
    Incomplete { dir: PathBuf, missing: String },
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status})")]
    Failed { command: String, status: String },
    #[error("unexpected output of `{command}`: {detail}")]
    Output { command: String, detail: String },
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl CrateSet {
    /// Reads `dir/index.json` and checks that the libraries it names are there.
    pub fn load(dir: &Path) -> Result<Self, CratesError> {
        let path = dir.join(INDEX_FILE);
        let bytes = std::fs::read(&path).map_err(|source| CratesError::Read {
            path: path.clone(),
            source,
        })?;
        let index: CrateIndex =
            serde_json::from_slice(&bytes).map_err(|source| CratesError::Parse { path, source })?;
        let missing: Vec<String> = index
            .crates
            .iter()
            .map(|c| &c.path)
            .chain([&index.wasm_deps, &index.host_deps])
            .chain(
                index
                    .threads
                    .iter()
                    .flat_map(|t| t.libraries.iter().chain([&t.wasm_deps])),
            )
            .filter(|p| !p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !missing.is_empty() {
            return Err(CratesError::Incomplete {
                dir: dir.to_path_buf(),
                missing: missing.join(", "),
            });
        }
        let fingerprint = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            index,
            fingerprint,
            lean_sysroot: dir.join(LEAN_SYSROOT_DIR),
        })
    }

    /// The `rustc` arguments that make every offered crate available to a program.
    pub fn rustc_args(&self) -> Vec<String> {
        let libraries = self.index.crates.iter().map(|c| c.path.as_path());
        self.args_for(&self.index.wasm_deps, libraries)
    }

    /// The same for wasm32-wasip1-threads programs, if the crates were built for it.
    pub fn threads_rustc_args(&self) -> Option<Vec<String>> {
        let threads = self.index.threads.as_ref()?;
        let libraries = threads.libraries.iter().map(PathBuf::as_path);
        Some(self.args_for(&threads.wasm_deps, libraries))
    }

    fn args_for<'a>(
        &self,
        wasm_deps: &Path,
        libraries: impl Iterator<Item = &'a Path>,
    ) -> Vec<String> {
        let mut args = Vec::with_capacity(2 * self.index.crates.len() + 4);
        for dir in [wasm_deps, &self.index.host_deps] {
            args.push("-L".into());
            args.push(format!("dependency={}", dir.display()));
        }
        for (c, path) in self.index.crates.iter().zip(libraries) {
            args.push("--extern".into());
            args.push(format!("{}={}", c.id, path.display()));
            // Newer cargo keeps an rlib's metadata in a separate `.rmeta` (the rlib holds a
            // stub), which rustc reads only when it is named too.
            let rmeta = path.with_extension("rmeta");
            if path.extension().is_some_and(|e| e == "rlib") && rmeta.is_file() {
                args.push("--extern".into());
                args.push(format!("{}={}", c.id, rmeta.display()));
            }
        }
        args
    }

    /// The directories `rustc` reads the libraries from (the sandbox allows reading them).
    pub fn dirs(&self) -> Vec<&Path> {
        let mut dirs = vec![self.index.wasm_deps.as_path(), &self.index.host_deps];
        dirs.extend(self.index.threads.iter().map(|t| t.wasm_deps.as_path()));
        dirs
    }
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<MetaPackage>,
    resolve: MetaResolve,
}

#[derive(Deserialize)]
struct MetaPackage {
    id: String,
    name: String,
    version: String,
}

#[derive(Deserialize)]
struct MetaResolve {
    root: Option<String>,
    nodes: Vec<MetaNode>,
}

#[derive(Deserialize)]
struct MetaNode {
    id: String,
    deps: Vec<MetaDep>,
}

#[derive(Deserialize)]
struct MetaDep {
    /// The crate name the dependent uses (dashes already turned into underscores).
    name: String,
    pkg: String,
}

/// One line of `cargo build --message-format=json`.
#[derive(Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    package_id: String,
    #[serde(default)]
    filenames: Vec<PathBuf>,
}

/// Builds the crates of `manifest` into `dir` with `toolchain`'s cargo and writes the index.
/// Cargo's progress goes to this process's stderr.
pub fn build(
    toolchain: &Toolchain,
    manifest: &Path,
    dir: &Path,
) -> Result<CrateIndex, CratesError> {
    std::fs::create_dir_all(dir).map_err(|source| CratesError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let dir = std::path::absolute(dir).map_err(|source| CratesError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    // The toolchain's own cargo; a toolchain without one (not from rustup) uses the one on PATH.
    let cargo = Some(toolchain.tool("cargo"))
        .filter(|c| c.is_file())
        .unwrap_or_else(|| PathBuf::from("cargo"));
    let cargo_cmd = |args: &[&str]| {
        let mut cmd = Command::new(&cargo);
        cmd.args(args)
            .arg("--manifest-path")
            .arg(manifest)
            .arg("--locked")
            // The toolchain the service compiles with, whatever rustup would pick here.
            .env("RUSTC", &toolchain.rustc)
            .env_remove("RUSTFLAGS")
            .env("CARGO_ENCODED_RUSTFLAGS", remap_flags())
            .stdin(Stdio::null());
        cmd
    };

    let command = "cargo metadata".to_string();
    let output = cargo_cmd(&[
        "metadata",
        "--format-version",
        "1",
        "--filter-platform",
        "wasm32-wasip1",
    ])
    .stderr(Stdio::inherit())
    .output()
    .map_err(|source| CratesError::Spawn {
        command: command.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(CratesError::Failed {
            command,
            status: output.status.to_string(),
        });
    }
    let meta: Metadata =
        serde_json::from_slice(&output.stdout).map_err(|e| CratesError::Output {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    let root = meta
        .resolve
        .root
        .as_deref()
        .ok_or_else(|| CratesError::Output {
            command: command.clone(),
            detail: "no root package".into(),
        })?;
    let direct: Vec<&MetaDep> = meta
        .resolve
        .nodes
        .iter()
        .find(|n| n.id == root)
        .map(|n| n.deps.iter().collect())
        .unwrap_or_default();

    let host_deps = dir.join("release/deps");
    // One target dir for both targets: the host's proc-macros are built once.
    let build_for = |target: &str| -> Result<(Vec<(String, PathBuf)>, PathBuf), CratesError> {
        let command = format!("cargo build --release --target {target}");
        let target_dir = dir.display().to_string();
        let mut child = cargo_cmd(&[
            "build",
            "--release",
            "--target",
            target,
            "--target-dir",
            &target_dir,
            "--message-format=json-render-diagnostics",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| CratesError::Spawn {
            command: command.clone(),
            source,
        })?;
        let wasm_root = dir.join(target);
        let wasm_deps = wasm_root.join("release/deps");
        let mut libraries: Vec<(String, PathBuf)> = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(msg) = serde_json::from_str::<Message>(&line) else {
                    continue;
                };
                if msg.reason != "compiler-artifact" {
                    continue;
                }
                let mut gathered = Vec::new();
                for file in msg.filenames {
                    let deps = if file.starts_with(&wasm_root) {
                        &wasm_deps
                    } else {
                        &host_deps
                    };
                    gathered.push(gather(&file, deps).map_err(|source| CratesError::Write {
                        path: file.clone(),
                        source,
                    })?);
                }
                // A wasm library, or a proc-macro (a host shared object). A host `.rlib` of the
                // same package (a proc-macro's dependency) is not what programs link.
                let library = gathered.into_iter().find(|f| {
                    (f.starts_with(&wasm_deps) && f.extension().is_some_and(|e| e == "rlib"))
                        || f.extension()
                            .is_some_and(|e| e == std::env::consts::DLL_EXTENSION)
                });
                if let Some(library) = library {
                    libraries.push((msg.package_id, library));
                }
            }
        }
        let status = child.wait().map_err(|source| CratesError::Spawn {
            command: command.clone(),
            source,
        })?;
        if !status.success() {
            return Err(CratesError::Failed {
                command,
                status: status.to_string(),
            });
        }
        Ok((libraries, wasm_deps))
    };
    let (libraries, wasm_deps) = build_for("wasm32-wasip1")?;
    let threads = if toolchain.threads {
        Some(build_for("wasm32-wasip1-threads")?)
    } else {
        None
    };
    let command = "cargo build --release".to_string();
    let library_of = |libraries: &[(String, PathBuf)], dep: &MetaDep| {
        let found = libraries.iter().find(|(id, _)| *id == dep.pkg);
        found
            .map(|(_, path)| path.clone())
            .ok_or_else(|| CratesError::Output {
                command: command.clone(),
                detail: format!("no library was built for `{}`", dep.name),
            })
    };

    let mut crates = Vec::new();
    let mut threads_libraries = Vec::new();
    for dep in direct {
        let package = meta
            .packages
            .iter()
            .find(|p| p.id == dep.pkg)
            .ok_or_else(|| CratesError::Output {
                command: command.clone(),
                detail: format!("no package for `{}`", dep.name),
            })?;
        let path = library_of(&libraries, dep)?;
        if let Some((threads_built, _)) = &threads {
            threads_libraries.push((package.name.clone(), library_of(threads_built, dep)?));
        }
        crates.push(OfferedCrate {
            name: package.name.clone(),
            version: package.version.clone(),
            id: dep.name.clone(),
            path,
        });
    }
    crates.sort_by(|a, b| a.name.cmp(&b.name));
    threads_libraries.sort_by(|a, b| a.0.cmp(&b.0));
    let index = CrateIndex {
        rustc: toolchain.version.clone(),
        crates,
        wasm_deps,
        host_deps,
        threads: threads.map(|(_, wasm_deps)| TargetLibraries {
            libraries: threads_libraries
                .into_iter()
                .map(|(_, path)| path)
                .collect(),
            wasm_deps,
        }),
    };
    write_index(&dir, &index)?;
    // Only speeds up compiles: without it they use the toolchain's own sysroot.
    let lean = dir.join(LEAN_SYSROOT_DIR);
    if toolchain.lean_sysroot(&lean).is_none() {
        match toolchain.prepare_lean_sysroot(&lean) {
            Ok(()) => eprintln!("lean sysroot ready in {}", lean.display()),
            Err(err) => eprintln!("warning: no lean sysroot ({err}); compiles use the toolchain's"),
        }
    }
    Ok(index)
}

/// `file`, a library cargo built, as a file in `deps`. Cargo up to 1.95 writes every library
/// of a target into one `deps` directory; newer cargo (its new build-dir layout, on beta and
/// nightly) gives each its own directory, so they are hard-linked (or copied) into `deps`, which
/// `-L dependency=` and the sandbox's read rule name.
fn gather(file: &Path, deps: &Path) -> std::io::Result<PathBuf> {
    let is_library = file
        .extension()
        .is_some_and(|e| e == "rlib" || e == "rmeta" || e == std::env::consts::DLL_EXTENSION);
    let Some(name) = file.file_name().filter(|_| is_library) else {
        return Ok(file.to_path_buf());
    };
    if file.parent() == Some(deps) {
        return Ok(file.to_path_buf());
    }
    std::fs::create_dir_all(deps)?;
    let dest = deps.join(name);
    match std::fs::remove_file(&dest) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::hard_link(file, &dest).or_else(|_| std::fs::copy(file, &dest).map(drop))?;
    Ok(dest)
}

/// Written under a temp name and renamed, so a server starting meanwhile reads a whole file.
fn write_index(dir: &Path, index: &CrateIndex) -> Result<(), CratesError> {
    let path = dir.join(INDEX_FILE);
    let write_err = |source| CratesError::Write {
        path: path.clone(),
        source,
    };
    let mut json = serde_json::to_string_pretty(index).map_err(|e| write_err(e.into()))?;
    json.push('\n');
    let tmp = dir.join(format!("{INDEX_FILE}.tmp"));
    std::fs::write(&tmp, json).map_err(write_err)?;
    std::fs::rename(&tmp, &path).map_err(write_err)
}

/// Rustflags that show the crates' sources as `/cargo/registry/...` in diagnostics, so that
/// messages pointing into a crate do not reveal the host's home directory. Separated by 0x1f,
/// as `CARGO_ENCODED_RUSTFLAGS` wants.
fn remap_flags() -> String {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    match cargo_home {
        Some(home) => format!("--remap-path-prefix={}=/cargo", home.display()),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_in(dir: &Path) -> CrateIndex {
        let wasm_deps = dir.join("wasm");
        let host_deps = dir.join("host");
        std::fs::create_dir_all(&wasm_deps).unwrap();
        std::fs::create_dir_all(&host_deps).unwrap();
        let rlib = wasm_deps.join("libmd5-1.rlib");
        std::fs::write(&rlib, b"").unwrap();
        CrateIndex {
            rustc: "rustc 1.95.0".into(),
            crates: vec![OfferedCrate {
                name: "md-5".into(),
                version: "0.10.6".into(),
                id: "md5".into(),
                path: rlib,
            }],
            wasm_deps,
            host_deps,
            threads: None,
        }
    }

    #[test]
    fn an_index_becomes_extern_and_dependency_flags() {
        let dir = tempfile::tempdir().unwrap();
        let index = index_in(dir.path());
        write_index(dir.path(), &index).unwrap();
        let set = CrateSet::load(dir.path()).unwrap();
        assert_eq!(set.index, index);
        assert_eq!(set.fingerprint.len(), 64);
        let d = dir.path().display();
        assert_eq!(
            set.rustc_args(),
            [
                "-L".to_string(),
                format!("dependency={d}/wasm"),
                "-L".into(),
                format!("dependency={d}/host"),
                "--extern".into(),
                format!("md5={d}/wasm/libmd5-1.rlib"),
            ]
        );
    }

    #[test]
    fn a_missing_index_or_library_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            CrateSet::load(dir.path()),
            Err(CratesError::Read { .. })
        ));
        let index = index_in(dir.path());
        write_index(dir.path(), &index).unwrap();
        std::fs::remove_file(&index.crates[0].path).unwrap();
        assert!(matches!(
            CrateSet::load(dir.path()),
            Err(CratesError::Incomplete { .. })
        ));
    }
}
