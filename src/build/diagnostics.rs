//! rustc's JSON messages turned into what users see: the rendered text as `cargo build` prints
//! it, and structured diagnostics for editors. Host paths never get through, and messages about
//! the entry stub are rewritten to be about the user's `main`.

use serde::{Deserialize, Serialize};

/// One structured compiler message, for editors to mark the line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostic {
    /// `error`, `warning`, `note`, `help`, ...
    pub level: String,
    /// The error code, e.g. `E0308`, or the lint name.
    pub code: Option<String>,
    pub message: String,
    /// The file of the primary span, relative to the package (`src/main.rs`,
    /// `src/shapes/mod.rs`), when it is in one of the program's files (not in std or a crate).
    pub file: Option<String>,
    /// 1-based position of the primary span in `file`.
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub end_line: Option<u32>,
    pub end_column: Option<u32>,
}

impl Diagnostic {
    /// An error with no location, for failures rustc itself could not describe.
    pub fn error(message: String) -> Self {
        Self {
            level: "error".into(),
            code: None,
            message,
            file: None,
            line: None,
            column: None,
            end_line: None,
            end_column: None,
        }
    }
}

#[derive(Deserialize)]
struct RawDiagnostic {
    message: String,
    code: Option<RawCode>,
    level: String,
    #[serde(default)]
    spans: Vec<RawSpan>,
    rendered: Option<String>,
}

#[derive(Deserialize)]
struct RawCode {
    code: String,
}

#[derive(Deserialize)]
struct RawSpan {
    file_name: String,
    line_start: u32,
    line_end: u32,
    column_start: u32,
    column_end: u32,
    is_primary: bool,
}

/// Splits rustc's JSON lines into the rendered text and structured diagnostics (located when
/// their primary span is in one of the program's files). Messages whose
/// primary span is in the entry stub are rewritten to point at the user's `main`, since the
/// stub's source means nothing to the user.
pub fn parse_diagnostics(stderr: &[u8], root: &str, stub_line: u32) -> (String, Vec<Diagnostic>) {
    let mut rendered = String::new();
    let mut diagnostics = Vec::new();
    for line in String::from_utf8_lossy(stderr).lines() {
        let Ok(mut raw) = serde_json::from_str::<RawDiagnostic>(line) else {
            // A line cut by the cap, plain text from rustfmt or from a crashing compiler (minus
            // its backtrace, which shows nothing useful and host addresses).
            if !line.trim_start().starts_with('{') && !is_backtrace_line(line) {
                rendered.push_str(&redact_text_line(line));
                rendered.push('\n');
            }
            continue;
        };
        redact_file_errors(&mut raw);
        let primary = raw
            .spans
            .iter()
            .find(|s| s.is_primary && in_package(&s.file_name));
        let in_stub = primary.is_some_and(|s| s.file_name == root && s.line_start >= stub_line);
        let code = raw.code.map(|c| c.code);
        if in_stub {
            let (message, text) = explain_stub_error(&raw.message, code.as_deref(), &raw.level);
            rendered.push_str(&text);
            diagnostics.push(Diagnostic {
                level: raw.level,
                code,
                ..Diagnostic::error(message)
            });
            continue;
        }
        if let Some(text) = &raw.rendered {
            rendered.push_str(text);
        }
        if raw.level == "failure-note" || raw.message.starts_with("aborting due to") {
            continue;
        }
        diagnostics.push(Diagnostic {
            level: raw.level,
            code,
            message: raw.message,
            file: primary.map(|s| s.file_name.clone()),
            line: primary.map(|s| s.line_start),
            column: primary.map(|s| s.column_start),
            end_line: primary.map(|s| s.line_end),
            end_column: primary.map(|s| s.column_end),
        });
    }
    (rendered, diagnostics)
}

/// Whether a span's file is one of the program's: rustc runs in the package's directory, so
/// those are the relative paths (std's and the crates' are absolute, `/rustc/...`, `/cargo/...`;
/// macros' are `<...>`), and one never names a host path.
fn in_package(file_name: &str) -> bool {
    file_name
        .split('/')
        .all(|part| !part.is_empty() && !part.starts_with(['.', '<']))
}

fn is_backtrace_line(line: &str) -> bool {
    let trimmed = line.trim_start();
    trimmed.starts_with("stack backtrace:")
        || trimmed.starts_with("at ")
        || trimmed.split_once(": ").is_some_and(|(n, rest)| {
            n.parse::<u32>().is_ok() && rest.trim_start().starts_with("0x")
        })
}

/// The message for any file the program tried to read at compile time (`include_str!`,
/// `#[path]`, ...): the sandbox denies everything outside the job dir, and the answer must not
/// tell whether a host path exists.
const FILE_DENIED: &str = "cannot read files outside the program";

fn redact_file_errors(raw: &mut RawDiagnostic) {
    if !raw.message.starts_with("couldn't read `") {
        return;
    }
    raw.message = FILE_DENIED.to_string();
    if let Some(rendered) = &mut raw.rendered {
        let rest = rendered.split_once('\n').map_or("", |(_, rest)| rest);
        *rendered = format!("{}: {FILE_DENIED}\n{rest}", raw.level);
    }
}

/// [`redact_file_errors`] for plain-text tools (rustfmt): its messages about files it could not
/// read or resolve tell whether a host path exists.
fn redact_text_line(line: &str) -> std::borrow::Cow<'_, str> {
    if line.starts_with("error: couldn't read `")
        || line.starts_with("Error writing files: failed to resolve mod")
    {
        format!("error: {FILE_DENIED}").into()
    } else {
        line.into()
    }
}

fn explain_stub_error(message: &str, code: Option<&str>, level: &str) -> (String, String) {
    if code == Some("E0425") && message.contains("`main`") {
        let message = "`main` function not found in crate `playground`".to_string();
        let text = format!(
            "error[E0601]: {message}\n  |\n  = note: consider adding a `main` function to `src/main.rs`\n\n"
        );
        return (message, text);
    }
    let header = match code {
        Some(code) => format!("{level}[{code}]: {message}"),
        None => format!("{level}: {message}"),
    };
    let text = format!(
        "{header}\n  = note: reported for the playground's call of `fn main` in `src/main.rs`\n\n"
    );
    (message.to_string(), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_errors_do_not_name_the_host_path() {
        let line = r#"{"message":"couldn't read `/etc/x`: No such file or directory (os error 2)","code":null,"level":"error","spans":[{"file_name":"src/main.rs","line_start":1,"line_end":1,"column_start":1,"column_end":5,"is_primary":true}],"rendered":"error: couldn't read `/etc/x`: No such file or directory (os error 2)\n --> src/main.rs:1:1\n"}"#;
        let (rendered, diags) = parse_diagnostics(line.as_bytes(), "src/main.rs", 9);
        assert_eq!(
            rendered,
            "error: cannot read files outside the program\n --> src/main.rs:1:1\n"
        );
        assert_eq!(diags[0].message, FILE_DENIED);
        assert_eq!(diags[0].line, Some(1));
    }

    #[test]
    fn diagnostics_in_the_stub_are_rewritten() {
        let line = r#"{"message":"cannot find function `main` in this scope","code":{"code":"E0425"},"level":"error","spans":[{"file_name":"src/main.rs","line_start":3,"line_end":3,"column_start":1,"column_end":5,"is_primary":true}],"rendered":"error[E0425]: secret stub text"}"#;
        let (rendered, diags) = parse_diagnostics(line.as_bytes(), "src/main.rs", 3);
        assert!(rendered.starts_with("error[E0601]: `main` function not found"));
        assert!(!rendered.contains("stub text"));
        assert_eq!(diags[0].line, None);
    }

    #[test]
    fn diagnostics_name_the_program_file_they_are_in_and_no_other() {
        let span = |file: &str| {
            format!(
                r#"{{"message":"m","code":null,"level":"error","spans":[{{"file_name":"{file}","line_start":2,"line_end":2,"column_start":5,"column_end":9,"is_primary":true}}],"rendered":"error: m\n"}}"#
            )
        };
        for (file, expected) in [
            ("src/main.rs", Some("src/main.rs")),
            ("src/shapes/mod.rs", Some("src/shapes/mod.rs")),
            ("/rustc/abc/library/core/src/fmt/mod.rs", None),
            ("/cargo/registry/src/rand-0.8.5/src/lib.rs", None),
            ("../outside.rs", None),
            ("<anon>", None),
        ] {
            let (_, diags) = parse_diagnostics(span(file).as_bytes(), "src/main.rs", 9);
            let place = (diags[0].file.as_deref(), diags[0].line, diags[0].column);
            let want = expected.map_or((None, None, None), |f| (Some(f), Some(2), Some(5)));
            assert_eq!(place, want, "{file}");
        }
    }
}
