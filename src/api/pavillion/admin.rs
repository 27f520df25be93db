//! App administration: register apps, list them, read one with its revenue, rotate its key.
//! For users with the role `admin` or `superAdmin`, authenticated with the node's access token
//! wherever the marketplace accepts it (`Authorization: Bearer`, `airbnb3-access-token`).

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use actors::money::Currency;
use serde::{Deserialize, Serialize};

use super::{key_digest, new_api_key, no_store, valid_client_id, MessageBody, PavError, RawJson};
use crate::api::marketplace::envelope::iso;
use crate::api::AppState;
use crate::auth::{token_from_request, Identity};
use crate::store::apps;

/// Longest app name, in characters.
const NAME_CHARS_MAX: usize = 100;

/// Apps in one page of the list.
const APPS_PAGE_MAX: i64 = 100;

/// Registering an app.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewApp {
    /// 1 to 100 characters.
    #[schema(example = "Chat helper")]
    pub name: String,
    /// 1 to 64 of `A-Z a-z 0-9 . _ -`; a new UUID when omitted.
    #[serde(default)]
    pub client_id: Option<String>,
}

/// An app with its API key: the only answer that ever shows the key.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppWithKey {
    pub client_id: String,
    pub name: String,
    /// Send it as `x-api-key` on charges. Shown once; only its hash is stored.
    pub api_key: String,
}

/// A revenue balance.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revenue {
    #[schema(example = "USD")]
    pub currency: String,
    /// Minor units (cents for USD).
    #[schema(example = 1250)]
    pub amount_minor: i64,
    /// The same as a decimal of the currency.
    #[schema(example = "12.50")]
    pub amount: String,
}

/// An app as administrators see it (never its key).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppView {
    pub client_id: String,
    pub name: String,
    /// ISO-8601.
    pub created_at: String,
    /// The revenue account's balances; only on `GET /admin/apps/{clientId}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revenue: Option<Vec<Revenue>>,
}

impl AppView {
    fn of(app: &apps::App) -> Self {
        AppView {
            client_id: app.id.clone(),
            name: app.name.clone(),
            created_at: iso(app.created_at),
            revenue: None,
        }
    }
}

/// A page of apps.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AppList {
    pub apps: Vec<AppView>,
}

/// Paging of the list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// 1 to 100; 100 when omitted.
    pub limit: Option<i64>,
    /// Apps to skip, oldest first; 0 when omitted.
    pub offset: Option<i64>,
}

/// The caller, who must be an administrator: 401 without a live token, 403 for other roles.
async fn administrator(state: &AppState, req: &HttpRequest) -> Result<Identity, PavError> {
    let token = token_from_request(req).ok_or(PavError::InvalidCredentials)?;
    let identity = state.auth.authenticate(&token).await?;
    if !identity.role().is_admin() {
        return Err(PavError::Forbidden);
    }
    Ok(identity)
}

/// Register an app. 201 with its `clientId` and API key (shown this once).
#[utoipa::path(
    tag = "apps",
    operation_id = "admin_create_app",
    request_body = NewApp,
    security(("bearer" = [])),
    responses(
        (status = 201, body = AppWithKey),
        (status = 400, body = MessageBody, example = json!({"message": "Invalid request"})),
        (status = 401, body = MessageBody, example = json!({"message": "Invalid credentials"})),
        (status = 403, body = MessageBody, example = json!({"message": "Forbidden"})),
        (status = 409, body = MessageBody,
            example = json!({"message": "clientId is already registered"})),
        (status = 413, body = MessageBody, example = json!({"message": "Request body too large"})),
    )
)]
#[post("")]
#[tracing::instrument(name = "admin_create_app", skip_all)]
pub async fn create_app(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: RawJson,
) -> Result<HttpResponse, PavError> {
    let admin = administrator(&state, &req).await?;
    let body: NewApp = body.parse()?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > NAME_CHARS_MAX {
        return Err(PavError::Invalid);
    }
    let client_id = match body.client_id {
        Some(id) if valid_client_id(&id) => id,
        Some(_) => return Err(PavError::Invalid),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let api_key = new_api_key();
    let created = apps::insert(
        &state.db,
        &client_id,
        name,
        &key_digest(&api_key),
        &admin.user.id,
    )
    .await;
    let app = match created {
        Ok(app) => app,
        Err(e) if e.is_unique_violation() => return Err(PavError::Conflict),
        Err(e) => return Err(e.into()),
    };
    tracing::info!(app_id = %app.id, admin_id = %admin.user.id, "app registered");
    Ok(no_store(HttpResponse::Created().json(AppWithKey {
        client_id: app.id,
        name: app.name,
        api_key,
    })))
}

/// List apps, oldest first, without their keys.
#[utoipa::path(
    tag = "apps",
    operation_id = "admin_list_apps",
    params(Page),
    security(("bearer" = [])),
    responses(
        (status = 200, body = AppList),
        (status = 400, body = MessageBody, example = json!({"message": "Invalid request"})),
        (status = 401, body = MessageBody, example = json!({"message": "Invalid credentials"})),
        (status = 403, body = MessageBody, example = json!({"message": "Forbidden"})),
    )
)]
#[get("")]
#[tracing::instrument(name = "admin_list_apps", skip_all)]
pub async fn list_apps(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, PavError> {
    administrator(&state, &req).await?;
    let page: Page =
        serde_urlencoded::from_str(req.query_string()).map_err(|_| PavError::Invalid)?;
    let limit = page.limit.unwrap_or(APPS_PAGE_MAX);
    let offset = page.offset.unwrap_or(0);
    if !(1..=APPS_PAGE_MAX).contains(&limit) || offset < 0 {
        return Err(PavError::Invalid);
    }
    let apps = apps::list(&state.db, limit, offset).await?;
    Ok(HttpResponse::Ok().json(AppList {
        apps: apps.iter().map(AppView::of).collect(),
    }))
}

/// One app with its revenue balances.
#[utoipa::path(
    tag = "apps",
    operation_id = "admin_get_app",
    params(("clientId" = String, Path, description = "The app's client ID")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = AppView),
        (status = 401, body = MessageBody, example = json!({"message": "Invalid credentials"})),
        (status = 403, body = MessageBody, example = json!({"message": "Forbidden"})),
        (status = 404, body = MessageBody, example = json!({"message": "Not found"})),
    )
)]
#[get("/{clientId}")]
#[tracing::instrument(name = "admin_get_app", skip_all, fields(client_id = %path))]
pub async fn get_app(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PavError> {
    administrator(&state, &req).await?;
    let app = apps::by_id(&state.db, &path)
        .await?
        .ok_or(PavError::NotFound)?;
    let revenue = apps::revenue(&state.db, &app.id)
        .await?
        .into_iter()
        .map(|(code, minor)| {
            let amount = Currency::parse(&code)
                .map(|c| actors::money::decimal(minor, c).to_string())
                .unwrap_or_else(|| minor.to_string());
            Revenue {
                currency: code,
                amount_minor: minor,
                amount,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(AppView {
        revenue: Some(revenue),
        ..AppView::of(&app)
    }))
}

/// Replace the app's API key: the old key stops working at once; the new one is shown once.
#[utoipa::path(
    tag = "apps",
    operation_id = "admin_rotate_key",
    params(("clientId" = String, Path, description = "The app's client ID")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = AppWithKey),
        (status = 401, body = MessageBody, example = json!({"message": "Invalid credentials"})),
        (status = 403, body = MessageBody, example = json!({"message": "Forbidden"})),
        (status = 404, body = MessageBody, example = json!({"message": "Not found"})),
    )
)]
#[post("/{clientId}/key")]
#[tracing::instrument(name = "admin_rotate_app_key", skip_all, fields(client_id = %path))]
pub async fn rotate_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PavError> {
    let admin = administrator(&state, &req).await?;
    let app = apps::by_id(&state.db, &path)
        .await?
        .ok_or(PavError::NotFound)?;
    let api_key = new_api_key();
    if !apps::replace_key(&state.db, &app.id, &key_digest(&api_key)).await? {
        return Err(PavError::NotFound);
    }
    tracing::info!(app_id = %app.id, admin_id = %admin.user.id, "app key rotated");
    Ok(no_store(HttpResponse::Ok().json(AppWithKey {
        client_id: app.id,
        name: app.name,
        api_key,
    })))
}
