//! Shares: programs kept under a short id, for `/meta/gist` and the page's `/?gist=ID` links.
//!
//! Owns the share store: its two back ends, their schemas, the ids and the total size cap.
//! It knows nothing of HTTP or of clients (the API checks the code limit and the per-client
//! rate) and uses only [`config`](crate::config).
//!
//! - this file: [`ShareStore`], [`Share`], the ids, the errors;
//! - [`sqlite`]: the default back end, a file in the data directory;
//! - [`postgres`]: the back end for several replicas.
//!
//! A share's id is a prefix of the SHA-256 of its content, so the same content gets the same
//! id on every replica without asking anyone, and ids say nothing about when or how many shares
//! were made. A longer prefix is used only when a shorter one is taken by other content.

mod postgres;
mod sqlite;

use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;

/// A shared program and the options its link carries (as given; the API checks them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub code: Code,
    pub channel: Option<String>,
    pub mode: Option<String>,
    pub edition: Option<String>,
}

/// One program, or the files of a package (play.rust-lang.org's multi-file `code`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Code {
    Single(String),
    Files(Vec<File>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct File {
    pub name: String,
    pub content: String,
}

impl Code {
    /// Bytes of text: the program, or every file's name and content.
    pub fn len(&self) -> usize {
        match self {
            Code::Single(code) => code.len(),
            Code::Files(files) => files.iter().map(|f| f.name.len() + f.content.len()).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Code::Single(code) => code.trim().is_empty(),
            Code::Files(files) => files.iter().all(|f| f.content.trim().is_empty()),
        }
    }
}

/// A share as the database holds it: the code as JSON text, the options as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Stored {
    code: String,
    channel: Option<String>,
    mode: Option<String>,
    edition: Option<String>,
}

impl Stored {
    fn new(share: &Share) -> Result<Self, serde_json::Error> {
        Ok(Self {
            code: serde_json::to_string(&share.code)?,
            channel: share.channel.clone(),
            mode: share.mode.clone(),
            edition: share.edition.clone(),
        })
    }

    fn into_share(self) -> Result<Share, serde_json::Error> {
        Ok(Share {
            code: serde_json::from_str(&self.code)?,
            channel: self.channel,
            mode: self.mode,
            edition: self.edition,
        })
    }

    /// What the share counts against the total size cap.
    fn bytes(&self) -> i64 {
        let options = [&self.channel, &self.mode, &self.edition]
            .iter()
            .map(|o| o.as_ref().map_or(0, String::len))
            .sum::<usize>();
        i64::try_from(self.code.len() + options).unwrap_or(i64::MAX)
    }
}

/// What an attempt to store a share under one id found.
#[derive(Debug, PartialEq, Eq)]
enum Inserted {
    /// Stored and committed.
    New,
    /// The same share was there already.
    Existing,
    /// Another share has this id: try a longer one.
    Taken,
    /// Storing it would pass the total size cap (nothing was written).
    Full,
}

/// Lengths of the ids tried, shortest first: 60 bits, then 96, then the whole hash.
const ID_LENGTHS: [usize; 3] = [10, 16, 43];

/// The ids a share may get: prefixes of the base64url SHA-256 of its content.
fn candidate_ids(stored: &Stored) -> Result<Vec<String>, serde_json::Error> {
    let digest = Sha256::digest(serde_json::to_vec(stored)?);
    let full = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    Ok(ID_LENGTHS.iter().map(|&n| full[..n].to_string()).collect())
}

/// Whether `id` could be a share's id (anything else is not looked up).
pub fn is_valid_id(id: &str) -> bool {
    ID_LENGTHS.contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why a share could not be stored or read. The messages are for clients: no host paths.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    #[error(
        "the share store is full ({limit} bytes of code, its limit); no new shares can be saved"
    )]
    Full { limit: u64 },
    #[error("sharing is unavailable on this server: {0}")]
    Unavailable(&'static str),
}

/// A failure of a back end (logged; clients get a [`ShareError`]).
#[derive(Debug, thiserror::Error)]
enum DbError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("PostgreSQL connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("a stored share is not valid JSON: {0}")]
    Encoding(#[from] serde_json::Error),
    #[error("the database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the schema is version {found}, newer than this build's {known}")]
    NewerSchema { found: i64, known: usize },
}

impl DbError {
    fn for_client(&self) -> ShareError {
        ShareError::Unavailable(match self {
            DbError::Timeout(_) => "the share database did not answer in time",
            DbError::Pool(_) => "the share database cannot be reached",
            DbError::Postgres(e) if e.is_closed() || e.code().is_none() => {
                "the share database cannot be reached"
            }
            _ => "the share database failed",
        })
    }
}

/// Why the service cannot start with this store configuration.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("--database-url must start with postgres:// or postgresql://")]
    Scheme,
    #[error("--database-url is not a valid PostgreSQL URL: {0}")]
    Url(tokio_postgres::Error),
    #[error("could not set up the PostgreSQL pool: {0}")]
    Pool(String),
}

/// The store's state for `/readyz`.
#[derive(Debug, Clone)]
pub struct StoreStatus {
    pub backend: &'static str,
    pub up: bool,
    /// `N shares, B of M bytes`, or why the store is down (no host paths).
    pub detail: String,
}

enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

/// The share store: SQLite in the data directory, or PostgreSQL with `--database-url`.
pub struct ShareStore {
    /// Or why the SQLite database could not be opened for writing.
    backend: Result<Backend, String>,
    max_bytes: u64,
    timeout: Duration,
}

impl ShareStore {
    /// Opens the configured store and brings its schema up to date. Fails only on a malformed
    /// `--database-url`: a store that cannot be used now is logged, reported by
    /// [`Self::status`], and answers requests with [`ShareError::Unavailable`].
    pub async fn open(config: &Config) -> Result<Self, OpenError> {
        let timeout = config.database_timeout();
        let backend = match &config.database_url {
            Some(url) => {
                let db =
                    postgres::Postgres::new(url.expose(), config.database_connections, timeout)?;
                match tokio::time::timeout(timeout, db.migrate()).await {
                    Ok(Ok(())) => tracing::info!("shares in PostgreSQL"),
                    // It may come up later: every request tries again.
                    Ok(Err(e)) => tracing::warn!(error = %e, "PostgreSQL is not usable yet"),
                    Err(_) => tracing::warn!(?timeout, "PostgreSQL did not answer yet"),
                }
                Ok(Backend::Postgres(db))
            }
            None => {
                let dir = config.data_dir();
                let db = sqlite::Sqlite::open(&dir, timeout);
                match &db {
                    Ok(_) => tracing::info!(dir = %dir.display(), "shares in SQLite"),
                    Err(why) => tracing::warn!(
                        dir = %dir.display(),
                        %why,
                        "sharing is off: the share database cannot be written"
                    ),
                }
                db.map(Backend::Sqlite)
            }
        };
        Ok(Self {
            backend,
            max_bytes: config.shares_max_bytes,
            timeout,
        })
    }

    /// Stores `share` (committed before this returns) and gives its id.
    pub async fn create(&self, share: &Share) -> Result<String, ShareError> {
        let backend = self.backend()?;
        let stored = Stored::new(share).map_err(|e| failed(e.into()))?;
        let max = i64::try_from(self.max_bytes).unwrap_or(i64::MAX);
        for id in candidate_ids(&stored).map_err(|e| failed(e.into()))? {
            let inserted = match backend {
                Backend::Sqlite(db) => db.insert(&id, &stored, max).await,
                Backend::Postgres(db) => self.bounded(db.insert(&id, &stored, max)).await,
            };
            match inserted.map_err(failed)? {
                Inserted::New | Inserted::Existing => return Ok(id),
                Inserted::Full => {
                    return Err(ShareError::Full {
                        limit: self.max_bytes,
                    });
                }
                Inserted::Taken => {}
            }
        }
        // Every prefix up to the whole SHA-256 is taken by other content.
        Err(ShareError::Unavailable("no free id for this share"))
    }

    /// The share with `id`, if there is one.
    pub async fn get(&self, id: &str) -> Result<Option<Share>, ShareError> {
        let backend = self.backend()?;
        if !is_valid_id(id) {
            return Ok(None);
        }
        let stored = match backend {
            Backend::Sqlite(db) => db.get(id).await,
            Backend::Postgres(db) => self.bounded(db.get(id)).await,
        };
        stored
            .and_then(|s| Ok(s.map(Stored::into_share).transpose()?))
            .map_err(failed)
    }

    /// Which back end, whether it answers, and how full it is.
    pub async fn status(&self) -> StoreStatus {
        let (backend, totals) = match &self.backend {
            Ok(Backend::Sqlite(db)) => ("sqlite", db.totals().await),
            Ok(Backend::Postgres(db)) => ("postgres", self.bounded(db.totals()).await),
            Err(why) => {
                return StoreStatus {
                    backend: "sqlite",
                    up: false,
                    detail: format!("sqlite: {why}"),
                };
            }
        };
        match totals {
            Ok((shares, bytes)) => StoreStatus {
                backend,
                up: true,
                detail: format!(
                    "{backend}: {shares} shares, {bytes} of {} bytes",
                    self.max_bytes
                ),
            },
            Err(e) => StoreStatus {
                backend,
                up: false,
                detail: e.to_string(),
            },
        }
    }

    fn backend(&self) -> Result<&Backend, ShareError> {
        self.backend
            .as_ref()
            .map_err(|_| ShareError::Unavailable("the share database cannot be written"))
    }

    /// `work`, given up after the database timeout (SQLite bounds its own waits).
    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or(Err(DbError::Timeout(self.timeout)))
    }
}

/// The client's error for a back end's failure, which is logged.
fn failed(e: DbError) -> ShareError {
    tracing::warn!(error = %e, "share store failed");
    e.for_client()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(code: &str) -> Share {
        Share {
            code: Code::Single(code.into()),
            channel: None,
            mode: None,
            edition: None,
        }
    }

    #[test]
    fn ids_are_short_url_safe_prefixes_of_one_hash() {
        let ids = candidate_ids(&Stored::new(&share("fn main() {}")).unwrap()).unwrap();
        assert_eq!(ids.iter().map(String::len).collect::<Vec<_>>(), ID_LENGTHS);
        assert!(ids.iter().all(|id| is_valid_id(id)), "{ids:?}");
        assert!(ids[2].starts_with(&ids[1]) && ids[1].starts_with(&ids[0]));
        let mut edition = share("fn main() {}");
        edition.edition = Some("2021".into());
        let other = candidate_ids(&Stored::new(&edition).unwrap()).unwrap();
        assert_ne!(ids[0], other[0], "the options are part of the content");
    }

    #[test]
    fn only_id_shaped_strings_are_ids() {
        assert!(is_valid_id("abcDEF-_09"));
        for id in [
            "",
            "abc",
            "abcDEF-_0",
            "abcDEF-_0/",
            "../../etc/x",
            "abcdefghi.",
        ] {
            assert!(!is_valid_id(id), "{id}");
        }
    }

    #[tokio::test]
    async fn a_taken_id_moves_the_share_to_a_longer_one() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: Some(dir.path().into()),
            ..Config::default()
        };
        let store = ShareStore::open(&config).await.unwrap();
        let wanted = share("fn main() { println!(\"wanted\"); }");
        let ids = candidate_ids(&Stored::new(&wanted).unwrap()).unwrap();
        // Other content under the shortest id, as a hash-prefix collision would leave it.
        let squatter = Stored::new(&share("fn main() {}")).unwrap();
        let Ok(Backend::Sqlite(db)) = &store.backend else {
            panic!("no SQLite store")
        };
        assert_eq!(
            db.insert(&ids[0], &squatter, i64::MAX).await.unwrap(),
            Inserted::New
        );
        assert_eq!(store.create(&wanted).await.unwrap(), ids[1]);
        assert_eq!(store.get(&ids[1]).await.unwrap(), Some(wanted.clone()));
        assert_eq!(store.create(&wanted).await.unwrap(), ids[1]);
        assert_eq!(
            store.get(&ids[0]).await.unwrap(),
            Some(share("fn main() {}"))
        );
    }
}
