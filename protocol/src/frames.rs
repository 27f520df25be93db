//! Frames, events and the bus envelope.

use serde::{Deserialize, Serialize};

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
}

impl ClientFrame {
    /// The client's correlation id, echoed in the reply.
    pub fn id(&self) -> Option<&str> {
        match self {
            ClientFrame::Auth { id, .. }
            | ClientFrame::Ping { id }
            | ClientFrame::Subscribe { id, .. }
            | ClientFrame::Unsubscribe { id, .. } => id.as_deref(),
        }
    }
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
}

/// How far a resumed subscription got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicResume {
    /// Events replayed before live delivery started.
    pub replayed: u64,
    /// The topic's latest sequence number when the subscription started.
    pub head: u64,
    /// True when the gap was larger than the fast path allows: nothing was replayed and the
    /// client must page through history over REST from its `since` up to `head`.
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
    /// A pushed event.
    Event(Push),
    /// Sent every heartbeat interval; carries the node's clock in Unix milliseconds.
    Heartbeat { ts: i64 },
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
