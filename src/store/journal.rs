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

/// Actors whose epochs one statement reads (two parameters each).
const EPOCHS_PER_STATEMENT: usize = 10_000;

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
        // same order. The epochs are read in one statement per chunk, not one per actor.
        let lock = match self.db {
            Db::Sqlite(_) => "",
            Db::Postgres(_) => " FOR SHARE OF e",
        };
        let mut epochs: BTreeMap<(&str, &str), (i64, Vec<u64>)> = BTreeMap::new();
        for actor in batch.iter().filter_map(|s| s.actor.as_ref()) {
            epochs
                .entry((actor.kind, actor.id.as_str()))
                .or_insert_with(|| (actor.epoch, Vec::new()))
                .1
                .push(actor.incarnation);
        }
        let keys: Vec<(&str, &str)> = epochs.keys().copied().collect();
        let injected = self
            .fail_next
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        on_db!(&self.db, pool => {
            let mut tx = pool.begin_write().await.map_err(failed)?;
            let mut rows: Vec<(String, String, i64)> = Vec::with_capacity(keys.len());
            for chunk in keys.chunks(EPOCHS_PER_STATEMENT) {
                let mut query = QueryBuilder::new(
                    "SELECT e.kind, e.actor_id, e.epoch FROM actor_epochs e JOIN (");
                query.push_values(chunk, |mut row, (kind, id)| {
                    row.push_bind(*kind).push_bind(*id);
                });
                query.push(") AS v ON e.kind = v.column1 AND e.actor_id = v.column2");
                query.push(lock);
                let read: Vec<(String, String, i64)> = query
                    .build_query_as()
                    .persistent(false)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(failed)?;
                rows.extend(read);
            }
            let stored: HashMap<(&str, &str), i64> = rows
                .iter()
                .map(|(kind, id, epoch)| ((kind.as_str(), id.as_str()), *epoch))
                .collect();
            let mut fenced = Vec::new();
            for (actor, (epoch, incarnations)) in &epochs {
                if stored.get(actor) != Some(epoch) {
                    fenced.extend(incarnations.iter().copied());
                }
            }
            if !fenced.is_empty() {
                return Err(CommitError::Fenced(fenced));
            }
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
