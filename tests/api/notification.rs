//! The notification service: devices, notifications, sending, marking seen, and the pushes
//! administrators see at `/admin/push-deliveries`.

use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::helpers::{spawn_node_with, TestNode, TestUser};

const ADMIN_EMAIL: &str = "root@example.com";
const ADMIN_PASSWORD: &str = "admin password 123";

/// A node with a bootstrap administrator, logged in.
struct Svc {
    node: TestNode,
    admin: String,
}

async fn svc() -> Svc {
    let node = spawn_node_with(|s| {
        s.admin_email = Some(ADMIN_EMAIL.to_owned());
        s.admin_password = Some(SecretString::from(ADMIN_PASSWORD.to_owned()));
    })
    .await;
    let response = node.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let admin = body["accessToken"].as_str().unwrap().to_owned();
    Svc { node, admin }
}

/// A push token as a provider would issue one, unique per test call.
fn push_token() -> String {
    format!(
        "fcm:{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn assert_error(body: &Value, status: u16, message: &str) {
    assert_eq!(body["result"], "ERR", "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["errCode"], status, "{body}");
    assert_eq!(body["message"], message, "{body}");
    assert!(body["detail"].is_string(), "{body}");
}

impl Svc {
    /// Call a route with an optional token and an optional JSON body; the status and the
    /// body's text (so tests can look for leaks) and JSON.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, String, Value) {
        let mut request = self.node.http.request(method, self.node.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, text, json)
    }

    async fn raw(&self, path: &str, token: &str, body: &str) -> (StatusCode, Value) {
        let response = self
            .node
            .http
            .post(self.node.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn register_device(&self, user: &TestUser, token: &str) -> (StatusCode, String, Value) {
        self.call(
            Method::POST,
            "/notification-api/devices/register",
            Some(&user.token),
            Some(&json!({"device": {"platform": "android", "token": token, "name": "Pixel"}})),
        )
        .await
    }

    async fn device_id(&self, user: &TestUser, token: &str) -> String {
        let (status, _, body) = self.register_device(user, token).await;
        assert_eq!(status, 201, "{body}");
        body["device"]["id"].as_str().unwrap().to_owned()
    }

    async fn unregister(&self, user: &TestUser, device_id: &str) -> (StatusCode, String, Value) {
        self.call(
            Method::DELETE,
            &format!("/notification-api/devices/unregister/{device_id}"),
            Some(&user.token),
            None,
        )
        .await
    }

    async fn send_as(&self, token: &str, user_ids: &[&str], title: &str) -> (StatusCode, Value) {
        let (status, _, body) = self
            .call(
                Method::POST,
                "/notification-api/notifications",
                Some(token),
                Some(&json!({"notification": {
                    "userIds": user_ids, "title": title, "body": "hello there",
                    "data": {"threadId": "t-1", "count": 2}
                }})),
            )
            .await;
        (status, body)
    }

    /// Send one notification to one user as the administrator; its id.
    async fn send(&self, user: &TestUser, title: &str) -> String {
        let (status, body) = self.send_as(&self.admin, &[&user.id], title).await;
        assert_eq!(status, 201, "{body}");
        body["notifications"][0]["id"].as_str().unwrap().to_owned()
    }

    async fn list(&self, user: &TestUser, query: &str) -> (StatusCode, Value) {
        let (status, _, body) = self
            .call(
                Method::GET,
                &format!("/notification-api/notifications{query}"),
                Some(&user.token),
                None,
            )
            .await;
        (status, body)
    }

    async fn mark_seen(&self, user: &TestUser, ids: &[&str]) -> (StatusCode, Value) {
        let (status, _, body) = self
            .call(
                Method::POST,
                "/notification-api/notifications/seen",
                Some(&user.token),
                Some(&json!({"notificationIds": ids})),
            )
            .await;
        (status, body)
    }

    async fn deliveries(&self, user: &TestUser) -> Vec<Value> {
        let (status, _, body) = self
            .call(
                Method::GET,
                &format!("/admin/push-deliveries?userId={}", user.id),
                Some(&self.admin),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body.as_array().unwrap().clone()
    }
}

fn titles(list: &Value) -> Vec<&str> {
    list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap())
        .collect()
}

fn ids_of(list: &Value, key: &str) -> Vec<String> {
    let mut ids: Vec<String> = list[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[actix_web::test]
async fn a_device_registers_once_per_token_and_its_token_is_never_shown() {
    let s = svc().await;
    let ann = s.node.user().await;
    let token = push_token();
    let (status, text, body) = s.register_device(&ann, &token).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(!text.contains(&token), "the push token leaked: {text}");
    assert_eq!(body["status"], "OK");
    assert_eq!(body["statusCode"], 201);
    assert_eq!(body["dataName"], "device");
    assert_eq!(body["action"], "create");
    assert_eq!(body["userId"], ann.id.as_str());
    let device = &body["device"];
    assert_eq!(device["userId"], ann.id.as_str());
    assert_eq!(device["platform"], "android");
    assert_eq!(device["name"], "Pixel");
    assert_eq!(device["isActive"], true);
    assert_eq!(device["tokenLast4"], &token[token.len() - 4..]);
    assert!(device.get("token").is_none(), "{device}");
    assert!(device["createdAt"].as_str().unwrap().ends_with('Z'));
    let id = device["id"].as_str().unwrap().to_owned();

    // The same token again: the same device, still 201.
    let (status, text, again) = s.register_device(&ann, &token).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert!(!text.contains(&token), "the push token leaked: {text}");
    assert_eq!(again["device"]["id"], id.as_str());
    assert_eq!(again["device"]["createdAt"], device["createdAt"]);

    // Another token is another device.
    let other = s.device_id(&ann, &push_token()).await;
    assert_ne!(other, id);
}

#[actix_web::test]
async fn device_fields_are_checked_without_quoting_the_token() {
    let s = svc().await;
    let ann = s.node.user().await;
    let path = "/notification-api/devices/register";
    let secretish = format!("{} tail", push_token());
    let (status, text, body) = s
        .call(
            Method::POST,
            path,
            Some(&ann.token),
            Some(&json!({"device": {"platform": "ios", "token": secretish}})),
        )
        .await;
    assert_eq!(status, 400);
    assert_error(&body, 400, "errMsg_tokenIsNotValid");
    assert!(!text.contains(&secretish), "the token was quoted: {text}");
    for token in [String::new(), "x".repeat(4097), "tökén".into()] {
        let (status, _, body) = s
            .call(
                Method::POST,
                path,
                Some(&ann.token),
                Some(&json!({"device": {"platform": "ios", "token": token}})),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_error(&body, 400, "errMsg_tokenIsNotValid");
    }
    let longest = "y".repeat(4096);
    let (status, _, body) = s
        .call(
            Method::POST,
            path,
            Some(&ann.token),
            Some(&json!({"device": {"platform": "web", "token": longest}})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["device"]["platform"], "web");
    assert_eq!(body["device"]["name"], Value::Null);
    let (status, _, body) = s
        .call(
            Method::POST,
            path,
            Some(&ann.token),
            Some(&json!({"device": {"platform": "ios", "token": push_token(), "name": "n".repeat(101)}})),
        )
        .await;
    assert_eq!(status, 400);
    assert_error(&body, 400, "errMsg_nameIsTooLong");
    let (status, _, body) = s
        .call(
            Method::POST,
            path,
            Some(&ann.token),
            Some(&json!({"device": {"platform": "symbian", "token": push_token()}})),
        )
        .await;
    assert_eq!(status, 400);
    assert_error(&body, 400, "errMsg_invalidRequestBody");
}

#[actix_web::test]
async fn unregistering_is_for_the_owner_and_probing_ids_learns_nothing() {
    let s = svc().await;
    let ann = s.node.user().await;
    let bob = s.node.user().await;
    let token = push_token();
    let device = s.device_id(&ann, &token).await;

    // Bob cannot unregister Ann's device, and the answer is that of an unknown id.
    let (status, _, theirs) = s.unregister(&bob, &device).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&theirs, 404, "errMsg_deviceNotFound");
    let (status, _, unknown) = s.unregister(&bob, &uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&unknown, 404, "errMsg_deviceNotFound");
    assert_eq!(theirs["detail"], unknown["detail"]);

    let (status, text, body) = s.unregister(&ann, &device).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!text.contains(&token), "the push token leaked: {text}");
    assert_eq!(body["dataName"], "device");
    assert_eq!(body["action"], "delete");
    assert_eq!(body["device"]["id"], device.as_str());
    assert_eq!(body["device"]["isActive"], false);

    // Again: the same last state.
    let (status, _, again) = s.unregister(&ann, &device).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["device"], body["device"]);

    // The token can be registered again: a new device.
    let fresh = s.device_id(&ann, &token).await;
    assert_ne!(fresh, device);
}

#[actix_web::test]
async fn a_user_has_at_most_twenty_active_devices() {
    let s = svc().await;
    let ann = s.node.user().await;
    let mut tokens = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..20 {
        let token = push_token();
        ids.push(s.device_id(&ann, &token).await);
        tokens.push(token);
    }
    let (status, _, body) = s.register_device(&ann, &push_token()).await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, 400, "errMsg_tooManyDevices");
    // A token already registered is still answered at the limit.
    let (status, _, body) = s.register_device(&ann, &tokens[3]).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["device"]["id"], ids[3].as_str());
    // Another user is not limited by Ann's devices.
    let bob = s.node.user().await;
    s.device_id(&bob, &push_token()).await;
    // After one is unregistered there is room for one more.
    assert_eq!(s.unregister(&ann, &ids[0]).await.0, 200);
    s.device_id(&ann, &push_token()).await;
    let (status, _, body) = s.register_device(&ann, &push_token()).await;
    assert_eq!(status, 400);
    assert_error(&body, 400, "errMsg_tooManyDevices");
}

#[actix_web::test]
async fn the_list_holds_only_the_callers_notifications_paged_and_sorted() {
    let s = svc().await;
    let ann = s.node.user().await;
    let bob = s.node.user().await;
    for title in ["first", "second", "third"] {
        s.send(&ann, title).await;
    }
    s.send(&bob, "for bob").await;

    let (status, body) = s.list(&ann, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dataName"], "notifications");
    assert_eq!(body["action"], "list");
    assert_eq!(body["rowCount"], 3);
    assert_eq!(titles(&body), ["third", "second", "first"]);
    assert_eq!(
        body["paging"],
        json!({"pageNumber": 1, "pageRowCount": 25, "totalRowCount": 3, "pageCount": 1})
    );
    let first = &body["notifications"][2];
    assert_eq!(first["userId"], ann.id.as_str());
    assert_eq!(first["kind"], "announcement");
    assert_eq!(first["body"], "hello there");
    assert_eq!(first["data"], json!({"threadId": "t-1", "count": 2}));
    assert_eq!(first["isSeen"], false);
    assert_eq!(first["seenAt"], Value::Null);
    assert!(first["createdAt"].as_str().unwrap().ends_with('Z'));

    let (_, body) = s.list(&ann, "?sortBy=createdAt").await;
    assert_eq!(titles(&body), ["first", "second", "third"]);
    let (_, body) = s.list(&ann, "?sortBy=-createdAt&limit=2&page=1").await;
    assert_eq!(titles(&body), ["third", "second"]);
    let (_, body) = s.list(&ann, "?sortBy=-createdAt&limit=2&page=2").await;
    assert_eq!(titles(&body), ["first"]);
    assert_eq!(
        body["paging"],
        json!({"pageNumber": 2, "pageRowCount": 2, "totalRowCount": 3, "pageCount": 2})
    );
    let (_, body) = s.list(&ann, "?limit=2&page=3").await;
    assert_eq!(body["rowCount"], 0);
    assert_eq!(titles(&body), Vec::<&str>::new());
    let (_, body) = s.list(&ann, "?limit=100&requestId=abc").await;
    assert_eq!(body["rowCount"], 3);
    assert_eq!(body["requestId"], "abc");

    let (_, body) = s.list(&bob, "").await;
    assert_eq!(titles(&body), ["for bob"]);

    for query in [
        "?limit=101",
        "?limit=0",
        "?limit=-1",
        "?page=abc",
        "?page=0",
        "?limit=x",
    ] {
        let (status, body) = s.list(&ann, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_error(&body, 400, "errMsg_invalidPaging");
    }
    for query in ["?sortBy=title", "?sortBy=", "?sortBy=createdat"] {
        let (status, body) = s.list(&ann, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_error(&body, 400, "errMsg_invalidSortBy");
    }
}

#[actix_web::test]
async fn administrators_send_and_everyone_else_is_forbidden() {
    let s = svc().await;
    let ann = s.node.user().await;
    let bob = s.node.user().await;
    // A repeated id gets one notification.
    let (status, body) = s
        .send_as(&s.admin, &[&ann.id, &bob.id, &ann.id], "maintenance")
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["dataName"], "notifications");
    assert_eq!(body["action"], "create");
    assert_eq!(body["rowCount"], 2);
    let sent = body["notifications"].as_array().unwrap();
    let mut recipients: Vec<&str> = sent.iter().map(|n| n["userId"].as_str().unwrap()).collect();
    recipients.sort_unstable();
    let mut expected = vec![ann.id.as_str(), bob.id.as_str()];
    expected.sort_unstable();
    assert_eq!(recipients, expected);
    for n in sent {
        assert_eq!(n["title"], "maintenance");
        assert_eq!(n["kind"], "announcement");
        assert_eq!(n["isSeen"], false);
    }
    let (_, listed) = s.list(&ann, "").await;
    assert_eq!(titles(&listed), ["maintenance"]);

    // A user may not send, not even to themself.
    let (status, body) = s.send_as(&ann.token, &[&ann.id], "spam").await;
    assert_eq!(status, 403);
    assert_error(&body, 403, "errMsg_forbidden");
    let (_, listed) = s.list(&ann, "").await;
    assert_eq!(titles(&listed), ["maintenance"]);
}

#[actix_web::test]
async fn an_unknown_recipient_creates_nothing() {
    let s = svc().await;
    let ann = s.node.user().await;
    let ghost = uuid::Uuid::new_v4().to_string();
    let (status, body) = s.send_as(&s.admin, &[&ann.id, &ghost], "half").await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, 400, "errMsg_userNotFound");
    assert!(body["detail"].as_str().unwrap().contains(&ghost), "{body}");
    let (_, listed) = s.list(&ann, "").await;
    assert_eq!(listed["rowCount"], 0, "{listed}");
    assert_eq!(listed["paging"]["totalRowCount"], 0);
}

#[actix_web::test]
async fn a_sent_notification_is_checked_field_by_field() {
    let s = svc().await;
    let ann = s.node.user().await;
    let path = "/notification-api/notifications";
    let base = json!({"userIds": [ann.id], "title": "t", "body": "b"});
    let cases = [
        ("userIds", json!([]), "errMsg_userIdsIsNotValid"),
        (
            "userIds",
            json!(vec![ann.id.clone(); 101]),
            "errMsg_userIdsIsNotValid",
        ),
        ("title", json!("  "), "errMsg_titleIsRequired"),
        ("title", json!("t".repeat(201)), "errMsg_titleIsTooLong"),
        ("body", json!(""), "errMsg_bodyIsRequired"),
        ("body", json!("b".repeat(2001)), "errMsg_bodyIsTooLong"),
        ("data", json!([1, 2]), "errMsg_dataIsNotValid"),
        ("data", json!("text"), "errMsg_dataIsNotValid"),
        (
            "data",
            json!({"blob": "x".repeat(4096)}),
            "errMsg_dataIsTooLarge",
        ),
    ];
    for (field, value, message) in cases {
        let mut notification = base.clone();
        notification[field] = value;
        let (status, _, body) = s
            .call(
                Method::POST,
                path,
                Some(&s.admin),
                Some(&json!({ "notification": notification })),
            )
            .await;
        assert_eq!(status, 400, "{field}: {body}");
        assert_error(&body, 400, message);
    }
    let (_, listed) = s.list(&ann, "").await;
    assert_eq!(listed["rowCount"], 0);
    // The boundaries pass.
    let mut notification = base.clone();
    notification["title"] = json!("t".repeat(200));
    notification["body"] = json!("b".repeat(2000));
    let (status, _, body) = s
        .call(
            Method::POST,
            path,
            Some(&s.admin),
            Some(&json!({ "notification": notification })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["notifications"][0]["data"], json!({}));
}

#[actix_web::test]
async fn each_active_device_gets_one_push_and_an_unregistered_one_none() {
    let s = svc().await;
    let ann = s.node.user().await;
    let bob = s.node.user().await;
    let phone = s.device_id(&ann, &push_token()).await;
    let tablet = s.device_id(&ann, &push_token()).await;
    let old = s.device_id(&ann, &push_token()).await;
    assert_eq!(s.unregister(&ann, &old).await.0, 200);
    let bobs = s.device_id(&bob, &push_token()).await;

    let sent = s.send(&ann, "ping").await;
    let deliveries = s.deliveries(&ann).await;
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    let mut devices: Vec<&str> = deliveries
        .iter()
        .map(|d| d["deviceId"].as_str().unwrap())
        .collect();
    devices.sort_unstable();
    let mut expected = vec![phone.as_str(), tablet.as_str()];
    expected.sort_unstable();
    assert_eq!(devices, expected);
    for d in &deliveries {
        assert_eq!(d["notificationId"], sent.as_str());
        assert_eq!(d["provider"], "recording");
        assert_eq!(d["status"], "sent");
        assert!(d["at"].as_str().unwrap().ends_with('Z'));
    }
    // Bob got nothing from Ann's notification.
    assert!(s.deliveries(&bob).await.is_empty());

    // A second notification: two more pushes, the first ones unchanged.
    let second = s.send(&ann, "pong").await;
    let deliveries = s.deliveries(&ann).await;
    assert_eq!(deliveries.len(), 4);
    let of_second = deliveries
        .iter()
        .filter(|d| d["notificationId"] == second.as_str())
        .count();
    assert_eq!(of_second, 2);
    assert!(deliveries.iter().all(|d| d["deviceId"] != old.as_str()));
    assert!(deliveries.iter().all(|d| d["deviceId"] != bobs.as_str()));
}

#[actix_web::test]
async fn a_token_registered_by_another_user_stops_pushing_to_the_first() {
    let s = svc().await;
    let ann = s.node.user().await;
    let bob = s.node.user().await;
    let token = push_token();
    s.device_id(&ann, &token).await;
    // The phone changed hands: Bob registers the same token.
    let bobs = s.device_id(&bob, &token).await;
    s.send(&ann, "for ann").await;
    assert!(
        s.deliveries(&ann).await.is_empty(),
        "Ann's pushes reach Bob's phone"
    );
    s.send(&bob, "for bob").await;
    let deliveries = s.deliveries(&bob).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["deviceId"], bobs.as_str());
}

#[actix_web::test]
async fn push_deliveries_are_for_administrators() {
    let s = svc().await;
    let ann = s.node.user().await;
    let path = format!("/admin/push-deliveries?userId={}", ann.id);
    let (status, _, body) = s.call(Method::GET, &path, Some(&ann.token), None).await;
    assert_eq!(status, 403);
    assert_error(&body, 403, "errMsg_forbidden");
    let (status, _, body) = s.call(Method::GET, &path, None, None).await;
    assert_eq!(status, 401);
    assert_error(&body, 401, "errMsg_notAuthenticated");
    let (status, _, body) = s
        .call(Method::GET, "/admin/push-deliveries", Some(&s.admin), None)
        .await;
    assert_eq!(status, 400);
    assert_error(&body, 400, "errMsg_userIdIsRequired");
}

#[actix_web::test]
async fn marking_seen_touches_only_the_callers_and_keeps_the_first_time() {
    let s = svc().await;
    let ann = s.node.user().await;
    let bob = s.node.user().await;
    let a1 = s.send(&ann, "a1").await;
    let a2 = s.send(&ann, "a2").await;
    let b1 = s.send(&bob, "b1").await;

    let (status, body) = s.mark_seen(&ann, &[&a1, &b1]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dataName"], "notifications");
    assert_eq!(body["action"], "update");
    assert_eq!(body["rowCount"], 1);
    assert_eq!(ids_of(&body, "notifications"), vec![a1.clone()]);
    let first_seen = body["notifications"][0]["seenAt"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(body["notifications"][0]["isSeen"], true);

    // Bob's stays unseen.
    let (_, bobs) = s.list(&bob, "").await;
    assert_eq!(bobs["notifications"][0]["isSeen"], false);
    assert_eq!(bobs["notifications"][0]["seenAt"], Value::Null);

    // Let the clock move, so that a second time would differ from the first.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (status, body) = s.mark_seen(&ann, &[&a1, &a2, &a1]).await;
    assert_eq!(status, 200);
    let mut expected = vec![a1.clone(), a2.clone()];
    expected.sort();
    assert_eq!(ids_of(&body, "notifications"), expected);
    let rows = body["notifications"].as_array().unwrap();
    let a1_row = rows.iter().find(|n| n["id"] == a1.as_str()).unwrap();
    let a2_row = rows.iter().find(|n| n["id"] == a2.as_str()).unwrap();
    assert_eq!(a1_row["seenAt"], first_seen.as_str());
    assert!(
        a2_row["seenAt"].as_str().unwrap() > first_seen.as_str(),
        "{body}"
    );

    let (_, listed) = s.list(&ann, "?sortBy=createdAt").await;
    assert_eq!(listed["notifications"][0]["seenAt"], first_seen.as_str());
    assert_eq!(listed["notifications"][1]["isSeen"], true);

    // Only ids that are not the caller's: an empty answer, not an error.
    let (status, body) = s.mark_seen(&ann, &[&b1, "no-such-id"]).await;
    assert_eq!(status, 200);
    assert_eq!(body["rowCount"], 0);
    let (status, body) = s.mark_seen(&ann, &[]).await;
    assert_eq!(status, 400);
    assert_error(&body, 400, "errMsg_notificationIdsIsNotValid");
    let too_many: Vec<String> = (0..501).map(|i| format!("id-{i}")).collect();
    let refs: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let (status, body) = s.mark_seen(&ann, &refs).await;
    assert_eq!(status, 400);
    assert_error(&body, 400, "errMsg_notificationIdsIsNotValid");
}

#[actix_web::test]
async fn bodies_must_be_well_formed_json_without_unknown_fields() {
    let s = svc().await;
    let ann = s.node.user().await;
    let cases = [
        ("/notification-api/devices/register", "{\"device\": {"),
        ("/notification-api/devices/register", "{\"device\": {\"platform\": \"ios\", \"token\": \"abc\", \"extra\": 1}}"),
        ("/notification-api/devices/register", "{\"device\": {\"platform\": \"ios\", \"token\": \"abc\"}, \"userId\": \"x\"}"),
        ("/notification-api/devices/register", "{\"device\": {\"platform\": \"ios\", \"token\": 5}}"),
        ("/notification-api/notifications", "not json"),
        ("/notification-api/notifications", "{\"notification\": {\"userIds\": [], \"title\": \"t\", \"body\": \"b\", \"kind\": \"x\"}}"),
        ("/notification-api/notifications", "{\"notification\": {\"userIds\": \"one\", \"title\": \"t\", \"body\": \"b\"}}"),
        ("/notification-api/notifications/seen", "{\"notificationIds\": [\"a\"], \"userId\": \"x\"}"),
        ("/notification-api/notifications/seen", "{\"notificationIds\": [1]}"),
        ("/notification-api/notifications/seen", "[]"),
    ];
    for (path, body) in cases {
        let token = if path.ends_with("/notifications") {
            &s.admin
        } else {
            &ann.token
        };
        let (status, answer) = s.raw(path, token, body).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert_error(&answer, 400, "errMsg_invalidRequestBody");
    }
}

#[actix_web::test]
async fn every_route_needs_a_live_token() {
    let s = svc().await;
    let ann = s.node.user().await;
    let device = s.device_id(&ann, &push_token()).await;
    let register = json!({"device": {"platform": "ios", "token": push_token()}});
    let send = json!({"notification": {"userIds": [ann.id], "title": "t", "body": "b"}});
    let seen = json!({"notificationIds": ["x"]});
    let unregister = format!("/notification-api/devices/unregister/{device}");
    let routes: [(Method, &str, Option<&Value>); 5] = [
        (
            Method::POST,
            "/notification-api/devices/register",
            Some(&register),
        ),
        (Method::DELETE, &unregister, None),
        (Method::GET, "/notification-api/notifications", None),
        (Method::POST, "/notification-api/notifications", Some(&send)),
        (
            Method::POST,
            "/notification-api/notifications/seen",
            Some(&seen),
        ),
    ];
    // Logged out: the token is no longer live.
    let gone = s.node.log_in_again(&ann.email, &ann.password).await;
    let response = s
        .node
        .http
        .post(s.node.url("/auth-api/logout"))
        .bearer_auth(&gone.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    for (method, path, body) in &routes {
        for token in [None, Some("not-a-token"), Some(gone.token.as_str())] {
            let (status, _, answer) = s.call(method.clone(), path, token, *body).await;
            assert_eq!(status, 401, "{method} {path} {token:?}: {answer}");
            assert_error(&answer, 401, "errMsg_notAuthenticated");
        }
    }
    // Nothing happened: nothing was sent, and the device is still active (it gets a push).
    let (_, listed) = s.list(&ann, "").await;
    assert_eq!(listed["rowCount"], 0);
    s.send(&ann, "after").await;
    let deliveries = s.deliveries(&ann).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["deviceId"], device.as_str());
}

#[actix_web::test]
async fn the_routes_are_in_the_openapi_document() {
    let s = svc().await;
    let doc: Value = s.node.get("/openapi.json").await.json().await.unwrap();
    let paths = &doc["paths"];
    assert!(paths["/notification-api/devices/register"]["post"].is_object());
    assert!(paths["/notification-api/devices/unregister/{deviceId}"]["delete"].is_object());
    assert!(paths["/notification-api/notifications"]["get"].is_object());
    assert!(paths["/notification-api/notifications"]["post"].is_object());
    assert!(paths["/notification-api/notifications/seen"]["post"].is_object());
    assert!(paths["/admin/push-deliveries"]["get"].is_object());
}

#[actix_web::test]
async fn concurrent_registrations_keep_the_limit_and_one_device_per_token() {
    let s = svc().await;
    let ann = s.node.user().await;
    let tokens: Vec<String> = (0..25).map(|_| push_token()).collect();
    let answers =
        futures_util::future::join_all(tokens.iter().map(|t| s.register_device(&ann, t))).await;
    let created = answers
        .iter()
        .filter(|(status, _, _)| *status == 201)
        .count();
    let refused = answers
        .iter()
        .filter(|(status, _, body)| *status == 400 && body["message"] == "errMsg_tooManyDevices")
        .count();
    assert_eq!((created, refused), (20, 5));

    let bob = s.node.user().await;
    let token = push_token();
    let answers =
        futures_util::future::join_all((0..8).map(|_| s.register_device(&bob, &token))).await;
    let mut ids: Vec<&str> = answers
        .iter()
        .map(|(status, _, body)| {
            assert_eq!(*status, 201, "{body}");
            body["device"]["id"].as_str().unwrap()
        })
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

/// Wait until the user has `count` push deliveries: pushes run off the journal writer, after
/// the commit that created the notification. Bounded by the tests' wait.
async fn deliveries_reach(svc: &Svc, user: &TestUser, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + crate::helpers::WAIT;
    loop {
        let deliveries = svc.deliveries(user).await;
        if deliveries.len() >= count || tokio::time::Instant::now() > deadline {
            return deliveries;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn message_thread(svc: &Svc, guest: &TestUser, host: &TestUser) -> String {
    let (status, _, body) = svc
        .call(
            Method::POST,
            "/messaging-api/v1/messagethreads",
            Some(&guest.token),
            Some(&json!({"guestId": guest.id, "hostId": host.id})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["messageThread"]["id"].as_str().unwrap().to_owned()
}

async fn post_message(svc: &Svc, from: &TestUser, thread_id: &str, content: &str) -> String {
    let (status, _, body) = svc
        .call(
            Method::POST,
            "/messaging-api/v1/messages",
            Some(&from.token),
            Some(&json!({"threadId": thread_id, "content": content})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["message"]["id"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn a_message_to_an_offline_user_is_a_notification_pushed_to_their_devices() {
    let svc = svc().await;
    let (guest, host) = (svc.node.user().await, svc.node.user().await);
    let device = svc.device_id(&host, &push_token()).await;
    let thread_id = message_thread(&svc, &guest, &host).await;
    let message_id = post_message(&svc, &guest, &thread_id, "Is May free?").await;

    let (status, list) = svc.list(&host, "").await;
    assert_eq!(status, StatusCode::OK);
    let notification = &list["notifications"][0];
    assert_eq!(notification["kind"], "message", "{list}");
    assert_eq!(notification["body"], "Is May free?");
    assert_eq!(notification["data"]["threadId"], thread_id.as_str());
    assert_eq!(notification["data"]["messageId"], message_id.as_str());
    let (_, senders) = svc.list(&guest, "").await;
    assert_eq!(
        senders["rowCount"], 0,
        "the sender is not notified of their own message"
    );

    let deliveries = deliveries_reach(&svc, &host, 1).await;
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(deliveries[0]["deviceId"], device.as_str());
    assert_eq!(deliveries[0]["notificationId"], notification["id"]);
}

#[actix_web::test]
async fn a_user_online_gets_the_notification_live_and_no_push() {
    let svc = svc().await;
    let (guest, host, away) = (
        svc.node.user().await,
        svc.node.user().await,
        svc.node.user().await,
    );
    svc.device_id(&host, &push_token()).await;
    svc.device_id(&away, &push_token()).await;
    let mut online = svc.node.ws(&host.token).await;
    let thread_id = message_thread(&svc, &guest, &host).await;
    post_message(&svc, &guest, &thread_id, "are you there?").await;
    loop {
        match online.recv_skipping_heartbeats().await {
            Some(protocol::ServerFrame::Event(push)) => {
                if let protocol::Event::Notification {
                    notification_kind,
                    body,
                    ..
                } = push.event
                {
                    assert_eq!(
                        (notification_kind.as_str(), body.as_str()),
                        ("message", "are you there?")
                    );
                    assert_eq!(push.seq, None);
                    break;
                }
            }
            Some(_) => {}
            None => panic!("the connection ended"),
        }
    }
    // A later push to someone offline has gone out; the online user's never did.
    let other = message_thread(&svc, &guest, &away).await;
    post_message(&svc, &guest, &other, "later").await;
    assert_eq!(deliveries_reach(&svc, &away, 1).await.len(), 1);
    assert!(
        svc.deliveries(&host).await.is_empty(),
        "an online user gets no push"
    );
}

#[actix_web::test]
async fn a_payment_request_notifies_its_payor() {
    let svc = svc().await;
    let (payee, payor) = (svc.node.user().await, svc.node.user().await);
    let mut device = svc.node.ws(&payee.token).await;
    device
        .send(&protocol::ClientFrame::RequestPayment {
            id: Some("req-1".into()),
            payor: format!("user:{}", payor.id),
            amount: "12".into(),
            currency: None,
            description: "tickets".into(),
        })
        .await;
    let transaction_id = loop {
        match device.recv_skipping_heartbeats().await {
            Some(protocol::ServerFrame::Wallet(answer)) => {
                assert_eq!(answer.status, "success", "{answer:?}");
                break answer.transaction_id.unwrap();
            }
            Some(_) => {}
            None => panic!("the connection ended"),
        }
    };
    let (_, list) = svc.list(&payor, "").await;
    let notification = &list["notifications"][0];
    assert_eq!(notification["kind"], "payment_request", "{list}");
    assert_eq!(
        notification["data"]["transactionId"],
        transaction_id.as_str()
    );
    assert_eq!(notification["data"]["amount"], "12.00");
}
