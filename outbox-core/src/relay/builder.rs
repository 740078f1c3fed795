//! Relay settings and their builder.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::publisher::Publisher;
use crate::retry::RetryPolicy;
use crate::store::{Inspect, Store};

use super::gauges::Gauges;
use super::{Relay, WakeHandle};

/// The settings a relay runs with. Built by [`RelayBuilder`], which validates them.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub(crate) batch_size: usize,
    pub(crate) lease: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) concurrency: usize,
    pub(crate) retry: RetryPolicy,
    pub(crate) unavailable_backoff: (Duration, Duration),
    pub(crate) shutdown_grace: Duration,
    pub(crate) give_up_after: Option<Duration>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            concurrency: 2,
            retry: RetryPolicy::default(),
            unavailable_backoff: (Duration::from_millis(50), Duration::from_secs(5)),
            shutdown_grace: Duration::from_secs(10),
            give_up_after: None,
        }
    }
}

impl RelayConfig {
    /// Rows claimed per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// How long one batch may hold its rows.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The retry policy.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }
}

/// Builds a [`Relay`]. Start from [`Relay::builder`].
#[derive(Debug)]
#[must_use]
pub struct RelayBuilder<S, P> {
    store: S,
    publisher: P,
    config: RelayConfig,
    wake: Option<WakeHandle>,
    gauges: Option<Gauges>,
}

impl<S: Store, P: Publisher> RelayBuilder<S, P> {
    pub(crate) fn new(store: S, publisher: P) -> Self {
        Self {
            store,
            publisher,
            config: RelayConfig::default(),
            wake: None,
            gauges: None,
        }
    }

    /// Rows claimed per batch (default 500, 1 to 10,000).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.config.batch_size = batch_size;
        self
    }

    /// How long one batch may hold the rows it claimed (default 30 s, at least 100 ms). A relay
    /// that has not settled its rows by then gives them back (or loses them to the next
    /// claim, and its late acks are refused). Set it well above the broker's worst
    /// acknowledgement time.
    ///
    /// This does not make a crashed relay's keys wait that long: rows are claimed for one
    /// second at a time and the lease is renewed while the batch runs, so the keys of a relay
    /// that dies mid-batch flow again (through another relay) about a second later. A relay
    /// that cannot renew in time (its database unreachable) stops publishing the batch.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self
    }

    /// How often an idle relay looks for work without being woken (default 500 ms). This is the
    /// backstop for commits from other processes; commits in this process wake it at once.
    pub fn poll_interval(mut self, poll_interval: Duration) -> Self {
        self.config.poll_interval = poll_interval;
        self
    }

    /// How many claim → publish → settle loops run at once (default 2, 1 to 64).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.config.concurrency = concurrency;
        self
    }

    /// The retry policy for rejected messages.
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.config.retry = retry;
        self
    }

    /// Backoff bounds while the broker is unavailable (default 50 ms doubling to 5 s).
    pub fn unavailable_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.unavailable_backoff = (initial, max);
        self
    }

    /// How long `run` waits for in-flight batches after shutdown is requested (default 10 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// Makes [`Relay::run`] return [`Error::GaveUp`] once every batch has failed for `after`
    /// (the database unreachable, say), instead of waiting it out forever. Off by default: a
    /// relay in a service usually waits, and reports the outage through
    /// [`Relay::health`]; a sidecar that a supervisor restarts may rather exit.
    pub fn give_up_after(mut self, after: Duration) -> Self {
        self.config.give_up_after = Some(after);
        self
    }

    /// Shares a wake handle, for example one that producers already hold.
    pub fn wake_handle(mut self, wake: WakeHandle) -> Self {
        self.wake = Some(wake);
        self
    }

    /// Validates the settings and builds the relay.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first setting out of range.
    pub fn build(self) -> Result<Relay<S, P>> {
        let c = &self.config;
        if !(1..=10_000).contains(&c.batch_size) {
            return Err(Error::Config(format!(
                "batch_size must be between 1 and 10000, got {}",
                c.batch_size
            )));
        }
        if c.lease < Duration::from_millis(100) {
            return Err(Error::Config(format!(
                "lease must be at least 100ms, got {:?}",
                c.lease
            )));
        }
        if c.poll_interval.is_zero() {
            return Err(Error::Config("poll_interval must be above zero".into()));
        }
        if !(1..=64).contains(&c.concurrency) {
            return Err(Error::Config(format!(
                "concurrency must be between 1 and 64, got {}",
                c.concurrency
            )));
        }
        let (initial, max) = c.unavailable_backoff;
        if initial.is_zero() || initial > max {
            return Err(Error::Config(format!(
                "unavailable_backoff must satisfy 0 < initial ({initial:?}) <= max ({max:?})"
            )));
        }
        if let Some(gauges) = &self.gauges
            && gauges.interval < Duration::from_millis(100)
        {
            return Err(Error::Config(format!(
                "the gauges' interval must be at least 100ms, got {:?}",
                gauges.interval
            )));
        }
        Ok(Relay::from_parts(
            self.store,
            self.publisher,
            self.config,
            self.wake.unwrap_or_default(),
            self.gauges,
        ))
    }
}

impl<S: Store + Inspect + Clone, P: Publisher> RelayBuilder<S, P> {
    /// While [`Relay::run`] runs, refreshes the gauges `outbox_messages{status}` (pending,
    /// claimed, failed, dead, published) and `outbox_oldest_unpublished_age_seconds` every
    /// `interval` (at least 100 ms; 15 s suits a scrape every 15 to 60 s), from one
    /// [`Inspect::stats`] query, whose duration goes to the histogram
    /// `outbox_gauge_refresh_seconds`. Off by default. Alert on the oldest unpublished age:
    /// it grows when the relay stops, the broker refuses, or a key is stuck.
    ///
    /// The query counts the table's rows by status, so its cost grows with the table. The
    /// interval is a minimum: after a refresh that took `d`, the next waits at least `100 × d`,
    /// so the gauges never take more than 1% of a database connection's time (a 75 ms count of
    /// 200,000 rows on MariaDB refreshes every 7.5 s at most). `outbox_gauge_refresh_seconds`
    /// shows what the query costs.
    pub fn gauges(mut self, interval: Duration) -> Self {
        self.gauges = Some(Gauges::new(self.store.clone(), interval));
        self
    }
}
