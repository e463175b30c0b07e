//! The HTTP API: an axum router over a shared [`Playground`].
//!
//! Every error is JSON (`{"error": "..."}`) with a precise status: 400 for a request we cannot
//! understand, 413 for one over a size limit, 500 only when the service itself failed.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, FromRef, MatchedPath, State};
use axum::http::{HeaderMap, HeaderName, Request, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tower_http::cors::CorsLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::compile::{CompileOptions, CrateKind, Edition, Emit, Mode};
use crate::disasm::Flavor;
use crate::metrics::Metrics;
use crate::playground::{
    ExecuteRequest, ExecutionOutput, Playground, PlaygroundError, Target, ToolOutput,
};
use crate::runner::Status;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every handler can reach.
#[derive(Clone)]
struct AppState {
    playground: Arc<Playground>,
    metrics: Arc<Metrics>,
}

impl FromRef<AppState> for Arc<Playground> {
    fn from_ref(state: &AppState) -> Self {
        state.playground.clone()
    }
}

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}

/// The application's router, ready to serve.
pub fn app(playground: Arc<Playground>) -> Result<Router, prometheus::Error> {
    let body_limit = playground.config().body_limit;
    let state = AppState {
        playground,
        metrics: Arc::new(Metrics::new()?),
    };
    Ok(Router::new()
        .route("/", get(index))
        .route("/static/style.css", get(style))
        .route("/static/editor.js", get(editor_js))
        .route("/static/app.js", get(app_js))
        .route("/hello", get(hello))
        .route("/execute", post(execute))
        .route("/evaluate.json", post(evaluate))
        .route("/format", post(format))
        .route("/clippy", post(clippy))
        .route("/compile", post(compile))
        .route("/meta/versions", get(versions))
        .route("/meta/crates", get(crates).post(crates))
        .route("/live", get(live))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .fallback(not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CorsLayer::permissive())
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", id, method = %req.method(), path = %req.uri().path())
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid)))
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    playground: Arc<Playground>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app(playground).map_err(std::io::Error::other)?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The playground page, embedded so the binary works offline and stays one file.
async fn index() -> Html<&'static str> {
    Html(include_str!("../web/index.html"))
}

/// Upgrades to the WebSocket protocol of [`crate::live`].
async fn live(
    ws: WebSocketUpgrade,
    State(playground): State<Arc<Playground>>,
    State(metrics): State<Arc<Metrics>>,
) -> Response {
    ws.on_upgrade(move |socket| crate::live::session(socket, playground, metrics))
}

/// Counts every routed request by route template and status.
async fn track(
    State(metrics): State<Arc<Metrics>>,
    route: MatchedPath,
    req: Request<axum::body::Body>,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let (route, status, secs) = (
        route.as_str(),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    metrics.observe_request(route, status, secs);
    // One line per request: executions wrote theirs (with the outcome); probes and scrapes,
    // which come every few seconds, only at debug.
    let ms = secs * 1000.0;
    if response.extensions().get::<Logged>().is_none() {
        if matches!(route, "/healthz" | "/readyz" | "/metrics") {
            tracing::debug!(route, status, ms, "request finished");
        } else {
            tracing::info!(route, status, ms, "request finished");
        }
    }
    response
}

/// `GET /healthz`: the process is up and serving.
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when compiles can be taken on, 503 (with the failing checks) otherwise.
async fn readyz(State(playground): State<Arc<Playground>>) -> Response {
    let checks = crate::health::readiness(&playground);
    let ready = checks.iter().all(|c| c.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // Redis down is reported but not a reason to take the replica out of the load balancer:
    // it serves from its local cache.
    let redis = match playground.cache().shared_status() {
        None => "off",
        Some((true, _)) => "up",
        Some((false, _)) => "down",
    };
    let body = serde_json::json!({ "ready": ready, "redis": redis, "checks": checks });
    (status, Json(body)).into_response()
}

/// `GET /metrics` in Prometheus' text format.
async fn metrics(
    State(playground): State<Arc<Playground>>,
    State(metrics): State<Arc<Metrics>>,
) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(&playground),
    )
        .into_response()
}

const CSS: &str = "text/css; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

async fn style() -> Response {
    asset(CSS, include_str!("../web/style.css"))
}

async fn editor_js() -> Response {
    asset(JAVASCRIPT, include_str!("../web/editor.js"))
}

async fn app_js() -> Response {
    asset(JAVASCRIPT, include_str!("../web/app.js"))
}

/// One embedded file of the page, with its content type.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn hello() -> &'static str {
    "Hello, world!\n"
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

/// The JSON form of `/execute`'s request, a superset of play.rust-lang.org's. Unknown fields
/// (e.g. its `backtrace`) are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecuteBody {
    code: Option<String>,
    stdin: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(flatten)]
    options: OptionFields,
}

async fn execute(
    State(playground): State<Arc<Playground>>,
    State(metrics): State<Arc<Metrics>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Extension<Logged>, Json<ExecutionOutput>), ApiError> {
    let body = body.map_err(ApiError::from_rejection)?;
    let request = parse_execute(&headers, &body)?;
    let out = playground.execute(request).await?;
    Ok((record_execution(&metrics, &out), Json(out)))
}

/// Marks a response whose request already has its log line (the execution's), so that `track`
/// writes no second one.
#[derive(Clone, Copy)]
pub(crate) struct Logged;

/// Metrics and the one log line of an execution (never the program's source or output).
pub(crate) fn record_execution(metrics: &Metrics, out: &ExecutionOutput) -> Extension<Logged> {
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
            code: code.to_string(),
            ..Default::default()
        });
    }
    if body.is_empty() {
        return Err(ApiError::bad_request("the JSON body is empty"));
    }
    execute_request_from_json(body)
}

/// Parses `/execute`'s JSON request (also the `run` message of `/live`).
pub fn execute_request_from_json(body: impl AsRef<[u8]>) -> Result<ExecuteRequest, ApiError> {
    let parsed: ExecuteBody = serde_json::from_slice(body.as_ref())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let opts = compile_options(&parsed.options)?;
    Ok(ExecuteRequest {
        code: parsed.code.unwrap_or_default(),
        channel: opts.channel,
        edition: opts.edition,
        mode: opts.mode,
        kind: opts.kind,
        args: parsed.args,
        stdin: parsed.stdin.unwrap_or_default(),
    })
}

/// Fields shared by `/execute`, `/compile`, `/clippy` and `/format`, as play.rust-lang.org
/// names them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OptionFields {
    channel: Option<String>,
    edition: Option<String>,
    mode: Option<String>,
    crate_type: Option<String>,
    #[serde(default)]
    tests: bool,
}

fn compile_options(fields: &OptionFields) -> Result<CompileOptions, ApiError> {
    let bad = ApiError::bad_request;
    let kind = match (fields.tests, fields.crate_type.as_deref()) {
        (true, _) => CrateKind::Tests,
        (false, None | Some("bin")) => CrateKind::Program,
        (false, Some("lib" | "rlib" | "dylib" | "cdylib" | "staticlib" | "proc-macro")) => {
            CrateKind::Library
        }
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
    })
}

/// The request of `/format`, `/clippy` and `/compile`.
#[derive(Deserialize)]
struct ToolBody {
    code: String,
    /// `/compile` only.
    target: Option<String>,
    /// `/compile` with `target: "asm"` only: `att` (default) or `intel`.
    #[serde(rename = "assemblyFlavor")]
    assembly_flavor: Option<String>,
    #[serde(flatten)]
    options: OptionFields,
}

/// Parses a JSON tool request.
fn parse_tool(body: Result<Bytes, BytesRejection>) -> Result<(ToolBody, CompileOptions), ApiError> {
    let body = body.map_err(ApiError::from_rejection)?;
    let parsed: ToolBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let opts = compile_options(&parsed.options)?;
    Ok((parsed, opts))
}

async fn format(
    State(playground): State<Arc<Playground>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ToolOutput>, ApiError> {
    let (req, opts) = parse_tool(body)?;
    Ok(Json(playground.format(&req.code, opts).await?))
}

async fn clippy(
    State(playground): State<Arc<Playground>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ToolOutput>, ApiError> {
    let (req, opts) = parse_tool(body)?;
    Ok(Json(playground.clippy(&req.code, opts).await?))
}

async fn compile(
    State(playground): State<Arc<Playground>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ToolOutput>, ApiError> {
    let (req, opts) = parse_tool(body)?;
    let target: Target = req
        .target
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("`target` is missing"))?
        .parse()
        .map_err(ApiError::bad_request)?;
    let flavor: Flavor = match req.assembly_flavor.as_deref() {
        Some(flavor) => flavor.parse().map_err(ApiError::bad_request)?,
        None => Flavor::default(),
    };
    Ok(Json(
        playground
            .compile_to(&req.code, opts, target, flavor)
            .await?,
    ))
}

/// `GET /meta/crates` (and `POST`, which mdBook's `book.js` sends): the crates a program may use.
/// `{crates: [{name, version, id}]}` as play.rust-lang.org answers (`id` is the name a program
/// uses); mdBook asks for this list before it shows Run buttons.
async fn crates(State(playground): State<Arc<Playground>>) -> Json<serde_json::Value> {
    let crates: Vec<_> = playground
        .crates()
        .iter()
        .map(|c| serde_json::json!({ "name": c.name, "version": c.version, "id": c.id }))
        .collect();
    Json(serde_json::json!({ "crates": crates }))
}

/// `GET /meta/versions`, in play.rust-lang.org's shape, for each available channel.
async fn versions(State(playground): State<Arc<Playground>>) -> Json<serde_json::Value> {
    let describe = |line: Option<&str>| {
        line.map(|line| {
            // "rustc 1.95.0 (59807616e 2026-04-14)"
            let mut words = line.split_whitespace().skip(1);
            let version = words.next().unwrap_or_default();
            let hash = words.next().unwrap_or_default().trim_start_matches('(');
            let date = words.next().unwrap_or_default().trim_end_matches(')');
            serde_json::json!({ "version": version, "hash": hash, "date": date })
        })
    };
    let mut versions = serde_json::Map::new();
    for (channel, compiler) in playground.compilers() {
        let toolchain = compiler.toolchain();
        versions.insert(
            channel.as_str().into(),
            serde_json::json!({
                "rustc": describe(Some(&toolchain.version)),
                "rustfmt": describe(toolchain.rustfmt_version.as_deref()),
                "clippy": describe(toolchain.clippy_version.as_deref()),
            }),
        );
    }
    Json(versions.into())
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
struct EvaluateResponse {
    result: String,
    error: Option<String>,
}

async fn evaluate(
    State(playground): State<Arc<Playground>>,
    State(metrics): State<Arc<Metrics>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Extension<Logged>, Json<EvaluateResponse>), ApiError> {
    let body = body.map_err(ApiError::from_rejection)?;
    let parsed: EvaluateBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
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
        code: parsed.code,
        channel,
        edition,
        mode,
        kind: if parsed.tests {
            CrateKind::Tests
        } else {
            CrateKind::Program
        },
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
        result.push_str(&out.stderr);
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

/// An error answer: a status and a JSON `{"error": message}` body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds for the `Retry-After` header of a 503.
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn from_rejection(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(status, "the request body is over the size limit");
        }
        Self::new(status, rejection.body_text())
    }
}

impl From<PlaygroundError> for ApiError {
    fn from(err: PlaygroundError) -> Self {
        match err {
            PlaygroundError::BadRequest(message) => Self::bad_request(message),
            PlaygroundError::TooLarge(message) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, message),
            PlaygroundError::Overloaded(overloaded) => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: overloaded.to_string(),
                retry_after: Some(overloaded.retry_after.as_secs().max(1)),
            },
            internal => {
                tracing::error!(error = %internal, "internal failure");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, internal.to_string())
            }
        }
    }
}

impl ApiError {
    /// The same answer as a `/live` message: the HTTP status it would have had, and for a 503
    /// the seconds to wait, so a client can treat both transports alike.
    pub(crate) fn live_message(&self) -> serde_json::Value {
        let mut message = serde_json::json!({
            "type": "error",
            "error": self.message,
            "status": self.status.as_u16(),
        });
        if let Some(secs) = self.retry_after {
            message["retryAfter"] = secs.into();
        }
        message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        let mut response = (self.status, body).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}
