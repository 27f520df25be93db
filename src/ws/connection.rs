//! One WebSocket connection: authenticate, subscribe, then a reader loop here and a writer task
//! with a bounded queue.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actix_ws::{
    AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError, Session,
};
use bytes::Bytes;
use protocol::{close, ClientFrame, Codec, ErrorCode, Event, Hello, ServerFrame};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{user_topic, Gateway};
use crate::auth::Identity;
use crate::bus::{Delivery, Subscriber, SubscriberId};

/// How long the node tries to send a close frame before dropping the connection anyway.
const CLOSE_FRAME_TIMEOUT: Duration = Duration::from_secs(1);

/// What the reader (and the bus) hand to the writer.
enum Outbound {
    Frame(ServerFrame),
    Push(Delivery),
    Ping,
    Pong(Bytes),
    Close(u16, &'static str),
}

/// The connection as a bus subscriber: never blocks; a full queue marks the client slow.
struct Sink {
    tx: mpsc::Sender<Outbound>,
    slow: CancellationToken,
}

impl Subscriber for Sink {
    fn deliver(&self, push: &Delivery) -> bool {
        match self.tx.try_send(Outbound::Push(Arc::clone(push))) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.slow.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Send one frame through the session, giving up if the client turned out slow.
async fn send(session: &mut Session, codec: Codec, bytes: Vec<u8>) -> bool {
    if codec.is_text() {
        match String::from_utf8(bytes) {
            Ok(text) => session.text(text).await.is_ok(),
            Err(_) => false,
        }
    } else {
        session.binary(bytes).await.is_ok()
    }
}

async fn close_session(session: Session, gateway: &Gateway, code: u16, reason: &str) {
    gateway
        .metrics
        .ws_closed
        .with_label_values(&[&code.to_string()])
        .inc();
    let reason = CloseReason {
        code: CloseCode::from(code),
        description: Some(reason.to_owned()),
    };
    let _ = tokio::time::timeout(CLOSE_FRAME_TIMEOUT, session.close(Some(reason))).await;
}

/// The writer: the only owner of the session once the connection is authenticated.
async fn write_loop(
    mut session: Session,
    mut rx: mpsc::Receiver<Outbound>,
    codec: Codec,
    session_id: String,
    gateway: Arc<Gateway>,
    slow: CancellationToken,
    done: CancellationToken,
) {
    let mut close_with: Option<(u16, &'static str)> = None;
    loop {
        let item = tokio::select! {
            biased;
            () = slow.cancelled() => {
                close_with = Some((close::SLOW_CONSUMER, "send queue full: read faster"));
                break;
            }
            item = rx.recv() => item,
        };
        let Some(item) = item else { break };
        let sending = async {
            match item {
                Outbound::Frame(frame) => send(&mut session, codec, codec.encode(&frame)).await,
                Outbound::Push(push) => {
                    let revoked = matches!(&push.event,
                        Event::SessionRevoked { session_id: s } if *s == session_id);
                    let frame = ServerFrame::Event((*push).clone());
                    let sent = send(&mut session, codec, codec.encode(&frame)).await;
                    if revoked {
                        close_with = Some((close::UNAUTHORIZED, "session revoked"));
                        return false;
                    }
                    sent
                }
                Outbound::Ping => session.ping(b"").await.is_ok(),
                Outbound::Pong(payload) => session.pong(&payload).await.is_ok(),
                Outbound::Close(code, reason) => {
                    close_with = Some((code, reason));
                    false
                }
            }
        };
        let keep_going = tokio::select! {
            biased;
            () = slow.cancelled() => {
                close_with = Some((close::SLOW_CONSUMER, "send queue full: read faster"));
                false
            }
            sent = sending => sent,
        };
        if !keep_going {
            break;
        }
        gateway.metrics.ws_frames_out.inc();
    }
    match close_with {
        Some((code, reason)) => close_session(session, &gateway, code, reason).await,
        None => close_session(session, &gateway, close::NORMAL, "closed").await,
    }
    done.cancel();
}

/// Wait for an `auth` frame. On failure the session is closed here and `None` returned.
async fn authenticate_by_frame(
    gateway: &Gateway,
    session: &mut Option<Session>,
    stream: &mut AggregatedMessageStream,
    codec: Codec,
) -> Option<Identity> {
    let deadline = Instant::now() + gateway.settings.ws_auth_timeout();
    let refuse = |code: u16, reason: &'static str| (code, reason);
    let outcome: Result<Identity, (u16, &'static str, Option<ServerFrame>)> = loop {
        let message = tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                break Err((close::POLICY_VIOLATION, "no auth frame in time", None));
            }
            () = gateway.shutdown.cancelled() => break Err((close::GOING_AWAY, "shutting down", None)),
            message = stream.recv() => message,
        };
        let bytes = match message {
            None => return None,
            Some(Err(ProtocolError::Overflow)) => {
                break Err((close::MESSAGE_TOO_BIG, "frame too large", None))
            }
            Some(Err(_)) => break Err((close::POLICY_VIOLATION, "protocol error", None)),
            Some(Ok(AggregatedMessage::Ping(p))) => {
                if let Some(s) = session.as_mut() {
                    let _ = s.pong(&p).await;
                }
                continue;
            }
            Some(Ok(AggregatedMessage::Pong(_))) => continue,
            Some(Ok(AggregatedMessage::Close(_))) => return None,
            Some(Ok(AggregatedMessage::Text(t))) if codec.is_text() => t.into_bytes(),
            Some(Ok(AggregatedMessage::Binary(b))) if !codec.is_text() => b,
            Some(Ok(_)) => {
                let (code, reason) =
                    refuse(close::UNSUPPORTED_DATA, "wrong frame type for the codec");
                break Err((code, reason, None));
            }
        };
        match codec.decode::<ClientFrame>(&bytes) {
            Ok(ClientFrame::Auth { id, token }) => match gateway.auth.authenticate(&token).await {
                Ok(identity) => break Ok(identity),
                Err(error) => {
                    let frame = ServerFrame::Error {
                        id,
                        code: ErrorCode::Unauthorized,
                        message: error.to_string(),
                    };
                    break Err((close::UNAUTHORIZED, "authentication failed", Some(frame)));
                }
            },
            Ok(other) => {
                let frame = ServerFrame::Error {
                    id: other.id().map(str::to_owned),
                    code: ErrorCode::Unauthorized,
                    message: "the first frame must be auth".into(),
                };
                break Err((close::UNAUTHORIZED, "not authenticated", Some(frame)));
            }
            Err(error) => {
                let frame = ServerFrame::Error {
                    id: None,
                    code: ErrorCode::BadRequest,
                    message: error.to_string(),
                };
                break Err((close::UNAUTHORIZED, "not authenticated", Some(frame)));
            }
        }
    };
    match outcome {
        Ok(identity) => Some(identity),
        Err((code, reason, frame)) => {
            if let Some(mut s) = session.take() {
                if let Some(frame) = frame {
                    let _ = send(&mut s, codec, codec.encode(&frame)).await;
                }
                close_session(s, gateway, code, reason).await;
            }
            None
        }
    }
}

/// Serve one connection from upgrade to close.
pub(super) async fn run(
    gateway: Arc<Gateway>,
    session: Session,
    mut stream: AggregatedMessageStream,
    codec: Codec,
    identity: Option<Identity>,
) {
    let mut session = Some(session);
    let identity = match identity {
        Some(identity) => identity,
        None => match authenticate_by_frame(&gateway, &mut session, &mut stream, codec).await {
            Some(identity) => identity,
            None => return,
        },
    };
    let Some(mut session) = session else { return };
    let Some(_admission) = gateway.admit(&identity.user.id) else {
        close_session(
            session,
            &gateway,
            close::TOO_MANY_CONNECTIONS,
            "too many connections for this user",
        )
        .await;
        return;
    };
    let user_id = identity.user.id.clone();
    let settings = Arc::clone(&gateway.settings);
    let (tx, rx) = mpsc::channel(settings.ws_send_queue_max.max(1));
    let slow = CancellationToken::new();
    let done = CancellationToken::new();
    let subscriber = gateway.next_subscriber();
    let sink = Arc::new(Sink {
        tx: tx.clone(),
        slow: slow.clone(),
    });
    // Subscribe before anything is read or said, so that nothing published after `hello`
    // can be missed.
    let own_topic = user_topic(&user_id);
    if let Err(error) = gateway
        .bus
        .subscribe(&own_topic, subscriber, sink.clone())
        .await
    {
        tracing::error!(%error, "could not subscribe a connection to its user topic");
        close_session(
            session,
            &gateway,
            close::INTERNAL_ERROR,
            "subscription failed",
        )
        .await;
        return;
    }
    let hello = ServerFrame::Hello(Hello {
        user_id: user_id.clone(),
        session_id: identity.session.id.clone(),
        heartbeat_ms: settings.ws_heartbeat_ms,
        idle_timeout_ms: settings.ws_idle_timeout_ms,
        max_frame_bytes: settings.ws_frame_bytes_max,
        user_topic: own_topic.clone(),
    });
    if !send(&mut session, codec, codec.encode(&hello)).await {
        gateway.bus.unsubscribe_all(subscriber).await;
        return;
    }
    tracing::debug!(user_id = %user_id, "websocket connected");
    let writer = actix_web::rt::spawn(write_loop(
        session,
        rx,
        codec,
        identity.session.id.clone(),
        Arc::clone(&gateway),
        slow.clone(),
        done.clone(),
    ));
    let mut reader = Reader {
        gateway: Arc::clone(&gateway),
        tx,
        slow,
        codec,
        user_id,
        subscriber,
        sink,
        topics: HashSet::from([own_topic]),
    };
    reader.run(&mut stream, &done).await;
    gateway.bus.unsubscribe_all(subscriber).await;
    drop(reader);
    let _ = writer.await;
}

struct Reader {
    gateway: Arc<Gateway>,
    tx: mpsc::Sender<Outbound>,
    slow: CancellationToken,
    codec: Codec,
    user_id: String,
    subscriber: SubscriberId,
    sink: Arc<Sink>,
    topics: HashSet<String>,
}

impl Reader {
    /// Queue a frame for the writer; a full queue marks the client slow.
    fn queue(&self, item: Outbound) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(item) {
            self.slow.cancel();
        }
    }

    fn reply(&self, frame: ServerFrame) {
        self.queue(Outbound::Frame(frame));
    }

    fn error(&self, id: Option<String>, code: ErrorCode, message: impl Into<String>) {
        self.reply(ServerFrame::Error {
            id,
            code,
            message: message.into(),
        });
    }

    async fn run(&mut self, stream: &mut AggregatedMessageStream, done: &CancellationToken) {
        let settings = Arc::clone(&self.gateway.settings);
        let idle_timeout = settings.ws_idle_timeout();
        let mut heartbeat = tokio::time::interval_at(
            Instant::now() + settings.ws_heartbeat(),
            settings.ws_heartbeat(),
        );
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                biased;
                () = done.cancelled() => return,
                () = self.gateway.shutdown.cancelled() => {
                    self.queue(Outbound::Close(close::GOING_AWAY, "the node is shutting down"));
                    return;
                }
                () = &mut idle => {
                    self.queue(Outbound::Close(close::IDLE_TIMEOUT, "idle timeout"));
                    return;
                }
                _ = heartbeat.tick() => {
                    self.queue(Outbound::Ping);
                    self.reply(ServerFrame::Heartbeat { ts: crate::store::now_ms() });
                }
                message = stream.recv() => {
                    idle.as_mut().reset(Instant::now() + idle_timeout);
                    if !self.on_message(message).await {
                        return;
                    }
                }
            }
        }
    }

    /// Handle one message; false ends the connection.
    async fn on_message(
        &mut self,
        message: Option<Result<AggregatedMessage, ProtocolError>>,
    ) -> bool {
        let bytes = match message {
            None | Some(Ok(AggregatedMessage::Close(_))) => {
                self.queue(Outbound::Close(close::NORMAL, "closed by the client"));
                return false;
            }
            Some(Err(ProtocolError::Overflow)) => {
                self.queue(Outbound::Close(close::MESSAGE_TOO_BIG, "frame too large"));
                return false;
            }
            Some(Err(error)) => {
                tracing::debug!(%error, "websocket protocol error");
                self.queue(Outbound::Close(close::POLICY_VIOLATION, "protocol error"));
                return false;
            }
            Some(Ok(AggregatedMessage::Ping(payload))) => {
                self.queue(Outbound::Pong(payload));
                return true;
            }
            Some(Ok(AggregatedMessage::Pong(_))) => return true,
            Some(Ok(AggregatedMessage::Text(text))) if self.codec.is_text() => text.into_bytes(),
            Some(Ok(AggregatedMessage::Binary(bytes))) if !self.codec.is_text() => bytes,
            Some(Ok(_)) => {
                self.queue(Outbound::Close(
                    close::UNSUPPORTED_DATA,
                    "wrong frame type for the negotiated codec",
                ));
                return false;
            }
        };
        self.gateway.metrics.ws_frames_in.inc();
        match self.codec.decode::<ClientFrame>(&bytes) {
            Ok(frame) => self.on_frame(frame).await,
            Err(error) => self.error(None, ErrorCode::BadRequest, error.to_string()),
        }
        true
    }

    async fn on_frame(&mut self, frame: ClientFrame) {
        match frame {
            ClientFrame::Auth { id, .. } => {
                self.error(id, ErrorCode::BadRequest, "already authenticated");
            }
            ClientFrame::Ping { id } => self.reply(ServerFrame::Pong { id }),
            ClientFrame::Subscribe { id, topic, since } => self.subscribe(id, topic, since).await,
            ClientFrame::Unsubscribe { id, topic } => {
                if topic == user_topic(&self.user_id) {
                    self.error(id, ErrorCode::BadRequest, "the user topic stays subscribed");
                } else if self.topics.remove(&topic) {
                    self.gateway.bus.unsubscribe(&topic, self.subscriber).await;
                    self.reply(ServerFrame::Unsubscribed { id, topic });
                } else {
                    self.error(id, ErrorCode::NotFound, "not subscribed to this topic");
                }
            }
        }
    }

    async fn subscribe(&mut self, id: Option<String>, topic: String, since: Option<u64>) {
        if let Err((code, message)) = self.may_subscribe(&topic) {
            self.error(id, code, message);
            return;
        }
        if since.is_some() {
            self.error(
                id,
                ErrorCode::BadRequest,
                "this topic has no resumable history",
            );
            return;
        }
        if !self.topics.contains(&topic) {
            if self.topics.len() >= self.gateway.settings.ws_subscriptions_per_connection_max {
                self.error(
                    id,
                    ErrorCode::LimitExceeded,
                    "too many subscriptions on this connection",
                );
                return;
            }
            let sink: Arc<dyn Subscriber> = self.sink.clone();
            if let Err(error) = self
                .gateway
                .bus
                .subscribe(&topic, self.subscriber, sink)
                .await
            {
                tracing::error!(%error, "subscription failed");
                self.error(id, ErrorCode::Internal, "subscription failed; retry");
                return;
            }
            self.topics.insert(topic.clone());
        }
        self.reply(ServerFrame::Subscribed {
            id,
            topic,
            resume: None,
        });
    }

    /// Who may subscribe to what. Topics: `user:<id>` (only one's own).
    fn may_subscribe(&self, topic: &str) -> Result<(), (ErrorCode, &'static str)> {
        match topic.split_once(':') {
            Some(("user", id)) if id == self.user_id => Ok(()),
            Some(("user", _)) => Err((ErrorCode::Forbidden, "another user's topic")),
            _ => Err((ErrorCode::BadRequest, "unknown topic")),
        }
    }
}
