//! The conversation actor: one per message thread. It owns the thread's participants, its
//! open/closed state, the sequence of its events, and its read marks, and it is the only
//! writer of all of them.
//!
//! Every change of a thread (a message posted, edited or hidden, a read mark, a thread update)
//! takes the thread's next sequence number, so every participant sees one order, and a client
//! that reconnects with the last sequence it saw is sent exactly the events after it. The
//! sequence is assigned here, in memory, because this actor is the thread's single writer; a
//! failed batch resets the actor, and the next activation reloads the sequence from the store.

use serde::{Deserialize, Serialize};

use crate::entity::{Entity, Outcome};
use crate::wallet::now_ms;

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    Text,
    Media,
    System,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Text => "text",
            MessageType::Media => "media",
            MessageType::System => "system",
        }
    }

    /// The enum's index, as the marketplace shows it (`messageType_idx`).
    pub fn index(self) -> u8 {
        match self {
            MessageType::Text => 0,
            MessageType::Media => 1,
            MessageType::System => 2,
        }
    }

    pub fn parse(raw: &str) -> Option<MessageType> {
        match raw {
            "text" => Some(MessageType::Text),
            "media" => Some(MessageType::Media),
            "system" => Some(MessageType::System),
            _ => None,
        }
    }
}

/// A message as posted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub thread_id: String,
    /// The thread sequence number of the post.
    pub seq: u64,
    pub sender_id: String,
    pub content: String,
    pub message_type: MessageType,
    pub media_url: Option<String>,
    pub is_moderated: bool,
    pub is_flagged: bool,
    pub flagged_by: Option<String>,
    pub flag_reason: Option<String>,
    pub sent_at_ms: i64,
}

/// What a new message says; the actor adds the id, the sequence and the time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    pub sender_id: String,
    pub content: String,
    pub message_type: MessageType,
    pub media_url: Option<String>,
    pub is_moderated: bool,
    pub is_flagged: bool,
    pub flagged_by: Option<String>,
    pub flag_reason: Option<String>,
}

/// Fields of a message an edit changes; `None` leaves a field as it is. For the optional
/// text fields, `Some(None)` clears them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageChanges {
    pub content: Option<String>,
    pub media_url: Option<Option<String>>,
    pub is_moderated: Option<bool>,
    pub is_flagged: Option<bool>,
    pub flagged_by: Option<Option<String>>,
    pub flag_reason: Option<Option<String>>,
    pub is_read: Option<bool>,
}

/// Fields of a thread an update changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThreadChanges {
    pub is_open: Option<bool>,
    pub is_active: Option<bool>,
    pub listing_id: Option<Option<String>>,
    pub reservation_id: Option<Option<String>>,
}

/// The thread's state, as the actor holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thread {
    pub id: String,
    pub guest_id: String,
    pub host_id: String,
    pub listing_id: Option<String>,
    pub reservation_id: Option<String>,
    pub is_open: bool,
    pub is_active: bool,
    /// The sequence number of the thread's latest event (0: none yet).
    pub last_seq: u64,
    /// Messages posted (hidden ones included: they stay for audit).
    pub message_count: u64,
    pub last_message_at_ms: Option<i64>,
    /// Up to which sequence number the guest and the host have read.
    pub guest_read_seq: u64,
    pub host_read_seq: u64,
}

/// The context of a thread: no two open, active threads share one. Guest, host, listing and
/// reservation, with `-` for an absent link (ids never contain a newline).
pub fn context_key(
    guest_id: &str,
    host_id: &str,
    listing_id: Option<&str>,
    reservation_id: Option<&str>,
) -> String {
    format!(
        "{guest_id}\n{host_id}\n{}\n{}",
        listing_id.unwrap_or("-"),
        reservation_id.unwrap_or("-")
    )
}

impl Thread {
    /// The context this thread holds while open and active.
    pub fn context(&self) -> String {
        context_key(
            &self.guest_id,
            &self.host_id,
            self.listing_id.as_deref(),
            self.reservation_id.as_deref(),
        )
    }

    /// Whether the thread holds its context (is open and active).
    pub fn holds_context(&self) -> bool {
        self.is_open && self.is_active
    }

    pub fn is_participant(&self, user_id: &str) -> bool {
        self.guest_id == user_id || self.host_id == user_id
    }

    /// The other participant.
    pub fn other(&self, user_id: &str) -> &str {
        if self.guest_id == user_id {
            &self.host_id
        } else {
            &self.guest_id
        }
    }
}

/// A conversation in memory. `None` when the store has no such thread: every command is then
/// refused, and the registry passivates the actor like any other.
#[derive(Debug)]
pub struct Conversation {
    pub thread: Option<Thread>,
}

/// What one can ask a conversation.
#[derive(Debug, Clone)]
pub enum Command {
    /// Post a message. Refused unless the sender is a participant and the thread is open and
    /// active.
    Post(Draft),
    /// Edit a message. The caller has checked that `by` may edit it (its sender, or an admin).
    Edit {
        message_id: String,
        by: String,
        changes: MessageChanges,
    },
    /// Hide (soft-delete) a message.
    Hide { message_id: String, by: String },
    /// Mark the thread read by a participant up to a sequence number (clamped to the latest).
    MarkRead { reader: String, up_to: u64 },
    /// Change the thread's state. A change that leaves the thread open and active on a
    /// context it is not open on now (a reopen, or a move to another listing or reservation)
    /// needs that context claimed first (`claimed`); without it the answer is
    /// `Refused(NeedsClaim)` naming the context, and nothing changes.
    Update {
        by: String,
        changes: ThreadChanges,
        claimed: Option<String>,
    },
    /// The thread's state (a read).
    Get,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// No such thread, or it was deleted.
    NotFound,
    /// The caller is not a participant.
    NotParticipant,
    /// The thread is closed: nothing can be posted to it.
    Closed,
    /// The change needs this context claimed first.
    NeedsClaim(String),
}

/// A conversation's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Posted(Message),
    /// A change took effect as this sequence number (or changed nothing: `seq` is then the
    /// thread's latest).
    Done {
        seq: u64,
        thread: Thread,
    },
    Thread(Thread),
    Refused(Refusal),
}

/// One change of a thread, as it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    Posted(Message),
    Edited {
        message_id: String,
        changes: MessageChanges,
    },
    Hidden {
        message_id: String,
    },
    Read {
        reader: String,
        up_to: u64,
    },
    ThreadChanged(Thread),
}

/// What a conversation journals: a change, the sequence number it took, and the thread's
/// counters after it.
#[derive(Debug, Clone)]
pub struct Event {
    pub thread_id: String,
    pub seq: u64,
    pub at_ms: i64,
    pub by: String,
    pub change: Change,
    pub message_count: u64,
    pub last_message_at_ms: Option<i64>,
    /// Who may see it: the participants.
    pub guest_id: String,
    pub host_id: String,
}

impl Message {
    /// The message as the real-time protocol shows it.
    pub fn view(&self) -> protocol::ThreadMessage {
        protocol::ThreadMessage {
            id: self.id.clone(),
            thread_id: self.thread_id.clone(),
            seq: self.seq,
            sender_id: self.sender_id.clone(),
            content: self.content.clone(),
            message_type: self.message_type.as_str().to_owned(),
            media_url: self.media_url.clone(),
            sent_at: self.sent_at_ms,
        }
    }
}

impl Event {
    /// The push this change becomes on `thread:<id>` once committed.
    pub fn push(&self) -> protocol::Event {
        match &self.change {
            Change::Posted(message) => protocol::Event::MessagePosted {
                message: message.view(),
            },
            Change::Edited {
                message_id,
                changes,
            } => protocol::Event::MessageEdited {
                message_id: message_id.clone(),
                content: changes.content.clone(),
                media_url: changes
                    .media_url
                    .as_ref()
                    .map(|url| url.clone().unwrap_or_default()),
                is_flagged: changes.is_flagged,
                is_moderated: changes.is_moderated,
                is_read: changes.is_read,
            },
            Change::Hidden { message_id } => protocol::Event::MessageHidden {
                message_id: message_id.clone(),
            },
            Change::Read { reader, up_to } => protocol::Event::ReadMarked {
                user_id: reader.clone(),
                up_to_seq: *up_to,
            },
            Change::ThreadChanged(thread) => protocol::Event::ThreadUpdated {
                thread_id: thread.id.clone(),
                is_open: thread.is_open,
                is_active: thread.is_active,
                listing_id: thread.listing_id.clone(),
                reservation_id: thread.reservation_id.clone(),
            },
        }
    }
}

impl Conversation {
    fn event(thread: &Thread, by: &str, change: Change, at_ms: i64) -> Event {
        Event {
            thread_id: thread.id.clone(),
            seq: thread.last_seq,
            at_ms,
            by: by.to_owned(),
            change,
            message_count: thread.message_count,
            last_message_at_ms: thread.last_message_at_ms,
            guest_id: thread.guest_id.clone(),
            host_id: thread.host_id.clone(),
        }
    }

    fn post(thread: &mut Thread, draft: Draft) -> Outcome<Event, Reply> {
        if !thread.is_participant(&draft.sender_id) {
            return Outcome::reply(Reply::Refused(Refusal::NotParticipant));
        }
        if !thread.is_open {
            return Outcome::reply(Reply::Refused(Refusal::Closed));
        }
        let at_ms = now_ms();
        thread.last_seq += 1;
        thread.message_count += 1;
        thread.last_message_at_ms = Some(at_ms);
        let message = Message {
            id: uuid::Uuid::new_v4().to_string(),
            thread_id: thread.id.clone(),
            seq: thread.last_seq,
            sender_id: draft.sender_id,
            content: draft.content,
            message_type: draft.message_type,
            media_url: draft.media_url,
            is_moderated: draft.is_moderated,
            is_flagged: draft.is_flagged,
            flagged_by: draft.flagged_by,
            flag_reason: draft.flag_reason,
            sent_at_ms: at_ms,
        };
        // The sender has read their own message.
        if message.sender_id == thread.guest_id {
            thread.guest_read_seq = thread.last_seq;
        } else {
            thread.host_read_seq = thread.last_seq;
        }
        let event = Self::event(
            thread,
            &message.sender_id,
            Change::Posted(message.clone()),
            at_ms,
        );
        Outcome {
            events: vec![event],
            reply: Reply::Posted(message),
        }
    }

    fn change(thread: &mut Thread, by: &str, change: Change) -> Outcome<Event, Reply> {
        thread.last_seq += 1;
        let event = Self::event(thread, by, change, now_ms());
        Outcome {
            events: vec![event],
            reply: Reply::Done {
                seq: thread.last_seq,
                thread: thread.clone(),
            },
        }
    }

    fn mark_read(thread: &mut Thread, reader: String, up_to: u64) -> Outcome<Event, Reply> {
        let up_to = up_to.min(thread.last_seq);
        let mark = if reader == thread.guest_id {
            &mut thread.guest_read_seq
        } else if reader == thread.host_id {
            &mut thread.host_read_seq
        } else {
            return Outcome::reply(Reply::Refused(Refusal::NotParticipant));
        };
        if up_to <= *mark {
            // Read marks only move forward: nothing to store.
            return Outcome::reply(Reply::Done {
                seq: thread.last_seq,
                thread: thread.clone(),
            });
        }
        *mark = up_to;
        let by = reader.clone();
        Self::change(thread, &by, Change::Read { reader, up_to })
    }

    fn update(
        thread: &mut Thread,
        by: String,
        changes: ThreadChanges,
        claimed: Option<String>,
    ) -> Outcome<Event, Reply> {
        let before = thread.clone();
        let mut after = thread.clone();
        if let Some(open) = changes.is_open {
            after.is_open = open;
        }
        if let Some(active) = changes.is_active {
            after.is_active = active;
        }
        if let Some(listing) = changes.listing_id {
            after.listing_id = listing;
        }
        if let Some(reservation) = changes.reservation_id {
            after.reservation_id = reservation;
        }
        let needs = after.holds_context()
            && !(before.holds_context() && before.context() == after.context());
        if needs && claimed.as_deref() != Some(after.context().as_str()) {
            return Outcome::reply(Reply::Refused(Refusal::NeedsClaim(after.context())));
        }
        *thread = after;
        if *thread == before {
            return Outcome::reply(Reply::Done {
                seq: thread.last_seq,
                thread: thread.clone(),
            });
        }
        thread.last_seq += 1;
        let snapshot = thread.clone();
        let event = Self::event(
            thread,
            &by,
            Change::ThreadChanged(snapshot.clone()),
            now_ms(),
        );
        Outcome {
            events: vec![event],
            reply: Reply::Done {
                seq: thread.last_seq,
                thread: snapshot,
            },
        }
    }
}

impl Entity for Conversation {
    const KIND: &'static str = "conversation";
    type Id = String;
    type Command = Command;
    type Reply = Reply;
    type Event = Event;
    /// Conversations receive nothing from other entities.
    type Effect = ();

    fn handle(&mut self, command: Command) -> Outcome<Event, Reply> {
        let Some(thread) = self.thread.as_mut() else {
            return Outcome::reply(Reply::Refused(Refusal::NotFound));
        };
        if let Command::Get = command {
            return Outcome::reply(Reply::Thread(thread.clone()));
        }
        if !thread.is_active {
            return Outcome::reply(Reply::Refused(Refusal::NotFound));
        }
        match command {
            Command::Post(draft) => Self::post(thread, draft),
            Command::Edit {
                message_id,
                by,
                changes,
            } => Self::change(
                thread,
                &by,
                Change::Edited {
                    message_id,
                    changes,
                },
            ),
            Command::Hide { message_id, by } => {
                Self::change(thread, &by, Change::Hidden { message_id })
            }
            Command::MarkRead { reader, up_to } => Self::mark_read(thread, reader, up_to),
            Command::Update {
                by,
                changes,
                claimed,
            } => Self::update(thread, by, changes, claimed),
            Command::Get => Outcome::reply(Reply::Thread(thread.clone())),
        }
    }

    fn apply(&mut self, (): ()) {}
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn conversation() -> Conversation {
        Conversation {
            thread: Some(Thread {
                id: "t1".into(),
                guest_id: "g".into(),
                host_id: "h".into(),
                listing_id: None,
                reservation_id: None,
                is_open: true,
                is_active: true,
                last_seq: 0,
                message_count: 0,
                last_message_at_ms: None,
                guest_read_seq: 0,
                host_read_seq: 0,
            }),
        }
    }

    fn draft(sender: &str) -> Draft {
        Draft {
            sender_id: sender.into(),
            content: "hello".into(),
            message_type: MessageType::Text,
            media_url: None,
            is_moderated: false,
            is_flagged: false,
            flagged_by: None,
            flag_reason: None,
        }
    }

    #[test]
    fn every_change_takes_the_next_sequence_number() {
        let mut c = conversation();
        let first = c.handle(Command::Post(draft("g")));
        let Reply::Posted(m) = first.reply else {
            panic!("{:?}", first.reply)
        };
        assert_eq!(m.seq, 1);
        let second = c.handle(Command::Post(draft("h")));
        assert_eq!(second.events[0].seq, 2);
        let read = c.handle(Command::MarkRead {
            reader: "g".into(),
            up_to: 99,
        });
        assert_eq!(
            read.events[0].change,
            Change::Read {
                reader: "g".into(),
                up_to: 2
            }
        );
        assert_eq!(read.events[0].seq, 3);
        let thread = c.thread.as_ref().unwrap();
        assert_eq!((thread.message_count, thread.last_seq), (2, 3));
    }

    #[test]
    fn outsiders_closed_and_deleted_threads_are_refused_without_a_change() {
        let mut c = conversation();
        let outsider = c.handle(Command::Post(draft("x")));
        assert_eq!(outsider.reply, Reply::Refused(Refusal::NotParticipant));
        assert!(outsider.events.is_empty());
        c.handle(Command::Update {
            by: "h".into(),
            changes: ThreadChanges {
                is_open: Some(false),
                ..ThreadChanges::default()
            },
            claimed: None,
        });
        let closed = c.handle(Command::Post(draft("g")));
        assert_eq!(closed.reply, Reply::Refused(Refusal::Closed));
        c.handle(Command::Update {
            by: "h".into(),
            changes: ThreadChanges {
                is_active: Some(false),
                ..ThreadChanges::default()
            },
            claimed: None,
        });
        let gone = c.handle(Command::MarkRead {
            reader: "g".into(),
            up_to: 1,
        });
        assert_eq!(gone.reply, Reply::Refused(Refusal::NotFound));
        assert_eq!(c.thread.as_ref().unwrap().last_seq, 2);
    }

    #[test]
    fn reopening_or_moving_an_open_thread_needs_its_new_context_claimed() {
        let mut c = conversation();
        let close = |c: &mut Conversation, open: bool, claimed: Option<String>| {
            c.handle(Command::Update {
                by: "g".into(),
                changes: ThreadChanges {
                    is_open: Some(open),
                    ..ThreadChanges::default()
                },
                claimed,
            })
        };
        assert_eq!(
            close(&mut c, false, None).events.len(),
            1,
            "closing needs no claim"
        );
        let context = c.thread.as_ref().unwrap().context();
        let refused = close(&mut c, true, None);
        assert_eq!(
            refused.reply,
            Reply::Refused(Refusal::NeedsClaim(context.clone()))
        );
        assert!(refused.events.is_empty());
        assert!(!c.thread.as_ref().unwrap().is_open, "nothing changed");
        let wrong = close(&mut c, true, Some("another".into()));
        assert!(matches!(
            wrong.reply,
            Reply::Refused(Refusal::NeedsClaim(_))
        ));
        assert_eq!(close(&mut c, true, Some(context)).events.len(), 1);
        // A move of the open thread to a listing needs that context.
        let moved = c.handle(Command::Update {
            by: "g".into(),
            changes: ThreadChanges {
                listing_id: Some(Some("l1".into())),
                ..ThreadChanges::default()
            },
            claimed: None,
        });
        let target = context_key("g", "h", Some("l1"), None);
        assert_eq!(moved.reply, Reply::Refused(Refusal::NeedsClaim(target)));
    }

    #[test]
    fn read_marks_only_move_forward() {
        let mut c = conversation();
        c.handle(Command::Post(draft("h")));
        c.handle(Command::Post(draft("h")));
        assert_eq!(
            c.handle(Command::MarkRead {
                reader: "g".into(),
                up_to: 2
            })
            .events
            .len(),
            1
        );
        let again = c.handle(Command::MarkRead {
            reader: "g".into(),
            up_to: 1,
        });
        assert!(again.events.is_empty());
        assert_eq!(c.thread.as_ref().unwrap().guest_read_seq, 2);
    }
}
