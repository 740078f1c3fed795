//! Measures the outbox against baselines run side by side, and writes
//! `target/outbox-bench/summary.json` (PostgreSQL) or `summary-<db>.json` (`--db mysql`,
//! `--db sqlite`).
//!
//! Run with `cargo xtask bench` (or `cargo run --release -p outbox-bench -- suite [--quick]
//! [--db postgres|mysql|sqlite]`). Reads `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), `MYSQL_URL` (default
//! `mysql://root@127.0.0.1:3306/test`) and `NATS_URL` (default `127.0.0.1:4222`); SQLite runs
//! on a fresh file in the temp directory. Single scenarios: `drain [--rows N] [--batch B]
//! [--relays R] [--concurrency C] [--keys one|skewed|N] [--gauges-ms MS]
//! [--publisher nats | --call] [--db ...]`, `latency [--seconds S] [--rate R] [--db ...]`,
//! `keepup [--seconds S] [--db ...]`, `crash [--rounds N] [--db ...]`,
//! `enqueue [--rounds R] [--txs N] [--messages M] [--db ...]`, and on PostgreSQL only
//! `profile`, `latency --sidecar notify|poll` and `notify`.

mod adapters;
mod backend;
mod crash;
mod drain;
mod enqueue;
mod fixtures;
mod http;
mod keepup;
mod latency;
mod notify;
mod peer;
mod profile;
mod statements;
mod summary;

use std::time::{Duration, Instant};

use outbox_publishers::NatsPublisher;
use outbox_sqlx::Outbox;
use sqlx::mysql::{MySql, MySqlPoolOptions};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Pool, Postgres};

use crate::backend::Backend;
use crate::drain::DrainSpec;
use crate::fixtures::{Keys, Table, median};
use crate::latency::Wake;
use crate::summary::Summary;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Sizes of one suite run.
struct Plan {
    rounds: usize,
    drain_rows: usize,
    hot_rows: usize,
    naive_rows: usize,
    enqueue_txs: usize,
    latency_seconds: u64,
    poll_latency_seconds: u64,
    keepup_seconds: u64,
    notify_seconds: u64,
    peer_rows: usize,
    peer_batches: &'static [usize],
    crash_rounds: usize,
    /// Seconds per measurement of the web layers' overhead.
    http_seconds: f64,
}

const FULL: Plan = Plan {
    rounds: 3,
    drain_rows: 200_000,
    hot_rows: 100_000,
    naive_rows: 5_000,
    enqueue_txs: 4_000,
    latency_seconds: 30,
    poll_latency_seconds: 10,
    keepup_seconds: 30,
    notify_seconds: 4,
    peer_rows: 50_000,
    peer_batches: &[500, 1_000, 5_000],
    crash_rounds: 20,
    http_seconds: 3.0,
};

const QUICK: Plan = Plan {
    rounds: 1,
    drain_rows: 20_000,
    hot_rows: 10_000,
    naive_rows: 1_000,
    enqueue_txs: 800,
    latency_seconds: 5,
    poll_latency_seconds: 3,
    keepup_seconds: 6,
    notify_seconds: 1,
    peer_rows: 10_000,
    peer_batches: &[1_000],
    crash_rounds: 5,
    http_seconds: 1.0,
};

/// Sends SIGINT to `child`, the way an orchestrator stops a relay.
pub(crate) fn signal_interrupt(child: &tokio::process::Child) -> Result<(), BoxError> {
    let pid = child.id().ok_or("the child process already exited")?;
    let status = std::process::Command::new("kill")
        .args(["-s", "INT", &pid.to_string()])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -s INT {pid} failed").into())
    }
}

/// The value after `name`, if `name` is given; an error when nothing follows it.
pub(crate) fn value<'a>(args: &'a [String], name: &str) -> Result<Option<&'a str>, BoxError> {
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(Some(
            args.get(i + 1)
                .ok_or(format!("{name} needs a value"))?
                .as_str(),
        )),
        None => Ok(None),
    }
}

fn flag(args: &[String], name: &str, default: usize) -> Result<usize, BoxError> {
    value(args, name)?.map_or(Ok(default), |v| Ok(v.parse()?))
}

fn plan(args: &[String]) -> &'static Plan {
    if args.iter().any(|a| a == "--quick") {
        &QUICK
    } else {
        &FULL
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into());
    if args.first().map(String::as_str) == Some("sidecar-relay") {
        return latency::sidecar_relay(&args, &url, &nats).await;
    }
    match value(&args, "--db")?.unwrap_or("postgres") {
        "postgres" => {
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .connect(&url)
                .await
                .map_err(|e| format!("PostgreSQL is not reachable at {url}: {e}"))?;
            postgres(&args, &pool, &url, &nats).await
        }
        "mysql" => {
            let url = std::env::var("MYSQL_URL")
                .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
            let pool = MySqlPoolOptions::new()
                .max_connections(16)
                .connect(&url)
                .await
                .map_err(|e| format!("MySQL/MariaDB is not reachable at {url}: {e}"))?;
            other::<MySql>(&args, &pool, &url, &nats).await
        }
        "sqlite" => {
            // A child process (`crash-relay`) opens its parent's file and leaves it in place.
            let child_of = value(&args, "--sqlite-file")?.map(std::path::PathBuf::from);
            let path = child_of.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("outbox-bench-{}.db", std::process::id()))
            });
            let options = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(std::time::Duration::from_secs(30));
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(options)
                .await?;
            let result = other::<Sqlite>(&args, &pool, &path.display().to_string(), &nats).await;
            pool.close().await;
            if child_of.is_some() {
                return result;
            }
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            result
        }
        other => Err(format!("--db takes postgres, mysql or sqlite, not {other:?}").into()),
    }
}

/// The commands that run on MySQL/MariaDB and SQLite.
async fn other<DB: Backend>(
    args: &[String],
    pool: &Pool<DB>,
    url: &str,
    nats: &str,
) -> Result<(), BoxError> {
    match args.first().map(String::as_str) {
        Some("suite") => {
            let started = Instant::now();
            let progress =
                |what: &str| eprintln!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
            let mut summary = Summary::default();
            common_suite(pool, url, nats, plan(args), &mut summary, &progress).await?;
            finish(&summary, &progress)
        }
        Some("drain") => drain_command(args, pool, nats).await,
        Some("adapters") => adapters_command(args, pool, url).await,
        Some("latency") => latency_command(args, pool, nats).await,
        Some("keepup") => keepup_command(args, pool, nats).await,
        Some("crash") => crash_command(args, pool, url).await,
        Some("enqueue") => enqueue_command(args, pool).await,
        Some("crash-relay") => crash::child(args, pool).await,
        _ => Err(format!(
            "usage with --db {}: outbox-bench suite [--quick] | drain | adapters | latency | keepup | crash",
            DB::DB_NAME
        )
        .into()),
    }
}

/// The arguments that make a child process of this binary open the database `url` is for.
fn crash_child_args<DB: Backend>(url: &str) -> Vec<String> {
    let mut args = vec!["--db".to_owned(), DB::DB_NAME.to_owned()];
    if DB::DB_NAME == "sqlite" {
        args.extend(["--sqlite-file".to_owned(), url.to_owned()]);
    }
    args
}

async fn enqueue_command<DB: Backend>(args: &[String], pool: &Pool<DB>) -> Result<(), BoxError> {
    let rounds = flag(args, "--rounds", 3)?;
    let txs = flag(args, "--txs", 4_000)?;
    let messages = flag(args, "--messages", 1)?;
    let (ratio, per_tx) = enqueue::overhead(pool, rounds, txs, messages, |o| o).await?;
    println!(
        "enqueue overhead over {rounds} interleaved rounds of {txs} transactions of \
         {messages} message(s): {ratio:.3}x the hand-written INSERT, {:.0} us per transaction",
        per_tx.as_secs_f64() * 1e6
    );
    if DB::without_key_locks(Outbox::new()).is_some() {
        let unlocked = |o: Outbox<DB>| DB::without_key_locks(o.clone()).unwrap_or(o);
        let (ratio, per_tx) = enqueue::overhead(pool, rounds, txs, messages, unlocked).await?;
        println!(
            "without key locks: {ratio:.3}x the hand-written INSERT, {:.0} us per transaction",
            per_tx.as_secs_f64() * 1e6
        );
    }
    Ok(())
}

async fn crash_command<DB: Backend>(
    args: &[String],
    pool: &Pool<DB>,
    url: &str,
) -> Result<(), BoxError> {
    let rounds = flag(args, "--rounds", 20)?;
    let samples = crash::run(pool, &crash_child_args::<DB>(url), rounds).await?;
    let ms: Vec<String> = samples
        .iter()
        .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
        .collect();
    println!(
        "crash recovery over {rounds} kills: p50 {:.0} ms, p99 {:.0} ms ({} ms)",
        crash::percentile_ms(&samples, 50.0),
        crash::percentile_ms(&samples, 99.0),
        ms.join(", ")
    );
    Ok(())
}

/// Prints the table and writes the summary file.
fn finish(summary: &Summary, progress: &impl Fn(&str)) -> Result<(), BoxError> {
    progress("done");
    summary.print();
    let path = summary.write()?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// `adapters [--rows N] [--rounds R] [--txs N]`: each ORM adapter's drain rate / the sqlx
/// store's, and its enqueue / the hand-written INSERT through the same ORM.
async fn adapters_command<DB: Backend>(
    args: &[String],
    pool: &Pool<DB>,
    url: &str,
) -> Result<(), BoxError> {
    let spec = DrainSpec {
        rows: flag(args, "--rows", 100_000)?,
        batch: 500,
        relays: 1,
        concurrency: 2,
        gauges: None,
    };
    let rounds = flag(args, "--rounds", 3)?;
    let table = Table::create(pool, "adapters").await?;
    let progress = |what: &str| eprintln!("{what}");
    let drain = adapters::drain_ratios(pool, url, &table, spec, rounds, &progress).await?;
    table.drop_table(pool).await?;
    let txs = flag(args, "--txs", 2_000)?;
    let diesel = adapters::diesel_enqueue_overhead(pool, url, rounds, txs).await?;
    let seaorm = adapters::seaorm_enqueue_overhead(pool, rounds, txs).await?;
    println!(
        "{}: enqueue / the hand-written INSERT through the same ORM, median of {rounds}: \
         diesel {diesel:.3}, sea-orm {seaorm:.3}",
        DB::DB_NAME
    );
    println!(
        "{}: drain rate / the sqlx store's, median of {rounds}: diesel {:.3}, diesel-async \
         {:.3}, sea-orm {:.3}",
        DB::DB_NAME,
        drain.diesel,
        drain.diesel_async,
        drain.seaorm
    );
    Ok(())
}

async fn drain_command<DB: Backend>(
    args: &[String],
    pool: &Pool<DB>,
    nats: &str,
) -> Result<(), BoxError> {
    let spec = DrainSpec {
        rows: flag(args, "--rows", 100_000)?,
        batch: flag(args, "--batch", 500)?,
        relays: flag(args, "--relays", 1)?,
        concurrency: flag(args, "--concurrency", 2)?,
        gauges: match flag(args, "--gauges-ms", 0)? {
            0 => None,
            ms => Some(Duration::from_millis(ms as u64)),
        },
    };
    let to_nats = args.iter().any(|a| a == "nats");
    let keys = match value(args, "--keys")? {
        None => Keys::Uniform(1_000),
        Some("one") => Keys::One,
        Some("skewed") => Keys::Skewed(1_000),
        Some(n) => Keys::Uniform(
            n.parse()
                .map_err(|_| format!("--keys takes one, skewed or a number of keys, not {n:?}"))?,
        ),
    };
    let table = Table::create(pool, "drain").await?;
    let floor = drain::floor(pool, &table, spec.rows, spec.batch).await?;
    let ours = if to_nats {
        let (js, stream) = fixtures::nats_stream(nats, "drain").await?;
        let publisher = NatsPublisher::new(js.clone()).subject_prefix(stream.clone());
        let rate = drain::relay(pool, &table, keys, spec, publisher).await;
        js.delete_stream(&stream).await?;
        rate?
    } else if args.iter().any(|a| a == "--call") {
        drain::call(pool, &table, keys, spec).await?
    } else {
        drain::relay_null(pool, &table, keys, spec).await?
    };
    table.drop_table(pool).await?;
    let to = if to_nats {
        "NATS JetStream"
    } else {
        "null publisher"
    };
    println!(
        "{}: floor {floor:.0} rows/s, relay -> {to} {ours:.0} rows/s, ratio {:.3}",
        DB::DB_NAME,
        ours / floor
    );
    Ok(())
}

async fn latency_command<DB: Backend>(
    args: &[String],
    pool: &Pool<DB>,
    nats: &str,
) -> Result<(), BoxError> {
    let seconds = flag(args, "--seconds", 10)? as u64;
    let rate = flag(args, "--rate", 1_000)? as u64;
    let (p50, p99, stages) = latency::in_process(pool, nats, rate, seconds).await?;
    println!(
        "{}: e2e commit -> JetStream ack at {rate} msg/s (relay in-process): p50 {p50:.2} ms, \
         p99 {p99:.2} ms\n  {stages}",
        DB::DB_NAME
    );
    Ok(())
}

async fn keepup_command<DB: Backend>(
    args: &[String],
    pool: &Pool<DB>,
    nats: &str,
) -> Result<(), BoxError> {
    let k = keepup::run(pool, nats, flag(args, "--seconds", 30)? as u64).await?;
    println!(
        "{}: keep-up {:.0} commits/s, published/committed {:.3}, backlog {} -> {}",
        DB::DB_NAME,
        k.commits_per_s,
        k.ratio,
        k.early_backlog,
        k.final_backlog
    );
    Ok(())
}

/// The commands on PostgreSQL.
async fn postgres(
    args: &[String],
    pool: &Pool<Postgres>,
    url: &str,
    nats: &str,
) -> Result<(), BoxError> {
    match args.first().map(String::as_str) {
        Some("suite") => suite(pool, url, nats, plan(args)).await,
        Some("drain") => drain_command(args, pool, nats).await,
        Some("adapters") => adapters_command(args, pool, url).await,
        Some("http") => {
            let seconds = flag(args, "--seconds", 3)? as f64;
            for framework in [http::Framework::Axum, http::Framework::Actix] {
                let (ratio, rate) = http::overhead(pool, framework, 3, seconds).await?;
                println!("{framework:?}: layer / by hand {ratio:.3} ({rate:.0} requests/s layered)");
            }
            let (p50, p99) = http::e2e(pool, nats, 1_000, flag(args, "--e2e-seconds", 10)? as u64).await?;
            println!("axum: response -> JetStream ack p50 {p50:.2} ms, p99 {p99:.2} ms");
            Ok(())
        }
        Some("profile") => {
            let table = Table::create(pool, "profile").await?;
            table
                .preload(pool, flag(args, "--rows", 100_000)?, Keys::Uniform(1_000))
                .await?;
            let rate =
                profile::claims_and_settles(pool, &table.outbox, flag(args, "--batch", 500)?).await?;
            table.drop_table(pool).await?;
            println!("claim + settle loop: {rate:.0} rows/s");
            Ok(())
        }
        Some("latency") => {
            let seconds = flag(args, "--seconds", 10)? as u64;
            let rate = flag(args, "--rate", 1_000)? as u64;
            let (where_, (p50, p99)) = match value(args, "--sidecar")? {
                None => return latency_command(args, pool, nats).await,
                Some("notify") => (
                    "sidecar relay, LISTEN/NOTIFY",
                    latency::sidecar(pool, url, nats, rate, seconds, Wake::Notify).await?,
                ),
                Some("poll") => (
                    "sidecar relay, polling",
                    latency::sidecar(pool, url, nats, rate, seconds, Wake::Poll).await?,
                ),
                Some(_) => return Err("--sidecar takes notify or poll".into()),
            };
            println!(
                "e2e commit -> JetStream ack at {rate} msg/s ({where_}): p50 {p50:.2} ms, \
                 p99 {p99:.2} ms"
            );
            Ok(())
        }
        Some("keepup") => keepup_command(args, pool, nats).await,
        Some("crash") => crash_command(args, pool, url).await,
        Some("enqueue") => enqueue_command(args, pool).await,
        Some("crash-relay") => crash::child(args, pool).await,
        Some("notify") => {
            let ratio = notify::ratio(pool, 3, 4).await?;
            println!("notify_commit_ratio {ratio:.3}");
            Ok(())
        }
        _ => Err(
            "usage: outbox-bench suite [--quick] [--db postgres|mysql|sqlite] | drain | adapters | http | profile \
             | latency | keepup | notify"
                .into(),
        ),
    }
}

/// The whole suite on PostgreSQL: the scenarios every database runs, then the sidecar, the
/// peer library and LISTEN/NOTIFY, which are PostgreSQL's.
async fn suite(pool: &Pool<Postgres>, url: &str, nats: &str, plan: &Plan) -> Result<(), BoxError> {
    let started = Instant::now();
    let mut summary = Summary::default();
    let progress = |what: &str| eprintln!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
    common_suite(pool, url, nats, plan, &mut summary, &progress).await?;

    progress("web layers: an order POST through the layer / the same handler by hand");
    for (framework, key) in [
        (http::Framework::Axum, "http_overhead_ratio_axum"),
        (http::Framework::Actix, "http_overhead_ratio_actix"),
    ] {
        let (ratio, rate) =
            http::overhead(pool, framework, plan.rounds.max(2), plan.http_seconds).await?;
        summary.ratio(key, ratio, ">= 0.95");
        summary.value(&format!("{key}_layered_requests_per_s"), rate);
    }
    progress("web layers: response -> JetStream ack through the axum layer, 1,000 requests/s");
    let (p50, p99) = http::e2e(pool, nats, 1_000, plan.latency_seconds).await?;
    summary.ratio("http_e2e_p99_ms", p99, "< 5");
    summary.value("http_e2e_p50_ms", p50);

    progress("end-to-end latency, relay in a separate process woken by LISTEN/NOTIFY");
    let (p50, p99) =
        latency::sidecar(pool, url, nats, 1_000, plan.latency_seconds, Wake::Notify).await?;
    summary.ratio("e2e_sidecar_p50_ms", p50, "< 5");
    summary.ratio("e2e_sidecar_p99_ms", p99, "< 20");
    progress("end-to-end latency, relay in a separate process polling every 500 ms");
    let (p50, p99) = latency::sidecar(
        pool,
        url,
        nats,
        1_000,
        plan.poll_latency_seconds,
        Wake::Poll,
    )
    .await?;
    summary.ratio("e2e_sidecar_poll_p50_ms", p50, "report");
    summary.ratio("e2e_sidecar_poll_p99_ms", p99, "report");

    peer_suite(pool, url, nats, plan, &mut summary, &progress).await?;

    progress("LISTEN/NOTIFY cost to producers");
    let notify = notify::ratio(pool, plan.rounds, plan.notify_seconds).await?;
    summary.ratio("notify_commit_ratio", notify, "report");
    finish(&summary, &progress)
}

/// The scenarios every database runs: enqueue cost, drain rates against the floor and the
/// naive design, key skew, several relays, in-process end-to-end latency and keep-up.
async fn common_suite<DB: Backend>(
    pool: &Pool<DB>,
    url: &str,
    nats: &str,
    plan: &Plan,
    summary: &mut Summary,
    progress: &impl Fn(&str),
) -> Result<(), BoxError> {
    summary.database(DB::DB_NAME);
    let spec = DrainSpec {
        rows: plan.drain_rows,
        batch: 500,
        relays: 1,
        concurrency: 2,
        gauges: None,
    };
    let table = Table::create(pool, "suite").await?;

    progress("enqueue overhead (8 producers, library vs hand-written INSERT)");
    let rounds = plan.rounds.max(2);
    let (ratio, per_tx) = enqueue::overhead(pool, rounds, plan.enqueue_txs, 1, |o| o).await?;
    summary.ratio("enqueue_overhead_ratio", ratio, "<= 1.05");
    summary.value("enqueue_tx_us", per_tx.as_secs_f64() * 1e6);
    progress("enqueue_all of 10 keyed messages vs a hand-written 10-row INSERT (8 producers)");
    let (ratio, per_tx) =
        enqueue::overhead(pool, rounds.max(5), plan.enqueue_txs, 10, |o| o).await?;
    summary.ratio("enqueue_all_overhead_ratio", ratio, "<= 1.05");
    summary.value("enqueue_all_tx_us", per_tx.as_secs_f64() * 1e6);
    if DB::without_key_locks(Outbox::new()).is_some() {
        progress("enqueue overhead without key locks (an option on MySQL)");
        let unlocked = |o: Outbox<DB>| DB::without_key_locks(o.clone()).unwrap_or(o);
        let (ratio, _) = enqueue::overhead(pool, rounds, plan.enqueue_txs, 1, unlocked).await?;
        summary.ratio("enqueue_unlocked_overhead_ratio", ratio, "<= 1.05");
    }
    progress("enqueue overhead through diesel (8 threads, outbox_diesel::enqueue vs hand-written)");
    let diesel = adapters::diesel_enqueue_overhead(pool, url, rounds, plan.enqueue_txs).await?;
    summary.ratio("enqueue_overhead_ratio_diesel", diesel, "<= 1.05");
    progress("enqueue overhead through sea-orm (8 tasks, outbox_seaorm::enqueue vs hand-written)");
    let seaorm = adapters::seaorm_enqueue_overhead(pool, rounds, plan.enqueue_txs).await?;
    summary.ratio("enqueue_overhead_ratio_seaorm", seaorm, "<= 1.05");
    let batch_table = Table::create(pool, "statements").await?;
    let sent = DB::batch_statements(url, pool, &batch_table.outbox, 10).await?;
    batch_table.drop_table(pool).await?;
    summary.ratio("enqueue_batch_statements", sent as f64, "1");

    progress("drain: relay vs bare SQL floor, interleaved");
    let (mut floors, mut ours) = (Vec::new(), Vec::new());
    for round in 0..plan.rounds {
        progress(&format!("  round {}: floor", round + 1));
        floors.push(drain::floor(pool, &table, spec.rows, spec.batch).await?);
        progress(&format!("  round {}: relay", round + 1));
        ours.push(drain::relay_null(pool, &table, Keys::Uniform(1_000), spec).await?);
    }
    let ratios: Vec<f64> = ours.iter().zip(&floors).map(|(o, f)| o / f).collect();
    let relay_rate = median(ours);
    summary.ratio("drain_vs_floor_ratio", median(ratios), ">= 0.5");
    summary.value("drain_rows_per_s", relay_rate);
    summary.value("floor_rows_per_s", median(floors));

    progress("drain: the drain() call vs run() on the same backlog, interleaved");
    let mut calls = Vec::new();
    for round in 0..plan.rounds {
        progress(&format!("  round {}", round + 1));
        let uniform = Keys::Uniform(1_000);
        let run = drain::relay_null(pool, &table, uniform, spec).await?;
        let call = drain::call(pool, &table, uniform, spec).await?;
        calls.push(call / run);
    }
    summary.ratio("drain_call_vs_run_ratio", median(calls), ">= 0.9");

    progress("drain: gauges refreshed every second vs none, interleaved");
    let gauged = DrainSpec {
        gauges: Some(Duration::from_secs(1)),
        ..spec
    };
    let mut costs = Vec::new();
    for round in 0..plan.rounds {
        progress(&format!("  round {}", round + 1));
        let uniform = Keys::Uniform(1_000);
        let off = drain::relay_null(pool, &table, uniform, spec).await?;
        let on = drain::relay_null(pool, &table, uniform, gauged).await?;
        let on2 = drain::relay_null(pool, &table, uniform, gauged).await?;
        let off2 = drain::relay_null(pool, &table, uniform, spec).await?;
        costs.push((on + on2) / (off + off2));
    }
    summary.ratio("metrics_drain_ratio", median(costs), ">= 0.98");

    progress("drain: the diesel, diesel-async and sea-orm stores vs the sqlx store, interleaved");
    let orms = adapters::drain_ratios(pool, url, &table, spec, plan.rounds, progress).await?;
    summary.ratio("drain_ratio_diesel", orms.diesel, ">= 0.9");
    summary.ratio("drain_ratio_diesel_async", orms.diesel_async, ">= 0.9");
    summary.ratio("drain_ratio_seaorm", orms.seaorm, ">= 0.9");

    progress("drain: naive status-column design");
    let naive = drain::naive(pool, plan.naive_rows).await?;
    summary.ratio("drain_vs_naive_ratio", relay_rate / naive, ">= 150");
    summary.value("naive_rows_per_s", naive);

    progress("drain: one hot key and skewed keys vs 1,000 keys, interleaved");
    let hot_spec = DrainSpec {
        rows: plan.hot_rows,
        ..spec
    };
    let (mut hot, mut skewed) = (Vec::new(), Vec::new());
    for round in 0..plan.rounds {
        progress(&format!("  round {}", round + 1));
        let uniform = drain::relay_null(pool, &table, Keys::Uniform(1_000), hot_spec).await?;
        hot.push(drain::relay_null(pool, &table, Keys::One, hot_spec).await? / uniform);
        skewed
            .push(drain::relay_null(pool, &table, Keys::Skewed(1_000), hot_spec).await? / uniform);
    }
    summary.ratio("hot_key_drain_ratio", median(hot), ">= 0.25");
    summary.ratio("skewed_keys_drain_ratio", median(skewed), ">= 0.5");

    progress("drain: 4 relays vs 1, interleaved");
    let mut scaling = Vec::new();
    for round in 0..plan.rounds {
        progress(&format!("  round {}", round + 1));
        let one = DrainSpec {
            concurrency: 1,
            ..spec
        };
        let one_rate = drain::relay_null(pool, &table, Keys::Uniform(1_000), one).await?;
        let four = DrainSpec { relays: 4, ..one };
        scaling.push(drain::relay_null(pool, &table, Keys::Uniform(1_000), four).await? / one_rate);
    }
    summary.ratio("multi_relay_scaling", median(scaling), ">= 0.9");
    table.drop_table(pool).await?;

    progress("end-to-end latency to NATS JetStream, relay in-process, 1,000 msg/s");
    let (p50, p99, stages) = latency::in_process(pool, nats, 1_000, plan.latency_seconds).await?;
    progress(&format!("  {stages}"));
    summary.ratio("e2e_p50_ms", p50, "< 2");
    summary.ratio("e2e_p99_ms", p99, "< 5");
    for (stage, (p50, p99)) in [
        ("wait", stages.wait),
        ("claim", stages.claim),
        ("to_publish", stages.to_publish),
        ("publish", stages.publish),
        ("settle", stages.settle),
    ] {
        summary.value(&format!("e2e_stage_{stage}_p50_ms"), p50);
        summary.value(&format!("e2e_stage_{stage}_p99_ms"), p99);
    }

    progress("crash recovery: a relay SIGKILLed mid-batch, its keys published by another");
    let samples = crash::run(pool, &crash_child_args::<DB>(url), plan.crash_rounds).await?;
    summary.ratio(
        "crash_recovery_p99_ms",
        crash::percentile_ms(&samples, 99.0),
        "< 2000",
    );
    summary.value(
        "crash_recovery_p50_ms",
        crash::percentile_ms(&samples, 50.0),
    );

    progress("keep-up: 8 producers at full speed, relay in-process to NATS JetStream");
    let k = keepup::run(pool, nats, plan.keepup_seconds).await?;
    summary.ratio("keepup_ratio", k.ratio, ">= 1.0");
    summary.value("keepup_final_backlog", k.final_backlog as f64);
    summary.value("keepup_early_backlog", k.early_backlog as f64);
    summary.value("keepup_commits_per_s", k.commits_per_s);
    Ok(())
}

/// The same enqueue, drain and latency workloads on the peer library, beside ours.
async fn peer_suite(
    pool: &Pool<Postgres>,
    url: &str,
    nats: &str,
    plan: &Plan,
    summary: &mut Summary,
    progress: &impl Fn(&str),
) -> Result<(), BoxError> {
    progress("peer (Oxide Outbox): enqueue, ours and theirs interleaved");
    let txs = plan.enqueue_txs.to_string();
    let mut ratios = Vec::new();
    for _ in 0..plan.rounds.max(2) {
        let ours = enqueue::library_per_tx(pool, plan.enqueue_txs)
            .await?
            .as_secs_f64()
            * 1e6;
        let theirs = peer::field(
            &peer::run(&["enqueue", "--txs", &txs], url, nats).await?,
            "per_tx_us",
        )?;
        ratios.push(ours / theirs);
    }
    summary.ratio("peer_enqueue_ratio", median(ratios), "< 1 (time per tx)");

    progress("peer: drain to a null transport at each batch size, ours and theirs interleaved");
    let rows = plan.peer_rows.to_string();
    let (mut theirs, mut ours): (f64, f64) = (0.0, 0.0);
    let table = Table::create(pool, "peer").await?;
    for &batch in plan.peer_batches {
        progress(&format!("  batch {batch}"));
        let arg = batch.to_string();
        let result = peer::run(&["drain", "--rows", &rows, "--batch", &arg], url, nats).await?;
        theirs = theirs.max(peer::field(&result, "rows_per_s")?);
        let spec = DrainSpec {
            rows: plan.peer_rows,
            batch,
            relays: 1,
            concurrency: 2,
            gauges: None,
        };
        ours = ours.max(drain::relay_null(pool, &table, Keys::Uniform(1_000), spec).await?);
    }
    table.drop_table(pool).await?;
    summary.ratio("peer_drain_ratio", ours / theirs, "> 1 (rows/s)");
    summary.value("peer_drain_rows_per_s", theirs);
    summary.value("peer_drain_ours_rows_per_s", ours);

    progress(
        "peer: end-to-end latency to NATS JetStream, 1,000 msg/s, ours in-process then theirs",
    );
    let (_, our_p99, _) = latency::in_process(pool, nats, 1_000, plan.latency_seconds).await?;
    let seconds = plan.latency_seconds.to_string();
    let result = peer::run(
        &["latency", "--rate", "1000", "--seconds", &seconds],
        url,
        nats,
    )
    .await?;
    let their_p99 = peer::field(&result, "p99_ms")?;
    summary.ratio("peer_e2e_p99_ratio", our_p99 / their_p99, "< 1");
    summary.value("peer_e2e_ours_p99_ms", our_p99);
    summary.value("peer_e2e_p50_ms", peer::field(&result, "p50_ms")?);
    summary.value("peer_e2e_p99_ms", their_p99);
    Ok(())
}
