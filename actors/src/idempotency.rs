//! Idempotency keys: a retried command gets the first answer, never a second effect.
//!
//! Three places answer a repeated key:
//! 1. the actor's memory: a key seen by this incarnation, committed or still in flight (two
//!    copies sent at once: the second waits for the first's answer);
//! 2. the store, for a key the actor may not know: a retry that comes after an earlier
//!    incarnation committed the first attempt. The actor knows which keys those can be: its
//!    activation reads a digest of every key stored for its entity ([`StoredKeys`]), after
//!    raising the fencing epoch, so no older incarnation can store one after that read. A key
//!    whose digest is unknown was never stored and needs no lookup; one whose digest is known
//!    (or any key, when the entity has too many to hold) sends the caller to look it up in the
//!    store and come back;
//! 3. the fence for that lookup: if the actor was activated after the caller's store lookup, a
//!    key unknown to the actor may have been committed by the previous incarnation in between,
//!    so the actor sends the caller back to look again.
//!
//! The key and its reply are journaled in the same batch as the effect.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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

/// What an activation knows of the idempotency keys stored for its entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredKeys {
    /// The digests ([`key_digest`]) of every key stored for the entity when it loaded. A key
    /// whose digest is not among them was never stored.
    Digests(HashSet<u64>),
    /// More than an activation holds digests of (read so, or passed while live): every key the
    /// actor has not seen is looked up in the store. Keys are never deleted, so a read that
    /// found too many stays true of the entity, and the registry remembers it instead of
    /// reading the keys again at the next activation.
    TooMany,
    /// Not known (the loader does not read keys, or digests are turned off): every key the
    /// actor has not seen is looked up in the store.
    Unknown,
}

impl StoredKeys {
    /// The digests of these keys, or [`StoredKeys::TooMany`] if there are more than `max` keys
    /// (counted as keys: two that share a digest are still two), or [`StoredKeys::Unknown`] if
    /// `max` is zero.
    pub fn from_keys<'k>(keys: impl IntoIterator<Item = &'k str>, max: usize) -> Self {
        if max == 0 {
            return StoredKeys::Unknown;
        }
        let mut digests = HashSet::new();
        for (read, key) in keys.into_iter().enumerate() {
            if read >= max {
                return StoredKeys::TooMany;
            }
            digests.insert(key_digest(key));
        }
        StoredKeys::Digests(digests)
    }
}

/// The digest of a key in [`StoredKeys`]: two keys with one digest cost a store lookup, never
/// a wrong answer. Stable within a process, which is all it is used in.
pub fn key_digest(key: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
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
    /// The keys that may be in the store: those stored when the incarnation loaded, and every
    /// key it took since (a forgotten one may have committed). `Unknown` until loaded,
    /// `TooMany` once past `digests_max`.
    stored: StoredKeys,
    /// Digests held at most; beyond them `stored` becomes `TooMany`.
    digests_max: usize,
    /// Shared with the registry: set while `stored` holds no digests, so that callers look
    /// their key up before they send, not after the actor asks them to.
    look_first: Arc<AtomicBool>,
}

pub(crate) enum KeyState<R> {
    /// Unknown key, never stored, or not found by a store lookup recent enough to trust.
    New,
    /// Unknown key that may be stored: look it up in the store (again, if the actor's state
    /// loaded after the caller's lookup) and send it back.
    LookAgain,
    /// Known key with a different request.
    Reused,
    /// Known key: here is its outcome, now or later.
    Seen(watch::Receiver<Settled<R>>),
}

impl<R: Clone> SeenKeys<R> {
    pub(crate) fn new(capacity: usize, digests_max: usize, look_first: Arc<AtomicBool>) -> Self {
        SeenKeys {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            activated_at: Instant::now(),
            stored: StoredKeys::Unknown,
            digests_max,
            look_first,
        }
    }

    /// The incarnation's state is loaded, with these stored keys: lookups made before now are
    /// looked again.
    pub(crate) fn loaded(&mut self, stored: StoredKeys) {
        self.activated_at = Instant::now();
        self.stored = match stored {
            _ if self.digests_max == 0 => StoredKeys::Unknown,
            StoredKeys::Digests(digests) if digests.len() > self.digests_max => StoredKeys::TooMany,
            stored => stored,
        };
        self.look_first.store(
            !matches!(self.stored, StoredKeys::Digests(_)),
            Ordering::Release,
        );
    }

    /// `store_checked_at` is when the caller looked the key up in the store, if it did.
    pub(crate) fn check(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
        store_checked_at: Option<Instant>,
    ) -> KeyState<R> {
        match self.entries.get(key) {
            Some((seen_fingerprint, _)) if seen_fingerprint != fingerprint => KeyState::Reused,
            Some((_, outcome)) => KeyState::Seen(outcome.clone()),
            // Never stored: the digests were read after the epoch raise, and hold every key
            // stored since, whenever the caller looked.
            None if self.never_stored(key) => KeyState::New,
            None => match store_checked_at {
                Some(checked) if checked >= self.activated_at => KeyState::New,
                _ => KeyState::LookAgain,
            },
        }
    }

    fn never_stored(&self, key: &IdempotencyKey) -> bool {
        match &self.stored {
            StoredKeys::Digests(digests) => !digests.contains(&key_digest(key.as_str())),
            StoredKeys::TooMany | StoredKeys::Unknown => false,
        }
    }

    /// Remember a key whose command is now in flight; the returned sender settles it.
    pub(crate) fn insert(
        &mut self,
        key: IdempotencyKey,
        fingerprint: String,
    ) -> watch::Sender<Settled<R>> {
        if let StoredKeys::Digests(digests) = &mut self.stored {
            digests.insert(key_digest(key.as_str()));
            if digests.len() > self.digests_max {
                self.stored = StoredKeys::TooMany;
                self.look_first.store(true, Ordering::Release);
            }
        }
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
