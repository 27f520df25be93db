//! Evergreen history, feedback, people, devices and rates:
//! `transaction_list`, `transaction_detail`, `leave_feedback` (history_transactions.rs),
//! `search_users`, `suggested_payors` (history_people.rs), `register_device`
//! (history_devices.rs) and `exchange_rates` (history_rates.rs).
//!
//! Decisions (docs/DECISIONS.md, "Evergreen: history, feedback, search, devices, rates"):
//! - a *transaction* is an EVG payment request between two users (its payment, if any, is part
//!   of it: one transaction, the request's id) or a direct payment between two users
//!   (`make_payment` without a request, or a terminal payment; its transfer id). Deposits,
//!   withdrawals, app charges and holds are not transactions;
//! - ratings are the share of positive and negative feedback a user received as payee, in
//!   percent, summing to 100; absent while none was received ([`ratings`]);
//! - every list is bounded by a named constant.

#[path = "history_devices.rs"]
mod devices;
#[path = "history_people.rs"]
mod people;
#[path = "history_rates.rs"]
mod rates;
#[path = "history_transactions.rs"]
mod transactions;

use serde::Serialize;
use utoipa_actix_web::scope::Scope;

use crate::store::evergreen_history::Profile;

/// Register this file's routes.
pub fn routes<T>(scope: Scope<T>) -> Scope<T>
where
    T: actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Error = actix_web::Error,
        InitError = (),
    >,
{
    scope
        .service(transactions::transaction_list)
        .service(transactions::transaction_detail)
        .service(transactions::leave_feedback)
        .service(people::search_users)
        .service(people::suggested_payors)
        .service(devices::register_device)
        .service(rates::exchange_rates)
}

/// A user's ratings from the feedback they received as payee: `(positive, negative)` in
/// percent of that feedback, rounded half up, summing to 100 (so 0 is possible, as the
/// document's examples show). `None` while no feedback was received.
pub fn ratings(positive: i64, negative: i64) -> Option<(i64, i64)> {
    let (positive, negative) = (i128::from(positive.max(0)), i128::from(negative.max(0)));
    let total = positive + negative;
    if total == 0 {
        return None;
    }
    // Half up without floats: 100p/t + 1/2 = (200p + t) / 2t, in integers wide enough.
    let share = i64::try_from((200 * positive + total) / (2 * total)).ok()?;
    Some((share, 100 - share))
}

/// A time (Unix ms) as ISO 8601 UTC to the second, as the document shows it.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The Evergreen id a profile is shown by (the same rule as `evergreen::evg_id`).
fn shown_id(profile: &Profile) -> String {
    profile
        .external_id
        .clone()
        .unwrap_or_else(|| format!("user:{}", profile.id))
}

/// A profile's image: its avatar URL, or nothing.
fn image(profile: &Profile) -> Option<String> {
    profile.avatar.clone().filter(|a| !a.trim().is_empty())
}

/// A user as search results and suggestions show them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Person {
    pub name: String,
    /// The Evergreen id: `facebook:<id>`, else `qr:<code>`, else `user:<uuid>`.
    pub user_id: String,
    /// The user's image URL; omitted when they have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Percent of the feedback received as payee that was positive; omitted when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub positive_rating: Option<i64>,
    /// Percent that was negative (`100 - positive_rating`); omitted when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_rating: Option<i64>,
}

impl Person {
    fn of(profile: &Profile) -> Self {
        let rated = ratings(profile.positive.unwrap_or(0), profile.negative.unwrap_or(0));
        Person {
            name: profile.fullname.clone(),
            user_id: shown_id(profile),
            image: image(profile),
            positive_rating: rated.map(|r| r.0),
            negative_rating: rated.map(|r| r.1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings_are_percentages_that_sum_to_a_hundred() {
        assert_eq!(ratings(0, 0), None);
        assert_eq!(ratings(1, 0), Some((100, 0)));
        assert_eq!(ratings(0, 3), Some((0, 100)));
        assert_eq!(ratings(2, 1), Some((67, 33)));
        assert_eq!(ratings(1, 2), Some((33, 67)));
        assert_eq!(ratings(1, 1), Some((50, 50)));
        // Half up: 1/8 = 12.5 % → 13.
        assert_eq!(ratings(1, 7), Some((13, 87)));
        assert_eq!(ratings(999, 1), Some((100, 0)));
        assert_eq!(ratings(i64::MAX, 1), Some((100, 0)), "no overflow");
    }

    #[test]
    fn times_are_iso_to_the_second() {
        assert_eq!(iso(1_363_875_693_123), "2013-03-21T14:21:33Z");
    }
}
