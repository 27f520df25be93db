//! The node-local subscriber registry, shared by both transports.
//!
//! Every method is synchronous and holds a map guard only for the map operation itself; no
//! guard is held while a subscriber runs or across an `.await`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use super::{Delivery, Subscriber, SubscriberId};

/// A topic's local subscribers. Copy-on-write: a delivery clones the `Arc` and iterates it
/// without a map guard; a change copies the list only if a delivery is iterating it.
type Subscribers = Arc<Vec<(SubscriberId, Arc<dyn Subscriber>)>>;

#[derive(Default)]
pub(super) struct Registry {
    /// Topic → its local subscribers. A topic is present only while it has at least one.
    topics: DashMap<String, Subscribers>,
    /// Subscriber → its topics, so that closing a connection costs its topics, not all topics.
    by_subscriber: DashMap<SubscriberId, Vec<String>>,
    /// Number of (topic, subscriber) pairs, kept so that `stats` does not walk every topic.
    pairs: AtomicUsize,
}

/// What one delivery did.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Local subscribers the push was offered to.
    pub offered: usize,
    /// Topics that lost their last local subscriber because a subscriber refused the push.
    pub emptied: Vec<String>,
}

impl Registry {
    /// Add `(topic, id)`. Adding a pair again replaces its subscriber rather than duplicating it.
    pub fn add(&self, topic: &str, id: SubscriberId, sub: Arc<dyn Subscriber>) {
        {
            let mut topics = self.by_subscriber.entry(id).or_default();
            if !topics.iter().any(|t| t == topic) {
                topics.push(topic.to_owned());
            }
        }
        let mut entry = self.topics.entry(topic.to_owned()).or_default();
        let subs = Arc::make_mut(entry.value_mut());
        match subs.iter_mut().find(|(other, _)| *other == id) {
            Some(slot) => slot.1 = sub,
            None => {
                subs.push((id, sub));
                self.pairs.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Remove `(topic, id)`. Returns true if the topic has no local subscriber left.
    pub fn remove(&self, topic: &str, id: SubscriberId) -> bool {
        if let Some(mut topics) = self.by_subscriber.get_mut(&id) {
            topics.retain(|t| t != topic);
        }
        // Checked again under the shard lock: a concurrent `add` for this id may have refilled it.
        self.by_subscriber
            .remove_if(&id, |_, topics| topics.is_empty());
        self.remove_from_topic(topic, id)
    }

    /// Remove `id` from every topic. Returns the topics left without a local subscriber.
    pub fn remove_all(&self, id: SubscriberId) -> Vec<String> {
        let Some((_, topics)) = self.by_subscriber.remove(&id) else {
            return Vec::new();
        };
        topics
            .into_iter()
            .filter(|topic| self.remove_from_topic(topic, id))
            .collect()
    }

    pub fn has(&self, topic: &str) -> bool {
        self.topics.contains_key(topic)
    }

    /// Every topic with a local subscriber (to re-subscribe after a reconnect).
    pub fn topic_names(&self) -> Vec<String> {
        self.topics
            .iter()
            .map(|entry| entry.key().clone())
            .collect()
    }

    /// (topics with local subscribers, (topic, subscriber) pairs).
    pub fn stats(&self) -> (usize, usize) {
        (self.topics.len(), self.pairs.load(Ordering::Relaxed))
    }

    /// Offer `push` to every local subscriber of its topic; drop those that refuse it from
    /// every topic.
    pub fn deliver(&self, push: &Delivery) -> Outcome {
        let Some(subs) = self
            .topics
            .get(push.topic.as_str())
            .map(|entry| Arc::clone(entry.value()))
        else {
            return Outcome::default();
        };
        let mut emptied = Vec::new();
        for (id, sub) in subs.iter() {
            if !sub.deliver(push) {
                tracing::debug!(
                    subscriber = id.0,
                    topic = %push.topic,
                    "subscriber refused a delivery; dropping it from every topic"
                );
                emptied.extend(self.remove_all(*id));
            }
        }
        Outcome {
            offered: subs.len(),
            emptied,
        }
    }

    /// Remove `id` from `topic`'s list, and the topic itself once its list is empty. Returns
    /// true if this removed the topic.
    fn remove_from_topic(&self, topic: &str, id: SubscriberId) -> bool {
        let mut removed = false;
        let emptied = self
            .topics
            .remove_if_mut(topic, |_, subs| {
                let subs = Arc::make_mut(subs);
                let before = subs.len();
                subs.retain(|(other, _)| *other != id);
                removed = subs.len() < before;
                subs.is_empty()
            })
            .is_some();
        if removed {
            self.pairs.fetch_sub(1, Ordering::Relaxed);
        }
        emptied
    }
}
