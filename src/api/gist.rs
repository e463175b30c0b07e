//! `POST /meta/gist` and `GET /meta/gist/{id}`: shares, in the shapes play.rust-lang.org's
//! frontend uses for its GitHub gists, kept in this server's [`ShareStore`].

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use super::client::Client;
use super::error::ApiError;
use crate::build::{Channel, Edition, Mode};
use crate::config::Config;
use crate::shares::{Code, Share, ShareStore};

/// The store, and what the API adds to it: the per-client rate and the links' base.
pub(super) struct Sharing {
    store: ShareStore,
    /// New shares per client address; `None` when unlimited.
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_minute: u32,
    code_limit: usize,
    public_url: Option<String>,
}

impl Sharing {
    /// Opens the store (see [`ShareStore::open`]) and starts forgetting idle clients' rates.
    pub(super) async fn start(config: &Config) -> anyhow::Result<Arc<Self>> {
        let store = ShareStore::open(config).await?;
        let limiter = NonZeroU32::new(config.shares_per_minute)
            .map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        let sharing = Arc::new(Self {
            store,
            limiter,
            per_minute: config.shares_per_minute,
            code_limit: config.code_limit,
            public_url: config
                .public_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_string()),
        });
        tokio::spawn(forget_idle_clients(Arc::downgrade(&sharing)));
        Ok(sharing)
    }

    pub(super) fn store(&self) -> &ShareStore {
        &self.store
    }

    /// A 429 when `client` made its quota of new shares in the last minute.
    fn admit(&self, client: IpAddr) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&client).map_err(|not_until| {
            let wait = not_until.wait_time_from(limiter.clock().now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many new shares from your address (at most {} a minute); try again in {secs} s",
                    self.per_minute
                ),
            )
            .with_retry_after(secs.max(1))
        })
    }

    /// `{id, url, code}`: `url` is the page with the share loaded, with its options.
    fn answer(&self, headers: &HeaderMap, id: String, share: Share) -> Json<GistAnswer> {
        let base = self
            .public_url
            .clone()
            .or_else(|| request_origin(headers))
            .unwrap_or_default();
        let mut query = String::new();
        for (key, value) in [
            ("version", &share.channel),
            ("mode", &share.mode),
            ("edition", &share.edition),
        ] {
            if let Some(value) = value {
                query.push_str(&format!("{key}={value}&"));
            }
        }
        Json(GistAnswer {
            url: format!("{base}/?{query}gist={id}"),
            id,
            code: share.code,
        })
    }
}

/// Drops the rate state of clients idle for a minute (their next share starts afresh), so
/// the limiter's memory follows the active clients only. Ends with the server.
async fn forget_idle_clients(sharing: Weak<Sharing>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let Some(sharing) = sharing.upgrade() else {
            return;
        };
        if let Some(limiter) = &sharing.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// `http://HOST` from the request's `Host` (`https` behind a proxy that says so), when the
/// header is a plain host name or address; without one, links are relative.
fn request_origin(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let plain = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    if !plain {
        return None;
    }
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    Some(format!("{}://{host}", if https { "https" } else { "http" }))
}

/// play.rust-lang.org sends `{code}`; our page adds the options its link should carry.
#[derive(Deserialize)]
struct CreateBody {
    code: Option<Code>,
    #[serde(alias = "channel")]
    version: Option<String>,
    mode: Option<String>,
    edition: Option<String>,
}

#[derive(Serialize)]
pub(super) struct GistAnswer {
    id: String,
    url: String,
    code: Code,
}

/// `POST /meta/gist`: stores the code (committed before the answer) and answers its id and link.
pub(super) async fn create(
    State(sharing): State<Arc<Sharing>>,
    Client(client): Client,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<GistAnswer>, ApiError> {
    let body = body.map_err(ApiError::from_rejection)?;
    let parsed: CreateBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let share = check(parsed, sharing.code_limit)?;
    sharing.admit(client.addr())?;
    let id = sharing.store.create(&share).await?;
    Ok(sharing.answer(&headers, id, share))
}

/// `GET /meta/gist/{id}`: the share, in the same shape as its creation's answer.
pub(super) async fn read(
    State(sharing): State<Arc<Sharing>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<GistAnswer>, ApiError> {
    match sharing.store.get(&id).await? {
        Some(share) => Ok(sharing.answer(&headers, id, share)),
        None if crate::shares::is_valid_id(&id) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no share with the id `{id}`"),
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no share with this id",
        )),
    }
}

/// The code limit (on all files together) and the options, which must be ones the page knows.
fn check(body: CreateBody, code_limit: usize) -> Result<Share, ApiError> {
    let code = body
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("`code` is missing or empty"))?;
    if let Code::Files(files) = &code
        && files.iter().any(|f| f.name.trim().is_empty())
    {
        return Err(ApiError::bad_request(
            "a file in `code` has an empty `name`",
        ));
    }
    if code.len() > code_limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "`code` is {} bytes; the limit is {code_limit} bytes",
                code.len()
            ),
        ));
    }
    let bad = ApiError::bad_request;
    if let Some(channel) = &body.version {
        channel.parse::<Channel>().map_err(bad)?;
    }
    if let Some(mode) = &body.mode {
        mode.parse::<Mode>().map_err(bad)?;
    }
    if let Some(edition) = &body.edition {
        edition.parse::<Edition>().map_err(bad)?;
    }
    Ok(Share {
        code,
        channel: body.version,
        mode: body.mode,
        edition: body.edition,
    })
}
