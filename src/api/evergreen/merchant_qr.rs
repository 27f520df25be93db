//! QR cards: `issue_qr_cards` (a merchant gets fresh card codes to hand out) and `qr_status`
//! (what a scanned card is).
//!
//! A card's life: issued to a merchant (`qr_cards`), handed to a customer, registered by the
//! customer (`register_user` with `qr_code`, which links `qr:<code>` to the new user and sets
//! their PIN), then loaded (`make_payment` to `qr:<code>`) and spent at terminals
//! (`make_terminal_payment` with `payor: qr:<code>` and the PIN). A card nobody registered
//! cannot be loaded or charged: it has no owner and no PIN.

use actix_web::{post, web, HttpResponse};
use actors::money::Currency;
use actors::wallet::Command;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::super::{
    abandon, caller, check_meta, claim, credits, resolve_user, Claim, EvgError, EvgJson,
    InvalidBody, Meta, MetaOnly, ResponseMeta,
};
use super::{is_merchant, qr_code_of, stored_answer, QR_URL_PREFIX};
use crate::api::AppState;
use crate::store::evergreen_merchant::{self as store, Answer};
use crate::store::users;
use crate::wallets::fingerprint;

/// Most cards one `issue_qr_cards` call hands out.
const QR_CARDS_PER_CALL_MAX: u32 = 50;
/// Most cards a merchant may hold that nobody has registered yet.
const QR_CARDS_UNREGISTERED_MAX: i64 = 1_000;
/// Random bytes in a card code (16 hex characters).
const QR_CODE_BYTES: usize = 8;
/// Fresh sets of codes tried when one collides with an existing card (64 random bits: a
/// collision is already improbable, two in a row means something is wrong).
const QR_ISSUE_ATTEMPTS_MAX: usize = 3;
/// Longest scanned text `qr_status` accepts.
const QR_SCAN_CHARS_MAX: usize = 512;

/// A card code as stored and as `register_user` accepts it: 1 to 64 letters and digits.
fn well_formed_code(code: &str) -> bool {
    (1..=64).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn new_code() -> String {
    let mut bytes = [0u8; QR_CODE_BYTES];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// issue_qr_cards: fresh card codes for the calling merchant to hand out.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueQrCards {
    pub meta: Meta,
    /// How many cards, `"1"` to `"50"` (a string, like Evergreen's other counts); 1 when
    /// omitted.
    #[serde(default)]
    pub count: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IssuedCard {
    /// The card's code: 16 lowercase hex characters. The card's user id is `qr:<code>`.
    pub qr_code: String,
    /// What to print as the card's QR code: `https://qr.evr.gr/<code>`.
    pub url: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IssuedCards {
    pub meta: ResponseMeta,
    /// `success` or `error` (not a merchant, or too many unregistered cards).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The new cards (omitted on `error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_codes: Option<Vec<IssuedCard>>,
}

fn refused(message: &str) -> HttpResponse {
    HttpResponse::Ok().json(IssuedCards {
        meta: ResponseMeta::authorized(),
        status: "error",
        message: Some(message.to_owned()),
        qr_codes: None,
    })
}

fn count(raw: Option<&str>) -> Result<u32, EvgError> {
    let Some(raw) = raw else {
        return Ok(1);
    };
    raw.parse::<u32>()
        .ok()
        .filter(|n| {
            (1..=QR_CARDS_PER_CALL_MAX).contains(n) && raw.bytes().all(|b| b.is_ascii_digit())
        })
        .ok_or_else(|| {
            EvgError::invalid(
                "count",
                format!("must be a whole number from 1 to {QR_CARDS_PER_CALL_MAX}, as a string"),
            )
        })
}

/// Issue new QR cards to the caller, a merchant with their listing on, to hand out to
/// customers. Each code is 16 random lowercase hex characters, never issued before and no
/// user's card; print `url` as the card's QR code. A card is `not_registered` in `qr_status`
/// until a customer registers it (`register_user` with `qr_code`); only then can it be loaded
/// (`make_payment` to `qr:<code>`) and charged. A merchant holds at most 1000 cards nobody has
/// registered (`status: error` beyond). Idempotent by `meta.request_id`: a repeat answers the
/// same codes.
#[utoipa::path(
    tag = "evergreen",
    request_body = IssueQrCards,
    responses(
        (status = 200, body = IssuedCards, example = json!({"meta": {"status": "authorized"}, "status": "success",
            "qr_codes": [{"qr_code": "7f3a9c01d2e4b856", "url": "https://qr.evr.gr/7f3a9c01d2e4b856"}]})),
        (status = 400, body = InvalidBody, example = json!({"path": "count", "msg": "must be a whole number from 1 to 50, as a string"})),
        (status = 401, body = MetaOnly),
        (status = 409, body = MetaOnly, description = "the same request_id is being processed"),
    )
)]
#[post("/issue_qr_cards")]
pub async fn issue_qr_cards(
    state: web::Data<AppState>,
    body: EvgJson<IssueQrCards>,
) -> Result<HttpResponse, EvgError> {
    let body = body.0;
    let me = caller(&state, &body.meta).await?;
    let count = count(body.count.as_deref())?;
    if !is_merchant(&state, &me.user.id).await? {
        return Ok(refused(
            "Turn your merchant listing on (register_merchant) to hand out cards.",
        ));
    }
    let scope = format!("qr_cards:{}", me.user.id);
    let print = fingerprint("issue_qr_cards", &count);
    if let Claim::Answered(answer) = claim(&state, &scope, &body.meta, &print).await? {
        return Ok(stored_answer(&answer));
    }
    let issued = issue(&state, &me.user.id, count, &scope, &body.meta).await;
    match issued {
        Ok(Some(answer)) => {
            tracing::info!(merchant = %me.user.id, count, "QR cards issued");
            Ok(stored_answer(&answer))
        }
        Ok(None) => {
            abandon(&state, &scope, &body.meta).await;
            Ok(refused(&format!(
                "You already hold {QR_CARDS_UNREGISTERED_MAX} cards nobody has registered."
            )))
        }
        Err(error) => {
            abandon(&state, &scope, &body.meta).await;
            Err(error)
        }
    }
}

/// Record `count` fresh cards with the call's answer; `None` when the merchant would hold too
/// many unregistered cards.
async fn issue(
    state: &AppState,
    merchant: &str,
    count: u32,
    scope: &str,
    meta: &Meta,
) -> Result<Option<serde_json::Value>, EvgError> {
    let unregistered = store::qr_cards_unregistered(&state.db, merchant).await?;
    if unregistered + i64::from(count) > QR_CARDS_UNREGISTERED_MAX {
        return Ok(None);
    }
    for _ in 0..QR_ISSUE_ATTEMPTS_MAX {
        let codes: Vec<String> = (0..count).map(|_| new_code()).collect();
        let cards: Vec<IssuedCard> = codes
            .iter()
            .map(|code| IssuedCard {
                qr_code: code.clone(),
                url: format!("{QR_URL_PREFIX}{code}"),
            })
            .collect();
        let answer = json!({"status": "success", "qr_codes": cards});
        let stored = store::issue_qr_cards(
            &state.db,
            merchant,
            &codes,
            Answer {
                scope,
                request_id: &meta.request_id,
            },
            &answer.to_string(),
        )
        .await?;
        if stored {
            return Ok(Some(answer));
        }
        tracing::warn!("a new QR card code collided with an existing one; drawing again");
    }
    Err(EvgError::internal(&"QR card codes kept colliding"))
}

/// qr_status: what a scanned QR code is.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QrStatus {
    /// `evg_auth_token` is optional here: a customer's app asks before registering.
    pub meta: Meta,
    /// What the scanner decoded, as it is: `https://qr.evr.gr/<code>` or the bare code.
    pub qr_code: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct QrStatusAnswer {
    pub meta: ResponseMeta,
    /// `valid`, `not_registered` or `invalid`.
    pub status: &'static str,
    /// The card's available EVG (integral string). Only to a merchant or the card's owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
    /// Only to a merchant or the card's owner, when the user has a picture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The card owner's name. Only to a merchant or the card's owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn status_only(status: &'static str) -> HttpResponse {
    HttpResponse::Ok().json(QrStatusAnswer {
        meta: ResponseMeta::authorized(),
        status,
        balance: None,
        image: None,
        name: None,
    })
}

/// What a scanned QR code is: `valid` — some user's card, which can be loaded and charged;
/// `not_registered` — a card the server issued (`issue_qr_cards`) that nobody has registered
/// yet (register it with `register_user`'s `qr_code`); `invalid` — anything else (not a card
/// of this server). `qr_code` may be the URL printed on the card or the bare code.
///
/// The token is optional: without one (a customer about to register) the answer is the status
/// alone. With `valid`, a caller whose merchant listing is on, or the card's owner, also gets
/// `balance` (available EVG, from the owner's wallet), `name` and `image` (when there is one);
/// anyone else gets the status alone. An invalid token is 401.
#[utoipa::path(
    tag = "evergreen",
    request_body = QrStatus,
    responses(
        (status = 200, body = QrStatusAnswer, example = json!({"meta": {"status": "authorized"}, "status": "valid",
            "balance": "138", "name": "Joel Dietz"})),
        (status = 400, body = InvalidBody, example = json!({"path": "qr_code", "msg": "must be 1 to 512 characters"})),
        (status = 401, body = MetaOnly),
    )
)]
#[post("/qr_status")]
pub async fn qr_status(
    state: web::Data<AppState>,
    body: EvgJson<QrStatus>,
) -> Result<HttpResponse, EvgError> {
    let body = body.0;
    let signed_in = body
        .meta
        .evg_auth_token
        .as_deref()
        .is_some_and(|t| !t.is_empty());
    let me = if signed_in {
        Some(caller(&state, &body.meta).await?)
    } else {
        check_meta(&state, &body.meta)?;
        None
    };
    if body.qr_code.is_empty() || body.qr_code.chars().count() > QR_SCAN_CHARS_MAX {
        return Err(EvgError::invalid(
            "qr_code",
            format!("must be 1 to {QR_SCAN_CHARS_MAX} characters"),
        ));
    }
    let code = qr_code_of(&body.qr_code);
    if !well_formed_code(code) {
        return Ok(status_only("invalid"));
    }
    let Some(owner) = resolve_user(&state, &format!("qr:{code}")).await? else {
        let issued = store::qr_card_issued(&state.db, code).await?;
        return Ok(status_only(if issued {
            "not_registered"
        } else {
            "invalid"
        }));
    };
    let may_see = match &me {
        Some(me) => me.user.id == owner || is_merchant(&state, &me.user.id).await?,
        None => false,
    };
    if !may_see {
        return Ok(status_only("valid"));
    }
    let reply = state.wallets.ask(&owner, Command::Balances, None).await?;
    let available = reply
        .balances()
        .get(&Currency::EVG)
        .map_or(0, |(available, _)| *available);
    let user = users::by_id(&state.db, &owner).await?;
    Ok(HttpResponse::Ok().json(QrStatusAnswer {
        meta: ResponseMeta::authorized(),
        status: "valid",
        balance: Some(credits(available)),
        image: user
            .as_ref()
            .and_then(|u| u.avatar.clone())
            .filter(|a| !a.is_empty()),
        name: Some(user.map(|u| u.fullname).unwrap_or_default()),
    }))
}
