//! The crate's layers (see `src/lib.rs`): a module may import only from its own top-level
//! module or from the layers below it. Reads every `crate::NAME` path in `src/`, doc links
//! included; unit tests (`#[cfg(test)]` and after) may reach anywhere.

use std::path::Path;

/// Top to bottom.
const LAYERS: &[&str] = &[
    "cli", "api", "pipeline", "inspect", "build", "run", "shares", "config",
];

fn rank(name: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == name)
}

/// The names after `crate::` on one line, including each member of `crate::{a, b::c}`.
fn crate_paths(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let ident = |s: &str| -> String {
            s.trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        match rest.strip_prefix('{') {
            Some(group) => {
                // Split the group's top level at commas, up to its own closing brace.
                let mut depth = 0;
                let mut start = 0;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            names.push(ident(&group[start..i]));
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            names.push(ident(&group[start..i]));
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
            }
            None => names.push(ident(rest)),
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_point_down_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut seen = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let own = rank(&top).unwrap_or_else(|| {
            panic!(
                "src/{} is in no layer; add `{top}` to LAYERS",
                rel.display()
            )
        });
        let text = std::fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            for name in crate_paths(line) {
                seen += 1;
                match rank(&name) {
                    Some(r) if r > own || name == top => {}
                    Some(_) => violations.push(format!(
                        "src/{}:{}: `{top}` imports `crate::{name}`, a layer above or beside it",
                        rel.display(),
                        n + 1
                    )),
                    None => violations.push(format!(
                        "src/{}:{}: `crate::{name}` is not a layer",
                        rel.display(),
                        n + 1
                    )),
                }
            }
        }
    }
    assert!(
        seen > 20,
        "too few crate paths found ({seen}): is the scan broken?"
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn paths_are_read_from_groups_and_doc_links() {
    assert_eq!(
        crate_paths("use crate::{build::{A, B}, run::Status};"),
        ["build", "run"]
    );
    assert_eq!(
        crate_paths("//! [`Program`](crate::run::Program) and crate::config"),
        ["run", "config"]
    );
}
