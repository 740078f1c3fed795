//! The gauges a running relay refreshes: its outbox's messages by status and the age of the
//! oldest unpublished one, from one `stats` query per interval.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::store::{Inspect, OutboxStats};

type Stats = dyn Fn() -> Pin<Box<dyn Future<Output = Result<OutboxStats>> + Send>> + Send + Sync;

/// Reads the store's counts every `interval` and sets the gauges.
#[derive(Clone)]
pub(crate) struct Gauges {
    pub(crate) interval: Duration,
    stats: Arc<Stats>,
}

impl fmt::Debug for Gauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gauges")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Gauges {
    pub(crate) fn new<S: Inspect + Clone>(store: S, interval: Duration) -> Self {
        Self {
            interval,
            stats: Arc::new(move || {
                let store = store.clone();
                Box::pin(async move { store.stats().await })
            }),
        }
    }

    /// Refreshes at once, then every interval, until `cancel`.
    pub(crate) async fn run(&self, cancel: &CancellationToken) {
        loop {
            self.refresh().await;
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    async fn refresh(&self) {
        let started = Instant::now();
        match (self.stats)().await {
            Ok(stats) => {
                metrics::histogram!("outbox_gauge_refresh_seconds")
                    .record(started.elapsed().as_secs_f64());
                set(stats);
            }
            // A failed refresh leaves the last values: the relay's own health reports a
            // database outage, and the next refresh retries.
            Err(err) => tracing::warn!(error = %err, "outbox gauges not refreshed"),
        }
    }
}

fn set(stats: OutboxStats) {
    for (status, n) in [
        ("pending", stats.pending),
        ("claimed", stats.claimed),
        ("failed", stats.failed),
        ("dead", stats.dead),
        ("published", stats.published),
    ] {
        metrics::gauge!("outbox_messages", "status" => status).set(n as f64);
    }
    let age = stats.oldest_unpublished_age.unwrap_or_default();
    metrics::gauge!("outbox_oldest_unpublished_age_seconds").set(age.as_secs_f64());
}
