//! items: a user's products (description and price), listed by anyone, changed by their owner.

use std::collections::HashSet;

use actix_web::{post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::super::{
    abandon, caller, claim, credits, parse_credits, resolve_user, Claim, EvgError, EvgJson,
    InvalidBody, Meta, MetaOnly, ResponseMeta,
};
use super::{canonical_user_id, stored_answer, user_id_shape};
use crate::api::AppState;
use crate::store::evergreen_merchant::{self as store, Answer, Item, ItemChange, ItemsRefused};
use crate::wallets::fingerprint;

/// Most items one user may have.
pub const ITEMS_PER_USER_MAX: i64 = 200;
/// Most changes in one call.
const ITEMS_PER_CALL_MAX: usize = 100;
/// Longest item description.
const ITEM_DESCRIPTION_CHARS_MAX: usize = 200;

/// items: list the caller's items, another user's (`payee`), or change the caller's (`items`).
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Items {
    pub meta: Meta,
    /// List this user's items instead (read-only): `facebook:…`, `qr:…` or `user:…`.
    #[serde(default)]
    pub payee: Option<String>,
    /// Changes to the caller's items, applied in order, all or none (at most 100).
    #[serde(default)]
    pub items: Option<Vec<ItemInput>>,
}

/// One change: no `id` creates (`description` and `amount` required); an `id` with
/// `description` and/or `amount` updates those fields; an `id` with `deleted: "true"` deletes.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    /// A server-assigned id of one of the caller's items.
    #[serde(default)]
    pub id: Option<String>,
    /// 1 to 200 characters.
    #[serde(default)]
    pub description: Option<String>,
    /// Whole credits, as a string (positive).
    #[serde(default)]
    pub amount: Option<String>,
    /// `"true"` deletes the item (only with `id`); `"false"` is the same as omitting it.
    #[serde(default)]
    pub deleted: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ItemOut {
    pub id: String,
    pub description: String,
    /// Whole credits, as a string.
    pub amount: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ItemsAnswer {
    pub meta: ResponseMeta,
    /// The owner's items, oldest first.
    pub items: Vec<ItemOut>,
}

fn out(items: &[Item]) -> Vec<ItemOut> {
    items
        .iter()
        .map(|item| ItemOut {
            id: item.id.to_string(),
            description: item.description.clone(),
            amount: credits(item.amount),
        })
        .collect()
}

fn listed(items: &[Item]) -> HttpResponse {
    HttpResponse::Ok().json(ItemsAnswer {
        meta: ResponseMeta::authorized(),
        items: out(items),
    })
}

/// An item id: one of ours is a positive integer; anything else names no item of the caller.
fn item_id(path: &str, raw: &str) -> Result<i64, EvgError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0 && raw.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| EvgError::invalid(path, "not one of your items"))
}

fn description(path: &str, raw: &str) -> Result<String, EvgError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.chars().count() > ITEM_DESCRIPTION_CHARS_MAX {
        return Err(EvgError::invalid(
            path,
            format!("must be 1 to {ITEM_DESCRIPTION_CHARS_MAX} characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// The changes a list of inputs asks for, or the first invalid field.
fn changes(state: &AppState, inputs: &[ItemInput]) -> Result<Vec<ItemChange>, EvgError> {
    if inputs.len() > ITEMS_PER_CALL_MAX {
        return Err(EvgError::invalid(
            "items",
            format!("at most {ITEMS_PER_CALL_MAX} changes per call"),
        ));
    }
    let mut seen = HashSet::new();
    let mut changes = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let path = |field: &str| format!("items[{i}].{field}");
        let deleted = match input.deleted.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(EvgError::invalid(
                    &path("deleted"),
                    "must be \"true\" or \"false\"",
                ))
            }
        };
        let id = match &input.id {
            Some(raw) => {
                let id = item_id(&path("id"), raw)?;
                if !seen.insert(id) {
                    return Err(EvgError::invalid(
                        &path("id"),
                        "this item is already changed by this call",
                    ));
                }
                Some(id)
            }
            None => None,
        };
        let text = match &input.description {
            Some(raw) => Some(description(&path("description"), raw)?),
            None => None,
        };
        let amount = match &input.amount {
            Some(raw) => Some(parse_credits(state, &path("amount"), raw)?.minor()),
            None => None,
        };
        let change = match (id, deleted) {
            (None, true) => {
                return Err(EvgError::invalid(&path("id"), "required to delete an item"))
            }
            (Some(id), true) => {
                if text.is_some() || amount.is_some() {
                    let field = if text.is_some() {
                        "description"
                    } else {
                        "amount"
                    };
                    return Err(EvgError::invalid(
                        &path(field),
                        "not allowed with deleted: \"true\"",
                    ));
                }
                ItemChange::Delete { id }
            }
            (None, false) => ItemChange::Create {
                description: text
                    .ok_or_else(|| EvgError::invalid(&path("description"), "required"))?,
                amount: amount.ok_or_else(|| EvgError::invalid(&path("amount"), "required"))?,
            },
            (Some(id), false) => {
                if text.is_none() && amount.is_none() {
                    return Err(EvgError::invalid(
                        &format!("items[{i}]"),
                        "send description and/or amount to update, or deleted: \"true\"",
                    ));
                }
                ItemChange::Update {
                    id,
                    description: text,
                    amount,
                }
            }
        };
        changes.push(change);
    }
    Ok(changes)
}

/// List or change items.
///
/// - `{meta}`: the caller's items.
/// - `{meta, payee}`: that user's items, read-only (400 `payee` when there is no such user).
/// - `{meta, items: [...]}`: change the caller's items, in order, all or none, then answer the
///   caller's whole list. `{description, amount}` creates an item (the server assigns its id);
///   `{id, description?, amount?}` updates the given fields; `{id, deleted: "true"}` deletes.
///   Items not named are kept. Only the owner changes their items: an id that is not one of
///   the caller's items is 400 `items[i].id`, and nothing is changed. A user has at most 200
///   items (400 `items`); a call makes at most 100 changes. Idempotent by `meta.request_id`: a
///   repeat answers the list as the first call left it.
///
/// Every form answers `{meta, items: [{id, description, amount}]}`, oldest first; amounts are
/// whole credits as strings.
#[utoipa::path(
    tag = "evergreen",
    operation_id = "evergreen_items",
    request_body = Items,
    responses(
        (status = 200, body = ItemsAnswer, example = json!({"meta": {"status": "authorized"},
            "items": [{"id": "42", "description": "description", "amount": "4"},
                      {"id": "43", "description": "unlucky number", "amount": "3"}]})),
        (status = 400, body = InvalidBody, example = json!({"path": "items[2].id", "msg": "not one of your items"})),
        (status = 401, body = MetaOnly),
        (status = 409, body = MetaOnly, description = "the same request_id is being processed"),
    )
)]
#[post("/items")]
pub async fn items_call(
    state: web::Data<AppState>,
    body: EvgJson<Items>,
) -> Result<HttpResponse, EvgError> {
    let body = body.0;
    let me = caller(&state, &body.meta).await?;
    match (&body.payee, &body.items) {
        (Some(_), Some(_)) => Err(EvgError::invalid(
            "payee",
            "items change only your own items: send payee alone to list theirs",
        )),
        (Some(payee), None) => {
            user_id_shape("payee", payee)?;
            let owner = resolve_user(&state, &canonical_user_id(payee))
                .await?
                .ok_or_else(|| EvgError::invalid("payee", "not a user"))?;
            let items = store::items_of(&state.db, &owner, ITEMS_PER_USER_MAX).await?;
            Ok(listed(&items))
        }
        (None, None) => {
            let items = store::items_of(&state.db, &me.user.id, ITEMS_PER_USER_MAX).await?;
            Ok(listed(&items))
        }
        (None, Some(inputs)) => change(&state, &me.user.id, &body.meta, inputs).await,
    }
}

async fn change(
    state: &AppState,
    user_id: &str,
    meta: &Meta,
    inputs: &[ItemInput],
) -> Result<HttpResponse, EvgError> {
    let changes = changes(state, inputs)?;
    let scope = format!("items:{user_id}");
    let print = fingerprint("items", &inputs);
    if let Claim::Answered(answer) = claim(state, &scope, meta, &print).await? {
        return Ok(stored_answer(&answer));
    }
    let render = |items: &[Item]| json!({"items": out(items)}).to_string();
    let result = store::change_items(
        &state.db,
        user_id,
        &changes,
        ITEMS_PER_USER_MAX,
        Answer {
            scope: &scope,
            request_id: &meta.request_id,
        },
        render,
    )
    .await;
    match result {
        // The same shape as a replay of the stored answer.
        Ok(Ok(items)) => Ok(stored_answer(&json!({"items": out(&items)}))),
        Ok(Err(refusal)) => {
            abandon(state, &scope, meta).await;
            Err(match refusal {
                ItemsRefused::UnknownItem { index } => {
                    EvgError::invalid(&format!("items[{index}].id"), "not one of your items")
                }
                ItemsRefused::TooMany { max } => {
                    EvgError::invalid("items", format!("at most {max} items per user"))
                }
            })
        }
        Err(error) => {
            abandon(state, &scope, meta).await;
            Err(error.into())
        }
    }
}
