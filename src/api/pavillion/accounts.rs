//! Sign up and log in through an app. Users are the node's shared users (one identity across
//! every API); doing either through an app links the user to it, which is what lets that app
//! charge them.

use actix_web::{post, web, HttpResponse};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{no_store, MessageBody, PavError, RawJson, CLIENT_ID_CHARS_MAX};
use crate::api::AppState;
use crate::store::apps;
use crate::store::users::{self, NewUser, Role};

/// Input limits, in characters (the marketplace's registration limits).
const EMAIL_CHARS_MAX: usize = 254;
const PASSWORD_CHARS_MIN: usize = 8;
const PASSWORD_CHARS_MAX: usize = 128;

/// The body of signup and login.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Credentials {
    #[schema(example = "user@example.com")]
    pub email: String,
    #[schema(example = "ABCabc#$#$%123")]
    pub password: String,
    /// The app the user signs up or logs in through.
    #[schema(example = "123e4567-e89b-12d3-a456-426614174000")]
    pub client_id: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The answer of login.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LoggedIn {
    /// The user's id (the `userId` of charges).
    #[schema(example = "123e4567-e89b-12d3-a456-426614174000")]
    pub id: String,
    #[schema(example = "user@example.com")]
    pub email: String,
    /// The node's access token (a JWT, the same as the marketplace's and Evergreen's).
    pub token: String,
}

fn valid_email(email: &str) -> bool {
    email.chars().count() <= EMAIL_CHARS_MAX
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
}

fn valid_client_ref(client_id: &str) -> bool {
    !client_id.is_empty() && client_id.chars().count() <= CLIENT_ID_CHARS_MAX
}

/// The app named by `clientId`, or 400.
async fn app_of(state: &AppState, client_id: &str) -> Result<apps::App, PavError> {
    apps::by_id(&state.db, client_id)
        .await?
        .ok_or(PavError::Invalid)
}

/// Sign up through an app. 201 with no body: the user exists and is linked to the app.
///
/// An email that already has an account (any casing) is not an error when the password is
/// that account's: the account is linked to this app and the answer is 201, as for a new
/// account. With another password the answer is 400, like any invalid request.
#[utoipa::path(
    tag = "pavillion",
    operation_id = "pavillion_signup",
    request_body = Credentials,
    responses(
        (status = 201, description = "Signed up: redirect the user to the login page"),
        (status = 400, description = "a missing, malformed or unknown field, an invalid email, a password \
                           outside 8-128 characters, an unknown clientId, or an existing email \
                           with another password",
            body = MessageBody, example = json!({"message": "Invalid request"})),
        (status = 413, body = MessageBody, example = json!({"message": "Request body too large"})),
        (status = 500, body = MessageBody, example = json!({"message": "Unknown API Error"})),
    )
)]
#[post("/api/signup")]
#[tracing::instrument(name = "pavillion_signup", skip_all)]
pub async fn signup(state: web::Data<AppState>, body: RawJson) -> Result<HttpResponse, PavError> {
    let body: Credentials = body.parse()?;
    let email = body.email.trim();
    let password_chars = body.password.chars().count();
    if !valid_email(email)
        || !(PASSWORD_CHARS_MIN..=PASSWORD_CHARS_MAX).contains(&password_chars)
        || !valid_client_ref(&body.client_id)
    {
        return Err(PavError::Invalid);
    }
    let app = app_of(&state, &body.client_id).await?;
    let user_id = match existing_account(&state, email, &body.password).await? {
        Some(found) => found?,
        None => match create_account(&state, email, &body.password).await? {
            Some(id) => id,
            // Created by a concurrent signup with the same email since we looked.
            None => existing_account(&state, email, &body.password)
                .await?
                .ok_or(PavError::Invalid)??,
        },
    };
    apps::link_user(&state.db, &app.id, &user_id).await?;
    tracing::info!(app_id = %app.id, %user_id, "pavillion signup");
    Ok(HttpResponse::Created().finish())
}

/// For an email that has an account: `Some(Ok(id))` when the password is the account's,
/// `Some(Err(Invalid))` otherwise; `None` when the email has no account.
async fn existing_account(
    state: &AppState,
    email: &str,
    password: &str,
) -> Result<Option<Result<String, PavError>>, PavError> {
    let Some((user, hash)) = users::credentials_by_email(&state.db, email).await? else {
        return Ok(None);
    };
    let matched = state
        .auth
        .hasher
        .verify(SecretString::from(password.to_owned()), hash)
        .await
        .map_err(|e| PavError::internal(&e))?;
    Ok(Some(if matched && user.is_active {
        Ok(user.id)
    } else {
        Err(PavError::Invalid)
    }))
}

/// A new account with the role `user`; `None` when the email was taken meanwhile.
async fn create_account(
    state: &AppState,
    email: &str,
    password: &str,
) -> Result<Option<String>, PavError> {
    let hash = state
        .auth
        .hasher
        .hash(SecretString::from(password.to_owned()))
        .await
        .map_err(|e| PavError::internal(&e))?;
    // The marketplace shows a full name; the local part of the email stands in for it.
    let fullname = email.split('@').next().unwrap_or_default().to_owned();
    let created = users::insert(
        &state.db,
        NewUser {
            email: email.to_owned(),
            password_hash: Some(hash),
            fullname,
            avatar: None,
            role: Role::User,
            preferred_language: None,
            bio: None,
        },
    )
    .await;
    match created {
        Ok(user) => Ok(Some(user.id)),
        Err(e) if e.is_unique_violation() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Log in through an app. 200 with the user's id, email and the node's access token; the
/// user is linked to the app. Use the token as `Authorization: Bearer <token>`.
#[utoipa::path(
    tag = "pavillion",
    operation_id = "pavillion_login",
    request_body = Credentials,
    responses(
        (status = 200, body = LoggedIn),
        (status = 400, description = "a missing, malformed or unknown field, or an unknown clientId",
            body = MessageBody, example = json!({"message": "Invalid request"})),
        (status = 401, description = "wrong email or password (the answer does not say which)",
            body = MessageBody, example = json!({"message": "Invalid credentials"})),
        (status = 413, body = MessageBody, example = json!({"message": "Request body too large"})),
        (status = 500, body = MessageBody, example = json!({"message": "Unknown API Error"})),
    )
)]
#[post("/api/login")]
#[tracing::instrument(name = "pavillion_login", skip_all)]
pub async fn login(state: web::Data<AppState>, body: RawJson) -> Result<HttpResponse, PavError> {
    let body: Credentials = body.parse()?;
    let email = body.email.trim();
    if email.is_empty()
        || email.chars().count() > EMAIL_CHARS_MAX
        || body.password.is_empty()
        || body.password.chars().count() > PASSWORD_CHARS_MAX
        || !valid_client_ref(&body.client_id)
    {
        return Err(PavError::Invalid);
    }
    let app = app_of(&state, &body.client_id).await?;
    let opened = state
        .auth
        .login(email, SecretString::from(body.password))
        .await?
        .ok_or(PavError::InvalidCredentials)?;
    apps::link_user(&state.db, &app.id, &opened.user.id).await?;
    tracing::info!(
        app_id = %app.id,
        user_id = %opened.user.id,
        session_id = %opened.session.id,
        "pavillion login"
    );
    Ok(no_store(HttpResponse::Ok().json(LoggedIn {
        id: opened.user.id.clone(),
        email: opened.user.email.clone(),
        token: opened.token,
    })))
}
