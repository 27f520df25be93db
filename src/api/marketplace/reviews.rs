//! The review system (`/reviewsystem-api`, `shared/spec/airbnb-reviews.md`): double-blind,
//! moderated reviews of completed stays, and the rating aggregates per reviewee.
//!
//! The guest of a completed reservation reviews its host and its listing; the host reviews
//! the guest. A review stays hidden from everyone but its reviewer (and admins) until both
//! sides have reviewed the stay or the review window after check-out closes. Publication on
//! expiry is lazy and exact: every route first publishes what is due at the node's clock.
//! Decisions: `docs/DECISIONS.md` ("Review system, amenities and locale texts").

use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::{maybe_me, me, Object};
use super::catalog_texts::{active_rows, check_id, check_text, is_admin};
use super::envelope::{iso, Envelope};
use super::error::ErrorBody;
use super::query::ListQuery;
use super::MarketError;
use crate::api::AppState;
use crate::auth::Identity;
use crate::store::conversations::Filter;
use crate::store::reviews::{
    self as store, AggregateRow, Changed, Created, NewReview, ReservationFacts, ReviewChanges,
    ReviewRow,
};

/// The longest review text.
pub const REVIEW_TEXT_CHARS_MAX: usize = 4000;
/// Ratings are whole stars.
const RATING_MIN: i64 = 1;
const RATING_MAX: i64 = 5;

const MODERATION_STATUSES: [&str; 3] = ["pending", "approved", "rejected"];
const REVIEWEE_TYPES: [&str; 3] = ["host", "guest", "listing"];
const VISIBILITY_STATUSES: [&str; 2] = ["public", "hidden"];

fn index_of(values: &[&str], value: &str) -> Option<usize> {
    values.iter().position(|v| *v == value)
}

/// A review as the caller may see it: `blindSubmissionCode` is the reviewer's receipt, shown
/// to the reviewer and admins only.
fn review_view(row: &ReviewRow, me: Option<&Identity>) -> Value {
    let own = me.is_some_and(|i| i.user_id() == row.reviewer_id) || is_admin(me);
    json!({
        "id": row.id,
        "moderationStatus": row.moderation_status,
        "moderationStatus_idx": index_of(&MODERATION_STATUSES, &row.moderation_status),
        "isPublished": row.is_published,
        "reviewText": row.review_text,
        "rating": row.rating,
        "blindSubmissionCode": own.then_some(&row.blind_submission_code),
        "revieweeId": row.reviewee_id,
        "reservationId": row.reservation_id,
        "reviewerId": row.reviewer_id,
        "revieweeType": row.reviewee_type,
        "revieweeType_idx": index_of(&REVIEWEE_TYPES, &row.reviewee_type),
        "submittedAt": iso(row.submitted_at),
        "isActive": row.is_active,
        "recordVersion": row.record_version,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "_owner": row.reviewer_id,
    })
}

/// A review as the listing routes join it (`getListing`'s `reviews`, L5015-5028; the
/// `listListings` join `{rating, revieweeId}` is a part of it). Rows from
/// [`store::listing_review_join`].
pub fn listing_review_view(row: &ReviewRow) -> Value {
    json!({
        "moderationStatus": row.moderation_status,
        "moderationStatus_idx": index_of(&MODERATION_STATUSES, &row.moderation_status),
        "isPublished": row.is_published,
        "reviewText": row.review_text,
        "rating": row.rating,
        "revieweeId": row.reviewee_id,
        "reservationId": row.reservation_id,
        "reviewerId": row.reviewer_id,
        "revieweeType": row.reviewee_type,
        "revieweeType_idx": index_of(&REVIEWEE_TYPES, &row.reviewee_type),
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
    })
}

/// Aggregates are the system's: they have no owner.
fn aggregate_view(row: &AggregateRow) -> Value {
    json!({
        "id": row.id,
        "revieweeId": row.reviewee_id,
        "revieweeType": row.reviewee_type,
        "revieweeType_idx": index_of(&REVIEWEE_TYPES, &row.reviewee_type),
        "averageRating": row.average_rating,
        "reviewCount": row.review_count,
        "visibilityStatus": row.visibility_status,
        "visibilityStatus_idx": index_of(&VISIBILITY_STATUSES, &row.visibility_status),
        "isActive": row.is_active,
        "recordVersion": row.record_version,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "_owner": Value::Null,
    })
}

fn review_not_found() -> MarketError {
    MarketError::not_found("errMsg_reviewNotFound", "no such review")
}

fn aggregate_not_found() -> MarketError {
    MarketError::not_found("errMsg_reviewAggregateNotFound", "no such review aggregate")
}

fn already_published() -> MarketError {
    MarketError::conflict(
        "errMsg_reviewAlreadyPublished",
        "the review is published: only an admin changes it now (hide it through moderationStatus)",
    )
}

/// Whether the caller sees a review: everyone sees published, approved, active reviews; the
/// reviewer sees their own active ones; admins see every one.
fn may_see(row: &ReviewRow, me: Option<&Identity>) -> bool {
    if is_admin(me) {
        return true;
    }
    if !row.is_active {
        return false;
    }
    let public = row.is_published && row.moderation_status == "approved";
    public || me.is_some_and(|i| i.user_id() == row.reviewer_id)
}

/// Publish what is due before anything is read or written.
async fn publish_due(state: &AppState) -> Result<i64, MarketError> {
    let now = state.settings.clock.now_ms();
    store::publish_due(&state.db, now).await?;
    Ok(now)
}

/// When a stay's reviews are published whatever happens: `review_window_secs` after the
/// check-out day begins (UTC).
fn publish_at(check_out: &str, window_secs: u64) -> Option<i64> {
    let day = chrono::NaiveDate::parse_from_str(check_out, "%Y-%m-%d").ok()?;
    let start = day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
    let window_ms = i64::try_from(window_secs).ok()?.checked_mul(1000)?;
    start.checked_add(window_ms)
}

/// A create body that passed validation.
struct Submission {
    reviewer_id: String,
    reviewee_id: String,
    reviewee_type: String,
    rating: i64,
    review_text: String,
}

/// The rules of a new review, applied to its reservation as stored.
fn judge(
    reservation: Option<&ReservationFacts>,
    submission: Submission,
    now: i64,
    window_secs: u64,
) -> Result<NewReview, MarketError> {
    let reservation = reservation.filter(|r| r.is_active).ok_or_else(|| {
        MarketError::not_found("errMsg_reservationNotFound", "no such reservation")
    })?;
    let me = submission.reviewer_id.as_str();
    if me != reservation.guest_id && me != reservation.host_id {
        return Err(MarketError::forbidden(
            "only the guest or the host of the reservation reviews it",
        ));
    }
    if reservation.booking_status != "complete" {
        return Err(MarketError::bad_request(
            "errMsg_reservationNotComplete",
            "only a completed stay is reviewed",
        ));
    }
    let (side, reviewee) = match submission.reviewee_type.as_str() {
        "host" => (&reservation.guest_id, &reservation.host_id),
        "listing" => (&reservation.guest_id, &reservation.listing_id),
        _ => (&reservation.host_id, &reservation.guest_id),
    };
    if me != side {
        return Err(MarketError::bad_request(
            "errMsg_revieweeTypeIsNotValid",
            "the guest reviews the host and the listing; the host reviews the guest",
        ));
    }
    if submission.reviewee_id != *reviewee {
        return Err(MarketError::bad_request(
            "errMsg_revieweeIdIsNotValid",
            format!(
                "revieweeId must be the reservation's {}",
                submission.reviewee_type
            ),
        ));
    }
    let publish_at = publish_at(&reservation.check_out, window_secs).ok_or_else(|| {
        MarketError::internal(&format!(
            "reservation {} has check-out {:?}",
            reservation.id, reservation.check_out
        ))
    })?;
    if now >= publish_at {
        return Err(MarketError::bad_request(
            "errMsg_reviewWindowClosed",
            "the review window of this stay has closed",
        ));
    }
    Ok(NewReview {
        id: uuid::Uuid::new_v4().to_string(),
        reviewer_id: submission.reviewer_id,
        reviewee_id: submission.reviewee_id,
        reviewee_type: submission.reviewee_type,
        rating: submission.rating,
        review_text: submission.review_text,
        blind_submission_code: hex::encode_upper(rand::random::<[u8; 8]>()),
        publish_at,
    })
}

/// The body of `createReview`. `moderationStatus` and `isPublished` are required by the
/// document and then set by the server (moderation starts `approved`; publication is
/// double-blind); `reviewerId` must be the caller; `submittedAt` and `blindSubmissionCode`
/// are the server's.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateReview {
    pub moderation_status: String,
    pub is_published: bool,
    pub review_text: String,
    pub rating: i64,
    pub reviewee_id: String,
    pub reservation_id: String,
    pub reviewee_type: String,
    #[serde(default)]
    pub reviewer_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub submitted_at: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub blind_submission_code: Option<Value>,
}

fn check_enum(field: &str, values: &[&str], value: &str) -> Result<(), MarketError> {
    if values.contains(&value) {
        return Ok(());
    }
    Err(MarketError::bad_request(
        format!("errMsg_{field}IsNotValid"),
        format!("{field} is one of {}", values.join(", ")),
    ))
}

/// Review a completed stay: its guest reviews the host (`revieweeType: host`) and the
/// listing (`listing`), its host the guest (`guest`), once each, within the review window.
#[utoipa::path(tag = "reviewsystem", request_body = CreateReview, responses(
    (status = 201, description = "the review under `review`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)))]
#[post("/v1/reviews")]
pub async fn create_review(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<Object<CreateReview>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let body = body.into_inner().0;
    check_enum(
        "moderationStatus",
        &MODERATION_STATUSES,
        &body.moderation_status,
    )?;
    check_enum("revieweeType", &REVIEWEE_TYPES, &body.reviewee_type)?;
    check_text("reviewText", &body.review_text, REVIEW_TEXT_CHARS_MAX)?;
    if !(RATING_MIN..=RATING_MAX).contains(&body.rating) {
        return Err(MarketError::bad_request(
            "errMsg_ratingIsNotValid",
            format!("rating is a whole number from {RATING_MIN} to {RATING_MAX}"),
        ));
    }
    check_id("revieweeId", &body.reviewee_id)?;
    check_id("reservationId", &body.reservation_id)?;
    if body
        .reviewer_id
        .as_deref()
        .is_some_and(|r| r != me.user_id())
    {
        return Err(MarketError::forbidden("reviewerId must be the caller"));
    }
    let now = publish_due(&state).await?;
    let submission = Submission {
        reviewer_id: me.user_id().to_owned(),
        reviewee_id: body.reviewee_id,
        reviewee_type: body.reviewee_type,
        rating: body.rating,
        review_text: body.review_text,
    };
    let window = state.settings.review_window_secs;
    let created = store::create_review(&state.db, &body.reservation_id, now, |reservation| {
        judge(reservation, submission, now, window)
    })
    .await?;
    match created {
        Created::Review(row) => Ok(Envelope::new(&req, Some(&me), "review")
            .action("create")
            .one(review_view(&row, Some(&me)))),
        Created::Refused(refusal) => Err(refusal),
        Created::Duplicate => Err(MarketError::conflict(
            "errMsg_alreadyReviewed",
            "the caller has reviewed this stay's reviewee already",
        )),
    }
}

/// One review: published, approved reviews are public; an unpublished or rejected one is
/// seen by its reviewer and admins only (404 for anyone else).
#[utoipa::path(tag = "reviewsystem", responses(
    (status = 200, description = "the review under `review`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
#[get("/v1/reviews/{reviewId}")]
pub async fn get_review(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = maybe_me(&req, &state).await?;
    check_id("reviewId", &path)?;
    publish_due(&state).await?;
    let row = store::review(&state.db, &path)
        .await?
        .filter(|row| may_see(row, me.as_ref()))
        .ok_or_else(review_not_found)?;
    Ok(Envelope::new(&req, me.as_ref(), "review").one(review_view(&row, me.as_ref())))
}

/// The values of an enum filter, lowercased (a single value is case-insensitive; so are
/// several); `null` stays `null`.
fn enum_filter(
    query: &ListQuery,
    field: &str,
    values: &[&str],
) -> Result<Option<Vec<String>>, MarketError> {
    let Some(asked) = query.filters.get(field) else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(asked.len());
    for value in asked {
        let lowered = value.to_lowercase();
        if lowered != "null" && !values.contains(&lowered.as_str()) {
            return Err(MarketError::bad_request(
                "errMsg_invalidFilter",
                format!("{field} is one of {}, or null", values.join(", ")),
            ));
        }
        out.push(if lowered == "null" {
            "null".into()
        } else {
            lowered
        });
    }
    Ok(Some(out))
}

const REVIEW_FILTERS: &[&str] = &[
    "revieweeId",
    "reservationId",
    "reviewerId",
    "revieweeType",
    "isActive",
];

/// Reviews, newest first: public. Everyone sees published, approved reviews; the caller also
/// their own unpublished or rejected ones; admins every one (deleted ones with `isActive`).
#[utoipa::path(tag = "reviewsystem", responses(
    (status = 200, description = "list envelope under `reviews`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody)))]
#[get("/v1/reviews")]
pub async fn list_reviews(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    let me = maybe_me(&req, &state).await?;
    let admin = is_admin(me.as_ref());
    let query = ListQuery::parse(&req, REVIEW_FILTERS)?;
    let mut filter = Filter::default();
    active_rows(&query, admin, &mut filter, "is_active")?;
    if !admin {
        let public = "(is_published = TRUE AND moderation_status = 'approved')";
        match &me {
            Some(me) => {
                filter.binds.push(me.user_id().to_owned());
                let n = filter.binds.len();
                filter.raw(&format!("({public} OR reviewer_id = ${n})"));
            }
            None => filter.raw(public),
        }
    }
    query.filter_by(
        &mut filter,
        &[
            ("revieweeId", "reviewee_id"),
            ("reservationId", "reservation_id"),
            ("reviewerId", "reviewer_id"),
        ],
    );
    if let Some(types) = enum_filter(&query, "revieweeType", &REVIEWEE_TYPES)? {
        filter.equals_any("reviewee_type", &types);
    }
    publish_due(&state).await?;
    let (rows, total) = store::reviews(&state.db, &filter, query.page()).await?;
    let paging = query.paging(total)?;
    let views: Vec<Value> = rows.iter().map(|r| review_view(r, me.as_ref())).collect();
    Ok(Envelope::new(&req, me.as_ref(), "reviews")
        .action("list")
        .list(&views, paging))
}

/// The body of `updateReview`: the reviewer's text (before publication), the moderators'
/// fields (admins).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateReview {
    #[serde(default)]
    pub moderation_status: Option<String>,
    #[serde(default)]
    pub is_published: Option<bool>,
    #[serde(default)]
    pub review_text: Option<String>,
}

/// The rules of a change, applied to the review as stored.
fn judge_update(
    row: &ReviewRow,
    me: &Identity,
    body: &UpdateReview,
) -> Result<ReviewChanges, MarketError> {
    if !row.is_active || !may_see(row, Some(me)) {
        return Err(review_not_found());
    }
    let admin = me.role().is_admin();
    let reviewer = me.user_id() == row.reviewer_id;
    if (body.moderation_status.is_some() || body.is_published.is_some()) && !admin {
        return Err(MarketError::forbidden(
            "only admins change moderationStatus and isPublished",
        ));
    }
    if body.review_text.is_some() {
        if !reviewer {
            return Err(MarketError::forbidden(
                "only the reviewer changes reviewText",
            ));
        }
        if row.is_published {
            return Err(already_published());
        }
    }
    if body.is_published == Some(false) && row.is_published {
        return Err(already_published());
    }
    Ok(ReviewChanges {
        review_text: body.review_text.clone(),
        moderation_status: body.moderation_status.clone(),
        publish: body.is_published == Some(true),
        deactivate: false,
    })
}

/// Change a review: its reviewer edits `reviewText` before publication; admins set
/// `moderationStatus` (any of the three) and publish early (`isPublished: true`). Aggregates
/// follow in the same transaction.
#[utoipa::path(tag = "reviewsystem", request_body = UpdateReview, responses(
    (status = 200, description = "the review under `review`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)))]
#[patch("/v1/reviews/{reviewId}")]
pub async fn update_review(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Object<UpdateReview>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    check_id("reviewId", &path)?;
    let body = body.into_inner().0;
    if let Some(status) = &body.moderation_status {
        check_enum("moderationStatus", &MODERATION_STATUSES, status)?;
    }
    if let Some(text) = &body.review_text {
        check_text("reviewText", text, REVIEW_TEXT_CHARS_MAX)?;
    }
    if body.moderation_status.is_none() && body.is_published.is_none() && body.review_text.is_none()
    {
        return Err(MarketError::bad_request(
            "errMsg_nothingToUpdate",
            "name at least one field to change (reviewText, moderationStatus, isPublished)",
        ));
    }
    let now = publish_due(&state).await?;
    let changed =
        store::change_review(&state.db, &path, now, |row| judge_update(row, &me, &body)).await?;
    answer(&req, &me, changed, "update")
}

fn answer(
    req: &HttpRequest,
    me: &Identity,
    changed: Changed<MarketError>,
    action: &str,
) -> Result<HttpResponse, MarketError> {
    match changed {
        Changed::Review(row) => Ok(Envelope::new(req, Some(me), "review")
            .action(action)
            .one(review_view(&row, Some(me)))),
        Changed::Refused(refusal) => Err(refusal),
        Changed::NotFound => Err(review_not_found()),
    }
}

/// The rules of a deletion, applied to the review as stored.
fn judge_delete(row: &ReviewRow, me: &Identity) -> Result<ReviewChanges, MarketError> {
    if !row.is_active || !may_see(row, Some(me)) {
        return Err(review_not_found());
    }
    if !me.role().is_admin() {
        if me.user_id() != row.reviewer_id {
            return Err(MarketError::forbidden(
                "only the reviewer (before publication) or an admin deletes a review",
            ));
        }
        if row.is_published {
            return Err(already_published());
        }
    }
    Ok(ReviewChanges {
        deactivate: true,
        ..ReviewChanges::default()
    })
}

/// Soft-delete a review: its reviewer before publication, an admin at any time. Aggregates
/// follow in the same transaction. The reviewer may then review that reviewee again.
#[utoipa::path(tag = "reviewsystem", responses(
    (status = 200, description = "the review under `review`, `isActive: false`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)))]
#[delete("/v1/reviews/{reviewId}")]
pub async fn delete_review(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    check_id("reviewId", &path)?;
    let now = publish_due(&state).await?;
    let changed = store::change_review(&state.db, &path, now, |row| judge_delete(row, &me)).await?;
    answer(&req, &me, changed, "delete")
}

/// One aggregate: public while it counts a review (`visibilityStatus: public`); a hidden one
/// is 404 except for admins.
#[utoipa::path(tag = "reviewsystem", responses(
    (status = 200, description = "the aggregate under `reviewAggregate`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
#[get("/v1/reviewaggregates/{reviewAggregateId}")]
pub async fn get_aggregate(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = maybe_me(&req, &state).await?;
    check_id("reviewAggregateId", &path)?;
    publish_due(&state).await?;
    let row = store::aggregate(&state.db, &path)
        .await?
        .filter(|row| row.visibility_status == "public" || is_admin(me.as_ref()))
        .ok_or_else(aggregate_not_found)?;
    Ok(Envelope::new(&req, me.as_ref(), "reviewAggregate").one(aggregate_view(&row)))
}

const AGGREGATE_FILTERS: &[&str] = &["revieweeId", "revieweeType"];

/// Aggregates, oldest first: public ones for everyone, hidden ones for admins too.
#[utoipa::path(tag = "reviewsystem", responses(
    (status = 200, description = "list envelope under `reviewAggregates`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[get("/v1/reviewaggregates")]
pub async fn list_aggregates(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    let me = maybe_me(&req, &state).await?;
    let query = ListQuery::parse(&req, AGGREGATE_FILTERS)?;
    let mut filter = Filter::default();
    filter.raw("is_active = TRUE");
    if !is_admin(me.as_ref()) {
        filter.raw("visibility_status = 'public'");
    }
    query.filter_by(&mut filter, &[("revieweeId", "reviewee_id")]);
    if let Some(types) = enum_filter(&query, "revieweeType", &REVIEWEE_TYPES)? {
        filter.equals_any("reviewee_type", &types);
    }
    publish_due(&state).await?;
    let (rows, total) = store::aggregates(&state.db, &filter, query.page()).await?;
    let paging = query.paging(total)?;
    let views: Vec<Value> = rows.iter().map(aggregate_view).collect();
    Ok(Envelope::new(&req, me.as_ref(), "reviewAggregates")
        .action("list")
        .list(&views, paging))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_opens_at_the_check_out_day() {
        // 2024-03-10T00:00:00Z, plus one day.
        assert_eq!(
            publish_at("2024-03-10", 86_400),
            Some(1_710_028_800_000 + 86_400_000)
        );
        assert_eq!(publish_at("2024-3-1x", 1), None);
        assert_eq!(publish_at("2024-03-10", u64::MAX), None);
    }
}
