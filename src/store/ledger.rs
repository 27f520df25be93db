//! The wallet side of the store: how wallet events are written inside a journal batch, and how
//! a wallet is loaded.

use std::collections::{BTreeMap, HashMap};

use actors::money::{Currency, Money};
use actors::wallet::{
    Account, Event, Hold, Owner, PaymentRequest, PinPolicy, PinState, RequestStatus, Transfer,
    Wallet,
};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::bulk::Staged;
use super::journal::{Persist, Tx};
use super::{now_ms, Db, StoreError};
use crate::{on_db, on_tx};

/// Requests addressed to a user that a wallet keeps in memory (the newest); older ones are
/// answered from the store.
const REQUESTS_LOADED_MAX: i64 = 10_000;

impl Persist for actors::DomainEvent {
    fn persist<'a>(&'a self, mut tx: Tx<'a>) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        async move {
            // The staged kinds have one writer, the multi-row one, even for a single event.
            let mut staged = Staged::default();
            if self.stage(&mut staged)? {
                return staged.flush(tx).await;
            }
            match self {
                actors::DomainEvent::Wallet(event) => persist_wallet(event, tx.reborrow()).await?,
                actors::DomainEvent::Conversation(event) => {
                    super::conversations::persist(event, tx.reborrow()).await?;
                }
                actors::DomainEvent::Calendar(event) => {
                    super::stays::persist(event, tx.reborrow()).await?;
                }
            }
            // The notification an event makes is stored with it (see `notify::of_event`).
            if let Some(notification) = crate::notify::of_event(self) {
                super::notifications::insert(tx, &notification).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn stage<'a>(&'a self, staged: &mut Staged<'a>) -> Result<bool, sqlx::Error> {
        match self {
            actors::DomainEvent::Wallet(Event::Transferred(transfer)) => {
                staged.transfer(transfer);
            }
            actors::DomainEvent::Wallet(Event::Feed(entry)) => staged.feed(entry)?,
            actors::DomainEvent::Conversation(event) => {
                let actors::conversation::Change::Posted(message) = &event.change else {
                    return Ok(false);
                };
                staged.message(message);
                staged.thread_event(event)?;
            }
            _ => return Ok(false),
        }
        if let Some(notification) = crate::notify::of_event(self) {
            staged.notification(notification);
        }
        Ok(true)
    }
}

async fn persist_wallet(event: &Event, tx: Tx<'_>) -> Result<(), sqlx::Error> {
    match event {
        Event::Transferred(transfer) => insert_transfer(transfer, tx).await,
        Event::HoldPlaced { user_id, hold } => place_hold(user_id, hold, tx).await,
        Event::HoldSettled {
            user_id,
            hold,
            capture,
        } => settle_hold(user_id, hold, capture.as_ref(), tx).await,
        Event::RequestOpened(request) => open_request(request, tx).await,
        Event::RequestClosed {
            transaction_id,
            status,
            at_ms,
        } => {
            on_tx!(tx, conn => {
                sqlx::query(
                        "UPDATE payment_requests SET status = $2, closed_at = $3 WHERE transaction_id = $1")
                        .bind(transaction_id)
                        .bind(status.as_str())
                        .bind(at_ms)
                        .execute(&mut *conn)
                        .await?;
            });
            Ok(())
        }
        Event::PinChanged { user_id, pin } => {
            on_tx!(tx, conn => {
                sqlx::query(
                        "INSERT INTO wallet_pins (user_id, failures, locked_until_ms) VALUES ($1, $2, $3) \
                         ON CONFLICT (user_id) DO UPDATE SET failures = excluded.failures, \
                         locked_until_ms = excluded.locked_until_ms")
                        .bind(user_id)
                        .bind(i64::from(pin.failures))
                        .bind(pin.locked_until_ms)
                        .execute(&mut *conn)
                        .await?;
            });
            Ok(())
        }
        // Staged, and written by `Staged::flush` (see `persist`).
        Event::Feed(_) => Ok(()),
    }
}

/// Add `delta` to an account's balance, returning its new version. Credits create the account;
/// a user's account is debited only if it exists (its wallet saw the balance), and the
/// table's check refuses a debit below what is held. (An upsert cannot debit: SQLite checks
/// the candidate row, with its negative balance, before resolving the conflict.)
async fn move_balance(
    owner: &Owner,
    currency: Currency,
    delta: i64,
    tx: Tx<'_>,
) -> Result<i64, sqlx::Error> {
    let (kind, id) = owner.parts();
    if delta < 0 && kind == "user" {
        let version = on_tx!(tx, conn => sqlx::query_scalar(
            "UPDATE ledger_accounts SET balance = balance + $4, version = version + 1 \
             WHERE owner_kind = $1 AND owner_id = $2 AND currency = $3 RETURNING version")
            .bind(kind)
            .bind(id)
            .bind(currency.code())
            .bind(delta)
            .fetch_one(&mut *conn)
            .await?);
        return Ok(version);
    }
    let version = on_tx!(tx, conn => sqlx::query_scalar(
        "INSERT INTO ledger_accounts (owner_kind, owner_id, currency, balance, held, version) \
         VALUES ($1, $2, $3, $4, 0, 1) \
         ON CONFLICT (owner_kind, owner_id, currency) DO UPDATE \
         SET balance = ledger_accounts.balance + excluded.balance, \
             version = ledger_accounts.version + 1 \
         RETURNING version")
        .bind(kind)
        .bind(id)
        .bind(currency.code())
        .bind(delta)
        .fetch_one(&mut *conn)
        .await?);
    Ok(version)
}

async fn move_held(
    user_id: &str,
    money: Money,
    delta_sign: i64,
    tx: Tx<'_>,
) -> Result<(), sqlx::Error> {
    on_tx!(tx, conn => {
        sqlx::query(
        "UPDATE ledger_accounts SET held = held + $3, version = version + 1 \
         WHERE owner_kind = 'user' AND owner_id = $1 AND currency = $2")
        .bind(user_id)
        .bind(money.currency().code())
        .bind(delta_sign * money.minor())
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

fn reborrow<'b>(tx: &'b mut Tx<'_>) -> Tx<'b> {
    tx.reborrow()
}

async fn insert_transfer(transfer: &Transfer, mut tx: Tx<'_>) -> Result<(), sqlx::Error> {
    let (debit_kind, debit_id) = transfer.debit.parts();
    let (credit_kind, credit_id) = transfer.credit.parts();
    let money = transfer.money;
    on_tx!(reborrow(&mut tx), conn => {
        sqlx::query(
        "INSERT INTO transfers (id, kind, debit_kind, debit_id, credit_kind, credit_id, currency, \
         amount, reference, description, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
        .bind(&transfer.id)
        .bind(transfer.kind.as_str())
        .bind(debit_kind)
        .bind(debit_id)
        .bind(credit_kind)
        .bind(credit_id)
        .bind(money.currency().code())
        .bind(money.minor())
        .bind(&transfer.reference)
        .bind(&transfer.description)
        .bind(transfer.at_ms)
        .execute(&mut *conn)
        .await?;
    });
    move_balance(
        &transfer.debit,
        money.currency(),
        -money.minor(),
        reborrow(&mut tx),
    )
    .await?;
    let version = move_balance(&transfer.credit, money.currency(), money.minor(), tx).await?;
    transfer.credit_version.set(version);
    Ok(())
}

async fn place_hold(user_id: &str, hold: &Hold, mut tx: Tx<'_>) -> Result<(), sqlx::Error> {
    on_tx!(reborrow(&mut tx), conn => {
        sqlx::query(
        "INSERT INTO holds (id, user_id, currency, amount, reference, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', $6)")
        .bind(&hold.id)
        .bind(user_id)
        .bind(hold.money.currency().code())
        .bind(hold.money.minor())
        .bind(&hold.reference)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
    });
    move_held(user_id, hold.money, 1, tx).await
}

async fn settle_hold(
    user_id: &str,
    hold: &Hold,
    capture: Option<&Transfer>,
    mut tx: Tx<'_>,
) -> Result<(), sqlx::Error> {
    let status = if capture.is_some() {
        "captured"
    } else {
        "voided"
    };
    on_tx!(reborrow(&mut tx), conn => {
        sqlx::query(
        "UPDATE holds SET status = $2, transfer_id = $3, settled_at = $4 WHERE id = $1")
        .bind(&hold.id)
        .bind(status)
        .bind(capture.map(|t| t.id.clone()))
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
    });
    move_held(user_id, hold.money, -1, reborrow(&mut tx)).await?;
    if let Some(transfer) = capture {
        insert_transfer(transfer, tx).await?;
    }
    Ok(())
}

async fn open_request(request: &PaymentRequest, tx: Tx<'_>) -> Result<(), sqlx::Error> {
    on_tx!(tx, conn => {
        sqlx::query(
        "INSERT INTO payment_requests (transaction_id, payor, payee, currency, amount, description, \
         status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&request.transaction_id)
        .bind(&request.payor)
        .bind(&request.payee)
        .bind(request.money.currency().code())
        .bind(request.money.minor())
        .bind(&request.description)
        .bind(request.status.as_str())
        .bind(request.at_ms)
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}

/// Load a user's wallet: accounts, PIN state, requests addressed to them, pending holds.
#[tracing::instrument(skip(db, policy))]
pub async fn load_wallet(db: &Db, user_id: &str, policy: PinPolicy) -> Result<Wallet, StoreError> {
    let mut wallet = Wallet::new(user_id.to_owned(), policy);
    let accounts: Vec<(String, i64, i64, i64)> = on_db!(db, pool => sqlx::query_as(
        "SELECT currency, balance, held, version FROM ledger_accounts \
         WHERE owner_kind = 'user' AND owner_id = $1")
        .bind(user_id)
        .fetch_all(pool)
        .await?);
    wallet.accounts = accounts
        .into_iter()
        .filter_map(|(code, balance, held, version)| {
            Currency::parse(&code).map(|c| {
                (
                    c,
                    Account {
                        balance,
                        held,
                        version,
                    },
                )
            })
        })
        .collect::<BTreeMap<_, _>>();
    let pin: Option<(i64, Option<i64>)> = on_db!(db, pool => sqlx::query_as(
        "SELECT failures, locked_until_ms FROM wallet_pins WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await?);
    if let Some((failures, locked_until_ms)) = pin {
        wallet.pin = PinState {
            failures: u32::try_from(failures).unwrap_or(u32::MAX),
            locked_until_ms,
        };
    }
    type RequestRow = (String, String, String, String, i64, String, String, i64);
    let requests: Vec<RequestRow> = on_db!(db, pool => sqlx::query_as(
        "SELECT transaction_id, payor, payee, currency, amount, description, status, created_at \
         FROM payment_requests WHERE payor = $1 ORDER BY created_at DESC LIMIT $2")
        .bind(user_id)
        .bind(REQUESTS_LOADED_MAX)
        .fetch_all(pool)
        .await?);
    wallet.requests = requests
        .into_iter()
        .filter_map(
            |(id, payor, payee, code, amount, description, status, at_ms)| {
                let money = Money::from_minor(amount, Currency::parse(&code)?)?;
                Some((
                    id.clone(),
                    PaymentRequest {
                        transaction_id: id,
                        payor,
                        payee,
                        money,
                        description,
                        status: RequestStatus::parse(&status)?,
                        at_ms,
                    },
                ))
            },
        )
        .collect::<HashMap<_, _>>();
    let holds: Vec<(String, String, i64, Option<String>)> = on_db!(db, pool => sqlx::query_as(
        "SELECT id, currency, amount, reference FROM holds WHERE user_id = $1 AND status = 'pending'")
        .bind(user_id)
        .fetch_all(pool)
        .await?);
    wallet.holds = holds
        .into_iter()
        .filter_map(|(id, code, amount, reference)| {
            let money = Money::from_minor(amount, Currency::parse(&code)?)?;
            Some((
                id.clone(),
                Hold {
                    id,
                    money,
                    reference,
                },
            ))
        })
        .collect();
    Ok(wallet)
}

/// A user's PIN hash, if they set one.
pub async fn pin_hash(db: &Db, user_id: &str) -> Result<Option<String>, StoreError> {
    let hash: Option<Option<String>> = on_db!(db, pool => sqlx::query_scalar(
        "SELECT pin_hash FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await?);
    Ok(hash.flatten())
}

/// Set a user's PIN hash.
pub async fn set_pin_hash(db: &Db, user_id: &str, hash: &str) -> Result<(), StoreError> {
    on_db!(db, pool => {
        sqlx::query("UPDATE users SET pin_hash = $2 WHERE id = $1")
        .bind(user_id)
        .bind(hash)
        .execute(pool)
        .await?;
    });
    Ok(())
}

/// The user's feed after `since`, at most `limit` entries, in order.
pub async fn feed_after(
    db: &Db,
    user_id: &str,
    since: u64,
    limit: i64,
) -> Result<Vec<(u64, protocol::Event)>, StoreError> {
    let rows: Vec<(i64, String)> = on_db!(db, pool => sqlx::query_as(
        "SELECT seq, event FROM user_feed WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3")
        .bind(user_id)
        .bind(i64::try_from(since).unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(pool)
        .await?);
    Ok(rows
        .into_iter()
        .filter_map(|(seq, event)| {
            Some((u64::try_from(seq).ok()?, serde_json::from_str(&event).ok()?))
        })
        .collect())
}

/// The user's latest feed sequence number.
pub async fn feed_head(db: &Db, user_id: &str) -> Result<u64, StoreError> {
    let seq: Option<i64> = on_db!(db, pool => sqlx::query_scalar(
        "SELECT feed_seq FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await?);
    Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
}

/// Per currency, the sum of every account's balance (zero when the ledger balances), and the
/// number of user accounts below what they hold. For invariant checks.
pub async fn audit(db: &Db) -> Result<(Vec<(String, i64)>, i64), StoreError> {
    let sums: Vec<(String, i64)> = on_db!(db, pool => sqlx::query_as(
        "SELECT currency, CAST(SUM(balance) AS BIGINT) FROM ledger_accounts GROUP BY currency ORDER BY currency")
        .fetch_all(pool)
        .await?);
    let negative: i64 = on_db!(db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM ledger_accounts WHERE owner_kind = 'user' AND balance < held")
        .fetch_one(pool)
        .await?);
    Ok((sums, negative))
}

/// The payor a payment request is addressed to.
pub async fn request_payor(db: &Db, transaction_id: &str) -> Result<Option<String>, StoreError> {
    Ok(on_db!(db, pool => sqlx::query_scalar(
        "SELECT payor FROM payment_requests WHERE transaction_id = $1")
        .bind(transaction_id)
        .fetch_optional(pool)
        .await?))
}
