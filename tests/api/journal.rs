//! The write-behind journal seen from outside: group commit, and a failing batch.

use serde_json::{json, Value};

use crate::helpers::{spawn_node_with, TestNode, WAIT};

/// On PostgreSQL, how many of the journal writer's own connections are open to the node's
/// database (they carry `node::store::OWN_POOL_APPLICATION_NAME`); `None` on SQLite, where
/// the writer shares the node's pool.
async fn journal_connections(database_url: &str) -> Option<i64> {
    use sqlx::Connection;
    if !database_url.starts_with("postgres") {
        return None;
    }
    let mut admin = sqlx::PgConnection::connect(database_url).await.unwrap();
    let count = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(node::store::OWN_POOL_APPLICATION_NAME)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    Some(count)
}

/// Waits, at most [`WAIT`], until `count` says none are left (or, with `None`, that there is
/// nothing to count on this engine); fails naming `what` is left.
async fn until_none_left<F, Fut>(what: &str, mut count: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<i64>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Some(left) = count().await {
        if left == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} {what} still left"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits until the journal writer holds no connection of its own (at once on SQLite, where
/// it has none).
async fn until_journal_disconnects(database_url: &str) {
    until_none_left("journal writer connections", || {
        journal_connections(database_url)
    })
    .await;
}

/// The node's ledger, read from its database: EVG sums to zero and no balance is below
/// what it holds.
async fn assert_ledger_balanced(node: &TestNode) {
    let (sums, negative) = node.audit().await;
    assert_eq!(sums, vec![("EVG".to_owned(), 0)]);
    assert_eq!(negative, 0);
}

/// Sum of a Prometheus counter or histogram count line.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn meta(token: &str, request_id: &str) -> Value {
    json!({"uuid": "dev", "client_version": "1.0", "request_id": request_id, "evg_auth_token": token})
}

async fn deposit(
    node: &TestNode,
    token: &str,
    request_id: &str,
    amount: &str,
) -> reqwest::Response {
    node.post_json(
        "/rest/v01/deposit",
        &json!({"meta": meta(token, request_id), "amount": amount}),
    )
    .await
}

/// The user's EVG wallet balance, as Evergreen's `account_info` gives it.
async fn wallet_balance(node: &TestNode, token: &str) -> String {
    let info = node
        .post_json(
            "/rest/v01/account_info",
            &json!({"meta": meta(token, "info")}),
        )
        .await;
    let info: Value = info.json().await.unwrap();
    info["meta"]["wallet_balance"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn concurrent_commands_commit_in_far_fewer_transactions() {
    // A generous window so that batching does not depend on the machine's speed.
    let node = spawn_node_with(|s| s.journal_batch_window_us = 20_000).await;
    let mut tokens = Vec::new();
    for _ in 0..20 {
        tokens.push(node.user().await.token);
    }
    let before = node.metrics().await;
    let commands = 400;
    let deposits = (0..commands).map(|i| {
        let token = tokens[i % tokens.len()].clone();
        let node = &node;
        async move {
            deposit(node, &token, &format!("dep-{i}"), "1")
                .await
                .status()
        }
    });
    let statuses = futures_util::future::join_all(deposits).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let after = node.metrics().await;
    let batches = metric(&after, "node_journal_batches_total{result=\"committed\"}")
        - metric(&before, "node_journal_batches_total{result=\"committed\"}");
    let submissions = metric(&after, "node_journal_batch_submissions_sum")
        - metric(&before, "node_journal_batch_submissions_sum");
    assert!(
        submissions >= commands as f64,
        "{submissions} submissions for {commands} commands"
    );
    assert!(
        batches * 4.0 <= commands as f64,
        "{commands} commands took {batches} transactions: no group commit"
    );
    let (sums, negative) = node.audit().await;
    assert!(sums.iter().all(|(_, sum)| *sum == 0), "{sums:?}");
    assert_eq!(negative, 0);
}

#[actix_web::test]
async fn a_failed_batch_keeps_nothing_and_loses_nothing() {
    let node = spawn_node_with(|_| {}).await;
    let user = node.user().await;
    let ok = deposit(&node, &user.token, "first", "10").await;
    assert_eq!(ok.status(), 200);
    node.faults.fail_next_batches(1);
    let failed = deposit(&node, &user.token, "second", "5").await;
    assert_eq!(failed.status(), 500);
    let body: Value = failed.json().await.unwrap();
    assert_eq!(body["meta"]["status"], "error");
    // The acknowledged deposit is there, the failed one is not, and the wallet (reset after the
    // failure) agrees with the store.
    assert_eq!(wallet_balance(&node, &user.token).await, "10");
    // The failed request id left nothing behind: retrying it applies it once.
    let retried = deposit(&node, &user.token, "second", "5").await;
    assert_eq!(retried.status(), 200);
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(retried["meta"]["wallet_balance"], "15");
    let again = deposit(&node, &user.token, "second", "5").await;
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, retried);
    assert_ledger_balanced(&node).await;
    let text = node.metrics().await;
    assert!(
        metric(&text, "node_journal_batches_total{result=\"failed\"}") >= 1.0,
        "{text}"
    );
}

#[actix_web::test]
async fn what_was_acknowledged_survives_a_restart_and_the_journal_stops_with_the_node() {
    // The journal writer runs on a thread of its own with a pool of its own: stopping the node
    // must end it after it committed what it acknowledged, and a node started again on the
    // same database must find all of it and write on.
    let (dir, settings) = crate::helpers::restartable_settings().await;
    let first = crate::helpers::start_on(&settings).await;
    let user = first.user().await;
    let deposits = (0..50).map(|i| {
        let (node, token) = (&first, &user.token);
        async move {
            deposit(node, token, &format!("before-{i}"), "2")
                .await
                .status()
        }
    });
    let statuses = futures_util::future::join_all(deposits).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    if let Some(open) = journal_connections(&first.database_url).await {
        assert!(open >= 1, "the journal writer has no connection of its own");
    }
    first.shutdown.shutdown();
    first.stopped.await.unwrap().unwrap();
    // Stopped means the writer's thread closed its pool, not merely that the grace passed.
    // (A server process outlives its client's goodbye by a moment, longer when other tests
    // load the server, so the count is waited for.)
    until_journal_disconnects(&first.database_url).await;

    let second = crate::helpers::start_on(&settings).await;
    // The same request id again is the stored reply, not a second deposit.
    let replayed = deposit(&second, &user.token, "before-0", "2").await;
    assert_eq!(replayed.status(), 200);
    let more = deposit(&second, &user.token, "after", "1").await;
    assert_eq!(more.status(), 200);
    let more: Value = more.json().await.unwrap();
    assert_eq!(more["meta"]["wallet_balance"], "101");
    assert_ledger_balanced(&second).await;
    drop(dir);
}

/// Another client holding the write lock the journal needs: on SQLite the database's one
/// write lock (`BEGIN IMMEDIATE`), on PostgreSQL an `EXCLUSIVE` lock on the ledger's balances
/// (reads go on; the batch's balance update waits). Released when dropped.
enum WriteBlocker {
    Sqlite(#[allow(dead_code)] sqlx::SqliteConnection),
    Postgres(#[allow(dead_code)] sqlx::PgConnection),
}

impl WriteBlocker {
    /// The blocking session's id, on PostgreSQL.
    async fn postgres_pid(&mut self) -> Option<i32> {
        match self {
            WriteBlocker::Sqlite(_) => None,
            WriteBlocker::Postgres(conn) => Some(session_id(conn).await),
        }
    }
}

async fn session_id(conn: &mut sqlx::PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .unwrap()
}

/// PostgreSQL: how many sessions of the database but `except` are in a transaction that has
/// written (holds an id).
async fn writing_sessions_but(database_url: &str, except: i32) -> Option<i64> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(database_url).await.unwrap();
    let open = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND backend_xid IS NOT NULL AND pid <> pg_backend_pid() AND pid <> $1",
    )
    .bind(except)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    Some(open)
}

/// PostgreSQL: waits until no session but `except` is in a transaction that has written. A
/// batch the node gave up on must be ended, not left waiting to commit, or roll back,
/// whenever what it waits for lets go.
async fn until_no_writing_session_but(database_url: &str, except: i32) {
    until_none_left("sessions in a transaction the node gave up on", || {
        writing_sessions_but(database_url, except)
    })
    .await;
}

async fn block_writes(database_url: &str) -> WriteBlocker {
    use sqlx::{Connection, Executor};
    if database_url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
        conn.execute("BEGIN").await.unwrap();
        conn.execute("LOCK TABLE ledger_accounts IN EXCLUSIVE MODE")
            .await
            .unwrap();
        WriteBlocker::Postgres(conn)
    } else {
        let mut conn = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        conn.execute("BEGIN IMMEDIATE").await.unwrap();
        WriteBlocker::Sqlite(conn)
    }
}

#[actix_web::test]
async fn a_stop_that_cannot_flush_in_time_is_reported_as_unclean() {
    // The exit code is what a supervisor sees: a stop that could not commit what the journal
    // held must not look like a clean one. A deposit's batch waits on a lock another client
    // holds, past the grace period.
    let node = spawn_node_with(|s| s.shutdown_grace_secs = 1).await;
    let user = node.user().await;
    assert_eq!(deposit(&node, &user.token, "kept", "3").await.status(), 200);
    let blocker = block_writes(&node.database_url).await;
    let stuck = {
        let (http, url, token) = (node.http.clone(), node.url(""), user.token.clone());
        tokio::spawn(async move {
            let body = json!({"meta": meta(&token, "stuck"), "amount": "5"});
            http.post(format!("{url}/rest/v01/deposit"))
                .json(&body)
                .send()
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    node.shutdown.shutdown();
    let stopped = tokio::time::timeout(WAIT, node.stopped)
        .await
        .unwrap()
        .unwrap();
    let error = stopped.expect_err("a stop whose flush timed out must be an error");
    assert!(
        error.to_string().contains("flush timed out"),
        "unexpected error: {error:#}"
    );
    drop(blocker);
    // The stuck request was never acknowledged as done: cut off, or answered as failed.
    if let Ok(Ok(response)) = stuck.await {
        assert_ne!(response.status(), 200);
    }
}

#[actix_web::test]
async fn a_clean_stop_after_a_failed_batch_is_still_clean() {
    // A batch that failed while serving was answered (500) and rolled back: nothing is owed
    // at shutdown, so the stop itself is clean.
    let node = spawn_node_with(|_| {}).await;
    let user = node.user().await;
    node.faults.fail_next_batches(1);
    assert_eq!(deposit(&node, &user.token, "lost", "3").await.status(), 500);
    node.shutdown.shutdown();
    node.stopped.await.unwrap().unwrap();
}

#[actix_web::test]
async fn a_node_dropped_without_stopping_leaves_its_database_to_the_next_one() {
    // The node's future is dropped, with nothing flushed or closed in order (the registries
    // and their journal handles live on). Its journal writer, on a thread of its own, must
    // end with it and close its own pool (on PostgreSQL, where it has one: counted in
    // pg_stat_activity), and what it had acknowledged must be there for the next node.
    let (dir, settings) = crate::helpers::restartable_settings().await;
    let first = crate::helpers::start_on(&settings).await;
    let user = first.user().await;
    assert_eq!(
        deposit(&first, &user.token, "first", "3").await.status(),
        200
    );
    first.stopped.abort();
    until_journal_disconnects(&first.database_url).await;

    let second = crate::helpers::start_on(&settings).await;
    let more = deposit(&second, &user.token, "second", "4").await;
    assert_eq!(more.status(), 200);
    let more: Value = more.json().await.unwrap();
    assert_eq!(more["meta"]["wallet_balance"], "7");
    assert_ledger_balanced(&second).await;
    drop(dir);
}

/// On PostgreSQL, ends every server connection the node holds to its database, shared pool
/// and journal alike, as a server restart or a network cut would; returns how many. `None`
/// on SQLite, which has no connections to lose.
async fn cut_the_node_off(database_url: &str) -> Option<i64> {
    use sqlx::Connection;
    if !database_url.starts_with("postgres") {
        return None;
    }
    let mut admin = sqlx::PgConnection::connect(database_url).await.unwrap();
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    Some(i64::try_from(ended.iter().filter(|e| **e).count()).unwrap())
}

#[actix_web::test]
async fn connections_cut_off_under_the_node_are_replaced_and_cost_no_more_than_a_retry() {
    // The node's pools ping a connection before handing it out only when it has been idle
    // for `PING_IF_IDLE_FOR`. A cut longer ago than that costs nothing; a cut just after the
    // connections were used fails the commands that meet a dead one, each either done once
    // or not at all, and a retry of a failed one applies it once.
    let node = spawn_node_with(|_| {}).await;
    let user = node.user().await;
    assert_eq!(
        deposit(&node, &user.token, "before", "10").await.status(),
        200
    );
    let Some(ended) = cut_the_node_off(&node.database_url).await else {
        return; // SQLite: nothing to cut.
    };
    assert!(
        ended >= 2,
        "the node held {ended} connections: pool and journal"
    );
    tokio::time::sleep(node::store::PING_IF_IDLE_FOR + std::time::Duration::from_millis(100)).await;
    for i in 0..10 {
        let response = deposit(&node, &user.token, &format!("idle-{i}"), "1").await;
        assert_eq!(response.status(), 200, "deposit {i} after an idle cut");
    }

    // Cut again at once: the connections were in use a moment ago.
    let ended = cut_the_node_off(&node.database_url).await.unwrap();
    assert!(
        ended >= 2,
        "the node held {ended} connections after the first cut"
    );
    let (mut failed, mut done, mut in_a_row) = (Vec::new(), 10, 0);
    for i in 0..80 {
        let id = format!("after-{i}");
        let response = deposit(&node, &user.token, &id, "1").await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        if status == 200 {
            assert_eq!(body["meta"]["status"], "authorized", "{body}");
            done += 1;
            in_a_row += 1;
            if in_a_row == 10 {
                break;
            }
        } else {
            assert_eq!(body["meta"]["status"], "error", "{status}: {body}");
            failed.push(id);
            in_a_row = 0;
        }
    }
    assert_eq!(in_a_row, 10, "still failing after 80 commands: {failed:?}");
    assert!(
        failed.len() <= 20,
        "{} commands failed, more than the node had connections",
        failed.len()
    );
    // Each failed command left nothing: retried, each is applied once, and once only.
    for id in &failed {
        let retried = deposit(&node, &user.token, id, "1").await;
        assert_eq!(retried.status(), 200, "retrying {id}");
    }
    let expected = 10 + done + failed.len();
    assert_eq!(
        wallet_balance(&node, &user.token).await,
        expected.to_string()
    );
    assert_ledger_balanced(&node).await;
}

#[actix_web::test]
async fn a_batch_the_database_does_not_finish_in_time_fails_and_its_retry_applies_once() {
    // A batch whose transaction cannot finish (here another client holds the write lock it
    // needs; a database behind a cut network looks the same) is given up after
    // JOURNAL_COMMIT_TIMEOUT_MS: its command is answered as failed instead of waiting for the
    // database however long, and nothing of it is kept. It was given up on before its COMMIT
    // was sent, so it can never commit: the answer says nothing was changed, on both engines.
    // On PostgreSQL its session is ended too, so it does not hold its locks and a journal
    // connection until the blocker lets go.
    let node = spawn_node_with(|s| s.journal_commit_timeout_ms = 300).await;
    let user = node.user().await;
    assert_eq!(
        deposit(&node, &user.token, "first", "10").await.status(),
        200
    );
    let mut blocker = block_writes(&node.database_url).await;
    let started = std::time::Instant::now();
    let stuck = deposit(&node, &user.token, "stuck", "5").await;
    let waited = started.elapsed();
    assert_nothing_changed(stuck).await;
    assert!(
        waited < std::time::Duration::from_secs(3),
        "answered after {waited:?}"
    );
    if let Some(pid) = blocker.postgres_pid().await {
        until_no_writing_session_but(&node.database_url, pid).await;
    }
    drop(blocker);
    assert_retry_applies_once(&node, &user.token).await;
}

/// An Evergreen 500 that says the change was not made.
async fn assert_nothing_changed(response: reqwest::Response) {
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["meta"]["status"], "error", "{body}");
    assert_eq!(
        body["meta"]["message"], "An unexpected error occurred; nothing was changed.",
        "{body}"
    );
}

/// After a deposit `stuck` of 5 failed on top of `first`'s 10: its retry applies it once, a
/// second retry is the stored reply, and the batch counted as unconfirmed.
async fn assert_retry_applies_once(node: &TestNode, token: &str) {
    let retried = deposit(node, token, "stuck", "5").await;
    assert_eq!(retried.status(), 200);
    let retried: Value = retried.json().await.unwrap();
    let again: Value = deposit(node, token, "stuck", "5")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again, retried);
    assert_eq!(wallet_balance(node, token).await, "15");
    assert_ledger_balanced(node).await;
    let text = node.metrics().await;
    assert!(
        metric(&text, "node_journal_batches_total{result=\"unconfirmed\"}") >= 1.0,
        "{text}"
    );
}

#[actix_web::test]
async fn a_commit_that_does_not_finish_in_time_is_settled_by_ending_its_session() {
    // PostgreSQL only: a COMMIT that waits. The test's database checks idempotency keys at
    // COMMIT (a deferred primary key), and another client holds an uncommitted record under
    // the key the deposit will write, so the deposit's COMMIT waits for that client. The node
    // gives up after JOURNAL_COMMIT_TIMEOUT_MS with its COMMIT sent: the batch might still
    // commit. It ends the batch's session, reads that the transaction rolled back, and says
    // nothing was changed. Without the session ended the transaction would stay in progress
    // and the answer would be that the outcome is not known. SQLite checks every key at once.
    let node = spawn_node_with(|s| s.journal_commit_timeout_ms = 300).await;
    if !node.database_url.starts_with("postgres") {
        return;
    }
    use sqlx::{Connection, Executor};
    let user = node.user().await;
    assert_eq!(
        deposit(&node, &user.token, "first", "10").await.status(),
        200
    );
    let mut blocker = sqlx::PgConnection::connect(&node.database_url)
        .await
        .unwrap();
    blocker
        .execute(
            "ALTER TABLE idempotency DROP CONSTRAINT idempotency_pkey, \
             ADD PRIMARY KEY (kind, actor_id, key) DEFERRABLE INITIALLY DEFERRED",
        )
        .await
        .unwrap();
    blocker.execute("BEGIN").await.unwrap();
    // The key the deposit's record will have (`evergreen::request_key`), in its wallet.
    let key = node::wallets::fingerprint("request_id", &(user.id.as_str(), "stuck"));
    sqlx::query(
        "INSERT INTO idempotency (kind, actor_id, key, fingerprint, reply, created_at) \
         VALUES ('wallet', $1, $2, 'another', ''::bytea, 0)",
    )
    .bind(&user.id)
    .bind(&key)
    .execute(&mut blocker)
    .await
    .unwrap();
    let stuck = deposit(&node, &user.token, "stuck", "5").await;
    assert_nothing_changed(stuck).await;
    // Ended, not merely said to be: a session left in its COMMIT would commit the deposit
    // as soon as the blocker rolls back, after the caller was told nothing was changed.
    until_no_writing_session_but(&node.database_url, session_id(&mut blocker).await).await;
    blocker.execute("ROLLBACK").await.unwrap();
    blocker.close().await.unwrap();
    assert_retry_applies_once(&node, &user.token).await;
}
