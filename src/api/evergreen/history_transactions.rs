//! transaction_list, transaction_detail and leave_feedback.

use std::collections::HashMap;

use actix_web::{post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::super::{
    abandon, caller, claim, credits, finish, Claim, EvgError, EvgJson, InvalidBody, Meta, MetaOnly,
    ResponseMeta, StatusAnswer,
};
use super::{image, iso, shown_id};
use crate::api::AppState;
use crate::store::evergreen_history::{self as store, Profile, TransactionRow};
use crate::wallets::fingerprint;

/// Most transactions one `transaction_list` answer holds; also how many it holds when
/// `num_items` is omitted ("all items after start_position", bounded).
pub const TRANSACTIONS_PAGE_MAX: i64 = 100;
/// Longest `feedback_description`.
pub const FEEDBACK_DESCRIPTION_CHARS_MAX: usize = 200;
/// Longest `transaction_id` accepted.
const TRANSACTION_ID_CHARS_MAX: usize = 128;
/// Most digits of `start_position` / `num_items` (what fits a signed 64-bit integer).
const POSITION_DIGITS_MAX: usize = 18;

/// transaction_list: a page of the caller's transactions.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionList {
    pub meta: Meta,
    /// A non-negative integer as a string: how many of the most recent transactions to skip.
    /// `"0"` when omitted.
    #[serde(default)]
    pub start_position: Option<String>,
    /// A non-negative integer as a string, at most 100: how many transactions to answer.
    /// When omitted, all after `start_position` up to 100.
    #[serde(default)]
    pub num_items: Option<String>,
}

/// A transaction as its payor and payee see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Transaction {
    /// The payment request's id; for a payment made without a request, its own id.
    pub transaction_id: String,
    /// `requested`, `rejected`, `cancelled` (withdrawn by the requester) or `completed`.
    pub transaction_status: String,
    /// When the payment was requested (ISO 8601 UTC); omitted for payments made without a
    /// request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_date: Option<String>,
    /// When the money moved (ISO 8601 UTC); only for `completed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_date: Option<String>,
    /// Whole EVG credits, as a string.
    pub amount: String,
    pub payor_id: String,
    pub payor_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payor_image: Option<String>,
    pub payee_id: String,
    pub payee_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payee_image: Option<String>,
    /// The request's description, or the payment's when made without a request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_description: Option<String>,
    /// For `completed` only: `none`, `positive` or `negative` (the payor's feedback).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback_status: Option<String>,
    /// With negative feedback that has a description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback_description: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TransactionListAnswer {
    pub meta: ResponseMeta,
    /// How many transactions the caller has in all, as a string.
    pub num_transactions: String,
    /// Most recent first.
    pub transactions: Vec<Transaction>,
}

/// A non-negative integer sent as a string.
fn position(path: &str, raw: &str) -> Result<i64, EvgError> {
    let digits = !raw.is_empty()
        && raw.len() <= POSITION_DIGITS_MAX
        && raw.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| raw.parse::<i64>().ok())
        .flatten()
        .ok_or_else(|| {
            EvgError::invalid(
                path,
                "must be a non-negative integer, as a string of digits",
            )
        })
}

/// The profiles of the parties of these transactions, by user id.
async fn parties(
    state: &AppState,
    rows: &[TransactionRow],
) -> Result<HashMap<String, Profile>, EvgError> {
    let mut ids: Vec<String> = rows
        .iter()
        .flat_map(|r| [r.payor.clone(), r.payee.clone()])
        .collect();
    ids.sort();
    ids.dedup();
    let found = store::profiles(&state.db, &ids).await?;
    Ok(found.into_iter().map(|p| (p.id.clone(), p)).collect())
}

/// A stored transaction in the document's shape.
fn shape(row: TransactionRow, people: &HashMap<String, Profile>) -> Transaction {
    let party = |id: &str| -> (String, String, Option<String>) {
        match people.get(id) {
            Some(p) => (shown_id(p), p.fullname.clone(), image(p)),
            None => (format!("user:{id}"), String::new(), None),
        }
    };
    let (payor_id, payor_name, payor_image) = party(&row.payor);
    let (payee_id, payee_name, payee_image) = party(&row.payee);
    let completed = row.status == "completed";
    Transaction {
        transaction_id: row.transaction_id,
        request_date: row.request_at.map(iso),
        payment_date: row.payment_at.filter(|_| completed).map(iso),
        amount: credits(row.amount),
        payor_id,
        payor_name,
        payor_image,
        payee_id,
        payee_name,
        payee_image,
        request_description: row.description.filter(|d| !d.is_empty()),
        feedback_status: completed
            .then(|| row.feedback.clone().unwrap_or_else(|| "none".to_owned())),
        feedback_description: row
            .feedback_description
            .filter(|_| row.feedback.as_deref() == Some("negative")),
        transaction_status: row.status,
    }
}

/// The caller's transactions, most recent first: payment requests they made or received (a
/// paid request and its payment are one transaction, with the request's id) and payments made
/// or received without a request (direct and terminal payments, with their transfer id).
/// Deposits and withdrawals are not transactions between users and are not listed (they show
/// in the balances). Only EVG transactions are listed.
///
/// The order is by when a transaction started (its request, else its payment), newest first,
/// ties by id: a transaction keeps its place when it is later paid or rejected, so pages do
/// not shift except by new transactions at the top. `start_position` and `num_items` are
/// non-negative integers as strings (400 otherwise); `num_items` is at most 100 (400 above);
/// without it the answer holds at most 100 transactions from `start_position`.
/// `num_transactions` counts all of the caller's transactions.
#[utoipa::path(
    tag = "evergreen",
    request_body = TransactionList,
    responses(
        (status = 200, body = TransactionListAnswer, example = json!({
            "meta": {"status": "authorized"},
            "num_transactions": "2",
            "transactions": [
                {"transaction_id": "3895askjfka838dkf", "transaction_status": "completed",
                 "request_date": "2013-03-21T14:21:33Z", "payment_date": "2013-03-21T18:25:43Z",
                 "amount": "200", "payor_id": "facebook:1234121232", "payor_name": "Dave Kammeyer",
                 "payee_id": "qr:7xt6l1p23buno1cr", "payee_name": "Joel Dietz",
                 "request_description": "Payment for rideshare to Rome.",
                 "feedback_status": "negative", "feedback_description": "Goods Not Delivered"},
                {"transaction_id": "0b6c9f0e-2c55-4a34-9d4e-6c1a4f3f2b1d",
                 "transaction_status": "completed", "payment_date": "2013-03-20T09:00:00Z",
                 "amount": "5", "payor_id": "qr:7xt6l1p23buno1cr", "payor_name": "Joel Dietz",
                 "payee_id": "facebook:1234121232", "payee_name": "Dave Kammeyer",
                 "feedback_status": "none"}
            ]
        })),
        (status = 400, body = InvalidBody, example = json!({"path": "num_items", "msg": "must be at most 100"})),
        (status = 401, body = MetaOnly),
    )
)]
#[post("/transaction_list")]
pub async fn transaction_list(
    state: web::Data<AppState>,
    body: EvgJson<TransactionList>,
) -> Result<HttpResponse, EvgError> {
    let body = body.0;
    let me = caller(&state, &body.meta).await?;
    let start = match &body.start_position {
        Some(raw) => position("start_position", raw)?,
        None => 0,
    };
    let limit = match &body.num_items {
        Some(raw) => position("num_items", raw)?,
        None => TRANSACTIONS_PAGE_MAX,
    };
    if limit > TRANSACTIONS_PAGE_MAX {
        return Err(EvgError::invalid(
            "num_items",
            format!("must be at most {TRANSACTIONS_PAGE_MAX}"),
        ));
    }
    let total = store::transaction_count(&state.db, &me.user.id).await?;
    let rows = if limit == 0 || start >= total {
        Vec::new()
    } else {
        store::transactions(&state.db, &me.user.id, start, limit).await?
    };
    let people = parties(&state, &rows).await?;
    Ok(HttpResponse::Ok().json(TransactionListAnswer {
        meta: ResponseMeta::authorized(),
        num_transactions: total.to_string(),
        transactions: rows.into_iter().map(|r| shape(r, &people)).collect(),
    }))
}

/// transaction_detail and the transaction of leave_feedback.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionDetail {
    pub meta: Meta,
    pub transaction_id: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TransactionDetailAnswer {
    pub meta: ResponseMeta,
    #[serde(flatten)]
    pub transaction: Transaction,
}

fn valid_transaction_id(raw: &str) -> Result<(), EvgError> {
    if raw.trim().is_empty() || raw.chars().count() > TRANSACTION_ID_CHARS_MAX {
        return Err(EvgError::invalid(
            "transaction_id",
            format!("must be 1 to {TRANSACTION_ID_CHARS_MAX} characters"),
        ));
    }
    Ok(())
}

/// The answer for a transaction that does not exist or is not the caller's: the same, so
/// that ids cannot be probed.
fn unknown_transaction() -> EvgError {
    EvgError::invalid("transaction_id", "unknown transaction")
}

/// The caller's transaction, or 400 `transaction_id` "unknown transaction".
async fn my_transaction(
    state: &AppState,
    user_id: &str,
    transaction_id: &str,
) -> Result<TransactionRow, EvgError> {
    valid_transaction_id(transaction_id)?;
    store::transaction(&state.db, user_id, transaction_id)
        .await?
        .ok_or_else(unknown_transaction)
}

/// One transaction of the caller, in the shape of `transaction_list`'s items, next to `meta`.
/// Only its payor and payee see it: for anyone else, and for an id that does not exist, the
/// answer is the same 400 `{"path":"transaction_id","msg":"unknown transaction"}`.
#[utoipa::path(
    tag = "evergreen",
    request_body = TransactionDetail,
    responses(
        (status = 200, body = TransactionDetailAnswer, example = json!({
            "meta": {"status": "authorized"},
            "transaction_id": "3895askjfka838dkf", "transaction_status": "requested",
            "request_date": "2013-03-21T14:21:33Z", "amount": "200",
            "payor_id": "facebook:1234121232", "payor_name": "Dave Kammeyer",
            "payee_id": "qr:7xt6l1p23buno1cr", "payee_name": "Joel Dietz",
            "request_description": "Payment for rideshare to Rome."
        })),
        (status = 400, body = InvalidBody, example = json!({"path": "transaction_id", "msg": "unknown transaction"})),
        (status = 401, body = MetaOnly),
    )
)]
#[post("/transaction_detail")]
pub async fn transaction_detail(
    state: web::Data<AppState>,
    body: EvgJson<TransactionDetail>,
) -> Result<HttpResponse, EvgError> {
    let body = body.0;
    let me = caller(&state, &body.meta).await?;
    let row = my_transaction(&state, &me.user.id, &body.transaction_id).await?;
    let people = parties(&state, std::slice::from_ref(&row)).await?;
    Ok(HttpResponse::Ok().json(TransactionDetailAnswer {
        meta: ResponseMeta::authorized(),
        transaction: shape(row, &people),
    }))
}

/// leave_feedback: the payor's verdict on a completed transaction.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaveFeedback {
    pub meta: Meta,
    pub transaction_id: String,
    /// `positive` or `negative`.
    pub feedback_type: String,
    /// Negative feedback only: what went wrong, at most 200 characters (blank counts as
    /// absent).
    #[serde(default)]
    pub feedback_description: Option<String>,
}

/// Leave feedback on a transaction. Only its payor may, once, and only when it is
/// `completed`. Answers 200 `{meta, status, status_message?}` with `status`:
/// - `success`: stored; it counts in the payee's ratings at once;
/// - `not_payor`: the caller is the payee;
/// - `not_completed`: the transaction is requested, rejected or cancelled;
/// - `already_left`: this transaction has feedback already (it is never changed).
///
/// An unknown transaction, or one the caller is no party to, is 400 `transaction_id`
/// "unknown transaction"; a `feedback_type` other than `positive`/`negative` is 400; a
/// `feedback_description` with positive feedback, or longer than 200 characters, is 400.
/// `meta.request_id` is the idempotency key: a repeat gets the first answer (a concurrent
/// repeat 409, retry), the same id for other feedback 400 `meta.request_id`.
#[utoipa::path(
    tag = "evergreen",
    request_body = LeaveFeedback,
    responses(
        (status = 200, body = StatusAnswer, example = json!({
            "meta": {"status": "authorized"}, "status": "already_left",
            "status_message": "Feedback was already left on this transaction."
        })),
        (status = 400, body = InvalidBody, example = json!({"path": "feedback_type", "msg": "must be \"positive\" or \"negative\""})),
        (status = 401, body = MetaOnly),
        (status = 409, body = MetaOnly, description = "the same request_id is being processed"),
    )
)]
#[post("/leave_feedback")]
pub async fn leave_feedback(
    state: web::Data<AppState>,
    body: EvgJson<LeaveFeedback>,
) -> Result<HttpResponse, EvgError> {
    let body = body.0;
    let me = caller(&state, &body.meta).await?;
    valid_transaction_id(&body.transaction_id)?;
    let kind = match body.feedback_type.as_str() {
        "positive" => "positive",
        "negative" => "negative",
        _ => {
            return Err(EvgError::invalid(
                "feedback_type",
                "must be \"positive\" or \"negative\"",
            ))
        }
    };
    let description = body
        .feedback_description
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty());
    if let Some(d) = description {
        if kind == "positive" {
            return Err(EvgError::invalid(
                "feedback_description",
                "only negative feedback has a description",
            ));
        }
        if d.chars().count() > FEEDBACK_DESCRIPTION_CHARS_MAX {
            return Err(EvgError::invalid(
                "feedback_description",
                format!("must be at most {FEEDBACK_DESCRIPTION_CHARS_MAX} characters"),
            ));
        }
    }
    let row = my_transaction(&state, &me.user.id, &body.transaction_id).await?;
    let print = fingerprint("leave_feedback", &(&body.transaction_id, kind, description));
    let scope = format!("history:{}", me.user.id);
    if let Claim::Answered(answer) = claim(&state, &scope, &body.meta, &print).await? {
        return Ok(replay(&answer));
    }
    match decide(
        &state,
        &scope,
        &body.meta,
        &me.user.id,
        &row,
        kind,
        description,
    )
    .await
    {
        Ok(answer) => Ok(replay(&answer)),
        Err(error) => {
            abandon(&state, &scope, &body.meta).await;
            Err(error)
        }
    }
}

/// Decide a claimed feedback call and store its answer (with the feedback, when stored).
async fn decide(
    state: &AppState,
    scope: &str,
    meta: &Meta,
    me: &str,
    row: &TransactionRow,
    kind: &str,
    description: Option<&str>,
) -> Result<serde_json::Value, EvgError> {
    let refusal =
        |status: &str, message: &str| json!({"status": status, "status_message": message});
    let answer = if row.payor != me {
        refusal(
            "not_payor",
            "Only the payor can leave feedback on a transaction.",
        )
    } else if row.status != "completed" {
        refusal(
            "not_completed",
            "Feedback can be left once the transaction is completed.",
        )
    } else {
        let success = json!({"status": "success"});
        let body = success.to_string();
        let stored = store::leave_feedback(
            &state.db,
            &store::NewFeedback {
                transaction_id: &row.transaction_id,
                payor: &row.payor,
                payee: &row.payee,
                kind,
                description,
            },
            store::Answer {
                scope,
                request_id: &meta.request_id,
                body: &body,
            },
        )
        .await?;
        if stored {
            tracing::info!(user_id = %me, kind, "feedback left");
            return Ok(success);
        }
        refusal(
            "already_left",
            "Feedback was already left on this transaction.",
        )
    };
    finish(state, scope, meta, &answer).await?;
    Ok(answer)
}

/// A stored answer (`status`, `status_message`) as the HTTP answer.
fn replay(answer: &serde_json::Value) -> HttpResponse {
    HttpResponse::Ok().json(StatusAnswer {
        meta: ResponseMeta::authorized(),
        status: match answer["status"].as_str() {
            Some("success") => "success",
            Some("not_payor") => "not_payor",
            Some("not_completed") => "not_completed",
            Some("already_left") => "already_left",
            _ => "error",
        },
        status_message: answer["status_message"].as_str().map(str::to_owned),
    })
}
