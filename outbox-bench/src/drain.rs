//! Drain rates: the relay, the bare SQL floor, and the naive status-column design.

use std::sync::Arc;
use std::time::{Duration, Instant};

use outbox_sqlx::memory::NullPublisher;
use outbox_sqlx::{Inspect, Publisher, Relay, Store};
use sqlx::Pool;

use crate::BoxError;
use crate::backend::Backend;
use crate::fixtures::{Counting, Keys, Table};

/// Settings of one relay drain.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DrainSpec {
    pub(crate) rows: usize,
    pub(crate) batch: usize,
    pub(crate) relays: usize,
    pub(crate) concurrency: usize,
    /// How often the relay refreshes its gauges, if at all.
    pub(crate) gauges: Option<Duration>,
}

/// Preloads `spec.rows` rows spread by `keys`, then drains them with `spec.relays` relays and
/// returns rows per second.
pub(crate) async fn relay<DB: Backend, P: Publisher + Clone>(
    pool: &Pool<DB>,
    table: &Table<DB>,
    keys: Keys,
    spec: DrainSpec,
    publisher: P,
) -> Result<f64, BoxError> {
    relay_on(pool, table, keys, spec, publisher, || {
        table.outbox.store(pool.clone())
    })
    .await
}

/// The relay on the stores `store` makes (one per relay), after loading the backlog through
/// `pool`.
pub(crate) async fn relay_on<DB: Backend, P: Publisher + Clone, S: Store + Inspect + Clone>(
    pool: &Pool<DB>,
    table: &Table<DB>,
    keys: Keys,
    spec: DrainSpec,
    publisher: P,
    store: impl Fn() -> S,
) -> Result<f64, BoxError> {
    table.preload(pool, spec.rows, keys).await?;
    let counting = Arc::new(Counting::new(publisher, spec.rows as u64));
    let stop = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let mut running = Vec::new();
    for _ in 0..spec.relays {
        let builder = Relay::builder(store(), Arc::clone(&counting))
            .batch_size(spec.batch)
            .concurrency(spec.concurrency);
        let relay = match spec.gauges {
            Some(every) => builder.gauges(every).build()?,
            None => builder.build()?,
        };
        let stop = stop.clone();
        running.push(tokio::spawn(async move {
            relay.run(stop.cancelled_owned()).await
        }));
    }
    tokio::time::timeout(Duration::from_secs(600), counting.reached.notified())
        .await
        .map_err(|_| "relay drain did not finish within 600s")?;
    let elapsed = started.elapsed();
    stop.cancel();
    for task in running {
        task.await??;
    }
    Ok(spec.rows as f64 / elapsed.as_secs_f64())
}

/// The relay to a null publisher.
pub(crate) async fn relay_null<DB: Backend>(
    pool: &Pool<DB>,
    table: &Table<DB>,
    keys: Keys,
    spec: DrainSpec,
) -> Result<f64, BoxError> {
    relay(pool, table, keys, spec, NullPublisher).await
}

/// The `drain()` API on the same backlog as [`relay_null`]: one call, which returns when
/// everything is published; rows per second.
pub(crate) async fn call<DB: Backend>(
    pool: &Pool<DB>,
    table: &Table<DB>,
    keys: Keys,
    spec: DrainSpec,
) -> Result<f64, BoxError> {
    table.preload(pool, spec.rows, keys).await?;
    let relay = Relay::builder(table.outbox.store(pool.clone()), NullPublisher)
        .batch_size(spec.batch)
        .concurrency(spec.concurrency)
        .build()?;
    let started = Instant::now();
    let published = tokio::time::timeout(Duration::from_secs(600), relay.drain())
        .await
        .map_err(|_| "drain() did not return within 600s")??;
    let elapsed = started.elapsed();
    if published != spec.rows as u64 {
        return Err(format!("drain() published {published} of {} rows", spec.rows).into());
    }
    Ok(spec.rows as f64 / elapsed.as_secs_f64())
}

/// The floor: claim and delete in as few statements as the database allows, no per-key rule,
/// no lease, no publish.
pub(crate) async fn floor<DB: Backend>(
    pool: &Pool<DB>,
    table: &Table<DB>,
    rows: usize,
    batch: usize,
) -> Result<f64, BoxError> {
    table.preload(pool, rows, Keys::Uniform(1_000)).await?;
    let t = table.quoted();
    let started = Instant::now();
    let mut drained = 0;
    while drained < rows {
        let got = DB::floor_batch(pool, &t, batch).await?;
        if got == 0 {
            break;
        }
        drained += got;
    }
    Ok(drained as f64 / started.elapsed().as_secs_f64())
}

/// The naive design: poll pending rows, publish, then mark each row published with its own
/// `UPDATE` on an indexed status column.
pub(crate) async fn naive<DB: Backend>(pool: &Pool<DB>, rows: usize) -> Result<f64, BoxError> {
    let t = format!("outbox_bench_naive_{}", std::process::id());
    DB::exec(pool, &format!("DROP TABLE IF EXISTS {t}")).await?;
    DB::exec(
        pool,
        &DB::create_table(
            &t,
            "payload varchar(64) NOT NULL, status varchar(16) NOT NULL DEFAULT 'pending'",
        ),
    )
    .await?;
    DB::exec(pool, &format!("CREATE INDEX {t}_status ON {t} (status)")).await?;
    let mut loaded = 0;
    while loaded < rows {
        let n = (rows - loaded).min(1_000);
        let values: Vec<String> = (loaded..loaded + n)
            .map(|i| format!("('{{\"i\":{i}}}')"))
            .collect();
        DB::exec(
            pool,
            &format!("INSERT INTO {t} (payload) VALUES {}", values.join(",")),
        )
        .await?;
        loaded += n;
    }
    DB::exec(pool, &DB::analyze(&t)).await?;
    let select =
        format!("SELECT id, payload FROM {t} WHERE status = 'pending' ORDER BY id LIMIT 100");
    let update = format!(
        "UPDATE {t} SET status = 'published' WHERE id = {}",
        DB::PARAM
    );
    let started = Instant::now();
    let mut drained = 0;
    loop {
        let batch = DB::fetch_ids(pool, &select).await?;
        if batch.is_empty() {
            break;
        }
        for id in batch {
            DB::exec_id(pool, &update, id).await?;
            drained += 1;
        }
    }
    let rate = drained as f64 / started.elapsed().as_secs_f64();
    DB::exec(pool, &format!("DROP TABLE {t}")).await?;
    Ok(rate)
}
