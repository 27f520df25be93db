//! Frames, events and the bus envelope.

use serde::{Deserialize, Serialize};

use crate::Codec;

/// A frame sent by a client. Every request may carry a client-chosen `id`; the reply echoes it.
/// Unknown ops and unknown fields are refused with a `bad_request` error frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Authenticate a connection that was opened without a token. Must be the first frame.
    Auth {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        token: String,
    },
    /// Application-level liveness check; answered with `pong`.
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Start receiving a topic's events. With `since`, first receive every sequenced event after
    /// that sequence number (resume), then live events.
    Subscribe {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        topic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    /// Stop receiving a topic's events.
    Unsubscribe {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        topic: String,
    },
    /// The caller's balances; answered with `wallet`.
    Balance {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Pay another user, optionally answering a payment request (`transaction_id`). The `id` is
    /// required and is the idempotency key: the same `id` again gets the first answer and never
    /// a second payment, also on another connection. Answered with `wallet`.
    Pay {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The payee's Evergreen id: `user:<id>`, `facebook:<id>` or `qr:<code>`.
        payee: String,
        /// A positive decimal string in the currency's unit (`"25"`, `"12.50"`).
        amount: String,
        /// ISO 4217 code or `EVG` (the default). EVG amounts are whole credits.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        currency: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// The payment request this payment answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transaction_id: Option<String>,
    },
    /// Ask another user (the payor) to pay the caller. `id` required (idempotency key).
    /// Answered with `wallet` carrying the new request's `transaction_id`.
    RequestPayment {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// The payor's Evergreen id.
        payor: String,
        amount: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        currency: Option<String>,
        description: String,
    },
    /// Refuse a payment request addressed to the caller. `id` required (idempotency key).
    RejectPayment {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        transaction_id: String,
    },
    /// Withdraw a payment request the caller made. `id` required (idempotency key).
    CancelRequest {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        transaction_id: String,
    },
    /// Post a message to a thread the caller takes part in. `id` is required and is the
    /// idempotency key (per sender, shared with REST's `Idempotency-Key`): a retried post is
    /// stored and delivered once. Answered with `posted`.
    PostMessage {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        thread_id: String,
        content: String,
        /// `text` (the default), `media` or `system`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        media_url: Option<String>,
    },
    /// Change the content of a message the caller sent. `id` required. Answered with `ack`.
    EditMessage {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        message_id: String,
        content: String,
    },
    /// Hide (soft-delete) a message the caller sent. `id` required. Answered with `ack`.
    HideMessage {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        message_id: String,
    },
    /// Mark a thread read up to a sequence number. Answered with `ack`.
    MarkRead {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        thread_id: String,
        up_to_seq: u64,
    },
    /// Tell the other participant the caller is typing (ephemeral, not stored, not answered).
    Typing {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        thread_id: String,
    },
}

impl ClientFrame {
    /// The client's correlation id, echoed in the reply.
    pub fn id(&self) -> Option<&str> {
        match self {
            ClientFrame::Auth { id, .. }
            | ClientFrame::Ping { id }
            | ClientFrame::Subscribe { id, .. }
            | ClientFrame::Unsubscribe { id, .. }
            | ClientFrame::Balance { id }
            | ClientFrame::Pay { id, .. }
            | ClientFrame::RequestPayment { id, .. }
            | ClientFrame::RejectPayment { id, .. }
            | ClientFrame::CancelRequest { id, .. }
            | ClientFrame::PostMessage { id, .. }
            | ClientFrame::EditMessage { id, .. }
            | ClientFrame::HideMessage { id, .. }
            | ClientFrame::MarkRead { id, .. }
            | ClientFrame::Typing { id, .. } => id.as_deref(),
        }
    }

    /// The `id` of a frame that could not be decoded, when it has a string `id` at the top
    /// level, so that the error frame can still echo it.
    pub fn id_of_undecodable(codec: Codec, bytes: &[u8]) -> Option<String> {
        /// Any map with an `id`; every other field is ignored.
        #[derive(Deserialize)]
        struct IdOnly {
            #[serde(default)]
            id: Option<String>,
        }
        codec.decode::<IdOnly>(bytes).ok().and_then(|f| f.id)
    }
}

/// The `auth` op with every field it may carry: how the node reads the first frame of a
/// connection opened without a token. It is [`ClientFrame::Auth`] plus `since`, the last
/// sequence number the client saw on its user topic (resume, see [`Hello::resume`]).
/// `ClientFrame::Auth` stays without `since` so that existing callers building it keep
/// compiling; after `hello` an `auth` frame is refused either way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthFrame {
    Auth {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
}

/// What the node sends after a connection is authenticated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub user_id: String,
    pub session_id: String,
    /// The interval of the node's `heartbeat` frames.
    pub heartbeat_ms: u64,
    /// A connection that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout_ms: u64,
    /// The largest frame the node accepts.
    pub max_frame_bytes: usize,
    /// The topic every connection of this user is subscribed to from the start.
    pub user_topic: String,
    /// Present when the client named `since` (query parameter or `auth` frame): how the resume
    /// of the user topic went. The replayed events follow `hello` at once, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<TopicResume>,
}

/// How far a resumed subscription got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicResume {
    /// Events replayed before live delivery started.
    pub replayed: u64,
    /// The topic's latest sequence number when the subscription started.
    pub head: u64,
    /// True when the gap was larger than the fast path allows (or `since` was ahead of
    /// `head`, a sequence from another history): nothing was replayed and the client must
    /// reload its state over REST (Evergreen `account_info` and `transaction_list`). Live events
    /// after `head` follow either way.
    pub gap_too_large: bool,
}

/// A frame sent by the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerFrame {
    /// The connection is authenticated.
    Hello(Hello),
    /// The answer to `ping`.
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// The answer to `subscribe`.
    Subscribed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        topic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<TopicResume>,
    },
    /// The answer to `unsubscribe`.
    Unsubscribed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        topic: String,
    },
    /// A request failed; `id` echoes the request's id when it had one.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        code: ErrorCode,
        message: String,
    },
    /// The answer to a wallet op (`balance`, `pay`, `request_payment`, `reject_payment`,
    /// `cancel_request`). Business outcomes are a `status`; failures to get an answer at all
    /// (invalid frame, busy) are `error` frames.
    Wallet(WalletAnswer),
    /// The answer to `post_message`: the message as stored (a retry gets the same message).
    Posted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        message: ThreadMessage,
    },
    /// The answer to `edit_message`, `hide_message` and `mark_read`: the change is durable as
    /// the thread's event `seq` (a no-op answers the thread's latest `seq`).
    Ack {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        thread_id: String,
        seq: u64,
    },
    /// A pushed event.
    Event(Push),
    /// Sent every heartbeat interval; carries the node's clock in Unix milliseconds.
    Heartbeat { ts: i64 },
}

/// The answer to a wallet op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalletAnswer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The Evergreen status words: `success`, `insufficient_funds`, `invalid_account`,
    /// `wrong_pin`, `already_paid` or `error`.
    pub status: String,
    /// Why, for a status other than `success`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The caller's balances after the op, when the caller's own wallet decided it (`balance`,
    /// `pay`, `reject_payment`); empty when another wallet did (`request_payment` and
    /// `cancel_request` are decided by the payor's wallet and do not move the caller's money).
    pub balances: Vec<WalletBalance>,
    /// The payment request the op created or named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// The transfer a successful `pay` made (the `transfer_id` of the payee's
    /// `payment_received` event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_id: Option<String>,
}

/// A balance in one currency. Amounts are decimal strings at the currency's scale, as in
/// `balance` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletBalance {
    pub currency: String,
    /// Spendable: the balance minus holds.
    pub available: String,
    /// Everything in the account, held funds included.
    pub total: String,
}

/// A pushed event on a topic. Sequenced events (`seq` present) are durable and can be resumed;
/// ephemeral ones (typing, presence, session notices) have no `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Push {
    pub topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub event: Event,
}

/// The events the node pushes. New capabilities add variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// A session of this user was revoked (logout). Connections authenticated with it are closed
    /// with close code 4001 right after this event.
    SessionRevoked { session_id: String },
    /// The user's balance in a currency changed. Amounts are decimal strings.
    Balance {
        currency: String,
        available: String,
        total: String,
    },
    /// Money arrived from another user.
    PaymentReceived {
        transfer_id: String,
        from: String,
        amount: String,
        currency: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    /// A payment request was made (sent to both the payor and the requester).
    PaymentRequested {
        transaction_id: String,
        payor: String,
        payee: String,
        amount: String,
        currency: String,
        description: String,
    },
    /// A payment request was paid (`completed`), `rejected` or `cancelled`.
    PaymentRequestClosed {
        transaction_id: String,
        status: String,
    },
    /// A message was posted to the thread (topic `thread:<id>`).
    MessagePosted { message: ThreadMessage },
    /// A message was edited: the fields present changed (`media_url: ""` means cleared).
    MessageEdited {
        message_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        media_url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_flagged: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_moderated: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_read: Option<bool>,
    },
    /// A message was hidden (soft-deleted).
    MessageHidden { message_id: String },
    /// A participant read the thread up to `up_to_seq`.
    ReadMarked { user_id: String, up_to_seq: u64 },
    /// The thread's state changed.
    ThreadUpdated {
        thread_id: String,
        is_open: bool,
        is_active: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        listing_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reservation_id: Option<String>,
    },
    /// A participant is typing (ephemeral).
    Typing { thread_id: String, user_id: String },
    /// A participant started (`online: true`) or stopped watching the thread: their first
    /// connection subscribed to it, or their last one left (ephemeral).
    Presence {
        thread_id: String,
        user_id: String,
        online: bool,
    },
    /// A thread the user takes part in was created (ephemeral, on both participants' user
    /// topics): subscribe to `thread:<thread_id>` to follow it.
    ThreadCreated {
        thread_id: String,
        guest_id: String,
        host_id: String,
    },
    /// A notification was stored for the user (ephemeral here: the notification itself is
    /// listed by `GET /notification-api/notifications`).
    Notification {
        notification_id: String,
        /// `message` or `payment_request` (`announcement` for ones an admin sent).
        notification_kind: String,
        title: String,
        body: String,
    },
    /// A day of a listing's calendar changed (ephemeral, topic `listing:<id>`): booked or
    /// released by a reservation, or set by the host. Who booked it is not part of it.
    CalendarDay {
        listing_id: String,
        /// `YYYY-MM-DD`.
        date: String,
        is_available: bool,
        /// True while a reservation holds the night.
        booked: bool,
        /// Decimal string, in the listing's currency.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        price_override: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_stay: Option<i64>,
        /// False when the entry was deleted.
        is_active: bool,
    },
    /// A reservation's booking or payment status changed (ephemeral, on the guest's and the
    /// host's user topics).
    ReservationUpdated {
        reservation_id: String,
        listing_id: String,
        booking_status: String,
        payment_confirmation: String,
        check_in: String,
        check_out: String,
        is_active: bool,
    },
}

/// A message of a thread, as pushed and as answered to `post_message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreadMessage {
    pub id: String,
    pub thread_id: String,
    /// The thread sequence number of the post.
    pub seq: u64,
    pub sender_id: String,
    pub content: String,
    /// `text`, `media` or `system`.
    pub message_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_url: Option<String>,
    /// Unix milliseconds.
    pub sent_at: i64,
}

/// Error codes of `error` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame could not be decoded, or an op's arguments are invalid.
    BadRequest,
    /// The connection is not authenticated, or the token is invalid.
    Unauthorized,
    /// The user may not do this (for example, subscribe to another user's topic).
    Forbidden,
    /// The target does not exist.
    NotFound,
    /// The target's queue is full; retry later with the same id.
    Busy,
    /// The request conflicts with the current state.
    Conflict,
    /// Too many subscriptions or similar per-connection limits.
    LimitExceeded,
    /// An unexpected failure in the node; nothing was applied.
    Internal,
}

/// WebSocket close codes the node uses.
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The node is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame of a type the negotiated codec does not use (binary in JSON mode, or text in
    /// MessagePack mode).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A frame broke the protocol: for example a request before authentication.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A frame was larger than the node's maximum frame size.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The node failed unexpectedly.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// Nothing was received within the idle timeout.
    pub const IDLE_TIMEOUT: u16 = 4000;
    /// Authentication failed or the session was revoked.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The client did not read its frames fast enough: its send queue filled up.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// The user already has the maximum number of connections.
    pub const TOO_MANY_CONNECTIONS: u16 = 4029;
}

/// A committed event travelling between nodes over the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusEnvelope {
    /// The node that committed the event.
    pub origin: String,
    pub push: Push,
}
