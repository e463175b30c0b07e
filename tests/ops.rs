//! What operators use: health, readiness, metrics, structured logs.

mod common;

use common::{ServerProcess, client, run_on};
use serde_json::{Value, json};
use wasm_playground::config::Config;

async fn get(url: String) -> (u16, String) {
    let resp = client().get(url).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn health_and_readiness() {
    let srv = common::start(Config::default());
    let (status, body) = get(format!("{}/healthz", srv.url)).await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, body) = get(format!("{}/readyz", srv.url)).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], true);
    assert_eq!(v["redis"], "off");
    let names: Vec<_> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[..2], ["toolchain", "sandbox"]);
    assert!(
        names.ends_with(&["crates", "workDir", "queue", "shares"]),
        "{names:?}"
    );

    // No room in the queue: not ready.
    let full = common::start(Config {
        queue_limit: 0,
        ..Config::default()
    });
    let (status, body) = get(format!("{}/readyz", full.url)).await;
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false);
    let queue = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "queue")
        .unwrap();
    assert_eq!(queue["ok"], false);
}

#[tokio::test]
async fn metrics_count_requests_and_outcomes() {
    let srv = common::start(Config {
        fuel: 100_000,
        ..Config::default()
    });
    run_on(&srv, json!({"code": "fn main() { println!(\"hi\"); }"})).await;
    run_on(&srv, json!({"code": "fn main() { loop {} }"})).await;
    run_on(&srv, json!({"code": "fn main() { let x: u8 = \"\"; }"})).await;
    let (status, text) = get(format!("{}/metrics", srv.url)).await;
    assert_eq!(status, 200);
    for line in [
        "wasm_playground_executions_total{status=\"ok\"} 1",
        "wasm_playground_executions_total{status=\"outOfFuel\"} 1",
        "wasm_playground_executions_total{status=\"compileError\"} 1",
        "wasm_playground_http_requests_total{route=\"/execute\",status=\"200\"} 3",
        "wasm_playground_compile_seconds_count 3",
        "wasm_playground_run_seconds_count 2",
        "wasm_playground_queue_depth{stage=\"compile\"} 0",
        "wasm_playground_rejected_total 0",
        "wasm_playground_artifact_cache_entries 3",
        "wasm_playground_artifact_cache_total{result=\"miss\"} 3",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    let fuel: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("wasm_playground_fuel_consumed_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(fuel >= 100_000, "{fuel}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("wasm_playground_artifact_cache_disk_bytes ")),
        "{text}"
    );
    // Without --redis-url there are no Redis series.
    assert!(!text.contains("redis"), "{text}");
}

#[tokio::test]
async fn json_logs_have_one_line_per_request_without_source_or_output() {
    let server = ServerProcess::spawn(&["--log-format", "json"], &[]);
    let code = "fn main() { println!(\"SECRET-OUTPUT-42\"); } // SECRET-SOURCE-42";
    let resp = client()
        .post(format!("{}/execute", server.server.url))
        .header("x-request-id", "req-test-1")
        .body(code)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "req-test-1");
    for path in ["/healthz", "/meta/versions"] {
        let resp = client()
            .get(format!("{}{path}", server.server.url))
            .header("x-request-id", format!("req-test{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // The lines are written before the responses are sent; the test reads them from the
    // server's stderr on another thread, so it waits for them.
    let lines = |log: &str| -> Vec<Value> {
        log.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["level"] == "INFO" && v["span"]["id"].is_string())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let log = loop {
        let log = server.log.lock().unwrap().clone();
        if lines(&log).len() >= 2 || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        !log.contains("SECRET-OUTPUT-42") && !log.contains("SECRET-SOURCE-42"),
        "{log}"
    );
    // One line per request at info: the execution's (with its outcome), the other request's;
    // the health probe only at debug.
    let lines = lines(&log);
    assert_eq!(lines.len(), 2, "{log}");
    let line = &lines[0];
    assert_eq!(line["fields"]["message"], "execution finished");
    assert_eq!(line["fields"]["status"], "Ok");
    assert_eq!(line["span"]["id"], "req-test-1");
    assert!(line["fields"]["compile_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(line["fields"]["cached"], false);
    assert_eq!(line["fields"]["cache"], "built");
    let line = &lines[1];
    assert_eq!(line["fields"]["message"], "request finished");
    assert_eq!(line["fields"]["route"], "/meta/versions");
    assert_eq!(line["fields"]["status"], 200);
    assert_eq!(line["span"]["id"], "req-test/meta/versions");
}
