//! The property catalog's dictionaries beside the listings: the master list of amenities and
//! the locale texts (localized title and description) of a listing. Also the partial,
//! case-insensitive list filter.

use super::conversations::{count, select_page, Filter, Page};
use super::{BeginWrite, Db, StoreError};
use crate::on_db;

/// An amenity as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AmenityRow {
    pub id: String,
    pub name: String,
    pub icon_url: Option<String>,
    pub is_active: bool,
    pub record_version: i64,
    pub owner_id: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const AMENITY_COLUMNS: &str =
    "id, name, icon_url, is_active, record_version, owner_id, created_at, updated_at";

/// A listing's text in one language, as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LocaleTextRow {
    pub id: String,
    pub listing_id: String,
    pub language_code: String,
    pub localized_title: String,
    pub localized_description: String,
    pub is_active: bool,
    pub record_version: i64,
    pub owner_id: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const LOCALE_TEXT_COLUMNS: &str = "id, listing_id, language_code, localized_title, \
    localized_description, is_active, record_version, owner_id, created_at, updated_at";

/// What a write that must keep a name or pair unique did.
#[derive(Debug)]
pub enum Written<T> {
    Row(T),
    /// An active row already holds the name (amenities) or the listing/language pair.
    Duplicate,
}

/// A new amenity.
#[derive(Debug, Clone)]
pub struct NewAmenity {
    pub id: String,
    pub name: String,
    pub icon_url: Option<String>,
    pub owner_id: String,
}

/// Add an amenity; `Duplicate` when an active one has the same name, whatever its case.
#[tracing::instrument(skip_all, fields(amenity_id = %new.id))]
pub async fn create_amenity(
    db: &Db,
    new: &NewAmenity,
    now: i64,
) -> Result<Written<AmenityRow>, StoreError> {
    let sql = format!(
        "INSERT INTO listing_amenities (id, name, icon_url, is_active, record_version, \
         owner_id, created_at, updated_at) VALUES ($1, $2, $3, TRUE, 1, $4, $5, $5) \
         RETURNING {AMENITY_COLUMNS}"
    );
    let inserted: Result<AmenityRow, StoreError> = on_db!(db, pool => sqlx::query_as(&sql)
        .bind(&new.id)
        .bind(&new.name)
        .bind(&new.icon_url)
        .bind(&new.owner_id)
        .bind(now)
        .fetch_one(pool)
        .await
        .map_err(StoreError::from));
    match inserted {
        Ok(row) => Ok(Written::Row(row)),
        Err(e) if e.is_unique_violation() => Ok(Written::Duplicate),
        Err(e) => Err(e),
    }
}

/// An amenity by id, deleted ones included.
pub async fn amenity(db: &Db, id: &str) -> Result<Option<AmenityRow>, StoreError> {
    let sql = format!("SELECT {AMENITY_COLUMNS} FROM listing_amenities WHERE id = $1");
    Ok(on_db!(db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?))
}

/// Amenities matching a filter, by name, and how many match in all.
pub async fn amenities(
    db: &Db,
    filter: &Filter,
    page: Page,
) -> Result<(Vec<AmenityRow>, i64), StoreError> {
    let total = count(db, "listing_amenities", filter).await?;
    let rows = select_page!(
        db,
        AMENITY_COLUMNS,
        "listing_amenities",
        filter,
        "LOWER(name), id",
        page
    );
    Ok((rows, total))
}

/// The most ids [`amenities_by_ids`] looks up at once.
pub const AMENITY_IDS_MAX: usize = 100;

/// The active amenities among `ids` (at most [`AMENITY_IDS_MAX`]; the rest are not looked
/// up), by name: the `amenities` join of listings. Unknown and deleted ids are left out.
pub async fn amenities_by_ids(db: &Db, ids: &[String]) -> Result<Vec<AmenityRow>, StoreError> {
    let ids = &ids[..ids.len().min(AMENITY_IDS_MAX)];
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
    let sql = format!(
        "SELECT {AMENITY_COLUMNS} FROM listing_amenities WHERE is_active AND id IN ({}) \
         ORDER BY LOWER(name), id",
        marks.join(", ")
    );
    Ok(on_db!(db, pool => {
        let mut query = sqlx::query_as(&sql);
        for id in ids {
            query = query.bind(id);
        }
        query.fetch_all(pool).await?
    }))
}

/// Set an active amenity's icon (`None`: clear it); `None` when there is no active amenity
/// with this id.
pub async fn update_amenity_icon(
    db: &Db,
    id: &str,
    icon_url: Option<&str>,
    now: i64,
) -> Result<Option<AmenityRow>, StoreError> {
    let sql = format!(
        "UPDATE listing_amenities SET icon_url = $2, record_version = record_version + 1, \
         updated_at = $3 WHERE id = $1 AND is_active RETURNING {AMENITY_COLUMNS}"
    );
    Ok(on_db!(db, pool => sqlx::query_as(&sql)
        .bind(id)
        .bind(icon_url)
        .bind(now)
        .fetch_optional(pool)
        .await?))
}

/// Soft-delete an active amenity and return its last state; `None` when there is no active
/// amenity with this id. Its name is free again.
pub async fn delete_amenity(db: &Db, id: &str, now: i64) -> Result<Option<AmenityRow>, StoreError> {
    let sql = format!(
        "UPDATE listing_amenities SET is_active = FALSE, record_version = record_version + 1, \
         updated_at = $2 WHERE id = $1 AND is_active RETURNING {AMENITY_COLUMNS}"
    );
    Ok(on_db!(db, pool => sqlx::query_as(&sql)
        .bind(id)
        .bind(now)
        .fetch_optional(pool)
        .await?))
}

/// Who holds a listing, and whether it is live: what the locale-text rules need.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ListingOwner {
    pub id: String,
    pub host_id: String,
    pub is_published: bool,
    pub is_active: bool,
}

/// A listing's host and state, deleted listings included.
pub async fn listing_owner(db: &Db, listing_id: &str) -> Result<Option<ListingOwner>, StoreError> {
    Ok(on_db!(db, pool => sqlx::query_as(
        "SELECT id, host_id, is_published, is_active FROM listings WHERE id = $1")
        .bind(listing_id)
        .fetch_optional(pool)
        .await?))
}

/// A new locale text.
#[derive(Debug, Clone)]
pub struct NewLocaleText {
    pub id: String,
    pub listing_id: String,
    pub language_code: String,
    pub localized_title: String,
    pub localized_description: String,
    pub owner_id: String,
}

/// Add a listing's text in one language, if the listing is still active (checked in the
/// same transaction: `None` otherwise); `Duplicate` when the listing has an active text in
/// that language, whatever its case.
#[tracing::instrument(skip_all, fields(listing_id = %new.listing_id))]
pub async fn create_locale_text(
    db: &Db,
    new: &NewLocaleText,
    now: i64,
) -> Result<Option<Written<LocaleTextRow>>, StoreError> {
    let lock_listing = match db {
        // The transaction holds SQLite's only write lock.
        Db::Sqlite(_) => "SELECT id FROM listings WHERE id = $1 AND is_active",
        // SHARE: the listing cannot be deleted (an UPDATE) under the insert; other writers
        // of its texts are not held up.
        Db::Postgres(_) => "SELECT id FROM listings WHERE id = $1 AND is_active FOR SHARE",
    };
    let sql = format!(
        "INSERT INTO listing_locale_texts (id, listing_id, language_code, localized_title, \
         localized_description, is_active, record_version, owner_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, TRUE, 1, $6, $7, $7) RETURNING {LOCALE_TEXT_COLUMNS}"
    );
    on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        let live: Option<String> = sqlx::query_scalar(lock_listing)
            .bind(&new.listing_id)
            .fetch_optional(&mut *tx)
            .await?;
        if live.is_none() {
            tx.rollback().await?;
            return Ok(None);
        }
        let inserted = sqlx::query_as::<_, LocaleTextRow>(&sql)
            .bind(&new.id)
            .bind(&new.listing_id)
            .bind(&new.language_code)
            .bind(&new.localized_title)
            .bind(&new.localized_description)
            .bind(&new.owner_id)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from);
        match inserted {
            Ok(row) => {
                tx.commit().await?;
                Ok(Some(Written::Row(row)))
            }
            Err(e) if e.is_unique_violation() => {
                tx.rollback().await?;
                Ok(Some(Written::Duplicate))
            }
            Err(e) => Err(e),
        }
    })
}

/// A locale text by id, deleted ones included.
pub async fn locale_text(db: &Db, id: &str) -> Result<Option<LocaleTextRow>, StoreError> {
    let sql = format!("SELECT {LOCALE_TEXT_COLUMNS} FROM listing_locale_texts WHERE id = $1");
    Ok(on_db!(db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?))
}

/// Locale texts matching a filter, by listing and language, and how many match in all. The
/// filter's columns are qualified with `t.` (texts) and `l.` (their listing).
pub async fn locale_texts(
    db: &Db,
    filter: &Filter,
    page: Page,
) -> Result<(Vec<LocaleTextRow>, i64), StoreError> {
    let table = "listing_locale_texts t JOIN listings l ON l.id = t.listing_id";
    let total = count(db, table, filter).await?;
    let columns = LOCALE_TEXT_COLUMNS
        .split(", ")
        .map(|c| format!("t.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let rows = select_page!(
        db,
        columns,
        table,
        filter,
        "t.listing_id, LOWER(t.language_code), t.id",
        page
    );
    Ok((rows, total))
}

/// Changes to a locale text's title and description.
#[derive(Debug, Clone, Default)]
pub struct LocaleTextChanges {
    pub localized_title: Option<String>,
    pub localized_description: Option<String>,
}

/// Change an active locale text; `None` when there is no active one with this id.
pub async fn update_locale_text(
    db: &Db,
    id: &str,
    changes: &LocaleTextChanges,
    now: i64,
) -> Result<Option<LocaleTextRow>, StoreError> {
    let sql = format!(
        "UPDATE listing_locale_texts SET localized_title = COALESCE($2, localized_title), \
         localized_description = COALESCE($3, localized_description), \
         record_version = record_version + 1, updated_at = $4 \
         WHERE id = $1 AND is_active RETURNING {LOCALE_TEXT_COLUMNS}"
    );
    Ok(on_db!(db, pool => sqlx::query_as(&sql)
        .bind(id)
        .bind(&changes.localized_title)
        .bind(&changes.localized_description)
        .bind(now)
        .fetch_optional(pool)
        .await?))
}

/// Soft-delete an active locale text and return its last state; `None` when there is no
/// active one with this id. Its language is free again for the listing.
pub async fn delete_locale_text(
    db: &Db,
    id: &str,
    now: i64,
) -> Result<Option<LocaleTextRow>, StoreError> {
    let sql = format!(
        "UPDATE listing_locale_texts SET is_active = FALSE, \
         record_version = record_version + 1, updated_at = $2 \
         WHERE id = $1 AND is_active RETURNING {LOCALE_TEXT_COLUMNS}"
    );
    Ok(on_db!(db, pool => sqlx::query_as(&sql)
        .bind(id)
        .bind(now)
        .fetch_optional(pool)
        .await?))
}
