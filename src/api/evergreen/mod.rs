//! Evergreen (seed 004): wallets, payments, merchants, terminals and QR cards under
//! `/rest/v01`. Every call is a POST with a `meta` block; every answer has a `meta` block.
//!
//! Decisions (see `docs/DECISIONS.md`): validation failures are 400 `{"path","msg"}`; business
//! outcomes (`insufficient_funds`, `wrong_pin`, …) are 200 with a `status`; a bad token is 401
//! with `meta.status = "unauthorized"` and `next_step = "logout"`; an old client is 426 with
//! `meta.status = "upgrade"`; `meta.request_id` makes every mutating call idempotent; credits
//! are the currency `EVG`, integral in v1.

pub mod account;
pub mod atm;
pub mod history;
pub mod merchant;
pub mod payments;

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use actors::money::{Currency, Money};
use actors::wallet::{Balances, Refusal, Reply};
use actors::{ActorError, IdempotencyKey};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use super::AppState;
use crate::auth::Identity;
use crate::store::{external_ids, users, StoreError};

/// Where Evergreen is mounted.
pub const MOUNT: &str = "/rest/v01";

/// Longest free-text field accepted (descriptions, names).
pub const TEXT_CHARS_MAX: usize = 500;

/// Register every Evergreen route.
pub fn configure(cfg: &mut ServiceConfig<'_>) {
    let mounted = scope::scope(MOUNT)
        .service(account::register_user)
        .service(account::account_info)
        .service(atm::deposit)
        .service(atm::withdraw)
        .service(payments::make_payment)
        .service(payments::request_payment)
        .service(payments::cancel_request)
        .service(payments::cancel_payment)
        .service(payments::reject_payment);
    let mounted = history::routes(mounted);
    let mounted = merchant::routes(mounted);
    cfg.service(mounted);
}

/// The request metadata block every call carries.
#[derive(Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// The device's unique identifier.
    pub uuid: String,
    /// The token from `register_user` / `register_device` (omitted before one is assigned).
    #[serde(default)]
    pub evg_auth_token: Option<String>,
    #[serde(default)]
    pub push_token: Option<String>,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub platform_version: Option<String>,
    #[serde(default)]
    pub device_model: Option<String>,
    pub client_version: String,
    #[serde(default)]
    pub language: Option<String>,
    /// Client-generated; a repeated id gets the first answer and no second effect.
    pub request_id: String,
    #[serde(default)]
    pub lat: Option<f64>,
    #[serde(default)]
    pub lon: Option<f64>,
}

impl std::fmt::Debug for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token and the push token are secrets: never in a log line.
        f.debug_struct("Meta")
            .field("uuid", &self.uuid)
            .field("client_version", &self.client_version)
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

/// The response metadata block.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ResponseMeta {
    /// `authorized`, `unauthorized`, `error` or `upgrade`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `home`, `logout`, `go_to_url` or `register`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_step: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Spendable EVG after this request (integral in v1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wallet_balance: Option<String>,
    /// All EVG in the account, including held credits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_balance: Option<String>,
}

impl ResponseMeta {
    pub fn authorized() -> Self {
        ResponseMeta {
            status: "authorized",
            message: None,
            next_step: None,
            url: None,
            wallet_balance: None,
            account_balance: None,
        }
    }

    /// Authorized, with the EVG balances of a wallet answer.
    pub fn with_balances(balances: &Balances) -> Self {
        let (available, total) = balances.get(&Currency::EVG).copied().unwrap_or((0, 0));
        ResponseMeta {
            wallet_balance: Some(credits(available)),
            account_balance: Some(credits(total)),
            ..Self::authorized()
        }
    }
}

/// EVG minor units as the integral-credit string of v1.
pub fn credits(minor: i64) -> String {
    actors::money::decimal(minor, Currency::EVG)
        .normalize()
        .to_string()
}

/// An Evergreen failure that is not a business outcome.
#[derive(Debug)]
pub enum EvgError {
    /// 400 `{"path": …, "msg": …}`.
    Invalid { path: String, msg: String },
    /// 401, `meta.status = "unauthorized"`, `next_step = "logout"`.
    Unauthorized(String),
    /// 426, `meta.status = "upgrade"`, `next_step = "go_to_url"`.
    Upgrade(String),
    /// 409: the same request id is being processed right now.
    InProgress,
    /// 503: a queue is full; retry with the same request id.
    Busy,
    /// 500: unexpected; nothing was changed.
    Internal,
    /// 500: the database did not confirm the change, which may have been made; the same
    /// request id again answers which (and does not make it twice).
    Unconfirmed,
}

impl EvgError {
    pub fn invalid(path: &str, msg: impl Into<String>) -> Self {
        EvgError::Invalid {
            path: path.to_owned(),
            msg: msg.into(),
        }
    }

    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "evergreen request failed unexpectedly");
        EvgError::Internal
    }
}

impl std::fmt::Display for EvgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct InvalidBody {
    /// The parameter that failed, e.g. `amount` or `meta.request_id`.
    pub path: String,
    pub msg: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MetaOnly {
    pub meta: ResponseMeta,
}

impl ResponseError for EvgError {
    fn status_code(&self) -> StatusCode {
        match self {
            EvgError::Invalid { .. } => StatusCode::BAD_REQUEST,
            EvgError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            EvgError::Upgrade(_) => StatusCode::UPGRADE_REQUIRED,
            EvgError::InProgress => StatusCode::CONFLICT,
            EvgError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            EvgError::Internal | EvgError::Unconfirmed => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        let meta =
            |status: &'static str, message: &str, next_step: Option<&'static str>| ResponseMeta {
                status,
                message: Some(message.to_owned()),
                next_step,
                ..ResponseMeta::authorized()
            };
        match self {
            EvgError::Invalid { path, msg } => response.json(InvalidBody {
                path: path.clone(),
                msg: msg.clone(),
            }),
            EvgError::Unauthorized(message) => response.json(MetaOnly {
                meta: meta("unauthorized", message, Some("logout")),
            }),
            EvgError::Upgrade(url) => response.json(MetaOnly {
                meta: ResponseMeta {
                    url: Some(url.clone()),
                    ..meta(
                        "upgrade",
                        "Please upgrade your Evergreen app to the newest version to continue.",
                        Some("go_to_url"),
                    )
                },
            }),
            EvgError::InProgress => response.json(MetaOnly {
                meta: meta(
                    "error",
                    "This request is already being processed; retry it.",
                    None,
                ),
            }),
            EvgError::Busy => response.insert_header(("Retry-After", "1")).json(MetaOnly {
                meta: meta("error", "The server is busy; retry the same request.", None),
            }),
            EvgError::Internal => response.json(MetaOnly {
                meta: meta(
                    "error",
                    "An unexpected error occurred; nothing was changed.",
                    None,
                ),
            }),
            EvgError::Unconfirmed => response.json(MetaOnly {
                meta: meta(
                    "error",
                    "The outcome is not known: the change may have been made. Repeat the request \
                     with the same request_id to learn it.",
                    None,
                ),
            }),
        }
    }
}

impl From<StoreError> for EvgError {
    fn from(error: StoreError) -> Self {
        EvgError::internal(&error)
    }
}

impl From<ActorError> for EvgError {
    fn from(error: ActorError) -> Self {
        match error {
            ActorError::Busy(_) | ActorError::Unavailable(_) | ActorError::ShuttingDown => {
                EvgError::Busy
            }
            ActorError::NotStored(_) => EvgError::internal(&error),
            ActorError::Unconfirmed(_) => {
                tracing::error!(%error, "an evergreen change was not confirmed");
                EvgError::Unconfirmed
            }
            ActorError::KeyReused => EvgError::invalid(
                "meta.request_id",
                "this request_id was already used for a different request",
            ),
        }
    }
}

impl From<crate::wallets::WalletError> for EvgError {
    fn from(error: crate::wallets::WalletError) -> Self {
        match error {
            crate::wallets::WalletError::Actor(e) => e.into(),
            other => EvgError::internal(&other),
        }
    }
}

/// A JSON body read with the path of the first bad field, so that failures name it.
pub struct EvgJson<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for EvgJson<T> {
    type Error = EvgError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, EvgError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map_or(64 * 1024, |s| s.settings.http_body_bytes_max);
        let json = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !json {
                return Err(EvgError::invalid(
                    "body",
                    "send the body as application/json",
                ));
            }
            let bytes = body
                .await
                .map_err(|e| EvgError::invalid("body", e.to_string()))?;
            if bytes.len() > limit {
                return Err(EvgError::invalid(
                    "body",
                    format!("the body exceeds {limit} bytes"),
                ));
            }
            let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
            serde_path_to_error::deserialize(&mut deserializer)
                .map(EvgJson)
                .map_err(|error| {
                    let path = error.path().to_string();
                    let msg = error.inner().to_string();
                    // "missing field `x`" is reported at the parent: name the field itself.
                    let field = msg
                        .strip_prefix("missing field `")
                        .and_then(|rest| rest.split('`').next());
                    let path = match (field, path.as_str()) {
                        (Some(f), ".") => f.to_owned(),
                        (Some(f), parent) => format!("{parent}.{f}"),
                        (None, ".") => "body".to_owned(),
                        (None, p) => p.to_owned(),
                    };
                    EvgError::Invalid { path, msg }
                })
        })
    }
}

/// A `request_id` as an idempotency key, namespaced by the caller: request ids are chosen by
/// clients, and a key may land in another user's wallet (a payment request goes to the payor's).
pub fn request_key(meta: &Meta, caller_id: &str) -> Result<IdempotencyKey, EvgError> {
    IdempotencyKey::parse(&meta.request_id)
        .map_err(|msg| EvgError::invalid("meta.request_id", msg))?;
    let key = crate::wallets::fingerprint("request_id", &(caller_id, &meta.request_id));
    IdempotencyKey::parse(&key).map_err(|msg| EvgError::invalid("meta.request_id", msg))
}

/// Check the parts of `meta` every call needs, and the client version.
pub fn check_meta(state: &AppState, meta: &Meta) -> Result<(), EvgError> {
    if meta.uuid.trim().is_empty() || meta.uuid.len() > 128 {
        return Err(EvgError::invalid(
            "meta.uuid",
            "must be 1 to 128 characters",
        ));
    }
    if meta.client_version.trim().is_empty() || meta.client_version.len() > 32 {
        return Err(EvgError::invalid(
            "meta.client_version",
            "must be 1 to 32 characters",
        ));
    }
    IdempotencyKey::parse(&meta.request_id)
        .map_err(|msg| EvgError::invalid("meta.request_id", msg))?;
    if let Some(lat) = meta.lat {
        if !(-90.0..=90.0).contains(&lat) {
            return Err(EvgError::invalid("meta.lat", "must be between -90 and 90"));
        }
    }
    if let Some(lon) = meta.lon {
        if !(-180.0..=180.0).contains(&lon) {
            return Err(EvgError::invalid(
                "meta.lon",
                "must be between -180 and 180",
            ));
        }
    }
    for (path, value, max) in [
        ("meta.push_token", &meta.push_token, 512),
        ("meta.platform", &meta.platform, 32),
        ("meta.platform_version", &meta.platform_version, 32),
        ("meta.device_model", &meta.device_model, 64),
        ("meta.language", &meta.language, 35),
    ] {
        if value.as_ref().is_some_and(|v| v.len() > max) {
            return Err(EvgError::invalid(
                path,
                format!("must be at most {max} characters"),
            ));
        }
    }
    if older_than(
        &meta.client_version,
        &state.settings.evergreen_client_version_min,
    ) {
        return Err(EvgError::Upgrade(
            state.settings.evergreen_upgrade_url.clone(),
        ));
    }
    Ok(())
}

/// Compare dotted versions numerically ("0.10" is newer than "0.9").
fn older_than(version: &str, minimum: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> {
        v.split('.')
            .map(|p| p.trim().parse::<u64>().unwrap_or(0))
            .collect()
    };
    let (mut a, mut b) = (parts(version), parts(minimum));
    let len = a.len().max(b.len());
    a.resize(len, 0);
    b.resize(len, 0);
    a < b
}

/// The caller of an authenticated call: `meta` checked, token verified.
pub async fn caller(state: &AppState, meta: &Meta) -> Result<Identity, EvgError> {
    check_meta(state, meta)?;
    let token = meta
        .evg_auth_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| EvgError::Unauthorized("Please log in.".into()))?;
    let identity = state.auth.authenticate(token).await.map_err(|e| match e {
        crate::auth::AuthError::Store(e) => EvgError::from(e),
        _ => EvgError::Unauthorized("Your session has ended; please log in again.".into()),
    })?;
    if let (Some(lat), Some(lon)) = (meta.lat, meta.lon) {
        if let Err(error) =
            crate::store::locations::record(&state.db, &identity.user.id, lat, lon).await
        {
            tracing::warn!(%error, "could not record the caller's location");
        }
    }
    Ok(identity)
}

/// An EVG amount from its string: positive, integral in v1, at most the configured maximum.
pub fn parse_credits(state: &AppState, path: &str, raw: &str) -> Result<Money, EvgError> {
    let invalid = |msg: &str| EvgError::invalid(path, msg);
    let amount = actors::money::parse_plain_decimal(raw.trim())
        .ok_or_else(|| invalid("must be a number of credits, as a string"))?;
    if amount <= Decimal::ZERO {
        return Err(invalid("must be greater than zero"));
    }
    if amount.fract() != Decimal::ZERO {
        return Err(invalid("must be a whole number of credits"));
    }
    if amount > Decimal::from(state.settings.amount_max) {
        return Err(EvgError::invalid(
            path,
            format!("must be at most {}", state.settings.amount_max),
        ));
    }
    Money::new(amount, Currency::EVG).map_err(|e| invalid(&e.to_string()))
}

/// An Evergreen user id (`facebook:<id>`, `qr:<code>`, or `user:<uuid>` for accounts with
/// neither) resolved to the node's user id.
/// Hits are cached (`AppState::user_ids`).
pub async fn resolve_user(state: &AppState, evg_id: &str) -> Result<Option<String>, EvgError> {
    if evg_id.len() > 256 {
        return Ok(None);
    }
    if let Some(user_id) = state.user_ids.get(evg_id) {
        return Ok(Some(user_id));
    }
    let found = if let Some(id) = evg_id.strip_prefix("user:") {
        users::by_id(&state.db, id)
            .await?
            .filter(|u| u.is_active)
            .map(|u| u.id)
    } else {
        external_ids::user_of(&state.db, evg_id).await?
    };
    if let Some(user_id) = &found {
        state.user_ids.insert(evg_id.to_owned(), user_id.clone());
    }
    Ok(found)
}

/// The Evergreen id a user is shown by.
pub async fn evg_id(state: &AppState, user_id: &str) -> Result<String, EvgError> {
    let ids = external_ids::of_user(&state.db, user_id).await?;
    Ok(ids
        .into_iter()
        .next()
        .unwrap_or_else(|| format!("user:{user_id}")))
}

/// A wallet answer as Evergreen's `status` and `status_message`.
pub fn outcome(reply: &Reply) -> (&'static str, Option<String>) {
    match reply {
        Reply::Done { .. } => ("success", None),
        Reply::Refused { refusal, .. } => match refusal {
            Refusal::InsufficientFunds {
                available,
                currency,
            } => (
                "insufficient_funds",
                Some(format!(
                    "Your balance is only {} {currency}; you cannot make this payment.",
                    actors::money::decimal(*available, *currency).normalize()
                )),
            ),
            Refusal::NoAccount { currency } => (
                "insufficient_funds",
                Some(format!("You have no {currency} balance.")),
            ),
            Refusal::WrongPin { remaining } => (
                "wrong_pin",
                Some(format!(
                    "Wrong PIN. {remaining} attempt(s) left before PIN payments lock."
                )),
            ),
            Refusal::PinLocked { until_ms } => (
                "wrong_pin",
                Some(format!(
                    "Too many wrong PINs: PIN payments are locked until {}.",
                    crate::api::marketplace::envelope::iso(*until_ms)
                )),
            ),
            Refusal::PinNotSet => ("wrong_pin", Some("No PIN is set for this account.".into())),
            Refusal::AlreadyPaid => (
                "already_paid",
                Some("The payment has already been sent!".into()),
            ),
            Refusal::RequestClosed { status } => (
                "error",
                Some(format!("The request is already {}.", status.as_str())),
            ),
            Refusal::UnknownRequest => ("error", Some("There is no such payment request.".into())),
            Refusal::RequestMismatch => (
                "error",
                Some("The payment does not match the request it answers.".into()),
            ),
            Refusal::NotRequester => (
                "error",
                Some("Only the user who made the request can cancel it.".into()),
            ),
            Refusal::SelfPayment => ("invalid_account", Some("You cannot pay yourself.".into())),
            Refusal::UnknownHold | Refusal::DuplicateId => ("error", None),
        },
    }
}

/// The usual answer of a wallet call: `{meta, status, status_message?}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StatusAnswer {
    pub meta: ResponseMeta,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
}

impl StatusAnswer {
    pub fn of(reply: &Reply) -> Self {
        let (status, status_message) = outcome(reply);
        StatusAnswer {
            meta: ResponseMeta::with_balances(reply.balances()),
            status,
            status_message,
        }
    }
}

/// Check a free-text field's length.
pub fn text(path: &str, value: &str, max: usize) -> Result<(), EvgError> {
    if value.chars().count() > max {
        return Err(EvgError::invalid(
            path,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// The state of a request id for a call that is not a wallet command.
pub enum Claim {
    /// First time: run the call, then [`finish`] (or [`abandon`] on failure).
    Fresh,
    /// Answered before: this is the stored answer.
    Answered(serde_json::Value),
}

/// Claim `meta.request_id` within `scope` for a call that is not a wallet command. A repeat
/// gets the stored answer; a concurrent repeat gets 409 (retry); the same id with different
/// parameters gets 400.
pub async fn claim(
    state: &AppState,
    scope: &str,
    meta: &Meta,
    fingerprint: &str,
) -> Result<Claim, EvgError> {
    if external_ids::store_answer(&state.db, scope, &meta.request_id, fingerprint, "").await? {
        return Ok(Claim::Fresh);
    }
    match external_ids::stored_answer(&state.db, scope, &meta.request_id).await? {
        Some((stored, _)) if stored != fingerprint => Err(EvgError::invalid(
            "meta.request_id",
            "this request_id was already used for a different request",
        )),
        Some((_, body)) if body.is_empty() => Err(EvgError::InProgress),
        Some((_, body)) => serde_json::from_str(&body)
            .map(Claim::Answered)
            .map_err(|e| EvgError::internal(&e)),
        // Released between the two statements by a failed attempt: let the client retry.
        None => Err(EvgError::InProgress),
    }
}

/// Store the answer of a claimed call.
pub async fn finish(
    state: &AppState,
    scope: &str,
    meta: &Meta,
    answer: &serde_json::Value,
) -> Result<(), EvgError> {
    external_ids::complete_answer(&state.db, scope, &meta.request_id, &answer.to_string()).await?;
    Ok(())
}

/// Release a claim whose call failed before changing anything.
pub async fn abandon(state: &AppState, scope: &str, meta: &Meta) {
    if let Err(error) = external_ids::release_answer(&state.db, scope, &meta.request_id).await {
        tracing::error!(%error, "could not release a request id");
    }
}
