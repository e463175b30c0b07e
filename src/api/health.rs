//! `GET /healthz` and `GET /readyz`: is this instance up, and can it take on a compile now?

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::gist::Sharing;
use crate::pipeline::Playground;

/// `GET /healthz`: the process is up and serving.
pub(super) async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when compiles can be taken on, 503 (with the failing checks) otherwise.
pub(super) async fn readyz(
    State(playground): State<Arc<Playground>>,
    State(sharing): State<Arc<Sharing>>,
) -> Response {
    let mut checks = readiness(&playground);
    // Informational, as Redis: without its store the replica still runs programs.
    let shares = sharing.store().status().await;
    checks.push(Check {
        name: "shares",
        ok: true,
        detail: shares.detail,
    });
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
    let shares = if shares.up { "up" } else { "down" };
    let body = serde_json::json!({
        "ready": ready,
        "redis": redis,
        "shares": shares,
        "checks": checks,
    });
    (status, Json(body)).into_response()
}

/// One named check of `/readyz`.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// The toolchain and wasm target are there, the sandbox is on (or was explicitly waived), the
/// work dir is writable, and the compile queue has room. The shared Redis cache, when
/// configured, is listed as up or down but never makes the replica unready.
pub fn readiness(playground: &Playground) -> Vec<Check> {
    let config = playground.config();
    let mut checks = Vec::new();
    for (channel, compiler) in playground.compilers() {
        let toolchain = compiler.toolchain();
        let target = toolchain.sysroot.join("lib/rustlib/wasm32-wasip1/lib");
        checks.push(Check {
            name: "toolchain",
            ok: toolchain.rustc.is_file() && target.is_dir(),
            detail: format!("{}: {}", channel.as_str(), toolchain.version),
        });
        checks.push(Check {
            name: "sandbox",
            ok: compiler.sandbox_enforced() || config.insecure_unsandboxed_compile,
            detail: if compiler.sandbox_enforced() {
                "landlock, rlimits, seccomp".into()
            } else {
                "disabled by --insecure-unsandboxed-compile".into()
            },
        });
    }
    // Informational: without the crates, programs still run with `std` only.
    let crates = playground.crates().len();
    checks.push(Check {
        name: "crates",
        ok: true,
        detail: if crates == 0 {
            "none offered (run `wasm-playground build-crates`)".into()
        } else {
            format!("{crates} offered")
        },
    });
    let work_dir = config.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let writable = tempfile::Builder::new()
        .prefix("wasm-playground-ready-")
        .tempfile_in(&work_dir);
    checks.push(Check {
        name: "workDir",
        ok: writable.is_ok(),
        detail: match writable {
            Ok(_) => "writable".into(),
            Err(e) => format!("not writable: {}", e.kind()),
        },
    });
    let (compiles, _) = playground.queued();
    checks.push(Check {
        name: "queue",
        ok: compiles < config.queue_limit,
        detail: format!("{compiles} of {} places taken", config.queue_limit),
    });
    if let Some((up, detail)) = playground.cache().shared_status() {
        // Informational: the replica serves without Redis, so this never fails readiness.
        checks.push(Check {
            name: "redis",
            ok: true,
            detail: if up {
                detail
            } else {
                format!("down: {detail}")
            },
        });
    }
    checks
}
