//! The property catalog's amenities and locale texts (`/propertycatalog-api`,
//! `shared/spec/airbnb-propertycatalog.md` §1.3, §1.4 and the ten routes of §2): the master
//! list of amenities, kept by admins and read by everyone, and the localized title and
//! description of a listing per language, kept by the listing's host (or an admin).
//! Decisions: `docs/DECISIONS.md` ("Review system, amenities and locale texts").

use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::{maybe_me, me, present};
use super::envelope::{iso, Envelope};
use super::error::ErrorBody;
use super::query::ListQuery;
use super::MarketError;
use crate::api::AppState;
use crate::auth::Identity;
use crate::store::catalog_texts::{
    self as store, AmenityRow, LocaleTextChanges, LocaleTextRow, NewAmenity, NewLocaleText, Written,
};
use crate::store::conversations::Filter;

/// The longest id accepted in a body or path.
pub(super) const ID_BYTES_MAX: usize = 64;
/// The longest amenity name.
const AMENITY_NAME_CHARS_MAX: usize = 100;
/// The longest icon URL.
const ICON_URL_CHARS_MAX: usize = 2048;
/// The longest localized title.
const TITLE_CHARS_MAX: usize = 200;
/// The longest localized description.
const DESCRIPTION_CHARS_MAX: usize = 10_000;
/// The longest language code (a BCP 47 tag such as `en`, `pt-BR`, `zh-Hant-TW`).
const LANGUAGE_CODE_CHARS_MAX: usize = 35;

pub(super) fn is_admin(identity: Option<&Identity>) -> bool {
    identity.is_some_and(|i| i.role().is_admin())
}

pub(super) fn check_id(field: &str, value: &str) -> Result<(), MarketError> {
    if value.is_empty() || value.len() > ID_BYTES_MAX {
        return Err(MarketError::bad_request(
            format!("errMsg_{field}IsNotValid"),
            format!("{field} must be 1 to {ID_BYTES_MAX} characters"),
        ));
    }
    Ok(())
}

/// A text of 1 to `max` characters (not blank).
pub(super) fn check_text(field: &str, value: &str, max: usize) -> Result<(), MarketError> {
    let chars = value.chars().count();
    if value.trim().is_empty() || chars > max {
        return Err(MarketError::bad_request(
            format!("errMsg_{field}IsNotValid"),
            format!("{field} must be 1 to {max} characters, not blank"),
        ));
    }
    Ok(())
}

/// The `isActive` filter every list takes: deleted rows are left out unless an admin asks
/// for them (`isActive=false`, or `isActive` with both values). Anyone else asking for
/// deleted rows is 403.
pub(super) fn active_rows(
    query: &ListQuery,
    admin: bool,
    filter: &mut Filter,
    column: &str,
) -> Result<(), MarketError> {
    let asked: Vec<&str> = query
        .filters
        .get("isActive")
        .map(|values| values.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let (mut active, mut inactive) = (asked.is_empty(), false);
    for value in asked {
        match value {
            "true" => active = true,
            "false" => inactive = true,
            _ => {
                return Err(MarketError::bad_request(
                    "errMsg_invalidFilter",
                    "isActive: true or false",
                ))
            }
        }
    }
    if inactive && !admin {
        return Err(MarketError::forbidden("only admins list deleted records"));
    }
    match (active, inactive) {
        (true, true) => {}
        (true, false) => filter.raw(&format!("{column} = TRUE")),
        _ => filter.raw(&format!("{column} = FALSE")),
    }
    Ok(())
}

use super::body::Object;

fn amenity_view(row: &AmenityRow) -> Value {
    json!({
        "id": row.id,
        "iconUrl": row.icon_url,
        "name": row.name,
        "isActive": row.is_active,
        "recordVersion": row.record_version,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "_owner": row.owner_id,
    })
}

fn locale_text_view(row: &LocaleTextRow) -> Value {
    json!({
        "id": row.id,
        "localizedDescription": row.localized_description,
        "localizedTitle": row.localized_title,
        "listingId": row.listing_id,
        "languageCode": row.language_code,
        "isActive": row.is_active,
        "recordVersion": row.record_version,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "_owner": row.owner_id,
    })
}

fn amenity_not_found() -> MarketError {
    MarketError::not_found("errMsg_listingAmenityNotFound", "no such amenity")
}

fn locale_text_not_found() -> MarketError {
    MarketError::not_found("errMsg_listingLocaleTextNotFound", "no such locale text")
}

fn listing_not_found() -> MarketError {
    MarketError::not_found("errMsg_listingNotFound", "no such listing")
}

fn admins_only(me: &Identity, what: &str) -> Result<(), MarketError> {
    if me.role().is_admin() {
        Ok(())
    } else {
        Err(MarketError::forbidden(format!("only admins {what}")))
    }
}

fn check_icon_url(value: Option<&str>) -> Result<(), MarketError> {
    match value {
        Some(url) => check_text("iconUrl", url, ICON_URL_CHARS_MAX),
        None => Ok(()),
    }
}

/// The body of `createListingAmenity`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateAmenity {
    pub name: String,
    #[serde(default)]
    pub icon_url: Option<String>,
}

/// Add an amenity to the master list: admins only. The name (trimmed) is unique among active
/// amenities whatever its case: 409 otherwise.
#[utoipa::path(tag = "propertycatalog", request_body = CreateAmenity, responses(
    (status = 201, description = "the amenity under `listingAmenity`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/v1/listingamenities")]
pub async fn create_amenity(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<Object<CreateAmenity>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let body = body.into_inner().0;
    let name = body.name.trim().to_owned();
    check_text("name", &name, AMENITY_NAME_CHARS_MAX)?;
    check_icon_url(body.icon_url.as_deref())?;
    admins_only(&me, "add amenities")?;
    let new = NewAmenity {
        id: uuid::Uuid::new_v4().to_string(),
        name,
        icon_url: body.icon_url,
        owner_id: me.user_id().to_owned(),
    };
    match store::create_amenity(&state.db, &new, state.settings.clock.now_ms()).await? {
        Written::Row(row) => Ok(Envelope::new(&req, Some(&me), "listingAmenity")
            .action("create")
            .one(amenity_view(&row))),
        Written::Duplicate => Err(MarketError::conflict(
            "errMsg_listingAmenityAlreadyExists",
            format!("an amenity named {:?} exists", new.name),
        )),
    }
}

/// One amenity: public. A deleted one is 404, except for admins.
#[utoipa::path(tag = "propertycatalog", responses(
    (status = 200, description = "the amenity under `listingAmenity`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
#[get("/v1/listingamenities/{listingAmenityId}")]
pub async fn get_amenity(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = maybe_me(&req, &state).await?;
    check_id("listingAmenityId", &path)?;
    let row = store::amenity(&state.db, &path)
        .await?
        .filter(|row| row.is_active || is_admin(me.as_ref()))
        .ok_or_else(amenity_not_found)?;
    Ok(Envelope::new(&req, me.as_ref(), "listingAmenity").one(amenity_view(&row)))
}

const AMENITY_FILTERS: &[&str] = &["name", "isActive"];

/// Every amenity option, by name: public. `name` matches part of the name, whatever its case.
#[utoipa::path(tag = "propertycatalog", responses(
    (status = 200, description = "list envelope under `listingAmenities`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody)))]
#[get("/v1/listingamenities")]
pub async fn list_amenities(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    let me = maybe_me(&req, &state).await?;
    let query = ListQuery::parse(&req, AMENITY_FILTERS)?;
    let mut filter = Filter::default();
    active_rows(&query, is_admin(me.as_ref()), &mut filter, "is_active")?;
    if let Some(names) = query.filters.get("name") {
        filter.contains_any("name", names);
    }
    let (rows, total) = store::amenities(&state.db, &filter, query.page()).await?;
    let paging = query.paging(total)?;
    let views: Vec<Value> = rows.iter().map(amenity_view).collect();
    Ok(Envelope::new(&req, me.as_ref(), "listingAmenities")
        .action("list")
        .list(&views, paging))
}

/// The body of `updateListingAmenity`: only the icon changes; the name is fixed.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateAmenity {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub icon_url: Option<Option<String>>,
}

/// Change an amenity's icon (`null` clears it): admins only.
#[utoipa::path(tag = "propertycatalog", request_body = UpdateAmenity, responses(
    (status = 200, description = "the amenity under `listingAmenity`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[patch("/v1/listingamenities/{listingAmenityId}")]
pub async fn update_amenity(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Object<UpdateAmenity>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    check_id("listingAmenityId", &path)?;
    let Some(icon_url) = body.into_inner().0.icon_url else {
        return Err(MarketError::bad_request(
            "errMsg_nothingToUpdate",
            "name at least one field to change (iconUrl)",
        ));
    };
    check_icon_url(icon_url.as_deref())?;
    admins_only(&me, "change amenities")?;
    let now = state.settings.clock.now_ms();
    let row = store::update_amenity_icon(&state.db, &path, icon_url.as_deref(), now)
        .await?
        .ok_or_else(amenity_not_found)?;
    Ok(Envelope::new(&req, Some(&me), "listingAmenity")
        .action("update")
        .one(amenity_view(&row)))
}

/// Soft-delete an amenity: admins only. Its name is free again; listings that name it no
/// longer show it.
#[utoipa::path(tag = "propertycatalog", responses(
    (status = 200, description = "the amenity under `listingAmenity`, `isActive: false`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/v1/listingamenities/{listingAmenityId}")]
pub async fn delete_amenity(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    check_id("listingAmenityId", &path)?;
    admins_only(&me, "delete amenities")?;
    let now = state.settings.clock.now_ms();
    let row = store::delete_amenity(&state.db, &path, now)
        .await?
        .ok_or_else(amenity_not_found)?;
    Ok(Envelope::new(&req, Some(&me), "listingAmenity")
        .action("delete")
        .one(amenity_view(&row)))
}

/// A language code: a BCP 47-shaped tag, letters first (`en`, `pt-BR`, `zh-Hant-TW`).
fn check_language_code(code: &str) -> Result<(), MarketError> {
    let mut parts = code.split('-');
    let primary = parts.next().unwrap_or_default();
    let primary_ok =
        (2..=3).contains(&primary.len()) && primary.chars().all(|c| c.is_ascii_alphabetic());
    let rest_ok =
        parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if primary_ok && rest_ok && code.len() <= LANGUAGE_CODE_CHARS_MAX {
        return Ok(());
    }
    Err(MarketError::bad_request(
        "errMsg_languageCodeIsNotValid",
        format!(
            "languageCode is a language tag such as en or pt-BR, at most {LANGUAGE_CODE_CHARS_MAX} characters"
        ),
    ))
}

/// The caller may write the texts of a listing: its host or an admin.
fn may_write_texts(me: &Identity, host_id: &str) -> Result<(), MarketError> {
    if me.role().is_admin() || me.user_id() == host_id {
        Ok(())
    } else {
        Err(MarketError::forbidden(
            "only the listing's host or an admin writes its locale texts",
        ))
    }
}

/// The body of `createListingLocaleText`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateLocaleText {
    pub localized_description: String,
    pub localized_title: String,
    pub listing_id: String,
    pub language_code: String,
}

/// Add a listing's title and description in one language: the listing's host or an admin.
/// The listing must exist and be active (404); one active text per listing and language,
/// whatever its case (409).
#[utoipa::path(tag = "propertycatalog", request_body = CreateLocaleText, responses(
    (status = 201, description = "the text under `listingLocaleText`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody)))]
#[post("/v1/listinglocaletexts")]
pub async fn create_locale_text(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<Object<CreateLocaleText>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let body = body.into_inner().0;
    check_id("listingId", &body.listing_id)?;
    check_language_code(&body.language_code)?;
    check_text("localizedTitle", &body.localized_title, TITLE_CHARS_MAX)?;
    check_text(
        "localizedDescription",
        &body.localized_description,
        DESCRIPTION_CHARS_MAX,
    )?;
    let listing = store::listing_owner(&state.db, &body.listing_id)
        .await?
        .filter(|l| l.is_active)
        .ok_or_else(listing_not_found)?;
    may_write_texts(&me, &listing.host_id)?;
    let new = NewLocaleText {
        id: uuid::Uuid::new_v4().to_string(),
        listing_id: listing.id,
        language_code: body.language_code,
        localized_title: body.localized_title,
        localized_description: body.localized_description,
        owner_id: me.user_id().to_owned(),
    };
    let now = state.settings.clock.now_ms();
    match store::create_locale_text(&state.db, &new, now).await? {
        None => Err(listing_not_found()),
        Some(Written::Row(row)) => Ok(Envelope::new(&req, Some(&me), "listingLocaleText")
            .action("create")
            .one(locale_text_view(&row))),
        Some(Written::Duplicate) => Err(MarketError::conflict(
            "errMsg_listingLocaleTextAlreadyExists",
            format!(
                "the listing has a text in {}; change that one instead",
                new.language_code
            ),
        )),
    }
}

/// A locale text the caller may see: an active text of a listing the public sees (active and
/// published), or of the caller's own listing; admins see every text.
async fn visible_locale_text(
    state: &AppState,
    me: Option<&Identity>,
    id: &str,
) -> Result<LocaleTextRow, MarketError> {
    check_id("listingLocaleTextId", id)?;
    let text = store::locale_text(&state.db, id)
        .await?
        .ok_or_else(locale_text_not_found)?;
    if is_admin(me) {
        return Ok(text);
    }
    let listing_shown = store::listing_owner(&state.db, &text.listing_id)
        .await?
        .is_some_and(|l| {
            (l.is_active && l.is_published) || me.is_some_and(|m| m.user_id() == l.host_id)
        });
    if text.is_active && listing_shown {
        Ok(text)
    } else {
        Err(locale_text_not_found())
    }
}

/// One locale text: public. Deleted texts, and the texts of listings the public does not see
/// (deleted or unpublished), are 404 except for admins (and the listing's host for the
/// latter).
#[utoipa::path(tag = "propertycatalog", responses(
    (status = 200, description = "the text under `listingLocaleText`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
#[get("/v1/listinglocaletexts/{listingLocaleTextId}")]
pub async fn get_locale_text(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = maybe_me(&req, &state).await?;
    let text = visible_locale_text(&state, me.as_ref(), &path).await?;
    Ok(Envelope::new(&req, me.as_ref(), "listingLocaleText").one(locale_text_view(&text)))
}

const LOCALE_TEXT_FILTERS: &[&str] = &["listingId", "languageCode", "isActive"];

/// Locale texts, by listing and language: public. `listingId` is exact; `languageCode`
/// matches part of the code, whatever its case. Texts of listings the public does not see
/// (deleted or unpublished) are left out, except for admins and the listing's host.
#[utoipa::path(tag = "propertycatalog", responses(
    (status = 200, description = "list envelope under `listingLocaleTexts`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody)))]
#[get("/v1/listinglocaletexts")]
pub async fn list_locale_texts(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    let me = maybe_me(&req, &state).await?;
    let admin = is_admin(me.as_ref());
    let query = ListQuery::parse(&req, LOCALE_TEXT_FILTERS)?;
    let mut filter = Filter::default();
    active_rows(&query, admin, &mut filter, "t.is_active")?;
    if !admin {
        let shown = "(l.is_active = TRUE AND l.is_published = TRUE)";
        match &me {
            Some(me) => {
                filter.binds.push(me.user_id().to_owned());
                let n = filter.binds.len();
                filter.raw(&format!("({shown} OR l.host_id = ${n})"));
            }
            None => filter.raw(shown),
        }
    }
    query.filter_by(&mut filter, &[("listingId", "t.listing_id")]);
    if let Some(codes) = query.filters.get("languageCode") {
        filter.contains_any("t.language_code", codes);
    }
    let (rows, total) = store::locale_texts(&state.db, &filter, query.page()).await?;
    let paging = query.paging(total)?;
    let views: Vec<Value> = rows.iter().map(locale_text_view).collect();
    Ok(Envelope::new(&req, me.as_ref(), "listingLocaleTexts")
        .action("list")
        .list(&views, paging))
}

/// The body of `updateListingLocaleText`: the title and the description; the listing and the
/// language are fixed.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateLocaleText {
    #[serde(default)]
    pub localized_description: Option<String>,
    #[serde(default)]
    pub localized_title: Option<String>,
}

/// The text and its listing's host, for a write: 404 unless the text is active and, for
/// updates, its listing too.
async fn writable_locale_text(
    state: &AppState,
    me: &Identity,
    id: &str,
    listing_must_be_live: bool,
) -> Result<LocaleTextRow, MarketError> {
    check_id("listingLocaleTextId", id)?;
    let text = store::locale_text(&state.db, id)
        .await?
        .filter(|t| t.is_active)
        .ok_or_else(locale_text_not_found)?;
    let listing = store::listing_owner(&state.db, &text.listing_id)
        .await?
        .filter(|l| l.is_active || !listing_must_be_live)
        .ok_or_else(locale_text_not_found)?;
    may_write_texts(me, &listing.host_id)?;
    Ok(text)
}

/// Change a locale text's title or description: the listing's host or an admin.
#[utoipa::path(tag = "propertycatalog", request_body = UpdateLocaleText, responses(
    (status = 200, description = "the text under `listingLocaleText`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[patch("/v1/listinglocaletexts/{listingLocaleTextId}")]
pub async fn update_locale_text(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Object<UpdateLocaleText>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let body = body.into_inner().0;
    if let Some(title) = &body.localized_title {
        check_text("localizedTitle", title, TITLE_CHARS_MAX)?;
    }
    if let Some(description) = &body.localized_description {
        check_text("localizedDescription", description, DESCRIPTION_CHARS_MAX)?;
    }
    if body.localized_title.is_none() && body.localized_description.is_none() {
        return Err(MarketError::bad_request(
            "errMsg_nothingToUpdate",
            "name at least one field to change (localizedTitle, localizedDescription)",
        ));
    }
    writable_locale_text(&state, &me, &path, true).await?;
    let changes = LocaleTextChanges {
        localized_title: body.localized_title,
        localized_description: body.localized_description,
    };
    let now = state.settings.clock.now_ms();
    let row = store::update_locale_text(&state.db, &path, &changes, now)
        .await?
        .ok_or_else(locale_text_not_found)?;
    Ok(Envelope::new(&req, Some(&me), "listingLocaleText")
        .action("update")
        .one(locale_text_view(&row)))
}

/// Soft-delete a locale text: the listing's host or an admin (also once the listing is
/// deleted). The language is free again for the listing.
#[utoipa::path(tag = "propertycatalog", responses(
    (status = 200, description = "the text under `listingLocaleText`, `isActive: false`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/v1/listinglocaletexts/{listingLocaleTextId}")]
pub async fn delete_locale_text(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    writable_locale_text(&state, &me, &path, false).await?;
    let now = state.settings.clock.now_ms();
    let row = store::delete_locale_text(&state.db, &path, now)
        .await?
        .ok_or_else(locale_text_not_found)?;
    Ok(Envelope::new(&req, Some(&me), "listingLocaleText")
        .action("delete")
        .one(locale_text_view(&row)))
}
