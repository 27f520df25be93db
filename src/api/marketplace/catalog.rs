//! The property catalog's listings and listing calendars (`/propertycatalog-api`,
//! `shared/spec/airbnb-propertycatalog.md`). Every change goes through the listing's calendar
//! actor ([`crate::stays`]); reads come from the store, which holds exactly what was
//! acknowledged. Listings and calendars are public to read; a listing's host (or an admin)
//! changes them.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use actors::calendar::{
    ApprovalType, Caller, Command, Day, DayChanges, Listing, ListingChanges, Refusal, Reply,
};
use actors::money::{Currency, Money};
use chrono::{Datelike, Duration, NaiveDate};
use rust_decimal::Decimal;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Number, Value};

use super::body::Object;
use super::body::{maybe_me, me, present};
use super::envelope::{iso, Envelope};
use super::error::ErrorBody;
use super::query::ListQuery;
use super::MarketError;
use crate::api::AppState;
use crate::auth::Identity;
use crate::stays::StayError;
use crate::store::conversations::Filter;
use crate::store::reviews::ReviewRow;
use crate::store::stays::{self as store, DayRow, ListingRow};
use crate::store::Db;

/// The longest id accepted in a body or path.
pub(super) const ID_BYTES_MAX: usize = 64;
const TITLE_CHARS_MAX: usize = 200;
const ADDRESS_CHARS_MAX: usize = 500;
const TEXT_CHARS_MAX: usize = 10_000;
const URL_CHARS_MAX: usize = 2048;
const LIST_ITEMS_MAX: usize = 50;
const LANGUAGE_CHARS_MAX: usize = 16;
/// The largest free-form object (location, policies), serialized.
pub(super) const OBJECT_BYTES_MAX: usize = 16 * 1024;

pub const PROPERTY_TYPES: [&str; 8] = [
    "apartment",
    "house",
    "villa",
    "room",
    "condo",
    "loft",
    "studio",
    "other",
];

pub(super) fn caller(identity: &Identity) -> Caller {
    Caller {
        user_id: identity.user_id().to_owned(),
        admin: identity.role().is_admin(),
    }
}

pub(super) fn check_id(field: &str, value: &str) -> Result<(), MarketError> {
    if value.is_empty() || value.len() > ID_BYTES_MAX {
        return Err(MarketError::bad_request(
            format!("errMsg_{field}IsNotValid"),
            format!("{field} must be 1 to {ID_BYTES_MAX} characters"),
        ));
    }
    Ok(())
}

pub(super) fn check_text(field: &str, value: &str, max: usize) -> Result<(), MarketError> {
    let chars = value.chars().count();
    if chars == 0 || chars > max {
        return Err(MarketError::bad_request(
            format!("errMsg_{field}IsNotValid"),
            format!("{field} must be 1 to {max} characters"),
        ));
    }
    Ok(())
}

fn check_list(field: &str, values: &[String], item_max: usize) -> Result<(), MarketError> {
    if values.len() > LIST_ITEMS_MAX {
        return Err(MarketError::bad_request(
            format!("errMsg_{field}IsNotValid"),
            format!("{field}: at most {LIST_ITEMS_MAX} items"),
        ));
    }
    for value in values {
        check_text(field, value, item_max)?;
    }
    Ok(())
}

/// A free-form object (location, policies): a JSON object of bounded size.
pub(super) fn check_object(field: &str, value: &Value) -> Result<(), MarketError> {
    if !value.is_object() || value.to_string().len() > OBJECT_BYTES_MAX {
        return Err(MarketError::bad_request(
            format!("errMsg_{field}IsNotValid"),
            format!("{field} must be a JSON object of at most {OBJECT_BYTES_MAX} bytes"),
        ));
    }
    Ok(())
}

fn check_stay(field: &str, value: Option<i64>) -> Result<(), MarketError> {
    if let Some(nights) = value {
        if !(1..=actors::calendar::STAY_NIGHTS_MAX).contains(&nights) {
            return Err(MarketError::bad_request(
                format!("errMsg_{field}IsNotValid"),
                format!(
                    "{field} must be 1 to {} nights",
                    actors::calendar::STAY_NIGHTS_MAX
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn parse_currency(field: &str, raw: &str) -> Result<Currency, MarketError> {
    Currency::parse(raw).ok_or_else(|| {
        MarketError::bad_request(
            format!("errMsg_{field}IsNotValid"),
            format!("{field}: not a currency this node knows (an ISO 4217 code such as USD)"),
        )
    })
}

/// A JSON number as money: positive, and exact at the currency's minor unit.
pub(super) fn money(field: &str, value: &Number, currency: Currency) -> Result<Money, MarketError> {
    let bad = |why: &str| {
        MarketError::bad_request(
            format!("errMsg_{field}IsNotValid"),
            format!("{field}: {why}"),
        )
    };
    let amount = actors::money::parse_plain_decimal(&value.to_string())
        .ok_or_else(|| bad("a plain decimal number"))?;
    Money::new(amount, currency).map_err(|e| bad(&e.to_string()))
}

fn percent(field: &str, value: &Number) -> Result<Decimal, MarketError> {
    actors::money::parse_plain_decimal(&value.to_string())
        .filter(|p| *p >= Decimal::ZERO && *p <= Decimal::from(100) && p.scale() <= 4)
        .ok_or_else(|| {
            MarketError::bad_request(
                format!("errMsg_{field}IsNotValid"),
                format!("{field} must be a number from 0 to 100, at most 4 decimals"),
            )
        })
}

pub(super) fn parse_date(field: &str, raw: &str) -> Result<NaiveDate, MarketError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .filter(|d| d.year() >= 2000 && d.year() <= 2200)
        .ok_or_else(|| {
            MarketError::bad_request(
                format!("errMsg_{field}IsNotValid"),
                format!("{field} must be a date YYYY-MM-DD"),
            )
        })
}

fn property_type(raw: &str) -> Result<String, MarketError> {
    let lower = raw.to_ascii_lowercase();
    if PROPERTY_TYPES.contains(&lower.as_str()) {
        Ok(lower)
    } else {
        Err(MarketError::bad_request(
            "errMsg_propertyTypeIsNotValid",
            format!("propertyType must be one of {}", PROPERTY_TYPES.join(", ")),
        ))
    }
}

pub(super) fn approval_type(raw: &str) -> Result<ApprovalType, MarketError> {
    ApprovalType::parse(raw).ok_or_else(|| {
        MarketError::bad_request(
            "errMsg_approvalTypeIsNotValid",
            "approvalType must be instant or manual",
        )
    })
}

impl From<StayError> for MarketError {
    fn from(failure: StayError) -> Self {
        match failure {
            StayError::Refused(refusal) => refusal_error(refusal),
            StayError::Actor(actors::ActorError::Busy(_)) => MarketError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "errMsg_busy",
                "the listing is busy; retry",
            ),
            StayError::Actor(other @ actors::ActorError::Unconfirmed(_)) => {
                MarketError::unconfirmed(&other)
            }
            StayError::Actor(other) => MarketError::internal(&other),
            StayError::Store(other) => MarketError::internal(&other),
            StayError::Gateway(why) => MarketError::new(
                StatusCode::BAD_GATEWAY,
                "errMsg_paymentGatewayUnavailable",
                format!("the payment gateway did not answer: {why}; retry with refresh"),
            ),
            StayError::UnknownMethod => MarketError::bad_request(
                "errMsg_paymentMethodIdIsNotValid",
                "paymentMethodId: not a payment method the gateway knows (or \"wallet\")",
            ),
        }
    }
}

fn refusal_error(refusal: Refusal) -> MarketError {
    match refusal {
        Refusal::NoListing => MarketError::not_found("errMsg_listingNotFound", "no such listing"),
        Refusal::ListingExists => {
            MarketError::conflict("errMsg_listingExists", "the listing exists")
        }
        Refusal::NoDay => MarketError::not_found(
            "errMsg_listingCalendarNotFound",
            "no such listing calendar entry",
        ),
        Refusal::NoReservation => {
            MarketError::not_found("errMsg_reservationNotFound", "no such reservation")
        }
        Refusal::Forbidden(why) => MarketError::forbidden(why),
        Refusal::NotBookable => MarketError::bad_request(
            "errMsg_listingNotBookable",
            "the listing is not published: it takes no reservations",
        ),
        Refusal::Mismatch(why) => MarketError::bad_request("errMsg_reservationMismatch", why),
        Refusal::StayRule(why) => MarketError::bad_request("errMsg_stayRuleBroken", why),
        Refusal::DatesUnavailable(nights) => {
            let nights: Vec<String> = nights.iter().map(NaiveDate::to_string).collect();
            MarketError::conflict(
                "errMsg_datesNotAvailable",
                format!("these nights are not available: {}", nights.join(", ")),
            )
        }
        Refusal::DayExists(id) => MarketError::conflict(
            "errMsg_listingCalendarExists",
            format!("the listing has an entry for this date: {id}"),
        ),
        Refusal::NightBooked(date) => MarketError::conflict(
            "errMsg_nightIsBooked",
            format!("{date} is held by a reservation; cancel or decline it first"),
        ),
        Refusal::HasReservations => MarketError::conflict(
            "errMsg_listingHasReservations",
            "the listing has reservations that hold nights; cancel or decline them first",
        ),
        Refusal::InvalidTransition(why) => {
            MarketError::bad_request("errMsg_invalidStatusTransition", why)
        }
    }
}

fn decimal_number(value: Decimal) -> Value {
    // Amounts are JSON numbers in the dialect; they are exact at the currency scale.
    value
        .normalize()
        .to_string()
        .parse::<Number>()
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

pub(super) fn money_number(money: Money) -> Value {
    decimal_number(money.amount())
}

pub fn listing_view(l: &Listing) -> Value {
    json!({
        "id": l.id,
        "hostId": l.host_id,
        "title": l.title,
        "amenityIds": l.amenity_ids,
        "mainPhoto": l.main_photo,
        "photos": l.photos,
        "address": l.address,
        "pricePerNight": money_number(l.price_per_night),
        "description": l.description,
        "propertyType": l.property_type,
        "propertyType_idx": PROPERTY_TYPES.iter().position(|t| *t == l.property_type),
        "location": l.location,
        "maxStay": l.max_stay,
        "minStay": l.min_stay,
        "currency": l.price_per_night.currency().code(),
        "seasonalPricing": l.seasonal_pricing,
        "approvalType": l.approval_type.as_str(),
        "approvalType_idx": l.approval_type.index(),
        "bookingPolicies": l.booking_policies,
        "cancellationPolicy": l.cancellation_policy,
        "languagesSupported": l.languages_supported,
        "houseRules": l.house_rules,
        "isPublished": l.is_published,
        "cityTaxPercent": l.city_tax_percent.map(decimal_number),
        "isActive": l.is_active,
        "recordVersion": l.record_version,
        "createdAt": iso(l.created_at),
        "updatedAt": iso(l.updated_at),
        "_owner": l.host_id,
    })
}

/// A day as a caller sees it: who booked it only for the listing's host, the guest who
/// booked it, and admins.
fn day_view(d: &Day, host_id: &str, viewer: Option<&Identity>) -> Value {
    let sees_guest = viewer.is_some_and(|v| {
        v.role().is_admin() || v.user_id() == host_id || d.booked_by.as_deref() == Some(v.user_id())
    });
    json!({
        "id": d.id,
        "listingId": d.listing_id,
        "date": d.date.to_string(),
        "priceOverride": d.price_override.map(money_number),
        "minStay": d.min_stay,
        "bookedBy": if sees_guest { json!(d.booked_by) } else { Value::Null },
        "iCalUrl": d.ical_url,
        "externalCalendarIds": d.external_calendar_ids,
        "isAvailable": d.is_available,
        "isActive": d.is_active,
        "recordVersion": d.record_version,
        "createdAt": iso(d.created_at),
        "updatedAt": iso(d.updated_at),
        "_owner": d.owner_id,
    })
}

/// May this caller see this listing? Published, active ones are public; the rest only its
/// host and admins.
fn may_see(listing: &ListingRow, viewer: Option<&Identity>) -> bool {
    let manager = viewer.is_some_and(|v| v.role().is_admin() || v.user_id() == listing.host_id);
    manager || (listing.is_active && listing.is_published)
}

async fn check_amenities(db: &Db, ids: &[String]) -> Result<(), MarketError> {
    for id in ids {
        check_id("amenityIds", id)?;
    }
    let known = crate::store::catalog_texts::amenities_by_ids(db, ids).await?;
    if let Some(missing) = ids.iter().find(|id| !known.iter().any(|a| &a.id == *id)) {
        return Err(MarketError::bad_request(
            "errMsg_amenityIdsIsNotValid",
            format!("amenityIds: no such amenity {missing}"),
        ));
    }
    Ok(())
}

/// The body of `createListing`. `hostId` is the session user's (an admin may name another
/// host); the server's own fields are accepted and ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateListing {
    pub title: String,
    #[serde(default)]
    pub amenity_ids: Vec<String>,
    pub main_photo: Option<String>,
    #[serde(default)]
    pub photos: Vec<String>,
    pub address: String,
    #[schema(value_type = f64)]
    pub price_per_night: Number,
    pub description: String,
    pub property_type: String,
    #[schema(value_type = Object)]
    pub location: Value,
    pub max_stay: Option<i64>,
    pub min_stay: Option<i64>,
    pub currency: String,
    #[schema(value_type = Option<Object>)]
    pub seasonal_pricing: Option<Value>,
    pub approval_type: String,
    #[schema(value_type = Option<Object>)]
    pub booking_policies: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub cancellation_policy: Option<Value>,
    #[serde(default)]
    pub languages_supported: Vec<String>,
    pub house_rules: Option<String>,
    pub is_published: bool,
    #[schema(value_type = Option<f64>)]
    pub city_tax_percent: Option<Number>,
    pub host_id: Option<String>,
    #[serde(default, rename = "propertyType_idx")]
    #[schema(ignore)]
    pub _property_type_idx: Option<IgnoredAny>,
    #[serde(default, rename = "approvalType_idx")]
    #[schema(ignore)]
    pub _approval_type_idx: Option<IgnoredAny>,
}

struct Validated {
    title: String,
    address: String,
    description: String,
}

fn check_listing_texts(
    title: &str,
    address: &str,
    description: &str,
) -> Result<Validated, MarketError> {
    check_text("title", title, TITLE_CHARS_MAX)?;
    check_text("address", address, ADDRESS_CHARS_MAX)?;
    check_text("description", description, TEXT_CHARS_MAX)?;
    Ok(Validated {
        title: title.to_owned(),
        address: address.to_owned(),
        description: description.to_owned(),
    })
}

fn check_optional_object(field: &str, value: &Option<Value>) -> Result<(), MarketError> {
    match value {
        Some(v) => check_object(field, v),
        None => Ok(()),
    }
}

/// Create a listing: the caller becomes its host.
#[utoipa::path(tag = "propertycatalog", request_body = CreateListing, responses(
    (status = 201, description = "envelope with `listing`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody)))]
#[post("/v1/listings")]
pub async fn create_listing(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<Object<CreateListing>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let b = body.into_inner().0;
    let admin = me.role().is_admin();
    let host_id = match b.host_id {
        Some(host) if host != me.user_id() => {
            if !admin {
                return Err(MarketError::forbidden(
                    "hostId: a listing's host is the session user",
                ));
            }
            check_id("hostId", &host)?;
            if !crate::store::users::by_id(&state.db, &host)
                .await?
                .is_some_and(|u| u.is_active)
            {
                return Err(MarketError::bad_request(
                    "errMsg_hostIdIsNotValid",
                    "hostId: no such user",
                ));
            }
            host
        }
        _ => me.user_id().to_owned(),
    };
    let texts = check_listing_texts(&b.title, &b.address, &b.description)?;
    let currency = parse_currency("currency", &b.currency)?;
    let price = money("pricePerNight", &b.price_per_night, currency)?;
    let property_type = property_type(&b.property_type)?;
    let approval = approval_type(&b.approval_type)?;
    check_object("location", &b.location)?;
    check_optional_object("seasonalPricing", &b.seasonal_pricing)?;
    check_optional_object("bookingPolicies", &b.booking_policies)?;
    check_optional_object("cancellationPolicy", &b.cancellation_policy)?;
    check_stay("minStay", b.min_stay)?;
    check_stay("maxStay", b.max_stay)?;
    if let (Some(min), Some(max)) = (b.min_stay, b.max_stay) {
        if min > max {
            return Err(MarketError::bad_request(
                "errMsg_minStayIsNotValid",
                "minStay is longer than maxStay",
            ));
        }
    }
    check_list("photos", &b.photos, URL_CHARS_MAX)?;
    check_list(
        "languagesSupported",
        &b.languages_supported,
        LANGUAGE_CHARS_MAX,
    )?;
    if let Some(photo) = &b.main_photo {
        check_text("mainPhoto", photo, URL_CHARS_MAX)?;
    }
    if let Some(rules) = &b.house_rules {
        check_text("houseRules", rules, TEXT_CHARS_MAX)?;
    }
    let tax = b
        .city_tax_percent
        .as_ref()
        .map(|n| percent("cityTaxPercent", n))
        .transpose()?;
    if b.amenity_ids.len() > LIST_ITEMS_MAX {
        return Err(MarketError::bad_request(
            "errMsg_amenityIdsIsNotValid",
            format!("amenityIds: at most {LIST_ITEMS_MAX} items"),
        ));
    }
    check_amenities(&state.db, &b.amenity_ids).await?;
    let now = state.stays.now_ms();
    let listing = Listing {
        id: uuid::Uuid::new_v4().to_string(),
        host_id,
        title: texts.title,
        amenity_ids: b.amenity_ids,
        main_photo: b.main_photo,
        photos: b.photos,
        address: texts.address,
        price_per_night: price,
        description: texts.description,
        property_type,
        location: b.location,
        max_stay: b.max_stay,
        min_stay: b.min_stay,
        seasonal_pricing: b.seasonal_pricing,
        approval_type: approval,
        booking_policies: b.booking_policies,
        cancellation_policy: b.cancellation_policy,
        languages_supported: b.languages_supported,
        house_rules: b.house_rules,
        is_published: b.is_published,
        city_tax_percent: tax,
        is_active: true,
        record_version: 1,
        created_at: now,
        updated_at: now,
    };
    let id = listing.id.clone();
    let reply = state
        .stays
        .ask(&id, Command::CreateListing(Box::new(listing)))
        .await?;
    let Reply::Listing(listing) = reply else {
        return Err(MarketError::internal(&"unexpected calendar reply"));
    };
    Ok(Envelope::new(&req, Some(&me), "listing")
        .action("create")
        .one(listing_view(&listing)))
}

/// The body of `updateListing`: every field optional; `hostId` cannot change.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateListing {
    pub title: Option<String>,
    pub amenity_ids: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub main_photo: Option<Option<String>>,
    pub photos: Option<Vec<String>>,
    pub address: Option<String>,
    #[schema(value_type = Option<f64>)]
    pub price_per_night: Option<Number>,
    pub description: Option<String>,
    pub property_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub location: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub max_stay: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub min_stay: Option<Option<i64>>,
    pub currency: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub seasonal_pricing: Option<Option<Value>>,
    pub approval_type: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub booking_policies: Option<Option<Value>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub cancellation_policy: Option<Option<Value>>,
    pub languages_supported: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub house_rules: Option<Option<String>>,
    pub is_published: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>)]
    pub city_tax_percent: Option<Option<Number>>,
}

/// Change a listing: its host or an admin.
#[utoipa::path(tag = "propertycatalog", request_body = UpdateListing, responses(
    (status = 200, description = "envelope with `listing`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[patch("/v1/listings/{listingId}")]
pub async fn update_listing(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Object<UpdateListing>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let listing_id = path.into_inner();
    check_id("listingId", &listing_id)?;
    let b = body.into_inner().0;
    let current = store::listing(&state.db, &listing_id)
        .await?
        .filter(|l| l.is_active)
        .ok_or_else(|| MarketError::not_found("errMsg_listingNotFound", "no such listing"))?;
    let mut changes = ListingChanges::default();
    if let Some(title) = b.title {
        check_text("title", &title, TITLE_CHARS_MAX)?;
        changes.title = Some(title);
    }
    if let Some(address) = b.address {
        check_text("address", &address, ADDRESS_CHARS_MAX)?;
        changes.address = Some(address);
    }
    if let Some(description) = b.description {
        check_text("description", &description, TEXT_CHARS_MAX)?;
        changes.description = Some(description);
    }
    let currency = match &b.currency {
        Some(code) => parse_currency("currency", code)?,
        None => parse_currency("currency", &current.currency)?,
    };
    match (&b.price_per_night, &b.currency) {
        (Some(price), _) => {
            changes.price_per_night = Some(money("pricePerNight", price, currency)?)
        }
        (None, Some(_)) => {
            // The same price in the new currency: exact there too, or the caller sends both.
            let old = parse_currency("currency", &current.currency)?;
            let amount = actors::money::decimal(current.price_per_night, old);
            let price = Money::new(amount, currency).map_err(|e| {
                MarketError::bad_request(
                    "errMsg_pricePerNightIsNotValid",
                    format!("pricePerNight in {}: {e}; send both", currency.code()),
                )
            })?;
            changes.price_per_night = Some(price);
        }
        (None, None) => {}
    }
    if let Some(kind) = b.property_type {
        changes.property_type = Some(property_type(&kind)?);
    }
    if let Some(kind) = b.approval_type {
        changes.approval_type = Some(approval_type(&kind)?);
    }
    if let Some(location) = b.location {
        check_object("location", &location)?;
        changes.location = Some(location);
    }
    for (field, value) in [
        ("seasonalPricing", &b.seasonal_pricing),
        ("bookingPolicies", &b.booking_policies),
        ("cancellationPolicy", &b.cancellation_policy),
    ] {
        if let Some(Some(v)) = value {
            check_object(field, v)?;
        }
    }
    changes.seasonal_pricing = b.seasonal_pricing;
    changes.booking_policies = b.booking_policies;
    changes.cancellation_policy = b.cancellation_policy;
    if let Some(stay) = b.min_stay {
        check_stay("minStay", stay)?;
        changes.min_stay = Some(stay);
    }
    if let Some(stay) = b.max_stay {
        check_stay("maxStay", stay)?;
        changes.max_stay = Some(stay);
    }
    if let Some(photos) = b.photos {
        check_list("photos", &photos, URL_CHARS_MAX)?;
        changes.photos = Some(photos);
    }
    if let Some(languages) = b.languages_supported {
        check_list("languagesSupported", &languages, LANGUAGE_CHARS_MAX)?;
        changes.languages_supported = Some(languages);
    }
    if let Some(Some(photo)) = &b.main_photo {
        check_text("mainPhoto", photo, URL_CHARS_MAX)?;
    }
    changes.main_photo = b.main_photo;
    if let Some(Some(rules)) = &b.house_rules {
        check_text("houseRules", rules, TEXT_CHARS_MAX)?;
    }
    changes.house_rules = b.house_rules;
    if let Some(tax) = b.city_tax_percent {
        changes.city_tax_percent = Some(tax.map(|n| percent("cityTaxPercent", &n)).transpose()?);
    }
    if let Some(ids) = b.amenity_ids {
        if ids.len() > LIST_ITEMS_MAX {
            return Err(MarketError::bad_request(
                "errMsg_amenityIdsIsNotValid",
                format!("amenityIds: at most {LIST_ITEMS_MAX} items"),
            ));
        }
        check_amenities(&state.db, &ids).await?;
        changes.amenity_ids = Some(ids);
    }
    changes.is_published = b.is_published;
    let reply = state
        .stays
        .ask(
            &listing_id,
            Command::UpdateListing {
                caller: caller(&me),
                changes: Box::new(changes),
                now_ms: state.stays.now_ms(),
            },
        )
        .await?;
    let Reply::Listing(listing) = reply else {
        return Err(MarketError::internal(&"unexpected calendar reply"));
    };
    Ok(Envelope::new(&req, Some(&me), "listing")
        .action("update")
        .one(listing_view(&listing)))
}

/// Soft-delete a listing: its host or an admin, once no reservation holds its nights.
#[utoipa::path(tag = "propertycatalog", responses(
    (status = 200, description = "envelope with the last `listing`, isActive false"),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/v1/listings/{listingId}")]
pub async fn delete_listing(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let listing_id = path.into_inner();
    check_id("listingId", &listing_id)?;
    if store::listing(&state.db, &listing_id).await?.is_none() {
        return Err(MarketError::not_found(
            "errMsg_listingNotFound",
            "no such listing",
        ));
    }
    let reply = state
        .stays
        .ask(
            &listing_id,
            Command::DeleteListing {
                caller: caller(&me),
                now_ms: state.stays.now_ms(),
            },
        )
        .await?;
    let Reply::Listing(listing) = reply else {
        return Err(MarketError::internal(&"unexpected calendar reply"));
    };
    Ok(Envelope::new(&req, Some(&me), "listing")
        .action("delete")
        .one(listing_view(&listing)))
}

/// The published reviews of each listing named, by listing (the review system publishes what
/// is due first, so the join and the aggregates agree).
async fn review_joins(
    state: &AppState,
    listing_ids: &[String],
) -> Result<HashMap<String, Vec<ReviewRow>>, MarketError> {
    Ok(
        crate::store::reviews::listing_review_join(&state.db, listing_ids, state.stays.now_ms())
            .await?
            .into_iter()
            .collect(),
    )
}

/// The joins of one listing: its amenities and its published reviews (`short`: the list form
/// `{rating, revieweeId}`), and on `getListing` its reservations.
async fn listing_joins(
    state: &AppState,
    view: &mut Value,
    listing: &Listing,
    reviews: &[ReviewRow],
    viewer: Option<&Identity>,
    with_reservations: bool,
) -> Result<(), MarketError> {
    let amenities =
        crate::store::catalog_texts::amenities_by_ids(&state.db, &listing.amenity_ids).await?;
    view["amenities"] = amenities
        .iter()
        .map(|a| json!({"iconUrl": a.icon_url, "name": a.name}))
        .collect();
    view["reviews"] = reviews
        .iter()
        .map(|r| {
            if with_reservations {
                super::reviews::listing_review_view(r)
            } else {
                json!({"rating": r.rating, "revieweeId": r.reviewee_id})
            }
        })
        .collect();
    if with_reservations {
        let manager = viewer.is_some_and(|v| v.role().is_admin() || v.user_id() == listing.host_id);
        let rows = store::listing_reservations(&state.db, &listing.id).await?;
        let rezervations: Vec<Value> = rows
            .into_iter()
            .map(|r| {
                let status = actors::calendar::BookingStatus::parse(&r.booking_status);
                json!({
                    "bookingStatus": r.booking_status,
                    "bookingStatus_idx": status.map(|s| s.index()),
                    "guestId": if manager { json!(r.guest_id) } else { Value::Null },
                })
            })
            .collect();
        view["rezervations"] = Value::Array(rezervations);
    }
    Ok(())
}

/// One listing with its amenities, reviews and reservations.
#[utoipa::path(tag = "propertycatalog", responses(
    (status = 200, description = "envelope with `listing`"),
    (status = 404, body = ErrorBody)))]
#[get("/v1/listings/{listingId}")]
pub async fn get_listing(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let viewer = maybe_me(&req, &state).await?;
    let listing_id = path.into_inner();
    check_id("listingId", &listing_id)?;
    let query = ListQuery::parse(&req, &[])?;
    let row = store::listing(&state.db, &listing_id)
        .await?
        .filter(|l| may_see(l, viewer.as_ref()))
        .ok_or_else(|| MarketError::not_found("errMsg_listingNotFound", "no such listing"))?;
    let listing = row.into_listing();
    let mut view = listing_view(&listing);
    if query.get_joins {
        let reviews = review_joins(&state, std::slice::from_ref(&listing.id)).await?;
        let reviews = reviews.get(&listing.id).map_or(&[][..], Vec::as_slice);
        listing_joins(&state, &mut view, &listing, reviews, viewer.as_ref(), true).await?;
    }
    Ok(Envelope::new(&req, viewer.as_ref(), "listing").one(view))
}

const LISTING_FILTERS: &[&str] = &[
    "title",
    "hostId",
    "address",
    "pricePerNight",
    "propertyType",
    "currency",
    "isPublished",
];

/// A number column against `v`, `$lt-v`, `$lte-v`, `$gt-v`, `$gte-v` or `$btw-a-b`.
fn number_any(
    filter: &mut Filter,
    field: &str,
    column: &str,
    values: &[String],
) -> Result<(), MarketError> {
    let bad = || {
        MarketError::bad_request(
            "errMsg_invalidFilter",
            format!("{field}: a number, or $lt-, $lte-, $gt-, $gte- a number, or $btw-min-max"),
        )
    };
    let number = |raw: &str| -> Result<String, MarketError> {
        raw.parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(|n| n.to_string())
            .ok_or_else(bad)
    };
    let mut alternatives = Vec::new();
    for value in values {
        if value == "null" {
            alternatives.push(format!("{column} IS NULL"));
            continue;
        }
        let bind = |filter: &mut Filter, raw: &str| -> Result<String, MarketError> {
            filter.binds.push(number(raw)?);
            Ok(format!("CAST(${} AS DOUBLE PRECISION)", filter.binds.len()))
        };
        let condition = if let Some(v) = value.strip_prefix("$lte-") {
            format!("{column} <= {}", bind(filter, v)?)
        } else if let Some(v) = value.strip_prefix("$lt-") {
            format!("{column} < {}", bind(filter, v)?)
        } else if let Some(v) = value.strip_prefix("$gte-") {
            format!("{column} >= {}", bind(filter, v)?)
        } else if let Some(v) = value.strip_prefix("$gt-") {
            format!("{column} > {}", bind(filter, v)?)
        } else if let Some(range) = value.strip_prefix("$btw-") {
            let (low, high) = range.split_once('-').ok_or_else(bad)?;
            let low = bind(filter, low)?;
            let high = bind(filter, high)?;
            format!("{column} BETWEEN {low} AND {high}")
        } else {
            format!("{column} = {}", bind(filter, value)?)
        };
        alternatives.push(condition);
    }
    if !alternatives.is_empty() {
        filter.sql.push(format!("({})", alternatives.join(" OR ")));
    }
    Ok(())
}

/// Case-insensitive exact match of an enum column.
pub(super) fn enum_any(
    filter: &mut Filter,
    field: &str,
    column: &str,
    values: &[String],
    allowed: &[&str],
) -> Result<(), MarketError> {
    let mut lowered = Vec::new();
    for value in values {
        let lower = value.to_ascii_lowercase();
        if lower != "null" && !allowed.contains(&lower.as_str()) {
            return Err(MarketError::bad_request(
                "errMsg_invalidFilter",
                format!("{field} must be one of {}", allowed.join(", ")),
            ));
        }
        lowered.push(lower);
    }
    filter.equals_any(column, &lowered);
    Ok(())
}

/// A date column (ISO text) against a date, `null`, or the tokens `$today`, `$ltoday`
/// (before today), `$week` / `$lweek` (this / last ISO week), `$month` (this month),
/// `$leq-<date>` (on or before) and `$lin-<date>` (before).
pub(super) fn date_any(
    filter: &mut Filter,
    field: &str,
    column: &str,
    values: &[String],
    today: NaiveDate,
) -> Result<(), MarketError> {
    let mut alternatives = Vec::new();
    let bind = |filter: &mut Filter, date: NaiveDate| {
        filter.binds.push(date.to_string());
        format!("${}", filter.binds.len())
    };
    let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
    for value in values {
        let condition = match value.as_str() {
            "null" => format!("{column} IS NULL"),
            "$today" => format!("{column} = {}", bind(filter, today)),
            "$ltoday" => format!("{column} < {}", bind(filter, today)),
            "$week" => {
                let from = bind(filter, monday);
                let to = bind(filter, monday + Duration::days(7));
                format!("({column} >= {from} AND {column} < {to})")
            }
            "$lweek" => {
                let from = bind(filter, monday - Duration::days(7));
                let to = bind(filter, monday);
                format!("({column} >= {from} AND {column} < {to})")
            }
            "$month" => {
                let first = today.with_day(1).unwrap_or(today);
                let next = first
                    .checked_add_months(chrono::Months::new(1))
                    .unwrap_or(first);
                let from = bind(filter, first);
                let to = bind(filter, next);
                format!("({column} >= {from} AND {column} < {to})")
            }
            other => {
                if let Some(date) = other.strip_prefix("$leq-") {
                    let date = parse_date(field, date)?;
                    format!("{column} <= {}", bind(filter, date))
                } else if let Some(date) = other.strip_prefix("$lin-") {
                    let date = parse_date(field, date)?;
                    format!("{column} < {}", bind(filter, date))
                } else {
                    let date = parse_date(field, other)?;
                    format!("{column} = {}", bind(filter, date))
                }
            }
        };
        alternatives.push(condition);
    }
    if !alternatives.is_empty() {
        filter.sql.push(format!("({})", alternatives.join(" OR ")));
    }
    Ok(())
}

/// Listings, filtered; each with its amenities and published reviews.
#[utoipa::path(tag = "propertycatalog", responses(
    (status = 200, description = "list envelope under `listings`"),
    (status = 400, body = ErrorBody)))]
#[get("/v1/listings")]
pub async fn list_listings(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    let viewer = maybe_me(&req, &state).await?;
    let query = ListQuery::parse(&req, LISTING_FILTERS)?;
    let mut filter = Filter::default();
    filter.raw("is_active");
    match &viewer {
        Some(v) if v.role().is_admin() => {}
        Some(v) => {
            // Published listings, and the caller's own.
            filter.binds.push(v.user_id().to_owned());
            filter.sql.push(format!(
                "(is_published OR host_id = ${})",
                filter.binds.len()
            ));
        }
        None => filter.raw("is_published"),
    }
    for (field, column) in [
        ("title", "title"),
        ("address", "address"),
        ("currency", "currency"),
    ] {
        if let Some(values) = query.filters.get(field) {
            filter.contains_any(column, values);
        }
    }
    query.filter_by(&mut filter, &[("hostId", "host_id")]);
    if let Some(values) = query.filters.get("pricePerNight") {
        number_any(&mut filter, "pricePerNight", "price_major", values)?;
    }
    if let Some(values) = query.filters.get("propertyType") {
        enum_any(
            &mut filter,
            "propertyType",
            "property_type",
            values,
            &PROPERTY_TYPES,
        )?;
    }
    match query.filters.get("isPublished").map(Vec::as_slice) {
        Some([one]) if one == "null" => {}
        _ => {
            if let Some(published) = query.flag("isPublished")? {
                filter.flag("is_published", published);
            }
        }
    }
    let (rows, total) = store::listings(&state.db, &filter, query.page()).await?;
    let paging = query.paging(total)?;
    let reviews = if query.get_joins {
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        review_joins(&state, &ids).await?
    } else {
        HashMap::new()
    };
    let mut views = Vec::with_capacity(rows.len());
    for row in rows {
        let listing = row.into_listing();
        let mut view = listing_view(&listing);
        if query.get_joins {
            let reviews = reviews.get(&listing.id).map_or(&[][..], Vec::as_slice);
            listing_joins(&state, &mut view, &listing, reviews, viewer.as_ref(), false).await?;
        }
        views.push(view);
    }
    Ok(Envelope::new(&req, viewer.as_ref(), "listings")
        .action("list")
        .list(&views, paging))
}

// ----- listing calendars -----

/// The body of `createListingCalendar`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDay {
    #[schema(value_type = Option<f64>)]
    pub price_override: Option<Number>,
    pub date: String,
    pub min_stay: Option<i64>,
    pub listing_id: String,
    pub booked_by: Option<String>,
    #[serde(rename = "iCalUrl")]
    pub ical_url: Option<String>,
    #[serde(default)]
    pub external_calendar_ids: Vec<String>,
    pub is_available: bool,
}

async fn live_listing(db: &Db, listing_id: &str) -> Result<ListingRow, MarketError> {
    check_id("listingId", listing_id)?;
    store::listing(db, listing_id)
        .await?
        .filter(|l| l.is_active)
        .ok_or_else(|| MarketError::not_found("errMsg_listingNotFound", "no such listing"))
}

fn expect_day(reply: Reply) -> Result<Day, MarketError> {
    match reply {
        Reply::Day(day) => Ok(*day),
        _ => Err(MarketError::internal(&"unexpected calendar reply")),
    }
}

/// Add a day to a listing's calendar: its host or an admin. One entry per listing and date.
#[utoipa::path(tag = "propertycatalog", request_body = CreateDay, responses(
    (status = 201, description = "envelope with `listingCalendar`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)))]
#[post("/v1/listingcalendars")]
pub async fn create_day(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<Object<CreateDay>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let b = body.into_inner().0;
    let listing = live_listing(&state.db, &b.listing_id).await?;
    let date = parse_date("date", &b.date)?;
    let currency = parse_currency("currency", &listing.currency)?;
    let price_override = b
        .price_override
        .as_ref()
        .map(|n| money("priceOverride", n, currency))
        .transpose()?;
    check_stay("minStay", b.min_stay)?;
    if let Some(guest) = &b.booked_by {
        check_id("bookedBy", guest)?;
    }
    if let Some(url) = &b.ical_url {
        check_text("iCalUrl", url, URL_CHARS_MAX)?;
    }
    check_list(
        "externalCalendarIds",
        &b.external_calendar_ids,
        URL_CHARS_MAX,
    )?;
    let now = state.stays.now_ms();
    let day = Day {
        id: uuid::Uuid::new_v4().to_string(),
        listing_id: listing.id.clone(),
        date,
        price_override,
        min_stay: b.min_stay,
        booked_by: b.booked_by,
        reservation_id: None,
        ical_url: b.ical_url,
        external_calendar_ids: b.external_calendar_ids,
        is_available: b.is_available,
        is_active: true,
        record_version: 1,
        owner_id: me.user_id().to_owned(),
        created_at: now,
        updated_at: now,
    };
    let reply = state
        .stays
        .ask(
            &listing.id,
            Command::CreateDay {
                caller: caller(&me),
                day: Box::new(day),
            },
        )
        .await?;
    let day = expect_day(reply)?;
    Ok(Envelope::new(&req, Some(&me), "listingCalendar")
        .action("create")
        .one(day_view(&day, &listing.host_id, Some(&me))))
}

/// The body of `updateListingCalendar`: `date` and `listingId` cannot change.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateDay {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>)]
    pub price_override: Option<Option<Number>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub min_stay: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub booked_by: Option<Option<String>>,
    #[serde(default, deserialize_with = "present", rename = "iCalUrl")]
    #[schema(value_type = Option<String>)]
    pub ical_url: Option<Option<String>>,
    pub external_calendar_ids: Option<Vec<String>>,
    pub is_available: Option<bool>,
}

async fn existing_day(db: &Db, day_id: &str) -> Result<DayRow, MarketError> {
    check_id("listingCalendarId", day_id)?;
    store::day(db, day_id)
        .await?
        .filter(|d| d.is_active)
        .ok_or_else(|| {
            MarketError::not_found(
                "errMsg_listingCalendarNotFound",
                "no such listing calendar entry",
            )
        })
}

/// Change a calendar day: its listing's host or an admin. A night a reservation holds keeps
/// its availability and booker until the reservation releases it.
#[utoipa::path(tag = "propertycatalog", request_body = UpdateDay, responses(
    (status = 200, description = "envelope with `listingCalendar`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)))]
#[patch("/v1/listingcalendars/{listingCalendarId}")]
pub async fn update_day(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Object<UpdateDay>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let day_id = path.into_inner();
    let existing = existing_day(&state.db, &day_id).await?;
    let listing = live_listing(&state.db, &existing.listing_id).await?;
    let b = body.into_inner().0;
    let currency = parse_currency("currency", &listing.currency)?;
    let mut changes = DayChanges::default();
    if let Some(price) = b.price_override {
        changes.price_override = Some(
            price
                .map(|n| money("priceOverride", &n, currency))
                .transpose()?,
        );
    }
    if let Some(stay) = b.min_stay {
        check_stay("minStay", stay)?;
        changes.min_stay = Some(stay);
    }
    if let Some(Some(guest)) = &b.booked_by {
        check_id("bookedBy", guest)?;
    }
    changes.booked_by = b.booked_by;
    if let Some(Some(url)) = &b.ical_url {
        check_text("iCalUrl", url, URL_CHARS_MAX)?;
    }
    changes.ical_url = b.ical_url;
    if let Some(ids) = &b.external_calendar_ids {
        check_list("externalCalendarIds", ids, URL_CHARS_MAX)?;
    }
    changes.external_calendar_ids = b.external_calendar_ids;
    changes.is_available = b.is_available;
    let reply = state
        .stays
        .ask(
            &listing.id,
            Command::UpdateDay {
                caller: caller(&me),
                day_id,
                changes,
                now_ms: state.stays.now_ms(),
            },
        )
        .await?;
    let day = expect_day(reply)?;
    Ok(Envelope::new(&req, Some(&me), "listingCalendar")
        .action("update")
        .one(day_view(&day, &listing.host_id, Some(&me))))
}

/// Soft-delete a calendar day (by host/admin); a night a reservation holds stays.
#[utoipa::path(tag = "propertycatalog", responses(
    (status = 200, description = "envelope with the last `listingCalendar`"),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/v1/listingcalendars/{listingCalendarId}")]
pub async fn delete_day(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let day_id = path.into_inner();
    let existing = existing_day(&state.db, &day_id).await?;
    let listing = live_listing(&state.db, &existing.listing_id).await?;
    let reply = state
        .stays
        .ask(
            &listing.id,
            Command::DeleteDay {
                caller: caller(&me),
                day_id,
                now_ms: state.stays.now_ms(),
            },
        )
        .await?;
    let day = expect_day(reply)?;
    Ok(Envelope::new(&req, Some(&me), "listingCalendar")
        .action("delete")
        .one(day_view(&day, &listing.host_id, Some(&me))))
}

/// One calendar day (public, of a listing the caller may see).
#[utoipa::path(tag = "propertycatalog", responses(
    (status = 200, description = "envelope with `listingCalendar`"),
    (status = 404, body = ErrorBody)))]
#[get("/v1/listingcalendars/{listingCalendarId}")]
pub async fn get_day(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let viewer = maybe_me(&req, &state).await?;
    let day_id = path.into_inner();
    let row = existing_day(&state.db, &day_id).await?;
    let listing = store::listing(&state.db, &row.listing_id)
        .await?
        .filter(|l| may_see(l, viewer.as_ref()))
        .ok_or_else(|| {
            MarketError::not_found(
                "errMsg_listingCalendarNotFound",
                "no such listing calendar entry",
            )
        })?;
    let day = row.into_day();
    Ok(
        Envelope::new(&req, viewer.as_ref(), "listingCalendar").one(day_view(
            &day,
            &listing.host_id,
            viewer.as_ref(),
        )),
    )
}

const DAY_FILTERS: &[&str] = &["date", "listingId"];

/// Calendar days of listings the caller may see, by listing and date.
#[utoipa::path(tag = "propertycatalog", responses(
    (status = 200, description = "list envelope under `listingCalendars`"),
    (status = 400, body = ErrorBody)))]
#[get("/v1/listingcalendars")]
pub async fn list_days(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    let viewer = maybe_me(&req, &state).await?;
    let query = ListQuery::parse(&req, DAY_FILTERS)?;
    let mut filter = Filter::default();
    filter.raw("d.is_active");
    filter.raw("l.is_active");
    match &viewer {
        Some(v) if v.role().is_admin() => {}
        Some(v) => {
            filter.binds.push(v.user_id().to_owned());
            filter.sql.push(format!(
                "(l.is_published OR l.host_id = ${})",
                filter.binds.len()
            ));
        }
        None => filter.raw("l.is_published"),
    }
    query.filter_by(&mut filter, &[("listingId", "d.listing_id")]);
    if let Some(values) = query.filters.get("date") {
        date_any(&mut filter, "date", "d.day", values, state.stays.today())?;
    }
    let (rows, total) = store::days(&state.db, &filter, query.page()).await?;
    let paging = query.paging(total)?;
    let hosts = store::listing_hosts(
        &state.db,
        &rows
            .iter()
            .map(|r| r.listing_id.clone())
            .collect::<Vec<_>>(),
    )
    .await?;
    let views: Vec<Value> = rows
        .into_iter()
        .map(|row| {
            let host = hosts.get(&row.listing_id).cloned().unwrap_or_default();
            day_view(&row.into_day(), &host, viewer.as_ref())
        })
        .collect();
    Ok(Envelope::new(&req, viewer.as_ref(), "listingCalendars")
        .action("list")
        .list(&views, paging))
}
