//! Reservations through `/bookingmanagement-api`: nights held in one step or not at all, no
//! double booking under a race, the status rules between guest, host and admin, and the
//! payment saga through the guest's wallet and the card gateway, with balances exact at
//! every step.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{Days, NaiveDate, Utc};
use protocol::{ClientFrame, Event, ServerFrame};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    call, node_with_admin, spawn_node, spawn_node_with, TestNode, TestUser, WsClient, WAIT,
};

/// The date `days` from today (UTC), as `YYYY-MM-DD`.
pub fn day(days: u64) -> String {
    date(days).to_string()
}

fn date(days: u64) -> NaiveDate {
    Utc::now()
        .date_naive()
        .checked_add_days(Days::new(days))
        .unwrap()
}

/// A published listing of `host` at `price` per night.
pub async fn listing(
    node: &TestNode,
    host: &TestUser,
    approval: &str,
    price: f64,
    currency: &str,
) -> Value {
    let (status, body) = call(
        node,
        Method::POST,
        "/propertycatalog-api/v1/listings",
        Some(&host.token),
        Some(&json!({
            "title": "Sea loft", "address": "1 Harbour Road", "pricePerNight": price,
            "description": "Two rooms by the sea", "propertyType": "loft",
            "location": {"city": "Porto"}, "currency": currency, "approvalType": approval,
            "isPublished": true,
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["listing"].clone()
}

/// The body of a reservation request for `nights` nights from `from` days ahead.
pub fn stay(listing: &Value, from: u64, nights: u64) -> Value {
    let price = listing["pricePerNight"].as_f64().unwrap();
    json!({
        "listingId": listing["id"], "approvalType": listing["approvalType"],
        "bookingStatus": "pending", "hostId": listing["hostId"],
        "checkIn": day(from), "checkOut": day(from + nights),
        "currency": listing["currency"], "guestCount": 2,
        "totalPrice": price * nights as f64, "disputeStatus": "none",
        "bookingPoliciesSnapshot": {}, "cancellationPolicySnapshot": {},
    })
}

pub async fn reserve(node: &TestNode, guest: &TestUser, body: &Value) -> (u16, Value) {
    call(
        node,
        Method::POST,
        "/bookingmanagement-api/v1/reservations",
        Some(&guest.token),
        Some(body),
    )
    .await
}

/// Book and expect success: the reservation.
pub async fn booked(
    node: &TestNode,
    guest: &TestUser,
    listing: &Value,
    from: u64,
    nights: u64,
) -> Value {
    let (status, body) = reserve(node, guest, &stay(listing, from, nights)).await;
    assert_eq!(status, 201, "{body}");
    body["reservation"].clone()
}

pub async fn set_status(
    node: &TestNode,
    who: &TestUser,
    reservation: &Value,
    status: &str,
) -> (u16, Value) {
    call(
        node,
        Method::PATCH,
        &format!(
            "/bookingmanagement-api/v1/reservations/{}",
            reservation["id"].as_str().unwrap()
        ),
        Some(&who.token),
        Some(&json!({"bookingStatus": status})),
    )
    .await
}

async fn pay(node: &TestNode, guest: &TestUser, reservation: &Value, method: &str) -> (u16, Value) {
    call(
        node,
        Method::PATCH,
        &format!(
            "/bookingmanagement-api/v1/startreservationpayment/{}",
            reservation["id"].as_str().unwrap()
        ),
        Some(&guest.token),
        Some(&json!({"paymentUserParams": {"paymentMethodId": method}})),
    )
    .await
}

/// The nights of a listing that are booked, by the calendar.
pub async fn booked_nights(
    node: &TestNode,
    viewer: &TestUser,
    listing: &Value,
) -> BTreeSet<String> {
    let (status, body) = call(
        node,
        Method::GET,
        &format!(
            "/propertycatalog-api/v1/listingcalendars?listingId={}&pageNumber=0",
            listing["id"].as_str().unwrap()
        ),
        Some(&viewer.token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["listingCalendars"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["isAvailable"] == false)
        .map(|d| d["date"].as_str().unwrap().to_owned())
        .collect()
}

fn nights_of(reservation: &Value) -> Vec<String> {
    let from: NaiveDate = reservation["checkIn"].as_str().unwrap().parse().unwrap();
    let to: NaiveDate = reservation["checkOut"].as_str().unwrap().parse().unwrap();
    from.iter_days()
        .take_while(|d| *d < to)
        .map(|d| d.to_string())
        .collect()
}

/// Whole EVG credits into a user's wallet.
pub async fn deposit(node: &TestNode, user: &TestUser, amount: &str) {
    let body = json!({"meta": {"uuid": "stays", "client_version": "1.0",
        "request_id": uuid::Uuid::new_v4().to_string(), "evg_auth_token": user.token},
        "amount": amount});
    let (status, answer) = call(node, Method::POST, "/rest/v01/deposit", None, Some(&body)).await;
    assert_eq!(status, 200);
    assert_eq!(answer["status"], "success", "{answer}");
}

/// (available, total) EVG credits of a user.
pub async fn balances(node: &TestNode, user: &TestUser) -> (String, String) {
    let body = json!({"meta": {"uuid": "stays", "client_version": "1.0",
        "request_id": uuid::Uuid::new_v4().to_string(), "evg_auth_token": user.token}});
    let (status, answer) = call(
        node,
        Method::POST,
        "/rest/v01/account_info",
        None,
        Some(&body),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    (
        text(&answer["meta"]["wallet_balance"]),
        text(&answer["meta"]["account_balance"]),
    )
}

#[actix_web::test]
async fn a_hundred_guests_racing_for_one_listing_never_overlap() {
    let node = spawn_node().await;
    let host = node.user().await;
    let listing = listing(&node, &host, "instant", 80.0, "USD").await;
    let mut guests = Vec::new();
    for _ in 0..100 {
        guests.push(node.user().await);
    }
    // Stays of 1 to 4 nights starting in a 20-day window: many overlap.
    let attempts = guests.iter().enumerate().map(|(i, guest)| {
        let from = 10 + (i as u64 * 7) % 20;
        let nights = 1 + (i as u64 * 3) % 4;
        let body = stay(&listing, from, nights);
        let node = &node;
        async move { (reserve(node, guest, &body).await, body) }
    });
    let results = futures_util::future::join_all(attempts).await;

    let mut accepted = Vec::new();
    for ((status, body), request) in &results {
        match status {
            201 => accepted.push(body["reservation"].clone()),
            409 => {
                assert_eq!(body["message"], "errMsg_datesNotAvailable", "{body}");
                assert_eq!(body["result"], "ERR", "{body}");
            }
            other => panic!("unexpected {other} for {request}: {body}"),
        }
    }
    assert!(accepted.len() >= 5, "some stays fit: {}", accepted.len());
    assert!(accepted.len() < 100, "most overlap");
    let mut held = BTreeSet::new();
    for reservation in &accepted {
        for night in nights_of(reservation) {
            assert!(held.insert(night.clone()), "{night} booked twice");
        }
    }
    assert_eq!(
        booked_nights(&node, &host, &listing).await,
        held,
        "the calendar shows exactly the accepted nights"
    );
    // Every rejected guest can see that nothing of theirs exists.
    let (status, body) = call(
        &node,
        Method::GET,
        "/bookingmanagement-api/v1/reservations?pageNumber=0",
        Some(&host.token),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["reservations"].as_array().unwrap().len(),
        accepted.len()
    );
}

#[actix_web::test]
async fn an_instant_booking_paid_from_the_wallet_is_confirmed_and_the_host_is_paid() {
    let node = spawn_node().await;
    let (host, guest) = (node.user().await, node.user().await);
    deposit(&node, &guest, "1000").await;
    let listing = listing(&node, &host, "instant", 150.0, "EVG").await;
    let reservation = booked(&node, &guest, &listing, 5, 2).await;
    assert_eq!(reservation["bookingStatus"], "pending");
    assert_eq!(reservation["paymentConfirmation"], "pending");
    assert_eq!(reservation["totalPrice"], json!(300));
    assert_eq!(reservation["guestId"], json!(guest.id));

    let (status, body) = pay(&node, &guest, &reservation, "wallet").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reservation"]["bookingStatus"], "confirmed", "{body}");
    assert_eq!(body["reservation"]["paymentConfirmation"], "paid");
    let result = &body["paymentResult"];
    assert_eq!(result["success"], true, "{result}");
    assert_eq!(result["orderId"], reservation["id"]);
    assert_eq!(result["amount"], json!(300));
    assert_eq!(result["currency"], "EVG");
    assert_eq!(result["statusLiteral"], "paid");
    assert_eq!(balances(&node, &guest).await, ("700".into(), "700".into()));
    assert_eq!(balances(&node, &host).await, ("300".into(), "300".into()));

    // A second start is refused and moves nothing.
    let (status, body) = pay(&node, &guest, &reservation, "wallet").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["message"], "errMsg_invalidStatusTransition");
    assert_eq!(balances(&node, &guest).await, ("700".into(), "700".into()));
}

#[actix_web::test]
async fn a_payment_that_fails_cancels_the_stay_and_holds_nothing() {
    let node = spawn_node().await;
    let (host, guest, other) = (node.user().await, node.user().await, node.user().await);
    deposit(&node, &guest, "100").await;
    let listing = listing(&node, &host, "instant", 150.0, "EVG").await;
    let reservation = booked(&node, &guest, &listing, 5, 2).await;
    assert_eq!(booked_nights(&node, &host, &listing).await.len(), 2);

    let (status, body) = pay(&node, &guest, &reservation, "wallet").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reservation"]["bookingStatus"], "cancelled", "{body}");
    assert_eq!(body["reservation"]["paymentConfirmation"], "canceled");
    assert_eq!(body["paymentResult"]["success"], false);
    assert_eq!(body["paymentResult"]["statusLiteral"], "failed");
    assert!(
        body["paymentResult"]["description"]
            .as_str()
            .unwrap()
            .contains("insufficient_funds"),
        "{body}"
    );
    assert_eq!(
        balances(&node, &guest).await,
        ("100".into(), "100".into()),
        "nothing held"
    );
    assert_eq!(balances(&node, &host).await, ("0".into(), "0".into()));
    assert!(
        booked_nights(&node, &host, &listing).await.is_empty(),
        "the nights are free again"
    );
    // And someone else can take them.
    booked(&node, &other, &listing, 5, 2).await;
}

#[actix_web::test]
async fn a_declined_manual_booking_releases_its_nights_and_voids_its_hold() {
    let node = spawn_node().await;
    let (host, guest) = (node.user().await, node.user().await);
    deposit(&node, &guest, "1000").await;
    let listing = listing(&node, &host, "manual", 100.0, "EVG").await;

    let first = booked(&node, &guest, &listing, 5, 3).await;
    let (status, body) = pay(&node, &guest, &first, "wallet").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["reservation"]["bookingStatus"], "pending",
        "a manual booking waits for the host"
    );
    assert_eq!(body["reservation"]["paymentConfirmation"], "processing");
    assert_eq!(body["paymentResult"]["statusLiteral"], "authorized");
    assert_eq!(
        balances(&node, &guest).await,
        ("700".into(), "1000".into()),
        "300 held"
    );

    // The guest cannot confirm their own booking.
    let (status, body) = set_status(&node, &guest, &first, "confirmed").await;
    assert_eq!(status, 403, "{body}");

    let (status, body) = set_status(&node, &host, &first, "declined").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reservation"]["bookingStatus"], "declined");
    assert_eq!(body["reservation"]["paymentConfirmation"], "canceled");
    assert_eq!(
        balances(&node, &guest).await,
        ("1000".into(), "1000".into()),
        "hold voided"
    );
    assert_eq!(balances(&node, &host).await, ("0".into(), "0".into()));
    assert!(booked_nights(&node, &host, &listing).await.is_empty());

    // A confirmed one is captured to the host.
    let second = booked(&node, &guest, &listing, 5, 2).await;
    pay(&node, &guest, &second, "wallet").await;
    assert_eq!(balances(&node, &guest).await, ("800".into(), "1000".into()));
    let (status, body) = set_status(&node, &host, &second, "confirmed").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reservation"]["bookingStatus"], "confirmed");
    assert_eq!(body["reservation"]["paymentConfirmation"], "paid");
    assert_eq!(balances(&node, &guest).await, ("800".into(), "800".into()));
    assert_eq!(balances(&node, &host).await, ("200".into(), "200".into()));
    assert_eq!(booked_nights(&node, &host, &listing).await.len(), 2);

    // Cancelling a pending, authorized booking voids too.
    let third = booked(&node, &guest, &listing, 20, 1).await;
    pay(&node, &guest, &third, "wallet").await;
    assert_eq!(balances(&node, &guest).await, ("700".into(), "800".into()));
    let (status, body) = set_status(&node, &guest, &third, "cancelled").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reservation"]["paymentConfirmation"], "canceled");
    assert_eq!(balances(&node, &guest).await, ("800".into(), "800".into()));
}

/// The host confirms an authorized booking while the guest cancels it, at once, round after
/// round. Whichever wins, the reservation's payment says where the money is: `paid` when it
/// went to the host, `canceled` when the guest has it back. A guest's void that reached the
/// wallet after the host's capture once read the missing hold as released, so the booking
/// said `canceled` while the host had been paid.
#[actix_web::test]
async fn a_confirm_and_a_cancel_at_once_leave_the_payment_where_the_money_is() {
    const ROUNDS: u64 = 40;
    let node = spawn_node().await;
    let (host, guest) = (node.user().await, node.user().await);
    deposit(&node, &guest, &(100 * ROUNDS).to_string()).await;
    let listing = listing(&node, &host, "manual", 100.0, "EVG").await;
    let mut host_paid = 0u64;
    for round in 0..ROUNDS {
        let reservation = booked(&node, &guest, &listing, 3 + 2 * round, 1).await;
        let (status, body) = pay(&node, &guest, &reservation, "wallet").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["reservation"]["paymentConfirmation"], "processing");
        futures_util::future::join(
            set_status(&node, &host, &reservation, "confirmed"),
            set_status(&node, &guest, &reservation, "cancelled"),
        )
        .await;
        let path = format!(
            "/bookingmanagement-api/v1/reservations/{}",
            reservation["id"].as_str().unwrap()
        );
        let (_, body) = call(&node, Method::GET, &path, Some(&guest.token), None).await;
        let payment = body["reservation"]["paymentConfirmation"].clone();
        let (host_balance, _) = balances(&node, &host).await;
        let host_balance: u64 = host_balance.parse().unwrap();
        if host_balance == 100 * (host_paid + 1) {
            host_paid += 1;
            assert_eq!(payment, "paid", "round {round}: the host was paid; {body}");
        } else {
            assert_eq!(host_balance, 100 * host_paid, "round {round}");
            assert_eq!(payment, "canceled", "round {round}: nothing moved; {body}");
        }
        let spent = (100 * host_paid).to_string();
        let left = (100 * (ROUNDS - host_paid)).to_string();
        assert_eq!(
            balances(&node, &guest).await,
            (left.clone(), left),
            "round {round}: nothing stays held ({spent} paid)"
        );
    }
}

#[actix_web::test]
async fn the_host_confirms_before_payment_and_the_payment_is_captured_at_once() {
    let node = spawn_node().await;
    let (host, guest) = (node.user().await, node.user().await);
    deposit(&node, &guest, "500").await;
    let listing = listing(&node, &host, "manual", 100.0, "EVG").await;
    let reservation = booked(&node, &guest, &listing, 3, 1).await;
    let (status, body) = set_status(&node, &host, &reservation, "confirmed").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reservation"]["paymentConfirmation"], "pending");
    let (status, body) = pay(&node, &guest, &reservation, "wallet").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reservation"]["paymentConfirmation"], "paid");
    assert_eq!(balances(&node, &guest).await, ("400".into(), "400".into()));
    assert_eq!(balances(&node, &host).await, ("100".into(), "100".into()));
}

#[actix_web::test]
async fn card_payments_authorize_capture_and_fail_like_a_card_processor() {
    let node = spawn_node().await;
    let (host, guest) = (node.user().await, node.user().await);
    let instant = listing(&node, &host, "instant", 90.0, "USD").await;
    let manual = listing(&node, &host, "manual", 90.0, "USD").await;

    // Approved: captured at once on an instant booking.
    let ok = booked(&node, &guest, &instant, 4, 2).await;
    let (status, body) = pay(&node, &guest, &ok, "pm_card_visa").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reservation"]["bookingStatus"], "confirmed", "{body}");
    assert_eq!(body["reservation"]["paymentConfirmation"], "paid");
    let intent = &body["paymentResult"]["paymentIntentInfo"];
    assert_eq!(intent["status"], "succeeded", "{body}");
    assert_eq!(intent["card"]["last4"], "4242");
    assert!(
        !body.to_string().contains("4242424242424242"),
        "no card number"
    );

    // Declined at authorization: nothing held, the stay is cancelled.
    let declined = booked(&node, &guest, &instant, 10, 2).await;
    let (status, body) = pay(&node, &guest, &declined, "pm_card_chargeDeclined").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reservation"]["bookingStatus"], "cancelled", "{body}");
    assert_eq!(body["paymentResult"]["success"], false);
    assert!(!booked_nights(&node, &host, &instant)
        .await
        .contains(&day(10)));

    // Authorized, then the capture fails when the host confirms: cancelled, nights free.
    let late = booked(&node, &guest, &manual, 4, 2).await;
    let (_, body) = pay(&node, &guest, &late, "pm_card_captureDeclined").await;
    assert_eq!(
        body["reservation"]["paymentConfirmation"], "processing",
        "{body}"
    );
    let (status, body) = set_status(&node, &host, &late, "confirmed").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reservation"]["bookingStatus"], "cancelled", "{body}");
    assert_eq!(body["reservation"]["paymentConfirmation"], "canceled");
    assert!(booked_nights(&node, &host, &manual).await.is_empty());

    // An unknown method changes nothing.
    let other = booked(&node, &guest, &manual, 20, 1).await;
    let (status, body) = pay(&node, &guest, &other, "pm_card_doesNotExist").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["message"], "errMsg_paymentMethodIdIsNotValid");
    let (_, body) = call(
        &node,
        Method::GET,
        &format!(
            "/bookingmanagement-api/v1/reservations/{}",
            other["id"].as_str().unwrap()
        ),
        Some(&guest.token),
        None,
    )
    .await;
    assert_eq!(body["reservation"]["paymentConfirmation"], "pending");

    // The refresh and the gateway callback agree with where the payment is.
    let (status, body) = call(
        &node,
        Method::PATCH,
        &format!(
            "/bookingmanagement-api/v1/refreshreservationpayment/{}",
            ok["id"].as_str().unwrap()
        ),
        Some(&guest.token),
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["paymentResult"]["paymentIntentInfo"]["status"],
        "succeeded"
    );
    let (status, body) = call(
        &node,
        Method::POST,
        "/bookingmanagement-api/v1/callbackreservationpayment",
        None,
        Some(&json!({"reservationId": ok["id"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reservation"]["paymentConfirmation"], "paid");
    assert!(
        body["reservation"].get("guestId").is_none(),
        "the callback learns no people: {body}"
    );
}

#[actix_web::test]
async fn who_may_move_a_reservation_where() {
    let (node, admin) = node_with_admin().await;
    let (host, guest, outsider) = (node.user().await, node.user().await, node.user().await);
    let listing = listing(&node, &host, "manual", 50.0, "USD").await;
    let reservation = booked(&node, &guest, &listing, 2, 2).await;
    let path = format!(
        "/bookingmanagement-api/v1/reservations/{}",
        reservation["id"].as_str().unwrap()
    );

    // Only guest, host and admin see it.
    for (who, expected) in [(&guest, 200), (&host, 200), (&admin, 200), (&outsider, 404)] {
        let (status, _) = call(&node, Method::GET, &path, Some(&who.token), None).await;
        assert_eq!(status, expected, "{}", who.email);
    }
    let (status, body) = call(&node, Method::GET, &path, Some(&guest.token), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["reservation"]["listingJoins"][0]["title"], "Sea loft",
        "{body}"
    );
    assert_eq!(
        body["reservation"]["hostDetails"][0]["email"],
        json!(host.email)
    );
    let (_, list) = call(
        &node,
        Method::GET,
        "/bookingmanagement-api/v1/reservations",
        Some(&outsider.token),
        None,
    )
    .await;
    assert_eq!(list["reservations"], json!([]));
    let (_, list) = call(
        &node,
        Method::GET,
        "/bookingmanagement-api/v1/reservations?bookingStatus=PENDING",
        Some(&guest.token),
        None,
    )
    .await;
    assert_eq!(list["reservations"].as_array().unwrap().len(), 1, "{list}");
    let (status, _) = call(
        &node,
        Method::PATCH,
        &path,
        Some(&outsider.token),
        Some(&json!({"bookingStatus": "cancelled"})),
    )
    .await;
    assert_eq!(status, 404);

    // Dates and listing are fixed.
    let (status, body) = call(
        &node,
        Method::PATCH,
        &path,
        Some(&host.token),
        Some(&json!({"checkIn": day(3)})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // Not complete before its check-out.
    set_status(&node, &admin, &reservation, "confirmed").await;
    let (status, body) = set_status(&node, &guest, &reservation, "complete").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["message"], "errMsg_invalidStatusTransition");
    node.clock.advance(Duration::from_secs(5 * 86_400));
    let (status, body) = set_status(&node, &guest, &reservation, "complete").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reservation"]["bookingStatus"], "complete");
    assert_eq!(body["reservation"]["bookingStatus_idx"], 2);
    // Complete is final.
    let (status, _) = set_status(&node, &host, &reservation, "cancelled").await;
    assert_eq!(status, 400);
    // A completed stay releases nothing: its nights stay booked in the calendar history.
    assert_eq!(booked_nights(&node, &host, &listing).await.len(), 2);
}

#[actix_web::test]
async fn a_reservation_that_disagrees_with_the_listing_is_refused_whole() {
    let node = spawn_node().await;
    let (host, guest) = (node.user().await, node.user().await);
    let listing = listing(&node, &host, "instant", 100.0, "USD").await;
    let base = stay(&listing, 5, 2);
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"totalPrice": 150}),
            400,
            "errMsg_reservationMismatch",
        ),
        (
            json!({"approvalType": "manual"}),
            400,
            "errMsg_reservationMismatch",
        ),
        (
            json!({"hostId": guest.id}),
            400,
            "errMsg_reservationMismatch",
        ),
        (
            json!({"currency": "EUR", "totalPrice": 200}),
            400,
            "errMsg_reservationMismatch",
        ),
        (
            json!({"checkIn": day(7), "checkOut": day(5)}),
            400,
            "errMsg_stayRuleBroken",
        ),
        (
            json!({"checkIn": "2020-01-01", "checkOut": "2020-01-03"}),
            400,
            "errMsg_stayRuleBroken",
        ),
        (
            json!({"checkIn": "2027-02-30"}),
            400,
            "errMsg_checkInIsNotValid",
        ),
        (json!({"guestId": host.id}), 403, "errMsg_forbidden"),
        (json!({"guestCount": 0}), 400, "errMsg_guestCountIsNotValid"),
        (
            json!({"totalPrice": 200.001}),
            400,
            "errMsg_totalPriceIsNotValid",
        ),
        (json!({"totalPrice": "200"}), 400, ""),
        (json!({"nights": 2}), 400, ""),
        (
            json!({"listingId": "no-such-listing"}),
            404,
            "errMsg_listingNotFound",
        ),
    ];
    for (change, expected, code) in cases {
        let mut body = base.clone();
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, answer) = reserve(&node, &guest, &body).await;
        assert_eq!(status, expected, "{change}: {answer}");
        if !code.is_empty() {
            assert_eq!(answer["message"], code, "{change}: {answer}");
        }
    }
    // The host may not book their own listing.
    let (status, _) = reserve(&node, &host, &base).await;
    assert_eq!(status, 403);
    // Malformed JSON.
    let response = node
        .http
        .post(node.url("/bookingmanagement-api/v1/reservations"))
        .bearer_auth(&guest.token)
        .header("content-type", "application/json")
        .body("{\"listingId\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // A body that is an array, even with the fields in order, is not an object.
    let (status, _) = reserve(&node, &guest, &json!([listing["id"], "instant"])).await;
    assert_eq!(status, 400);
    // Nothing was held by any of it.
    assert!(booked_nights(&node, &host, &listing).await.is_empty());
    // No login, no booking.
    let (status, _) = call(
        &node,
        Method::POST,
        "/bookingmanagement-api/v1/reservations",
        None,
        Some(&base),
    )
    .await;
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn minimum_and_maximum_stays_and_blocked_days_are_enforced() {
    let node = spawn_node().await;
    let (host, guest) = (node.user().await, node.user().await);
    let listing = listing(&node, &host, "instant", 100.0, "USD").await;
    let id = listing["id"].as_str().unwrap();
    let (status, body) = call(
        &node,
        Method::PATCH,
        &format!("/propertycatalog-api/v1/listings/{id}"),
        Some(&host.token),
        Some(&json!({"minStay": 2, "maxStay": 5})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let listing = body["listing"].clone();
    let (status, body) = reserve(&node, &guest, &stay(&listing, 5, 1)).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("errMsg_stayRuleBroken")),
        "{body}"
    );
    let (status, body) = reserve(&node, &guest, &stay(&listing, 5, 6)).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("errMsg_stayRuleBroken")),
        "{body}"
    );
    // A blocked day, and a day with its own price.
    let (status, body) = call(
        &node,
        Method::POST,
        "/propertycatalog-api/v1/listingcalendars",
        Some(&host.token),
        Some(&json!({"listingId": id, "date": day(8), "isAvailable": false})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = reserve(&node, &guest, &stay(&listing, 7, 3)).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["detail"].as_str().unwrap().contains(&day(8)), "{body}");
    let (status, _) = call(
        &node,
        Method::POST,
        "/propertycatalog-api/v1/listingcalendars",
        Some(&host.token),
        Some(&json!({"listingId": id, "date": day(12), "isAvailable": true, "priceOverride": 250})),
    )
    .await;
    assert_eq!(status, 201);
    let mut body = stay(&listing, 11, 2);
    body["totalPrice"] = json!(350);
    let (status, answer) = reserve(&node, &guest, &body).await;
    assert_eq!(status, 201, "{answer}");
}

/// Write a stay of `nights` nights from `from` days ahead straight into the database, behind
/// the listing's calendar actor, which does not see it until it reloads.
async fn insert_behind_the_calendar(
    node: &TestNode,
    listing: &Value,
    host: &TestUser,
    guest: &TestUser,
    id: &str,
    from: u64,
    nights: u64,
) -> Result<(), sqlx::Error> {
    let db = node::store::Db::connect(&node.database_url, 1)
        .await
        .unwrap();
    let night = node::store::stays::day_number(date(from));
    let insert = "INSERT INTO reservations (id, listing_id, host_id, guest_id, approval_type, \
        booking_status, check_in, check_out, night_from, night_to, holds_nights, currency, \
        guest_count, total_price, dispute_status, booking_policies_snapshot, \
        cancellation_policy_snapshot, payment_confirmation, created_at, updated_at) VALUES \
        ($1, $2, $3, $4, 'instant', 'pending', $5, $6, $7, $8, TRUE, 'USD', 1, 100, 'none', \
        '{}', '{}', 'pending', 0, 0)";
    let result = node::on_db!(&db, pool => sqlx::query(insert)
        .bind(id)
        .bind(listing["id"].as_str().unwrap())
        .bind(&host.id)
        .bind(&guest.id)
        .bind(day(from))
        .bind(day(from + nights))
        .bind(night)
        .bind(night + i64::try_from(nights).unwrap())
        .execute(pool)
        .await
        .map(|_| ()));
    db.close().await;
    result
}

#[actix_web::test]
async fn a_failing_batch_books_nothing_and_the_store_fences_overlaps() {
    let node = spawn_node().await;
    let (host, guest) = (node.user().await, node.user().await);
    let listing = listing(&node, &host, "instant", 100.0, "USD").await;
    node.faults.fail_next_batches(1);
    let (status, body) = reserve(&node, &guest, &stay(&listing, 5, 2)).await;
    assert!(status >= 500, "{status} {body}");
    assert!(
        booked_nights(&node, &host, &listing).await.is_empty(),
        "nothing half-applied"
    );
    let reservation = booked(&node, &guest, &listing, 5, 2).await;
    assert_eq!(booked_nights(&node, &host, &listing).await.len(), 2);

    // Behind the actor, the database itself refuses an overlapping stay.
    let result = insert_behind_the_calendar(&node, &listing, &host, &guest, "intruder", 6, 1).await;
    assert!(result.is_err(), "the overlap fence refused it");
    // A stay that does not overlap passes the fence.
    let result =
        insert_behind_the_calendar(&node, &listing, &host, &guest, "neighbour", 7, 2).await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(reservation["checkOut"], json!(day(7)));
}

/// A write the database refuses fails alone. A stay the calendar accepts but the store's
/// overlap fence refuses (a stay written straight into the database, behind the actor) fails,
/// while deposits that other users send at the same moment, and that share its journal batch,
/// all commit: the batch is settled in halves rather than failed whole. The calendar, reset,
/// then knows the stay it had missed and refuses the overlap itself.
#[actix_web::test]
async fn a_stay_the_store_refuses_fails_alone_and_its_batch_neighbours_commit() {
    let node = spawn_node().await;
    let (host, guest) = (node.user().await, node.user().await);
    let listing = listing(&node, &host, "instant", 100.0, "USD").await;
    // The calendar is live, and then a stay of days 7 and 8 is written behind it.
    booked(&node, &guest, &listing, 3, 1).await;
    insert_behind_the_calendar(&node, &listing, &host, &guest, "behind", 7, 2)
        .await
        .unwrap();

    // Deposits in closed loops keep the journal busy, so that the refused stay queues behind
    // a batch and shares the next one with some of them.
    let mut depositors = Vec::new();
    for _ in 0..16 {
        depositors.push(node.user().await);
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    let deposit_until_done = |user: &TestUser| {
        let done = &done;
        let node = &node;
        let token = user.token.clone();
        async move {
            let mut answers = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Acquire) || answers.len() < 3 {
                let body = json!({"meta": {"uuid": "stays", "client_version": "1.0",
                    "request_id": uuid::Uuid::new_v4().to_string(), "evg_auth_token": token},
                    "amount": "1"});
                let (status, answer) =
                    call(node, Method::POST, "/rest/v01/deposit", None, Some(&body)).await;
                answers.push((status, answer["status"].clone()));
            }
            answers
        }
    };
    let loops = futures_util::future::join_all(depositors.iter().map(deposit_until_done));
    let refused = async {
        // Once the loops are under way.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answer = reserve(&node, &guest, &stay(&listing, 7, 1)).await;
        done.store(true, std::sync::atomic::Ordering::Release);
        answer
    };
    let (answers, (status, body)) = futures_util::future::join(loops, refused).await;
    assert!(status >= 500, "the store refused it: {status} {body}");
    for (user, answers) in depositors.iter().zip(&answers) {
        for (status, outcome) in answers {
            assert_eq!(
                (*status, outcome.as_str()),
                (200, Some("success")),
                "{answers:?}"
            );
        }
        let count = answers.len().to_string();
        assert_eq!(balances(&node, user).await, (count.clone(), count));
    }
    let (status, body) = reserve(&node, &guest, &stay(&listing, 7, 1)).await;
    assert_eq!(status, 409, "the calendar now knows the stay: {body}");
    // The refused stay left nothing behind (the row written behind the actor marks no
    // calendar day of its own).
    assert_eq!(
        booked_nights(&node, &host, &listing).await,
        [day(3)].into_iter().collect()
    );
}

async fn next_event(client: &mut WsClient) -> (String, Event) {
    loop {
        match tokio::time::timeout(WAIT, client.recv_skipping_heartbeats())
            .await
            .expect("an event in time")
        {
            Some(ServerFrame::Event(push)) => return (push.topic, push.event),
            Some(_) => {}
            None => panic!("connection closed"),
        }
    }
}

#[actix_web::test]
async fn listing_subscribers_see_calendar_changes_and_parties_see_status_changes() {
    let node = spawn_node().await;
    let (host, guest, browser) = (node.user().await, node.user().await, node.user().await);
    let listing = listing(&node, &host, "manual", 100.0, "USD").await;
    let topic = format!("listing:{}", listing["id"].as_str().unwrap());
    let mut watcher = node.ws(&browser.token).await;
    watcher
        .send(&ClientFrame::Subscribe {
            id: Some("s".into()),
            topic: topic.clone(),
            since: None,
        })
        .await;
    loop {
        match watcher.recv_skipping_heartbeats().await {
            Some(ServerFrame::Subscribed { .. }) => break,
            Some(ServerFrame::Event(_)) => {}
            other => panic!("expected subscribed, got {other:?}"),
        }
    }
    let mut host_ws = node.ws(&host.token).await;

    let reservation = booked(&node, &guest, &listing, 5, 2).await;
    let mut days = BTreeSet::new();
    while days.len() < 2 {
        let (at, event) = next_event(&mut watcher).await;
        assert_eq!(at, topic);
        let pushed = serde_json::to_string(&event).unwrap();
        assert!(
            !pushed.contains(&guest.id),
            "pushes carry no guest: {pushed}"
        );
        match event {
            Event::CalendarDay {
                date,
                is_available,
                booked,
                ..
            } => {
                assert!(!is_available && booked);
                days.insert(date);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(days, nights_of(&reservation).into_iter().collect());

    let (at, event) = next_event(&mut host_ws).await;
    assert_eq!(at, format!("user:{}", host.id));
    match event {
        Event::ReservationUpdated {
            reservation_id,
            booking_status,
            ..
        } => {
            assert_eq!(json!(reservation_id), reservation["id"]);
            assert_eq!(booking_status, "pending");
        }
        other => panic!("unexpected {other:?}"),
    }
    set_status(&node, &host, &reservation, "declined").await;
    let (_, event) = next_event(&mut host_ws).await;
    assert!(
        matches!(event, Event::ReservationUpdated { ref booking_status, .. } if booking_status == "declined"),
        "{event:?}"
    );
    let (_, event) = next_event(&mut watcher).await;
    assert!(
        matches!(
            event,
            Event::CalendarDay {
                is_available: true,
                booked: false,
                ..
            }
        ),
        "{event:?}"
    );
}

#[actix_web::test]
async fn message_threads_show_their_listing_and_reservation() {
    let node = spawn_node().await;
    let (host, guest) = (node.user().await, node.user().await);
    let listing = listing(&node, &host, "manual", 70.0, "USD").await;
    let reservation = booked(&node, &guest, &listing, 8, 2).await;
    let (status, body) = call(
        &node,
        Method::POST,
        "/messaging-api/v1/messagethreads",
        Some(&guest.token),
        Some(
            &json!({"guestId": guest.id, "hostId": host.id, "listingId": listing["id"],
                     "reservationId": reservation["id"], "isOpen": true}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(
        &node,
        Method::GET,
        "/messaging-api/v1/messagethreads",
        Some(&host.token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let thread = &body["messageThreads"][0];
    assert_eq!(
        thread["listingDets"],
        json!([{"title": "Sea loft", "address": "1 Harbour Road",
        "propertyType": "loft", "propertyType_idx": 5, "location": {"city": "Porto"}}])
    );
    assert_eq!(
        thread["rezDets"],
        json!([{"bookingStatus": "pending", "bookingStatus_idx": 0,
        "checkIn": day(8), "checkOut": day(10)}])
    );
}

#[actix_web::test]
async fn concurrent_payment_starts_take_the_money_once() {
    let node = spawn_node().await;
    let (host, guest) = (node.user().await, node.user().await);
    deposit(&node, &guest, "1000").await;
    let listing = listing(&node, &host, "instant", 100.0, "EVG").await;
    let reservation = booked(&node, &guest, &listing, 5, 3).await;
    let starts = (0..8).map(|_| pay(&node, &guest, &reservation, "wallet"));
    let answers = futures_util::future::join_all(starts).await;
    let ok: Vec<_> = answers.iter().filter(|(s, _)| *s == 200).collect();
    assert_eq!(ok.len(), 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*status, 400, "{body}");
        assert_eq!(body["message"], "errMsg_invalidStatusTransition");
    }
    assert_eq!(ok[0].1["reservation"]["paymentConfirmation"], "paid");
    assert_eq!(balances(&node, &guest).await, ("700".into(), "700".into()));
    assert_eq!(balances(&node, &host).await, ("300".into(), "300".into()));
}

#[actix_web::test]
async fn an_unpaid_reservation_expires_and_gives_its_nights_back() {
    let node = spawn_node_with(|s| {
        s.reservation_payment_window_secs = 600;
        s.stays_sweep_ms = 20;
    })
    .await;
    let (host, guest, late) = (node.user().await, node.user().await, node.user().await);
    deposit(&node, &guest, "1000").await;
    let listing = listing(&node, &host, "instant", 100.0, "EVG").await;
    let unpaid = booked(&node, &guest, &listing, 5, 2).await;
    let paid = booked(&node, &guest, &listing, 9, 1).await;
    pay(&node, &guest, &paid, "wallet").await;
    let path = format!(
        "/bookingmanagement-api/v1/reservations/{}",
        unpaid["id"].as_str().unwrap()
    );
    // Inside the window nothing happens.
    let (_, body) = call(&node, Method::GET, &path, Some(&guest.token), None).await;
    assert_eq!(body["reservation"]["bookingStatus"], "pending");

    node.clock.advance(Duration::from_secs(601));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, body) = call(&node, Method::GET, &path, Some(&guest.token), None).await;
        if body["reservation"]["bookingStatus"] == "cancelled" {
            assert_eq!(body["reservation"]["paymentConfirmation"], "canceled");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sweeper never cancelled it: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its nights are free; the paid stay kept its night and its money.
    assert_eq!(
        booked_nights(&node, &host, &listing).await,
        BTreeSet::from([day(9)])
    );
    booked(&node, &late, &listing, 5, 2).await;
    assert_eq!(balances(&node, &host).await, ("100".into(), "100".into()));
}

#[actix_web::test]
async fn every_listing_calendar_and_reservation_route_is_in_the_openapi_document() {
    let node = spawn_node().await;
    let doc: Value = node.get("/openapi.json").await.json().await.unwrap();
    let paths = &doc["paths"];
    for (path, methods) in [
        ("/propertycatalog-api/v1/listings", &["get", "post"][..]),
        (
            "/propertycatalog-api/v1/listings/{listingId}",
            &["get", "patch", "delete"],
        ),
        ("/propertycatalog-api/v1/listingcalendars", &["get", "post"]),
        (
            "/propertycatalog-api/v1/listingcalendars/{listingCalendarId}",
            &["get", "patch", "delete"],
        ),
        ("/bookingmanagement-api/v1/reservations", &["get", "post"]),
        (
            "/bookingmanagement-api/v1/reservations/{reservationId}",
            &["get", "patch", "delete"],
        ),
        (
            "/bookingmanagement-api/v1/startreservationpayment/{reservationId}",
            &["patch"],
        ),
        (
            "/bookingmanagement-api/v1/refreshreservationpayment/{reservationId}",
            &["patch"],
        ),
        (
            "/bookingmanagement-api/v1/callbackreservationpayment",
            &["post"],
        ),
    ] {
        for method in methods {
            assert!(
                paths[path][method].is_object(),
                "{method} {path} is not documented"
            );
        }
    }
}
