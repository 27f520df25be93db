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
use super::journal::{Refusal, Tx};
use super::notifications::NewNotification;
use super::now_ms;

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
        let t = &self.transfers;
        let currencies: Vec<Currency> = t.iter().map(|t| t.money.currency()).collect();
        Rows::new(t.len())
            .text(t.iter().map(|t| t.id.as_str()))
            .text(t.iter().map(|t| t.kind.as_str()))
            .text(t.iter().map(|t| t.debit.parts().0))
            .text(t.iter().map(|t| t.debit.parts().1))
            .text(t.iter().map(|t| t.credit.parts().0))
            .text(t.iter().map(|t| t.credit.parts().1))
            .text(currencies.iter().map(Currency::code))
            .int(t.iter().map(|t| t.money.minor()))
            .maybe_text(t.iter().map(|t| t.reference.as_deref()))
            .maybe_text(t.iter().map(|t| t.description.as_deref()))
            .int(t.iter().map(|t| t.at_ms))
            .execute(
                tx,
                "INSERT INTO transfers (id, kind, debit_kind, debit_id, credit_kind, credit_id, \
                 currency, amount, reference, description, created_at) {rows}",
            )
            .await
    }

    /// Every account's net move in one statement per kind of move, then each transfer's
    /// credited version. A user's account is debited only if it exists (its wallet saw the
    /// balance), and the table's check refuses a balance below what is held; an upsert cannot
    /// debit, because SQLite checks the candidate row, negative balance and all, before it
    /// resolves the conflict.
    async fn write_accounts(&self, mut tx: Tx<'_>) -> Result<(), sqlx::Error> {
        if self.accounts.is_empty() {
            return Ok(());
        }
        let (debits, upserts): (Vec<_>, Vec<_>) = self
            .accounts
            .iter()
            .partition(|((kind, _, _), moves)| *kind == "user" && moves.delta < 0);
        let mut rows: Vec<(String, String, String, i64)> = account_rows(&debits)
            .fetch(
                tx.reborrow(),
                "UPDATE ledger_accounts SET balance = ledger_accounts.balance + v.column4, \
                 version = ledger_accounts.version + v.column5 FROM {v} \
                 WHERE ledger_accounts.owner_kind = v.column1 \
                 AND ledger_accounts.owner_id = v.column2 \
                 AND ledger_accounts.currency = v.column3 \
                 RETURNING ledger_accounts.owner_kind, ledger_accounts.owner_id, \
                 ledger_accounts.currency, ledger_accounts.version",
            )
            .await?;
        if rows.len() != debits.len() {
            // A debited account that does not exist: the wallet never saw it.
            return Err(Refusal::error("a debited account does not exist"));
        }
        let upserted: Vec<(String, String, String, i64)> = account_rows(&upserts)
            .int(upserts.iter().map(|_| 0))
            .fetch(
                tx,
                "INSERT INTO ledger_accounts (owner_kind, owner_id, currency, balance, version, \
                 held) {rows} \
                 ON CONFLICT (owner_kind, owner_id, currency) DO UPDATE \
                 SET balance = ledger_accounts.balance + excluded.balance, \
                 version = ledger_accounts.version + excluded.version \
                 RETURNING owner_kind, owner_id, currency, version",
            )
            .await?;
        rows.extend(upserted);
        let versions: BTreeMap<(&str, &str, &str), i64> = rows
            .iter()
            .map(|(kind, id, currency, version)| {
                ((kind.as_str(), id.as_str(), currency.as_str()), *version)
            })
            .collect();
        for (transfer, key @ (kind, id, currency), index) in &self.credits {
            let last = versions.get(&(*kind, *id, currency.code()));
            if let (Some(last), Some(moves)) = (last, self.accounts.get(key)) {
                transfer
                    .credit_version
                    .set(last - (moves.count - 1 - index));
            }
        }
        Ok(())
    }

    /// Each user's feed counter moves once by their number of entries; the entries take the
    /// numbers in between, in order.
    async fn write_feed(&self, mut tx: Tx<'_>) -> Result<(), sqlx::Error> {
        if self.feed.is_empty() {
            return Ok(());
        }
        let counts = &self.feed_counts;
        let moved: Vec<(String, i64)> = Rows::new(counts.len())
            .text(counts.keys().copied())
            .int(counts.values().copied())
            .fetch(
                tx.reborrow(),
                "UPDATE users SET feed_seq = users.feed_seq + v.column2 FROM {v} \
                 WHERE users.id = v.column1 RETURNING users.id, users.feed_seq",
            )
            .await?;
        if moved.len() != counts.len() {
            return Err(Refusal::error("a feed entry's user does not exist"));
        }
        let last: BTreeMap<String, i64> = moved.into_iter().collect();
        let mut seqs = Vec::with_capacity(self.feed.len());
        for (entry, _, index) in &self.feed {
            let count = counts.get(entry.user_id.as_str()).copied().unwrap_or(0);
            let last = last
                .get(&entry.user_id)
                .copied()
                .ok_or(sqlx::Error::RowNotFound)?;
            seqs.push(last - (count - 1 - index));
        }
        let now = now_ms();
        let feed = &self.feed;
        Rows::new(feed.len())
            .text(feed.iter().map(|(entry, _, _)| entry.user_id.as_str()))
            .int(seqs.iter().copied())
            .text(feed.iter().map(|(_, event, _)| event.as_str()))
            .int(feed.iter().map(|_| now))
            .execute(
                tx,
                "INSERT INTO user_feed (user_id, seq, event, created_at) {rows}",
            )
            .await?;
        for ((entry, _, _), seq) in feed.iter().zip(seqs) {
            entry.seq.set(seq);
        }
        Ok(())
    }

    async fn write_messages(&self, tx: Tx<'_>) -> Result<(), sqlx::Error> {
        let m = &self.messages;
        Rows::new(m.len())
            .text(m.iter().map(|m| m.id.as_str()))
            .text(m.iter().map(|m| m.thread_id.as_str()))
            .int(m.iter().map(|m| seq_i64(m.seq)))
            .text(m.iter().map(|m| m.sender_id.as_str()))
            .text(m.iter().map(|m| m.content.as_str()))
            .text(m.iter().map(|m| m.message_type.as_str()))
            .maybe_text(m.iter().map(|m| m.media_url.as_deref()))
            .bool(m.iter().map(|m| m.is_moderated))
            .bool(m.iter().map(|m| m.is_flagged))
            .maybe_text(m.iter().map(|m| m.flagged_by.as_deref()))
            .maybe_text(m.iter().map(|m| m.flag_reason.as_deref()))
            .bool(m.iter().map(|_| false))
            .bool(m.iter().map(|_| true))
            .int(m.iter().map(|m| m.sent_at_ms))
            .int(m.iter().map(|_| 1))
            .int(m.iter().map(|m| m.sent_at_ms))
            .int(m.iter().map(|m| m.sent_at_ms))
            .execute(
                tx,
                "INSERT INTO messages (id, thread_id, seq, sender_id, content, message_type, \
                 media_url, is_moderated, is_flagged, flagged_by, flag_reason, is_read, \
                 is_active, sent_at, record_version, created_at, updated_at) {rows}",
            )
            .await
    }

    async fn write_threads(&self, mut tx: Tx<'_>) -> Result<(), sqlx::Error> {
        let threads = &self.threads;
        Rows::new(threads.len())
            .text(threads.keys().copied())
            .int(threads.values().map(|e| seq_i64(e.seq)))
            .int(threads.values().map(|e| seq_i64(e.message_count)))
            .maybe_int(threads.values().map(|e| e.last_message_at_ms))
            .int(threads.values().map(|e| e.at_ms))
            .execute(
                tx.reborrow(),
                "UPDATE message_threads SET last_seq = v.column2, message_count = v.column3, \
                 last_message_at = v.column4, updated_at = v.column5 FROM {v} \
                 WHERE message_threads.id = v.column1",
            )
            .await?;
        let events = &self.thread_events;
        Rows::new(events.len())
            .text(events.iter().map(|(e, _)| e.thread_id.as_str()))
            .int(events.iter().map(|(e, _)| seq_i64(e.seq)))
            .text(events.iter().map(|(_, push)| push.as_str()))
            .int(events.iter().map(|(e, _)| e.at_ms))
            .execute(
                tx,
                "INSERT INTO thread_events (thread_id, seq, event, created_at) {rows}",
            )
            .await
    }

    async fn write_notifications(&self, tx: Tx<'_>) -> Result<(), sqlx::Error> {
        let n = &self.notifications;
        let data: Vec<String> = n.iter().map(|n| n.data.to_string()).collect();
        Rows::new(n.len())
            .text(n.iter().map(|n| n.id.as_str()))
            .text(n.iter().map(|n| n.user_id.as_str()))
            .text(n.iter().map(|n| n.kind.as_str()))
            .text(n.iter().map(|n| n.title.as_str()))
            .text(n.iter().map(|n| n.body.as_str()))
            .text(data.iter().map(String::as_str))
            .maybe_int(n.iter().map(|_| None))
            .int(n.iter().map(|n| n.created_at))
            .execute(
                tx,
                "INSERT INTO notifications (id, user_id, kind, title, body, data, seen_at, \
                 created_at) {rows}",
            )
            .await
    }

    async fn write_idempotency(&self, tx: Tx<'_>) -> Result<(), sqlx::Error> {
        let now = now_ms();
        let records = &self.idempotency;
        Rows::new(records.len())
            .text(records.iter().map(|(actor, _)| actor.kind))
            .text(records.iter().map(|(actor, _)| actor.id.as_str()))
            .text(records.iter().map(|(_, r)| r.key.as_str()))
            .text(records.iter().map(|(_, r)| r.fingerprint.as_str()))
            .bytes(records.iter().map(|(_, r)| r.reply.as_slice()))
            .int(records.iter().map(|_| now))
            .execute(
                tx,
                "INSERT INTO idempotency (kind, actor_id, key, fingerprint, reply, created_at) \
                 {rows}",
            )
            .await
    }
}

/// Accounts and their net moves, as the rows of a ledger write.
fn account_rows<'r>(moves: &'r [(&'r AccountKey<'r>, &'r Moves)]) -> Rows<'r> {
    Rows::new(moves.len())
        .text(moves.iter().map(|((kind, _, _), _)| *kind))
        .text(moves.iter().map(|((_, id, _), _)| *id))
        .text(moves.iter().map(|((_, _, currency), _)| currency.code()))
        .int(moves.iter().map(|(_, m)| m.delta))
        .int(moves.iter().map(|(_, m)| m.count))
}

/// The values of one column of a multi-row write, a row each.
enum Column<'r> {
    Text(Vec<&'r str>),
    MaybeText(Vec<Option<&'r str>>),
    Int(Vec<i64>),
    MaybeInt(Vec<Option<i64>>),
    Bool(Vec<bool>),
    Bytes(Vec<&'r [u8]>),
}

impl Column<'_> {
    /// The PostgreSQL array type the column travels as.
    fn array_type(&self) -> &'static str {
        match self {
            Column::Text(_) | Column::MaybeText(_) => "text[]",
            Column::Int(_) | Column::MaybeInt(_) => "int8[]",
            Column::Bool(_) => "bool[]",
            Column::Bytes(_) => "bytea[]",
        }
    }
}

/// The rows of one multi-row write, held by column, and how each engine gets them.
///
/// A statement names where its rows go with `{rows}` (an `INSERT`'s source) or `{v}` (a
/// `FROM` item, whose columns are `v.column1`, `v.column2`, …). On PostgreSQL each column is
/// bound as one array and the rows come from `UNNEST`: one statement whatever the number of
/// rows, the same text every time (so prepared once per connection), and nothing for the
/// server to parse per row. A `VALUES` list of thousands of parameters instead cost as much to
/// parse and bind as to execute (BENCHMARKS.md section 3). SQLite has no arrays, and takes
/// `VALUES` lists of up to [`PARAMS_MAX`] parameters.
struct Rows<'r> {
    len: usize,
    columns: Vec<Column<'r>>,
}

impl<'r> Rows<'r> {
    fn new(len: usize) -> Self {
        Rows {
            len,
            columns: Vec::new(),
        }
    }

    fn column(mut self, column: Column<'r>) -> Self {
        self.columns.push(column);
        self
    }

    fn text(self, values: impl Iterator<Item = &'r str>) -> Self {
        self.column(Column::Text(values.collect()))
    }

    fn maybe_text(self, values: impl Iterator<Item = Option<&'r str>>) -> Self {
        self.column(Column::MaybeText(values.collect()))
    }

    fn int(self, values: impl Iterator<Item = i64>) -> Self {
        self.column(Column::Int(values.collect()))
    }

    fn maybe_int(self, values: impl Iterator<Item = Option<i64>>) -> Self {
        self.column(Column::MaybeInt(values.collect()))
    }

    fn bool(self, values: impl Iterator<Item = bool>) -> Self {
        self.column(Column::Bool(values.collect()))
    }

    fn bytes(self, values: impl Iterator<Item = &'r [u8]>) -> Self {
        self.column(Column::Bytes(values.collect()))
    }

    /// `statement` with its rows as PostgreSQL takes them: `UNNEST` over one array per column.
    fn postgres_sql(&self, statement: &str) -> String {
        let arrays: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, column)| format!("${}::{}", i + 1, column.array_type()))
            .collect();
        let names: Vec<String> = (1..=self.columns.len())
            .map(|i| format!("column{i}"))
            .collect();
        let unnest = format!("UNNEST({})", arrays.join(", "));
        statement
            .replace("{rows}", &format!("SELECT * FROM {unnest}"))
            .replace("{v}", &format!("{unnest} AS v({})", names.join(", ")))
    }

    fn postgres<'q>(
        &'q self,
        sql: &'q str,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        let mut query = sqlx::query(sql);
        for column in &self.columns {
            query = match column {
                Column::Text(values) => query.bind(values.as_slice()),
                Column::MaybeText(values) => query.bind(values.as_slice()),
                Column::Int(values) => query.bind(values.as_slice()),
                Column::MaybeInt(values) => query.bind(values.as_slice()),
                Column::Bool(values) => query.bind(values.as_slice()),
                Column::Bytes(values) => query.bind(values.as_slice()),
            };
        }
        query
    }

    /// `statement` for SQLite with the rows `rows`, as a `VALUES` list.
    fn sqlite<'q>(
        &'q self,
        statement: &str,
        rows: std::ops::Range<usize>,
    ) -> QueryBuilder<'q, sqlx::Sqlite> {
        let (marker, open, close) = if statement.contains("{rows}") {
            ("{rows}", "", "")
        } else {
            ("{v}", "(", ") AS v")
        };
        let (head, tail) = statement.split_once(marker).unwrap_or((statement, ""));
        let mut query = QueryBuilder::new(head);
        query.push(open);
        query.push_values(rows, |mut row, i| {
            for column in &self.columns {
                match column {
                    Column::Text(values) => row.push_bind(values[i]),
                    Column::MaybeText(values) => row.push_bind(values[i]),
                    Column::Int(values) => row.push_bind(values[i]),
                    Column::MaybeInt(values) => row.push_bind(values[i]),
                    Column::Bool(values) => row.push_bind(values[i]),
                    Column::Bytes(values) => row.push_bind(values[i]),
                };
            }
        });
        query.push(close);
        query.push(tail);
        query
    }

    /// The SQLite statements' row ranges: as many rows each as fit in [`PARAMS_MAX`].
    fn sqlite_chunks(&self) -> impl Iterator<Item = std::ops::Range<usize>> {
        let step = rows_per_statement(self.columns.len().max(1)).max(1);
        let len = self.len;
        (0..len)
            .step_by(step)
            .map(move |start| start..(start + step).min(len))
    }

    /// Run `statement` over the rows; nothing when there are none.
    async fn execute(self, tx: Tx<'_>, statement: &str) -> Result<(), sqlx::Error> {
        if self.len == 0 {
            return Ok(());
        }
        match tx {
            Tx::Postgres(conn) => {
                let sql = self.postgres_sql(statement);
                self.postgres(&sql).execute(&mut *conn).await?;
            }
            Tx::Sqlite(conn) => {
                for rows in self.sqlite_chunks() {
                    self.sqlite(statement, rows)
                        .build()
                        .persistent(false)
                        .execute(&mut *conn)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Run `statement` over the rows and read what it returns; nothing when there are none.
    async fn fetch<O>(self, tx: Tx<'_>, statement: &str) -> Result<Vec<O>, sqlx::Error>
    where
        O: Send
            + Unpin
            + for<'row> sqlx::FromRow<'row, sqlx::postgres::PgRow>
            + for<'row> sqlx::FromRow<'row, sqlx::sqlite::SqliteRow>,
    {
        if self.len == 0 {
            return Ok(Vec::new());
        }
        let mut found = Vec::with_capacity(self.len);
        match tx {
            Tx::Postgres(conn) => {
                let sql = self.postgres_sql(statement);
                let rows = self.postgres(&sql).fetch_all(&mut *conn).await?;
                for row in &rows {
                    found.push(O::from_row(row)?);
                }
            }
            Tx::Sqlite(conn) => {
                for range in self.sqlite_chunks() {
                    let rows = self
                        .sqlite(statement, range)
                        .build()
                        .persistent(false)
                        .fetch_all(&mut *conn)
                        .await?;
                    for row in &rows {
                        found.push(O::from_row(row)?);
                    }
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::sync::Arc;

    use actors::money::Money;
    use actors::wallet::{Owner, SystemAccount, TransferKind};

    use super::*;
    use crate::on_db;
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
            credit_version: Arc::default(),
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

    /// A store (see `store::test_db`) with users u1 and u2, and u1's account at 100, version 7.
    async fn store() -> (crate::store::TestStore, Db) {
        let (dir, db) = crate::store::test_db().await;
        crate::store::insert_test_users(&db, &["u1", "u2"]).await;
        on_db!(&db, pool => {
            sqlx::query(
                "INSERT INTO ledger_accounts (owner_kind, owner_id, currency, balance, held, \
                 version) VALUES ('user', 'u1', 'EVG', 100, 0, 7)",
            )
            .execute(pool)
            .await
            .unwrap();
        });
        (dir, db)
    }

    /// Flush `staged` in a transaction of its own: committed if it succeeds, rolled back if not.
    async fn flush(db: &Db, staged: &mut Staged<'_>) -> Result<(), sqlx::Error> {
        on_db!(db, pool => {
            let mut tx = pool.begin().await?;
            match staged.flush(to_tx(&mut tx)).await {
                Ok(()) => tx.commit().await,
                Err(error) => {
                    tx.rollback().await?;
                    Err(error)
                }
            }
        })
    }

    async fn accounts(db: &Db) -> Vec<(String, i64, i64)> {
        on_db!(db, pool => sqlx::query_as(
            "SELECT owner_id, balance, version FROM ledger_accounts ORDER BY owner_id",
        )
        .fetch_all(pool)
        .await
        .unwrap())
    }

    /// An attempt that is rolled back (a batch the store refused) leaves no number behind: the
    /// attempt that commits, with fewer events (the batch settled in parts), sets each number
    /// again to what it stored. Here t2 was the second credit of u2 and second entry of u2's feed
    /// in the refused attempt, and is the first of each in the one that commits.
    #[tokio::test]
    async fn the_attempt_that_commits_sets_the_numbers_a_refused_one_set() {
        let (_dir, db) = store().await;
        let transfers = [
            transfer("t1", user("u1"), user("u2"), 10),
            transfer("t2", user("u1"), user("u2"), 20),
        ];
        let feed = [
            FeedEntry::new("u2", balance_event()),
            FeedEntry::new("u2", balance_event()),
        ];
        let mut refused = Staged::default();
        for (t, entry) in transfers.iter().zip(&feed) {
            refused.transfer(t);
            refused.feed(entry).unwrap();
        }
        on_db!(&db, pool => {
            let mut tx = pool.begin().await.unwrap();
            refused.flush(to_tx(&mut tx)).await.unwrap();
            tx.rollback().await.unwrap();
        });
        assert_eq!(transfers[1].credit_version.get(), Some(2));
        assert_eq!(feed[1].seq.get(), Some(2));

        let mut again = Staged::default();
        again.transfer(&transfers[1]);
        again.feed(&feed[1]).unwrap();
        flush(&db, &mut again).await.unwrap();
        assert_eq!(transfers[1].credit_version.get(), Some(1));
        assert_eq!(feed[1].seq.get(), Some(1));
        assert_eq!(
            accounts(&db).await,
            [("u1".to_owned(), 80, 8), ("u2".to_owned(), 20, 1)]
        );
    }

    /// One flush must leave what the same events written one at a time would: the same
    /// balances and versions, each transfer holding the credited version of its own move, and
    /// each feed entry its own gap-free number.
    #[tokio::test]
    async fn a_flush_reads_back_what_one_at_a_time_writes_would() {
        let (_dir, db) = store().await;
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
        flush(&db, &mut staged).await.unwrap();
        assert!(staged.is_empty());

        // u2 is new: credited three times, then debited (version 4); u1 was at version 7,
        // debited twice and credited once (version 10).
        let versions: Vec<i64> = transfers
            .iter()
            .map(|t| t.credit_version.get().unwrap())
            .collect();
        assert_eq!(versions, [1, 2, 3, 10]);
        assert_eq!(
            accounts(&db).await,
            [
                ("cash_in".to_owned(), -5, 1),
                ("u1".to_owned(), 71, 10),
                ("u2".to_owned(), 34, 4)
            ]
        );
        let seqs: Vec<u64> = feed
            .iter()
            .map(|e| u64::try_from(e.seq.get().unwrap()).unwrap())
            .collect();
        assert_eq!(seqs, [1, 1, 2, 3, 2]);
        let stored: Vec<(String, i64)> = on_db!(&db, pool => {
            sqlx::query_as("SELECT user_id, seq FROM user_feed ORDER BY user_id, seq")
                .fetch_all(pool)
                .await
                .unwrap()
        });
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
        assert_eq!(transfer_count(&db).await, 4);
    }

    async fn transfer_count(db: &Db) -> i64 {
        on_db!(db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM transfers")
            .fetch_one(pool)
            .await
            .unwrap())
    }

    /// More rows than one SQLite statement takes (and many times a typical batch) are all
    /// written, each with its own version and number.
    #[tokio::test]
    async fn a_flush_larger_than_one_statement_writes_every_row() {
        let (_dir, db) = store().await;
        let n = rows_per_statement(11) * 2 + 17;
        let transfers: Vec<Transfer> = (0..n)
            .map(|i| {
                transfer(
                    &format!("t{i}"),
                    Owner::System(SystemAccount::CashIn),
                    user("u2"),
                    1,
                )
            })
            .collect();
        let feed: Vec<FeedEntry> = (0..n)
            .map(|_| FeedEntry::new("u2", balance_event()))
            .collect();
        let mut staged = Staged::default();
        for (t, entry) in transfers.iter().zip(&feed) {
            staged.transfer(t);
            staged.feed(entry).unwrap();
        }
        flush(&db, &mut staged).await.unwrap();
        let n = i64::try_from(n).unwrap();
        assert_eq!(transfer_count(&db).await, n);
        let last = transfers.last().map(|t| t.credit_version.get().unwrap());
        assert_eq!(last, Some(n));
        assert_eq!(
            feed.last()
                .map(|e| u64::try_from(e.seq.get().unwrap()).unwrap()),
            u64::try_from(n).ok()
        );
        assert_eq!(
            accounts(&db).await,
            [
                ("cash_in".to_owned(), -n, n),
                ("u1".to_owned(), 100, 7),
                ("u2".to_owned(), n, n)
            ]
        );
    }

    /// A debit of a user account the store does not have, or one below what the account
    /// holds, fails the flush (and so the batch), as the one-at-a-time UPDATE did.
    #[tokio::test]
    async fn a_debit_the_store_cannot_make_fails_the_flush() {
        let (_dir, db) = store().await;
        for t in [
            transfer("t1", user("u2"), user("u1"), 1),
            transfer("t2", user("u1"), user("u2"), 101),
        ] {
            let mut staged = Staged::default();
            staged.transfer(&t);
            assert!(flush(&db, &mut staged).await.is_err(), "{}", t.id);
        }
        assert_eq!(accounts(&db).await, [("u1".to_owned(), 100, 7)]);
    }

    /// A feed entry for a user the store does not have fails the whole flush: the transfer,
    /// the balances and the other feed entries staged with it are not written either (the
    /// caller's transaction rolls back).
    #[tokio::test]
    async fn a_feed_entry_for_an_unknown_user_is_refused_and_writes_nothing() {
        let (_dir, db) = store().await;
        let t = transfer("t1", user("u1"), user("u2"), 10);
        let feed = [
            FeedEntry::new("u1", balance_event()),
            FeedEntry::new("nobody", balance_event()),
        ];
        let mut staged = Staged::default();
        staged.transfer(&t);
        for entry in &feed {
            staged.feed(entry).unwrap();
        }
        // A refusal: the writer fails the submission that wrote it alone.
        assert!(matches!(
            flush(&db, &mut staged).await,
            Err(sqlx::Error::Database(e)) if e.try_downcast_ref::<Refusal>().is_some()
        ));
        assert_eq!(accounts(&db).await, [("u1".to_owned(), 100, 7)]);
        assert_eq!(transfer_count(&db).await, 0);
        let (entries, counters): (i64, i64) = on_db!(&db, pool => sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM user_feed), (SELECT CAST(SUM(feed_seq) AS BIGINT) FROM users)",
        )
        .fetch_one(pool)
        .await
        .unwrap());
        assert_eq!((entries, counters), (0, 0));
        assert!(feed.iter().all(|entry| entry.seq.get().is_none()));
    }

    /// On PostgreSQL no table a batch appends to checks a foreign key: each check is a
    /// row-level trigger, a probe and a row lock per inserted row, and was half of the cost
    /// of the message and notification inserts (migration 0012). SQLite keeps its checks
    /// (plain probes; dropping them would rebuild the tables), so there the references stay.
    #[tokio::test]
    async fn the_tables_a_batch_appends_to_check_no_reference_on_postgres() {
        let (_dir, db) = crate::store::test_db().await;
        let appended = [
            "transfers",
            "user_feed",
            "idempotency",
            "messages",
            "thread_events",
            "notifications",
        ];
        let mut references: Vec<(String, String)> = Vec::new();
        for table in appended {
            let found: Vec<(String,)> = match &db {
                Db::Postgres(pool) => sqlx::query_as(
                    "SELECT confrelid::regclass::text FROM pg_constraint \
                     WHERE contype = 'f' AND conrelid = $1::regclass",
                )
                .bind(table)
                .fetch_all(pool)
                .await
                .unwrap(),
                Db::Sqlite(pool) => {
                    sqlx::query_as("SELECT \"table\" FROM pragma_foreign_key_list($1)")
                        .bind(table)
                        .fetch_all(pool)
                        .await
                        .unwrap()
                }
            };
            references.extend(found.into_iter().map(|(to,)| (table.to_owned(), to)));
        }
        references.sort();
        match db {
            Db::Postgres(_) => assert_eq!(references, [], "references checked per row"),
            Db::Sqlite(_) => assert_eq!(
                references,
                [
                    ("messages".to_owned(), "message_threads".to_owned()),
                    ("messages".to_owned(), "users".to_owned()),
                    ("notifications".to_owned(), "users".to_owned()),
                ]
            ),
        }
    }
}
