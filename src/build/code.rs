//! A program's source as a request sends it: one file, or the files of a cargo package
//! (play.rust-lang.org's multi-file mode: `src/main.rs`, `src/lib.rs`, modules in folders).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Most files one package may have.
pub const MAX_FILES: usize = 100;

/// One file of a package: its path relative to the package root, with `/` between components.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    pub name: String,
    pub content: String,
}

/// The source of a program. In JSON a string (one file, placed where the crate kind needs it)
/// or a list of `{name, content}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Code {
    Single(String),
    Files(Vec<SourceFile>),
}

/// By hand rather than `untagged`, whose error names no expected shape.
impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CodeVisitor;
        impl<'de> serde::de::Visitor<'de> for CodeVisitor {
            type Value = Code;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, or a list of files {\"name\", \"content\"}")
            }
            fn visit_str<E: serde::de::Error>(self, code: &str) -> Result<Code, E> {
                Ok(Code::Single(code.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Code, A::Error> {
                let files = serde::de::value::SeqAccessDeserializer::new(seq);
                Ok(Code::Files(Vec::deserialize(files)?))
            }
        }
        deserializer.deserialize_any(CodeVisitor)
    }
}

impl Default for Code {
    fn default() -> Self {
        Code::Single(String::new())
    }
}

impl From<String> for Code {
    fn from(code: String) -> Self {
        Code::Single(code)
    }
}

impl From<&str> for Code {
    fn from(code: &str) -> Self {
        Code::Single(code.to_string())
    }
}

impl Code {
    /// Bytes of source, all files together.
    pub fn size(&self) -> usize {
        match self {
            Code::Single(code) => code.len(),
            Code::Files(files) => files.iter().map(|f| f.content.len()).sum(),
        }
    }

    /// No file has anything but white space.
    pub fn is_blank(&self) -> bool {
        match self {
            Code::Single(code) => code.trim().is_empty(),
            Code::Files(files) => files.iter().all(|f| f.content.trim().is_empty()),
        }
    }

    /// The files, a single source being named `single` (`src/main.rs` or `src/lib.rs`).
    pub fn files<'a>(&'a self, single: &'a str) -> Vec<(&'a str, &'a str)> {
        match self {
            Code::Single(code) => vec![(single, code.as_str())],
            Code::Files(files) => files
                .iter()
                .map(|f| (f.name.as_str(), f.content.as_str()))
                .collect(),
        }
    }

    /// Whether the package has a file named `name`.
    pub fn has(&self, name: &str) -> bool {
        matches!(self, Code::Files(files) if files.iter().any(|f| f.name == name))
    }

    /// Checks that every file stays inside the package, as play.rust-lang.org's editor
    /// requires: a relative path of plain names (none empty or starting with `.`), no
    /// duplicates, and not `Cargo.toml` (the package's manifest is ours).
    pub fn check_paths(&self) -> Result<(), String> {
        let Code::Files(files) = self else {
            return Ok(());
        };
        if files.is_empty() {
            return Err("`code` lists no files".into());
        }
        if files.len() > MAX_FILES {
            return Err(format!(
                "`code` lists {} files; the limit is {MAX_FILES}",
                files.len()
            ));
        }
        for (i, file) in files.iter().enumerate() {
            let name = &file.name;
            let plain = |part: &str| {
                !part.is_empty()
                    && !part.starts_with('.')
                    && part
                        .chars()
                        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '))
            };
            if !name.split('/').all(plain) {
                return Err(format!(
                    "the file name `{}` is not a path inside the package (use names like `src/utils.rs`)",
                    name.escape_debug()
                ));
            }
            if name == "Cargo.toml" || name == "Cargo.lock" {
                return Err(format!("`{name}` is the server's; it cannot be replaced"));
            }
            if files[..i].iter().any(|f| {
                f.name == *name
                    || f.name.starts_with(&format!("{name}/"))
                    || name.starts_with(&format!("{}/", f.name))
            }) {
                return Err(format!("the file `{name}` is listed twice"));
            }
        }
        Ok(())
    }

    /// Feeds the code into a hash: a single source as its length and bytes, as before files
    /// existed, and a list behind a marker no length can equal.
    pub fn hash_into(&self, mut update: impl FnMut(&[u8])) {
        match self {
            Code::Single(code) => {
                update(&(code.len() as u64).to_le_bytes());
                update(code.as_bytes());
            }
            Code::Files(files) => {
                update(&u64::MAX.to_le_bytes());
                for part in files.iter().flat_map(|f| [&f.name, &f.content]) {
                    update(&(part.len() as u64).to_le_bytes());
                    update(part.as_bytes());
                }
            }
        }
    }

    /// Writes the files under `dir`; `single` names a single source. Paths were checked by
    /// [`Self::check_paths`].
    pub fn write_to(&self, dir: &Path, single: &str) -> std::io::Result<()> {
        for (name, content) in self.files(single) {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, content)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Code {
        Code::Files(
            names
                .iter()
                .map(|n| SourceFile {
                    name: n.to_string(),
                    content: "fn f() {}".into(),
                })
                .collect(),
        )
    }

    #[test]
    fn paths_stay_inside_the_package() {
        assert_eq!(
            files(&["src/main.rs", "src/foo/mod.rs", "src/foo/bar.rs"]).check_paths(),
            Ok(())
        );
        for bad in [
            "../x.rs",
            "/etc/passwd",
            "src/../../x.rs",
            "src//a.rs",
            "src/.hidden.rs",
            "src\\a.rs",
            "",
            "a\0b",
        ] {
            assert!(files(&[bad]).check_paths().is_err(), "{bad:?}");
        }
        assert!(files(&["src/a.rs", "src/a.rs"]).check_paths().is_err());
        assert!(files(&["src/a", "src/a/b.rs"]).check_paths().is_err());
        assert!(files(&["Cargo.toml"]).check_paths().is_err());
    }

    #[test]
    fn json_is_a_string_or_a_list() {
        let single: Code = serde_json::from_str(r#""fn main() {}""#).unwrap();
        assert_eq!(single, Code::from("fn main() {}"));
        let list: Code =
            serde_json::from_str(r#"[{"name": "src/main.rs", "content": "fn main() {}"}]"#)
                .unwrap();
        assert_eq!(list.files("x"), vec![("src/main.rs", "fn main() {}")]);
    }
}
