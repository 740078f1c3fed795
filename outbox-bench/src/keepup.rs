//! Keep-up: eight producers commit as fast as they can while an in-process relay publishes to
//! NATS JetStream. The relay keeps up when it publishes as fast as they commit and the backlog
//! between them does not grow.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use outbox_publishers::NatsPublisher;
use outbox_sqlx::{Message, Relay};
use sqlx::Pool;

use crate::BoxError;
use crate::backend::Backend;
use crate::fixtures::{Counting, Table};

/// What a keep-up run measured.
pub(crate) struct KeepUp {
    /// Messages published / messages committed, over the run after its first sixth.
    pub(crate) ratio: f64,
    /// Committed but not yet published when the producers stopped.
    pub(crate) final_backlog: u64,
    /// The same, at the end of the first sixth.
    pub(crate) early_backlog: u64,
    pub(crate) commits_per_s: f64,
}

pub(crate) async fn run<DB: Backend>(
    pool: &Pool<DB>,
    nats_url: &str,
    seconds: u64,
) -> Result<KeepUp, BoxError> {
    let table = Table::create(pool, "keepup").await?;
    let (js, stream) = crate::fixtures::nats_stream(nats_url, "keepup").await?;
    let counting = Arc::new(Counting::new(
        NatsPublisher::new(js.clone()).subject_prefix(stream.clone()),
        u64::MAX,
    ));
    let relay = Relay::builder(table.outbox.store(pool.clone()), Arc::clone(&counting)).build()?;
    let wake = relay.wake_handle();
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { relay.run(stop.cancelled_owned()).await }
    });

    let committed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut producers = Vec::new();
    for p in 0..8u64 {
        let (pool, outbox, wake, committed) = (
            pool.clone(),
            table.outbox.clone(),
            wake.clone(),
            Arc::clone(&committed),
        );
        producers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                let message = Message::json("bench.keepup", &serde_json::json!({ "p": p }))?
                    .key(format!("p{p}-{}", n % 64))?;
                let mut tx = pool.begin().await?;
                outbox.enqueue(&mut *tx, message).await?;
                tx.commit().await?;
                committed.fetch_add(1, Ordering::Relaxed);
                wake.wake();
                n += 1;
            }
            Ok::<(), BoxError>(())
        }));
    }
    let sample = || {
        (
            committed.load(Ordering::Relaxed),
            counting.done.load(Ordering::Relaxed),
        )
    };
    tokio::time::sleep(Duration::from_secs(seconds) / 6).await;
    let (c0, p0) = sample();
    tokio::time::sleep_until(until.into()).await;
    let (c1, p1) = sample();
    for producer in producers {
        producer.await??;
    }
    let total = committed.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(120);
    while counting.done.load(Ordering::Relaxed) < total {
        if Instant::now() > deadline {
            return Err("keep-up run: the backlog did not drain within 120s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    running.await??;
    js.delete_stream(&stream).await?;
    table.drop_table(pool).await?;
    Ok(KeepUp {
        ratio: (p1 - p0) as f64 / (c1 - c0).max(1) as f64,
        final_backlog: c1.saturating_sub(p1),
        early_backlog: c0.saturating_sub(p0),
        commits_per_s: (c1 - c0) as f64 / (seconds as f64 * 5.0 / 6.0),
    })
}
