//! Drain rates: the relay, the bare SQL floor, and the naive status-column design.

use std::sync::Arc;
use std::time::{Duration, Instant};

use outbox_sqlx::memory::NullPublisher;
use outbox_sqlx::{Publisher, Relay};
use sqlx::{AssertSqlSafe, PgPool, Row};

use crate::BoxError;
use crate::fixtures::{Counting, Keys, Table};

/// Settings of one relay drain.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DrainSpec {
    pub(crate) rows: usize,
    pub(crate) batch: usize,
    pub(crate) relays: usize,
    pub(crate) concurrency: usize,
}

/// Preloads `spec.rows` rows spread by `keys`, then drains them with `spec.relays` relays and
/// returns rows per second.
pub(crate) async fn relay<P: Publisher + Clone>(
    pool: &PgPool,
    table: &Table,
    keys: Keys,
    spec: DrainSpec,
    publisher: P,
) -> Result<f64, BoxError> {
    table.preload(pool, spec.rows, keys).await?;
    let counting = Arc::new(Counting::new(publisher, spec.rows as u64));
    let stop = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let mut running = Vec::new();
    for _ in 0..spec.relays {
        let relay = Relay::builder(table.outbox.store(pool.clone()), Arc::clone(&counting))
            .batch_size(spec.batch)
            .concurrency(spec.concurrency)
            .build()?;
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
pub(crate) async fn relay_null(
    pool: &PgPool,
    table: &Table,
    keys: Keys,
    spec: DrainSpec,
) -> Result<f64, BoxError> {
    relay(pool, table, keys, spec, NullPublisher).await
}

/// The floor: claim and delete in one statement, no per-key rule, no lease, no publish.
pub(crate) async fn floor(
    pool: &PgPool,
    table: &Table,
    rows: usize,
    batch: usize,
) -> Result<f64, BoxError> {
    table.preload(pool, rows, Keys::Uniform(1_000)).await?;
    let t = table.quoted();
    let sql = format!(
        "WITH c AS (SELECT id FROM {t} ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) \
         DELETE FROM {t} o USING c WHERE o.id = c.id RETURNING o.id, o.payload"
    );
    let started = Instant::now();
    let mut drained = 0;
    while drained < rows {
        let got = sqlx::query(AssertSqlSafe(sql.as_str()))
            .bind(batch as i64)
            .fetch_all(pool)
            .await?;
        if got.is_empty() {
            break;
        }
        drained += got.len();
    }
    Ok(drained as f64 / started.elapsed().as_secs_f64())
}

/// The naive design: poll pending rows, publish, then mark each row published with its own
/// `UPDATE` on an indexed status column.
pub(crate) async fn naive(pool: &PgPool, rows: usize) -> Result<f64, BoxError> {
    let t = format!("outbox_bench_naive_{}", std::process::id());
    for sql in [
        format!("DROP TABLE IF EXISTS {t}"),
        format!(
            "CREATE TABLE {t} (id bigserial PRIMARY KEY, payload bytea NOT NULL, \
             status text NOT NULL DEFAULT 'pending')"
        ),
        format!("CREATE INDEX ON {t} (status)"),
        format!(
            "INSERT INTO {t} (payload) SELECT convert_to('{{\"i\":' || i || '}}', 'UTF8') \
             FROM generate_series(1, {rows}) i"
        ),
        format!("VACUUM ANALYZE {t}"),
    ] {
        sqlx::query(AssertSqlSafe(sql)).execute(pool).await?;
    }
    let select =
        format!("SELECT id, payload FROM {t} WHERE status = 'pending' ORDER BY id LIMIT 100");
    let update = format!("UPDATE {t} SET status = 'published' WHERE id = $1");
    let started = Instant::now();
    let mut drained = 0;
    loop {
        let batch = sqlx::query(AssertSqlSafe(select.as_str()))
            .fetch_all(pool)
            .await?;
        if batch.is_empty() {
            break;
        }
        for row in batch {
            let id: i64 = row.try_get(0)?;
            sqlx::query(AssertSqlSafe(update.as_str()))
                .bind(id)
                .execute(pool)
                .await?;
            drained += 1;
        }
    }
    let rate = drained as f64 / started.elapsed().as_secs_f64();
    sqlx::query(AssertSqlSafe(format!("DROP TABLE {t}")))
        .execute(pool)
        .await?;
    Ok(rate)
}
