//! What an entity is to the runtime.

use std::fmt::Display;
use std::hash::Hash;

use serde::{de::DeserializeOwned, Serialize};

/// The result of applying one command to an entity in memory.
#[derive(Debug)]
pub struct Outcome<Ev, R> {
    /// Events that make the change durable; empty for reads and refusals.
    pub events: Vec<Ev>,
    /// The answer, released to the caller once `events` are committed.
    pub reply: R,
}

impl<Ev, R> Outcome<Ev, R> {
    /// An answer that changes nothing.
    pub fn reply(reply: R) -> Self {
        Outcome {
            events: Vec::new(),
            reply,
        }
    }
}

/// One kind of entity (wallet, conversation, calendar). Its actor owns one instance per id and
/// calls [`Entity::handle`] for one command at a time; that is the whole concurrency control.
pub trait Entity: Sized + Unpin + Send + 'static {
    /// A short stable name ("wallet"), used in the journal and in fencing epochs.
    const KIND: &'static str;
    type Id: Clone + Eq + Hash + Display + Send + Sync + Unpin + 'static;
    type Command: Send + 'static;
    /// Replies are stored with idempotency keys and replayed to retries, hence serde.
    type Reply: Clone + Send + Sync + Serialize + DeserializeOwned + 'static;
    type Event: Send + 'static;
    /// A change another entity's committed events make to this one (a credit to a payee):
    /// already durable, so it is applied in memory only and can never be refused.
    type Effect: Send + 'static;

    /// Apply one command to memory. Must not block: no I/O happens here.
    fn handle(&mut self, command: Self::Command) -> Outcome<Self::Event, Self::Reply>;

    /// Apply a committed effect to memory.
    fn apply(&mut self, effect: Self::Effect);
}
