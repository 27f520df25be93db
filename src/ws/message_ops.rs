//! Conversation ops over the WebSocket: `post_message`, `edit_message`, `hide_message`,
//! and `mark_read` (`typing` is the reader's own: see `connection.rs`), with the semantics of their REST twins in the messaging API
//! (`src/api/marketplace/messaging.rs`): the same service calls ([`Conversations`]), the same
//! access rules, and the same idempotency for posts: the frame `id` is the key, per sender,
//! shared with REST's `Idempotency-Key`.

use actix_web::web;
use actors::conversation::{Draft, MessageChanges, MessageType};
use actors::IdempotencyKey;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use protocol::{ClientFrame, ErrorCode, ServerFrame};

use crate::api::AppState;
use crate::conversations::{Caller, MsgError};

/// The longest message accepted, in characters (as over REST).
pub const CONTENT_CHARS_MAX: usize = 10_000;
/// The longest media URL accepted.
pub const MEDIA_URL_CHARS_MAX: usize = 2048;

/// An op refused at once: the error frame to send.
pub(super) type Refused = Box<ServerFrame>;

/// The answer of a checked op, computed off the reader.
pub(super) type Answer = BoxFuture<'static, Option<ServerFrame>>;

fn error(id: Option<String>, code: ErrorCode, message: impl Into<String>) -> ServerFrame {
    ServerFrame::Error {
        id,
        code,
        message: message.into(),
    }
}

/// The error frame for a failed op.
pub(super) fn failed(id: Option<String>, failure: &MsgError) -> ServerFrame {
    match failure {
        MsgError::NotFound(what) => error(id, ErrorCode::NotFound, format!("no such {what}")),
        MsgError::Forbidden(why) => error(id, ErrorCode::Forbidden, *why),
        MsgError::Closed => error(id, ErrorCode::Conflict, "the thread is closed"),
        MsgError::Conflict(_) => error(id, ErrorCode::Conflict, failure.to_string()),
        MsgError::Actor(actors::ActorError::Busy(_)) => error(
            id,
            ErrorCode::Busy,
            "the thread is busy; retry with the same id",
        ),
        MsgError::Actor(actors::ActorError::KeyReused) => error(
            id,
            ErrorCode::BadRequest,
            "id: already used for a different message",
        ),
        MsgError::Actor(unconfirmed @ actors::ActorError::Unconfirmed(_)) => {
            tracing::error!(error = %unconfirmed, "a conversation op was not confirmed");
            super::wallet_ops::unconfirmed(id)
        }
        MsgError::Actor(other) => {
            tracing::error!(error = %other, "a conversation op failed");
            error(
                id,
                ErrorCode::Internal,
                "the op failed; nothing was changed",
            )
        }
        MsgError::Store(other) => {
            tracing::error!(error = %other, "a conversation op failed");
            error(
                id,
                ErrorCode::Internal,
                "the op failed; nothing was changed",
            )
        }
    }
}

fn check_len(id: &Option<String>, field: &str, value: &str, max: usize) -> Result<(), Refused> {
    let chars = value.chars().count();
    if chars == 0 || chars > max {
        return Err(Box::new(error(
            id.clone(),
            ErrorCode::BadRequest,
            format!("{field}: must be 1 to {max} characters"),
        )));
    }
    Ok(())
}

/// Check a conversation op and return the future that answers it, or the error frame that
/// refuses it at once. `frame` must be one of the conversation ops.
pub(super) fn prepare(
    state: &web::Data<AppState>,
    user_id: &str,
    admin: bool,
    frame: ClientFrame,
) -> Result<Answer, Refused> {
    let state = web::Data::clone(state);
    let me = user_id.to_owned();
    match frame {
        ClientFrame::PostMessage {
            id,
            thread_id,
            content,
            message_type,
            media_url,
        } => {
            let Some(key) = id.as_deref() else {
                return Err(Box::new(error(
                    None,
                    ErrorCode::BadRequest,
                    "id: required for post_message (it makes a retry safe)",
                )));
            };
            let key = IdempotencyKey::parse(key).map_err(|msg| {
                Box::new(error(
                    id.clone(),
                    ErrorCode::BadRequest,
                    format!("id: {msg}"),
                ))
            })?;
            check_len(&id, "content", &content, CONTENT_CHARS_MAX)?;
            if let Some(url) = &media_url {
                check_len(&id, "media_url", url, MEDIA_URL_CHARS_MAX)?;
            }
            let message_type = match message_type.as_deref() {
                None => MessageType::Text,
                Some(raw) => MessageType::parse(raw).ok_or_else(|| {
                    Box::new(error(
                        id.clone(),
                        ErrorCode::BadRequest,
                        "message_type: text, media or system",
                    ))
                })?,
            };
            let draft = Draft {
                sender_id: me.clone(),
                content,
                message_type,
                media_url,
                is_moderated: false,
                is_flagged: false,
                flagged_by: None,
                flag_reason: None,
            };
            Ok(async move {
                let caller = Caller {
                    user_id: &me,
                    admin,
                };
                Some(
                    match state
                        .conversations
                        .post(&state.db, caller, &thread_id, draft, Some(&key))
                        .await
                    {
                        Ok(message) => ServerFrame::Posted {
                            id,
                            message: message.view(),
                        },
                        Err(failure) => failed(id, &failure),
                    },
                )
            }
            .boxed())
        }
        ClientFrame::EditMessage {
            id,
            message_id,
            content,
        } => {
            check_len(&id, "content", &content, CONTENT_CHARS_MAX)?;
            let changes = MessageChanges {
                content: Some(content),
                ..MessageChanges::default()
            };
            Ok(async move {
                let caller = Caller {
                    user_id: &me,
                    admin,
                };
                let result = state
                    .conversations
                    .edit(&state.db, caller, &message_id, changes)
                    .await;
                Some(ack(id, result))
            }
            .boxed())
        }
        ClientFrame::HideMessage { id, message_id } => Ok(async move {
            let caller = Caller {
                user_id: &me,
                admin,
            };
            let result = state
                .conversations
                .hide(&state.db, caller, &message_id)
                .await;
            Some(ack(id, result))
        }
        .boxed()),
        ClientFrame::MarkRead {
            id,
            thread_id,
            up_to_seq,
        } => Ok(async move {
            let caller = Caller {
                user_id: &me,
                admin,
            };
            Some(
                match state
                    .conversations
                    .mark_read(&state.db, caller, &thread_id, up_to_seq)
                    .await
                {
                    Ok(seq) => ServerFrame::Ack { id, thread_id, seq },
                    Err(failure) => failed(id, &failure),
                },
            )
        }
        .boxed()),
        other => Err(Box::new(error(
            other.id().map(str::to_owned),
            ErrorCode::BadRequest,
            "not a conversation op",
        ))),
    }
}

/// The `ack` of an edit or hide.
fn ack(id: Option<String>, result: Result<(String, u64), MsgError>) -> ServerFrame {
    match result {
        Ok((thread_id, seq)) => ServerFrame::Ack { id, thread_id, seq },
        Err(failure) => failed(id, &failure),
    }
}
