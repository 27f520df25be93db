//! The booking service's records (`/bookingmanagement-api`, `shared/spec/airbnb-booking.md`
//! routes 6–19 and 23–25): payment records, disputes, reservation payments, payment
//! customers and their payment methods. Who may do what is in
//! `docs/DECISIONS.md` ("Booking records").
//!
//! The reservation flow (booking.rs) writes reservation payments, payment records, customers
//! and methods itself; the write routes here are an admin's manual corrections and triggers.

use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use actors::money::{parse_plain_decimal, Currency};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Number, Value};

use super::body::{me, present};
use super::envelope::{iso, Envelope};
use super::error::ErrorBody;
use super::query::ListQuery;
use super::MarketError;
use crate::api::AppState;
use crate::auth::Identity;
use crate::store::conversations::Filter;
use crate::store::payments::{
    self as store, DisputeRow, PaymentCustomerRow, PaymentMethodRow, PaymentRecordRow,
    ReservationParties, ReservationPaymentRow,
};
use crate::store::users;

/// The longest id accepted in a body or path (ours are uuids).
const ID_BYTES_MAX: usize = 64;
/// The longest gateway id (a payment intent, a charge, a payment): gateways' ids are longer
/// than ours.
const GATEWAY_ID_BYTES_MAX: usize = 255;
/// The longest status word of a reservation payment (`paymentStatus`, `statusLiteral`).
const STATUS_CHARS_MAX: usize = 64;
/// The longest `redirectUrl`.
const URL_BYTES_MAX: usize = 2048;
/// The longest `issueType` of a dispute.
const ISSUE_TYPE_CHARS_MAX: usize = 100;
/// The longest `description` of a dispute.
const DESCRIPTION_CHARS_MAX: usize = 5000;
/// How often an update re-reads a row that changed under it before answering 409.
const UPDATE_ATTEMPTS_MAX: usize = 3;

/// `PaymentRecord.paymentStatus`, in index order.
const PAYMENT_STATUSES: [&str; 4] = ["pending", "paid", "refunded", "failed"];
/// `Dispute.resolutionStatus`, in index order.
const RESOLUTION_STATUSES: [&str; 4] = ["pending", "reviewing", "resolved", "rejected"];
/// The resolution statuses that close a dispute.
const CLOSED_STATUSES: [&str; 2] = ["resolved", "rejected"];

fn is_admin(me: &Identity) -> bool {
    me.role().is_admin()
}

fn invalid(field: &str, why: impl std::fmt::Display) -> MarketError {
    MarketError::bad_request(
        format!("errMsg_{field}IsNotValid"),
        format!("{field} {why}"),
    )
}

fn check_bytes(field: &str, value: &str, max: usize) -> Result<(), MarketError> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("must be 1 to {max} bytes with no control characters"),
        ));
    }
    Ok(())
}

fn check_id(field: &str, value: &str) -> Result<(), MarketError> {
    check_bytes(field, value, ID_BYTES_MAX)
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), MarketError> {
    let chars = value.chars().count();
    if chars == 0 || chars > max || value.trim().is_empty() {
        return Err(invalid(field, format!("must be 1 to {max} characters")));
    }
    Ok(())
}

fn check_enum(field: &str, value: &str, allowed: &[&str]) -> Result<(), MarketError> {
    if !allowed.contains(&value) {
        return Err(invalid(field, format!("is one of {}", allowed.join(", "))));
    }
    Ok(())
}

fn index_of(value: &str, allowed: &[&str]) -> Option<usize> {
    allowed.iter().position(|s| *s == value)
}

fn check_url(field: &str, value: &str) -> Result<(), MarketError> {
    check_bytes(field, value, URL_BYTES_MAX)?;
    let scheme_ok = value.starts_with("https://") || value.starts_with("http://");
    if !scheme_ok || value.contains(char::is_whitespace) {
        return Err(invalid(field, "must be an absolute http(s) URL"));
    }
    Ok(())
}

/// A marketplace amount (a JSON number in major units) as minor units of `currency`: zero or
/// more, and exact at the currency's scale (`12.345` USD is refused, never rounded).
fn minor_units(field: &str, amount: &Number, currency: Currency) -> Result<i64, MarketError> {
    let text = amount.to_string();
    let value = parse_plain_decimal(&text)
        .ok_or_else(|| invalid(field, "must be a plain decimal number"))?;
    if value < Decimal::ZERO {
        return Err(invalid(field, "must not be negative"));
    }
    let scaled = value
        .checked_mul(Decimal::from(10_i64.pow(currency.scale())))
        .ok_or_else(|| invalid(field, "is too large"))?;
    if scaled.fract() != Decimal::ZERO {
        return Err(invalid(
            field,
            format!(
                "has more decimals than {currency} has ({})",
                currency.scale()
            ),
        ));
    }
    i64::try_from(scaled).map_err(|_| invalid(field, "is too large"))
}

/// Minor units shown as a JSON number in major units: an integer when whole, else the
/// shortest decimal that reads back as the same amount.
fn major(minor: i64, currency_code: &str) -> Value {
    let scale = Currency::parse(currency_code).map_or(2, |c| c.scale());
    let amount = Decimal::new(minor, scale).normalize();
    if amount.fract() == Decimal::ZERO {
        if let Some(whole) = amount.to_i64() {
            return json!(whole);
        }
    }
    amount
        .to_f64()
        .and_then(Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn major_opt(minor: Option<i64>, currency_code: &str) -> Value {
    minor.map_or(Value::Null, |m| major(m, currency_code))
}

/// A marketplace date: ISO-8601 with a time and offset (`2025-05-01T10:00:00Z`) or a plain
/// day (`2025-05-01`, midnight UTC), as Unix milliseconds.
fn parse_time(field: &str, raw: &str) -> Result<i64, MarketError> {
    if raw.len() > 64 {
        return Err(invalid(field, "must be an ISO-8601 date"));
    }
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(at.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc().timestamp_millis())
        .ok_or_else(|| invalid(field, "must be an ISO-8601 date"))
}

fn reservation_not_found() -> MarketError {
    MarketError::not_found("errMsg_reservationNotFound", "no such reservation")
}

async fn reservation(state: &AppState, id: &str) -> Result<ReservationParties, MarketError> {
    check_id("reservationId", id)?;
    store::reservation_parties(&state.db, id)
        .await?
        .ok_or_else(reservation_not_found)
}

/// The `isActive` filter of every list here: rows are active unless an admin asks for the
/// inactive ones; another user asking for them gets none.
fn active_rows(
    filter: &mut Filter,
    query: &ListQuery,
    admin: bool,
    column: &str,
) -> Result<(), MarketError> {
    let asked = query.flag("isActive")?;
    if !admin {
        filter.flag(column, true);
    }
    filter.flag(column, asked.unwrap_or(true));
    Ok(())
}

/// An enum filter: case-insensitive, several values OR'd, `null` for none; an unknown value
/// is 400.
fn enum_filter(
    filter: &mut Filter,
    query: &ListQuery,
    field: &str,
    column: &str,
    allowed: &[&str],
) -> Result<(), MarketError> {
    let Some(values) = query.filters.get(field) else {
        return Ok(());
    };
    let mut lowered = Vec::with_capacity(values.len());
    for value in values {
        let value = value.to_lowercase();
        if value != "null" && !allowed.contains(&value.as_str()) {
            return Err(MarketError::bad_request(
                "errMsg_invalidFilter",
                format!("{field} is one of {}", allowed.join(", ")),
            ));
        }
        lowered.push(value);
    }
    filter.equals_any(column, &lowered);
    Ok(())
}

/// String filters: partial match, case-insensitive, several values OR'd, `null` for none.
fn text_filters(filter: &mut Filter, query: &ListQuery, columns: &[(&str, &str)]) {
    for (field, column) in columns {
        let Some(values) = query.filters.get(*field) else {
            continue;
        };
        filter.contains_any(column, values);
    }
}

fn conflict_retry() -> MarketError {
    MarketError::conflict(
        "errMsg_concurrentUpdate",
        "the record changed while it was being updated; retry",
    )
}

// ---------------------------------------------------------------------------------------------
// Payment records (routes 6–8)

fn payment_record_view(row: &PaymentRecordRow) -> Value {
    let c = row.currency.as_str();
    json!({
        "id": row.id,
        "reservationId": row.reservation_id,
        "stripeChargeId": row.stripe_charge_id,
        "payoutAmountHost": major_opt(row.payout_amount_host, c),
        "paymentIntentId": row.payment_intent_id,
        "currency": row.currency,
        "cityTax": major_opt(row.city_tax, c),
        "refundAmount": major_opt(row.refund_amount, c),
        "amountPaid": major(row.amount_paid, c),
        "paymentStatus": row.payment_status,
        "paymentStatus_idx": index_of(&row.payment_status, &PAYMENT_STATUSES),
        "platformFee": major_opt(row.platform_fee, c),
        "paymentDate": row.payment_date.map(iso),
        "isActive": row.is_active,
        "recordVersion": row.record_version,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "_owner": row.owner_id,
    })
}

/// The body of `createPaymentRecord`. Amounts are JSON numbers in major units of the
/// reservation's currency.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePaymentRecord {
    pub reservation_id: String,
    #[serde(default)]
    pub stripe_charge_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub payout_amount_host: Option<Number>,
    pub payment_intent_id: String,
    pub currency: String,
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub city_tax: Option<Number>,
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub refund_amount: Option<Number>,
    #[schema(value_type = f64)]
    pub amount_paid: Number,
    pub payment_status: String,
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub platform_fee: Option<Number>,
    #[serde(default)]
    pub payment_date: Option<String>,
}

/// Log a payment record of a reservation: admins only (the node records its own payments;
/// a manual record is an admin's trigger). Records are append-only: there is no update or
/// delete. A refund is a new record (`refunded`, `refundAmount`).
#[utoipa::path(tag = "bookingmanagement", request_body = CreatePaymentRecord, responses(
    (status = 201, description = "the record under `paymentRecord`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[post("/v1/paymentrecords")]
pub async fn create_payment_record(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<super::body::Object<CreatePaymentRecord>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    if !is_admin(&me) {
        return Err(MarketError::forbidden(
            "payment records are written by the node; only admins add one by hand",
        ));
    }
    let body = body.into_inner().0;
    check_id("reservationId", &body.reservation_id)?;
    check_bytes(
        "paymentIntentId",
        &body.payment_intent_id,
        GATEWAY_ID_BYTES_MAX,
    )?;
    if let Some(charge) = &body.stripe_charge_id {
        check_bytes("stripeChargeId", charge, GATEWAY_ID_BYTES_MAX)?;
    }
    check_enum("paymentStatus", &body.payment_status, &PAYMENT_STATUSES)?;
    let currency =
        Currency::parse(&body.currency).ok_or_else(|| invalid("currency", "is not known"))?;
    let payment_date = body
        .payment_date
        .as_deref()
        .map(|raw| parse_time("paymentDate", raw))
        .transpose()?;
    let amount = |field: &str, value: &Option<Number>| {
        value
            .as_ref()
            .map(|n| minor_units(field, n, currency))
            .transpose()
    };
    let amount_paid = minor_units("amountPaid", &body.amount_paid, currency)?;
    let payout_amount_host = amount("payoutAmountHost", &body.payout_amount_host)?;
    let city_tax = amount("cityTax", &body.city_tax)?;
    let refund_amount = amount("refundAmount", &body.refund_amount)?;
    let platform_fee = amount("platformFee", &body.platform_fee)?;
    let reservation = reservation(&state, &body.reservation_id).await?;
    if !reservation.currency.eq_ignore_ascii_case(currency.code()) {
        return Err(invalid(
            "currency",
            format!(
                "must be the reservation's currency, {}",
                reservation.currency
            ),
        ));
    }
    let new = store::NewPaymentRecord {
        id: uuid::Uuid::new_v4().to_string(),
        reservation_id: reservation.id,
        stripe_charge_id: body.stripe_charge_id,
        payout_amount_host,
        payment_intent_id: body.payment_intent_id,
        currency: currency.code().to_owned(),
        city_tax,
        refund_amount,
        amount_paid,
        payment_status: body.payment_status,
        platform_fee,
        payment_date,
        owner_id: reservation.guest_id,
        now_ms: state.settings.clock.now_ms(),
    };
    let row = store::create_payment_record(&state.db, &new).await?;
    Ok(Envelope::new(&req, Some(&me), "paymentRecord")
        .action("create")
        .one(payment_record_view(&row)))
}

fn payment_record_not_found() -> MarketError {
    MarketError::not_found("errMsg_paymentRecordNotFound", "no such payment record")
}

/// One payment record: its owner (the reservation's guest), the reservation's host, or an
/// admin; 404 for anyone else.
#[utoipa::path(tag = "bookingmanagement", responses(
    (status = 200, description = "the record under `paymentRecord`"),
    (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/v1/paymentrecords/{paymentRecordId}")]
pub async fn get_payment_record(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    check_id("paymentRecordId", &path)?;
    let row = store::payment_record(&state.db, &path)
        .await?
        .ok_or_else(payment_record_not_found)?;
    let visible = is_admin(&me)
        || (row.is_active
            && (row.owner_id == me.user_id()
                || store::reservation_parties(&state.db, &row.reservation_id)
                    .await?
                    .is_some_and(|r| r.is_party(me.user_id()))));
    if !visible {
        return Err(payment_record_not_found());
    }
    Ok(Envelope::new(&req, Some(&me), "paymentRecord").one(payment_record_view(&row)))
}

const PAYMENT_RECORD_FILTERS: &[&str] = &[
    "reservationId",
    "paymentStatus",
    "paymentIntentId",
    "stripeChargeId",
    "currency",
    "isActive",
];

/// Payment records, newest first: an admin's are all; a user's those of reservations where
/// they are the guest or the host. No joins (privacy).
#[utoipa::path(tag = "bookingmanagement", responses(
    (status = 200, description = "list envelope under `paymentRecords`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[get("/v1/paymentrecords")]
pub async fn list_payment_records(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let query = ListQuery::parse(&req, PAYMENT_RECORD_FILTERS)?;
    let admin = is_admin(&me);
    let mut filter = Filter::default();
    active_rows(&mut filter, &query, admin, "p.is_active")?;
    if !admin {
        filter.user_in(&["p.owner_id", "r.guest_id", "r.host_id"], me.user_id());
    }
    query.filter_by(
        &mut filter,
        &[
            ("reservationId", "p.reservation_id"),
            ("paymentIntentId", "p.payment_intent_id"),
            ("stripeChargeId", "p.stripe_charge_id"),
        ],
    );
    enum_filter(
        &mut filter,
        &query,
        "paymentStatus",
        "p.payment_status",
        &PAYMENT_STATUSES,
    )?;
    if let Some(codes) = query.filters.get("currency") {
        let upper: Vec<String> = codes.iter().map(|c| c.to_ascii_uppercase()).collect();
        filter.equals_any("p.currency", &upper);
    }
    let (rows, total) = store::payment_records(&state.db, &filter, query.page()).await?;
    let paging = query.paging(total)?;
    let views: Vec<Value> = rows.iter().map(payment_record_view).collect();
    Ok(Envelope::new(&req, Some(&me), "paymentRecords")
        .action("list")
        .list(&views, paging))
}

// ---------------------------------------------------------------------------------------------
// Disputes (routes 9–12)

fn dispute_view(row: &DisputeRow) -> Value {
    json!({
        "id": row.id,
        "reportedAt": iso(row.reported_at),
        "reservationId": row.reservation_id,
        "raisedBy": row.raised_by,
        "adminId": row.admin_id,
        "issueType": row.issue_type,
        "description": row.description,
        "relatedPaymentId": row.related_payment_id,
        "resolutionStatus": row.resolution_status,
        "resolutionStatus_idx": index_of(&row.resolution_status, &RESOLUTION_STATUSES),
        "resolvedAt": row.resolved_at.map(iso),
        "refundApproved": row.refund_approved,
        "isActive": row.is_active,
        "recordVersion": row.record_version,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "_owner": row.owner_id,
    })
}

/// The body of `createDispute`. `raisedBy` must be the caller (it defaults to them);
/// `reportedAt`, `resolutionStatus` (`pending`), `resolvedAt` and `refundApproved` are the
/// server's at creation: accepted and set by it. `adminId` is for admins.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDispute {
    #[serde(default)]
    pub reported_at: Option<String>,
    pub reservation_id: String,
    #[serde(default)]
    pub raised_by: Option<String>,
    #[serde(default)]
    pub admin_id: Option<String>,
    pub issue_type: String,
    pub description: String,
    #[serde(default)]
    pub related_payment_id: Option<String>,
    #[serde(default)]
    pub resolution_status: Option<String>,
    #[serde(default)]
    pub resolved_at: Option<String>,
    #[serde(default)]
    pub refund_approved: Option<bool>,
}

/// Whether `user_id` names an active admin.
async fn names_admin(state: &AppState, user_id: &str) -> Result<bool, MarketError> {
    Ok(users::by_id(&state.db, user_id)
        .await?
        .is_some_and(|u| u.is_active && u.role().is_admin()))
}

/// Whether `id` names a payment of this reservation: one of its payment records or its
/// reservation payment.
async fn payment_of(state: &AppState, reservation_id: &str, id: &str) -> Result<bool, MarketError> {
    if store::payment_record(&state.db, id)
        .await?
        .is_some_and(|p| p.reservation_id == reservation_id)
    {
        return Ok(true);
    }
    Ok(store::reservation_payment(&state.db, id)
        .await?
        .is_some_and(|p| p.order_id == reservation_id))
}

/// Open a dispute about a reservation: its guest or its host (anyone else: 404, or 403 for
/// an admin who is neither). It starts `pending`; the reservation's own `disputeStatus` is
/// left as it is (the two are independent).
#[utoipa::path(tag = "bookingmanagement", request_body = CreateDispute, responses(
    (status = 201, description = "the dispute under `dispute`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[post("/v1/disputes")]
pub async fn create_dispute(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<super::body::Object<CreateDispute>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let body = body.into_inner().0;
    check_id("reservationId", &body.reservation_id)?;
    check_text("issueType", &body.issue_type, ISSUE_TYPE_CHARS_MAX)?;
    check_text("description", &body.description, DESCRIPTION_CHARS_MAX)?;
    if let Some(status) = &body.resolution_status {
        check_enum("resolutionStatus", status, &RESOLUTION_STATUSES)?;
    }
    for (field, value) in [
        ("reportedAt", &body.reported_at),
        ("resolvedAt", &body.resolved_at),
    ] {
        if let Some(raw) = value {
            parse_time(field, raw)?;
        }
    }
    for (field, value) in [
        ("raisedBy", &body.raised_by),
        ("adminId", &body.admin_id),
        ("relatedPaymentId", &body.related_payment_id),
    ] {
        if let Some(value) = value {
            check_id(field, value)?;
        }
    }
    if body.raised_by.as_deref().is_some_and(|r| r != me.user_id()) {
        return Err(MarketError::forbidden("raisedBy must be the caller"));
    }
    let reservation = reservation(&state, &body.reservation_id).await?;
    if !reservation.is_party(me.user_id()) {
        if is_admin(&me) {
            return Err(MarketError::forbidden(
                "only the reservation's guest or host opens a dispute",
            ));
        }
        return Err(reservation_not_found());
    }
    if let Some(admin) = &body.admin_id {
        if !is_admin(&me) {
            return Err(MarketError::forbidden("only admins assign a dispute"));
        }
        if !names_admin(&state, admin).await? {
            return Err(invalid("adminId", "must name an admin"));
        }
    }
    if let Some(payment) = &body.related_payment_id {
        if !payment_of(&state, &reservation.id, payment).await? {
            return Err(invalid(
                "relatedPaymentId",
                "must name a payment record or the reservation payment of this reservation",
            ));
        }
    }
    let new = store::NewDispute {
        id: uuid::Uuid::new_v4().to_string(),
        reservation_id: reservation.id,
        raised_by: me.user_id().to_owned(),
        admin_id: body.admin_id,
        issue_type: body.issue_type,
        description: body.description,
        related_payment_id: body.related_payment_id,
        resolution_status: "pending".to_owned(),
        now_ms: state.settings.clock.now_ms(),
    };
    let row = store::create_dispute(&state.db, &new).await?;
    Ok(Envelope::new(&req, Some(&me), "dispute")
        .action("create")
        .one(dispute_view(&row)))
}

fn dispute_not_found() -> MarketError {
    MarketError::not_found("errMsg_disputeNotFound", "no such dispute")
}

/// A dispute, if the caller may see it: the reservation's guest or host, the assigned admin,
/// or an admin.
async fn visible_dispute(
    state: &AppState,
    me: &Identity,
    id: &str,
) -> Result<DisputeRow, MarketError> {
    check_id("disputeId", id)?;
    let row = store::dispute(&state.db, id)
        .await?
        .ok_or_else(dispute_not_found)?;
    let user = me.user_id();
    if is_admin(me) || row.raised_by == user || row.admin_id.as_deref() == Some(user) {
        return Ok(row);
    }
    let party = store::reservation_parties(&state.db, &row.reservation_id)
        .await?
        .is_some_and(|r| r.is_party(user));
    if party && row.is_active {
        return Ok(row);
    }
    Err(dispute_not_found())
}

/// One dispute: the reservation's guest or host, the assigned admin, or an admin; 404 for
/// anyone else. No joins (privacy).
#[utoipa::path(tag = "bookingmanagement", responses(
    (status = 200, description = "the dispute under `dispute`"),
    (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/v1/disputes/{disputeId}")]
pub async fn get_dispute(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let row = visible_dispute(&state, &me, &path).await?;
    Ok(Envelope::new(&req, Some(&me), "dispute").one(dispute_view(&row)))
}

const DISPUTE_FILTERS: &[&str] = &[
    "reservationId",
    "raisedBy",
    "adminId",
    "resolutionStatus",
    "issueType",
    "refundApproved",
    "isActive",
];

/// Disputes, most recently reported first: an admin's are all; a user's those of
/// reservations where they are the guest or the host, and those assigned to them.
#[utoipa::path(tag = "bookingmanagement", responses(
    (status = 200, description = "list envelope under `disputes`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[get("/v1/disputes")]
pub async fn list_disputes(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let query = ListQuery::parse(&req, DISPUTE_FILTERS)?;
    let admin = is_admin(&me);
    let mut filter = Filter::default();
    active_rows(&mut filter, &query, admin, "d.is_active")?;
    if !admin {
        filter.user_in(
            &["d.raised_by", "d.admin_id", "r.guest_id", "r.host_id"],
            me.user_id(),
        );
    }
    query.filter_by(
        &mut filter,
        &[
            ("reservationId", "d.reservation_id"),
            ("raisedBy", "d.raised_by"),
            ("adminId", "d.admin_id"),
        ],
    );
    enum_filter(
        &mut filter,
        &query,
        "resolutionStatus",
        "d.resolution_status",
        &RESOLUTION_STATUSES,
    )?;
    text_filters(&mut filter, &query, &[("issueType", "d.issue_type")]);
    if let Some(approved) = query.flag("refundApproved")? {
        filter.flag("d.refund_approved", approved);
    }
    let (rows, total) = store::disputes(&state.db, &filter, query.page()).await?;
    let paging = query.paging(total)?;
    let views: Vec<Value> = rows.iter().map(dispute_view).collect();
    Ok(Envelope::new(&req, Some(&me), "disputes")
        .action("list")
        .list(&views, paging))
}

/// The body of `updateDispute`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateDispute {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub admin_id: Option<Option<String>>,
    #[serde(default)]
    pub issue_type: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub resolution_status: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub resolved_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<bool>)]
    pub refund_approved: Option<Option<bool>>,
}

impl UpdateDispute {
    fn is_empty(&self) -> bool {
        self.admin_id.is_none()
            && self.issue_type.is_none()
            && self.description.is_none()
            && self.resolution_status.is_none()
            && self.resolved_at.is_none()
            && self.refund_approved.is_none()
    }

    /// Whether it touches a field only an admin decides.
    fn decides(&self) -> bool {
        self.admin_id.is_some()
            || self.resolution_status.is_some()
            || self.resolved_at.is_some()
            || self.refund_approved.is_some()
    }
}

/// The dispute as it is to be after `body`. `resolvedAt` follows the status: an open dispute
/// (`pending`, `reviewing`) has none; a closed one (`resolved`, `rejected`) keeps the one
/// given, else the one it had, else now.
fn disputed_state(
    row: &DisputeRow,
    body: &UpdateDispute,
    resolved_at: Option<Option<i64>>,
    now_ms: i64,
) -> Result<store::DisputeState, MarketError> {
    let status = body
        .resolution_status
        .clone()
        .unwrap_or_else(|| row.resolution_status.clone());
    let closed = CLOSED_STATUSES.contains(&status.as_str());
    let resolved_at = match (closed, resolved_at) {
        (false, Some(Some(_))) => {
            return Err(invalid(
                "resolvedAt",
                "is only set on a resolved or rejected dispute",
            ))
        }
        (false, _) => None,
        (true, Some(Some(at))) => Some(at),
        (true, Some(None)) => {
            return Err(invalid(
                "resolvedAt",
                "cannot be cleared on a resolved or rejected dispute",
            ))
        }
        (true, None) => Some(row.resolved_at.unwrap_or(now_ms)),
    };
    Ok(store::DisputeState {
        admin_id: body
            .admin_id
            .clone()
            .unwrap_or_else(|| row.admin_id.clone()),
        issue_type: body
            .issue_type
            .clone()
            .unwrap_or_else(|| row.issue_type.clone()),
        description: body
            .description
            .clone()
            .unwrap_or_else(|| row.description.clone()),
        resolution_status: status,
        resolved_at,
        refund_approved: body.refund_approved.unwrap_or(row.refund_approved),
    })
}

/// Change a dispute. Admins (and the assigned admin) change every field; the user who raised
/// it may reword `issueType` and `description` while it is `pending` (409 once it is under
/// review); the other party may not change it (403).
#[utoipa::path(tag = "bookingmanagement", request_body = UpdateDispute, responses(
    (status = 200, description = "the dispute under `dispute`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)))]
#[patch("/v1/disputes/{disputeId}")]
pub async fn update_dispute(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<super::body::Object<UpdateDispute>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let body = body.into_inner().0;
    if body.is_empty() {
        return Err(MarketError::bad_request(
            "errMsg_nothingToUpdate",
            "name at least one field to change",
        ));
    }
    if let Some(issue) = &body.issue_type {
        check_text("issueType", issue, ISSUE_TYPE_CHARS_MAX)?;
    }
    if let Some(description) = &body.description {
        check_text("description", description, DESCRIPTION_CHARS_MAX)?;
    }
    if let Some(status) = &body.resolution_status {
        check_enum("resolutionStatus", status, &RESOLUTION_STATUSES)?;
    }
    if let Some(Some(admin)) = &body.admin_id {
        check_id("adminId", admin)?;
    }
    let resolved_at = match &body.resolved_at {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => Some(Some(parse_time("resolvedAt", raw)?)),
    };
    let mut checked_admin = false;
    for _ in 0..UPDATE_ATTEMPTS_MAX {
        let row = visible_dispute(&state, &me, &path).await?;
        let user = me.user_id();
        let decider = is_admin(&me) || row.admin_id.as_deref() == Some(user);
        if !decider {
            if row.raised_by != user || body.decides() {
                return Err(MarketError::forbidden(
                    "only admins decide a dispute; whoever raised it may reword it",
                ));
            }
            if row.resolution_status != "pending" {
                return Err(MarketError::conflict(
                    "errMsg_disputeIsUnderReview",
                    "a dispute can be reworded only while it is pending",
                ));
            }
        }
        if let (Some(Some(admin)), false) = (&body.admin_id, checked_admin) {
            if !names_admin(&state, admin).await? {
                return Err(invalid("adminId", "must name an admin"));
            }
            checked_admin = true;
        }
        let now = state.settings.clock.now_ms();
        let next = disputed_state(&row, &body, resolved_at, now)?;
        if let Some(updated) =
            store::set_dispute(&state.db, &row.id, row.record_version, &next, now).await?
        {
            return Ok(Envelope::new(&req, Some(&me), "dispute")
                .action("update")
                .one(dispute_view(&updated)));
        }
    }
    Err(conflict_retry())
}

// ---------------------------------------------------------------------------------------------
// Reservation payments (routes 13–19)

const RESERVATION_PAYMENT: &str = "sys_reservationPayment";

fn reservation_payment_view(row: &ReservationPaymentRow) -> Value {
    json!({
        "id": row.id,
        "ownerId": row.owner_id,
        "orderId": row.order_id,
        "paymentId": row.payment_id,
        "paymentStatus": row.payment_status,
        "statusLiteral": row.status_literal,
        "redirectUrl": row.redirect_url,
        "isActive": row.is_active,
        "recordVersion": row.record_version,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "_owner": row.owner_id,
    })
}

fn reservation_payment_not_found() -> MarketError {
    MarketError::not_found(
        "errMsg_reservationPaymentNotFound",
        "no such reservation payment",
    )
}

/// Whether the caller may read this reservation payment: its owner or the reservation's
/// host while it is active; an admin always.
async fn may_read_payment(
    state: &AppState,
    me: &Identity,
    row: &ReservationPaymentRow,
) -> Result<bool, MarketError> {
    if is_admin(me) {
        return Ok(true);
    }
    if !row.is_active {
        return Ok(false);
    }
    if row.owner_id == me.user_id() {
        return Ok(true);
    }
    Ok(store::reservation_parties(&state.db, &row.order_id)
        .await?
        .is_some_and(|r| r.host_id == me.user_id()))
}

async fn answer_payment(
    req: &HttpRequest,
    state: &AppState,
    me: &Identity,
    row: Option<ReservationPaymentRow>,
) -> Result<HttpResponse, MarketError> {
    let row = row.ok_or_else(reservation_payment_not_found)?;
    if !may_read_payment(state, me, &row).await? {
        return Err(reservation_payment_not_found());
    }
    Ok(Envelope::new(req, Some(me), RESERVATION_PAYMENT).one(reservation_payment_view(&row)))
}

/// One reservation payment: its owner (the guest), the reservation's host, or an admin;
/// 404 for anyone else. A deleted one is for admins.
#[utoipa::path(tag = "bookingmanagement", responses(
    (status = 200, description = "the payment under `sys_reservationPayment`"),
    (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/v1/reservationpayment/{sys_reservationPaymentId}")]
pub async fn get_reservation_payment(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    check_id("sys_reservationPaymentId", &path)?;
    let row = store::reservation_payment(&state.db, &path).await?;
    answer_payment(&req, &state, &me, row).await
}

/// The active payment of a reservation (`orderId` is the reservation id), for the same
/// callers as the payment itself.
#[utoipa::path(tag = "bookingmanagement", responses(
    (status = 200, description = "the payment under `sys_reservationPayment`"),
    (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/v1/reservationpaymentbyorderid/{orderId}")]
pub async fn get_reservation_payment_by_order(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    check_id("orderId", &path)?;
    let row = store::payment_by_order(&state.db, &path).await?;
    answer_payment(&req, &state, &me, row).await
}

/// The active reservation payment of a gateway payment id, for the same callers as the
/// payment itself.
#[utoipa::path(tag = "bookingmanagement", responses(
    (status = 200, description = "the payment under `sys_reservationPayment`"),
    (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/v1/reservationpaymentbypaymentid/{paymentId}")]
pub async fn get_reservation_payment_by_payment(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    check_bytes("paymentId", &path, GATEWAY_ID_BYTES_MAX)?;
    let row = store::payment_by_payment_id(&state.db, &path).await?;
    answer_payment(&req, &state, &me, row).await
}

const RESERVATION_PAYMENT_FILTERS: &[&str] = &[
    "ownerId",
    "orderId",
    "paymentId",
    "paymentStatus",
    "statusLiteral",
    "redirectUrl",
    "isActive",
];

/// Reservation payments, newest first: an admin's are all (deleted ones with
/// `isActive=false`); a user's those they own and those of reservations they host.
#[utoipa::path(tag = "bookingmanagement", responses(
    (status = 200, description = "list envelope under `sys_reservationPayments`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[get("/v1/reservationpayments")]
pub async fn list_reservation_payments(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let query = ListQuery::parse(&req, RESERVATION_PAYMENT_FILTERS)?;
    let admin = is_admin(&me);
    let mut filter = Filter::default();
    active_rows(&mut filter, &query, admin, "p.is_active")?;
    if !admin {
        filter.user_in(&["p.owner_id", "r.host_id"], me.user_id());
    }
    query.filter_by(
        &mut filter,
        &[("ownerId", "p.owner_id"), ("orderId", "p.order_id")],
    );
    text_filters(
        &mut filter,
        &query,
        &[
            ("paymentId", "p.payment_id"),
            ("paymentStatus", "p.payment_status"),
            ("statusLiteral", "p.status_literal"),
            ("redirectUrl", "p.redirect_url"),
        ],
    );
    let (rows, total) = store::reservation_payments(&state.db, &filter, query.page()).await?;
    let paging = query.paging(total)?;
    let views: Vec<Value> = rows.iter().map(reservation_payment_view).collect();
    Ok(Envelope::new(&req, Some(&me), "sys_reservationPayments")
        .action("list")
        .list(&views, paging))
}

/// The body of `createReservationPayment`. The owner is the reservation's guest.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateReservationPayment {
    pub order_id: String,
    pub payment_id: String,
    pub payment_status: String,
    pub status_literal: String,
    #[serde(default)]
    pub redirect_url: Option<String>,
}

/// While a reservation's payment is `pending` or `processing`, its calendar actor owns the
/// reservation payment: it creates it when the payment starts and rewrites it (with its own
/// version) at every step. A manual write then would be overwritten, or would make the
/// actor's next write fail on the one-active-payment rule. Manual writes wait until the
/// payment is `paid` or `canceled`, after which the actor never writes it again.
async fn settled_payment_of(state: &AppState, order_id: &str) -> Result<(), MarketError> {
    let settled = store::reservation_parties(&state.db, order_id)
        .await?
        .is_none_or(|r| r.payment_settled());
    if !settled {
        return Err(MarketError::conflict(
            "errMsg_paymentInProgress",
            "the payment flow owns this reservation's payment until it is paid or canceled",
        ));
    }
    Ok(())
}

fn admins_only() -> MarketError {
    MarketError::forbidden(
        "reservation payments are written by the payment flow; only admins change them by hand",
    )
}

/// Record a reservation payment by hand: admins only (the payment flow creates them), and
/// only once the reservation's payment is settled (`paid` or `canceled`; 409 before). A
/// reservation has at most one active payment (409 for a second).
#[utoipa::path(tag = "bookingmanagement", request_body = CreateReservationPayment, responses(
    (status = 201, description = "the payment under `sys_reservationPayment`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)))]
#[post("/v1/reservationpayment")]
pub async fn create_reservation_payment(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<super::body::Object<CreateReservationPayment>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    if !is_admin(&me) {
        return Err(admins_only());
    }
    let body = body.into_inner().0;
    check_id("orderId", &body.order_id)?;
    check_bytes("paymentId", &body.payment_id, GATEWAY_ID_BYTES_MAX)?;
    check_text("paymentStatus", &body.payment_status, STATUS_CHARS_MAX)?;
    check_text("statusLiteral", &body.status_literal, STATUS_CHARS_MAX)?;
    if let Some(url) = &body.redirect_url {
        check_url("redirectUrl", url)?;
    }
    let reservation = reservation(&state, &body.order_id).await?;
    settled_payment_of(&state, &reservation.id).await?;
    let new = store::NewReservationPayment {
        id: uuid::Uuid::new_v4().to_string(),
        owner_id: reservation.guest_id,
        order_id: reservation.id,
        payment_id: body.payment_id,
        payment_status: body.payment_status,
        status_literal: body.status_literal,
        redirect_url: body.redirect_url,
        now_ms: state.settings.clock.now_ms(),
    };
    let row = match store::create_reservation_payment(&state.db, &new).await {
        Ok(row) => row,
        Err(e) if e.is_unique_violation() => {
            return Err(MarketError::conflict(
                "errMsg_reservationPaymentExists",
                "the reservation has an active payment; update or delete it",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Envelope::new(&req, Some(&me), RESERVATION_PAYMENT)
        .action("create")
        .one(reservation_payment_view(&row)))
}

/// The body of `updateReservationPayment` (`orderId` cannot change).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateReservationPayment {
    #[serde(default)]
    pub payment_id: Option<String>,
    #[serde(default)]
    pub payment_status: Option<String>,
    #[serde(default)]
    pub status_literal: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub redirect_url: Option<Option<String>>,
}

/// Apply `next` to an active reservation payment, re-reading it if it changed meanwhile.
async fn change_payment(
    state: &AppState,
    id: &str,
    next: impl Fn(&ReservationPaymentRow) -> store::ReservationPaymentState,
) -> Result<ReservationPaymentRow, MarketError> {
    for _ in 0..UPDATE_ATTEMPTS_MAX {
        let row = store::reservation_payment(&state.db, id)
            .await?
            .filter(|r| r.is_active)
            .ok_or_else(reservation_payment_not_found)?;
        settled_payment_of(state, &row.order_id).await?;
        let now = state.settings.clock.now_ms();
        if let Some(changed) =
            store::set_reservation_payment(&state.db, id, row.record_version, &next(&row), now)
                .await?
        {
            return Ok(changed);
        }
    }
    Err(conflict_retry())
}

/// Correct a reservation payment by hand: admins only, once the reservation's payment is
/// settled (409 before). A deleted one is 404.
#[utoipa::path(tag = "bookingmanagement", request_body = UpdateReservationPayment, responses(
    (status = 200, description = "the payment under `sys_reservationPayment`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)))]
#[patch("/v1/reservationpayment/{sys_reservationPaymentId}")]
pub async fn update_reservation_payment(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<super::body::Object<UpdateReservationPayment>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    if !is_admin(&me) {
        return Err(admins_only());
    }
    let body = body.into_inner().0;
    check_id("sys_reservationPaymentId", &path)?;
    if body.payment_id.is_none()
        && body.payment_status.is_none()
        && body.status_literal.is_none()
        && body.redirect_url.is_none()
    {
        return Err(MarketError::bad_request(
            "errMsg_nothingToUpdate",
            "name at least one field to change",
        ));
    }
    if let Some(payment) = &body.payment_id {
        check_bytes("paymentId", payment, GATEWAY_ID_BYTES_MAX)?;
    }
    if let Some(status) = &body.payment_status {
        check_text("paymentStatus", status, STATUS_CHARS_MAX)?;
    }
    if let Some(literal) = &body.status_literal {
        check_text("statusLiteral", literal, STATUS_CHARS_MAX)?;
    }
    if let Some(Some(url)) = &body.redirect_url {
        check_url("redirectUrl", url)?;
    }
    let row = change_payment(&state, &path, |row| store::ReservationPaymentState {
        payment_id: body.payment_id.clone().unwrap_or(row.payment_id.clone()),
        payment_status: body
            .payment_status
            .clone()
            .unwrap_or(row.payment_status.clone()),
        status_literal: body
            .status_literal
            .clone()
            .unwrap_or(row.status_literal.clone()),
        redirect_url: body
            .redirect_url
            .clone()
            .unwrap_or(row.redirect_url.clone()),
        is_active: true,
    })
    .await?;
    Ok(Envelope::new(&req, Some(&me), RESERVATION_PAYMENT)
        .action("update")
        .one(reservation_payment_view(&row)))
}

/// Soft-delete a reservation payment: admins only, once the reservation's payment is settled
/// (409 before). The answer is its last state,
/// `isActive: false`; deleting a deleted one answers the same. The reservation may then get
/// a new payment.
#[utoipa::path(tag = "bookingmanagement", responses(
    (status = 200, description = "the payment under `sys_reservationPayment`, `isActive: false`"),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/v1/reservationpayment/{sys_reservationPaymentId}")]
pub async fn delete_reservation_payment(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    if !is_admin(&me) {
        return Err(admins_only());
    }
    check_id("sys_reservationPaymentId", &path)?;
    let existing = store::reservation_payment(&state.db, &path)
        .await?
        .ok_or_else(reservation_payment_not_found)?;
    let row = if existing.is_active {
        change_payment(&state, &path, |row| store::ReservationPaymentState {
            payment_id: row.payment_id.clone(),
            payment_status: row.payment_status.clone(),
            status_literal: row.status_literal.clone(),
            redirect_url: row.redirect_url.clone(),
            is_active: false,
        })
        .await?
    } else {
        existing
    };
    Ok(Envelope::new(&req, Some(&me), RESERVATION_PAYMENT)
        .action("delete")
        .one(reservation_payment_view(&row)))
}

// ---------------------------------------------------------------------------------------------
// Payment customers and methods (routes 23–25)

fn customer_view(row: &PaymentCustomerRow) -> Value {
    json!({
        "id": row.id,
        "userId": row.user_id,
        "customerId": row.customer_id,
        "platform": row.platform,
        "isActive": row.is_active,
        "recordVersion": row.record_version,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "_owner": row.user_id,
    })
}

fn method_view(row: &PaymentMethodRow) -> Value {
    let card = serde_json::from_str::<Value>(&row.card_info).unwrap_or(Value::Null);
    json!({
        "id": row.id,
        "paymentMethodId": row.payment_method_id,
        "userId": row.user_id,
        "customerId": row.customer_id,
        "cardHolderName": row.card_holder_name,
        "cardHolderZip": row.card_holder_zip,
        "platform": row.platform,
        "cardInfo": store::card_summary(&card),
        "isActive": row.is_active,
        "recordVersion": row.record_version,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "_owner": row.user_id,
    })
}

/// The user a customer or method route is about: the caller themself, or anyone for an
/// admin (403 otherwise).
fn own_or_admin<'a>(me: &Identity, user_id: &'a str) -> Result<&'a str, MarketError> {
    check_id("userId", user_id)?;
    if user_id != me.user_id() && !is_admin(me) {
        return Err(MarketError::forbidden(
            "payment customers and methods are their user's own",
        ));
    }
    Ok(user_id)
}

/// A user's payment customer: the user or an admin (403 for others). The customer at the
/// node's gateway comes first; else the user's oldest; 404 if the user has none.
#[utoipa::path(tag = "bookingmanagement", responses(
    (status = 200, description = "the customer under `sys_paymentCustomer`"),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
#[get("/v1/paymentcustomers/{userId}")]
pub async fn get_payment_customer(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let user_id = own_or_admin(&me, &path)?;
    let current = store::customer_of(&state.db, user_id, state.payments.platform()).await?;
    let row = match current {
        Some(row) => Some(row),
        None => store::customers_of(&state.db, user_id)
            .await?
            .into_iter()
            .next(),
    }
    .ok_or_else(|| {
        MarketError::not_found(
            "errMsg_paymentCustomerNotFound",
            "the user has no payment customer",
        )
    })?;
    Ok(Envelope::new(&req, Some(&me), "sys_paymentCustomer").one(customer_view(&row)))
}

const CUSTOMER_FILTERS: &[&str] = &["userId", "customerId", "platform", "isActive"];

/// Payment customers, newest first: an admin's are all; a user's their own.
#[utoipa::path(tag = "bookingmanagement", responses(
    (status = 200, description = "list envelope under `sys_paymentCustomers`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[get("/v1/paymentcustomers")]
pub async fn list_payment_customers(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let query = ListQuery::parse(&req, CUSTOMER_FILTERS)?;
    let admin = is_admin(&me);
    let mut filter = Filter::default();
    active_rows(&mut filter, &query, admin, "is_active")?;
    if !admin {
        filter.user_in(&["user_id"], me.user_id());
    }
    query.filter_by(&mut filter, &[("userId", "user_id")]);
    text_filters(
        &mut filter,
        &query,
        &[("customerId", "customer_id"), ("platform", "platform")],
    );
    let (rows, total) = store::customers(&state.db, &filter, query.page()).await?;
    let paging = query.paging(total)?;
    let views: Vec<Value> = rows.iter().map(customer_view).collect();
    Ok(Envelope::new(&req, Some(&me), "sys_paymentCustomers")
        .action("list")
        .list(&views, paging))
}

const METHOD_FILTERS: &[&str] = &[
    "paymentMethodId",
    "customerId",
    "cardHolderName",
    "cardHolderZip",
    "platform",
    "cardInfo",
    "isActive",
];

/// A user's payment methods, newest first: the user or an admin (403 for others). `cardInfo`
/// shows brand, last four digits and expiry only.
#[utoipa::path(tag = "bookingmanagement", responses(
    (status = 200, description = "list envelope under `sys_paymentMethods`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody)))]
#[get("/v1/paymentcustomermethods/{userId}")]
pub async fn list_payment_customer_methods(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let user_id = own_or_admin(&me, &path)?;
    let query = ListQuery::parse(&req, METHOD_FILTERS)?;
    let mut filter = Filter::default();
    active_rows(&mut filter, &query, is_admin(&me), "is_active")?;
    filter.user_in(&["user_id"], user_id);
    text_filters(
        &mut filter,
        &query,
        &[
            ("paymentMethodId", "payment_method_id"),
            ("customerId", "customer_id"),
            ("cardHolderName", "card_holder_name"),
            ("cardHolderZip", "card_holder_zip"),
            ("platform", "platform"),
            ("cardInfo", "card_info"),
        ],
    );
    let (rows, total) = store::methods(&state.db, &filter, query.page()).await?;
    let paging = query.paging(total)?;
    let views: Vec<Value> = rows.iter().map(method_view).collect();
    Ok(Envelope::new(&req, Some(&me), "sys_paymentMethods")
        .action("list")
        .list(&views, paging))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn number(raw: &str) -> Number {
        serde_json::from_str(raw).unwrap()
    }

    #[test]
    fn amounts_are_exact_at_the_currency_scale() {
        let usd = Currency::parse("USD").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        for (raw, minor) in [("0", 0), ("120", 12_000), ("120.5", 12_050), ("0.1", 10)] {
            assert_eq!(minor_units("a", &number(raw), usd).unwrap(), minor, "{raw}");
        }
        assert_eq!(minor_units("a", &number("1500"), jpy).unwrap(), 1500);
        for bad in ["12.345", "-1", "1e30", "18446744073709551615"] {
            assert!(minor_units("a", &number(bad), usd).is_err(), "{bad}");
        }
        assert!(minor_units("a", &number("0.5"), jpy).is_err());
    }

    #[test]
    fn minor_units_show_as_major_numbers() {
        assert_eq!(major(12_000, "USD"), json!(120));
        assert_eq!(major(12_050, "USD"), json!(120.5));
        assert_eq!(major(1, "USD"), json!(0.01));
        assert_eq!(major(1500, "JPY"), json!(1500));
        assert_eq!(major_opt(None, "USD"), Value::Null);
    }

    #[test]
    fn dates_are_iso_instants_or_days() {
        assert_eq!(parse_time("d", "1970-01-02").unwrap(), 86_400_000);
        assert_eq!(parse_time("d", "1970-01-01T00:00:01.5Z").unwrap(), 1500);
        assert_eq!(parse_time("d", "1970-01-01T01:00:00+01:00").unwrap(), 0);
        for bad in ["", "yesterday", "2025-13-01", "1700000000000"] {
            assert!(parse_time("d", bad).is_err(), "{bad}");
        }
    }
}
