//! Test fixtures for the actor runtime: an `Account` entity, an in-memory store that injects
//! faults (failing commits, held commits and loads, fencing, slow commits), a recording sink,
//! and helpers to send commands without waiting and to await with a bound.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::Poll;
use std::time::Duration;

use actors::journal::{
    spawn_writer, CommitError, Committed, EventSink, JournalHandle, JournalSettings, JournalStore,
    Submission,
};
use actors::registry::{ArbiterPool, Loaded, Loader, Registry, RegistrySettings, StoredReply};
use actors::{ActorError, Entity, IdempotencyKey, Outcome, Request, StoredKeys};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};

// ---------------------------------------------------------------------------------------------
// The entity
// ---------------------------------------------------------------------------------------------

/// A bank account: the simplest entity with a rule that depends on its state.
#[derive(Debug, Default)]
pub struct Account {
    pub balance: u64,
}

pub enum Cmd {
    Deposit(u64),
    /// Refused, with no events, if it would take the balance below zero.
    Withdraw(u64),
    Balance,
    /// A read that tells the test, from inside `handle`, that every earlier command of this
    /// actor has been handled (and so handed to the journal).
    Signal(Arc<Notify>),
    /// A read that blocks its arbiter thread inside `handle` until the test releases it: keeps
    /// the actor busy so that later messages wait in its mailbox.
    Stall(Arc<Stall>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Deposited(u64),
    Withdrew(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    Balance(u64),
    Refused { balance: u64, wanted: u64 },
}

impl Account {
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> Account {
        let mut account = Account::default();
        for event in events {
            account.apply_event(*event);
        }
        account
    }

    fn apply_event(&mut self, event: Event) {
        match event {
            Event::Deposited(amount) => self.balance += amount,
            Event::Withdrew(amount) => self.balance -= amount,
        }
    }
}

impl Entity for Account {
    const KIND: &'static str = "account";
    type Id = String;
    type Command = Cmd;
    type Reply = Reply;
    type Event = Event;
    type Effect = u64;

    fn handle(&mut self, command: Cmd) -> Outcome<Event, Reply> {
        match command {
            Cmd::Deposit(amount) => {
                self.apply_event(Event::Deposited(amount));
                Outcome {
                    events: vec![Event::Deposited(amount)],
                    reply: Reply::Balance(self.balance),
                }
            }
            Cmd::Withdraw(amount) if amount > self.balance => Outcome::reply(Reply::Refused {
                balance: self.balance,
                wanted: amount,
            }),
            Cmd::Withdraw(amount) => {
                self.apply_event(Event::Withdrew(amount));
                Outcome {
                    events: vec![Event::Withdrew(amount)],
                    reply: Reply::Balance(self.balance),
                }
            }
            Cmd::Balance => Outcome::reply(Reply::Balance(self.balance)),
            Cmd::Signal(notify) => {
                notify.notify_one();
                Outcome::reply(Reply::Balance(self.balance))
            }
            Cmd::Stall(stall) => {
                stall.block();
                Outcome::reply(Reply::Balance(self.balance))
            }
        }
    }

    fn apply(&mut self, credit: u64) {
        self.balance += credit;
    }
}

/// Blocks the thread that handles a `Cmd::Stall` until released (at most 10 s, so that a broken
/// test fails instead of hanging).
#[derive(Default)]
pub struct Stall {
    pub started: Notify,
    released: Mutex<bool>,
    wake: Condvar,
}

impl Stall {
    pub fn new() -> Arc<Self> {
        Arc::new(Stall::default())
    }

    fn block(&self) {
        self.started.notify_one();
        let released = self.released.lock().unwrap();
        let _released = self
            .wake
            .wait_timeout_while(released, Duration::from_secs(10), |r| !*r)
            .unwrap();
    }

    pub fn release(&self) {
        *self.released.lock().unwrap() = true;
        self.wake.notify_all();
    }
}

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

/// One committed submission, as the store keeps it.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub incarnation: u64,
    pub event: Event,
}

#[derive(Default)]
struct Data {
    log: Vec<Row>,
    epochs: HashMap<String, i64>,
    loads: HashMap<String, usize>,
    replies: HashMap<(String, String), StoredReply>,
    /// Idempotency records written more than once (must stay empty).
    duplicate_keys: Vec<(String, String)>,
}

/// An in-memory journal and loader. A commit is atomic (one lock, all or nothing) and checks
/// each submission's fencing epoch against the stored one.
pub struct MemStore {
    data: Mutex<Data>,
    /// Commits attempted (every call to `commit`).
    attempts: AtomicUsize,
    /// Commits that wrote (transactions).
    transactions: AtomicUsize,
    /// The next N commits fail.
    fail_next: AtomicUsize,
    /// The next N commits write, then report that they were not confirmed.
    unconfirm_next: AtomicUsize,
    /// The next N commits write nothing and report that they were not confirmed.
    lose_next: AtomicUsize,
    /// Whether the last unconfirmed commit wrote, for `resolve_unconfirmed` to tell.
    last_unconfirmed: Mutex<Option<bool>>,
    /// Whether `resolve_unconfirmed` tells (as PostgreSQL can) or not (as SQLite cannot).
    resolvable: std::sync::atomic::AtomicBool,
    /// Every commit fails while set.
    failing: std::sync::atomic::AtomicBool,
    /// Every Nth attempt fails (0: never).
    fail_every: AtomicUsize,
    /// The next N loads fail.
    fail_loads: AtomicUsize,
    /// A batch holding a deposit of this amount is refused as a constraint would refuse it
    /// (zero: none is).
    refused_deposit: AtomicUsize,
    commit_delay: Mutex<Duration>,
    /// Commits wait while this is false.
    commits_open: watch::Sender<bool>,
    /// Loads wait while this is false.
    loads_open: watch::Sender<bool>,
    /// Commits that have entered `commit` (before the gate).
    entered: watch::Sender<usize>,
    /// Calls to `stored_keys`.
    key_reads: AtomicUsize,
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore {
            data: Mutex::new(Data::default()),
            attempts: AtomicUsize::new(0),
            transactions: AtomicUsize::new(0),
            fail_next: AtomicUsize::new(0),
            unconfirm_next: AtomicUsize::new(0),
            lose_next: AtomicUsize::new(0),
            last_unconfirmed: Mutex::new(None),
            resolvable: std::sync::atomic::AtomicBool::new(false),
            failing: std::sync::atomic::AtomicBool::new(false),
            fail_every: AtomicUsize::new(0),
            fail_loads: AtomicUsize::new(0),
            refused_deposit: AtomicUsize::new(0),
            commit_delay: Mutex::new(Duration::ZERO),
            commits_open: watch::Sender::new(true),
            loads_open: watch::Sender::new(true),
            entered: watch::Sender::new(0),
            key_reads: AtomicUsize::new(0),
        }
    }
}

impl MemStore {
    pub fn new() -> Arc<Self> {
        Arc::new(MemStore::default())
    }

    // --- fault switches ---

    pub fn fail_next(&self, commits: usize) {
        self.fail_next.store(commits, Ordering::SeqCst);
    }

    /// The next `commits` commits write everything and then answer
    /// `CommitError::Unconfirmed`, as a connection that broke while COMMIT was answered would.
    pub fn unconfirm_next(&self, commits: usize) {
        self.unconfirm_next.store(commits, Ordering::SeqCst);
    }

    /// The next `commits` commits write nothing and answer `CommitError::Unconfirmed`, as a
    /// connection that broke before COMMIT reached the database would.
    pub fn lose_next(&self, commits: usize) {
        self.lose_next.store(commits, Ordering::SeqCst);
    }

    /// Let `resolve_unconfirmed` say what became of an unconfirmed commit.
    pub fn set_resolvable(&self, resolvable: bool) {
        self.resolvable.store(resolvable, Ordering::SeqCst);
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    pub fn fail_every(&self, nth: usize) {
        self.fail_every.store(nth, Ordering::SeqCst);
    }

    /// Refuse every batch that holds a deposit of `amount`, as a constraint that one command
    /// breaks would (`CommitError::Refused`).
    pub fn refuse_deposits_of(&self, amount: u64) {
        self.refused_deposit
            .store(usize::try_from(amount).unwrap(), Ordering::SeqCst);
    }

    pub fn fail_loads(&self, loads: usize) {
        self.fail_loads.store(loads, Ordering::SeqCst);
    }

    pub fn set_commit_delay(&self, delay: Duration) {
        *self.commit_delay.lock().unwrap() = delay;
    }

    pub fn hold_commits(&self) {
        self.commits_open.send_replace(false);
    }

    pub fn release_commits(&self) {
        self.commits_open.send_replace(true);
    }

    pub fn hold_loads(&self) {
        self.loads_open.send_replace(false);
    }

    pub fn release_loads(&self) {
        self.loads_open.send_replace(true);
    }

    /// Simulate an activation of `id` elsewhere: raise its stored fencing epoch.
    pub fn raise_epoch(&self, id: &str) -> i64 {
        let mut data = self.data.lock().unwrap();
        let epoch = data.epochs.entry(id.to_owned()).or_insert(0);
        *epoch += 1;
        *epoch
    }

    // --- observations ---

    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    pub fn transactions(&self) -> usize {
        self.transactions.load(Ordering::SeqCst)
    }

    /// Wait until at least `count` commits have entered `commit` (they may be held at the gate).
    pub async fn entered(&self, count: usize) {
        let mut rx = self.entered.subscribe();
        within(5, rx.wait_for(|n| *n >= count)).await.unwrap();
    }

    pub fn entered_now(&self) -> usize {
        *self.entered.borrow()
    }

    /// Calls to `Loader::stored_keys`, for every entity.
    pub fn key_reads(&self) -> usize {
        self.key_reads.load(Ordering::SeqCst)
    }

    pub fn loads(&self, id: &str) -> usize {
        let data = self.data.lock().unwrap();
        data.loads.get(id).copied().unwrap_or(0)
    }

    pub fn epoch(&self, id: &str) -> i64 {
        let data = self.data.lock().unwrap();
        data.epochs.get(id).copied().unwrap_or(0)
    }

    pub fn events(&self, id: &str) -> Vec<Event> {
        let data = self.data.lock().unwrap();
        data.log
            .iter()
            .filter(|row| row.id == id)
            .map(|row| row.event)
            .collect()
    }

    pub fn rows(&self) -> Vec<Row> {
        self.data.lock().unwrap().log.clone()
    }

    /// The balance the store's events give.
    pub fn balance(&self, id: &str) -> u64 {
        Account::fold(&self.events(id)).balance
    }

    /// Deposited amounts of `id`, sorted.
    pub fn deposits(&self, id: &str) -> Vec<u64> {
        let mut amounts: Vec<u64> = self
            .events(id)
            .into_iter()
            .filter_map(|event| match event {
                Event::Deposited(amount) => Some(amount),
                Event::Withdrew(_) => None,
            })
            .collect();
        amounts.sort_unstable();
        amounts
    }

    pub fn duplicate_keys(&self) -> Vec<(String, String)> {
        self.data.lock().unwrap().duplicate_keys.clone()
    }

    fn should_fail(&self, attempt: usize) -> bool {
        if self.failing.load(Ordering::SeqCst) {
            return true;
        }
        let every = self.fail_every.load(Ordering::SeqCst);
        if every > 0 && attempt % every == 0 {
            return true;
        }
        take_one(&self.fail_next)
    }
}

#[async_trait]
impl JournalStore<Event> for MemStore {
    async fn commit(&self, batch: &[Submission<Event>]) -> Result<(), CommitError> {
        self.entered.send_modify(|n| *n += 1);
        let mut open = self.commits_open.subscribe();
        let _ = open.wait_for(|open| *open).await;
        let delay = *self.commit_delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if self.should_fail(attempt) {
            return Err(CommitError::Failed("injected commit failure".into()));
        }
        if take_one(&self.lose_next) {
            *self.last_unconfirmed.lock().unwrap() = Some(false);
            return Err(CommitError::Unconfirmed(
                "injected: lost before COMMIT".into(),
            ));
        }
        let refused = self.refused_deposit.load(Ordering::SeqCst) as u64;
        if refused > 0
            && batch
                .iter()
                .flat_map(|s| &s.events)
                .any(|event| *event == Event::Deposited(refused))
        {
            return Err(CommitError::Refused(format!("a deposit of {refused}")));
        }
        let mut data = self.data.lock().unwrap();
        // Fencing: refuse the whole transaction if any submission carries a stale epoch.
        let fenced: Vec<u64> = batch
            .iter()
            .filter_map(|s| s.actor.as_ref())
            .filter(|a| a.epoch < data.epochs.get(&a.id).copied().unwrap_or(0))
            .map(|a| a.incarnation)
            .collect();
        if !fenced.is_empty() {
            return Err(CommitError::Fenced(fenced));
        }
        // All checks passed: write everything under the one lock.
        for submission in batch {
            let Some(actor) = &submission.actor else {
                continue;
            };
            assert_eq!(actor.kind, Account::KIND);
            for event in &submission.events {
                data.log.push(Row {
                    id: actor.id.clone(),
                    incarnation: actor.incarnation,
                    event: *event,
                });
            }
            if let Some(record) = &submission.idempotency {
                let key = (actor.id.clone(), record.key.clone());
                let stored = StoredReply {
                    fingerprint: record.fingerprint.clone(),
                    reply: record.reply.clone(),
                };
                if data.replies.insert(key.clone(), stored).is_some() {
                    data.duplicate_keys.push(key);
                }
            }
        }
        drop(data);
        self.transactions.fetch_add(1, Ordering::SeqCst);
        if take_one(&self.unconfirm_next) {
            *self.last_unconfirmed.lock().unwrap() = Some(true);
            return Err(CommitError::Unconfirmed(
                "injected: the answer was lost".into(),
            ));
        }
        Ok(())
    }

    async fn resolve_unconfirmed(&self) -> Option<bool> {
        let last = self.last_unconfirmed.lock().unwrap().take();
        last.filter(|_| self.resolvable.load(Ordering::SeqCst))
    }
}

#[async_trait]
impl Loader<Account> for MemStore {
    async fn load(&self, id: &String) -> Result<Loaded<Account>, String> {
        let mut open = self.loads_open.subscribe();
        let _ = open.wait_for(|open| *open).await;
        let mut data = self.data.lock().unwrap();
        *data.loads.entry(id.clone()).or_insert(0) += 1;
        if take_one(&self.fail_loads) {
            return Err("injected load failure".into());
        }
        let epoch = data.epochs.entry(id.clone()).or_insert(0);
        *epoch += 1;
        let epoch = *epoch;
        let state = Account::fold(data.log.iter().filter(|r| &r.id == id).map(|r| &r.event));
        Ok(Loaded { state, epoch })
    }

    async fn stored_reply(
        &self,
        id: &String,
        key: &IdempotencyKey,
    ) -> Result<Option<StoredReply>, String> {
        let data = self.data.lock().unwrap();
        Ok(data
            .replies
            .get(&(id.clone(), key.as_str().to_owned()))
            .cloned())
    }

    async fn stored_keys(&self, id: &String, max: usize) -> Result<StoredKeys, String> {
        self.key_reads.fetch_add(1, Ordering::SeqCst);
        let data = self.data.lock().unwrap();
        let keys = data
            .replies
            .keys()
            .filter(|(actor, _)| actor == id)
            .map(|(_, key)| key.as_str());
        Ok(StoredKeys::from_keys(keys, max))
    }
}

// ---------------------------------------------------------------------------------------------
// The sink
// ---------------------------------------------------------------------------------------------

/// Records committed events in the order the writer hands them over, and the submitters of
/// unconfirmed batches.
#[derive(Default)]
pub struct RecordingSink {
    rows: Mutex<Vec<Row>>,
    unconfirmed: Mutex<Vec<String>>,
}

impl RecordingSink {
    /// The actors of the submissions in unconfirmed batches, in order.
    pub fn unconfirmed(&self) -> Vec<String> {
        self.unconfirmed.lock().unwrap().clone()
    }

    pub fn rows(&self) -> Vec<Row> {
        self.rows.lock().unwrap().clone()
    }

    pub fn events(&self, id: &str) -> Vec<Event> {
        self.rows()
            .into_iter()
            .filter(|row| row.id == id)
            .map(|row| row.event)
            .collect()
    }
}

#[async_trait]
impl EventSink<Event> for RecordingSink {
    fn unconfirmed(&self, batch: &[Submission<Event>]) {
        let mut unconfirmed = self.unconfirmed.lock().unwrap();
        unconfirmed.extend(
            batch
                .iter()
                .filter_map(|s| s.actor.as_ref().map(|a| a.id.clone())),
        );
    }

    async fn committed(&self, batch: Vec<Committed<Event>>) {
        let mut rows = self.rows.lock().unwrap();
        for committed in batch {
            for event in committed.events {
                rows.push(Row {
                    id: committed.actor.id.clone(),
                    incarnation: committed.actor.incarnation,
                    event,
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

pub type AccountRegistry = Registry<Account, Event>;
pub type Answer = Result<Reply, ActorError>;

pub struct Harness {
    pub store: Arc<MemStore>,
    pub sink: Arc<RecordingSink>,
    pub journal: JournalHandle<Event>,
    pub registry: AccountRegistry,
    pool: ArbiterPool,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.pool.stop();
    }
}

/// Count one off `counter` if it is above zero: whether an injected fault fires now.
fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Journal settings with a short window so that tests run fast.
pub fn journal_settings() -> JournalSettings {
    JournalSettings {
        batch_max: 256,
        batch_window: Duration::from_millis(2),
        queue_max: 4096,
        commit_timeout: Duration::from_secs(10),
    }
}

pub fn registry_settings() -> RegistrySettings {
    RegistrySettings {
        mailbox_capacity: 1024,
        passivate_after: Duration::from_secs(300),
        keys_remembered_max: 1024,
        key_digests_max: 1024,
    }
}

/// The registry settings, but with no digests of stored keys: every key the actor has not
/// seen is looked up in the store, as an entity with too many keys is.
pub fn registry_settings_without_digests() -> RegistrySettings {
    RegistrySettings {
        key_digests_max: 0,
        ..registry_settings()
    }
}

/// Must be called inside an actix system (`#[actix_rt::test]`).
pub fn harness(journal: JournalSettings, registry: RegistrySettings) -> Harness {
    harness_on(4, journal, registry)
}

/// A harness whose actors run on `arbiters` threads (1: every actor shares one thread).
pub fn harness_on(
    arbiters: usize,
    journal: JournalSettings,
    registry: RegistrySettings,
) -> Harness {
    let store = MemStore::new();
    let sink = Arc::new(RecordingSink::default());
    let (handle, _writer) =
        spawn_writer(journal, Arc::clone(&store), Arc::clone(&sink), Arc::new(()));
    let pool = ArbiterPool::start(arbiters);
    let loader: Arc<dyn Loader<Account>> = store.clone();
    let registry = Registry::new(pool.clone(), loader, handle.clone(), registry);
    Harness {
        store,
        sink,
        journal: handle,
        registry,
        pool,
    }
}

pub fn default_harness() -> Harness {
    harness(journal_settings(), registry_settings())
}

pub fn key(raw: &str) -> IdempotencyKey {
    IdempotencyKey::parse(raw).unwrap()
}

pub fn keyed(command: Cmd, raw_key: &str, fingerprint: &str) -> Request<Cmd> {
    Request::with_key(command, key(raw_key), fingerprint.to_owned())
}

/// Await `future`, failing the test if it takes longer than `secs` seconds.
pub async fn within<F: Future>(secs: u64, future: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {secs} s"),
    }
}

type AskFuture<'a> = Pin<Box<dyn Future<Output = Answer> + 'a>>;

/// A command that has been sent (its first poll ran: for a plain command that means it is in the
/// actor's mailbox, or was refused at once) and whose answer may still be coming.
pub enum Sent<'a> {
    /// Answered on the first poll, without waiting.
    AtOnce(Answer),
    Waiting(AskFuture<'a>),
}

impl Sent<'_> {
    pub async fn answer(self) -> Answer {
        match self {
            Sent::AtOnce(answer) => answer,
            Sent::Waiting(future) => within(10, future).await,
        }
    }

    pub fn at_once(&self) -> Option<&Answer> {
        match self {
            Sent::AtOnce(answer) => Some(answer),
            Sent::Waiting(_) => None,
        }
    }
}

/// Start a request and poll it once, so that it is enqueued in order, without waiting for it.
pub async fn send<'a>(registry: &'a AccountRegistry, id: &str, request: Request<Cmd>) -> Sent<'a> {
    let mut future: AskFuture<'a> = Box::pin(registry.ask(id.to_owned(), request));
    let first = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(answer) => Sent::AtOnce(answer),
        Poll::Pending => Sent::Waiting(future),
    }
}

pub async fn send_plain<'a>(registry: &'a AccountRegistry, id: &str, command: Cmd) -> Sent<'a> {
    send(registry, id, Request::plain(command)).await
}

/// Send a command and wait (bounded) for its answer.
pub async fn ask(registry: &AccountRegistry, id: &str, command: Cmd) -> Answer {
    ask_request(registry, id, Request::plain(command)).await
}

/// Send a request (a keyed one, say) and wait (bounded) for its answer.
pub async fn ask_request(registry: &AccountRegistry, id: &str, request: Request<Cmd>) -> Answer {
    within(10, registry.ask(id.to_owned(), request)).await
}

pub async fn balance(registry: &AccountRegistry, id: &str) -> u64 {
    match ask(registry, id, Cmd::Balance).await {
        Ok(Reply::Balance(balance)) => balance,
        other => panic!("balance of {id}: {other:?}"),
    }
}

/// Wait until the actor of `id` has handled every command sent to it before this call (each was
/// then applied and handed to the journal, or refused).
pub async fn handled(registry: &AccountRegistry, id: &str) {
    let notify = Arc::new(Notify::new());
    let sent = send_plain(registry, id, Cmd::Signal(Arc::clone(&notify))).await;
    if let Some(answer) = sent.at_once() {
        panic!("signal to {id} refused at once: {answer:?}");
    }
    within(10, notify.notified()).await;
    // The signal's own answer is not needed; dropping it leaves the actor unaffected.
    drop(sent);
}

/// Send a deposit and wait until the actor has handled it (its submission is in the journal's
/// queue).
pub async fn queued<'a>(registry: &'a AccountRegistry, id: &str, amount: u64) -> Sent<'a> {
    let sent = send_plain(registry, id, Cmd::Deposit(amount)).await;
    handled(registry, id).await;
    sent
}

/// Hold commits and put a batch holding a deposit of `id` at the commit gate: what is sent
/// next queues behind it, and is taken as one batch once the commits are released.
pub async fn held_at_the_gate<'a>(h: &'a Harness, id: &str, amount: u64) -> Sent<'a> {
    h.store.hold_commits();
    let entered = h.store.entered_now();
    let sent = queued(&h.registry, id, amount).await;
    h.store.entered(entered + 1).await;
    sent
}

pub fn is_not_stored(answer: &Answer) -> bool {
    matches!(answer, Err(ActorError::NotStored(_)))
}
