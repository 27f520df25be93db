//! The node's real-time wire format.
//!
//! Everything a WebSocket client and the node say to each other is defined here, and the load
//! generator uses the very same types. A frame is JSON in a text message by default, or
//! MessagePack (named fields) in a binary message when the client negotiated the
//! `node.v1.msgpack` subprotocol. The bus envelope that carries committed events between nodes
//! is defined here too. `docs/PROTOCOL.md` in the repository is the prose version of this file.

mod codec;
mod frames;

pub use codec::{Codec, DecodeError, SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK};
pub use frames::{
    close, AuthFrame, BusEnvelope, ClientFrame, ErrorCode, Event, Hello, Push, ServerFrame,
    ThreadMessage, TopicResume, WalletAnswer, WalletBalance,
};
