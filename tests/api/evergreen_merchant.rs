//! Evergreen merchants over HTTP: register_merchant, suggested_merchants,
//! make_terminal_payment (statuses, PIN lockout, duplicate submissions), QR cards
//! (issue_qr_cards, qr_status, the whole card flow) and items.

use protocol::{Event, ServerFrame};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_node, spawn_node_with, TestNode};

const PIN: &str = "12345";
const WRONG_PIN: &str = "54321";

/// An Evergreen user with a session.
#[derive(Debug, Clone)]
struct Evg {
    token: String,
    /// The node's user id (`user:<id>` is their Evergreen id when they have no card).
    id: String,
}

impl Evg {
    fn evg_id(&self) -> String {
        format!("user:{}", self.id)
    }
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A request `meta` block with a fresh request id.
fn meta(token: Option<&str>) -> Value {
    meta_with(token, &request_id())
}

fn meta_with(token: Option<&str>, request_id: &str) -> Value {
    let mut meta = json!({"uuid": "device-1", "client_version": "1.0", "request_id": request_id});
    if let Some(token) = token {
        meta["evg_auth_token"] = json!(token);
    }
    meta
}

/// `meta` with a position.
fn meta_at(token: &str, lat: f64, lon: f64) -> Value {
    let mut meta = meta(Some(token));
    meta["lat"] = json!(lat);
    meta["lon"] = json!(lon);
    meta
}

/// POST an Evergreen call; the status and the JSON body.
async fn call(node: &TestNode, path: &str, body: &Value) -> (StatusCode, Value) {
    let response = node.post_json(&format!("/rest/v01/{path}"), body).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    // As a JSON value (quoted, or a number after a colon): random ids and emails may hold
    // the same five digits inside them.
    for pin in [PIN, WRONG_PIN] {
        let leaked = text.contains(&format!("\"{pin}\"")) || text.contains(&format!(":{pin}"));
        assert!(!leaked, "a PIN leaked: {text}");
    }
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, body)
}

/// POST an Evergreen call that must answer 200.
async fn ok(node: &TestNode, path: &str, body: &Value) -> Value {
    let (status, answer) = call(node, path, body).await;
    assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    answer
}

/// POST an Evergreen call that must fail validation at `path`.
async fn invalid(node: &TestNode, call_path: &str, body: &Value, field: &str) {
    let (status, answer) = call(node, call_path, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{call_path}: {answer}");
    assert_eq!(answer["path"], field, "{call_path}: {answer}");
    assert!(answer["msg"].is_string(), "{answer}");
}

/// Register an Evergreen user (PIN [`PIN`]), optionally with a name and a QR card.
async fn register(node: &TestNode, name: &str, qr_code: Option<&str>) -> Evg {
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let mut body = json!({"meta": meta(None), "pin": PIN, "email": email, "name": name});
    if let Some(code) = qr_code {
        body["qr_code"] = json!(code);
    }
    let answer = ok(node, "register_user", &body).await;
    assert_eq!(answer["status"], "success", "{answer}");
    let token = answer["evg_auth_token"].as_str().unwrap().to_owned();
    let me = node.get_with_token("/auth-api/currentuser", &token).await;
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await.unwrap();
    let id = me["userId"]
        .as_str()
        .or_else(|| me["data"]["userId"].as_str())
        .unwrap_or_else(|| panic!("no userId in {me}"))
        .to_owned();
    Evg { token, id }
}

async fn deposit(node: &TestNode, user: &Evg, amount: &str) {
    let answer = ok(
        node,
        "deposit",
        &json!({"meta": meta(Some(&user.token)), "amount": amount}),
    )
    .await;
    assert_eq!(answer["status"], "success", "{answer}");
}

/// The user's spendable EVG, from account_info.
async fn balance(node: &TestNode, user: &Evg) -> String {
    let answer = ok(
        node,
        "account_info",
        &json!({"meta": meta(Some(&user.token))}),
    )
    .await;
    answer["meta"]["wallet_balance"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_owned()
}

/// Register a user and list them as a merchant at a position.
async fn merchant(node: &TestNode, name: &str, at: (f64, f64), kind: Option<&str>) -> Evg {
    let user = register(node, name, None).await;
    let mut body = json!({"meta": meta_at(&user.token, at.0, at.1), "is_merchant": "true",
                          "description": format!("{name} sells things")});
    if let Some(kind) = kind {
        body["type"] = json!(kind);
    }
    let answer = ok(node, "register_merchant", &body).await;
    assert_eq!(answer["status"], "success", "{answer}");
    user
}

async fn terminal(
    node: &TestNode,
    merchant: &Evg,
    payor: &str,
    amount: &str,
    pin: &str,
    request_id: &str,
) -> Value {
    ok(
        node,
        "make_terminal_payment",
        &json!({"meta": meta_with(Some(&merchant.token), request_id), "amount": amount,
                "description": "one cappuccino", "payor": payor, "PIN": pin}),
    )
    .await
}

async fn assert_ledger_balances(node: &TestNode) {
    let (sums, negative) = node.audit().await;
    assert!(sums.iter().all(|(_, sum)| *sum == 0), "{sums:?}");
    assert_eq!(negative, 0);
}

async fn is_merchant(node: &TestNode, user: &Evg) -> String {
    let answer = ok(
        node,
        "account_info",
        &json!({"meta": meta(Some(&user.token))}),
    )
    .await;
    answer["is_merchant"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------------
// register_merchant

#[actix_web::test]
async fn register_merchant_turns_the_listing_on_and_off() {
    let node = spawn_node().await;
    let user = register(&node, "Agora Cafe", None).await;
    assert_eq!(is_merchant(&node, &user).await, "false");

    // Turning a listing on needs a position.
    invalid(
        &node,
        "register_merchant",
        &json!({"meta": meta(Some(&user.token)), "is_merchant": "true"}),
        "meta.lat",
    )
    .await;
    assert_eq!(is_merchant(&node, &user).await, "false");

    let answer = ok(
        &node,
        "register_merchant",
        &json!({"meta": meta_at(&user.token, 50.0, 15.0), "is_merchant": "true",
                "description": "Cafe/Restaurant, open M-F 12-9pm", "type": "Restaurant"}),
    )
    .await;
    assert_eq!(answer["status"], "success");
    assert_eq!(answer["meta"]["status"], "authorized");
    assert!(answer.get("message").is_none(), "{answer}");
    assert_eq!(is_merchant(&node, &user).await, "true");

    let off = ok(
        &node,
        "register_merchant",
        &json!({"meta": meta(Some(&user.token)), "is_merchant": "false"}),
    )
    .await;
    assert_eq!(off["status"], "success");
    assert_eq!(is_merchant(&node, &user).await, "false");

    // On again without a position: the stored one is kept, as are description and type.
    ok(
        &node,
        "register_merchant",
        &json!({"meta": meta(Some(&user.token)), "is_merchant": "true"}),
    )
    .await;
    assert_eq!(is_merchant(&node, &user).await, "true");
    let seeker = register(&node, "Seeker", None).await;
    let found = ok(
        &node,
        "suggested_merchants",
        &json!({"meta": meta(Some(&seeker.token)), "lat": 50.0, "lon": 15.0}),
    )
    .await;
    assert_eq!(
        found["merchants"],
        json!([{"name": "Agora Cafe", "description": "Cafe/Restaurant, open M-F 12-9pm",
                "type": "restaurant", "user_id": user.evg_id(), "lat": 50.0, "lon": 15.0,
                "distance": 0}])
    );

    // "" clears the description and the type.
    ok(
        &node,
        "register_merchant",
        &json!({"meta": meta(Some(&user.token)), "is_merchant": "true", "description": "",
                "type": ""}),
    )
    .await;
    let found = ok(
        &node,
        "suggested_merchants",
        &json!({"meta": meta(Some(&seeker.token)), "lat": 50.0, "lon": 15.0}),
    )
    .await;
    let listed = &found["merchants"][0];
    assert!(listed.get("description").is_none(), "{listed}");
    assert!(listed.get("type").is_none(), "{listed}");
}

#[actix_web::test]
async fn register_merchant_validates_every_field() {
    let node = spawn_node().await;
    let user = register(&node, "Kim", None).await;
    let at = || meta_at(&user.token, 50.0, 15.0);
    let cases = [
        (json!({"meta": at(), "is_merchant": true}), "is_merchant"),
        (json!({"meta": at(), "is_merchant": "yes"}), "is_merchant"),
        (json!({"meta": at(), "is_merchant": "TRUE"}), "is_merchant"),
        (json!({"meta": at()}), "is_merchant"),
        (
            json!({"meta": at(), "is_merchant": "true", "description": "x".repeat(501)}),
            "description",
        ),
        (
            json!({"meta": at(), "is_merchant": "true", "type": "cafe; drop table"}),
            "type",
        ),
        (
            json!({"meta": at(), "is_merchant": "true", "type": "y".repeat(41)}),
            "type",
        ),
        (
            json!({"meta": at(), "is_merchant": "true", "colour": "green"}),
            "colour",
        ),
        (
            json!({"meta": at(), "is_merchant": "true", "user_id": "nobody"}),
            "user_id",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = call(&node, "register_merchant", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(
            answer["path"].as_str().unwrap().starts_with(field),
            "{body}: {answer}"
        );
    }
    let mut half = meta(Some(&user.token));
    half["lat"] = json!(50.0);
    invalid(
        &node,
        "register_merchant",
        &json!({"meta": half, "is_merchant": "true"}),
        "meta.lon",
    )
    .await;
    let mut far = meta(Some(&user.token));
    far["lat"] = json!(91.0);
    far["lon"] = json!(0.0);
    invalid(
        &node,
        "register_merchant",
        &json!({"meta": far, "is_merchant": "true"}),
        "meta.lat",
    )
    .await;
    assert_eq!(is_merchant(&node, &user).await, "false");

    let (status, answer) = call(
        &node,
        "register_merchant",
        &json!({"meta": meta(None), "is_merchant": "true"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["meta"]["status"], "unauthorized");
    assert_eq!(answer["meta"]["next_step"], "logout");
}

#[actix_web::test]
async fn register_merchant_is_for_the_callers_own_listing() {
    let node = spawn_node().await;
    let card = "abcdef0123456789";
    let user = register(&node, "Kim", Some(card)).await;
    let other = register(&node, "Other", None).await;

    for someone_else in [
        other.evg_id(),
        "facebook:404".to_owned(),
        "user:nobody".to_owned(),
    ] {
        let (status, answer) = call(
            &node,
            "register_merchant",
            &json!({"meta": meta_at(&user.token, 1.0, 1.0), "user_id": someone_else,
                    "is_merchant": "true"}),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["path"], "user_id");
    }
    assert_eq!(is_merchant(&node, &user).await, "false");
    assert_eq!(is_merchant(&node, &other).await, "false");

    // Any of the caller's own ids is accepted.
    for own in [
        user.evg_id(),
        format!("qr:{card}"),
        format!("qr:https://qr.evr.gr/{card}"),
    ] {
        let answer = ok(
            &node,
            "register_merchant",
            &json!({"meta": meta_at(&user.token, 1.0, 1.0), "user_id": own,
                    "is_merchant": "true"}),
        )
        .await;
        assert_eq!(answer["status"], "success");
    }
    assert_eq!(is_merchant(&node, &user).await, "true");
}

#[actix_web::test]
async fn a_repeated_register_merchant_answers_the_first_time() {
    let node = spawn_node().await;
    let user = register(&node, "Kim", None).await;
    let id = request_id();
    let mut first_meta = meta_with(Some(&user.token), &id);
    first_meta["lat"] = json!(10.0);
    first_meta["lon"] = json!(10.0);
    let body = json!({"meta": first_meta, "is_merchant": "true", "description": "yoga"});
    let first = ok(&node, "register_merchant", &body).await;
    // Turned off in between: the repeat does not turn it on again.
    ok(
        &node,
        "register_merchant",
        &json!({"meta": meta(Some(&user.token)), "is_merchant": "false"}),
    )
    .await;
    let again = ok(&node, "register_merchant", &body).await;
    assert_eq!(first, again);
    assert_eq!(is_merchant(&node, &user).await, "false");
    // The same request id for something else is refused.
    let mut other = body.clone();
    other["description"] = json!("pilates");
    invalid(&node, "register_merchant", &other, "meta.request_id").await;
}

// ---------------------------------------------------------------------------------------------
// suggested_merchants

#[actix_web::test]
async fn suggested_merchants_are_the_nearest_twenty_listed_ones() {
    let node = spawn_node().await;
    let center = (50.0, 15.0);
    // 22 merchants due north, 0.03 degrees (about 3.3 km) apart: the 20 nearest are answered.
    let mut expected = Vec::new();
    for i in (1..=22).rev() {
        let lat = center.0 + 0.03 * f64::from(i);
        let m = merchant(
            &node,
            &format!("Shop {i:02}"),
            (lat, center.1),
            Some("groceries"),
        )
        .await;
        expected.push((i, m));
    }
    expected.reverse();
    let unlisted = merchant(&node, "Closed", (center.0 + 0.001, center.1), None).await;
    ok(
        &node,
        "register_merchant",
        &json!({"meta": meta(Some(&unlisted.token)), "is_merchant": "false"}),
    )
    .await;
    let seeker = merchant(&node, "Seeker", center, None).await;

    let answer = ok(
        &node,
        "suggested_merchants",
        &json!({"meta": meta(Some(&seeker.token)), "lat": center.0, "lon": center.1}),
    )
    .await;
    let merchants = answer["merchants"].as_array().unwrap();
    assert_eq!(merchants.len(), 20, "{answer}");
    for ((i, m), found) in expected.iter().zip(merchants) {
        assert_eq!(found["name"], format!("Shop {i:02}"), "{found}");
        assert_eq!(found["user_id"], m.evg_id());
        assert_eq!(found["type"], "groceries");
        assert_eq!(found["description"], format!("Shop {i:02} sells things"));
        assert!(found.get("image").is_none(), "{found}");
        // 0.03 degrees of latitude is 3335.8 m.
        let distance = found["distance"].as_u64().unwrap();
        let want = 3_335.85 * f64::from(*i);
        assert!(
            (distance as f64 - want).abs() <= 2.0,
            "{i}: {distance} vs {want}"
        );
        assert!((found["lat"].as_f64().unwrap() - (center.0 + 0.03 * f64::from(*i))).abs() < 1e-9);
        assert_eq!(found["lon"], center.1);
        let keys: Vec<&String> = found.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 7, "{found}");
    }

    // From meta's position when the body has none.
    let mut from_meta = meta(Some(&seeker.token));
    from_meta["lat"] = json!(center.0 + 0.03 * 22.0);
    from_meta["lon"] = json!(center.1);
    let answer = ok(&node, "suggested_merchants", &json!({"meta": from_meta})).await;
    assert_eq!(answer["merchants"][0]["name"], "Shop 22");
    assert_eq!(answer["merchants"][0]["distance"], 0);

    // The type filter (case-insensitive); an unknown type finds nothing.
    let answer = ok(
        &node,
        "suggested_merchants",
        &json!({"meta": meta(Some(&seeker.token)), "lat": center.0, "lon": center.1,
                "type": "Groceries"}),
    )
    .await;
    assert_eq!(answer["merchants"].as_array().unwrap().len(), 20);
    let answer = ok(
        &node,
        "suggested_merchants",
        &json!({"meta": meta(Some(&seeker.token)), "lat": center.0, "lon": center.1,
                "type": "beauty"}),
    )
    .await;
    assert_eq!(answer["merchants"], json!([]));
}

#[actix_web::test]
async fn suggested_merchants_search_the_whole_map_and_across_the_antimeridian() {
    let node = spawn_node().await;
    let far = merchant(&node, "Far away", (-33.86, 151.2), Some("cafe")).await;
    let across = merchant(&node, "Across", (0.0, -179.99), Some("cafe")).await;
    let seeker = register(&node, "Seeker", None).await;
    let answer = ok(
        &node,
        "suggested_merchants",
        &json!({"meta": meta(Some(&seeker.token)), "lat": 0.0, "lon": 179.99}),
    )
    .await;
    let merchants = answer["merchants"].as_array().unwrap();
    assert_eq!(merchants.len(), 2, "{answer}");
    assert_eq!(merchants[0]["user_id"], across.evg_id());
    let d = merchants[0]["distance"].as_u64().unwrap();
    assert!((2_220..=2_228).contains(&d), "{d}");
    assert_eq!(merchants[1]["user_id"], far.evg_id());
    assert!(merchants[1]["distance"].as_u64().unwrap() > 3_000_000);
}

#[actix_web::test]
async fn suggested_merchants_carry_the_ratings_of_their_feedback() {
    let node = spawn_node().await;
    let shop = merchant(&node, "Rated", (50.0, 15.0), None).await;
    let customer = register(&node, "Dave", None).await;
    deposit(&node, &customer, "10").await;
    let seeker = register(&node, "Seeker", None).await;
    let search = json!({"meta": meta(Some(&seeker.token)), "lat": 50.0, "lon": 15.0});
    let unrated = ok(&node, "suggested_merchants", &search).await;
    assert!(
        unrated["merchants"][0].get("positive_rating").is_none(),
        "{unrated}"
    );
    assert!(
        unrated["merchants"][0].get("negative_rating").is_none(),
        "{unrated}"
    );

    for _ in 0..4 {
        let paid = terminal(&node, &shop, &customer.evg_id(), "1", PIN, &request_id()).await;
        assert_eq!(paid["status"], "success");
    }
    let list = ok(
        &node,
        "transaction_list",
        &json!({"meta": meta(Some(&customer.token))}),
    )
    .await;
    let transactions = list["transactions"].as_array().unwrap();
    assert_eq!(transactions.len(), 4, "{list}");
    for (i, transaction) in transactions.iter().enumerate() {
        let kind = if i == 0 { "negative" } else { "positive" };
        ok(
            &node,
            "leave_feedback",
            &json!({"meta": meta(Some(&customer.token)),
                    "transaction_id": transaction["transaction_id"], "feedback_type": kind}),
        )
        .await;
    }
    let mut search = search;
    search["meta"] = meta(Some(&seeker.token));
    let rated = ok(&node, "suggested_merchants", &search).await;
    assert_eq!(rated["merchants"][0]["positive_rating"], 75, "{rated}");
    assert_eq!(rated["merchants"][0]["negative_rating"], 25, "{rated}");
}

#[actix_web::test]
async fn suggested_merchants_need_a_position() {
    let node = spawn_node().await;
    let seeker = register(&node, "Seeker", None).await;
    let token = seeker.token.as_str();
    invalid(
        &node,
        "suggested_merchants",
        &json!({"meta": meta(Some(token))}),
        "lat",
    )
    .await;
    invalid(
        &node,
        "suggested_merchants",
        &json!({"meta": meta(Some(token)), "lat": 1.0}),
        "lon",
    )
    .await;
    invalid(
        &node,
        "suggested_merchants",
        &json!({"meta": meta(Some(token)), "lat": 100.0, "lon": 1.0}),
        "lat",
    )
    .await;
    invalid(
        &node,
        "suggested_merchants",
        &json!({"meta": meta(Some(token)), "lat": "50", "lon": 1.0}),
        "lat",
    )
    .await;
    invalid(
        &node,
        "suggested_merchants",
        &json!({"meta": meta(Some(token)), "lat": 1.0, "lon": 1.0, "type": "!!"}),
        "type",
    )
    .await;
    invalid(
        &node,
        "suggested_merchants",
        &json!({"meta": meta(Some(token)), "lat": 1.0, "lon": 1.0, "radius": 5}),
        "radius",
    )
    .await;
    let (status, _) = call(
        &node,
        "suggested_merchants",
        &json!({"meta": meta(None), "lat": 1.0, "lon": 1.0}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------------------------------------
// make_terminal_payment

#[actix_web::test]
async fn a_terminal_payment_pays_the_merchant_and_pushes_to_them() {
    let node = spawn_node().await;
    let shop = merchant(&node, "Agora Cafe", (50.0, 15.0), Some("cafe")).await;
    let customer = register(&node, "Dave", None).await;
    deposit(&node, &customer, "100").await;
    let mut ws = node.ws(&shop.token).await;

    let answer = terminal(&node, &shop, &customer.evg_id(), "45", PIN, &request_id()).await;
    assert_eq!(answer["status"], "success", "{answer}");
    // The wallet that answered is the customer's: the merchant sees no balance.
    assert_eq!(answer["meta"], json!({"status": "authorized"}));
    assert!(answer.get("status_message").is_none());
    assert_eq!(balance(&node, &customer).await, "55");
    assert_eq!(balance(&node, &shop).await, "45");

    // The merchant's connections are told.
    loop {
        match ws.recv_skipping_heartbeats().await {
            Some(ServerFrame::Event(push)) => {
                if let Event::PaymentReceived {
                    from,
                    currency,
                    description,
                    amount,
                    ..
                } = push.event
                {
                    assert_eq!(from, customer.id);
                    assert_eq!(currency, "EVG");
                    assert_eq!(description.as_deref(), Some("one cappuccino"));
                    assert_eq!(amount.parse::<f64>().unwrap(), 45.0);
                    break;
                }
            }
            other => panic!("expected a push, got {other:?}"),
        }
    }
    assert_ledger_balances(&node).await;
}

#[actix_web::test]
async fn terminal_payments_answer_every_status() {
    let node = spawn_node().await;
    let shop = merchant(&node, "Shop", (50.0, 15.0), None).await;
    let customer = register(&node, "Dave", None).await;
    deposit(&node, &customer, "30").await;

    let short = terminal(&node, &shop, &customer.evg_id(), "31", PIN, &request_id()).await;
    assert_eq!(short["status"], "insufficient_funds", "{short}");
    assert!(
        short["status_message"].as_str().unwrap().contains("30"),
        "{short}"
    );

    let nobody_has_evg = register(&node, "Empty", None).await;
    let none = terminal(
        &node,
        &shop,
        &nobody_has_evg.evg_id(),
        "1",
        PIN,
        &request_id(),
    )
    .await;
    assert_eq!(none["status"], "insufficient_funds", "{none}");

    for unknown in [
        "facebook:404404",
        "qr:0000000000000000",
        "user:00000000-0000-0000-0000-000000000000",
    ] {
        let answer = terminal(&node, &shop, unknown, "1", PIN, &request_id()).await;
        assert_eq!(answer["status"], "invalid_user", "{unknown}: {answer}");
    }
    let own = terminal(&node, &shop, &shop.evg_id(), "1", PIN, &request_id()).await;
    assert_eq!(own["status"], "invalid_user", "{own}");

    let wrong = terminal(
        &node,
        &shop,
        &customer.evg_id(),
        "1",
        WRONG_PIN,
        &request_id(),
    )
    .await;
    assert_eq!(wrong["status"], "wrong_pin", "{wrong}");
    assert!(
        wrong["status_message"]
            .as_str()
            .unwrap()
            .contains("4 attempt"),
        "{wrong}"
    );

    // Only a merchant with their listing on takes terminal payments.
    let not_a_shop = register(&node, "Not a shop", None).await;
    let answer = terminal(
        &node,
        &not_a_shop,
        &customer.evg_id(),
        "1",
        PIN,
        &request_id(),
    )
    .await;
    assert_eq!(answer["status"], "error", "{answer}");
    ok(
        &node,
        "register_merchant",
        &json!({"meta": meta(Some(&shop.token)), "is_merchant": "false"}),
    )
    .await;
    let answer = terminal(&node, &shop, &customer.evg_id(), "1", PIN, &request_id()).await;
    assert_eq!(answer["status"], "error", "{answer}");

    assert_eq!(balance(&node, &customer).await, "30");
    assert_eq!(balance(&node, &shop).await, "0");
    assert_ledger_balances(&node).await;
}

#[actix_web::test]
async fn terminal_payments_validate_their_input() {
    let node = spawn_node().await;
    let shop = merchant(&node, "Shop", (50.0, 15.0), None).await;
    let customer = register(&node, "Dave", None).await;
    deposit(&node, &customer, "30").await;
    let payor = customer.evg_id();
    let base = || {
        json!({"meta": meta(Some(&shop.token)), "amount": "5", "description": "tea",
               "payor": payor, "PIN": PIN})
    };
    let with = |field: &str, value: Value| {
        let mut body = base();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = base();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let cases = [
        (with("amount", json!("1.5")), "amount"),
        (with("amount", json!("0")), "amount"),
        (with("amount", json!("-3")), "amount"),
        (with("amount", json!("ten")), "amount"),
        (with("amount", json!(5)), "amount"),
        (with("description", json!("  ")), "description"),
        (with("description", json!("d".repeat(501))), "description"),
        (with("payor", json!("dave")), "payor"),
        (with("payor", json!("qr:")), "payor"),
        (with("PIN", json!("1234")), "PIN"),
        (with("PIN", json!("12a45")), "PIN"),
        (with("PIN", json!(12345)), "PIN"),
        (with("pin", json!(PIN)), "pin"),
        (with("item_ids", json!(["1"])), "item_ids[0]"),
        (with("item_ids", json!(vec!["1"; 101])), "item_ids"),
        (without("amount"), "amount"),
        (without("description"), "description"),
        (without("payor"), "payor"),
        (without("PIN"), "PIN"),
    ];
    for (body, field) in cases {
        invalid(&node, "make_terminal_payment", &body, field).await;
    }
    assert_eq!(balance(&node, &customer).await, "30");
}

#[actix_web::test]
async fn five_wrong_pins_lock_terminal_payments() {
    let node = spawn_node().await;
    let shop = merchant(&node, "Shop", (50.0, 15.0), None).await;
    let customer = register(&node, "Dave", None).await;
    deposit(&node, &customer, "100").await;
    let payor = customer.evg_id();

    for left in (1..=4).rev() {
        let answer = terminal(&node, &shop, &payor, "10", WRONG_PIN, &request_id()).await;
        assert_eq!(answer["status"], "wrong_pin", "{answer}");
        let message = answer["status_message"].as_str().unwrap();
        assert!(message.contains(&format!("{left} attempt")), "{message}");
    }
    let fifth = terminal(&node, &shop, &payor, "10", WRONG_PIN, &request_id()).await;
    assert_eq!(fifth["status"], "wrong_pin");
    assert!(
        fifth["status_message"].as_str().unwrap().contains("locked"),
        "{fifth}"
    );
    // Locked: even the right PIN is refused, and nothing moves.
    let right = terminal(&node, &shop, &payor, "10", PIN, &request_id()).await;
    assert_eq!(right["status"], "wrong_pin", "{right}");
    assert!(right["status_message"].as_str().unwrap().contains("locked"));
    assert_eq!(balance(&node, &customer).await, "100");
    assert_eq!(balance(&node, &shop).await, "0");
    // The lock is the wallet's: withdrawals with the PIN are locked too.
    let withdraw = ok(
        &node,
        "withdraw",
        &json!({"meta": meta(Some(&customer.token)), "amount": "1", "PIN": PIN}),
    )
    .await;
    assert_eq!(withdraw["status"], "wrong_pin");
}

#[actix_web::test]
async fn the_pin_lock_follows_the_settings_and_a_right_pin_resets_the_count() {
    let node = spawn_node_with(|s| {
        s.pin_failures_max = 2;
        s.pin_lock_secs = 0;
    })
    .await;
    let shop = merchant(&node, "Shop", (50.0, 15.0), None).await;
    let customer = register(&node, "Dave", None).await;
    deposit(&node, &customer, "100").await;
    let payor = customer.evg_id();

    let first = terminal(&node, &shop, &payor, "10", WRONG_PIN, &request_id()).await;
    assert!(first["status_message"]
        .as_str()
        .unwrap()
        .contains("1 attempt"));
    // A right PIN pays and resets the count.
    let paid = terminal(&node, &shop, &payor, "10", PIN, &request_id()).await;
    assert_eq!(paid["status"], "success");
    let again = terminal(&node, &shop, &payor, "10", WRONG_PIN, &request_id()).await;
    assert!(
        again["status_message"]
            .as_str()
            .unwrap()
            .contains("1 attempt"),
        "{again}"
    );
    // The second wrong PIN in a row locks, for PIN_LOCK_SECS (zero here: it has ended).
    let locked = terminal(&node, &shop, &payor, "10", WRONG_PIN, &request_id()).await;
    assert!(
        locked["status_message"]
            .as_str()
            .unwrap()
            .contains("locked"),
        "{locked}"
    );
    let after = terminal(&node, &shop, &payor, "10", PIN, &request_id()).await;
    assert_eq!(after["status"], "success", "{after}");
    assert_eq!(balance(&node, &customer).await, "80");
}

#[actix_web::test]
async fn a_terminal_payment_sent_twice_moves_the_money_once() {
    let node = spawn_node().await;
    let shop = merchant(&node, "Shop", (50.0, 15.0), None).await;
    let customer = register(&node, "Dave", None).await;
    deposit(&node, &customer, "100").await;
    let payor = customer.evg_id();

    // At the same time.
    let id = request_id();
    let (a, b) = futures_util::future::join(
        terminal(&node, &shop, &payor, "30", PIN, &id),
        terminal(&node, &shop, &payor, "30", PIN, &id),
    )
    .await;
    assert_eq!(a, b);
    assert_eq!(a["status"], "success", "{a}");
    // And again later.
    let c = terminal(&node, &shop, &payor, "30", PIN, &id).await;
    assert_eq!(a, c);
    assert_eq!(balance(&node, &customer).await, "70");
    assert_eq!(balance(&node, &shop).await, "30");

    // The same request id for another payment is refused.
    let (status, answer) = call(
        &node,
        "make_terminal_payment",
        &json!({"meta": meta_with(Some(&shop.token), &id), "amount": "31",
                "description": "one cappuccino", "payor": payor, "PIN": PIN}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["path"], "meta.request_id");

    // A wrong PIN repeated under one request id counts once.
    let wrong_id = request_id();
    let first = terminal(&node, &shop, &payor, "1", WRONG_PIN, &wrong_id).await;
    let second = terminal(&node, &shop, &payor, "1", WRONG_PIN, &wrong_id).await;
    assert_eq!(first, second);
    let third = terminal(&node, &shop, &payor, "1", WRONG_PIN, &request_id()).await;
    assert!(
        third["status_message"]
            .as_str()
            .unwrap()
            .contains("3 attempt"),
        "{third}"
    );
    assert_ledger_balances(&node).await;
}

// ---------------------------------------------------------------------------------------------
// QR cards

async fn issue_cards(node: &TestNode, shop: &Evg, count: &str) -> Vec<String> {
    let answer = ok(
        node,
        "issue_qr_cards",
        &json!({"meta": meta(Some(&shop.token)), "count": count}),
    )
    .await;
    assert_eq!(answer["status"], "success", "{answer}");
    answer["qr_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let code = c["qr_code"].as_str().unwrap().to_owned();
            assert_eq!(c["url"], format!("https://qr.evr.gr/{code}"));
            code
        })
        .collect()
}

async fn qr_status(node: &TestNode, token: Option<&str>, scanned: &str) -> Value {
    ok(
        node,
        "qr_status",
        &json!({"meta": meta(token), "qr_code": scanned}),
    )
    .await
}

#[actix_web::test]
async fn a_card_is_issued_registered_loaded_and_spent() {
    let node = spawn_node().await;
    let shop = merchant(&node, "Card shop", (50.0, 15.0), None).await;
    deposit(&node, &shop, "500").await;

    // Issued: eligible for registration, in both printed forms.
    let code = issue_cards(&node, &shop, "1").await.remove(0);
    let url = format!("https://qr.evr.gr/{code}");
    for scanned in [code.as_str(), url.as_str()] {
        let answer = qr_status(&node, Some(&shop.token), scanned).await;
        assert_eq!(
            answer,
            json!({"meta": {"status": "authorized"}, "status": "not_registered"})
        );
    }
    // Not registered: it cannot be loaded yet.
    let early = ok(
        &node,
        "make_payment",
        &json!({"meta": meta(Some(&shop.token)), "amount": "100", "payee": format!("qr:{code}")}),
    )
    .await;
    assert_eq!(early["status"], "invalid_account", "{early}");

    // The customer registers the card (and sets their PIN) before saying who they are.
    let anonymous = qr_status(&node, None, &url).await;
    assert_eq!(anonymous["status"], "not_registered");
    let holder = register(&node, "Joel Dietz", Some(&code)).await;
    assert_eq!(qr_status(&node, None, &url).await["status"], "valid");

    // Loaded by the merchant. (The card's wallet is first asked for its balance after the
    // load: a payee's wallet that is live applies a credit only after the payor's answer has
    // been sent — actors/src/journal.rs, `release` — so a read right after could be stale.)
    let load = ok(
        &node,
        "make_payment",
        &json!({"meta": meta(Some(&shop.token)), "amount": "100", "payee": format!("qr:{code}")}),
    )
    .await;
    assert_eq!(load["status"], "success", "{load}");
    let answer = qr_status(&node, Some(&shop.token), &url).await;
    assert_eq!(
        answer,
        json!({"meta": {"status": "authorized"}, "status": "valid", "balance": "100",
               "name": "Joel Dietz"})
    );

    // Spent at another merchant's terminal with the card and its PIN.
    let cafe = merchant(&node, "Cafe", (50.0, 15.1), None).await;
    let paid = terminal(&node, &cafe, &format!("qr:{url}"), "30", PIN, &request_id()).await;
    assert_eq!(paid["status"], "success", "{paid}");
    let wrong = terminal(
        &node,
        &cafe,
        &format!("qr:{code}"),
        "30",
        WRONG_PIN,
        &request_id(),
    )
    .await;
    assert_eq!(wrong["status"], "wrong_pin");
    assert_eq!(
        qr_status(&node, Some(&cafe.token), &code).await["balance"],
        "70"
    );
    assert_eq!(balance(&node, &holder).await, "70");
    assert_eq!(balance(&node, &cafe).await, "30");
    assert_eq!(balance(&node, &shop).await, "400");

    // A registered card cannot be registered again.
    let again = ok(
        &node,
        "register_user",
        &json!({"meta": meta(None), "pin": PIN, "email": "second@example.com", "qr_code": code}),
    )
    .await;
    assert_eq!(again["status"], "error");
    assert_ledger_balances(&node).await;
}

#[actix_web::test]
async fn qr_status_shows_a_cards_details_only_to_merchants_and_its_owner() {
    let node = spawn_node().await;
    let shop = merchant(&node, "Shop", (50.0, 15.0), None).await;
    let code = issue_cards(&node, &shop, "1").await.remove(0);
    let holder = register(&node, "Joel", Some(&code)).await;
    deposit(&node, &holder, "12").await;
    let stranger = register(&node, "Stranger", None).await;

    let status_only = json!({"meta": {"status": "authorized"}, "status": "valid"});
    assert_eq!(qr_status(&node, None, &code).await, status_only);
    assert_eq!(
        qr_status(&node, Some(&stranger.token), &code).await,
        status_only
    );
    let own = qr_status(&node, Some(&holder.token), &code).await;
    assert_eq!(own["balance"], "12");
    assert_eq!(own["name"], "Joel");
    let shop_view = qr_status(&node, Some(&shop.token), &code).await;
    assert_eq!(shop_view["balance"], "12");
    assert!(shop_view.get("image").is_none());

    // Not a card of this server.
    for scanned in [
        "0123456789abcdef",
        "https://qr.evr.gr/0123456789abcdef",
        "https://example.com/whatever",
        "hello world",
        "https://qr.evr.gr/",
    ] {
        let answer = qr_status(&node, Some(&shop.token), scanned).await;
        assert_eq!(answer["status"], "invalid", "{scanned}: {answer}");
    }
    invalid(
        &node,
        "qr_status",
        &json!({"meta": meta(None), "qr_code": ""}),
        "qr_code",
    )
    .await;
    invalid(
        &node,
        "qr_status",
        &json!({"meta": meta(None), "qr_code": "x".repeat(513)}),
        "qr_code",
    )
    .await;
    invalid(&node, "qr_status", &json!({"meta": meta(None)}), "qr_code").await;
    let (status, _) = call(
        &node,
        "qr_status",
        &json!({"meta": meta(Some("not-a-token")), "qr_code": code}),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn only_merchants_are_issued_cards() {
    let node = spawn_node().await;
    let user = register(&node, "Not a shop", None).await;
    let answer = ok(
        &node,
        "issue_qr_cards",
        &json!({"meta": meta(Some(&user.token)), "count": "1"}),
    )
    .await;
    assert_eq!(answer["status"], "error", "{answer}");
    assert!(answer.get("qr_codes").is_none());

    let shop = merchant(&node, "Shop", (50.0, 15.0), None).await;
    for count in [
        json!("0"),
        json!("51"),
        json!("+3"),
        json!("three"),
        json!(3),
    ] {
        invalid(
            &node,
            "issue_qr_cards",
            &json!({"meta": meta(Some(&shop.token)), "count": count}),
            "count",
        )
        .await;
    }
    let one = ok(
        &node,
        "issue_qr_cards",
        &json!({"meta": meta(Some(&shop.token))}),
    )
    .await;
    assert_eq!(one["qr_codes"].as_array().unwrap().len(), 1);

    let id = request_id();
    let body = json!({"meta": meta_with(Some(&shop.token), &id), "count": "50"});
    let first = ok(&node, "issue_qr_cards", &body).await;
    let codes: Vec<&str> = first["qr_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["qr_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 50);
    let distinct: std::collections::HashSet<&&str> = codes.iter().collect();
    assert_eq!(distinct.len(), 50);
    assert!(codes.iter().all(|c| c.len() == 16
        && c.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))));
    // A repeat answers the same cards.
    assert_eq!(ok(&node, "issue_qr_cards", &body).await, first);
    invalid(
        &node,
        "issue_qr_cards",
        &json!({"meta": meta_with(Some(&shop.token), &id), "count": "2"}),
        "meta.request_id",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// items

async fn items(node: &TestNode, user: &Evg, body: Value) -> Value {
    let mut body = body;
    body["meta"] = meta(Some(&user.token));
    let answer = ok(node, "items", &body).await;
    assert_eq!(answer["meta"]["status"], "authorized");
    answer
}

fn ids(answer: &Value) -> Vec<String> {
    answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn items_are_created_updated_deleted_and_listed() {
    let node = spawn_node().await;
    let shop = register(&node, "Shop", None).await;
    let other = register(&node, "Other", None).await;

    assert_eq!(items(&node, &shop, json!({})).await["items"], json!([]));
    let created = items(
        &node,
        &shop,
        json!({"items": [{"description": "cheese", "amount": "4"},
                          {"description": "bread", "amount": "3"},
                          {"description": "wine", "amount": "12"}]}),
    )
    .await;
    let [cheese, bread, wine] = <[String; 3]>::try_from(ids(&created)).unwrap();
    assert_eq!(
        created["items"],
        json!([{"id": cheese, "description": "cheese", "amount": "4"},
               {"id": bread, "description": "bread", "amount": "3"},
               {"id": wine, "description": "wine", "amount": "12"}])
    );

    // Update one, delete one, add one: the untouched one is kept.
    let changed = items(
        &node,
        &shop,
        json!({"items": [{"id": cheese, "description": "old cheese", "amount": "5"},
                          {"id": bread, "deleted": "true"},
                          {"description": "olives", "amount": "2"},
                          {"id": wine, "amount": "11", "deleted": "false"}]}),
    )
    .await;
    let olives = ids(&changed)[2].clone();
    assert_eq!(
        changed["items"],
        json!([{"id": cheese, "description": "old cheese", "amount": "5"},
               {"id": wine, "description": "wine", "amount": "11"},
               {"id": olives, "description": "olives", "amount": "2"}])
    );
    assert_ne!(olives, bread, "ids are never reused");
    assert_eq!(items(&node, &shop, json!({})).await, changed);

    // Anyone can list them, read-only.
    let theirs = items(&node, &other, json!({"payee": shop.evg_id()})).await;
    assert_eq!(theirs["items"], changed["items"]);
    assert_eq!(items(&node, &other, json!({})).await["items"], json!([]));
    let mut body = json!({"payee": shop.evg_id(), "items": []});
    body["meta"] = meta(Some(&other.token));
    invalid(&node, "items", &body, "payee").await;
    let mut body = json!({"payee": "facebook:404"});
    body["meta"] = meta(Some(&other.token));
    invalid(&node, "items", &body, "payee").await;

    // Only the owner changes their items.
    for change in [
        json!({"id": cheese, "description": "mine now"}),
        json!({"id": cheese, "deleted": "true"}),
    ] {
        let mut body = json!({"items": [{"description": "fine", "amount": "1"}, change]});
        body["meta"] = meta(Some(&other.token));
        invalid(&node, "items", &body, "items[1].id").await;
    }
    assert_eq!(items(&node, &shop, json!({})).await, changed);
    assert_eq!(items(&node, &other, json!({})).await["items"], json!([]));
}

#[actix_web::test]
async fn an_items_call_changes_all_or_nothing() {
    let node = spawn_node().await;
    let shop = register(&node, "Shop", None).await;
    let before = items(
        &node,
        &shop,
        json!({"items": [{"description": "cheese", "amount": "4"}]}),
    )
    .await;
    let cheese = ids(&before)[0].clone();
    let mut body = json!({"items": [{"description": "bread", "amount": "3"},
                                    {"id": cheese, "deleted": "true"},
                                    {"id": "999999", "amount": "3"}]});
    body["meta"] = meta(Some(&shop.token));
    invalid(&node, "items", &body, "items[2].id").await;
    assert_eq!(
        items(&node, &shop, json!({})).await["items"],
        before["items"]
    );

    // A deleted item cannot be changed afterwards.
    items(
        &node,
        &shop,
        json!({"items": [{"id": cheese, "deleted": "true"}]}),
    )
    .await;
    let mut body = json!({"items": [{"id": cheese, "amount": "1"}]});
    body["meta"] = meta(Some(&shop.token));
    invalid(&node, "items", &body, "items[0].id").await;
}

#[actix_web::test]
async fn items_are_validated_and_bounded() {
    let node = spawn_node().await;
    let shop = register(&node, "Shop", None).await;
    let cases = [
        (
            json!([{"description": "x", "amount": "1.5"}]),
            "items[0].amount",
        ),
        (
            json!([{"description": "x", "amount": "0"}]),
            "items[0].amount",
        ),
        (
            json!([{"description": "x", "amount": "-1"}]),
            "items[0].amount",
        ),
        (
            json!([{"description": "x", "amount": 4}]),
            "items[0].amount",
        ),
        (json!([{"description": "x"}]), "items[0].amount"),
        (json!([{"amount": "1"}]), "items[0].description"),
        (
            json!([{"description": " ", "amount": "1"}]),
            "items[0].description",
        ),
        (
            json!([{"description": "d".repeat(201), "amount": "1"}]),
            "items[0].description",
        ),
        (
            json!([{"description": "x", "amount": "1", "deleted": "yes"}]),
            "items[0].deleted",
        ),
        (
            json!([{"description": "x", "amount": "1", "deleted": true}]),
            "items[0].deleted",
        ),
        (json!([{"deleted": "true"}]), "items[0].id"),
        (json!([{"id": "1"}]), "items[0]"),
        (
            json!([{"id": "1", "deleted": "true", "amount": "2"}]),
            "items[0].amount",
        ),
        (json!([{"id": "abc", "amount": "2"}]), "items[0].id"),
        (json!([{"id": 1, "amount": "2"}]), "items[0].id"),
        (
            json!([{"id": "1", "amount": "2"}, {"id": "1", "amount": "3"}]),
            "items[1].id",
        ),
        (
            json!([{"description": "x", "amount": "1", "price": "1"}]),
            "items[0].price",
        ),
        (json!({"description": "x"}), "items"),
    ];
    for (list, field) in cases {
        let body = json!({"meta": meta(Some(&shop.token)), "items": list});
        invalid(&node, "items", &body, field).await;
    }
    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"description": format!("item {i}"), "amount": "1"}))
        .collect();
    invalid(
        &node,
        "items",
        &json!({"meta": meta(Some(&shop.token)), "items": too_many}),
        "items",
    )
    .await;

    // 200 items per user.
    for batch in 0..2 {
        let list: Vec<Value> = (0..100)
            .map(|i| json!({"description": format!("item {batch}-{i}"), "amount": "1"}))
            .collect();
        items(&node, &shop, json!({"items": list})).await;
    }
    invalid(
        &node,
        "items",
        &json!({"meta": meta(Some(&shop.token)),
                "items": [{"description": "one more", "amount": "1"}]}),
        "items",
    )
    .await;
    let all = items(&node, &shop, json!({})).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 200);
    // Replacing within the limit works: delete one, add one.
    let first = ids(&all)[0].clone();
    let swapped = items(
        &node,
        &shop,
        json!({"items": [{"id": first, "deleted": "true"},
                          {"description": "one more", "amount": "1"}]}),
    )
    .await;
    assert_eq!(swapped["items"].as_array().unwrap().len(), 200);
}

#[actix_web::test]
async fn a_repeated_items_call_changes_once() {
    let node = spawn_node().await;
    let shop = register(&node, "Shop", None).await;
    let id = request_id();
    let body = json!({"meta": meta_with(Some(&shop.token), &id),
                      "items": [{"description": "cheese", "amount": "4"}]});
    let (a, b) =
        futures_util::future::join(call(&node, "items", &body), call(&node, "items", &body)).await;
    // One of two concurrent copies may be told to retry (409) while the other runs.
    let answers: Vec<&Value> = [&a, &b]
        .into_iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .map(|(_, body)| body)
        .collect();
    assert!(!answers.is_empty());
    for (status, answer) in [&a, &b] {
        assert!(
            *status == StatusCode::OK || *status == StatusCode::CONFLICT,
            "{status}: {answer}"
        );
    }
    let again = ok(&node, "items", &body).await;
    for answer in answers {
        assert_eq!(*answer, again);
    }
    assert_eq!(again["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        items(&node, &shop, json!({})).await["items"],
        again["items"]
    );
    let mut other = body.clone();
    other["items"][0]["amount"] = json!("5");
    invalid(&node, "items", &other, "meta.request_id").await;
}

#[actix_web::test]
async fn a_terminal_payment_may_name_the_merchants_items() {
    let node = spawn_node().await;
    let shop = merchant(&node, "Shop", (50.0, 15.0), None).await;
    let other = register(&node, "Other", None).await;
    let customer = register(&node, "Dave", None).await;
    deposit(&node, &customer, "10").await;
    let own = ids(&items(
        &node,
        &shop,
        json!({"items": [{"description": "tea", "amount": "2"}]}),
    )
    .await)[0]
        .clone();
    let foreign = ids(&items(
        &node,
        &other,
        json!({"items": [{"description": "coffee", "amount": "3"}]}),
    )
    .await)[0]
        .clone();
    let body = |ids: Vec<&str>| {
        json!({"meta": meta(Some(&shop.token)), "amount": "2", "description": "tea",
               "payor": customer.evg_id(), "PIN": PIN, "item_ids": ids})
    };
    invalid(
        &node,
        "make_terminal_payment",
        &body(vec![own.as_str(), foreign.as_str()]),
        "item_ids[1]",
    )
    .await;
    let paid = ok(&node, "make_terminal_payment", &body(vec![own.as_str()])).await;
    assert_eq!(paid["status"], "success", "{paid}");
    assert_eq!(balance(&node, &customer).await, "8");
}

#[actix_web::test]
async fn the_merchant_calls_are_documented() {
    let node = spawn_node().await;
    let api: Value = node.get("/openapi.json").await.json().await.unwrap();
    for call in [
        "register_merchant",
        "suggested_merchants",
        "make_terminal_payment",
        "qr_status",
        "issue_qr_cards",
        "items",
    ] {
        let post = &api["paths"][format!("/rest/v01/{call}")]["post"];
        assert!(post["requestBody"].is_object(), "{call}: {post}");
        assert!(post["responses"]["200"].is_object(), "{call}: {post}");
        assert!(post["responses"]["400"].is_object(), "{call}: {post}");
        assert!(
            post["description"].as_str().is_some_and(|d| !d.is_empty())
                || post["summary"].as_str().is_some_and(|d| !d.is_empty()),
            "{call}: {post}"
        );
    }
}
