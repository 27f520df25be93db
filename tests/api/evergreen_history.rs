//! Evergreen history, feedback, people, devices and rates over HTTP: transaction_list,
//! transaction_detail, leave_feedback (and the ratings it feeds), search_users,
//! suggested_payors, register_device (against a stand-in Graph API started by the test on
//! 127.0.0.1:0) and exchange_rates.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpResponse, HttpServer};
use futures_util::stream::{self, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_node, spawn_node_with, TestNode};

const PIN: &str = "12345";

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn meta(token: Option<&str>) -> Value {
    let mut meta = json!({
        "uuid": "device-history",
        "client_version": "1.0",
        "request_id": format!("history-{}", unique()),
    });
    if let Some(token) = token {
        meta["evg_auth_token"] = json!(token);
    }
    meta
}

fn meta_at(token: &str, lat: f64, lon: f64) -> Value {
    let mut meta = meta(Some(token));
    meta["lat"] = json!(lat);
    meta["lon"] = json!(lon);
    meta
}

/// An Evergreen user with a session.
#[derive(Debug, Clone)]
struct Evg {
    token: String,
    /// How others name this user: `qr:<code>` (or `user:<uuid>` when registered without a
    /// card, learnt from an answer).
    evg_id: String,
    email: String,
}

async fn call(node: &TestNode, name: &str, body: &Value) -> (StatusCode, Value) {
    let response = node.post_json(&format!("/rest/v01/{name}"), body).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{name} answered {status} with non-JSON {text:?}: {e}"));
    (status, body)
}

/// A call that must answer 200.
async fn ok(node: &TestNode, name: &str, body: &Value) -> Value {
    let (status, answer) = call(node, name, body).await;
    assert_eq!(status, StatusCode::OK, "{name}: {answer}");
    assert_eq!(answer["meta"]["status"], "authorized", "{name}: {answer}");
    answer
}

/// A call that must answer 400 naming `path`.
async fn invalid(node: &TestNode, name: &str, body: &Value, path: &str) -> Value {
    let (status, answer) = call(node, name, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{name} {body}: {answer}");
    assert_eq!(answer["path"], path, "{name} {body}: {answer}");
    assert!(
        answer["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{answer}"
    );
    assert_eq!(keys(&answer), set(&["msg", "path"]), "{answer}");
    answer
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

fn is_iso_second(value: &Value) -> bool {
    value.as_str().is_some_and(|s| {
        s.len() == 20 && s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok()
    })
}

/// Register a user with a QR card (their Evergreen id), [`PIN`] and `name` (if any).
async fn register(node: &TestNode, name: Option<&str>) -> Evg {
    let code = unique();
    let email = format!("{}@example.com", unique());
    let mut body = json!({"meta": meta(None), "pin": PIN, "email": email, "qr_code": code});
    if let Some(name) = name {
        body["name"] = json!(name);
    }
    let answer = ok(node, "register_user", &body).await;
    assert_eq!(answer["status"], "success", "{answer}");
    Evg {
        token: answer["evg_auth_token"].as_str().unwrap().to_owned(),
        evg_id: format!("qr:{code}"),
        email,
    }
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

/// A direct payment (the API does not tell its id: read it from the payor's list).
async fn pay(node: &TestNode, payor: &Evg, payee: &str, amount: &str, description: &str) {
    let answer = ok(
        node,
        "make_payment",
        &json!({"meta": meta(Some(&payor.token)), "amount": amount, "payee": payee,
                "request_description": description}),
    )
    .await;
    assert_eq!(answer["status"], "success", "{answer}");
}

async fn pay_request(node: &TestNode, payor: &Evg, payee: &str, amount: &str, tx: &str) {
    let answer = ok(
        node,
        "make_payment",
        &json!({"meta": meta(Some(&payor.token)), "amount": amount, "payee": payee,
                "transaction_id": tx}),
    )
    .await;
    assert_eq!(answer["status"], "success", "{answer}");
}

/// `requester` asks `payor` for `amount`; the transaction id.
async fn request(
    node: &TestNode,
    requester: &Evg,
    payor: &str,
    amount: &str,
    description: &str,
) -> String {
    let answer = ok(
        node,
        "request_payment",
        &json!({"meta": meta(Some(&requester.token)), "payor": payor, "amount": amount,
                "request_description": description}),
    )
    .await;
    answer["transaction_id"].as_str().unwrap().to_owned()
}

async fn close(node: &TestNode, name: &str, user: &Evg, tx: &str) {
    let answer = ok(
        node,
        name,
        &json!({"meta": meta(Some(&user.token)), "transaction_id": tx}),
    )
    .await;
    assert_eq!(answer["status"], "success", "{answer}");
}

async fn list(node: &TestNode, user: &Evg, start: Option<&str>, num: Option<&str>) -> Value {
    let mut body = json!({"meta": meta(Some(&user.token))});
    if let Some(start) = start {
        body["start_position"] = json!(start);
    }
    if let Some(num) = num {
        body["num_items"] = json!(num);
    }
    ok(node, "transaction_list", &body).await
}

fn ids(answer: &Value) -> Vec<String> {
    answer["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["transaction_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn detail(node: &TestNode, user: &Evg, tx: &str) -> (StatusCode, Value) {
    call(
        node,
        "transaction_detail",
        &json!({"meta": meta(Some(&user.token)), "transaction_id": tx}),
    )
    .await
}

async fn feedback_with(
    node: &TestNode,
    user: &Evg,
    tx: &str,
    kind: &str,
    description: Option<&str>,
    request_id: &str,
) -> (StatusCode, Value) {
    let mut meta = meta(Some(&user.token));
    meta["request_id"] = json!(request_id);
    let mut body = json!({"meta": meta, "transaction_id": tx, "feedback_type": kind});
    if let Some(d) = description {
        body["feedback_description"] = json!(d);
    }
    call(node, "leave_feedback", &body).await
}

/// Leave feedback; the answer's `status`.
async fn feedback(node: &TestNode, user: &Evg, tx: &str, kind: &str) -> String {
    let (status, answer) =
        feedback_with(node, user, tx, kind, None, &format!("fb-{}", unique())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    if answer["status"] == "success" {
        assert_eq!(keys(&answer), set(&["meta", "status"]), "{answer}");
    } else {
        assert!(answer["status_message"].is_string(), "{answer}");
    }
    answer["status"].as_str().unwrap().to_owned()
}

async fn search(node: &TestNode, user: &Evg, query: &str) -> Vec<Value> {
    let answer = ok(
        node,
        "search_users",
        &json!({"meta": meta(Some(&user.token)), "query": query}),
    )
    .await;
    assert_eq!(keys(&answer), set(&["meta", "results"]), "{answer}");
    answer["results"].as_array().unwrap().clone()
}

/// The one search result for `name`.
async fn person(node: &TestNode, viewer: &Evg, name: &str) -> Value {
    let found: Vec<Value> = search(node, viewer, name)
        .await
        .into_iter()
        .filter(|r| r["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

/// Run SQL on the node's database (test setup an operator or time would do).
async fn sql(node: &TestNode, statement: &str, arg: &str) {
    let db = node::store::Db::connect(&node.database_url, 1)
        .await
        .unwrap();
    node::on_db!(&db, pool => {
        sqlx::query(statement).bind(arg).execute(pool).await.unwrap();
    });
    db.close().await;
}

// ---------------------------------------------------------------------------------------------
// transaction_list and transaction_detail

#[actix_web::test]
async fn transaction_list_shows_requests_and_payments_newest_first_in_the_documented_shape() {
    let node = spawn_node().await;
    let ann = register(&node, Some("Ann Payor")).await;
    let bob = register(&node, Some("Bob Payee")).await;
    let carl = register(&node, Some("Carl Other")).await;
    deposit(&node, &ann, "1000").await;
    deposit(&node, &bob, "100").await;

    // Bob asks Ann for 200 and Ann pays it: one completed transaction, the request's id.
    let paid = request(
        &node,
        &bob,
        &ann.evg_id,
        "200",
        "Payment for rideshare to Rome.",
    )
    .await;
    pay_request(&node, &ann, &bob.evg_id, "200", &paid).await;
    // Ann pays Bob without a request.
    pay(&node, &ann, &bob.evg_id, "5", "coffee").await;
    // Ann asks Bob for 7; Bob rejects.
    let rejected = request(&node, &ann, &bob.evg_id, "7", "lunch").await;
    close(&node, "reject_payment", &bob, &rejected).await;
    // Bob asks Ann for 9 and withdraws the request.
    let cancelled = request(&node, &bob, &ann.evg_id, "9", "book").await;
    close(&node, "cancel_request", &bob, &cancelled).await;
    // Bob asks Ann for 11, still open.
    let open = request(&node, &bob, &ann.evg_id, "11", "Give me my money back!").await;
    // Deposits and withdrawals are not transactions.
    let withdrawn = ok(
        &node,
        "withdraw",
        &json!({"meta": meta(Some(&ann.token)), "amount": "1", "PIN": PIN}),
    )
    .await;
    assert_eq!(withdrawn["status"], "success");

    let answer = list(&node, &ann, None, None).await;
    assert_eq!(
        keys(&answer),
        set(&["meta", "num_transactions", "transactions"])
    );
    assert_eq!(answer["num_transactions"], "5");
    let got = ids(&answer);
    assert_eq!(got.len(), 5, "{answer}");
    let direct = got[3].clone();
    assert_eq!(
        got,
        vec![
            open.clone(),
            cancelled.clone(),
            rejected.clone(),
            direct.clone(),
            paid.clone()
        ]
    );
    assert!(
        uuid::Uuid::parse_str(&direct).is_ok(),
        "a transfer id: {direct}"
    );
    let items = answer["transactions"].as_array().unwrap();

    let open_item = &items[0];
    assert_eq!(
        keys(open_item),
        set(&[
            "transaction_id",
            "transaction_status",
            "request_date",
            "amount",
            "payor_id",
            "payor_name",
            "payee_id",
            "payee_name",
            "request_description"
        ]),
        "{open_item}"
    );
    assert_eq!(open_item["transaction_status"], "requested");
    assert!(is_iso_second(&open_item["request_date"]), "{open_item}");
    assert_eq!(open_item["amount"], "11");
    assert_eq!(open_item["payor_id"], ann.evg_id.as_str());
    assert_eq!(open_item["payor_name"], "Ann Payor");
    assert_eq!(open_item["payee_id"], bob.evg_id.as_str());
    assert_eq!(open_item["payee_name"], "Bob Payee");
    assert_eq!(open_item["request_description"], "Give me my money back!");

    assert_eq!(items[1]["transaction_status"], "cancelled");
    assert!(items[1].get("payment_date").is_none());
    assert!(items[1].get("feedback_status").is_none());
    assert_eq!(items[1]["amount"], "9");

    let rejected_item = &items[2];
    assert_eq!(rejected_item["transaction_status"], "rejected");
    assert_eq!(rejected_item["payor_id"], bob.evg_id.as_str());
    assert_eq!(rejected_item["payee_id"], ann.evg_id.as_str());
    assert_eq!(rejected_item["request_description"], "lunch");
    assert!(rejected_item.get("payment_date").is_none());
    assert!(rejected_item.get("feedback_status").is_none());

    let direct_item = &items[3];
    assert_eq!(
        keys(direct_item),
        set(&[
            "transaction_id",
            "transaction_status",
            "payment_date",
            "amount",
            "payor_id",
            "payor_name",
            "payee_id",
            "payee_name",
            "request_description",
            "feedback_status"
        ]),
        "{direct_item}"
    );
    assert_eq!(direct_item["transaction_status"], "completed");
    assert!(is_iso_second(&direct_item["payment_date"]));
    assert_eq!(direct_item["amount"], "5");
    assert_eq!(direct_item["payor_id"], ann.evg_id.as_str());
    assert_eq!(direct_item["payee_id"], bob.evg_id.as_str());
    assert_eq!(direct_item["request_description"], "coffee");
    assert_eq!(direct_item["feedback_status"], "none");

    let paid_item = &items[4];
    assert_eq!(paid_item["transaction_status"], "completed");
    assert!(is_iso_second(&paid_item["request_date"]));
    assert!(is_iso_second(&paid_item["payment_date"]));
    assert!(
        paid_item["request_date"].as_str() <= paid_item["payment_date"].as_str(),
        "{paid_item}"
    );
    assert_eq!(paid_item["amount"], "200");
    assert_eq!(paid_item["payor_id"], ann.evg_id.as_str());
    assert_eq!(paid_item["payee_id"], bob.evg_id.as_str());
    assert_eq!(
        paid_item["request_description"],
        "Payment for rideshare to Rome."
    );
    assert_eq!(paid_item["feedback_status"], "none");

    // The other party sees the same transactions, identically.
    let bobs = list(&node, &bob, None, None).await;
    assert_eq!(bobs["num_transactions"], "5");
    assert_eq!(bobs["transactions"], answer["transactions"]);
    // Someone else sees none of them.
    let carls = list(&node, &carl, Some("0"), Some("10")).await;
    assert_eq!(carls["num_transactions"], "0");
    assert_eq!(carls["transactions"], json!([]));

    // transaction_detail: the list's item next to meta, for both parties only.
    for (i, tx) in got.iter().enumerate() {
        for viewer in [&ann, &bob] {
            let (status, one) = detail(&node, viewer, tx).await;
            assert_eq!(status, StatusCode::OK, "{one}");
            let mut expected = items[i].clone();
            expected["meta"] = json!({"status": "authorized"});
            assert_eq!(one, expected);
        }
        let (status, hidden) = detail(&node, &carl, tx).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            hidden,
            json!({"path": "transaction_id", "msg": "unknown transaction"})
        );
    }
}

#[actix_web::test]
async fn users_without_a_card_and_unnamed_users_are_shown_by_their_user_id() {
    let node = spawn_node().await;
    let ann = register(&node, Some("Ann")).await;
    deposit(&node, &ann, "10").await;
    // A marketplace user: no Evergreen card, a default avatar.
    let market = node.user().await;
    let market_evg = Evg {
        token: market.token.clone(),
        evg_id: format!("user:{}", market.id),
        email: market.email.clone(),
    };
    pay(&node, &ann, &market_evg.evg_id, "3", "thanks").await;
    let answer = list(&node, &market_evg, None, None).await;
    let item = &answer["transactions"][0];
    assert_eq!(item["payee_id"], market_evg.evg_id.as_str());
    assert_eq!(item["payee_name"], "Test User");
    assert!(
        item["payee_image"]
            .as_str()
            .is_some_and(|i| i.starts_with("https://")),
        "{item}"
    );
    assert!(item.get("payor_image").is_none(), "{item}");
    // An Evergreen user registered without a name is shown with an empty name.
    let nameless = register(&node, None).await;
    pay(&node, &ann, &nameless.evg_id, "1", "x").await;
    let answer = list(&node, &nameless, None, None).await;
    assert_eq!(answer["transactions"][0]["payee_name"], "");
    assert_eq!(
        answer["transactions"][0]["payee_id"],
        nameless.evg_id.as_str()
    );
}

#[actix_web::test]
async fn terminal_payments_are_transactions_of_the_customer_and_the_merchant() {
    let node = spawn_node().await;
    let customer = register(&node, Some("Customer")).await;
    let merchant = register(&node, Some("Agora Cafe")).await;
    deposit(&node, &customer, "50").await;
    let listed = ok(
        &node,
        "register_merchant",
        &json!({"meta": meta_at(&merchant.token, 50.0, 15.0), "is_merchant": "true"}),
    )
    .await;
    assert_eq!(listed["status"], "success", "{listed}");
    let paid = ok(
        &node,
        "make_terminal_payment",
        &json!({"meta": meta(Some(&merchant.token)), "amount": "12",
                "description": "one cappuccino", "payor": customer.evg_id, "PIN": PIN}),
    )
    .await;
    assert_eq!(paid["status"], "success", "{paid}");
    for viewer in [&customer, &merchant] {
        let answer = list(&node, viewer, None, None).await;
        assert_eq!(answer["num_transactions"], "1");
        let item = &answer["transactions"][0];
        assert_eq!(item["transaction_status"], "completed");
        assert_eq!(item["amount"], "12");
        assert_eq!(item["payor_id"], customer.evg_id.as_str());
        assert_eq!(item["payee_id"], merchant.evg_id.as_str());
        assert_eq!(item["request_description"], "one cappuccino");
        assert_eq!(item["feedback_status"], "none");
    }
}

#[actix_web::test]
async fn transaction_list_pages_are_bounded_and_cover_everything_once() {
    let node = spawn_node().await;
    let ann = register(&node, Some("Ann")).await;
    let bob = register(&node, Some("Bob")).await;
    deposit(&node, &ann, "1000").await;
    // 101 payments, a few at a time (one wallet decides them in turn).
    stream::iter(0..101)
        .for_each_concurrent(8, |_| pay(&node, &ann, &bob.evg_id, "1", "p"))
        .await;

    let all_default = list(&node, &ann, None, None).await;
    assert_eq!(all_default["num_transactions"], "101");
    assert_eq!(
        ids(&all_default).len(),
        100,
        "at most 100 without num_items"
    );
    let hundred = list(&node, &ann, Some("0"), Some("100")).await;
    assert_eq!(ids(&hundred), ids(&all_default));
    let rest = list(&node, &ann, Some("100"), None).await;
    assert_eq!(ids(&rest).len(), 1);

    let mut paged = Vec::new();
    for start in (0..101).step_by(7) {
        let page = list(&node, &ann, Some(&start.to_string()), Some("7")).await;
        assert_eq!(page["num_transactions"], "101");
        paged.extend(ids(&page));
    }
    let mut everything = ids(&all_default);
    everything.extend(ids(&rest));
    assert_eq!(paged, everything, "pages in order, without gaps or repeats");
    assert_eq!(
        everything.iter().collect::<BTreeSet<_>>().len(),
        101,
        "distinct"
    );
    // Newest first: each payment date is at most the previous one.
    let dates: Vec<String> = all_default["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["payment_date"].as_str().unwrap().to_owned())
        .collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]), "{dates:?}");

    let none = list(&node, &ann, Some("0"), Some("0")).await;
    assert_eq!(none["num_transactions"], "101");
    assert_eq!(none["transactions"], json!([]));
    let beyond = list(&node, &ann, Some("101"), Some("5")).await;
    assert_eq!(beyond["transactions"], json!([]));
    let far = list(&node, &ann, Some("999999999999999999"), None).await;
    assert_eq!(far["transactions"], json!([]));
    let padded = list(&node, &ann, Some("007"), Some("2")).await;
    assert_eq!(ids(&padded), everything[7..9].to_vec());
}

#[actix_web::test]
async fn transaction_list_and_detail_refuse_bad_input() {
    let node = spawn_node().await;
    let ann = register(&node, Some("Ann")).await;
    let body = |field: &str, value: Value| {
        let mut body = json!({"meta": meta(Some(&ann.token))});
        body[field] = value;
        body
    };
    for bad in [
        json!("-1"),
        json!("abc"),
        json!("1.5"),
        json!(""),
        json!(" 1"),
        json!("+1"),
        json!("1e3"),
        json!("9999999999999999999"),
        json!(5),
    ] {
        invalid(
            &node,
            "transaction_list",
            &body("start_position", bad.clone()),
            "start_position",
        )
        .await;
        invalid(
            &node,
            "transaction_list",
            &body("num_items", bad),
            "num_items",
        )
        .await;
    }
    let over = invalid(
        &node,
        "transaction_list",
        &body("num_items", json!("101")),
        "num_items",
    )
    .await;
    assert_eq!(over["msg"], "must be at most 100");
    let (status, unknown) = call(&node, "transaction_list", &body("page", json!("1"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{unknown}");
    assert!(unknown["msg"].as_str().unwrap().contains("unknown field"));

    for bad in [json!(""), json!("   "), json!("x".repeat(129))] {
        invalid(
            &node,
            "transaction_detail",
            &json!({"meta": meta(Some(&ann.token)), "transaction_id": bad}),
            "transaction_id",
        )
        .await;
    }
    invalid(
        &node,
        "transaction_detail",
        &json!({"meta": meta(Some(&ann.token))}),
        "transaction_id",
    )
    .await;
    let (status, unknown) = detail(&node, &ann, "no-such-transaction").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        unknown,
        json!({"path": "transaction_id", "msg": "unknown transaction"})
    );
}

#[actix_web::test]
async fn every_history_call_needs_a_live_token() {
    let node = spawn_node().await;
    let calls = [
        ("transaction_list", json!({})),
        ("transaction_detail", json!({"transaction_id": "x"})),
        (
            "leave_feedback",
            json!({"transaction_id": "x", "feedback_type": "positive"}),
        ),
        ("search_users", json!({"query": "x"})),
        ("suggested_payors", json!({})),
        ("exchange_rates", json!({})),
    ];
    for token in [None, Some("not-a-token")] {
        for (name, fields) in &calls {
            let mut body = fields.clone();
            body["meta"] = meta(token);
            let (status, answer) = call(&node, name, &body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {answer}");
            assert_eq!(answer["meta"]["status"], "unauthorized", "{name}");
            assert_eq!(answer["meta"]["next_step"], "logout", "{name}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// leave_feedback and ratings

#[actix_web::test]
async fn only_the_payor_of_a_completed_transaction_leaves_feedback_once() {
    let node = spawn_node().await;
    let ann = register(&node, Some("Ann Buyer")).await;
    let bob = register(&node, Some("Bob Seller")).await;
    let carl = register(&node, Some("Carl Stranger")).await;
    deposit(&node, &ann, "100").await;
    let paid = request(&node, &bob, &ann.evg_id, "20", "goods").await;
    pay_request(&node, &ann, &bob.evg_id, "20", &paid).await;
    pay(&node, &ann, &bob.evg_id, "3", "tip").await;
    let direct = ids(&list(&node, &ann, None, None).await)[0].clone();
    let open = request(&node, &bob, &ann.evg_id, "4", "more").await;
    let rejected = request(&node, &ann, &bob.evg_id, "5", "refund").await;
    close(&node, "reject_payment", &bob, &rejected).await;

    // The payee, a stranger, an open or rejected transaction.
    assert_eq!(feedback(&node, &bob, &paid, "positive").await, "not_payor");
    assert_eq!(
        feedback(&node, &ann, &open, "positive").await,
        "not_completed"
    );
    assert_eq!(
        feedback(&node, &bob, &rejected, "negative").await,
        "not_completed"
    );
    let (status, hidden) = feedback_with(&node, &carl, &paid, "positive", None, "c-1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        hidden,
        json!({"path": "transaction_id", "msg": "unknown transaction"})
    );
    // No rating yet.
    let before = person(&node, &carl, "Bob Seller").await;
    assert_eq!(keys(&before), set(&["name", "user_id"]), "{before}");

    // The payor, once.
    let (status, first) =
        feedback_with(&node, &ann, &paid, "positive", None, "ann-feedback-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        first,
        json!({"meta": {"status": "authorized"}, "status": "success"})
    );
    assert_eq!(
        feedback(&node, &ann, &paid, "negative").await,
        "already_left"
    );
    // The same request id again: the first answer, not "already_left".
    let (_, again) = feedback_with(&node, &ann, &paid, "positive", None, "ann-feedback-1").await;
    assert_eq!(again, first);
    // The same request id for something else.
    let (status, reused) =
        feedback_with(&node, &ann, &paid, "negative", None, "ann-feedback-1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reused}");
    assert_eq!(reused["path"], "meta.request_id");

    // Negative feedback with a description on the direct payment.
    let (status, negative) = feedback_with(
        &node,
        &ann,
        &direct,
        "negative",
        Some("  Goods Not Delivered "),
        "ann-feedback-2",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(negative["status"], "success");

    for viewer in [&ann, &bob] {
        let (_, shown) = detail(&node, viewer, &paid).await;
        assert_eq!(shown["feedback_status"], "positive");
        assert!(shown.get("feedback_description").is_none());
        let (_, shown) = detail(&node, viewer, &direct).await;
        assert_eq!(shown["feedback_status"], "negative");
        assert_eq!(shown["feedback_description"], "Goods Not Delivered");
        let (_, shown) = detail(&node, viewer, &open).await;
        assert!(shown.get("feedback_status").is_none());
    }
    // Bob's ratings: one positive, one negative.
    let rated = person(&node, &carl, "Bob Seller").await;
    assert_eq!(rated["positive_rating"], 50, "{rated}");
    assert_eq!(rated["negative_rating"], 50, "{rated}");
    // Ann received none.
    let ann_shown = person(&node, &carl, "Ann Buyer").await;
    assert!(ann_shown.get("positive_rating").is_none(), "{ann_shown}");
}

#[actix_web::test]
async fn leave_feedback_refuses_bad_input() {
    let node = spawn_node().await;
    let ann = register(&node, Some("Ann")).await;
    let bob = register(&node, Some("Bob")).await;
    deposit(&node, &ann, "10").await;
    pay(&node, &ann, &bob.evg_id, "1", "x").await;
    let tx = ids(&list(&node, &ann, None, None).await)[0].clone();
    let body = |kind: Value, description: Option<Value>| {
        let mut body =
            json!({"meta": meta(Some(&ann.token)), "transaction_id": tx, "feedback_type": kind});
        if let Some(d) = description {
            body["feedback_description"] = d;
        }
        body
    };
    for kind in [json!("good"), json!("Positive"), json!(""), json!(1)] {
        invalid(&node, "leave_feedback", &body(kind, None), "feedback_type").await;
    }
    invalid(
        &node,
        "leave_feedback",
        &body(json!("positive"), Some(json!("great"))),
        "feedback_description",
    )
    .await;
    invalid(
        &node,
        "leave_feedback",
        &body(json!("negative"), Some(json!("x".repeat(201)))),
        "feedback_description",
    )
    .await;
    invalid(
        &node,
        "leave_feedback",
        &json!({"meta": meta(Some(&ann.token)), "transaction_id": tx}),
        "feedback_type",
    )
    .await;
    invalid(
        &node,
        "leave_feedback",
        &json!({"meta": meta(Some(&ann.token)), "feedback_type": "positive"}),
        "transaction_id",
    )
    .await;
    let (status, _) = call(
        &node,
        "leave_feedback",
        &json!({"meta": meta(Some(&ann.token)), "transaction_id": tx,
                "feedback_type": "positive", "stars": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // None of that stored anything: 200 characters are accepted, and a blank description
    // counts as none (so positive feedback may carry one).
    let (_, ok_answer) = feedback_with(
        &node,
        &ann,
        &tx,
        "negative",
        Some(&"y".repeat(200)),
        "fb-ok",
    )
    .await;
    assert_eq!(ok_answer["status"], "success", "{ok_answer}");
    let (_, shown) = detail(&node, &ann, &tx).await;
    assert_eq!(shown["feedback_description"], "y".repeat(200));
    pay(&node, &ann, &bob.evg_id, "1", "y").await;
    let second = ids(&list(&node, &ann, None, None).await)[0].clone();
    let (_, blank) = feedback_with(&node, &ann, &second, "positive", Some("   "), "fb-blank").await;
    assert_eq!(blank["status"], "success", "{blank}");
    let (_, shown) = detail(&node, &ann, &second).await;
    assert_eq!(shown["feedback_status"], "positive");
    assert!(shown.get("feedback_description").is_none(), "{shown}");
}

#[actix_web::test]
async fn a_repeated_feedback_request_id_has_one_effect_and_one_answer() {
    let node = spawn_node().await;
    let ann = register(&node, Some("Ann")).await;
    let bob = register(&node, Some("Bob Once")).await;
    deposit(&node, &ann, "10").await;
    pay(&node, &ann, &bob.evg_id, "1", "x").await;
    let tx = ids(&list(&node, &ann, None, None).await)[0].clone();
    // The same request sent four times at once: one effect; every answer is the first one,
    // or 409 "being processed, retry".
    let answers = futures_util::future::join_all(
        (0..4).map(|_| feedback_with(&node, &ann, &tx, "positive", None, "same-request")),
    )
    .await;
    let mut successes = 0;
    for (status, answer) in &answers {
        match *status {
            StatusCode::OK => {
                assert_eq!(answer["status"], "success", "{answer}");
                successes += 1;
            }
            StatusCode::CONFLICT => assert_eq!(answer["meta"]["status"], "error", "{answer}"),
            other => panic!("{other}: {answer}"),
        }
    }
    assert!(successes >= 1, "{answers:?}");
    // A retry after they all ended gets the first answer.
    let (status, retry) = feedback_with(&node, &ann, &tx, "positive", None, "same-request").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(retry["status"], "success");
    let shown = person(&node, &ann, "Bob Once").await;
    assert_eq!(shown["positive_rating"], 100, "{shown}");
    // Another user's identical request id is theirs alone.
    let bob_id_reuse = feedback_with(&node, &bob, &tx, "positive", None, "same-request").await;
    assert_eq!(bob_id_reuse.1["status"], "not_payor", "{:?}", bob_id_reuse);
}

#[actix_web::test]
async fn concurrent_feedback_on_one_transaction_counts_once() {
    let node = spawn_node().await;
    let ann = register(&node, Some("Ann")).await;
    let bob = register(&node, Some("Bob Rated")).await;
    deposit(&node, &ann, "10").await;
    pay(&node, &ann, &bob.evg_id, "1", "x").await;
    let tx = ids(&list(&node, &ann, None, None).await)[0].clone();
    let answers = futures_util::future::join_all((0..8).map(|i| {
        let kind = if i % 2 == 0 { "positive" } else { "negative" };
        let (node, ann, tx) = (&node, &ann, &tx);
        async move { feedback(node, ann, tx, kind).await }
    }))
    .await;
    assert_eq!(
        answers.iter().filter(|a| *a == "success").count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|a| *a == "already_left").count(),
        7,
        "{answers:?}"
    );
    let shown = person(&node, &ann, "Bob Rated").await;
    let (positive, negative) = (
        shown["positive_rating"].as_i64().unwrap(),
        shown["negative_rating"].as_i64().unwrap(),
    );
    assert!(
        (positive, negative) == (100, 0) || (positive, negative) == (0, 100),
        "{shown}"
    );
}

#[actix_web::test]
async fn ratings_are_the_share_of_positive_and_negative_feedback_received() {
    let node = spawn_node().await;
    let seller = register(&node, Some("Rated Seller")).await;
    let viewer = register(&node, Some("Viewer")).await;
    let buyers = [
        register(&node, Some("B1")).await,
        register(&node, Some("B2")).await,
        register(&node, Some("B3")).await,
    ];
    for (buyer, kind) in buyers.iter().zip(["positive", "positive", "negative"]) {
        deposit(&node, buyer, "5").await;
        pay(&node, buyer, &seller.evg_id, "1", "x").await;
        let tx = ids(&list(&node, buyer, None, None).await)[0].clone();
        assert_eq!(feedback(&node, buyer, &tx, kind).await, "success");
    }
    let shown = person(&node, &viewer, "Rated Seller").await;
    assert_eq!(shown["positive_rating"], 67, "{shown}");
    assert_eq!(shown["negative_rating"], 33, "{shown}");
    // Feedback the seller left as a payor does not rate them.
    deposit(&node, &seller, "5").await;
    pay(&node, &seller, &buyers[0].evg_id, "1", "x").await;
    let tx = ids(&list(&node, &seller, None, None).await)[0].clone();
    assert_eq!(feedback(&node, &seller, &tx, "negative").await, "success");
    let shown = person(&node, &viewer, "Rated Seller").await;
    assert_eq!(shown["positive_rating"], 67, "{shown}");
    let b1 = person(&node, &viewer, "B1").await;
    assert_eq!(b1["positive_rating"], 0, "{b1}");
    assert_eq!(b1["negative_rating"], 100, "{b1}");
}

// ---------------------------------------------------------------------------------------------
// search_users

#[actix_web::test]
async fn search_users_matches_names_case_insensitively_and_never_shows_emails() {
    let node = spawn_node().await;
    let me = register(&node, Some("Dave Caller")).await;
    let kammeyer = register(&node, Some("Dave Kammeyer")).await;
    let johnson = register(&node, Some("dave Johnson")).await;
    let inner = register(&node, Some("Andave Middle")).await;
    register(&node, Some("Moe Burney")).await;
    register(&node, Some("100% Dave_x")).await;

    let results = search(&node, &me, "DAVE").await;
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    // Names starting with the query first (by name), then the rest; never the caller.
    assert_eq!(
        names,
        vec![
            "dave Johnson",
            "Dave Kammeyer",
            "100% Dave_x",
            "Andave Middle"
        ]
    );
    assert_eq!(results[0]["user_id"], johnson.evg_id.as_str());
    assert_eq!(results[1]["user_id"], kammeyer.evg_id.as_str());
    assert_eq!(results[3]["user_id"], inner.evg_id.as_str());
    for result in &results {
        assert_eq!(keys(result), set(&["name", "user_id"]), "{result}");
    }
    // Wildcards are ordinary characters.
    let percent = search(&node, &me, "%").await;
    assert_eq!(percent.len(), 1);
    assert_eq!(percent[0]["name"], "100% Dave_x");
    assert_eq!(search(&node, &me, "e_x").await.len(), 1);
    assert!(search(&node, &me, "e_k").await.is_empty());
    // Surrounding blanks are ignored.
    assert_eq!(search(&node, &me, "  moe  ").await.len(), 1);
    // Closed accounts are not found.
    sql(
        &node,
        "UPDATE users SET is_active = FALSE WHERE fullname = $1",
        "Moe Burney",
    )
    .await;
    assert!(search(&node, &me, "moe").await.is_empty());
    // Emails are neither searched nor shown.
    let local_part = kammeyer.email.split('@').next().unwrap();
    assert!(search(&node, &me, local_part).await.is_empty());
    let response = node
        .post_json(
            "/rest/v01/search_users",
            &json!({"meta": meta(Some(&me.token)), "query": "a"}),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(!response.contains("@example.com"), "{response}");
    // Images show when a user has one (marketplace users get a default avatar).
    let market = node.user().await;
    let found = search(&node, &me, "Test User").await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["user_id"], format!("user:{}", market.id));
    assert!(found[0]["image"].is_string(), "{}", found[0]);
}

#[actix_web::test]
async fn search_users_answers_at_most_fifty_and_refuses_bad_queries() {
    let node = spawn_node().await;
    let me = register(&node, Some("Searcher")).await;
    stream::iter(0..51)
        .for_each_concurrent(8, |i| {
            let node = &node;
            async move {
                register(node, Some(&format!("Common Name {i:02}"))).await;
            }
        })
        .await;
    let results = search(&node, &me, "common name").await;
    assert_eq!(results.len(), 50);
    assert_eq!(results[0]["name"], "Common Name 00");
    assert_eq!(results[49]["name"], "Common Name 49");

    for bad in [json!(""), json!("   "), json!("x".repeat(101)), json!(7)] {
        invalid(
            &node,
            "search_users",
            &json!({"meta": meta(Some(&me.token)), "query": bad}),
            "query",
        )
        .await;
    }
    invalid(
        &node,
        "search_users",
        &json!({"meta": meta(Some(&me.token))}),
        "query",
    )
    .await;
    assert_eq!(search(&node, &me, &"x".repeat(100)).await.len(), 0);
}

// ---------------------------------------------------------------------------------------------
// suggested_payors

/// A point `meters` north of (lat, lon).
fn north(at: (f64, f64), meters: f64) -> (f64, f64) {
    (at.0 + meters / 111_195.08, at.1)
}

#[actix_web::test]
async fn suggested_payors_lists_recent_partners_most_recent_first() {
    let node = spawn_node().await;
    let me = register(&node, Some("Me")).await;
    deposit(&node, &me, "100").await;
    let mut partners = Vec::new();
    for i in 0..11 {
        partners.push(register(&node, Some(&format!("Partner {i}"))).await);
    }
    // Paid, was paid by, asked, was asked by — and one partner twice.
    for (i, partner) in partners.iter().enumerate() {
        match i % 3 {
            0 => pay(&node, &me, &partner.evg_id, "1", "x").await,
            1 => {
                request(&node, &me, &partner.evg_id, "1", "x").await;
            }
            _ => {
                request(&node, partner, &me.evg_id, "1", "x").await;
            }
        }
    }
    deposit(&node, &partners[4], "5").await;
    pay(&node, &partners[4], &me.evg_id, "1", "back").await;

    let answer = ok(
        &node,
        "suggested_payors",
        &json!({"meta": meta(Some(&me.token))}),
    )
    .await;
    assert_eq!(keys(&answer), set(&["meta", "recent", "nearby"]));
    assert_eq!(answer["nearby"], json!([]), "no position known");
    let recent: Vec<&str> = answer["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        recent,
        vec![
            "Partner 4",
            "Partner 10",
            "Partner 9",
            "Partner 8",
            "Partner 7",
            "Partner 6",
            "Partner 5",
            "Partner 3",
            "Partner 2",
            "Partner 1"
        ]
    );
    let first = &answer["recent"][0];
    assert_eq!(first["user_id"], partners[4].evg_id.as_str());
    assert_eq!(keys(first), set(&["name", "user_id"]));
    // A closed account is left out, and the next one in line comes in.
    sql(
        &node,
        "UPDATE users SET is_active = FALSE WHERE fullname = $1",
        "Partner 10",
    )
    .await;
    let answer = ok(
        &node,
        "suggested_payors",
        &json!({"meta": meta(Some(&me.token))}),
    )
    .await;
    let recent: Vec<&str> = answer["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(recent.len(), 10);
    assert!(!recent.contains(&"Partner 10"));
    assert_eq!(recent[9], "Partner 0");

    // A user with no history and no position: both keys, empty.
    let loner = register(&node, Some("Loner")).await;
    let answer = ok(
        &node,
        "suggested_payors",
        &json!({"meta": meta(Some(&loner.token))}),
    )
    .await;
    assert_eq!(answer["recent"], json!([]));
    assert_eq!(answer["nearby"], json!([]));
}

/// Any authenticated call with meta lat/lon records where a user is.
async fn be_at(node: &TestNode, user: &Evg, at: (f64, f64)) {
    ok(
        node,
        "exchange_rates",
        &json!({"meta": meta_at(&user.token, at.0, at.1)}),
    )
    .await;
}

#[actix_web::test]
async fn suggested_payors_lists_users_seen_nearby_closest_first() {
    let node = spawn_node().await;
    let here = (50.2384, 15.3948);
    let me = register(&node, Some("Me Here")).await;
    let cafe = register(&node, Some("Agora Cafe")).await;
    let park = register(&node, Some("Park Bench")).await;
    let far = register(&node, Some("Far Away")).await;
    let stale = register(&node, Some("Long Gone")).await;
    // Registered, never seen anywhere: never nearby.
    register(&node, Some("Never Seen")).await;
    be_at(&node, &cafe, north(here, 120.0)).await;
    be_at(&node, &park, north(here, 3_000.0)).await;
    be_at(&node, &far, north(here, 6_000.0)).await;
    be_at(&node, &stale, north(here, 10.0)).await;
    sql(
        &node,
        "UPDATE user_locations SET seen_at = seen_at - 90000000 WHERE user_id = \
         (SELECT user_id FROM user_external_ids WHERE external_id = $1)",
        &stale.evg_id,
    )
    .await;

    let answer = ok(
        &node,
        "suggested_payors",
        &json!({"meta": meta_at(&me.token, here.0, here.1)}),
    )
    .await;
    let nearby = answer["nearby"].as_array().unwrap();
    let names: Vec<&str> = nearby.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["Agora Cafe", "Park Bench"], "{answer}");
    let cafe_shown = &nearby[0];
    assert_eq!(
        keys(cafe_shown),
        set(&["name", "user_id", "lat", "lon", "last_seen", "distance"])
    );
    assert_eq!(cafe_shown["user_id"], cafe.evg_id.as_str());
    let distance = cafe_shown["distance"].as_i64().unwrap();
    assert!((119..=121).contains(&distance), "{cafe_shown}");
    assert!((cafe_shown["lat"].as_f64().unwrap() - north(here, 120.0).0).abs() < 1e-9);
    assert!((cafe_shown["lon"].as_f64().unwrap() - here.1).abs() < 1e-9);
    assert!(is_iso_second(&cafe_shown["last_seen"]), "{cafe_shown}");
    let park_distance = nearby[1]["distance"].as_i64().unwrap();
    assert!((2_998..=3_002).contains(&park_distance), "{}", nearby[1]);

    // Without lat/lon now: where the caller was last seen (recorded by the call above).
    let again = ok(
        &node,
        "suggested_payors",
        &json!({"meta": meta(Some(&me.token))}),
    )
    .await;
    assert_eq!(again["nearby"], answer["nearby"]);
    // The others see the caller too (the caller's own call recorded their position), never
    // themselves.
    let from_cafe = ok(
        &node,
        "suggested_payors",
        &json!({"meta": meta(Some(&cafe.token))}),
    )
    .await;
    let names: Vec<&str> = from_cafe["nearby"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["Me Here", "Park Bench"]);
    // Closed accounts are not suggested.
    sql(
        &node,
        "UPDATE users SET is_active = FALSE WHERE fullname = $1",
        "Park Bench",
    )
    .await;
    let from_cafe = ok(
        &node,
        "suggested_payors",
        &json!({"meta": meta(Some(&cafe.token))}),
    )
    .await;
    assert_eq!(from_cafe["nearby"].as_array().unwrap().len(), 1);
    assert_eq!(from_cafe["nearby"][0]["name"], "Me Here");

    // One coordinate without the other.
    let mut half = meta(Some(&me.token));
    half["lat"] = json!(1.0);
    invalid(
        &node,
        "suggested_payors",
        &json!({"meta": half}),
        "meta.lon",
    )
    .await;
    let mut half = meta(Some(&me.token));
    half["lon"] = json!(1.0);
    invalid(
        &node,
        "suggested_payors",
        &json!({"meta": half}),
        "meta.lat",
    )
    .await;
    let mut out_of_range = meta_at(&me.token, 91.0, 0.0);
    out_of_range["lon"] = json!(0.0);
    invalid(
        &node,
        "suggested_payors",
        &json!({"meta": out_of_range}),
        "meta.lat",
    )
    .await;
    let (status, _) = call(
        &node,
        "suggested_payors",
        &json!({"meta": meta(Some(&me.token)), "radius": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[actix_web::test]
async fn nearby_reaches_across_the_antimeridian_and_is_bounded() {
    let node = spawn_node().await;
    let me = register(&node, Some("Dateline")).await;
    let across = register(&node, Some("Across")).await;
    ok(
        &node,
        "exchange_rates",
        &json!({"meta": meta_at(&across.token, 0.0, -179.999)}),
    )
    .await;
    let answer = ok(
        &node,
        "suggested_payors",
        &json!({"meta": meta_at(&me.token, 0.0, 179.999)}),
    )
    .await;
    assert_eq!(answer["nearby"][0]["name"], "Across", "{answer}");
    let distance = answer["nearby"][0]["distance"].as_i64().unwrap();
    assert!((220..=225).contains(&distance), "{answer}");

    // 21 more users around the caller: the 20 closest.
    let here = (10.0, 10.0);
    stream::iter(1..=21)
        .for_each_concurrent(8, |i| {
            let node = &node;
            async move {
                let user = register(node, Some(&format!("Crowd {i:02}"))).await;
                let at = north(here, f64::from(i) * 100.0);
                ok(
                    node,
                    "exchange_rates",
                    &json!({"meta": meta_at(&user.token, at.0, at.1)}),
                )
                .await;
            }
        })
        .await;
    let answer = ok(
        &node,
        "suggested_payors",
        &json!({"meta": meta_at(&me.token, here.0, here.1)}),
    )
    .await;
    let names: Vec<String> = answer["nearby"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (1..=20).map(|i| format!("Crowd {i:02}")).collect();
    assert_eq!(names, expected);
}

// ---------------------------------------------------------------------------------------------
// register_device

/// The stand-in Graph API: `/me` knows a few tokens; `/broken/me` always fails. It records
/// the query of every call.
struct FakeGraph {
    base: String,
    seen: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

async fn graph_me(
    query: web::Query<HashMap<String, String>>,
    seen: web::Data<Mutex<Vec<HashMap<String, String>>>>,
) -> HttpResponse {
    seen.lock().unwrap().push(query.0.clone());
    let profile = match query.get("access_token").map(String::as_str) {
        Some("fay-token") => Some(json!({"id": "1001", "name": "Fay Book"})),
        Some("gus-token") => Some(json!({"id": "2002", "name": "Gus Face"})),
        Some("hal-token") => Some(json!({"id": 3003, "name": "Hal Number"})),
        Some("ivy-token") => Some(json!({"id": "4004", "name": "Ivy Link"})),
        _ => None,
    };
    match (profile, query.get("fields").map(String::as_str)) {
        (Some(profile), Some("id,name")) => HttpResponse::Ok().json(profile),
        _ => HttpResponse::BadRequest().json(json!({"error": {
            "message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}})),
    }
}

async fn graph_broken() -> HttpResponse {
    HttpResponse::InternalServerError().body("oops")
}

async fn fake_graph() -> FakeGraph {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let data = web::Data::from(Arc::clone(&seen));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/me", web::get().to(graph_me))
            .route("/broken/me", web::get().to(graph_broken))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let address = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    FakeGraph {
        base: format!("http://{address}"),
        seen,
    }
}

async fn device(
    node: &TestNode,
    session: Option<&str>,
    user_id: &str,
    token: &str,
) -> (StatusCode, Value) {
    call(
        node,
        "register_device",
        &json!({"meta": meta(session), "user_id": user_id, "facebook_auth_token": token}),
    )
    .await
}

async fn account(node: &TestNode, token: &str) -> Value {
    ok(node, "account_info", &json!({"meta": meta(Some(token))})).await
}

fn assert_unauthorized(status: StatusCode, answer: &Value, next_step: &str) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["status"], "unauthorized", "{answer}");
    assert_eq!(answer["meta"]["status"], "unauthorized", "{answer}");
    assert_eq!(answer["meta"]["next_step"], next_step, "{answer}");
    assert!(answer["meta"]["message"].is_string(), "{answer}");
    assert!(answer.get("evg_auth_token").is_none(), "{answer}");
}

#[actix_web::test]
async fn register_device_links_facebook_to_a_registered_account_and_logs_in_with_it() {
    let graph = fake_graph().await;
    let base = graph.base.clone();
    let node = spawn_node_with(|s| s.facebook_graph_url = base).await;
    let stranger = register(&node, Some("Stranger")).await;

    // Not linked and no session: register first.
    let (status, answer) = device(&node, None, "facebook:1001", "fay-token").await;
    assert_unauthorized(status, &answer, "register");

    // Registered (without a name), then linked while logged in: the Facebook name is taken.
    let fay = register(&node, None).await;
    let (status, linked) = device(&node, Some(&fay.token), "facebook:1001", "fay-token").await;
    assert_eq!(status, StatusCode::OK, "{linked}");
    assert_eq!(
        keys(&linked),
        set(&["meta", "status", "evg_auth_token", "name"])
    );
    assert_eq!(linked["status"], "authorized");
    assert_eq!(linked["meta"]["status"], "authorized");
    assert_eq!(linked["name"], "Fay Book");
    let info = account(&node, linked["evg_auth_token"].as_str().unwrap()).await;
    assert_eq!(info["email"], fay.email.as_str());
    assert_eq!(info["name"], "Fay Book");

    // Later, on a new device, Facebook alone logs in to that account.
    let (status, login) = device(&node, None, "facebook:1001", "fay-token").await;
    assert_eq!(status, StatusCode::OK, "{login}");
    assert_eq!(login["name"], "Fay Book");
    let token = login["evg_auth_token"].as_str().unwrap();
    assert_ne!(token, linked["evg_auth_token"].as_str().unwrap());
    assert_eq!(account(&node, token).await["email"], fay.email.as_str());
    // The Facebook id wins over the session of someone else.
    let (status, login) = device(&node, Some(&stranger.token), "facebook:1001", "fay-token").await;
    assert_eq!(status, StatusCode::OK);
    let token = login["evg_auth_token"].as_str().unwrap();
    assert_eq!(account(&node, token).await["email"], fay.email.as_str());

    // From now on the account is shown by its Facebook id.
    let shown = person(&node, &stranger, "Fay Book").await;
    assert_eq!(shown["user_id"], "facebook:1001");
    deposit(&node, &stranger, "5").await;
    pay(&node, &stranger, "facebook:1001", "2", "hi").await;
    let history = list(&node, &stranger, None, None).await;
    assert_eq!(history["transactions"][0]["payee_id"], "facebook:1001");

    // One Facebook id per account.
    let (status, answer) = device(&node, Some(&fay.token), "facebook:2002", "gus-token").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["path"], "user_id");

    // An account with a name keeps it; numeric ids from the Graph API are understood.
    let hal = register(&node, Some("Hal Own Name")).await;
    let (status, answer) = device(&node, Some(&hal.token), "facebook:3003", "hal-token").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["name"], "Hal Own Name");

    // The token went to the stand-in only as the documented query, and is never echoed.
    let seen = graph.seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for query in &seen {
        assert_eq!(query.get("fields").map(String::as_str), Some("id,name"));
        assert!(query.contains_key("access_token"));
    }
    for answer in [&linked, &login] {
        assert!(!answer.to_string().contains("fay-token"));
    }
}

#[actix_web::test]
async fn register_device_refuses_tokens_facebook_does_not_confirm() {
    let graph = fake_graph().await;
    let base = graph.base.clone();
    let node = spawn_node_with(|s| s.facebook_graph_url = format!("{base}/")).await;
    let gus = register(&node, Some("Gus")).await;
    // Facebook refuses the token.
    let (status, answer) = device(&node, Some(&gus.token), "facebook:2002", "bad-token").await;
    assert_unauthorized(status, &answer, "logout");
    // The token is someone else's.
    let (status, answer) = device(&node, Some(&gus.token), "facebook:2002", "fay-token").await;
    assert_unauthorized(status, &answer, "logout");
    // Nothing was linked: Gus can still link his own.
    let (status, answer) = device(&node, Some(&gus.token), "facebook:2002", "gus-token").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // A closed account cannot log in.
    sql(
        &node,
        "UPDATE users SET is_active = FALSE WHERE id = \
         (SELECT user_id FROM user_external_ids WHERE external_id = $1)",
        "facebook:2002",
    )
    .await;
    let (status, answer) = device(&node, None, "facebook:2002", "gus-token").await;
    assert_unauthorized(status, &answer, "logout");
    // An expired or forged session cannot link.
    let (status, answer) = device(&node, Some("forged"), "facebook:4004", "ivy-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["meta"]["next_step"], "logout");
}

#[actix_web::test]
async fn register_device_validates_its_input() {
    let graph = fake_graph().await;
    let base = graph.base.clone();
    let node = spawn_node_with(|s| s.facebook_graph_url = base).await;
    for user_id in [
        "qr:abc",
        "facebook:",
        "facebook:12a",
        "1001",
        "facebook: 1001",
        &format!("facebook:{}", "1".repeat(33)),
    ] {
        let (status, answer) = device(&node, None, user_id, "fay-token").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{user_id}: {answer}");
        assert_eq!(answer["path"], "user_id");
    }
    for token in ["", "has space", "tab\there", &"t".repeat(4097)] {
        let (status, answer) = device(&node, None, "facebook:1001", token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["path"], "facebook_auth_token");
    }
    invalid(
        &node,
        "register_device",
        &json!({"meta": meta(None), "user_id": "facebook:1001"}),
        "facebook_auth_token",
    )
    .await;
    invalid(
        &node,
        "register_device",
        &json!({"meta": meta(None), "facebook_auth_token": "fay-token"}),
        "user_id",
    )
    .await;
    let (status, _) = call(
        &node,
        "register_device",
        &json!({"meta": meta(None), "user_id": "facebook:1001",
                "facebook_auth_token": "fay-token", "email": "x@example.com"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        graph.seen.lock().unwrap().is_empty(),
        "invalid requests never reach Facebook"
    );
}

#[actix_web::test]
async fn register_device_answers_503_when_facebook_fails() {
    let graph = fake_graph().await;
    let broken = format!("{}/broken", graph.base);
    let node = spawn_node_with(|s| s.facebook_graph_url = broken).await;
    let (status, answer) = device(&node, None, "facebook:1001", "fay-token").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["meta"]["status"], "error");
    assert!(answer["meta"]["message"].is_string());

    // Nothing listening at all.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let node = spawn_node_with(|s| s.facebook_graph_url = format!("http://{closed}")).await;
    let (status, answer) = device(&node, None, "facebook:1001", "fay-token").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(!answer.to_string().contains("fay-token"));
}

#[actix_web::test]
async fn concurrent_register_device_links_one_facebook_id_once() {
    let graph = fake_graph().await;
    let base = graph.base.clone();
    let node = spawn_node_with(|s| s.facebook_graph_url = base).await;
    let ivy = register(&node, Some("Ivy")).await;
    let other = register(&node, Some("Other")).await;
    let answers = futures_util::future::join_all((0..6).map(|i| {
        let session = if i % 2 == 0 { &ivy.token } else { &other.token };
        let node = &node;
        async move { device(node, Some(session), "facebook:4004", "ivy-token").await }
    }))
    .await;
    let mut emails = BTreeSet::new();
    for (status, answer) in &answers {
        assert_eq!(*status, StatusCode::OK, "{answer}");
        let token = answer["evg_auth_token"].as_str().unwrap();
        emails.insert(
            account(&node, token).await["email"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        emails.len(),
        1,
        "every call logged in to one account: {emails:?}"
    );
    assert!(emails.contains(&ivy.email) || emails.contains(&other.email));
}

// ---------------------------------------------------------------------------------------------
// exchange_rates

#[actix_web::test]
async fn exchange_rates_answers_the_configured_table_as_decimal_strings() {
    let node = spawn_node().await;
    let me = register(&node, Some("Rates")).await;
    let answer = ok(
        &node,
        "exchange_rates",
        &json!({"meta": meta(Some(&me.token))}),
    )
    .await;
    assert_eq!(keys(&answer), set(&["meta", "base", "rates", "updated_at"]));
    assert_eq!(answer["base"], "EVG");
    assert_eq!(
        answer["rates"],
        json!([{"currency": "USD", "rate": "0.01"}])
    );
    assert!(is_iso_second(&answer["updated_at"]), "{answer}");

    // The operator changes the table; malformed rows are left out.
    sql(
        &node,
        "INSERT INTO evergreen_exchange_rates (currency, rate, updated_at) \
         VALUES ('EUR', $1, 1893456000000)",
        "0.00920",
    )
    .await;
    for (currency, rate) in [("XXY", "abc"), ("chf", "0.01"), ("GBP", "-1")] {
        sql(
            &node,
            &format!(
                "INSERT INTO evergreen_exchange_rates (currency, rate, updated_at) \
                 VALUES ('{currency}', $1, 1924992000000)"
            ),
            rate,
        )
        .await;
    }
    let answer = ok(
        &node,
        "exchange_rates",
        &json!({"meta": meta(Some(&me.token))}),
    )
    .await;
    assert_eq!(
        answer["rates"],
        json!([{"currency": "EUR", "rate": "0.0092"}, {"currency": "USD", "rate": "0.01"}])
    );
    assert_eq!(answer["updated_at"], "2030-01-01T00:00:00Z");

    // An empty table: no rates, no date.
    sql(
        &node,
        "DELETE FROM evergreen_exchange_rates WHERE currency <> $1",
        "",
    )
    .await;
    let answer = ok(
        &node,
        "exchange_rates",
        &json!({"meta": meta(Some(&me.token))}),
    )
    .await;
    assert_eq!(keys(&answer), set(&["meta", "base", "rates"]));
    assert_eq!(answer["rates"], json!([]));

    let (status, _) = call(
        &node,
        "exchange_rates",
        &json!({"meta": meta(Some(&me.token)), "currency": "USD"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

// ---------------------------------------------------------------------------------------------
// The OpenAPI document

#[actix_web::test]
async fn every_history_call_is_in_the_openapi_document() {
    let node = spawn_node().await;
    let api: Value = node.get("/openapi.json").await.json().await.unwrap();
    for name in [
        "transaction_list",
        "transaction_detail",
        "leave_feedback",
        "search_users",
        "suggested_payors",
        "register_device",
        "exchange_rates",
    ] {
        let operation = &api["paths"][format!("/rest/v01/{name}")]["post"];
        assert!(operation.is_object(), "{name} missing");
        let documented = format!(
            "{} {}",
            operation["summary"].as_str().unwrap_or_default(),
            operation["description"].as_str().unwrap_or_default()
        );
        assert!(documented.len() > 150, "{name} is documented: {operation}");
        assert!(operation["responses"]["200"].is_object(), "{name}");
        assert!(operation["responses"]["400"].is_object(), "{name}");
    }
}
