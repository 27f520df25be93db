//! One WebSocket connection: authenticate, subscribe, then a reader loop here and a writer task
//! with a bounded queue.
//!
//! **Resume without gap or duplicate.** A client that names `since` (the last sequence number
//! it saw on its user topic) gets exactly the events after it, then live events:
//! 1. the connection subscribes to its user topic first: from then on every committed event
//!    of the topic is published after this point and waits in the connection's queue;
//! 2. it reads the topic's head from the store, then the entries `since+1 ..= head` (the
//!    store assigns per-user sequence numbers at commit, gap-free, so these are all committed
//!    and none is missing);
//! 3. the writer sends `hello` (reporting the resume), those entries, then the queue;
//! 4. the writer drops every push of a topic whose `seq` is at or below the last one it sent
//!    for that topic, so an event both read from the store and queued live goes out once.
//!
//! Anything committed before step 2 is in the store; anything committed after step 1 is in the
//! queue; the overlap is removed by step 4. A gap larger than `ws_resume_max` is not replayed:
//! `hello` says `gap_too_large` with the head, and the client reloads its state over REST.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use actix_ws::{
    AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError, Session,
};
use bytes::Bytes;
use bytestring::ByteString;
use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;
use protocol::{
    close, AuthFrame, ClientFrame, Codec, ErrorCode, Event, Hello, Push, ServerFrame, TopicResume,
};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{message_ops, user_topic, wallet_ops, Gateway};
use crate::api::AppState;
use crate::auth::{Identity, Remember};
use crate::bus::{Delivery, Subscriber, SubscriberId};
use crate::conversations::{visible_thread, Caller};
use crate::store::{conversations, ledger, Db, StoreError};

/// The shortest interval between two `typing` events of one connection on one thread.
const TYPING_INTERVAL: Duration = Duration::from_secs(1);

/// How long the node tries to send a close frame before dropping the connection anyway.
const CLOSE_FRAME_TIMEOUT: Duration = Duration::from_secs(1);

/// What the reader (and the bus, and wallet ops) hand to the writer.
enum Outbound {
    /// Boxed: a frame is large, and every slot of the queue is as large as the largest item
    /// (the queue's first block of slots is allocated with the connection).
    Frame(Box<ServerFrame>),
    Push(Delivery),
    Ping,
    /// Boxed, like the topics below: the rare items are kept small for the same reason
    /// (a `Bytes` or a `String` inline made every slot 40 bytes, not 24).
    Pong(Box<Bytes>),
    Close(u16, &'static str),
    /// The connection unsubscribed from this topic: forget its last sequence number.
    Forget(Box<str>),
    /// A resumed subscription of this topic is starting: hold its live pushes until its
    /// `Replay` has been sent, so that nothing live overtakes what is replayed.
    Hold(Box<str>),
    /// A resumed subscription's replay (boxed, as `Frame`).
    Replay(Box<Replay>),
}

/// Send these frames (the `subscribed` answer and the replayed events, skipping events the
/// client was already sent), raise the topic's last sequence number sent to `last`, then
/// release the held pushes (dropping those already sent), or drop them all when `keep` is
/// false (the topic was not subscribed after all).
struct Replay {
    topic: String,
    frames: Vec<ServerFrame>,
    last: Option<u64>,
    keep: bool,
}

/// Queue an item for the writer without waiting; a full queue marks the client slow (it is
/// closed with 4008 rather than buffered without bound).
fn enqueue(tx: &mpsc::Sender<Outbound>, slow: &CancellationToken, item: Outbound) {
    if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(item) {
        slow.cancel();
    }
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
async fn send(session: &mut Session, codec: Codec, bytes: impl Into<Bytes>) -> bool {
    let bytes = bytes.into();
    if codec.is_text() {
        match ByteString::try_from(bytes) {
            Ok(text) => session.text(text).await.is_ok(),
            Err(_) => false,
        }
    } else {
        session.binary(bytes).await.is_ok()
    }
}

/// Count the close, then send the close frame. The sending is boxed: each connection task
/// awaits it once, at its end, and its state (a close frame on a timer) would otherwise be
/// reserved in the task for the connection's whole life.
fn close_session(
    session: Session,
    gateway: &Gateway,
    code: u16,
    reason: &str,
) -> LocalBoxFuture<'static, ()> {
    gateway
        .metrics
        .ws_closed
        .with_label_values(&[&code.to_string()])
        .inc();
    let reason = CloseReason {
        code: CloseCode::from(code),
        description: Some(reason.to_owned()),
    };
    async move {
        let _ = tokio::time::timeout(CLOSE_FRAME_TIMEOUT, session.close(Some(reason))).await;
    }
    .boxed_local()
}

/// The last sequence number sent per topic. It holds only topics this connection is
/// subscribed to (an unsubscribe forgets its topic), so it is bounded by the subscription limit.
#[derive(Default)]
struct Sent {
    last_seq: HashMap<String, u64>,
}

impl Sent {
    /// True if `push` is new to this client: ephemeral (no `seq`), or sequenced after the last
    /// one sent on its topic. Records it as sent.
    fn is_fresh(&mut self, push: &Push) -> bool {
        let Some(seq) = push.seq else { return true };
        match self.last_seq.get_mut(&push.topic) {
            Some(last) if seq <= *last => false,
            Some(last) => {
                *last = seq;
                true
            }
            None => {
                self.last_seq.insert(push.topic.clone(), seq);
                true
            }
        }
    }
}

/// What the writer starts with: `hello`, the replayed events, and the sequence numbers they
/// cover.
struct Opening {
    frames: Vec<ServerFrame>,
    sent: Sent,
}

/// What the writer task owns.
struct Writer {
    session: Session,
    rx: mpsc::Receiver<Outbound>,
    codec: Codec,
    /// The session this connection authenticated with: its revocation closes it.
    session_id: String,
    gateway: Arc<Gateway>,
    slow: CancellationToken,
    /// Cancelled when the writer ends, which ends the reader.
    done: CancellationToken,
}

/// The writer: the only owner of the session once the connection is authenticated. Sends the
/// opening frames, then the queue, dropping pushes the client has already been sent.
async fn write_loop(writer: Writer, opening: Opening) {
    let Writer {
        mut session,
        mut rx,
        codec,
        session_id,
        gateway,
        slow,
        done,
    } = writer;
    let mut close_with: Option<(u16, &'static str)> = None;
    let mut sent = opening.sent;
    // Live pushes of topics being resumed, bounded like the queue they came from.
    let mut held: HashMap<String, Vec<Delivery>> = HashMap::new();
    let held_max = gateway.settings.ws_send_queue_max.max(1);
    let mut opening = opening.frames.into_iter();
    loop {
        let item = match opening.next() {
            Some(frame) => Some(Outbound::Frame(Box::new(frame))),
            None => tokio::select! {
                biased;
                () = slow.cancelled() => {
                    close_with = Some((close::SLOW_CONSUMER, "send queue full: read faster"));
                    break;
                }
                item = rx.recv() => item,
            },
        };
        let Some(item) = item else { break };
        let item = match item {
            Outbound::Push(push) if held.contains_key(&push.topic) => {
                let waiting = held.values().map(Vec::len).sum::<usize>();
                if waiting >= held_max {
                    close_with = Some((close::SLOW_CONSUMER, "send queue full: read faster"));
                    break;
                }
                if let Some(queue) = held.get_mut(&push.topic) {
                    queue.push(push);
                }
                continue;
            }
            Outbound::Hold(topic) => {
                held.entry(String::from(topic)).or_default();
                continue;
            }
            other => other,
        };
        let sending = async {
            match item {
                Outbound::Frame(frame) => send(&mut session, codec, codec.encode(&frame)).await,
                // Boxed: a replay is rare, and its state would otherwise be part of every
                // connection's writer for its whole life.
                Outbound::Replay(replay) => {
                    Box::pin(async {
                        let Replay {
                            topic,
                            frames,
                            last,
                            keep,
                        } = *replay;
                        let released = held.remove(&topic).unwrap_or_default();
                        let already = sent.last_seq.get(&topic).copied();
                        for frame in frames {
                            if let ServerFrame::Event(push) = &frame {
                                if push.seq.zip(already).is_some_and(|(seq, last)| seq <= last) {
                                    continue;
                                }
                            }
                            if !send(&mut session, codec, codec.encode(&frame)).await {
                                return false;
                            }
                        }
                        if let Some(last) = last {
                            let entry = sent.last_seq.entry(topic).or_insert(last);
                            *entry = (*entry).max(last);
                        }
                        if !keep {
                            return true;
                        }
                        for push in released {
                            if sent.is_fresh(&push)
                                && !send(&mut session, codec, push.frame(codec)).await
                            {
                                return false;
                            }
                        }
                        true
                    })
                    .await
                }
                Outbound::Hold(_) => true,
                Outbound::Push(push) => {
                    if !sent.is_fresh(&push) {
                        return true;
                    }
                    let revoked = matches!(&push.event,
                        Event::SessionRevoked { session_id: s } if *s == session_id);
                    let sent = send(&mut session, codec, push.frame(codec)).await;
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
                Outbound::Forget(topic) => {
                    sent.last_seq.remove(&*topic);
                    true
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
    let (code, reason) = close_with.unwrap_or((close::NORMAL, "closed"));
    close_session(session, &gateway, code, reason).await;
    done.cancel();
}

/// How a resume of the user topic went: the report for `hello`, the events to replay, and the
/// last sequence number the client has after them.
struct Resumed {
    report: TopicResume,
    events: Vec<(u64, Event)>,
    last: u64,
}

/// What a client that saw a topic up to `since` missed, given the topic's `head` (read after
/// the subscription) and a reader of its stored events after `since` (at most `limit`): the
/// report, and the events `since+1 ..= head`. A gap over `max`, a `since` ahead of the head
/// (a history the node does not have) or a hole in the store replays nothing and says
/// `gap_too_large`: the client reloads over REST.
async fn replay<F, Fut>(
    since: u64,
    head: u64,
    max: u64,
    read: F,
) -> Result<(TopicResume, Vec<(u64, Event)>), StoreError>
where
    F: FnOnce(i64) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<(u64, Event)>, StoreError>>,
{
    let reload = TopicResume {
        replayed: 0,
        head,
        gap_too_large: true,
    };
    let Some(missed) = head.checked_sub(since).filter(|missed| *missed <= max) else {
        return Ok((reload, Vec::new()));
    };
    // Up to the head only: later events were committed after the subscription and come live.
    let events = if missed == 0 {
        Vec::new()
    } else {
        read(i64::try_from(missed).unwrap_or(i64::MAX)).await?
    };
    // Exactly since+1 ..= head. Anything else (an entry that did not decode) would be a gap
    // the client could not see, so it reloads instead.
    let complete = events.len() as u64 == missed
        && events
            .iter()
            .zip(since + 1..)
            .all(|((seq, _), expected)| *seq == expected);
    if !complete {
        tracing::error!(
            since,
            head,
            read = events.len(),
            "stored events have a hole; the client is told to reload"
        );
        return Ok((reload, Vec::new()));
    }
    let report = TopicResume {
        replayed: missed,
        head,
        gap_too_large: false,
    };
    Ok((report, events))
}

/// Read what a client that saw the user topic up to `since` missed. Must run after the
/// connection subscribed to the topic (see the module documentation).
async fn resume(db: &Db, user_id: &str, since: u64, max: u64) -> Result<Resumed, StoreError> {
    let head = ledger::feed_head(db, user_id).await?;
    let (report, events) = replay(since, head, max, |limit| {
        ledger::feed_after(db, user_id, since, limit)
    })
    .await?;
    Ok(Resumed {
        report,
        events,
        last: head,
    })
}

/// Read what a client that saw a thread up to `since` missed. Must run after the
/// subscription; the head is the thread's latest sequence number at the read.
async fn resume_thread(
    db: &Db,
    thread_id: &str,
    since: u64,
    max: u64,
) -> Result<(TopicResume, Vec<(u64, Event)>), StoreError> {
    let head = conversations::thread(db, thread_id)
        .await?
        .map_or(0, |t| u64::try_from(t.last_seq).unwrap_or_default());
    replay(since, head, max, |limit| {
        conversations::events_after(db, thread_id, since, limit)
    })
    .await
}

/// Wait for an `auth` frame. On failure the session is closed here and `None` returned. The
/// frame's `since`, if any, comes back with the identity.
async fn authenticate_by_frame(
    gateway: &Gateway,
    session: &mut Option<Session>,
    stream: &mut AggregatedMessageStream,
    codec: Codec,
) -> Option<(Identity, Option<u64>)> {
    let deadline = Instant::now() + gateway.settings.ws_auth_timeout();
    let refuse = |code: u16, reason: &'static str| (code, reason);
    type Refused = (u16, &'static str, Option<ServerFrame>);
    let outcome: Result<(Identity, Option<u64>), Refused> = loop {
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
        // The first frame is read as the full `auth` op (with `since`); only if it is not one
        // is it read as any other frame, to say why it was refused.
        let auth_error = match codec.decode::<AuthFrame>(&bytes) {
            Ok(AuthFrame::Auth { id, token, since }) => {
                match gateway.auth.authenticate_with(&token, Remember::No).await {
                    Ok(identity) => break Ok((identity, since)),
                    Err(error) => {
                        let frame = ServerFrame::Error {
                            id,
                            code: ErrorCode::Unauthorized,
                            message: error.to_string(),
                        };
                        break Err((close::UNAUTHORIZED, "authentication failed", Some(frame)));
                    }
                }
            }
            Err(error) => error,
        };
        let frame = match codec.decode::<ClientFrame>(&bytes) {
            Ok(other) if !matches!(other, ClientFrame::Auth { .. }) => ServerFrame::Error {
                id: other.id().map(str::to_owned),
                code: ErrorCode::Unauthorized,
                message: "the first frame must be auth".into(),
            },
            _ => ServerFrame::Error {
                id: ClientFrame::id_of_undecodable(codec, &bytes),
                code: ErrorCode::BadRequest,
                message: auth_error.to_string(),
            },
        };
        break Err((close::UNAUTHORIZED, "not authenticated", Some(frame)));
    };
    match outcome {
        Ok(authenticated) => Some(authenticated),
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

/// Serve one connection from upgrade to close. `since` (from the upgrade's query) asks for a
/// resume of the user topic; an `auth` frame's `since` overrides it.
pub(super) async fn run(
    gateway: Arc<Gateway>,
    state: web::Data<AppState>,
    session: Session,
    mut stream: AggregatedMessageStream,
    codec: Codec,
    identity: Option<Identity>,
    since: Option<u64>,
) {
    let mut session = Some(session);
    let (identity, since) = match identity {
        Some(identity) => (identity, since),
        None => match Box::pin(authenticate_by_frame(
            &gateway,
            &mut session,
            &mut stream,
            codec,
        ))
        .await
        {
            Some((identity, from_frame)) => (identity, from_frame.or(since)),
            None => return,
        },
    };
    let Some(session) = session else { return };
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
    // can be missed, and nothing committed after the resume's read below either.
    let own_topic = user_topic(&user_id);
    if let Err(error) = Box::pin(gateway.bus.subscribe(&own_topic, subscriber, sink.clone())).await
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
    let resumed = match since {
        None => None,
        Some(since) => {
            match Box::pin(resume(&state.db, &user_id, since, settings.ws_resume_max)).await {
                Ok(resumed) => Some(resumed),
                Err(error) => {
                    tracing::error!(%error, "could not read the user feed to resume a connection");
                    Box::pin(async {
                        gateway.bus.unsubscribe_all(subscriber).await;
                        close_session(session, &gateway, close::INTERNAL_ERROR, "resume failed")
                            .await;
                    })
                    .await;
                    return;
                }
            }
        }
    };
    let mut opening = Opening {
        frames: Vec::with_capacity(1 + resumed.as_ref().map_or(0, |r| r.events.len())),
        sent: Sent::default(),
    };
    opening.frames.push(ServerFrame::Hello(Hello {
        user_id: user_id.clone(),
        session_id: identity.session.id.clone(),
        heartbeat_ms: settings.ws_heartbeat_ms,
        idle_timeout_ms: settings.ws_idle_timeout_ms,
        max_frame_bytes: settings.ws_frame_bytes_max,
        user_topic: own_topic.clone(),
        resume: resumed.as_ref().map(|r| r.report.clone()),
    }));
    if let Some(resumed) = resumed {
        opening
            .frames
            .extend(resumed.events.into_iter().map(|(seq, event)| {
                ServerFrame::Event(Push {
                    topic: own_topic.clone(),
                    seq: Some(seq),
                    event,
                })
            }));
        opening
            .sent
            .last_seq
            .insert(own_topic.clone(), resumed.last);
    }
    tracing::debug!(user_id = %user_id, resume = since.is_some(), "websocket connected");
    // Only these two are needed from here on: the rest of the identity is freed now rather
    // than held for the connection's life.
    let (session_id, admin) = (identity.session.id.clone(), identity.role().is_admin());
    drop(identity);
    let writer = Writer {
        session,
        rx,
        codec,
        session_id,
        gateway: Arc::clone(&gateway),
        slow: slow.clone(),
        done: done.clone(),
    };
    let writer = actix_web::rt::spawn(write_loop(writer, opening));
    let mut reader = Reader {
        gateway: Arc::clone(&gateway),
        state,
        tx,
        slow,
        codec,
        admin,
        user_id,
        subscriber,
        sink,
        topics: HashSet::from([own_topic]),
        wallet_ops: Arc::new(Semaphore::new(wallet_ops::WALLET_OPS_IN_FLIGHT_MAX)),
        watched: HashSet::new(),
        typed: HashMap::new(),
    };
    reader.run(&mut stream, &done).await;
    // Boxed, like every other await here but the reader's loop: the state of a future is kept
    // for the connection's whole life, idle or not, so what runs only at the start and at the
    // end is on the heap only while it runs (BENCHMARKS.md section 4, memory).
    Box::pin(async move {
        gateway.bus.unsubscribe_all(subscriber).await;
        reader.leave_threads().await;
        drop(reader);
        let _ = writer.await;
    })
    .await;
}

struct Reader {
    gateway: Arc<Gateway>,
    state: web::Data<AppState>,
    tx: mpsc::Sender<Outbound>,
    slow: CancellationToken,
    codec: Codec,
    user_id: String,
    /// `admin` or `superAdmin`: may subscribe to any thread.
    admin: bool,
    subscriber: SubscriberId,
    sink: Arc<Sink>,
    topics: HashSet<String>,
    /// Permits for wallet ops in flight on this connection.
    wallet_ops: Arc<Semaphore>,
    /// Threads this connection watches as a participant (for presence).
    watched: HashSet<String>,
    /// When this connection last sent `typing` per watched thread.
    typed: HashMap<String, Instant>,
}

impl Reader {
    /// Queue a frame for the writer; a full queue marks the client slow.
    fn queue(&self, item: Outbound) {
        enqueue(&self.tx, &self.slow, item);
    }

    fn reply(&self, frame: ServerFrame) {
        self.queue(Outbound::Frame(Box::new(frame)));
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
                    // Boxed: an idle connection's task then holds only this loop, not the
                    // state of the longest op (a resume's store reads), for its whole life.
                    if !Box::pin(self.on_message(message)).await {
                        return;
                    }
                    // A long op (subscribing to every thread) is not the client's silence.
                    idle.as_mut().reset(Instant::now() + idle_timeout);
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
                self.queue(Outbound::Pong(Box::new(payload)));
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
            Err(error) => {
                let id = ClientFrame::id_of_undecodable(self.codec, &bytes);
                self.error(id, ErrorCode::BadRequest, error.to_string());
            }
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
                    self.queue(Outbound::Forget(topic.as_str().into()));
                    if let Some(thread_id) = topic.strip_prefix("thread:") {
                        self.typed.remove(thread_id);
                        if self.watched.remove(thread_id) {
                            self.gateway.unwatch(thread_id, &self.user_id).await;
                        }
                    }
                    self.reply(ServerFrame::Unsubscribed { id, topic });
                } else {
                    self.error(id, ErrorCode::NotFound, "not subscribed to this topic");
                }
            }
            frame @ (ClientFrame::Balance { .. }
            | ClientFrame::Pay { .. }
            | ClientFrame::RequestPayment { .. }
            | ClientFrame::RejectPayment { .. }
            | ClientFrame::CancelRequest { .. }) => self.wallet_op(frame),
            ClientFrame::Typing { id, thread_id } => self.typing(id, thread_id).await,
            frame @ (ClientFrame::PostMessage { .. }
            | ClientFrame::EditMessage { .. }
            | ClientFrame::HideMessage { .. }
            | ClientFrame::MarkRead { .. }) => self.message_op(frame),
        }
    }

    /// Check a conversation op here, then answer it off the reader, like wallet ops (and
    /// sharing their in-flight bound).
    fn message_op(&self, frame: ClientFrame) {
        let id = frame.id().map(str::to_owned);
        let answer = match message_ops::prepare(&self.state, &self.user_id, self.admin, frame) {
            Ok(answer) => answer,
            Err(refused) => {
                self.reply(*refused);
                return;
            }
        };
        let Ok(permit) = Arc::clone(&self.wallet_ops).try_acquire_owned() else {
            self.error(
                id,
                ErrorCode::Busy,
                format!(
                    "at most {} ops in flight per connection; retry with the same id",
                    wallet_ops::WALLET_OPS_IN_FLIGHT_MAX
                ),
            );
            return;
        };
        let (tx, slow) = (self.tx.clone(), self.slow.clone());
        actix_web::rt::spawn(async move {
            if let Some(frame) = answer.await {
                enqueue(&tx, &slow, Outbound::Frame(Box::new(frame)));
            }
            drop(permit);
        });
    }

    /// Subscribe to a thread the caller may see: its guest, its host, or an admin. With
    /// `since`, first replay the thread's events after it (at most `ws_resume_max`; a larger
    /// gap is answered `gap_too_large` and the client pages through history over REST).
    async fn subscribe_thread(&mut self, id: Option<String>, topic: String, since: Option<u64>) {
        let thread_id = topic.trim_start_matches("thread:").to_owned();
        let caller = Caller {
            user_id: &self.user_id,
            admin: self.admin,
        };
        let thread = match visible_thread(&self.state.db, caller, &thread_id).await {
            Ok(thread) => thread,
            Err(failure) => {
                self.reply(message_ops::failed(id, &failure));
                return;
            }
        };
        let fresh = !self.topics.contains(&topic);
        if fresh && self.topics.len() >= self.gateway.settings.ws_subscriptions_per_connection_max {
            self.error(
                id,
                ErrorCode::LimitExceeded,
                "too many subscriptions on this connection",
            );
            return;
        }
        let Some(since) = since else {
            if fresh && !self.bus_subscribe(&id, &topic).await {
                return;
            }
            self.reply(ServerFrame::Subscribed {
                id,
                topic,
                resume: None,
            });
            self.watch(&thread).await;
            return;
        };
        // Hold live pushes, subscribe, then read: whatever commits after the read arrives live
        // and waits behind the replay; what both carry goes out once.
        self.queue(Outbound::Hold(topic.as_str().into()));
        if fresh && !self.bus_subscribe(&id, &topic).await {
            self.queue(Outbound::Replay(Box::new(Replay {
                topic,
                frames: Vec::new(),
                last: None,
                keep: false,
            })));
            return;
        }
        let resumed = resume_thread(
            &self.state.db,
            &thread_id,
            since,
            self.gateway.settings.ws_resume_max,
        )
        .await;
        let (report, events) = match resumed {
            Ok(resumed) => resumed,
            Err(error) => {
                tracing::error!(%error, "could not read a thread's events to resume it");
                // A subscription made for this resume is undone (nothing of the topic is
                // sent: a retry starts clean); a topic that was live stays live, unchanged.
                if fresh {
                    self.gateway.bus.unsubscribe(&topic, self.subscriber).await;
                    self.topics.remove(&topic);
                }
                self.queue(Outbound::Replay(Box::new(Replay {
                    topic,
                    frames: vec![ServerFrame::Error {
                        id,
                        code: ErrorCode::Internal,
                        message: "resume failed; nothing was subscribed; retry".into(),
                    }],
                    last: None,
                    keep: !fresh,
                })));
                return;
            }
        };
        let last = report.head;
        let mut frames = Vec::with_capacity(events.len() + 1);
        frames.push(ServerFrame::Subscribed {
            id,
            topic: topic.clone(),
            resume: Some(report),
        });
        frames.extend(events.into_iter().map(|(seq, event)| {
            ServerFrame::Event(Push {
                topic: topic.clone(),
                seq: Some(seq),
                event,
            })
        }));
        self.queue(Outbound::Replay(Box::new(Replay {
            topic,
            frames,
            last: Some(last),
            keep: true,
        })));
        self.watch(&thread).await;
    }

    /// After a participant subscribed to a thread: announce them (their first connection on
    /// it), and tell this connection whether the other participant is watching too (as far
    /// as this node knows; later changes arrive as `presence` events from every node).
    async fn watch(&mut self, thread: &conversations::ThreadRow) {
        if !thread.is_participant(&self.user_id) || !self.watched.insert(thread.id.clone()) {
            return;
        }
        self.gateway.watch(&thread.id, &self.user_id).await;
        let other = if thread.guest_id == self.user_id {
            &thread.host_id
        } else {
            &thread.guest_id
        };
        if self.gateway.is_watching(&thread.id, other) {
            self.reply(ServerFrame::Event(Push {
                topic: format!("thread:{}", thread.id),
                seq: None,
                event: Event::Presence {
                    thread_id: thread.id.clone(),
                    user_id: other.clone(),
                    online: true,
                },
            }));
        }
    }

    /// A typing indicator: for a thread this connection watches as a participant (subscribe
    /// first), at most one per [`TYPING_INTERVAL`] per thread; more are dropped silently, so
    /// a client cannot flood the other participant.
    async fn typing(&mut self, id: Option<String>, thread_id: String) {
        if !self.watched.contains(&thread_id) {
            self.error(
                id,
                ErrorCode::Forbidden,
                "subscribe to the thread as its guest or host first",
            );
            return;
        }
        let now = Instant::now();
        if self
            .typed
            .get(&thread_id)
            .is_some_and(|at| now.duration_since(*at) < TYPING_INTERVAL)
        {
            return;
        }
        self.typed.insert(thread_id.clone(), now);
        let push = Push {
            topic: format!("thread:{thread_id}"),
            seq: None,
            event: Event::Typing {
                thread_id,
                user_id: self.user_id.clone(),
            },
        };
        if let Err(error) = self.gateway.bus.publish(push).await {
            tracing::warn!(%error, "a typing indicator reached this node's connections only");
        }
    }

    /// The connection is ending: it no longer watches its threads.
    async fn leave_threads(&mut self) {
        for thread_id in std::mem::take(&mut self.watched) {
            self.gateway.unwatch(&thread_id, &self.user_id).await;
        }
    }

    /// Subscribe to every active thread of the user, most recently active first, as far as
    /// the subscription limit allows: one `subscribed` per thread. New threads are announced
    /// on the user topic (`thread_created`).
    async fn subscribe_all_threads(&mut self, id: Option<String>) {
        let limit = self.gateway.settings.ws_subscriptions_per_connection_max;
        let room = limit.saturating_sub(self.topics.len());
        let fetch = i64::try_from(room + 1).unwrap_or(i64::MAX);
        let ids = match conversations::thread_ids_of(&self.state.db, &self.user_id, fetch).await {
            Ok(ids) => ids,
            Err(error) => {
                tracing::error!(%error, "could not list a user's threads");
                self.error(id, ErrorCode::Internal, "subscription failed; retry");
                return;
            }
        };
        let more = ids.len() > room;
        for thread_id in ids.into_iter().take(room) {
            Box::pin(self.subscribe_thread(id.clone(), format!("thread:{thread_id}"), None)).await;
        }
        if more {
            self.error(
                id,
                ErrorCode::LimitExceeded,
                format!("only the {room} most recently active threads were subscribed"),
            );
        }
    }

    /// Subscribe this connection to a topic on the bus; false (after telling the client) when
    /// that failed.
    async fn bus_subscribe(&mut self, id: &Option<String>, topic: &str) -> bool {
        let sink: Arc<dyn Subscriber> = self.sink.clone();
        if let Err(error) = self
            .gateway
            .bus
            .subscribe(topic, self.subscriber, sink)
            .await
        {
            tracing::error!(%error, "subscription failed");
            self.error(
                id.clone(),
                ErrorCode::Internal,
                "subscription failed; retry",
            );
            return false;
        }
        self.topics.insert(topic.to_owned());
        true
    }

    /// Check a wallet op here, then answer it off the reader: the wallet's durable answer
    /// takes a journal commit, and the reader must go on serving pings and other frames.
    fn wallet_op(&self, frame: ClientFrame) {
        let id = frame.id().map(str::to_owned);
        let answer = match wallet_ops::prepare(&self.state, &self.user_id, frame) {
            Ok(answer) => answer,
            Err(refused) => {
                self.reply(refused.into_frame());
                return;
            }
        };
        let Ok(permit) = Arc::clone(&self.wallet_ops).try_acquire_owned() else {
            self.error(
                id,
                ErrorCode::Busy,
                format!(
                    "at most {} wallet ops in flight per connection; retry with the same id",
                    wallet_ops::WALLET_OPS_IN_FLIGHT_MAX
                ),
            );
            return;
        };
        let (tx, slow) = (self.tx.clone(), self.slow.clone());
        // Runs to the end even if the connection closes: the op is decided by then or will
        // be, and a retry with the same id gets its answer.
        actix_web::rt::spawn(async move {
            let frame = answer.await;
            enqueue(&tx, &slow, Outbound::Frame(Box::new(frame)));
            drop(permit);
        });
    }

    async fn subscribe(&mut self, id: Option<String>, topic: String, since: Option<u64>) {
        if topic.starts_with("thread:") {
            return self.subscribe_thread(id, topic, since).await;
        }
        if topic == "threads" {
            if since.is_some() {
                self.error(
                    id,
                    ErrorCode::BadRequest,
                    "resume each thread with its own since",
                );
                return;
            }
            return self.subscribe_all_threads(id).await;
        }
        if let Err((code, message)) = self.may_subscribe(&topic) {
            self.error(id, code, message);
            return;
        }
        if since.is_some() {
            if topic == user_topic(&self.user_id) {
                // The user topic is live from before `hello`: rewinding it mid-stream would
                // interleave old events with live ones. Resume happens at connect.
                self.error(
                    id,
                    ErrorCode::Conflict,
                    "the user topic is live on this connection since hello; to resume it, \
                     reconnect with since (query parameter or auth frame)",
                );
            } else {
                self.error(
                    id,
                    ErrorCode::BadRequest,
                    "this topic has no resumable history",
                );
            }
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

    /// Who may subscribe to what. Topics: `user:<id>` (only one's own); `listing:<id>` (anyone
    /// signed in: availability is public, and its pushes carry no guest).
    fn may_subscribe(&self, topic: &str) -> Result<(), (ErrorCode, &'static str)> {
        match topic.split_once(':') {
            Some(("user", id)) if id == self.user_id => Ok(()),
            Some(("user", _)) => Err((ErrorCode::Forbidden, "another user's topic")),
            Some(("listing", id)) if !id.is_empty() && id.len() <= 64 => Ok(()),
            _ => Err((ErrorCode::BadRequest, "unknown topic")),
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every slot of a connection's send queue is as large as [`super::Outbound`], and the
    /// queue's first block of slots is allocated with the connection, idle or not: large items
    /// are boxed so that an idle connection stays small.
    #[test]
    fn a_send_queue_slot_stays_small() {
        let size = std::mem::size_of::<super::Outbound>();
        // 24: the queue's first block is 32 slots and a header, 800 bytes, which the
        // allocator rounds to 896 (at 40 bytes a slot it was 1,311, rounded to 1,536).
        assert!(size <= 24, "Outbound is {size} bytes");
    }
}
