//! The back end for several replicas: PostgreSQL, through a small pool of connections. Every
//! write is one transaction, committed before the answer; replicas read each other's shares as
//! soon as they are committed.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

use super::{DbError, Inserted, OpenError, Stored};

/// The schema, one step per version; the table `share_schema` holds the steps applied.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE shares (
        id TEXT PRIMARY KEY,
        code TEXT NOT NULL,
        channel TEXT,
        mode TEXT,
        edition TEXT,
        bytes BIGINT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE share_totals (
        only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
        shares BIGINT NOT NULL,
        bytes BIGINT NOT NULL
    );
    INSERT INTO share_totals (shares, bytes) VALUES (0, 0);
"];

/// The advisory lock that replicas starting together take turns on to migrate ("wasmplay").
const MIGRATION_LOCK: i64 = 0x7761_736d_706c_6179;

const SELECT: &str = "SELECT code, channel, mode, edition FROM shares WHERE id = $1";

pub struct Postgres {
    pool: Pool,
    /// Set once the schema is up to date; until then every request tries.
    schema: OnceCell<()>,
}

impl Postgres {
    /// The pool for `url`; no connection is made yet.
    pub fn new(url: &str, connections: usize, timeout: Duration) -> Result<Self, OpenError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(OpenError::Scheme);
        }
        let mut config: tokio_postgres::Config = url.parse().map_err(OpenError::Url)?;
        config.connect_timeout(timeout);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                // Check only that the connection is open: a dead one is replaced.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| OpenError::Pool(e.to_string()))?;
        Ok(Self {
            pool,
            schema: OnceCell::new(),
        })
    }

    /// Brings the schema up to date, once per process.
    pub async fn migrate(&self) -> Result<(), DbError> {
        self.schema
            .get_or_try_init(|| async {
                let mut client = self.pool.get().await?;
                let tx = client.transaction().await?;
                tx.batch_execute(&format!(
                    "SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
                     CREATE TABLE IF NOT EXISTS share_schema (version BIGINT NOT NULL);"
                ))
                .await?;
                let version: i64 = match tx
                    .query_opt("SELECT version FROM share_schema", &[])
                    .await?
                {
                    Some(row) => row.try_get(0)?,
                    None => {
                        tx.execute("INSERT INTO share_schema VALUES (0)", &[])
                            .await?;
                        0
                    }
                };
                let applied = usize::try_from(version).unwrap_or(usize::MAX);
                let steps = MIGRATIONS.get(applied..).ok_or(DbError::NewerSchema {
                    found: version,
                    known: MIGRATIONS.len(),
                })?;
                for step in steps {
                    tx.batch_execute(step).await?;
                }
                let now = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
                tx.execute("UPDATE share_schema SET version = $1", &[&now])
                    .await?;
                tx.commit().await?;
                Ok(())
            })
            .await
            .map(|_| ())
    }

    pub async fn insert(
        &self,
        id: &str,
        stored: &Stored,
        max_bytes: i64,
    ) -> Result<Inserted, DbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let added = tx
            .execute(
                "INSERT INTO shares (id, code, channel, mode, edition, bytes)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                &[
                    &id,
                    &stored.code,
                    &stored.channel,
                    &stored.mode,
                    &stored.edition,
                    &stored.bytes(),
                ],
            )
            .await?;
        if added == 0 {
            // A concurrent insert of this id waited for ours or we for it: it is committed.
            let existing = tx.query_opt(SELECT, &[&id]).await?;
            let existing = existing.map(|row| stored_from_row(&row)).transpose()?;
            return Ok(if existing.as_ref() == Some(stored) {
                Inserted::Existing
            } else {
                Inserted::Taken
            });
        }
        let fits = tx
            .execute(
                "UPDATE share_totals SET shares = shares + 1, bytes = bytes + $1
                 WHERE bytes + $1 <= $2",
                &[&stored.bytes(), &max_bytes],
            )
            .await?;
        if fits == 0 {
            tx.rollback().await?;
            return Ok(Inserted::Full);
        }
        tx.commit().await?;
        Ok(Inserted::New)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Stored>, DbError> {
        let client = self.client().await?;
        let row = client.query_opt(SELECT, &[&id]).await?;
        Ok(row.map(|row| stored_from_row(&row)).transpose()?)
    }

    /// Shares stored and their bytes.
    pub async fn totals(&self) -> Result<(i64, i64), DbError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT shares, bytes FROM share_totals", &[])
            .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// A pooled connection to a database whose schema is up to date.
    async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        self.migrate().await?;
        Ok(self.pool.get().await?)
    }
}

fn stored_from_row(row: &tokio_postgres::Row) -> Result<Stored, tokio_postgres::Error> {
    Ok(Stored {
        code: row.try_get(0)?,
        channel: row.try_get(1)?,
        mode: row.try_get(2)?,
        edition: row.try_get(3)?,
    })
}
