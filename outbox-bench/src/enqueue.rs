//! Enqueue cost: the library's enqueue against the same hand-written INSERT, in the same
//! transaction as a business INSERT, with 8 concurrent producers.

use std::time::{Duration, Instant};

use outbox_sqlx::{Message, Outbox};
use sqlx::Pool;

use crate::BoxError;
use crate::backend::Backend;
use crate::fixtures::{Table, interleaved, median};

pub(crate) const PRODUCERS: usize = 8;

#[derive(Clone, Copy, PartialEq)]
enum Way {
    HandWritten,
    Library,
}

/// One round of `txs` transactions from 8 producers, each a business INSERT and `per_tx`
/// messages on keys of their own (`enqueue` for one, `enqueue_all` for more; one multi-row
/// INSERT by hand).
#[allow(clippy::too_many_arguments)]
async fn round<DB: Backend>(
    pool: &Pool<DB>,
    table: &Table<DB>,
    outbox: &Outbox<DB>,
    business: &str,
    way: Way,
    txs: usize,
    per_tx: usize,
) -> Result<Duration, BoxError> {
    let insert_business = format!("INSERT INTO {business} (total) VALUES ({})", DB::PARAM);
    let hand_written = table.quoted();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let (pool, outbox) = (pool.clone(), outbox.clone());
        let (insert_business, hand_written) = (insert_business.clone(), hand_written.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..txs / PRODUCERS {
                let mut messages = (0..per_tx)
                    .map(|j| {
                        let payload = serde_json::json!({ "p": p, "i": i, "j": j });
                        let key = if per_tx == 1 {
                            format!("order-{p}-{i}")
                        } else {
                            format!("order-{p}-{i}-{j}")
                        };
                        Message::json("order.created", &payload)?.key(key)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let mut tx = pool.begin().await?;
                DB::insert_business(&mut tx, &insert_business, i as i64).await?;
                match way {
                    Way::Library if per_tx == 1 => {
                        let message = messages.pop().ok_or("no message")?;
                        outbox.enqueue(&mut *tx, message).await?;
                    }
                    Way::Library => outbox.enqueue_all(&mut *tx, messages).await?,
                    Way::HandWritten => {
                        DB::insert_by_hand(&mut tx, &hand_written, &messages).await?
                    }
                }
                tx.commit().await?;
            }
            Ok::<(), BoxError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed() / (txs as u32))
}

/// A fresh outbox table and business table.
pub(crate) async fn tables<DB: Backend>(pool: &Pool<DB>) -> Result<(Table<DB>, String), BoxError> {
    let table = Table::create(pool, "enqueue").await?;
    let business = format!("outbox_bench_orders_{}", std::process::id());
    DB::exec(pool, &format!("DROP TABLE IF EXISTS {business}")).await?;
    DB::exec(pool, &DB::create_table(&business, "total bigint")).await?;
    Ok((table, business))
}

pub(crate) async fn drop_tables<DB: Backend>(
    pool: &Pool<DB>,
    table: Table<DB>,
    business: &str,
) -> Result<(), BoxError> {
    DB::exec(pool, &format!("DROP TABLE {business}")).await?;
    table.drop_table(pool).await
}

/// The library's time per transaction (business INSERT + `enqueue`, 8 producers), after a
/// warm-up, on fresh tables.
pub(crate) async fn library_per_tx<DB: Backend>(
    pool: &Pool<DB>,
    txs: usize,
) -> Result<Duration, BoxError> {
    let (table, business) = tables(pool).await?;
    let outbox = table.outbox.clone();
    round(
        pool,
        &table,
        &outbox,
        &business,
        Way::Library,
        PRODUCERS * 20,
        1,
    )
    .await?;
    let per_tx = round(pool, &table, &outbox, &business, Way::Library, txs, 1).await?;
    drop_tables(pool, table, &business).await?;
    Ok(per_tx)
}

/// Median over `rounds` interleaved rounds of (library time per tx) / (hand-written time per
/// tx), and the library's time per transaction, with `per_tx` messages per transaction.
/// `configure` sets the library's outbox up from the table's default one.
pub(crate) async fn overhead<DB: Backend>(
    pool: &Pool<DB>,
    rounds: usize,
    txs: usize,
    per_tx: usize,
    configure: impl Fn(Outbox<DB>) -> Outbox<DB>,
) -> Result<(f64, Duration), BoxError> {
    let (table, business) = tables(pool).await?;
    let outbox = configure(table.outbox.clone());
    let run = |way, txs| round(pool, &table, &outbox, &business, way, txs, per_tx);
    // Warm the connections and statement caches of both paths.
    run(Way::HandWritten, PRODUCERS * 20).await?;
    run(Way::Library, PRODUCERS * 20).await?;
    let pairs = interleaved(rounds, |library| {
        run(
            if library {
                Way::Library
            } else {
                Way::HandWritten
            },
            txs,
        )
    })
    .await?;
    let ratios = pairs
        .iter()
        .map(|(base, lib)| lib.as_secs_f64() / base.as_secs_f64());
    let ours = pairs.iter().map(|(_, lib)| lib.as_secs_f64());
    let (ratios, ours) = (ratios.collect(), ours.collect());
    drop_tables(pool, table, &business).await?;
    Ok((median(ratios), Duration::from_secs_f64(median(ours))))
}
