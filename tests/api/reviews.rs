//! The review system through HTTP: double-blind publication (both sides, or the window
//! closing under the node's clock), who may review what, moderation, edits and deletes
//! before publication, and aggregates exact at every step.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{
    call, delete, get, node_with_admin, patch, post, spawn_node_with, TestNode, TestUser,
    ADMIN_EMAIL, ADMIN_PASSWORD,
};

const DAY_MS: i64 = 86_400_000;

const REVIEWS: &str = "/reviewsystem-api/v1/reviews";
const AGGREGATES: &str = "/reviewsystem-api/v1/reviewaggregates";

/// The node's day `days` from its now, as `YYYY-MM-DD`.
fn day(node: &TestNode, days: i64) -> String {
    chrono::DateTime::from_timestamp_millis(node.clock.now_ms() + days * DAY_MS)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

/// Unix ms of a `YYYY-MM-DD` day's start (UTC).
fn day_start_ms(day: &str) -> i64 {
    chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

/// A published listing of `host`.
async fn listing(node: &TestNode, host: &TestUser) -> String {
    let (status, body) = post(
        node,
        "/propertycatalog-api/v1/listings",
        &host.token,
        json!({"title": "Loft by the river", "address": "1 River Road", "pricePerNight": 120,
               "description": "Bright and quiet", "propertyType": "apartment", "location": {},
               "currency": "USD", "approvalType": "manual", "isPublished": true}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["listing"]["id"].as_str().unwrap().to_owned()
}

/// A pending reservation of two nights, ten days from the node's today.
async fn reservation(
    node: &TestNode,
    guest: &TestUser,
    host: &TestUser,
    listing_id: &str,
) -> (String, String) {
    let (check_in, check_out) = (day(node, 10), day(node, 12));
    let (status, body) = post(
        node,
        "/bookingmanagement-api/v1/reservations",
        &guest.token,
        json!({"listingId": listing_id, "approvalType": "manual", "bookingStatus": "pending",
               "hostId": host.id, "checkIn": check_in, "checkOut": check_out,
               "currency": "USD", "guestCount": 1, "totalPrice": 240, "disputeStatus": "none",
               "bookingPoliciesSnapshot": {}, "cancellationPolicySnapshot": {}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["reservation"]["bookingStatus"], "pending");
    (
        body["reservation"]["id"].as_str().unwrap().to_owned(),
        check_out,
    )
}

/// A stay that is over: its reservation, listing and check-out day.
struct Stay {
    listing_id: String,
    reservation_id: String,
    check_out: String,
}

/// Book `listing_id`, have the host confirm, let the nights pass, complete the stay.
async fn completed_stay_at(
    node: &TestNode,
    guest: &TestUser,
    host: &TestUser,
    listing_id: &str,
) -> Stay {
    let (reservation_id, check_out) = reservation(node, guest, host, listing_id).await;
    let path = format!("/bookingmanagement-api/v1/reservations/{reservation_id}");
    let (status, body) = patch(
        node,
        &path,
        &host.token,
        json!({"bookingStatus": "confirmed"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    node.clock.advance(Duration::from_secs(13 * 86_400));
    let (status, body) = patch(
        node,
        &path,
        &guest.token,
        json!({"bookingStatus": "complete"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reservation"]["bookingStatus"], "complete");
    Stay {
        listing_id: listing_id.to_owned(),
        reservation_id,
        check_out,
    }
}

/// A completed stay of `guest` at a new listing of `host`.
async fn completed_stay(node: &TestNode, guest: &TestUser, host: &TestUser) -> Stay {
    let listing_id = listing(node, host).await;
    completed_stay_at(node, guest, host, &listing_id).await
}

fn review_body(stay: &Stay, reviewee_type: &str, reviewee_id: &str, rating: i64) -> Value {
    json!({"reservationId": stay.reservation_id, "revieweeType": reviewee_type,
           "revieweeId": reviewee_id, "rating": rating,
           "reviewText": format!("{reviewee_type} was a {rating}"),
           "moderationStatus": "pending", "isPublished": true})
}

/// Review and expect 201; the review.
async fn review(
    node: &TestNode,
    reviewer: &TestUser,
    stay: &Stay,
    reviewee_type: &str,
    reviewee_id: &str,
    rating: i64,
) -> Value {
    let body = review_body(stay, reviewee_type, reviewee_id, rating);
    let (status, answer) = post(node, REVIEWS, &reviewer.token, body).await;
    assert_eq!(status, 201, "{answer}");
    answer["review"].clone()
}

fn ids(list: &Value, key: &str) -> Vec<String> {
    let mut ids: Vec<String> = list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {list}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

fn id(review: &Value) -> String {
    review["id"].as_str().unwrap().to_owned()
}

/// The aggregate of a reviewee as an admin sees it (hidden ones too), or `None`.
async fn aggregate_of(
    node: &TestNode,
    admin: &TestUser,
    kind: &str,
    reviewee_id: &str,
) -> Option<Value> {
    let (status, list) = get(
        node,
        &format!("{AGGREGATES}?revieweeId={reviewee_id}&revieweeType={kind}"),
        Some(&admin.token),
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let rows = list["reviewAggregates"].as_array().unwrap();
    assert!(rows.len() <= 1, "one aggregate per reviewee: {list}");
    rows.first().cloned()
}

/// (averageRating, reviewCount, visibilityStatus) of a reviewee, as an admin sees it.
async fn stats(
    node: &TestNode,
    admin: &TestUser,
    kind: &str,
    reviewee_id: &str,
) -> Option<(f64, i64, String)> {
    aggregate_of(node, admin, kind, reviewee_id).await.map(|a| {
        (
            a["averageRating"].as_f64().unwrap(),
            a["reviewCount"].as_i64().unwrap(),
            a["visibilityStatus"].as_str().unwrap().to_owned(),
        )
    })
}

fn public(average: f64, count: i64) -> Option<(f64, i64, String)> {
    Some((average, count, "public".to_owned()))
}

fn hidden() -> Option<(f64, i64, String)> {
    Some((0.0, 0, "hidden".to_owned()))
}

fn assert_error(body: &Value, status: u16, message: &str) {
    assert_eq!(body["result"], "ERR", "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["errCode"], status, "{body}");
    assert_eq!(body["message"], message, "{body}");
}

fn keys(object: &Value) -> Vec<String> {
    let mut keys: Vec<String> = object.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[actix_web::test]
async fn reviews_stay_hidden_until_both_sides_have_reviewed() {
    let (node, admin) = node_with_admin().await;
    let (guest, host, outsider) = (node.user().await, node.user().await, node.user().await);
    let stay = completed_stay(&node, &guest, &host).await;

    // The guest reviews the host: stored approved and unpublished, whatever the body said.
    let body = review_body(&stay, "host", &host.id, 5);
    let (status, created) = post(&node, REVIEWS, &guest.token, body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["statusCode"], 201);
    assert_eq!(created["dataName"], "review");
    assert_eq!(created["action"], "create");
    let of_host = created["review"].clone();
    assert_eq!(
        keys(&of_host),
        [
            "_owner",
            "blindSubmissionCode",
            "createdAt",
            "id",
            "isActive",
            "isPublished",
            "moderationStatus",
            "moderationStatus_idx",
            "rating",
            "recordVersion",
            "reservationId",
            "reviewText",
            "revieweeId",
            "revieweeType",
            "revieweeType_idx",
            "reviewerId",
            "submittedAt",
            "updatedAt"
        ]
    );
    assert_eq!(of_host["moderationStatus"], "approved");
    assert_eq!(of_host["moderationStatus_idx"], 1);
    assert_eq!(of_host["isPublished"], false);
    assert_eq!(of_host["rating"], 5);
    assert_eq!(of_host["reviewText"], "host was a 5");
    assert_eq!(of_host["revieweeId"], host.id.as_str());
    assert_eq!(of_host["revieweeType"], "host");
    assert_eq!(of_host["revieweeType_idx"], 0);
    assert_eq!(of_host["reviewerId"], guest.id.as_str());
    assert_eq!(of_host["_owner"], guest.id.as_str());
    assert_eq!(of_host["reservationId"], stay.reservation_id.as_str());
    assert_eq!(of_host["isActive"], true);
    assert_eq!(of_host["recordVersion"], 1);
    let code = of_host["blindSubmissionCode"].as_str().unwrap();
    assert_eq!(code.len(), 16);
    assert!(code.chars().all(|c| c.is_ascii_hexdigit()), "{code}");
    let submitted = chrono::DateTime::parse_from_rfc3339(of_host["submittedAt"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    assert!(
        (submitted - node.clock.now_ms()).abs() < 60_000,
        "submittedAt is the node's now"
    );
    let one = format!("{REVIEWS}/{}", id(&of_host));

    // Hidden from the host, from others and from the public; seen by its reviewer and admins.
    for token in [Some(host.token.as_str()), Some(&outsider.token), None] {
        let (status, body) = get(&node, &one, token).await;
        assert_eq!(status, 404, "{body}");
        assert_error(&body, 404, "errMsg_reviewNotFound");
        let (status, list) = get(
            &node,
            &format!("{REVIEWS}?reservationId={}", stay.reservation_id),
            token,
        )
        .await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["rowCount"], 0, "{list}");
    }
    let (status, own) = get(&node, &one, Some(&guest.token)).await;
    assert_eq!(status, 200);
    assert_eq!(own["review"], of_host);
    let (status, seen) = get(&node, &one, Some(&admin.token)).await;
    assert_eq!(status, 200);
    assert_eq!(seen["review"]["isPublished"], false);
    // Nothing is counted yet: the host's aggregate is hidden and not listed publicly.
    assert_eq!(stats(&node, &admin, "host", &host.id).await, hidden());
    let (_, list) = get(&node, &format!("{AGGREGATES}?revieweeId={}", host.id), None).await;
    assert_eq!(list["rowCount"], 0);

    // The guest reviews the listing too: still one side only.
    let of_listing = review(&node, &guest, &stay, "listing", &stay.listing_id, 4).await;
    assert_eq!(of_listing["isPublished"], false);
    assert_eq!(of_listing["revieweeType_idx"], 2);
    let (_, list) = get(
        &node,
        &format!("{REVIEWS}?reservationId={}", stay.reservation_id),
        Some(&host.token),
    )
    .await;
    assert_eq!(list["rowCount"], 0);
    let (_, list) = get(
        &node,
        &format!("{REVIEWS}?reservationId={}", stay.reservation_id),
        Some(&guest.token),
    )
    .await;
    assert_eq!(
        ids(&list, "reviews"),
        sorted(vec![id(&of_host), id(&of_listing)])
    );

    // The host reviews the guest: both sides have, so all three are published at once.
    let of_guest = review(&node, &host, &stay, "guest", &guest.id, 3).await;
    assert_eq!(of_guest["isPublished"], true, "{of_guest}");
    assert_eq!(of_guest["revieweeType_idx"], 1);
    let (status, list) = get(
        &node,
        &format!("{REVIEWS}?reservationId={}", stay.reservation_id),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["dataName"], "reviews");
    assert_eq!(
        ids(&list, "reviews"),
        sorted(vec![id(&of_host), id(&of_listing), id(&of_guest)])
    );
    assert_eq!(list["paging"]["totalRowCount"], 3);
    for review in list["reviews"].as_array().unwrap() {
        assert_eq!(review["isPublished"], true);
        assert_eq!(
            review["blindSubmissionCode"],
            Value::Null,
            "the receipt is the reviewer's"
        );
    }
    let (status, now_public) = get(&node, &one, Some(&host.token)).await;
    assert_eq!(status, 200);
    assert_eq!(now_public["review"]["isPublished"], true);
    assert_eq!(now_public["review"]["recordVersion"], 2);
    assert_eq!(now_public["review"]["blindSubmissionCode"], Value::Null);
    let (_, own) = get(&node, &one, Some(&guest.token)).await;
    assert_eq!(own["review"]["blindSubmissionCode"], code);

    // Each reviewee's aggregate counts its published review.
    assert_eq!(stats(&node, &admin, "host", &host.id).await, public(5.0, 1));
    assert_eq!(
        stats(&node, &admin, "listing", &stay.listing_id).await,
        public(4.0, 1)
    );
    assert_eq!(
        stats(&node, &admin, "guest", &guest.id).await,
        public(3.0, 1)
    );
    let (status, list) = get(&node, &format!("{AGGREGATES}?revieweeId={}", host.id), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["dataName"], "reviewAggregates");
    let aggregate = &list["reviewAggregates"][0];
    assert_eq!(
        keys(aggregate),
        [
            "_owner",
            "averageRating",
            "createdAt",
            "id",
            "isActive",
            "recordVersion",
            "reviewCount",
            "revieweeId",
            "revieweeType",
            "revieweeType_idx",
            "updatedAt",
            "visibilityStatus",
            "visibilityStatus_idx"
        ]
    );
    assert_eq!(aggregate["revieweeType"], "host");
    assert_eq!(aggregate["revieweeType_idx"], 0);
    assert_eq!(aggregate["visibilityStatus"], "public");
    assert_eq!(aggregate["visibilityStatus_idx"], 0);
    assert_eq!(aggregate["isActive"], true);
    assert_eq!(aggregate["recordVersion"], 2);
    let (status, got) = get(
        &node,
        &format!("{AGGREGATES}/{}", aggregate["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["dataName"], "reviewAggregate");
    assert_eq!(got["reviewAggregate"], *aggregate);
}

#[actix_web::test]
async fn reviews_stay_hidden_until_the_window_closes() {
    let window_secs = 20 * 86_400;
    let node = spawn_node_with(|s| {
        s.admin_email = Some(ADMIN_EMAIL.into());
        s.admin_password = Some(secrecy::SecretString::from(ADMIN_PASSWORD.to_owned()));
        s.review_window_secs = window_secs;
    })
    .await;
    let admin = node.log_in_again(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (guest, host) = (node.user().await, node.user().await);
    let stay = completed_stay(&node, &guest, &host).await;

    let of_host = review(&node, &guest, &stay, "host", &host.id, 4).await;
    let one = format!("{REVIEWS}/{}", id(&of_host));
    let publish_at = day_start_ms(&stay.check_out) + i64::try_from(window_secs).unwrap() * 1000;

    // A minute before the window closes: still hidden.
    let until = publish_at - node.clock.now_ms() - 60_000;
    node.clock
        .advance(Duration::from_millis(u64::try_from(until).unwrap()));
    let (status, _) = get(&node, &one, Some(&host.token)).await;
    assert_eq!(status, 404);
    let (_, list) = get(&node, &format!("{REVIEWS}?revieweeId={}", host.id), None).await;
    assert_eq!(list["rowCount"], 0);
    assert_eq!(stats(&node, &admin, "host", &host.id).await, hidden());

    // Two minutes later it is published, and counted, for everyone.
    node.clock.advance(Duration::from_secs(120));
    let (_, list) = get(&node, &format!("{REVIEWS}?revieweeId={}", host.id), None).await;
    assert_eq!(ids(&list, "reviews"), [id(&of_host)]);
    assert_eq!(list["reviews"][0]["isPublished"], true);
    let (status, got) = get(&node, &one, Some(&host.token)).await;
    assert_eq!(status, 200);
    assert_eq!(got["review"]["isPublished"], true);
    assert_eq!(stats(&node, &admin, "host", &host.id).await, public(4.0, 1));
    let (_, list) = get(
        &node,
        &format!("{AGGREGATES}?revieweeId={}&revieweeType=host", host.id),
        None,
    )
    .await;
    assert_eq!(list["rowCount"], 1);
    assert_eq!(list["reviewAggregates"][0]["averageRating"], 4.0);

    // The window is closed: the host can no longer review the guest.
    let (status, body) = post(
        &node,
        REVIEWS,
        &host.token,
        review_body(&stay, "guest", &guest.id, 5),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, 400, "errMsg_reviewWindowClosed");
    assert_eq!(stats(&node, &admin, "guest", &guest.id).await, None);
}

#[actix_web::test]
async fn only_the_guest_and_the_host_of_a_completed_stay_review_it_once() {
    let (node, _admin) = node_with_admin().await;
    let (guest, host, outsider) = (node.user().await, node.user().await, node.user().await);
    let stay = completed_stay(&node, &guest, &host).await;

    // Someone else: 403; no token: 401.
    let (status, body) = post(
        &node,
        REVIEWS,
        &outsider.token,
        review_body(&stay, "host", &host.id, 5),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_error(&body, 403, "errMsg_forbidden");
    let (status, _) = call(
        &node,
        reqwest::Method::POST,
        REVIEWS,
        None,
        Some(&review_body(&stay, "host", &host.id, 5)),
    )
    .await;
    assert_eq!(status, 401);
    // Someone else's identity in the body.
    let mut as_host = review_body(&stay, "host", &host.id, 5);
    as_host["reviewerId"] = json!(host.id);
    let (status, _) = post(&node, REVIEWS, &guest.token, as_host).await;
    assert_eq!(status, 403);
    let mut as_self = review_body(&stay, "listing", &stay.listing_id, 5);
    as_self["reviewerId"] = json!(guest.id);
    as_self["submittedAt"] = json!("2020-01-01T00:00:00Z");
    as_self["blindSubmissionCode"] = json!("MINE");
    let (status, body) = post(&node, REVIEWS, &guest.token, as_self).await;
    assert_eq!(
        status, 201,
        "server-owned fields are accepted and set by the server: {body}"
    );
    assert_ne!(body["review"]["blindSubmissionCode"], "MINE");
    assert_ne!(body["review"]["submittedAt"], "2020-01-01T00:00:00.000Z");

    // Who reviews whom: the guest the host and the listing, the host the guest.
    for (reviewer, kind, reviewee, message) in [
        (
            &guest,
            "guest",
            guest.id.clone(),
            "errMsg_revieweeTypeIsNotValid",
        ),
        (
            &host,
            "host",
            host.id.clone(),
            "errMsg_revieweeTypeIsNotValid",
        ),
        (
            &host,
            "listing",
            stay.listing_id.clone(),
            "errMsg_revieweeTypeIsNotValid",
        ),
        (
            &guest,
            "host",
            outsider.id.clone(),
            "errMsg_revieweeIdIsNotValid",
        ),
        (
            &guest,
            "host",
            stay.listing_id.clone(),
            "errMsg_revieweeIdIsNotValid",
        ),
        (
            &host,
            "guest",
            outsider.id.clone(),
            "errMsg_revieweeIdIsNotValid",
        ),
    ] {
        let (status, body) = post(
            &node,
            REVIEWS,
            &reviewer.token,
            review_body(&stay, kind, &reviewee, 4),
        )
        .await;
        assert_eq!(status, 400, "{kind}: {body}");
        assert_error(&body, 400, message);
    }

    // Once per reviewer and kind.
    review(&node, &guest, &stay, "host", &host.id, 5).await;
    let (status, body) = post(
        &node,
        REVIEWS,
        &guest.token,
        review_body(&stay, "host", &host.id, 1),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_error(&body, 409, "errMsg_alreadyReviewed");

    // An unknown reservation is 404; one not complete is 400.
    let mut unknown = review_body(&stay, "host", &host.id, 5);
    unknown["reservationId"] = json!("no-such-reservation");
    let (status, body) = post(&node, REVIEWS, &guest.token, unknown).await;
    assert_eq!(status, 404, "{body}");
    assert_error(&body, 404, "errMsg_reservationNotFound");
    let other_listing = listing(&node, &host).await;
    let (pending, _) = reservation(&node, &guest, &host, &other_listing).await;
    let mut not_over = review_body(&stay, "host", &host.id, 5);
    not_over["reservationId"] = json!(pending);
    let (status, body) = post(&node, REVIEWS, &guest.token, not_over).await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, 400, "errMsg_reservationNotComplete");

    // Bad input: 400, nothing stored.
    let mut bodies = Vec::new();
    for (field, value) in [
        ("rating", json!(0)),
        ("rating", json!(6)),
        ("rating", json!(4.5)),
        ("rating", json!("5")),
        ("reviewText", json!("")),
        ("reviewText", json!("x".repeat(4001))),
        ("revieweeType", json!("Host")),
        ("revieweeType", json!("cat")),
        ("moderationStatus", json!("maybe")),
        ("isPublished", json!("yes")),
        ("reservationId", json!("r".repeat(65))),
        ("recordVersion", json!(1)),
    ] {
        let mut body = review_body(&stay, "guest", &guest.id, 4);
        body[field] = value;
        bodies.push(body);
    }
    let mut missing = review_body(&stay, "guest", &guest.id, 4);
    missing.as_object_mut().unwrap().remove("moderationStatus");
    bodies.push(missing);
    bodies.push(json!([]));
    for body in bodies {
        let (status, answer) = post(&node, REVIEWS, &host.token, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["result"], "ERR");
    }
    let response = node
        .http
        .post(node.url(REVIEWS))
        .bearer_auth(&host.token)
        .header("content-type", "application/json")
        .body("{\"rating\": 5,")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let (_, list) = get(
        &node,
        &format!("{REVIEWS}?reviewerId={}", host.id),
        Some(&host.token),
    )
    .await;
    assert_eq!(list["rowCount"], 0, "the host has not reviewed");
}

#[actix_web::test]
async fn aggregates_are_exact_through_publication_moderation_and_deletes() {
    let (node, admin) = node_with_admin().await;
    let host = node.user().await;
    let listing_id = listing(&node, &host).await;
    let mut host_reviews = Vec::new();
    // Three guests stay in turn; each rates the host and the listing, the host rates them.
    for (host_rating, listing_rating) in [(5, 4), (4, 3), (5, 2)] {
        let guest = node.user().await;
        let stay = completed_stay_at(&node, &guest, &host, &listing_id).await;
        let of_host = review(&node, &guest, &stay, "host", &host.id, host_rating).await;
        review(&node, &guest, &stay, "listing", &listing_id, listing_rating).await;
        // Not counted before the host's side arrives.
        let before = stats(&node, &admin, "host", &host.id).await;
        review(&node, &host, &stay, "guest", &guest.id, 5).await;
        host_reviews.push((guest, id(&of_host), before));
    }
    assert_eq!(host_reviews[0].2, hidden());
    assert_eq!(host_reviews[1].2, public(5.0, 1));
    assert_eq!(host_reviews[2].2, public(4.5, 2));
    // (5 + 4 + 5) / 3 = 4.666…, (4 + 3 + 2) / 3 = 3.
    assert_eq!(
        stats(&node, &admin, "host", &host.id).await,
        public(4.67, 3)
    );
    assert_eq!(
        stats(&node, &admin, "listing", &listing_id).await,
        public(3.0, 3)
    );
    let aggregate = aggregate_of(&node, &admin, "host", &host.id).await.unwrap();
    let version = aggregate["recordVersion"].as_i64().unwrap();
    let aggregate_path = format!("{AGGREGATES}/{}", aggregate["id"].as_str().unwrap());

    // Moderation: a rejected review leaves the aggregate and the public's sight.
    let (first_guest, first_review, _) = &host_reviews[0];
    let first = format!("{REVIEWS}/{first_review}");
    let (status, body) = patch(
        &node,
        &first,
        &host.token,
        json!({"moderationStatus": "rejected"}),
    )
    .await;
    assert_eq!(status, 403, "only admins moderate: {body}");
    let (status, rejected) = patch(
        &node,
        &first,
        &admin.token,
        json!({"moderationStatus": "rejected"}),
    )
    .await;
    assert_eq!(status, 200, "{rejected}");
    assert_eq!(rejected["action"], "update");
    assert_eq!(rejected["review"]["moderationStatus"], "rejected");
    assert_eq!(rejected["review"]["moderationStatus_idx"], 2);
    assert_eq!(stats(&node, &admin, "host", &host.id).await, public(4.5, 2));
    let (_, got) = get(&node, &aggregate_path, None).await;
    assert_eq!(got["reviewAggregate"]["recordVersion"], version + 1);
    for token in [None, Some(host.token.as_str())] {
        let (status, _) = get(&node, &first, token).await;
        assert_eq!(status, 404);
    }
    let (status, _) = get(&node, &first, Some(&first_guest.token)).await;
    assert_eq!(status, 200, "the reviewer still sees a rejected review");
    let (_, list) = get(
        &node,
        &format!("{REVIEWS}?revieweeId={}&revieweeType=HOST", host.id),
        None,
    )
    .await;
    assert_eq!(list["rowCount"], 2);
    let (_, list) = get(
        &node,
        &format!("{REVIEWS}?revieweeId={}&revieweeType=host", host.id),
        Some(&admin.token),
    )
    .await;
    assert_eq!(list["rowCount"], 3, "admins see every review");
    // Pending counts no more than rejected; approved again counts again.
    let (status, _) = patch(
        &node,
        &first,
        &admin.token,
        json!({"moderationStatus": "pending"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(stats(&node, &admin, "host", &host.id).await, public(4.5, 2));
    let (status, _) = patch(
        &node,
        &first,
        &admin.token,
        json!({"moderationStatus": "approved"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        stats(&node, &admin, "host", &host.id).await,
        public(4.67, 3)
    );

    // Deletes (by an admin, the reviews being published) are counted out.
    let mut left = 3;
    let mut expected = [public(5.0, 2), public(5.0, 1), hidden()].into_iter();
    for (_, review_id, _) in &host_reviews[1..] {
        let (status, deleted) =
            delete(&node, &format!("{REVIEWS}/{review_id}"), &admin.token).await;
        assert_eq!(status, 200, "{deleted}");
        assert_eq!(deleted["action"], "delete");
        assert_eq!(deleted["review"]["isActive"], false);
        left -= 1;
        let want = expected.next().unwrap();
        let now = stats(&node, &admin, "host", &host.id).await;
        assert_eq!(now, want, "{left} left");
    }
    let (status, deleted) = delete(&node, &first, &admin.token).await;
    assert_eq!(status, 200, "{deleted}");
    // Nothing counted: the aggregate stays, hidden, and is the admins' alone.
    assert_eq!(
        stats(&node, &admin, "host", &host.id).await,
        expected.next().unwrap()
    );
    let (status, _) = get(&node, &aggregate_path, None).await;
    assert_eq!(status, 404);
    let (status, got) = get(&node, &aggregate_path, Some(&admin.token)).await;
    assert_eq!(status, 200);
    assert_eq!(got["reviewAggregate"]["visibilityStatus_idx"], 1);
    let (_, list) = get(&node, &format!("{AGGREGATES}?revieweeType=host"), None).await;
    assert_eq!(list["rowCount"], 0);
    // Deleted reviews: out of every list, except an admin's that asks for them.
    let (_, list) = get(
        &node,
        &format!("{REVIEWS}?revieweeId={}", host.id),
        Some(&admin.token),
    )
    .await;
    assert_eq!(list["rowCount"], 0);
    let (status, list) = get(
        &node,
        &format!("{REVIEWS}?revieweeId={}&isActive=false", host.id),
        Some(&admin.token),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["rowCount"], 3);
    let (status, _) = get(
        &node,
        &format!("{REVIEWS}?isActive=false"),
        Some(&host.token),
    )
    .await;
    assert_eq!(status, 403);
    // The listing's aggregate did not move.
    assert_eq!(
        stats(&node, &admin, "listing", &listing_id).await,
        public(3.0, 3)
    );
}

#[actix_web::test]
async fn reviewers_change_and_delete_only_before_publication() {
    let (node, admin) = node_with_admin().await;
    let (guest, host) = (node.user().await, node.user().await);
    let stay = completed_stay(&node, &guest, &host).await;
    let of_host = review(&node, &guest, &stay, "host", &host.id, 2).await;
    let one = format!("{REVIEWS}/{}", id(&of_host));

    // Before publication the reviewer edits the text, and nothing else.
    let (status, edited) = patch(
        &node,
        &one,
        &guest.token,
        json!({"reviewText": "On second thought"}),
    )
    .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["review"]["reviewText"], "On second thought");
    assert_eq!(edited["review"]["recordVersion"], 2);
    assert_eq!(edited["review"]["rating"], 2);
    for body in [
        json!({"moderationStatus": "approved"}),
        json!({"isPublished": true}),
    ] {
        let (status, answer) = patch(&node, &one, &guest.token, body.clone()).await;
        assert_eq!(status, 403, "{body}: {answer}");
    }
    for body in [
        json!({"rating": 5}),
        json!({"revieweeId": host.id}),
        json!({}),
        json!({"reviewText": ""}),
        json!({"moderationStatus": "gone"}),
    ] {
        let (status, answer) = patch(&node, &one, &guest.token, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    // The host cannot see it yet, so cannot touch it.
    let (status, _) = patch(&node, &one, &host.token, json!({"reviewText": "no"})).await;
    assert_eq!(status, 404);
    let (status, _) = delete(&node, &one, &host.token).await;
    assert_eq!(status, 404);

    // The reviewer deletes it before publication, and may review again.
    let (status, deleted) = delete(&node, &one, &guest.token).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["review"]["isActive"], false);
    assert_eq!(deleted["review"]["reviewText"], "On second thought");
    let (status, _) = get(&node, &one, Some(&guest.token)).await;
    assert_eq!(status, 404);
    let (status, _) = patch(&node, &one, &guest.token, json!({"reviewText": "back"})).await;
    assert_eq!(status, 404, "a deleted review does not change");
    let again = review(&node, &guest, &stay, "host", &host.id, 4).await;
    let again_path = format!("{REVIEWS}/{}", id(&again));

    // An admin may publish one review early.
    let of_listing = review(&node, &guest, &stay, "listing", &stay.listing_id, 5).await;
    let listing_path = format!("{REVIEWS}/{}", id(&of_listing));
    let (status, published) = patch(
        &node,
        &listing_path,
        &admin.token,
        json!({"isPublished": true}),
    )
    .await;
    assert_eq!(status, 200, "{published}");
    assert_eq!(published["review"]["isPublished"], true);
    let (status, _) = get(&node, &listing_path, None).await;
    assert_eq!(status, 200);
    let (status, _) = get(&node, &again_path, Some(&host.token)).await;
    assert_eq!(status, 404, "the other reviews stay blind");
    assert_eq!(
        stats(&node, &admin, "listing", &stay.listing_id).await,
        public(5.0, 1)
    );

    // The host's side publishes the rest; from then on only admins change them.
    review(&node, &host, &stay, "guest", &guest.id, 4).await;
    let (status, body) = patch(
        &node,
        &again_path,
        &guest.token,
        json!({"reviewText": "edit"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_error(&body, 409, "errMsg_reviewAlreadyPublished");
    let (status, body) = delete(&node, &again_path, &guest.token).await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = patch(
        &node,
        &again_path,
        &host.token,
        json!({"reviewText": "mine now"}),
    )
    .await;
    assert_eq!(status, 403, "the reviewee sees it but does not edit it");
    let (status, _) = delete(&node, &again_path, &host.token).await;
    assert_eq!(status, 403);
    let (status, _) = patch(
        &node,
        &again_path,
        &admin.token,
        json!({"reviewText": "admins moderate"}),
    )
    .await;
    assert_eq!(status, 403, "admins moderate, they do not write");
    let (status, body) = patch(
        &node,
        &again_path,
        &admin.token,
        json!({"isPublished": false}),
    )
    .await;
    assert_eq!(
        status, 409,
        "published is for good; moderation hides: {body}"
    );
    assert_eq!(stats(&node, &admin, "host", &host.id).await, public(4.0, 1));
    let (status, deleted) = delete(&node, &again_path, &admin.token).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["review"]["isActive"], false);
    assert_eq!(stats(&node, &admin, "host", &host.id).await, hidden());
    let (status, _) = get(&node, &again_path, Some(&admin.token)).await;
    assert_eq!(status, 200, "admins still read it");
    let (status, _) = get(&node, &again_path, Some(&host.token)).await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn review_lists_filter_and_page() {
    let (node, admin) = node_with_admin().await;
    let (guest, host) = (node.user().await, node.user().await);
    let stay = completed_stay(&node, &guest, &host).await;
    let of_host = review(&node, &guest, &stay, "host", &host.id, 5).await;
    let of_listing = review(&node, &guest, &stay, "listing", &stay.listing_id, 4).await;
    let of_guest = review(&node, &host, &stay, "guest", &guest.id, 3).await;
    let list_of = |query: &str| format!("{REVIEWS}?{query}");
    for (query, want) in [
        (
            format!("reviewerId={}", guest.id),
            vec![id(&of_host), id(&of_listing)],
        ),
        (format!("reviewerId={}", host.id), vec![id(&of_guest)]),
        ("revieweeType=Listing".to_owned(), vec![id(&of_listing)]),
        (
            "revieweeType=host&revieweeType=guest".to_owned(),
            vec![id(&of_host), id(&of_guest)],
        ),
        (format!("revieweeId={}", guest.id), vec![id(&of_guest)]),
        ("revieweeType=null".to_owned(), vec![]),
        ("reservationId=nope".to_owned(), vec![]),
    ] {
        let (status, list) = get(&node, &list_of(&query), None).await;
        assert_eq!(status, 200, "{query}: {list}");
        assert_eq!(ids(&list, "reviews"), sorted(want), "{query}");
    }
    let (_, page) = get(&node, &list_of("pageRowCount=2&pageNumber=2"), None).await;
    assert_eq!(page["rowCount"], 1);
    assert_eq!(
        page["paging"],
        json!({"pageNumber": 2, "pageRowCount": 2, "totalRowCount": 3, "pageCount": 2})
    );
    for bad in [
        "revieweeType=cat",
        "rating=5",
        "pageRowCount=0",
        "isActive=maybe",
    ] {
        let (status, body) = get(&node, &list_of(bad), None).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, _) = get(&node, &list_of(""), Some("not-a-token")).await;
    assert_eq!(status, 401);
    // Aggregates filter by reviewee and type.
    let (_, list) = get(&node, &format!("{AGGREGATES}?revieweeType=GUEST"), None).await;
    assert_eq!(list["rowCount"], 1);
    assert_eq!(list["reviewAggregates"][0]["revieweeId"], guest.id.as_str());
    let (_, list) = get(
        &node,
        &format!(
            "{AGGREGATES}?revieweeId={}&revieweeId={}",
            host.id, stay.listing_id
        ),
        None,
    )
    .await;
    assert_eq!(list["rowCount"], 2);
    let (status, _) = get(&node, &format!("{AGGREGATES}?revieweeType=cat"), None).await;
    assert_eq!(status, 400);
    let (status, _) = get(&node, &format!("{AGGREGATES}/nope"), Some(&admin.token)).await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn both_sides_reviewing_at_once_publish_both_and_a_twin_is_refused() {
    let (node, admin) = node_with_admin().await;
    let (guest, host) = (node.user().await, node.user().await);
    let stay = completed_stay(&node, &guest, &host).await;
    let (by_guest, by_host, twin) = tokio::join!(
        post(
            &node,
            REVIEWS,
            &guest.token,
            review_body(&stay, "host", &host.id, 5)
        ),
        post(
            &node,
            REVIEWS,
            &host.token,
            review_body(&stay, "guest", &guest.id, 4)
        ),
        post(
            &node,
            REVIEWS,
            &guest.token,
            review_body(&stay, "host", &host.id, 1)
        ),
    );
    let mut statuses = [by_guest.0, twin.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "{by_guest:?} {twin:?}");
    assert_eq!(by_host.0, 201, "{by_host:?}");
    // Whichever came last saw the other side: both are public now, and counted once.
    let (_, list) = get(
        &node,
        &format!("{REVIEWS}?reservationId={}", stay.reservation_id),
        None,
    )
    .await;
    assert_eq!(list["rowCount"], 2, "{list}");
    let host_rating = if by_guest.0 == 201 { 5.0 } else { 1.0 };
    assert_eq!(
        stats(&node, &admin, "host", &host.id).await,
        public(host_rating, 1)
    );
    assert_eq!(
        stats(&node, &admin, "guest", &guest.id).await,
        public(4.0, 1)
    );
}

#[actix_web::test]
async fn concurrent_moderation_leaves_the_aggregate_exact() {
    let (node, admin) = node_with_admin().await;
    let host = node.user().await;
    let listing_id = listing(&node, &host).await;
    let mut paths = Vec::new();
    for rating in [5, 2, 4] {
        let guest = node.user().await;
        let stay = completed_stay_at(&node, &guest, &host, &listing_id).await;
        let of_host = review(&node, &guest, &stay, "host", &host.id, rating).await;
        review(&node, &host, &stay, "guest", &guest.id, 5).await;
        paths.push(format!("{REVIEWS}/{}", id(&of_host)));
    }
    assert_eq!(
        stats(&node, &admin, "host", &host.id).await,
        public(3.67, 3)
    );
    let reject = json!({"moderationStatus": "rejected"});
    let (a, b, c) = tokio::join!(
        patch(&node, &paths[0], &admin.token, reject.clone()),
        patch(&node, &paths[1], &admin.token, reject.clone()),
        patch(&node, &paths[2], &admin.token, reject.clone()),
    );
    assert_eq!([a.0, b.0, c.0], [200, 200, 200], "{a:?} {b:?} {c:?}");
    assert_eq!(stats(&node, &admin, "host", &host.id).await, hidden());
    let approve = json!({"moderationStatus": "approved"});
    let (a, b) = tokio::join!(
        patch(&node, &paths[0], &admin.token, approve.clone()),
        patch(&node, &paths[1], &admin.token, approve.clone()),
    );
    assert_eq!([a.0, b.0], [200, 200]);
    assert_eq!(stats(&node, &admin, "host", &host.id).await, public(3.5, 2));
}

#[actix_web::test]
async fn every_review_route_is_in_the_openapi_document() {
    let node = crate::helpers::spawn_node().await;
    let doc: Value = node.get("/openapi.json").await.json().await.unwrap();
    let paths = &doc["paths"];
    for (path, methods) in [
        ("/reviewsystem-api/v1/reviews", &["get", "post"][..]),
        (
            "/reviewsystem-api/v1/reviews/{reviewId}",
            &["get", "patch", "delete"],
        ),
        ("/reviewsystem-api/v1/reviewaggregates", &["get"]),
        (
            "/reviewsystem-api/v1/reviewaggregates/{reviewAggregateId}",
            &["get"],
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
