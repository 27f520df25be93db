//! The conversation service: the conversation actors' registry and loader. Dialects (the
//! messaging REST API, the WebSocket ops) build commands; this module has no dialect in it.

use std::sync::Arc;

use actors::conversation::{Command, Conversation, Refusal, Reply};
use actors::registry::{ArbiterPool, Loaded, Loader, Registry, RegistrySettings, StoredReply};
use actors::{ActorError, DomainEvent, IdempotencyKey, Request, StoredKeys};
use async_trait::async_trait;

use crate::store::idempotency::{self, ReplyLookups};
use crate::store::{conversations, journal, Db};

/// Loads conversations from the store.
struct ConversationLoader {
    db: Db,
    replies: ReplyLookups,
}

#[async_trait]
impl Loader<Conversation> for ConversationLoader {
    async fn load(&self, id: &String) -> Result<Loaded<Conversation>, String> {
        // Raise the epoch first, as for wallets: a batch of an older activation that commits
        // after this point is refused.
        let epoch = journal::raise_epoch(&self.db, "conversation", id)
            .await
            .map_err(|e| e.to_string())?;
        let thread = conversations::thread(&self.db, id)
            .await
            .map_err(|e| e.to_string())?
            .map(conversations::ThreadRow::into_state);
        Ok(Loaded {
            state: Conversation { thread },
            epoch,
        })
    }

    async fn stored_reply(
        &self,
        id: &String,
        key: &IdempotencyKey,
    ) -> Result<Option<StoredReply>, String> {
        self.replies.get(id, key.as_str()).await
    }

    async fn stored_keys(&self, id: &String, max: usize) -> Result<StoredKeys, String> {
        idempotency::stored_keys(&self.db, "conversation", id, max)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The conversations of every thread.
pub struct Conversations {
    registry: Registry<Conversation, DomainEvent>,
}

impl Conversations {
    pub fn new(
        db: Db,
        pool: ArbiterPool,
        journal: actors::journal::JournalHandle<DomainEvent>,
        settings: RegistrySettings,
    ) -> Arc<Self> {
        let replies = ReplyLookups::start(db.clone(), "conversation");
        let loader = Arc::new(ConversationLoader { db, replies });
        Arc::new(Conversations {
            registry: Registry::new(pool, loader, journal, settings),
        })
    }

    pub fn registry(&self) -> &Registry<Conversation, DomainEvent> {
        &self.registry
    }

    /// Send a command to a thread's conversation and wait for its durable answer.
    pub async fn ask(
        &self,
        thread_id: &str,
        command: Command,
        key: Option<(IdempotencyKey, String)>,
    ) -> Result<Reply, ActorError> {
        let request = match key {
            Some((key, fingerprint)) => Request::with_key(command, key, fingerprint),
            None => Request::plain(command),
        };
        self.registry.ask(thread_id.to_owned(), request).await
    }
}

/// Why a conversation operation was not done. Each dialect maps these to its error shape.
#[derive(Debug, thiserror::Error)]
pub enum MsgError {
    /// No such thread or message, or it was deleted (or the caller may not know it exists).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The thread is closed: nothing can be posted.
    #[error("the thread is closed")]
    Closed,
    /// An open thread on the same context exists (its id).
    #[error("an open thread exists for this context")]
    Conflict(String),
    #[error(transparent)]
    Actor(#[from] ActorError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Who asks.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub user_id: &'a str,
    /// `admin` or `superAdmin`: may read, edit and hide anything, and moderate.
    pub admin: bool,
}

/// The thread, if the caller may see it: participants and admins. Others get `NotFound`, as
/// for a thread that does not exist, so ids cannot be probed.
pub async fn visible_thread(
    db: &Db,
    caller: Caller<'_>,
    thread_id: &str,
) -> Result<conversations::ThreadRow, MsgError> {
    match conversations::thread(db, thread_id).await? {
        Some(row) if row.is_active && (caller.admin || row.is_participant(caller.user_id)) => {
            Ok(row)
        }
        _ => Err(MsgError::NotFound("thread")),
    }
}

/// The message and its thread, if the caller may see them.
pub async fn visible_message(
    db: &Db,
    caller: Caller<'_>,
    message_id: &str,
) -> Result<(conversations::MessageRow, conversations::ThreadRow), MsgError> {
    let Some(message) = conversations::message(db, message_id).await? else {
        return Err(MsgError::NotFound("message"));
    };
    let thread = visible_thread(db, caller, &message.thread_id)
        .await
        .map_err(|_| MsgError::NotFound("message"))?;
    if !message.is_active && !caller.admin {
        return Err(MsgError::NotFound("message"));
    }
    Ok((message, thread))
}

fn refused(refusal: actors::conversation::Refusal) -> MsgError {
    match refusal {
        Refusal::NotFound => MsgError::NotFound("thread"),
        Refusal::NotParticipant => {
            MsgError::Forbidden("only the thread's guest and host may do this")
        }
        Refusal::Closed => MsgError::Closed,
        Refusal::NeedsClaim(_) => MsgError::Actor(ActorError::Unavailable(
            "a thread change needed a context claim".into(),
        )),
    }
}

/// The change a `Done` reply names.
fn done(reply: Reply) -> Result<(u64, actors::conversation::Thread), MsgError> {
    match reply {
        Reply::Done { seq, thread } => Ok((seq, thread)),
        Reply::Refused(refusal) => Err(refused(refusal)),
        other => Err(MsgError::Actor(ActorError::Unavailable(format!(
            "unexpected conversation reply {other:?}"
        )))),
    }
}

impl Conversations {
    /// Post a message as the caller. `key` (an `Idempotency-Key` or a frame id) makes a retry
    /// return the first message instead of posting again; keys are per sender.
    pub async fn post(
        &self,
        db: &Db,
        caller: Caller<'_>,
        thread_id: &str,
        draft: actors::conversation::Draft,
        key: Option<&IdempotencyKey>,
    ) -> Result<actors::conversation::Message, MsgError> {
        const NOT_A_PARTICIPANT: &str = "only the thread's guest and host may post to it";
        // Posting is messaging's hot path. A live conversation holds its thread and refuses a
        // caller who is not a participant itself; reading the thread from the store first was
        // a fifth of the node's CPU in the fanout profile (BENCHMARKS.md section 4). A thread
        // whose actor is not live is read first, so that an id nobody may see never activates
        // an actor (or raises an epoch in the store).
        if !self.registry.is_live(thread_id) {
            let thread = visible_thread(db, caller, thread_id).await?;
            if !thread.is_participant(caller.user_id) {
                return Err(MsgError::Forbidden(NOT_A_PARTICIPANT));
            }
        }
        let key = match key {
            Some(key) => Some(namespaced(caller.user_id, thread_id, key, &draft)?),
            None => None,
        };
        match self.ask(thread_id, Command::Post(draft), key).await? {
            Reply::Posted(message) => Ok(message),
            // As `visible_thread` answers: a thread is not shown to whoever may not see it.
            Reply::Refused(Refusal::NotParticipant) if !caller.admin => {
                Err(MsgError::NotFound("thread"))
            }
            Reply::Refused(Refusal::NotParticipant) => Err(MsgError::Forbidden(NOT_A_PARTICIPANT)),
            Reply::Refused(refusal) => Err(refused(refusal)),
            other => Err(MsgError::Actor(ActorError::Unavailable(format!(
                "unexpected conversation reply {other:?}"
            )))),
        }
    }

    /// Edit a message: its sender or an admin; the recipient may only mark it read.
    pub async fn edit(
        &self,
        db: &Db,
        caller: Caller<'_>,
        message_id: &str,
        changes: actors::conversation::MessageChanges,
    ) -> Result<(String, u64), MsgError> {
        let (message, thread) = visible_message(db, caller, message_id).await?;
        let marks_read = changes
            == actors::conversation::MessageChanges {
                is_read: Some(true),
                ..Default::default()
            };
        let recipient =
            thread.is_participant(caller.user_id) && message.sender_id != caller.user_id;
        if changes.is_read.is_some() && !caller.admin && !recipient {
            return Err(MsgError::Forbidden(
                "only the recipient (or an admin) marks a message read",
            ));
        }
        let may = caller.admin
            || (message.sender_id == caller.user_id && changes.is_read.is_none())
            || (marks_read && recipient);
        if !may {
            return Err(MsgError::Forbidden(
                "only the sender or an admin may edit a message; the recipient may mark it read",
            ));
        }
        let command = Command::Edit {
            message_id: message.id,
            by: caller.user_id.to_owned(),
            changes,
        };
        let (seq, _) = done(self.ask(&thread.id, command, None).await?)?;
        Ok((thread.id, seq))
    }

    /// Hide (soft-delete) a message: its sender or an admin.
    pub async fn hide(
        &self,
        db: &Db,
        caller: Caller<'_>,
        message_id: &str,
    ) -> Result<(String, u64), MsgError> {
        let (message, thread) = visible_message(db, caller, message_id).await?;
        if !caller.admin && message.sender_id != caller.user_id {
            return Err(MsgError::Forbidden(
                "only the sender or an admin may delete a message",
            ));
        }
        if !message.is_active {
            let seq = u64::try_from(thread.last_seq).unwrap_or_default();
            return Ok((thread.id, seq));
        }
        let command = Command::Hide {
            message_id: message.id,
            by: caller.user_id.to_owned(),
        };
        let (seq, _) = done(self.ask(&thread.id, command, None).await?)?;
        Ok((thread.id, seq))
    }

    /// Mark a thread read by the caller (a participant) up to a sequence number.
    pub async fn mark_read(
        &self,
        db: &Db,
        caller: Caller<'_>,
        thread_id: &str,
        up_to: u64,
    ) -> Result<u64, MsgError> {
        let thread = visible_thread(db, caller, thread_id).await?;
        if !thread.is_participant(caller.user_id) {
            return Err(MsgError::Forbidden(
                "only the thread's guest and host read it",
            ));
        }
        let command = Command::MarkRead {
            reader: caller.user_id.to_owned(),
            up_to,
        };
        Ok(done(self.ask(thread_id, command, None).await?)?.0)
    }

    /// Create a thread. When its context is claimed by a thread that no longer holds it (a
    /// claim left by a change that never happened), the stale claim is dropped and the
    /// creation tried once more.
    pub async fn create_thread(
        &self,
        db: &Db,
        new: &conversations::NewThread,
    ) -> Result<conversations::ThreadRow, MsgError> {
        let context = conversations::context_key(
            &new.guest_id,
            &new.host_id,
            new.listing_id.as_deref(),
            new.reservation_id.as_deref(),
        );
        for _ in 0..2 {
            match conversations::create_thread(db, new).await? {
                conversations::Created::Thread(row) => return Ok(row),
                conversations::Created::Conflict(holder) => {
                    if self.holds(&holder, &context).await? {
                        return Err(MsgError::Conflict(holder));
                    }
                    conversations::release_stale_claim(db, &context, &holder).await?;
                }
            }
        }
        Err(MsgError::Conflict("a concurrent thread".into()))
    }

    /// Whether a thread is open and active on a context, as its actor has decided (a read:
    /// answered once its pending changes committed).
    async fn holds(&self, thread_id: &str, context: &str) -> Result<bool, MsgError> {
        Ok(match self.ask(thread_id, Command::Get, None).await? {
            Reply::Thread(thread) => thread.holds_context() && thread.context() == context,
            _ => false,
        })
    }

    /// Change a thread: participants or an admin. A change that leaves the thread open on a
    /// context it does not hold (a reopen, or a move of an open thread to another listing or
    /// reservation) is first refused by the actor with the context it needs; the context is
    /// then claimed (409 when another open thread holds it) and the change sent again with the
    /// claim. Claims are released only by the journal, in the batch that closes, deletes or
    /// moves the thread, or as stale (see `create_thread`).
    pub async fn update_thread(
        &self,
        db: &Db,
        caller: Caller<'_>,
        thread_id: &str,
        changes: actors::conversation::ThreadChanges,
    ) -> Result<actors::conversation::Thread, MsgError> {
        visible_thread(db, caller, thread_id).await?;
        let mut claimed = None;
        // A claim is needed at most once per context; three rounds cover a context that
        // changed under a concurrent update once.
        for _ in 0..3 {
            let command = Command::Update {
                by: caller.user_id.to_owned(),
                changes: changes.clone(),
                claimed: claimed.take(),
            };
            match self.ask(thread_id, command, None).await? {
                Reply::Refused(actors::conversation::Refusal::NeedsClaim(context)) => {
                    if let Some(holder) =
                        conversations::claim_context(db, &context, thread_id).await?
                    {
                        if self.holds(&holder, &context).await? {
                            return Err(MsgError::Conflict(holder));
                        }
                        conversations::release_stale_claim(db, &context, &holder).await?;
                        if let Some(other) =
                            conversations::claim_context(db, &context, thread_id).await?
                        {
                            return Err(MsgError::Conflict(other));
                        }
                    }
                    claimed = Some(context);
                }
                reply => return done(reply).map(|(_, thread)| thread),
            }
        }
        Err(MsgError::Conflict(
            "the thread changed concurrently; retry".into(),
        ))
    }
}

/// A key namespaced by the sender, with a fingerprint of what is posted.
/// Keys are stored with the thread's actor, so a key names one post per sender and thread:
/// the same key sent to another thread is a post of its own there.
fn namespaced(
    sender: &str,
    thread_id: &str,
    key: &IdempotencyKey,
    draft: &actors::conversation::Draft,
) -> Result<(IdempotencyKey, String), MsgError> {
    let namespaced = crate::wallets::fingerprint("message", &(sender, key.as_str()));
    let key = IdempotencyKey::parse(&namespaced)
        .map_err(|e| MsgError::Actor(ActorError::Unavailable(e.to_owned())))?;
    Ok((
        key,
        crate::wallets::fingerprint("post", &(thread_id, draft)),
    ))
}
