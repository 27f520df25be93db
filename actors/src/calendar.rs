//! The calendar entity: one per listing. It owns the listing record, its days (availability,
//! price override, minimum stay, blocks) and its reservations, so every change that could
//! double-book a night is serialised in one place. A reservation holds every night from
//! check-in up to check-out in one step, or fails as a whole with nothing held; cancel,
//! decline and delete release the nights. The store's overlap fence stands behind this.
//!
//! The payment of a reservation is a saga across this actor, the guest's wallet (or the card
//! gateway) and back: the actor records each step and answers what the caller must do next
//! ([`Next`]): capture once the stay is confirmed and the money authorized, void once the
//! stay is released with money still authorized.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::entity::{Entity, Outcome};
use crate::money::Money;

/// The most nights one reservation may span.
pub const STAY_NIGHTS_MAX: i64 = 365;

/// Who asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub user_id: String,
    pub admin: bool,
}

/// A listing, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    pub id: String,
    pub host_id: String,
    pub title: String,
    pub amenity_ids: Vec<String>,
    pub main_photo: Option<String>,
    pub photos: Vec<String>,
    pub address: String,
    /// Per night, in the listing's currency.
    pub price_per_night: Money,
    pub description: String,
    pub property_type: String,
    pub location: Value,
    pub max_stay: Option<i64>,
    pub min_stay: Option<i64>,
    pub seasonal_pricing: Option<Value>,
    pub approval_type: ApprovalType,
    pub booking_policies: Option<Value>,
    pub cancellation_policy: Option<Value>,
    pub languages_supported: Vec<String>,
    pub house_rules: Option<String>,
    pub is_published: bool,
    pub city_tax_percent: Option<Decimal>,
    pub is_active: bool,
    pub record_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// How a listing takes reservations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalType {
    /// Confirmed as soon as it is paid.
    Instant,
    /// Waits for the host.
    Manual,
}

impl ApprovalType {
    pub const ALL: [&'static str; 2] = ["instant", "manual"];

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "instant" => Some(ApprovalType::Instant),
            "manual" => Some(ApprovalType::Manual),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalType::Instant => "instant",
            ApprovalType::Manual => "manual",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Changes to a listing; `None` leaves a field as it is. `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListingChanges {
    pub title: Option<String>,
    pub amenity_ids: Option<Vec<String>>,
    pub main_photo: Option<Option<String>>,
    pub photos: Option<Vec<String>>,
    pub address: Option<String>,
    pub price_per_night: Option<Money>,
    pub description: Option<String>,
    pub property_type: Option<String>,
    pub location: Option<Value>,
    pub max_stay: Option<Option<i64>>,
    pub min_stay: Option<Option<i64>>,
    pub seasonal_pricing: Option<Option<Value>>,
    pub approval_type: Option<ApprovalType>,
    pub booking_policies: Option<Option<Value>>,
    pub cancellation_policy: Option<Option<Value>>,
    pub languages_supported: Option<Vec<String>>,
    pub house_rules: Option<Option<String>>,
    pub is_published: Option<bool>,
    pub city_tax_percent: Option<Option<Decimal>>,
}

/// One listing on one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Day {
    pub id: String,
    pub listing_id: String,
    pub date: NaiveDate,
    /// Replaces the listing's nightly price for this night.
    pub price_override: Option<Money>,
    /// The shortest stay that may start on this day.
    pub min_stay: Option<i64>,
    pub booked_by: Option<String>,
    /// The reservation holding this night.
    pub reservation_id: Option<String>,
    pub ical_url: Option<String>,
    pub external_calendar_ids: Vec<String>,
    pub is_available: bool,
    pub is_active: bool,
    pub record_version: i64,
    pub owner_id: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a host sets on a day.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DayChanges {
    pub price_override: Option<Option<Money>>,
    pub min_stay: Option<Option<i64>>,
    pub booked_by: Option<Option<String>>,
    pub ical_url: Option<Option<String>>,
    pub external_calendar_ids: Option<Vec<String>>,
    pub is_available: Option<bool>,
}

/// A reservation's booking status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BookingStatus {
    Pending,
    Confirmed,
    Complete,
    Cancelled,
    Declined,
}

impl BookingStatus {
    pub const ALL: [&'static str; 5] =
        ["pending", "confirmed", "complete", "cancelled", "declined"];

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw.to_ascii_lowercase().as_str() {
            "pending" => BookingStatus::Pending,
            "confirmed" => BookingStatus::Confirmed,
            "complete" => BookingStatus::Complete,
            "cancelled" => BookingStatus::Cancelled,
            "declined" => BookingStatus::Declined,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        BookingStatus::ALL[self as usize]
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Pending and confirmed stays hold their nights.
    pub fn holds_nights(self) -> bool {
        matches!(self, BookingStatus::Pending | BookingStatus::Confirmed)
    }
}

/// Where a reservation's payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentConfirmation {
    /// Not started.
    Pending,
    /// Started or authorized: money is being held, nothing is charged yet.
    Processing,
    /// Captured.
    Paid,
    /// Failed, voided or never taken.
    Canceled,
}

impl PaymentConfirmation {
    pub const ALL: [&'static str; 4] = ["pending", "processing", "paid", "canceled"];

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw.to_ascii_lowercase().as_str() {
            "pending" => PaymentConfirmation::Pending,
            "processing" => PaymentConfirmation::Processing,
            "paid" => PaymentConfirmation::Paid,
            "canceled" => PaymentConfirmation::Canceled,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        PaymentConfirmation::ALL[self as usize]
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// How a reservation is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentMethod {
    /// A hold on the guest's wallet, captured to the host's.
    Wallet,
    /// An authorization at the card gateway, captured later.
    Card,
}

impl PaymentMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Wallet => "wallet",
            PaymentMethod::Card => "card",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "wallet" => Some(PaymentMethod::Wallet),
            "card" => Some(PaymentMethod::Card),
            _ => None,
        }
    }
}

/// A reservation, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: String,
    pub listing_id: String,
    pub host_id: String,
    pub guest_id: String,
    pub approval_type: ApprovalType,
    pub booking_status: BookingStatus,
    pub check_in: NaiveDate,
    pub check_out: NaiveDate,
    pub currency_total: Money,
    pub guest_count: i64,
    pub ical_export_url: Option<String>,
    pub ical_import_source: Option<String>,
    pub dispute_status: String,
    pub booking_policies_snapshot: Value,
    pub cancellation_policy_snapshot: Value,
    pub payment_confirmation: PaymentConfirmation,
    pub payment_method: Option<PaymentMethod>,
    /// The wallet hold id or the gateway payment id, once authorized.
    pub payment_ref: Option<String>,
    pub is_active: bool,
    pub record_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Reservation {
    pub fn holds_nights(&self) -> bool {
        self.is_active && self.booking_status.holds_nights()
    }

    pub fn nights(&self) -> impl Iterator<Item = NaiveDate> {
        let check_out = self.check_out;
        self.check_in
            .iter_days()
            .take_while(move |d| *d < check_out)
    }

    fn is_party(&self, caller: &Caller) -> bool {
        caller.admin || caller.user_id == self.guest_id || caller.user_id == self.host_id
    }
}

/// A new reservation, checked by the caller for shape; the actor checks it against the
/// listing and the calendar.
#[derive(Debug, Clone)]
pub struct NewReservation {
    pub id: String,
    pub guest_id: String,
    pub host_id: String,
    pub approval_type: ApprovalType,
    pub check_in: NaiveDate,
    pub check_out: NaiveDate,
    pub total_price: Money,
    pub guest_count: i64,
    pub ical_export_url: Option<String>,
    pub ical_import_source: Option<String>,
    pub booking_policies_snapshot: Value,
    pub cancellation_policy_snapshot: Value,
    pub today: NaiveDate,
    pub now_ms: i64,
}

/// Changes a party makes to a reservation.
#[derive(Debug, Clone, Default)]
pub struct ReservationChanges {
    pub booking_status: Option<BookingStatus>,
    pub ical_export_url: Option<Option<String>>,
    pub ical_import_source: Option<Option<String>>,
    pub dispute_status: Option<String>,
}

/// The payment life cycle of one reservation (`Sys_reservationPayment`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentTicket {
    pub id: String,
    pub owner_id: String,
    pub order_id: String,
    /// The wallet hold id or the gateway's payment id.
    pub payment_id: String,
    /// The wallet's or the gateway's word for it (`held`, `requires_capture`, `succeeded`...).
    pub payment_status: String,
    /// The node's own word: `started`, `authorized`, `paid`, `failed`, `canceled`.
    pub status_literal: String,
    pub redirect_url: Option<String>,
    pub is_active: bool,
    pub record_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An append-only payment record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRecord {
    pub id: String,
    pub reservation_id: String,
    pub payment_intent_id: String,
    pub amount_paid: Money,
    pub city_tax: Option<Money>,
    pub payout_amount_host: Option<Money>,
    /// `paid` or `failed`.
    pub payment_status: String,
    pub owner_id: String,
    pub created_at: i64,
}

/// A payment step the caller reports.
#[derive(Debug, Clone)]
pub enum PaymentStep {
    /// The money is authorized (held): `payment_ref` is the hold or gateway payment id.
    Authorized {
        payment_ref: String,
        payment_status: String,
    },
    /// The authorization or the capture failed: the stay is cancelled and releases its nights.
    Failed {
        payment_ref: Option<String>,
        payment_status: String,
    },
    /// Captured: the host has the money.
    Captured { payment_status: String },
    /// The authorization was released.
    Voided { payment_status: String },
}

/// Commands to a calendar.
#[derive(Debug)]
pub enum Command {
    CreateListing(Box<Listing>),
    UpdateListing {
        caller: Caller,
        changes: Box<ListingChanges>,
        now_ms: i64,
    },
    DeleteListing {
        caller: Caller,
        now_ms: i64,
    },
    CreateDay {
        caller: Caller,
        day: Box<Day>,
    },
    UpdateDay {
        caller: Caller,
        day_id: String,
        changes: DayChanges,
        now_ms: i64,
    },
    DeleteDay {
        caller: Caller,
        day_id: String,
        now_ms: i64,
    },
    Reserve(Box<NewReservation>),
    UpdateReservation {
        caller: Caller,
        reservation_id: String,
        changes: ReservationChanges,
        today: NaiveDate,
        now_ms: i64,
    },
    /// Soft-delete: cancels a stay that still holds nights.
    DeleteReservation {
        caller: Caller,
        reservation_id: String,
        now_ms: i64,
    },
    /// The guest starts paying.
    BeginPayment {
        caller: Caller,
        reservation_id: String,
        method: PaymentMethod,
        ticket_id: String,
        redirect_url: Option<String>,
        now_ms: i64,
    },
    /// A payment step happened.
    Payment {
        reservation_id: String,
        step: PaymentStep,
        now_ms: i64,
    },
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// No such listing (or it was deleted).
    NoListing,
    ListingExists,
    NoDay,
    NoReservation,
    /// The caller may not do this.
    Forbidden(String),
    /// The listing takes no reservations (unpublished).
    NotBookable,
    /// A request that disagrees with the listing (host, approval type, currency, price).
    Mismatch(String),
    /// The stay breaks a listing rule (dates, minimum or maximum stay).
    StayRule(String),
    /// Some nights are taken or blocked.
    DatesUnavailable(Vec<NaiveDate>),
    /// A day entry exists for this date.
    DayExists(String),
    /// The night is held by a reservation.
    NightBooked(NaiveDate),
    /// The listing has stays that hold nights.
    HasReservations,
    /// Not allowed from the current state.
    InvalidTransition(String),
}

/// What the caller must do next for the payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Next {
    Nothing,
    /// Authorize the total through this method (after `BeginPayment`).
    Authorize,
    /// Capture the authorization `payment_ref` to the host.
    Capture {
        method: PaymentMethod,
        payment_ref: String,
    },
    /// Release the authorization `payment_ref`.
    Void {
        method: PaymentMethod,
        payment_ref: String,
    },
}

/// A calendar's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Listing(Box<Listing>),
    Day(Box<Day>),
    Reservation {
        reservation: Box<Reservation>,
        next: Next,
    },
    Refused(Refusal),
}

/// Durable changes.
#[derive(Debug, Clone)]
pub enum Event {
    Listing(Box<Listing>),
    Day(Box<Day>),
    Reservation(Box<Reservation>),
    Ticket(Box<PaymentTicket>),
    Record(Box<PaymentRecord>),
}

/// One listing's calendar.
#[derive(Debug, Default)]
pub struct Calendar {
    pub listing: Option<Listing>,
    pub days: BTreeMap<NaiveDate, Day>,
    pub reservations: HashMap<String, Reservation>,
    pub tickets: HashMap<String, PaymentTicket>,
}

fn refuse(refusal: Refusal) -> Outcome<Event, Reply> {
    Outcome::reply(Reply::Refused(refusal))
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Calendar {
    /// A calendar from stored state; `reservations` need only be those that can still change.
    pub fn new(
        listing: Option<Listing>,
        days: Vec<Day>,
        reservations: Vec<Reservation>,
        tickets: Vec<PaymentTicket>,
    ) -> Self {
        Calendar {
            listing,
            days: days.into_iter().map(|d| (d.date, d)).collect(),
            reservations: reservations
                .into_iter()
                .map(|r| (r.id.clone(), r))
                .collect(),
            tickets: tickets
                .into_iter()
                .map(|t| (t.order_id.clone(), t))
                .collect(),
        }
    }

    fn live_listing(&self) -> Option<&Listing> {
        self.listing.as_ref().filter(|l| l.is_active)
    }

    fn may_manage(listing: &Listing, caller: &Caller) -> bool {
        caller.admin || caller.user_id == listing.host_id
    }

    fn create_listing(&mut self, listing: Listing) -> Outcome<Event, Reply> {
        if self.listing.is_some() {
            return refuse(Refusal::ListingExists);
        }
        self.listing = Some(listing.clone());
        Outcome {
            events: vec![Event::Listing(Box::new(listing.clone()))],
            reply: Reply::Listing(Box::new(listing)),
        }
    }

    fn update_listing(
        &mut self,
        caller: &Caller,
        c: ListingChanges,
        now_ms: i64,
    ) -> Outcome<Event, Reply> {
        let Some(listing) = self.live_listing() else {
            return refuse(Refusal::NoListing);
        };
        if !Self::may_manage(listing, caller) {
            return refuse(Refusal::Forbidden(
                "only the listing's host or an admin may change it".into(),
            ));
        }
        let mut next = listing.clone();
        if let Some(price) = c.price_per_night {
            let recurrency = price.currency() != next.price_per_night.currency();
            let priced_days = self
                .days
                .values()
                .any(|d| d.is_active && d.price_override.is_some());
            let held = self.reservations.values().any(Reservation::holds_nights);
            if recurrency && (priced_days || held) {
                return refuse(Refusal::Mismatch(
                    "currency: a listing with price overrides or reservations keeps its currency"
                        .into(),
                ));
            }
            next.price_per_night = price;
        }
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(value) = c.$field { next.$field = value; }
            )*};
        }
        set!(
            title,
            amenity_ids,
            main_photo,
            photos,
            address,
            description,
            property_type,
            location,
            max_stay,
            min_stay,
            seasonal_pricing,
            approval_type,
            booking_policies,
            cancellation_policy,
            languages_supported,
            house_rules,
            is_published,
            city_tax_percent
        );
        if let (Some(min), Some(max)) = (next.min_stay, next.max_stay) {
            if min > max {
                return refuse(Refusal::StayRule(
                    "minStay is longer than maxStay".to_owned(),
                ));
            }
        }
        next.record_version += 1;
        next.updated_at = now_ms;
        self.listing = Some(next.clone());
        Outcome {
            events: vec![Event::Listing(Box::new(next.clone()))],
            reply: Reply::Listing(Box::new(next)),
        }
    }

    fn delete_listing(&mut self, caller: &Caller, now_ms: i64) -> Outcome<Event, Reply> {
        let Some(listing) = self.live_listing() else {
            return refuse(Refusal::NoListing);
        };
        if !Self::may_manage(listing, caller) {
            return refuse(Refusal::Forbidden(
                "only the listing's host or an admin may delete it".into(),
            ));
        }
        if self.reservations.values().any(Reservation::holds_nights) {
            return refuse(Refusal::HasReservations);
        }
        let mut next = listing.clone();
        next.is_active = false;
        next.record_version += 1;
        next.updated_at = now_ms;
        self.listing = Some(next.clone());
        Outcome {
            events: vec![Event::Listing(Box::new(next.clone()))],
            reply: Reply::Listing(Box::new(next)),
        }
    }

    fn create_day(&mut self, caller: &Caller, mut day: Day) -> Outcome<Event, Reply> {
        let Some(listing) = self.live_listing() else {
            return refuse(Refusal::NoListing);
        };
        if !Self::may_manage(listing, caller) {
            return refuse(Refusal::Forbidden(
                "only the listing's host or an admin may change its calendar".into(),
            ));
        }
        if let Some(existing) = self.days.get(&day.date) {
            if existing.is_active {
                return refuse(Refusal::DayExists(existing.id.clone()));
            }
            // One row per listing and day: a deleted entry comes back under its id.
            day.id = existing.id.clone();
            day.created_at = existing.created_at;
            day.record_version = existing.record_version + 1;
        }
        if let Some(money) = day.price_override {
            if money.currency() != listing.price_per_night.currency() {
                return refuse(Refusal::Mismatch(
                    "priceOverride is in the listing's currency".into(),
                ));
            }
        }
        day.reservation_id = None;
        self.days.insert(day.date, day.clone());
        Outcome {
            events: vec![Event::Day(Box::new(day.clone()))],
            reply: Reply::Day(Box::new(day)),
        }
    }

    fn day_by_id(&self, day_id: &str) -> Option<&Day> {
        self.days.values().find(|d| d.id == day_id && d.is_active)
    }

    fn update_day(
        &mut self,
        caller: &Caller,
        day_id: &str,
        c: DayChanges,
        now_ms: i64,
    ) -> Outcome<Event, Reply> {
        let Some(listing) = self.live_listing() else {
            return refuse(Refusal::NoDay);
        };
        let may = Self::may_manage(listing, caller);
        let Some(day) = self.day_by_id(day_id) else {
            return refuse(Refusal::NoDay);
        };
        if !may {
            return refuse(Refusal::Forbidden(
                "only the listing's host or an admin may change its calendar".into(),
            ));
        }
        let booked = day.reservation_id.is_some();
        if booked && (c.is_available.is_some() || c.booked_by.is_some()) {
            return refuse(Refusal::NightBooked(day.date));
        }
        let mut next = day.clone();
        if let Some(Some(money)) = c.price_override {
            if money.currency() != listing.price_per_night.currency() {
                return refuse(Refusal::Mismatch(
                    "priceOverride is in the listing's currency".into(),
                ));
            }
        }
        if let Some(v) = c.price_override {
            next.price_override = v;
        }
        if let Some(v) = c.min_stay {
            next.min_stay = v;
        }
        if let Some(v) = c.booked_by {
            next.booked_by = v;
        }
        if let Some(v) = c.ical_url {
            next.ical_url = v;
        }
        if let Some(v) = c.external_calendar_ids {
            next.external_calendar_ids = v;
        }
        if let Some(v) = c.is_available {
            next.is_available = v;
        }
        next.record_version += 1;
        next.updated_at = now_ms;
        self.days.insert(next.date, next.clone());
        Outcome {
            events: vec![Event::Day(Box::new(next.clone()))],
            reply: Reply::Day(Box::new(next)),
        }
    }

    fn delete_day(&mut self, caller: &Caller, day_id: &str, now_ms: i64) -> Outcome<Event, Reply> {
        let Some(listing) = self.live_listing() else {
            return refuse(Refusal::NoDay);
        };
        let may = Self::may_manage(listing, caller);
        let Some(day) = self.day_by_id(day_id) else {
            return refuse(Refusal::NoDay);
        };
        if !may {
            return refuse(Refusal::Forbidden(
                "only the listing's host or an admin may change its calendar".into(),
            ));
        }
        if day.reservation_id.is_some() {
            return refuse(Refusal::NightBooked(day.date));
        }
        let mut next = day.clone();
        next.is_active = false;
        next.record_version += 1;
        next.updated_at = now_ms;
        self.days.insert(next.date, next.clone());
        Outcome {
            events: vec![Event::Day(Box::new(next.clone()))],
            reply: Reply::Day(Box::new(next)),
        }
    }

    /// The price of one night: the day's override, else the listing's price.
    fn night_price(&self, listing: &Listing, night: NaiveDate) -> i64 {
        self.days
            .get(&night)
            .filter(|d| d.is_active)
            .and_then(|d| d.price_override)
            .unwrap_or(listing.price_per_night)
            .minor()
    }

    /// The total of a stay: its nights plus the listing's city tax, rounded half to even to
    /// the currency's minor unit.
    pub fn stay_total(&self, listing: &Listing, check_in: NaiveDate, check_out: NaiveDate) -> i64 {
        let nights: i64 = check_in
            .iter_days()
            .take_while(|d| *d < check_out)
            .map(|night| self.night_price(listing, night))
            .sum();
        let tax =
            listing
                .city_tax_percent
                .map(|pct| {
                    let tax = Decimal::from(nights) * pct / Decimal::from(100);
                    rust_decimal::prelude::ToPrimitive::to_i64(&tax.round_dp_with_strategy(
                        0,
                        rust_decimal::RoundingStrategy::MidpointNearestEven,
                    ))
                    .unwrap_or(0)
                })
                .unwrap_or(0);
        nights + tax
    }

    fn reserve(&mut self, r: NewReservation) -> Outcome<Event, Reply> {
        let Some(listing) = self.live_listing().cloned() else {
            return refuse(Refusal::NoListing);
        };
        if !listing.is_published {
            return refuse(Refusal::NotBookable);
        }
        if r.guest_id == listing.host_id {
            return refuse(Refusal::Forbidden(
                "a host does not book their own listing".into(),
            ));
        }
        if r.host_id != listing.host_id {
            return refuse(Refusal::Mismatch("hostId is not the listing's host".into()));
        }
        if r.approval_type != listing.approval_type {
            return refuse(Refusal::Mismatch(format!(
                "approvalType: the listing is {}",
                listing.approval_type.as_str()
            )));
        }
        if r.total_price.currency() != listing.price_per_night.currency() {
            return refuse(Refusal::Mismatch(format!(
                "currency: the listing is priced in {}",
                listing.price_per_night.currency()
            )));
        }
        if r.check_out <= r.check_in {
            return refuse(Refusal::StayRule("checkOut must be after checkIn".into()));
        }
        if r.check_in < r.today {
            return refuse(Refusal::StayRule("checkIn is in the past".into()));
        }
        let nights = (r.check_out - r.check_in).num_days();
        if nights > STAY_NIGHTS_MAX {
            return refuse(Refusal::StayRule(format!(
                "a stay is at most {STAY_NIGHTS_MAX} nights"
            )));
        }
        let first_day_min = self
            .days
            .get(&r.check_in)
            .filter(|d| d.is_active)
            .and_then(|d| d.min_stay);
        if let Some(min) = first_day_min.or(listing.min_stay) {
            if nights < min {
                return refuse(Refusal::StayRule(format!(
                    "the stay is {nights} nights; at least {min} from this check-in"
                )));
            }
        }
        if let Some(max) = listing.max_stay {
            if nights > max {
                return refuse(Refusal::StayRule(format!(
                    "the stay is {nights} nights; at most {max}"
                )));
            }
        }
        let taken: Vec<NaiveDate> = r
            .check_in
            .iter_days()
            .take_while(|d| *d < r.check_out)
            .filter(|night| {
                self.days
                    .get(night)
                    .is_some_and(|d| d.is_active && (!d.is_available || d.reservation_id.is_some()))
            })
            .collect();
        if !taken.is_empty() {
            return refuse(Refusal::DatesUnavailable(taken));
        }
        // The actor's nights are the truth; this is a second look at the stays themselves.
        if let Some(clash) = self.reservations.values().find(|other| {
            other.holds_nights() && other.check_in < r.check_out && r.check_in < other.check_out
        }) {
            let nights = clash
                .nights()
                .filter(|n| *n >= r.check_in && *n < r.check_out)
                .collect();
            return refuse(Refusal::DatesUnavailable(nights));
        }
        let total = self.stay_total(&listing, r.check_in, r.check_out);
        if total != r.total_price.minor() {
            return refuse(Refusal::Mismatch(format!(
                "totalPrice: the stay costs {}",
                crate::money::decimal(total, r.total_price.currency())
            )));
        }
        let reservation = Reservation {
            id: r.id,
            listing_id: listing.id.clone(),
            host_id: listing.host_id.clone(),
            guest_id: r.guest_id,
            approval_type: listing.approval_type,
            booking_status: BookingStatus::Pending,
            check_in: r.check_in,
            check_out: r.check_out,
            currency_total: r.total_price,
            guest_count: r.guest_count,
            ical_export_url: r.ical_export_url,
            ical_import_source: r.ical_import_source,
            dispute_status: "none".to_owned(),
            booking_policies_snapshot: r.booking_policies_snapshot,
            cancellation_policy_snapshot: r.cancellation_policy_snapshot,
            payment_confirmation: PaymentConfirmation::Pending,
            payment_method: None,
            payment_ref: None,
            is_active: true,
            record_version: 1,
            created_at: r.now_ms,
            updated_at: r.now_ms,
        };
        let mut events = vec![Event::Reservation(Box::new(reservation.clone()))];
        events.extend(self.hold_nights(&reservation, r.now_ms));
        self.reservations
            .insert(reservation.id.clone(), reservation.clone());
        Outcome {
            events,
            reply: Reply::Reservation {
                reservation: Box::new(reservation),
                next: Next::Nothing,
            },
        }
    }

    /// Mark every night of the stay booked, creating day entries where there are none.
    fn hold_nights(&mut self, reservation: &Reservation, now_ms: i64) -> Vec<Event> {
        let mut events = Vec::new();
        for night in reservation.nights() {
            let day = match self.days.get(&night) {
                Some(existing) => {
                    let mut day = existing.clone();
                    day.record_version += 1;
                    day.updated_at = now_ms;
                    day.is_active = true;
                    day
                }
                None => Day {
                    id: new_id(),
                    listing_id: reservation.listing_id.clone(),
                    date: night,
                    price_override: None,
                    min_stay: None,
                    booked_by: None,
                    reservation_id: None,
                    ical_url: None,
                    external_calendar_ids: Vec::new(),
                    is_available: true,
                    is_active: true,
                    record_version: 1,
                    owner_id: reservation.host_id.clone(),
                    created_at: now_ms,
                    updated_at: now_ms,
                },
            };
            let mut day = day;
            day.booked_by = Some(reservation.guest_id.clone());
            day.reservation_id = Some(reservation.id.clone());
            day.is_available = false;
            self.days.insert(night, day.clone());
            events.push(Event::Day(Box::new(day)));
        }
        events
    }

    /// Give the stay's nights back.
    fn release_nights(&mut self, reservation: &Reservation, now_ms: i64) -> Vec<Event> {
        let mut events = Vec::new();
        for night in reservation.nights() {
            let Some(day) = self.days.get_mut(&night) else {
                continue;
            };
            if day.reservation_id.as_deref() != Some(reservation.id.as_str()) {
                continue;
            }
            day.reservation_id = None;
            day.booked_by = None;
            day.is_available = true;
            day.record_version += 1;
            day.updated_at = now_ms;
            events.push(Event::Day(Box::new(day.clone())));
        }
        events
    }

    /// Store a reservation's new state, releasing its nights if it stopped holding them, and
    /// answer with what the payment needs next.
    fn save(
        &mut self,
        before: &Reservation,
        mut next: Reservation,
        mut events: Vec<Event>,
        now_ms: i64,
    ) -> Outcome<Event, Reply> {
        next.record_version += 1;
        next.updated_at = now_ms;
        // A completed stay keeps its nights: they were used.
        if before.holds_nights()
            && !next.holds_nights()
            && next.booking_status != BookingStatus::Complete
        {
            events.extend(self.release_nights(&next, now_ms));
        }
        let action = Self::next_payment_action(&next);
        events.insert(0, Event::Reservation(Box::new(next.clone())));
        self.reservations.insert(next.id.clone(), next.clone());
        Outcome {
            events,
            reply: Reply::Reservation {
                reservation: Box::new(next),
                next: action,
            },
        }
    }

    /// Capture once confirmed and authorized; void once released and still authorized.
    fn next_payment_action(r: &Reservation) -> Next {
        let (Some(method), Some(payment_ref), PaymentConfirmation::Processing) = (
            r.payment_method,
            r.payment_ref.clone(),
            r.payment_confirmation,
        ) else {
            return Next::Nothing;
        };
        if r.booking_status == BookingStatus::Confirmed && r.is_active {
            Next::Capture {
                method,
                payment_ref,
            }
        } else if !r.holds_nights() {
            Next::Void {
                method,
                payment_ref,
            }
        } else {
            Next::Nothing
        }
    }

    fn update_reservation(
        &mut self,
        caller: &Caller,
        id: &str,
        c: ReservationChanges,
        today: NaiveDate,
        now_ms: i64,
    ) -> Outcome<Event, Reply> {
        let Some(before) = self.reservations.get(id).filter(|r| r.is_active).cloned() else {
            return refuse(Refusal::NoReservation);
        };
        if !before.is_party(caller) {
            return refuse(Refusal::NoReservation);
        }
        let mut next = before.clone();
        if let Some(to) = c.booking_status.filter(|to| *to != before.booking_status) {
            if let Err(refusal) = Self::may_move(&before, caller, to, today) {
                return refuse(refusal);
            }
            next.booking_status = to;
            if to == BookingStatus::Confirmed && before.approval_type == ApprovalType::Instant {
                return refuse(Refusal::InvalidTransition(
                    "an instant booking is confirmed by its payment".into(),
                ));
            }
            if !to.holds_nights() && next.payment_confirmation == PaymentConfirmation::Pending {
                next.payment_confirmation = PaymentConfirmation::Canceled;
            }
        }
        if let Some(v) = c.ical_export_url {
            next.ical_export_url = v;
        }
        if let Some(v) = c.ical_import_source {
            next.ical_import_source = v;
        }
        if let Some(v) = c.dispute_status {
            next.dispute_status = v;
        }
        self.save(&before, next, Vec::new(), now_ms)
    }

    /// Who may move a reservation where.
    fn may_move(
        r: &Reservation,
        caller: &Caller,
        to: BookingStatus,
        today: NaiveDate,
    ) -> Result<(), Refusal> {
        use BookingStatus::*;
        let host = caller.admin || caller.user_id == r.host_id;
        let transition = || {
            Refusal::InvalidTransition(format!(
                "a {} reservation cannot become {}",
                r.booking_status.as_str(),
                to.as_str()
            ))
        };
        match (r.booking_status, to) {
            (Pending, Confirmed) | (Pending, Declined) => {
                if host {
                    Ok(())
                } else {
                    Err(Refusal::Forbidden(format!(
                        "only the host or an admin may set {}",
                        to.as_str()
                    )))
                }
            }
            (Pending, Cancelled) | (Confirmed, Cancelled) => Ok(()),
            (Confirmed, Complete) => {
                if today >= r.check_out {
                    Ok(())
                } else {
                    Err(Refusal::InvalidTransition(
                        "a stay is complete only from its check-out date".into(),
                    ))
                }
            }
            _ => Err(transition()),
        }
    }

    fn delete_reservation(
        &mut self,
        caller: &Caller,
        id: &str,
        now_ms: i64,
    ) -> Outcome<Event, Reply> {
        let Some(before) = self.reservations.get(id).filter(|r| r.is_active).cloned() else {
            return refuse(Refusal::NoReservation);
        };
        if !before.is_party(caller) {
            return refuse(Refusal::NoReservation);
        }
        let mut next = before.clone();
        next.is_active = false;
        if before.booking_status.holds_nights() {
            next.booking_status = BookingStatus::Cancelled;
            if next.payment_confirmation == PaymentConfirmation::Pending {
                next.payment_confirmation = PaymentConfirmation::Canceled;
            }
        }
        self.save(&before, next, Vec::new(), now_ms)
    }

    fn begin_payment(
        &mut self,
        caller: &Caller,
        id: &str,
        method: PaymentMethod,
        ticket_id: String,
        redirect_url: Option<String>,
        now_ms: i64,
    ) -> Outcome<Event, Reply> {
        let Some(before) = self.reservations.get(id).filter(|r| r.is_active).cloned() else {
            return refuse(Refusal::NoReservation);
        };
        if !before.is_party(caller) {
            return refuse(Refusal::NoReservation);
        }
        if caller.user_id != before.guest_id {
            return refuse(Refusal::Forbidden("only the guest pays".into()));
        }
        if !before.holds_nights() || before.payment_confirmation != PaymentConfirmation::Pending {
            return refuse(Refusal::InvalidTransition(format!(
                "the payment of a {} reservation with payment {} cannot start",
                before.booking_status.as_str(),
                before.payment_confirmation.as_str()
            )));
        }
        let mut next = before.clone();
        next.payment_confirmation = PaymentConfirmation::Processing;
        next.payment_method = Some(method);
        let ticket = PaymentTicket {
            id: ticket_id,
            owner_id: before.guest_id.clone(),
            order_id: before.id.clone(),
            payment_id: String::new(),
            payment_status: "started".to_owned(),
            status_literal: "started".to_owned(),
            redirect_url,
            is_active: true,
            record_version: 1,
            created_at: now_ms,
            updated_at: now_ms,
        };
        self.tickets.insert(before.id.clone(), ticket.clone());
        let mut outcome = self.save(&before, next, vec![Event::Ticket(Box::new(ticket))], now_ms);
        if let Reply::Reservation { next, .. } = &mut outcome.reply {
            *next = Next::Authorize;
        }
        outcome
    }

    fn ticket_event(
        &mut self,
        order_id: &str,
        payment_id: Option<&str>,
        payment_status: &str,
        literal: &str,
        now_ms: i64,
    ) -> Option<Event> {
        let ticket = self.tickets.get_mut(order_id)?;
        if let Some(id) = payment_id {
            ticket.payment_id = id.to_owned();
        }
        ticket.payment_status = payment_status.to_owned();
        ticket.status_literal = literal.to_owned();
        ticket.record_version += 1;
        ticket.updated_at = now_ms;
        Some(Event::Ticket(Box::new(ticket.clone())))
    }

    fn record(&self, r: &Reservation, status: &str, now_ms: i64) -> Event {
        let listing = self.listing.as_ref();
        let tax = listing.and_then(|l| l.city_tax_percent).and_then(|pct| {
            // The tax inside the total: total - total / (1 + pct/100), to the minor unit.
            let total = Decimal::from(r.currency_total.minor());
            let base = total / (Decimal::ONE + pct / Decimal::from(100));
            let tax = (total - base)
                .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointNearestEven);
            Money::from_minor(
                rust_decimal::prelude::ToPrimitive::to_i64(&tax).unwrap_or(0),
                r.currency_total.currency(),
            )
        });
        Event::Record(Box::new(PaymentRecord {
            id: new_id(),
            reservation_id: r.id.clone(),
            payment_intent_id: r.payment_ref.clone().unwrap_or_default(),
            amount_paid: r.currency_total,
            city_tax: tax,
            payout_amount_host: (status == "paid").then_some(r.currency_total),
            payment_status: status.to_owned(),
            owner_id: r.guest_id.clone(),
            created_at: now_ms,
        }))
    }

    fn payment_step(&mut self, id: &str, step: PaymentStep, now_ms: i64) -> Outcome<Event, Reply> {
        let Some(before) = self.reservations.get(id).cloned() else {
            return refuse(Refusal::NoReservation);
        };
        let mut next = before.clone();
        let mut events = Vec::new();
        match step {
            PaymentStep::Authorized {
                payment_ref,
                payment_status,
            } => {
                if before.payment_confirmation != PaymentConfirmation::Processing
                    || before.payment_ref.is_some()
                {
                    return refuse(Refusal::InvalidTransition(
                        "no payment is waiting for an authorization".into(),
                    ));
                }
                next.payment_ref = Some(payment_ref.clone());
                if next.holds_nights() && next.approval_type == ApprovalType::Instant {
                    next.booking_status = BookingStatus::Confirmed;
                }
                events.extend(self.ticket_event(
                    id,
                    Some(&payment_ref),
                    &payment_status,
                    "authorized",
                    now_ms,
                ));
            }
            PaymentStep::Failed {
                payment_ref,
                payment_status,
            } => {
                if before.payment_confirmation != PaymentConfirmation::Processing {
                    return refuse(Refusal::InvalidTransition(
                        "no payment is in progress".into(),
                    ));
                }
                if payment_ref.is_some() {
                    next.payment_ref = payment_ref;
                }
                next.payment_confirmation = PaymentConfirmation::Canceled;
                if next.booking_status.holds_nights() {
                    next.booking_status = BookingStatus::Cancelled;
                }
                let payment_id = next.payment_ref.clone();
                events.extend(self.ticket_event(
                    id,
                    payment_id.as_deref(),
                    &payment_status,
                    "failed",
                    now_ms,
                ));
                events.push(self.record(&next, "failed", now_ms));
            }
            PaymentStep::Captured { payment_status } => {
                if before.payment_confirmation != PaymentConfirmation::Processing {
                    return refuse(Refusal::InvalidTransition(
                        "no authorized payment to capture".into(),
                    ));
                }
                next.payment_confirmation = PaymentConfirmation::Paid;
                events.extend(self.ticket_event(id, None, &payment_status, "paid", now_ms));
                events.push(self.record(&next, "paid", now_ms));
            }
            PaymentStep::Voided { payment_status } => {
                if before.payment_confirmation != PaymentConfirmation::Processing {
                    return refuse(Refusal::InvalidTransition(
                        "no authorized payment to void".into(),
                    ));
                }
                next.payment_confirmation = PaymentConfirmation::Canceled;
                events.extend(self.ticket_event(id, None, &payment_status, "canceled", now_ms));
            }
        }
        self.save(&before, next, events, now_ms)
    }
}

impl Entity for Calendar {
    const KIND: &'static str = "calendar";
    type Id = String;
    type Command = Command;
    type Reply = Reply;
    type Event = Event;
    /// Calendars receive nothing from other entities.
    type Effect = ();

    fn handle(&mut self, command: Command) -> Outcome<Event, Reply> {
        match command {
            Command::CreateListing(listing) => self.create_listing(*listing),
            Command::UpdateListing {
                caller,
                changes,
                now_ms,
            } => self.update_listing(&caller, *changes, now_ms),
            Command::DeleteListing { caller, now_ms } => self.delete_listing(&caller, now_ms),
            Command::CreateDay { caller, day } => self.create_day(&caller, *day),
            Command::UpdateDay {
                caller,
                day_id,
                changes,
                now_ms,
            } => self.update_day(&caller, &day_id, changes, now_ms),
            Command::DeleteDay {
                caller,
                day_id,
                now_ms,
            } => self.delete_day(&caller, &day_id, now_ms),
            Command::Reserve(new) => self.reserve(*new),
            Command::UpdateReservation {
                caller,
                reservation_id,
                changes,
                today,
                now_ms,
            } => self.update_reservation(&caller, &reservation_id, changes, today, now_ms),
            Command::DeleteReservation {
                caller,
                reservation_id,
                now_ms,
            } => self.delete_reservation(&caller, &reservation_id, now_ms),
            Command::BeginPayment {
                caller,
                reservation_id,
                method,
                ticket_id,
                redirect_url,
                now_ms,
            } => self.begin_payment(
                &caller,
                &reservation_id,
                method,
                ticket_id,
                redirect_url,
                now_ms,
            ),
            Command::Payment {
                reservation_id,
                step,
                now_ms,
            } => self.payment_step(&reservation_id, step, now_ms),
        }
    }

    fn apply(&mut self, _effect: ()) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use chrono::Datelike;

    const HOST: &str = "host";

    fn date(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2030, 1, day).unwrap_or_default()
    }

    fn usd(minor: i64) -> Money {
        Money::from_stored(minor, Currency::USD)
    }

    fn host() -> Caller {
        Caller {
            user_id: HOST.into(),
            admin: false,
        }
    }

    fn guest(id: &str) -> Caller {
        Caller {
            user_id: id.into(),
            admin: false,
        }
    }

    fn calendar(approval: ApprovalType) -> Calendar {
        let mut calendar = Calendar::default();
        calendar.handle(Command::CreateListing(Box::new(Listing {
            id: "l1".into(),
            host_id: HOST.into(),
            title: "t".into(),
            amenity_ids: Vec::new(),
            main_photo: None,
            photos: Vec::new(),
            address: "a".into(),
            price_per_night: usd(10_000),
            description: "d".into(),
            property_type: "loft".into(),
            location: Value::Null,
            max_stay: None,
            min_stay: None,
            seasonal_pricing: None,
            approval_type: approval,
            booking_policies: None,
            cancellation_policy: None,
            languages_supported: Vec::new(),
            house_rules: None,
            is_published: true,
            city_tax_percent: None,
            is_active: true,
            record_version: 1,
            created_at: 0,
            updated_at: 0,
        })));
        calendar
    }

    fn reserve(c: &mut Calendar, id: &str, who: &str, from: u32, to: u32) -> Outcome<Event, Reply> {
        let nights = i64::from(to - from);
        c.handle(Command::Reserve(Box::new(NewReservation {
            id: id.into(),
            guest_id: who.into(),
            host_id: HOST.into(),
            approval_type: c
                .listing
                .as_ref()
                .map_or(ApprovalType::Manual, |l| l.approval_type),
            check_in: date(from),
            check_out: date(to),
            total_price: usd(10_000 * nights),
            guest_count: 1,
            ical_export_url: None,
            ical_import_source: None,
            booking_policies_snapshot: Value::Null,
            cancellation_policy_snapshot: Value::Null,
            today: date(1),
            now_ms: 1,
        })))
    }

    fn refusal(outcome: &Outcome<Event, Reply>) -> Option<Refusal> {
        match &outcome.reply {
            Reply::Refused(r) => Some(r.clone()),
            _ => None,
        }
    }

    fn next(outcome: &Outcome<Event, Reply>) -> Next {
        match &outcome.reply {
            Reply::Reservation { next, .. } => next.clone(),
            other => panic!("not a reservation: {other:?}"),
        }
    }

    fn booked(c: &Calendar) -> Vec<u32> {
        c.days
            .values()
            .filter(|d| d.reservation_id.is_some())
            .map(|d| d.date.day())
            .collect()
    }

    #[test]
    fn a_stay_holds_every_night_or_none() {
        let mut c = calendar(ApprovalType::Instant);
        let first = reserve(&mut c, "r1", "g1", 5, 8);
        assert_eq!(refusal(&first), None);
        assert_eq!(booked(&c), vec![5, 6, 7], "check-out night is free");
        // One event for the reservation and one per night.
        assert_eq!(first.events.len(), 4);

        let clash = reserve(&mut c, "r2", "g2", 7, 10);
        assert_eq!(
            refusal(&clash),
            Some(Refusal::DatesUnavailable(vec![date(7)]))
        );
        assert!(clash.events.is_empty(), "nothing held");
        assert_eq!(booked(&c), vec![5, 6, 7]);

        // Back to back is fine.
        assert_eq!(refusal(&reserve(&mut c, "r3", "g2", 8, 10)), None);
        assert_eq!(booked(&c), vec![5, 6, 7, 8, 9]);
    }

    #[test]
    fn cancelling_releases_the_nights_and_a_completed_stay_keeps_them() {
        let mut c = calendar(ApprovalType::Manual);
        reserve(&mut c, "r1", "g1", 5, 7);
        let cancelled = c.handle(Command::UpdateReservation {
            caller: guest("g1"),
            reservation_id: "r1".into(),
            changes: ReservationChanges {
                booking_status: Some(BookingStatus::Cancelled),
                ..Default::default()
            },
            today: date(1),
            now_ms: 2,
        });
        assert_eq!(refusal(&cancelled), None);
        assert!(booked(&c).is_empty());

        reserve(&mut c, "r2", "g1", 5, 7);
        let confirm = c.handle(Command::UpdateReservation {
            caller: host(),
            reservation_id: "r2".into(),
            changes: ReservationChanges {
                booking_status: Some(BookingStatus::Confirmed),
                ..Default::default()
            },
            today: date(1),
            now_ms: 3,
        });
        assert_eq!(refusal(&confirm), None);
        let complete = |c: &mut Calendar, today| {
            c.handle(Command::UpdateReservation {
                caller: guest("g1"),
                reservation_id: "r2".into(),
                changes: ReservationChanges {
                    booking_status: Some(BookingStatus::Complete),
                    ..Default::default()
                },
                today,
                now_ms: 4,
            })
        };
        assert!(matches!(
            refusal(&complete(&mut c, date(6))),
            Some(Refusal::InvalidTransition(_))
        ));
        assert_eq!(refusal(&complete(&mut c, date(7))), None);
        assert_eq!(booked(&c), vec![5, 6]);
    }

    #[test]
    fn the_payment_is_captured_once_confirmed_and_voided_once_released() {
        let mut c = calendar(ApprovalType::Manual);
        reserve(&mut c, "r1", "g1", 5, 7);
        let begin = c.handle(Command::BeginPayment {
            caller: guest("g1"),
            reservation_id: "r1".into(),
            method: PaymentMethod::Wallet,
            ticket_id: "t1".into(),
            redirect_url: None,
            now_ms: 2,
        });
        assert_eq!(next(&begin), Next::Authorize);
        let again = c.handle(Command::BeginPayment {
            caller: guest("g1"),
            reservation_id: "r1".into(),
            method: PaymentMethod::Wallet,
            ticket_id: "t2".into(),
            redirect_url: None,
            now_ms: 2,
        });
        assert!(matches!(
            refusal(&again),
            Some(Refusal::InvalidTransition(_))
        ));
        let authorized = c.handle(Command::Payment {
            reservation_id: "r1".into(),
            step: PaymentStep::Authorized {
                payment_ref: "h1".into(),
                payment_status: "held".into(),
            },
            now_ms: 3,
        });
        assert_eq!(
            next(&authorized),
            Next::Nothing,
            "a manual stay waits for the host"
        );
        let confirmed = c.handle(Command::UpdateReservation {
            caller: host(),
            reservation_id: "r1".into(),
            changes: ReservationChanges {
                booking_status: Some(BookingStatus::Confirmed),
                ..Default::default()
            },
            today: date(1),
            now_ms: 4,
        });
        assert_eq!(
            next(&confirmed),
            Next::Capture {
                method: PaymentMethod::Wallet,
                payment_ref: "h1".into()
            }
        );

        // A stay declined while its authorization is in flight: void it when it arrives.
        reserve(&mut c, "r2", "g2", 10, 12);
        c.handle(Command::BeginPayment {
            caller: guest("g2"),
            reservation_id: "r2".into(),
            method: PaymentMethod::Card,
            ticket_id: "t3".into(),
            redirect_url: None,
            now_ms: 5,
        });
        let declined = c.handle(Command::UpdateReservation {
            caller: host(),
            reservation_id: "r2".into(),
            changes: ReservationChanges {
                booking_status: Some(BookingStatus::Declined),
                ..Default::default()
            },
            today: date(1),
            now_ms: 6,
        });
        assert_eq!(next(&declined), Next::Nothing, "nothing authorized yet");
        assert_eq!(booked(&c), vec![5, 6]);
        let late = c.handle(Command::Payment {
            reservation_id: "r2".into(),
            step: PaymentStep::Authorized {
                payment_ref: "pi_1".into(),
                payment_status: "requires_capture".into(),
            },
            now_ms: 7,
        });
        assert_eq!(
            next(&late),
            Next::Void {
                method: PaymentMethod::Card,
                payment_ref: "pi_1".into()
            }
        );
    }

    #[test]
    fn a_failed_payment_cancels_the_stay_and_frees_its_nights() {
        let mut c = calendar(ApprovalType::Instant);
        reserve(&mut c, "r1", "g1", 5, 7);
        c.handle(Command::BeginPayment {
            caller: guest("g1"),
            reservation_id: "r1".into(),
            method: PaymentMethod::Wallet,
            ticket_id: "t1".into(),
            redirect_url: None,
            now_ms: 2,
        });
        let failed = c.handle(Command::Payment {
            reservation_id: "r1".into(),
            step: PaymentStep::Failed {
                payment_ref: None,
                payment_status: "insufficient_funds".into(),
            },
            now_ms: 3,
        });
        match &failed.reply {
            Reply::Reservation { reservation, next } => {
                assert_eq!(reservation.booking_status, BookingStatus::Cancelled);
                assert_eq!(
                    reservation.payment_confirmation,
                    PaymentConfirmation::Canceled
                );
                assert_eq!(*next, Next::Nothing);
            }
            other => panic!("{other:?}"),
        }
        assert!(booked(&c).is_empty());
        assert!(failed
            .events
            .iter()
            .any(|e| matches!(e, Event::Record(r) if r.payment_status == "failed")));
    }
}
