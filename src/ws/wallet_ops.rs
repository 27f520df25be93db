//! Wallet ops over the WebSocket: `balance`, `pay`, `request_payment`, `reject_payment` and
//! `cancel_request`, with the semantics of their Evergreen REST twins
//! (`src/api/evergreen/payments.rs`): the same wallet commands, the same status words
//! ([`evergreen::outcome`]), the same payee resolution ([`evergreen::resolve_user`]), and the
//! same idempotency: a mutating op's frame `id` is its key, namespaced by the caller exactly as
//! Evergreen namespaces `meta.request_id`, and stored with the effect in the deciding wallet's
//! batch. A retried frame — on this connection or another — gets the first answer and never a
//! second effect.
//!
//! [`prepare`] runs on the connection's reader: it checks the frame (cheap, synchronous) and
//! returns the slow part (store lookups, the wallet actor's durable answer) as a future the
//! connection runs off the reader.

use actix_web::web;
use actors::money::{Currency, Money};
use actors::wallet::{
    Balances, Command, Owner, Payment, PaymentRequest, Reply, RequestStatus, TransferKind,
};
use actors::{ActorError, IdempotencyKey};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use protocol::{ClientFrame, ErrorCode, ServerFrame, WalletAnswer, WalletBalance};
use rust_decimal::Decimal;

use crate::api::evergreen::{self, TEXT_CHARS_MAX};
use crate::api::AppState;
use crate::config::Settings;
use crate::store::ledger;
use crate::wallets::fingerprint;

/// Wallet ops one connection may have in flight at once. One more is refused at once with a
/// `busy` error frame (nothing is applied; retrying it with the same `id` is safe), so a client
/// cannot pile up work on the node through one socket.
pub(super) const WALLET_OPS_IN_FLIGHT_MAX: usize = 16;

/// The longest payment-request id accepted.
const TRANSACTION_ID_BYTES_MAX: usize = 128;

/// The longest amount string accepted (a decimal needs far fewer).
const AMOUNT_BYTES_MAX: usize = 40;

/// The answer of a checked op, computed off the reader.
pub(super) type Answer = BoxFuture<'static, ServerFrame>;

/// Why an op is refused before it reaches a wallet: becomes an `error` frame.
#[derive(Debug)]
pub(super) struct Refused {
    id: Option<String>,
    code: ErrorCode,
    message: String,
}

impl Refused {
    pub(super) fn into_frame(self) -> ServerFrame {
        error_frame(self.id, self.code, self.message)
    }
}

/// Check a wallet op and return the future that answers it, or why it is refused at once.
/// `frame` must be one of the wallet ops.
pub(super) fn prepare(
    state: &web::Data<AppState>,
    user_id: &str,
    frame: ClientFrame,
) -> Result<Answer, Refused> {
    let state = web::Data::clone(state);
    let me = user_id.to_owned();
    match frame {
        ClientFrame::Balance { id } => Ok(async move {
            match state.wallets.ask(&me, Command::Balances, None).await {
                Ok(reply) => answer(id, &reply, true, None),
                Err(error) => actor_error(id, &error),
            }
        }
        .boxed()),
        ClientFrame::Pay {
            id,
            payee,
            amount,
            currency,
            description,
            transaction_id,
        } => {
            let (id, key) = required_id(id, &me)?;
            let money = parse_money(&state.settings, amount.as_str(), currency.as_deref())
                .map_err(|msg| invalid(&id, "amount", &msg))?;
            check_text(&id, "description", description.as_deref())?;
            check_transaction_id(&id, transaction_id.as_deref())?;
            let key = (
                key,
                fingerprint(
                    "ws.pay",
                    &(
                        &transaction_id,
                        money.currency().code(),
                        money.minor(),
                        &payee,
                        &description,
                    ),
                ),
            );
            Ok(async move {
                let payee = match evergreen::resolve_user(&state, &payee).await {
                    Ok(Some(payee)) => payee,
                    Ok(None) => {
                        return wallet(
                            Some(id),
                            "invalid_account",
                            Some("The payee account is not valid.".into()),
                            transaction_id,
                        )
                    }
                    Err(_) => return internal(Some(id)),
                };
                let payment = Payment {
                    transfer_id: uuid::Uuid::new_v4().to_string(),
                    kind: TransferKind::Payment,
                    credit: Owner::User(payee),
                    money,
                    description,
                    request: transaction_id.clone(),
                    pin: None,
                };
                match state
                    .wallets
                    .ask(&me, Command::Pay(payment), Some(key))
                    .await
                {
                    Ok(reply) => answer(Some(id), &reply, true, transaction_id),
                    Err(error) => actor_error(Some(id), &error),
                }
            }
            .boxed())
        }
        ClientFrame::RequestPayment {
            id,
            payor,
            amount,
            currency,
            description,
        } => {
            let (id, key) = required_id(id, &me)?;
            let money = parse_money(&state.settings, amount.as_str(), currency.as_deref())
                .map_err(|msg| invalid(&id, "amount", &msg))?;
            check_text(&id, "description", Some(&description))?;
            Ok(async move {
                let payor = match evergreen::resolve_user(&state, &payor).await {
                    Ok(Some(payor)) if payor != me => payor,
                    Ok(_) => {
                        return bad_request(
                            &id,
                            "payor",
                            "not a user you can request a payment from",
                        )
                    }
                    Err(_) => return internal(Some(id)),
                };
                // Derived from the caller, the frame id and the payor: a retry names the same
                // request, and one id reused for another payor cannot collide with it.
                let transaction_id =
                    fingerprint("ws.request_payment_id", &(&me, &id, &payor))[..32].to_owned();
                let key = (
                    key,
                    fingerprint(
                        "ws.request_payment",
                        &(
                            &me,
                            money.currency().code(),
                            money.minor(),
                            &payor,
                            &description,
                        ),
                    ),
                );
                let request = PaymentRequest {
                    transaction_id: transaction_id.clone(),
                    payor: payor.clone(),
                    payee: me.clone(),
                    money,
                    description,
                    status: RequestStatus::Requested,
                    at_ms: actors::wallet::now_ms(),
                };
                match state
                    .wallets
                    .ask(&payor, Command::Request(request), Some(key))
                    .await
                {
                    // The balances in the reply are the payor's: not the caller's to see.
                    Ok(Reply::Done { .. }) => {
                        wallet(Some(id), "success", None, Some(transaction_id))
                    }
                    Ok(Reply::Refused { refusal, .. }) => {
                        tracing::warn!(?refusal, "payment request refused");
                        bad_request(&id, "id", "this request was already made")
                    }
                    Err(error) => actor_error(Some(id), &error),
                }
            }
            .boxed())
        }
        ClientFrame::RejectPayment { id, transaction_id } => {
            let (id, key) = required_id(id, &me)?;
            check_transaction_id(&id, Some(&transaction_id))?;
            let key = (
                key,
                fingerprint("ws.reject_payment", &(&me, &transaction_id)),
            );
            Ok(async move {
                let command = Command::Reject {
                    transaction_id: transaction_id.clone(),
                };
                match state.wallets.ask(&me, command, Some(key)).await {
                    Ok(reply) => answer(Some(id), &reply, true, Some(transaction_id)),
                    Err(error) => actor_error(Some(id), &error),
                }
            }
            .boxed())
        }
        ClientFrame::CancelRequest { id, transaction_id } => {
            let (id, key) = required_id(id, &me)?;
            check_transaction_id(&id, Some(&transaction_id))?;
            let key = (
                key,
                fingerprint("ws.cancel_request", &(&me, &transaction_id)),
            );
            Ok(async move {
                let payor = match ledger::request_payor(&state.db, &transaction_id).await {
                    Ok(Some(payor)) => payor,
                    Ok(None) => {
                        return wallet(
                            Some(id),
                            "error",
                            Some("There is no such payment request.".into()),
                            Some(transaction_id),
                        )
                    }
                    Err(error) => {
                        tracing::error!(%error, "looking up a payment request failed");
                        return internal(Some(id));
                    }
                };
                let command = Command::Cancel {
                    transaction_id: transaction_id.clone(),
                    requester: me.clone(),
                };
                match state.wallets.ask(&payor, command, Some(key)).await {
                    // Decided by the payor's wallet: its balances are not the caller's to see.
                    Ok(reply) => answer(Some(id), &reply, false, Some(transaction_id)),
                    Err(error) => actor_error(Some(id), &error),
                }
            }
            .boxed())
        }
        other => Err(Refused {
            id: other.id().map(str::to_owned),
            code: ErrorCode::BadRequest,
            message: "not a wallet op".into(),
        }),
    }
}

/// The `id` of a mutating op, and the idempotency key it stands for: namespaced by the caller
/// the way Evergreen's `request_key` namespaces `meta.request_id` (ids are chosen by clients,
/// and a key may be stored in another user's wallet: a request goes to the payor's).
fn required_id(id: Option<String>, me: &str) -> Result<(String, IdempotencyKey), Refused> {
    let Some(id) = id else {
        return Err(Refused {
            id: None,
            code: ErrorCode::BadRequest,
            message: "id: required for this op (it makes a retry safe)".into(),
        });
    };
    if let Err(msg) = IdempotencyKey::parse(&id) {
        return Err(invalid(&id, "id", msg));
    }
    let namespaced = fingerprint("request_id", &(me, &id));
    match IdempotencyKey::parse(&namespaced) {
        Ok(key) => Ok((id, key)),
        Err(msg) => Err(invalid(&id, "id", msg)),
    }
}

/// An amount in its currency's unit, checked like Evergreen's `parse_credits`: positive, no
/// more decimals than the currency has (none for EVG, whole credits in v1), at most
/// `amount_max` whole units.
fn parse_money(settings: &Settings, raw: &str, currency: Option<&str>) -> Result<Money, String> {
    let currency = match currency {
        None => Currency::EVG,
        Some(code) => Currency::parse(code).ok_or_else(|| format!("unknown currency {code:?}"))?,
    };
    if raw.len() > AMOUNT_BYTES_MAX {
        return Err(format!("must be at most {AMOUNT_BYTES_MAX} characters"));
    }
    let amount = actors::money::parse_plain_decimal(raw.trim())
        .ok_or_else(|| "must be a decimal number, as a string".to_owned())?;
    if amount <= Decimal::ZERO {
        return Err("must be greater than zero".into());
    }
    if currency == Currency::EVG && amount.fract() != Decimal::ZERO {
        return Err("must be a whole number of EVG credits".into());
    }
    if amount > Decimal::from(settings.amount_max) {
        return Err(format!("must be at most {}", settings.amount_max));
    }
    Money::new(amount, currency).map_err(|e| e.to_string())
}

fn check_text(id: &str, field: &str, value: Option<&str>) -> Result<(), Refused> {
    if value.is_some_and(|v| v.chars().count() > TEXT_CHARS_MAX) {
        return Err(invalid(
            id,
            field,
            &format!("must be at most {TEXT_CHARS_MAX} characters"),
        ));
    }
    Ok(())
}

fn check_transaction_id(id: &str, value: Option<&str>) -> Result<(), Refused> {
    if value.is_some_and(|v| v.is_empty() || v.len() > TRANSACTION_ID_BYTES_MAX) {
        return Err(invalid(
            id,
            "transaction_id",
            &format!("must be 1 to {TRANSACTION_ID_BYTES_MAX} characters"),
        ));
    }
    Ok(())
}

/// A wallet's answer as a `wallet` frame, with the Evergreen status words.
fn answer(
    id: Option<String>,
    reply: &Reply,
    balances_are_callers: bool,
    transaction_id: Option<String>,
) -> ServerFrame {
    let (status, message) = evergreen::outcome(reply);
    let balances = if balances_are_callers {
        balances(reply.balances())
    } else {
        Vec::new()
    };
    let transfer_id = match reply {
        Reply::Done { transfer_id, .. } => transfer_id.clone(),
        Reply::Refused { .. } => None,
    };
    ServerFrame::Wallet(WalletAnswer {
        id,
        status: status.to_owned(),
        message,
        balances,
        transaction_id,
        transfer_id,
    })
}

/// A `wallet` frame that no wallet decided (nothing to show of the caller's balances).
fn wallet(
    id: Option<String>,
    status: &str,
    message: Option<String>,
    transaction_id: Option<String>,
) -> ServerFrame {
    ServerFrame::Wallet(WalletAnswer {
        id,
        status: status.to_owned(),
        message,
        balances: Vec::new(),
        transaction_id,
        transfer_id: None,
    })
}

/// Balances as decimal strings at the currency's scale, as in `balance` events.
fn balances(balances: &Balances) -> Vec<WalletBalance> {
    balances
        .iter()
        .map(|(currency, (available, total))| WalletBalance {
            currency: currency.code().to_owned(),
            available: actors::money::decimal(*available, *currency).to_string(),
            total: actors::money::decimal(*total, *currency).to_string(),
        })
        .collect()
}

/// Why the wallet gave no answer, as an error frame.
fn actor_error(id: Option<String>, error: &ActorError) -> ServerFrame {
    match error {
        ActorError::Busy(_) | ActorError::Unavailable(_) | ActorError::ShuttingDown => error_frame(
            id,
            ErrorCode::Busy,
            "the wallet is busy; nothing was applied; retry with the same id",
        ),
        ActorError::KeyReused => error_frame(
            id,
            ErrorCode::BadRequest,
            "id: already used for a different request",
        ),
        ActorError::NotStored(_) => {
            tracing::error!(%error, "a wallet op was not stored");
            internal(id)
        }
        ActorError::Unconfirmed(_) => {
            tracing::error!(%error, "a wallet op was not confirmed");
            unconfirmed(id)
        }
    }
}

/// The answer to an op whose change the database did not confirm (shared with conversation
/// ops).
pub(super) fn unconfirmed(id: Option<String>) -> ServerFrame {
    error_frame(
        id,
        ErrorCode::Internal,
        "the outcome is not known: the change may have been applied; retry with the same id \
         to learn it",
    )
}

fn internal(id: Option<String>) -> ServerFrame {
    error_frame(
        id,
        ErrorCode::Internal,
        "an unexpected failure; nothing was applied; retry with the same id",
    )
}

/// A frame field that is not acceptable.
fn invalid(id: &str, field: &str, msg: &str) -> Refused {
    Refused {
        id: Some(id.to_owned()),
        code: ErrorCode::BadRequest,
        message: format!("{field}: {msg}"),
    }
}

fn bad_request(id: &str, field: &str, msg: &str) -> ServerFrame {
    invalid(id, field, msg).into_frame()
}

fn error_frame(id: Option<String>, code: ErrorCode, message: impl Into<String>) -> ServerFrame {
    ServerFrame::Error {
        id,
        code,
        message: message.into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_checked_like_evergreen_credits() {
        let settings = Settings::defaults();
        let evg = |raw: &str| parse_money(&settings, raw, None).map(|m| m.minor());
        assert_eq!(evg("25"), Ok(2500));
        assert_eq!(evg(" 7 "), Ok(700));
        for bad in ["0", "-1", "1.5", "abc", "", "1e3", "1000001"] {
            assert!(evg(bad).is_err(), "{bad}");
        }
        let usd = |raw: &str| parse_money(&settings, raw, Some("usd")).map(|m| m.minor());
        assert_eq!(usd("12.50"), Ok(1250));
        assert!(usd("12.505").is_err());
        assert!(parse_money(&settings, "1", Some("XXX")).is_err());
        assert!(parse_money(&settings, "1", Some("JPY")).is_ok());
        assert!(parse_money(&settings, "0.5", Some("JPY")).is_err());
    }

    #[test]
    fn ids_of_mutating_ops_are_required_and_namespaced_by_the_caller() {
        assert!(required_id(None, "u1").is_err());
        assert!(required_id(Some("has space".into()), "u1").is_err());
        let (_, a) = required_id(Some("p1".into()), "u1").unwrap();
        let (_, b) = required_id(Some("p1".into()), "u2").unwrap();
        let (_, again) = required_id(Some("p1".into()), "u1").unwrap();
        assert_ne!(a, b);
        assert_eq!(a, again);
    }
}
