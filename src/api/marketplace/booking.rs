//! The booking service's reservations and their payment flow (`/bookingmanagement-api`,
//! routes 1–5 and 20–22 of `shared/spec/airbnb-booking.md`). A reservation lives in its
//! listing's calendar actor ([`crate::stays`]): creating one holds its nights in one step or
//! fails with nothing held; the payment saga moves money through the guest's wallet or the
//! card gateway.

use std::collections::HashMap;

use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use actors::calendar::{
    ApprovalType, BookingStatus, Command, NewReservation, PaymentConfirmation, Reservation,
    ReservationChanges,
};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Map, Number, Value};

use super::body::Object;
use super::body::{me, present};
use super::catalog::{
    approval_type, caller, check_id, check_object, check_text, date_any, enum_any, money,
    money_number, parse_currency, parse_date, PROPERTY_TYPES,
};
use super::envelope::{iso, Envelope};
use super::error::ErrorBody;
use super::query::ListQuery;
use super::MarketError;
use crate::api::AppState;
use crate::auth::Identity;
use crate::stays::PaymentOutcome;
use crate::store::conversations::Filter;
use crate::store::stays::{self as store, ReservationRow};
use crate::store::users;

const URL_CHARS_MAX: usize = 2048;
const GUESTS_MAX: i64 = 100;
const DISPUTE_STATUSES: [&str; 4] = ["none", "requested", "active", "resolved"];

pub fn reservation_view(r: &Reservation) -> Value {
    json!({
        "id": r.id,
        "listingId": r.listing_id,
        "approvalType": r.approval_type.as_str(),
        "approvalType_idx": r.approval_type.index(),
        "bookingStatus": r.booking_status.as_str(),
        "bookingStatus_idx": r.booking_status.index(),
        "hostId": r.host_id,
        "guestId": r.guest_id,
        "checkIn": r.check_in.to_string(),
        "checkOut": r.check_out.to_string(),
        "currency": r.currency_total.currency().code(),
        "guestCount": r.guest_count,
        "totalPrice": money_number(r.currency_total),
        "iCalExportUrl": r.ical_export_url,
        "disputeStatus": r.dispute_status,
        "disputeStatus_idx": DISPUTE_STATUSES.iter().position(|s| *s == r.dispute_status),
        "bookingPoliciesSnapshot": r.booking_policies_snapshot,
        "iCalImportSource": r.ical_import_source,
        "cancellationPolicySnapshot": r.cancellation_policy_snapshot,
        "paymentConfirmation": r.payment_confirmation.as_str(),
        "paymentConfirmation_idx": r.payment_confirmation.index(),
        "isActive": r.is_active,
        "recordVersion": r.record_version,
        "createdAt": iso(r.created_at),
        "updatedAt": iso(r.updated_at),
        "_owner": r.guest_id,
    })
}

/// The reservation if the caller is its guest, its host or an admin; 404 for anyone else.
async fn visible_reservation(
    state: &AppState,
    identity: &Identity,
    reservation_id: &str,
) -> Result<Reservation, MarketError> {
    check_id("reservationId", reservation_id)?;
    let not_found = || MarketError::not_found("errMsg_reservationNotFound", "no such reservation");
    let row = store::reservation(&state.db, reservation_id)
        .await?
        .ok_or_else(not_found)?;
    let admin = identity.role().is_admin();
    let party = identity.user_id() == row.guest_id || identity.user_id() == row.host_id;
    if !admin && (!party || !row.is_active) {
        return Err(not_found());
    }
    Ok(row.into_reservation())
}

/// `listingJoins` and `hostDetails` of reservations.
async fn joins(state: &AppState, rows: &[Reservation]) -> Result<JoinData, MarketError> {
    let mut listing_ids: Vec<String> = rows.iter().map(|r| r.listing_id.clone()).collect();
    listing_ids.sort();
    listing_ids.dedup();
    let listings: HashMap<String, Value> = store::listings_by_ids(&state.db, &listing_ids)
        .await?
        .into_iter()
        .map(|l| {
            let kind = PROPERTY_TYPES.iter().position(|t| *t == l.property_type);
            let l = l.into_listing();
            let view = json!({
                "title": l.title,
                "amenityIds": l.amenity_ids,
                "hostId": l.host_id,
                "mainPhoto": l.main_photo,
                "photos": l.photos,
                "address": l.address,
                "propertyType": l.property_type,
                "propertyType_idx": kind,
                "location": l.location,
            });
            (l.id, view)
        })
        .collect();
    let mut hosts = HashMap::new();
    for r in rows {
        if hosts.contains_key(&r.host_id) {
            continue;
        }
        if let Some(user) = users::by_id(&state.db, &r.host_id).await? {
            hosts.insert(
                r.host_id.clone(),
                json!({"email": user.email, "fullname": user.fullname, "avatar": user.avatar}),
            );
        }
    }
    Ok(JoinData { listings, hosts })
}

struct JoinData {
    listings: HashMap<String, Value>,
    hosts: HashMap<String, Value>,
}

impl JoinData {
    fn apply(&self, view: &mut Value, r: &Reservation) {
        view["listingJoins"] = Value::Array(
            self.listings
                .get(&r.listing_id)
                .cloned()
                .into_iter()
                .collect(),
        );
        view["hostDetails"] =
            Value::Array(self.hosts.get(&r.host_id).cloned().into_iter().collect());
    }
}

/// The body of `createReservation`. The guest is the session user. `bookingStatus`,
/// `disputeStatus` and `paymentConfirmation` are the server's: accepted and then set
/// (`pending`, `none`, `pending`). `hostId`, `approvalType`, `currency` and `totalPrice` must
/// agree with the listing.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateReservation {
    pub listing_id: String,
    pub approval_type: String,
    pub booking_status: String,
    pub host_id: String,
    pub check_out: String,
    pub check_in: String,
    pub currency: String,
    pub guest_count: i64,
    #[schema(value_type = f64)]
    pub total_price: Number,
    #[serde(rename = "iCalExportUrl")]
    pub ical_export_url: Option<String>,
    pub dispute_status: String,
    #[schema(value_type = Object)]
    pub booking_policies_snapshot: Value,
    #[serde(rename = "iCalImportSource")]
    pub ical_import_source: Option<String>,
    #[schema(value_type = Object)]
    pub cancellation_policy_snapshot: Value,
    pub guest_id: Option<String>,
    #[serde(default)]
    #[schema(ignore)]
    pub payment_confirmation: Option<IgnoredAny>,
}

/// Book a listing: every night from check-in up to check-out is held in one step, or the
/// request fails with nothing held (409 `errMsg_datesNotAvailable` when a night is taken).
#[utoipa::path(tag = "bookingmanagement", request_body = CreateReservation, responses(
    (status = 201, description = "envelope with `reservation`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)))]
#[post("/v1/reservations")]
pub async fn create_reservation(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<Object<CreateReservation>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let b = body.into_inner().0;
    if b.guest_id.as_deref().is_some_and(|g| g != me.user_id()) {
        return Err(MarketError::forbidden(
            "guestId: the guest of a reservation is the session user",
        ));
    }
    check_id("listingId", &b.listing_id)?;
    check_id("hostId", &b.host_id)?;
    let approval: ApprovalType = approval_type(&b.approval_type)?;
    if BookingStatus::parse(&b.booking_status).is_none() {
        return Err(MarketError::bad_request(
            "errMsg_bookingStatusIsNotValid",
            format!(
                "bookingStatus must be one of {}",
                BookingStatus::ALL.join(", ")
            ),
        ));
    }
    if !DISPUTE_STATUSES.contains(&b.dispute_status.to_ascii_lowercase().as_str()) {
        return Err(MarketError::bad_request(
            "errMsg_disputeStatusIsNotValid",
            format!(
                "disputeStatus must be one of {}",
                DISPUTE_STATUSES.join(", ")
            ),
        ));
    }
    let check_in = parse_date("checkIn", &b.check_in)?;
    let check_out = parse_date("checkOut", &b.check_out)?;
    let currency = parse_currency("currency", &b.currency)?;
    let total = money("totalPrice", &b.total_price, currency)?;
    if !(1..=GUESTS_MAX).contains(&b.guest_count) {
        return Err(MarketError::bad_request(
            "errMsg_guestCountIsNotValid",
            format!("guestCount must be 1 to {GUESTS_MAX}"),
        ));
    }
    for (field, value) in [
        ("iCalExportUrl", &b.ical_export_url),
        ("iCalImportSource", &b.ical_import_source),
    ] {
        if let Some(url) = value {
            check_text(field, url, URL_CHARS_MAX)?;
        }
    }
    check_object("bookingPoliciesSnapshot", &b.booking_policies_snapshot)?;
    check_object(
        "cancellationPolicySnapshot",
        &b.cancellation_policy_snapshot,
    )?;
    let new = NewReservation {
        id: uuid::Uuid::new_v4().to_string(),
        guest_id: me.user_id().to_owned(),
        host_id: b.host_id,
        approval_type: approval,
        check_in,
        check_out,
        total_price: total,
        guest_count: b.guest_count,
        ical_export_url: b.ical_export_url,
        ical_import_source: b.ical_import_source,
        booking_policies_snapshot: b.booking_policies_snapshot,
        cancellation_policy_snapshot: b.cancellation_policy_snapshot,
        today: state.stays.today(),
        now_ms: state.stays.now_ms(),
    };
    let reservation = state
        .stays
        .reservation_command(&b.listing_id, Command::Reserve(Box::new(new)))
        .await?;
    Ok(Envelope::new(&req, Some(&me), "reservation")
        .action("create")
        .one(reservation_view(&reservation)))
}

/// One reservation: its guest, its host or an admin.
#[utoipa::path(tag = "bookingmanagement", responses(
    (status = 200, description = "envelope with `reservation`"),
    (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/v1/reservations/{reservationId}")]
pub async fn get_reservation(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let query = ListQuery::parse(&req, &[])?;
    let reservation = visible_reservation(&state, &me, &path.into_inner()).await?;
    let mut view = reservation_view(&reservation);
    if query.get_joins {
        let joins = joins(&state, std::slice::from_ref(&reservation)).await?;
        joins.apply(&mut view, &reservation);
    }
    Ok(Envelope::new(&req, Some(&me), "reservation").one(view))
}

const RESERVATION_FILTERS: &[&str] = &[
    "listingId",
    "approvalType",
    "bookingStatus",
    "hostId",
    "guestId",
    "checkIn",
    "paymentConfirmation",
];

/// Reservations the caller is guest or host of (an admin: all), with listing and host joins.
#[utoipa::path(tag = "bookingmanagement", responses(
    (status = 200, description = "list envelope under `reservations`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[get("/v1/reservations")]
pub async fn list_reservations(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let query = ListQuery::parse(&req, RESERVATION_FILTERS)?;
    let mut filter = Filter::default();
    filter.raw("is_active");
    if !me.role().is_admin() {
        filter.user_in(&["guest_id", "host_id"], me.user_id());
    }
    query.filter_by(
        &mut filter,
        &[
            ("listingId", "listing_id"),
            ("hostId", "host_id"),
            ("guestId", "guest_id"),
        ],
    );
    for (field, column, allowed) in [
        ("approvalType", "approval_type", &ApprovalType::ALL[..]),
        ("bookingStatus", "booking_status", &BookingStatus::ALL[..]),
        (
            "paymentConfirmation",
            "payment_confirmation",
            &PaymentConfirmation::ALL[..],
        ),
    ] {
        if let Some(values) = query.filters.get(field) {
            enum_any(&mut filter, field, column, values, allowed)?;
        }
    }
    if let Some(values) = query.filters.get("checkIn") {
        date_any(
            &mut filter,
            "checkIn",
            "check_in",
            values,
            state.stays.today(),
        )?;
    }
    let (rows, total) = store::reservations(&state.db, &filter, query.page()).await?;
    let paging = query.paging(total)?;
    let reservations: Vec<Reservation> = rows
        .into_iter()
        .map(ReservationRow::into_reservation)
        .collect();
    let joined = if query.get_joins {
        Some(joins(&state, &reservations).await?)
    } else {
        None
    };
    let views: Vec<Value> = reservations
        .iter()
        .map(|r| {
            let mut view = reservation_view(r);
            if let Some(joined) = &joined {
                joined.apply(&mut view, r);
            }
            view
        })
        .collect();
    Ok(Envelope::new(&req, Some(&me), "reservations")
        .action("list")
        .list(&views, paging))
}

/// The body of `updateReservation`: only these fields; dates, listing and guest count are
/// fixed once booked.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateReservation {
    pub booking_status: Option<String>,
    #[serde(default, deserialize_with = "present", rename = "iCalExportUrl")]
    #[schema(value_type = Option<String>)]
    pub ical_export_url: Option<Option<String>>,
    pub dispute_status: Option<String>,
    #[serde(default, deserialize_with = "present", rename = "iCalImportSource")]
    #[schema(value_type = Option<String>)]
    pub ical_import_source: Option<Option<String>>,
}

/// Move a reservation: the host (or an admin) confirms or declines a pending manual booking;
/// guest, host or admin cancel; a confirmed stay becomes `complete` from its check-out date.
/// Declining or cancelling releases the nights and voids an authorized payment; confirming
/// captures one.
#[utoipa::path(tag = "bookingmanagement", request_body = UpdateReservation, responses(
    (status = 200, description = "envelope with `reservation`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[patch("/v1/reservations/{reservationId}")]
pub async fn update_reservation(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Object<UpdateReservation>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let current = visible_reservation(&state, &me, &path.into_inner()).await?;
    let b = body.into_inner().0;
    let mut changes = ReservationChanges::default();
    if let Some(status) = &b.booking_status {
        changes.booking_status = Some(BookingStatus::parse(status).ok_or_else(|| {
            MarketError::bad_request(
                "errMsg_bookingStatusIsNotValid",
                format!(
                    "bookingStatus must be one of {}",
                    BookingStatus::ALL.join(", ")
                ),
            )
        })?);
    }
    if let Some(status) = &b.dispute_status {
        let lower = status.to_ascii_lowercase();
        if !DISPUTE_STATUSES.contains(&lower.as_str()) {
            return Err(MarketError::bad_request(
                "errMsg_disputeStatusIsNotValid",
                format!(
                    "disputeStatus must be one of {}",
                    DISPUTE_STATUSES.join(", ")
                ),
            ));
        }
        changes.dispute_status = Some(lower);
    }
    for (field, value) in [
        ("iCalExportUrl", &b.ical_export_url),
        ("iCalImportSource", &b.ical_import_source),
    ] {
        if let Some(Some(url)) = value {
            check_text(field, url, URL_CHARS_MAX)?;
        }
    }
    changes.ical_export_url = b.ical_export_url;
    changes.ical_import_source = b.ical_import_source;
    let reservation = state
        .stays
        .reservation_command(
            &current.listing_id,
            Command::UpdateReservation {
                caller: caller(&me),
                reservation_id: current.id.clone(),
                changes,
                today: state.stays.today(),
                now_ms: state.stays.now_ms(),
            },
        )
        .await?;
    Ok(Envelope::new(&req, Some(&me), "reservation")
        .action("update")
        .one(reservation_view(&reservation)))
}

/// Soft-delete a reservation: guest, host or admin. A stay that still holds nights is
/// cancelled (nights released, authorized money voided).
#[utoipa::path(tag = "bookingmanagement", responses(
    (status = 200, description = "envelope with the last `reservation`"),
    (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/v1/reservations/{reservationId}")]
pub async fn delete_reservation(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let current = visible_reservation(&state, &me, &path.into_inner()).await?;
    let reservation = state
        .stays
        .reservation_command(
            &current.listing_id,
            Command::DeleteReservation {
                caller: caller(&me),
                reservation_id: current.id.clone(),
                now_ms: state.stays.now_ms(),
            },
        )
        .await?;
    Ok(Envelope::new(&req, Some(&me), "reservation")
        .action("delete")
        .one(reservation_view(&reservation)))
}

/// `paymentUserParams`: which method pays (`"wallet"` or a gateway payment method id) and
/// where the front end wants to land afterwards.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentUserParams {
    pub payment_method_id: String,
    pub redirect_url: Option<String>,
}

/// The body of `startReservationPayment`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartPayment {
    pub payment_user_params: PaymentUserParams,
}

fn payment_result(outcome: &PaymentOutcome, ticket: Option<&Value>, params: Value) -> Value {
    let r = &outcome.reservation;
    let ok = matches!(
        r.payment_confirmation,
        PaymentConfirmation::Processing | PaymentConfirmation::Paid
    );
    let description = match (&outcome.failure, r.payment_confirmation) {
        (Some(why), _) => format!("payment failed: {why}"),
        (None, PaymentConfirmation::Paid) => "paid".to_owned(),
        (None, PaymentConfirmation::Processing) => {
            "authorized: captured when the host confirms".to_owned()
        }
        (None, PaymentConfirmation::Canceled) => "canceled".to_owned(),
        (None, PaymentConfirmation::Pending) => "not started".to_owned(),
    };
    let intent = outcome.gateway.as_ref().map(|g| {
        json!({
            "id": g.id,
            "status": g.status.as_str(),
            "amount": money_number_minor(g.amount_minor, &r.currency_total),
            "currency": g.currency,
            "card": g.card,
            "failureCode": g.failure_code,
        })
    });
    json!({
        "paymentTicketId": ticket.and_then(|t| t.get("id")).cloned(),
        "orderId": r.id,
        "paymentId": r.payment_ref,
        "paymentStatus": ticket.and_then(|t| t.get("paymentStatus")).cloned(),
        "paymentIntentInfo": intent,
        "statusLiteral": ticket.and_then(|t| t.get("statusLiteral")).cloned(),
        "amount": money_number(r.currency_total),
        "currency": r.currency_total.currency().code(),
        "success": ok,
        "description": description,
        "metadata": {"method": r.payment_method.map(|m| m.as_str())},
        "paymentUserParams": params,
    })
}

fn money_number_minor(minor: i64, like: &actors::money::Money) -> Value {
    actors::money::Money::from_minor(minor, like.currency())
        .map(money_number)
        .unwrap_or(Value::Null)
}

async fn payment_answer(
    req: &HttpRequest,
    state: &AppState,
    me: Option<&Identity>,
    outcome: PaymentOutcome,
    params: Value,
) -> Result<HttpResponse, MarketError> {
    let ticket = store::ticket_of(&state.db, &outcome.reservation.id).await?;
    let result = payment_result(&outcome, ticket.as_ref(), params);
    let mut extra = Map::new();
    extra.insert("paymentResult".into(), result);
    let mut view = reservation_view(&outcome.reservation);
    if me.is_none() {
        // The gateway's callback has no session: it learns the state, not the people.
        if let Value::Object(fields) = &mut view {
            fields.retain(|k, _| {
                matches!(
                    k.as_str(),
                    "id" | "listingId"
                        | "bookingStatus"
                        | "bookingStatus_idx"
                        | "paymentConfirmation"
                        | "paymentConfirmation_idx"
                        | "isActive"
                        | "recordVersion"
                        | "updatedAt"
                )
            });
        }
    }
    Ok(Envelope::new(req, me, "reservation")
        .action("update")
        .one_with(view, extra))
}

/// Pay for a reservation (the guest): `paymentMethodId` `"wallet"` holds the total on the
/// guest's wallet; a gateway payment method authorizes it on the card. Instant bookings are
/// confirmed and captured at once; manual ones when the host confirms. A failed payment
/// cancels the reservation and releases its nights.
#[utoipa::path(tag = "bookingmanagement", request_body = StartPayment, responses(
    (status = 200, description = "envelope with `reservation` and `paymentResult`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 502, body = ErrorBody)))]
#[patch("/v1/startreservationpayment/{reservationId}")]
pub async fn start_payment(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Object<StartPayment>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let current = visible_reservation(&state, &me, &path.into_inner()).await?;
    let params = body.into_inner().0.payment_user_params;
    check_id("paymentMethodId", &params.payment_method_id)?;
    if let Some(url) = &params.redirect_url {
        check_text("redirectUrl", url, URL_CHARS_MAX)?;
    }
    let echo = json!({
        "paymentMethodId": params.payment_method_id,
        "redirectUrl": params.redirect_url,
    });
    let outcome = state
        .stays
        .start_payment(
            caller(&me),
            &current.listing_id,
            &current.id,
            &params.payment_method_id,
            params.redirect_url,
        )
        .await?;
    payment_answer(&req, &state, Some(&me), outcome, echo).await
}

/// The body of `refreshReservationPayment`: optional parameters, echoed.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshPayment {
    #[schema(value_type = Option<Object>)]
    pub payment_user_params: Option<Value>,
}

/// Bring the payment up to date from the gateway (guest, host or admin): finishes a capture
/// or void an interruption left undone.
#[utoipa::path(tag = "bookingmanagement", request_body = RefreshPayment, responses(
    (status = 200, description = "envelope with `reservation` and `paymentResult`"),
    (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 502, body = ErrorBody)))]
#[patch("/v1/refreshreservationpayment/{reservationId}")]
pub async fn refresh_payment(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Object<RefreshPayment>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let current = visible_reservation(&state, &me, &path.into_inner()).await?;
    let params = body
        .into_inner()
        .0
        .payment_user_params
        .unwrap_or(Value::Null);
    if params.to_string().len() > super::catalog::OBJECT_BYTES_MAX {
        return Err(MarketError::bad_request(
            "errMsg_paymentUserParamsIsNotValid",
            "paymentUserParams is too large",
        ));
    }
    let outcome = state.stays.refresh(current, false).await?;
    payment_answer(&req, &state, Some(&me), outcome, params).await
}

/// The body of the gateway's callback.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Callback {
    pub reservation_id: Option<String>,
}

/// The gateway's webhook. It needs no session and carries no status: the node asks the
/// gateway itself where the payment stands, so a forged call can only trigger a refresh.
#[utoipa::path(tag = "bookingmanagement", request_body = Callback, responses(
    (status = 200, description = "envelope with `reservation` and `paymentResult`"),
    (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 502, body = ErrorBody)))]
#[post("/v1/callbackreservationpayment")]
pub async fn callback_payment(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<Object<Callback>>,
) -> Result<HttpResponse, MarketError> {
    let Some(reservation_id) = body.into_inner().0.reservation_id else {
        return Err(MarketError::bad_request(
            "errMsg_reservationIdIsNotValid",
            "reservationId: the order id of the payment",
        ));
    };
    check_id("reservationId", &reservation_id)?;
    let row = store::reservation(&state.db, &reservation_id)
        .await?
        .ok_or_else(|| {
            MarketError::not_found("errMsg_reservationNotFound", "no such reservation")
        })?;
    let outcome = state.stays.refresh(row.into_reservation(), false).await?;
    payment_answer(&req, &state, None, outcome, Value::Null).await
}
