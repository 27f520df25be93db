//! Activation, routing, passivation and reset of entity actors (DESIGN.md section 3).
//!
//! A [`Registry`] maps ids to live actors. The first command for an id starts its actor on one
//! of a fixed pool of arbiters (threads), chosen by hashing the id; the actor loads its state
//! before it reads its first message, so commands that arrive meanwhile wait in its mailbox.
//! The map's entry lock makes activation single per id, however many first commands race.
//! An actor with nothing in flight that was idle for `passivate_after` stops itself; a batch
//! failure stops it at once (reset), and the next command activates a fresh incarnation that
//! reloads from the store.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use async_trait::async_trait;
use dashmap::{DashMap, DashSet};
use tokio::sync::oneshot;

use crate::entity::Entity;
use crate::idempotency::{KeyState, SeenKeys, StoredKeys};
use crate::journal::{ActorStamp, IdempotencyRecord, JournalHandle, FENCED};
use crate::{ActorError, IdempotencyKey, Request};

/// An entity's state as loaded from the store, with the fencing epoch its activation raised.
pub struct Loaded<A> {
    pub state: A,
    pub epoch: i64,
}

/// A reply stored with an idempotency key.
#[derive(Debug, Clone)]
pub struct StoredReply {
    pub fingerprint: String,
    /// JSON-encoded reply.
    pub reply: Vec<u8>,
}

/// What the runtime needs from the store to activate an entity.
#[async_trait]
pub trait Loader<A: Entity>: Send + Sync + 'static {
    /// Load the entity (snapshot plus anything after it) and raise its fencing epoch, so that
    /// batches from any older activation are refused from now on.
    async fn load(&self, id: &A::Id) -> Result<Loaded<A>, String>;

    /// The stored reply for a key, if a command with it was committed.
    async fn stored_reply(
        &self,
        id: &A::Id,
        key: &IdempotencyKey,
    ) -> Result<Option<StoredReply>, String>;

    /// The keys stored for the entity, if it has at most `max` of them, else
    /// [`StoredKeys::TooMany`]. Called right after [`Loader::load`], whose epoch raise keeps
    /// any older activation from storing one after this read; not called when `max` is zero,
    /// nor for an entity the registry already found past `max`. The default knows none
    /// ([`StoredKeys::Unknown`]), and every key is then looked up in the store.
    async fn stored_keys(&self, _id: &A::Id, _max: usize) -> Result<StoredKeys, String> {
        Ok(StoredKeys::Unknown)
    }
}

/// A fixed pool of arbiters (threads running actors), shared by every registry of a node.
#[derive(Clone)]
pub struct ArbiterPool {
    arbiters: Arc<Vec<ArbiterHandle>>,
}

impl ArbiterPool {
    /// Start `size` arbiters. Must be called inside a running actix system.
    pub fn start(size: usize) -> Self {
        let arbiters = (0..size.max(1)).map(|_| Arbiter::new().handle()).collect();
        ArbiterPool {
            arbiters: Arc::new(arbiters),
        }
    }

    fn pick(&self, key: &impl Hash) -> &ArbiterHandle {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let index = (hasher.finish() % self.arbiters.len() as u64) as usize;
        &self.arbiters[index]
    }

    /// Stop every arbiter (at shutdown, after the actors' work is flushed).
    pub fn stop(&self) {
        for arbiter in self.arbiters.iter() {
            arbiter.stop();
        }
    }
}

/// A registry's limits.
#[derive(Debug, Clone, Copy)]
pub struct RegistrySettings {
    /// Messages an actor's mailbox holds; one more is answered `Busy` at once.
    pub mailbox_capacity: usize,
    /// An actor idle this long, with nothing in flight, stops and frees its memory.
    pub passivate_after: Duration,
    /// Idempotency keys an incarnation remembers in memory (older ones are in the store).
    pub keys_remembered_max: usize,
    /// Digests of stored keys an incarnation holds, to know which new keys need no store
    /// lookup; an entity with more looks every new key up.
    pub key_digests_max: usize,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            mailbox_capacity: 1024,
            passivate_after: Duration::from_secs(300),
            keys_remembered_max: 4096,
            key_digests_max: 10_000,
        }
    }
}

/// Counts for metrics.
#[derive(Debug, Default)]
pub struct RegistryStats {
    pub activations: AtomicU64,
    pub passivations: AtomicU64,
    pub resets: AtomicU64,
    pub busy: AtomicU64,
    /// Idempotency keys looked up in the store.
    pub key_lookups: AtomicU64,
    /// Activations that read their entity's stored keys ([`Loader::stored_keys`], with an
    /// answer other than [`StoredKeys::Unknown`]).
    pub key_reads: AtomicU64,
}

/// Entities a registry remembers as having more stored keys than an activation holds digests
/// of, at most: beyond them, such an entity's activations read its keys again.
const TOO_MANY_KEYS_REMEMBERED: usize = 65_536;

type Reply<A> = Result<<A as Entity>::Reply, ActorError>;

struct Slot<A: Entity, E: Send + Sync + 'static>
where
    A::Event: Into<E>,
{
    addr: Addr<EntityActor<A, E>>,
    incarnation: u64,
    /// Commands sent to this incarnation and not yet taken from its mailbox. The registry
    /// bounds the mailbox with it: actix's own capacity is per sender, and every `ask` sends
    /// through a fresh clone of the address, so actix alone never answers "full".
    queued: Arc<AtomicUsize>,
    /// The actor's reset flag (see `EntityActor::reset`).
    reset: Arc<AtomicBool>,
    /// Set while the actor does not know which keys are stored: keyed commands are looked up
    /// in the store before they are sent.
    look_first: Arc<AtomicBool>,
}

struct Inner<A: Entity, E: Send + Sync + 'static>
where
    A::Event: Into<E>,
{
    actors: DashMap<A::Id, Slot<A, E>>,
    pool: ArbiterPool,
    loader: Arc<dyn Loader<A>>,
    journal: JournalHandle<E>,
    settings: RegistrySettings,
    stats: RegistryStats,
    /// Entities whose activation read more stored keys than `settings.key_digests_max`. Keys
    /// are never deleted, so an entity stays past the bound; its later activations skip
    /// reading keys they would discard (`key_digests_max + 1` of them) and look every new key
    /// up.
    too_many_keys: DashSet<A::Id>,
}

impl<A: Entity, E: Send + Sync + 'static> Inner<A, E>
where
    A::Event: Into<E>,
{
    fn remember_too_many_keys(&self, id: &A::Id) {
        if self.too_many_keys.len() < TOO_MANY_KEYS_REMEMBERED {
            self.too_many_keys.insert(id.clone());
        }
    }
}

/// The live actors of one entity kind.
pub struct Registry<A: Entity, E: Send + Sync + 'static>
where
    A::Event: Into<E>,
{
    inner: Arc<Inner<A, E>>,
}

impl<A: Entity, E: Send + Sync + 'static> Clone for Registry<A, E>
where
    A::Event: Into<E>,
{
    fn clone(&self) -> Self {
        Registry {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// Incarnation numbers are unique across every registry of the process.
static NEXT_INCARNATION: AtomicU64 = AtomicU64::new(1);

impl<A, E> Registry<A, E>
where
    A: Entity,
    A::Event: Into<E>,
    E: Send + Sync + 'static,
{
    pub fn new(
        pool: ArbiterPool,
        loader: Arc<dyn Loader<A>>,
        journal: JournalHandle<E>,
        settings: RegistrySettings,
    ) -> Self {
        Registry {
            inner: Arc::new(Inner {
                actors: DashMap::new(),
                pool,
                loader,
                journal,
                settings,
                stats: RegistryStats::default(),
                too_many_keys: DashSet::new(),
            }),
        }
    }

    /// Live actors right now.
    pub fn len(&self) -> usize {
        self.inner.actors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.actors.is_empty()
    }

    pub fn stats(&self) -> &RegistryStats {
        &self.inner.stats
    }

    /// Send a command to the entity's actor and wait for its durable reply.
    pub async fn ask(&self, id: A::Id, request: Request<A::Command>) -> Reply<A> {
        let mut request = request;
        let keyed = request.idempotency.clone();
        // Whether the actor asked for a store lookup of the command's key.
        let mut look = false;
        // A command goes round at most five times: a stale address (the actor stopped between
        // lookup and send), a reset actor sending it on to a fresh activation, the actor asking
        // for a store lookup, and a second one when the lookup raced the actor's load are each
        // needed once. An entity reset again and again meanwhile (a busy payee of several
        // unconfirmed batches) can use them up: the caller then gets `Unavailable`, which is
        // retried.
        for _ in 0..5 {
            let mut store_checked_at = None;
            if let Some((key, fingerprint)) = &request.idempotency {
                if look || self.looks_first(&id) {
                    store_checked_at = Some(Instant::now());
                    if let Some(reply) = self.stored_reply(&id, key, fingerprint).await? {
                        return Ok(reply);
                    }
                }
            }
            let (addr, incarnation, queued) = self.activate(&id);
            if queued.fetch_add(1, Ordering::AcqRel) >= self.inner.settings.mailbox_capacity {
                queued.fetch_sub(1, Ordering::AcqRel);
                self.inner.stats.busy.fetch_add(1, Ordering::Relaxed);
                return Err(ActorError::Busy("mailbox"));
            }
            let (tx, rx) = oneshot::channel();
            let envelope = Envelope {
                request,
                store_checked_at,
                reply: tx,
            };
            match addr.try_send(envelope) {
                Ok(()) => {}
                Err(SendError::Full(_)) => {
                    queued.fetch_sub(1, Ordering::AcqRel);
                    self.inner.stats.busy.fetch_add(1, Ordering::Relaxed);
                    return Err(ActorError::Busy("mailbox"));
                }
                Err(SendError::Closed(envelope)) => {
                    self.forget(&id, incarnation);
                    request = envelope.request;
                    continue;
                }
            }
            match rx.await {
                Ok(Answer::Done(Err(ActorError::NotStored(why)))) if why == FENCED => {
                    return self.fenced(&id, keyed.as_ref()).await
                }
                Ok(Answer::Done(reply)) => return reply,
                Ok(Answer::LookAgain(back)) => {
                    request = back;
                    look = true;
                }
                Ok(Answer::SendAgain(back)) => {
                    // A fresh activation knows its stored keys again.
                    request = back;
                    look = false;
                }
                // The actor stopped (reset or failed load) before it read the command.
                Err(_) => return Err(ActorError::Unavailable("entity was reset".into())),
            }
        }
        Err(ActorError::Unavailable("entity kept restarting".into()))
    }

    /// Whether the entity has an actor right now (it may stop a moment later: a command sent
    /// after this activates it again).
    pub fn is_live<Q>(&self, id: &Q) -> bool
    where
        A::Id: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.actors.contains_key(id)
    }

    /// Apply a committed effect to the entity's actor if it is live. An actor that is not live
    /// needs nothing: it loads the effect from the store when it activates. Effects bypass the
    /// mailbox bound (they are already durable and must not be lost to a full mailbox).
    pub fn apply_if_live(&self, id: &A::Id, effect: A::Effect) {
        if let Some(slot) = self.inner.actors.get(id) {
            slot.addr.do_send(Apply(effect));
        }
    }

    /// Stop the entity's live actor, if any, as a failed batch stops its submitters: its memory
    /// may lack a change that only the store knows about (a credit in a batch whose commit was
    /// not confirmed). Commands in its mailbox, and every later one, go to a fresh incarnation,
    /// which loads the entity from the store; what the old one has in flight settles as usual.
    pub fn reset_if_live(&self, id: &A::Id) {
        // The flag is set before the slot goes, so that the old incarnation stops deciding
        // before a new one can load (a command it decides after that is fenced anyway).
        let removed = self.inner.actors.remove_if(id, |_, slot| {
            slot.reset.store(true, Ordering::Release);
            true
        });
        if let Some((_, slot)) = removed {
            self.inner.stats.resets.fetch_add(1, Ordering::Relaxed);
            slot.addr.do_send(ResetNow);
        }
    }

    async fn stored_reply(
        &self,
        id: &A::Id,
        key: &IdempotencyKey,
        fingerprint: &str,
    ) -> Result<Option<A::Reply>, ActorError> {
        self.inner.stats.key_lookups.fetch_add(1, Ordering::Relaxed);
        let stored = self
            .inner
            .loader
            .stored_reply(id, key)
            .await
            .map_err(ActorError::Unavailable)?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        if stored.fingerprint != fingerprint {
            return Err(ActorError::KeyReused);
        }
        serde_json::from_slice(&stored.reply)
            .map(Some)
            .map_err(|e| ActorError::Unavailable(format!("stored reply unreadable: {e}")))
    }

    /// A keyed command whose batch was fenced wrote nothing, and yet its key may be stored: a
    /// newer activation (on another node, whose commits this actor's digests do not know) may
    /// have committed it first. The store says which.
    async fn fenced(&self, id: &A::Id, keyed: Option<&(IdempotencyKey, String)>) -> Reply<A> {
        if let Some((key, fingerprint)) = keyed {
            match self.stored_reply(id, key, fingerprint).await {
                Ok(Some(reply)) => return Ok(reply),
                Err(ActorError::KeyReused) => return Err(ActorError::KeyReused),
                Ok(None) | Err(_) => {}
            }
        }
        Err(ActorError::NotStored(FENCED.into()))
    }

    /// Whether a keyed command for the entity should be looked up in the store before it is
    /// sent: unless its actor is live and knows which keys are stored. Only a shortcut: the
    /// actor asks for the lookup if it is needed. An entity without a live actor is looked up
    /// first, so that a retry after passivation is answered without loading the entity.
    fn looks_first(&self, id: &A::Id) -> bool {
        self.inner
            .actors
            .get(id)
            .is_none_or(|slot| slot.look_first.load(Ordering::Acquire))
    }

    fn activate(&self, id: &A::Id) -> (Addr<EntityActor<A, E>>, u64, Arc<AtomicUsize>) {
        let entry = self.inner.actors.entry(id.clone()).or_insert_with(|| {
            let incarnation = NEXT_INCARNATION.fetch_add(1, Ordering::Relaxed);
            let queued = Arc::new(AtomicUsize::new(0));
            let reset = Arc::new(AtomicBool::new(false));
            // Until the actor has loaded its stored keys, callers look theirs up first.
            let look_first = Arc::new(AtomicBool::new(true));
            let settings = &self.inner.settings;
            let actor = EntityActor::<A, E> {
                id: id.clone(),
                state: None,
                incarnation,
                epoch: 0,
                registry: Arc::downgrade(&self.inner),
                inflight: Arc::new(AtomicUsize::new(0)),
                last_active: Instant::now(),
                keys: SeenKeys::new(
                    settings.keys_remembered_max,
                    settings.key_digests_max,
                    Arc::clone(&look_first),
                ),
                queued: Arc::clone(&queued),
                reset: Arc::clone(&reset),
            };
            let capacity = self.inner.settings.mailbox_capacity;
            let arbiter = self.inner.pool.pick(id);
            let addr = EntityActor::start_in_arbiter(arbiter, move |ctx| {
                ctx.set_mailbox_capacity(capacity);
                actor
            });
            self.inner.stats.activations.fetch_add(1, Ordering::Relaxed);
            Slot {
                addr,
                incarnation,
                queued,
                reset,
                look_first,
            }
        });
        (
            entry.addr.clone(),
            entry.incarnation,
            Arc::clone(&entry.queued),
        )
    }

    fn forget(&self, id: &A::Id, incarnation: u64) {
        self.inner
            .actors
            .remove_if(id, |_, slot| slot.incarnation == incarnation);
    }
}

enum Answer<A: Entity> {
    Done(Reply<A>),
    /// The key may be stored (or the actor's state loaded after the caller looked it up): look
    /// it up in the store, and send again.
    LookAgain(Request<A::Command>),
    /// The actor was reset before it applied the command: send it again, to a fresh activation.
    SendAgain(Request<A::Command>),
}

struct Envelope<A: Entity> {
    request: Request<A::Command>,
    /// When the caller looked the command's key up in the store, if it did.
    store_checked_at: Option<Instant>,
    reply: oneshot::Sender<Answer<A>>,
}

impl<A: Entity> Message for Envelope<A> {
    type Result = ();
}

struct ResetNow;

struct Apply<F>(F);

impl<F: Send + 'static> Message for Apply<F> {
    type Result = ();
}

impl<A, E> Handler<Apply<A::Effect>> for EntityActor<A, E>
where
    A: Entity,
    A::Event: Into<E>,
    E: Send + Sync + 'static,
{
    type Result = ();

    fn handle(&mut self, Apply(effect): Apply<A::Effect>, _ctx: &mut Context<Self>) {
        // A reset actor has no state; its successor loads the effect from the store.
        if let Some(state) = self.state.as_mut() {
            state.apply(effect);
        }
    }
}

impl Message for ResetNow {
    type Result = ();
}

struct EntityActor<A: Entity, E: Send + Sync + 'static>
where
    A::Event: Into<E>,
{
    id: A::Id,
    /// `None` until loaded.
    state: Option<A>,
    incarnation: u64,
    epoch: i64,
    registry: Weak<Inner<A, E>>,
    /// Submissions of this incarnation not yet settled by the journal.
    inflight: Arc<AtomicUsize>,
    last_active: Instant,
    keys: SeenKeys<A::Reply>,
    /// Shared with the registry's slot: commands waiting in the mailbox.
    queued: Arc<AtomicUsize>,
    /// Set by the journal writer, before it fails any waiter, when a batch holding this
    /// incarnation's events failed: from then on its state may hold changes that were never
    /// stored, so nothing is decided or answered from it, even before `ResetNow` arrives.
    /// Also set by `Registry::reset_if_live`, when its state may lack a change that was
    /// stored.
    reset: Arc<AtomicBool>,
}

impl<A, E> Actor for EntityActor<A, E>
where
    A: Entity,
    A::Event: Into<E>,
    E: Send + Sync + 'static,
{
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(registry) = self.registry.upgrade() else {
            ctx.stop();
            return;
        };
        let loader = Arc::clone(&registry.loader);
        let id = self.id.clone();
        let digests_max = registry.settings.key_digests_max;
        let read_keys = digests_max > 0 && !registry.too_many_keys.contains(&id);
        let load = async move {
            let loaded = loader.load(&id).await?;
            let stored_keys = if read_keys {
                loader.stored_keys(&id, digests_max).await?
            } else if digests_max > 0 {
                StoredKeys::TooMany
            } else {
                StoredKeys::Unknown
            };
            Ok::<_, String>((loaded, stored_keys))
        };
        // `wait` holds every message back until the state is in memory.
        ctx.wait(load.into_actor(self).map(move |loaded, actor, ctx| match loaded {
            Ok((loaded, stored_keys)) => {
                if read_keys && stored_keys != StoredKeys::Unknown {
                    if let Some(registry) = actor.registry.upgrade() {
                        registry.stats.key_reads.fetch_add(1, Ordering::Relaxed);
                        // Only a read past the bound is remembered: keys an incarnation takes
                        // may still fail to commit, and the store's count is what lasts.
                        if stored_keys == StoredKeys::TooMany {
                            registry.remember_too_many_keys(&actor.id);
                        }
                    }
                }
                actor.state = Some(loaded.state);
                actor.epoch = loaded.epoch;
                actor.keys.loaded(stored_keys);
                actor.last_active = Instant::now();
            }
            Err(error) => {
                tracing::error!(kind = A::KIND, id = %actor.id, %error, "activation failed");
                ctx.stop();
            }
        }));
        let passivate_after = registry.settings.passivate_after;
        let check_every = (passivate_after / 4).max(Duration::from_millis(10));
        ctx.run_interval(check_every, move |actor, ctx| {
            let idle = actor.last_active.elapsed() >= passivate_after;
            if idle && actor.inflight.load(Ordering::Acquire) == 0 {
                if let Some(registry) = actor.registry.upgrade() {
                    registry.stats.passivations.fetch_add(1, Ordering::Relaxed);
                }
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if let Some(registry) = self.registry.upgrade() {
            let incarnation = self.incarnation;
            registry
                .actors
                .remove_if(&self.id, |_, slot| slot.incarnation == incarnation);
        }
    }
}

impl<A, E> Handler<ResetNow> for EntityActor<A, E>
where
    A: Entity,
    A::Event: Into<E>,
    E: Send + Sync + 'static,
{
    type Result = ();

    fn handle(&mut self, _: ResetNow, ctx: &mut Context<Self>) {
        // Drop the state first: nothing more is decided against it, even if a message is
        // processed before the stop takes effect.
        self.state = None;
        ctx.stop();
    }
}

impl<A, E> Handler<Envelope<A>> for EntityActor<A, E>
where
    A: Entity,
    A::Event: Into<E>,
    E: Send + Sync + 'static,
{
    type Result = ();

    fn handle(&mut self, envelope: Envelope<A>, ctx: &mut Context<Self>) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        self.last_active = Instant::now();
        let Envelope {
            request,
            store_checked_at,
            reply,
        } = envelope;
        let Some(registry) = self.registry.upgrade() else {
            let _ = reply.send(Answer::Done(Err(ActorError::ShuttingDown)));
            return;
        };
        if self.reset.load(Ordering::Acquire) {
            // Nothing was applied: send the command on to a fresh activation, which reloads.
            self.state = None;
            let _ = reply.send(Answer::SendAgain(request));
            return;
        }
        if self.state.is_none() {
            let _ = reply.send(Answer::Done(Err(ActorError::Unavailable(
                "entity is being reset".into(),
            ))));
            return;
        }
        let Request {
            command,
            idempotency,
        } = request;
        if let Some((key, fingerprint)) = &idempotency {
            match self.keys.check(key, fingerprint, store_checked_at) {
                KeyState::New => {}
                KeyState::Reused => {
                    let _ = reply.send(Answer::Done(Err(ActorError::KeyReused)));
                    return;
                }
                KeyState::LookAgain => {
                    let _ = reply.send(Answer::LookAgain(Request {
                        command,
                        idempotency,
                    }));
                    return;
                }
                KeyState::Seen(mut outcome) => {
                    // Same key, in flight or settled: answer with the first one's outcome. The
                    // wait is a task of its own, not of this actor: the actor may passivate or
                    // reset the moment the outcome arrives, and must not take the wait with it.
                    actix::spawn(async move {
                        let settled = outcome.wait_for(Option::is_some).await.ok();
                        let answer = settled
                            .and_then(|s| s.clone())
                            .unwrap_or(Err(ActorError::Unavailable("entity was reset".into())));
                        let _ = reply.send(Answer::Done(answer));
                    });
                    return;
                }
            }
        }
        let slot = match registry.journal.reserve() {
            Ok(slot) => slot,
            Err(busy) => {
                let _ = reply.send(Answer::Done(Err(busy)));
                return;
            }
        };
        let Some(state) = self.state.as_mut() else {
            return;
        };
        let outcome = state.handle(command);
        let settle = idempotency.map(|(key, fingerprint)| {
            let reply = serde_json::to_vec(&outcome.reply).unwrap_or_else(|error| {
                // A reply type that cannot be stored is a programming error; the empty record
                // makes a later replay fail loudly rather than repeat the effect.
                tracing::error!(kind = A::KIND, %error, "reply cannot be stored for replay");
                Vec::new()
            });
            let record = IdempotencyRecord {
                key: key.as_str().to_owned(),
                fingerprint: fingerprint.clone(),
                reply,
            };
            (record, self.keys.insert(key, fingerprint))
        });
        let nothing_to_write = outcome.events.is_empty() && settle.is_none();
        if nothing_to_write && self.inflight.load(Ordering::Acquire) == 0 {
            // Nothing of this entity is waiting to commit, so the answer shows only durable
            // state and can go at once, unless a batch of this incarnation failed meanwhile
            // (the flag is set before the failed submissions leave `inflight`, so reading it
            // after `inflight` cannot miss it).
            let answer = if self.reset.load(Ordering::Acquire) {
                Err(ActorError::Unavailable("entity was reset".into()))
            } else {
                Ok(outcome.reply)
            };
            let _ = reply.send(Answer::Done(answer));
            return;
        }
        let (record, settled) = match settle {
            Some((record, settled)) => (Some(record), Some(settled)),
            None => (None, None),
        };
        let stamp = ActorStamp {
            kind: A::KIND,
            id: self.id.to_string(),
            incarnation: self.incarnation,
            epoch: self.epoch,
        };
        let inflight = Arc::clone(&self.inflight);
        inflight.fetch_add(1, Ordering::AcqRel);
        let answer = outcome.reply;
        let completion = move |result: Result<(), ActorError>| {
            inflight.fetch_sub(1, Ordering::AcqRel);
            let result = result.map(|()| answer);
            if let Some(settled) = settled {
                let _ = settled.send(Some(result.clone()));
            }
            let _ = reply.send(Answer::Done(result));
        };
        let events = outcome.events.into_iter().map(Into::into).collect();
        let addr = ctx.address();
        let reset_flag = Arc::clone(&self.reset);
        let registry = self.registry.clone();
        let id = self.id.clone();
        let incarnation = self.incarnation;
        let reset = Arc::new(move |_incarnation: u64| {
            reset_flag.store(true, Ordering::Release);
            // New commands go to a fresh activation at once, not behind `ResetNow` into a
            // mailbox that is about to be dropped.
            if let Some(registry) = registry.upgrade() {
                registry.stats.resets.fetch_add(1, Ordering::Relaxed);
                registry
                    .actors
                    .remove_if(&id, |_, slot| slot.incarnation == incarnation);
            }
            addr.do_send(ResetNow);
        });
        slot.submit(stamp, events, record, completion, reset);
    }
}
