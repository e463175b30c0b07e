//! `POST /execute` (our API, a superset of play.rust-lang.org's) and `POST /evaluate.json`
//! (its legacy API, still sent by mdBook's Run buttons).

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, header};
use serde::{Deserialize, Serialize};

use super::client::Client;
use super::error::ApiError;
use super::metrics::Metrics;
use crate::build::{Code, CompileOptions, CrateKind, Edition, Emit, Mode};
use crate::pipeline::{ExecuteRequest, ExecutionOutput, Playground};
use crate::run::Status;

/// The JSON form of `/execute`'s request, a superset of play.rust-lang.org's. Unknown fields
/// are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecuteBody {
    code: Option<Code>,
    stdin: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(flatten)]
    options: OptionFields,
}

pub(super) async fn execute(
    State(playground): State<Arc<Playground>>,
    State(metrics): State<Arc<Metrics>>,
    Client(client): Client,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Extension<Logged>, Json<ExecutionOutput>), ApiError> {
    let body = body.map_err(ApiError::from_rejection)?;
    let request = ExecuteRequest {
        client,
        ..parse_execute(&headers, &body)?
    };
    let out = playground.execute(request).await?;
    Ok((record_execution(&metrics, &out), Json(out)))
}

/// Marks a response whose request already has its log line (the execution's), so that `track`
/// writes no second one.
#[derive(Clone, Copy)]
pub(super) struct Logged;

/// Metrics and the one log line of an execution (never the program's source or output).
pub(super) fn record_execution(metrics: &Metrics, out: &ExecutionOutput) -> Extension<Logged> {
    metrics.observe_execution(out);
    tracing::info!(
        status = ?out.status,
        exit_code = ?out.exit_code,
        queue_ms = out.timings.queue_ms,
        compile_ms = out.timings.compile_ms,
        run_ms = out.timings.run_ms,
        cached = out.timings.cached,
        cache = out.timings.source.map_or("-", |s| s.as_str()),
        fuel = out.fuel_consumed,
        "execution finished"
    );
    Extension(Logged)
}

/// A JSON body when the client says so; any other body is the program's source.
fn parse_execute(headers: &HeaderMap, body: &[u8]) -> Result<ExecuteRequest, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !is_json {
        let code = std::str::from_utf8(body)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid UTF-8: {e}")))?;
        return Ok(ExecuteRequest {
            code: code.into(),
            ..Default::default()
        });
    }
    if body.is_empty() {
        return Err(ApiError::bad_request("the JSON body is empty"));
    }
    execute_request_from_json(body)
}

/// Parses `/execute`'s JSON request (also the `run` message of `/live`).
pub(super) fn execute_request_from_json(
    body: impl AsRef<[u8]>,
) -> Result<ExecuteRequest, ApiError> {
    let parsed: ExecuteBody = serde_json::from_slice(body.as_ref())
        .map_err(|e| ApiError::bad_request(format!("Unable to deserialize request: {e}")))?;
    let opts = compile_options(&parsed.options)?;
    Ok(ExecuteRequest {
        code: parsed.code.unwrap_or_default(),
        channel: opts.channel,
        edition: opts.edition,
        mode: opts.mode,
        kind: opts.kind,
        backtrace: opts.backtrace,
        args: parsed.args,
        stdin: parsed.stdin.unwrap_or_default(),
        ..Default::default()
    })
}

/// Fields shared by `/execute`, `/compile`, `/clippy` and `/format`, as play.rust-lang.org
/// names them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct OptionFields {
    channel: Option<String>,
    edition: Option<String>,
    mode: Option<String>,
    pub(super) crate_type: Option<String>,
    #[serde(default)]
    tests: bool,
    /// A panic prints a stack backtrace (`RUST_BACKTRACE=1`).
    #[serde(default)]
    backtrace: bool,
}

pub(super) fn compile_options(fields: &OptionFields) -> Result<CompileOptions, ApiError> {
    let bad = ApiError::bad_request;
    const LIBRARIES: [&str; 5] = ["lib", "rlib", "dylib", "cdylib", "staticlib"];
    let kind = match (fields.tests, fields.crate_type.as_deref()) {
        (true, Some("proc-macro")) => CrateKind::ProcMacroTests,
        (false, Some("proc-macro")) => CrateKind::ProcMacro,
        (true, Some(t)) if LIBRARIES.contains(&t) => CrateKind::LibraryTests,
        (true, _) => CrateKind::Tests,
        (false, None | Some("bin")) => CrateKind::Program,
        (false, Some(t)) if LIBRARIES.contains(&t) => CrateKind::Library,
        (false, Some(other)) => {
            return Err(bad(format!(
                "unknown crateType `{other}`, expected bin or lib"
            )));
        }
    };
    Ok(CompileOptions {
        channel: fields
            .channel
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(bad)?
            .unwrap_or_default(),
        edition: fields
            .edition
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(bad)?
            .unwrap_or_default(),
        mode: fields
            .mode
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(bad)?
            .unwrap_or_default(),
        kind,
        emit: Emit::Link,
        backtrace: fields.backtrace,
    })
}

/// play.rust-lang.org's legacy request, still sent by mdBook's Run buttons.
#[derive(Deserialize)]
struct EvaluateBody {
    code: String,
    /// The channel: `stable`.
    version: Option<String>,
    /// `"0"` is debug; anything else is release.
    optimize: Option<String>,
    /// Empty or missing means 2015, as on the old playground.
    edition: Option<String>,
    #[serde(default)]
    tests: bool,
}

/// `result` is what the program printed (stdout, then stderr) or, when it did not compile, the
/// compiler's output, which `error` also carries (it is `null` otherwise).
#[derive(Serialize)]
pub(super) struct EvaluateResponse {
    result: String,
    error: Option<String>,
}

pub(super) async fn evaluate(
    State(playground): State<Arc<Playground>>,
    State(metrics): State<Arc<Metrics>>,
    Client(client): Client,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Extension<Logged>, Json<EvaluateResponse>), ApiError> {
    let body = body.map_err(ApiError::from_rejection)?;
    let parsed: EvaluateBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Unable to deserialize request: {e}")))?;
    let channel = parsed
        .version
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(ApiError::bad_request)?
        .unwrap_or_default();
    let edition = match parsed.edition.as_deref() {
        None | Some("") => Edition::E2015,
        Some(e) => e.parse().map_err(ApiError::bad_request)?,
    };
    let mode = match parsed.optimize.as_deref() {
        None | Some("0") => Mode::Debug,
        Some(_) => Mode::Release,
    };
    let request = ExecuteRequest {
        code: parsed.code.into(),
        channel,
        edition,
        mode,
        kind: if parsed.tests {
            CrateKind::Tests
        } else {
            CrateKind::Program
        },
        client,
        ..Default::default()
    };
    let out = playground.execute(request).await?;
    let logged = record_execution(&metrics, &out);
    let response = if out.status == Status::CompileError {
        EvaluateResponse {
            result: out.compiler_output.clone(),
            error: Some(out.compiler_output),
        }
    } else {
        let mut result = out.stdout;
        // The program's own stderr: the old API never showed the compiler's warnings.
        let stderr = out.stderr.strip_prefix(out.compiler_output.as_str());
        result.push_str(stderr.unwrap_or(&out.stderr));
        if out.exit_code.is_none() {
            result.push_str(&format!("{}\n", out.exit_detail));
        }
        EvaluateResponse {
            result,
            error: None,
        }
    };
    Ok((logged, Json(response)))
}
