//! Apps (Pavillion's `clientId`), their API keys, the users linked to them, and the messages
//! and charges they send. The money itself moves in the ledger, through the user's wallet.

use super::{now_ms, BeginWrite, Db, StoreError};
use crate::on_db;

/// A registered app.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct App {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

/// Where an app message (and its charge) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A message without a charge: recorded, nothing to settle.
    Recorded,
    /// Claimed; the wallet has not answered yet (or the answer was not written down, or the
    /// database did not confirm the charge's commit).
    Pending,
    Charged,
    InsufficientFunds,
    NoAccount,
    /// The wallet did not decide (its batch failed, it was busy): nothing moved.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Recorded => "recorded",
            Status::Pending => "pending",
            Status::Charged => "charged",
            Status::InsufficientFunds => "insufficient_funds",
            Status::NoAccount => "no_account",
            Status::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Status> {
        Some(match raw {
            "recorded" => Status::Recorded,
            "pending" => Status::Pending,
            "charged" => Status::Charged,
            "insufficient_funds" => Status::InsufficientFunds,
            "no_account" => Status::NoAccount,
            "failed" => Status::Failed,
            _ => return None,
        })
    }

    /// Final statuses carry the answer; the others still need the wallet's.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Pending | Status::Failed)
    }
}

/// A charge to record with its message.
#[derive(Debug, Clone)]
pub struct NewCharge {
    pub id: String,
    pub currency: String,
    /// Minor units, positive.
    pub amount: i64,
}

/// An app message to record.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub app_id: String,
    pub user_id: String,
    pub message: Option<String>,
    pub idempotency_key: Option<String>,
    pub fingerprint: String,
    pub charge: Option<NewCharge>,
}

/// A stored app message with its charge, if it has one.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRecord {
    pub id: String,
    pub app_id: String,
    pub user_id: String,
    pub message: Option<String>,
    pub charge_id: Option<String>,
    pub status: String,
    pub fingerprint: String,
    pub currency: Option<String>,
    pub amount: Option<i64>,
}

impl MessageRecord {
    /// An unknown stored status reads as pending: the wallet is asked again, which is safe.
    pub fn status(&self) -> Status {
        Status::parse(&self.status).unwrap_or(Status::Pending)
    }
}

/// Whether a message was recorded now or an earlier one holds its idempotency key.
#[derive(Debug, Clone)]
pub enum Claim {
    New(MessageRecord),
    Existing(MessageRecord),
}

const RECORD_SELECT: &str = "SELECT m.id, m.app_id, m.user_id, m.message, m.charge_id, m.status, \
                             m.fingerprint, c.currency, c.amount \
                             FROM app_messages m LEFT JOIN app_charges c ON c.id = m.charge_id";

/// Register an app with its first API key (by hash). A taken id is a unique violation.
#[tracing::instrument(skip(db, key_hash))]
pub async fn insert(
    db: &Db,
    id: &str,
    name: &str,
    key_hash: &str,
    created_by: &str,
) -> Result<App, StoreError> {
    let now = now_ms();
    let app = on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        let app = sqlx::query_as::<_, App>(
            "INSERT INTO apps (id, name, created_by, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id, name, created_at")
            .bind(id)
            .bind(name)
            .bind(created_by)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO app_api_keys (key_hash, app_id, created_at) VALUES ($1, $2, $3)")
            .bind(key_hash)
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        app
    });
    Ok(app)
}

/// An app by id.
#[tracing::instrument(skip(db))]
pub async fn by_id(db: &Db, id: &str) -> Result<Option<App>, StoreError> {
    Ok(on_db!(db, pool => sqlx::query_as::<_, App>(
        "SELECT id, name, created_at FROM apps WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?))
}

/// A page of apps, oldest first.
#[tracing::instrument(skip(db))]
pub async fn list(db: &Db, limit: i64, offset: i64) -> Result<Vec<App>, StoreError> {
    Ok(on_db!(db, pool => sqlx::query_as::<_, App>(
        "SELECT id, name, created_at FROM apps ORDER BY created_at, id LIMIT $1 OFFSET $2")
        .bind(limit)
        .bind(offset)
        .fetch_all(pool)
        .await?))
}

/// Replace an app's live API key: the old ones stop working in the same transaction.
/// `false` when there is no such app.
#[tracing::instrument(skip(db, key_hash))]
pub async fn replace_key(db: &Db, app_id: &str, key_hash: &str) -> Result<bool, StoreError> {
    let now = now_ms();
    // The write comes first so that SQLite takes its write lock at once (a read first could
    // not upgrade if another writer committed meanwhile).
    let replaced = on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        sqlx::query(
            "UPDATE app_api_keys SET revoked_at = $2 WHERE app_id = $1 AND revoked_at IS NULL")
            .bind(app_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM apps WHERE id = $1")
            .bind(app_id)
            .fetch_one(&mut *tx)
            .await?;
        if exists > 0 {
            sqlx::query(
                "INSERT INTO app_api_keys (key_hash, app_id, created_at) VALUES ($1, $2, $3)")
                .bind(key_hash)
                .bind(app_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        exists > 0
    });
    Ok(replaced)
}

/// True when `key_hash` is a live API key of the app.
#[tracing::instrument(skip(db, key_hash))]
pub async fn key_is_live(db: &Db, app_id: &str, key_hash: &str) -> Result<bool, StoreError> {
    let count: i64 = on_db!(db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM app_api_keys \
         WHERE key_hash = $1 AND app_id = $2 AND revoked_at IS NULL")
        .bind(key_hash)
        .bind(app_id)
        .fetch_one(pool)
        .await?);
    Ok(count > 0)
}

/// The app's revenue balances: (currency, minor units), by currency.
#[tracing::instrument(skip(db))]
pub async fn revenue(db: &Db, app_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(on_db!(db, pool => sqlx::query_as(
        "SELECT currency, balance FROM ledger_accounts \
         WHERE owner_kind = 'app' AND owner_id = $1 ORDER BY currency")
        .bind(app_id)
        .fetch_all(pool)
        .await?))
}

/// Link a user to an app (harmless when already linked).
#[tracing::instrument(skip(db))]
pub async fn link_user(db: &Db, app_id: &str, user_id: &str) -> Result<(), StoreError> {
    on_db!(db, pool => {
        sqlx::query(
            "INSERT INTO app_users (app_id, user_id, linked_at) VALUES ($1, $2, $3) \
             ON CONFLICT (app_id, user_id) DO NOTHING")
            .bind(app_id)
            .bind(user_id)
            .bind(now_ms())
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// True when the user is linked to the app and active.
#[tracing::instrument(skip(db))]
pub async fn is_linked(db: &Db, app_id: &str, user_id: &str) -> Result<bool, StoreError> {
    let count: i64 = on_db!(db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM app_users l JOIN users u ON u.id = l.user_id \
         WHERE l.app_id = $1 AND l.user_id = $2 AND u.is_active = TRUE")
        .bind(app_id)
        .bind(user_id)
        .fetch_one(pool)
        .await?);
    Ok(count > 0)
}

/// Record a message (and its charge, `pending`; a message alone is `recorded`) in one
/// transaction. When the app already used the idempotency key, nothing is written and the
/// earlier record is returned (two concurrent first claims: the unique key lets one in).
#[tracing::instrument(skip_all, fields(app_id = %new.app_id))]
pub async fn claim_message(db: &Db, new: &NewMessage) -> Result<Claim, StoreError> {
    // A repeat usually comes after the first claim committed: a read answers it without taking
    // SQLite's write lock.
    if let Some(key) = &new.idempotency_key {
        if let Some(existing) = by_key(db, &new.app_id, key).await? {
            return Ok(Claim::Existing(existing));
        }
    }
    let now = now_ms();
    let status = match new.charge {
        Some(_) => Status::Pending,
        None => Status::Recorded,
    };
    let inserted = on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO app_messages (id, app_id, user_id, message, charge_id, status, \
             idempotency_key, fingerprint, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (app_id, idempotency_key) DO NOTHING")
            .bind(&new.id)
            .bind(&new.app_id)
            .bind(&new.user_id)
            .bind(&new.message)
            .bind(new.charge.as_ref().map(|c| &c.id))
            .bind(status.as_str())
            .bind(&new.idempotency_key)
            .bind(&new.fingerprint)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        if inserted {
            if let Some(charge) = &new.charge {
                sqlx::query(
                    "INSERT INTO app_charges (id, app_message_id, app_id, user_id, currency, \
                     amount, status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                    .bind(&charge.id)
                    .bind(&new.id)
                    .bind(&new.app_id)
                    .bind(&new.user_id)
                    .bind(&charge.currency)
                    .bind(charge.amount)
                    .bind(status.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        inserted
    });
    if inserted {
        return Ok(Claim::New(MessageRecord {
            id: new.id.clone(),
            app_id: new.app_id.clone(),
            user_id: new.user_id.clone(),
            message: new.message.clone(),
            charge_id: new.charge.as_ref().map(|c| c.id.clone()),
            status: status.as_str().to_owned(),
            fingerprint: new.fingerprint.clone(),
            currency: new.charge.as_ref().map(|c| c.currency.clone()),
            amount: new.charge.as_ref().map(|c| c.amount),
        }));
    }
    let key = new.idempotency_key.as_deref().unwrap_or_default();
    match by_key(db, &new.app_id, key).await? {
        Some(existing) => Ok(Claim::Existing(existing)),
        // Only a keyed insert can conflict, and its row is never deleted.
        None => Err(StoreError::Database(sqlx::Error::RowNotFound)),
    }
}

/// The message an app recorded under an idempotency key.
#[tracing::instrument(skip(db, key))]
pub async fn by_key(db: &Db, app_id: &str, key: &str) -> Result<Option<MessageRecord>, StoreError> {
    let sql = format!("{RECORD_SELECT} WHERE m.app_id = $1 AND m.idempotency_key = $2");
    Ok(on_db!(db, pool => sqlx::query_as::<_, MessageRecord>(&sql)
        .bind(app_id)
        .bind(key)
        .fetch_optional(pool)
        .await?))
}

/// Write down the wallet's answer for a message and its charge. Only a `pending` or `failed`
/// record changes: a final status, written by a concurrent copy of the same request, stays.
#[tracing::instrument(skip(db))]
pub async fn settle(
    db: &Db,
    message_id: &str,
    charge_id: &str,
    status: Status,
) -> Result<(), StoreError> {
    let now = now_ms();
    on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        sqlx::query(
            "UPDATE app_messages SET status = $2, settled_at = $3 \
             WHERE id = $1 AND status IN ('pending', 'failed')")
            .bind(message_id)
            .bind(status.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE app_charges SET status = $2, settled_at = $3 \
             WHERE id = $1 AND status IN ('pending', 'failed')")
            .bind(charge_id)
            .bind(status.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    });
    Ok(())
}
