//! The booking service's records through HTTP: payment records (append-only, admins write),
//! disputes (parties open, admins decide), reservation payments (the payment flow writes,
//! admins correct), payment customers and methods (their user's own), the access rules of
//! each, and the 400s of bad input.

use serde_json::{json, Value};

use crate::helpers::{spawn_node, spawn_node_with, TestNode, TestUser};

const ADMIN_EMAIL: &str = "records-admin@example.com";
const ADMIN_PASSWORD: &str = "records admin secret";

async fn send(
    node: &TestNode,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    crate::helpers::call(node, method, path, Some(token), body.as_ref()).await
}

async fn get(node: &TestNode, path: &str, user: &TestUser) -> (u16, Value) {
    send(node, reqwest::Method::GET, path, &user.token, None).await
}

async fn post(node: &TestNode, path: &str, user: &TestUser, body: Value) -> (u16, Value) {
    send(node, reqwest::Method::POST, path, &user.token, Some(body)).await
}

async fn patch(node: &TestNode, path: &str, user: &TestUser, body: Value) -> (u16, Value) {
    send(node, reqwest::Method::PATCH, path, &user.token, Some(body)).await
}

async fn delete(node: &TestNode, path: &str, user: &TestUser) -> (u16, Value) {
    send(node, reqwest::Method::DELETE, path, &user.token, None).await
}

fn url(path: &str) -> String {
    format!("/bookingmanagement-api{path}")
}

/// A node with an admin, and that admin's session.
async fn node_with_admin() -> (TestNode, TestUser) {
    let node = spawn_node_with(|s| {
        s.admin_email = Some(ADMIN_EMAIL.into());
        s.admin_password = Some(secrecy::SecretString::from(ADMIN_PASSWORD.to_owned()));
    })
    .await;
    let admin = node.log_in_again(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    (node, admin)
}

fn day(from_today: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(from_today))
        .format("%Y-%m-%d")
        .to_string()
}

/// A published listing of `host` at 120 USD a night.
async fn listing(node: &TestNode, host: &TestUser) -> String {
    let (status, body) = post(
        node,
        "/propertycatalog-api/v1/listings",
        host,
        json!({"title": "Loft", "address": "1 Main St", "pricePerNight": 120,
               "description": "d", "propertyType": "apartment", "location": {},
               "currency": "USD", "approvalType": "manual", "isPublished": true}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["listing"]["id"].as_str().unwrap().to_owned()
}

/// A pending reservation of `guest` at `host`'s new listing, `nights` nights from `start`
/// days from today.
async fn reservation_from(
    node: &TestNode,
    guest: &TestUser,
    host: &TestUser,
    start: i64,
    nights: i64,
) -> Value {
    let listing_id = listing(node, host).await;
    let (status, body) = post(
        node,
        &url("/v1/reservations"),
        guest,
        json!({"listingId": listing_id, "approvalType": "manual", "bookingStatus": "pending",
               "hostId": host.id, "checkIn": day(start), "checkOut": day(start + nights),
               "currency": "USD", "guestCount": 1, "totalPrice": 120 * nights,
               "disputeStatus": "none", "bookingPoliciesSnapshot": {},
               "cancellationPolicySnapshot": {}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["reservation"].clone()
}

/// A reservation's id, for a new guest and host; returns (reservation id, guest, host).
async fn reservation(node: &TestNode) -> (String, TestUser, TestUser) {
    let (guest, host) = (node.user().await, node.user().await);
    let reservation = reservation_from(node, &guest, &host, 10, 3).await;
    assert_eq!(reservation["guestId"], guest.id.as_str());
    assert_eq!(reservation["hostId"], host.id.as_str());
    let id = reservation["id"].as_str().unwrap().to_owned();
    (id, guest, host)
}

fn record_body(reservation_id: &str) -> Value {
    json!({"reservationId": reservation_id, "stripeChargeId": "ch_1", "payoutAmountHost": 300.5,
           "paymentIntentId": "pi_manual_1", "currency": "usd", "cityTax": 12.25,
           "refundAmount": 0, "amountPaid": 360, "paymentStatus": "paid",
           "platformFee": 47.25, "paymentDate": "2025-05-01T10:00:00Z"})
}

fn dispute_body(reservation_id: &str, raised_by: &str) -> Value {
    json!({"reportedAt": "2001-01-01T00:00:00Z", "reservationId": reservation_id,
           "raisedBy": raised_by, "issueType": "cleanliness", "description": "dusty",
           "resolutionStatus": "resolved"})
}

fn payment_body(order_id: &str) -> Value {
    json!({"orderId": order_id, "paymentId": "pi_manual_42", "paymentStatus": "requires_capture",
           "statusLiteral": "authorized", "redirectUrl": "https://example.com/done"})
}

fn assert_error(status: u16, body: &Value, expected_status: u16, message: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["result"], "ERR", "{body}");
    assert_eq!(body["status"], expected_status, "{body}");
    assert_eq!(body["message"], message, "{body}");
}

#[actix_web::test]
async fn every_route_needs_a_session() {
    let node = spawn_node().await;
    let id = uuid::Uuid::new_v4();
    for (method, path) in [
        (reqwest::Method::POST, "/v1/paymentrecords".to_owned()),
        (reqwest::Method::GET, format!("/v1/paymentrecords/{id}")),
        (reqwest::Method::GET, "/v1/paymentrecords".to_owned()),
        (reqwest::Method::POST, "/v1/disputes".to_owned()),
        (reqwest::Method::GET, format!("/v1/disputes/{id}")),
        (reqwest::Method::GET, "/v1/disputes".to_owned()),
        (reqwest::Method::PATCH, format!("/v1/disputes/{id}")),
        (reqwest::Method::GET, format!("/v1/reservationpayment/{id}")),
        (reqwest::Method::GET, "/v1/reservationpayments".to_owned()),
        (reqwest::Method::POST, "/v1/reservationpayment".to_owned()),
        (
            reqwest::Method::PATCH,
            format!("/v1/reservationpayment/{id}"),
        ),
        (
            reqwest::Method::DELETE,
            format!("/v1/reservationpayment/{id}"),
        ),
        (
            reqwest::Method::GET,
            format!("/v1/reservationpaymentbyorderid/{id}"),
        ),
        (
            reqwest::Method::GET,
            "/v1/reservationpaymentbypaymentid/pi_1".to_owned(),
        ),
        (reqwest::Method::GET, format!("/v1/paymentcustomers/{id}")),
        (reqwest::Method::GET, "/v1/paymentcustomers".to_owned()),
        (
            reqwest::Method::GET,
            format!("/v1/paymentcustomermethods/{id}"),
        ),
    ] {
        let mut request = node.http.request(method.clone(), node.url(&url(&path)));
        if method == reqwest::Method::POST || method == reqwest::Method::PATCH {
            // A body that parses, so the answer is about the session.
            request = request.json(&match path.as_str() {
                "/v1/paymentrecords" => record_body(&id.to_string()),
                "/v1/disputes" => dispute_body(&id.to_string(), "x"),
                "/v1/reservationpayment" => payment_body(&id.to_string()),
                _ if path.starts_with("/v1/disputes") => json!({"issueType": "x"}),
                _ => json!({"statusLiteral": "x"}),
            });
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 401, "{method} {path}: {body}");
        assert_eq!(
            body["message"], "errMsg_notAuthenticated",
            "{method} {path}"
        );
    }
}

#[actix_web::test]
async fn manual_payment_writes_are_for_admins_only() {
    let (node, admin) = node_with_admin().await;
    let user = node.user().await;
    let id = uuid::Uuid::new_v4().to_string();
    let (status, body) = post(&node, &url("/v1/paymentrecords"), &user, record_body(&id)).await;
    assert_error(status, &body, 403, "errMsg_forbidden");
    let (status, body) = post(
        &node,
        &url("/v1/reservationpayment"),
        &user,
        payment_body(&id),
    )
    .await;
    assert_error(status, &body, 403, "errMsg_forbidden");
    let path = url(&format!("/v1/reservationpayment/{id}"));
    let (status, body) = patch(&node, &path, &user, json!({"statusLiteral": "paid"})).await;
    assert_error(status, &body, 403, "errMsg_forbidden");
    let (status, body) = delete(&node, &path, &user).await;
    assert_error(status, &body, 403, "errMsg_forbidden");
    // The same requests from an admin get as far as the missing reservation or payment.
    let (status, body) = post(&node, &url("/v1/paymentrecords"), &admin, record_body(&id)).await;
    assert_error(status, &body, 404, "errMsg_reservationNotFound");
    let (status, body) = post(
        &node,
        &url("/v1/reservationpayment"),
        &admin,
        payment_body(&id),
    )
    .await;
    assert_error(status, &body, 404, "errMsg_reservationNotFound");
    let (status, body) = patch(&node, &path, &admin, json!({"statusLiteral": "paid"})).await;
    assert_error(status, &body, 404, "errMsg_reservationPaymentNotFound");
    let (status, body) = delete(&node, &path, &admin).await;
    assert_error(status, &body, 404, "errMsg_reservationPaymentNotFound");
    // Nothing was written by any of them.
    let (_, list) = get(&node, &url("/v1/paymentrecords"), &admin).await;
    assert_eq!(list["paymentRecords"], json!([]), "{list}");
    let (_, list) = get(
        &node,
        &url("/v1/reservationpayments?isActive=false"),
        &admin,
    )
    .await;
    assert_eq!(list["sys_reservationPayments"], json!([]), "{list}");
}

#[actix_web::test]
async fn unknown_ids_are_404_in_the_marketplace_shape() {
    let (node, admin) = node_with_admin().await;
    let user = node.user().await;
    let id = uuid::Uuid::new_v4();
    for who in [&user, &admin] {
        for (path, message) in [
            (
                format!("/v1/paymentrecords/{id}"),
                "errMsg_paymentRecordNotFound",
            ),
            (format!("/v1/disputes/{id}"), "errMsg_disputeNotFound"),
            (
                format!("/v1/reservationpayment/{id}"),
                "errMsg_reservationPaymentNotFound",
            ),
            (
                format!("/v1/reservationpaymentbyorderid/{id}"),
                "errMsg_reservationPaymentNotFound",
            ),
            (
                "/v1/reservationpaymentbypaymentid/pi_nothing".to_owned(),
                "errMsg_reservationPaymentNotFound",
            ),
        ] {
            let (status, body) = get(&node, &url(&path), who).await;
            assert_error(status, &body, 404, message);
        }
    }
    let (status, body) = patch(
        &node,
        &url(&format!("/v1/disputes/{id}")),
        &admin,
        json!({"resolutionStatus": "reviewing"}),
    )
    .await;
    assert_error(status, &body, 404, "errMsg_disputeNotFound");
    let (status, body) = post(
        &node,
        &url("/v1/disputes"),
        &user,
        dispute_body(&id.to_string(), &user.id),
    )
    .await;
    assert_error(status, &body, 404, "errMsg_reservationNotFound");
}

#[actix_web::test]
async fn payment_records_and_disputes_have_no_update_or_delete_routes() {
    let (node, admin) = node_with_admin().await;
    let id = uuid::Uuid::new_v4();
    // What the node answers for a route that does not exist at all...
    let (status, unknown) = get(&node, &url("/v1/nosuchthing"), &admin).await;
    assert_error(status, &unknown, 404, "errMsg_routeNotFound");
    // ...is what it answers for a change of an append-only record.
    let record = url(&format!("/v1/paymentrecords/{id}"));
    for (status, body) in [
        patch(&node, &record, &admin, json!({"amountPaid": 1})).await,
        delete(&node, &record, &admin).await,
        send(
            &node,
            reqwest::Method::PUT,
            &record,
            &admin.token,
            Some(json!({})),
        )
        .await,
        delete(&node, &url(&format!("/v1/disputes/{id}")), &admin).await,
    ] {
        assert_error(status, &body, 404, "errMsg_routeNotFound");
    }
}

#[actix_web::test]
async fn bad_input_is_400_in_the_marketplace_shape() {
    let (node, admin) = node_with_admin().await;
    let id = uuid::Uuid::new_v4().to_string();
    let with = |base: Value, key: &str, value: Value| {
        let mut body = base;
        body[key] = value;
        body
    };
    let without = |base: Value, key: &str| {
        let mut body = base;
        body.as_object_mut().unwrap().remove(key);
        body
    };
    let long_id = "x".repeat(65);
    let record = record_body(&id);
    for body in [
        with(record.clone(), "surprise", json!(1)),
        with(record.clone(), "amountPaid", json!("360")),
        with(record.clone(), "amountPaid", json!(12.345)),
        with(record.clone(), "amountPaid", json!(-1)),
        with(record.clone(), "amountPaid", json!(1e30)),
        with(record.clone(), "cityTax", json!(0.001)),
        with(record.clone(), "platformFee", json!(true)),
        with(record.clone(), "paymentStatus", json!("settled")),
        with(record.clone(), "currency", json!("XXX")),
        with(record.clone(), "paymentDate", json!("yesterday")),
        with(record.clone(), "reservationId", json!(long_id)),
        with(record.clone(), "paymentIntentId", json!("p".repeat(256))),
        with(record.clone(), "paymentIntentId", json!("")),
        without(record.clone(), "amountPaid"),
        without(record.clone(), "paymentIntentId"),
        json!([]),
    ] {
        let (status, answer) = post(&node, &url("/v1/paymentrecords"), &admin, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["result"], "ERR", "{answer}");
    }
    let user = node.user().await;
    let dispute = dispute_body(&id, &user.id);
    for body in [
        with(dispute.clone(), "surprise", json!(1)),
        with(dispute.clone(), "issueType", json!("i".repeat(101))),
        with(dispute.clone(), "issueType", json!(" ")),
        with(dispute.clone(), "description", json!("d".repeat(5001))),
        with(dispute.clone(), "description", json!(7)),
        with(dispute.clone(), "resolutionStatus", json!("open")),
        with(dispute.clone(), "refundApproved", json!("yes")),
        with(dispute.clone(), "reportedAt", json!(17)),
        with(dispute.clone(), "resolvedAt", json!("soon")),
        without(dispute.clone(), "issueType"),
        without(dispute.clone(), "reservationId"),
    ] {
        let (status, answer) = post(&node, &url("/v1/disputes"), &user, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["result"], "ERR", "{answer}");
    }
    let payment = payment_body(&id);
    for body in [
        with(payment.clone(), "ownerId", json!(user.id)),
        with(payment.clone(), "redirectUrl", json!("javascript:alert(1)")),
        with(
            payment.clone(),
            "redirectUrl",
            json!(format!("https://{}", "a".repeat(2048))),
        ),
        with(payment.clone(), "statusLiteral", json!("s".repeat(65))),
        with(payment.clone(), "paymentStatus", json!(3)),
        without(payment.clone(), "paymentId"),
    ] {
        let (status, answer) =
            post(&node, &url("/v1/reservationpayment"), &admin, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
    }
    let path = url(&format!("/v1/reservationpayment/{id}"));
    for body in [json!({}), json!({"orderId": id}), json!({"paymentId": ""})] {
        let (status, answer) = patch(&node, &path, &admin, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
    }
    let dispute_path = url(&format!("/v1/disputes/{id}"));
    for body in [
        json!({}),
        json!({"raisedBy": user.id}),
        json!({"reservationId": id}),
        json!({"resolutionStatus": "closed"}),
        json!({"refundApproved": "true"}),
    ] {
        let (status, answer) = patch(&node, &dispute_path, &admin, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
    }
    // Malformed JSON.
    let response = node
        .http
        .post(node.url(&url("/v1/disputes")))
        .bearer_auth(&user.token)
        .header("content-type", "application/json")
        .body("{\"reservationId\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["message"], "errMsg_invalidRequestBody");
    // Paging and filters.
    for query in [
        "/v1/paymentrecords?pageRowCount=0",
        "/v1/paymentrecords?pageRowCount=101",
        "/v1/disputes?pageNumber=first",
        "/v1/disputes?resolutionStatus=open",
        "/v1/paymentrecords?paymentStatus=settled",
        "/v1/reservationpayments?isActive=maybe",
        "/v1/reservationpayments?color=red",
        "/v1/paymentcustomers?getJoins=perhaps",
        "/v1/disputes?refundApproved=yes",
    ] {
        let (status, answer) = get(&node, &url(query), &admin).await;
        assert_eq!(status, 400, "{query} -> {answer}");
        assert_eq!(answer["result"], "ERR", "{answer}");
    }
    let (status, _) = get(
        &node,
        &url(&format!(
            "/v1/paymentcustomermethods/{}?cardNumber=1",
            user.id
        )),
        &user,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = get(
        &node,
        &url(&format!("/v1/paymentcustomers/{long_id}")),
        &admin,
    )
    .await;
    assert_eq!(status, 400);
}

#[actix_web::test]
async fn customers_and_methods_are_their_users_own() {
    let (node, admin) = node_with_admin().await;
    let (user, other) = (node.user().await, node.user().await);
    for path in [
        format!("/v1/paymentcustomers/{}", other.id),
        format!("/v1/paymentcustomermethods/{}", other.id),
    ] {
        let (status, body) = get(&node, &url(&path), &user).await;
        assert_error(status, &body, 403, "errMsg_forbidden");
    }
    // Their own, and an admin's view of anyone's: nothing yet.
    for who in [&user, &admin] {
        let (status, body) = get(
            &node,
            &url(&format!("/v1/paymentcustomers/{}", user.id)),
            who,
        )
        .await;
        assert_error(status, &body, 404, "errMsg_paymentCustomerNotFound");
        let (status, body) = get(
            &node,
            &url(&format!("/v1/paymentcustomermethods/{}", user.id)),
            who,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["sys_paymentMethods"], json!([]));
        assert_eq!(body["paging"]["totalRowCount"], 0);
    }
    let (status, body) = get(&node, &url("/v1/paymentcustomers"), &user).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dataName"], "sys_paymentCustomers");
    assert_eq!(body["sys_paymentCustomers"], json!([]));
}

// ---------------------------------------------------------------------------------------------
// With reservations

#[actix_web::test]
async fn admins_record_payments_and_the_parties_read_them() {
    let (node, admin) = node_with_admin().await;
    let (reservation_id, guest, host) = reservation(&node).await;
    let outsider = node.user().await;
    let (status, created) = post(
        &node,
        &url("/v1/paymentrecords"),
        &admin,
        record_body(&reservation_id),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["statusCode"], 201);
    assert_eq!(created["dataName"], "paymentRecord");
    let record = &created["paymentRecord"];
    let record_id = record["id"].as_str().unwrap().to_owned();
    assert_eq!(record["reservationId"], reservation_id.as_str());
    assert_eq!(record["currency"], "USD");
    assert_eq!(record["amountPaid"], json!(360));
    assert_eq!(record["payoutAmountHost"], json!(300.5));
    assert_eq!(record["cityTax"], json!(12.25));
    assert_eq!(record["platformFee"], json!(47.25));
    assert_eq!(record["refundAmount"], json!(0));
    assert_eq!(record["paymentStatus"], "paid");
    assert_eq!(record["paymentStatus_idx"], 1);
    assert_eq!(record["paymentDate"], "2025-05-01T10:00:00.000Z");
    assert_eq!(record["stripeChargeId"], "ch_1");
    assert_eq!(record["paymentIntentId"], "pi_manual_1");
    assert_eq!(record["isActive"], true);
    assert_eq!(record["recordVersion"], 1);
    assert_eq!(record["_owner"], guest.id.as_str());

    // The currency is the reservation's; optional amounts may be left out.
    let (status, body) = post(
        &node,
        &url("/v1/paymentrecords"),
        &admin,
        json!({"reservationId": reservation_id, "paymentIntentId": "pi_2", "currency": "EUR",
               "amountPaid": 1, "paymentStatus": "pending"}),
    )
    .await;
    assert_error(status, &body, 400, "errMsg_currencyIsNotValid");
    let (status, refund) = post(
        &node,
        &url("/v1/paymentrecords"),
        &admin,
        json!({"reservationId": reservation_id, "paymentIntentId": "pi_manual_1",
               "currency": "USD", "amountPaid": 0, "refundAmount": 120.1,
               "paymentStatus": "refunded"}),
    )
    .await;
    assert_eq!(status, 201, "{refund}");
    assert_eq!(refund["paymentRecord"]["refundAmount"], json!(120.1));
    assert_eq!(refund["paymentRecord"]["cityTax"], Value::Null);
    assert_eq!(refund["paymentRecord"]["paymentDate"], Value::Null);

    let path = url(&format!("/v1/paymentrecords/{record_id}"));
    for who in [&guest, &host, &admin] {
        let (status, body) = get(&node, &path, who).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["paymentRecord"], *record);
    }
    let (status, body) = get(&node, &path, &outsider).await;
    assert_error(status, &body, 404, "errMsg_paymentRecordNotFound");

    for (who, expected) in [(&guest, 2), (&host, 2), (&admin, 2), (&outsider, 0)] {
        let (status, list) = get(&node, &url("/v1/paymentrecords"), who).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["paging"]["totalRowCount"], expected, "{list}");
        assert_eq!(list["rowCount"], expected, "{list}");
    }
    // Filters: enum values case-insensitively, ids exactly.
    let (_, paid) = get(&node, &url("/v1/paymentrecords?paymentStatus=PAID"), &guest).await;
    assert_eq!(
        paid["paymentRecords"].as_array().unwrap().len(),
        1,
        "{paid}"
    );
    assert_eq!(paid["paymentRecords"][0]["id"], record_id.as_str());
    let (_, both) = get(
        &node,
        &url("/v1/paymentrecords?paymentStatus=paid&paymentStatus=refunded&pageRowCount=1"),
        &admin,
    )
    .await;
    assert_eq!(both["paging"]["totalRowCount"], 2, "{both}");
    assert_eq!(both["paging"]["pageCount"], 2, "{both}");
    assert_eq!(both["paymentRecords"].as_array().unwrap().len(), 1);
    let other = uuid::Uuid::new_v4();
    let (_, none) = get(
        &node,
        &url(&format!("/v1/paymentrecords?reservationId={other}")),
        &admin,
    )
    .await;
    assert_eq!(none["paging"]["totalRowCount"], 0, "{none}");
}

#[actix_web::test]
async fn disputes_are_opened_by_the_parties_and_decided_by_admins() {
    let (node, admin) = node_with_admin().await;
    let (reservation_id, guest, host) = reservation(&node).await;
    let outsider = node.user().await;
    let create = url("/v1/disputes");

    // Someone else's name as the raiser is refused; so are outsiders and uninvolved admins.
    let (status, body) = post(
        &node,
        &create,
        &guest,
        dispute_body(&reservation_id, &host.id),
    )
    .await;
    assert_error(status, &body, 403, "errMsg_forbidden");
    let (status, body) = post(
        &node,
        &create,
        &outsider,
        dispute_body(&reservation_id, &outsider.id),
    )
    .await;
    assert_error(status, &body, 404, "errMsg_reservationNotFound");
    let (status, body) = post(
        &node,
        &create,
        &admin,
        dispute_body(&reservation_id, &admin.id),
    )
    .await;
    assert_error(status, &body, 403, "errMsg_forbidden");
    let mut assigned = dispute_body(&reservation_id, &guest.id);
    assigned["adminId"] = json!(admin.id);
    let (status, body) = post(&node, &create, &guest, assigned).await;
    assert_error(status, &body, 403, "errMsg_forbidden");
    let mut unrelated = dispute_body(&reservation_id, &guest.id);
    unrelated["relatedPaymentId"] = json!(uuid::Uuid::new_v4().to_string());
    let (status, body) = post(&node, &create, &guest, unrelated).await;
    assert_error(status, &body, 400, "errMsg_relatedPaymentIdIsNotValid");

    // The guest opens one; what the server owns is the server's.
    let (status, created) = post(
        &node,
        &create,
        &guest,
        dispute_body(&reservation_id, &guest.id),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let dispute = created["dispute"].clone();
    let dispute_id = dispute["id"].as_str().unwrap().to_owned();
    assert_eq!(dispute["raisedBy"], guest.id.as_str());
    assert_eq!(dispute["_owner"], guest.id.as_str());
    assert_eq!(dispute["resolutionStatus"], "pending");
    assert_eq!(dispute["resolutionStatus_idx"], 0);
    assert_ne!(dispute["reportedAt"], "2001-01-01T00:00:00.000Z");
    assert_eq!(dispute["reportedAt"], dispute["createdAt"]);
    assert_eq!(dispute["resolvedAt"], Value::Null);
    assert_eq!(dispute["refundApproved"], Value::Null);
    assert_eq!(dispute["adminId"], Value::Null);
    assert_eq!(dispute["issueType"], "cleanliness");
    // The host may open one too, naming itself by default.
    let mut by_host = dispute_body(&reservation_id, &host.id);
    by_host.as_object_mut().unwrap().remove("raisedBy");
    let (status, host_dispute) = post(&node, &create, &host, by_host).await;
    assert_eq!(status, 201, "{host_dispute}");
    assert_eq!(host_dispute["dispute"]["raisedBy"], host.id.as_str());
    // The reservation's own disputeStatus is independent of its disputes.
    let (status, booked) = get(
        &node,
        &url(&format!("/v1/reservations/{reservation_id}")),
        &guest,
    )
    .await;
    assert_eq!(status, 200, "{booked}");
    assert_eq!(booked["reservation"]["disputeStatus"], "none");

    let path = url(&format!("/v1/disputes/{dispute_id}"));
    for who in [&guest, &host, &admin] {
        let (status, body) = get(&node, &path, who).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["dispute"], dispute);
    }
    let (status, body) = get(&node, &path, &outsider).await;
    assert_error(status, &body, 404, "errMsg_disputeNotFound");
    for (who, expected) in [(&guest, 2), (&host, 2), (&admin, 2), (&outsider, 0)] {
        let (_, list) = get(&node, &url("/v1/disputes"), who).await;
        assert_eq!(list["paging"]["totalRowCount"], expected, "{list}");
    }
    let (_, mine) = get(
        &node,
        &url(&format!(
            "/v1/disputes?raisedBy={}&issueType=CLEAN",
            guest.id
        )),
        &host,
    )
    .await;
    assert_eq!(mine["paging"]["totalRowCount"], 1, "{mine}");
    assert_eq!(mine["disputes"][0]["id"], dispute_id.as_str());

    // While pending, the raiser rewords it; nobody but admins decides it.
    let (status, reworded) =
        patch(&node, &path, &guest, json!({"description": "very dusty"})).await;
    assert_eq!(status, 200, "{reworded}");
    assert_eq!(reworded["dispute"]["description"], "very dusty");
    assert_eq!(reworded["dispute"]["recordVersion"], 2);
    for (who, body) in [
        (&guest, json!({"resolutionStatus": "resolved"})),
        (&guest, json!({"refundApproved": true})),
        (&host, json!({"description": "it was clean"})),
    ] {
        let (status, answer) = patch(&node, &path, who, body).await;
        assert_error(status, &answer, 403, "errMsg_forbidden");
    }
    let (status, answer) = patch(&node, &path, &outsider, json!({"description": "x"})).await;
    assert_error(status, &answer, 404, "errMsg_disputeNotFound");
    // The admin assigns it (to an admin only) and reviews it.
    let (status, answer) = patch(&node, &path, &admin, json!({"adminId": host.id})).await;
    assert_error(status, &answer, 400, "errMsg_adminIdIsNotValid");
    let (status, answer) = patch(
        &node,
        &path,
        &admin,
        json!({"resolutionStatus": "reviewing", "resolvedAt": "2030-01-01T00:00:00Z"}),
    )
    .await;
    assert_error(status, &answer, 400, "errMsg_resolvedAtIsNotValid");
    let (status, reviewing) = patch(
        &node,
        &path,
        &admin,
        json!({"adminId": admin.id, "resolutionStatus": "reviewing"}),
    )
    .await;
    assert_eq!(status, 200, "{reviewing}");
    assert_eq!(reviewing["dispute"]["adminId"], admin.id.as_str());
    assert_eq!(reviewing["dispute"]["resolutionStatus_idx"], 1);
    assert_eq!(reviewing["dispute"]["description"], "very dusty");
    let (status, answer) = patch(&node, &path, &guest, json!({"description": "again"})).await;
    assert_error(status, &answer, 409, "errMsg_disputeIsUnderReview");
    let (status, resolved) = patch(
        &node,
        &path,
        &admin,
        json!({"resolutionStatus": "resolved", "refundApproved": true}),
    )
    .await;
    assert_eq!(status, 200, "{resolved}");
    let resolved = &resolved["dispute"];
    assert_eq!(resolved["resolutionStatus"], "resolved");
    assert_eq!(resolved["refundApproved"], true);
    assert!(resolved["resolvedAt"].is_string(), "{resolved}");
    assert_eq!(resolved["recordVersion"], 4);
    let (_, filtered) = get(
        &node,
        &url("/v1/disputes?resolutionStatus=RESOLVED&refundApproved=true"),
        &guest,
    )
    .await;
    assert_eq!(filtered["paging"]["totalRowCount"], 1, "{filtered}");
    // Reopening clears resolvedAt; the given resolvedAt is kept on a close.
    let (_, reopened) = patch(
        &node,
        &path,
        &admin,
        json!({"resolutionStatus": "reviewing"}),
    )
    .await;
    assert_eq!(reopened["dispute"]["resolvedAt"], Value::Null, "{reopened}");
    let (_, rejected) = patch(
        &node,
        &path,
        &admin,
        json!({"resolutionStatus": "rejected", "resolvedAt": "2030-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(
        rejected["dispute"]["resolvedAt"], "2030-01-01T00:00:00.000Z",
        "{rejected}"
    );
}

#[actix_web::test]
async fn disputes_may_name_a_payment_of_their_own_reservation_only() {
    let (node, admin) = node_with_admin().await;
    let (reservation_id, guest, host) = reservation(&node).await;
    let other = reservation_from(&node, &guest, &host, 30, 2).await;
    let other_id = other["id"].as_str().unwrap();
    let (_, record) = post(
        &node,
        &url("/v1/paymentrecords"),
        &admin,
        record_body(other_id),
    )
    .await;
    let record_id = record["paymentRecord"]["id"].as_str().unwrap().to_owned();
    let mut body = dispute_body(&reservation_id, &guest.id);
    body["relatedPaymentId"] = json!(record_id);
    let (status, answer) = post(&node, &url("/v1/disputes"), &guest, body.clone()).await;
    assert_error(status, &answer, 400, "errMsg_relatedPaymentIdIsNotValid");
    body["reservationId"] = json!(other_id);
    let (status, answer) = post(&node, &url("/v1/disputes"), &guest, body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["dispute"]["relatedPaymentId"], record_id.as_str());
}

/// Start the payment of a reservation with a payment method (a test card token or `wallet`).
async fn pay(node: &TestNode, guest: &TestUser, reservation_id: &str, method: &str) -> Value {
    let (status, body) = patch(
        node,
        &url(&format!("/v1/startreservationpayment/{reservation_id}")),
        guest,
        json!({"paymentUserParams": {"paymentMethodId": method}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[actix_web::test]
async fn the_payment_flow_owns_a_reservation_payment_until_it_is_settled() {
    let (node, admin) = node_with_admin().await;
    let (reservation_id, guest, _) = reservation(&node).await;
    // Before the payment starts: the flow will create the payment.
    let (status, body) = post(
        &node,
        &url("/v1/reservationpayment"),
        &admin,
        payment_body(&reservation_id),
    )
    .await;
    assert_error(status, &body, 409, "errMsg_paymentInProgress");
    // Authorized and waiting for the host: the flow will capture or void it.
    let started = pay(&node, &guest, &reservation_id, "pm_card_visa").await;
    assert_eq!(started["reservation"]["paymentConfirmation"], "processing");
    let (status, ticket) = get(
        &node,
        &url(&format!("/v1/reservationpaymentbyorderid/{reservation_id}")),
        &admin,
    )
    .await;
    assert_eq!(status, 200, "{ticket}");
    let ticket = ticket["sys_reservationPayment"].clone();
    let path = url(&format!(
        "/v1/reservationpayment/{}",
        ticket["id"].as_str().unwrap()
    ));
    let (status, body) = patch(&node, &path, &admin, json!({"statusLiteral": "meddled"})).await;
    assert_error(status, &body, 409, "errMsg_paymentInProgress");
    let (status, body) = delete(&node, &path, &admin).await;
    assert_error(status, &body, 409, "errMsg_paymentInProgress");
    let (_, unchanged) = get(&node, &path, &admin).await;
    assert_eq!(unchanged["sys_reservationPayment"], ticket);
}

#[actix_web::test]
async fn admins_correct_settled_reservation_payments_and_the_parties_read_them() {
    let (node, admin) = node_with_admin().await;
    let (open_id, guest, host) = reservation(&node).await;
    pay(&node, &guest, &open_id, "pm_card_visa").await;
    let declined = reservation_from(&node, &guest, &host, 30, 2).await;
    let reservation_id = declined["id"].as_str().unwrap().to_owned();
    let answer = pay(&node, &guest, &reservation_id, "pm_card_chargeDeclined").await;
    assert_eq!(answer["reservation"]["paymentConfirmation"], "canceled");
    let outsider = node.user().await;

    let by_order = url(&format!("/v1/reservationpaymentbyorderid/{reservation_id}"));
    let (status, body) = get(&node, &by_order, &guest).await;
    assert_eq!(status, 200, "{body}");
    let payment = body["sys_reservationPayment"].clone();
    let payment_id = payment["id"].as_str().unwrap().to_owned();
    let gateway_id = payment["paymentId"].as_str().unwrap().to_owned();
    assert_eq!(payment["orderId"], reservation_id.as_str());
    assert_eq!(payment["ownerId"], guest.id.as_str());
    assert_eq!(payment["_owner"], guest.id.as_str());
    assert_eq!(payment["statusLiteral"], "failed");
    assert_eq!(payment["isActive"], true);
    // One active payment per reservation.
    let (status, body) = post(
        &node,
        &url("/v1/reservationpayment"),
        &admin,
        payment_body(&reservation_id),
    )
    .await;
    assert_error(status, &body, 409, "errMsg_reservationPaymentExists");

    let reads = [
        url(&format!("/v1/reservationpayment/{payment_id}")),
        by_order.clone(),
        url(&format!("/v1/reservationpaymentbypaymentid/{gateway_id}")),
    ];
    for path in &reads {
        for who in [&guest, &host, &admin] {
            let (status, body) = get(&node, path, who).await;
            assert_eq!(status, 200, "{path}: {body}");
            assert_eq!(body["sys_reservationPayment"], payment, "{path}");
        }
        let (status, body) = get(&node, path, &outsider).await;
        assert_error(status, &body, 404, "errMsg_reservationPaymentNotFound");
    }
    for (who, expected) in [(&guest, 2), (&host, 2), (&admin, 2), (&outsider, 0)] {
        let (_, list) = get(&node, &url("/v1/reservationpayments"), who).await;
        assert_eq!(list["paging"]["totalRowCount"], expected, "{list}");
    }
    let (_, partial) = get(
        &node,
        &url("/v1/reservationpayments?statusLiteral=FAIL"),
        &host,
    )
    .await;
    assert_eq!(partial["paging"]["totalRowCount"], 1, "{partial}");
    assert_eq!(
        partial["sys_reservationPayments"][0]["id"],
        payment_id.as_str()
    );
    // A LIKE wildcard in a filter is a plain character.
    let (_, wildcard) = get(
        &node,
        &url("/v1/reservationpayments?paymentId=pi%25"),
        &admin,
    )
    .await;
    assert_eq!(wildcard["paging"]["totalRowCount"], 0, "{wildcard}");
    let (_, owned) = get(
        &node,
        &url(&format!("/v1/reservationpayments?ownerId={}", host.id)),
        &admin,
    )
    .await;
    assert_eq!(owned["paging"]["totalRowCount"], 0, "{owned}");
    let (_, ordered) = get(
        &node,
        &url(&format!("/v1/reservationpayments?orderId={reservation_id}")),
        &guest,
    )
    .await;
    assert_eq!(ordered["paging"]["totalRowCount"], 1, "{ordered}");

    let path = url(&format!("/v1/reservationpayment/{payment_id}"));
    let version = payment["recordVersion"].as_i64().unwrap();
    let (status, updated) = patch(
        &node,
        &path,
        &admin,
        json!({"paymentStatus": "failed", "statusLiteral": "reviewed",
               "redirectUrl": "https://example.com/back"}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    let updated = &updated["sys_reservationPayment"];
    assert_eq!(updated["statusLiteral"], "reviewed");
    assert_eq!(updated["redirectUrl"], "https://example.com/back");
    assert_eq!(updated["paymentId"], gateway_id.as_str());
    assert_eq!(updated["recordVersion"], version + 1);
    let (_, cleared) = patch(&node, &path, &admin, json!({"redirectUrl": null})).await;
    assert_eq!(
        cleared["sys_reservationPayment"]["redirectUrl"],
        Value::Null
    );
    assert_eq!(
        cleared["sys_reservationPayment"]["statusLiteral"],
        "reviewed"
    );

    let (status, deleted) = delete(&node, &path, &admin).await;
    assert_eq!(status, 200, "{deleted}");
    let deleted = deleted["sys_reservationPayment"].clone();
    assert_eq!(deleted["isActive"], false);
    assert_eq!(deleted["statusLiteral"], "reviewed");
    assert_eq!(deleted["recordVersion"], version + 3);
    let (status, again) = delete(&node, &path, &admin).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["sys_reservationPayment"], deleted);
    // Gone for the parties, kept for admins; a deleted payment is not changed any more.
    let (status, _) = get(&node, &path, &guest).await;
    assert_eq!(status, 404);
    let (status, kept) = get(&node, &path, &admin).await;
    assert_eq!(status, 200);
    assert_eq!(kept["sys_reservationPayment"], deleted);
    let (status, _) = get(&node, &by_order, &admin).await;
    assert_eq!(status, 404);
    let (status, body) = patch(&node, &path, &admin, json!({"statusLiteral": "x"})).await;
    assert_error(status, &body, 404, "errMsg_reservationPaymentNotFound");
    let (_, list) = get(&node, &url("/v1/reservationpayments"), &guest).await;
    assert_eq!(list["paging"]["totalRowCount"], 1, "{list}");
    let (_, hidden) = get(
        &node,
        &url("/v1/reservationpayments?isActive=false"),
        &guest,
    )
    .await;
    assert_eq!(hidden["paging"]["totalRowCount"], 0, "{hidden}");
    let (_, list) = get(
        &node,
        &url("/v1/reservationpayments?isActive=false"),
        &admin,
    )
    .await;
    assert_eq!(list["paging"]["totalRowCount"], 1, "{list}");
    assert_eq!(list["sys_reservationPayments"][0], deleted);
    // The reservation may have a new payment now; it is the guest's.
    let (status, body) = post(
        &node,
        &url("/v1/reservationpayment"),
        &admin,
        payment_body(&reservation_id),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let created = &body["sys_reservationPayment"];
    assert_eq!(created["ownerId"], guest.id.as_str());
    assert_eq!(created["paymentId"], "pi_manual_42");
    assert_eq!(created["paymentStatus"], "requires_capture");
    assert_eq!(created["statusLiteral"], "authorized");
    assert_eq!(created["redirectUrl"], "https://example.com/done");
    assert_eq!(created["recordVersion"], 1);
    let (_, now) = get(&node, &by_order, &host).await;
    assert_eq!(now["sys_reservationPayment"], *created);
}

#[actix_web::test]
async fn a_card_payment_leaves_the_payment_the_customer_and_the_card() {
    let (node, admin) = node_with_admin().await;
    let (reservation_id, guest, host) = reservation(&node).await;
    let outsider = node.user().await;
    pay(&node, &guest, &reservation_id, "pm_card_visa").await;

    let (status, by_order) = get(
        &node,
        &url(&format!("/v1/reservationpaymentbyorderid/{reservation_id}")),
        &host,
    )
    .await;
    assert_eq!(status, 200, "{by_order}");
    let payment = &by_order["sys_reservationPayment"];
    assert_eq!(payment["ownerId"], guest.id.as_str());
    let gateway_id = payment["paymentId"].as_str().unwrap();
    assert!(gateway_id.starts_with("pi_"), "{payment}");
    let (status, by_payment) = get(
        &node,
        &url(&format!("/v1/reservationpaymentbypaymentid/{gateway_id}")),
        &guest,
    )
    .await;
    assert_eq!(status, 200, "{by_payment}");
    assert_eq!(by_payment["sys_reservationPayment"], *payment);

    for who in [&guest, &admin] {
        let (status, customer) = get(
            &node,
            &url(&format!("/v1/paymentcustomers/{}", guest.id)),
            who,
        )
        .await;
        assert_eq!(status, 200, "{customer}");
        let customer = &customer["sys_paymentCustomer"];
        assert_eq!(customer["userId"], guest.id.as_str());
        assert_eq!(customer["platform"], "test");
        assert!(customer["customerId"].as_str().unwrap().starts_with("cus_"));
        let (status, methods) = get(
            &node,
            &url(&format!("/v1/paymentcustomermethods/{}", guest.id)),
            who,
        )
        .await;
        assert_eq!(status, 200, "{methods}");
        let methods = methods["sys_paymentMethods"].as_array().unwrap();
        assert_eq!(methods.len(), 1, "{methods:?}");
        assert_eq!(methods[0]["paymentMethodId"], "pm_card_visa");
        assert_eq!(methods[0]["customerId"], customer["customerId"]);
        assert_eq!(methods[0]["platform"], "test");
        let card = methods[0]["cardInfo"].as_object().unwrap();
        let mut keys: Vec<&str> = card.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["brand", "expMonth", "expYear", "last4"], "{card:?}");
        assert_eq!(card["brand"], "visa");
        assert_eq!(card["last4"], "4242");
        assert!(!methods[0].to_string().contains("4242424242424242"));
    }
    let (_, visa) = get(
        &node,
        &url(&format!(
            "/v1/paymentcustomermethods/{}?cardInfo=VISA",
            guest.id
        )),
        &guest,
    )
    .await;
    assert_eq!(visa["paging"]["totalRowCount"], 1, "{visa}");
    let (_, amex) = get(
        &node,
        &url(&format!(
            "/v1/paymentcustomermethods/{}?cardInfo=amex",
            guest.id
        )),
        &guest,
    )
    .await;
    assert_eq!(amex["paging"]["totalRowCount"], 0, "{amex}");
    for (who, expected) in [(&guest, 1), (&host, 0), (&outsider, 0)] {
        let (_, list) = get(&node, &url("/v1/paymentcustomers"), who).await;
        assert_eq!(list["paging"]["totalRowCount"], expected, "{list}");
    }
    let (_, list) = get(
        &node,
        &url(&format!(
            "/v1/paymentcustomers?userId={}&platform=TE",
            guest.id
        )),
        &admin,
    )
    .await;
    assert_eq!(list["paging"]["totalRowCount"], 1, "{list}");
    for path in [
        format!("/v1/paymentcustomers/{}", guest.id),
        format!("/v1/paymentcustomermethods/{}", guest.id),
    ] {
        let (status, _) = get(&node, &url(&path), &host).await;
        assert_eq!(status, 403, "{path}");
    }
}

#[actix_web::test]
async fn concurrent_manual_payments_of_one_reservation_make_one() {
    let (node, admin) = node_with_admin().await;
    let (reservation_id, guest, _) = reservation(&node).await;
    // Cancelled before any payment started: settled, with no payment of the flow.
    let (status, body) = delete(
        &node,
        &url(&format!("/v1/reservations/{reservation_id}")),
        &guest,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reservation"]["paymentConfirmation"], "canceled");
    let path = url("/v1/reservationpayment");
    let attempts = (0..8).map(|i| {
        let mut body = payment_body(&reservation_id);
        body["paymentId"] = json!(format!("pi_race_{i}"));
        post(&node, &path, &admin, body)
    });
    let answers = futures_util::future::join_all(attempts).await;
    let mut statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [201, 409, 409, 409, 409, 409, 409, 409],
        "{answers:?}"
    );
    let (_, list) = get(
        &node,
        &url(&format!(
            "/v1/reservationpayments?orderId={reservation_id}&isActive=false"
        )),
        &admin,
    )
    .await;
    assert_eq!(list["paging"]["totalRowCount"], 0, "{list}");
    let (_, list) = get(
        &node,
        &url(&format!("/v1/reservationpayments?orderId={reservation_id}")),
        &admin,
    )
    .await;
    assert_eq!(list["paging"]["totalRowCount"], 1, "{list}");
}

#[actix_web::test]
async fn concurrent_dispute_updates_are_each_applied_once_or_refused() {
    let (node, admin) = node_with_admin().await;
    let (reservation_id, guest, _) = reservation(&node).await;
    let (status, created) = post(
        &node,
        &url("/v1/disputes"),
        &guest,
        dispute_body(&reservation_id, &guest.id),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let path = url(&format!(
        "/v1/disputes/{}",
        created["dispute"]["id"].as_str().unwrap()
    ));
    let attempts = (0..8).map(|i| {
        let body = if i % 2 == 0 {
            json!({"description": format!("take {i}")})
        } else {
            json!({"refundApproved": i % 4 == 1})
        };
        patch(&node, &path, &admin, body)
    });
    let answers = futures_util::future::join_all(attempts).await;
    let applied = answers.iter().filter(|(status, _)| *status == 200).count();
    assert!(applied >= 1, "{answers:?}");
    for (status, body) in &answers {
        assert!(*status == 200 || *status == 409, "{body}");
    }
    // Every applied update raised the version once: none overwrote another unseen.
    let (_, after) = get(&node, &path, &admin).await;
    assert_eq!(
        after["dispute"]["recordVersion"],
        json!(1 + applied),
        "{after}"
    );
    let versions: std::collections::BTreeSet<i64> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body["dispute"]["recordVersion"].as_i64().unwrap())
        .collect();
    assert_eq!(versions.len(), applied, "{answers:?}");
}
