//! The stays side of the store: how calendar events are written inside a journal batch, how a
//! calendar is loaded, and the reads of listings, calendar days and reservations.
//!
//! Every write is a whole-row upsert of the state the calendar actor computed, so a replayed
//! or reordered write can never mix two versions of a row. The overlap fence (exclusion
//! constraint or triggers, migration 0009) refuses a reservation that holds nights another
//! one holds, failing the batch, whatever the actor believed.

use actors::calendar::{
    ApprovalType, BookingStatus, Day, Event, Listing, PaymentConfirmation, PaymentMethod,
    PaymentRecord, PaymentTicket, Reservation,
};
use actors::money::{Currency, Money};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::Value;

use super::conversations::{count, select_page, Filter, Page};
use super::journal::Tx;
use super::{Db, StoreError};
use crate::{on_db, on_tx};

/// Days since 1970-01-01: the nights of a stay as numbers, for the overlap fence.
pub fn day_number(date: NaiveDate) -> i64 {
    date.signed_duration_since(NaiveDate::default()).num_days()
}

fn json_text(value: &Value) -> String {
    value.to_string()
}

fn list_text(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".to_owned())
}

/// Write one calendar event.
pub async fn persist(event: &Event, tx: Tx<'_>) -> Result<(), sqlx::Error> {
    match event {
        Event::Listing(listing) => upsert_listing(listing, tx).await,
        Event::Day(day) => upsert_day(day, tx).await,
        Event::Reservation(reservation) => upsert_reservation(reservation, tx).await,
        Event::Ticket(ticket) => upsert_ticket(ticket, tx).await,
        Event::Record(record) => insert_record(record, tx).await,
    }
}

async fn upsert_listing(l: &Listing, tx: Tx<'_>) -> Result<(), sqlx::Error> {
    let price_major = l
        .price_per_night
        .amount()
        .to_string()
        .parse::<f64>()
        .unwrap_or(0.0);
    on_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO listings (id, host_id, title, amenity_ids, main_photo, photos, address, \
             price_per_night, price_major, currency, description, property_type, location, \
             max_stay, min_stay, seasonal_pricing, approval_type, booking_policies, \
             cancellation_policy, languages_supported, house_rules, is_published, \
             city_tax_percent, is_active, record_version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19, $20, $21, $22, $23, $24, $25, $26, $27) \
             ON CONFLICT (id) DO UPDATE SET title = $3, amenity_ids = $4, main_photo = $5, \
             photos = $6, address = $7, price_per_night = $8, price_major = $9, currency = $10, \
             description = $11, property_type = $12, location = $13, max_stay = $14, \
             min_stay = $15, seasonal_pricing = $16, approval_type = $17, \
             booking_policies = $18, cancellation_policy = $19, languages_supported = $20, \
             house_rules = $21, is_published = $22, city_tax_percent = $23, is_active = $24, \
             record_version = $25, updated_at = $27")
            .bind(&l.id)
            .bind(&l.host_id)
            .bind(&l.title)
            .bind(list_text(&l.amenity_ids))
            .bind(&l.main_photo)
            .bind(list_text(&l.photos))
            .bind(&l.address)
            .bind(l.price_per_night.minor())
            .bind(price_major)
            .bind(l.price_per_night.currency().code().to_owned())
            .bind(&l.description)
            .bind(&l.property_type)
            .bind(json_text(&l.location))
            .bind(l.max_stay)
            .bind(l.min_stay)
            .bind(l.seasonal_pricing.as_ref().map(json_text))
            .bind(l.approval_type.as_str())
            .bind(l.booking_policies.as_ref().map(json_text))
            .bind(l.cancellation_policy.as_ref().map(json_text))
            .bind(list_text(&l.languages_supported))
            .bind(&l.house_rules)
            .bind(l.is_published)
            .bind(l.city_tax_percent.map(|d| d.to_string()))
            .bind(l.is_active)
            .bind(l.record_version)
            .bind(l.created_at)
            .bind(l.updated_at)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

async fn upsert_day(d: &Day, tx: Tx<'_>) -> Result<(), sqlx::Error> {
    on_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO listing_calendars (id, listing_id, day, price_override, min_stay, \
             booked_by, reservation_id, ical_url, external_calendar_ids, is_available, is_active, \
             record_version, owner_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (id) DO UPDATE SET price_override = $4, min_stay = $5, booked_by = $6, \
             reservation_id = $7, ical_url = $8, external_calendar_ids = $9, is_available = $10, \
             is_active = $11, record_version = $12, updated_at = $15")
            .bind(&d.id)
            .bind(&d.listing_id)
            .bind(d.date.to_string())
            .bind(d.price_override.map(|m| m.minor()))
            .bind(d.min_stay)
            .bind(&d.booked_by)
            .bind(&d.reservation_id)
            .bind(&d.ical_url)
            .bind(list_text(&d.external_calendar_ids))
            .bind(d.is_available)
            .bind(d.is_active)
            .bind(d.record_version)
            .bind(&d.owner_id)
            .bind(d.created_at)
            .bind(d.updated_at)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

async fn upsert_reservation(r: &Reservation, tx: Tx<'_>) -> Result<(), sqlx::Error> {
    on_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO reservations (id, listing_id, host_id, guest_id, approval_type, \
             booking_status, check_in, check_out, night_from, night_to, holds_nights, currency, \
             guest_count, total_price, ical_export_url, ical_import_source, dispute_status, \
             booking_policies_snapshot, cancellation_policy_snapshot, payment_confirmation, \
             payment_method, payment_ref, is_active, record_version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
             $18, $19, $20, $21, $22, $23, $24, $25, $26) \
             ON CONFLICT (id) DO UPDATE SET booking_status = $6, holds_nights = $11, \
             ical_export_url = $15, ical_import_source = $16, dispute_status = $17, \
             payment_confirmation = $20, payment_method = $21, payment_ref = $22, \
             is_active = $23, record_version = $24, updated_at = $26")
            .bind(&r.id)
            .bind(&r.listing_id)
            .bind(&r.host_id)
            .bind(&r.guest_id)
            .bind(r.approval_type.as_str())
            .bind(r.booking_status.as_str())
            .bind(r.check_in.to_string())
            .bind(r.check_out.to_string())
            .bind(day_number(r.check_in))
            .bind(day_number(r.check_out))
            .bind(r.holds_nights())
            .bind(r.currency_total.currency().code().to_owned())
            .bind(r.guest_count)
            .bind(r.currency_total.minor())
            .bind(&r.ical_export_url)
            .bind(&r.ical_import_source)
            .bind(&r.dispute_status)
            .bind(json_text(&r.booking_policies_snapshot))
            .bind(json_text(&r.cancellation_policy_snapshot))
            .bind(r.payment_confirmation.as_str())
            .bind(r.payment_method.map(PaymentMethod::as_str))
            .bind(&r.payment_ref)
            .bind(r.is_active)
            .bind(r.record_version)
            .bind(r.created_at)
            .bind(r.updated_at)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

async fn upsert_ticket(t: &PaymentTicket, tx: Tx<'_>) -> Result<(), sqlx::Error> {
    on_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO reservation_payments (id, owner_id, order_id, payment_id, payment_status, \
             status_literal, redirect_url, is_active, record_version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (id) DO UPDATE SET payment_id = $4, payment_status = $5, \
             status_literal = $6, redirect_url = $7, is_active = $8, record_version = $9, \
             updated_at = $11")
            .bind(&t.id)
            .bind(&t.owner_id)
            .bind(&t.order_id)
            .bind(&t.payment_id)
            .bind(&t.payment_status)
            .bind(&t.status_literal)
            .bind(&t.redirect_url)
            .bind(t.is_active)
            .bind(t.record_version)
            .bind(t.created_at)
            .bind(t.updated_at)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

async fn insert_record(r: &PaymentRecord, tx: Tx<'_>) -> Result<(), sqlx::Error> {
    on_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO payment_records (id, reservation_id, stripe_charge_id, payout_amount_host, \
             payment_intent_id, currency, city_tax, refund_amount, amount_paid, payment_status, \
             platform_fee, payment_date, owner_id, created_at, updated_at) \
             VALUES ($1, $2, NULL, $3, $4, $5, $6, NULL, $7, $8, NULL, $9, $10, $9, $9)")
            .bind(&r.id)
            .bind(&r.reservation_id)
            .bind(r.payout_amount_host.map(|m| m.minor()))
            .bind(&r.payment_intent_id)
            .bind(r.amount_paid.currency().code().to_owned())
            .bind(r.city_tax.map(|m| m.minor()))
            .bind(r.amount_paid.minor())
            .bind(&r.payment_status)
            .bind(r.created_at)
            .bind(&r.owner_id)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

// ----- rows -----

const LISTING_COLUMNS: &str = "id, host_id, title, amenity_ids, main_photo, photos, address, \
    price_per_night, currency, description, property_type, location, max_stay, min_stay, \
    seasonal_pricing, approval_type, booking_policies, cancellation_policy, \
    languages_supported, house_rules, is_published, city_tax_percent, is_active, \
    record_version, created_at, updated_at";

/// A listing as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ListingRow {
    pub id: String,
    pub host_id: String,
    pub title: String,
    pub amenity_ids: String,
    pub main_photo: Option<String>,
    pub photos: String,
    pub address: String,
    pub price_per_night: i64,
    pub currency: String,
    pub description: String,
    pub property_type: String,
    pub location: String,
    pub max_stay: Option<i64>,
    pub min_stay: Option<i64>,
    pub seasonal_pricing: Option<String>,
    pub approval_type: String,
    pub booking_policies: Option<String>,
    pub cancellation_policy: Option<String>,
    pub languages_supported: String,
    pub house_rules: Option<String>,
    pub is_published: bool,
    pub city_tax_percent: Option<String>,
    pub is_active: bool,
    pub record_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

fn parse_json(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or(Value::Null)
}

fn parse_list(raw: &str) -> Vec<String> {
    serde_json::from_str(raw).unwrap_or_default()
}

fn currency(code: &str) -> Currency {
    Currency::parse(code).unwrap_or(Currency::USD)
}

impl ListingRow {
    pub fn into_listing(self) -> Listing {
        let currency = currency(&self.currency);
        Listing {
            price_per_night: Money::from_stored(self.price_per_night, currency),
            id: self.id,
            host_id: self.host_id,
            title: self.title,
            amenity_ids: parse_list(&self.amenity_ids),
            main_photo: self.main_photo,
            photos: parse_list(&self.photos),
            address: self.address,
            description: self.description,
            property_type: self.property_type,
            location: parse_json(&self.location),
            max_stay: self.max_stay,
            min_stay: self.min_stay,
            seasonal_pricing: self.seasonal_pricing.as_deref().map(parse_json),
            approval_type: ApprovalType::parse(&self.approval_type).unwrap_or(ApprovalType::Manual),
            booking_policies: self.booking_policies.as_deref().map(parse_json),
            cancellation_policy: self.cancellation_policy.as_deref().map(parse_json),
            languages_supported: parse_list(&self.languages_supported),
            house_rules: self.house_rules,
            is_published: self.is_published,
            city_tax_percent: self
                .city_tax_percent
                .as_deref()
                .and_then(|d| d.parse::<Decimal>().ok()),
            is_active: self.is_active,
            record_version: self.record_version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

const DAY_COLUMNS: &str = "d.id, d.listing_id, d.day, d.price_override, d.min_stay, d.booked_by, \
    d.reservation_id, d.ical_url, d.external_calendar_ids, d.is_available, d.is_active, \
    d.record_version, d.owner_id, d.created_at, d.updated_at, l.currency";

/// A calendar day as stored, with its listing's currency.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DayRow {
    pub id: String,
    pub listing_id: String,
    pub day: String,
    pub price_override: Option<i64>,
    pub min_stay: Option<i64>,
    pub booked_by: Option<String>,
    pub reservation_id: Option<String>,
    pub ical_url: Option<String>,
    pub external_calendar_ids: String,
    pub is_available: bool,
    pub is_active: bool,
    pub record_version: i64,
    pub owner_id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub currency: String,
}

impl DayRow {
    pub fn into_day(self) -> Day {
        let currency = currency(&self.currency);
        Day {
            id: self.id,
            listing_id: self.listing_id,
            date: self.day.parse().unwrap_or_default(),
            price_override: self
                .price_override
                .and_then(|minor| Money::from_minor(minor, currency)),
            min_stay: self.min_stay,
            booked_by: self.booked_by,
            reservation_id: self.reservation_id,
            ical_url: self.ical_url,
            external_calendar_ids: parse_list(&self.external_calendar_ids),
            is_available: self.is_available,
            is_active: self.is_active,
            record_version: self.record_version,
            owner_id: self.owner_id,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

const RESERVATION_COLUMNS: &str = "id, listing_id, host_id, guest_id, approval_type, \
    booking_status, check_in, check_out, currency, guest_count, total_price, ical_export_url, \
    ical_import_source, dispute_status, booking_policies_snapshot, \
    cancellation_policy_snapshot, payment_confirmation, payment_method, payment_ref, is_active, \
    record_version, created_at, updated_at";

/// A reservation as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReservationRow {
    pub id: String,
    pub listing_id: String,
    pub host_id: String,
    pub guest_id: String,
    pub approval_type: String,
    pub booking_status: String,
    pub check_in: String,
    pub check_out: String,
    pub currency: String,
    pub guest_count: i64,
    pub total_price: i64,
    pub ical_export_url: Option<String>,
    pub ical_import_source: Option<String>,
    pub dispute_status: String,
    pub booking_policies_snapshot: String,
    pub cancellation_policy_snapshot: String,
    pub payment_confirmation: String,
    pub payment_method: Option<String>,
    pub payment_ref: Option<String>,
    pub is_active: bool,
    pub record_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ReservationRow {
    pub fn into_reservation(self) -> Reservation {
        let currency = currency(&self.currency);
        Reservation {
            id: self.id,
            listing_id: self.listing_id,
            host_id: self.host_id,
            guest_id: self.guest_id,
            approval_type: ApprovalType::parse(&self.approval_type).unwrap_or(ApprovalType::Manual),
            booking_status: BookingStatus::parse(&self.booking_status)
                .unwrap_or(BookingStatus::Pending),
            check_in: self.check_in.parse().unwrap_or_default(),
            check_out: self.check_out.parse().unwrap_or_default(),
            currency_total: Money::from_stored(self.total_price, currency),
            guest_count: self.guest_count,
            ical_export_url: self.ical_export_url,
            ical_import_source: self.ical_import_source,
            dispute_status: self.dispute_status,
            booking_policies_snapshot: parse_json(&self.booking_policies_snapshot),
            cancellation_policy_snapshot: parse_json(&self.cancellation_policy_snapshot),
            payment_confirmation: PaymentConfirmation::parse(&self.payment_confirmation)
                .unwrap_or(PaymentConfirmation::Pending),
            payment_method: self
                .payment_method
                .as_deref()
                .and_then(PaymentMethod::parse),
            payment_ref: self.payment_ref,
            is_active: self.is_active,
            record_version: self.record_version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

const TICKET_COLUMNS: &str = "id, owner_id, order_id, payment_id, payment_status, \
    status_literal, redirect_url, is_active, record_version, created_at, updated_at";

#[derive(Debug, Clone, sqlx::FromRow)]
struct TicketRow {
    id: String,
    owner_id: String,
    order_id: String,
    payment_id: String,
    payment_status: String,
    status_literal: String,
    redirect_url: Option<String>,
    is_active: bool,
    record_version: i64,
    created_at: i64,
    updated_at: i64,
}

// ----- loading a calendar -----

/// Everything a calendar actor holds: the listing, its days, the reservations that can still
/// change (active ones) and their payment tickets.
pub async fn load_calendar(
    db: &Db,
    listing_id: &str,
) -> Result<
    (
        Option<Listing>,
        Vec<Day>,
        Vec<Reservation>,
        Vec<PaymentTicket>,
    ),
    StoreError,
> {
    let listing = listing(db, listing_id).await?.map(ListingRow::into_listing);
    let days_sql = format!(
        "SELECT {DAY_COLUMNS} FROM listing_calendars d JOIN listings l ON l.id = d.listing_id \
         WHERE d.listing_id = $1"
    );
    let reservations_sql = format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations WHERE listing_id = $1 AND is_active"
    );
    let tickets_sql = format!(
        "SELECT {TICKET_COLUMNS} FROM reservation_payments WHERE is_active AND order_id IN \
         (SELECT id FROM reservations WHERE listing_id = $1 AND is_active)"
    );
    let (days, reservations, tickets): (Vec<DayRow>, Vec<ReservationRow>, Vec<TicketRow>) = on_db!(db, pool => (
        sqlx::query_as(&days_sql).bind(listing_id).fetch_all(pool).await?,
        sqlx::query_as(&reservations_sql).bind(listing_id).fetch_all(pool).await?,
        sqlx::query_as(&tickets_sql).bind(listing_id).fetch_all(pool).await?,
    ));
    Ok((
        listing,
        days.into_iter().map(DayRow::into_day).collect(),
        reservations
            .into_iter()
            .map(ReservationRow::into_reservation)
            .collect(),
        tickets
            .into_iter()
            .map(|t| PaymentTicket {
                id: t.id,
                owner_id: t.owner_id,
                order_id: t.order_id,
                payment_id: t.payment_id,
                payment_status: t.payment_status,
                status_literal: t.status_literal,
                redirect_url: t.redirect_url,
                is_active: t.is_active,
                record_version: t.record_version,
                created_at: t.created_at,
                updated_at: t.updated_at,
            })
            .collect(),
    ))
}

// ----- reads -----

pub async fn listing(db: &Db, id: &str) -> Result<Option<ListingRow>, StoreError> {
    let sql = format!("SELECT {LISTING_COLUMNS} FROM listings WHERE id = $1");
    Ok(on_db!(db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?))
}

/// Listings matching a filter, newest first, and how many match in all.
pub async fn listings(
    db: &Db,
    filter: &Filter,
    page: Page,
) -> Result<(Vec<ListingRow>, i64), StoreError> {
    let total = count(db, "listings", filter).await?;
    let rows = select_page!(
        db,
        LISTING_COLUMNS,
        "listings",
        filter,
        "created_at DESC, id",
        page
    );
    Ok((rows, total))
}

pub async fn day(db: &Db, id: &str) -> Result<Option<DayRow>, StoreError> {
    let sql = format!(
        "SELECT {DAY_COLUMNS} FROM listing_calendars d JOIN listings l ON l.id = d.listing_id \
         WHERE d.id = $1"
    );
    Ok(on_db!(db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?))
}

/// Calendar days matching a filter (on `d.` columns), by listing and date.
pub async fn days(db: &Db, filter: &Filter, page: Page) -> Result<(Vec<DayRow>, i64), StoreError> {
    let table = "listing_calendars d JOIN listings l ON l.id = d.listing_id";
    let total = count(db, table, filter).await?;
    let rows = select_page!(db, DAY_COLUMNS, table, filter, "d.listing_id, d.day", page);
    Ok((rows, total))
}

pub async fn reservation(db: &Db, id: &str) -> Result<Option<ReservationRow>, StoreError> {
    let sql = format!("SELECT {RESERVATION_COLUMNS} FROM reservations WHERE id = $1");
    Ok(on_db!(db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?))
}

/// Reservations matching a filter, by check-in, and how many match in all.
pub async fn reservations(
    db: &Db,
    filter: &Filter,
    page: Page,
) -> Result<(Vec<ReservationRow>, i64), StoreError> {
    let total = count(db, "reservations", filter).await?;
    let rows = select_page!(
        db,
        RESERVATION_COLUMNS,
        "reservations",
        filter,
        "check_in, id",
        page
    );
    Ok((rows, total))
}

/// The listing of every id given (for reservation joins).
pub async fn listings_by_ids(db: &Db, ids: &[String]) -> Result<Vec<ListingRow>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut filter = Filter::default();
    filter.equals_any("id", ids);
    let page = Page {
        offset: 0,
        limit: i64::try_from(ids.len()).unwrap_or(i64::MAX),
    };
    Ok(listings(db, &filter, page).await?.0)
}

/// The reservations of one listing that are active, for the `rezervations` join.
pub async fn listing_reservations(
    db: &Db,
    listing_id: &str,
) -> Result<Vec<ReservationRow>, StoreError> {
    let mut filter = Filter::default();
    filter.equals_any("listing_id", &[listing_id.to_owned()]);
    filter.raw("is_active");
    let page = Page {
        offset: 0,
        limit: 1000,
    };
    Ok(reservations(db, &filter, page).await?.0)
}

/// Does a wallet hold with this id exist, settled or not?
pub async fn hold_exists(db: &Db, hold_id: &str) -> Result<bool, StoreError> {
    Ok(hold_status(db, hold_id).await?.is_some())
}

/// A wallet hold's status (`pending`, `captured`, `voided`), if it exists.
pub async fn hold_status(db: &Db, hold_id: &str) -> Result<Option<String>, StoreError> {
    Ok(on_db!(db, pool => sqlx::query_scalar(
        "SELECT status FROM holds WHERE id = $1")
        .bind(hold_id)
        .fetch_optional(pool)
        .await?))
}

/// The host of each listing named.
pub async fn listing_hosts(
    db: &Db,
    ids: &[String],
) -> Result<std::collections::HashMap<String, String>, StoreError> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let mut filter = Filter::default();
    filter.equals_any("id", ids);
    let sql = format!("SELECT id, host_id FROM listings{}", filter.where_clause());
    let rows: Vec<(String, String)> = on_db!(db, pool => {
        let mut query = sqlx::query_as(&sql);
        for bind in &filter.binds {
            query = query.bind(bind);
        }
        query.fetch_all(pool).await?
    });
    Ok(rows.into_iter().collect())
}

/// The active payment ticket of a reservation, as `{id, paymentStatus, statusLiteral}`.
pub async fn ticket_of(db: &Db, order_id: &str) -> Result<Option<Value>, StoreError> {
    let row: Option<(String, String, String)> = on_db!(db, pool => sqlx::query_as(
        "SELECT id, payment_status, status_literal FROM reservation_payments \
         WHERE order_id = $1 AND is_active")
        .bind(order_id)
        .fetch_optional(pool)
        .await?);
    Ok(row.map(|(id, status, literal)| {
        serde_json::json!({"id": id, "paymentStatus": status, "statusLiteral": literal})
    }))
}

/// Reservations still waiting for their payment to start, created before `before_ms`.
pub async fn unpaid_before(db: &Db, before_ms: i64) -> Result<Vec<ReservationRow>, StoreError> {
    let sql = format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations WHERE is_active AND holds_nights \
         AND payment_confirmation = 'pending' AND created_at < $1 ORDER BY created_at LIMIT 500"
    );
    Ok(on_db!(db, pool => sqlx::query_as(&sql).bind(before_ms).fetch_all(pool).await?))
}

/// Reservations whose payment is in progress and unchanged since before `before_ms`.
pub async fn processing_before(db: &Db, before_ms: i64) -> Result<Vec<ReservationRow>, StoreError> {
    let sql = format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations WHERE is_active \
         AND payment_confirmation = 'processing' AND updated_at < $1 ORDER BY updated_at LIMIT 500"
    );
    Ok(on_db!(db, pool => sqlx::query_as(&sql).bind(before_ms).fetch_all(pool).await?))
}
