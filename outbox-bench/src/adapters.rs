//! The other adapters' stores against the sqlx store, on the same table and backlog.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::r2d2::{ConnectionManager, Pool as R2d2Pool};
use outbox_sqlx::Message;
use outbox_sqlx::memory::NullPublisher;
use sqlx::Pool;

use crate::BoxError;
use crate::backend::{Backend, DieselSql};
use crate::drain::{self, DrainSpec};
use crate::enqueue;
use crate::fixtures::{Keys, Table, interleaved, median};

/// Medians over `rounds` interleaved rounds of the diesel and the diesel-async store's drain
/// rate / the sqlx store's, each draining the same preloaded backlog (1,000 keys) to a null
/// publisher with the same settings.
pub(crate) async fn drain_ratios<DB: Backend>(
    pool: &Pool<DB>,
    url: &str,
    table: &Table<DB>,
    spec: DrainSpec,
    rounds: usize,
    progress: &impl Fn(&str),
) -> Result<(f64, f64), BoxError> {
    let statements = Arc::clone(table.outbox.outbox_table().statements());
    let diesel = DB::diesel_store(url, Arc::clone(&statements))?;
    let diesel_async = DB::diesel_async_store(url, statements)?;
    let uniform = Keys::Uniform(1_000);
    let (mut sync_ratios, mut async_ratios) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        progress(&format!("  round {}", round + 1));
        let sqlx = || drain::relay_null(pool, table, uniform, spec);
        let sync = || drain::relay_on(pool, table, uniform, spec, NullPublisher, || diesel.clone());
        let asynchronous = || {
            drain::relay_on(pool, table, uniform, spec, NullPublisher, || {
                diesel_async.clone()
            })
        };
        // Alternate which goes first so drift does not favour one side.
        let (x, d, a) = if round % 2 == 0 {
            let x = sqlx().await?;
            let d = sync().await?;
            (x, d, asynchronous().await?)
        } else {
            let a = asynchronous().await?;
            let d = sync().await?;
            (sqlx().await?, d, a)
        };
        progress(&format!(
            "    rows/s: sqlx {x:.0}, diesel {d:.0}, diesel-async {a:.0}"
        ));
        sync_ratios.push(d / x);
        async_ratios.push(a / x);
    }
    Ok((median(sync_ratios), median(async_ratios)))
}

/// Median over `rounds` interleaved rounds of the synchronous diesel adapter's time per
/// transaction (business `INSERT` + `outbox_diesel::enqueue`, 8 producer threads) / diesel
/// running the hand-written outbox `INSERT` in the same transaction.
pub(crate) async fn diesel_enqueue_overhead<DB: Backend>(
    pool: &Pool<DB>,
    url: &str,
    rounds: usize,
    txs: usize,
) -> Result<f64, BoxError> {
    let (table, business) = enqueue::tables(pool).await?;
    let diesel = DB::diesel_pool(url)?;
    let outbox = outbox_diesel::Outbox::with_table(&table.outbox.table().to_string())?;
    let sql = DB::DIESEL_SQL;
    let hand_written = (sql.hand_written)(&table.quoted());
    let insert_business = format!("INSERT INTO {business} (total) VALUES ({})", DB::PARAM);
    let run = |library: bool, txs: usize| {
        tokio::task::block_in_place(|| {
            round(
                &diesel,
                &outbox,
                &sql,
                &insert_business,
                &hand_written,
                library,
                txs,
            )
        })
    };
    // Warm the connections and statement caches of both paths.
    run(false, enqueue::PRODUCERS * 20)?;
    run(true, enqueue::PRODUCERS * 20)?;
    let pairs = interleaved(rounds, |library| std::future::ready(run(library, txs))).await?;
    let ratios = pairs
        .iter()
        .map(|(base, lib)| lib.as_secs_f64() / base.as_secs_f64());
    enqueue::drop_tables(pool, table, &business).await?;
    Ok(median(ratios.collect()))
}

/// One round: `txs` transactions over 8 threads, each a business `INSERT` and one message,
/// enqueued by the library or by the hand-written `INSERT`. Returns the time per transaction.
fn round<C>(
    pool: &R2d2Pool<ConnectionManager<C>>,
    outbox: &outbox_diesel::Outbox<C::Backend>,
    sql: &DieselSql<C>,
    insert_business: &str,
    hand_written: &str,
    library: bool,
    txs: usize,
) -> Result<Duration, BoxError>
where
    C: outbox_diesel::OutboxConnection<Backend: outbox_diesel::OutboxBackend>
        + diesel::r2d2::R2D2Connection
        + 'static,
{
    let started = Instant::now();
    std::thread::scope(|scope| {
        let producers: Vec<_> = (0..enqueue::PRODUCERS)
            .map(|p| {
                scope.spawn(move || -> Result<(), BoxError> {
                    let mut conn = pool.get()?;
                    let conn: &mut C = &mut conn;
                    for i in 0..txs / enqueue::PRODUCERS {
                        let message =
                            Message::json("order.created", &serde_json::json!({ "p": p, "i": i }))?
                                .key(format!("order-{p}-{i}"))?;
                        conn.transaction::<_, BoxError, _>(|conn| {
                            (sql.business)(conn, insert_business, i as i64)?;
                            match library {
                                true => outbox.enqueue(conn, message)?,
                                false => drop((sql.insert)(conn, hand_written, &message)?),
                            }
                            Ok(())
                        })?;
                    }
                    Ok(())
                })
            })
            .collect();
        producers
            .into_iter()
            .try_for_each(|p| p.join().map_err(|_| "a producer panicked")?)
    })?;
    Ok(started.elapsed() / (txs as u32))
}
