//! `GET /meta/versions` and `/meta/crates`: what this server offers, in play.rust-lang.org's
//! shapes.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use crate::pipeline::Playground;

/// `GET /meta/crates` (and `POST`, which mdBook's `book.js` sends): the crates a program may use.
/// `{crates: [{name, version, id}]}` as play.rust-lang.org answers (`id` is the name a program
/// uses); mdBook asks for this list before it shows Run buttons.
pub(super) async fn crates(State(playground): State<Arc<Playground>>) -> Json<serde_json::Value> {
    let crates: Vec<_> = playground
        .crates()
        .iter()
        .map(|c| serde_json::json!({ "name": c.name, "version": c.version, "id": c.id }))
        .collect();
    Json(serde_json::json!({ "crates": crates }))
}

/// `GET /meta/versions`, in play.rust-lang.org's shape, for each available channel.
pub(super) async fn versions(State(playground): State<Arc<Playground>>) -> Json<serde_json::Value> {
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
        let mut entry = serde_json::json!({
            "rustc": describe(Some(&toolchain.version)),
            "rustfmt": describe(toolchain.rustfmt_version.as_deref()),
            "clippy": describe(toolchain.clippy_version.as_deref()),
        });
        // play.rust-lang.org omits `miri` where it is not offered.
        if compiler.has_miri() {
            entry["miri"] = describe(toolchain.miri_version.as_deref()).into();
        }
        versions.insert(channel.as_str().into(), entry);
    }
    Json(versions.into())
}
