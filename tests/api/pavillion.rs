//! Pavillion (seed 000): signup, login and charges by apps, and the admin routes that register
//! apps. Balances are read straight from the node's ledger (and the app's revenue also through
//! `GET /admin/apps/{clientId}`).

use futures_util::future::join_all;
use node::store::Db;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::helpers::{spawn_node_with, TestNode};

const ADMIN_EMAIL: &str = "root@example.com";
const ADMIN_PASSWORD: &str = "admin password 123";
const PASSWORD: &str = "ABCabc#$#$%123";

/// A node with an administrator, and the administrator's token.
struct Pav {
    node: TestNode,
    admin_token: String,
}

/// A registered app.
#[derive(Clone)]
struct App {
    id: String,
    key: String,
}

/// A user signed up and logged in through an app.
#[derive(Clone)]
struct PavUser {
    id: String,
    email: String,
    token: String,
}

async fn pav() -> Pav {
    let node = spawn_node_with(|s| {
        s.admin_email = Some(ADMIN_EMAIL.to_owned());
        s.admin_password = Some(SecretString::from(ADMIN_PASSWORD.to_owned()));
    })
    .await;
    let response = node.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let admin_token = body["accessToken"].as_str().unwrap().to_owned();
    Pav { node, admin_token }
}

fn invalid() -> Value {
    json!({"message": "Invalid request"})
}

fn invalid_credentials() -> Value {
    json!({"message": "Invalid credentials"})
}

async fn body_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, body)
}

impl Pav {
    async fn create_app_raw(&self, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self.node.http.post(self.node.url("/admin/apps")).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    async fn app(&self) -> App {
        let response = self
            .create_app_raw(Some(&self.admin_token), &json!({"name": "Chat helper"}))
            .await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        App {
            id: body["clientId"].as_str().unwrap().to_owned(),
            key: body["apiKey"].as_str().unwrap().to_owned(),
        }
    }

    async fn signup(&self, body: &Value) -> reqwest::Response {
        self.node.post_json("/api/signup", body).await
    }

    async fn login(&self, body: &Value) -> reqwest::Response {
        self.node.post_json("/api/login", body).await
    }

    /// A new user signed up and logged in through `app`.
    async fn user(&self, app: &App) -> PavUser {
        let email = format!("user-{}@example.com", uuid::Uuid::new_v4().simple());
        let credentials = json!({"email": email, "password": PASSWORD, "clientId": app.id});
        assert_eq!(self.signup(&credentials).await.status(), 201);
        let response = self.login(&credentials).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        PavUser {
            id: body["id"].as_str().unwrap().to_owned(),
            email,
            token: body["token"].as_str().unwrap().to_owned(),
        }
    }

    /// Whole units into the user's account in `currency`, through Evergreen.
    async fn deposit(&self, user: &PavUser, amount: &str, currency: &str) {
        let response = self
            .node
            .post_json(
                "/rest/v01/deposit",
                &json!({
                    "meta": {
                        "uuid": "d",
                        "client_version": "1",
                        "request_id": uuid::Uuid::new_v4().to_string(),
                        "evg_auth_token": user.token,
                    },
                    "amount": amount,
                    "currency": currency,
                }),
            )
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "success", "{body}");
    }

    fn charge_request(&self, app: &App, key: Option<&str>) -> reqwest::RequestBuilder {
        let mut request = self
            .node
            .http
            .post(self.node.url(&format!("/api/app/{}/charge", app.id)));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.header("x-api-key", &app.key)
    }

    async fn charge(&self, app: &App, body: &Value, key: Option<&str>) -> (StatusCode, Value) {
        body_of(
            self.charge_request(app, key)
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        body_of(self.node.get_with_token(path, &self.admin_token).await).await
    }

    async fn db(&self) -> Db {
        Db::connect(&self.node.database_url, 1).await.unwrap()
    }

    /// A ledger balance in minor units (0 when the account does not exist).
    async fn balance(&self, kind: &str, id: &str, currency: &str) -> i64 {
        let db = self.db().await;
        let found: Option<i64> = node::on_db!(&db, pool => sqlx::query_scalar(
            "SELECT balance FROM ledger_accounts \
             WHERE owner_kind = $1 AND owner_id = $2 AND currency = $3")
            .bind(kind)
            .bind(id)
            .bind(currency)
            .fetch_optional(pool)
            .await
            .unwrap());
        db.close().await;
        found.unwrap_or(0)
    }

    /// (status, charge id, message) of a stored app message.
    async fn message_row(&self, id: &str) -> Option<(String, Option<String>, Option<String>)> {
        let db = self.db().await;
        let row = node::on_db!(&db, pool => sqlx::query_as(
            "SELECT status, charge_id, message FROM app_messages WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await
            .unwrap());
        db.close().await;
        row
    }

    /// (id, status, charge id) of the message an app stored under an idempotency key.
    async fn message_by_key(
        &self,
        app: &App,
        key: &str,
    ) -> Option<(String, String, Option<String>)> {
        let db = self.db().await;
        let row = node::on_db!(&db, pool => sqlx::query_as(
            "SELECT id, status, charge_id FROM app_messages \
             WHERE app_id = $1 AND idempotency_key = $2")
            .bind(&app.id)
            .bind(key)
            .fetch_optional(pool)
            .await
            .unwrap());
        db.close().await;
        row
    }

    /// (status, amount, currency, app message id) of a stored charge.
    async fn charge_row(&self, id: &str) -> Option<(String, i64, String, String)> {
        let db = self.db().await;
        let row = node::on_db!(&db, pool => sqlx::query_as(
            "SELECT status, amount, currency, app_message_id FROM app_charges WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await
            .unwrap());
        db.close().await;
        row
    }

    /// Ledger transfers of kind `charge` credited to the app.
    async fn charge_transfers(&self, app: &App) -> i64 {
        let db = self.db().await;
        let count: i64 = node::on_db!(&db, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM transfers \
             WHERE kind = 'charge' AND credit_kind = 'app' AND credit_id = $1")
            .bind(&app.id)
            .fetch_one(pool)
            .await
            .unwrap());
        db.close().await;
        count
    }

    /// Per currency, every balance sums to zero and no user is below what they hold.
    async fn assert_ledger_balanced(&self) {
        let (sums, negative) = self.node.audit().await;
        for (currency, sum) in sums {
            assert_eq!(sum, 0, "{currency} does not sum to zero");
        }
        assert_eq!(negative, 0, "a user balance is below what it holds");
    }
}

fn is_uuid(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| uuid::Uuid::parse_str(s).is_ok())
}

// ---------------------------------------------------------------------------------------------
// Signup and login

#[actix_web::test]
async fn signup_answers_201_and_login_answers_id_email_and_a_token_of_the_node() {
    let p = pav().await;
    let app = p.app().await;
    let credentials = json!({"email": "Ann@Example.com", "password": PASSWORD, "clientId": app.id});
    let response = p.signup(&credentials).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.text().await.unwrap(), "", "201 has no body");

    let response = p.login(&credentials).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let text = response.text().await.unwrap();
    assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    assert!(!text.contains("argon2"), "a hash leaked: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "{body}");
    assert!(is_uuid(&body["id"]), "{body}");
    assert_eq!(body["email"], "Ann@Example.com");
    let token = body["token"].as_str().unwrap();

    // One identity: the token is the node's, valid on the marketplace too.
    let me = p.node.get_with_token("/auth-api/currentuser", token).await;
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["userId"], body["id"], "{me}");

    // The email is unique case-insensitively: the marketplace refuses it too.
    let taken = p.node.register("ann@example.com", "another password").await;
    assert_eq!(taken.status(), 409);
}

#[actix_web::test]
async fn signup_with_an_existing_email_links_the_account_only_with_its_password() {
    let p = pav().await;
    let (first, second) = (p.app().await, p.app().await);
    let user = p.user(&first).await;

    // The right password: the same account, now linked to the second app.
    let again =
        json!({"email": user.email.to_uppercase(), "password": PASSWORD, "clientId": second.id});
    let response = p.signup(&again).await;
    assert_eq!(response.status(), 201);
    let (status, body) = p
        .charge(&second, &json!({"userId": user.id, "message": "hi"}), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = body_of(p.login(&again).await).await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], user.id.as_str(), "the same account");

    // Another password: refused like any invalid request; the account is untouched.
    let third = p.app().await;
    let wrong = json!({"email": user.email, "password": "not the password", "clientId": third.id});
    let (status, body) = body_of(p.signup(&wrong).await).await;
    assert_eq!((status, body), (StatusCode::BAD_REQUEST, invalid()));
    let (status, body) = p
        .charge(&third, &json!({"userId": user.id, "message": "hi"}), None)
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::BAD_REQUEST, invalid()),
        "not linked"
    );
    let original = json!({"email": user.email, "password": PASSWORD, "clientId": first.id});
    assert_eq!(p.login(&original).await.status(), 200);
}

#[actix_web::test]
async fn concurrent_signups_with_one_email_make_one_account() {
    let p = pav().await;
    let app = p.app().await;
    let credentials =
        json!({"email": "race@example.com", "password": PASSWORD, "clientId": app.id});
    let answers = join_all((0..6).map(|_| p.signup(&credentials))).await;
    for answer in answers {
        assert_eq!(answer.status(), 201);
    }
    let db = p.db().await;
    let accounts: i64 = node::on_db!(&db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE email_lower = 'race@example.com'")
        .fetch_one(pool)
        .await
        .unwrap());
    db.close().await;
    assert_eq!(accounts, 1);
    assert_eq!(p.login(&credentials).await.status(), 200);
}

#[actix_web::test]
async fn signup_refuses_invalid_requests_with_the_documented_400() {
    let p = pav().await;
    let app = p.app().await;
    let ok = |email: &str| json!({"email": email, "password": PASSWORD, "clientId": app.id});
    let bodies = [
        json!({"password": PASSWORD, "clientId": app.id}),
        json!({"email": "a@example.com", "clientId": app.id}),
        json!({"email": "a@example.com", "password": PASSWORD}),
        json!({"email": "a@example.com", "password": PASSWORD, "clientId": "no-such-app"}),
        json!({"email": "not-an-email", "password": PASSWORD, "clientId": app.id}),
        json!({"email": "a@example.com", "password": "short", "clientId": app.id}),
        json!({"email": "a@example.com", "password": "x".repeat(129), "clientId": app.id}),
        json!({"email": format!("{}@example.com", "a".repeat(250)), "password": PASSWORD, "clientId": app.id}),
        json!({"email": 5, "password": PASSWORD, "clientId": app.id}),
        json!({"email": "a@example.com", "password": null, "clientId": app.id}),
        json!({"email": "a@example.com", "password": PASSWORD, "clientId": app.id, "role": "admin"}),
        json!(["a@example.com"]),
    ];
    for body in bodies {
        let (status, answer) = body_of(p.signup(&body).await).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer, invalid(), "{body}");
    }
    for raw in ["{", "", "{\"email\": \"a@example.com\",}", "null"] {
        let response = p
            .node
            .http
            .post(p.node.url("/api/signup"))
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        let (status, answer) = body_of(response).await;
        assert_eq!(
            (status, answer),
            (StatusCode::BAD_REQUEST, invalid()),
            "{raw}"
        );
    }
    let as_text = p
        .node
        .http
        .post(p.node.url("/api/signup"))
        .header("content-type", "text/plain")
        .body(ok("a@example.com").to_string())
        .send()
        .await
        .unwrap();
    let (status, answer) = body_of(as_text).await;
    assert_eq!((status, answer), (StatusCode::BAD_REQUEST, invalid()));

    let mut huge = ok("a@example.com");
    huge["email"] = json!(format!("{}@example.com", "a".repeat(100 * 1024)));
    let (status, answer) = body_of(p.signup(&huge).await).await;
    assert_eq!(status, 413);
    assert_eq!(answer, json!({"message": "Request body too large"}));

    // Nothing was created by any of them.
    assert_eq!(p.signup(&ok("a@example.com")).await.status(), 201);
}

#[actix_web::test]
async fn login_answers_401_for_wrong_credentials_and_400_for_invalid_requests() {
    let p = pav().await;
    let app = p.app().await;
    let user = p.user(&app).await;
    for body in [
        json!({"email": user.email, "password": "wrong password", "clientId": app.id}),
        json!({"email": "nobody@example.com", "password": PASSWORD, "clientId": app.id}),
    ] {
        let (status, answer) = body_of(p.login(&body).await).await;
        assert_eq!(
            (status, answer),
            (StatusCode::UNAUTHORIZED, invalid_credentials())
        );
    }
    for body in [
        json!({"email": user.email, "password": PASSWORD, "clientId": "no-such-app"}),
        json!({"email": user.email, "password": PASSWORD}),
        json!({"email": user.email, "password": "", "clientId": app.id}),
        json!({"email": user.email, "password": 12345678, "clientId": app.id}),
        json!({"email": user.email, "password": PASSWORD, "clientId": app.id, "remember": true}),
    ] {
        let (status, answer) = body_of(p.login(&body).await).await;
        assert_eq!(
            (status, answer),
            (StatusCode::BAD_REQUEST, invalid()),
            "{body}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Administration of apps

#[actix_web::test]
async fn only_administrators_register_apps_and_the_key_is_shown_once() {
    let p = pav().await;
    let body = json!({"name": "Chat helper", "clientId": "chat-helper"});
    let (status, answer) = body_of(p.create_app_raw(None, &body).await).await;
    assert_eq!(
        (status, answer),
        (StatusCode::UNAUTHORIZED, invalid_credentials())
    );
    let (status, _) = body_of(p.create_app_raw(Some("not a token"), &body).await).await;
    assert_eq!(status, 401);
    let someone = p.node.user().await;
    let (status, answer) = body_of(p.create_app_raw(Some(&someone.token), &body).await).await;
    assert_eq!(
        (status, answer),
        (StatusCode::FORBIDDEN, json!({"message": "Forbidden"}))
    );

    let response = p.create_app_raw(Some(&p.admin_token), &body).await;
    assert_eq!(response.status(), 201);
    let (_, created) = body_of(response).await;
    assert_eq!(created["clientId"], "chat-helper");
    assert_eq!(created["name"], "Chat helper");
    let key = created["apiKey"].as_str().unwrap().to_owned();
    assert!(key.starts_with("pvk_") && key.len() == 68, "{key}");

    let (status, answer) = body_of(p.create_app_raw(Some(&p.admin_token), &body).await).await;
    assert_eq!(status, 409);
    assert_eq!(answer, json!({"message": "clientId is already registered"}));
    for bad in [
        json!({"name": ""}),
        json!({"name": "x".repeat(101)}),
        json!({"name": "A", "clientId": "has space"}),
        json!({"name": "A", "clientId": ""}),
        json!({"name": "A", "apiKey": "mine"}),
        json!({"clientId": "x"}),
    ] {
        let (status, answer) = body_of(p.create_app_raw(Some(&p.admin_token), &bad).await).await;
        assert_eq!(
            (status, answer),
            (StatusCode::BAD_REQUEST, invalid()),
            "{bad}"
        );
    }
    let generated = p.app().await;
    assert!(uuid::Uuid::parse_str(&generated.id).is_ok());

    // Listed and read without the key.
    let (status, list) = p.admin_get("/admin/apps").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["clientId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["chat-helper", generated.id.as_str()]);
    assert!(!list.to_string().contains(&key), "the key leaked");
    assert!(!list.to_string().contains("apiKey"));
    let (status, page) = p.admin_get("/admin/apps?limit=1&offset=1").await;
    assert_eq!(status, 200);
    assert_eq!(page["apps"][0]["clientId"], generated.id.as_str());
    let (status, _) = p.admin_get("/admin/apps?limit=1000").await;
    assert_eq!(status, 400);
    let (status, one) = p.admin_get("/admin/apps/chat-helper").await;
    assert_eq!(status, 200);
    assert_eq!(one["revenue"], json!([]));
    assert!(one["apiKey"].is_null());
    let (status, answer) = p.admin_get("/admin/apps/nope").await;
    assert_eq!(
        (status, answer),
        (StatusCode::NOT_FOUND, json!({"message": "Not found"}))
    );
    let (status, _) = body_of(p.node.get_with_token("/admin/apps", &someone.token).await).await;
    assert_eq!(status, 403);
}

#[actix_web::test]
async fn rotating_a_key_stops_the_old_one_at_once() {
    let p = pav().await;
    let app = p.app().await;
    let user = p.user(&app).await;
    let message = json!({"userId": user.id, "message": "hi"});
    assert_eq!(p.charge(&app, &message, None).await.0, 200);

    let rotate = |token: String| {
        p.node
            .http
            .post(p.node.url(&format!("/admin/apps/{}/key", app.id)))
            .bearer_auth(token)
            .send()
    };
    let (status, rotated) = body_of(rotate(p.admin_token.clone()).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(rotated["clientId"], app.id.as_str());
    let new_key = rotated["apiKey"].as_str().unwrap().to_owned();
    assert_ne!(new_key, app.key);

    let (status, answer) = p.charge(&app, &message, None).await;
    assert_eq!(
        (status, answer),
        (StatusCode::UNAUTHORIZED, invalid_credentials())
    );
    let renewed = App {
        id: app.id.clone(),
        key: new_key,
    };
    assert_eq!(p.charge(&renewed, &message, None).await.0, 200);
    let (status, _) = body_of(rotate(user.token.clone()).await.unwrap()).await;
    assert_eq!(status, 403);
}

// ---------------------------------------------------------------------------------------------
// Charges

#[actix_web::test]
async fn charges_move_exact_amounts_and_a_refused_charge_is_a_stored_record() {
    let p = pav().await;
    let app = p.app().await;
    let user = p.user(&app).await;
    p.deposit(&user, "5", "USD").await;

    let charge = |cents: i64| json!({"userId": user.id, "message": "{\"userInput\": \"hi\"}", "chargeCents": cents});
    let (status, body) = p.charge(&app, &charge(100), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body.as_object().unwrap().len(),
        1,
        "only appMessageId: {body}"
    );
    assert!(is_uuid(&body["appMessageId"]), "{body}");
    let first = body["appMessageId"].as_str().unwrap().to_owned();
    let (status, body) = p
        .charge(
            &app,
            &json!({"userId": user.id, "chargeCents": 300, "currency": "usd"}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // 100 left: 101 is refused, with both ids, and recorded.
    let (status, refused) = p.charge(&app, &charge(101), None).await;
    assert_eq!(status, 402, "{refused}");
    assert_eq!(refused["message"], "Insufficient funds");
    assert_eq!(refused.as_object().unwrap().len(), 3, "{refused}");
    assert!(is_uuid(&refused["appMessageId"]) && is_uuid(&refused["chargeId"]));
    assert_ne!(refused["appMessageId"], refused["chargeId"]);
    let charge_id = refused["chargeId"].as_str().unwrap();
    let message_id = refused["appMessageId"].as_str().unwrap();
    let (status, amount, currency, of_message) = p.charge_row(charge_id).await.unwrap();
    assert_eq!(
        (
            status.as_str(),
            amount,
            currency.as_str(),
            of_message.as_str()
        ),
        ("insufficient_funds", 101, "USD", message_id)
    );
    let (status, linked_charge, _) = p.message_row(message_id).await.unwrap();
    assert_eq!(status, "insufficient_funds");
    assert_eq!(linked_charge.as_deref(), Some(charge_id));

    // Exactly what is left fits; one cent more does not.
    let (status, _) = p.charge(&app, &charge(100), None).await;
    assert_eq!(status, 200);
    let (status, _) = p.charge(&app, &charge(1), None).await;
    assert_eq!(status, 402);

    assert_eq!(p.balance("user", &user.id, "USD").await, 0);
    assert_eq!(p.balance("app", &app.id, "USD").await, 500);
    assert_eq!(p.charge_transfers(&app).await, 3);
    let (status, view) = p.admin_get(&format!("/admin/apps/{}", app.id)).await;
    assert_eq!(status, 200);
    assert_eq!(
        view["revenue"],
        json!([{"currency": "USD", "amountMinor": 500, "amount": "5.00"}])
    );
    let (status, _, message) = p.message_row(&first).await.unwrap();
    assert_eq!(status, "charged");
    assert_eq!(message.as_deref(), Some("{\"userInput\": \"hi\"}"));
    p.assert_ledger_balanced().await;
}

#[actix_web::test]
async fn a_user_without_an_account_in_the_currency_gets_the_documented_404() {
    let p = pav().await;
    let app = p.app().await;
    let user = p.user(&app).await;
    let (status, body) = p
        .charge(&app, &json!({"userId": user.id, "chargeCents": 100}), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"message": format!("User {} does not have an account in USD", user.id)})
    );

    p.deposit(&user, "5", "USD").await;
    let (status, body) = p
        .charge(
            &app,
            &json!({"userId": user.id, "chargeCents": 100, "currency": "eur"}),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"message": format!("User {} does not have an account in EUR", user.id)})
    );
    assert_eq!(p.balance("user", &user.id, "USD").await, 500);
    assert_eq!(p.balance("app", &app.id, "EUR").await, 0);
}

#[actix_web::test]
async fn a_message_without_a_charge_is_recorded_and_moves_no_money() {
    let p = pav().await;
    let app = p.app().await;
    let user = p.user(&app).await;
    // No account at all is fine for a message.
    let (status, body) = p
        .charge(&app, &json!({"userId": user.id, "message": "hello"}), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["appMessageId"].as_str().unwrap();
    assert_eq!(
        p.message_row(id).await,
        Some(("recorded".to_owned(), None, Some("hello".to_owned())))
    );

    p.deposit(&user, "2", "USD").await;
    let (status, _) = p
        .charge(
            &app,
            &json!({"userId": user.id, "message": "again", "currency": "USD"}),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(p.balance("user", &user.id, "USD").await, 200);
    assert_eq!(p.balance("app", &app.id, "USD").await, 0);
    assert_eq!(p.charge_transfers(&app).await, 0);
}

#[actix_web::test]
async fn charge_refuses_invalid_bodies_with_the_documented_400() {
    let p = pav().await;
    let app = p.app().await;
    let user = p.user(&app).await;
    p.deposit(&user, "5", "USD").await;
    let id = user.id.as_str();
    let bodies = [
        json!({"userId": id}),
        json!({"userId": id, "message": ""}),
        json!({"userId": id, "message": null, "chargeCents": null}),
        json!({"message": "hi"}),
        json!({"userId": "", "message": "hi"}),
        json!({"userId": 5, "message": "hi"}),
        json!({"userId": id, "message": 5}),
        json!({"userId": id, "chargeCents": 1.5}),
        json!({"userId": id, "chargeCents": 100.0}),
        json!({"userId": id, "chargeCents": "100"}),
        json!({"userId": id, "chargeCents": 0}),
        json!({"userId": id, "chargeCents": -5}),
        json!({"userId": id, "chargeCents": 100_000_001}),
        json!({"userId": id, "chargeCents": u64::MAX}),
        json!({"userId": id, "chargeCents": 100, "currency": "XXX"}),
        json!({"userId": id, "chargeCents": 100, "currency": ""}),
        json!({"userId": id, "chargeCents": 100, "currency": 840}),
        json!({"userId": id, "chargeCents": 100, "amount": 1}),
        json!({"userId": id, "message": "x".repeat(16_385)}),
        json!({"userId": "someone-else", "message": "hi"}),
        json!([1, 2]),
    ];
    for body in bodies {
        let (status, answer) = p.charge(&app, &body, None).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer, invalid(), "{body}");
    }
    let exponent = format!("{{\"userId\": \"{id}\", \"chargeCents\": 1e2}}");
    let duplicate = format!("{{\"userId\": \"{id}\", \"message\": \"a\", \"message\": \"b\"}}");
    for raw in [
        "{",
        "",
        "{\"userId\": \"a\" \"message\": \"b\"}",
        &exponent,
        &duplicate,
    ] {
        let response = p
            .charge_request(&app, None)
            .header("content-type", "application/json")
            .body(raw.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(
            body_of(response).await,
            (StatusCode::BAD_REQUEST, invalid()),
            "{raw}"
        );
    }
    let response = p
        .charge_request(&app, None)
        .body(json!({"userId": id, "chargeCents": 1}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        body_of(response).await,
        (StatusCode::BAD_REQUEST, invalid()),
        "no content type"
    );
    let (status, _) = p
        .charge(
            &app,
            &json!({"userId": id, "chargeCents": 1}),
            Some("has space"),
        )
        .await;
    assert_eq!(status, 400, "a bad Idempotency-Key");
    let (status, answer) = p
        .charge(
            &app,
            &json!({"userId": id, "message": "x".repeat(70 * 1024)}),
            None,
        )
        .await;
    assert_eq!(status, 413);
    assert_eq!(answer, json!({"message": "Request body too large"}));

    // The largest charge is AMOUNT_MAX whole units (1 000 000 USD by default).
    let (status, body) = p
        .charge(
            &app,
            &json!({"userId": id, "chargeCents": 100_000_000}),
            None,
        )
        .await;
    assert_eq!(status, 402, "valid, and more than the balance: {body}");
    assert_eq!(p.balance("user", id, "USD").await, 500, "nothing moved");
}

#[actix_web::test]
async fn charge_needs_the_apps_key_and_a_user_linked_to_the_app() {
    let p = pav().await;
    let (app, other) = (p.app().await, p.app().await);
    let user = p.user(&app).await;
    let stranger = p.user(&other).await;
    p.deposit(&user, "5", "USD").await;
    p.deposit(&stranger, "5", "USD").await;
    let body = json!({"userId": user.id, "chargeCents": 10});
    let url = p.node.url(&format!("/api/app/{}/charge", app.id));

    let no_key = p.node.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(
        body_of(no_key).await,
        (StatusCode::UNAUTHORIZED, invalid_credentials())
    );
    for key in [
        "pvk_wrong".to_owned(),
        other.key.clone(),
        format!("Bearer {}", app.key),
    ] {
        let response = p
            .node
            .http
            .post(&url)
            .header("x-api-key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            body_of(response).await,
            (StatusCode::UNAUTHORIZED, invalid_credentials())
        );
    }
    let unknown_app = App {
        id: "no-such-app".into(),
        key: app.key.clone(),
    };
    let (status, answer) = p.charge(&unknown_app, &body, None).await;
    assert_eq!(
        (status, answer),
        (StatusCode::UNAUTHORIZED, invalid_credentials())
    );
    // The key is checked before the body: an unauthenticated caller learns nothing from it.
    let garbage = p.node.http.post(&url).body("{").send().await.unwrap();
    assert_eq!(body_of(garbage).await.0, 401);

    // A user of another app cannot be charged, nor named in a message...
    let not_linked = json!({"userId": stranger.id, "chargeCents": 10});
    assert_eq!(
        p.charge(&app, &not_linked, None).await,
        (StatusCode::BAD_REQUEST, invalid())
    );
    let not_linked_message = json!({"userId": stranger.id, "message": "hi"});
    assert_eq!(
        p.charge(&app, &not_linked_message, None).await,
        (StatusCode::BAD_REQUEST, invalid())
    );
    // ...until they log in through it.
    let credentials = json!({"email": stranger.email, "password": PASSWORD, "clientId": app.id});
    assert_eq!(p.login(&credentials).await.status(), 200);
    assert_eq!(p.charge(&app, &not_linked, None).await.0, 200);

    // The user's token, when sent, must be that user's.
    let with_token = |token: &str| {
        p.charge_request(&app, None)
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let own = with_token(&user.token).await.unwrap();
    assert_eq!(own.status(), 200);
    let theirs = with_token(&stranger.token).await.unwrap();
    assert_eq!(
        body_of(theirs).await,
        (StatusCode::FORBIDDEN, json!({"message": "Forbidden"}))
    );
    let forged = with_token("not.a.token").await.unwrap();
    assert_eq!(
        body_of(forged).await,
        (StatusCode::UNAUTHORIZED, invalid_credentials())
    );

    assert_eq!(p.balance("user", &user.id, "USD").await, 490);
    assert_eq!(p.balance("user", &stranger.id, "USD").await, 490);
    assert_eq!(p.balance("app", &app.id, "USD").await, 20);
    assert_eq!(p.balance("app", &other.id, "USD").await, 0);
}

#[actix_web::test]
async fn the_same_idempotency_key_makes_one_charge_with_identical_answers() {
    let p = pav().await;
    let app = p.app().await;
    let user = p.user(&app).await;
    p.deposit(&user, "5", "USD").await;
    let body = json!({"userId": user.id, "message": "once", "chargeCents": 100});

    let copies = (0..8).map(|_| p.charge(&app, &body, Some("order-1")));
    let answers = join_all(copies).await;
    let (status, first) = answers[0].clone();
    assert_eq!(status, 200, "{first}");
    for answer in &answers {
        assert_eq!(answer, &(status, first.clone()), "identical answers");
    }
    let later = p.charge(&app, &body, Some("order-1")).await;
    assert_eq!(
        later,
        (status, first.clone()),
        "a later repeat gets the first answer"
    );
    assert_eq!(p.balance("user", &user.id, "USD").await, 400);
    assert_eq!(p.balance("app", &app.id, "USD").await, 100);
    assert_eq!(p.charge_transfers(&app).await, 1);

    // The same key with another body is refused, and changes nothing.
    let other_body = json!({"userId": user.id, "message": "once", "chargeCents": 200});
    let (status, answer) = p.charge(&app, &other_body, Some("order-1")).await;
    assert_eq!(status, 422);
    assert_eq!(
        answer,
        json!({"message": "Idempotency-Key was already used for a different request"})
    );
    assert_eq!(p.balance("user", &user.id, "USD").await, 400);

    // Keys are per app: another app's "order-1" is its own charge.
    let other = p.app().await;
    let credentials = json!({"email": user.email, "password": PASSWORD, "clientId": other.id});
    assert_eq!(p.login(&credentials).await.status(), 200);
    let (status, theirs) = p.charge(&other, &body, Some("order-1")).await;
    assert_eq!(status, 200);
    assert_ne!(theirs, first);
    assert_eq!(p.balance("user", &user.id, "USD").await, 300);

    // A refusal is an answer too: repeated as it was, even once the money is there.
    let big = json!({"userId": user.id, "chargeCents": 1000});
    let refused = p.charge(&app, &big, Some("order-2")).await;
    assert_eq!(refused.0, 402);
    p.deposit(&user, "10", "USD").await;
    assert_eq!(p.charge(&app, &big, Some("order-2")).await, refused);
    assert_eq!(p.balance("user", &user.id, "USD").await, 1300);

    // Without a key, each call is a new charge.
    let plain = json!({"userId": user.id, "chargeCents": 50});
    let (a, b) = (
        p.charge(&app, &plain, None).await,
        p.charge(&app, &plain, None).await,
    );
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
    assert_ne!(a.1, b.1);
    assert_eq!(p.balance("user", &user.id, "USD").await, 1200);
    p.assert_ledger_balanced().await;
}

#[actix_web::test]
async fn a_charge_whose_batch_fails_is_marked_failed_and_a_retry_charges_once() {
    let p = pav().await;
    let app = p.app().await;
    let user = p.user(&app).await;
    p.deposit(&user, "5", "USD").await;
    let body = json!({"userId": user.id, "message": "m", "chargeCents": 100});

    p.node.faults.fail_next_batches(1);
    let (status, answer) = p.charge(&app, &body, Some("retry-me")).await;
    assert_eq!(status, 500);
    assert_eq!(answer, json!({"message": "Unknown API Error"}));
    let (message_id, status, charge_id) = p.message_by_key(&app, "retry-me").await.unwrap();
    assert_eq!(status, "failed");
    let charge_id = charge_id.unwrap();
    assert_eq!(p.charge_row(&charge_id).await.unwrap().0, "failed");
    assert_eq!(
        p.balance("user", &user.id, "USD").await,
        500,
        "nothing moved"
    );
    assert_eq!(p.charge_transfers(&app).await, 0);

    // The retry charges, once, under the same ids.
    let (status, answer) = p.charge(&app, &body, Some("retry-me")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"appMessageId": message_id}));
    assert_eq!(p.charge_row(&charge_id).await.unwrap().0, "charged");
    assert_eq!(p.charge(&app, &body, Some("retry-me")).await.1, answer);
    assert_eq!(p.balance("user", &user.id, "USD").await, 400);
    assert_eq!(p.charge_transfers(&app).await, 1);

    // Without a key the failed attempt stays, marked failed; nothing moved.
    p.node.faults.fail_next_batches(1);
    let unkeyed = json!({"userId": user.id, "message": "unkeyed", "chargeCents": 100});
    let (status, _) = p.charge(&app, &unkeyed, None).await;
    assert_eq!(status, 500);
    let db = p.db().await;
    let statuses: Vec<String> = node::on_db!(&db, pool => sqlx::query_scalar(
        "SELECT status FROM app_messages WHERE app_id = $1 AND message = 'unkeyed'")
        .bind(&app.id)
        .fetch_all(pool)
        .await
        .unwrap());
    db.close().await;
    assert_eq!(statuses, ["failed"]);
    assert_eq!(p.balance("user", &user.id, "USD").await, 400);
    assert_eq!(p.balance("app", &app.id, "USD").await, 100);
    p.assert_ledger_balanced().await;
}

/// A charge whose commit got no answer, though it committed, is settled where the database can
/// say what became of it (PostgreSQL). Otherwise it may have been made: its record stays
/// `pending` (not `failed`, which says nothing moved), and the retry with the same key gets
/// the wallet's stored answer and settles it, charging once.
#[actix_web::test]
async fn a_charge_whose_commit_is_unconfirmed_stays_pending_and_a_retry_settles_it() {
    let p = pav().await;
    let app = p.app().await;
    let user = p.user(&app).await;
    p.deposit(&user, "5", "USD").await;
    let body = json!({"userId": user.id, "message": "m", "chargeCents": 100});

    p.node.faults.unconfirm_next_batches(1);
    let (status, answer) = p.charge(&app, &body, Some("unconfirmed")).await;
    let (message_id, recorded, charge_id) = p.message_by_key(&app, "unconfirmed").await.unwrap();
    if p.node.database_url.starts_with("postgres") {
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer, json!({"appMessageId": message_id}));
        assert_eq!(recorded, "charged");
    } else {
        assert_eq!(status, 500);
        assert_eq!(answer, json!({"message": "Unknown API Error"}));
        assert_eq!(recorded, "pending");
    }
    let charge_id = charge_id.unwrap();
    // It was made.
    assert_eq!(p.balance("user", &user.id, "USD").await, 400);
    assert_eq!(p.charge_transfers(&app).await, 1);

    let (status, answer) = p.charge(&app, &body, Some("unconfirmed")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"appMessageId": message_id}));
    assert_eq!(p.charge_row(&charge_id).await.unwrap().0, "charged");
    assert_eq!(
        p.message_by_key(&app, "unconfirmed").await.unwrap().1,
        "charged"
    );
    assert_eq!(p.balance("user", &user.id, "USD").await, 400);
    assert_eq!(p.charge_transfers(&app).await, 1);
    p.assert_ledger_balanced().await;
}

// ---------------------------------------------------------------------------------------------
// Documentation

#[actix_web::test]
async fn every_pavillion_route_and_answer_is_in_the_openapi_document() {
    let p = pav().await;
    let api: Value = p.node.get("/openapi.json").await.json().await.unwrap();
    let paths = &api["paths"];
    let documented = |path: &str, method: &str, statuses: &[&str]| {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        for status in statuses {
            assert!(
                operation["responses"][*status].is_object(),
                "{method} {path} does not document {status}"
            );
        }
    };
    documented("/api/signup", "post", &["201", "400", "500"]);
    documented("/api/login", "post", &["200", "400", "401", "500"]);
    documented(
        "/api/app/{clientId}/charge",
        "post",
        &["200", "400", "401", "402", "404", "422", "500"],
    );
    documented("/admin/apps", "post", &["201", "401", "403", "409"]);
    documented("/admin/apps", "get", &["200", "401", "403"]);
    documented("/admin/apps/{clientId}", "get", &["200", "404"]);
    documented("/admin/apps/{clientId}/key", "post", &["200", "404"]);
    let charge = &paths["/api/app/{clientId}/charge"]["post"];
    let params: Vec<&str> = charge["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["clientId", "x-api-key", "Idempotency-Key"] {
        assert!(params.contains(&name), "{name} not documented: {params:?}");
    }
    // Their operation ids are their own (the marketplace has a `login` too).
    let ids: Vec<&str> = paths
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    for id in [
        "pavillion_signup",
        "pavillion_login",
        "pavillion_charge",
        "admin_create_app",
        "admin_list_apps",
        "admin_get_app",
        "admin_rotate_key",
    ] {
        assert_eq!(ids.iter().filter(|i| **i == id).count(), 1, "{id}");
    }
}
