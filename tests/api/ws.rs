//! The WebSocket gateway: authentication, codecs, heartbeats, limits, slow consumers, session
//! revocation, shutdown.

use protocol::{close, ClientFrame, Codec, ErrorCode, Event, ServerFrame};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{spawn_node, spawn_node_with, Ended};

#[actix_web::test]
async fn a_token_in_the_query_opens_a_connection_with_hello_then_heartbeats() {
    let node = spawn_node_with(|s| s.ws_heartbeat_ms = 100).await;
    let user = node.user().await;
    let mut ws = node
        .ws_connect(
            &format!("{}?access_token={}", node.ws_address, user.token),
            None,
        )
        .await
        .unwrap();
    match ws.recv().await {
        Some(ServerFrame::Hello(hello)) => {
            assert_eq!(hello.user_id, user.id);
            assert_eq!(hello.session_id, user.session_id);
            assert_eq!(hello.heartbeat_ms, 100);
            assert_eq!(hello.user_topic, format!("user:{}", user.id));
        }
        other => panic!("expected hello, got {other:?}"),
    }
    match ws.recv().await {
        Some(ServerFrame::Heartbeat { ts }) => assert!(ts > 0),
        other => panic!("expected a heartbeat, got {other:?}"),
    }
}

#[actix_web::test]
async fn the_token_may_come_in_a_header_or_the_first_frame() {
    let node = spawn_node().await;
    let user = node.user().await;
    // Authorization header.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = node.ws_address.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", user.token).parse().unwrap(),
    );
    let (mut stream, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    use futures_util::StreamExt;
    let first = stream.next().await.unwrap().unwrap();
    assert!(
        first.to_text().unwrap().contains("\"type\":\"hello\""),
        "{first:?}"
    );
    // First frame.
    let mut ws = node.ws_connect(&node.ws_address, None).await.unwrap();
    ws.send(&ClientFrame::Auth {
        id: Some("a1".into()),
        token: user.token.clone(),
    })
    .await;
    assert!(matches!(ws.recv().await, Some(ServerFrame::Hello(_))));
    ws.send(&ClientFrame::Ping {
        id: Some("p1".into()),
    })
    .await;
    assert_eq!(
        ws.recv_skipping_heartbeats().await,
        Some(ServerFrame::Pong {
            id: Some("p1".into())
        })
    );
}

#[actix_web::test]
async fn bad_credentials_are_refused() {
    let node = spawn_node().await;
    // At upgrade: an HTTP 401 in the marketplace error shape, no WebSocket.
    let refused = node
        .ws_connect(
            &format!("{}?access_token=not.a.token", node.ws_address),
            None,
        )
        .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected an HTTP 401, got {:?}", other.map(|_| ())),
    }
    // In the first frame: an error frame, then close 4001.
    let mut ws = node.ws_connect(&node.ws_address, None).await.unwrap();
    ws.send(&ClientFrame::Auth {
        id: Some("a".into()),
        token: "nope".into(),
    })
    .await;
    match ws.recv().await {
        Some(ServerFrame::Error { id, code, .. }) => {
            assert_eq!(id.as_deref(), Some("a"));
            assert_eq!(code, ErrorCode::Unauthorized);
        }
        other => panic!("expected an error frame, got {other:?}"),
    }
    assert_eq!(ws.ended().await, Ended::Closed(Some(close::UNAUTHORIZED)));
    // Anything but auth first: refused too.
    let mut ws = node.ws_connect(&node.ws_address, None).await.unwrap();
    ws.send(&ClientFrame::Ping { id: None }).await;
    assert!(matches!(
        ws.recv().await,
        Some(ServerFrame::Error {
            code: ErrorCode::Unauthorized,
            ..
        })
    ));
    assert_eq!(ws.ended().await, Ended::Closed(Some(close::UNAUTHORIZED)));
}

#[actix_web::test]
async fn a_silent_unauthenticated_connection_is_closed() {
    let node = spawn_node_with(|s| s.ws_auth_timeout_ms = 200).await;
    let mut ws = node.ws_connect(&node.ws_address, None).await.unwrap();
    assert_eq!(
        ws.ended().await,
        Ended::Closed(Some(close::POLICY_VIOLATION))
    );
}

#[actix_web::test]
async fn messagepack_is_negotiated_by_subprotocol() {
    let node = spawn_node().await;
    let user = node.user().await;
    let url = format!("{}?access_token={}", node.ws_address, user.token);
    let mut ws = node
        .ws_connect(&url, Some("node.v1.msgpack"))
        .await
        .unwrap();
    assert_eq!(ws.codec, Codec::MsgPack);
    assert!(matches!(ws.recv().await, Some(ServerFrame::Hello(_))));
    ws.send(&ClientFrame::Ping {
        id: Some("m1".into()),
    })
    .await;
    assert_eq!(
        ws.recv_skipping_heartbeats().await,
        Some(ServerFrame::Pong {
            id: Some("m1".into())
        })
    );
    // A text frame on a MessagePack connection breaks the protocol.
    ws.send_raw(Message::text("{\"op\":\"ping\"}")).await;
    assert_eq!(
        ws.ended().await,
        Ended::Closed(Some(close::UNSUPPORTED_DATA))
    );
    // Naming only subprotocols we do not speak is refused before the upgrade.
    let refused = node.ws_connect(&url, Some("chat.v9")).await;
    assert!(
        matches!(refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 400)
    );
}

#[actix_web::test]
async fn malformed_frames_get_error_frames_and_the_connection_lives_on() {
    let node = spawn_node().await;
    let user = node.user().await;
    let mut ws = node.ws(&user.token).await;
    for bad in [
        "not json",
        "{\"op\":\"ping\",\"extra\":true}",
        "{\"op\":\"launch_rockets\"}",
        "{\"op\":\"subscribe\",\"topic\":5}",
        "[]",
    ] {
        ws.send_raw(Message::text(bad)).await;
        match ws.recv_skipping_heartbeats().await {
            Some(ServerFrame::Error { code, message, .. }) => {
                assert_eq!(code, ErrorCode::BadRequest, "{bad}");
                assert!(!message.is_empty());
            }
            other => panic!("{bad}: expected an error frame, got {other:?}"),
        }
    }
    ws.send(&ClientFrame::Ping {
        id: Some("still".into()),
    })
    .await;
    assert_eq!(
        ws.recv_skipping_heartbeats().await,
        Some(ServerFrame::Pong {
            id: Some("still".into())
        })
    );
}

#[actix_web::test]
async fn an_oversized_frame_closes_with_1009() {
    let node = spawn_node_with(|s| s.ws_frame_bytes_max = 1024).await;
    let user = node.user().await;
    let mut ws = node.ws(&user.token).await;
    let big = format!("{{\"op\":\"ping\",\"id\":\"{}\"}}", "x".repeat(4096));
    ws.send_raw(Message::text(big)).await;
    assert_eq!(
        ws.ended().await,
        Ended::Closed(Some(close::MESSAGE_TOO_BIG))
    );
}

#[actix_web::test]
async fn an_idle_connection_is_closed_with_4000() {
    // Heartbeats are slower than the idle timeout, so the client never answers a ping.
    let node = spawn_node_with(|s| {
        s.ws_idle_timeout_ms = 300;
        s.ws_heartbeat_ms = 60_000;
    })
    .await;
    let user = node.user().await;
    let mut ws = node.ws(&user.token).await;
    assert_eq!(ws.ended().await, Ended::Closed(Some(close::IDLE_TIMEOUT)));
}

#[actix_web::test]
async fn subscriptions_are_limited_to_what_the_user_may_see() {
    let node = spawn_node().await;
    let user = node.user().await;
    let other = node.user().await;
    let mut ws = node.ws(&user.token).await;
    let own = format!("user:{}", user.id);
    ws.send(&ClientFrame::Subscribe {
        id: Some("s1".into()),
        topic: own.clone(),
        since: None,
    })
    .await;
    assert_eq!(
        ws.recv_skipping_heartbeats().await,
        Some(ServerFrame::Subscribed {
            id: Some("s1".into()),
            topic: own.clone(),
            resume: None
        })
    );
    ws.send(&ClientFrame::Subscribe {
        id: Some("s2".into()),
        topic: format!("user:{}", other.id),
        since: None,
    })
    .await;
    assert!(matches!(
        ws.recv_skipping_heartbeats().await,
        Some(ServerFrame::Error { code: ErrorCode::Forbidden, id: Some(id), .. }) if id == "s2"
    ));
    ws.send(&ClientFrame::Subscribe {
        id: Some("s3".into()),
        topic: "planet:mars".into(),
        since: None,
    })
    .await;
    assert!(matches!(
        ws.recv_skipping_heartbeats().await,
        Some(ServerFrame::Error {
            code: ErrorCode::BadRequest,
            ..
        })
    ));
    ws.send(&ClientFrame::Unsubscribe {
        id: Some("u1".into()),
        topic: own,
    })
    .await;
    assert!(matches!(
        ws.recv_skipping_heartbeats().await,
        Some(ServerFrame::Error {
            code: ErrorCode::BadRequest,
            ..
        })
    ));
}

#[actix_web::test]
async fn connections_per_user_are_limited_and_freed_when_dropped() {
    let node = spawn_node_with(|s| s.ws_connections_per_user_max = 2).await;
    let user = node.user().await;
    let first = node.ws(&user.token).await;
    let _second = node.ws(&user.token).await;
    let url = format!("{}?access_token={}", node.ws_address, user.token);
    let mut third = node.ws_connect(&url, None).await.unwrap();
    assert_eq!(
        third.ended().await,
        Ended::Closed(Some(close::TOO_MANY_CONNECTIONS))
    );
    // Dropping a connection without a close handshake frees its place.
    drop(first);
    let mut admitted = None;
    for _ in 0..100 {
        let mut next = node.ws_connect(&url, None).await.unwrap();
        match next.recv().await {
            Some(ServerFrame::Hello(_)) => {
                admitted = Some(next);
                break;
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    assert!(
        admitted.is_some(),
        "a dropped connection's place was never freed"
    );
    // Other users are not affected by this user's limit.
    let other = node.user().await;
    let _theirs = node.ws(&other.token).await;
}

#[actix_web::test]
async fn logout_reaches_every_device_and_closes_only_that_session() {
    let node = spawn_node().await;
    let phone = node.user().await;
    let laptop = node.log_in_again(&phone.email, &phone.password).await;
    let mut phone_ws = node.ws(&phone.token).await;
    let mut laptop_ws = node.ws(&laptop.token).await;
    let response = node
        .http
        .post(node.url("/auth-api/logout"))
        .bearer_auth(&phone.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let revoked = Event::SessionRevoked {
        session_id: phone.session_id.clone(),
    };
    for ws in [&mut phone_ws, &mut laptop_ws] {
        match ws.recv_skipping_heartbeats().await {
            Some(ServerFrame::Event(push)) => {
                assert_eq!(push.topic, format!("user:{}", phone.id));
                assert_eq!(push.event, revoked);
            }
            other => panic!("expected the revocation event, got {other:?}"),
        }
    }
    assert_eq!(
        phone_ws.ended().await,
        Ended::Closed(Some(close::UNAUTHORIZED))
    );
    laptop_ws
        .send(&ClientFrame::Ping {
            id: Some("alive".into()),
        })
        .await;
    assert_eq!(
        laptop_ws.recv_skipping_heartbeats().await,
        Some(ServerFrame::Pong {
            id: Some("alive".into())
        })
    );
}

#[actix_web::test]
async fn a_slow_consumer_is_closed_with_4008_and_others_are_unaffected() {
    let node = spawn_node_with(|s| s.ws_send_queue_max = 8).await;
    let slow_user = node.user().await;
    let calm_user = node.user().await;
    let mut calm = node.ws(&calm_user.token).await;
    // A client with a tiny receive buffer that sends pings and never reads the pongs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = node.address.trim_start_matches("http://").to_owned();
    let tcp = socket.connect(address.parse().unwrap()).await.unwrap();
    let url = format!("{}?access_token={}", node.ws_address, slow_user.token);
    let (mut slow, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
        .await
        .unwrap();
    use futures_util::{SinkExt, StreamExt};
    let ping =
        Message::text("{\"op\":\"ping\",\"id\":\"flood-flood-flood-flood-flood-flood-flood\"}");
    let mut sent = 0usize;
    for _ in 0..200_000 {
        let write =
            tokio::time::timeout(std::time::Duration::from_secs(2), slow.send(ping.clone())).await;
        match write {
            Ok(Ok(())) => sent += 1,
            _ => break,
        }
    }
    // The calm client is served meanwhile.
    calm.send(&ClientFrame::Ping {
        id: Some("calm".into()),
    })
    .await;
    assert_eq!(
        calm.recv_skipping_heartbeats().await,
        Some(ServerFrame::Pong {
            id: Some("calm".into())
        })
    );
    // Now read what the slow client was sent: some pongs, then close 4008.
    let mut pongs = 0usize;
    let code = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(20), slow.next()).await {
            Ok(Some(Ok(Message::Text(text)))) if text.contains("pong") => pongs += 1,
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            other => panic!("expected a close frame, got {other:?} after {pongs} pongs"),
        }
    };
    assert_eq!(code, Some(close::SLOW_CONSUMER));
    assert!(
        pongs < sent,
        "the slow client was sent every pong: it was never cut off"
    );
    let metrics = node.metrics().await;
    assert!(
        metrics.contains("node_ws_closed_total{code=\"4008\"} 1"),
        "{metrics}"
    );
}

#[actix_web::test]
async fn shutdown_closes_sockets_with_going_away() {
    let node = spawn_node().await;
    let user = node.user().await;
    let mut ws = node.ws(&user.token).await;
    node.shutdown.shutdown();
    assert_eq!(ws.ended().await, Ended::Closed(Some(close::GOING_AWAY)));
    let health = node.url("/health");
    let http = node.http.clone();
    node.stopped.await.unwrap().unwrap();
    assert!(http.get(health).send().await.is_err(), "still accepting");
}

#[actix_web::test]
async fn a_websocket_ping_is_answered_with_its_payload() {
    use futures_util::StreamExt;
    let node = spawn_node().await;
    let user = node.user().await;
    let mut ws = node.ws(&user.token).await;
    ws.send_raw(Message::Ping(b"are you there".to_vec().into()))
        .await;
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), ws.stream.next())
            .await
            .expect("a pong within the wait")
            .expect("the connection stays open")
            .unwrap();
        match message {
            Message::Pong(payload) => {
                assert_eq!(&payload[..], b"are you there");
                break;
            }
            Message::Close(frame) => panic!("closed instead of a pong: {frame:?}"),
            _ => continue,
        }
    }
}
