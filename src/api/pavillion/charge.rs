//! The charge call: an app charges a user in cents, or records a message without a charge.
//!
//! How a charge is kept (nothing half-kept):
//! 1. the app message and its charge are claimed in one transaction, `pending`, before the
//!    wallet is asked (with an `Idempotency-Key`, the claim is unique per app and key, so a
//!    repeat finds the first claim instead of making a second);
//! 2. the user's wallet decides and answers only once its batch (the transfer, and the key
//!    with the reply) has committed;
//! 3. the answer is written down: `charged`, `insufficient_funds`, `no_account`, or `failed`
//!    when the wallet did not decide (its batch failed, it was busy) and nothing moved.
//!
//! A record left `pending` (the node stopped between 1 and 3, or 3 failed) is settled by the
//! next request with the same key, which asks the wallet again: the wallet replays its stored
//! answer, or decides now if it never did. The charge id is also the id of its ledger transfer,
//! so a pending charge without a key is settled by the ledger: charged if and only if a
//! transfer with its id exists.

use actix_web::http::header;
use actix_web::{post, web, HttpRequest, HttpResponse};
use actors::money::{Currency, Money};
use actors::wallet::{Command, Owner, Payment, Refusal, Reply, TransferKind};
use actors::{ActorError, IdempotencyKey};
use serde::{Deserialize, Serialize};

use super::{key_digest, MessageBody, PavError, RawJson, API_KEY_HEADER, IDEMPOTENCY_HEADER};
use crate::api::AppState;
use crate::store::apps::{self, Claim, MessageRecord, NewCharge, NewMessage, Status};
use crate::wallets::fingerprint;

/// Longest `message`, in characters.
pub const MESSAGE_CHARS_MAX: usize = 16_384;

/// Longest `userId`, in characters.
const USER_ID_CHARS_MAX: usize = 64;

/// Longest API key accepted (ours are 68 bytes).
const API_KEY_BYTES_MAX: usize = 256;

/// The body of a charge.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChargeBody {
    /// What the user got, recorded as the app message (and as the transfer's description).
    #[serde(default)]
    #[schema(example = "{\"userInput\": \"hi\", \"userOutput\": \"How can I help?\"}")]
    pub message: Option<String>,
    /// The user's id, as login answered it. The user must be linked to the app.
    #[schema(example = "123e4567-e89b-12d3-a456-426614174000")]
    pub user_id: String,
    /// An integer number of cents (minor units), positive. Omit for a message only.
    #[serde(default)]
    #[schema(value_type = Option<i64>, example = 100)]
    pub charge_cents: Option<serde_json::Number>,
    /// The currency (ISO 4217, case-insensitive); USD when omitted.
    #[serde(default)]
    #[schema(example = "USD")]
    pub currency: Option<String>,
}

impl std::fmt::Debug for ChargeBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChargeBody")
            .field("user_id", &self.user_id)
            .field("charge_cents", &self.charge_cents)
            .field("currency", &self.currency)
            .finish_non_exhaustive()
    }
}

/// 200: the message was recorded and the charge, if any, made.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Charged {
    #[schema(example = "123e4567-e89b-12d3-a456-426614174000")]
    pub app_message_id: String,
}

/// 402: the message was recorded; the charge was refused and recorded.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InsufficientFunds {
    #[schema(example = "Insufficient funds")]
    pub message: &'static str,
    pub app_message_id: String,
    pub charge_id: String,
}

/// A charge request that passed validation.
struct Valid {
    user_id: String,
    message: Option<String>,
    money: Option<Money>,
}

/// Charge a user (or record a message without a charge).
///
/// Authentication: the app's API key in `x-api-key`. The app may name only users who signed
/// up or logged in through it; any other `userId` is 400. If an `Authorization: Bearer` token
/// is sent (the token login answered), it must be a live token of that same user (401 if not
/// valid, 403 if another user's).
///
/// Idempotency: with an `Idempotency-Key` header (1-128 printable ASCII characters, unique per
/// app), a repeat gets the first answer, the same ids and no second effect, including a
/// refusal; the same key with a different body is 422. Without the header every call is a new
/// charge.
#[utoipa::path(
    tag = "pavillion",
    operation_id = "pavillion_charge",
    request_body = ChargeBody,
    params(
        ("clientId" = String, Path, description = "Your application's client ID"),
        ("x-api-key" = String, Header, description = "Your application's API key"),
        ("Idempotency-Key" = Option<String>, Header,
            description = "Makes the call safe to retry: a repeat gets the first answer"),
        ("Authorization" = Option<String>, Header,
            description = "`Bearer <token from login>`; if sent, it must be the user's"),
    ),
    responses(
        (status = 200, description = "Charged (or the message recorded)", body = Charged),
        (status = 400, description = "malformed JSON, a wrong type, an unknown field, neither message nor \
                           chargeCents, chargeCents not a positive integer or above the maximum, \
                           an unknown currency, a bad Idempotency-Key, or a userId that is not \
                           linked to the app",
            body = MessageBody, example = json!({"message": "Invalid request"})),
        (status = 401, description = "missing or wrong API key for this clientId, or an invalid token",
            body = MessageBody, example = json!({"message": "Invalid credentials"})),
        (status = 402, description = "the balance is short; the message and the refused charge \
                           are recorded", body = InsufficientFunds),
        (status = 403, description = "the bearer token is another user's",
            body = MessageBody, example = json!({"message": "Forbidden"})),
        (status = 404, description = "the user has no account in the currency", body = MessageBody,
            example = json!({"message": "User 123e4567-e89b-12d3-a456-426614174000 does not have an account in USD"})),
        (status = 413, body = MessageBody, example = json!({"message": "Request body too large"})),
        (status = 422, body = MessageBody,
            example = json!({"message": "Idempotency-Key was already used for a different request"})),
        (status = 500, body = MessageBody, example = json!({"message": "Unknown API Error"})),
        (status = 503, description = "busy; retry after `Retry-After` seconds with the same Idempotency-Key",
            body = MessageBody, example = json!({"message": "Unknown API Error"})),
    )
)]
#[post("/api/app/{clientId}/charge")]
#[tracing::instrument(name = "pavillion_charge", skip_all, fields(client_id = %path))]
pub async fn charge(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: RawJson,
) -> Result<HttpResponse, PavError> {
    let app_id = path.into_inner();
    authenticate_app(&state, &req, &app_id).await?;
    let valid = validate(&state, body.parse()?)?;
    check_user_token(&state, &req, &valid.user_id).await?;
    if !apps::is_linked(&state.db, &app_id, &valid.user_id).await? {
        return Err(PavError::Invalid);
    }
    let key = idempotency_key(&req)?;
    let fingerprint = fingerprint(
        "pavillion_charge",
        &(
            &app_id,
            &valid.user_id,
            &valid.message,
            valid
                .money
                .map(|m| (m.currency().code().to_owned(), m.minor())),
        ),
    );
    let new = NewMessage {
        id: uuid::Uuid::new_v4().to_string(),
        app_id,
        user_id: valid.user_id,
        message: valid.message,
        idempotency_key: key.clone(),
        fingerprint,
        charge: valid.money.map(|money| NewCharge {
            id: uuid::Uuid::new_v4().to_string(),
            currency: money.currency().code().to_owned(),
            amount: money.minor(),
        }),
    };
    let record = match apps::claim_message(&state.db, &new).await? {
        Claim::New(record) => record,
        Claim::Existing(record) if record.fingerprint != new.fingerprint => {
            return Err(PavError::KeyReused)
        }
        Claim::Existing(record) => record,
    };
    let status = match record.status() {
        status if status.is_final() => status,
        _ => decide(&state, &record, key.as_deref()).await?,
    };
    tracing::info!(
        app_message_id = %record.id,
        charge_id = record.charge_id.as_deref().unwrap_or_default(),
        status = status.as_str(),
        "pavillion charge"
    );
    answer(&record, status)
}

/// The app named in the path, proven by its API key; 401 otherwise (also for an unknown app:
/// the answer does not say whether the app exists).
async fn authenticate_app(
    state: &AppState,
    req: &HttpRequest,
    app_id: &str,
) -> Result<(), PavError> {
    let key = req
        .headers()
        .get(API_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= API_KEY_BYTES_MAX)
        .ok_or(PavError::InvalidCredentials)?;
    if app_id.len() > super::CLIENT_ID_CHARS_MAX
        || !apps::key_is_live(&state.db, app_id, &key_digest(key)).await?
    {
        return Err(PavError::InvalidCredentials);
    }
    Ok(())
}

/// If the call carries a user's token, it must be that user's, and live.
async fn check_user_token(
    state: &AppState,
    req: &HttpRequest,
    user_id: &str,
) -> Result<(), PavError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(());
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        })
        .filter(|t| !t.is_empty())
        .ok_or(PavError::InvalidCredentials)?;
    let identity = state.auth.authenticate(&token).await?;
    if identity.user.id != user_id {
        return Err(PavError::Forbidden);
    }
    Ok(())
}

/// The `Idempotency-Key` header, if sent: 1 to 128 printable ASCII characters.
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, PavError> {
    let Some(value) = req.headers().get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let raw = value.to_str().map_err(|_| PavError::Invalid)?;
    IdempotencyKey::parse(raw).map_err(|_| PavError::Invalid)?;
    Ok(Some(raw.to_owned()))
}

/// The key the wallet stores the charge's reply under: the app's key, namespaced by the app
/// (two apps may choose the same keys for the same user).
fn wallet_key(app_id: &str, key: &str) -> Result<IdempotencyKey, PavError> {
    IdempotencyKey::parse(&fingerprint("pavillion_idempotency_key", &(app_id, key)))
        .map_err(|e| PavError::internal(&e))
}

/// The most cents one charge may take: `AMOUNT_MAX` whole units of the currency.
fn minor_max(state: &AppState, currency: Currency) -> i64 {
    i64::try_from(state.settings.amount_max)
        .ok()
        .and_then(|max| max.checked_mul(10_i64.checked_pow(currency.scale())?))
        .unwrap_or(i64::MAX)
}

fn validate(state: &AppState, body: ChargeBody) -> Result<Valid, PavError> {
    let user_id = body.user_id.trim();
    if user_id.is_empty() || user_id.chars().count() > USER_ID_CHARS_MAX {
        return Err(PavError::Invalid);
    }
    let message = body.message.filter(|m| !m.is_empty());
    if message
        .as_ref()
        .is_some_and(|m| m.chars().count() > MESSAGE_CHARS_MAX)
    {
        return Err(PavError::Invalid);
    }
    let currency = match body.currency.as_deref() {
        None => Currency::USD,
        Some(code) => Currency::parse(code).ok_or(PavError::Invalid)?,
    };
    let money = match body.charge_cents {
        None => None,
        // `as_i64` is `None` for 1.5, 100.0, 1e2 and anything beyond i64: not integer cents.
        Some(cents) => {
            let cents = cents.as_i64().ok_or(PavError::Invalid)?;
            if cents > minor_max(state, currency) {
                return Err(PavError::Invalid);
            }
            Some(Money::from_minor(cents, currency).ok_or(PavError::Invalid)?)
        }
    };
    if message.is_none() && money.is_none() {
        return Err(PavError::Invalid);
    }
    Ok(Valid {
        user_id: user_id.to_owned(),
        message,
        money,
    })
}

/// Ask the user's wallet to make a claimed charge, and write its answer down.
async fn decide(
    state: &AppState,
    record: &MessageRecord,
    key: Option<&str>,
) -> Result<Status, PavError> {
    let (Some(charge_id), Some(code), Some(amount)) =
        (&record.charge_id, &record.currency, record.amount)
    else {
        return Err(PavError::internal(&format!(
            "app message {} is {} without a charge",
            record.id, record.status
        )));
    };
    let money = Currency::parse(code)
        .and_then(|currency| Money::from_minor(amount, currency))
        .ok_or_else(|| PavError::internal(&format!("charge {charge_id} has a bad amount")))?;
    let payment = Payment {
        // The transfer carries the charge's id: the ledger says whether a charge happened.
        transfer_id: charge_id.clone(),
        kind: TransferKind::Charge,
        credit: Owner::App(record.app_id.clone()),
        money,
        description: record.message.clone(),
        request: None,
        pin: None,
    };
    let wallet_key = match key {
        Some(key) => Some((wallet_key(&record.app_id, key)?, record.fingerprint.clone())),
        None => None,
    };
    let reply = state
        .wallets
        .ask(&record.user_id, Command::Pay(payment), wallet_key)
        .await;
    if let Err(unconfirmed @ ActorError::Unconfirmed(_)) = &reply {
        // The charge may have been made: the record stays pending, not `failed` (which says
        // nothing moved). A retry with the same key gets the wallet's stored answer and
        // settles it; without a key, the ledger holds a transfer with the charge's id if the
        // charge happened.
        return Err(unconfirmed.clone().into());
    }
    let status = match &reply {
        Ok(Reply::Done { .. }) => Status::Charged,
        Ok(Reply::Refused {
            refusal: Refusal::InsufficientFunds { .. },
            ..
        }) => Status::InsufficientFunds,
        Ok(Reply::Refused {
            refusal: Refusal::NoAccount { .. },
            ..
        }) => Status::NoAccount,
        Ok(Reply::Refused { refusal, .. }) => {
            tracing::error!(?refusal, %charge_id, "a charge was refused for an unexpected reason");
            Status::Failed
        }
        Err(_) => Status::Failed,
    };
    // The wallet's answer is durable; if writing it down fails the record stays pending and a
    // retry with the same key settles it.
    apps::settle(&state.db, &record.id, charge_id, status).await?;
    match reply {
        Err(error) => Err(error.into()),
        Ok(_) if status == Status::Failed => Err(PavError::Internal),
        Ok(_) => Ok(status),
    }
}

/// The documented answer for a settled record.
fn answer(record: &MessageRecord, status: Status) -> Result<HttpResponse, PavError> {
    match status {
        Status::Recorded | Status::Charged => Ok(HttpResponse::Ok().json(Charged {
            app_message_id: record.id.clone(),
        })),
        Status::InsufficientFunds => Ok(HttpResponse::PaymentRequired().json(InsufficientFunds {
            message: "Insufficient funds",
            app_message_id: record.id.clone(),
            charge_id: record.charge_id.clone().unwrap_or_default(),
        })),
        Status::NoAccount => Err(PavError::NoAccount {
            user_id: record.user_id.clone(),
            currency: record.currency.clone().unwrap_or_default(),
        }),
        Status::Pending | Status::Failed => Err(PavError::internal(&format!(
            "app message {} answered while {}",
            record.id,
            status.as_str()
        ))),
    }
}
