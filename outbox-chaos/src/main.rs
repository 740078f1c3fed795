//! Fault injection for the relay, checked from the broker's side.
//!
//! The harness starts a database server of its own (a PostgreSQL cluster by `initdb`, or with
//! `--db mysql` a MariaDB server by `mariadb-install-db`, each in a temporary directory) and a
//! `nats-server -js` on free loopback ports, four relay processes and eight producers, and
//! then, while the producers commit:
//!
//! - SIGKILLs a random relay every `--kill-every-ms` (700 ms), mid-batch, and starts another;
//! - crashes the database twice (PostgreSQL: immediate shutdown, WAL replayed; MariaDB:
//!   SIGKILL, InnoDB recovery) and restarts it;
//! - stops NATS for `--nats-down-s` (30 s; 4 s with `--quick`), then starts it again;
//! - freezes a relay with SIGSTOP for its whole lease (five heartbeat leases), resumes it, and
//!   reads its counters: what it still held was fenced or given back, not published late;
//! - runs one relay whose publish calls hang forever one time in 25, after the broker has the
//!   messages (the relay abandons them before its lease ends and gives the batch back);
//! - twice kills every database connection of the relays every 100 ms for 2 s
//!   (`pg_terminate_backend`, `KILL CONNECTION`), mid-claim, mid-settle or idle;
//! - writes rows with undecodable headers on shared keys (they must end dead, naming the
//!   column, and their keys flow on);
//! - runs poison messages (refused by the stream) on four keys, and long transactions that
//!   draw ids early and commit late on the keys everybody writes.
//!
//! Then it drains, reads the whole stream back and compares it with what committed: nothing
//! lost, per-key commit order kept, nothing from a rolled-back transaction, only poison
//! messages and corrupt rows dead. Writes `target/outbox-chaos/summary.json`
//! (`summary-mysql.json`, `summary-postgres-seaorm.json`); exits non-zero when an invariant broke.
//!
//! The relays run on the sqlx store, or with `--store seaorm|diesel|diesel-async` on that
//! adapter's store.
//!
//! `cargo xtask chaos [--quick] [--db mysql] [--store seaorm|diesel|diesel-async]`, or `cargo run --release -p
//! outbox-chaos -- run [--quick] [--db postgres|mysql] [--store sqlx|seaorm|diesel|diesel-async] [--seconds S] [--relays R] [--producers P]
//! [--kill-every-ms K] [--nats-down-s N] [--seed N]`.

mod db;
mod produce;
mod relays;
mod services;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use outbox_sqlx::{Inspect, Outbox, Status};
use sqlx::{MySql, Pool, Postgres};

use crate::db::{ChaosDb, Server};
use crate::produce::{Kind, Produced};
use crate::relays::{LEASE, Relays};
use crate::services::Nats;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn number(args: &[String], name: &str, default: u64) -> Result<u64, BoxError> {
    Ok(match flag(args, name) {
        Some(v) => v
            .parse()
            .map_err(|e| format!("{name} expects a number, got {v:?}: {e}"))?,
        None => default,
    })
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => run(&args).await,
        Some("relay") => relays::relay_process(&args).await,
        _ => Err(
            "usage: outbox-chaos run [--quick] [--seconds S] [--relays R] \
                  [--producers P] [--kill-every-ms K] [--nats-down-s N] [--seed N]"
                .into(),
        ),
    }
}

/// Writes [`CORRUPT_ROWS`] rows by hand whose headers are JSON but not an object of strings,
/// on keys producers write, as a buggy tool or a newer schema might.
async fn corrupt_rows<DB: ChaosDb>(pool: &Pool<DB>, outbox: &Outbox<DB>) -> Result<(), BoxError> {
    let table = outbox.statements().quoted_table();
    for i in 0..CORRUPT_ROWS {
        DB::insert_corrupt(pool, &table, &format!("k{i}")).await?;
    }
    Ok(())
}

/// For 2 s, every 100 ms, kills every database connection of the relays, wherever they are:
/// mid-claim, mid-settle, idle.
async fn kill_relay_connections<DB: ChaosDb>(pool: Pool<DB>, killed: Arc<AtomicU64>) {
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if let Ok(n) = DB::kill_relay_connections(&pool).await {
            killed.fetch_add(n, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fault, at a point of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    DatabaseCrash,
    StartSlow,
    NatsStop,
    NatsStart,
    Freeze,
    Thaw,
    StopFrozen,
    StartHanging,
    KillConnections,
    Corrupt,
}

/// Rows written by hand with headers no relay can decode.
const CORRUPT_ROWS: u64 = 8;

fn schedule(seconds: f64, nats_down: f64) -> Vec<(f64, Fault)> {
    // Five heartbeat leases: the frozen relay's claim passes to others long before it thaws.
    let freeze = LEASE.as_secs_f64();
    let mut plan = vec![
        (seconds * 0.15, Fault::DatabaseCrash),
        (seconds * 0.25, Fault::NatsStop),
        (seconds * 0.25 + nats_down, Fault::NatsStart),
        (seconds * 0.70 - 2.0, Fault::StartSlow),
        (seconds * 0.70, Fault::Freeze),
        (seconds * 0.70 + freeze, Fault::Thaw),
        (seconds * 0.70 + freeze + 2.0, Fault::StopFrozen),
        (seconds * 0.85, Fault::DatabaseCrash),
        (seconds * 0.05, Fault::StartHanging),
        (seconds * 0.55, Fault::KillConnections),
        (seconds * 0.60, Fault::Corrupt),
        (seconds * 0.65, Fault::KillConnections),
    ];
    plan.sort_by(|a, b| a.0.total_cmp(&b.0));
    plan
}

#[derive(Default)]
struct Faults {
    database_crashes: u64,
    database_down_ms: Vec<u64>,
    nats_down_s: f64,
    freezes: u64,
    frozen_fenced: u64,
    frozen_lease_expired_batches: u64,
    frozen_broker_duplicates: u64,
    connections_killed: Arc<AtomicU64>,
    corrupt_rows: u64,
}

async fn run(args: &[String]) -> Result<(), BoxError> {
    match flag(args, "--db").as_deref().unwrap_or("postgres") {
        "postgres" => run_on::<Postgres>(args).await,
        "mysql" => run_on::<MySql>(args).await,
        other => Err(format!("--db takes postgres or mysql, not {other:?}").into()),
    }
}

async fn run_on<DB: ChaosDb>(args: &[String]) -> Result<(), BoxError> {
    let quick = args.iter().any(|a| a == "--quick");
    let store_name = flag(args, "--store").unwrap_or_else(|| "sqlx".to_owned());
    if !relays::STORES.contains(&store_name.as_str()) {
        let stores = relays::STORES.join(", ");
        return Err(format!("--store takes {stores}, not {store_name:?}").into());
    }
    let seconds = number(args, "--seconds", if quick { 24 } else { 120 })?;
    let relay_count = number(args, "--relays", 4)? as usize;
    let producers = number(args, "--producers", 8)?;
    let kill_every = Duration::from_millis(number(args, "--kill-every-ms", 700)?);
    let nats_down = number(args, "--nats-down-s", if quick { 4 } else { 30 })?;
    let seed = number(args, "--seed", fastrand::u64(..))?;
    if seconds < 10 || nats_down as f64 > seconds as f64 * 0.4 {
        return Err("--seconds must be at least 10 and --nats-down-s at most 40% of it".into());
    }
    let started = Instant::now();
    let progress = |what: &str| eprintln!("[{:>6.1}s] {what}", started.elapsed().as_secs_f64());
    progress(&format!(
        "chaos: {producers} producers, {relay_count} relays on the {store_name} store, {seconds}s, \
         seed {seed}"
    ));

    let mut db = DB::Server::start().await?;
    let mut nats = Nats::start().await?;
    progress(&format!(
        "own {} at {}, own NATS at {}",
        DB::PRODUCT,
        db.url(),
        nats.url()
    ));
    let pool = sqlx::pool::PoolOptions::<DB>::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&db.url())
        .await?;
    let table = "outbox_chaos";
    let outbox = Outbox::<DB>::with_table(table)?;
    outbox.migrate(&mut *pool.acquire().await?).await?;
    produce::create_seq_table(&pool, table).await?;
    let js = jetstream::new(
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(nats.url())
            .await?,
    );
    let stream_name = "outboxchaos";
    js.create_stream(stream::Config {
        name: stream_name.into(),
        subjects: vec![format!("{stream_name}.>")],
        storage: stream::StorageType::File,
        max_message_size: 4096,
        ..Default::default()
    })
    .await?;

    let mut relays = Relays::start(
        relay_count,
        DB::DB_NAME,
        &store_name,
        table,
        stream_name,
        &db.url(),
        &nats.url(),
    )?;
    let until = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..producers)
        .map(|p| {
            let kind = match p {
                0 => Kind::Poison,
                1 | 2 => Kind::Long,
                _ => Kind::Fast,
            };
            tokio::spawn(produce::produce(
                pool.clone(),
                outbox.clone(),
                kind,
                p,
                until,
                seed,
            ))
        })
        .collect();

    let mut faults = Faults::default();
    let mut plan = schedule(seconds as f64, nats_down as f64)
        .into_iter()
        .peekable();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut frozen: Option<usize> = None;
    let mut slow: Option<usize> = None;
    let mut nats_stopped_at = None;
    let mut next_kill = Instant::now() + kill_every;
    while Instant::now() < until || plan.peek().is_some() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        relays.restart_exited()?;
        let now = started.elapsed().as_secs_f64();
        while let Some(&(_, fault)) = plan.peek().filter(|(at, _)| *at <= now) {
            plan.next();
            match fault {
                Fault::DatabaseCrash => {
                    let down = db.crash_and_restart().await?;
                    faults.database_crashes += 1;
                    faults.database_down_ms.push(down.as_millis() as u64);
                    progress(&format!(
                        "{} crashed and restarted ({down:.1?} down)",
                        DB::PRODUCT
                    ));
                }
                Fault::NatsStop => {
                    nats.pause().await?;
                    nats_stopped_at = Some(Instant::now());
                    progress(&format!("NATS stopped for {nats_down}s"));
                }
                Fault::NatsStart => {
                    nats.resume().await?;
                    faults.nats_down_s =
                        nats_stopped_at.map_or(0.0, |t: Instant| t.elapsed().as_secs_f64());
                    progress("NATS started again");
                }
                Fault::StartSlow => {
                    slow = Some(relays.start_slow(Duration::from_millis(300))?);
                }
                Fault::Freeze => {
                    if let Some(i) = slow.take() {
                        relays.signal(i, "STOP")?;
                        frozen = Some(i);
                        faults.freezes += 1;
                        progress(&format!(
                            "relay {i} (broker acks 300 ms late) frozen with SIGSTOP past its \
                             {LEASE:?} lease"
                        ));
                    }
                }
                Fault::Thaw => {
                    if let Some(i) = frozen {
                        relays.signal(i, "CONT")?;
                        progress(&format!("relay {i} resumed (SIGCONT)"));
                    }
                }
                Fault::StartHanging => {
                    let i = relays.start_hanging(25)?;
                    progress(&format!(
                        "relay {i} started: one publish call in 25 never returns after the \
                         broker has the messages"
                    ));
                }
                Fault::KillConnections => {
                    progress("killing the relays' database connections every 100 ms for 2 s");
                    tokio::spawn(kill_relay_connections::<DB>(
                        pool.clone(),
                        Arc::clone(&faults.connections_killed),
                    ));
                }
                Fault::Corrupt => {
                    corrupt_rows(&pool, &outbox).await?;
                    faults.corrupt_rows += CORRUPT_ROWS;
                    progress(&format!(
                        "{CORRUPT_ROWS} rows with undecodable headers written on shared keys"
                    ));
                }
                Fault::StopFrozen => {
                    if let Some(i) = frozen.take() {
                        let counters = relays.stop_one(i).await?;
                        let get = |name: &str| counters.get(name).copied().unwrap_or(0);
                        faults.frozen_fenced += get("outbox_fenced_total");
                        faults.frozen_lease_expired_batches +=
                            get("outbox_lease_expired_batches_total");
                        faults.frozen_broker_duplicates += get("outbox_broker_duplicates_total");
                        progress(&format!(
                            "frozen relay stopped: {} fenced, {} batches given back on an \
                             expired lease, {} duplicates at the broker",
                            get("outbox_fenced_total"),
                            get("outbox_lease_expired_batches_total"),
                            get("outbox_broker_duplicates_total"),
                        ));
                    }
                }
            }
        }
        if Instant::now() >= next_kill && Instant::now() < until {
            next_kill += kill_every;
            // The frozen relay is the extra one, past `relay_count`: never killed.
            relays.kill(rng.usize(..relay_count)).await?;
        }
    }
    let mut produced = Produced::default();
    for task in tasks {
        let part = task.await??;
        produced.records.extend(part.records);
        produced.rolled_back.extend(part.rolled_back);
        produced.failed_transactions += part.failed_transactions;
        produced.long_transactions += part.long_transactions;
    }
    progress(&format!(
        "{} messages enqueued, {} relays killed; draining",
        produced.records.len(),
        relays.kills
    ));

    let store = outbox.store(pool.clone());
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        relays.restart_exited()?;
        let stats = store.stats().await?;
        if stats.unpublished() == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(
                format!("outbox not drained 180s after the producers stopped: {stats:?}").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    relays.stop_all().await?;
    let stats = store.stats().await?;
    progress("drained; reading the stream back");

    // Poison messages from commits that returned an error may or may not exist.
    let (mut dead_without_error, mut poison_dead, mut poison_dead_certain) = (0u64, 0u64, 0u64);
    for record in produced.records.iter().filter(|r| r.poison) {
        if let Some(row) = store.get(record.id).await?
            && row.status == Status::Dead
        {
            poison_dead += 1;
            poison_dead_certain += u64::from(record.certain);
            if row.last_error.as_deref().is_none_or(str::is_empty) {
                dead_without_error += 1;
            }
        }
    }
    let corrupt_dead = DB::corrupt_dead(&pool, &outbox.statements().quoted_table()).await?;
    let stream = js.get_stream(stream_name).await?;
    let report = verify::check(stream, &produced).await?;
    for violation in &report.violations {
        progress(&format!("order violation: {violation}"));
    }

    let summary = serde_json::json!({
        "committed": report.committed,
        "published_unique": report.published_unique,
        "lost": report.lost,
        "duplicates_seen_by_consumer": report.duplicates,
        "order_violations": report.order_violations,
        "dead_lettered": stats.dead,
        "dead_not_poison": stats.dead.saturating_sub(poison_dead + corrupt_dead),
        "corrupt_rows": faults.corrupt_rows,
        "corrupt_rows_dead": corrupt_dead,
        "relay_connections_killed": faults.connections_killed.load(Ordering::Relaxed),
        "settle_retries": relays.counters.get("outbox_settle_retries_total").copied().unwrap_or(0),
        "hung_publishes_abandoned": relays.counters.get("outbox_publish_timeouts_total").copied().unwrap_or(0),
        "dead_without_error": dead_without_error,
        "poison_committed": report.poison_committed,
        "poison_published": report.poison_published,
        "rolled_back_published": report.rolled_back_published,
        "uncertain_commits": report.uncertain,
        "failed_transactions": produced.failed_transactions,
        "long_transactions": produced.long_transactions,
        "relays_killed": relays.kills,
        "relays_crashed": relays.crashes,
        "database_crashes": faults.database_crashes,
        "database_down_ms": faults.database_down_ms,
        "nats_down_s": (faults.nats_down_s * 10.0).round() / 10.0,
        "relays_frozen": faults.freezes,
        "frozen_relay_fenced": faults.frozen_fenced,
        "frozen_relay_lease_expired_batches": faults.frozen_lease_expired_batches,
        "frozen_relay_broker_duplicates": faults.frozen_broker_duplicates,
        "broker_duplicates_graceful_relays": relays.counters.get("outbox_broker_duplicates_total").copied().unwrap_or(0),
        "database": DB::DB_NAME,
        "seconds": seconds,
        "seed": seed,
        "store": store_name,
    });
    pool.close().await;
    db.stop().await?;
    nats.stop().await?;

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/outbox-chaos");
    std::fs::create_dir_all(&dir)?;
    let text = serde_json::to_string_pretty(&summary)?;
    let file = match (DB::DB_NAME, store_name.as_str()) {
        ("postgres", "sqlx") => "summary.json".to_owned(),
        (db, "sqlx") => format!("summary-{db}.json"),
        (db, store) => format!("summary-{db}-{store}.json"),
    };
    std::fs::write(dir.join(file), &text)?;
    println!("{text}");
    let mut broken = Vec::new();
    for (what, n) in [
        ("messages lost", report.lost),
        ("order violations", report.order_violations),
        (
            "rolled-back messages published",
            report.rolled_back_published,
        ),
        ("poison messages published", report.poison_published),
        (
            "dead messages that were neither poison nor corrupt",
            stats.dead.saturating_sub(poison_dead + corrupt_dead),
        ),
        (
            "corrupt rows not dead-lettered",
            faults.corrupt_rows.saturating_sub(corrupt_dead),
        ),
        ("dead messages without their error", dead_without_error),
        ("relays that exited on their own", relays.crashes),
    ] {
        if n > 0 {
            broken.push(format!("{n} {what}"));
        }
    }
    if poison_dead_certain != report.poison_committed {
        broken.push(format!(
            "{} poison messages committed but {poison_dead_certain} dead",
            report.poison_committed
        ));
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(format!("{} (seed {seed})", broken.join(", ")).into())
    }
}
