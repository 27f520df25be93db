use std::time::Duration;

/// Why a command to an actor did not produce its entity's reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActorError {
    /// The actor's mailbox or the journal queue is full. Nothing was applied; retry later.
    #[error("busy: {0} queue is full")]
    Busy(&'static str),
    /// The batch holding the command's events failed to commit. Nothing was applied.
    #[error("not stored: {0}")]
    NotStored(String),
    /// The batch holding the command's events went to the store, which did not confirm it (the
    /// commit timed out, or the connection broke during it): it may have been applied or not.
    /// A retry with the same idempotency key answers which, and does not apply it twice.
    #[error("unconfirmed: {0}")]
    Unconfirmed(String),
    /// The actor could not be activated (its state failed to load).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The idempotency key was used before for a different request.
    #[error("idempotency key reused for a different request")]
    KeyReused,
    /// The node is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}

impl ActorError {
    /// How long a client should wait before retrying, where retrying makes sense.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ActorError::Busy(_)
            | ActorError::Unavailable(_)
            | ActorError::NotStored(_)
            | ActorError::Unconfirmed(_) => Some(Duration::from_secs(1)),
            ActorError::KeyReused | ActorError::ShuttingDown => None,
        }
    }
}
