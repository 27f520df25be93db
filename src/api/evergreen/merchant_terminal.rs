//! make_terminal_payment: a merchant's terminal charges a customer who enters their PIN.

use actix_web::{post, web, HttpResponse};
use actors::wallet::{Command, Owner, Payment, Refusal, Reply, TransferKind};
use serde::Deserialize;

use super::super::{
    caller, outcome, parse_credits, request_key, resolve_user, text, EvgError, EvgJson,
    InvalidBody, Meta, MetaOnly, ResponseMeta, StatusAnswer, TEXT_CHARS_MAX,
};
use super::{canonical_user_id, is_merchant, items::ITEMS_PER_USER_MAX, user_id_shape};
use crate::api::AppState;
use crate::store::evergreen_merchant as store;
use crate::wallets::fingerprint;

/// Most item ids one terminal payment may name.
const ITEM_IDS_MAX: usize = 100;

/// make_terminal_payment: the caller (a merchant) is paid by `payor`, who enters their PIN.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MakeTerminalPayment {
    pub meta: Meta,
    /// Whole credits, as a string.
    pub amount: String,
    /// What is paid for (1 to 500 characters); the payor and the merchant see it.
    pub description: String,
    /// Who pays: `facebook:<id>`, `qr:<code>` (also `qr:https://qr.evr.gr/<code>`) or
    /// `user:<id>`.
    pub payor: String,
    /// The payor's five-digit PIN. Never stored, logged or returned.
    #[serde(rename = "PIN", deserialize_with = "secret_string")]
    #[schema(value_type = String)]
    pub pin: String,
    /// Ids of the merchant's own items (from `items`) this payment is for; checked, at most 100.
    #[serde(default)]
    pub item_ids: Option<Vec<String>>,
}

impl std::fmt::Debug for MakeTerminalPayment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The PIN is a secret: never in a log line.
        f.debug_struct("MakeTerminalPayment")
            .field("amount", &self.amount)
            .field("payor", &self.payor)
            .finish_non_exhaustive()
    }
}

/// A string that is a secret: a value of another type is refused without echoing it (serde's
/// own message would quote a PIN sent as a number).
fn secret_string<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(value) => Ok(value),
        _ => Err(serde::de::Error::custom("must be a string of five digits")),
    }
}

/// A terminal answer: `meta` carries no balances (the wallet that answered is the payor's).
fn answer(status: &'static str, status_message: Option<String>) -> HttpResponse {
    HttpResponse::Ok().json(StatusAnswer {
        meta: ResponseMeta::authorized(),
        status,
        status_message,
    })
}

/// Every id must name one of the merchant's items.
async fn check_item_ids(
    state: &AppState,
    merchant: &str,
    ids: Option<&Vec<String>>,
) -> Result<(), EvgError> {
    let Some(ids) = ids else {
        return Ok(());
    };
    if ids.len() > ITEM_IDS_MAX {
        return Err(EvgError::invalid(
            "item_ids",
            format!("at most {ITEM_IDS_MAX} ids"),
        ));
    }
    if ids.is_empty() {
        return Ok(());
    }
    let own = store::items_of(&state.db, merchant, ITEMS_PER_USER_MAX).await?;
    for (index, id) in ids.iter().enumerate() {
        if !own.iter().any(|item| item.id.to_string() == *id) {
            return Err(EvgError::invalid(
                &format!("item_ids[{index}]"),
                "not one of your items",
            ));
        }
    }
    Ok(())
}

/// The wallet's answer as a terminal's `status`.
fn terminal_outcome(reply: &Reply) -> (&'static str, Option<String>) {
    match reply {
        Reply::Refused {
            refusal: Refusal::SelfPayment,
            ..
        } => (
            "invalid_user",
            Some("A merchant cannot pay at their own terminal.".into()),
        ),
        other => outcome(other),
    }
}

/// Charge a customer at the caller's terminal. The caller is the merchant (the payee) and
/// must have their listing on (`register_merchant`); `payor` pays from their EVG wallet after
/// entering their PIN on the terminal.
///
/// `status`: `success`; `insufficient_funds` (the message gives the payor's available balance,
/// as the document's example does; the PIN was right to get this far); `invalid_user` (no such
/// user or card, a card nobody registered yet, or the merchant themself); `wrong_pin` (a wrong
/// PIN — the message says how many tries are left — or PIN payments locked after
/// `PIN_FAILURES_MAX` wrong PINs in a row, for `PIN_LOCK_SECS`); `error` (the caller's listing
/// is off). `meta` carries no balances: the wallet that decides is the payor's.
///
/// The answer is sent when the transfer is durable: it is the terminal's confirmation. The
/// merchant's WebSocket connections also get a `payment_received` push (topic `user:<id>`),
/// and the payor's a `balance` push. `meta.request_id` (per merchant) makes the call
/// idempotent: a repeat, even concurrent, moves the money once and gets the same answer; a
/// wrong PIN is answered again without counting twice, so each PIN attempt needs its own
/// request_id. Checks made before the wallet (listing on, payor known) are made again on a
/// repeat.
#[utoipa::path(
    tag = "evergreen",
    request_body = MakeTerminalPayment,
    responses(
        (status = 200, body = StatusAnswer, example = json!({
            "meta": {"status": "authorized"}, "status": "wrong_pin",
            "status_message": "Wrong PIN. 4 attempt(s) left before PIN payments lock."})),
        (status = 400, body = InvalidBody, example = json!({"path": "PIN", "msg": "must be five digits"})),
        (status = 401, body = MetaOnly),
        (status = 503, body = MetaOnly, description = "busy: retry with the same request_id"),
    )
)]
#[post("/make_terminal_payment")]
pub async fn make_terminal_payment(
    state: web::Data<AppState>,
    body: EvgJson<MakeTerminalPayment>,
) -> Result<HttpResponse, EvgError> {
    let body = body.0;
    let me = caller(&state, &body.meta).await?;
    let money = parse_credits(&state, "amount", &body.amount)?;
    let description = body.description.trim();
    if description.is_empty() {
        return Err(EvgError::invalid("description", "must not be empty"));
    }
    text("description", description, TEXT_CHARS_MAX)?;
    user_id_shape("payor", &body.payor)?;
    super::super::account::valid_pin("PIN", &body.pin)?;
    check_item_ids(&state, &me.user.id, body.item_ids.as_ref()).await?;
    let payor_id = canonical_user_id(&body.payor);
    let key = (
        request_key(&body.meta, &me.user.id)?,
        fingerprint(
            "make_terminal_payment",
            &(&payor_id, money.minor(), description, &body.item_ids),
        ),
    );
    if !is_merchant(&state, &me.user.id).await? {
        return Ok(answer(
            "error",
            Some(
                "Turn your merchant listing on (register_merchant) to take terminal payments."
                    .into(),
            ),
        ));
    }
    let Some(payor) = resolve_user(&state, &payor_id).await? else {
        return Ok(answer(
            "invalid_user",
            Some("The user or card was not recognized.".into()),
        ));
    };
    if payor == me.user.id {
        return Ok(answer(
            "invalid_user",
            Some("A merchant cannot pay at their own terminal.".into()),
        ));
    }
    let pin = state.wallets.check_pin(&payor, &body.pin).await?;
    let payment = Payment {
        transfer_id: uuid::Uuid::new_v4().to_string(),
        kind: TransferKind::TerminalPayment,
        credit: Owner::User(me.user.id.clone()),
        money,
        description: Some(description.to_owned()),
        request: None,
        pin: Some(pin),
    };
    let reply = state
        .wallets
        .ask(&payor, Command::Pay(payment), Some(key))
        .await?;
    let (status, status_message) = terminal_outcome(&reply);
    tracing::info!(merchant = %me.user.id, payor = %payor, status, "terminal payment");
    Ok(answer(status, status_message))
}
