//! The default back end: one SQLite file in the data directory, in WAL mode.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{DbError, Inserted, Stored};

/// The database's name in the data directory.
pub const FILE: &str = "shares.sqlite3";

/// The schema, one step per version; `PRAGMA user_version` counts the steps applied.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE shares (
        id TEXT PRIMARY KEY,
        code TEXT NOT NULL,
        channel TEXT,
        mode TEXT,
        edition TEXT,
        bytes INTEGER NOT NULL,
        created_at INTEGER NOT NULL DEFAULT (unixepoch())
    );
    CREATE TABLE share_totals (
        only_row INTEGER PRIMARY KEY CHECK (only_row = 1),
        shares INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    );
    INSERT INTO share_totals VALUES (1, 0, 0);
"];

const SELECT: &str = "SELECT code, channel, mode, edition FROM shares WHERE id = ?1";

/// One connection, used by one request at a time on a blocking thread: SQLite has a single
/// writer anyway, and a share is a few milliseconds of work.
pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
}

impl Sqlite {
    /// Creates the directory (private) and the database if needed, and proves it writable: the
    /// schema check is a write transaction. The error is a sentence without the path.
    pub fn open(dir: &Path, busy_timeout: Duration) -> Result<Self, String> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("the data directory cannot be created ({})", e.kind()))?;
        let mut conn = Connection::open(dir.join(FILE))
            .map_err(|e| format!("the database cannot be opened ({})", describe(&e)))?;
        set_up(&mut conn, busy_timeout).map_err(|e| match e {
            DbError::Sqlite(e) => format!("the database cannot be written ({})", describe(&e)),
            other => other.to_string(),
        })?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub async fn insert(
        &self,
        id: &str,
        stored: &Stored,
        max_bytes: i64,
    ) -> Result<Inserted, DbError> {
        let (id, stored) = (id.to_string(), stored.clone());
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let added = tx.execute(
                "INSERT INTO shares (id, code, channel, mode, edition, bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
                params![
                    id,
                    stored.code,
                    stored.channel,
                    stored.mode,
                    stored.edition,
                    stored.bytes()
                ],
            )?;
            if added == 0 {
                let existing = tx.query_row(SELECT, [&id], stored_from_row).optional()?;
                return Ok(if existing.as_ref() == Some(&stored) {
                    Inserted::Existing
                } else {
                    Inserted::Taken
                });
            }
            let fits = tx.execute(
                "UPDATE share_totals SET shares = shares + 1, bytes = bytes + ?1
                 WHERE bytes + ?1 <= ?2",
                params![stored.bytes(), max_bytes],
            )?;
            if fits == 0 {
                // Dropping the transaction rolls the insert back.
                return Ok(Inserted::Full);
            }
            tx.commit()?;
            Ok(Inserted::New)
        })
        .await
    }

    pub async fn get(&self, id: &str) -> Result<Option<Stored>, DbError> {
        let id = id.to_string();
        self.with(move |conn| Ok(conn.query_row(SELECT, [&id], stored_from_row).optional()?))
            .await
    }

    /// Shares stored and their bytes.
    pub async fn totals(&self) -> Result<(i64, i64), DbError> {
        self.with(|conn| {
            Ok(
                conn.query_row("SELECT shares, bytes FROM share_totals", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?,
            )
        })
        .await
    }

    /// Runs `work` with the connection on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic mid-transaction rolled it back: the connection is still sound.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut conn)
        })
        .await?
    }
}

/// WAL (readers never wait for the writer), `synchronous = FULL` (a commit is on disk before
/// the answer), a bounded wait for another process's lock, then the schema.
fn set_up(conn: &mut Connection, busy_timeout: Duration) -> Result<(), DbError> {
    conn.busy_timeout(busy_timeout)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if mode != "wal" {
        tracing::warn!(mode, "SQLite could not use WAL mode here");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let applied = usize::try_from(version).unwrap_or(usize::MAX);
    let steps = MIGRATIONS.get(applied..).ok_or(DbError::NewerSchema {
        found: version,
        known: MIGRATIONS.len(),
    })?;
    for step in steps {
        tx.execute_batch(step)?;
    }
    // Written even when nothing changed: the proof that the file takes writes.
    let now = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    tx.pragma_update(None, "user_version", now)?;
    tx.commit()?;
    Ok(())
}

fn stored_from_row(row: &rusqlite::Row) -> rusqlite::Result<Stored> {
    Ok(Stored {
        code: row.get(0)?,
        channel: row.get(1)?,
        mode: row.get(2)?,
        edition: row.get(3)?,
    })
}

/// SQLite's description of an error's code (its message may name the file).
fn describe(e: &rusqlite::Error) -> String {
    e.sqlite_error()
        .map_or_else(|| e.to_string(), |code| code.to_string())
}
