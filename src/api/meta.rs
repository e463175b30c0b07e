//! `GET /meta/versions` and `/meta/crates`: what this server offers, in play.rust-lang.org's
//! shapes.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use crate::build::Channel;
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

/// `GET /meta/versions`, in play.rust-lang.org's shape. Its frontend rejects the answer unless
/// stable, beta and nightly are all there, so a channel this server lacks is listed with the
/// version `unavailable` (and requests for it get a 400 that says why).
pub(super) async fn versions(State(playground): State<Arc<Playground>>) -> Json<serde_json::Value> {
    let describe = |line: Option<&str>| match line {
        Some(line) => {
            // "rustc 1.95.0 (59807616e 2026-04-14)"
            let mut words = line.split_whitespace().skip(1);
            let version = words.next().unwrap_or_default();
            let hash = words.next().unwrap_or_default().trim_start_matches('(');
            let date = words.next().unwrap_or_default().trim_end_matches(')');
            serde_json::json!({ "version": version, "hash": hash, "date": date })
        }
        None => serde_json::json!({ "version": "unavailable", "hash": "", "date": "" }),
    };
    let mut versions = serde_json::Map::new();
    for channel in [Channel::Stable, Channel::Beta, Channel::Nightly] {
        let compiler = playground
            .compilers()
            .find(|(c, _)| *c == channel)
            .map(|(_, compiler)| compiler);
        let toolchain = compiler.map(|c| c.toolchain());
        let mut entry = serde_json::json!({
            "rustc": describe(toolchain.map(|t| t.version.as_str())),
            "rustfmt": describe(toolchain.and_then(|t| t.rustfmt_version.as_deref())),
            "clippy": describe(toolchain.and_then(|t| t.clippy_version.as_deref())),
        });
        // play.rust-lang.org omits `miri` where it is not offered.
        if let Some(compiler) = compiler.filter(|c| c.has_miri()) {
            entry["miri"] = describe(compiler.toolchain().miri_version.as_deref());
        }
        versions.insert(channel.as_str().into(), entry);
    }
    Json(versions.into())
}
