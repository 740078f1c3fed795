//! Runs Oxide Outbox (`outbox-core` 0.6 + `outbox-postgres` 0.3, from crates.io) through the
//! workloads `cargo xtask bench` runs on ours, and prints one JSON line of results.
//!
//! `outbox-peer-bench enqueue --txs N | drain --rows N --batch B | latency --rate R --seconds S`
//! with `DATABASE_URL` and `NATS_URL` in the environment. The library is used as its README
//! shows: `OutboxService::add_event` on the transaction's connection, `OutboxManager` with its
//! LISTEN/NOTIFY wake-up (its migration's trigger) and a `Transport`. Its table lives in a
//! schema of its own, `outbox_peer`, created from the library's own migration file and dropped
//! at the end.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outbox_core::prelude::*;
use outbox_postgres::{PostgresOutbox, PostgresWriter};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool};
use tokio::sync::{Notify, watch};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SCHEMA: &str = "outbox_peer";

fn number(args: &[String], name: &str, default: u64) -> Result<u64, BoxError> {
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args
            .get(i + 1)
            .ok_or(format!("{name} needs a value"))?
            .parse()?),
        None => Ok(default),
    }
}

/// The library's init migration, read from its source in the Cargo registry (it ships as a
/// file, not as code).
fn migration() -> Result<String, BoxError> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let meta: Value = serde_json::from_slice(&out.stdout)?;
    let manifest = meta["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "outbox-postgres"))
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or("outbox-postgres not found in cargo metadata")?;
    let dir = PathBuf::from(manifest).with_file_name("migrations");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    let init = files.first().ok_or("outbox-postgres ships no migration")?;
    Ok(std::fs::read_to_string(init)?)
}

/// A pool whose connections use the peer's schema, with the schema created fresh.
async fn setup(database_url: &str) -> Result<PgPool, BoxError> {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await?;
    admin
        .execute(format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}").as_str())
        .await?;
    admin.close().await;
    let options: PgConnectOptions = database_url
        .parse::<PgConnectOptions>()?
        .options([("search_path", SCHEMA)]);
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect_with(options)
        .await?;
    pool.execute(migration()?.as_str()).await?;
    pool.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, total bigint)")
        .await?;
    Ok(pool)
}

async fn teardown(pool: PgPool) -> Result<(), BoxError> {
    pool.execute(format!("DROP SCHEMA {SCHEMA} CASCADE").as_str())
        .await?;
    pool.close().await;
    Ok(())
}

fn config(batch: u32) -> Arc<OutboxConfig<Value>> {
    let mut config = OutboxConfig::default();
    config.batch_size = batch;
    config.poll_interval_secs = 1;
    Arc::new(config)
}

type Service = OutboxService<PostgresWriter, NoIdempotency, Value>;

/// 8 producers, each transaction a business INSERT and one `add_event`; time per transaction.
async fn enqueue(pool: &PgPool, txs: u64) -> Result<Value, BoxError> {
    let service = Arc::new(Service::new(Arc::new(PostgresWriter), config(100)));
    let round = |txs: u64| {
        let (pool, service) = (pool.clone(), Arc::clone(&service));
        async move {
            let started = Instant::now();
            let mut tasks = Vec::new();
            for p in 0..8u64 {
                let (pool, service) = (pool.clone(), Arc::clone(&service));
                tasks.push(tokio::spawn(async move {
                    for i in 0..txs / 8 {
                        let mut tx = pool.begin().await?;
                        sqlx::query("INSERT INTO orders (total) VALUES ($1)")
                            .bind(i as i64)
                            .execute(&mut *tx)
                            .await?;
                        service
                            .add_event("order.created", json!({ "p": p, "i": i }), None, &mut *tx)
                            .await?;
                        tx.commit().await?;
                    }
                    Ok::<(), BoxError>(())
                }));
            }
            for task in tasks {
                task.await??;
            }
            Ok::<Duration, BoxError>(started.elapsed() / (txs as u32))
        }
    };
    round(160).await?;
    let per_tx = round(txs).await?;
    Ok(json!({ "per_tx_us": per_tx.as_secs_f64() * 1e6 }))
}

/// Acknowledges everything; counts, and notes when each `i` in the payload was acknowledged.
struct Sink {
    done: AtomicU64,
    target: u64,
    reached: Notify,
    nats: Option<(async_nats::jetstream::Context, String)>,
    acked: Mutex<HashMap<u64, Instant>>,
}

#[async_trait::async_trait]
impl Transport<Value> for Sink {
    async fn publish(&self, event: Event<Value>) -> Result<(), OutboxError> {
        if let Some((js, subject)) = &self.nats {
            let body = serde_json::to_vec(event.payload.as_value())
                .map_err(|e| OutboxError::InfrastructureError(e.to_string()))?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", event.id.as_uuid().to_string().as_str());
            js.publish_with_headers(subject.clone(), headers, body.into())
                .await
                .map_err(|e| OutboxError::InfrastructureError(e.to_string()))?
                .await
                .map_err(|e| OutboxError::InfrastructureError(e.to_string()))?;
            if let Some(i) = event.payload.as_value()["i"].as_u64() {
                self.acked.lock().unwrap().insert(i, Instant::now());
            }
        }
        if self.done.fetch_add(1, Ordering::Relaxed) + 1 >= self.target {
            self.reached.notify_one();
        }
        Ok(())
    }
}

/// A running worker and the switch that stops it.
type Running = (
    watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), OutboxError>>,
);

fn start_manager(pool: &PgPool, batch: u32, sink: Arc<Sink>) -> Result<Running, BoxError> {
    let config = config(batch);
    let storage = Arc::new(PostgresOutbox::new(pool.clone(), Arc::clone(&config)));
    let (stop, stopped) = watch::channel(false);
    let manager = OutboxManagerBuilder::new()
        .storage(storage)
        .publisher(sink)
        .config(config)
        .shutdown_rx(stopped)
        .build()?;
    Ok((stop, tokio::spawn(manager.run())))
}

/// Preloads `rows` events, then drains them with the library's worker to a null transport.
async fn drain(pool: &PgPool, rows: u64, batch: u32) -> Result<Value, BoxError> {
    let service = Service::new(Arc::new(PostgresWriter), config(batch));
    let mut done = 0;
    while done < rows {
        let mut tx = pool.begin().await?;
        for i in done..(done + 1_000).min(rows) {
            service
                .add_event("bench.event", json!({ "n": i }), None, &mut *tx)
                .await?;
        }
        tx.commit().await?;
        done = (done + 1_000).min(rows);
    }
    pool.execute("VACUUM ANALYZE outbox_events").await?;
    let sink = Arc::new(Sink {
        done: AtomicU64::new(0),
        target: rows,
        reached: Notify::new(),
        nats: None,
        acked: Mutex::new(HashMap::new()),
    });
    let started = Instant::now();
    let (stop, running) = start_manager(pool, batch, Arc::clone(&sink))?;
    tokio::time::timeout(Duration::from_secs(600), sink.reached.notified())
        .await
        .map_err(|_| "peer drain did not finish within 600 s")?;
    // The worker marks a batch sent after publishing it; wait for the last mark.
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox_events WHERE status <> 'Sent'")
                .fetch_one(pool)
                .await?;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    running.abort();
    Ok(json!({ "rows_per_s": rows as f64 / elapsed.as_secs_f64() }))
}

/// One event per transaction at `rate` per second for `seconds`; commit → JetStream ack.
async fn latency(
    pool: &PgPool,
    nats_url: &str,
    rate: u64,
    seconds: u64,
) -> Result<Value, BoxError> {
    let js = async_nats::jetstream::new(async_nats::connect(nats_url).await?);
    let stream = format!("outboxpeer{}", std::process::id());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("{stream}.>")],
        storage: async_nats::jetstream::stream::StorageType::Memory,
        ..Default::default()
    })
    .await?;
    let total = rate * seconds;
    let sink = Arc::new(Sink {
        done: AtomicU64::new(0),
        target: total,
        reached: Notify::new(),
        nats: Some((js.clone(), format!("{stream}.bench.latency"))),
        acked: Mutex::new(HashMap::new()),
    });
    let (stop, running) = start_manager(pool, 100, Arc::clone(&sink))?;
    // Let the worker's first poll and LISTEN happen before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let service = Service::new(Arc::new(PostgresWriter), config(100));
    let mut committed = Vec::with_capacity(total as usize);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..total {
        ticker.tick().await;
        let mut tx = pool.begin().await?;
        service
            .add_event("bench.latency", json!({ "i": i }), None, &mut *tx)
            .await?;
        tx.commit().await?;
        committed.push(Instant::now());
    }
    tokio::time::timeout(Duration::from_secs(120), sink.reached.notified())
        .await
        .map_err(|_| "peer latency run: not every event was acknowledged within 120 s")?;
    let _ = stop.send(true);
    running.abort();
    js.delete_stream(&stream).await?;
    let acked = sink.acked.lock().unwrap();
    let mut latencies: Vec<Duration> = committed
        .iter()
        .enumerate()
        .map(|(i, at)| {
            acked
                .get(&(i as u64))
                .map_or(Duration::MAX, |a| a.saturating_duration_since(*at))
        })
        .collect();
    latencies.sort();
    let pick = |p: f64| {
        latencies[((latencies.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
    };
    Ok(json!({ "p50_ms": pick(0.5), "p99_ms": pick(0.99) }))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let database_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into());
    let pool = setup(&database_url).await?;
    let result = match args.first().map(String::as_str) {
        Some("enqueue") => enqueue(&pool, number(&args, "--txs", 4_000)?).await,
        Some("drain") => {
            drain(
                &pool,
                number(&args, "--rows", 20_000)?,
                number(&args, "--batch", 100)? as u32,
            )
            .await
        }
        Some("latency") => {
            latency(
                &pool,
                &nats_url,
                number(&args, "--rate", 1_000)?,
                number(&args, "--seconds", 10)?,
            )
            .await
        }
        _ => Err("usage: outbox-peer-bench enqueue | drain | latency".into()),
    };
    teardown(pool).await?;
    println!("{}", result?);
    Ok(())
}
