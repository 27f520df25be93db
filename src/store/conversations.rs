//! The conversation side of the store: how conversation events are written inside a journal
//! batch, how a conversation is loaded, thread creation with its context claim, and the reads
//! of the messaging API (threads, messages, thread events for resume, reports).

use actors::conversation::{Change, Event, Thread};

use super::bulk::Staged;
use super::journal::{Refusal, Tx};
use super::{now_ms, BeginWrite, Db, StoreError};
use crate::{on_db, on_tx};

pub use actors::conversation::context_key;

pub(crate) fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// Write one conversation event inside a batch: the change itself, the thread's counters, and
/// the sequenced push for resume.
pub async fn persist(event: &Event, mut tx: Tx<'_>) -> Result<(), sqlx::Error> {
    match &event.change {
        // Staged, and written by `Staged::flush` (see `ledger`'s `Persist::persist`).
        Change::Posted(_) => return Ok(()),
        Change::Edited {
            message_id,
            changes,
        } => {
            let media_url = changes.media_url.as_ref();
            let flagged_by = changes.flagged_by.as_ref();
            let flag_reason = changes.flag_reason.as_ref();
            on_tx!(tx.reborrow(), conn => {
                sqlx::query(
                    "UPDATE messages SET \
                     content = COALESCE($2, content), \
                     media_url = CASE WHEN $3 THEN $4 ELSE media_url END, \
                     is_moderated = COALESCE($5, is_moderated), \
                     is_flagged = COALESCE($6, is_flagged), \
                     flagged_by = CASE WHEN $7 THEN $8 ELSE flagged_by END, \
                     flag_reason = CASE WHEN $9 THEN $10 ELSE flag_reason END, \
                     is_read = COALESCE($11, is_read), \
                     record_version = record_version + 1, updated_at = $12 \
                     WHERE id = $1 AND thread_id = $13")
                    .bind(message_id)
                    .bind(&changes.content)
                    .bind(media_url.is_some())
                    .bind(media_url.cloned().flatten())
                    .bind(changes.is_moderated)
                    .bind(changes.is_flagged)
                    .bind(flagged_by.is_some())
                    .bind(flagged_by.cloned().flatten())
                    .bind(flag_reason.is_some())
                    .bind(flag_reason.cloned().flatten())
                    .bind(changes.is_read)
                    .bind(event.at_ms)
                    .bind(&event.thread_id)
                    .execute(&mut *conn)
                    .await?;
            });
        }
        Change::Hidden { message_id } => {
            on_tx!(tx.reborrow(), conn => {
                sqlx::query(
                    "UPDATE messages SET is_active = FALSE, record_version = record_version + 1, \
                     updated_at = $2 WHERE id = $1 AND thread_id = $3")
                    .bind(message_id)
                    .bind(event.at_ms)
                    .bind(&event.thread_id)
                    .execute(&mut *conn)
                    .await?;
            });
        }
        Change::Read { reader, up_to } => {
            on_tx!(tx.reborrow(), conn => {
                sqlx::query(
                    "UPDATE messages SET is_read = TRUE, record_version = record_version + 1, \
                     updated_at = $4 \
                     WHERE thread_id = $1 AND seq <= $2 AND sender_id <> $3 AND is_read = FALSE")
                    .bind(&event.thread_id)
                    .bind(seq_i64(*up_to))
                    .bind(reader)
                    .bind(event.at_ms)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(
                    "UPDATE message_threads SET \
                     guest_read_seq = CASE WHEN guest_id = $2 THEN $3 ELSE guest_read_seq END, \
                     host_read_seq = CASE WHEN host_id = $2 THEN $3 ELSE host_read_seq END \
                     WHERE id = $1")
                    .bind(&event.thread_id)
                    .bind(reader)
                    .bind(seq_i64(*up_to))
                    .execute(&mut *conn)
                    .await?;
            });
        }
        Change::ThreadChanged(thread) => {
            on_tx!(tx.reborrow(), conn => {
                sqlx::query(
                    "UPDATE message_threads SET is_open = $2, is_active = $3, listing_id = $4, \
                     reservation_id = $5, record_version = record_version + 1 WHERE id = $1")
                    .bind(&thread.id)
                    .bind(thread.is_open)
                    .bind(thread.is_active)
                    .bind(&thread.listing_id)
                    .bind(&thread.reservation_id)
                    .execute(&mut *conn)
                    .await?;
            });
            let keep = thread.holds_context().then(|| thread.context());
            if let Some(context) = &keep {
                // The fence behind the actor: the service claimed this context before the
                // actor accepted the change; if another thread holds it after all (a stale
                // claim was cleared and taken meanwhile), the change is refused rather than
                // store two open threads on one context. A refusal fails this change alone,
                // not the other commands that share its batch.
                let holder = upsert_claim(tx.reborrow(), context, &thread.id).await?;
                if holder != thread.id {
                    return Err(Refusal::error(format!(
                        "context of thread {} is held by open thread {holder}",
                        thread.id
                    )));
                }
            }
            on_tx!(tx.reborrow(), conn => {
                sqlx::query(
                    "DELETE FROM message_thread_contexts WHERE thread_id = $1 \
                     AND ($2 IS NULL OR context <> $2)")
                    .bind(&thread.id)
                    .bind(keep)
                    .execute(&mut *conn)
                    .await?;
            });
        }
    }
    // The thread's counters and the sequenced push, by the same writer as a posted message's.
    let mut staged = Staged::default();
    staged.thread_event(event)?;
    staged.flush(tx).await?;
    Ok(())
}

/// A thread as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ThreadRow {
    pub id: String,
    pub guest_id: String,
    pub host_id: String,
    pub listing_id: Option<String>,
    pub reservation_id: Option<String>,
    pub is_open: bool,
    pub is_active: bool,
    pub last_seq: i64,
    pub message_count: i64,
    pub last_message_at: Option<i64>,
    pub guest_read_seq: i64,
    pub host_read_seq: i64,
    pub record_version: i64,
    pub owner_id: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ThreadRow {
    pub fn is_participant(&self, user_id: &str) -> bool {
        self.guest_id == user_id || self.host_id == user_id
    }

    pub fn into_state(self) -> Thread {
        let seq = |v: i64| u64::try_from(v).unwrap_or_default();
        Thread {
            id: self.id,
            guest_id: self.guest_id,
            host_id: self.host_id,
            listing_id: self.listing_id,
            reservation_id: self.reservation_id,
            is_open: self.is_open,
            is_active: self.is_active,
            last_seq: seq(self.last_seq),
            message_count: seq(self.message_count),
            last_message_at_ms: self.last_message_at,
            guest_read_seq: seq(self.guest_read_seq),
            host_read_seq: seq(self.host_read_seq),
        }
    }
}

const THREAD_COLUMNS: &str = "id, guest_id, host_id, listing_id, reservation_id, is_open, \
    is_active, last_seq, message_count, last_message_at, guest_read_seq, host_read_seq, \
    record_version, owner_id, created_at, updated_at";

/// A thread by id, deleted ones included.
pub async fn thread(db: &Db, id: &str) -> Result<Option<ThreadRow>, StoreError> {
    let sql = format!("SELECT {THREAD_COLUMNS} FROM message_threads WHERE id = $1");
    Ok(on_db!(db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?))
}

/// What creating a thread did.
#[derive(Debug)]
pub enum Created {
    Thread(ThreadRow),
    /// An open thread on the same context exists: its id.
    Conflict(String),
}

/// A new thread, open unless said otherwise.
#[derive(Debug, Clone)]
pub struct NewThread {
    pub id: String,
    pub guest_id: String,
    pub host_id: String,
    pub listing_id: Option<String>,
    pub reservation_id: Option<String>,
    pub is_open: bool,
    pub owner_id: String,
}

/// Create a thread. An open one claims its context in the same transaction; the primary key
/// of the claims decides between concurrent creations. `Conflict` names the holder, which
/// may hold the claim stale (see `Conversations::create_thread`).
pub async fn create_thread(db: &Db, new: &NewThread) -> Result<Created, StoreError> {
    let now = now_ms();
    let context = context_key(
        &new.guest_id,
        &new.host_id,
        new.listing_id.as_deref(),
        new.reservation_id.as_deref(),
    );
    let created = on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        sqlx::query(
            "INSERT INTO message_threads (id, guest_id, host_id, listing_id, reservation_id, \
             is_open, is_active, owner_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7, $8, $8)")
            .bind(&new.id)
            .bind(&new.guest_id)
            .bind(&new.host_id)
            .bind(&new.listing_id)
            .bind(&new.reservation_id)
            .bind(new.is_open)
            .bind(&new.owner_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if new.is_open {
            let holder = upsert_claim(super::journal::to_tx(&mut tx), &context, &new.id).await?;
            if holder != new.id {
                tx.rollback().await?;
                return Ok(Created::Conflict(holder));
            }
        }
        tx.commit().await?;
        true
    });
    debug_assert!(created);
    match thread(db, &new.id).await? {
        Some(row) => Ok(Created::Thread(row)),
        None => Err(StoreError::Database(sqlx::Error::RowNotFound)),
    }
}

/// Claim a context for a thread unless another holds it; the holder either way. One
/// statement, so a concurrent release cannot fall between the claim and the answer.
async fn upsert_claim(tx: Tx<'_>, context: &str, thread_id: &str) -> Result<String, sqlx::Error> {
    Ok(on_tx!(tx, conn => sqlx::query_scalar(
        "INSERT INTO message_thread_contexts (context, thread_id) VALUES ($1, $2) \
         ON CONFLICT (context) DO UPDATE SET context = excluded.context RETURNING thread_id")
        .bind(context)
        .bind(thread_id)
        .fetch_one(&mut *conn)
        .await?))
}

/// Claim a context for a thread that is about to be reopened or moved to it: `None` when the
/// thread holds it now, else the thread that does.
pub async fn claim_context(
    db: &Db,
    context: &str,
    thread_id: &str,
) -> Result<Option<String>, StoreError> {
    let holder: String = on_db!(db, pool => sqlx::query_scalar(
        "INSERT INTO message_thread_contexts (context, thread_id) VALUES ($1, $2) \
         ON CONFLICT (context) DO UPDATE SET context = excluded.context RETURNING thread_id")
        .bind(context)
        .bind(thread_id)
        .fetch_one(pool)
        .await?);
    Ok((holder != thread_id).then_some(holder))
}

/// Drop a claim its holder no longer needs (it is not open on that context: a claim left by
/// a change that never happened).
pub async fn release_stale_claim(db: &Db, context: &str, holder: &str) -> Result<(), StoreError> {
    on_db!(db, pool => {
        sqlx::query("DELETE FROM message_thread_contexts WHERE context = $1 AND thread_id = $2")
            .bind(context)
            .bind(holder)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// A message as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: String,
    pub thread_id: String,
    pub seq: i64,
    pub sender_id: String,
    pub content: String,
    pub message_type: String,
    pub media_url: Option<String>,
    pub is_moderated: bool,
    pub is_flagged: bool,
    pub flagged_by: Option<String>,
    pub flag_reason: Option<String>,
    pub is_read: bool,
    pub is_active: bool,
    pub sent_at: i64,
    pub record_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const MESSAGE_COLUMNS: &str = "id, thread_id, seq, sender_id, content, message_type, media_url, \
    is_moderated, is_flagged, flagged_by, flag_reason, is_read, is_active, sent_at, \
    record_version, created_at, updated_at";

/// A message by id, hidden ones included.
pub async fn message(db: &Db, id: &str) -> Result<Option<MessageRow>, StoreError> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1");
    Ok(on_db!(db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?))
}

/// A SQL condition with its bound text values, built by the API's filters. Placeholders are
/// numbered from `$1` in the order of `binds`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub sql: Vec<String>,
    pub binds: Vec<String>,
}

impl Filter {
    /// `column = value`, for one of several values (OR), or `IS NULL` for `null`.
    pub fn equals_any(&mut self, column: &str, values: &[String]) {
        let mut alternatives = Vec::new();
        for value in values {
            if value == "null" {
                alternatives.push(format!("{column} IS NULL"));
            } else {
                self.binds.push(value.clone());
                alternatives.push(format!("{column} = ${}", self.binds.len()));
            }
        }
        if !alternatives.is_empty() {
            self.sql.push(format!("({})", alternatives.join(" OR ")));
        }
    }

    /// `LOWER(column)` contains the value, for one of several values (OR); `null` matches no
    /// value. `%`, `_` and `\` in a value match themselves. (SQLite lowers ASCII letters
    /// only.)
    pub fn contains_any(&mut self, column: &str, values: &[String]) {
        let mut alternatives = Vec::new();
        for value in values {
            if value == "null" {
                alternatives.push(format!("{column} IS NULL"));
                continue;
            }
            let mut pattern = String::with_capacity(value.len() + 2);
            pattern.push('%');
            for c in value.to_lowercase().chars() {
                if matches!(c, '%' | '_' | '\\') {
                    pattern.push('\\');
                }
                pattern.push(c);
            }
            pattern.push('%');
            self.binds.push(pattern);
            alternatives.push(format!(
                "LOWER({column}) LIKE ${} ESCAPE '\\'",
                self.binds.len()
            ));
        }
        if !alternatives.is_empty() {
            self.sql.push(format!("({})", alternatives.join(" OR ")));
        }
    }

    /// A boolean column.
    pub fn flag(&mut self, column: &str, value: bool) {
        self.sql.push(format!(
            "{column} = {}",
            if value { "TRUE" } else { "FALSE" }
        ));
    }

    /// A condition with no value.
    pub fn raw(&mut self, condition: &str) {
        self.sql.push(condition.to_owned());
    }

    /// `column = value` for the session user, in one or another column.
    pub fn user_in(&mut self, columns: &[&str], user_id: &str) {
        self.binds.push(user_id.to_owned());
        let n = self.binds.len();
        let any: Vec<String> = columns.iter().map(|c| format!("{c} = ${n}")).collect();
        self.sql.push(format!("({})", any.join(" OR ")));
    }

    pub(crate) fn where_clause(&self) -> String {
        if self.sql.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.sql.join(" AND "))
        }
    }
}

/// A page: at most `limit` rows after skipping `offset`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub offset: i64,
    pub limit: i64,
}

pub(crate) async fn count(db: &Db, table: &str, filter: &Filter) -> Result<i64, StoreError> {
    let sql = format!("SELECT COUNT(*) FROM {table}{}", filter.where_clause());
    Ok(on_db!(db, pool => {
        let mut query = sqlx::query_scalar(&sql);
        for bind in &filter.binds {
            query = query.bind(bind);
        }
        query.fetch_one(pool).await?
    }))
}

macro_rules! select_page {
    ($db:expr, $columns:expr, $table:expr, $filter:expr, $order:expr, $page:expr) => {{
        let filter: &Filter = $filter;
        let page: Page = $page;
        let n = filter.binds.len();
        let sql = format!(
            "SELECT {} FROM {}{} ORDER BY {} LIMIT ${} OFFSET ${}",
            $columns,
            $table,
            filter.where_clause(),
            $order,
            n + 1,
            n + 2
        );
        on_db!($db, pool => {
            let mut query = sqlx::query_as(&sql);
            for bind in &filter.binds {
                query = query.bind(bind);
            }
            query.bind(page.limit).bind(page.offset).fetch_all(pool).await?
        })
    }};
}
pub(crate) use select_page;

/// Threads matching a filter, most recently active first, and how many match in all.
pub async fn threads(
    db: &Db,
    filter: &Filter,
    page: Page,
) -> Result<(Vec<ThreadRow>, i64), StoreError> {
    let total = count(db, "message_threads", filter).await?;
    let rows = select_page!(
        db,
        THREAD_COLUMNS,
        "message_threads",
        filter,
        "COALESCE(last_message_at, created_at) DESC, id",
        page
    );
    Ok((rows, total))
}

/// Messages matching a filter (of one thread), in the thread's order (`seq`, oldest first),
/// and how many match in all.
pub async fn messages(
    db: &Db,
    filter: &Filter,
    page: Page,
) -> Result<(Vec<MessageRow>, i64), StoreError> {
    let total = count(db, "messages", filter).await?;
    let rows = select_page!(db, MESSAGE_COLUMNS, "messages", filter, "seq, id", page);
    Ok((rows, total))
}

/// The thread's pushes after `since`, at most `limit`, in order.
pub async fn events_after(
    db: &Db,
    thread_id: &str,
    since: u64,
    limit: i64,
) -> Result<Vec<(u64, protocol::Event)>, StoreError> {
    let rows: Vec<(i64, String)> = on_db!(db, pool => sqlx::query_as(
        "SELECT seq, event FROM thread_events WHERE thread_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
        .bind(thread_id)
        .bind(seq_i64(since))
        .bind(limit)
        .fetch_all(pool)
        .await?);
    Ok(rows
        .into_iter()
        .filter_map(|(seq, event)| {
            Some((u64::try_from(seq).ok()?, serde_json::from_str(&event).ok()?))
        })
        .collect())
}

/// The ids of the user's active threads, most recently active first, at most `limit`.
pub async fn thread_ids_of(db: &Db, user_id: &str, limit: i64) -> Result<Vec<String>, StoreError> {
    Ok(on_db!(db, pool => sqlx::query_scalar(
        "SELECT id FROM message_threads WHERE (guest_id = $1 OR host_id = $1) AND is_active = TRUE \
         ORDER BY COALESCE(last_message_at, created_at) DESC, id LIMIT $2")
        .bind(user_id)
        .bind(limit)
        .fetch_all(pool)
        .await?))
}

/// A report as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReportRow {
    pub id: String,
    pub message_id: String,
    pub reported_by: String,
    pub report_reason: String,
    pub moderation_status: String,
    pub admin_id: Option<String>,
    pub reported_at: i64,
    pub resolution_notes: Option<String>,
    pub is_active: bool,
    pub record_version: i64,
    pub owner_id: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const REPORT_COLUMNS: &str = "id, message_id, reported_by, report_reason, moderation_status, \
    admin_id, reported_at, resolution_notes, is_active, record_version, owner_id, created_at, \
    updated_at";

/// A new report, `pending`.
pub async fn create_report(
    db: &Db,
    id: &str,
    message_id: &str,
    reported_by: &str,
    reason: &str,
) -> Result<ReportRow, StoreError> {
    let now = now_ms();
    on_db!(db, pool => {
        sqlx::query(
            "INSERT INTO message_reports (id, message_id, reported_by, report_reason, \
             moderation_status, reported_at, is_active, record_version, owner_id, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, 'pending', $5, TRUE, 1, $3, $5, $5)")
            .bind(id)
            .bind(message_id)
            .bind(reported_by)
            .bind(reason)
            .bind(now)
            .execute(pool)
            .await?;
    });
    report(db, id)
        .await?
        .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
}

/// A report by id.
pub async fn report(db: &Db, id: &str) -> Result<Option<ReportRow>, StoreError> {
    let sql = format!("SELECT {REPORT_COLUMNS} FROM message_reports WHERE id = $1");
    Ok(on_db!(db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?))
}

/// Reports matching a filter, newest first, and how many match in all. The filter's columns
/// are qualified with `r.` (reports) and `m.` (the reported message).
pub async fn reports(
    db: &Db,
    filter: &Filter,
    page: Page,
) -> Result<(Vec<ReportRow>, i64), StoreError> {
    let table = "message_reports r JOIN messages m ON m.id = r.message_id";
    let total = count(db, table, filter).await?;
    let columns = REPORT_COLUMNS
        .split(", ")
        .map(|c| format!("r.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = select_page!(db, columns, table, filter, "r.created_at DESC, r.id", page);
    Ok((rows, total))
}

/// An administrator's changes to a report.
#[derive(Debug, Clone, Default)]
pub struct ReportChanges {
    pub moderation_status: Option<String>,
    pub admin_id: Option<Option<String>>,
    pub resolution_notes: Option<Option<String>>,
}

/// Apply an administrator's changes; `None` when there is no such report.
pub async fn update_report(
    db: &Db,
    id: &str,
    changes: &ReportChanges,
) -> Result<Option<ReportRow>, StoreError> {
    let admin = changes.admin_id.as_ref();
    let notes = changes.resolution_notes.as_ref();
    on_db!(db, pool => {
        sqlx::query(
            "UPDATE message_reports SET moderation_status = COALESCE($2, moderation_status), \
             admin_id = CASE WHEN $3 THEN $4 ELSE admin_id END, \
             resolution_notes = CASE WHEN $5 THEN $6 ELSE resolution_notes END, \
             record_version = record_version + 1, updated_at = $7 WHERE id = $1")
            .bind(id)
            .bind(&changes.moderation_status)
            .bind(admin.is_some())
            .bind(admin.cloned().flatten())
            .bind(notes.is_some())
            .bind(notes.cloned().flatten())
            .bind(now_ms())
            .execute(pool)
            .await?;
    });
    report(db, id).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A thread change whose context another open thread holds (a stale claim cleared and
    /// taken between the service's claim and the batch) is refused by the store's own code, a
    /// refusal the writer fails alone instead of failing every command in the batch.
    #[tokio::test]
    async fn a_change_to_a_context_another_thread_holds_is_a_refusal() {
        let (_dir, db) = crate::store::test_db().await;
        crate::store::insert_test_users(&db, &["g", "h"]).await;
        let new = |id: &str, is_open: bool| NewThread {
            id: id.into(),
            guest_id: "g".into(),
            host_id: "h".into(),
            listing_id: Some("l".into()),
            reservation_id: None,
            is_open,
            owner_id: "g".into(),
        };
        for (id, is_open) in [("holder", true), ("closed", false)] {
            assert!(matches!(
                create_thread(&db, &new(id, is_open)).await.unwrap(),
                Created::Thread(_)
            ));
        }
        let thread = Thread {
            id: "closed".into(),
            guest_id: "g".into(),
            host_id: "h".into(),
            listing_id: Some("l".into()),
            reservation_id: None,
            is_open: true,
            is_active: true,
            last_seq: 0,
            message_count: 0,
            last_message_at_ms: None,
            guest_read_seq: 0,
            host_read_seq: 0,
        };
        let reopened = Event {
            thread_id: "closed".into(),
            seq: 1,
            at_ms: 1,
            by: "g".into(),
            change: Change::ThreadChanged(thread),
            message_count: 0,
            last_message_at_ms: None,
            guest_id: "g".into(),
            host_id: "h".into(),
        };
        let error = on_db!(&db, pool => {
            let mut tx = pool.begin().await.unwrap();
            persist(&reopened, super::super::journal::to_tx(&mut tx))
                .await
                .unwrap_err()
        });
        assert!(
            matches!(&error, sqlx::Error::Database(e) if e.try_downcast_ref::<Refusal>().is_some()),
            "{error:?}"
        );
        let holder: String = on_db!(&db, pool => sqlx::query_scalar(
            "SELECT thread_id FROM message_thread_contexts")
            .fetch_one(pool)
            .await
            .unwrap());
        assert_eq!(holder, "holder");
    }
}
