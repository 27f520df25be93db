//! Black-box tests of the actor runtime (registry + journal writer) through its public API,
//! against an in-memory store that injects faults. Each test names the guarantee it checks
//! (DESIGN.md sections 3 and 4).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::Arbiter;
use actors::journal::JournalSettings;
use actors::registry::RegistrySettings;
use actors::{ActorError, Request};
use common::*;
use tokio::sync::mpsc;

/// 1. Group commit: many concurrent commands commit in far fewer transactions, and every
///    acknowledged deposit is in memory and in the store.
#[actix_rt::test]
async fn group_commit_batches_concurrent_commands() {
    let h = harness(
        JournalSettings {
            batch_max: 1024,
            batch_window: Duration::from_millis(5),
            queue_max: 65_536,
            commit_timeout: Duration::from_secs(10),
        },
        registry_settings(),
    );
    h.store.set_commit_delay(Duration::from_millis(2));

    let mut tasks = Vec::new();
    let mut expected: HashMap<String, u64> = HashMap::new();
    for i in 0..1000u64 {
        let id = format!("acct-{}", i % 50);
        let amount = i % 7 + 1;
        *expected.entry(id.clone()).or_default() += amount;
        let registry = h.registry.clone();
        tasks.push(actix_rt::spawn(async move {
            registry.ask(id, Request::plain(Cmd::Deposit(amount))).await
        }));
    }
    for task in tasks {
        let answer = within(30, task).await.unwrap();
        assert!(
            matches!(answer, Ok(Reply::Balance(_))),
            "deposit: {answer:?}"
        );
    }

    // The sink is called after a batch's waiters are released: a flush orders us after it.
    within(10, h.journal.flush()).await.unwrap();
    let transactions = h.store.transactions();
    assert!(transactions > 0);
    assert!(
        transactions < 200,
        "1000 commands took {transactions} transactions: no group commit"
    );
    for (id, sum) in &expected {
        assert_eq!(
            balance(&h.registry, id).await,
            *sum,
            "memory balance of {id}"
        );
        assert_eq!(h.store.balance(id), *sum, "stored balance of {id}");
        assert_eq!(
            h.sink.events(id),
            h.store.events(id),
            "the sink saw {id}'s events in commit order"
        );
    }
    assert_eq!(h.store.rows().len(), 1000);
    assert_eq!(h.sink.rows().len(), 1000);
}

/// 1b. What queued while a batch committed is committed as soon as that batch is done, without
///    waiting out the batch window: the window is for a writer that was idle.
#[actix_rt::test]
async fn a_backlog_commits_without_waiting_out_the_window() {
    let h = harness(
        JournalSettings {
            // Three submissions fill a batch, so the first batch does not wait the window either.
            batch_max: 3,
            batch_window: Duration::from_secs(60),
            queue_max: 65_536,
            commit_timeout: Duration::from_secs(10),
        },
        registry_settings(),
    );
    h.store.hold_commits();
    let entered = h.store.entered_now();
    let first = send_plain(&h.registry, "a", Cmd::Deposit(1)).await;
    let second = send_plain(&h.registry, "b", Cmd::Deposit(2)).await;
    // A command handled behind a write goes through the journal too (it is answered only
    // after that write commits): the third submission, which fills the batch.
    handled(&h.registry, "b").await;
    h.store.entered(entered + 1).await;
    // The full batch is at the commit gate; these two submissions queue behind it, short of
    // a full batch.
    let behind = send_plain(&h.registry, "c", Cmd::Deposit(3)).await;
    handled(&h.registry, "c").await;
    h.store.release_commits();
    assert_eq!(first.answer().await, Ok(Reply::Balance(1)));
    assert_eq!(second.answer().await, Ok(Reply::Balance(2)));
    // `answer` waits at most 10 s: far less than the window.
    assert_eq!(behind.answer().await, Ok(Reply::Balance(3)));
    assert_eq!(h.store.deposits("c"), vec![3]);
}

/// 2. Single activation: 200 concurrent first commands to one new id, raced from several
///    threads while its load is held, activate it once.
#[actix_rt::test]
async fn concurrent_first_commands_activate_once() {
    let h = default_harness();
    h.store.hold_loads();

    let senders: Vec<Arbiter> = (0..4).map(|_| Arbiter::new()).collect();
    let (enqueued_tx, mut enqueued_rx) = mpsc::unbounded_channel::<()>();
    let (answers_tx, mut answers_rx) = mpsc::unbounded_channel::<Answer>();
    let start = Arc::new(tokio::sync::Barrier::new(senders.len()));
    for arbiter in &senders {
        let registry = h.registry.clone();
        let enqueued = enqueued_tx.clone();
        let answers = answers_tx.clone();
        let start = Arc::clone(&start);
        arbiter.spawn(async move {
            start.wait().await;
            let mut pending = Vec::new();
            for _ in 0..50 {
                let mut ask =
                    Box::pin(registry.ask("solo".to_owned(), Request::plain(Cmd::Deposit(1))));
                match std::future::poll_fn(|cx| std::task::Poll::Ready(ask.as_mut().poll(cx))).await
                {
                    std::task::Poll::Ready(answer) => answers.send(answer).unwrap(),
                    std::task::Poll::Pending => pending.push(ask),
                }
            }
            enqueued.send(()).unwrap();
            for ask in pending {
                answers.send(ask.await).unwrap();
            }
        });
    }
    drop(answers_tx);
    for _ in 0..senders.len() {
        within(10, enqueued_rx.recv()).await.unwrap();
    }
    // All 200 commands were sent while the first activation was still loading.
    assert_eq!(h.store.loads("solo"), 0);
    h.store.release_loads();

    let mut ok = 0;
    for _ in 0..200 {
        let answer = within(10, answers_rx.recv()).await.unwrap();
        assert!(matches!(answer, Ok(Reply::Balance(_))), "{answer:?}");
        ok += 1;
    }
    assert_eq!(ok, 200);
    assert_eq!(h.store.loads("solo"), 1, "the loader ran more than once");
    assert_eq!(
        h.registry
            .stats()
            .activations
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(balance(&h.registry, "solo").await, 200);
    assert_eq!(h.store.balance("solo"), 200);
    for arbiter in senders {
        arbiter.stop();
    }
}

/// 3a. A failing batch: its commands get `NotStored`, nothing of them is stored or fanned out,
///     and the actor is reset: the next command reloads (new load, new epoch) and sees only
///     what was acknowledged.
#[actix_rt::test]
async fn failed_batch_fails_its_commands_and_resets_the_actor() {
    let h = default_harness();
    assert_eq!(
        ask(&h.registry, "a", Cmd::Deposit(5)).await,
        Ok(Reply::Balance(5))
    );
    let loads_before = h.store.loads("a");
    let epoch_before = h.store.epoch("a");

    h.store.set_failing(true);
    let mut sent = Vec::new();
    for amount in 1..=10 {
        sent.push(send_plain(&h.registry, "a", Cmd::Deposit(amount)).await);
    }
    for s in sent {
        let answer = s.answer().await;
        assert!(is_not_stored(&answer), "{answer:?}");
    }
    assert_eq!(h.store.events("a"), vec![Event::Deposited(5)]);
    h.store.set_failing(false);
    within(10, h.journal.flush()).await.unwrap();
    assert_eq!(h.sink.events("a"), vec![Event::Deposited(5)]);

    assert_eq!(balance(&h.registry, "a").await, 5);
    assert_eq!(
        h.store.loads("a"),
        loads_before + 1,
        "the actor was not reset"
    );
    assert_eq!(h.store.epoch("a"), epoch_before + 1);
    assert!(
        h.registry
            .stats()
            .resets
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    assert_eq!(
        ask(&h.registry, "a", Cmd::Deposit(100)).await,
        Ok(Reply::Balance(105))
    );
    assert_eq!(h.store.balance("a"), 105);
}

/// 3b. A mix: deposits acknowledged before a failure stay, exactly once; those in the failing
///     batch (of this and of another entity) are gone; memory after recovery equals the store.
#[actix_rt::test]
async fn acknowledged_changes_survive_a_failed_batch_exactly_once() {
    let h = default_harness();
    h.store.set_commit_delay(Duration::from_millis(1));
    let mut acknowledged: Vec<u64> = Vec::new();

    // Acknowledged before the failure.
    let mut sent = Vec::new();
    for amount in [1, 2, 3, 4, 5] {
        sent.push((
            amount,
            send_plain(&h.registry, "b", Cmd::Deposit(amount)).await,
        ));
    }
    for (amount, s) in sent {
        assert_eq!(
            s.answer().await.map(|_| ()),
            Ok(()),
            "deposit {amount} before the failure"
        );
        acknowledged.push(amount);
    }

    // In the failing batch(es): deposits of "b" and of another entity "c".
    h.store.hold_commits();
    let mut doomed = Vec::new();
    for amount in [10, 20, 30, 40] {
        doomed.push(send_plain(&h.registry, "b", Cmd::Deposit(amount)).await);
        doomed.push(send_plain(&h.registry, "c", Cmd::Deposit(amount)).await);
    }
    handled(&h.registry, "b").await;
    handled(&h.registry, "c").await;
    // However the writer cut them into batches, every batch holding them fails.
    h.store.set_failing(true);
    h.store.release_commits();
    for s in doomed {
        let answer = s.answer().await;
        assert!(is_not_stored(&answer), "{answer:?}");
    }
    h.store.set_failing(false);

    // Acknowledged after the failure, on the fresh incarnation.
    for amount in [100, 200] {
        assert!(ask(&h.registry, "b", Cmd::Deposit(amount)).await.is_ok());
        acknowledged.push(amount);
    }
    acknowledged.sort_unstable();
    assert_eq!(h.store.deposits("b"), acknowledged, "every ack stored once");
    assert!(h.store.events("c").is_empty());
    let stored = h.store.balance("b");
    assert_eq!(stored, acknowledged.iter().sum::<u64>());
    assert_eq!(balance(&h.registry, "b").await, stored);
    assert_eq!(balance(&h.registry, "c").await, 0);
    within(10, h.journal.flush()).await.unwrap();
    assert_eq!(h.sink.events("b"), h.store.events("b"));
    assert!(h.sink.events("c").is_empty());
}

/// 3c. The poisoned path: a later submission of a failed incarnation, queued behind the
///     failing batch, is failed without being written; another entity's submission queued with
///     it commits.
#[actix_rt::test]
async fn submissions_queued_behind_a_failed_batch_are_not_written() {
    let h = default_harness();
    assert!(ask(&h.registry, "p", Cmd::Deposit(1)).await.is_ok());
    assert!(ask(&h.registry, "q", Cmd::Deposit(1)).await.is_ok());

    // The batch holding the first deposit is being committed (held at the gate) ...
    let first = held_at_the_gate(&h, "p", 10).await;
    // ... and these are queued behind it: a deposit that was decided on top of the first one,
    // and a deposit of another entity.
    let second = send_plain(&h.registry, "p", Cmd::Deposit(20)).await;
    let other = send_plain(&h.registry, "q", Cmd::Deposit(5)).await;
    handled(&h.registry, "p").await;
    handled(&h.registry, "q").await;

    let attempts = h.store.attempts();
    h.store.fail_next(1);
    h.store.release_commits();
    assert!(is_not_stored(&first.answer().await));
    let second = second.answer().await;
    assert!(is_not_stored(&second), "{second:?}");
    assert_eq!(other.answer().await, Ok(Reply::Balance(6)));
    assert_eq!(h.store.events("p"), vec![Event::Deposited(1)]);
    assert_eq!(h.store.deposits("q"), vec![1, 5]);
    // One failed attempt for the first batch, one commit holding only q's deposit.
    assert_eq!(h.store.attempts(), attempts + 2);
    assert_eq!(balance(&h.registry, "p").await, 1);
}

/// 3e. A submission the store refuses (a constraint its write breaks) fails alone. The batch
///     is settled in halves: the commands that shared it commit, other entities' and the same
///     entity's before it; what the refused incarnation submitted after it fails with it; and
///     its actor is reset to what the store kept. One client's bad write cannot fail other
///     users' commands.
#[actix_rt::test]
async fn a_refused_submission_fails_alone_and_its_batch_neighbours_commit() {
    let h = default_harness();
    assert!(ask(&h.registry, "r", Cmd::Deposit(1)).await.is_ok());
    let loads_before = h.store.loads("r");

    // A first batch held at the gate, so that everything sent next queues into one batch.
    let gate = held_at_the_gate(&h, "z", 1).await;
    let mut neighbours = Vec::new();
    for id in ["a", "b", "c", "d", "e", "f", "g"] {
        neighbours.push(queued(&h.registry, id, 7).await);
    }
    let before = send_plain(&h.registry, "r", Cmd::Deposit(2)).await;
    let refused = send_plain(&h.registry, "r", Cmd::Deposit(666)).await;
    let after = send_plain(&h.registry, "r", Cmd::Deposit(3)).await;
    handled(&h.registry, "r").await;
    h.store.refuse_deposits_of(666);
    h.store.release_commits();

    assert_eq!(gate.answer().await, Ok(Reply::Balance(1)));
    for neighbour in neighbours {
        assert_eq!(neighbour.answer().await, Ok(Reply::Balance(7)));
    }
    assert_eq!(before.answer().await, Ok(Reply::Balance(3)));
    assert!(is_not_stored(&refused.answer().await));
    let after = after.answer().await;
    assert!(
        is_not_stored(&after),
        "decided on top of the refused one: {after:?}"
    );
    assert_eq!(h.store.deposits("r"), vec![1, 2]);
    for id in ["a", "b", "c", "d", "e", "f", "g"] {
        assert_eq!(h.store.deposits(id), vec![7], "{id}");
    }
    within(10, h.journal.flush()).await.unwrap();
    assert_eq!(
        h.sink.events("r"),
        h.store.events("r"),
        "the sink saw commit order"
    );
    assert_eq!(balance(&h.registry, "r").await, 3);
    assert_eq!(h.store.loads("r"), loads_before + 1, "the actor was reset");
    assert_eq!(
        ask(&h.registry, "r", Cmd::Deposit(100)).await,
        Ok(Reply::Balance(103))
    );
}

/// 3e'. The parts of one refused batch cost a bounded number of commits: a batch in which
///     every submission is refused does not take a commit per submission (79 for these 40)
///     while everything queued behind it waits. Past the bound, what is still refused fails.
#[actix_rt::test]
async fn a_batch_of_refusals_is_settled_in_a_bounded_number_of_commits() {
    let h = default_harness();
    let gate = held_at_the_gate(&h, "gate", 1).await;
    let mut refused = Vec::new();
    for n in 0..40 {
        refused.push(queued(&h.registry, &format!("r{n}"), 666).await);
    }
    let attempts = h.store.attempts();
    h.store.refuse_deposits_of(666);
    h.store.release_commits();
    assert_eq!(gate.answer().await, Ok(Reply::Balance(1)));
    for answer in refused {
        assert!(is_not_stored(&answer.answer().await));
    }
    let spent = h.store.attempts() - attempts;
    // The gate's commit, the batch's first attempt, then at most 64 for its parts.
    assert!((3..=66).contains(&spent), "{spent} commits");
    assert_eq!(
        ask(&h.registry, "r0", Cmd::Deposit(2)).await,
        Ok(Reply::Balance(2))
    );
}

/// 3f. A batch that fails for any other reason is not retried in parts: every part would
///     fail the same way (a lost connection), so it fails whole, in one attempt.
#[actix_rt::test]
async fn a_failed_batch_is_not_retried_in_parts() {
    let h = default_harness();
    let gate = held_at_the_gate(&h, "z", 1).await;
    let mut doomed = Vec::new();
    for id in ["a", "b", "c", "d"] {
        doomed.push(queued(&h.registry, id, 7).await);
    }
    let attempts = h.store.attempts();
    // Two failures: the gate's batch, then the one batch of the four queued deposits. A
    // retry in parts would be a third attempt, and would store them.
    h.store.fail_next(2);
    h.store.release_commits();
    assert!(is_not_stored(&gate.answer().await));
    for s in doomed {
        assert!(is_not_stored(&s.answer().await));
    }
    assert_eq!(h.store.attempts(), attempts + 2);
    for id in ["a", "b", "c", "d", "z"] {
        assert!(h.store.events(id).is_empty(), "{id}");
    }
}

/// 3d. Under repeated injected failures and concurrency, the store holds exactly the
///     acknowledged deposits, once each, and memory agrees with the store.
#[actix_rt::test]
async fn acknowledged_exactly_once_under_intermittent_failures() {
    let h = harness(
        JournalSettings {
            batch_max: 8,
            batch_window: Duration::from_millis(1),
            queue_max: 4096,
            commit_timeout: Duration::from_secs(10),
        },
        registry_settings(),
    );
    h.store.fail_every(3);
    let ids: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    let mut tasks = Vec::new();
    for round in 0..5u64 {
        for (n, id) in ids.iter().enumerate() {
            for k in 0..10u64 {
                // A unique amount per command, so that each one can be found in the store.
                let amount = 1 + round * 1000 + (n as u64) * 10 + k;
                let registry = h.registry.clone();
                let id = id.clone();
                tasks.push(actix_rt::spawn(async move {
                    let answer = registry
                        .ask(id.clone(), Request::plain(Cmd::Deposit(amount)))
                        .await;
                    (id, amount, answer)
                }));
            }
        }
    }
    let mut acknowledged: HashMap<String, Vec<u64>> = HashMap::new();
    let (mut ok, mut failed) = (0, 0);
    for task in tasks {
        let (id, amount, answer) = within(30, task).await.unwrap();
        match answer {
            Ok(_) => {
                ok += 1;
                acknowledged.entry(id).or_default().push(amount);
            }
            Err(ActorError::NotStored(_) | ActorError::Unavailable(_)) => failed += 1,
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert!(ok > 0 && failed > 0, "ok {ok}, failed {failed}");
    h.store.fail_every(0);
    for id in &ids {
        let mut expected = acknowledged.remove(id).unwrap_or_default();
        expected.sort_unstable();
        assert_eq!(h.store.deposits(id), expected, "stored deposits of {id}");
        let stored = h.store.balance(id);
        assert_eq!(
            balance(&h.registry, id).await,
            stored,
            "memory vs store for {id}"
        );
    }
}

/// 4a. A full mailbox answers `Busy` at once; nothing is lost: every accepted command is
///     applied exactly once, and no refused one is.
#[actix_rt::test]
async fn full_mailbox_answers_busy_at_once() {
    let h = harness(
        journal_settings(),
        RegistrySettings {
            mailbox_capacity: 4,
            ..registry_settings()
        },
    );
    h.store.hold_loads();
    let mut sent = Vec::new();
    for amount in 1..=40u64 {
        sent.push((
            amount,
            send_plain(&h.registry, "busy", Cmd::Deposit(amount)).await,
        ));
    }
    let busy_at_once = sent
        .iter()
        .filter(|(_, s)| matches!(s.at_once(), Some(Err(ActorError::Busy(_)))))
        .count();
    assert!(
        busy_at_once > 0,
        "a flood of 40 into a mailbox of 4 was never busy"
    );
    h.store.release_loads();

    let mut applied = Vec::new();
    for (amount, s) in sent {
        match s.answer().await {
            Ok(_) => applied.push(amount),
            Err(ActorError::Busy("mailbox")) => {}
            other => panic!("deposit {amount}: {other:?}"),
        }
    }
    // The load was held, so nothing left the mailbox: exactly its capacity was accepted.
    assert_eq!(applied, vec![1, 2, 3, 4]);
    assert_eq!(busy_at_once, 36);
    assert_eq!(h.store.deposits("busy"), applied);
    assert_eq!(
        balance(&h.registry, "busy").await,
        applied.iter().sum::<u64>()
    );
}

/// 4b. A full journal queue answers `Busy("journal")`; refused commands change nothing.
#[actix_rt::test]
async fn full_journal_queue_answers_busy() {
    let h = harness(
        JournalSettings {
            batch_max: 2,
            batch_window: Duration::from_millis(1),
            queue_max: 2,
            commit_timeout: Duration::from_secs(10),
        },
        registry_settings(),
    );
    h.store.set_commit_delay(Duration::from_millis(20));
    let mut tasks = Vec::new();
    for n in 0..200u64 {
        let id = format!("j{}", n % 10);
        let amount = n + 1;
        let registry = h.registry.clone();
        tasks.push(actix_rt::spawn(async move {
            let answer = registry
                .ask(id.clone(), Request::plain(Cmd::Deposit(amount)))
                .await;
            (id, amount, answer)
        }));
    }
    let mut applied: HashMap<String, Vec<u64>> = HashMap::new();
    let mut busy = 0;
    for task in tasks {
        let (id, amount, answer) = within(60, task).await.unwrap();
        match answer {
            Ok(_) => applied.entry(id).or_default().push(amount),
            Err(ActorError::Busy("journal")) => busy += 1,
            other => panic!("deposit {amount} to {id}: {other:?}"),
        }
    }
    assert!(
        busy > 0,
        "a slow store with a journal queue of 2 was never busy"
    );
    assert!(!applied.is_empty());
    h.store.set_commit_delay(Duration::ZERO);
    for n in 0..10 {
        let id = format!("j{n}");
        let mut expected = applied.remove(&id).unwrap_or_default();
        expected.sort_unstable();
        assert_eq!(h.store.deposits(&id), expected, "stored deposits of {id}");
        assert_eq!(
            balance(&h.registry, &id).await,
            expected.iter().sum::<u64>()
        );
    }
}

/// 5. Passivation: an idle actor leaves the registry; the next command reactivates it with its
///    state reloaded intact. An actor with work in flight does not passivate.
#[actix_rt::test]
async fn idle_actor_passivates_and_reactivates_intact() {
    let h = harness(
        journal_settings(),
        RegistrySettings {
            passivate_after: Duration::from_millis(50),
            ..registry_settings()
        },
    );
    assert_eq!(
        ask(&h.registry, "idle", Cmd::Deposit(42)).await,
        Ok(Reply::Balance(42))
    );
    assert_eq!(h.registry.len(), 1);
    wait_until_empty(&h.registry).await;
    assert!(
        h.registry
            .stats()
            .passivations
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    assert_eq!(h.store.loads("idle"), 1);
    assert_eq!(balance(&h.registry, "idle").await, 42);
    assert_eq!(h.store.loads("idle"), 2, "the state was not reloaded");
    assert_eq!(
        ask(&h.registry, "idle", Cmd::Withdraw(40)).await,
        Ok(Reply::Balance(2))
    );

    // With a commit in flight, the actor stays well past its idle time.
    h.store.hold_commits();
    let pending = send_plain(&h.registry, "idle", Cmd::Deposit(8)).await;
    let gone =
        tokio::time::timeout(Duration::from_millis(300), wait_until_empty(&h.registry)).await;
    assert!(gone.is_err(), "an actor with work in flight passivated");
    h.store.release_commits();
    assert_eq!(pending.answer().await, Ok(Reply::Balance(10)));
    wait_until_empty(&h.registry).await;
    assert_eq!(balance(&h.registry, "idle").await, 10);
}

async fn wait_until_empty(registry: &AccountRegistry) {
    within(5, async {
        while !registry.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// 6. Idempotency: one key, one effect, the same reply every time (concurrent copies, after
///    commit, after passivation from the store); a different request under the key is refused.
#[actix_rt::test]
async fn idempotent_retries_get_the_first_answer() {
    idempotent_retries_get_the_first_answer_with(registry_settings()).await;
}

/// 6, for an entity whose actor does not hold its stored keys (too many): every key it has not
/// seen is looked up in the store.
#[actix_rt::test]
async fn idempotent_retries_get_the_first_answer_without_digests() {
    idempotent_retries_get_the_first_answer_with(registry_settings_without_digests()).await;
}

async fn idempotent_retries_get_the_first_answer_with(settings: RegistrySettings) {
    let h = harness(
        journal_settings(),
        RegistrySettings {
            passivate_after: Duration::from_millis(50),
            ..settings
        },
    );
    let mut copies = Vec::new();
    for _ in 0..3 {
        copies.push(send(&h.registry, "i", keyed(Cmd::Deposit(7), "k1", "deposit-7")).await);
    }
    let mut replies = Vec::new();
    for copy in copies {
        replies.push(copy.answer().await);
    }
    // Retry after commit.
    replies.push(ask_request(&h.registry, "i", keyed(Cmd::Deposit(7), "k1", "deposit-7")).await);
    // Retry after passivation: the store answers, without activating the actor.
    wait_until_empty(&h.registry).await;
    let loads = h.store.loads("i");
    replies.push(ask_request(&h.registry, "i", keyed(Cmd::Deposit(7), "k1", "deposit-7")).await);
    assert_eq!(
        h.store.loads("i"),
        loads,
        "the store should have answered the retry"
    );
    for reply in &replies {
        assert_eq!(reply, &Ok(Reply::Balance(7)));
    }
    assert_eq!(
        h.store.events("i"),
        vec![Event::Deposited(7)],
        "exactly one effect"
    );

    // The key with a different request: refused, from the store ...
    assert_eq!(
        ask_request(&h.registry, "i", keyed(Cmd::Deposit(8), "k1", "deposit-8")).await,
        Err(ActorError::KeyReused)
    );
    // ... and from the actor's memory while the first use is in flight.
    h.store.hold_commits();
    let entered = h.store.entered_now();
    let registry = h.registry.clone();
    let first = actix_rt::spawn(async move {
        registry
            .ask("i".into(), keyed(Cmd::Deposit(1), "k2", "deposit-1"))
            .await
    });
    // Its batch is being committed (held), so the key is in flight.
    h.store.entered(entered + 1).await;
    assert_eq!(
        ask_request(
            &h.registry,
            "i",
            keyed(Cmd::Withdraw(1), "k2", "withdraw-1")
        )
        .await,
        Err(ActorError::KeyReused)
    );
    h.store.release_commits();
    assert_eq!(within(10, first).await.unwrap(), Ok(Reply::Balance(8)));

    // A refusal is an answer too: stored and replayed, not re-decided.
    let refused = Reply::Refused {
        balance: 8,
        wanted: 9,
    };
    assert_eq!(
        ask_request(
            &h.registry,
            "i",
            keyed(Cmd::Withdraw(9), "k3", "withdraw-9")
        )
        .await,
        Ok(refused.clone())
    );
    assert!(ask(&h.registry, "i", Cmd::Deposit(100)).await.is_ok());
    assert_eq!(
        ask_request(
            &h.registry,
            "i",
            keyed(Cmd::Withdraw(9), "k3", "withdraw-9")
        )
        .await,
        Ok(refused)
    );
    assert_eq!(h.store.balance("i"), 108);
    assert!(h.store.duplicate_keys().is_empty());
    // Every activation read its stored keys if the actor holds digests, and none did if not.
    let stats = h.registry.stats();
    let activations = stats.activations.load(std::sync::atomic::Ordering::Relaxed);
    let reads = stats.key_reads.load(std::sync::atomic::Ordering::Relaxed);
    assert!(activations >= 2, "passivated and reloaded: {activations}");
    let expected = if settings.key_digests_max == 0 {
        0
    } else {
        activations
    };
    assert_eq!(reads, expected, "counted");
    assert_eq!(h.store.key_reads() as u64, expected, "asked of the store");
}

/// 6c. A duplicate of a keyed command that waits for the first one's outcome gets it, even if
///     the actor passivates the moment that outcome arrives (the actor was idle meanwhile,
///     and its thread busy when the commit completed).
#[actix_rt::test]
async fn passivation_does_not_drop_a_waiting_duplicate() {
    let passivate_after = Duration::from_millis(30);
    let h = harness_on(
        1,
        journal_settings(),
        RegistrySettings {
            passivate_after,
            ..registry_settings()
        },
    );
    h.store.hold_commits();
    let entered = h.store.entered_now();
    let registry = h.registry.clone();
    let first = actix_rt::spawn(async move {
        registry
            .ask("d".into(), keyed(Cmd::Deposit(1), "k", "deposit-1"))
            .await
    });
    h.store.entered(entered + 1).await;
    let registry = h.registry.clone();
    let duplicate = actix_rt::spawn(async move {
        registry
            .ask("d".into(), keyed(Cmd::Deposit(1), "k", "deposit-1"))
            .await
    });
    handled(&h.registry, "d").await;
    let idle_since = tokio::time::Instant::now();
    // Block the one arbiter thread, then let the commit complete and the actor's idle time
    // run out while its thread is busy.
    let stall = Stall::new();
    let stalled = send_plain(&h.registry, "other", Cmd::Stall(Arc::clone(&stall))).await;
    within(10, stall.started.notified()).await;
    h.store.release_commits();
    assert_eq!(within(10, first).await.unwrap(), Ok(Reply::Balance(1)));
    tokio::time::sleep_until(idle_since + passivate_after * 3).await;
    stall.release();
    assert!(stalled.answer().await.is_ok());
    assert_eq!(within(10, duplicate).await.unwrap(), Ok(Reply::Balance(1)));
    assert_eq!(h.store.events("d"), vec![Event::Deposited(1)]);
}

/// 6b. A key whose first attempt failed to commit is free: the retry runs once.
#[actix_rt::test]
async fn a_key_whose_attempt_failed_runs_once_on_retry() {
    let h = default_harness();
    h.store.fail_next(1);
    let first = ask_request(&h.registry, "r", keyed(Cmd::Deposit(3), "k", "deposit-3")).await;
    assert!(is_not_stored(&first), "{first:?}");
    for _ in 0..2 {
        assert_eq!(
            ask_request(&h.registry, "r", keyed(Cmd::Deposit(3), "k", "deposit-3")).await,
            Ok(Reply::Balance(3))
        );
    }
    assert_eq!(h.store.events("r"), vec![Event::Deposited(3)]);
}

/// 7a. A read sent right behind an uncommitted deposit never shows the deposit if its batch
///     then fails.
#[actix_rt::test]
async fn read_behind_a_failed_write_does_not_see_it() {
    let h = default_harness();
    assert!(ask(&h.registry, "r", Cmd::Deposit(10)).await.is_ok());
    h.store.hold_commits();
    let deposit = send_plain(&h.registry, "r", Cmd::Deposit(100)).await;
    let read = send_plain(&h.registry, "r", Cmd::Balance).await;
    handled(&h.registry, "r").await;
    h.store.fail_next(1);
    h.store.release_commits();
    assert!(is_not_stored(&deposit.answer().await));
    let read = read.answer().await;
    assert!(
        matches!(read, Err(_) | Ok(Reply::Balance(10))),
        "a read reported an uncommitted deposit: {read:?}"
    );
    assert_eq!(balance(&h.registry, "r").await, 10);
}

/// 7b. The same when the read is still waiting in the mailbox when the batch fails: the actor
///     must not answer it from the state that held the failed deposit.
#[actix_rt::test]
async fn read_queued_during_a_failure_does_not_see_the_failed_write() {
    let h = default_harness();
    assert!(ask(&h.registry, "s", Cmd::Deposit(10)).await.is_ok());
    h.store.hold_commits();
    let deposit = send_plain(&h.registry, "s", Cmd::Deposit(100)).await;
    let stall = Stall::new();
    let stalled = send_plain(&h.registry, "s", Cmd::Stall(Arc::clone(&stall))).await;
    let read = send_plain(&h.registry, "s", Cmd::Balance).await;
    // The deposit is handed to the journal and the actor is blocked inside the stall, with
    // the read behind it in the mailbox.
    within(10, stall.started.notified()).await;
    h.store.fail_next(1);
    h.store.release_commits();
    assert!(is_not_stored(&deposit.answer().await));
    stall.release();
    let stalled = stalled.answer().await;
    assert!(
        matches!(stalled, Err(_) | Ok(Reply::Balance(10))),
        "a read that ended after the failure reported the failed deposit: {stalled:?}"
    );
    let read = read.answer().await;
    assert!(
        matches!(read, Err(_) | Ok(Reply::Balance(10))),
        "a read queued during the failure reported the failed deposit: {read:?}"
    );
    assert_eq!(balance(&h.registry, "s").await, 10);
}

/// 8. Fencing: once another activation raised the epoch, the old incarnation cannot write; it
///    is reset, and the next write (on a fresh activation) succeeds. Other entities in the same
///    batch commit.
#[actix_rt::test]
async fn fenced_incarnation_cannot_write_and_is_reset() {
    let h = default_harness();
    assert!(ask(&h.registry, "f", Cmd::Deposit(10)).await.is_ok());
    assert!(ask(&h.registry, "g", Cmd::Deposit(10)).await.is_ok());
    let loads = h.store.loads("f");

    // Another node activated "f".
    h.store.raise_epoch("f");
    let stale = ask(&h.registry, "f", Cmd::Deposit(5)).await;
    assert!(is_not_stored(&stale), "{stale:?}");
    // The very next write goes to a fresh activation and commits.
    assert_eq!(
        ask(&h.registry, "f", Cmd::Deposit(1)).await,
        Ok(Reply::Balance(11))
    );
    assert_eq!(h.store.loads("f"), loads + 1);
    assert_eq!(h.store.deposits("f"), vec![1, 10]);

    // A fenced submission and another entity's in one batch: only the fenced one fails.
    h.store.hold_commits();
    let fenced = send_plain(&h.registry, "f", Cmd::Deposit(7)).await;
    let fine = send_plain(&h.registry, "g", Cmd::Deposit(7)).await;
    handled(&h.registry, "f").await;
    handled(&h.registry, "g").await;
    h.store.raise_epoch("f");
    h.store.release_commits();
    assert!(is_not_stored(&fenced.answer().await));
    assert_eq!(fine.answer().await, Ok(Reply::Balance(17)));
    assert_eq!(balance(&h.registry, "f").await, 11);
    assert_eq!(h.store.deposits("g"), vec![7, 10]);
}

/// 9. `flush` resolves only after work submitted before it has committed.
#[actix_rt::test]
async fn flush_waits_for_earlier_work() {
    let h = default_harness();
    h.store.hold_commits();
    let mut sent = Vec::new();
    for amount in [1, 2, 3] {
        sent.push(send_plain(&h.registry, "fl", Cmd::Deposit(amount)).await);
        sent.push(send_plain(&h.registry, "fm", Cmd::Deposit(amount)).await);
    }
    handled(&h.registry, "fl").await;
    handled(&h.registry, "fm").await;

    let journal = h.journal.clone();
    let mut flush = Box::pin(journal.flush());
    assert!(
        tokio::time::timeout(Duration::from_millis(100), flush.as_mut())
            .await
            .is_err(),
        "flush resolved while commits were held"
    );
    h.store.release_commits();
    assert_eq!(within(10, flush).await, Ok(()));
    // Everything submitted before the flush is durable the moment it resolves.
    assert_eq!(h.store.deposits("fl"), vec![1, 2, 3]);
    assert_eq!(h.store.deposits("fm"), vec![1, 2, 3]);
    for s in sent {
        assert!(s.answer().await.is_ok());
    }
    // A flush with nothing pending resolves at once.
    assert_eq!(within(10, h.journal.flush()).await, Ok(()));
}

/// A failed load makes the commands waiting for it `Unavailable`; the next one activates afresh.
#[actix_rt::test]
async fn failed_load_is_unavailable_then_recovers() {
    let h = default_harness();
    h.store.fail_loads(1);
    let answer = ask(&h.registry, "l", Cmd::Deposit(4)).await;
    assert!(
        matches!(answer, Err(ActorError::Unavailable(_))),
        "{answer:?}"
    );
    assert!(h.store.events("l").is_empty());
    assert_eq!(
        ask(&h.registry, "l", Cmd::Deposit(4)).await,
        Ok(Reply::Balance(4))
    );
    assert_eq!(h.store.loads("l"), 2);

    // The same after a reset: the reactivation's load fails, the one after succeeds.
    h.store.fail_next(1);
    let answer = ask(&h.registry, "l", Cmd::Deposit(1000)).await;
    assert!(is_not_stored(&answer), "{answer:?}");
    h.store.fail_loads(1);
    let answer = ask(&h.registry, "l", Cmd::Balance).await;
    assert!(
        matches!(answer, Err(ActorError::Unavailable(_))),
        "{answer:?}"
    );
    assert_eq!(balance(&h.registry, "l").await, 4);
}

/// Shutdown closes the journal: what was queued before commits, the writer task ends although
/// handles (the registry's, this test's) are still alive, and later work is refused.
#[actix_rt::test]
async fn closing_the_journal_commits_what_was_queued_and_ends_the_writer() {
    let store = MemStore::new();
    let sink = Arc::new(RecordingSink::default());
    let (journal, writer) = actors::journal::spawn_writer(
        journal_settings(),
        Arc::clone(&store),
        Arc::clone(&sink),
        Arc::new(()),
    );
    let pool = actors::registry::ArbiterPool::start(2);
    let loader: Arc<dyn actors::registry::Loader<Account>> = store.clone();
    let registry =
        actors::registry::Registry::new(pool.clone(), loader, journal.clone(), registry_settings());
    store.hold_commits();
    let queued = send_plain(&registry, "c1", Cmd::Deposit(5)).await;
    handled(&registry, "c1").await;
    let closing = journal.clone();
    let close = tokio::spawn(async move { closing.close().await });
    store.release_commits();
    assert_eq!(within(10, close).await.ok(), Some(Ok(())));
    assert!(queued.answer().await.is_ok(), "queued work committed");
    assert_eq!(store.deposits("c1"), vec![5]);
    assert!(
        within(10, writer).await.is_ok(),
        "the writer ended with handles alive"
    );
    assert!(matches!(
        journal.reserve().err(),
        Some(ActorError::ShuttingDown)
    ));
    drop(registry);
    pool.stop();
}

/// 3d. The commit deadline: a batch the store does not finish within `commit_timeout` is
///     failed (nothing of it kept, its entity reset), the writer goes on, and the same command
///     afterwards commits once.
#[actix_rt::test]
async fn a_commit_past_its_deadline_fails_and_the_writer_goes_on() {
    let h = harness(
        JournalSettings {
            commit_timeout: Duration::from_millis(100),
            ..journal_settings()
        },
        registry_settings(),
    );
    assert!(ask(&h.registry, "t", Cmd::Deposit(1)).await.is_ok());
    h.store.hold_commits();
    let started = std::time::Instant::now();
    let answer = within(10, async {
        send_plain(&h.registry, "t", Cmd::Deposit(5))
            .await
            .answer()
            .await
    })
    .await;
    // The store was given the batch and did not answer: it may have committed.
    assert!(
        matches!(answer, Err(ActorError::Unconfirmed(_))),
        "{answer:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed after {:?}",
        started.elapsed()
    );
    h.store.release_commits();
    assert!(ask(&h.registry, "t", Cmd::Deposit(5)).await.is_ok());
    assert_eq!(h.store.deposits("t"), vec![1, 5]);
    assert_eq!(balance(&h.registry, "t").await, 6);
}

/// 17. A batch whose commit the store did not confirm may have committed: its callers are told
///    the outcome is unknown (not that nothing was applied), the sink hears of it before they
///    are (to reload what the batch would have changed elsewhere), the submitter reloads what
///    the store kept, and a retry with the same key answers what happened, once.
#[actix_rt::test]
async fn an_unconfirmed_batch_is_answered_as_unknown_and_its_retry_learns_the_outcome() {
    let h = default_harness();
    assert_eq!(
        ask(&h.registry, "u", Cmd::Deposit(1)).await,
        Ok(Reply::Balance(1))
    );
    h.store.unconfirm_next(1);
    let answer = ask_request(&h.registry, "u", keyed(Cmd::Deposit(5), "k1", "5")).await;
    assert!(
        matches!(answer, Err(ActorError::Unconfirmed(_))),
        "{answer:?}"
    );
    assert_eq!(h.sink.unconfirmed(), ["u"]);
    // It did commit; the actor was reset and its successor loads it.
    assert_eq!(h.store.deposits("u"), vec![1, 5]);
    assert_eq!(balance(&h.registry, "u").await, 6);
    let retried = ask_request(&h.registry, "u", keyed(Cmd::Deposit(5), "k1", "5")).await;
    assert_eq!(retried, Ok(Reply::Balance(6)));
    assert_eq!(h.store.deposits("u"), vec![1, 5]);
    assert!(h.store.duplicate_keys().is_empty());
}

/// 18. A retry that looked in the store while the entity's new incarnation was loading, before
///    the old incarnation's last batch committed, is looked up again once the load is done:
///    the load saw that batch, so the retry must see its key too and not apply it twice.
#[actix_rt::test]
async fn a_retry_sent_while_the_entity_loads_sees_what_the_load_saw() {
    a_retry_sent_while_the_entity_loads_sees_what_the_load_saw_with(registry_settings()).await;
}

/// 18, for an entity whose actor does not hold its stored keys.
#[actix_rt::test]
async fn a_retry_sent_while_the_entity_loads_sees_what_the_load_saw_without_digests() {
    a_retry_sent_while_the_entity_loads_sees_what_the_load_saw_with(
        registry_settings_without_digests(),
    )
    .await;
}

async fn a_retry_sent_while_the_entity_loads_sees_what_the_load_saw_with(
    settings: RegistrySettings,
) {
    let h = harness(journal_settings(), settings);
    assert!(ask(&h.registry, "r", Cmd::Deposit(1)).await.is_ok());
    // The first attempt is at the commit gate when its incarnation is reset (as a payee's is
    // when a batch crediting it is unconfirmed).
    h.store.hold_commits();
    let entered = h.store.entered_now();
    let first = send(&h.registry, "r", keyed(Cmd::Deposit(5), "k", "5")).await;
    handled(&h.registry, "r").await;
    h.store.entered(entered + 1).await;
    h.registry.reset_if_live(&"r".to_owned());
    // A new incarnation starts loading; the retry looks in the store (nothing yet) and waits
    // in its mailbox.
    h.store.hold_loads();
    let reader = send_plain(&h.registry, "r", Cmd::Balance).await;
    let retry = send(&h.registry, "r", keyed(Cmd::Deposit(5), "k", "5")).await;
    // The first attempt commits, then the load reads it.
    h.store.release_commits();
    assert_eq!(first.answer().await, Ok(Reply::Balance(6)));
    h.store.release_loads();
    assert_eq!(reader.answer().await, Ok(Reply::Balance(6)));
    assert_eq!(retry.answer().await, Ok(Reply::Balance(6)));
    within(10, h.journal.flush()).await.unwrap();
    assert_eq!(h.store.deposits("r"), vec![1, 5]);
    assert!(h.store.duplicate_keys().is_empty());
    assert_eq!(balance(&h.registry, "r").await, 6);
}

/// 19. When the store can tell what became of an unconfirmed commit, the batch is settled as
///    what it was: a commit whose answer was lost is acknowledged and handed to the sink like
///    any other, with no reset; one that never reached the store fails as not stored.
#[actix_rt::test]
async fn an_unconfirmed_batch_the_store_resolves_is_settled_as_what_it_was() {
    let h = default_harness();
    h.store.set_resolvable(true);
    assert!(ask(&h.registry, "v", Cmd::Deposit(1)).await.is_ok());
    h.store.unconfirm_next(1);
    let committed = ask_request(&h.registry, "v", keyed(Cmd::Deposit(5), "k1", "5")).await;
    assert_eq!(committed, Ok(Reply::Balance(6)));
    within(10, h.journal.flush()).await.unwrap();
    assert_eq!(
        h.sink.events("v"),
        h.store.events("v"),
        "the sink saw the commit"
    );
    assert!(h.sink.unconfirmed().is_empty(), "nothing to reload");

    h.store.lose_next(1);
    let lost = ask_request(&h.registry, "v", keyed(Cmd::Deposit(7), "k2", "7")).await;
    assert!(is_not_stored(&lost), "{lost:?}");
    assert!(h.sink.unconfirmed().is_empty());
    assert_eq!(h.store.deposits("v"), vec![1, 5]);
    assert_eq!(balance(&h.registry, "v").await, 6);
    // Its key is free: the retry runs, once.
    let retried = ask_request(&h.registry, "v", keyed(Cmd::Deposit(7), "k2", "7")).await;
    assert_eq!(retried, Ok(Reply::Balance(13)));
    assert_eq!(h.store.deposits("v"), vec![1, 5, 7]);
}

/// 20. A live actor knows which keys its entity has stored: a new key goes to it with no store
///     lookup, a key it has not seen but the store holds (a retry after a reset) is looked up
///     and answered from the store, and an entity with more keys than its actor holds digests
///     of looks every new key up first.
#[actix_rt::test]
async fn new_keys_need_no_store_lookup_once_the_actor_knows_its_stored_keys() {
    let h = harness(
        journal_settings(),
        RegistrySettings {
            key_digests_max: 3,
            ..registry_settings()
        },
    );
    let lookups = || {
        h.registry
            .stats()
            .key_lookups
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    // The first command finds no live actor: looked up first, as a retry after passivation
    // would be.
    assert_eq!(
        ask_request(&h.registry, "n", keyed(Cmd::Deposit(1), "k1", "1")).await,
        Ok(Reply::Balance(1))
    );
    let after_first = lookups();
    assert!(after_first >= 1, "{after_first}");
    assert_eq!(
        ask_request(&h.registry, "n", keyed(Cmd::Deposit(2), "k2", "2")).await,
        Ok(Reply::Balance(3))
    );
    assert_eq!(lookups(), after_first, "a new key to a live actor");

    // A new incarnation reads the two stored keys: a repeat of one is looked up and answered
    // from the store, a new key is not looked up.
    h.registry.reset_if_live(&"n".to_owned());
    assert!(ask(&h.registry, "n", Cmd::Balance).await.is_ok());
    let reloaded = lookups();
    assert_eq!(
        ask_request(&h.registry, "n", keyed(Cmd::Deposit(1), "k1", "1")).await,
        Ok(Reply::Balance(1)),
        "the first answer, from the store"
    );
    assert_eq!(lookups(), reloaded + 1, "a stored key is looked up");
    assert_eq!(
        ask_request(&h.registry, "n", keyed(Cmd::Deposit(1), "k1", "other")).await,
        Err(ActorError::KeyReused)
    );
    let before_new = lookups();
    assert_eq!(
        ask_request(&h.registry, "n", keyed(Cmd::Deposit(4), "k3", "4")).await,
        Ok(Reply::Balance(7))
    );
    assert_eq!(lookups(), before_new, "a new key after the reload");

    // A fourth key is more than the actor holds digests of: from then on every new key is
    // looked up first, and repeats are still answered once.
    assert_eq!(
        ask_request(&h.registry, "n", keyed(Cmd::Deposit(8), "k4", "8")).await,
        Ok(Reply::Balance(15))
    );
    let beyond = lookups();
    assert_eq!(
        ask_request(&h.registry, "n", keyed(Cmd::Deposit(16), "k5", "16")).await,
        Ok(Reply::Balance(31))
    );
    assert_eq!(lookups(), beyond + 1, "looked up first");
    h.registry.reset_if_live(&"n".to_owned());
    for (key, amount) in [("k1", 1), ("k2", 2), ("k3", 4), ("k4", 8), ("k5", 16)] {
        let fingerprint = amount.to_string();
        assert!(ask_request(
            &h.registry,
            "n",
            keyed(Cmd::Deposit(amount), key, &fingerprint)
        )
        .await
        .is_ok());
    }
    within(10, h.journal.flush()).await.unwrap();
    assert_eq!(h.store.deposits("n"), vec![1, 2, 4, 8, 16]);
    assert!(h.store.duplicate_keys().is_empty());
    assert_eq!(balance(&h.registry, "n").await, 31);
}

/// 21. An entity whose activation found more stored keys than its actor holds digests of is
///     not read again by that registry: keys are never deleted, so its later activations skip
///     reading keys they would discard and look every new key up. Repeats are still answered
///     once. An entity under the bound is read at each activation, and so is one that only
///     passed the bound while live (its keys may not all have committed); another registry
///     over the same store (another node) reads it once.
#[actix_rt::test]
async fn an_entity_with_too_many_stored_keys_is_not_read_at_each_activation() {
    use std::sync::atomic::Ordering::Relaxed;
    let settings = RegistrySettings {
        key_digests_max: 2,
        ..registry_settings()
    };
    let h = harness(journal_settings(), settings);
    let reads = |registry: &AccountRegistry| registry.stats().key_reads.load(Relaxed);
    let lookups = |registry: &AccountRegistry| registry.stats().key_lookups.load(Relaxed);
    let reload = |registry: &AccountRegistry, id: &str| registry.reset_if_live(&id.to_owned());

    // Under the bound: read at every activation.
    assert!(
        ask_request(&h.registry, "few", keyed(Cmd::Deposit(1), "f1", "1"))
            .await
            .is_ok()
    );
    assert_eq!(reads(&h.registry), 1);
    reload(&h.registry, "few");
    assert_eq!(balance(&h.registry, "few").await, 1);
    assert_eq!(reads(&h.registry), 2, "read again after the reset");

    // Passing the bound while live: the next incarnation reads, finds too many, and the one
    // after it does not read.
    for (key, amount) in [("m1", 1), ("m2", 2), ("m3", 4)] {
        let fingerprint = amount.to_string();
        let answer = ask_request(
            &h.registry,
            "many",
            keyed(Cmd::Deposit(amount), key, &fingerprint),
        )
        .await;
        assert!(answer.is_ok(), "{key}: {answer:?}");
    }
    assert_eq!(reads(&h.registry), 3);
    reload(&h.registry, "many");
    assert_eq!(balance(&h.registry, "many").await, 7);
    assert_eq!(reads(&h.registry), 4, "read once past the bound");
    reload(&h.registry, "many");
    assert_eq!(balance(&h.registry, "many").await, 7);
    assert_eq!(reads(&h.registry), 4, "known to have too many: not read");
    let before = lookups(&h.registry);
    assert_eq!(
        ask_request(&h.registry, "many", keyed(Cmd::Deposit(1), "m1", "1")).await,
        Ok(Reply::Balance(1)),
        "a repeat gets the first answer, from the store"
    );
    assert_eq!(
        ask_request(&h.registry, "many", keyed(Cmd::Deposit(8), "m4", "8")).await,
        Ok(Reply::Balance(15))
    );
    assert_eq!(lookups(&h.registry), before + 2, "every key looked up");

    // A registry that has not met the entity reads it once, finds too many, and does not read
    // it again.
    let pool = actors::registry::ArbiterPool::start(1);
    let loader: Arc<dyn actors::registry::Loader<Account>> = h.store.clone();
    let other = actors::registry::Registry::new(pool.clone(), loader, h.journal.clone(), settings);
    assert_eq!(balance(&other, "many").await, 15);
    assert_eq!(reads(&other), 1);
    reload(&other, "many");
    assert_eq!(balance(&other, "many").await, 15);
    assert_eq!(reads(&other), 1, "read once");
    assert_eq!(
        ask_request(&other, "many", keyed(Cmd::Deposit(8), "m4", "8")).await,
        Ok(Reply::Balance(15)),
        "a repeat on the other registry gets the first answer"
    );
    assert_eq!(
        ask_request(&other, "many", keyed(Cmd::Deposit(16), "m5", "16")).await,
        Ok(Reply::Balance(31))
    );
    within(10, h.journal.flush()).await.unwrap();
    assert_eq!(h.store.deposits("many"), vec![1, 2, 4, 8, 16]);
    assert!(h.store.duplicate_keys().is_empty());
    drop(other);
    pool.stop();
}
