//! register_device: log in (or link Facebook) with a Facebook access token, verified against
//! the Graph API at `FACEBOOK_GRAPH_URL`.
//!
//! The Facebook token is a secret: it is sent only to the configured Graph API, in the query
//! string of one request, and never logged — request errors are logged without their URL.

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{post, web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::super::{
    caller, check_meta, EvgError, EvgJson, InvalidBody, Meta, MetaOnly, ResponseMeta,
};
use crate::api::AppState;
use crate::store::{evergreen_history as store, external_ids, users};

/// The whole Graph API call, connection included, must answer within this.
const FACEBOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Establishing the connection to the Graph API must take at most this.
const FACEBOOK_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest Graph API answer read; a larger one counts as Facebook failing.
const FACEBOOK_BODY_BYTES_MAX: usize = 16 * 1024;
/// Longest Facebook access token accepted.
const FACEBOOK_TOKEN_CHARS_MAX: usize = 4096;
/// Most digits of a Facebook user id.
const FACEBOOK_ID_DIGITS_MAX: usize = 32;
/// Longest name taken from Facebook (the longest name `register_user` accepts).
const NAME_CHARS_MAX: usize = 100;

/// One HTTP client for every Graph API call, built on first use (it holds a connection
/// pool; the base URL is read from the node's settings on every call).
static GRAPH_CLIENT: OnceLock<reqwest::Client> = OnceLock::new();

fn graph_client() -> Result<&'static reqwest::Client, EvgError> {
    if let Some(client) = GRAPH_CLIENT.get() {
        return Ok(client);
    }
    let client = reqwest::Client::builder()
        .timeout(FACEBOOK_TIMEOUT)
        .connect_timeout(FACEBOOK_CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| EvgError::internal(&e.without_url()))?;
    Ok(GRAPH_CLIENT.get_or_init(|| client))
}

/// register_device: a Facebook login.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterDevice {
    /// `meta.evg_auth_token` is optional: with a live session, an unlinked Facebook id is
    /// linked to that session's account.
    pub meta: Meta,
    /// `facebook:<facebook user id>` (digits).
    pub user_id: String,
    /// The access token the app received from Facebook.
    pub facebook_auth_token: String,
}

impl std::fmt::Debug for RegisterDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The Facebook token is a secret.
        f.debug_struct("RegisterDevice")
            .field("meta", &self.meta)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeviceAnswer {
    pub meta: ResponseMeta,
    /// `authorized` or `unauthorized`.
    pub status: &'static str,
    /// A new session's token, when authorized.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evg_auth_token: Option<String>,
    /// The account's name, when authorized.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What the Graph API said about a token.
enum Verdict {
    /// The token is valid and belongs to this Facebook user.
    Valid { id: String, name: String },
    /// Facebook refused the token (invalid, expired, revoked).
    Refused,
    /// Facebook did not answer usefully (down, slow, unexpected answer).
    Unavailable,
}

/// Ask the Graph API at `base` whose token this is.
async fn verify(base: &str, token: &str) -> Result<Verdict, EvgError> {
    let url = format!("{}/me", base.trim_end_matches('/'));
    let sent = graph_client()?
        .get(url)
        .query(&[("fields", "id,name"), ("access_token", token)])
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(error = %error.without_url(), "the Facebook Graph API did not answer");
            return Ok(Verdict::Unavailable);
        }
    };
    let status = response.status();
    if matches!(status.as_u16(), 400 | 401 | 403) {
        return Ok(Verdict::Refused);
    }
    if !status.is_success() {
        tracing::warn!(%status, "the Facebook Graph API failed");
        return Ok(Verdict::Unavailable);
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= FACEBOOK_BODY_BYTES_MAX => {
                body.extend_from_slice(&chunk);
            }
            Ok(Some(_)) => {
                tracing::warn!("the Facebook Graph API answer is too large");
                return Ok(Verdict::Unavailable);
            }
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(error = %error.without_url(), "reading the Facebook Graph API answer failed");
                return Ok(Verdict::Unavailable);
            }
        }
    }
    let me: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let id = match &me["id"] {
        serde_json::Value::String(id) => Some(id.clone()),
        serde_json::Value::Number(id) => Some(id.to_string()),
        _ => None,
    };
    let Some(id) = id else {
        tracing::warn!("the Facebook Graph API answer has no id");
        return Ok(Verdict::Unavailable);
    };
    let name = me["name"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .chars()
        .take(NAME_CHARS_MAX)
        .collect();
    Ok(Verdict::Valid { id, name })
}

/// The Facebook user id of `facebook:<digits>`.
fn facebook_id(user_id: &str) -> Result<&str, EvgError> {
    user_id
        .strip_prefix("facebook:")
        .filter(|id| {
            !id.is_empty()
                && id.len() <= FACEBOOK_ID_DIGITS_MAX
                && id.bytes().all(|b| b.is_ascii_digit())
        })
        .ok_or_else(|| EvgError::invalid("user_id", "must be facebook:<facebook user id, digits>"))
}

fn valid_token(token: &str) -> Result<(), EvgError> {
    let ok = !token.is_empty()
        && token.len() <= FACEBOOK_TOKEN_CHARS_MAX
        && token.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(EvgError::invalid(
            "facebook_auth_token",
            format!("must be 1 to {FACEBOOK_TOKEN_CHARS_MAX} printable ASCII characters"),
        ))
    }
}

/// 401 `{meta: {status: unauthorized, message, next_step}, status: "unauthorized"}`.
fn unauthorized(message: &str, next_step: &'static str) -> HttpResponse {
    HttpResponse::Unauthorized().json(DeviceAnswer {
        meta: ResponseMeta {
            status: "unauthorized",
            message: Some(message.to_owned()),
            next_step: Some(next_step),
            ..ResponseMeta::authorized()
        },
        status: "unauthorized",
        evg_auth_token: None,
        name: None,
    })
}

/// A new session for `user`: the authorized answer.
async fn authorized(state: &AppState, user: users::User) -> Result<HttpResponse, EvgError> {
    let login = state
        .auth
        .start_session(user)
        .await
        .map_err(|e| EvgError::internal(&e))?;
    Ok(HttpResponse::Ok().json(DeviceAnswer {
        meta: ResponseMeta::authorized(),
        status: "authorized",
        evg_auth_token: Some(login.token),
        name: Some(login.user.fullname),
    }))
}

/// Log in with the account a Facebook id is linked to.
async fn log_in(state: &AppState, user_id: &str) -> Result<HttpResponse, EvgError> {
    match users::by_id(&state.db, user_id).await? {
        Some(user) if user.is_active => {
            tracing::info!(user_id = %user.id, "facebook login");
            authorized(state, user).await
        }
        _ => Ok(unauthorized("This account is closed.", "logout")),
    }
}

/// Log in with Facebook. `user_id` is `facebook:<id>` (400 otherwise) and
/// `facebook_auth_token` the app's Facebook access token (1 to 4096 printable ASCII
/// characters). The node asks `GET {FACEBOOK_GRAPH_URL}/me?fields=id,name&access_token=…`
/// (10 s timeout); the token must belong to that Facebook id. Then:
/// - the Facebook id is linked to an account: a new session for it — 200
///   `{meta, status: "authorized", evg_auth_token, name}`;
/// - it is not linked and `meta.evg_auth_token` is a live session: the Facebook id is linked
///   to that account (given the Facebook name if it has none) and a new session answered the
///   same way; an account already linked to another Facebook id is 400 `user_id`;
/// - it is not linked and there is no session: accounts are created by `register_user` (it
///   needs an email, which Facebook logins do not give), so the answer is 401
///   `{meta: {status: "unauthorized", next_step: "register"}, status: "unauthorized"}`.
///
/// A token Facebook refuses, or that belongs to another Facebook id, is 401 with
/// `next_step: "logout"` (also for a closed account, or an expired session when linking).
/// When Facebook cannot be reached or answers unexpectedly: 503 `meta.status = "error"`,
/// retry. A repeated call verifies the token again and answers the same account with a new
/// token; a Facebook id is never linked twice.
#[utoipa::path(
    tag = "evergreen",
    request_body = RegisterDevice,
    responses(
        (status = 200, body = DeviceAnswer, example = json!({
            "meta": {"status": "authorized"}, "status": "authorized",
            "evg_auth_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9…", "name": "Joel Dietz"
        })),
        (status = 400, body = InvalidBody, example = json!({"path": "user_id", "msg": "must be facebook:<facebook user id, digits>"})),
        (status = 401, body = DeviceAnswer, example = json!({
            "meta": {"status": "unauthorized", "message": "Register first, then link Facebook while logged in.", "next_step": "register"},
            "status": "unauthorized"
        })),
        (status = 503, body = MetaOnly, description = "Facebook could not be reached: retry"),
    )
)]
#[post("/register_device")]
pub async fn register_device(
    state: web::Data<AppState>,
    body: EvgJson<RegisterDevice>,
) -> Result<HttpResponse, EvgError> {
    let body = body.0;
    check_meta(&state, &body.meta)?;
    let claimed = facebook_id(&body.user_id)?;
    valid_token(&body.facebook_auth_token)?;
    let verdict = verify(
        &state.settings.facebook_graph_url,
        &body.facebook_auth_token,
    )
    .await?;
    let facebook_name = match verdict {
        Verdict::Valid { id, name } if id == claimed => name,
        Verdict::Valid { .. } | Verdict::Refused => {
            return Ok(unauthorized(
                "Facebook did not confirm this login; please log in again.",
                "logout",
            ))
        }
        Verdict::Unavailable => {
            return Ok(HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
                .insert_header(("Retry-After", "1"))
                .json(MetaOnly {
                    meta: ResponseMeta {
                        status: "error",
                        message: Some("Facebook could not be reached; please try again.".into()),
                        ..ResponseMeta::authorized()
                    },
                }))
        }
    };
    let external_id = format!("facebook:{claimed}");
    if let Some(owner) = external_ids::user_of(&state.db, &external_id).await? {
        return log_in(&state, &owner).await;
    }
    let has_session = body
        .meta
        .evg_auth_token
        .as_deref()
        .is_some_and(|t| !t.is_empty());
    if !has_session {
        return Ok(unauthorized(
            "Register first, then link Facebook while logged in.",
            "register",
        ));
    }
    let me = caller(&state, &body.meta).await?;
    let linked = external_ids::of_user(&state.db, &me.user.id).await?;
    if linked.contains(&external_id) {
        // Linked by a concurrent call since the look-up above.
        return log_in(&state, &me.user.id).await;
    }
    if linked.iter().any(|id| id.starts_with("facebook:")) {
        return Err(EvgError::invalid(
            "user_id",
            "your account is linked to another Facebook account",
        ));
    }
    match store::link_facebook(&state.db, &external_id, &me.user.id, &facebook_name).await {
        Ok(()) => {
            tracing::info!(user_id = %me.user.id, "facebook linked");
            log_in(&state, &me.user.id).await
        }
        // Linked at the same moment by another call: log in to whoever holds it now; or this
        // account got another Facebook id at the same moment (one per account).
        Err(e) if e.is_unique_violation() => {
            match external_ids::user_of(&state.db, &external_id).await? {
                Some(owner) => log_in(&state, &owner).await,
                None => Err(EvgError::invalid(
                    "user_id",
                    "your account is linked to another Facebook account",
                )),
            }
        }
        Err(e) => Err(e.into()),
    }
}
