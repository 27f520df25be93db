//! Wallet ops over the WebSocket: the REST semantics and idempotency, pushes to both parties,
//! and resume of the user feed after a reconnect.

use protocol::{ClientFrame, Event, ServerFrame, WalletAnswer};
use serde_json::{json, Value};

use crate::helpers::{spawn_node, TestNode, TestUser, WsClient};
use crate::redis_pause::RedisPause;

async fn deposit(node: &TestNode, user: &TestUser, amount: &str) {
    let body = json!({"meta": {"uuid": "ws-wallet", "client_version": "1.0",
        "request_id": uuid::Uuid::new_v4().to_string(), "evg_auth_token": user.token},
        "amount": amount});
    let answer: Value = node
        .post_json("/rest/v01/deposit", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "success", "{answer}");
}

/// The next `wallet` answer, skipping pushes.
async fn wallet_answer(client: &mut WsClient) -> WalletAnswer {
    loop {
        match client.recv_skipping_heartbeats().await {
            Some(ServerFrame::Wallet(answer)) => return answer,
            Some(ServerFrame::Event(_)) => {}
            other => panic!("expected a wallet answer, got {other:?}"),
        }
    }
}

/// The next `error` frame's code, skipping pushes (balance events may come first).
async fn next_error(client: &mut WsClient) -> protocol::ErrorCode {
    loop {
        match client.recv_skipping_heartbeats().await {
            Some(ServerFrame::Error { code, .. }) => return code,
            Some(ServerFrame::Event(_)) => {}
            other => panic!("expected an error frame, got {other:?}"),
        }
    }
}

fn pay(id: &str, payee: &TestUser, amount: &str) -> ClientFrame {
    ClientFrame::Pay {
        id: Some(id.into()),
        payee: format!("user:{}", payee.id),
        amount: amount.into(),
        currency: None,
        description: Some("lunch".into()),
        transaction_id: None,
    }
}

async fn available(client: &mut WsClient) -> String {
    client
        .send(&ClientFrame::Balance {
            id: Some("b".into()),
        })
        .await;
    let answer = wallet_answer(client).await;
    answer
        .balances
        .iter()
        .find(|b| b.currency == "EVG")
        .map(|b| b.available.clone())
        .unwrap_or_else(|| "0.00".into())
}

#[actix_web::test]
async fn a_payment_over_the_socket_is_idempotent_by_frame_id() {
    let node = spawn_node().await;
    let (payor, payee) = (node.user().await, node.user().await);
    deposit(&node, &payor, "100").await;
    let mut phone = node.ws(&payor.token).await;
    let mut laptop = node.ws(&payor.token).await;
    phone.send(&pay("pay-1", &payee, "30")).await;
    laptop.send(&pay("pay-1", &payee, "30")).await;
    let (first, second) = (
        wallet_answer(&mut phone).await,
        wallet_answer(&mut laptop).await,
    );
    assert_eq!(first.status, "success", "{first:?}");
    assert_eq!(
        first.transfer_id, second.transfer_id,
        "one transfer, two identical answers"
    );
    assert_eq!(first.balances, second.balances);
    phone.send(&pay("pay-1", &payee, "31")).await;
    assert_eq!(
        next_error(&mut phone).await,
        protocol::ErrorCode::BadRequest
    );
    assert_eq!(available(&mut phone).await, "70.00");
    let mut payee_device = node.ws(&payee.token).await;
    assert_eq!(available(&mut payee_device).await, "30.00");
    phone.send(&pay("pay-2", &payee, "71")).await;
    assert_eq!(wallet_answer(&mut phone).await.status, "insufficient_funds");
    phone
        .send(&ClientFrame::Pay {
            id: None,
            payee: format!("user:{}", payee.id),
            amount: "1".into(),
            currency: None,
            description: None,
            transaction_id: None,
        })
        .await;
    assert_eq!(
        next_error(&mut phone).await,
        protocol::ErrorCode::BadRequest
    );
}

/// A payment whose commit got no answer, though it committed, is answered as a success where
/// the database can say what became of it (PostgreSQL), and otherwise as unknown (an
/// `internal` error that does not claim nothing was applied). The payee's wallet, live for its
/// device, shows the credit either way, and the retry with the same frame id answers the
/// payment's outcome without paying again.
#[actix_web::test]
async fn a_payment_whose_commit_is_unconfirmed_is_answered_as_unknown_over_the_socket() {
    let node = spawn_node().await;
    let (payor, payee) = (node.user().await, node.user().await);
    deposit(&node, &payor, "100").await;
    let mut phone = node.ws(&payor.token).await;
    let mut payee_device = node.ws(&payee.token).await;
    assert_eq!(available(&mut payee_device).await, "0.00");
    node.faults.unconfirm_next_batches(1);
    phone.send(&pay("pay-u", &payee, "30")).await;
    if node.database_url.starts_with("postgres") {
        let settled = wallet_answer(&mut phone).await;
        assert_eq!(settled.status, "success", "{settled:?}");
    } else {
        let (code, message) = next_error_with_message(&mut phone, "pay-u").await;
        assert_eq!(code, protocol::ErrorCode::Internal);
        assert_eq!(
            message,
            "the outcome is not known: the change may have been applied; retry with the same id \
             to learn it"
        );
    }
    assert_eq!(available(&mut payee_device).await, "30.00");
    phone.send(&pay("pay-u", &payee, "30")).await;
    let retried = wallet_answer(&mut phone).await;
    assert_eq!(retried.status, "success", "{retried:?}");
    assert_eq!(available(&mut phone).await, "70.00");
    assert_eq!(available(&mut payee_device).await, "30.00");
}

/// The next `error` frame, which must answer `id`: its code and message (pushes skipped).
async fn next_error_with_message(client: &mut WsClient, id: &str) -> (protocol::ErrorCode, String) {
    loop {
        match client.recv_skipping_heartbeats().await {
            Some(ServerFrame::Error {
                id: answered,
                code,
                message,
            }) => {
                assert_eq!(answered.as_deref(), Some(id));
                return (code, message);
            }
            Some(ServerFrame::Event(_)) => {}
            other => panic!("expected an error frame, got {other:?}"),
        }
    }
}

#[actix_web::test]
async fn requests_are_rejected_and_cancelled_over_the_socket_once() {
    let node = spawn_node().await;
    let (payor, requester) = (node.user().await, node.user().await);
    let mut asker = node.ws(&requester.token).await;
    let mut payer = node.ws(&payor.token).await;
    asker
        .send(&ClientFrame::RequestPayment {
            id: Some("r1".into()),
            payor: format!("user:{}", payor.id),
            amount: "12".into(),
            currency: None,
            description: "tickets".into(),
        })
        .await;
    let request = wallet_answer(&mut asker).await;
    assert_eq!(request.status, "success");
    let transaction_id = request.transaction_id.unwrap();
    // The payor's device is told of the request.
    loop {
        if let Some(ServerFrame::Event(push)) = payer.recv_skipping_heartbeats().await {
            if let Event::PaymentRequested {
                transaction_id: t,
                amount,
                ..
            } = push.event
            {
                assert_eq!(
                    (t.as_str(), amount.as_str()),
                    (transaction_id.as_str(), "12.00")
                );
                assert!(push.seq.is_some());
                break;
            }
        }
    }
    payer
        .send(&ClientFrame::RejectPayment {
            id: Some("x1".into()),
            transaction_id: transaction_id.clone(),
        })
        .await;
    assert_eq!(wallet_answer(&mut payer).await.status, "success");
    asker
        .send(&ClientFrame::CancelRequest {
            id: Some("c1".into()),
            transaction_id: transaction_id.clone(),
        })
        .await;
    assert_eq!(
        wallet_answer(&mut asker).await.status,
        "error",
        "already rejected"
    );
    // Paying a rejected request moves nothing.
    deposit(&node, &payor, "50").await;
    payer
        .send(&ClientFrame::Pay {
            id: Some("p1".into()),
            payee: format!("user:{}", requester.id),
            amount: "12".into(),
            currency: None,
            description: None,
            transaction_id: Some(transaction_id),
        })
        .await;
    assert_eq!(wallet_answer(&mut payer).await.status, "error");
    assert_eq!(available(&mut payer).await, "50.00");
}

#[actix_web::test]
async fn a_device_that_reconnects_gets_the_wallet_events_it_missed_once_in_order() {
    let node = spawn_node().await;
    let (payor, payee) = (node.user().await, node.user().await);
    deposit(&node, &payor, "100").await;
    let mut device = node.ws(&payee.token).await;
    let mut sender = node.ws(&payor.token).await;
    sender.send(&pay("first", &payee, "1")).await;
    assert_eq!(wallet_answer(&mut sender).await.status, "success");
    let last_seen = loop {
        if let Some(ServerFrame::Event(push)) = device.recv_skipping_heartbeats().await {
            if let Event::PaymentReceived { .. } = push.event {
                break push.seq.unwrap();
            }
        }
    };
    drop(device);
    for i in 0..5 {
        sender.send(&pay(&format!("missed-{i}"), &payee, "2")).await;
        assert_eq!(wallet_answer(&mut sender).await.status, "success");
    }
    let url = format!(
        "{}?access_token={}&since={last_seen}",
        node.ws_address, payee.token
    );
    let mut back = node.ws_connect(&url, None).await.unwrap();
    match back.recv().await {
        Some(ServerFrame::Hello(hello)) => {
            let resume = hello.resume.expect("a resume report");
            assert!(!resume.gap_too_large);
            assert_eq!(resume.replayed, 5);
        }
        other => panic!("expected hello, got {other:?}"),
    }
    let mut seqs = Vec::new();
    while seqs.len() < 5 {
        if let Some(ServerFrame::Event(push)) = back.recv_skipping_heartbeats().await {
            if let (Event::PaymentReceived { amount, .. }, Some(seq)) = (push.event, push.seq) {
                assert_eq!(amount, "2.00");
                seqs.push(seq);
            }
        }
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert!(seqs[0] > last_seen);
    // Live delivery goes on after the replay.
    sender.send(&pay("live", &payee, "3")).await;
    assert_eq!(wallet_answer(&mut sender).await.status, "success");
    loop {
        if let Some(ServerFrame::Event(push)) = back.recv_skipping_heartbeats().await {
            if let Event::PaymentReceived { amount, .. } = push.event {
                assert_eq!(amount, "3.00", "nothing replayed twice");
                break;
            }
        }
    }
}

/// With Redis as the bus and Redis's writes paused (as a stalled Redis would hold them), a
/// payee connected to the node that took the payment is pushed it at once: a node delivers
/// its own pushes itself, and sends Redis only the copies for other nodes. Without
/// `TEST_REDIS_URL` the node's bus is in-process and there is no Redis to pause.
#[actix_web::test]
async fn a_payee_on_the_paying_node_is_pushed_the_payment_while_redis_is_paused() {
    let Ok(redis_url) = std::env::var("TEST_REDIS_URL") else {
        return;
    };
    let node = spawn_node().await;
    let (payor, payee) = (node.user().await, node.user().await);
    deposit(&node, &payor, "100").await;
    let mut payee_device = node.ws(&payee.token).await;
    let mut phone = node.ws(&payor.token).await;
    // Shorter than the bus's 5 s reply timeout, so the node keeps its Redis connection.
    let pause = std::time::Duration::from_secs(3);
    let paused = RedisPause::start(&redis_url, pause).await;

    phone.send(&pay("while-paused", &payee, "12")).await;
    let answer = wallet_answer(&mut phone).await;
    assert_eq!(answer.status, "success", "{answer:?}");
    let pushed = tokio::time::timeout(pause / 2, async {
        loop {
            if let Some(ServerFrame::Event(push)) = payee_device.recv_skipping_heartbeats().await {
                if let Event::PaymentReceived { transfer_id, .. } = push.event {
                    return transfer_id;
                }
            }
        }
    })
    .await
    .expect("the payee's push waited for Redis");
    assert_eq!(Some(pushed), answer.transfer_id);
    assert!(
        paused.held(),
        "the push came after the pause ended, so this proved nothing"
    );
    paused.end().await;
}
