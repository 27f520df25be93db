//! The auth service's routes that issue and check tokens (`shared/spec/airbnb-auth.md` 3.1,
//! 3.2, 3.4): register, login, logout, public key, relogin, current user.

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::envelope::{iso, Envelope};
use super::error::{ErrorBody, MarketError, ShortErrorBody};
use crate::api::AppState;
use crate::auth::{token_from_request, Identity, Login, TOKEN_HEADER};
use crate::store::users::{self, NewUser, Role, User};

/// Input limits, in characters.
const EMAIL_CHARS_MAX: usize = 254;
const PASSWORD_CHARS_MIN: usize = 8;
const PASSWORD_CHARS_MAX: usize = 128;
const FULLNAME_CHARS_MAX: usize = 100;
const AVATAR_CHARS_MAX: usize = 2048;
const LANGUAGE_CHARS_MAX: usize = 16;
const BIO_CHARS_MAX: usize = 2000;

/// A user as every marketplace answer shows it. The password (hash) never leaves the node.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub fullname: String,
    pub avatar: Option<String>,
    pub role_id: String,
    pub email_verified: bool,
    pub preferred_language: Option<String>,
    pub bio: Option<String>,
    pub is_active: bool,
    pub record_version: i64,
    pub created_at: String,
    pub updated_at: String,
    #[serde(rename = "_owner")]
    pub owner: Option<String>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id.clone(),
            email: u.email.clone(),
            fullname: u.fullname.clone(),
            avatar: u.avatar.clone(),
            role_id: u.role_id.clone(),
            email_verified: u.email_verified,
            preferred_language: u.preferred_language.clone(),
            bio: u.bio.clone(),
            is_active: u.is_active,
            record_version: u.record_version,
            created_at: iso(u.created_at),
            updated_at: iso(u.updated_at),
            owner: u.owner_id.clone(),
        }
    }
}

/// The session object of login, relogin and currentuser.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub session_id: String,
    pub user_id: String,
    pub email: String,
    pub fullname: String,
    pub avatar: Option<String>,
    pub role_id: String,
    pub email_verified: bool,
    /// Always null: the node is single-tenant.
    pub tenant_id: Option<String>,
    pub access_token: String,
    /// Seconds until the token expires.
    pub expires_in: i64,
    #[serde(rename = "sessionNeedsEmail2FA")]
    pub session_needs_email_2fa: bool,
    #[serde(rename = "sessionNeedsMobile2FA")]
    pub session_needs_mobile_2fa: bool,
}

impl SessionView {
    fn new(user: &User, session_id: &str, token: &str, expires_at_ms: i64) -> Self {
        SessionView {
            session_id: session_id.to_owned(),
            user_id: user.id.clone(),
            email: user.email.clone(),
            fullname: user.fullname.clone(),
            avatar: user.avatar.clone(),
            role_id: user.role_id.clone(),
            email_verified: user.email_verified,
            tenant_id: None,
            access_token: token.to_owned(),
            expires_in: ((expires_at_ms - crate::store::now_ms()) / 1000).max(0),
            session_needs_email_2fa: false,
            session_needs_mobile_2fa: false,
        }
    }
}

/// The user envelope of `registeruser`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserEnvelope {
    #[schema(example = "OK")]
    status: String,
    #[schema(example = 201)]
    status_code: u16,
    elapsed_ms: u64,
    user_id: Option<String>,
    session_id: Option<String>,
    request_id: String,
    #[schema(example = "user")]
    data_name: String,
    method: String,
    action: String,
    app_version: String,
    row_count: u64,
    user: UserView,
}

/// Self-registration (registerUser, L1150).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterUser {
    pub email: Option<String>,
    pub password: Option<String>,
    pub fullname: Option<String>,
    pub avatar: Option<String>,
    pub preferred_language: Option<String>,
    pub bio: Option<String>,
}

impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBody")
            .field("username", &self.username)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// Login (L1906-1942): `username` is the email; `email` may be sent instead; `username` wins.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub username: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
}

fn required<'a>(value: &'a Option<String>, field: &str) -> Result<&'a str, MarketError> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(MarketError::bad_request(
            format!("errMsg_{field}IsRequired"),
            format!("{field} is required"),
        )),
    }
}

fn at_most(value: Option<&str>, field: &str, max: usize) -> Result<(), MarketError> {
    match value {
        Some(v) if v.chars().count() > max => Err(MarketError::bad_request(
            format!("errMsg_{field}IsTooLong"),
            format!("{field} must be at most {max} characters"),
        )),
        _ => Ok(()),
    }
}

fn valid_email(email: &str) -> Result<(), MarketError> {
    at_most(Some(email), "email", EMAIL_CHARS_MAX)?;
    let shaped = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
    }) && !email.chars().any(char::is_whitespace);
    if shaped {
        Ok(())
    } else {
        Err(MarketError::bad_request(
            "errMsg_emailIsNotValid",
            "email must look like name@example.com",
        ))
    }
}

/// Register a user with the role `user`. 201 with the user; 400 on a missing or invalid field
/// or an unknown one; 409 when the email is taken (case-insensitive).
#[utoipa::path(
    tag = "auth",
    request_body = RegisterUser,
    responses(
        (status = 201, body = UserEnvelope),
        (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "email already registered"),
        (status = 413, body = ErrorBody),
    )
)]
#[post("/v1/registeruser")]
pub async fn register_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<super::body::Object<RegisterUser>>,
) -> Result<HttpResponse, MarketError> {
    let body = body.into_inner().0;
    let email = required(&body.email, "email")?;
    let password = required(&body.password, "password")?;
    let fullname = required(&body.fullname, "fullname")?;
    valid_email(email)?;
    let password_chars = password.chars().count();
    if !(PASSWORD_CHARS_MIN..=PASSWORD_CHARS_MAX).contains(&password_chars) {
        return Err(MarketError::bad_request(
            "errMsg_passwordIsNotValid",
            format!("password must be {PASSWORD_CHARS_MIN} to {PASSWORD_CHARS_MAX} characters"),
        ));
    }
    at_most(Some(fullname), "fullname", FULLNAME_CHARS_MAX)?;
    at_most(body.avatar.as_deref(), "avatar", AVATAR_CHARS_MAX)?;
    at_most(
        body.preferred_language.as_deref(),
        "preferredLanguage",
        LANGUAGE_CHARS_MAX,
    )?;
    at_most(body.bio.as_deref(), "bio", BIO_CHARS_MAX)?;
    let hash = state
        .auth
        .hasher
        .hash(SecretString::from(password.to_owned()))
        .await
        .map_err(|e| MarketError::internal(&e))?;
    let avatar = body
        .avatar
        .clone()
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| {
            format!(
                "https://avatars.example.invalid/identicon/{}.svg",
                uuid::Uuid::new_v4().simple()
            )
        });
    let created = users::insert(
        &state.db,
        NewUser {
            email: email.to_owned(),
            password_hash: Some(hash),
            fullname: fullname.to_owned(),
            avatar: Some(avatar),
            role: Role::User,
            preferred_language: body.preferred_language.clone(),
            bio: body.bio.clone(),
        },
    )
    .await;
    let user = match created {
        Ok(user) => user,
        Err(e) if e.is_unique_violation() => {
            return Err(MarketError::conflict(
                "errMsg_emailAlreadyRegistered",
                "an account with this email already exists",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(user_id = %user.id, "user registered");
    Ok(Envelope::new(&req, None, "user")
        .action("create")
        .one(UserView::from(&user)))
}

fn token_cookie(token: &str, max_age_secs: i64, secure: bool) -> Cookie<'static> {
    Cookie::build(TOKEN_HEADER, token.to_owned())
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(CookieDuration::seconds(max_age_secs))
        .finish()
}

fn session_response(state: &AppState, opened: &Login) -> HttpResponse {
    let view = SessionView::new(
        &opened.user,
        &opened.session.id,
        &opened.token,
        opened.session.expires_at,
    );
    HttpResponse::Ok()
        .insert_header((TOKEN_HEADER, opened.token.clone()))
        .cookie(token_cookie(
            &opened.token,
            view.expires_in,
            state.settings.cookie_secure,
        ))
        .json(view)
}

/// Log in with email and password. 200 with the session object, the token also in the
/// `airbnb3-access-token` header and an HTTP-only cookie; 400 without credentials; 401 when
/// they are wrong (the answer does not say whether the email exists).
#[utoipa::path(
    tag = "auth",
    request_body = LoginBody,
    responses(
        (status = 200, body = SessionView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
#[post("/login")]
pub async fn login(
    state: web::Data<AppState>,
    body: web::Json<super::body::Object<LoginBody>>,
) -> Result<HttpResponse, MarketError> {
    let body = body.into_inner().0;
    let email = match required(&body.username, "username") {
        Ok(username) => username.to_owned(),
        Err(_) => required(&body.email, "username").map(str::to_owned)?,
    };
    let password = required(&body.password, "password")?;
    if email.chars().count() > EMAIL_CHARS_MAX || password.chars().count() > PASSWORD_CHARS_MAX {
        return Err(MarketError::unauthorized("invalid username or password"));
    }
    let opened = state
        .auth
        .login(&email, SecretString::from(password.to_owned()))
        .await?
        .ok_or_else(|| MarketError::unauthorized("invalid username or password"))?;
    tracing::info!(user_id = %opened.user.id, session_id = %opened.session.id, "login");
    Ok(session_response(&state, &opened))
}

/// The answer of logout.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LoggedOut {
    #[schema(example = "OK")]
    status: &'static str,
    #[schema(example = "Logged out")]
    message: &'static str,
}

/// Log out: revoke the token's session (if it has a live one), clear the cookie, and close the
/// session's WebSocket connections. Always 200.
#[utoipa::path(tag = "auth", responses((status = 200, body = LoggedOut)))]
#[post("/logout")]
pub async fn logout(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(token) = token_from_request(&req) {
        if let Ok(identity) = state.auth.authenticate(&token).await {
            match state.auth.revoke(&identity.session.id).await {
                Ok(_) => {
                    state
                        .gateway
                        .session_revoked(&identity.user.id, &identity.session.id)
                        .await;
                    tracing::info!(session_id = %identity.session.id, "logout");
                }
                Err(error) => tracing::error!(%error, "logout: revoking the session failed"),
            }
        }
    }
    let mut cleared = token_cookie("", 0, state.settings.cookie_secure);
    cleared.make_removal();
    HttpResponse::Ok().cookie(cleared).json(LoggedOut {
        status: "OK",
        message: "Logged out",
    })
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct PublicKeyQuery {
    /// A key id; the current key when omitted.
    key_id: Option<String>,
}

/// The public key that verifies tokens.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicKey {
    key_id: String,
    /// SPKI PEM.
    key_data: String,
}

/// The public key that verifies access tokens (RS256), for other services. 404 for an unknown
/// `keyId`.
#[utoipa::path(
    tag = "auth",
    params(PublicKeyQuery),
    responses((status = 200, body = PublicKey), (status = 404, body = ErrorBody))
)]
#[get("/publickey")]
pub async fn publickey(
    state: web::Data<AppState>,
    query: web::Query<PublicKeyQuery>,
) -> Result<HttpResponse, MarketError> {
    let keys = &state.auth.keys;
    match query.key_id.as_deref() {
        Some(id) if id != keys.key_id => Err(MarketError::not_found(
            "errMsg_publicKeyNotFound",
            "no public key has this keyId",
        )),
        _ => Ok(HttpResponse::Ok().json(PublicKey {
            key_id: keys.key_id.clone(),
            key_data: keys.public_pem.clone(),
        })),
    }
}

async fn identity(req: &HttpRequest, state: &AppState) -> Result<Identity, crate::auth::AuthError> {
    let token = token_from_request(req).ok_or(crate::auth::AuthError::Missing)?;
    state.auth.authenticate(&token).await
}

/// Exchange a valid token for a new session and token, with the user reloaded from the
/// database. The old session is revoked. 401 `{"status":"ERR","message":"Cannot relogin"}`.
#[utoipa::path(
    tag = "auth",
    responses((status = 200, body = SessionView), (status = 401, body = ShortErrorBody))
)]
#[get("/relogin")]
pub async fn relogin(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    let cannot = || MarketError::short(StatusCode::UNAUTHORIZED, "Cannot relogin");
    let old = match identity(&req, &state).await {
        Ok(identity) => identity,
        Err(crate::auth::AuthError::Store(e)) => return Err(e.into()),
        Err(_) => return Err(cannot()),
    };
    let opened = state.auth.start_session(old.user.clone()).await?;
    state.auth.revoke(&old.session.id).await?;
    state
        .gateway
        .session_revoked(&old.user.id, &old.session.id)
        .await;
    Ok(session_response(&state, &opened))
}

/// The session of the presented token. 401 `{"status":"ERR","message":"No login found"}`.
/// Served by every marketplace service.
#[utoipa::path(
    tag = "auth",
    responses((status = 200, body = SessionView), (status = 401, body = ShortErrorBody))
)]
#[get("/currentuser")]
pub async fn currentuser(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    match identity(&req, &state).await {
        Ok(me) => Ok(HttpResponse::Ok().json(SessionView::new(
            &me.user,
            &me.session.id,
            &me.token,
            me.session.expires_at,
        ))),
        Err(crate::auth::AuthError::Store(e)) => Err(e.into()),
        Err(_) => Err(MarketError::short(
            StatusCode::UNAUTHORIZED,
            "No login found",
        )),
    }
}
