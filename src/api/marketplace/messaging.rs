//! The marketplace messaging service (`/messaging-api`, `shared/spec/airbnb-messaging.md`):
//! threads, messages and reports. Changes of threads and messages go through the thread's
//! conversation actor ([`crate::conversations`]); reads come from the store, which holds
//! exactly what was acknowledged.

use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use actors::conversation::{Draft, MessageChanges, MessageType, ThreadChanges};
use actors::IdempotencyKey;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::body::{me, present};
use super::envelope::{iso, Envelope};
use super::error::ErrorBody;
use super::query::ListQuery;
use super::MarketError;
use crate::api::AppState;
use crate::auth::Identity;
use crate::conversations::{visible_message, visible_thread, Caller, MsgError};
use crate::store::conversations::{self as store, Filter, MessageRow, ReportRow, ThreadRow};
use crate::store::users;
use crate::ws::message_ops::{CONTENT_CHARS_MAX, MEDIA_URL_CHARS_MAX};

/// The longest id accepted in a body or path.
const ID_BYTES_MAX: usize = 64;
/// The longest report reason and resolution notes.
const REPORT_TEXT_CHARS_MAX: usize = 2000;

fn caller(identity: &Identity) -> Caller<'_> {
    Caller {
        user_id: identity.user_id(),
        admin: identity.role().is_admin(),
    }
}

impl From<MsgError> for MarketError {
    fn from(failure: MsgError) -> Self {
        match failure {
            MsgError::NotFound("thread") => {
                MarketError::not_found("errMsg_threadNotFound", "no such thread")
            }
            MsgError::NotFound(_) => {
                MarketError::not_found("errMsg_messageNotFound", "no such message")
            }
            MsgError::Forbidden(why) => MarketError::forbidden(why),
            MsgError::Closed => {
                MarketError::conflict("errMsg_threadIsClosed", "the thread is closed")
            }
            MsgError::Conflict(existing) => MarketError::conflict(
                "errMsg_threadAlreadyExists",
                format!("an open thread exists for this context: {existing}"),
            ),
            MsgError::Actor(actors::ActorError::Busy(_)) => MarketError::new(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "errMsg_busy",
                "the thread is busy; retry with the same Idempotency-Key",
            ),
            MsgError::Actor(actors::ActorError::KeyReused) => MarketError::new(
                actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
                "errMsg_idempotencyKeyReused",
                "this Idempotency-Key was used for a different message",
            ),
            MsgError::Actor(other @ actors::ActorError::Unconfirmed(_)) => {
                MarketError::unconfirmed(&other)
            }
            MsgError::Actor(other) => MarketError::internal(&other),
            MsgError::Store(other) => MarketError::internal(&other),
        }
    }
}

fn thread_view(row: &ThreadRow) -> Value {
    json!({
        "id": row.id,
        "messageCount": row.message_count,
        "isOpen": row.is_open,
        "guestId": row.guest_id,
        "lastMessageAt": row.last_message_at.map(iso),
        "listingId": row.listing_id,
        "hostId": row.host_id,
        "reservationId": row.reservation_id,
        "lastSeq": row.last_seq,
        "isActive": row.is_active,
        "recordVersion": row.record_version,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "_owner": row.owner_id,
    })
}

fn message_view(row: &MessageRow) -> Value {
    let kind = MessageType::parse(&row.message_type);
    json!({
        "id": row.id,
        "threadId": row.thread_id,
        "seq": row.seq,
        "content": row.content,
        "senderId": row.sender_id,
        "sentAt": iso(row.sent_at),
        "messageType": row.message_type,
        "messageType_idx": kind.map(MessageType::index),
        "mediaUrl": row.media_url,
        "isModerated": row.is_moderated,
        "isFlagged": row.is_flagged,
        "flaggedBy": row.flagged_by,
        "flagReason": row.flag_reason,
        "isRead": row.is_read,
        "isActive": row.is_active,
        "recordVersion": row.record_version,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "_owner": row.sender_id,
    })
}

const MODERATION_STATUSES: [&str; 3] = ["pending", "reviewed", "closed"];

fn report_view(row: &ReportRow) -> Value {
    json!({
        "id": row.id,
        "reportedBy": row.reported_by,
        "reportReason": row.report_reason,
        "moderationStatus": row.moderation_status,
        "moderationStatus_idx": MODERATION_STATUSES.iter().position(|s| *s == row.moderation_status),
        "messageId": row.message_id,
        "adminId": row.admin_id,
        "reportedAt": iso(row.reported_at),
        "resolutionNotes": row.resolution_notes,
        "isActive": row.is_active,
        "recordVersion": row.record_version,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
        "_owner": row.owner_id,
    })
}

fn check_id(field: &str, value: &str) -> Result<(), MarketError> {
    if value.is_empty() || value.len() > ID_BYTES_MAX {
        return Err(MarketError::bad_request(
            format!("errMsg_{field}IsNotValid"),
            format!("{field} must be 1 to {ID_BYTES_MAX} characters"),
        ));
    }
    Ok(())
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), MarketError> {
    let chars = value.chars().count();
    if chars == 0 || chars > max {
        return Err(MarketError::bad_request(
            format!("errMsg_{field}IsNotValid"),
            format!("{field} must be 1 to {max} characters"),
        ));
    }
    Ok(())
}

/// The body of `createMessageThread`. `messageCount` and `lastMessageAt` are the server's:
/// accepted and ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateThread {
    pub guest_id: String,
    pub host_id: String,
    #[serde(default)]
    pub is_open: Option<bool>,
    #[serde(default)]
    pub listing_id: Option<String>,
    #[serde(default)]
    pub reservation_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub message_count: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub last_message_at: Option<Value>,
}

/// Create a thread between a guest and a host (the caller is one of them, or an admin). An
/// open thread on the same context (guest, host, listing, reservation) is 409.
#[utoipa::path(
    tag = "messaging",
    request_body = CreateThread,
    responses(
        (status = 201, description = "the thread, in the envelope under `messageThread`"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
    )
)]
#[post("/v1/messagethreads")]
pub async fn create_thread(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<super::body::Object<CreateThread>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let body = body.into_inner().0;
    check_id("guestId", &body.guest_id)?;
    check_id("hostId", &body.host_id)?;
    for (field, value) in [
        ("listingId", &body.listing_id),
        ("reservationId", &body.reservation_id),
    ] {
        if let Some(value) = value {
            check_id(field, value)?;
        }
    }
    if body.guest_id == body.host_id {
        return Err(MarketError::bad_request(
            "errMsg_guestAndHostMustDiffer",
            "a thread is between two different users",
        ));
    }
    let admin = me.role().is_admin();
    if !admin && me.user_id() != body.guest_id && me.user_id() != body.host_id {
        return Err(MarketError::forbidden(
            "the caller must be the thread's guest or host",
        ));
    }
    for (field, id) in [("guestId", &body.guest_id), ("hostId", &body.host_id)] {
        if !users::by_id(&state.db, id)
            .await?
            .is_some_and(|u| u.is_active)
        {
            return Err(MarketError::bad_request(
                format!("errMsg_{field}IsNotValid"),
                format!("{field}: no such user"),
            ));
        }
    }
    let new = store::NewThread {
        id: uuid::Uuid::new_v4().to_string(),
        guest_id: body.guest_id,
        host_id: body.host_id,
        listing_id: body.listing_id,
        reservation_id: body.reservation_id,
        is_open: body.is_open.unwrap_or(true),
        owner_id: me.user_id().to_owned(),
    };
    let row = state.conversations.create_thread(&state.db, &new).await?;
    state
        .gateway
        .thread_created(&row.id, &row.guest_id, &row.host_id)
        .await;
    Ok(Envelope::new(&req, Some(&me), "messageThread")
        .action("create")
        .one(thread_view(&row)))
}

/// One thread: its guest, its host, or an admin (404 for anyone else).
#[utoipa::path(tag = "messaging", responses(
    (status = 200, description = "the thread under `messageThread`"),
    (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/v1/messagethreads/{messageThreadId}")]
pub async fn get_thread(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let row = visible_thread(&state.db, caller(&me), &path).await?;
    Ok(Envelope::new(&req, Some(&me), "messageThread").one(thread_view(&row)))
}

const THREAD_FILTERS: &[&str] = &["guestId", "hostId", "listingId", "reservationId", "isOpen"];

/// The caller's threads (an admin's: all), most recently active first, with the documented
/// joins `listingDets` and `rezDets`.
#[utoipa::path(tag = "messaging", responses(
    (status = 200, description = "list envelope under `messageThreads`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[get("/v1/messagethreads")]
pub async fn list_threads(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let query = ListQuery::parse(&req, THREAD_FILTERS)?;
    let mut filter = Filter::default();
    filter.raw("is_active = TRUE");
    if !me.role().is_admin() {
        filter.user_in(&["guest_id", "host_id"], me.user_id());
    }
    query.filter_by(
        &mut filter,
        &[
            ("guestId", "guest_id"),
            ("hostId", "host_id"),
            ("listingId", "listing_id"),
            ("reservationId", "reservation_id"),
        ],
    );
    if let Some(open) = query.flag("isOpen")? {
        filter.flag("is_open", open);
    }
    let (rows, total) = store::threads(&state.db, &filter, query.page()).await?;
    let paging = query.paging(total)?;
    let mut views: Vec<Value> = rows.iter().map(thread_view).collect();
    if query.get_joins {
        let listing_ids: Vec<String> = rows.iter().filter_map(|r| r.listing_id.clone()).collect();
        let listings = crate::store::stays::listings_by_ids(&state.db, &listing_ids).await?;
        for (view, row) in views.iter_mut().zip(&rows) {
            let listing = row
                .listing_id
                .as_ref()
                .and_then(|id| listings.iter().find(|l| &l.id == id));
            view["listingDets"] = Value::Array(
                listing
                    .map(|l| {
                        json!({
                            "title": l.title,
                            "address": l.address,
                            "propertyType": l.property_type,
                            "propertyType_idx": super::catalog::PROPERTY_TYPES
                                .iter()
                                .position(|t| *t == l.property_type),
                            "location": serde_json::from_str::<Value>(&l.location)
                                .unwrap_or(Value::Null),
                        })
                    })
                    .into_iter()
                    .collect(),
            );
            // A reservation shows only when it is between this thread's guest and host.
            let reservation = match &row.reservation_id {
                Some(id) => crate::store::stays::reservation(&state.db, id)
                    .await?
                    .filter(|r| r.guest_id == row.guest_id && r.host_id == row.host_id),
                None => None,
            };
            view["rezDets"] = Value::Array(
                reservation
                    .map(|r| {
                        json!({
                            "bookingStatus": r.booking_status,
                            "bookingStatus_idx": actors::calendar::BookingStatus::parse(
                                &r.booking_status
                            )
                            .map(|s| s.index()),
                            "checkOut": r.check_out,
                            "checkIn": r.check_in,
                        })
                    })
                    .into_iter()
                    .collect(),
            );
        }
    }
    Ok(Envelope::new(&req, Some(&me), "messageThreads")
        .action("list")
        .list(&views, paging))
}

/// The body of `updateMessageThread`. `messageCount` and `lastMessageAt` are the server's.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateThread {
    #[serde(default)]
    pub is_open: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub listing_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub reservation_id: Option<Option<String>>,
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub message_count: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub last_message_at: Option<Value>,
}

async fn change_thread(
    req: &HttpRequest,
    state: &AppState,
    me: &Identity,
    thread_id: &str,
    changes: ThreadChanges,
    action: &str,
) -> Result<HttpResponse, MarketError> {
    state
        .conversations
        .update_thread(&state.db, caller(me), thread_id, changes)
        .await?;
    let row = store::thread(&state.db, thread_id)
        .await?
        .ok_or_else(|| MarketError::from(MsgError::NotFound("thread")))?;
    Ok(Envelope::new(req, Some(me), "messageThread")
        .action(action)
        .one(thread_view(&row)))
}

/// Change a thread (`isOpen=false` closes it): its guest, its host, or an admin. Reopening,
/// or moving an open thread to a context that has an open thread, is 409.
#[utoipa::path(tag = "messaging", request_body = UpdateThread, responses(
    (status = 200, description = "the thread under `messageThread`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[patch("/v1/messagethreads/{messageThreadId}")]
pub async fn update_thread(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<super::body::Object<UpdateThread>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let body = body.into_inner().0;
    for (field, value) in [
        ("listingId", &body.listing_id),
        ("reservationId", &body.reservation_id),
    ] {
        if let Some(Some(value)) = value {
            check_id(field, value)?;
        }
    }
    let changes = ThreadChanges {
        is_open: body.is_open,
        is_active: None,
        listing_id: body.listing_id,
        reservation_id: body.reservation_id,
    };
    change_thread(&req, &state, &me, &path, changes, "update").await
}

/// Soft-delete (archive) a thread: its guest, its host, or an admin.
#[utoipa::path(tag = "messaging", responses(
    (status = 200, description = "the thread under `messageThread`, `isActive: false`"),
    (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[delete("/v1/messagethreads/{messageThreadId}")]
pub async fn delete_thread(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let changes = ThreadChanges {
        is_active: Some(false),
        ..ThreadChanges::default()
    };
    change_thread(&req, &state, &me, &path, changes, "delete").await
}

/// The body of `createMessage`. `senderId` must be the caller; `sentAt` is the server's.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateMessage {
    pub thread_id: String,
    pub content: String,
    #[serde(default)]
    pub sender_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub sent_at: Option<Value>,
    #[serde(default)]
    pub message_type: Option<String>,
    #[serde(default)]
    pub media_url: Option<String>,
    #[serde(default)]
    pub is_moderated: Option<bool>,
    #[serde(default)]
    pub is_flagged: Option<bool>,
    #[serde(default)]
    pub flagged_by: Option<String>,
    #[serde(default)]
    pub flag_reason: Option<String>,
}

/// The `Idempotency-Key` header, if sent.
fn idempotency_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, MarketError> {
    let Some(raw) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let raw = raw.to_str().map_err(|_| {
        MarketError::bad_request("errMsg_idempotencyKeyIsNotValid", "printable ASCII only")
    })?;
    IdempotencyKey::parse(raw)
        .map(Some)
        .map_err(|msg| MarketError::bad_request("errMsg_idempotencyKeyIsNotValid", msg))
}

/// Post a message: the thread's guest or host only. Sets `sentAt` and the thread's
/// `messageCount`/`lastMessageAt`; with an `Idempotency-Key`, a retry answers the first post.
#[utoipa::path(tag = "messaging", request_body = CreateMessage, params(
    ("Idempotency-Key" = Option<String>, Header, description = "makes a retry return the first post")),
    responses(
    (status = 201, description = "the message under `message`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, body = ErrorBody, description = "the thread is closed")))]
#[post("/v1/messages")]
pub async fn create_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<super::body::Object<CreateMessage>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let key = idempotency_key(&req)?;
    let body = body.into_inner().0;
    check_id("threadId", &body.thread_id)?;
    check_text("content", &body.content, CONTENT_CHARS_MAX)?;
    if let Some(url) = &body.media_url {
        check_text("mediaUrl", url, MEDIA_URL_CHARS_MAX)?;
    }
    for (field, value) in [
        ("flaggedBy", &body.flagged_by),
        ("flagReason", &body.flag_reason),
    ] {
        if let Some(value) = value {
            check_text(field, value, REPORT_TEXT_CHARS_MAX)?;
        }
    }
    if body.sender_id.as_deref().is_some_and(|s| s != me.user_id()) {
        return Err(MarketError::forbidden(
            "senderId must be the caller: messages are sent as oneself",
        ));
    }
    let message_type = match body.message_type.as_deref() {
        None => MessageType::Text,
        Some(raw) => MessageType::parse(raw).ok_or_else(|| {
            MarketError::bad_request(
                "errMsg_messageTypeIsNotValid",
                "messageType is text, media or system",
            )
        })?,
    };
    let draft = Draft {
        sender_id: me.user_id().to_owned(),
        content: body.content,
        message_type,
        media_url: body.media_url,
        is_moderated: body.is_moderated.unwrap_or(false),
        is_flagged: body.is_flagged.unwrap_or(false),
        flagged_by: body.flagged_by,
        flag_reason: body.flag_reason,
    };
    let message = state
        .conversations
        .post(&state.db, caller(&me), &body.thread_id, draft, key.as_ref())
        .await?;
    let row = store::message(&state.db, &message.id)
        .await?
        .ok_or_else(|| MarketError::from(MsgError::NotFound("message")))?;
    Ok(Envelope::new(&req, Some(&me), "message")
        .action("create")
        .one(message_view(&row)))
}

/// One message: the thread's guest or host, or an admin. Hidden messages are for admins.
#[utoipa::path(tag = "messaging", responses(
    (status = 200, description = "the message under `message`"),
    (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/v1/messages/{messageId}")]
pub async fn get_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let (row, _) = visible_message(&state.db, caller(&me), &path).await?;
    Ok(Envelope::new(&req, Some(&me), "message").one(message_view(&row)))
}

/// The body of `updateMessage`: content and flag fields, and `isRead`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateMessage {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub media_url: Option<Option<String>>,
    #[serde(default)]
    pub is_moderated: Option<bool>,
    #[serde(default)]
    pub is_flagged: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub flagged_by: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub flag_reason: Option<Option<String>>,
    #[serde(default)]
    pub is_read: Option<bool>,
}

/// Edit a message: its sender or an admin; the recipient may set `isRead` only.
#[utoipa::path(tag = "messaging", request_body = UpdateMessage, responses(
    (status = 200, description = "the message under `message`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[patch("/v1/messages/{messageId}")]
pub async fn update_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<super::body::Object<UpdateMessage>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let body = body.into_inner().0;
    if let Some(content) = &body.content {
        check_text("content", content, CONTENT_CHARS_MAX)?;
    }
    if let Some(Some(url)) = &body.media_url {
        check_text("mediaUrl", url, MEDIA_URL_CHARS_MAX)?;
    }
    for (field, value) in [
        ("flaggedBy", &body.flagged_by),
        ("flagReason", &body.flag_reason),
    ] {
        if let Some(Some(value)) = value {
            check_text(field, value, REPORT_TEXT_CHARS_MAX)?;
        }
    }
    let changes = MessageChanges {
        content: body.content,
        media_url: body.media_url,
        is_moderated: body.is_moderated,
        is_flagged: body.is_flagged,
        flagged_by: body.flagged_by,
        flag_reason: body.flag_reason,
        is_read: body.is_read,
    };
    if changes == MessageChanges::default() {
        return Err(MarketError::bad_request(
            "errMsg_nothingToUpdate",
            "name at least one field to change",
        ));
    }
    state
        .conversations
        .edit(&state.db, caller(&me), &path, changes)
        .await?;
    message_answer(&req, &state, &me, &path, "update").await
}

async fn message_answer(
    req: &HttpRequest,
    state: &AppState,
    me: &Identity,
    message_id: &str,
    action: &str,
) -> Result<HttpResponse, MarketError> {
    let row = store::message(&state.db, message_id)
        .await?
        .ok_or_else(|| MarketError::from(MsgError::NotFound("message")))?;
    Ok(Envelope::new(req, Some(me), "message")
        .action(action)
        .one(message_view(&row)))
}

/// Hide (soft-delete) a message: its sender or an admin. It stays for audit.
#[utoipa::path(tag = "messaging", responses(
    (status = 200, description = "the message under `message`, `isActive: false`"),
    (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
#[delete("/v1/messages/{messageId}")]
pub async fn delete_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    state
        .conversations
        .hide(&state.db, caller(&me), &path)
        .await?;
    message_answer(&req, &state, &me, &path, "delete").await
}

const MESSAGE_FILTERS: &[&str] = &["senderId", "messageType", "isRead"];

async fn thread_messages(
    req: &HttpRequest,
    state: &AppState,
    thread_id: &str,
    extras: bool,
) -> Result<HttpResponse, MarketError> {
    let me = me(req, state).await?;
    let thread = visible_thread(&state.db, caller(&me), thread_id).await?;
    let query = ListQuery::parse(req, MESSAGE_FILTERS)?;
    let mut filter = Filter::default();
    filter.equals_any("thread_id", std::slice::from_ref(&thread.id));
    if !me.role().is_admin() {
        filter.raw("is_active = TRUE");
    }
    query.filter_by(
        &mut filter,
        &[("senderId", "sender_id"), ("messageType", "message_type")],
    );
    if let Some(read) = query.flag("isRead")? {
        filter.flag("is_read", read);
    }
    let (rows, total) = store::messages(&state.db, &filter, query.page()).await?;
    let paging = query.paging(total)?;
    let views: Vec<Value> = rows.iter().map(message_view).collect();
    let mut extra = Map::new();
    if extras {
        extra.insert("thread".into(), json!({ "listingId": thread.listing_id }));
        // The catalog's listing and amenities join here once it holds them.
        extra.insert("listing".into(), json!({}));
        extra.insert("amenities".into(), json!({}));
    }
    Ok(Envelope::new(req, Some(&me), "messages")
        .action("list")
        .list_with(&views, paging, extra))
}

/// A thread's messages in order (oldest first), paged: participants or an admin.
#[utoipa::path(tag = "messaging", responses(
    (status = 200, description = "list envelope under `messages`, plus `thread`, `listing`, `amenities`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
#[get("/v1/threadmessages/{threadId}")]
pub async fn get_thread_messages(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    thread_messages(&req, &state, &path, true).await
}

/// The same list without the extra keys (the document's `gotthreadMessages`).
#[utoipa::path(tag = "messaging", responses(
    (status = 200, description = "list envelope under `messages`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
#[get("/v1/gotthreadmessages/{threadId}")]
pub async fn got_thread_messages(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    thread_messages(&req, &state, &path, false).await
}

/// The body of `createMessageReport`. `reportedBy` must be the caller; `moderationStatus`,
/// `adminId`, `reportedAt` and `resolutionNotes` are the server's and the moderators'.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateReport {
    pub message_id: String,
    pub report_reason: String,
    #[serde(default)]
    pub reported_by: Option<String>,
    #[serde(default)]
    pub moderation_status: Option<String>,
    #[serde(default)]
    pub admin_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub reported_at: Option<Value>,
    #[serde(default)]
    pub resolution_notes: Option<String>,
}

/// Report a message the caller can see. The report starts `pending`.
#[utoipa::path(tag = "messaging", request_body = CreateReport, responses(
    (status = 201, description = "the report under `messageReport`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[post("/v1/messagereports")]
pub async fn create_report(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<super::body::Object<CreateReport>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let body = body.into_inner().0;
    check_id("messageId", &body.message_id)?;
    check_text("reportReason", &body.report_reason, REPORT_TEXT_CHARS_MAX)?;
    if body
        .reported_by
        .as_deref()
        .is_some_and(|r| r != me.user_id())
    {
        return Err(MarketError::forbidden("reportedBy must be the caller"));
    }
    let (message, _) = visible_message(&state.db, caller(&me), &body.message_id).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let row = store::create_report(
        &state.db,
        &id,
        &message.id,
        me.user_id(),
        &body.report_reason,
    )
    .await?;
    Ok(Envelope::new(&req, Some(&me), "messageReport")
        .action("create")
        .one(report_view(&row)))
}

/// A report and whether the caller may see it: the reporter, the reported message's sender,
/// or an admin.
async fn visible_report(
    state: &AppState,
    me: &Identity,
    id: &str,
) -> Result<ReportRow, MarketError> {
    let not_found = || MarketError::not_found("errMsg_reportNotFound", "no such report");
    let report = store::report(&state.db, id).await?.ok_or_else(not_found)?;
    if me.role().is_admin() || report.reported_by == me.user_id() {
        return Ok(report);
    }
    let sender = store::message(&state.db, &report.message_id)
        .await?
        .map(|m| m.sender_id);
    if sender.as_deref() == Some(me.user_id()) {
        return Ok(report);
    }
    Err(not_found())
}

/// One report: the reporter, the reported message's sender, or an admin.
#[utoipa::path(tag = "messaging", responses(
    (status = 200, description = "the report under `messageReport`"),
    (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/v1/messagereports/{messageReportId}")]
pub async fn get_report(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let report = visible_report(&state, &me, &path).await?;
    Ok(Envelope::new(&req, Some(&me), "messageReport").one(report_view(&report)))
}

const REPORT_FILTERS: &[&str] = &["messageId", "moderationStatus", "reportedBy"];

/// Reports: an admin sees all; others those they filed or that are about their messages.
#[utoipa::path(tag = "messaging", responses(
    (status = 200, description = "list envelope under `messageReports`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[get("/v1/messagereports")]
pub async fn list_reports(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    let query = ListQuery::parse(&req, REPORT_FILTERS)?;
    let mut filter = Filter::default();
    filter.raw("r.is_active = TRUE");
    if !me.role().is_admin() {
        filter.user_in(&["r.reported_by", "m.sender_id"], me.user_id());
    }
    query.filter_by(
        &mut filter,
        &[
            ("messageId", "r.message_id"),
            ("moderationStatus", "r.moderation_status"),
            ("reportedBy", "r.reported_by"),
        ],
    );
    let (rows, total) = store::reports(&state.db, &filter, query.page()).await?;
    let paging = query.paging(total)?;
    let views: Vec<Value> = rows.iter().map(report_view).collect();
    Ok(Envelope::new(&req, Some(&me), "messageReports")
        .action("list")
        .list(&views, paging))
}

/// The body of `updateMessageReport` (admins only).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateReport {
    #[serde(default)]
    pub moderation_status: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub admin_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub resolution_notes: Option<Option<String>>,
}

/// Moderate a report: assign `adminId`, set `moderationStatus`, add `resolutionNotes`.
/// Admins only (403 otherwise).
#[utoipa::path(tag = "messaging", request_body = UpdateReport, responses(
    (status = 200, description = "the report under `messageReport`"),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[patch("/v1/messagereports/{messageReportId}")]
pub async fn update_report(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<super::body::Object<UpdateReport>>,
) -> Result<HttpResponse, MarketError> {
    let me = me(&req, &state).await?;
    if !me.role().is_admin() {
        return Err(MarketError::forbidden("only admins moderate reports"));
    }
    let body = body.into_inner().0;
    if let Some(status) = &body.moderation_status {
        if !MODERATION_STATUSES.contains(&status.as_str()) {
            return Err(MarketError::bad_request(
                "errMsg_moderationStatusIsNotValid",
                "moderationStatus is pending, reviewed or closed",
            ));
        }
    }
    if let Some(Some(admin)) = &body.admin_id {
        let is_admin = users::by_id(&state.db, admin)
            .await?
            .is_some_and(|u| u.is_active && u.role().is_admin());
        if !is_admin {
            return Err(MarketError::bad_request(
                "errMsg_adminIdIsNotValid",
                "adminId must name an admin",
            ));
        }
    }
    if let Some(Some(notes)) = &body.resolution_notes {
        check_text("resolutionNotes", notes, REPORT_TEXT_CHARS_MAX)?;
    }
    let changes = store::ReportChanges {
        moderation_status: body.moderation_status,
        admin_id: body.admin_id,
        resolution_notes: body.resolution_notes,
    };
    let row = store::update_report(&state.db, &path, &changes)
        .await?
        .ok_or_else(|| MarketError::not_found("errMsg_reportNotFound", "no such report"))?;
    Ok(Envelope::new(&req, Some(&me), "messageReport")
        .action("update")
        .one(report_view(&row)))
}
