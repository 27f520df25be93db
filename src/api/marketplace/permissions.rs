//! The common permission routes of every marketplace service (`GET /permissions`,
//! `GET /permissions/:permissionName`, seed L2529-2617). The node keeps no per-user or
//! per-object grants: permissions come from roles, as the table below says, and are
//! answered as the document's `givenPermissions` records.

use actix_web::http::StatusCode;
use actix_web::{get, web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::error::ShortErrorBody;
use super::MarketError;
use crate::api::AppState;
use crate::auth::{token_from_request, AuthError, Identity};
use crate::store::users::Role;

/// What administrators may do beyond every user's own resources. Users hold none of these.
pub const ADMIN_PERMISSIONS: &[&str] = &[
    "adminPanel.access",
    "apps.manage",
    "messages.moderate",
    "notifications.send",
    "reports.moderate",
    "threads.readAll",
];

fn granted(role: Role) -> &'static [&'static str] {
    if role.is_admin() {
        ADMIN_PERMISSIONS
    } else {
        &[]
    }
}

/// One `givenPermissions` record.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GivenPermission {
    /// `role:<roleId>:<permissionName>`: a grant by role.
    pub id: String,
    pub permission_name: String,
    pub role_id: Option<String>,
    pub subject_user_id: Option<String>,
    pub subject_user_group_id: Option<String>,
    pub object_id: Option<String>,
    pub can_do: bool,
    pub tenant_codename: Option<String>,
}

/// The answer of a permission check.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeCheck {
    pub can_do: bool,
    /// Object ids the answer does not hold for (none: the node grants by role only).
    pub exceptions: Vec<String>,
}

async fn session(req: &HttpRequest, state: &AppState) -> Result<Identity, MarketError> {
    let no_login = || MarketError::short(StatusCode::UNAUTHORIZED, "No login found");
    let token = token_from_request(req).ok_or_else(no_login)?;
    match state.auth.authenticate(&token).await {
        Ok(identity) => Ok(identity),
        Err(AuthError::Store(e)) => Err(e.into()),
        Err(_) => Err(no_login()),
    }
}

/// Every permission the caller holds, as `givenPermissions` records (a bare array).
#[utoipa::path(
    tag = "auth",
    responses((status = 200, body = [GivenPermission]), (status = 401, body = ShortErrorBody))
)]
#[get("/permissions")]
pub async fn permissions(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    let me = session(&req, &state).await?;
    let role = me.role();
    let records: Vec<GivenPermission> = granted(role)
        .iter()
        .map(|name| GivenPermission {
            id: format!("role:{}:{name}", role.as_str()),
            permission_name: (*name).to_owned(),
            role_id: Some(role.as_str().to_owned()),
            subject_user_id: None,
            subject_user_group_id: None,
            object_id: None,
            can_do: true,
            tenant_codename: None,
        })
        .collect();
    Ok(HttpResponse::Ok().json(records))
}

/// Whether the caller holds one permission.
#[utoipa::path(
    tag = "auth",
    responses((status = 200, body = ScopeCheck), (status = 401, body = ShortErrorBody))
)]
#[get("/permissions/{permissionName}")]
pub async fn permission_scope(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = session(&req, &state).await?;
    let can_do = granted(me.role()).contains(&path.as_str());
    Ok(HttpResponse::Ok().json(ScopeCheck {
        can_do,
        exceptions: Vec::new(),
    }))
}
