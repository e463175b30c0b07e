//! The playground page, embedded so the binary works offline and stays one file.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::error::ApiError;

/// The playground page, embedded so the binary works offline and stays one file.
pub(super) async fn index() -> Html<&'static str> {
    Html(include_str!("../../web/index.html"))
}

const CSS: &str = "text/css; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// The page's files under `/static/`: name, content type, content. `codemirror.js` is the editor
/// bundle that `scripts/build-editor` makes (committed, so building needs no Node).
const ASSETS: &[(&str, &str, &str)] = &[
    ("style.css", CSS, include_str!("../../web/style.css")),
    ("app.js", JAVASCRIPT, include_str!("../../web/app.js")),
    ("editor.js", JAVASCRIPT, include_str!("../../web/editor.js")),
    ("files.js", JAVASCRIPT, include_str!("../../web/files.js")),
    ("tools.js", JAVASCRIPT, include_str!("../../web/tools.js")),
    (
        "codemirror.js",
        JAVASCRIPT,
        include_str!("../../web/codemirror.js"),
    ),
];

/// One embedded file of the page, with its content type.
pub(super) async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(file, _, _)| *file == name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such file"))?;
    Ok(([(header::CONTENT_TYPE, *content_type)], *body).into_response())
}

pub(super) async fn hello() -> &'static str {
    "Hello, world!\n"
}
