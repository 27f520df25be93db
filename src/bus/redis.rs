//! The Redis transport: envelopes on channel `node:topic:<topic>`, over one RESP3 connection.
//!
//! One connection per node does everything: PUBLISH, SUBSCRIBE/UNSUBSCRIBE and PING. RESP3
//! lets a subscribed connection run ordinary commands, and the connection's reader hands each
//! message to the local subscribers as it reads it (`Reader::on_push`) — there is no queue
//! between the socket and the subscribers. If this node falls behind, Redis's own pub/sub
//! output-buffer limit closes the connection and the reconnect path below takes over. Redis
//! also sends a node its own messages on the channels it subscribes; the hub delivered those
//! locally when it published them, so the reader drops them after reading their origin only.
//!
//! A manager task owns the connection's subscriptions. It keeps at most one SUBSCRIBE or
//! UNSUBSCRIBE per channel in flight, so the two never overtake each other on the wire, while
//! different channels proceed concurrently (pipelined). It decides from the registry, at the
//! time it acts, whether a channel is wanted, so racing subscribes and unsubscribes converge.
//! When the connection is lost — the reader sees it close, a command fails, or a periodic PING
//! goes unanswered — it reconnects with exponential backoff and re-subscribes every topic that
//! still has a local subscriber.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use protocol::{BusEnvelope, Push};
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, IntoConnectionInfo, Msg, ProtocolVersion, PushInfo, PushKind,
    RedisResult,
};
use serde::Serialize;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tracing::Instrument;

use super::registry::Registry;
use super::{BusError, Delivered, Delivery};

/// Prefix of the Redis channel that carries a topic.
const CHANNEL_PREFIX: &str = "node:topic:";
/// Subscribe/release requests from the hub waiting for the manager. At the maximum, callers of
/// `subscribe`/`unsubscribe` wait for room (backpressure); nothing is dropped.
const COMMANDS_MAX: usize = 1024;
/// Hints from the connection's reader that a topic may have lost its last local subscriber. At
/// the maximum a hint is dropped: the channel then stays subscribed without a local subscriber,
/// and the next message on it sends the hint again.
const STALE_HINTS_MAX: usize = 1024;
/// Batches of pushes queued for the other nodes, at most; beyond it a publisher waits.
const OUTGOING_BATCHES_MAX: usize = 64;
/// Most PUBLISHes sent to Redis in one pipeline.
const PUBLISHES_PER_PIPELINE: usize = 1024;
/// Time allowed to open a connection (TCP connect and the RESP3 handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for any one reply; a command that exceeds it counts as a lost connection.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the manager checks the connection with PING, to notice a half-open socket.
const PING_INTERVAL: Duration = Duration::from_secs(5);
/// First reconnect delay; doubled per failed attempt up to `BACKOFF_MAX`, reset after a PING
/// succeeds on a new connection.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

type Done = oneshot::Sender<Result<(), BusError>>;

/// The hub's handle on the Redis transport. Dropping it stops the manager task, and the
/// sending task once it has sent (or failed to send) what was queued; then the connection
/// closes.
pub(super) struct RedisTransport {
    commands: mpsc::Sender<Command>,
    /// The live connection, `None` while reconnecting; published by the manager.
    current: watch::Receiver<Option<MultiplexedConnection>>,
    /// Pushes for the other nodes, in publish order, to the task that sends them
    /// ([`send_in_order`]).
    outgoing: mpsc::Sender<Queued>,
}

/// What the sending task is handed, in order.
enum Queued {
    /// Pushes to publish.
    Pushes(Vec<Delivery>),
    /// Answer once everything queued before this has been sent (or failed to send).
    Flush(oneshot::Sender<()>),
}

impl RedisTransport {
    pub async fn connect(
        url: &str,
        node_id: &str,
        registry: Arc<Registry>,
    ) -> Result<Self, BusError> {
        let mut info = url.into_connection_info()?;
        info.redis.protocol = ProtocolVersion::RESP3;
        let client = Client::open(info)?;
        let (stale_tx, stale_rx) = mpsc::channel(STALE_HINTS_MAX);
        let link = Link::open(&client, node_id, Arc::clone(&registry), stale_tx.clone()).await?;
        let (current_tx, current_rx) = watch::channel(Some(link.conn.clone()));
        let (commands_tx, commands_rx) = mpsc::channel(COMMANDS_MAX);
        let manager = Manager {
            client,
            node_id: node_id.to_owned(),
            registry,
            commands: commands_rx,
            stale: stale_rx,
            stale_tx,
            current: current_tx,
            link: Some(link),
            channels: HashMap::new(),
            ops: FuturesUnordered::new(),
            ping_in_flight: false,
            reconnect: None,
            backoff: BACKOFF_MIN,
        };
        // A root span: the task outlives whatever request or startup span created the hub.
        let span = tracing::info_span!(parent: None, "redis_bus", node_id = %node_id);
        tokio::spawn(manager.run().instrument(span.clone()));
        let (outgoing, queued) = mpsc::channel(OUTGOING_BATCHES_MAX);
        tokio::spawn(
            send_in_order(node_id.to_owned(), current_rx.clone(), queued).instrument(span),
        );
        Ok(Self {
            commands: commands_tx,
            current: current_rx,
            outgoing,
        })
    }

    /// Resolves once the topic's channel is subscribed on the live connection.
    pub async fn subscribe(&self, topic: &str) -> Result<(), BusError> {
        let (done, answer) = oneshot::channel();
        let command = Command::Subscribe {
            topic: topic.to_owned(),
            done,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| BusError::Closed)?;
        answer.await.map_err(|_| BusError::Closed)?
    }

    /// The topic may have lost its last local subscriber; the manager unsubscribes if so.
    pub async fn release(&self, topic: String) {
        // A closed manager has no subscriptions left to release.
        let _ = self.commands.send(Command::Release { topic }).await;
    }

    /// Queue pushes for the other nodes. The sending task publishes them in this order, so a
    /// caller that publishes one batch after another has them fanned out in order. It waits
    /// only while [`OUTGOING_BATCHES_MAX`] batches are already queued, never for Redis to
    /// answer: the node's own subscribers, served before this is called, do not wait for
    /// Redis. Fails at once while the connection is down (nothing is queued then).
    pub async fn publish_all(&self, pushes: Vec<Delivery>) -> Result<(), BusError> {
        if self.current.borrow().is_none() {
            return Err(BusError::Disconnected);
        }
        self.outgoing
            .send(Queued::Pushes(pushes))
            .await
            .map_err(|_| BusError::Closed)
    }

    /// Resolves once everything queued before this call has been sent to Redis, or has failed
    /// to be: a stopping node calls it so the other nodes are not left without the last pushes
    /// it committed.
    pub async fn flush(&self) {
        let (done, sent) = oneshot::channel();
        if self.outgoing.send(Queued::Flush(done)).await.is_ok() {
            // An error means the sending task has ended, so nothing is left to send.
            let _ = sent.await;
        }
    }

    pub async fn ping(&self) -> Result<(), BusError> {
        let mut conn = self.connection()?;
        redis::cmd("PING").exec_async(&mut conn).await?;
        Ok(())
    }

    fn connection(&self) -> Result<MultiplexedConnection, BusError> {
        self.current.borrow().clone().ok_or(BusError::Disconnected)
    }
}

/// A [`BusEnvelope`] as it is published: the same fields, so the same bytes, borrowed from the
/// delivery this node already made of the push instead of copied into an envelope.
#[derive(Serialize)]
struct Outgoing<'a> {
    origin: &'a str,
    push: &'a Push,
}

/// Send what is queued to Redis as pipelines of PUBLISHes (at most [`PUBLISHES_PER_PIPELINE`]
/// each, several queued batches together), one after another. A pipeline that cannot be sent
/// (the connection is down, or fails meanwhile) is logged and dropped: pub/sub is at most
/// once, and the other nodes' clients recover what they missed by sequence number.
async fn send_in_order(
    node_id: String,
    current: watch::Receiver<Option<MultiplexedConnection>>,
    mut queued: mpsc::Receiver<Queued>,
) {
    let mut pushes = Vec::new();
    let mut flushes = Vec::new();
    while let Some(first) = queued.recv().await {
        // What queued while the last pipeline was out goes in this one, in order: one round
        // trip for all the publishers that waited, not one per batch. A flush waits for what
        // was queued before it, which this pipeline includes.
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Queued::Pushes(more) => pushes.extend(more),
                Queued::Flush(done) => flushes.push(done),
            }
            if pushes.len() < PUBLISHES_PER_PIPELINE {
                next = queued.try_recv().ok();
            }
        }
        for chunk in pushes.chunks(PUBLISHES_PER_PIPELINE) {
            if let Err(error) = send(&node_id, &current, chunk).await {
                tracing::warn!(%error, pushes = chunk.len(), "pushes did not reach the other nodes");
            }
        }
        pushes.clear();
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn send(
    origin: &str,
    current: &watch::Receiver<Option<MultiplexedConnection>>,
    pushes: &[Delivery],
) -> Result<(), BusError> {
    let mut pipe = redis::pipe();
    for push in pushes {
        let envelope = Outgoing {
            origin,
            push: &push.push,
        };
        pipe.cmd("PUBLISH")
            .arg(channel_name(&push.topic))
            .arg(rmp_serde::to_vec_named(&envelope)?)
            .ignore();
    }
    let mut conn = current.borrow().clone().ok_or(BusError::Disconnected)?;
    pipe.exec_async(&mut conn).await?;
    Ok(())
}

/// The `origin` of a published message, read from the front of its bytes: every node writes
/// the envelope as a map whose first entry is `origin` ([`Outgoing`]). `None` when the
/// message does not start that way, which the caller then decodes in full.
fn origin_of(payload: &[u8]) -> Option<&str> {
    let mut rest = payload;
    if rmp::decode::read_map_len(&mut rest).ok()? == 0 {
        return None;
    }
    let (key, rest) = rmp::decode::read_str_from_slice(rest).ok()?;
    if key != "origin" {
        return None;
    }
    let (origin, _) = rmp::decode::read_str_from_slice(rest).ok()?;
    Some(origin)
}

fn channel_name(topic: &str) -> String {
    format!("{CHANNEL_PREFIX}{topic}")
}

enum Command {
    /// Make sure the topic's channel is subscribed; answer once Redis has acknowledged it.
    Subscribe { topic: String, done: Done },
    /// The topic may have lost its last local subscriber.
    Release { topic: String },
}

/// One connection to Redis and what its reader shares with the manager.
struct Link {
    conn: MultiplexedConnection,
    state: Arc<LinkState>,
}

struct LinkState {
    /// Cleared when the manager abandons the link: a link that is merely slow may still read
    /// messages, and the new link delivers those too.
    live: AtomicBool,
    /// Signalled by the reader when the connection closes.
    closed: Notify,
}

impl Link {
    async fn open(
        client: &Client,
        node_id: &str,
        registry: Arc<Registry>,
        stale: mpsc::Sender<String>,
    ) -> Result<Link, BusError> {
        let state = Arc::new(LinkState {
            live: AtomicBool::new(true),
            closed: Notify::new(),
        });
        let reader = Reader {
            node_id: node_id.to_owned(),
            state: Arc::clone(&state),
            registry,
            stale,
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_push_sender(move |info: PushInfo| -> Result<(), Infallible> {
                reader.on_push(info);
                Ok(())
            });
        let connecting = client.get_multiplexed_async_connection_with_config(&config);
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| BusError::ConnectTimeout)??;
        // Named so that an operator can tell the nodes' bus connections apart in CLIENT LIST.
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(client_name(node_id))
            .exec_async(&mut conn)
            .await?;
        Ok(Link { conn, state })
    }
}

/// `node-bus:<node_id>`, with characters Redis refuses in a client name replaced.
fn client_name(node_id: &str) -> String {
    let id: String = node_id
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    format!("node-bus:{id}")
}

/// Runs inside the connection's read loop, once per push frame. Never blocks: decoding and
/// `Subscriber::deliver` only.
struct Reader {
    /// This node's id: its own messages come back from Redis and are dropped (the hub has
    /// delivered them here already).
    node_id: String,
    state: Arc<LinkState>,
    registry: Arc<Registry>,
    stale: mpsc::Sender<String>,
}

impl Reader {
    fn on_push(&self, info: PushInfo) {
        match info.kind {
            PushKind::Disconnection => self.state.closed.notify_one(),
            PushKind::Message if self.state.live.load(Ordering::Acquire) => {
                if let Some(msg) = Msg::from_push_info(info) {
                    self.deliver(&msg);
                }
            }
            // Subscribe confirmations reach the manager as command replies; other kinds are
            // not used by the bus.
            _ => {}
        }
    }

    fn deliver(&self, msg: &Msg) {
        let channel = msg.get_channel_name();
        let payload = msg.get_payload_bytes();
        if origin_of(payload) == Some(self.node_id.as_str()) {
            // An echo of this node's own push, delivered here when it was published. Redis
            // sends it because the channel is subscribed: if no local subscriber wants the
            // topic any more, say so, as for any other message.
            if let Some(topic) = channel.strip_prefix(CHANNEL_PREFIX) {
                if !self.registry.has(topic) {
                    self.hint_stale(topic.to_owned());
                }
            }
            return;
        }
        let envelope: BusEnvelope = match rmp_serde::from_slice(payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(channel, %error, "dropping an undecodable bus message");
                return;
            }
        };
        if envelope.origin == self.node_id {
            // Our own, written some other way than `Outgoing` writes it: dropped all the same.
            return;
        }
        if channel.strip_prefix(CHANNEL_PREFIX) != Some(envelope.push.topic.as_str()) {
            tracing::warn!(channel, topic = %envelope.push.topic, "dropping a bus message whose topic does not match its channel");
            return;
        }
        let push: Delivery = Arc::new(Delivered::new(envelope.push));
        let outcome = self.registry.deliver(&push);
        if outcome.offered == 0 {
            self.hint_stale(push.topic.clone());
        }
        for topic in outcome.emptied {
            self.hint_stale(topic);
        }
    }

    fn hint_stale(&self, topic: String) {
        if let Err(TrySendError::Full(topic)) = self.stale.try_send(topic) {
            tracing::debug!(
                topic,
                "stale-topic hints full; the next message will hint again"
            );
        }
    }
}

/// Where one channel stands on the live connection.
#[derive(Default)]
struct Channel {
    subscribed: bool,
    /// A SUBSCRIBE or UNSUBSCRIBE is in flight; its completion decides what comes next.
    in_flight: bool,
    /// Callers of `subscribe` waiting for the SUBSCRIBE acknowledgement.
    waiters: Vec<Done>,
}

enum Op {
    Subscribe(String),
    Unsubscribe(String),
    Ping,
}

enum Step {
    Command(Command),
    Stale(String),
    Done(Op, RedisResult<()>),
    Closed,
    Reconnected(Result<Link, BusError>),
    Ping,
}

struct Manager {
    client: Client,
    node_id: String,
    registry: Arc<Registry>,
    commands: mpsc::Receiver<Command>,
    stale: mpsc::Receiver<String>,
    /// Handed to each new link's reader.
    stale_tx: mpsc::Sender<String>,
    current: watch::Sender<Option<MultiplexedConnection>>,
    link: Option<Link>,
    /// Channels of the live link that are subscribed, in flight or awaited. At most one entry
    /// per topic with a local subscriber (plus ones being unsubscribed).
    channels: HashMap<String, Channel>,
    /// Commands in flight: at most one per entry of `channels`, plus one PING.
    ops: FuturesUnordered<BoxFuture<'static, (Op, RedisResult<()>)>>,
    ping_in_flight: bool,
    reconnect: Option<BoxFuture<'static, Result<Link, BusError>>>,
    backoff: Duration,
}

impl Manager {
    async fn run(mut self) {
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => Step::Command(command),
                    // The hub is gone: stop, which closes the connection.
                    None => break,
                },
                Some(topic) = self.stale.recv() => Step::Stale(topic),
                Some((op, result)) = self.ops.next(), if !self.ops.is_empty() => Step::Done(op, result),
                () = closed(self.link.as_ref()) => Step::Closed,
                link = reconnected(&mut self.reconnect) => Step::Reconnected(link),
                _ = ping.tick() => Step::Ping,
            };
            match step {
                Step::Command(Command::Subscribe { topic, done }) => self.subscribe(topic, done),
                Step::Command(Command::Release { topic }) | Step::Stale(topic) => {
                    self.reconcile(&topic);
                }
                Step::Done(op, Ok(())) => self.done(op),
                Step::Done(_, Err(error)) => {
                    self.lose_link(&format!("a command failed: {error}"));
                }
                Step::Closed => self.lose_link("the connection closed"),
                Step::Reconnected(Ok(link)) => self.relink(link),
                Step::Reconnected(Err(error)) => {
                    tracing::warn!(%error, retry_in_ms = self.backoff.as_millis(), "redis bus reconnect failed");
                    self.schedule_reconnect();
                }
                Step::Ping => self.ping(),
            }
        }
        tracing::debug!("redis bus stopped");
    }

    fn subscribe(&mut self, topic: String, done: Done) {
        if self.link.is_none() {
            let _ = done.send(Err(BusError::Disconnected));
            return;
        }
        self.channels
            .entry(topic.clone())
            .or_default()
            .waiters
            .push(done);
        self.reconcile(&topic);
    }

    /// Bring the live link's subscription of `topic` in line with the registry, one command at
    /// a time per channel.
    fn reconcile(&mut self, topic: &str) {
        let Some(link) = &self.link else {
            return;
        };
        let wanted = self.registry.has(topic);
        if !wanted && !self.channels.contains_key(topic) {
            return;
        }
        let channel = self.channels.entry(topic.to_owned()).or_default();
        if channel.in_flight {
            return;
        }
        // Waiters count as wanting the channel even if their subscriber was dropped meanwhile:
        // they are answered, and the next reconcile unsubscribes.
        if wanted || !channel.waiters.is_empty() {
            if channel.subscribed {
                for done in channel.waiters.drain(..) {
                    let _ = done.send(Ok(()));
                }
                return;
            }
            channel.in_flight = true;
            let mut conn = link.conn.clone();
            let topic = topic.to_owned();
            self.ops.push(Box::pin(async move {
                let result = conn.subscribe(channel_name(&topic)).await;
                (Op::Subscribe(topic), result)
            }));
        } else if channel.subscribed {
            channel.in_flight = true;
            let mut conn = link.conn.clone();
            let topic = topic.to_owned();
            self.ops.push(Box::pin(async move {
                let result = conn.unsubscribe(channel_name(&topic)).await;
                (Op::Unsubscribe(topic), result)
            }));
        } else {
            self.channels.remove(topic);
        }
    }

    fn done(&mut self, op: Op) {
        let (topic, subscribed) = match op {
            Op::Subscribe(topic) => (topic, true),
            Op::Unsubscribe(topic) => (topic, false),
            Op::Ping => {
                self.ping_in_flight = false;
                // The link has proven itself: the next loss starts backing off from the minimum.
                self.backoff = BACKOFF_MIN;
                return;
            }
        };
        if let Some(channel) = self.channels.get_mut(&topic) {
            channel.in_flight = false;
            channel.subscribed = subscribed;
        }
        self.reconcile(&topic);
    }

    fn ping(&mut self) {
        let Some(link) = &self.link else {
            return;
        };
        if self.ping_in_flight {
            return;
        }
        self.ping_in_flight = true;
        let mut conn = link.conn.clone();
        self.ops.push(Box::pin(async move {
            let result = redis::cmd("PING").exec_async(&mut conn).await;
            (Op::Ping, result)
        }));
    }

    /// Abandon the live link: fail waiting subscribers, stop publishing, start reconnecting.
    fn lose_link(&mut self, reason: &str) {
        let Some(link) = self.link.take() else {
            return;
        };
        link.state.live.store(false, Ordering::Release);
        self.current.send_replace(None);
        // Dropping the in-flight commands drops their connection handles; with the last one
        // gone the connection closes.
        self.ops = FuturesUnordered::new();
        self.ping_in_flight = false;
        for (_, channel) in self.channels.drain() {
            for done in channel.waiters {
                let _ = done.send(Err(BusError::Disconnected));
            }
        }
        let (topics, _) = self.registry.stats();
        tracing::warn!(
            reason,
            topics,
            retry_in_ms = self.backoff.as_millis(),
            "redis bus connection lost; other nodes' pushes for local subscribers are missed until it is back"
        );
        self.schedule_reconnect();
    }

    fn schedule_reconnect(&mut self) {
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        let client = self.client.clone();
        let node_id = self.node_id.clone();
        let registry = Arc::clone(&self.registry);
        let stale = self.stale_tx.clone();
        self.reconnect = Some(Box::pin(async move {
            tokio::time::sleep(delay).await;
            Link::open(&client, &node_id, registry, stale).await
        }));
    }

    /// Install a new link and re-subscribe every topic that still has a local subscriber.
    fn relink(&mut self, link: Link) {
        self.reconnect = None;
        self.current.send_replace(Some(link.conn.clone()));
        self.link = Some(link);
        let topics = self.registry.topic_names();
        tracing::info!(
            topics = topics.len(),
            "redis bus reconnected; re-subscribing"
        );
        for topic in topics {
            self.reconcile(&topic);
        }
    }
}

async fn closed(link: Option<&Link>) {
    match link {
        Some(link) => link.state.closed.notified().await,
        None => std::future::pending().await,
    }
}

async fn reconnected(
    attempt: &mut Option<BoxFuture<'static, Result<Link, BusError>>>,
) -> Result<Link, BusError> {
    match attempt {
        Some(attempt) => attempt.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use protocol::Event;

    use super::*;

    #[test]
    fn a_published_message_is_a_bus_envelope_whose_origin_reads_alone() {
        let push = Push {
            topic: "thread:t1".to_owned(),
            seq: Some(3),
            event: Event::Typing {
                thread_id: "t1".to_owned(),
                user_id: "u1".to_owned(),
            },
        };
        let sent = rmp_serde::to_vec_named(&Outgoing {
            origin: "node-a",
            push: &push,
        })
        .expect("encodes");
        let envelope = BusEnvelope {
            origin: "node-a".to_owned(),
            push: push.clone(),
        };
        assert_eq!(
            sent,
            rmp_serde::to_vec_named(&envelope).expect("encodes"),
            "other nodes decode what is published as a BusEnvelope"
        );
        assert_eq!(origin_of(&sent), Some("node-a"), "the origin reads alone");
        assert_eq!(origin_of(b"\x80"), None, "an empty map has no origin");
        let reordered = rmp_serde::to_vec_named(&Reordered {
            push: &push,
            origin: "node-a",
        })
        .expect("encodes");
        assert_eq!(origin_of(&reordered), None, "only a leading origin is read");
    }

    #[derive(Serialize)]
    struct Reordered<'a> {
        push: &'a Push,
        origin: &'a str,
    }
}
