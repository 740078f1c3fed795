//! What a running relay reports about itself.

use std::time::SystemTime;

use tokio::sync::watch;

/// A relay's health, as [`Relay::health`](super::Relay::health) reports it: when a claim last
/// succeeded and what is failing now. A service's readiness probe reads it; a watch receiver
/// from [`Relay::watch_health`](super::Relay::watch_health) is told of every change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// When a claim last reached the store and came back (whether or not it found rows).
    pub last_claim: Option<SystemTime>,
    /// Since when every batch has failed (the store unreachable, a setting the database
    /// refuses); `None` while batches succeed.
    pub failing_since: Option<SystemTime>,
    /// The error of the last failed batch, while batches fail.
    pub error: Option<String>,
    /// Since when the broker has reported itself unavailable; `None` while it takes messages.
    pub broker_unavailable_since: Option<SystemTime>,
    /// The broker's last reason for being unavailable, while it is.
    pub broker_error: Option<String>,
}

impl Health {
    /// Whether the last batch reached the store and the broker took messages.
    pub fn is_healthy(&self) -> bool {
        self.failing_since.is_none() && self.broker_unavailable_since.is_none()
    }
}

/// The sending side, shared by a relay's loops.
#[derive(Debug)]
pub(crate) struct HealthCell(watch::Sender<Health>);

impl Default for HealthCell {
    fn default() -> Self {
        Self(watch::Sender::new(Health::default()))
    }
}

impl HealthCell {
    pub(crate) fn get(&self) -> Health {
        self.0.borrow().clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Health> {
        self.0.subscribe()
    }

    /// A batch reached the store; `broker_error` is the broker's reason when it was unavailable.
    pub(crate) fn batch_done(&self, broker_error: Option<&str>) {
        let now = SystemTime::now();
        self.0.send_if_modified(|h| {
            // `last_claim` moves on every batch; tell watchers only when the state changes.
            let changed = h.last_claim.is_none()
                || h.failing_since.is_some()
                || h.broker_unavailable_since.is_some() != broker_error.is_some();
            h.last_claim = Some(now);
            h.failing_since = None;
            h.error = None;
            match broker_error {
                Some(reason) => {
                    h.broker_unavailable_since.get_or_insert(now);
                    h.broker_error = Some(reason.to_owned());
                }
                None => {
                    h.broker_unavailable_since = None;
                    h.broker_error = None;
                }
            }
            changed
        });
    }

    /// A batch failed with `error`; returns since when batches have been failing.
    pub(crate) fn batch_failed(&self, error: &str) -> SystemTime {
        let now = SystemTime::now();
        let mut since = now;
        self.0.send_modify(|h| {
            since = *h.failing_since.get_or_insert(now);
            h.error = Some(error.to_owned());
        });
        since
    }
}
