//! Evergreen merchants: map listings, QR cards issued for distribution, and users' items.
//!
//! Calls that change something and answer an Evergreen `request_id` write the answer into
//! `evergreen_replies` (claimed beforehand by `api::evergreen::claim`) in the same transaction
//! as the change, so a change is never kept without its answer, nor an answer without its
//! change.

use super::{now_ms, BeginWrite, Db, StoreError};
use crate::on_db;

/// Where a claimed request id's answer is written, in the transaction of its effect.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub scope: &'a str,
    pub request_id: &'a str,
}

const COMPLETE_ANSWER: &str =
    "UPDATE evergreen_replies SET body = $3 WHERE scope = $1 AND request_id = $2";

/// A user's merchant listing.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Listing {
    pub is_merchant: bool,
    pub description: Option<String>,
    pub kind: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

/// A change of a listing. `None` keeps a field; `Some(None)` clears it.
#[derive(Debug, Clone)]
pub struct ListingChange {
    pub is_merchant: bool,
    pub description: Option<Option<String>>,
    pub kind: Option<Option<String>>,
    /// (lat, lon); `None` keeps the stored position.
    pub position: Option<(f64, f64)>,
}

/// The user's listing, if they ever registered as a merchant.
#[tracing::instrument(skip(db))]
pub async fn listing(db: &Db, user_id: &str) -> Result<Option<Listing>, StoreError> {
    Ok(on_db!(db, pool => sqlx::query_as::<_, Listing>(
        "SELECT is_merchant, description, kind, lat, lon FROM merchants WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await?))
}

/// Create or change a listing and write the call's answer, in one transaction.
#[tracing::instrument(skip(db, change, answer, body))]
pub async fn save_listing(
    db: &Db,
    user_id: &str,
    change: &ListingChange,
    answer: Answer<'_>,
    body: &str,
) -> Result<(), StoreError> {
    let (lat, lon) = change.position.unzip();
    on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        sqlx::query(
            "INSERT INTO merchants (user_id, is_merchant, description, kind, updated_at, lat, lon) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (user_id) DO UPDATE SET \
             is_merchant = excluded.is_merchant, \
             description = CASE WHEN $8 THEN excluded.description ELSE merchants.description END, \
             kind = CASE WHEN $9 THEN excluded.kind ELSE merchants.kind END, \
             lat = COALESCE(excluded.lat, merchants.lat), \
             lon = COALESCE(excluded.lon, merchants.lon), \
             updated_at = excluded.updated_at")
            .bind(user_id)
            .bind(change.is_merchant)
            .bind(change.description.clone().flatten())
            .bind(change.kind.clone().flatten())
            .bind(now_ms())
            .bind(lat)
            .bind(lon)
            .bind(change.description.is_some())
            .bind(change.kind.is_some())
            .execute(&mut *tx)
            .await?;
        sqlx::query(COMPLETE_ANSWER)
            .bind(answer.scope)
            .bind(answer.request_id)
            .bind(body)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    });
    Ok(())
}

/// A listed merchant near a position.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Nearby {
    pub user_id: String,
    pub name: String,
    pub image: Option<String>,
    pub description: Option<String>,
    pub kind: Option<String>,
    pub lat: f64,
    pub lon: f64,
}

/// Where to look: a latitude band and a longitude half-width (degrees, measured the short way
/// round, so the band may cross the antimeridian; 180 means every longitude).
#[derive(Debug, Clone, Copy)]
pub struct Area {
    pub lat: f64,
    pub lon: f64,
    pub lat_min: f64,
    pub lat_max: f64,
    pub lon_half_width: f64,
    /// `cos²(lat)`: weighs longitude differences in the approximate order.
    pub lon_weight: f64,
}

/// Listed merchants of active users inside `area` (optionally of one type, never `except`),
/// at most `limit`, nearest first by an equirectangular approximation (the caller sorts the
/// candidates by exact distance).
#[tracing::instrument(skip(db))]
pub async fn nearby(
    db: &Db,
    area: Area,
    kind: Option<&str>,
    except: &str,
    limit: i64,
) -> Result<Vec<Nearby>, StoreError> {
    // The longitude difference the short way round, in degrees (0 to 180).
    const DLON: &str = "(CASE WHEN ABS(m.lon - $4) > 180 THEN 360 - ABS(m.lon - $4) \
                        ELSE ABS(m.lon - $4) END)";
    let sql = format!(
        "SELECT m.user_id, u.fullname AS name, u.avatar AS image, m.description, m.kind, \
         m.lat, m.lon \
         FROM merchants m JOIN users u ON u.id = m.user_id \
         WHERE m.is_merchant = $1 AND u.is_active = $1 \
         AND m.lat IS NOT NULL AND m.lon IS NOT NULL \
         AND m.lat BETWEEN $2 AND $3 AND {DLON} <= $5 \
         AND ($6 IS NULL OR m.kind = $6) AND m.user_id <> $7 \
         ORDER BY (m.lat - $8) * (m.lat - $8) + {DLON} * {DLON} * $9, m.user_id \
         LIMIT $10"
    );
    Ok(on_db!(db, pool => sqlx::query_as::<_, Nearby>(&sql)
        .bind(true)
        .bind(area.lat_min)
        .bind(area.lat_max)
        .bind(area.lon)
        .bind(area.lon_half_width)
        .bind(kind)
        .bind(except)
        .bind(area.lat)
        .bind(area.lon_weight)
        .bind(limit)
        .fetch_all(pool)
        .await?))
}

/// True when the server issued this QR card code.
#[tracing::instrument(skip_all)]
pub async fn qr_card_issued(db: &Db, code: &str) -> Result<bool, StoreError> {
    let count: i64 = on_db!(db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM qr_cards WHERE code = $1")
        .bind(code)
        .fetch_one(pool)
        .await?);
    Ok(count > 0)
}

/// How many of the cards a merchant was issued no user has registered yet.
#[tracing::instrument(skip(db))]
pub async fn qr_cards_unregistered(db: &Db, issued_by: &str) -> Result<i64, StoreError> {
    Ok(on_db!(db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM qr_cards c WHERE c.issued_by = $1 AND NOT EXISTS \
         (SELECT 1 FROM user_external_ids e WHERE e.external_id = 'qr:' || c.code)")
        .bind(issued_by)
        .fetch_one(pool)
        .await?))
}

/// Record new cards for a merchant and write the call's answer, in one transaction. `false`
/// (and nothing written) when a code was issued before or is already some user's card.
#[tracing::instrument(skip(db, codes, answer, body))]
pub async fn issue_qr_cards(
    db: &Db,
    issued_by: &str,
    codes: &[String],
    answer: Answer<'_>,
    body: &str,
) -> Result<bool, StoreError> {
    let now = now_ms();
    let issued = on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        let mut fresh = true;
        for code in codes {
            let inserted = sqlx::query(
                "INSERT INTO qr_cards (code, issued_by, issued_at) SELECT $1, $2, $3 \
                 WHERE NOT EXISTS (SELECT 1 FROM user_external_ids WHERE external_id = $4) \
                 ON CONFLICT (code) DO NOTHING")
                .bind(code)
                .bind(issued_by)
                .bind(now)
                .bind(format!("qr:{code}"))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if inserted == 0 {
                fresh = false;
                break;
            }
        }
        if fresh {
            sqlx::query(COMPLETE_ANSWER)
                .bind(answer.scope)
                .bind(answer.request_id)
                .bind(body)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        fresh
    });
    Ok(issued)
}

/// One of a user's items. `amount` is in EVG minor units.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Item {
    pub id: i64,
    pub description: String,
    pub amount: i64,
}

/// A change to a user's items.
#[derive(Debug, Clone)]
pub enum ItemChange {
    Create {
        description: String,
        amount: i64,
    },
    /// `None` keeps a field.
    Update {
        id: i64,
        description: Option<String>,
        amount: Option<i64>,
    },
    Delete {
        id: i64,
    },
}

/// Why a set of item changes was refused as a whole (nothing was changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemsRefused {
    /// The change at this index names an item that is not the user's.
    UnknownItem { index: usize },
    /// The user would have more items than allowed.
    TooMany { max: i64 },
}

/// A user's items, oldest first, at most `limit`.
#[tracing::instrument(skip(db))]
pub async fn items_of(db: &Db, user_id: &str, limit: i64) -> Result<Vec<Item>, StoreError> {
    Ok(on_db!(db, pool => sqlx::query_as::<_, Item>(
        "SELECT id, description, amount FROM evergreen_items WHERE user_id = $1 \
         ORDER BY id LIMIT $2")
        .bind(user_id)
        .bind(limit)
        .fetch_all(pool)
        .await?))
}

/// Apply `changes` to a user's items in order, all or none, and write the call's answer
/// (`render` of the list after the change) in the same transaction.
#[tracing::instrument(skip(db, changes, answer, render), fields(changes = changes.len()))]
pub async fn change_items(
    db: &Db,
    user_id: &str,
    changes: &[ItemChange],
    items_max: i64,
    answer: Answer<'_>,
    render: impl FnOnce(&[Item]) -> String,
) -> Result<Result<Vec<Item>, ItemsRefused>, StoreError> {
    let now = now_ms();
    let result = on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        // Written first: SQLite takes its write lock at once, PostgreSQL locks this user's row
        // until commit, so two changes of one user's items run one after the other.
        sqlx::query(
            "INSERT INTO evergreen_item_lists (user_id, version, updated_at) VALUES ($1, 1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET version = evergreen_item_lists.version + 1, \
             updated_at = excluded.updated_at")
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let mut refused = None;
        for (index, change) in changes.iter().enumerate() {
            let touched = match change {
                ItemChange::Create { description, amount } => sqlx::query(
                    "INSERT INTO evergreen_items (user_id, description, amount, created_at, \
                     updated_at) VALUES ($1, $2, $3, $4, $4)")
                    .bind(user_id)
                    .bind(description)
                    .bind(amount)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
                ItemChange::Update { id, description, amount } => sqlx::query(
                    "UPDATE evergreen_items SET description = COALESCE($3, description), \
                     amount = COALESCE($4, amount), updated_at = $5 \
                     WHERE id = $1 AND user_id = $2")
                    .bind(id)
                    .bind(user_id)
                    .bind(description)
                    .bind(amount)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
                ItemChange::Delete { id } => sqlx::query(
                    "DELETE FROM evergreen_items WHERE id = $1 AND user_id = $2")
                    .bind(id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
            };
            if touched == 0 {
                refused = Some(ItemsRefused::UnknownItem { index });
                break;
            }
        }
        if refused.is_none() {
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM evergreen_items WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
            if count > items_max {
                refused = Some(ItemsRefused::TooMany { max: items_max });
            }
        }
        match refused {
            Some(refusal) => {
                tx.rollback().await?;
                Err(refusal)
            }
            None => {
                let items = sqlx::query_as::<_, Item>(
                    "SELECT id, description, amount FROM evergreen_items WHERE user_id = $1 \
                     ORDER BY id LIMIT $2")
                    .bind(user_id)
                    .bind(items_max)
                    .fetch_all(&mut *tx)
                    .await?;
                sqlx::query(COMPLETE_ANSWER)
                    .bind(answer.scope)
                    .bind(answer.request_id)
                    .bind(render(&items))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(items)
            }
        }
    });
    Ok(result)
}
