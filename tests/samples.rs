//! Every program in `tests/fixtures/samples` (copied from `../shared/samples`) must behave as
//! its native build does: same stdout byte for byte, same exit code, stderr lines in order.

mod common;

use std::path::Path;

use serde_json::{Value, json};

#[tokio::test]
async fn samples_match_native_behaviour() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/samples");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            (path.extension()? == "rs")
                .then(|| path.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    assert!(names.len() >= 15, "samples missing: {names:?}");
    let runs = names.iter().map(|name| {
        let dir = &dir;
        async move {
            let code = std::fs::read_to_string(dir.join(format!("{name}.rs"))).unwrap();
            let expected: Value = serde_json::from_str(
                &std::fs::read_to_string(dir.join(format!("{name}.expected"))).unwrap(),
            )
            .unwrap();
            let stdin = expected["stdin"].as_str().unwrap_or_default();
            let got = common::run_on(common::server(), json!({"code": code, "stdin": stdin})).await;
            (name, expected, got)
        }
    });
    for (name, expected, got) in futures::future::join_all(runs).await {
        assert_eq!(
            got["stdout"], expected["stdout"],
            "{name}: stdout differs: {got}"
        );
        assert_eq!(
            got["exitCode"], expected["exitCode"],
            "{name}: exit code differs: {got}"
        );
        let stderr = got["stderr"].as_str().unwrap();
        let mut rest = stderr;
        for line in expected["stderrContains"].as_array().unwrap() {
            let line = line.as_str().unwrap();
            let at = rest
                .find(line)
                .unwrap_or_else(|| panic!("{name}: stderr lacks {line:?} (in order): {stderr:?}"));
            rest = &rest[at + line.len()..];
        }
        let status = if expected["exitCode"] == 0 {
            "ok"
        } else {
            "runtimeError"
        };
        assert_eq!(got["status"], status, "{name}");
    }
}
