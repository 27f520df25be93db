//! Multi-row writes for the hot events of a journal batch.
//!
//! A batch of a thousand payments written one statement at a time is some ten thousand round
//! trips to the database, one after the other, while the next batch waits: the profile in
//! BENCHMARKS.md showed the node and PostgreSQL each half idle, waiting on each other. The
//! events that dominate real traffic (transfers, feed entries, posted messages, their
//! notifications and the idempotency records) are therefore staged here and written with a
//! few multi-row statements per batch instead.
//!
//! Order is kept: an event that is not staged makes the batch write what is staged first, and
//! then runs its own statements. Within one flush, staged writes touch disjoint rows or are
//! commutative (balance deltas, sequence counters), except the thread counters, which are
//! absolute and monotonic, so the last one staged is the one written, as it would be if each
//! were written in turn. The results the rest of the node reads back (each transfer's credited
//! account version, each feed entry's sequence number) are the ones one-at-a-time writes would
//! have given: an account moved `n` times in a flush ends `n` versions later, and its moves
//! take those versions in order.

use std::collections::BTreeMap;

use actors::conversation::{Event as ConversationEvent, Message};
use actors::journal::{ActorStamp, IdempotencyRecord};
use actors::money::Currency;
use actors::wallet::{FeedEntry, Transfer};
use sqlx::QueryBuilder;

use super::conversations::seq_i64;
use super::journal::Tx;
use super::notifications::NewNotification;
use super::now_ms;
use crate::on_tx;

/// Most bound parameters in one statement: under SQLite's limit (32,766) and PostgreSQL's
/// (65,535).
const PARAMS_MAX: usize = 30_000;

/// Rows of `columns` parameters each that fit in one statement.
const fn rows_per_statement(columns: usize) -> usize {
    PARAMS_MAX / columns
}

/// An account as the ledger keys it: owner kind, owner id, currency.
type AccountKey<'a> = (&'static str, &'a str, Currency);

#[derive(Debug, Default, Clone, Copy)]
struct Moves {
    delta: i64,
    count: i64,
}

/// The staged writes of part of a batch, in the order they were staged.
#[derive(Default)]
pub struct Staged<'a> {
    transfers: Vec<&'a Transfer>,
    accounts: BTreeMap<AccountKey<'a>, Moves>,
    /// Each transfer's credited account and the index of its credit among that account's moves.
    credits: Vec<(&'a Transfer, AccountKey<'a>, i64)>,
    /// Feed entries, their encoded event, and their index among their user's entries.
    feed: Vec<(&'a FeedEntry, String, i64)>,
    feed_counts: BTreeMap<&'a str, i64>,
    messages: Vec<&'a Message>,
    /// The last conversation event staged per thread: its counters are the thread's.
    threads: BTreeMap<&'a str, &'a ConversationEvent>,
    thread_events: Vec<(&'a ConversationEvent, String)>,
    notifications: Vec<NewNotification>,
    idempotency: Vec<(&'a ActorStamp, &'a IdempotencyRecord)>,
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, sqlx::Error> {
    serde_json::to_string(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

impl<'a> Staged<'a> {
    /// True when nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.transfers.is_empty()
            && self.feed.is_empty()
            && self.messages.is_empty()
            && self.threads.is_empty()
            && self.notifications.is_empty()
            && self.idempotency.is_empty()
    }

    fn move_account(&mut self, key: AccountKey<'a>, delta: i64) -> i64 {
        let moves = self.accounts.entry(key).or_default();
        moves.delta += delta;
        moves.count += 1;
        moves.count - 1
    }

    /// A posted transfer: its row and both balance moves.
    pub fn transfer(&mut self, transfer: &'a Transfer) {
        let currency = transfer.money.currency();
        let (debit_kind, debit_id) = transfer.debit.parts();
        let (credit_kind, credit_id) = transfer.credit.parts();
        let minor = transfer.money.minor();
        self.move_account((debit_kind, debit_id, currency), -minor);
        let credit = (credit_kind, credit_id, currency);
        let index = self.move_account(credit, minor);
        self.transfers.push(transfer);
        self.credits.push((transfer, credit, index));
    }

    /// A feed entry: the user's next feed sequence number and the entry's row.
    pub fn feed(&mut self, entry: &'a FeedEntry) -> Result<(), sqlx::Error> {
        let count = self.feed_counts.entry(entry.user_id.as_str()).or_default();
        let index = *count;
        *count += 1;
        self.feed.push((entry, encode(&entry.event)?, index));
        Ok(())
    }

    /// A posted message: its row.
    pub fn message(&mut self, message: &'a Message) {
        self.messages.push(message);
    }

    /// What every conversation event writes: the thread's counters and the sequenced push.
    pub fn thread_event(&mut self, event: &'a ConversationEvent) -> Result<(), sqlx::Error> {
        self.threads.insert(event.thread_id.as_str(), event);
        self.thread_events.push((event, encode(&event.push())?));
        Ok(())
    }

    pub fn notification(&mut self, notification: NewNotification) {
        self.notifications.push(notification);
    }

    pub fn idempotency(&mut self, actor: &'a ActorStamp, record: &'a IdempotencyRecord) {
        self.idempotency.push((actor, record));
    }

    /// Write everything staged, and leave nothing staged.
    pub async fn flush(&mut self, mut tx: Tx<'_>) -> Result<(), sqlx::Error> {
        if self.is_empty() {
            return Ok(());
        }
        let staged = std::mem::take(self);
        staged.write_transfers(tx.reborrow()).await?;
        staged.write_accounts(tx.reborrow()).await?;
        staged.write_feed(tx.reborrow()).await?;
        staged.write_messages(tx.reborrow()).await?;
        staged.write_threads(tx.reborrow()).await?;
        staged.write_notifications(tx.reborrow()).await?;
        staged.write_idempotency(tx).await?;
        Ok(())
    }

    async fn write_transfers(&self, tx: Tx<'_>) -> Result<(), sqlx::Error> {
        on_tx!(tx, conn => {
            for chunk in self.transfers.chunks(rows_per_statement(11)) {
                let mut query = QueryBuilder::new(
                    "INSERT INTO transfers (id, kind, debit_kind, debit_id, credit_kind, \
                     credit_id, currency, amount, reference, description, created_at) ");
                query.push_values(chunk, |mut row, t| {
                    let (debit_kind, debit_id) = t.debit.parts();
                    let (credit_kind, credit_id) = t.credit.parts();
                    row.push_bind(&t.id)
                        .push_bind(t.kind.as_str())
                        .push_bind(debit_kind)
                        .push_bind(debit_id)
                        .push_bind(credit_kind)
                        .push_bind(credit_id)
                        .push_bind(t.money.currency().code().to_owned())
                        .push_bind(t.money.minor())
                        .push_bind(&t.reference)
                        .push_bind(&t.description)
                        .push_bind(t.at_ms);
                });
                query.build().persistent(false).execute(&mut *conn).await?;
            }
        });
        Ok(())
    }

    /// Every account's net move in one statement per kind of move, then each transfer's
    /// credited version. A user's account is debited only if it exists (its wallet saw the
    /// balance), and the table's check refuses a balance below what is held; an upsert cannot
    /// debit, because SQLite checks the candidate row, negative balance and all, before it
    /// resolves the conflict.
    async fn write_accounts(&self, tx: Tx<'_>) -> Result<(), sqlx::Error> {
        if self.accounts.is_empty() {
            return Ok(());
        }
        let (debits, upserts): (Vec<_>, Vec<_>) = self
            .accounts
            .iter()
            .partition(|((kind, _, _), moves)| *kind == "user" && moves.delta < 0);
        let mut rows: Vec<(String, String, String, i64)> = Vec::with_capacity(self.accounts.len());
        on_tx!(tx, conn => {
            for chunk in debits.chunks(rows_per_statement(5)) {
                let mut query = QueryBuilder::new(
                    "UPDATE ledger_accounts SET balance = ledger_accounts.balance + v.column4, \
                     version = ledger_accounts.version + v.column5 FROM (");
                query.push_values(chunk, |mut row, ((kind, id, currency), moves)| {
                    row.push_bind(*kind)
                        .push_bind(*id)
                        .push_bind(currency.code().to_owned())
                        .push_bind(moves.delta)
                        .push_bind(moves.count);
                });
                query.push(
                    ") AS v WHERE ledger_accounts.owner_kind = v.column1 \
                     AND ledger_accounts.owner_id = v.column2 \
                     AND ledger_accounts.currency = v.column3 \
                     RETURNING ledger_accounts.owner_kind, ledger_accounts.owner_id, \
                     ledger_accounts.currency, ledger_accounts.version");
                let moved: Vec<(String, String, String, i64)> =
                    query.build_query_as().persistent(false).fetch_all(&mut *conn).await?;
                if moved.len() != chunk.len() {
                    // A debited account that does not exist: the wallet never saw it.
                    return Err(sqlx::Error::RowNotFound);
                }
                rows.extend(moved);
            }
            for chunk in upserts.chunks(rows_per_statement(5)) {
                let mut query = QueryBuilder::new(
                    "INSERT INTO ledger_accounts (owner_kind, owner_id, currency, balance, held, \
                     version) ");
                query.push_values(chunk, |mut row, ((kind, id, currency), moves)| {
                    row.push_bind(*kind)
                        .push_bind(*id)
                        .push_bind(currency.code().to_owned())
                        .push_bind(moves.delta)
                        .push("0")
                        .push_bind(moves.count);
                });
                query.push(
                    " ON CONFLICT (owner_kind, owner_id, currency) DO UPDATE \
                     SET balance = ledger_accounts.balance + excluded.balance, \
                     version = ledger_accounts.version + excluded.version \
                     RETURNING owner_kind, owner_id, currency, version");
                let moved: Vec<(String, String, String, i64)> =
                    query.build_query_as().persistent(false).fetch_all(&mut *conn).await?;
                rows.extend(moved);
            }
        });
        let versions: BTreeMap<(&str, &str, &str), i64> = rows
            .iter()
            .map(|(kind, id, currency, version)| {
                ((kind.as_str(), id.as_str(), currency.as_str()), *version)
            })
            .collect();
        for (transfer, key @ (kind, id, currency), index) in &self.credits {
            let last = versions.get(&(*kind, *id, currency.code()));
            if let (Some(last), Some(moves)) = (last, self.accounts.get(key)) {
                let _ = transfer
                    .credit_version
                    .set(last - (moves.count - 1 - index));
            }
        }
        Ok(())
    }

    /// Each user's feed counter moves once by their number of entries; the entries take the
    /// numbers in between, in order.
    async fn write_feed(&self, tx: Tx<'_>) -> Result<(), sqlx::Error> {
        if self.feed.is_empty() {
            return Ok(());
        }
        let counts: Vec<(&str, i64)> = self.feed_counts.iter().map(|(u, n)| (*u, *n)).collect();
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        let now = now_ms();
        on_tx!(tx, conn => {
            for chunk in counts.chunks(rows_per_statement(2)) {
                let mut query = QueryBuilder::new(
                    "UPDATE users SET feed_seq = users.feed_seq + v.column2 FROM (");
                query.push_values(chunk, |mut row, (user, count)| {
                    row.push_bind(*user).push_bind(*count);
                });
                query.push(") AS v WHERE users.id = v.column1 RETURNING users.id, users.feed_seq");
                let rows: Vec<(String, i64)> =
                    query.build_query_as().persistent(false).fetch_all(&mut *conn).await?;
                if rows.len() != chunk.len() {
                    return Err(sqlx::Error::RowNotFound);
                }
                last.extend(rows);
            }
            let mut seqs = Vec::with_capacity(self.feed.len());
            for (entry, _, index) in &self.feed {
                let count = self.feed_counts.get(entry.user_id.as_str()).copied().unwrap_or(0);
                let last = last.get(&entry.user_id).copied().ok_or(sqlx::Error::RowNotFound)?;
                seqs.push(last - (count - 1 - index));
            }
            let rows: Vec<_> = self.feed.iter().zip(seqs).collect();
            for chunk in rows.chunks(rows_per_statement(4)) {
                let mut query =
                    QueryBuilder::new("INSERT INTO user_feed (user_id, seq, event, created_at) ");
                query.push_values(chunk, |mut row, ((entry, event, _), seq)| {
                    row.push_bind(&entry.user_id)
                        .push_bind(*seq)
                        .push_bind(event.as_str())
                        .push_bind(now);
                });
                query.build().persistent(false).execute(&mut *conn).await?;
            }
            for ((entry, _, _), seq) in rows {
                let _ = entry.seq.set(u64::try_from(seq).unwrap_or_default());
            }
        });
        Ok(())
    }

    async fn write_messages(&self, tx: Tx<'_>) -> Result<(), sqlx::Error> {
        on_tx!(tx, conn => {
            for chunk in self.messages.chunks(rows_per_statement(12)) {
                let mut query = QueryBuilder::new(
                    "INSERT INTO messages (id, thread_id, seq, sender_id, content, message_type, \
                     media_url, is_moderated, is_flagged, flagged_by, flag_reason, is_read, \
                     is_active, sent_at, record_version, created_at, updated_at) ");
                query.push_values(chunk, |mut row, m| {
                    row.push_bind(&m.id)
                        .push_bind(&m.thread_id)
                        .push_bind(seq_i64(m.seq))
                        .push_bind(&m.sender_id)
                        .push_bind(&m.content)
                        .push_bind(m.message_type.as_str())
                        .push_bind(&m.media_url)
                        .push_bind(m.is_moderated)
                        .push_bind(m.is_flagged)
                        .push_bind(&m.flagged_by)
                        .push_bind(&m.flag_reason)
                        .push("FALSE")
                        .push("TRUE")
                        .push_bind(m.sent_at_ms)
                        .push("1")
                        .push_bind(m.sent_at_ms)
                        .push_bind(m.sent_at_ms);
                });
                query.build().persistent(false).execute(&mut *conn).await?;
            }
        });
        Ok(())
    }

    async fn write_threads(&self, tx: Tx<'_>) -> Result<(), sqlx::Error> {
        let threads: Vec<&ConversationEvent> = self.threads.values().copied().collect();
        on_tx!(tx, conn => {
            for chunk in threads.chunks(rows_per_statement(5)) {
                let mut query = QueryBuilder::new(
                    "UPDATE message_threads SET last_seq = v.column2, message_count = v.column3, \
                     last_message_at = v.column4, updated_at = v.column5 FROM (");
                query.push_values(chunk, |mut row, e| {
                    row.push_bind(&e.thread_id)
                        .push_bind(seq_i64(e.seq))
                        .push_bind(seq_i64(e.message_count))
                        .push_bind(e.last_message_at_ms)
                        .push_bind(e.at_ms);
                });
                query.push(") AS v WHERE message_threads.id = v.column1");
                query.build().persistent(false).execute(&mut *conn).await?;
            }
            for chunk in self.thread_events.chunks(rows_per_statement(4)) {
                let mut query = QueryBuilder::new(
                    "INSERT INTO thread_events (thread_id, seq, event, created_at) ");
                query.push_values(chunk, |mut row, (e, push)| {
                    row.push_bind(&e.thread_id)
                        .push_bind(seq_i64(e.seq))
                        .push_bind(push.as_str())
                        .push_bind(e.at_ms);
                });
                query.build().persistent(false).execute(&mut *conn).await?;
            }
        });
        Ok(())
    }

    async fn write_notifications(&self, tx: Tx<'_>) -> Result<(), sqlx::Error> {
        let data: Vec<String> = self
            .notifications
            .iter()
            .map(|n| n.data.to_string())
            .collect();
        let rows: Vec<_> = self.notifications.iter().zip(&data).collect();
        on_tx!(tx, conn => {
            for chunk in rows.chunks(rows_per_statement(7)) {
                let mut query = QueryBuilder::new(
                    "INSERT INTO notifications (id, user_id, kind, title, body, data, seen_at, \
                     created_at) ");
                query.push_values(chunk, |mut row, (n, data)| {
                    row.push_bind(&n.id)
                        .push_bind(&n.user_id)
                        .push_bind(&n.kind)
                        .push_bind(&n.title)
                        .push_bind(&n.body)
                        .push_bind(data.as_str())
                        .push("NULL")
                        .push_bind(n.created_at);
                });
                query.build().persistent(false).execute(&mut *conn).await?;
            }
        });
        Ok(())
    }

    async fn write_idempotency(&self, tx: Tx<'_>) -> Result<(), sqlx::Error> {
        let now = now_ms();
        on_tx!(tx, conn => {
            for chunk in self.idempotency.chunks(rows_per_statement(6)) {
                let mut query = QueryBuilder::new(
                    "INSERT INTO idempotency (kind, actor_id, key, fingerprint, reply, \
                     created_at) ");
                query.push_values(chunk, |mut row, (actor, record)| {
                    row.push_bind(actor.kind)
                        .push_bind(&actor.id)
                        .push_bind(&record.key)
                        .push_bind(&record.fingerprint)
                        .push_bind(&record.reply)
                        .push_bind(now);
                });
                query.build().persistent(false).execute(&mut *conn).await?;
            }
        });
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::sync::{Arc, OnceLock};

    use actors::money::Money;
    use actors::wallet::{Owner, SystemAccount, TransferKind};

    use super::*;
    use crate::store::journal::to_tx;
    use crate::store::Db;

    fn transfer(id: &str, debit: Owner, credit: Owner, minor: i64) -> Transfer {
        Transfer {
            id: id.into(),
            kind: TransferKind::Payment,
            debit,
            credit,
            money: Money::from_minor(minor, Currency::EVG).unwrap(),
            reference: None,
            description: None,
            at_ms: 1,
            credit_version: Arc::new(OnceLock::new()),
        }
    }

    fn user(id: &str) -> Owner {
        Owner::User(id.into())
    }

    fn balance_event() -> protocol::Event {
        protocol::Event::Balance {
            currency: "EVG".into(),
            available: "0".into(),
            total: "0".into(),
        }
    }

    async fn sqlite() -> (tempfile::TempDir, sqlx::SqlitePool) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bulk.db").display());
        let Db::Sqlite(pool) = Db::connect(&url, 1).await.unwrap() else {
            unreachable!("a sqlite URL opens SQLite")
        };
        for id in ["u1", "u2"] {
            sqlx::query(
                "INSERT INTO users (id, email, email_lower, fullname, role_id, created_at, \
                 updated_at) VALUES ($1, $1, $1, $1, 'user', 0, 0)",
            )
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        }
        sqlx::query(
            "INSERT INTO ledger_accounts (owner_kind, owner_id, currency, balance, held, version) \
             VALUES ('user', 'u1', 'EVG', 100, 0, 7)",
        )
        .execute(&pool)
        .await
        .unwrap();
        (dir, pool)
    }

    /// One flush must leave what the same events written one at a time would: the same
    /// balances and versions, each transfer holding the credited version of its own move, and
    /// each feed entry its own gap-free number.
    #[tokio::test]
    async fn a_flush_reads_back_what_one_at_a_time_writes_would() {
        let (_dir, pool) = sqlite().await;
        let transfers = [
            transfer("t1", user("u1"), user("u2"), 10),
            transfer("t2", user("u1"), user("u2"), 20),
            transfer("t3", Owner::System(SystemAccount::CashIn), user("u2"), 5),
            transfer("t4", user("u2"), user("u1"), 1),
        ];
        let feed: Vec<FeedEntry> = ["u1", "u2", "u1", "u1", "u2"]
            .iter()
            .map(|u| FeedEntry::new(u, balance_event()))
            .collect();
        let mut staged = Staged::default();
        for t in &transfers {
            staged.transfer(t);
        }
        for entry in &feed {
            staged.feed(entry).unwrap();
        }
        let mut tx = pool.begin().await.unwrap();
        staged.flush(to_tx(&mut tx)).await.unwrap();
        tx.commit().await.unwrap();
        assert!(staged.is_empty());

        // u2 is new: credited three times, then debited (version 4); u1 was at version 7,
        // debited twice and credited once (version 10).
        let versions: Vec<i64> = transfers
            .iter()
            .map(|t| *t.credit_version.get().unwrap())
            .collect();
        assert_eq!(versions, [1, 2, 3, 10]);
        let accounts: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT owner_id, balance, version FROM ledger_accounts ORDER BY owner_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            accounts,
            [
                ("cash_in".to_owned(), -5, 1),
                ("u1".to_owned(), 71, 10),
                ("u2".to_owned(), 34, 4)
            ]
        );
        let seqs: Vec<u64> = feed.iter().map(|e| *e.seq.get().unwrap()).collect();
        assert_eq!(seqs, [1, 1, 2, 3, 2]);
        let stored: Vec<(String, i64)> =
            sqlx::query_as("SELECT user_id, seq FROM user_feed ORDER BY user_id, seq")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            stored,
            [
                ("u1".to_owned(), 1),
                ("u1".to_owned(), 2),
                ("u1".to_owned(), 3),
                ("u2".to_owned(), 1),
                ("u2".to_owned(), 2)
            ]
        );
        let transfers_stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM transfers")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(transfers_stored, 4);
    }

    /// A debit of a user account the store does not have, or one below what the account
    /// holds, fails the flush (and so the batch), as the one-at-a-time UPDATE did.
    #[tokio::test]
    async fn a_debit_the_store_cannot_make_fails_the_flush() {
        let (_dir, pool) = sqlite().await;
        for t in [
            transfer("t1", user("u2"), user("u1"), 1),
            transfer("t2", user("u1"), user("u2"), 101),
        ] {
            let mut staged = Staged::default();
            staged.transfer(&t);
            let mut tx = pool.begin().await.unwrap();
            assert!(staged.flush(to_tx(&mut tx)).await.is_err(), "{}", t.id);
            tx.rollback().await.unwrap();
        }
        let (balance, version): (i64, i64) =
            sqlx::query_as("SELECT balance, version FROM ledger_accounts WHERE owner_id = 'u1'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!((balance, version), (100, 7));
    }
}
