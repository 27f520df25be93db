//! The bus: fanout of committed pushes, in-process and over Redis.
//!
//! The Redis tests run when `TEST_REDIS_URL` is set and fail if that Redis is unreachable;
//! without it (the embedded-defaults run) they return at once.
#![expect(clippy::expect_used, reason = "a test fails loudly on a broken setup")]

#[path = "support/redis_pause.rs"]
mod redis_pause;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use node::bus::{BusError, Delivery, Hub, Subscriber, SubscriberId};
use protocol::{Event, Push};
use redis_pause::RedisPause;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Longest wait for any one delivery or condition.
const WAIT: Duration = Duration::from_secs(10);
/// Pushes per ordering test.
const PUSHES: u64 = 1000;

/// A subscriber that queues deliveries for the test to read, like a session's send queue.
struct Probe {
    tx: mpsc::Sender<Delivery>,
}

impl Subscriber for Probe {
    fn deliver(&self, push: &Delivery) -> bool {
        self.tx.try_send(Arc::clone(push)).is_ok()
    }
}

/// A probe with room for every push a test sends, so it never refuses.
fn probe() -> (Arc<Probe>, mpsc::Receiver<Delivery>) {
    let (tx, rx) = mpsc::channel(4 * PUSHES as usize);
    (Arc::new(Probe { tx }), rx)
}

/// A subscriber that refuses every delivery (gone or overloaded), counting the offers.
#[derive(Default)]
struct Refuser {
    offers: AtomicUsize,
}

impl Subscriber for Refuser {
    fn deliver(&self, _push: &Delivery) -> bool {
        self.offers.fetch_add(1, Ordering::SeqCst);
        false
    }
}

fn push(topic: &str, seq: u64) -> Push {
    Push {
        topic: topic.to_owned(),
        seq: Some(seq),
        event: Event::SessionRevoked {
            session_id: format!("session-{seq}"),
        },
    }
}

/// An unsequenced push, used to probe whether a subscription is live.
fn marker(topic: &str) -> Push {
    Push {
        topic: topic.to_owned(),
        seq: None,
        event: Event::SessionRevoked {
            session_id: "marker".to_owned(),
        },
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

async fn next(rx: &mut mpsc::Receiver<Delivery>) -> Delivery {
    timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for a delivery")
        .expect("the subscriber's queue closed")
}

/// Receive sequenced pushes `first..=last` of `topic`, in order, skipping markers.
async fn expect_in_order(rx: &mut mpsc::Receiver<Delivery>, topic: &str, first: u64, last: u64) {
    let mut expected = first;
    while expected <= last {
        let push = next(rx).await;
        assert_eq!(push.topic, topic);
        let Some(seq) = push.seq else { continue };
        assert_eq!(seq, expected, "pushes out of order");
        expected += 1;
    }
}

async fn publish_range(hub: &Hub, topic: &str, first: u64, last: u64) {
    for seq in first..=last {
        hub.publish(push(topic, seq)).await.expect("publish");
    }
}

// ---- in-process ----

#[tokio::test]
async fn in_process_delivers_in_order_to_every_subscriber_of_the_topic() {
    let hub = Hub::in_process("node-a".to_owned());
    assert_eq!(hub.backend(), "in-process");
    hub.health()
        .await
        .expect("in-process bus is always healthy");
    let (first, mut first_rx) = probe();
    let (second, mut second_rx) = probe();
    let (other, mut other_rx) = probe();
    hub.subscribe("thread:1", SubscriberId(1), first)
        .await
        .expect("subscribe");
    hub.subscribe("thread:1", SubscriberId(2), second)
        .await
        .expect("subscribe");
    hub.subscribe("thread:2", SubscriberId(3), other)
        .await
        .expect("subscribe");
    assert_eq!(hub.stats(), (2, 3));

    publish_range(&hub, "thread:1", 1, PUSHES).await;

    expect_in_order(&mut first_rx, "thread:1", 1, PUSHES).await;
    expect_in_order(&mut second_rx, "thread:1", 1, PUSHES).await;
    // In-process delivery completes inside `publish`: whatever was due has arrived.
    assert!(
        other_rx.try_recv().is_err(),
        "another topic's subscriber got a push"
    );
}

#[tokio::test]
async fn in_process_shares_one_allocation_per_push() {
    let hub = Hub::in_process("node-a".to_owned());
    let (first, mut first_rx) = probe();
    let (second, mut second_rx) = probe();
    hub.subscribe("user:1", SubscriberId(1), first)
        .await
        .expect("subscribe");
    hub.subscribe("user:1", SubscriberId(2), second)
        .await
        .expect("subscribe");
    hub.publish(push("user:1", 1)).await.expect("publish");
    let (a, b) = (next(&mut first_rx).await, next(&mut second_rx).await);
    assert!(Arc::ptr_eq(&a, &b));
}

#[tokio::test]
async fn in_process_unsubscribe_stops_delivery() {
    let hub = Hub::in_process("node-a".to_owned());
    let (staying, mut staying_rx) = probe();
    let (leaving, mut leaving_rx) = probe();
    hub.subscribe("user:1", SubscriberId(1), staying)
        .await
        .expect("subscribe");
    hub.subscribe(
        "user:1",
        SubscriberId(2),
        Arc::clone(&leaving) as Arc<dyn Subscriber>,
    )
    .await
    .expect("subscribe");
    hub.subscribe("user:2", SubscriberId(2), leaving)
        .await
        .expect("subscribe");

    hub.unsubscribe("user:1", SubscriberId(2)).await;
    assert_eq!(hub.stats(), (2, 2));
    hub.publish(push("user:1", 1)).await.expect("publish");
    expect_in_order(&mut staying_rx, "user:1", 1, 1).await;
    assert!(
        leaving_rx.try_recv().is_err(),
        "delivered after unsubscribe"
    );

    // Still subscribed to its other topic until the connection closes.
    hub.publish(push("user:2", 1)).await.expect("publish");
    expect_in_order(&mut leaving_rx, "user:2", 1, 1).await;
    hub.unsubscribe_all(SubscriberId(2)).await;
    hub.publish(push("user:2", 2)).await.expect("publish");
    assert!(
        leaving_rx.try_recv().is_err(),
        "delivered after unsubscribe_all"
    );
    assert_eq!(hub.stats(), (1, 1));

    hub.unsubscribe("user:1", SubscriberId(1)).await;
    assert_eq!(hub.stats(), (0, 0));
}

#[tokio::test]
async fn in_process_drops_a_subscriber_that_refuses() {
    let hub = Hub::in_process("node-a".to_owned());
    let refuser = Arc::new(Refuser::default());
    let (healthy, mut healthy_rx) = probe();
    for topic in ["user:1", "thread:1"] {
        hub.subscribe(
            topic,
            SubscriberId(9),
            Arc::clone(&refuser) as Arc<dyn Subscriber>,
        )
        .await
        .expect("subscribe");
    }
    hub.subscribe("user:1", SubscriberId(1), healthy)
        .await
        .expect("subscribe");

    hub.publish(push("user:1", 1)).await.expect("publish");
    assert_eq!(refuser.offers.load(Ordering::SeqCst), 1);
    // Dropped from every topic, not only the one it refused.
    assert_eq!(hub.stats(), (1, 1));
    hub.publish(push("user:1", 2)).await.expect("publish");
    hub.publish(push("thread:1", 1)).await.expect("publish");
    assert_eq!(refuser.offers.load(Ordering::SeqCst), 1);
    expect_in_order(&mut healthy_rx, "user:1", 1, 2).await;
}

#[tokio::test]
async fn subscribe_rejects_empty_and_oversized_topics() {
    let hub = Hub::in_process("node-a".to_owned());
    let (sub, _rx) = probe();
    let long = "t".repeat(node::bus::TOPIC_BYTES_MAX + 1);
    for topic in ["", long.as_str()] {
        let result = hub
            .subscribe(
                topic,
                SubscriberId(1),
                Arc::clone(&sub) as Arc<dyn Subscriber>,
            )
            .await;
        assert!(
            matches!(result, Err(BusError::InvalidTopic(_))),
            "{result:?}"
        );
    }
    assert_eq!(hub.stats(), (0, 0));
}

#[tokio::test]
async fn hub_is_shareable_and_its_futures_can_be_spawned() {
    fn shareable<T: Send + Sync>(_: &T) {}
    fn spawnable<F: std::future::Future + Send>(_: F) {}
    let hub = Hub::in_process("node-a".to_owned());
    let (sub, _rx) = probe();
    shareable(&*hub);
    // Built, never polled: only their types matter here.
    spawnable(hub.subscribe("user:1", SubscriberId(1), sub));
    spawnable(hub.unsubscribe("user:1", SubscriberId(1)));
    spawnable(hub.unsubscribe_all(SubscriberId(1)));
    spawnable(hub.publish(push("user:1", 1)));
    spawnable(hub.health());
    spawnable(Hub::redis("redis://127.0.0.1:1", "node-a".to_owned()));
}

// ---- Redis ----

/// The Redis URL for this run, or `None` when `TEST_REDIS_URL` is unset: the embedded-defaults
/// run has no Redis, and the Redis tests then return at once. When it is set, Redis must be
/// usable — see `redis_hub`.
fn redis_url() -> Option<String> {
    std::env::var("TEST_REDIS_URL").ok()
}

/// A Redis hub, failing the test if `TEST_REDIS_URL` is set but Redis cannot be used: a
/// configured Redis that is down is a broken setup, never a reason to skip.
async fn redis_hub(url: &str, node_id: &str) -> Arc<Hub> {
    match Hub::redis(url, node_id.to_owned()).await {
        Ok(hub) => {
            assert_eq!(hub.backend(), "redis");
            hub
        }
        Err(error) => panic!("TEST_REDIS_URL={url} is set but the Redis bus failed: {error}"),
    }
}

async fn redis_admin(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("TEST_REDIS_URL")
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection to TEST_REDIS_URL")
}

/// How many connections are subscribed to `topic`'s channel.
async fn subscribers_in_redis(admin: &mut redis::aio::MultiplexedConnection, topic: &str) -> i64 {
    let channel = format!("node:topic:{topic}");
    let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(&channel)
        .query_async(admin)
        .await
        .expect("PUBSUB NUMSUB");
    counts.first().map_or(0, |(_, count)| *count)
}

/// Two Redis nodes, each with one subscriber to the same fresh topic.
struct TwoNodes {
    node_a: Arc<Hub>,
    node_b: Arc<Hub>,
    topic: String,
    on_a_rx: mpsc::Receiver<Delivery>,
    on_b_rx: mpsc::Receiver<Delivery>,
}

async fn two_nodes(url: &str, node_a_id: &str, topic_prefix: &str) -> TwoNodes {
    let node_a = redis_hub(url, node_a_id).await;
    let node_b = redis_hub(url, &unique("node-b")).await;
    let topic = unique(topic_prefix);
    let (on_a, on_a_rx) = probe();
    let (on_b, on_b_rx) = probe();
    for (node, subscriber) in [(&node_a, on_a), (&node_b, on_b)] {
        node.subscribe(&topic, SubscriberId(1), subscriber)
            .await
            .expect("subscribe");
    }
    TwoNodes {
        node_a,
        node_b,
        topic,
        on_a_rx,
        on_b_rx,
    }
}

#[tokio::test]
async fn redis_unreachable_fails_instead_of_falling_back() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let result = Hub::redis("redis://127.0.0.1:1", "node-a".to_owned()).await;
    assert!(result.is_err(), "expected an error, got a hub");
}

#[tokio::test]
async fn redis_two_nodes_receive_every_push_in_order() {
    let Some(url) = redis_url() else { return };
    let node_a = redis_hub(&url, &unique("node-a")).await;
    let node_b = redis_hub(&url, &unique("node-b")).await;
    node_a.health().await.expect("health");
    let topic = unique("thread");
    let other_topic = unique("thread");
    let (on_a, mut on_a_rx) = probe();
    let (on_b, mut on_b_rx) = probe();
    let (other, mut other_rx) = probe();
    node_a
        .subscribe(&topic, SubscriberId(1), on_a)
        .await
        .expect("subscribe");
    node_b
        .subscribe(&topic, SubscriberId(1), on_b)
        .await
        .expect("subscribe");
    node_b
        .subscribe(&other_topic, SubscriberId(2), other)
        .await
        .expect("subscribe");

    publish_range(&node_a, &topic, 1, PUSHES).await;

    // The publisher's own subscriber gets them from the hub, the other node's through Redis.
    expect_in_order(&mut on_a_rx, &topic, 1, PUSHES).await;
    expect_in_order(&mut on_b_rx, &topic, 1, PUSHES).await;
    // Exactly once: Redis echoes A's pushes back to A, and A drops the echoes. Once B's marker,
    // published after all of them, reaches A, every echo has come and gone.
    node_b.publish(marker(&topic)).await.expect("publish");
    let after = next(&mut on_a_rx).await;
    assert_eq!(
        (after.topic.as_str(), after.seq),
        (topic.as_str(), None),
        "node A got one of its own pushes twice"
    );
    // Redis delivers one connection's messages in order: if the other topic's subscriber first
    // sees this later marker, it received nothing of the 1000.
    node_a.publish(marker(&other_topic)).await.expect("publish");
    let first = next(&mut other_rx).await;
    assert_eq!(
        (first.topic.as_str(), first.seq),
        (other_topic.as_str(), None)
    );
}

#[tokio::test]
async fn redis_subscribes_once_per_node_and_unsubscribes_with_the_last_subscriber() {
    let Some(url) = redis_url() else { return };
    let hub = redis_hub(&url, &unique("node-a")).await;
    let mut admin = redis_admin(&url).await;
    let topic = unique("user");
    let (first, mut first_rx) = probe();
    let (second, mut second_rx) = probe();
    hub.subscribe(&topic, SubscriberId(1), first)
        .await
        .expect("subscribe");
    hub.subscribe(&topic, SubscriberId(2), second)
        .await
        .expect("subscribe");
    assert_eq!(subscribers_in_redis(&mut admin, &topic).await, 1);
    assert_eq!(hub.stats(), (1, 2));

    hub.unsubscribe(&topic, SubscriberId(1)).await;
    hub.publish(push(&topic, 1)).await.expect("publish");
    expect_in_order(&mut second_rx, &topic, 1, 1).await;
    assert_eq!(subscribers_in_redis(&mut admin, &topic).await, 1);

    hub.unsubscribe_all(SubscriberId(2)).await;
    assert_eq!(hub.stats(), (0, 0));
    // UNSUBSCRIBE is sent after `unsubscribe_all` returns; wait for Redis to see it.
    timeout(WAIT, async {
        while subscribers_in_redis(&mut admin, &topic).await != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the channel was never unsubscribed");
    assert!(first_rx.try_recv().is_err(), "delivered after unsubscribe");
}

#[tokio::test]
async fn redis_drops_a_subscriber_that_refuses_and_releases_its_channel() {
    let Some(url) = redis_url() else { return };
    let hub = redis_hub(&url, &unique("node-a")).await;
    let mut admin = redis_admin(&url).await;
    let topic = unique("user");
    let refuser = Arc::new(Refuser::default());
    hub.subscribe(
        &topic,
        SubscriberId(9),
        Arc::clone(&refuser) as Arc<dyn Subscriber>,
    )
    .await
    .expect("subscribe");
    assert_eq!(subscribers_in_redis(&mut admin, &topic).await, 1);

    hub.publish(push(&topic, 1)).await.expect("publish");
    // The refusal happens inside `publish`; the bus's manager releases the channel after it.
    timeout(WAIT, async {
        while hub.stats() != (0, 0) || subscribers_in_redis(&mut admin, &topic).await != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the refusing subscriber was not dropped, or its channel not released");
    assert_eq!(refuser.offers.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn redis_reconnects_and_resubscribes_after_the_connection_drops() {
    let Some(url) = redis_url() else { return };
    let node_id = unique("node-a");
    let mut two = two_nodes(&url, &node_id, "user").await;
    let mut admin = redis_admin(&url).await;

    // Kill node A's bus connection, as a Redis restart or network cut would.
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut admin)
        .await
        .expect("CLIENT LIST");
    let name = format!("name=node-bus:{node_id}");
    let id = clients
        .lines()
        .find(|line| line.split_whitespace().any(|field| field == name))
        .and_then(|line| line.split_whitespace().find_map(|f| f.strip_prefix("id=")))
        .expect("node A's bus connection in CLIENT LIST")
        .to_owned();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(&id)
        .query_async(&mut admin)
        .await
        .expect("CLIENT KILL");
    assert_eq!(killed, 1);

    // Pub/sub loses what is published while A is away. Publish markers from B until one
    // reaches A: that proves A has reconnected and re-subscribed the topic.
    timeout(WAIT, async {
        loop {
            two.node_b
                .publish(marker(&two.topic))
                .await
                .expect("publish");
            if timeout(Duration::from_millis(50), two.on_a_rx.recv())
                .await
                .is_ok()
            {
                break;
            }
        }
    })
    .await
    .expect("node A never came back");

    publish_range(&two.node_a, &two.topic, 1, 100).await;
    expect_in_order(&mut two.on_a_rx, &two.topic, 1, 100).await;
    expect_in_order(&mut two.on_b_rx, &two.topic, 1, 100).await;
    two.node_a.health().await.expect("health after reconnect");
}

#[tokio::test]
async fn redis_a_nodes_own_subscribers_do_not_wait_for_redis() {
    let Some(url) = redis_url() else { return };
    let mut two = two_nodes(&url, &unique("node-a"), "thread").await;
    // Other tests' publishes wait out the pause too; it is shorter than WAIT and than the
    // bus's reply timeout.
    let pause = Duration::from_secs(3);
    let paused = RedisPause::start(&url, pause).await;
    // Two publishes, one after the other, as the publishing task publishes batches: neither
    // waits for Redis, and A's subscriber has both at once.
    for seq in 1..=2 {
        timeout(pause / 3, two.node_a.publish(push(&two.topic, seq)))
            .await
            .expect("publish waited for Redis")
            .expect("publish");
    }
    for seq in 1..=2 {
        let mine = timeout(pause / 3, two.on_a_rx.recv())
            .await
            .expect("node A's own subscriber waited for Redis")
            .expect("the subscriber's queue closed");
        assert_eq!(
            (mine.topic.as_str(), mine.seq),
            (two.topic.as_str(), Some(seq))
        );
    }
    // Give a PUBLISH that the pause failed to hold the time to arrive before looking.
    tokio::time::sleep(pause / 3).await;
    if paused.held() {
        assert!(
            two.on_b_rx.try_recv().is_err(),
            "node B got a push while Redis held it: the pause did not hold PUBLISH"
        );
    }
    paused.end().await;

    // The other node gets both once Redis lets them through, in order; A gets no second copy
    // when Redis echoes them back.
    expect_in_order(&mut two.on_b_rx, &two.topic, 1, 2).await;
    two.node_b
        .publish(marker(&two.topic))
        .await
        .expect("publish");
    let after = next(&mut two.on_a_rx).await;
    assert_eq!(
        (after.topic.as_str(), after.seq),
        (two.topic.as_str(), None)
    );
}

#[tokio::test]
async fn redis_flush_returns_once_what_was_published_has_gone_out() {
    let Some(url) = redis_url() else { return };
    let mut two = two_nodes(&url, &unique("node-a"), "thread").await;
    // Nothing queued: at once.
    timeout(WAIT, two.node_a.flush())
        .await
        .expect("a flush with nothing queued waited");

    let pause = Duration::from_secs(3);
    let paused = RedisPause::start(&url, pause).await;
    publish_range(&two.node_a, &two.topic, 1, 3).await;
    let flush = tokio::spawn({
        let node_a = Arc::clone(&two.node_a);
        async move { node_a.flush().await }
    });
    tokio::time::sleep(pause / 3).await;
    if paused.held() {
        assert!(
            !flush.is_finished(),
            "flush returned while Redis still held the pushes"
        );
    }
    paused.end().await;
    timeout(WAIT, flush)
        .await
        .expect("flush never returned")
        .expect("the flush task panicked");
    // Redis has sent them to node B by the time it answered node A's PUBLISHes.
    expect_in_order(&mut two.on_b_rx, &two.topic, 1, 3).await;
}
