//! The playground page, embedded so the binary works offline and stays one file.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

/// The playground page, embedded so the binary works offline and stays one file.
pub(super) async fn index() -> Html<&'static str> {
    Html(include_str!("../../web/index.html"))
}

const CSS: &str = "text/css; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

pub(super) async fn style() -> Response {
    asset(CSS, include_str!("../../web/style.css"))
}

pub(super) async fn editor_js() -> Response {
    asset(JAVASCRIPT, include_str!("../../web/editor.js"))
}

pub(super) async fn app_js() -> Response {
    asset(JAVASCRIPT, include_str!("../../web/app.js"))
}

/// One embedded file of the page, with its content type.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

pub(super) async fn hello() -> &'static str {
    "Hello, world!\n"
}
