//! The node's hot state: one actor per entity, and the write-behind journal behind them.
//!
//! This crate holds no SQL, Redis or HTTP. It defines the traits it needs from the outside
//! ([`journal::JournalStore`], [`journal::EventSink`], [`registry::Loader`]) and the node
//! implements them. That keeps the runtime testable with an in-memory store that injects faults.
//!
//! The guarantees, which `docs/RUNTIME.md` spells out and the tests hold the code to:
//! - one actor per entity id at a time, activated on first use, serialising every change;
//! - a command's effect is applied to memory at once, journaled in a batch with other actors'
//!   events, and its reply released only after that batch committed;
//! - a failed batch fails every waiter in it and resets every actor with events in it, so
//!   nothing unacknowledged survives in memory;
//! - every queue is bounded; a full mailbox or journal queue answers [`ActorError::Busy`] at once.

pub mod calendar;
pub mod conversation;
pub mod entity;
pub mod journal;
pub mod money;
pub mod registry;
pub mod wallet;

mod error;
mod idempotency;

pub use entity::{Entity, Outcome};
pub use error::ActorError;
pub use idempotency::{key_digest, IdempotencyKey, Request, StoredKeys};

/// Every event the node journals, across entity kinds. Each entity kind adds its variant.
#[derive(Debug, Clone)]
pub enum DomainEvent {
    Wallet(wallet::Event),
    Conversation(conversation::Event),
    Calendar(calendar::Event),
}

impl From<calendar::Event> for DomainEvent {
    fn from(event: calendar::Event) -> Self {
        DomainEvent::Calendar(event)
    }
}

impl From<conversation::Event> for DomainEvent {
    fn from(event: conversation::Event) -> Self {
        DomainEvent::Conversation(event)
    }
}

impl From<wallet::Event> for DomainEvent {
    fn from(event: wallet::Event) -> Self {
        DomainEvent::Wallet(event)
    }
}
