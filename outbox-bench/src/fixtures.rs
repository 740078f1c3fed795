//! Shared set-up: fresh outbox tables, preloaded backlogs, counting publishers.

use std::sync::atomic::{AtomicU64, Ordering};

use outbox_sqlx::{Envelope, Message, Outbox, PublishError, Publisher};
use sqlx::Pool;
use tokio::sync::Notify;

use crate::BoxError;
use crate::backend::Backend;

/// How a backlog's keys are spread.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Keys {
    /// Row `i` has key `i % n`.
    Uniform(usize),
    /// Every row has the same key.
    One,
    /// Half the rows on one key, the rest uniform on `n` keys.
    Skewed(usize),
}

impl Keys {
    fn key(self, i: usize) -> String {
        match self {
            Keys::Uniform(n) => (i % n).to_string(),
            Keys::One => "hot".to_owned(),
            Keys::Skewed(_) if i.is_multiple_of(2) => "hot".to_owned(),
            Keys::Skewed(n) => (i % n).to_string(),
        }
    }
}

/// A fresh outbox table, dropped by [`Table::drop_table`].
pub(crate) struct Table<DB: Backend> {
    pub(crate) outbox: Outbox<DB>,
}

impl<DB: Backend> Table<DB> {
    pub(crate) async fn create(pool: &Pool<DB>, name: &str) -> Result<Self, BoxError> {
        let table = format!("outbox_bench_{name}_{}", std::process::id());
        let outbox = Outbox::<DB>::with_table(&table)?;
        for sql in outbox.statements().drop_all() {
            DB::exec(pool, &sql).await?;
        }
        outbox.migrate(&mut *pool.acquire().await?).await?;
        Ok(Self { outbox })
    }

    pub(crate) fn quoted(&self) -> String {
        self.outbox.statements().quoted_table()
    }

    pub(crate) async fn preload(
        &self,
        pool: &Pool<DB>,
        rows: usize,
        keys: Keys,
    ) -> Result<(), BoxError> {
        let mut done = 0;
        while done < rows {
            let n = (rows - done).min(5_000);
            let messages = (done..done + n)
                .map(|i| {
                    Message::json("bench.event", &serde_json::json!({ "i": i }))?.key(keys.key(i))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut tx = pool.begin().await?;
            self.outbox.enqueue_all(&mut *tx, messages).await?;
            tx.commit().await?;
            done += n;
        }
        DB::exec(pool, &DB::analyze(&self.quoted())).await?;
        Ok(())
    }

    pub(crate) async fn drop_table(self, pool: &Pool<DB>) -> Result<(), BoxError> {
        for sql in self.outbox.statements().drop_all() {
            DB::exec(pool, &sql).await?;
        }
        Ok(())
    }
}

/// Counts acknowledged messages and signals when a target is reached.
pub(crate) struct Counting<P> {
    pub(crate) inner: P,
    pub(crate) done: AtomicU64,
    pub(crate) target: u64,
    pub(crate) reached: Notify,
}

impl<P> Counting<P> {
    pub(crate) fn new(inner: P, target: u64) -> Self {
        Self {
            inner,
            done: AtomicU64::new(0),
            target,
            reached: Notify::new(),
        }
    }
}

impl<P: Publisher> Publisher for Counting<P> {
    async fn publish(&self, batch: &[Envelope]) -> Vec<Result<(), PublishError>> {
        let outcomes = self.inner.publish(batch).await;
        let ok = outcomes.iter().filter(|o| o.is_ok()).count() as u64;
        if self.done.fetch_add(ok, Ordering::Relaxed) + ok >= self.target {
            self.reached.notify_one();
        }
        outcomes
    }
}

/// The median of `values` (which must not be empty).
/// Runs the baseline (`run(false)`) and ours (`run(true)`) `rounds` times, alternating which
/// goes first so drift does not favour one side; returns each round's (baseline, ours).
pub(crate) async fn interleaved<T, F, Fut>(
    rounds: usize,
    mut run: F,
) -> Result<Vec<(T, T)>, BoxError>
where
    F: FnMut(bool) -> Fut,
    Fut: std::future::Future<Output = Result<T, BoxError>>,
{
    let mut pairs = Vec::with_capacity(rounds);
    for r in 0..rounds {
        pairs.push(if r % 2 == 0 {
            let base = run(false).await?;
            (base, run(true).await?)
        } else {
            let ours = run(true).await?;
            (run(false).await?, ours)
        });
    }
    Ok(pairs)
}

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A JetStream context and a fresh in-memory stream bound to `<name>.>`; returns the stream's
/// name, which is also the subject prefix to publish under.
pub(crate) async fn nats_stream(
    url: &str,
    name: &str,
) -> Result<(async_nats::jetstream::Context, String), BoxError> {
    let client = async_nats::connect(url)
        .await
        .map_err(|e| format!("NATS is not reachable at {url}: {e}"))?;
    let js = async_nats::jetstream::new(client);
    let stream = format!("outboxbench{name}{}", std::process::id());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("{stream}.>")],
        storage: async_nats::jetstream::stream::StorageType::Memory,
        ..Default::default()
    })
    .await?;
    Ok((js, stream))
}
