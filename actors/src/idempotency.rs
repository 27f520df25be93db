//! Idempotency keys: a retried command gets the first answer, never a second effect.
//!
//! Three places answer a repeated key, in this order:
//! 1. the store: the registry looks the key up before sending the command (a retry that comes
//!    after the first attempt committed);
//! 2. the actor's memory: a key seen by this incarnation, committed or still in flight (two
//!    copies sent at once: the second waits for the first's answer);
//! 3. the fence between them: if the actor was activated after the caller's store lookup, a key
//!    unknown to the actor may have been committed by the previous incarnation in between, so
//!    the actor sends the caller back to look again.
//!
//! The key and its reply are journaled in the same batch as the effect.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use tokio::sync::watch;

use crate::ActorError;

/// The longest key accepted.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;

/// A caller-chosen key, unique per actor, that makes a mutating command safe to retry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Accepts 1 to [`IDEMPOTENCY_KEY_BYTES_MAX`] bytes of printable ASCII.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.is_empty() || raw.len() > IDEMPOTENCY_KEY_BYTES_MAX {
            return Err("idempotency key must be 1 to 128 characters");
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("idempotency key must be printable ASCII without spaces");
        }
        Ok(IdempotencyKey(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A command with the idempotency data that travels with it.
#[derive(Debug)]
pub struct Request<C> {
    pub command: C,
    /// The key and a fingerprint of the request it was first used for: the same key with a
    /// different fingerprint is refused with [`ActorError::KeyReused`].
    pub idempotency: Option<(IdempotencyKey, String)>,
}

impl<C> Request<C> {
    /// A command that is not retried by key (reads, internal commands).
    pub fn plain(command: C) -> Self {
        Request {
            command,
            idempotency: None,
        }
    }

    pub fn with_key(command: C, key: IdempotencyKey, fingerprint: String) -> Self {
        Request {
            command,
            idempotency: Some((key, fingerprint)),
        }
    }
}

/// The outcome of one keyed command as the actor's memory knows it: `None` while its batch is
/// in flight.
pub(crate) type Settled<R> = Option<Result<R, ActorError>>;

/// The keys an actor incarnation has seen, bounded: the oldest are forgotten first, and those
/// are committed (or failed) long before, so the store answers for them.
pub(crate) struct SeenKeys<R> {
    entries: HashMap<IdempotencyKey, (String, watch::Receiver<Settled<R>>)>,
    order: VecDeque<IdempotencyKey>,
    capacity: usize,
    /// When the incarnation's state finished loading. A store lookup made before then may have
    /// missed a key that the previous incarnation's last batch committed while the load waited
    /// for it (the load's epoch raise waits for that batch), so it is made again.
    activated_at: Instant,
}

pub(crate) enum KeyState<R> {
    /// Unknown key, and the caller's store lookup is recent enough to trust.
    New,
    /// Unknown key, but the actor's state was loaded after the caller looked in the store.
    LookAgain,
    /// Known key with a different request.
    Reused,
    /// Known key: here is its outcome, now or later.
    Seen(watch::Receiver<Settled<R>>),
}

impl<R: Clone> SeenKeys<R> {
    pub(crate) fn new(capacity: usize) -> Self {
        SeenKeys {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            activated_at: Instant::now(),
        }
    }

    /// The incarnation's state is loaded: lookups made before now are looked again.
    pub(crate) fn loaded(&mut self) {
        self.activated_at = Instant::now();
    }

    pub(crate) fn check(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
        store_checked_at: Instant,
    ) -> KeyState<R> {
        match self.entries.get(key) {
            Some((seen_fingerprint, _)) if seen_fingerprint != fingerprint => KeyState::Reused,
            Some((_, outcome)) => KeyState::Seen(outcome.clone()),
            None if store_checked_at < self.activated_at => KeyState::LookAgain,
            None => KeyState::New,
        }
    }

    /// Remember a key whose command is now in flight; the returned sender settles it.
    pub(crate) fn insert(
        &mut self,
        key: IdempotencyKey,
        fingerprint: String,
    ) -> watch::Sender<Settled<R>> {
        let (tx, rx) = watch::channel(None);
        if self.order.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
        self.order.push_back(key.clone());
        self.entries.insert(key, (fingerprint, rx));
        tx
    }
}
