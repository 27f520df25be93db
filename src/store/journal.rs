//! The SQL side of the journal writer: one transaction per batch, fenced by actor epochs.
//!
//! Batching, ordering and failure handling live in `actors::journal`; this file only turns a
//! batch into one transaction: check every actor's fencing epoch, write every event through
//! its [`Persist`] implementation, write the idempotency records, commit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use actors::journal::{CommitError, JournalStore, Submission};
use async_trait::async_trait;
use futures_util::future::BoxFuture;

use super::{now_ms, BeginWrite, Db, StoreError};
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
    fn persist<'a>(&'a self, tx: Tx<'a>) -> BoxFuture<'a, Result<(), sqlx::Error>>;
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

/// The journal store over the node's database.
pub struct SqlJournal {
    db: Db,
    /// Batches still to fail on purpose: a fault injector for tests of the durability
    /// contract (see `Application::fail_next_batches`). Zero in normal operation.
    fail_next: Arc<AtomicU32>,
}

impl SqlJournal {
    pub fn new(db: Db, fail_next: Arc<AtomicU32>) -> Self {
        SqlJournal { db, fail_next }
    }
}

fn failed(error: sqlx::Error) -> CommitError {
    CommitError::Failed(error.to_string())
}

#[async_trait]
impl<E: Persist> JournalStore<E> for SqlJournal {
    #[tracing::instrument(name = "journal_commit", skip_all, fields(submissions = batch.len()))]
    async fn commit(&self, batch: &[Submission<E>]) -> Result<(), CommitError> {
        // PostgreSQL: a shared lock on each epoch row makes an activation elsewhere wait for this
        // batch (then raise the epoch), so a stale batch can never commit after it. SQLite has
        // one writer at a time (the batch takes the write lock when it begins), which gives the
        // same order.
        let epoch_sql = match self.db {
            Db::Sqlite(_) => "SELECT epoch FROM actor_epochs WHERE kind = $1 AND actor_id = $2",
            Db::Postgres(_) => {
                "SELECT epoch FROM actor_epochs WHERE kind = $1 AND actor_id = $2 FOR SHARE"
            }
        };
        let mut epochs: HashMap<(&str, &str), (i64, Vec<u64>)> = HashMap::new();
        for actor in batch.iter().filter_map(|s| s.actor.as_ref()) {
            epochs
                .entry((actor.kind, actor.id.as_str()))
                .or_insert_with(|| (actor.epoch, Vec::new()))
                .1
                .push(actor.incarnation);
        }
        let injected = self
            .fail_next
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(failed)?;
            let mut fenced = Vec::new();
            for ((kind, id), (epoch, incarnations)) in &epochs {
                let stored: Option<i64> = sqlx::query_scalar(epoch_sql)
                    .bind(kind)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(failed)?;
                if stored != Some(*epoch) {
                    fenced.extend(incarnations.iter().copied());
                }
            }
            if !fenced.is_empty() {
                return Err(CommitError::Fenced(fenced));
            }
            let now = now_ms();
            for submission in batch {
                for event in &submission.events {
                    event.persist(to_tx(&mut tx)).await.map_err(failed)?;
                }
                if let (Some(actor), Some(record)) = (&submission.actor, &submission.idempotency) {
                    sqlx::query(
                        "INSERT INTO idempotency (kind, actor_id, key, fingerprint, reply, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)")
                        .bind(actor.kind)
                        .bind(&actor.id)
                        .bind(&record.key)
                        .bind(&record.fingerprint)
                        .bind(&record.reply)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(failed)?;
                }
            }
            if injected {
                // Everything was written; rolling back now is exactly a commit that failed.
                tx.rollback().await.map_err(failed)?;
                return Err(CommitError::Failed("injected fault".into()));
            }
            tx.commit().await.map_err(failed)?;
        });
        Ok(())
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
