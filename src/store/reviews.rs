//! The review system's tables: reviews of a stay (double-blind, moderated) and the rating
//! aggregates per reviewee.
//!
//! Aggregates are kept in the transaction of every change that moves them: publication,
//! moderation, deletion. Each such transaction changes its reviews first and then, per
//! affected reviewee (in a fixed order), locks the aggregate row and counts again in a new
//! statement, so on PostgreSQL the last of two concurrent writers counts what the first
//! committed (SQLite serialises writers anyway).

use std::collections::BTreeSet;

use super::conversations::{count, select_page, Filter, Page};
use super::journal::{to_tx, Tx};
use super::{BeginWrite, Db, StoreError};
use crate::{on_db, on_tx};

/// A review as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReviewRow {
    pub id: String,
    pub reservation_id: String,
    pub reviewer_id: String,
    pub reviewee_id: String,
    /// `host`, `guest` or `listing`.
    pub reviewee_type: String,
    pub rating: i64,
    pub review_text: String,
    /// `pending`, `approved` or `rejected`.
    pub moderation_status: String,
    pub is_published: bool,
    pub blind_submission_code: String,
    pub submitted_at: i64,
    /// When the double-blind window closes and the review is published regardless.
    pub publish_at: i64,
    pub is_active: bool,
    pub record_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const REVIEW_COLUMNS: &str = "id, reservation_id, reviewer_id, reviewee_id, reviewee_type, \
    rating, review_text, moderation_status, is_published, blind_submission_code, submitted_at, \
    publish_at, is_active, record_version, created_at, updated_at";

/// A reviewee's rating aggregate as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AggregateRow {
    pub id: String,
    pub reviewee_id: String,
    pub reviewee_type: String,
    pub average_rating: f64,
    pub review_count: i64,
    /// `public` (it counts a review) or `hidden`.
    pub visibility_status: String,
    pub is_active: bool,
    pub record_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const AGGREGATE_COLUMNS: &str = "id, reviewee_id, reviewee_type, average_rating, review_count, \
    visibility_status, is_active, record_version, created_at, updated_at";

/// What the review rules need of a reservation.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReservationFacts {
    pub id: String,
    pub listing_id: String,
    pub host_id: String,
    pub guest_id: String,
    pub booking_status: String,
    /// `YYYY-MM-DD`.
    pub check_out: String,
    pub is_active: bool,
}

/// A review the rules accepted, to be stored unpublished and `approved`.
#[derive(Debug, Clone)]
pub struct NewReview {
    pub id: String,
    pub reviewer_id: String,
    pub reviewee_id: String,
    pub reviewee_type: String,
    pub rating: i64,
    pub review_text: String,
    pub blind_submission_code: String,
    pub publish_at: i64,
}

/// What creating a review did.
#[derive(Debug)]
pub enum Created<E> {
    Review(Box<ReviewRow>),
    /// The rules refused it (the reservation is unknown, not over, not the caller's, ...).
    Refused(E),
    /// The reviewer has an active review of this kind for this reservation.
    Duplicate,
}

/// What changing a review did.
#[derive(Debug)]
pub enum Changed<E> {
    Review(Box<ReviewRow>),
    Refused(E),
    NotFound,
}

/// A change the rules allowed; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReviewChanges {
    pub review_text: Option<String>,
    pub moderation_status: Option<String>,
    /// Only ever `Some(true)`: a published review is hidden by moderation, not unpublished.
    pub publish: bool,
    pub deactivate: bool,
}

/// The average of `count` ratings summing to `sum`, rounded half up to two decimals (in
/// hundredths, exact integer arithmetic); 0 with no ratings.
pub fn average_hundredths(sum: i64, count: i64) -> i64 {
    if count <= 0 {
        return 0;
    }
    (sum * 200 + count) / (2 * count)
}

/// Per reviewee, what the aggregate shows. `reviewCount` counts published, approved, active
/// reviews; `visibilityStatus` is `public` when it counts any.
fn aggregate_values(sum: i64, count: i64) -> (f64, i64, &'static str) {
    let average = average_hundredths(sum, count) as f64 / 100.0;
    (average, count, if count > 0 { "public" } else { "hidden" })
}

/// A reviewee: (type, id). Ordered, so locks are always taken in the same order.
type Reviewee = (String, String);

/// Make sure every reviewee has its aggregate row (new ones count nothing yet).
async fn ensure_aggregates(
    mut tx: Tx<'_>,
    reviewees: &BTreeSet<Reviewee>,
    now: i64,
) -> Result<(), sqlx::Error> {
    for (kind, id) in reviewees {
        on_tx!(tx.reborrow(), conn => {
            sqlx::query(
                "INSERT INTO review_aggregates (id, reviewee_id, reviewee_type, average_rating, \
                 review_count, visibility_status, is_active, record_version, created_at, \
                 updated_at) VALUES ($1, $2, $3, 0, 0, 'hidden', TRUE, 1, $4, $4) \
                 ON CONFLICT (reviewee_id, reviewee_type) DO NOTHING")
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(id)
                .bind(kind)
                .bind(now)
                .execute(&mut *conn)
                .await?;
        });
    }
    Ok(())
}

/// Count the reviewees' reviews again and store what changed, after the transaction's own
/// review changes. Each aggregate row is locked before its count, so the count (a new
/// statement) sees whatever a concurrent writer of the same reviewee committed.
async fn recompute(
    mut tx: Tx<'_>,
    reviewees: &BTreeSet<Reviewee>,
    now: i64,
) -> Result<(), sqlx::Error> {
    ensure_aggregates(tx.reborrow(), reviewees, now).await?;
    let lock = match tx {
        Tx::Sqlite(_) => {
            "SELECT id FROM review_aggregates WHERE reviewee_id = $1 AND reviewee_type = $2"
        }
        Tx::Postgres(_) => {
            "SELECT id FROM review_aggregates WHERE reviewee_id = $1 AND reviewee_type = $2 \
             FOR UPDATE"
        }
    };
    for (kind, id) in reviewees {
        let (count, sum): (i64, i64) = on_tx!(tx.reborrow(), conn => {
            sqlx::query(lock).bind(id).bind(kind).execute(&mut *conn).await?;
            sqlx::query_as(
                "SELECT COUNT(*), CAST(COALESCE(SUM(rating), 0) AS BIGINT) FROM reviews \
                 WHERE reviewee_id = $1 AND reviewee_type = $2 AND is_active AND is_published \
                 AND moderation_status = 'approved'")
                .bind(id)
                .bind(kind)
                .fetch_one(&mut *conn)
                .await?
        });
        let (average, count, visibility) = aggregate_values(sum, count);
        on_tx!(tx.reborrow(), conn => {
            sqlx::query(
                "UPDATE review_aggregates SET average_rating = $3, review_count = $4, \
                 visibility_status = $5, record_version = record_version + 1, updated_at = $6 \
                 WHERE reviewee_id = $1 AND reviewee_type = $2 \
                 AND (average_rating <> $3 OR review_count <> $4 OR visibility_status <> $5)")
                .bind(id)
                .bind(kind)
                .bind(average)
                .bind(count)
                .bind(visibility)
                .bind(now)
                .execute(&mut *conn)
                .await?;
        });
    }
    Ok(())
}

/// Publish the reservation's unpublished active reviews; the reviewees they are about.
async fn publish_reservation(
    tx: Tx<'_>,
    reservation_id: &str,
    now: i64,
) -> Result<BTreeSet<Reviewee>, sqlx::Error> {
    let published: Vec<Reviewee> = on_tx!(tx, conn => sqlx::query_as(
        "UPDATE reviews SET is_published = TRUE, record_version = record_version + 1, \
         updated_at = $2 WHERE reservation_id = $1 AND is_active AND NOT is_published \
         RETURNING reviewee_type, reviewee_id")
        .bind(reservation_id)
        .bind(now)
        .fetch_all(&mut *conn)
        .await?);
    Ok(published.into_iter().collect())
}

/// How many due reviews one publication transaction takes.
const PUBLISH_BATCH: i64 = 500;
/// The most publication transactions one call runs (at most 50,000 reviews); what is left
/// waits for the next call.
const PUBLISH_ROUNDS_MAX: usize = 100;

/// Publish every review whose double-blind window has closed (`publish_at <= now`) and
/// recompute the aggregates they move, a batch per write transaction. Cheap when nothing is
/// due: one read on the index of unpublished reviews. Called before every read and write of
/// reviews and aggregates, so what they show is exact at `now`.
#[tracing::instrument(skip(db))]
pub async fn publish_due(db: &Db, now: i64) -> Result<u64, StoreError> {
    let mut published = 0u64;
    for _ in 0..PUBLISH_ROUNDS_MAX {
        let due: Option<String> = on_db!(db, pool => sqlx::query_scalar(
            "SELECT id FROM reviews WHERE NOT is_published AND publish_at <= $1 LIMIT 1")
            .bind(now)
            .fetch_optional(pool)
            .await?);
        if due.is_none() {
            break;
        }
        let batch = on_db!(db, pool => {
            let mut tx = pool.begin_write().await?;
            // The outer `NOT is_published` makes a concurrent publisher's second pass over
            // the same rows (PostgreSQL rechecks it after waiting) publish nothing twice.
            let rows: Vec<Reviewee> = sqlx::query_as(
                "UPDATE reviews SET is_published = TRUE, record_version = record_version + 1, \
                 updated_at = $1 WHERE NOT is_published AND id IN (SELECT id FROM reviews \
                 WHERE NOT is_published AND publish_at <= $1 ORDER BY id LIMIT $2) \
                 RETURNING reviewee_type, reviewee_id")
                .bind(now)
                .bind(PUBLISH_BATCH)
                .fetch_all(&mut *tx)
                .await?;
            let reviewees: BTreeSet<Reviewee> = rows.iter().cloned().collect();
            recompute(to_tx(&mut tx), &reviewees, now).await?;
            tx.commit().await?;
            rows.len()
        });
        published += batch as u64;
        if (batch as i64) < PUBLISH_BATCH {
            break;
        }
    }
    Ok(published)
}

/// Create a review of a reservation in one write transaction: the reservation is locked and
/// read, `decide` applies the rules to it (`None`: no such reservation), the review is
/// stored unpublished; when both the guest and the host have an active review of the
/// reservation, all of its reviews are published and their aggregates recomputed.
#[tracing::instrument(skip_all, fields(reservation_id = %reservation_id))]
pub async fn create_review<E>(
    db: &Db,
    reservation_id: &str,
    now: i64,
    decide: impl FnOnce(Option<&ReservationFacts>) -> Result<NewReview, E>,
) -> Result<Created<E>, StoreError> {
    let lock = match db {
        Db::Sqlite(_) => "",
        // NO KEY UPDATE: serialises reviews of one reservation (so two sides submitting at
        // once see each other) without holding up inserts that reference it.
        Db::Postgres(_) => " FOR NO KEY UPDATE",
    };
    let reservation_sql = format!(
        "SELECT id, listing_id, host_id, guest_id, booking_status, check_out, is_active \
         FROM reservations WHERE id = $1{lock}"
    );
    let insert_sql =
        "INSERT INTO reviews (id, reservation_id, reviewer_id, reviewee_id, reviewee_type, \
         rating, review_text, moderation_status, is_published, blind_submission_code, \
         submitted_at, publish_at, is_active, record_version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'approved', FALSE, $8, $9, $10, TRUE, 1, $9, $9)";
    let select_sql = format!("SELECT {REVIEW_COLUMNS} FROM reviews WHERE id = $1");
    on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        let reservation: Option<ReservationFacts> = sqlx::query_as(&reservation_sql)
            .bind(reservation_id)
            .fetch_optional(&mut *tx)
            .await?;
        let new = match decide(reservation.as_ref()) {
            Ok(new) => new,
            Err(refusal) => {
                tx.rollback().await?;
                return Ok(Created::Refused(refusal));
            }
        };
        let Some(reservation) = reservation else {
            tx.rollback().await?;
            return Err(StoreError::Database(sqlx::Error::RowNotFound));
        };
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT id FROM reviews WHERE reservation_id = $1 AND reviewer_id = $2 \
             AND reviewee_type = $3 AND is_active")
            .bind(&reservation.id)
            .bind(&new.reviewer_id)
            .bind(&new.reviewee_type)
            .fetch_optional(&mut *tx)
            .await?;
        if existing.is_some() {
            tx.rollback().await?;
            return Ok(Created::Duplicate);
        }
        let inserted = sqlx::query(insert_sql)
            .bind(&new.id)
            .bind(&reservation.id)
            .bind(&new.reviewer_id)
            .bind(&new.reviewee_id)
            .bind(&new.reviewee_type)
            .bind(new.rating)
            .bind(&new.review_text)
            .bind(&new.blind_submission_code)
            .bind(now)
            .bind(new.publish_at)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from);
        match inserted {
            Ok(_) => {}
            Err(e) if e.is_unique_violation() => {
                tx.rollback().await?;
                return Ok(Created::Duplicate);
            }
            Err(e) => return Err(e),
        }
        let reviewee: Reviewee = (new.reviewee_type.clone(), new.reviewee_id.clone());
        ensure_aggregates(to_tx(&mut tx), &BTreeSet::from([reviewee]), now).await?;
        let sides: i64 = sqlx::query_scalar(
            "SELECT COUNT(DISTINCT reviewer_id) FROM reviews WHERE reservation_id = $1 \
             AND is_active AND reviewer_id IN ($2, $3)")
            .bind(&reservation.id)
            .bind(&reservation.guest_id)
            .bind(&reservation.host_id)
            .fetch_one(&mut *tx)
            .await?;
        let both_sides = sides == 2 && reservation.guest_id != reservation.host_id;
        if both_sides || new.publish_at <= now {
            let reviewees = publish_reservation(to_tx(&mut tx), &reservation.id, now).await?;
            recompute(to_tx(&mut tx), &reviewees, now).await?;
        }
        let row: ReviewRow = sqlx::query_as(&select_sql)
            .bind(&new.id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Created::Review(Box::new(row)))
    })
}

/// A review by id, deleted ones included.
pub async fn review(db: &Db, id: &str) -> Result<Option<ReviewRow>, StoreError> {
    let sql = format!("SELECT {REVIEW_COLUMNS} FROM reviews WHERE id = $1");
    Ok(on_db!(db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?))
}

/// Change a review in one write transaction: the review is locked and read, `decide` applies
/// the rules to it and says what changes; the aggregate of its reviewee is recomputed.
#[tracing::instrument(skip_all, fields(review_id = %id))]
pub async fn change_review<E>(
    db: &Db,
    id: &str,
    now: i64,
    decide: impl FnOnce(&ReviewRow) -> Result<ReviewChanges, E>,
) -> Result<Changed<E>, StoreError> {
    let lock = match db {
        Db::Sqlite(_) => "",
        Db::Postgres(_) => " FOR UPDATE",
    };
    let select_sql = format!("SELECT {REVIEW_COLUMNS} FROM reviews WHERE id = $1{lock}");
    let update_sql = format!(
        "UPDATE reviews SET review_text = COALESCE($2, review_text), \
         moderation_status = COALESCE($3, moderation_status), \
         is_published = is_published OR $4, is_active = is_active AND NOT $5, \
         record_version = record_version + 1, updated_at = $6 WHERE id = $1 \
         RETURNING {REVIEW_COLUMNS}"
    );
    on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        let Some(current) = sqlx::query_as::<_, ReviewRow>(&select_sql)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            tx.rollback().await?;
            return Ok(Changed::NotFound);
        };
        let changes = match decide(&current) {
            Ok(changes) => changes,
            Err(refusal) => {
                tx.rollback().await?;
                return Ok(Changed::Refused(refusal));
            }
        };
        let row: ReviewRow = sqlx::query_as(&update_sql)
            .bind(id)
            .bind(&changes.review_text)
            .bind(&changes.moderation_status)
            .bind(changes.publish)
            .bind(changes.deactivate)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        let moved = row.is_published != current.is_published
            || row.is_active != current.is_active
            || row.moderation_status != current.moderation_status;
        if moved {
            let reviewee: Reviewee = (row.reviewee_type.clone(), row.reviewee_id.clone());
            recompute(to_tx(&mut tx), &BTreeSet::from([reviewee]), now).await?;
        }
        tx.commit().await?;
        Ok(Changed::Review(Box::new(row)))
    })
}

/// Reviews matching a filter, newest first, and how many match in all.
pub async fn reviews(
    db: &Db,
    filter: &Filter,
    page: Page,
) -> Result<(Vec<ReviewRow>, i64), StoreError> {
    let total = count(db, "reviews", filter).await?;
    let rows = select_page!(
        db,
        REVIEW_COLUMNS,
        "reviews",
        filter,
        "submitted_at DESC, id",
        page
    );
    Ok((rows, total))
}

/// An aggregate by id.
pub async fn aggregate(db: &Db, id: &str) -> Result<Option<AggregateRow>, StoreError> {
    let sql = format!("SELECT {AGGREGATE_COLUMNS} FROM review_aggregates WHERE id = $1");
    Ok(on_db!(db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?))
}

/// Aggregates matching a filter, oldest first, and how many match in all.
pub async fn aggregates(
    db: &Db,
    filter: &Filter,
    page: Page,
) -> Result<(Vec<AggregateRow>, i64), StoreError> {
    let total = count(db, "review_aggregates", filter).await?;
    let rows = select_page!(
        db,
        AGGREGATE_COLUMNS,
        "review_aggregates",
        filter,
        "created_at, id",
        page
    );
    Ok((rows, total))
}

/// The most listings [`listing_review_join`] looks up at once.
pub const JOIN_LISTINGS_MAX: usize = 100;
/// The most reviews [`listing_review_join`] gives per listing (the newest).
pub const JOIN_REVIEWS_PER_LISTING_MAX: i64 = 20;

/// The `reviews` join of listings: per listing id (in the order given, at most
/// [`JOIN_LISTINGS_MAX`]), its published, approved, active reviews about the listing, newest
/// first, at most [`JOIN_REVIEWS_PER_LISTING_MAX`]. Reviews due at `now_ms` are published
/// first, so the join is exact. Render each with
/// `api::marketplace::reviews::listing_review_view`.
pub async fn listing_review_join(
    db: &Db,
    listing_ids: &[String],
    now_ms: i64,
) -> Result<Vec<(String, Vec<ReviewRow>)>, StoreError> {
    let ids = &listing_ids[..listing_ids.len().min(JOIN_LISTINGS_MAX)];
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    publish_due(db, now_ms).await?;
    let marks: Vec<String> = (2..=ids.len() + 1).map(|n| format!("${n}")).collect();
    let columns = REVIEW_COLUMNS
        .split(", ")
        .map(|c| format!("r.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {columns} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY reviewee_id \
         ORDER BY submitted_at DESC, id) AS n FROM reviews WHERE reviewee_type = 'listing' \
         AND is_active AND is_published AND moderation_status = 'approved' \
         AND reviewee_id IN ({})) r WHERE r.n <= $1 ORDER BY r.reviewee_id, r.n",
        marks.join(", ")
    );
    let rows: Vec<ReviewRow> = on_db!(db, pool => {
        let mut query = sqlx::query_as(&sql).bind(JOIN_REVIEWS_PER_LISTING_MAX);
        for id in ids {
            query = query.bind(id);
        }
        query.fetch_all(pool).await?
    });
    Ok(ids
        .iter()
        .map(|id| {
            let of_listing = rows
                .iter()
                .filter(|r| &r.reviewee_id == id)
                .cloned()
                .collect();
            (id.clone(), of_listing)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_round_half_up_to_hundredths() {
        assert_eq!(average_hundredths(0, 0), 0);
        assert_eq!(average_hundredths(5, 1), 500);
        assert_eq!(average_hundredths(9, 2), 450);
        // 14 / 3 = 4.666…
        assert_eq!(average_hundredths(14, 3), 467);
        // 13 / 3 = 4.333…
        assert_eq!(average_hundredths(13, 3), 433);
        // 1 + 1 + 1 + 1 + 1 + 1 + 2 over 8 … 9 / 8 = 1.125 → 1.13
        assert_eq!(average_hundredths(9, 8), 113);
    }

    #[test]
    fn an_aggregate_with_nothing_counted_is_hidden() {
        assert_eq!(aggregate_values(0, 0), (0.0, 0, "hidden"));
        assert_eq!(aggregate_values(14, 3), (4.67, 3, "public"));
    }
}
