//! The notification service (`shared/spec/airbnb-notification.md`): push devices, a user's
//! notifications, sending (administrators) and marking seen. Every route needs a live token.
//! Also `GET /admin/push-deliveries`, where administrators (and black-box tests) see what was
//! pushed.
//!
//! Decisions: `docs/DECISIONS.md`, "Notification service".

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::envelope::{iso, Envelope, Paging};
use super::error::{ErrorBody, MarketError};
use crate::api::AppState;
use crate::auth::{token_from_request, AuthError, Identity};
use crate::notify::DEVICES_PER_USER_MAX;
use crate::store::notifications::{
    self, Delivery, Device, NewDevice, NewNotification, Notification, Order, Registered,
};

/// Longest push token, in bytes (printable ASCII).
const PUSH_TOKEN_BYTES_MAX: usize = 4096;
/// A token shorter than this shows no last four characters: they would be most of it.
const TOKEN_CHARS_MIN_FOR_LAST4: usize = 12;
const DEVICE_NAME_CHARS_MAX: usize = 100;
const TITLE_CHARS_MAX: usize = 200;
const BODY_CHARS_MAX: usize = 2000;
/// Largest `data` object, serialized, in bytes.
const DATA_BYTES_MAX: usize = 4096;
const RECIPIENTS_MAX: usize = 100;
const SEEN_IDS_MAX: usize = 500;
/// Longest id accepted in a list of ids (ours are 36 characters).
const ID_CHARS_MAX: usize = 64;
const PAGE_LIMIT_DEFAULT: u32 = 25;
const PAGE_LIMIT_MAX: u32 = 100;
/// Most deliveries one `GET /admin/push-deliveries` answers.
const DELIVERIES_MAX: i64 = 1000;
/// The `kind` of notifications sent through `POST /notifications`.
pub const KIND_ANNOUNCEMENT: &str = "announcement";

/// A device's platform.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Ios,
    Android,
    Web,
}

impl Platform {
    fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "ios",
            Platform::Android => "android",
            Platform::Web => "web",
        }
    }
}

/// The device to register.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceInput {
    pub platform: Platform,
    /// The provider's push token: 1 to 4096 printable ASCII characters. Never shown again.
    pub token: String,
    /// At most 100 characters.
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /devices/register`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterDevice {
    pub device: DeviceInput,
}

/// A device as its owner sees it: never its token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView {
    pub id: String,
    pub user_id: String,
    pub platform: String,
    pub name: Option<String>,
    /// The token's last four characters (null for tokens under 12 characters).
    pub token_last4: Option<String>,
    pub is_active: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Device> for DeviceView {
    fn from(d: &Device) -> Self {
        let token: Vec<char> = d.token.expose_secret().chars().collect();
        let token_last4 = (token.len() >= TOKEN_CHARS_MIN_FOR_LAST4)
            .then(|| token[token.len() - 4..].iter().collect());
        DeviceView {
            id: d.id.clone(),
            user_id: d.user_id.clone(),
            platform: d.platform.clone(),
            name: d.name.clone(),
            token_last4,
            is_active: d.is_active,
            created_at: iso(d.created_at),
            updated_at: iso(d.updated_at),
        }
    }
}

/// A notification.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    pub id: String,
    pub user_id: String,
    /// `announcement` (sent by an administrator) or what the service that created it says.
    pub kind: String,
    pub title: String,
    pub body: String,
    #[schema(value_type = Object)]
    pub data: Value,
    pub is_seen: bool,
    pub seen_at: Option<String>,
    pub created_at: String,
}

impl From<&Notification> for NotificationView {
    fn from(n: &Notification) -> Self {
        NotificationView {
            id: n.id.clone(),
            user_id: n.user_id.clone(),
            kind: n.kind.clone(),
            title: n.title.clone(),
            body: n.body.clone(),
            data: n.data.clone(),
            is_seen: n.seen_at.is_some(),
            seen_at: n.seen_at.map(iso),
            created_at: iso(n.created_at),
        }
    }
}

/// The notification to send.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationInput {
    /// 1 to 100 user ids; a repeated id gets one notification.
    pub user_ids: Vec<String>,
    /// 1 to 200 characters.
    pub title: String,
    /// 1 to 2000 characters.
    pub body: String,
    /// A JSON object of at most 4 KiB serialized; `{}` when omitted.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

/// `POST /notifications`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendNotification {
    pub notification: NotificationInput,
}

/// `POST /notifications/seen`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MarkSeen {
    /// 1 to 500 notification ids.
    pub notification_ids: Vec<String>,
}

/// Query of `GET /notifications`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[allow(
    dead_code,
    reason = "documentation only: the query is parsed by `ListQuery::parse`"
)]
pub struct ListParams {
    /// 1 or more; 1 when omitted.
    page: Option<u32>,
    /// 1 to 100; 25 when omitted.
    limit: Option<u32>,
    /// `createdAt` (oldest first) or `-createdAt` (newest first, the default).
    sort_by: Option<String>,
}

/// One push, for administrators.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub notification_id: String,
    pub device_id: String,
    /// The provider's name (`recording`).
    pub provider: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    /// When it was last changed, ISO-8601.
    pub at: String,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        DeliveryView {
            notification_id: d.notification_id.clone(),
            device_id: d.device_id.clone(),
            provider: d.provider.clone(),
            status: d.status.clone(),
            at: iso(d.at),
        }
    }
}

/// Query of `GET /admin/push-deliveries`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct DeliveriesQuery {
    /// Whose notifications' pushes to show.
    pub user_id: Option<String>,
}

/// The caller: 401 without a live token.
async fn caller(req: &HttpRequest, state: &AppState) -> Result<Identity, MarketError> {
    let token = token_from_request(req).ok_or(AuthError::Missing)?;
    Ok(state.auth.authenticate(&token).await?)
}

/// The caller, who must be an administrator: 401 without a live token, 403 for other roles.
async fn administrator(req: &HttpRequest, state: &AppState) -> Result<Identity, MarketError> {
    let identity = caller(req, state).await?;
    if !identity.role().is_admin() {
        return Err(MarketError::forbidden("only administrators may do this"));
    }
    Ok(identity)
}

fn too_long(field: &str, max: usize) -> MarketError {
    MarketError::bad_request(
        format!("errMsg_{field}IsTooLong"),
        format!("{field} must be at most {max} characters"),
    )
}

/// Text of 1 to `max` characters that is not blank.
fn text(value: &str, field: &str, max: usize) -> Result<String, MarketError> {
    if value.trim().is_empty() {
        return Err(MarketError::bad_request(
            format!("errMsg_{field}IsRequired"),
            format!("{field} is required"),
        ));
    }
    if value.chars().count() > max {
        return Err(too_long(field, max));
    }
    Ok(value.to_owned())
}

/// A list query as the route understands it. Other parameters (the common `requestId`,
/// `access_token`, …) are left alone.
struct ListQuery {
    page: u32,
    limit: u32,
    order: Order,
}

impl ListQuery {
    fn parse(query: &str) -> Result<Self, MarketError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|_| {
            MarketError::bad_request("errMsg_invalidQuery", "the query string is not valid")
        })?;
        let find = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let paging = |name: &str, default: u32, max: u32| match find(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    MarketError::bad_request(
                        "errMsg_invalidPaging",
                        format!("{name} must be a whole number from 1 to {max}"),
                    )
                }),
        };
        let page = paging("page", 1, u32::MAX)?;
        let limit = paging("limit", PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX)?;
        let order = match find("sortBy") {
            None | Some("-createdAt") => Order::NewestFirst,
            Some("createdAt") => Order::OldestFirst,
            Some(_) => {
                return Err(MarketError::bad_request(
                    "errMsg_invalidSortBy",
                    "sortBy must be createdAt or -createdAt",
                ))
            }
        };
        Ok(ListQuery { page, limit, order })
    }
}

/// Register a push device of the caller. 201 with the device (never its token). Registering
/// a token the caller already has active answers that device again (201, same id). At most
/// 20 active devices per user (400 `errMsg_tooManyDevices`).
#[utoipa::path(
    tag = "notification",
    request_body = RegisterDevice,
    security(("bearer" = []), ("accessTokenHeader" = [])),
    responses(
        (status = 201, body = DeviceView, description = "the envelope, the device under `device`"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
#[post("/devices/register")]
#[tracing::instrument(name = "notification_register_device", skip_all)]
pub async fn register_device(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<super::body::Object<RegisterDevice>>,
) -> Result<HttpResponse, MarketError> {
    let me = caller(&req, &state).await?;
    let device = body.into_inner().0.device;
    let token = SecretString::from(device.token);
    let token_text = token.expose_secret();
    if token_text.is_empty()
        || token_text.len() > PUSH_TOKEN_BYTES_MAX
        || !token_text.bytes().all(|b| b.is_ascii_graphic())
    {
        // The message never quotes the token.
        return Err(MarketError::bad_request(
            "errMsg_tokenIsNotValid",
            format!("token must be 1 to {PUSH_TOKEN_BYTES_MAX} printable ASCII characters"),
        ));
    }
    let name = device
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    if name
        .as_deref()
        .is_some_and(|n| n.chars().count() > DEVICE_NAME_CHARS_MAX)
    {
        return Err(too_long("name", DEVICE_NAME_CHARS_MAX));
    }
    let new = NewDevice {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: me.user.id.clone(),
        platform: device.platform.as_str().to_owned(),
        token,
        name,
    };
    let device = match notifications::register_device(&state.db, &new, DEVICES_PER_USER_MAX).await?
    {
        Registered::New(device) => {
            tracing::info!(device_id = %device.id, "device registered");
            device
        }
        Registered::Existing(device) => device,
        Registered::TooMany => {
            return Err(MarketError::bad_request(
                "errMsg_tooManyDevices",
                format!("a user may have at most {DEVICES_PER_USER_MAX} registered devices"),
            ))
        }
    };
    Ok(Envelope::new(&req, Some(&me), "device")
        .action("create")
        .one(DeviceView::from(&device)))
}

/// Unregister one of the caller's devices: 200 with the device, now inactive. Unregistering
/// again answers the same. Another user's device and an unknown id are the same 404.
#[utoipa::path(
    tag = "notification",
    params(("deviceId" = String, Path, description = "the device's id")),
    security(("bearer" = []), ("accessTokenHeader" = [])),
    responses(
        (status = 200, body = DeviceView, description = "the envelope, the device under `device`"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "errMsg_deviceNotFound"),
    )
)]
#[delete("/devices/unregister/{deviceId}")]
#[tracing::instrument(name = "notification_unregister_device", skip_all)]
pub async fn unregister_device(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = caller(&req, &state).await?;
    let device_id = path.into_inner();
    let device = notifications::unregister_device(&state.db, &me.user.id, &device_id)
        .await?
        .ok_or_else(|| {
            MarketError::not_found("errMsg_deviceNotFound", "you have no device with this id")
        })?;
    Ok(Envelope::new(&req, Some(&me), "device")
        .action("delete")
        .one(DeviceView::from(&device)))
}

/// A page of the caller's notifications, newest first unless `sortBy=createdAt`.
#[utoipa::path(
    tag = "notification",
    params(ListParams),
    security(("bearer" = []), ("accessTokenHeader" = [])),
    responses(
        (status = 200, body = [NotificationView],
            description = "the list envelope, the page under `notifications`, with `paging`"),
        (status = 400, body = ErrorBody, description = "errMsg_invalidPaging, errMsg_invalidSortBy"),
        (status = 401, body = ErrorBody),
    )
)]
#[get("/notifications")]
#[tracing::instrument(name = "notification_list", skip_all)]
pub async fn list_notifications(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    let me = caller(&req, &state).await?;
    let query = ListQuery::parse(req.query_string())?;
    let limit = i64::from(query.limit);
    let offset = (i64::from(query.page) - 1) * limit;
    let (rows, total) =
        notifications::page(&state.db, &me.user.id, query.order, limit, offset).await?;
    let views: Vec<NotificationView> = rows.iter().map(NotificationView::from).collect();
    let total = u64::try_from(total).unwrap_or(0);
    let paging = Paging {
        page_number: u64::from(query.page),
        page_row_count: u64::from(query.limit),
        total_row_count: total,
        page_count: total.div_ceil(u64::from(query.limit)),
    };
    Ok(Envelope::new(&req, Some(&me), "notifications")
        .action("list")
        .list(&views, paging))
}

/// One page holding every row: the answer of the calls that return a set they made.
fn whole(rows: usize) -> Paging {
    let rows = rows as u64;
    Paging {
        page_number: 1,
        page_row_count: rows,
        total_row_count: rows,
        page_count: u64::from(rows > 0),
    }
}

/// Send a notification to users (administrators only): one notification per distinct user,
/// all created in one transaction or none (400 `errMsg_userNotFound` when an id is not an
/// active user), then pushed to each recipient's active devices. 201 with the notifications.
#[utoipa::path(
    tag = "notification",
    request_body = SendNotification,
    security(("bearer" = []), ("accessTokenHeader" = [])),
    responses(
        (status = 201, body = [NotificationView],
            description = "the envelope, the created notifications under `notifications`"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not an administrator"),
    )
)]
#[post("/notifications")]
#[tracing::instrument(name = "notification_send", skip_all)]
pub async fn send_notification(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<super::body::Object<SendNotification>>,
) -> Result<HttpResponse, MarketError> {
    let me = administrator(&req, &state).await?;
    let input = body.into_inner().0.notification;
    if input.user_ids.is_empty() || input.user_ids.len() > RECIPIENTS_MAX {
        return Err(MarketError::bad_request(
            "errMsg_userIdsIsNotValid",
            format!("userIds must hold 1 to {RECIPIENTS_MAX} user ids"),
        ));
    }
    let title = text(&input.title, "title", TITLE_CHARS_MAX)?;
    let body = text(&input.body, "body", BODY_CHARS_MAX)?;
    let data = match input.data {
        None => Value::Object(serde_json::Map::new()),
        Some(data @ Value::Object(_)) => data,
        Some(_) => {
            return Err(MarketError::bad_request(
                "errMsg_dataIsNotValid",
                "data must be a JSON object",
            ))
        }
    };
    if data.to_string().len() > DATA_BYTES_MAX {
        return Err(MarketError::bad_request(
            "errMsg_dataIsTooLarge",
            format!("data must be at most {DATA_BYTES_MAX} bytes as JSON"),
        ));
    }
    let mut recipients: Vec<String> = Vec::with_capacity(input.user_ids.len());
    for id in input.user_ids {
        if id.is_empty() || id.chars().count() > ID_CHARS_MAX {
            return Err(MarketError::bad_request(
                "errMsg_userNotFound",
                "a user id in userIds is not a user",
            ));
        }
        if !recipients.contains(&id) {
            recipients.push(id);
        }
    }
    let now = crate::store::now_ms();
    let new: Vec<NewNotification> = recipients
        .into_iter()
        .map(|user_id| NewNotification {
            id: uuid::Uuid::now_v7().to_string(),
            user_id,
            kind: KIND_ANNOUNCEMENT.to_owned(),
            title: title.clone(),
            body: body.clone(),
            data: data.clone(),
            created_at: now,
        })
        .collect();
    let created = match notifications::create_all(&state.db, &new).await? {
        Ok(created) => created,
        Err(unknown) => {
            return Err(MarketError::bad_request(
                "errMsg_userNotFound",
                format!("no active user has the id {}", unknown.join(", ")),
            ))
        }
    };
    tracing::info!(sender = %me.user.id, count = created.len(), "notifications sent");
    for notification in &created {
        state.notifier.deliver(&notification.id).await;
    }
    let views: Vec<NotificationView> = created.iter().map(NotificationView::from).collect();
    Ok(Envelope::new(&req, Some(&me), "notifications")
        .action("create")
        .list(&views, whole(views.len())))
}

/// Mark the caller's notifications as seen: 200 with those of the ids that are the caller's,
/// all now seen (a notification seen before keeps its `seenAt`). Other ids are ignored.
#[utoipa::path(
    tag = "notification",
    request_body = MarkSeen,
    security(("bearer" = []), ("accessTokenHeader" = [])),
    responses(
        (status = 200, body = [NotificationView],
            description = "the envelope, the caller's named notifications under `notifications`"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
#[post("/notifications/seen")]
#[tracing::instrument(name = "notification_mark_seen", skip_all)]
pub async fn mark_seen(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<super::body::Object<MarkSeen>>,
) -> Result<HttpResponse, MarketError> {
    let me = caller(&req, &state).await?;
    let mut ids = body.into_inner().0.notification_ids;
    if ids.is_empty() || ids.len() > SEEN_IDS_MAX {
        return Err(MarketError::bad_request(
            "errMsg_notificationIdsIsNotValid",
            format!("notificationIds must hold 1 to {SEEN_IDS_MAX} ids"),
        ));
    }
    // An id longer than ours can be nobody's notification.
    ids.retain(|id| !id.is_empty() && id.chars().count() <= ID_CHARS_MAX);
    ids.sort_unstable();
    ids.dedup();
    let seen = if ids.is_empty() {
        Vec::new()
    } else {
        notifications::mark_seen(&state.db, &me.user.id, &ids).await?
    };
    let views: Vec<NotificationView> = seen.iter().map(NotificationView::from).collect();
    Ok(Envelope::new(&req, Some(&me), "notifications")
        .action("update")
        .list(&views, whole(views.len())))
}

/// The pushes of a user's notifications, newest first (at most 1000), for administrators:
/// how operators (and the black-box tests) see what was delivered.
#[utoipa::path(
    tag = "notification",
    params(DeliveriesQuery),
    security(("bearer" = []), ("accessTokenHeader" = [])),
    responses(
        (status = 200, body = [DeliveryView]),
        (status = 400, body = ErrorBody, description = "errMsg_userIdIsRequired"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "not an administrator"),
    )
)]
#[get("/admin/push-deliveries")]
#[tracing::instrument(name = "admin_push_deliveries", skip_all)]
pub async fn push_deliveries(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    administrator(&req, &state).await?;
    let query: DeliveriesQuery = serde_urlencoded::from_str(req.query_string())
        .map_err(|_| MarketError::bad_request("errMsg_invalidQuery", "the query is not valid"))?;
    let user_id = query
        .user_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| MarketError::bad_request("errMsg_userIdIsRequired", "userId is required"))?;
    let deliveries = notifications::deliveries_of_user(&state.db, &user_id, DELIVERIES_MAX).await?;
    let views: Vec<DeliveryView> = deliveries.iter().map(DeliveryView::from).collect();
    Ok(HttpResponse::Ok().json(views))
}
