//! `POST /format`, `/clippy`, `/compile`, `/miri` and `/macro-expansion`: the tools besides
//! running.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use serde::Deserialize;

use super::client::Client;
use super::error::ApiError;
use super::execute::{OptionFields, compile_options};
use crate::build::{AliasingModel, AsmView, Code, CompileOptions, CrateKind};
use crate::pipeline::{AsmOptions, Playground, Target, ToolOutput};

/// The request of every tool (play.rust-lang.org's field names).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolBody {
    code: Code,
    /// `/compile` only.
    target: Option<String>,
    /// `/compile` `asm` and `wasmtime-asm`: `att` (default) or `intel`.
    assembly_flavor: Option<String>,
    /// `/compile` `asm`: `demangle` (default) or `mangle`.
    demangle_assembly: Option<String>,
    /// `/compile` `asm`: `filter` (default) or `raw`.
    process_assembly: Option<String>,
    /// `/miri` only: `stacked` (default) or `tree`.
    aliasing_model: Option<String>,
    #[serde(flatten)]
    options: OptionFields,
}

impl ToolBody {
    fn asm_options(&self) -> Result<AsmOptions, ApiError> {
        let choice =
            |value: &Option<String>, field: &str, yes: &str, no: &str| match value.as_deref() {
                None => Ok(true),
                Some(v) if v == yes => Ok(true),
                Some(v) if v == no => Ok(false),
                Some(v) => Err(ApiError::bad_request(format!(
                    "unknown {field} `{v}`, expected {yes} or {no}"
                ))),
            };
        Ok(AsmOptions {
            flavor: match self.assembly_flavor.as_deref() {
                Some(flavor) => flavor.parse().map_err(ApiError::bad_request)?,
                None => Default::default(),
            },
            view: AsmView {
                demangle: choice(
                    &self.demangle_assembly,
                    "demangleAssembly",
                    "demangle",
                    "mangle",
                )?,
                filter: choice(&self.process_assembly, "processAssembly", "filter", "raw")?,
            },
        })
    }
}

/// Parses a JSON tool request.
fn parse_tool(body: Result<Bytes, BytesRejection>) -> Result<(ToolBody, CompileOptions), ApiError> {
    let body = body.map_err(ApiError::from_rejection)?;
    let parsed: ToolBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Unable to deserialize request: {e}")))?;
    let mut opts = compile_options(&parsed.options)?;
    opts.kind = opts.kind.for_tools();
    Ok((parsed, opts))
}

pub(super) async fn format(
    State(playground): State<Arc<Playground>>,
    Client(client): Client,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ToolOutput>, ApiError> {
    let (req, opts) = parse_tool(body)?;
    Ok(Json(playground.format(&req.code, opts, client).await?))
}

pub(super) async fn clippy(
    State(playground): State<Arc<Playground>>,
    Client(client): Client,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ToolOutput>, ApiError> {
    let (req, opts) = parse_tool(body)?;
    Ok(Json(playground.clippy(&req.code, opts, client).await?))
}

pub(super) async fn compile(
    State(playground): State<Arc<Playground>>,
    Client(client): Client,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ToolOutput>, ApiError> {
    let (req, opts) = parse_tool(body)?;
    let target: Target = req
        .target
        .as_deref()
        .ok_or_else(|| ApiError::bad_request("`target` is missing"))?
        .parse()
        .map_err(ApiError::bad_request)?;
    let asm = req.asm_options()?;
    Ok(Json(
        playground
            .compile_to(&req.code, opts, target, asm, client)
            .await?,
    ))
}

/// `POST /miri` `{code, edition, tests, aliasingModel}`.
pub(super) async fn miri(
    State(playground): State<Arc<Playground>>,
    Client(client): Client,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ToolOutput>, ApiError> {
    let (req, opts) = parse_tool(body)?;
    let aliasing: AliasingModel = match req.aliasing_model.as_deref() {
        Some(model) => model.parse().map_err(ApiError::bad_request)?,
        None => AliasingModel::default(),
    };
    let tests = opts.kind == CrateKind::Tests;
    Ok(Json(
        playground
            .miri(&req.code, opts.edition, tests, aliasing, client)
            .await?,
    ))
}

/// `POST /macro-expansion` `{code, edition}`: a program with a `main` expands as a binary,
/// other code as a library, unless `crateType` says.
pub(super) async fn macro_expansion(
    State(playground): State<Arc<Playground>>,
    Client(client): Client,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ToolOutput>, ApiError> {
    let (req, mut opts) = parse_tool(body)?;
    let has_main = match &req.code {
        Code::Single(code) => code.contains("fn main"),
        Code::Files(_) => req.code.has("src/main.rs"),
    };
    if req.options.crate_type.is_none() && !has_main {
        opts.kind = CrateKind::Library;
    }
    Ok(Json(
        playground
            .macro_expansion(&req.code, opts.edition, opts.kind, client)
            .await?,
    ))
}
