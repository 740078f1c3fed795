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
use outbox_seaorm::SeaOrmStore;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement, TransactionTrait, Value};

/// Each adapter's store's drain rate / the sqlx store's (medians over the rounds).
pub(crate) struct DrainRatios {
    pub(crate) diesel: f64,
    pub(crate) diesel_async: f64,
    pub(crate) seaorm: f64,
}

/// Medians over `rounds` interleaved rounds of the diesel, diesel-async and sea-orm stores'
/// drain rate / the sqlx store's, each draining the same preloaded backlog (1,000 keys) to a
/// null publisher with the same settings. The sea-orm store runs on the sqlx store's pool.
pub(crate) async fn drain_ratios<DB: Backend>(
    pool: &Pool<DB>,
    url: &str,
    table: &Table<DB>,
    spec: DrainSpec,
    rounds: usize,
    progress: &impl Fn(&str),
) -> Result<DrainRatios, BoxError> {
    let statements = Arc::clone(table.outbox.outbox_table().statements());
    let diesel = DB::diesel_store(url, Arc::clone(&statements))?;
    let diesel_async = DB::diesel_async_store(url, Arc::clone(&statements))?;
    let seaorm = SeaOrmStore::with_statements(DB::seaorm_db(pool), statements);
    let uniform = Keys::Uniform(1_000);
    let (mut sync_ratios, mut async_ratios, mut sea_ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        progress(&format!("  round {}", round + 1));
        let sqlx = || drain::relay_null(pool, table, uniform, spec);
        let sync = || drain::relay_on(pool, table, uniform, spec, NullPublisher, || diesel.clone());
        let asynchronous = || {
            drain::relay_on(pool, table, uniform, spec, NullPublisher, || {
                diesel_async.clone()
            })
        };
        let sea = || drain::relay_on(pool, table, uniform, spec, NullPublisher, || seaorm.clone());
        // Alternate which goes first so drift does not favour one side.
        let (x, d, a, e) = if round % 2 == 0 {
            let x = sqlx().await?;
            let d = sync().await?;
            let a = asynchronous().await?;
            (x, d, a, sea().await?)
        } else {
            let e = sea().await?;
            let a = asynchronous().await?;
            let d = sync().await?;
            (sqlx().await?, d, a, e)
        };
        progress(&format!(
            "    rows/s: sqlx {x:.0}, diesel {d:.0}, diesel-async {a:.0}, sea-orm {e:.0}"
        ));
        sync_ratios.push(d / x);
        async_ratios.push(a / x);
        sea_ratios.push(e / x);
    }
    Ok(DrainRatios {
        diesel: median(sync_ratios),
        diesel_async: median(async_ratios),
        seaorm: median(sea_ratios),
    })
}

/// Median over `rounds` interleaved rounds of sea-orm's time per transaction (business
/// `INSERT` + `outbox_seaorm::enqueue`, 8 producer tasks) / sea-orm running the hand-written
/// outbox `INSERT` in the same transaction, on the sqlx store's pool.
pub(crate) async fn seaorm_enqueue_overhead<DB: Backend>(
    pool: &Pool<DB>,
    rounds: usize,
    txs: usize,
) -> Result<f64, BoxError> {
    let (table, business) = enqueue::tables(pool).await?;
    let db = DB::seaorm_db(pool);
    let outbox = outbox_seaorm::Outbox::with_table(&table.outbox.table().to_string())?;
    let sql = Arc::new(SeaOrmSql {
        business: format!("INSERT INTO {business} (total) VALUES ({})", DB::PARAM),
        // The statement diesel's baseline sends: the one a user would write.
        hand_written: (DB::DIESEL_SQL.hand_written)(&table.quoted()),
    });
    let run = |library: bool, txs: usize| seaorm_round(&db, &outbox, &sql, library, txs);
    // Warm the connections and statement caches of both paths.
    run(false, enqueue::PRODUCERS * 20).await?;
    run(true, enqueue::PRODUCERS * 20).await?;
    let pairs = interleaved(rounds, |library| run(library, txs)).await?;
    let ratios = pairs
        .iter()
        .map(|(base, lib)| lib.as_secs_f64() / base.as_secs_f64());
    enqueue::drop_tables(pool, table, &business).await?;
    Ok(median(ratios.collect()))
}

/// The two statements of the sea-orm baseline.
struct SeaOrmSql {
    business: String,
    hand_written: String,
}

/// One round: `txs` transactions over 8 tasks, each a business `INSERT` and one message,
/// enqueued by the library or by the hand-written `INSERT`. Returns the time per transaction.
async fn seaorm_round(
    db: &DatabaseConnection,
    outbox: &outbox_seaorm::Outbox,
    sql: &Arc<SeaOrmSql>,
    library: bool,
    txs: usize,
) -> Result<Duration, BoxError> {
    let started = Instant::now();
    let backend = db.get_database_backend();
    let mut tasks = Vec::new();
    for p in 0..enqueue::PRODUCERS {
        let (db, outbox, sql) = (db.clone(), outbox.clone(), Arc::clone(sql));
        tasks.push(tokio::spawn(async move {
            for i in 0..txs / enqueue::PRODUCERS {
                let message =
                    Message::json("order.created", &serde_json::json!({ "p": p, "i": i }))?
                        .key(format!("order-{p}-{i}"))?;
                let txn = db.begin().await?;
                let total = [Value::BigInt(Some(i as i64))];
                let business = Statement::from_sql_and_values(backend, &sql.business, total);
                txn.execute_raw(business).await?;
                if library {
                    outbox.enqueue(&txn, message).await?;
                } else {
                    let values = [
                        Value::String(Some(message.id().to_string())),
                        Value::String(Some(message.event_type().to_owned())),
                        Value::String(message.partition_key().map(str::to_owned)),
                        Value::String(message.aggregate_type_name().map(str::to_owned)),
                        Value::Bytes(Some(message.payload().to_vec())),
                        Value::String(Some(message.headers_json())),
                    ];
                    let insert = Statement::from_sql_and_values(backend, &sql.hand_written, values);
                    txn.execute_raw(insert).await?;
                }
                txn.commit().await?;
            }
            Ok::<(), BoxError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed() / (txs as u32))
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
