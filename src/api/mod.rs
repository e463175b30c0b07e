//! The HTTP and WebSocket API: an axum router over a shared [`Playground`].
//!
//! Owns everything about the wire: request parsing, JSON answers and errors, the page's files,
//! the live WebSocket and the operators' endpoints. It calls the [`pipeline`](crate::pipeline)
//! for all real work and may use the types of the layers below; nothing below imports it.
//!
//! Every error is JSON (`{"error": "..."}`) with a precise status: 400 for a request we cannot
//! understand, 413 for one over a size limit, 429 for a client over one of its own limits, 503
//! for a saturated server, 500 only when the service itself failed.
//!
//! - [`connections`]: the accept loop, with connection limits and header timeouts;
//! - [`client`]: who a request comes from (the peer, or what a trusted proxy reports);
//! - [`error`]: [`ApiError`] and its statuses;
//! - [`execute`]: `/execute` and mdBook's `/evaluate.json`;
//! - [`tools`]: `/format`, `/clippy`, `/compile`, `/miri`, `/macro-expansion`;
//! - [`meta`]: `/meta/versions`, `/meta/crates`;
//! - [`gist`]: `/meta/gist`, shares kept in the [`shares`](crate::shares) store;
//! - [`page`]: the playground page's embedded files;
//! - [`live`]: the `/live` WebSocket;
//! - [`websocket`]: play.rust-lang.org's WebSocket, `/websocket`, for its own frontend, which an
//!   operator may serve from a directory instead of our page (`--frontend-dir`);
//! - [`health`], [`metrics`]: `/healthz`, `/readyz` and `/metrics` for operators.

mod client;
mod connections;
mod error;
mod execute;
mod gist;
pub mod health;
mod live;
mod meta;
pub mod metrics;
mod page;
mod tools;
mod websocket;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, MatchedPath, State};
use axum::handler::HandlerWithoutStateExt;
use axum::http::{HeaderName, Method, Request, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::cors::{Any, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
use error::Rejected;
use execute::Logged;
use gist::Sharing;
use metrics::Metrics;

use crate::pipeline::Playground;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every handler can reach.
#[derive(Clone)]
struct AppState {
    playground: Arc<Playground>,
    metrics: Arc<Metrics>,
    sharing: Arc<Sharing>,
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

impl FromRef<AppState> for Arc<Sharing> {
    fn from_ref(state: &AppState) -> Self {
        state.sharing.clone()
    }
}

/// The application's router, ready to serve (with the peer's address as `ConnectInfo`). Opens
/// the share store; fails on a malformed `--database-url`.
pub async fn app(playground: Arc<Playground>) -> anyhow::Result<Router> {
    router(playground, Arc::new(Metrics::new()?)).await
}

async fn router(playground: Arc<Playground>, metrics: Arc<Metrics>) -> anyhow::Result<Router> {
    let body_limit = playground.config().body_limit;
    let body_timeout = playground.config().body_timeout();
    let frontend_dir = playground.config().frontend_dir.clone();
    let state = AppState {
        sharing: Sharing::start(playground.config()).await?,
        playground,
        metrics,
    };
    let router = Router::new()
        .route("/static/{file}", get(page::asset))
        .route("/hello", get(page::hello))
        .route("/execute", post(execute::execute))
        .route("/evaluate.json", post(execute::evaluate))
        .route("/format", post(tools::format))
        .route("/clippy", post(tools::clippy))
        .route("/compile", post(tools::compile))
        .route("/miri", post(tools::miri))
        .route("/macro-expansion", post(tools::macro_expansion))
        .route("/meta/versions", get(meta::versions))
        .route("/meta/crates", get(meta::crates).post(meta::crates))
        .route("/meta/gist", post(gist::create))
        .route("/meta/gist/", post(gist::create))
        .route("/meta/gist/{id}", get(gist::read))
        .route("/live", get(live::live))
        .route("/websocket", get(websocket::websocket))
        .route("/nowebsocket", post(websocket::nowebsocket))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), track));
    // Another frontend's files (play.rust-lang.org's: `/help` is one of its pages), or our page.
    let router = match frontend_dir {
        Some(dir) => router
            .route_service("/help", ServeFile::new(dir.join("index.html")))
            .fallback_service(
                ServeDir::new(dir)
                    .precompressed_gzip()
                    .precompressed_br()
                    .fallback(not_found.into_service()),
            ),
        None => router.route("/", get(page::index)).fallback(not_found),
    };
    Ok(router
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(cors())
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

/// Cross-origin calls (mdBook's and rust-lang.org's pages post JSON to `/evaluate.json` and
/// `/execute`) as play.rust-lang.org allows them: any origin, GET and POST, `Content-Type`, a
/// preflight cached for an hour.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(3600))
        // Every origin gets the same answer, so caches need no `Vary` (upstream sends none).
        .vary(Vec::<HeaderName>::new())
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    playground: Arc<Playground>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = Arc::new(Metrics::new().map_err(std::io::Error::other)?);
    let config = playground.config().clone();
    let app = router(playground, metrics.clone())
        .await
        .map_err(std::io::Error::other)?;
    connections::serve(listener, app, &config, metrics, shutdown).await
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
    if let Some(Rejected(limit)) = response.extensions().get::<Rejected>() {
        metrics.observe_rejection(limit);
    }
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

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}
