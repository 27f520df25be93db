//! The messaging service through HTTP and WebSocket: threads, messages, reports, access
//! rules, real-time delivery in one order, resume without loss, idempotent posts.

use std::collections::HashMap;

use protocol::{ClientFrame, Event, ServerFrame};
use serde_json::{json, Value};

use crate::helpers::{spawn_node, spawn_node_with, TestNode, TestUser, WsClient};

async fn send(
    node: &TestNode,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = node.http.request(method, node.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn thread(node: &TestNode, guest: &TestUser, host: &TestUser) -> String {
    let (status, body) = send(
        node,
        reqwest::Method::POST,
        "/messaging-api/v1/messagethreads",
        &guest.token,
        Some(
            json!({"guestId": guest.id, "hostId": host.id, "isOpen": true,
                    "messageCount": 0, "lastMessageAt": "2024-01-01T00:00:00Z"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["messageThread"]["id"].as_str().unwrap().to_owned()
}

async fn post(node: &TestNode, user: &TestUser, thread_id: &str, content: &str) -> (u16, Value) {
    send(
        node,
        reqwest::Method::POST,
        "/messaging-api/v1/messages",
        &user.token,
        Some(
            json!({"threadId": thread_id, "content": content, "messageType": "text",
                    "senderId": user.id, "sentAt": "2020-01-01T00:00:00Z",
                    "isModerated": false, "isFlagged": false}),
        ),
    )
    .await
}

/// The contents of a thread's messages, oldest first, as `user` lists them.
async fn contents(node: &TestNode, user: &TestUser, thread_id: &str) -> Vec<String> {
    let (_, list) = send(
        node,
        reqwest::Method::GET,
        &format!("/messaging-api/v1/threadmessages/{thread_id}"),
        &user.token,
        None,
    )
    .await;
    list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

/// Subscribe to a thread and return the answer (`subscribed` or `error`), skipping pushes
/// that arrive meanwhile (notifications on the user topic, say).
async fn subscribe(client: &mut WsClient, thread_id: &str, since: Option<u64>) -> ServerFrame {
    client
        .send(&ClientFrame::Subscribe {
            id: Some("sub".into()),
            topic: format!("thread:{thread_id}"),
            since,
        })
        .await;
    loop {
        match client.recv_skipping_heartbeats().await.unwrap() {
            ServerFrame::Event(_) => continue,
            answer => return answer,
        }
    }
}

/// The next pushed message on a thread topic, skipping other frames.
async fn next_message(client: &mut WsClient) -> (u64, String) {
    loop {
        match client.recv_skipping_heartbeats().await {
            Some(ServerFrame::Event(push)) => {
                if let Event::MessagePosted { message } = push.event {
                    assert_eq!(push.seq, Some(message.seq));
                    return (message.seq, message.content);
                }
            }
            Some(_) => continue,
            None => panic!("the connection ended"),
        }
    }
}

#[actix_web::test]
async fn a_thread_and_its_messages_have_the_documented_shapes() {
    let node = spawn_node().await;
    let (guest, host) = (node.user().await, node.user().await);
    let thread_id = thread(&node, &guest, &host).await;
    let (status, created) = post(&node, &guest, &thread_id, "hello host").await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "OK");
    assert_eq!(created["statusCode"], 201);
    assert_eq!(created["dataName"], "message");
    let message = &created["message"];
    for key in [
        "id",
        "threadId",
        "content",
        "senderId",
        "sentAt",
        "messageType",
        "messageType_idx",
        "mediaUrl",
        "isModerated",
        "isFlagged",
        "flaggedBy",
        "flagReason",
        "isRead",
        "isActive",
        "recordVersion",
        "createdAt",
        "updatedAt",
        "_owner",
    ] {
        assert!(message.get(key).is_some(), "message lacks {key}: {message}");
    }
    assert_eq!(message["senderId"], guest.id.as_str());
    assert_eq!(message["messageType_idx"], 0);
    assert_eq!(message["isRead"], false);
    assert_ne!(
        message["sentAt"], "2020-01-01T00:00:00Z",
        "sentAt is the server's"
    );

    let (status, got) = send(
        &node,
        reqwest::Method::GET,
        &format!("/messaging-api/v1/messagethreads/{thread_id}"),
        &host.token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let t = &got["messageThread"];
    assert_eq!(t["messageCount"], 1, "the server counts messages: {t}");
    assert_eq!(t["guestId"], guest.id.as_str());
    assert_eq!(t["isOpen"], true);
    assert!(t["lastMessageAt"].is_string());

    let (status, list) = send(
        &node,
        reqwest::Method::GET,
        "/messaging-api/v1/messagethreads",
        &host.token,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["rowCount"], 1);
    assert_eq!(list["paging"]["totalRowCount"], 1);
    assert_eq!(list["messageThreads"][0]["listingDets"], json!([]));
    for (query, rows) in [
        (format!("hostId={}", host.id), 1),
        (format!("hostId={}", guest.id), 0),
        (format!("hostId={}&hostId={}", guest.id, host.id), 1),
        ("listingId=null".to_owned(), 1),
        ("isOpen=false".to_owned(), 0),
    ] {
        let (status, filtered) = send(
            &node,
            reqwest::Method::GET,
            &format!("/messaging-api/v1/messagethreads?{query}"),
            &host.token,
            None,
        )
        .await;
        assert_eq!(
            (status, filtered["rowCount"].clone()),
            (200, json!(rows)),
            "{query}"
        );
    }
    assert_eq!(list["filters"], json!([]));

    let (status, messages) = send(
        &node,
        reqwest::Method::GET,
        &format!("/messaging-api/v1/threadmessages/{thread_id}"),
        &host.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{messages}");
    assert_eq!(messages["messages"][0]["content"], "hello host");
    assert!(messages["thread"].is_object() && messages["amenities"].is_object());
    let (_, got) = send(
        &node,
        reqwest::Method::GET,
        &format!("/messaging-api/v1/gotthreadmessages/{thread_id}"),
        &host.token,
        None,
    )
    .await;
    assert!(got.get("thread").is_none());
    assert_eq!(got["messages"].as_array().unwrap().len(), 1);
    let metrics = node.metrics().await;
    assert!(
        metrics.contains("actors_live{kind=\"conversation\"} 1"),
        "the thread's actor is counted: {metrics}"
    );
}

#[actix_web::test]
async fn a_second_open_thread_on_one_context_is_a_conflict_until_the_first_closes() {
    let node = spawn_node().await;
    let (guest, host) = (node.user().await, node.user().await);
    let first = thread(&node, &guest, &host).await;
    let again = || {
        send(
            &node,
            reqwest::Method::POST,
            "/messaging-api/v1/messagethreads",
            &host.token,
            Some(json!({"guestId": guest.id, "hostId": host.id})),
        )
    };
    let (status, body) = again().await;
    assert_eq!(status, 409);
    assert_eq!(body["result"], "ERR");
    assert_eq!(body["message"], "errMsg_threadAlreadyExists");
    assert!(body["detail"].as_str().unwrap().contains(&first));

    let (status, closed) = send(
        &node,
        reqwest::Method::PATCH,
        &format!("/messaging-api/v1/messagethreads/{first}"),
        &guest.token,
        Some(json!({"isOpen": false})),
    )
    .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["messageThread"]["isOpen"], false);
    let (status, posted) = post(&node, &guest, &first, "to a closed thread").await;
    assert_eq!(
        (status, posted["message"].clone()),
        (409, json!("errMsg_threadIsClosed"))
    );

    let (status, second) = again().await;
    assert_eq!(status, 201, "{second}");
    // Reopening the first now would make two open threads on one context.
    let (status, reopen) = send(
        &node,
        reqwest::Method::PATCH,
        &format!("/messaging-api/v1/messagethreads/{first}"),
        &guest.token,
        Some(json!({"isOpen": true})),
    )
    .await;
    assert_eq!(status, 409, "{reopen}");
}

#[actix_web::test]
async fn only_participants_read_and_post_and_only_admins_see_all() {
    let node = spawn_node_with(|s| {
        s.admin_email = Some("mod@example.com".into());
        s.admin_password = Some(secrecy::SecretString::from("moderator secret".to_owned()));
    })
    .await;
    let (guest, host, outsider) = (node.user().await, node.user().await, node.user().await);
    let admin = node
        .log_in_again("mod@example.com", "moderator secret")
        .await;
    let thread_id = thread(&node, &guest, &host).await;
    let (_, posted) = post(&node, &guest, &thread_id, "private").await;
    let message_id = posted["message"]["id"].as_str().unwrap().to_owned();

    for path in [
        format!("/messaging-api/v1/messagethreads/{thread_id}"),
        format!("/messaging-api/v1/threadmessages/{thread_id}"),
        format!("/messaging-api/v1/messages/{message_id}"),
    ] {
        let (status, body) = send(&node, reqwest::Method::GET, &path, &outsider.token, None).await;
        assert_eq!(status, 404, "{path}: {body}");
        let (status, _) = send(&node, reqwest::Method::GET, &path, &admin.token, None).await;
        assert_eq!(status, 200, "{path}: admins read every thread");
    }
    // The thread's conversation is live (the guest just posted): it refuses them itself, with
    // the same answers as the store would give.
    let (status, _) = post(&node, &outsider, &thread_id, "let me in").await;
    assert_eq!(status, 404);
    let (status, _) = post(&node, &admin, &thread_id, "admins do not post").await;
    assert_eq!(status, 403);
    // A thread id nobody has is not found, and wakes no conversation for it.
    let conversations_activated = |metrics: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("node_actor_activations{kind=\"conversation\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .expect("conversation activations in /metrics")
    };
    let before = conversations_activated(&node.metrics().await);
    for user in [&guest, &outsider, &admin] {
        let (status, body) = post(&node, user, "no-such-thread", "anyone there?").await;
        assert_eq!(status, 404, "{body}");
    }
    assert_eq!(conversations_activated(&node.metrics().await), before);
    let (_, list) = send(
        &node,
        reqwest::Method::GET,
        "/messaging-api/v1/messagethreads",
        &outsider.token,
        None,
    )
    .await;
    assert_eq!(list["rowCount"], 0);
    // Someone else's identity in the body is refused.
    let (status, _) = send(
        &node,
        reqwest::Method::POST,
        "/messaging-api/v1/messages",
        &host.token,
        Some(json!({"threadId": thread_id, "content": "as guest", "senderId": guest.id})),
    )
    .await;
    assert_eq!(status, 403);
    // The sender or an admin edits; the recipient may only mark it read.
    let path = format!("/messaging-api/v1/messages/{message_id}");
    let (status, _) = send(
        &node,
        reqwest::Method::PATCH,
        &path,
        &host.token,
        Some(json!({"content": "rewritten"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, read) = send(
        &node,
        reqwest::Method::PATCH,
        &path,
        &host.token,
        Some(json!({"isRead": true})),
    )
    .await;
    assert_eq!(
        (status, read["message"]["isRead"].clone()),
        (200, json!(true))
    );
    let (status, edited) = send(
        &node,
        reqwest::Method::PATCH,
        &path,
        &guest.token,
        Some(json!({"content": "fixed typo"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(edited["message"]["content"], "fixed typo");
    assert_eq!(edited["message"]["recordVersion"], 3);
    // An outsider cannot subscribe.
    let mut ws = node.ws(&outsider.token).await;
    match subscribe(&mut ws, &thread_id, None).await {
        ServerFrame::Error { code, .. } => assert_eq!(code, protocol::ErrorCode::NotFound),
        other => panic!("expected an error, got {other:?}"),
    }
    // Hiding: the sender; then it is gone for participants and kept for admins.
    let (status, _) = send(&node, reqwest::Method::DELETE, &path, &host.token, None).await;
    assert_eq!(status, 403);
    let (status, hidden) = send(&node, reqwest::Method::DELETE, &path, &guest.token, None).await;
    assert_eq!(
        (status, hidden["message"]["isActive"].clone()),
        (200, json!(false))
    );
    let (status, _) = send(&node, reqwest::Method::GET, &path, &host.token, None).await;
    assert_eq!(status, 404);
    let (status, _) = send(&node, reqwest::Method::GET, &path, &admin.token, None).await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn bad_requests_get_the_marketplace_error_and_change_nothing() {
    let node = spawn_node().await;
    let (guest, host) = (node.user().await, node.user().await);
    let thread_id = thread(&node, &guest, &host).await;
    let cases = [
        (json!({"threadId": thread_id}), "missing content"),
        (json!({"threadId": thread_id, "content": 5}), "wrong type"),
        (
            json!({"threadId": thread_id, "content": "x", "colour": "red"}),
            "unknown field",
        ),
        (
            json!({"threadId": thread_id, "content": ""}),
            "empty content",
        ),
        (
            json!({"threadId": thread_id, "content": "x", "messageType": "video"}),
            "bad enum",
        ),
    ];
    for (body, why) in cases {
        let (status, answer) = send(
            &node,
            reqwest::Method::POST,
            "/messaging-api/v1/messages",
            &guest.token,
            Some(body),
        )
        .await;
        assert_eq!(status, 400, "{why}: {answer}");
        assert_eq!(answer["result"], "ERR", "{why}");
    }
    let malformed = node
        .http
        .post(node.url("/messaging-api/v1/messages"))
        .bearer_auth(&guest.token)
        .header("content-type", "application/json")
        .body("{\"threadId\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let unauthenticated = node
        .http
        .get(node.url("/messaging-api/v1/messagethreads"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    for query in [
        "pageRowCount=101",
        "pageNumber=-1",
        "pageRowCount=abc",
        "colour=red",
        "isOpen=maybe",
    ] {
        let (status, body) = send(
            &node,
            reqwest::Method::GET,
            &format!("/messaging-api/v1/messagethreads?{query}"),
            &guest.token,
            None,
        )
        .await;
        assert_eq!(status, 400, "{query}: {body}");
    }
    let (_, thread) = send(
        &node,
        reqwest::Method::GET,
        &format!("/messaging-api/v1/messagethreads/{thread_id}"),
        &guest.token,
        None,
    )
    .await;
    assert_eq!(
        thread["messageThread"]["messageCount"], 0,
        "nothing was posted"
    );
}

#[actix_web::test]
async fn paging_walks_a_thread_oldest_first() {
    let node = spawn_node().await;
    let (guest, host) = (node.user().await, node.user().await);
    let thread_id = thread(&node, &guest, &host).await;
    for i in 0..7 {
        assert_eq!(
            post(&node, &guest, &thread_id, &format!("m{i}")).await.0,
            201
        );
    }
    let mut seen = Vec::new();
    for page in 1..=3 {
        let (status, body) = send(
            &node,
            reqwest::Method::GET,
            &format!(
                "/messaging-api/v1/threadmessages/{thread_id}?pageNumber={page}&pageRowCount=3"
            ),
            &host.token,
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["paging"]["pageCount"], 3);
        assert_eq!(body["paging"]["totalRowCount"], 7);
        for m in body["messages"].as_array().unwrap() {
            seen.push(m["content"].as_str().unwrap().to_owned());
        }
    }
    let expected: Vec<String> = (0..7).map(|i| format!("m{i}")).collect();
    assert_eq!(seen, expected);
    let (_, all) = send(
        &node,
        reqwest::Method::GET,
        &format!("/messaging-api/v1/threadmessages/{thread_id}?pageNumber=0"),
        &host.token,
        None,
    )
    .await;
    assert_eq!(all["messages"].as_array().unwrap().len(), 7);
}

#[actix_web::test]
async fn a_retried_post_is_stored_and_delivered_once() {
    let node = spawn_node().await;
    let (guest, host) = (node.user().await, node.user().await);
    let thread_id = thread(&node, &guest, &host).await;
    let mut watcher = node.ws(&host.token).await;
    assert!(matches!(
        subscribe(&mut watcher, &thread_id, None).await,
        ServerFrame::Subscribed { .. }
    ));

    let body = json!({"threadId": thread_id, "content": "only once"});
    let attempt = || {
        node.http
            .post(node.url("/messaging-api/v1/messages"))
            .bearer_auth(&guest.token)
            .header("Idempotency-Key", "post-1")
            .json(&body)
            .send()
    };
    let (a, b) = tokio::join!(attempt(), attempt());
    let later = attempt().await.unwrap();
    let mut ids = Vec::new();
    for response in [a.unwrap(), b.unwrap(), later] {
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        ids.push(body["message"]["id"].as_str().unwrap().to_owned());
    }
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "three identical answers: {ids:?}"
    );
    // Over the WebSocket with the same id as key: the same message again.
    let mut device = node.ws(&guest.token).await;
    let frame = ClientFrame::PostMessage {
        id: Some("ws-1".into()),
        thread_id: thread_id.clone(),
        content: "from the socket".into(),
        message_type: None,
        media_url: None,
    };
    device.send(&frame).await;
    device.send(&frame).await;
    let mut posted = Vec::new();
    while posted.len() < 2 {
        if let Some(ServerFrame::Posted { message, .. }) = device.recv_skipping_heartbeats().await {
            posted.push(message);
        }
    }
    assert_eq!(posted[0], posted[1], "the retry answers the first post");

    assert_eq!(
        contents(&node, &host, &thread_id).await,
        vec!["only once", "from the socket"]
    );
    assert_eq!(next_message(&mut watcher).await, (1, "only once".into()));
    assert_eq!(
        next_message(&mut watcher).await,
        (2, "from the socket".into())
    );

    // The conversation reloads (a failed batch resets it): a repeat is answered from the
    // store, and a fresh key to the live conversation goes to it with no store lookup.
    node.faults.fail_next_batches(1);
    let (status, _) = post(&node, &guest, &thread_id, "lost to the failed batch").await;
    assert_eq!(status, 500);
    let repeated = attempt().await.unwrap();
    assert_eq!(repeated.status(), 201);
    let repeated: Value = repeated.json().await.unwrap();
    assert_eq!(repeated["message"]["id"], ids[0].as_str());
    let lookups = || node.metric("node_actor_key_lookups{kind=\"conversation\"}");
    let post_keyed = |key: &'static str, content: &'static str| {
        node.http
            .post(node.url("/messaging-api/v1/messages"))
            .bearer_auth(&guest.token)
            .header("Idempotency-Key", key)
            .json(&json!({"threadId": thread_id, "content": content}))
            .send()
    };
    // The repeat was answered without waking the conversation; this post wakes it.
    assert_eq!(
        post_keyed("post-2", "wakes it").await.unwrap().status(),
        201
    );
    let before = lookups().await;
    assert_eq!(
        post_keyed("post-3", "a fresh key").await.unwrap().status(),
        201
    );
    assert_eq!(lookups().await, before, "a fresh key");
    assert_eq!(
        contents(&node, &host, &thread_id).await,
        vec!["only once", "from the socket", "wakes it", "a fresh key"]
    );
    assert_eq!(next_message(&mut watcher).await, (3, "wakes it".into()));
    assert_eq!(next_message(&mut watcher).await, (4, "a fresh key".into()));
}

/// A post whose commit got no answer, though it committed, is answered as posted where the
/// database can say what became of it (PostgreSQL), and otherwise as of unknown outcome (not
/// "nothing was changed"). Its retry with the same Idempotency-Key answers the message as
/// stored: the thread holds it once, and the next post follows it.
#[actix_web::test]
async fn a_post_whose_commit_is_unconfirmed_is_answered_as_unknown_and_its_retry_finds_it() {
    let node = spawn_node().await;
    let (guest, host) = (node.user().await, node.user().await);
    let thread_id = thread(&node, &guest, &host).await;
    let body = json!({"threadId": thread_id, "content": "sent into the dark"});
    let attempt = || {
        node.http
            .post(node.url("/messaging-api/v1/messages"))
            .bearer_auth(&guest.token)
            .header("Idempotency-Key", "post-unconfirmed")
            .json(&body)
            .send()
    };
    node.faults.unconfirm_next_batches(1);
    let first = attempt().await.unwrap();
    if node.database_url.starts_with("postgres") {
        assert_eq!(first.status(), 201);
    } else {
        assert_eq!(first.status(), 500);
        let unknown: Value = first.json().await.unwrap();
        assert_eq!(unknown["message"], "errMsg_outcomeUnknown", "{unknown}");
        assert_eq!(unknown["errCode"], 500, "{unknown}");
        assert!(
            unknown["detail"]
                .as_str()
                .unwrap()
                .contains("same Idempotency-Key"),
            "{unknown}"
        );
    }
    let retried = attempt().await.unwrap();
    assert_eq!(retried.status(), 201);
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(retried["message"]["content"], "sent into the dark");
    let (status, _) = post(&node, &host, &thread_id, "received").await;
    assert_eq!(status, 201);
    // A post without a key leaves nothing to check a commit against (PostgreSQL could hand a
    // transaction's id out again after a crash): unknown on either engine, and it was stored.
    node.faults.unconfirm_next_batches(1);
    let (status, unknown) = post(&node, &host, &thread_id, "unkeyed").await;
    assert_eq!(status, 500);
    assert_eq!(unknown["message"], "errMsg_outcomeUnknown", "{unknown}");
    let contents = contents(&node, &host, &thread_id).await;
    assert_eq!(contents, vec!["sent into the dark", "received", "unkeyed"]);
}

#[actix_web::test]
async fn every_device_of_both_participants_sees_every_message_once_in_one_order() {
    let node = spawn_node().await;
    let (guest, host) = (node.user().await, node.user().await);
    let thread_id = thread(&node, &guest, &host).await;
    let mut devices = Vec::new();
    for user in [&guest, &guest, &host, &host] {
        let mut client = node.ws(&user.token).await;
        assert!(matches!(
            subscribe(&mut client, &thread_id, None).await,
            ServerFrame::Subscribed { .. }
        ));
        devices.push(client);
    }
    let per_sender = 30;
    let posts = (0..per_sender).flat_map(|i| [(&guest, format!("g{i}")), (&host, format!("h{i}"))]);
    let answers = futures_util::future::join_all(posts.map(|(user, content)| {
        let node = &node;
        let thread_id = &thread_id;
        async move { post(node, user, thread_id, &content).await.0 }
    }))
    .await;
    assert!(answers.iter().all(|s| *s == 201), "{answers:?}");
    let total = per_sender * 2;
    let mut orders = Vec::new();
    for device in &mut devices {
        let mut order = Vec::new();
        for _ in 0..total {
            order.push(next_message(device).await);
        }
        orders.push(order);
    }
    let seqs: Vec<u64> = orders[0].iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=total as u64).collect::<Vec<_>>(),
        "gap-free, in order"
    );
    let mut contents: Vec<&String> = orders[0].iter().map(|(_, c)| c).collect();
    contents.sort();
    contents.dedup();
    assert_eq!(contents.len(), total, "every message once");
    for order in &orders[1..] {
        assert_eq!(order, &orders[0], "every device sees one order");
    }
}

#[actix_web::test]
async fn a_device_that_reconnects_gets_exactly_what_it_missed_then_live_messages() {
    let node = spawn_node().await;
    let (guest, host) = (node.user().await, node.user().await);
    let thread_id = thread(&node, &guest, &host).await;
    let mut device = node.ws(&host.token).await;
    subscribe(&mut device, &thread_id, None).await;
    assert_eq!(post(&node, &guest, &thread_id, "before").await.0, 201);
    let (last_seen, _) = next_message(&mut device).await;
    drop(device);

    let missed = 500;
    let mut sender = node.ws(&guest.token).await;
    for i in 0..missed {
        sender
            .send(&ClientFrame::PostMessage {
                id: Some(format!("p{i}")),
                thread_id: thread_id.clone(),
                content: format!("missed {i}"),
                message_type: None,
                media_url: None,
            })
            .await;
        // Keep at most the allowed ops in flight: wait for each answer.
        loop {
            match sender.recv_skipping_heartbeats().await {
                Some(ServerFrame::Posted { .. }) => break,
                Some(ServerFrame::Error { message, .. }) => panic!("{message}"),
                _ => continue,
            }
        }
    }
    let mut device = node.ws(&host.token).await;
    // A post racing the reconnect: delivered once, after the replay.
    let racing = post(&node, &guest, &thread_id, "racing");
    let (answer, reply) = tokio::join!(racing, subscribe(&mut device, &thread_id, Some(last_seen)));
    assert_eq!(answer.0, 201);
    match reply {
        ServerFrame::Subscribed {
            resume: Some(resume),
            ..
        } => {
            assert!(!resume.gap_too_large);
            assert!(resume.replayed >= missed);
        }
        other => panic!("expected subscribed, got {other:?}"),
    }
    let mut got = Vec::new();
    for _ in 0..=missed {
        got.push(next_message(&mut device).await);
    }
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    let expected: Vec<u64> = (last_seen + 1..=last_seen + 1 + missed).collect();
    assert_eq!(seqs, expected, "in order, no gap, no duplicate");
    let by_content: HashMap<&str, u64> = got.iter().map(|(s, c)| (c.as_str(), *s)).collect();
    assert!(by_content.contains_key("racing") && by_content.contains_key("missed 499"));
    assert_eq!(post(&node, &guest, &thread_id, "live").await.0, 201);
    assert_eq!(next_message(&mut device).await.1, "live");

    // A gap larger than the fast path: told to page through REST.
    let settings_max = 1000;
    let mut far = node.ws(&host.token).await;
    match subscribe(&mut far, &thread_id, Some(0)).await {
        ServerFrame::Subscribed {
            resume: Some(resume),
            ..
        } => {
            assert_eq!(resume.gap_too_large, resume.head > settings_max);
        }
        other => panic!("expected subscribed, got {other:?}"),
    }
}

#[actix_web::test]
async fn read_marks_and_edits_reach_the_other_participant() {
    let node = spawn_node().await;
    let (guest, host) = (node.user().await, node.user().await);
    let thread_id = thread(&node, &guest, &host).await;
    let mut guest_device = node.ws(&guest.token).await;
    subscribe(&mut guest_device, &thread_id, None).await;
    let (_, posted) = post(&node, &guest, &thread_id, "hi").await;
    let (seq, _) = next_message(&mut guest_device).await;
    let mut host_device = node.ws(&host.token).await;
    // Typing needs the thread subscribed; an unsubscribed connection is refused.
    host_device
        .send(&ClientFrame::Typing {
            id: Some("t0".into()),
            thread_id: thread_id.clone(),
        })
        .await;
    assert!(matches!(
        answer(&mut host_device).await,
        ServerFrame::Error {
            code: protocol::ErrorCode::Forbidden,
            ..
        }
    ));
    subscribe(&mut host_device, &thread_id, None).await;
    host_device
        .send(&ClientFrame::MarkRead {
            id: Some("r".into()),
            thread_id: thread_id.clone(),
            up_to_seq: seq,
        })
        .await;
    loop {
        match guest_device.recv_skipping_heartbeats().await {
            Some(ServerFrame::Event(push)) => {
                if let Event::ReadMarked { user_id, up_to_seq } = push.event {
                    assert_eq!((user_id, up_to_seq), (host.id.clone(), seq));
                    break;
                }
            }
            Some(_) => {}
            None => panic!("ended"),
        }
    }
    let message_id = posted["message"]["id"].as_str().unwrap();
    let (_, stored) = send(
        &node,
        reqwest::Method::GET,
        &format!("/messaging-api/v1/messages/{message_id}"),
        &guest.token,
        None,
    )
    .await;
    assert_eq!(stored["message"]["isRead"], true, "the read mark is stored");
    // A burst of typing is one indicator; the post after it arrives behind it.
    for _ in 0..5 {
        host_device
            .send(&ClientFrame::Typing {
                id: None,
                thread_id: thread_id.clone(),
            })
            .await;
    }
    host_device
        .send(&ClientFrame::PostMessage {
            id: Some("after-typing".into()),
            thread_id: thread_id.clone(),
            content: "typed".into(),
            message_type: None,
            media_url: None,
        })
        .await;
    let mut typing = 0;
    loop {
        if let Some(ServerFrame::Event(push)) = guest_device.recv_skipping_heartbeats().await {
            match push.event {
                Event::Typing { user_id, .. } => {
                    assert_eq!(user_id, host.id);
                    assert_eq!(push.seq, None, "typing is ephemeral");
                    typing += 1;
                }
                Event::MessagePosted { message } if message.content == "typed" => break,
                _ => {}
            }
        }
    }
    assert_eq!(typing, 1, "typing is throttled per connection and thread");
}

#[actix_web::test]
async fn reports_are_seen_by_the_reporter_the_sender_and_admins_and_moderated_by_admins() {
    let node = spawn_node_with(|s| {
        s.admin_email = Some("mod@example.com".into());
        s.admin_password = Some(secrecy::SecretString::from("moderator secret".to_owned()));
    })
    .await;
    let (guest, host, outsider) = (node.user().await, node.user().await, node.user().await);
    let admin = node
        .log_in_again("mod@example.com", "moderator secret")
        .await;
    let thread_id = thread(&node, &guest, &host).await;
    let (_, posted) = post(&node, &guest, &thread_id, "rude").await;
    let message_id = posted["message"]["id"].as_str().unwrap();
    let (status, report) = send(&node, reqwest::Method::POST, "/messaging-api/v1/messagereports",
        &host.token, Some(json!({"messageId": message_id, "reportReason": "abuse",
            "reportedBy": host.id, "moderationStatus": "closed", "reportedAt": "2020-01-01T00:00:00Z"}))).await;
    assert_eq!(status, 201, "{report}");
    let report = &report["messageReport"];
    assert_eq!(
        report["moderationStatus"], "pending",
        "a report starts pending"
    );
    assert_eq!(report["moderationStatus_idx"], 0);
    let id = report["id"].as_str().unwrap();
    let path = format!("/messaging-api/v1/messagereports/{id}");
    for (user, expected) in [(&host, 200), (&guest, 200), (&admin, 200), (&outsider, 404)] {
        let (status, _) = send(&node, reqwest::Method::GET, &path, &user.token, None).await;
        assert_eq!(status, expected);
    }
    let (status, _) = send(
        &node,
        reqwest::Method::PATCH,
        &path,
        &host.token,
        Some(json!({"moderationStatus": "closed"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, moderated) = send(&node, reqwest::Method::PATCH, &path, &admin.token,
        Some(json!({"moderationStatus": "reviewed", "adminId": admin.id, "resolutionNotes": "warned"}))).await;
    assert_eq!(status, 200, "{moderated}");
    assert_eq!(moderated["messageReport"]["moderationStatus"], "reviewed");
    assert_eq!(moderated["messageReport"]["adminId"], admin.id.as_str());
    let (status, _) = send(
        &node,
        reqwest::Method::PATCH,
        &path,
        &admin.token,
        Some(json!({"moderationStatus": "escalated"})),
    )
    .await;
    assert_eq!(status, 400);
    let (_, mine) = send(
        &node,
        reqwest::Method::GET,
        "/messaging-api/v1/messagereports",
        &outsider.token,
        None,
    )
    .await;
    assert_eq!(mine["rowCount"], 0);
    let (_, all) = send(
        &node,
        reqwest::Method::GET,
        "/messaging-api/v1/messagereports",
        &admin.token,
        None,
    )
    .await;
    assert_eq!(all["rowCount"], 1);
    let (_, senders) = send(
        &node,
        reqwest::Method::GET,
        "/messaging-api/v1/messagereports",
        &guest.token,
        None,
    )
    .await;
    assert_eq!(senders["rowCount"], 1, "the reported sender sees it");
}

/// With Redis, a message committed on one node reaches the participants connected to
/// another node that shares its database. Runs when `TEST_REDIS_URL` is set (CI's backend
/// run); without Redis each node's bus is its own, and there is nothing to carry it across.
#[actix_web::test]
async fn a_message_posted_on_one_node_reaches_devices_on_another() {
    if std::env::var("TEST_REDIS_URL").is_err() {
        return;
    }
    let first = spawn_node().await;
    let shared = first.database_url.clone();
    let second = spawn_node_with(|s| {
        s.database_url = shared;
        s.token_key_file = Some(first_key(&first));
    })
    .await;
    let (guest, host) = (first.user().await, first.user().await);
    let thread_id = thread(&first, &guest, &host).await;
    let mut remote = second.ws(&host.token).await;
    assert!(matches!(
        subscribe(&mut remote, &thread_id, None).await,
        ServerFrame::Subscribed { .. }
    ));
    for i in 0..20 {
        assert_eq!(
            post(&first, &guest, &thread_id, &format!("n{i}")).await.0,
            201
        );
    }
    for i in 0..20 {
        assert_eq!(next_message(&mut remote).await, (i + 1, format!("n{i}")));
    }
}

/// The first node's token key, so the second node accepts the same tokens.
fn first_key(node: &TestNode) -> std::path::PathBuf {
    node.data_dir.join("token-signing-key.pem")
}

/// A device that stops reading a busy thread is closed with 4008; the other devices get
/// every message.
#[actix_web::test]
async fn a_slow_thread_subscriber_is_closed_and_the_others_get_everything() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    // Room for a reader that keeps up (each post also sends the guest a notification).
    let node = spawn_node_with(|s| s.ws_send_queue_max = 64).await;
    let (guest, host) = (node.user().await, node.user().await);
    let thread_id = thread(&node, &guest, &host).await;
    let mut calm = node.ws(&guest.token).await;
    subscribe(&mut calm, &thread_id, None).await;
    // The host's second device: a tiny receive buffer, subscribed, then never read.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = node.address.trim_start_matches("http://").to_owned();
    let tcp = socket.connect(address.parse().unwrap()).await.unwrap();
    let url = format!("{}?access_token={}", node.ws_address, host.token);
    let (mut slow, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
        .await
        .unwrap();
    let subscribe_frame =
        format!("{{\"op\":\"subscribe\",\"id\":\"s\",\"topic\":\"thread:{thread_id}\"}}");
    slow.send(WsMessage::text(subscribe_frame)).await.unwrap();
    loop {
        match slow.next().await {
            Some(Ok(WsMessage::Text(text))) if text.contains("subscribed") => break,
            Some(Ok(_)) => {}
            other => panic!("expected subscribed, got {other:?}"),
        }
    }
    // More than the kernel buffers between the node and the stalled reader hold.
    let big = "x".repeat(9_900);
    let total = 800;
    let posting = async {
        let batches: Vec<Vec<usize>> = (0..total)
            .collect::<Vec<_>>()
            .chunks(8)
            .map(<[usize]>::to_vec)
            .collect();
        for batch in batches {
            let answers = futures_util::future::join_all(batch.iter().map(|i| {
                let content = format!("{i} {big}");
                let (node, host, thread_id) = (&node, &host, &thread_id);
                async move { post(node, host, thread_id, &content).await.0 }
            }))
            .await;
            assert!(answers.iter().all(|s| *s == 201), "{answers:?}");
        }
    };
    let reading = async {
        let mut seen = std::collections::HashSet::new();
        for i in 0..total {
            let (seq, content) = next_message(&mut calm).await;
            assert_eq!(seq, i as u64 + 1, "in order, no gap");
            assert!(seen.insert(content.split(' ').next().unwrap_or("").to_owned()));
        }
        seen.len()
    };
    let ((), received) = tokio::join!(posting, reading);
    assert_eq!(received, total, "the calm device got every message once");
    // The stalled device is cut off: its close frame (4008) may not get through the full
    // buffers before the node gives up on it and drops the connection.
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(20), slow.next()).await {
            Ok(Some(Ok(WsMessage::Close(frame)))) => {
                assert_eq!(
                    frame.map(|f| u16::from(f.code)),
                    Some(protocol::close::SLOW_CONSUMER)
                );
                break;
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => break,
            Err(_) => panic!("the stalled device was never disconnected"),
        }
    }
    let metrics = node.metrics().await;
    assert!(
        metrics.contains("node_ws_closed_total{code=\"4008\"} 1"),
        "{metrics}"
    );
}

/// The next presence event, skipping other frames.
async fn next_presence(client: &mut WsClient) -> (String, bool) {
    loop {
        match client.recv_skipping_heartbeats().await {
            Some(ServerFrame::Event(push)) => {
                if let Event::Presence {
                    user_id, online, ..
                } = push.event
                {
                    assert_eq!(push.seq, None, "presence is ephemeral");
                    return (user_id, online);
                }
            }
            Some(_) => {}
            None => panic!("the connection ended"),
        }
    }
}

#[actix_web::test]
async fn participants_see_each_other_arrive_and_leave() {
    let node = spawn_node().await;
    let (guest, host) = (node.user().await, node.user().await);
    let thread_id = thread(&node, &guest, &host).await;
    let mut guest_device = node.ws(&guest.token).await;
    subscribe(&mut guest_device, &thread_id, None).await;
    assert_eq!(
        next_presence(&mut guest_device).await,
        (guest.id.clone(), true)
    );

    let mut host_phone = node.ws(&host.token).await;
    subscribe(&mut host_phone, &thread_id, None).await;
    assert_eq!(
        next_presence(&mut guest_device).await,
        (host.id.clone(), true)
    );
    // The newcomer learns the guest is there (and may hear of its own arrival too).
    loop {
        let (user, online) = next_presence(&mut host_phone).await;
        if user == guest.id {
            assert!(online);
            break;
        }
        assert_eq!((user, online), (host.id.clone(), true));
    }

    // A second device of the host changes nothing; the host leaves with the last one.
    let mut host_laptop = node.ws(&host.token).await;
    subscribe(&mut host_laptop, &thread_id, None).await;
    drop(host_phone);
    host_laptop
        .send(&ClientFrame::Unsubscribe {
            id: Some("u".into()),
            topic: format!("thread:{thread_id}"),
        })
        .await;
    assert_eq!(
        next_presence(&mut guest_device).await,
        (host.id.clone(), false)
    );
}

#[actix_web::test]
async fn subscribing_to_threads_follows_every_thread_of_the_user() {
    let node = spawn_node().await;
    let (me, a, b) = (node.user().await, node.user().await, node.user().await);
    let first = thread(&node, &me, &a).await;
    let second = thread(&node, &b, &me).await;
    let _not_mine = thread(&node, &a, &b).await;
    let mut device = node.ws(&me.token).await;
    device
        .send(&ClientFrame::Subscribe {
            id: Some("all".into()),
            topic: "threads".into(),
            since: None,
        })
        .await;
    let mut topics = Vec::new();
    while topics.len() < 2 {
        if let Some(ServerFrame::Subscribed { topic, .. }) = device.recv_skipping_heartbeats().await
        {
            topics.push(topic);
        }
    }
    topics.sort();
    let mut expected = vec![format!("thread:{first}"), format!("thread:{second}")];
    expected.sort();
    assert_eq!(topics, expected);
    assert_eq!(post(&node, &a, &first, "from a").await.0, 201);
    assert_eq!(post(&node, &b, &second, "from b").await.0, 201);
    let mut contents = vec![
        next_message(&mut device).await.1,
        next_message(&mut device).await.1,
    ];
    contents.sort();
    assert_eq!(contents, vec!["from a", "from b"]);
    // A new thread is announced on the user topic.
    let third = thread(&node, &me, &b).await;
    loop {
        if let Some(ServerFrame::Event(push)) = device.recv_skipping_heartbeats().await {
            if let Event::ThreadCreated { thread_id, .. } = push.event {
                assert_eq!(thread_id, third);
                assert_eq!(push.topic, format!("user:{}", me.id));
                break;
            }
        }
    }
}

#[actix_web::test]
async fn every_messaging_route_is_in_the_openapi_document() {
    let node = spawn_node().await;
    let doc: Value = node.get("/openapi.json").await.json().await.unwrap();
    let paths = &doc["paths"];
    for (path, methods) in [
        ("/messaging-api/v1/messagethreads", &["get", "post"][..]),
        (
            "/messaging-api/v1/messagethreads/{messageThreadId}",
            &["get", "patch", "delete"],
        ),
        ("/messaging-api/v1/messages", &["post"]),
        (
            "/messaging-api/v1/messages/{messageId}",
            &["get", "patch", "delete"],
        ),
        ("/messaging-api/v1/threadmessages/{threadId}", &["get"]),
        ("/messaging-api/v1/gotthreadmessages/{threadId}", &["get"]),
        ("/messaging-api/v1/messagereports", &["get", "post"]),
        (
            "/messaging-api/v1/messagereports/{messageReportId}",
            &["get", "patch"],
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

#[actix_web::test]
async fn the_permission_routes_answer_from_the_callers_role_on_every_service() {
    let node = spawn_node_with(|s| {
        s.admin_email = Some("mod@example.com".into());
        s.admin_password = Some(secrecy::SecretString::from("moderator secret".to_owned()));
    })
    .await;
    let user = node.user().await;
    let admin = node
        .log_in_again("mod@example.com", "moderator secret")
        .await;
    for service in ["messaging", "auth", "notification"] {
        let base = format!("/{service}-api/permissions");
        let (status, mine) = send(&node, reqwest::Method::GET, &base, &user.token, None).await;
        assert_eq!((status, mine), (200, json!([])));
        let (status, theirs) = send(&node, reqwest::Method::GET, &base, &admin.token, None).await;
        assert_eq!(status, 200);
        let names: Vec<&str> = theirs
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["permissionName"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"messages.moderate"), "{theirs}");
        assert_eq!(theirs[0]["roleId"], "superAdmin");
        assert_eq!(theirs[0]["canDo"], true);
        let check = format!("{base}/messages.moderate");
        let (_, no) = send(&node, reqwest::Method::GET, &check, &user.token, None).await;
        assert_eq!(no, json!({"canDo": false, "exceptions": []}));
        let (_, yes) = send(&node, reqwest::Method::GET, &check, &admin.token, None).await;
        assert_eq!(yes, json!({"canDo": true, "exceptions": []}));
        let anonymous = node.get(&check).await;
        assert_eq!(anonymous.status(), 401);
        let body: Value = anonymous.json().await.unwrap();
        assert_eq!(body, json!({"status": "ERR", "message": "No login found"}));
    }
}

/// The next frame that answers an op (not a push or heartbeat).
async fn answer(client: &mut WsClient) -> ServerFrame {
    loop {
        match client.recv_skipping_heartbeats().await {
            Some(ServerFrame::Event(_)) => continue,
            Some(frame) => return frame,
            None => panic!("the connection ended"),
        }
    }
}

#[actix_web::test]
async fn messages_are_edited_and_hidden_over_the_socket_by_their_sender_only() {
    let node = spawn_node().await;
    let (guest, host) = (node.user().await, node.user().await);
    let thread_id = thread(&node, &guest, &host).await;
    let mut watcher = node.ws(&host.token).await;
    subscribe(&mut watcher, &thread_id, None).await;
    let mut sender = node.ws(&guest.token).await;
    sender
        .send(&ClientFrame::PostMessage {
            id: Some("p".into()),
            thread_id: thread_id.clone(),
            content: "helo".into(),
            message_type: Some("text".into()),
            media_url: None,
        })
        .await;
    let ServerFrame::Posted { message, .. } = answer(&mut sender).await else {
        panic!("expected posted")
    };
    sender
        .send(&ClientFrame::EditMessage {
            id: Some("e".into()),
            message_id: message.id.clone(),
            content: "hello".into(),
        })
        .await;
    assert_eq!(
        answer(&mut sender).await,
        ServerFrame::Ack {
            id: Some("e".into()),
            thread_id: thread_id.clone(),
            seq: 2
        }
    );
    let mut recipient = node.ws(&host.token).await;
    recipient
        .send(&ClientFrame::HideMessage {
            id: Some("h".into()),
            message_id: message.id.clone(),
        })
        .await;
    match answer(&mut recipient).await {
        ServerFrame::Error { id, code, .. } => {
            assert_eq!(
                (id.as_deref(), code),
                (Some("h"), protocol::ErrorCode::Forbidden)
            );
        }
        other => panic!("expected forbidden, got {other:?}"),
    }
    sender
        .send(&ClientFrame::HideMessage {
            id: Some("h2".into()),
            message_id: message.id.clone(),
        })
        .await;
    assert!(matches!(
        answer(&mut sender).await,
        ServerFrame::Ack { seq: 3, .. }
    ));
    let mut events = Vec::new();
    while events.len() < 3 {
        if let Some(ServerFrame::Event(push)) = watcher.recv_skipping_heartbeats().await {
            if push.topic == format!("thread:{thread_id}") && push.seq.is_some() {
                events.push((push.seq, push.event));
            }
        }
    }
    assert!(matches!(&events[0], (Some(1), Event::MessagePosted { .. })));
    assert!(
        matches!(&events[1], (Some(2), Event::MessageEdited { content: Some(c), .. }) if c == "hello")
    );
    assert!(
        matches!(&events[2], (Some(3), Event::MessageHidden { message_id }) if *message_id == message.id)
    );
    let (status, _) = send(
        &node,
        reqwest::Method::GET,
        &format!("/messaging-api/v1/messages/{}", message.id),
        &host.token,
        None,
    )
    .await;
    assert_eq!(status, 404, "hidden for participants");
}

#[actix_web::test]
async fn malformed_conversation_frames_are_refused_and_the_connection_stays() {
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let node = spawn_node().await;
    let (guest, host) = (node.user().await, node.user().await);
    let thread_id = thread(&node, &guest, &host).await;
    let mut device = node.ws(&guest.token).await;
    let cases = [
        format!("{{\"op\":\"post_message\",\"thread_id\":\"{thread_id}\",\"content\":\"no id\"}}"),
        format!("{{\"op\":\"post_message\",\"id\":\"x\",\"thread_id\":\"{thread_id}\",\"content\":\"\"}}"),
        format!("{{\"op\":\"post_message\",\"id\":\"y\",\"thread_id\":\"{thread_id}\",\"content\":\"a\",\"colour\":1}}"),
        format!("{{\"op\":\"post_message\",\"id\":\"z\",\"thread_id\":\"{thread_id}\",\"content\":\"a\",\"message_type\":\"video\"}}"),
        format!("{{\"op\":\"mark_read\",\"id\":\"m\",\"thread_id\":\"{thread_id}\",\"up_to_seq\":\"one\"}}"),
        "{\"op\":\"post_message\",\"id\":".to_owned(),
    ];
    for case in &cases {
        device.send_raw(WsMessage::text(case.clone())).await;
        match answer(&mut device).await {
            ServerFrame::Error { code, .. } => {
                assert_eq!(code, protocol::ErrorCode::BadRequest, "{case}")
            }
            other => panic!("{case}: expected bad_request, got {other:?}"),
        }
    }
    let (_, list) = send(
        &node,
        reqwest::Method::GET,
        &format!("/messaging-api/v1/threadmessages/{thread_id}"),
        &host.token,
        None,
    )
    .await;
    assert_eq!(list["rowCount"], 0, "nothing was posted");
    device
        .send(&ClientFrame::Ping {
            id: Some("still".into()),
        })
        .await;
    assert_eq!(
        answer(&mut device).await,
        ServerFrame::Pong {
            id: Some("still".into())
        }
    );
}

/// A reopen and a move of one thread at the same time: whatever their order, the thread ends
/// open on the new context and holds exactly that one, so a second open thread there is
/// refused and the old context is free.
#[actix_web::test]
async fn concurrent_reopen_and_move_leave_exactly_one_open_thread_per_context() {
    let node = spawn_node().await;
    for round in 0..5 {
        let (guest, host) = (node.user().await, node.user().await);
        let id = thread(&node, &guest, &host).await;
        let path = format!("/messaging-api/v1/messagethreads/{id}");
        let (status, _) = send(
            &node,
            reqwest::Method::PATCH,
            &path,
            &guest.token,
            Some(json!({"isOpen": false})),
        )
        .await;
        assert_eq!(status, 200);
        let listing = format!("listing-{round}");
        let (reopen, moved) = tokio::join!(
            send(
                &node,
                reqwest::Method::PATCH,
                &path,
                &guest.token,
                Some(json!({"isOpen": true}))
            ),
            send(
                &node,
                reqwest::Method::PATCH,
                &path,
                &host.token,
                Some(json!({"listingId": listing}))
            ),
        );
        assert_eq!((reopen.0, moved.0), (200, 200), "{reopen:?} {moved:?}");
        let (_, now) = send(&node, reqwest::Method::GET, &path, &guest.token, None).await;
        assert_eq!(now["messageThread"]["isOpen"], true);
        assert_eq!(now["messageThread"]["listingId"], listing.as_str());
        let create = |listing: Option<&str>| {
            send(
                &node,
                reqwest::Method::POST,
                "/messaging-api/v1/messagethreads",
                &guest.token,
                Some(json!({"guestId": guest.id, "hostId": host.id, "listingId": listing})),
            )
        };
        let (status, body) = create(Some(&listing)).await;
        assert_eq!(status, 409, "round {round}: {body}");
        let (status, body) = create(None).await;
        assert_eq!(
            status, 201,
            "round {round}: the old context is free: {body}"
        );
    }
}

#[actix_web::test]
async fn a_topic_unsubscribed_then_resumed_from_zero_replays_what_was_already_seen() {
    let node = spawn_node().await;
    let (guest, host) = (node.user().await, node.user().await);
    let thread_id = thread(&node, &guest, &host).await;
    let mut device = node.ws(&guest.token).await;
    assert!(matches!(
        subscribe(&mut device, &thread_id, None).await,
        ServerFrame::Subscribed { .. }
    ));
    assert_eq!(post(&node, &host, &thread_id, "first").await.0, 201);
    assert_eq!(next_message(&mut device).await, (1, "first".to_owned()));
    let topic = format!("thread:{thread_id}");
    device
        .send(&ClientFrame::Unsubscribe {
            id: Some("u".into()),
            topic: topic.clone(),
        })
        .await;
    loop {
        match device.recv_skipping_heartbeats().await {
            Some(ServerFrame::Unsubscribed { topic: t, .. }) => {
                assert_eq!(t, topic);
                break;
            }
            Some(ServerFrame::Event(_)) => continue,
            other => panic!("expected unsubscribed, got {other:?}"),
        }
    }
    // Unsubscribing forgot what this connection was sent on the topic, so a resume from zero
    // replays message 1 rather than dropping it as a duplicate.
    assert!(matches!(
        subscribe(&mut device, &thread_id, Some(0)).await,
        ServerFrame::Subscribed { .. }
    ));
    assert_eq!(next_message(&mut device).await, (1, "first".to_owned()));
    assert_eq!(post(&node, &host, &thread_id, "second").await.0, 201);
    assert_eq!(next_message(&mut device).await, (2, "second".to_owned()));
}
