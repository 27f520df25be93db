//! The marketplace error shape (seed L265-279) and its short variant used by the session
//! routes (`{"status":"ERR","message":...}`, L2029-2032).

use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::auth::AuthError;
use crate::store::StoreError;

/// A marketplace error answer.
#[derive(Debug)]
pub struct MarketError {
    pub status: StatusCode,
    /// A message key such as `errMsg_emailIsRequired`.
    pub message: String,
    /// A human-readable explanation; never carries internals of unexpected failures.
    pub detail: String,
    /// The short `{"status":"ERR","message":...}` variant.
    pub short: bool,
}

/// The standard error body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Always "ERR".
    #[schema(example = "ERR")]
    pub result: &'static str,
    /// The HTTP status.
    #[schema(example = 400)]
    pub status: u16,
    /// A message key.
    #[schema(example = "errMsg_emailIsRequired")]
    pub message: String,
    #[serde(rename = "errCode")]
    #[schema(example = 400)]
    pub err_code: u16,
    /// When, ISO-8601.
    pub date: String,
    pub detail: String,
}

/// The short error body of the session routes.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ShortErrorBody {
    #[schema(example = "ERR")]
    pub status: &'static str,
    #[schema(example = "No login found")]
    pub message: String,
}

impl MarketError {
    pub fn new(status: StatusCode, message: impl Into<String>, detail: impl Into<String>) -> Self {
        MarketError {
            status,
            message: message.into(),
            detail: detail.into(),
            short: false,
        }
    }

    pub fn bad_request(message: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "errMsg_notAuthenticated", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "errMsg_forbidden", detail)
    }

    pub fn not_found(message: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message, detail)
    }

    pub fn conflict(message: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message, detail)
    }

    /// An unexpected failure: the cause goes to the log, the client gets an opaque answer.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "request failed unexpectedly");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "errMsg_internalError",
            "an unexpected error occurred; nothing was changed",
        )
    }

    /// A change the database did not confirm: it may have been made.
    pub fn unconfirmed(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "a change was not confirmed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "errMsg_outcomeUnknown",
            "the database did not confirm this change, so it may have been made; read it back, \
             or repeat the request with the same Idempotency-Key, to learn its outcome",
        )
    }

    /// The short `{"status":"ERR","message":...}` variant.
    pub fn short(status: StatusCode, message: &str) -> Self {
        MarketError {
            status,
            message: message.into(),
            detail: String::new(),
            short: true,
        }
    }

    /// A JSON body that could not be read.
    pub fn from_json_error(error: &JsonPayloadError) -> Self {
        match error {
            JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
                Self::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "errMsg_bodyTooLarge",
                    error.to_string(),
                )
            }
            JsonPayloadError::ContentType => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "errMsg_contentTypeMustBeJson",
                "send the body as application/json",
            ),
            JsonPayloadError::Deserialize(inner) => {
                Self::bad_request("errMsg_invalidRequestBody", inner.to_string())
            }
            other => Self::bad_request("errMsg_invalidRequestBody", other.to_string()),
        }
    }
}

impl std::fmt::Display for MarketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

impl ResponseError for MarketError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.short {
            return response.json(ShortErrorBody {
                status: "ERR",
                message: self.message.clone(),
            });
        }
        response.json(ErrorBody {
            result: "ERR",
            status: self.status.as_u16(),
            message: self.message.clone(),
            err_code: self.status.as_u16(),
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            detail: self.detail.clone(),
        })
    }
}

impl From<StoreError> for MarketError {
    fn from(error: StoreError) -> Self {
        MarketError::internal(&error)
    }
}

impl From<AuthError> for MarketError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => MarketError::unauthorized("no access token was sent"),
            AuthError::Invalid => MarketError::unauthorized("the access token is not valid"),
            AuthError::SessionEnded => {
                MarketError::unauthorized("the session has expired or was logged out")
            }
            other => MarketError::internal(&other),
        }
    }
}
