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

    /// Refreshes at once, then every interval (stretched by [`pause_after`]), until `cancel`.
    pub(crate) async fn run(&self, cancel: &CancellationToken) {
        loop {
            let took = self.refresh().await;
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(pause_after(self.interval, took)) => {}
            }
        }
    }

    /// One refresh; returns how long the query took.
    async fn refresh(&self) -> Duration {
        let started = Instant::now();
        let result = (self.stats)().await;
        let took = started.elapsed();
        match result {
            Ok(stats) => {
                metrics::histogram!("outbox_gauge_refresh_seconds").record(took.as_secs_f64());
                set(stats);
            }
            // A failed refresh leaves the last values: the relay's own health reports a
            // database outage, and the next refresh retries.
            Err(err) => tracing::warn!(error = %err, "outbox gauges not refreshed"),
        }
        took
    }
}

/// How many times a refresh's own duration the next one waits at least: the gauges' query
/// never takes more than 1% of a database connection's time, however large the table grows
/// (the count's cost grows with it).
const BUDGET_FACTOR: u32 = 100;

/// The pause before the next refresh: the configured interval, or longer when the last query
/// was slow.
fn pause_after(interval: Duration, took: Duration) -> Duration {
    interval.max(took.saturating_mul(BUDGET_FACTOR))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_refresh_stretches_the_pause_to_keep_its_cost_at_one_percent() {
        let second = Duration::from_secs(1);
        assert_eq!(pause_after(second, Duration::from_millis(3)), second);
        assert_eq!(
            pause_after(second, Duration::from_millis(75)),
            Duration::from_millis(7_500)
        );
    }
}
