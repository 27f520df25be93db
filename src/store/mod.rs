//! Storage: sqlx over SQLite (the embedded default) or PostgreSQL, one repository layer for
//! both. SQL is written once with `$n` placeholders, which both engines accept; where the
//! engines differ, the difference lives in this module ([`Db`]) and nowhere else.
//!
//! One function per query; handlers never hold SQL.

pub mod apps;
pub mod bulk;
pub mod catalog_texts;
pub mod conversations;
pub mod evergreen_history;
pub mod evergreen_merchant;
pub mod external_ids;
pub mod idempotency;
pub mod journal;
pub mod ledger;
pub mod locations;
pub mod merchants;
pub mod notifications;
pub mod payments;
pub mod reviews;
pub mod scratch;
pub mod sessions;
pub mod stays;
pub mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// A storage failure. The cause goes to the log; clients get an opaque error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (use sqlite://PATH or postgres://...)")]
    UnsupportedUrl,
    #[error("cannot create the database directory: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// True when the error is a unique-constraint violation.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

/// The database, whichever engine it is.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Run the same code against whichever pool `db` holds: `on_db!(db, pool => expr)`.
/// The expression is compiled once per engine, so it can use engine-specific row types.
#[macro_export]
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}

/// Begin a transaction that writes. On SQLite it takes the write lock at once (`BEGIN
/// IMMEDIATE`), waiting up to the busy timeout for it: a deferred transaction that reads first
/// and writes later fails at its first write with "database is locked", without waiting, when
/// another connection wrote in between (an activation raising an epoch while a journal batch
/// checks epochs, say). PostgreSQL needs nothing special. Every write transaction goes through
/// this.
pub trait BeginWrite {
    type Database: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, Self::Database>, sqlx::Error>,
    > + Send;
}

impl BeginWrite for SqlitePool {
    type Database = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl BeginWrite for PgPool {
    type Database = sqlx::Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.begin().await
    }
}

/// Current time in Unix milliseconds, the unit of every stored time.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Db {
    /// Connect and apply migrations.
    pub async fn connect(url: &str, connections_max: u32) -> Result<Db, StoreError> {
        let db = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: an acknowledged batch survives power loss, not only a crash. Group
                // commit keeps the fsync cost per batch, not per command.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            if let Some(dir) = Path::new(options.get_filename()).parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)?;
                }
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(connections_max.max(1))
                .connect_with(options)
                .await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            Db::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = pg_pool_options(connections_max)
                .connect_with(options)
                .await?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Db::Postgres(pool)
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        Ok(db)
    }

    /// "sqlite" or "postgres".
    pub fn engine(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// A round trip to the database, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_db!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    pub async fn close(&self) {
        on_db!(self, pool => pool.close().await);
    }

    /// A pool of its own, of at most `connections`, to the same database (its connections
    /// named [`OWN_POOL_APPLICATION_NAME`]), for a task that
    /// runs on a runtime of its own (the journal writer): on PostgreSQL its connections are
    /// opened from that runtime, so their sockets are driven by it and not by whichever busy
    /// HTTP worker happened to open a shared connection. On SQLite, the same pool: its
    /// connections run on threads of their own anyway, and the file has one writer at a time.
    /// Call it on the runtime that will use the pool.
    pub async fn own_pool(&self, connections: u32) -> Result<Db, StoreError> {
        Ok(match self {
            Db::Sqlite(pool) => Db::Sqlite(pool.clone()),
            Db::Postgres(pool) => Db::Postgres(
                pg_pool_options(connections)
                    .connect_with(
                        pool.connect_options()
                            .as_ref()
                            .clone()
                            .application_name(OWN_POOL_APPLICATION_NAME),
                    )
                    .await?,
            ),
        })
    }
}

/// How a pool of its own names its PostgreSQL connections (`pg_stat_activity`), so that
/// the journal writer's connections can be told from the rest.
pub const OWN_POOL_APPLICATION_NAME: &str = "node journal";

/// How long a pooled PostgreSQL connection may sit idle and still be handed out without a
/// ping first (see [`pg_pool_options`]).
pub const PING_IF_IDLE_FOR: Duration = Duration::from_millis(500);

/// The node's PostgreSQL pools, shared and own, are made alike.
///
/// A connection is pinged before it is handed out only when it has been idle for
/// [`PING_IF_IDLE_FOR`] or longer (sqlx's own `test_before_acquire` pings every time). Under
/// load connections are never idle that long, and the ping would be a round trip ahead of
/// every statement the pool serves, two of them on every payment's and post's path (the
/// stored-reply lookup, then the journal's batch): without it, 3 to 5 % more payments a
/// second saturated (BENCHMARKS.md section 3). sqlx pings each connection when it is released
/// and closes one that does not answer. So what is left is a connection closed by the server
/// within half a second of its last use: it fails the one statement that next uses it (a
/// journal batch fails as a whole and its commands can be retried, DESIGN.md section 4), and
/// is replaced. (A connection whose packets are silently dropped hangs its statement until
/// TCP gives up, as a statement already in flight on it would with the ping; a journal batch
/// gives up sooner, at `JOURNAL_COMMIT_TIMEOUT_MS`.)
fn pg_pool_options(connections_max: u32) -> PgPoolOptions {
    use sqlx::Connection;
    PgPoolOptions::new()
        .max_connections(connections_max.max(1))
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    // An error closes the connection; the pool opens another.
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
}

/// What a unit test's store lives in: a temporary directory, and on PostgreSQL the test's
/// own database; dropping it removes both.
#[cfg(test)]
pub(crate) struct TestStore {
    _dir: tempfile::TempDir,
    _database: Option<scratch::ScratchDatabase>,
}

/// A fresh, migrated store for a unit test: a new PostgreSQL database under
/// `TEST_DATABASE_URL` when it is set (as the API tests do), otherwise a SQLite file in a
/// temporary directory. Both go when the returned [`TestStore`] does.
#[cfg(test)]
#[allow(clippy::expect_used)]
pub(crate) async fn test_db() -> (TestStore, Db) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (url, database) = scratch::test_store(dir.path())
        .await
        .expect("TEST_DATABASE_URL is set, so PostgreSQL must take a test database");
    let db = Db::connect(&url, 4).await.expect("connect the test store");
    (
        TestStore {
            _dir: dir,
            _database: database,
        },
        db,
    )
}

/// Users with these ids (and the id as email and name), for unit tests of the store.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) async fn insert_test_users(db: &Db, ids: &[&str]) {
    on_db!(db, pool => {
        for id in ids {
            sqlx::query(
                "INSERT INTO users (id, email, email_lower, fullname, role_id, created_at, \
                 updated_at) VALUES ($1, $1, $1, $1, 'user', 0, 0)",
            )
            .bind(id)
            .execute(pool)
            .await
            .unwrap();
        }
    });
}

/// Checks of the query plans the hot statements get (see `idempotency` and `journal`).
#[cfg(test)]
pub(crate) mod plans {
    /// The rows 1 to 50,000 on either engine, for filling a table in one statement.
    pub const ONE_TO_50000: &str = "(WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL \
         SELECT n + 1 FROM s WHERE n < 50000) SELECT n FROM s) AS s";

    /// The lines of an `EXPLAIN` (PostgreSQL) or `EXPLAIN QUERY PLAN` (SQLite), joined.
    pub fn text<R>(rows: Vec<R>, line: impl Fn(R) -> String) -> String {
        rows.into_iter().map(line).collect::<Vec<_>>().join("\n")
    }

    /// Panics unless `plan` finds rows of `table` through `index` (PostgreSQL's name or
    /// SQLite's), and reads none of it whole.
    pub fn assert_by_key(plan: &str, table: &str, postgres_index: &str, sqlite_index: &str) {
        let by_key = plan.contains(&format!("Index Scan using {postgres_index}"))
            || plan.contains(&format!("Index Only Scan using {postgres_index}"))
            || plan.contains(&format!("USING INDEX {sqlite_index}"))
            || plan.contains(&format!("USING COVERING INDEX {sqlite_index}"));
        assert!(
            by_key,
            "{table} is not read through {postgres_index}:\n{plan}"
        );
        for whole_table in ["Hash Join", "Seq Scan", "Bitmap", "SCAN i", "SCAN e"] {
            assert!(
                !plan.contains(whole_table),
                "{table} is read whole ({whole_table}):\n{plan}"
            );
        }
    }
}
