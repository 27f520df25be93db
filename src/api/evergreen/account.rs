//! register_user and account_info.

use actix_web::{post, web, HttpResponse};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    abandon, caller, check_meta, claim, finish, text, Claim, EvgError, EvgJson, InvalidBody, Meta,
    MetaOnly, ResponseMeta,
};
use crate::api::AppState;
use crate::store::{external_ids, users};

/// register_user: create an account with email, PIN and optional passphrase.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterUser {
    pub meta: Meta,
    /// `qr:<code>` to link at once (Facebook ids are linked by `register_device`).
    #[serde(default)]
    pub user_id: Option<String>,
    /// Five digits.
    pub pin: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Lowercase, uppercase and a non-letter; 8 to 128 characters.
    #[serde(default)]
    pub passphrase: Option<String>,
    pub email: String,
    /// A QR card code to associate with the new user.
    #[serde(default)]
    pub qr_code: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Registered {
    pub meta: ResponseMeta,
    /// `success` or `error`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evg_auth_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A PIN is exactly five digits.
pub fn valid_pin(path: &str, pin: &str) -> Result<(), EvgError> {
    if pin.len() == 5 && pin.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(EvgError::invalid(path, "must be five digits"))
    }
}

fn valid_passphrase(passphrase: &str) -> Result<(), EvgError> {
    let chars = passphrase.chars().count();
    let ok = (8..=128).contains(&chars)
        && passphrase.chars().any(char::is_lowercase)
        && passphrase.chars().any(char::is_uppercase)
        && passphrase.chars().any(|c| !c.is_alphabetic());
    if ok {
        Ok(())
    } else {
        Err(EvgError::invalid(
            "passphrase",
            "must be 8 to 128 characters with a lowercase, an uppercase and a non-letter character",
        ))
    }
}

fn valid_email(email: &str) -> Result<(), EvgError> {
    let ok = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.ends_with('.'));
    if ok {
        Ok(())
    } else {
        Err(EvgError::invalid("email", "must be an email address"))
    }
}

/// A QR card code: 1 to 64 letters and digits.
pub fn valid_qr_code(path: &str, code: &str) -> Result<(), EvgError> {
    if (1..=64).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(EvgError::invalid(
            path,
            "must be 1 to 64 letters and digits",
        ))
    }
}

/// Register a user: email (unique), a five-digit PIN (stored hashed), optional passphrase
/// (hashed; lets the user log in by email on the marketplace too), name and QR card. Answers
/// `status: success` with a new `evg_auth_token`, or `status: error` with a message when the
/// email or QR code is taken. A repeated `request_id` answers the same (with a fresh token).
#[utoipa::path(
    tag = "evergreen",
    request_body = RegisterUser,
    responses(
        (status = 200, body = Registered),
        (status = 400, body = InvalidBody),
        (status = 426, body = MetaOnly),
    )
)]
#[post("/register_user")]
pub async fn register_user(
    state: web::Data<AppState>,
    body: EvgJson<RegisterUser>,
) -> Result<HttpResponse, EvgError> {
    let body = body.0;
    check_meta(&state, &body.meta)?;
    valid_email(&body.email)?;
    super::account::valid_pin("pin", &body.pin)?;
    if let Some(passphrase) = &body.passphrase {
        valid_passphrase(passphrase)?;
    }
    if let Some(name) = &body.name {
        text("name", name, 100)?;
    }
    let qr = match (&body.user_id, &body.qr_code) {
        (Some(id), _) if !id.starts_with("qr:") => {
            return Err(EvgError::invalid(
                "user_id",
                "only qr:<code> can be given here; link Facebook with register_device",
            ))
        }
        (Some(id), Some(code)) if id.trim_start_matches("qr:") != code => {
            return Err(EvgError::invalid("qr_code", "does not match user_id"))
        }
        (Some(id), _) => Some(id.trim_start_matches("qr:").to_owned()),
        (None, code) => code.clone(),
    };
    if let Some(code) = &qr {
        valid_qr_code("qr_code", code)?;
    }
    let fingerprint = crate::wallets::fingerprint(
        "register_user",
        &json!([body.email.to_lowercase(), body.name, qr]),
    );
    let scope = format!("device:{}", body.meta.uuid);
    match claim(&state, &scope, &body.meta, &fingerprint).await? {
        Claim::Answered(answer) => return replay(&state, answer).await,
        Claim::Fresh => {}
    }
    let result = register(&state, &body, qr.as_deref()).await;
    match result {
        Ok((answer, response)) => {
            finish(&state, &scope, &body.meta, &answer).await?;
            Ok(response)
        }
        Err(error) => {
            abandon(&state, &scope, &body.meta).await;
            Err(error)
        }
    }
}

async fn register(
    state: &AppState,
    body: &RegisterUser,
    qr: Option<&str>,
) -> Result<(serde_json::Value, HttpResponse), EvgError> {
    let refuse = |message: &str| {
        let answer = json!({"status": "error", "message": message});
        let response = HttpResponse::Ok().json(Registered {
            meta: ResponseMeta::authorized(),
            status: "error",
            message: Some(message.to_owned()),
            evg_auth_token: None,
            email: None,
        });
        Ok((answer, response))
    };
    if let Some(code) = qr {
        if external_ids::user_of(&state.db, &format!("qr:{code}"))
            .await?
            .is_some()
        {
            return refuse("this QR code already belongs to a user");
        }
    }
    let password_hash = match &body.passphrase {
        Some(p) => Some(
            state
                .auth
                .hasher
                .hash(SecretString::from(p.clone()))
                .await
                .map_err(|e| EvgError::internal(&e))?,
        ),
        None => None,
    };
    let created = users::insert(
        &state.db,
        users::NewUser {
            email: body.email.clone(),
            password_hash,
            fullname: body.name.clone().unwrap_or_default(),
            avatar: None,
            role: users::Role::User,
            preferred_language: body.meta.language.clone(),
            bio: None,
        },
    )
    .await;
    let user = match created {
        Ok(user) => user,
        Err(e) if e.is_unique_violation() => return refuse("this email is already registered"),
        Err(e) => return Err(e.into()),
    };
    state
        .wallets
        .set_pin(&user.id, &body.pin)
        .await
        .map_err(EvgError::from)?;
    if let Some(code) = qr {
        if let Err(e) = external_ids::link(&state.db, &format!("qr:{code}"), &user.id).await {
            if !e.is_unique_violation() {
                return Err(e.into());
            }
        }
    }
    tracing::info!(user_id = %user.id, "evergreen user registered");
    let answer = json!({"status": "success", "user_id": user.id});
    let response = session_answer(state, user).await?;
    Ok((answer, response))
}

async fn session_answer(state: &AppState, user: users::User) -> Result<HttpResponse, EvgError> {
    let login = state
        .auth
        .start_session(user)
        .await
        .map_err(|e| EvgError::internal(&e))?;
    Ok(HttpResponse::Ok().json(Registered {
        meta: ResponseMeta::authorized(),
        status: "success",
        message: None,
        evg_auth_token: Some(login.token),
        email: Some(login.user.email),
    }))
}

/// The first answer again; a success gets a fresh token for the same user (tokens are not
/// stored).
async fn replay(state: &AppState, answer: serde_json::Value) -> Result<HttpResponse, EvgError> {
    if let Some(user_id) = answer["user_id"].as_str() {
        if let Some(user) = users::by_id(&state.db, user_id).await? {
            return session_answer(state, user).await;
        }
    }
    Ok(HttpResponse::Ok().json(Registered {
        meta: ResponseMeta::authorized(),
        status: "error",
        message: answer["message"].as_str().map(str::to_owned),
        evg_auth_token: None,
        email: None,
    }))
}

#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountInfo {
    pub meta: Meta,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AccountInfoAnswer {
    pub meta: ResponseMeta,
    pub name: String,
    /// Empty when none.
    pub email: String,
    /// `"true"` or `"false"`.
    pub is_merchant: String,
}

/// The caller's name, email, merchant flag and EVG balances (in `meta`).
#[utoipa::path(
    tag = "evergreen",
    request_body = AccountInfo,
    responses(
        (status = 200, body = AccountInfoAnswer),
        (status = 400, body = InvalidBody),
        (status = 401, body = MetaOnly),
    )
)]
#[post("/account_info")]
pub async fn account_info(
    state: web::Data<AppState>,
    body: EvgJson<AccountInfo>,
) -> Result<HttpResponse, EvgError> {
    let me = caller(&state, &body.0.meta).await?;
    let reply = state
        .wallets
        .ask(&me.user.id, actors::wallet::Command::Balances, None)
        .await?;
    let is_merchant = crate::store::merchants::is_merchant(&state.db, &me.user.id).await?;
    Ok(HttpResponse::Ok().json(AccountInfoAnswer {
        meta: ResponseMeta::with_balances(reply.balances()),
        name: me.user.fullname.clone(),
        email: me.user.email.clone(),
        is_merchant: is_merchant.to_string(),
    }))
}
