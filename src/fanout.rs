//! After commit: apply committed credits to payees' live wallets (before the payors are
//! answered) and publish the committed feed entries as pushes (after), in commit order.
//!
//! Publishing is a task of its own, fed batch by batch in commit order: the journal writer
//! hands it a committed batch and goes on to commit the next while this one's pushes are
//! delivered here and queued for the other nodes, instead of waiting for them (the payments
//! profile showed the machine a fifth idle with the writer waiting on Redis). One task
//! publishes, so the order is kept.

use std::sync::{Arc, OnceLock};

use actors::journal::{Committed, EventSink, Submission};
use actors::registry::Registry;
use actors::wallet::{Credit, Effect, Event, Owner, Transfer, Wallet};
use actors::DomainEvent;
use async_trait::async_trait;
use protocol::Push;
use tokio::sync::{mpsc, oneshot};

use crate::bus::Hub;
use crate::notify::OfflinePush;
use crate::store::notifications::NewNotification;
use crate::ws::{listing_topic, thread_topic, user_topic};

/// Committed batches waiting to be published, at most; beyond it the journal writer waits.
const BATCHES_QUEUED_MAX: usize = 8;

/// The journal's event sink.
pub struct Fanout {
    /// Set once the wallet registry exists (it needs the journal, which needs this sink).
    pub wallets: OnceLock<Registry<Wallet, DomainEvent>>,
    /// Set once the gateway and the notifier exist: pushes to users who are offline.
    pub offline: Arc<OnceLock<OfflinePush>>,
    /// To the publishing task, in commit order.
    publishing: mpsc::Sender<Publishing>,
}

/// What the publishing task is handed, in order.
enum Publishing {
    /// A committed batch.
    Batch(Vec<Committed<DomainEvent>>),
    /// Answer once every batch handed over before this is published and has gone out to the
    /// other nodes ([`Hub::flush`]).
    Flush(oneshot::Sender<()>),
}

impl Fanout {
    /// Start the publishing task (inside a tokio runtime); it ends once this is dropped and
    /// what was queued is published.
    pub fn new(bus: Arc<Hub>) -> Self {
        let offline = Arc::new(OnceLock::new());
        let (publishing, batches) = mpsc::channel(BATCHES_QUEUED_MAX);
        tokio::spawn(publish_in_order(bus, Arc::clone(&offline), batches));
        Fanout {
            wallets: OnceLock::new(),
            offline,
            publishing,
        }
    }

    /// Resolves once every batch handed over before this call is published, and what that
    /// queued for the other nodes has gone out (or failed to). A stopping node calls it once
    /// the journal writer has ended, so that the pushes of the last commits are not dropped
    /// with the process.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.publishing.send(Publishing::Flush(done)).await.is_ok() {
            // An error means the task has ended, having published all it was handed.
            let _ = flushed.await;
        }
    }

    fn credit(&self, transfer: &Transfer, decided_by: &str) {
        // The deciding wallet applied its own side already (a deposit credits the depositor).
        let Owner::User(payee) = &transfer.credit else {
            return;
        };
        if payee == decided_by {
            return;
        }
        let (Some(version), Some(wallets)) = (transfer.credit_version.get(), self.wallets.get())
        else {
            return;
        };
        wallets.apply_if_live(
            payee,
            Effect::Credit(Credit {
                money: transfer.money,
                version,
            }),
        );
    }

    /// A stored notification: an ephemeral `notification` push to the user's live
    /// connections (the push provider for a user with none on this node is asked after the
    /// batch is published).
    fn notification_push(notification: &NewNotification) -> Push {
        Push {
            topic: user_topic(&notification.user_id),
            seq: None,
            event: protocol::Event::Notification {
                notification_id: notification.id.clone(),
                notification_kind: notification.kind.clone(),
                title: notification.title.clone(),
                body: notification.body.clone(),
            },
        }
    }

    /// Calendar days to the listing's subscribers; reservation changes to guest and host.
    fn calendar(event: actors::calendar::Event, pushes: &mut Vec<Push>) {
        use actors::calendar::Event as Cal;
        match event {
            Cal::Day(day) => {
                pushes.push(Push {
                    topic: listing_topic(&day.listing_id),
                    seq: None,
                    event: protocol::Event::CalendarDay {
                        listing_id: day.listing_id.clone(),
                        date: day.date.to_string(),
                        is_available: day.is_available,
                        booked: day.reservation_id.is_some(),
                        price_override: day.price_override.map(|m| m.amount().to_string()),
                        min_stay: day.min_stay,
                        is_active: day.is_active,
                    },
                });
            }
            Cal::Reservation(r) => {
                let event = protocol::Event::ReservationUpdated {
                    reservation_id: r.id.clone(),
                    listing_id: r.listing_id.clone(),
                    booking_status: r.booking_status.as_str().to_owned(),
                    payment_confirmation: r.payment_confirmation.as_str().to_owned(),
                    check_in: r.check_in.to_string(),
                    check_out: r.check_out.to_string(),
                    is_active: r.is_active,
                };
                for user in [&r.guest_id, &r.host_id] {
                    pushes.push(Push {
                        topic: user_topic(user),
                        seq: None,
                        event: event.clone(),
                    });
                }
            }
            Cal::Listing(_) | Cal::Ticket(_) | Cal::Record(_) => {}
        }
    }
}

#[async_trait]
impl EventSink<DomainEvent> for Fanout {
    /// Credits reach the payees' live wallets before the payors are answered.
    fn applied(&self, batch: &[Committed<DomainEvent>]) {
        for committed in batch {
            for transfer in committed.events.iter().filter_map(credited) {
                self.credit(transfer, &committed.actor.id);
            }
        }
    }

    /// A batch that may have committed: the payees it credits reload their wallets from the
    /// store, which alone knows whether the credit is there (their memory has not got it, and
    /// a credit applied here could be one that never happened). Nothing is published: what
    /// did commit is read back from the store (history, feeds, resume), not pushed.
    fn unconfirmed(&self, batch: &[Submission<DomainEvent>]) {
        let Some(wallets) = self.wallets.get() else {
            return;
        };
        for submission in batch {
            let Some(actor) = &submission.actor else {
                continue;
            };
            for transfer in submission.events.iter().filter_map(credited) {
                if let Owner::User(payee) = &transfer.credit {
                    if *payee != actor.id {
                        wallets.reset_if_live(payee);
                    }
                }
            }
        }
    }

    /// Pushes are published after the answers, in commit order, a batch at a time, by the
    /// publishing task.
    async fn committed(&self, batch: Vec<Committed<DomainEvent>>) {
        if self
            .publishing
            .send(Publishing::Batch(batch))
            .await
            .is_err()
        {
            tracing::error!("the publishing task has stopped; a committed batch is not pushed");
        }
    }
}

/// The transfer an event makes, if it credits an account.
fn credited(event: &DomainEvent) -> Option<&Transfer> {
    match event {
        DomainEvent::Wallet(Event::Transferred(transfer))
        | DomainEvent::Wallet(Event::HoldSettled {
            capture: Some(transfer),
            ..
        }) => Some(transfer),
        _ => None,
    }
}

/// Publish each committed batch's pushes, one batch after the other.
async fn publish_in_order(
    bus: Arc<Hub>,
    offline: Arc<OnceLock<OfflinePush>>,
    mut batches: mpsc::Receiver<Publishing>,
) {
    while let Some(item) = batches.recv().await {
        let batch = match item {
            Publishing::Batch(batch) => batch,
            Publishing::Flush(done) => {
                bus.flush().await;
                let _ = done.send(());
                continue;
            }
        };
        let mut pushes = Vec::new();
        let mut notified = Vec::new();
        for committed in batch {
            for event in committed.events {
                if let Some(notification) = crate::notify::of_event(&event) {
                    pushes.push(Fanout::notification_push(&notification));
                    notified.push(notification);
                }
                match event {
                    DomainEvent::Wallet(Event::Feed(entry)) => pushes.push(Push {
                        topic: user_topic(&entry.user_id),
                        seq: entry.seq.get().and_then(|seq| u64::try_from(seq).ok()),
                        event: entry.event,
                    }),
                    DomainEvent::Conversation(event) => pushes.push(Push {
                        topic: thread_topic(&event.thread_id),
                        seq: Some(event.seq),
                        event: event.push(),
                    }),
                    DomainEvent::Calendar(event) => Fanout::calendar(event, &mut pushes),
                    DomainEvent::Wallet(_) => {}
                }
            }
        }
        if let Err(error) = bus.publish_all(pushes).await {
            tracing::error!(%error, "committed events were pushed on this node only, not to the other nodes");
        }
        if let Some(offline) = offline.get() {
            for notification in &notified {
                offline.push_if_offline(&notification.user_id, &notification.id);
            }
        }
    }
}
