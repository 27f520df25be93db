//! The marketplace auth routes: register, login, logout, publickey, relogin, currentuser, and
//! the four token locations.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_node, spawn_node_with, TestNode};

fn assert_error_envelope(body: &Value, status: u16, message: &str) {
    assert_eq!(body["result"], "ERR", "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["errCode"], status, "{body}");
    assert_eq!(body["message"], message, "{body}");
    assert!(
        body["date"].as_str().is_some_and(|d| d.ends_with('Z')),
        "{body}"
    );
    assert!(body["detail"].is_string(), "{body}");
}

async fn user_count(node: &TestNode, email: &str) -> usize {
    // Observed through the API: a second registration with any casing is refused while
    // exactly one account holds the email, and login works for it.
    let response = node.register(email, "another password").await;
    if response.status() == StatusCode::CONFLICT {
        1
    } else {
        assert_eq!(response.status(), StatusCode::CREATED);
        0
    }
}

#[actix_web::test]
async fn register_answers_the_created_user_in_the_envelope() {
    let node = spawn_node().await;
    let response = node
        .post_json(
            "/auth-api/v1/registeruser",
            &json!({
                "email": "Ann@Example.com",
                "password": "long enough secret",
                "fullname": "Ann Example",
                "preferredLanguage": "en",
                "bio": "hello"
            }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("long enough secret"),
        "the password leaked: {text}"
    );
    assert!(!text.contains("argon2"), "the password hash leaked: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], "OK");
    assert_eq!(body["statusCode"], 201);
    assert_eq!(body["dataName"], "user");
    assert_eq!(body["action"], "create");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["rowCount"], 1);
    for field in ["elapsedMs", "requestId", "appVersion"] {
        assert!(!body[field].is_null(), "{field} missing: {body}");
    }
    let user = &body["user"];
    assert_eq!(user["email"], "Ann@Example.com");
    assert_eq!(user["fullname"], "Ann Example");
    assert_eq!(user["roleId"], "user");
    assert_eq!(user["isActive"], true);
    assert_eq!(user["emailVerified"], false);
    assert_eq!(user["recordVersion"], 1);
    assert_eq!(user["preferredLanguage"], "en");
    assert_eq!(user["bio"], "hello");
    assert_eq!(user["_owner"], user["id"]);
    assert!(
        user["avatar"].as_str().is_some_and(|a| !a.is_empty()),
        "a default avatar"
    );
    assert!(user.get("password").is_none());
}

#[actix_web::test]
async fn an_email_registers_once_whatever_its_case() {
    let node = spawn_node().await;
    assert_eq!(
        node.register("bob@example.com", "long enough secret")
            .await
            .status(),
        StatusCode::CREATED
    );
    let again = node.register("BOB@example.COM", "other secret!").await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let body: Value = again.json().await.unwrap();
    assert_error_envelope(&body, 409, "errMsg_emailAlreadyRegistered");
    assert_eq!(user_count(&node, "Bob@Example.com").await, 1);
}

#[actix_web::test]
async fn concurrent_registrations_of_one_email_create_one_account() {
    let node = spawn_node().await;
    let attempts = (0..8).map(|i| {
        let email = if i % 2 == 0 {
            "race@example.com"
        } else {
            "RACE@example.com"
        };
        node.register(email, "long enough secret")
    });
    let statuses: Vec<StatusCode> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        7,
        "{statuses:?}"
    );
}

#[actix_web::test]
async fn bad_registrations_are_refused_and_change_nothing() {
    let node = spawn_node().await;
    let cases = [
        (
            json!({"password": "long enough secret", "fullname": "X"}),
            400,
            "errMsg_emailIsRequired",
        ),
        (
            json!({"email": "x@example.com", "fullname": "X"}),
            400,
            "errMsg_passwordIsRequired",
        ),
        (
            json!({"email": "x@example.com", "password": "long enough secret"}),
            400,
            "errMsg_fullnameIsRequired",
        ),
        (
            json!({"email": "not-an-email", "password": "long enough secret", "fullname": "X"}),
            400,
            "errMsg_emailIsNotValid",
        ),
        (
            json!({"email": "x@example.com", "password": "short", "fullname": "X"}),
            400,
            "errMsg_passwordIsNotValid",
        ),
        (
            json!({"email": "x@example.com", "password": "long enough secret", "fullname": "X", "roleId": "superAdmin"}),
            400,
            "errMsg_invalidRequestBody",
        ),
        (
            json!({"email": 42, "password": "long enough secret", "fullname": "X"}),
            400,
            "errMsg_invalidRequestBody",
        ),
        (
            json!({"email": "x@example.com", "password": "long enough secret", "fullname": "x".repeat(101)}),
            400,
            "errMsg_fullnameIsTooLong",
        ),
    ];
    for (body, status, message) in cases {
        let response = node.post_json("/auth-api/v1/registeruser", &body).await;
        assert_eq!(response.status().as_u16(), status, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_error_envelope(&answer, status, message);
    }
    // Malformed JSON, a wrong content type and an oversized body.
    let malformed = node
        .http
        .post(node.url("/auth-api/v1/registeruser"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_error_envelope(
        &malformed.json().await.unwrap(),
        400,
        "errMsg_invalidRequestBody",
    );
    let wrong_type = node
        .http
        .post(node.url("/auth-api/v1/registeruser"))
        .header("content-type", "text/plain")
        .body("email=x")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);
    assert_error_envelope(
        &wrong_type.json().await.unwrap(),
        415,
        "errMsg_contentTypeMustBeJson",
    );
    let huge = json!({"email": "x@example.com", "password": "long enough secret", "fullname": "X", "bio": "b".repeat(100 * 1024)});
    let too_large = node.post_json("/auth-api/v1/registeruser", &huge).await;
    assert_eq!(too_large.status(), 413);
    assert_error_envelope(&too_large.json().await.unwrap(), 413, "errMsg_bodyTooLarge");
    // None of them created the account.
    assert_eq!(user_count(&node, "x@example.com").await, 0);
}

#[actix_web::test]
async fn login_returns_the_session_with_token_in_body_header_and_cookie() {
    let node = spawn_node().await;
    node.register("carol@example.com", "long enough secret")
        .await;
    let response = node
        .post_json(
            "/auth-api/login",
            &json!({"username": "CAROL@example.com", "password": "long enough secret"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let header = response
        .headers()
        .get("airbnb3-access-token")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    let token = body["accessToken"].as_str().unwrap();
    assert_eq!(header, token);
    assert!(
        cookie.starts_with(&format!("airbnb3-access-token={token}")),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert_eq!(body["email"], "carol@example.com");
    assert_eq!(body["roleId"], "user");
    assert!(body["sessionId"].is_string() && body["userId"].is_string());
    assert!(body["expiresIn"].as_i64().unwrap() > 86_000);
    assert!(body.get("password").is_none());
}

#[actix_web::test]
async fn login_accepts_email_and_prefers_username() {
    let node = spawn_node().await;
    node.register("dan@example.com", "long enough secret").await;
    let by_email = node
        .post_json(
            "/auth-api/login",
            &json!({"email": "dan@example.com", "password": "long enough secret"}),
        )
        .await;
    assert_eq!(by_email.status(), 200);
    let username_wins = node
        .post_json(
            "/auth-api/login",
            &json!({"username": "nobody@example.com", "email": "dan@example.com", "password": "long enough secret"}),
        )
        .await;
    assert_eq!(username_wins.status(), 401);
}

#[actix_web::test]
async fn bad_logins_are_refused_alike() {
    let node = spawn_node().await;
    node.register("erin@example.com", "long enough secret")
        .await;
    let wrong_password = node.login("erin@example.com", "wrong password").await;
    assert_eq!(wrong_password.status(), 401);
    let wrong_body: Value = wrong_password.json().await.unwrap();
    let unknown = node.login("nobody@example.com", "long enough secret").await;
    assert_eq!(unknown.status(), 401);
    let unknown_body: Value = unknown.json().await.unwrap();
    assert_error_envelope(&wrong_body, 401, "errMsg_notAuthenticated");
    assert_eq!(
        wrong_body["detail"], unknown_body["detail"],
        "the answers must not tell which"
    );
    let missing = node
        .post_json("/auth-api/login", &json!({"username": "erin@example.com"}))
        .await;
    assert_eq!(missing.status(), 400);
    assert_error_envelope(
        &missing.json().await.unwrap(),
        400,
        "errMsg_passwordIsRequired",
    );
    let nothing = node.post_json("/auth-api/login", &json!({})).await;
    assert_eq!(nothing.status(), 400);
    assert_error_envelope(
        &nothing.json().await.unwrap(),
        400,
        "errMsg_usernameIsRequired",
    );
}

#[actix_web::test]
async fn the_token_is_found_in_each_of_the_four_locations_in_order() {
    let node = spawn_node().await;
    let user = node.user().await;
    let check = |req: reqwest::RequestBuilder| async move { req.send().await.unwrap().status() };
    let url = node.url("/messaging-api/currentuser");
    assert_eq!(
        check(node.http.get(format!("{url}?access_token={}", user.token))).await,
        200
    );
    assert_eq!(
        check(node.http.get(&url).bearer_auth(&user.token)).await,
        200
    );
    assert_eq!(
        check(
            node.http
                .get(&url)
                .header("airbnb3-access-token", &user.token)
        )
        .await,
        200
    );
    assert_eq!(
        check(
            node.http
                .get(&url)
                .header("cookie", format!("airbnb3-access-token={}", user.token))
        )
        .await,
        200
    );
    // The first location that has a token decides: a bad query token is not rescued by a
    // good header, and a good query token wins over a bad header.
    assert_eq!(
        check(
            node.http
                .get(format!("{url}?access_token=garbage"))
                .bearer_auth(&user.token)
        )
        .await,
        401
    );
    assert_eq!(
        check(
            node.http
                .get(format!("{url}?access_token={}", user.token))
                .bearer_auth("garbage")
        )
        .await,
        200
    );
    assert_eq!(
        check(
            node.http
                .get(&url)
                .bearer_auth("garbage")
                .header("airbnb3-access-token", &user.token)
        )
        .await,
        401
    );
}

#[actix_web::test]
async fn currentuser_shows_the_session_in_every_service() {
    let node = spawn_node().await;
    let user = node.user().await;
    for service in [
        "auth",
        "messaging",
        "propertycatalog",
        "bookingmanagement",
        "reviewsystem",
        "platformadmin",
        "agenthub",
        "bff",
        "notification",
    ] {
        let response = node
            .get_with_token(&format!("/{service}-api/currentuser"), &user.token)
            .await;
        assert_eq!(response.status(), 200, "{service}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["userId"], user.id.as_str());
        assert_eq!(body["sessionId"], user.session_id.as_str());
        assert_eq!(body["accessToken"], user.token.as_str());
        assert_eq!(body["email"], user.email.as_str());
    }
    let anonymous = node.get("/auth-api/currentuser").await;
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body, json!({"status": "ERR", "message": "No login found"}));
    let forged = node.get_with_token("/auth-api/currentuser", "a.b.c").await;
    assert_eq!(forged.status(), 401);
}

#[actix_web::test]
async fn logout_revokes_the_session_and_clears_the_cookie() {
    let node = spawn_node().await;
    let user = node.user().await;
    let other_device = node.log_in_again(&user.email, &user.password).await;
    let response = node
        .http
        .post(node.url("/auth-api/logout"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("airbnb3-access-token=;"), "{cookie}");
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    assert_eq!(
        node.get_with_token("/auth-api/currentuser", &user.token)
            .await
            .status(),
        401
    );
    // Only that session ended.
    assert_eq!(
        node.get_with_token("/auth-api/currentuser", &other_device.token)
            .await
            .status(),
        200
    );
    // Logout is idempotent and public.
    let again = node
        .http
        .post(node.url("/auth-api/logout"))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let anonymous = node
        .http
        .post(node.url("/auth-api/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 200);
}

/// A node remembers the tokens whose signatures it has checked, so that a client's next
/// request does not pay for the check again. Nothing a client could do gets past it: a token
/// changed in any byte is a different token, checked afresh; one whose session ended or
/// expired is refused at once, however often it was accepted before.
#[actix_web::test]
async fn a_token_accepted_before_is_still_checked_in_full() {
    let node = spawn_node_with(|s| s.token_ttl_secs = 3).await;
    let other = node.user().await;
    let user = node.user().await;
    for _ in 0..3 {
        let me = node
            .get_with_token("/auth-api/currentuser", &user.token)
            .await;
        assert_eq!(me.status(), 200);
    }
    // The same claims under a broken signature, and another payload under the real one.
    let (signed, signature) = user.token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let broken_signature = format!("{signed}.{flipped}{}", &signature[1..]);
    let (header, _) = signed.split_once('.').unwrap();
    let other_payload = other.token.split('.').nth(1).unwrap();
    let borrowed_signature = format!("{header}.{other_payload}.{signature}");
    for forged in [&broken_signature, &borrowed_signature] {
        let response = node.get_with_token("/auth-api/currentuser", forged).await;
        assert_eq!(response.status(), 401, "{forged}");
    }
    assert_eq!(
        node.get_with_token("/auth-api/currentuser", &user.token)
            .await
            .status(),
        200,
        "the genuine token still works"
    );
    // Expiry: the session ends three seconds after login (the token's own `exp`, a second
    // at most earlier, is accepted five seconds longer; `auth::tests` covers it).
    tokio::time::sleep(std::time::Duration::from_millis(3_200)).await;
    let expired = node
        .get_with_token("/auth-api/currentuser", &user.token)
        .await;
    assert_eq!(expired.status(), 401);
}

#[actix_web::test]
async fn relogin_replaces_the_session() {
    let node = spawn_node().await;
    let user = node.user().await;
    let response = node.get_with_token("/auth-api/relogin", &user.token).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let new_token = body["accessToken"].as_str().unwrap();
    assert_ne!(new_token, user.token);
    assert_ne!(body["sessionId"], user.session_id.as_str());
    assert_eq!(body["userId"], user.id.as_str());
    assert_eq!(
        node.get_with_token("/auth-api/currentuser", new_token)
            .await
            .status(),
        200
    );
    assert_eq!(
        node.get_with_token("/auth-api/currentuser", &user.token)
            .await
            .status(),
        401
    );
    let refused = node.get_with_token("/auth-api/relogin", &user.token).await;
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body, json!({"status": "ERR", "message": "Cannot relogin"}));
    assert_eq!(node.get("/auth-api/relogin").await.status(), 401);
}

#[actix_web::test]
async fn the_public_key_verifies_issued_tokens() {
    let node = spawn_node().await;
    let user = node.user().await;
    let response = node.get("/auth-api/publickey").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let key_id = body["keyId"].as_str().unwrap();
    let pem = body["keyData"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    assert!(!pem.contains("PRIVATE"));
    let header = jsonwebtoken::decode_header(&user.token).unwrap();
    assert_eq!(header.kid.as_deref(), Some(key_id));
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_issuer(&["node"]);
    let claims = jsonwebtoken::decode::<Value>(&user.token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], user.id.as_str());
    assert_eq!(claims["sid"], user.session_id.as_str());
    let same = node
        .get(&format!("/auth-api/publickey?keyId={key_id}"))
        .await;
    assert_eq!(same.status(), 200);
    let unknown = node.get("/auth-api/publickey?keyId=nope").await;
    assert_eq!(unknown.status(), 404);
    assert_error_envelope(
        &unknown.json().await.unwrap(),
        404,
        "errMsg_publicKeyNotFound",
    );
}

#[actix_web::test]
async fn the_signing_key_survives_a_restart() {
    let (dir, settings) = crate::helpers::restartable_settings().await;
    let first = crate::helpers::start_on(&settings).await;
    let user = first.user().await;
    first.shutdown.shutdown();
    first.stopped.await.unwrap().unwrap();
    let second = crate::helpers::start_on(&settings).await;
    assert_eq!(
        second
            .get_with_token("/auth-api/currentuser", &user.token)
            .await
            .status(),
        200
    );
    drop(dir);
}

#[actix_web::test]
async fn the_configured_superadmin_exists_from_the_start() {
    let node = spawn_node_with(|s| {
        s.admin_email = Some("root@example.com".into());
        s.admin_password = Some("bootstrap secret".to_owned().into());
    })
    .await;
    let response = node.login("root@example.com", "bootstrap secret").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["roleId"], "superAdmin");
}
