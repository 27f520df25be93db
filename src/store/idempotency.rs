//! Replies stored with idempotency keys: the keys an activation reads, and the batched lookup
//! the registries make of a key that may be stored.
//!
//! A live actor holds a digest of every key stored for its entity ([`stored_keys`], read when
//! it activates; see `actors::idempotency`), so a new key needs no lookup. A key that may be
//! stored (a retry), and every key of an entity whose actor is not live, is still loading, or
//! has too many keys to hold, is looked up. Asked one query at a time, those lookups were
//! about a sixth of the node's CPU in the payments profile when every keyed command made one
//! (BENCHMARKS.md section 4), and as much again in PostgreSQL, which shares the machine.
//! [`ReplyLookups`] answers the same question for many commands with one statement: while a
//! lookup is in flight, the next callers queue, and the next free lookup takes them all. A lone
//! caller is looked up at once, so a quiet node adds no wait.
//!
//! The answer is as fresh as one query per command would give: each lookup runs after its
//! callers asked (the registry's fence compares the actor's activation with the moment the
//! caller asked, which is no later than the moment the store was read).

use std::collections::HashMap;
use std::sync::Arc;

use actors::registry::StoredReply;
use actors::StoredKeys;
use sqlx::QueryBuilder;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{Db, StoreError};
use crate::on_db;

/// Keys one statement looks up (two bound parameters each, plus the kind).
const KEYS_PER_LOOKUP: usize = 512;

/// Lookups in flight at once; callers beyond them queue for the next.
const LOOKUPS_IN_FLIGHT: usize = 4;

/// Callers waiting for a lookup, at most; beyond it callers wait to queue.
const QUEUE_MAX: usize = 16_384;

type Answer = Result<Option<StoredReply>, String>;

struct Wanted {
    actor_id: String,
    key: String,
    answer: oneshot::Sender<Answer>,
}

/// Batched lookups of stored replies for one actor kind.
#[derive(Clone)]
pub struct ReplyLookups {
    queue: mpsc::Sender<Wanted>,
}

impl ReplyLookups {
    /// Start the lookup task of `kind` ("wallet", "conversation"). Must be called inside a
    /// tokio runtime; the task ends when the last handle is dropped.
    pub fn start(db: Db, kind: &'static str) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUE_MAX);
        tokio::spawn(run(db, kind, waiting));
        ReplyLookups { queue }
    }

    /// The stored reply for `key` on one actor, if a command with it committed.
    pub async fn get(&self, actor_id: &str, key: &str) -> Answer {
        let (answer, reply) = oneshot::channel();
        let wanted = Wanted {
            actor_id: actor_id.to_owned(),
            key: key.to_owned(),
            answer,
        };
        self.queue
            .send(wanted)
            .await
            .map_err(|_| "reply lookups have stopped".to_owned())?;
        reply
            .await
            .map_err(|_| "reply lookup was dropped".to_owned())?
    }
}

async fn run(db: Db, kind: &'static str, mut waiting: mpsc::Receiver<Wanted>) {
    let slots = Arc::new(Semaphore::new(LOOKUPS_IN_FLIGHT));
    loop {
        // Take a slot before the callers: while every slot is busy, callers pile up in the
        // queue, and the next lookup takes them together.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < KEYS_PER_LOOKUP {
            match waiting.try_recv() {
                Ok(wanted) => batch.push(wanted),
                Err(_) => break,
            }
        }
        let db = db.clone();
        tokio::spawn(async move {
            let found = lookup(&db, kind, &batch).await;
            answer(batch, found);
            drop(slot);
        });
    }
}

/// Send each caller its answer; a failed lookup fails each of its callers.
fn answer(batch: Vec<Wanted>, found: Result<HashMap<(String, String), StoredReply>, StoreError>) {
    match found {
        Ok(found) => {
            for wanted in batch {
                let reply = found
                    .get(&(wanted.actor_id, wanted.key))
                    .map(|stored| StoredReply {
                        fingerprint: stored.fingerprint.clone(),
                        reply: stored.reply.clone(),
                    });
                let _ = wanted.answer.send(Ok(reply));
            }
        }
        Err(error) => {
            tracing::warn!(%error, keys = batch.len(), "stored reply lookup failed");
            let error = error.to_string();
            for wanted in batch {
                let _ = wanted.answer.send(Err(error.clone()));
            }
        }
    }
}

/// An actor's stored keys, one more than an activation holds at most.
const STORED_KEYS: &str = "SELECT key FROM idempotency WHERE kind = $1 AND actor_id = $2 LIMIT $3";

/// The keys stored for one actor, if it has at most `max` of them (read after its activation
/// raised its epoch: see `actors::idempotency`). Found through the primary key's prefix.
pub async fn stored_keys(
    db: &Db,
    kind: &str,
    actor_id: &str,
    max: usize,
) -> Result<StoredKeys, StoreError> {
    let limit = i64::try_from(max.saturating_add(1)).unwrap_or(i64::MAX);
    let keys: Vec<String> = on_db!(db, pool => sqlx::query_scalar(STORED_KEYS)
        .bind(kind)
        .bind(actor_id)
        .bind(limit)
        .fetch_all(pool)
        .await?);
    Ok(StoredKeys::from_keys(keys.iter().map(String::as_str), max))
}

/// The lookup on PostgreSQL: the keys travel as two arrays (one statement shape, prepared once,
/// whatever the batch size), and each is found through the primary key. The `LIMIT` keeps the
/// planner from flattening the lateral subquery into a join it could hash: on a table whose
/// statistics lag its growth (any busy node's first minutes), it did, and each lookup read
/// every stored key of the kind (BENCHMARKS.md section 3).
const PG_LOOKUP: &str = "SELECT v.actor_id, v.key, r.fingerprint, r.reply \
     FROM UNNEST($2::text[], $3::text[]) AS v(actor_id, key) \
     CROSS JOIN LATERAL (SELECT i.fingerprint, i.reply FROM idempotency i \
         WHERE i.kind = $1 AND i.actor_id = v.actor_id AND i.key = v.key LIMIT 1) AS r";

/// The lookup on SQLite, after `prefix` (`EXPLAIN QUERY PLAN`, in a test).
fn sqlite_lookup<'a>(
    prefix: &str,
    kind: &'a str,
    batch: &'a [Wanted],
) -> QueryBuilder<'a, sqlx::Sqlite> {
    let mut query = QueryBuilder::new(prefix);
    query.push("SELECT i.actor_id, i.key, i.fingerprint, i.reply FROM idempotency i JOIN (");
    query.push_values(batch, |mut row, wanted| {
        row.push_bind(&wanted.actor_id).push_bind(&wanted.key);
    });
    query.push(") AS v ON i.actor_id = v.column1 AND i.key = v.column2 AND i.kind = ");
    query.push_bind(kind);
    query
}

/// The stored replies among `batch`'s keys, by (actor id, key).
async fn lookup(
    db: &Db,
    kind: &str,
    batch: &[Wanted],
) -> Result<HashMap<(String, String), StoredReply>, StoreError> {
    let rows: Vec<(String, String, String, Vec<u8>)> = match db {
        Db::Postgres(pool) => {
            let actors: Vec<&str> = batch.iter().map(|w| w.actor_id.as_str()).collect();
            let keys: Vec<&str> = batch.iter().map(|w| w.key.as_str()).collect();
            sqlx::query_as(PG_LOOKUP)
                .bind(kind)
                .bind(actors)
                .bind(keys)
                .fetch_all(pool)
                .await?
        }
        // SQLite looks each row of the VALUES up through the primary key by itself.
        Db::Sqlite(pool) => {
            // One statement shape per batch size: not worth a prepared statement each.
            sqlite_lookup("", kind, batch)
                .build_query_as()
                .persistent(batch.len() == 1)
                .fetch_all(pool)
                .await?
        }
    };
    Ok(rows
        .into_iter()
        .map(|(actor_id, key, fingerprint, reply)| {
            ((actor_id, key), StoredReply { fingerprint, reply })
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::on_db;
    use crate::store::{now_ms, plans};

    async fn store_with(rows: &[(&str, &str, &str, &str)]) -> (crate::store::TestStore, Db) {
        let (dir, db) = crate::store::test_db().await;
        for (kind, actor_id, key, fingerprint) in rows {
            on_db!(&db, pool => sqlx::query(
                "INSERT INTO idempotency (kind, actor_id, key, fingerprint, reply, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(kind)
            .bind(actor_id)
            .bind(key)
            .bind(fingerprint)
            .bind(format!("reply of {key}").into_bytes())
            .bind(now_ms())
            .execute(pool)
            .await
            .map(drop)
            .unwrap());
        }
        (dir, db)
    }

    /// 50,000 wallet keys, `prefix` and a number, spread over actors `u0` to `u499`.
    async fn fill(db: &Db, prefix: &str) {
        let reply = match db {
            Db::Postgres(_) => "'\\x00'::bytea",
            Db::Sqlite(_) => "X'00'",
        };
        let fill = format!(
            "INSERT INTO idempotency (kind, actor_id, key, fingerprint, reply, created_at) \
             SELECT 'wallet', 'u' || (n % 500), '{prefix}' || n, 'f', {reply}, 0 FROM {}",
            plans::ONE_TO_50000
        );
        on_db!(db, pool => sqlx::query(&fill).execute(pool).await.map(drop).unwrap());
    }

    #[tokio::test]
    async fn many_callers_at_once_each_get_their_own_key_answered() {
        let (_dir, db) = store_with(&[
            ("wallet", "u1", "k1", "f1"),
            ("wallet", "u2", "k1", "f2"),
            ("conversation", "u1", "k2", "f3"),
        ])
        .await;
        let lookups = ReplyLookups::start(db, "wallet");
        // More callers than one statement takes, asked at once, with repeats and misses.
        let mut asks = Vec::new();
        for i in 0..(KEYS_PER_LOOKUP * 2 + 7) {
            let (actor, key) = match i % 5 {
                0 => ("u1", "k1".to_owned()),
                1 => ("u2", "k1".to_owned()),
                // Stored, but for another kind.
                2 => ("u1", "k2".to_owned()),
                // Another actor's key.
                3 => ("u3", "k1".to_owned()),
                _ => ("u1", format!("missing-{i}")),
            };
            let lookups = lookups.clone();
            asks.push(tokio::spawn(async move {
                (i, lookups.get(actor, &key).await.unwrap())
            }));
        }
        for ask in asks {
            let (i, found) = ask.await.unwrap();
            match i % 5 {
                0 => {
                    let found = found.unwrap();
                    assert_eq!(found.fingerprint, "f1");
                    assert_eq!(found.reply, b"reply of k1");
                }
                1 => assert_eq!(found.unwrap().fingerprint, "f2"),
                _ => assert!(found.is_none(), "caller {i} got a reply that is not theirs"),
            }
        }
    }

    #[tokio::test]
    async fn a_failed_lookup_fails_its_callers_and_the_next_one_works_again() {
        let (_dir, db) = store_with(&[("wallet", "u1", "k1", "f1")]).await;
        let lookups = ReplyLookups::start(db.clone(), "wallet");
        on_db!(&db, pool => sqlx::query("ALTER TABLE idempotency RENAME TO idempotency_away")
            .execute(pool)
            .await
            .map(drop)
            .unwrap());
        let failed = lookups.get("u1", "k1").await;
        assert!(
            failed.is_err(),
            "a lookup against a missing table answered {failed:?}"
        );
        on_db!(&db, pool => sqlx::query("ALTER TABLE idempotency_away RENAME TO idempotency")
            .execute(pool)
            .await
            .map(drop)
            .unwrap());
        let found = lookups.get("u1", "k1").await.unwrap().unwrap();
        assert_eq!(found.fingerprint, "f1");
    }

    /// However many keys are stored, and however stale the table's statistics, a lookup finds
    /// each key through the primary key: it must not read the kind's other keys. (A hash join
    /// over the whole table was PostgreSQL's pick while its statistics lagged, and made each
    /// lookup cost as much as the table is long.)
    #[tokio::test]
    async fn a_lookup_reads_each_key_through_the_primary_key_however_large_the_table() {
        let (_dir, db) = store_with(&[]).await;
        // Far more rows than the statistics know of: none were gathered since the table was made.
        fill(&db, "k").await;
        let batch: Vec<Wanted> = (0..KEYS_PER_LOOKUP)
            .map(|n| Wanted {
                actor_id: format!("u{}", n % 500),
                key: format!("k{}", n * 97),
                answer: oneshot::channel().0,
            })
            .collect();
        let plan = match &db {
            Db::Postgres(pool) => {
                let actors: Vec<&str> = batch.iter().map(|w| w.actor_id.as_str()).collect();
                let keys: Vec<&str> = batch.iter().map(|w| w.key.as_str()).collect();
                let plan: Vec<(String,)> = sqlx::query_as(&format!("EXPLAIN {PG_LOOKUP}"))
                    .bind("wallet")
                    .bind(actors)
                    .bind(keys)
                    .fetch_all(pool)
                    .await
                    .unwrap();
                plans::text(plan, |(line,)| line)
            }
            Db::Sqlite(pool) => {
                let plan: Vec<(i64, i64, i64, String)> =
                    sqlite_lookup("EXPLAIN QUERY PLAN ", "wallet", &batch)
                        .build_query_as()
                        .fetch_all(pool)
                        .await
                        .unwrap();
                plans::text(plan, |row| row.3)
            }
        };
        plans::assert_by_key(
            &plan,
            "idempotency",
            "idempotency_pkey",
            "sqlite_autoindex_idempotency_1",
        );
        // And the answers are still each caller's own.
        let lookups = ReplyLookups::start(db, "wallet");
        let found = lookups.get("u7", "k7").await.unwrap().unwrap();
        assert_eq!(found.fingerprint, "f");
        assert!(lookups.get("u8", "k7").await.unwrap().is_none());
    }

    /// An activation reads its own actor's keys, of its own kind, through the primary key's
    /// prefix, and none at all past the bound.
    #[tokio::test]
    async fn an_activation_reads_the_digests_of_exactly_its_own_keys_through_the_primary_key() {
        let (_dir, db) = store_with(&[
            ("wallet", "u1", "k1", "f"),
            ("wallet", "u1", "k2", "f"),
            ("wallet", "u2", "k3", "f"),
            ("conversation", "u1", "k4", "f"),
        ])
        .await;
        let StoredKeys::Digests(digests) = stored_keys(&db, "wallet", "u1", 2).await.unwrap()
        else {
            panic!("two keys fit a bound of two");
        };
        let expected = ["k1", "k2"].map(actors::key_digest);
        assert_eq!(digests, expected.into_iter().collect());
        assert_eq!(
            stored_keys(&db, "wallet", "u1", 1).await.unwrap(),
            StoredKeys::TooMany
        );
        assert_eq!(
            stored_keys(&db, "wallet", "nobody", 1).await.unwrap(),
            StoredKeys::Digests(Default::default())
        );

        fill(&db, "x").await;
        let plan = match &db {
            Db::Postgres(pool) => {
                let plan: Vec<(String,)> = sqlx::query_as(&format!("EXPLAIN {STORED_KEYS}"))
                    .bind("wallet")
                    .bind("u7")
                    .bind(10_001_i64)
                    .fetch_all(pool)
                    .await
                    .unwrap();
                plans::text(plan, |(line,)| line)
            }
            Db::Sqlite(pool) => {
                let plan: Vec<(i64, i64, i64, String)> =
                    sqlx::query_as(&format!("EXPLAIN QUERY PLAN {STORED_KEYS}"))
                        .bind("wallet")
                        .bind("u7")
                        .bind(10_001_i64)
                        .fetch_all(pool)
                        .await
                        .unwrap();
                plans::text(plan, |row| row.3)
            }
        };
        // Through the key's prefix; a bitmap scan of it is fine here (a range, not probes).
        let by_key =
            plan.contains("idempotency_pkey") || plan.contains("sqlite_autoindex_idempotency_1");
        assert!(by_key, "idempotency is not read through its key:\n{plan}");
        for whole_table in ["Seq Scan", "SCAN idempotency"] {
            assert!(!plan.contains(whole_table), "read whole:\n{plan}");
        }
        let StoredKeys::Digests(digests) = stored_keys(&db, "wallet", "u7", 1000).await.unwrap()
        else {
            panic!("100 keys fit a bound of 1000");
        };
        assert_eq!(digests.len(), 100);
    }
}
