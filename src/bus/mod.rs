//! Fan-out of committed events to subscribers on this node and on others.
//!
//! The node publishes a [`protocol::Push`] after the batch holding its events has committed
//! (DESIGN.md §4.3); the bus hands it to every local subscriber of the push's topic, on this
//! node and, with Redis, on every other node (§6, §8).
//!
//! Guarantees, held by `tests/bus.rs`:
//! - **Order.** Pushes published by one caller in sequence reach each subscriber in that order,
//!   on every node. The publishing node's own subscribers get each push inside `publish`, with
//!   either transport; with Redis, every push also goes out on one connection to the other
//!   nodes, each of which hands it on from its one subscribing connection. Redis echoes a
//!   node's pushes back to it too; the echo is recognised by its origin and dropped unread.
//! - **Local delivery needs no Redis.** A node's own subscribers do not wait for the Redis round
//!   trip, and keep receiving the node's pushes while its connection is down: the pushes for
//!   the other nodes are queued to a task of the transport's own, which sends them in order.
//!   A slow Redis is absorbed by that queue (64 batches) and no further: once it is full,
//!   `publish` waits for room, which holds back the publishing task's next batch and, after 8
//!   more, the journal writer, as any publish did before local delivery.
//! - **Subscribe, then read.** `subscribe` returns only once the transport has confirmed the
//!   subscription, so nothing published after it returns is missed.
//! - **At most once.** A subscriber that refuses a delivery (its queue is full or it is gone)
//!   is dropped from every topic. While a node's Redis connection is down, other nodes' pushes
//!   for its subscribers are lost; clients recover them by sequence number (resume), which is
//!   why durable pushes carry `seq`.
//! - **One decode per node.** A push is decoded once per node and the same `Arc` is handed to
//!   every local subscriber; its frame is encoded once per codec ([`Delivered::frame`]).

mod redis;
mod registry;

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use protocol::{Codec, Push, ServerFrame};

use self::redis::RedisTransport;
use self::registry::Registry;

/// What a subscriber receives: one allocation shared by every local subscriber of the topic.
pub type Delivery = Arc<Delivered>;

/// A push as delivered, with its WebSocket frame encoded at most once per codec: a message to
/// a thread whose participants have a dozen devices connected here is encoded once, not a dozen
/// times, and each device's connection sends the same bytes.
#[derive(Debug)]
pub struct Delivered {
    push: Push,
    /// The `event` frame of the push, by codec ([`codec_slot`]).
    frames: [OnceLock<Bytes>; 2],
}

impl Delivered {
    pub fn new(push: Push) -> Self {
        Delivered {
            push,
            frames: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// The push's `event` frame in `codec`, encoded by the first caller for that codec.
    pub fn frame(&self, codec: Codec) -> Bytes {
        self.frames[codec_slot(codec)]
            .get_or_init(|| Bytes::from(codec.encode(&ServerFrame::Event(self.push.clone()))))
            .clone()
    }
}

fn codec_slot(codec: Codec) -> usize {
    match codec {
        Codec::Json => 0,
        Codec::MsgPack => 1,
    }
}

impl Deref for Delivered {
    type Target = Push;

    fn deref(&self) -> &Push {
        &self.push
    }
}

/// The longest topic name accepted, in bytes. Topics name Redis channels and map keys; a bound
/// keeps a client-chosen name from costing more than it should.
pub const TOPIC_BYTES_MAX: usize = 256;

/// Opaque id of one subscriber (one WebSocket connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriberId(pub u64);

/// Receives deliveries. Implemented by WebSocket sessions. Must never block or await:
/// it pushes into a bounded queue; returning `false` means "I am gone or overloaded",
/// and the hub then drops this subscriber from every topic.
pub trait Subscriber: Send + Sync + 'static {
    fn deliver(&self, push: &Delivery) -> bool;
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("could not encode a bus envelope: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("connecting to redis timed out")]
    ConnectTimeout,
    /// The Redis connection is down and the bus is reconnecting; retry later.
    #[error("the bus is disconnected from redis and reconnecting")]
    Disconnected,
    /// The bus's background task has stopped (the node is shutting down).
    #[error("the bus is closed")]
    Closed,
    #[error("topic must be 1 to {TOPIC_BYTES_MAX} bytes, got {0}")]
    InvalidTopic(usize),
}

/// The node's bus: local subscriber registry + a transport.
pub struct Hub {
    node_id: String,
    registry: Arc<Registry>,
    transport: Transport,
}

enum Transport {
    /// Deliveries happen inside `publish`, on the publisher's task: no queue, no other task.
    InProcess,
    Redis(RedisTransport),
}

impl Hub {
    /// In-process bus: no other service needed. `node_id` names this node in envelopes.
    pub fn in_process(node_id: String) -> Arc<Hub> {
        Arc::new(Hub {
            node_id,
            registry: Arc::default(),
            transport: Transport::InProcess,
        })
    }

    /// Redis pub/sub bus. Fails (does not fall back) if Redis cannot be reached.
    ///
    /// Needs Redis 6 or later: the bus speaks RESP3 so that one connection can subscribe and
    /// publish, and hand each message to subscribers as it is read.
    #[tracing::instrument(skip_all, fields(node_id = %node_id))]
    pub async fn redis(url: &str, node_id: String) -> Result<Arc<Hub>, BusError> {
        let registry = Arc::new(Registry::default());
        let transport = RedisTransport::connect(url, &node_id, Arc::clone(&registry)).await?;
        tracing::info!("redis bus connected");
        Ok(Arc::new(Hub {
            node_id,
            registry,
            transport: Transport::Redis(transport),
        }))
    }

    /// "in-process" or "redis".
    pub fn backend(&self) -> &'static str {
        match self.transport {
            Transport::InProcess => "in-process",
            Transport::Redis(_) => "redis",
        }
    }

    /// Register interest. Returns only after the transport confirms the subscription (for
    /// Redis: after SUBSCRIBE is acknowledged), so that a caller who subscribes and then reads
    /// state misses nothing published after this returns. Refcounted: the first local
    /// subscriber of a topic subscribes the transport, the last unsubscribe unsubscribes it.
    ///
    /// The subscriber may receive the topic's pushes before this returns. On error it is not
    /// subscribed. If the caller is cancelled while waiting, the subscriber stays registered
    /// until `unsubscribe_all` (which a session's drop guard calls anyway).
    #[tracing::instrument(skip_all, fields(topic = %topic, subscriber = id.0))]
    pub async fn subscribe(
        &self,
        topic: &str,
        id: SubscriberId,
        sub: Arc<dyn Subscriber>,
    ) -> Result<(), BusError> {
        if topic.is_empty() || topic.len() > TOPIC_BYTES_MAX {
            return Err(BusError::InvalidTopic(topic.len()));
        }
        // Registered before the transport subscribes, so the first message the transport
        // receives on this topic already finds the subscriber.
        self.registry.add(topic, id, sub);
        let Transport::Redis(redis) = &self.transport else {
            return Ok(());
        };
        if let Err(error) = redis.subscribe(topic).await {
            // A caller told "failed" must not go on receiving the topic's pushes.
            if self.registry.remove(topic, id) {
                redis.release(topic.to_owned()).await;
            }
            return Err(error);
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(topic = %topic, subscriber = id.0))]
    pub async fn unsubscribe(&self, topic: &str, id: SubscriberId) {
        if self.registry.remove(topic, id) {
            self.release(vec![topic.to_owned()]).await;
        }
    }

    /// Drop a subscriber from every topic it is in (called when a connection closes).
    #[tracing::instrument(skip_all, fields(subscriber = id.0))]
    pub async fn unsubscribe_all(&self, id: SubscriberId) {
        let emptied = self.registry.remove_all(id);
        self.release(emptied).await;
    }

    /// Publish a committed push. Pushes published by one caller in sequence are delivered to
    /// each subscriber in that same order (on every node). This node's subscribers have it
    /// when this returns. With Redis it is then queued for the other nodes and sent by the
    /// transport's own task, so this does not wait for Redis to answer; an error means the
    /// other nodes will not get it (the connection is down, or the node is stopping).
    #[tracing::instrument(level = "debug", skip_all, fields(topic = %push.topic, seq = push.seq))]
    pub async fn publish(&self, push: Push) -> Result<(), BusError> {
        self.publish_all(vec![push]).await
    }

    /// Publish committed pushes in this order, as [`Hub::publish`] each in turn would, but
    /// sent to Redis as one pipeline rather than a round trip per push.
    #[tracing::instrument(level = "debug", skip_all, fields(count = pushes.len()))]
    pub async fn publish_all(&self, pushes: Vec<Push>) -> Result<(), BusError> {
        if pushes.is_empty() {
            return Ok(());
        }
        let mut emptied = Vec::new();
        let pushes: Vec<Delivery> = pushes
            .into_iter()
            .map(|push| {
                let push = Arc::new(Delivered::new(push));
                emptied.extend(self.registry.deliver(&push).emptied);
                push
            })
            .collect();
        let Transport::Redis(redis) = &self.transport else {
            // Topics emptied by refusing subscribers need no transport cleanup in-process.
            return Ok(());
        };
        self.release(emptied).await;
        redis.publish_all(pushes).await
    }

    /// Resolves once what was published before this call has gone out to the other nodes (or
    /// failed to): with Redis, once the transport's queue up to here is sent; in-process at
    /// once, as every delivery happened inside `publish`. A stopping node's publishing task calls
    /// it (`Fanout::flush`), so that the pushes of its last commits are not dropped with the queue.
    pub async fn flush(&self) {
        if let Transport::Redis(redis) = &self.transport {
            redis.flush().await;
        }
    }

    /// Health check: Ok for in-process; PING for Redis (and an error while reconnecting).
    pub async fn health(&self) -> Result<(), BusError> {
        match &self.transport {
            Transport::InProcess => Ok(()),
            Transport::Redis(redis) => redis.ping().await,
        }
    }

    /// Number of topics with local subscribers, and number of (topic, subscriber) pairs; for metrics.
    pub fn stats(&self) -> (usize, usize) {
        self.registry.stats()
    }

    /// Tell the transport that these topics lost their last local subscriber.
    async fn release(&self, topics: Vec<String>) {
        if let Transport::Redis(redis) = &self.transport {
            for topic in topics {
                redis.release(topic).await;
            }
        }
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (topics, subscriptions) = self.stats();
        f.debug_struct("Hub")
            .field("node_id", &self.node_id)
            .field("backend", &self.backend())
            .field("topics", &topics)
            .field("subscriptions", &subscriptions)
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use protocol::Event;

    use super::*;

    #[test]
    fn a_delivery_is_encoded_once_per_codec_as_its_event_frame() {
        let push = Push {
            topic: "user:1".to_owned(),
            seq: Some(7),
            event: Event::SessionRevoked {
                session_id: "s".to_owned(),
            },
        };
        let delivered = Delivered::new(push.clone());
        for codec in [Codec::Json, Codec::MsgPack] {
            let first = delivered.frame(codec);
            let again = delivered.frame(codec);
            assert_eq!(
                first.as_ptr(),
                again.as_ptr(),
                "{codec:?} was encoded twice"
            );
            let frame: ServerFrame = codec.decode(&first).expect("the frame decodes");
            assert_eq!(frame, ServerFrame::Event(push.clone()));
        }
        assert_ne!(
            delivered.frame(Codec::Json),
            delivered.frame(Codec::MsgPack)
        );
    }
}
