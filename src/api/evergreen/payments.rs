//! make_payment, request_payment, cancel_request (alias cancel_payment) and reject_payment.

use actix_web::{post, web, HttpResponse};
use actors::wallet::{Command, Owner, Payment, PaymentRequest, RequestStatus, TransferKind};
use serde::{Deserialize, Serialize};

use super::{
    caller, parse_credits, request_key, resolve_user, text, EvgError, EvgJson, InvalidBody, Meta,
    MetaOnly, ResponseMeta, StatusAnswer, TEXT_CHARS_MAX,
};
use crate::api::AppState;
use crate::store::ledger;
use crate::wallets::fingerprint;

/// Most item ids one payment or request may name.
const ITEM_IDS_MAX: usize = 100;

/// make_payment: pay another user, possibly answering a payment request.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MakePayment {
    pub meta: Meta,
    /// The request this payment answers, if any.
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// Whole credits, as a string.
    pub amount: String,
    /// `facebook:<id>`, `qr:<code>` or `user:<uuid>`.
    pub payee: String,
    #[serde(default)]
    pub request_description: Option<String>,
    /// The corresponding amount of traditional currency, informational.
    #[serde(default)]
    pub currency_amount: Option<String>,
    /// ISO 4217; required with `currency_amount`.
    #[serde(default)]
    pub currency_type: Option<String>,
    #[serde(default)]
    pub item_ids: Option<Vec<String>>,
}

fn check_items(item_ids: Option<&Vec<String>>) -> Result<(), EvgError> {
    if let Some(ids) = item_ids {
        if ids.len() > ITEM_IDS_MAX {
            return Err(EvgError::invalid(
                "item_ids",
                format!("at most {ITEM_IDS_MAX} ids"),
            ));
        }
        if ids.iter().any(|id| id.is_empty() || id.len() > 64) {
            return Err(EvgError::invalid("item_ids", "ids are 1 to 64 characters"));
        }
    }
    Ok(())
}

/// Pay a user. `success`, `insufficient_funds`, `invalid_account` (unknown payee, or oneself)
/// or `error` (a request that is closed, unknown or does not match); `already_paid` when the
/// request was paid already.
#[utoipa::path(
    tag = "evergreen",
    request_body = MakePayment,
    responses(
        (status = 200, body = StatusAnswer),
        (status = 400, body = InvalidBody),
        (status = 401, body = MetaOnly),
    )
)]
#[post("/make_payment")]
pub async fn make_payment(
    state: web::Data<AppState>,
    body: EvgJson<MakePayment>,
) -> Result<HttpResponse, EvgError> {
    let body = body.0;
    let me = caller(&state, &body.meta).await?;
    let money = parse_credits(&state, "amount", &body.amount)?;
    if let Some(description) = &body.request_description {
        text("request_description", description, TEXT_CHARS_MAX)?;
    }
    match (&body.currency_amount, &body.currency_type) {
        (Some(amount), Some(code)) => {
            if amount.parse::<rust_decimal::Decimal>().is_err() {
                return Err(EvgError::invalid(
                    "currency_amount",
                    "must be a decimal number",
                ));
            }
            if actors::money::Currency::parse(code).is_none() {
                return Err(EvgError::invalid(
                    "currency_type",
                    "unknown ISO 4217 currency",
                ));
            }
        }
        (Some(_), None) => {
            return Err(EvgError::invalid(
                "currency_type",
                "required with currency_amount",
            ))
        }
        (None, _) => {}
    }
    check_items(body.item_ids.as_ref())?;
    let key = (
        request_key(&body.meta, &me.user.id)?,
        fingerprint(
            "make_payment",
            &(
                &body.transaction_id,
                money.minor(),
                &body.payee,
                &body.request_description,
            ),
        ),
    );
    let Some(payee) = resolve_user(&state, &body.payee).await? else {
        return Ok(HttpResponse::Ok().json(StatusAnswer {
            meta: ResponseMeta::authorized(),
            status: "invalid_account",
            status_message: Some("The payee account is not valid.".into()),
        }));
    };
    let payment = Payment {
        transfer_id: uuid::Uuid::new_v4().to_string(),
        kind: TransferKind::Payment,
        credit: Owner::User(payee),
        money,
        description: body.request_description.clone(),
        request: body.transaction_id.clone(),
        pin: None,
    };
    let reply = state
        .wallets
        .ask(&me.user.id, Command::Pay(payment), Some(key))
        .await?;
    Ok(HttpResponse::Ok().json(StatusAnswer::of(&reply)))
}

/// request_payment: ask another user to pay.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestPayment {
    pub meta: Meta,
    /// Who is asked to pay.
    pub payor: String,
    pub amount: String,
    pub request_description: String,
    #[serde(default)]
    pub item_ids: Option<Vec<String>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RequestAnswer {
    pub meta: ResponseMeta,
    pub transaction_id: String,
}

/// Ask a user for a payment. The request is kept by the payor's wallet, so paying, rejecting
/// and cancelling it are decided in one place. 400 `payor` when the payor is unknown or the
/// caller.
#[utoipa::path(
    tag = "evergreen",
    request_body = RequestPayment,
    responses(
        (status = 200, body = RequestAnswer),
        (status = 400, body = InvalidBody),
        (status = 401, body = MetaOnly),
    )
)]
#[post("/request_payment")]
pub async fn request_payment(
    state: web::Data<AppState>,
    body: EvgJson<RequestPayment>,
) -> Result<HttpResponse, EvgError> {
    let body = body.0;
    let me = caller(&state, &body.meta).await?;
    let money = parse_credits(&state, "amount", &body.amount)?;
    text(
        "request_description",
        &body.request_description,
        TEXT_CHARS_MAX,
    )?;
    check_items(body.item_ids.as_ref())?;
    let payor = resolve_user(&state, &body.payor)
        .await?
        .filter(|p| *p != me.user.id)
        .ok_or_else(|| EvgError::invalid("payor", "not a user you can request a payment from"))?;
    // The transaction id derives from the caller, the request id and the payor: a retry names
    // the same request, and one request id used for another payor cannot collide with it (the
    // key below is kept in the payor's wallet, so only the payor tells the two apart; a
    // collision would break the requests table's key and fail the whole journal batch).
    let transaction_id = fingerprint(
        "request_payment_id",
        &(&me.user.id, &body.meta.request_id, &payor),
    )[..32]
        .to_owned();
    let key = (
        request_key(&body.meta, &me.user.id)?,
        fingerprint(
            "request_payment",
            &(
                &me.user.id,
                money.minor(),
                &body.payor,
                &body.request_description,
            ),
        ),
    );
    let request = PaymentRequest {
        transaction_id: transaction_id.clone(),
        payor: payor.clone(),
        payee: me.user.id.clone(),
        money,
        description: body.request_description.clone(),
        status: RequestStatus::Requested,
        at_ms: actors::wallet::now_ms(),
    };
    let reply = state
        .wallets
        .ask(&payor, Command::Request(request), Some(key))
        .await?;
    if let actors::wallet::Reply::Refused { refusal, .. } = &reply {
        tracing::warn!(?refusal, "payment request refused");
        return Err(EvgError::invalid(
            "meta.request_id",
            "this request was already made",
        ));
    }
    // The balances in `reply` are the payor's: not the caller's to see.
    Ok(HttpResponse::Ok().json(RequestAnswer {
        meta: ResponseMeta::authorized(),
        transaction_id,
    }))
}

/// cancel_request / cancel_payment and reject_payment.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionRef {
    pub meta: Meta,
    pub transaction_id: String,
}

/// Answers of cancel and reject carry no balances: the wallet that decides is the payor's.
fn closed_answer(reply: &actors::wallet::Reply) -> StatusAnswer {
    let (status, status_message) = super::outcome(reply);
    StatusAnswer {
        meta: ResponseMeta::authorized(),
        status,
        status_message,
    }
}

async fn cancel(state: &AppState, body: TransactionRef) -> Result<HttpResponse, EvgError> {
    let me = caller(state, &body.meta).await?;
    let key = (
        request_key(&body.meta, &me.user.id)?,
        fingerprint("cancel_request", &(&me.user.id, &body.transaction_id)),
    );
    let Some(payor) = ledger::request_payor(&state.db, &body.transaction_id).await? else {
        return Ok(HttpResponse::Ok().json(StatusAnswer {
            meta: ResponseMeta::authorized(),
            status: "error",
            status_message: Some("There is no such payment request.".into()),
        }));
    };
    let command = Command::Cancel {
        transaction_id: body.transaction_id.clone(),
        requester: me.user.id.clone(),
    };
    let reply = state.wallets.ask(&payor, command, Some(key)).await?;
    Ok(HttpResponse::Ok().json(closed_answer(&reply)))
}

/// Cancel a request the caller made: `success`, `already_paid`, or `error` (not the caller's,
/// unknown, or already rejected or cancelled).
#[utoipa::path(
    tag = "evergreen",
    request_body = TransactionRef,
    responses((status = 200, body = StatusAnswer), (status = 400, body = InvalidBody), (status = 401, body = MetaOnly))
)]
#[post("/cancel_request")]
pub async fn cancel_request(
    state: web::Data<AppState>,
    body: EvgJson<TransactionRef>,
) -> Result<HttpResponse, EvgError> {
    cancel(&state, body.0).await
}

/// The same as `cancel_request` (the document's example calls it so).
#[utoipa::path(
    tag = "evergreen",
    request_body = TransactionRef,
    responses((status = 200, body = StatusAnswer), (status = 400, body = InvalidBody), (status = 401, body = MetaOnly))
)]
#[post("/cancel_payment")]
pub async fn cancel_payment(
    state: web::Data<AppState>,
    body: EvgJson<TransactionRef>,
) -> Result<HttpResponse, EvgError> {
    cancel(&state, body.0).await
}

/// Reject a request addressed to the caller: `success`, `already_paid`, or `error`.
#[utoipa::path(
    tag = "evergreen",
    request_body = TransactionRef,
    responses((status = 200, body = StatusAnswer), (status = 400, body = InvalidBody), (status = 401, body = MetaOnly))
)]
#[post("/reject_payment")]
pub async fn reject_payment(
    state: web::Data<AppState>,
    body: EvgJson<TransactionRef>,
) -> Result<HttpResponse, EvgError> {
    let body = body.0;
    let me = caller(&state, &body.meta).await?;
    let key = (
        request_key(&body.meta, &me.user.id)?,
        fingerprint("reject_payment", &(&me.user.id, &body.transaction_id)),
    );
    let command = Command::Reject {
        transaction_id: body.transaction_id.clone(),
    };
    let reply = state.wallets.ask(&me.user.id, command, Some(key)).await?;
    Ok(HttpResponse::Ok().json(closed_answer(&reply)))
}
