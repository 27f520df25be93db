//! Push delivery: a [`PushProvider`] sends one notification to one device; the [`Notifier`]
//! sends a stored notification to every active device of its user and records each push in
//! `push_deliveries`.
//!
//! Whether to push at all (say, only to users who are not online) is the caller's decision:
//! the notifier pushes when asked.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use actors::DomainEvent;
use tokio::sync::Semaphore;

use crate::config::PushProviderKind;
use crate::store::notifications::NewNotification;
use crate::store::notifications::{self, DeliveryStatus};
pub use crate::store::notifications::{Device, Notification};
use crate::store::Db;

/// Most active devices one user may have registered.
pub const DEVICES_PER_USER_MAX: i64 = 20;

/// How long one push may take before it counts as failed.
pub const PUSH_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Deliveries the [`RecordingProvider`] keeps; the oldest are dropped beyond it.
pub const RECORDED_DELIVERIES_MAX: usize = 10_000;

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The provider refused this push (a bad token, a payload it does not take).
    #[error("the provider refused the push: {0}")]
    Rejected(String),
    /// The provider could not be reached or failed; a later push may work.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
}

/// A push service (APNs, FCM, Web Push, or the built-in recorder).
#[async_trait]
pub trait PushProvider: Send + Sync {
    /// The name written in `push_deliveries.provider`.
    fn name(&self) -> &'static str;
    /// Push one notification to one device. Implementations must not log the device's token.
    async fn send(&self, device: &Device, notification: &Notification) -> Result<(), PushError>;
}

/// One push the [`RecordingProvider`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPush {
    pub device_id: String,
    pub notification_id: String,
}

/// A provider that sends nothing and remembers the last [`RECORDED_DELIVERIES_MAX`] pushes,
/// for development and tests.
#[derive(Debug, Default)]
pub struct RecordingProvider {
    recorded: Mutex<VecDeque<RecordedPush>>,
}

impl RecordingProvider {
    pub fn new() -> Self {
        RecordingProvider::default()
    }

    /// The recorded pushes, oldest first.
    pub fn recorded(&self) -> Vec<RecordedPush> {
        match self.recorded.lock() {
            Ok(recorded) => recorded.iter().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().iter().cloned().collect(),
        }
    }
}

#[async_trait]
impl PushProvider for RecordingProvider {
    fn name(&self) -> &'static str {
        "recording"
    }

    async fn send(&self, device: &Device, notification: &Notification) -> Result<(), PushError> {
        let mut recorded = match self.recorded.lock() {
            Ok(recorded) => recorded,
            Err(poisoned) => poisoned.into_inner(),
        };
        if recorded.len() >= RECORDED_DELIVERIES_MAX {
            recorded.pop_front();
        }
        recorded.push_back(RecordedPush {
            device_id: device.id.clone(),
            notification_id: notification.id.clone(),
        });
        Ok(())
    }
}

/// The provider a setting names.
pub fn provider_for(kind: PushProviderKind) -> Arc<dyn PushProvider> {
    match kind {
        PushProviderKind::Recording => Arc::new(RecordingProvider::new()),
    }
}

/// Sends stored notifications to their users' devices.
pub struct Notifier {
    db: Db,
    provider: Arc<dyn PushProvider>,
}

impl Notifier {
    pub fn new(db: Db, provider: Arc<dyn PushProvider>) -> Self {
        Notifier { db, provider }
    }

    /// The provider pushes go through.
    pub fn provider(&self) -> &Arc<dyn PushProvider> {
        &self.provider
    }

    /// Push the notification to every active device of its user (at most
    /// [`DEVICES_PER_USER_MAX`]) and record one `push_deliveries` row per device. Each push
    /// is claimed before it is sent, so a notification reaches a device at most once however
    /// often (or concurrently) this is called; a failed push stays failed. Failures are
    /// logged, never returned: the notification itself is already stored.
    #[tracing::instrument(skip(self))]
    pub async fn deliver(&self, notification_id: &str) {
        let notification = match notifications::by_id(&self.db, notification_id).await {
            Ok(Some(notification)) => notification,
            Ok(None) => {
                tracing::warn!("deliver: no such notification");
                return;
            }
            Err(error) => {
                tracing::error!(%error, "deliver: reading the notification failed");
                return;
            }
        };
        let devices = match notifications::active_devices(
            &self.db,
            &notification.user_id,
            DEVICES_PER_USER_MAX,
        )
        .await
        {
            Ok(devices) => devices,
            Err(error) => {
                tracing::error!(%error, "deliver: reading the devices failed");
                return;
            }
        };
        for device in &devices {
            self.push(device, &notification).await;
        }
    }

    async fn push(&self, device: &Device, notification: &Notification) {
        let delivery_id = uuid::Uuid::now_v7().to_string();
        let claimed = notifications::claim_delivery(
            &self.db,
            &delivery_id,
            &notification.id,
            &device.id,
            self.provider.name(),
        )
        .await;
        match claimed {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                tracing::error!(%error, device_id = %device.id, "deliver: claiming the push failed");
                return;
            }
        }
        let sent =
            tokio::time::timeout(PUSH_SEND_TIMEOUT, self.provider.send(device, notification)).await;
        let status = match sent {
            Ok(Ok(())) => DeliveryStatus::Sent,
            Ok(Err(error)) => {
                tracing::warn!(%error, device_id = %device.id, "push failed");
                DeliveryStatus::Failed
            }
            Err(_) => {
                tracing::warn!(device_id = %device.id, "push timed out");
                DeliveryStatus::Failed
            }
        };
        if let Err(error) = notifications::finish_delivery(&self.db, &delivery_id, status).await {
            tracing::error!(%error, device_id = %device.id, "deliver: recording the push failed");
        }
    }
}

/// The longest notification body made from a message.
const PREVIEW_CHARS_MAX: usize = 200;

/// The notification a committed event makes for a user, if any: a new message for the other
/// participant, a payment request for its payor. Written in the same journal batch as the
/// event (so it exists exactly when the event does) and pushed after commit. Its id comes
/// from the event's own (`msg-<message id>`, `req-<transaction id>`), so both places name
/// the same row.
pub fn of_event(event: &DomainEvent) -> Option<NewNotification> {
    match event {
        DomainEvent::Conversation(event) => {
            let actors::conversation::Change::Posted(message) = &event.change else {
                return None;
            };
            let recipient = if message.sender_id == event.guest_id {
                &event.host_id
            } else {
                &event.guest_id
            };
            Some(NewNotification {
                id: format!("msg-{}", message.id),
                user_id: recipient.clone(),
                kind: "message".into(),
                title: "New message".into(),
                body: message.content.chars().take(PREVIEW_CHARS_MAX).collect(),
                data: serde_json::json!({
                    "threadId": message.thread_id,
                    "messageId": message.id,
                    "senderId": message.sender_id,
                    "seq": message.seq,
                }),
                created_at: message.sent_at_ms,
            })
        }
        DomainEvent::Wallet(actors::wallet::Event::RequestOpened(request)) => {
            Some(NewNotification {
                id: format!("req-{}", request.transaction_id),
                user_id: request.payor.clone(),
                kind: "payment_request".into(),
                title: "Payment request".into(),
                body: format!("{}: {}", request.money, request.description)
                    .chars()
                    .take(PREVIEW_CHARS_MAX)
                    .collect(),
                data: serde_json::json!({
                    "transactionId": request.transaction_id,
                    "payee": request.payee,
                    "amount": request.money.amount().to_string(),
                    "currency": request.money.currency().code(),
                }),
                created_at: request.at_ms,
            })
        }
        _ => None,
    }
}

/// Pushes made while a batch's events fan out, run off the journal writer.
const OFFLINE_PUSHES_IN_FLIGHT_MAX: usize = 64;

/// After commit: a notification for a user with no live connection on this node goes to
/// their devices through the push provider, off the journal writer. At most
/// [`OFFLINE_PUSHES_IN_FLIGHT_MAX`] run at once; beyond that a push is skipped (the
/// notification stays stored and listed), counted in `node_offline_pushes_skipped_total`, and
/// logged at most once per [`SKIPPED_WARNING_INTERVAL`]: a burst skips thousands, and one line
/// each buried everything else in the log.
pub struct OfflinePush {
    gateway: Arc<crate::ws::Gateway>,
    notifier: Arc<Notifier>,
    in_flight: Arc<Semaphore>,
    warned: Mutex<Throttle>,
}

/// Shortest time between two warnings about skipped pushes.
const SKIPPED_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Counts events and says when to report them: at the first one, then at most once per
/// interval, with how many happened since the last report.
#[derive(Debug)]
struct Throttle {
    interval: Duration,
    last: Option<std::time::Instant>,
    unreported: u64,
}

impl Throttle {
    fn new(interval: Duration) -> Self {
        Throttle {
            interval,
            last: None,
            unreported: 0,
        }
    }

    /// Count one event at `now`; the number to report, when it is time to report.
    fn hit(&mut self, now: std::time::Instant) -> Option<u64> {
        self.unreported += 1;
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.interval)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }
}

impl OfflinePush {
    pub fn new(gateway: Arc<crate::ws::Gateway>, notifier: Arc<Notifier>) -> Self {
        OfflinePush {
            gateway,
            notifier,
            in_flight: Arc::new(Semaphore::new(OFFLINE_PUSHES_IN_FLIGHT_MAX)),
            warned: Mutex::new(Throttle::new(SKIPPED_WARNING_INTERVAL)),
        }
    }

    /// True when the user has a live connection on this node.
    pub fn is_online(&self, user_id: &str) -> bool {
        self.gateway.is_connected(user_id)
    }

    /// Push a stored notification to the user's devices, unless they are online.
    pub fn push_if_offline(&self, user_id: &str, notification_id: &str) {
        if self.is_online(user_id) {
            return;
        }
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            self.gateway.metrics.offline_pushes_skipped.inc();
            let report = self
                .warned
                .lock()
                .map_or(None, |mut throttle| throttle.hit(std::time::Instant::now()));
            if let Some(skipped) = report {
                tracing::warn!(
                    skipped,
                    notification_id,
                    "too many pushes in flight; skipped pushes (their notifications are stored)"
                );
            }
            return;
        };
        let notifier = Arc::clone(&self.notifier);
        let id = notification_id.to_owned();
        tokio::spawn(async move {
            notifier.deliver(&id).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::Throttle;

    /// The first skip is reported at once; later ones at most once per interval, with how many
    /// there were since the last report, so none goes uncounted.
    #[test]
    fn a_burst_is_reported_once_per_interval_with_its_count() {
        let mut throttle = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(throttle.hit(start), Some(1));
        for n in 1..1000 {
            assert_eq!(throttle.hit(start + Duration::from_millis(n)), None);
        }
        assert_eq!(throttle.hit(start + Duration::from_secs(10)), Some(1000));
        assert_eq!(throttle.hit(start + Duration::from_secs(11)), None);
        assert_eq!(throttle.hit(start + Duration::from_secs(21)), Some(2));
    }
}
