//! `POST /format`, `POST /clippy` and `POST /compile`: the tools besides running.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use serde::Deserialize;

use super::error::ApiError;
use super::execute::{OptionFields, compile_options};
use crate::build::{Code, CompileOptions};
use crate::inspect::Flavor;
use crate::pipeline::{Playground, Target, ToolOutput};

/// The request of `/format`, `/clippy` and `/compile`.
#[derive(Deserialize)]
struct ToolBody {
    code: Code,
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
        .map_err(|e| ApiError::bad_request(format!("Unable to deserialize request: {e}")))?;
    let opts = compile_options(&parsed.options)?;
    Ok((parsed, opts))
}

pub(super) async fn format(
    State(playground): State<Arc<Playground>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ToolOutput>, ApiError> {
    let (req, opts) = parse_tool(body)?;
    Ok(Json(playground.format(&req.code, opts).await?))
}

pub(super) async fn clippy(
    State(playground): State<Arc<Playground>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ToolOutput>, ApiError> {
    let (req, opts) = parse_tool(body)?;
    Ok(Json(playground.clippy(&req.code, opts).await?))
}

pub(super) async fn compile(
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
