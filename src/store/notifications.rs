//! The notification service's tables: push devices, notifications, push deliveries.
//!
//! A device's push token is a credential: it is read here only to push, held in a
//! [`SecretString`] (so it never prints), and looked up by its SHA-256 digest.

use secrecy::SecretString;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::journal::Tx;
use super::{now_ms, BeginWrite, Db, StoreError};
use crate::{on_db, on_tx};

/// A registered push device.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Device {
    pub id: String,
    pub user_id: String,
    /// `ios`, `android` or `web`.
    pub platform: String,
    /// The provider's push token. Never shown, never logged.
    #[sqlx(try_from = "String")]
    pub token: SecretString,
    pub name: Option<String>,
    pub is_active: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A notification of one user.
#[derive(Debug, Clone)]
pub struct Notification {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    /// A JSON object.
    pub data: Value,
    pub seen_at: Option<i64>,
    pub created_at: i64,
}

/// A notification as stored: `data` is JSON text.
#[derive(sqlx::FromRow)]
struct NotificationRow {
    id: String,
    user_id: String,
    kind: String,
    title: String,
    body: String,
    data: String,
    seen_at: Option<i64>,
    created_at: i64,
}

impl From<NotificationRow> for Notification {
    fn from(row: NotificationRow) -> Self {
        let data = serde_json::from_str(&row.data).unwrap_or_else(|error| {
            // Only this module writes the column, from a serialized object; a row that does
            // not parse was changed by hand. Show it as empty rather than fail every list.
            tracing::error!(%error, notification_id = %row.id, "stored notification data is not JSON");
            Value::Object(serde_json::Map::new())
        });
        Notification {
            id: row.id,
            user_id: row.user_id,
            kind: row.kind,
            title: row.title,
            body: row.body,
            data,
            seen_at: row.seen_at,
            created_at: row.created_at,
        }
    }
}

/// A notification to create.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub id: String,
    pub user_id: String,
    pub kind: String,
    pub title: String,
    pub body: String,
    /// A JSON object.
    pub data: serde_json::Value,
    pub created_at: i64,
}

/// A device to register.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub id: String,
    pub user_id: String,
    pub platform: String,
    pub token: SecretString,
    pub name: Option<String>,
}

/// What registering a device did.
#[derive(Debug, Clone)]
pub enum Registered {
    /// A new device.
    New(Device),
    /// The user already had this token registered and active: that device, unchanged.
    Existing(Device),
    /// The user has `devices_max` active devices already; nothing was written.
    TooMany,
}

/// One push as an administrator sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    pub notification_id: String,
    pub device_id: String,
    pub provider: String,
    pub status: String,
    pub at: i64,
}

/// Where a push stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Claimed; the provider has not answered yet.
    Pending,
    Sent,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// Sort order of a user's notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    OldestFirst,
    NewestFirst,
}

const DEVICE_COLUMNS: &str =
    "id, user_id, platform, token, name, is_active, created_at, updated_at";
const NOTIFICATION_COLUMNS: &str = "id, user_id, kind, title, body, data, seen_at, created_at";

/// The hex SHA-256 of a push token: how tokens are compared and indexed.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// `$first, $first+1, …` for `count` values.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Register a device for its user, in one transaction serialised per user (SQLite's write
/// lock; a row lock on the user on PostgreSQL), so the limit holds under concurrency:
/// the user's active device with the same token is returned as it is; otherwise, with fewer
/// than `devices_max` active devices, the device is inserted. Other users' active devices
/// with the same token are deactivated: a push token names one app install, and it now
/// belongs to this user (a phone that changed hands must not receive the old owner's pushes).
#[tracing::instrument(skip_all, fields(user_id = %new.user_id))]
pub async fn register_device(
    db: &Db,
    new: &NewDevice,
    devices_max: i64,
) -> Result<Registered, StoreError> {
    use secrecy::ExposeSecret;
    let digest = token_digest(new.token.expose_secret());
    let now = now_ms();
    let lock_user = match db {
        // The transaction already holds SQLite's only write lock.
        Db::Sqlite(_) => "SELECT id FROM users WHERE id = $1",
        // NO KEY UPDATE: serialises registrations of this user without blocking the inserts
        // that reference the user (they take KEY SHARE).
        Db::Postgres(_) => "SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE",
    };
    let existing_sql = format!(
        "SELECT {DEVICE_COLUMNS} FROM notification_devices \
         WHERE user_id = $1 AND token_digest = $2 AND is_active"
    );
    let insert_sql = format!(
        "INSERT INTO notification_devices \
         (id, user_id, platform, token, token_digest, name, is_active, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7, $7) RETURNING {DEVICE_COLUMNS}"
    );
    let registered = on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        let user: Option<String> = sqlx::query_scalar(lock_user)
            .bind(&new.user_id)
            .fetch_optional(&mut *tx)
            .await?;
        if user.is_none() {
            return Err(StoreError::Database(sqlx::Error::RowNotFound));
        }
        let existing = sqlx::query_as::<_, Device>(&existing_sql)
            .bind(&new.user_id)
            .bind(&digest)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(device) = existing {
            tx.rollback().await?;
            return Ok(Registered::Existing(device));
        }
        let active: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM notification_devices WHERE user_id = $1 AND is_active")
            .bind(&new.user_id)
            .fetch_one(&mut *tx)
            .await?;
        if active >= devices_max {
            tx.rollback().await?;
            return Ok(Registered::TooMany);
        }
        sqlx::query(
            "UPDATE notification_devices SET is_active = FALSE, updated_at = $3 \
             WHERE token_digest = $1 AND user_id <> $2 AND is_active")
            .bind(&digest)
            .bind(&new.user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let device = sqlx::query_as::<_, Device>(&insert_sql)
            .bind(&new.id)
            .bind(&new.user_id)
            .bind(&new.platform)
            .bind(new.token.expose_secret())
            .bind(&digest)
            .bind(&new.name)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Registered::New(device)
    });
    Ok(registered)
}

/// Deactivate a device of this user and return it; `None` when the user has no such device
/// (unknown, or another user's). Unregistering twice answers the device again and keeps the
/// time of the first.
#[tracing::instrument(skip(db))]
pub async fn unregister_device(
    db: &Db,
    user_id: &str,
    device_id: &str,
) -> Result<Option<Device>, StoreError> {
    let sql = format!(
        "UPDATE notification_devices SET is_active = FALSE, \
         updated_at = CASE WHEN is_active THEN $3 ELSE updated_at END \
         WHERE id = $1 AND user_id = $2 RETURNING {DEVICE_COLUMNS}"
    );
    Ok(on_db!(db, pool => sqlx::query_as::<_, Device>(&sql)
        .bind(device_id)
        .bind(user_id)
        .bind(now_ms())
        .fetch_optional(pool)
        .await?))
}

/// The user's active devices, oldest first, at most `limit`.
#[tracing::instrument(skip(db))]
pub async fn active_devices(db: &Db, user_id: &str, limit: i64) -> Result<Vec<Device>, StoreError> {
    let sql = format!(
        "SELECT {DEVICE_COLUMNS} FROM notification_devices \
         WHERE user_id = $1 AND is_active ORDER BY created_at, id LIMIT $2"
    );
    Ok(on_db!(db, pool => sqlx::query_as::<_, Device>(&sql)
        .bind(user_id)
        .bind(limit)
        .fetch_all(pool)
        .await?))
}

/// Insert inside a running transaction (a journal batch).
pub async fn insert(tx: Tx<'_>, n: &NewNotification) -> Result<(), sqlx::Error> {
    let data = n.data.to_string();
    on_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO notifications (id, user_id, kind, title, body, data, seen_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)")
            .bind(&n.id)
            .bind(&n.user_id)
            .bind(&n.kind)
            .bind(&n.title)
            .bind(&n.body)
            .bind(&data)
            .bind(n.created_at)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

/// Create notifications in one transaction. When a recipient is not an active user nothing is
/// written and `Err(Ok(ids))` names the unknown ones.
#[tracing::instrument(skip_all, fields(count = new.len()))]
pub async fn create_all(
    db: &Db,
    new: &[NewNotification],
) -> Result<Result<Vec<Notification>, Vec<String>>, StoreError> {
    let mut recipients: Vec<&str> = new.iter().map(|n| n.user_id.as_str()).collect();
    recipients.sort_unstable();
    recipients.dedup();
    let known_sql = format!(
        "SELECT id FROM users WHERE is_active AND id IN ({})",
        placeholders(1, recipients.len())
    );
    let outcome = on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        let mut query = sqlx::query_scalar::<_, String>(&known_sql);
        for id in &recipients {
            query = query.bind(*id);
        }
        let known: Vec<String> = query.fetch_all(&mut *tx).await?;
        let unknown: Vec<String> = recipients
            .iter()
            .filter(|id| !known.iter().any(|k| k == *id))
            .map(|id| (*id).to_owned())
            .collect();
        if !unknown.is_empty() {
            tx.rollback().await?;
            return Ok(Err(unknown));
        }
        for n in new {
            insert(super::journal::to_tx(&mut tx), n).await?;
        }
        tx.commit().await?;
        Ok(new
            .iter()
            .map(|n| Notification {
                id: n.id.clone(),
                user_id: n.user_id.clone(),
                kind: n.kind.clone(),
                title: n.title.clone(),
                body: n.body.clone(),
                data: n.data.clone(),
                seen_at: None,
                created_at: n.created_at,
            })
            .collect())
    });
    Ok(outcome)
}

/// A notification by id.
#[tracing::instrument(skip(db))]
pub async fn by_id(db: &Db, id: &str) -> Result<Option<Notification>, StoreError> {
    let sql = format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = $1");
    let row = on_db!(db, pool => sqlx::query_as::<_, NotificationRow>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?);
    Ok(row.map(Notification::from))
}

/// A page of the user's notifications and the user's total count.
#[tracing::instrument(skip(db))]
pub async fn page(
    db: &Db,
    user_id: &str,
    order: Order,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Notification>, i64), StoreError> {
    let order_by = match order {
        Order::OldestFirst => "created_at, id",
        Order::NewestFirst => "created_at DESC, id DESC",
    };
    let sql = format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE user_id = $1 \
         ORDER BY {order_by} LIMIT $2 OFFSET $3"
    );
    let (rows, total) = on_db!(db, pool => {
        let rows = sqlx::query_as::<_, NotificationRow>(&sql)
            .bind(user_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(pool)
            .await?;
        (rows, total)
    });
    Ok((rows.into_iter().map(Notification::from).collect(), total))
}

/// Mark the user's notifications among `ids` as seen (those seen before keep their time) and
/// return all of them, oldest first. Ids of other users' notifications are left out.
#[tracing::instrument(skip_all, fields(user_id = %user_id, count = ids.len()))]
pub async fn mark_seen(
    db: &Db,
    user_id: &str,
    ids: &[String],
) -> Result<Vec<Notification>, StoreError> {
    let update_sql = format!(
        "UPDATE notifications SET seen_at = $2 \
         WHERE user_id = $1 AND seen_at IS NULL AND id IN ({})",
        placeholders(3, ids.len())
    );
    let select_sql = format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications \
         WHERE user_id = $1 AND id IN ({}) ORDER BY created_at, id",
        placeholders(2, ids.len())
    );
    let now = now_ms();
    let rows = on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        let mut update = sqlx::query(&update_sql).bind(user_id).bind(now);
        for id in ids {
            update = update.bind(id);
        }
        update.execute(&mut *tx).await?;
        let mut select = sqlx::query_as::<_, NotificationRow>(&select_sql).bind(user_id);
        for id in ids {
            select = select.bind(id);
        }
        let rows = select.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows
    });
    Ok(rows.into_iter().map(Notification::from).collect())
}

/// Claim the push of a notification to a device: `true` when this call claimed it, `false`
/// when it was claimed before (by an earlier or concurrent delivery).
#[tracing::instrument(skip(db))]
pub async fn claim_delivery(
    db: &Db,
    id: &str,
    notification_id: &str,
    device_id: &str,
    provider: &str,
) -> Result<bool, StoreError> {
    let claimed = on_db!(db, pool => sqlx::query(
        "INSERT INTO push_deliveries (id, notification_id, device_id, provider, status, at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (notification_id, device_id) DO NOTHING")
        .bind(id)
        .bind(notification_id)
        .bind(device_id)
        .bind(provider)
        .bind(DeliveryStatus::Pending.as_str())
        .bind(now_ms())
        .execute(pool)
        .await?
        .rows_affected());
    Ok(claimed > 0)
}

/// Write down how a claimed push ended.
#[tracing::instrument(skip(db))]
pub async fn finish_delivery(db: &Db, id: &str, status: DeliveryStatus) -> Result<(), StoreError> {
    on_db!(db, pool => {
        sqlx::query("UPDATE push_deliveries SET status = $2, at = $3 WHERE id = $1")
            .bind(id)
            .bind(status.as_str())
            .bind(now_ms())
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// The pushes of the user's notifications, newest first, at most `limit`.
#[tracing::instrument(skip(db))]
pub async fn deliveries_of_user(
    db: &Db,
    user_id: &str,
    limit: i64,
) -> Result<Vec<Delivery>, StoreError> {
    Ok(on_db!(db, pool => sqlx::query_as::<_, Delivery>(
        "SELECT d.notification_id, d.device_id, d.provider, d.status, d.at \
         FROM push_deliveries d JOIN notifications n ON n.id = d.notification_id \
         WHERE n.user_id = $1 ORDER BY d.at DESC, d.id DESC LIMIT $2")
        .bind(user_id)
        .bind(limit)
        .fetch_all(pool)
        .await?))
}
