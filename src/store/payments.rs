//! The payment side of the booking service: reservation payments (`Sys_reservationPayment`),
//! payment records, disputes, payment customers and payment methods (tables of `0009_stays`).
//!
//! Reservation payments and payment records are written by the reservation flow too (through
//! the calendar actor's journal, with [`insert_reservation_payment`] and
//! [`insert_payment_record`] or its own statements), so every read here takes the tables as
//! they are, whoever wrote them. Amounts are minor units beside their currency; times are Unix
//! milliseconds.

use serde_json::{Map, Value};

use super::conversations::{count, select_page, Filter, Page};
use super::journal::Tx;
use super::{BeginWrite, Db, StoreError};
use crate::{on_db, on_tx};

/// `columns` qualified with a table alias (`a, b` → `p.a, p.b`).
fn qualified(columns: &str, alias: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the payment routes need to know of a reservation: who its guest and host are, its
/// currency, and where its payment stands.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReservationParties {
    pub id: String,
    pub guest_id: String,
    pub host_id: String,
    pub currency: String,
    pub payment_confirmation: String,
    pub is_active: bool,
}

impl ReservationParties {
    pub fn is_party(&self, user_id: &str) -> bool {
        self.guest_id == user_id || self.host_id == user_id
    }

    /// Whether the payment flow is over for this reservation (`paid` or `canceled`): the
    /// calendar actor writes its reservation payment while the payment is `pending` (it
    /// creates one when the payment starts) or `processing`, and never after.
    pub fn payment_settled(&self) -> bool {
        matches!(self.payment_confirmation.as_str(), "paid" | "canceled")
    }
}

/// A reservation's parties, deleted reservations included (their payments and disputes stay).
pub async fn reservation_parties(
    db: &Db,
    id: &str,
) -> Result<Option<ReservationParties>, StoreError> {
    Ok(on_db!(db, pool => sqlx::query_as(
        "SELECT id, guest_id, host_id, currency, payment_confirmation, is_active \
         FROM reservations WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?))
}

// ---------------------------------------------------------------------------------------------
// Reservation payments

/// A reservation payment as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReservationPaymentRow {
    pub id: String,
    pub owner_id: String,
    pub order_id: String,
    pub payment_id: String,
    pub payment_status: String,
    pub status_literal: String,
    pub redirect_url: Option<String>,
    pub is_active: bool,
    pub record_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const RESERVATION_PAYMENT_COLUMNS: &str = "id, owner_id, order_id, payment_id, payment_status, \
    status_literal, redirect_url, is_active, record_version, created_at, updated_at";

/// A new reservation payment (active, version 1).
#[derive(Debug, Clone)]
pub struct NewReservationPayment {
    pub id: String,
    /// The guest of the reservation (who pays).
    pub owner_id: String,
    /// The reservation id.
    pub order_id: String,
    pub payment_id: String,
    pub payment_status: String,
    pub status_literal: String,
    pub redirect_url: Option<String>,
    pub now_ms: i64,
}

/// Insert a reservation payment inside a transaction (a journal batch, say). A second active
/// payment of one order violates `reservation_payments_active_order`.
pub async fn insert_reservation_payment(
    tx: Tx<'_>,
    new: &NewReservationPayment,
) -> Result<(), sqlx::Error> {
    on_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO reservation_payments (id, owner_id, order_id, payment_id, payment_status, \
             status_literal, redirect_url, is_active, record_version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, TRUE, 1, $8, $8)")
            .bind(&new.id)
            .bind(&new.owner_id)
            .bind(&new.order_id)
            .bind(&new.payment_id)
            .bind(&new.payment_status)
            .bind(&new.status_literal)
            .bind(&new.redirect_url)
            .bind(new.now_ms)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

/// Create a reservation payment on its own. `StoreError::is_unique_violation` tells that the
/// order has an active payment already.
pub async fn create_reservation_payment(
    db: &Db,
    new: &NewReservationPayment,
) -> Result<ReservationPaymentRow, StoreError> {
    let sql =
        format!("SELECT {RESERVATION_PAYMENT_COLUMNS} FROM reservation_payments WHERE id = $1");
    Ok(on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        insert_reservation_payment(super::journal::to_tx(&mut tx), new).await?;
        // Read in the same transaction: the answer is what this insert wrote.
        let row = sqlx::query_as(&sql).bind(&new.id).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        row
    }))
}

/// A reservation payment by id, deleted ones included.
pub async fn reservation_payment(
    db: &Db,
    id: &str,
) -> Result<Option<ReservationPaymentRow>, StoreError> {
    let sql =
        format!("SELECT {RESERVATION_PAYMENT_COLUMNS} FROM reservation_payments WHERE id = $1");
    Ok(on_db!(db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?))
}

/// The active payment of a reservation (there is at most one).
pub async fn payment_by_order(
    db: &Db,
    order_id: &str,
) -> Result<Option<ReservationPaymentRow>, StoreError> {
    let sql = format!(
        "SELECT {RESERVATION_PAYMENT_COLUMNS} FROM reservation_payments \
         WHERE order_id = $1 AND is_active = TRUE"
    );
    Ok(on_db!(db, pool => sqlx::query_as(&sql).bind(order_id).fetch_optional(pool).await?))
}

/// The active reservation payment with this gateway payment id; the newest if several.
pub async fn payment_by_payment_id(
    db: &Db,
    payment_id: &str,
) -> Result<Option<ReservationPaymentRow>, StoreError> {
    let sql = format!(
        "SELECT {RESERVATION_PAYMENT_COLUMNS} FROM reservation_payments \
         WHERE payment_id = $1 AND is_active = TRUE ORDER BY created_at DESC, id LIMIT 1"
    );
    Ok(on_db!(db, pool => sqlx::query_as(&sql).bind(payment_id).fetch_optional(pool).await?))
}

/// The table reservation-payment filters run over: `p.` the payments, `r.` their
/// reservations (for the host's view).
const RESERVATION_PAYMENTS_JOINED: &str =
    "reservation_payments p JOIN reservations r ON r.id = p.order_id";

/// Reservation payments matching a filter over [`RESERVATION_PAYMENTS_JOINED`], newest
/// first, and how many match in all.
pub async fn reservation_payments(
    db: &Db,
    filter: &Filter,
    page: Page,
) -> Result<(Vec<ReservationPaymentRow>, i64), StoreError> {
    let total = count(db, RESERVATION_PAYMENTS_JOINED, filter).await?;
    let columns = qualified(RESERVATION_PAYMENT_COLUMNS, "p");
    let rows = select_page!(
        db,
        columns,
        RESERVATION_PAYMENTS_JOINED,
        filter,
        "p.created_at DESC, p.id",
        page
    );
    Ok((rows, total))
}

/// The changeable fields of a reservation payment, as they are to be.
#[derive(Debug, Clone)]
pub struct ReservationPaymentState {
    pub payment_id: String,
    pub payment_status: String,
    pub status_literal: String,
    pub redirect_url: Option<String>,
    pub is_active: bool,
}

/// Write a reservation payment's new state if it is still at `expected_version` (optimistic:
/// `None` when it changed meanwhile or is gone). Reactivating one whose order has another
/// active payment violates `reservation_payments_active_order`.
pub async fn set_reservation_payment(
    db: &Db,
    id: &str,
    expected_version: i64,
    state: &ReservationPaymentState,
    now_ms: i64,
) -> Result<Option<ReservationPaymentRow>, StoreError> {
    // RETURNING: the answer is the state this update wrote, not a later one.
    let sql = format!(
        "UPDATE reservation_payments SET payment_id = $3, payment_status = $4, \
         status_literal = $5, redirect_url = $6, is_active = $7, \
         record_version = record_version + 1, updated_at = $8 \
         WHERE id = $1 AND record_version = $2 RETURNING {RESERVATION_PAYMENT_COLUMNS}"
    );
    Ok(on_db!(db, pool => sqlx::query_as(&sql)
        .bind(id)
        .bind(expected_version)
        .bind(&state.payment_id)
        .bind(&state.payment_status)
        .bind(&state.status_literal)
        .bind(&state.redirect_url)
        .bind(state.is_active)
        .bind(now_ms)
        .fetch_optional(pool)
        .await?))
}

// ---------------------------------------------------------------------------------------------
// Payment records

/// A payment record as stored. Records are never changed once written.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentRecordRow {
    pub id: String,
    pub reservation_id: String,
    pub stripe_charge_id: Option<String>,
    pub payout_amount_host: Option<i64>,
    pub payment_intent_id: String,
    pub currency: String,
    pub city_tax: Option<i64>,
    pub refund_amount: Option<i64>,
    pub amount_paid: i64,
    pub payment_status: String,
    pub platform_fee: Option<i64>,
    pub payment_date: Option<i64>,
    pub is_active: bool,
    pub record_version: i64,
    pub owner_id: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const PAYMENT_RECORD_COLUMNS: &str = "id, reservation_id, stripe_charge_id, payout_amount_host, \
    payment_intent_id, currency, city_tax, refund_amount, amount_paid, payment_status, \
    platform_fee, payment_date, is_active, record_version, owner_id, created_at, updated_at";

/// A new payment record. Amounts are minor units of `currency`.
#[derive(Debug, Clone)]
pub struct NewPaymentRecord {
    pub id: String,
    pub reservation_id: String,
    pub stripe_charge_id: Option<String>,
    pub payout_amount_host: Option<i64>,
    pub payment_intent_id: String,
    pub currency: String,
    pub city_tax: Option<i64>,
    pub refund_amount: Option<i64>,
    pub amount_paid: i64,
    /// `pending`, `paid`, `refunded` or `failed`.
    pub payment_status: String,
    pub platform_fee: Option<i64>,
    pub payment_date: Option<i64>,
    /// The reservation's guest.
    pub owner_id: String,
    pub now_ms: i64,
}

/// Insert a payment record inside a transaction (a journal batch, say).
pub async fn insert_payment_record(tx: Tx<'_>, new: &NewPaymentRecord) -> Result<(), sqlx::Error> {
    on_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO payment_records (id, reservation_id, stripe_charge_id, \
             payout_amount_host, payment_intent_id, currency, city_tax, refund_amount, \
             amount_paid, payment_status, platform_fee, payment_date, is_active, record_version, \
             owner_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, TRUE, 1, $13, $14, $14)")
            .bind(&new.id)
            .bind(&new.reservation_id)
            .bind(&new.stripe_charge_id)
            .bind(new.payout_amount_host)
            .bind(&new.payment_intent_id)
            .bind(&new.currency)
            .bind(new.city_tax)
            .bind(new.refund_amount)
            .bind(new.amount_paid)
            .bind(&new.payment_status)
            .bind(new.platform_fee)
            .bind(new.payment_date)
            .bind(&new.owner_id)
            .bind(new.now_ms)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

/// Create a payment record on its own.
pub async fn create_payment_record(
    db: &Db,
    new: &NewPaymentRecord,
) -> Result<PaymentRecordRow, StoreError> {
    let sql = format!("SELECT {PAYMENT_RECORD_COLUMNS} FROM payment_records WHERE id = $1");
    Ok(on_db!(db, pool => {
        let mut tx = pool.begin_write().await?;
        insert_payment_record(super::journal::to_tx(&mut tx), new).await?;
        let row = sqlx::query_as(&sql).bind(&new.id).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        row
    }))
}

/// A payment record by id.
pub async fn payment_record(db: &Db, id: &str) -> Result<Option<PaymentRecordRow>, StoreError> {
    let sql = format!("SELECT {PAYMENT_RECORD_COLUMNS} FROM payment_records WHERE id = $1");
    Ok(on_db!(db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?))
}

/// The table payment-record filters run over: `p.` the records, `r.` their reservations.
const PAYMENT_RECORDS_JOINED: &str =
    "payment_records p JOIN reservations r ON r.id = p.reservation_id";

/// Payment records matching a filter over [`PAYMENT_RECORDS_JOINED`], newest first, and how
/// many match in all.
pub async fn payment_records(
    db: &Db,
    filter: &Filter,
    page: Page,
) -> Result<(Vec<PaymentRecordRow>, i64), StoreError> {
    let total = count(db, PAYMENT_RECORDS_JOINED, filter).await?;
    let columns = qualified(PAYMENT_RECORD_COLUMNS, "p");
    let rows = select_page!(
        db,
        columns,
        PAYMENT_RECORDS_JOINED,
        filter,
        "p.created_at DESC, p.id",
        page
    );
    Ok((rows, total))
}

// ---------------------------------------------------------------------------------------------
// Disputes

/// A dispute as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DisputeRow {
    pub id: String,
    pub reservation_id: String,
    pub raised_by: String,
    pub admin_id: Option<String>,
    pub issue_type: String,
    pub description: String,
    pub related_payment_id: Option<String>,
    pub resolution_status: String,
    pub reported_at: i64,
    pub resolved_at: Option<i64>,
    pub refund_approved: Option<bool>,
    pub is_active: bool,
    pub record_version: i64,
    pub owner_id: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const DISPUTE_COLUMNS: &str = "id, reservation_id, raised_by, admin_id, issue_type, description, \
    related_payment_id, resolution_status, reported_at, resolved_at, refund_approved, \
    is_active, record_version, owner_id, created_at, updated_at";

/// A new dispute, as the service decided it.
#[derive(Debug, Clone)]
pub struct NewDispute {
    pub id: String,
    pub reservation_id: String,
    pub raised_by: String,
    pub admin_id: Option<String>,
    pub issue_type: String,
    pub description: String,
    pub related_payment_id: Option<String>,
    pub resolution_status: String,
    pub now_ms: i64,
}

/// Create a dispute, reported now, owned by whoever raised it.
pub async fn create_dispute(db: &Db, new: &NewDispute) -> Result<DisputeRow, StoreError> {
    let sql = format!(
        "INSERT INTO disputes (id, reservation_id, raised_by, admin_id, issue_type, \
         description, related_payment_id, resolution_status, reported_at, resolved_at, \
         refund_approved, is_active, record_version, owner_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, TRUE, 1, $3, $9, $9) \
         RETURNING {DISPUTE_COLUMNS}"
    );
    Ok(on_db!(db, pool => sqlx::query_as(&sql)
        .bind(&new.id)
        .bind(&new.reservation_id)
        .bind(&new.raised_by)
        .bind(&new.admin_id)
        .bind(&new.issue_type)
        .bind(&new.description)
        .bind(&new.related_payment_id)
        .bind(&new.resolution_status)
        .bind(new.now_ms)
        .fetch_one(pool)
        .await?))
}

/// A dispute by id.
pub async fn dispute(db: &Db, id: &str) -> Result<Option<DisputeRow>, StoreError> {
    let sql = format!("SELECT {DISPUTE_COLUMNS} FROM disputes WHERE id = $1");
    Ok(on_db!(db, pool => sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?))
}

/// The table dispute filters run over: `d.` the disputes, `r.` their reservations.
const DISPUTES_JOINED: &str = "disputes d JOIN reservations r ON r.id = d.reservation_id";

/// Disputes matching a filter over [`DISPUTES_JOINED`], newest first, and how many match.
pub async fn disputes(
    db: &Db,
    filter: &Filter,
    page: Page,
) -> Result<(Vec<DisputeRow>, i64), StoreError> {
    let total = count(db, DISPUTES_JOINED, filter).await?;
    let columns = qualified(DISPUTE_COLUMNS, "d");
    let rows = select_page!(
        db,
        columns,
        DISPUTES_JOINED,
        filter,
        "d.reported_at DESC, d.id",
        page
    );
    Ok((rows, total))
}

/// The changeable fields of a dispute, as they are to be.
#[derive(Debug, Clone)]
pub struct DisputeState {
    pub admin_id: Option<String>,
    pub issue_type: String,
    pub description: String,
    pub resolution_status: String,
    pub resolved_at: Option<i64>,
    pub refund_approved: Option<bool>,
}

/// Write a dispute's new state if it is still at `expected_version` (optimistic: `None` when
/// it changed meanwhile).
pub async fn set_dispute(
    db: &Db,
    id: &str,
    expected_version: i64,
    state: &DisputeState,
    now_ms: i64,
) -> Result<Option<DisputeRow>, StoreError> {
    // RETURNING: the answer is the state this update wrote, not a later one.
    let sql = format!(
        "UPDATE disputes SET admin_id = $3, issue_type = $4, description = $5, \
         resolution_status = $6, resolved_at = $7, refund_approved = $8, \
         record_version = record_version + 1, updated_at = $9 \
         WHERE id = $1 AND record_version = $2 RETURNING {DISPUTE_COLUMNS}"
    );
    Ok(on_db!(db, pool => sqlx::query_as(&sql)
        .bind(id)
        .bind(expected_version)
        .bind(&state.admin_id)
        .bind(&state.issue_type)
        .bind(&state.description)
        .bind(&state.resolution_status)
        .bind(state.resolved_at)
        .bind(state.refund_approved)
        .bind(now_ms)
        .fetch_optional(pool)
        .await?))
}

// ---------------------------------------------------------------------------------------------
// Payment customers and methods

/// A user's customer at a gateway, as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentCustomerRow {
    pub id: String,
    pub user_id: String,
    pub customer_id: String,
    pub platform: String,
    pub is_active: bool,
    pub record_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const CUSTOMER_COLUMNS: &str =
    "id, user_id, customer_id, platform, is_active, record_version, created_at, updated_at";

/// Record a user's gateway customer unless the user has one on that platform already (the
/// first one stays: a gateway gives a user one customer).
pub async fn ensure_customer(
    db: &Db,
    user_id: &str,
    platform: &str,
    customer_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    on_db!(db, pool => {
        sqlx::query(
            "INSERT INTO payment_customers (id, user_id, customer_id, platform, is_active, \
             record_version, created_at, updated_at) VALUES ($1, $2, $3, $4, TRUE, 1, $5, $5) \
             ON CONFLICT (user_id, platform) DO NOTHING")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(user_id)
            .bind(customer_id)
            .bind(platform)
            .bind(now_ms)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// A user's active customer on a platform.
pub async fn customer_of(
    db: &Db,
    user_id: &str,
    platform: &str,
) -> Result<Option<PaymentCustomerRow>, StoreError> {
    let sql = format!(
        "SELECT {CUSTOMER_COLUMNS} FROM payment_customers \
         WHERE user_id = $1 AND platform = $2 AND is_active = TRUE"
    );
    Ok(on_db!(db, pool => sqlx::query_as(&sql)
        .bind(user_id)
        .bind(platform)
        .fetch_optional(pool)
        .await?))
}

/// A user's active customers on any platform, oldest first.
pub async fn customers_of(db: &Db, user_id: &str) -> Result<Vec<PaymentCustomerRow>, StoreError> {
    let sql = format!(
        "SELECT {CUSTOMER_COLUMNS} FROM payment_customers \
         WHERE user_id = $1 AND is_active = TRUE ORDER BY created_at, id LIMIT 100"
    );
    Ok(on_db!(db, pool => sqlx::query_as(&sql).bind(user_id).fetch_all(pool).await?))
}

/// Customers matching a filter, newest first, and how many match.
pub async fn customers(
    db: &Db,
    filter: &Filter,
    page: Page,
) -> Result<(Vec<PaymentCustomerRow>, i64), StoreError> {
    let total = count(db, "payment_customers", filter).await?;
    let rows = select_page!(
        db,
        CUSTOMER_COLUMNS,
        "payment_customers",
        filter,
        "created_at DESC, id",
        page
    );
    Ok((rows, total))
}

/// A user's payment method at a gateway, as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentMethodRow {
    pub id: String,
    pub user_id: String,
    pub payment_method_id: String,
    pub customer_id: String,
    pub card_holder_name: Option<String>,
    pub card_holder_zip: Option<String>,
    pub platform: String,
    /// JSON text: brand, last four digits and expiry only (see [`card_summary`]).
    pub card_info: String,
    pub is_active: bool,
    pub record_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const METHOD_COLUMNS: &str = "id, user_id, payment_method_id, customer_id, card_holder_name, \
    card_holder_zip, platform, card_info, is_active, record_version, created_at, updated_at";

/// The keys of a card that may be stored and shown; everything else is dropped.
const CARD_KEYS: [&str; 4] = ["brand", "last4", "expMonth", "expYear"];

/// The part of a card description that may be stored and shown: `brand`, `last4` (four
/// digits), `expMonth`, `expYear`. Anything else (a number, a CVC, whatever a gateway adds)
/// is dropped, so no card number can reach the table or a response.
pub fn card_summary(card: &Value) -> Value {
    let mut kept = Map::new();
    for key in CARD_KEYS {
        let Some(value) = card.get(key) else { continue };
        let fits = match key {
            "brand" => value.as_str().is_some_and(|b| {
                !b.is_empty() && b.len() <= 32 && !b.bytes().any(|c| c.is_ascii_digit())
            }),
            "last4" => value
                .as_str()
                .is_some_and(|d| d.len() == 4 && d.bytes().all(|c| c.is_ascii_digit())),
            _ => value.as_u64().is_some_and(|n| n <= 9999),
        };
        if fits {
            kept.insert(key.to_owned(), value.clone());
        }
    }
    Value::Object(kept)
}

/// Record a user's payment method, or refresh it (customer, card, active again) when the
/// user has it on that platform already.
pub async fn save_method(
    db: &Db,
    user_id: &str,
    platform: &str,
    customer_id: &str,
    payment_method_id: &str,
    card_info: &Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    let card = card_summary(card_info).to_string();
    on_db!(db, pool => {
        sqlx::query(
            "INSERT INTO payment_methods (id, user_id, payment_method_id, customer_id, platform, \
             card_info, is_active, record_version, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, TRUE, 1, $7, $7) \
             ON CONFLICT (user_id, platform, payment_method_id) DO UPDATE SET \
             customer_id = excluded.customer_id, card_info = excluded.card_info, \
             is_active = TRUE, record_version = payment_methods.record_version + 1, \
             updated_at = excluded.updated_at")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(user_id)
            .bind(payment_method_id)
            .bind(customer_id)
            .bind(platform)
            .bind(card)
            .bind(now_ms)
            .execute(pool)
            .await?;
    });
    Ok(())
}

/// Payment methods matching a filter, newest first, and how many match.
pub async fn methods(
    db: &Db,
    filter: &Filter,
    page: Page,
) -> Result<(Vec<PaymentMethodRow>, i64), StoreError> {
    let total = count(db, "payment_methods", filter).await?;
    let rows = select_page!(
        db,
        METHOD_COLUMNS,
        "payment_methods",
        filter,
        "created_at DESC, id",
        page
    );
    Ok((rows, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_card_summary_keeps_brand_last_four_and_expiry_only() {
        let card = json!({
            "brand": "visa", "last4": "4242", "expMonth": 12, "expYear": 2040,
            "number": "4242424242424242", "cvc": "123", "fingerprint": "x"
        });
        assert_eq!(
            card_summary(&card),
            json!({"brand": "visa", "last4": "4242", "expMonth": 12, "expYear": 2040})
        );
        // A malformed field is dropped rather than stored as sent.
        let odd =
            json!({"brand": "4242424242424242", "last4": "4242424242424242", "expMonth": "12"});
        assert_eq!(card_summary(&odd), json!({}));
        assert_eq!(card_summary(&json!("4242424242424242")), json!({}));
    }

    #[test]
    fn qualified_columns_carry_the_alias() {
        assert_eq!(qualified("a, b,c", "p"), "p.a, p.b, p.c");
    }
}
