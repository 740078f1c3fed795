//! Relay drain rate on PostgreSQL: the library against the bare SQL floor, in one run.
//!
//! Run with `cargo run --release -p outbox-bench -- drain [--rows N] [--keys K] [--batch B]
//! [--publisher null|nats]`. Reads `DATABASE_URL` (default the local test database) and
//! `NATS_URL` (default `127.0.0.1:4222`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use outbox_sqlx::memory::NullPublisher;
use outbox_sqlx::{Envelope, Message, Outbox, PublishError, Publisher, Relay};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool, Postgres};
use tokio::sync::Notify;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    rows: usize,
    keys: usize,
    batch: usize,
    concurrency: usize,
    publisher: String,
}

fn parse() -> Result<Args, BoxError> {
    let mut args = Args {
        rows: 100_000,
        keys: 1_000,
        batch: 500,
        concurrency: 2,
        publisher: "null".into(),
    };
    let mut it = std::env::args().skip(1);
    match it.next().as_deref() {
        Some("drain") => {}
        Some("profile") => args.publisher = "profile".into(),
        Some("notify") => args.publisher = "notify".into(),
        other => return Err(format!("unknown command {other:?}; expected `drain`").into()),
    }
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rows" => args.rows = value.parse()?,
            "--keys" => args.keys = value.parse()?,
            "--batch" => args.batch = value.parse()?,
            "--concurrency" => args.concurrency = value.parse()?,
            "--publisher" => args.publisher = value,
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    Ok(args)
}

/// Counts acknowledged messages and signals when a target is reached.
struct Counting<P> {
    inner: P,
    done: AtomicU64,
    target: u64,
    reached: Notify,
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

async fn preload(
    pool: &PgPool,
    outbox: &Outbox<Postgres>,
    rows: usize,
    keys: usize,
) -> Result<(), BoxError> {
    let mut done = 0;
    while done < rows {
        let n = (rows - done).min(5_000);
        let messages = (done..done + n)
            .map(|i| Message::json("bench.event", &serde_json::json!({ "i": i }))?.key(i % keys))
            .collect::<Result<Vec<_>, _>>()?;
        let mut tx = pool.begin().await?;
        outbox.enqueue_all(&mut *tx, messages).await?;
        tx.commit().await?;
        done += n;
    }
    sqlx::query(AssertSqlSafe(format!(
        "ANALYZE {}",
        outbox.statements().quoted_table()
    )))
    .execute(pool)
    .await?;
    Ok(())
}

async fn drain_relay<P: Publisher>(
    pool: &PgPool,
    outbox: &Outbox<Postgres>,
    args: &Args,
    publisher: P,
) -> Result<f64, BoxError> {
    let counting = Arc::new(Counting {
        inner: publisher,
        done: AtomicU64::new(0),
        target: args.rows as u64,
        reached: Notify::new(),
    });
    let relay = Relay::builder(outbox.store(pool.clone()), Arc::clone(&counting))
        .batch_size(args.batch)
        .concurrency(args.concurrency)
        .build()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn({
        let relay = relay.clone();
        let stop = stop.clone();
        async move { relay.run(stop.cancelled_owned()).await }
    });
    tokio::time::timeout(Duration::from_secs(600), counting.reached.notified()).await?;
    let elapsed = started.elapsed();
    stop.cancel();
    running.await??;
    Ok(args.rows as f64 / elapsed.as_secs_f64())
}

/// The floor: claim and delete in one transaction, no per-key rule, no lease, no publish.
async fn drain_floor(
    pool: &PgPool,
    outbox: &Outbox<Postgres>,
    args: &Args,
) -> Result<f64, BoxError> {
    let t = outbox.statements().quoted_table();
    let sql = format!(
        "WITH c AS (SELECT id FROM {t} ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) \
         DELETE FROM {t} o USING c WHERE o.id = c.id RETURNING o.id, o.payload"
    );
    let started = Instant::now();
    let mut drained = 0;
    while drained < args.rows {
        let rows = sqlx::query(AssertSqlSafe(sql.as_str()))
            .bind(args.batch as i64)
            .fetch_all(pool)
            .await?;
        if rows.is_empty() {
            break;
        }
        drained += rows.len();
    }
    Ok(drained as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = parse()?;
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await?;
    let table = format!("outbox_bench_{}", std::process::id());
    let outbox = Outbox::<Postgres>::with_table(&table)?;
    outbox.migrate(&mut *pool.acquire().await?).await?;

    if args.publisher == "notify" {
        let result = notify_ratio(&pool, &table).await;
        sqlx::query(AssertSqlSafe(format!(
            "DROP TABLE {}",
            outbox.statements().quoted_table()
        )))
        .execute(&pool)
        .await?;
        return result;
    }
    eprintln!(
        "drain: {} rows on {} keys, batch {}, publisher {}",
        args.rows, args.keys, args.batch, args.publisher
    );
    preload(&pool, &outbox, args.rows, args.keys).await?;
    let floor = drain_floor(&pool, &outbox, &args).await?;
    preload(&pool, &outbox, args.rows, args.keys).await?;
    let ours = match args.publisher.as_str() {
        "profile" => profile(&pool, &outbox, &args).await?,
        "null" => drain_relay(&pool, &outbox, &args, NullPublisher).await?,
        "nats" => {
            let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into());
            let client = async_nats::connect(&nats).await?;
            let js = async_nats::jetstream::new(client);
            let stream = format!("outboxbench{}", std::process::id());
            js.create_stream(async_nats::jetstream::stream::Config {
                name: stream.clone(),
                subjects: vec![format!("{stream}.>")],
                storage: async_nats::jetstream::stream::StorageType::Memory,
                ..Default::default()
            })
            .await?;
            let publisher =
                outbox_publishers::NatsPublisher::new(js.clone()).subject_prefix(stream.clone());
            let rate = drain_relay(&pool, &outbox, &args, publisher).await;
            js.delete_stream(&stream).await?;
            rate?
        }
        other => return Err(format!("unknown publisher {other}").into()),
    };
    sqlx::query(AssertSqlSafe(format!(
        "DROP TABLE {}",
        outbox.statements().quoted_table()
    )))
    .execute(&pool)
    .await?;
    println!("floor (claim+delete, one tx):   {floor:>10.0} rows/s");
    println!("relay -> {:<22} {ours:>10.0} rows/s", args.publisher);
    println!("relay / floor:                  {:>10.2}", ours / floor);
    Ok(())
}

/// Times the store's claim and ack separately, batch by batch.
async fn profile(pool: &PgPool, outbox: &Outbox<Postgres>, args: &Args) -> Result<f64, BoxError> {
    use outbox_sqlx::Store;
    let store = outbox.store(pool.clone());
    let (mut claim_t, mut ack_t, mut rows) = (Duration::ZERO, Duration::ZERO, 0usize);
    let started = Instant::now();
    loop {
        let t = Instant::now();
        let claim = store.claim(args.batch, Duration::from_secs(30)).await?;
        let took = t.elapsed();
        claim_t += took;
        if (rows / args.batch).is_multiple_of(25) {
            eprintln!("profile: batch {} claim {took:?}", rows / args.batch);
        }
        if claim.messages.is_empty() {
            break;
        }
        rows += claim.messages.len();
        let seqs: Vec<i64> = claim.messages.iter().map(|m| m.seq).collect();
        let t = Instant::now();
        store.ack(claim.token, &seqs).await?;
        ack_t += t.elapsed();
    }
    let batches = rows.div_ceil(args.batch).max(1) as u32;
    eprintln!(
        "profile: {rows} rows, claim {:?}/batch, ack {:?}/batch",
        claim_t / batches,
        ack_t / batches
    );
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

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
async fn notify_ratio(pool: &PgPool, table: &str) -> Result<(), BoxError> {
    let plain = Outbox::<Postgres>::with_table(table)?;
    let notifying = plain.clone().notify_on_commit(true);
    let mut ratios = Vec::new();
    for round in 0..3 {
        let off = producer_tps(pool, &plain, 4).await?;
        let on = producer_tps(pool, &notifying, 4).await?;
        eprintln!("notify round {round}: off {off:.0} tx/s, on {on:.0} tx/s");
        ratios.push(on / off);
        sqlx::query(AssertSqlSafe(format!(
            "TRUNCATE {}",
            plain.statements().quoted_table()
        )))
        .execute(pool)
        .await?;
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "notify_commit_ratio (tx/s with NOTIFY / without, median): {:.3}",
        ratios[1]
    );
    Ok(())
}
