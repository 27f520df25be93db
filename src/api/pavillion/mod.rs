//! Pavillion (seed 000): pay-per-use charges by apps. Users sign up and log in through an app
//! (`clientId`); the app then charges them in cents, or records a message without a charge.
//! Administrators register apps and their API keys under `/admin/apps`.
//!
//! Decisions (see `docs/DECISIONS.md`, "Pavillion and apps"): every failure is
//! `{"message": …}`; the charge call is authenticated by the app's API key in `x-api-key`
//! and may name only users linked to the app; an `Idempotency-Key` header makes it safe to
//! retry; the records of a charge are claimed before the wallet decides and settled after its
//! durable answer.

pub mod accounts;
pub mod admin;
pub mod charge;

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use actors::ActorError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::AuthError;
use crate::store::StoreError;

/// The header that carries an app's API key on the charge call.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The header that makes a charge safe to retry (DESIGN.md section 4).
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Longest `clientId` accepted.
pub const CLIENT_ID_CHARS_MAX: usize = 64;

/// Register Pavillion's routes and the app administration routes.
///
/// The three Pavillion routes are registered one by one with their full paths rather than
/// under a `/api` scope: a scope would claim every path under `/api`, and Jarvis mounts
/// `/api/dev/connect` there too.
pub fn configure(cfg: &mut ServiceConfig<'_>) {
    cfg.service(accounts::signup)
        .service(accounts::login)
        .service(charge::charge)
        .service(
            scope::scope("/admin/apps")
                .service(admin::create_app)
                .service(admin::list_apps)
                .service(admin::get_app)
                .service(admin::rotate_key),
        );
}

/// Pavillion's body of every failure (and of the 402 without its ids).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageBody {
    #[schema(example = "Invalid request")]
    pub message: String,
}

/// A Pavillion failure, mapped to its status and `{"message": …}` body in one place.
#[derive(Debug)]
pub enum PavError {
    /// 400 `Invalid request`: malformed JSON, wrong types, unknown fields, bad values, an
    /// unknown `clientId` at signup/login, a user the app may not charge.
    Invalid,
    /// 401 `Invalid credentials`: wrong email/password, API key or token.
    InvalidCredentials,
    /// 403: a token of another user than the one named, or not an administrator.
    Forbidden,
    /// 404 `User <id> does not have an account in <CUR>`.
    NoAccount { user_id: String, currency: String },
    /// 404 on the admin routes: no such app.
    NotFound,
    /// 409 on the admin routes: the `clientId` is taken.
    Conflict,
    /// 413: the body is larger than `HTTP_BODY_BYTES_MAX`.
    TooLarge,
    /// 422: the `Idempotency-Key` was used before for a different request.
    KeyReused,
    /// 503 with `Retry-After`: a queue is full; retry (with the same key).
    Busy,
    /// 500 `Unknown API Error`; the cause went to the log.
    Internal,
}

impl PavError {
    /// An unexpected failure: the cause goes to the log, the client gets an opaque answer.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "pavillion request failed unexpectedly");
        PavError::Internal
    }

    fn message(&self) -> String {
        match self {
            PavError::Invalid => "Invalid request".into(),
            PavError::InvalidCredentials => "Invalid credentials".into(),
            PavError::Forbidden => "Forbidden".into(),
            PavError::NoAccount { user_id, currency } => {
                format!("User {user_id} does not have an account in {currency}")
            }
            PavError::NotFound => "Not found".into(),
            PavError::Conflict => "clientId is already registered".into(),
            PavError::TooLarge => "Request body too large".into(),
            PavError::KeyReused => {
                "Idempotency-Key was already used for a different request".into()
            }
            PavError::Busy | PavError::Internal => "Unknown API Error".into(),
        }
    }
}

impl std::fmt::Display for PavError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status_code(), self.message())
    }
}

impl ResponseError for PavError {
    fn status_code(&self) -> StatusCode {
        match self {
            PavError::Invalid => StatusCode::BAD_REQUEST,
            PavError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            PavError::Forbidden => StatusCode::FORBIDDEN,
            PavError::NoAccount { .. } | PavError::NotFound => StatusCode::NOT_FOUND,
            PavError::Conflict => StatusCode::CONFLICT,
            PavError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            PavError::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            PavError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            PavError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, PavError::Busy) {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        response.json(MessageBody {
            message: self.message(),
        })
    }
}

impl From<StoreError> for PavError {
    fn from(error: StoreError) -> Self {
        PavError::internal(&error)
    }
}

impl From<AuthError> for PavError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing | AuthError::Invalid | AuthError::SessionEnded => {
                PavError::InvalidCredentials
            }
            other => PavError::internal(&other),
        }
    }
}

impl From<ActorError> for PavError {
    fn from(error: ActorError) -> Self {
        match error {
            ActorError::Busy(_) | ActorError::Unavailable(_) | ActorError::ShuttingDown => {
                tracing::warn!(%error, "wallet unavailable");
                PavError::Busy
            }
            ActorError::KeyReused => PavError::KeyReused,
            // "Unknown API Error" claims nothing either way; the same Idempotency-Key again
            // answers whether an unconfirmed change was made.
            ActorError::NotStored(_) | ActorError::Unconfirmed(_) => PavError::internal(&error),
        }
    }
}

/// A request body, read whatever it holds and parsed by the handler when it is ready to:
/// the charge call checks the API key before it looks at the body. Reading is bounded by
/// the node's `PayloadConfig` (`HTTP_BODY_BYTES_MAX`).
pub struct RawJson {
    bytes: Result<web::Bytes, PavError>,
    is_json: bool,
}

impl FromRequest for RawJson {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = body.await.map_err(|error| {
                if error.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                    PavError::TooLarge
                } else {
                    tracing::debug!(%error, "request body could not be read");
                    PavError::Invalid
                }
            });
            Ok(RawJson { bytes, is_json })
        })
    }
}

impl RawJson {
    /// The body as `T`: `application/json`, well-formed, of the right types, no unknown fields.
    /// The parser's explanation is not logged: it may quote a value (a password).
    pub fn parse<T: DeserializeOwned>(self) -> Result<T, PavError> {
        let bytes = self.bytes?;
        if !self.is_json {
            return Err(PavError::Invalid);
        }
        serde_json::from_slice(&bytes).map_err(|error| {
            tracing::debug!(
                category = ?error.classify(),
                line = error.line(),
                column = error.column(),
                "request body refused"
            );
            PavError::Invalid
        })
    }
}

/// The digest an API key is stored as. The key holds 256 random bits, so a fast hash is
/// enough: nobody can search that space, and every charge call checks a key.
pub fn key_digest(api_key: &str) -> String {
    hex::encode(Sha256::digest(api_key.as_bytes()))
}

/// A new API key: `pvk_` and 32 random bytes in hex.
pub fn new_api_key() -> String {
    use rand::RngCore;
    let mut bytes = [0_u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("pvk_{}", hex::encode(bytes))
}

/// A `clientId` as the admin may choose it: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= CLIENT_ID_CHARS_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A response that carries a secret (a token, an API key): never cached.
pub fn no_store(mut response: HttpResponse) -> HttpResponse {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_random_and_digests_stable() {
        let (a, b) = (new_api_key(), new_api_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        assert_eq!(key_digest(&a), key_digest(&a));
        assert_ne!(key_digest(&a), key_digest(&b));
    }

    #[test]
    fn client_ids_are_bounded_and_plain() {
        assert!(valid_client_id("my-app_1.0"));
        assert!(valid_client_id("123e4567-e89b-12d3-a456-426614174000"));
        assert!(!valid_client_id(""));
        assert!(!valid_client_id("has space"));
        assert!(!valid_client_id("slash/y"));
        assert!(!valid_client_id(&"x".repeat(65)));
    }
}
