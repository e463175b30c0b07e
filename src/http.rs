//! The HTTP API: an axum router over a shared [`Playground`].
//!
//! Every error is JSON (`{"error": "..."}`) with a precise status: 400 for a request we cannot
//! understand, 413 for one over a size limit, 500 only when the service itself failed.

use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::net::TcpListener;
use tower_http::cors::CorsLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::playground::{ExecuteRequest, ExecutionOutput, Playground, PlaygroundError};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The application's router, ready to serve.
pub fn app(playground: Arc<Playground>) -> Router {
    let body_limit = playground.config().body_limit;
    Router::new()
        .route("/", get(index))
        .route("/static/style.css", get(style))
        .route("/static/editor.js", get(editor_js))
        .route("/static/app.js", get(app_js))
        .route("/hello", get(hello))
        .route("/execute", post(execute))
        .fallback(not_found)
        .with_state(playground)
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
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    playground: Arc<Playground>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(playground))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The playground page, embedded so the binary works offline and stays one file.
async fn index() -> Html<&'static str> {
    Html(include_str!("../web/index.html"))
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

/// The JSON form of `/execute`'s request. Unknown fields (play.rust-lang.org clients send
/// `channel`, `crateType`, `tests`, `backtrace`) are ignored.
#[derive(Deserialize)]
struct ExecuteBody {
    code: Option<String>,
    edition: Option<String>,
    mode: Option<String>,
    stdin: Option<String>,
}

async fn execute(
    State(playground): State<Arc<Playground>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ExecutionOutput>, ApiError> {
    let body = body.map_err(ApiError::from_rejection)?;
    let request = parse_execute(&headers, &body)?;
    playground
        .execute(request)
        .await
        .map(Json)
        .map_err(ApiError::from)
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
    let parsed: ExecuteBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let bad = ApiError::bad_request;
    Ok(ExecuteRequest {
        code: parsed.code.unwrap_or_default(),
        edition: parsed
            .edition
            .map(|e| e.parse())
            .transpose()
            .map_err(bad)?
            .unwrap_or_default(),
        mode: parsed
            .mode
            .map(|m| m.parse())
            .transpose()
            .map_err(bad)?
            .unwrap_or_default(),
        stdin: parsed.stdin.unwrap_or_default(),
    })
}

/// An error answer: a status and a JSON `{"error": message}` body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
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
            internal => {
                tracing::error!(error = %internal, "internal failure");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, internal.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        (self.status, body).into_response()
    }
}
