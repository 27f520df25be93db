//! Evergreen history, feedback, people and rates: the SQL behind `transaction_list`,
//! `transaction_detail`, `leave_feedback`, `search_users`, `suggested_payors`,
//! `register_device` and `exchange_rates`.
//!
//! A *transaction* is what Evergreen shows between two users: a payment request (paid or not;
//! its payment is part of it) or a direct payment (`make_payment` without a request, or a
//! terminal payment). Both come from the ledger's own tables (`payment_requests`,
//! `transfers`); only EVG moves between users are transactions.

use super::{now_ms, BeginWrite, Db, StoreError};
use crate::on_db;

/// The transfer kinds that are payments from one user to another.
const PAYMENT_KINDS: &str = "('payment', 'terminal_payment')";

/// A transaction as stored, for one of its two parties.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TransactionRow {
    /// The request's id, or the direct payment's transfer id.
    pub transaction_id: String,
    /// `requested`, `completed`, `rejected` or `cancelled`.
    pub status: String,
    /// When the request was made (requests only).
    pub request_at: Option<i64>,
    /// When the money moved (completed transactions only).
    pub payment_at: Option<i64>,
    /// EVG minor units.
    pub amount: i64,
    pub payor: String,
    pub payee: String,
    pub description: Option<String>,
    /// The list's order: when the transaction started (its request, or its payment).
    pub sort_at: i64,
    /// `positive` or `negative` once the payor left feedback.
    pub feedback: Option<String>,
    pub feedback_description: Option<String>,
}

/// Every transaction, as rows of one shape: requests, then direct payments (those settling no
/// request). `{requests}` and `{payments}` are the extra conditions of each side.
///
/// The transfers side's ids are in the database's collation (see [`in_default_collation`]),
/// so that the union's transaction ids meet `evergreen_feedback`'s index, and are ordered,
/// as the requests side's are.
fn transactions_sql(db: &Db, requests: &str, payments: &str, tail: &str) -> String {
    let c = in_default_collation(db);
    format!(
        "SELECT t.transaction_id, t.status, t.request_at, t.payment_at, t.amount, t.payor, \
         t.payee, t.description, t.sort_at, f.kind AS feedback, \
         f.description AS feedback_description \
         FROM ( \
           SELECT r.transaction_id AS transaction_id, r.status AS status, \
             r.created_at AS request_at, \
             CASE WHEN r.status = 'completed' THEN r.closed_at ELSE NULL END AS payment_at, \
             r.amount AS amount, r.payor AS payor, r.payee AS payee, \
             r.description AS description, r.created_at AS sort_at \
           FROM payment_requests r WHERE r.currency = 'EVG' AND {requests} \
           UNION ALL \
           SELECT p.id{c}, 'completed', NULL, p.created_at, p.amount, p.debit_id{c}, \
             p.credit_id{c}, p.description, p.created_at \
           FROM transfers p WHERE p.kind IN {PAYMENT_KINDS} AND p.debit_kind = 'user' \
             AND p.credit_kind = 'user' AND p.currency = 'EVG' \
             AND (p.reference IS NULL OR NOT EXISTS \
               (SELECT 1 FROM payment_requests q WHERE q.transaction_id = p.reference)) \
             AND {payments} \
         ) t LEFT JOIN evergreen_feedback f ON f.transaction_id = t.transaction_id {tail}"
    )
}

/// On PostgreSQL `transfers` keys are byte-ordered (`COLLATE "C"`, migration 0011), and
/// everything else is in the database's collation. A `UNION` of the two that is then joined
/// to another table's index names the database's collation, or the join cannot use the
/// index (an equality between a "C" value and a default-collation index is a filter, not a
/// probe). SQLite has one collation.
fn in_default_collation(db: &Db) -> &'static str {
    match db {
        Db::Postgres(_) => " COLLATE \"default\"",
        Db::Sqlite(_) => "",
    }
}

/// How many transactions the user is a party to.
#[tracing::instrument(skip(db))]
pub async fn transaction_count(db: &Db, user_id: &str) -> Result<i64, StoreError> {
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM payment_requests r WHERE r.currency = 'EVG' \
           AND (r.payor = $1 OR r.payee = $1)) \
         + (SELECT COUNT(*) FROM transfers p WHERE p.kind IN {PAYMENT_KINDS} \
           AND p.debit_kind = 'user' AND p.credit_kind = 'user' AND p.currency = 'EVG' \
           AND (p.reference IS NULL OR NOT EXISTS \
             (SELECT 1 FROM payment_requests q WHERE q.transaction_id = p.reference)) \
           AND (p.debit_id = $1 OR p.credit_id = $1))"
    );
    let count: i64 = on_db!(db, pool => sqlx::query_scalar(&sql)
        .bind(user_id)
        .fetch_one(pool)
        .await?);
    Ok(count)
}

/// A page of the user's transactions, most recent first (ties by id, so pages never overlap).
#[tracing::instrument(skip(db))]
pub async fn transactions(
    db: &Db,
    user_id: &str,
    offset: i64,
    limit: i64,
) -> Result<Vec<TransactionRow>, StoreError> {
    let sql = transactions_sql(
        db,
        "(r.payor = $1 OR r.payee = $1)",
        "(p.debit_id = $1 OR p.credit_id = $1)",
        "ORDER BY t.sort_at DESC, t.transaction_id DESC LIMIT $2 OFFSET $3",
    );
    Ok(on_db!(db, pool => sqlx::query_as::<_, TransactionRow>(&sql)
        .bind(user_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await?))
}

/// One transaction, if the user is a party to it.
#[tracing::instrument(skip(db))]
pub async fn transaction(
    db: &Db,
    user_id: &str,
    transaction_id: &str,
) -> Result<Option<TransactionRow>, StoreError> {
    let sql = transactions_sql(
        db,
        "r.transaction_id = $2 AND (r.payor = $1 OR r.payee = $1)",
        "p.id = $2 AND (p.debit_id = $1 OR p.credit_id = $1)",
        "",
    );
    Ok(on_db!(db, pool => sqlx::query_as::<_, TransactionRow>(&sql)
        .bind(user_id)
        .bind(transaction_id)
        .fetch_optional(pool)
        .await?))
}

/// Feedback on a completed transaction.
#[derive(Debug, Clone)]
pub struct NewFeedback<'a> {
    pub transaction_id: &'a str,
    pub payor: &'a str,
    pub payee: &'a str,
    /// `positive` or `negative`.
    pub kind: &'a str,
    pub description: Option<&'a str>,
}

/// Where a claimed request id's answer is written, in the transaction of its effect.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub scope: &'a str,
    pub request_id: &'a str,
    pub body: &'a str,
}

/// Store feedback, count it in the payee's rating and write the call's answer, in one
/// transaction. `false` (and nothing written) when the transaction already has feedback.
#[tracing::instrument(skip_all)]
pub async fn leave_feedback(
    db: &Db,
    feedback: &NewFeedback<'_>,
    answer: Answer<'_>,
) -> Result<bool, StoreError> {
    let (positive, negative) = if feedback.kind == "positive" {
        (1_i64, 0_i64)
    } else {
        (0, 1)
    };
    let stored = on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO evergreen_feedback \
             (transaction_id, payor, payee, kind, description, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (transaction_id) DO NOTHING")
            .bind(feedback.transaction_id)
            .bind(feedback.payor)
            .bind(feedback.payee)
            .bind(feedback.kind)
            .bind(feedback.description)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if inserted == 0 {
            false
        } else {
            sqlx::query(
                "INSERT INTO evergreen_ratings (user_id, positive, negative) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id) DO UPDATE SET \
                 positive = evergreen_ratings.positive + excluded.positive, \
                 negative = evergreen_ratings.negative + excluded.negative")
                .bind(feedback.payee)
                .bind(positive)
                .bind(negative)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE evergreen_replies SET body = $3 WHERE scope = $1 AND request_id = $2")
                .bind(answer.scope)
                .bind(answer.request_id)
                .bind(answer.body)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            true
        }
    });
    Ok(stored)
}

/// What others see of a user: name, image, Evergreen id, feedback received.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Profile {
    pub id: String,
    pub fullname: String,
    pub avatar: Option<String>,
    /// The id the user is shown by: the oldest Facebook id, else the oldest QR card.
    pub external_id: Option<String>,
    /// Feedback received as payee; `None` when none was ever received.
    pub positive: Option<i64>,
    pub negative: Option<i64>,
}

/// The columns of [`Profile`], from `users u` and `evergreen_ratings r`.
const PROFILE_COLUMNS: &str = "u.id AS id, u.fullname AS fullname, u.avatar AS avatar, \
     (SELECT e.external_id FROM user_external_ids e WHERE e.user_id = u.id \
      ORDER BY CASE WHEN e.external_id LIKE 'facebook:%' THEN 0 ELSE 1 END, e.created_at, \
      e.external_id LIMIT 1) AS external_id, \
     r.positive AS positive, r.negative AS negative";

/// The profiles of these users (any order; unknown ids are left out). The caller bounds the
/// list.
#[tracing::instrument(skip_all, fields(users = ids.len()))]
pub async fn profiles(db: &Db, ids: &[String]) -> Result<Vec<Profile>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = (1..=ids.len())
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {PROFILE_COLUMNS} FROM users u \
         LEFT JOIN evergreen_ratings r ON r.user_id = u.id WHERE u.id IN ({placeholders})"
    );
    Ok(on_db!(db, pool => {
        let mut query = sqlx::query_as::<_, Profile>(&sql);
        for id in ids {
            query = query.bind(id);
        }
        query.fetch_all(pool).await?
    }))
}

/// Active users other than `except` whose lowercased name matches the `LIKE` pattern
/// `contains` (escape character `\`); names matching `starts` first, then by name.
#[tracing::instrument(skip_all)]
pub async fn search(
    db: &Db,
    except: &str,
    contains: &str,
    starts: &str,
    limit: i64,
) -> Result<Vec<Profile>, StoreError> {
    let sql = format!(
        "SELECT {PROFILE_COLUMNS} FROM users u \
         LEFT JOIN evergreen_ratings r ON r.user_id = u.id \
         WHERE u.is_active = TRUE AND u.id <> $1 AND LOWER(u.fullname) LIKE $2 ESCAPE '\\' \
         ORDER BY CASE WHEN LOWER(u.fullname) LIKE $3 ESCAPE '\\' THEN 0 ELSE 1 END, \
         LOWER(u.fullname), u.id LIMIT $4"
    );
    Ok(on_db!(db, pool => sqlx::query_as::<_, Profile>(&sql)
        .bind(except)
        .bind(contains)
        .bind(starts)
        .bind(limit)
        .fetch_all(pool)
        .await?))
}

/// The query of [`recent_partners`]: `$1` the user, `$2` the scan, `$3` the limit.
fn recent_partners_sql(db: &Db) -> String {
    let c = in_default_collation(db);
    format!(
        "SELECT x.partner, MAX(x.ts) AS last_at FROM ( \
           SELECT * FROM (SELECT credit_id{c} AS partner, created_at AS ts FROM transfers \
             WHERE debit_kind = 'user' AND debit_id = $1 AND credit_kind = 'user' \
             AND kind IN {PAYMENT_KINDS} ORDER BY seq DESC LIMIT $2) a \
           UNION ALL \
           SELECT * FROM (SELECT debit_id{c}, created_at FROM transfers \
             WHERE credit_kind = 'user' AND credit_id = $1 AND debit_kind = 'user' \
             AND kind IN {PAYMENT_KINDS} ORDER BY seq DESC LIMIT $2) b \
           UNION ALL \
           SELECT * FROM (SELECT payee, created_at FROM payment_requests WHERE payor = $1 \
             ORDER BY created_at DESC LIMIT $2) c \
           UNION ALL \
           SELECT * FROM (SELECT payor, created_at FROM payment_requests WHERE payee = $1 \
             ORDER BY created_at DESC LIMIT $2) d \
         ) x JOIN users u ON u.id = x.partner \
         WHERE u.is_active = TRUE AND x.partner <> $1 \
         GROUP BY x.partner ORDER BY MAX(x.ts) DESC, x.partner LIMIT $3"
    )
}

/// The active users `user_id` most recently transacted with (paid, was paid by, asked, was
/// asked by), with the time of the latest; looks at most `scan` of the newest records of each
/// kind.
#[tracing::instrument(skip(db))]
pub async fn recent_partners(
    db: &Db,
    user_id: &str,
    scan: i64,
    limit: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let sql = recent_partners_sql(db);
    Ok(on_db!(db, pool => sqlx::query_as(&sql)
        .bind(user_id)
        .bind(scan)
        .bind(limit)
        .fetch_all(pool)
        .await?))
}

/// Where a user was last seen: (lat, lon).
#[tracing::instrument(skip(db))]
pub async fn location_of(db: &Db, user_id: &str) -> Result<Option<(f64, f64)>, StoreError> {
    Ok(on_db!(db, pool => sqlx::query_as(
        "SELECT lat, lon FROM user_locations WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await?))
}

/// A box to look for people in: a latitude band and a longitude band. When `lon_wraps`, the
/// band crosses the antimeridian and means `lon >= lon_min OR lon <= lon_max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    pub lat_min: f64,
    pub lat_max: f64,
    pub lon_min: f64,
    pub lon_max: f64,
    pub lon_wraps: bool,
}

/// A user seen somewhere.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Seen {
    #[sqlx(flatten)]
    pub profile: Profile,
    pub lat: f64,
    pub lon: f64,
    pub seen_at: i64,
}

/// Active users other than `except` seen inside `band` since `seen_since`, the most recently
/// seen first, at most `limit`.
#[tracing::instrument(skip(db))]
pub async fn seen_in(
    db: &Db,
    band: Band,
    except: &str,
    seen_since: i64,
    limit: i64,
) -> Result<Vec<Seen>, StoreError> {
    let sql = format!(
        "SELECT {PROFILE_COLUMNS}, l.lat AS lat, l.lon AS lon, l.seen_at AS seen_at \
         FROM user_locations l JOIN users u ON u.id = l.user_id \
         LEFT JOIN evergreen_ratings r ON r.user_id = u.id \
         WHERE u.is_active = TRUE AND l.user_id <> $1 AND l.seen_at >= $2 \
         AND l.lat BETWEEN $3 AND $4 \
         AND (($7 = 0 AND l.lon BETWEEN $5 AND $6) OR ($7 = 1 AND (l.lon >= $5 OR l.lon <= $6))) \
         ORDER BY l.seen_at DESC, l.user_id LIMIT $8"
    );
    Ok(on_db!(db, pool => sqlx::query_as::<_, Seen>(&sql)
        .bind(except)
        .bind(seen_since)
        .bind(band.lat_min)
        .bind(band.lat_max)
        .bind(band.lon_min)
        .bind(band.lon_max)
        .bind(i64::from(band.lon_wraps))
        .bind(limit)
        .fetch_all(pool)
        .await?))
}

/// Link a Facebook id to a user and, if the user has no name yet, give them `name`, in one
/// transaction. A Facebook id linked already is a unique violation (and nothing changes).
#[tracing::instrument(skip_all)]
pub async fn link_facebook(
    db: &Db,
    external_id: &str,
    user_id: &str,
    name: &str,
) -> Result<(), StoreError> {
    let now = now_ms();
    on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        sqlx::query(
            "INSERT INTO user_external_ids (external_id, user_id, created_at) VALUES ($1, $2, $3)")
            .bind(external_id)
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE users SET fullname = $2, updated_at = $3, record_version = record_version + 1 \
             WHERE id = $1 AND fullname = '' AND $2 <> ''")
            .bind(user_id)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    });
    Ok(())
}

/// The configured exchange rates: (currency, rate as a decimal string, updated at), by
/// currency, at most `limit`.
#[tracing::instrument(skip(db))]
pub async fn exchange_rates(db: &Db, limit: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
    Ok(on_db!(db, pool => sqlx::query_as(
        "SELECT currency, rate, updated_at FROM evergreen_exchange_rates \
         ORDER BY currency LIMIT $1")
        .bind(limit)
        .fetch_all(pool)
        .await?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::store::plans;

    /// The plan of `sql` with the history's three parameters, on either engine.
    async fn plan_of(db: &Db, sql: &str) -> String {
        match db {
            Db::Postgres(pool) => {
                let rows: Vec<(String,)> = sqlx::query_as(&format!("EXPLAIN {sql}"))
                    .bind("u1")
                    .bind(50_i64)
                    .bind(20_i64)
                    .fetch_all(pool)
                    .await
                    .unwrap();
                plans::text(rows, |(line,)| line)
            }
            Db::Sqlite(pool) => {
                let rows: Vec<(i64, i64, i64, String)> =
                    sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                        .bind("u1")
                        .bind(50_i64)
                        .bind(20_i64)
                        .fetch_all(pool)
                        .await
                        .unwrap();
                plans::text(rows, |row| row.3)
            }
        }
    }

    /// Panics unless `plan` probes `table` by its key and never reads it whole.
    fn assert_probed(
        plan: &str,
        table: &str,
        alias: &str,
        postgres_index: &str,
        sqlite_index: &str,
    ) {
        assert!(
            plan.contains(&format!("using {postgres_index} on {table}"))
                || plan.contains(&format!("SEARCH {alias} USING INDEX {sqlite_index}"))
                || plan.contains(&format!(
                    "SEARCH {alias} USING COVERING INDEX {sqlite_index}"
                )),
            "{table} is not probed by its key:\n{plan}"
        );
        assert!(
            !plan.contains(&format!("Seq Scan on {table}"))
                && !plan.contains(&format!("SCAN {alias}\n"))
                && !plan.ends_with(&format!("SCAN {alias}")),
            "{table} is read whole:\n{plan}"
        );
    }

    /// On PostgreSQL the transfers' keys are byte-ordered and the users' and the feedback's
    /// are not (migration 0011): the history's unions must still meet those tables' indexes,
    /// here 50,000 users and as many feedbacks, and not read them whole for every request.
    #[tokio::test]
    async fn the_history_probes_users_and_feedback_by_key() {
        let (_dir, db) = crate::store::test_db().await;
        let fill = [
            format!(
                "INSERT INTO users (id, email, email_lower, fullname, role_id, created_at, \
                 updated_at) SELECT 'u' || n, 'u' || n || '@example.com', \
                 'u' || n || '@example.com', 'U', 'user', 0, 0 FROM {}",
                plans::ONE_TO_50000
            ),
            format!(
                "INSERT INTO evergreen_feedback (transaction_id, payor, payee, kind, created_at) \
                 SELECT 't' || n, 'u1', 'u2', 'positive', 0 FROM {}",
                plans::ONE_TO_50000
            ),
            "INSERT INTO transfers (id, kind, debit_kind, debit_id, credit_kind, credit_id, \
             currency, amount, created_at) VALUES ('t1', 'payment', 'user', 'u1', 'user', 'u2', \
             'EVG', 1, 0)"
                .to_owned(),
            "ANALYZE".to_owned(),
        ];
        for statement in &fill {
            crate::on_db!(&db, pool => sqlx::query(statement).execute(pool).await.map(drop).unwrap());
        }
        let partners = plan_of(&db, &recent_partners_sql(&db)).await;
        assert_probed(
            &partners,
            "users",
            "u",
            "users_pkey",
            "sqlite_autoindex_users_1",
        );
        let history = transactions_sql(
            &db,
            "(r.payor = $1 OR r.payee = $1)",
            "(p.debit_id = $1 OR p.credit_id = $1)",
            "ORDER BY t.sort_at DESC, t.transaction_id DESC LIMIT $2 OFFSET $3",
        );
        let history = plan_of(&db, &history).await;
        assert_probed(
            &history,
            "evergreen_feedback",
            "f",
            "evergreen_feedback_pkey",
            "sqlite_autoindex_evergreen_feedback_1",
        );
        // And the answers: the one transfer, with u2 its partner.
        let found = recent_partners(&db, "u1", 50, 20).await.unwrap();
        assert_eq!(found, vec![("u2".to_owned(), 0)]);
        let rows = transactions(&db, "u1", 0, 20).await.unwrap();
        assert_eq!(rows.len(), 1);
    }
}
