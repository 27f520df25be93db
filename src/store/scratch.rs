//! Throwaway PostgreSQL databases for tests: one per test, created next to an administrative
//! URL's database and dropped, with any connection still open to it, when the guard goes.
//!
//! The suite makes a database for every test that starts a node or a store, a few hundred a
//! run; left behind, they filled the server by gigabytes with every run of the README's
//! PostgreSQL test command. The node itself never uses this; the unit tests here and the API
//! tests (`tests/api/helpers.rs`) do.

use std::path::Path;
use std::time::Duration;

use sqlx::{Connection, PgConnection};

/// Longest a guard waits for PostgreSQL to drop its database.
const DROP_TIMEOUT: Duration = Duration::from_secs(30);

/// A database made for one test, dropped when this is dropped.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// Create an empty database on the server of `admin_url` (a PostgreSQL URL whose own
    /// database is only used to run `CREATE DATABASE`). The new database's URL is
    /// `admin_url` with its database renamed; its query (`?sslmode=…`, `?host=…`) is kept.
    pub async fn create(admin_url: &str) -> Result<Self, sqlx::Error> {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let url = with_database(admin_url, &name)?;
        let mut admin = PgConnection::connect(admin_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        // The database exists now: whatever the close says, the guard must be returned.
        let _ = admin.close().await;
        Ok(ScratchDatabase {
            admin_url: admin_url.to_owned(),
            name,
            url,
        })
    }

    /// The new database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ScratchDatabase {
    /// Drops the database, ending the connections a node or pool still holds to it. It runs on
    /// a thread of its own with its own runtime, because a test's runtime cannot wait for a
    /// future inside `drop`; a failure is reported, not raised (the test has already
    /// decided, and `.ci/run` sweeps what is left).
    fn drop(&mut self) {
        let admin_url = std::mem::take(&mut self.admin_url);
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let dropping = async {
                let mut admin = PgConnection::connect(&admin_url).await?;
                sqlx::query(&sql).execute(&mut admin).await?;
                admin.close().await
            };
            // Bounded: a server that stopped answering must not hang the test.
            match runtime.block_on(async { tokio::time::timeout(DROP_TIMEOUT, dropping).await }) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!("no answer within {DROP_TIMEOUT:?}")),
            }
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("could not drop test database {}: {error}", self.name),
            Err(_) => eprintln!("dropping test database {} panicked", self.name),
        }
    }
}

/// The store for one test: a new PostgreSQL database under `TEST_DATABASE_URL` when it is set
/// (with the guard that drops it), otherwise a SQLite file in `dir`. Returns the store's URL.
pub async fn test_store(dir: &Path) -> Result<(String, Option<ScratchDatabase>), sqlx::Error> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(admin_url) => {
            let database = ScratchDatabase::create(&admin_url).await?;
            Ok((database.url().to_owned(), Some(database)))
        }
        Err(_) => Ok((format!("sqlite://{}", dir.join("node.db").display()), None)),
    }
}

/// `url` naming database `name` instead of its own: the path replaced, the query kept.
fn with_database(url: &str, name: &str) -> Result<String, sqlx::Error> {
    let bad =
        || sqlx::Error::Configuration(format!("not a database URL with a path: {url}").into());
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").ok_or_else(bad)? + 3;
    let path = base[authority..].find('/').ok_or_else(bad)? + authority;
    let mut renamed = format!("{}/{name}", &base[..path]);
    if let Some(query) = query {
        renamed.push('?');
        renamed.push_str(query);
    }
    Ok(renamed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_new_url_names_the_new_database_and_keeps_the_rest() {
        let cases = [
            ("postgres://u@h:5432/postgres", "postgres://u@h:5432/t"),
            (
                "postgres://u@h/db?sslmode=disable",
                "postgres://u@h/t?sslmode=disable",
            ),
            (
                "postgres:///db?host=/sock/pg",
                "postgres:///t?host=/sock/pg",
            ),
        ];
        for (admin, expected) in cases {
            assert_eq!(with_database(admin, "t").unwrap(), expected, "{admin}");
        }
        assert!(with_database("postgres://h", "t").is_err());
        assert!(with_database("not a url", "t").is_err());
    }

    /// Dropping the guard drops the database even while a connection to it is open (a node a
    /// test did not stop). Needs PostgreSQL: under the embedded defaults there is no server to
    /// make a database on, and the test has nothing to check.
    #[tokio::test]
    async fn dropping_the_guard_drops_the_database_under_an_open_connection() {
        let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
            return;
        };
        let scratch = ScratchDatabase::create(&admin_url).await.unwrap();
        let name = scratch.name.clone();
        let mut open = PgConnection::connect(scratch.url()).await.unwrap();
        sqlx::query("CREATE TABLE t (x INT)")
            .execute(&mut open)
            .await
            .unwrap();
        let exists = |name: String| {
            let admin_url = admin_url.clone();
            async move {
                let mut admin = PgConnection::connect(&admin_url).await.unwrap();
                let found: Option<String> =
                    sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname = $1")
                        .bind(name)
                        .fetch_optional(&mut admin)
                        .await
                        .unwrap();
                found.is_some()
            }
        };
        assert!(exists(name.clone()).await);
        drop(scratch);
        assert!(!exists(name).await, "the database outlived its guard");
        assert!(
            sqlx::query("SELECT 1").execute(&mut open).await.is_err(),
            "the open connection was ended"
        );
    }
}
