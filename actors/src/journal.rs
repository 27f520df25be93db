//! The journal writer: group commit of actor events (DESIGN.md section 4).
//!
//! Actors hand their events to a [`JournalHandle`] without waiting. One writer task takes
//! submissions in arrival order and commits them in batches, each batch one transaction
//! through the [`JournalStore`]. A batch closes when it holds `batch_max` submissions or when
//! `batch_window` has passed since its first one; while a batch commits, the next one fills,
//! and what filled is committed as soon as the writer is free, without a window of its own.
//! Only after a batch commits are its submissions acknowledged and its events handed to the
//! [`EventSink`] (fanout). If it fails, every submission in it is failed and every actor
//! incarnation with events in it is reset; later submissions of those incarnations are
//! failed without being written, so nothing that depended on a lost change is kept. If the
//! store refuses what it writes (a constraint), the batch is settled in halves instead, so that
//! only the submissions refused on their own fail. If the commit got no answer (it timed out,
//! or the connection broke during it), the writer asks the store what became of it
//! ([`JournalStore::resolve_unconfirmed`]) and settles the batch as committed or failed; if the
//! store cannot tell, the batch fails as unconfirmed: its callers are told the outcome is
//! unknown, and the [`EventSink`] reloads what it would have applied to other entities.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::ActorError;

/// Which actor incarnation produced a submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorStamp {
    pub kind: &'static str,
    pub id: String,
    /// Unique per activation on this node; never reused.
    pub incarnation: u64,
    /// The fencing epoch this activation raised in the store; the store refuses a batch
    /// carrying an epoch older than the stored one.
    pub epoch: i64,
}

/// An idempotency key and the reply to replay for it, written in the same batch as the effect.
#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    pub key: String,
    pub fingerprint: String,
    /// The reply, JSON-encoded.
    pub reply: Vec<u8>,
}

type Completion = Box<dyn FnOnce(Result<(), ActorError>) + Send + Sync>;
type Reset = Arc<dyn Fn(u64) + Send + Sync>;

/// One actor's contribution to a batch.
pub struct Submission<E> {
    /// `None` for a flush barrier.
    pub actor: Option<ActorStamp>,
    pub events: Vec<E>,
    pub idempotency: Option<IdempotencyRecord>,
    completion: Completion,
    reset: Option<Reset>,
}

impl<E> Submission<E> {
    /// True when there is nothing to write (a read barrier or a flush).
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.idempotency.is_none()
    }
}

/// Events of one actor incarnation that are now durable.
#[derive(Debug)]
pub struct Committed<E> {
    pub actor: ActorStamp,
    pub events: Vec<E>,
}

/// Why a batch did not commit.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// These incarnations were fenced off (their epoch is stale); the rest of the batch may be
    /// retried without them. Nothing was written.
    #[error("fenced: {0:?}")]
    Fenced(Vec<u64>),
    /// The store refused what the batch writes (a key, check or exclusion constraint):
    /// nothing was written, and a part of the batch without the offending submissions would
    /// commit. The writer retries the batch in halves to find them (see `Writer::settle`).
    #[error("refused: {0}")]
    Refused(String),
    /// The transaction failed; nothing was written.
    #[error("{0}")]
    Failed(String),
    /// The commit was sent and no answer came (it timed out, or the connection broke): the
    /// batch may have been written or not, and only the store knows which.
    #[error("unconfirmed: {0}")]
    Unconfirmed(String),
}

/// Durable storage for batches. One call is one transaction: all of it or nothing.
#[async_trait]
pub trait JournalStore<E>: Send + Sync + 'static {
    async fn commit(&self, batch: &[Submission<E>]) -> Result<(), CommitError>;

    /// Whether the last commit attempt, which was unconfirmed ([`CommitError::Unconfirmed`]),
    /// committed: `Some(true)` if it did, `Some(false)` if it never will, `None` if the store
    /// cannot tell. It may take as long as it needs (the writer bounds the wait), and must
    /// not answer `Some(false)` while the attempt could still commit.
    async fn resolve_unconfirmed(&self) -> Option<bool> {
        None
    }
}

/// Receives committed events in commit order (fanout, post-commit effects).
#[async_trait]
pub trait EventSink<E>: Send + Sync + 'static {
    /// Called with each committed batch before any caller in it is answered, for the effects
    /// an answer must already reflect: a credit handed to the payee's live actor here is in
    /// its mailbox before the payor hears of success, so a read of the payee's wallet made
    /// after that answer sees it. Must be cheap and must not block: it delays every answer of
    /// the batch.
    fn applied(&self, _batch: &[Committed<E>]) {}

    /// Called with each committed batch after its callers were answered (publishing pushes).
    async fn committed(&self, batch: Vec<Committed<E>>);

    /// Called with a batch whose commit the store did not confirm ([`CommitError::Unconfirmed`]),
    /// before its callers are failed. It may have committed, so what [`EventSink::applied`] would
    /// have handed to other entities' live actors may be in the store and not in their memory:
    /// those actors must reload (the batch's own submitters are reset by the writer). Must not
    /// block.
    fn unconfirmed(&self, _batch: &[Submission<E>]) {}
}

/// A sink that drops everything.
pub struct NoSink;

#[async_trait]
impl<E: Send + 'static> EventSink<E> for NoSink {
    async fn committed(&self, _batch: Vec<Committed<E>>) {}
}

/// What became of one commit attempt (a batch's, or one part's of a refused batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    Committed,
    /// Refused by the store; its parts are tried again (`CommitError::Refused`).
    Refused,
    /// Some incarnations were fenced off; the rest is tried again (`CommitError::Fenced`).
    Fenced,
    Failed,
    /// It may have committed (`CommitError::Unconfirmed`).
    Unconfirmed,
}

impl AttemptResult {
    pub const ALL: [AttemptResult; 5] = [
        AttemptResult::Committed,
        AttemptResult::Refused,
        AttemptResult::Fenced,
        AttemptResult::Failed,
        AttemptResult::Unconfirmed,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Committed => "committed",
            AttemptResult::Refused => "refused",
            AttemptResult::Fenced => "fenced",
            AttemptResult::Failed => "failed",
            AttemptResult::Unconfirmed => "unconfirmed",
        }
    }

    fn of(result: &Result<(), CommitError>) -> Self {
        match result {
            Ok(()) => AttemptResult::Committed,
            Err(CommitError::Refused(_)) => AttemptResult::Refused,
            Err(CommitError::Fenced(_)) => AttemptResult::Fenced,
            Err(CommitError::Failed(_)) => AttemptResult::Failed,
            Err(CommitError::Unconfirmed(_)) => AttemptResult::Unconfirmed,
        }
    }
}

/// Observes commit attempts, for metrics. A refused batch is several attempts: the refused
/// whole, then its parts.
pub trait JournalObserver: Send + Sync + 'static {
    fn batch(
        &self,
        submissions: usize,
        events: usize,
        commit_time: Duration,
        result: AttemptResult,
    );
}

impl JournalObserver for () {
    fn batch(&self, _: usize, _: usize, _: Duration, _: AttemptResult) {}
}

/// The writer's limits.
#[derive(Debug, Clone, Copy)]
pub struct JournalSettings {
    /// Most submissions in one batch.
    pub batch_max: usize,
    /// Longest a batch waits for more submissions after its first one, when the writer was
    /// idle (zero: not at all); a batch that queued while the previous one committed does not
    /// wait.
    pub batch_window: Duration,
    /// Most submissions waiting for the writer; a full queue answers `Busy`.
    pub queue_max: usize,
    /// Longest one commit may take (a batch's, or one part's of a refused batch) before the
    /// writer gives up on it and fails its submissions: a store that stops answering (a cut
    /// network drops packets silently) fails commands instead of holding them, and every
    /// batch behind them, until TCP gives up. A batch given up on may still have committed
    /// (its COMMIT had gone out), so its commands fail as unconfirmed
    /// ([`ActorError::Unconfirmed`]): a retry with the same key gets the stored answer, and
    /// every actor it touched is reset and reloads what the store kept.
    pub commit_timeout: Duration,
}

impl Default for JournalSettings {
    fn default() -> Self {
        JournalSettings {
            batch_max: 1024,
            batch_window: Duration::from_micros(500),
            queue_max: 65_536,
            commit_timeout: Duration::from_secs(10),
        }
    }
}

/// The most commits the writer spends settling the parts of one refused batch: enough to
/// single out a few refused submissions in a full batch (each costs about two commits per
/// halving, ten halvings for 1,024), not one commit per submission.
const REFUSED_RETRIES_MAX: usize = 64;

/// Why a fenced submission was not stored (`ActorError::NotStored`): the registry tells it from
/// other failures by it.
pub(crate) const FENCED: &str = "this entity is now owned by a newer activation";

/// How many failed incarnations the writer remembers. Their stragglers arrive right after the
/// failure (they were queued before the reset), so a short memory is enough.
const POISONED_REMEMBERED_MAX: usize = 4096;

/// Where actors send their events. Cheap to clone.
pub struct JournalHandle<E> {
    tx: mpsc::Sender<Submission<E>>,
    /// Set by [`JournalHandle::close`]: the writer stops taking submissions after the batch
    /// that holds the closing flush.
    closing: Arc<AtomicBool>,
}

impl<E> Clone for JournalHandle<E> {
    fn clone(&self) -> Self {
        JournalHandle {
            tx: self.tx.clone(),
            closing: Arc::clone(&self.closing),
        }
    }
}

/// A reserved place in the journal queue: take it before applying a command, so that a full
/// queue refuses the command before anything changes in memory.
pub struct Slot<'a, E> {
    permit: mpsc::Permit<'a, Submission<E>>,
}

impl<E: Send + 'static> JournalHandle<E> {
    /// Reserve a place, or `Busy` at once when the queue is full.
    pub fn reserve(&self) -> Result<Slot<'_, E>, ActorError> {
        match self.tx.try_reserve() {
            Ok(permit) => Ok(Slot { permit }),
            Err(mpsc::error::TrySendError::Full(())) => Err(ActorError::Busy("journal")),
            Err(mpsc::error::TrySendError::Closed(())) => Err(ActorError::ShuttingDown),
        }
    }

    /// Flush, and have the writer end after it: what was queued before is committed, what
    /// comes after is refused (`ShuttingDown`), and the writer task finishes even while
    /// handles are still alive (registries keep theirs until they are dropped).
    pub async fn close(&self) -> Result<(), ActorError> {
        self.closing.store(true, Ordering::Release);
        self.flush().await
    }

    /// Wait until everything submitted before this call is committed (or failed).
    pub async fn flush(&self) -> Result<(), ActorError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let submission = Submission {
            actor: None,
            events: Vec::new(),
            idempotency: None,
            completion: Box::new(move |result| {
                let _ = tx.send(result);
            }),
            reset: None,
        };
        self.tx
            .send(submission)
            .await
            .map_err(|_| ActorError::ShuttingDown)?;
        rx.await.map_err(|_| ActorError::ShuttingDown)?
    }
}

impl<E> Slot<'_, E> {
    /// Hand events to the writer. `completion` runs on the writer task once the batch holding
    /// them settled: keep it cheap. `reset` is called with the incarnation if the batch failed.
    pub fn submit(
        self,
        actor: ActorStamp,
        events: Vec<E>,
        idempotency: Option<IdempotencyRecord>,
        completion: impl FnOnce(Result<(), ActorError>) + Send + Sync + 'static,
        reset: Arc<dyn Fn(u64) + Send + Sync>,
    ) {
        self.permit.send(Submission {
            actor: Some(actor),
            events,
            idempotency,
            completion: Box::new(completion),
            reset: Some(reset),
        });
    }
}

/// Start the writer task on the current tokio runtime. It ends when every handle is dropped,
/// or after [`JournalHandle::close`], once it committed what was queued.
pub fn spawn_writer<E, S, K, O>(
    settings: JournalSettings,
    store: Arc<S>,
    sink: Arc<K>,
    observer: Arc<O>,
) -> (JournalHandle<E>, tokio::task::JoinHandle<()>)
where
    E: Send + Sync + 'static,
    S: JournalStore<E> + ?Sized,
    K: EventSink<E> + ?Sized,
    O: JournalObserver + ?Sized,
{
    let (tx, rx) = mpsc::channel(settings.queue_max.max(1));
    let closing = Arc::new(AtomicBool::new(false));
    let writer = Writer {
        closing: Arc::clone(&closing),
        settings,
        store,
        sink,
        observer,
        rx,
        poisoned: HashSet::new(),
        poisoned_order: VecDeque::new(),
    };
    let task = tokio::spawn(writer.run());
    (JournalHandle { tx, closing }, task)
}

struct Writer<E, S: ?Sized, K: ?Sized, O: ?Sized> {
    settings: JournalSettings,
    store: Arc<S>,
    sink: Arc<K>,
    observer: Arc<O>,
    rx: mpsc::Receiver<Submission<E>>,
    closing: Arc<AtomicBool>,
    poisoned: HashSet<u64>,
    poisoned_order: VecDeque<u64>,
}

impl<E, S, K, O> Writer<E, S, K, O>
where
    E: Send + Sync + 'static,
    S: JournalStore<E> + ?Sized,
    K: EventSink<E> + ?Sized,
    O: JournalObserver + ?Sized,
{
    async fn run(mut self) {
        let batch_max = self.settings.batch_max.max(1);
        let mut batch = Vec::with_capacity(batch_max);
        loop {
            // A backlog (what queued while the last batch committed) is the next batch as it
            // stands: it has already waited a whole commit, and waiting out the window on top
            // of that only delays it (at 50 payments in flight the window was a sixth of the
            // batch cycle, BENCHMARKS.md section 4). The window is for a writer that was idle,
            // where it gathers what arrives just after the first submission.
            let (first, backlog) = match self.rx.try_recv() {
                Ok(first) => (first, true),
                Err(_) => match self.rx.recv().await {
                    Some(first) => (first, false),
                    None => break,
                },
            };
            batch.push(first);
            let deadline = tokio::time::Instant::now() + self.settings.batch_window;
            while batch.len() < batch_max {
                // Take what is already queued without waiting, then (if the writer was idle)
                // wait out the window.
                match self.rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) if backlog => break,
                    Err(_) => match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                        Ok(Some(next)) => batch.push(next),
                        Ok(None) | Err(_) => break,
                    },
                }
            }
            self.settle(std::mem::take(&mut batch)).await;
            if self.closing.load(Ordering::Acquire) {
                // Refuse new submissions; what is already queued is still taken, then `recv`
                // ends the loop.
                self.rx.close();
            }
        }
        tracing::debug!("journal writer stopped");
    }

    /// Commit one batch and release or fail its submissions.
    async fn settle(&mut self, batch: Vec<Submission<E>>) {
        let mut retries = REFUSED_RETRIES_MAX;
        self.settle_part(batch, &mut retries).await;
    }

    /// Commit one batch, or one part of a refused batch, with `retries` commits left for the
    /// parts of the batch it came from.
    async fn settle_part(&mut self, batch: Vec<Submission<E>>, retries: &mut usize) {
        let (mut live, doomed): (Vec<_>, Vec<_>) = batch.into_iter().partition(|s| {
            s.actor
                .as_ref()
                .is_none_or(|a| !self.poisoned.contains(&a.incarnation))
        });
        for submission in doomed {
            (submission.completion)(Err(ActorError::NotStored(
                "an earlier change of this entity failed to commit".into(),
            )));
        }
        if live.iter().all(Submission::is_empty) {
            // Nothing to write: earlier batches have all settled, so barriers are released.
            self.release(live).await;
            return;
        }
        let mut result = self.commit(&live).await;
        if let Err(CommitError::Fenced(fenced)) = &result {
            let fenced: HashSet<u64> = fenced.iter().copied().collect();
            tracing::warn!(
                count = fenced.len(),
                "journal batch fenced; retrying without them"
            );
            let (kept, stale): (Vec<_>, Vec<_>) = live.into_iter().partition(|s| {
                s.actor
                    .as_ref()
                    .is_none_or(|a| !fenced.contains(&a.incarnation))
            });
            self.fail(stale, &ActorError::NotStored(FENCED.into()));
            live = kept;
            result = self.commit(&live).await;
        }
        match result {
            Ok(()) => self.release(live).await,
            // One command's write that the store refuses must not fail every other command
            // that happened to share its batch: those are other users' (and one client could
            // otherwise fail them at will). So the halves are settled one after the other, in
            // order, each split again while it is refused, until what is refused is single
            // submissions, which alone fail. A half settled later first drops what an earlier
            // half's failure doomed (the top of `settle_part`). It costs about two commits per
            // level for each refused submission, and only when the store refuses: a batch
            // that failed for any other reason (a lost connection, a timeout) would fail its
            // halves as well, and fails whole at once. The retries of one batch are bounded
            // (`REFUSED_RETRIES_MAX`), so that a batch full of refusals cannot hold the writer,
            // and every command queued behind it, for a commit per submission: past the bound,
            // what is still refused fails whole, as any failed batch does.
            Err(CommitError::Refused(error)) if live.len() > 1 && *retries >= 2 => {
                tracing::warn!(%error, submissions = live.len(), "journal batch refused; settling it in halves");
                *retries -= 2;
                let later = live.split_off(live.len() / 2);
                Box::pin(self.settle_part(live, retries)).await;
                Box::pin(self.settle_part(later, retries)).await;
            }
            // It may have committed. The store may find out after all (PostgreSQL can say what
            // became of a transaction), and then the batch is settled as what it was. If not,
            // the callers hear that the outcome is unknown (a retry with the same key learns it
            // from the store), and every actor the batch touched reloads, as the failed
            // batch's submitters do: the sink resets the others.
            Err(CommitError::Unconfirmed(error)) => match self.resolve().await {
                Some(true) => {
                    tracing::warn!(%error, submissions = live.len(), "journal batch unconfirmed, then found committed");
                    self.release(live).await;
                }
                Some(false) => {
                    tracing::error!(%error, submissions = live.len(), "journal batch unconfirmed, then found rolled back");
                    self.fail(
                        live,
                        &ActorError::NotStored(
                            "the batch holding this change failed to commit".into(),
                        ),
                    );
                }
                None => self.fail_unconfirmed(live, &error),
            },
            Err(error) => {
                tracing::error!(%error, submissions = live.len(), "journal batch failed");
                self.fail(
                    live,
                    &ActorError::NotStored("the batch holding this change failed to commit".into()),
                );
            }
        }
    }

    /// What became of an unconfirmed attempt, if the store can find out within the commit
    /// timeout.
    async fn resolve(&self) -> Option<bool> {
        let within = self.settings.commit_timeout;
        tokio::time::timeout(within, self.store.resolve_unconfirmed())
            .await
            .ok()
            .flatten()
    }

    /// Fail a batch that may have committed.
    fn fail_unconfirmed(&mut self, live: Vec<Submission<E>>, error: &str) {
        tracing::error!(%error, submissions = live.len(), "journal batch unconfirmed");
        self.sink.unconfirmed(&live);
        // A read (a barrier) changed nothing either way; it only cannot be answered.
        let (reads, writes): (Vec<_>, Vec<_>) = live.into_iter().partition(Submission::is_empty);
        self.fail(
            writes,
            &ActorError::Unconfirmed(
                "the store did not confirm the batch holding this change".into(),
            ),
        );
        self.fail(
            reads,
            &ActorError::NotStored(
                "the store did not confirm the batch this read waited for".into(),
            ),
        );
    }

    async fn commit(&self, batch: &[Submission<E>]) -> Result<(), CommitError> {
        let started = Instant::now();
        let deadline = self.settings.commit_timeout;
        let result = match tokio::time::timeout(deadline, self.store.commit(batch)).await {
            Ok(result) => result,
            // The store's future is dropped mid-way: whatever it had sent may still commit.
            Err(_) => Err(CommitError::Unconfirmed(format!(
                "the batch's commit took longer than {deadline:?}"
            ))),
        };
        let events = batch.iter().map(|s| s.events.len()).sum();
        self.observer.batch(
            batch.len(),
            events,
            started.elapsed(),
            AttemptResult::of(&result),
        );
        result
    }

    async fn release(&self, batch: Vec<Submission<E>>) {
        let mut completions = Vec::with_capacity(batch.len());
        let mut committed = Vec::with_capacity(batch.len());
        for submission in batch {
            completions.push(submission.completion);
            if let Some(actor) = submission.actor {
                if !submission.events.is_empty() {
                    committed.push(Committed {
                        actor,
                        events: submission.events,
                    });
                }
            }
        }
        if !committed.is_empty() {
            self.sink.applied(&committed);
        }
        for completion in completions {
            completion(Ok(()));
        }
        if !committed.is_empty() {
            self.sink.committed(committed).await;
        }
    }

    fn fail(&mut self, batch: Vec<Submission<E>>, error: &ActorError) {
        for submission in batch {
            if let (Some(actor), Some(reset)) = (&submission.actor, &submission.reset) {
                if self.poisoned.insert(actor.incarnation) {
                    self.poisoned_order.push_back(actor.incarnation);
                    reset(actor.incarnation);
                }
            }
            (submission.completion)(Err(error.clone()));
        }
        while self.poisoned_order.len() > POISONED_REMEMBERED_MAX {
            if let Some(old) = self.poisoned_order.pop_front() {
                self.poisoned.remove(&old);
            }
        }
    }
}
