//! The SQL side of the journal writer: one transaction per batch, fenced by actor epochs.
//!
//! Batching, ordering and failure handling live in `actors::journal`; this file only turns a
//! batch into one transaction: check every actor's fencing epoch, write every event through
//! its [`Persist`] implementation, write the idempotency records, commit.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use actors::journal::{CommitError, JournalStore, Submission};
use async_trait::async_trait;
use futures_util::future::BoxFuture;
use sqlx::QueryBuilder;

use super::bulk::Staged;
use super::{BeginWrite, Db, StoreError};
use crate::on_db;

/// A transaction in progress, whichever engine it is on.
pub enum Tx<'a> {
    Sqlite(&'a mut sqlx::SqliteConnection),
    Postgres(&'a mut sqlx::PgConnection),
}

impl Tx<'_> {
    /// Borrow the transaction again, for one more statement before handing it on.
    pub fn reborrow(&mut self) -> Tx<'_> {
        match self {
            Tx::Sqlite(conn) => Tx::Sqlite(conn),
            Tx::Postgres(conn) => Tx::Postgres(conn),
        }
    }
}

/// Run the same code against whichever connection `tx` holds.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::store::journal::Tx::Sqlite($conn) => $body,
            $crate::store::journal::Tx::Postgres($conn) => $body,
        }
    };
}

/// How an event is written inside a batch's transaction.
pub trait Persist: Send + Sync + 'static {
    /// Write the event on its own, in order with the rest of the batch.
    fn persist<'a>(&'a self, tx: Tx<'a>) -> BoxFuture<'a, Result<(), sqlx::Error>>;

    /// Stage the event for the batch's multi-row writes instead ([`Staged`]), when it is one
    /// of the kinds staged; `Ok(false)` (and nothing staged) when it must be persisted alone.
    fn stage<'a>(&'a self, _staged: &mut Staged<'a>) -> Result<bool, sqlx::Error> {
        Ok(false)
    }
}

/// Raise and return an actor's fencing epoch; called once per activation.
#[tracing::instrument(skip(db))]
pub async fn raise_epoch(db: &Db, kind: &str, actor_id: &str) -> Result<i64, StoreError> {
    let epoch = on_db!(db, pool => sqlx::query_scalar(
        "INSERT INTO actor_epochs (kind, actor_id, epoch) VALUES ($1, $2, 1) \
         ON CONFLICT (kind, actor_id) DO UPDATE SET epoch = actor_epochs.epoch + 1 \
         RETURNING epoch")
        .bind(kind)
        .bind(actor_id)
        .fetch_one(pool)
        .await?);
    Ok(epoch)
}

/// SQLite's primary result code for a constraint (its extended codes keep it in the low byte).
const SQLITE_CONSTRAINT: i32 = 19;

/// Actors whose epochs one statement reads on SQLite (two parameters each).
const EPOCHS_PER_STATEMENT: usize = 10_000;

/// Faults to inject into the journal's next batches, for tests of the durability contract
/// (`startup::Faults`). Both are zero in normal operation.
#[derive(Debug, Default)]
pub struct JournalFaults {
    /// Batches that write everything and then roll back, as a failing commit would.
    pub fail_next: AtomicU32,
    /// Batches that commit and then report that the commit was not confirmed, as a connection
    /// that broke while COMMIT was answered would.
    pub unconfirm_next: AtomicU32,
    /// Batches that write everything, roll back, and report that the commit was not
    /// confirmed, as a connection that broke before COMMIT reached the database would.
    pub lose_next: AtomicU32,
}

impl JournalFaults {
    /// Whether this batch is one of the next `n` of `counter`, counting it down.
    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// The journal store over the node's database.
pub struct SqlJournal {
    db: Db,
    faults: Arc<JournalFaults>,
    /// How far the last attempt got: what to answer, or on PostgreSQL to ask, if its commit is
    /// unconfirmed (`resolve_unconfirmed`).
    last_attempt: std::sync::Mutex<Stage>,
}

/// How far a batch's attempt got, and on PostgreSQL its transaction once known.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// Its COMMIT was not sent: given up on here, it never commits. Its transaction is rolled
    /// back once the statement it waits in returns; on PostgreSQL its session is ended
    /// sooner, so that it does not hold its locks and a journal connection until then.
    Writing(Option<PgAttempt>),
    /// Its COMMIT may have been sent; on PostgreSQL, the transaction to ask about.
    Committing(Option<PgAttempt>),
}

/// How long ending the session of a batch given up on before its COMMIT may take.
const END_SESSION_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// A batch's transaction on PostgreSQL: its id (`xid8`, as text), the session running it, and
/// one idempotency record it writes (kind, actor, key), if any, to tell its commit from
/// another transaction's under the same id (`SqlJournal::witnessed`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PgAttempt {
    xid: String,
    pid: i32,
    witness: Option<(String, String, String)>,
}

impl SqlJournal {
    pub fn new(db: Db, faults: Arc<JournalFaults>) -> Self {
        SqlJournal {
            db,
            faults,
            last_attempt: std::sync::Mutex::new(Stage::Writing(None)),
        }
    }

    fn remember(&self, stage: Stage) {
        if let Ok(mut last) = self.last_attempt.lock() {
            *last = stage;
        }
    }

    /// PostgreSQL's word on `attempt`, once it is final: its session is ended first if it is
    /// still in the transaction (a commit given up on while it waited for a lock, say), so the
    /// transaction rolls back unless its COMMIT already went through. `None` while it cannot
    /// be asked (the database is unreachable) or the transaction is still in progress.
    async fn settled(pool: &sqlx::PgPool, attempt: &PgAttempt) -> Option<bool> {
        Self::end_session(pool, attempt).await.ok()?;
        let status = sqlx::query_scalar::<_, Option<String>>("SELECT pg_xact_status($1::xid8)")
            .bind(&attempt.xid)
            .fetch_one(pool)
            .await;
        match status {
            Ok(Some(status)) if status == "committed" => Self::witnessed(pool, attempt).await,
            Ok(Some(status)) if status == "aborted" => Some(false),
            // An id not handed out yet: the server restarted since and recovered to before it,
            // so the transaction never committed (a commit's id is in the log it recovers).
            Err(sqlx::Error::Database(error))
                if error.code().as_deref() == Some("22023")
                    && error.message().contains("in the future") =>
            {
                Some(false)
            }
            Err(error) => {
                tracing::debug!(%error, "asking what became of an unconfirmed batch");
                None
            }
            // In progress, or too old to tell.
            Ok(_) => None,
        }
    }

    /// End the attempt's session if it is still in the attempt's transaction, which then rolls
    /// back unless its COMMIT already went through. `backend_xid` makes sure the session is
    /// still this transaction's: a session id is reused once its session ends.
    async fn end_session(pool: &sqlx::PgPool, attempt: &PgAttempt) -> Result<(), sqlx::Error> {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE pid = $1 AND backend_xid = $2::xid8::xid",
        )
        .bind(attempt.pid)
        .bind(&attempt.xid)
        .execute(pool)
        .await
        .map(|_| ())
    }

    /// Whether a committed transaction with the attempt's id was the attempt: a crash can
    /// hand out again an id that was handed out but never logged (a batch that got its id
    /// and then waited on a lock), to a transaction that may commit. A batch that committed
    /// wrote its witness, an idempotency record, with its id as the row's `xmin` (the records
    /// are only ever inserted). A batch without one cannot be told apart: `None`.
    async fn witnessed(pool: &sqlx::PgPool, attempt: &PgAttempt) -> Option<bool> {
        let (kind, actor_id, key) = attempt.witness.as_ref()?;
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM idempotency \
             WHERE kind = $1 AND actor_id = $2 AND key = $3 AND xmin = $4::xid8::xid)",
        )
        .bind(kind)
        .bind(actor_id)
        .bind(key)
        .bind(&attempt.xid)
        .fetch_one(pool)
        .await
        .ok()
    }
}

/// The batch's first idempotency record (kind, actor, key): what tells its commit from another
/// transaction's under the same id (`SqlJournal::witnessed`).
fn witness<E>(batch: &[Submission<E>]) -> Option<(String, String, String)> {
    batch.iter().find_map(|s| {
        let (actor, record) = (s.actor.as_ref()?, s.idempotency.as_ref()?);
        Some((actor.kind.to_owned(), actor.id.clone(), record.key.clone()))
    })
}

/// What a batch writes, refused by the store's own code where the database has no
/// constraint to refuse it: a row the batch must update is missing, or a claim it must hold is
/// another's. Like a constraint's refusal, it belongs to the submission that wrote it, and the
/// writer fails that submission alone (`CommitError::Refused`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(String);

impl Refusal {
    /// The refusal, as the error a statement of the batch fails with.
    pub fn error(why: impl Into<String>) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Refusal(why.into())))
    }
}

impl sqlx::error::DatabaseError for Refusal {
    fn message(&self) -> &str {
        &self.0
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        sqlx::error::ErrorKind::Other
    }
}

/// A refusal when the database refused what the batch writes: a key, foreign key, not-null,
/// check or exclusion constraint, or SQLite's overlap triggers (SQLSTATE class 23 on
/// PostgreSQL, result code `SQLITE_CONSTRAINT` and its extended codes on SQLite), or the
/// store's own code did ([`Refusal`]); either would refuse the same submissions again.
/// Anything else failed the batch as such (a lost connection, a timeout, an injected fault).
fn failed(error: sqlx::Error) -> CommitError {
    let refused = match &error {
        sqlx::Error::Database(db) if db.try_downcast_ref::<Refusal>().is_some() => true,
        sqlx::Error::Database(db) => match (
            db.code(),
            db.try_downcast_ref::<sqlx::sqlite::SqliteError>(),
        ) {
            (Some(code), None) => code.starts_with("23"),
            (Some(code), Some(_)) => code
                .parse::<i32>()
                .is_ok_and(|code| code & 0xff == SQLITE_CONSTRAINT),
            (None, _) => false,
        },
        _ => false,
    };
    if refused {
        CommitError::Refused(error.to_string())
    } else {
        CommitError::Failed(error.to_string())
    }
}

#[async_trait]
impl<E: Persist> JournalStore<E> for SqlJournal {
    #[tracing::instrument(name = "journal_commit", skip_all, fields(submissions = batch.len()))]
    async fn commit(&self, batch: &[Submission<E>]) -> Result<(), CommitError> {
        self.remember(Stage::Writing(None));
        // PostgreSQL: a shared lock on each epoch row makes an activation elsewhere wait for this
        // batch (then raise the epoch), so a stale batch can never commit after it. SQLite has
        // one writer at a time (the batch takes the write lock when it begins), which gives the
        // same order. The epochs are read in one statement, not one per actor.
        // Each submission is checked against its own epoch: one batch can hold an entity's
        // old incarnation and its new one (the old one decided a command just before it was
        // reset), and only the old one's must be fenced.
        let mut epochs: BTreeMap<(&str, &str), Vec<(i64, u64)>> = BTreeMap::new();
        for actor in batch.iter().filter_map(|s| s.actor.as_ref()) {
            epochs
                .entry((actor.kind, actor.id.as_str()))
                .or_default()
                .push((actor.epoch, actor.incarnation));
        }
        let keys: Vec<(&str, &str)> = epochs.keys().copied().collect();
        on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(failed)?;
            // The first statement also says which transaction this is (PostgreSQL): if it
            // waits on a lock and is given up on, no COMMIT was sent, so nothing needs asking.
            let Epochs { rows, attempt } = tx.read_epochs(&keys).await.map_err(failed)?;
            self.remember(Stage::Writing(attempt.clone()));
            let stored: HashMap<(&str, &str), i64> = rows
                .iter()
                .map(|(kind, id, epoch)| ((kind.as_str(), id.as_str()), *epoch))
                .collect();
            let mut fenced = Vec::new();
            for (actor, stamps) in &epochs {
                let current = stored.get(actor);
                fenced.extend(
                    stamps
                        .iter()
                        .filter(|(epoch, _)| current != Some(epoch))
                        .map(|(_, incarnation)| *incarnation),
                );
            }
            if !fenced.is_empty() {
                return Err(CommitError::Fenced(fenced));
            }
            // Taken by an attempt that writes, not by one that was fenced off.
            let injected = JournalFaults::take(&self.faults.fail_next);
            let unconfirmed = !injected && JournalFaults::take(&self.faults.unconfirm_next);
            let lost = !injected && !unconfirmed && JournalFaults::take(&self.faults.lose_next);
            // Hot events are staged and written a few multi-row statements at a time; any
            // other event first writes what is staged, then itself, so order is kept.
            let mut staged = Staged::default();
            for submission in batch {
                for event in &submission.events {
                    if !event.stage(&mut staged).map_err(failed)? {
                        staged.flush(to_tx(&mut tx)).await.map_err(failed)?;
                        event.persist(to_tx(&mut tx)).await.map_err(failed)?;
                    }
                }
                if let (Some(actor), Some(record)) = (&submission.actor, &submission.idempotency) {
                    staged.idempotency(actor, record);
                }
            }
            staged.flush(to_tx(&mut tx)).await.map_err(failed)?;
            // From here a COMMIT may be on its way.
            self.remember(Stage::Committing(attempt.map(|attempt| PgAttempt {
                witness: witness(batch),
                ..attempt
            })));
            if injected || lost {
                // Everything was written; rolling back now is exactly a commit that failed.
                tx.rollback().await.map_err(failed)?;
                return Err(if lost {
                    CommitError::Unconfirmed("injected: the commit never reached the database".into())
                } else {
                    CommitError::Failed("injected fault".into())
                });
            }
            // A COMMIT the database answered with an error was not applied (a deferred
            // constraint's refusal, a serialization failure). Any other failure may have been:
            // the connection can break after the server committed and before its answer
            // arrived.
            tx.commit().await.map_err(|error| match error {
                sqlx::Error::Database(_) => failed(error),
                other => CommitError::Unconfirmed(other.to_string()),
            })?;
            if unconfirmed {
                return Err(CommitError::Unconfirmed(
                    "injected: the commit's answer was lost".into(),
                ));
            }
        });
        Ok(())
    }

    /// An attempt given up on before its COMMIT was sent never commits: `Some(false)` (on
    /// PostgreSQL its session is ended meanwhile, if its transaction is known). After,
    /// on PostgreSQL, from the transaction's status (`pg_xact_status`), asked again every
    /// 20 ms until it is final; the writer bounds the wait. SQLite has no such record: `None`.
    async fn resolve_unconfirmed(&self) -> Option<bool> {
        let stage = std::mem::replace(
            &mut *self.last_attempt.lock().ok()?,
            Stage::Committing(None),
        );
        let attempt = match stage {
            Stage::Writing(attempt) => {
                // Certain whatever the cleanup does, so the answer does not wait for it.
                if let (Some(attempt), Db::Postgres(pool)) = (attempt, &self.db) {
                    let pool = pool.clone();
                    tokio::spawn(async move {
                        let ended = tokio::time::timeout(
                            END_SESSION_WITHIN,
                            Self::end_session(&pool, &attempt),
                        )
                        .await;
                        if !matches!(ended, Ok(Ok(()))) {
                            tracing::warn!(
                                xid = %attempt.xid,
                                "could not end the session of a batch given up on"
                            );
                        }
                    });
                }
                return Some(false);
            }
            Stage::Committing(attempt) => attempt?,
        };
        let Db::Postgres(pool) = &self.db else {
            return None;
        };
        loop {
            if let Some(committed) = Self::settled(pool, &attempt).await {
                tracing::info!(xid = %attempt.xid, committed, "an unconfirmed batch's outcome");
                return Some(committed);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// What a batch's first statement reads.
struct Epochs {
    /// Each stored actor's fencing epoch: (kind, id, epoch).
    rows: Vec<(String, String, i64)>,
    /// On PostgreSQL the transaction's id and session, read with the epochs: no round trip of
    /// its own (BENCHMARKS.md §3). `None` on SQLite, or when no actor's epoch was read (a
    /// batch without actors has no idempotency record to witness its commit by, and one
    /// whose actors have none is fenced).
    attempt: Option<PgAttempt>,
}

/// Each actor's stored fencing epoch, in the batch's transaction.
trait ReadEpochs {
    fn read_epochs(
        &mut self,
        keys: &[(&str, &str)],
    ) -> impl std::future::Future<Output = Result<Epochs, sqlx::Error>> + Send;
}

/// The epochs on PostgreSQL, locked `FOR SHARE`: the actors travel as two arrays (one statement
/// shape whatever the batch), and each row is found through the primary key. The `LIMIT`
/// keeps the planner from turning the lateral subquery into a join it could hash, which would
/// read (and lock-check) the whole table whenever its statistics lag behind. Each row also
/// carries the transaction's id and session (`PgAttempt`): the locks give the transaction its
/// id anyway.
const PG_EPOCHS: &str = "SELECT v.kind, v.actor_id, e.epoch, \
       pg_current_xact_id()::text, pg_backend_pid() \
     FROM UNNEST($1::text[], $2::text[]) AS v(kind, actor_id) \
     CROSS JOIN LATERAL (SELECT epoch FROM actor_epochs a \
         WHERE a.kind = v.kind AND a.actor_id = v.actor_id LIMIT 1 FOR SHARE) AS e";

impl ReadEpochs for sqlx::Transaction<'_, sqlx::Postgres> {
    async fn read_epochs(&mut self, keys: &[(&str, &str)]) -> Result<Epochs, sqlx::Error> {
        if keys.is_empty() {
            return Ok(Epochs {
                rows: Vec::new(),
                attempt: None,
            });
        }
        let (kinds, ids): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
        let read: Vec<(String, String, i64, String, i32)> = sqlx::query_as(PG_EPOCHS)
            .bind(kinds)
            .bind(ids)
            .fetch_all(&mut **self)
            .await?;
        let attempt = read.first().map(|(_, _, _, xid, pid)| PgAttempt {
            xid: xid.clone(),
            pid: *pid,
            witness: None,
        });
        let rows = read
            .into_iter()
            .map(|(kind, id, epoch, _, _)| (kind, id, epoch))
            .collect();
        Ok(Epochs { rows, attempt })
    }
}

/// The epochs of `keys` on SQLite, after `prefix` (`EXPLAIN QUERY PLAN`, in a test).
fn sqlite_epochs<'a>(
    prefix: &str,
    keys: &'a [(&'a str, &'a str)],
) -> QueryBuilder<'a, sqlx::Sqlite> {
    let mut query = QueryBuilder::new(prefix);
    query.push("SELECT e.kind, e.actor_id, e.epoch FROM actor_epochs e JOIN (");
    query.push_values(keys, |mut row, (kind, id)| {
        row.push_bind(*kind).push_bind(*id);
    });
    query.push(") AS v ON e.kind = v.column1 AND e.actor_id = v.column2");
    query
}

impl ReadEpochs for sqlx::Transaction<'_, sqlx::Sqlite> {
    /// SQLite keeps no record of a transaction to ask about later: no attempt.
    async fn read_epochs(&mut self, keys: &[(&str, &str)]) -> Result<Epochs, sqlx::Error> {
        let mut rows = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(EPOCHS_PER_STATEMENT) {
            let read: Vec<(String, String, i64)> = sqlite_epochs("", chunk)
                .build_query_as()
                .persistent(false)
                .fetch_all(&mut **self)
                .await?;
            rows.extend(read);
        }
        Ok(Epochs {
            rows,
            attempt: None,
        })
    }
}

/// Borrow a transaction as the engine-neutral [`Tx`].
pub trait ToTx {
    fn tx(&mut self) -> Tx<'_>;
}

impl ToTx for sqlx::Transaction<'_, sqlx::Sqlite> {
    fn tx(&mut self) -> Tx<'_> {
        Tx::Sqlite(&mut *self)
    }
}

impl ToTx for sqlx::Transaction<'_, sqlx::Postgres> {
    fn tx(&mut self) -> Tx<'_> {
        Tx::Postgres(&mut *self)
    }
}

pub fn to_tx<T: ToTx>(tx: &mut T) -> Tx<'_> {
    tx.tx()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::plans;

    /// The batch's epoch check finds each actor through the primary key, however many actors
    /// there are and however stale the statistics: it must not read (and, on PostgreSQL,
    /// lock-check) the whole table once per batch.
    #[tokio::test]
    async fn the_epoch_check_reads_each_actor_through_the_primary_key_however_large_the_table() {
        let (_dir, db) = crate::store::test_db().await;
        let fill = format!(
            "INSERT INTO actor_epochs (kind, actor_id, epoch) SELECT 'wallet', 'u' || n, 1 FROM {}",
            plans::ONE_TO_50000
        );
        let ids: Vec<String> = (0..300).map(|n| format!("u{}", n * 97 + 1)).collect();
        let mut keys: Vec<(&str, &str)> = ids.iter().map(|id| ("wallet", id.as_str())).collect();
        keys.push(("wallet", "nobody"));
        let (plan, read) = match &db {
            Db::Postgres(pool) => {
                sqlx::query(&fill).execute(pool).await.unwrap();
                let (kinds, ids): (Vec<&str>, Vec<&str>) = keys.iter().copied().unzip();
                let plan: Vec<(String,)> = sqlx::query_as(&format!("EXPLAIN {PG_EPOCHS}"))
                    .bind(kinds)
                    .bind(ids)
                    .fetch_all(pool)
                    .await
                    .unwrap();
                let mut tx = pool.begin_write().await.unwrap();
                let read = tx.read_epochs(&keys).await.unwrap().rows;
                (plans::text(plan, |(line,)| line), read)
            }
            Db::Sqlite(pool) => {
                sqlx::query(&fill).execute(pool).await.unwrap();
                let plan: Vec<(i64, i64, i64, String)> =
                    sqlite_epochs("EXPLAIN QUERY PLAN ", &keys)
                        .build_query_as()
                        .fetch_all(pool)
                        .await
                        .unwrap();
                let mut tx = pool.begin_write().await.unwrap();
                let read = tx.read_epochs(&keys).await.unwrap().rows;
                (plans::text(plan, |row| row.3), read)
            }
        };
        plans::assert_by_key(
            &plan,
            "actor_epochs",
            "actor_epochs_pkey",
            "sqlite_autoindex_actor_epochs_1",
        );
        assert_eq!(
            read.len(),
            300,
            "one epoch per stored actor, none for the unknown one"
        );
        assert!(read
            .iter()
            .all(|(kind, id, epoch)| kind == "wallet" && ids.contains(id) && *epoch == 1));
    }

    /// What the database refuses for a constraint is a refusal, which the writer narrows down
    /// by retrying the batch in halves; anything else fails the batch whole. Checked with the
    /// engine's own errors: a key, a foreign key, a check and (PostgreSQL) an exclusion.
    #[tokio::test]
    async fn a_constraint_the_batch_breaks_is_a_refusal_and_nothing_else_is() {
        let (_dir, db) = crate::store::test_db().await;
        let refusals = [
            "INSERT INTO actor_epochs (kind, actor_id, epoch) VALUES ('w', 'x', 1), ('w', 'x', 1)",
            "INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES ('s', 'nobody', 0, 1)",
            "INSERT INTO ledger_accounts (owner_kind, owner_id, currency, balance, held) \
             VALUES ('user', 'u', 'EVG', 0, 5)",
        ];
        for sql in refusals {
            let error = on_db!(&db, pool => sqlx::query(sql).execute(pool).await.unwrap_err());
            assert!(matches!(failed(error), CommitError::Refused(_)), "{sql}");
        }
        if let Db::Postgres(pool) = &db {
            // One connection: a temporary table is its own.
            let mut connection = pool.acquire().await.unwrap();
            sqlx::query(
                "CREATE TEMPORARY TABLE spans (r int4range, \
                 EXCLUDE USING gist (r WITH &&))",
            )
            .execute(&mut *connection)
            .await
            .unwrap();
            let error = sqlx::query("INSERT INTO spans VALUES ('[1,5)'), ('[3,7)')")
                .execute(&mut *connection)
                .await
                .unwrap_err();
            assert!(matches!(failed(error), CommitError::Refused(_)));
        }
        if let Db::Sqlite(pool) = &db {
            // A trigger's RAISE(ABORT), as the overlap fence raises it.
            let mut connection = pool.acquire().await.unwrap();
            for sql in [
                "CREATE TEMPORARY TABLE spans (n INTEGER)",
                "CREATE TEMPORARY TRIGGER spans_fence BEFORE INSERT ON spans \
                 BEGIN SELECT RAISE(ABORT, 'fenced'); END",
            ] {
                sqlx::query(sql).execute(&mut *connection).await.unwrap();
            }
            let error = sqlx::query("INSERT INTO spans VALUES (1)")
                .execute(&mut *connection)
                .await
                .unwrap_err();
            assert!(matches!(failed(error), CommitError::Refused(_)));
        }
        // What the store's own code refuses.
        assert!(matches!(
            failed(Refusal::error("a claim another thread holds")),
            CommitError::Refused(_)
        ));
        let error = on_db!(&db, pool => sqlx::query("SELECT * FROM no_such_table")
            .execute(pool)
            .await
            .unwrap_err());
        assert!(matches!(failed(error), CommitError::Failed(_)));
        assert!(matches!(
            failed(sqlx::Error::PoolTimedOut),
            CommitError::Failed(_)
        ));
    }

    /// What PostgreSQL says of a transaction, as `settled` reads it: a committed one whose
    /// witness carries its id as `xmin` committed; one that rolled back, one whose witness
    /// another transaction wrote (an id handed out again after a crash), and one "in the
    /// future" (the server recovered to before it) did not; one without a witness cannot be
    /// told. SQLite keeps no such record, so the test is PostgreSQL's alone.
    #[tokio::test]
    async fn an_unconfirmed_transaction_is_read_as_what_postgresql_recorded() {
        let (_dir, db) = crate::store::test_db().await;
        let Db::Postgres(pool) = &db else {
            return;
        };
        // One transaction that writes a record and commits, one that writes and rolls back.
        async fn run(pool: &sqlx::PgPool, key: &str, commit: bool) -> PgAttempt {
            let mut tx = pool.begin().await.unwrap();
            let (xid, pid): (String, i32) =
                sqlx::query_as("SELECT pg_current_xact_id()::text, pg_backend_pid()")
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
            sqlx::query(
                "INSERT INTO idempotency (kind, actor_id, key, fingerprint, reply, created_at) \
                 VALUES ('wallet', 'u', $1, 'f', ''::bytea, 0)",
            )
            .bind(key)
            .execute(&mut *tx)
            .await
            .unwrap();
            if commit {
                tx.commit().await.unwrap();
            } else {
                tx.rollback().await.unwrap();
            }
            PgAttempt {
                xid,
                pid,
                witness: Some(("wallet".into(), "u".into(), key.into())),
            }
        }
        let committed = run(pool, "kept", true).await;
        assert_eq!(SqlJournal::settled(pool, &committed).await, Some(true));

        let rolled_back = run(pool, "dropped", false).await;
        assert_eq!(SqlJournal::settled(pool, &rolled_back).await, Some(false));

        let reused = PgAttempt {
            witness: Some(("wallet".into(), "u".into(), "never written".into())),
            ..committed.clone()
        };
        assert_eq!(SqlJournal::settled(pool, &reused).await, Some(false));

        let unwitnessed = PgAttempt {
            witness: None,
            ..committed.clone()
        };
        assert_eq!(SqlJournal::settled(pool, &unwitnessed).await, None);

        let next: i64 = committed.xid.parse().unwrap();
        let future = PgAttempt {
            xid: (next + 1_000_000).to_string(),
            ..committed
        };
        assert_eq!(SqlJournal::settled(pool, &future).await, Some(false));
    }

    /// One batch can hold an entity's old incarnation and its new one: each submission is
    /// checked against its own epoch, so the old one's is fenced and writes nothing (a key it
    /// wrote would be one the new incarnation's digests do not know), and the new one's
    /// commits, in either order.
    #[tokio::test]
    async fn a_batch_fences_each_submission_by_its_own_epoch() {
        use actors::journal::{
            spawn_writer, ActorStamp, IdempotencyRecord, JournalSettings, NoSink,
        };
        use actors::{ActorError, DomainEvent};

        let (_dir, db) = crate::store::test_db().await;
        let journal = Arc::new(SqlJournal::new(db.clone(), Arc::default()));
        let settings = JournalSettings {
            batch_window: std::time::Duration::from_millis(200),
            ..JournalSettings::default()
        };
        let (handle, _writer) =
            spawn_writer::<DomainEvent, _, _, _>(settings, journal, Arc::new(NoSink), Arc::new(()));
        let stored_keys = |id: &'static str| {
            let db = db.clone();
            async move {
                let keys: Vec<String> = on_db!(&db, pool => sqlx::query_scalar(
                    "SELECT key FROM idempotency WHERE kind = 'wallet' AND actor_id = $1 \
                     ORDER BY key")
                    .bind(id)
                    .fetch_all(pool)
                    .await
                    .unwrap());
                keys
            }
        };
        for (id, new_first) in [("w1", true), ("w2", false)] {
            assert_eq!(raise_epoch(&db, "wallet", id).await.unwrap(), 1);
            assert_eq!(raise_epoch(&db, "wallet", id).await.unwrap(), 2);
            let mut answers = Vec::new();
            let order = if new_first {
                [(2, "new"), (1, "old")]
            } else {
                [(1, "old"), (2, "new")]
            };
            for (epoch, key) in order {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let stamp = ActorStamp {
                    kind: "wallet",
                    id: id.to_owned(),
                    incarnation: u64::try_from(epoch).unwrap() + if new_first { 0 } else { 10 },
                    epoch,
                };
                let record = IdempotencyRecord {
                    key: key.to_owned(),
                    fingerprint: "f".into(),
                    reply: b"{}".to_vec(),
                };
                handle.reserve().unwrap().submit(
                    stamp,
                    Vec::new(),
                    Some(record),
                    move |result| {
                        let _ = tx.send(result);
                    },
                    Arc::new(|_| {}),
                );
                answers.push((key, rx));
            }
            for (key, rx) in answers {
                let result = rx.await.unwrap();
                match key {
                    "new" => assert_eq!(result, Ok(()), "{id}"),
                    _ => assert!(
                        matches!(result, Err(ActorError::NotStored(_))),
                        "{id}: {result:?}"
                    ),
                }
            }
            assert_eq!(stored_keys(id).await, vec!["new".to_owned()], "{id}");
        }
    }
}
