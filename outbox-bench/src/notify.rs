//! The cost of LISTEN/NOTIFY wake-ups to producers.

use std::time::{Duration, Instant};

use outbox_sqlx::{Message, Outbox};
use sqlx::{AssertSqlSafe, PgPool, Postgres};

use crate::BoxError;
use crate::fixtures::{Table, median};

/// Producer commits per second for `seconds`, 8 producers, one message per transaction.
async fn producer_tps(
    pool: &PgPool,
    outbox: &Outbox<Postgres>,
    seconds: u64,
) -> Result<f64, BoxError> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for p in 0..8 {
        let pool = pool.clone();
        let outbox = outbox.clone();
        tasks.push(tokio::spawn(async move {
            let mut commits = 0u64;
            while Instant::now() < deadline {
                let message = Message::json("bench.event", &serde_json::json!({ "p": p }))?
                    .key(format!("p{p}-{}", commits % 16))?;
                let mut tx = pool.begin().await?;
                outbox.enqueue(&mut *tx, message).await?;
                tx.commit().await?;
                commits += 1;
            }
            Ok::<u64, BoxError>(commits)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / seconds as f64)
}

/// Producer throughput with NOTIFY on against off, interleaved rounds, median ratio.
pub(crate) async fn ratio(pool: &PgPool, rounds: usize, seconds: u64) -> Result<f64, BoxError> {
    let table = Table::create(pool, "notify").await?;
    let plain = table.outbox.clone();
    let notifying = plain.clone().notify_on_commit(true);
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let off = producer_tps(pool, &plain, seconds).await?;
        let on = producer_tps(pool, &notifying, seconds).await?;
        eprintln!("notify round {round}: off {off:.0} tx/s, on {on:.0} tx/s");
        ratios.push(on / off);
        sqlx::query(AssertSqlSafe(format!(
            "TRUNCATE {}",
            plain.statements().quoted_table()
        )))
        .execute(pool)
        .await?;
    }
    table.drop_table(pool).await?;
    Ok(median(ratios))
}
