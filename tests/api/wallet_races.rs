//! The wallets under concurrency, repetition and failure, driven over Evergreen HTTP
//! (`/rest/v01`) as clients would: double spend, duplicate request ids, the pay / reject /
//! cancel race on one payment request, failing journal batches, a mixed load checked against
//! the ledger's invariants, PIN lockout, validation that moves nothing, and two properties
//! found along the way (a payee sees what its payor was told; activations disturb nobody).
//!
//! Every test runs its own node. Concurrency is real (many requests in flight at once) and no
//! test sleeps to synchronise; the only waiting loop is the PIN lock's time window.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use node::store::Db;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_node, spawn_node_with, TestNode};

/// The PIN every user of these tests registers with.
const PIN: &str = "12345";
/// A well-formed PIN that is not [`PIN`].
const WRONG_PIN: &str = "54321";
/// EVG minor units per credit (the ledger stores minor units).
const MINOR_PER_CREDIT: i64 = 100;
/// The longest any single HTTP call may take before the test fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A fresh request id.
fn rid(label: &str) -> String {
    format!("{label}-{}", unique())
}

/// An Evergreen user as a client knows it.
#[derive(Debug, Clone)]
struct EvgUser {
    token: String,
    /// The Evergreen id others use to pay or ask this user: `qr:<code>`.
    evg_id: String,
}

/// An answer: the HTTP status and the JSON body.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    /// The Evergreen `status` of a 200 answer.
    fn outcome(&self) -> &str {
        assert_eq!(self.status, StatusCode::OK, "{self:?}");
        self.body["status"]
            .as_str()
            .unwrap_or_else(|| panic!("{self:?}"))
    }

    fn message(&self) -> &str {
        self.body["status_message"].as_str().unwrap_or_default()
    }

    /// `meta.wallet_balance` in whole credits.
    fn wallet_balance(&self) -> i64 {
        credits(&self.body["meta"]["wallet_balance"])
    }

    fn assert_invalid(&self, path: &str) {
        assert_eq!(self.status, StatusCode::BAD_REQUEST, "{self:?}");
        assert_eq!(self.body["path"], path, "{self:?}");
        assert!(
            self.body["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{self:?}"
        );
        let keys: BTreeSet<&str> = self
            .body
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(keys, BTreeSet::from(["msg", "path"]), "{self:?}");
    }
}

/// A balance string (integral credits in v1) as a number.
fn credits(value: &Value) -> i64 {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an integral balance: {value}"))
}

/// An Evergreen client of one node.
struct Evg<'a> {
    node: &'a TestNode,
    http: reqwest::Client,
    client_version: &'static str,
}

impl<'a> Evg<'a> {
    fn new(node: &'a TestNode) -> Self {
        Self::with_version(node, "1.0")
    }

    fn with_version(node: &'a TestNode, client_version: &'static str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .pool_max_idle_per_host(256)
            .build()
            .unwrap();
        Evg {
            node,
            http,
            client_version,
        }
    }

    fn meta(&self, token: Option<&str>, request_id: &str) -> Value {
        let mut meta = json!({
            "uuid": "device-wallet-races",
            "client_version": self.client_version,
            "request_id": request_id,
        });
        if let Some(token) = token {
            meta["evg_auth_token"] = json!(token);
        }
        meta
    }

    async fn call(&self, call: &str, body: &Value) -> Answer {
        let response = self
            .http
            .post(self.node.url(&format!("/rest/v01/{call}")))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{call} did not answer: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{call} answered {status} with non-JSON {text:?}: {e}"));
        Answer { status, body }
    }

    /// Register a user with [`PIN`] and a fresh QR code.
    async fn register(&self) -> EvgUser {
        let code = unique();
        let answer = self
            .call(
                "register_user",
                &json!({
                    "meta": self.meta(None, &rid("register")),
                    "pin": PIN,
                    "email": format!("{}@example.com", unique()),
                    "name": "x",
                    "qr_code": code,
                }),
            )
            .await;
        assert_eq!(answer.outcome(), "success", "{answer:?}");
        EvgUser {
            token: answer.body["evg_auth_token"].as_str().unwrap().to_owned(),
            evg_id: format!("qr:{code}"),
        }
    }

    async fn deposit(&self, user: &EvgUser, amount: &str, request_id: &str) -> Answer {
        self.call(
            "deposit",
            &json!({"meta": self.meta(Some(&user.token), request_id), "amount": amount}),
        )
        .await
    }

    /// Deposit and insist that it worked.
    async fn deposit_ok(&self, user: &EvgUser, amount: &str) -> Answer {
        let answer = self.deposit(user, amount, &rid("deposit")).await;
        assert_eq!(answer.outcome(), "success", "{answer:?}");
        answer
    }

    async fn withdraw(&self, user: &EvgUser, amount: &str, pin: &str, request_id: &str) -> Answer {
        self.call(
            "withdraw",
            &json!({
                "meta": self.meta(Some(&user.token), request_id),
                "amount": amount,
                "PIN": pin,
            }),
        )
        .await
    }

    async fn pay(&self, payor: &EvgUser, payee: &str, amount: &str, request_id: &str) -> Answer {
        self.call(
            "make_payment",
            &json!({
                "meta": self.meta(Some(&payor.token), request_id),
                "amount": amount,
                "payee": payee,
            }),
        )
        .await
    }

    /// A payment with a description (to find it in the ledger) and optionally answering a
    /// payment request.
    async fn pay_with(
        &self,
        payor: &EvgUser,
        payee: &str,
        amount: &str,
        request_id: &str,
        description: &str,
        transaction_id: Option<&str>,
    ) -> Answer {
        let mut body = json!({
            "meta": self.meta(Some(&payor.token), request_id),
            "amount": amount,
            "payee": payee,
            "request_description": description,
        });
        if let Some(tx) = transaction_id {
            body["transaction_id"] = json!(tx);
        }
        self.call("make_payment", &body).await
    }

    async fn request(&self, requester: &EvgUser, payor: &str, amount: &str) -> Answer {
        self.request_with(requester, payor, amount, &rid("request"))
            .await
    }

    async fn request_with(
        &self,
        requester: &EvgUser,
        payor: &str,
        amount: &str,
        request_id: &str,
    ) -> Answer {
        self.call(
            "request_payment",
            &json!({
                "meta": self.meta(Some(&requester.token), request_id),
                "payor": payor,
                "amount": amount,
                "request_description": "for the test",
            }),
        )
        .await
    }

    /// Ask `payor` for `amount` and return the transaction id.
    async fn request_ok(&self, requester: &EvgUser, payor: &str, amount: &str) -> String {
        let answer = self.request(requester, payor, amount).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer.body["transaction_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer:?}"))
            .to_owned()
    }

    async fn reject(&self, payor: &EvgUser, transaction_id: &str, request_id: &str) -> Answer {
        self.call(
            "reject_payment",
            &json!({
                "meta": self.meta(Some(&payor.token), request_id),
                "transaction_id": transaction_id,
            }),
        )
        .await
    }

    async fn cancel(&self, requester: &EvgUser, transaction_id: &str, request_id: &str) -> Answer {
        self.call(
            "cancel_request",
            &json!({
                "meta": self.meta(Some(&requester.token), request_id),
                "transaction_id": transaction_id,
            }),
        )
        .await
    }

    /// `(wallet_balance, account_balance)` in whole credits, as the user's wallet answers.
    async fn balances(&self, user: &EvgUser) -> (i64, i64) {
        let answer = self
            .call(
                "account_info",
                &json!({"meta": self.meta(Some(&user.token), &rid("info"))}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        let meta = &answer.body["meta"];
        (
            credits(&meta["wallet_balance"]),
            credits(&meta["account_balance"]),
        )
    }

    /// The spendable balance, which equals the account balance when nothing is held.
    async fn balance(&self, user: &EvgUser) -> i64 {
        let (wallet, account) = self.balances(user).await;
        assert_eq!(wallet, account, "nothing is held in these tests");
        wallet
    }
}

/// The node's ledger, read straight from its database.
struct Ledger {
    db: Db,
}

impl Ledger {
    async fn open(node: &TestNode) -> Self {
        Ledger {
            db: Db::connect(&node.database_url, 1).await.unwrap(),
        }
    }

    async fn count(&self, sql: &str, arg: &str) -> i64 {
        node::on_db!(&self.db, pool => sqlx::query_scalar::<_, i64>(sql)
            .bind(arg)
            .fetch_one(pool)
            .await
            .unwrap())
    }

    /// Transfers of one kind (`deposit`, `withdrawal`, `payment`, …).
    async fn transfers(&self, kind: &str) -> i64 {
        self.count("SELECT COUNT(*) FROM transfers WHERE kind = $1", kind)
            .await
    }

    /// Payment requests in one status.
    async fn requests(&self, status: &str) -> i64 {
        self.count(
            "SELECT COUNT(*) FROM payment_requests WHERE status = $1",
            status,
        )
        .await
    }

    /// The node's user id behind an Evergreen id.
    async fn user_id(&self, user: &EvgUser) -> String {
        node::on_db!(&self.db, pool => sqlx::query_scalar::<_, String>(
            "SELECT user_id FROM user_external_ids WHERE external_id = $1")
            .bind(&user.evg_id)
            .fetch_one(pool)
            .await
            .unwrap())
    }

    /// The stored EVG balance of a user, in whole credits (0 without an account).
    async fn balance(&self, user: &EvgUser) -> i64 {
        let id = self.user_id(user).await;
        let minor: Option<i64> = node::on_db!(&self.db, pool => sqlx::query_scalar::<_, i64>(
            "SELECT balance FROM ledger_accounts \
             WHERE owner_kind = 'user' AND owner_id = $1 AND currency = 'EVG'")
            .bind(&id)
            .fetch_optional(pool)
            .await
            .unwrap());
        let minor = minor.unwrap_or(0);
        assert_eq!(minor % MINOR_PER_CREDIT, 0, "a fraction of a credit");
        minor / MINOR_PER_CREDIT
    }

    /// Descriptions of the payments a user made, one per stored transfer.
    async fn payment_descriptions(&self, payor: &EvgUser) -> Vec<String> {
        let id = self.user_id(payor).await;
        let rows: Vec<Option<String>> = node::on_db!(&self.db, pool =>
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT description FROM transfers WHERE kind = 'payment' AND debit_id = $1")
            .bind(&id)
            .fetch_all(pool)
            .await
            .unwrap());
        rows.into_iter().map(Option::unwrap_or_default).collect()
    }

    /// Stored transfers settling one payment request.
    async fn transfers_for(&self, transaction_id: &str) -> i64 {
        self.count(
            "SELECT COUNT(*) FROM transfers WHERE reference = $1",
            transaction_id,
        )
        .await
    }

    async fn request_status(&self, transaction_id: &str) -> String {
        node::on_db!(&self.db, pool => sqlx::query_scalar::<_, String>(
            "SELECT status FROM payment_requests WHERE transaction_id = $1")
            .bind(transaction_id)
            .fetch_one(pool)
            .await
            .unwrap())
    }

    async fn close(self) {
        self.db.close().await;
    }
}

/// Per currency every balance sums to zero, and no user account is below its holds.
/// The ledger holds exactly `payments` payment transfers, and balances.
async fn assert_payments_stored(node: &TestNode, payments: i64) {
    let ledger = Ledger::open(node).await;
    assert_eq!(ledger.transfers("payment").await, payments);
    ledger.close().await;
    assert_ledger_balances(node).await;
}

async fn assert_ledger_balances(node: &TestNode) {
    let (sums, below_holds) = node.audit().await;
    assert!(
        sums.iter().all(|(_, sum)| *sum == 0),
        "balances do not sum to zero: {sums:?}"
    );
    assert_eq!(below_holds, 0, "a user account is below what it holds");
}

// 1. Double spend.

#[actix_web::test]
async fn a_wallet_that_affords_500_payments_makes_exactly_500_of_1000_concurrent_ones() {
    let node = spawn_node().await;
    let evg = Evg::new(&node);
    let payor = evg.register().await;
    let mut payees = Vec::new();
    for _ in 0..3 {
        payees.push(evg.register().await);
    }
    assert_eq!(evg.deposit_ok(&payor, "500").await.wallet_balance(), 500);

    let attempts = 1000;
    let (evg_ref, payor_ref, payees_ref) = (&evg, &payor, &payees);
    let answers: Vec<(usize, Answer)> = stream::iter(0..attempts)
        .map(|i| async move {
            let payee = i % payees_ref.len();
            let answer = evg_ref
                .pay(payor_ref, &payees_ref[payee].evg_id, "1", &rid("spend"))
                .await;
            (payee, answer)
        })
        .buffer_unordered(200)
        .collect()
        .await;

    let mut succeeded = Vec::new();
    let mut paid_to = vec![0_i64; payees.len()];
    let mut refused = 0;
    for (payee, answer) in &answers {
        match answer.outcome() {
            "success" => {
                succeeded.push(answer.wallet_balance());
                paid_to[*payee] += 1;
            }
            "insufficient_funds" => {
                refused += 1;
                // A refusal is decided only once nothing is left to spend.
                assert_eq!(answer.wallet_balance(), 0, "{answer:?}");
                assert!(answer.message().contains("only 0"), "{answer:?}");
            }
            other => panic!("unexpected outcome {other}: {answer:?}"),
        }
    }
    assert_eq!(succeeded.len(), 500, "successes");
    assert_eq!(refused, 500, "refusals");
    // The payor's wallet decides one payment at a time and nothing else changes its balance,
    // so the successes saw every balance from 499 down to 0 exactly once: never below zero,
    // never the same balance twice.
    succeeded.sort_unstable();
    assert_eq!(succeeded, (0..500).collect::<Vec<i64>>());

    assert_eq!(evg.balances(&payor).await, (0, 0));
    let mut received = Vec::new();
    for payee in &payees {
        received.push(evg.balance(payee).await);
    }
    assert_eq!(
        received, paid_to,
        "each payee got exactly its acknowledged payments"
    );
    assert_eq!(received.iter().sum::<i64>(), 500);

    let ledger = Ledger::open(&node).await;
    assert_eq!(ledger.transfers("payment").await, 500);
    assert_eq!(ledger.balance(&payor).await, 0);
    for (payee, paid) in payees.iter().zip(&paid_to) {
        assert_eq!(ledger.balance(payee).await, *paid);
    }
    ledger.close().await;
    assert_ledger_balances(&node).await;
}

// 2. Duplicate requests.

#[actix_web::test]
async fn a_repeated_request_id_moves_money_once_and_always_gets_the_first_answer() {
    let node = spawn_node().await;
    let evg = Evg::new(&node);
    let payor = evg.register().await;
    let payee = evg.register().await;
    evg.deposit_ok(&payor, "100").await;
    let request_id = rid("pay-once");

    // Twice at once: one effect, two identical answers.
    let (first, second) = futures_util::future::join(
        evg.pay(&payor, &payee.evg_id, "30", &request_id),
        evg.pay(&payor, &payee.evg_id, "30", &request_id),
    )
    .await;
    assert_eq!(first.outcome(), "success", "{first:?}");
    assert_eq!(first.wallet_balance(), 70);
    assert_eq!(second, first);

    // Again later, answered from what was stored.
    let third = evg.pay(&payor, &payee.evg_id, "30", &request_id).await;
    assert_eq!(third, first);
    assert_eq!(evg.balance(&payor).await, 70);
    assert_eq!(evg.balance(&payee).await, 30);

    // The same id asking for something else is refused, whatever it differs in.
    let other_amount = evg.pay(&payor, &payee.evg_id, "31", &request_id).await;
    other_amount.assert_invalid("meta.request_id");
    let stranger = evg.register().await;
    let other_payee = evg.pay(&payor, &stranger.evg_id, "30", &request_id).await;
    other_payee.assert_invalid("meta.request_id");

    // Replace the payor's wallet actor: a failed batch resets it, and the next command loads a
    // new incarnation from the store.
    node.faults.fail_next_batches(1);
    let failed = evg.deposit(&payor, "1", &rid("reset")).await;
    assert_eq!(
        failed.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{failed:?}"
    );
    // Twice at once against the new incarnation (one of them may race its activation).
    let (fourth, fifth) = futures_util::future::join(
        evg.pay(&payor, &payee.evg_id, "30", &request_id),
        evg.pay(&payor, &payee.evg_id, "30", &request_id),
    )
    .await;
    assert_eq!(fourth, first);
    assert_eq!(fifth, first);
    let reused = evg.pay(&payor, &payee.evg_id, "29", &request_id).await;
    reused.assert_invalid("meta.request_id");

    assert_eq!(evg.balance(&payor).await, 70);
    assert_eq!(evg.balance(&payee).await, 30);
    assert_eq!(evg.balance(&stranger).await, 0);

    // A refusal is an answer too: repeating it after the funds arrived still refuses.
    let broke = evg.register().await;
    let refusal_id = rid("refused");
    let refused = evg.pay(&broke, &payee.evg_id, "5", &refusal_id).await;
    assert_eq!(refused.outcome(), "insufficient_funds", "{refused:?}");
    evg.deposit_ok(&broke, "10").await;
    let repeated = evg.pay(&broke, &payee.evg_id, "5", &refusal_id).await;
    assert_eq!(repeated, refused);
    assert_eq!(evg.balance(&broke).await, 10);

    // Deposits are keyed the same way.
    let deposit_id = rid("deposit-once");
    let (d1, d2) = futures_util::future::join(
        evg.deposit(&broke, "7", &deposit_id),
        evg.deposit(&broke, "7", &deposit_id),
    )
    .await;
    assert_eq!(d1.outcome(), "success", "{d1:?}");
    assert_eq!(d2, d1);
    assert_eq!(evg.deposit(&broke, "7", &deposit_id).await, d1);
    assert_eq!(evg.balance(&broke).await, 17);

    let ledger = Ledger::open(&node).await;
    assert_eq!(ledger.transfers("payment").await, 1);
    assert_eq!(ledger.balance(&payor).await, 70);
    assert_eq!(ledger.balance(&payee).await, 30);
    ledger.close().await;
    assert_ledger_balances(&node).await;
}

/// `node_actor_key_lookups{kind="wallet"}`: keyed wallet commands looked up in the store
/// before they reached their actor.
async fn wallet_key_lookups(node: &TestNode) -> u64 {
    node.metric("node_actor_key_lookups{kind=\"wallet\"}").await
}

/// `node_actor_key_reads{kind="wallet"}`: wallet activations that read their stored keys.
async fn wallet_key_reads(node: &TestNode) -> u64 {
    node.metric("node_actor_key_reads{kind=\"wallet\"}").await
}

/// Reset the payor's wallet actor: a failed batch does, and its next command loads a new
/// incarnation from the store.
async fn reset_wallet(node: &TestNode, evg: &Evg<'_>, user: &EvgUser) {
    node.faults.fail_next_batches(1);
    let failed = evg.deposit(user, "1", &rid("reset")).await;
    assert_eq!(
        failed.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{failed:?}"
    );
}

/// A live wallet knows which request ids it has stored: a fresh id goes straight to it, with
/// no store lookup, while a repeat after the wallet was reloaded is still answered from the
/// store.
#[actix_web::test]
async fn fresh_request_ids_reach_a_live_wallet_without_a_store_lookup() {
    let node = spawn_node().await;
    let evg = Evg::new(&node);
    let payor = evg.register().await;
    let payee = evg.register().await;
    evg.deposit_ok(&payor, "100").await;

    let before = wallet_key_lookups(&node).await;
    let mut answers = Vec::new();
    for n in 0..5 {
        let request_id = rid(&format!("fresh-{n}"));
        let answer = evg.pay(&payor, &payee.evg_id, "1", &request_id).await;
        assert_eq!(answer.outcome(), "success", "{answer:?}");
        answers.push((request_id, answer));
    }
    assert_eq!(
        wallet_key_lookups(&node).await,
        before,
        "fresh ids to a live wallet are not looked up"
    );

    // Reloaded (a read wakes the new incarnation, which reads its stored ids), the wallet holds
    // the ids' digests: each repeat is sent back to be looked up, once, and answered from the
    // store.
    let reads = wallet_key_reads(&node).await;
    reset_wallet(&node, &evg, &payor).await;
    assert_eq!(evg.balance(&payor).await, 95);
    assert_eq!(wallet_key_reads(&node).await, reads + 1);
    let reloaded = wallet_key_lookups(&node).await;
    for (request_id, first) in &answers {
        assert_eq!(
            &evg.pay(&payor, &payee.evg_id, "1", request_id).await,
            first
        );
    }
    assert_eq!(
        wallet_key_lookups(&node).await,
        reloaded + 5,
        "one lookup a repeat"
    );
    let last = evg
        .pay(&payor, &payee.evg_id, "1", &rid("fresh-last"))
        .await;
    assert_eq!(last.outcome(), "success", "{last:?}");
    assert_eq!(last.wallet_balance(), 94);
    assert_eq!(evg.balance(&payor).await, 94);
    assert_eq!(evg.balance(&payee).await, 6);
    assert_payments_stored(&node, 6).await;
}

/// A wallet with more stored request ids than its actor holds digests of looks every new id up
/// first, and still moves money once per id, whether a repeat comes alone, twice at once, or
/// after the wallet was reloaded; once a reload has found too many ids, the next does not read
/// them again.
#[actix_web::test]
async fn a_wallet_with_more_request_ids_than_its_actor_holds_still_pays_once_per_id() {
    let node = spawn_node_with(|settings| settings.actor_key_digests_max = 2).await;
    let evg = Evg::new(&node);
    let payor = evg.register().await;
    let payee = evg.register().await;
    evg.deposit_ok(&payor, "100").await;
    let mut answers = Vec::new();
    for n in 0..4 {
        let request_id = rid(&format!("many-{n}"));
        let answer = evg.pay(&payor, &payee.evg_id, "2", &request_id).await;
        assert_eq!(answer.outcome(), "success", "{answer:?}");
        answers.push((request_id, answer));
    }
    // Past two ids the live wallet looks each new one up.
    let before = wallet_key_lookups(&node).await;
    let fresh = evg
        .pay(&payor, &payee.evg_id, "2", &rid("many-fresh"))
        .await;
    assert_eq!(fresh.outcome(), "success", "{fresh:?}");
    assert_eq!(wallet_key_lookups(&node).await, before + 1);

    for (request_id, first) in &answers {
        assert_eq!(
            &evg.pay(&payor, &payee.evg_id, "2", request_id).await,
            first
        );
    }
    // Reloaded, the wallet reads its ids, finds too many, and is not read again.
    let reads = wallet_key_reads(&node).await;
    reset_wallet(&node, &evg, &payor).await;
    assert_eq!(evg.balance(&payor).await, 90);
    assert_eq!(wallet_key_reads(&node).await, reads + 1);
    reset_wallet(&node, &evg, &payor).await;
    assert_eq!(evg.balance(&payor).await, 90);
    assert_eq!(wallet_key_reads(&node).await, reads + 1, "not read again");
    for (request_id, first) in &answers {
        let (one, two) = futures_util::future::join(
            evg.pay(&payor, &payee.evg_id, "2", request_id),
            evg.pay(&payor, &payee.evg_id, "2", request_id),
        )
        .await;
        assert_eq!(&one, first);
        assert_eq!(&two, first);
    }
    let after = evg
        .pay(&payor, &payee.evg_id, "2", &rid("many-after"))
        .await;
    assert_eq!(after.wallet_balance(), 88, "{after:?}");
    assert_eq!(evg.balance(&payee).await, 12);
    assert_payments_stored(&node, 6).await;
}

/// Two nodes on one database: a wallet live on the first, whose digests cannot know what the
/// second commits. A request id the second paid, repeated on the first, is not paid again
/// (the first's batch is fenced off) and gets the second's answer, not an error.
#[actix_web::test]
async fn a_request_id_paid_on_another_node_gets_that_answer_from_a_node_whose_wallet_is_live() {
    let first = spawn_node().await;
    let shared = first.database_url.clone();
    let key_file = first.data_dir.join("token-signing-key.pem");
    let second = spawn_node_with(|s| {
        s.database_url = shared;
        s.token_key_file = Some(key_file);
    })
    .await;
    let (on_first, on_second) = (Evg::new(&first), Evg::new(&second));
    let payor = on_first.register().await;
    let payee = on_first.register().await;
    on_first.deposit_ok(&payor, "100").await;

    let request_id = rid("elsewhere");
    let paid = on_second
        .pay(&payor, &payee.evg_id, "30", &request_id)
        .await;
    assert_eq!(paid.outcome(), "success", "{paid:?}");
    assert_eq!(paid.wallet_balance(), 70);
    let repeated = on_first.pay(&payor, &payee.evg_id, "30", &request_id).await;
    assert_eq!(repeated, paid);
    // The first node's wallet reloaded what the second committed.
    let next = on_first
        .pay(&payor, &payee.evg_id, "5", &rid("after"))
        .await;
    assert_eq!(next.wallet_balance(), 65, "{next:?}");
    let ledger = Ledger::open(&first).await;
    assert_eq!(ledger.transfers("payment").await, 2);
    assert_eq!(ledger.balance(&payor).await, 65);
    assert_eq!(ledger.balance(&payee).await, 35);
    ledger.close().await;
    assert_ledger_balances(&first).await;
}

// 3. Pay / reject / cancel on one payment request.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Close {
    Pay,
    Reject,
    Cancel,
}

/// What the two losers of a request's race answer, given the winner.
fn assert_losers(winner: Close, answers: &BTreeMap<Close, Answer>) {
    let (status, message) = match winner {
        Close::Pay => ("already_paid", "The payment has already been sent!"),
        Close::Reject => ("error", "The request is already rejected."),
        Close::Cancel => ("error", "The request is already cancelled."),
    };
    for (close, answer) in answers {
        if *close == winner {
            assert_eq!(answer.outcome(), "success", "{answers:?}");
        } else {
            assert_eq!(
                answer.outcome(),
                status,
                "{close:?} lost to {winner:?}: {answers:?}"
            );
            assert_eq!(answer.message(), message, "{answers:?}");
        }
    }
}

/// Send the three closes of one request, starting them in `order`.
async fn close_all(
    evg: &Evg<'_>,
    payor: &EvgUser,
    requester: &EvgUser,
    transaction_id: &str,
    order: &[Close],
) -> BTreeMap<Close, Answer> {
    let closes = order.iter().map(|close| async move {
        let id = rid("close");
        let answer = match close {
            Close::Pay => {
                evg.pay_with(
                    payor,
                    &requester.evg_id,
                    "7",
                    &id,
                    transaction_id,
                    Some(transaction_id),
                )
                .await
            }
            Close::Reject => evg.reject(payor, transaction_id, &id).await,
            Close::Cancel => evg.cancel(requester, transaction_id, &id).await,
        };
        (*close, answer)
    });
    futures_util::future::join_all(closes)
        .await
        .into_iter()
        .collect()
}

fn winner(answers: &BTreeMap<Close, Answer>) -> Close {
    let winners: Vec<Close> = answers
        .iter()
        .filter(|(_, a)| a.status == StatusCode::OK && a.body["status"] == "success")
        .map(|(c, _)| *c)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one close wins: {answers:?}");
    winners[0]
}

#[actix_web::test]
async fn paying_rejecting_and_cancelling_one_request_at_once_lets_exactly_one_win() {
    let node = spawn_node().await;
    let evg = Evg::new(&node);
    let payor = evg.register().await;
    let requester = evg.register().await;
    evg.deposit_ok(&payor, "1000").await;
    let ledger = Ledger::open(&node).await;
    let mut paid = 0;

    // One after the other first, so that every winner's losers are seen at least once.
    for first in [Close::Pay, Close::Reject, Close::Cancel] {
        let tx = evg.request_ok(&requester, &payor.evg_id, "7").await;
        let mut answers = close_all(&evg, &payor, &requester, &tx, &[first]).await;
        assert_eq!(winner(&answers), first);
        let rest: Vec<Close> = [Close::Pay, Close::Reject, Close::Cancel]
            .into_iter()
            .filter(|c| *c != first)
            .collect();
        answers.extend(close_all(&evg, &payor, &requester, &tx, &rest).await);
        assert_losers(first, &answers);
        if first == Close::Pay {
            paid += 1;
        }
    }

    // Then raced: all three in flight at once, in a different starting order each round.
    let orders = [
        [Close::Pay, Close::Reject, Close::Cancel],
        [Close::Reject, Close::Cancel, Close::Pay],
        [Close::Cancel, Close::Pay, Close::Reject],
    ];
    for round in 0..30 {
        let tx = evg.request_ok(&requester, &payor.evg_id, "7").await;
        let answers = close_all(&evg, &payor, &requester, &tx, &orders[round % 3]).await;
        let won = winner(&answers);
        assert_losers(won, &answers);
        let expected_status = match won {
            Close::Pay => "completed",
            Close::Reject => "rejected",
            Close::Cancel => "cancelled",
        };
        assert_eq!(ledger.request_status(&tx).await, expected_status);
        assert_eq!(
            ledger.transfers_for(&tx).await,
            i64::from(won == Close::Pay),
            "money moves only when the payment wins"
        );
        if won == Close::Pay {
            paid += 1;
            assert_eq!(answers[&Close::Pay].wallet_balance(), 1000 - 7 * paid);
        }
        assert_eq!(evg.balance(&payor).await, 1000 - 7 * paid, "round {round}");
        assert_eq!(evg.balance(&requester).await, 7 * paid, "round {round}");
    }

    assert_eq!(ledger.transfers("payment").await, paid);
    assert_eq!(ledger.balance(&payor).await, 1000 - 7 * paid);
    assert_eq!(ledger.balance(&requester).await, 7 * paid);
    ledger.close().await;
    assert_ledger_balances(&node).await;
}

/// A requester who uses one request id for two payors makes two requests, each with a
/// transaction id of its own that its payor can pay, and a retry to either names its own
/// again. The id was once derived from the requester and the request id alone: the second
/// request then broke the requests table's key, and failed its journal batch together with
/// every other user's command in it.
#[actix_web::test]
async fn one_request_id_for_two_payors_makes_two_payable_requests() {
    let node = spawn_node().await;
    let evg = Evg::new(&node);
    let requester = evg.register().await;
    let payors = [evg.register().await, evg.register().await];
    let id = rid("request");
    let mut txs = Vec::new();
    for payor in &payors {
        evg.deposit_ok(payor, "100").await;
        let answer = evg.request_with(&requester, &payor.evg_id, "7", &id).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        txs.push(answer.body["transaction_id"].as_str().unwrap().to_owned());
    }
    assert_ne!(txs[0], txs[1], "two payors, two requests");
    let ledger = Ledger::open(&node).await;
    for (payor, tx) in payors.iter().zip(&txs) {
        let again = evg.request_with(&requester, &payor.evg_id, "7", &id).await;
        assert_eq!(again.body["transaction_id"].as_str(), Some(tx.as_str()));
        assert_eq!(ledger.request_status(tx).await, "requested");
        let paid = evg
            .pay_with(
                payor,
                &requester.evg_id,
                "7",
                &rid("pay"),
                "asked",
                Some(tx),
            )
            .await;
        assert_eq!(paid.outcome(), "success", "{paid:?}");
        assert_eq!(ledger.request_status(tx).await, "completed");
    }
    assert_eq!(evg.balance(&requester).await, 14);
    ledger.close().await;
    assert_ledger_balances(&node).await;
}

// 4. A failing database batch.

#[actix_web::test]
async fn a_payment_whose_batch_fails_moves_nothing_and_its_retry_succeeds_once() {
    let node = spawn_node().await;
    let evg = Evg::new(&node);
    let payor = evg.register().await;
    let payee = evg.register().await;
    evg.deposit_ok(&payor, "100").await;
    let request_id = rid("pay-after-fault");

    node.faults.fail_next_batches(1);
    let failed = evg.pay(&payor, &payee.evg_id, "40", &request_id).await;
    assert_nothing_changed(&failed);
    assert_eq!(evg.balances(&payor).await, (100, 100));
    assert_eq!(evg.balances(&payee).await, (0, 0));
    let ledger = Ledger::open(&node).await;
    assert_eq!(ledger.transfers("payment").await, 0);
    assert_eq!(ledger.balance(&payor).await, 100);
    assert_ledger_balances(&node).await;

    // The failed attempt left no idempotency record: the same id now pays, once.
    let retried = evg.pay(&payor, &payee.evg_id, "40", &request_id).await;
    assert_eq!(retried.outcome(), "success", "{retried:?}");
    assert_eq!(retried.wallet_balance(), 60);
    let again = evg.pay(&payor, &payee.evg_id, "40", &request_id).await;
    assert_eq!(again, retried);
    assert_eq!(evg.balance(&payor).await, 60);
    assert_eq!(evg.balance(&payee).await, 40);
    assert_eq!(ledger.transfers("payment").await, 1);
    assert_eq!(ledger.balance(&payee).await, 40);
    ledger.close().await;
    assert_ledger_balances(&node).await;
}

/// A 500 with this message in Evergreen's `meta`.
fn assert_500(answer: &Answer, message: &str) {
    assert_eq!(
        answer.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{answer:?}"
    );
    assert_eq!(
        answer.body,
        json!({"meta": {"status": "error", "message": message}})
    );
}

/// The answer to a payment whose commit the node could not settle: the outcome is not known.
fn assert_unknown(answer: &Answer) {
    assert_500(
        answer,
        "The outcome is not known: the change may have been made. Repeat the request with the \
         same request_id to learn it.",
    );
}

/// The answer to a payment whose batch failed for certain.
fn assert_nothing_changed(answer: &Answer) {
    assert_500(answer, "An unexpected error occurred; nothing was changed.");
}

/// The node's count of journal commit attempts with this result.
async fn attempts(node: &TestNode, result: &str) -> f64 {
    let series = format!("node_journal_batches_total{{result=\"{result}\"}}");
    node.metric(&series).await as f64
}

/// A commit that got no answer (the connection broke while the database answered COMMIT, or
/// before COMMIT reached it) may have been applied or not. On PostgreSQL the node asks the
/// database what became of the transaction and answers as if the commit had been answered.
/// SQLite keeps no such record: the payor is told the outcome is unknown, not that nothing
/// changed, and the payee, whose live wallet would have been credited in memory, reloads
/// what the store kept. Either way the wallets agree with the ledger, and the retry with the
/// same request id answers what happened without paying twice.
#[actix_web::test]
async fn a_payment_whose_commit_got_no_answer_is_settled_or_answered_as_unknown() {
    let node = spawn_node().await;
    let resolves = node.database_url.starts_with("postgres");
    let evg = Evg::new(&node);
    let payor = evg.register().await;
    let payee = evg.register().await;
    evg.deposit_ok(&payor, "100").await;
    // The payee's wallet is live in memory.
    assert_eq!(evg.balances(&payee).await, (0, 0));

    // Committed, and the answer lost.
    let request_id = rid("pay-answer-lost");
    node.faults.unconfirm_next_batches(1);
    let first = evg.pay(&payor, &payee.evg_id, "40", &request_id).await;
    if resolves {
        assert_eq!(first.outcome(), "success", "{first:?}");
        assert_eq!(first.wallet_balance(), 60);
    } else {
        assert_unknown(&first);
    }
    assert_eq!(attempts(&node, "unconfirmed").await, 1.0);
    assert_eq!(attempts(&node, "failed").await, 0.0);
    // It was applied, and both wallets say so.
    assert_eq!(evg.balances(&payor).await, (60, 60));
    assert_eq!(evg.balances(&payee).await, (40, 40));
    let retried = evg.pay(&payor, &payee.evg_id, "40", &request_id).await;
    assert_eq!(retried.outcome(), "success", "{retried:?}");
    assert_eq!(retried.wallet_balance(), 60);

    // Rolled back, and no answer.
    let request_id = rid("pay-lost");
    node.faults.lose_next_batches(1);
    let first = evg.pay(&payor, &payee.evg_id, "10", &request_id).await;
    if resolves {
        assert_nothing_changed(&first);
    } else {
        assert_unknown(&first);
    }
    assert_eq!(attempts(&node, "unconfirmed").await, 2.0);
    assert_eq!(evg.balances(&payor).await, (60, 60));
    assert_eq!(evg.balances(&payee).await, (40, 40));
    let retried = evg.pay(&payor, &payee.evg_id, "10", &request_id).await;
    assert_eq!(retried.outcome(), "success", "{retried:?}");
    assert_eq!(retried.wallet_balance(), 50);

    // The payee can spend what it was paid.
    let onwards = evg.pay(&payee, &payor.evg_id, "50", &rid("onwards")).await;
    assert_eq!(onwards.outcome(), "success", "{onwards:?}");
    assert_eq!(evg.balances(&payee).await, (0, 0));
    assert_eq!(evg.balances(&payor).await, (100, 100));
    assert_payments_stored(&node, 3).await;
}

#[actix_web::test]
async fn concurrent_payments_across_a_failed_batch_keep_exactly_the_acknowledged_ones() {
    // A window long enough that the failing batch holds several of the payor's payments (ten
    // are in flight at a time), and that more of them arrive at the wallet while it fails.
    let node = spawn_node_with(|s| s.journal_batch_window_us = 20_000).await;
    let evg = Evg::new(&node);
    let payor = evg.register().await;
    let payees = [evg.register().await, evg.register().await];
    evg.deposit_ok(&payor, "1000").await;

    // 40 payments of 1..=40 credits (820 in all: every one is affordable), each with its own
    // description so that the ledger says which ones it holds.
    let payments: Vec<(String, i64, usize, String)> = (1..=40)
        .map(|n| (format!("p{n}"), n, (n % 2) as usize, rid("fault-race")))
        .collect();

    node.faults.fail_next_batches(1);
    let answers = send_payments(&evg, &payor, &payees, &payments).await;
    let mut acknowledged = BTreeSet::new();
    let mut failed = 0;
    for ((description, ..), answer) in payments.iter().zip(&answers) {
        match answer.status {
            StatusCode::OK => {
                assert_eq!(answer.outcome(), "success", "{answer:?}");
                acknowledged.insert(description.clone());
            }
            // The batch failed, or the entity was reset before it read the command.
            StatusCode::INTERNAL_SERVER_ERROR | StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(answer.body["meta"]["status"], "error", "{answer:?}");
                failed += 1;
            }
            other => panic!("unexpected {other}: {answer:?}"),
        }
    }
    assert!(failed >= 1, "the injected fault failed no payment");

    let sum_of = |set: &BTreeSet<String>, payee: Option<usize>| -> i64 {
        payments
            .iter()
            .filter(|(d, _, p, _)| set.contains(d) && payee.is_none_or(|x| x == *p))
            .map(|(_, amount, ..)| amount)
            .sum()
    };
    let ledger = Ledger::open(&node).await;
    let mut stored = ledger.payment_descriptions(&payor).await;
    stored.sort();
    let expected: Vec<String> = acknowledged.iter().cloned().collect();
    assert_eq!(
        stored, expected,
        "the ledger holds exactly the acknowledged payments, once each"
    );
    assert_eq!(
        evg.balance(&payor).await,
        1000 - sum_of(&acknowledged, None)
    );
    assert_eq!(
        ledger.balance(&payor).await,
        1000 - sum_of(&acknowledged, None)
    );
    for (i, payee) in payees.iter().enumerate() {
        assert_eq!(evg.balance(payee).await, sum_of(&acknowledged, Some(i)));
        assert_eq!(ledger.balance(payee).await, sum_of(&acknowledged, Some(i)));
    }
    assert_ledger_balances(&node).await;

    // Retrying every payment with its own id: the failed ones now pay, the acknowledged ones
    // answer as they did.
    let retries = send_payments(&evg, &payor, &payees, &payments).await;
    for (((description, ..), first), retry) in payments.iter().zip(&answers).zip(&retries) {
        assert_eq!(retry.outcome(), "success", "{retry:?}");
        if acknowledged.contains(description) {
            assert_eq!(retry, first);
        }
    }
    let all: BTreeSet<String> = payments.iter().map(|(d, ..)| d.clone()).collect();
    let mut stored = ledger.payment_descriptions(&payor).await;
    stored.sort();
    assert_eq!(stored, all.iter().cloned().collect::<Vec<_>>());
    assert_eq!(evg.balance(&payor).await, 1000 - 820);
    for (i, payee) in payees.iter().enumerate() {
        assert_eq!(evg.balance(payee).await, sum_of(&all, Some(i)));
    }
    ledger.close().await;
    assert_ledger_balances(&node).await;
}

/// The payments of the failed-batch race, ten in flight at a time, answers in their order.
/// Each is (description, amount, payee index, request id).
async fn send_payments(
    evg: &Evg<'_>,
    payor: &EvgUser,
    payees: &[EvgUser],
    payments: &[(String, i64, usize, String)],
) -> Vec<Answer> {
    let mut answers: Vec<(usize, Answer)> = stream::iter(payments.iter().enumerate())
        .map(|(i, (description, amount, payee, request_id))| async move {
            let answer = evg
                .pay_with(
                    payor,
                    &payees[*payee].evg_id,
                    &amount.to_string(),
                    request_id,
                    description,
                    None,
                )
                .await;
            (i, answer)
        })
        .buffer_unordered(10)
        .collect()
        .await;
    answers.sort_by_key(|(i, _)| *i);
    answers.into_iter().map(|(_, answer)| answer).collect()
}

// 5. Mixed load.

/// One client action of the mixed load (some are two calls in a row).
#[derive(Debug, Clone, Copy)]
enum Action {
    Deposit {
        user: usize,
        amount: i64,
    },
    Withdraw {
        user: usize,
        amount: i64,
    },
    Pay {
        from: usize,
        to: usize,
        amount: i64,
    },
    /// `to` asks `from` for `amount`, and `from` pays the request.
    RequestThenPay {
        from: usize,
        to: usize,
        amount: i64,
    },
    /// `to` asks `from`, and `from` rejects.
    RequestThenReject {
        from: usize,
        to: usize,
        amount: i64,
    },
    /// `to` asks `from`, and cancels it.
    RequestThenCancel {
        from: usize,
        to: usize,
        amount: i64,
    },
}

impl Action {
    fn calls(&self) -> usize {
        match self {
            Action::Deposit { .. } | Action::Withdraw { .. } | Action::Pay { .. } => 1,
            _ => 2,
        }
    }
}

/// What the node acknowledged for one action.
#[derive(Debug, Default)]
struct Acks {
    /// Per user, credits in (+) and out (−) by acknowledged operations.
    deltas: HashMap<usize, i64>,
    deposited: i64,
    withdrawn: i64,
    deposits: i64,
    withdrawals: i64,
    payments: i64,
    requests: i64,
    completed: i64,
    rejected: i64,
    cancelled: i64,
    refused: i64,
}

impl Acks {
    fn add(&mut self, other: Acks) {
        for (user, delta) in other.deltas {
            *self.deltas.entry(user).or_default() += delta;
        }
        self.deposited += other.deposited;
        self.withdrawn += other.withdrawn;
        self.deposits += other.deposits;
        self.withdrawals += other.withdrawals;
        self.payments += other.payments;
        self.requests += other.requests;
        self.completed += other.completed;
        self.rejected += other.rejected;
        self.cancelled += other.cancelled;
        self.refused += other.refused;
    }

    fn paid(&mut self, from: usize, to: usize, amount: i64) {
        *self.deltas.entry(from).or_default() -= amount;
        *self.deltas.entry(to).or_default() += amount;
        self.payments += 1;
    }
}

/// A small deterministic generator (xorshift64), so that a failing run can be repeated.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn mixed_actions(users: usize, calls: usize) -> Vec<Action> {
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15);
    let mut actions = Vec::new();
    let mut planned = 0;
    while planned < calls {
        let from = dice.below(users as u64) as usize;
        let to = (from + 1 + dice.below(users as u64 - 1) as usize) % users;
        let amount = 1 + dice.below(60) as i64;
        let action = match dice.below(100) {
            0..=14 => Action::Deposit { user: from, amount },
            15..=24 => Action::Withdraw { user: from, amount },
            25..=69 => Action::Pay { from, to, amount },
            70..=84 => Action::RequestThenPay { from, to, amount },
            85..=94 => Action::RequestThenReject { from, to, amount },
            _ => Action::RequestThenCancel { from, to, amount },
        };
        planned += action.calls();
        actions.push(action);
    }
    actions
}

/// Run one action and report what was acknowledged. Every call must get a documented answer.
async fn perform(evg: &Evg<'_>, users: &[EvgUser], action: Action) -> Acks {
    let mut acks = Acks::default();
    match action {
        Action::Deposit { user, amount } => {
            let answer = evg
                .deposit(&users[user], &amount.to_string(), &rid("mix-dep"))
                .await;
            assert_eq!(answer.outcome(), "success", "{answer:?}");
            *acks.deltas.entry(user).or_default() += amount;
            acks.deposited += amount;
            acks.deposits += 1;
        }
        Action::Withdraw { user, amount } => {
            let answer = evg
                .withdraw(&users[user], &amount.to_string(), PIN, &rid("mix-wd"))
                .await;
            match answer.outcome() {
                "success" => {
                    *acks.deltas.entry(user).or_default() -= amount;
                    acks.withdrawn += amount;
                    acks.withdrawals += 1;
                }
                "insufficient_funds" => acks.refused += 1,
                other => panic!("withdraw answered {other}: {answer:?}"),
            }
        }
        Action::Pay { from, to, amount } => {
            let answer = evg
                .pay(
                    &users[from],
                    &users[to].evg_id,
                    &amount.to_string(),
                    &rid("mix-pay"),
                )
                .await;
            match answer.outcome() {
                "success" => acks.paid(from, to, amount),
                "insufficient_funds" => acks.refused += 1,
                other => panic!("make_payment answered {other}: {answer:?}"),
            }
        }
        Action::RequestThenPay { from, to, amount }
        | Action::RequestThenReject { from, to, amount }
        | Action::RequestThenCancel { from, to, amount } => {
            let tx = evg
                .request_ok(&users[to], &users[from].evg_id, &amount.to_string())
                .await;
            acks.requests += 1;
            let answer = match action {
                Action::RequestThenPay { .. } => {
                    evg.pay_with(
                        &users[from],
                        &users[to].evg_id,
                        &amount.to_string(),
                        &rid("mix-req-pay"),
                        "answering a request",
                        Some(&tx),
                    )
                    .await
                }
                Action::RequestThenReject { .. } => {
                    evg.reject(&users[from], &tx, &rid("mix-reject")).await
                }
                _ => evg.cancel(&users[to], &tx, &rid("mix-cancel")).await,
            };
            match (action, answer.outcome()) {
                (Action::RequestThenPay { .. }, "success") => {
                    acks.paid(from, to, amount);
                    acks.completed += 1;
                }
                (Action::RequestThenPay { .. }, "insufficient_funds") => acks.refused += 1,
                (Action::RequestThenReject { .. }, "success") => acks.rejected += 1,
                (Action::RequestThenCancel { .. }, "success") => acks.cancelled += 1,
                (_, other) => panic!("{action:?} answered {other}: {answer:?}"),
            }
        }
    }
    acks
}

#[actix_web::test]
async fn a_mixed_load_keeps_the_ledger_balanced_and_every_acknowledgement_stored_once() {
    let node = spawn_node().await;
    let evg = Evg::new(&node);
    let users: Vec<EvgUser> = futures_util::future::join_all((0..30).map(|_| evg.register())).await;

    let mut acks = Acks::default();
    let opening = (0..users.len()).map(|user| Action::Deposit { user, amount: 100 });
    for action in opening {
        acks.add(perform(&evg, &users, action).await);
    }

    let actions = mixed_actions(users.len(), 2000);
    let results: Vec<Acks> = stream::iter(actions)
        .map(|action| perform(&evg, &users, action))
        .buffer_unordered(48)
        .collect()
        .await;
    for result in results {
        acks.add(result);
    }
    assert!(
        acks.payments > 100,
        "too few payments went through: {acks:?}"
    );

    assert_ledger_balances(&node).await;
    let ledger = Ledger::open(&node).await;
    let mut total = 0;
    for (i, user) in users.iter().enumerate() {
        let expected = acks.deltas.get(&i).copied().unwrap_or_default();
        assert!(
            expected >= 0,
            "user {i}: acknowledged operations overdrew it"
        );
        assert_eq!(evg.balance(user).await, expected, "user {i}'s wallet");
        assert_eq!(
            ledger.balance(user).await,
            expected,
            "user {i}'s stored account"
        );
        total += expected;
    }
    assert_eq!(total, acks.deposited - acks.withdrawn);

    assert_eq!(ledger.transfers("deposit").await, acks.deposits, "{acks:?}");
    assert_eq!(
        ledger.transfers("withdrawal").await,
        acks.withdrawals,
        "{acks:?}"
    );
    assert_eq!(ledger.transfers("payment").await, acks.payments, "{acks:?}");
    let all_requests = node::on_db!(&ledger.db, pool => sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM payment_requests")
        .fetch_one(pool)
        .await
        .unwrap());
    assert_eq!(all_requests, acks.requests);
    assert_eq!(ledger.requests("completed").await, acks.completed);
    assert_eq!(ledger.requests("rejected").await, acks.rejected);
    assert_eq!(ledger.requests("cancelled").await, acks.cancelled);
    assert_eq!(
        ledger.requests("requested").await,
        acks.requests - acks.completed - acks.rejected - acks.cancelled
    );
    ledger.close().await;
}

// 6. PIN lockout.

#[actix_web::test]
async fn five_wrong_pins_lock_withdrawals_until_the_lock_ends() {
    let node = spawn_node_with(|s| s.pin_lock_secs = 1).await;
    let evg = Evg::new(&node);
    let user = evg.register().await;
    evg.deposit_ok(&user, "100").await;

    for left in (1..=4).rev() {
        let answer = evg.withdraw(&user, "10", WRONG_PIN, &rid("wrong")).await;
        assert_eq!(answer.outcome(), "wrong_pin", "{answer:?}");
        assert_eq!(
            answer.message(),
            format!("Wrong PIN. {left} attempt(s) left before PIN payments lock.")
        );
    }
    let fifth = evg.withdraw(&user, "10", WRONG_PIN, &rid("wrong")).await;
    assert_eq!(fifth.outcome(), "wrong_pin", "{fifth:?}");
    assert!(fifth.message().contains("locked"), "{fifth:?}");
    assert_eq!(fifth.wallet_balance(), 100);

    // The lock is a time window (one second here), and the answer says until when. The right
    // PIN is refused while it lasts, also after the wallet is reloaded from the store (a failed
    // batch resets it), and accepted once it ended. The node and the test share a clock, so
    // each attempt is held to what its own start and end times allow; polling ends at the
    // first success, within three seconds.
    let until = locked_until(&fifth);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut refused_while_locked = 0;
    let unlocked = loop {
        if refused_while_locked == 1 {
            node.faults.fail_next_batches(1);
            let failed = evg.deposit(&user, "1", &rid("reset")).await;
            assert_eq!(
                failed.status,
                StatusCode::INTERNAL_SERVER_ERROR,
                "{failed:?}"
            );
        }
        let started = chrono::Utc::now();
        let answer = evg.withdraw(&user, "10", PIN, &rid("during-lock")).await;
        let finished = chrono::Utc::now();
        match answer.outcome() {
            "success" => {
                assert!(finished >= until, "accepted before {until}: {answer:?}");
                break answer;
            }
            "wrong_pin" if answer.message().contains("locked") => {
                assert!(started < until, "still locked after {until}: {answer:?}");
                assert_eq!(answer.wallet_balance(), 100);
                refused_while_locked += 1;
            }
            other => panic!("{other}: {answer:?}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still locked after 3 s: {answer:?}"
        );
        if refused_while_locked > 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert_eq!(unlocked.wallet_balance(), 90);

    // The counter starts again from zero: four wrong PINs leave one attempt, and a right one
    // clears them.
    for left in (1..=4).rev() {
        let answer = evg
            .withdraw(&user, "10", WRONG_PIN, &rid("wrong-again"))
            .await;
        assert_eq!(
            answer.message(),
            format!("Wrong PIN. {left} attempt(s) left before PIN payments lock.")
        );
    }
    let right = evg.withdraw(&user, "10", PIN, &rid("right")).await;
    assert_eq!(right.outcome(), "success", "{right:?}");
    assert_eq!(right.wallet_balance(), 80);
    let wrong = evg
        .withdraw(&user, "10", WRONG_PIN, &rid("wrong-after"))
        .await;
    assert_eq!(
        wrong.message(),
        "Wrong PIN. 4 attempt(s) left before PIN payments lock."
    );

    let ledger = Ledger::open(&node).await;
    assert_eq!(ledger.transfers("withdrawal").await, 2);
    assert_eq!(ledger.balance(&user).await, 80);
    ledger.close().await;
    assert_ledger_balances(&node).await;
}

/// When a `wrong_pin` answer says the PIN payments are locked until.
fn locked_until(answer: &Answer) -> chrono::DateTime<chrono::Utc> {
    let message = answer.message();
    let iso = message
        .strip_prefix("Too many wrong PINs: PIN payments are locked until ")
        .and_then(|rest| rest.strip_suffix('.'))
        .unwrap_or_else(|| panic!("no lock end in {answer:?}"));
    chrono::DateTime::parse_from_rfc3339(iso)
        .unwrap_or_else(|e| panic!("{iso}: {e}"))
        .with_timezone(&chrono::Utc)
}

// 7. Validation.

#[actix_web::test]
async fn invalid_calls_are_refused_with_their_documented_answers_and_move_nothing() {
    let node = spawn_node().await;
    let evg = Evg::new(&node);
    let payor = evg.register().await;
    let payee = evg.register().await;
    evg.deposit_ok(&payor, "50").await;

    let bad_amounts = [
        json!("0"),
        json!("-5"),
        json!("1.5"),
        json!("abc"),
        json!(""),
        json!(5),
        json!("1000001"),
    ];
    for amount in &bad_amounts {
        let calls = [
            (
                "make_payment",
                json!({"meta": evg.meta(Some(&payor.token), &rid("bad")), "amount": amount,
                       "payee": payee.evg_id}),
            ),
            (
                "deposit",
                json!({"meta": evg.meta(Some(&payor.token), &rid("bad")), "amount": amount}),
            ),
            (
                "withdraw",
                json!({"meta": evg.meta(Some(&payor.token), &rid("bad")), "amount": amount,
                       "PIN": PIN}),
            ),
            (
                "request_payment",
                json!({"meta": evg.meta(Some(&payee.token), &rid("bad")), "amount": amount,
                       "payor": payor.evg_id, "request_description": "x"}),
            ),
        ];
        for (call, body) in &calls {
            let answer = evg.call(call, body).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{call} {amount}");
            answer.assert_invalid("amount");
        }
    }

    // Unknown fields are named, at the top level and inside meta.
    let unknown = evg
        .call(
            "make_payment",
            &json!({"meta": evg.meta(Some(&payor.token), &rid("bad")), "amount": "1",
                    "payee": payee.evg_id, "tip": "1"}),
        )
        .await;
    unknown.assert_invalid("tip");
    assert!(
        unknown.body["msg"]
            .as_str()
            .is_some_and(|m| m.contains("`tip`")),
        "{unknown:?}"
    );
    let mut meta = evg.meta(Some(&payor.token), &rid("bad"));
    meta["colour"] = json!("green");
    let unknown_in_meta = evg
        .call("deposit", &json!({"meta": meta, "amount": "1"}))
        .await;
    unknown_in_meta.assert_invalid("meta.colour");

    // Missing or bad meta fields name the field.
    for field in ["uuid", "client_version", "request_id"] {
        let mut meta = evg.meta(Some(&payor.token), &rid("bad"));
        meta.as_object_mut().unwrap().remove(field);
        let answer = evg
            .call(
                "make_payment",
                &json!({"meta": meta, "amount": "1", "payee": payee.evg_id}),
            )
            .await;
        answer.assert_invalid(&format!("meta.{field}"));
    }
    for bad_id in [String::new(), "has space".to_owned(), "x".repeat(129)] {
        let answer = evg
            .call(
                "make_payment",
                &json!({"meta": evg.meta(Some(&payor.token), &bad_id), "amount": "1",
                        "payee": payee.evg_id}),
            )
            .await;
        answer.assert_invalid("meta.request_id");
    }
    let no_meta = evg
        .call(
            "make_payment",
            &json!({"amount": "1", "payee": payee.evg_id}),
        )
        .await;
    no_meta.assert_invalid("meta");
    let no_payee = evg
        .call(
            "make_payment",
            &json!({"meta": evg.meta(Some(&payor.token), &rid("bad")), "amount": "1"}),
        )
        .await;
    no_payee.assert_invalid("payee");

    // A bad or missing token: 401, log out.
    for token in [Some("not-a-token"), Some(""), None] {
        let answer = evg
            .call(
                "make_payment",
                &json!({"meta": evg.meta(token, &rid("bad")), "amount": "1",
                        "payee": payee.evg_id}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
        assert_eq!(answer.body["meta"]["status"], "unauthorized", "{answer:?}");
        assert_eq!(answer.body["meta"]["next_step"], "logout", "{answer:?}");
        assert!(answer.body["meta"]["message"].is_string(), "{answer:?}");
    }

    assert_eq!(evg.balance(&payor).await, 50);
    assert_eq!(evg.balance(&payee).await, 0);
    let ledger = Ledger::open(&node).await;
    assert_eq!(ledger.transfers("deposit").await, 1);
    assert_eq!(ledger.transfers("payment").await, 0);
    assert_eq!(ledger.transfers("withdrawal").await, 0);
    let requests = node::on_db!(&ledger.db, pool => sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM payment_requests")
        .fetch_one(pool)
        .await
        .unwrap());
    assert_eq!(requests, 0);
    ledger.close().await;
    assert_ledger_balances(&node).await;
}

#[actix_web::test]
async fn an_old_client_is_told_to_upgrade_and_moves_nothing() {
    let node = spawn_node_with(|s| s.evergreen_client_version_min = "2.0".into()).await;
    let current = Evg::with_version(&node, "2.0");
    let old = Evg::with_version(&node, "1.9");
    let payor = current.register().await;
    let payee = current.register().await;
    current.deposit_ok(&payor, "50").await;

    let calls = [
        (
            "make_payment",
            json!({"meta": old.meta(Some(&payor.token), &rid("old")), "amount": "5",
                   "payee": payee.evg_id}),
        ),
        (
            "deposit",
            json!({"meta": old.meta(Some(&payor.token), &rid("old")), "amount": "5"}),
        ),
        (
            "withdraw",
            json!({"meta": old.meta(Some(&payor.token), &rid("old")), "amount": "5",
                   "PIN": PIN}),
        ),
        (
            "account_info",
            json!({"meta": old.meta(Some(&payor.token), &rid("old"))}),
        ),
    ];
    for (call, body) in &calls {
        let answer = old.call(call, body).await;
        assert_eq!(
            answer.status,
            StatusCode::UPGRADE_REQUIRED,
            "{call}: {answer:?}"
        );
        assert_eq!(answer.body["meta"]["status"], "upgrade", "{answer:?}");
        assert_eq!(answer.body["meta"]["next_step"], "go_to_url", "{answer:?}");
        assert!(answer.body["meta"]["url"].is_string(), "{answer:?}");
    }
    // A newer version compares numerically, not as text.
    let newer = Evg::with_version(&node, "10.0");
    assert_eq!(newer.balance(&payor).await, 50);

    assert_eq!(current.balance(&payor).await, 50);
    assert_eq!(current.balance(&payee).await, 0);
    let ledger = Ledger::open(&node).await;
    assert_eq!(ledger.transfers("deposit").await, 1);
    assert_eq!(ledger.transfers("payment").await, 0);
    ledger.close().await;
    assert_ledger_balances(&node).await;
}

// 8. Found along the way: an acknowledged payment is visible to its payee at once, and a
// wallet's activation disturbs no other wallet's commit.

/// A payee's wallet must show every payment its payors were told succeeded: a user who hears
/// "paid" and looks, or spends it, must find it there.
#[actix_web::test]
async fn a_payment_acknowledged_to_its_payor_is_already_in_the_payees_wallet() {
    let node = spawn_node().await;
    let evg = Evg::new(&node);
    let payee = evg.register().await;
    let payors: Vec<EvgUser> =
        futures_util::future::join_all((0..40).map(|_| evg.register())).await;
    let rounds = 5;
    // One at a time: wallets activating while others commit is another test's subject.
    for payor in &payors {
        evg.deposit_ok(payor, "5").await;
    }
    // The payee's wallet is live: credits reach it after commit, as messages.
    assert_eq!(evg.balance(&payee).await, 0);
    let ledger = Ledger::open(&node).await;
    let mut acknowledged = 0;
    for round in 0..rounds {
        let payee_id = &payee.evg_id;
        let answers = futures_util::future::join_all(payors.iter().map(|payor| {
            let evg = &evg;
            async move { evg.pay(payor, payee_id, "1", &rid("credit")).await }
        }))
        .await;
        for answer in &answers {
            assert_eq!(answer.outcome(), "success", "{answer:?}");
        }
        acknowledged += payors.len() as i64;
        assert_eq!(
            ledger.balance(&payee).await,
            acknowledged,
            "round {round}: stored"
        );
        assert_eq!(
            evg.balance(&payee).await,
            acknowledged,
            "round {round}: every payor was told its payment succeeded and the ledger holds \
             them all, but the payee's wallet does not show them yet"
        );
    }
    ledger.close().await;
    assert_ledger_balances(&node).await;
}

/// A wallet's first command activates it (its fencing epoch is raised in the store). That must
/// not disturb the batches other wallets are committing at the same moment: every command of
/// both kinds succeeds.
#[actix_web::test]
async fn wallets_activating_while_others_commit_fail_no_command() {
    let node = spawn_node().await;
    let evg = Evg::new(&node);
    let busy: Vec<EvgUser> = futures_util::future::join_all((0..20).map(|_| evg.register())).await;
    for user in &busy {
        evg.deposit_ok(user, "1000").await;
    }
    let fresh: Vec<EvgUser> =
        futures_util::future::join_all((0..100).map(|_| evg.register())).await;

    let (evg_ref, busy_ref, fresh_ref) = (&evg, &busy, &fresh);
    let n = busy.len();
    let payments = stream::iter(0..400)
        .map(|i| async move {
            let from = i % n;
            let to = (from + 1 + (i / n) % (n - 1)) % n;
            let answer = evg_ref
                .pay(&busy_ref[from], &busy_ref[to].evg_id, "1", &rid("busy"))
                .await;
            (from, to, answer)
        })
        .buffer_unordered(40)
        .collect::<Vec<_>>();
    let first_deposits = stream::iter(fresh_ref)
        .map(|user| async move { evg_ref.deposit(user, "5", &rid("first")).await })
        .buffer_unordered(10)
        .collect::<Vec<_>>();
    let (payments, first_deposits) = futures_util::future::join(payments, first_deposits).await;

    let failed: Vec<&Answer> = payments
        .iter()
        .map(|(_, _, answer)| answer)
        .chain(&first_deposits)
        .filter(|answer| answer.status != StatusCode::OK || answer.body["status"] != "success")
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} commands failed, e.g. {:?}",
        failed.len(),
        payments.len() + first_deposits.len(),
        failed.first()
    );
    let mut expected = vec![1000_i64; n];
    for (from, to, _) in &payments {
        expected[*from] -= 1;
        expected[*to] += 1;
    }
    let ledger = Ledger::open(&node).await;
    for (user, expected) in busy.iter().zip(&expected) {
        assert_eq!(ledger.balance(user).await, *expected);
    }
    for user in &fresh {
        assert_eq!(ledger.balance(user).await, 5);
    }
    ledger.close().await;
    assert_ledger_balances(&node).await;
}

/// `node_payee_cache_lookups{result=…}` from the metrics text.
fn payee_lookups(metrics: &str, result: &str) -> u64 {
    let prefix = format!("node_payee_cache_lookups{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
}

/// One payment, and the payee lookups it made: (answer, cache hits, cache misses).
async fn pay_counting_lookups(
    node: &TestNode,
    evg: &Evg<'_>,
    payor: &EvgUser,
    payee: &str,
    amount: &str,
) -> (Answer, u64, u64) {
    let before = node.metrics().await;
    let answer = evg.pay(payor, payee, amount, &rid("counted")).await;
    let after = node.metrics().await;
    let delta = |result| payee_lookups(&after, result) - payee_lookups(&before, result);
    (answer, delta("hit"), delta("miss"))
}

#[actix_web::test]
async fn a_payee_paid_again_is_resolved_from_the_cache_and_an_unknown_one_never_is() {
    let node = spawn_node().await;
    let evg = Evg::new(&node);
    let payor = evg.register().await;
    let payee = evg.register().await;
    evg.deposit_ok(&payor, "10").await;

    let (first, hits, misses) = pay_counting_lookups(&node, &evg, &payor, &payee.evg_id, "1").await;
    assert_eq!(first.outcome(), "success", "{first:?}");
    assert!(
        misses > 0,
        "the first payment looks its payee up in the store"
    );
    assert_eq!(hits, 0, "the first payment's payee cannot be cached yet");

    // The same payee again: answered from the cache, the store is not asked.
    let (again, hits, misses) = pay_counting_lookups(&node, &evg, &payor, &payee.evg_id, "2").await;
    assert_eq!(again.outcome(), "success", "{again:?}");
    assert!(hits > 0, "the second payment's payee came from the cache");
    assert_eq!(misses, 0, "the second payment asked the store again");

    // An id nobody has is looked up every time: a miss is not remembered, since the id may
    // be registered a moment later.
    let stranger = format!("qr:{}", unique());
    for _ in 0..2 {
        let (refused, hits, misses) =
            pay_counting_lookups(&node, &evg, &payor, &stranger, "1").await;
        assert_ne!(refused.body["status"], "success", "{refused:?}");
        assert_eq!(hits, 0, "an unknown payee was answered from the cache");
        assert!(
            misses > 0,
            "an unknown payee was not looked up in the store"
        );
    }

    assert_eq!(evg.balance(&payor).await, 7);
    assert_eq!(evg.balance(&payee).await, 3);
}
