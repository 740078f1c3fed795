//! End-to-end latency: commit returned → JetStream acknowledged, relay in the producer's
//! process, woken after each commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outbox_publishers::NatsPublisher;
use outbox_sqlx::{Envelope, Message, PublishError, Publisher, Relay, Uuid};
use sqlx::PgPool;

use crate::BoxError;
use crate::fixtures::Table;

/// Records when each message was acknowledged.
struct Timed<P> {
    inner: P,
    acked: Mutex<HashMap<Uuid, Instant>>,
}

impl<P: Publisher> Publisher for Timed<P> {
    async fn publish(&self, batch: &[Envelope]) -> Vec<Result<(), PublishError>> {
        let outcomes = self.inner.publish(batch).await;
        let now = Instant::now();
        let mut acked = self.acked.lock().unwrap();
        for (env, outcome) in batch.iter().zip(&outcomes) {
            if outcome.is_ok() {
                acked.insert(env.id, now);
            }
        }
        outcomes
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50 and p99 in milliseconds at `rate` messages per second for `seconds`.
pub(crate) async fn in_process(
    pool: &PgPool,
    nats_url: &str,
    rate: u64,
    seconds: u64,
) -> Result<(f64, f64), BoxError> {
    let table = Table::create(pool, "latency").await?;
    let (js, stream) = crate::fixtures::nats_stream(nats_url, "latency").await?;
    let timed = Arc::new(Timed {
        inner: NatsPublisher::new(js.clone()).subject_prefix(stream.clone()),
        acked: Mutex::new(HashMap::new()),
    });
    let relay = Relay::builder(table.outbox.store(pool.clone()), Arc::clone(&timed))
        .batch_size(500)
        .poll_interval(Duration::from_millis(100))
        .build()?;
    let wake = relay.wake_handle();
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move { relay.run(stop.cancelled_owned()).await }
    });

    let total = rate * seconds;
    let mut committed = HashMap::with_capacity(total as usize);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..total {
        ticker.tick().await;
        let message =
            Message::json("bench.latency", &serde_json::json!({ "i": i }))?.key(i % 100)?;
        let id = message.id();
        let mut tx = pool.begin().await?;
        table.outbox.enqueue(&mut *tx, message).await?;
        tx.commit().await?;
        committed.insert(id, Instant::now());
        wake.wake();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while timed.acked.lock().unwrap().len() < total as usize {
        if Instant::now() > deadline {
            return Err("latency run: not every message was acknowledged within 60s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    running.await??;
    js.delete_stream(&stream).await?;
    table.drop_table(pool).await?;

    let acked = timed.acked.lock().unwrap();
    let mut latencies: Vec<Duration> = committed
        .iter()
        .map(|(id, at)| acked[id].saturating_duration_since(*at))
        .collect();
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok((
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
    ))
}
