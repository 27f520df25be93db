//! deposit and withdraw.

use actix_web::{post, web, HttpResponse};
use actors::money::Currency;
use actors::wallet::Command;
use serde::{Deserialize, Serialize};

use super::{
    caller, parse_credits, request_key, EvgError, EvgJson, InvalidBody, Meta, MetaOnly,
    StatusAnswer,
};
use crate::api::AppState;
use crate::wallets::fingerprint;

/// deposit: credits into the caller's wallet.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deposit {
    pub meta: Meta,
    /// Whole credits, as a string.
    pub amount: String,
    /// The currency to deposit; `EVG` when omitted. Depositing a currency opens the account
    /// in it (this is how a user gets, say, a USD account for Pavillion charges).
    #[serde(default)]
    pub currency: Option<String>,
}

/// withdraw: credits out of the caller's wallet, PIN required.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Withdraw {
    pub meta: Meta,
    pub amount: String,
    #[serde(rename = "PIN")]
    pub pin: String,
    #[serde(default)]
    pub currency: Option<String>,
}

impl std::fmt::Debug for Withdraw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Withdraw")
            .field("amount", &self.amount)
            .finish_non_exhaustive()
    }
}

fn money(
    state: &AppState,
    amount: &str,
    currency: Option<&str>,
) -> Result<actors::money::Money, EvgError> {
    let evg = parse_credits(state, "amount", amount)?;
    match currency {
        None => Ok(evg),
        Some(code) => {
            let currency = Currency::parse(code)
                .ok_or_else(|| EvgError::invalid("currency", "unknown currency"))?;
            actors::money::Money::new(evg.amount(), currency)
                .map_err(|e| EvgError::invalid("amount", e.to_string()))
        }
    }
}

/// Deposit credits (from outside the ledger: the system cash-in account).
#[utoipa::path(
    tag = "evergreen",
    request_body = Deposit,
    responses(
        (status = 200, body = StatusAnswer, description = "status: success"),
        (status = 400, body = InvalidBody),
        (status = 401, body = MetaOnly),
    )
)]
#[post("/deposit")]
pub async fn deposit(
    state: web::Data<AppState>,
    body: EvgJson<Deposit>,
) -> Result<HttpResponse, EvgError> {
    let body = body.0;
    let me = caller(&state, &body.meta).await?;
    let money = money(&state, &body.amount, body.currency.as_deref())?;
    let key = (
        request_key(&body.meta, &me.user.id)?,
        fingerprint("deposit", &(money.minor(), money.currency().code())),
    );
    let reply = state
        .wallets
        .ask(&me.user.id, Command::Deposit { money }, Some(key))
        .await?;
    Ok(HttpResponse::Ok().json(StatusAnswer::of(&reply)))
}

/// Withdraw credits (to the system cash-out account). Needs the PIN; five wrong PINs in a row
/// lock PIN payments for a while (`wrong_pin` with a message saying until when).
#[utoipa::path(
    tag = "evergreen",
    request_body = Withdraw,
    responses(
        (status = 200, body = StatusAnswer, description = "status: success, insufficient_funds, wrong_pin or error"),
        (status = 400, body = InvalidBody),
        (status = 401, body = MetaOnly),
    )
)]
#[post("/withdraw")]
pub async fn withdraw(
    state: web::Data<AppState>,
    body: EvgJson<Withdraw>,
) -> Result<HttpResponse, EvgError> {
    let body = body.0;
    let me = caller(&state, &body.meta).await?;
    let money = money(&state, &body.amount, body.currency.as_deref())?;
    super::account::valid_pin("PIN", &body.pin)?;
    let key = (
        request_key(&body.meta, &me.user.id)?,
        fingerprint("withdraw", &(money.minor(), money.currency().code())),
    );
    let pin = state.wallets.check_pin(&me.user.id, &body.pin).await?;
    let reply = state
        .wallets
        .ask(&me.user.id, Command::Withdraw { money, pin }, Some(key))
        .await?;
    Ok(HttpResponse::Ok().json(StatusAnswer::of(&reply)))
}
